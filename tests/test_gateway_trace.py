"""`lwfsm serve --log-dir DIR`: the gateway writes the trace format; `lwfsm report DIR` reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from . import openai_server
from .test_gateway import GATEWAY_KEY, ROLES, TOOLS, Gateway, _env, _reactions_openai, oai, openai  # noqa: E402

__all__ = ["oai"]  # the fake upstream fixture shared with test_gateway

PRICED = {"LWFSM_LEAD_MODEL": "openai/gpt-4o", "LWFSM_WORKER_MODEL": "openai/gpt-4o-mini"}  # models with prices


def _script(oai: openai_server.Server) -> None:
    # The coding conversation of test_gateway: lead 1-3, worker 4-5, fallback 6-7, recovery 8-9, worker 10-12.
    def call(n: int, name: str, args: str) -> dict[str, Any]:
        return {"tool_calls": [{"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": args}}]}

    oai.script("gpt-4o", call(1, "read_file", '{"path": "parser.py"}'), {}, call(3, "run_tests", "{}"))
    oai.script("gpt-4o", call(6, "edit_file", '{"path": "parser.py", "patch": "fix"}'), {})
    oai.script("gpt-4o-mini", call(4, "run_tests", "{}"), {})
    oai.script("gpt-4o-mini", call(8, "edit_file", '{"path": "parser.py", "patch": '), {})  # malformed
    oai.script("gpt-4o-mini", call(10, "run_tests", "{}"), {}, {})


def test_report_of_the_gateways_trace_equals_its_control_api(
    oai: openai_server.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwfsm.cli import main
    from lwfsm.cost import PriceMap
    from lwfsm.turn.ledger import Usage

    logs = tmp_path / "trace"
    args = ("--api-key-env", "GW_KEY", "--store", f"sqlite:///{tmp_path}/s.db", "--log-dir", str(logs))
    env = {**_env("openai", oai.base), **PRICED}
    gw = Gateway(*args, env=env)
    _script(oai)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "The parser test fails; please fix it."}]
    served = []
    try:
        for n in range(1, 13):
            if n == 6:  # a restart mid-conversation: the new process appends to the conversation's file
                gw.kill()
                gw = Gateway(*args, env=env)
            client = openai.OpenAI(
                base_url=gw.base + "/v1", api_key=GATEWAY_KEY, default_headers={"X-Lwfsm-Session": "fix"}, max_retries=0
            )
            raw = client.chat.completions.with_raw_response.create(model="any", messages=messages, tools=TOOLS)
            served.append(raw.headers["x-lwfsm-role"])
            key = raw.headers["x-lwfsm-session"]
            messages.append(raw.parse().choices[0].message.model_dump(exclude_none=True))
            if n < 12:
                messages += _reactions_openai(n, messages[-1])
        control = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    finally:
        gw.stop()
    assert served == ROLES  # through fallback and recovery
    (trace,) = logs.glob("*.jsonl")  # one file, across the restart
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["turn"] for r in lines] == list(range(1, 12))  # every judged turn once; the 12th is pending
    assert {r["session"] for r in lines} == {key}
    assert main(["report", str(logs), "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert total["turns"] == control["turn"] == 11
    assert total["turns_by_role"] == {"lead": 5, "worker": 6}
    assert total["fallbacks"] == 1
    # The control API's ledger also holds the pending 12th call (the worker's; the fake upstream reports
    # 11 prompt and 7 completion tokens for every call): the report has it once it is judged.
    pending = PriceMap()("openai/gpt-4o-mini", Usage(prompt_tokens=11, completion_tokens=7))
    assert pending is not None
    assert total["cost"] is not None
    assert total["cost"] + pending == pytest.approx(control["cost"], rel=1e-12)
    assert sum(r["cost"] for r in lines) == pytest.approx(total["cost"], rel=1e-12)  # as priced when recorded
