"""The YAML spec: its shape (pydantic models), its meaning (plain checks), and how it is loaded.

Three ways in: `load_spec(path)`, `Spec.from_text(text)`, `Spec.from_dict(data)`. Every mistake
found is reported at once in one `SpecError`, each with file:line:column when the spec came from
text. Shape is checked first; the meaning of the spec is checked only once its shape is right.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import keyword
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError

from .errors import SpecError, SpecIssue
from .expr import Expr, ExprError, Kind, parse

FORMAT = 1  # the spec language version this lwfsm reads (`lwfsm: 1`)

Loc = tuple[int | str, ...]


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


class Param(_Model):
    """A tunable integer, fixed when the spec is loaded."""

    default: int
    min: int | None = None
    max: int | None = None
    description: str = ""


class Counter(_Model):
    """An integer the machine keeps per session."""

    initial: Expression = Field("0", description="expression over params")
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
    event: str
    source: Annotated[list[str], BeforeValidator(_one_as_list, json_schema_input_type=str | list[str])] = Field(
        description='state name, list of state names, or "*" for every state'
    )
    dest: str | None = Field(None, description="no dest: an internal transition")
    guard: Expression | None = None
    updates: dict[str, Expression] = Field(default_factory=dict)
    reset: bool = Field(False, description="back to the initial configuration")
    description: str = ""


class Invariant(_Model):
    expr: Expression
    states: list[str] = Field(default_factory=list, description="where it must hold (empty: everywhere)")
    description: str = ""


class Judging(_Model):
    """Patterns the adapter uses to judge a turn (case-insensitive substrings)."""

    tool_error_patterns: list[str] = Field(default_factory=list, description="in tool results: the turn failed")
    correction_patterns: list[str] = Field(
        default_factory=list, description="in the user's next message: the user corrects the model"
    )


def _initial_list(v: Any) -> Any:
    return [{"state": v}] if isinstance(v, str) else v


def _invariant_list(v: Any) -> Any:
    if isinstance(v, list):
        return [{"expr": x} if isinstance(x, (str, int)) and not isinstance(x, bool) else x for x in v]
    return v


class Spec(_Model):
    """A validated, frozen switching spec. Build it with load_spec / from_text / from_dict."""

    lwfsm: Literal[1] = Field(description="spec language version")
    name: str
    version: int = Field(ge=1)
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
    judging: Judging | None = None
    invariants: Annotated[
        list[Invariant], BeforeValidator(_invariant_list, json_schema_input_type=list[str | Invariant])
    ] = Field(default_factory=list)

    _source: str = PrivateAttr("<dict>")
    _marks: dict[Loc, tuple[int, int, int]] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # Content equality: where a spec was read from (private attrs) does not make it different.
        if not isinstance(other, Spec):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # dict fields: not hashable

    @classmethod
    def from_text(cls, text: str, source: str = "<text>", params: Mapping[str, int] | None = None) -> Spec:
        """Parse YAML text (safe_load semantics) into a checked Spec."""
        data, marks, issues = _read_yaml(text, source)
        if data is None and not issues:
            issues.append(SpecIssue(source, 1, 1, "", "empty spec: expected a mapping with lwfsm, name, ..."))
        return _build(data, source, marks, issues, params)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], params: Mapping[str, int] | None = None) -> Spec:
        """Check a plain mapping (e.g. `spec.model_dump()`) into a Spec."""
        return _build(data, "<dict>", {}, [], params)

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
        return out

    @property
    def param_values(self) -> dict[str, int]:
        return {k: p.default for k, p in self.params.items()}

    @property
    def source(self) -> str:
        return self._source

    @property
    def hash(self) -> str:
        """Digest of everything that decides behaviour (descriptions excluded), params included."""
        return hashlib.sha256(json.dumps(_strip(self.model_dump()), sort_keys=True).encode()).hexdigest()[:16]

    def where(self, *loc: int | str) -> str:
        """`file:line:col` of a key in the spec, for messages (just the file when unknown)."""
        mark = _find_mark(self._marks, loc)
        return f"{self._source}:{mark[0]}:{mark[1]}" if mark else self._source


def load_spec(path: str | Path, params: Mapping[str, int] | None = None) -> Spec:
    """Read and check a spec file; `params` override the declared defaults."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecIssue(str(path), None, None, "", f"cannot read spec: {exc}")]) from None
    return Spec.from_text(text, source=str(path), params=params)


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k != "description"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


