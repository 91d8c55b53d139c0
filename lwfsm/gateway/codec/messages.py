"""The Anthropic Messages codec: a request's conversation in OpenAI shape (for judging), a reply read
back whole or from stream events, a whole reply as stream events. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .common import Message, _text


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


def _anthropic_usage(usage: Any) -> dict[str, int] | None:
    """Anthropic's usage in the ledger's names; None when the reply reported none (unknown, not zero)."""
    if not isinstance(usage, Mapping) or not any(k in usage for k in ("input_tokens", "output_tokens")):
        return None
    u = usage

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


class AnthropicStream:
    """Rebuilds the assistant message (OpenAI shape) and usage from Anthropic stream events."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}
        self.model: Any = None  # the model message_start names
        self.done = False

    def add(self, event: Any) -> None:
        if not isinstance(event, Mapping):
            return
        kind = event.get("type")
        if kind == "message_start":
            self.usage.update((event.get("message") or {}).get("usage") or {})
            self.model = (event.get("message") or {}).get("model")
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
