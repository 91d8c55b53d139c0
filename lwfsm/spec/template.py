"""Handoff note templates: `{name}` placeholders only, read with `string.Formatter().parse`.

A template names facts lwfsm has when a switch happens (`FACTS`), and the spec's counters and
params. Attribute and index fields (`{a.b}`, `{a[0]}`), conversions (`{a!r}`) and format specs
(`{a:>10}`) are refused: a note is filled with `str.format_map` over a dict of plain strings and
integers, so nothing in a spec can reach an object's attributes. Never `eval`.
"""

from __future__ import annotations

import string

__all__ = ["FACTS", "MAX_NOTE", "TemplateError", "placeholders"]

# What a handoff note can say, besides the spec's counters and params.
FACTS = {
    "from_state": "the state the conversation left",
    "to_state": "the state it entered (the handoff's dest)",
    "from_role": "the role that served until now",
    "to_role": "the role that serves from this call on",
    "turn": "the turn this call serves (the first of the new role)",
    "event": "the event that made the switch",
    "evidence": "one line per failed turn since the previous switch: turn, role, kind, rule, excerpt",
    "prior_evidence": "the evidence of the switch before this one (for recovery: why the lead was called in)",
}
MAX_NOTE = 2000  # characters of a note, template and rendered: a handoff is a few lines, not a transcript


class TemplateError(ValueError):
    """What is wrong with a template's placeholder."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def placeholders(text: str) -> tuple[list[str], list[TemplateError]]:
    """The `{name}` placeholders of a template, and what is wrong with the others."""
    names: list[str] = []
    errors: list[TemplateError] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return [], [TemplateError(f"{exc}; write a literal brace doubled: {{{{ or }}}}")]
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field == "" or not field.isidentifier():
            what = "an attribute or index" if any(c in field for c in ".[") else "not a name"
            errors.append(TemplateError(f"placeholder '{{{field}}}' is {what}: write a plain {{name}}"))
        elif conversion or spec:
            message = f"placeholder '{{{field}}}' has a conversion or format spec: write a plain {{{field}}}"
            errors.append(TemplateError(message))
        else:
            names.append(field)
    return names, errors
