"""The engine: one compiled `transitions.Machine` per spec, shared by every session.

Sessions are small slotted objects (state, counter values, turn number). Events go through the
shared machine's own `Event` objects with the session as the model, so no `add_model` is ever
needed: creating a session costs a list copy, and an event costs the same whatever the number of
live sessions. The machine holds no lead/worker logic; everything comes from the spec.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transitions import Machine, State

from ..errors import SnapshotError, SpecError, SpecIssue, TransitionNotAllowed, unknown
from ..spec import Spec
from ..spec.expr import Compiled
from ..spec.reading import short

__all__ = ["Engine", "LastTransition", "Listener", "Session", "Snapshot", "TransitionRecord"]

logger = logging.getLogger("lwfsm")


def _quiet_transitions() -> None:
    # transitions logs every callback it runs at INFO ("Executed callback '<function ...>'"), a few
    # lines per event: a user who turns INFO on to see lwfsm's one line per switch would drown. Its
    # events are lwfsm's internals, so lwfsm sets its logger to WARNING, unless the user has
    # configured that logger (any level set): then their choice stands.
    quiet = logging.getLogger("transitions")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)


class TransitionRecord(NamedTuple):
    """What one event did. `turn` is the turn the event ended (unchanged for non-turn events)."""

    turn: int
    event: str
    source: str
    dest: str
    reason: str | None
    guard: str | None  # the guard that fired, as written in the spec
    transition: int | None  # index in spec.transitions; None when the state ignores the event


Listener = Callable[["Session", TransitionRecord], None]


class Snapshot(BaseModel):
    """A session as a value: small, JSON-able, restorable with `Engine.restore`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    spec: str
    version: int
    spec_hash: str
    state: str
    counters: dict[str, int]
    turn: int = Field(ge=0)
    last: LastTransition | None = None  # the most recent event, for diagrams and debugging


class LastTransition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    event: str
    source: str
    dest: str
    transition: int | None  # index in spec.transitions; None when the state ignored the event


