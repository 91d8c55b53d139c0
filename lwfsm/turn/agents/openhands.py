"""OpenHands: `execute_bash` results end `[The command completed with exit code N.]`; a command that
stops printing is reported as having no new output after 30 seconds; the file editor's failures start
`ERROR:`. Raw runs are LiteLLM completion logs (`messages`, `fncall_messages`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Message, Outcome, Reader, Transcript, text_of

__all__ = ["READER"]

_SHELL = {"execute_bash", "execute_command", "bash", "run", "execute_ipython_cell"}


class OpenHands(Reader):
    name = "openhands"
    human_turns = False  # benchmark runs; OpenHands' own "please continue" nudges are not corrections

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        return "OpenHands" in system[:6000] or "execute_bash" in system[:20000]

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        text = text_of(msg)
        if tool in _SHELL:
            o = super().outcome(i, msg, tool, args)
            o.runs = True
            if str(args.get("is_input", "")).lower() == "true":
                # keys sent to a running process: what it prints and its status are that process's
                o.status, o.runs, o.timed_out = None, False, False
            return o
        # the file editor, think, finish...: its argument "command" is an editor verb, not a shell command
        failed = text.lstrip().startswith(("ERROR:", "Error:")) or "did not appear verbatim" in text[:500]
        return Outcome(message=i, text=text, tool=tool, flagged=failed, runs=False)


READER = OpenHands()


def transcript(data: bytes, locator: Mapping[str, Any]) -> Transcript:
    """(reply, after, tools) at `index` of a completion log's (function-calling) messages."""
    doc = json.loads(data)
    messages = doc.get("fncall_messages") or doc["messages"]
    i = int(locator.get("index", locator.get("event_id", -1)))
    if not 0 <= i < len(messages) or messages[i].get("role") != "assistant":
        raise LookupError(f"message {i} is not the model's reply")
    after = []
    for m in messages[i + 1 :]:
        if m.get("role") == "assistant":
            break
        after.append(m)
    tools = doc.get("kwargs", {}).get("tools") or []
    return Transcript("openai", [*messages[:i], messages[i], *after], i, tools if isinstance(tools, list) else [])
