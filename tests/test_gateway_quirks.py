"""What real OpenAI-compatible servers send, through the gateway: a fake upstream with every quirk a real
llama.cpp server (llama-cpp-python) showed (tests/openai_server.py `quirks`), one real `lwfsm serve`
process bound to it without a key, and the official openai and anthropic SDKs as clients."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("litellm")

from lwfsm.cli.main import main  # noqa: E402
from lwfsm.cost.pricing import PriceMap  # noqa: E402
from lwfsm.cost.records import TraceRecord  # noqa: E402
from lwfsm.cost.report import summarise  # noqa: E402
from lwfsm.gateway.codec.chat import OpenAIStream, merged_name, plain_chat  # noqa: E402
from lwfsm.gateway.codec.messages import anthropic_reply  # noqa: E402
from lwfsm.gateway.codec.responses import responses_chat_request, responses_messages  # noqa: E402
from lwfsm.gateway.metrics import Metrics  # noqa: E402
from lwfsm.turn import Usage  # noqa: E402
from lwfsm.turn.bindings import NO_KEY, RoleBinding  # noqa: E402

from . import openai_server  # noqa: E402
from .test_gateway import GATEWAY_KEY, ROOT, Gateway  # noqa: E402

LLAMA_CPP = tuple(sorted(openai_server.QUIRKS))
REAL_LOOKING_KEY = "sk-proj-must-never-reach-a-keyless-server"
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
    for n in ("read_file", "run_tests")
]


def _call(n: int, name: str, args: str = "{}") -> dict[str, Any]:
    return {"tool_calls": [{"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": args}}]}


@pytest.fixture(scope="module")
def llama() -> Iterator[openai_server.Server]:
    server = openai_server.Server(quirks=LLAMA_CPP)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(llama: openai_server.Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Both roles on the quirky local server, no key variable named; an OpenAI key in the environment
    that must not reach it."""
    logs = tmp_path_factory.mktemp("trace")
    env = {
        "LWFSM_LEAD_MODEL": "openai/lead-model",
        "LWFSM_WORKER_MODEL": "openai/worker-model",
        "LWFSM_LEAD_API_BASE": llama.base,
        "LWFSM_WORKER_API_BASE": llama.base,
        "LWFSM_LEAD_API_KEY_ENV": "",
        "LWFSM_WORKER_API_KEY_ENV": "",
        "OPENAI_API_KEY": REAL_LOOKING_KEY,
        "GW_KEY": GATEWAY_KEY,
    }
    gateway = Gateway("--api-key-env", "GW_KEY", "--log-dir", str(logs), env=env)
    gateway.logs = logs  # type: ignore[attr-defined]
    yield gateway
    gateway.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)


@pytest.fixture
def chat(gw: Gateway) -> Iterator[Any]:
    with openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY) as client:  # closed: the gateway stops at once
        yield client


def _session(gw: Gateway, key: str) -> dict[str, Any]:
    out: dict[str, Any] = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    return out