class Engine:
    """Compiles a `Spec` once; hands out sessions that share the compiled machine."""

    def __init__(self, spec: Spec, *, history: int = 64) -> None:
        if not isinstance(spec, Spec):
            hint = f": Engine(load_spec({spec!r}))" if isinstance(spec, str) else ""
            raise TypeError(f"Engine takes a Spec, not {type(spec).__name__}{hint}")
        if history < 0:
            raise ValueError(f"history must be >= 0, got {history}")
        _quiet_transitions()
        self.spec = spec
        self.history_limit = history
        self.counter_names: tuple[str, ...] = tuple(spec.counters)
        self._index = {name: i for i, name in enumerate(self.counter_names)}
        self._listeners: list[Listener] = []
        comp = spec.compile
        self.state_roles: dict[str, str] = {name: st.role for name, st in spec.states.items()}
        self.initial_state = spec.initial_state
        self.verdict_events = spec.judging.events  # (success, failure): what turn_completed()/failure() fire
        self._turn_events = {name for name, ev in spec.events.items() if ev.turn}
        self._ignored = {name: frozenset(st.ignore) for name, st in spec.states.items()}

        states = []
        for name, st in spec.states.items():
            enter = self._updater(st.on_enter, comp)
            states.append(State(name, on_enter=[enter] if enter else []))
        # auto_transitions off: only the spec's transitions exist. send_event: callbacks get the
        # EventData, whose `model` is the session.
        self.machine = Machine(
            model=None, states=states, initial=None, auto_transitions=False, send_event=True, name=f"{spec.name}: "
        )

        # A spec that reads `turn` keeps the turn count as one more value after the counters, always
        # equal to session.turn, so compiled expressions read it like a counter.
        self._turn_cell = len(self.counter_names) if spec.uses_turn else None
        self._pre_vector = [comp(c.initial)([]) for c in spec.counters.values()]
        if self._turn_cell is not None:
            self._pre_vector.append(0)
        values = list(self._pre_vector)
        enter = self._updater(spec.states[self.initial_state].on_enter, comp)
        if enter:  # a new session has entered its initial state, just as a reset does
            enter(SimpleNamespace(model=SimpleNamespace(_c=values)))
        for name, v in zip(self.counter_names, values, strict=False):
            if v.bit_length() > 63:  # no session could start, nor be stored (counters are 64-bit)
                params = ", ".join(f"{k}={v}" for k, v in spec.param_values.items())
                said = f"starts past 64 bits{f' with params {params}' if params else ''} (counters are 64-bit)"
                raise SpecError([SpecIssue(spec.where("counters", name), None, None, f"counters.{name}", said)])
        self._initial_vector: tuple[int, ...] = tuple(values)
        self.spec_hash = spec.hash

        self._sources: dict[str, frozenset[str]] = {}
        for i, t in enumerate(spec.transitions):
            sources = spec.sources(t)
            guard = comp(t.guard, "bool") if t.guard else None
            conditions: list[Any] = [_condition(guard)] if guard else []
            if t.reset:
                before: list[Any] = [self._resetter(i)]
                dest: str | None = self.initial_state
            else:
                before = [self._marker(i, self._updater(t.updates, comp))]
                dest = t.dest
            for event in t.events:
                for s in sources:
                    self.machine.add_transition(event, s, dest, conditions=conditions, before=before)
                self._sources[event] = self._sources.get(event, frozenset()) | frozenset(sources)
        self._events = {name: self.machine.events[name] for name in spec.events if name in self.machine.events}
        self._guards = tuple(t.guard for t in spec.transitions)  # the hot path touches no pydantic model
        self._invariants = [(inv.expr, frozenset(inv.states), comp(inv.expr, "bool")) for inv in spec.invariants]

    # -- compilation helpers (closures called by transitions with the EventData) --

    def _updater(self, updates: Mapping[str, str], comp: Callable[[str], Compiled]) -> Callable[[Any], None] | None:
        if not updates:
            return None
        # Updates are simultaneous: every right-hand side sees the values from before the step.
        pairs = [(self._index[name], comp(text)) for name, text in updates.items()]
        if len(pairs) == 1:
            ((i, f),) = pairs

            def one(ed: Any) -> None:
                c = ed.model._c
                c[i] = f(c)

            return one

        def many(ed: Any) -> None:
            c = ed.model._c
            new = [(i, f(c)) for i, f in pairs]
            for i, v in new:
                c[i] = v

        return many

    def _marker(self, index: int, update: Callable[[Any], None] | None) -> Callable[[Any], None]:
        def mark(ed: Any) -> None:
            ed.args[0].append(index)
            if update is not None:
                update(ed)

        return mark

    def _resetter(self, index: int) -> Callable[[Any], None]:
        pre = self._pre_vector  # transitions then enters the initial state, running its on_enter

        def reset(ed: Any) -> None:
            ed.args[0].append(index)
            ed.model._c[:] = pre
            ed.model.turn = 0

        return reset

    # -- public API --

    def session(self) -> Session:
        """A new session in the initial configuration."""
        return Session(self)

    def at(self, state: str, values: Sequence[int], turn: int = 0) -> Session:
        """A session placed at a configuration (counter values in declaration order), no history."""
        return Session(self).place(state, values, turn)

    def violations(self, session: Session) -> list[str]:
        """The spec invariants that do not hold in the session's configuration (normally none)."""
        return [
            text
            for text, states, holds in self._invariants
            if (not states or session.state in states) and not holds(session._c)
        ]

    def on_transition(self, callback: Listener) -> Listener:
        """Call `callback(session, record)` after every event of every session (usable as a decorator)."""
        self._listeners.append(callback)
        return callback

    def restore(self, snapshot: Snapshot | Mapping[str, Any] | str) -> Session:
        """Rebuild a session from `Session.snapshot()` (a Snapshot, its dict, or its JSON)."""
        try:
            if isinstance(snapshot, str):
                snap = Snapshot.model_validate_json(snapshot)
            elif isinstance(snapshot, Snapshot):
                snap = snapshot
            else:
                snap = Snapshot.model_validate(snapshot)
        except ValidationError as exc:
            # `from None`: the chained error would echo the whole payload (it may be huge) again.
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top)"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise SnapshotError(f"not a valid lwfsm snapshot: {where}: {short(first['msg'], 200)}{more}") from None
        spec = self.spec
        if (snap.spec, snap.version, snap.spec_hash) != (spec.name, spec.version, self.spec_hash):
            raise SnapshotError(
                f"snapshot is from spec '{snap.spec}' v{snap.version} (hash {snap.spec_hash}), but this engine "
                f"runs '{spec.name}' v{spec.version} (hash {self.spec_hash}); the rules or params differ. "
                "Restore it with an engine built from the same spec and params."
            )
        if snap.state not in spec.states:
            raise SnapshotError(f"snapshot state '{snap.state}' is not a state of spec '{spec.name}'")
        if set(snap.counters) != set(self.counter_names):
            raise SnapshotError(
                f"snapshot counters {short(str(sorted(snap.counters)), 200)} do not match "
                f"the spec's {sorted(self.counter_names)}"
            )
        values = [snap.counters[name] for name in self.counter_names]
        starts = self._initial_vector[: len(self.counter_names)]  # without the turn cell, if any
        counting = _counting(spec)
        for name, value, start in zip(self.counter_names, values, starts, strict=True):
            # A counter that only counts (set to a constant of 0 or more, or raised by one) never went
            # below zero or its initial value; none goes past 64 bits. Any other may have been written so.
            low = min(0, start) if name in counting else -(2**63)
            if value < low or value.bit_length() > 63:
                shown = value if value.bit_length() <= 63 else "out of range"
                raise SnapshotError(f"snapshot counter '{name}' = {shown} cannot occur in spec '{spec.name}'")
        broken = self.violations(self.at(snap.state, values, snap.turn))
        if broken:
            where = ", ".join(f"{k}={v}" for k, v in zip(self.counter_names, values, strict=True))
            raise SnapshotError(
                f"snapshot ({snap.state}, {where}) violates the invariant '{broken[0]}' of spec '{spec.name}'"
            )
        if snap.last is not None:
            last = snap.last
            if last.event not in spec.events:
                raise SnapshotError(f"snapshot's last event '{short(last.event)}' is not an event of '{spec.name}'")
            if last.transition is not None and not 0 <= last.transition < len(spec.transitions):
                raise SnapshotError(
                    f"snapshot's last transition {last.transition} is not a transition of '{spec.name}'"
                )
            if {last.source, last.dest} - set(spec.states):
                raise SnapshotError(f"snapshot's last transition {last.source} -> {last.dest} names unknown states")
        session = Session(self)
        if snap.last is not None and self.history_limit:
            guard = None if last.transition is None else spec.transitions[last.transition].guard
            session._history = [
                TransitionRecord(snap.turn, last.event, last.source, last.dest, None, guard, last.transition)
            ]
        session.state = snap.state
        session._c = values
        if self._turn_cell is not None:
            session._c.append(snap.turn)
        session.turn = snap.turn
        return session


