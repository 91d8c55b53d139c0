"""Framework integrations, one module per framework, each an optional extra imported on demand:
`lwfsm.integrations.pydantic_ai`, `.openai_agents`, `.langchain`, `.litellm_proxy`. Each is thin over
`lwfsm.turn.front` (and so the turn core): it converts its framework's messages to the OpenAI shape
the core judges and hands each call the model bound to the conversation's role."""

__all__: list[str] = []
