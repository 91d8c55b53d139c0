"""The gateway under faults and hostile input: a stopped or locked store, hostile clients, odd upstreams.
Real `lwfsm serve` processes, a real redis-server and SQLite file, fake upstreams on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from . import anthropic_server, openai_server  # noqa: E402
from .test_gateway import GATEWAY_KEY, LEAD_KEY, ROOT, Gateway, _env, _free_port, ant, oai, redis_url  # noqa: E402

__all__ = ["ant", "oai", "redis_url"]  # fixtures shared with test_gateway

AUTH = {"authorization": f"Bearer {GATEWAY_KEY}"}


def _chat(gw: Gateway, session: str, text: str = "hi", **body: Any) -> httpx.Response:
    return httpx.post(
        gw.base + "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": text}], **body},
        headers={**AUTH, "x-lwfsm-session": session},
        timeout=60,
    )


def _models(gw: Gateway) -> httpx.Response:
    # The bound only fails the test when the event loop is blocked (before the fix: 30 s per store call).
    return httpx.get(gw.base + "/v1/models", headers=AUTH, timeout=10)


def _wait(done: Any) -> None:
    """Poll until `done()` (readiness of something outside this process), up to 20 s."""
    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)  # polling for a state, not for a timing


# -- item 2: store I/O never on the event loop --

_LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Callable[[], None]]:
    """Another process holding the SQLite file's write lock until the function it gives is called."""
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    stdin, stdout = locker.stdin, locker.stdout
    assert stdin is not None
    assert stdout is not None

    def release() -> None:
        stdin.write("\n")
        stdin.flush()

    try:
        assert stdout.readline() == "locked\n"
        yield release
    finally:
        locker.kill()
        locker.communicate()  # and closes its pipes


