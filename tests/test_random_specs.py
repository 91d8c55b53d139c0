"""Generated specs, valid and broken: loading never raises anything but SpecError, and a valid one
always compiles, survives random events, round-trips, snapshots, and can be checked."""

from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from lwfsm import Engine, SnapshotError, Spec, SpecError, TransitionNotAllowed
from lwfsm.check import Unsaturable, check

STATES = ["s0", "s1", "s2", "s3"]
COUNTERS = ["c0", "c1"]
EVENTS = {"e0": {}, "e1": {}, "e2": {"turn": False}}

atoms = st.one_of(st.integers(-3, 6).map(str), st.sampled_from([*COUNTERS, "p0"]))
int_expr = st.recursive(
    atoms,
    lambda sub: st.one_of(
        st.tuples(sub, st.sampled_from(["+", "-"]), sub).map(" ".join),
        st.tuples(st.sampled_from(["min", "max"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
    ),
    max_leaves=4,
)
guard_expr = st.recursive(
    st.tuples(int_expr, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), int_expr).map(" ".join),
    lambda sub: st.one_of(st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(" ".join), sub.map("not {}".format)),
    max_leaves=3,
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def transitions(draw: st.DrawFn, states: list[str]) -> dict[str, Any]:
    t: dict[str, Any] = {"event": draw(st.sampled_from(list(EVENTS)))}
    t["source"] = draw(
        st.one_of(
            st.just("*"),
            st.sampled_from(states),
            st.lists(st.sampled_from(states), min_size=1, max_size=3, unique=True),
        )
    )
    if draw(st.booleans()):
        t["dest"] = draw(st.sampled_from(states))
    if draw(st.booleans()):
        t["guard"] = draw(guard_expr)
    if draw(st.booleans()):
        t["updates"] = draw(st.dictionaries(st.sampled_from(COUNTERS), int_expr, max_size=2))
    return t


@st.composite
def spec_dicts(draw: st.DrawFn) -> dict[str, Any]:
    states = STATES[: draw(st.integers(1, 4))]
    spec: dict[str, Any] = {
        "lwfsm": 1,
        "name": "generated",
        "version": 1,
        "roles": {"r0": {}, "r1": {"cheap": True}},
        "params": {"p0": {"default": draw(st.integers(0, 5)), "min": 0, "max": 5}},
        "counters": {c: {"initial": draw(st.integers(0, 2))} for c in COUNTERS},
        "events": {name: dict(ev) for name, ev in EVENTS.items()},
        "states": {s: {"role": draw(st.sampled_from(["r0", "r1"]))} for s in states},
        "initial": draw(st.sampled_from(states)),
        "transitions": draw(st.lists(transitions(states), min_size=1, max_size=10)),
        "invariants": draw(st.lists(guard_expr, max_size=2)),
    }
    for _ in range(draw(st.integers(0, 3))):  # break it: delete or replace something anywhere
        places = list(_places(spec))
        container, key = draw(st.sampled_from(places))
        if draw(st.booleans()) and isinstance(container, dict):
            del container[key]
        else:
            container[key] = draw(junk)
    return spec


def _places(node: Any) -> Any:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in list(items):
        yield node, key
        yield from _places(value)


@given(spec_dicts(), st.lists(st.sampled_from(list(EVENTS)), max_size=30))
@example(  # found by hypothesis: an invariant that fails from the start
    data={
        **{"lwfsm": 1, "name": "generated", "version": 1, "roles": {"r0": {}, "r1": {"cheap": True}}},
        **{"events": {"e0": {}}, "states": {"s0": {"role": "r0"}}, "initial": "s0"},
        **{"transitions": [{"event": "e0", "source": "*"}], "invariants": ["0 == 1"]},
    },
    events=[],
)
@example(  # found by hypothesis: a counter set below zero (c0: -1) made its snapshot unrestorable
    data={
        "lwfsm": 1,
        "name": "generated",
        "version": 1,
        "roles": {"r0": {}, "r1": {"cheap": True}},
        "params": {"p0": {"default": 0, "min": 0, "max": 5}},
        "counters": {"c0": {"initial": 0}, "c1": {"initial": 0}},
        "events": {"e0": {}, "e1": {}, "e2": {"turn": False}},
        "states": {"s0": {"role": "r0"}, "s1": {"role": "r0"}},
        "initial": "s0",
        "transitions": [
            {"event": "e0", "source": "*", "guard": "0 == 1"},
            {"event": "e2", "source": "s0"},
            {"event": "e2", "source": "s1"},
            {"event": "e0", "source": "*", "dest": "s1", "guard": "0 == 0", "updates": {"c0": "-1"}},
            {"event": "e0", "source": "*"},
            {"event": "e1", "source": "*"},
        ],
        "invariants": ["0 == 0", "0 == 1"],
    },
    events=["e0"],
)
def test_generated_specs_load_or_fail_cleanly(data: dict[str, Any], events: list[str]) -> None:
    try:
        spec = Spec.from_dict(data)
    except SpecError as exc:
        refused: SpecError | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.issues
        try:
            Spec.from_text(yaml.safe_dump(data), source="gen.yaml")
        except SpecError:
            return
        raise AssertionError("from_text accepted what from_dict refused")
    assert Spec.from_text(yaml.safe_dump(data)) == spec
    assert Spec.from_dict(spec.model_dump()) == spec
    engine = Engine(spec)
    session = engine.session()
    for event in events:
        try:
            session.fire(event)
        except TransitionNotAllowed:
            pass
        assert session.state in spec.states
    if engine.violations(session):  # the spec breaks its own invariant (`lwfsm check` reports it):
        with pytest.raises(SnapshotError, match="violates the invariant"):  # such a snapshot is refused
            engine.restore(session.snapshot().model_dump_json())
    else:
        assert engine.restore(session.snapshot().model_dump_json()).snapshot() == session.snapshot()
    try:
        report = check(spec, depth=None)
    except Unsaturable:
        report = check(spec, depth=4)
    assert report.configurations >= 1


@given(st.text(max_size=200))
def test_arbitrary_text_only_ever_raises_spec_error(text: str) -> None:
    try:
        Spec.from_text(text)
    except SpecError:
        pass


@given(
    st.recursive(
        junk,
        lambda sub: (
            st.dictionaries(
                st.sampled_from(["lwfsm", "name", "states", "transitions", "events", "roles", "initial"]), sub
            )
            | st.lists(sub, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_arbitrary_structures_only_ever_raise_spec_error(data: Any) -> None:
    try:
        Spec.from_dict(data if isinstance(data, dict) else {"states": data})
    except SpecError:
        pass
