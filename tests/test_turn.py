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


def test_restore_refuses_a_ledger_no_call_could_have_written() -> None:
    """A row damaged or edited in the store is refused where it is read, not summed into costs."""
    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    call(core, conv, [], "first")
    good = conv.state().model_dump(mode="json")
    assert core.restore(good).ledger.calls == 1
    row = good["ledger"]["rows"][0]
    for change, where in [
        ({"calls": -3}, r"ledger\.rows\.0\.calls: Input should be greater than or equal to 0"),
        ({"retries": -1}, r"ledger\.rows\.0\.retries"),
        ({"latency": -0.5}, r"ledger\.rows\.0\.latency"),
        ({"side_calls": 2}, r"ledger\.rows\.0: Value error, 2 side calls of 1 calls"),
    ]:
        bad = {**good, "ledger": {"rows": [{**row, **change}]}}
        with pytest.raises(SnapshotError, match=where):
            core.restore(bad)
    twice = {**good, "ledger": {"rows": [row, row]}}
    with pytest.raises(SnapshotError, match=r"ledger: Value error, role 'lead' with model 'm/lead' has two rows"):
        core.restore(twice)
    with pytest.raises(SnapshotError, match=r"ledger\.rows\.0\.latency"):
        core.restore({**good, "ledger": {"rows": [{**row, "latency": float("nan")}]}})
    # settle refuses what restore would: a conversation is never written in a state it cannot read back
    plan = core.plan(conv, [{"role": "user", "content": "go"}])
    reply = {"role": "assistant", "content": "x"}
    before = conv.state()
    for given, said in [({"latency": -0.01}, "latency must be seconds"), ({"retries": -1}, "retries must be a count")]:
        with pytest.raises(ValueError, match=said):
            core.settle(conv, plan, role=plan.role, model="m/x", reply=reply, **given)
        assert conv.state() == before
    core.settle(conv, plan, role=plan.role, model="m/x", reply=reply, latency=0, retries=2)  # an int latency is one
    assert core.restore(conv.state().model_dump_json()).ledger.calls == 2


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
    with pytest.raises(ValueError, match=r"role 'boss' is not a role of spec 'lead_worker' \(lead, worker\)"):
        core.settle(conv, plan, role="boss", model="m", reply={"role": "assistant", "content": "x"})
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


def test_a_spec_without_the_default_event_names_is_refused_with_a_located_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwfsm.cli import main

    with pytest.raises(SpecError) as info:
        TurnCore(Engine(Spec.from_text(OK_FAIL, source="ok_fail.yaml")))
    said = (
        "judging.on_success: not set, so a judged turn fires 'turn_completed', which is no turn event of this "
        "spec: set judging.on_success to one of ok, fail"
    )
    assert said in str(info.value)
    assert "judging.on_failure: not set, so a judged turn fires 'failure'" in str(info.value)
    # the engine alone runs it: validate says ok, with a note; explain, report and simulate say why not
    path = tmp_path / "ok_fail.yaml"
    path.write_text(OK_FAIL)
    assert main(["validate", str(path)]) == 0
    assert f"note: for the engine only; front ends that judge turns refuse it: {path}:" in capsys.readouterr().out
    assert main(["explain", str(path)]) == 0
    assert said in capsys.readouterr().out
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"session": "s", "turn": 1, "role": "worker", "model": "m", "outcome": "ok"}\n')
    for argv in (["report", str(trace), "--spec", str(path)], ["simulate", str(path), "--trace", str(trace)]):
        assert main(argv) == 1
        assert said in capsys.readouterr().err


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


def notes(core: TurnCore, copies: int = 1) -> list[str | None]:
    """The note each call of the script carried (each call on a copy restored from the stored value if copies > 1)."""
    stored = core.start().state().model_dump_json()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "fix the parser"}]
    out = []
    conv = core.restore(stored)
    for reply, answer in SCRIPT:
        conv = core.restore(stored) if copies > 1 else conv
        plan = core.plan(conv, messages)
        out.append(plan.note)
        core.settle(conv, plan, role=plan.role, model="m", reply={"role": "assistant", "content": reply})
        stored = conv.state().model_dump_json()
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": answer}]
    return out


def test_the_first_call_of_fallback_and_of_recovery_carry_the_spec_s_notes() -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    got = notes(core)
    assert [i + 1 for i, n in enumerate(got) if n] == [
        6,
        8,
    ]  # the first lead call after the fallback, the first worker call after
    fallback, recovery = got[5], got[7]
    assert fallback is not None
    assert recovery is not None
    assert "- turn 4 (worker): task failure, unparsable_code: " in fallback
    assert '- turn 5 (worker): user correction, generic.correction: "That\'s wrong"' in fallback
    assert "You (worker) are taking the task back. A stronger model (lead)" in recovery
    assert "- turn 5 (worker): user correction" in recovery  # why the lead was called in
    assert notes(core, copies=2) == got  # the evidence travels in the stored value


