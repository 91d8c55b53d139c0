"""The turn core: the one place that knows how a conversation advances.

Call N+1 arrives with the messages that followed reply N (tool results, the user's reaction). The
core judges turn N from them, decides the role (and so the model) for call N+1 without changing
anything (`plan`), and once call N+1 has returned commits the verdict, records the reply as the new
pending turn and adds the call to the ledger (`settle`), all or nothing. A conversation's whole
state is one value (`ConversationState`: machine snapshot, pending turn, ledger, version), so call
N+1 may be served by another process or host than call N. Every front end (the LiteLLM provider,
the gateway, framework integrations, replay) is thin over this; none judges on its own. No SDK and
no HTTP library is imported here.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from ..engine import Engine, Session, Snapshot, TransitionRecord
from ..errors import ConfigError, Conflict, RunError, SnapshotError, SpecError
from . import handoff
from .agents import AGENTS, Evidence
from .agents.claude_code import placeholder
from .judge import Detector, judge, what_came_after
from .ledger import Ledger, Usage

try:
    import fcntl  # appends from several processes take turns (POSIX)
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CUT_SHORT",
    "Conversation",
    "ConversationState",
    "Judged",
    "PendingTurn",
    "Plan",
    "TurnCore",
    "Verdict",
    "append_record",
    "unreadable",
]

TurnUnit = Literal["call", "message"]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class PendingTurn(_Value):
    """A served turn waiting for its verdict (which the next call's messages bring)."""

    turn: int = Field(ge=1)
    state: str  # the state that served it
    role: str
    model: str
    reply: dict[str, Any]  # the assistant message, OpenAI-shaped (content, tool_calls)
    tools: list[dict[str, Any]] = []  # the tools offered to the call
    usage: Usage = Field(default_factory=lambda: Usage.model_validate({}))
    latency: float = 0.0
    failure: str | None = None  # a failure already seen within this turn (turn unit "message")
    failure_evidence: dict[str, Any] | None = None  # where it was seen (`Evidence` as a dict)
    failure_kind: str | None = None  # the kind seen so far within this turn (rejected, environment...)

    @model_serializer(mode="wrap")
    def _written(self, write: Any) -> Any:
        # failure_kind only where set: a row without one stays readable by versions that never wrote it
        data = write(self)
        if isinstance(data, dict) and data.get("failure_kind") is None:
            data.pop("failure_kind", None)
        return data

    handoff: str | None = None  # the handoff note this turn's call carried (its first, in turn unit "message")


class ConversationState(_Value):
    """A conversation as a value: JSON round-trips it exactly; `TurnCore.restore` continues it anywhere."""

    format: Literal[1] = 1
    machine: Snapshot
    pending: PendingTurn | None = None
    ledger: Ledger = Field(default_factory=lambda: Ledger.model_validate({}))
    version: int = Field(default=0, ge=0)  # +1 per settled call: the compare-and-set token of stores
    # Handoffs: the failed turns since the last role switch, the evidence of that switch (one line
    # each, bounded), and an operator's note waiting for the next call.
    failed: list[str] = []
    handed: list[str] = []
    note: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The event a pending turn earns; `event` None: nothing to judge, or the turn is still open.
    `kind` says what the judge saw (ok, task_failure, environment, ...) and `evidence` where."""

    event: str | None
    reason: str | None
    kind: str | None = None
    evidence: Evidence | None = None
    agent: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a call will do: commit `verdict` after it returns; served by `role` (in `state`)."""

    verdict: Verdict
    role: str
    state: str
    side: bool
    version: int  # the conversation version this plan was made on
    note: str | None = None  # the handoff note this call carries (None: none)


# Where an embedder's messages of another API are turned into Chat Completions messages (pure, no SDK).
_CONVERT = {
    "Anthropic Messages": "lwfsm.gateway.codec.messages.anthropic_messages({'messages': messages})",
    "Responses": "lwfsm.gateway.codec.responses.responses_messages(items)",
}
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class UnreadableMessages(ValueError):
    """Messages of another API than Chat Completions (`api`: "Anthropic Messages", "Responses", or None for
    another shape), at `index`: judged as they are, a failed call in them would be read as none."""

    def __init__(self, index: int, what: str, api: str | None = None) -> None:
        convert = f": convert them with {_CONVERT[api]}" if api else ""
        super().__init__(f"messages[{index}] {what}{convert}")
        self.index, self.what, self.api = index, what, api


def chat_messages(messages: Any) -> Sequence[Mapping[str, Any]]:
    """`messages` if it is a list of OpenAI Chat Completions messages, as far as the judge reads them (the
    last assistant message and what follows it); else a TypeError (no list of messages) or
    UnreadableMessages. A turn judged from messages it cannot read would be judged ok, silently."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(
            f"messages must be a list of OpenAI Chat messages (dicts with a 'role'), got {type(messages).__name__}"
        )
    for i in range(len(messages) - 1, -1, -1):
        msg = messages[i]
        if not isinstance(msg, Mapping) and not callable(getattr(msg, "get", None)):  # (LiteLLM's Message reads so)
            raise TypeError(f"messages[{i}] must be a dict (an OpenAI Chat message), got {type(msg).__name__}")
        role, kind = msg.get("role"), msg.get("type")
        if role is None and isinstance(kind, str) and (kind == "message" or kind.endswith(("_call", "_output"))):
            raise UnreadableMessages(i, f"is a Responses item (type {kind!r})", "Responses")
        if role not in _ROLES:
            said = "has no 'role'" if role is None else f"has role {role!r}, which Chat Completions has not"
            raise UnreadableMessages(i, said)
        content = msg.get("content")
        blocks = {b.get("type") for b in content if isinstance(b, Mapping)} if isinstance(content, list) else ()
        if "tool_use" in blocks or "tool_result" in blocks:
            raise UnreadableMessages(i, "holds Anthropic tool blocks", "Anthropic Messages")
        if role == "assistant":
            break  # what the judge reads ends here (earlier messages are the history, not read for the turn)
    return messages


@dataclass(frozen=True)
class Judged:
    """One judged turn, as logged and replayed (the trace record)."""

    pending: PendingTurn
    event: str
    reason: str | None
    transition: TransitionRecord
    kind: str | None = None  # what the judge saw (None: fired by hand)
    evidence: Evidence | None = None
    spec: str | None = None  # the spec that judged it (`Spec.rules_hash`)

    def record(self, session: str, cost: float | None = None) -> dict[str, Any]:
        p, t = self.pending, self.transition
        e = self.evidence
        return {
            "session": session,
            "turn": p.turn,
            "state": p.state,
            "role": p.role,
            "model": p.model,
            "outcome": self.event,
            "reason": self.reason,
            "kind": self.kind,
            "evidence": None if e is None else asdict(e),
            **p.usage.model_dump(),
            "cost": cost,
            "latency": round(p.latency, 6),
            "handoff": p.handoff,
            "handoff_tokens_estimate": handoff.tokens(p.handoff),  # characters / 4, not a tokenizer's count
            "transition": {"source": t.source, "dest": t.dest, "index": t.transition, "guard": t.guard},
            "spec": self.spec,
        }


# What a writer appends to a trace's last line when a writer before it stopped mid-line (killed, disk
# full): the next record would join that line; the readers skip a line that ends so, saying so.
CUT_SHORT = b"  # lwfsm: cut short here, its writer stopped"


def private(path: str, flags: int) -> int:
    """An `opener` that creates a file readable by its owner only: a trace holds excerpts of tool output
    and people's messages (an existing file keeps its mode)."""
    return os.open(path, flags, 0o600)


def append_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> OSError | None:
    """Append a judged turn's record to a trace file as one JSON line (one write: appends from several
    processes do not interleave). The turn is committed already: a failed write is returned for the caller
    to log, never raised (losing a log line must not undo or repeat the turn)."""
    line = (json.dumps(record) + "\n").encode()
    try:
        if not os.path.isfile(path):  # a new file, a pipe, /dev/stdout: written as it is
            with open(path, "ab", opener=private) as f:
                f.write(line)
            return None
        with open(path, "ab+", opener=private) as f:
            if fcntl is not None:  # another writer's line half written is no line a writer left: wait for it
                fcntl.flock(f, fcntl.LOCK_EX)
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":  # a line a killed writer left: end it, marked, or this record joins it
                    line = CUT_SHORT + b"\n" + line
            f.write(line)  # (appended at the end, wherever the reading left the position)
    except OSError as exc:
        return exc
    return None


class Conversation:
    """A live conversation: its machine session, pending turn, ledger and version. `state()` is its value."""

    __slots__ = ("core", "session", "pending", "ledger", "version", "lock", "failed", "handed", "note")

    def __init__(self, core: TurnCore, session: Session, pending: PendingTurn | None, ledger: Ledger, version: int):
        self.core = core
        self.session = session
        self.pending = pending
        self.ledger = ledger
        self.version = version
        self.lock = threading.Lock()  # one discipline for sync and async front ends (see the provider)
        self.failed: list[str] = []  # see ConversationState
        self.handed: list[str] = []
        self.note: str | None = None

    def state(self) -> ConversationState:
        return ConversationState(
            machine=self.session.snapshot(),
            pending=self.pending,
            ledger=self.ledger,
            version=self.version,
            failed=self.failed,
            handed=self.handed,
            note=self.note,
        )

    def __repr__(self) -> str:
        return f"<Conversation v{self.version} {self.session!r} pending={self.pending is not None}>"


def unreadable(exc: ValidationError) -> str:
    """Why a value is no conversation state, located: the first field at fault and how many are."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top)"
    return f"not an lwfsm conversation state: {where}: {first['msg']} ({exc.error_count()} problem(s))"


class TurnCore:
    """Judging, role choice and bookkeeping for one spec; shared by every conversation of a front end."""

    def __init__(
        self,
        engine: Engine,
        *,
        detectors: Sequence[Detector] | None = None,
        turn_unit: str = "call",
        agent: str | None = None,
    ):
        """`detectors` are judged beside the agent's reader; `agent` fixes the reader (else it is told
        per call from the request's headers and messages)."""
        spec = engine.spec
        if turn_unit not in ("call", "message"):
            raise ConfigError(f"turn_unit must be 'call' or 'message', got {turn_unit!r}")
        if agent is not None and agent not in AGENTS:
            raise ConfigError(f"agent must be one of {', '.join(AGENTS)}, got {agent!r}")
        judging = spec.judging
        issues = spec.judging_issues()
        if issues:
            raise SpecError(issues)
        self.engine = engine
        self.spec = spec
        self.success, self.failure = judging.events
        self.technical_fallback = dict(judging.technical_fallback)
        self.detectors = list(detectors or ())
        self.turn_unit = turn_unit
        self.agent = agent
        self.kinds = judging.kind_events
        self.rules_hash = spec.rules_hash  # named in each trace record: which of a rollout's specs judged it
        self._settling = threading.Lock()  # a conversation's version is checked and moved in one step

    # -- conversations --

    def start(self) -> Conversation:
        return Conversation(self, self.engine.session(), None, Ledger(), 0)

    def restore(self, state: ConversationState | Mapping[str, Any] | str | bytes) -> Conversation:
        """A conversation from its value (a ConversationState, its dict or its JSON)."""
        try:
            if isinstance(state, (str, bytes)):
                value = ConversationState.model_validate_json(state)
            elif isinstance(state, ConversationState):
                value = state
            else:  # a dict may come from JSON (lists for tuples): validate it as the JSON it came from
                value = ConversationState.model_validate_json(json.dumps(state))
        except ValidationError as exc:
            raise SnapshotError(unreadable(exc)) from None
        session = self.engine.restore(value.machine)
        p = value.pending
        if p is not None and (p.role not in self.spec.roles or p.state not in self.spec.states):
            raise SnapshotError(f"pending turn names role '{p.role}' / state '{p.state}' unknown to '{self.spec.name}'")
        conv = Conversation(self, session, p, value.ledger, value.version)
        conv.failed, conv.handed, conv.note = list(value.failed), list(value.handed), value.note
        return conv

    # -- deciding (changes nothing) --

    def verdict(
        self, conv: Conversation, messages: Sequence[Mapping[str, Any]], headers: Mapping[str, str] | None = None
    ) -> Verdict:
        """The verdict on the pending turn from the next call's messages (and its headers, which may
        name the agent)."""
        p, messages = conv.pending, chat_messages(messages)
        if p is None:
            return Verdict(None, None)
        after = what_came_after(messages, passing=not placeholder(p.reply))  # a model may say those words
        j = self.judgement(p.reply, after, p.tools, messages, headers)
        kind, reason, evidence = j.kind, j.reason, j.evidence
        # What was seen earlier within this turn (turn unit "message") stands over "ok", and a kind
        # that fires another event than success (a failure, a spec's own event) over one that does not.
        earlier = p.failure_kind or ("task_failure" if p.failure else None)
        if earlier and (kind == "ok" or (self._counts(earlier) and not self._counts(kind))):
            kind, reason = earlier, p.failure
            evidence = Evidence(**p.failure_evidence) if p.failure_evidence else None
        if self.turn_unit == "message" and not any(m.get("role") == "user" for m in after):
            # a user message's tool loop is one turn: judged when the user speaks
            return Verdict(None, reason if self._counts(kind) else None, kind, evidence, j.agent)
        event = self.success if kind == "ok" else self.kinds[kind]
        return Verdict(event, reason, kind, evidence, j.agent)

    def _counts(self, kind: str | None) -> bool:
        """Whether a verdict of this kind fires another event than success (a failure, or the spec's own)."""
        return kind not in (None, "ok") and self.kinds.get(kind, self.success) != self.success

    def judgement(
        self,
        reply: Mapping[str, Any],
        after: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] = (),
        messages: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The judge's view of one turn (`lwfsm.turn.judge.Judgement`), with this spec's patterns."""
        j = self.spec.judging
        return judge(
            reply,
            after,
            tools,
            agent=self.agent,
            messages=messages,
            headers=headers,
            detectors=self.detectors,
            error_patterns=j.tool_error_patterns,
            correction_patterns=j.correction_patterns,
        )

    def plan(
        self,
        conv: Conversation,
        messages: Sequence[Mapping[str, Any]],
        *,
        side: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Plan:
        """Judge the pending turn and choose the role for this call, changing nothing yet."""
        verdict = Verdict(None, None) if side else self.verdict(conv, messages, headers)
        note = None
        if verdict.event is not None:
            state, role = conv.session.peek(verdict.event)
            note = self._handoff(conv, verdict.event, state, self._failed(conv, verdict))
        else:
            state, role = conv.session.state, conv.session.role
        return Plan(verdict, role, state, side, conv.version, None if side else handoff.join(note, conv.note))

    def _failed(self, conv: Conversation, verdict: Verdict) -> list[str]:
        """The failed turns since the last switch, with the pending one if `verdict` fails it."""
        p = conv.pending
        if p is None or verdict.kind in (None, "ok") or verdict.event == self.success:
            return conv.failed
        line = handoff.evidence_line(p.turn, p.role, verdict.kind, verdict.evidence, verdict.reason)
        return [*conv.failed, line][-handoff.MAX_LINES :]

    def _handoff(self, conv: Conversation, event: str, dest: str, failed: list[str]) -> str | None:
        """The spec's note for moving from the conversation's state to `dest` on `event`, if any."""
        h = self.spec.handoff(conv.session.state, dest)
        if h is None:
            return None
        return handoff.render(
            self.spec,
            h.note,
            source=conv.session.state,
            dest=dest,
            event=event,
            turn=conv.session.turn + (2 if self.spec.events[event].turn else 1),
            counters=conv.session.counters,
            evidence=failed,
            prior=conv.handed,
        )

    def _moved(self, conv: Conversation, record: TransitionRecord, failed: list[str]) -> None:
        """Keep the evidence across the commit: a role switch hands it on, a reset forgets it."""
        t = record.transition
        if t is not None and self.spec.transitions[t].reset:
            conv.failed, conv.handed = [], []
        elif self.spec.states[record.source].role != self.spec.states[record.dest].role:
            conv.failed, conv.handed = [], failed
        else:
            conv.failed = failed

    def roles_for(self, plan: Plan) -> list[str]:
        """The role chosen, then the spec's `judging.technical_fallback` for it, if any."""
        other = self.technical_fallback.get(plan.role)
        return [plan.role, other] if other and other != plan.role else [plan.role]

    # -- committing --

    def settle(
        self,
        conv: Conversation,
        plan: Plan,
        *,
        role: str,
        model: str,
        reply: Mapping[str, Any] | None,
        tools: Sequence[Mapping[str, Any]] = (),
        usage: Usage | None = None,
        latency: float = 0.0,
        retries: int = 0,
    ) -> Judged | None:
        """Commit the plan once its call has returned `reply`: all or nothing. Returns the judged turn.
        `Conflict` when the conversation moved since `plan` (checked and committed under one lock: two
        threads settling one conversation lost one's call from the ledger)."""
        with self._settling:
            if conv.version != plan.version:
                raise Conflict(
                    f"the conversation moved from version {plan.version} to {conv.version} while this call ran; "
                    "plan the call again"
                )
            if role not in self.spec.roles:  # it would be priced and counted as a role of its own
                raise ValueError(
                    f"role {role!r} is not a role of spec '{self.spec.name}' ({', '.join(self.spec.roles)})"
                )
            # what the ledger would hold and a restore would refuse (lwfsm.turn.ledger): refused before anything moves
            if type(retries) is not int or retries < 0:
                raise ValueError(f"retries must be a count (an int >= 0), got {retries!r}")
            if not (isinstance(latency, int | float) and 0 <= latency < math.inf):
                raise ValueError(f"latency must be seconds (a finite number >= 0), got {latency!r}")
            usage = Usage.of(None) if usage is None else usage  # not given: unknown tokens, never 0 (priced as unknown)
            ledger = conv.ledger.add(role, model, usage, retries=retries, latency=latency, side=plan.side)
            if plan.side:
                conv.ledger, conv.version = ledger, conv.version + 1
                return None
            if reply is None:
                raise RunError(f"the {role} model {model} returned no assistant message to record")
            if not isinstance(reply, Mapping):
                raise TypeError(
                    f"reply must be a dict (an OpenAI-shaped assistant message), got {type(reply).__name__}: "
                    "an SDK's message object is passed as its .model_dump()"
                )
            event, reason, evidence = plan.verdict.event, plan.verdict.reason, plan.verdict.evidence
            session = conv.session
            # Everything that can fail is done before the machine moves: validation, then the event.
            try:
                opened = PendingTurn(
                    turn=session.turn + (2 if event is not None else 1),
                    state=plan.state,
                    role=role,
                    model=model,
                    reply=dict(reply),
                    tools=[dict(t) for t in tools],
                    # a tool loop's turn (turn unit "message") is all its calls: their tokens and time add up
                    usage=conv.pending.usage + usage if event is None and conv.pending is not None else usage,
                    latency=latency + conv.pending.latency if event is None and conv.pending is not None else latency,
                    # an open turn keeps the failure seen so far, where it was seen, and the note its first call carried
                    failure=reason if event is None else None,
                    failure_evidence=asdict(evidence)
                    if event is None and plan.verdict.kind not in (None, "ok") and evidence
                    else None,
                    failure_kind=plan.verdict.kind if event is None and plan.verdict.kind not in (None, "ok") else None,
                    handoff=plan.note or (conv.pending.handoff if event is None and conv.pending else None),
                )
            except ValidationError as exc:
                raise RunError(f"cannot record the {role} model's reply: {exc.errors()[0]['msg']}") from None
            judged = None
            if event is not None:
                assert conv.pending is not None
                failed = self._failed(conv, plan.verdict)
                record = session.apply(event, reason)
                judged = Judged(
                    conv.pending, event, reason, record, plan.verdict.kind, plan.verdict.evidence, self.rules_hash
                )
                self._moved(conv, record, failed)
            conv.pending, conv.ledger, conv.version = opened, ledger, conv.version + 1
            conv.note = None  # delivered with this call (planned into plan.note)
        if judged is not None:
            conv.session.notify(judged.transition)  # listeners run after the commit; their errors are logged
        return judged

    def fire(
        self, conv: Conversation, event: str, reason: str | None = None, note: str | None = None
    ) -> TransitionRecord:
        """Fire a declared event by hand (a control API, an operator). A turn event is the pending
        turn's verdict, so the pending turn is closed; a non-turn event (reset) leaves it open.
        The spec's handoff for the switch, if any, then `note` (the operator's), go with the next call."""
        spec_note = self._handoff(conv, event, conv.session.peek(event)[0], conv.failed)
        record = conv.session.apply(event, reason)
        self._moved(conv, record, conv.failed)
        conv.note = handoff.join(conv.note, spec_note, note)
        if self.spec.events[event].turn:
            conv.pending = None
        elif (
            conv.pending is not None
            and record.transition is not None
            and self.spec.transitions[record.transition].reset
        ):
            # A reset begins the conversation again: the turn it left open, judged next, is the first the
            # machine counts, so it is turn 1 (its old number went on from the turns before the reset).
            conv.pending = conv.pending.model_copy(update={"turn": conv.session.turn + 1})
        conv.version += 1
        conv.session.notify(record)
        return record

    def close(self, conv: Conversation, messages: Sequence[Mapping[str, Any]] = ()) -> Judged | None:
        """End the conversation: judge the last turn from `messages` (tool results, the user's last word)."""
        p = conv.pending
        if p is None:
            return None
        verdict = self.verdict(conv, messages)
        event = verdict.event or (self.kinds[verdict.kind] if verdict.kind not in (None, "ok") else self.success)
        record = conv.session.apply(event, verdict.reason)
        conv.pending, conv.version = None, conv.version + 1
        conv.session.notify(record)
        return Judged(p, event, verdict.reason, record, verdict.kind, verdict.evidence, self.rules_hash)
