"""Replaying outcomes through a spec: a transition table over the checker's saturated configurations.

`compile_table(spec)` explores every reachable configuration (state + counters saturated at
bound + 1, exactly as `lwfsm check` does) with the real engine, and records for each configuration
and event the configuration it leads to. Running the table is then one list lookup per turn, and
with numpy one vectorised step per turn over many conversations at once. A spec outside the
saturable fragment has no finite table: `Replayer` then drives the engine itself and says so.

Replay assumes that a turn's outcome does not depend on which model served it: the recorded
outcomes are fed, in order, to the simulated spec.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..check.explore import abstraction
from ..engine import Engine
from ..errors import TransitionNotAllowed, Unsaturable
from ..spec import Spec
from ..turn.ledger import Usage
from .pricing import PriceMap, cache_split
from .records import TraceRecord, conversations
from .report import Summary, most_used_model, summarise

__all__ = [
    "ASSUMPTION",
    "MonteCarlo",
    "Replayer",
    "Table",
    "compile_table",
    "generate",
    "monte_carlo",
    "simulate",
]

ASSUMPTION = "replay assumes a turn's outcome does not depend on which model served it"


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:
        raise ImportError("this needs numpy: pip install 'lwfsm[sim]'") from exc
    return numpy


@dataclass(frozen=True)
class Table:
    """Every reachable saturated configuration, its role, and where each event leads (-1: not allowed)."""

    events: tuple[str, ...]
    states: tuple[str, ...]  # per configuration
    values: tuple[tuple[int, ...], ...]  # per configuration (saturated)
    roles: tuple[str, ...]  # per configuration
    next: tuple[int, ...]  # flat: next[c * len(events) + e]
    initial: int = 0

    def step(self, config: int, event: str) -> int:
        nxt = self.next[config * len(self.events) + self.events.index(event)]
        if nxt < 0:
            state = self.states[config]
            raise TransitionNotAllowed(f"event '{event}' is not allowed in state '{state}'", event=event, state=state)
        return nxt


def compile_table(spec: Spec) -> Table:
    """The spec as a transition table; raises Unsaturable for specs outside the saturable fragment."""
    found = abstraction(spec)
    engine = Engine(spec, history=0)
    events = tuple(spec.events)
    probe = engine.session()
    initial = (probe.state, found.key(probe))
    index = {initial: 0}
    order = [initial]
    nxt: list[int] = []
    queue = deque([initial])
    while queue:
        state, values = queue.popleft()
        for event in events:
            found.place(probe, state, values)
            try:
                probe.apply(event)
            except TransitionNotAllowed:
                nxt.append(-1)
                continue
            cfg = (probe.state, found.key(probe))
            if cfg not in index:
                index[cfg] = len(order)
                order.append(cfg)
                queue.append(cfg)
            nxt.append(index[cfg])
    return Table(
        events,
        tuple(s for s, _ in order),
        tuple(v for _, v in order),
        tuple(engine.state_roles[s] for s, _ in order),
        tuple(nxt),
    )


class Replayer:
    """Roles (and states) a spec gives a sequence of outcomes, from the table when the spec has one."""

    def __init__(self, spec: Spec, *, use_engine: bool = False) -> None:
        self.spec = spec
        self.table: Table | None = None
        self.why_engine = "asked to" if use_engine else ""
        if not use_engine:
            try:
                self.table = compile_table(spec)
            except Unsaturable as exc:
                self.why_engine = "its counters cannot be saturated soundly (" + "; ".join(exc.problems) + ")"
        self.engine = Engine(spec, history=0)

    @property
    def how(self) -> str:
        if self.table is not None:
            return f"transition table over {len(self.table.states)} saturated configurations"
        return f"the engine, turn by turn: no transition table for this spec: {self.why_engine}"

    def run(self, outcomes: Sequence[str]) -> list[tuple[str, str]]:
        """(state, role) serving each turn of one conversation started afresh."""
        if self.table is not None:
            t = self.table
            width, roles, states, nxt = len(t.events), t.roles, t.states, t.next
            ids = {e: i for i, e in enumerate(t.events)}
            c, out = t.initial, []
            for event in outcomes:
                out.append((states[c], roles[c]))
                c = nxt[c * width + ids[event]]
                if c < 0:
                    state = out[-1][0]
                    raise TransitionNotAllowed(
                        f"event '{event}' is not allowed in state '{state}'", event=event, state=state
                    )
            return out
        session = self.engine.session()
        res = []
        for event in outcomes:
            res.append((session.state, session.role))
            session.apply(event)
        return res

    def run_many(self, events: Any) -> Any:
        """Configurations serving each turn of many conversations at once (numpy): `events` is an
        (N, T) integer array of indices into `table.events`; the result is (N, T) indices into the
        table's configurations (`table.roles[i]` is the role). Needs the table."""
        if self.table is None:
            raise ValueError(f"no transition table for spec '{self.spec.name}': {self.why_engine}")
        np = _numpy()
        t = self.table
        nxt = np.array(t.next, dtype=np.int32).reshape(-1, len(t.events))
        n, turns = events.shape
        out = np.empty((n, turns), dtype=np.int32)
        c = np.full(n, t.initial, dtype=np.int32)
        for j in range(turns):
            out[:, j] = c
            c = nxt[c, events[:, j]]
            if (c < 0).any():
                raise TransitionNotAllowed(
                    f"an event of turn {j + 1} is not allowed", event=str(events[0, j]), state=t.states[out[0, j]]
                )
        return out

    def roles(self, outcomes: Sequence[str]) -> list[str]:
        return [r for _, r in self.run(outcomes)]


