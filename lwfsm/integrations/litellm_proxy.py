"""LiteLLM proxy: a `CustomLogger` hook that routes each session's requests to the model of its role.

In the proxy's config (one line, plus this module's instance in your callbacks file):

    litellm_settings:
      callbacks: lwfsm_hook.hook  # lwfsm_hook.py: hook = LwfsmProxyHook("lead_worker", {"lead": "big", ...})

A request that names a session (header `x-lwfsm-session`, or `metadata: {"lwfsm_session": ...}` in
the body) gets its `model` rewritten in `async_pre_call_hook` to the model group bound to the
session's role, judged from its messages by the turn core; `async_post_call_success_hook` commits the
call. Requests without a session pass untouched. The conversation lives, as JSON, in the proxy's own
cache (the `DualCache` the proxy hands to hooks: Redis when the proxy has one), or in `store=`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from ..errors import ConfigError, Conflict
from ..turn import params
from ..turn.front import Call, Front, Sink, SpecLike, core_of
from ..turn.ledger import Usage

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('lwfsm.integrations.litellm_proxy needs LiteLLM: pip install "lwfsm[litellm]"') from exc

__all__ = ["LwfsmProxyHook", "StateStore"]


class StateStore(Protocol):
    """Where conversations live between requests; the proxy's `DualCache` is one."""

    async def async_get_cache(self, key: str, **kwargs: Any) -> Any: ...

    async def async_set_cache(self, key: str, value: Any, **kwargs: Any) -> Any: ...


class LwfsmProxyHook(CustomLogger):
    """Rewrites the model of each session's requests to the model group bound to the session's role."""

    def __init__(
        self,
        spec: SpecLike,
        models: Mapping[str, str],
        *,
        header: str = "x-lwfsm-session",
        store: StateStore | None = None,
        prefix: str = "lwfsm:",
        log: Sink | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.core = core_of(spec, **options)
        Front(self.core, models)  # check the bindings now, not at the first request
        self.models, self.header, self.store, self.prefix, self.log = dict(models), header.lower(), store, prefix, log
        self._open: dict[str, tuple[Front[str], Call[str], StateStore, str]] = {}

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
        store: StateStore = self.store or cache
        key = self.prefix + session
        stored = await store.async_get_cache(key)
        front = Front(self.core, self.models, state=stored, name=session, log=self.log)
        call = front.begin(data["messages"])
        data["model"] = call.model
        call_id = data.setdefault("litellm_call_id", str(uuid.uuid4()))
        self._open[call_id] = (front, call, store, key)
        return data

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> Any:
        entry = self._open.pop(data.get("litellm_call_id") or "", None)
        if entry is None:
            return response
        front, call, store, key = entry
        stored = await store.async_get_cache(key)  # another worker may have served this session meanwhile
        version = front.core.restore(stored).version if stored is not None else 0
        if version != call.plan.version:
            raise Conflict(
                f"session {front.name!r} moved from version {call.plan.version} to {version} while this call ran; "
                "send one request per session at a time"
            )
        message = response.choices[0].message
        reply = message.model_dump() if hasattr(message, "model_dump") else dict(message)
        usage = Usage.of(getattr(response, "usage", None))
        front.end(call, model=call.model, reply=reply, tools=data.get("tools") or (), usage=usage)
        await store.async_set_cache(key, front.state().model_dump_json())
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
