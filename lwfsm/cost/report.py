"""`lwfsm report`: what recorded (or simulated) conversations did and what they cost.

Per conversation and in total: turns by role, switches, fallbacks entered and technical fallbacks
as `lwfsm.turn.moves` defines them (the gateway's words too), read from each record's state and
transition through the spec; a fallback's length (the judged turns served in it) goes to a histogram
(kept as counts per length, so memory does not grow with the turns). A record that says nothing of the
machine (no `state` or `transition`: a hand-written trace) is read as if its turn was served by its
state's role: a switch is a turn served by another role than the turn before, a fallback a run of the
lead role's turns after another role's. Then failures by judging rule (else reason), the turns a
failing worker kept serving (failed turns of a non-lead role), and the actual cost against the same
conversations served by the lead alone and by the worker alone, cache effect included
(`pricing.cache_split`).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import did_you_mean
from ..spec import Spec
from ..spec.model import FAILURE_KINDS
from ..turn.moves import Move, move
from .pricing import PriceMap, flipped
from .records import TraceRecord

__all__ = ["ConversationSummary", "Summary", "Tally", "summarise"]


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


@dataclass
class ConversationSummary:
    session: str
    turns: Counter[str] = field(default_factory=Counter)  # by role
    switches: int = 0
    fallbacks: Counter[int] = field(default_factory=Counter)  # fallbacks entered, by length
    technical_fallbacks: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # by reason
    failing_worker_turns: int = 0
    unknown_usage: int = 0  # turns whose provider reported no tokens: their cost, and every sum over them, is unknown
    cost: float | None = 0.0
    all_lead: float | None = 0.0
    all_worker: float | None = 0.0
    costs: list[float | None] = field(default_factory=list)  # per turn (actual), for plots
    roles: list[str] = field(default_factory=list)  # per turn, for the timeline
    failed: list[bool] = field(default_factory=list)  # per turn

    @property
    def total_turns(self) -> int:
        return sum(self.turns.values())

    def merge(self, other: ConversationSummary) -> None:
        self.turns.update(other.turns)
        self.switches += other.switches
        self.fallbacks.update(other.fallbacks)
        self.technical_fallbacks += other.technical_fallbacks
        self.failures.update(other.failures)
        self.failing_worker_turns += other.failing_worker_turns
        self.unknown_usage += other.unknown_usage
        self.cost = _add(self.cost, other.cost)
        self.all_lead = _add(self.all_lead, other.all_lead)
        self.all_worker = _add(self.all_worker, other.all_worker)

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "turns": self.total_turns,
            "turns_by_role": dict(self.turns),
            "switches": self.switches,
            "fallbacks": self.fallbacks.total(),
            "fallback_lengths": {str(n): k for n, k in sorted(self.fallbacks.items())},  # length -> fallbacks
            "technical_fallbacks": self.technical_fallbacks,
            "failures": sum(self.failures.values()),
            "failures_by_reason": dict(self.failures),
            "failing_worker_turns": self.failing_worker_turns,
            "unknown_usage_turns": self.unknown_usage,
            "cost": self.cost,
            "all_lead": self.all_lead,
            "all_worker": self.all_worker,
        }


@dataclass
class Summary:
    lead_model: str | None
    worker_model: str | None
    conversations: list[ConversationSummary]
    total: ConversationSummary
    note: str = ""  # e.g. the simulator's assumption, printed above the table
    diagram: str = ""  # the spec's diagram as inline SVG, for the HTML page (simulate)
    kind: str = "actual"  # what the cost column is: "actual" (recorded) or "simulated"
    colours: dict[str, str] = field(default_factory=dict)  # role -> fill, as the spec's diagrams draw it
    unpriced: list[str] = field(default_factory=list)  # models with no price: every cost of theirs is unknown

    def to_dict(self) -> dict[str, Any]:
        return {
            "note": self.note,
            "lead_model": self.lead_model,
            "worker_model": self.worker_model,
            "unpriced_models": self.unpriced,
            "conversations": [c.to_dict() for c in self.conversations],
            "total": self.total.to_dict(),
            "known": self.known(),
        }

    def known(self) -> dict[str, Any] | None:
        """When the total cost is unknown: the conversations whose costs are all known, summed (None: no
        total is unknown, or no conversation is known whole)."""
        if self.total.cost is not None:
            return None
        whole = [c for c in self.conversations if c.cost is not None and c.all_lead is not None]
        if not whole:
            return None
        cost, lead = sum(c.cost or 0.0 for c in whole), sum(c.all_lead or 0.0 for c in whole)
        return {"conversations": len(whole), "of": len(self.conversations), "cost": cost, "all_lead": lead}

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows (one per conversation, then the total) for CSV and the terminal table."""
        out = []
        for c in [*self.conversations, self.total]:
            d = c.to_dict()
            d["turns_by_role"] = " ".join(f"{k}={v}" for k, v in sorted(c.turns.items()))
            d["fallback_lengths"] = _lengths(c.fallbacks)
            d["failures_by_reason"] = "; ".join(f"{k}={v}" for k, v in c.failures.most_common())
            out.append(d)
        return out

    def unknowns(self) -> list[str]:
        """Why costs are unknown, when some are."""
        out, t = [], self.total
        if t.unknown_usage:
            out.append(
                f"{t.unknown_usage} of {t.total_turns} turns have no reported usage (the upstream sent none, or the "
                "record has no token counts): their tokens and cost are unknown, so is every cost that includes them"
            )
        if self.unpriced:
            out.append(
                f"no price for {', '.join(self.unpriced)} in LiteLLM's price map: their costs are unknown "
                "(LWFSM_PRICES=FILE gives prices of your own; --lead/--worker name priced models to compare against)"
            )
        return out

    def text(self) -> str:
        def money(v: float | None) -> str:
            return "unknown" if v is None else dollars(v)

        header = [
            "session",
            "turns",
            "by role",
            "switches",
            "fallbacks (lengths)",
            "tech. fallbacks",
            "failures",
            f"$ {self.kind}",
            "$ lead",
            "$ worker",
        ]
        rows = []
        for d in self.rows():
            rows.append(
                [
                    printable(d["session"]),  # a newline in an id must not start a row of its own
                    str(d["turns"]),
                    d["turns_by_role"],
                    str(d["switches"]),
                    f"{d['fallbacks']} ({d['fallback_lengths']})" if d["fallbacks"] else "0",
                    str(d["technical_fallbacks"]),
                    str(d["failures"]),
                    money(d["cost"]),
                    money(d["all_lead"]),
                    money(d["all_worker"]),
                ]
            )
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def line(r: Sequence[str]) -> str:
            return "  ".join(
                c.ljust(w) if i in (0, 2) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )

        out = [self.note] if self.note else []
        out.append(f"lead alone: {self.lead_model or 'unknown'}; worker alone: {self.worker_model or 'unknown'}")
        out += [line(header), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in rows[:-1]]
        out += ["  ".join("-" * w for w in widths), line(rows[-1])]
        reasons = self.total.failures.most_common()
        if reasons:
            out.append("failures by rule or reason: " + "; ".join(f"{k} {v}" for k, v in reasons))
        out += self.unknowns()
        t = self.total
        if t.cost is not None and t.all_lead:
            out.append(f"{self.kind} cost is {100 * t.cost / t.all_lead:.1f}% of the lead alone")
        if said := _known_line(self):  # the part that is known, said as such: unknown is not all or nothing
            out.append(said)
        return "\n".join(out)

    def csv(self) -> str:
        buf = io.StringIO()
        rows = self.rows()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def html(self, title: str = "lwfsm report") -> str:
        """One self-contained page (no scripts, no CDN): the table, cost over turns, role timelines."""
        return _html(self, title)


