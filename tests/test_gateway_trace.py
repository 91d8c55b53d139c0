"""`lwfsm serve --log-dir DIR`: the gateway writes the trace format; `lwfsm report DIR` reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

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


def test_gateway_and_report_count_switches_fallbacks_and_technical_fallbacks_alike(
    oai: openai_server.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Worker, a technical fallback (the worker answers 503, the lead serves in state worker), a fallback,
    recovery: the control API, /metrics and `lwfsm report` give one count of each (lwfsm.turn.moves)."""
    from prometheus_client.parser import text_string_to_metric_families

    from lwfsm.cli import main

    logs = tmp_path / "trace"
    params = {"LWFSM_PARAM_LEAD_TURNS": "0", "LWFSM_PARAM_FAILURE_THRESHOLD": "1", "LWFSM_PARAM_FALLBACK_TURNS": "1"}
    gw = Gateway(
        "--api-key-env", "GW_KEY", "--log-dir", str(logs), env={**_env("openai", oai.base), **PRICED, **params}
    )
    run_tests = {
        "tool_calls": [{"id": "call_3", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}]
    }
    oai.script("gpt-4o-mini", {}, {"status": 503}, run_tests)
    reactions = {
        1: [{"role": "user", "content": "Good, go on."}],
        2: [{"role": "user", "content": "Fine. Run the tests."}],
        3: [
            {"role": "tool", "tool_call_id": "call_3", "content": "Traceback (most recent call last):\nAssertionError"}
        ],
        4: [{"role": "user", "content": "Looks right. Go on."}],
        5: [{"role": "user", "content": "Thanks, continue."}],
    }
    try:
        key, served = _calls(gw, "moves", 6, lambda n, _: reactions.get(n, []))
        session = gw.control("GET", f"/lwfsm/sessions/{key}").json()
        totals = gw.control("GET", "/lwfsm/sessions").json()["totals"]
        page = gw.control("GET", "/metrics").text
    finally:
        gw.stop()
    samples = [s for family in text_string_to_metric_families(page) for s in family.samples]
    metrics: dict[str, float] = {}
    for s in samples:
        metrics[s.name] = metrics.get(s.name, 0) + s.value  # summed over labels
    labelled = {
        (s.name, tuple(sorted(s.labels.items())))
        for s in samples
        if s.name in ("lwfsm_fallbacks_total", "lwfsm_technical_fallbacks_total")
    }
    assert served == [
        ("worker", "worker"),
        ("worker", "lead"),  # the technical fallback: served by the lead, the machine stays in worker
        ("worker", "worker"),  # its failure enters fallback
        ("fallback", "lead"),
        ("recovery", "worker"),
        ("worker", "worker"),  # pending: not judged, counted nowhere yet
    ]
    assert main(["report", str(logs), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["total"]
    # Served roles worker, lead, worker, lead, worker would be four switches and two fallbacks by role
    # changes; the machine moved twice (worker -> fallback -> recovery), entering one fallback.
    counts = {"switches": 2, "fallbacks": 1, "technical_fallbacks": 1}
    assert {k: session[k] for k in counts} == counts
    assert {k: totals[k] for k in counts} == counts
    assert {k: report[k] for k in counts} == counts
    assert report["fallback_lengths"] == {"1": 1}
    assert report["turns_by_role"] == {"worker": 3, "lead": 2}
    assert {k: metrics.get(f"lwfsm_{k}_total") for k in counts} == counts
    assert labelled == {
        ("lwfsm_fallbacks_total", (("from_state", "worker"), ("to_state", "fallback"))),
        ("lwfsm_technical_fallbacks_total", (("role", "lead"), ("state", "worker"))),
    }


def test_a_trace_file_named_by_a_changed_row_is_refused_before_any_call(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    """The trace file's name is kept in the stored row: whoever can write the store (a shared Redis) could
    set it to a path, and the gateway would append turns to any file it may write. A name it did not give
    is a 409 at the call's start (nothing paid, nothing written), naming the row's value."""
    import sqlite3
    import tempfile

    # (a short path: the client's message is cut to a bounded length, and pytest-xdist's folders are longer)
    logs, outside = tmp_path / "trace", Path(tempfile.mkdtemp(prefix="lw")) / "o.jsonl"
    gw = Gateway(
        "--api-key-env",
        "GW_KEY",
        "--store",
        f"sqlite:///{tmp_path}/s.db",
        "--log-dir",
        str(logs),
        env=_env("openai", oai.base),
    )
    client = openai.OpenAI(
        base_url=gw.base + "/v1", api_key=GATEWAY_KEY, default_headers={"X-Lwfsm-Session": "t"}, max_retries=0
    )
    messages: list[Any] = [{"role": "user", "content": "Write a parser."}]
    try:
        for text in ("ok", "and the tests"):  # the second call judges the first turn: the file is named
            messages.append(
                client.chat.completions.create(model="x", messages=messages).choices[0].message.model_dump()
            )
            messages.append({"role": "user", "content": text})
        db = sqlite3.connect(tmp_path / "s.db")
        ((key, data),) = db.execute("SELECT id, data FROM lwfsm_sessions").fetchall()
        lines = data.split("\n")
        at = next(i for i, line in enumerate(lines) if '"trace"' in line)
        meta = json.loads(lines[at])
        assert (logs / meta["trace"]).is_file()
        lines[at] = json.dumps({**meta, "trace": str(outside)})
        db.execute("UPDATE lwfsm_sessions SET data = ? WHERE id = ?", ("\n".join(lines), key))
        db.commit()
        db.close()
        before = len(oai.requests)
        with pytest.raises(openai.ConflictError) as refused:
            client.chat.completions.create(model="x", messages=messages)
    finally:
        gw.stop()
    assert f"the row names the trace file {str(outside)!r}, which is no name the gateway gives" in str(refused.value)
    assert len(oai.requests) == before  # refused before the upstream was called
    assert not outside.exists()
    outside.parent.rmdir()


def _metrics(page: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0) + s.value
    return out


def _fire(gw: Gateway, key: str, event: str) -> httpx.Response:
    return httpx.post(
        f"{gw.base}/lwfsm/sessions/{key}/events/{event}", headers={"authorization": f"Bearer {GATEWAY_KEY}"}, timeout=10
    )


def _calls(
    gw: Gateway, session: str, calls: int, react: Any, fire_after: int | None = None, event: str = "turn_completed"
) -> tuple[str, list[tuple[str, str]]]:
    """`calls` Chat calls of one conversation (each answer followed by `react(n, answer)`'s messages), and
    `event` fired by hand after call `fire_after`: its key, and the (state, role) serving each."""
    client = openai.OpenAI(
        base_url=gw.base + "/v1", api_key=GATEWAY_KEY, default_headers={"X-Lwfsm-Session": session}, max_retries=0
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "The parser test fails; please fix it."}]
    served, key = [], ""
    for n in range(1, calls + 1):
        raw = client.chat.completions.with_raw_response.create(model="any", messages=messages, tools=TOOLS)
        served.append((raw.headers["x-lwfsm-state"], raw.headers["x-lwfsm-role"]))
        key = raw.headers["x-lwfsm-session"]
        messages.append(raw.parse().choices[0].message.model_dump(exclude_none=True))
        messages += react(n, messages[-1])
        if n == fire_after:
            fired = _fire(gw, key, event)
            assert fired.status_code == 200, fired.text
    return key, served


def _go_on(n: int, answer: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "Good, go on."}]


def test_a_served_turn_closed_by_hand_is_in_the_trace(
    oai: openai_server.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator fires turn_completed after call 2: the turn it closes was served and billed, so it is
    a line of the trace (kind null: fired by hand) and `lwfsm report` counts its cost; it had no line,
    and the report was short by a call against the control API and /metrics."""
    from lwfsm.cli import main
    from lwfsm.cost import PriceMap
    from lwfsm.turn.ledger import Usage

    logs = tmp_path / "trace"
    gw = Gateway(
        "--api-key-env", "GW_KEY", "--store", f"sqlite:///{tmp_path}/s.db", "--log-dir", str(logs),
        env={**_env("openai", oai.base), **PRICED},
    )  # fmt: skip
    _script(oai)
    try:
        key, _ = _calls(gw, "fix", 4, _reactions_openai, fire_after=2)
        control = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    finally:
        gw.stop()
    lines = [json.loads(x) for f in logs.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert [(r["turn"], r["outcome"], r["kind"]) for r in lines][:2] == [
        (1, "turn_completed", "ok"),
        (2, "turn_completed", None),
    ]
    assert [r["turn"] for r in lines] == [1, 2, 3]  # the 4th call's turn is still open
    capsys.readouterr()
    assert main(["report", str(logs), "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    pending = PriceMap()("openai/gpt-4o-mini", Usage(prompt_tokens=11, completion_tokens=7))  # the open 4th call
    assert pending is not None
    assert total["cost"] + pending == pytest.approx(control["cost"])


def test_technical_fallback_turn_closed_by_hand(tmp_path: Path, capsys: Any) -> None:
    """Call 2 is served by the lead in state worker (the worker answered 503: a technical fallback); an
    operator then closes its turn by hand. The control API, /metrics and the report of the trace count
    it alike (the report counted one, the others none)."""
    from lwfsm.cli import main

    oai = openai_server.Server()  # its own: the module's server keeps steps other tests left
    logs = tmp_path / "trace"
    params = {"LWFSM_PARAM_LEAD_TURNS": "0"}
    gw = Gateway(
        "--api-key-env", "GW_KEY", "--log-dir", str(logs), env={**_env("openai", oai.base), **PRICED, **params}
    )
    oai.script("gpt-4o-mini", {}, {"status": 503}, {})
    try:
        key, served = _calls(gw, "tf", 3, _go_on, fire_after=2)
        session = gw.control("GET", f"/lwfsm/sessions/{key}").json()
        page = gw.control("GET", "/metrics").text
    finally:
        gw.stop()
        oai.close()
    capsys.readouterr()
    assert main(["report", str(logs), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["total"]
    m = _metrics(page)
    got = {
        "control": session["technical_fallbacks"],
        "metrics": m.get("lwfsm_technical_fallbacks_total", 0),
        "report": report["technical_fallbacks"],
    }
    assert served[1] == ("worker", "lead")
    assert got["control"] == got["metrics"] == got["report"] == 1, got


def test_last_switch_turn_of_a_turn_closed_by_hand(tmp_path: Path, capsys: Any) -> None:
    """lead_turns 3: turn_completed fired by hand closes turn 3 and switches lead_initial -> worker: the
    control API's last switch names turn 3, as the trace line and the timeline do (it said 2)."""
    oai = openai_server.Server()  # its own: the module's server keeps steps other tests left
    logs = tmp_path / "trace"
    gw = Gateway("--api-key-env", "GW_KEY", "--log-dir", str(logs), env={**_env("openai", oai.base), **PRICED})
    oai.script("gpt-4o", {}, {}, {})
    try:
        key, _ = _calls(gw, "ls", 3, _go_on, fire_after=3)
        session = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    finally:
        gw.stop()
        oai.close()
    lines = [json.loads(x) for f in logs.glob("*.jsonl") for x in f.read_text().splitlines()]
    switched = [r for r in lines if r["transition"]["source"] != r["transition"]["dest"]]
    assert session["last_switch"]["turn"] == switched[-1]["turn"]


def test_a_conversation_reset_by_hand_is_read_by_report(tmp_path: Path, capsys: Any) -> None:
    """An operator resets a conversation after call 3 (a new conversation under the same id, counting
    turns from 1 again). The gateway's --log-dir stays readable by `lwfsm report`, which counted every
    judged turn: it refused the trace, turn numbers repeating in one file."""
    from lwfsm.cli import main

    oai = openai_server.Server()  # its own: the module's server keeps steps other tests left
    logs = tmp_path / "trace"
    gw = Gateway("--api-key-env", "GW_KEY", "--log-dir", str(logs), env={**_env("openai", oai.base), **PRICED})
    try:
        key, served = _calls(gw, "rs", 7, _go_on, fire_after=3, event="reset")
        session = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    finally:
        gw.stop()
        oai.close()
    files = sorted(([json.loads(x) for x in f.read_text().splitlines()] for f in logs.glob("*.jsonl")), key=len)
    # before the reset, turns 1-2; after it, the turn it left open (call 3's) is the new conversation's first
    assert [[(r["turn"], r["transition"]["source"]) for r in f] for f in files] == [
        [(1, "lead_initial"), (2, "lead_initial")],
        [(1, "lead_initial"), (2, "lead_initial"), (3, "lead_initial"), (4, "worker")],
    ]
    # lead_turns 3 counted anew: the open turn, then calls 4 and 5; the worker from call 6
    assert served[3:] == [("lead_initial", "lead")] * 2 + [("worker", "worker")] * 2
    assert session["turn"] == 4
    capsys.readouterr()
    assert main(["report", str(logs), "--json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["total"]["turns"] == 6  # the 7th call's turn is still open
    # the file begun later (after the reset) is the one read as another conversation, whatever the random
    assert {c["session"]: c["turns"] for c in report["conversations"]} == {key: 2, f"{key}#2": 4}
