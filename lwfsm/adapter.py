"""The LiteLLM adapter: real model calls, the model chosen by the session's state.

`Adapter(spec, models={...})` binds roles to LiteLLM models; `adapter.session()` gives an
`AgentSession` whose `completion(messages, ...)` / `await acompletion(...)` take LiteLLM's
arguments (less `model`) and return LiteLLM's response. Turn N is judged when call N+1 arrives
(or when the session is closed), from call N+1's messages: malformed tool calls in reply N, tool
results that report errors, a user message that corrects the model, code blocks that do not parse.
The judged event is committed to the machine only once call N+1 has returned, so a cancelled or
failed call leaves the session exactly as it was. Technical errors are retried and never move the
machine. This is the only module that imports LiteLLM.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import Engine, Session
from .errors import AllAttemptsFailed, AuthError, BadRequestError, ConfigError, ProviderError, SpecError
from .spec import Spec, load_spec

# Offline by design: never fetch LiteLLM's remote price map. This must be set before LiteLLM is
# imported, hence the late import below.
_IMPORTED_TOO_EARLY = "litellm" in sys.modules and "LITELLM_LOCAL_MODEL_COST_MAP" not in os.environ
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

try:
    import litellm  # noqa: E402
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('lwfsm.adapter needs LiteLLM: pip install "lwfsm[litellm]"') from exc

litellm.suppress_debug_info = True  # lwfsm reports provider errors itself; no banners on stdout

logger = logging.getLogger("lwfsm")
if _IMPORTED_TOO_EARLY:
    logger.warning(
        "litellm was imported before lwfsm.adapter without LITELLM_LOCAL_MODEL_COST_MAP=True, so it may have "
        "fetched its remote price map; set that variable (or import lwfsm.adapter first) to stay offline"
    )

# Every exception class LiteLLM defines, placed: "retry" (technical: retry, then maybe the other
# role) or the lwfsm error raised at once. A test fails when LiteLLM adds a class not listed here.
EXCEPTIONS: dict[str, str | type[ProviderError]] = {
    "Timeout": "retry",
    "APIConnectionError": "retry",
    "RateLimitError": "retry",
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
    "BudgetExceededError": AuthError,
    "PaymentRequiredError": AuthError,
    "BadRequestError": BadRequestError,
    "InvalidRequestError": BadRequestError,
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
    """Seconds the provider asked us to wait (Retry-After header), if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


# --- binding roles to models -------------------------------------------------------------


@dataclass(frozen=True)
class RoleBinding:
    """A LiteLLM model ("provider/model") and the call options for one role."""

    model: str
    api_base: str | None = None
    api_key_env: str | None = None  # the NAME of the variable holding the key; the key is never stored
    options: Mapping[str, Any] = field(default_factory=dict)  # temperature, max_tokens, ...

    def call_kwargs(self, env: Mapping[str, str]) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self.model, **self.options}
        if self.api_base:
            kw["api_base"] = self.api_base
        if self.api_key_env:
            key = env.get(self.api_key_env)
            if not key:
                raise ConfigError(f"{self.api_key_env} is not set: it should hold the API key for {self.model}")
            kw["api_key"] = key
        return kw

    def __repr__(self) -> str:  # never show a key: only the variable's name is kept anyway
        return f"RoleBinding(model={self.model!r}, api_base={self.api_base!r}, api_key_env={self.api_key_env!r})"


GOOSE_MODELS = {
    "lead": ("GOOSE_LEAD_MODEL", "GOOSE_LEAD_PROVIDER"),
    "worker": ("GOOSE_MODEL", "GOOSE_PROVIDER"),
    "planner": ("GOOSE_PLANNER_MODEL", "GOOSE_PLANNER_PROVIDER"),
}
GOOSE_PARAMS = {
    "lead_turns": "GOOSE_LEAD_TURNS",
    "failure_threshold": "GOOSE_LEAD_FAILURE_THRESHOLD",
    "fallback_turns": "GOOSE_LEAD_FALLBACK_TURNS",
}


