"""`lwfsm serve`: build the gateway from the spec, the role bindings and a store, and run uvicorn."""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..spec import Spec
from ..turn.bindings import RoleBinding, bindings, check_keys, params_from_env

__all__ = ["MOCK_MODELS", "build", "roles", "serve", "worker_app"]

MOCK_MODELS = {"lead": "openai/gpt-4o", "worker": "openai/gpt-4o-mini"}


def build(
    spec: Spec,
    *,
    store: str | None = None,
    api_key_env: str | None = None,
    control_key_env: str | None = None,
    mock: bool = False,
    env: Mapping[str, str] | None = None,
    max_body: int = 32 * 1024 * 1024,
    body_budget: int = 128 * 1024 * 1024,
    store_timeout: float = 10.0,
    connect_timeout: float = 10.0,
    first_byte_timeout: float = 300.0,
    idle_timeout: float = 300.0,
    log_dir: str | None = None,
    on_spec_change: str = "keep",
    spec_path: str | None = None,
    params: Mapping[str, int] | None = None,
    workers: int = 1,
    retired: tuple[Spec, ...] = (),
) -> Any:
    """The ASGI app: roles bound as the adapter binds them (LWFSM_* > GOOSE_*), or to mock models."""
    try:
        from .app import Gateway, control_key, create_app, gateway_key
        from .store import open_chain_store, open_gateway_store
        from .trace import TraceLog
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigError(f'lwfsm serve needs the gateway extra: pip install "lwfsm[gateway]" ({exc})') from None
    env = os.environ if env is None else env
    overrides = params_from_env(spec, env)
    spec = spec.with_params(overrides) if overrides else spec
    bound = roles(spec, env, mock)
    timeouts = {
        "store": store_timeout,
        "connect": connect_timeout,
        "first-byte": first_byte_timeout,
        "idle": idle_timeout,
    }
    if body_budget < max_body:
        raise ConfigError(
            f"--body-budget {body_budget} is less than --max-body {max_body}: a body the gateway accepts could "
            "never be held; raise --body-budget or lower --max-body"
        )
    for flag, value in timeouts.items():
        if not value > 0:
            raise ConfigError(f"--{flag}-timeout must be more than 0 seconds, got {value}")
    gateway_key(env, api_key_env)  # before a store file is made (Gateway reads them again)
    control_key(env, control_key_env, api_key_env)
    trace = TraceLog(log_dir) if log_dir else None
    gateway = Gateway(
        spec,
        bound,
        # The store's own bound a little later than the gateway's: the gateway's 503 (which names the
        # flag) comes first, and the worker thread is freed soon after.
        open_gateway_store(store, timeout=store_timeout + 1.0),
        chains=open_chain_store(store, timeout=store_timeout + 1.0),
        env=env,
        api_key_env=api_key_env,
        control_key_env=control_key_env,
        mock=mock,
        max_body=max_body,
        body_budget=body_budget,
        store_timeout=store_timeout,
        connect_timeout=connect_timeout,
        first_byte_timeout=first_byte_timeout,
        idle_timeout=idle_timeout,
        trace=trace,
    )
    # SIGHUP and POST /lwfsm/spec re-read or take a spec with these params (lwfsm.gateway.rollout).
    gateway.rollout.configure(path=spec_path, params=params, policy=on_spec_change, workers=workers, retired=retired)
    return create_app(gateway)


def roles(spec: Spec, env: Mapping[str, str], mock: bool = False, load: bool = False) -> dict[str, RoleBinding]:
    """The roles bound as the adapter binds them (LWFSM_* > GOOSE_*), or to mock models; every key
    variable a binding names must be set (checked here, at start-up, not at a role's first call).
    `load`: LiteLLM imported where every call needs it (--check-only), not only found."""
    if mock:
        # Nothing is forwarded in mock mode: every call is answered by LiteLLM's mock_response.
        out = bindings(spec, {r: RoleBinding(MOCK_MODELS.get(r, "openai/gpt-4o-mini")) for r in spec.roles}, env)
    else:
        out = bindings(spec, None, env, argument=None)  # `lwfsm serve` takes no Python arguments
        check_keys(out, env)
    _check_translator(out, mock, load)
    if not mock:
        _check_providers(out)
    return out


def _check_translator(bound: Mapping[str, RoleBinding], mock: bool, load: bool = False) -> None:
    """Calls that go through LiteLLM whichever protocol a client speaks would each fail without it: say so
    at start-up (`load`, for --check-only: by importing it, which takes seconds; serve imports it in the
    background and /readyz says if that failed). With every role on one protocol, a client of the other
    protocol, and Anthropic's token count, need it: they are told then."""
    from .forward import Forward, translated_always
    from .translate import why_not_imported

    if not translated_always(bound, mock):
        return
    if load:
        try:
            importlib.import_module("lwfsm.provider.adapter")
            return
        except Exception as exc:  # (ImportError names its cause; a LiteLLM that refuses its dependencies too)
            why = f"LiteLLM cannot be imported: {why_not_imported(exc)}"
    elif importlib.util.find_spec("litellm") is not None:
        return
    else:
        why = 'LiteLLM is not installed: pip install "lwfsm[gateway,litellm]"'
    if mock:
        raise ConfigError(f"--mock answers every call with LiteLLM's mock models, and {why}")
    names = {role: f"the {role} model {b.model} (LWFSM_{role.upper()}_MODEL)" for role, b in bound.items()}
    only = [names[r] for r, b in bound.items() if not any(Forward.fast(p, b) for p in ("openai", "anthropic"))]
    if only:  # a provider the gateway does not forward to, or an upstream with the Responses API only
        raise ConfigError(f"{' and '.join(only)} can be called only through LiteLLM, and {why}")
    raise ConfigError(
        f"{' and '.join(names.values())} speak different protocols, so every client's calls go through LiteLLM "
        f"for one of them, and {why}; or bind every role to openai/... or every role to anthropic/..."
    )