def _metric(gw: Gateway, name: str, role: str) -> float:
    found = re.search(rf'^{name}{{role="{role}"}} (\S+)$', gw.control("GET", "/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_streamed_chat_tool_call_with_repeated_names_is_judged_ok_and_its_usage_unknown(
    llama: openai_server.Server, gw: Gateway, chat: Any
) -> None:
    llama.script("lead-model", _call(1, "read_file", '{"path": "parser.py"}'), {})
    client = chat
    head = {"x-lwfsm-session": "chat-stream"}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Fix the parser."}]
    unknown_before = _metric(gw, "lwfsm_unknown_usage_calls_total", "lead")
    with client.chat.completions.with_streaming_response.create(
        model="m",
        messages=messages,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=head,
    ) as r:
        key = r.headers["x-lwfsm-session"]
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    names = [c["function"]["name"] for ch in chunks for c in ch["choices"][0]["delta"].get("tool_calls") or ()]
    assert names.count("read_file") > 2  # the server repeated it in every chunk, and the bytes came as sent
    assert not any("usage" in ch and ch["usage"] for ch in chunks)
    messages += [
        {
            "role": "assistant",
            # "" as the client must send it to this server: a Chat client's bytes go upstream unchanged
            "content": "",
            "tool_calls": _call(1, "read_file", '{"path": "parser.py"}')["tool_calls"],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "def parse(): ..."},
    ]
    assert client.chat.completions.create(model="m", messages=messages, tools=TOOLS, extra_headers=head).choices
    turn = _session(gw, key)["history"][0]
    assert (turn["outcome"], turn["kind"], turn["reason"]) == ("turn_completed", "ok", None)
    assert _session(gw, key)["unknown_usage_calls"] == 1  # the stream; the whole reply reported its tokens
    assert _metric(gw, "lwfsm_unknown_usage_calls_total", "lead") == unknown_before + 1
    totals = gw.control("GET", "/lwfsm/sessions").json()["totals"]  # why the dashboard's cost is unknown
    assert totals["cost"] is None
    assert totals["unknown_usage_calls"] >= 1


def test_a_whole_reply_without_usage_is_unknown_in_its_header(llama: openai_server.Server, gw: Gateway) -> None:
    bare = {"id": "x", "object": "chat.completion", "created": 0, "model": "lead-model"}
    bare["choices"] = [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]
    llama.script("lead-model", {"body": bare}, {})
    auth = {"authorization": f"Bearer {GATEWAY_KEY}", "x-lwfsm-session": "chat-whole"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(gw.base + "/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert (r.status_code, r.headers["x-lwfsm-usage"]) == (200, "unknown")
    r = httpx.post(gw.base + "/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert r.headers["x-lwfsm-usage"] == "in=11 out=7"
    assert _session(gw, r.headers["x-lwfsm-session"])["unknown_usage_calls"] == 1


def test_a_responses_tool_chain_against_a_server_refusing_null_content(
    llama: openai_server.Server, gw: Gateway, chat: Any
) -> None:
    """Three calls, streamed, whole, streamed: every later call sends the earlier tool calls back as
    assistant messages, which this server refuses with a null content; names come once each."""
    llama.script("lead-model", _call(1, "read_file", '{"path": "a.py"}'), _call(2, "run_tests"), {"content": "done"})
    client = chat
    tools = [
        {"type": "function", "name": t["function"]["name"], "parameters": t["function"]["parameters"]} for t in TOOLS
    ]
    head = {"x-lwfsm-session": "responses-chain"}
    events = list(client.responses.create(model="m", input="Fix a.py", tools=tools, stream=True, extra_headers=head))
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(i.type, i.name, i.arguments) for i in done] == [("function_call", "read_file", '{"path": "a.py"}')]
    completed = events[-1].response
    assert completed.output[0].name == "read_file"
    assert completed.usage is None  # the server sent none: null for the client too, not zero tokens
    second = client.responses.create(
        model="m",
        previous_response_id=completed.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "print('a')"}],
        tools=tools,
        extra_headers=head,
    )
    assert [(o.type, o.name) for o in second.output] == [("function_call", "run_tests")]
    third = list(
        client.responses.create(
            model="m",
            previous_response_id=second.id,
            input=[{"type": "function_call_output", "call_id": "call_2", "output": "3 passed"}],
            tools=tools,
            stream=True,
            extra_headers=head,
        )
    )
    assert third[-1].response.output_text == "done"
    sent = [m for m in llama.requests[-1]["messages"] if m["role"] == "assistant"]
    assert [(m["content"], m["tool_calls"][0]["function"]["name"]) for m in sent] == [
        ("", "read_file"),
        ("", "run_tests"),
    ]
    sessions = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    chain = next(s for s in sessions if s["session"] == "responses-chain")
    turns = _session(gw, chain["id"])["history"]
    assert [(t["outcome"], t["kind"]) for t in turns] == [("turn_completed", "ok")] * 2
    assert chain["unknown_usage_calls"] == 2  # the two streams


def test_an_anthropic_client_on_a_keyless_server_with_a_system_prompt_in_parts(
    llama: openai_server.Server, gw: Gateway
) -> None:
    llama.script("lead-model", _call(1, "read_file", '{"path": "a.py"}'), {"content": "fixed"})
    client = anthropic.Anthropic(base_url=gw.base, api_key=GATEWAY_KEY, max_retries=0)
    system = [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use the tools."}]
    tools = [{"name": "read_file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Fix a.py"}]
    head = {"x-lwfsm-session": "claude-local"}
    with client.messages.stream(
        model="m", max_tokens=100, system=system, tools=tools, messages=messages, extra_headers=head
    ) as stream:
        first = stream.get_final_message()
    assert [(b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in first.content] == [
        ("tool_use", "read_file", {"path": "a.py"})
    ]
    upstream = llama.requests[-1]
    assert upstream["messages"][0] == {"role": "system", "content": "You are terse.\nUse the tools."}
    assert llama.headers[-1]["authorization"] == f"Bearer {NO_KEY}"  # the OpenAI key in the environment stayed
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "print('a')"}]},
    ]
    second = client.messages.create(
        model="m", max_tokens=100, system=system, tools=tools, messages=messages, extra_headers=head
    )
    assert second.content[0].text == "fixed"
    sessions = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    conv = next(s for s in sessions if s["session"] == "claude-local")
    assert [(t["outcome"], t["kind"]) for t in _session(gw, conv["id"])["history"]] == [("turn_completed", "ok")]
    # The stream carried no usage: LiteLLM's estimate is not recorded as measured; the whole reply's is.
    assert conv["unknown_usage_calls"] == 1
    llama.script("lead-model", {"content": "measured", "no_usage": False})
    messages += [{"role": "assistant", "content": "fixed"}, {"role": "user", "content": "Thanks."}]
    with client.messages.stream(model="m", max_tokens=100, messages=messages, extra_headers=head) as stream:
        assert stream.get_final_message().usage.output_tokens == 7
    bare = {"id": "x", "object": "chat.completion", "created": 0, "model": "worker-model"}
    bare["choices"] = [{"index": 0, "message": {"role": "assistant", "content": "no usage"}, "finish_reason": "stop"}]
    llama.script("worker-model", {"body": bare})  # turn 4, the worker's; a whole reply without usage: LiteLLM says 0
    # (The conversation goes on: the same messages again would be a retry of turn 3, lwfsm.turn.loop.)
    messages += [{"role": "assistant", "content": "measured"}, {"role": "user", "content": "Go on."}]
    raw = client.messages.with_raw_response.create(model="m", max_tokens=100, messages=messages, extra_headers=head)
    assert raw.headers["x-lwfsm-usage"] == "unknown"
    ledger = _session(gw, conv["id"])["ledger"]["rows"]
    assert [(r["role"], r["calls"], r["usage"]["completion_tokens"], r["usage"]["unreported"]) for r in ledger] == [
        ("lead", 3, 14, 1),
        ("worker", 1, 0, 1),
    ]
    client.close()


