"""Every client protocol with every upstream protocol, through `lwfsm serve` in real uvicorn processes.

Clients: the official `openai` SDK (Chat Completions, Responses) and `anthropic` SDK (Messages), streamed
and not, each asking for a tool call and sending its result back. Upstreams: an OpenAI-compatible Chat
Completions server with no `/v1/responses` (as llama.cpp and older vLLM), an Anthropic server, and an
OpenAI server that speaks only the Responses API. One gateway process per upstream kind serves every
case. Each client also sends the parameters real agents send that the target model does not support
(reasoning effort, thinking, cache_control, Claude Code's beta header): they are dropped or mapped with
a log line, never a 400.

CI runs this file twice: with the newest LiteLLM and with the lowest version the `litellm` extra allows.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from . import anthropic_server, openai_server
from .test_gateway import GATEWAY_KEY, Gateway, _env, anthropic, httpx, openai

TOOL = {
    "name": "read_file",
    "description": "Read a file",
    "schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
RESULT = "print('hi')"


class _Logged(Gateway):
    """The gateway with its log read as it is written (for the drop notes), not only at the end."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        super().__init__(*args, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, *words: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if all(w in line for w in words):
                    return line
            time.sleep(0.02)  # polling a log for a line, not waiting for a timing
        raise AssertionError(f"no log line with {words}; log:\n{''.join(self.lines)}")

    def stop(self) -> str:
        out = super().stop()
        self._reader.join(5)
        return out + "".join(self.lines)


UPSTREAMS = ("chat", "anthropic", "responses")
# The lead's binding per upstream kind. gpt-4o-mini is the README's worker: LiteLLM's price map says it
# does not reason, so reasoning parameters are dropped even on the same-protocol fast path.
# o4-mini reasons: what a client sends for reasoning reaches it, as reasoning_effort.
BOUND = {
    "chat": "openai/gpt-4o-mini",
    "anthropic": "anthropic/lead-model",
    "responses": "openai/responses/gpt-4o-mini",
    "reasoning": "openai/o4-mini",
}
SERVER = {"chat": "chat", "anthropic": "anthropic", "responses": "responses", "reasoning": "chat"}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Any]]:
    servers: dict[str, Any] = {
        "chat": openai_server.Server(),
        "anthropic": anthropic_server.Server(),
        "responses": openai_server.Server(responses=True),
    }
    yield servers
    for s in servers.values():
        s.close()


@pytest.fixture(scope="module")
def gateways(upstreams: dict[str, Any]) -> Iterator[dict[str, _Logged]]:
    """One gateway per upstream kind, both roles on it (every case is a new conversation: the lead serves).
    Started, and LiteLLM imported in each (seconds), side by side; stopped side by side."""

    def start(kind: str) -> _Logged:
        base = upstreams[SERVER[kind]].base
        gw = _Logged("--api-key-env", "GW_KEY", env={**_env("openai", base), "LWFSM_LEAD_MODEL": BOUND[kind]})
        # A token count imports LiteLLM in the gateway (as the first translated call would) and calls no upstream.
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        httpx.post(gw.base + "/v1/messages/count_tokens", json=body, headers={"x-api-key": GATEWAY_KEY}, timeout=60)
        return gw

    with ThreadPoolExecutor(len(BOUND)) as pool:
        futures = {kind: pool.submit(start, kind) for kind in BOUND}
        started = {kind: f.result() for kind, f in futures.items() if f.exception() is None}
        try:
            for f in futures.values():
                f.result()  # a gateway that did not start fails the tests, after the others are stopped below
            yield started
        finally:
            for gw in started.values():  # killed: what these tests check is over, and a graceful stop takes seconds
                gw.proc.kill()
            for gw in started.values():
                gw.stop()


def _script(kind: str, server: Any) -> None:
    """The upstream's two answers: a call of read_file, then text once it has the result."""
    model = BOUND[kind].rsplit("/", 1)[1]
    with server.lock:  # what an earlier failed case left unused
        server.scripts[model].clear()
    if SERVER[kind] == "anthropic":
        server.script(model, {"tool_use": [{"name": "read_file", "input": {"path": "a.py"}}], "content": None})
    else:
        call = {
            "id": "call_up_1",
            "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
        }
        server.script(model, {"tool_calls": [call]})
    server.script(model, {"content": "all done"})


def _result_seen(kind: str, request: dict[str, Any]) -> tuple[str | None, str | None]:
    """(tool call id, text) of the tool result in the upstream's own protocol."""
    if kind == "chat":
        tool = [m for m in request["messages"] if m["role"] == "tool"][-1]
        content = tool["content"]
        return tool["tool_call_id"], content if isinstance(content, str) else "".join(p["text"] for p in content)
    if kind == "anthropic":
        blocks = [b for m in request["messages"] if isinstance(m["content"], list) for b in m["content"]]
        result = [b for b in blocks if b["type"] == "tool_result"][-1]
        content = result["content"]
        return result["tool_use_id"], content if isinstance(content, str) else "".join(p["text"] for p in content)
    item = [i for i in request["input"] if i.get("type") == "function_call_output"][-1]
    output = item["output"]  # a string, or input_text parts
    return item["call_id"], output if isinstance(output, str) else "".join(p["text"] for p in output)