# The providers the gateway forwards to itself; any other is LiteLLM's to call.
_FORWARDED = ("openai", "anthropic")


def _check_providers(bound: Mapping[str, RoleBinding]) -> None:
    """A provider LiteLLM does not know would fail every call of its role (a 400 each, as if the
    client's request were wrong): say so at start-up. LiteLLM is imported only for such a provider."""
    others = {role: b.model for role, b in bound.items() if b.model.split("/", 1)[0] not in _FORWARDED}
    if not others:
        return
    from ..provider.adapter import unknown_provider

    for role, model in others.items():
        if why := unknown_provider(model):
            raise ConfigError(f"the {role} model {model!r} {why}: set LWFSM_{role.upper()}_MODEL to 'provider/model'")


def _head_timeout(seconds: float | None) -> None:
    """--head-timeout, for the connections of this process (each worker sets it again)."""
    if seconds is not None:
        from .heads import BoundedHead

        BoundedHead.head_timeout = seconds


_WORKER_ENV = "LWFSM_SERVE_CONFIG"  # how `--workers N` hands the settings to each worker process


class _Format(logging.Formatter):
    """The log line, and the trace id of the call it belongs to when traces are on (`tracing`)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace = getattr(record, "trace_id", None)
        return f"{line} trace_id={trace}" if trace else line


def _logging() -> None:
    # One line per switch (the gateway's, naming the session), not one per request or per callback.
    handler = logging.StreamHandler()
    handler.setFormatter(_Format("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])  # (a no-op when logging is set up already)
    logging.getLogger("lwfsm.gateway").setLevel(logging.INFO)


def worker_app() -> Any:
    """The app of one `--workers` process, built from the settings its parent left in the environment."""
    import json

    from ..spec import load_spec

    _logging()  # a worker is a fresh process: the parent's logging setup did not come along
    config = json.loads(os.environ[_WORKER_ENV])
    path, params = config.pop("spec"), config.pop("params")
    _head_timeout(config.pop("head_timeout", None))
    handover_file = config.pop("rollout", None)  # the spec the parent accepted on SIGHUP, and those kept
    if handover_file is None:
        return _collected(build(load_spec(path, params), spec_path=path, params=params, **config))
    with open(handover_file, encoding="utf-8") as f:
        handover = json.load(f)
    spec, retired = Spec.from_dict(handover["spec"]), tuple(Spec.from_dict(s) for s in handover["retired"])
    return _collected(build(spec, spec_path=path, params=params, retired=retired, **config))


def _collected(app: Any) -> Any:
    """The gateway process's garbage collector set for serving: what start-up built (the specs, the
    price map, the imported libraries) is frozen, never walked again, and young objects are collected
    after 10,000 allocations, not 700. A call allocates thousands of objects that reference counting
    frees, and the collector had spent 13% of the gateway's CPU walking them (bench_gateway.py --body
    agent at c=100: 0.079 s of 0.6 s; 0.009 s so set)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    return app


def serve(
    app: Any,
    host: str,
    port: int,
    *,
    workers: int = 1,
    config: Mapping[str, Any] | None = None,
    drain_grace: float = 5.0,
    drain_timeout: float = 600.0,
    head_timeout: float | None = None,
) -> int:
    """Run uvicorn until a signal has drained it (`drain`); the exit code. With workers > 1, each worker
    process builds its app from `config` (the settings `build` takes, plus spec and params), so
    conversations must live in a shared store."""
    try:
        import uvicorn

        from .drain import DrainServer, run_workers
        from .heads import BoundedHead
    except ImportError as exc:  # pragma: no cover
        raise ConfigError(f'lwfsm serve needs the gateway extra: pip install "lwfsm[gateway]" ({exc})') from None
    _logging()
    _head_timeout(head_timeout)
    # No access log (one line per switch is the gateway's log); no X-Forwarded-* rewriting: the
    # gateway uses no client address, so there is nothing for a proxy header to change.
    options: dict[str, Any] = {"log_level": "warning", "access_log": False, "proxy_headers": False, "http": BoundedHead}
    if workers > 1:
        import json
        import shutil
        import tempfile

        if not hasattr(signal, "pthread_sigmask"):
            raise ConfigError("--workers needs POSIX signals to drain its workers: on Windows run one process")

        from .rollout import Handover

        settings = {**(config or {}), "workers": workers, "head_timeout": head_timeout}
        os.environ[_WORKER_ENV] = json.dumps(settings)
        uvicorn_config = uvicorn.Config(
            "lwfsm.gateway.serve:worker_app", factory=True, host=host, port=port, workers=workers, **options
        )
        # /metrics of any worker sums them all: prometheus-client's multiprocess mode, in a directory of
        # this run's (a directory the operator set is theirs to keep and empty between runs).
        own = None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else tempfile.mkdtemp(prefix="lwfsm-metrics-")
        if own is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = own
        handover = Handover(app.state.gateway, settings, _WORKER_ENV)
        try:
            return run_workers(uvicorn_config, workers, grace=drain_grace, timeout=drain_timeout, on_hup=handover)
        finally:
            handover.close()
            if own is not None:
                shutil.rmtree(own, ignore_errors=True)
                del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    server = DrainServer(
        uvicorn.Config(_collected(app), host=host, port=port, **options), grace=drain_grace, timeout=drain_timeout
    )
    server.run()
    return server.exit_code
