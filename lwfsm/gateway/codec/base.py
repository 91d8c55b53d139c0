"""The neutral types the codecs meet at, and the interface each codec implements.

A request is read into OpenAI Chat shape (what judging reads: `lwfsm.turn.judge`); an answer, whole or
accumulated from a stream, is one OpenAI-shaped assistant message with its usage in OpenAI's names
(None: the upstream reported none, which is unknown, not zero) and its finish reason in OpenAI's names.
The bytes a client sent still go upstream as they are: the neutral type is for judging and recording.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .common import Message

__all__ = ["Answer", "Codec", "Request", "Stream", "noted"]


@dataclass(frozen=True)
class Request:
    """A client's request, neutral: the conversation and tools in OpenAI Chat shape."""

    messages: list[Message]
    tools: list[Message]
    system: str  # the system prompt's text ("" when none)
    stream: bool
    model: Any
    params: dict[str, Any]  # the rest of the body, as the client sent it


@dataclass(frozen=True)
class Answer:
    """A model's answer, neutral: message None when the body held none."""

    message: Message | None
    usage: Any  # OpenAI's names (prompt_tokens, completion_tokens, ...); None: unknown
    finish_reason: str | None  # OpenAI's names: stop, tool_calls, length, ...
    model: Any = None


class Stream(Protocol):
    """An accumulator of one protocol's stream events (parsed `data:` payloads)."""

    done: bool  # the stream's end came (a cut stream is never judged)
    usage: Any  # the usage so far, in the protocol's names (None or empty: none yet)

    def add(self, event: Any) -> Any: ...

    def answer(self) -> Answer: ...


class Codec(Protocol):
    """One wire protocol, as the gateway reads and writes it."""

    name: str  # the gateway's key for it: "openai" (Chat Completions), "anthropic" (Messages), "responses"
    params: str  # its name in `lwfsm.turn.params` ("chat", "messages", "responses")
    provider: str  # the LiteLLM prefix of an upstream that speaks it as the client does ("" for none)

    def read_request(self, body: Mapping[str, Any]) -> Request: ...

    def read_answer(self, body: Mapping[str, Any]) -> Answer: ...

    def stream(self, tools: Iterable[str] = ()) -> Stream: ...

    def events(self, body: Mapping[str, Any]) -> bytes:
        """A whole answer of this protocol as the SSE bytes of a stream of it."""
        ...

    def error_body(self, status: int, message: str, kind: str | None = None) -> dict[str, Any]: ...

    def stream_error(self, status: int, message: str) -> bytes:
        """An error as the SSE event of a stream of this protocol, which its clients raise."""
        ...

    def note(self, messages: Sequence[Any], note: str) -> list[Any]:
        """The messages with a handoff note at the end (a new list: the client's is not changed)."""
        ...

    def with_note(self, raw: bytes, note: str) -> bytes | None:
        """The request bytes with the note spliced in as `note` adds it, every byte before it unchanged
        (a provider's prompt cache keeps the prefix); None when the bytes have an unusual shape."""
        ...

    def endpoint(self, base: str | None, key: str | None, sent: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """(URL, headers) of a call to an upstream of this protocol; `sent` is the client's headers."""
        ...

    def usage_follows(self, body: Mapping[str, Any]) -> bool:
        """Whether a stream of this request has its usage after the finish (the call settles with it)."""
        ...


def noted(codec: Codec, raw: bytes, body: Mapping[str, Any], note: str) -> bytes:
    """`codec.with_note`, or the body serialised again with `codec.note` when the bytes are unusual."""
    spliced = codec.with_note(raw, note)
    if spliced is not None:
        return spliced
    return json.dumps({**body, "messages": codec.note(body.get("messages") or [], note)}).encode()
