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
import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..errors import AllAttemptsFailed, AuthError, BadRequestError, ConfigError, ProviderError, SessionBusy
from ..spec import Spec, load_spec
from ..turn import Conversation, ConversationState, Detector, Judged, Plan, TurnCore, Usage
from ..turn.bindings import RoleBinding, bindings, params_from_env

__all__ = ["EXCEPTIONS", "Adapter", "AgentSession", "CallInfo", "classify", "price", "retry_after"]

# Offline by design: never fetch LiteLLM's remote price map. This must be set before LiteLLM is
# imported, hence the late import below.
_IMPORTED_TOO_EARLY = "litellm" in sys.modules and "LITELLM_LOCAL_MODEL_COST_MAP" not in os.environ
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

try:
    import litellm  # noqa: E402
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('lwfsm.provider.adapter needs LiteLLM: pip install "lwfsm[litellm]"') from exc

litellm.suppress_debug_info = True  # lwfsm reports provider errors itself; no banners on stdout

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


@functools.lru_cache(maxsize=4096)
def _cost(model: str, prompt: int, completion: int) -> float | None:
    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt, completion_tokens=completion)
    except Exception:  # LiteLLM raises plain exceptions for models it has no price for
        return None
    return float(p + c)


def price(model: str, usage: Usage) -> float | None:
    """Dollars for `usage` on `model` from LiteLLM's local price map; None when it has no price."""
    return _cost(model, usage.prompt_tokens, usage.completion_tokens)


@dataclass(frozen=True)
class CallInfo:
    """The last call of a session, for display: who served it and how it went."""

    role: str
    model: str
    retries: int
    side: bool
    latency: float


