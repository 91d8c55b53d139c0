"""`lwfsm report`: what recorded (or simulated) conversations did and what they cost.

Per conversation and in total: turns by role, switches (a turn served by another role than the
turn before), fallbacks entered (a run of turns of the lead role that starts after a turn of
another role) and their lengths, failures by reason, the turns a failing worker kept serving
(failed turns of a non-lead role), and the actual cost against the same conversations served by
the lead alone and by the worker alone, cache effect included (`pricing.cache_split`).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .pricing import PriceMap, cache_split
from .records import TraceRecord, conversations

__all__ = ["ConversationSummary", "Summary", "most_used_model", "summarise"]


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


@dataclass
class ConversationSummary:
    session: str
    turns: Counter[str] = field(default_factory=Counter)  # by role
    switches: int = 0
    fallbacks: list[int] = field(default_factory=list)  # length of each fallback entered
    failures: Counter[str] = field(default_factory=Counter)  # by reason
    failing_worker_turns: int = 0
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
        self.fallbacks += other.fallbacks
        self.failures.update(other.failures)
        self.failing_worker_turns += other.failing_worker_turns
        self.cost = _add(self.cost, other.cost)
        self.all_lead = _add(self.all_lead, other.all_lead)
        self.all_worker = _add(self.all_worker, other.all_worker)

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "turns": self.total_turns,
            "turns_by_role": dict(self.turns),
            "switches": self.switches,
            "fallbacks": len(self.fallbacks),
            "fallback_lengths": self.fallbacks,
            "failures": sum(self.failures.values()),
            "failures_by_reason": dict(self.failures),
            "failing_worker_turns": self.failing_worker_turns,
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "note": self.note,
            "lead_model": self.lead_model,
            "worker_model": self.worker_model,
            "conversations": [c.to_dict() for c in self.conversations],
            "total": self.total.to_dict(),
        }

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

    def text(self) -> str:
        def money(v: float | None) -> str:
            return "unknown" if v is None else f"{v:.4f}"

        header = [
            "session",
            "turns",
            "by role",
            "switches",
            "fallbacks (lengths)",
            "failures",
            "$ actual",
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
            out.append("failures by reason: " + "; ".join(f"{k} {v}" for k, v in reasons))
        t = self.total
        if t.cost is not None and t.all_lead:
            out.append(f"actual cost is {100 * t.cost / t.all_lead:.1f}% of the lead alone")
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


def _lengths(lengths: list[int]) -> str:
    """Fallback lengths as a list when short, else as mean and max."""
    if len(lengths) <= 8:
        return " ".join(map(str, lengths))
    return f"mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}"


def most_used_model(records: Iterable[TraceRecord], role: str) -> str | None:
    counts = Counter(r.model for r in records if r.role == role)
    return counts.most_common(1)[0][0] if counts else None


def summarise(
    records: Sequence[TraceRecord],
    prices: PriceMap | None = None,
    *,
    lead_model: str | None = None,
    worker_model: str | None = None,
    lead_role: str = "lead",
    worker_role: str = "worker",
    success: str = "turn_completed",
    note: str = "",
) -> Summary:
    """Summaries per conversation and in total. The lead/worker models default to the model each
    role used most in the records."""
    prices = prices or PriceMap()
    lead_model = lead_model or most_used_model(records, lead_role)
    worker_model = worker_model or most_used_model(records, worker_role)
    total = ConversationSummary("total")
    convs = []
    for session, turns in conversations(records).items():
        c = ConversationSummary(session)
        usages = [r.usage for r in turns]
        recorded = [r.model for r in turns]
        prev_role: str | None = None
        in_fallback = False
        for r, u in zip(turns, usages, strict=True):
            c.turns[r.role] += 1
            if prev_role is not None and r.role != prev_role:
                c.switches += 1
            if r.role == lead_role and prev_role is not None and prev_role != lead_role:
                c.fallbacks.append(1)  # the lead is back after another role: a fallback entered
                in_fallback = True
            elif r.role == lead_role and in_fallback:
                c.fallbacks[-1] += 1
            elif r.role != lead_role:
                in_fallback = False
            if r.outcome != success:
                c.failures[r.reason or "(no reason)"] += 1
                if r.role != lead_role:
                    c.failing_worker_turns += 1
            p = prices.price(r.model, u)
            c.costs.append(p)
            c.roles.append(r.role)
            c.failed.append(r.outcome != success)
            c.cost = _add(c.cost, p)
            prev_role = r.role
        for attr, model in (("all_lead", lead_model), ("all_worker", worker_model)):
            if model is None:
                setattr(c, attr, None)
                continue
            alone = cache_split(usages, recorded, [model] * len(turns))
            value: float | None = 0.0
            for u in alone:
                value = _add(value, prices.price(model, u))
            setattr(c, attr, value)
        total.merge(c)
        convs.append(c)
    return Summary(lead_model, worker_model, convs, total, note)


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
    """Cumulative actual cost over turns, one line per conversation (first 12)."""
    w, h, left, bottom, right = 760, 260, 60, 30, 140
    series = []
    for c in summary.conversations[:12]:
        acc, pts = 0.0, []
        for v in c.costs:
            if v is None:
                break
            acc += v
            pts.append(acc)
        series.append((c.session, pts))
    top = max((p[-1] for _, p in series if p), default=0.0) or 1.0
    n = max((len(p) for _, p in series), default=1) or 1
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h + 20}' role='img'>",
        f"<line x1='{left}' y1='{h - bottom}' x2='{w - right}' y2='{h - bottom}' stroke='#444'/>",
        f"<line x1='{left}' y1='10' x2='{left}' y2='{h - bottom}' stroke='#444'/>",
        f"<text x='{left - 6}' y='16' font-size='11' text-anchor='end'>${top:.3g}</text>",
        f"<text x='{left - 6}' y='{h - bottom}' font-size='11' text-anchor='end'>$0</text>",
        f"<text x='{(w - right + left) // 2}' y='{h - 8}' font-size='11' text-anchor='middle'>turn (1..{n})</text>",
    ]
    for k, (name, pts) in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        xy = " ".join(
            f"{left + (w - left - right) * (t + 1) / n:.1f},{(h - bottom) - (h - bottom - 10) * v / top:.1f}"
            for t, v in enumerate(pts)
        )
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{xy}'/>")
        parts.append(
            f"<text x='{w - right + 10}' y='{24 + 14 * k}' font-size='11' fill='{colour}'>{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _timeline_svg(c: ConversationSummary, roles: list[str], width: int = 640) -> str:
    """One cell per turn, coloured by the role that served it; a failed turn has a dark mark."""
    n = len(c.roles) or 1
    cell = max(1.0, (width - 10) / n)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='22'>"]
    for t, (role, failed) in enumerate(zip(c.roles, c.failed, strict=True)):
        colour = _COLOURS[roles.index(role) % len(_COLOURS)]
        parts.append(f"<rect x='{t * cell:.1f}' y='2' width='{cell:.1f}' height='14' fill='{colour}'/>")
        if failed:
            parts.append(f"<rect x='{t * cell:.1f}' y='16' width='{cell:.1f}' height='4' fill='#222'/>")
    parts.append("</svg>")
    return "".join(parts)


def _html(summary: Summary, title: str) -> str:
    esc = html.escape
    rows = summary.rows()
    head = "".join(f"<th>{esc(k.replace('_', ' '))}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc('' if v is None else (f'{v:.4f}' if isinstance(v, float) else str(v)))}</td>" for v in r.values()
        )
        + "</tr>"
        for r in rows
    )
    roles = sorted({r for c in summary.conversations for r in c.roles})
    legend = " ".join(
        f"<span style='background:{_COLOURS[i % len(_COLOURS)]};color:#fff;padding:1px 6px'>{esc(r)}</span>"
        for i, r in enumerate(roles)
    )
    timelines = "".join(
        f"<div class='tl'><code>{esc(c.session)}</code>{_timeline_svg(c, roles)}</div>"
        for c in summary.conversations[:50]
    )
    more = f"<p>(first 50 of {len(summary.conversations)} conversations)</p>" if len(summary.conversations) > 50 else ""
    diagram = f"<h2>Spec</h2><div>{summary.diagram}</div>" if summary.diagram else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + esc(title)
        + "</title><style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}tr:last-child{font-weight:bold}"
        ".tl{display:flex;align-items:center;gap:8px}.tl code{width:110px;overflow:hidden}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>{esc(summary.note)}</p>"
        f"<p>lead alone: <code>{esc(summary.lead_model or 'unknown')}</code>; worker alone: "
        f"<code>{esc(summary.worker_model or 'unknown')}</code>. Costs in dollars; the lead/worker-alone columns "
        "keep a model's prompt cache across the whole conversation.</p>"
        f"<table><tr>{head}</tr>{body}</table>"
        f"<h2>Cost over turns (cumulative, actual)</h2>{_cost_svg(summary)}"
        f"<h2>Who served each turn</h2><p>{legend} &nbsp;a dark mark under a turn: it failed</p>{timelines}{more}"
        f"{diagram}</body></html>"
    )


def printable(text: str) -> str:
    """`text` for one cell of a text table: control characters (newlines, escapes) shown escaped."""
    return text if text.isprintable() else json.dumps(text, ensure_ascii=False)[1:-1]
