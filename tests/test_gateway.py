"""The gateway as a server: `lwfsm serve` in a real uvicorn process on a free port, fake upstream
model servers on 127.0.0.1, and the official `openai` and `anthropic` SDKs as clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from lwfsm.gateway.codec import CODECS  # noqa: E402
from lwfsm.gateway.codec.common import with_model  # noqa: E402
from lwfsm.gateway.codec.messages import anthropic_messages  # noqa: E402
from lwfsm.gateway.identity import identify  # noqa: E402

from . import anthropic_server, openai_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_KEY = "gw-key-0123456789"
LEAD_KEY, WORKER_KEY = "lead-secret-0123456789", "worker-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """`lwfsm serve` as a subprocess; ready once /v1/models answers."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        if "--store" not in args:
            args = (*args, "--store", "memory://")  # the default is an SQLite file in the working directory
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lwfsm", "serve", *args, "--port", str(self.port)],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a process group: `kill` ends its --workers too, which hold stdout open
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                httpx.get(self.base + "/v1/models", headers={"x-api-key": GATEWAY_KEY}, timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)  # polling for readiness, not for a timing

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        return out or ""

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.communicate()

    def control(self, method: str, path: str) -> httpx.Response:
        return httpx.request(method, self.base + path, headers={"authorization": f"Bearer {GATEWAY_KEY}"}, timeout=10)


@pytest.fixture(scope="module")
def oai() -> Iterator[openai_server.Server]:
    server = openai_server.Server()
    yield server
    server.close()


@pytest.fixture(scope="module")
def ant() -> Iterator[anthropic_server.Server]:
    server = anthropic_server.Server()
    yield server
    server.close()


def _env(kind: str, base: str) -> dict[str, str]:
    return {
        "LWFSM_LEAD_MODEL": f"{kind}/lead-model",
        "LWFSM_WORKER_MODEL": f"{kind}/worker-model",
        "LWFSM_LEAD_API_BASE": base,
        "LWFSM_WORKER_API_BASE": base,
        "LWFSM_LEAD_API_KEY_ENV": "LEAD_KEY",
        "LWFSM_WORKER_API_KEY_ENV": "WORKER_KEY",
        "LEAD_KEY": LEAD_KEY,
        "WORKER_KEY": WORKER_KEY,
        "GW_KEY": GATEWAY_KEY,
    }


@pytest.fixture(scope="module")
def oai_gateway(oai: openai_server.Server) -> Iterator[Gateway]:
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    yield gw
    gw.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)


@pytest.fixture(scope="module")
def ant_gateway(ant: anthropic_server.Server) -> Iterator[Gateway]:
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("anthropic", ant.base))
    yield gw
    gw.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)


# The scripted coding conversation. Each row: what the agent sends before call N (after reply N-1),
# whether call N streams, and which role must serve call N (default spec: lead_turns 3,
# failure_threshold 2, fallback_turns 2).
ROLES = ["lead", "lead", "lead", "worker", "worker", "lead", "lead", "worker", "worker", "worker", "worker", "worker"]
STATES = [
    "lead_initial",
    "lead_initial",
    "lead_initial",
    "worker",
    "worker",
    "fallback",
    "fallback",
    "recovery",
    "recovery",
    "worker",
    "worker",
    "worker",
]
STREAMED = {3, 6, 9, 12}


def _openai_script(oai: openai_server.Server) -> None:
    def call(n: int, name: str, args: str) -> dict[str, Any]:
        return {"tool_calls": [{"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": args}}]}

    # lead serves calls 1, 2, 3, 6, 7; the worker 4, 5, 8, 9, 10, 11, 12
    oai.script("lead-model", call(1, "read_file", '{"path": "parser.py"}'), {}, call(3, "run_tests", "{}"))
    oai.script("lead-model", call(6, "edit_file", '{"path": "parser.py", "patch": "fix"}'), {})
    oai.script("worker-model", call(4, "run_tests", "{}"), {})
    oai.script("worker-model", call(8, "edit_file", '{"path": "parser.py", "patch": '), {})  # malformed
    oai.script("worker-model", call(10, "run_tests", "{}"), {}, {})


def _reactions_openai(n: int, reply: dict[str, Any]) -> list[dict[str, Any]]:
    """What the agent sends after reply n (1-based): tool results or the user's word."""
    calls = reply.get("tool_calls") or []
    tool = lambda text: [{"role": "tool", "tool_call_id": calls[0]["id"], "content": text}]  # noqa: E731
    return {
        1: lambda: tool("def parse(): ..."),
        2: lambda: [{"role": "user", "content": "Good. Run the tests."}],
        3: lambda: tool("12 passed"),
        4: lambda: tool("Traceback (most recent call last):\n  File 'parser.py'\nAssertionError"),
        5: lambda: [{"role": "user", "content": "That's wrong, the bug is in tokenize()."}],
        6: lambda: tool("patched"),
        7: lambda: [{"role": "user", "content": "Looks right. Go on."}],
        8: lambda: tool("could not apply the patch"),
        9: lambda: [{"role": "user", "content": "Fine, continue."}],
        10: lambda: tool("12 passed"),
        11: lambda: [{"role": "user", "content": "Great, thanks."}],
    }[n]()


TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
    for n in ("read_file", "run_tests", "edit_file")
]


HANDOFF = "[lwfsm handoff"  # how the shipped specs' notes begin


def _messages_text(raw: bytes) -> str:
    """A request's messages array as it was written, without its closing bracket."""
    text = raw.decode()
    start = text.index("[", text.index('"messages"'))
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start : end - 1]


def _check_handoffs(protocol: str, raws: list[bytes]) -> dict[int, str]:
    """The 12 upstream requests of the scripted conversation (fallback at call 6, recovery at call 8):
    a handoff note in exactly the first lead call after the fallback and the first worker call after
    recovery, last, with the failed turns' evidence; the previous call's messages an unchanged byte
    prefix of the call carrying it. Returns the notes by call."""
    bodies = [json.loads(r) for r in raws]
    assert [n for n, b in enumerate(bodies, 1) if HANDOFF in json.dumps(b)] == [6, 8]
    notes = {}
    for n in (6, 8):
        last = bodies[n - 1]["messages"][-1]
        assert last["role"] == "user"
        notes[n] = last["content"] if protocol == "openai" else last["content"][-1]["text"]
        assert notes[n].startswith(HANDOFF)
        assert len(notes[n]) <= 2000
        # The cached prefix: every message of the previous call, byte for byte.
        assert _messages_text(raws[n - 1]).startswith(_messages_text(raws[n - 2]))
        if protocol == "openai":  # the note's message is the only thing added, at the very end
            added = b"," + json.dumps({"role": "user", "content": notes[n]}).encode()
            assert raws[n - 1].count(added) == 1
            assert json.loads(raws[n - 1].replace(added, b""))["messages"] == bodies[n - 1]["messages"][:-1]
            assert _messages_text(raws[n - 1]).endswith(added.decode())
    # Fallback: the lead is told to re-check the worker's work, and why (turns 4 and 5 failed).
    assert "re-run the tests yourself" in notes[6]
    assert "- turn 4 (worker): task failure" in notes[6]
    assert "- turn 5 (worker): user correction" in notes[6]
    # Recovery: the worker is told why the lead was called in, and what to watch.
    assert "You (worker) are taking the task back" in notes[8]
    assert "- turn 4 (worker): task failure" in notes[8]
    assert "- turn 5 (worker)" in notes[8]
    return notes


def _check_switches(seen: list[tuple[str, str, str, str]], lead: str, worker: str) -> None:
    assert [s[0] for s in seen] == [str(n) for n in range(1, 13)]  # x-lwfsm-turn
    assert [s[1] for s in seen] == STATES
    assert [s[2] for s in seen] == ROLES
    assert [s[3] for s in seen] == [lead if r == "lead" else worker for r in ROLES]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from .redis_server import redis_server

    yield from redis_server()


