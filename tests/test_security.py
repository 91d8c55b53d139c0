"""A client must never choose where an upstream key goes.

Roles bound with no `api_base` (the README's own Anthropic lead) are served at the provider's default
endpoint with the role's key. A real attacker server on 127.0.0.1 records everything it receives; a
client holding only the gateway key tries every parameter that would move the call there, or change
its key, headers or LiteLLM's behaviour, in every protocol, streamed and not. Nothing may arrive.
The same holds for the adapter's per-call keywords and the LiteLLM proxy hook.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lwfsm.turn import params

from . import test_gateway as gateway_mod

httpx = pytest.importorskip("httpx")

ATTACKER_KEYS = ("lead-secret-0123456789", "worker-secret-0123456789")


class Attacker:
    """An HTTP server that records every request and answers like a model would, to keep a client going."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        received, lock = self.received, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    received.append((self.command, self.path, dict(self.headers), body))
                data = json.dumps({"id": "x", "choices": [], "content": []}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _record  # noqa: N815 - http.server's names

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    server = Attacker()
    yield server
    server.close()


def overrides(base: str) -> dict[str, Any]:
    """Every name a client might use to redirect a call, swap its key or steer LiteLLM, with a value
    pointing at the attacker where the name takes one."""
    return {
        "api_base": base,
        "base_url": base,
        "api_key": "attacker-key",
        "api_version": "2020-01-01",
        "custom_llm_provider": "openai",
        "extra_headers": {"x-forward-to": base},
        "headers": {"x-forward-to": base},
        "extra_body": {"api_base": base},
        "extra_query": {"next": base},
        "organization": "attacker",
        "mock_response": "owned",
        "callbacks": ["langfuse"],
        "success_callback": ["langfuse"],
        "litellm_params": {"api_base": base},
        "litellm_credential_name": "lead",
        "model_list": [{"model_name": "x", "litellm_params": {"model": "openai/x", "api_base": base}}],
        "fallbacks": [{"model": "openai/x", "api_base": base}],
        "use_litellm_proxy": True,
        "client": base,
        "langfuse_host": base,
        "aws_bedrock_runtime_endpoint": base,
    }


# -- the gateway --


def _unbound_env(lead: str, worker: str, lead_turns: int) -> dict[str, str]:
    """Roles with no api_base: the provider's own endpoint, with the role's real key."""
    return {
        "LWFSM_LEAD_MODEL": lead,
        "LWFSM_WORKER_MODEL": worker,
        "LWFSM_LEAD_API_KEY_ENV": "LEAD_KEY",
        "LWFSM_WORKER_API_KEY_ENV": "WORKER_KEY",
        "LEAD_KEY": ATTACKER_KEYS[0],
        "WORKER_KEY": ATTACKER_KEYS[1],
        "GW_KEY": gateway_mod.GATEWAY_KEY,
        "LWFSM_PARAM_LEAD_TURNS": str(lead_turns),
    }


REQUESTS = {
    "/v1/chat/completions": {"model": "lwfsm", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages": {"model": "lwfsm", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": "lwfsm", "input": "hi"},
}


@pytest.mark.parametrize(
    ("lead", "worker", "lead_turns"),
    [
        ("anthropic/claude-lead", "openai/gpt-worker", 3),  # the lead (Anthropic) serves the first call
        ("anthropic/claude-lead", "openai/gpt-worker", 0),  # the worker (OpenAI) does
    ],
)
def test_no_client_parameter_sends_an_upstream_key_elsewhere(
    attacker: Attacker, lead: str, worker: str, lead_turns: int
) -> None:
    gw = gateway_mod.Gateway("--api-key-env", "GW_KEY", env=_unbound_env(lead, worker, lead_turns))
    answers: list[tuple[str, str, int, str]] = []
    try:
        with httpx.Client(base_url=gw.base, timeout=30) as client:
            for path, body in REQUESTS.items():
                for stream in (False, True):
                    for name, value in overrides(attacker.base).items():
                        sent = {**body, name: value, "stream": stream}
                        r = client.post(path, json=sent, headers={"authorization": f"Bearer {gateway_mod.GATEWAY_KEY}"})
                        answers.append((path, name, r.status_code, r.text))
    finally:
        out = gw.stop()
    assert attacker.received == []  # not a byte, let alone a key
    for path, name, status, text in answers:
        assert status == 400, (path, name, status, text[:300])
        assert f"parameter {name!r} is not a" in text, (path, name, text[:300])
        assert not any(k in text for k in ATTACKER_KEYS)
    assert not any(k in out for k in ATTACKER_KEYS)


def test_the_allow_lists_hold_no_litellm_option_that_reaches_litellm() -> None:
    """If LiteLLM starts reading a protocol parameter as its own option, this fails: place it first."""
    pytest.importorskip("litellm", reason='needs LiteLLM: pip install "lwfsm[litellm]"')
    from litellm.types.utils import all_litellm_params

    theirs = set(all_litellm_params)
    for allowed in (params.CHAT, params.MESSAGES):
        assert allowed & theirs <= params.NOT_FOR_LITELLM, sorted(allowed & theirs - params.NOT_FOR_LITELLM)
    # The options an embedding program may pass pick no endpoint, key, header or provider.
    routing = {"api_base", "base_url", "api_key", "api_version", "custom_llm_provider", "extra_headers", "headers"}
    assert not params.LITELLM_CALL_OPTIONS & (routing | {"client", "organization", "litellm_credential_name"})


# -- the adapter --


def test_the_adapter_refuses_every_routing_keyword(attacker: Attacker) -> None:
    pytest.importorskip("litellm", reason='needs LiteLLM: pip install "lwfsm[litellm]"')
    from litellm.types.utils import all_litellm_params

    from lwfsm.errors import ConfigError
    from lwfsm.provider.adapter import Adapter

    env = {"LEAD_KEY": ATTACKER_KEYS[0], "WORKER_KEY": ATTACKER_KEYS[1]}
    models = {
        "lead": {"model": "anthropic/claude-lead", "api_key_env": "LEAD_KEY"},
        "worker": {"model": "openai/gpt-worker", "api_key_env": "WORKER_KEY"},
    }
    session = Adapter("lead_worker", models, env=env, retries=0).session()
    names = {*overrides(attacker.base), *all_litellm_params} - params.LITELLM_CALL_OPTIONS - params.CHAT - {"self"}
    assert {"api_base", "num_retries", "mock_tool_calls"} & names == {"api_base", "num_retries"}
    for name in sorted(names):
        value = overrides(attacker.base).get(name, attacker.base)
        with pytest.raises(ConfigError, match=f"{name}= is not a per-call argument"):
            session.completion([{"role": "user", "content": "hi"}], **{name: value})
    assert attacker.received == []
    assert session.conversation.version == 0  # nothing was planned into the conversation either


# -- the LiteLLM proxy hook --


def test_the_proxy_hook_refuses_a_routed_session_s_routing_parameters(attacker: Attacker) -> None:
    from .test_integrations import SPEC, proxy_parts

    litellm, ProxyLogging, UserApiKeyCache, user = proxy_parts()
    from lwfsm.errors import ConfigError
    from lwfsm.integrations.litellm_proxy import LwfsmProxyHook

    hook = LwfsmProxyHook(SPEC, {"lead": "big", "worker": "small"})
    proxy = ProxyLogging(user_api_key_cache=UserApiKeyCache())
    callbacks, litellm.callbacks = litellm.callbacks, [hook]
    try:
        for name, value in overrides(attacker.base).items():
            body = {"model": "agent", "messages": [{"role": "user", "content": "hi"}], name: value}
            request = {"headers": {"x-lwfsm-session": "s9"}, "body": body}
            data = {**body, "proxy_server_request": request}
            with pytest.raises(ConfigError, match=f"session 's9': parameter {name!r} is not a"):
                asyncio.run(proxy.pre_call_hook(user_api_key_dict=user, data=data, call_type="acompletion"))
        # The proxy's own metadata channel (where lwfsm_session may travel) is not refused.
        body = {"model": "agent", "messages": [{"role": "user", "content": "hi"}], "litellm_metadata": {}}
        data = {**body, "proxy_server_request": {"headers": {"x-lwfsm-session": "s9"}, "body": body}}
        out = asyncio.run(proxy.pre_call_hook(user_api_key_dict=user, data=data, call_type="acompletion"))
        assert out["model"] == "big"
    finally:
        litellm.callbacks = callbacks
    assert attacker.received == []
