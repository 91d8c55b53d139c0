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
several), through the conversation loop every front end uses (`lwfsm.turn.loop`): two calls of one
session finishing together are both committed, the later one settled on the newer state as served by
the role that served it (its answer is already the client's); a retried call is not a new turn.

Every request is a turn (`turn_unit="call"`, as in the gateway): the agents behind a proxy may work
through one user message for hours, and must be able to switch within it.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..store import Store
from ..turn import TurnCore, UnreadableMessages, Usage, params
from ..turn.bindings import RoleBinding
from ..turn.core import append_record
from ..turn.front import LogTo, SpecLike, sink
from ..turn.loop import Loop, Turn

logger = logging.getLogger("lwfsm.integrations.litellm_proxy")

try:
    # the adapter first: it sets LiteLLM offline (its local price map) before LiteLLM loads
    from ..provider.adapter import Adapter, _running_proxys_router, price  # noqa: I001
    from litellm.integrations.custom_logger import CustomLogger
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('lwfsm.integrations.litellm_proxy needs LiteLLM: pip install "lwfsm[litellm]"') from exc

__all__ = ["LwfsmProxyHook"]


class Refused(ConfigError):
    """A routed request the hook cannot take: the client's to change, so the proxy answers 400 (it takes
    an exception's `status_code`), which clients do not retry."""

    status_code = 400


class LwfsmProxyHook(CustomLogger):
    """Rewrites the model of each session's requests to the model group bound to the session's role."""

    def __init__(
        self,
        spec: SpecLike,
        models: Mapping[str, str],
        *,
        header: str = "x-lwfsm-session",
        store: str | Store = "memory://",
        log: LogTo | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if isinstance(spec, TurnCore):
            spec = spec.engine  # the adapter builds its core (with `options`)
        # Model group names (the proxy's, not LiteLLM model strings): bound as they are.
        groups = {role: RoleBinding(group) for role, group in models.items()}
        self.adapter = Adapter(spec, groups, store=store, env={}, model_groups=True, **options)
        self.core = self.adapter.core
        self.models, self.header, self.log = dict(models), header.lower(), sink(log)
        assert self.adapter.store is not None
        self.loop = Loop(self.core, self.adapter.store, attempts=self.adapter.conflicts)  # store I/O off the event loop
        self._open: dict[str, tuple[Turn, str]] = {}  # litellm_call_id -> (the call, the role serving it)
        self._groups_checked = False  # at the first routed call: the proxy builds its router after its callbacks

    def _check_groups(self) -> None:
        """Every bound model group is one of the proxy's: a misspelt one would fail every call of its role
        from the first turn that role serves (the lead's first turns would hide it)."""
        router = _running_proxys_router()
        if router is None:  # not inside a proxy, or its router not built yet
            return
        # newer LiteLLM names its groups through registry() (model_names deprecated); older, model_names
        names = router.registry().names() if hasattr(router, "registry") else getattr(router, "model_names", ())
        known = {str(n) for n in names or ()}
        if not known:
            return  # a router that names no group: nothing to check against
        for role, group in self.models.items():
            if group not in known:
                raise ConfigError(
                    f"role {role!r} is bound to model group {group!r}, which the proxy's model_list does not have"
                    f"{did_you_mean(group, known)}; its groups: {', '.join(sorted(known)) or 'none'}"
                )
        self._groups_checked = True

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
            raise Refused(
                f"session {session!r}: lwfsm's proxy hook does not follow streamed replies yet; send stream=false"
            )
        # The proxy merges the client's body into the call's keyword arguments, and the router lets them
        # override the deployment's: a routed session's client may send only Chat Completions parameters.
        sent = (data.get("proxy_server_request") or {}).get("body") or {}
        why = params.refused("chat", (k for k in sent if k != "litellm_metadata"))
        if why is not None:
            raise Refused(f"session {session!r}: {why}")
        if not self._groups_checked:
            self._check_groups()
        # Scoped by the caller's key (the proxy hands its hash): one key cannot reach another's conversation.
        caller = str(getattr(user_api_key_dict, "token", None) or getattr(user_api_key_dict, "api_key", None) or "")
        scope = "k" + hashlib.sha256(caller.encode()).hexdigest()[:16] if caller else "anon"
        try:
            turn = await self.loop.abegin(f"{scope}.{session}", data["messages"])
        except UnreadableMessages as exc:  # the client's to change: a 400, not the proxy's 500
            raise Refused(f"session {session!r}: {exc}") from None
        # A retried call (its messages were settled already) is served again by the role that served them,
        # and committed as not a new turn.
        pending = turn.conv.pending
        role = pending.role if turn.retry and pending is not None else turn.plan.role
        data["model"] = self.models[role]
        if turn.plan.note:  # the handoff note: last, in the request sent upstream only
            data["messages"] = [*data["messages"], {"role": "user", "content": turn.plan.note}]
        self._open[data.setdefault("litellm_call_id", str(uuid.uuid4()))] = (turn, role)
        return data

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> Any:
        entry = self._open.pop(data.get("litellm_call_id") or "", None)
        if entry is None:
            return response
        turn, role = entry
        choices = getattr(response, "choices", None) or []
        message: Any = choices[0].message if choices else {}
        reply = message.model_dump() if hasattr(message, "model_dump") else dict(message)
        # the model that served, as the response names it (a group name is no model a price map knows)
        served = getattr(response, "model", None)
        done = await self.loop.acommit(
            turn,
            role=role,
            model=served if isinstance(served, str) and served else self.models[role],
            reply=reply,
            tools=data.get("tools") or (),
            usage=Usage.of(getattr(response, "usage", None)),
        )
        if done.judged is not None:
            p = done.judged.pending
            record = done.judged.record(turn.name, price(p.model, p.usage))
            if self.log is not None:
                self.log(record)
            if self.adapter.log_dir is not None:  # as the adapter's sessions log (log_dir=)
                if (exc := append_record(self.adapter.log_dir / f"{turn.name}.jsonl", record)) is not None:
                    logger.error("session %s: could not write turn %d's log line: %s", turn.name, p.turn, exc)
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