# --- YAML with locations ---------------------------------------------------------------

_BOOL_WORDS = {"true", "false"}
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")


class _Loader(yaml.SafeLoader):
    pass


def _read_yaml(text: str, source: str) -> tuple[Any, dict[Loc, tuple[int, int, int]], list[SpecIssue]]:
    """safe_load, keeping each node's line/column and reporting YAML 1.1 traps and duplicate keys."""
    marks: dict[Loc, tuple[int, int, int]] = {}  # loc -> (line, col, extra col for quotes)
    issues: list[SpecIssue] = []
    trapped: set[Loc] = set()  # keys already reported as YAML traps
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # unprintable characters are refused before parsing
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - text.rfind("\n", 0, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        msg = f"not valid YAML: character {char!r} (U+{ord(char):04X}) is not allowed in YAML text"
        return None, marks, [SpecIssue(source, line, col, "", msg)]
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where: tuple[int | None, int | None] = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = getattr(exc, "problem", None) or str(exc)
        ctx, ctx_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if ctx and ctx_mark:
            problem += f" ({ctx} at line {ctx_mark.line + 1}, column {ctx_mark.column + 1})"
        return None, marks, [SpecIssue(source, *where, "", f"not valid YAML: {problem}")]
    finally:
        loader.dispose()
    if node is None:
        return None, marks, issues

    def issue(n: yaml.Node, path: Loc, msg: str) -> None:
        issues.append(SpecIssue(source, n.start_mark.line + 1, n.start_mark.column + 1, _path(path), msg))

    def build(n: yaml.Node, path: Loc, is_key: bool = False) -> Any:
        quote = 1 if isinstance(n, yaml.ScalarNode) and n.style in ("'", '"') else 0
        marks[path] = (n.start_mark.line + 1, n.start_mark.column + 1, quote)
        if not isinstance(n, yaml.ScalarNode) and n.tag not in _PLAIN_TAGS:
            tag = n.tag.replace("tag:yaml.org,2002:", "!!")
            issue(n, path, f"YAML tag '{tag}' is not allowed: specs are plain YAML (mappings, lists, scalars)")
            trapped.add(path)
            return None
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            first: dict[Any, yaml.Node] = {}
            for k, v in n.value:
                if k.tag == "tag:yaml.org,2002:merge":
                    issue(k, path, "merge keys (<<) are not supported; write the keys out")
                    continue
                key = build(k, (*path, "<key>"), is_key=True)
                if isinstance(k, yaml.ScalarNode) and not isinstance(key, str):
                    issue(
                        k,
                        (*path, k.value),
                        f"key '{k.value}' is read by YAML as {_yaml_kind(key)}; quote it: \"{k.value}\"",
                    )
                    key = k.value
                    trapped.add((*path, key))
                elif not isinstance(key, str):
                    issue(k, path, "keys must be plain names")
                    continue
                if key in first:
                    issue(k, (*path, key), f"duplicate key '{key}' (first at line {first[key].start_mark.line + 1})")
                    continue
                first[key] = k
                marks[path + (key, "<key>")] = (k.start_mark.line + 1, k.start_mark.column + 1, 0)
                out[key] = build(v, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*path, i)) for i, v in enumerate(n.value)]
        assert isinstance(n, yaml.ScalarNode)
        try:
            value = loader.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            issue(n, path, f"cannot read value: {getattr(exc, 'problem', exc)}")
            return None
        if is_key:
            return value
        if n.style is None and isinstance(value, bool) and n.value.lower() not in _BOOL_WORDS:
            issue(
                n,
                path,
                f"'{n.value}' is read by YAML 1.1 as the boolean {str(value).lower()}; "
                f'write {str(value).lower()}, or quote it if you meant the text "{n.value}"',
            )
        elif n.style is None and type(value) is int and not _PLAIN_INT.fullmatch(n.value):
            issue(
                n,
                path,
                f"'{n.value}' is read by YAML 1.1 as the number {value}; "
                f'write {value}, or quote it if you meant the text "{n.value}"',
            )
        return value

    data = build(node, ())
    marks.update({(*loc, "<trapped>"): (0, 0, 0) for loc in trapped})
    return data, marks, issues


