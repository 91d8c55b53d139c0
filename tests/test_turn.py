"""The turn core: pure judging and bookkeeping, the conversation as a value, names from the spec."""

import json
from pathlib import Path
from typing import Any

import pytest

from lwfsm import ConversationState, Engine, SnapshotError, SpecError, TransitionNotAllowed, TurnCore, load_spec
from lwfsm.errors import Conflict, RunError
from lwfsm.spec import Spec
from lwfsm.turn import Usage

INVALID = Path(__file__).parent / "specs_invalid"
BROKEN = "```python\ndef f(:\n```"
# (reply the model gives, what the user says next): two failures, fallback, recovery
SCRIPT = [
    ("plan", "go"),
    ("plan more", "go"),
    ("plan done", "go"),
    (BROKEN, "go"),
    ("ok", "That's wrong, try again."),
    ("lead fix", "go"),
    ("lead fix 2", "go"),
    ("worker again", "go"),
    ("fine", "thanks"),
]


def call(core: TurnCore, conv: Any, messages: list[dict[str, Any]], reply: str) -> str:
    """One call through the core as a front end makes it; returns the role that served it."""
    plan = core.plan(conv, messages)
    core.settle(
        conv, plan, role=plan.role, model=f"m/{plan.role}", reply={"role": "assistant", "content": reply}, usage=Usage()
    )
    return plan.role


def run(core: TurnCore, copies: int) -> list[str]:
    """The script with call i served by copy i % copies, each restored from the last stored value."""
    stored = core.start().state().model_dump_json()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "fix the parser"}]
    roles = []
    convs = [core.restore(stored) for _ in range(copies)]
    for i, (reply, answer) in enumerate(SCRIPT):
        conv = core.restore(stored) if copies > 1 else convs[0]  # another process: only the stored value moves
        roles.append(call(core, conv, messages, reply))
        stored = conv.state().model_dump_json()
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": answer}]
        del i
    return roles


def test_a_conversation_split_across_restored_copies_serves_the_same_roles() -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    one = run(core, 1)
    assert one == ["lead", "lead", "lead", "worker", "worker", "lead", "lead", "worker", "worker"]
    assert run(core, 2) == one  # calls 1, 3, 5... on one copy, 2, 4, 6... on the other


def test_the_state_round_trips_exactly_through_json() -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    for reply, _ in SCRIPT[:5]:
        call(core, conv, [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], reply)
    plan = core.plan(conv, [])
    core.settle(
        conv,
        plan,
        role=plan.role,
        model="m/x",
        reply={"role": "assistant", "content": None, "tool_calls": [{"id": "1", "function": {"name": "run"}}]},
        tools=[{"type": "function", "function": {"name": "run"}}],
        usage=Usage(prompt_tokens=9, completion_tokens=2, cache_read_tokens=4),
        latency=0.25,
    )
    value = conv.state()
    text = value.model_dump_json()
    back = ConversationState.model_validate_json(text)
    assert back == value
    assert back.model_dump_json() == text
    again = core.restore(text)
    assert again.state() == value
    # As a dict too: from model_dump (tuples) or from JSON decoded by a cache (lists).
    assert core.restore(value.model_dump()).state() == value
    assert core.restore(json.loads(text)).state() == value
    assert (again.session.state, again.session.counters, again.version) == (
        conv.session.state,
        conv.session.counters,
        conv.version,
    )
    assert value.ledger.rows[-1].usage.cache_read_tokens == 4


def test_restore_refuses_other_specs_and_garbage() -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    other = TurnCore(Engine(load_spec("lead_worker", params={"lead_turns": 1})))
    with pytest.raises(SnapshotError, match="the rules or params differ"):
        other.restore(core.start().state().model_dump_json())
    with pytest.raises(SnapshotError, match=r"^not an lwfsm conversation state: version: "):
        core.restore({**core.start().state().model_dump(), "version": -1})
    with pytest.raises(SnapshotError, match="not an lwfsm conversation state"):
        core.restore("{" + "x" * 10_000)


def test_settle_refuses_a_plan_made_on_an_older_version_and_changes_nothing() -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    stale = core.plan(conv, [])
    call(core, conv, [], "first")
    before = conv.state()
    with pytest.raises(Conflict, match="moved from version 0 to 1"):
        core.settle(conv, stale, role="lead", model="m", reply={"role": "assistant", "content": "x"})
    assert conv.state() == before


