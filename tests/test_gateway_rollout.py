"""Spec rollout on a running gateway: SIGHUP and POST /lwfsm/spec, the gate, conversations in flight.
Real `lwfsm serve` processes on 127.0.0.1, the fake OpenAI upstream, httpx as the client."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from lwfsm.spec import Spec  # noqa: E402

from . import openai_server  # noqa: E402
from .test_gateway import GATEWAY_KEY, ROOT, Gateway, oai  # noqa: E402

__all__ = ["oai"]  # the fake upstream fixture shared with test_gateway

AUTH = {"authorization": f"Bearer {GATEWAY_KEY}"}
SPEC = (ROOT / "specs" / "lead_worker.yaml").read_text()
# The lead serves two turns, not three; three worker failures in a row bring it back, not two.
FASTER = SPEC.replace("lead_turns: {default: 3", "lead_turns: {default: 2").replace(
    "failure_threshold: {default: 2", "failure_threshold: {default: 3"
)
RENAMED = re.sub(r"\bfallback\b", "rescue", FASTER)  # and the state `fallback` is called `rescue`
CHECK_FAILS = SPEC.replace("invariants:\n", "invariants:\n  - {expr: failures < 1}\n")  # the worker's 1st failure
INVALID = SPEC.replace("source: recovery, dest: worker", "source: recovery, dest: workr")
LEAD, WORKER = ("lead_initial", "lead"), ("worker", "worker")  # (x-lwfsm-state, x-lwfsm-role)
THREE_ROLES = SPEC.replace("roles:\n", "roles:\n  judge: {description: a third model}\n")


def _env(oai: openai_server.Server) -> dict[str, str]:
    # Models LiteLLM's price map knows, so the simulated effect has a cost.
    return {
        "LWFSM_LEAD_MODEL": "openai/gpt-4o",
        "LWFSM_WORKER_MODEL": "openai/gpt-4o-mini",
        "LWFSM_LEAD_API_BASE": oai.base,
        "LWFSM_WORKER_API_BASE": oai.base,
        "GW_KEY": GATEWAY_KEY,
    }


def _hash(text: str) -> str:
    return Spec.from_text(text).hash


class Chat:
    """One conversation: each call sends the whole history, ending with the user's word on the last reply."""

    def __init__(self, gw: Gateway, session: str) -> None:
        self.gw, self.session = gw, session
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": f"task {session}"}]

    def call(self, said: str = "Good, go on.") -> httpx.Response:
        if self.messages[-1]["role"] == "assistant":
            self.messages.append({"role": "user", "content": said})
        r = httpx.post(
            self.gw.base + "/v1/chat/completions",
            json={"model": "m", "messages": self.messages},
            headers={**AUTH, "x-lwfsm-session": self.session},
            timeout=30,
        )
        if r.status_code == 200:
            self.messages.append({"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]})
        return r

    def served(self, said: str = "Good, go on.") -> tuple[str, str]:
        r = self.call(said)
        assert r.status_code == 200, r.text
        return r.headers["x-lwfsm-state"], r.headers["x-lwfsm-role"]

    def fire(self, *events: str) -> None:
        for event in events:
            r = self.gw.control("POST", f"/lwfsm/sessions/{self.gw_key()}/events/{event}")
            assert r.status_code == 200, r.text

    def gw_key(self) -> str:
        found = [s["id"] for s in self.gw.control("GET", "/lwfsm/sessions").json()["sessions"]]
        return next(k for k in found if k.endswith(self.session))


def _spec_now(gw: Gateway) -> dict[str, Any]:
    r = gw.control("GET", "/lwfsm/spec")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _until(done: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    """Poll for a condition of the gateway process, up to `seconds`."""
    deadline = time.monotonic() + seconds
    while not (found := done()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling for a state, not for a timing
    return found


class Log:
    """The gateway's output (stdout and stderr) read as it comes, so a test can wait for a line."""

    def __init__(self, gw: Gateway) -> None:
        self.gw, self.lines = gw, []
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        assert self.gw.proc.stdout is not None
        for line in self.gw.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str) -> None:
        _until(lambda: any(text in line for line in self.lines), repr(text))

    def stop(self) -> str:
        self.gw.proc.send_signal(signal.SIGINT)
        try:
            self.gw.proc.wait(20)
        finally:
            self.gw.proc.kill()
            self.reader.join()
            if self.gw.proc.stdout is not None:
                self.gw.proc.stdout.close()
        return "".join(self.lines)


def _post(gw: Gateway, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gw.base + "/lwfsm/spec", content=text.encode(), headers=AUTH if headers is None else headers)


# A conversation of the recent trace: turns 4 to 6 fail. Under SPEC the worker serves turns 4 and 5 and
# the lead is back for turn 6; under FASTER the worker serves turns 3 to 6, failing in three of them.
SEEDED = ["turn_completed"] * 3 + ["failure"] * 3 + ["turn_completed"] * 2


def _seed(log_dir: Path) -> None:
    log_dir.mkdir()
    roles = ["lead", "lead", "lead", "worker", "worker", "lead", "lead", "lead"]
    lines = [
        {
            "session": "seeded",
            "turn": n,
            "role": role,
            "model": "openai/gpt-4o" if role == "lead" else "openai/gpt-4o-mini",
            "outcome": outcome,
            "prompt_tokens": 1000,
            "completion_tokens": 100,
        }
        for n, (role, outcome) in enumerate(zip(roles, SEEDED, strict=True), 1)
    ]
    (log_dir / "seeded.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def _posted_once(oai: openai_server.Server, *args: str) -> dict[str, Any]:
    """The answer to POSTing FASTER, accepted, to a gateway started with `args`."""
    gw = Gateway(*args, "--api-key-env", "GW_KEY", env=_env(oai))
    try:
        r = _post(gw, FASTER)
    finally:
        gw.stop()
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_rollout_says_why_a_replayed_cost_is_unknown(oai: openai_server.Server, tmp_path: Path) -> None:
    """A trace with a turn whose usage the upstream did not report: the rollout's effect said the cost was
    unknown because a model had no price, though both were priced."""
    log_dir = tmp_path / "trace"
    _seed(log_dir)
    seeded = log_dir / "seeded.jsonl"
    lines = [json.loads(line) for line in seeded.read_text().splitlines()]
    lines[3] = {k: v for k, v in lines[3].items() if not k.endswith("_tokens")}  # no token counts: unknown
    seeded.write_text("".join(json.dumps(x) + "\n" for x in lines))
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC)
    note = _posted_once(oai, str(spec_file), "--log-dir", str(log_dir))["effect_note"]
    assert "cost unknown (1 of 8 turns have no reported usage" in note
    assert "no price for a model" not in note


def test_a_spec_posted_to_a_gateway_serving_a_shipped_spec_is_said_to_go_back_at_sighup(
    oai: openai_server.Server,
) -> None:
    """Served by name (lwfsm serve's default, lead_worker), a SIGHUP re-reads the shipped spec: a POSTed one
    was accepted with no word that it would go."""
    said = _posted_once(oai)["spec_file"]
    assert said.endswith(
        "lead_worker.yaml still holds another spec: a SIGHUP or a restart would serve it again; "
        "serve it from a file of yours to keep it"
    )


def test_sighup_under_load_takes_a_checked_spec_and_refuses_one_check_rejects(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    spec_file, log_dir = tmp_path / "spec.yaml", tmp_path / "trace"
    spec_file.write_text(SPEC)
    _seed(log_dir)
    gw = Gateway(str(spec_file), "--api-key-env", "GW_KEY", "--log-dir", str(log_dir), env=_env(oai))
    failures: list[str] = []
    calls = [0] * 4
    stop = threading.Event()

    def client(i: int) -> None:
        n = 0
        while not stop.is_set():
            chat = Chat(gw, f"load-{i}-{n}")  # a new conversation every 4 calls: new ones start on the new spec
            for _ in range(4):
                r = chat.call()
                if r.status_code != 200:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
                calls[i] += 1
            n += 1

    def more(k: int) -> Callable[[], bool]:
        start = list(calls)
        return lambda: all(c >= s + k for c, s in zip(calls, start, strict=True))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        _until(more(3), "calls before the reload")
        assert _spec_now(gw)["spec"]["hash"] == _hash(SPEC)
        spec_file.write_text(FASTER)
        gw.proc.send_signal(signal.SIGHUP)
        now = _until(lambda: (s := _spec_now(gw))["spec"]["hash"] == _hash(FASTER) and s, "the new spec")
        last = now["last_rollout"]
        assert last["how"] == "SIGHUP"
        assert last["accepted"] is True
        assert any(line.startswith("~ param failure_threshold: {default: 3") for line in last["diff"])
        effect = last["effect"]
        assert effect["current"]["failing_worker_turns"] == 2  # the seeded conversation's turns 4 and 5
        assert effect["new"]["failing_worker_turns"] == 3  # and turn 6
        assert effect["new"]["cost"] < effect["current"]["cost"]  # the worker serves more turns
        _until(more(4), "calls after the reload")

        fresh = Chat(gw, "after-the-reload")
        assert [fresh.served() for _ in range(3)] == [LEAD, LEAD, WORKER]

        spec_file.write_text(CHECK_FAILS)
        gw.proc.send_signal(signal.SIGHUP)
        last = _until(lambda: (s := _spec_now(gw)["last_rollout"])["accepted"] is False and s, "the refusal")
        assert "lwfsm check: invariant: invariant 'failures < 1' is violated in state 'worker'" in last["errors"][0]
        assert _spec_now(gw)["spec"]["hash"] == _hash(FASTER)
        _until(more(4), "calls after the refusal")
        fresh = Chat(gw, "after-the-refusal")  # still one lead turn
        assert [fresh.served() for _ in range(3)] == [LEAD, LEAD, WORKER]
    finally:
        stop.set()
        for t in threads:
            t.join()
        out = gw.stop()
    assert failures == []
    assert sum(calls) >= 4 * 11
    assert f"spec rollout (SIGHUP) accepted: lead_worker v1 ({_hash(SPEC)}) -> lead_worker v1 ({_hash(FASTER)})" in out
    assert "spec rollout diff: ~ param lead_turns: {default: 2, min: 0, max: 1000}" in out
    assert "turns served by a failing worker 2 -> 3" in out
    assert f"spec rollout (SIGHUP) refused, still serving lead_worker v1 ({_hash(FASTER)})" in out


def _to_worker(chat: Chat) -> None:
    assert chat.served() == ("lead_initial", "lead")
    chat.fire("turn_completed", "turn_completed", "turn_completed")


@pytest.mark.parametrize("policy", ["keep", "move"])
def test_post_refuses_bad_specs_and_conversations_in_flight_keep_or_move(
    oai: openai_server.Server, tmp_path: Path, policy: str
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC)
    gw = Gateway(str(spec_file), "--api-key-env", "GW_KEY", "--on-spec-change", policy, env=_env(oai))
    try:
        in_worker, in_fallback, in_lead = Chat(gw, "in-worker"), Chat(gw, "in-fallback"), Chat(gw, "in-lead")
        _to_worker(in_worker)
        _to_worker(in_fallback)
        in_fallback.fire("failure", "failure")
        assert in_lead.served() == ("lead_initial", "lead")
        in_lead.fire("turn_completed", "turn_completed")  # lead_done 2: one more lead turn under SPEC

        # Refused: nothing changes, and the answer says why, located.
        r = _post(gw, INVALID)
        assert r.status_code == 422
        assert re.search(r"^<POST /lwfsm/spec>:\d+:\d+: .*'workr'", r.json()["errors"][0])
        r = _post(gw, CHECK_FAILS)
        assert r.status_code == 422
        assert "lwfsm check: invariant" in r.json()["errors"][0]
        r = _post(gw, THREE_ROLES)
        assert r.status_code == 409
        assert "judge has no model here" in r.json()["errors"][0]
        assert _post(gw, FASTER, headers={}).status_code == 401
        assert _post(gw, "").status_code == 400
        assert _spec_now(gw)["spec"]["hash"] == _hash(SPEC)
        assert _spec_now(gw)["last_rollout"]["current"]["hash"] == _hash(SPEC)

        r = _post(gw, RENAMED)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["accepted"] is True
        assert answer["spec"]["hash"] == _hash(RENAMED)
        assert {"+ state rescue", "- state fallback"} <= set(answer["diff"])
        assert answer["effect"] is None  # no --log-dir: no trace, said so
        assert answer["effect_note"].startswith("no recent trace")
        # the file SIGHUP re-reads still holds the old spec: said, as it would silently come back
        assert answer["spec_file"].startswith(f"{spec_file} still holds another spec: a SIGHUP or a restart")
        assert answer["in_flight"].startswith({"keep": "they keep", "move": "each moves"}[policy])
        assert _spec_now(gw)["spec"]["hash"] == _hash(RENAMED)

        # A new conversation: one lead turn, then the worker (RENAMED's lead_turns 1).
        new = Chat(gw, "new-one")
        assert [new.served() for _ in range(3)] == [LEAD, LEAD, WORKER]
        if policy == "keep":
            # Each goes on under SPEC: `fallback` is no state of RENAMED, and a third lead turn.
            assert in_worker.served() == ("worker", "worker")
            assert in_fallback.served() == ("fallback", "lead")
            assert in_lead.served() == ("lead_initial", "lead")
            # Until reset: then the new spec (one lead turn).
            in_fallback.fire("reset")
            assert [in_fallback.served() for _ in range(3)] == [LEAD, LEAD, WORKER]
        else:
            assert in_worker.served() == ("worker", "worker")  # its state exists: moved as it is
            assert in_fallback.served() == ("lead_initial", "lead")  # `fallback` does not: restarted
            assert in_lead.served() == LEAD  # lead_done 2 breaks RENAMED's lead_done < lead_turns: restarted
            assert in_lead.served() == LEAD
        assert in_worker.served() == ("worker", "worker")
    finally:
        out = gw.stop()
    assert "spec rollout (POST /lwfsm/spec) accepted" in out
    assert out.count("spec rollout (POST /lwfsm/spec) refused") == 3
    if policy == "move":
        assert re.search(r"session \S+in-fallback: spec lead_worker v1 \(\w+\) -> .*: restarted in lead_initial", out)
        assert re.search(r"session \S+in-worker: spec lead_worker v1 \(\w+\) -> .*: moved in state worker", out)


def test_with_workers_the_parent_checks_sighup_once_and_replaces_every_worker(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC)
    store = f"sqlite:///{tmp_path}/s.db"
    gw = Gateway(str(spec_file), "--api-key-env", "GW_KEY", "--workers", "2", "--store", store, env=_env(oai))
    log = Log(gw)
    try:
        r = _post(gw, FASTER)
        assert r.status_code == 409
        assert "reaches only one of them" in r.json()["errors"][0]
        assert str(spec_file) in r.json()["errors"][0]
        kept = Chat(gw, "kept")
        _to_worker(kept)
        kept.fire("failure", "failure")  # in `fallback`, a state RENAMED does not have

        spec_file.write_text(CHECK_FAILS)
        gw.proc.send_signal(signal.SIGHUP)  # refused by the parent: no worker is replaced
        log.wait_for("spec rollout (SIGHUP) refused")
        spec_file.write_text(RENAMED)
        gw.proc.send_signal(signal.SIGHUP)
        seen: set[str] = set()

        def everywhere() -> bool:
            try:
                hashes = {_spec_now(gw)["spec"]["hash"] for _ in range(8)}  # new connections: either worker
            except httpx.TransportError:  # a fresh connection the worker being replaced closed unanswered
                return False
            seen.update(hashes)
            return hashes == {_hash(RENAMED)}

        _until(everywhere, "every worker on the new spec", 60)
        assert _hash(CHECK_FAILS) not in seen
        new = Chat(gw, "new-one")
        assert [new.served() for _ in range(3)] == [LEAD, LEAD, WORKER]
        assert kept.served() == ("fallback", "lead")  # kept: SPEC went to the new workers too
        assert _spec_now(gw)["kept"][0]["hash"] == _hash(SPEC)
    finally:
        out = log.stop()
    assert out.count("spec rollout (SIGHUP) refused") == 1
    assert out.count("spec rollout (SIGHUP) accepted") == 1
