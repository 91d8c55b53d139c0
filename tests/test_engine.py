import json
import logging
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lwfsm import Engine, Session, SnapshotError, TransitionNotAllowed, load_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"


def engine(name: str = "lead_worker", **params: int) -> Engine:
    return Engine(load_spec(SPECS / f"{name}.yaml", params=params))


def run(session: Session, events: str) -> list[str]:
    """Fire 'o' (turn_completed) / 'f' (failure) and return the role that served each turn."""
    served = []
    for ch in events:
        served.append(session.role)
        session.turn_completed() if ch == "o" else session.failure("scripted")
    return served


L, W = "lead", "worker"


def test_seed_example_default_params() -> None:
    s = engine().session()
    # 3 lead turns, worker; 2 worker failures bring the lead back for 2 successful turns; worker again.
    assert run(s, "ooo") == [L, L, L]
    assert run(s, "ff") == [W, W]
    assert s.state == "fallback"
    assert s.role == L
    assert run(s, "oo") == [L, L]
    assert s.state == "recovery"
    assert s.role == W
    assert run(s, "oo") == [W, W]
    assert s.state == "worker"
    assert s.turn == 9


def test_lead_failures_do_not_count_toward_the_worker_threshold() -> None:
    s = engine().session()
    assert run(s, "fff") == [L, L, L]
    assert s.state == "worker"
    assert s.counters["failures"] == 0
    assert run(s, "f") == [W]
    assert s.state == "worker"  # one failure is below the threshold of 2


def test_failed_lead_turns_do_not_use_up_the_fallback() -> None:
    s = engine(lead_turns=0).session()
    run(s, "ff")
    assert s.state == "fallback"
    assert run(s, "fffo") == [L, L, L, L]
    assert s.state == "fallback"  # only one success so far
    assert run(s, "o") == [L]
    assert s.state == "recovery"


def test_a_success_in_between_clears_the_failure_count() -> None:
    s = engine(lead_turns=0).session()
    assert run(s, "fofofo") == [W] * 6
    assert s.state == "worker"


def test_recovery_failures_count_toward_the_same_threshold() -> None:
    s = engine(lead_turns=0, failure_threshold=3, fallback_turns=1).session()
    run(s, "fffo")
    assert s.state == "recovery"
    run(s, "ff")
    assert s.state == "recovery"
    assert s.counters["failures"] == 2
    run(s, "f")
    assert s.state == "fallback"


def test_strict_recovery_returns_to_fallback_on_one_failure() -> None:
    s = engine("strict_recovery", lead_turns=0, failure_threshold=3, fallback_turns=1).session()
    run(s, "fffo")
    assert s.state == "recovery"
    assert run(s, "f") == [W]
    assert s.state == "fallback"


def test_lead_turns_zero_means_worker_serves_turn_one() -> None:
    s = engine(lead_turns=0).session()
    assert s.state == "worker"
    assert run(s, "o") == [W]
    s.reset()
    assert s.state == "worker"


def test_failure_threshold_one() -> None:
    s = engine(failure_threshold=1).session()
    assert run(s, "ooof") == [L, L, L, W]
    assert s.state == "fallback"


def test_large_params() -> None:
    s = engine(lead_turns=1000, failure_threshold=1000, fallback_turns=1000).session()
    assert run(s, "o" * 1000) == [L] * 1000
    assert run(s, "f" * 999) == [W] * 999
    assert s.state == "worker"
    run(s, "f")
    assert s.state == "fallback"
    run(s, "o" * 999)
    assert s.state == "fallback"
    run(s, "o")
    assert s.state == "recovery"


def test_reset_returns_to_the_initial_configuration() -> None:
    eng = engine()
    s = eng.session()
    fresh = (s.state, s.counters, s.turn)
    run(s, "oooff")
    record = s.reset()
    assert (s.state, s.counters, s.turn) == fresh
    assert (record.event, record.source, record.dest) == ("reset", "fallback", "lead_initial")


def test_reset_reenters_the_initial_state_like_a_new_session() -> None:
    # planning: the initial state has no on_enter, but escalation's has; both must match a new session.
    for name in ("planning", "escalation"):
        eng = engine(name)
        s = eng.session()
        run(s, "ffoff")
        s.reset()
        new = eng.session()
        assert (s.state, s.counters, s.turn) == (new.state, new.counters, new.turn)