def test_a_spec_without_handoffs_sends_no_note_and_keeps_its_hash() -> None:
    spec = load_spec("lead_worker")
    bare = Spec.from_dict({**spec.model_dump(), "handoffs": []})
    assert notes(TurnCore(Engine(bare))) == [None] * len(SCRIPT)
    assert bare.hash == spec.hash  # rewording a note orphans no stored conversation


def test_an_operator_s_note_goes_with_the_next_call_only_and_notes_are_bounded() -> None:
    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    call(core, conv, messages, "hi")
    core.fire(conv, "reset", "by hand", note="Use the staging database from now on.")
    assert ConversationState.model_validate_json(conv.state().model_dump_json()).note == conv.note
    first = core.plan(conv, messages)
    assert first.note == "Use the staging database from now on."
    assert core.plan(conv, messages, side=True).note is None  # a title or a summary is not the model taking over
    core.settle(conv, first, role=first.role, model="m", reply={"role": "assistant", "content": "ok"})
    second = core.plan(conv, messages)
    assert second.note is None
    # Seven failed worker turns with long reasons: five lines of at most 200 characters.
    spec = load_spec("lead_worker", {"lead_turns": 0, "failure_threshold": 7})
    core = TurnCore(Engine(spec), detectors=[lambda reply, after, tools: "it broke " * 100])
    conv, msgs = core.start(), [{"role": "user", "content": "go"}]
    for i in range(8):
        plan = core.plan(conv, msgs)
        core.settle(conv, plan, role=plan.role, model="m", reply={"role": "assistant", "content": f"try {i}"})
        msgs += [{"role": "assistant", "content": f"try {i}"}, {"role": "user", "content": "go on"}]
    assert plan.state == "fallback"
    assert plan.note is not None
    lines = [line for line in plan.note.splitlines() if line.startswith("- turn")]
    assert [line.split()[2] for line in lines] == ["3", "4", "5", "6", "7"]
    assert all(len(line) <= 200 for line in lines)


def _tool_loop(core: TurnCore, calls: int, usage: Usage | None = None) -> tuple[Any, Any]:
    """A tool loop of `calls` model calls, then the person's next message (a new turn's first call): the
    conversation and the loop's judged turn."""
    conv = core.start()
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "t", "type": "function", "function": {}}]}
    call["tool_calls"][0]["function"] = {"name": "sh", "arguments": "{}"}
    history: list[dict[str, Any]] = [{"role": "user", "content": "do it"}]
    judged = None
    for n in range(calls + 1):
        if n == calls:
            history = [*history, {"role": "user", "content": "next"}]
        plan = core.plan(conv, history)
        judged = core.settle(conv, plan, role="worker", model="m", reply=call, usage=usage) or judged
        history = [*history, call, {"role": "tool", "tool_call_id": "t", "content": "..."}]
    return conv, judged