def _condition(guard: Compiled) -> Callable[[Any], bool]:
    def condition(ed: Any) -> bool:
        return bool(guard(ed.model._c))

    return condition


class Session:
    """One conversation's position in the machine. Thread-safe: events on one session are serialised."""

    __slots__ = ("_engine", "state", "_c", "turn", "_history", "_lock", "_listeners")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.state: str = engine.initial_state
        self._c = list(engine._initial_vector)
        self.turn = 0
        self._history: list[TransitionRecord] | None = None
        self._lock = threading.Lock()
        self._listeners: list[Listener] | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def role(self) -> str:
        """The role that serves the next turn."""
        return self._engine.state_roles[self.state]

    @property
    def counters(self) -> dict[str, int]:
        return dict(zip(self._engine.counter_names, self._c, strict=False))  # the turn cell, if any, is not one

    @property
    def values(self) -> tuple[int, ...]:
        """The counter values in declaration order (what `Engine.at` takes)."""
        return tuple(self._c[: len(self._engine.counter_names)])

    @property
    def history(self) -> list[TransitionRecord]:
        """The most recent transition records, oldest first (at most `engine.history_limit`)."""
        with self._lock:
            return (self._history or [])[-self._engine.history_limit :]

    def place(self, state: str, values: Sequence[int], turn: int = 0) -> Session:
        """Move this session to a configuration without firing anything (checks reuse one probe)."""
        with self._lock:
            self.state, self._c, self.turn = state, list(values)[: len(self._engine.counter_names)], turn
            if self._engine._turn_cell is not None:
                self._c.append(turn)
        return self

    def turn_completed(self) -> TransitionRecord:
        """The turn ended without a task failure: fires the spec's `judging.on_success` event."""
        return self.fire(self._engine.verdict_events[0])

    def failure(self, reason: str | None = None) -> TransitionRecord:
        """The turn ended with a task failure (`judging.on_failure`); `reason` is kept and logged."""
        return self.fire(self._engine.verdict_events[1], reason)

    def reset(self) -> TransitionRecord:
        """A new conversation: back to the initial configuration."""
        return self.fire("reset")

    def fire(self, event: str, reason: str | None = None) -> TransitionRecord:
        """Fire any event of the spec. Raises TransitionNotAllowed, leaving the session unchanged."""
        record = self.apply(event, reason)
        self.notify(record)
        return record

    def notify(self, record: TransitionRecord) -> None:
        """Log a switch and tell the listeners. A listener that raises is logged: the event stands."""
        eng = self._engine
        reason, event = record.reason, record.event
        if record.dest != record.source and logger.isEnabledFor(logging.INFO):
            logger.info(
                "turn %d: %s -> %s on %s%s%s",
                record.turn,
                record.source,
                record.dest,
                event,
                f" [{record.guard}]" if record.guard else "",
                f" ({reason})" if reason else "",
            )
        for listener in (*eng._listeners, *(self._listeners or ())):
            try:
                listener(self, record)
            except Exception:
                logger.exception("listener %r failed on turn %d (%s); the event stands", listener, record.turn, event)

    def peek(self, event: str) -> tuple[str, str]:
        """(state, role) that `event` would lead to, changing nothing and telling no listener."""
        with self._lock:
            probe = self._engine.at(self.state, self.values, self.turn)
        probe.apply(event, None)
        return probe.state, probe.role

    def apply(self, event: str, reason: str | None = None) -> TransitionRecord:
        """`fire` without the log line and the listeners (for checks and for commits notified later)."""
        if reason is not None and not isinstance(reason, str):  # it is stored, and snapshots keep text
            raise TypeError(f"a reason is text (a str), not {type(reason).__name__} {reason!r}")
        eng = self._engine
        with self._lock:
            source = self.state
            ev = eng._events.get(event)
            if event in eng._ignored[source]:
                fired: list[int] = []
            elif ev is None or source not in eng._sources[event]:
                raise TransitionNotAllowed(self._not_allowed(event, source), event=event, state=source)
            else:
                fired = []
                before, turn = list(self._c), self.turn
                if not ev.trigger(self, fired):
                    counters = ", ".join(f"{k}={v}" for k, v in self.counters.items())
                    raise TransitionNotAllowed(
                        f"event '{event}' in state '{source}' ({counters}): no guard of its transitions holds",
                        event=event,
                        state=source,
                    )
                # a counter past 64 bits could not be restored, and its arithmetic grows without end
                big = next((n for n, v in zip(eng.counter_names, self._c, strict=False) if v.bit_length() > 63), None)
                if big is not None:
                    self._c[:], self.state, self.turn = before, source, turn
                    raise TransitionNotAllowed(
                        f"event '{event}' in state '{source}' would take counter '{big}' past 64 bits (counters "
                        "are 64-bit): nothing changed",
                        event=event,
                        state=source,
                    )
            if event in eng._turn_events:
                self.turn += 1
                if eng._turn_cell is not None:
                    self._c[eng._turn_cell] = self.turn
            index = fired[0] if fired else None
            guard = eng._guards[index] if index is not None else None
            record = TransitionRecord(self.turn, event, source, self.state, reason, guard, index)
            limit = eng.history_limit
            if limit:
                if self._history is None:
                    self._history = [record]
                else:
                    self._history.append(record)
                    if len(self._history) > 2 * limit:  # trim in batches: amortised O(1)
                        del self._history[:-limit]
        return record

    def _not_allowed(self, event: str, state: str) -> str:
        eng = self._engine
        if not isinstance(event, str):
            raise TypeError(f"an event is the name of one (a str), not {type(event).__name__} {event!r}")
        if event not in eng.spec.events:
            return f"spec '{eng.spec.name}': " + unknown("event", event, eng.spec.events)
        allowed = sorted(eng._sources.get(event, ()))
        return (
            f"event '{event}' has no transition from state '{state}' (it has from: {', '.join(allowed) or 'no state'})"
        )

    def on_transition(self, callback: Listener) -> Listener:
        """Call `callback(session, record)` after every event of this session."""
        with self._lock:
            self._listeners = [*(self._listeners or ()), callback]
        return callback

    def snapshot(self) -> Snapshot:
        spec = self._engine.spec
        with self._lock:
            last = None
            if self._history:
                r = self._history[-1]
                last = LastTransition(event=r.event, source=r.source, dest=r.dest, transition=r.transition)
            return Snapshot(
                spec=spec.name,
                version=spec.version,
                spec_hash=self._engine.spec_hash,
                state=self.state,
                counters=self.counters,
                turn=self.turn,
                last=last,
            )

    def __repr__(self) -> str:
        counters = ", ".join(f"{k}={v}" for k, v in self.counters.items())
        return f"<Session {self._engine.spec.name} turn={self.turn} state={self.state} role={self.role} {counters}>"


_COUNTS = re.compile(r"\s*(?:\d+|(?P<name>[A-Za-z_]\w*)(?:\s*\+\s*\d+)?)\s*")


def _counting(spec: Spec) -> set[str]:
    """The counters every update of which keeps them from going down below zero: a constant of 0 or more,
    or the counter itself plus a constant of 0 or more. (Read from the text: the engine reads no checker.)"""
    updates = [u for t in spec.transitions for u in t.updates.items()]
    updates += [u for st in spec.states.values() for u in st.on_enter.items()]
    out = set(spec.counters)
    for name, expr in updates:
        m = _COUNTS.fullmatch(str(expr))
        if m is None or (m.group("name") is not None and m.group("name") != name):
            out.discard(name)
    return out
