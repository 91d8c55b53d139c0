"""goose: its shell tool (`shell`; `developer__shell` before its developer tools became flat) ends a
failed command's output with `Command exited with code N` or `Command timed out`; its editor says
when a replacement did not apply. goose flags such results as errors, but neither its OpenAI nor its
Anthropic request format carries the flag: their words are all the gateway sees. A tool result that
was an error of the call itself comes as `The tool call returned the following error:` (OpenAI's
format) or `Error: ...` (with `is_error`, Anthropic's)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .base import _STATUS_WORDS, Message, Outcome, Reader, text_of

__all__ = ["READER"]

# What goose's own tools say of a call that did not do what was asked (block/goose, the developer
# extension's edit and write tools; its other tools' errors begin "Error:").
_FAILED = (
    "The tool call returned the following error:",
    "No match found for the specified text.",
    "Failed to read ",
    "Failed to write ",
    "Failed to create directory ",
    "Error:",
    "ERROR:",
    "Execution failed",
)
_MATCHES = re.compile(r"Found \d+ matches\. Please provide more context")


def _shell(tool: str | None) -> bool:
    return tool is not None and (tool == "shell" or tool.endswith("__shell"))


class Goose(Reader):
    name = "goose"
    STATUS = re.compile(_STATUS_WORDS[:-1] + r"|Command exited with code )(-?\d+)", re.M)

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        head = system[:4000].lower()
        return "agent called goose" in head or (
            "goose" in head and "developer__" in system + "".join(str(m.get("tool_calls", "")) for m in messages[-6:])
        )

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        o = super().outcome(i, msg, tool, args)
        if tool is not None and not _shell(tool):
            o.command, o.runs, o.timed_out = None, False, False
        text = text_of(msg).lstrip()
        o.flagged = o.flagged or text.startswith(_FAILED) or _MATCHES.match(text) is not None
        return o


READER = Goose()