def test_unknown_or_disallowed_events_raise_and_change_nothing(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "specs_invalid" / "_base.yaml.txt").read_text()
    (tmp_path / "s.yaml").write_text(text.replace('source: "*", reset', "source: working, reset"))
    s = Engine(load_spec(tmp_path / "s.yaml")).session()
    s.fire("fail")
    s.fire("fail")
    before = s.snapshot()
    with pytest.raises(
        TransitionNotAllowed,
        match=r"spec 'tiny': unknown event 'retry' \(did you mean 'reset'\?\); known: ok, fail, reset",
    ):
        s.fire("retry")
    with pytest.raises(
        TransitionNotAllowed, match=r"event 'reset' has no transition from state 'fallback' \(it has from: working\)"
    ) as info:
        s.fire("reset")
    assert (info.value.event, info.value.state) == ("reset", "fallback")
    assert s.snapshot() == before
    assert len(s.history) == 2


def test_ignored_events_change_nothing_but_are_recorded() -> None:
    s = engine("planning").session()
    record = s.fire("plan")  # lead_initial ignores plan
    assert (s.state, s.turn, record.transition, record.dest) == ("lead_initial", 0, None, "lead_initial")


def test_planning_detour_returns_where_it_came_from() -> None:
    s = engine("planning", lead_turns=0, fallback_turns=1).session()
    run(s, "f")
    s.fire("plan")
    assert s.role == "planner"
    run(s, "o")
    s.fire("plan_done")
    assert s.state == "worker"
    assert s.counters["failures"] == 1
    run(s, "fo")
    assert s.state == "recovery"
    s.fire("plan")
    s.fire("plan_done")
    assert s.state == "recovery"


def test_guard_with_no_holding_branch_is_reported(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "specs_invalid" / "_base.yaml.txt").read_text()
    text = text.replace(
        "{event: fail, source: working, updates: {failures: failures + 1}}",
        "{event: fail, source: working, guard: failures > 5, updates: {failures: failures + 1}}",
    )
    (tmp_path / "gap.yaml").write_text(text)
    s = Engine(load_spec(tmp_path / "gap.yaml", params={"threshold": 3})).session()
    with pytest.raises(TransitionNotAllowed, match=r"event 'fail' in state 'working' \(failures=0\): no guard"):
        s.fire("fail")
    assert s.turn == 0
    assert s.history == []


def test_history_is_bounded_and_records_reasons() -> None:
    s = Engine(load_spec(SPECS / "lead_worker.yaml"), history=5).session()
    run(s, "ooo" + "of" * 20)
    s.failure("tests failed: 3")
    history = s.history
    assert len(history) == 5
    assert [r.turn for r in history] == list(range(40, 45))
    last = history[-1]
    assert (last.event, last.reason, last.source, last.dest) == ("failure", "tests failed: 3", "worker", "fallback")
    assert last.guard == "failures + 1 >= failure_threshold"
    assert Engine(load_spec(SPECS / "lead_worker.yaml"), history=0).session().history == []
    with pytest.raises(ValueError, match="history must be >= 0"):
        Engine(load_spec(SPECS / "lead_worker.yaml"), history=-1)


def test_listeners_and_logging(caplog: pytest.LogCaptureFixture) -> None:
    eng = engine(lead_turns=1)
    seen_engine, seen_session = [], []
    eng.on_transition(lambda s, r: seen_engine.append((s, r.event, r.dest)))
    s = eng.session()
    other = eng.session()
    s.on_transition(lambda _s, r: seen_session.append(r.dest))
    with caplog.at_level(logging.INFO, logger="lwfsm"):
        run(s, "off")
        run(other, "o")
    assert seen_engine == [
        (s, "turn_completed", "worker"),
        (s, "failure", "worker"),
        (s, "failure", "fallback"),
        (other, "turn_completed", "worker"),
    ]
    assert seen_session == ["worker", "worker", "fallback"]
    infos = [r.getMessage() for r in caplog.records if r.name == "lwfsm"]
    assert infos == [
        "turn 1: lead_initial -> worker on turn_completed [lead_done + 1 >= lead_turns]",
        "turn 3: worker -> fallback on failure [failures + 1 >= failure_threshold] (scripted)",
        "turn 1: lead_initial -> worker on turn_completed [lead_done + 1 >= lead_turns]",
    ]


