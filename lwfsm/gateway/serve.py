"""`lwfsm serve`: build the gateway from the spec, the role bindings and a store, and run uvicorn."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..spec import Spec
from ..turn.bindings import RoleBinding, bindings, params_from_env

__all__ = ["MOCK_MODELS", "build", "serve"]

MOCK_MODELS = {"lead": "openai/gpt-4o", "worker": "openai/gpt-4o-mini"}


def build(
    spec: Spec,
    *,
    store: str | None = None,
    api_key_env: str | None = None,
    mock: bool = False,
    env: Mapping[str, str] | None = None,
    max_body: int = 32 * 1024 * 1024,
) -> Any:
    """The ASGI app: roles bound as the adapter binds them (LWFSM_* > GOOSE_*), or to mock models."""
    try:
        from .app import Gateway, create_app
        from .store import open_gateway_store
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigError(f'lwfsm serve needs the gateway extra: pip install "lwfsm[gateway]" ({exc})') from None
    env = os.environ if env is None else env
    overrides = params_from_env(spec, env)
    spec = spec.with_params(overrides) if overrides else spec
    models: dict[str, str | RoleBinding | Mapping[str, Any]] | None = None
    if mock:
        # Nothing is forwarded in mock mode: every call is answered by LiteLLM's mock_response.
        models = {r: RoleBinding(MOCK_MODELS.get(r, "openai/gpt-4o-mini")) for r in spec.roles}
    roles = bindings(spec, models, env)
    gateway = Gateway(
        spec, roles, open_gateway_store(store), env=env, api_key_env=api_key_env, mock=mock, max_body=max_body
    )
    return create_app(gateway)


def serve(app: Any, host: str, port: int) -> None:
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover
        raise ConfigError(f'lwfsm serve needs the gateway extra: pip install "lwfsm[gateway]" ({exc})') from None
    # One line per switch (the gateway's, naming the session), not one per request or per callback.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lwfsm.gateway").setLevel(logging.INFO)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
