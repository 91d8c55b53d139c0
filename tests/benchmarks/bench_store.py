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
from lwfsm.store import Row, encode, load, open_store  # noqa: E402
from lwfsm.turn import TurnCore  # noqa: E402

TURNS = int(sys.argv[sys.argv.index("--turns") + 1]) if "--turns" in sys.argv else 2000
BLOCKS = 10
REPLY = {"role": "assistant", "content": "done: the tests pass"}
MESSAGES = [{"role": "user", "content": "go"}, REPLY, {"role": "user", "content": "fine"}]


def core() -> TurnCore:
    return TurnCore(Engine(load_spec(ROOT / "specs" / "lead_worker.yaml")))


def turn(store, tc: TurnCore, sid: str) -> None:
    """One committed turn, as AgentSession does it on a store (retrying on a conflict)."""
    while True:
        conv, _ = load(store, tc, sid)
        conv = conv or tc.start()
        plan = tc.plan(conv, MESSAGES)
        expected = conv.version
        tc.settle(conv, plan, role=plan.role, model=f"openai/{plan.role}", reply=REPLY)
        if store.write(sid, expected, encode(conv.state(), "m:0123456789abcdef0123456789abcdef")):
            return


def ratio(url: str) -> tuple[float, float]:
    store, tc = open_store(url), core()
    turn(store, tc, "bench")
    row = store.read("bench")
    assert row is not None
    raw_times, turn_times = [], []
    per = TURNS // BLOCKS
    for _ in range(BLOCKS):
        t = time.perf_counter()
        for _ in range(per):
            got = store.read("raw") or Row(row.data, 0)
            store.write("raw", got.version, Row(row.data, got.version + 1))
        raw_times.append((time.perf_counter() - t) / per)
        t = time.perf_counter()
        for _ in range(per):
            turn(store, tc, "bench")
        turn_times.append((time.perf_counter() - t) / per)
    store.close()
    return statistics.median(raw_times), statistics.median(turn_times)


def _drive(args: tuple[str, str, float]) -> int:
    url, sid, until = args
    store, tc = open_store(url), core()
    n = 0
    while time.time() < until:
        turn(store, tc, sid)
        n += 1
    store.close()
    return n


def throughput(url: str, conversations: int, seconds: float = 3.0) -> float:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(conversations) as pool:
        pool.map(_noop, range(conversations))  # start every worker before the clock runs
        until = time.time() + seconds
        counts = pool.map(_drive, [(url, f"tp-{conversations}-{i}", until) for i in range(conversations)])
    return sum(counts) / seconds


def _noop(_: int) -> None:
    pass


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
    print(f"{'backend':8} {'raw r+w':>10} {'turn':>10} {'ratio':>6} {'turns/s 1 conv':>15} {'turns/s 8 conv':>15}")
    try:
        for name, url in backends.items():
            raw, one = ratio(url)
            tp = ["-", "-"] if name == "memory" else [f"{throughput(url, k):.0f}" for k in (1, 8)]
            print(f"{name:8} {raw * 1e6:8.0f}us {one * 1e6:8.0f}us {one / raw:5.1f}x {tp[0]:>15} {tp[1]:>15}")
    finally:
        if server:
            server[1].terminate()
            server[1].wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"({os.cpu_count()} CPUs; memory:// is one process's dict, so no multi-process figures)")


if __name__ == "__main__":
    main()
