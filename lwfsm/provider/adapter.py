"""The LiteLLM provider: real model calls, the model chosen by the conversation's state.

`Adapter(spec, models={...})` binds roles to LiteLLM models; `adapter.session()` gives an
`AgentSession` whose `completion(messages, ...)` / `await acompletion(...)` take LiteLLM's
arguments (less `model`) and return LiteLLM's response. Judging, role choice and bookkeeping are the
turn core's (`lwfsm.turn`); this module only calls LiteLLM, retries technical errors (which never
move the machine), maps LiteLLM's exceptions into lwfsm's, and prices calls from LiteLLM's local
price map. The sync and async paths share everything but how they wait.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cost.pricing import PriceMap, price_table
from ..engine import Engine, TransitionRecord
from ..errors import (
    AllAttemptsFailed,
    AuthError,
    BadRequestError,
    ConfigError,
    ProviderError,
    SessionBusy,
    TransitionNotAllowed,
    causes,
    did_you_mean,
)
from ..spec import Spec, load_spec
from ..store import Store, open_store
from ..turn import ConversationState, Detector, Judged, Plan, TurnCore, Usage, params
from ..turn.bindings import RoleBinding, bindings, check_keys, params_from_env
from ..turn.core import append_record
from ..turn.loop import ATTEMPTS, Committed, Gate, Loop, Turn, ordered
from ..turn.stream import OpenAIStream

__all__ = [
    "EXCEPTIONS",
    "Adapter",
    "AgentSession",
    "CallInfo",
    "classify",
    "anthropic_reported",
    "provider_usage",
    "price",
    "retry_after",
]

# Offline by design: never fetch LiteLLM's remote price map. This must be set before LiteLLM is
# imported, hence the late import below.
_IMPORTED_TOO_EARLY = "litellm" in sys.modules and "LITELLM_LOCAL_MODEL_COST_MAP" not in os.environ
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

try:
    import litellm  # noqa: E402
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    # (the cause named: an installed LiteLLM missing a dependency of its own reads as not installed otherwise)
    raise ImportError(f'lwfsm.provider.adapter needs LiteLLM ({exc}): pip install "lwfsm[litellm]"') from exc

litellm.suppress_debug_info = True  # lwfsm reports provider errors itself; no banners on stdout


def unknown_provider(model: str) -> str | None:
    """Why LiteLLM cannot call `model` ('provider/model') when it has no provider of that name: every
    call of the role would fail as if the request were wrong. None when it has."""
    provider = model.split("/", 1)[0]
    known = {str(getattr(p, "value", p)) for p in litellm.provider_list}
    # custom providers a program registered (LiteLLM adds them to its list only at the first call)
    known |= {
        str(c.get("provider")) for c in getattr(litellm, "custom_provider_map", None) or () if isinstance(c, dict)
    }
    if provider in known:
        return None
    return f"names provider {provider!r}, which LiteLLM does not know{did_you_mean(provider, known)}"


def _running_proxys_router() -> Any:
    """The router of a LiteLLM proxy already loaded in this process (lwfsm as its hook), else None."""
    proxy = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(proxy, "llm_router", None)


# Newer LiteLLM's Messages translation looks for a running proxy's router by importing
# litellm.proxy.proxy_server: with the proxy's dependencies installed that import is the whole proxy app
# (seconds of CPU on a gateway's first Messages call), and a proxy nobody started has no router (None).
# Only a proxy already loaded can have one: look there, import nothing.
try:
    from litellm.llms.anthropic.messages.adapters import handler as _messages_handler
except ImportError:  # older LiteLLM: no such lookup
    pass
else:
    if hasattr(_messages_handler, "_proxy_router_fallback"):
        _messages_handler._proxy_router_fallback = _running_proxys_router

logger = logging.getLogger("lwfsm")
if _IMPORTED_TOO_EARLY:
    logger.warning(
        "litellm was imported before lwfsm.provider.adapter without LITELLM_LOCAL_MODEL_COST_MAP=True, so it may have "
        "fetched its remote price map; set that variable (or import lwfsm.provider.adapter first) to stay offline"
    )

# Every exception class LiteLLM defines, placed: "retry" (technical: retry, then maybe the other
# role) or the lwfsm error raised at once. A test fails when LiteLLM adds a class not listed here.
EXCEPTIONS: dict[str, str | type[ProviderError]] = {
    "Timeout": "retry",
    "APIConnectionError": "retry",
    "RateLimitError": "retry",
    "CallerCredentialRateLimitError": "retry",
    "InternalServerError": "retry",
    "ServiceUnavailableError": "retry",
    "BadGatewayError": "retry",
    "MidStreamFallbackError": "retry",
    "APIError": "retry",  # LiteLLM's catch-all for provider 5xx-like failures
    "APIResponseValidationError": "retry",  # a garbled response: another try may be fine
    "JSONSchemaValidationError": "retry",
    "MockException": "retry",
    "AuthenticationError": AuthError,
    "PermissionDeniedError": AuthError,
    "CallerCredentialAuthenticationError": AuthError,
    "BudgetExceededError": AuthError,
    "PaymentRequiredError": AuthError,
    "BadRequestError": BadRequestError,
    "InvalidRequestError": BadRequestError,
    "UnsupportedEndpointError": BadRequestError,
    "MalformedRequestFieldError": BadRequestError,
    "EndpointNotSupportedByModelError": BadRequestError,
    "NotFoundError": BadRequestError,  # unknown model or deployment
    "ContentPolicyViolationError": BadRequestError,
    "ContextWindowExceededError": BadRequestError,
    "UnsupportedParamsError": BadRequestError,
    "UnprocessableEntityError": BadRequestError,
    "LiteLLMUnknownProvider": BadRequestError,
    "ModelNotMappedError": BadRequestError,
    "ImageFetchError": BadRequestError,
    "RejectedRequestError": BadRequestError,
    "BlockedPiiEntityError": BadRequestError,
    "GuardrailRaisedException": BadRequestError,
    "SensitiveDataRouteException": BadRequestError,
    "VectorStoreSearchError": BadRequestError,
    "ModifyResponseException": BadRequestError,
    "OpenAIError": ProviderError,  # the root: anything not placed more precisely
}


def classify(exc: BaseException) -> str | type[ProviderError] | None:
    """Where an exception from LiteLLM belongs; None for exceptions that are not LiteLLM's."""
    # the openai SDK's bare OpenAIError: a client it could not set up (no key), never retried
    if any(type(c).__name__ == "OpenAIError" and type(c).__module__.startswith("openai") for c in causes(exc)):
        return AuthError
    for cls in type(exc).__mro__:
        if cls.__module__.startswith(("litellm", "openai")) and cls.__name__ in EXCEPTIONS:
            return EXCEPTIONS[cls.__name__]
    return None


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait: its Retry-After header, as seconds or an HTTP date."""
    # LiteLLM keeps the provider's headers in litellm_response_headers; the wrapped httpx response
    # (exc.response) is often a stand-in without them.
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        value = headers.get("retry-after") if headers is not None and hasattr(headers, "get") else None
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


_PRICES = PriceMap()  # LiteLLM's local price map, read on first use; cache reads and writes priced


def price(model: str, usage: Usage) -> float | None:
    """Dollars for `usage` on `model` from LiteLLM's local price map (cache-aware); None when it has no price."""
    return _PRICES.price(model, usage)


