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
import logging
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine, Session
from ..errors import TooLarge, TransitionNotAllowed, Unsaturable
from ..spec import Spec
from ..spec.expr import Expr

__all__ = [
    "MAX_CONFIGURATIONS",
    "Abstraction",
    "Finding",
    "Report",
    "TooLarge",
    "Unsaturable",
    "abstraction",
    "check",
    "check_grid",
    "estimate",
    "param_grid",
    "saturation_bounds",
]

Config = tuple[str, tuple[int, ...]]
logger = logging.getLogger("lwfsm.check")

# About a million configurations take ~30 s and ~1 GB; past that a check would run silently for
# minutes or hours, so it is refused up front (the limit is a parameter and a CLI flag).
GRID_FACTOR = 20
MAX_CONFIGURATIONS = 1_000_000


@dataclass
class Finding:
    kind: str  # invariant | incomplete | stuck | dead_transition | unreachable_state
    message: str
    state: str | None = None
    counters: dict[str, int] | None = None
    path: list[str] | None = None  # shortest event sequence from the initial configuration
    params: dict[str, int] | None = None  # set when several param combinations were checked
    # Counters whose value is a saturation bound + 1: the configuration stands for that value or more.
    saturated: list[str] | None = None

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
    exact: dict[str, str] = field(default_factory=dict)  # counters kept exactly, with their domain
    turn_modulus: int = 1  # the turn count is kept modulo this (1: the spec never reads it)

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
            "exact": self.exact,
            "turn_modulus": self.turn_modulus,
            "combinations": self.combinations,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
        }


def _linear(node: ast.expr, counters: set[str], params: dict[str, int]) -> tuple[str | None, int] | None:
    """(counter, offset) if node is `counter + const`, (None, value) if constant; None otherwise."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return None, node.value
    if isinstance(node, ast.Name):
        if node.id in counters:
            return node.id, 0
        return (None, params[node.id]) if node.id in params else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _linear(node.operand, counters, params)
        if inner is None or inner[0] is not None:
            return None
        return None, -inner[1] if isinstance(node.op, ast.USub) else inner[1]
    if isinstance(node, ast.BinOp):
        left, right = _linear(node.left, counters, params), _linear(node.right, counters, params)
        if left is None or right is None or (left[0] and right[0]):
            return None
        if left[0] is None and right[0] is None:  # constants fold whatever the operator
            return None, _fold(node.op, left[1], right[1])
        if isinstance(node.op, ast.Sub):
            if right[0]:
                return None  # a negated counter
            return left[0], left[1] - right[1]
        if isinstance(node.op, ast.Add):
            return left[0] or right[0], left[1] + right[1]
        return None
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("min", "max"):
        args = [_linear(a, counters, params) for a in node.args]
        if any(a is None or a[0] for a in args):
            return None
        values = [a[1] for a in args if a is not None]
        return None, (min(values) if getattr(node.func, "id", None) == "min" else max(values))
    return None


def _fold(op: ast.operator, a: int, b: int) -> int:
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b
    if b < 1:
        return 0  # compiling refuses such a spec first
    return a // b if isinstance(op, ast.FloorDiv) else a % b


@dataclass
class Abstraction:
    """How `check` keeps each counter finite. `bounds`: saturated counters (values above K are all
    K + 1); `exact`: counters whose values stay in a finite domain by construction (windows,
    counters only ever set to constants or to `... % m`), kept exactly; `turn_modulus`: the turn
    count is kept modulo this (every use of `turn` is inside `... % m`), 1 when unused."""

    bounds: dict[str, int]
    exact: dict[str, str]
    turn_modulus: int = 1  # 0: keep the turn count exactly (a depth-bounded search)
    sizes: dict[str, int] = field(default_factory=dict)  # how many values each exact counter can take

    def key(self, session: Session) -> tuple[int, ...]:
        """The session's counter values as this abstraction keeps them, then its kept turn count."""
        names = session.engine.counter_names
        kept = [
            min(v, self.bounds[c] + 1) if c in self.bounds else v for c, v in zip(names, session.values, strict=True)
        ]
        return (*kept, session.turn % self.turn_modulus if self.turn_modulus else session.turn)

    @staticmethod
    def place(session: Session, state: str, key: tuple[int, ...]) -> Session:
        """Put `session` at an abstract configuration (the key's last value is the kept turn count)."""
        return session.place(state, key[:-1], key[-1])


