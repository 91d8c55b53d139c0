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

import random
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..check.explore import abstraction
from ..diagram.graph import role_colours
from ..engine import Engine
from ..errors import TransitionNotAllowed, Unsaturable
from ..spec import Spec
from ..turn.moves import move
from .pricing import PriceMap, flipped
from .records import TraceRecord
from .report import Summary, Tally, cheap_roles, event_of, failing_events, kind_event, lead_and_worker

__all__ = [
    "ASSUMPTION",
    "MonteCarlo",
    "Replayer",
    "Table",
    "compile_table",
    "generate",
    "monte_carlo",
    "replay_tally",
    "simulate",
    "simulated_summary",
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
        self.why_engine = "--engine was given" if use_engine else ""
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
        return f"the engine, turn by turn (no transition table: {self.why_engine})"

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


def replayed(
    spec: Spec, records: Iterable[TraceRecord], replayer: Replayer | None = None
) -> Iterator[tuple[TraceRecord, str, str, bool]]:
    """Each record with the state and role `spec` gives its turn, and whether the turn failed, streamed:
    what is kept is one configuration per conversation."""
    for rec, state, _, _, role, failed in _replay(spec, records, replayer):
        yield rec, state, role, failed


def _replay(
    spec: Spec, records: Iterable[TraceRecord], replayer: Replayer | None = None
) -> Iterator[tuple[TraceRecord, str, str, str, str, bool]]:
    """`replayed`, with the state after each turn and the event it fired: (record, state, next state,
    event, role, failed)."""
    replayer = replayer or Replayer(spec)
    failing = failing_events(spec)  # as report counts them: a reset fired by hand is no failure
    t = replayer.table
    if t is not None:
        width, roles, states, nxt = len(t.events), t.roles, t.states, t.next
        ids = {e: i for i, e in enumerate(t.events)}
        configs: dict[str, int] = {}
        for rec in records:
            event = replayed_event(spec, rec)
            c = configs.get(rec.session, t.initial)
            configs[rec.session] = n = nxt[c * width + ids[event]]
            if n < 0:
                raise _refused(rec, event, states[c])
            yield rec, states[c], states[n], event, roles[c], event in failing
        return
    sessions: dict[str, Any] = {}
    for rec in records:
        event = replayed_event(spec, rec)
        session = sessions.get(rec.session)
        if session is None:
            session = sessions[rec.session] = replayer.engine.session()
        state, role = session.state, session.role
        try:
            session.apply(event)
        except TransitionNotAllowed:
            raise _refused(rec, event, state) from None
        yield rec, state, session.state, event, role, event in failing


def replayed_event(spec: Spec, rec: TraceRecord) -> str:
    """The event `spec` fires for a recorded turn. A judged turn's kind decides, by this spec's
    `judging.kinds`, which may map it otherwise than the spec that recorded it did (an environment
    problem to `failure`, say); a turn fired by hand, or recorded without its kind, fires what it fired."""
    event = kind_event(spec, rec)
    return event if event is not None and rec.role in spec.roles else event_of(spec, rec)  # which checks the rest


def _refused(rec: TraceRecord, event: str, state: str) -> TransitionNotAllowed:
    kinded = rec.kind not in (None, "ok") and event != rec.outcome
    mapped = f" (the spec's judging.kinds maps the turn's kind '{rec.kind}' to it)" if kinded else ""
    return TransitionNotAllowed(
        f"session '{rec.session}' turn {rec.turn}: event '{event}' is not allowed in state '{state}'{mapped}",
        event=event,
        state=state,
    )


def bound_models(
    spec: Spec,
    used: Callable[[str], str | None],
    lead: str | None = None,
    worker: str | None = None,
    models: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """The model each role of the spec uses: given, else the one the records show it using most."""
    out: dict[str, str | None] = {r: used(r) for r in spec.roles}
    out.update(models or {})
    lead_role, worker_role = lead_and_worker(spec)
    if worker:
        out[worker_role] = worker
    if lead:  # last: a spec of one role is its lead
        out[lead_role] = lead
    return out


def simulate(
    spec: Spec,
    records: Iterable[TraceRecord],
    prices: PriceMap | None = None,
    *,
    lead: str | None = None,
    worker: str | None = None,
    models: Mapping[str, str] | None = None,
    replayer: Replayer | None = None,
    per_conversation: bool = True,
) -> Summary:
    """The recorded conversations replayed through `spec`, streamed, summarised (totals only when not
    `per_conversation`). A role with no model (none given, none in the records) keeps each turn's
    recorded model."""
    replayer = replayer or Replayer(spec)
    tally = replay_tally(spec, records, replayer, per_conversation=per_conversation)
    return simulated_summary(spec, tally, prices, replayer, lead=lead, worker=worker, models=models)


def replay_tally(
    spec: Spec, records: Iterable[TraceRecord], replayer: Replayer, *, per_conversation: bool = True
) -> Tally:
    """The replayed turns tallied, not yet priced (a partition's share, `distributed`)."""
    tally = Tally(lead_role=lead_and_worker(spec)[0], cheap=cheap_roles(spec), per_conversation=per_conversation)
    for rec, state, dest, event, role, failed in _replay(spec, records, replayer):
        tally.add(
            rec, role, failed, move(spec, state, dest, event)
        )  # served by its state's role: no technical fallback
    return tally


def simulated_summary(
    spec: Spec,
    tally: Tally,
    prices: PriceMap | None,
    replayer: Replayer,
    *,
    lead: str | None = None,
    worker: str | None = None,
    models: Mapping[str, str] | None = None,
) -> Summary:
    """The replay's tally priced on the models each role is bound to."""
    bound = bound_models(spec, tally.models_used, lead, worker, models)
    lead_role, worker_role = lead_and_worker(spec)
    note = f"simulated {spec.name} ({_params(spec)}) via {replayer.how}; {ASSUMPTION}"
    unbound = [r for r, m in bound.items() if m is None]
    if unbound:
        note += (
            f"; role {', '.join(unbound)} has no model in the trace and none was given (--model ROLE=MODEL): "
            "its turns are priced on the model recorded for them"
        )
    summary = tally.finish(
        prices or PriceMap(),
        lambda key: bound.get(key[0]) or key[1],
        lead_model=bound.get(lead_role),
        worker_model=bound.get(worker_role),
        note=note,
    )
    summary.kind, summary.colours = "simulated", role_colours(spec)
    return summary


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


def _estimate(samples: Any, trace: int | None = None) -> Estimate:
    """Mean, its 95% interval, and the samples' spread. With `trace` (conversations in the trace the
    forecast was fitted on), the interval also holds what a trace of that size would average: the
    forecast knows no more than its trace, and the trace's own mean must fall inside."""
    np = _numpy()
    n = len(samples)
    mean = float(np.mean(samples))
    scale = (1 / n + (1 / trace if trace else 0.0)) ** 0.5
    half = 1.96 * float(np.std(samples, ddof=1)) * scale if n > 1 else float("inf")
    lo, hi = (float(v) for v in np.percentile(samples, [2.5, 97.5]))
    # an average of what cannot be negative (a cost, a count) is not: with a small trace the normal
    # interval would reach below 0
    low = max(mean - half, 0.0) if float(np.min(samples)) >= 0 else mean - half
    return Estimate(mean, low, mean + half, (lo, hi))


POSITIONS = 4096  # turn positions modelled one by one; later turns share the last position's tokens


class Fit:
    """What Monte-Carlo takes from a trace, gathered in one streamed pass: failures per role,
    conversation lengths, and tokens per turn position and role (a context grows over a conversation,
    and the lead serves the early, small turns), each as it would be warm and cold."""

    def __init__(self, spec: Spec) -> None:
        self.spec, self.failing = spec, failing_events(spec)
        self.failed: Counter[str] = Counter()
        self.turns: Counter[str] = Counter()
        self.used: Counter[tuple[str, str]] = Counter()
        self.open: dict[str, tuple[int, str, int]] = {}  # session -> (turns so far, last model, its cache)
        # (position, role) -> [n, cold fresh, cold read, cold write, warm fresh, warm read, warm write, completion]
        self.tokens: dict[tuple[int, str], list[int]] = {}
        self.unreported: Counter[str] = Counter()  # turns whose tokens are unknown, per role

    def add(self, rec: TraceRecord) -> None:
        role = rec.role
        self.turns[role] += 1
        # read through the spec, as the replay reads it: "ok" is its success, a typo a located error
        self.failed[role] += replayed_event(self.spec, rec) in self.failing
        self.used[role, rec.model] += 1
        n, model, cached = self.open.get(rec.session, (0, "", 0))
        self.open[rec.session] = (n + 1, rec.model, rec.cache_read_tokens + rec.cache_write_tokens)
        if rec.unreported:  # its tokens are unknown: they say nothing about the turns at this position
            self.unreported[role] += 1
            return
        prompt, read, write = rec.prompt_tokens, rec.cache_read_tokens, rec.cache_write_tokens
        was_warm = n > 0 and rec.model == model
        a_read, a_write = flipped(prompt, read, write, was_warm, cached)
        (w_read, w_write), (c_read, c_write) = (
            ((read, write), (a_read, a_write)) if was_warm else ((a_read, a_write), (read, write))
        )
        sums = self.tokens.setdefault((min(n, POSITIONS - 1), role), [0] * 8)
        sums[0] += 1
        sums[1] += max(0, prompt - c_read - c_write)
        sums[2] += c_read
        sums[3] += c_write
        sums[4] += max(0, prompt - w_read - w_write)
        sums[5] += w_read
        sums[6] += w_write
        sums[7] += rec.completion_tokens

    @property
    def conversations(self) -> int:
        return len(self.open)

    def unknown_note(self) -> str | None:
        """What the forecast's prices stand on when turns of the trace had no reported tokens."""
        if not self.unreported:
            return None
        by_role = ", ".join(f"{r} {n} of {self.turns[r]}" for r, n in sorted(self.unreported.items()))
        return (
            f"turns with no reported tokens (unknown usage): {by_role}; the forecast prices such turns with the "
            "tokens of the turns that have them, at the same position (another role's where this role has none)"
        )

    def lengths(self) -> Counter[int]:
        return Counter(n for n, _, _ in self.open.values())

    def models_used(self, role: str) -> str | None:
        counts = Counter({m: n for (r, m), n in self.used.items() if r == role})
        return counts.most_common(1)[0][0] if counts else None

    def counts(self) -> dict[str, tuple[int, int]]:
        """(failures, turns) per role."""
        return {r: (self.failed[r], n) for r, n in sorted(self.turns.items())}

    def rates(self) -> dict[str, Estimate]:
        """Per-role failure probability, with a 95% (Wilson) interval."""
        out = {}
        for role, (k, n) in self.counts().items():
            p, z = k / n, 1.96
            centre = (p + z * z / (2 * n)) / (1 + z * z / n)
            half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
            out[role] = Estimate(p, max(0.0, centre - half), min(1.0, centre + half))
        return out

    def turn_prices(
        self, models: Mapping[str, str | None], prices: PriceMap
    ) -> dict[str, list[tuple[float, float]]] | None:
        """Per role, per turn position, the (warm, cold) price of a turn there: the mean tokens the trace
        has at that position for that role (else for any role), priced on the role's model. None when a
        model has no price."""
        last = max((j for j, _ in self.tokens), default=-1)
        pooled: dict[int, list[int]] = {}
        for (j, _), v in self.tokens.items():
            pooled[j] = [a + b for a, b in zip(pooled.get(j, [0] * 8), v, strict=True)]
        out: dict[str, list[tuple[float, float]]] = {}
        for role, model in models.items():
            rates = None if model is None else prices.rates(model)
            if rates is None:
                return None
            inp, outp, read_rate, write_rate = rates
            row: list[tuple[float, float]] = []
            for j in range(last + 1):
                v = self.tokens.get((j, role)) or pooled.get(j, [])
                if not v:  # no turn with known tokens at this position: as the position before
                    if not row:
                        return None
                    row.append(row[-1])
                    continue
                if (v[2] or v[5]) and read_rate is None:
                    return None
                cold = (v[1] * inp + v[2] * (read_rate or 0.0) + v[3] * write_rate + v[7] * outp) / v[0]
                warm = (v[4] * inp + v[5] * (read_rate or 0.0) + v[6] * write_rate + v[7] * outp) / v[0]
                row.append((warm, cold))
            out[role] = row
        return out


@dataclass(frozen=True)
class MonteCarlo:
    conversations: int
    turns: int  # the longest conversation
    failure: dict[str, float]
    cost: Estimate | None  # dollars per conversation; None: no prices
    failing_worker_turns: Estimate  # per conversation
    turns_by_role: dict[str, Estimate]  # per conversation
    trace: int | None = None  # conversations of the trace the forecast was fitted on

    def text(self) -> str:
        of = "a trace of the same size" if self.trace else "the mean"
        lines = [
            f"Monte-Carlo: {self.conversations} conversations of up to {self.turns} turns; failure probability "
            + ", ".join(f"{r} {p:.3g}" for r, p in self.failure.items())
            + f" (per conversation: mean [95% interval of {of}])",
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
    turns: int | Mapping[int, int],
    success: str,
    fail: str,
    lead_role: str = "lead",
    cheap: Collection[str] | None = None,
    turn_price: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    observed: dict[str, tuple[int, int]] | None = None,
    seed: int | None = 0,
    trace: int | None = None,
    scale: Mapping[str, float] | None = None,
) -> MonteCarlo:
    """N conversations, vectorised over conversations. `turns` is every conversation's length, or a
    histogram {length: count} lengths are drawn from. A turn fails with its role's probability;
    `turn_price[role][j] = (warm, cold)` prices a turn at position j (the last entry for later ones)
    served by a role that served the turn before (warm) or not (cold). A role in `observed` (failures,
    turns) instead draws its probability per conversation from the Beta(failures + 1, turns - failures + 1)
    posterior, so the intervals carry the uncertainty of an estimate made from a trace; `trace` (its
    conversations) widens the intervals to what a trace of that size would average (`_estimate`).
    `scale` multiplies a role's probability, given or drawn (at most 1): a what-if on the same footing."""
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
        if scale and r in scale:
            per_conv[i] = np.minimum(1.0, per_conv[i] * scale[r])
    if isinstance(turns, int):
        length = np.full(conversations, turns)
    else:
        sizes = np.array(sorted(turns))
        weights = np.array([turns[int(k)] for k in sizes], dtype=float)
        length = rng.choice(sizes, size=conversations, p=weights / weights.sum())
    longest = int(length.max()) if conversations else 0
    everyone = np.arange(conversations)
    width = len(table.events)
    nxt = np.array(table.next).reshape(-1, width)
    ok_e, fail_e = table.events.index(success), table.events.index(fail)
    c = np.full(conversations, table.initial)
    prev = np.full(conversations, -1)
    served = np.zeros((len(role_names), conversations))
    failing_worker = np.zeros(conversations)
    cost = np.zeros(conversations)
    price = np.full((max(1, min(longest, POSITIONS)), len(role_names), 2), np.nan)  # [position, role, warm]
    for i, r in enumerate(role_names):
        row = (turn_price or {}).get(r)
        if row:
            for j in range(price.shape[0]):
                price[j, i] = row[min(j, len(row) - 1)][::-1]  # (warm, cold) -> [cold, warm]
    # a failed turn of theirs is a failing worker's: the cheap roles, else every role but the lead
    failing = np.array([r in cheap if cheap is not None else r != lead_role for r in role_names])
    for j in range(longest):
        live = length > j
        r = role_of[c]
        failed = (rng.random(conversations) < per_conv[r, everyone]) & live
        np.add.at(served, (r, everyone), live)
        failing_worker += failed & failing[r]
        turn_cost = price[min(j, price.shape[0] - 1), r, (r == prev).astype(int)]
        cost += np.where(live, turn_cost, 0.0)
        c = np.where(live, nxt[c, np.where(failed, fail_e, ok_e)], c)
        prev = r
    return MonteCarlo(
        conversations,
        longest,
        {r: float(p[i]) for i, r in enumerate(role_names)},
        None if turn_price is None or np.isnan(cost).any() else _estimate(cost, trace),
        _estimate(failing_worker, trace),
        {r: _estimate(served[i], trace) for i, r in enumerate(role_names)},
        trace,
    )


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
    conversations = max(1, min(knobs.conversations, knobs.turns))
    per, longer = divmod(max(1, knobs.turns), conversations)  # the first `longer` conversations: one turn more
    lead, worker = lead_and_worker(spec)
    models = {worker: knobs.worker_model, lead: knobs.lead_model}  # a spec of one role: its lead's
    reasons = ("tool error: tests failed", "user correction: try again", "malformed tool call")
    named = spec.rules_hash
    for i in range(conversations):
        session = engine.session()
        prev_model, prev_prompt, failed = "", 0, False
        for turn in range(1, per + (i < longer) + 1):
            state, role = session.state, session.role
            model = models.get(role, knobs.worker_model)
            p = knobs.burst if failed and knobs.burst else (knobs.fail_lead if role == lead else knobs.fail_worker)
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
                "spec": named,
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
