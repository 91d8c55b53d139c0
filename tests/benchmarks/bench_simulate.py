"""`lwfsm simulate` and `lwfsm report` on a recorded trace, as whole processes, against reading the
same file with `json.loads` per line in the same run; and the simulator's transition table against
the engine.

`python tests/benchmarks/bench_simulate.py [--turns N] [--conversations C] [--trace FILE] [--root DIR] [--runs R]`
(default 1,000,000 turns in 10,000 conversations, a trace written by `lwfsm simulate --generate`
unless --trace names one). Each of the three processes (json.loads per line, `report`, `simulate
lead_worker`) runs R times (default 3) in turn; printed: the median wall time, its ratio to the
json.loads process, and each process's peak resident memory (from wait4). `--root DIR` runs another
checkout's lwfsm (e.g. the code before a change) on the same file. Memory is meant to grow with the
conversations, not the lines: run 10,000,000 turns with the same --conversations and compare peaks.
`--workers N` (needs lwfsm[dask]) adds `simulate --workers N`, the replay on a local Dask cluster of N
processes (its start included; the peak is the client's), after checking once that its --json output
equals the local run's.

`python tests/benchmarks/bench_simulate.py --core [--turns N]` (default 1,000,000 turns: conversations
of 100 turns, outcomes drawn with failure probability 0.3, through specs/lead_worker.yaml) reports
turns per second for the engine (`Session.apply`), the table turn by turn in Python (`Replayer.run`),
the table vectorised over conversations (`Replayer.run_many`, numpy), the ratios, and the whole
process's turns per second (imports and setup included). Every role is compared between the three.

Nothing here asserts a time.
"""

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's lwfsm (--core)


def _arg(name: str, default: str | None) -> str | None:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


TURNS = int(_arg("--turns", "1000000") or 0)
PER = 100
N = TURNS // PER
ROOT = Path(__file__).resolve().parents[2]

READ = "import json, sys\nfor line in open(sys.argv[1], 'rb'):\n    json.loads(line)\n"


def _run(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def cli() -> None:
    root = Path(_arg("--root", str(ROOT)) or ROOT).resolve()
    runs = int(_arg("--runs", "3") or 3)
    conversations = int(_arg("--conversations", "10000") or 10000)
    trace = _arg("--trace", None)
    folder = tempfile.TemporaryDirectory()
    if trace is None:
        trace = str(Path(folder.name) / "trace.jsonl")
        t0 = time.perf_counter()
        gen = ["--generate", "--turns", str(TURNS), "--conversations", str(conversations), "--fail-worker", "0.3"]
        subprocess.run(
            [sys.executable, "-m", "lwfsm", "simulate", "lead_worker", *gen, "-o", trace], cwd=ROOT, check=True
        )
        print(f"generated {trace} in {time.perf_counter() - t0:.0f} s")
    with open(trace, "rb") as f:
        lines = sum(1 for _ in f)
    size = os.path.getsize(trace) / 1e6
    commands = {
        "json.loads per line": [sys.executable, "-c", READ, trace],
        "lwfsm report": [sys.executable, "-m", "lwfsm", "report", trace],
        "lwfsm simulate": [sys.executable, "-m", "lwfsm", "simulate", "lead_worker", "--trace", trace],
    }
    workers = _arg("--workers", None)
    if workers:
        cluster = [*commands["lwfsm simulate"], "--workers", workers]
        same = [
            subprocess.run([*c, "--json"], cwd=root, capture_output=True, check=True).stdout
            for c in (commands["lwfsm simulate"], cluster)
        ]
        if same[0] != same[1]:
            raise SystemExit("simulate --workers gave another summary than the local run")
        print(f"simulate --workers {workers}: --json output identical to the local run's")
        commands[f"simulate --workers {workers}"] = cluster
    times: dict[str, list[float]] = {k: [] for k in commands}
    peaks: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            wall, peak = _run(argv, root)
            times[name].append(wall)
            peaks[name].append(peak)
    base = statistics.median(times["json.loads per line"])
    print(f"{lines:,} lines ({size:,.0f} MB) of {trace}; lwfsm from {root}; median of {runs} runs each, in turn")
    for name in commands:
        t = statistics.median(times[name])
        print(f"{name:24} {t:8.2f} s  {t / base:5.2f}x json.loads  peak {max(peaks[name]):7.0f} MB")


def main() -> None:
    import numpy as np

    from lwfsm import Engine, load_spec
    from lwfsm.cost.simulate import Replayer

    spec = load_spec("lead_worker")
    t0 = time.perf_counter()
    replayer = Replayer(spec)
    compile_s = time.perf_counter() - t0
    assert replayer.table is not None
    ok, fail = spec.judging.events
    rng = random.Random(1)
    names = [[fail if rng.random() < 0.3 else ok for _ in range(PER)] for _ in range(N)]

    t0 = time.perf_counter()
    engine_roles = []
    engine = Engine(spec, history=0)
    for convo in names:
        session = engine.session()
        for event in convo:
            engine_roles.append(session.role)
            session.apply(event)
    engine_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    table_roles = [role for convo in names for role in replayer.roles(convo)]
    table_s = time.perf_counter() - t0

    index = {e: i for i, e in enumerate(replayer.table.events)}
    events = np.array([[index[e] for e in convo] for convo in names], dtype=np.int32)
    t0 = time.perf_counter()
    configs = replayer.run_many(events)
    vector_s = time.perf_counter() - t0
    role_names = np.array(replayer.table.roles)
    vector_roles = role_names[configs].ravel().tolist()

    assert engine_roles == table_roles == vector_roles, "the table and the engine disagree"
    total = time.perf_counter() - START
    print(
        f"{TURNS:,} turns through {spec.name} ({len(replayer.table.states)} configurations, "
        f"compiled in {compile_s * 1e3:.1f} ms)"
    )
    print(f"engine (Session.apply):      {TURNS / engine_s:>12,.0f} turns/s  ({engine_s * 1e6 / TURNS:.2f} us/turn)")
    print(f"table, Python per turn:      {TURNS / table_s:>12,.0f} turns/s  ({engine_s / table_s:.1f}x the engine)")
    print(
        f"table, numpy over {N:,} conversations: {TURNS / vector_s:>12,.0f} turns/s  "
        f"({engine_s / vector_s:.0f}x the engine)"
    )
    print(
        f"whole process: {total:.2f} s, {TURNS / total:,.0f} turns/s (imports, setup, engine run and checks included)"
    )
    alone = total - engine_s
    print(f"whole process less the engine run: {alone:.2f} s, {TURNS / alone:,.0f} turns/s")
    print("every turn's role is identical in the three")


if __name__ == "__main__":
    if "--core" in sys.argv:
        main()
    else:
        cli()
