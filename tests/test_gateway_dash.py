"""The gateway seen live: Prometheus metrics, the OpenAI Responses API and the dashboard, tested
against real `lwfsm serve` processes with the official `openai` SDK as the client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from .test_gateway import (  # noqa: E402
    GATEWAY_KEY,
    ROLES,
    STATES,
    Gateway,
    _env,
    _openai_script,
    httpx,
    oai,
    oai_gateway,
    openai,
    openai_server,
)

__all__ = ["oai", "oai_gateway"]  # the fake upstream fixture, shared with test_gateway

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


RESPONSES_TOOLS = [
    {"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}}
    for n in ("read_file", "run_tests", "edit_file")
]


def _reactions_responses(n: int, calls: list[Any]) -> list[dict[str, Any]]:
    """What a Responses agent sends after reply n: function_call_output items or the user's word."""
    out = lambda text: [{"type": "function_call_output", "call_id": calls[0].call_id, "output": text}]  # noqa: E731
    user = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    return {
        1: lambda: out("def parse(): ..."),
        2: lambda: user("Good. Run the tests."),
        3: lambda: out("12 passed"),
        4: lambda: out("Traceback (most recent call last):\n  File 'parser.py'\nAssertionError"),
        5: lambda: user("That's wrong, the bug is in tokenize()."),
        6: lambda: out("patched"),
        7: lambda: user("Looks right. Go on."),
        8: lambda: out("could not apply the patch"),
        9: lambda: user("Fine, continue."),
        10: lambda: out("12 passed"),
        11: lambda: user("Great, thanks."),
    }[n]()


def test_responses_api_conversation_through_fallback_and_recovery(
    oai: openai_server.Server, oai_gateway: Gateway
) -> None:
    """The scripted 12-call conversation of the Chat Completions test, through the SDK's Responses
    client: chained by previous_response_id, except call 7, which sends the whole input (as Codex
    does with store=false); calls 3 and 9 stream raw events, 6 and 12 use the SDK's stream helper."""
    _openai_script(oai)
    before = len(oai.requests)
    client = openai.OpenAI(
        base_url=oai_gateway.base + "/v1",
        api_key=GATEWAY_KEY,
        default_headers={"X-Lwfsm-Session": "responses"},
        max_retries=0,
    )
    common: dict[str, Any] = {"model": "anything", "instructions": "You are a coding agent.", "tools": RESPONSES_TOOLS}
    history: list[Any] = [{"role": "user", "content": "The parser test fails; please fix it."}]
    pending: list[Any] = list(history)
    previous: str | None = None
    states, usage_seen = [], []
    for n in range(1, 13):
        kwargs = dict(common, input=pending)
        if n == 7:
            kwargs["input"], kwargs["store"] = history, False
        elif previous is not None:
            kwargs["previous_response_id"] = previous
        if n in (3, 9):
            stream = client.responses.create(stream=True, **kwargs)
            states.append(stream.response.headers["x-lwfsm-state"])
            events = list(stream)
            assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
            response = events[-1].response
            assert events[-1].type == "response.completed"
        elif n in (6, 12):
            with client.responses.stream(**kwargs) as helper:
                kinds = [e.type for e in helper]
                response = helper.get_final_response()
            assert "response.output_item.done" in kinds
            states.append(None)  # the helper hides the headers; the role is checked upstream below
        else:
            raw = client.responses.with_raw_response.create(**kwargs)
            states.append(raw.headers["x-lwfsm-state"])
            response = raw.parse()
        assert response.usage is not None
        usage_seen.append((response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens))
        calls = [item for item in response.output if item.type == "function_call"]
        reply_items = [item.model_dump(exclude_none=True) for item in response.output]
        previous = None if n == 7 else response.id  # call 7 was not stored: chain from the whole input again
        if n < 12:
            pending = _reactions_responses(n, calls)
            history += reply_items + pending
            if n == 7:
                pending = history
    assert states == [s if n not in (6, 12) else None for n, s in enumerate(STATES, 1)]
    assert usage_seen == [(11, 7, 18)] * 12
    ours = oai.requests[before:]
    assert [r["model"] for r in ours] == ["lead-model" if r == "lead" else "worker-model" for r in ROLES]
    # Upstream saw the whole conversation each time, tool calls and outputs in Chat Completions shape.
    last = ours[-1]["messages"]
    assert last[0] == {"role": "system", "content": "You are a coding agent."}
    assert {"role": "tool", "tool_call_id": "call_10", "content": "12 passed"} in last
    assert ours[-1]["tools"][0] == {
        "type": "function",
        "function": {"name": "read_file", "parameters": {"type": "object", "properties": {}}},
    }
    sessions = oai_gateway.control("GET", "/lwfsm/sessions").json()["sessions"]
    key = next(s["id"] for s in sessions if s["id"].endswith(".responses"))
    session = oai_gateway.control("GET", f"/lwfsm/sessions/{key}").json()
    reasons = [(h["turn"], h["outcome"], h["reason"]) for h in session["history"]]
    assert reasons[3] == (4, "failure", "tool result reports an error ('traceback (most recent call last)')")
    assert reasons[4][1:] == ("failure", 'the user corrects the model ("that\'s wrong")')
    assert reasons[7] == (8, "failure", "tool call 'edit_file' has arguments that are not valid JSON")
    assert session["state"] == "worker"
    assert session["turn"] == 11
    # An unknown (or another client's) previous_response_id is a clear 404, not a new conversation.
    with pytest.raises(openai.NotFoundError, match="previous_response_id"):
        client.responses.create(model="x", input="hi", previous_response_id="resp_nope")