def test_snapshot_is_small_json_and_restores_in_a_fresh_process() -> None:
    eng = engine()
    s = eng.session()
    events = "ooofoffo"
    run(s, events[:5])
    dumped = s.snapshot().model_dump_json()
    assert len(dumped) < 400
    run(s, events[5:])
    expected = [s.state, s.counters, s.turn]
    script = (
        "import json, sys\n"
        "from lwfsm import Engine, load_spec\n"
        f"s = Engine(load_spec({str(SPECS / 'lead_worker.yaml')!r})).restore(sys.stdin.read())\n"
        f"for ch in {events[5:]!r}:\n"
        "    s.turn_completed() if ch == 'o' else s.failure()\n"
        "print(json.dumps([s.state, s.counters, s.turn]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], input=dumped, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == expected


def test_restore_refuses_foreign_or_broken_snapshots() -> None:
    s = engine().session()
    run(s, "oooff")
    snap = s.snapshot()
    with pytest.raises(SnapshotError, match=r"rules or params differ"):
        engine(lead_turns=4).restore(snap)
    with pytest.raises(SnapshotError, match=r"snapshot is from spec 'lead_worker'.*this engine runs 'strict_recovery'"):
        engine("strict_recovery").restore(snap)
    with pytest.raises(SnapshotError, match="state 'limbo' is not a state"):
        engine().restore({**snap.model_dump(), "state": "limbo"})
    with pytest.raises(SnapshotError, match="counters"):
        engine().restore({**snap.model_dump(), "counters": {"failures": 1}})
    with pytest.raises(SnapshotError, match="not a valid lwfsm snapshot"):
        engine().restore('{"spec": "lead_worker"}')
    counters = snap.model_dump()["counters"]
    with pytest.raises(SnapshotError, match="counter 'failures' = -1 cannot occur"):
        engine().restore({**snap.model_dump(), "counters": {**counters, "failures": -1}})
    with pytest.raises(SnapshotError, match="counter 'failures' = out of range cannot occur"):
        engine().restore({**snap.model_dump(), "counters": {**counters, "failures": 10**5000}})
    with pytest.raises(SnapshotError, match="violates the invariant 'failures < failure_threshold'"):
        engine().restore({**snap.model_dump(), "counters": {**counters, "failures": 99}})
    with pytest.raises(SnapshotError, match="last event 'nope' is not an event"):
        engine().restore({**snap.model_dump(), "last": {**snap.model_dump()["last"], "event": "nope"}})
    huge = "x" * 10_000_000
    for payload in ({**snap.model_dump(), "state": 7, "spec": huge}, huge, '{"spec": "' + huge + '"'):
        with pytest.raises(SnapshotError) as info:
            engine().restore(payload)
        assert len(str(info.value)) < 1000
        assert info.value.__cause__ is None
    restored = engine().restore(snap.model_dump())
    assert restored.snapshot() == snap


def test_concurrent_events_on_one_session_are_serialised() -> None:
    eng = Engine(load_spec(SPECS / "lead_worker.yaml", params={"failure_threshold": 3}), history=100_000)
    s = eng.session()
    calls = []
    s.on_transition(lambda _s, r: calls.append(r))
    n_threads, per_thread = 8, 1500
    barrier = threading.Barrier(n_threads)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(per_thread):
            s.failure() if rng.random() < 0.4 else s.turn_completed()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = n_threads * per_thread
    history = s.history
    assert s.turn == total
    assert len(history) == total
    assert len(calls) == total
    assert [r.turn for r in history] == list(range(1, total + 1))
    # Replaying the recorded order on a fresh session gives the same configuration at every step.
    replay = eng.session()
    for r in history:
        assert replay.state == r.source
        replay.fire(r.event)
        assert replay.state == r.dest
    assert (replay.state, replay.counters) == (s.state, s.counters)


@pytest.mark.parametrize("configured", [None, logging.DEBUG])
def test_info_logging_shows_one_line_per_switch_not_transitions_internals(
    configured: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    quiet = logging.getLogger("transitions")
    before = quiet.level
    quiet.setLevel(logging.NOTSET if configured is None else configured)
    try:
        _log_switches(quiet, configured, caplog)
    finally:
        quiet.setLevel(before)


def _log_switches(quiet: logging.Logger, configured: int | None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # the root logger: what a user's basicConfig(level=INFO) does
    s = engine().session()
    run(s, "oooff")
    names = {r.name for r in caplog.records}
    if configured is None:
        assert names == {"lwfsm"}
        assert len(caplog.records) == 2  # lead_initial -> worker, worker -> fallback
        assert quiet.level == logging.WARNING
    else:  # a user who configured transitions' logger keeps what they asked for
        assert quiet.level == logging.DEBUG
        assert any(n.startswith("transitions") for n in names)


def test_arguments_of_the_wrong_type_are_named() -> None:
    with pytest.raises(TypeError, match=r"Engine takes a Spec, not str: Engine\(load_spec\('lead_worker'\)\)"):
        Engine("lead_worker")  # type: ignore[arg-type]
    for give in (lambda: load_spec("lead_worker", params=[1, 2]), lambda: load_spec("lead_worker").with_params([1])):
        with pytest.raises(TypeError, match=r"params are names and values \(a mapping\), not list"):
            give()
    session = engine().session()
    before = session.snapshot()
    with pytest.raises(TypeError, match=r"an event is the name of one \(a str\), not int 123"):
        session.fire(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"a reason is text \(a str\), not int 42"):
        session.failure(42)  # type: ignore[arg-type]
    assert session.snapshot() == before  # nothing moved