def _lengths(lengths: Counter[int]) -> str:
    """Fallback lengths, shortest first, when there are few, else their mean and max."""
    n = lengths.total()
    if n <= 8:
        return " ".join(str(k) for k in sorted(lengths.elements()))
    return f"mean {sum(k * c for k, c in lengths.items()) / n:.1f}, max {max(lengths)}"


DETAILED = 50  # conversations whose turns the HTML page draws (who served them, whether they failed)
COSTED = 12  # conversations whose cost over turns it draws (per-turn token counts are kept for these only)
DETAIL_TURNS = 2000  # turns drawn per conversation

Key = tuple[str, str]  # (role that serves the turn, model recorded for it)
Index = tuple[Key | None, Key, bool]  # (previous turn's key, this turn's key, recorded warm)


class _Open:
    """What a conversation needs while its turns stream in (see `Tally`)."""

    __slots__ = (
        "detail",
        "fallback",
        "indexes",
        "prev_cached",
        "prev_key",
        "prev_model",
        "prev_role",
        "summary",
        "sums",
        "timeline",
    )

    def __init__(self, summary: ConversationSummary | None, order: int) -> None:
        """`order`: conversations opened before this one (the first ones have their turns drawn)."""
        self.summary = summary
        self.prev_role: str | None = None
        self.fallback: int | None = None  # turns served so far in the fallback under way (None: none)
        self.prev_key: Key | None = None
        self.prev_model = ""
        self.prev_cached = 0
        self.sums: dict[Index, list[int]] = {}
        self.timeline = summary is not None and order < DETAILED
        # per turn, flat: the number of its index in `indexes`, then its 8 token counts (as `Tally.add` sums them);
        # an array, not tuples: 72 bytes a turn instead of ~500
        self.detail: array[int] | None = array("q") if summary is not None and order < COSTED else None
        self.indexes: dict[Index, int] = {}


