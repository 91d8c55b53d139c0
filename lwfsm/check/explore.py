"""Exhaustive checking: every reachable configuration (state + counter values) of a spec.

The exploration drives the real engine, breadth first, so every finding comes with the shortest
event sequence that reaches it. Counters are saturated: once a counter exceeds the largest
constant any expression can compare it against (its bound K), every larger value behaves the
same, so values above K are all represented by K + 1. That is sound only when each counter is
compared against constants and updated as `c + k` (k >= 0) or set to a constant; specs outside
that fragment are refused unless a `depth` bounds the search instead.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine
from ..errors import TransitionNotAllowed, Unsaturable
from ..spec import Spec
from ..spec.expr import Expr

__all__ = [
    "MAX_CONFIGURATIONS",
    "Finding",
    "Report",
    "TooLarge",
    "Unsaturable",
    "check",
    "check_grid",
    "estimate",
    "param_grid",
    "saturation_bounds",
]

Config = tuple[str, tuple[int, ...]]

# About a million configurations take ~30 s and ~1 GB; past that a check would run silently for
# minutes or hours, so it is refused up front (the limit is a parameter and a CLI flag).
MAX_CONFIGURATIONS = 1_000_000


class TooLarge(Unsaturable):
    """The exhaustive check would visit more configurations than allowed; the message says which
    counter or param makes it so."""


@dataclass
class Finding:
    kind: str  # invariant | incomplete | stuck | dead_transition | unreachable_state
    message: str
    state: str | None = None
    counters: dict[str, int] | None = None
    path: list[str] | None = None  # shortest event sequence from the initial configuration
    params: dict[str, int] | None = None  # set when several param combinations were checked

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Report:
    spec: str
    params: dict[str, int]  # for a grid: the first combination
    configurations: int  # for a grid: summed over the combinations
    depth: int | None  # None: exhaustive (saturated)
    bounds: dict[str, int]  # saturation bound per counter (values above are represented by bound+1)
    findings: list[Finding] = field(default_factory=list)
    combinations: int = 1

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "params": self.params,
            "configurations": self.configurations,
            "depth": self.depth,
            "bounds": self.bounds,
            "combinations": self.combinations,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
        }


def _linear(node: ast.expr, counters: set[str], params: dict[str, int]) -> tuple[str | None, int] | None:
    """(counter, offset) if node is `counter + const`, (None, value) if constant; None otherwise."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return None, node.value
    if isinstance(node, ast.Name):
        return (node.id, 0) if node.id in counters else (None, params[node.id])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _linear(node.operand, counters, params)
        if inner is None or inner[0] is not None:
            return None
        return None, -inner[1] if isinstance(node.op, ast.USub) else inner[1]
    if isinstance(node, ast.BinOp):
        left, right = _linear(node.left, counters, params), _linear(node.right, counters, params)
        if left is None or right is None or (left[0] and right[0]):
            return None
        if isinstance(node.op, ast.Sub):
            if right[0]:
                return None  # a negated counter
            return left[0], left[1] - right[1]
        return left[0] or right[0], left[1] + right[1]
    if isinstance(node, ast.Call):
        args = [_linear(a, counters, params) for a in node.args]
        if any(a is None or a[0] for a in args):
            return None
        values = [a[1] for a in args if a is not None]
        return None, (min(values) if node.func.id == "min" else max(values))  # type: ignore[attr-defined]
    return None


