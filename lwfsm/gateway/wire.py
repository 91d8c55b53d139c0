"""The wire-format functions under their old names: they live in `lwfsm.gateway.codec`, one module
per protocol; this module re-exports them for the code and tests that import `wire`."""

from __future__ import annotations

from .codec.chat import OpenAIStream, merged_name, openai_chunk, openai_reply, plain_chat
from .codec.common import SSEReader, first_user_text, note_messages, noted, with_model, with_note
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