from .redis_server import PASSWORD  # noqa: E402


def test_openai_sdk_conversation_through_fallback_and_recovery_with_a_restart(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    args = ("--api-key-env", "GW_KEY", "--store", f"sqlite:///{tmp_path}/sessions.db")
    gateways = [Gateway(*args, env=_env("openai", oai.base))]

    def pick(n: int) -> Gateway:
        if n == 6:  # kill the gateway mid-conversation; a new one on the same store continues it
            gateways[0].kill()
            gateways[0] = Gateway(*args, env=_env("openai", oai.base))
        return gateways[0]

    _openai_conversation(oai, pick)
    # A Responses API call keeps its response in a space of its own, not among the conversations.
    r = httpx.post(
        gateways[0].base + "/v1/responses", json={"model": "m", "input": "hi"}, headers={"x-api-key": GATEWAY_KEY}
    )
    assert r.status_code == 200
    _check_logs(gateways[0].stop())
    # The gateway's rows are lwfsm.store rows: `lwfsm sessions` reads them, and restores them under the spec.
    store = args[-1]
    listed = _lwfsm("sessions", "list", "--store", store)
    assert "Responses API chain" not in listed
    (line,) = [x for x in listed.splitlines() if "fix-parser" in x]
    assert line.split()[1:] == ["12", "lead_worker", "v1", "worker", "11"]  # version, spec, state, turns
    key = line.split()[0]
    shown = json.loads(_lwfsm("sessions", "show", key, "--store", store, "--spec", "lead_worker"))
    assert shown["last_call"].startswith("m:")  # the one idempotency key (lwfsm.turn.loop): the messages
    assert shown["state"]["pending"]["turn"] == 12


def test_a_row_that_is_not_a_conversation_is_a_clear_503(oai: openai_server.Server, tmp_path: Path) -> None:
    from lwfsm.store import open_store
    from lwfsm.store.base import Row

    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url)
    assert store.write("anon.someone-elses", 0, Row("a row another program wrote", 1))
    store.close()
    gw = Gateway("--store", url, env=_env("openai", oai.base))
    try:
        r = httpx.post(
            gw.base + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-lwfsm-session": "someone-elses"},
        )
    finally:
        out = gw.stop()
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert "not an lwfsm session" in message
    assert "nothing was overwritten" in message
    assert "Traceback" not in out
    assert open_store(url).read("anon.someone-elses") == Row("a row another program wrote", 1)


