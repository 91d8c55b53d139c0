"""The spec's shape: frozen pydantic models, and the three ways in.

`load_spec(path)`, `Spec.from_text(text)`, `Spec.from_dict(data)`. Reading YAML with locations lives
in `reading`, the checks of meaning in `validation`; both report every mistake at once in one
`SpecError`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr

from ..errors import SpecError, SpecIssue, unknown
from .expr import Compiled, Expr, ExprError, Kind, compile_expr, parse
from .reading import Loc, find_mark, locate

__all__ = [
    "Counter",
    "Event",
    "Handoff",
    "Initial",
    "Invariant",
    "Judging",
    "Param",
    "Role",
    "Spec",
    "State",
    "Transition",
    "describe_params",
    "load_spec",
    "shipped_specs",
]

FORMAT = 1  # the spec language version this lwfsm reads (`lwfsm: 1`)
MAX_SPEC_BYTES = 1_000_000  # a hand-written spec is a few KB; 10,000 states fit in well under this


def _int_as_text(v: Any) -> Any:
    # `updates: {failures: 0}` is an expression too; YAML hands us an int.
    return str(v) if type(v) is int else v


def _none_as_empty(v: Any) -> Any:
    return {} if v is None else v


def _one_as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


Expression = Annotated[str, BeforeValidator(_int_as_text, json_schema_input_type=str | int)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class Role(_Model):
    """A role is a slot a model is bound to (e.g. lead, worker)."""

    description: str = ""
    cheap: bool = Field(False, description="`lwfsm check` reports states from which no cheap role can serve again")


# The one rule for a spec's integers: 64 bits, as counters (a larger --set was refused, a larger max not).
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class Param(_Model):
    """A tunable integer, fixed when the spec is loaded."""

    default: Int64
    min: Int64 | None = None
    max: Int64 | None = None
    description: str = ""

    @property
    def range_text(self) -> str:
        return f"[{'-inf' if self.min is None else self.min}, {'inf' if self.max is None else self.max}]"

    def values(self, up_to: int) -> range:
        """The values within the declared range, capped at min + up_to (default ± up_to when open)."""
        lo = self.min if self.min is not None else self.default - up_to
        hi = self.max if self.max is not None else self.default + up_to
        return range(lo, min(hi, lo + up_to) + 1)


class Counter(_Model):
    """An integer the machine keeps per session."""

    initial: Expression = Field("0", description="expression over params")
    window: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="a window over the last N turns: update it with push(name, bit), read it with ones(name)",
    )
    description: str = ""


class Event(_Model):
    turn: bool = Field(True, description="whether the event ends a turn (and so counts one)")
    description: str = ""


class State(_Model):
    role: str = Field(description="the role that serves turns in this state")
    description: str = ""
    on_enter: dict[str, Expression] = Field(default_factory=dict, description="counter updates")
    ignore: list[str] = Field(default_factory=list, description="events that change nothing here")


class Initial(_Model):
    state: str
    when: Expression | None = Field(None, description="condition over params; first that holds wins")


class Transition(_Model):
    event: str | list[str] = Field(description="an event, or a list of events that all take this transition")
    source: Annotated[list[str], BeforeValidator(_one_as_list, json_schema_input_type=str | list[str])] = Field(
        description='state name, list of state names, or "*" for every state'
    )
    dest: str | None = Field(None, description="no dest: an internal transition")
    guard: Expression | None = None
    updates: dict[str, Expression] = Field(default_factory=dict)
    reset: bool = Field(False, description="back to the initial configuration")
    description: str = ""

    @property
    def events(self) -> list[str]:
        return [self.event] if isinstance(self.event, str) else list(self.event)

    @property
    def event_text(self) -> str:
        return self.event if isinstance(self.event, str) else ", ".join(self.event)


class Handoff(_Model):
    """A note for the model taking over: sent with the first call served after the conversation enters
    `dest` from a state of another role (and, when `source` is given, from one of those)."""

    dest: str = Field(description="the state entered")
    source: Annotated[list[str], BeforeValidator(_one_as_list, json_schema_input_type=str | list[str])] = Field(
        default_factory=list, description="the states left (empty: any state of another role)"
    )
    note: str = Field(
        description="the note, with {name} placeholders: from_state, to_state, from_role, to_role, turn, event, "
        "evidence, prior_evidence, and the spec's counters and params"
    )
    description: str = ""


class Invariant(_Model):
    expr: Expression
    states: list[str] = Field(default_factory=list, description="where it must hold (empty: everywhere)")
    description: str = ""


# What each kind of verdict fires when the spec's `judging.kinds` does not say: a task failure, a
# user's correction and a rejected tool call are the model's failures; an environment problem (a
# module that cannot be installed, no network, missing credentials) would stop the lead too, so it
# counts as a completed turn and never brings the lead back.
FAILURE_KINDS = ("task_failure", "user_correction", "rejected")
JUDGED_KINDS = (*FAILURE_KINDS, "environment")


class Judging(_Model):
    """How a served turn is judged, and which events a verdict fires (used by every front end)."""

    @property
    def events(self) -> tuple[str, str]:
        """(success event, failure event), the defaults filled in."""
        return self.on_success or "turn_completed", self.on_failure or "failure"

    on_success: str | None = Field(
        None, description="the turn event a turn without a task failure fires (default: turn_completed)"
    )
    on_failure: str | None = Field(
        None, description="the turn event a turn with a task failure fires (default: failure)"
    )
    technical_fallback: dict[str, str] = Field(
        default_factory=dict,
        description="role -> role that serves a turn when the first role's model keeps failing technically",
    )
    kinds: dict[str, str] = Field(
        default_factory=dict,
        description="verdict kind (task_failure, user_correction, rejected, environment) -> the turn event it "
        "fires; unset kinds: on_failure for the first three, on_success for environment",
    )
    tool_error_patterns: list[str] = Field(
        default_factory=list,
        description="extra error reports, case-insensitive: a line among the last lines of a tool result that "
        "starts with one fails the turn (the agents' own formats are read without them)",
    )
    correction_patterns: list[str] = Field(
        default_factory=list,
        description="extra corrections, case-insensitive: a person's next message that starts with one fails the turn",
    )

    @property
    def kind_events(self) -> dict[str, str]:
        """Every judged kind -> the event it fires (the spec's `kinds`, the defaults filled in)."""
        success, failure = self.events
        defaults = {k: failure for k in FAILURE_KINDS} | {"environment": success}
        return defaults | dict(self.kinds)


def _initial_list(v: Any) -> Any:
    return [{"state": v}] if isinstance(v, str) else v


def _invariant_list(v: Any) -> Any:
    if isinstance(v, list):
        return [{"expr": x} if isinstance(x, (str, int)) and not isinstance(x, bool) else x for x in v]
    return v


class _Names(NamedTuple):
    """What the names in a spec's expressions are, and the counters and params they were made from."""

    counters: Any
    params: Any
    scope: dict[str, str]  # name -> "param", "counter", "window" or "turn"
    place: dict[str, int]  # counter (and "turn") -> its place in the values
    windows: dict[str, int]  # window counter -> its width


@functools.lru_cache(maxsize=4096)
def _parsed(text: str, scope: tuple[tuple[str, str], ...], want: Kind) -> Expr:
    """An expression parsed once for the names it may use: a spec for each params of a grid (`lwfsm check
    --params-up-to`), and every engine built on a spec, parse the same texts again. (An Expr is frozen;
    nothing changes its tree.)"""
    return parse(text, dict(scope), want)


class Spec(_Model):
    """A validated, frozen switching spec. Build it with load_spec / from_text / from_dict."""

    lwfsm: Literal[1] = Field(description="spec language version")
    name: str = Field(min_length=1)
    version: int = Field(ge=1, le=2**63 - 1)
    description: str = ""
    roles: dict[str, Annotated[Role, BeforeValidator(_none_as_empty, json_schema_input_type=Role | None)]]
    params: dict[str, Param] = Field(default_factory=dict)
    counters: dict[str, Annotated[Counter, BeforeValidator(_none_as_empty, json_schema_input_type=Counter | None)]] = (
        Field(default_factory=dict)
    )
    events: dict[str, Annotated[Event, BeforeValidator(_none_as_empty, json_schema_input_type=Event | None)]]
    states: dict[str, State]
    initial: Annotated[list[Initial], BeforeValidator(_initial_list, json_schema_input_type=str | list[Initial])]
    transitions: list[Transition]
    judging: Judging = Field(default_factory=lambda: Judging.model_validate({}))
    invariants: Annotated[
        list[Invariant], BeforeValidator(_invariant_list, json_schema_input_type=list[str | Invariant])
    ] = Field(default_factory=list)
    handoffs: list[Handoff] = Field(
        default_factory=list, description="notes for the model taking over at a switch (first that matches)"
    )

    _source: str = PrivateAttr("<dict>")
    _marks: dict[Loc, tuple[int, int, int]] = PrivateAttr(default_factory=dict)
    _names: _Names | None = PrivateAttr(None)  # made once per spec, not once per expression (`_named`)

    def __eq__(self, other: object) -> bool:
        # Content equality: where a spec was read from (private attrs) does not make it different.
        if not isinstance(other, Spec):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # dict fields: not hashable

    @classmethod
    def from_text(cls, text: str, source: str = "<text>", params: Mapping[str, int] | None = None) -> Spec:
        """Parse YAML text (safe_load semantics) into a checked Spec."""
        from .reading import read_yaml
        from .validation import build

        data, marks, issues = read_yaml(text, source)
        if data is None and not issues:
            issues.append(SpecIssue(source, 1, 1, "", "empty spec: expected a mapping with lwfsm, name, ..."))
        return build(data, source, marks, issues, params)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], params: Mapping[str, int] | None = None) -> Spec:
        """Check a plain mapping (e.g. `spec.model_dump()`) into a Spec."""
        from .validation import build

        return build(data, "<dict>", {}, [], params)

    def with_params(self, params: Mapping[str, int]) -> Spec:
        """The same spec with some param values replaced (each checked against its range)."""
        issues = _param_issues(self, params)
        if issues:
            raise SpecError(issues)
        new = {**self.params}
        for k, v in params.items():
            new[k] = self.params[k].model_copy(update={"default": v})
        out = self.model_copy(update={"params": new})
        out._source, out._marks = self._source, self._marks
        issues = out.division_issues()
        if issues:
            raise SpecError(issues)
        return out

    def division_issues(self) -> list[SpecIssue]:
        """Expressions that divide by a param whose value is below 1 (`failures // lead_turns` with
        lead_turns=0): they parse, but no machine can run them with these values."""
        out = []
        for text, kind, where in self.expressions():
            if "//" not in text and "%" not in text:
                continue
            try:
                self.compile(text, kind)
            except ExprError as exc:
                place = locate(self._marks, where, exc.offset) if self._marks else None
                values = ", ".join(f"{k}={v}" for k, v in self.param_values.items())
                message = f"in expression '{' '.join(text.split())}': {exc.message}" + (
                    f" (with {values})" if values else ""
                )
                line, column = place or (None, None)
                out.append(SpecIssue(self._source or "<text>", line, column, ".".join(map(str, where)), message))
        return out

    @property
    def param_values(self) -> dict[str, int]:
        return {k: p.default for k, p in self.params.items()}

    def sources(self, t: Transition) -> list[str]:
        """The states a transition leaves from, with "*" expanded to every state."""
        return list(self.states) if t.source == ["*"] else list(t.source)

    def _named(self) -> _Names:
        """The names expressions read (a spec of N counters has N or more expressions); made again for a
        copy whose counters or params differ."""
        made = self._names
        if made is None or made.counters is not self.counters or made.params is not self.params:
            counters = {c: "window" if k.window else "counter" for c, k in self.counters.items()}
            index = {name: i for i, name in enumerate(self.counters)}
            index["turn"] = len(index)
            windows = {name: c.window for name, c in self.counters.items() if c.window}
            scope = {**{p: "param" for p in self.params}, **counters, "turn": "turn"}
            made = self._names = _Names(self.counters, self.params, scope, index, windows)
        return made

    @property
    def scope(self) -> dict[str, str]:
        """What each name in an expression is: "param", "counter", "window" or the read-only "turn"."""
        return dict(self._named().scope)

    def parse(self, text: str, want: Kind = "int", *, params_only: bool = False) -> Expr:
        """Parse an expression of this spec (raises ExprError); `params_only` for initial values."""
        scope = {p: "param" for p in self.params} if params_only else self._named().scope
        if not isinstance(text, str):
            return parse(text, scope, want)  # (says what is wrong with it)
        return _parsed(text, tuple(scope.items()), want)

    def compile(self, text: str, want: Kind = "int") -> Compiled:
        """An expression as a closure over the counter values (in declaration order, then the turn
        count), params folded in."""
        names = self._named()
        return compile_expr(self.parse(text, want), names.place, self.param_values, names.windows)

    @property
    def uses_turn(self) -> bool:
        """Whether any expression reads the turn count (the engine then keeps it beside the counters)."""
        return any("turn" in self.parse(text, kind).names for text, kind, _ in self.expressions())

    def expressions(self) -> list[tuple[str, Kind, tuple[int | str, ...]]]:
        """Every expression of the spec: (text, kind, where), for checks that read them all."""
        out: list[tuple[str, Kind, tuple[int | str, ...]]] = []
        for name, st in self.states.items():
            out += [(t, "int", ("states", name, "on_enter", c)) for c, t in st.on_enter.items()]
        for i, t in enumerate(self.transitions):
            if t.guard:
                out.append((t.guard, "bool", ("transitions", i, "guard")))
            out += [(x, "int", ("transitions", i, "updates", c)) for c, x in t.updates.items()]
        out += [(inv.expr, "bool", ("invariants", i, "expr")) for i, inv in enumerate(self.invariants)]
        return out

    @property
    def initial_state(self) -> str:
        """The state a new session starts in (the first `initial` choice whose condition holds)."""
        return next(c.state for c in self.initial if c.when is None or self.compile(c.when, "bool")([]))

    @property
    def source(self) -> str:
        return self._source

    def handoff(self, source: str, dest: str) -> Handoff | None:
        """The handoff for a transition from `source` to `dest`: only where the role changes."""
        if self.states[source].role == self.states[dest].role:
            return None
        return next((h for h in self.handoffs if h.dest == dest and (not h.source or source in h.source)), None)

    @property
    def rules_hash(self) -> str:
        """`hash` without the params: the same for every value `--set` or `LWFSM_PARAM_*` gives them (what
        a trace record names, and what `report`, which takes no params, can match)."""
        return self._digest({"handoffs", "params"})

    def _digest(self, left_out: set[str]) -> str:
        rules = _strip(self.model_dump(exclude=left_out))
        return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def hash(self) -> str:
        """Digest of everything that decides the switching (descriptions excluded), params included.
        Handoff notes are left out too: rewording one must not orphan every stored conversation."""
        return self._digest({"handoffs"})

    def judging_issues(self) -> list[SpecIssue]:
        """Why front ends that judge turns cannot run this spec (the events its judging fires are not
        turn events of it), or nothing. The engine alone runs it either way, so loading does not refuse."""
        out = []
        for key, event in zip(("on_success", "on_failure"), self.judging.events, strict=True):
            if event in self.events and self.events[event].turn:
                continue
            turns = [e for e, ev in self.events.items() if ev.turn]
            if getattr(self.judging, key) is None:  # the default name: say where it came from
                message = (
                    f"not set, so a judged turn fires '{event}', which is no turn event of this spec: "
                    f"set judging.{key} to one of {', '.join(turns)}"
                )
            else:
                message = unknown("turn event", event, turns) + f": a judged turn fires judging.{key}; name one there"
            where = self.where("judging", key) if "judging" in self.model_fields_set else self.where("events")
            out.append(SpecIssue(where, None, None, f"judging.{key}", message))
        return out

    def notes(self) -> list[SpecIssue]:
        """What in the spec does nothing, likely not what its author meant; loading does not refuse it (a spec
        that has it runs as it did): an update or a counter's initial value that the entered state's
        on_enter sets again without reading it, a role that falls back to itself."""
        out: list[SpecIssue] = []

        def note(loc: tuple[str | int, ...], message: str) -> None:
            key = ".".join(str(x) for x in loc[:1]) + "".join(
                f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc[1:]
            )
            out.append(SpecIssue(self.where(*loc), None, None, key, message))

        for i, t in enumerate(self.transitions):
            entered = self.states.get(t.dest) if t.dest is not None else None
            for counter in _overwritten(t.updates, entered):
                assert entered is not None
                note(
                    ("transitions", i, "updates", counter),
                    f"this update of '{counter}' never shows: state '{t.dest}' sets it on entering "
                    f"({counter} = {entered.on_enter[counter]}), after the transition's updates",
                )
        if len(self.initial) == 1 and self.initial[0].state in self.states:
            start = self.initial[0].state
            # (an initial value other than the default 0: a spec dumped whole gives every counter's)
            declared = {n: c.initial for n, c in self.counters.items() if c.initial.strip() != "0"}
            for counter in _overwritten(declared, self.states[start]):
                note(
                    ("counters", counter, "initial"),
                    f"this initial value of '{counter}' never shows: the initial state '{start}' sets it on "
                    f"entering ({counter} = {self.states[start].on_enter[counter]})",
                )
        for a, b in self.judging.technical_fallback.items():
            if a == b:
                note(
                    ("judging", "technical_fallback", a),
                    f"role '{a}' falls back to itself, which changes nothing: name another role, or leave it out",
                )
        return out

    def where(self, *loc: int | str) -> str:
        """`file:line:col` of a key in the spec, for messages (just the file when unknown)."""
        mark = find_mark(self._marks, loc)
        return f"{self._source}:{mark[0]}:{mark[1]}" if mark else self._source


