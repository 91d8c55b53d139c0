"""The judge's cost per judged turn on agent-sized requests, beside the turn core's plan+settle.

`python tests/benchmarks/bench_judge.py [--quick]`. Requests are the generated corpus's real Claude
Code, Codex and aider requests (tests/judging/generated.jsonl.gz), each padded to what Claude Code
2.1.197 sends on every call (24 tools with 65 KB of JSON schemas, a 12 KB system prompt): 84 KB
bodies. Measured per request, interleaved round by round with two baselines on the same machine:
`json.loads` of the same body (what any front end pays to read it) and the turn core's plan+settle
with the judge stubbed out. Nothing here asserts; medians and the spread across rounds are printed.
"""

from __future__ import annotations

import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from lwfsm import Engine, load_spec
from lwfsm.cli.judging import request_turn
from lwfsm.turn import TurnCore
from lwfsm.turn.agents import base as readers
from lwfsm.turn.judge import Judgement

ROOT = Path(__file__).resolve().parents[2]
QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 7
SCHEMA = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 120} for i in range(20)}}


def padded(row: dict[str, Any]) -> dict[str, Any]:
    body = dict(row["body"])
    tools = [{"name": f"Tool{i}", "description": "d" * 200, "input_schema": SCHEMA} for i in range(24)]
    if row["protocol"] == "anthropic":
        body["system"] = "You are a coding agent. " * 500
        body["tools"] = [*body.get("tools", []), *tools]
    elif row["protocol"] == "responses":
        body["instructions"] = "You are a coding agent. " * 500
        body["tools"] = [*body.get("tools", []), *({"type": "function", **t} for t in tools)]
    else:
        body["messages"] = [{"role": "system", "content": "You are a coding agent. " * 500}, *body["messages"]]
        body["tools"] = [{"type": "function", "function": t} for t in tools]
    return {**row, "body": body}


def timed(fn: Any, items: list[Any]) -> float:
    """Median seconds per item of `fn(item)` over one pass."""
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    rows = [json.loads(x) for x in gzip.open(ROOT / "tests/judging/generated.jsonl.gz", "rt")]
    rows = [padded(r) for r in rows]
    raws = [json.dumps(r["body"]).encode() for r in rows]
    sizes = sorted(len(b) for b in raws)
    core = TurnCore(Engine(load_spec("lead_worker")))
    turns = [request_turn(r) for r in rows]  # (reply, after, tools, messages, headers)

    def judge(t: Any) -> None:
        reply, after, tools, messages, headers = t
        core.judgement(reply, after, tools, messages, headers)

    stub = TurnCore(Engine(load_spec("lead_worker")))
    stub.judgement = lambda *a, **k: Judgement("ok", "generic")  # type: ignore[method-assign]
    convs = []
    for reply, _after, _tools, messages, headers in turns:
        conv = stub.start()
        stub.settle(conv, stub.plan(conv, []), role="lead", model="m", reply=dict(reply))
        convs.append((conv, messages, headers, reply))

    def plan_settle(c: Any) -> None:
        conv, messages, headers, reply = c
        plan = stub.plan(conv, messages, headers=headers)
        stub.settle(conv, plan, role=plan.role, model="m", reply=dict(reply))

    figures: dict[str, list[float]] = {"judge": [], "json.loads": [], "plan+settle (judge stubbed)": []}
    agents = sorted({str(r.get("agent")) for r in rows})
    per_agent: dict[str, list[float]] = {a: [] for a in agents}  # the judge's median per turn of each agent
    for _ in range(ROUNDS):
        # what the readers remember of command lines is forgotten: a round is one pass over the corpus, as
        # a gateway sees its traffic (a turn's history repeats earlier turns' commands), never a turn again
        for rule in vars(readers).values():
            getattr(rule, "cache_clear", lambda: None)()
        times = []
        for t in turns:
            start = time.perf_counter()
            judge(t)
            times.append(time.perf_counter() - start)
        figures["judge"].append(statistics.median(times))
        for a in agents:
            mine = [x for x, r in zip(times, rows, strict=True) if str(r.get("agent")) == a]
            per_agent[a].append(statistics.median(mine))
        figures["json.loads"].append(timed(json.loads, raws))
        figures["plan+settle (judge stubbed)"].append(timed(plan_settle, convs))
    print(
        f"{len(rows)} judged turns; request bodies {sizes[0] // 1024}-{sizes[-1] // 1024} KB "
        f"(median {sizes[len(sizes) // 2] // 1024} KB); {ROUNDS} rounds"
    )
    base = statistics.median(figures["json.loads"])
    for name, xs in figures.items():
        m = statistics.median(xs)
        print(
            f"  {name:<30} median {m * 1e6:7.1f} µs per turn (rounds {min(xs) * 1e6:.1f}-{max(xs) * 1e6:.1f}); "
            f"{m / base:.2f}x json.loads"
        )
    for a, xs in per_agent.items():
        n = sum(str(r.get("agent")) == a for r in rows)
        print(f"  judge, {a + f' ({n} turns)':<23} median {statistics.median(xs) * 1e6:7.1f} µs per turn")


if __name__ == "__main__":
    main()