def _yaml_kind(v: Any) -> str:
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if v is None:
        return "null"
    return f"the {type(v).__name__} {v!r}"


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if part == "<key>":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _find_mark(marks: Mapping[Loc, tuple[int, int, int]], loc: Loc) -> tuple[int, int, int] | None:
    loc = tuple(loc)
    while True:
        if loc in marks:
            return marks[loc]
        if not loc:
            return None
        loc = loc[:-1]


# --- building and checking ---------------------------------------------------------------


def _build(
    data: Any,
    source: str,
    marks: dict[Loc, tuple[int, int, int]],
    issues: list[SpecIssue],
    params: Mapping[str, int] | None,
) -> Spec:
    def at(loc: Loc, msg: str, key: bool = False, offset: int = 0) -> SpecIssue:
        mark = marks.get((*loc, "<key>")) if key else None
        mark = mark or _find_mark(marks, loc)
        if mark is None:
            return SpecIssue(source, None, None, _path(loc), msg)
        return SpecIssue(source, mark[0], mark[1] + (mark[2] + offset if offset >= 0 else 0), _path(loc), msg)

    spec: Spec | None = None
    if data is not None and not isinstance(data, dict):
        issues.append(at((), f"a spec must be a mapping of keys (lwfsm, name, ...), got {_kind(data)}"))
    elif data is not None:
        try:
            spec = Spec.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                extra = err["type"] == "extra_forbidden"
                if (*loc, "<trapped>") in marks:
                    continue  # already reported while reading the YAML
                issues.append(at(loc, _shape_message(err), key=extra))
    if issues or spec is None:
        raise SpecError(issues)
    spec._source, spec._marks = source, marks
    for loc, msg, offset in _meaning(spec):
        issues.append(at(loc, msg, key=offset < 0, offset=offset))
    if issues:
        raise SpecError(issues)
    if params:
        spec = spec.with_params(params)
    return spec


def _kind(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return _yaml_kind(v)
    names = {dict: "a mapping", list: "a list", str: "text", int: "an integer", float: "a decimal number"}
    return f"{names.get(type(v), type(v).__name__)} {v!r}" if not isinstance(v, (dict, list)) else names[type(v)]


_SIMPLE = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "string_type": "text",
    "bool_type": "true or false",
    "dict_type": "a mapping (key: value)",
    "list_type": "a list",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
}


def _shape_message(err: Any) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = ""
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            hint = f" (did you mean '{close[0]}'?)"
        return f"unknown key '{loc[-1]}'{hint}; allowed keys: {', '.join(allowed)}"
    if kind in _SIMPLE:
        return f"expected {_SIMPLE[kind]}, got {_kind(err['input'])}"
    if kind == "literal_error":
        return f"expected {err['ctx']['expected']}, got {_kind(err['input'])}"
    return str(err["msg"])


def _allowed_keys(loc: Loc) -> list[str]:
    tp: Any = Spec
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                return []
            tp = tp.model_fields[str(part)].annotation
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


