"""Costs, reports and the simulator (lwfsm.cost): the trace format, cache-aware prices, replay."""

from __future__ import annotations

import collections
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwfsm import Engine, load_spec
from lwfsm.cli import main
from lwfsm.cost import PriceMap, TraceError, cache_split, load_trace, summarise
from lwfsm.cost.records import SCHEMA_PATH, TraceRecord, parse_lines, schema
from lwfsm.cost.simulate import Replayer, compile_table, monte_carlo, replayed, simulate
from lwfsm.diagram import role_colours
from lwfsm.spec import Spec
from lwfsm.turn.core import CUT_SHORT, append_record
from lwfsm.turn.ledger import Usage

from .conftest import SPECS

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

LEAD, WORKER = "gpt-4o", "gpt-4o-mini"


def rec(turn: int, role: str, outcome: str = "turn_completed", **kw: Any) -> dict[str, Any]:
    model = LEAD if role == "lead" else WORKER
    return {"session": "s1", "turn": turn, "role": role, "model": model, "outcome": outcome, **kw}


# A hand-written trace: lead_worker with its defaults (lead_turns 3, threshold 2, fallback 2).
HAND = [
    rec(1, "lead", prompt_tokens=1000, completion_tokens=100, cache_write_tokens=1000),
    rec(2, "lead", "failure", reason="tests failed", prompt_tokens=1500, completion_tokens=100, cache_read_tokens=1000),
    rec(3, "lead", prompt_tokens=2000, completion_tokens=100, cache_read_tokens=1500, cache_write_tokens=500),
    rec(
        4,
        "worker",
        "failure",
        reason="tests failed",
        prompt_tokens=2500,
        completion_tokens=200,
        cache_write_tokens=2500,
    ),
    rec(
        5,
        "worker",
        "failure",
        reason="user correction",
        prompt_tokens=3000,
        completion_tokens=200,
        cache_read_tokens=2500,
    ),
    rec(6, "lead", prompt_tokens=3500, completion_tokens=100),
    rec(7, "lead", prompt_tokens=4000, completion_tokens=100, cache_read_tokens=3500),
    rec(8, "worker", prompt_tokens=4500, completion_tokens=200),
]


def write(tmp_path: Path, records: list[dict[str, Any]], name: str = "t.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


# ---- the record format ---------------------------------------------------------------------------


def test_schema_file_is_generated_from_the_record_model() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == schema()


def test_hand_written_trace_validates_against_the_schema_file() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for r in HAND:
        jsonschema.validate(r, json.loads(SCHEMA_PATH.read_text()))
    assert len(parse_lines([json.dumps(r) for r in HAND], "hand")) == len(HAND)


def test_the_turn_core_record_is_a_trace_record() -> None:
    # What the adapter and the gateway log (Judged.record) loads as a trace record, field for field.
    from lwfsm.engine import TransitionRecord
    from lwfsm.turn.core import Judged, PendingTurn

    usage = Usage(prompt_tokens=900, completion_tokens=50, cache_read_tokens=800, reasoning_tokens=10)
    pending = PendingTurn(turn=4, state="worker", role="worker", model=WORKER, reply={}, usage=usage, latency=0.25)
    judged = Judged(
        pending, "failure", "tests failed", TransitionRecord(4, "failure", "worker", "worker", "x", None, 7)
    )
    written = judged.record("conv-1", cost=0.001)
    loaded = TraceRecord.model_validate(written)
    assert set(written) == set(TraceRecord.model_fields)
    assert loaded.model_dump() == written
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(json.dumps(written)), json.loads(SCHEMA_PATH.read_text()))


def test_bad_traces_give_located_errors(tmp_path: Path) -> None:
    lines = [
        json.dumps(HAND[0]),
        "{not json",
        json.dumps({**HAND[1], "prompt_tokens": -3}),
        json.dumps({k: v for k, v in HAND[2].items() if k != "model"}),
        json.dumps(HAND[0]),  # turn 1 again after turn 1
        json.dumps({**HAND[3], "cache_read_tokens": 9999}),
        "[1, 2]",
        json.dumps({**HAND[3], "turn": 5, "cache_reads_tokens": 9000}),  # misspelt: it was dropped, priced as 0
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError) as info:
        load_trace(path)
    problems = info.value.problems
    assert problems[0].startswith(f"{path}:2: not JSON")
    assert problems[1].startswith(f"{path}:3: prompt_tokens: Input should be greater than or equal to 0")
    assert problems[2] == f"{path}:4: model: required field is missing"
    assert problems[3].startswith(f"{path}:5: turn: session 's1' goes from turn 1 (line 1) to turn 1")
    assert problems[4].startswith(f"{path}:6: cache_read_tokens + cache_write_tokens (12499) exceed prompt_tokens")
    assert problems[5] == f"{path}:7: expected a JSON object, got list"
    assert "unknown token count 'cache_reads_tokens' (did you mean 'cache_read_tokens'?)" in problems[6]
    assert problems[6].startswith(f"{path}:8: ")
    assert len(problems) == 7


