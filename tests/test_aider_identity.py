"""Real aider sessions through a real `lwfsm serve`: which conversation each request belongs to.

aider sends no session id, so the gateway fingerprints what opened the conversation. Three sessions
run one after the other against a fake upstream (tests/openai_server.py), each in a git repository of
its own: A (three turns; its first reply creates a file, so aider's repository map changes between
turns), B (another folder, another opening), C (A's opening again, in a third folder, naming its
conversation with X-Lwfsm-Session through aider's model settings). The gateway's control API must
list three conversations: A one conversation of three turns, B and C new ones on the lead.

aider is the PyPI package aider-chat, pinned, in a virtual environment of its own (.ci/run makes it:
~/.cache/lwfsm-aider, or LWFSM_AIDER_BIN). Missing, the test skips with how to install it; with
LWFSM_REQUIRE_AGENTS=1 (set by CI) that is a failure.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from lwfsm.gateway.fingerprint import FIXED_ACKS  # noqa: E402

from . import openai_server  # noqa: E402
from .test_gateway import GATEWAY_KEY, Gateway, _env  # noqa: E402

AIDER = "aider-chat==0.86.2"
HINT = (
    f"needs {AIDER} in a virtual environment: python -m venv ~/.cache/lwfsm-aider && "
    f"~/.cache/lwfsm-aider/bin/pip install {AIDER} (or set LWFSM_AIDER_BIN to its aider)"
)
TIMEOUT = 60  # seconds for one aider run (it takes a few)
_GIT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t"}
_GIT["GIT_COMMITTER_EMAIL"] = "t@example.com"
OPENING = "Add a sub function next to add"


def aider_binary() -> str:
    path = os.environ.get("LWFSM_AIDER_BIN") or str(Path.home() / ".cache/lwfsm-aider/bin/aider")
    version = AIDER.split("==")[1]
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        problem = f"aider not found at {path}"
    else:
        said = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        problem = "" if said.split()[-1:] == [version] else f"{path} is {said!r}, not {AIDER}"
    if problem:
        if os.environ.get("LWFSM_REQUIRE_AGENTS") == "1":
            pytest.fail(f"{problem}; LWFSM_REQUIRE_AGENTS=1 requires it. This test {HINT}")
        pytest.skip(f"{problem}: this test {HINT}")
    return path


def _repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    env = {**os.environ, **_GIT}
    for argv in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "start"]):
        subprocess.run(argv, cwd=path, env=env, check=True)
    return path


def _aider(aider: str, gw: Gateway, work: Path, home: Path, said: list[str], *extra: str) -> subprocess.Popen[str]:
    """Start one aider session in `work`: each line of `said` is one message typed at its prompt."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "NO_PROXY": "127.0.0.1,localhost",
        "OPENAI_API_BASE": gw.base + "/v1",
        "OPENAI_API_KEY": GATEWAY_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: no price map from the network
        **_GIT,
    }
    argv = [aider, "--model", "openai/lwfsm", "--no-check-update", "--no-analytics", "--no-gitignore"]
    argv += ["--yes-always", "--no-fancy-input", "--no-pretty", "--no-show-model-warnings", *extra]
    typed = home / "typed.txt"
    typed.write_text("".join(line + "\n" for line in said))  # at the end of its input aider exits
    with typed.open() as stdin:
        proc = subprocess.Popen(
            argv,
            cwd=work,
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, killed whole on a timeout
        )
    return proc


def _finish(proc: subprocess.Popen[str]) -> None:
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"aider did not finish within {TIMEOUT} s:\n{out}")
    assert proc.returncode == 0, out


def _repo_map(request: dict[str, Any]) -> str:
    """The repository map aider sent: the user message its fixed acknowledgement of a map answers."""
    messages = request["messages"]
    for m, reply in zip(messages, messages[1:], strict=False):
        ack = hashlib.sha256(str(reply["content"]).encode()).hexdigest()[:16]
        if reply["role"] == "assistant" and ack in FIXED_ACKS and "calc.py" in str(m["content"]):
            return str(m["content"])
    raise AssertionError("no repository map in the request")


