"""The OpenAI Chat Completions codec: a reply read back, a whole reply as a stream, messages as every
OpenAI-compatible server takes them. The stream accumulator is `lwfsm.turn.stream` (the LiteLLM
adapter shares it). Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...turn.stream import OpenAIStream, merged_name
from .base import Answer, Request, Stream
from .common import Message, appended, first_user_text, part_text

__all__ = ["CODEC", "ChatStream", "OpenAIStream", "merged_name", "openai_chunk", "openai_reply", "plain_chat"]


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


def openai_chunk(response: Mapping[str, Any]) -> bytes:
    """A whole Chat Completions response as the SSE bytes of a stream: one chunk (its message as the
    delta, its finish reason and usage), then `[DONE]` (for an upstream that ignored `stream: true`)."""
    choices = response.get("choices")
    choice: Mapping[str, Any] = (
        choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
    )
    found = choice.get("message")
    message: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    delta: Message = {"role": "assistant", "content": message.get("content")}
    if isinstance(message.get("tool_calls"), list):
        delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(message["tool_calls"]) if isinstance(c, Mapping)]
    chunk = {
        "id": response.get("id"),
        "object": "chat.completion.chunk",
        "model": response.get("model"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason") or "stop"}],
        "usage": response.get("usage"),
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"


def plain_chat(messages: Sequence[Any]) -> list[Any]:
    """Chat Completions messages as every OpenAI-compatible server takes them, for the requests the
    gateway translates (never a Chat client's own bytes): an assistant message's null or missing content
    is "" (llama.cpp's server answers 500 to null, and to missing, where OpenAI, vLLM and LiteLLM take
    ""), and a system message given as text parts is one string, the parts' texts one per line (a list
    is a 500 there too). Other messages are returned as they are (the same objects)."""
    out = []
    for m in messages:
        if isinstance(m, Mapping) and m.get("role") == "assistant" and m.get("content") is None:
            m = {**m, "content": ""}
        elif isinstance(m, Mapping) and m.get("role") == "system" and isinstance(m.get("content"), list):
            parts = m["content"]
            if all(isinstance(b, Mapping) and b.get("type") == "text" for b in parts):
                m = {**m, "content": part_text(parts)}
        out.append(m)
    return out


class ChatStream(OpenAIStream):
    """`OpenAIStream` (the accumulator the LiteLLM adapter shares) giving its answer as the neutral type."""

    def answer(self) -> Answer:
        return Answer(self.reply(), self.usage, self.finish_reason, self.model)


class Chat:
    """The Chat Completions codec (`lwfsm.gateway.codec.base.Codec`)."""

    name, params, provider = "openai", "chat", "openai"

    def read_request(self, body: Mapping[str, Any]) -> Request:
        messages = body.get("messages") or []
        system = "\n".join(
            first_user_text([{"role": "user", "content": m.get("content")}])
            for m in messages
            if m.get("role") in ("system", "developer")
        )
        rest = {k: v for k, v in body.items() if k not in ("messages", "tools", "model", "stream")}
        return Request(messages, body.get("tools") or [], system, bool(body.get("stream")), body.get("model"), rest)

    def read_answer(self, body: Mapping[str, Any]) -> Answer:
        reply, usage = openai_reply(body)
        choices = body.get("choices")
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
        finish = first.get("finish_reason")
        return Answer(reply, usage, str(finish) if finish else None, body.get("model"))

    def stream(self, tools: Iterable[str] = ()) -> Stream:
        return ChatStream(tools)

    def events(self, body: Mapping[str, Any]) -> bytes:
        return openai_chunk(body)

    def error_body(self, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
        return {"error": {"message": message, "type": kind or "invalid_request_error", "param": None, "code": None}}

    def stream_error(self, status: int, message: str) -> bytes:
        return b"data: " + json.dumps(self.error_body(status, message, "api_error")).encode() + b"\n\n"

    def note(self, messages: Sequence[Any], note: str) -> list[Any]:
        """A user message after the last one."""
        return [*messages, {"role": "user", "content": note}]

    def with_note(self, raw: bytes, note: str) -> bytes | None:
        return appended(raw, json.dumps({"role": "user", "content": note}).encode())

    def endpoint(self, base: str | None, key: str | None, sent: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return (base or "https://api.openai.com/v1").rstrip("/") + "/chat/completions", headers

    def usage_follows(self, body: Mapping[str, Any]) -> bool:
        # The usage chunk comes after the finish chunk when the client asked for one.
        options = body.get("stream_options")
        return isinstance(options, Mapping) and bool(options.get("include_usage"))


CODEC = Chat()
