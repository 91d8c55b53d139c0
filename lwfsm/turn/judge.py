"""Judging a served turn from what came after it: the detectors.

A detector takes (reply N as an OpenAI-shaped assistant message, the messages that came after it,
the tools offered) and returns the reason the turn failed, or None. Every detector is bounded on
any reply: a code block larger than `MAX_BLOCK` characters is not parsed (no verdict from it), and
one too deeply nested for the parser is a failure ("too deeply nested to parse").
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..spec import Spec

__all__ = [
    "MAX_BLOCK",
    "Detector",
    "default_detectors",
    "malformed_tool_calls",
    "matching",
    "pattern_detectors",
    "reported_failures",
    "text_of",
    "tool_reported_error",
    "unparsable_code",
    "what_came_after",
]

Message = Mapping[str, Any]
Detector = Callable[[Message, Sequence[Message], Sequence[Message]], "str | None"]

MAX_BLOCK = 200_000  # characters of one code block worth parsing; larger ones are not judged by parsing
_SCAN = 2_000_000  # characters of a message scanned for patterns and code blocks


def text_of(message: Message) -> str:
    """The text of a message: a string, or the text of its content parts (OpenAI and Anthropic shapes)."""
    content = message.get("content")
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, Mapping):
                inner = p.get("content")  # an Anthropic tool_result block nests its own content
                parts.append(str(p.get("text", "")) if inner is None else text_of({"content": inner}))
            elif isinstance(p, str):
                parts.append(p)
        return " ".join(parts)[:_SCAN]
    return str(content or "")[:_SCAN]


def what_came_after(messages: Sequence[Message]) -> list[Message]:
    """The messages after the last assistant message: tool results, the user's reaction."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "assistant":
            return list(messages[i + 1 :])
    return list(messages)


def malformed_tool_calls(reply: Message, after: Sequence[Message], tools: Sequence[Message]) -> str | None:
    offered = {(t.get("function") or {}).get("name") for t in tools}
    for call in reply.get("tool_calls") or []:
        fn = call.get("function") or {}
        name, args = fn.get("name"), fn.get("arguments")
        if tools and name not in offered:
            return f"tool call to unknown tool {name!r}"
        if isinstance(args, str) and len(args) > MAX_BLOCK:
            continue
        try:
            json.loads(args or "{}")
        except (TypeError, ValueError, RecursionError):
            return f"tool call {name!r} has arguments that are not valid JSON"
    return None


_CODE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.S)


def unparsable_code(reply: Message, after: Sequence[Message], tools: Sequence[Message]) -> str | None:
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


def matching(role: str, patterns: Sequence[str], says: str) -> Detector:
    """A detector: the first message of `role` after the reply containing one of `patterns`."""
    lowered = [p.lower() for p in patterns]

    def detect(reply: Message, after: Sequence[Message], tools: Sequence[Message]) -> str | None:
        for msg in after:
            if msg.get("role") == role:
                text = text_of(msg).lower()
                hit = next((p for p in lowered if p in text), None)
                if hit:
                    return f"{says} ({hit!r})"
        return None

    return detect


def tool_reported_error(reply: Message, after: Sequence[Message], tools: Sequence[Message]) -> str | None:
    """A tool result the agent itself marked as an error (Anthropic's `is_error: true`, kept on the message)."""
    for msg in after:
        if msg.get("role") == "tool" and msg.get("is_error") is True:
            return "tool result marked is_error"
    return None


# Agents that run tests and linters themselves report the output as a *user* message. aider: "I ran
# this command: ... And got this output: ..." after a failing test (a passing one leaves no trace), and
# "# Fix any errors below, if possible." with the linter's output after a failed lint.
RAN_A_COMMAND = ("i ran this command", "and got this output")
LINT_FAILED = ("# fix any errors below",)


def reported_failures(patterns: Sequence[str]) -> Detector:
    """A detector: a user message reporting a command's output that shows an error (`patterns`), or a
    failed lint."""
    lowered = [p.lower() for p in patterns]

    def detect(reply: Message, after: Sequence[Message], tools: Sequence[Message]) -> str | None:
        for msg in after:
            if msg.get("role") != "user":
                continue
            text = text_of(msg).lower()
            if any(m in text for m in LINT_FAILED):
                return "the agent reports lint errors"
            if any(m in text for m in RAN_A_COMMAND):
                hit = next((p for p in lowered if p in text), None)
                if hit:
                    return f"the agent reports a failed command ({hit!r})"
        return None

    return detect


def pattern_detectors(spec: Spec) -> list[Detector]:
    """Detectors for the spec's `judging:` patterns (the shipped defaults when it has none)."""
    return [
        matching("tool", spec.judging.tool_error_patterns, "tool result reports an error"),
        reported_failures(spec.judging.tool_error_patterns),
        matching("user", spec.judging.correction_patterns, "the user corrects the model"),
    ]


def default_detectors(spec: Spec) -> list[Detector]:
    return [malformed_tool_calls, unparsable_code, tool_reported_error, *pattern_detectors(spec)]
