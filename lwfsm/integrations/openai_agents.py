"""OpenAI Agents SDK: a `ModelProvider` whose model is the one bound to the conversation's role.

    provider = LwfsmProvider("lead_worker", {"lead": "gpt-6.1-sol", "worker": "gpt-6-luna"})
    await Runner.run(agent, "...", run_config=RunConfig(model_provider=provider))

Role models are `agents.Model` objects or names that `provider=` (default: the SDK's
`MultiProvider`) resolves. Each call's input items judge the previous turn (function call outputs,
the user's messages) through the turn core. `provider.front` is the conversation.

One `Runner.run` is one turn (`turn_unit="message"`, judged when the next run's user input arrives or
at `provider.front.close()`): a run whose tool failed counts as failed though its last call only
summed up. Pass `turn_unit="call"` to judge every model call (a switch may then come mid-run).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..turn.front import Call, Front, LogTo, SpecLike, StateLike, tool_dict
from ..turn.ledger import Usage
from . import front

try:
    from agents import FunctionTool, Handoff, Model, ModelProvider, ModelResponse, ModelSettings, ModelTracing, Tool
    from agents import Usage as AgentsUsage
    from agents.agent_output import AgentOutputSchemaBase
    from agents.items import TResponseInputItem, TResponseStreamEvent
    from agents.models.chatcmpl_converter import Converter
    from agents.models.multi_provider import MultiProvider
    from agents.tool import default_tool_error_function
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'lwfsm.integrations.openai_agents needs the OpenAI Agents SDK: pip install "lwfsm[openai-agents]"'
    ) from exc

__all__ = ["TOOL_FAILED", "LwfsmProvider", "LwfsmRoleModel", "to_openai"]


# What the SDK tells the model when a tool raised (its default_tool_error_function): a failed tool call,
# though its text says so in no words the judge reads. Marked as the agent's own error flag.
TOOL_FAILED = default_tool_error_function(None, RuntimeError())  # type: ignore[arg-type]  # reads neither


def to_openai(system: str | None, items: str | list[TResponseInputItem]) -> list[dict[str, Any]]:
    """The SDK's input items (Responses shape) as OpenAI chat messages, the shape the turn core judges."""
    messages = [dict(m) for m in Converter.items_to_messages(items)]
    for m in messages:
        if m.get("role") == "tool" and m.get("content") == TOOL_FAILED:
            m["is_error"] = True
    return ([{"role": "system", "content": system}] if system else []) + messages


def _reply(response: ModelResponse) -> dict[str, Any]:
    """The response's output items as one assistant message (text and tool calls)."""
    said = [m for m in to_openai(None, response.to_input_items()) if m.get("role") == "assistant"]
    texts = [m["content"] for m in said if isinstance(m.get("content"), str)]
    calls = [c for m in said for c in m.get("tool_calls") or []]
    return {"role": "assistant", "content": "".join(texts) or None, **({"tool_calls": calls} if calls else {})}


class LwfsmRoleModel(Model):
    """Serves each call with the model bound to the conversation's role; the turn core judges and records."""

    def __init__(self, front: Front[Model]) -> None:
        self.front = front

    def _tools(self, tools: list[Tool], handoffs: list[Handoff[Any, Any]]) -> list[dict[str, Any]]:
        # Only the names matter to the judge; built here, as the SDK's converter refuses some tools for chat.
        offered = [tool_dict(t.name, t.description, t.params_json_schema) for t in tools if isinstance(t, FunctionTool)]
        return offered + [tool_dict(h.tool_name, h.tool_description, h.input_json_schema) for h in handoffs]

    def _end(self, call: Call[Model], response: ModelResponse, usage: Any, tools: list[dict[str, Any]]) -> None:
        # `usage`: the SDK's Usage or the Responses API's ResponseUsage; both name their fields alike.
        read = getattr(getattr(usage, "input_tokens_details", None), "cached_tokens", 0)
        reasoning = getattr(getattr(usage, "output_tokens_details", None), "reasoning_tokens", 0)
        counted = Usage(
            prompt_tokens=usage.input_tokens if usage else 0,
            completion_tokens=usage.output_tokens if usage else 0,
            cache_read_tokens=read or 0,
            reasoning_tokens=reasoning or 0,
            unreported=0 if usage else 1,  # no usage from the provider: unknown, not zero
        )
        model = str(getattr(call.model, "model", type(call.model).__name__))
        self.front.end(call, model=model, reply=_reply(response), tools=tools, usage=counted)

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        **kwargs: Any,
    ) -> ModelResponse:
        call = self.front.begin(to_openai(system_instructions, input))
        input = _noted(input, call.note)
        call, response = await self.front.aserved(
            call,
            lambda c: c.model.get_response(
                system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, **kwargs
            ),
        )
        self._end(call, response, response.usage, self._tools(tools, handoffs))
        return response

    async def stream_response(  # an async generator, as the SDK's own models
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        **kwargs: Any,
    ) -> AsyncIterator[TResponseStreamEvent]:
        call = self.front.begin(to_openai(system_instructions, input))
        input = _noted(input, call.note)
        done, started = None, False
        while True:
            try:
                async for event in call.model.stream_response(
                    system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, **kwargs
                ):
                    started = True
                    if event.type == "response.completed":
                        done = event.response
                    yield event
                break
            except Exception as exc:  # failed before it streamed: judging.technical_fallback's role
                if started:
                    raise
                call = self.front.fallback(call, exc)
        # a stream that ended without its response.completed commits nothing (the SDK's Chat Completions
        # model sends one even for a stream the server cut short: README, Agent frameworks)
        if done is not None:
            response = ModelResponse(output=done.output, usage=AgentsUsage(), response_id=done.id)
            self._end(call, response, done.usage, self._tools(tools, handoffs))


def _noted(items: str | list[TResponseInputItem], note: str | None) -> str | list[TResponseInputItem]:
    """The input with the handoff note last (this call only; the SDK's own list is not changed)."""
    if not note:
        return items
    given: list[TResponseInputItem] = [{"role": "user", "content": items}] if isinstance(items, str) else list(items)
    return [*given, {"role": "user", "content": note}]


class LwfsmProvider(ModelProvider):
    """A `ModelProvider` for `RunConfig(model_provider=...)`: one conversation, whatever model the agent names."""

    def __init__(
        self,
        spec: SpecLike,
        models: Mapping[str, Model | str],
        *,
        provider: ModelProvider | None = None,
        state: StateLike | None = None,
        name: str | None = None,
        log: LogTo | None = None,
        **options: Any,
    ) -> None:
        base = provider or MultiProvider()
        bound = {role: m if isinstance(m, Model) else base.get_model(m) for role, m in models.items()}
        self.front: Front[Model] = front(spec, bound, state=state, name=name, log=log, **options)
        self.model = LwfsmRoleModel(self.front)

    def get_model(self, model_name: str | None) -> Model:
        return self.model  # the role decides, not the agent's model name
