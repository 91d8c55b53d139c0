"""The one accumulator of streamed Chat Completions chunks (what the gateway's relay, its LiteLLM
streams, its Responses events and the LiteLLM adapter judge a streamed turn on), robust to what real
OpenAI-compatible servers send. Pure: no SDK, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["OpenAIStream", "merged_name"]

Message = dict[str, Any]


def merged_name(have: str, piece: str, declared: frozenset[str] = frozenset()) -> str:
    """A streamed tool call's name so far, with the name `piece` of one more chunk.

    Servers send the name once (OpenAI), the whole name again in every chunk (llama.cpp), the name so far
    in every chunk, or (rarely) pieces to append. A piece that starts with what came before is the name
    again, whole or grown (so "read_file" twice is "read_file", not "read_fileread_file"); any other
    piece is appended. When the request declared its tools, a piece that reads either way is taken the
    way that gives a declared name.
    """
    if not have:
        return piece
    if not piece.startswith(have):
        return have + piece
    if piece not in declared and have + piece in declared:
        return have + piece
    return piece


class OpenAIStream:
    """Rebuilds the assistant message, usage and finish reason from Chat Completions chunks.

    Tool calls are keyed by their index (a call without one continues the last call, or opens the next
    when it brings a new id); names are merged by `merged_name`; usage may come in any chunk, before or
    after the finish chunk, or never (`usage` stays None: unknown, not zero); `content: null` is no text.
    """

    def __init__(self, tools: Iterable[str] = ()) -> None:
        self.content: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        # each call's argument pieces, joined once in reply(): a string grown in a dict is copied at every
        # chunk (quadratic: 400 KB of arguments in 4-character deltas held the event loop for a second)
        self.pieces: dict[int, list[str]] = {}
        self.usage: Any = None
        self.finish_reason: str | None = None
        self.model: Any = None  # the model the chunks name
        self.done = False
        self.declared = frozenset(tools)

    def _slot(self, call: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        index = call.get("index")
        if type(index) is not int:
            last = max(self.calls, default=-1)
            new = last < 0 or (call.get("id") and self.calls[last]["id"] not in (None, call["id"]))
            index = last + 1 if new else last
        slot = self.calls.get(index)
        if slot is None:
            slot = self.calls[index] = {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        return index, slot

    def add(self, event: Any) -> list[tuple[int, dict[str, Any], str]]:
        """Take one chunk; the tool calls it touched, as (index, call so far, arguments it added). A call's
        arguments so far are in `pieces`; its `arguments` are whole once `reply()` is asked."""
        touched: list[tuple[int, dict[str, Any], str]] = []
        if not isinstance(event, Mapping):
            return touched
        if event.get("model"):
            self.model = event["model"]
        if isinstance(event.get("usage"), Mapping) and event["usage"]:
            self.usage = event["usage"]
        for choice in event.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                self.done = True
                self.finish_reason = str(choice["finish_reason"])
            delta = choice.get("delta")
            if not isinstance(delta, Mapping):
                continue
            if isinstance(delta.get("content"), str) and delta["content"]:
                self.content.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, Mapping):
                    continue
                index, slot = self._slot(call)
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function")
                fn = fn if isinstance(fn, Mapping) else {}
                if isinstance(fn.get("name"), str) and fn["name"]:
                    slot["function"]["name"] = merged_name(slot["function"]["name"], fn["name"], self.declared)
                args: str = fn["arguments"] if isinstance(fn.get("arguments"), str) else ""
                self.pieces.setdefault(index, []).append(args)
                touched.append((index, slot, args))
        return touched

    def reply(self) -> Message:
        msg: Message = {"role": "assistant", "content": "".join(self.content) or None}
        if self.calls:
            for i, slot in self.calls.items():
                slot["function"]["arguments"] = "".join(self.pieces.get(i, ()))
            msg["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        return msg