def _event_map(spec: Spec, records: Sequence[TraceRecord]) -> Callable[[str], str]:
    """Recorded outcomes to the spec's events: its own names, else by success/failure verdict."""
    ok, fail = spec.judging.events
    known = set(spec.events)

    def to_event(outcome: str) -> str:
        if outcome in known:
            return outcome
        return ok if outcome in ("turn_completed", "ok", "success") else fail

    return to_event


def role_models(
    spec: Spec,
    records: Sequence[TraceRecord],
    lead: str | None = None,
    worker: str | None = None,
    models: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """The model each role of the spec uses: given, else the one it used most in the records."""
    out: dict[str, str | None] = {r: most_used_model(records, r) for r in spec.roles}
    out.update(models or {})
    if lead:
        out["lead"] = lead
    if worker:
        out["worker"] = worker
    return out


def simulate(
    spec: Spec,
    records: Sequence[TraceRecord],
    prices: PriceMap | None = None,
    *,
    lead: str | None = None,
    worker: str | None = None,
    models: Mapping[str, str] | None = None,
    replayer: Replayer | None = None,
) -> tuple[Summary, list[TraceRecord]]:
    """The recorded conversations replayed through `spec`: its summary and the simulated records.
    A role with no model (none given, none in the records) keeps each turn's recorded model."""
    replayer = replayer or Replayer(spec)
    bound = role_models(spec, records, lead, worker, models)
    to_event = _event_map(spec, records)
    ok = spec.judging.events[0]
    out: list[TraceRecord] = []
    for turns in conversations(records).values():
        served = replayer.run([to_event(r.outcome) for r in turns])
        new_models = [bound.get(role) or r.model for (_, role), r in zip(served, turns, strict=True)]
        usages = cache_split([r.usage for r in turns], [r.model for r in turns], new_models)
        for r, (state, role), model, u in zip(turns, served, new_models, usages, strict=True):
            out.append(
                r.model_copy(
                    update={
                        "state": state,
                        "role": role,
                        "model": model,
                        "outcome": ok if to_event(r.outcome) == ok else r.outcome,
                        "cache_read_tokens": u.cache_read_tokens,
                        "cache_write_tokens": u.cache_write_tokens,
                        "cost": None,
                        "transition": None,
                    }
                )
            )
    note = f"simulated {spec.name} ({_params(spec)}) via {replayer.how}; {ASSUMPTION}"
    unbound = [r for r, m in bound.items() if m is None]
    if unbound:
        note += (
            f"; role {', '.join(unbound)} has no model in the trace and none was given (--model ROLE=MODEL): "
            "its turns are priced on the model recorded for them"
        )
    summary = summarise(
        out, prices, lead_model=bound.get("lead"), worker_model=bound.get("worker"), success=ok, note=note
    )
    return summary, out


def _params(spec: Spec) -> str:
    return ", ".join(f"{k}={v}" for k, v in spec.param_values.items())


# ---- Monte-Carlo -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float  # 95% confidence interval of the mean (normal approximation)
    high: float
    spread: tuple[float, float] | None = None  # 2.5th and 97.5th percentiles of the samples

    def __str__(self) -> str:
        text = f"{self.mean:.6g} [{self.low:.6g}, {self.high:.6g}]"
        if self.spread is not None:
            text += f" (95% of conversations within {self.spread[0]:.6g}..{self.spread[1]:.6g})"
        return text


def _estimate(samples: Any) -> Estimate:
    np = _numpy()
    n = len(samples)
    mean = float(np.mean(samples))
    half = 1.96 * float(np.std(samples, ddof=1)) / n**0.5 if n > 1 else float("inf")
    lo, hi = (float(v) for v in np.percentile(samples, [2.5, 97.5]))
    return Estimate(mean, mean - half, mean + half, (lo, hi))


def failure_counts(records: Sequence[TraceRecord], success: str = "turn_completed") -> dict[str, tuple[int, int]]:
    """(failures, turns) per role in the records."""
    out: dict[str, tuple[int, int]] = {}
    for r in records:
        k, n = out.get(r.role, (0, 0))
        out[r.role] = (k + (r.outcome != success), n + 1)
    return out


def failure_rates(records: Sequence[TraceRecord], success: str = "turn_completed") -> dict[str, Estimate]:
    """Per-role failure probability estimated from the records, with a 95% (Wilson) interval."""
    out = {}
    for role in sorted({r.role for r in records}):
        n = sum(1 for r in records if r.role == role)
        k = sum(1 for r in records if r.role == role and r.outcome != success)
        p, z = k / n, 1.96
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
        out[role] = Estimate(p, max(0.0, centre - half), min(1.0, centre + half))
    return out


@dataclass(frozen=True)
class MonteCarlo:
    conversations: int
    turns: int
    failure: dict[str, float]
    cost: Estimate | None  # dollars per conversation; None: no prices
    failing_worker_turns: Estimate  # per conversation
    turns_by_role: dict[str, Estimate]  # per conversation

    def text(self) -> str:
        lines = [
            f"Monte-Carlo: {self.conversations} conversations of {self.turns} turns; failure probability "
            + ", ".join(f"{r} {p:.3g}" for r, p in self.failure.items())
            + " (per conversation: mean [95% confidence interval of the mean])",
            f"  cost $: {self.cost if self.cost is not None else 'unknown'}",
            f"  turns a failing worker kept serving: {self.failing_worker_turns}",
        ]
        lines += [f"  turns served by {r}: {e}" for r, e in self.turns_by_role.items()]
        return "\n".join(lines)


def monte_carlo(
    table: Table,
    failure: dict[str, float],
    *,
    conversations: int,
    turns: int,
    success: str,
    fail: str,
    lead_role: str = "lead",
    turn_price: dict[str, tuple[float, float]] | None = None,
    observed: dict[str, tuple[int, int]] | None = None,
    seed: int | None = 0,
) -> MonteCarlo:
    """N conversations of `turns` turns, vectorised over conversations. A turn fails with its
    role's probability; `turn_price[role] = (warm, cold)` prices a turn served by a role that
    served the turn before (warm) or not (cold). A role in `observed` (failures, turns) instead
    draws its probability per conversation from the Beta(failures + 1, turns - failures + 1)
    posterior, so the intervals carry the uncertainty of an estimate made from a trace."""
    np = _numpy()
    rng = np.random.default_rng(seed)
    role_names = sorted(set(table.roles))
    role_of = np.array([role_names.index(r) for r in table.roles])
    p = np.array([failure.get(r, 0.0) for r in role_names])
    per_conv = np.repeat(p[:, None], conversations, axis=1)
    for i, r in enumerate(role_names):
        if observed and r in observed:
            k, n = observed[r]
            per_conv[i] = rng.beta(k + 1, n - k + 1, size=conversations)
    everyone = np.arange(conversations)
    width = len(table.events)
    nxt = np.array(table.next).reshape(-1, width)
    ok_e, fail_e = table.events.index(success), table.events.index(fail)
    c = np.full(conversations, table.initial)
    prev = np.full(conversations, -1)
    served = np.zeros((len(role_names), conversations))
    failing_worker = np.zeros(conversations)
    cost = np.zeros(conversations)
    prices = turn_price or {}
    warm = np.array([prices.get(r, (np.nan, np.nan))[0] for r in role_names])
    cold = np.array([prices.get(r, (np.nan, np.nan))[1] for r in role_names])
    lead_i = role_names.index(lead_role) if lead_role in role_names else -1
    for _ in range(turns):
        r = role_of[c]
        failed = rng.random(conversations) < per_conv[r, everyone]
        np.add.at(served, (r, everyone), 1)
        failing_worker += failed & (r != lead_i)
        cost += np.where(r == prev, warm[r], cold[r])
        c = nxt[c, np.where(failed, fail_e, ok_e)]
        prev = r
    return MonteCarlo(
        conversations,
        turns,
        {r: float(p[i]) for i, r in enumerate(role_names)},
        None if turn_price is None or np.isnan(cost).any() else _estimate(cost),
        _estimate(failing_worker),
        {r: _estimate(served[i]) for i, r in enumerate(role_names)},
    )


def turn_prices(
    records: Sequence[TraceRecord], models: dict[str, str | None], prices: PriceMap
) -> dict[str, tuple[float, float]] | None:
    """(warm, cold) price of an average turn per role: the records' mean tokens per turn, split
    between cache and fresh input as the records' warm turns split them; a cold turn reads nothing
    and writes what a warm one reads. None when a model has no price."""
    if not records:
        return None
    n = len(records)
    prompt = sum(r.prompt_tokens for r in records) // n
    completion = sum(r.completion_tokens for r in records) // n
    warm_recs = [
        b for convo in conversations(records).values() for a, b in itertools.pairwise(convo) if a.model == b.model
    ]
    w = len(warm_recs) or 1
    read = min(prompt, sum(r.cache_read_tokens for r in warm_recs) // w)
    write = min(prompt - read, sum(r.cache_write_tokens for r in warm_recs) // w)
    warm_u = Usage(prompt_tokens=prompt, completion_tokens=completion, cache_read_tokens=read, cache_write_tokens=write)
    cold_u = Usage(prompt_tokens=prompt, completion_tokens=completion, cache_write_tokens=read + write)
    out = {}
    for role, model in models.items():
        if model is None:
            return None
        a, b = prices.price(model, warm_u), prices.price(model, cold_u)
        if a is None or b is None:
            return None
        out[role] = (a, b)
    return out


# ---- synthetic traces --------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    """What `generate` draws a synthetic trace from."""

    conversations: int = 10  # conversations in the trace
    turns: int = 100  # turns in all, spread evenly over the conversations
    fail_lead: float = 0.05  # probability that a lead turn fails
    fail_worker: float = 0.2  # probability that a worker turn fails
    burst: float = 0.0  # probability that a turn after a failure fails as well (failure bursts)
    prompt_tokens: int = 2000  # context of the first turn
    growth: int = 800  # tokens the context grows by each turn (the previous reply and the new input)
    completion_tokens: int = 400
    cache_hit: float = 0.9  # share of the previous turn's context read from the cache on a warm turn
    lead_model: str = "gpt-4o"
    worker_model: str = "gpt-4o-mini"
    seed: int = 0


def generate(spec: Spec, knobs: Knobs) -> Iterator[dict[str, Any]]:
    """Trace records of synthetic conversations served by `spec` (lead/worker roles)."""
    rng = random.Random(knobs.seed)
    replayer = Replayer(spec)
    engine = replayer.engine
    ok, fail = spec.judging.events
    per = max(1, knobs.turns // max(1, knobs.conversations))
    models = {"lead": knobs.lead_model, "worker": knobs.worker_model}
    reasons = ("tool error: tests failed", "user correction: try again", "malformed tool call")
    for i in range(max(1, knobs.conversations)):
        session = engine.session()
        prev_model, prev_prompt, failed = "", 0, False
        for turn in range(1, per + 1):
            state, role = session.state, session.role
            model = models.get(role, knobs.worker_model)
            p = knobs.burst if failed and knobs.burst else (knobs.fail_lead if role == "lead" else knobs.fail_worker)
            failed = rng.random() < p
            prompt = knobs.prompt_tokens + (turn - 1) * knobs.growth
            read = int(prev_prompt * knobs.cache_hit) if model == prev_model else 0
            write = prompt - read
            record = session.apply(fail if failed else ok, None)
            yield {
                "session": f"synthetic-{i + 1}",
                "turn": turn,
                "state": state,
                "role": role,
                "model": model,
                "outcome": record.event,
                "reason": rng.choice(reasons) if failed else None,
                "prompt_tokens": prompt,
                "completion_tokens": knobs.completion_tokens,
                "cache_read_tokens": read,
                "cache_write_tokens": write,
                "reasoning_tokens": 0,
                "cost": None,
                "latency": 0.0,
                "transition": {
                    "source": record.source,
                    "dest": record.dest,
                    "index": record.transition,
                    "guard": record.guard,
                },
            }
            prev_model, prev_prompt = model, prompt


def rank_rows(rows: list[dict[str, Any]], cost: str, risk: str) -> list[dict[str, Any]]:
    """Rows sorted by cost, each marked `pareto` when no other row is at most as costly and as risky
    while being better on one of the two."""
    for a in rows:
        a["pareto"] = a[cost] is not None and not any(
            b is not a
            and b[cost] is not None
            and b[cost] <= a[cost]
            and b[risk] <= a[risk]
            and (b[cost] < a[cost] or b[risk] < a[risk])
            for b in rows
        )
    return sorted(rows, key=lambda r: (r[cost] is None, r[cost] or 0.0, r[risk]))


def sweep_grid(spec: Spec, ranges: dict[str, range]) -> Iterator[Spec]:
    for combo in itertools.product(*ranges.values()):
        yield spec.with_params(dict(zip(ranges, combo, strict=True)))


def counts(records: Sequence[TraceRecord]) -> Counter[str]:
    return Counter(r.role for r in records)