def test_the_trace_and_report_count_unknown_usage(gw: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    logs: Path = gw.logs  # type: ignore[attr-defined]
    records = [
        TraceRecord.model_validate_json(line) for f in logs.glob("*.jsonl") for line in f.read_text().splitlines()
    ]
    unknown = [r for r in records if r.unreported]
    assert unknown
    assert all(r.cost is None and r.prompt_tokens == r.completion_tokens == 0 for r in unknown)
    assert main(["report", str(logs), "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert (total["unknown_usage_turns"], total["cost"]) == (len(unknown), None)
    assert main(["report", str(logs)]) == 0
    assert f"{len(unknown)} of {len(records)} turns have no reported usage" in capsys.readouterr().out


def test_serve_refuses_to_start_when_a_named_key_variable_is_not_set(llama: openai_server.Server) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "LWFSM_LEAD_MODEL": "openai/lead-model",
        "LWFSM_WORKER_MODEL": "anthropic/worker-model",
        "LWFSM_WORKER_API_KEY_ENV": "WORKER_KEY_UNSET",
    }
    out = subprocess.run(
        [sys.executable, "-m", "lwfsm", "serve", "--store", "memory://"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.startswith(
        "lwfsm serve: WORKER_KEY_UNSET (the key of the worker model anthropic/worker-model) not set"
    )


# -- the pieces, without a server --


def test_streamed_names_are_taken_once_and_pieces_joined() -> None:
    merged = merged_name
    assert merged("", "read_file") == "read_file"
    assert merged("read_file", "read_file") == "read_file"  # llama.cpp: the whole name in every chunk
    assert merged("read", "read_file") == "read_file"  # the name so far in every chunk
    assert merged("read_", "file") == "read_file"  # pieces
    assert merged("get", "get") == "get"
    assert merged("get", "get", frozenset({"getget"})) == "getget"  # a piece that reads both ways: the declared one
    acc = OpenAIStream(["run"])
    chunks: list[Any] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"id": "a", "function": {"name": "ru", "arguments": ""}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"name": "n", "arguments": "{}"}}]}}]},
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"id": "b", "function": {"name": "run", "arguments": "{"}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"name": "run", "arguments": "}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    for chunk in chunks:
        acc.add(chunk)
    assert acc.usage is None
    assert acc.done
    acc.add({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})  # after the finish chunk
    assert acc.usage == {"prompt_tokens": 5, "completion_tokens": 2}
    assert acc.reply() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "run", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "run", "arguments": "{}"}},
        ],
    }
    assert acc.finish_reason == "tool_calls"