@dataclass(frozen=True)
class CallInfo:
    """The last call of a session, for display: who served it and how it went."""

    role: str
    model: str
    retries: int
    side: bool
    latency: float
    replayed: bool = False  # a redelivered call answered from the store: no model call, nothing counted


@dataclass
class _Call:
    """One call on its way: what settling it needs once a response is in."""

    messages: list[Mapping[str, Any]]
    kwargs: dict[str, Any]
    turn: Turn  # the loop's: its plan may change when a commit loses a race
    started: float
    failures: list[tuple[str, str, BaseException]] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)  # roles given up on for this call
    unreported: bool = False  # a stream that carried no usage: its tokens are unknown, not estimated
    streamed: dict[str, Any] | None = None  # a stream's reply, as `OpenAIStream` rebuilt it from its chunks

    @property
    def plan(self) -> Plan:
        return self.turn.plan


class Adapter:
    """Binds a spec's roles to LiteLLM models and hands out agent sessions."""

    def __init__(
        self,
        spec: Spec | Engine | str | Path,
        models: Mapping[str, str | RoleBinding | Mapping[str, Any]] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float = 120.0,
        deadline: float = 600.0,
        max_retry_after: float = 30.0,
        turn_unit: str = "call",
        detectors: Sequence[Detector] | None = None,
        log_dir: str | Path | None = None,
        store: str | Store | None = None,
        conflicts: int = ATTEMPTS,
        agent: str | None = None,
        model_groups: bool = False,
    ) -> None:
        """`model_groups`: the models are a LiteLLM proxy's model groups (its hook plans, the proxy calls),
        not 'provider/model' strings LiteLLM calls, whose provider is checked here."""
        env = os.environ if env is None else env
        if not isinstance(spec, Spec | Engine | str | os.PathLike):
            raise ConfigError(
                f"spec is a Spec, an Engine, a spec file or a shipped spec's name; got {type(spec).__name__}"
            )
        if isinstance(spec, Engine):
            engine = spec
        else:
            loaded = spec if isinstance(spec, Spec) else load_spec(spec)
            overrides = params_from_env(loaded, env)
            engine = Engine(loaded.with_params(overrides) if overrides else loaded)
        self.core = TurnCore(engine, detectors=detectors, turn_unit=turn_unit, agent=agent)
        self.engine, self.spec = engine, engine.spec
        self.bindings = bindings(self.spec, models, env)
        if not model_groups:  # a key variable not set is found now, not at the role's first call
            check_keys(self.bindings, env, "leave api_key_env out of the role's binding for a server that needs no key")
        for role, binding in self.bindings.items():  # now, not as LiteLLM's error at the role's first call
            if not model_groups and (why := unknown_provider(binding.model)):
                raise ConfigError(
                    f"the {role} model {binding.model!r} {why}: name it as 'provider/model' (in models, or "
                    f"LWFSM_{role.upper()}_MODEL)"
                )
        self.env = env
        self.prices = PriceMap(price_table(env))  # LWFSM_PRICES's file checked now, not after a paid call
        for name, value, floor in (
            ("retries", retries, 0),
            ("backoff", backoff, 0),
            ("max_backoff", max_backoff, 0),
            ("max_retry_after", max_retry_after, 0),
            ("timeout", timeout, None),
            ("deadline", deadline, None),
        ):  # (a NaN passed every comparison, and then failed every call as a retried server error)
            number = isinstance(value, int if name == "retries" else int | float) and not isinstance(value, bool)
            if not number or not (value >= 0 if floor == 0 else value > 0):
                what = "a whole number >= 0" if name == "retries" else "seconds, " + (">= 0" if floor == 0 else "> 0")
                raise ConfigError(f"{name}={value!r}: must be {what}")
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        # Per attempt (LiteLLM's own default is 6000 s) and per call, across retries and roles.
        self.timeout, self.deadline, self.max_retry_after = timeout, deadline, max_retry_after
        # Key values, to scrub from every message: a provider error body may echo the Authorization header.
        self._secrets = sorted(
            {v for b in self.bindings.values() if b.api_key_env and len(v := env.get(b.api_key_env, "")) >= 8},
            key=len,
            reverse=True,
        )
        self.log_dir = Path(log_dir) if log_dir is not None else None
        if self.log_dir is not None:  # find an unwritable log directory now, not after a turn was committed
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                (self.log_dir / ".lwfsm-write-test").touch()
                (self.log_dir / ".lwfsm-write-test").unlink()
            except OSError as exc:
                raise ConfigError(f"log_dir {str(self.log_dir)!r} is not writable: {exc}") from None
        lead = self.bindings.get("lead")
        self.lead_model = lead.model if lead else None
        self._sessions = 0
        # None: sessions live in their AgentSession object only (the fast in-process path, as before).
        self.store = open_store(store) if isinstance(store, str) else store
        if conflicts < 1:
            raise ConfigError("conflicts must be >= 1")
        self.conflicts = conflicts  # compare-and-set attempts per call (lwfsm.turn.loop's policy, overridden)

    def redact(self, text: str) -> str:
        """`text` without any bound key's value."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def session(
        self, name: str | None = None, state: ConversationState | Mapping[str, Any] | str | None = None
    ) -> AgentSession:
        """A new agent session, or one continuing `state` (a `ConversationState` or its JSON).

        With a store, `name` is the conversation id: the session continues what the store holds under
        it (a random id when None), and every call reloads and commits through compare-and-set.
        """
        self._sessions += 1
        loop = Loop(self.core, self.store, attempts=self.conflicts)
        if self.store is None:
            # A default name unique across processes and restarts: it names the log file (log_dir).
            name = name or f"session-{self._sessions}-{uuid.uuid4().hex[:12]}"
            loop.hold(name, self.core.start() if state is None else self.core.restore(state))
            return AgentSession(self, loop, name)
        if state is not None:
            raise ConfigError("with a store, a session's state is the store's: pass the conversation id, not state=")
        return AgentSession(self, loop, name or uuid.uuid4().hex)


class AgentSession:
    """One conversation through LiteLLM. Calls on one session are serialised, sync and async alike.

    Each call goes through the session's `lwfsm.turn.loop.Loop` (load, plan, call, settle, write back),
    whose policy on retries and lost races is every front end's."""

    def __init__(self, adapter: Adapter, loop: Loop, name: str) -> None:
        self.adapter = adapter
        self.core = adapter.core
        self.loop = loop
        self.name = name
        # As last loaded or written; a corrupt or foreign row is an error now, not at the first call.
        self.conversation = loop.load(name).conv
        self.last: CallInfo | None = None
        self._stream_open = False
        self._lock = Gate(f"session {name!r}")  # one discipline for sync and async calls
        self._order = ordered(adapter.store, name)  # with the other sessions of this conversation: its trace
        self._log = adapter.log_dir / f"{name}.jsonl" if adapter.log_dir else None
        self.sink: Callable[[dict[str, Any]], None] | None = None  # also receives each judged turn's record

    @property
    def machine(self) -> Any:
        """The conversation's engine `Session` (state, role, counters, history)."""
        return self.conversation.session

    @property
    def role(self) -> str:
        """The role of the conversation's current state, as `session.role` of the engine."""
        return self.conversation.session.role

    def state(self) -> ConversationState:
        """The whole conversation as a value: store it, restore it with `adapter.session(state=...)`."""
        with self._lock:
            return self.conversation.state()

    @property
    def ledger(self) -> Any:
        return self.conversation.ledger

    @property
    def cost(self) -> float | None:
        return self.conversation.ledger.cost(price)

    @property
    def lead_only_cost(self) -> float | None:
        lead = self.adapter.lead_model
        return self.conversation.ledger.cost_on(lead, price) if lead else self.cost

    def table(self) -> str:
        return self.conversation.ledger.table(self.adapter.prices, self.adapter.lead_model)

    # -- the shared steps --

    def _check(self, kwargs: dict[str, Any]) -> str | None:
        """Refuse what a call may not pass; the request id (the idempotency key's, not LiteLLM's)."""
        if "model" in kwargs:
            raise TypeError("the model is chosen by the session's state: do not pass model=")
        for name in kwargs:
            if name not in params.CHAT and name not in params.LITELLM_CALL_OPTIONS and name != "request_id":
                raise ConfigError(
                    f"{name}= is not a per-call argument: a call takes Chat Completions parameters (and "
                    f"{', '.join(sorted(params.LITELLM_CALL_OPTIONS))}); where a role's calls go and their key "
                    f"belong to its binding: Adapter(spec, models={{role: {{'model': ..., 'api_base': ..., "
                    f"'api_key_env': ...}}}})"
                )
        self._idle()
        request_id = kwargs.pop("request_id", None)
        return None if request_id is None else str(request_id)

    def _begin(self, messages: Sequence[Mapping[str, Any]], side: bool, kwargs: dict[str, Any]) -> _Call:
        _conversation(messages, "completion")
        request_id = self._check(kwargs)
        return self._planned(self.loop.begin(self.name, messages, side=side, request_id=request_id), kwargs)

    async def _abegin(self, messages: Sequence[Mapping[str, Any]], side: bool, kwargs: dict[str, Any]) -> _Call:
        _conversation(messages, "acompletion")
        request_id = self._check(kwargs)
        pending = self.conversation.pending
        if pending is not None and len(str(pending.reply.get("content") or "")) > _BIG_REPLY:
            # judging a big reply must not stall the event loop: the whole step in a worker thread
            turn = await asyncio.to_thread(self.loop.begin, self.name, messages, side=side, request_id=request_id)
        else:
            turn = await self.loop.abegin(self.name, messages, side=side, request_id=request_id)
        return self._planned(turn, kwargs)

    def _planned(self, turn: Turn, kwargs: dict[str, Any]) -> _Call:
        self.conversation = turn.conv
        return _Call(list(turn.messages), kwargs, turn, turn.started)

    def _free(self) -> None:
        self._stream_open = False

    def _idle(self) -> None:
        if self._stream_open:
            raise SessionBusy(
                f"session {self.name!r}: the stream of the previous call is still open; consume or close it first"
            )

    def _attempts(self, call: _Call) -> Iterator[tuple[str, int, dict[str, Any]]]:
        """(role, attempt, LiteLLM arguments): retries on the chosen role, then on its technical fallback,
        until the call's deadline. A role marked in `call.skip` gets no more attempts."""
        a = self.adapter
        # A handoff note goes last, as a user message, in this call only: never into the agent's messages.
        note = call.plan.note
        sent = [*call.messages, {"role": "user", "content": note}] if note else call.messages
        for r in self.core.roles_for(call.plan):
            for attempt in range(a.retries + 1):
                if r in call.skip:
                    break
                if time.perf_counter() - call.started > a.deadline:
                    return
                # call.kwargs hold protocol parameters only (`_begin`): the binding's endpoint and key stand.
                args = {"timeout": a.timeout, **a.bindings[r].call_kwargs(a.env), **call.kwargs}
                if args.get("stream") and "stream_options" not in args and _asks_usage(args):
                    args["stream_options"] = {"include_usage": True}  # else a stream's tokens are a local guess
                yield r, attempt, {**args, "messages": sent, "num_retries": 0}

    def _failed(self, call: _Call, role: str, attempt: int, model: str, exc: Exception) -> float:
        """Raise at once what retrying cannot fix; else note the attempt and return the wait before the next."""
        has_fallback = len(self.core.roles_for(call.plan)) > 1 and role == call.plan.role
        if classify(exc) is BadRequestError and "ContextWindowExceeded" in type(exc).__name__ and has_fallback:
            call.skip.add(role)  # goose: a smaller worker context overflowing is served by the lead
            call.failures.append((role, model, exc))
            return 0.0
        fatal = self._error(role, exc)
        if fatal is not None:
            raise fatal from exc
        call.failures.append((role, model, exc))
        asked = retry_after(exc)
        if asked is not None and asked > self.adapter.max_retry_after:
            call.skip.add(role)  # waiting that long would stall the conversation: try the fallback role now
            return 0.0
        return self._delay(attempt, exc) if attempt < self.adapter.retries else 0.0

    def _reply(self, call: _Call, role: str, response: Any) -> tuple[str, dict[str, Any] | None, Usage]:
        """The model, the assistant message (OpenAI-shaped; None for a side call) and the usage of a response."""
        model = self.adapter.bindings[role].model
        reply = None
        if not call.plan.side:
            choices = getattr(response, "choices", None)
            if not choices:
                raise ProviderError(f"{role} model {model} returned a response without choices", role=role, model=model)
            message = choices[0].message
            reply = message.model_dump() if hasattr(message, "model_dump") else dict(message)
            if call.streamed is not None:  # the gateway's reading of the chunks (names merged once), not LiteLLM's
                reply = {**reply, **call.streamed}
        usage = Usage(unreported=1) if call.unreported else Usage.of(getattr(response, "usage", None))
        return model, reply, usage

    def _commit(self, call: _Call, role: str, response: Any) -> Any:
        """Settle and write the call through the loop (a lost race keeps this reply: lwfsm.turn.loop)."""
        served = self._served(call, role, response)
        with self._order:
            return self._committed(call, response, served, self.loop.commit(call.turn, **served))

    async def _acommit(self, call: _Call, role: str, response: Any) -> Any:
        served = self._served(call, role, response)
        async with self._order:
            return self._committed(call, response, served, await self.loop.acommit(call.turn, **served))

    def _served(self, call: _Call, role: str, response: Any) -> dict[str, Any]:
        """What the loop settles the call with: who served it, with what, how long it took."""
        model, reply, usage = self._reply(call, role, response)
        latency = time.perf_counter() - call.started
        tools = call.kwargs.get("tools") or ()
        retries = len(call.failures)
        return dict(role=role, model=model, reply=reply, tools=tools, usage=usage, latency=latency, retries=retries)

    def _committed(self, call: _Call, response: Any, served: dict[str, Any], done: Committed) -> Any:
        self.conversation = done.stored.conv
        self.last = CallInfo(served["role"], served["model"], served["retries"], call.plan.side, served["latency"])
        self._write(done.judged)
        return response

    def _replay(self) -> Any:
        """A retried call answered from the record: the reply recorded for it; nothing is called or counted."""
        p = self.conversation.pending
        assert p is not None
        self.last = CallInfo(p.role, p.model, 0, False, 0.0, replayed=True)
        usage = {**p.usage.model_dump(), "total_tokens": p.usage.prompt_tokens + p.usage.completion_tokens}
        return litellm.ModelResponse(
            model=p.model, choices=[{"index": 0, "message": p.reply, "finish_reason": "stop"}], usage=usage
        )

    def _write(self, judged: Judged | None) -> None:
        if judged is None or (self._log is None and self.sink is None):
            return
        record = judged.record(self.name, self.adapter.prices.price(judged.pending.model, judged.pending.usage))
        if self.sink is not None:
            self.sink(record)
        if self._log is None:
            return
        if (exc := append_record(self._log, record)) is not None:
            logger.error(
                "session %s: could not write the log line of turn %d to %s: %s",
                self.name,
                record["turn"],
                self._log,
                exc,
            )

    def _error(self, role: str, exc: BaseException) -> ProviderError | None:
        """The lwfsm error to raise at once, or None when the error is technical (retry)."""
        kind = classify(exc)
        model = self.adapter.bindings[role].model
        if kind is None:
            if isinstance(exc, (TimeoutError, ConnectionError)):
                return None
            message = f"{role} model {model}: unexpected error {type(exc).__name__}: {exc}"
            return ProviderError(self.adapter.redact(message), role=role, model=model)
        if kind == "retry":
            return None
        assert isinstance(kind, type)
        return kind(self.adapter.redact(f"{role} model {model}: {type(exc).__name__}: {exc}"), role=role, model=model)

    def _delay(self, attempt: int, exc: BaseException) -> float:
        asked = retry_after(exc)
        if asked is not None:
            return min(asked, self.adapter.max_backoff)
        base = min(self.adapter.backoff * 2.0**attempt, self.adapter.max_backoff)
        return base * (0.5 + random.random() / 2)  # jitter: spread the retries of many sessions

    def _all_failed(self, call: _Call) -> AllAttemptsFailed:
        failures = call.failures
        tried = "; ".join(f"{r} {m}: {type(e).__name__}" for r, m, e in failures)
        role = call.plan.role
        late = " (the call's deadline passed)" if time.perf_counter() - call.started > self.adapter.deadline else ""
        err = AllAttemptsFailed(
            self.adapter.redact(f"every attempt failed for the {role} turn ({len(failures)} attempts: {tried}){late}"),
            failures,
            role=role,
            model=self.adapter.bindings[role].model,
        )
        err.__cause__ = failures[-1][2] if failures else None
        return err

    # -- sync --

    def completion(self, messages: Sequence[Mapping[str, Any]], *, side: bool = False, **kwargs: Any) -> Any:
        """`litellm.completion` with the model chosen by the machine. `side=True`: not a turn."""
        with self._lock:
            call = self._begin(messages, side, kwargs)
            if call.turn.retry:  # a retried call (same request id or messages): answered from the record
                return self._replay()
            role, response = self._call(call)
            if kwargs.get("stream"):
                self._stream_open = True
                return _Stream(self._stream(call, role, response), self._free)
            return self._commit(call, role, response)

    def _call(self, call: _Call) -> tuple[str, Any]:
        for role, attempt, args in self._attempts(call):
            try:
                return role, litellm.completion(**args)
            except Exception as exc:
                if wait := self._failed(call, role, attempt, args["model"], exc):
                    time.sleep(wait)
        raise self._all_failed(call)

    def close(self, messages: Sequence[Mapping[str, Any]] = ()) -> None:
        """End the conversation: judge the last turn from `messages` (tool results, the user's last word)."""
        _conversation(messages, "close")
        with self._lock:
            self._idle()
            with self._order:
                self._closed(self.loop.update(self.name, lambda stored: stored.conv.core.close(stored.conv, messages)))

    def fire(self, event: str, reason: str | None = None, note: str | None = None) -> TransitionRecord:
        """Fire a spec's event by hand (`force_lead`, a user's own button), through the store as a call's
        commit is: a turn event closes the open turn (its trace line has no kind), a non-turn event leaves
        it open. `note` goes to the next call's model with the spec's handoff. Returns what it did."""
        with self._lock:
            self._idle()
            with self._order:
                return self._fired(event, self.loop.update(self.name, self._firing(event, reason, note), create=True))

    async def afire(self, event: str, reason: str | None = None, note: str | None = None) -> TransitionRecord:
        async with self._lock:
            self._idle()
            async with self._order:
                changed = await self.loop.aupdate(self.name, self._firing(event, reason, note), create=True)
                return self._fired(event, changed)

    def _firing(self, event: str, reason: str | None, note: str | None) -> Callable[[Any], Any]:
        spec = self.core.spec
        if event not in spec.events:
            raise TransitionNotAllowed(
                f"unknown event {event!r}{did_you_mean(event, spec.events)}; spec '{spec.name}' has: "
                f"{', '.join(spec.events)}",
                event=event,
                state=self.machine.state,
            )
        if self._log is not None and any(t.reset and event in t.events for t in spec.transitions):
            # its turns would count from 1 again in this session's trace file, which report then refuses
            raise ConfigError(
                f"{event!r} resets the conversation, whose trace file ({self._log.name}) goes on: start a new "
                "conversation instead, adapter.session(another_name)"
            )

        def change(stored: Any) -> tuple[TransitionRecord, Judged | None]:
            conv = stored.conv
            pending = conv.pending if spec.events[event].turn else None
            record = conv.core.fire(conv, event, reason, note)
            return record, Judged(pending, event, reason, record, spec=conv.core.rules_hash) if pending else None

        return change

    def _fired(self, event: str, done: tuple[tuple[TransitionRecord, Judged | None] | None, Any]) -> TransitionRecord:
        fired, stored = done
        assert fired is not None  # (a conversation not stored yet is made: `create=True`)
        self.conversation = stored.conv
        record, judged = fired
        self._write(judged)
        return record

    def _closed(self, done: tuple[Judged | None, Any]) -> None:
        judged, stored = done
        self.conversation = stored.conv
        self._write(judged)

    # -- async: the same steps; the lock is awaited in a thread so the event loop never blocks --

    async def acompletion(self, messages: Sequence[Mapping[str, Any]], *, side: bool = False, **kwargs: Any) -> Any:
        """`litellm.acompletion` with the model chosen by the machine. `side=True`: not a turn."""
        async with self._lock:
            call = await self._abegin(messages, side, kwargs)
            if call.turn.retry:
                return self._replay()
            role, response = await self._acall(call)
            if kwargs.get("stream"):
                self._stream_open = True
                return _AStream(self._astream(call, role, response), self._free)
            return await self._acommit(call, role, response)

    async def _acall(self, call: _Call) -> tuple[str, Any]:
        for role, attempt, args in self._attempts(call):
            try:
                return role, await litellm.acompletion(**args)
            except asyncio.CancelledError:
                raise  # nothing was committed: the session is as it was
            except Exception as exc:
                if wait := self._failed(call, role, attempt, args["model"], exc):
                    await asyncio.sleep(wait)
        raise self._all_failed(call)

    async def aclose(self, messages: Sequence[Mapping[str, Any]] = ()) -> None:
        _conversation(messages, "aclose")
        async with self._lock:
            self._idle()
            async with self._order:
                self._closed(await self.loop.aupdate(self.name, lambda s: s.conv.core.close(s.conv, messages)))

    # -- streams: chunks pass through; the turn is settled once the stream is consumed. A stream
    # closed early settles nothing (like a cancelled call), and no call may start while one is open.

    def _stream(self, call: _Call, role: str, stream: Any) -> Generator[Any, None, None]:
        chunks = []
        try:
            for chunk in self._mapped(role, stream):
                chunks.append(chunk)
                if not _ours(call, chunk):
                    yield chunk
            self._ended(role, chunks)
            call.unreported = not _reported(stream, chunks)
            call.streamed = _rebuilt(call, chunks)
            with self._lock:
                self._stream_open = False
                self._commit(call, role, litellm.stream_chunk_builder(chunks, messages=call.messages))
        finally:
            self._stream_open = False

    async def _astream(self, call: _Call, role: str, stream: Any) -> AsyncGenerator[Any, None]:
        chunks = []
        try:
            try:
                async for chunk in stream:
                    chunks.append(chunk)
                    if not _ours(call, chunk):
                        yield chunk
            except Exception as exc:
                raise self._cut(role, exc) from exc
            self._ended(role, chunks)
            call.unreported = not _reported(stream, chunks)
            call.streamed = _rebuilt(call, chunks)
            async with self._lock:
                self._stream_open = False
                await self._acommit(call, role, litellm.stream_chunk_builder(chunks, messages=call.messages))
        finally:
            self._stream_open = False

    def _ended(self, role: str, chunks: list[Any]) -> None:
        """A stream that stopped without a finish reason was cut (LiteLLM versions differ in saying so)."""
        if not any(getattr(c.choices[0], "finish_reason", None) for c in chunks if getattr(c, "choices", None)):
            raise self._cut(role, ConnectionError("the stream ended without its end marker (no finish reason)"))

    def _mapped(self, role: str, stream: Any) -> Iterator[Any]:
        try:
            yield from stream
        except Exception as exc:
            raise self._cut(role, exc) from exc

    def _cut(self, role: str, exc: BaseException) -> ProviderError:
        model = self.adapter.bindings[role].model
        return ProviderError(
            self.adapter.redact(
                f"{role} model {model}: the stream broke off ({type(exc).__name__}: {exc}); nothing was committed"
            ),
            role=role,
            model=model,
        )


