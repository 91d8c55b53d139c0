"""Checking a spec: its shape with pydantic, then its meaning with plain checks.

Every mistake found is reported at once in one `SpecError`, each with file:line:column when the
spec came from text. The meaning is checked only once the shape is right.
"""

from __future__ import annotations

import ast
import keyword
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from ..errors import SpecError, SpecIssue, did_you_mean, unknown
from .expr import Expr, ExprError, Kind
from .model import JUDGED_KINDS, Spec, State, check_params_type
from .reading import Loc, locate, path_text, short, yaml_kind
from .template import FACTS, MAX_NOTE, placeholders

__all__ = ["build"]

REPEATS_SHOWN = 3  # messages shown per place in the spec; the rest are counted


def build(
    data: Any,
    source: str,
    marks: dict[Loc, tuple[int, int, int]],
    issues: list[SpecIssue],
    params: Mapping[str, int] | None,
) -> Spec:
    if params is not None:
        check_params_type(params)

    def at(loc: Loc, msg: str, key: bool = False, offset: int = 0) -> SpecIssue:
        mark = marks.get((*loc, "<key>")) if key else None
        place = (mark[0], mark[1]) if mark else locate(marks, loc, offset)
        if place is None:
            return SpecIssue(source, None, None, path_text(loc), msg)
        return SpecIssue(source, *place, path_text(loc), msg)

    spec: Spec | None = None
    if not isinstance(data, dict):
        if data is not None or not issues:  # (an empty file's reader said so already)
            issues.append(at((), f"a spec must be a mapping of keys (lwfsm, name, ...), got {_kind(data)}"))
    else:
        states = data.get("states")
        dedented: set[Loc] = set()
        if isinstance(states, dict):
            # A state's own key dedented to the level of the states (`on_enter:` under `states:`)
            # reads as a state named on_enter, with a cascade of confusing errors: name it once.
            names = list(states)
            for i, name in enumerate(names):
                if name in State.model_fields and not (isinstance(states[name], dict) and "role" in states[name]):
                    above = f" ({names[i - 1]})" if i else ""
                    message = (
                        f"'{name}' is indented as a state, but it is a key of one: "
                        f"indent it under the state above it{above}"
                    )
                    issues.append(at(("states", name), message, key=True))
                    dedented.add(("states", name))
        try:
            spec = Spec.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                extra = err["type"] == "extra_forbidden"
                if (*loc, "<trapped>") in marks or loc[:2] in dedented:
                    continue  # already reported
                issues.append(at(loc, _shape_message(err), key=extra))
    if issues or spec is None:
        raise SpecError(issues)
    spec._source, spec._marks = source, marks
    per_loc: dict[Loc, int] = {}
    for loc, msg, offset in _meaning(spec):
        # One mistake can repeat per state ("*" over 10,000 states): show a few, then count the rest.
        per_loc[loc] = per_loc.get(loc, 0) + 1
        if per_loc[loc] <= REPEATS_SHOWN:
            issues.append(at(loc, msg, key=offset < 0, offset=offset))
    for loc, n in per_loc.items():
        if n > REPEATS_SHOWN:
            issues.append(at(loc, f"... and {n - REPEATS_SHOWN:,} more like this"))
    if issues:
        raise SpecError(issues)
    if params:
        return spec.with_params(params)  # checks the divisions with those values
    if issues := spec.division_issues():
        raise SpecError(issues)
    return spec


def _kind(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return yaml_kind(v)
    names = {dict: "a mapping", list: "a list", str: "text", int: "an integer", float: "a decimal number"}
    if isinstance(v, int) and v.bit_length() > 63:  # (past 4300 digits it has no repr at all)
        return f"an integer of {len(str(abs(v))) if v.bit_length() < 14000 else 'over 4300'} digits"
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
    if loc and isinstance(loc[-1], str) and loc[-1].count(")") > loc[-1].count("("):
        # `{recent: push(recent, 0)}`: in a flow mapping the comma ends the value, and `0)` becomes a key.
        return (
            f"YAML split the expression at the comma before '{loc[-1]}'; quote it whole, "
            'as in {recent: "push(recent, 0)"}, or write the mapping in block style'
        )
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), allowed)}; allowed keys: {', '.join(allowed)}"
    if kind == "list_type" and loc and loc[-1] == "source":  # one name is taken as a list of one
        return f"expected a state name, '*' or a list of state names, got {_kind(err['input'])}"
    if kind in _SIMPLE:
        return f"expected {_SIMPLE[kind]}, got {_kind(err['input'])}"
    if kind == "string_too_short":
        return "expected text, got none (an empty name)"
    if kind == "literal_error":
        return f"expected {err['ctx']['expected']}, got {_kind(err['input'])}"
    bounds = {"less_than_equal": ("at most", "le"), "greater_than_equal": ("at least", "ge"),
              "less_than": ("less than", "lt"), "greater_than": ("more than", "gt")}  # fmt: skip
    if kind in bounds:
        words, key = bounds[kind]
        return f"expected {words} {err['ctx'][key]}, got {_kind(err['input'])}"
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