@pytest.mark.parametrize(
    ("seen", "kind", "outcome"),
    [
        (["rejected", "ok"], "rejected", "failure"),  # was recorded task_failure
        (["environment", "ok"], "environment", "turn_completed"),  # was recorded ok
        (["task_failure", "environment"], "task_failure", "failure"),  # the failure was lost
        (["environment", "task_failure"], "task_failure", "failure"),
    ],
)
def test_a_message_turn_keeps_the_kind_seen_within_it(
    seen: list[str], kind: str, outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """turn_unit "message": a tool loop is one turn, judged call by call. What a call in it saw stands
    when a later call saw nothing worse, with its own kind (the trace's kind is what a simulated spec
    maps again: `lwfsm simulate`)."""
    from lwfsm.turn.judge import Evidence, Judgement

    core = TurnCore(Engine(load_spec("lead_worker").with_params({"lead_turns": 0})), turn_unit="message")
    verdicts = iter([*(Judgement(k, "generic", Evidence(f"r.{k}", 0, 1, k) if k != "ok" else None) for k in seen)])
    monkeypatch.setattr(core, "judgement", lambda *a, **k: next(verdicts))
    _, judged = _tool_loop(core, 2)
    record = judged.record("s")
    assert (record["kind"], record["outcome"]) == (kind, outcome)


def test_a_message_turns_record_holds_all_its_calls_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """turn_unit "message": the trace line of a tool loop's turn held its last call's tokens only, so a
    report of an integration's trace was short of the ledger."""
    from lwfsm.turn.judge import Judgement

    core = TurnCore(Engine(load_spec("lead_worker").with_params({"lead_turns": 0})), turn_unit="message")
    monkeypatch.setattr(core, "judgement", lambda *a, **k: Judgement("ok", "generic"))
    conv, judged = _tool_loop(core, 3, Usage(prompt_tokens=100, completion_tokens=10))
    record = judged.record("s")
    assert (record["prompt_tokens"], record["completion_tokens"]) == (300, 30)  # the 3 calls of turn 1
    assert conv.ledger.rows[0].usage.prompt_tokens == 400  # and the 4th, of the turn still open


def test_a_row_without_a_kind_seen_is_written_as_before() -> None:
    """`failure_kind` is written only where a kind was seen: other rows stay readable by a version that
    never wrote it (it refuses fields it does not know)."""
    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    user = {"role": "user", "content": "go"}
    core.settle(conv, core.plan(conv, [user]), role="lead", model="m", reply={"role": "assistant", "content": "ok"})
    assert conv.pending is not None
    assert "failure_kind" not in conv.state().model_dump_json()
    assert ConversationState.model_validate_json(conv.state().model_dump_json()) == conv.state()


def test_messages_the_judge_cannot_read_are_refused_not_judged_ok() -> None:
    """An embedder's Anthropic or Responses conversation, or no list of messages at all, was judged ok
    (turn_completed): a failed command (is_error, exit code 1) went by unseen."""
    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    for wrong, said in (("Fix it", "got str"), (None, "got NoneType"), ({"role": "user"}, "got dict")):
        with pytest.raises(TypeError, match=f"messages must be a list of OpenAI Chat messages .*{said}"):
            core.plan(conv, wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"messages\[0\] must be a dict \(an OpenAI Chat message\), got str"):
        core.plan(conv, ["hi"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"messages\[0\] has no 'role'"):
        core.plan(conv, [{"content": "hi"}])
    with pytest.raises(ValueError, match=r"messages\[0\] has role 'model', which Chat Completions has not"):
        core.plan(conv, [{"role": "model", "parts": [{"text": "hi"}]}])  # Gemini's
    with pytest.raises(ValueError, match=r"messages\[0\] is a Responses item \(type 'custom_tool_call_output'\)"):
        core.plan(conv, [{"type": "custom_tool_call_output", "call_id": "c", "output": "x"}])
    asked = [{"role": "user", "content": "Fix it"}]
    plan = core.plan(conv, asked)
    call = {"type": "tool_use", "id": "c1", "name": "Bash", "input": {"command": "pytest"}}
    reply = {"role": "assistant", "content": [call]}
    core.settle(conv, plan, role=plan.role, model="m", reply=reply)
    result = {"type": "tool_result", "tool_use_id": "c1", "content": "Exit code 1\nFAILED", "is_error": True}
    anthropic = [*asked, reply, {"role": "user", "content": [result]}]
    with pytest.raises(ValueError, match=r"messages\[2\] holds Anthropic tool blocks: convert .*anthropic_messages"):
        core.plan(conv, anthropic)
    items = [*asked, {"type": "function_call_output", "call_id": "c1", "output": "Exit code 1"}]
    with pytest.raises(ValueError, match=r"messages\[1\] is a Responses item .*responses_messages"):
        core.plan(conv, items)
    from lwfsm.gateway.codec.messages import anthropic_messages

    assert core.plan(conv, anthropic_messages({"messages": anthropic})).verdict.event == "failure"  # as converted


def test_a_call_settled_without_usage_has_unknown_tokens() -> None:
    """settle() without usage= (the README's example) recorded 0 tokens as reported: priced at $0."""
    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    asked = [{"role": "user", "content": "Fix it"}]
    plan = core.plan(conv, asked)
    core.settle(conv, plan, role=plan.role, model="gpt-4o", reply={"role": "assistant", "content": "done"})
    plan = core.plan(conv, [*asked, {"role": "assistant", "content": "done"}, {"role": "user", "content": "go on"}])
    judged = core.settle(conv, plan, role=plan.role, model="gpt-4o", reply={"role": "assistant", "content": "ok"})
    assert judged is not None
    assert judged.record("a")["unreported"] == 1
    assert sum(r.usage.unreported for r in conv.ledger.rows) == 2
    assert conv.ledger.calls == 2


def test_threads_settling_one_conversation_lose_no_call() -> None:
    """settle checked the version, then committed without a lock: of 4 threads' calls on one shared
    conversation about half went missing from the ledger, and no Conflict said so."""
    import sys
    import threading

    core = TurnCore(Engine(load_spec("lead_worker", params={"lead_turns": 1000})))
    conv = core.start()
    settled = []

    def work() -> None:
        n = 0
        for _ in range(400):
            while True:
                plan = core.plan(conv, [{"role": "user", "content": "go"}])
                try:
                    core.settle(conv, plan, role=plan.role, model="m", reply={"role": "assistant", "content": "x"})
                except Conflict:
                    continue
                n += 1
                break
        settled.append(n)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often, so the race shows at once
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert sum(settled) == 1600
    assert conv.ledger.calls == conv.version == 1600