@functools.lru_cache(maxsize=256)
def _supports_usage(model: str, provider: str | None) -> bool:
    try:
        return "stream_options" in (
            litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or []
        )
    except Exception:  # LiteLLM does not know the model: asking could make the call fail as unsupported
        return False


def _rebuilt(call: _Call, chunks: list[Any]) -> dict[str, Any]:
    """A stream's text and tool calls, by the accumulator the gateway uses (`lwfsm.turn.stream`)."""
    names = [
        str((t.get("function") or {}).get("name")) for t in call.kwargs.get("tools") or () if isinstance(t, Mapping)
    ]
    acc = OpenAIStream(names)
    for chunk in chunks:
        acc.add(chunk.model_dump() if hasattr(chunk, "model_dump") else chunk)
    reply = acc.reply()
    out: dict[str, Any] = {"content": reply["content"]}
    if reply.get("tool_calls"):
        out["tool_calls"] = reply["tool_calls"]
    return out


def _reported(stream: Any, chunks: list[Any]) -> bool:
    """Whether the provider itself reported a stream's usage. Asked for usage, LiteLLM ends a stream with
    a usage chunk even when the provider sent none (its local estimate, often far off); its stream
    wrapper's `chunks` hold what the provider sent (tests/test_adapter.py pins this)."""
    raw = getattr(stream, "chunks", None)
    return any(getattr(c, "usage", None) is not None for c in (raw if isinstance(raw, list) else chunks))


