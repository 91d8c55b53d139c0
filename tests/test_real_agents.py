"""The real Claude Code and Codex CLI binaries, unchanged, through a real `lwfsm serve`.

Each agent runs one scripted task with a scratch HOME and working directory. Its only model
endpoint is the gateway, whose roles are bound to a fake upstream (tests/anthropic_server.py,
tests/openai_server.py) scripted per model: the lead's model makes the agent run tools, the
worker's model breaks two commands in a row, the lead comes back, then the worker finishes. What
the upstream received and what the control API reports show who served every turn.

The agents are npm packages, pinned (.ci/run installs them into ~/.cache/lwfsm-agents and sets
LWFSM_CLAUDE_BIN / LWFSM_CODEX_BIN). Where one is missing its test skips, saying how to install it;
with LWFSM_REQUIRE_AGENTS=1 (set by CI) that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwfsm import Engine, load_spec

from . import anthropic_server, openai_server
from .test_gateway import GATEWAY_KEY, LEAD_KEY, ROOT, WORKER_KEY, Gateway, _env

CLAUDE_CODE, CODEX = "@anthropic-ai/claude-code@2.1.197", "@openai/codex@0.171.0"
AGENTS_DIR = Path.home() / ".cache/lwfsm-agents"
HINT = (
    f"needs the npm packages {CLAUDE_CODE} and {CODEX}: npm install --prefix ~/.cache/lwfsm-agents "
    f"{CLAUDE_CODE} {CODEX} (or set LWFSM_CLAUDE_BIN / LWFSM_CODEX_BIN to the binaries)"
)
AGENT_TIMEOUT = 60  # seconds for a whole agent run (it takes one or two)


def agent_binary(name: str, variable: str, package: str) -> str:
    """The agent's executable: $variable, else the npm cache .ci/run installs into. It must be the
    pinned version (the scripted traffic is theirs). Skips with an install hint when it is missing
    or another version (fails under LWFSM_REQUIRE_AGENTS=1)."""
    path = os.environ.get(variable) or str(AGENTS_DIR / "node_modules/.bin" / name)
    version = package.rsplit("@", 1)[1]
    if not (os.path.isfile(path) and os.access(path, os.X_OK)) or shutil.which("node") is None:
        problem = f"{name} not found at {path} (or node is not on PATH)"
    else:
        with tempfile.TemporaryDirectory() as home:  # even --version writes under HOME / CODEX_HOME
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "CODEX_HOME": home}
            said = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, env=env).stdout
        said = said.strip()
        problem = "" if version in said.split() else f"{path} is {said!r}, not {package}"
    if problem:
        if os.environ.get("LWFSM_REQUIRE_AGENTS") == "1":
            pytest.fail(f"{problem}; LWFSM_REQUIRE_AGENTS=1 requires it. This test {HINT}")
        pytest.skip(f"{problem}: this test {HINT}")
    return path


def expected_roles(outcomes: str) -> list[str]:
    """The role serving each call when the turns before it end as `outcomes` ('o' ok, 'f' failed),
    by the shipped lead_worker spec with its default params: call n+1 judges turn n."""
    session = Engine(load_spec(ROOT / "specs" / "lead_worker.yaml")).session()
    roles = [session.role]
    for outcome in outcomes:
        session.turn_completed() if outcome == "o" else session.failure("scripted")
        roles.append(session.role)
    return roles


# The task both agents are given, and how its turns end: 1-3 succeed (the lead's opening), 4 and 5
# are the worker's commands that fail, 6 and 7 the lead's successful fallback; call 8 is the worker
# again, on probation, and ends the task. Call n+1 judges turn n, so call 8 judges turn 7.
PROMPT = "Keep notes in notes.txt."
OUTCOMES = "oooffoo"  # turns 1..7
ROLES = ["lead", "lead", "lead", "worker", "worker", "lead", "lead", "worker"]  # calls 1..8
FAILED = {4, 5}


def test_the_scripted_roles_are_what_the_spec_says() -> None:
    assert expected_roles(OUTCOMES) == ROLES


def _scratch_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: none of the machine's keys or settings, a scratch HOME, no proxies."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **extra,
    }


def _claude_env(tmp_path: Path, base: str) -> dict[str, str]:
    """Claude Code pointed at the gateway `base` with the gateway's key, calling nothing else."""
    return _scratch_env(
        tmp_path,
        ANTHROPIC_BASE_URL=base,
        ANTHROPIC_API_KEY=GATEWAY_KEY,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
    )


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run an agent to its end, within AGENT_TIMEOUT. It runs in its own process group, killed whole
    on a timeout: `codex` is a node script whose native binary is a child process, and tools run
    as children too."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=AGENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{argv[0]} did not finish within {AGENT_TIMEOUT} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _leaks(tmp_path: Path, run: subprocess.CompletedProcess[str]) -> list[str]:
    """Where the upstream keys turn up on the agent's side: its output, or any file it wrote under
    tmp_path (scratch HOME, transcripts, logs, config, working directory)."""
    found = [f"agent output: {k[:4]}..." for k in (LEAD_KEY, WORKER_KEY) if k in run.stdout + run.stderr]
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {k[:4]}..." for k in (LEAD_KEY, WORKER_KEY) if k.encode() in data]
    return found


