"""On demand: what the gateway adds over calling the upstream directly.

A fake OpenAI-compatible upstream (uvicorn, ~20 ms per reply like a provider) and `lwfsm serve`
(fast path: same protocol) and a bare pass-through run as processes on 127.0.0.1; an aiohttp client
sends the same requests to each, targets interleaved in one run, at 1 and 100 concurrent
conversations, streaming and not. Reports added latency p50/p99, requests per second, and each
server's CPU ms per request (from /proc). Run: `PYTHONPATH=. python tests/benchmarks/bench_gateway.py
[--requests 300] [--body agent] [--concurrency 100] [--kinds stream] [--recorder]` (one scenario: to
profile it, attach `py-spy record -p PID` to the gateway). `--recorder` also measures the pass-through
that records each call (below).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[2]
DELAY = 0.02

UPSTREAM = textwrap.dedent(
    """
    import asyncio, json, sys
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
    import uvicorn

    DELAY = float(sys.argv[2])

    async def chat(request):
        body = json.loads(await request.body())
        await asyncio.sleep(DELAY)
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        msg = {"role": "assistant", "content": "All tests pass now; the parser handles nested quotes."}
        head = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        if body.get("stream"):
            async def gen():
                for word in msg["content"].split(" "):
                    d = {**head, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
                    yield b"data: " + json.dumps(d).encode() + b"\\n\\n"
                end = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield b"data: " + json.dumps(end).encode() + b"\\n\\n"
                yield b"data: " + json.dumps({**head, "choices": [], "usage": usage}).encode() + b"\\n\\n"
                yield b"data: [DONE]\\n\\n"
            return StreamingResponse(gen(), media_type="text/event-stream")
        out = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}], "usage": usage}
        return Response(json.dumps(out), media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
    """
)


# The floor: the gateway's own stack (Starlette on uvicorn, aiohttp to the upstream) forwarding the
# bytes, with no identity, judging, store or metrics.
PASSTHROUGH = textwrap.dedent(
    """
    import sys
    import aiohttp
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
    import uvicorn

    UP = f"http://127.0.0.1:{sys.argv[2]}/v1/chat/completions"
    http = None

    async def chat(request):
        global http
        if http is None:
            http = aiohttp.ClientSession()
        up = await http.post(UP, data=await request.body(), headers={"content-type": "application/json"})
        if up.headers.get("content-type", "").startswith("text/event-stream"):
            async def relay():
                try:
                    async for chunk in up.content.iter_any():
                        yield chunk
                finally:
                    up.release()
            return StreamingResponse(relay(), media_type="text/event-stream")
        data = await up.read()
        up.release()
        return Response(data, media_type="application/json")

    async def root(request):
        return Response("ok")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/", root)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
    """
)


# --recorder: a second floor, the pass-through that also does the least a gateway recording each turn
# must: read the body as JSON and write one row per call to SQLite (WAL, synchronous=NORMAL, as lwfsm's
# store), on the event loop. Not lwfsm's baseline (the is the bare pass-through): it tells how much
# of the gateway's cost is recording at all. `GET /` answers how many calls it recorded.
RECORDER = textwrap.dedent(
    """
    import sys, sqlite3, tempfile, time
    import aiohttp, orjson
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
    import uvicorn

    UP = f"http://127.0.0.1:{sys.argv[2]}/v1/chat/completions"
    http = None
    db = sqlite3.connect(tempfile.mkdtemp() + "/r.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER, d TEXT)")
    recorded = 0

    def record(body, sid, reply):
        global recorded
        row = orjson.dumps({"n": len(body["messages"]), "reply": reply, "t": time.time()})
        db.execute(
            "INSERT INTO t VALUES (?, 1, ?) ON CONFLICT(id) DO UPDATE SET v = v + 1, d = excluded.d",
            (sid, row.decode()),
        )
        recorded += 1

    async def chat(request):
        global http
        if http is None:
            http = aiohttp.ClientSession()
        raw = await request.body()
        body, sid = orjson.loads(raw), request.headers.get("x-lwfsm-session", "")
        up = await http.post(UP, data=raw, headers={"content-type": "application/json"})
        if up.headers.get("content-type", "").startswith("text/event-stream"):
            async def relay():
                got = []
                try:
                    async for chunk in up.content.iter_any():
                        got.append(chunk)
                        yield chunk
                finally:
                    up.release()
                record(body, sid, b"".join(got).decode())
            return StreamingResponse(relay(), media_type="text/event-stream")
        data = await up.read()
        up.release()
        record(body, sid, orjson.loads(data))
        return Response(data, media_type="application/json")

    async def root(request):
        return Response(str(recorded))

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/", root)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# --body agent: requests the size a coding agent sends. Claude Code 2.1.197 sends 24 tools whose JSON
# schemas come to 65 KB and a system prompt of ~12 KB on every call (tests/agent_traffic/ has them,
# trimmed): synthetic ones of the same sizes here.
AGENT_SYSTEM = "You are a coding agent. " + "Follow the repository's conventions and explain each change. " * 200
AGENT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Tool {i}: " + "does one careful thing to the working tree and reports it. " * 12,
            "parameters": {
                "type": "object",
                "properties": {
                    f"arg_{j}": {"type": "string", "description": "an argument, described at length " * 4}
                    for j in range(12)
                },
                "required": ["arg_0"],
            },
        },
    }
    for i in range(24)
]
BODY = "small"


