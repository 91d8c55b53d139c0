"""The Anthropic Messages codec: a request's conversation in OpenAI shape (for judging), a reply read
back whole or from stream events, a whole reply as stream events. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .base import Answer, Request
from .common import Message, appended, first_user_text, members, messages_span, part_text

__all__ = [
    "CODEC",
    "AnthropicStream",
    "anthropic_events",
    "anthropic_messages",
    "anthropic_reply",
    "anthropic_tools",
    "finish_reason",
]


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
            msg: Message = {"role": "assistant", "content": part_text(content)}
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
                        "content": part_text(b.get("content")),
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
    reply: Message = {"role": "assistant", "content": part_text(content)}
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
        self.stop_reason: Any = None  # as message_delta gives it
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
            # pieces, joined once in reply(): a string grown in a dict is copied at every delta (quadratic:
            # 400 KB of arguments in 4-character deltas held the event loop for a second)
            block["_text"], block["_json"] = [str(block.get("text") or "")], []
            self.blocks[int(event.get("index", 0))] = block
        elif kind == "content_block_delta":
            block = self.blocks.setdefault(int(event.get("index", 0)), {"type": "text", "_text": [], "_json": []})
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["_text"].append(str(delta.get("text", "")))
            elif delta.get("type") == "input_json_delta":
                block["_json"].append(str(delta.get("partial_json", "")))
        elif kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True

    def reply(self) -> tuple[Message, Any]:
        texts, calls = [], []
        for i in sorted(self.blocks):
            b = self.blocks[i]
            if b.get("type") == "text":
                texts.append("".join(b["_text"]))
            elif b.get("type") == "tool_use":
                # the arguments as streamed: a malformed stream stays malformed, for the detector to see
                args = "".join(b["_json"]) or json.dumps(b.get("input") or {})
                calls.append(
                    {"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": args}}
                )
        msg: Message = {"role": "assistant", "content": "\n".join(texts)}
        if calls:
            msg["tool_calls"] = calls
        return msg, _anthropic_usage(self.usage)

    def answer(self) -> Answer:
        reply, usage = self.reply()
        return Answer(reply, usage, finish_reason(self.stop_reason), self.model)


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


_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def finish_reason(stop_reason: Any) -> str | None:
    """Anthropic's stop reason in OpenAI's names (one without a counterpart as it is)."""
    return _FINISH.get(stop_reason, stop_reason) if isinstance(stop_reason, str) and stop_reason else None


class Messages:
    """The Anthropic Messages codec (`lwfsm.gateway.codec.base.Codec`)."""

    name, params, provider = "anthropic", "messages", "anthropic"

    def read_request(self, body: Mapping[str, Any]) -> Request:
        sysval = body.get("system")
        system = sysval if isinstance(sysval, str) else first_user_text([{"role": "user", "content": sysval}])
        rest = {k: v for k, v in body.items() if k not in ("messages", "tools", "model", "stream", "system")}
        messages, tools = anthropic_messages(body), anthropic_tools(body.get("tools"))
        return Request(messages, tools, system, bool(body.get("stream")), body.get("model"), rest)

    def read_answer(self, body: Mapping[str, Any]) -> Answer:
        reply, usage = anthropic_reply(body)
        return Answer(reply, usage, finish_reason(body.get("stop_reason")), body.get("model"))

    def stream(self, tools: Iterable[str] = ()) -> AnthropicStream:
        return AnthropicStream()  # a tool's name comes once, in its content_block_start

    def events(self, body: Mapping[str, Any]) -> bytes:
        return anthropic_events(body)

    def error_body(self, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
        names = {
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            413: "request_too_large",
            429: "rate_limit_error",
            529: "overloaded_error",
        }
        # Anthropic's types: a client's mistake is an invalid request, the server's an API error
        default = "invalid_request_error" if 400 <= status < 500 else "api_error"
        return {"type": "error", "error": {"type": kind or names.get(status, default), "message": message}}

    def stream_error(self, status: int, message: str) -> bytes:
        return b"event: error\ndata: " + json.dumps(self.error_body(status, message)).encode() + b"\n\n"

    def note(self, messages: Sequence[Any], note: str) -> list[Any]:
        """A text block at the end of the last user message's content (after its tool_result blocks),
        or a user message of its own when the last message is not the user's."""
        block = {"type": "text", "text": note}
        last = messages[-1] if messages else None
        if not isinstance(last, Mapping) or last.get("role") != "user":
            return [*messages, {"role": "user", "content": [block]}]
        content = last.get("content")
        blocks = (
            list(content) if isinstance(content, list) else ([{"type": "text", "text": content}] if content else [])
        )
        return [*messages[:-1], {**last, "content": [*blocks, block]}]

    def with_note(self, raw: bytes, note: str) -> bytes | None:
        found = messages_span(raw)
        if found is None:
            return None
        elements = found[1]
        block = json.dumps({"type": "text", "text": note}).encode()
        last = json.loads(raw[elements[-1][1] : elements[-1][2]]) if elements else None
        if not isinstance(last, dict) or last.get("role") != "user":
            return appended(raw, b'{"role":"user","content":[' + block + b"]}")
        fields = members(raw, elements[-1][1])
        content = [m for m in fields[1] if m[0] == b'"content"'] if fields else []
        if len(content) != 1:
            return None
        _, a, b = content[0]
        if raw[a] == ord("["):  # blocks: one more at the end
            more = b"," if isinstance(last["content"], list) and last["content"] else b""
            return raw[: b - 1] + more + block + raw[b - 1 :]
        # a string: the same text as the first block, then the note
        text = b'{"type":"text","text":' + raw[a:b] + b"}," if last["content"] else b""
        return raw[:a] + b"[" + text + block + b"]" + raw[b:]

    def endpoint(self, base: str | None, key: str | None, sent: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        headers = {"content-type": "application/json"}
        url = (base or "https://api.anthropic.com").rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        if key:
            headers["x-api-key"] = key
        headers["anthropic-version"] = sent.get("anthropic-version", "2023-06-01")
        if sent.get("anthropic-beta"):
            headers["anthropic-beta"] = sent["anthropic-beta"]
        return url + "/messages", headers

    def usage_follows(self, body: Mapping[str, Any]) -> bool:
        return False  # message_delta carries the usage and comes before message_stop


CODEC = Messages()
