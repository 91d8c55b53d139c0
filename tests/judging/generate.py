"""Generate the judging corpus (tests/judging/generated.jsonl.gz): real agents, real commands, scripted models.

Each scenario below builds a small real repository in a scratch directory (a Python package with pytest
tests, or a small JS module with a node test), starts a fake upstream model server on 127.0.0.1 scripted
with the model's replies, and runs a real agent against it: Claude Code 2.1.197 (`claude -p`), Codex CLI
0.171.0 (`codex exec`), aider 0.86.2 (several messages on stdin). The agent really runs the tools the
script asks for (commands, edits, patches, test runs), so what it sends back in its next request is real
tool output in its own format. One corpus line per judged turn: the request the agent sent for call N+1,
whose messages carry the evidence of turn N, with the label the scenario was designed to produce.

Every label is checked against reality before it is written: each step names text that must appear in the
evidence the agent sent (and, for Claude Code, whether the tool result is marked is_error); a step whose
evidence differs stops the run with the request's evidence printed, so a scenario is fixed rather than a
label forced. The generator also checks that every scripted reply was asked for exactly once, that each
judged request carries the scripted reply as its last assistant message, and that no judged request is a
side call (title, compaction, commit message: lwfsm.gateway.identity.side_call).

Labels (kinds) follow /work/judging-data/FORMAT.md, the manifest's labelling rules: ok, task_failure,
environment (module missing and pip cannot reach an index, missing credentials, a service not running, the
sandbox refusing a write, a tool not installed), user_correction (the user's next message says the last step
was wrong), rejected (Claude Code's permission layer declining a tool call in -p mode). The hard cases are
the point: probes that exit non-zero (grep with no match, test -f, which, diff, git diff --exit-code, || true)
are ok; a deliberate reproduction of the reported bug (the red phase) is ok; reading a file containing
"except ValueError:" or "console.error" is ok; a diagnostic re-run of an already-counted failure is ok; a
test run piped through `tail` (exit 0) that shows failures is a task_failure.

One line: {"agent", "protocol" (anthropic | responses | openai), "path", "headers" (identifying headers
only, never a key), "body" (as sent, with `tools` reduced to their names, system prompts / instructions
/ developer messages replaced by a line of ours, the agents' boilerplate cut from user messages),
"scenario", "kind", "why"}. First calls
(no turn before them) and side calls are not lines.

Needs (not run by the test suite; run it by hand after changing a scenario or an agent version):
- node on PATH and the npm agents: npm install --prefix ~/.cache/lwfsm-agents --no-audit --no-fund
  @anthropic-ai/claude-code@2.1.197 @openai/codex@0.171.0 (or LWFSM_CLAUDE_BIN / LWFSM_CODEX_BIN);
- aider in its own venv outside the repository: python -m venv ~/.cache/lwfsm-aider &&
  ~/.cache/lwfsm-aider/bin/pip install aider-chat==0.86.2 (or LWFSM_AIDER_BIN);
- the Python running this script with pytest installed (the scenarios' test runs use it), git.
No network: the agents talk only to 127.0.0.1; pip in the scenarios points at a closed local port.

Run from the repository root:  python -m tests.judging.generate            (all scenarios, writes the corpus)
                               python -m tests.judging.generate --only cc_  (names starting so; writes nothing)
                               ... --show  (each judged turn's label and the evidence it was checked against)
Takes about 3 minutes on 2 cores (Claude Code ~2 s, Codex ~2 s, aider ~5 s per scenario; the hang scenarios
~12 s), for 205 judged turns: Claude Code 93, Codex 69, aider 43.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lwfsm.gateway.codec.messages import anthropic_messages  # noqa: E402
from lwfsm.gateway.codec.responses import responses_messages  # noqa: E402
from lwfsm.gateway.identity import side_call  # noqa: E402
from tests import anthropic_server, openai_server  # noqa: E402

OUT = Path(__file__).with_name("generated.jsonl.gz")
AGENTS = Path.home() / ".cache/lwfsm-agents/node_modules/.bin"
CLAUDE = os.environ.get("LWFSM_CLAUDE_BIN") or str(AGENTS / "claude")
CODEX = os.environ.get("LWFSM_CODEX_BIN") or str(AGENTS / "codex")
AIDER = os.environ.get("LWFSM_AIDER_BIN") or str(Path.home() / ".cache/lwfsm-aider/bin/aider")
VERSIONS = {"claude_code": (CLAUDE, "2.1.197"), "codex": (CODEX, "0.171.0"), "aider": (AIDER, "0.86.2")}
MODEL = "scripted-main"  # the conversation's model; side calls (aider's weak model) use another name
RUN_TIMEOUT = 120  # seconds for one agent run
KEEP_HEADERS = {
    "user-agent",
    "anthropic-beta",
    "anthropic-version",
    "x-app",
    "x-claude-code-session-id",
    "x-claude-code-agent-id",
    "originator",
    "session-id",
    "thread-id",
    "x-codex-turn-metadata",
    "x-codex-window-id",
    "x-codex-parent-thread-id",
    "x-codex-beta-features",
    "x-openai-subagent",
}
KINDS = {"ok", "task_failure", "environment", "user_correction", "rejected"}


# -- scenarios: a repository, the user's prompts, and the model's scripted replies, each with its label --


@dataclass
class Step:
    reply: dict[str, Any]  # the scripted model reply, in the fake server's step format
    kind: str | None  # label of the turn this reply makes; None: the run's last reply, never judged
    why: str = ""
    expect: tuple[str, ...] = ()  # text that must be in the evidence (what came back after the reply)
    error: bool | None = None  # Claude Code: whether a tool_result must be marked is_error


@dataclass
class Scenario:
    name: str
    agent: str  # claude_code | codex | aider
    files: dict[str, str]
    prompts: list[str]  # one agent run each (Claude Code --resume, Codex exec resume, aider stdin lines)
    steps: list[Step]
    options: dict[str, Any] = field(default_factory=dict)


CORE_PY = '''"""Small text statistics."""


def word_count(text):
    return len(text.split())


def mean_word_length(text):
    words = text.split()
    return sum(len(w) for w in words) / len(words)


def parse_ratio(value):
    """'3/4' -> 0.75; None for anything unparsable."""
    try:
        num, den = value.split("/")
        return int(num) / int(den)
    except ValueError:
        return None
'''

TESTS_PY = """from textstats import mean_word_length, parse_ratio, word_count


def test_word_count():
    assert word_count("a bb ccc") == 3


def test_mean_word_length():
    assert mean_word_length("a bb ccc") == 2


def test_mean_word_length_empty():
    assert mean_word_length("") == 0


def test_parse_ratio():
    assert parse_ratio("3/4") == 0.75


def test_parse_ratio_error_returns_none():
    assert parse_ratio("x") is None
"""

POLL_PY = '''import time


def wait_until_ready(check, attempts=3):
    """Call check() until it returns True, at most `attempts` times."""
    tried = 0
    while not check():
        time.sleep(0.1)
    return tried < attempts
'''

TEST_POLL_PY = """from textstats.poll import wait_until_ready


def test_gives_up():
    assert wait_until_ready(lambda: False) is False
"""

REPORT_PY = """import sys

from tabulate import tabulate

from .core import mean_word_length, word_count


def main(path):
    text = open(path).read()
    print(tabulate([["words", word_count(text)], ["mean length", mean_word_length(text)]]))


if __name__ == "__main__":
    main(sys.argv[1])
"""

FETCH_PY = """import os
import urllib.request

token = os.environ["STATS_API_KEY"]
print(urllib.request.urlopen("http://127.0.0.1:9/stats?token=" + token).read())
"""

CACHE_PY = """import socket

with socket.create_connection(("127.0.0.1", 6390), timeout=2) as s:
    s.sendall(b"PING\\r\\n")
    print(s.recv(64))
"""

PY_REPO = {
    "textstats/__init__.py": "from .core import mean_word_length, parse_ratio, word_count\n",
    "textstats/core.py": CORE_PY,
    "textstats/poll.py": POLL_PY,
    "textstats/report.py": REPORT_PY,
    "tests/test_core.py": TESTS_PY,
    "slow/test_poll.py": TEST_POLL_PY,
    "pytest.ini": "[pytest]\ntestpaths = tests\n",
    "scripts/fetch_stats.py": FETCH_PY,
    "scripts/ping_cache.py": CACHE_PY,
    "requirements.txt": "tabulate>=0.9\n",
    "README.md": "# textstats\n\nWord statistics for plain text.\n",
    "fixtures/before.txt": "alpha\nbeta\n",
    "fixtures/after.txt": "alpha\ngamma\n",
}

APP_JS = """function parsePort(value) {
  const port = Number(value);
  if (!Number.isInteger(port) || port <= 0) {
    console.error(`invalid port: ${value}`);
    return null;
  }
  return port;
}

module.exports = { parsePort };
"""

TEST_JS = """const assert = require('node:assert');
const { parsePort } = require('./app');