def _check_session(gw: Gateway, session: str, source: str, kind: str) -> dict[str, Any]:
    """The gateway's control API: one conversation, under the agent's own id, judged as scripted."""
    listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    assert [(s["session"], s["source"]) for s in listed] == [(session, source)], listed
    summary = listed[0]
    assert summary["state"] == "recovery"  # after the fallback the worker is back, on probation
    assert summary["model"] == f"{kind}/worker-model"
    assert summary["calls"] == len(ROLES)
    assert summary["calls_by_role"] == {"lead": ROLES.count("lead"), "worker": ROLES.count("worker")}
    assert (summary["switches"], summary["fallbacks"]) == (3, 1)
    detail: dict[str, Any] = gw.control("GET", f"/lwfsm/sessions/{summary['id']}").json()
    history = [(h["turn"], h["role"], h["outcome"]) for h in detail["history"]]
    assert history == [
        (n, role, "failure" if n in FAILED else "turn_completed") for n, role in enumerate(ROLES[:-1], 1)
    ]
    return detail


def _models() -> list[str]:
    return [f"{role}-model" for role in ROLES]


# -- Claude Code: Anthropic Messages, forwarded byte for byte (model replaced) --


@pytest.fixture
def ant() -> Iterator[anthropic_server.Server]:
    server = anthropic_server.Server()
    yield server
    server.close()


def _bash(command: str) -> dict[str, Any]:
    return {"content": None, "tool_use": [{"name": "Bash", "input": {"command": command, "description": command}}]}