def _overwritten(updates: Mapping[str, str], dest: State | None) -> list[str]:
    """The counters of `updates` that entering `dest` sets again without any of its on_enter expressions
    reading them (on_enter runs after a transition's updates)."""
    if dest is None or not dest.on_enter:
        return []
    read = set().union(*(set(re.findall(r"[A-Za-z_]\w*", text)) for text in dest.on_enter.values()))
    return [c for c in updates if c in dest.on_enter and c not in read]


def shipped_specs() -> dict[str, Path]:
    """The specs that ship with lwfsm, by name (inside the wheel, or beside the package in a checkout)."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package / "specs", package.parent / "specs"):
        if folder.is_dir():
            return {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    return {}


def load_spec(path: str | Path, params: Mapping[str, int] | None = None) -> Spec:
    """Read and check a spec file, or a shipped spec by name ("lead_worker"); `params` override defaults."""
    p = Path(path)
    if not p.exists() and p.suffix == "" and len(p.parts) == 1:
        shipped = shipped_specs()
        if str(path) not in shipped:
            message = f"no such file, and {unknown('shipped spec', str(path), shipped)}"
            raise SpecError([SpecIssue(str(path), None, None, "", message)])
        p = shipped[str(path)]
    try:
        # A FIFO would block and /dev/zero never ends: read regular files only, and at most a cap.
        if not p.is_file():
            what = "a directory" if p.is_dir() else "not a regular file" if p.exists() else "no such file"
            if not p.exists() and p.suffix in (".yaml", ".yml") and p.stem in shipped_specs():
                what += f"; the shipped spec of that name loads from anywhere as '{p.stem}'"
            raise SpecError([SpecIssue(str(path), None, None, "", f"cannot read spec: {what}")])
        with p.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:
            message = f"cannot read spec: larger than {MAX_SPEC_BYTES:,} bytes"
            raise SpecError([SpecIssue(str(path), None, None, "", message)])
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1  # in bytes: the line is not text
        utf16 = " (it looks like UTF-16)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        message = f"byte 0x{raw[exc.start]:02x} is not UTF-8{utf16}: save the spec as UTF-8"
        raise SpecError([SpecIssue(str(path), line, column, "", message)]) from None
    except OSError as exc:
        raise SpecError([SpecIssue(str(path), None, None, "", f"cannot read spec: {exc}")]) from None
    return Spec.from_text(text, source=str(path), params=params)


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k != "description"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def check_params_type(params: object) -> None:
    if not isinstance(params, Mapping):
        raise TypeError(f"params are names and values (a mapping), not {type(params).__name__}: {{'lead_turns': 2}}")


def _param_issues(spec: Spec, values: Mapping[str, Any]) -> list[SpecIssue]:
    check_params_type(values)
    out = []
    for name, value in values.items():
        p = spec.params.get(name)
        if p is None:
            out.append(SpecIssue("<params>", None, None, name, unknown("param", name, spec.params)))
        elif type(value) is not int:
            out.append(SpecIssue("<params>", None, None, name, f"param '{name}' must be an integer, got {value!r}"))
        elif value.bit_length() > 63:  # also keeps str(value) within Python's 4300-digit limit
            out.append(
                SpecIssue("<params>", None, None, name, f"value for param '{name}' is too large (64-bit at most)")
            )
        elif (p.min is not None and value < p.min) or (p.max is not None and value > p.max):
            out.append(
                SpecIssue(
                    "<params>",
                    None,
                    None,
                    name,
                    f"value {value} for param '{name}' is outside its declared range {p.range_text} "
                    f"(declared at {spec.where('params', name)})",
                )
            )
    return out


def describe_params(spec: Spec) -> list[tuple[str, int, str, str]]:
    """(name, value, range, description) for each param, for tables."""
    return [(n, p.default, p.range_text, p.description) for n, p in spec.params.items()]
