"""Test doubles for specs: hypothesis strategies, a rule-based state machine, an invariant helper.

Needs hypothesis (`pip install "lwfsm[testing]"`). A property test of your own spec against a
reference model you write plainly:

    from lwfsm.testing import spec_machine

    class Reference:                      # your reading of the rules, in plain Python
        def __init__(self, params): ...
        role: str                         # the role that serves the next turn
        state: str                        # optional, with spec_machine(..., states=True): compared too
        def fire(self, event): ...        # raise any exception where the event is not allowed

    TestMySpec = spec_machine("specs/mine.yaml", Reference).TestCase

To run as hard as lwfsm's own suite, call `register_profiles()` in your conftest.py and pick one
(`pytest --hypothesis-profile=ci`, or `thorough` for long runs), or pass `settings=` to `spec_machine`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

try:
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('lwfsm.testing needs hypothesis: pip install "lwfsm[testing]"') from exc

from .engine import Engine, Session, TransitionRecord
from .errors import TransitionNotAllowed
from .spec import Spec, load_spec

__all__ = [
    "PROFILES",
    "Reference",
    "SpecMachine",
    "assert_invariants_hold",
    "event_sequences",
    "param_sets",
    "register_profiles",
    "spec_machine",
]

# lwfsm's own hypothesis profiles. No deadlines: property tests run on noisy machines and time nothing.
_QUIET = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
PROFILES: dict[str, dict[str, Any]] = {
    "ci": {"max_examples": 150, "stateful_step_count": 40, **_QUIET},  # real bugs in well under a minute
    "thorough": {"max_examples": 5000, "stateful_step_count": 120, **_QUIET},  # long local runs
}


def register_profiles() -> None:
    """Register lwfsm's hypothesis profiles (`ci`, `thorough`) for `--hypothesis-profile=`; loads none."""
    for name, values in PROFILES.items():
        settings.register_profile(name, **values)


class Reference(Protocol):
    """An independent model of a spec's rules, written without lwfsm."""

    @property
    def role(self) -> str: ...

    def fire(self, event: str) -> None: ...


def _spec(spec: Spec | str | Path) -> Spec:
    return spec if isinstance(spec, Spec) else load_spec(spec)


def param_sets(spec: Spec | str | Path, up_to: int = 10) -> st.SearchStrategy[dict[str, int]]:
    """Param values within their declared ranges, each capped at min + up_to, and each param's own value
    (its default, or what `load_spec(..., params=)` bound: the values you ship, drawn even beyond the cap)."""
    spec = _spec(spec)
    ranges = {}
    for name, p in spec.params.items():
        values = p.values(up_to)
        drawn = st.integers(values.start, values.stop - 1)
        ranges[name] = drawn if p.default in values else st.just(p.default) | drawn
    return st.fixed_dictionaries(ranges)


def _events(spec: Spec) -> st.SearchStrategy[str]:
    # Turn events are what sessions mostly see; other events (reset, plan, ...) stay rare: drawn one
    # time in four, a reset kept sessions from reaching the states a few dozen turns lead to.
    turn = [name for name, ev in spec.events.items() if ev.turn]
    other = [name for name, ev in spec.events.items() if not ev.turn]
    if not turn or not other:
        return st.sampled_from(list(spec.events))
    return st.integers(0, 9).flatmap(lambda n: st.sampled_from(other if n == 0 else turn))


def event_sequences(spec: Spec | str | Path, min_size: int = 0, max_size: int = 60) -> st.SearchStrategy[list[str]]:
    """Lists of the spec's event names, turn events more often than the others."""
    return st.lists(_events(_spec(spec)), min_size=min_size, max_size=max_size)