def _tool_results(request: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """(tool_use_id, is_error, text) of the tool_result blocks in a request's last user message."""
    last = next(m for m in reversed(request["messages"]) if m["role"] == "user")
    blocks = last["content"] if isinstance(last["content"], list) else []
    out = []
    for b in blocks:
        if b.get("type") == "tool_result":
            content = b.get("content")
            text = content if isinstance(content, str) else " ".join(c.get("text", "") for c in content or ())
            out.append((b["tool_use_id"], b.get("is_error") is True, text))
    return out


def test_claude_code_print_mode_switches_between_lead_and_worker(ant: anthropic_server.Server, tmp_path: Path) -> None:
    claude = agent_binary("claude", "LWFSM_CLAUDE_BIN", CLAUDE_CODE)
    work = tmp_path / "work"
    work.mkdir()
    notes = work / "notes.txt"
    write = {"name": "Write", "input": {"file_path": str(notes), "content": "lead-2\n"}}
    ant.script(
        "lead-model",
        _bash("echo lead-1 > step1.txt"),
        {"content": "Writing the notes.", "tool_use": [write]},
        _bash("cat step1.txt >> notes.txt"),
        _bash("echo fallback-6 >> notes.txt"),  # turns 6 and 7: the lead is back
        _bash("wc -l < notes.txt"),
    )
    ant.script(
        "worker-model",
        _bash("cp missing.txt notes.txt"),  # turn 4 fails: exit 1, "No such file or directory"
        _bash("python3 no_such_script.py"),  # turn 5 fails too (exit 2): the lead comes back
        {"content": "All done: notes.txt has three lines."},  # call 8, the worker on probation
    )
    gw = Gateway("lead_worker", "--api-key-env", "GW_KEY", env=_env("anthropic", ant.base))
    try:
        env = _claude_env(tmp_path, gw.base)
        argv = [claude, "-p", PROMPT, "--output-format", "json", "--allowedTools", "Bash", "Write"]
        run = _run(argv, work, env)
        assert run.returncode == 0, f"claude exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
        result = json.loads(run.stdout)
        assert (result["is_error"], result["num_turns"]) == (False, len(ROLES))
        assert result["result"] == "All done: notes.txt has three lines."
        sid = result["session_id"]
        detail = _check_session(gw, sid, "x-claude-code-session-id", "anthropic")
    except BaseException:
        print(gw.stop())
        raise
    gw.stop()
    # Judged from Claude Code's own evidence: "Exit code N" in a result it flags is_error.
    missing = "No such file or directory"
    assert [(h["turn"], h["kind"], h["evidence"]["rule"]) for h in detail["history"] if h["reason"]] == [
        (4, "task_failure", "claude_code.exit_status=1"),
        (5, "task_failure", "claude_code.exit_status=2"),
    ]
    assert [h["evidence"]["excerpt"].endswith(missing) for h in detail["history"] if h["reason"]] == [True, True]
    # The agent really ran the tools, and sent their results back: request n carries the result of
    # reply n-1's tool call, failed where the command failed.
    assert notes.read_text() == "lead-2\nlead-1\nfallback-6\n"
    assert ant.models() == _models()
    # The handoff notes: a text block after the tool result of the first lead call after the fallback
    # and of the first worker call after it; never in what Claude Code sent itself.
    noted = [n for n, r in enumerate(ant.requests, 1) if "[lwfsm handoff" in json.dumps(r)]
    assert noted == [6, 8]
    for n in noted:
        blocks = ant.requests[n - 1]["messages"][-1]["content"]
        assert blocks[0]["type"] == "tool_result"
        assert blocks[-1]["text"].startswith("[lwfsm handoff")
    for n, request in enumerate(ant.requests[1:], 2):
        [(use_id, is_error, text)] = _tool_results(request)
        assert (use_id, is_error) == (f"toolu_{n - 1}_0", n - 1 in FAILED), text
    assert "No such file or directory" in _tool_results(ant.requests[4])[0][2]
    assert _tool_results(ant.requests[7])[0][2].strip() == "3"
    # Nothing else changed: Claude Code's own request (its session id, tools, streaming, mid-conversation
    # system message) reached the upstream as it sent it, with the role's model and key.
    for request, headers in zip(ant.requests, ant.headers, strict=True):
        assert request["stream"] is True
        assert json.loads(request["metadata"]["user_id"])["session_id"] == sid
        assert {"Bash", "Write"} <= {t["name"] for t in request["tools"]}
        assert any(m["role"] == "system" for m in request["messages"])
        assert headers["x-api-key"] == (LEAD_KEY if request["model"] == "lead-model" else WORKER_KEY)
        assert "authorization" not in headers
        assert headers["anthropic-beta"].startswith("claude-code-")
    assert GATEWAY_KEY not in json.dumps([ant.requests, ant.headers])  # the agent's key stays with the gateway
    assert _leaks(tmp_path, run) == []
    # Claude Code writes its tools as orjson writes them back: the gateway reads them once, not on every call
    # (the bytes the upstream got are Claude Code's, the model aside).
    from lwfsm.gateway.intake import _Tools

    cache = _Tools()
    cache.learn(ant.raw[0], ant.requests[0]["tools"])
    assert len(cache.known) == 1
    assert all(cache.parse(raw) == request for raw, request in zip(ant.raw[1:], ant.requests[1:], strict=True))


def test_claude_code_with_an_anthropic_lead_and_a_chat_only_openai_worker(
    ant: anthropic_server.Server, tmp_path: Path
) -> None:
    """ "Claude for reasoning, an OpenAI-compatible model for execution": the worker's server has chat
    completions only (no /v1/responses, as llama.cpp), and the worker's model does not take Claude Code's
    thinking. LiteLLM translates the worker's calls both ways; the drop is one log line, never a 400."""
    claude = agent_binary("claude", "LWFSM_CLAUDE_BIN", CLAUDE_CODE)
    work = tmp_path / "work"
    work.mkdir()
    ant.script(
        "lead-model",
        _bash("echo lead-1 > notes.txt"),
        _bash("echo lead-2 >> notes.txt"),
        _bash("echo lead-3 >> notes.txt"),
        _bash("echo fallback-6 >> notes.txt"),
        _bash("wc -l < notes.txt"),
    )

    def bash(n: int, command: str) -> dict[str, Any]:
        args = json.dumps({"command": command, "description": command})
        return {
            "tool_calls": [{"id": f"call_w{n}", "type": "function", "function": {"name": "Bash", "arguments": args}}]
        }

    oai = openai_server.Server()  # chat completions only: its /v1/responses is a 404
    oai.script("worker-model", bash(4, "cp missing.txt notes.txt"), bash(5, "python3 no_such_script.py"))
    oai.script("worker-model", {"content": "All done: notes.txt has four lines."})
    env = {
        **_env("anthropic", ant.base),
        "LWFSM_WORKER_MODEL": "openai/worker-model",
        "LWFSM_WORKER_API_BASE": oai.base,
    }
    gw = Gateway("lead_worker", "--api-key-env", "GW_KEY", env=env)
    try:
        env = _claude_env(tmp_path, gw.base)
        argv = [claude, "-p", PROMPT, "--output-format", "json", "--allowedTools", "Bash"]
        run = _run(argv, work, env)
        assert run.returncode == 0, f"claude exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
        result = json.loads(run.stdout)
        assert (result["is_error"], result["num_turns"]) == (False, len(ROLES))
        assert result["result"] == "All done: notes.txt has four lines."
        listed = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
        assert [(s["session"], s["state"], s["switches"], s["fallbacks"]) for s in listed] == [
            (result["session_id"], "recovery", 3, 1)
        ]
        detail = gw.control("GET", f"/lwfsm/sessions/{listed[0]['id']}").json()
    except BaseException:
        print(gw.stop())
        oai.close()
        raise
    log = gw.stop()
    oai.close()
    history = [(h["turn"], h["role"], h["outcome"]) for h in detail["history"]]
    assert history == [
        (n, role, "failure" if n in FAILED else "turn_completed") for n, role in enumerate(ROLES[:-1], 1)
    ]
    assert (work / "notes.txt").read_text() == "lead-1\nlead-2\nlead-3\nfallback-6\n"
    assert ant.models() == ["lead-model"] * ROLES.count("lead")
    # The worker's three calls went to chat completions, each carrying the previous tool call's result
    # under the worker's own call id, and none of Claude Code's Anthropic-only fields.
    assert oai.paths == ["/v1/chat/completions"] * ROLES.count("worker")
    for request in oai.requests:
        assert not {"thinking", "reasoning_effort", "context_management"} & set(request)
        assert "cache_control" not in json.dumps(request)
    results = [[m for m in r["messages"] if m["role"] == "tool"] for r in oai.requests]
    assert [m["tool_call_id"] for m in results[-1]] == [
        *(f"toolu_{n}_0" for n in (1, 2, 3)),
        "call_w4",
        "call_w5",
        *(f"toolu_{n}_0" for n in (4, 5)),
    ]
    assert "No such file or directory" in json.dumps(results[1][-1]["content"])
    assert [line for line in log.splitlines() if "dropped" in line and "openai/worker-model" in line]
    assert _leaks(tmp_path, run) == []


# -- Codex: the Responses API, translated into one Chat Completions call per request --


@pytest.fixture
def oai() -> Iterator[openai_server.Server]:
    server = openai_server.Server()
    yield server
    server.close()


def _codex_config(codex_home: Path, base: str, work: Path) -> None:
    """A custom provider pointing at the gateway (wire_api "responses": 0.171.0 has no other), no
    approvals, no sandbox (the scratch directory is the workspace), no update check, no analytics."""
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        "\n".join(
            [
                'model = "lwfsm"',
                'model_provider = "lwfsm"',
                'approval_policy = "never"',
                'sandbox_mode = "danger-full-access"',
                "check_for_update_on_startup = false",
                "[analytics]",
                "enabled = false",
                "[model_providers.lwfsm]",
                'name = "lwfsm gateway"',
                f'base_url = "{base}/v1"',
                'wire_api = "responses"',
                'env_key = "LWFSM_GATEWAY_KEY"',
                f'[projects."{work}"]',
                'trust_level = "trusted"',
                "",
            ]
        )
    )


