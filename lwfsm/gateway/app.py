"""The gateway: OpenAI Chat Completions and Anthropic Messages in front of the turn core.

Every request is one call of a conversation: the conversation is found (`identity`), loaded from
the store, the pending turn judged and the role chosen (`TurnCore.plan`), the role's model called,
and the call settled and written back with compare-and-set. The gateway keeps nothing between
requests but one shared HTTP client, so a restart (with a persistent store) loses nothing.

When the role's upstream speaks the client's protocol (an OpenAI-compatible base for Chat
Completions, Anthropic for Messages) the request bytes are forwarded with the model replaced and
the response bytes streamed back as they come; only what judging and the ledger need is parsed.
Otherwise LiteLLM translates (imported on first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib
import json
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar

import aiohttp
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..cost.pricing import PriceMap
from ..cost.report import printable
from ..engine import Engine
from ..errors import Conflict, LwfsmError, SnapshotError, StoreError, TransitionNotAllowed
from ..spec import Spec
from ..store.rows import CHAINS, encode, split
from ..turn import Conversation, Judged, Plan, TurnCore, Usage, params
from ..turn.bindings import RoleBinding
from ..turn.handoff import MAX_NOTE
from ..turn.loop import Stored, Turn
from . import targets, wire
from .identity import Identity, identify, is_loopback, side_call
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .rollout import Rollout
from .store import Store
from .trace import TraceLog
from .tracing import Tracing
from .turns import GatewayLoop, meta_of

__all__ = ["Gateway", "create_app"]

logger = logging.getLogger("lwfsm.gateway")

Protocol = Literal["openai", "anthropic"]
T = TypeVar("T")
PROBE_KEY = "lwfsm-readyz-probe"  # read, never written, by GET /readyz
HISTORY = 20  # judged turns kept per conversation for the control API
# Not passed on from the upstream's response: hop-by-hop, or set by our own server.
_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive", "date", "server"}


class _Reject(Exception):
    """A request refused before any upstream call: (status, message) in the client's protocol."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, dict(headers or {})


def error_body(protocol: Protocol, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    if protocol == "anthropic":
        names = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}
        return {"type": "error", "error": {"type": kind or names.get(status, "api_error"), "message": message}}
    return {"error": {"message": message, "type": kind or "invalid_request_error", "param": None, "code": None}}


@dataclass
class _Call:
    """One request on its way through the gateway."""

    protocol: Protocol
    body: dict[str, Any]
    raw: bytes
    messages: list[dict[str, Any]]  # OpenAI-shaped, for judging
    tools: list[dict[str, Any]]  # OpenAI-shaped, names only
    ident: Identity
    digest: str  # of the request bytes: a retried request has the same
    headers: Mapping[str, str]
    stream: bool
    started: float
    side: str | None  # a side call's kind (title, compaction...): served and priced, not a turn
    turn: str | None = None  # the turn it was recorded as, once it is (`_commit`)
    usage: Usage | None = None  # the tokens it was recorded with (`_commit`): unreported is unknown, not 0


@dataclass
class _Record:
    """A stored conversation as the gateway keeps it: an `lwfsm.store` row (header with the idempotency key of
    the last recorded call, the state), then the gateway's own lines: `meta` (who the conversation is,
    its switches) and its last judged turns, one JSON line each, parsed only when asked for."""

    conv: Conversation
    last: str | None  # the idempotency key of the last recorded turn call (lwfsm.turn.loop)
    meta: dict[str, Any]
    history: list[str]

    def add(self, turn: Mapping[str, Any]) -> None:
        self.history = [*self.history[1 - HISTORY :], json.dumps(turn)]

    def text(self) -> str:
        return encode(self.conv.state(), self.last, [json.dumps(self.meta), *self.history]).data


@dataclass
class _Loaded:
    conv: Conversation
    version: int  # the store's version (0: new)
    record: _Record
    retry: bool
    plan: Plan
    turn: Turn  # the loop's call (its plan may change when a commit loses a race)