class Tally:
    """Summaries built one record at a time: memory grows with the number of conversations, not turns.

    Costs are linear in token counts, so each conversation keeps token sums, not turns. A turn's tokens
    are split between fresh, cached and written input as recorded ('same') and as they would be had its
    warmth changed ('alt', `pricing.cache_split`); the sums are keyed by (previous turn's key, this
    turn's key, recorded warm), a key being (role, recorded model). Once every record is in and the
    model serving each key is known (`finish`), each sum is priced: 'same' where the models make the
    turn exactly as warm as recorded, else 'alt'. So the models may be chosen after the stream (the one
    each role used most), and the lead/worker-alone costs come from the same sums."""

    def __init__(
        self,
        *,
        lead_role: str = "lead",
        cheap: frozenset[str] | None = None,
        per_conversation: bool = True,
    ) -> None:
        self.lead_role = lead_role
        self.cheap = cheap  # the spec's cheap roles, whose failed turns are a failing worker's (None: not the lead)
        self.per_conversation = per_conversation  # False: totals only (sweeps)
        self.open: dict[str, _Open] = {}
        self.total = ConversationSummary("total")
        self.sums: dict[Index, list[int]] = {}  # every conversation's (totals only)
        self.used: Counter[tuple[str, str]] = Counter()  # (recorded role, model) -> turns

    def add(
        self, rec: TraceRecord, role: str, failed: bool, done: Move | None = None, cheap: frozenset[str] | None = None
    ) -> None:
        """One turn: `rec` as recorded, `role` the role serving it (replay may change it), `failed` its
        verdict, `done` what it did to the machine (`lwfsm.turn.moves.move`; None: unknown, read from
        the roles that served, see the module's docstring)."""
        conv = self.open.get(rec.session)
        if conv is None:
            c = ConversationSummary(rec.session) if self.per_conversation else None
            conv = self.open[rec.session] = _Open(c, len(self.open))
        self.used[rec.role, rec.model] += 1
        c = conv.summary or self.total
        c.turns[role] += 1
        c.unknown_usage += rec.unreported
        prev_role, lead = conv.prev_role, self.lead_role
        if done is not None:
            c.switches += done.switch
            c.technical_fallbacks += done.technical_fallback
            if conv.fallback is not None:
                conv.fallback += 1  # this turn was served in the fallback
                if done.switch:  # and it ended it: its length goes to the histogram
                    c.fallbacks[conv.fallback] += 1
                    conv.fallback = None
            if done.fallback:
                conv.fallback = 0
        else:
            switch = prev_role is not None and role != prev_role
            c.switches += switch
            if role == lead and switch:
                conv.fallback = 1  # the lead is back after another role: a fallback entered
            elif role == lead and conv.fallback is not None:
                conv.fallback += 1
            elif conv.fallback is not None:
                c.fallbacks[conv.fallback] += 1
                conv.fallback = None
        if failed:
            # by the judging rule where the judge gave one (its reasons quote each line: one group apiece)
            c.failures[rec.evidence.rule if rec.evidence else rec.reason or "(no reason)"] += 1
            cheap = cheap if cheap is not None else self.cheap  # the record's own spec's, when given
            if role in cheap if cheap is not None else role != lead:
                c.failing_worker_turns += 1
        conv.prev_role = role
        # tokens: as recorded, and as they would be with the other warmth
        prompt, read, write = rec.prompt_tokens, rec.cache_read_tokens, rec.cache_write_tokens
        was_warm = conv.prev_key is not None and rec.model == conv.prev_model
        a_read, a_write = flipped(prompt, read, write, was_warm, conv.prev_cached)
        key = (role, rec.model)
        index = (conv.prev_key, key, was_warm)
        sums = (conv.sums if conv.summary is not None else self.sums).get(index)
        if sums is None:
            sums = (conv.sums if conv.summary is not None else self.sums).setdefault(index, [0] * 8)
        sums[0] += max(0, prompt - read - write)
        sums[1] += read
        sums[2] += write
        sums[3] += max(0, prompt - a_read - a_write)
        sums[4] += a_read
        sums[5] += a_write
        sums[6] += rec.completion_tokens
        sums[7] += rec.unreported
        if conv.timeline and len(c.roles) < DETAIL_TURNS:
            c.roles.append(role)
            c.failed.append(failed)
            if conv.detail is not None:
                number = conv.indexes.setdefault(index, len(conv.indexes))
                fresh, a_fresh = max(0, prompt - read - write), max(0, prompt - a_read - a_write)
                conv.detail.extend(
                    (number, fresh, read, write, a_fresh, a_read, a_write, rec.completion_tokens, rec.unreported)
                )
        conv.prev_key, conv.prev_model, conv.prev_cached = key, rec.model, read + write

    def models_used(self, role: str) -> str | None:
        """The model the records show `role` using most."""
        counts = Counter({m: n for (r, m), n in self.used.items() if r == role})
        return counts.most_common(1)[0][0] if counts else None

    def finish(
        self,
        prices: PriceMap,
        serving: Callable[[Key], str] = lambda key: key[1],
        *,
        lead_model: str | None = None,
        worker_model: str | None = None,
        note: str = "",
    ) -> Summary:
        """The summary, with `serving(key)` the model that serves a key's turns (default: as recorded)."""

        def cost(sums: dict[Index, list[int]], model: str | None) -> float | None:
            value: float | None = 0.0
            for (prev, key, was_warm), v in sums.items():
                m = model or serving(key)
                now_warm = prev is not None and (model is not None or serving(prev) == m)
                fresh, read, write = v[0:3] if now_warm == was_warm else v[3:6]
                value = _add(value, None if v[7] else _price(prices, m, fresh, read, write, v[6]))
            return value

        convs = []
        for conv in self.open.values():
            if conv.fallback is not None:  # the conversation ended in a fallback
                (conv.summary or self.total).fallbacks[conv.fallback] += 1
                conv.fallback = None
            c = conv.summary
            if c is None:
                continue
            c.cost, c.all_lead, c.all_worker = (
                cost(conv.sums, None),
                None if lead_model is None else cost(conv.sums, lead_model),
                None if worker_model is None else cost(conv.sums, worker_model),
            )
            if conv.detail is not None:
                indexes, d = list(conv.indexes), conv.detail
                c.costs = [cost({indexes[d[i]]: list(d[i + 1 : i + 9])}, None) for i in range(0, len(d), 9)]
            self.total.merge(c)
            convs.append(c)
        if not self.per_conversation:
            t = self.total
            t.cost = cost(self.sums, None)
            t.all_lead = None if lead_model is None else cost(self.sums, lead_model)
            t.all_worker = None if worker_model is None else cost(self.sums, worker_model)
        models = {m for (_role, m) in self.used} | {m for m in (lead_model, worker_model) if m}
        unpriced = sorted(m for m in models if prices.rates(m) is None)
        return Summary(lead_model, worker_model, convs, self.total, note, unpriced=unpriced)


