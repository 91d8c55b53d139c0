"""goose: tools named `<extension>__<tool>` (`developer__shell`, `developer__text_editor`); errors
come back as tool results whose text starts with an error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import Message, Outcome, Reader, text_of

__all__ = ["READER"]


class Goose(Reader):
    name = "goose"

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        return "goose" in system[:4000].lower() and "developer__" in system + "".join(
            str(m.get("tool_calls", "")) for m in messages[-6:]
        )

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        o = super().outcome(i, msg, tool, args)
        if tool is not None and not tool.endswith("__shell"):
            o.command, o.runs, o.timed_out = None, False, False
        o.flagged = o.flagged or text_of(msg).lstrip().startswith(("Error:", "Execution failed", "ERROR:"))
        return o


READER = Goose()
