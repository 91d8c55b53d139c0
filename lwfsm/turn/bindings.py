"""Binding a spec's roles to models: arguments or a config section > `LWFSM_<ROLE>_*` > goose's
`GOOSE_*` names. Keys are only ever read from a named environment variable, never stored. Shared by
the LiteLLM provider and the gateway; imports no SDK."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, SpecError, did_you_mean
from ..spec import Spec
from . import params

logger = logging.getLogger("lwfsm")

__all__ = [
    "GOOSE_CONTEXT_LIMITS",
    "GOOSE_MODELS",
    "GOOSE_PARAMS",
    "GOOSE_PROVIDERS",
    "RoleBinding",
    "bindings",
    "check_keys",
    "NO_KEY",
    "params_from_env",
]


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
        elif self.keyless:
            # LiteLLM's SDK clients refuse to call without a key (they would read OPENAI_API_KEY...): a
            # local server that needs none gets this word, which it ignores, and no one's key.
            kw["api_key"] = NO_KEY
        return kw

    @property
    def keyless(self) -> bool:
        """A local server named without a key variable (llama.cpp, vLLM, Ollama on this host): it is
        called without a key on every path, never with a key some SDK found in the environment."""
        return not self.api_key_env and self.api_base is not None and _local(self.api_base)

    def __repr__(self) -> str:  # never show a key: only the variable's name is kept anyway
        return f"RoleBinding(model={self.model!r}, api_base={self.api_base!r}, api_key_env={self.api_key_env!r})"


NO_KEY = "no-key"  # what a keyless local upstream is sent where an SDK insists on some key


def _local(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return is_loopback(host)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address, or "localhost") is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_keys(
    roles: Mapping[str, RoleBinding],
    env: Mapping[str, str],
    unset: str = "unset LWFSM_<ROLE>_API_KEY_ENV for a server that needs no key (a local one)",
) -> None:
    """Every key variable a binding names is set: a missing key is found at start-up, not at a role's first
    call. (A binding that names none calls without a key: a local server, or a provider's own variable.)"""
    missing = [
        f"{b.api_key_env} (the key of the {role} model {b.model})"
        for role, b in roles.items()
        if b.api_key_env and not env.get(b.api_key_env)
    ]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set: set it, or {unset}")


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


# goose's provider ids -> LiteLLM's model prefixes. An id not listed is refused, never passed through.
GOOSE_PROVIDERS = {
    "anthropic": "anthropic",
    "openai": "openai",
    "google": "gemini",
    "gemini": "gemini",
    "gcp_vertex_ai": "vertex_ai",
    "aws_bedrock": "bedrock",
    "azure_openai": "azure",
    "databricks": "databricks",
    "groq": "groq",
    "ollama": "ollama",
    "openrouter": "openrouter",
    "xai": "xai",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "litellm": "litellm_proxy",
}
# goose's context-limit settings: lwfsm does not cut requests to a size; a role whose model reports
# a context-window overflow is replaced for that turn by the spec's judging.technical_fallback role.
GOOSE_CONTEXT_LIMITS = ("GOOSE_LEAD_CONTEXT_LIMIT", "GOOSE_WORKER_CONTEXT_LIMIT", "GOOSE_CONTEXT_LIMIT")


def _goose_provider(value: str, var: str) -> str:
    key = value.strip().lower()
    if key not in GOOSE_PROVIDERS:
        raise ConfigError(
            f"{var}={value!r} is not a goose provider lwfsm knows ({', '.join(sorted(GOOSE_PROVIDERS))}); "
            "set LWFSM_<ROLE>_MODEL to a LiteLLM model string such as 'openai/gpt-4o-mini' instead"
        )
    return GOOSE_PROVIDERS[key]


def _model_string(value: str, provider: str | None, var: str, provider_var: str | None) -> str:
    value = value.strip()
    if not value:
        raise ConfigError(f"{var} is empty: give a model such as 'openai/gpt-4o-mini'")
    if provider:
        return f"{provider.strip()}/{value}" if not value.startswith(provider.strip() + "/") else value
    if "/" not in value:
        hint = f" or set {provider_var}" if provider_var else ""
        raise ConfigError(f"{var}={value!r} names no provider: write 'provider/{value}'{hint}")
    if any(c.isspace() for c in value):
        raise ConfigError(f"{var}={value!r}: a model name has no spaces; write it as 'provider/model'")
    provider, model = value.split("/", 1)
    if not provider or not model:
        raise ConfigError(f"{var}={value!r} needs both a provider and a model: write it as 'provider/model'")
    return value


def _api_base(value: str | None, var: str) -> str | None:
    """An upstream's base URL, checked here: a mistyped one would fail every call of its role instead."""
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{var}={value!r} is not a URL: give one such as 'http://127.0.0.1:8080/v1'")
    return value


def bindings(
    spec: Spec,
    models: Mapping[str, str | RoleBinding | Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    argument: str | None = "models",
) -> dict[str, RoleBinding]:
    """Bind every role of the spec: arguments > LWFSM_<ROLE>_* > goose's GOOSE_* names.

    `argument`: the Python argument a missing binding's message suggests (None: only the variables).
    """
    env = os.environ if env is None else env
    for var in GOOSE_CONTEXT_LIMITS:
        if env.get(var):
            raise ConfigError(
                f"{var} is set, but lwfsm does not trim requests to a context limit: unset it. A request that "
                "overflows a role's context window is served by the spec's judging.technical_fallback role instead"
            )
    if models is not None and not isinstance(models, Mapping):
        raise ConfigError(
            f"{argument or 'models'} maps each role to its model, e.g. {{'lead': 'openai/gpt-4o'}}; "
            f"got {type(models).__name__}"
        )
    models = dict(models or {})
    for role, bound in models.items():
        if not isinstance(bound, str | RoleBinding | Mapping):
            raise ConfigError(
                f"models[{role!r}] is a model string ('provider/model') or a section ({{'model': ...}}), "
                f"got {type(bound).__name__}"
            )
    _stray_role_vars(spec, env, models)
    stray = [role for role in models if role not in spec.roles]
    if stray:  # before the roles: a misspelt one would be reported as the role left without a model
        raise ConfigError(
            f"models given for roles the spec does not have: {', '.join(stray)}{did_you_mean(stray[0], spec.roles)}; "
            f"spec '{spec.name}' has: {', '.join(spec.roles)}"
        )
    out: dict[str, RoleBinding] = {}
    for role in spec.roles:
        given = models.pop(role, None)
        if isinstance(given, RoleBinding | Mapping):  # the argument binds the role whole: its variables go unread
            unread = [
                f"LWFSM_{role.upper()}_{suffix}" for suffix in _ROLE_VARS if env.get(f"LWFSM_{role.upper()}_{suffix}")
            ]
            if unread:
                logger.warning(
                    "%s set, but %s binds role '%s' whole: the variables are not read",
                    ", ".join(unread),
                    argument or "the binding",
                    role,
                )
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
            given_by = pvar if env.get(pvar) else "GOOSE_PROVIDER"
            provider = _goose_provider(env[given_by], given_by) if env.get(given_by) else None
            model = _model_string(env[var], provider, var, pvar)
        else:
            names = f"LWFSM_{up}_MODEL" + (f" or {GOOSE_MODELS[role][0]}" if role in GOOSE_MODELS else "")
            how = f"pass {argument}={{{role!r}: 'provider/model'}} or set {names}" if argument else f"set {names}"
            raise ConfigError(f"no model for role '{role}' of spec '{spec.name}': {how}")
        options: dict[str, Any] = {}
        temp_var = f"LWFSM_{up}_TEMPERATURE"
        if env.get(temp_var) is not None:
            try:
                options["temperature"] = float(env[temp_var])
            except ValueError:
                raise ConfigError(f"{temp_var}={env[temp_var]!r} is not a number") from None
            if not 0 <= options["temperature"] <= 2:  # no provider takes more than 2 (Anthropic: 1)
                raise ConfigError(f"{temp_var}={env[temp_var]!r} is outside 0 to 2")
        base = _api_base(env.get(f"LWFSM_{up}_API_BASE"), f"LWFSM_{up}_API_BASE")
        out[role] = RoleBinding(model, base, env.get(f"LWFSM_{up}_API_KEY_ENV") or None, options)
    return out


_ROLE_VARS = ("MODEL", "API_BASE", "API_KEY_ENV", "TEMPERATURE")  # LWFSM_<ROLE>_<this>


def _stray_role_vars(spec: Spec, env: Mapping[str, str], given: Mapping[str, Any]) -> None:
    """A misspelt role variable (LWFSM_LEAD_API_BAES) would leave the role on its default upstream
    without a word: refused. A variable belongs to the role with the longest name it starts with
    (LWFSM_LEAD_PLAN_X is role lead_plan's where the spec has both); a role bound by an argument reads
    none; a variable a role's _API_KEY_ENV names holds its key."""
    known = {f"LWFSM_{role.upper()}_{suffix}" for role in spec.roles for suffix in _ROLE_VARS}
    keys = {env[var] for var in known if var.endswith("_API_KEY_ENV") and env.get(var)}
    prefixes = sorted(((f"LWFSM_{role.upper()}_", role) for role in spec.roles), key=lambda p: -len(p[0]))
    for var in sorted(env):
        if var in known or var in keys or var.startswith("LWFSM_PARAM_"):  # params: params_from_env
            continue
        role = next((r for prefix, r in prefixes if var.startswith(prefix)), None)
        if role is None or role in given:
            continue
        own = [f"LWFSM_{role.upper()}_{suffix}" for suffix in _ROLE_VARS]
        raise ConfigError(
            f"{var} is not a variable lwfsm reads{did_you_mean(var, own)}: a role is set with "
            f"{', '.join(own)}; rename or unset it"
        )


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
    known = {*params.CHAT, *params.LITELLM_CALL_OPTIONS, "api_base", "api_key_env"} - {"model", "messages"}
    for key in options:
        # a provider's or LiteLLM's own option (api_version, additional_drop_params...) passes on to LiteLLM;
        # a misspelt parameter would too, and be dropped or refused upstream without a word: said here when
        # it is a letter or two from a parameter's name
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.9)  # (Anthropic's `speed` is no `seed`)
        if key not in known and near:
            raise ConfigError(f"{where}.{key} is no parameter a call takes (did you mean '{near[0]}'?)")
    model = _model_string(section["model"], None, f"{where}.model", None)
    return RoleBinding(
        model, _api_base(section.get("api_base"), f"{where}.api_base"), section.get("api_key_env"), options
    )


def params_from_env(spec: Spec, env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Param values from LWFSM_PARAM_<NAME>, else goose's GOOSE_LEAD_* names; ranges are checked."""
    env = os.environ if env is None else env
    names = {f"LWFSM_PARAM_{name.upper()}" for name in spec.params}
    for stray in sorted(v for v in env if v.startswith("LWFSM_PARAM_") and v not in names):
        # a misspelt param would otherwise be left at the spec's default without a word
        raise ConfigError(
            f"{stray} names no param of spec '{spec.name}'{did_you_mean(stray, names)}; "
            f"its params: {', '.join(sorted(spec.params)) or 'none'}"
        )
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