def _price(prices: PriceMap, model: str, fresh: int, read: int, write: int, completion: int) -> float | None:
    """Dollars for token sums on one model (what `PriceMap.price` gives, summed: prices are linear)."""
    r = prices.rates(model)
    if r is None or (read and r[2] is None):
        return None
    return fresh * r[0] + read * (r[2] or 0.0) + write * r[3] + completion * r[1]


def summarise(
    records: Iterable[TraceRecord],
    prices: PriceMap | None = None,
    *,
    lead_model: str | None = None,
    worker_model: str | None = None,
    lead_role: str | None = None,
    worker_role: str | None = None,
    success: str = "turn_completed",
    note: str = "",
    spec: Spec | None = None,
    also: Sequence[Spec] = (),
) -> Summary:
    """Summaries per conversation and in total. The lead/worker models default to the model each
    role used most in the records. With `spec` (the one the trace ran), a record's state and
    transition say what its turn did, and its roles which are the lead and the worker
    (`lead_and_worker`, unless `lead_role`/`worker_role` say); without, or for a record without them,
    the roles that served do. `also`: the specs a gateway rolled out while it wrote the trace; a record
    is read with the first of `spec` and these that knows its role, outcome, state and transition."""
    lead, worker = lead_and_worker(spec)
    lead_role, worker_role = lead_role or lead, worker_role or worker
    tally = Tally(lead_role=lead_role, cheap=cheap_roles(spec))
    # each spec with its failing events and cheap roles, worked out once
    specs = [(s, failing_events(s), cheap_roles(s)) for s in ([spec, *also] if spec is not None else [])]
    chosen: dict[str, Any] = {}  # a conversation is served under one spec: read each with the one it began with
    named = {x[0].rules_hash: x for x in reversed(specs)}  # the spec a record names (the first of equal ones)
    for r in records:
        if not specs:
            tally.add(r, r.role, r.outcome != success, None)
            continue
        s, failing, cheap = specs[0]
        if also:
            if r.spec in named:  # the record says which judged it
                s, failing, cheap = chosen[r.session] = named[r.spec]
            else:
                s, failing, cheap = chosen.get(r.session) or specs[0]
                if not reads(s, r):  # none that reads it: the first says why
                    s, failing, cheap = chosen[r.session] = next((x for x in specs if reads(x[0], r)), specs[0])
        tally.add(r, r.role, event_of(s, r) in failing, _moved(s, r), cheap)
    return tally.finish(
        prices or PriceMap(),
        lead_model=lead_model or tally.models_used(lead_role),
        worker_model=worker_model or tally.models_used(worker_role),
        note=note,
    )


