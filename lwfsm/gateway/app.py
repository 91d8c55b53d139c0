"""The gateway: OpenAI Chat Completions and Anthropic Messages in front of the turn core.

Every request is one call of a conversation: the conversation is found (`identity`), loaded from
the store, the pending turn judged and the role chosen (`TurnCore.plan`), the role's model called,
and the call settled and written back with compare-and-set. The gateway keeps nothing between
requests but one shared HTTP client, so a restart (with a persistent store) loses nothing.

When the role's upstream speaks the client's protocol (an OpenAI-compatible base for Chat
Completions, Anthropic for Messages) the request bytes are forwarded with the model replaced and
the response bytes streamed back as they come; only what judging and the ledger need is parsed.
Otherwise LiteLLM translates (imported on first use).

This module holds the gateway's state (`Gateway`) and a call's load, commit and a fired event, which go
through the conversation loop (`conversation`: `lwfsm.turn.loop` over this gateway's store and specs);
the work of each endpoint is in a part of its own, which `create_app` mounts: `intake`, `turns`, `forward`,
`translate`, `responses`, `control`, `dashboard`, `probes` (and `replies`, what they answer with).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from ..cost.pricing import PriceMap, price_table
from ..engine import Engine
from ..errors import Conflict, LwfsmError, StoreError, TransitionNotAllowed
from ..spec import Spec
from ..store import Store
from ..store.rows import CHAINS, split
from ..turn import Conversation, Judged, Plan, TurnCore, Usage
from ..turn.bindings import RoleBinding
from ..turn.loop import Stored, Turn
from ..turn.moves import Move, move
from .control import Control, operator_note
from .conversation import Conversations, meta_of
from .dashboard import Dashboard
from .forward import Forward
from .intake import Bodies, Call, Intake
from .metrics import Metrics
from .probes import Probes
from .replies import AsciiJSON, crash, error_body, not_found, store_failed
from .responses import Responses
from .rollout import Rollout
from .shape import Protocol
from .trace import TraceLog
from .tracing import Tracing
from .translate import Translate
from .turns import Turns

__all__ = ["Gateway", "create_app"]

logger = logging.getLogger("lwfsm.gateway")

T = TypeVar("T")
HISTORY = 20  # judged turns kept per conversation for the control API


@dataclass
class _Record:
    """A stored conversation as the gateway reads it: an `lwfsm.store` row (header, the state), then the
    gateway's own lines: `meta` (who the conversation is,
    its switches) and its last judged turns, one JSON line each, parsed only when asked for. The loop
    (`conversation`) writes the row; `_commit` and `fire` give it these lines."""

    conv: Conversation
    meta: dict[str, Any]
    history: list[str]

    def add(self, turn: Mapping[str, Any]) -> None:
        self.history = [*self.history[1 - HISTORY :], json.dumps(turn)]


@dataclass
class _Loaded:
    conv: Conversation
    version: int  # the store's version (0: new)
    retry: bool
    plan: Plan
    turn: Turn  # the loop's call (its plan may change when a commit loses a race)


def gateway_key(
    env: Mapping[str, str], api_key_env: str | None, flag: str = "--api-key-env", holds: str = "the gateway key"
) -> str | None:
    """The key clients must present (None: no --api-key-env), from the variable it names."""
    if not api_key_env:
        return None
    if not (key := env.get(api_key_env)):
        said = "is empty" if api_key_env in env else "is not set"
        raise LwfsmError(f"{flag} {api_key_env}: that variable {said} (it should hold {holds})")
    if not all("!" <= c <= "~" for c in key):  # (never shown: it is a key)
        raise LwfsmError(
            f"{flag} {api_key_env}: its value holds a space, a line end or a character that is not ASCII (a newline "
            "at the end of a secret file?): no client could send it in a header; set it to the key alone"
        )
    return key


def control_key(env: Mapping[str, str], control_key_env: str | None, api_key_env: str | None) -> str | None:
    """The key the control API asks for (None: no --control-key-env, it asks for the gateway key)."""
    key = gateway_key(env, control_key_env, "--control-key-env", "the control API's key")
    if key is not None and key == gateway_key(env, api_key_env):
        raise LwfsmError(
            f"--control-key-env {control_key_env} holds the same key as --api-key-env {api_key_env}: every client "
            "could then roll out specs and read every session; give the control API a key of its own"
        )
    return key


class _Late(StoreError):
    """A store call that gave no answer within --store-timeout and still runs in its thread: `late` is
    what it returns."""

    def __init__(self, message: str, *, store: str, late: asyncio.Future[Any]) -> None:
        super().__init__(message, store=store)
        self.late = late


class _Cut(asyncio.CancelledError):
    """A call cancelled (the drain cut it) while a store call of its ran: `late` is what that returns."""

    def __init__(self, *, late: asyncio.Future[Any]) -> None:
        super().__init__()
        self.late = late


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
        control_key_env: str | None = None,
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
        # from it, until it is answered, a stream included): `_hold` takes, `Bodies` gives back.
        self.body_budget, self.held = body_budget, 0
        self.connect_timeout, self.first_byte_timeout, self.idle_timeout = (
            connect_timeout,
            first_byte_timeout,
            idle_timeout,
        )
        self.store_timeout = store_timeout
        # Store calls that may wait (redis-py; SQLite's when another connection holds its lock) run here,
        # never on the event loop. Bounded, so a stopped store ties up these threads, not the gateway;
        # memory:// is a dict and stays inline (conversations' calls: `lwfsm.turn.loop`, `nowait`).
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="lwfsm-store")
        self._landing: set[asyncio.Future[None]] = set()  # writes past --store-timeout, awaited (`_landed`)
        self._inline = store.url.startswith("memory://")
        self.key = gateway_key(self.env, api_key_env)
        # The control API's own key (--control-key-env): then the gateway key, which every client holds,
        # neither rolls out a spec nor reads another client's sessions.
        self.control_key = control_key(self.env, control_key_env, api_key_env)
        self._secrets = sorted(
            {v for b in self.roles.values() if b.api_key_env and len(v := self.env.get(b.api_key_env, "")) >= 8}
            | {k for k in (self.key, self.control_key) if k and len(k) >= 8},
            key=len,
            reverse=True,
        )
        self._spelt = _spelt(self._secrets)
        self.http: aiohttp.ClientSession | None = None
        self.pricer = PriceMap(_price_table(self.env))
        # "The lead alone": the first role the spec does not mark cheap.
        self.lead = next((r for r, d in spec.roles.items() if not d.cheap), next(iter(spec.roles)))
        self.metrics = Metrics(lambda: sum(1 for k in self.store.list() if not k.startswith(CHAINS)))
        self.draining = False  # set on SIGTERM (`drain`): /readyz says 503 while calls in flight finish
        self.cut: str | None = None  # why the drain is cutting the calls still running (`stopped`)
        # The specs (SIGHUP, POST /lwfsm/spec): a conversation runs under its own `conv.core`, which is
        # `self.core` (new conversations' spec) or one kept for it (lwfsm.gateway.rollout).
        self.rollout = Rollout(self)
        # Load, plan, settle, compare-and-set: lwfsm.turn.loop's policy over this gateway's store and specs.
        self.conversations = Conversations(self)
        # The parts, one job each; `create_app` mounts their routes.
        self.intake = Intake(self)
        self.turns = Turns(self)
        self.forward = Forward(self)
        self.translate = Translate(self)
        self.responses = Responses(self)
        self.control = Control(self)
        self.dashboard = Dashboard(self)
        self.probes = Probes(self)

    # -- plumbing --

    def redact(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret.encode(), b"[redacted]")
        if self._spelt is not None and b"\\u" in data:  # a JSON body may spell a key's characters as \u00XX
            data = self._spelt.sub(b"[redacted]", data)
        return data

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """A store call in a worker thread, given --store-timeout seconds: a slow or stopped store holds
        up only the calls that need it, and fails them with a 503 naming it."""
        if self._inline:
            return fn(*args)
        job = self._pool.submit(fn, *args)
        future = asyncio.wrap_future(job)
        try:  # shielded: a call under way goes on in its thread all the same, and `_Late` keeps what it returns
            return await asyncio.wait_for(asyncio.shield(future), self.store_timeout)
        except asyncio.CancelledError:  # the call cut (a drain): a write under way may land all the same
            if job.cancel():
                raise
            raise _Cut(late=future) from None
        except TimeoutError:
            if job.cancel():  # not begun (every store thread busy): it never will be, and holds nothing
                raise StoreError(self._no_answer(), store=self.store.url) from None
            raise _Late(self._no_answer(), store=self.store.url, late=future) from None

    def _no_answer(self) -> str:
        return (
            f"store {self.store.url}: no answer within {self.store_timeout:g} s (--store-timeout): is it down, "
            "or locked by another process? Retry the request once the store answers."
        )

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
        self.translate.preload()

    async def shutdown(self) -> None:
        if self._landing:  # writes under way past --store-timeout or a cut call: their turns' lines, if they land
            await asyncio.wait(self._landing, timeout=self.store_timeout)
        if self.http is not None:
            await self.http.close()
        await self.translate.close()
        self.tracing.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)  # a stuck store call must not hold up the exit

    # -- the store --

    def _record(self, key: str, text: str) -> _Record:
        state, _, lines = split(self.store.url, key, text)
        return _Record(self.rollout.restore(key, state), meta_of(key, lines), lines[1:])

    async def _load(self, call: Call) -> _Loaded:
        turn = await self.conversations.abegin(
            call.ident.key, call.messages, side=call.side is not None, headers=call.headers, digest=call.messages_digest
        )
        meta_of(call.ident.key, turn.stored.lines)  # a row whose line is not the gateway's: refused before a paid call
        return _Loaded(turn.conv, turn.stored.version, turn.retry, turn.plan, turn)

    async def _commit(
        self,
        call: Call,
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
            record = _Record(stored.conv, meta, list(stored.lines[1:]))
            seen.update(meta=meta, switched=False, judged=judged, stored=stored)
            if judged is not None:
                handoff = loaded.turn.plan.note
                seen["cost"], moved = self._judged(record, judged, call.ident.session, call.ident.key, handoff)
                seen["switched"] = moved.switch
            meta.update(session=call.ident.session, source=call.ident.source, agent=call.ident.agent)
            return [json.dumps(meta), *record.history]

        try:
            done = await self.conversations.acommit(
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
        except (_Late, _Cut) as exc:
            # The client gets a 503, but the store may yet take the write (a stopped Redis runs it once
            # resumed, a lock is let go): then its turn is kept, and its retry is not counted again. Its
            # trace line and counts are written when the write lands, as they would have been now (watched
            # even when the cut came before the store's thread built the row: it may build it yet).
            landed = asyncio.ensure_future(self._landed(exc.late, call, role, used, seen))
            self._landing.add(landed)
            landed.add_done_callback(self._landing.discard)
            raise
        self._settled(call, role, used, seen, done.judged, done.stored.conv)
        self.tracing.committed(call.turn, done.judged)
        return call.turn

    async def _landed(
        self, late: asyncio.Future[Any], call: Call, role: str, used: Usage, seen: dict[str, Any]
    ) -> None:
        try:
            wrote = await late
        except Exception:  # the store failed it after all: nothing was recorded, as the client was told
            return
        if wrote is True and "stored" in seen:  # a write (not a read) whose compare-and-set held: recorded
            logger.warning(
                "session %s: the store took the write after the call was answered (past --store-timeout, or cut "
                "by a drain); its turn is recorded after all (the client got a 503; a retry is not counted again)",
                call.ident.key,
            )
            self._settled(call, role, used, seen, seen["judged"], seen["stored"].conv)

    def _settled(
        self, call: Call, role: str, used: Usage, seen: dict[str, Any], judged: Judged | None, conv: Conversation
    ) -> None:
        """What a recorded call leaves: its log line, counts, trace line and `call.turn`."""
        model = self.roles[role].model
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
            self.trace.write(seen["meta"], judged.record(call.ident.key, seen["cost"]))
        call.turn = str(conv.pending.turn) if conv.pending is not None else None

    def _judged(
        self, record: _Record, judged: Judged, session: str, key: str, handoff: str | None
    ) -> tuple[float | None, Move]:
        """A judged turn into the conversation's record: priced once (for the history and the trace), in
        its timeline, its switch kept, its trace file named. Its cost and what it did."""
        cost = self.pricer(judged.pending.model, judged.pending.usage)
        record.add(judged.record(session, cost))
        if self.trace is not None:
            self.trace.name(record.meta, key)
        return cost, self._moved(record.conv.core.spec, record.meta, judged, handoff)

    def _moved(self, spec: Spec, meta: dict[str, Any], judged: Judged, handoff: str | None) -> Move:
        """Count what a judged turn did in the record (`lwfsm.turn.moves` defines the words)."""
        p, t = judged.pending, judged.transition
        done = move(spec, t.source, t.dest, judged.event, p.state, p.role)
        last = {"turn": p.turn, "from": t.source, "to": t.dest, "event": judged.event, "reason": judged.reason}
        _keep(meta, done, {**last, "handoff": handoff})
        return done

    def _count(self, spec: Spec, role: str, model: str, usage: Usage, judged: Judged | None) -> None:
        self.metrics.call(role, usage, self.pricer(model, usage))
        if judged is not None:
            p, t = judged.pending, judged.transition
            self.metrics.turns.labels(p.role, judged.event).inc()
            done = move(spec, t.source, t.dest, judged.event, p.state, p.role)
            self.metrics.moved(done, t.source, t.dest, judged.event, p.state, p.role)

    def stopped(self, protocol: Protocol) -> Response:
        """The answer to a call the drain cut before it was answered (`drain`)."""
        said = f"the gateway stopped ({self.cut}) before this call ended: retry it (a retry is never counted twice)"
        return JSONResponse(error_body(protocol, 503, said, "api_error"), 503)

    def _failed(self, role: str, status: int | str) -> None:
        self.metrics.errors.labels(role, self.roles[role].model, str(status)).inc()
        self.tracing.failed(status)

    # The control API's checks, for `fire` and the spec rollout's endpoints.

    def _control(self, request: Request) -> Response | None:
        return self.control.check(request)

    async def _find(self, key: str) -> tuple[int, _Record] | Response:
        return await self.control.find(key)

    def _summary(self, key: str, record: _Record) -> dict[str, Any]:
        return self.control.summary(key, record)

    async def fire(self, request: Request) -> Response:
        if (denied := self._control(request)) is not None:
            return denied
        key, event = request.path_params["id"], request.path_params["event"]
        if event not in self.spec.events:
            known = ", ".join(self.spec.events)
            return JSONResponse({"error": f"unknown event {event!r}; spec '{self.spec.name}' has: {known}"}, 404)
        note = await operator_note(request)
        if isinstance(note, Response):
            return note
        found = await self._find(key)  # absent or unreadable: said as the control API says it
        if isinstance(found, Response):
            return found
        fired: dict[str, Any] = {}

        reason = "fired through the control API"

        def change(stored: Stored) -> Any:
            conv = stored.conv
            fired["turn"] = conv.session.turn  # before the event: a reset starts counting again
            # the turn the event closes, by the conversation's own spec (a rollout may keep it on another)
            pending = conv.pending if conv.core.spec.events[event].turn else None
            fired["rec"] = rec = conv.core.fire(conv, event, reason, note)
            # A served turn closed by hand is a turn of the trace like any (its call was billed): kind None
            fired["judged"] = (
                Judged(pending, event, reason, rec, spec=conv.core.rules_hash) if pending is not None else None
            )
            return rec

        def lines(stored: Stored, _: Any) -> list[str]:
            conv, rec, judged = stored.conv, fired["rec"], fired["judged"]
            record = fired["record"] = _Record(conv, meta_of(key, stored.lines), list(stored.lines[1:]))
            if rec.transition is not None and conv.core.spec.transitions[rec.transition].reset:
                record.meta.pop("trace", None)  # a new conversation: its turns go to a file of their own
            if judged is not None:  # a served turn closed by hand: kept as a judged turn is
                session = record.meta.get("session", key)
                fired["cost"], fired["move"] = self._judged(record, judged, session, key, conv.note)
                return [json.dumps(record.meta), *record.history]
            fired["move"] = done = move(conv.core.spec, rec.source, rec.dest, event)
            last = {"turn": fired["turn"], "from": rec.source, "to": rec.dest, "event": event, "reason": reason}
            _keep(record.meta, done, {**last, "handoff": conv.note})
            # In the timeline too: a turn event fired by hand, with no turn open, counts a turn no model served.
            record.add(
                {
                    "turn": rec.turn,
                    "state": rec.source,
                    "role": None,
                    "model": None,
                    "outcome": event,
                    "reason": reason,
                    "handoff": conv.note,  # waiting for the next call
                    "transition": {"source": rec.source, "dest": rec.dest, "index": rec.transition, "guard": rec.guard},
                }
            )
            return [json.dumps(record.meta), *record.history]

        try:
            rec, _stored = await self.conversations.aupdate(key, change, lines=lines)
        except TransitionNotAllowed as exc:
            return JSONResponse({"error": str(exc)}, 409)
        except Conflict:
            return JSONResponse({"error": "the session kept changing; try again"}, 409)
        if rec is None:  # deleted meanwhile
            return JSONResponse({"error": f"no session {key!r} (GET /lwfsm/sessions lists them)"}, 404)
        if (judged := fired["judged"]) is None:
            self.metrics.moved(fired["move"], rec.source, rec.dest, event)
        else:  # its own state and role: one a technical fallback served is counted as the trace reads it
            self.metrics.moved(fired["move"], rec.source, rec.dest, event, judged.pending.state, judged.pending.role)
            self.metrics.turns.labels(judged.pending.role, event).inc()
            if self.trace is not None:
                self.trace.write(fired["record"].meta, judged.record(key, fired["cost"]))
        logger.info("session %s: %s fired by hand: %s -> %s", key, event, rec.source, rec.dest)
        return AsciiJSON(self._summary(key, fired["record"]))


def _spelt(secrets: list[str]) -> re.Pattern[bytes] | None:
    """The keys with any character written as JSON's \\u00XX escape (either case), or as itself."""
    if not secrets:
        return None

    def char(c: str) -> bytes:
        code = ord(c)
        if code > 0x7F:
            return re.escape(c.encode())
        return b"(?:" + re.escape(c.encode()) + b"|\\\\u00(?:%02x|%02X))" % (code, code)

    return re.compile(b"|".join(b"".join(char(c) for c in secret) for secret in secrets))


