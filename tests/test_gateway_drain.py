"""Draining `lwfsm serve` on SIGTERM: a real uvicorn process (one, or a parent and two workers) on an
SQLite file, a fake upstream whose stream is held open half-way until the test releases it, and httpx
reading the stream as a client does. The store file is read after the process has exited."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from lwfsm.store import open_store  # noqa: E402

from . import openai_server  # noqa: E402
from .test_gateway import GATEWAY_KEY, Gateway, _env, oai  # noqa: E402

__all__ = ["oai"]  # the fake upstream fixture shared with test_gateway

TEXT = "a reply long enough to stream in several chunks"


def _until(what: str, check: Callable[[], Any], seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while not (got := check()):
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.02)  # polling for a condition, not waiting out a time
    return got


class Stream:
    """One streamed chat call in a thread, read line by line as it comes."""

    def __init__(self, gw: Gateway) -> None:
        self.lines: list[str] = []
        self.headers: dict[str, str] = {}
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._read, args=(gw,), daemon=True)
        self.thread.start()

    def _read(self, gw: Gateway) -> None:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "drain me"}]}
        auth = {"authorization": f"Bearer {GATEWAY_KEY}"}
        try:
            with httpx.stream("POST", gw.base + "/v1/chat/completions", json=body, headers=auth, timeout=30) as r:
                self.headers = dict(r.headers)
                for line in r.iter_lines():
                    self.lines.append(line)
        except httpx.HTTPError as exc:
            self.error = exc

    def text(self) -> str:
        chunks = [json.loads(x[6:]) for x in self.lines if x.startswith("data: {")]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])

    def started(self) -> bool:
        return bool(self.text())  # the upstream's first chunks have reached the client


def _held(oai: openai_server.Server, gw: Gateway) -> tuple[Stream, threading.Event]:
    """A stream the upstream holds open before its finish chunk until the event is set."""
    hold = threading.Event()
    oai.script("lead-model", {"hold": hold, "content": TEXT})
    call = Stream(gw)
    _until("the stream has started", call.started)
    return call, hold


def _refused(gw: Gateway) -> bool:
    try:
        httpx.get(gw.base + "/healthz", timeout=5)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:  # accepted as the socket closed, then closed or reset unanswered: not yet refused
        return False
    return False


def _draining(gw: Gateway) -> httpx.Response | None:
    r = httpx.get(gw.base + "/readyz", timeout=5)
    return r if r.status_code == 503 else None


def _stored(url: str, key: str) -> dict[str, Any] | None:
    row = open_store(url).read(key)
    return None if row is None else dict(json.loads(row.data.splitlines()[1]))


def _exit(gw: Gateway, seconds: float) -> tuple[int, str]:
    code = gw.proc.wait(timeout=seconds)
    return code, gw.proc.stdout.read() if gw.proc.stdout else ""


def _drains_a_stream(
    oai: openai_server.Server, tmp_path: Path, *args: str, first: Callable[[Gateway], None] | None = None
) -> str:
    """SIGTERM in the middle of a stream: /readyz 503 at once, new connections refused after the grace
    while the stream goes on, the whole stream delivered, its turn stored, exit 0. The output."""
    url = f"sqlite:///{tmp_path}/s.db"
    grace = 1.5
    gw = Gateway(
        "--api-key-env", "GW_KEY", "--store", url, "--drain-grace", str(grace), *args, env=_env("openai", oai.base)
    )
    try:
        if first is not None:
            first(gw)
        call, hold = _held(oai, gw)
        signalled = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        ready = _until("/readyz answers 503", lambda: _draining(gw))
        assert ready.json() == {"status": "draining"}
        _until("a new connection is refused", lambda: _refused(gw))
        assert time.monotonic() - signalled >= grace  # not before the grace
        assert call.thread.is_alive()  # the stream is still running, held by the upstream
        hold.set()
        call.thread.join(20)
        code, out = _exit(gw, 30)
    finally:
        gw.stop()
    assert call.error is None
    assert call.text() == TEXT
    assert call.lines[-4:] == ["data: [DONE]", "", ": x-lwfsm-turn 1", ""]  # stored before the client saw the end
    assert code == 0, out
    stored = _stored(url, call.headers["x-lwfsm-session"])
    assert stored is not None
    assert (stored["pending"]["turn"], stored["pending"]["reply"]["content"]) == (1, TEXT)
    assert "Traceback" not in out
    return out


def test_sigterm_drains_a_stream_to_its_end_stores_its_turn_and_exits_0(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    out = _drains_a_stream(oai, tmp_path)
    assert "SIGTERM: draining" in out
    assert out.count("drained: every call ended") == 1


def _workers(pid: int) -> list[int]:
    """The worker processes of `lwfsm serve --workers` (Linux: /proc), not multiprocessing's helper."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(k) for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes())


