"""Core benchmarks, run on demand: `python tests/benchmarks/bench_core.py [--quick]`.

Every figure is paired with a baseline measured in the same run, interleaved round by round, and
reported as a ratio; the spread across rounds shows the machine's noise. Nothing here asserts.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from transitions import Machine

from lwfsm import Engine, load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "lead_worker.yaml"
QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 7
PATTERN = "ooooffoofffoooof"  # exercises worker, fallback and recovery


def per_event(fire: list[Callable[[], object]], n: int) -> Callable[[], float]:
    """A timer: seconds per event over n events cycling through `fire` (16 entries)."""

    def run() -> float:
        t = time.perf_counter()
        for i in range(n):
            fire[i & 15]()
        return (time.perf_counter() - t) / n

    return run


# Children run the way users do: with bytecode caching on (pip compiled the dependencies at
# install; lwfsm's own .pyc files are written by a warm-up run), whatever this shell says.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(cmd: list[str]) -> float:
    """Wall time of a whole process."""
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True, env=CHILD_ENV)
    return time.perf_counter() - t


def lwfsm_events(n: int) -> Callable[[], float]:
    session = Engine(load_spec(SPEC, params={"lead_turns": 0})).session()
    return per_event([session.turn_completed if ch == "o" else session.failure for ch in PATTERN], n)


def bare_events(n: int) -> Callable[[], float]:
    """The same rules hand-written as a bare transitions.Machine with equivalent callbacks."""

    class Model:
        failures = 0
        fallback_done = 0

    m = Model()
    threshold, fallback_turns = 2, 2

    def set_(**kw: int) -> Callable[[object], None]:
        return lambda ed: [setattr(m, k, v) for k, v in kw.items()] and None

    machine = Machine(
        model=m, states=["worker", "fallback", "recovery"], initial="worker", auto_transitions=False, send_event=True
    )
    machine.get_state("fallback").add_callback("enter", lambda ed: set_(failures=0, fallback_done=0)(ed))
    machine.add_transition("turn_completed", "worker", None, before=lambda ed: setattr(m, "failures", 0))
    machine.add_transition("turn_completed", "recovery", "worker", before=lambda ed: setattr(m, "failures", 0))
    machine.add_transition(
        "failure", ["worker", "recovery"], "fallback", conditions=lambda ed: m.failures + 1 >= threshold
    )
    machine.add_transition(
        "failure", ["worker", "recovery"], None, before=lambda ed: setattr(m, "failures", m.failures + 1)
    )
    machine.add_transition(
        "turn_completed", "fallback", "recovery", conditions=lambda ed: m.fallback_done + 1 >= fallback_turns
    )
    machine.add_transition(
        "turn_completed", "fallback", None, before=lambda ed: setattr(m, "fallback_done", m.fallback_done + 1)
    )
    machine.add_transition("failure", "fallback", None)
    return per_event([m.turn_completed if ch == "o" else m.failure for ch in PATTERN], n)  # type: ignore[attr-defined]


def event_cost() -> None:
    n = 20_000 if QUICK else 100_000
    ours, bare = lwfsm_events(n), bare_events(n)
    rounds = [(ours(), bare()) for _ in range(ROUNDS)]  # interleaved: both see the same noise
    o, b = min(r[0] for r in rounds), min(r[1] for r in rounds)
    spread = max(r[1] for r in rounds) / b
    print(
        f"event cost: lwfsm {o * 1e6:.2f} us, bare transitions {b * 1e6:.2f} us, "
        f"ratio {o / b:.2f}x (target <= 1.5x); baseline spread {spread:.2f}x over {ROUNDS} rounds"
    )


def sessions() -> None:
    engine = Engine(load_spec(SPEC))
    n = 100_000
    totals = []
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        live = [engine.session() for _ in range(n)]
        t1 = time.perf_counter()
        for s in live:
            s.turn_completed()
        t2 = time.perf_counter()
        totals.append((t1 - t0, t2 - t1))
        del live
    bare = bare_events(n)
    bare_total = min(bare() for _ in range(3)) * n
    create, fire = min(totals, key=sum)
    print(
        f"100,000 sessions: create {create:.2f} s + one event each {fire:.2f} s = {create + fire:.2f} s "
        f"(target <= 2 s); worst of 3 rounds {max(map(sum, totals)):.2f} s"
    )
    print(f"  same-run reference: 100,000 triggers of a bare transitions.Machine take {bare_total:.2f} s by themselves")

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    live = [engine.session() for _ in range(n)]
    idle = (tracemalloc.get_traced_memory()[0] - base) / n
    for s in live:
        s.turn_completed()
    used = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    print(f"memory per session: idle {idle:.0f} bytes (target <= 500), after one event with history {used:.0f} bytes")

    # Event cost must not depend on how many sessions are alive.
    k = 20_000 if QUICK else 100_000
    one = Engine(load_spec(SPEC, params={"lead_turns": 0})).session()
    events_on_one = per_event([one.turn_completed if ch == "o" else one.failure for ch in PATTERN], k)

    del live
    alone, crowded = [], []
    for _ in range(ROUNDS):
        gc.collect()
        alone.append(events_on_one())
        crowd = [engine.session() for _ in range(n)]
        crowded.append(events_on_one())
        del crowd
    a, c = min(alone), min(crowded)
    print(
        f"event cost with 1 live session {a * 1e6:.2f} us, with 100,000 live {c * 1e6:.2f} us: "
        f"ratio {c / a:.3f} (target within 10%); spread {max(alone) / a:.2f}x"
    )


def import_time() -> None:
    def child(code: str) -> float:
        prog = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
        return float(
            subprocess.run(
                [sys.executable, "-c", prog], capture_output=True, text=True, check=True, env=CHILD_ENV
            ).stdout
        )

    child("import lwfsm")  # warm-up: writes lwfsm's .pyc files
    ours, base, model = [], [], []
    for _ in range(5 if QUICK else 15):
        ours.append(child("import lwfsm"))
        base.append(child("import transitions, pydantic, yaml"))
        model.append(child("import transitions, yaml; from pydantic import BaseModel"))
    o, b, m = statistics.median(ours), statistics.median(base), statistics.median(model)
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, lwfsm; print([m for m in ('litellm', 'graphviz', 'pygraphviz') if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"import lwfsm {o * 1e3:.0f} ms vs transitions+pydantic+yaml {b * 1e3:.0f} ms: ratio {o / b:.2f}x "
        f"(target <= 1.4x), medians of {len(ours)} fresh processes; heavy modules loaded: {heavy}"
    )
    print(
        f"  (import pydantic alone is lazy; with `from pydantic import BaseModel`, which any pydantic model "
        f"needs, the baseline is {m * 1e3:.0f} ms and the ratio {o / m:.2f}x)"
    )


def validate_wall() -> None:
    specs = sorted(str(p) for p in (ROOT / "specs").glob("*.yaml"))

    ours, checks, base = [], [], []
    for _ in range(5 if QUICK else 10):
        ours.append(wall([sys.executable, "-m", "lwfsm", "validate", *specs]))
        checks.append(wall([sys.executable, "-m", "lwfsm", "check", str(SPEC)]))
        base.append(wall([sys.executable, "-c", "import lwfsm"]))
    o, c, b = statistics.median(ours), statistics.median(checks), statistics.median(base)
    print(
        f"lwfsm validate specs/*.yaml ({len(specs)} specs): {o * 1e3:.0f} ms wall as a whole process; "
        f"python -c 'import lwfsm' {b * 1e3:.0f} ms; ratio {o / b:.2f}x"
    )
    print(
        f"lwfsm check specs/lead_worker.yaml: {c * 1e3:.0f} ms wall as a whole process (target well under 1 s), "
        f"{c / b:.2f}x the bare import; medians of {len(checks)} runs, slowest {max(checks) * 1e3:.0f} ms"
    )


def diagram_wall() -> None:
    import tempfile

    runs, base = [], []
    for _ in range(3 if QUICK else 5):
        with tempfile.TemporaryDirectory() as out:  # empty: every md and svg is rendered
            runs.append(wall([sys.executable, "-m", "lwfsm", "diagram", "--all", "--out-dir", out]))
        base.append(wall([sys.executable, "-c", "import lwfsm"]))
    r, b = statistics.median(runs), statistics.median(base)
    n = len(list((ROOT / "specs").glob("*.yaml")))
    print(
        f"lwfsm diagram --all ({n} specs, md + svg each, empty output dir): {r * 1e3:.0f} ms wall as a whole "
        f"process, {r / b:.2f}x the bare import; medians of {len(runs)} runs, slowest {max(runs) * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, {'quick' if QUICK else 'full'} run")
    event_cost()
    sessions()
    import_time()
    validate_wall()
    diagram_wall()