def _model_string(value: str, provider: str | None, var: str, provider_var: str | None) -> str:
    value = value.strip()
    if not value:
        raise ConfigError(f"{var} is empty: give a model such as 'openai/gpt-4o-mini'")
    if provider:
        return f"{provider.strip()}/{value}" if not value.startswith(provider.strip() + "/") else value
    if "/" not in value:
        hint = f" or set {provider_var}" if provider_var else ""
        raise ConfigError(f"{var}={value!r} names no provider: write 'provider/{value}'{hint}")
    return value


def bindings(
    spec: Spec,
    models: Mapping[str, str | RoleBinding | Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, RoleBinding]:
    """Bind every role of the spec: arguments > LWFSM_<ROLE>_* > goose's GOOSE_* names."""
    env = os.environ if env is None else env
    models = dict(models or {})
    out: dict[str, RoleBinding] = {}
    for role in spec.roles:
        given = models.pop(role, None)
        if isinstance(given, RoleBinding):
            out[role] = given
            continue
        if isinstance(given, Mapping):  # a config section: {model, api_base, api_key_env, <call options>}
            out[role] = _from_section(role, given)
            continue
        up = role.upper()
        if given is not None:
            model = _model_string(given, None, f"models[{role!r}]", None)
        elif env.get(f"LWFSM_{up}_MODEL") is not None:
            model = _model_string(env[f"LWFSM_{up}_MODEL"], None, f"LWFSM_{up}_MODEL", None)
        elif role in GOOSE_MODELS and env.get(GOOSE_MODELS[role][0]) is not None:
            var, pvar = GOOSE_MODELS[role]
            provider = env.get(pvar) or (env.get("GOOSE_PROVIDER") if role != "worker" else None)
            model = _model_string(env[var], provider, var, pvar)
        else:
            names = f"LWFSM_{up}_MODEL" + (f" or {GOOSE_MODELS[role][0]}" if role in GOOSE_MODELS else "")
            raise ConfigError(
                f"no model for role '{role}' of spec '{spec.name}': pass models={{{role!r}: "
                f"'provider/model'}} or set {names}"
            )
        options: dict[str, Any] = {}
        temp_var = f"LWFSM_{up}_TEMPERATURE"
        if env.get(temp_var) is not None:
            try:
                options["temperature"] = float(env[temp_var])
            except ValueError:
                raise ConfigError(f"{temp_var}={env[temp_var]!r} is not a number") from None
        out[role] = RoleBinding(
            model, env.get(f"LWFSM_{up}_API_BASE") or None, env.get(f"LWFSM_{up}_API_KEY_ENV") or None, options
        )
    if models:
        raise ConfigError(
            f"models given for roles the spec does not have: {', '.join(models)}; "
            f"spec '{spec.name}' has: {', '.join(spec.roles)}"
        )
    return out


def _from_section(role: str, section: Mapping[str, Any]) -> RoleBinding:
    where = f"models[{role!r}]"
    if not isinstance(section.get("model"), str):
        raise ConfigError(f"{where} needs a 'model' such as 'openai/gpt-4o-mini'")
    for key in ("api_base", "api_key_env"):
        if section.get(key) is not None and not isinstance(section[key], str):
            raise ConfigError(f"{where}.{key} must be text, got {section[key]!r}")
    if "api_key" in section:
        raise ConfigError(f"{where}.api_key: do not put keys in configuration; name the variable in api_key_env")
    options = {k: v for k, v in section.items() if k not in ("model", "api_base", "api_key_env")}
    model = _model_string(section["model"], None, f"{where}.model", None)
    return RoleBinding(model, section.get("api_base"), section.get("api_key_env"), options)


def params_from_env(spec: Spec, env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Param values from LWFSM_PARAM_<NAME>, else goose's GOOSE_LEAD_* names; ranges are checked."""
    env = os.environ if env is None else env
    out: dict[str, int] = {}
    for name in spec.params:
        for var in (f"LWFSM_PARAM_{name.upper()}", GOOSE_PARAMS.get(name)):
            if var is None or env.get(var) is None:
                continue
            try:
                out[name] = int(env[var].strip())
            except ValueError:
                raise ConfigError(f"{var}={env[var]!r} is not an integer (param '{name}')") from None
            try:
                spec.with_params({name: out[name]})
            except SpecError as exc:
                raise ConfigError(f"{var}={env[var]!r}: {exc.issues[0].message}") from None
            break
    return out


# --- judging a turn ----------------------------------------------------------------------

Detector = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]], str | None]
# (reply N as a message dict, the messages that came after it, the tools offered) -> reason or None


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content or "")