def test_two_workers_drain_each_and_the_parent_exits_0(oai: openai_server.Server, tmp_path: Path) -> None:
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs Linux's /proc/PID/task/PID/children to find the worker processes")
    replaced: list[int] = []

    def kill_a_worker(gw: Gateway) -> None:
        first = _until("two workers", lambda: w if len(w := _workers(gw.proc.pid)) == 2 else None)
        os.kill(first[0], signal.SIGKILL)
        _until("the parent replaces it", lambda: (w := _workers(gw.proc.pid)) and len(w) == 2 and first[0] not in w)
        replaced.append(first[0])

    out = _drains_a_stream(oai, tmp_path, "--workers", "2", first=kill_a_worker)
    assert f"worker {replaced[0]} died (exit code -9); starting another" in out
    assert out.count("SIGTERM: draining") <= 2  # the replacement may get the signal before it serves
    assert out.count("drained: every call ended") == 2  # the parent passed the signal on to both, the new one too


def test_workers_drain_and_end_when_their_parent_is_killed(oai: openai_server.Server, tmp_path: Path) -> None:
    """A parent killed by SIGKILL passes nothing on: its workers, orphaned, served on and held the port,
    so that a new `lwfsm serve` there could not start. They drain and end by themselves."""
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs Linux's /proc/PID/task/PID/children to find the worker processes")
    args = ("--api-key-env", "GW_KEY", "--store", f"sqlite:///{tmp_path}/s.db", "--workers", "2")
    gw = Gateway(*args, "--drain-grace", "0.2", env=_env("openai", oai.base))
    workers: list[int] = []
    try:
        workers = _until("two workers", lambda: w if len(w := _workers(gw.proc.pid)) == 2 else None)
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        for pid in workers:
            _until(f"worker {pid} ends", lambda pid=pid: not Path(f"/proc/{pid}").exists() or _zombie(pid), 30)
        _until("the port is free", lambda: _refused(gw))
    finally:
        for pid in workers:
            if not _zombie(pid):  # not to outlive a failed test
                os.kill(pid, signal.SIGKILL)
        gw.stop()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("end", ["second signal", "drain timeout"])