def test_missing_usage_is_unknown_in_the_ledger_metrics_and_pricing() -> None:
    unknown = Usage.of(None)
    assert (unknown.unreported, unknown.prompt_tokens) == (1, 0)
    # what is not a count of tokens is unknown too, never a known 0 (a priced call would cost $0)
    for wrong in (
        {},
        {"prompt_tokens": -1_000_000, "completion_tokens": 3},
        {"prompt_tokens": 1e30},
        {"total_tokens": 9},
    ):
        assert Usage.of(wrong).unreported == 1, wrong
    assert Usage.of({"prompt_tokens": 5, "completion_tokens": 0}) == Usage(prompt_tokens=5)
    assert anthropic_reply({"content": [{"type": "text", "text": "x"}]})[1] is None
    assert PriceMap({"m": {"input_cost_per_token": 1.0, "output_cost_per_token": 1.0}})("m", unknown) is None
    metrics = Metrics(lambda: 0)
    metrics.call("worker", unknown, None)
    metrics.call("worker", Usage.of({"prompt_tokens": 3}), 3.0)
    text = metrics.text().decode()
    assert 'lwfsm_unknown_usage_calls_total{role="worker"} 1.0' in text
    assert 'lwfsm_tokens_total{kind="prompt_tokens",role="worker"} 3.0' in text
    recs = [
        TraceRecord(session="s", turn=1, role="worker", model="m", outcome="turn_completed", unreported=1),
        TraceRecord(
            session="s",
            turn=2,
            role="worker",
            model="m",
            outcome="turn_completed",
            prompt_tokens=4,
            completion_tokens=0,
        ),
    ]
    total = summarise(recs, PriceMap({"m": {"input_cost_per_token": 1.0, "output_cost_per_token": 1.0}})).total
    assert (total.unknown_usage, total.cost) == (1, None)


def test_a_local_binding_without_a_key_variable_is_keyless() -> None:
    local = RoleBinding("openai/m", api_base="http://localhost:8080/v1")
    assert local.keyless
    assert local.call_kwargs({"OPENAI_API_KEY": REAL_LOOKING_KEY})["api_key"] == NO_KEY
    assert RoleBinding("openai/m", api_base="http://[::1]:8080/v1").keyless
    assert not RoleBinding("openai/m", api_base="https://api.example.com/v1").keyless
    assert not RoleBinding("openai/m", api_base="http://127.0.0.1:8080/v1", api_key_env="K").keyless


def test_a_responses_chat_request_never_sends_a_null_content() -> None:
    items = [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]
    stored_reply = {"role": "assistant", "content": None, "tool_calls": [{"id": "d", "type": "function"}]}
    messages = [*responses_messages(items), stored_reply]
    chat = responses_chat_request({"model": "m"}, messages, [])
    assert [m["content"] for m in chat["messages"]] == ["", ""]
    system = {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    assert plain_chat([system, image]) == [{"role": "system", "content": "a\nb"}, image]


def test_the_adapter_on_the_quirky_server_judges_a_streamed_tool_call_by_the_same_accumulator(
    llama: openai_server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lwfsm.provider.adapter import Adapter

    monkeypatch.setenv("OPENAI_API_KEY", REAL_LOOKING_KEY)  # the keyless server refuses it: it must not be sent
    models = {r: {"model": f"openai/{r}-adapter", "api_base": llama.base} for r in ("lead", "worker")}
    chat = Adapter(ROOT / "specs" / "lead_worker.yaml", models).session()
    llama.script("lead-adapter", _call(1, "read_file", '{"path": "a.py"}'), {})
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Fix a.py"}]
    chunks = list(chat.completion(messages, tools=TOOLS, stream=True))
    assert sum(1 for c in chunks for t in c.choices[0].delta.tool_calls or () if t.function.name) > 2
    messages += [
        {"role": "assistant", "content": "", "tool_calls": _call(1, "read_file", '{"path": "a.py"}')["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_1", "content": "print('a')"},
    ]
    chat.completion(messages, tools=TOOLS)
    judged = chat.machine.history[-1]
    assert (judged.event, judged.reason) == ("turn_completed", None)
    assert [(r.calls, r.usage.unreported) for r in chat.ledger.rows] == [(2, 1)]
    assert {h.get("authorization") for h in llama.headers[-2:]} == {f"Bearer {NO_KEY}"}


def test_llama_cpp_streams_reach_litellm_with_each_name_and_id_once() -> None:
    from lwfsm.gateway.sse_fix import SSETidy

    def call(**fields: Any) -> bytes:
        chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **fields}]}}]}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    first = call(id="c1", type="function", function={"name": "read_file", "arguments": ""})
    again = call(id="c1", type="function", function={"name": "read_file", "arguments": '{"a": 1}'})
    data = first + again + b"data: [DONE]\n\n"
    tidy = SSETidy()
    out = b"".join(tidy.feed(data[i : i + 7]) for i in range(0, len(data), 7)) + tidy.end()  # lines cut anywhere
    chunks = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: {")]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks]
    assert calls == [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "read_file", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"a": 1}'}},
    ]
    assert out.endswith(b"data: [DONE]\n\n")
    once = first + call(function={"arguments": "{}"})  # a server that names a call once: bytes unchanged
    assert SSETidy().feed(once) == once
    # Lines ended by \r alone pass on as they come, not when the stream ends (SSE allows \r)
    tidy = SSETidy()
    assert tidy.feed(first.replace(b"\n", b"\r")) == first.replace(b"\n", b"\r")
    assert tidy.feed(b"data: [DONE") == b""  # not a whole line yet
    assert tidy.feed(b"]\r\r") + tidy.end() == b"data: [DONE]\r\r"