def test_report_cli_bad_trace_exits_1_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(HAND[0]) + "\n" + json.dumps({**HAND[1], "turn": "two"}) + "\n")
    assert main(["report", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: turn: Input should be a valid integer" in err
    assert "Traceback" not in err


# ---- prices --------------------------------------------------------------------------------------


def hand_price(model: str, prompt: int, completion: int, read: int, write: int) -> float:
    import litellm

    e = litellm.model_cost[model]
    write_rate = e.get("cache_creation_input_token_cost") or e["input_cost_per_token"]
    return (
        (prompt - read - write) * e["input_cost_per_token"]
        + read * e["cache_read_input_token_cost"]
        + write * write_rate
        + completion * e["output_cost_per_token"]
    )


def test_price_uses_the_cache_fields_of_the_price_map() -> None:
    prices = PriceMap()
    u = Usage(prompt_tokens=2000, completion_tokens=100, cache_read_tokens=1500, cache_write_tokens=500)
    assert prices.price(LEAD, u) == pytest.approx(hand_price(LEAD, 2000, 100, 1500, 500))
    # the cache discount is real: the same tokens uncached cost more
    assert prices.price(LEAD, u) < prices.price(LEAD, Usage(prompt_tokens=2000, completion_tokens=100))  # type: ignore[operator]
    assert prices.price("openai/gpt-4o", u) == prices.price(LEAD, u)
    assert prices.price("no-such-model-anywhere", u) is None


def test_missing_cache_price_falls_back_only_when_the_map_says_there_is_no_cache() -> None:
    base = {"input_cost_per_token": 1.0, "output_cost_per_token": 2.0}
    prices = PriceMap(
        {"nocache": {**base, "supports_prompt_caching": False}, "caches": {**base, "supports_prompt_caching": True}}
    )
    u = Usage(prompt_tokens=10, completion_tokens=1, cache_read_tokens=4)
    assert prices.price("nocache", u) == 10 * 1.0 + 2.0
    assert prices.price("caches", u) is None  # a caching model without a read price: no guess
    assert prices.price("caches", Usage(prompt_tokens=10, cache_write_tokens=10)) == 10.0


def test_cache_split_a_switch_starts_cold_one_model_stays_warm() -> None:
    usages = [
        Usage(prompt_tokens=1000, cache_write_tokens=1000),
        Usage(prompt_tokens=1500, cache_read_tokens=1000, cache_write_tokens=500),
        Usage(prompt_tokens=2000, cache_write_tokens=2000),  # recorded after a switch: cold
    ]
    alone = cache_split(usages, ["a", "a", "b"], ["a", "a", "a"])
    assert alone[:2] == usages[:2]
    assert (alone[2].cache_read_tokens, alone[2].cache_write_tokens) == (1500, 500)
    switched = cache_split(usages, ["a", "a", "a"], ["a", "b", "b"])
    assert (switched[1].cache_read_tokens, switched[1].cache_write_tokens) == (0, 1500)
    assert switched[2] == usages[2]


def test_report_costs_match_a_hand_computation(tmp_path: Path) -> None:
    records = load_trace(write(tmp_path, HAND))
    s = summarise(records)
    actual = sum(
        hand_price(
            r["model"],
            r["prompt_tokens"],
            r["completion_tokens"],
            r.get("cache_read_tokens", 0),
            r.get("cache_write_tokens", 0),
        )
        for r in HAND
    )
    assert s.total.cost == pytest.approx(actual)
    # lead alone: the recorded-cold turns 4, 6 and 8 would have been warm on one model
    warm = {4: (1500 + 500, 0), 6: (3000 - 0, 0), 8: (4000 - 500, 0)}
    lead_alone = 0.0
    for i, r in enumerate(HAND):
        read, write_ = r.get("cache_read_tokens", 0), r.get("cache_write_tokens", 0)
        if r["turn"] in warm:
            prev = HAND[i - 1]
            read = max(
                read, min(r["prompt_tokens"], prev.get("cache_read_tokens", 0) + prev.get("cache_write_tokens", 0))
            )
            write_ = max(0, write_ - (read - r.get("cache_read_tokens", 0)))
        lead_alone += hand_price(LEAD, r["prompt_tokens"], r["completion_tokens"], read, write_)
    assert s.total.all_lead == pytest.approx(lead_alone)
    t = s.total
    assert (t.turns["lead"], t.turns["worker"], t.switches, t.fallbacks) == (5, 3, 3, {2: 1})
    (c,) = s.conversations  # the per-turn costs the HTML page draws add up to the conversation's
    assert c.costs == pytest.approx(
        [
            hand_price(
                r["model"],
                r["prompt_tokens"],
                r["completion_tokens"],
                r.get("cache_read_tokens", 0),
                r.get("cache_write_tokens", 0),
            )
            for r in HAND
        ]
    )
    assert c.roles == [r["role"] for r in HAND]
    assert dict(t.failures) == {"tests failed": 2, "user correction": 1}
    assert t.failing_worker_turns == 2


def test_fallback_lengths_are_a_histogram_per_conversation_and_in_total() -> None:
    """Two conversations in fallback at once, one ending in it: each run is counted once, at its own length,
    whether the tally keeps conversations or totals only (a sweep)."""
    from lwfsm.cost.report import Tally

    def turn(session: str, n: int, role: str) -> TraceRecord:
        return TraceRecord(session=session, turn=n, role=role, model=LEAD if role == "lead" else WORKER, outcome="ok")

    roles = {"a": "worker lead lead lead worker lead", "b": "worker lead worker lead lead"}
    interleaved = [(s, n, r) for n in range(6) for s, seq in roles.items() for r in seq.split()[n : n + 1]]
    totals = []
    for per_conversation in (True, False):
        tally = Tally(per_conversation=per_conversation)
        for s, n, r in interleaved:
            tally.add(turn(s, n + 1, r), r, False)
        summary = tally.finish(PriceMap())
        totals.append(summary.total.fallbacks)
        if per_conversation:
            a, b = summary.conversations
            assert (a.fallbacks, b.fallbacks) == ({3: 1, 1: 1}, {1: 1, 2: 1})
            assert a.to_dict()["fallback_lengths"] == {"1": 1, "3": 1}
            assert summary.rows()[0]["fallback_lengths"] == "1 3"
    assert totals == [{1: 2, 2: 1, 3: 1}] * 2


def test_unknown_model_cost_is_unknown_not_guessed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, [{**HAND[0], "model": "my-private-model"}, HAND[1]])
    s = summarise(load_trace(path))
    assert s.total.cost is None
    assert main(["report", path]) == 0
    assert "unknown" in capsys.readouterr().out


def test_report_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, HAND)
    assert main(["report", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["turns_by_role"] == {"lead": 5, "worker": 3}
    assert data["total"]["fallback_lengths"] == {"2": 1}  # length -> fallbacks of that length
    assert main(["report", path, "--csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("session,turns,turns_by_role,switches")
    assert out[-1].startswith("total,8,")
    html = tmp_path / "r.html"
    assert main(["report", path, "--html", str(html)]) == 0
    page = html.read_text()
    assert "<svg" in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_the_report_page_says_what_it_draws(tmp_path: Path) -> None:
    """Read as a person reads the page: a gateway's ids (one long prefix, the key's tag) were all cut to
    the same 110 px; the cost chart drew 12 of 15 conversations without saying so, with no axis titles;
    a 10-turn conversation was drawn as long as a 30-turn one."""
    gen = tmp_path / "g.jsonl"
    assert (
        main(["simulate", "lead_worker", "--generate", "--turns", "150", "--conversations", "15", "-o", str(gen)]) == 0
    )
    records = [json.loads(line) for line in gen.read_text().splitlines()]
    for r in records:
        r["session"] = "k513af96951.oa" + r["session"].split("-")[1]
    records = [r for r in records if r["session"] != "k513af96951.oa2" or r["turn"] <= 5]  # one shorter
    for r in records:  # a client's id with a bidi override, which showed another id
        r["session"] = r["session"].replace("oa3", "\u202eoa3")
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in records))
    page_file = tmp_path / "r.html"
    assert main(["report", str(trace), "--html", str(page_file)]) == 0
    page = page_file.read_text()
    assert "(the first 12 of 15 conversations)" in page
    assert ">turn</text>" in page
    assert "cost so far, $" in page
    assert "<code title='k513af96951.oa15'><span dir='ltr'>k513af96951.oa15</span></code>" in page
    assert "direction:rtl" in page  # a long id shows its end
    assert "\u202e" not in page
    assert "k513af96951.\\u202eoa3" in page  # written out, not obeyed
    widths = re.findall(r"<div class='tl'><code title='([^']+)'>.*?<svg[^>]*>(.*?)</svg>", page)
    cells = {name: body.count("height='14'") for name, body in widths}
    last_x = {name: float(re.findall(r"<rect x='([\d.]+)' y='2'", body)[-1]) for name, body in widths}
    assert cells["k513af96951.oa2"] == 5
    assert last_x["k513af96951.oa2"] < last_x["k513af96951.oa1"] / 2  # drawn shorter, on one scale


def test_prices_of_ones_own_price_a_model_litellm_does_not_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-hosted worker (or a negotiated price) had no price anywhere: actual cost, savings and the
    dashboard's totals were unknown for good. LWFSM_PRICES names a JSON file of prices over LiteLLM's."""
    tokens = {"prompt_tokens": 2000, "completion_tokens": 50}
    local = "openai/qwen2.5-coder-local"
    trace = [rec(1, "lead", **tokens), rec(2, "worker", **tokens, model=local), rec(3, "worker", **tokens, model=local)]
    path = write(tmp_path, trace)
    assert main(["report", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["cost"] is None  # LiteLLM has no price for it
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({"openai/qwen2.5-coder-local": {"input_cost_per_token": 0, "output_cost_per_token": 1e-6}})
    )
    monkeypatch.setenv("LWFSM_PRICES", str(prices))
    assert main(["report", path, "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    lead = PriceMap().price(LEAD, TraceRecord.model_validate(trace[0]).usage)
    assert lead is not None
    assert total["cost"] == pytest.approx(lead + 2 * 50 * 1e-6)  # the worker's output at the file's price
    # a price restated keeps what LiteLLM knows besides (its cache prices): the whole row was replaced
    cached = [rec(1, "lead", prompt_tokens=2000, completion_tokens=50, cache_read_tokens=1500)]
    (tmp_path / "c").mkdir()
    cached_path = write(tmp_path / "c", cached)
    monkeypatch.delenv("LWFSM_PRICES")
    assert main(["report", cached_path, "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["total"]["cost"]
    entry = PriceMap().entry(LEAD) or {}
    restated = {k: entry[k] for k in ("input_cost_per_token", "output_cost_per_token")}
    prices.write_text(json.dumps({LEAD: restated}))
    monkeypatch.setenv("LWFSM_PRICES", str(prices))
    assert main(["report", cached_path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["cost"] == pytest.approx(before)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            '{"m": {"input_cost_per_tokens": 1e-6, "output_cost_per_token": 1e-6}}',
            "unknown field 'input_cost_per_tokens' (did you mean 'input_cost_per_token'?)",
        ),
        (
            '{"m": {"input_cost_per_token": -1, "output_cost_per_token": 1e-6}}',
            "input_cost_per_token must be dollars per token, from 0 to 1, got -1",
        ),
        (
            '{"m": {"input_cost_per_token": 1e-6}}',
            "output_cost_per_token must be dollars per token, from 0 to 1, got None",
        ),
        ('{"m": ', "not JSON: Expecting value: line 1 column 7"),
        ('["m"]', "expected an object of models"),
        (
            '{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6, "supports_prompt_caching": true}}',
            "caches prompts (supports_prompt_caching) and has no cache_read_input_token_cost",
        ),
    ],
)
def test_a_wrong_prices_file_is_refused_naming_the_model_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, text: str, said: str
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(text)
    monkeypatch.setenv("LWFSM_PRICES", str(prices))
    path = write(tmp_path, [rec(1, "lead")])
    for args in (["report", path], ["simulate", "lead_worker", "--trace", path]):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert f"LWFSM_PRICES={prices}: " in err
        assert said in err


def test_report_groups_judged_failures_by_their_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def judged(turn: int, excerpt: str) -> dict[str, Any]:
        why = f"task failure: claude_code.exit_status=1 at message 1, line 1: {excerpt!r}"
        evidence = {"rule": "claude_code.exit_status=1", "message": 0, "line": 1, "excerpt": excerpt}
        return rec(turn, "worker", "failure", reason=why, kind="task_failure", evidence=evidence)

    trace = [rec(1, "lead"), judged(2, "FAILED test_a"), judged(3, "FAILED test_b"), rec(4, "lead", "failure")]
    assert main(["report", write(tmp_path, trace)]) == 0
    out = capsys.readouterr().out
    # one group per rule, not one per quoted line; a record without evidence by its reason
    assert "failures by rule or reason: claude_code.exit_status=1 2; (no reason) 1" in out
    assert "no price" not in out
    unpriced = [{**r, "model": "openai/big" if r["role"] == "lead" else r["model"]} for r in trace]
    assert main(["report", write(tmp_path, unpriced)]) == 0
    assert "no price for openai/big in LiteLLM's price map: their costs are unknown" in capsys.readouterr().out


def test_html_pages_colour_roles_as_the_diagrams_and_say_what_is_simulated(tmp_path: Path) -> None:
    path = write(tmp_path, HAND)
    fills = role_colours(load_spec("lead_worker"))  # lead orange, worker (cheap) green
    assert main(["report", path, "--html", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    for role in ("lead", "worker"):
        assert f"<span style='background:{fills[role]};color:#000;padding:1px 6px'>{role}</span>" in page
        assert f"fill='{fills[role]}'" in page  # the timeline's cells
    assert "Cost over turns (cumulative, actual)" in page
    assert "simulated" not in page
    escalation = role_colours(load_spec("escalation"))  # a third role, in the diagram's third colour
    assert len(set(escalation.values())) == 3
    args = ["--set", "failure_threshold=1", "--model", "expert=gpt-4o", "--html", str(tmp_path / "s.html")]
    assert main(["simulate", "escalation", "--trace", path, *args]) == 0
    page = (tmp_path / "s.html").read_text()
    assert "<title>lwfsm simulate</title>" in page
    assert "Cost over turns (cumulative, simulated)" in page
    assert "<th>$ simulated</th>" in page
    assert "actual" not in page
    for role, fill in escalation.items():
        assert f"background:{fill};color:#000;padding:1px 6px'>{role}</span>" in page


def test_simulated_table_says_simulated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "lead_worker", "--trace", write(tmp_path, HAND)]) == 0
    out = capsys.readouterr().out
    assert "$ simulated" in out
    assert "simulated cost is " in out
    assert "actual" not in out


# ---- replay and the transition table -------------------------------------------------------------


def test_replay_gives_the_role_sequence_of_lwfsm_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = load_trace(write(tmp_path, HAND))
    events = ",".join(r["outcome"] for r in HAND)
    for params in ({}, {"lead_turns": 1}, {"lead_turns": 0, "failure_threshold": 1}):
        sets = [x for k, v in params.items() for x in ("--set", f"{k}={v}")]
        assert main(["trace", "lead_worker", *sets, "--events", events, "--json"]) == 0
        expected = [row["role"] for row in json.loads(capsys.readouterr().out)]
        simulated = replayed(load_spec("lead_worker", params), records)
        assert [role for _, _, role, _ in simulated] == expected
    assert expected == ["worker", "worker", "lead", "lead", "lead", "lead", "worker", "worker"]


def test_a_role_without_a_model_is_said_and_can_be_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, HAND)
    escalation = str(Path(SPECS[0]).parent / "escalation.yaml")
    assert main(["simulate", escalation, "--trace", path]) == 0
    assert "role expert has no model in the trace and none was given" in capsys.readouterr().out
    assert main(["simulate", escalation, "--trace", path, "--model", "expert=gpt-4o", "--json"]) == 0
    assert "no model" not in json.loads(capsys.readouterr().out)["note"]
    assert main(["simulate", escalation, "--trace", path, "--model", "boss=gpt-4o"]) == 1
    assert "has no role 'boss'" in capsys.readouterr().err


def test_simulate_cli_states_the_assumption(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, HAND)
    assert main(["simulate", "lead_worker", "--trace", path, "--set", "lead_turns=1"]) == 0
    out = capsys.readouterr().out
    assert "replay assumes a turn's outcome does not depend on which model served it" in out
    assert "transition table over" in out


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    spec_path=st.sampled_from(SPECS),
)
def test_table_and_engine_give_the_same_role_every_turn(data: st.DataObject, spec_path: Path) -> None:
    spec = load_spec(spec_path)
    params = {
        n: data.draw(st.integers(p.min, min(p.min + 4, p.max if p.max is not None else p.min + 4)), label=n)
        for n, p in spec.params.items()
    }
    spec = spec.with_params(params)
    ok, fail = spec.judging.events
    outcomes = data.draw(st.lists(st.sampled_from([ok, fail]), max_size=60), label="outcomes")
    table = Replayer(spec)
    assert table.table is not None
    session = Engine(spec, history=0).session()
    expected = []
    for event in outcomes:
        expected.append((session.state, session.role))
        session.apply(event)
    assert table.run(outcomes) == expected


def test_unsaturable_spec_falls_back_to_the_engine_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = Path(SPECS[0]).parent.joinpath("lead_worker.yaml").read_text()
    text = text.replace("updates: {failures: failures + 1}", "updates: {failures: 'max(failures + 1, failures)'}")
    spec_path = tmp_path / "odd.yaml"
    spec_path.write_text(text)
    spec = load_spec(spec_path)
    replayer = Replayer(spec)
    assert replayer.table is None
    assert "cannot be saturated" in replayer.how
    records = load_trace(write(tmp_path, HAND))
    simulated = list(replayed(load_spec("lead_worker"), records))
    fallback = list(replayed(spec, records, replayer))
    assert [r[1:] for r in fallback] == [r[1:] for r in simulated]
    assert main(["simulate", str(spec_path), "--trace", write(tmp_path, HAND)]) == 0
    assert "the engine, turn by turn" in capsys.readouterr().out


# ---- Monte-Carlo, sweeps, synthetic traces -------------------------------------------------------


def test_monte_carlo_mean_converges_on_a_closed_form_case() -> None:
    # lead_turns 0, threshold 1, fallback 1, the lead never fails: a two-state Markov chain
    # (worker -> lead with probability p, lead -> worker always); E[lead turns] follows exactly.
    pytest.importorskip("numpy")
    spec = load_spec("lead_worker", {"lead_turns": 0, "failure_threshold": 1, "fallback_turns": 1})
    p, turns = 0.3, 40
    q, expected = 0.0, 0.0  # q: probability that turn t is served by the lead
    for _ in range(turns):
        expected += q
        q = p * (1 - q)
    result = monte_carlo(
        compile_table(spec),
        {"lead": 0.0, "worker": p},
        conversations=20000,
        turns=turns,
        success="turn_completed",
        fail="failure",
    )
    lead = result.turns_by_role["lead"]
    assert lead.low <= expected <= lead.high
    assert abs(lead.mean - expected) < 0.05 * expected
    worker_failures = result.failing_worker_turns.mean
    assert worker_failures == pytest.approx(p * (turns - expected), rel=0.03)


def test_estimated_probabilities_carry_their_uncertainty() -> None:
    pytest.importorskip("numpy")
    table = compile_table(load_spec("lead_worker", {"lead_turns": 0}))
    kw: dict[str, Any] = {"conversations": 4000, "turns": 50, "success": "turn_completed", "fail": "failure"}
    known = monte_carlo(table, {"lead": 0.0, "worker": 0.3}, **kw)
    few = monte_carlo(table, {"lead": 0.0, "worker": 0.3}, observed={"worker": (3, 10)}, **kw)
    assert known.failing_worker_turns.spread is not None
    assert few.failing_worker_turns.spread is not None
    width = [e.spread[1] - e.spread[0] for e in (known.failing_worker_turns, few.failing_worker_turns) if e.spread]
    assert width[1] > 1.5 * width[0]  # ten observed turns say little about p: conversations spread wider


def test_monte_carlo_reads_outcomes_through_the_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trace's "ok" is the spec's success, as in the plain replay (every "ok" was a failure, and the
    figures said so without a word); a role the spec does not have is the same located error."""
    pytest.importorskip("numpy")
    said_ok = write(tmp_path, [{**r, "outcome": "ok"} for r in HAND if r["outcome"] == "turn_completed"])
    assert main(["simulate", "lead_worker", "--trace", said_ok, "--monte-carlo", "200"]) == 0
    assert "failure probabilities: lead 0 (estimated" in capsys.readouterr().out
    typo = write(tmp_path, [*HAND[:3], {**HAND[3], "role": "wroker"}], "typo.jsonl")
    assert main(["simulate", "lead_worker", "--trace", typo, "--monte-carlo", "200"]) == 1
    assert "role 'wroker' is not a role of spec 'lead_worker' (did you mean 'worker'?)" in capsys.readouterr().err


def test_an_event_fired_by_hand_is_no_failure_of_the_turn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [rec(1, "lead", "ok"), rec(2, "lead", "reset"), rec(3, "lead", "fail")]
    trace = write(tmp_path, records)
    assert main(["report", trace, "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert (total["turns"], total["failures"]) == (3, 1)  # the reset is no failure; the "fail" is
    assert main(["simulate", "lead_worker", "--trace", trace, "--json"]) == 0  # the replay counts as report does
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["total"]["failures"] == 1
    # a spec that maps a failure kind to its success event: those turns are successes, and a success is one
    text = (Path(__file__).resolve().parents[1] / "specs" / "lead_worker.yaml").read_text()
    assert "    user_correction: failure" in text
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(text.replace("    user_correction: failure", "    user_correction: turn_completed"))
    assert (
        main(
            [
                "report",
                "--spec",
                str(lenient),
                write(tmp_path, [rec(1, "lead", "ok"), rec(2, "lead", "fail")]),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["total"]["failures"] == 1


def test_generate_then_simulate_monte_carlo_and_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("numpy")
    out = tmp_path / "gen.jsonl"
    assert (
        main(["simulate", "lead_worker", "--generate", "--turns", "200", "--conversations", "4", "-o", str(out)]) == 0
    )
    records = load_trace(out)
    assert len(records) == 200
    assert len({r.session for r in records}) == 4
    capsys.readouterr()
    assert main(["simulate", "lead_worker", "--trace", str(out), "--monte-carlo", "500", "--fail-worker", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "worker 0.5 (given)" in text
    assert "estimated from the trace" in text
    assert "cost $:" in text
    args = ["simulate", "lead_worker", "--trace", str(out), "--sweep", "lead_turns=0..2", "failure_threshold=1..2"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "6 combinations ranked by cost" in lines[0]
    assert len(lines) == 3 + 6
    assert lines[1].split() == ["lead_turns", "failure_threshold", "cost", "$", "failing", "worker", "turns", "Pareto"]
    assert len(lines[2].split()) == 5  # every column has a heading
    costs = [float(line.split()[2]) for line in lines[3:]]
    assert costs == sorted(costs)
    assert any(line.endswith("*") for line in lines[3:])


def test_readme_report_excerpt_is_what_the_cli_prints(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (excerpt,) = re.findall(r"```\n\$ (lwfsm report [^\n]*)\n(.*?)```", readme, re.S)
    line, expected = excerpt
    root = Path(__file__).resolve().parent.parent
    assert main([line.split()[1], str(root / line.split()[2])]) == 0
    assert capsys.readouterr().out == expected


def test_vectorised_replay_matches_turn_by_turn() -> None:
    np = pytest.importorskip("numpy")
    spec = load_spec("lead_worker", {"lead_turns": 1})
    replayer = Replayer(spec)
    assert replayer.table is not None
    rng = np.random.default_rng(3)
    events = (rng.random((50, 40)) < 0.4).astype(np.int32)  # 0: turn_completed, 1: failure
    assert replayer.table.events[:2] == ("turn_completed", "failure")
    configs = replayer.run_many(events)
    for row, convo in zip(configs, events, strict=True):
        names = [replayer.table.events[e] for e in convo]
        assert [replayer.table.roles[c] for c in row] == replayer.roles(names)


# ---- streaming, bounds and messages (issue 22; issue 19 item 7) ----------------------------------


def test_simulate_reads_litellm_prices_without_importing_litellm(tmp_path: Path) -> None:
    # Importing LiteLLM costs seconds and configures it as a side effect: the price map is its data file.
    path = write(tmp_path, HAND)
    code = (
        "import sys, json\n"
        "from lwfsm.cli import main\n"
        f"assert main(['simulate', 'lead_worker', '--trace', {path!r}, '--json']) == 0\n"
        f"assert main(['report', {path!r}]) == 0\n"
        "print('LITELLM', 'litellm' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.rstrip().endswith("LITELLM False")
    assert json.loads(out[: out.index("\nlead alone")].rsplit("\n}", 1)[0] + "\n}")["total"]["cost"] > 0


def test_gzip_and_directories_read_as_plain_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = write(tmp_path, HAND)
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(Path(plain).read_bytes()))
    (folder / "notes.txt").write_text("not a trace")
    assert main(["report", plain, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["report", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert main(["report", str(tmp_path / "empty")]) == 1


def test_parquet_needs_pyarrow_and_says_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.parquet"
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        path.write_bytes(b"PAR1")
        assert main(["report", str(path)]) == 1
        assert f"{path}: reading Parquet needs pyarrow: pip install 'lwfsm[parquet]'" in capsys.readouterr().err
        return
    columns = sorted({k for r in HAND for k in r})  # from_pylist takes its columns from the first row
    pq.write_table(pyarrow.Table.from_pylist([{k: r.get(k) for k in columns} for r in HAND]), path)
    assert main(["report", str(path), "--json"]) == 0
    from_parquet = json.loads(capsys.readouterr().out)
    assert main(["report", write(tmp_path, HAND), "--json"]) == 0
    assert from_parquet == json.loads(capsys.readouterr().out)


def test_a_session_restarting_in_another_file_is_located(tmp_path: Path) -> None:
    first, second = write(tmp_path, HAND[:3], "a.jsonl"), write(tmp_path, HAND[:1], "b.jsonl")
    with pytest.raises(TraceError) as info:
        load_trace(first, second)
    assert info.value.problems == [
        f"{second}:1: turn: session 's1' goes from turn 3 ({first}:3) to turn 1; turns of a conversation must increase"
    ]


def test_a_session_begun_anew_in_a_file_of_its_own_is_another_conversation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway's trace of a conversation deleted or expired, then begun again under its id, is a file
    of its own from turn 1: `s1#2`, not a problem. Its turn 1 the same as the first's is a file read twice."""
    again = [rec(1, "lead", prompt_tokens=70, completion_tokens=7), rec(2, "lead", prompt_tokens=90)]
    first, second = write(tmp_path, HAND[:3], "a.jsonl"), write(tmp_path, again, "b.jsonl")
    got = load_trace(first, second)
    assert [(r.session, r.turn) for r in got] == [("s1", 1), ("s1", 2), ("s1", 3), ("s1#2", 1), ("s1#2", 2)]
    assert [r.prompt_tokens for r in got if r.session == "s1#2"] == [70, 90]
    assert main(["report", str(tmp_path), "--json"]) == 0
    assert [c["session"] for c in json.loads(capsys.readouterr().out)["conversations"]] == ["s1", "s1#2"]
    (tmp_path / "more").mkdir()
    with pytest.raises(TraceError, match="goes from turn 2"):  # begun anew in the same file: not the gateway's
        load_trace(write(tmp_path / "more", [*HAND[:2], *again], "c.jsonl"))
    with pytest.raises(TraceError, match="goes from turn 3"):  # the same file again, or a copy
        load_trace(first, write(tmp_path / "more", HAND[:3], "a.jsonl"))
    # A trace that has its own `s1#2` too: the one begun anew is named past it, and nothing is merged.
    (tmp_path / "own").mkdir()
    taken = [{**r, "session": "s1#2"} for r in HAND[:3]]
    got = load_trace(write(tmp_path / "own", HAND[:3] + taken, "a.jsonl"), write(tmp_path / "own", again, "b.jsonl"))
    assert [(r.session, r.turn) for r in got][-5:] == [("s1#2", 1), ("s1#2", 2), ("s1#2", 3), ("s1#3", 1), ("s1#3", 2)]


def test_problems_past_the_first_hundred_are_counted_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n" * 250)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert (len(info.value.problems), info.value.more) == (100, 150)
    assert str(info.value).endswith("(and 230 more)")


NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            json.dumps({**HAND[0], "prompt_tokens": int("9" * 4000)}),
            ":1: prompt_tokens: an integer of 4000 digits is not",
        ),
        (json.dumps({**HAND[0], "prompt_tokens": -5}), ":1: prompt_tokens: Input should be greater than or equal to 0"),
        (json.dumps(HAND[0])[:-1] + ', "latency": NaN}', ":1: latency: Input should be a finite number"),
        (json.dumps(HAND[0])[:-1] + ', "cost": Infinity}', ":1: cost: Input should be a finite number"),
        (NESTED, ":1: nested too deeply to be a trace record"),
        ('{"a": ' * 5000 + "1" + "}" * 5000, ":1: nested too deeply to be a trace record"),
        ("x" * (2 << 20), ":1: line longer than 1,048,576 bytes: not a trace record"),
        ('"just a string"', ":1: expected a JSON object, got str"),
    ],
    ids=["4000-digits", "negative", "nan", "infinity", "nested-list", "nested-object", "long-line", "string"],
)
def test_absurd_lines_are_one_located_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n" + json.dumps(HAND[1]) + "\n")
    for argv in (["report", str(path)], ["simulate", "lead_worker", "--trace", str(path)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"lwfsm {argv[0]}: {path}{message}"), err[:300]
        assert len(err.splitlines()) == 1
        assert len(err) < 300


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--sweep", "lead_turns=0..999", "failure_threshold=1..999"],
            "999,000 combinations; at most 10,000: narrow",
        ),
        (["--sweep", "lead_turns=0..99999999999999999999"], "expected NAME=A..B (integers)"),
        (["--monte-carlo", "0"], "--monte-carlo 0: must be from 1 to 1,000,000"),
        (["--monte-carlo", "-3"], "--monte-carlo -3: must be from 1 to 1,000,000"),
        (["--monte-carlo", "1000000000000"], "--monte-carlo 1000000000000: must be from 1 to 1,000,000"),
        (["--monte-carlo", "1000000", "--conversation-turns", "5000"], "more than 1,000,000,000 turn draws"),
        (["--fail-worker", "1.5", "--monte-carlo", "10"], "--fail-worker 1.5: a probability is a number from 0 to 1"),
        (["--fail-lead", "nan", "--monte-carlo", "10"], "--fail-lead nan: a probability is a number from 0 to 1"),
        (["--fail-worker", "-0.1", "--monte-carlo", "10"], "--fail-worker -0.1: a probability"),
        (["--monte-carlo", "10", "--seed", "-1"], "--seed -1: must be from 0 to"),
        (["--html", "/nonexistent-dir/r.html"], "--html /nonexistent-dir/r.html: cannot write: No such file"),
    ],
)
def test_simulate_flags_out_of_bounds_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    path = write(tmp_path, HAND)
    assert main(["simulate", "lead_worker", "--trace", path, *flags]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--turns", "100000000000"], "--turns 100000000000: must be from 1 to 10,000,000"),
        (["--turns", "0"], "--turns 0: must be from 1 to 10,000,000"),
        (["--turns", "10", "--conversations", "11"], "--conversations 11: must be from 1 to 10"),
        (["--burst", "2"], "--burst 2.0: a probability is a number from 0 to 1"),
        (["--prompt-tokens", "-1"], "--prompt-tokens -1: must be from 0 to 1,000,000,000,000"),
        (["--growth", "1000000000000", "--turns", "100"], "the last turn's context would be"),
        (["-o", "/nonexistent-dir/gen.jsonl"], "-o /nonexistent-dir/gen.jsonl: cannot write: No such file"),
    ],
)
def test_generate_flags_out_of_bounds_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    out = tmp_path / "gen.jsonl"
    assert main(["simulate", "lead_worker", "--generate", "-o", str(out), *flags]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_no_output_is_written_over_a_trace_the_command_reads_or_a_recorded_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report T --html T` wrote its page over the trace; `simulate --generate -o` over a gateway's
    recorded conversation, which `report` then counted as real. Refused, the file as it was; a trace
    generated before is written over (re-running a generation)."""
    gen, logs = tmp_path / "gen.jsonl", tmp_path / "logs"
    logs.mkdir()
    assert main(["simulate", "lead_worker", "--generate", "--turns", "20", "--conversations", "2", "-o", str(gen)]) == 0
    recorded = logs / "k1.conv.jsonl"
    recorded.write_text(gen.read_text().replace("synthetic-", "conv-"))
    blank = tmp_path / "blank-first.jsonl"
    blank.write_text("\n" + recorded.read_text())  # read as a trace all the same
    spec = tmp_path / "mine.yaml"
    spec.write_text((Path(__file__).resolve().parents[1] / "specs" / "lead_worker.yaml").read_text())
    kept = {p: p.read_bytes() for p in (gen, recorded, blank, spec)}
    refused = [
        (["report", str(gen), "--html", str(gen)], f"--html {gen} is {gen}, which this command reads"),
        (["report", str(logs), "--html", str(logs / "new.jsonl")], "it would be read as a trace of"),
        (["simulate", "lead_worker", "--trace", str(gen), "--html", str(gen)], "which this command reads"),
        (
            ["simulate", "lead_worker", "--trace", str(gen), "--sweep", "lead_turns=1..2", "--plot", str(gen)],
            "which this command reads",
        ),
        (
            ["simulate", "lead_worker", "--generate", "-o", str(recorded)],
            "holds something other than a generated trace",
        ),
        (["simulate", "lead_worker", "--generate", "-o", str(blank)], "holds something other than a generated trace"),
        (["report", gen.as_uri(), "--html", str(gen)], "which this command reads"),  # the same file, as a URL
        (["report", str(gen), "--spec", str(spec), "--html", str(spec)], "which this command reads"),  # its spec
    ]
    capsys.readouterr()
    for args, said in refused:
        assert main(args) == 1, args
        assert said in capsys.readouterr().err, args
    assert {p: p.read_bytes() for p in kept} == kept
    assert main(["simulate", "lead_worker", "--generate", "--turns", "4", "--conversations", "2", "-o", str(gen)]) == 0
    assert len(gen.read_text().splitlines()) == 4  # a generated trace is generated anew
    # a pipe is written to, not read first (reading it waited for good)
    piped = subprocess.run(
        [sys.executable, "-m", "lwfsm", "simulate", "lead_worker", "--generate", "--turns", "3", "-o", "/dev/stdout"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert len(piped.stdout.splitlines()) == 3
    dashed = subprocess.run(
        [sys.executable, "-m", "lwfsm", "simulate", "lead_worker", "--generate", "--turns", "2", "-o", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (dashed.returncode, len(dashed.stdout.splitlines())) == (0, 2)  # standard output, not a file "-"
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--fail-worker", "0.5"], "--fail-worker: it is read by --monte-carlo (and --generate) only"),
        (["--seed", "3"], "--seed: it is read by --monte-carlo (and --generate) only"),
        (["--fail-worker", "0"], "--fail-worker: it is read by --monte-carlo"),  # 0 was taken for not given
        (["--conversation-turns", "9"], "--conversation-turns: it is read by --monte-carlo only"),
        (["--generate", "-o", "g.jsonl", "--model", "lead=x"], "(--lead and --worker name the models it writes)"),
        (["--turns", "5", "--burst", "0.2"], "--turns, --burst: they are read by --generate only"),
        (["--sweep", "lead_turns=1..2", "--csv"], "--csv: it is not written by a sweep"),
        (["--monte-carlo", "10", "--html", "mc.html"], "--html: it is not written by --monte-carlo"),
        (["--lead", "gpt-4.1", "--model", "lead=gpt-4o"], "--lead and --model lead=...: both name the lead's model"),
        (
            ["--generate", "-o", "g.jsonl", "--sweep", "lead_turns=1..2"],
            "--trace, --sweep: they are not read by --generate",
        ),
    ],
)
def test_a_flag_simulate_would_not_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], said: str
) -> None:
    """Flags another way of running simulate reads were ignored, exit 0: a replay printed the same figures
    with --fail-worker 0.5 as without; a sweep wrote no --csv; --model lost to --lead without a word."""
    trace = str(Path(__file__).resolve().parents[1] / "tests" / "traces" / "example.jsonl")
    given = [str(tmp_path / f) if f.endswith(".html") else f for f in flags]
    assert main(["simulate", "lead_worker", "--trace", trace, *given]) == 1
    err = capsys.readouterr().err
    assert said in err, err
    assert not (tmp_path / "mc.html").exists()


@pytest.mark.parametrize(
    ("flags", "lengths"),
    [(["--turns", "105", "--conversations", "10"], [10] * 5 + [11] * 5), (["--turns", "5"], [1] * 5)],
)
def test_generate_writes_the_turns_asked_for(tmp_path: Path, flags: list[str], lengths: list[int]) -> None:
    """--turns 105 --conversations 10 wrote 100 turns, and --turns 5 wrote 10 (ten conversations of one),
    without a word."""
    out = tmp_path / "g.jsonl"
    assert main(["simulate", "lead_worker", "--generate", "-o", str(out), *flags]) == 0
    sessions = collections.Counter(json.loads(line)["session"] for line in out.read_text().splitlines())
    assert sorted(sessions.values()) == lengths


def test_monte_carlo_says_when_it_prices_turns_whose_tokens_were_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every worker turn of the trace without reported tokens: report says unknown, and Monte-Carlo gave
    a definite cost with no word that the worker's tokens were the lead's."""
    pytest.importorskip("numpy")
    gen, trace = tmp_path / "gen.jsonl", tmp_path / "t.jsonl"
    assert (
        main(["simulate", "lead_worker", "--generate", "--turns", "120", "--conversations", "4", "-o", str(gen)]) == 0
    )
    records = [json.loads(line) for line in gen.read_text().splitlines()]
    blank = dict(prompt_tokens=0, completion_tokens=0, cache_read_tokens=0, cache_write_tokens=0, unreported=1)
    workers = sum(r["role"] == "worker" for r in records)
    trace.write_text("".join(json.dumps({**r, **blank} if r["role"] == "worker" else r) + "\n" for r in records))
    capsys.readouterr()
    assert main(["simulate", "lead_worker", "--trace", str(trace), "--monte-carlo", "50", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["unknown_usage"]
    assert f"worker {workers} of {workers}" in said
    assert "another role's where this role has none" in said
    assert main(["simulate", "lead_worker", "--trace", str(gen), "--monte-carlo", "50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unknown_usage"] is None
    sweep = ["simulate", "lead_worker", "--trace", str(trace), "--monte-carlo", "20", "--sweep", "lead_turns=1..2"]
    assert main(sweep) == 0  # a sweep of Monte-Carlo runs says it too
    assert f"worker {workers} of {workers}" in capsys.readouterr().out


# ---- calibration: a spec simulated on its own trace gives the trace back -------------------------


def test_replay_of_the_traces_own_spec_reproduces_its_cost_exactly(tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    assert (
        main(["simulate", "lead_worker", "--generate", "--turns", "600", "--conversations", "12", "-o", str(out)]) == 0
    )
    for path, spec in ((out, load_spec("lead_worker")), (Path(write(tmp_path, HAND)), load_spec("lead_worker"))):
        recorded = summarise(load_trace(path))
        replay = simulate(spec, load_trace(path))
        assert replay.total.cost == recorded.total.cost
        assert [c.cost for c in replay.conversations] == [c.cost for c in recorded.conversations]
        assert replay.total.turns == recorded.total.turns
        assert replay.total.fallbacks == recorded.total.fallbacks
        assert replay.total.all_lead == recorded.total.all_lead


def test_monte_carlo_fitted_on_a_trace_contains_the_traces_own_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The trace's lead turns come early with small contexts; priced at the mean tokens per turn,
    # the forecast was 40% too high with an interval far from the truth.
    pytest.importorskip("numpy")
    out = tmp_path / "gen.jsonl"
    gen = ["--turns", "4000", "--conversations", "100", "--fail-worker", "0.25", "--seed", "3"]
    assert main(["simulate", "lead_worker", "--generate", *gen, "-o", str(out)]) == 0
    capsys.readouterr()
    truth = summarise(load_trace(out))
    assert truth.total.cost is not None
    per_conversation = truth.total.cost / len(truth.conversations)
    assert main(["simulate", "lead_worker", "--trace", str(out), "--monte-carlo", "20000", "--json"]) == 0
    forecast = json.loads(capsys.readouterr().out)
    assert forecast["cost"]["low"] <= per_conversation <= forecast["cost"]["high"]
    assert forecast["trace_conversations"] == 100
    assert forecast["cost"]["mean"] == pytest.approx(per_conversation, rel=0.02)  # the old forecast: 26% high
    # the interval is what a trace of 100 conversations could average, not the 20,000 simulated ones' mean
    assert 0.05 * per_conversation < forecast["cost"]["high"] - forecast["cost"]["low"] < 0.25 * per_conversation
    assert re.search(
        r"were worker to fail 1.5x as often as recorded \(worker 0\.2\d* -> 0\.3\d*; each conversation's draw from "
        r"the posterior x1\.5, at most 1\)",
        forecast["sensitivity"],
    )
    cost_then = float(forecast["sensitivity"].split("cost $ ")[1].split()[0])
    assert cost_then > forecast["cost"]["mean"]  # more worker failures: more fallbacks to the lead


def test_a_monte_carlo_interval_stays_within_what_it_averages() -> None:
    # fitted on one conversation, the normal interval of what a trace that size averages reached below $0
    np = pytest.importorskip("numpy")
    from lwfsm.cost.simulate import _estimate

    rare = np.array([0.0] * 19 + [1.0])  # most conversations cost nothing, one costs $1
    wide = _estimate(rare, trace=1)
    assert wide.low == 0.0 < wide.mean < wide.high
    one = _estimate(np.array([0.3]), trace=1)  # one sample says nothing of the spread: unbounded above
    assert (one.low, one.high) == (0.0, float("inf"))
    narrow = _estimate(np.array([0.4, 0.5, 0.6] * 400), trace=1000)
    assert 0.4 < narrow.low < 0.5 < narrow.high < 0.6


def test_monte_carlo_output_states_the_assumption_and_the_sensitivity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("numpy")
    out = tmp_path / "gen.jsonl"
    assert (
        main(["simulate", "lead_worker", "--generate", "--turns", "400", "--conversations", "8", "-o", str(out)]) == 0
    )
    assert main(["simulate", "lead_worker", "--trace", str(out), "--monte-carlo", "2000"]) == 0
    text = capsys.readouterr().out
    assert "assumes a turn's outcome does not depend on the model that served it" in text
    assert "tokens per turn are the trace's at the same turn position and role" in text
    assert "sensitivity: were worker to fail 1.5x as often as recorded" in text


def test_report_counts_moves_from_states_and_transitions_as_the_gateway_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With `state` and `transition` recorded, a lead turn in state worker (a technical fallback) is no
    switch and no fallback; the last turn's switch counts though no turn follows it (lwfsm.turn.moves)."""

    def moved(turn: int, state: str, role: str, outcome: str, dest: str) -> dict[str, Any]:
        return rec(turn, role, outcome, state=state, transition={"source": state, "dest": dest})

    trace = [
        moved(1, "worker", "worker", "turn_completed", "worker"),
        moved(2, "worker", "lead", "turn_completed", "worker"),  # the worker's model answered 503
        moved(3, "worker", "worker", "failure", "fallback"),
        moved(4, "fallback", "lead", "turn_completed", "recovery"),
        moved(5, "recovery", "worker", "failure", "fallback"),
    ]
    assert main(["report", write(tmp_path, trace), "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert (total["switches"], total["fallbacks"], total["technical_fallbacks"]) == (3, 2, 1)
    assert total["fallback_lengths"] == {"0": 1, "1": 1}  # the second one entered by the last judged turn
    # The same outcomes replayed through the spec (whose roles serve every turn) count the same moves,
    # less the technical fallback, which no replay has.
    sets = ["--set", "lead_turns=0", "--set", "failure_threshold=1", "--set", "fallback_turns=1"]
    assert main(["simulate", "lead_worker", *sets, "--trace", write(tmp_path, trace), "--json"]) == 0
    out = capsys.readouterr().out
    simulated = json.loads(out[out.index("{") :])["total"]
    assert (simulated["switches"], simulated["fallbacks"], simulated["technical_fallbacks"]) == (3, 2, 0)
    odd = [moved(1, "working", "worker", "turn_completed", "working")]
    assert main(["report", write(tmp_path, odd)]) == 1
    err = capsys.readouterr().err
    assert "session 's1' turn 1: 'working' is not a state, event or role of spec 'lead_worker'" in err
    assert "--spec" in err


@pytest.mark.parametrize(
    ("record", "said"),
    [
        (
            rec(2, "worker", "succes"),
            "outcome 'succes' is not an event of spec 'lead_worker' (did you mean 'success'?)",
        ),
        (rec(2, "boss"), "role 'boss' is not a role of spec 'lead_worker'"),
    ],
)
def test_an_outcome_or_role_the_spec_does_not_have_is_named_not_counted(
    record: dict[str, Any], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counted as a failure, a misspelt outcome would invent fallbacks that never happened."""
    trace = write(tmp_path, [rec(1, "lead"), record, rec(3, "lead", "failed")])
    assert main(["report", trace]) == 1  # said at the line that holds it (a session and a turn were named)
    assert f"lwfsm report: {trace}:2: {said}: a typo in the trace, or a trace of another spec" in (
        capsys.readouterr().err
    )
    for extra in ([], ["--monte-carlo", "20"]):
        assert main(["simulate", "lead_worker", "--trace", trace, *extra]) == 1
        assert f"{trace}:2: {said}" in capsys.readouterr().err


def test_a_sweep_says_why_its_costs_are_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write(tmp_path, [rec(1, "lead", unreported=1), rec(2, "lead", prompt_tokens=900, completion_tokens=50)])
    assert main(["simulate", "lead_worker", "--trace", trace, "--sweep", "lead_turns=1..2"]) == 0
    out = capsys.readouterr().out
    assert "unknown" in out.splitlines()[-2]
    assert out.splitlines()[-1] == (
        "1 of 2 turns have no reported usage (the upstream sent none, or the record has no token counts): their "
        "tokens and cost are unknown, so is every cost that includes them"
    )


def test_a_sweep_plot_says_what_it_cannot_draw_and_keeps_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write(tmp_path, [rec(1, "lead", unreported=1)])
    sweep = ["simulate", "lead_worker", "--trace", trace, "--sweep", "lead_turns=1..2"]
    assert main(["simulate", "lead_worker", "--trace", trace, "--plot", str(tmp_path / "p.png")]) == 1
    assert "--plot draws a sweep's combinations: add --sweep" in capsys.readouterr().err  # was: nothing, exit 0
    assert main([*sweep, "--plot", str(tmp_path / "no" / "p.png")]) == 1  # was: a traceback, after the replay
    assert "there is no folder" in capsys.readouterr().err
    assert main([*sweep, "--plot", f"{tmp_path}/"]) == 1  # a folder: was a hidden ".png" in it
    assert f"--plot {tmp_path}/: give a file to write, e.g. {tmp_path}/sweep.png" in capsys.readouterr().err
    assert main([*sweep, "--plot", str(tmp_path / "p.xyz")]) == 1  # was refused after the whole sweep ran
    out, err = capsys.readouterr()
    assert (out, f"--plot {tmp_path / 'p.xyz'}: name a file matplotlib writes: " in err) == ("", True)
    assert ".jpg" in err
    # one range per param (the second replaced the first); a sweep runs here (--scheduler was ignored)
    assert main([*sweep, "lead_turns=5..6"]) == 1
    assert "--sweep lead_turns=5..6: lead_turns has a range already" in capsys.readouterr().err
    assert main([*sweep, "--sweep", "lead_turns=5..6"]) == 1  # a second --sweep adds to the first
    assert "--sweep lead_turns=5..6: lead_turns has a range already" in capsys.readouterr().err
    assert main([*sweep, "--scheduler", "tcp://127.0.0.1:1"]) == 1
    assert "not with --monte-carlo or --sweep" in capsys.readouterr().err
    pytest.importorskip("matplotlib", reason="--plot draws with matplotlib: pip install matplotlib")
    assert main([*sweep, "--plot", str(tmp_path / "p.png")]) == 1  # every cost unknown: was max() of nothing
    out, err = capsys.readouterr()
    assert "sweep of lead_worker: 2 combinations ranked by failing worker turns (every cost unknown)" in out
    assert "no combination has a known cost (see above): nothing to draw" in err
    assert not (tmp_path / "p.png").exists()


def test_when_the_total_is_unknown_the_known_part_is_said_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One turn without reported usage made every total unknown, and the share of the lead alone vanished:
    the conversations known whole are summed apart, and said to be a part."""
    tokens = {"prompt_tokens": 1000, "completion_tokens": 100}
    known = [{**rec(n, "lead", **tokens), "session": "a"} for n in (1, 2)]
    unknown = [{**rec(1, "lead", **tokens), "session": "b"}, {**rec(2, "lead"), "session": "b"}]
    path = write(tmp_path, [*known, *unknown])
    assert main(["report", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["cost"] is None
    alone = next(c for c in data["conversations"] if c["session"] == "a")
    assert data["known"] == {"conversations": 1, "of": 2, "cost": alone["cost"], "all_lead": alone["all_lead"]}
    assert main(["report", path, "--html", str(tmp_path / "r.html")]) == 0
    assert "the 1 of 2 conversations whose costs are all known: actual cost" in capsys.readouterr().out
    assert "the 1 of 2 conversations whose costs are all known" in (tmp_path / "r.html").read_text()
    (tmp_path / "k").mkdir()
    assert main(["report", write(tmp_path / "k", known), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["known"] is None  # nothing unknown: no part to say


def test_a_record_with_no_token_counts_has_an_unknown_cost_not_zero(tmp_path: Path) -> None:
    """A trace written by hand or by another tool, its tokens left out: unknown, as unreported usage is."""
    plain = {"session": "s", "role": "lead", "model": "anthropic/claude-sonnet-4-5", "outcome": "turn_completed"}
    trace = tmp_path / "t.jsonl"
    lines = [{**plain, "turn": 1}, {**plain, "turn": 2, "prompt_tokens": 1000, "completion_tokens": 100}]
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = summarise(load_trace(trace))
    assert summary.total.unknown_usage == 1
    assert summary.total.cost is None
    # cache counts without prompt_tokens: unknown too (they were said to exceed a prompt_tokens of 0)
    cached = ({"completion_tokens": 200, "cache_write_tokens": 1000}, {"cache_read_tokens": 70})
    for partial in ({"reasoning_tokens": 5000}, {"prompt_tokens": 1000}, {"cache_read_tokens": 0}, *cached):
        one = tmp_path / "partial.jsonl"  # an input or output count left out: unknown, not 0 ($0 before)
        one.write_text(json.dumps({**plain, "turn": 1, **partial}) + "\n")
        assert summarise(load_trace(one)).total.cost is None, partial
    zero = tmp_path / "zero.jsonl"  # zero tokens said so are zero
    zero.write_text(json.dumps({**plain, "turn": 1, "prompt_tokens": 0, "completion_tokens": 0}) + "\n")
    assert summarise(load_trace(zero)).total.cost == 0


def test_a_last_line_cut_short_is_skipped_saying_so_and_the_rest_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """What a writer killed mid-line leaves: the file's last line, no newline, not JSON."""
    whole = "".join(json.dumps(r) + "\n" for r in HAND)
    (tmp_path / "killed.jsonl").write_text(whole + '{"session": "s2", "turn": 1, "ro')
    assert main(["report", str(tmp_path / "killed.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["turns"] == len(HAND)
    assert f"killed.jsonl:{len(HAND) + 1}: skipped: the last line is cut short (its writer stopped)" in caplog.text
    (tmp_path / "deep.jsonl").write_text(whole + "[" * 100_000)  # cut short and nested past reading
    assert main(["report", str(tmp_path / "deep.jsonl")]) == 0
    assert "deep.jsonl:9: skipped: the last line is cut short" in caplog.text
    # the conversation goes on (a restarted process appends to the same trace): the writer ends the cut
    # line first, and the reader passes over it wherever it is, saying so
    capsys.readouterr()
    cut = json.dumps({**HAND[0], "session": "s2", "reason": None})
    for at in (len(cut) - 3, len(cut) - 20, 30, 1):  # inside a null, a string, a key; after the brace
        resumed = tmp_path / f"resumed{at}.jsonl"
        resumed.write_text(whole + cut[:at])
        assert append_record(resumed, {**HAND[0], "session": "s3"}) is None
        assert main(["report", str(resumed), "--json"]) == 0, cut[:at]
        assert json.loads(capsys.readouterr().out)["total"]["turns"] == len(HAND) + 1
        said = f"resumed{at}.jsonl:{len(HAND) + 1}: skipped: a record cut short (its writer stopped mid-line)"
        assert said in caplog.text
    # a trace written to a pipe (log="/dev/stdout" | ...): written as it comes, nothing to look back at
    import subprocess
    import sys

    code = (
        "import sys\nfrom lwfsm.turn.core import append_record\n"
        "sys.exit(append_record('/dev/stdout', {'a': 1}) is not None)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert (done.returncode, done.stdout) == (0, b'{"a": 1}\n'), done.stderr
    # anywhere else a broken line is an error, and nothing is summed
    (tmp_path / "broken.jsonl").write_text('{"session": "s2", "turn": 1} x\n' + whole)
    assert main(["report", str(tmp_path / "broken.jsonl")]) == 1
    assert "broken.jsonl:1:" in capsys.readouterr().err


def test_a_trace_piped_in_is_read() -> None:
    """`... | lwfsm report /dev/stdin`, plain or gzip: a pipe cannot seek back ("not seekable")."""
    import gzip
    import subprocess
    import sys

    text = "".join(json.dumps(r) + "\n" for r in HAND).encode()
    for data in (text, gzip.compress(text)):
        done = subprocess.run(
            [sys.executable, "-m", "lwfsm", "report", "/dev/stdin", "--json"], input=data, capture_output=True
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["total"]["turns"] == len(HAND)


def test_writers_appending_at_once_mark_no_line_cut_short(tmp_path: Path) -> None:
    """A writer that found another's big line half written took it for a killed writer's and marked it."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom lwfsm.turn.core import append_record\n"
        "for i in range(30):\n"
        "    append_record(sys.argv[1], {'session': sys.argv[2], 'turn': i + 1, 'pad': 'x' * int(sys.argv[3])})\n"
    )
    trace = tmp_path / "t.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", code, str(trace), name, size])
        for name, size in (("big", "2000000"), ("small", "10"), ("small2", "10"))
    ]
    assert [w.wait(120) for w in writers] == [0, 0, 0]
    lines = trace.read_bytes().splitlines()
    assert len(lines) == 90
    assert not [n for n, line in enumerate(lines, 1) if line.endswith(CUT_SHORT)]


def _json_of(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_the_lead_and_the_worker_are_the_specs_not_their_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec whose roles are called `strong` and `small` (`small` cheap) is reported and simulated as
    lead_worker is: its lead alone, its worker alone, its fallbacks; they were unknown and 0 (the
    figures looked for roles named "lead" and "worker")."""
    root = Path(__file__).resolve().parents[1]
    spec = re.sub(r"\bworker\b", "small", re.sub(r"\blead\b", "strong", (root / "specs/lead_worker.yaml").read_text()))
    (tmp_path / "roles.yaml").write_text(spec)
    trace = (root / "tests/traces/example.jsonl").read_text()
    (tmp_path / "roles.jsonl").write_text(
        trace.replace('"role": "lead"', '"role": "strong"').replace('"role": "worker"', '"role": "small"')
    )
    before = _json_of(capsys, "report", str(root / "tests/traces/example.jsonl"), "--spec", "lead_worker")
    for argv in (
        ("report", str(tmp_path / "roles.jsonl"), "--spec", str(tmp_path / "roles.yaml")),
        ("simulate", str(tmp_path / "roles.yaml"), "--trace", str(tmp_path / "roles.jsonl")),
    ):
        renamed = _json_of(capsys, *argv)
        assert (renamed["lead_model"], renamed["worker_model"]) == (before["lead_model"], before["worker_model"])
        for key in ("all_lead", "all_worker", "fallbacks", "failing_worker_turns", "cost"):
            assert renamed["total"][key] == before["total"][key], (argv[0], key)


def test_a_failing_worker_is_a_cheap_role_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """escalation: the worker (cheap), the lead and the expert. Every turn fails: only the worker's
    failed turns are a failing worker's (the lead's and the expert's were counted too), in the replay
    and in the Monte-Carlo estimate."""
    path = tmp_path / "fail.jsonl"
    rows = [
        {"session": "x", "turn": i, "role": "worker", "model": "gpt-4o-mini", "outcome": "failure",
         "prompt_tokens": 1000, "completion_tokens": 10}
        for i in range(1, 9)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    total = _json_of(capsys, "simulate", "escalation", "--trace", str(path), "--model", "expert=gpt-4o")["total"]
    assert total["turns_by_role"] == {"worker": 2, "lead": 2, "expert": 4}
    assert total["failing_worker_turns"] == 2
    spec = load_spec("escalation")
    table = Replayer(spec).table
    assert table is not None
    ok, fail = spec.judging.events
    drawn = monte_carlo(table, {r: 1.0 for r in spec.roles}, conversations=50, turns=8, success=ok, fail=fail,
                        cheap=("worker",))  # fmt: skip
    assert drawn.failing_worker_turns.mean == 2


def test_the_html_page_says_when_a_conversation_is_drawn_in_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its chart and timeline draw the first 2,000 turns of a conversation: a longer one is said to be
    cut, where the page showed $0.53 beside a table of $761 and said nothing."""
    rows = [
        {"session": s, "turn": i, "role": "worker", "model": "gpt-4o-mini", "outcome": "turn_completed",
         "prompt_tokens": 1000, "completion_tokens": 10}
        for s, n in (("long", 2001), ("short", 5))
        for i in range(1, n + 1)
    ]  # fmt: skip
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(path), "--html", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "The first 2,000 turns of each conversation are drawn; long went on longer" in page
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["session"] == "short"))
    assert main(["report", str(path), "--html", str(tmp_path / "r.html")]) == 0
    assert "turns of each conversation are drawn" not in (tmp_path / "r.html").read_text()


def test_a_small_cost_is_not_printed_as_free(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Less than a hundredth of a cent read 0.0000 in the table, as a free call would."""
    rec = {"session": "s", "turn": 1, "role": "worker", "model": "gpt-4o-mini", "outcome": "turn_completed",
           "prompt_tokens": 200, "completion_tokens": 10}  # fmt: skip
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    cost = PriceMap()("gpt-4o-mini", Usage(prompt_tokens=200, completion_tokens=10))
    assert cost is not None
    assert 0 < cost < 0.00005
    capsys.readouterr()
    assert main(["report", str(path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("s "))
    assert f"{cost:.2g}" in row
    assert "0.0000" not in row


def test_simulate_maps_recorded_kinds_by_the_simulated_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spec that counts an environment problem as a failure, simulated on traffic whose turns 4 and 5
    were judged `environment`: two failures and a fallback (the recorded outcome was replayed, so the
    simulation said "no change" for exactly the change the spec makes). Turns fired by hand keep theirs."""
    root = Path(__file__).resolve().parents[1]
    spec = (root / "specs/lead_worker.yaml").read_text()
    assert "environment: turn_completed" in spec
    (tmp_path / "env.yaml").write_text(spec.replace("environment: turn_completed", "environment: failure"))
    rows = [
        {"session": "e", "turn": i, "role": "lead" if i <= 3 else "worker",
         "model": "gpt-4o" if i <= 3 else "gpt-4o-mini", "outcome": "turn_completed",
         "kind": "environment" if i in (4, 5) else "ok", "prompt_tokens": 1000, "completion_tokens": 100}
        for i in range(1, 11)
    ]  # fmt: skip
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recorded = _json_of(capsys, "simulate", "lead_worker", "--trace", str(tmp_path / "t.jsonl"))["total"]
    assert (recorded["failures"], recorded["fallbacks"]) == (0, 0)
    changed = _json_of(capsys, "simulate", str(tmp_path / "env.yaml"), "--trace", str(tmp_path / "t.jsonl"))["total"]
    assert (changed["failures"], changed["fallbacks"]) == (2, 1)


def test_a_spec_of_one_role_keeps_its_leads_settings() -> None:
    """One role is both the lead and the worker: what is given for the lead (its model, its failure
    rate) is not replaced by what is given for the worker."""
    from lwfsm.cost.report import lead_and_worker
    from lwfsm.cost.simulate import bound_models

    solo = Spec.from_dict(
        {
            "lwfsm": 1, "name": "solo", "version": 1, "roles": {"only": {}},
            "events": {"turn_completed": {}, "failure": {}}, "states": {"s": {"role": "only"}}, "initial": "s",
            "transitions": [{"event": "turn_completed", "source": "s"}, {"event": "failure", "source": "s"}],
        }
    )  # fmt: skip
    assert lead_and_worker(solo) == ("only", "only")
    assert bound_models(solo, lambda role: None, "gpt-4o", "gpt-4o-mini") == {"only": "gpt-4o"}
    assert lead_and_worker(load_spec("escalation")) == ("lead", "worker")


def test_a_trace_is_simulated_through_a_spec_without_the_recording_specs_own_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recording spec fired its own event for an environment problem (`env_problem`); a spec without
    that event maps the turn's kind itself. The record was refused ("not an event of spec"), and a spec
    rollout's effect raised instead of saying so. A record with no kind still needs its outcome known."""
    rows = [
        {"session": "e", "turn": i, "role": "lead" if i <= 3 else "worker", "model": "gpt-4o",
         "outcome": "env_problem" if i == 5 else "turn_completed", "kind": "environment" if i == 5 else "ok",
         "prompt_tokens": 1000, "completion_tokens": 100}
        for i in range(1, 8)
    ]  # fmt: skip
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    total = _json_of(capsys, "simulate", "lead_worker", "--trace", str(path))["total"]
    assert (total["turns"], total["failures"]) == (7, 0)
    rows[4]["kind"] = None  # fired by hand: only its outcome says, and lead_worker has no such event
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["simulate", "lead_worker", "--trace", str(path)]) == 1
    assert "outcome 'env_problem' is not an event of spec 'lead_worker'" in capsys.readouterr().err


def test_report_reads_a_trace_written_across_a_spec_rollout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A gateway rolled out a spec renaming `recovery` to `probation` while it wrote its trace: no one
    spec read it (and records do not say theirs); `--spec` given once per spec reads each record with
    the first that knows it."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "renamed.yaml").write_text(
        re.sub(r"\brecovery\b", "probation", (root / "specs/lead_worker.yaml").read_text())
    )
    for spec, out in (("lead_worker", "a.jsonl"), (str(tmp_path / "renamed.yaml"), "b.jsonl")):
        assert (
            main(["simulate", spec, "--generate", "-o", str(tmp_path / out), "--turns", "200", "--conversations", "4"])
            == 0
        )
    b = (tmp_path / "b.jsonl").read_text()
    assert '"probation"' in b
    (tmp_path / "b.jsonl").write_text(b.replace('"synthetic-', '"rolled-'))  # other conversations
    capsys.readouterr()
    assert main(["report", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) == 1
    assert "once per spec a gateway rolled out while it wrote" in capsys.readouterr().err
    both = _json_of(capsys, "report", str(tmp_path), "--spec", "lead_worker", "--spec", str(tmp_path / "renamed.yaml"))
    runs = (("a", "a.jsonl", "lead_worker"), ("b", "b.jsonl", str(tmp_path / "renamed.yaml")))
    one = {name: _json_of(capsys, "report", str(tmp_path / f), "--spec", spec)["total"] for name, f, spec in runs}
    for key in ("turns", "switches", "fallbacks", "failures"):
        assert both["total"][key] == one["a"][key] + one["b"][key], key
    assert both["total"]["fallbacks"] > 0
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["report", str(tmp_path / "empty.jsonl"), "--spec", "lead_worker", "--spec", "lead_worker"]) == 1
    assert "no records in" in capsys.readouterr().err


def test_a_record_is_read_with_the_spec_it_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rolled-out spec with lead_worker's names but the other role cheap: both specs read every record,
    and the first --spec read them all. Each record names the spec that judged it (`Spec.hash`): it is
    read with that one, whatever the order of --spec."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "specs/lead_worker.yaml").read_text()
    text = text.replace('lead: {description: "strong, expensive model"}', 'lead: {description: "x", cheap: true}')
    text = text.replace('worker: {description: "fast, cheap model", cheap: true}', 'worker: {description: "y"}')
    (tmp_path / "v2.yaml").write_text(text)
    trace = str(tmp_path / "v2.jsonl")
    # served with a param set (serve --set): the record names the spec's rules, which report (no params) knows
    v2 = ["simulate", str(tmp_path / "v2.yaml"), "--set", "lead_turns=1", "--generate", "-o", trace, "--turns", "300"]
    assert main(v2) == 0
    alone = _json_of(capsys, "report", trace, "--spec", str(tmp_path / "v2.yaml"))["total"]
    first = _json_of(capsys, "report", trace, "--spec", "lead_worker")["total"]
    assert first["failing_worker_turns"] != alone["failing_worker_turns"]  # the specs differ on this trace
    for order in (("lead_worker", str(tmp_path / "v2.yaml")), (str(tmp_path / "v2.yaml"), "lead_worker")):
        total = _json_of(capsys, "report", trace, "--spec", order[0], "--spec", order[1])["total"]
        for key in ("fallbacks", "failing_worker_turns", "failures", "switches", "turns_by_role"):
            assert total[key] == alone[key], (order, key)


def test_each_conversation_is_read_with_one_spec_and_its_roles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rolled-out spec that renamed its states and made the other role the cheap one: its conversations
    are read with it whatever the order of --spec, their failing worker its cheap role (the first spec's
    cheap role was used for every record)."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "specs/lead_worker.yaml").read_text()
    text = re.sub(r"\blead_initial\b", "planning", re.sub(r"\brecovery\b", "probation", text))  # its own names
    text = text.replace('lead: {description: "strong, expensive model"}', 'lead: {description: "x", cheap: true}')
    text = text.replace('worker: {description: "fast, cheap model", cheap: true}', 'worker: {description: "y"}')
    (tmp_path / "v2.yaml").write_text(text)
    trace = str(tmp_path / "v2.jsonl")
    assert main(["simulate", str(tmp_path / "v2.yaml"), "--generate", "-o", trace, "--turns", "300"]) == 0
    alone = _json_of(capsys, "report", trace, "--spec", str(tmp_path / "v2.yaml"))["total"]
    for order in (("lead_worker", str(tmp_path / "v2.yaml")), (str(tmp_path / "v2.yaml"), "lead_worker")):
        total = _json_of(capsys, "report", trace, "--spec", order[0], "--spec", order[1])["total"]
        for key in ("fallbacks", "failing_worker_turns", "failures", "switches"):
            assert total[key] == alone[key], (order, key)
