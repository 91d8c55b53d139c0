"""The simulator's transition table against the engine, on the same events, in the same run.

`python tests/benchmarks/bench_simulate.py [--turns N]` (default 1,000,000 turns: conversations
of 100 turns, outcomes drawn with failure probability 0.3, through specs/lead_worker.yaml).
Reports turns per second for the engine (`Session.apply`), the table turn by turn in Python
(`Replayer.run`), the table vectorised over conversations (`Replayer.run_many`, numpy), the
ratios, and the whole process's turns per second (imports and setup included). Every role is
compared between the three. Nothing here asserts a time.
"""

import random
import sys
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from lwfsm import Engine, load_spec  # noqa: E402
from lwfsm.cost.simulate import Replayer  # noqa: E402

TURNS = int(sys.argv[sys.argv.index("--turns") + 1]) if "--turns" in sys.argv else 1_000_000
PER = 100
N = TURNS // PER


def main() -> None:
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
    main()