def malformed_tool_calls(
    reply: Mapping[str, Any], after: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> str | None:
    offered = {t.get("function", {}).get("name") for t in tools}
    for call in reply.get("tool_calls") or []:
        fn = call.get("function") or {}
        name, args = fn.get("name"), fn.get("arguments")
        if tools and name not in offered:
            return f"tool call to unknown tool {name!r}"
        try:
            json.loads(args or "{}")
        except (TypeError, ValueError):
            return f"tool call {name!r} has arguments that are not valid JSON"
    return None


_CODE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.S)


def unparsable_code(
    reply: Mapping[str, Any], after: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> str | None:
    for lang, body in _CODE.findall(_text(reply)):
        lang = lang.lower()
        try:
            if lang in ("python", "py"):
                ast.parse(body)
            elif lang == "json":
                json.loads(body)
        except (SyntaxError, ValueError) as exc:
            return f"{lang} code block does not parse: {str(exc).splitlines()[0]}"
    return None


def pattern_detectors(spec: Spec) -> list[Detector]:
    """Detectors for the spec's `judging:` patterns: tool errors and user corrections."""
    judging = spec.judging
    if judging is None:
        return []
    tool_patterns = [p.lower() for p in judging.tool_error_patterns]
    corrections = [p.lower() for p in judging.correction_patterns]

    return [
        _matching("tool", tool_patterns, "tool result reports an error"),
        _matching("user", corrections, "the user corrects the model"),
    ]


def _matching(role: str, patterns: list[str], says: str) -> Detector:
    """A detector: the first message of `role` after the reply that contains one of `patterns`."""

    def detect(reply: Mapping[str, Any], after: Sequence[Mapping[str, Any]], tools: Any) -> str | None:
        for msg in after:
            if msg.get("role") == role:
                text = _text(msg).lower()
                hit = next((p for p in patterns if p in text), None)
                if hit:
                    return f"{says} ({hit!r})"
        return None

    return detect


# --- the ledger --------------------------------------------------------------------------


@dataclass
class Call:
    role: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    lead_model: str | None
    latency: float
    retries: int
    side: bool

    # Priced when read, not on the call path: a LiteLLM price lookup costs ~0.2 ms.
    @property
    def cost(self) -> float | None:
        """None: the model is not in LiteLLM's (local) price map."""
        return _cost(self.model, self.prompt_tokens, self.completion_tokens)

    @property
    def lead_cost(self) -> float | None:
        """What the same tokens would have cost on the lead role's model."""
        return _cost(self.lead_model, self.prompt_tokens, self.completion_tokens) if self.lead_model else self.cost


@dataclass
class Ledger:
    calls: list[Call] = field(default_factory=list)

    def totals(self) -> dict[str, dict[str, Any]]:
        """Per "role model": calls, tokens, cost (None when any call's price is unknown), retries."""
        out: dict[str, dict[str, Any]] = {}
        for c in self.calls:
            row = out.setdefault(
                f"{c.role} {c.model}",
                {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "retries": 0, "latency": 0.0},
            )
            row["calls"] += 1
            row["prompt_tokens"] += c.prompt_tokens
            row["completion_tokens"] += c.completion_tokens
            row["cost"] = None if row["cost"] is None or c.cost is None else row["cost"] + c.cost
            row["retries"] += c.retries
            row["latency"] += c.latency
        return out

    @property
    def cost(self) -> float | None:
        costs = [c.cost for c in self.calls]
        return None if None in costs else sum(c for c in costs if c is not None)

    @property
    def lead_only_cost(self) -> float | None:
        costs = [c.lead_cost for c in self.calls]
        return None if None in costs else sum(c for c in costs if c is not None)

    def table(self) -> str:
        lines = [f"{'role model':40} {'calls':>5} {'tokens in':>9} {'out':>6} {'retries':>7} {'cost $':>10}"]
        for key, row in self.totals().items():
            cost = "unknown" if row["cost"] is None else f"{row['cost']:.6f}"
            lines.append(
                f"{key:40} {row['calls']:>5} {row['prompt_tokens']:>9} {row['completion_tokens']:>6} "
                f"{row['retries']:>7} {cost:>10}"
            )
        total = "unknown" if self.cost is None else f"{self.cost:.6f}"
        lead = "unknown" if self.lead_only_cost is None else f"{self.lead_only_cost:.6f}"
        lines.append(f"total cost ${total}; the same tokens on the lead alone: ${lead}")
        return "\n".join(lines)


@functools.lru_cache(maxsize=4096)
def _cost(model: str, prompt: int, completion: int) -> float | None:
    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt, completion_tokens=completion)
    except Exception:  # LiteLLM raises plain exceptions for models it has no price for
        return None
    return float(p + c)


