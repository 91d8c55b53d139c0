"""OpenTelemetry spans of the gateway, and /metrics with --workers N.

One conversation through a real fake upstream (tests/openai_server.py) that reaches fallback, with a
technical fallback on the way, read twice: through the SDK's in-memory exporter from the app in process,
and through the console exporter from a real `lwfsm serve` (its stdout), whose log lines carry the
calls' trace ids. The OTLP exporter posts to a fake collector on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("opentelemetry.sdk", reason='the otel extra: pip install "lwfsm[otel]"')

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from lwfsm import load_spec  # noqa: E402
from lwfsm.errors import ConfigError  # noqa: E402
from lwfsm.gateway.serve import build  # noqa: E402
from lwfsm.gateway.tracing import Tracing  # noqa: E402

from . import openai_server  # noqa: E402
from .test_gateway import _free_port, oai  # noqa: E402

__all__ = ["oai"]  # the fake upstream fixture shared with test_gateway

ROOT = Path(__file__).resolve().parent.parent
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _env(base: str) -> dict[str, str]:
    return {
        "LWFSM_LEAD_MODEL": "openai/lead-model",
        "LWFSM_WORKER_MODEL": "openai/worker-model",
        "LWFSM_LEAD_API_BASE": base,
        "LWFSM_WORKER_API_BASE": base,
        "LWFSM_PARAM_LEAD_TURNS": "1",
    }


Post = Callable[[dict[str, Any], dict[str, str]], Any]  # (body, headers) -> an httpx response


def _conversation(oai: openai_server.Server, post: Post, tag: str) -> None:
    """Four calls: the lead's turn; a streamed worker turn (no usage asked for) whose tests fail; a worker
    call answered 503, served by the lead as technical fallback, which the user corrects; then fallback,
    streamed with usage. The first call continues the client's trace (traceparent)."""
    run_tests = {"id": "call_1", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}
    again = {**run_tests, "id": "call_2"}
    oai.script("lead-model", {"tool_calls": [run_tests]}, {"content": "I changed parse()."}, {"content": "On it."})
    oai.script("worker-model", {"tool_calls": [again]}, {"status": 503})
    msgs: list[dict[str, Any]] = [{"role": "user", "content": f"fix the parser ({tag})"}]
    sent = [
        ({}, {"traceparent": TRACEPARENT}),
        ({"stream": True}, {}),
        ({}, {}),
        ({"stream": True, "stream_options": {"include_usage": True}}, {}),
    ]
    after = [
        [{"role": "assistant", "content": None, "tool_calls": [run_tests]}, _tool("call_1", "12 passed")],
        [
            {"role": "assistant", "content": None, "tool_calls": [again]},
            _tool("call_2", "Traceback (most recent call last):\n  File 'parser.py'\nAssertionError"),
        ],
        [
            {"role": "assistant", "content": "I changed parse()."},
            {"role": "user", "content": "That's wrong, the bug is in tokenize()."},
        ],
    ]
    roles = []
    for n, (extra, headers) in enumerate(sent):
        r = post({"model": "lwfsm", "messages": msgs, "tools": [_tool_def()], **extra}, headers)
        assert r.status_code == 200, r.text
        roles.append((r.headers["x-lwfsm-state"], r.headers["x-lwfsm-role"]))
        if n < len(after):
            msgs = [*msgs, *after[n]]
    assert roles == [("lead_initial", "lead"), ("worker", "worker"), ("worker", "lead"), ("fallback", "lead")]


def _tool(call_id: str, text: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tool_def() -> dict[str, Any]:
    return {"type": "function", "function": {"name": "run_tests", "parameters": {"type": "object", "properties": {}}}}


# A span as both exporters show it: name, kind, ids (hex), parent id, status, attributes.
Span = dict[str, Any]


def _from_sdk(span: ReadableSpan) -> Span:
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace": format(span.context.trace_id, "032x"),
        "id": format(span.context.span_id, "016x"),
        "parent": format(span.parent.span_id, "016x") if span.parent else None,
        "status": span.status.status_code.name,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
    }


