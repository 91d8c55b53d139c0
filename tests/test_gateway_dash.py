"""The gateway seen live: Prometheus metrics, the OpenAI Responses API and the dashboard, tested
against real `lwfsm serve` processes with the official `openai` SDK as the client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from .test_gateway import GATEWAY_KEY, Gateway, _env, httpx, oai, openai, openai_server  # noqa: E402

__all__ = ["oai"]  # the fake upstream fixture, shared with test_gateway

PRICED = {"LWFSM_LEAD_MODEL": "openai/gpt-4o", "LWFSM_WORKER_MODEL": "openai/gpt-4o-mini"}


@pytest.fixture
def priced(oai: openai_server.Server) -> Iterator[Gateway]:
    """A gateway whose roles are models with a price in LiteLLM's map, served by the fake upstream."""
    gw = Gateway("--api-key-env", "GW_KEY", env={**_env("openai", oai.base), **PRICED})
    yield gw
    gw.stop()


def _metrics(gw: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = gw.control("GET", "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_match_the_traffic_sent(priced: Gateway, oai: openai_server.Server) -> None:
    from lwfsm.cost.pricing import PriceMap
    from lwfsm.gateway.app import _price_table
    from lwfsm.turn import Usage

    assert httpx.get(priced.base + "/metrics").status_code == 401  # the gateway key protects it
    client = openai.OpenAI(
        base_url=priced.base + "/v1", api_key=GATEWAY_KEY, default_headers={"X-Lwfsm-Session": "m"}, max_retries=0
    )
    messages: list[Any] = [{"role": "user", "content": "Write a parser."}]
    roles = []
    for n in range(4):  # lead, lead, lead, then the worker (lead_turns 3)
        raw = client.chat.completions.with_raw_response.create(model="x", messages=messages)
        roles.append(raw.headers["x-lwfsm-role"])
        messages.append(raw.parse().choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "user", "content": f"ok {n}"})
    assert roles == ["lead", "lead", "lead", "worker"]
    oai.script("gpt-4o-mini", {"status": 400})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="x", messages=messages)

    m = _metrics(priced)

    def at(name: str, **labels: str) -> float | None:
        return m.get((name, tuple(sorted(labels.items()))))

    assert at("lwfsm_turns_total", role="lead", outcome="turn_completed") == 3
    assert at("lwfsm_turns_total", role="worker", outcome="turn_completed") is None  # its turn is still pending
    assert at("lwfsm_switches_total", from_state="lead_initial", to_state="worker", event="turn_completed") == 1
    assert at("lwfsm_upstream_errors_total", role="worker", model="openai/gpt-4o-mini", status="400") == 1
    assert at("lwfsm_tokens_total", role="lead", kind="prompt_tokens") == 33  # 3 calls x 11
    assert at("lwfsm_tokens_total", role="worker", kind="completion_tokens") == 7
    prices = PriceMap(_price_table())
    lead = prices("openai/gpt-4o", Usage(prompt_tokens=33, completion_tokens=21))
    worker = prices("openai/gpt-4o-mini", Usage(prompt_tokens=11, completion_tokens=7))
    assert lead is not None
    assert worker is not None
    assert at("lwfsm_cost_dollars_total", role="lead") == pytest.approx(lead)
    assert at("lwfsm_cost_dollars_total", role="worker") == pytest.approx(worker)
    assert at("lwfsm_request_seconds_count", endpoint="/v1/chat/completions") == 5
    assert at("lwfsm_live_conversations") == 1
    # The control API reports the same cost, and what the same tokens would have cost on the lead alone.
    (summary,) = priced.control("GET", "/lwfsm/sessions").json()["sessions"]
    assert summary["cost"] == pytest.approx(lead + worker)
    assert summary["lead_cost"] == pytest.approx(prices("openai/gpt-4o", Usage(prompt_tokens=44, completion_tokens=28)))
