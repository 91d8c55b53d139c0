"""Session stores: the cost of one committed turn per backend, against that backend's raw round trip.

`python tests/benchmarks/bench_store.py [--turns N]` (default 2,000). For each backend (memory,
sqlite, redis when redis-server is installed) it measures, in the same run and interleaved blocks:
- raw: `store.read` + `store.write` (compare-and-set) of a row of the same size;
- turn: what the adapter does around a model call on a store: read and restore the conversation,
  plan, settle a reply, encode and compare-and-set it (no model call: that is the provider's cost);
and then committed turns per second with 1 and 8 conversations driven by 1 and 8 processes.
Nothing here asserts.
"""

import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lwfsm import Engine, load_spec  # noqa: E402
from lwfsm.store import Row, encode, open_store  # noqa: E402
from lwfsm.store.rows import restore  # noqa: E402
from lwfsm.turn import TurnCore  # noqa: E402

TURNS = int(sys.argv[sys.argv.index("--turns") + 1]) if "--turns" in sys.argv else 2000
BLOCKS = 10
REPLY = {"role": "assistant", "content": "done: the tests pass"}
MESSAGES = [{"role": "user", "content": "go"}, REPLY, {"role": "user", "content": "fine"}]


def core() -> TurnCore:
    return TurnCore(Engine(load_spec(ROOT / "specs" / "lead_worker.yaml")))


def turn(store, tc: TurnCore, sid: str, cache: dict) -> None:
    """One committed turn, as AgentSession does it on a store (retrying on a conflict).

    Like the adapter, a row that is exactly what this process wrote last is not restored again;
    pass a fresh `cache` each time to measure a conversation that moved here from another process.
    """
    while True:
        row = store.read(sid)
        if row is None:
            conv = tc.start()
        elif cache.get("data") == row.data:
            conv = cache["conv"]
        else:
            conv, _ = restore(store, tc, sid, row)
        cache.clear()
        plan = tc.plan(conv, MESSAGES)
        expected = conv.version
        tc.settle(conv, plan, role=plan.role, model=f"openai/{plan.role}", reply=REPLY)
        new = encode(conv.state(), "m:0123456789abcdef0123456789abcdef")
        if store.write(sid, expected, new):
            cache.update(data=new.data, conv=conv)
            return


def ratio(url: str) -> tuple[float, float, float]:
    store, tc, cache = open_store(url), core(), {}
    turn(store, tc, "bench", cache)
    row = store.read("bench")
    assert row is not None
    raw_times, turn_times, moved_times = [], [], []
    per = TURNS // BLOCKS
    for _ in range(BLOCKS):
        t = time.perf_counter()
        for _ in range(per):
            got = store.read("raw") or Row(row.data, 0)
            store.write("raw", got.version, Row(row.data, got.version + 1))
        raw_times.append((time.perf_counter() - t) / per)
        t = time.perf_counter()
        for _ in range(per):
            turn(store, tc, "bench", cache)
        turn_times.append((time.perf_counter() - t) / per)
        t = time.perf_counter()
        for _ in range(per):
            turn(store, tc, "moved", {})
        moved_times.append((time.perf_counter() - t) / per)
    store.close()
    return statistics.median(raw_times), statistics.median(turn_times), statistics.median(moved_times)


def _drive(args: tuple[str, str, float]) -> int:
    url, sid, until = args
    store, tc, cache = open_store(url), core(), {}
    n = 0
    while time.time() < until:
        turn(store, tc, sid, cache)
        n += 1
    store.close()
    return n


def throughput(url: str, conversations: int, seconds: float = 3.0) -> float:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(conversations) as pool:
        pool.map(_warm, [url] * conversations)  # start every worker and import its backend before the clock runs
        until = time.time() + seconds
        counts = pool.map(_drive, [(url, f"tp-{conversations}-{i}", until) for i in range(conversations)])
    return sum(counts) / seconds


def _warm(url: str) -> None:
    open_store(url).close()


def redis_url() -> tuple[str, subprocess.Popen[bytes]] | None:
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(500):
        try:
            open_store(url).close()
            return url, proc
        except Exception:
            time.sleep(0.01)
    proc.kill()
    return None


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    backends = {"memory": "memory://", "sqlite": f"sqlite:///{tmp}/bench.db"}
    server = redis_url()
    if server:
        backends["redis"] = server[0]
    head = ["raw r+w", "turn", "ratio", "moved turn", "ratio", "turns/s 1 conv", "turns/s 8 conv"]
    print(f"{'backend':8} " + " ".join(f"{h:>14}" for h in head))
    try:
        for name, url in backends.items():
            raw, one, moved = ratio(url)
            tp = ["-", "-"] if name == "memory" else [f"{throughput(url, k):.0f}" for k in (1, 8)]
            cells = [f"{raw * 1e6:.0f}us", f"{one * 1e6:.0f}us", f"{one / raw:.1f}x", f"{moved * 1e6:.0f}us"]
            cells += [f"{moved / raw:.1f}x", *tp]
            print(f"{name:8} " + " ".join(f"{c:>14}" for c in cells))
    finally:
        if server:
            server[1].terminate()
            server[1].wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"({os.cpu_count()} CPUs; memory:// is one process's dict, so no multi-process figures)")


if __name__ == "__main__":
    main()