def lead_and_worker(spec: Spec | None) -> tuple[str, str]:
    """The roles the cost figures call the lead and the worker ("lead alone", "worker alone"): the spec's
    first role that is not cheap and its first cheap one, whatever their names (the gateway's lead is
    the same); "lead" and "worker" without a spec."""
    if spec is None:
        return "lead", "worker"
    roles = spec.roles
    lead = next((r for r, d in roles.items() if not d.cheap), next(iter(roles)))
    others = [r for r in roles if r != lead]
    worker = next((r for r in others if roles[r].cheap), others[0] if others else lead)  # one role: both
    return lead, worker


def cheap_roles(spec: Spec | None) -> frozenset[str] | None:
    """The roles whose failed turns are a failing worker's: the spec's cheap ones, or every role but the
    lead in a spec that marks none (None without a spec: every role but "lead")."""
    if spec is None:
        return None
    lead = lead_and_worker(spec)[0]
    return frozenset(r for r, d in spec.roles.items() if d.cheap) or frozenset(spec.roles) - {lead}


# What a trace written by hand or by another tool may call a turn's outcome besides the spec's events.
_SUCCESS, _FAILURE = ("turn_completed", "ok", "success"), ("failure", "fail", "failed")


def failing_events(spec: Spec) -> frozenset[str]:
    """The events a failed turn fires: the failure event and those the spec maps a failure kind to. An
    event fired by hand (a reset) or an environment problem's own event is no failure of the turn's."""
    kinds, (success, failure) = spec.judging.kind_events, spec.judging.events
    # (a spec may map a failure kind to the success event: its turns count nothing)
    return frozenset({failure, *(kinds[k] for k in FAILURE_KINDS)} - {success})