def _lwfsm(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lwfsm", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_probes_answer_without_the_key_and_call_no_upstream(oai: openai_server.Server, oai_gateway: Gateway) -> None:
    seen = len(oai.requests)
    health = httpx.get(oai_gateway.base + "/healthz", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = httpx.get(oai_gateway.base + "/readyz", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})  # no spec or store told without the key
    told = httpx.get(oai_gateway.base + "/readyz", headers={"x-api-key": GATEWAY_KEY}, timeout=10)
    assert (told.status_code, told.json()) == (200, {"status": "ready", "spec": "lead_worker", "store": "memory://"})
    assert len(oai.requests) == seen
    # the key is still needed everywhere else
    assert httpx.get(oai_gateway.base + "/v1/models", timeout=10).status_code == 401


def test_two_gateways_sharing_redis_serve_one_conversation_alternately(
    oai: openai_server.Server, redis_url: str
) -> None:
    args = ("--api-key-env", "GW_KEY", "--store", redis_url + "?prefix=gw-test:")
    a, b = Gateway(*args, env=_env("openai", oai.base)), Gateway(*args, env=_env("openai", oai.base))
    try:
        _openai_conversation(oai, lambda n: a if n % 2 else b)  # calls 1, 3, 5... on a; 2, 4, 6... on b
    finally:
        out = a.stop() + b.stop()
    _check_logs(out)
    assert PASSWORD not in out


def test_two_worker_processes_on_one_sqlite_file_serve_one_conversation(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    gw = Gateway(
        "--api-key-env",
        "GW_KEY",
        "--workers",
        "2",
        "--store",
        f"sqlite:///{tmp_path}/s.db",
        env=_env("openai", oai.base),
    )
    try:
        _openai_conversation(oai, lambda n: gw)
    finally:
        out = gw.stop()
    _check_logs(out)


def test_workers_need_a_shared_store(capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm.cli import main

    assert main(["serve", "--workers", "2", "--store", "memory://"]) == 1
    assert "--workers > 1 needs a store the workers share" in capsys.readouterr().err


def test_serve_says_a_taken_port_before_any_banner(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from lwfsm.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--mock", "--store", "memory://", "--port", str(port)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no "lwfsm gateway: ... on http://..." for an address it never had
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use; pick another --port" in err


def test_a_start_that_fails_leaves_no_store_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from lwfsm.cli import main

    db = tmp_path / "s.db"
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["serve", "--mock", "--store", f"sqlite:///{db}", "--port", port]) == 1
    assert main(["serve", "--mock", "--store", f"sqlite:///{db}", "--api-key-env", "NO_SUCH_KEY_VAR"]) == 1
    assert "--api-key-env NO_SUCH_KEY_VAR: that variable is not set" in capsys.readouterr().err
    assert not db.exists()  # an empty database left behind would read as a store with no conversations


def test_serve_without_models_names_the_variables_not_a_python_argument(capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm.cli import main

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LWFSM_", "GOOSE_"))}
    with pytest.MonkeyPatch.context() as mp:
        for k in set(os.environ) - set(env):
            mp.delenv(k)
        assert main(["serve", "--store", "memory://"]) == 1
    err = capsys.readouterr().err
    assert "no model for role 'lead' of spec 'lead_worker': set LWFSM_LEAD_MODEL or GOOSE_LEAD_MODEL" in err
    assert "models=" not in err


def _openai_conversation(oai: openai_server.Server, pick: Any) -> None:
    """The scripted 12-call conversation through the openai SDK; call n goes to the gateway pick(n)."""
    _openai_script(oai)
    before = len(oai.requests)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "The parser test fails; please fix it."},
    ]
    seen, handed = [], []
    for n in range(1, 13):
        gw = pick(n)
        client = openai.OpenAI(
            base_url=gw.base + "/v1",
            api_key=GATEWAY_KEY,
            default_headers={"X-Lwfsm-Session": "fix-parser"},
            max_retries=0,
        )
        if n in STREAMED:
            stream = client.chat.completions.create(
                model="anything", messages=messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}
            )
            headers = stream.response.headers
            chunks = list(stream)
            assert chunks[-1].usage is not None
            assert chunks[-1].usage.total_tokens == 18
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            calls: dict[int, dict[str, Any]] = {}
            for c in chunks:
                for d in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                    slot = calls.setdefault(
                        d.index, {"id": d.id, "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                    slot["function"]["name"] += (d.function.name or "") if d.function else ""
                    slot["function"]["arguments"] += (d.function.arguments or "") if d.function else ""
            reply: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                reply["tool_calls"] = [calls[i] for i in sorted(calls)]
        else:
            raw = client.chat.completions.with_raw_response.create(model="anything", messages=messages, tools=TOOLS)
            headers = raw.headers
            message = raw.parse().choices[0].message
            reply = message.model_dump(exclude_none=True)
        seen.append(
            (headers["x-lwfsm-turn"], headers["x-lwfsm-state"], headers["x-lwfsm-role"], headers["x-lwfsm-model"])
        )
        if "x-lwfsm-handoff" in headers:
            handed.append((n, int(headers["x-lwfsm-handoff"])))
        assert headers["x-lwfsm-session"].endswith(".fix-parser")
        messages.append(reply)
        if n < 12:
            messages += _reactions_openai(n, reply)
    _check_switches(seen, "openai/lead-model", "openai/worker-model")
    notes = _check_handoffs("openai", oai.raw[before:])
    assert handed == [(6, len(notes[6])), (8, len(notes[8]))]
    # The fake upstream saw the lead's and the worker's model names in the right calls ...
    ours = oai.requests[before:]
    assert [r["model"] for r in ours] == ["lead-model" if r == "lead" else "worker-model" for r in ROLES]
    # ... each with its own key, never the gateway's.
    for r, h in zip(ours, oai.headers[before:], strict=True):
        assert h["authorization"] == f"Bearer {LEAD_KEY if r['model'] == 'lead-model' else WORKER_KEY}"
        assert GATEWAY_KEY not in json.dumps(h)
    session = gw.control("GET", f"/lwfsm/sessions/{headers['x-lwfsm-session']}").json()
    by_name = gw.control("GET", "/lwfsm/sessions/fix-parser")  # the client's own name: the 404 says the id
    assert by_name.status_code == 404
    assert f"stored as '{headers['x-lwfsm-session']}' (the gateway puts a tag" in by_name.json()["error"]
    reasons = [(h["turn"], h["outcome"], h["reason"]) for h in session["history"]]
    error_line = "task failure: generic.error_line at message 1, line 1: 'Traceback (most recent call last):'"
    assert reasons[3] == (4, "failure", error_line)
    assert reasons[4][1:] == ("failure", 'user correction: generic.correction at message 1, line 1: "That\'s wrong"')
    assert reasons[7] == (8, "failure", "task failure: malformed.arguments: 'edit_file'")
    assert [o for _, o, _ in reasons].count("failure") == 3
    # The turn that carried a note says so, with its size, in the control API (and the trace).
    carried = {h["turn"]: (h["handoff"], h["handoff_tokens_estimate"]) for h in session["history"] if h["handoff"]}
    assert carried == {6: (notes[6], len(notes[6]) // 4), 8: (notes[8], len(notes[8]) // 4)}
    assert session["state"] == "worker"
    assert session["turn"] == 11
    assert "fallback" in session["diagram"]
    assert "stateDiagram" in session["diagram"]
    assert {(r["role"], r["model"]) for r in session["ledger"]["rows"]} == {
        ("lead", "openai/lead-model"),
        ("worker", "openai/worker-model"),
    }


def _check_logs(out: str) -> None:
    """One line per switch in the gateways' logs, and no key anywhere."""
    assert "lead -> worker" in out
    assert "worker -> lead" in out
    assert LEAD_KEY not in out
    assert WORKER_KEY not in out
    assert GATEWAY_KEY not in out


def _anthropic_script(ant: anthropic_server.Server) -> None:
    def use(name: str, **args: Any) -> dict[str, Any]:
        return {"content": None, "tool_use": [{"name": name, "input": args}]}

    ant.script("lead-model", use("read_file", path="parser.py"), {}, use("run_tests"), use("edit_file", patch="x"), {})
    ant.script(
        "worker-model", use("run_tests"), {}, use("delete_everything"), {}, use("run_tests"), {}, {}
    )  # unknown tool


def _reactions_anthropic(n: int, reply: Any) -> list[dict[str, Any]]:
    uses = [b for b in reply.content if b.type == "tool_use"]

    def tool(text: str, error: bool = False) -> list[dict[str, Any]]:
        block = {"type": "tool_result", "tool_use_id": uses[0].id, "content": [{"type": "text", "text": text}]}
        if error:
            block["is_error"] = True
        return [{"role": "user", "content": [block]}]

    return {
        1: lambda: tool("def parse(): ..."),
        2: lambda: [{"role": "user", "content": "Good. Run the tests."}],
        3: lambda: tool("12 passed"),
        4: lambda: tool("exit status 1", error=True),  # only is_error says it failed
        5: lambda: [{"role": "user", "content": [{"type": "text", "text": "That's wrong, look at tokenize()."}]}],
        6: lambda: tool("patched"),
        7: lambda: [{"role": "user", "content": "Looks right. Go on."}],
        8: lambda: tool("no such tool", error=True),
        9: lambda: [{"role": "user", "content": "Fine, continue."}],
        10: lambda: tool("12 passed"),
        11: lambda: [{"role": "user", "content": "Great, thanks."}],
    }[n]()


ANTHROPIC_TOOLS = [{"name": n, "input_schema": {"type": "object"}} for n in ("read_file", "run_tests", "edit_file")]


def test_anthropic_sdk_conversation_through_fallback_and_recovery(
    ant: anthropic_server.Server, ant_gateway: Gateway
) -> None:
    _anthropic_script(ant)
    before = len(ant.requests)
    client = anthropic.Anthropic(
        base_url=ant_gateway.base,
        api_key=GATEWAY_KEY,
        default_headers={"x-claude-code-session-id": "cc-session-1"},
        max_retries=0,
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "The parser test fails; please fix it."}]
    seen = []
    args: dict[str, Any] = {
        "model": "lwfsm",
        "max_tokens": 1024,
        "system": "You are Claude Code.",
        "tools": ANTHROPIC_TOOLS,
    }
    for n in range(1, 13):
        if n in STREAMED:
            with client.messages.stream(messages=messages, **args) as stream:
                headers = stream.response.headers
                text = "".join(stream.text_stream)
                reply = stream.get_final_message()
            assert text == "".join(b.text for b in reply.content if b.type == "text")
        else:
            raw = client.messages.with_raw_response.create(messages=messages, **args)
            headers, reply = raw.headers, raw.parse()
        seen.append(
            (headers["x-lwfsm-turn"], headers["x-lwfsm-state"], headers["x-lwfsm-role"], headers["x-lwfsm-model"])
        )
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        if n < 12:
            messages += _reactions_anthropic(n, reply)
    _check_switches(seen, "anthropic/lead-model", "anthropic/worker-model")
    notes = _check_handoffs("anthropic", ant.raw[before:])
    ours = ant.requests[before:]
    # Call 6's last user message had a text block: the note is one more; call 8's was a string: the
    # same text becomes the first block. The client's own history holds neither.
    assert ours[5]["messages"][-1]["content"][:-1] == messages[10]["content"]
    assert ours[7]["messages"][-1]["content"] == [
        {"type": "text", "text": "Looks right. Go on."},
        {"type": "text", "text": notes[8]},
    ]
    assert HANDOFF not in json.dumps(messages)
    assert [r["model"] for r in ours] == ["lead-model" if r == "lead" else "worker-model" for r in ROLES]
    for r, h in zip(ours, ant.headers[before:], strict=True):
        assert h["x-api-key"] == (LEAD_KEY if r["model"] == "lead-model" else WORKER_KEY)
        assert "authorization" not in h
    key = headers["x-lwfsm-session"]
    assert key.endswith(".cc-session-1")
    history = ant_gateway.control("GET", f"/lwfsm/sessions/{key}").json()["history"]
    assert [(h["turn"], h["reason"]) for h in history if h["outcome"] == "failure"] == [
        (4, "task failure: claude_code.tool_error_flag at message 1, line 1: 'exit status 1'"),  # is_error alone
        (5, 'user correction: claude_code.correction at message 1, line 1: "That\'s wrong"'),
        (8, "task failure: claude_code.tool_error_flag at message 1, line 1: 'no such tool'"),
    ]


def _oai_client(gw: Gateway, **headers: str) -> Any:
    return openai.OpenAI(base_url=gw.base + "/v1", api_key=GATEWAY_KEY, default_headers=headers, max_retries=0)


def test_sub_agents_and_retries_do_not_move_the_main_conversation(oai_gateway: Gateway) -> None:
    gw, sid = oai_gateway, "main-and-sub"
    main = _oai_client(gw, **{"x-claude-code-session-id": sid})
    first = [{"role": "user", "content": "hello"}]
    r1 = main.chat.completions.with_raw_response.create(model="m", messages=first)
    key = r1.headers["x-lwfsm-session"]
    sub = _oai_client(gw, **{"x-claude-code-session-id": sid, "x-claude-code-agent-id": "explore-1"})
    history = [*first, {"role": "assistant", "content": "hi"}]
    for i in range(4):  # four sub-agent turns, all corrected: its own conversation moves ...
        history += [{"role": "user", "content": f"that's wrong {i}"}]
        r = sub.chat.completions.with_raw_response.create(model="m", messages=history)
        history.append(r.parse().choices[0].message.model_dump(exclude_none=True))
    assert r.headers["x-lwfsm-session"] == key + ".explore-1"
    assert r.headers["x-lwfsm-turn"] == "4"
    assert gw.control("GET", f"/lwfsm/sessions/{key}").json()["turn"] == 0  # ... the main one does not
    # A retried request (the same bytes again) is served, but not counted as a turn.
    body = json.dumps(
        {"model": "m", "messages": [*first, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go"}]}
    )
    h = {"authorization": f"Bearer {GATEWAY_KEY}", "x-claude-code-session-id": sid, "content-type": "application/json"}
    a = httpx.post(gw.base + "/v1/chat/completions", content=body, headers=h)
    b = httpx.post(gw.base + "/v1/chat/completions", content=body, headers=h)
    # The key is the messages': the same ones in a body otherwise written differently are a retry too.
    other = '{ "temperature": 0.5,\n "messages": ' + json.dumps(json.loads(body)["messages"]) + ', "model": "m" }'
    c = httpx.post(gw.base + "/v1/chat/completions", content=other, headers=h)
    assert a.status_code == b.status_code == c.status_code == 200
    assert a.headers["x-lwfsm-turn"] == b.headers["x-lwfsm-turn"] == c.headers["x-lwfsm-turn"] == "2"
    state = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    assert state["turn"] == 1
    assert state["pending"]["turn"] == 2
    assert [r["side_calls"] for r in state["ledger"]["rows"]] == [2]


def test_upstream_errors_reach_the_client_and_never_move_the_machine(
    oai: openai_server.Server, oai_gateway: Gateway
) -> None:
    gw = oai_gateway
    client = _oai_client(gw, **{"x-session-id": "errors"})
    msgs = [{"role": "user", "content": "start"}]
    key = client.chat.completions.with_raw_response.create(model="m", messages=msgs).headers["x-lwfsm-session"]
    before = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    oai.script("lead-model", {"status": 429, "headers": {"Retry-After": "7"}})
    msgs += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "next"}]
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="m", messages=msgs)
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.body["message"] == "scripted 429"  # type: ignore[index]
    oai.script("lead-model", {"status": 500})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=msgs)
    after = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    assert (after["turn"], after["version"], after["state"]) == (before["turn"], before["version"], before["state"])


def test_worker_5xx_is_served_by_the_lead_as_technical_fallback(
    oai: openai_server.Server, oai_gateway: Gateway
) -> None:
    gw = oai_gateway
    client = _oai_client(gw, **{"x-session-id": "tech"})
    gw_key = client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "a"}])
    key = gw_key.headers["x-lwfsm-session"]
    gw.control("POST", f"/lwfsm/sessions/{key}/events/reset")
    for _ in range(3):  # the lead's three initial turns, fired by hand through the control API
        assert gw.control("POST", f"/lwfsm/sessions/{key}/events/turn_completed").status_code == 200
    assert gw.control("GET", f"/lwfsm/sessions/{key}").json()["state"] == "worker"
    oai.script("worker-model", {"status": 503})
    r = client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "b"}])
    assert (r.headers["x-lwfsm-state"], r.headers["x-lwfsm-role"]) == ("worker", "lead")
    assert gw.control("GET", f"/lwfsm/sessions/{key}").json()["state"] == "worker"