# --- the adapter -------------------------------------------------------------------------


@dataclass
class _Pending:
    """A served turn waiting for its verdict."""

    turn: int
    state: str
    role: str
    model: str
    reply: dict[str, Any]
    tools: list[dict[str, Any]]
    usage: tuple[int, int]
    failure: str | None = None  # a failure already seen within this turn (turn unit "message")


@dataclass
class _Call:
    """One call on its way: what settling it needs once a response is in."""

    messages: list[Mapping[str, Any]]
    kwargs: dict[str, Any]
    side: bool
    verdict: tuple[str | None, str | None]  # see AgentSession._verdict
    role: str  # the role the machine chose
    started: float
    failures: list[tuple[str, str, BaseException]] = field(default_factory=list)


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
        other_role: Mapping[str, str] | None = None,
        turn_unit: str = "call",
        detectors: Sequence[Detector] | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        env = os.environ if env is None else env
        if isinstance(spec, Engine):
            self.engine = spec
        else:
            loaded = spec if isinstance(spec, Spec) else load_spec(spec)
            overrides = params_from_env(loaded, env)
            self.engine = Engine(loaded.with_params(overrides) if overrides else loaded)
        self.spec = self.engine.spec
        self.bindings = bindings(self.spec, models, env)
        self.env = env
        if turn_unit not in ("call", "message"):
            raise ConfigError(f"turn_unit must be 'call' or 'message', got {turn_unit!r}")
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise ConfigError("retries, backoff and max_backoff must be >= 0")
        self.retries, self.backoff, self.max_backoff, self.turn_unit = retries, backoff, max_backoff, turn_unit
        # Which role may serve a turn when its own model keeps failing technically (goose: the lead).
        if other_role is None:
            roles = list(self.spec.roles)
            other_role = {"worker": "lead"} if {"lead", "worker"} <= set(roles) else {}
        for a, b in other_role.items():
            if a not in self.spec.roles or b not in self.spec.roles:
                raise ConfigError(f"other_role {a!r} -> {b!r} names a role the spec does not have")
        self.other_role = dict(other_role)
        self.detectors: list[Detector] = (
            list(detectors)
            if detectors is not None
            else [malformed_tool_calls, unparsable_code, *pattern_detectors(self.spec)]
        )
        self.log_dir = Path(log_dir) if log_dir is not None else None
        lead = self.bindings.get("lead")
        self.lead_model = lead.model if lead else None
        self._sessions = 0

    def session(self, session: Session | None = None, name: str | None = None) -> AgentSession:
        """A new agent session (or one wrapping a restored lwfsm Session)."""
        self._sessions += 1
        return AgentSession(self, session or self.engine.session(), name or f"session-{self._sessions}")