def spec_problem(spec: Spec, rec: TraceRecord, *, replayed: bool = False) -> str | None:
    """Why a record cannot be of spec `spec` (a role or an outcome it does not know), or None. Counted as
    a failure, a typo would invent fallbacks. `replayed` (simulate): a judged turn's kind says what the
    spec fires, so an outcome of the recording spec's own is no problem."""
    if rec.role not in spec.roles:
        return (
            f"role {rec.role!r} is not a role of spec '{spec.name}'{did_you_mean(rec.role, spec.roles)}: a typo in "
            "the trace, or a trace of another spec"
        )
    if rec.outcome in spec.events or rec.outcome in _SUCCESS or rec.outcome in _FAILURE:
        return None
    if replayed and kind_event(spec, rec) is not None:
        return None
    return (
        f"outcome {rec.outcome!r} is not an event of spec '{spec.name}'"
        f"{did_you_mean(rec.outcome, [*spec.events, *_SUCCESS, *_FAILURE])}: a typo in the trace, or a trace of "
        "another spec"
    )


def reads(spec: Spec, rec: TraceRecord) -> bool:
    """Whether `rec` can be a record of `spec`: its role and outcome, and its state and transition's."""
    t = rec.transition
    states = [rec.state, *((t.source, t.dest) if t is not None else ())]
    return spec_problem(spec, rec) is None and all(x is None or x in spec.states for x in states)


def kind_event(spec: Spec, rec: TraceRecord) -> str | None:
    """The event `spec` fires for a judged turn's recorded kind (None: fired by hand, or recorded without
    a kind: its outcome says)."""
    if rec.kind == "ok":
        return spec.judging.events[0]
    return spec.judging.kind_events.get(rec.kind) if rec.kind is not None else None


def event_of(spec: Spec, rec: TraceRecord) -> str:
    """The spec's event a record's outcome names; an outcome or a role the spec does not know is an error
    naming the record (the readers of a file name its line: `spec_problem`)."""
    if (problem := spec_problem(spec, rec)) is not None:
        raise ValueError(f"session {rec.session!r} turn {rec.turn}: {problem}")
    if rec.outcome in spec.events:
        return rec.outcome
    return spec.judging.events[rec.outcome in _FAILURE]


def _moved(spec: Spec, rec: TraceRecord) -> Move | None:
    t = rec.transition
    if t is None or rec.state is None:
        return None
    try:
        return move(spec, t.source, t.dest, rec.outcome, rec.state, rec.role)
    except KeyError as exc:
        raise ValueError(
            f"session {rec.session!r} turn {rec.turn}: {exc} is not a state, event or role of spec '{spec.name}': "
            "pass the spec the trace was recorded with (--spec; once per spec a gateway rolled out while it wrote)"
        ) from None


_COLOURS = [
    "#2b6cb0",
    "#dd6b20",
    "#38a169",
    "#805ad5",
    "#d53f8c",
    "#00a3c4",
    "#975a16",
    "#718096",
    "#e53e3e",
    "#319795",
]


