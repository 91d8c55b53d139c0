"""Fitting a client's request to the role's model: parameters the target cannot take are dropped (or
left for LiteLLM to map), never sent on to be refused.

Intake (`lwfsm.turn.params`) allows a client only its own protocol's parameters. The role's model may
still not take them all: an agent sets them for the model it thinks it talks to. OpenAI answers 400 to
reasoning effort for a model without reasoning, and LiteLLM refuses such a call before sending it; an
Anthropic-only field (Claude Code's thinking, cache_control, context_management...) means nothing to an
OpenAI-compatible server, and strict ones refuse unknown fields. One failing parameter would fail every
turn the role serves, so the gateway drops it and says so in its log (once per role, model and
parameters, not once per call). Pure: no SDK, no I/O; the caller passes what LiteLLM supports.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["effort", "fit", "reasons"]

# What a Messages request keeps on its way to a model of another protocol through LiteLLM's Messages
# adapter: the fields it translates. `thinking` goes only to a model that reasons (as reasoning effort
# for an OpenAI-compatible one, see `fit`); `metadata` never goes to LiteLLM (`params.NOT_FOR_LITELLM`).
_MESSAGES_TRANSLATED = frozenset(
    {"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p", "tools"}
    | {"tool_choice", "thinking", "metadata"}
)


def reasons(model: str, prices: Any) -> bool | None:
    """Whether LiteLLM's price map says the model reasons (None: the map does not know the model).
    `prices` is a `lwfsm.cost.pricing.PriceMap`; 'openai/responses/x' is looked up as 'openai/x'."""
    entry = prices.entry(model.replace("/responses/", "/", 1))
    return None if entry is None else bool(entry.get("supports_reasoning"))


# Anthropic's thinking budget as OpenAI's reasoning effort: the inverse of the budgets LiteLLM gives
# each effort (low 1024, medium 2048, high 4096 tokens).
def effort(thinking: Any) -> str | None:
    """The reasoning effort for an Anthropic `thinking` value (None: thinking is off or unreadable)."""
    if not isinstance(thinking, Mapping) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        return "medium"
    return "low" if budget <= 1024 else "medium" if budget <= 2048 else "high"


def fit(
    body: dict[str, Any],
    protocol: str,
    model: str,
    same_protocol: bool,
    reasoning: bool | None,
    supported: Collection[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """(the body to send, what was dropped or mapped, by name) for a request of `protocol` ("openai":
    Chat Completions, "anthropic": Messages) to `model`.

    same_protocol: the bytes are forwarded to an upstream of the client's protocol, which understands
    every parameter of it; only reasoning is dropped, and only where the price map says the model has
    none (a model it does not know, such as a local one, gets what the client sent).
    Otherwise LiteLLM translates: a Chat Completions body keeps what LiteLLM supports for the model
    (`supported`, from `litellm.get_supported_openai_params`), reasoning effort only for a model known
    to reason; a Messages body keeps what LiteLLM's Messages adapter translates, thinking only for a
    model known to reason, and cache_control only for a provider that is not OpenAI's (an
    OpenAI-compatible server has no such field). For an `openai/` chat model that reasons, thinking is
    sent as `reasoning_effort` here: LiteLLM would send a call with thinking to /v1/responses.
    The body is returned unchanged (the same object) when nothing is dropped.
    """
    drop: list[str] = []
    if protocol == "openai":
        if same_protocol:
            drop = ["reasoning_effort"] if reasoning is False and "reasoning_effort" in body else []
        else:  # (older LiteLLM lists reasoning effort for every model of a provider that has some)
            keep = ("model", "messages", "stream", "stream_options")  # LiteLLM's own, for every provider
            drop = [k for k in body if k not in keep and supported is not None and k not in supported]
            drop += ["reasoning_effort"] if "reasoning_effort" in body and reasoning is not True else []
            drop = list(dict.fromkeys(drop))
    else:
        if same_protocol:
            drop = ["thinking"] if reasoning is False and "thinking" in body else []
        else:
            drop = [k for k in body if k not in _MESSAGES_TRANSLATED or (k == "thinking" and reasoning is not True)]
    out = {k: v for k, v in body.items() if k not in drop} if drop else body
    openai_chat = model.startswith("openai/") and not model.startswith("openai/responses/")
    if protocol == "anthropic" and not same_protocol and openai_chat and reasoning is True and "thinking" in out:
        out = {k: v for k, v in out.items() if k != "thinking"}
        if (level := effort(body["thinking"])) is not None:
            out["reasoning_effort"] = level
            drop.append(f"thinking (sent as reasoning_effort {level!r})")
    if protocol == "anthropic" and not same_protocol and model.startswith("openai/"):
        stripped = _without_cache_control(out)
        if stripped is not out:
            out = stripped
            drop.append("cache_control")
    return out, drop


def _without_cache_control(body: dict[str, Any]) -> dict[str, Any]:
    """The Messages body without `cache_control` on system blocks, content blocks and tools (the same
    object when there is none)."""

    def blocks(value: Any) -> tuple[Any, bool]:
        if not isinstance(value, list):
            return value, False
        found = any(isinstance(b, Mapping) and "cache_control" in b for b in value)
        if not found:
            return value, False
        kept = [{k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, Mapping) else b for b in value]
        return kept, True

    changed = False
    out = dict(body)
    for key in ("system", "tools"):
        if key in body:
            out[key], found = blocks(body[key])
            changed |= found
    messages = []
    for m in body.get("messages") or ():
        content, found = blocks(m.get("content")) if isinstance(m, Mapping) else (None, False)
        messages.append({**m, "content": content} if found else m)
        changed |= found
    if "messages" in body:
        out["messages"] = messages
    return out if changed else body
