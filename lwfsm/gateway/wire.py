"""What the gateway reads from the two wire protocols, as pure functions (no HTTP, no SDK).

Judging runs on OpenAI-shaped messages (`lwfsm.turn.judge`); an Anthropic Messages request is
normalised to that shape for judging only, and the request bytes go upstream as the client sent
them (the model replaced). Replies are read back into one OpenAI-shaped assistant message, whole
or from the SSE events of a stream, with their usage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AnthropicStream",
    "anthropic_events",
    "OpenAIStream",
    "SSEReader",
    "anthropic_messages",
    "anthropic_reply",
    "anthropic_tools",
    "first_user_text",
    "with_model",
    "openai_reply",
]

Message = dict[str, Any]


def _text(blocks: Any) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        return ""
    out = []
    for b in blocks:
        if isinstance(b, Mapping) and b.get("type") == "text":
            out.append(str(b.get("text", "")))
        elif isinstance(b, str):
            out.append(b)
    return "\n".join(out)


def anthropic_messages(body: Mapping[str, Any]) -> list[Message]:
    """An Anthropic Messages request's conversation in OpenAI shape (for judging only).

    `tool_result` blocks become `tool` messages (with `is_error` kept), `tool_use` blocks become
    `tool_calls` with JSON arguments, text blocks become text. The system prompt is not a turn.
    """
    out: list[Message] = []
    for m in body.get("messages") or ():
        if not isinstance(m, Mapping):
            continue
        role, content = m.get("role"), m.get("content")
        if role == "assistant":
            msg: Message = {"role": "assistant", "content": _text(content)}
            calls = [
                {
                    "id": b.get("id"),
                    "type": "function",
                    "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input", {}))},
                }
                for b in (content if isinstance(content, list) else ())
                if isinstance(b, Mapping) and b.get("type") == "tool_use"
            ]
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
        elif role == "user":
            if not isinstance(content, list):
                out.append({"role": "user", "content": str(content or "")})
                continue
            texts = []
            for b in content:
                if isinstance(b, Mapping) and b.get("type") == "tool_result":
                    tool: Message = {
                        "role": "tool",
                        "tool_call_id": b.get("tool_use_id"),
                        "content": _text(b.get("content")),
                    }
                    if b.get("is_error") is True:
                        tool["is_error"] = True
                    out.append(tool)
                elif isinstance(b, Mapping) and b.get("type") == "text":
                    texts.append(str(b.get("text", "")))
                elif isinstance(b, str):
                    texts.append(b)
            if texts:
                out.append({"role": "user", "content": "\n".join(texts)})
    return out


def anthropic_tools(tools: Any) -> list[Message]:
    """Anthropic tool definitions in OpenAI shape (what the malformed-call detector reads)."""
    return [
        {"type": "function", "function": {"name": t.get("name"), "parameters": t.get("input_schema", {})}}
        for t in (tools if isinstance(tools, list) else ())
        if isinstance(t, Mapping) and t.get("name")
    ]


def openai_reply(response: Mapping[str, Any]) -> tuple[Message | None, Any]:
    """(assistant message, usage) of a Chat Completions response; message None when it has no choice."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None, response.get("usage")
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        return None, response.get("usage")
    reply: Message = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        reply["tool_calls"] = list(message["tool_calls"])
    return reply, response.get("usage")


def _anthropic_usage(usage: Any) -> dict[str, int]:
    u = usage if isinstance(usage, Mapping) else {}

    def num(k: str) -> int:
        v = u.get(k)
        return v if type(v) is int and v > 0 else 0

    read, write = num("cache_read_input_tokens"), num("cache_creation_input_tokens")
    return {
        "prompt_tokens": num("input_tokens") + read + write,  # the ledger counts all input, cached included
        "completion_tokens": num("output_tokens"),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }


def anthropic_reply(response: Mapping[str, Any]) -> tuple[Message | None, Any]:
    """(assistant message in OpenAI shape, usage in OpenAI names) of an Anthropic Messages response."""
    content = response.get("content")
    if not isinstance(content, list):
        return None, _anthropic_usage(response.get("usage"))
    reply: Message = {"role": "assistant", "content": _text(content)}
    calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input", {}))},
        }
        for b in content
        if isinstance(b, Mapping) and b.get("type") == "tool_use"
    ]
    if calls:
        reply["tool_calls"] = calls
    return reply, _anthropic_usage(response.get("usage"))


