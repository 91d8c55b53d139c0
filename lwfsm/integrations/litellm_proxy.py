"""LiteLLM proxy: a `CustomLogger` hook that routes each session's requests to the model of its role.

In the proxy's config (one line, plus this module's instance in your callbacks file):

    litellm_settings:
      callbacks: lwfsm_hook.hook  # lwfsm_hook.py: hook = LwfsmProxyHook("lead_worker", {"lead": "big", ...})

A request that names a session (header `x-lwfsm-session`, or `metadata: {"lwfsm_session": ...}` in
the body) gets its `model` rewritten in `async_pre_call_hook` to the model group bound to the
session's role, judged from its messages by the turn core; `async_post_call_success_hook` commits the
call. Requests without a session pass untouched. Sessions are scoped by the caller's proxy key: two
keys naming the same session are two conversations.

Conversations live in an lwfsm store (`store=`: memory:// for one proxy process, redis:// shared by
several), through the adapter's own load / plan / compare-and-set loop: two calls of one session
finishing together are both committed (the later one judged again on the newer state), or the later
one raises `Conflict` when the newer state needs another role than the one that served it.

Every request is a turn (`turn_unit="call"`, as in the gateway): the agents behind a proxy may work
through one user message for hours, and must be able to switch within it.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, Conflict
from ..store import Store
from ..turn import TurnCore, params
from ..turn.bindings import RoleBinding
from ..turn.front import Sink, SpecLike

try:
    from litellm.integrations.custom_logger import CustomLogger

    from ..provider.adapter import Adapter, AgentSession
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('lwfsm.integrations.litellm_proxy needs LiteLLM: pip install "lwfsm[litellm]"') from exc

__all__ = ["LwfsmProxyHook"]


class LwfsmProxyHook(CustomLogger):
    """Rewrites the model of each session's requests to the model group bound to the session's role."""

    def __init__(
        self,
        spec: SpecLike,
        models: Mapping[str, str],
        *,
        header: str = "x-lwfsm-session",
        store: str | Store = "memory://",
        log: Sink | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if isinstance(spec, TurnCore):
            spec = spec.engine  # the adapter builds its core (with `options`)
        # Model group names (the proxy's, not LiteLLM model strings): bound as they are.
        groups = {role: RoleBinding(group) for role, group in models.items()}
        self.adapter = Adapter(spec, groups, store=store, env={}, **options)
        self.core = self.adapter.core
        self.models, self.header, self.log = dict(models), header.lower(), log
        assert self.adapter.store is not None
        self._offload = not self.adapter.store.url.startswith("memory://")  # sqlite3 and redis-py block
        self._open: dict[str, tuple[AgentSession, Any, str | None]] = {}

    def session_of(self, data: Mapping[str, Any]) -> str | None:
        """The session a request names: the header, else `metadata.lwfsm_session`."""
        headers = (data.get("proxy_server_request") or {}).get("headers") or {}
        for key, value in headers.items():
            if key.lower() == self.header and value:
                return str(value)
        for field in ("metadata", "litellm_metadata"):
            value = (data.get(field) or {}).get("lwfsm_session")
            if value:
                return str(value)
        return None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args) if self._offload else fn(*args)

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        session = self.session_of(data)
        if session is None or call_type not in ("completion", "acompletion") or "messages" not in data:
            return data
        if data.get("stream"):
            # The proxy commits a streamed reply through other hooks than the one this module follows.
            raise ConfigError(
                f"session {session!r}: lwfsm's proxy hook does not follow streamed replies yet; send stream=false"
            )
        # The proxy merges the client's body into the call's keyword arguments, and the router lets them
        # override the deployment's: a routed session's client may send only Chat Completions parameters.
        sent = (data.get("proxy_server_request") or {}).get("body") or {}
        why = params.refused("chat", (k for k in sent if k != "litellm_metadata"))
        if why is not None:
            raise ConfigError(f"session {session!r}: {why}")
        # Scoped by the caller's key (the proxy hands its hash): one key cannot reach another's conversation.
        caller = str(getattr(user_api_key_dict, "token", None) or getattr(user_api_key_dict, "api_key", None) or "")
        scope = "k" + hashlib.sha256(caller.encode()).hexdigest()[:16] if caller else "anon"
        agent = await self._run(self.adapter.session, f"{scope}.{session}")
        agent.sink = self.log
        key, replay, call = await self._run(agent._stored_begin, data["messages"], False, {})
        # A redelivered call (its messages were settled already) is served again and recorded once.
        role = agent.last.role if replay is not None and agent.last is not None else call.plan.role
        data["model"] = self.models[role]
        if call is not None and call.plan.note:  # the handoff note: last, in the request sent upstream only
            data["messages"] = [*data["messages"], {"role": "user", "content": call.plan.note}]
        call_id = data.setdefault("litellm_call_id", str(uuid.uuid4()))
        if replay is None:
            self._open[call_id] = (agent, call, key)
        return data

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> Any:
        entry = self._open.pop(data.get("litellm_call_id") or "", None)
        if entry is None:
            return response
        agent, call, key = entry
        call.kwargs["tools"] = data.get("tools") or ()
        done, _ = await self._run(agent._commit, call, call.plan.role, response, key)
        if not done:
            raise Conflict(
                f"session {agent.name!r}: another call moved the conversation while this one ran, and it now "
                f"needs another role than {call.plan.role!r}, which served this call; nothing was committed"
            )
        return response

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> None:
        self._open.pop(request_data.get("litellm_call_id") or "", None)  # a failed call commits nothing
        return None
