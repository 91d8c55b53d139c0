"""Framework integrations, one module per framework, each an optional extra imported on demand:
`lwfsm.integrations.pydantic_ai`, `.openai_agents`, `.langchain`, `.litellm_proxy`. Each is thin over
`lwfsm.turn.front` (and so the turn core): it converts its framework's messages to the OpenAI shape
the core judges and hands each call the model bound to the conversation's role."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from ..store import open_store
from ..turn.front import Front, SpecLike

__all__: list[str] = []

M = TypeVar("M")


def front(spec: SpecLike, models: Mapping[str, M], **options: Any) -> Front[M]:
    """`Front(...)` with `store=` given as a URL (memory://, sqlite:///path.db, redis://...) opened, as the
    adapter and the proxy hook take one (the turn core takes a store, never opens one)."""
    if isinstance(options.get("store"), str):
        options["store"] = open_store(options["store"])
    return Front(spec, models, **options)
