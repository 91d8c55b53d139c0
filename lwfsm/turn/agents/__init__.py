"""Per-agent readers of a turn's outcome, one small module each (see `base` for the order of the
rules). Adding an agent: a module with a `Reader` subclass (its `name`, `detect`, and whatever it
reads differently) and a `transcript` function for its raw format, listed in `READERS`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import aider, claude_code, codex, goose, openhands, swe_agent
from .base import KINDS, PRECEDENCE, Evidence, Finding, Kind, Outcome, Reader, text_of

__all__ = ["AGENTS", "KINDS", "READERS", "Evidence", "Finding", "Kind", "Outcome", "Reader", "detect", "reader"]

GENERIC = Reader()
# In the order `detect` tries them; the generic reader is the last resort.
READERS: dict[str, Reader] = {
    r.name: r
    for r in (
        claude_code.READER,
        codex.READER,
        aider.READER,
        openhands.READER,
        swe_agent.READER,
        swe_agent.MINI,
        goose.READER,
    )
}
AGENTS = (*READERS, GENERIC.name)
TRANSCRIPTS = {
    "claude_code": claude_code.transcript,
    "codex": codex.transcript,
    "aider": aider.transcript,
    "openhands": openhands.transcript,
    "swe_agent": swe_agent.transcript,
    "mini_swe_agent": swe_agent.transcript_mini,
}


def reader(agent: str | None) -> Reader:
    if agent is None or agent == GENERIC.name:
        return GENERIC
    try:
        return READERS[agent]
    except KeyError:
        raise ValueError(f"unknown agent {agent!r}: lwfsm reads {', '.join(AGENTS)}") from None


def detect(messages: Sequence[Mapping[str, Any]], headers: Mapping[str, str] | None = None) -> str:
    """The agent that sent these messages: by its headers where it names itself, else by their shape."""
    if headers:
        ua = (headers.get("user-agent") or "").lower()
        if "x-claude-code-session-id" in headers or ua.startswith("claude-cli"):
            return "claude_code"
        if (
            ua.startswith("codex")
            or "x-codex-turn-metadata" in headers
            or headers.get("originator", "").startswith("codex")
        ):
            return "codex"
        if "goose-session-id" in headers or "agent-session-id" in headers:
            return "goose"
    system = "\n".join(text_of(m)[:60000] for m in messages if m.get("role") in ("system", "developer"))
    for r in READERS.values():
        if r.detect(messages, system):
            return r.name
    return GENERIC.name


def verdict_of(findings: Sequence[Finding]) -> Finding | None:
    """The finding that decides a turn: the first kind in PRECEDENCE present, its first evidence."""
    for kind in PRECEDENCE:
        for f in findings:
            if f.kind == kind:
                return f
    return None