class AgentSession:
    """One conversation: picks the model per turn, judges turns, keeps the ledger and the log."""

    def __init__(self, adapter: Adapter, session: Session, name: str) -> None:
        self.adapter = adapter
        self.machine = session
        self.name = name
        self.ledger = Ledger()
        self._pending: _Pending | None = None
        self._alock = asyncio.Lock()
        self._tlock = threading.Lock()
        self._log = adapter.log_dir / f"{name}.jsonl" if adapter.log_dir else None

    # -- judging --

    def _verdict(self, messages: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
        """(event, reason) for the pending turn, judged from the next call's messages; changes nothing.
        The event is None when there is no pending turn, or when the turn is still open (turn unit
        "message": tool results only) and `reason` is a failure to carry into it."""
        p = self._pending
        if p is None:
            return None, None
        after = list(messages)
        for i in range(len(after) - 1, -1, -1):  # what came after the last assistant message
            if after[i].get("role") == "assistant":
                after = after[i + 1 :]
                break
        reason = p.failure
        for detect in self.adapter.detectors:
            reason = reason or detect(p.reply, after, p.tools)
        if self.adapter.turn_unit == "message" and not any(m.get("role") == "user" for m in after):
            return None, reason  # the tool loop of one user message is one turn: judge when the user speaks
        return ("failure" if reason else "turn_completed"), reason

    def _commit(self, event: str, reason: str | None) -> None:
        p = self._pending
        assert p is not None
        record = self.machine.fire(event, reason)
        self._pending = None
        if self._log:
            self._log.parent.mkdir(parents=True, exist_ok=True)
            entry = {
                "turn": p.turn,
                "state": p.state,
                "role": p.role,
                "model": p.model,
                "outcome": event,
                "reason": reason,
                "prompt_tokens": p.usage[0],
                "completion_tokens": p.usage[1],
                "cost": _cost(p.model, *p.usage),
                "transition": {
                    "source": record.source,
                    "dest": record.dest,
                    "index": record.transition,
                    "guard": record.guard,
                },
            }
            with self._log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    # -- calling --

    def _begin(self, messages: Sequence[Mapping[str, Any]], side: bool, kwargs: dict[str, Any]) -> _Call:
        """Judge the pending turn and choose the role for this call, changing nothing yet."""
        if "model" in kwargs:
            raise TypeError("the model is chosen by the session's state: do not pass model=")
        verdict = (None, None) if side else self._verdict(messages)
        role = self.machine.peek(verdict[0])[1] if verdict[0] else self.machine.role
        return _Call(list(messages), kwargs, side, verdict, role, time.perf_counter())

    def _attempts(self, call: _Call) -> Iterator[tuple[str, int, dict[str, Any]]]:
        """(role, attempt, LiteLLM arguments): retries on the chosen role, then on its other role."""
        other = self.adapter.other_role.get(call.role)
        for r in [call.role, other] if other else [call.role]:
            for attempt in range(self.adapter.retries + 1):
                args = {**self.adapter.bindings[r].call_kwargs(self.adapter.env), **call.kwargs}
                yield r, attempt, {"messages": call.messages, "num_retries": 0, **args}

    def _failed(self, call: _Call, role: str, attempt: int, model: str, exc: Exception) -> float:
        """Raise at once what retrying cannot fix; else note the attempt and return the wait before the next."""
        fatal = self._errors(role, exc)
        if fatal is not None:
            raise fatal from exc
        call.failures.append((role, model, exc))
        return self._delay(attempt, exc) if attempt < self.adapter.retries else 0.0

    def _settle(self, call: _Call, role: str, response: Any) -> Any:
        """Record the call, commit the previous turn's verdict, and open this turn."""
        binding = self.adapter.bindings[role]
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        latency = time.perf_counter() - call.started
        self.ledger.calls.append(
            Call(
                role, binding.model, prompt, completion, self.adapter.lead_model, latency, len(call.failures), call.side
            )
        )
        if call.side:
            return response
        event, reason = call.verdict
        if event is not None:
            self._commit(event, reason)
        message = response.choices[0].message
        reply = message.model_dump() if hasattr(message, "model_dump") else dict(message)
        tools = [dict(t) for t in call.kwargs.get("tools") or []]
        carried = reason if event is None else None  # an open turn keeps the failure already seen
        self._pending = _Pending(
            self.machine.turn + 1, self.machine.state, role, binding.model, reply, tools, (prompt, completion), carried
        )
        return response

    def _errors(self, role: str, exc: BaseException) -> ProviderError | None:
        """The lwfsm error to raise at once, or None when the error is technical (retry)."""
        kind = classify(exc)
        model = self.adapter.bindings[role].model
        if kind is None:
            if isinstance(exc, (TimeoutError, ConnectionError)):
                return None
            message = f"{role} model {model}: unexpected error {type(exc).__name__}: {exc}"
            return ProviderError(message, role=role, model=model)
        if kind == "retry":
            return None
        assert isinstance(kind, type)
        return kind(f"{role} model {model}: {type(exc).__name__}: {exc}", role=role, model=model)

    def _delay(self, attempt: int, exc: BaseException) -> float:
        asked = retry_after(exc)
        if asked is not None:
            return min(asked, self.adapter.max_backoff)
        base = min(self.adapter.backoff * 2.0**attempt, self.adapter.max_backoff)
        return base * (0.5 + random.random() / 2)  # jitter: spread the retries of many sessions

    def _all_failed(self, call: _Call) -> AllAttemptsFailed:
        failures = call.failures
        tried = "; ".join(f"{r} {m}: {type(e).__name__}" for r, m, e in failures)
        err = AllAttemptsFailed(
            f"every attempt failed for the {call.role} turn ({len(failures)} attempts: {tried})", failures
        )
        err.role, err.model = call.role, self.adapter.bindings[call.role].model
        err.__cause__ = failures[-1][2] if failures else None
        return err

    async def acompletion(self, messages: Sequence[Mapping[str, Any]], *, side: bool = False, **kwargs: Any) -> Any:
        """`litellm.acompletion` with the model chosen by the machine. `side=True`: not a turn."""
        async with self._alock:
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
                return (
                    self._astream(call, role, response) if kwargs.get("stream") else self._settle(call, role, response)
                )
            raise self._all_failed(call)

    def completion(self, messages: Sequence[Mapping[str, Any]], *, side: bool = False, **kwargs: Any) -> Any:
        """`litellm.completion` with the model chosen by the machine. `side=True`: not a turn."""
        with self._tlock:
            call = self._begin(messages, side, kwargs)
            for role, attempt, args in self._attempts(call):
                try:
                    response = litellm.completion(**args)
                except Exception as exc:
                    if wait := self._failed(call, role, attempt, args["model"], exc):
                        time.sleep(wait)
                    continue
                return (
                    self._stream(call, role, response) if kwargs.get("stream") else self._settle(call, role, response)
                )
            raise self._all_failed(call)

    # Streams pass their chunks through; the turn is settled once the stream is consumed.

    def _stream(self, call: _Call, role: str, stream: Any) -> Iterator[Any]:
        chunks = []
        for chunk in stream:
            chunks.append(chunk)
            yield chunk
        with self._tlock:
            self._settle(call, role, litellm.stream_chunk_builder(chunks, messages=call.messages))

    async def _astream(self, call: _Call, role: str, stream: Any) -> Any:
        chunks = []
        async for chunk in stream:
            chunks.append(chunk)
            yield chunk
        async with self._alock:
            self._settle(call, role, litellm.stream_chunk_builder(chunks, messages=call.messages))

    # -- closing --

    def close(self, messages: Sequence[Mapping[str, Any]] = ()) -> None:
        """End the conversation: judge the last turn from `messages` (tool results, the user's last word)."""
        if self._pending is not None:
            event, reason = self._verdict(messages)
            self._commit(event or ("failure" if reason else "turn_completed"), reason)

    async def aclose(self, messages: Sequence[Mapping[str, Any]] = ()) -> None:
        async with self._alock:
            self.close(messages)