class SSEReader:
    """Splits a byte stream into the JSON payloads of its `data:` lines (as bytes arrive)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[Any]:
        self._buf += chunk
        out: list[Any] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                return out
            line, self._buf = self._buf[:i].rstrip(b"\r"), self._buf[i + 1 :]
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data and data != b"[DONE]":
                    try:
                        out.append(json.loads(data))
                    except ValueError:
                        pass  # not ours to judge: the client gets the bytes as they came


class OpenAIStream:
    """Rebuilds the assistant message and usage from Chat Completions chunks."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.done = False

    def add(self, event: Any) -> None:
        if not isinstance(event, Mapping):
            return
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                self.done = True
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(str(delta["content"]))
            for call in delta.get("tool_calls") or ():
                slot = self.calls.setdefault(
                    int(call.get("index", 0)),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                if fn.get("name"):
                    slot["function"]["name"] += fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"] += fn["arguments"]

    def reply(self) -> Message:
        msg: Message = {"role": "assistant", "content": "".join(self.content) or None}
        if self.calls:
            msg["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        return msg


class AnthropicStream:
    """Rebuilds the assistant message (OpenAI shape) and usage from Anthropic stream events."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}
        self.done = False

    def add(self, event: Any) -> None:
        if not isinstance(event, Mapping):
            return
        kind = event.get("type")
        if kind == "message_start":
            self.usage.update((event.get("message") or {}).get("usage") or {})
        elif kind == "content_block_start":
            block = dict(event.get("content_block") or {})
            block["_json"] = ""
            self.blocks[int(event.get("index", 0))] = block
        elif kind == "content_block_delta":
            block = self.blocks.setdefault(int(event.get("index", 0)), {"type": "text", "text": "", "_json": ""})
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + str(delta.get("text", ""))
            elif delta.get("type") == "input_json_delta":
                block["_json"] += str(delta.get("partial_json", ""))
        elif kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True

    def reply(self) -> tuple[Message, Any]:
        texts, calls = [], []
        for i in sorted(self.blocks):
            b = self.blocks[i]
            if b.get("type") == "text":
                texts.append(str(b.get("text", "")))
            elif b.get("type") == "tool_use":
                # the arguments as streamed: a malformed stream stays malformed, for the detector to see
                args = b["_json"] or json.dumps(b.get("input") or {})
                calls.append(
                    {"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": args}}
                )
        msg: Message = {"role": "assistant", "content": "\n".join(texts)}
        if calls:
            msg["tool_calls"] = calls
        return msg, _anthropic_usage(self.usage)


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for m in messages:
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else _text(c)
    return ""


def anthropic_events(message: Mapping[str, Any]) -> bytes:
    """A whole Anthropic message as the SSE events of a stream (for replies that were not streamed)."""
    head = {k: v for k, v in message.items() if k != "content"}
    head["content"] = []
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": head})]
    for i, block in enumerate(message.get("content") or ()):
        if block.get("type") == "tool_use":
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block.get("input", {}))}
        else:
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": str(block.get("text", ""))}
        events += [
            ("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": i}),
        ]
    usage = message.get("usage") or {}
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": None},
                "usage": {"output_tokens": usage.get("output_tokens", 0)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')


def with_model(raw: bytes, body: Mapping[str, Any], model: str) -> bytes:
    """The request bytes with the top-level model replaced, without re-serialising the body.

    Inside a JSON string a quote is escaped, so `"model": "..."` in the bytes is always a key; when
    there is exactly one such key-value and its value is the body's model, it is the top-level one.
    Otherwise the body is serialised again.
    """
    found = list(_MODEL.finditer(raw))
    if len(found) == 1:
        m = found[0]
        try:
            same = json.loads(b'"' + m.group(1) + b'"') == body.get("model")
        except ValueError:
            same = False
        if same:
            return raw[: m.start(1)] + json.dumps(model)[1:-1].encode() + raw[m.end(1) :]
    return json.dumps({**body, "model": model}).encode()