@dataclass
class Runs:
    gw: Gateway
    oai: openai_server.Server
    sessions: dict[str, dict[str, Any]]  # the control API's conversations, by session
    requests: dict[str, list[dict[str, Any]]]  # what the upstream got, per aider session


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    aider = aider_binary()
    tmp = tmp_path_factory.mktemp("aider")
    oai = openai_server.Server()
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    try:
        # aider's default edit format for an unknown model is "whole": a reply gives whole files.
        oai.script(
            "lead-model",
            {"content": "sub.py\n```python\ndef sub(a, b):\n    return a - b\n```\n"},  # A, turn 1: a new file
            {"content": "Add sub()"},  # the commit message aider asks for (a side call)
            {"content": "Done."},  # A, turn 2
            {"content": "Done."},  # A, turn 3
            {"content": "Done."},  # B
            {"content": "Done."},  # C
        )
        calc = {"calc.py": "def add(a, b):\n    return a + b\n"}
        # A way to make identity explicit: aider passes a model's extra_params on to each call.
        settings = tmp / "settings.yml"
        settings.write_text(
            "- name: openai/lwfsm\n  extra_params:\n    extra_headers:\n      X-Lwfsm-Session: folder-c\n"
        )
        homes = [tmp / f"home-{label}" for label in "ABC"]
        for home in homes:
            home.mkdir()
        _finish(_aider(aider, gw, _repo(tmp / "a", calc), homes[0], [OPENING, "Now call it from calc.py", "Thanks"]))
        requests = {"A": list(oai.requests)}
        # B and C after A (B must not continue it), beside each other: the upstream answers them alike.
        b = _aider(
            aider, gw, _repo(tmp / "b", {"greet.py": "def hello():\n    return 'hi'\n"}), homes[1], ["Be formal"]
        )
        c = _aider(aider, gw, _repo(tmp / "c", calc), homes[2], [OPENING], "--model-settings-file", str(settings))
        _finish(b)
        _finish(c)
        requests["B"] = [r for r in oai.requests[len(requests["A"]) :] if "Be formal" in str(r["messages"])]
        listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    except BaseException:
        print(gw.stop())  # the gateway's log, to see why
        oai.close()
        raise
    yield Runs(gw, oai, {s["session"]: s for s in listed}, requests)
    gw.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)
    oai.close()


def test_aider_sessions_in_two_folders_are_two_conversations(runs: Runs) -> None:
    assert len(runs.requests["A"]) == 4  # three turns and a commit message
    assert len(runs.requests["B"]) == 1
    fingerprinted = [s for s in runs.sessions.values() if s["source"] == "fingerprint"]
    assert len(fingerprinted) == 2
    a, b = sorted(fingerprinted, key=lambda s: -s["turn"])
    # A: one conversation across its turns, its pending third turn on the lead (lead_turns = 3).
    assert (a["turn"], a["calls"], a["state"]) == (2, 3, "lead_initial")  # side calls are not calls
    # B continued nothing: its first turn, on the lead; had it continued A it would be A's fourth, on the worker.
    assert (b["turn"], b["calls"], b["state"]) == (0, 1, "lead_initial")
    assert [r["model"] for r in runs.oai.requests] == ["lead-model"] * 6


def test_one_aider_session_stays_one_conversation_while_its_repo_map_changes(runs: Runs) -> None:
    turns = [r for r in runs.requests["A"] if len(r["messages"]) > 2]  # the commit message has two
    assert len(turns) == 3
    maps = [_repo_map(r) for r in turns]
    assert "sub.py" not in maps[0]
    assert "sub.py" in maps[1]  # the file turn 1 created: the map changed, the conversation did not
    (a,) = [s for s in runs.sessions.values() if s["source"] == "fingerprint" and s["turn"] == 2]
    detail = runs.gw.control("GET", f"/lwfsm/sessions/{a['id']}").json()
    assert [(h["turn"], h["role"], h["outcome"]) for h in detail["history"]] == [
        (1, "lead", "turn_completed"),
        (2, "lead", "turn_completed"),
    ]


def test_an_explicit_session_header_names_the_conversation(runs: Runs) -> None:
    # C opened with A's words: a fingerprint cannot tell them apart, the header can.
    c = runs.sessions["folder-c"]
    assert (c["source"], c["turn"], c["calls"], c["state"]) == ("x-lwfsm-session", 0, 1, "lead_initial")