def abstraction(spec: Spec) -> Abstraction:
    """Decide how each counter is kept finite; raises Unsaturable with every reason it cannot be."""
    params = spec.param_values
    assignments: dict[str, list[tuple[Expr, str]]] = {c: [] for c in spec.counters}
    for name, c in spec.counters.items():
        assignments[name].append((spec.parse(c.initial), f"counters.{name}.initial"))
    for name, st in spec.states.items():
        for target, text in st.on_enter.items():
            assignments[target].append((spec.parse(text), f"states.{name}.on_enter.{target}"))
    for i, t in enumerate(spec.transitions):
        for target, text in t.updates.items():
            assignments[target].append((spec.parse(text), f"transitions[{i}].updates.{target}"))

    exact: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for name, c in spec.counters.items():
        if c.window:
            exact[name] = f"window of {c.window} turns"
            sizes[name] = 2**c.window
            continue
        top = 0
        for e, _ in assignments[name]:
            lin = _linear(e.tree, set(), params) if not e.names - set(params) else None
            if lin is not None and lin[1] >= 0:
                top = max(top, lin[1])
            elif isinstance(e.tree, ast.BinOp) and isinstance(e.tree.op, ast.Mod):
                m = _linear(e.tree.right, set(), params)
                if m is None:
                    break
                top = max(top, m[1] - 1)
            else:
                break
        else:
            if any(isinstance(e.tree, ast.BinOp) for e, _ in assignments[name]):
                exact[name] = f"0..{top} (modulo)"
                sizes[name] = top + 1
    saturated = set(spec.counters) - set(exact)
    bounds = {c: 0 for c in spec.counters if c in saturated}
    problems: list[str] = []
    moduli: list[int] = []

    def reads(e: Expr, where: str) -> bool:
        """Check what an expression outside the saturated fragment reads; False after a problem."""
        ok = True

        def walk(node: ast.AST, modulus: int | None) -> None:
            nonlocal ok
            if isinstance(node, ast.Name) and node.id in saturated:
                problems.append(
                    f"{where}: '{e.text}' uses counter '{node.id}' other than as counter + constant "
                    "(an unbounded counter can only be compared with constants)"
                )
                ok = False
            elif isinstance(node, ast.Name) and node.id == "turn":
                if modulus is None:
                    problems.append(f"{where}: '{e.text}' reads turn, which grows without bound: use it as turn % N")
                    ok = False
                else:
                    moduli.append(modulus)
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                m = _linear(node.right, set(), params)
                walk(node.left, m[1] if m is not None and m[1] >= 1 else None)
                return
            if modulus is not None and not isinstance(
                node, (ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.operator, ast.unaryop, ast.expr_context)
            ):
                modulus = None  # only + - * keep `x % m` a function of x modulo m
            if isinstance(node, ast.BinOp) and not isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
                modulus = None
            for child in ast.iter_child_nodes(node):
                walk(child, modulus)

        walk(e.tree, None)
        return ok

    def note(c: str, value: int) -> None:
        bounds[c] = max(bounds[c], value)

    def condition(e: Expr, where: str) -> None:
        for node in ast.walk(e.tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            for a, b in itertools.pairwise(sides):
                la, lb = _linear(a, saturated, params), _linear(b, saturated, params)
                if la is not None and lb is not None:
                    if la[0] and lb[0]:
                        problems.append(f"{where}: '{e.text}' compares two counters")
                    elif la[0]:
                        note(la[0], lb[1] - la[1])
                    elif lb[0]:
                        note(lb[0], la[1] - lb[1])
                    continue
                for side, lin in ((a, la), (b, lb)):
                    if lin is None:  # not counter + constant: must be exact, or it cannot be checked
                        sub = Expr(e.text, "int", e.names, side)
                        if not reads(sub, where):
                            break
                    elif lin[0] is not None:
                        problems.append(
                            f"{where}: '{e.text}' compares saturated counter '{lin[0]}' with a non-constant"
                        )
                        break

    def update(target: str, e: Expr, where: str) -> None:
        if target in exact:
            reads(e, where)
            return
        lin = _linear(e.tree, saturated, params)
        if lin is None:
            if reads(e, where):
                problems.append(f"{where}: '{e.text}' is neither counter + constant nor kept below a constant by %")
        elif lin[0] is None:
            note(target, lin[1])
        elif lin[0] != target or lin[1] < 0:
            what = "decrements" if lin[0] == target else f"copies counter '{lin[0]}' into"
            problems.append(f"{where}: '{e.text}' {what} '{target}'")

    for target, items in assignments.items():
        for e, where in items:
            update(target, e, where)
    for i, t in enumerate(spec.transitions):
        if t.guard:
            condition(spec.parse(t.guard, "bool"), f"transitions[{i}].guard")
    for i, inv in enumerate(spec.invariants):
        condition(spec.parse(inv.expr, "bool"), f"invariants[{i}]")
    if problems:
        raise Unsaturable(list(dict.fromkeys(problems)))
    return Abstraction(bounds, exact, math.lcm(*moduli) if moduli else 1, sizes)


def saturation_bounds(spec: Spec) -> dict[str, int]:
    """Largest constant each saturated counter is ever distinguished by; raises Unsaturable with the reasons."""
    return abstraction(spec).bounds


def estimate(spec: Spec, found: Abstraction) -> int:
    """An upper bound on the configurations a saturated check visits: states × (bound + 2) per
    saturated counter × the size of each exact domain × the turn modulus."""
    total = len(spec.states) * found.turn_modulus  # 1 when the spec never reads turn
    for bound in found.bounds.values():
        total *= bound + 2  # values 0..bound, and bound + 1 standing for every larger one
    for size in found.sizes.values():
        total *= size
    return total


def _refuse_estimate(spec: Spec, found: Abstraction, limit: int) -> int:
    """The estimate, or TooLarge naming what makes it large (a counter's bound or domain, or turn)."""
    total = estimate(spec, found)
    if total <= limit:
        return total
    factors = {f"counter '{c}' is compared against {b:,}": b + 2 for c, b in found.bounds.items()}
    factors |= {f"counter '{c}' can take {s:,} values": s for c, s in found.sizes.items()}
    if spec.uses_turn:
        factors[f"turn is kept modulo {found.turn_modulus:,}"] = found.turn_modulus
    worst = max(factors, key=lambda k: factors[k]) if factors else f"the spec has {len(spec.states):,} states"
    raise TooLarge(
        [
            f"spec '{spec.name}' may have about {_count(total)} configurations ({len(spec.states)} states × counter "
            f"values), over the limit of {limit:,}: {worst}; "
            "lower that bound, use --depth N, or raise --max-configurations"
        ]
    )


def _count(n: int) -> str:
    """A count as people read it: 4,000,000, or 10^5000 (Python writes no int of over 4,300 digits)."""
    return f"{n:,}" if n < 10**30 else f"10^{int(math.log10(n))}"


PROBE = 20_000  # configurations explored (about a second) before a search estimated too large is refused


def check(spec: Spec, depth: int | None = None, max_configurations: int = MAX_CONFIGURATIONS) -> Report:
    """Explore every reachable configuration (or every one within `depth` events). Raises TooLarge
    when the saturated search could exceed `max_configurations`."""
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be 1 or more, got {depth}")  # depth 0 would check nothing, then say ok
    engine = Engine(spec, history=0)
    names = engine.counter_names
    # Saturated counters are capped at bound + 1, exact ones kept as they are, and a spec that reads
    # `turn` keeps it modulo turn_modulus (exactly when `depth` bounds the search instead).
    found = abstraction(spec) if depth is None else Abstraction({}, {}, 0 if spec.uses_turn else 1)
    bounds = found.bounds
    refusal: TooLarge | None = None
    if depth is None:
        try:
            _refuse_estimate(spec, found, max_configurations)
        except TooLarge as exc:
            # The estimate multiplies every counter's range; most specs reach far fewer (a counter that
            # only one state moves). Look a bounded while before refusing: refused if it grows past that.
            refusal = exc
    cap = min(max_configurations, PROBE) if refusal is not None else None
    events = list(spec.events)
    probe = engine.session()  # placed at each configuration in turn
    initial: Config = (probe.state, found.key(probe))
    parent: dict[Config, tuple[Config, str] | None] = {initial: None}
    level = {initial: 0}
    edges: dict[Config, list[Config]] = {}
    fired: set[int] = set()
    first: dict[tuple[str, str, str], Finding] = {}  # one finding per kind and place: BFS finds the shortest first
    queue = deque([initial])
    progress_at = 100_000

    def path(cfg: Config) -> list[str]:
        out = []
        while (link := parent[cfg]) is not None:
            cfg, event = link
            out.append(event)
        return out[::-1]

    def counters(cfg: Config) -> dict[str, int]:
        return dict(zip(names, cfg[1][: len(names)], strict=True))

    while queue:
        if len(parent) >= progress_at:  # long runs say how far they got (the CLI shows lwfsm.check at INFO)
            logger.info("%s: %d configurations found, %d still to explore", spec.name, len(parent), len(queue))
            progress_at *= 2
        cfg = queue.popleft()
        state, values = cfg
        for text in engine.violations(found.place(probe, state, values)):
            if ("invariant", text, "") not in first:
                first["invariant", text, ""] = Finding(
                    "invariant", f"invariant '{text}' is violated in state '{state}'", state, counters(cfg), path(cfg)
                )
        if depth is not None and level[cfg] >= depth:
            continue
        out = edges.setdefault(cfg, [])
        for event in events:
            found.place(probe, state, values)
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
            nxt: Config = (probe.state, found.key(probe))
            if nxt not in parent:
                if refusal is not None and cap is not None and len(parent) >= cap:
                    raise refusal
                if depth is not None and len(parent) >= max_configurations:
                    raise TooLarge(
                        [
                            f"within {depth} events the search reached {len(parent):,} configurations, the limit: "
                            "lower --depth, or raise --max-configurations"
                        ]
                    )
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
                    f"transitions[{i}] ({t.event_text} from {', '.join(t.source)}"
                    f"{' [' + t.guard + ']' if t.guard else ''}) never fires{cut} at {spec.where('transitions', i)}",
                )
            )
    cheap = {r for r, role in spec.roles.items() if role.cheap}
    if cheap and depth is None:
        findings.extend(_stuck(engine, cheap, parent, edges, path, counters))
    for f in findings:
        if f.counters and (over := [c for c, v in f.counters.items() if c in bounds and v > bounds[c]]):
            f.saturated = over
    modulus = found.turn_modulus or 1  # 0 (turn kept exactly in a depth-bounded search) reports as 1
    return Report(spec.name, spec.param_values, len(parent), depth, bounds, findings, 1, found.exact, modulus)


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
        # Each combination is checked (and its memory freed) before the next: the limit bounds one
        # check; the whole grid may take GRID_FACTOR times as long (the estimate is an upper bound).
        total = 0
        for params in param_grid(spec, up_to):
            one = spec.with_params(params)
            try:
                total += _refuse_estimate(one, abstraction(one), max_configurations)
            except TooLarge:
                total += min(max_configurations, PROBE)  # what `check` explores before it refuses one
            if total > GRID_FACTOR * max_configurations:
                raise TooLarge(
                    [
                        f"--params-up-to {up_to}: {combos:,} param combinations may have about {total:,}+ "
                        f"configurations in all, over {GRID_FACTOR} x the limit of {max_configurations:,}; "
                        "lower N or raise --max-configurations"
                    ]
                )
    total, combos, per_combo, unused = 0, 0, [], None
    bounds: dict[str, int] = {}
    exact: dict[str, str] = {}
    modulus = 1
    for params in param_grid(spec, up_to):
        report = check(spec.with_params(params), depth, max_configurations)
        exact, modulus = report.exact, max(modulus, report.turn_modulus)
        total, combos = total + report.configurations, combos + 1
        bounds = {k: max(v, bounds.get(k, v)) for k, v in report.bounds.items()}
        keep = {"unreachable_state", "dead_transition"}
        dead = {f.message: f for f in report.findings if f.kind in keep}
        unused = dead if unused is None else {m: f for m, f in unused.items() if m in dead}
        per_combo += [Finding(**{**f.__dict__, "params": params}) for f in report.findings if f.kind not in keep]
    findings = per_combo + list((unused or {}).values())
    return Report(spec.name, spec.param_values, total, depth, bounds, findings, combos, exact, modulus)


# What a param value can leave unused without the spec being wrong: `lead_turns=1` leaves the
# transitions that count the lead's turns never firing, which the spec needs at other values.
_UNUSED = ("dead_transition", "unreachable_state")


def unused_only_here(report: Report, declared: Spec, max_configurations: int = MAX_CONFIGURATIONS) -> list[Finding]:
    """The findings of `report` (a check at chosen params) that are a dead transition or an unreachable
    state the spec uses at its declared defaults (`declared`: the spec as written): left unused by these
    params, not mistakes. (A deploy check with chosen params, `serve --check-only --set`, notes them.)"""
    candidates = [f for f in report.findings if f.kind in _UNUSED]
    if not candidates or report.params == declared.param_values:
        return []
    try:
        baseline = check(declared, None, max_configurations)
    except (TooLarge, Unsaturable):
        return []  # cannot tell: every finding stands
    there = {(f.kind, f.message) for f in baseline.findings}
    return [f for f in candidates if (f.kind, f.message) not in there]