def test_codex_exec_switches_between_lead_and_worker(oai: openai_server.Server, tmp_path: Path) -> None:
    codex = agent_binary("codex", "LWFSM_CODEX_BIN", CODEX)
    work = tmp_path / "work"
    work.mkdir()
    ids = iter(range(1, len(ROLES)))

    def sh(cmd: str) -> dict[str, Any]:
        call = {"name": "exec_command", "arguments": json.dumps({"cmd": cmd})}
        return {"tool_calls": [{"id": f"call_{next(ids)}", "type": "function", "function": call}]}

    # Scripted in call order (the ids count the calls): lead 1-3, worker 4-5, lead 6-7, worker 8.
    oai.script("lead-model", sh("echo lead-1 > notes.txt"), sh("echo lead-2 >> notes.txt"), sh("cat notes.txt"))
    oai.script("worker-model", sh("cp missing.txt notes.txt"), sh("python3 no_such_script.py"))  # turns 4 and 5 fail
    oai.script("lead-model", sh("echo fallback-6 >> notes.txt"), sh("wc -l < notes.txt"))
    oai.script("worker-model", {"content": "All done: notes.txt has three lines."})
    gw = Gateway("lead_worker", "--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    try:
        _codex_config(tmp_path / "codex-home", gw.base, work)
        env = _scratch_env(tmp_path, CODEX_HOME=str(tmp_path / "codex-home"), LWFSM_GATEWAY_KEY=GATEWAY_KEY)
        argv = [codex, "exec", "--strict-config", "--skip-git-repo-check", "--json", PROMPT]
        run = _run(argv, work, env)
        assert run.returncode == 0, f"codex exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
        events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        [sid] = [e["thread_id"] for e in events if e["type"] == "thread.started"]
        items = [e["item"] for e in events if e["type"] == "item.completed"]
        exits = [i["exit_code"] for i in items if i["type"] == "command_execution"]
        answers = [i["text"] for i in items if i["type"] == "agent_message"]
        detail = _check_session(gw, sid, "x-codex-turn-metadata", "openai")
    except BaseException:
        print(gw.stop())
        raise
    gw.stop()
    assert answers == ["All done: notes.txt has three lines."]
    assert exits == [0, 0, 0, 1, 2, 0, 0]  # Codex ran the seven commands the models asked for
    # Judged from Codex's own evidence: "Process exited with code N" in the command's output.
    assert [(h["turn"], h["kind"], h["evidence"]["rule"]) for h in detail["history"] if h["reason"]] == [
        (4, "task_failure", "codex.exit_status=1"),
        (5, "task_failure", "codex.exit_status=2"),
    ]
    assert (work / "notes.txt").read_text() == "lead-1\nlead-2\nfallback-6\n"
    assert [r["model"] for r in oai.requests] == _models()
    # Each Chat Completions request the gateway made from Codex's Responses input carries the previous
    # call's tool call and its output as Codex reported it.
    # The handoff notes went to the first lead call after the fallback and the first worker call after
    # it, last; Codex's own input never held them.
    noted = [n for n, r in enumerate(oai.requests, 1) if "[lwfsm handoff" in json.dumps(r)]
    assert noted == [6, 8]
    for n, request in enumerate(oai.requests[1:], 2):
        messages = request["messages"][:-1] if n in noted else request["messages"]
        call, result = messages[-2:]
        assert call["tool_calls"][0]["id"] == result["tool_call_id"] == f"call_{n - 1}"
        code = {4: 1, 5: 2}.get(n - 1, 0)
        assert f"Process exited with code {code}" in result["content"]
    assert oai.requests[-1]["messages"][-2]["content"].rstrip().endswith("3")  # before the note
    for request, headers in zip(oai.requests, oai.headers, strict=True):
        assert request["messages"][0]["role"] == "system"  # Codex's `developer` items, sent as `system`
        assert "exec_command" in {t["function"]["name"] for t in request["tools"]}
        assert headers["authorization"] == f"Bearer {LEAD_KEY if request['model'] == 'lead-model' else WORKER_KEY}"
    assert GATEWAY_KEY not in json.dumps([oai.requests, oai.headers])
    assert _leaks(tmp_path, run) == []