_RESERVED = {"min", "max", "True", "False", "None"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _meaning(spec: Spec) -> list[tuple[Loc, str, int]]:
    """Checks of meaning. Each finding: (loc, message, column offset; -1 means 'at the key')."""
    out: list[tuple[Loc, str, int]] = []
    add = out.append
    states, events, counters, params = spec.states, spec.events, spec.counters, spec.params

    for section in ("roles", "params", "counters", "states", "events"):
        for name in getattr(spec, section):
            if not _NAME.fullmatch(name) or keyword.iskeyword(name) or name in _RESERVED or name.startswith("__"):
                add(
                    (
                        (section, name),
                        f"'{name}' is not a usable name: use letters, digits and _, "
                        "not starting with a digit or __, not a Python keyword, min, max, True or False",
                        -1,
                    )
                )
    for name in set(counters) & set(params):
        add((("counters", name), f"'{name}' is both a counter and a param; rename one", -1))

    def known(kind: str, name: str, pool: Iterable[str]) -> str:
        pool = list(pool)
        close = difflib.get_close_matches(name, pool, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {kind} '{name}'{hint}; known: {', '.join(pool) or 'none'}"

    scope_params = {p: "param" for p in params}
    scope_all = {**scope_params, **{c: "counter" for c in counters}}

    def expr(loc: Loc, text: str, scope: Mapping[str, str], want: Kind) -> Expr | None:
        try:
            return parse(text, scope, want)
        except ExprError as exc:
            add((loc, f"in expression '{text.strip()}': {exc.message}", exc.offset))
            return None

    for name, p in params.items():
        lo, hi = p.min, p.max
        if lo is not None and hi is not None and lo > hi:
            add((("params", name), f"min {lo} is greater than max {hi}", -1))
        elif (lo is not None and p.default < lo) or (hi is not None and p.default > hi):
            add((("params", name, "default"), f"default {p.default} is outside the declared range {_range(p)}", 0))

    for name, c in counters.items():
        expr(("counters", name, "initial"), c.initial, scope_params, "int")

    def updates(loc: Loc, ups: Mapping[str, str]) -> None:
        for counter, text in ups.items():
            if counter not in counters:
                add(((*loc, counter), known("counter", counter, counters), -1))
            expr((*loc, counter), text, scope_all, "int")

    for name, st in states.items():
        if st.role not in spec.roles:
            add((("states", name, "role"), known("role", st.role, spec.roles), 0))
        updates(("states", name, "on_enter"), st.on_enter)
        for i, ev in enumerate(st.ignore):
            if ev not in events:
                add((("states", name, "ignore", i), known("event", ev, events), 0))

    if not spec.initial:
        add((("initial",), "no initial state: give a state name, or a list of {state, when} choices", 0))
    for i, choice in enumerate(spec.initial):
        if choice.state not in states:
            add((("initial", i, "state"), known("state", choice.state, states), 0))
        if choice.when is not None:
            expr(("initial", i, "when"), choice.when, scope_params, "bool")
            if i == len(spec.initial) - 1:
                add(
                    (
                        ("initial", i, "when"),
                        "the last initial choice must have no 'when', so that some state is always initial",
                        0,
                    )
                )
        elif i < len(spec.initial) - 1:
            add((("initial", i + 1), f"initial choice {i + 1} can never be chosen: choice {i} has no 'when'", 0))

    unguarded: dict[tuple[str, str], int] = {}
    used_events: set[str] = {ev for st in states.values() for ev in st.ignore}
    edges: dict[str, set[str]] = {s: set() for s in states}
    initial_states = {c.state for c in spec.initial if c.state in states}
    for i, t in enumerate(spec.transitions):
        loc: Loc = ("transitions", i)
        if t.event not in events:
            add(((*loc, "event"), known("event", t.event, events), 0))
        else:
            used_events.add(t.event)
        sources = list(states) if t.source == ["*"] else t.source
        if not t.source:
            add(((*loc, "source"), 'no source state: give a state, a list of states, or "*"', 0))
        elif "*" in t.source and len(t.source) > 1:
            add(((*loc, "source"), '"*" already means every state; do not list others with it', 0))
            sources = []
        for j, s in enumerate(sources):
            if s not in states:
                add(((*loc, "source", j) if len(t.source) > 1 else (*loc, "source"), known("state", s, states), 0))
        if t.dest is not None and t.dest not in states:
            add(((*loc, "dest"), known("state", t.dest, states), 0))
        if t.guard is not None:
            expr((*loc, "guard"), t.guard, scope_all, "bool")
        updates((*loc, "updates"), t.updates)
        if t.reset:
            if t.dest is not None or t.updates:
                add(
                    (
                        (*loc, "reset"),
                        "a reset transition goes back to the initial configuration; it takes no dest and no updates",
                        -1,
                    )
                )
            if t.event in events and events[t.event].turn:
                add(
                    (
                        (*loc, "reset"),
                        f"event '{t.event}' ends a turn, so it cannot reset the turn count; "
                        f"declare it with 'turn: false'",
                        -1,
                    )
                )
        for s in sources:
            if s not in states or t.event not in events:
                continue
            if t.event in states[s].ignore:
                add(((*loc, "event"), f"state '{s}' ignores event '{t.event}', so this transition can never fire", 0))
            first = unguarded.get((t.event, s))
            if first is not None:
                add(
                    (
                        loc,
                        f"transition {i} can never fire from '{s}': transition {first} "
                        f"(same event '{t.event}', no guard) always fires first",
                        0,
                    )
                )
            elif t.guard is None:
                unguarded[(t.event, s)] = i
            edges[s] |= initial_states if t.reset else {t.dest or s}
    for ev in events:
        if ev not in used_events:
            add(
                (
                    ("events", ev),
                    f"event '{ev}' has no transition and is ignored nowhere; remove it or give it a transition",
                    -1,
                )
            )

    if out:
        return out  # reachability findings would only echo the mistakes above
    seen, todo = set(initial_states), list(initial_states)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    if initial_states:
        for name in states:
            if name not in seen:
                add(
                    (
                        ("states", name),
                        f"state '{name}' cannot be reached from the initial state "
                        f"({', '.join(sorted(initial_states))}) by any transition",
                        -1,
                    )
                )

    for i, inv in enumerate(spec.invariants):
        expr(("invariants", i, "expr"), inv.expr, scope_all, "bool")
        for j, s in enumerate(inv.states):
            if s not in states:
                add((("invariants", i, "states", j), known("state", s, states), 0))
    return out


def _range(p: Param) -> str:
    lo = "-inf" if p.min is None else str(p.min)
    hi = "inf" if p.max is None else str(p.max)
    return f"[{lo}, {hi}]"


def _param_issues(spec: Spec, values: Mapping[str, Any]) -> list[SpecIssue]:
    out = []
    for name, value in values.items():
        p = spec.params.get(name)
        if p is None:
            close = difflib.get_close_matches(name, list(spec.params), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(spec.params) or "none"
            out.append(SpecIssue("<params>", None, None, name, f"unknown param '{name}'{hint}; known: {known}"))
        elif type(value) is not int:
            out.append(SpecIssue("<params>", None, None, name, f"param '{name}' must be an integer, got {value!r}"))
        elif (p.min is not None and value < p.min) or (p.max is not None and value > p.max):
            out.append(
                SpecIssue(
                    "<params>",
                    None,
                    None,
                    name,
                    f"value {value} for param '{name}' is outside its declared range {_range(p)} "
                    f"(declared at {spec.where('params', name)})",
                )
            )
    return out


def describe_params(spec: Spec) -> list[tuple[str, int, str, str]]:
    """(name, value, range, description) for each param, for tables."""
    return [(n, p.default, _range(p), p.description) for n, p in spec.params.items()]