def provider_usage(stream: Any) -> Any:
    """The usage a LiteLLM stream's provider reported, as LiteLLM combines its chunks' counts (whether or
    not the stream's consumer got a usage chunk); None when the provider reported none (unknown)."""
    raw = getattr(stream, "chunks", None)
    if not isinstance(raw, list) or not any(getattr(c, "usage", None) is not None for c in raw):
        return None
    return getattr(litellm.stream_chunk_builder(raw), "usage", None)


def anthropic_reported(stream: Any) -> bool:
    """Whether the upstream itself reported the usage of an Anthropic stream LiteLLM translated from another
    protocol (`litellm.anthropic_messages`), or LiteLLM estimated it. Read from the stream wrapper's raw
    chunks as `_reported` reads them; a LiteLLM whose wrapper keeps them elsewhere says False (unknown),
    never an estimate taken as measured."""
    wrapper = getattr(getattr(stream, "_anthropic_wrapper", None), "completion_stream", None)
    inner = getattr(wrapper, "_stream", wrapper)
    raw = getattr(inner, "chunks", None)
    return isinstance(raw, list) and any(getattr(c, "usage", None) is not None for c in raw)


def _conversation(messages: Any, call: str) -> None:
    """A call's messages are a list (a string was sent on, and its failure blamed on a model); its items are
    LiteLLM's to read (dicts, or the Message objects a reply holds)."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise TypeError(
            f"{call}() takes the conversation's messages, a list of dicts such as "
            f"[{{'role': 'user', 'content': 'hi'}}]; got {type(messages).__name__}"
        )
    for i, m in enumerate(messages):
        if isinstance(m, Mapping) or callable(getattr(m, "get", None)):  # (LiteLLM's Message reads as a dict)
            continue
        if hasattr(m, "role"):  # the judge reads messages as dicts: an SDK's object is not one
            raise TypeError(f"{call}(): messages[{i}] is a {type(m).__name__}: pass its .model_dump()")
        raise TypeError(f"{call}(): messages[{i}] is a {type(m).__name__}, not a message (a dict with a role)")


class _Stream:
    """A call's stream of chunks: read to its end, it settles the turn. Closed or dropped before that,
    even unread, it settles nothing and the session is free again: a generator never started runs no
    `finally`, so the session stayed busy for good."""

    def __init__(self, chunks: Generator[Any, None, None], free: Callable[[], None]) -> None:
        self._chunks, self._free, self._done = chunks, free, False

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._chunks)
        except BaseException:  # the end, a cut stream, a failed commit: the generator ran its `finally`
            self._done = True
            raise

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._chunks.close()  # GeneratorExit inside: nothing settled
            self._free()

    def __del__(self) -> None:
        self.close()


class _AStream:
    """`_Stream` for `acompletion(stream=True)`."""

    def __init__(self, chunks: AsyncGenerator[Any, None], free: Callable[[], None]) -> None:
        self._chunks, self._free, self._done = chunks, free, False

    def __aiter__(self) -> _AStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await anext(self._chunks)
        except BaseException:
            self._done = True
            raise

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            await self._chunks.aclose()
            self._free()

    def __del__(self) -> None:
        if not self._done:  # dropped unread: its generator is finalised by the event loop; free the session now
            self._done = True
            self._free()


def _ours(call: _Call, chunk: Any) -> bool:
    """A usage chunk (no choices) the adapter asked for and the caller did not: kept from the caller, whose
    loop may well read `chunk.choices[0]` on every chunk."""
    return "stream_options" not in call.kwargs and not getattr(chunk, "choices", None)


def _asks_usage(args: Mapping[str, Any]) -> bool:
    """Whether LiteLLM passes `stream_options` to this model's provider (where not, its usage comes or not)."""
    return _supports_usage(str(args.get("model")), args.get("custom_llm_provider"))


_BIG_REPLY = 65_536  # characters of a pending reply above which async calls judge it in a worker thread
