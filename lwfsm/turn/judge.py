"""Judging a served turn from what came after it.

`judge` asks the calling agent's reader (`lwfsm.turn.agents`) for findings (rejections and
corrections, then structured outcomes, then anchored words), adds those of the spec's own anchored
patterns and of any detectors a program plugs in, and returns one `Judgement`: the kind of outcome
and the evidence for it. The spec's `judging.kinds` then says which event each kind fires.

A detector is a callable `(reply, after, tools) -> reason | None`; a reason is a task failure.
Detectors are bounded on any input: a code block larger than `MAX_BLOCK` characters is not parsed.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .agents import Evidence, Finding, Kind, detect, reader, verdict_of
from .agents.base import TAIL, is_object, text_of, tool_calls
from .agents.claude_code import placeholder

__all__ = [
    "MAX_BLOCK",
    "Detector",
    "Judgement",
    "judge",
    "last_reply",
    "malformed_tool_calls",
    "text_of",
    "unparsable_code",
    "what_came_after",
]

Message = Mapping[str, Any]
Detector = Callable[[Message, Sequence[Message], Sequence[Message]], "str | None"]

MAX_BLOCK = 200_000  # characters of one code block worth parsing; larger ones are not judged by parsing


@dataclass(frozen=True)
class Judgement:
    """The outcome of one turn: its kind, the agent whose format was read, and the evidence."""

    kind: Kind
    agent: str
    evidence: Evidence | None = None

    @property
    def reason(self) -> str | None:
        """One line for logs and traces; None for a turn that went well."""
        if self.evidence is None:
            return None
        return f"{self.kind.replace('_', ' ')}: {self.evidence}"


def last_reply(messages: Sequence[Message], passing: bool = True) -> int | None:
    """Where the reply judged is: the last assistant message, passing over Claude Code's placeholder
    after a real one (`passing`: the pending reply is not itself those words)."""
    last = None
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "assistant":
            if not passing or not placeholder(messages[i]):
                return i
            last = i if last is None else last
    return last  # only placeholders: the last one, as if it were a reply


def what_came_after(messages: Sequence[Message], passing: bool = True) -> list[Message]:
    """The messages after the last assistant message (the reply judged): tool results, the user's
    reaction. Claude Code's placeholder is no reply: a refusal before it is the reply's outcome."""
    i = last_reply(messages, passing)
    if i is None:
        return list(messages)
    return [m for m in messages[i + 1 :] if not (passing and placeholder(m))]


def before_reply(messages: Sequence[Message], passing: bool = True) -> Sequence[Message]:
    """The messages before the last assistant message (the reply being judged)."""
    i = last_reply(messages, passing)
    return () if i is None else messages[:i]


def malformed_tool_calls(reply: Message, after: Sequence[Message], tools: Sequence[Message]) -> str | None:
    for f in reader(None).malformed(reply, tools):
        name = repr(f.evidence.excerpt)
        if f.evidence.rule.endswith("unknown_tool"):
            return f"tool call to unknown tool {name}"
        return f"tool call {name} has arguments that are not valid JSON"
    return None


_CODE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.S)


def unparsable_code(reply: Message, after: Sequence[Message], tools: Sequence[Message]) -> str | None:
    """A Python or JSON block in a reply that does not parse (for agents that answer in text)."""
    for match in _CODE.finditer(text_of(reply)):
        lang, body = match.group(1).lower(), match.group(2)
        if lang not in ("python", "py", "json") or len(body) > MAX_BLOCK:
            continue
        try:
            if lang == "json":
                json.loads(body)
            else:
                ast.parse(body)
        except (SyntaxError, ValueError) as exc:
            return f"{lang} code block does not parse: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        except (RecursionError, MemoryError):
            return f"{lang} code block is too deeply nested to parse"
    return None


def _patterns(
    after: Sequence[Message], errors: Sequence[str], corrections: Sequence[str], human: Callable[[Message], bool]
) -> list[Finding]:
    """The spec's own patterns, anchored: an error pattern starts a line among the last lines of a
    tool result; a correction pattern starts a person's message."""
    out: list[Finding] = []
    errs = tuple(p.lower() for p in errors)
    fixes = tuple(p.lower() for p in corrections)
    for i, msg in enumerate(after):
        text = text_of(msg)
        if errs and msg.get("role") == "tool":
            lines = text.splitlines()
            for n in range(max(0, len(lines) - TAIL), len(lines)):
                if lines[n].strip().lower().startswith(errs):
                    out.append(Finding("task_failure", Evidence("spec.tool_error_patterns", i, n + 1, lines[n][:160])))
                    break
        if fixes and human(msg) and text.strip().lower().startswith(fixes):
            out.append(Finding("user_correction", Evidence("spec.correction_patterns", i, 1, text.strip()[:80])))
    return out


# What the judge reads after the reply, in all: real agents cut each result to tens of KB (Claude Code's
# command output at 30,000 characters), and judging a crafted 32 MB of results took 2.6 s.
BUDGET = 4_000_000


def _within(after: list[Message]) -> list[Message]:
    """The messages after the reply up to BUDGET characters of text (the first always). The message that
    goes over is read by its start and end, as much of them as the budget has left: a command's status
    and its last lines are there (a failed run whose output was padded past the budget read as ok)."""
    read = 0
    for i, msg in enumerate(after):
        content = msg.get("content")
        text = content if isinstance(content, str) else text_of(msg)
        if read + len(text) > BUDGET and i > 0:
            left = (BUDGET - read) // 2
            if left < 1000:
                return after[:i]
            return [*after[:i], {**msg, "content": f"{text[:left]}\n[... cut by lwfsm's judge ...]\n{text[-left:]}"}]
        read += len(text)
    return after


def judge(
    reply: Message,
    after: Sequence[Message],
    tools: Sequence[Message] = (),
    *,
    agent: str | None = None,
    messages: Sequence[Message] | None = None,
    headers: Mapping[str, str] | None = None,
    detectors: Sequence[Detector] = (),
    error_patterns: Sequence[str] = (),
    correction_patterns: Sequence[str] = (),
) -> Judgement:
    """The judgement on `reply` from the messages after it. `agent` names the reader; without it the
    agent is told from `headers` and the shape of `messages` (the whole request's, else `after`)."""
    # Only objects are messages: a client's hostile shapes are skipped, never a crash of the judge.
    # (`type() is dict` first, inline: a whole conversation is filtered on every call)
    after = _within([m for m in after if type(m) is dict or is_object(m)])
    tools = [t for t in tools if type(t) is dict or is_object(t)]
    if messages is not None:
        messages = [m for m in messages if type(m) is dict or is_object(m)]
    reply = reply if is_object(reply) else {}
    name = agent or detect(messages if messages is not None else after, headers)
    r = reader(name)
    before = before_reply(messages, passing=not placeholder(reply)) if messages is not None else ()
    findings = list(r.findings(reply, after, tools, before))
    findings += _patterns(after, error_patterns, correction_patterns, r.human)
    if name == "generic" and not tool_calls(reply):
        said = unparsable_code(reply, after, tools)
        if said:
            findings.append(Finding("task_failure", Evidence("unparsable_code", None, None, said)))
    for detector in detectors:
        said = detector(reply, after, tools)
        if said:
            rule = getattr(detector, "__name__", type(detector).__name__)
            findings.append(Finding("task_failure", Evidence(f"detector.{rule}", None, None, said)))
    found = verdict_of(findings)
    if found is None:
        return Judgement("ok", name)
    return Judgement(found.kind, name, found.evidence)
