"""What every framework integration shares: one conversation whose calls a framework makes.

`Front(spec, models)` binds each role of the spec to a model object of the framework's own kind
(a pydantic-ai `Model`, an Agents SDK `Model`, a LangChain chat model, a model name). A call is
`begin(messages)` (the core judges the pending turn and picks the role; nothing changes yet), the
framework's own request with `call.model`, then `end(call, ...)` (the core commits, all or nothing).
Each integration only converts its framework's messages to the OpenAI shape the core judges.
Calls go through the conversation loop (`lwfsm.turn.loop`): with `store=` (`lwfsm.store.open_store(url)`)
the conversation `name` lives there, each commit a compare-and-set, retries and lost races as every
front end handles them; without one it is held in memory (`state=` continues a conversation's value,
`save=` is called with it after every commit). No SDK is imported here.

A framework's run (one user message, then the model's tool calls until it answers in text) is one
turn by default (`turn_unit="message"`): a run whose tool failed is a failed turn even when the
model's last call only summed up, so two failed runs in a row bring the lead back, and a run stays
on one model. `turn_unit="call"` judges every model request instead (a switch may come mid-run).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..engine import Engine
from ..errors import ConfigError, causes
from ..spec import Spec, load_spec
from .core import Conversation, ConversationState, Judged, Plan, TurnCore, append_record, private
from .judge import Detector
from .ledger import Pricer, Usage
from .loop import Loop, Store, Turn, ordered

__all__ = [
    "FRAMEWORK_UNIT",
    "Call",
    "Front",
    "Save",
    "LogTo",
    "Sink",
    "sink",
    "technical",
    "SpecLike",
    "StateLike",
    "core_of",
    "tool_call",
    "tool_dict",
]

logger = logging.getLogger("lwfsm")
M = TypeVar("M")
R = TypeVar("R")
Sink = Callable[[dict[str, Any]], None]  # receives each judged turn's log record (Judged.record)
LogTo = Sink | str | os.PathLike[str]  # `log=`: a sink, or a file the records are appended to
Save = Callable[[ConversationState], None]  # receives the conversation after each commit (a store's hook)
SpecLike = TurnCore | Engine | Spec | str | Path
StateLike = ConversationState | Mapping[str, Any] | str | bytes
FRAMEWORK_UNIT = "message"  # a framework run is one turn (see the module's docstring)


def core_of(
    spec: SpecLike,
    *,
    detectors: Sequence[Detector] | None = None,
    turn_unit: str | None = None,
    default_unit: str = "call",
    agent: str | None = None,
) -> TurnCore:
    """A turn core from a core, an engine, a spec, a spec file or a shipped spec's name.

    `turn_unit` None means `default_unit` (the front end's choice); a given core keeps its own.
    """
    if isinstance(spec, TurnCore):
        if turn_unit is not None and turn_unit != spec.turn_unit or detectors is not None or agent is not None:
            # A core is built once with its judging; quietly ignoring the options would judge otherwise.
            raise ConfigError(
                f"a TurnCore carries its own turn_unit ({spec.turn_unit!r}), detectors and agent: "
                "pass them to TurnCore(...), or pass the spec instead of the core"
            )
        return spec
    engine = spec if isinstance(spec, Engine) else Engine(spec if isinstance(spec, Spec) else load_spec(spec))
    return TurnCore(engine, detectors=detectors, turn_unit=turn_unit or default_unit, agent=agent)


@dataclass(frozen=True)
class Call(Generic[M]):
    """A planned call: served by `role` with `model`; `end()` commits it."""

    turn: Turn
    role: str
    model: M

    @property
    def plan(self) -> Plan:
        return self.turn.plan

    @property
    def started(self) -> float:
        return self.turn.started

    @property
    def note(self) -> str | None:
        """The handoff note this call carries: add it last to the messages sent, never to the agent's own."""
        return self.plan.note


def sink(log: LogTo | None) -> Sink | None:
    """`log=`: a callable that takes each judged turn's record, or a file the records are appended to
    as JSON lines (the trace `lwfsm report` reads)."""
    if log is None or callable(log):
        return log
    if not isinstance(log, (str, os.PathLike)):
        raise ConfigError(f"log= takes a callable or a file path, got {type(log).__name__}")
    path = Path(log)
    try:  # an unwritable file is found now, not after a turn was committed
        open(path, "a", encoding="utf-8", opener=private).close()
    except OSError as exc:
        raise ConfigError(f"log={str(path)!r} cannot be written: {exc.strerror or exc}") from None

    def append(record: dict[str, Any]) -> None:
        if (exc := append_record(path, record)) is not None:
            logger.error(
                "could not write turn %s of %s to %s: %s", record.get("turn"), record.get("session"), path, exc
            )

    return append


class Front(Generic[M]):
    """One conversation, its roles bound to a framework's models. `state()` is its value; pass it back as `state=`."""

    def __init__(
        self,
        spec: SpecLike,
        models: Mapping[str, M],
        *,
        state: StateLike | None = None,
        name: str | None = None,
        detectors: Sequence[Detector] | None = None,
        turn_unit: str | None = None,
        log: LogTo | None = None,
        save: Save | None = None,
        pricer: Pricer | None = None,
        agent: str | None = None,
        store: Store | None = None,
    ) -> None:
        self.core = core_of(spec, detectors=detectors, turn_unit=turn_unit, default_unit=FRAMEWORK_UNIT, agent=agent)
        roles = list(self.core.spec.roles)
        problems = [f"missing: {', '.join(r for r in roles if r not in models)}"] if set(roles) - set(models) else []
        if set(models) - set(roles):
            problems.append(f"unknown: {', '.join(r for r in models if r not in roles)}")
        if problems:
            raise ConfigError(
                f"models must bind exactly the roles of spec '{self.core.spec.name}' ({', '.join(roles)}); "
                + "; ".join(problems)
            )
        self.models = dict(models)
        if store is not None and state is not None:
            raise ConfigError("with a store, the conversation is the store's: pass its id as name=, not state=")
        if name is None:
            if store is not None:
                raise ConfigError("with a store, name the conversation (name=): the name finds it again")
            name = f"conv-{uuid.uuid4().hex[:12]}"  # apart from every other in one trace (lwfsm report)
        self.loop = Loop(self.core, store)
        if store is None:
            self.loop.hold(name, self.core.start() if state is None else self.core.restore(state))
        self.conversation: Conversation = self.loop.load(name).conv  # as last loaded or written
        self.name, self.log, self.save, self.pricer = name, sink(log), save, pricer
        self._order = ordered(store, name)  # with the other fronts of this conversation: its trace in order

    @property
    def role(self) -> str:
        """The role of the conversation's current state (the next call may still be judged elsewhere)."""
        return self.conversation.session.role

    def state(self) -> ConversationState:
        return self.conversation.state()

    def begin(self, messages: Sequence[Mapping[str, Any]], *, side: bool = False) -> Call[M]:
        """Judge the pending turn from `messages` (OpenAI-shaped) and pick the role; changes nothing."""
        turn = self.loop.begin(self.name, messages, side=side)
        self.conversation = turn.conv
        return Call(turn, turn.plan.role, self.models[turn.plan.role])

    def fallback(self, call: Call[M], exc: BaseException) -> Call[M]:
        """`call` again on the role `judging.technical_fallback` names for its role, when `exc` is its
        model failing technically (a server error or overload, no connection, a timeout: the SDK has
        retried already); else `exc` is raised again. The turn commits as served by that role."""
        roles = self.core.roles_for(call.plan)
        nxt = roles[roles.index(call.role) + 1] if call.role in roles[:-1] else None
        if nxt is None or not technical(exc):
            raise exc
        logger.warning("%s model failed (%s); the %s model serves this call", call.role, type(exc).__name__, nxt)
        return Call(call.turn, nxt, self.models[nxt])

    def served(self, call: Call[M], send: Callable[[Call[M]], R]) -> tuple[Call[M], R]:
        """`send(call)`, again on the technical fallback's role if it fails technically (`fallback`):
        the call that answered, and its answer."""
        while True:
            try:
                return call, send(call)
            except Exception as exc:
                call = self.fallback(call, exc)

    async def aserved(self, call: Call[M], send: Callable[[Call[M]], Awaitable[R]]) -> tuple[Call[M], R]:
        """`served` for an async `send`."""
        while True:
            try:
                return call, await send(call)
            except Exception as exc:
                call = self.fallback(call, exc)

    def end(
        self,
        call: Call[M],
        *,
        model: str,
        reply: Mapping[str, Any] | None,
        tools: Sequence[Mapping[str, Any]] = (),
        usage: Usage | None = None,
        retries: int = 0,
    ) -> Judged | None:
        """Commit `call` once it returned `reply` (an OpenAI-shaped assistant message), and log the judged turn.
        Served by `call.role`, whatever another call of the conversation committed meanwhile (`lwfsm.turn.loop`)."""
        with self._order:
            done = self.loop.commit(
                call.turn, role=call.role, model=model, reply=reply, tools=tools, usage=usage, retries=retries
            )
            self.conversation = done.stored.conv
            self._committed(done.judged)
        return done.judged

    def close(self, messages: Sequence[Mapping[str, Any]] = ()) -> Judged | None:
        """End the conversation: judge the last turn from `messages` (the last tool results, the user's word)."""
        with self._order:
            judged, stored = self.loop.update(self.name, lambda s: s.conv.core.close(s.conv, messages))
            self.conversation = stored.conv
            self._committed(judged)
        return judged

    def _committed(self, judged: Judged | None) -> None:
        if self.save is not None:
            self.save(self.conversation.state())
        if judged is not None and self.log is not None:
            cost = self.pricer(judged.pending.model, judged.pending.usage) if self.pricer else None
            self.log(judged.record(self.name, cost))


def technical(exc: BaseException) -> bool:
    """A model call that failed for want of a working server, not for what it was asked: an HTTP status
    of 500 or more (529: overloaded), or a connection or timeout error, as the SDKs name theirs."""
    for e in causes(exc):
        if any(w in type(e).__name__ for w in ("Connection", "Timeout")):
            return True  # (before the status: LiteLLM's Timeout carries a 408)
        status = getattr(e, "status_code", None)
        if isinstance(status, int):
            return status >= 500
    return False


def tool_dict(name: str, description: str | None, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """A tool offered to a call, in the OpenAI shape the judge reads (only the name matters to it)."""
    return {
        "type": "function",
        "function": {"name": name, "description": description or "", "parameters": dict(parameters or {})},
    }


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A tool call of a reply, in the OpenAI shape."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