def test_an_unreachable_upstream_is_named_alike_through_litellm() -> None:
    nowhere = f"http://127.0.0.1:{_free_port()}"
    env = {**_env("openai", nowhere + "/v1"), "LWFSM_LEAD_API_BASE": f"{nowhere}/v1"}
    gw = Gateway("--api-key-env", "GW_KEY", env=env)
    try:
        r = httpx.post(  # a Messages client: LiteLLM's translation, whose connection error is its 500
            gw.base + "/v1/messages",
            json={"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "a"}]},
            headers={"x-api-key": GATEWAY_KEY},
            timeout=60,
        )
    finally:
        gw.kill()
    assert r.status_code == 502, r.text
    # the connection's own error, not LiteLLM's text around it (it said "InternalServerError ... Connection error.")
    assert r.json()["error"]["message"] == f"lead upstream {nowhere} unreachable: ConnectionRefusedError", r.text


def test_each_error_a_client_gets_is_one_log_line(oai: openai_server.Server) -> None:
    """An agent shows its user "502" or "400"; whoever runs the gateway must see which and why. The worker
    is served on the fast path (OpenAI client) and through LiteLLM (Anthropic client); the lead behind it
    listens nowhere."""
    nowhere = f"http://127.0.0.1:{_free_port()}"
    env = {**_env("openai", oai.base), "LWFSM_LEAD_API_BASE": f"{nowhere}/v1"}
    env["LWFSM_PARAM_LEAD_TURNS"] = "0"
    gw = Gateway("--api-key-env", "GW_KEY", env=env)
    try:
        oai.script("worker-model", {"status": 503})  # then the technical fallback: the unreachable lead
        r = httpx.post(
            gw.base + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "a"}]},
            headers={"x-api-key": GATEWAY_KEY, "x-lwfsm-session": "down"},
            timeout=30,
        )
        assert r.status_code == 502
        oai.script("worker-model", {"status": 400})  # LiteLLM raises BadRequestError
        r = httpx.post(
            gw.base + "/v1/messages",
            json={"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "b"}]},
            headers={"x-api-key": GATEWAY_KEY, "x-lwfsm-session": "refused"},
            timeout=30,
        )
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"  # relayed as what it is, not an API error
        r = httpx.post(gw.base + "/v1/chat/completions", json={"model": "m", "messages": []}, timeout=30)
        assert r.status_code == 401
    finally:
        out = gw.stop()
    errors = [line for line in out.splitlines() if " to the client: " in line]
    assert len(errors) == 3, out
    unreachable, refused, unauthorised = errors
    assert "POST /v1/chat/completions session " in unreachable
    assert f"(lead): 502 to the client: lead upstream {nowhere} unreachable: ClientConnectorError" in unreachable
    assert "POST /v1/messages session " in refused
    assert "(worker): 400 to the client: worker model openai/worker-model: BadRequestError" in refused
    assert "scripted 400" in refused
    assert "401 to the client: missing or wrong gateway key" in unauthorised
    assert WORKER_KEY not in out
    assert LEAD_KEY not in out
    assert GATEWAY_KEY not in out


_DEEP = '{"role": "user", "content": [' * 3000 + "]}" * 3000  # a message nested 6,000 levels deep
BAD_REQUESTS = [
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "a"}, "junk"]}, "'messages[1]'"),
    ("/v1/chat/completions", {"model": "m", "messages": [], "tools": [1]}, "'tools' must be a list of objects"),
    (
        "/v1/chat/completions",
        {"model": "m", "messages": [], "tools": [{"function": 7}]},
        "'function' must be an object",
    ),
    ("/v1/chat/completions", {"model": "m", "messages": [], "stream": "no"}, "'stream' must be true or false"),
    ("/v1/chat/completions", '{"model": "m", "messages": [' + _DEEP + "]}", "nested too deeply"),
    ("/v1/chat/completions", "[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ("/v1/messages", {"model": "m", "max_tokens": 9, "messages": [], "metadata": "x"}, "'metadata' must be an object"),
    ("/v1/messages", {"model": "m", "max_tokens": 9, "messages": [], "tools": {"a": 1}}, "'tools' must be a list"),
    ("/v1/chat/completions", {"model": "m", "messages": []}, "'messages' must hold at least one message"),
    ("/v1/chat/completions", {"model": "m"}, "the request has no 'messages'"),
    # not JSON: the upstream was called (and paid) before the answer failed to be written
    ("/v1/responses", '{"model": "m", "input": "hi", "temperature": 1e999}', "1e999 is beyond what a JSON number"),
    ("/v1/messages", '{"model": "m", "max_tokens": 9, "temperature": NaN, "messages": []}', "NaN is not a JSON"),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "usr", "content": "a"}]}, "'messages[0].role' must"),
    ("/v1/messages", {"model": "m", "max_tokens": 9, "messages": [{"content": "a"}]}, "one of user, assistant"),
    ("/v1/messages", {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [5]}]}, "list of parts"),
    ("/v1/chat/completions", "", "request body is empty: send the request as a JSON object"),
    ("/v1/messages", {"model": "m", "max_tokens": 9, "messages": []}, "'messages' must hold at least one message"),
    # without it LiteLLM's translation raised a TypeError, answered as the upstream's 502 (which SDKs retry)
    ("/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "a"}]}, "'max_tokens' is missing: the"),
    ("/v1/messages", {"model": "m", "max_tokens": "9", "messages": [{"role": "user", "content": "a"}]}, "got '9'"),
    ("/v1/responses", {"model": "m", "input": "hi", "stream": "yes"}, "'stream' must be true or false"),
    ("/v1/responses", {"model": "m", "input": "hi", "previous_response_id": {"a": 1}}, "must be a string"),
    # each was sent on as something else (a call with no messages, no tools) and paid for
    ("/v1/responses", {"model": "m", "input": []}, "'input' holds no item"),
    ("/v1/responses", {"model": "m", "input": [1, 2]}, "'input[0]' must be an item (an object), got int"),
    ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": [5]}]}, "'input[0].content' must be"),
    ("/v1/responses", {"model": "m", "input": "hi", "tools": [{"type": "function", "function": 5}]}, "'tools[0]'"),
    ("/v1/responses", {"model": 5, "input": "hi"}, "'model' must be a string, got int"),
    ("/v1/responses", '{"model": "m", "input": [' + _DEEP + "]}", "nested too deeply"),
    ("/v1/messages", '{"model": "m", "max_tokens": 9, "messages": [' + _DEEP + "]}", "nested too deeply"),
    # an Anthropic tool result in a Chat request: read as no failure (it was judged ok), then a 500
    (
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "Exit code 1"}]},
            ],
        },
        "messages[2] holds Anthropic tool blocks, which a Chat Completions request cannot hold: send Anthropic "
        "Messages requests to /v1/messages",
    ),
]