assert.strictEqual(parsePort('8080'), 8080);
assert.strictEqual(parsePort('70000'), null);
console.log('all tests passed');
"""

JS_REPO = {"app.js": APP_JS, "test.js": TEST_JS, "package.json": '{"name": "ports", "version": "1.0.0"}\n'}

# The edits the scenarios make to the repositories above.
MEAN_BUG = "    return sum(len(w) for w in words) / len(words)\n"
MEAN_FIX = "    if not words:\n        return 0\n    return sum(len(w) for w in words) / len(words)\n"
MEAN_WRONG = "    if not text:\n        return None\n    return sum(len(w) for w in words) / len(words)\n"
RATIO_BUG = "    except ValueError:\n"
RATIO_FIX = "    except (ValueError, ZeroDivisionError):\n"
RATIO_WRONG = "    except (ValueError, TypeError):\n"
POLL_BUG = "    while not check():\n        time.sleep(0.1)\n"
POLL_FIX = (
    "    while not check():\n        tried += 1\n        if tried >= attempts:\n            break\n"
    "        time.sleep(0.1)\n"
)
PORT_BUG = "  return port;\n"
PORT_FIX = (
    "  if (port > 65535) {\n    console.error(`port out of range: ${value}`);\n    return null;\n  }\n  return port;\n"
)
REPRO_PY = 'from textstats import mean_word_length\n\nprint(mean_word_length(""))\n'
CHECK_RATIO = "python -c 'from textstats import parse_ratio; print(parse_ratio(\"1/0\"))'"
PYTEST = "python -m pytest -q"
FIX_PROMPT = "test_mean_word_length_empty fails with ZeroDivisionError; fix mean_word_length."
PASSED = "passed"


# Claude Code steps


def cc(
    tools: list[tuple[str, dict[str, Any]]],
    kind: str | None,
    why: str,
    expect: tuple[str, ...] | str = (),
    error: bool | None = None,
    text: str | None = None,
) -> Step:
    reply = {"content": text, "tool_use": [{"name": n, "input": i} for n, i in tools]}
    return Step(reply, kind, why, (expect,) if isinstance(expect, str) else expect, error)


def bash(
    command: str,
    kind: str,
    why: str,
    expect: tuple[str, ...] | str = (),
    error: bool | None = None,
    text: str | None = None,
    timeout: int | None = None,
) -> Step:
    tool_input: dict[str, Any] = {"command": command, "description": command[:60]}
    if timeout is not None:
        tool_input["timeout"] = timeout
    return cc([("Bash", tool_input)], kind, why, expect, error, text)


def say(text: str, kind: str | None = None, why: str = "", expect: tuple[str, ...] | str = ()) -> Step:
    """A text-only reply: the end of a run (judged only when the user's next prompt follows it)."""
    return Step({"content": text}, kind, why, (expect,) if isinstance(expect, str) else expect)


def read(
    path: str,
    kind: str = "ok",
    why: str = "reads a file: its content is not an outcome",
    expect: tuple[str, ...] | str = (),
    error: bool | None = False,
) -> Step:
    return cc([("Read", {"file_path": path})], kind, why, expect, error)


def edit(
    path: str, old: str, new: str, kind: str, why: str, expect: tuple[str, ...] | str = (), error: bool | None = None
) -> Step:
    return cc([("Edit", {"file_path": path, "old_string": old, "new_string": new})], kind, why, expect, error)


UPDATED = "has been updated"
OK_EDIT = "the edit applied (the tool reports the file updated)"


def claude_scenarios() -> list[Scenario]:
    py, js = PY_REPO, JS_REPO
    core = "{work}/textstats/core.py"
    return [
        Scenario(
            "cc_fix_failing_test",
            "claude_code",
            py,
            [FIX_PROMPT],
            [
                bash(
                    PYTEST,
                    "ok",
                    "runs the suite to see the reported failure before changing anything (red phase)",
                    ("1 failed", "ZeroDivisionError"),
                    True,
                    "Let me see the failing test first.",
                ),
                read(
                    core,
                    expect="except ValueError:",
                    why="reads the module; 'except ValueError:' is source, not an error",
                ),
                edit(core, MEAN_BUG, MEAN_FIX, "ok", OK_EDIT, UPDATED, False),
                bash(PYTEST, "ok", "the whole suite passes after the fix", "5 passed", False),
                say("Fixed: mean_word_length returns 0 for empty text."),
            ],
        ),
        Scenario(
            "cc_bad_edits",
            "claude_code",
            py,
            [FIX_PROMPT],
            [
                read(core),
                edit(
                    core,
                    "    return total / count\n",
                    MEAN_FIX,
                    "task_failure",
                    "Edit old_string is not in the file: the edit did not apply",
                    "String to replace not found",
                    True,
                ),
                edit(
                    "{work}/textstats/stats.py",
                    MEAN_BUG,
                    MEAN_FIX,
                    "task_failure",
                    "Edit names a file that does not exist",
                    "File does not exist",
                    True,
                ),
                edit(
                    core,
                    "words",
                    "tokens",
                    "task_failure",
                    "Edit old_string matches several places and replace_all is not set: not applied",
                    "Found",
                    True,
                ),
                read(core, why="re-reads the file after the failed edits: looking, no new attempt"),
                edit(core, MEAN_BUG, MEAN_FIX, "ok", OK_EDIT, UPDATED, False),
                bash(PYTEST, "ok", "the suite passes after the fix", "5 passed", False),
                say("Fixed after re-reading the file."),
            ],
        ),
        Scenario(
            "cc_probes",
            "claude_code",
            py,
            ["Look around the repository: any TODOs, config files or linters set up?"],
            [
                bash(
                    "grep -rn TODO textstats",
                    "ok",
                    "grep finding nothing exits 1: a probe, not a failure",
                    "(Bash completed with no output)",
                    False,
                ),
                bash(
                    "test -f setup.cfg",
                    "ok",
                    "test -f of an absent file exits 1: a probe",
                    "(Bash completed with no output)",
                    False,
                ),
                bash("which shellcheck", "ok", "which of a missing program exits 1: a probe", "Exit code 1", True),
                bash(
                    "ls docs",
                    "ok",
                    "ls of a directory that may not exist: a probe (exit 2)",
                    ("Exit code 2", "No such file or directory"),
                    True,
                ),
                bash("grep -c TODO textstats/core.py", "ok", "counting matches finds 0 (grep exit 1): a probe", "0"),
                bash(
                    "ls docs || true",
                    "ok",
                    "|| true: the agent expects the path may be missing",
                    "No such file or directory",
                    False,
                ),
                bash(
                    "diff fixtures/before.txt fixtures/after.txt",
                    "ok",
                    "diff exits 1 when files differ: it shows the difference asked for",
                    "> gamma",
                    False,
                ),
                cc([("Grep", {"pattern": "FIXME"})], "ok", "a search that found nothing", "No files found", False),
                cc([("Glob", {"pattern": "**/*.cfg"})], "ok", "a glob that matched nothing", "No files found", False),
                bash("find . -name '*.toml'", "ok", "find with no match, exit 0", error=False),
                bash(
                    "command -v shellcheck >/dev/null && echo has-shellcheck || echo no-shellcheck",
                    "ok",
                    "a probe for an installed tool",
                    "no-shellcheck",
                    False,
                ),
                bash(
                    "git diff --exit-code README.md",
                    "ok",
                    "git diff --exit-code exits 1 on local changes: a probe",
                    "+Local note",
                ),
                say("No TODOs, no setup.cfg, no linters configured."),
            ],
            {"dirty": {"README.md": PY_REPO["README.md"] + "\nLocal note.\n"}},
        ),
        Scenario(
            "cc_reproduction",
            "claude_code",
            py,
            ["Bug report: mean_word_length('') crashes with ZeroDivisionError. Reproduce it first, then fix it."],
            [
                cc(
                    [("Write", {"file_path": "{work}/repro.py", "content": REPRO_PY})],
                    "ok",
                    "writes the repro script",
                    "File created",
                    False,
                ),
                bash(
                    "python repro.py",
                    "ok",
                    "deliberate reproduction: the reported ZeroDivisionError is the red phase",
                    ("Traceback", "ZeroDivisionError"),
                    True,
                    "Reproducing the reported crash first.",
                ),
                bash(
                    "python repro_empty.py",
                    "task_failure",
                    "the reproduction runs a script that does not exist",
                    "can't open file",
                    True,
                    "Running the reproduction again.",
                ),
                read(core),
                edit(core, MEAN_BUG, MEAN_FIX, "ok", OK_EDIT, UPDATED, False),
                bash("python repro.py", "ok", "the reproduction now prints 0", "0", False),
                bash(PYTEST, "ok", "the suite passes", "5 passed", False),
                say("Reproduced and fixed."),
            ],
        ),
        Scenario(
            "cc_diagnostics_after_failure",
            "claude_code",
            py,
            ["parse_ratio('1/0') should return None instead of raising."],
            [
                read(core),
                edit(core, RATIO_BUG, RATIO_WRONG, "ok", OK_EDIT, UPDATED, False),
                bash(
                    CHECK_RATIO,
                    "task_failure",
                    "checks its fix: still raises ZeroDivisionError (the fix is wrong)",
                    "ZeroDivisionError",
                    True,
                ),
                bash(
                    "python -c 'from textstats import parse_ratio; parse_ratio(\"1/0\")' 2>&1 | tail -4",
                    "ok",
                    "re-runs the same failing call to read its traceback: diagnostic, the failure is counted",
                    "ZeroDivisionError",
                    False,
                    "Let me look at the traceback again.",
                ),
                bash(
                    "grep -n except textstats/core.py",
                    "ok",
                    "greps for the handler: looking",
                    "except (ValueError, TypeError):",
                    False,
                ),
                edit(core, RATIO_WRONG, RATIO_FIX, "ok", OK_EDIT, UPDATED, False),
                bash(CHECK_RATIO, "ok", "the check prints None now", "None", False),
                say("parse_ratio('1/0') returns None."),
            ],
        ),
        Scenario(
            "cc_environment",
            "claude_code",
            py,
            ["Run the report on README.md and check the stats fetcher and the cache work."],
            [
                bash(
                    "python -m textstats.report README.md",
                    "environment",
                    "tabulate (a declared requirement) is not installed",
                    "No module named 'tabulate'",
                    True,
                ),
                bash(
                    "pip install -q tabulate",
                    "environment",
                    "pip cannot reach an index (no network)",
                    "No matching distribution",
                    True,
                ),
                bash(
                    "python -c 'import tabulate'",
                    "ok",
                    "re-checks the same missing module: diagnostic of an environment problem already seen",
                    "No module named 'tabulate'",
                    True,
                ),
                bash(
                    "python scripts/fetch_stats.py",
                    "environment",
                    "STATS_API_KEY is not set: missing credentials",
                    "KeyError: 'STATS_API_KEY'",
                    True,
                ),
                bash(
                    "python scripts/ping_cache.py",
                    "environment",
                    "the cache service on port 6390 is not running",
                    "ConnectionRefusedError",
                    True,
                ),
                bash(
                    "python -c 'import tabluate'",
                    "task_failure",
                    "imports a misspelt module name (agent's typo)",
                    "No module named 'tabluate'",
                    True,
                ),
                bash(
                    "ruff check textstats",
                    "environment",
                    "ruff is not installed in this environment",
                    "command not found",
                    True,
                ),
                say("tabulate cannot be installed here (no network); the API key and cache service are missing."),
            ],
        ),
        Scenario(
            "cc_permissions",
            "claude_code",
            py,
            ["Check pypi for a newer tabulate, then update the README."],
            [
                cc(
                    [("WebFetch", {"url": "https://pypi.org/project/tabulate/", "prompt": "latest version?"})],
                    "rejected",
                    "WebFetch is not among the allowed tools: denied in -p mode",
                    "haven't granted",
                    True,
                ),
                bash(
                    "curl -sI https://pypi.org/simple/tabulate/",
                    "rejected",
                    "curl is outside the allowed Bash prefixes: needs approval, declined",
                    "requires approval",
                    True,
                ),
                cc(
                    [("Write", {"file_path": "{work}/NOTES.md", "content": "tabulate: check version\n"})],
                    "rejected",
                    "Write is not allowed: the permission request is declined",
                    "haven't granted",
                    True,
                ),
                bash("git push origin main", "rejected", "git push is explicitly disallowed", "has been denied", True),
                read("{work}/README.md"),
                bash(
                    "rm -rf /var/tmp/lwfsm-elsewhere",
                    "rejected",
                    "removing outside the working directory is blocked by Claude Code's permission check",
                    "was blocked",
                    True,
                ),
                bash(
                    "python -m pytest -q tests/test_core.py::test_word_count",
                    "ok",
                    "an allowed command passes",
                    "1 passed",
                    False,
                ),
                say("I cannot reach pypi or write files with the current permissions."),
            ],
            {"allowed": ["Bash(python:*)", "Bash(rm:*)", "Read", "Edit"], "disallowed": ["Bash(git push:*)"]},
        ),
        Scenario(
            "cc_timeouts",
            "claude_code",
            py,
            ["slow/test_poll.py never finishes; fix wait_until_ready."],
            [
                bash(
                    "python -m pytest -q slow/test_poll.py",
                    "ok",
                    "still running when Claude Code moved it to the background: its outcome is not known yet",
                    "Command running in background",
                    False,
                    timeout=3000,
                ),
                read("{work}/textstats/poll.py"),
                edit("{work}/textstats/poll.py", POLL_BUG, POLL_FIX, "ok", OK_EDIT, UPDATED, False),
                bash(
                    "python -m pytest -q slow/test_poll.py",
                    "ok",
                    "the test finishes and passes",
                    "1 passed",
                    False,
                    timeout=20000,
                ),
                bash(
                    "sleep 5",
                    "task_failure",
                    "a command it ran did not finish within its 1 s timeout",
                    "timed out",
                    True,
                    timeout=1000,
                ),
                say("wait_until_ready gives up after `attempts` tries."),
            ],
        ),
        Scenario(
            "cc_malformed_calls",
            "claude_code",
            py,
            ["Run the word-count test."],
            [
                cc(
                    [("RunTests", {"path": "tests"})],
                    "task_failure",
                    "calls a tool that does not exist",
                    "No such tool available",
                    True,
                ),
                cc(
                    [("Bash", {"cmd": "python -m pytest -q"})],
                    "task_failure",
                    "Bash called without its required `command` parameter",
                    "InputValidationError",
                    True,
                ),
                cc(
                    [("Read", {"path": "tests/test_core.py"})],
                    "task_failure",
                    "Read called with a wrong parameter name",
                    "InputValidationError",
                    True,
                ),
                cc(
                    [("Edit", {"file_path": "{work}/tests/test_core.py", "old_string": "x"})],
                    "task_failure",
                    "Edit called without new_string",
                    "InputValidationError",
                    True,
                ),
                bash(
                    "python -m pytest -q tests/test_core.py::test_word_count",
                    "ok",
                    "a well-formed call; it passes",
                    "1 passed",
                    False,
                ),
                say("The word-count test passes."),
            ],
        ),
        Scenario(
            "cc_js_fix",
            "claude_code",
            js,
            ["parsePort('70000') should be rejected; test.js shows it. Fix app.js."],
            [
                bash(
                    "node test.js",
                    "ok",
                    "runs the test that shows the reported bug (red phase)",
                    "AssertionError",
                    True,
                    "Running the failing test first.",
                ),
                read("{work}/app.js", expect="console.error", why="reads app.js; 'console.error' is source code"),
                bash("cat app.js", "ok", "prints the file; error words are content", "console.error", False),
                edit("{work}/app.js", PORT_BUG, PORT_FIX, "ok", OK_EDIT, UPDATED, False),
                bash("node test.js", "ok", "the test passes", "all tests passed", False),
                bash(
                    "node -e \"require('./app').parsePort('abc')\"",
                    "ok",
                    "shows the intended console.error for bad input; exit 0",
                    "invalid port: abc",
                    False,
                ),
                bash("node --check app.js && echo syntax-ok", "ok", "syntax check passes", "syntax-ok", False),
                say("parsePort rejects ports above 65535."),
            ],
        ),
        Scenario(
            "cc_pipe_hides_status",
            "claude_code",
            py,
            [FIX_PROMPT],
            [
                read(core),
                edit(core, MEAN_BUG, MEAN_WRONG, "ok", OK_EDIT, UPDATED, False),
                bash(
                    PYTEST + " 2>&1 | tail -3",
                    "task_failure",
                    "the fix does not work: 1 failed in the output although `| tail` makes the exit 0",
                    "1 failed",
                    False,
                ),
                bash(
                    PYTEST + " tests/test_core.py::test_mean_word_length_empty 2>&1 | tail -5",
                    "ok",
                    "re-runs only the failing test to read it: diagnostic",
                    "1 failed",
                    False,
                ),
                edit(core, MEAN_WRONG, MEAN_FIX, "ok", OK_EDIT, UPDATED, False),
                bash(PYTEST + " 2>&1 | tail -3", "ok", "all pass", "5 passed", False),
                say("Fixed: empty text gives 0."),
            ],
        ),
        Scenario(
            "cc_user_correction",
            "claude_code",
            py,
            [
                FIX_PROMPT,
                "No, that's wrong: the test expects 0, not None. It still fails.",
                "Good. Now add a one-line docstring to word_count.",
            ],
            [
                read(core),
                edit(core, MEAN_BUG, MEAN_WRONG, "ok", OK_EDIT, UPDATED, False),
                say(
                    "Fixed: mean_word_length('') returns None now.",
                    "user_correction",
                    "the user says the change is wrong and the test still fails",
                    "that's wrong",
                ),
                bash(
                    PYTEST,
                    "ok",
                    "runs the tests to see the failure the user reported: diagnostic, already counted",
                    "1 failed",
                    True,
                ),
                edit(core, MEAN_WRONG, MEAN_FIX, "ok", OK_EDIT, UPDATED, False),
                bash(PYTEST, "ok", "the suite passes", "5 passed", False),
                say("Now it returns 0 and the suite passes.", "ok", "the user moves on to the next task", "Good."),
                read(core),
                edit(
                    core,
                    "def word_count(text):\n",
                    'def word_count(text):\n    """Number of words."""\n',
                    "ok",
                    OK_EDIT,
                    UPDATED,
                    False,
                ),
                say("Added."),
            ],
        ),
        Scenario(
            "cc_missing_files",
            "claude_code",
            py,
            ["Show me the settings and the usage docs, then build the package."],
            [
                bash(
                    "cat config/settings.toml",
                    "ok",
                    "reads a settings file that is not there: the absence is the answer",
                    "No such file or directory",
                    True,
                ),
                read(
                    "{work}/docs/usage.md",
                    "ok",
                    "Read of a file that is not there: the absence is the answer",
                    "File does not exist",
                    True,
                ),
                bash(
                    "python scripts/build.py",
                    "task_failure",
                    "runs a build script that does not exist",
                    "can't open file",
                    True,
                ),
                bash("ls", "ok", "lists the directory", "textstats", False),
                bash("python -m pip --version", "ok", "checks pip is there", "pip", False),
                say("There are no settings, usage docs or build script in this repository."),
            ],
        ),
        Scenario(
            "cc_parallel_and_new_code",
            "claude_code",
            py,
            ["Add textstats/slug.py with slugify(text) and a test for it."],
            [
                cc(
                    [
                        ("Bash", {"command": "ls textstats", "description": "list"}),
                        ("Bash", {"command": "grep -rn slug textstats tests", "description": "search"}),
                    ],
                    "ok",
                    "two probes in parallel: one lists, one finds nothing (grep exit 1)",
                    ("core.py", "(Bash completed with no output)"),
                    False,
                ),
                cc(
                    [
                        (
                            "Write",
                            {
                                "file_path": "{work}/textstats/slug.py",
                                "content": "def slugify(text):\n    return text.lower().replace(' ', '_')\n",
                            },
                        ),
                        (
                            "Write",
                            {
                                "file_path": "{work}/tests/test_slug.py",
                                "content": "from textstats.slug import slugify\n\n\ndef test_slugify():\n"
                                "    assert slugify('Hello World') == 'hello-world'\n",
                            },
                        ),
                    ],
                    "ok",
                    "writes the module and its test",
                    "File created",
                    False,
                ),
                bash(
                    "python -m pytest -q tests/test_slug.py",
                    "task_failure",
                    "its new code fails its own test",
                    ("1 failed", "hello_world"),
                    True,
                ),
                edit("{work}/textstats/slug.py", "'_'", "'-'", "ok", OK_EDIT, UPDATED, False),
                bash("python -m pytest -q tests/test_slug.py", "ok", "the new test passes", "1 passed", False),
                say("slugify added with a passing test."),
            ],
        ),
    ]


# Codex steps: exec_command calls (apply_patch runs through it, as Codex intercepts it), raw calls


def calls(
    *pairs: tuple[str, str], kind: str, why: str, expect: tuple[str, ...] | str = (), text: str | None = None
) -> Step:
    return Step({"content": text, "calls": list(pairs)}, kind, why, (expect,) if isinstance(expect, str) else expect)


def sh(
    cmd: str, kind: str, why: str, expect: tuple[str, ...] | str = (), text: str | None = None, **extra: Any
) -> Step:
    return calls(("exec_command", json.dumps({"cmd": cmd, **extra})), kind=kind, why=why, expect=expect, text=text)


def exited(code: int) -> str:
    return f"Process exited with code {code}"


def patch_text(path: str, old: str, new: str) -> str:
    minus = "".join("-" + line + "\n" for line in old.splitlines())
    plus = "".join("+" + line + "\n" for line in new.splitlines())
    return f"*** Begin Patch\n*** Update File: {path}\n@@\n{minus}{plus}*** End Patch\n"


def add_file_text(path: str, content: str) -> str:
    plus = "".join("+" + line + "\n" for line in content.splitlines())
    return f"*** Begin Patch\n*** Add File: {path}\n{plus}*** End Patch\n"


def apply_patch(patch: str, kind: str, why: str, expect: tuple[str, ...] | str = ()) -> Step:
    return sh(f"apply_patch <<'PATCH'\n{patch}PATCH\n", kind, why, expect)


def cx_patch(path: str, old: str, new: str, kind: str = "ok", why: str = "", expect: str = "Success") -> Step:
    return apply_patch(patch_text(path, old, new), kind, why or "the patch applied (Success. Updated ...)", expect)


def poll_session(kind: str, why: str, expect: str) -> Step:
    """write_stdin to the session the previous command left running (its id is only known at run time)."""

    def reply(request: dict[str, Any]) -> dict[str, Any]:
        outputs = [i.get("output") for i in request["input"] if i.get("type") == "function_call_output"]
        session = int(str(outputs[-1]).split("Process running with session ID ")[1].split()[0])
        args = json.dumps({"session_id": session, "chars": "", "yield_time_ms": 2000})
        return {"content": "Still waiting on the tests; polling once more.", "calls": [("write_stdin", args)]}

    return Step({"dynamic": reply}, kind, why, (expect,))


def codex_scenarios() -> list[Scenario]:
    py, js = PY_REPO, JS_REPO
    core = "textstats/core.py"
    return [
        Scenario(
            "cx_fix_failing_test",
            "codex",
            py,
            [FIX_PROMPT],
            [
                sh(
                    PYTEST,
                    "ok",
                    "runs the suite to see the reported failure first (red phase)",
                    (exited(1), "ZeroDivisionError"),
                    "Let me look at the failing test.",
                ),
                sh(
                    f"sed -n 1,30p {core}",
                    "ok",
                    "prints the module; 'except ValueError:' is source",
                    (exited(0), "except ValueError:"),
                ),
                cx_patch(core, MEAN_BUG, MEAN_FIX),
                sh(PYTEST, "ok", "the suite passes", (exited(0), "5 passed")),
                say("Fixed."),
            ],
        ),
        Scenario(
            "cx_bad_patches",
            "codex",
            py,
            [FIX_PROMPT],
            [
                sh(f"cat {core}", "ok", "reads the module", exited(0)),
                cx_patch(
                    core,
                    "    return total / count\n",
                    MEAN_FIX,
                    "task_failure",
                    "apply_patch: the lines to replace are not in the file",
                    "Failed to find expected lines",
                ),
                cx_patch(
                    "textstats/stats.py",
                    MEAN_BUG,
                    MEAN_FIX,
                    "task_failure",
                    "apply_patch updates a file that does not exist",
                    "stats.py",
                ),
                apply_patch(
                    "*** Update File: textstats/core.py\n-a\n+b\n",
                    "task_failure",
                    "a patch without its Begin/End markers is refused",
                    "invalid patch",
                ),
                sh(
                    "grep -n 'return sum' textstats/core.py",
                    "ok",
                    "greps for the line after the failed patches: looking, no new attempt",
                    exited(0),
                ),
                cx_patch(core, MEAN_BUG, MEAN_FIX),
                sh(PYTEST, "ok", "the suite passes", "5 passed"),
                say("Fixed after re-reading the file."),
            ],
        ),
        Scenario(
            "cx_probes",
            "codex",
            py,
            ["Look around: TODOs, config files, linters, local changes?"],
            [
                sh("grep -rn TODO textstats", "ok", "grep finding nothing exits 1: a probe", exited(1)),
                sh("test -f setup.cfg", "ok", "test -f of an absent file: a probe", exited(1)),
                sh("which shellcheck", "ok", "which of a missing program: a probe", exited(1)),
                sh("ls docs || true", "ok", "|| true: the path may be missing", (exited(0), "No such file")),
                sh(
                    "diff fixtures/before.txt fixtures/after.txt",
                    "ok",
                    "diff shows the difference it was asked for",
                    (exited(1), "> gamma"),
                ),
                sh(
                    "git diff --exit-code README.md",
                    "ok",
                    "git diff --exit-code exits 1 on local changes: a probe",
                    (exited(1), "+Local note"),
                ),
                sh("find . -name '*.toml' -not -path './.git/*'", "ok", "find with no match", exited(0)),
                sh("command -v ruff || echo no-ruff", "ok", "probes for a linter", "no-ruff"),
                say("No TODOs or configs; README.md has a local change."),
            ],
            {"dirty": {"README.md": PY_REPO["README.md"] + "\nLocal note.\n"}},
        ),
        Scenario(
            "cx_reproduction",
            "codex",
            py,
            ["Bug report: mean_word_length('') crashes. Reproduce it first, then fix it."],
            [
                apply_patch(add_file_text("repro.py", REPRO_PY), "ok", "adds the repro script", "Success"),
                sh(
                    "python repro.py",
                    "ok",
                    "deliberate reproduction shows the reported ZeroDivisionError (red phase)",
                    (exited(1), "ZeroDivisionError"),
                    "Reproducing the crash first.",
                ),
                sh(
                    "python repro_empty.py",
                    "task_failure",
                    "the reproduction runs a script that does not exist",
                    (exited(2), "can't open file"),
                ),
                cx_patch(core, MEAN_BUG, MEAN_FIX),
                sh("python repro.py", "ok", "the repro prints 0 now", exited(0)),
                sh(PYTEST, "ok", "the suite passes", "5 passed"),
                say("Reproduced and fixed."),
            ],
        ),
        Scenario(
            "cx_malformed_calls",
            "codex",
            py,
            ["Run the word-count test."],
            [
                calls(
                    ("run_tests", '{"path": "tests"}'),
                    kind="task_failure",
                    why="calls a tool that does not exist",
                    expect="unsupported call",
                ),
                calls(
                    ("exec_command", '{"cmd": "python -m pytest -q"'),
                    kind="task_failure",
                    why="the call's arguments are not valid JSON",
                    expect="failed to parse function arguments",
                ),
                calls(
                    ("exec_command", '{"command": "ls"}'),
                    kind="task_failure",
                    why="exec_command without its required `cmd`",
                    expect="missing field",
                ),
                calls(
                    ("write_stdin", '{"session_id": 424242, "chars": "y\\n"}'),
                    kind="task_failure",
                    why="writes to a session that does not exist",
                    expect="424242",
                ),
                sh(
                    "python -m pytest -q tests/test_core.py::test_word_count",
                    "ok",
                    "a well-formed call; it passes",
                    "1 passed",
                ),
                say("The word-count test passes."),
            ],
        ),
        Scenario(
            "cx_hang",
            "codex",
            py,
            ["slow/test_poll.py never finishes; fix wait_until_ready."],
            [
                sh(
                    "timeout 3 python -m pytest -q slow/test_poll.py",
                    "task_failure",
                    "the test run hangs: killed by timeout, exit 124",
                    exited(124),
                ),
                sh("sed -n 1,12p textstats/poll.py", "ok", "reads the module", exited(0)),
                cx_patch(
                    "textstats/poll.py", "    while not check():\n", "    while not check():\n        tried += 1\n"
                ),
                sh(
                    "python -m pytest -q slow/test_poll.py",
                    "ok",
                    "still running when the call yielded: its outcome is not known yet",
                    "Process running with session ID",
                    yield_time_ms=2000,
                ),
                poll_session(
                    "ok",
                    "polls the same run, still running: its outcome is not known yet",
                    "Process running with session ID",
                ),
                cx_patch(
                    "textstats/poll.py",
                    "        tried += 1\n        time.sleep(0.1)\n",
                    "        tried += 1\n        if tried >= attempts:\n            break\n        time.sleep(0.1)\n",
                ),
                sh("timeout 20 python -m pytest -q slow/test_poll.py", "ok", "the test passes", "1 passed"),
                say("wait_until_ready gives up after `attempts` tries."),
            ],
        ),
        Scenario(
            "cx_environment",
            "codex",
            py,
            ["Run the report on README.md, check the stats fetcher and the cache, and record the run in /etc."],
            [
                sh(
                    "python -m textstats.report README.md",
                    "environment",
                    "tabulate is not installed",
                    (exited(1), "No module named 'tabulate'"),
                ),
                sh(
                    "pip install -q tabulate",
                    "environment",
                    "pip cannot reach an index (no network)",
                    "No matching distribution",
                ),
                sh(
                    "python -c 'import tabulate' 2>&1 | tail -1",
                    "ok",
                    "re-checks the same missing module: diagnostic",
                    "No module named 'tabulate'",
                ),
                sh(
                    "python scripts/fetch_stats.py",
                    "environment",
                    "STATS_API_KEY is not set: missing credentials",
                    "KeyError: 'STATS_API_KEY'",
                ),
                sh(
                    "python scripts/ping_cache.py",
                    "environment",
                    "the sandbox blocks network sockets: the cache cannot be reached",
                    "PermissionError: [Errno 1] Operation not permitted",
                ),
                sh(
                    "echo ran >> /etc/textstats-runs.log",
                    "environment",
                    "the sandbox refuses a write outside the workspace",
                    "Read-only file system",
                ),
                sh(
                    "python -c 'import tabluate'",
                    "task_failure",
                    "imports a misspelt module name",
                    "No module named 'tabluate'",
                ),
                say("tabulate cannot be installed (no network); the key and the cache service are missing."),
            ],
            {"sandbox": "workspace-write"},
        ),
        Scenario(
            "cx_pipe_hides_status",
            "codex",
            py,
            [FIX_PROMPT],
            [
                sh(f"cat {core}", "ok", "reads the module", exited(0)),
                cx_patch(core, MEAN_BUG, MEAN_WRONG),
                sh(
                    PYTEST + " 2>&1 | tail -3",
                    "task_failure",
                    "the fix does not work: 1 failed, though `| tail` makes the exit code 0",
                    (exited(0), "1 failed"),
                ),
                sh(
                    PYTEST + " tests/test_core.py::test_mean_word_length_empty 2>&1 | tail -5",
                    "ok",
                    "re-runs only the failing test to read it: diagnostic",
                    "1 failed",
                ),
                cx_patch(core, MEAN_WRONG, MEAN_FIX),
                sh(PYTEST + " 2>&1 | tail -3", "ok", "all pass", "5 passed"),
                say("Fixed."),
            ],
        ),
        Scenario(
            "cx_user_correction",
            "codex",
            py,
            [
                FIX_PROMPT,
                "No, that's wrong: the test expects 0, not None. It still fails.",
                "Thanks, that works. Show me the start of core.py.",
            ],
            [
                cx_patch(core, MEAN_BUG, MEAN_WRONG),
                say(
                    "Fixed: empty text returns None.",
                    "user_correction",
                    "the user says the change is wrong and the test still fails",
                    "that's wrong",
                ),
                sh(PYTEST, "ok", "runs the tests to see the failure the user reported: diagnostic", exited(1)),
                cx_patch(core, MEAN_WRONG, MEAN_FIX),
                sh(PYTEST, "ok", "the suite passes", "5 passed"),
                say(
                    "It returns 0 now and the suite passes.",
                    "ok",
                    "the user confirms and asks for something else",
                    "that works",
                ),
                sh(f"sed -n 1,8p {core}", "ok", "prints the file", exited(0)),
                say("Here it is."),
            ],
        ),
        Scenario(
            "cx_js_fix",
            "codex",
            js,
            ["parsePort('70000') should be rejected; test.js shows it. Fix app.js."],
            [
                sh(
                    "node test.js",
                    "ok",
                    "runs the test showing the reported bug (red phase)",
                    (exited(1), "AssertionError"),
                    "Running the failing test first.",
                ),
                sh("cat app.js", "ok", "prints app.js; 'console.error' is source", "console.error"),
                cx_patch("app.js", PORT_BUG, PORT_FIX),
                sh("node test.js", "ok", "the test passes", "all tests passed"),
                sh(
                    "node -e \"require('./app').parsePort('abc')\"",
                    "ok",
                    "shows the intended console.error for bad input, exit 0",
                    (exited(0), "invalid port: abc"),
                ),
                say("parsePort rejects ports above 65535."),
            ],
        ),
        Scenario(
            "cx_missing_files",
            "codex",
            py,
            ["Show me the settings and the usage docs, build the package and check the cache."],
            [
                sh(
                    "cat config/settings.toml",
                    "ok",
                    "reads a settings file that is not there: the absence is the answer",
                    (exited(1), "No such file"),
                ),
                sh(
                    "sed -n 1,40p docs/usage.md",
                    "ok",
                    "reads usage docs that are not there: the absence is the answer",
                    (exited(2), "No such file"),
                ),
                sh(
                    "python scripts/build.py",
                    "task_failure",
                    "runs a build script that does not exist",
                    "can't open file",
                ),
                sh("ls", "ok", "lists the directory", "textstats"),
                sh(
                    "python scripts/ping_cache.py",
                    "environment",
                    "the cache service on port 6390 is not running",
                    (exited(1), "ConnectionRefusedError"),
                ),
                say("There are no settings, docs or build script here, and the cache is down."),
            ],
        ),
        Scenario(
            "cx_parallel",
            "codex",
            py,
            ["Check the word-count test and the changelog."],
            [
                calls(
                    ("exec_command", json.dumps({"cmd": "ls textstats"})),
                    ("exec_command", json.dumps({"cmd": "grep -rn slugify textstats"})),
                    kind="ok",
                    why="two probes in one reply: a listing and a search with no match",
                    expect=(exited(0), exited(1)),
                ),
                calls(
                    ("exec_command", json.dumps({"cmd": "python -m pytest -q tests/test_core.py::test_word_count"})),
                    ("exec_command", json.dumps({"cmd": "cat CHANGELOG.md"})),
                    kind="ok",
                    why="a test that passes and a read of a file that is not there (an answer)",
                    expect=("1 passed", exited(1)),
                ),
                say("The test passes; there is no changelog."),
            ],
        ),
    ]


# aider steps: the model's whole reply (SEARCH/REPLACE blocks in the diff edit format)


def sr(path: str | None, search: str, replace: str, lang: str = "python") -> str:
    name = f"{path}\n" if path else ""
    return f"{name}```{lang}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"


def ad(text: str, kind: str | None, why: str = "", expect: tuple[str, ...] | str = ()) -> Step:
    return Step({"content": text}, kind, why, (expect,) if isinstance(expect, str) else expect)


NO_MATCH = "SEARCH/REPLACE block failed to match"
REPORT_LINE = '    print(tabulate([["words", word_count(text)], ["mean length", mean_word_length(text)]]))\n'
TAB_TEST = 'def test_word_count_tabs():\n    assert word_count("a\\tb") == 2\n'


def aider_scenarios() -> list[Scenario]:
    py, js = PY_REPO, JS_REPO
    core = "textstats/core.py"
    test_opts = {"chat": [core], "test_cmd": PYTEST}
    return [
        Scenario(
            "ad_fix_with_tests",
            "aider",
            py,
            [FIX_PROMPT, "Thanks. Now give word_count a docstring."],
            [
                ad(
                    "Guarding the empty case:\n\n" + sr(core, "    return total / count\n", MEAN_FIX),
                    "task_failure",
                    "the SEARCH block is not in the file: aider reports it failed to match",
                    NO_MATCH,
                ),
                ad(
                    "Retrying with the exact line:\n\n" + sr(core, MEAN_BUG, MEAN_WRONG),
                    "task_failure",
                    "the edit applied but aider's test run fails (None != 0)",
                    ("1 failed", "assert None == 0"),
                ),
                ad(
                    "Returning 0 instead:\n\n" + sr(core, MEAN_WRONG, MEAN_FIX),
                    "ok",
                    "tests pass (aider sends nothing back); the user moves on",
                    "docstring",
                ),
                ad(
                    "Docstring:\n\n"
                    + sr(core, "def word_count(text):\n", 'def word_count(text):\n    """Number of words."""\n'),
                    None,
                ),
            ],
            test_opts,
        ),
        Scenario(
            "ad_edit_format_errors",
            "aider",
            py,
            [FIX_PROMPT, "Thanks."],
            [
                ad(
                    "Here is the fix:\n\n" + sr(None, MEAN_BUG, MEAN_FIX),
                    "task_failure",
                    "the block has no filename: aider says it did not conform",
                    "Bad/missing filename",
                ),
                ad(
                    f"{core}\n```python\n<<<<<<< SEARCH\n{MEAN_BUG}>>>>>>> REPLACE\n```\n",
                    "task_failure",
                    "the block lacks its ======= divider: malformed edit",
                    "Expected `=======`",
                ),
                ad(
                    "Fixed block:\n\n" + sr(core, MEAN_BUG, MEAN_FIX),
                    "ok",
                    "applied; tests pass (aider sends nothing back); the user thanks",
                    "Thanks.",
                ),
                ad("You're welcome.", None),
            ],
            test_opts,
        ),
        Scenario(
            "ad_lint_error",
            "aider",
            py,
            [FIX_PROMPT, "Thanks."],
            [
                ad(
                    "Fix:\n\n"
                    + sr(
                        core,
                        MEAN_BUG,
                        "    if not words:\n        return 0\n    return sum(len(w) for w in words / len(words)\n",
                    ),
                    "task_failure",
                    "the edit leaves a syntax error: aider's lint reports it",
                    "SyntaxError",
                ),
                ad(
                    "Closing the parenthesis:\n\n"
                    + sr(core, "    return sum(len(w) for w in words / len(words)\n", MEAN_BUG),
                    "ok",
                    "lint and tests pass; the user thanks",
                    "Thanks.",
                ),
                ad("You're welcome.", None),
            ],
            test_opts,
        ),
        Scenario(
            "ad_user_correction",
            "aider",
            py,
            [FIX_PROMPT, "No, that's wrong: it returns None, the test expects 0.", "Great, that works now. Thanks!"],
            [
                ad(
                    "Guard added:\n\n" + sr(core, MEAN_BUG, MEAN_WRONG),
                    "user_correction",
                    "the user says the change is wrong",
                    "that's wrong",
                ),
                ad(
                    "Returning 0:\n\n" + sr(core, MEAN_WRONG, MEAN_FIX),
                    "ok",
                    "the user confirms it works",
                    "that works",
                ),
                ad("Glad it works.", None),
            ],
            {"chat": [core]},
        ),
        Scenario(
            "ad_explain_and_read",
            "aider",
            py,
            ["What does parse_ratio do with bad input?", "And what about '1/0'?", "Ok, make it return None then."],
            [
                ad(
                    "It catches the parse failure:\n\n```python\n    except ValueError:\n        return None\n```\n"
                    "so bad input gives None.",
                    "ok",
                    "an explanation quoting `except ValueError:`; the user asks more",
                    "1/0",
                ),
                ad(
                    "'1/0' raises ZeroDivisionError, which `except ValueError:` does not catch.",
                    "ok",
                    "an answer; the user gives the next task",
                    "return None",
                ),
                ad("Catching it:\n\n" + sr(core, RATIO_BUG, RATIO_FIX), None),
            ],
            {"chat": [core]},
        ),
        Scenario(
            "ad_environment",
            "aider",
            py,
            ["Make the report print the mean length with 2 decimals.", "OK, skip the report for now."],
            [
                ad(
                    "Rounding:\n\n"
                    + sr(
                        "textstats/report.py",
                        REPORT_LINE,
                        REPORT_LINE.replace("mean_word_length(text)", "round(mean_word_length(text), 2)"),
                    ),
                    "environment",
                    "edit applied; the test run fails because tabulate is not installed",
                    "No module named 'tabulate'",
                ),
                ad(
                    "tabulate is not installed in this environment; install it with pip install tabulate.",
                    "ok",
                    "explains the environment problem; the user moves on",
                    "skip the report",
                ),
                ad("Understood.", None),
            ],
            {"chat": ["textstats/report.py"], "test_cmd": "python -c 'import textstats.report'"},
        ),
        Scenario(
            "ad_test_tool_missing",
            "aider",
            py,
            [FIX_PROMPT, "Fine, we don't have tox here."],
            [
                ad(
                    "Fix:\n\n" + sr(core, MEAN_BUG, MEAN_FIX),
                    "environment",
                    "edit applied; the configured test command (tox) is not installed",
                    "tox",
                ),
                ad("The test command `tox` is not available here.", "ok", "the user accepts", "tox"),
                ad("Understood.", None),
            ],
            {"chat": [core], "test_cmd": "tox -q"},
        ),
        Scenario(
            "ad_js_fix",
            "aider",
            js,
            ["parsePort('70000') should be rejected. Fix app.js.", "Thanks."],
            [
                ad(
                    "Upper bound:\n\n" + sr("app.js", PORT_BUG, PORT_FIX.replace("65535", "700000"), "js"),
                    "task_failure",
                    "edit applied; node test.js still fails (bound too high)",
                    "AssertionError",
                ),
                ad(
                    "Correct bound:\n\n" + sr("app.js", PORT_FIX.replace("65535", "700000"), PORT_FIX, "js"),
                    "ok",
                    "tests pass; the user thanks",
                    "Thanks.",
                ),
                ad("You're welcome.", None),
            ],
            {"chat": ["app.js"], "test_cmd": "node test.js"},
        ),
        Scenario(
            "ad_mentions_and_new_file",
            "aider",
            py,
            ["Add a slugify helper in textstats/slug.py, with a test.", "Thanks, looks good."],
            [
                ad(
                    "I will need tests/test_core.py for the test style.",
                    "ok",
                    "mentions a file; aider adds it to the chat and says so (no outcome)",
                    "I added these files",
                ),
                ad(
                    "New files:\n\n"
                    + sr("textstats/slug.py", "", "def slugify(text):\n    return '-'.join(text.lower().split())\n")
                    + "\n"
                    + sr(
                        "tests/test_slug.py",
                        "",
                        "from textstats.slug import slugify\n\n\ndef test_slugify():\n"
                        "    assert slugify('Hello World') == 'hello-world'\n",
                    ),
                    "ok",
                    "creates the module and a passing test; the user approves",
                    "looks good",
                ),
                ad("Thanks.", None),
            ],
            {"chat": [core], "test_cmd": "python -m pytest -q tests/test_slug.py"},
        ),
        Scenario(
            "ad_repeated_mismatch",
            "aider",
            py,
            [FIX_PROMPT, "Stop. core.py has `return sum(len(w) for w in words) / len(words)`; use that."],
            [
                ad(
                    "Fix:\n\n" + sr(core, "    return sum(words) / len(words)\n", MEAN_FIX),
                    "task_failure",
                    "SEARCH does not match",
                    NO_MATCH,
                ),
                ad(
                    "Again:\n\n" + sr(core, "    return total / len(words)\n", MEAN_FIX),
                    "task_failure",
                    "SEARCH still does not match: a new attempt that fails",
                    NO_MATCH,
                ),
                ad(
                    "Once more:\n\n" + sr(core, "    return sum(len(w) for w in text) / len(words)\n", MEAN_FIX),
                    "task_failure",
                    "a third SEARCH that does not match",
                    NO_MATCH,
                ),
                ad(
                    "Last try:\n\n" + sr(core, "    return sum(map(len, words)) / len(words)\n", MEAN_FIX),
                    "user_correction",
                    "aider stops reflecting after 3; the user steps in and says what is wrong",
                    "Stop.",
                ),
                ad("Using that line:\n\n" + sr(core, MEAN_BUG, MEAN_FIX), None),
            ],
            test_opts,
        ),
        Scenario(
            "ad_long_session",
            "aider",
            py,
            [
                FIX_PROMPT,
                "Make parse_ratio return None for '1/0' too.",
                "That doesn't work: parse_ratio('1/0') still raises ZeroDivisionError.",
                "Thanks. What does word_count do with tabs?",
                "Add a test for that.",
                "Now rename word_count to count_words everywhere.",
                "Perfect, thanks.",
            ],
            [
                ad(
                    "Guard:\n\n" + sr(core, MEAN_BUG, MEAN_FIX),
                    "ok",
                    "tests pass; the user gives the next task",
                    "parse_ratio",
                ),
                ad(
                    "Catching more errors:\n\n" + sr(core, RATIO_BUG, RATIO_WRONG),
                    "user_correction",
                    "the suite has no 1/0 test so it passes, but the user reports the call still raises",
                    "doesn't work",
                ),
                ad(
                    "Catching ZeroDivisionError:\n\n" + sr(core, RATIO_WRONG, RATIO_FIX),
                    "ok",
                    "tests pass; the user thanks and asks a question",
                    "tabs",
                ),
                ad(
                    "`text.split()` splits on any whitespace, tabs included, so 'a\\tb' has 2 words.",
                    "ok",
                    "an answer; the user asks for a test",
                    "Add a test",
                ),
                ad(
                    "Test:\n\n"
                    + sr(
                        "tests/test_core.py",
                        "def test_mean_word_length():\n",
                        TAB_TEST + "\n\ndef test_mean_word_length():\n",
                    ),
                    "ok",
                    "the new test passes; the user gives the next task",
                    "rename",
                ),
                ad(
                    "Renaming:\n\n" + sr(core, "def word_count(text):\n", "def count_words(text):\n"),
                    "task_failure",
                    "renamed only the definition: the package import breaks the test run",
                    "ImportError",
                ),
                ad(
                    "Updating the imports and tests:\n\n"
                    + sr(
                        "textstats/__init__.py",
                        "from .core import mean_word_length, parse_ratio, word_count\n",
                        "from .core import count_words, mean_word_length, parse_ratio\n",
                    )
                    + "\n"
                    + sr(
                        "tests/test_core.py",
                        "from textstats import mean_word_length, parse_ratio, word_count\n",
                        "from textstats import count_words as word_count, mean_word_length, parse_ratio\n",
                    ),
                    "ok",
                    "tests pass; the user is satisfied",
                    "Perfect",
                ),
                ad("You're welcome.", None),
            ],
            {"chat": [core, "textstats/__init__.py", "tests/test_core.py"], "test_cmd": PYTEST},
        ),
        Scenario(
            "ad_js_session",
            "aider",
            js,
            [
                "What does parsePort print on bad input?",
                "OK. Reject ports above 65535.",
                "Add a short comment above the function.",
                "Now accept ' 8080 ' with surrounding spaces.",
                "Thanks.",
            ],
            [
                ad(
                    "It logs `console.error(`invalid port: ${value}`)` and returns null.",
                    "ok",
                    "an answer quoting console.error; the user gives the next task",
                    "Reject ports",
                ),
                ad(
                    "Upper bound:\n\n" + sr("app.js", PORT_BUG, PORT_FIX, "js"),
                    "ok",
                    "node test.js passes; the user gives the next task",
                    "comment",
                ),
                ad(
                    "Comment:\n\n"
                    + sr(
                        "app.js",
                        "function parsePort(value) {\n",
                        "// Parse a TCP port; null when invalid.\nfunction parsePort(value) {\n",
                        "js",
                    ),
                    "ok",
                    "applied, tests pass; the user gives the next task",
                    "spaces",
                ),
                ad(
                    "Trimming:\n\n"
                    + sr(
                        "app.js", "  const port = parseInt(value);\n", "  const port = parseInt(value.trim());\n", "js"
                    ),
                    "task_failure",
                    "the SEARCH names a line app.js does not have: aider reports no exact match",
                    "failed to match",
                ),
                ad(
                    "With the indentation:\n\n"
                    + sr(
                        "app.js",
                        "  const port = Number(value);\n",
                        "  const port = Number(String(value).trim());\n",
                        "js",
                    ),
                    "ok",
                    "applied, tests pass; the user thanks",
                    "Thanks.",
                ),
                ad("You're welcome.", None),
            ],
            {"chat": ["app.js"], "test_cmd": "node test.js"},
        ),
        Scenario(
            "ad_new_module_failing_test",
            "aider",
            py,
            ["Add textstats/slug.py with slugify(text) joining lower-cased words with '-', and a test.", "Thanks."],
            [
                ad(
                    "New files:\n\n"
                    + sr("textstats/slug.py", "", "def slugify(text):\n    return '_'.join(text.lower().split())\n")
                    + "\n"
                    + sr(
                        "tests/test_slug.py",
                        "",
                        "from textstats.slug import slugify\n\n\ndef test_slugify():\n"
                        "    assert slugify('Hello World') == 'hello-world'\n",
                    ),
                    "task_failure",
                    "its new code fails its own new test (aider's test run)",
                    ("1 failed", "hello_world"),
                ),
                ad(
                    "Using '-':\n\n"
                    + sr(
                        "textstats/slug.py",
                        "    return '_'.join(text.lower().split())\n",
                        "    return '-'.join(text.lower().split())\n",
                    ),
                    "ok",
                    "the test passes; the user thanks",
                    "Thanks.",
                ),
                ad("You're welcome.", None),
            ],
            {"chat": [core], "test_cmd": "python -m pytest -q tests/test_slug.py"},
        ),
        Scenario(
            "ad_questions",
            "aider",
            py,
            [
                "Where does the ZeroDivisionError in mean_word_length come from?",
                "Which tests cover parse_ratio?",
                "Does parse_ratio ever raise?",
                "Thanks, that's all.",
            ],
            [
                ad(
                    "`sum(...) / len(words)` divides by zero when `text` has no words, raising ZeroDivisionError.",
                    "ok",
                    "an answer about an error; the user asks the next question",
                    "Which tests",
                ),
                ad(
                    "test_parse_ratio and test_parse_ratio_error_returns_none in tests/test_core.py.",
                    "ok",
                    "an answer (test names with 'error'); the user asks more",
                    "ever raise",
                ),
                ad(
                    "It raises ZeroDivisionError for '1/0': `except ValueError:` does not catch it.",
                    "ok",
                    "an answer quoting an except clause; the user is done",
                    "that's all",
                ),
                ad("You're welcome.", None),
            ],
            {"chat": [core, "tests/test_core.py"]},
        ),
        Scenario(
            "ad_lint_undefined_name",
            "aider",
            py,
            ["word_count should ignore punctuation-only tokens.", "Thanks."],
            [
                ad(
                    "Filtering:\n\n"
                    + sr(
                        core,
                        "    return len(text.split())\n",
                        "    return len([w for w in text.split() if not is_punct(w)])\n",
                    ),
                    "task_failure",
                    "the edit uses an undefined name: aider's flake8 lint reports F821",
                    "F821",
                ),
                ad(
                    "Defining the check:\n\n"
                    + sr(
                        core,
                        "    return len([w for w in text.split() if not is_punct(w)])\n",
                        "    return len([w for w in text.split() if any(c.isalnum() for c in w)])\n",
                    ),
                    "ok",
                    "lint passes; the user thanks",
                    "Thanks.",
                ),
                ad("You're welcome.", None),
            ],
            {"chat": [core]},
        ),
    ]


SCENARIOS = [*claude_scenarios(), *codex_scenarios(), *aider_scenarios()]


# -- the fake Responses API upstream Codex talks to (tests/openai_server.py speaks Chat Completions) --


class ResponsesServer:
    """Scripted Responses API on 127.0.0.1: each request takes the next step ({"content": text, "calls":
    [(name, arguments)]}, or {"dynamic": fn(request) -> step}) and gets it as a streamed response."""

    def __init__(self) -> None:
        self.steps: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.paths.append(self.path)
                    n = len(server.requests)
                    step = server.steps.popleft() if server.steps else {"content": "(unscripted)"}
                if "dynamic" in step:
                    step = step["dynamic"](body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(server.events(body, step, n))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def events(body: dict[str, Any], step: dict[str, Any], n: int) -> bytes:
        items: list[dict[str, Any]] = []
        if step.get("content"):
            part = {"type": "output_text", "text": step["content"], "annotations": []}
            items.append(
                {"type": "message", "id": f"msg_{n}", "status": "completed", "role": "assistant", "content": [part]}
            )
        for i, (name, arguments) in enumerate(step.get("calls", ())):
            items.append(
                {
                    "type": "function_call",
                    "id": f"fc_{n}_{i}",
                    "call_id": f"call_{n}_{i}",
                    "name": name,
                    "arguments": arguments,
                    "status": "completed",
                }
            )
        usage = {
            "input_tokens": 11,
            "output_tokens": 7,
            "total_tokens": 18,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        response = {
            "id": f"resp_{n}",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": body.get("model"),
            "output": items,
            "usage": usage,
        }
        seq = itertools.count()

        def event(kind: str, **data: Any) -> bytes:
            return (
                f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': next(seq), **data})}\n\n".encode()
            )

        out = event("response.created", response={**response, "status": "in_progress", "output": []})
        for i, item in enumerate(items):
            out += event("response.output_item.added", output_index=i, item=item)
            out += event("response.output_item.done", output_index=i, item=item)
        return out + event("response.completed", response=response)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- running one scenario --


def _substitute(value: Any, work: str) -> Any:
    """The scenario's "{work}" placeholders (absolute paths for Claude Code's file tools) filled in."""
    if isinstance(value, str):
        return value.replace("{work}", work)
    if isinstance(value, list):
        return [_substitute(v, work) for v in value]
    if isinstance(value, tuple):
        return tuple(_substitute(v, work) for v in value)
    if isinstance(value, dict):
        return {k: _substitute(v, work) for k, v in value.items()}
    return value


def _repo(scn: Scenario, work: Path) -> None:
    for rel, text in scn.files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    git = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run(git + args, cwd=work, check=True, capture_output=True)
    for rel, text in scn.options.get("dirty", {}).items():
        (work / rel).write_text(text)


def _bin(scratch: Path) -> Path:
    """A bin directory with only the Python running this script (it has pytest) and its pip: the machine's
    other tools (ruff, mypy, ...) stay out of the scenarios' reach, as on a plain developer machine."""
    real = Path(sys.executable).resolve().parent
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3", "pip", "pip3"):  # pytest: as `python -m pytest`
        (bin_dir / name).symlink_to(real / name)
    return bin_dir


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no keys or settings of this machine, a scratch HOME, the scratch bin directory
    first on PATH, pip pointed at a closed local port (no network)."""
    return {
        "PATH": f"{home.parents[1] / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def _kill_leftovers(scratch: Path) -> None:
    """Processes the agent left running in the scenario's directory (a hanging test Codex yielded on)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(scratch)):
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _run(argv: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise SystemExit(f"{argv[0]} did not finish within {RUN_TIMEOUT} s:\n{out[-3000:]}\n{err[-3000:]}") from None
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # tools it left behind in its group
    except ProcessLookupError:
        pass
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {proc.returncode}:\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_claude(scn: Scenario, replies: list[dict[str, Any]], work: Path, home: Path) -> Any:
    server = anthropic_server.Server()
    server.script(MODEL, *replies)
    env = _env(
        home,
        ANTHROPIC_BASE_URL=server.base,
        ANTHROPIC_API_KEY="scripted-not-a-key",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
    )
    allowed = scn.options.get("allowed", ["Bash", "Read", "Edit", "Write", "Grep", "Glob"])
    session = None
    try:
        for prompt in scn.prompts:
            argv = [CLAUDE, "-p", prompt, "--model", MODEL, "--output-format", "json", "--allowedTools", *allowed]
            if scn.options.get("disallowed"):
                argv += ["--disallowedTools", *scn.options["disallowed"]]
            if session:
                argv += ["--resume", session]
            session = json.loads(_run(argv, work, env).stdout)["session_id"]
    finally:
        server.close()
    return server


def run_codex(scn: Scenario, replies: list[dict[str, Any]], work: Path, home: Path) -> Any:
    server = ResponsesServer()
    server.steps.extend(replies)
    codex_home = home / "codex"
    codex_home.mkdir()
    config = f"""model = "{MODEL}"
model_provider = "scripted"
approval_policy = "never"
sandbox_mode = "{scn.options.get("sandbox", "danger-full-access")}"
check_for_update_on_startup = false
[analytics]
enabled = false
[model_providers.scripted]
name = "scripted upstream"
base_url = "{server.base}"
wire_api = "responses"
env_key = "SCRIPTED_KEY"
[projects."{work}"]
trust_level = "trusted"
"""
    (codex_home / "config.toml").write_text(config)
    env = _env(home, CODEX_HOME=str(codex_home), SCRIPTED_KEY="scripted-not-a-key")
    thread = None
    try:
        for prompt in scn.prompts:
            argv = [CODEX, "exec", "--strict-config", "--skip-git-repo-check", "--json"]
            argv += ["resume", thread, prompt] if thread else [prompt]
            out = _run(argv, work, env).stdout
            thread = thread or next(json.loads(x)["thread_id"] for x in out.splitlines() if "thread.started" in x)
    finally:
        server.close()
    return server


def run_aider(scn: Scenario, replies: list[dict[str, Any]], work: Path, home: Path) -> Any:
    server = openai_server.Server()
    server.script(MODEL, *replies)
    env = _env(home, OPENAI_API_KEY="scripted-not-a-key", OPENAI_API_BASE=server.base)
    argv = [
        AIDER,
        "--model",
        f"openai/{MODEL}",
        "--weak-model",
        "openai/scripted-weak",
        "--yes-always",
        "--no-pretty",
        "--no-fancy-input",
        "--no-check-update",
        "--no-analytics",
        "--no-show-model-warnings",
        "--no-show-release-notes",
        "--no-auto-commits",
        "--map-tokens",
        "0",
        "--edit-format",
        "diff",
    ]
    if scn.options.get("test_cmd"):
        argv += ["--test-cmd", scn.options["test_cmd"], "--auto-test"]
    argv += scn.options.get("chat", [])
    try:
        _run(argv, work, env, stdin="".join(p + "\n" for p in scn.prompts))
    finally:
        server.close()
    return server


RUNNERS = {"claude_code": run_claude, "codex": run_codex, "aider": run_aider}
PROTOCOL = {"claude_code": "anthropic", "codex": "responses", "aider": "openai"}


# -- what came back after a reply, and the checks that the label is what really happened --


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if isinstance(block, dict):
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif "content" in block:
                parts.append(_text(block["content"]))
    return "\n".join(parts)


def evidence(protocol: str, body: dict[str, Any], n: int) -> tuple[list[str], str, list[bool]]:
    """(names of the tools the last reply called, the text that came back after it, is_error flags).
    `n` is the request number that served the reply (Codex's call ids carry it)."""
    if protocol == "responses":
        items = body["input"]
        ids = {
            i["call_id"] for i in items if i.get("type") == "function_call" and i["call_id"].startswith(f"call_{n}_")
        }
        names = [i["name"] for i in items if i.get("type") == "function_call" and i["call_id"] in ids]
        last = max(i for i, item in enumerate(items) if item.get("role") == "assistant" or item.get("call_id") in ids)
        after = [str(i.get("output")) for i in items if i.get("type") == "function_call_output" and i["call_id"] in ids]
        after += [_text(i.get("content")) for i in items[last + 1 :] if i.get("role") == "user"]
        return names, "\n".join(after), []
    messages = body["messages"]
    if protocol == "openai":  # aider: its report (or the user's next message) is the last message
        return [], _text(messages[-1].get("content")), []
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    reply = messages[last]
    names = [b["name"] for b in reply["content"] if isinstance(b, dict) and b.get("type") == "tool_use"]
    texts, flags = [], []
    for m in messages[last + 1 :]:
        if m["role"] != "user":
            continue
        for b in m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]:
            if b.get("type") == "tool_result":
                texts.append(_text(b.get("content")))
                flags.append(b.get("is_error") is True)
            elif b.get("type") == "text":
                texts.append(b["text"])
    return names, "\n".join(texts), flags


# What aider writes as the assistant's side of its own bookkeeping exchanges ("I updated the files.",
# the files' contents): never a model reply.
AIDER_ACKS = {"Ok.", "Ok, any changes I propose will be to those files."}


def _reply_text(protocol: str, body: dict[str, Any]) -> str:
    if protocol == "responses":
        said = [i for i in body["input"] if i.get("role") == "assistant" and i.get("type") == "message"]
        return _text(said[-1]["content"]) if said else ""
    texts = [_text(m["content"]) for m in body["messages"] if m["role"] == "assistant"]
    if protocol == "openai":  # aider follows a reply with acknowledgements of its own
        texts = [t for t in texts if t not in AIDER_ACKS]
    return texts[-1]


def _stub(content: Any) -> str:
    """A system prompt replaced by a line of ours: the agents' own prose is not kept in this repository.
    The one phrase a reader detects an agent by is named (aider teaches its SEARCH/REPLACE format)."""
    text = content if isinstance(content, str) else _text(content)
    said = " (it teaches the SEARCH/REPLACE edit format)" if "SEARCH/REPLACE" in text else ""
    return f"[the agent's system text, {len(text)} characters, not kept here{said}]"


AIDER_RULES = "# *SEARCH/REPLACE block* Rules:"
REMINDER = "<system-reminder>"


def _own_words(text: str) -> str:
    """A user message's text without the agent's own boilerplate prose (aider's format rules appended
    to its reports, Claude Code's system reminders); what the tools printed is kept whole."""
    if AIDER_RULES in text:
        text = text.split(AIDER_RULES, 1)[0] + AIDER_RULES + " [aider's format rules, not kept here]"
    if text.lstrip().startswith(REMINDER):
        return REMINDER + "[the agent's reminder text, not kept here]</system-reminder>"
    return text


def _user(content: Any) -> Any:
    if isinstance(content, str):
        return _own_words(content)
    if isinstance(content, list):
        return [
            {**b, "text": _own_words(b["text"])} if isinstance(b, dict) and isinstance(b.get("text"), str) else b
            for b in content
        ]
    return content


def reduce_body(protocol: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body as sent, with tools reduced to their names, system prompts replaced by a line of ours
    and the agents' boilerplate cut from user messages (what their tools printed is kept)."""
    body = copy.deepcopy(body)
    if protocol == "anthropic":
        body["tools"] = [{"name": t.get("name")} for t in body.get("tools") or ()]
        if "system" in body:
            body["system"] = _stub(body["system"])
        for m in body["messages"]:
            m["content"] = _stub(m["content"]) if m["role"] == "system" else _user(m["content"])
    elif protocol == "openai":
        if "tools" in body:
            body["tools"] = [{"type": "function", "function": {"name": t["function"]["name"]}} for t in body["tools"]]
        for m in body["messages"]:
            if m["role"] in ("system", "developer"):
                m["content"] = _stub(m["content"])
            elif m["role"] == "user":
                m["content"] = _user(m["content"])
    else:
        body["tools"] = [{"type": t.get("type"), "name": t.get("name")} for t in body.get("tools") or ()]
        if isinstance(body.get("instructions"), str):
            body["instructions"] = _stub(body["instructions"])
        for item in body["input"]:
            if item.get("role") in ("system", "developer"):
                item["content"] = _stub(item["content"])
            elif item.get("role") == "user":
                item["content"] = _user(item["content"])
    return body


def _parsed(protocol: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    if protocol == "anthropic":
        system = body.get("system")
        text = system if isinstance(system, str) else _text(system)
        return anthropic_messages(body), text
    if protocol == "responses":
        return responses_messages(body["input"]), str(body.get("instructions") or "")
    messages = body["messages"]
    return messages, "\n".join(str(m["content"]) for m in messages if m["role"] in ("system", "developer"))


class Mismatch(Exception):
    """A scenario whose real run differs from its design."""


def judged_lines(scn: Scenario, server: Any) -> list[dict[str, Any]]:
    """The corpus lines of one run: request k+1 judged by the label of scripted reply k, once checked."""
    protocol = PROTOCOL[scn.agent]
    main = [
        (n, path, headers, body)
        for n, (path, headers, body) in enumerate(zip(server.paths, server.headers, server.requests, strict=True), 1)
        if body.get("model") == MODEL
    ]
    if len(main) != len(scn.steps):
        raise Mismatch(f"{len(scn.steps)} scripted replies, {len(main)} requests for them")
    lines = []
    for (n_prev, _, _, _), (_, path, headers, body), step in zip(main, main[1:], scn.steps, strict=False):
        where = f"{scn.name}: reply {scn.steps.index(step) + 1} ({step.why or step.reply})"
        if step.kind not in KINDS:
            raise Mismatch(f"{where}: it is followed by a request, so it needs a kind")
        messages, system = _parsed(protocol, body)
        if (side := side_call(headers, body, messages, system)) is not None:
            raise Mismatch(f"{where}: the request after it is a side call ({side})")
        names, text, flags = evidence(protocol, body, n_prev)
        wanted = [c[0] for c in step.reply.get("calls", ())] or [u["name"] for u in step.reply.get("tool_use", ())]
        if "dynamic" not in step.reply and names != wanted:
            raise Mismatch(f"{where}: the request's last reply called {names}, scripted {wanted}")
        if step.reply.get("content") and step.reply["content"].strip() not in _reply_text(protocol, body):
            raise Mismatch(f"{where}: the request does not carry the scripted reply's text")
        missing = [e for e in step.expect if e not in text]
        if missing or (step.error is not None and any(flags) != step.error):
            raise Mismatch(f"{where}: expected {missing or step.expect} (is_error {step.error}), got {flags}:\n{text}")
        lines.append(
            {
                "agent": scn.agent,
                "protocol": protocol,
                "path": path,
                "headers": {k: v for k, v in headers.items() if k in KEEP_HEADERS},
                "body": reduce_body(protocol, body),
                "scenario": scn.name,
                "kind": step.kind,
                "why": step.why,
                "_evidence": (text, flags),  # for --show; not written
            }
        )
    if scn.steps[-1].kind is not None:
        raise Mismatch(f"{scn.name}: the last reply is never judged (nothing follows it); give it no kind")
    return lines


def run_scenario(scn: Scenario, scratch: Path) -> list[dict[str, Any]]:
    base = scratch / scn.name
    work, home = base / "work", base / "home"
    work.mkdir(parents=True)
    home.mkdir()
    # Codex runs commands in a login shell, whose /etc/profile resets PATH: the profile puts the bin back.
    (home / ".bash_profile").write_text(f'export PATH="{scratch / "bin"}:$PATH"\n')
    _repo(scn, work)
    replies = [_substitute(s.reply, str(work)) for s in scn.steps]
    scn = Scenario(
        scn.name,
        scn.agent,
        scn.files,
        scn.prompts,
        [
            Step(r, s.kind, s.why, _substitute(s.expect, str(work)), s.error)
            for r, s in zip(replies, scn.steps, strict=True)
        ],
        scn.options,
    )
    try:
        server = RUNNERS[scn.agent](scn, replies, work, home)
    finally:
        _kill_leftovers(base)
    return judged_lines(scn, server)


def _check_agents(agents: set[str]) -> None:
    for agent in sorted(agents):
        path, version = VERSIONS[agent]
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{agent} not found at {path}: see this file's docstring for how to install it")
        with tempfile.TemporaryDirectory() as home:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "CODEX_HOME": home}
            said = subprocess.run([path, "--version"], capture_output=True, text=True, env=env, timeout=60).stdout
        if version not in said:
            raise SystemExit(f"{path} says {said.strip()!r}, not version {version}: the scenarios script that version")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run only scenarios whose name starts with this (prints, writes nothing)")
    parser.add_argument("--out", type=Path, help=f"where to write the corpus (default {OUT}; with --only: nowhere)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directories (printed)")
    parser.add_argument("--show", action="store_true", help="print each judged turn's label and evidence")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s.name.startswith(args.only)]
    if not chosen:
        raise SystemExit(f"no scenario matches {args.only!r}")
    _check_agents({s.agent for s in chosen})
    scratch = Path(tempfile.mkdtemp(prefix="lwfsm-corpus-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    _bin(scratch)
    lines: list[dict[str, Any]] = []
    failed = []
    started = time.monotonic()
    try:
        for scn in chosen:
            t = time.monotonic()
            try:
                got = run_scenario(scn, scratch)
            except Mismatch as e:
                failed.append(scn.name)
                print(f"MISMATCH {e}", file=sys.stderr)
                continue
            lines += got
            for line in got if args.show else ():
                text, flags = line["_evidence"]
                print(f"--- {line['kind']}: {line['why']} {flags}\n{text[:600]}", file=sys.stderr)
            print(f"{scn.name:32} {len(got):3} turns  {time.monotonic() - t:5.1f} s", file=sys.stderr)
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{len(lines)} judged turns in {time.monotonic() - started:.0f} s", file=sys.stderr)
    for key in ("agent", "kind"):
        print(f"  by {key}: {dict(sorted(Counter(line[key] for line in lines).items()))}", file=sys.stderr)
    if failed:
        raise SystemExit(f"scenarios whose run differs from their design: {', '.join(failed)}")
    out = args.out or (None if args.only else OUT)
    if out:
        with gzip.open(out, "wt", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps({k: v for k, v in line.items() if k != "_evidence"}, ensure_ascii=False) + "\n")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