def _cost_svg(summary: Summary) -> str:
    """Cumulative cost over turns (recorded or simulated), one line per conversation (first 12)."""
    w, h, left, bottom, right = 770, 260, 74, 30, 140
    series = []
    for c in summary.conversations[:COSTED]:
        acc, pts = 0.0, []
        for v in c.costs:
            if v is None:
                break
            acc += v
            pts.append(acc)
        series.append((c.session, pts))
    top = max((p[-1] for _, p in series if p), default=0.0) or 1.0
    n = max((len(p) for _, p in series), default=1) or 1

    def y(v: float) -> float:  # one formula each, for the ticks and the lines
        return (h - bottom) - (h - bottom - 10) * v / top

    def x(t: int) -> float:
        return left + (w - left - right) * t / n

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h + 20}' role='img'>",
        f"<line x1='{left}' y1='{h - bottom}' x2='{w - right}' y2='{h - bottom}' stroke='#444'/>",
        f"<line x1='{left}' y1='10' x2='{left}' y2='{h - bottom}' stroke='#444'/>",
        f"<text x='{(w - right + left) // 2}' y='{h - 2}' font-size='11' text-anchor='middle'>turn</text>",
        f"<text x='12' y='{(h - bottom) // 2}' font-size='11' text-anchor='middle' "
        f"transform='rotate(-90 12 {(h - bottom) // 2})'>cost so far, $</text>",
    ]
    for v in (0.0, top / 2, top):  # three ticks a reader can read a line's level against
        parts.append(f"<line x1='{left - 3}' y1='{y(v):.1f}' x2='{w - right}' y2='{y(v):.1f}' stroke='#eee'/>")
        parts.append(f"<text x='{left - 6}' y='{y(v) + 4:.1f}' font-size='11' text-anchor='end'>{v:.3g}</text>")
    for t in sorted({1, max(1, n // 2), n}):
        parts.append(f"<text x='{x(t):.1f}' y='{h - bottom + 14}' font-size='11' text-anchor='middle'>{t}</text>")
    for k, (name, pts) in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        dash = "" if k < len(_COLOURS) else " stroke-dasharray='5 3'"  # a colour used again: dashed
        xy = " ".join(f"{x(t + 1):.1f},{y(v):.1f}" for t, v in enumerate(pts))
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2'{dash} points='{xy}'/>")
        unknown = " (cost unknown)" if len(pts) < len(summary.conversations[k].costs) else ""
        shown = _shown(name)
        label = html.escape((shown if len(shown) <= 24 else "…" + shown[-23:]) + unknown)  # ids share long prefixes
        parts.append(
            f"<text x='{w - right + 10}' y='{24 + 14 * k}' font-size='11' fill='{colour}'>"
            f"<title>{html.escape(shown)}</title>{label}</text>"
        )
    parts.append("</svg>")
    if len(summary.conversations) > COSTED:
        parts.append(f"<p>(the first {COSTED} of {len(summary.conversations)} conversations)</p>")
    return "".join(parts)


_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _shown(session: str) -> str:
    """A session id as a page shows it: a client's bidi controls written out, not obeyed (U+202E would
    show one id as another)."""
    return _BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", session)


def role_fills(summary: Summary) -> dict[str, str]:
    """Each role's colour as the spec's diagrams draw it (cheap roles green, the others warm); a role
    the spec does not name takes the next diagram colour no role has."""
    from ..diagram.graph import COLOURS

    out = dict(summary.colours)
    spare = [c for c in COLOURS if c not in out.values()] or COLOURS
    for i, role in enumerate(sorted({r for c in summary.conversations for r in c.roles} - set(out))):
        out[role] = spare[i % len(spare)]
    return out


def _timeline_svg(c: ConversationSummary, fills: dict[str, str], longest: int, width: int = 640) -> str:
    """One cell per turn, coloured by the role that served it; a failed turn has a dark mark. Cells are
    as wide in every conversation (`longest` turns fill the width), so lengths compare."""
    cell = max(1.0, (width - 10) / max(1, longest))
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='22'>"]
    for t, (role, failed) in enumerate(zip(c.roles, c.failed, strict=True)):
        colour = fills[role]
        parts.append(f"<rect x='{t * cell:.1f}' y='2' width='{cell:.1f}' height='14' fill='{colour}'/>")
        if failed:
            parts.append(f"<rect x='{t * cell:.1f}' y='16' width='{cell:.1f}' height='4' fill='#222'/>")
    parts.append("</svg>")
    return "".join(parts)


def _html(summary: Summary, title: str) -> str:
    esc = html.escape
    rows = summary.rows()
    names = {"cost": f"$ {summary.kind}", "all_lead": "$ lead alone", "all_worker": "$ worker alone"}
    head = "".join(f"<th>{esc(names.get(k, k.replace('_', ' ')))}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc('' if v is None else (dollars(v) if isinstance(v, float) else _shown(str(v))))}</td>"
            for v in r.values()
        )
        + "</tr>"
        for r in rows
    )
    fills = role_fills(summary)
    served = sorted({r for c in summary.conversations for r in c.roles}, key=list(fills).index)
    legend = " ".join(f"<span style='background:{fills[r]};color:#000;padding:1px 6px'>{esc(r)}</span>" for r in served)
    longest = max((len(c.roles) for c in summary.conversations[:DETAILED]), default=1)
    timelines = "".join(
        f"<div class='tl'><code title='{esc(_shown(c.session))}'><span dir='ltr'>{esc(_shown(c.session))}</span></code>"
        f"{_timeline_svg(c, fills, longest)}</div>"
        for c in summary.conversations[:DETAILED]
    )
    more = f"<p>(first 50 of {len(summary.conversations)} conversations)</p>" if len(summary.conversations) > 50 else ""
    diagram = f"<h2>Spec</h2><div>{summary.diagram}</div>" if summary.diagram else ""
    longer = [c.session for c in summary.conversations[:DETAILED] if sum(c.turns.values()) > DETAIL_TURNS]
    cut = (
        f"<p>The first {DETAIL_TURNS:,} turns of each conversation are drawn; "
        f"{esc(', '.join(longer[:3]))}{' and others' if len(longer) > 3 else ''} went on longer (the table holds "
        "their whole cost and turns).</p>"
        if longer
        else ""
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + esc(title)
        + "</title><style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}tr:last-child{font-weight:bold}"
        ".tl{display:flex;align-items:center;gap:8px}"
        # a gateway's ids share a long prefix (the key's tag): the end of a long one is shown, all of it on hover
        ".tl code{width:200px;flex:none;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;direction:rtl;"
        "text-align:left}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>{esc(summary.note)}</p>"
        f"<p>lead alone: <code>{esc(summary.lead_model or 'unknown')}</code>; worker alone: "
        f"<code>{esc(summary.worker_model or 'unknown')}</code>. Costs in dollars; the lead/worker-alone columns "
        "keep a model's prompt cache across the whole conversation.</p>"
        f"<table><tr>{head}</tr>{body}</table>{f'<p>{esc(known)}</p>' if (known := _known_line(summary)) else ''}"
        f"<h2>Cost over turns (cumulative, {summary.kind})</h2>{_cost_svg(summary)}{cut}"
        f"<h2>Who served each turn</h2><p>{legend} &nbsp;a dark mark under a turn: it failed</p>{timelines}{more}"
        f"{diagram}</body></html>"
    )


def _known_line(summary: Summary) -> str:
    """The known part of an unknown total, as one line ("": none)."""
    k = summary.known()
    if k is None:
        return ""
    share = f", {100 * k['cost'] / k['all_lead']:.1f}% of the lead alone" if k["all_lead"] else ""
    return (
        f"the {k['conversations']} of {k['of']} conversations whose costs are all known: {summary.kind} cost "
        f"{dollars(k['cost'])}, lead alone {dollars(k['all_lead'])}{share}"
    )


def dollars(v: float) -> str:
    """Dollars to 4 places; less than a tenth of a cent in 2 significant digits (0.0000 read as free)."""
    return f"{v:.2g}" if 0 < abs(v) < 0.001 else f"{v:.4f}"


def printable(text: str) -> str:
    """`text` for one cell of a text table: control characters (newlines, escapes) shown escaped."""
    return text if text.isprintable() else json.dumps(text, ensure_ascii=False)[1:-1]