@pytest.mark.parametrize(("path", "body", "message"), BAD_REQUESTS)
def test_a_malformed_request_is_the_clients_400_and_reaches_no_upstream(
    oai: openai_server.Server, oai_gateway: Gateway, path: str, body: Any, message: str
) -> None:
    before = len(oai.requests)
    data = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(oai_gateway.base + path, content=data, headers={"x-api-key": GATEWAY_KEY}, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error["message"]
    if path == "/v1/messages":  # each protocol's own error shape
        assert r.json()["type"] == "error"
        assert error["type"] == "invalid_request_error"
    assert len(oai.requests) == before


def test_what_the_protocols_allow_passes_the_shape_checks(oai_gateway: Gateway) -> None:
    """The checks that make a client's mistake its 400 let through every shape the APIs take."""
    item_reference = {"id": "msg_abc"}  # the SDK's ItemReference: its type may be left out
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
    calls = [
        ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": "hi"}, item_reference, reasoning]}),
        ("/v1/responses", {"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}),
        (
            "/v1/chat/completions",
            {
                "model": "m",
                "messages": [
                    {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                    {"role": "user", "content": "hi", "name": "ann"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                    },
                    {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "done"}]},
                ],
            },
        ),
    ]
    for path, body in calls:
        r = httpx.post(oai_gateway.base + path, json=body, headers={"x-api-key": GATEWAY_KEY}, timeout=30)
        assert r.status_code == 200, (path, r.text)


def test_session_ids_are_read_as_utf8_and_kept_short(oai_gateway: Gateway) -> None:
    for sid, shown in (("héllo-日本", "héllo-日本"), ("x" * 10_000, "x" * 200 + "…")):
        r = httpx.post(
            oai_gateway.base + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": GATEWAY_KEY, "x-session-id": sid.encode()},  # UTF-8 bytes, as agents send
        )
        assert r.status_code == 200
        session = oai_gateway.control("GET", f"/lwfsm/sessions/{r.headers['x-lwfsm-session']}").json()
        assert session["session"] == shown
        assert len(r.headers["x-lwfsm-session"]) < 64  # the key holds a digest of such an id


def test_control_api_and_security(oai_gateway: Gateway) -> None:
    gw = oai_gateway
    post = lambda path, content, **h: httpx.post(gw.base + path, content=content, headers=h)  # noqa: E731
    bad = post("/v1/chat/completions", b"{not json", authorization=f"Bearer {GATEWAY_KEY}")
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]
    bad = post("/v1/messages", b"[1]", **{"x-api-key": GATEWAY_KEY})
    assert bad.status_code == 400
    assert bad.json()["type"] == "error"
    assert "JSON object" in bad.json()["error"]["message"]
    denied = post("/v1/messages", b"{}", **{"x-api-key": "wrong"})
    assert denied.status_code == 401
    assert denied.json()["error"]["type"] == "authentication_error"
    assert httpx.get(gw.base + "/lwfsm/sessions").status_code == 401
    assert (
        post("/v1/chat/completions", b"x" * (33 * 1024 * 1024), authorization=f"Bearer {GATEWAY_KEY}").status_code
        == 413
    )
    too_large = post("/v1/messages", b"x" * (33 * 1024 * 1024), **{"x-api-key": GATEWAY_KEY})
    assert (too_large.status_code, too_large.json()["error"]["type"]) == (413, "request_too_large")
    assert too_large.json()["error"]["message"].endswith("bytes (--max-body)")  # what to change
    assert gw.control("GET", "/lwfsm/sessions/nope").status_code == 404
    sessions = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    key = sessions[0]["id"]
    unknown = gw.control("POST", f"/lwfsm/sessions/{key}/events/teleport")
    assert unknown.status_code == 404
    assert "turn_completed" in unknown.json()["error"]
    assert gw.control("DELETE", f"/lwfsm/sessions/{key}").status_code == 204
    assert gw.control("GET", f"/lwfsm/sessions/{key}").status_code == 404
    models = _oai_client(gw).models.list()
    assert "lwfsm" in [m.id for m in models.data]


def test_an_upstream_refusing_the_gateways_key_is_not_the_clients_401(
    oai: openai_server.Server, oai_gateway: Gateway
) -> None:
    """A 401 tells a client its own key is wrong: Claude Code then retried for minutes, saying nothing."""
    for path, body in [
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "a"}]}),  # fast path
        ("/v1/messages", {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "a"}]}),  # LiteLLM
    ]:
        oai.script("lead-model", {"status": 401})
        r = httpx.post(oai_gateway.base + path, json=body, headers={"x-api-key": GATEWAY_KEY}, timeout=30)
        assert r.status_code == 502, r.text
        message = r.json()["error"]["message"]
        assert message.startswith("lead upstream http://127.0.0.1:"), message
        assert "refused the gateway's key" in message
        assert message.endswith("check the key in LEAD_KEY (LWFSM_LEAD_API_KEY_ENV names it)")
        assert LEAD_KEY not in r.text