@dataclass
class _Call:
    """One call on its way: what settling it needs once a response is in."""

    messages: list[Mapping[str, Any]]
    kwargs: dict[str, Any]
    plan: Plan
    started: float
    failures: list[tuple[str, str, BaseException]] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)  # roles given up on for this call


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
    ) -> None:
        env = os.environ if env is None else env
        if isinstance(spec, Engine):
            engine = spec
        else:
            loaded = spec if isinstance(spec, Spec) else load_spec(spec)
            overrides = params_from_env(loaded, env)
            engine = Engine(loaded.with_params(overrides) if overrides else loaded)
        self.core = TurnCore(engine, detectors=detectors, turn_unit=turn_unit)
        self.engine, self.spec = engine, engine.spec
        self.bindings = bindings(self.spec, models, env)
        self.env = env
        if min(retries, backoff, max_backoff, max_retry_after) < 0 or timeout <= 0 or deadline <= 0:
            raise ConfigError("retries, backoff, max_backoff, max_retry_after must be >= 0; timeout, deadline > 0")
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

    def redact(self, text: str) -> str:
        """`text` without any bound key's value."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def session(
        self, name: str | None = None, state: ConversationState | Mapping[str, Any] | str | None = None
    ) -> AgentSession:
        """A new agent session, or one continuing `state` (a `ConversationState` or its JSON)."""
        self._sessions += 1
        conv = self.core.start() if state is None else self.core.restore(state)
        return AgentSession(self, conv, name or f"session-{self._sessions}")


class AgentSession:
    """One conversation through LiteLLM. Calls on one session are serialised, sync and async alike."""

    def __init__(self, adapter: Adapter, conversation: Conversation, name: str) -> None:
        self.adapter = adapter
        self.core = adapter.core
        self.conversation = conversation
        self.name = name
        self.last: CallInfo | None = None
        self._stream_open = False
        self._log = adapter.log_dir / f"{name}.jsonl" if adapter.log_dir else None

    @property
    def machine(self) -> Any:
        """The conversation's engine `Session` (state, role, counters, history)."""
        return self.conversation.session

    def state(self) -> ConversationState:
        """The whole conversation as a value: store it, restore it with `adapter.session(state=...)`."""
        with self.conversation.lock:
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
        return self.conversation.ledger.table(price, self.adapter.lead_model)

    # -- the shared steps --

    def _begin(self, messages: Sequence[Mapping[str, Any]], side: bool, kwargs: dict[str, Any]) -> _Call:
        if "model" in kwargs:
            raise TypeError("the model is chosen by the session's state: do not pass model=")
        self._idle()
        plan = self.core.plan(self.conversation, messages, side=side)
        return _Call(list(messages), kwargs, plan, time.perf_counter())

    def _idle(self) -> None:
        if self._stream_open:
            raise SessionBusy(
                f"session {self.name!r}: the stream of the previous call is still open; consume or close it first"
            )

    def _attempts(self, call: _Call) -> Iterator[tuple[str, int, dict[str, Any]]]:
        """(role, attempt, LiteLLM arguments): retries on the chosen role, then on its technical fallback,
        until the call's deadline. A role marked in `call.skip` gets no more attempts."""
        a = self.adapter
        for r in self.core.roles_for(call.plan):
            for attempt in range(a.retries + 1):
                if r in call.skip:
                    break
                if time.perf_counter() - call.started > a.deadline:
                    return
                args = {"timeout": a.timeout, **a.bindings[r].call_kwargs(a.env), **call.kwargs}
                yield r, attempt, {"messages": call.messages, "num_retries": 0, **args}

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

    def _settle(self, call: _Call, role: str, response: Any) -> Any:
        """Validate the response, then let the core commit the verdict and open this turn (all or nothing)."""
        model = self.adapter.bindings[role].model
        reply = None
        if not call.plan.side:
            choices = getattr(response, "choices", None)
            if not choices:
                raise ProviderError(f"{role} model {model} returned a response without choices", role=role, model=model)
            message = choices[0].message
            reply = message.model_dump() if hasattr(message, "model_dump") else dict(message)
        latency = time.perf_counter() - call.started
        judged = self.core.settle(
            self.conversation,
            call.plan,
            role=role,
            model=model,
            reply=reply,
            tools=call.kwargs.get("tools") or (),
            usage=Usage.of(getattr(response, "usage", None)),
            latency=latency,
            retries=len(call.failures),
        )
        self.last = CallInfo(role, model, len(call.failures), call.plan.side, latency)
        self._write(judged)
        return response

    def _write(self, judged: Judged | None) -> None:
        if judged is None or self._log is None:
            return
        record = judged.record(self.name, price(judged.pending.model, judged.pending.usage))
        try:
            with self._log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:  # the turn is committed; losing its log line must not undo or repeat it
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
        with self.conversation.lock:
            call = self._begin(messages, side, kwargs)
            for role, attempt, args in self._attempts(call):
                try:
                    response = litellm.completion(**args)
                except Exception as exc:
                    if wait := self._failed(call, role, attempt, args["model"], exc):
                        time.sleep(wait)
                    continue
                if kwargs.get("stream"):
                    self._stream_open = True
                    return self._stream(call, role, response)
                return self._settle(call, role, response)
            raise self._all_failed(call)

    def close(self, messages: Sequence[Mapping[str, Any]] = ()) -> None:
        """End the conversation: judge the last turn from `messages` (tool results, the user's last word)."""
        with self.conversation.lock:
            self._idle()
            self._write(self.core.close(self.conversation, messages))

    # -- async: the same steps; the lock is awaited in a thread so the event loop never blocks --

    async def acompletion(self, messages: Sequence[Mapping[str, Any]], *, side: bool = False, **kwargs: Any) -> Any:
        """`litellm.acompletion` with the model chosen by the machine. `side=True`: not a turn."""
        await _acquire(self.conversation.lock)
        try:
            pending = self.conversation.pending
            if pending is not None and len(str(pending.reply.get("content") or "")) > _BIG_REPLY:
                call = await asyncio.to_thread(self._begin, messages, side, kwargs)  # judging must not stall the loop
            else:
                call = self._begin(messages, side, kwargs)
            for role, attempt, args in self._attempts(call):
                try:
                    response = await litellm.acompletion(**args)
                except asyncio.CancelledError:
                    raise  # nothing was committed: the session is as it was
                except Exception as exc:
                    if wait := self._failed(call, role, attempt, args["model"], exc):
                        await asyncio.sleep(wait)
                    continue
                if kwargs.get("stream"):
                    self._stream_open = True
                    return self._astream(call, role, response)
                return self._settle(call, role, response)
            raise self._all_failed(call)
        finally:
            self.conversation.lock.release()

    async def aclose(self, messages: Sequence[Mapping[str, Any]] = ()) -> None:
        await _acquire(self.conversation.lock)
        try:
            self._idle()
            self._write(self.core.close(self.conversation, messages))
        finally:
            self.conversation.lock.release()

    # -- streams: chunks pass through; the turn is settled once the stream is consumed. A stream
    # closed early settles nothing (like a cancelled call), and no call may start while one is open.

    def _stream(self, call: _Call, role: str, stream: Any) -> Iterator[Any]:
        chunks = []
        try:
            for chunk in self._mapped(role, stream):
                chunks.append(chunk)
                yield chunk
            with self.conversation.lock:
                self._stream_open = False
                self._settle(call, role, litellm.stream_chunk_builder(chunks, messages=call.messages))
        finally:
            self._stream_open = False

    async def _astream(self, call: _Call, role: str, stream: Any) -> AsyncIterator[Any]:
        chunks = []
        try:
            try:
                async for chunk in stream:
                    chunks.append(chunk)
                    yield chunk
            except Exception as exc:
                raise self._cut(role, exc) from exc
            await _acquire(self.conversation.lock)
            try:
                self._stream_open = False
                self._settle(call, role, litellm.stream_chunk_builder(chunks, messages=call.messages))
            finally:
                self.conversation.lock.release()
        finally:
            self._stream_open = False

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


_BIG_REPLY = 65_536  # characters of a pending reply above which async calls judge it in a worker thread


async def _acquire(lock: threading.Lock) -> None:
    """Take a threading lock from a coroutine without blocking the event loop (cancellation-safe)."""
    if lock.acquire(blocking=False):
        return
    waiter = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
    try:
        await asyncio.shield(waiter)
    except asyncio.CancelledError:
        # The thread will still get the lock: give it back as soon as it does.
        waiter.add_done_callback(lambda t: lock.release() if not t.cancelled() and t.exception() is None else None)
        raise