_RESERVED = {"min", "max", "push", "ones", "turn", "True", "False", "None"}
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
                        "not starting with a digit or __, not a Python keyword, min, max, True or False "
                        "(nor push, ones or turn)",
                        -1,
                    )
                )
    for name in events:
        if name == "state":  # transitions keeps the model's state under this name: a trigger may not take it
            add(
                (
                    ("events", name),
                    "event name 'state' is reserved (the machine keeps the state under it); rename it",
                    -1,
                )
            )
    for name in set(counters) & set(params):
        add((("counters", name), f"'{name}' is both a counter and a param; rename one", -1))

    def known(kind: str, name: str, pool: Iterable[str]) -> str:
        message = unknown(kind, name, pool)
        if kind == "state" and name in spec.roles:  # `dest: lead`: a role where a state belongs
            serving = [s for s, st in states.items() if st.role == name]
            message += f"; '{name}' is a role: name a state it serves ({', '.join(serving) or 'none yet'})"
        return message

    def expr(loc: Loc, text: str, want: Kind, params_only: bool = False) -> Expr | None:
        try:
            return spec.parse(text, want, params_only=params_only)
        except ExprError as exc:
            message = exc.message
            if params_only and (used := [n for n in (*counters, "turn") if re.search(rf"\b{n}\b", text)]):
                # "unknown name 'lead_done' (did you mean 'lead_turns'?)" would hide the rule broken
                what = "the turn count" if used[0] == "turn" else "a counter"
                message = f"'{used[0]}' is {what}, not known before the first turn: use params only here"
            add((loc, f"in expression '{short(' '.join(text.split()))}': {message}", exc.offset))  # one line
            return None

    for name, p in params.items():
        lo, hi = p.min, p.max
        if lo is not None and hi is not None and lo > hi:
            add((("params", name), f"min {lo} is greater than max {hi}", -1))
        elif (lo is not None and p.default < lo) or (hi is not None and p.default > hi):
            add((("params", name, "default"), f"default {p.default} is outside the declared range {p.range_text}", 0))

    def window_value(loc: Loc, counter: str, text: str) -> None:
        # A window stays within its bits, so `lwfsm check` can explore it exactly.
        size = counters[counter].window
        if size is None:
            return
        parsed = expr(loc, text, "int", params_only=loc[0] == "counters")
        if parsed is None:
            return
        tree = parsed.tree
        is_push = (
            isinstance(tree, ast.Call)
            and getattr(tree.func, "id", None) == "push"
            and getattr(tree.args[0], "id", None) == counter
        )
        is_const = isinstance(tree, ast.Constant) and type(tree.value) is int and 0 <= tree.value < 2**size
        if not (is_push or is_const):
            add((loc, f"window '{counter}' is updated only by push({counter}, bit) or a number 0..{2**size - 1}", 0))

    for name, c in counters.items():
        if c.window is None:
            if expr(("counters", name, "initial"), c.initial, "int", params_only=True) is not None:
                try:
                    start = spec.compile(c.initial)([])
                except ZeroDivisionError:
                    continue  # (a division by a param below 1: said by division_issues)
                if start.bit_length() > 63:  # a session could never be stored (the engine refuses more)
                    add((("counters", name, "initial"), "the initial value is past 64 bits", 0))
        else:
            window_value(("counters", name, "initial"), name, c.initial)

    def updates(loc: Loc, ups: Mapping[str, str]) -> None:
        for counter, text in ups.items():
            if counter == "turn":
                add(((*loc, counter), "turn is read-only: it counts the turns the session has completed", -1))
            elif counter not in counters:
                add(((*loc, counter), known("counter", counter, counters), -1))
            elif counters[counter].window is not None:
                window_value((*loc, counter), counter, text)
                continue
            expr((*loc, counter), text, "int")

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
            expr(("initial", i, "when"), choice.when, "bool", params_only=True)
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
        listed = t.events
        if not listed:
            add(((*loc, "event"), "no event: give an event name or a list of them", 0))
        for j, ev in enumerate(listed):
            if ev in listed[:j]:
                add(((*loc, "event", j), f"event '{ev}' is listed twice; remove one", 0))
            if ev not in events:
                add(
                    (
                        (*loc, "event", j) if isinstance(t.event, list) else (*loc, "event"),
                        known("event", ev, events),
                        0,
                    )
                )
            else:
                used_events.add(ev)
        sources = spec.sources(t)
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
            expr((*loc, "guard"), t.guard, "bool")
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
            for ev in listed:
                if ev in events and events[ev].turn:
                    add(
                        (
                            (*loc, "reset"),
                            f"event '{ev}' ends a turn, so it cannot reset the turn count; "
                            f"declare it with 'turn: false'",
                            -1,
                        )
                    )
        for j, src in enumerate(t.source):
            if src in t.source[:j]:
                add(((*loc, "source", j), f"state '{src}' is listed twice; remove one", 0))
        for ev in dict.fromkeys(listed):  # (each once: one listed twice is said above)
            for s in dict.fromkeys(sources):
                if s not in states or ev not in events:
                    continue
                if ev in states[s].ignore:
                    add(((*loc, "event"), f"state '{s}' ignores event '{ev}', so this transition can never fire", 0))
                first = unguarded.get((ev, s))
                if first is not None:
                    add(
                        (
                            loc,
                            f"transition {i} can never fire from '{s}': transition {first} "
                            f"(same event '{ev}', no guard) always fires first",
                            0,
                        )
                    )
                elif t.guard is None:
                    unguarded[(ev, s)] = i
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

    judging = spec.judging
    for key in ("on_success", "on_failure"):  # unset: the default names, checked when a front end runs the spec
        ev = getattr(judging, key)
        if ev is None:
            continue
        if ev not in events:
            add((("judging", key), known("event", ev, events), 0))
        elif not events[ev].turn:
            add((("judging", key), f"event '{ev}' does not end a turn (turn: false); a verdict must", 0))
    if judging.events[0] == judging.events[1]:
        add((("judging", "on_failure"), "a failed turn must fire another event than a successful one", 0))
    for kind, ev in judging.kinds.items():
        if kind not in JUDGED_KINDS:
            add((("judging", "kinds", kind), known("verdict kind", kind, JUDGED_KINDS), -1))
        elif ev not in events:
            add((("judging", "kinds", kind), known("event", ev, events), 0))
        elif not events[ev].turn:
            add((("judging", "kinds", kind), f"event '{ev}' does not end a turn (turn: false); a verdict must", 0))
    for a, b in judging.technical_fallback.items():
        for role, off in ((a, -1), (b, 0)):
            if role not in spec.roles:
                add((("judging", "technical_fallback", a), known("role", role, spec.roles), off))

    _handoffs(spec, add, known)

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
        expr(("invariants", i, "expr"), inv.expr, "bool")
        for j, s in enumerate(inv.states):
            if s not in states:
                add((("invariants", i, "states", j), known("state", s, states), 0))
    return out