def test_a_route_the_gateway_does_not_serve_is_said_in_the_sdks_shape(oai_gateway: Gateway) -> None:
    import openai

    with pytest.raises(openai.NotFoundError) as info:  # the SDK shows error.message: it names the routes
        _oai_client(oai_gateway).embeddings.create(model="m", input="x")
    assert "no route POST /v1/embeddings; the gateway serves POST /v1/chat/completions" in str(info.value)
    wrong = httpx.get(oai_gateway.base + "/v1/chat/completions", headers={"x-api-key": GATEWAY_KEY})
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["message"] == "GET /v1/chat/completions: this route takes POST"
    assert wrong.json()["error"]["type"] == "invalid_request_error"  # the route exists: not "not found"
    anthropic_shape = httpx.post(oai_gateway.base + "/v1/messages/batches", headers={"x-api-key": GATEWAY_KEY})
    assert anthropic_shape.status_code == 404
    assert anthropic_shape.json()["type"] == "error"
    assert anthropic_shape.json()["error"]["type"] == "not_found_error"
    messages_get = httpx.get(oai_gateway.base + "/v1/messages", headers={"x-api-key": GATEWAY_KEY})
    assert messages_get.status_code == 405
    assert messages_get.json()["error"] == {
        "type": "invalid_request_error",
        "message": "GET /v1/messages: this route takes POST",
    }


def test_a_manual_event_carries_an_operator_s_note_to_the_next_call(
    oai: openai_server.Server, oai_gateway: Gateway
) -> None:
    gw = oai_gateway
    client = _oai_client(gw, **{"x-session-id": "operator-note"})
    msgs = [{"role": "user", "content": "start"}]
    key = client.chat.completions.with_raw_response.create(model="m", messages=msgs).headers["x-lwfsm-session"]
    fire = f"{gw.base}/lwfsm/sessions/{key}/events/reset"
    auth = {"authorization": f"Bearer {GATEWAY_KEY}"}
    for bad in (
        b"[1]",
        b'{"note": 3}',
        b'{"note": ""}',
        b'{"note": "x", "more": 1}',
        b"{no",
        json.dumps({"note": "x" * 2001}).encode(),
    ):
        r = httpx.post(fire, content=bad, headers=auth)
        assert r.status_code == 400, bad
        assert '{"note": "text of 1 to 2000 characters"}' in r.json()["error"]
    assert httpx.post(fire, json={}, headers=auth).status_code == 200  # an HTTP client's empty JSON: no note
    assert gw.control("GET", f"/lwfsm/sessions/{key}").json()["handoff_waiting"] is None
    r = httpx.post(fire, json={"note": "Operator: the CI runner is back; run the full suite."}, headers=auth)
    assert r.status_code == 200
    shown = gw.control("GET", f"/lwfsm/sessions/{key}").json()
    assert shown["handoff_waiting"] == "Operator: the CI runner is back; run the full suite."
    assert shown["history"][-1]["handoff"] == shown["handoff_waiting"]
    before = len(oai.requests)
    msgs += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "next"}]
    first = client.chat.completions.with_raw_response.create(model="m", messages=msgs)
    assert first.headers["x-lwfsm-handoff"] == str(len("Operator: the CI runner is back; run the full suite."))
    msgs += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "and then"}]
    second = client.chat.completions.with_raw_response.create(model="m", messages=msgs)
    assert "x-lwfsm-handoff" not in second.headers
    sent = [r["messages"] for r in oai.requests[before:]]
    assert sent[0] == [*msgs[:3], {"role": "user", "content": "Operator: the CI runner is back; run the full suite."}]
    assert sent[1] == msgs  # delivered once
    assert gw.control("GET", f"/lwfsm/sessions/{key}").json()["handoff_waiting"] is None


def test_a_gateway_without_a_key_answers_no_web_page_and_no_other_name() -> None:
    """Its clients are this machine's, and a page open in its browser is one: a cross-site POST of plain
    text (no preflight) rolled out a page's spec, and a name rebound to 127.0.0.1 read every session."""
    gw = Gateway("--mock", env={})
    spec = (Path(__file__).parent.parent / "specs" / "lead_worker.yaml").read_text()
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    # (the first call through LiteLLM loads it: seconds on a loaded machine, past httpx's 5 s default)
    http = httpx.Client(timeout=60)
    try:
        page = {"origin": "http://evil.example", "content-type": "text/plain"}
        rolled = http.post(gw.base + "/lwfsm/spec", content=spec.replace("version: 1", "version: 666"), headers=page)
        paid = http.post(gw.base + "/v1/chat/completions", content=json.dumps(chat), headers=page)
        port = gw.base.rsplit(":", 1)[1]
        rebound = http.get(gw.base + "/lwfsm/sessions", headers={"host": f"evil.example:{port}"})
        own = http.post(gw.base + "/v1/chat/completions", json=chat, headers={"origin": gw.base})  # its dashboard's
        # another program's page on this machine (a dev server, a notebook) is not the gateway's own
        local = [
            http.post(gw.base + "/v1/chat/completions", content=json.dumps(chat), headers={**page, "origin": o})
            for o in ("http://localhost:3000", gw.base.replace(port, str(int(port) + 1)), "null")
        ]
        named = [http.get(gw.base + "/lwfsm/sessions", headers={"host": f"{h}:{port}"}) for h in ("localhost", "[::1]")]
        served = http.get(gw.base + "/lwfsm/spec").json()
    finally:
        http.close()
        gw.kill()
    for refused in (rolled, paid, rebound, *local):
        assert refused.status_code == 403, refused.text
    assert "answers no page but its own" in rolled.text
    assert "name it 127.0.0.1, ::1 or localhost only" in rebound.text
    assert served["spec"]["version"] == 1  # the page's spec was not rolled out
    assert own.status_code == 200
    assert [r.status_code for r in named] == [200, 200]


def test_mock_mode_runs_offline_through_litellm() -> None:
    gw = Gateway("--mock", env={})
    try:
        client = openai.OpenAI(base_url=gw.base + "/v1", api_key="none", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="x", messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-lwfsm-role"] == "lead"
        assert raw.headers["x-lwfsm-session-confidence"] == "low"
        assert "mock reply" in (raw.parse().choices[0].message.content or "")
        stream = anthropic.Anthropic(base_url=gw.base, api_key="none", max_retries=0).messages.stream(
            model="x", max_tokens=10, messages=[{"role": "user", "content": "hello"}]
        )
        with stream as s:
            assert "mock reply" in "".join(s.text_stream)
        with client.responses.create(model="x", input="hi", stream=True) as stream_r:
            events = list(stream_r)  # a streamed Responses call: LiteLLM's mock stream, translated
        kinds = [e.type for e in events]
        assert kinds[:2] == ["response.created", "response.in_progress"]
        assert "response.output_text.delta" in kinds
        assert kinds[-1] == "response.completed"
        assert "mock reply" in events[-1].response.output_text
        # Each stream's last line, an SSE comment the SDKs skip, is the turn it was recorded as.
        chat = [{"role": "user", "content": "streamed"}]
        with client.chat.completions.with_streaming_response.create(model="x", messages=chat, stream=True) as r:
            assert [x for x in r.iter_lines() if x][-2:] == [
                "data: [DONE]",
                f": x-lwfsm-turn {r.headers['x-lwfsm-turn']}",
            ]
        with anthropic.Anthropic(base_url=gw.base, api_key="none").messages.with_streaming_response.create(
            model="x", max_tokens=10, messages=[{"role": "user", "content": "streamed"}], stream=True
        ) as r:
            lines = [x for x in r.iter_lines() if x]
            assert lines[-1] == f": x-lwfsm-turn {r.headers['x-lwfsm-turn']}"
            assert lines[-2] == 'data: {"type": "message_stop"}'
    finally:
        gw.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)