class Gateway:
    """The gateway's state: one turn core, the role bindings, a store, one shared HTTP client."""

    def __init__(
        self,
        spec: Spec,
        roles: Mapping[str, RoleBinding],
        store: Store,
        *,
        chains: Store | None = None,
        env: Mapping[str, str] | None = None,
        api_key_env: str | None = None,
        mock: bool = False,
        max_body: int = 32 * 1024 * 1024,
        body_budget: int = 128 * 1024 * 1024,
        connect_timeout: float = 10.0,
        first_byte_timeout: float = 300.0,
        idle_timeout: float = 300.0,
        store_timeout: float = 10.0,
        trace: TraceLog | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.trace = trace  # --log-dir: one trace line per judged turn
        self.env = os.environ if env is None else env
        self.tracing = Tracing.from_env(self.env) if tracing is None else tracing  # OpenTelemetry spans
        self.spec = spec
        self.core = TurnCore(Engine(spec))
        self.roles = dict(roles)
        self.store = store
        self.chains = chains if chains is not None else store  # the Responses API's chains (`_chain`)
        self.mock = mock
        self.max_body = max_body
        # Bytes of request bodies held at once, across calls (a call holds its body, and what is parsed
        # from it, until it is answered, a stream included): `_hold` takes, `_Bodies` gives back.
        self.body_budget, self.held = body_budget, 0
        self.connect_timeout, self.first_byte_timeout, self.idle_timeout = (
            connect_timeout,
            first_byte_timeout,
            idle_timeout,
        )
        self.store_timeout = store_timeout
        # Store calls block (sqlite3, redis-py): they run here, never on the event loop. Bounded, so a
        # stopped store ties up these threads, not the gateway; memory:// is a dict and stays inline.
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="lwfsm-store")
        self._inline = store.url.startswith("memory://")
        self._adapter: asyncio.Future[Any] | None = None  # lwfsm.provider.adapter (LiteLLM), once imported
        self._clients: dict[str, Any] = {}  # role -> LiteLLM's OpenAI client for Anthropic clients (`_tidy_client`)
        self._supported: dict[str, frozenset[str] | None] = {}  # model -> the Chat parameters LiteLLM takes for it
        self._dropped: set[tuple[str, str, tuple[str, ...]]] = set()  # (role, model, params) already logged
        self.key: str | None = None
        if api_key_env:
            self.key = self.env.get(api_key_env) or None
            if not self.key:
                raise LwfsmError(
                    f"--api-key-env {api_key_env}: that variable is not set (it should hold the gateway key)"
                )
        self._secrets = sorted(
            {v for b in self.roles.values() if b.api_key_env and len(v := self.env.get(b.api_key_env, "")) >= 8}
            | ({self.key} if self.key and len(self.key) >= 8 else set()),
            key=len,
            reverse=True,
        )
        self.http: aiohttp.ClientSession | None = None
        # The conversations this process stored last, with their row text: when the store still holds
        # that text, the next call takes the object instead of parsing the row again (a third of the
        # gateway's own CPU per call). Taken out while a call uses it; any other writer changes the text.
        self.pricer = PriceMap(_price_table())
        # "The lead alone": the first role the spec does not mark cheap.
        self.lead = next((r for r, d in spec.roles.items() if not d.cheap), next(iter(spec.roles)))
        self.metrics = Metrics(lambda: sum(1 for k in self.store.list() if not k.startswith(CHAINS)))
        self.draining = False  # set on SIGTERM (`drain`): /readyz says 503 while calls in flight finish
        # The specs (SIGHUP, POST /lwfsm/spec): a conversation runs under its own `conv.core`, which is
        # `self.core` (new conversations' spec) or one kept for it (lwfsm.gateway.rollout).
        self.rollout = Rollout(self)
        self.turns = GatewayLoop(self)  # load, plan, settle, compare-and-set (lwfsm.turn.loop's policy)

    # -- plumbing --

    def redact(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret.encode(), b"[redacted]")
        return data

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """A store call in a worker thread, given --store-timeout seconds: a slow or stopped store holds
        up only the calls that need it, and fails them with a 503 naming it."""
        if self._inline:
            return fn(*args)
        future = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        try:
            return await asyncio.wait_for(future, self.store_timeout)
        except TimeoutError:
            raise StoreError(
                f"store {self.store.url}: no answer within {self.store_timeout:g} s (--store-timeout): is it down, "
                "or locked by another process? Retry the request once the store answers.",
                store=self.store.url,
            ) from None

    async def _litellm(self) -> Any:
        """lwfsm's LiteLLM adapter module, imported in a worker thread on first use (it takes seconds),
        after `startup` has set LiteLLM offline."""
        if self._adapter is None:
            self._adapter = asyncio.ensure_future(asyncio.to_thread(_import_adapter))
        return await asyncio.shield(self._adapter)

    async def startup(self) -> None:
        # LiteLLM reads this when it is imported (on first use): its local price map, never a fetch of
        # the remote one (which blocked a gateway for seconds). Set here, once, for the whole process.
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        # One shared client session for every upstream call (aiohttp: httpx's connection pool cost more
        # CPU per request than the whole rest of the gateway; see tests/benchmarks/bench_gateway.py).
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, ttl_dns_cache=300),
            # No total: a long healthy stream is not cut. The upstream must connect within connect_timeout,
            # send its first byte within first_byte_timeout of the request, and from then on never go
            # quiet longer than idle_timeout (`_first_byte` switches the bound).
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.connect_timeout, sock_read=self.first_byte_timeout
            ),
            auto_decompress=True,  # a compressed reply is decoded to judge it; content-encoding is not passed on
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        self.tracing.start()

    async def shutdown(self) -> None:
        if self.http is not None:
            await self.http.close()
        for client in self._clients.values():
            await client.close()
        self.tracing.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)  # a stuck store call must not hold up the exit

    def _client_key(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        return request.headers.get("x-api-key") or None

    def _authorise(self, request: Request) -> str | None:
        presented = self._client_key(request)
        # As bytes: compare_digest refuses str with non-ASCII characters (a 500, not the 401 it is).
        if self.key is not None and (
            presented is None or not hmac.compare_digest(presented.encode(), self.key.encode())
        ):
            raise _Reject(
                401, "missing or wrong gateway key (send it as a Bearer token or x-api-key)", "authentication_error"
            )
        return presented

    def _hold(self, request: Request, size: int) -> None:
        """Count `size` more bytes of this request's body against --body-budget, or refuse the request."""
        if self.held + size > self.body_budget:
            raise _Reject(
                503,
                f"the gateway is holding {self.held} bytes of other requests' bodies; {size} more would go over "
                f"--body-budget {self.body_budget}: retry in a moment",
                "overloaded_error",
                {"retry-after": "1"},
            )
        self.held += size
        request.scope["lwfsm.held"] = request.scope.get("lwfsm.held", 0) + size

    async def _json(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        declared = request.headers.get("content-length")
        held = int(declared) if declared and declared.isdigit() else 0
        if held > self.max_body:
            raise _Reject(413, f"request body over the gateway's limit of {self.max_body} bytes")
        self._hold(request, held)  # before a byte is read: a body that cannot be held is not read
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_body:
                    raise _Reject(413, f"request body over the gateway's limit of {self.max_body} bytes")
                if size > held:  # no length given, or more than it said
                    self._hold(request, size - held)
                    held = size
                chunks.append(chunk)
        except ClientDisconnect:  # nobody to answer; not an error of the gateway's
            raise _Reject(400, "the client went away before sending the whole body") from None
        raw = b"".join(chunks)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _Reject(400, f"request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise _Reject(400, "request body is nested too deeply to read") from None
        if not isinstance(body, dict):
            raise _Reject(400, f"request body must be a JSON object, got {type(body).__name__}")
        return raw, body

    # -- the store --

    def _record(self, key: str, text: str) -> _Record:
        state, last, lines = split(self.store.url, key, text)
        try:
            meta = json.loads(lines[0]) if lines else {}
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise SnapshotError(f"session {key!r}: the gateway's line of the row is not a JSON object")
        return _Record(self.rollout.restore(key, state), last, meta, lines[1:])

    async def _load(self, call: _Call) -> _Loaded:
        turn = await self.turns.abegin(call.ident.key, call.messages, side=call.side is not None, headers=call.headers)
        stored = turn.stored
        record = _Record(turn.conv, stored.key, meta_of(call.ident.key, stored.lines), list(stored.lines[1:]))
        return _Loaded(turn.conv, stored.version, record, turn.retry, turn.plan, turn)

    async def _commit(
        self,
        call: _Call,
        loaded: _Loaded,
        role: str,
        reply: dict[str, Any] | None,
        usage: Any,
        answered_by: Any = None,  # the model the upstream's answer names
    ) -> str | None:
        """Settle the call and write it back through the conversation loop (lwfsm.turn.loop: a lost race
        settles it again on the newer state, served by `role`). The turn the call was recorded as (a
        concurrent call of the conversation may have taken the one planned)."""
        self.tracing.answered(answered_by, usage)
        model = self.roles[role].model
        latency = time.perf_counter() - call.started
        used = call.usage = Usage.of(usage)  # None (no usage reported): unknown, never zero
        if call.side is not None and loaded.version == 0:
            # A side call that opens no conversation (a Codex title comes on a thread of its own, a
            # Claude Code title before the first turn): counted in /metrics, stored nowhere, so the
            # gateway lists no conversation without turns.
            self._count(self.spec, role, model, used, None)
            return None
        seen: dict[str, Any] = {}

        def lines(stored: Stored, judged: Judged | None) -> list[str]:
            """The gateway's lines of the row, on the state this attempt settled."""
            meta = meta_of(call.ident.key, stored.lines)
            record = _Record(stored.conv, None, meta, list(stored.lines[1:]))
            seen.update(meta=meta, switched=False)
            if judged is not None:
                record.add(judged.record(call.ident.session))
                if self.trace is not None:
                    self.trace.name(meta, call.ident.key)
                spec, before, after = stored.conv.core.spec, judged.transition.source, judged.transition.dest
                if spec.states[before].role != spec.states[after].role:
                    self._switched(spec, meta, judged.pending.turn, before, after, judged.event, judged.reason)
                    meta["last_switch"]["handoff"] = loaded.turn.plan.note
                    seen["switched"] = True
            meta.update(session=call.ident.session, source=call.ident.source, agent=call.ident.agent)
            return [json.dumps(meta), *record.history]

        try:
            done = await self.turns.acommit(
                loaded.turn,
                role=role,
                model=model,
                reply=reply,
                tools=call.tools,
                usage=used,
                latency=latency,
                lines=lines,
            )
        except Conflict as exc:  # not an acknowledgement: the client must not take a turn nobody recorded
            raise StoreError(str(exc), store=self.store.url, session=call.ident.key) from None
        judged, conv = done.judged, done.stored.conv
        spec = conv.core.spec
        if seen["switched"] and judged is not None:  # logged once stored: a write lost to another call switched nothing
            t = judged.transition
            logger.info(
                "session %s turn %d: %s -> %s (%s -> %s) on %s%s",
                call.ident.key,
                judged.pending.turn,
                t.source,
                t.dest,
                spec.states[t.source].role,
                spec.states[t.dest].role,
                judged.event,
                f" ({judged.reason})" if judged.reason else "",
            )
        self._count(spec, role, model, used, judged)
        if self.trace is not None and judged is not None:
            p = judged.pending
            self.trace.write(seen["meta"], judged.record(call.ident.key, self.pricer(p.model, p.usage)))
        call.turn = str(conv.pending.turn) if conv.pending is not None else None
        self.tracing.committed(call.turn, judged)
        return call.turn

    def _switched(
        self, spec: Spec, meta: dict[str, Any], turn: int, before: str, after: str, event: str, reason: str | None
    ) -> None:
        # A fallback is a judged turn handing a cheap role's work back to a strong one; a manual event is not.
        """Keep the last switch and the switch counts in the record (history keeps only recent turns)."""
        states, roles = spec.states, spec.roles
        meta["last_switch"] = {"turn": turn, "from": before, "to": after, "event": event, "reason": reason}
        meta["switches"] = meta.get("switches", 0) + 1
        manual = not spec.events[event].turn
        if not manual and roles[states[before].role].cheap and not roles[states[after].role].cheap:
            meta["fallbacks"] = meta.get("fallbacks", 0) + 1  # a cheap role handed back to a strong one

    def _count(self, spec: Spec, role: str, model: str, usage: Usage, judged: Any) -> None:
        self.metrics.call(role, usage, self.pricer(model, usage))
        if judged is not None:
            self.metrics.turns.labels(judged.pending.role, judged.event).inc()
            before, after = judged.transition.source, judged.transition.dest
            if spec.states[before].role != spec.states[after].role:
                self.metrics.switches.labels(before, after, judged.event).inc()

    def _failed(self, role: str, status: int | str) -> None:
        self.metrics.errors.labels(role, self.roles[role].model, str(status)).inc()
        self.tracing.failed(status)

    async def metrics_page(self, request: Request) -> Response:
        if (denied := self._control(request)) is not None:
            return denied
        return Response(await self._io(self.metrics.text), headers={"content-type": CONTENT_TYPE_LATEST})

    # -- probes (no key, no upstream: a load balancer's and an orchestrator's view) --

    async def healthz(self, request: Request) -> Response:
        """Alive: the process serves requests."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready: the spec is loaded and the store answers a read within --store-timeout (through the same
        worker threads as the turns' store calls, so a stopped or locked store shows here as it would there)."""
        if self.draining:
            return JSONResponse({"status": "draining"}, 503)
        try:
            await self._io(self.store.get, PROBE_KEY)
        except StoreError as exc:  # no answer in time, refused, unreachable: named, password redacted
            return JSONResponse({"status": "unavailable", "store": self.store.url, "reason": str(exc)}, 503)
        return JSONResponse({"status": "ready", "spec": self.spec.name, "store": self.store.url})

    # -- the turn endpoints --

    async def chat_completions(self, request: Request) -> Response:
        return await self._turn(request, "openai")

    async def messages(self, request: Request) -> Response:
        return await self._turn(request, "anthropic")

    async def count_tokens(self, request: Request) -> Response:
        """Anthropic's token count for a request, as the role that would serve it counts; not a turn,
        nothing is stored. Counted locally with LiteLLM's tokenizers (no upstream call)."""
        try:
            call = await self._read(request, "anthropic")
            loaded = await self._load(call)
        except _Reject as exc:
            return JSONResponse(error_body("anthropic", exc.status, exc.message, exc.kind), exc.status, exc.headers)
        except RecursionError:
            return JSONResponse(error_body("anthropic", 400, "request content is nested too deeply to read"), 400)
        except SnapshotError as exc:
            return JSONResponse(error_body("anthropic", 409, f"stored conversation unusable: {exc}"), 409)
        litellm = (await self._litellm()).litellm
        role = loaded.plan.role
        model = self.roles[role].model
        system = call.body.get("system")
        messages = [{"role": "system", "content": system}] if isinstance(system, str) and system else []
        try:
            # Seconds on a long conversation: in a thread, so other requests go on.
            count = await asyncio.to_thread(litellm.token_counter, model=model, messages=[*messages, *call.messages])
        except Exception as exc:  # a tokenizer that cannot read this request: say so, in Anthropic's shape
            return JSONResponse(error_body("anthropic", 400, f"cannot count tokens for {model}: {exc}"), 400)
        return JSONResponse({"input_tokens": int(count)}, headers=self._headers(call, loaded, role))

    async def _turn(self, request: Request, protocol: Protocol) -> Response:
        started = time.perf_counter()
        with self.tracing.call(request.headers, request.method, request.url.path) as traced:
            response = await self._serve(request, protocol)
            self.metrics.latency.labels(request.url.path).observe(time.perf_counter() - started)
            _log_error(request, response)
            return traced.send(response)

    async def _serve(self, request: Request, protocol: Protocol) -> Response:
        try:
            call = await self._read(request, protocol)
        except _Reject as exc:
            return JSONResponse(error_body(protocol, exc.status, exc.message, exc.kind), exc.status, exc.headers)
        except RecursionError:  # content nested deeper than reading it allows (the body parsed)
            return JSONResponse(error_body(protocol, 400, "request content is nested too deeply to read"), 400)
        return await self._run(call)

    async def _run(self, call: _Call) -> Response:
        protocol = call.protocol
        try:
            loaded = await self._load(call)
        except SnapshotError as exc:
            return JSONResponse(error_body(protocol, 409, f"stored conversation unusable: {exc}"), 409)
        self.tracing.planned(call.ident.key, call.body.get("model"), call.stream, loaded.plan, call.side, loaded.retry)
        roles = loaded.conv.core.roles_for(loaded.plan)
        body, raw = call.body, call.raw  # as the client sent them; each role's model gets them fitted
        for i, role in enumerate(roles):
            binding = self.roles[role]
            headers = self._headers(call, loaded, role)
            final = i == len(roles) - 1
            self.tracing.attempt(role, binding.model, i, call.stream)
            fast = not self.mock and self._fast(protocol, binding)
            call.body, call.raw = await self._fit(call, body, raw, role, binding, fast)
            if fast:
                result = await self._forward(call, loaded, role, binding, headers, final)
            else:
                result = await self._translate(call, loaded, role, binding, headers, final)
            if result is not None:
                return result
        return JSONResponse(error_body(protocol, 502, "no upstream answered"), 502)  # pragma: no cover

    async def _read(self, request: Request, protocol: Protocol) -> _Call:
        client_key = self._authorise(request)
        raw, body = await self._json(request)
        _check_shape(body)
        why = params.refused("chat" if protocol == "openai" else "messages", body)
        if why is not None:
            raise _Reject(400, why)
        headers = request.headers  # case-insensitive
        if protocol == "openai":
            messages = body["messages"]
            tools = body.get("tools") or []
            system = "\n".join(
                wire.first_user_text([{"role": "user", "content": m.get("content")}])
                for m in messages
                if m.get("role") in ("system", "developer")
            )
        else:
            messages = wire.anthropic_messages(body)
            tools = wire.anthropic_tools(body.get("tools"))
            sysval = body.get("system")
            system = sysval if isinstance(sysval, str) else wire.first_user_text([{"role": "user", "content": sysval}])
        return self._call(protocol, headers, body, raw, messages, tools, system, client_key, body)

    @staticmethod
    def _call(
        protocol: Protocol,
        headers: Mapping[str, str],
        body: dict[str, Any],
        raw: bytes,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        system: str,
        client_key: str | None,
        sent: Mapping[str, Any],  # the body the client sent (its ids identify the conversation)
    ) -> _Call:
        names = [str((t.get("function") or {}).get("name")) for t in tools]
        ident = identify(headers, sent, messages, system, names, client_key)
        side = side_call(headers, sent, messages, system)
        return _Call(
            protocol,
            body,
            raw,
            messages,
            # Judging reads only the tools' names: the stored turn keeps no schemas (Claude Code's 24
            # tools are 65 KB of JSON, which every call would otherwise write and parse again).
            [{"type": "function", "function": {"name": n}} for n in names],
            ident,
            "r:" + hashlib.sha256(raw).hexdigest()[:32],
            headers,
            bool(body.get("stream")),
            time.perf_counter(),
            side,
        )

    # -- the Responses API: translated to one Chat Completions call --

    async def responses(self, request: Request) -> Response:
        started = time.perf_counter()
        with self.tracing.call(request.headers, request.method, request.url.path) as traced:
            try:
                response = await self._responses(request)
            except RecursionError:  # input items nested deeper than reading them allows
                response = JSONResponse(error_body("openai", 400, "request content is nested too deeply to read"), 400)
            self.metrics.latency.labels(request.url.path).observe(time.perf_counter() - started)
            _log_error(request, response)
            return traced.send(response)

    def _chain_key(self, client_key: str | None, rid: str) -> str:
        # Scoped by the client's key, like conversations: one client cannot continue another's chain.
        return hashlib.sha256((client_key or "").encode()).hexdigest()[:16] + ":" + rid

    def _chain(self, client_key: str | None, rid: str) -> list[dict[str, Any]]:
        """The messages behind response `rid`, oldest first. Each response is stored once, with what its
        call added (input and reply) and the id it continued: a chain of N calls is N rows, not N² messages.
        Runs in a store thread (one row per link)."""
        parts: list[list[dict[str, Any]]] = []
        at: str | None = rid
        while at is not None:
            found = self.chains.get(self._chain_key(client_key, at))
            if found is None:
                gone = "is unknown to this gateway" if at == rid else f"continues {at!r}, which is no longer kept"
                raise _Reject(
                    404,
                    f"previous_response_id {rid!r} {gone} (responses sent with store=false are not kept, and kept "
                    "ones expire with the store's TTL; send the whole input instead)",
                    "not_found_error",
                )
            link = json.loads(found[1])
            parts.append(link["messages"])
            at = link.get("prev")
        return [m for part in reversed(parts) for m in part]

    async def _responses(self, request: Request) -> Response:
        """`POST /v1/responses`. The conversation (the chain behind `previous_response_id` plus this
        input) becomes one Chat Completions request served like any other call: judged, routed to the
        role's model (forwarded, or through LiteLLM), settled. A streamed Responses call asks for a
        streamed reply, whose chunks are sent on as Responses events as they come (`_responses_stream`).
        Chains live in the gateway's store."""
        try:
            client_key = self._authorise(request)
            raw, body = await self._json(request)
            why = params.refused("responses", body)
            if why is not None:
                raise _Reject(400, why)
            if not isinstance(body.get("input"), str | list):
                raise _Reject(400, "'input' must be a string or a list of items")
            if body.get("stream") not in (None, True, False):
                raise _Reject(400, f"'stream' must be true or false, got {body['stream']!r:.40}")
            if body.get("tools") is not None and not isinstance(body["tools"], list):
                raise _Reject(400, "'tools' must be a list")
            previous: list[dict[str, Any]] = []
            prev = body.get("previous_response_id")
            if prev is not None and not isinstance(prev, str):
                raise _Reject(400, "'previous_response_id' must be a string")
            if prev is not None:
                previous = await self._io(self._chain, client_key, prev)
        except _Reject as exc:
            return JSONResponse(error_body("openai", exc.status, exc.message, exc.kind), exc.status, exc.headers)
        added = wire.responses_messages(body["input"])
        messages = previous + added
        instructions = body.get("instructions")
        full = ([{"role": "system", "content": str(instructions)}] if instructions else []) + messages
        tools = wire.responses_tools(body.get("tools"))
        chat = wire.responses_chat_request(body, full, tools)
        system = str(instructions or "") or "\n".join(
            str(m["content"]) for m in messages if m["role"] in ("system", "developer")
        )
        raw_chat = json.dumps(chat).encode()
        call = self._call("openai", request.headers, chat, raw_chat, full, tools, system, client_key, body)
        result = await self._run(call)
        if result.status_code != 200:
            return result  # an error before the first byte: the status and the error body, as they are
        lw = {k: v for k, v in result.headers.items() if k.startswith("x-lwfsm")}
        rid = "resp_" + os.urandom(12).hex()
        chain = self._chain_key(client_key, rid) if body.get("store", True) is not False else None
        if body.get("stream"):
            # An upstream that ignored `stream: true` answered one body (its turn already recorded): the
            # client asked for events, so that body is sent on as the events of a one-chunk stream.
            chunks = (
                result.body_iterator
                if isinstance(result, StreamingResponse)
                else _once(wire.openai_chunk(json.loads(bytes(result.body))))
            )
            shaper = wire.ResponsesStream(rid, body, int(time.time()))
            events = self._responses_stream(call, chunks, shaper, chain, prev, added)
            return StreamingResponse(events, headers=lw, media_type="text/event-stream")
        reply, usage = wire.openai_reply(json.loads(bytes(result.body)))
        if reply is None:  # pragma: no cover - _run answers 502 before this
            return JSONResponse(error_body("openai", 502, "the upstream's response has no message"), 502, headers=lw)
        out = wire.responses_object(rid, body, reply, usage, int(time.time()))
        if chain is not None:
            await self._io(self.chains.put, chain, json.dumps({"prev": prev, "messages": [*added, reply]}), 0)
        return _Ascii(out, headers=lw)  # ASCII: the reply may hold a lone surrogate

    async def _responses_stream(
        self,
        call: _Call,
        chat: AsyncIterable[Any],
        out: wire.ResponsesStream,
        chain: str | None,
        prev: str | None,
        added: list[dict[str, Any]],
    ) -> AsyncIterator[bytes]:
        """The Chat Completions stream `_run` serves (`_relay` or `_litellm_stream`, which settle the
        turn before they end; or a whole reply, already settled, as one chunk) as Responses events. The
        chain is stored, and `response.completed` sent, only once that stream has ended whole: a cut
        stream records nothing and the client sees no end."""
        reader = wire.SSEReader()
        yield out.start()
        try:
            async for chunk in chat:
                data = b"".join(out.add(e) for e in reader.feed(chunk if isinstance(chunk, bytes) else chunk.encode()))
                if data:
                    yield data
        finally:
            aclose = getattr(chat, "aclose", None)
            if aclose is not None:
                await aclose()  # the upstream connection goes back to the pool even if the client left
        if not out.acc.done:
            return
        if chain is not None:
            link = {"prev": prev, "messages": [*added, out.acc.reply()]}
            await self._io(self.chains.put, chain, json.dumps(link), 0)
        yield out.finish() + (_recorded(call.turn) if call.turn is not None else b"")

    def _headers(self, call: _Call, loaded: _Loaded, role: str) -> dict[str, str]:
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
            "x-lwfsm-model": self.roles[role].model,
        }
        if not call.ident.confident:
            out["x-lwfsm-session-confidence"] = "low"
        if call.side is not None:
            out["x-lwfsm-side-call"] = call.side
        if plan.note:
            out["x-lwfsm-handoff"] = str(len(plan.note))  # the characters of the note this call carries
        return out

    @staticmethod
    def _fast(protocol: Protocol, binding: RoleBinding) -> bool:
        prefix = binding.model.split("/", 1)[0]
        if binding.model.startswith("openai/responses/"):  # an upstream with the Responses API only: LiteLLM's bridge
            return False
        return (protocol == "openai" and prefix == "openai") or (protocol == "anthropic" and prefix == "anthropic")

    async def _fit(
        self, call: _Call, body: dict[str, Any], raw: bytes, role: str, binding: RoleBinding, fast: bool
    ) -> tuple[dict[str, Any], bytes]:
        """The request body and bytes for this role's model: what it cannot take dropped (`targets`), with
        a log line the first time a role's model drops those parameters."""
        model = binding.model
        supported = None
        if not fast and call.protocol == "openai":
            if model not in self._supported:
                self._supported[model] = _supported_params((await self._litellm()).litellm, model)
            supported = self._supported[model]
        reasoning = targets.reasons(model, self.pricer)
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

    def _upstream(self, call: _Call, binding: RoleBinding) -> tuple[str, dict[str, str]]:
        key = self.env.get(binding.api_key_env) if binding.api_key_env else None
        headers = {"content-type": "application/json"}
        if call.protocol == "openai":
            base = (binding.api_base or "https://api.openai.com/v1").rstrip("/")
            if key:
                headers["authorization"] = f"Bearer {key}"
            return base + "/chat/completions", headers
        base = (binding.api_base or "https://api.anthropic.com").rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        if key:
            headers["x-api-key"] = key
        headers["anthropic-version"] = call.headers.get("anthropic-version", "2023-06-01")
        if call.headers.get("anthropic-beta"):
            headers["anthropic-beta"] = call.headers["anthropic-beta"]
        return base + "/messages", headers

    async def _forward(
        self, call: _Call, loaded: _Loaded, role: str, binding: RoleBinding, lw: dict[str, str], final: bool
    ) -> Response | None:
        """The fast path: the client's bytes (model replaced) to an upstream of the same protocol."""
        assert self.http is not None
        url, headers = self._upstream(call, binding)
        model = binding.model.split("/", 1)[1]
        if binding.options:
            content = json.dumps({**binding.options, **call.body, "model": model}).encode()
        else:
            content = wire.with_model(call.raw, call.body, model)
        if note := loaded.plan.note:  # at the end of the messages, every earlier byte as the client sent it
            content = wire.noted(content, {**binding.options, **call.body, "model": model}, call.protocol, note)
        try:
            upstream = await self.http.post(url, data=content, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._failed(role, "unreachable")
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                why = f"no connection within {self.connect_timeout:g} s (--connect-timeout)"
            elif isinstance(exc, aiohttp.SocketTimeoutError):
                why = f"no first byte within {self.first_byte_timeout:g} s (--first-byte-timeout)"
            else:
                why = type(exc).__name__
            if not final:
                logger.warning(
                    "session %s: %s upstream unreachable (%s); trying the next role", call.ident.key, role, why
                )
                return None
            msg = f"{role} upstream unreachable: {why}"
            return JSONResponse(error_body(call.protocol, 502, msg, "api_error"), 502, headers=lw)
        self._first_byte(upstream)
        if upstream.status >= 400:
            data = await upstream.read()
            upstream.release()
            self._failed(role, upstream.status)
            if upstream.status >= 500 and not final:
                logger.warning(
                    "session %s: %s upstream answered %d; trying the next role",
                    call.ident.key,
                    role,
                    upstream.status,
                )
                return None
            out = {**lw, "content-type": upstream.headers.get("content-type", "application/json")}
            if "retry-after" in upstream.headers:
                out["retry-after"] = upstream.headers["retry-after"]
            return Response(self.redact(data), upstream.status, headers=out)
        passthrough = {
            k: v for k, v in upstream.headers.items() if k.lower() not in _HOP and not k.lower().startswith("x-lwfsm")
        }
        passthrough.update(lw)
        # An upstream that ignores `stream: true` answers one JSON body: the client gets it as it came,
        # and it is recorded like any whole reply.
        if not call.stream or upstream.content_type == "application/json":
            try:
                data = await upstream.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = type(exc).__name__
                if isinstance(exc, aiohttp.SocketTimeoutError):
                    why = f"quiet for {self.idle_timeout:g} s (--idle-timeout)"
                msg = f"{role} upstream broke off: {why}"
                return JSONResponse(error_body(call.protocol, 502, msg, "api_error"), 502, headers=lw)
            finally:
                upstream.release()
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = {}
            if not isinstance(parsed, dict):  # valid JSON, not a reply (a list, a string): no message in it
                parsed = {}
            reply, usage = (wire.openai_reply if call.protocol == "openai" else wire.anthropic_reply)(parsed)
            if reply is None and not loaded.plan.side:
                msg = f"the {role} upstream's response has no assistant message; nothing was recorded"
                return JSONResponse(error_body(call.protocol, 502, msg, "api_error"), 502, headers=lw)
            if (turn := await self._commit(call, loaded, role, reply, usage, parsed.get("model"))) is not None:
                passthrough["x-lwfsm-turn"] = turn
            passthrough.update(_usage_header(call))
            return Response(data, upstream.status, headers=passthrough)
        return StreamingResponse(self._relay(call, loaded, role, upstream), upstream.status, headers=passthrough)

    def _first_byte(self, upstream: aiohttp.ClientResponse) -> None:
        """The upstream has answered (its status and headers came): from now on it may go quiet for
        idle_timeout between reads, no longer first_byte_timeout. aiohttp restarts its read timer on each
        read with the connection's read_timeout, which is set per response; restarted here so the first
        wait is bounded too. (A body already read whole has no timer left to restart.)"""
        protocol = upstream.connection.protocol if upstream.connection is not None else None
        if protocol is not None and not upstream.content.is_eof():
            protocol.read_timeout = self.idle_timeout
            protocol.start_timeout()

    async def _relay(
        self, call: _Call, loaded: _Loaded, role: str, upstream: aiohttp.ClientResponse
    ) -> AsyncIterator[bytes]:
        reader = wire.SSEReader()
        acc: wire.OpenAIStream | wire.AnthropicStream = (
            wire.OpenAIStream(_names(call)) if call.protocol == "openai" else wire.AnthropicStream()
        )
        options = call.body.get("stream_options")
        # The usage chunk comes after the finish chunk: when it was asked for, the call settles with it.
        usage = call.protocol == "openai" and isinstance(options, Mapping) and bool(options.get("include_usage"))
        settled = False
        try:
            async for chunk in upstream.content.iter_any():
                for event in reader.feed(chunk):
                    acc.add(event)
                # (A server that ignores `include_usage` ends with [DONE] and no usage: settle then.)
                if acc.done and not settled and (acc.usage is not None or not usage or reader.ended):
                    # Commit before the client sees the end of the stream: once it has the end it
                    # may send the next call, or the gateway may be stopped; the turn must be stored.
                    settled = True
                    await self._settle_stream(call, loaded, role, acc)
                yield chunk
        finally:
            upstream.release()
        if not settled:
            await self._settle_stream(call, loaded, role, acc)
        if call.turn is not None:
            yield _recorded(call.turn, reader.partial)

    async def _settle_stream(
        self, call: _Call, loaded: _Loaded, role: str, acc: wire.OpenAIStream | wire.AnthropicStream
    ) -> None:
        if not acc.done:
            logger.warning("session %s: the %s stream ended early; nothing was recorded", call.ident.key, role)
            return
        if isinstance(acc, wire.OpenAIStream):
            await self._commit(call, loaded, role, acc.reply(), acc.usage, acc.model)
        else:
            reply, usage = acc.reply()
            await self._commit(call, loaded, role, reply, usage, acc.model)

    # -- through LiteLLM, when the upstream speaks the other protocol (or --mock) --

    async def _translate(
        self, call: _Call, loaded: _Loaded, role: str, binding: RoleBinding, lw: dict[str, str], final: bool
    ) -> Response | None:
        adapter = await self._litellm()
        litellm = adapter.litellm
        # Only the client's protocol parameters (checked at intake) reach LiteLLM, less those it would
        # act on itself; where the call goes and its key come from the binding, applied last.
        kwargs: dict[str, Any] = {
            k: v for k, v in call.body.items() if k != "model" and k not in params.NOT_FOR_LITELLM
        }
        kwargs.update(binding.call_kwargs(self.env))
        if self.mock:
            kwargs["mock_response"] = f"[{binding.model} as the {role}] mock reply"
        if loaded.plan.note:
            kwargs["messages"] = wire.note_messages(call.protocol, kwargs.get("messages") or [], loaded.plan.note)
        # A self-hosted OpenAI-compatible server (an api_base) with its key or keyless: LiteLLM's calls to it
        # through a client that tidies them (`sse_fix`). OpenAI's own API needs none (nor loses proxy settings).
        if (
            call.protocol == "anthropic"
            and binding.model.startswith("openai/")
            and binding.api_base
            and "api_key" in kwargs
        ):
            kwargs["client"] = self._tidy_client(role, kwargs)
        try:
            if call.protocol == "openai":
                result = await litellm.acompletion(**kwargs)
            else:
                if self.mock:
                    kwargs.pop("stream", None)  # LiteLLM's mock answers Messages whole: streamed below
                result = await litellm.anthropic_messages(**kwargs)
        except Exception as exc:
            kind = adapter.classify(exc)
            self._failed(role, getattr(exc, "status_code", None) or type(exc).__name__)
            if kind == "retry" and not final:
                logger.warning(
                    "session %s: %s model failed (%s); trying the next role", call.ident.key, role, type(exc).__name__
                )
                return None
            status = getattr(exc, "status_code", None)
            status = status if isinstance(status, int) and 400 <= status < 600 else 502
            out = dict(lw)
            wait = adapter.retry_after(exc)
            if wait is not None:
                out["retry-after"] = str(int(wait))
            msg = self.redact(f"{role} model {binding.model}: {type(exc).__name__}: {exc}".encode()).decode()
            return JSONResponse(error_body(call.protocol, status, msg, "api_error"), status, headers=out)
        if call.protocol == "openai" and not call.stream:
            data = result.model_dump(mode="json", exclude_none=True)
            reply, usage = wire.openai_reply(data)
            if (turn := await self._commit(call, loaded, role, reply, usage, data.get("model"))) is not None:
                lw["x-lwfsm-turn"] = turn
            lw.update(_usage_header(call))
            return _Ascii(data, headers=lw)
        if call.protocol == "openai":
            return StreamingResponse(
                self._litellm_stream(call, loaded, role, result), headers=lw, media_type="text/event-stream"
            )
        if isinstance(result, Mapping):
            message = dict(result)
            if call.stream:
                return StreamingResponse(
                    self._replay(call, loaded, role, wire.anthropic_events(message)),
                    headers=lw,
                    media_type="text/event-stream",
                )
            reply, usage = wire.anthropic_reply(message)
            if usage is not None and not (usage["prompt_tokens"] or usage["completion_tokens"]):
                usage = None  # no call reads no tokens: LiteLLM's zeros for an upstream that reported none
            if (turn := await self._commit(call, loaded, role, reply, usage, message.get("model"))) is not None:
                lw["x-lwfsm-turn"] = turn
            lw.update(_usage_header(call))
            return _Ascii(message, headers=lw)
        return StreamingResponse(
            self._bytes_stream(call, loaded, role, result, adapter.anthropic_reported),
            headers=lw,
            media_type="text/event-stream",
        )

    def _tidy_client(self, role: str, kwargs: Mapping[str, Any]) -> Any:
        """The role's OpenAI SDK client for LiteLLM, its streams tidied (`sse_fix`), made once per role."""
        if role not in self._clients:
            from . import sse_fix

            base = kwargs["api_base"]
            self._clients[role] = sse_fix.client(base, kwargs["api_key"], self.connect_timeout, self.idle_timeout)
        return self._clients[role]

    async def _litellm_stream(self, call: _Call, loaded: _Loaded, role: str, stream: Any) -> AsyncIterator[bytes]:
        acc = wire.OpenAIStream(_names(call))
        async for chunk in stream:
            data = chunk.model_dump(mode="json", exclude_none=True)
            acc.add(data)
            yield b"data: " + json.dumps(data).encode() + b"\n\n"
        acc.done = True
        # What the provider counted, whether or not the client asked for a usage chunk; never LiteLLM's
        # estimate (None: unknown).
        acc.usage = (await self._litellm()).provider_usage(stream)
        await self._settle_stream(call, loaded, role, acc)  # stored before the client sees the end
        yield b"data: [DONE]\n\n" + (_recorded(call.turn) if call.turn is not None else b"")

    async def _replay(self, call: _Call, loaded: _Loaded, role: str, data: bytes) -> AsyncIterator[bytes]:
        acc = wire.AnthropicStream()
        for event in wire.SSEReader().feed(data):
            acc.add(event)
        await self._settle_stream(call, loaded, role, acc)  # stored before the client sees the end
        yield data + (_recorded(call.turn) if call.turn is not None else b"")

    async def _bytes_stream(
        self, call: _Call, loaded: _Loaded, role: str, stream: Any, reported: Callable[[Any], bool]
    ) -> AsyncIterator[bytes]:
        """An Anthropic stream LiteLLM translated from another protocol's upstream, recorded as it ends."""
        reader, acc = wire.SSEReader(), wire.AnthropicStream()
        settled = False
        async for chunk in stream:
            data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
            for event in reader.feed(data):
                acc.add(event)
            if acc.done and not settled and not reported(stream):
                acc.usage = {}  # LiteLLM's estimate of tokens the upstream did not report: unknown, not measured
            if acc.done and not settled:
                settled = True
                await self._settle_stream(call, loaded, role, acc)  # stored before the client sees the end
            yield data
        if not settled:
            await self._settle_stream(call, loaded, role, acc)
        if call.turn is not None:
            yield _recorded(call.turn, reader.partial)

    # -- models --

    async def models(self, request: Request) -> Response:
        try:
            self._authorise(request)
        except _Reject as exc:
            return JSONResponse(error_body("openai", exc.status, exc.message, exc.kind), exc.status)
        ids = ["lwfsm", *(f"lwfsm-{r}" for r in self.roles)]
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

    # -- the control API --

    def _control(self, request: Request) -> Response | None:
        """The control API (and /metrics) lists, changes and deletes every client's conversations: with
        a gateway key it needs that key; without one it answers this host's clients only."""
        try:
            self._authorise(request)
        except _Reject as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        if self.key is None and not is_loopback(request.client.host if request.client else ""):
            message = "the control API answers other hosts only when the gateway has a key (lwfsm serve --api-key-env)"
            return JSONResponse({"error": message}, 403)
        return None

    def _summary(self, key: str, record: _Record) -> dict[str, Any]:
        conv, meta = record.conv, record.meta
        state = conv.session.state
        ledger, lead = conv.ledger, self.roles[self.lead].model
        return {
            "id": key,
            "session": meta.get("session"),
            "source": meta.get("source"),
            "agent": meta.get("agent"),
            "state": state,
            "role": conv.core.spec.states[state].role,
            "model": self.roles[conv.core.spec.states[state].role].model,
            "turn": conv.session.turn,
            "version": conv.version,
            "last_switch": meta.get("last_switch"),
            "switches": meta.get("switches", 0),
            "fallbacks": meta.get("fallbacks", 0),
            "calls": ledger.calls,
            "unknown_usage_calls": sum(r.usage.unreported for r in ledger.rows),  # their cost is unknown too
            "cost": ledger.cost(self.pricer),
            "lead_cost": ledger.cost_on(lead, self.pricer),
            "calls_by_role": {r: sum(x.calls for x in ledger.rows if x.role == r) for r in self.roles},
        }

    async def list_sessions(self, request: Request) -> Response:
        if (denied := self._control(request)) is not None:
            return denied
        out, unreadable = [], []
        for key in await self._io(self.store.list):
            if key.startswith(CHAINS):
                continue
            found = await self._io(self.store.get, key)
            if found is None:
                continue
            try:
                out.append(self._summary(key, self._record(key, found[1])))
            except _UNREADABLE as exc:  # one bad row must not hide every other conversation
                unreadable.append({"id": key, "error": str(exc)})
        return _Ascii({"sessions": out, "unreadable": unreadable, "totals": _totals(out, list(self.roles))})

    async def _find(self, key: str) -> tuple[int, _Record] | Response:
        found = await self._io(self.store.get, key)
        if found is None:
            return JSONResponse({"error": f"no session {key!r} (GET /lwfsm/sessions lists them)"}, 404)
        try:
            return found[0], self._record(key, found[1])
        except _UNREADABLE as exc:
            message = f"session {key!r} cannot be read: {exc}; DELETE /lwfsm/sessions/{key} removes it"
            return _Ascii({"error": message}, 409)

    async def get_session(self, request: Request) -> Response:
        if (denied := self._control(request)) is not None:
            return denied
        key = request.path_params["id"]
        found = await self._find(key)
        if isinstance(found, Response):
            return found
        record = found[1]
        conv = record.conv
        from ..diagram import mermaid

        out = self._summary(key, record)
        state = conv.state().model_dump(mode="json")
        out.update(
            counters=conv.session.counters,
            pending=state["pending"],
            history=[json.loads(line) for line in record.history],
            ledger=state["ledger"],
            diagram=mermaid(conv.core.spec, snapshot=conv.session.snapshot()),
            manual_events=[e for e, d in conv.core.spec.events.items() if not d.turn],
            handoff_waiting=conv.note,  # a note the next call will carry (an operator's, with a manual event)
        )
        return _Ascii(out)

    async def fire(self, request: Request) -> Response:
        if (denied := self._control(request)) is not None:
            return denied
        key, event = request.path_params["id"], request.path_params["event"]
        if event not in self.spec.events:
            known = ", ".join(self.spec.events)
            return JSONResponse({"error": f"unknown event {event!r}; spec '{self.spec.name}' has: {known}"}, 404)
        note = await _operator_note(request)
        if isinstance(note, Response):
            return note
        found = await self._find(key)  # absent or unreadable: said as the control API says it
        if isinstance(found, Response):
            return found
        fired: dict[str, Any] = {}

        def change(stored: Stored) -> Any:
            conv = stored.conv
            fired["turn"] = conv.session.turn  # before the event: a reset starts counting again
            fired["rec"] = conv.core.fire(conv, event, "fired through the control API", note)
            return fired["rec"]

        def lines(stored: Stored, _: Any) -> list[str]:
            conv, rec = stored.conv, fired["rec"]
            record = fired["record"] = _Record(conv, stored.key, meta_of(key, stored.lines), list(stored.lines[1:]))
            spec = conv.core.spec
            if spec.states[rec.source].role != spec.states[rec.dest].role:
                self._switched(
                    spec, record.meta, fired["turn"], rec.source, rec.dest, event, "fired through the control API"
                )
            # In the timeline too: a turn event fired by hand counts a turn no model served.
            record.add(
                {
                    "turn": rec.turn,
                    "state": rec.source,
                    "role": None,
                    "model": None,
                    "outcome": event,
                    "reason": "fired through the control API",
                    "handoff": conv.note,  # waiting for the next call
                    "transition": {"source": rec.source, "dest": rec.dest, "index": rec.transition, "guard": rec.guard},
                }
            )
            return [json.dumps(record.meta), *record.history]

        try:
            rec, _stored = await self.turns.aupdate(key, change, lines=lines)
        except TransitionNotAllowed as exc:
            return JSONResponse({"error": str(exc)}, 409)
        except Conflict:
            return JSONResponse({"error": "the session kept changing; try again"}, 409)
        if rec is None:  # deleted meanwhile
            return JSONResponse({"error": f"no session {key!r} (GET /lwfsm/sessions lists them)"}, 404)
        logger.info("session %s: %s fired by hand: %s -> %s", key, event, rec.source, rec.dest)
        return _Ascii(self._summary(key, fired["record"]))

    # -- the dashboard --

    async def dashboard(self, request: Request) -> Response:
        """The dashboard page. It holds no data, so it needs no key (a reload works): its script reads
        the control API with the key it was opened with (`/lwfsm/?key=...`, then kept in the tab's
        sessionStorage, not in the address)."""
        if not request.url.path.endswith("/"):
            return RedirectResponse(request.url.replace(path=request.url.path + "/"), 307)
        page = resources.files(__package__).joinpath("dashboard.html").read_bytes()
        return Response(page, headers={"content-type": "text/html; charset=utf-8", "cache-control": "no-store"})

    async def mermaid_js(self, request: Request) -> Response:
        """mermaid 11 for the dashboard's diagram, served from a local install (3 MB: not vendored).
        Without it the page shows the diagram's text."""
        path = mermaid_js_path(self.env)
        if path is None:
            return Response(f"mermaid.min.js not found: {MERMAID_HINT}\n", 404)
        return FileResponse(path, media_type="text/javascript", headers={"cache-control": "max-age=3600"})

    async def delete_session(self, request: Request) -> Response:
        if (denied := self._control(request)) is not None:
            return denied
        key = request.path_params["id"]
        if not await self._io(self.store.delete, key):
            return JSONResponse({"error": f"no session {key!r}"}, 404)
        return Response(status_code=204)


_UNREADABLE = (LwfsmError, ValueError, KeyError, TypeError)  # what reading a damaged row can raise


def _import_adapter() -> Any:
    module = importlib.import_module("lwfsm.provider.adapter")
    # Newer LiteLLM sends a Messages call for an openai/... model to the upstream's /v1/responses, which
    # llama.cpp, older vLLM and most OpenAI-compatible servers lack; every one has chat completions. (An
    # upstream with only the Responses API is bound as openai/responses/<model>.) Older LiteLLM has no
    # such switch and always used chat completions.
    module.litellm.use_chat_completions_url_for_anthropic_messages = True
    return module


def _supported_params(litellm: Any, model: str) -> frozenset[str] | None:
    """The Chat Completions parameters LiteLLM sends on to `model` (None: it cannot say, nothing is dropped)."""
    try:
        name, provider, _, _ = litellm.get_llm_provider(model)
        found = litellm.get_supported_openai_params(model=name, custom_llm_provider=provider)
    except Exception:  # an unknown provider: LiteLLM itself will say what is wrong with the call
        return None
    return frozenset(found) if found else None


async def _operator_note(request: Request) -> str | None | Response:
    """The note a manual event may carry (`{"note": "..."}`), for the next call's model; a 400 if malformed."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    note = body.get("note") if isinstance(body, dict) and set(body) == {"note"} else None
    if isinstance(note, str) and 0 < len(note) <= MAX_NOTE:
        return note
    message = f'the body may be {{"note": "text of 1 to {MAX_NOTE} characters"}} for the next call\'s model'
    return JSONResponse({"error": message}, 400)


class _Ascii(JSONResponse):
    """JSON in ASCII: a lone surrogate a client or an upstream sent (JSON allows
    "\\ud800") is escaped again, not a 500 for UTF-8."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def _names(call: _Call) -> list[str]:
    """The tool names the request declared (what a streamed tool call's name is merged against)."""
    return [str(t["function"]["name"]) for t in call.tools]


def _usage_header(call: _Call) -> dict[str, str]:
    """x-lwfsm-usage of a reply recorded whole: the tokens recorded, or `unknown` when the upstream
    reported none (never 0)."""
    u = call.usage
    if u is None:
        return {}
    return {"x-lwfsm-usage": "unknown" if u.unreported else f"in={u.prompt_tokens} out={u.completion_tokens}"}


def _recorded(turn: str, partial: bool = False) -> bytes:
    """A stream's last line: an SSE comment (every SSE client skips it) with the turn the call was
    recorded as. A streamed reply's x-lwfsm-turn header went out before the call was recorded: it is
    the turn planned, which a concurrent call of the same conversation may have taken first.
    (After a last line the upstream left unfinished, a newline first, so the comment is a line.)"""
    return (b"\n" if partial else b"") + b": x-lwfsm-turn " + turn.encode() + b"\n\n"


class _Bodies:
    """Gives back the body bytes a request took from --body-budget (`Gateway._hold`) once it has been
    answered: when the app returns, a streamed reply has been sent whole too."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app, self.gateway = app, gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            self.gateway.held -= scope.get("lwfsm.held", 0)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"no route {request.method} {request.url.path}"}, 404)


def _check_shape(body: Mapping[str, Any]) -> None:
    """What both turn protocols require of a request before it is judged or sent anywhere: a client's
    mistake is its 400, never an upstream error (nor a call to the lead's model)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _Reject(400, "'messages' must be a list")
    if (i := next((i for i, m in enumerate(messages) if not isinstance(m, dict)), None)) is not None:
        raise _Reject(400, f"'messages[{i}]' must be an object, got {type(messages[i]).__name__}")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise _Reject(400, "'tools' must be a list of objects")
    if any(not isinstance(t.get("function", {}), dict) for t in tools or ()):
        raise _Reject(400, "a tool's 'function' must be an object")
    if body.get("stream") not in (None, True, False):
        raise _Reject(400, f"'stream' must be true or false, got {body['stream']!r:.40}")
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise _Reject(400, "'metadata' must be an object")


def _log_error(request: Request, response: Response) -> None:
    """An error a turn endpoint answers is one log line: the agent shows its user a failure (an
    unreachable upstream, a request an upstream refused, a parameter the gateway refuses), and whoever
    runs the gateway sees which and why. The body is what the client got: upstream keys already redacted."""
    if response.status_code < 400 or isinstance(response, StreamingResponse):
        return
    body = bytes(response.body)
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (AttributeError, ValueError):
        message = None
    text = printable(str(message) if message else body[:300].decode(errors="replace"))
    session = response.headers.get("x-lwfsm-session")
    where = f" session {printable(session)} ({response.headers.get('x-lwfsm-role')})" if session else ""
    logger.warning("%s %s%s: %d to the client: %s", request.method, request.url.path, where, response.status_code, text)


async def _store_failed(request: Request, exc: Exception) -> Response:
    # A store that is down, or a row that is not ours: the message names the store (password
    # redacted) and the session, and says what to do; nothing was written.
    logger.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"error": {"message": str(exc), "type": "api_error"}}, 503)


async def _crash(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": {"message": f"internal gateway error: {type(exc).__name__}", "type": "api_error"}}, 500
    )


MERMAID_HINT = "npm install --prefix ~/.cache/lwfsm-mermaid mermaid@11, or set LWFSM_MERMAID_JS to a mermaid.min.js"


def mermaid_js_path(env: Mapping[str, str]) -> str | None:
    """Where the dashboard's mermaid.min.js is: $LWFSM_MERMAID_JS, else the npm cache lwfsm's tests use."""
    home = os.path.expanduser("~/.cache/lwfsm-mermaid/node_modules/mermaid/dist/mermaid.min.js")
    path = env.get("LWFSM_MERMAID_JS") or home
    return path if os.path.isfile(path) else None


def _totals(sessions: list[dict[str, Any]], roles: list[str]) -> dict[str, Any]:
    """Across conversations: calls by role, switches, fallbacks, cost against the lead alone."""
    costs = [s["cost"] for s in sessions]
    leads = [s["lead_cost"] for s in sessions]
    cost = None if None in costs else sum(costs)
    lead = None if None in leads else sum(leads)
    return {
        "calls_by_role": {r: sum(s["calls_by_role"].get(r, 0) for s in sessions) for r in roles},
        "switches": sum(s["switches"] for s in sessions),
        "fallbacks": sum(s["fallbacks"] for s in sessions),
        "cost": cost,
        "lead_cost": lead,
        "savings": None if cost is None or lead is None else lead - cost,
    }


def _price_table() -> dict[str, Any]:
    """LiteLLM's local price map read from its package file, without importing LiteLLM (seconds);
    empty when LiteLLM is not installed (every cost is then unknown)."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "model_prices_and_context_window_backup.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                table: dict[str, Any] = json.load(f)
            return table
    return {}


def create_app(gateway: Gateway) -> Starlette:
    """The ASGI app for a gateway."""
    g = gateway
    routes = [
        Route("/v1/chat/completions", g.chat_completions, methods=["POST"]),
        Route("/chat/completions", g.chat_completions, methods=["POST"]),
        Route("/v1/messages", g.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", g.count_tokens, methods=["POST"]),
        Route("/v1/responses", g.responses, methods=["POST"]),
        Route("/responses", g.responses, methods=["POST"]),
        Route("/v1/models", g.models, methods=["GET"]),
        Route("/metrics", g.metrics_page, methods=["GET"]),
        Route("/healthz", g.healthz, methods=["GET"]),
        Route("/readyz", g.readyz, methods=["GET"]),
        Route("/lwfsm", g.dashboard, methods=["GET"]),
        Route("/lwfsm/", g.dashboard, methods=["GET"]),
        Route("/lwfsm/mermaid.min.js", g.mermaid_js, methods=["GET"]),
        Route("/lwfsm/sessions", g.list_sessions, methods=["GET"]),
        Route("/lwfsm/sessions/{id}", g.get_session, methods=["GET"]),
        Route("/lwfsm/sessions/{id}", g.delete_session, methods=["DELETE"]),
        Route("/lwfsm/sessions/{id}/events/{event}", g.fire, methods=["POST"]),
        Route("/lwfsm/spec", g.rollout.get, methods=["GET"]),
        Route("/lwfsm/spec", g.rollout.post, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await g.startup()
        g.rollout.install()  # SIGHUP
        try:
            yield
        finally:
            await g.shutdown()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(_Bodies, gateway=g)],
        exception_handlers={404: _not_found, 405: _not_found, StoreError: _store_failed, Exception: _crash},
    )
    app.state.gateway = g  # for in-process tests and embedding
    return app