def _handoffs(spec: Spec, add: Any, known: Any) -> None:
    """Each handoff names a state entered, states of another role left, and a template of known names."""
    states = spec.states
    names = {**FACTS, **{c: "counter" for c in spec.counters}, **{p: "param" for p in spec.params}}
    for name in (*spec.counters, *spec.params):
        if name in FACTS and spec.handoffs:
            what = "counter" if name in spec.counters else "param"
            section = "counters" if name in spec.counters else "params"
            add(((section, name), f"{what} '{name}' has the name of a handoff fact; rename it", -1))
    for i, h in enumerate(spec.handoffs):
        loc: Loc = ("handoffs", i)
        if h.dest not in states:
            add(((*loc, "dest"), known("state", h.dest, states), 0))
        for j, s in enumerate(h.source):
            where = (*loc, "source", j) if len(h.source) > 1 else (*loc, "source")
            if s not in states:
                add((where, known("state", s, states), 0))
            elif h.dest in states and states[s].role == states[h.dest].role:
                add(
                    (
                        where,
                        f"state '{s}' is served by role '{states[s].role}' like '{h.dest}': a handoff is sent only "
                        "where the role changes; name states of another role",
                        0,
                    )
                )
        if not h.note.strip():
            add(((*loc, "note"), "empty note: write what the model taking over should know, or remove the handoff", 0))
        elif len(h.note) > MAX_NOTE:
            add(((*loc, "note"), f"note of {len(h.note):,} characters; a handoff note has at most {MAX_NOTE:,}", 0))
        used, errors = placeholders(h.note)
        for err in errors:
            add(((*loc, "note"), f"in note: {err.message}", 0))
        for name in used:
            if name not in names:
                message = unknown("placeholder", "{" + name + "}", [f"{{{n}}}" for n in names])
                add(((*loc, "note"), f"in note: {message}", max(0, h.note.find("{" + name + "}"))))