def _from_console(text: str) -> list[Span]:
    """The JSON objects ConsoleSpanExporter printed, among the other lines of the output."""
    out, decoder = [], json.JSONDecoder()
    for m in re.finditer(r"^\{", text, re.M):
        span, _ = decoder.raw_decode(text, m.start())
        ctx = span["context"]
        out.append(
            {
                "name": span["name"],
                "kind": span["kind"].removeprefix("SpanKind."),
                "trace": ctx["trace_id"].removeprefix("0x"),
                "id": ctx["span_id"].removeprefix("0x"),
                "parent": span["parent_id"].removeprefix("0x") if span["parent_id"] else None,
                "status": span["status"]["status_code"],
                "start": span["start_time"],
                "end": span["end_time"],
                "attributes": span["attributes"],
            }
        )
    return out


def _check(spans: list[Span]) -> list[tuple[Span, list[Span]]]:
    """The spans of the conversation: one SERVER span per call, each with its CLIENT attempts as children."""
    calls = sorted((s for s in spans if s["kind"] == "SERVER"), key=lambda s: s["start"])
    assert len(calls) == 4
    attempts = [
        sorted((a for a in spans if a["parent"] == c["id"]), key=lambda a: a["attributes"]["lwfsm.attempt"])
        for c in calls
    ]
    assert len(spans) == 4 + sum(len(a) for a in attempts)  # every span is a call or an attempt of one
    assert [len(a) for a in attempts] == [1, 1, 2, 1]
    for call, tries in zip(calls, attempts, strict=True):
        assert all(a["trace"] == call["trace"] and a["kind"] == "CLIENT" for a in tries)
        assert call["name"] == "chat lwfsm"
        a = call["attributes"]
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == "lwfsm"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["http.response.status_code"] == 200
        assert a["lwfsm.session"] == a["gen_ai.conversation.id"]
        assert call["status"] == "UNSET"
        assert "error.type" not in a
    assert calls[0]["trace"] == TRACEPARENT.split("-")[1]
    assert calls[0]["parent"] == TRACEPARENT.split("-")[2]
    assert len({c["trace"] for c in calls}) == 4  # one trace per call
    assert len({c["attributes"]["lwfsm.session"] for c in calls}) == 1

    # Call 1: the lead's first turn; nothing judged yet.
    one = calls[0]["attributes"]
    assert (one["lwfsm.state"], one["lwfsm.role"], one["lwfsm.turn"]) == ("lead_initial", "lead", 1)
    assert "lwfsm.verdict" not in one
    assert "lwfsm.transition.source" not in one
    assert (one["gen_ai.usage.input_tokens"], one["gen_ai.usage.output_tokens"]) == (11, 7)
    lead = attempts[0][0]
    assert lead["name"] == "chat lead-model"
    assert lead["status"] == "UNSET"
    la = lead["attributes"]
    assert (la["gen_ai.request.model"], la["gen_ai.response.model"], la["gen_ai.provider.name"]) == (
        "lead-model",
        "lead-model",
        "openai",
    )
    assert (la["lwfsm.role"], la["lwfsm.attempt"], la["gen_ai.request.stream"]) == ("lead", 0, False)
    assert (la["gen_ai.usage.input_tokens"], la["gen_ai.usage.output_tokens"]) == (11, 7)

    # Call 2: turn 1 judged ok, the lead's turns are over: lead_initial -> worker. Streamed without usage:
    # the tokens are unknown, so absent (never 0).
    two = calls[1]["attributes"]
    assert (two["lwfsm.verdict"], two["lwfsm.verdict.kind"]) == ("turn_completed", "ok")
    assert (two["lwfsm.transition.source"], two["lwfsm.transition.dest"], two["lwfsm.transition.event"]) == (
        "lead_initial",
        "worker",
        "turn_completed",
    )
    assert two["lwfsm.transition.guard"]
    assert (two["lwfsm.state"], two["lwfsm.role"], two["lwfsm.turn"], two["gen_ai.request.stream"]) == (
        "worker",
        "worker",
        2,
        True,
    )
    worker = attempts[1][0]["attributes"]
    assert (worker["lwfsm.role"], worker["gen_ai.response.model"], worker["gen_ai.request.stream"]) == (
        "worker",
        "worker-model",
        True,
    )
    for a in (two, worker):
        assert not [k for k in a if k.startswith("gen_ai.usage.")]

    # Call 3: turn 2 failed (its tests); the worker's upstream answers 503, the lead serves as technical
    # fallback: two attempts, the first an error, the call itself a success.
    three = calls[2]["attributes"]
    assert (three["lwfsm.verdict"], three["lwfsm.verdict.kind"]) == ("failure", "task_failure")
    assert (three["lwfsm.transition.source"], three["lwfsm.transition.dest"]) == ("worker", "worker")
    assert (three["lwfsm.state"], three["lwfsm.role"]) == ("worker", "lead")
    failed, rescued = attempts[2]
    assert failed["name"] == "chat worker-model"
    assert failed["status"] == "ERROR"
    assert (failed["attributes"]["error.type"], failed["attributes"]["lwfsm.role"]) == ("503", "worker")
    assert "gen_ai.response.model" not in failed["attributes"]
    assert rescued["name"] == "chat lead-model"
    assert rescued["status"] == "UNSET"
    ra = rescued["attributes"]
    assert (ra["lwfsm.role"], ra["lwfsm.attempt"], ra["lwfsm.attempt.fallback"]) == ("lead", 1, True)
    assert failed["end"] <= rescued["start"]

    # Call 4: turn 3 corrected by the user, the second failure in a row: worker -> fallback. A stream with
    # usage: its span ends after the turn is committed (the transition is on it) and after its attempt.
    four = calls[3]["attributes"]
    assert (four["lwfsm.verdict"], four["lwfsm.verdict.kind"]) == ("failure", "user_correction")
    assert (four["lwfsm.transition.source"], four["lwfsm.transition.dest"], four["lwfsm.transition.event"]) == (
        "worker",
        "fallback",
        "failure",
    )
    assert four["lwfsm.transition.guard"] == "failures + 1 >= failure_threshold"
    assert (four["lwfsm.state"], four["lwfsm.role"], four["lwfsm.turn"]) == ("fallback", "lead", 4)
    assert (four["gen_ai.usage.input_tokens"], four["gen_ai.usage.output_tokens"]) == (11, 7)
    assert attempts[3][0]["end"] <= calls[3]["end"]
    return list(zip(calls, attempts, strict=True))