# -- the pure parts --


@pytest.mark.parametrize(
    ("headers", "body", "source", "session"),
    [
        ({"x-lwfsm-session": "a", "x-claude-code-session-id": "b"}, {}, "x-lwfsm-session", "a"),
        ({"x-claude-code-session-id": "b", "session-id": "c"}, {}, "x-claude-code-session-id", "b"),
        (
            {},
            {"metadata": {"user_id": "user_ab12_account_cd34_session_0f0e0d0c-1111"}},
            "metadata.user_id",
            "0f0e0d0c-1111",
        ),
        ({}, {"metadata": {"user_id": json.dumps({"session_id": "s-json"})}}, "metadata.user_id", "s-json"),
        ({"x-codex-turn-metadata": json.dumps({"session_id": "cx"})}, {}, "x-codex-turn-metadata", "cx"),
        ({"session-id": "c", "conversation_id": "d"}, {}, "session-id", "c"),
        ({"session_id": "old-codex"}, {}, "session_id", "old-codex"),
        ({"agent-session-id": "g", "goose-session-id": "h"}, {}, "agent-session-id", "g"),
        ({"goose-session-id": "h"}, {}, "goose-session-id", "h"),
        ({"x-litellm-session-id": "oh"}, {}, "x-litellm-session-id", "oh"),
        ({"x-session-id": "x"}, {"prompt_cache_key": "p"}, "x-session-id", "x"),
        ({}, {"prompt_cache_key": "p"}, "prompt_cache_key", "p"),
    ],
)
def test_identity_rules(headers: dict[str, str], body: dict[str, Any], source: str, session: str) -> None:
    ident = identify(headers, body, [], "", [], "client-key")
    assert (ident.source, ident.session, ident.confident) == (source, session, True)
    assert ident.key.endswith("." + session)
    other = identify(headers, body, [], "", [], "another-key")
    assert other.key != ident.key  # scoped by the client's key


def test_fingerprint_is_low_confidence_and_sub_agents_are_separate() -> None:
    msgs = [{"role": "user", "content": "fix the parser"}]
    a = identify({}, {}, [*msgs, {"role": "assistant", "content": "ok"}], "sys", ["t"], None)
    b = identify({}, {}, msgs, "sys", ["t"], None)
    assert a.key == b.key
    assert not a.confident
    # The system prompt is the agent's, not the conversation's (a date in it changes at midnight).
    assert identify({}, {}, msgs, "other system", ["t"], None).key == a.key
    assert identify({}, {}, [{"role": "user", "content": "fix the lexer"}], "sys", ["t"], None).key != a.key
    main = identify({"x-claude-code-session-id": "s"}, {}, msgs, "", [], None)
    sub = identify({"x-claude-code-session-id": "s", "x-claude-code-agent-id": "ag"}, {}, msgs, "", [], None)
    codex = identify({"session-id": "s", "thread-id": "t2"}, {}, msgs, "", [], None)
    assert sub.key == main.key + ".ag"
    assert codex.agent == "t2"
    assert identify({"x-session-id": "a.b/c"}, {}, msgs, "", [], None).key.startswith("anon.h")  # no key injection


