"""Codex CLI: Responses API; a command's output says `Process exited with code N` (older releases:
JSON with `metadata.exit_code`); `apply_patch` reports a patch that did not apply."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .base import Finding, Message, Outcome, Reader, text_of

__all__ = ["READER"]

_PATCH_FAILED = re.compile(
    r"(apply_patch verification failed|Failed to apply patch|patch (did not|does not) apply|"
    r"Failed to find expected lines|Invalid patch)",
)
# Codex's own answers to a call it could not make.
_REFUSED_CALL = re.compile(r"^(unsupported call: |failed to parse function arguments|\w+ failed: Unknown process id)")
_STILL_RUNNING = re.compile(r"^Process running with session ID \d+", re.M)


class Codex(Reader):
    name = "codex"

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        return "Codex" in system[:4000] and "apply_patch" in system[:60000]

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        text = text_of(msg)
        if text.startswith("{"):
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
                code = doc["metadata"].get("exit_code")
                body = str(doc.get("output", ""))
                o = super().outcome(i, {**msg, "content": body}, tool, args)
                o.status = code if isinstance(code, int) else o.status
                return o
        o = super().outcome(i, msg, tool, args)
        if _REFUSED_CALL.match(text):
            o.command, o.runs, o.flagged = None, False, True
            return o
        if _STILL_RUNNING.search(text[:400]) and o.status is None and tool != "write_stdin":
            o.timed_out = True  # still running when Codex stopped waiting for it
        if tool == "apply_patch" or _PATCH_FAILED.search(text[:2000]):
            o.command, o.runs = None, False
            o.flagged = o.flagged or bool(_PATCH_FAILED.search(text[:2000]))
        return o

    def malformed(self, reply: Message, tools: Sequence[Message]) -> Iterator[Finding]:
        # Codex offers namespaced and built-in tools that a Chat Completions tool list cannot name:
        # only arguments that are not JSON are judged, never the tool's name.
        yield from super().malformed(reply, ())


READER = Codex()