def test_spans_of_a_fallback_conversation_in_process(oai: openai_server.Server) -> None:
    from starlette.testclient import TestClient

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = build(load_spec("lead_worker"), store="memory://", env=_env(oai.base))
    app.state.gateway.tracing = Tracing(provider=provider)  # an embedder's own provider
    with TestClient(app, base_url="http://127.0.0.1") as http:
        _conversation(oai, lambda body, headers: http.post("/v1/chat/completions", json=body, headers=headers), "mem")
    _check([_from_sdk(s) for s in exporter.get_finished_spans()])


def test_spans_of_a_responses_stream_and_of_a_call_no_upstream_answered(oai: openai_server.Server) -> None:
    from starlette.testclient import TestClient

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    env = {**_env(oai.base), "LWFSM_PARAM_LEAD_TURNS": "0"}
    app = build(load_spec("lead_worker"), store="memory://", env=env)
    app.state.gateway.tracing = Tracing(provider=provider)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        r = http.post("/v1/responses", json={"model": "codex", "input": "hi", "stream": True})
        assert r.status_code == 200
        assert "response.completed" in r.text
        oai.script("worker-model", {"status": 503})
        oai.script("lead-model", {"status": 500})
        body = {"model": "m", "messages": [{"role": "user", "content": "nobody answers"}]}
        assert http.post("/v1/chat/completions", json=body).status_code == 500
    spans = [_from_sdk(s) for s in exporter.get_finished_spans()]
    (stream, failed) = sorted((s for s in spans if s["kind"] == "SERVER"), key=lambda s: s["start"])
    (attempt,) = [s for s in spans if s["parent"] == stream["id"]]
    a = stream["attributes"]
    assert (stream["name"], a["http.route"], a["gen_ai.request.stream"], a["lwfsm.turn"]) == (
        "chat codex",
        "/v1/responses",
        True,
        1,
    )
    assert attempt["attributes"]["gen_ai.response.model"] == "worker-model"
    assert attempt["end"] <= stream["end"]
    # Both roles failed: each attempt with its own error, the call with the status the client got.
    tries = sorted((s for s in spans if s["parent"] == failed["id"]), key=lambda s: s["attributes"]["lwfsm.attempt"])
    assert [(t["attributes"]["lwfsm.role"], t["attributes"]["error.type"], t["status"]) for t in tries] == [
        ("worker", "503", "ERROR"),
        ("lead", "500", "ERROR"),
    ]
    assert (failed["attributes"]["error.type"], failed["status"]) == ("500", "ERROR")
    assert "lwfsm.turn" not in failed["attributes"]  # nothing was recorded