def body(conv: int, n: int, stream: bool) -> dict[str, object]:
    system = AGENT_SYSTEM if BODY == "agent" else "You are a coding agent."
    messages: list[dict[str, object]] = [{"role": "system", "content": system}]
    for i in range(n):
        messages += [
            {"role": "user", "content": f"conversation {conv}: step {i}, please continue"},
            {"role": "assistant", "content": "Done; the parser handles nested quotes."},
        ]
    messages.append({"role": "user", "content": f"conversation {conv}: step {n}"})
    out: dict[str, object] = {"model": "any", "messages": messages, "stream": stream}
    if BODY == "agent":
        out["tools"] = AGENT_TOOLS
    if stream:
        out["stream_options"] = {"include_usage": True}
    return out


async def one(client: aiohttp.ClientSession, url: str, payload: dict[str, object], headers: dict[str, str]) -> float:
    data = json.dumps(payload).encode()
    t = time.perf_counter()
    async with client.post(url, data=data, headers={**headers, "content-type": "application/json"}) as r:
        async for _ in r.content.iter_any():
            pass
        assert r.status == 200, r.status
    return time.perf_counter() - t


async def run(
    targets: dict[str, str], concurrency: int, per_slot: int, stream: bool, tag: str, turns: int = 10
) -> dict[str, list[float]]:
    """Each of `concurrency` slots sends `per_slot` calls to each target, alternating targets call by
    call, in conversations of `turns` calls: bodies have the same sizes at every concurrency."""
    lat: dict[str, list[float]] = {t: [] for t in targets}
    # aiohttp as the load generator: httpx's pool costs the client more CPU than the servers under test.
    connector = aiohttp.TCPConnector(limit=concurrency * 2 + 10)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def conversation(c: int) -> None:
            for i in range(per_slot):
                n = i % turns
                headers = {"x-lwfsm-session": f"{tag}-{c}-{i // turns}"}
                order = list(targets) if (c + i) % 2 == 0 else list(reversed(targets))
                for t in order:
                    lat[t].append(await one(client, targets[t], body(c, n, stream), headers))

        await asyncio.gather(*(conversation(c) for c in range(concurrency)))
    return lat


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300, help="calls per target per scenario (about)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 100])
    ap.add_argument("--turns", type=int, default=10, help="calls per conversation (sets the body sizes)")
    ap.add_argument("--body", choices=["small", "agent"], default="small", help="agent: Claude Code-sized requests")
    ap.add_argument("--kinds", nargs="+", choices=["plain", "stream"], default=["plain", "stream"])
    ap.add_argument("--recorder", action="store_true", help="also the pass-through that records each call")
    args = ap.parse_args()
    global BODY
    BODY = args.body
    up_port, gw_port, pt_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LWFSM_LEAD_MODEL": "openai/lead",
        "LWFSM_WORKER_MODEL": "openai/worker",
        "LWFSM_LEAD_API_BASE": f"http://127.0.0.1:{up_port}/v1",
        "LWFSM_WORKER_API_BASE": f"http://127.0.0.1:{up_port}/v1",
    }
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port), str(DELAY)], env=env)
    store = os.environ.get("BENCH_STORE") or f"sqlite:///{tempfile.mkdtemp()}/bench.db"  # the default backend
    gateway = subprocess.Popen(
        [sys.executable, "-m", "lwfsm", "serve", "--port", str(gw_port), "--store", store],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    passthrough = subprocess.Popen([sys.executable, "-c", PASSTHROUGH, str(pt_port), str(up_port)], env=env)
    rec_port = free_port()
    recorder = (
        subprocess.Popen([sys.executable, "-c", RECORDER, str(rec_port), str(up_port)], env=env)
        if args.recorder
        else None
    )
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/")
        wait_ready(f"http://127.0.0.1:{gw_port}/v1/models")
        wait_ready(f"http://127.0.0.1:{pt_port}/")
        targets = {
            "direct": f"http://127.0.0.1:{up_port}/v1/chat/completions",
            "passthrough": f"http://127.0.0.1:{pt_port}/v1/chat/completions",
            "gateway": f"http://127.0.0.1:{gw_port}/v1/chat/completions",
        }
        pids = {"passthrough": passthrough.pid, "gateway": gateway.pid}
        if recorder is not None:
            wait_ready(f"http://127.0.0.1:{rec_port}/")
            targets["recorder"] = f"http://127.0.0.1:{rec_port}/v1/chat/completions"
            pids["recorder"] = recorder.pid
        asyncio.run(run(targets, 10, 5, False, "warmup"))
        sent = 50  # calls each target got (the recorder must have recorded every one)
        print(
            f"upstream delay {DELAY * 1000:.0f} ms, {args.turns} calls per conversation, {args.body} bodies "
            f"({len(json.dumps(body(0, args.turns - 1, False))) // 1024} KB at the last call). added = target - direct "
            "(same run, interleaved); CPU = that process only.\npassthrough = the same stack (Starlette, "
            "uvicorn, aiohttp) forwarding bytes with no lwfsm: the floor any Python gateway pays."
        )
        print(
            f"{'scenario':16} {'target':12} {'added p50':>9} {'added p99':>9} {'req/s':>7} {'req/s direct':>12} "
            f"{'CPU ms/req':>10}"
        )
        for concurrency in args.concurrency:
            for stream in [kind == "stream" for kind in args.kinds]:
                per_slot = max(1, args.requests // concurrency)
                cpu0 = {t: cpu_seconds(pid) for t, pid in pids.items()}
                lat = asyncio.run(
                    run(targets, concurrency, per_slot, stream, f"c{concurrency}s{int(stream)}", args.turns)
                )
                d = lat["direct"]
                sent += len(d)
                # Throughput per target: the targets are interleaved, so estimate each from its summed
                # latencies per slot.
                rps_d = len(d) / (sum(d) / concurrency)
                cpu = {}
                for t, pid in pids.items():
                    after, g = cpu_seconds(pid), lat[t]
                    cpu[t] = (after[0] - cpu0[t][0] + after[1] - cpu0[t][1]) * 1000 / len(g)
                    print(
                        f"{'c=' + str(concurrency) + (' stream' if stream else ' plain'):16} {t:12} "
                        f"{(pct(g, 50) - pct(d, 50)) * 1000:>7.1f}ms {(pct(g, 99) - pct(d, 99)) * 1000:>7.1f}ms "
                        f"{len(g) / (sum(g) / concurrency):>7.0f} {rps_d:>12.0f} {cpu[t]:>10.2f}"
                    )
                print(f"{'':16} gateway CPU / passthrough CPU = {cpu['gateway'] / cpu['passthrough']:.2f}x")
                if "recorder" in cpu:
                    print(f"{'':16} gateway CPU / recorder CPU = {cpu['gateway'] / cpu['recorder']:.2f}x")
        if recorder is not None:  # it did record: every call it was sent, warm-up included
            recorded = int(httpx.get(f"http://127.0.0.1:{rec_port}/", timeout=5).text)
            print(f"recorder: {recorded} of {sent} calls recorded in SQLite")
            assert recorded == sent, "the recorder did not record every call: its figures measure something else"
    finally:
        for p in (gateway, passthrough, recorder, upstream):
            if p is not None:
                p.terminate()
                p.wait(10)


if __name__ == "__main__":
    main()