def test_anthropic_messages_normalised_for_judging() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "ok"},
                    {"type": "tool_use", "id": "t1", "name": "ls", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content": "boom"},
                    {"type": "text", "text": "hm"},
                ],
            },
        ]
    }
    assert anthropic_messages(body) == [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "ls", "arguments": '{"a": 1}'}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "boom", "is_error": True},
        {"role": "user", "content": "hm"},
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "label", "messages": [{"role": "user", "content": 'say "model": "x"'}]},
        {"messages": [], "model": 'lab"el'},
        {"model": "a", "metadata": {"model": "b"}},  # two model keys: serialised again
        {"messages": []},
    ],
)
def test_model_replaced_in_the_request_bytes(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    out = with_model(raw, body, "upstream-model")
    assert json.loads(out) == {**body, "model": "upstream-model"}


@pytest.mark.parametrize(
    "raw",
    [
        # the top-level key spelt with an escape, and a decoy the search finds: a key ending in `"model`
        b'{"mod\\u0065l":"picked","\\"model":"picked","messages":[{"role":"user","content":"hi"}]}',
        # or a nested key
        b'{"messages":[],"m\\u006Fdel":"picked","metadata":{"model":"picked"}}',
    ],
)
def test_a_client_cannot_hide_the_model_key_from_the_rewrite(raw: bytes) -> None:
    """Security: the upstream reads the role's model, never the one the client picked."""
    body = json.loads(raw)
    out = with_model(raw, body, "role-model")
    assert json.loads(out)["model"] == "role-model"
    assert json.loads(out) == {**body, "model": "role-model"}


def test_model_looked_for_outside_tools_read_before() -> None:
    """An agent's tools, sent again and read before, are most of its request: when they hold no
    "model", the model key is looked for in the rest only, with the same answer as looking everywhere."""
    from lwfsm.gateway.intake import _Tools

    tools = [{"type": "function", "function": {"name": f"t{i}", "description": "x" * 200}} for i in range(20)]
    cases = [
        {"model": "m", "messages": [], "tools": tools},
        {"tools": tools, "messages": [], "model": "m"},
        {"model": "m", "tools": tools, "metadata": {"model": "b"}},  # a second model key, past the tools
        {"model": "m", "tools": [*tools, {"model": "inside"}]},  # tools holding one: searched
    ]
    cache = _Tools()
    for body in cases:
        raw = json.dumps(body).encode()
        cache.learn(raw, body["tools"])
        span = cache.span(raw)
        assert (span is None) == ('"model"' in json.dumps(body["tools"]))
        out = with_model(raw, body, "up", span)
        assert out == with_model(raw, body, "up")
        assert json.loads(out) == {**body, "model": "up"}
    # bytes other than those learnt at that place: no span
    assert cache.span(json.dumps({"model": "m", "tools": tools[:3]}).encode()) is None


NOTED = [
    (
        "openai",
        {"model": "m", "messages": [{"role": "user", "content": 'a "]}" b'}], "tools": [{"x": [1, {"y": "]"}]}]},
    ),
    ("openai", {"messages": [], "stream": True, "model": "m"}),
    ("anthropic", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    ("anthropic", {"model": "m", "messages": [{"role": "user", "content": ""}]}),
    (
        "anthropic",
        {"messages": [{"content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}], "role": "user"}]},
    ),
    (
        "anthropic",
        {"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "{"}]},
    ),
]


@pytest.mark.parametrize(("protocol", "body"), NOTED)
@pytest.mark.parametrize("dumps", [{}, {"indent": 2}, {"separators": (",", ":")}])
def test_a_handoff_note_is_spliced_into_the_request_bytes_at_the_end(
    protocol: str, body: dict[str, Any], dumps: dict[str, Any]
) -> None:
    raw = json.dumps(body, **dumps).encode()
    out = CODECS[protocol].with_note(raw, 'Re-check "the tests" {x} é')
    assert out is not None
    assert json.loads(out) == {
        **body,
        "messages": CODECS[protocol].note(body["messages"], 'Re-check "the tests" {x} é'),
    }
    # Every byte before the last message is the client's: a prompt cache keeps that prefix.
    text, decoder = raw.decode(), json.JSONDecoder()
    at = text.index("[", text.index('"messages"')) + 1
    last = at
    for _ in body["messages"]:
        last = len(text) - len(text[at:].lstrip())
        at = decoder.raw_decode(text, last)[1] + 1  # past the element and its comma
    assert out[:last] == raw[:last]
    # Bytes without the expected shape are serialised again, with the note all the same.
    odd = json.dumps({**body, "messages": {"not": "a list"}}).encode()
    assert CODECS[protocol].with_note(odd, "n") is None


def test_other_protocol_upstreams_are_translated_by_litellm(
    oai: openai_server.Server, ant: anthropic_server.Server
) -> None:
    """The lead speaks Anthropic, the worker OpenAI: each client protocol reaches both through LiteLLM
    (the other protocol) or the fast path (its own)."""
    env = {**_env("openai", oai.base), "LWFSM_LEAD_MODEL": "anthropic/lead-model", "LWFSM_LEAD_API_BASE": ant.base}
    env["LWFSM_PARAM_LEAD_TURNS"] = "1"
    gw = Gateway("--api-key-env", "GW_KEY", env=env)
    try:
        client = _oai_client(gw, **{"x-session-id": "mixed"})
        msgs: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]
        served = []
        for n in range(2):
            raw = client.chat.completions.with_raw_response.create(model="m", messages=msgs)
            served.append((raw.headers["x-lwfsm-role"], raw.headers["x-lwfsm-model"]))
            reply = raw.parse().choices[0].message
            assert reply.content  # a Chat Completions reply, whichever protocol the upstream spoke
            msgs += [{"role": "assistant", "content": reply.content}, {"role": "user", "content": f"go on {n}"}]
        assert served == [("lead", "anthropic/lead-model"), ("worker", "openai/worker-model")]
        # A streamed Responses call to the Anthropic lead: a Chat Completions stream from LiteLLM, translated.
        session = {"x-session-id": "mixed-responses"}
        with client.responses.create(model="m", input="hello", stream=True, extra_headers=session) as stream:
            events = list(stream)
        assert events[-1].type == "response.completed"
        assert "response.output_text.delta" in [e.type for e in events]
        assert events[-1].response.output_text
        assert events[-1].response.usage.input_tokens > 0
        assert ant.requests[-1]["model"] == "lead-model"
        assert ant.headers[-1]["x-api-key"] == LEAD_KEY
        assert oai.requests[-1]["model"] == "worker-model"
    finally:
        gw.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)


def test_concurrent_calls_of_one_conversation_are_all_recorded(oai: openai_server.Server, oai_gateway: Gateway) -> None:
    """Calls that overlap load the same version; the later writers reload, judge again and settle."""
    import concurrent.futures

    oai.script("lead-model", *[{"delay": 0.2}] * 6)  # all six in flight at once
    client = _oai_client(oai_gateway, **{"x-session-id": "overlap"})

    def call(i: int) -> str:
        msgs = [{"role": "user", "content": "start"}, {"role": "assistant", "content": "ok"}]
        r = client.chat.completions.with_raw_response.create(
            model="m", messages=[*msgs, {"role": "user", "content": f"parallel {i}"}]
        )
        return str(r.headers["x-lwfsm-session"])

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        keys = set(pool.map(call, range(6)))
    (key,) = keys
    state = oai_gateway.control("GET", f"/lwfsm/sessions/{key}").json()
    assert state["version"] == 6  # every call settled once, none lost to a conflict
    assert sum(r["calls"] for r in state["ledger"]["rows"]) == 6
    assert state["turn"] == 5  # six turns served: five judged, the last one pending
    assert state["pending"]["turn"] == 6


AIDER_TEST_REPORT = (
    "I ran this command:\n\npytest tests/test_parser.py\n\nAnd got this output:\n\n"
    'Traceback (most recent call last):\n  File "tests/test_parser.py", line 3\nAssertionError\n'
)
AIDER_SYSTEM = "Act as an expert software developer. ... Describe each change with a *SEARCH/REPLACE block*."
AIDER_LINT_REPORT = (
    "# Fix any errors below, if possible.\n\n## Running: flake8 parser.py\n\nparser.py:3:1: E999 IndentationError"
)


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        (
            AIDER_TEST_REPORT,
            "task failure: aider.test_output at message 1, line 7: 'Traceback (most recent call last):'",
        ),
        (AIDER_LINT_REPORT, "task failure: aider.lint at message 1, line 1: '# Fix any errors below, if possible.'"),
        ("I ran this command:\n\npytest\n\nAnd got this output:\n\n12 passed", None),
        ("Thanks, looks good.", None),
    ],
)
def test_aider_reports_test_and_lint_results_as_user_messages(said: str, reason: str | None) -> None:
    from lwfsm import Engine, TurnCore, load_spec

    core = TurnCore(Engine(load_spec("lead_worker")))
    conv = core.start()
    # aider's system prompt teaches its edit format: that is how its messages are told apart
    opening = [{"role": "system", "content": AIDER_SYSTEM}, {"role": "user", "content": "fix the parser"}]
    core.settle(
        conv, core.plan(conv, opening), role="lead", model="openai/l", reply={"role": "assistant", "content": "done"}
    )
    verdict = core.plan(
        conv, [*opening, {"role": "assistant", "content": "done"}, {"role": "user", "content": said}]
    ).verdict
    assert verdict.reason == reason
    assert verdict.event == ("failure" if reason else "turn_completed")


def test_count_tokens_is_answered_without_a_turn(oai: openai_server.Server, oai_gateway: Gateway) -> None:
    """A role on an OpenAI-compatible server: counted here with LiteLLM's tokenizers (the server has no
    count endpoint)."""
    client = anthropic.Anthropic(
        base_url=oai_gateway.base,
        api_key=GATEWAY_KEY,
        default_headers={"x-claude-code-session-id": "cc-count"},
        max_retries=0,
    )
    before = len(oai.requests)
    messages: list[Any] = [{"role": "user", "content": "Count the tokens of this message, please."}]
    short = client.messages.count_tokens(model="lwfsm", messages=messages)
    longer = client.messages.count_tokens(model="lwfsm", messages=messages, system="You are Claude Code. " * 20)
    assert 0 < short.input_tokens < longer.input_tokens
    assert len(oai.requests) == before  # counted locally: no upstream call
    sessions = oai_gateway.control("GET", "/lwfsm/sessions").json()["sessions"]
    assert not any("cc-count" in json.dumps(s) for s in sessions)  # counting stored no conversation


def test_an_anthropic_upstream_without_a_count_endpoint_is_counted_here(
    ant: anthropic_server.Server, ant_gateway: Gateway
) -> None:
    """An Anthropic-compatible server that serves Messages but answers 404 to a token count (LiteLLM's
    proxy did, until 2025): counted with LiteLLM's tokenizers instead, and not asked again."""
    client = anthropic.Anthropic(base_url=ant_gateway.base, api_key=GATEWAY_KEY, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Count the tokens of this message, please."}]
    ant.script("lead-model", {"status": 404})
    sent = len(ant.paths)
    assert client.messages.count_tokens(model="lwfsm", messages=messages).input_tokens > 0
    assert client.messages.count_tokens(model="lwfsm", messages=messages).input_tokens > 0
    assert ant.paths[sent:] == ["/v1/messages/count_tokens"]  # asked once


def test_a_chat_stream_through_litellm_records_the_providers_usage_the_client_did_not_ask_for(
    ant: anthropic_server.Server, ant_gateway: Gateway
) -> None:
    """The gateway asks LiteLLM for a stream's usage (the provider counted it; without it the turn's
    tokens would be unknown) and keeps the usage chunk from a client that did not ask for one."""
    auth = {"authorization": f"Bearer {GATEWAY_KEY}", "x-lwfsm-session": "chat-to-anthropic-usage"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", ant_gateway.base + "/v1/chat/completions", json=body, headers=auth, timeout=60) as r:
        key = r.headers["x-lwfsm-session"]
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert chunks
    assert all(c["choices"] and "usage" not in c for c in chunks)
    session = ant_gateway.control("GET", f"/lwfsm/sessions/{key}").json()
    assert session["unknown_usage_calls"] == 0
    assert session["ledger"]["rows"][0]["usage"]["completion_tokens"] > 0