def test_a_second_signal_or_the_drain_timeout_ends_a_stream_and_stores_nothing(
    oai: openai_server.Server, tmp_path: Path, end: str
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    timeout = 60.0 if end == "second signal" else 1.5
    gw = Gateway(
        "--api-key-env",
        "GW_KEY",
        "--store",
        url,
        "--drain-grace",
        "0",
        "--drain-timeout",
        str(timeout),
        env=_env("openai", oai.base),
    )
    try:
        call, hold = _held(oai, gw)
        signalled = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        _until("a new connection is refused", lambda: _refused(gw))
        if end == "second signal":
            gw.proc.send_signal(signal.SIGTERM)
        code, out = _exit(gw, 20)  # the stream is held for longer than that
        ended = time.monotonic() - signalled
        call.thread.join(20)
    finally:
        hold.set()
        gw.stop()
    assert code == 1, out
    assert call.error is not None  # the client sees the stream break off, never an end
    assert "data: [DONE]" not in call.lines
    assert _stored(url, call.headers["x-lwfsm-session"]) is None  # a turn not finished is not stored
    why = "a second signal" if end == "second signal" else "--drain-timeout"
    assert f"drain cut short by {why}: ending 1 call(s) still running" in out
    if end == "drain timeout":
        assert ended >= timeout
    assert "Traceback" not in out


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_a_call_the_drain_cuts_before_its_answer_is_told_so_in_its_protocol(
    oai: openai_server.Server, tmp_path: Path, path: str
) -> None:
    """A call still waiting for its upstream when --drain-timeout ends it: a 503 in the client's
    protocol saying why (uvicorn answered a cancelled call with a bare 500 "Internal Server Error")."""
    url = f"sqlite:///{tmp_path}/s.db"
    args = ("--api-key-env", "GW_KEY", "--store", url, "--drain-grace", "0", "--drain-timeout", "1")
    gw = Gateway(*args, env=_env("openai", oai.base))
    hold = threading.Event()
    oai.script("lead-model", {"hold": hold, "hold_at": "start"})
    body: dict[str, Any] = {"model": "m"}
    body.update({"input": "cut me"} if path == "/v1/responses" else {"messages": [{"role": "user", "content": "cut"}]})
    auth = {"authorization": f"Bearer {GATEWAY_KEY}"}
    answer: list[httpx.Response] = []
    call = threading.Thread(
        target=lambda: answer.append(httpx.post(gw.base + path, json=body, headers=auth, timeout=30))
    )
    try:
        seen = len(oai.requests)
        call.start()
        _until("the upstream has the call", lambda: len(oai.requests) > seen)
        gw.proc.send_signal(signal.SIGTERM)
        code, out = _exit(gw, 20)
        call.join(20)
    finally:
        hold.set()
        gw.stop()
    assert code == 1, out
    (r,) = answer
    assert r.status_code == 503
    said = "the gateway stopped (--drain-timeout) before this call ended: retry it (a retry is never counted twice)"
    error = r.json()["error"]
    assert error["message"] == said
    assert error["type"] == "api_error"
    assert "Traceback" not in out


def test_a_call_the_drain_cuts_while_its_turn_is_written_is_traced_if_the_write_lands(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    """Cut while the store has its write (a lock held elsewhere): the client gets the 503, and when the write
    lands (the lock let go) before the gateway ends, the turn's trace line is written, as it would have been."""
    from .test_gateway_faults import _locked

    path, logs = tmp_path / "s.db", tmp_path / "logs"
    args = ("--api-key-env", "GW_KEY", "--store", f"sqlite:///{path}", "--log-dir", str(logs), "--drain-timeout", "1")
    gw = Gateway(*args, "--drain-grace", "0", "--store-timeout", "20", env=_env("openai", oai.base))
    auth = {"authorization": f"Bearer {GATEWAY_KEY}", "x-lwfsm-session": "cut-write"}

    def chat(text: str) -> httpx.Response:
        body = {"model": "m", "messages": [{"role": "user", "content": text}]}
        return httpx.post(gw.base + "/v1/chat/completions", json=body, headers=auth, timeout=30)

    answer: list[httpx.Response] = []
    try:
        assert chat("one").status_code == 200
        with _locked(path) as release:
            seen = len(oai.requests)
            call = threading.Thread(target=lambda: answer.append(chat("two")))
            call.start()
            _until("the upstream answered: the write waits for the lock", lambda: len(oai.requests) > seen)
            gw.proc.send_signal(signal.SIGTERM)
            call.join(20)
            release()
            code, out = _exit(gw, 30)
    finally:
        gw.stop()
    assert code == 1, out
    (r,) = answer
    assert r.status_code == 503
    (trace,) = logs.glob("*.jsonl")
    assert [json.loads(line)["turn"] for line in trace.read_text().splitlines()] == [1]  # judged by the cut call
    assert "the store took the write after the call was answered" in out
    assert "Traceback" not in out


def test_drain_flags_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm.cli import main

    assert main(["serve", "--mock", "--store", "memory://", "--drain-grace", "5", "--drain-timeout", "5"]) == 1
    assert "--drain-grace 5 and --drain-timeout 5: the grace must be 0 or more and less than" in capsys.readouterr().err