def _chat(gw: Gateway, sid: str, stream: bool) -> tuple[str, str, str]:
    """(tool name, arguments, final text) from a Chat Completions client."""
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    tools = [
        {
            "type": "function",
            "function": {"name": TOOL["name"], "description": TOOL["description"], "parameters": TOOL["schema"]},
        }
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "read a.py"},
    ]
    kw: dict[str, Any] = {
        "model": "m",
        "tools": tools,
        "reasoning_effort": "low",
        "extra_headers": {"x-session-id": sid},
    }

    def ask() -> tuple[str | None, list[dict[str, Any]]]:
        if not stream:
            msg = client.chat.completions.create(messages=messages, **kw).choices[0].message
            return msg.content, [c.model_dump() for c in msg.tool_calls or ()]
        text, calls = "", {}
        for chunk in client.chat.completions.create(messages=messages, stream=True, **kw):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for d in choice.delta.tool_calls or ():
                    c = calls.setdefault(
                        d.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                    c["id"] = c["id"] or d.id
                    if d.function and d.function.name:
                        c["function"]["name"] += d.function.name
                    if d.function and d.function.arguments:
                        c["function"]["arguments"] += d.function.arguments
        return text, list(calls.values())

    text, calls = ask()
    assert len(calls) == 1, (text, calls)
    messages += [
        {"role": "assistant", "content": text or None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": RESULT},
    ]
    final, more = ask()
    assert not more
    return calls[0]["function"]["name"], calls[0]["function"]["arguments"], final or ""


def _messages(gw: Gateway, sid: str, stream: bool) -> tuple[str, str, str]:
    """The same from an Anthropic Messages client sending what Claude Code sends: thinking, cache_control,
    metadata, a beta header."""
    client = anthropic.Anthropic(
        base_url=gw.base,
        api_key=GATEWAY_KEY,
        max_retries=0,
        default_headers={"anthropic-beta": "interleaved-thinking-2025-05-14", "x-session-id": sid},
    )
    tools = [{"name": TOOL["name"], "description": TOOL["description"], "input_schema": TOOL["schema"]}]
    system = [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "read a.py", "cache_control": {"type": "ephemeral"}}]}
    ]
    kw: dict[str, Any] = {
        "model": "m",
        "max_tokens": 2048,
        "system": system,
        "tools": tools,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "user-1"},
    }

    def ask() -> Any:
        if not stream:
            return client.messages.create(messages=messages, **kw)
        with client.messages.stream(messages=messages, **kw) as s:
            return s.get_final_message()

    reply = ask()
    uses = [b for b in reply.content if b.type == "tool_use"]
    assert len(uses) == 1, reply
    assert reply.stop_reason == "tool_use"
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": RESULT}]},
    ]
    final = ask()
    assert final.stop_reason == "end_turn"
    text = "".join(b.text for b in final.content if b.type == "text")
    return uses[0].name, json.dumps(uses[0].input), text


def _responses(gw: Gateway, sid: str, stream: bool) -> tuple[str, str, str]:
    """The same from a Responses client (as Codex: reasoning effort, a chain by previous_response_id)."""
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    tools = [
        {"type": "function", "name": TOOL["name"], "description": TOOL["description"], "parameters": TOOL["schema"]}
    ]
    kw: dict[str, Any] = {
        "model": "m",
        "tools": tools,
        "reasoning": {"effort": "low"},
        "extra_headers": {"x-session-id": sid},
    }

    def ask(**more: Any) -> Any:
        if not stream:
            return client.responses.create(**kw, **more)
        events = list(client.responses.create(stream=True, **kw, **more))
        assert events[-1].type == "response.completed", [e.type for e in events]
        return events[-1].response

    first = ask(instructions="Be terse.", input="read a.py")
    calls = [i for i in first.output if i.type == "function_call"]
    assert len(calls) == 1, first.output
    result = {"type": "function_call_output", "call_id": calls[0].call_id, "output": RESULT}
    final = ask(previous_response_id=first.id, input=[result])
    assert not [i for i in final.output if i.type == "function_call"]
    return calls[0].name, calls[0].arguments, final.output_text


