"""Handoff notes: what the model taking over at a switch is told, rendered once for every front end.

The spec's `handoffs:` give templates (`lwfsm.spec.template`); this fills one in from the facts of a
switch: the states and roles, the event, the turn, the spec's counters and params, and the evidence
of the failed turns behind it (kept in the conversation's value, so any process can render it).
A note is bounded (`MAX_NOTE` characters; `MAX_LINES` evidence lines of `MAX_LINE` characters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..spec import Spec
from ..spec.template import MAX_NOTE

__all__ = ["MAX_LINE", "MAX_LINES", "MAX_NOTE", "evidence_line", "join", "render", "tokens"]

MAX_LINE = 200  # characters of one evidence line
MAX_LINES = 5  # evidence lines kept per switch: the most recent ones


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def evidence_line(turn: int, role: str, kind: str | None, evidence: Any, reason: str | None) -> str:
    """One failed turn on one line: turn, role, kind, rule, excerpt (newlines folded)."""
    if evidence is not None:
        said = evidence.rule + (f': "{evidence.excerpt}"' if evidence.excerpt else "")
    else:
        said = reason or ""
    text = f"- turn {turn} ({role}): {(kind or 'failure').replace('_', ' ')}" + (f", {said}" if said else "")
    return _cut(" ".join(text.split()), MAX_LINE)


def render(
    spec: Spec,
    note: str,
    *,
    source: str,
    dest: str,
    event: str,
    turn: int,
    counters: Mapping[str, int],
    evidence: list[str],
    prior: list[str],
) -> str:
    """A handoff template filled in. Its placeholders were checked when the spec loaded, so every
    name is here; values are plain text and integers (`format_map` reads no attribute)."""
    facts: dict[str, Any] = {
        **spec.param_values,
        **counters,
        "from_state": source,
        "to_state": dest,
        "from_role": spec.states[source].role,
        "to_role": spec.states[dest].role,
        "turn": turn,
        "event": event,
        "evidence": "\n".join(evidence[-MAX_LINES:]) or "(no failed turn recorded)",
        "prior_evidence": "\n".join(prior[-MAX_LINES:]) or "(no earlier switch recorded)",
    }
    return _cut(note.format_map(facts).strip(), MAX_NOTE)


def join(*notes: str | None) -> str | None:
    """Notes for one call, in order, bounded together; None when there is none."""
    given = [n for n in notes if n]
    return _cut("\n\n".join(given), MAX_NOTE) if given else None


def tokens(note: str | None) -> int:
    """An estimate of a note's tokens (characters / 4), for traces and reports; not a tokenizer's count."""
    return 0 if not note else max(1, len(note) // 4)