def test_a_locked_sqlite_file_holds_up_only_the_calls_that_write(oai: openai_server.Server, tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    gw = Gateway("--api-key-env", "GW_KEY", "--store", f"sqlite:///{path}", env=_env("openai", oai.base))
    try:
        assert _chat(gw, "a").status_code == 200  # the file and the conversation exist
        with _locked(path) as release, ThreadPoolExecutor(2) as pool:
            seen = len(oai.requests)
            stalled = pool.submit(_chat, gw, "a", "again")
            _wait(lambda: len(oai.requests) > seen)  # answered upstream: now it waits to write the row
            models = _models(gw)
            assert models.status_code == 200
            # reading a conversation needs no write lock (WAL): the control API answers too
            assert httpx.get(gw.base + "/lwfsm/sessions", headers=AUTH, timeout=10).status_code == 200
            assert not stalled.done()
            release()
            assert stalled.result().status_code == 200  # the lock gone, the call is recorded
    finally:
        out = gw.stop()
    assert "Traceback" not in out


def test_a_store_that_fails_to_record_a_stream_ends_it_with_an_error_event(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    """The stream has begun (status 200) when its turn is recorded: a store that fails then is the
    protocol's error event naming the store, and one log line; the client never sees the stream's end."""
    path = tmp_path / "s.db"
    args = ("--api-key-env", "GW_KEY", "--store", f"sqlite:///{path}", "--store-timeout", "0.5")
    gw = Gateway(*args, env=_env("openai", oai.base))
    try:
        assert _chat(gw, "a").status_code == 200  # the file and the conversation exist
        with (
            _locked(path),
            httpx.stream(
                "POST",
                gw.base + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True},
                headers={**AUTH, "x-lwfsm-session": "a"},
                timeout=60,
            ) as streamed,
        ):
            status = streamed.status_code
            lines = [x for x in streamed.iter_lines() if x]
    finally:
        out = gw.stop()
    assert status == 200
    assert lines[0].startswith("data: {")  # the reply's text reached the client
    error = json.loads(lines[-1].removeprefix("data: "))["error"]  # and then the error, not [DONE]
    assert error["message"].startswith(f"store sqlite:///{path}: no answer within 0.5 s (--store-timeout)")
    assert "data: [DONE]" not in lines
    assert out.count("the lead stream was not recorded: store sqlite:") == 1
    assert "Traceback" not in out


def test_a_store_that_fails_to_record_a_responses_stream_ends_it_with_an_error_and_no_completion(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    """The Responses API's stream, its Chat stream finished (the usage still to come) when the store fails:
    the error event ends it; no `response.completed` after it, no chain stored."""
    path = tmp_path / "s.db"
    args = ("--api-key-env", "GW_KEY", "--store", f"sqlite:///{path}", "--store-timeout", "0.5")
    gw = Gateway(*args, env=_env("openai", oai.base))
    hold = threading.Event()
    lines: list[str] = []
    try:
        assert _chat(gw, "r").status_code == 200  # the file exists
        oai.script("lead-model", {"content": "hi", "hold": hold, "hold_at": "usage"})
        body = {"model": "m", "input": "go", "stream": True}
        with (
            _locked(path),
            httpx.stream(
                "POST", gw.base + "/v1/responses", json=body, headers={**AUTH, "x-lwfsm-session": "r"}, timeout=60
            ) as streamed,
        ):
            for line in streamed.iter_lines():
                lines.append(line)
                if line.startswith("event: response.output_text.delta"):
                    hold.set()  # the text and the finish are relayed: now the usage, and the turn is recorded
    finally:
        hold.set()
        out = gw.stop()
    kinds = [x.removeprefix("event: ") for x in lines if x.startswith("event: ")]
    assert kinds[-1] == "error"
    assert "response.completed" not in kinds
    assert "no answer within 0.5 s (--store-timeout)" in lines[lines.index("event: error") + 1]
    assert "Traceback" not in out


def test_a_write_the_store_takes_after_the_timeout_is_traced_and_counted_once(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    """A store that answers after --store-timeout (a lock let go, a stopped Redis resumed) still takes
    the write the client was told failed (503): the turn is kept, its trace line and counts are written
    when the write lands (the trace lost it: `report` and the control API disagreed for good), and the
    client's retry is not counted again."""
    path, logs = tmp_path / "s.db", tmp_path / "logs"
    args = ("--api-key-env", "GW_KEY", "--store", f"sqlite:///{path}", "--store-timeout", "0.5", "--log-dir", str(logs))
    gw = Gateway(*args, env=_env("openai", oai.base))
    try:
        assert _chat(gw, "late", "one").status_code == 200
        with _locked(path) as release:
            failed = _chat(gw, "late", "two")
            assert failed.status_code == 503
            assert "no answer within 0.5 s (--store-timeout)" in failed.json()["error"]["message"]
            assert not list(logs.glob("*.jsonl"))  # turn 1, judged by this call, is not traced yet
            release()
            _wait(lambda: list(logs.glob("*.jsonl")))  # the write landed once the lock was gone
        again = _chat(gw, "late", "two")  # the client's retry
        key = again.headers["x-lwfsm-session"]
        assert (again.status_code, again.headers["x-lwfsm-turn"]) == (200, "2")
        assert _chat(gw, "late", "three").headers["x-lwfsm-turn"] == "3"
        listed = gw.control("GET", f"/lwfsm/sessions/{key}").json()
        metrics = httpx.get(gw.base + "/metrics", headers=AUTH, timeout=10).text
    finally:
        out = gw.stop()
    assert 'lwfsm_calls_total{role="lead"} 4.0' in metrics
    assert 'lwfsm_turns_total{outcome="turn_completed",role="lead"} 2.0' in metrics
    (trace,) = logs.glob("*.jsonl")
    assert [json.loads(line)["turn"] for line in trace.read_text().splitlines()] == [1, 2]
    assert (listed["turn"], listed["calls"]) == (2, 4)  # four upstream calls, the retry one of them
    assert (
        out.count("the store took the write after the call was answered (past --store-timeout, or cut by a drain)") == 1
    )
    assert "Traceback" not in out


def _redis_pid(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def _unread(port: int) -> bool:
    """Whether a connection to `port` on this host holds bytes its server has not read (a stopped redis)."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, queues = fields[1], fields[4]
                if int(local.rsplit(":", 1)[1], 16) == port and int(queues.split(":")[1], 16) > 0:
                    return True
    return False


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the socket queues in /proc")
def test_a_stopped_redis_fails_only_its_calls_with_a_503_naming_it(oai: openai_server.Server, redis_url: str) -> None:
    from .redis_server import PASSWORD

    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    args = ("--api-key-env", "GW_KEY", "--store", redis_url + "?prefix=stopped:", "--store-timeout", "1")
    gw = Gateway(*args, env=_env("openai", oai.base))
    pid = _redis_pid(redis_url)
    stalled: Future[httpx.Response] | None = None
    try:
        assert _chat(gw, "b").status_code == 200
        os.kill(pid, signal.SIGSTOP)
        with ThreadPoolExecutor(2) as pool:
            stalled = pool.submit(_chat, gw, "b", "again")
            _wait(lambda: _unread(port))  # the gateway's command waits in the stopped server's socket
            models = _models(gw)
            assert models.status_code == 200
            assert not stalled.done()
            failed = stalled.result()
        assert failed.status_code == 503
        message = failed.json()["error"]["message"]
        assert "redis://:***@127.0.0.1" in message
        assert "--store-timeout" in message
        assert PASSWORD not in failed.text
    finally:
        os.kill(pid, signal.SIGCONT)
        out = gw.stop()
    assert PASSWORD not in out


def test_readyz_is_503_naming_a_stopped_redis_and_200_once_it_answers(
    oai: openai_server.Server, redis_url: str
) -> None:
    from .redis_server import PASSWORD

    args = ("--api-key-env", "GW_KEY", "--store", redis_url + "?prefix=probed:", "--store-timeout", "1")
    gw = Gateway(*args, env=_env("openai", oai.base))
    pid = _redis_pid(redis_url)
    stopped = False
    try:
        assert httpx.get(gw.base + "/readyz", timeout=10).status_code == 200  # no key needed
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        unkeyed = httpx.get(gw.base + "/readyz", timeout=10)
        assert (unkeyed.status_code, unkeyed.json()) == (503, {"status": "unavailable"})  # no store told
        ready = httpx.get(gw.base + "/readyz", headers=AUTH, timeout=10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["store"].startswith("redis://:***@127.0.0.1")
        assert "--store-timeout" in body["reason"]
        assert PASSWORD not in ready.text
        health = httpx.get(gw.base + "/healthz", timeout=10)  # alive all the same: restarting it would not help
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        os.kill(pid, signal.SIGCONT)
        stopped = False
        assert httpx.get(gw.base + "/readyz", timeout=10).status_code == 200
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        out = gw.stop()
    assert PASSWORD not in out
    assert out.count("/readyz: not ready: store redis://:***@127.0.0.1") == 1  # once, not at every probe
    assert out.count("/readyz: ready again") == 1


def test_litellm_is_set_offline_at_start_up_not_by_the_first_request(ant: Any) -> None:
    """count_tokens as a gateway's first request imported LiteLLM before its offline setting, which then
    fetched the remote price map (seconds, on the event loop). A recorder stands in for that URL."""
    hits: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/prices.json"
    env = {**_env("anthropic", ant.base), "LITELLM_MODEL_COST_MAP_URL": url, "LITELLM_LOCAL_MODEL_COST_MAP": ""}
    gw = Gateway("--api-key-env", "GW_KEY", env=env)
    try:
        r = httpx.post(
            gw.base + "/v1/messages/count_tokens",
            json={"model": "m", "messages": [{"role": "user", "content": "count me"}]},
            headers={"x-api-key": GATEWAY_KEY},
            timeout=60,
        )
        assert r.status_code == 200
        assert r.json()["input_tokens"] > 0
    finally:
        gw.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)
        httpd.shutdown()
        httpd.server_close()
    assert hits == []


def _mixed(ant: anthropic_server.Server, oai: openai_server.Server) -> dict[str, str]:
    """A Claude lead and an OpenAI-compatible worker: every client's calls go through LiteLLM for one role."""
    return {
        **_env("anthropic", ant.base),
        "LWFSM_WORKER_MODEL": "openai/worker-model",
        "LWFSM_WORKER_API_BASE": oai.base,
    }


def _logged(gw: Gateway, pattern: str, seconds: float = 60) -> str:
    """The first line of the running gateway's output matching `pattern`, read from its pipe as it comes (up
    to a bound); what was read before it is kept in `gw.read` (a later `stop()` gives only the rest)."""
    assert gw.proc.stdout is not None
    fd, deadline = gw.proc.stdout.fileno(), time.monotonic() + seconds
    read = getattr(gw, "read", "")
    while not (found := re.search(f"^.*{pattern}.*$", read, re.M)):
        left = deadline - time.monotonic()
        assert left > 0, f"no line matching {pattern!r} within {seconds} s: {read}"
        if select.select([fd], [], [], left)[0]:
            data = os.read(fd, 65536)
            assert data, f"the gateway exited before a line matching {pattern!r}: {read}"
            read += data.decode()
    gw.read = read  # type: ignore[attr-defined]
    return found.group(0)


def test_a_gateway_whose_every_client_needs_litellm_imports_it_at_start_up_not_at_the_first_call(
    ant: anthropic_server.Server, oai: openai_server.Server
) -> None:
    """The first translated call waited for LiteLLM's import (7 s, 11 s under load): now begun at start-up,
    in the background; the gateway is ready meanwhile (a call then waits for it, as before), so a worker
    replaced in a rollout does not take it out of readiness."""
    gw = Gateway("--api-key-env", "GW_KEY", env=_mixed(ant, oai))
    try:
        assert httpx.get(gw.base + "/readyz", timeout=10).status_code == 200
        line = _logged(gw, r"LiteLLM loaded")  # no call was made
        assert re.search(r" INFO lwfsm\.gateway: LiteLLM loaded for translated calls in \d+\.\d s$", line), line
        r = httpx.post(
            gw.base + "/v1/messages",
            json={"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": GATEWAY_KEY, "x-lwfsm-session": "preloaded"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
    finally:
        gw.kill()


# A process that cannot import LiteLLM, as one installed without the extra: it is told so at once.
_NO_LITELLM = "import sys\nsys.modules['litellm'] = None\n"


def _serve_without(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(_NO_LITELLM)
    env = {**os.environ, **env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    argv = [sys.executable, "-m", "lwfsm", "serve", "--store", "memory://", "--port", str(_free_port()), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_without_litellm_serve_refuses_roles_that_every_call_would_translate(
    ant: anthropic_server.Server, oai: openai_server.Server, tmp_path: Path
) -> None:
    fix = 'LiteLLM is not installed: pip install "lwfsm[gateway,litellm]"'
    mixed = _serve_without(tmp_path, _mixed(ant, oai))
    assert mixed.returncode == 1
    assert mixed.stderr.strip() == (
        "lwfsm serve: the lead model anthropic/lead-model (LWFSM_LEAD_MODEL) and the worker model "
        "openai/worker-model (LWFSM_WORKER_MODEL) speak different protocols, so every client's calls go "
        f"through LiteLLM for one of them, and {fix}; or bind every role to openai/... or every role to "
        "anthropic/..."
    )
    responses_only = _serve_without(tmp_path, {**_env("openai", oai.base), "LWFSM_LEAD_MODEL": "openai/responses/big"})
    assert responses_only.returncode == 1
    assert responses_only.stderr.strip() == (
        "lwfsm serve: the lead model openai/responses/big (LWFSM_LEAD_MODEL) can be called only through LiteLLM, "
        f"and {fix}"
    )
    mock = _serve_without(tmp_path, {}, "--mock")
    assert mock.returncode == 1
    assert mock.stderr.strip() == f"lwfsm serve: --mock answers every call with LiteLLM's mock models, and {fix}"


def test_without_litellm_a_call_only_litellm_could_translate_is_a_501_saying_where_to_send_it(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    """Every role on OpenAI-compatible servers and no LiteLLM: Chat Completions calls are forwarded as
    ever; a Messages call was a 500 "internal gateway error: ImportError"."""
    anthropic = pytest.importorskip("anthropic")
    openai = pytest.importorskip("openai")
    (tmp_path / "sitecustomize.py").write_text(_NO_LITELLM)
    gw = Gateway(
        "--api-key-env", "GW_KEY", env={**_env("openai", oai.base), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    )
    try:
        assert httpx.get(gw.base + "/readyz", timeout=10).status_code == 200  # nothing to load: ready
        with openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0) as chat:
            assert chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
        with anthropic.Anthropic(base_url=gw.base, api_key=GATEWAY_KEY, max_retries=0) as client:
            with pytest.raises(anthropic.APIStatusError) as refused:
                client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(anthropic.APIStatusError) as uncounted:
                client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
    finally:
        out = gw.stop()
    assert refused.value.status_code == 501
    said = refused.value.body["error"]["message"]  # type: ignore[index]
    assert said.startswith(
        "this call to the lead model openai/lead-model is translated by LiteLLM: lwfsm.provider.adapter needs "
        "LiteLLM (import of litellm halted; None in sys.modules): "
    ), said
    assert said.endswith("; or send Chat Completions calls to /v1/chat/completions, which go to it as they are")
    assert uncounted.value.status_code == 501
    assert "LiteLLM" in uncounted.value.body["error"]["message"]  # type: ignore[index]
    assert "Traceback" not in out  # (it was an internal error, logged with its stack)


def test_a_role_on_anthropics_api_counts_tokens_there_without_litellm(
    ant: anthropic_server.Server, tmp_path: Path
) -> None:
    """Claude Code's usual gateway (every role on Anthropic's API) counted tokens with LiteLLM's
    tokenizers: an estimate, and 155 MB and seconds of CPU imported at the first count (a 501 without the
    extra). The role's upstream counts it: exact, as it will bill it."""
    anthropic = pytest.importorskip("anthropic")
    (tmp_path / "sitecustomize.py").write_text(_NO_LITELLM)
    env = {**_env("anthropic", ant.base), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    gw = Gateway("--api-key-env", "GW_KEY", env=env)
    messages: list[Any] = [{"role": "user", "content": "Count the tokens of this message, please."}]
    try:
        with anthropic.Anthropic(base_url=gw.base, api_key=GATEWAY_KEY, max_retries=0) as client:
            sent = len(ant.requests)
            counted = client.messages.count_tokens(model="claude-any", messages=messages, system="Be brief.")
            assert ant.paths[sent:] == ["/v1/messages/count_tokens"]
            assert ant.requests[sent]["model"] == "lead-model"  # the role's model, not the client's name for it
            assert ant.headers[sent]["x-api-key"] == LEAD_KEY  # the role's key, never the gateway's
            assert counted.input_tokens == len(json.dumps(["Be brief.", messages, None]).split())
            ant.script("lead-model", {"status": 429, "headers": {"retry-after": "7"}})
            with pytest.raises(anthropic.RateLimitError) as limited:  # the upstream's answer, as it gave it
                client.messages.count_tokens(model="claude-any", messages=messages)
            # a server that serves Messages but has no count endpoint: counted here, which needs LiteLLM
            ant.script("lead-model", {"status": 404})
            with pytest.raises(anthropic.APIStatusError) as uncounted:
                client.messages.count_tokens(model="claude-any", messages=messages)
        assert limited.value.response.headers["retry-after"] == "7"
        assert uncounted.value.status_code == 501
        said = uncounted.value.body["error"]["message"]  # type: ignore[index]
        assert said.startswith("the lead upstream has no token count endpoint, and tokens are counted with "), said
        sessions = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
        assert sessions == []  # a count is no turn
    finally:
        out = gw.stop()
    assert "Traceback" not in out
    assert re.search(r"POST /v1/messages/count_tokens session \S+ \(lead\): 429 to the client: scripted 429", out)
    assert out.count("the lead upstream has no token count endpoint (anthropic/lead-model)") == 1


def test_a_litellm_that_cannot_be_imported_is_named_by_its_own_error_before_and_after_start(
    ant: anthropic_server.Server, oai: openai_server.Server, tmp_path: Path
) -> None:
    """Installed, but its import fails (a dependency missing, a version it refuses): `--check-only` imports
    it and says why; `serve` (which only looks for it, not to wait seconds before binding its port)
    answers /readyz 503 and each call a 501 with that error, never a 500 or "not installed"."""
    (tmp_path / "litellm").mkdir()
    (tmp_path / "litellm" / "__init__.py").write_text('raise RuntimeError("this LiteLLM refuses pydantic 1")\n')
    env = {**_mixed(ant, oai), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    checked = subprocess.run(
        [sys.executable, "-m", "lwfsm", "serve", "--check-only"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 1
    assert "LiteLLM cannot be imported: RuntimeError: this LiteLLM refuses pydantic 1;" in checked.stderr
    gw = Gateway("--api-key-env", "GW_KEY", env=env)
    try:
        _logged(gw, r"ERROR lwfsm\.gateway: LiteLLM could not be imported")
        ready = httpx.get(gw.base + "/readyz", headers=AUTH, timeout=10)
        r = _chat(gw, "refused")
    finally:
        out = gw.read + gw.stop()  # type: ignore[attr-defined]
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "reason": "LiteLLM could not be imported: RuntimeError: this LiteLLM refuses pydantic 1",
    }
    assert r.status_code == 501
    assert r.json()["error"]["message"] == (
        "this call to the lead model anthropic/lead-model is translated by LiteLLM: RuntimeError: this LiteLLM "
        "refuses pydantic 1"  # no endpoint to send it to instead: the roles speak both protocols
    )
    assert "Traceback" not in out


# -- item 3: who may use the control API --


@pytest.mark.parametrize(
    ("key", "client", "status"),
    [
        (None, "127.0.0.1", 200),
        (None, "::1", 200),
        (None, "192.0.2.7", 403),  # no gateway key: another host may not list or delete conversations
        (GATEWAY_KEY, "192.0.2.7", 200),  # with a key, whoever holds it
    ],
)
def test_without_a_gateway_key_the_control_api_answers_this_host_only(
    key: str | None, client: str, status: int
) -> None:
    from starlette.testclient import TestClient

    from lwfsm.gateway.serve import build
    from lwfsm.spec import load_spec

    env = {"GW_KEY": key} if key else {}
    app = build(load_spec("lead_worker"), store="memory://", mock=True, env=env, api_key_env="GW_KEY" if key else None)
    with TestClient(app, base_url="http://127.0.0.1", client=(client, 50000)) as http:
        for method, path in [("GET", "/lwfsm/sessions"), ("GET", "/metrics"), ("DELETE", "/lwfsm/sessions/x")]:
            r = http.request(method, path, headers=AUTH if key else {})
            assert r.status_code == (404 if status == 200 and method == "DELETE" else status), (method, path)
            if status == 403:
                assert "--api-key-env" in r.json()["error"]
        assert http.get("/v1/models", headers=AUTH if key else {}).status_code == 200  # the model API is not control


CONTROL_KEY = "ctl-key-9876543210"


def test_with_a_control_key_the_gateway_key_runs_turns_and_only_the_control_key_controls(
    oai: openai_server.Server,
) -> None:
    """--control-key-env: every client holds the gateway key; it must not roll out a spec, read another
    client's session, fire an event or read /metrics. The control key opens those and runs no turn."""
    openai = pytest.importorskip("openai")
    env = {**_env("openai", oai.base), "CTL_KEY": CONTROL_KEY}
    gw = Gateway("--api-key-env", "GW_KEY", "--control-key-env", "CTL_KEY", env=env)
    try:
        client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-lwfsm-session": "ctl-1"}
        )
        control = {"authorization": f"Bearer {CONTROL_KEY}"}
        listed = httpx.get(gw.base + "/lwfsm/sessions", headers=control, timeout=10).json()["sessions"]
        (sid,) = [s["id"] for s in listed if s["id"].endswith(".ctl-1")]  # stored under a tag of the client's key
        spec = (ROOT / "specs" / "lead_worker.yaml").read_text()
        calls = [
            ("GET", "/lwfsm/sessions", None),
            ("GET", f"/lwfsm/sessions/{sid}", None),
            ("GET", "/metrics", None),
            ("GET", "/lwfsm/spec", None),
            ("POST", "/lwfsm/spec", spec),
            ("POST", f"/lwfsm/sessions/{sid}/events/reset", None),
            ("DELETE", f"/lwfsm/sessions/{sid}", None),
        ]
        for method, path, body in calls:
            refused = httpx.request(method, gw.base + path, headers=AUTH, content=body, timeout=30)
            assert refused.status_code == 401, (method, path, refused.text)
            assert "control key" in refused.json()["error"]
            assert GATEWAY_KEY not in refused.text
            assert CONTROL_KEY not in refused.text
        for method, path, body in calls:
            r = httpx.request(method, gw.base + path, headers=control, content=body, timeout=30)
            assert r.status_code in (200, 204), (method, path, r.status_code, r.text)
        assert httpx.get(gw.base + f"/lwfsm/sessions/{sid}", headers=control, timeout=10).status_code == 404  # deleted
        with pytest.raises(openai.AuthenticationError):  # the control key runs no turn
            openai.OpenAI(base_url=gw.base + "/v1", api_key=CONTROL_KEY, max_retries=0).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        gw.kill()


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, "--control-key-env CTL_KEY: that variable is not set"),
        ({"CTL_KEY": ""}, "--control-key-env CTL_KEY: that variable is empty"),
        ({"CTL_KEY": GATEWAY_KEY}, "holds the same key as --api-key-env GW_KEY"),
        ({"CTL_KEY": "ctl-key-9876543210\n"}, "--control-key-env CTL_KEY: its value holds a space, a line end"),
        ({"CTL_KEY": "ctl-key-98765432é"}, "or a character that is not ASCII"),
    ],
)
def test_a_control_key_variable_unset_or_equal_to_the_gateway_key_stops_serve(
    env: dict[str, str], said: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwfsm.cli import main

    monkeypatch.setenv("GW_KEY", GATEWAY_KEY)
    monkeypatch.delenv("CTL_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = ["serve", "--port", str(_free_port()), "--store", "memory://", "--mock", "--api-key-env", "GW_KEY"]
    for extra in ([], ["--check-only"]):
        assert main([*args, "--control-key-env", "CTL_KEY", *extra]) == 1
        err = capsys.readouterr().err
        assert said in err
        assert GATEWAY_KEY not in err


def test_serving_beyond_loopback_without_a_key_needs_an_explicit_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwfsm.cli import main

    served: list[str] = []
    monkeypatch.setattr("lwfsm.gateway.serve.serve", lambda app, host, port, **kw: served.append(host) or 0)
    # a free port: serve first checks it can listen (a gateway of the user's may hold the default 8088)
    args = ["serve", "--port", str(_free_port()), "--store", "memory://", "--mock"]
    assert main([*args, "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 without --api-key-env" in err
    assert "--allow-no-key" in err
    assert served == []
    assert main([*args, "--host", "0.0.0.0", "--allow-no-key"]) == 0
    monkeypatch.setenv("GW_KEY", GATEWAY_KEY)
    assert main([*args, "--host", "::", "--api-key-env", "GW_KEY"]) == 0
    assert main([*args, "--host", "localhost"]) == 0
    assert served == ["0.0.0.0", "::", "localhost"]


@pytest.fixture(scope="module")
def sq_gateway(oai: openai_server.Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('faults')}/s.db"
    gw = Gateway("--api-key-env", "GW_KEY", "--store", url, env=_env("openai", oai.base))
    gw.url = url  # type: ignore[attr-defined]
    yield gw
    gw.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)


# -- item 4: what an upstream or a damaged row sends cannot break the record or the list --


def test_a_lone_surrogate_from_the_upstream_is_recorded_safely(oai: openai_server.Server, sq_gateway: Gateway) -> None:
    gw = sq_gateway
    oai.script("lead-model", {"content": "bad \ud800 text"})  # sent as JSON's "\ud800": valid JSON, not UTF-8
    first = _chat(gw, "surrogate")
    assert first.status_code == 200
    assert first.json()["choices"][0]["message"]["content"] == "bad \ud800 text"  # the client gets what came
    key = first.headers["x-lwfsm-session"]
    assert _chat(gw, "surrogate", "next").status_code == 200  # the turn was recorded, and is judged now
    got = httpx.get(f"{gw.base}/lwfsm/sessions/{key}", headers=AUTH, timeout=10)
    assert got.status_code == 200
    assert got.json()["turn"] == 1
    assert got.json()["history"][0]["turn"] == 1
    oai.script("lead-model", {"content": "bad \udfff too"})
    r = httpx.post(gw.base + "/v1/responses", json={"model": "m", "input": "hi"}, headers=AUTH, timeout=30)
    assert r.status_code == 200
    assert r.json()["output"][0]["content"][0]["text"] == "bad \udfff too"
    assert httpx.get(f"{gw.base}/lwfsm/sessions", headers=AUTH, timeout=10).status_code == 200


@pytest.mark.parametrize("body", [["not", "a", "reply"], "text", 7])
def test_an_upstream_answering_json_that_is_not_an_object_is_a_502(
    oai: openai_server.Server, sq_gateway: Gateway, body: Any
) -> None:
    oai.script("lead-model", {"body": body})
    r = _chat(gw := sq_gateway, f"not-an-object-{type(body).__name__}")
    assert r.status_code == 502
    assert "no assistant message; nothing was recorded" in r.json()["error"]["message"]
    got = httpx.get(f"{gw.base}/lwfsm/sessions/{r.headers['x-lwfsm-session']}", headers=AUTH, timeout=10)
    assert got.status_code == 404  # no turn recorded: the conversation was never stored


def test_a_damaged_row_is_named_and_the_others_are_listed(sq_gateway: Gateway) -> None:
    from lwfsm.store import open_store
    from lwfsm.store.base import Row

    gw = sq_gateway
    healthy = _chat(gw, "healthy")
    assert healthy.status_code == 200
    store = open_store(gw.url)  # type: ignore[attr-defined]
    damaged = {
        "dmg.not-ours": "written by another program",
        "dmg.bad-state": "lwfsm-session/1 -\n{not json",
        "dmg.bad-meta": "lwfsm-session/1 -\n" + store.read(store.list()[0]).data.split("\n")[1] + "\n[1, 2",  # type: ignore[union-attr]
    }
    try:
        for key, data in damaged.items():
            assert store.write(key, 0, Row(data, 1))
        listed = httpx.get(f"{gw.base}/lwfsm/sessions", headers=AUTH, timeout=10)
        assert listed.status_code == 200
        body = listed.json()
        assert healthy.headers["x-lwfsm-session"] in [s["id"] for s in body["sessions"]]
        assert sorted(u["id"] for u in body["unreadable"]) == sorted(damaged)
        for key in damaged:
            one = httpx.get(f"{gw.base}/lwfsm/sessions/{key}", headers=AUTH, timeout=10)
            assert one.status_code == 409
            assert f"session {key!r} cannot be read" in one.json()["error"]
            assert f"DELETE /lwfsm/sessions/{key}" in one.json()["error"]
            assert httpx.delete(f"{gw.base}/lwfsm/sessions/{key}", headers=AUTH, timeout=10).status_code == 204
        # A call of a conversation whose row is damaged: which one, and the way out.
        key = healthy.headers["x-lwfsm-session"]
        row = store.read(key)
        assert row is not None
        assert store.write(key, row.version, Row("lwfsm-session/1 -\n{not json", row.version + 1))
        refused = _chat(gw, "healthy", "next")
        assert refused.status_code == 409
        said = refused.json()["error"]["message"]
        assert said.startswith(f"stored conversation {key!r} unusable: ")
        assert said.endswith(
            f"`lwfsm sessions delete {key}` (or DELETE /lwfsm/sessions/{key}) removes it, "
            "and the next call begins it anew"
        )
        assert httpx.delete(f"{gw.base}/lwfsm/sessions/{key}", headers=AUTH, timeout=10).status_code == 204
        assert _chat(gw, "healthy", "next").status_code == 200
    finally:
        store.close()


# -- item 8: an upstream that ignores `stream: true` --


def test_a_whole_reply_to_a_streamed_request_is_recorded(oai: openai_server.Server, sq_gateway: Gateway) -> None:
    gw = sq_gateway
    oai.script("lead-model", {"whole": True, "content": "one body"})
    r = _chat(gw, "ignores-stream", stream=True)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "one body"  # as the upstream sent it
    key = r.headers["x-lwfsm-session"]
    got = httpx.get(f"{gw.base}/lwfsm/sessions/{key}", headers=AUTH, timeout=10).json()
    assert got["calls"] == 1
    assert got["pending"]["reply"]["content"] == "one body"


def test_a_streamed_responses_call_gets_events_when_the_upstream_answers_whole(
    oai: openai_server.Server, sq_gateway: Gateway
) -> None:
    """The openai SDK's Responses streaming client, through an upstream that ignores `stream: true`:
    it gets the events of a stream (text, then a tool call), the turn is recorded, the chain is kept."""
    import openai

    gw = sq_gateway
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    call = {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": '{"path": "."}'}}
    oai.script("lead-model", {"whole": True, "content": "one body", "tool_calls": [call]})
    tools: Any = [{"type": "function", "name": "ls", "parameters": {"type": "object"}}]
    with client.responses.stream(
        model="m", input="list files", tools=tools, extra_headers={"x-lwfsm-session": "whole-responses"}
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert final.output_text == "one body"
    assert [(o.type, getattr(o, "name", None)) for o in final.output] == [("message", None), ("function_call", "ls")]
    assert final.usage is not None
    assert final.usage.input_tokens == 11
    got = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    (mine,) = [s for s in got if s["session"] == "whole-responses"]
    assert mine["calls"] == 1
    seen = len(oai.requests)
    later = client.responses.create(model="m", input="and now?", previous_response_id=final.id)
    assert later.output_text  # the chain behind it was kept
    assert [m["content"] for m in oai.requests[seen]["messages"]][:2] == ["list files", "one body"]


# -- item 5: Responses chains --


def test_responses_are_stored_once_each_chained_by_reference(oai: openai_server.Server, sq_gateway: Gateway) -> None:
    import sqlite3

    gw = sq_gateway
    prev, seen = None, len(oai.requests)
    for n in range(12):
        body = {"model": "m", "input": f"step {n} " + "x" * 2000, **({"previous_response_id": prev} if prev else {})}
        r = httpx.post(gw.base + "/v1/responses", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 200
        prev = r.json()["id"]
    sent = oai.requests[seen:]
    assert [len(q["messages"]) for q in sent] == [2 * n + 1 for n in range(12)]  # the whole chain reached the model
    path = gw.url.split(":///", 1)[1]  # type: ignore[attr-defined]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT length(data), expires FROM lwfsm_responses WHERE data LIKE '%step %'").fetchall()
        sessions = [r[0] for r in db.execute("SELECT id FROM lwfsm_sessions")]
    db.close()
    assert len(rows) == 12
    sizes = sorted(r[0] for r in rows)
    assert sizes[-1] < sizes[0] + 200  # each row holds one call's input and reply, not the chain so far
    assert all(r[1] > time.time() + 29 * 24 * 3600 for r in rows)  # no ttl set: kept 30 days, as OpenAI does
    assert not any(":resp_" in s or s.startswith("lwfsm-response:") for s in sessions)  # a space of their own
    listed = httpx.get(f"{gw.base}/lwfsm/sessions", headers=AUTH, timeout=10).json()
    assert listed["unreadable"] == []


def test_responses_expire_with_the_stores_ttl(tmp_path: Path) -> None:
    from lwfsm.gateway.store import RESPONSES_TTL, open_chain_store

    assert open_chain_store(f"sqlite:///{tmp_path}/a.db?ttl=60").ttl == 60  # type: ignore[attr-defined]
    assert open_chain_store(f"sqlite:///{tmp_path}/b.db").ttl == RESPONSES_TTL  # type: ignore[attr-defined]


# -- item 9 --


def test_a_non_ascii_gateway_key_is_a_401(sq_gateway: Gateway) -> None:
    for headers in ({"x-api-key": "clé-é"}, {"authorization": "Bearer ключ"}):
        r = httpx.get(sq_gateway.base + "/v1/models", headers=[(k, v.encode()) for k, v in headers.items()])
        assert r.status_code == 401


def test_concurrent_calls_of_a_conversation_are_told_their_own_turns(
    oai: openai_server.Server, sq_gateway: Gateway
) -> None:
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda n: _chat(sq_gateway, "busy", f"call {n}"), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert sorted(int(a.headers["x-lwfsm-turn"]) for a in answers) == [1, 2, 3, 4, 5, 6]


def test_concurrent_streams_of_a_conversation_end_with_their_own_turns(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    """A streamed reply's headers go out before it is recorded: x-lwfsm-turn is the turn planned, and
    the stream's last line (an SSE comment) the turn it was recorded as, unique under concurrency.
    Six calls finishing at once all get recorded (the sixth write loses five races), and the switch
    is logged once, not once per lost write."""
    import openai

    gw = Gateway("--api-key-env", "GW_KEY", "--store", f"sqlite:///{tmp_path}/s.db", env=_env("openai", oai.base))
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    hold = threading.Event()
    oai.script("lead-model", *[{"hold": hold}] * 6)  # each sends its text, then waits before the finish

    def stream(n: int) -> tuple[str, list[str]]:
        with client.chat.completions.with_streaming_response.create(
            model="m",
            messages=[{"role": "user", "content": f"call {n}"}],
            stream=True,
            extra_headers={"x-lwfsm-session": "busy-streams"},
        ) as r:
            return r.headers["x-lwfsm-turn"], list(r.iter_lines())

    seen = len(oai.requests)
    try:
        with ThreadPoolExecutor(6) as pool:
            streams = pool.map(stream, range(6))
            _wait(lambda: len(oai.requests) >= seen + 6)  # all six planned before any is recorded
            hold.set()
            answers = list(streams)
        # The Responses API's stream ends the same way, after response.completed.
        with client.responses.with_streaming_response.create(model="m", input="one more", stream=True) as r:
            responses_turn, lines = r.headers["x-lwfsm-turn"], [x for x in r.iter_lines() if x]
    finally:
        hold.set()
        out = gw.stop()
    assert [planned for planned, _ in answers] == ["1"] * 6
    ends = [[x for x in lines if x][-2:] for _, lines in answers]
    assert all(end[0] == "data: [DONE]" for end in ends)
    assert sorted(int(end[1].removeprefix(": x-lwfsm-turn ")) for end in ends) == [1, 2, 3, 4, 5, 6]
    assert out.count("lead_initial -> worker") == 1
    assert "gave up" not in out
    assert lines[-3].startswith("event: response.completed")
    assert lines[-1] == f": x-lwfsm-turn {responses_turn}"


def test_the_first_byte_and_idle_timeouts_are_separate(oai: openai_server.Server) -> None:
    """Before its first byte an upstream has --first-byte-timeout (a long generation answered whole);
    after it, --idle-timeout between chunks (a stream gone quiet)."""
    args = ("--api-key-env", "GW_KEY", "--first-byte-timeout", "30", "--idle-timeout", "0.2")
    gw = Gateway(*args, env=_env("openai", oai.base))
    hold = threading.Event()
    try:
        oai.script("lead-model", {"delay": 0.6})  # thinks three idle timeouts long before it answers
        slow = _chat(gw, "first-byte")
        oai.script("lead-model", {"hold": hold})  # streams its text, then goes quiet before the finish
        with httpx.stream(
            "POST",
            gw.base + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True},
            headers={**AUTH, "x-lwfsm-session": "idle"},
            timeout=60,
        ) as streamed:
            status, key = streamed.status_code, streamed.headers["x-lwfsm-session"]
            body = b"".join(streamed.iter_bytes())  # ended by the gateway with the protocol's error event
        hold.set()
        listed = [s["id"] for s in httpx.get(gw.base + "/lwfsm/sessions", headers=AUTH, timeout=10).json()["sessions"]]
    finally:
        hold.set()
        gw.stop()
    assert slow.status_code == 200  # before: one read timeout covered both, and this was a 502
    assert status == 200
    assert b'"message": "the lead upstream broke off mid-stream (quiet for 0.2 s (--idle-timeout))' in body
    assert key not in listed  # the cut stream recorded nothing


def test_an_upstream_that_breaks_off_mid_stream_is_an_error_event_and_one_log_line(
    oai: openai_server.Server,
) -> None:
    openai = pytest.importorskip("openai", reason="needs the openai SDK: pip install openai")
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    ask = {"model": "m", "messages": [{"role": "user", "content": "go"}], "extra_headers": {"x-lwfsm-session": "cut"}}
    try:
        oai.script("lead-model", {"broken": True, "content": "a long answer the upstream drops half-way"})
        with pytest.raises(openai.APIError, match=r"the lead upstream broke off mid-stream \(ClientPayloadError"):
            for _ in client.chat.completions.create(stream=True, **ask):  # type: ignore[call-overload]
                pass
        listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
        again = client.chat.completions.create(**ask)  # type: ignore[call-overload]
        # a Responses client too: its stream ended with no error event, and the SDK's loop ended quietly
        oai.script("lead-model", {"broken": True, "content": "a long answer the upstream drops half-way"})
        on = {"model": "m", "input": "go", "extra_headers": {"x-lwfsm-session": "cut-responses"}}
        with pytest.raises(openai.APIError, match=r"the lead upstream broke off mid-stream \(ClientPayloadError"):
            for _ in client.responses.create(stream=True, **on):  # type: ignore[call-overload]
                pass
        responses_listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    finally:
        log = gw.stop()
    assert listed == []  # nothing recorded
    assert again.choices[0].message.content  # the retry is served as a first try
    assert [s["session"] for s in responses_listed] == ["cut"]  # the retried call's; nothing of the cut stream
    assert log.count("upstream broke off mid-stream") == 2
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log


@pytest.mark.parametrize(
    ("step", "said"),
    [
        ({"cut": True}, "the lead upstream ended the stream before its finish"),
        ({"no_finish": True}, "the lead upstream ended the stream before its finish"),  # [DONE] came, no finish
        ({"garbled": True}, "the lead upstream sent an event that is not JSON ('{not json')"),
    ],
)
def test_a_stream_that_ends_early_or_garbled_is_an_error_event_and_records_nothing(
    oai: openai_server.Server, step: dict[str, Any], said: str
) -> None:
    """A stream the upstream ends cleanly before its finish, or one with an event that is not JSON,
    would pass for a reply (the text so far) or break the client's SDK on the event: the client gets the
    protocol's error event instead, and nothing is recorded."""
    openai = pytest.importorskip("openai", reason="needs the openai SDK: pip install openai")
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    ask = {"model": "m", "messages": [{"role": "user", "content": "go"}], "extra_headers": {"x-lwfsm-session": "e"}}
    try:
        oai.script("lead-model", {**step, "content": "a long answer the upstream does not finish well"})
        with pytest.raises(openai.APIError, match=re.escape(said + "; nothing was recorded, try again")):
            for _ in client.chat.completions.create(stream=True, **ask):  # type: ignore[call-overload]
                pass
        listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
        oai.script("lead-model", {**step, "content": "a long answer the upstream does not finish well"})
        on = {"model": "m", "input": "go", "extra_headers": {"x-lwfsm-session": "e-responses"}}
        with pytest.raises(openai.APIError, match=re.escape(said)):
            for _ in client.responses.create(stream=True, **on):  # type: ignore[call-overload]
                pass
        again = client.chat.completions.create(**ask)  # type: ignore[call-overload]
    finally:
        log = gw.stop()
    assert listed == []
    assert again.choices[0].message.content  # the retry is served as a first try
    assert log.count(said + "; nothing recorded") == 2
    assert "Traceback" not in log


def test_a_translated_stream_the_upstream_breaks_is_an_error_event(ant: anthropic_server.Server) -> None:
    """A Chat client, an Anthropic upstream (LiteLLM translates): a stream cut before its message_stop, or
    with an event that is not JSON, ends in the Chat error event; it was a dropped connection and a traceback."""
    openai = pytest.importorskip("openai", reason="needs the openai SDK: pip install openai")
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("anthropic", ant.base))
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    try:
        for step in ({"cut": True}, {"garbled": True}):
            ant.script("lead-model", {**step, "content": "a long answer the upstream does not finish well"})
            with pytest.raises(openai.APIError, match=r"the lead upstream broke off mid-stream \(\w+\); nothing was"):
                for _ in client.chat.completions.create(  # type: ignore[call-overload]
                    model="m",
                    messages=[{"role": "user", "content": "go"}],
                    stream=True,
                    extra_headers={"x-lwfsm-session": str(step)},
                ):
                    pass
        listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    finally:
        log = gw.stop()
    assert listed == []
    assert log.count("upstream broke off mid-stream") == 2
    assert "Traceback" not in log


def test_an_event_whose_json_spans_several_data_lines_is_read_whole(oai: openai_server.Server) -> None:
    """SSE joins an event's data lines with newlines (so does the SDK): such a stream is relayed and recorded."""
    openai = pytest.importorskip("openai", reason="needs the openai SDK: pip install openai")
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    oai.script("lead-model", {"multiline": True, "content": "hello world"})
    ask = {"model": "m", "messages": [{"role": "user", "content": "go"}], "extra_headers": {"x-lwfsm-session": "ml"}}
    try:
        got = client.chat.completions.create(stream=True, **ask)  # type: ignore[call-overload]
        text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
        (listed,) = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    finally:
        gw.stop()
    assert text == "hello world"
    assert listed["calls"] == 1  # recorded


def test_an_event_that_is_not_json_is_shown_without_the_upstreams_key(oai: openai_server.Server) -> None:
    """An upstream that echoes the gateway's key in a broken event: the error shows the event's start,
    the key redacted before it is cut (cut first, a key's first 58 characters were shown)."""
    openai = pytest.importorskip("openai", reason="needs the openai SDK: pip install openai")
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    said = "upstream says: bad key ".ljust(70, ".")  # the key across the 80 characters shown
    oai.script("lead-model", {"garbled": said + LEAD_KEY, "content": "a long answer"})
    try:
        with pytest.raises(openai.APIError) as info:
            for _ in client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "go"}], stream=True
            ):
                pass
    finally:
        log = gw.stop()
    assert f"sent an event that is not JSON ('{said}[redacted]')" in info.value.message
    for text in (info.value.message, log):
        assert LEAD_KEY[:8] not in text


def test_an_upstream_answering_a_web_page_is_an_error_in_the_clients_protocol_naming_it(
    oai: openai_server.Server,
) -> None:
    """A proxy's HTML error page, or a 200 page from an api_base that is a web site: the client's SDK
    shows the role, the upstream and the page's start (it showed only "Error code: 502"), and nothing is
    recorded."""
    openai = pytest.importorskip("openai", reason="needs the openai SDK: pip install openai")
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    ask = {"model": "m", "messages": [{"role": "user", "content": "go"}], "extra_headers": {"x-lwfsm-session": "p"}}
    origin = oai.base.removesuffix("/v1")
    page = "<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"
    try:
        oai.script("lead-model", {"status": 429, "page": page, "headers": {"Retry-After": "7"}})
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(**ask)  # type: ignore[call-overload]
        oai.script("lead-model", {"status": 200, "page": "<!doctype html><title>Docs</title>"})
        with pytest.raises(openai.InternalServerError) as site:
            client.chat.completions.create(**ask)  # type: ignore[call-overload]
        listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    finally:
        gw.stop()
    said = f"the lead upstream {origin} answered 429 with text/html, not JSON: '<html><head><title>502 Bad Gateway"
    assert limited.value.message.startswith("Error code: 429 - " + said)
    assert limited.value.response.headers["content-type"] == "application/json"
    assert limited.value.response.headers["retry-after"] == "7"
    said = f"the lead upstream {origin} answered 200 with text/html, not JSON: '<!doctype html><title>Docs</title>'"
    assert site.value.message == "Error code: 502 - " + said + "; nothing was recorded"
    assert site.value.status_code == 502
    assert listed == []


def test_an_upstream_silent_longer_than_the_first_byte_timeout_is_a_502_naming_it(oai: openai_server.Server) -> None:
    gw = Gateway("--api-key-env", "GW_KEY", "--first-byte-timeout", "0.3", env=_env("openai", oai.base))
    hold = threading.Event()
    try:
        oai.script("lead-model", {"hold": hold, "hold_at": "start"})
        r = _chat(gw, "silent")
        hold.set()
    finally:
        hold.set()
        gw.stop()
    assert r.status_code == 502
    assert "no first byte within 0.3 s (--first-byte-timeout)" in r.json()["error"]["message"]


def test_request_bodies_held_at_once_are_bounded_in_bytes(oai: openai_server.Server) -> None:
    """24 bodies of 30 MB at once took a gateway to 2.9 GB: --body-budget bounds the bytes of the request
    bodies it holds at once; a body that would go over is a 503 with Retry-After, and the budget comes
    back when a call is answered. (tests/benchmarks/mem_bodies.py measures the memory.)"""
    import openai

    mb = 1_000_000
    args = ("--api-key-env", "GW_KEY", "--max-body", str(2 * mb), "--body-budget", str(3 * mb))
    gw = Gateway(*args, env=_env("openai", oai.base))
    client = openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, max_retries=0)

    def ask(size: int, session: str) -> Any:
        return client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "x" * size}], extra_headers={"x-lwfsm-session": session}
        )

    hold = threading.Event()
    try:
        oai.script("lead-model", {"hold": hold, "hold_at": "start"})
        seen = len(oai.requests)
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(ask, int(1.5 * mb), "held")
            _wait(lambda: len(oai.requests) > seen)  # its body is in the gateway while the upstream thinks
            with pytest.raises(openai.InternalServerError) as refused:
                ask(int(1.6 * mb), "refused")
            small = ask(100_000, "small")  # the budget bounds bytes, not calls: a small body still fits
            chunked = httpx.post(  # a body without a length is counted as it is read
                gw.base + "/v1/chat/completions",
                content=iter(
                    [b'{"model": "m", "messages": [{"role": "user", "content": "', b"x" * int(1.6 * mb), b'"}]}']
                ),
                headers=AUTH,
                timeout=30,
            )
            hold.set()
            assert held.result().http_response.status_code == 200
        again = ask(int(1.6 * mb), "again")  # answered calls gave their bytes back
    finally:
        hold.set()
        out = gw.stop()
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"] == "1"
    message = refused.value.response.json()["error"]["message"]
    assert "over --body-budget 3000000" in message
    assert small.http_response.status_code == 200
    assert chunked.status_code == 503
    assert again.http_response.status_code == 200
    assert "Traceback" not in out


def test_bodies_declared_and_never_sent_hold_no_budget(oai: openai_server.Server) -> None:
    """Two connections that say a body of 1.5 MB comes and send none held --body-budget (3 MB) for as long
    as they stayed open: every other client got 503s. The budget counts the bytes that came."""
    import socket

    mb = 1_000_000
    args = ("--api-key-env", "GW_KEY", "--max-body", str(2 * mb), "--body-budget", str(3 * mb))
    gw = Gateway(*args, env=_env("openai", oai.base))
    host = gw.base.removeprefix("http://")
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {GATEWAY_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {int(1.5 * mb)}\r\n\r\n"
    ).encode()
    silent = [socket.create_connection(tuple(host.rsplit(":", 1))) for _ in range(2)]  # type: ignore[arg-type]
    try:
        for s in silent:
            s.sendall(head)
        # answered after the two requests above began (each was read before this connection was accepted)
        assert httpx.get(gw.base + "/healthz").status_code == 200
        chat = {"model": "m", "messages": [{"role": "user", "content": "x" * 100_000}]}
        served = httpx.post(gw.base + "/v1/chat/completions", json=chat, headers=AUTH, timeout=30)
    finally:
        for s in silent:
            s.close()
        gw.stop()
    assert served.status_code == 200, served.text


def test_a_request_head_is_bounded_before_the_key_is_checked(oai: openai_server.Server) -> None:
    """httptools reads headers without a bound: one endless header (before any key is checked) grew the
    gateway by its size. Past 64 KiB of request line and headers: 431, and the connection closes. Heads
    under it, one after another on a connection, are served."""
    import socket

    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    host = gw.base.removeprefix("http://")
    try:
        with socket.create_connection(tuple(host.rsplit(":", 1)), timeout=10) as s:  # type: ignore[arg-type]
            # a header that never ends, cut just past the bound (more, unread at the close, resets the
            # connection before the answer is read)
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Long: ".encode() + b"x" * 70_000)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        # a head past the bound that ends within one read (measured whole, not only as it goes on)
        with socket.create_connection(tuple(host.rsplit(":", 1)), timeout=10) as s:  # type: ignore[arg-type]
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Long: {'x' * 70_000}\r\n\r\n".encode())
            whole = b""
            while chunk := s.recv(65536):
                whole += chunk
        long = {"x-long": "x" * 30_000}
        with httpx.Client(base_url=gw.base) as client:  # one connection: the bound is per request
            kept = [client.get("/healthz", headers=long).status_code for _ in range(3)]
    finally:
        gw.stop()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert answer.endswith(b"the request line and headers are over 65536 bytes\n")
    assert whole.startswith(b"HTTP/1.1 431 "), whole[:200]
    assert kept == [200, 200, 200]


def test_a_request_head_must_come_within_the_head_timeout(oai: openai_server.Server) -> None:
    """uvicorn times a connection only after a response: one that sent nothing, or a head a byte at a
    time, was held as long as the client liked (1,100 of them, with no key). --head-timeout bounds the
    head, from the connection and from a kept-alive connection's next head: a 408, and it closes. A body
    is not the head: one sent after the timeout, its head in time, is served."""
    import socket

    gw = Gateway("--api-key-env", "GW_KEY", "--head-timeout", "0.5", env=_env("openai", oai.base))
    host = gw.base.removeprefix("http://")
    address = tuple(host.rsplit(":", 1))

    def answer(s: socket.socket) -> bytes:
        out = b""
        while chunk := s.recv(65536):  # until the gateway closes the connection
            out += chunk
        return out

    chat = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {GATEWAY_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(chat)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(address, timeout=10) as s:  # type: ignore[arg-type]
            silent = answer(s)  # sent nothing at all
        with socket.create_connection(address, timeout=10) as s:  # type: ignore[arg-type]
            s.sendall(head[:20])  # a head begun, never ended
            partial = answer(s)
        with socket.create_connection(address, timeout=10) as s:  # type: ignore[arg-type]
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            first = b""
            while not first.endswith(b'{"status":"ok"}'):  # served whole; then the next head begins and stops
                first += s.recv(65536)
            s.sendall(b"GET /heal")
            kept = answer(s)
        with socket.create_connection(address, timeout=10) as s:  # type: ignore[arg-type]
            s.sendall(head)
            time.sleep(1.0)  # a slow client's body, after its head came in time
            s.sendall(chat)
            slow_body = answer(s)
    finally:
        gw.stop()
    for said in (silent, partial, kept):
        assert said.startswith(b"HTTP/1.1 408 "), said[:200]
        assert said.endswith(b"the request line and headers did not come within 0.5 s\n")
    assert first.startswith(b"HTTP/1.1 200 "), first[:200]
    assert slow_body.startswith(b"HTTP/1.1 200 "), slow_body[:300]


def test_a_head_waiting_behind_a_slow_answer_is_not_timed_and_an_early_answered_body_is(
    oai: openai_server.Server,
) -> None:
    """Two ends of --head-timeout. A head pipelined behind a request still being answered waits unread
    (uvicorn stops reading): timing it sent a 408 over the first answer, billed and recorded. And a
    request answered before its body came (a wrong key) held the connection while the rest of the body
    came a byte at a time: now it closes once the client has taken the timeout."""
    import socket

    gw = Gateway("--api-key-env", "GW_KEY", "--head-timeout", "0.5", env=_env("openai", oai.base))
    host = gw.base.removeprefix("http://")
    address = tuple(host.rsplit(":", 1))
    hold = threading.Event()
    oai.script("lead-model", {"hold": hold, "hold_at": "start", "content": "slow answer"})
    chat = json.dumps({"model": "m", "messages": [{"role": "user", "content": "pipelined"}]}).encode()
    slow = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {GATEWAY_KEY}\r\n"
        f"X-Lwfsm-Session: piped\r\nContent-Type: application/json\r\nContent-Length: {len(chat)}\r\n\r\n"
    ).encode() + chat
    health = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        with socket.create_connection(address, timeout=10) as s:  # type: ignore[arg-type]
            s.sendall(slow)
            s.sendall(health + health[:20])  # one more whole, and one begun behind the slow answer
            time.sleep(1.0)  # twice the timeout while the first answer is owed
            s.sendall(health[20:])
            hold.set()
            got = b""
            while got.count(b"HTTP/1.1 ") < 3 or not got.endswith(b'{"status":"ok"}'):
                chunk = s.recv(65536)
                assert chunk, got  # closed before the three answers
                got += chunk
        refused = b"POST /v1/chat/completions HTTP/1.1\r\nHost: %b\r\nContent-Length: 100000\r\n\r\n{" % host.encode()
        with socket.create_connection(address, timeout=10) as s:  # type: ignore[arg-type]
            s.sendall(refused)  # no key: answered at once, its body not read
            started, answer = time.monotonic(), b""
            with contextlib.suppress(OSError):  # (the close may come as a reset while the client still writes)
                while chunk := s.recv(65536):
                    answer += chunk
                    s.sendall(b" ")  # the rest of the body, a byte at a time
                    time.sleep(0.1)
            held = time.monotonic() - started
    finally:
        hold.set()
        gw.stop()
    assert [line.split(b"\r\n")[0] for line in got.split(b"HTTP/1.1 ")[1:]] == [b"200 OK"] * 3, got[:300]
    assert b"slow answer" in got
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert held < 5, held  # closed after about the timeout, not as long as the client kept writing


def test_the_store_and_trace_files_it_creates_are_its_owner_s_only(oai: openai_server.Server, tmp_path: Path) -> None:
    """Rows and trace lines hold excerpts of tool output and people's messages: created 0644 (the usual
    umask), every user of the machine could read them. The files the gateway creates are 0600, SQLite's
    -wal and -shm too; a file the user made keeps its mode."""
    own = tmp_path / "own.jsonl"
    own.write_text("")
    own.chmod(0o644)
    old = os.umask(0o022)
    try:
        url = f"sqlite:///{tmp_path}/s.db"
        gw = Gateway(
            "--api-key-env",
            "GW_KEY",
            "--store",
            url,
            "--log-dir",
            str(tmp_path / "trace"),
            env=_env("openai", oai.base),
        )
    finally:
        os.umask(old)
    try:
        for text in ("one", "two"):  # the second call judges the first: a trace line
            assert _chat(gw, "perm", text).status_code == 200
        made = [tmp_path / "s.db", tmp_path / "s.db-wal", tmp_path / "s.db-shm", *(tmp_path / "trace").glob("*.jsonl")]
    finally:
        gw.stop()  # (a last connection closed may remove -wal and -shm: looked at before)
    assert len(made) == 4, made
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in made} == {p.name: "0o600" for p in made}
    assert oct((tmp_path / "trace").stat().st_mode & 0o777) == "0o700"  # its file names hold session ids
    from lwfsm.turn.core import append_record

    assert append_record(own, {"x": 1}) is None
    assert oct(own.stat().st_mode & 0o777) == "0o644"


def test_an_upstream_answer_past_64_mib_is_refused_not_held() -> None:
    """A hostile or broken upstream: 65 KB of gzip that expands to 65 MiB (a whole body, an SSE stream
    that never ends a line) took the gateway's memory with it and was stored whole in the conversation's
    row. Past 64 MiB it is a 502, or the protocol's error event, and nothing is recorded. Every event of
    a stream whose lines come in many pieces still reaches the client whole."""
    import gzip

    bomb = gzip.compress(b"x" * (65 << 20))
    pieces = [
        b'data: {"id": "c", "object": "chat.completion.chunk", "model": "u", "choices": [{"index": 0, ',
        b'"delta": {"content": "he',
        b'llo"}, "finish_reason": "stop"}]}\n',
        b"\n",
        b"data: [DONE]\n\n",
    ]

    class Hostile(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            whole = body["messages"][-1]["content"] == "in pieces"
            self.send_header("content-type", "text/event-stream" if body.get("stream") else "application/json")
            if whole:  # a stream whose lines come in pieces: chunked, one piece a chunk
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for piece in pieces:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    gw = Gateway("--api-key-env", "GW_KEY", env={**_env("openai", base), "LWFSM_LEAD_API_BASE": base})
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    try:
        whole = httpx.post(
            gw.base + "/v1/chat/completions", json=chat, headers={**AUTH, "x-lwfsm-session": "b"}, timeout=60
        )
        streamed = httpx.post(
            gw.base + "/v1/chat/completions",
            json={**chat, "stream": True},
            headers={**AUTH, "x-lwfsm-session": "s"},
            timeout=60,
        )
        pieced = httpx.post(
            gw.base + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "in pieces"}], "stream": True},
            headers={**AUTH, "x-lwfsm-session": "whole"},
            timeout=60,
        )
        listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    finally:
        out = gw.stop()
        httpd.shutdown()
        httpd.server_close()
    said = "the lead upstream's answer is over 64 MiB; nothing was recorded"
    assert whole.status_code == 502
    assert whole.json()["error"]["message"] == said
    assert said in streamed.text  # an error event after the headers
    assert [s["id"].rsplit(".", 1)[1] for s in listed] == ["whole"]  # nothing of the others recorded
    assert b"".join(pieces) in pieced.content  # the events as they came, whole
    assert "over 64 MiB" in out


def test_an_upstream_s_cookies_and_content_type_do_not_reach_the_client() -> None:
    """A 200's headers went to the client as the upstream sent them: its cookies, and `text/html` over a
    JSON body whose model words hold a <script>. The client gets the type the gateway read (JSON, or an
    event stream) and no cookie; the upstream's other headers (request ids) still come."""
    words = "<script>fetch('/lwfsm/sessions')</script>"
    reply = {
        "id": "c",
        "object": "chat.completion",
        "model": "u",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": words}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "u",
        "choices": [{"index": 0, "delta": {"content": words}, "finish_reason": "stop"}],
    }

    class Hostile(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            refused = body["messages"][-1]["content"] == "refuse"
            data = (
                f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
                if body.get("stream")
                else json.dumps({"error": {"message": words}} if refused else reply).encode()
            )
            self.send_response(429 if refused else 200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Set-Cookie", "upstream-session=s3cr3t; Path=/")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Upgrade", "h2c")
            self.send_header("X-Request-Id", "req-42")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", base))
    try:
        whole = _chat(gw, "cookie-whole")
        streamed = _chat(gw, "cookie-stream", stream=True)
        refused = _chat(gw, "cookie-refused", "refuse")
    finally:
        gw.stop()
        httpd.shutdown()
        httpd.server_close()
    assert whole.status_code == 200, whole.text
    assert whole.headers["content-type"] == "application/json"
    assert whole.json()["choices"][0]["message"]["content"] == words
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert words in streamed.text
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/json"  # an error relayed: JSON, as read
    for r in (whole, streamed):
        assert "set-cookie" not in r.headers
        assert "access-control-allow-origin" not in r.headers  # no page may read it because the upstream said so
        assert "upgrade" not in r.headers  # hop-by-hop
        assert r.headers["x-request-id"] == "req-42"


@pytest.mark.parametrize("flag", ["store", "connect", "first-byte", "idle"])
def test_a_timeout_of_zero_is_refused_naming_its_flag(flag: str) -> None:
    from lwfsm.errors import ConfigError
    from lwfsm.gateway.serve import build
    from lwfsm.spec import load_spec

    with pytest.raises(ConfigError, match=f"--{flag}-timeout must be more than 0 seconds, got 0"):
        build(
            load_spec("lead_worker"), store="memory://", mock=True, env={}, **{flag.replace("-", "_") + "_timeout": 0}
        )


def test_a_body_budget_below_the_largest_body_is_refused() -> None:
    from lwfsm.errors import ConfigError
    from lwfsm.gateway.serve import build
    from lwfsm.spec import load_spec

    with pytest.raises(ConfigError, match="--body-budget 1000 is less than --max-body 2000"):
        build(load_spec("lead_worker"), store="memory://", mock=True, env={}, max_body=2000, body_budget=1000)


def test_a_newline_in_a_session_id_cannot_forge_a_report_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwfsm.cli import main

    forged = "s1\nforged           99  lead 99"
    path = tmp_path / "t.jsonl"
    lines = [{"session": forged, "turn": 1, "role": "lead", "model": "gpt-4o", "outcome": "turn_completed"}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert not any(line.startswith("forged") for line in out.splitlines())
    assert "s1\\nforged" in out


def test_a_turn_that_cannot_be_written_is_not_acknowledged() -> None:
    """Every write conflicting (another call always first): a 503 naming the store, not a 200 for a turn
    nobody recorded."""
    from starlette.testclient import TestClient

    from lwfsm.gateway.serve import build
    from lwfsm.spec import load_spec

    app = build(load_spec("lead_worker"), store="memory://", mock=True, env={})
    store = app.state.gateway.store
    store.write = lambda key, expected, row, wait=True: False  # type: ignore[method-assign]
    body = {"model": "lwfsm", "messages": [{"role": "user", "content": "fix the bug"}]}
    with TestClient(app, base_url="http://127.0.0.1") as http:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 503
    assert "conflicted" in r.json()["error"]["message"]
    assert "memory://" in r.json()["error"]["message"]
    assert store.list() == []


def test_a_body_is_read_as_json_reads_it_and_its_key_is_its_messages() -> None:
    from lwfsm.gateway.intake import parse

    traffic = Path(__file__).parent / "agent_traffic"
    bodies = [r["body"] for f in traffic.glob("*.json") for r in json.loads(f.read_text()) if r["body"]]
    assert len(bodies) > 20
    for body in bodies:
        plain = json.dumps(body).encode()
        parsed, key = parse(plain)
        assert parsed == json.loads(plain)
        assert (key is None) == ("messages" not in body)
        # other spacing, and UTF-16 (which only json reads): the same messages, the same key
        assert parse(json.dumps(body, indent=2, ensure_ascii=False).encode("utf-16")) == (parsed, key)
    messages = [{"role": "user", "content": "h\u00e9 \ud800"}]  # a lone surrogate is kept as json keeps it
    parsed, key = parse(json.dumps({"model": "a", "messages": messages}).encode())
    assert parsed["messages"] == messages
    assert key is not None
    assert parse(json.dumps({"messages": messages, "stream": True, "messages ": 1}).encode())[1] == key
    assert parse(json.dumps({"messages": [*messages, {"role": "user", "content": "more"}]}).encode())[1] != key
    big = parse(b'{"messages": [{"role": "user", "content": "x", "n": 123456789012345678901234567890}]}')
    assert big[0]["messages"][0]["n"] == 1.2345678901234568e29  # beyond 64 bits: a double, as JavaScript reads it
    assert big[1] is not None
    assert big[1] != parse(b'{"messages": [{"role": "user", "content": "x", "n": 1}]}')[1]
    assert parse(b'{"messages": [1], "messages": [2]}') == ({"messages": [2]}, parse(b'{"messages":[2]}')[1])
    # not JSON: an upstream, or the gateway writing its answer, would refuse them after a paid call
    refused = ((b"NaN", "NaN is not a JSON number"), (b"-Infinity", "-Infinity is not"), (b"1e400", "beyond"))
    for word, says in (*refused, (b"1" + b"0" * 400, "beyond what a JSON number may hold")):
        with pytest.raises(ValueError, match=says):
            parse(b'{"messages": [{"role": "user", "content": "x"}], "temperature": ' + word + b"}")
    # what orjson refuses and json reads (a lone surrogate) is written back by json: its own digest
    keys = {parse(b'{"messages": [{"role": "user", "x": "' + x + b'"}]}')[1] for x in (b"\\ud800", b"a")}
    assert len(keys) == 2
    deep = b'{"messages": [' + b"[" * 300 + b"]" * 300 + b"]}"  # deeper than orjson writes
    assert parse(deep)[1] is not None
    for bad in (b"", b'{"a": 1', b'{"a": 1,}', b'{"a" 1}', b'{"a": 1} x', b"{a: 1}", b"\xff{}"):
        with pytest.raises(ValueError, match="Expecting|Extra data|decode|trailing comma"):  # json's own words
            parse(bad)
    assert parse(b"[1]") == ([1], None)  # not an object: the caller says so
    assert parse(b" {\n} ") == ({}, None)


def test_tools_sent_again_are_read_once_and_a_body_still_reads_as_json_reads_it() -> None:
    from lwfsm.gateway.intake import _Tools

    tools = [{"type": "function", "function": {"name": f"t{i}", "description": "d" * 200}} for i in range(12)]
    other = [{**tools[0], "function": {"name": "other", "description": "e" * 3000}}]

    def body(n: int, **more: Any) -> dict[str, Any]:
        return {"model": "m", "messages": [{"role": "user", "content": f"step {n}"}], "tools": tools, **more}

    def read(cache: _Tools, data: dict[str, Any] | bytes, **dumps: Any) -> Any:
        raw = data if isinstance(data, bytes) else json.dumps(data, **dumps).encode()
        got = cache.parse(raw)
        if got is None:
            got = json.loads(raw)
            cache.learn(raw, got.get("tools"))
        assert got == json.loads(raw)
        return got

    for dumps in ({"separators": (",", ":")}, {}):  # as JavaScript and httpx write JSON; json's default
        cache = _Tools()
        first = read(cache, body(0), **dumps)
        assert cache.parse(json.dumps(body(1), **dumps).encode())["tools"] is first["tools"]  # read once
    cache = _Tools()
    read(cache, body(0))
    # not the body's own tools, or not these tools: read whole
    nested = {"model": "m", "messages": [{"role": "user", "content": "x", "tools": tools}], "tools": other}
    assert cache.parse(json.dumps(nested).encode()) is None
    read(cache, nested)
    twice = b'{"tools": ' + json.dumps(tools).encode() + b', "messages": [], "tools": []}'
    assert read(cache, twice)["tools"] == []
    # a string in `tools` where known tools stand nested (the stub, random, is no string a client can know)
    for text in ("\u0000lwfsm-tools", cache.stub.upper(), "[]"):
        escaped = json.dumps(text).replace(text[:2], text[:1] + f"\\u{ord(text[1]):04x}")
        sent = b'{"metadata": {"tools": ' + json.dumps(tools).encode() + b'}, "tools": ' + escaped.encode() + b"}"
        assert read(cache, sent)["tools"] == text
        twice = b'{"tools": ' + json.dumps(tools).encode() + b', "tools": ' + escaped.encode() + b"}"
        assert read(cache, twice)["tools"] == text
    assert read(cache, body(3, tools=tools[:-1]))["tools"] == tools[:-1]
    # written otherwise (indented): read whole every time, and not looked for again
    cache = _Tools()
    read(cache, body(0), indent=1)
    assert cache.parse(json.dumps(body(1), indent=1).encode()) is None
    assert len(cache.odd) == 1
    for i in range(20):  # bounded, whatever a client sends
        read(cache, body(i, tools=[{**tools[0], "n": i, "x": "y" * 3000}]))
    assert len(cache.known) == _Tools.KEEP
    read(cache, body(0, tools=[{}] * (_Tools.MOST // 3)))  # over 1 MiB written: not kept
    assert all(len(text) <= _Tools.MOST for text in cache.known)
    # the last used is kept longest: tools 12 (the oldest kept, used again now) outlive 13..19
    used = json.dumps(body(0, tools=[{**tools[0], "n": 12, "x": "y" * 3000}])).encode()
    assert cache.parse(used) is not None
    for i in range(20, 27):
        read(cache, body(i, tools=[{**tools[0], "n": i, "x": "y" * 3000}]))
    assert cache.parse(used) is not None


def test_the_tools_litellm_gets_are_a_copy_equal_to_them() -> None:
    from lwfsm.gateway.translate import _copied

    for tools in (
        [{"type": "function", "function": {"name": "t", "parameters": {"type": "object", "x": [1.5, None, "é"]}}}],
        [{"n": 2**70}],  # beyond what orjson writes: deep-copied
        [{"s": "\ud800"}],
    ):
        got = _copied(tools)
        assert got == tools
        assert got is not tools
        assert got[0] is not tools[0]


def test_a_messages_call_translated_for_a_chat_upstream_tries_each_role_once(oai: openai_server.Server) -> None:
    """The gateway moves between roles itself: LiteLLM (and the OpenAI SDK it calls through) retries
    nothing more, so a Messages client meets a failing upstream as a Chat client does (once, its error)."""
    anthropic = pytest.importorskip("anthropic", reason="needs the anthropic SDK: pip install anthropic")
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    client = anthropic.Anthropic(base_url=gw.base, api_key=GATEWAY_KEY, max_retries=0)
    try:
        oai.requests.clear()
        oai.script("lead-model", {"status": 500, "body": {"error": {"message": "upstream exploded"}}})
        with pytest.raises(anthropic.APIStatusError, match="upstream exploded") as raised:
            client.messages.create(
                model="m",
                max_tokens=50,
                messages=[{"role": "user", "content": "go"}],
                extra_headers={"x-lwfsm-session": "once"},
            )
        calls = [r["model"] for r in oai.requests]
    finally:
        gw.kill()
    assert raised.value.status_code == 500
    assert calls == ["lead-model"]  # before: LiteLLM called it again, and the second answer reached the client


def test_a_translated_call_answered_200_with_no_reply_is_a_502_and_records_nothing(
    oai: openai_server.Server,
) -> None:
    """A Chat upstream answering 200 with a page, or JSON of no reply, to a Messages client: LiteLLM read
    it as an empty reply (streamed: an empty message, `end_turn`), recorded as a turn. An empty reply the
    upstream did send (llama.cpp streams one without usage) is still a reply."""
    anthropic = pytest.importorskip("anthropic", reason="needs the anthropic SDK: pip install anthropic")
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    client = anthropic.Anthropic(base_url=gw.base, api_key=GATEWAY_KEY, max_retries=0)
    ask = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "go"}]}
    try:
        for n, body in enumerate(({"choices": "nope"}, "<html>a web page</html>")):
            for stream in (True, False):
                oai.script("lead-model", {"whole": True, "body": body})
                with pytest.raises(anthropic.APIStatusError, match="answered 200 with no reply in it") as raised:
                    client.messages.create(**ask, stream=stream, extra_headers={"x-lwfsm-session": f"no-{n}-{stream}"})
                assert raised.value.status_code == 502
        garbage = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
        oai.script("lead-model", {"content": "", "no_usage": True})
        with client.messages.stream(**ask, extra_headers={"x-lwfsm-session": "empty"}) as stream:
            empty = stream.get_final_message()
        recorded = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    finally:
        gw.kill()
    assert garbage == []
    assert empty.stop_reason == "end_turn"
    assert [s["session"] for s in recorded] == ["empty"]


def test_a_translated_call_keeps_the_gateways_upstream_timeouts(oai: openai_server.Server) -> None:
    """A Messages client served by a Chat upstream through LiteLLM: LiteLLM's own timeout (600 s) had
    replaced --first-byte-timeout and --idle-timeout, so a silent upstream held the client 15 s."""
    anthropic = pytest.importorskip("anthropic", reason="needs the anthropic SDK: pip install anthropic")
    args = ("--api-key-env", "GW_KEY", "--first-byte-timeout", "0.5", "--idle-timeout", "0.5")
    gw = Gateway(*args, env=_env("openai", oai.base))
    client = anthropic.Anthropic(base_url=gw.base, api_key=GATEWAY_KEY, max_retries=0, timeout=30)
    ask = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "go"}]}
    hold = threading.Event()
    try:
        # the gateway's first translated call imports LiteLLM (seconds on a busy machine): not the bound timed
        client.messages.create(**ask, extra_headers={"x-lwfsm-session": "warm"})
        for stream in (False, True):
            oai.script("lead-model", {"hold": hold, "hold_at": "start"})
            started = time.monotonic()
            with pytest.raises(anthropic.APIStatusError, match=r"no answer within 0\.5 s \(--first-byte-timeout"):
                client.messages.create(**ask, stream=stream, extra_headers={"x-lwfsm-session": f"silent-{stream}"})
            took = time.monotonic() - started
            assert took < 10, took  # not the 10 s the upstream holds its answer
        # an upstream's own 408 at once is its answer, not the gateway's bound running out
        for model in ("lead-model", "worker-model"):
            oai.script(model, {"status": 408, "body": {"error": {"message": "upstream says: request timeout"}}})
        with pytest.raises(anthropic.APIStatusError, match="upstream says: request timeout") as own:
            client.messages.create(**ask, extra_headers={"x-lwfsm-session": "own-408"})
    finally:
        hold.set()
        gw.kill()
    assert own.value.status_code == 408


_REDIRECTED = {
    "messages": {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]},
    "chat/completions": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "responses": {"model": "m", "input": "hi"},
}


@pytest.mark.parametrize("upstream", ["anthropic", "openai"])
def test_an_upstream_redirect_is_not_followed_with_the_key(upstream: str) -> None:
    """A 307 from the role's upstream sent the request, x-api-key and all, to the host it named (aiohttp
    drops Authorization across origins, not Anthropic's x-api-key; LiteLLM's clients, on the translated
    paths, follow redirects). Now no redirect is followed on any path: an error, and nothing sent there.
    One gateway per upstream serves every client protocol, streamed and not (a gateway start with
    LiteLLM costs seconds)."""
    seen: list[dict[str, str]] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            seen.append(dict(self.headers))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    catcher = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    there = f"http://localhost:{catcher.server_address[1]}/v1/messages"

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(307)
            self.send_header("location", there)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (catcher, redirector):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{redirector.server_address[1]}" + ("/v1" if upstream == "openai" else "")
    # the OpenAI-compatible upstream is reached only by translation (from Messages); Anthropic's by all three
    endpoints = list(_REDIRECTED) if upstream == "anthropic" else ["messages"]
    gw = Gateway("--api-key-env", "GW_KEY", env=_env(upstream, base))
    answers = {}
    try:
        for endpoint in endpoints:
            for stream in (False, True):
                answers[endpoint, stream] = httpx.post(
                    gw.base + "/v1/" + endpoint,
                    json={**_REDIRECTED[endpoint], "stream": stream},
                    headers={"x-api-key": GATEWAY_KEY, "x-lwfsm-session": f"{endpoint}-{stream}"},
                    timeout=60,
                )
    finally:
        out = gw.stop()
        for server in (catcher, redirector):
            server.shutdown()
            server.server_close()
    assert seen == []  # the key went nowhere else
    for (endpoint, stream), r in answers.items():
        assert r.status_code == 502, (endpoint, stream, r.text)  # LiteLLM's streams too: nothing had been sent
        said = r.json()["error"]["message"]
        assert "redirected (307 to http://localhost:" in said, (endpoint, stream, said)
        assert "the gateway follows no redirect" in said, (endpoint, stream, said)
    assert LEAD_KEY not in out


def test_the_operators_temperature_wins_over_the_clients_on_every_path() -> None:
    """LWFSM_LEAD_TEMPERATURE=0.2: the same-protocol path sent the client's own temperature instead (the
    translated path applied the operator's), so a client overrode the operator's binding."""
    oai = openai_server.Server()  # its own: the module's server keeps steps other tests left
    gw = Gateway("--api-key-env", "GW_KEY", env={**_env("openai", oai.base), "LWFSM_LEAD_TEMPERATURE": "0.2"})
    try:
        r = _chat(gw, "temp", temperature=1.0)
        assert r.status_code == 200, r.text
    finally:
        gw.stop()
        oai.close()
    assert oai.requests[-1]["temperature"] == 0.2


def _answering(status: int, body: bytes, session: str) -> tuple[httpx.Response, str]:
    """One Chat call through a gateway whose upstream answers every call with `status` and `body`: the
    client's response and the gateway's output."""

    class Fixed(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Fixed)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", f"http://127.0.0.1:{upstream.server_address[1]}/v1"))
    try:
        r = _chat(gw, session)
    finally:
        out = gw.stop()
        upstream.shutdown()
        upstream.server_close()
    return r, out


def test_an_upstream_answer_nested_too_deeply_is_a_502_not_a_crash() -> None:
    """An upstream's 100,000-deep JSON answer raised RecursionError in the gateway: a 500 and a logged
    traceback. It is an answer the gateway cannot read, said as such."""
    r, out = _answering(200, b"[" * 100_000 + b"]" * 100_000, "deep")
    assert r.status_code == 502, r.text
    assert "RecursionError" not in out


def test_a_key_an_upstream_spells_with_json_escapes_is_redacted() -> None:
    """An upstream's 400 naming the key with its characters escaped (sk\\u002d...) reached the client as
    it came: redaction matched the key's exact bytes only."""
    spelt = "".join(f"\\u{ord(c):04x}" if c in "-_" else c for c in LEAD_KEY)
    said = '{"error": {"message": "invalid key: ' + spelt + '", "type": "invalid_request_error"}}'
    r, out = _answering(400, said.encode(), "spelt")
    assert spelt != LEAD_KEY  # the key has characters the upstream escaped
    assert r.status_code == 400
    assert json.loads(r.content)["error"]["message"] == "invalid key: [redacted]"
    assert LEAD_KEY not in out
