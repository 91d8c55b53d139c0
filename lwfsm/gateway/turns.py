"""The turn endpoints: Chat Completions and Messages calls served by the role's model, token counts,
the models list."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import SnapshotError, StoreError
from ..turn import UnreadableMessages
from ..turn.bindings import RoleBinding
from . import targets
from .codec import CODECS, Stream
from .forward import Forward
from .intake import Call
from .replies import error_body, log_error
from .shape import Protocol, Reject

__all__ = ["Turns"]

if TYPE_CHECKING:
    from .app import Gateway, _Loaded

logger = logging.getLogger("lwfsm.gateway")


class Turns:
    """The turn endpoints: a call read (`intake`), planned (`Gateway._load`), sent to each role's model in
    turn (`forward` or `translate`) until one answers, and settled (`Gateway._commit`)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._dropped: set[tuple[str, str, tuple[str, ...]]] = set()  # (role, model, params) already logged
        self._uncounted: set[str] = set()  # roles whose Anthropic upstream has no count endpoint

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    # -- the turn endpoints --

    async def chat_completions(self, request: Request) -> Response:
        return await self._turn(request, "openai")

    async def messages(self, request: Request) -> Response:
        return await self._turn(request, "anthropic")

    async def count_tokens(self, request: Request) -> Response:
        """Anthropic's token count for a request, as the role that would serve it counts; not a turn,
        nothing is stored. A role on Anthropic's API counts it there (exact); any other, or one whose server
        has no count endpoint, is counted here with LiteLLM's tokenizers (an estimate; no upstream call)."""
        started = time.perf_counter()
        response = await self._count_tokens(request)
        self.gateway.metrics.latency.labels(request.scope["path"]).observe(time.perf_counter() - started)
        log_error(request, response)
        return response

    async def _count_tokens(self, request: Request) -> Response:
        try:
            call = await self.gateway.intake.read(request, "anthropic", answered=False)
            loaded = await self.gateway._load(call)
        except Reject as exc:
            return JSONResponse(error_body("anthropic", exc.status, exc.message, exc.kind), exc.status, exc.headers)
        except RecursionError:
            return JSONResponse(error_body("anthropic", 400, "request content is nested too deeply to read"), 400)
        except SnapshotError as exc:
            return _unusable("anthropic", call.ident.key, exc)
        except UnreadableMessages as exc:
            return JSONResponse(error_body("anthropic", 400, unreadable(exc, "anthropic")), 400)
        role = loaded.plan.role
        binding = self.gateway.roles[role]
        model = binding.model
        headers = self._headers(call, loaded, role)
        upstream = not self.gateway.mock and self.gateway.forward.fast("anthropic", binding)
        if upstream and role not in self._uncounted:
            counted = await self.gateway.forward.count(call, role, binding, headers)
            if counted is not None:
                return counted
            # (logged once: an Anthropic-compatible server that serves Messages but has no count endpoint)
            self._uncounted.add(role)
            logger.warning(
                "the %s upstream has no token count endpoint (%s): counting its tokens here with LiteLLM's "
                "tokenizers (an estimate) from now on",
                role,
                model,
            )
        if (why := await self.gateway.translate.unavailable()) is not None:  # its tokenizers are LiteLLM's
            said = f"tokens are counted with LiteLLM's tokenizers: {why}"
            if upstream:
                said = f"the {role} upstream has no token count endpoint, and {said}"
            return JSONResponse(error_body("anthropic", 501, said, "api_error"), 501)
        litellm = (await self.gateway.translate.adapter()).litellm
        try:
            count = await self.count(litellm, call, model)
        except Exception as exc:  # a tokenizer that cannot read this request: say so, in Anthropic's shape
            return JSONResponse(error_body("anthropic", 400, f"cannot count tokens for {model}: {exc}"), 400)
        return JSONResponse({"input_tokens": count}, headers=headers)

    @staticmethod
    async def count(litellm: Any, call: Call, model: str) -> int:
        """The input tokens of a Messages call as `model` counts them, with LiteLLM's tokenizers."""
        system = call.body.get("system")
        messages = [{"role": "system", "content": system}] if isinstance(system, str) and system else []
        # Seconds on a long conversation: in a thread, so other requests go on.
        return int(await asyncio.to_thread(litellm.token_counter, model=model, messages=[*messages, *call.messages]))

    async def _turn(self, request: Request, protocol: Protocol) -> Response:
        started, path = time.perf_counter(), request.scope["path"]  # not request.url: ~40 us to build
        with self.gateway.tracing.call(request.headers, request.method, path) as traced:
            try:
                response = await self._serve(request, protocol)
            except asyncio.CancelledError:
                if self.gateway.cut is None:
                    raise
                response = self.gateway.stopped(protocol)
            self.gateway.metrics.latency.labels(path).observe(time.perf_counter() - started)
            log_error(request, response)
            return traced.send(response)

    async def _serve(self, request: Request, protocol: Protocol) -> Response:
        try:
            call = await self.gateway.intake.read(request, protocol)
        except Reject as exc:
            return JSONResponse(error_body(protocol, exc.status, exc.message, exc.kind), exc.status, exc.headers)
        except RecursionError:  # content nested deeper than reading it allows (the body parsed)
            return JSONResponse(error_body(protocol, 400, "request content is nested too deeply to read"), 400)
        return await self.run(call)

    async def run(self, call: Call) -> Response:
        protocol = call.protocol
        try:
            loaded = await self.gateway._load(call)
        except SnapshotError as exc:
            return _unusable(protocol, call.ident.key, exc)
        except UnreadableMessages as exc:
            return JSONResponse(error_body(protocol, 400, unreadable(exc, protocol)), 400)
        self.gateway.tracing.planned(
            call.ident.key, call.body.get("model"), call.stream, loaded.plan, call.side, loaded.retry
        )
        roles = loaded.conv.core.roles_for(loaded.plan)
        body, raw = call.body, call.raw  # as the client sent them; each role's model gets them fitted
        for i, role in enumerate(roles):
            binding = self.gateway.roles[role]
            headers = self._headers(call, loaded, role)
            final = i == len(roles) - 1
            self.gateway.tracing.attempt(role, binding.model, i, call.stream)
            fast = not self.gateway.mock and self.gateway.forward.fast(protocol, binding)
            if not fast and (why := await self.gateway.translate.unavailable()) is not None:
                return JSONResponse(
                    error_body(protocol, 501, untranslatable(role, binding, self.gateway.roles, why), "api_error"),
                    501,
                    headers,
                )
            call.body, call.raw = await self._fit(call, body, raw, role, binding, fast)
            if fast:
                result = await self.gateway.forward.send(call, loaded, role, binding, headers, final)
            else:
                result = await self.gateway.translate.send(call, loaded, role, binding, headers, final)
            if result is not None:
                return result
        return JSONResponse(error_body(protocol, 502, "no upstream answered"), 502)  # pragma: no cover

    def _headers(self, call: Call, loaded: _Loaded, role: str) -> dict[str, str]:
        conv, plan = loaded.conv, loaded.plan
        if call.side is not None:
            turn = conv.pending.turn if conv.pending is not None else conv.session.turn
        elif loaded.retry and conv.pending is not None:
            turn = conv.pending.turn
        else:
            turn = conv.session.turn + (2 if plan.verdict.event is not None else 1)
        out = {
            "x-lwfsm-session": call.ident.key,
            "x-lwfsm-turn": str(turn),
            "x-lwfsm-state": plan.state,
            "x-lwfsm-role": role,
            "x-lwfsm-model": self.gateway.roles[role].model,
        }
        if not call.ident.confident:
            out["x-lwfsm-session-confidence"] = "low"
        if call.side is not None:
            out["x-lwfsm-side-call"] = call.side
        if plan.note:
            out["x-lwfsm-handoff"] = str(len(plan.note))  # the characters of the note this call carries
        return out

    def broken(self, call: Call, role: str, kind: str, said: str) -> bytes:
        """A stream that ends without its reply (the upstream broke off or spoiled it): counted as `kind`,
        one log line, and the protocol's error event for the client (its SDK raises it); nothing is
        recorded, so a retry is served as a first try."""
        self.gateway._failed(role, kind)
        logger.warning("session %s: %s; nothing recorded", call.ident.key, said)
        return CODECS[call.protocol].stream_error(502, f"{said}; nothing was recorded, try again")

    async def settle_stream(self, call: Call, loaded: _Loaded, role: str, acc: Stream) -> bytes | None:
        """Record a streamed call once its stream has ended whole, before the client sees the end; a cut
        stream records nothing. The protocol's error event for the client when the store failed (the
        stream has begun: no status can say it), else None."""
        if not acc.done:
            logger.warning("session %s: the %s stream ended early; nothing was recorded", call.ident.key, role)
            return None
        answer = acc.answer()
        try:
            await self.gateway._commit(call, loaded, role, answer.message, answer.usage, answer.model)
        except StoreError as exc:
            logger.error("session %s: the %s stream was not recorded: %s", call.ident.key, role, exc)
            return CODECS[call.protocol].stream_error(503, str(exc))
        return None

    async def _fit(
        self, call: Call, body: dict[str, Any], raw: bytes, role: str, binding: RoleBinding, fast: bool
    ) -> tuple[dict[str, Any], bytes]:
        """The request body and bytes for this role's model: what it cannot take dropped (`targets`), with
        a log line the first time a role's model drops those parameters."""
        model = binding.model
        supported = None
        if not fast and call.protocol == "openai":
            supported = await self.gateway.translate.supported(model)
        reasoning = targets.reasons(model, self.gateway.pricer)
        out, dropped = targets.fit(body, call.protocol, model, fast, reasoning, supported)
        if not dropped:
            return body, raw
        if (role, model, tuple(dropped)) not in self._dropped:
            self._dropped.add((role, model, tuple(dropped)))
            logger.info(
                "dropped %s from requests to the %s model %s: it does not take them as sent (logged once)",
                ", ".join(dropped),
                role,
                model,
            )
        return out, json.dumps(out).encode()

    # -- models --

    async def models(self, request: Request) -> Response:
        try:
            self.gateway.intake.authorise(request)
        except Reject as exc:
            return JSONResponse(error_body("openai", exc.status, exc.message, exc.kind), exc.status)
        ids = ["lwfsm", *(f"lwfsm-{r}" for r in self.gateway.roles)]
        data = [
            {
                "id": i,
                "object": "model",
                "type": "model",
                "created": 0,
                "created_at": "1970-01-01T00:00:00Z",
                "owned_by": "lwfsm",
                "display_name": i,
            }
            for i in ids
        ]
        return JSONResponse({"object": "list", "data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]})


def _unusable(protocol: Protocol, key: str, exc: SnapshotError) -> Response:
    """A 409 for a stored conversation the gateway cannot go on with: which one, why, and the way out."""
    said = (
        f"stored conversation {key!r} unusable: {exc}; `lwfsm sessions delete {key}` (or DELETE /lwfsm/sessions/"
        f"{key}) removes it, and the next call begins it anew"
    )
    return JSONResponse(error_body(protocol, 409, said, "api_error"), 409)


_ENDPOINTS = {"Anthropic Messages": "/v1/messages", "Responses": "/v1/responses"}
_APIS = {"openai": "Chat Completions", "anthropic": "Anthropic Messages", "responses": "Responses"}


def unreadable(exc: UnreadableMessages, protocol: str) -> str:
    """A request whose messages are of another API than its endpoint's: where to send it instead."""
    where = f": send {exc.api} requests to {_ENDPOINTS[exc.api]}" if exc.api in _ENDPOINTS else ""
    return f"messages[{exc.index}] {exc.what}, which a {_APIS.get(protocol, protocol)} request cannot hold{where}"


def untranslatable(role: str, binding: RoleBinding, roles: Mapping[str, RoleBinding], why: str) -> str:
    """A call only LiteLLM could send to the role's upstream, which cannot be imported: why, and where
    the client's calls would go as they are (when every role's upstream speaks one protocol)."""
    said = f"this call to the {role} model {binding.model} is translated by LiteLLM: {why}"
    for protocol, api, endpoint in _AS_THEY_ARE:
        if all(Forward.fast(protocol, b) for b in roles.values()):
            return f"{said}; or send {api} calls to {endpoint}, which go to it as they are"
    return said


# Each protocol an upstream is forwarded in, as the client sends it.
_AS_THEY_ARE: tuple[tuple[Protocol, str, str], ...] = (
    ("openai", "Chat Completions", "/v1/chat/completions"),
    ("anthropic", "Anthropic Messages", "/v1/messages"),
)