def test_console_spans_and_trace_ids_in_logs_from_lwfsm_serve(oai: openai_server.Server, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        **_env(oai.base),
        "PYTHONPATH": str(ROOT),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "gw-under-test",
    }
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "stdout").open("w") as out, (tmp_path / "stderr").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lwfsm", "serve", "--store", "memory://", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=err,
        )
        try:
            _wait_ready(proc, base)
            with httpx.Client(base_url=base, timeout=30) as http:
                post: Post = lambda body, headers: http.post("/v1/chat/completions", json=body, headers=headers)  # noqa: E731
                _conversation(oai, post, "cli")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
    stdout, stderr = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    checked = _check(_from_console(stdout))
    assert '"service.name": "gw-under-test"' in stdout
    # The log lines of a call end with its trace id: the technical fallback's warning (call 3) and the
    # switch to fallback (call 4).
    (fell_back,) = [line for line in stderr.splitlines() if "trying the next role" in line]
    assert fell_back.endswith(f" trace_id={checked[2][0]['trace']}")
    (switch,) = [line for line in stderr.splitlines() if "worker -> fallback" in line]
    assert switch.endswith(f" trace_id={checked[3][0]['trace']}")


def _wait_ready(proc: subprocess.Popen[Any], base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "the gateway exited"
        try:
            httpx.get(base + "/healthz", timeout=1)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the gateway did not answer within 30 s"
            time.sleep(0.01)  # polling for readiness, not for a timing


class _Collector:
    """An OTLP/HTTP trace receiver on 127.0.0.1: keeps each export request's body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                assert self.path == "/v1/traces"
                collector.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_otlp_exporter_sends_the_spans_to_a_collector(
    oai: openai_server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from starlette.testclient import TestClient

    collector = _Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.base)  # read by the SDK's exporter itself
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    try:
        app = build(load_spec("lead_worker"), store="memory://", env={**_env(oai.base), "OTEL_TRACES_EXPORTER": "otlp"})
        with TestClient(app, base_url="http://127.0.0.1") as http:
            r = http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
        # Batched: the lifespan's end flushed them.
        names, services = [], set()
        for body in collector.bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for rs in request.resource_spans:
                services |= {a.value.string_value for a in rs.resource.attributes if a.key == "service.name"}
                names += [s.name for ss in rs.scope_spans for s in ss.spans]
        assert sorted(names) == ["chat lead-model", "chat m"]
        assert services == {"lwfsm-gateway"}  # no OTEL_SERVICE_NAME: lwfsm's name, not unknown_service
    finally:
        collector.close()


def test_tracing_settings_from_the_environment() -> None:
    assert not Tracing.from_env({}).on
    assert not Tracing.from_env({"OTEL_TRACES_EXPORTER": "none"}).on
    assert not Tracing.from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}).on
    assert Tracing.from_env({"OTEL_TRACES_EXPORTER": "console,otlp"}).exporters == ("console", "otlp")
    with pytest.raises(ConfigError, match=r"'zipkin' is not an exporter lwfsm serve knows \(console, otlp"):
        Tracing.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        Tracing.from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_traces_off_load_nothing_of_opentelemetry() -> None:
    """Without OTEL_TRACES_EXPORTER a call goes through the gateway and no OpenTelemetry module is imported."""
    code = (
        "import sys\n"
        "from starlette.testclient import TestClient\n"
        "from lwfsm import load_spec\n"
        "from lwfsm.gateway.serve import build\n"
        "from tests import openai_server\n"
        "up = openai_server.Server()\n"
        "env = {'LWFSM_LEAD_MODEL': 'openai/lead', 'LWFSM_WORKER_MODEL': 'openai/worker'}\n"
        "env |= {'LWFSM_LEAD_API_BASE': up.base, 'LWFSM_WORKER_API_BASE': up.base}\n"
        "app = build(load_spec('lead_worker'), store='memory://', env=env)\n"
        "with TestClient(app, base_url='http://127.0.0.1') as http:\n"
        "    body = {'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': True}\n"
        "    assert http.post('/v1/chat/completions', json=body).status_code == 200\n"
        "up.close()\n"
        "print([m for m in sys.modules if m.startswith('opentelemetry')])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_traces_asked_for_without_the_extra_stop_serve_with_the_install_hint() -> None:
    # The SDK made unimportable, as it is when the extra is not installed; serve exits before binding.
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from lwfsm.cli import main\n"
        "sys.exit(main(['serve', '--mock', '--store', 'memory://', '--port', '1']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "otlp"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    hint = 'pip install "lwfsm[otel]"'
    assert f"OTEL_TRACES_EXPORTER='otlp' asks for traces, but opentelemetry.sdk.trace is not installed: {hint}" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def _total(page: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(name + "{"))


def test_metrics_sum_every_worker(oai: openai_server.Server, tmp_path: Path) -> None:
    """With --workers 2 a scrape of either worker counts the calls both served (prometheus-client's
    multiprocess mode in a directory `lwfsm serve` makes, and removes when it exits)."""
    port = _free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, **_env(oai.base), "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env["TMPDIR"] = str(scratch)  # where serve makes its metrics directory, so the test can see the workers' files
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    store = f"sqlite:///{tmp_path}/s.db"
    args = ["serve", "--workers", "2", "--store", store, "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwfsm", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base)
        (folder,) = scratch.glob("lwfsm-metrics-*")
        # Calls on new connections until both workers have counted some (each worker's counts are its
        # own file, named by its pid).
        sent, deadline = 0, time.monotonic() + 60
        while len({f.stem.rsplit("_", 1)[1] for f in folder.glob("counter_*.db")}) < 2:
            assert time.monotonic() < deadline, "one worker served every call for 60 s"
            body = {"model": "m", "messages": [{"role": "user", "content": f"call {sent}"}]}
            assert httpx.post(base + "/v1/chat/completions", json=body, timeout=30).status_code == 200
            sent += 1
        for _ in range(6):  # scrapes on new connections reach either worker: each sums both
            page = httpx.get(base + "/metrics", timeout=30).text
            assert _total(page, "lwfsm_calls_total") == sent
            assert _total(page, "lwfsm_request_seconds_count") == sent
            assert f"lwfsm_live_conversations {float(sent)}" in page
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert not folder.exists()  # removed when serve exits


def test_an_anthropic_answer_without_usage_is_unknown_not_zero_tokens() -> None:
    from lwfsm.gateway.codec.messages import AnthropicStream, anthropic_reply

    assert anthropic_reply({"content": [{"type": "text", "text": "hi"}]})[1] is None
    usage = anthropic_reply({"content": [], "usage": {"input_tokens": 5, "output_tokens": 0}})[1]
    assert usage is not None
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (5, 0)  # a reported 0 stays 0
    stream = AnthropicStream()
    for event in ({"type": "message_start", "message": {"model": "claude-x"}}, {"type": "message_stop"}):
        stream.add(event)
    assert (stream.model, stream.reply()[1]) == ("claude-x", None)
