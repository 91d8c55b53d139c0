"""pydantic-ai: a model whose requests are served by the model bound to the conversation's role.

    model = LwfsmModel("lead_worker", {"lead": OpenAIResponsesModel(...), "worker": OpenAIResponsesModel(...)})
    agent = Agent(model, tools=[...])

Each request's message history judges the previous turn (tool returns, failed or retried tool
calls, retry feedback, user prompts) through the turn core. `model.front` is the conversation
(`.state()`, `.conversation.ledger`); pass `state=` to continue a stored one.

One agent run is one turn (`turn_unit="message"`, judged when the next run's user prompt arrives or
at `model.front.close()`): a run whose tool failed counts as failed though its last request only
summed up. Pass `turn_unit="call"` to judge every model request (a switch may then come mid-run).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any

from ..turn.front import Call, Front, LogTo, SpecLike, StateLike, tool_call, tool_dict
from ..turn.ledger import Usage
from . import front

try:
    from pydantic_ai.messages import (
        ModelMessage,
        ModelRequest,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )
    from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse, infer_model
    from pydantic_ai.models.wrapper import WrapperModel
    from pydantic_ai.settings import ModelSettings
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('lwfsm.integrations.pydantic_ai needs pydantic-ai: pip install "lwfsm[pydantic-ai]"') from exc

__all__ = ["LwfsmModel", "to_openai"]

logger = logging.getLogger("lwfsm.integrations.pydantic_ai")


def _noted(messages: list[ModelMessage], note: str | None) -> list[ModelMessage]:
    """The messages with the handoff note as the last user part (this call only; the run's list is not changed)."""
    if not note:
        return messages
    last = messages[-1] if messages else None
    if isinstance(last, ModelRequest):
        return [*messages[:-1], replace(last, parts=[*last.parts, UserPromptPart(note)])]
    return [*messages, ModelRequest(parts=[UserPromptPart(note)])]


def to_openai(messages: Sequence[ModelMessage]) -> list[dict[str, Any]]:
    """pydantic-ai's message history in the OpenAI chat shape the turn core judges."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, ModelResponse):
            text = "".join(p.content for p in message.parts if isinstance(p, TextPart))
            calls = [
                tool_call(p.tool_call_id, p.tool_name, p.args_as_json_str())
                for p in message.parts
                if isinstance(p, ToolCallPart)
            ]
            out.append({"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})})
            continue
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            kind = getattr(part, "part_kind", None)
            if isinstance(part, ToolReturnPart):
                text = part.model_response_str(wrap_if_error=False)
                tool: dict[str, Any] = {"role": "tool", "tool_call_id": part.tool_call_id, "content": text}
                if part.outcome in ("failed", "retried"):  # said in a field, not in the text: the error flag
                    tool["is_error"] = True
                out.append(tool)
            elif kind in ("retry-prompt", "retry-feedback"):  # the model's last answer was unusable
                text = part.model_response()  # type: ignore[union-attr]
                call_id = getattr(part, "tool_call_id", None)
                out.append({"role": "tool", "tool_call_id": call_id, "content": text, "is_error": True})
            elif isinstance(part, UserPromptPart):
                content = part.content
                text = content if isinstance(content, str) else " ".join(c for c in content if isinstance(c, str))
                out.append({"role": "user", "content": text})
            elif kind == "system-prompt":
                out.append({"role": "system", "content": getattr(part, "content", "")})
    return out


class LwfsmModel(WrapperModel):
    """A pydantic-ai model: each request goes to the model bound to the conversation's role."""

    def __init__(
        self,
        spec: SpecLike,
        models: Mapping[str, Model | str],
        *,
        state: StateLike | None = None,
        name: str | None = None,
        log: LogTo | None = None,
        **options: Any,
    ) -> None:
        bound = {role: infer_model(m) for role, m in models.items()}
        self.front: Front[Model] = front(spec, bound, state=state, name=name, log=log, **options)
        first = self.front.core.spec.roles
        super().__init__(bound[next(iter(first))])  # profile, settings: the first role's model
        self._exits: AsyncExitStack | None = None

    async def __aenter__(self) -> LwfsmModel:
        self._exits = AsyncExitStack()
        for model in dict.fromkeys(self.front.models.values()):  # each model once
            await self._exits.enter_async_context(model)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        exits, self._exits = self._exits, None
        return await exits.__aexit__(*exc) if exits is not None else None

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        call = self.front.begin(to_openai(messages))
        sent = _noted(messages, call.note)
        call, response = await self.front.aserved(
            call, lambda c: c.model.request(sent, model_settings, model_request_parameters)
        )
        self._end(call, response, model_request_parameters)
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncIterator[StreamedResponse]:
        call = self.front.begin(to_openai(messages))
        sent = _noted(messages, call.note)
        async with AsyncExitStack() as opened:  # a stream that fails as it opens: the fallback's role
            call, s = await self.front.aserved(
                call,
                lambda c: opened.enter_async_context(
                    c.model.request_stream(sent, model_settings, model_request_parameters, run_context)
                ),
            )
            yield s
        response = s.get()  # a stream that raised commits nothing
        # Nor does one pydantic-ai reports is not whole: it ended (or was closed) before the provider's
        # last event, which its Responses, Anthropic, Google and Mistral models detect ("incomplete").
        if getattr(response, "state", "complete") not in ("complete", "suspended"):
            logger.warning(
                "the %s model's stream ended before its last event (%s); nothing was recorded",
                call.role,
                response.state,
            )
            return
        self._end(call, response, model_request_parameters)

    def _end(self, call: Call[Model], response: ModelResponse, params: ModelRequestParameters) -> None:
        tools = [
            tool_dict(t.name, t.description, t.parameters_json_schema)
            for t in [*params.function_tools, *getattr(params, "output_tools", [])]
        ]
        u = response.usage
        # A provider that reported no usage (a stream without its usage chunk): pydantic-ai counts the
        # request unmeasured, with 0 tokens; unknown, never zero (a reported 0 is a 0).
        usage = (
            Usage(unreported=1)
            if u.unmeasured_requests
            else Usage(
                prompt_tokens=u.input_tokens,
                completion_tokens=u.output_tokens,
                cache_read_tokens=u.cache_read_tokens,
                cache_write_tokens=u.cache_write_tokens,
            )
        )
        self.front.end(call, model=call.model.model_name, reply=to_openai([response])[0], tools=tools, usage=usage)

    @property
    def model_name(self) -> str:
        return f"lwfsm:{self.front.core.spec.name}"