CLIENTS = {"chat": _chat, "messages": _messages, "responses": _responses}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_every_client_with_every_upstream(
    upstream: str, client: str, stream: bool, upstreams: dict[str, Any], gateways: dict[str, _Logged]
) -> None:
    server, gw = upstreams[upstream], gateways[upstream]
    sid = f"{client}-{upstream}-{stream}"
    _script(upstream, server)
    before = len(server.requests)
    try:
        name, arguments, text = CLIENTS[client](gw, sid, stream)
    except Exception as exc:  # with what the gateway logged (a traceback, an upstream's error)
        raise AssertionError("the gateway's log:\n" + "".join(gw.lines[-30:])) from exc
    assert (name, json.loads(arguments)) == ("read_file", {"path": "a.py"})
    assert "all done" in text
    sent = server.requests[before:]
    assert len(sent) == 2, server.paths[-4:]  # one upstream call per client call: nothing refused, nothing retried
    assert not [p for p in server.paths[-2:] if not p.endswith(("/chat/completions", "/messages", "/responses"))]
    # The tool result reached the upstream in its own protocol, under the id the upstream gave the call.
    call_id, content = _result_seen(upstream, sent[1])
    assert content == RESULT
    assert call_id in ("call_up_1", f"toolu_{len(server.requests) - 1}_0")
    # Parameters the target does not support never reach it, and the gateway says it dropped them.
    # (An Anthropic client's thinking goes on to an Anthropic model the price map does not know.)
    if (client, upstream) == ("messages", "anthropic"):
        assert sent[0]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
        return
    assert not {"reasoning_effort", "thinking", "reasoning"} & set(sent[0]), sent[0]
    dropped = {"chat": "reasoning_effort", "messages": "thinking", "responses": "reasoning"}[client]
    gw.wait_for("dropped", dropped, BOUND[upstream])


@pytest.mark.parametrize("client", list(CLIENTS))
def test_reasoning_reaches_a_model_that_reasons(
    client: str, upstreams: dict[str, Any], gateways: dict[str, _Logged]
) -> None:
    """Each client's reasoning setting reaches an OpenAI-compatible reasoning model as reasoning_effort, over
    chat completions: Claude Code's thinking budget (1024 tokens) as 'low'."""
    server = upstreams["chat"]
    _script("reasoning", server)
    before = len(server.requests)
    CLIENTS[client](gateways["reasoning"], f"{client}-reasoning", False)
    sent = server.requests[before:]
    assert [r["model"] for r in sent] == ["o4-mini", "o4-mini"]
    assert server.paths[-2:] == ["/v1/chat/completions"] * 2
    assert sent[0]["reasoning_effort"] == "low"
    assert "thinking" not in sent[0]


def test_what_each_target_is_sent() -> None:
    """`targets.fit`, the rules the README's table lists, without a server."""
    from lwfsm.gateway.targets import fit

    chat = {"model": "m", "messages": [], "reasoning_effort": "low", "top_k": 5}
    # Same protocol: only reasoning, only where the price map says the model has none.
    assert fit(chat, "openai", "openai/gpt-4o-mini", True, False) == (
        {"model": "m", "messages": [], "top_k": 5},
        ["reasoning_effort"],
    )
    assert fit(chat, "openai", "openai/local", True, None) == (chat, [])
    assert fit(chat, "openai", "openai/local", True, None)[0] is chat  # nothing dropped: the client's bytes go on
    # Through LiteLLM: what it supports for the model; reasoning only for a model known to reason.
    assert fit(chat, "openai", "anthropic/x", False, None, {"top_k", "reasoning_effort"})[1] == ["reasoning_effort"]
    assert fit(chat, "openai", "anthropic/x", False, True, {"reasoning_effort"})[1] == ["top_k"]
    cached = {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
    messages = {
        "model": "m",
        "max_tokens": 9,
        "system": [cached],
        "messages": [{"role": "user", "content": [cached]}, {"role": "assistant", "content": "ok"}],
        "tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "context_management": {},
        "top_k": 3,
    }
    out, notes = fit(messages, "anthropic", "openai/gpt-4o-mini", False, False)
    assert notes == ["thinking", "context_management", "top_k", "cache_control"]
    assert "cache_control" not in json.dumps(out)
    assert out["messages"][1] is messages["messages"][1]
    assert set(out) == {
        "model",
        "max_tokens",
        "system",
        "messages",
        "tools",
    }
    out, notes = fit(messages, "anthropic", "openai/o4-mini", False, True)
    assert out["reasoning_effort"] == "high"
    assert "thinking" not in out
    assert notes == ["context_management", "top_k", "thinking (sent as reasoning_effort 'high')", "cache_control"]
    # Another provider keeps cache_control and thinking where the model reasons (LiteLLM maps them).
    out, notes = fit(messages, "anthropic", "bedrock/claude", False, True)
    assert (notes, out["thinking"], out["system"]) == (["context_management", "top_k"], messages["thinking"], [cached])
    assert fit(messages, "anthropic", "anthropic/claude", True, None) == (messages, [])
    assert fit(messages, "anthropic", "anthropic/claude", True, False)[1] == ["thinking"]