def test_a_reply_that_cannot_be_recorded_changes_nothing() -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    call(core, conv, [], BROKEN)
    before = conv.state()
    plan = core.plan(conv, [{"role": "user", "content": "go"}])
    assert plan.verdict.event == "failure"
    with pytest.raises(RunError, match="no assistant message"):
        core.settle(conv, plan, role=plan.role, model="m", reply=None)
    assert conv.state() == before


def test_a_raising_listener_neither_undoes_nor_doubles_a_commit(caplog: pytest.LogCaptureFixture) -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    seen = []

    def listener(session: Any, record: Any) -> None:
        seen.append(record.event)
        raise RuntimeError("listener bug")

    conv = core.start()
    conv.session.on_transition(listener)
    call(core, conv, [], BROKEN)
    call(core, conv, [{"role": "user", "content": "go"}], "next")
    assert seen == ["failure"]
    assert conv.session.turn == 1
    assert conv.version == 2
    assert "listener bug" in caplog.text


OK_FAIL = (INVALID / "_base.yaml.txt").read_text()  # a small spec whose turn events are named ok / fail


def test_event_names_come_from_the_spec() -> None:
    text = OK_FAIL + "judging: {on_success: ok, on_failure: fail}\n"
    core = TurnCore(Engine(Spec.from_text(text)))
    conv = core.start()
    call(core, conv, [], BROKEN)
    plan = core.plan(conv, [{"role": "user", "content": "go"}])
    assert plan.verdict.event == "fail"
    call(core, conv, [{"role": "user", "content": "go"}], "fine")
    assert core.plan(conv, [{"role": "user", "content": "thanks"}]).verdict.event == "ok"


def test_a_spec_without_the_default_event_names_is_refused_with_a_located_message() -> None:
    with pytest.raises(SpecError) as info:
        TurnCore(Engine(Spec.from_text(OK_FAIL, source="ok_fail.yaml")))
    text = str(info.value)
    assert "judging.on_success: unknown turn event 'turn_completed'" in text
    assert "known: ok, fail" in text
    assert "name one of the spec's turn events there" in text


def test_judging_names_are_checked_when_the_spec_loads() -> None:
    with pytest.raises(SpecError, match=r"judging.on_failure: unknown event 'failed' \(did you mean 'fail'\?\)"):
        Spec.from_text(OK_FAIL + "judging: {on_success: ok, on_failure: failed}\n", source="s.yaml")
    with pytest.raises(SpecError, match=r"judging.technical_fallback.worker: unknown role 'boss'"):
        Spec.from_text(OK_FAIL + "judging: {technical_fallback: {worker: boss}}\n", source="s.yaml")


def test_a_spec_without_judging_still_detects_failures() -> None:
    text = load_spec("lead_worker").model_dump(exclude={"judging"})
    spec = Spec.from_dict(text)
    assert "judging" not in spec.model_fields_set
    core = TurnCore(Engine(spec))
    conv = core.start()
    call(core, conv, [], "here you go")
    verdict = core.verdict(conv, [{"role": "user", "content": "That's wrong, try again."}])
    assert verdict.event == "failure"
    assert verdict.reason == 'user correction: generic.correction at message 1, line 1: "That\'s wrong"'


def test_technical_fallback_comes_from_the_spec() -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    plan = core.plan(core.start(), [])
    assert core.roles_for(plan) == ["lead"]
    worker_plan = type(plan)(plan.verdict, "worker", "worker", False, 0)
    assert core.roles_for(worker_plan) == ["worker", "lead"]
    bare = Spec.from_dict({**load_spec("lead_worker").model_dump(exclude={"judging"})})
    assert TurnCore(Engine(bare)).roles_for(worker_plan) == ["worker"]  # never guessed from role names


def test_session_conveniences_fire_the_spec_s_own_event_names() -> None:
    session = Engine(Spec.from_text(OK_FAIL + "judging: {on_success: ok, on_failure: fail}\n")).session()
    assert session.failure("boom").event == "fail"
    assert session.turn_completed().event == "ok"
    bare = Engine(Spec.from_text(OK_FAIL)).session()
    with pytest.raises(TransitionNotAllowed, match=r"unknown event 'turn_completed'.*known: ok, fail"):
        bare.turn_completed()