def saturation_bounds(spec: Spec) -> dict[str, int]:
    """Largest constant each counter is ever distinguished by; raises Unsaturable with the reasons."""
    counters, params = set(spec.counters), spec.param_values
    bounds = {c: 0 for c in spec.counters}
    problems: list[str] = []

    def note(c: str, value: int) -> None:
        bounds[c] = max(bounds[c], value)

    def condition(e: Expr, where: str) -> None:
        for node in ast.walk(e.tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            for a, b in itertools.pairwise(sides):
                la, lb = _linear(a, counters, params), _linear(b, counters, params)
                if la is None or lb is None:
                    problems.append(f"{where}: '{e.text}' compares something other than counter + constant")
                elif la[0] and lb[0]:
                    problems.append(f"{where}: '{e.text}' compares two counters")
                elif la[0]:
                    note(la[0], lb[1] - la[1])
                elif lb[0]:
                    note(lb[0], la[1] - lb[1])

    def update(target: str, e: Expr, where: str) -> None:
        lin = _linear(e.tree, counters, params)
        if lin is None:
            problems.append(f"{where}: '{e.text}' is not counter + constant")
        elif lin[0] is None:
            note(target, lin[1])
        elif lin[0] != target or lin[1] < 0:
            what = "decrements" if lin[0] == target else f"copies counter '{lin[0]}' into"
            problems.append(f"{where}: '{e.text}' {what} '{target}'")

    for name, c in spec.counters.items():
        update(name, spec.parse(c.initial), f"counters.{name}.initial")
    for name, st in spec.states.items():
        for target, text in st.on_enter.items():
            update(target, spec.parse(text), f"states.{name}.on_enter.{target}")
    for i, t in enumerate(spec.transitions):
        if t.guard:
            condition(spec.parse(t.guard, "bool"), f"transitions[{i}].guard")
        for target, text in t.updates.items():
            update(target, spec.parse(text), f"transitions[{i}].updates.{target}")
    for i, inv in enumerate(spec.invariants):
        condition(spec.parse(inv.expr, "bool"), f"invariants[{i}]")
    if problems:
        raise Unsaturable(problems)
    return bounds


def estimate(spec: Spec, bounds: dict[str, int]) -> int:
    """An upper bound on the configurations a saturated check visits: states × (bound + 2) per counter."""
    total = len(spec.states)
    for bound in bounds.values():
        total *= bound + 2  # values 0..bound, and bound + 1 standing for every larger one
    return total


def _refuse_estimate(spec: Spec, bounds: dict[str, int], limit: int) -> None:
    total = estimate(spec, bounds)
    if total <= limit:
        return
    worst = max(bounds, key=lambda c: bounds[c])
    raise TooLarge(
        [
            f"spec '{spec.name}' may have about {total:,} configurations ({len(spec.states)} states × counter "
            f"values), over the limit of {limit:,}: counter '{worst}' is compared against {bounds[worst]:,}; "
            "lower that bound, use --depth N, or raise --max-configurations"
        ]
    )


def check(spec: Spec, depth: int | None = None, max_configurations: int = MAX_CONFIGURATIONS) -> Report:
    """Explore every reachable configuration (or every one within `depth` events). Raises TooLarge
    when the saturated search could exceed `max_configurations`."""
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be 1 or more, got {depth}")  # depth 0 would check nothing, then say ok
    engine = Engine(spec, history=0)
    names = engine.counter_names
    bounds: dict[str, int] = {}
    if depth is None:
        bounds = saturation_bounds(spec)
        _refuse_estimate(spec, bounds, max_configurations)
    cap = tuple(bounds[n] + 1 for n in names) if depth is None else None
    events = list(spec.events)
    probe = engine.session()  # placed at each configuration in turn
    initial: Config = (probe.state, probe.values)
    parent: dict[Config, tuple[Config, str] | None] = {initial: None}
    level = {initial: 0}
    edges: dict[Config, list[Config]] = {}
    fired: set[int] = set()
    first: dict[tuple[str, str, str], Finding] = {}  # one finding per kind and place: BFS finds the shortest first
    queue = deque([initial])

    def path(cfg: Config) -> list[str]:
        out = []
        while (link := parent[cfg]) is not None:
            cfg, event = link
            out.append(event)
        return out[::-1]

    def counters(cfg: Config) -> dict[str, int]:
        return dict(zip(names, cfg[1], strict=True))

    while queue:
        cfg = queue.popleft()
        state, values = cfg
        for text in engine.violations(probe.place(state, values)):
            if ("invariant", text, "") not in first:
                first["invariant", text, ""] = Finding(
                    "invariant", f"invariant '{text}' is violated in state '{state}'", state, counters(cfg), path(cfg)
                )
        if depth is not None and level[cfg] >= depth:
            continue
        out = edges.setdefault(cfg, [])
        for event in events:
            probe.place(state, values)
            try:
                record = probe.apply(event)  # quiet: a check logs no switches and tells no listener
            except TransitionNotAllowed as exc:
                first.setdefault(
                    ("incomplete", state, event),
                    Finding("incomplete", str(exc), state, counters(cfg), [*path(cfg), event]),
                )
                continue
            if record.transition is not None:
                fired.add(record.transition)
            new = probe.values if cap is None else [min(v, c) for v, c in zip(probe.values, cap, strict=True)]
            nxt: Config = (probe.state, tuple(new))
            if nxt not in parent:
                parent[nxt] = (cfg, event)
                level[nxt] = level[cfg] + 1
                queue.append(nxt)
            if record.transition is None or not spec.transitions[record.transition].reset:
                out.append(nxt)  # a reset starts a new conversation: no way back for the stuck check

    findings = list(first.values())
    seen_states = {s for s, _ in parent}
    # A depth-limited search only saw so far: "never" would be a false claim past the cut.
    cut = "" if depth is None else f" within {depth} events (the search was cut short at depth {depth})"
    for name in spec.states:
        if name not in seen_states:
            findings.append(Finding("unreachable_state", f"state '{name}' is never reached{cut}", name))
    for i, t in enumerate(spec.transitions):
        if i not in fired:
            findings.append(
                Finding(
                    "dead_transition",
                    f"transitions[{i}] ({t.event} from {', '.join(t.source)}"
                    f"{' [' + t.guard + ']' if t.guard else ''}) never fires{cut} at {spec.where('transitions', i)}",
                )
            )
    cheap = {r for r, role in spec.roles.items() if role.cheap}
    if cheap and depth is None:
        findings.extend(_stuck(engine, cheap, parent, edges, path, counters))
    return Report(spec.name, spec.param_values, len(parent), depth, bounds, findings)


def _stuck(
    engine: Engine,
    cheap: set[str],
    parent: dict[Config, Any],
    edges: dict[Config, list[Config]],
    path: Any,
    counters: Any,
) -> Iterator[Finding]:
    """Configurations from which no cheap role can ever serve again (resets aside)."""
    good = {cfg for cfg in parent if engine.state_roles[cfg[0]] in cheap}
    back: dict[Config, list[Config]] = {}
    for src, dsts in edges.items():
        for dst in dsts:
            back.setdefault(dst, []).append(src)
    todo = list(good)
    while todo:
        for prev in back.get(todo.pop(), ()):
            if prev not in good:
                good.add(prev)
                todo.append(prev)
    reported: set[str] = set()
    for cfg in parent:  # BFS order: the first per state has the shortest path
        if cfg not in good and cfg[0] not in reported:
            reported.add(cfg[0])
            yield Finding(
                "stuck",
                f"from state '{cfg[0]}' no {'/'.join(sorted(cheap))} role can ever serve again "
                "(a session stuck on an expensive model)",
                cfg[0],
                counters(cfg),
                path(cfg),
            )


def param_grid(spec: Spec, up_to: int) -> Iterator[dict[str, int]]:
    """Every combination of param values within their ranges, each capped at min + up_to."""
    for combo in itertools.product(*(p.values(up_to) for p in spec.params.values())):
        yield dict(zip(spec.params, combo, strict=True))


def check_grid(
    spec: Spec, up_to: int, depth: int | None = None, max_configurations: int = MAX_CONFIGURATIONS
) -> Report:
    """`check` for every param combination of `param_grid`. A state or transition is reported as
    never reached / never firing only when that holds for every combination."""
    if up_to < 0:
        raise ValueError(f"up_to must be 0 or more, got {up_to}")  # an empty grid would check nothing
    sizes = {name: len(p.values(up_to)) for name, p in spec.params.items()}
    combos = 1
    for n in sizes.values():
        combos *= n
    if combos > max_configurations:  # each combination is at least one configuration
        worst = max(sizes, key=lambda name: sizes[name])
        raise TooLarge(
            [
                f"--params-up-to {up_to} makes {combos:,} param combinations, over the limit of "
                f"{max_configurations:,}: param '{worst}' alone takes {sizes[worst]:,} values; "
                "lower N, narrow its min/max, or raise --max-configurations"
            ]
        )
    if depth is None:
        total = 0
        for params in param_grid(spec, up_to):
            one = spec.with_params(params)
            one_bounds = saturation_bounds(one)
            _refuse_estimate(one, one_bounds, max_configurations)
            total += estimate(one, one_bounds)
            if total > max_configurations:
                raise TooLarge(
                    [
                        f"--params-up-to {up_to}: {combos:,} param combinations may have about {total:,}+ "
                        f"configurations in all, over the limit of {max_configurations:,}; lower N or raise "
                        "--max-configurations"
                    ]
                )
    total, combos, per_combo, unused = 0, 0, [], None
    bounds: dict[str, int] = {}
    for params in param_grid(spec, up_to):
        report = check(spec.with_params(params), depth, max_configurations)
        total, combos = total + report.configurations, combos + 1
        bounds = {k: max(v, bounds.get(k, v)) for k, v in report.bounds.items()}
        keep = {"unreachable_state", "dead_transition"}
        dead = {f.message: f for f in report.findings if f.kind in keep}
        unused = dead if unused is None else {m: f for m, f in unused.items() if m in dead}
        per_combo += [Finding(**{**f.__dict__, "params": params}) for f in report.findings if f.kind not in keep]
    findings = per_combo + list((unused or {}).values())
    return Report(spec.name, spec.param_values, total, depth, bounds, findings, combos)
