"""One codec per wire protocol, meeting at neutral types (`base`: Request, Answer, Stream, Codec):
Chat Completions (`chat`), Anthropic Messages (`messages`), Responses (`responses`); what they share
(`common`: part texts, the SSE reader, request bytes edited in place). Pure: no HTTP, no SDK.
`CODECS[protocol]` is the codec of the gateway's protocol key."""

from __future__ import annotations

from . import chat, messages, responses
from .base import Answer, Codec, Request, Stream, noted

__all__ = ["CODECS", "Answer", "Codec", "Request", "Stream", "noted"]

CODECS: dict[str, Codec] = {"openai": chat.CODEC, "anthropic": messages.CODEC, "responses": responses.CODEC}