def _keep(meta: dict[str, Any], done: Move, last_switch: dict[str, Any]) -> None:
    """Keep the last switch and the counts in the record (history keeps only recent turns)."""
    if done.switch:
        meta["last_switch"] = last_switch
    counts = {"switches": done.switch, "fallbacks": done.fallback, "technical_fallbacks": done.technical_fallback}
    for name, happened in counts.items():
        if happened:
            meta[name] = meta.get(name, 0) + 1


def _price_table(env: Mapping[str, str] | None = None) -> Mapping[str, Mapping[str, Any]]:
    """LiteLLM's local price map, its alias rows resolved, with `LWFSM_PRICES`'s over it, as `lwfsm report`
    reads it (an alias such as `gpt-sol-latest` had no price here, and a price in the report); only the
    file's when LiteLLM is not installed (every other cost is then unknown)."""
    try:
        return price_table(env)
    except ImportError:
        return {}


def create_app(gateway: Gateway) -> Starlette:
    """The ASGI app for a gateway."""
    g = gateway
    routes = [
        *g.turns.routes,
        *g.responses.routes,
        *g.probes.routes,
        Route("/lwfsm", g.dashboard.dashboard, methods=["GET"]),  # to /lwfsm/
        Mount(
            "/lwfsm",
            routes=[
                *g.dashboard.routes,
                *g.control.routes,
                Route("/spec", g.rollout.get, methods=["GET"]),
                Route("/spec", g.rollout.post, methods=["POST"]),
            ],
        ),
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
        middleware=[Middleware(Bodies, gateway=g)],
        exception_handlers={404: not_found, 405: not_found, StoreError: store_failed, Exception: crash},
    )
    app.state.gateway = g  # for in-process tests and embedding
    return app
