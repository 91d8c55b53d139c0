"""Which request parameters a caller may choose, per wire protocol.

A role's model is called with the role's key. Everything that decides where a call goes, which key
or headers it carries, or how LiteLLM behaves (`api_base`, `base_url`, `api_key`, `extra_headers`,
`custom_llm_provider`, `mock_response`, callbacks, LiteLLM's `metadata`, ...) comes from the role's
binding alone. So a gateway client sends only its protocol's own parameters (the allow-lists below,
from the providers' API references plus the sampling extensions of OpenAI-compatible servers), and
anything else is refused before any upstream call, naming the parameter. Shared by the gateway and
the LiteLLM provider; imports no SDK.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CHAT", "LITELLM_CALL_OPTIONS", "MESSAGES", "NOT_FOR_LITELLM", "RESPONSES", "refused"]

# OpenAI Chat Completions (`POST /v1/chat/completions`).
CHAT = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
        # sampling extensions of OpenAI-compatible servers (vLLM, llama.cpp)
        "top_k",
        "min_p",
        "repetition_penalty",
    }
)

# Anthropic Messages (`POST /v1/messages`), with the beta parameters Claude Code sends.
MESSAGES = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_k",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "context_management",
        "mcp_servers",
        "output_config",
        "output_format",
    }
)

# OpenAI Responses (`POST /v1/responses`), with the fields Codex sends.
RESPONSES = frozenset(
    {
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "conversation",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tool_calls",
        "temperature",
        "top_p",
        "top_logprobs",
        "max_output_tokens",
        "stream",
        "stream_options",
        "store",
        "background",
        "metadata",
        "include",
        "reasoning",
        "text",
        "truncation",
        "user",
        "safety_identifier",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_retention",
        "service_tier",
        "client_metadata",
    }
)

# Protocol parameters that LiteLLM also reads as its own options (`metadata` reaches its callbacks and
# cost lookup) or that only the provider itself can serve (Anthropic's MCP connector and container):
# they go on when the request is forwarded as bytes to an upstream of the client's protocol, and are
# never handed to LiteLLM as keyword arguments.
NOT_FOR_LITELLM = frozenset({"metadata", "mcp_servers", "container"})

# LiteLLM per-call options an embedding program (not a remote client) may pass to the provider: they
# change what LiteLLM answers offline or how it treats parameters, never where a call goes or its key.
LITELLM_CALL_OPTIONS = frozenset({"mock_response", "mock_tool_calls", "drop_params", "timeout"})

_NAMES = {"chat": "Chat Completions", "messages": "Messages", "responses": "Responses"}


def refused(protocol: str, names: Iterable[str]) -> str | None:
    """Why a request naming `names` is refused (the first unknown parameter), or None."""
    allowed = {"chat": CHAT, "messages": MESSAGES, "responses": RESPONSES}[protocol]
    for name in names:
        if name not in allowed:
            return (
                f"parameter {name!r:.60} is not a {_NAMES[protocol]} parameter: where a call goes, which key it "
                "carries and how it is sent are set by the role's binding (LWFSM_<ROLE>_MODEL, _API_BASE, "
                "_API_KEY_ENV), never by a client"
            )
    return None