class SpecMachine(RuleBasedStateMachine):
    """Drives a session of `spec` and a `reference` side by side, comparing after every step.

    Checked after every step: the session is in a declared state (the reference's `state`, with
    `states`); it serves the role the reference says; the spec's invariants hold; a reset gives the
    initial configuration; a twin session that is never snapshotted agrees with the one that is
    snapshotted and restored.
    Subclasses may add rules and invariants, and may override `observe` to track what was served.
    """

    spec: ClassVar[Spec]
    reference: ClassVar[Callable[[dict[str, int]], Reference]]
    up_to: ClassVar[int] = 6
    states: ClassVar[bool] = False  # the reference's `state` names the spec's state too: compared

    engine: Engine
    session: Session
    twin: Session
    model: Reference
    params: dict[str, int]

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.params = data.draw(param_sets(self.spec, self.up_to), label="params")
        self.engine = Engine(self.spec.with_params(self.params))
        self.session = self.engine.session()
        self.twin = self.engine.session()
        self.model = type(self).reference(dict(self.params))

    @rule(data=st.data())
    def fire(self, data: st.DataObject) -> None:
        # a snapshot and restore now and then, not as a rule of its own: as one it took half the steps
        if data.draw(st.integers(0, 7), label="snapshot and restore first") == 0:
            self.session = self.engine.restore(self.session.snapshot().model_dump_json())
        event = data.draw(_events(self.spec), label="event")
        served = self.session.role
        try:
            self.model.fire(event)
        except Exception as exc:  # the reference says: not allowed here
            refused: Exception | None = exc
        else:
            refused = None
        try:
            record = self.session.fire(event)
        except TransitionNotAllowed as exc:
            session_refused: TransitionNotAllowed | None = exc
        else:
            session_refused = None
        if session_refused is not None:
            assert refused is not None, (
                f"the session refused '{event}' but the reference accepted it: {session_refused}"
            )
            return
        assert refused is None, f"the session accepted '{event}' but the reference refused it: {refused!r}"
        self.twin.fire(event)
        if record.transition is not None and self.spec.transitions[record.transition].reset:
            fresh = self.engine.session()
            assert (self.session.state, self.session.counters, self.session.turn) == (
                fresh.state,
                fresh.counters,
                fresh.turn,
            ), "a reset did not return to the initial configuration"
        self.observe(event, served, record)

    def observe(self, event: str, served: str, record: TransitionRecord) -> None:
        """Called after each accepted event with the role that served it; override to track."""

    @invariant()
    def in_a_declared_state(self) -> None:
        assert self.session.state in self.spec.states

    @invariant()
    def serves_the_role_the_reference_says(self) -> None:
        assert self.session.role == self.model.role, (
            f"next turn served by {self.session.role} ({self.session.state}, {self.session.counters}) "
            f"but the reference says {self.model.role}"
        )

    @invariant()
    def in_the_state_the_reference_says(self) -> None:
        """With `states`, the reference's `state` too: two states of one role differ in what comes next
        (recovery that never returns to worker serves the worker all the same)."""
        if self.states:
            expected = getattr(self.model, "state", None)
            assert self.session.state == expected, (
                f"in state {self.session.state} ({self.session.counters}) but the reference says {expected!r}"
            )

    @invariant()
    def spec_invariants_hold(self) -> None:
        assert not self.engine.violations(self.session), self.engine.violations(self.session)

    @invariant()
    def restore_changes_nothing(self) -> None:
        assert (self.session.state, self.session.counters, self.session.turn) == (
            self.twin.state,
            self.twin.counters,
            self.twin.turn,
        )


def spec_machine(
    spec: Spec | str | Path,
    reference: Callable[[dict[str, int]], Reference],
    *,
    up_to: int = 6,
    name: str | None = None,
    settings: settings | None = None,
    states: bool = False,
) -> type[SpecMachine]:
    """A SpecMachine subclass for `spec`; use its `.TestCase` as a test class.

    `settings` (a hypothesis `settings`) is the test case's; by default it follows the loaded profile.
    `states=True`: the reference's `state` is the spec's state name, compared after every step too.
    """
    spec = _spec(spec)
    attrs: dict[str, Any] = {"spec": spec, "reference": staticmethod(reference), "up_to": up_to, "states": states}
    machine: type[SpecMachine] = type(name or f"{spec.name.title().replace('_', '')}Machine", (SpecMachine,), attrs)
    if settings is not None:
        machine.TestCase.settings = settings
    return machine


def assert_invariants_hold(
    spec: Spec | str | Path, *, max_examples: int = 200, max_events: int = 60, up_to: int = 6
) -> None:
    """Fire random event sequences (random params) and fail, with a shrunk example, when one of the
    spec's invariants breaks. Events a state does not accept are skipped (`lwfsm check` reports those)."""
    from hypothesis import given

    spec = _spec(spec)

    @settings(max_examples=max_examples, deadline=None)
    @given(param_sets(spec, up_to), event_sequences(spec, max_size=max_events))
    def run(params: dict[str, int], events: list[str]) -> None:
        engine = Engine(spec.with_params(params), history=0)
        session = engine.session()
        for i, event in enumerate(events):
            try:
                session.fire(event)
            except TransitionNotAllowed:
                continue
            broken = engine.violations(session)
            assert not broken, (
                f"invariant {broken[0]!r} of spec '{spec.name}' breaks after events {events[: i + 1]} "
                f"with {params} in state {session.state} {session.counters}"
            )

    run()
