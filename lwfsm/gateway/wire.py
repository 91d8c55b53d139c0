"""The wire-format functions under their old names: they live in `lwfsm.gateway.codec`, one module
per protocol; this module re-exports them for the code and tests that import `wire`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .codec import CODECS
from .codec import noted as _noted
from .codec.chat import OpenAIStream, merged_name, openai_chunk, openai_reply, plain_chat
from .codec.common import SSEReader, first_user_text, with_model
from .codec.messages import AnthropicStream, anthropic_events, anthropic_messages, anthropic_reply, anthropic_tools
from .codec.responses import (
    ResponsesStream,
    responses_chat_request,
    responses_messages,
    responses_object,
    responses_tools,
)

__all__ = [
    "AnthropicStream",
    "anthropic_events",
    "OpenAIStream",
    "SSEReader",
    "anthropic_messages",
    "anthropic_reply",
    "anthropic_tools",
    "first_user_text",
    "plain_chat",
    "merged_name",
    "note_messages",
    "noted",
    "with_model",
    "with_note",
    "openai_chunk",
    "openai_reply",
    "ResponsesStream",
    "responses_chat_request",
    "responses_messages",
    "responses_object",
    "responses_tools",
]


def note_messages(protocol: str, messages: Sequence[Any], note: str) -> list[Any]:
    return CODECS[protocol].note(messages, note)


def with_note(raw: bytes, protocol: str, note: str) -> bytes | None:
    return CODECS[protocol].with_note(raw, note)


def noted(raw: bytes, body: Mapping[str, Any], protocol: str, note: str) -> bytes:
    return _noted(CODECS[protocol], raw, body, note)
