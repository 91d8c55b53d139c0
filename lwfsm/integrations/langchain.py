"""LangChain v1: agent middleware that serves each model call with the model bound to the conversation's role.

    middleware = LwfsmMiddleware("lead_worker", {"lead": ChatOpenAI(...), "worker": ChatOpenAI(...)})
    agent = create_agent(ChatOpenAI(...), tools=[...], middleware=[middleware])

`wrap_model_call` judges the previous turn from the request's messages (tool messages, including
those with status "error", and the user's) through the turn core, and overrides the request's
model; the agent binds its tools to that model as usual. `middleware.front` is the conversation.

One `invoke` of the agent is one turn (`turn_unit="message"`, judged when the next invoke's user
message arrives or at `middleware.front.close()`): an invoke whose tool failed counts as failed though
its last model call only summed up. Pass `turn_unit="call"` to judge every model call instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..errors import ConfigError
from ..turn.front import Call, Front, LogTo, SpecLike, StateLike
from ..turn.ledger import Usage
from . import front

try:
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage, convert_to_openai_messages
    from langchain_core.tracers.context import register_configure_hook
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('lwfsm.integrations.langchain needs LangChain v1: pip install "lwfsm[langchain]"') from exc

__all__ = ["LwfsmMiddleware", "to_openai"]

logger = logging.getLogger("lwfsm.integrations.langchain")


class _Tokens(BaseCallbackHandler):
    """Told of what the model of one call streams (LangChain adds it to every run begun while `_TOKENS`
    holds it): once a token or a piece of a tool call has gone out, the caller may have shown it, so the
    call is not made again on another role (as the other integrations stop falling back once a stream
    has begun). Only the call's own model counts: not an empty first chunk, nor a model another
    middleware asks on the way (a tool selector, a guard), which runs as another model or untracked
    (`nostream`)."""

    run_inline = True  # called as the token comes, on the model's own thread or loop

    def __init__(self, model: str) -> None:
        self.model, self.runs, self.seen = model, set[Any](), False

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        params = kwargs.get("invocation_params") or {}
        named = params.get("model") or params.get("model_name")
        if "nostream" not in (kwargs.get("tags") or ()) and named in (None, self.model):
            self.runs.add(kwargs.get("run_id"))

    def on_llm_new_token(self, token: Any = "", *args: Any, **kwargs: Any) -> None:
        message = getattr(kwargs.get("chunk"), "message", None)
        if (token or getattr(message, "tool_call_chunks", None)) and kwargs.get("run_id") in self.runs:
            self.seen = True


_TOKENS: ContextVar[_Tokens | None] = ContextVar("lwfsm_langchain_tokens", default=None)
register_configure_hook(_TOKENS, True)


def _model_name(model: Any) -> str:
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or model)


@contextmanager
def _watched(model: Any) -> Iterator[_Tokens]:
    tokens = _Tokens(_model_name(model))
    reset = _TOKENS.set(tokens)
    try:
        yield tokens
    finally:
        _TOKENS.reset(reset)


def _cut(message: AIMessage) -> bool:
    """A reply over OpenAI's Responses API whose stream ended before its last event: the response's id
    came (`response.created`), and what LangChain takes from the last event (`response.completed` or
    `.incomplete`), or from a whole reply, never did: the model's name (a status may be missing from a
    server's events). A whole reply over Chat Completions carries a finish reason; a streamed one cut
    short cannot be told from a server that sends none, so it is recorded (README, Agent frameworks)."""
    meta = message.response_metadata
    return meta.get("model_provider") == "openai" and "id" in meta and "model_name" not in meta


def to_openai(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI chat messages, the shape the turn core judges."""
    out = []
    for message in messages:
        (converted,) = convert_to_openai_messages([message])
        if isinstance(message, ToolMessage) and message.status == "error":
            converted["is_error"] = True  # a failed tool says so in a field: the judge reads it as the error flag
        out.append(converted)
    return out


def _usage(message: AIMessage) -> Usage:
    u = message.usage_metadata
    if not u:  # e.g. ChatOpenAI streaming without stream_usage=True: unknown, not zero
        return Usage(unreported=1)
    inp, out = u.get("input_token_details") or {}, u.get("output_token_details") or {}
    return Usage(
        prompt_tokens=u.get("input_tokens", 0),
        completion_tokens=u.get("output_tokens", 0),
        cache_read_tokens=inp.get("cache_read", 0),
        cache_write_tokens=inp.get("cache_creation", 0),
        reasoning_tokens=out.get("reasoning", 0),
    )


def _chat_model(role: str, model: Any) -> BaseChatModel:
    """A role's model: a chat model, or a name as `create_agent` takes one ("openai:gpt-6.1-sol")."""
    if isinstance(model, BaseChatModel):
        return model
    if isinstance(model, str):
        from langchain.chat_models import init_chat_model

        try:
            made = init_chat_model(model)
        except Exception as exc:  # an unknown provider, its package not installed, its client without a key
            raise ConfigError(f"role {role!r}: model {model!r}: {type(exc).__name__}: {exc}") from None
        if isinstance(made, BaseChatModel):
            return made
    raise ConfigError(
        f"role {role!r}: expected a LangChain chat model or a name like 'openai:gpt-6.1-sol', got {model!r:.60}"
    )


class LwfsmMiddleware(AgentMiddleware):
    """Overrides the model of every model call of an agent by the conversation's role."""

    def __init__(
        self,
        spec: SpecLike,
        models: Mapping[str, BaseChatModel | str],
        *,
        state: StateLike | None = None,
        name: str | None = None,
        log: LogTo | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        bound = {role: _chat_model(role, m) for role, m in models.items()}
        self.front: Front[BaseChatModel] = front(spec, bound, state=state, name=name, log=log, **options)

    def _begin(self, request: ModelRequest) -> tuple[Call[BaseChatModel], ModelRequest]:
        messages = ([request.system_message] if request.system_message else []) + list(request.messages)
        call = self.front.begin(to_openai(messages))
        if call.note:  # the handoff note goes to this call only, last
            return call, request.override(model=call.model, messages=[*request.messages, HumanMessage(call.note)])
        return call, request.override(model=call.model)

    def _end(self, call: Call[BaseChatModel], request: ModelRequest, response: Any) -> None:
        result = response.result if isinstance(response, ModelResponse) else [response]
        ai = next((m for m in reversed(result) if isinstance(m, AIMessage)), None)
        if ai is not None and _cut(ai):
            logger.warning("the %s model's stream ended before its last event; nothing was recorded", call.role)
            return
        reply = to_openai([ai])[0] if ai is not None else None
        tools = [convert_to_openai_tool(t) for t in request.tools]
        model = _model_name(call.model)
        self.front.end(call, model=model, reply=reply, tools=tools, usage=_usage(ai) if ai else None)

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse:
        call, request = self._begin(request)
        while True:  # the front's `served`, but not again once tokens have streamed
            with _watched(call.model) as tokens:
                try:
                    response = handler(request.override(model=call.model))
                    break
                except Exception as exc:
                    if tokens.seen:
                        raise
                    call = self.front.fallback(call, exc)
        self._end(call, request, response)
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        call, request = self._begin(request)
        while True:
            with _watched(call.model) as tokens:
                try:
                    response = await handler(request.override(model=call.model))
                    break
                except Exception as exc:
                    if tokens.seen:
                        raise
                    call = self.front.fallback(call, exc)
        self._end(call, request, response)
        return response
