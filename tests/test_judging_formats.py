"""The judge's rules for agents' own formats and people's own words, each on the format it reads.

Observations are written the way each agent prints them (SWE-agent's windowed file viewer and
harness templates, aider's chat history, Claude Code's tool results, curl's `-w "%{http_code}"`);
the rules are for the formats, so each has a case it must catch and a case it must leave alone.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from lwfsm.turn.agents import aider, claude_code, codex, openhands, swe_agent, text_of
from lwfsm.turn.judge import judge


def call(name: str, args: dict[str, Any], cid: str = "c1") -> dict[str, Any]:
    fn = {"name": name, "arguments": json.dumps(args)}
    return {"role": "assistant", "content": None, "tool_calls": [{"id": cid, "type": "function", "function": fn}]}


def tool(text: str, cid: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": cid, "content": text, **extra}


def kind(
    reply: dict[str, Any], after: list[dict[str, Any]], agent: str, before: list[dict[str, Any]] | None = None
) -> str:
    """The judged kind; with `before`, the whole request's messages are given (history, the last request)."""
    messages = [*before, reply, *after] if before else None
    return judge(reply, after, agent=agent, messages=messages).kind


def failed(command: str, output: str, shell: str = "Bash") -> str:
    """The kind of a Claude Code command whose result came back flagged as an error."""
    return kind(call(shell, {"command": command}), [tool(output, is_error=True)], "claude_code")


# -- SWE-agent: `edit N:M` is linted only for Python; the window shows numbered lines --

JAVA = "/repo/src/main/java/Writer.java"


def window(lines: dict[int, str], path: str = JAVA, total: int = 120, updated: bool = False) -> str:
    body = "\n".join(f"{n}:{text}" for n, text in sorted(lines.items()))
    done = "\nFile updated. Please review the changes and make sure they are correct." if updated else ""
    head = f"[File: {path} ({total} lines total)]\n(40 more lines above)\n"
    return f"{head}{body}\n(60 more lines below){done}\n(Open file: {path})\n(Current directory: /repo)\nbash-$"


SHOWN = {
    50: "  public void value(double value) throws IOException {",
    51: "    if (Double.isNaN(value) || Double.isInfinite(value)) {",
    52: '      throw new IllegalArgumentException("not finite: " + value);',
    53: "    }",
    54: "    ErrorResponse errorResponse =",
    55: "        Mapper.readJson(content, ErrorResponse.class);",
    56: "    beforeValue();",
    57: "    out.append(Double.toString(value));",
    58: "  }",
}


def swe(edit: str, path: str = JAVA, shown: dict[int, str] = SHOWN, after: str | None = None) -> str:
    before = [
        {"role": "system", "content": "You are an autonomous programmer."},
        {"role": "assistant", "content": f"```\nopen {path} 50\n```"},
        {"role": "user", "content": window(shown, path)},
    ]
    reply = {"role": "assistant", "content": f"Let's fix it.\n```\n{edit}\nend_of_edit\n```"}
    observation = {"role": "user", "content": after or window(shown, path, updated=True)}
    return kind(reply, [observation], "swe_agent", before)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # the condition line rewritten, its block left open: balance kept
        ("edit 51:51\n    if (!lenient && (Double.isNaN(value) || Double.isInfinite(value))) {", "ok"),
        # the opening line replaced by a whole if-block: one `{` too few
        (
            "edit 51:52\n    if (!lenient && Double.isNaN(value)) {\n      throw new IllegalStateException();\n    }",
            "task_failure",
        ),
        # a method pasted over its own signature line: the old body is left without its opener
        ("edit 50:50\n  public void value(double value) {\n    out.append(value);\n  }", "task_failure"),
        # a statement started inside the open assignment on line 54
        ("edit 55:55\n    if (content != null) {\n      log(content);\n    }", "task_failure"),
        # the lines that follow the edit pasted again at its end
        (
            "edit 55:55\n        Mapper.readJson(content, ErrorResponse.class);\n    beforeValue();\n"
            "    out.append(Double.toString(value));",
            "task_failure",
        ),
        # braces in strings and comments are text
        ('edit 56:56\n    beforeValue(); // close with "}" later\n    out.write("{");', "ok"),
    ],
)
def test_swe_agent_edits_that_break_an_unlinted_file(edit: str, expected: str) -> None:
    assert swe(edit) == expected


def test_swe_agent_python_edits_are_left_to_its_linter() -> None:
    shown = {10: "def f(x):", 11: "    return x"}
    assert swe("edit 10:10\ndef f(x):\n    if x:\n        return (x", "/repo/m.py", shown) == "ok"


@pytest.mark.parametrize(
    "said",
    [
        "The command 'mvn test' was cancelled because it took more than 300 seconds. "
        "Please try a different command that completes more quickly.",
        "Your bash command contained syntax errors and was NOT executed. Please fix the syntax errors and try again.",
        "Interactive operation 'vim' is not supported by this environment.",
        "[Your proposed edit has introduced new syntax error(s). Please understand the errors and retry your edit.]",
    ],
)
def test_swe_agent_harness_refusals_and_timeouts(said: str) -> None:
    reply = {"role": "assistant", "content": "```\nmvn test\n```"}
    before = [{"role": "system", "content": "You are an autonomous programmer."}]
    assert kind(reply, [{"role": "user", "content": said}], "swe_agent", before) == "task_failure"


# -- build tools and compilers name the file and line; a trailing echo hides the status --


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        ("javac Main.java; echo done", "Main.java:12: error: cannot find symbol\n1 error\ndone", "task_failure"),
        (
            "mvn -q test; echo finished",
            "[ERROR] Tests run: 4, Failures: 1, Errors: 0, Skipped: 0\nfinished",
            "task_failure",
        ),
        ("npx tsc; echo ok", "src/app.ts(3,7): error TS2322: Type 'string' is not assignable\nok", "task_failure"),
        (
            "gradle build; echo built",
            "> Task :compileJava FAILED\nFAILURE: Build failed with an exception.\nbuilt",
            "task_failure",
        ),
        ("mvn -q test; echo finished", "Tests run: 4, Failures: 0, Errors: 0, Skipped: 0\nfinished", "ok"),
        ("python -m pytest -q; echo done", "5 passed in 0.20s\ndone", "ok"),
    ],
)
def test_errors_behind_a_trailing_echo(command: str, output: str, expected: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(output)], "claude_code") == expected


# -- curl's status line --


@pytest.mark.parametrize(
    ("printed", "expected"), [("503", "task_failure"), ("HTTP 500", "task_failure"), ("200", "ok"), ("404", "ok")]
)
def test_curl_printing_a_server_error(printed: str, expected: str) -> None:
    reply = call("Bash", {"command": 'curl -s -o /dev/null -w "%{http_code}" http://localhost:8000/register'})
    assert kind(reply, [tool(printed)], "claude_code") == expected


def test_claude_code_asking_nobody_is_the_environment() -> None:
    reply = call("AskUserQuestion", {"questions": [{"question": "Which API?"}]})
    assert kind(reply, [tool("Answer questions?", is_error=True)], "claude_code") == "environment"


def test_claude_code_on_windows_failing_to_convert_a_path_is_the_environment() -> None:
    unconverted = "Command failed: cygpath -u 'C:\\Users\\jo\\AppData\\Local\\Temp'"
    assert failed("docker compose logs n8n", unconverted) == "environment"
    # the model's own script calling cygpath and failing is its failure
    own = "Exit code 1\nError: Command failed: cygpath -w src/../dist\n    at execSync (node:child_process:1)"
    assert failed("node scripts/fix-paths.js", own) == "task_failure"


def test_cmd_exes_own_commands_typed_into_bash_are_the_models_slip() -> None:
    for command in ("del build\\out.txt", "mklink /D node_modules ..\\shared"):
        out = f"Exit code 127\n/usr/bin/bash: line 1: {command.split()[0]}: command not found"
        assert kind(call("Bash", {"command": command}), [tool(out, is_error=True)], "claude_code") == "task_failure"


def test_a_cli_not_logged_in_is_the_environment() -> None:
    out = "Exit code 1\nYou are not logged into any GitHub hosts. To log in, run: gh auth login"
    assert failed("gh repo create x --private", out) == "environment"
    # the project's own login check failing is the project's
    own = "Exit code 1\nE   AssertionError: assert 'Forbidden' == 'User not logged in'\n1 failed, 12 passed"
    assert failed("pytest -q", own) == "task_failure"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('brew search "^gather$"', "ok"),
        ("mas search gather", "ok"),
        ("brew install gather", "task_failure"),  # not a search: nothing installed
        # gh's and npm's searches exit 0 when nothing matches: their 1 is an error
        ("gh search code foo --lang python", "task_failure"),
    ],
)
def test_a_package_search_that_finds_nothing_is_an_answer(command: str, expected: str) -> None:
    out = 'Process exited with code 1\nOutput:\nError: No formulae or casks found for "^gather$".'
    assert kind(call("exec_command", {"cmd": command}), [tool(out)], "codex") == expected


def test_claude_codes_powershell_tool_is_a_shell() -> None:
    # a lookup that finds nothing answers with its status, as it does through Bash
    probe = call("PowerShell", {"command": "# is a name set?\ngit config --global user.email 2>$null"})
    assert kind(probe, [tool("Exit code 1", is_error=True)], "claude_code") == "ok"
    # Unix commands typed into PowerShell never ran: no answer, and the model's slip (PowerShell has no grep)
    grep = call("PowerShell", {"command": "grep -rn foo src"})
    unknown = "Exit code 1\ngrep: The term 'grep' is not recognized as the name of a cmdlet, function, script file."
    assert kind(grep, [tool(unknown, is_error=True)], "claude_code") == "task_failure"
    listing = call("PowerShell", {"command": "ls -la"})
    refused = "Exit code 1\nGet-ChildItem: A parameter cannot be found that matches parameter name 'la'."
    assert kind(listing, [tool(refused, is_error=True)], "claude_code") == "task_failure"
    assert failed("npm run build", "Exit code 1\nerror TS2304: Cannot find name 'x'.", "PowerShell") == "task_failure"


def test_claude_codes_auto_mode_refusing_a_call_is_a_rejection() -> None:
    denied = (
        "Permission for this action was denied by the Claude Code auto mode classifier. Reason: a Run key "
        "for login-time execution is Unauthorized Persistence."
    )
    reg = call("PowerShell", {"command": "Set-ItemProperty HKCU:/Software/Microsoft/Windows/CurrentVersion/Run x y"})
    assert kind(reg, [tool(denied, is_error=True)], "claude_code") == "rejected"


def test_mini_swe_agents_harness_failing_to_start_a_command_is_the_environment() -> None:
    gone = (
        "<exception>An error occurred while executing the command: [Errno 2] No such file or directory: "
        "'/testbed'</exception>\n<returncode>-1</returncode>\n<output>\n</output>"
    )
    assert kind(mini("python reproduce.py"), [{"role": "user", "content": gone}], "mini_swe_agent") == "environment"
    # a command too long to start is the model's
    long = gone.replace(
        "[Errno 2] No such file or directory: '/testbed'", "[Errno 7] Argument list too long: '/bin/sh'"
    )
    assert kind(mini("python src/app.py"), [{"role": "user", "content": long}], "mini_swe_agent") == "task_failure"
    # the command ran and failed: the model's
    ran = "<returncode>1</returncode>\n<output>\nTraceback (most recent call last):\nNameError: name 'x'\n</output>"
    assert kind(mini("python src/app.py"), [{"role": "user", "content": ran}], "mini_swe_agent") == "task_failure"


@pytest.mark.parametrize(
    "said",
    [
        "bash: line 1: cd: src/app: No such file or directory",
        "/bin/sh: 1: cd: can't cd to src/app",
        "zsh:cd:1: no such file or directory: src/app",
        "(eval):cd:1: no such file or directory: src/app",  # zsh under Claude Code's eval
        "bash: cd: src/app: Not a directory",
    ],
)
def test_a_cd_into_a_folder_that_is_not_there_looked_elsewhere(said: str) -> None:
    """The listing after it is of the wrong folder (status 0): the model's wrong path, a probe or not."""
    out = f"<returncode>0</returncode>\n<output>\n{said}\nCHANGES.rst\nsetup.py\n</output>"
    assert kind(mini("cd src/app\nls -l"), [{"role": "user", "content": out}], "mini_swe_agent") == "task_failure"
    for command in ("cd src/app; ls", "cd src/app && ls", "cd -- src/app/ && make", "cd src/app || exit 1\nmake"):
        assert kind(call("Bash", {"command": command}), [tool(f"{said}\nsetup.py")], "claude_code") == "task_failure"
    # such a line in what a command read, or a cd that tries places (a fallback, a loop's variable): no
    for command in (
        "cat logs/deploy.log",
        "cd src/app || cd app; ls",
        'for d in src/app lib; do (cd "$d" && ls); done',
    ):
        assert kind(call("Bash", {"command": command}), [tool(f"{said}\nsetup.py")], "claude_code") == "ok"
    read = call("Read", {"file_path": "/w/notes.md"})
    assert kind(read, [tool(f"     1\t{said}")], "claude_code") == "ok"


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("cd ~/proj/app && ls", "bash: line 1: cd: /home/me/proj/app: No such file or directory"),  # ~ expanded
        ("cd my\\ app && ls", "bash: line 1: cd: my app: No such file or directory"),  # the escape read
        ('cd "my app"/src && ls', "bash: line 1: cd: my app/src: No such file or directory"),  # quotes, then more
        ('cd "my \\"app\\"" && ls', 'bash: line 1: cd: my "app": No such file or directory'),  # an escaped quote
        ("cd '~/app' && ls", "bash: line 1: cd: ~/app: No such file or directory"),  # a quoted ~ stays ~
        ("pushd src/app && make", "bash: pushd: src/app: No such file or directory"),
        ("pushd src/app; make", "(eval):pushd:1: no such file or directory: src/app"),
    ],
)
def test_a_cd_names_its_folder_as_the_shell_read_it(command: str, said: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(f"{said}\nsetup.py")], "claude_code") == "task_failure"
    # another folder's failure (a script the command ran, cd-ing elsewhere) is not this cd's
    other = said.replace("app", "web")
    assert kind(call("Bash", {"command": command}), [tool(f"{other}\nsetup.py")], "claude_code") == "ok"


@pytest.mark.parametrize(
    ("command", "said"),
    [  # what the command ran cd-ing into a folder that ends like `~/app` but is no home's
        ("cd ~/app && make", "/bin/sh: 1: cd: can't cd to /srv/app"),
        ("cd ~/app && bash -c 'cd /opt/app'", "bash: line 1: cd: /opt/app: No such file or directory"),
        ("cd ~/app && docker compose run web sh -c 'cd /app && pytest'", "sh: 1: cd: can't cd to /app"),
    ],
)
def test_a_cd_elsewhere_that_ends_like_the_home_folder_is_not_the_commands(command: str, said: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(f"{said}\nsetup.py")], "claude_code") == "ok"
    mac = "bash: line 1: cd: /Users/me/app: No such file or directory"
    assert kind(call("Bash", {"command": command}), [tool(f"{mac}\nsetup.py")], "claude_code") == "task_failure"
    # a quoted `~` is not expanded: a home folder's failure is not that cd's
    assert kind(call("Bash", {"command": "cd '~/app' && make"}), [tool(f"{mac}\nsetup.py")], "claude_code") == "ok"
    # a `#` inside a word is part of it (bash reads a comment only at a word's start)
    said = "bash: line 1: cd: foo#bar: No such file or directory"
    assert kind(call("Bash", {"command": "cd foo#bar && ls"}), [tool(said)], "claude_code") == "task_failure"


def test_an_interrupt_after_the_persons_new_words_is_of_the_answer_to_them() -> None:
    """Claude Code keeps a person's message, then the interrupt of the answer to it, in one user message:
    the finished reply before them was not interrupted."""
    done = {"role": "assistant", "content": "Added the markers; Apply reads them before cutting."}
    mark = "[Request interrupted by user]"
    spoke = {"role": "user", "content": f"what about placing the new clips?\n{mark}\nthe clips that are cut?"}
    assert kind(done, [spoke], "claude_code") == "ok"
    wrong = {"role": "user", "content": f"that's still not working\n{mark}\nthe export button"}
    assert kind(done, [wrong], "claude_code") == "user_correction"
    # the mark for a tool call refused is about the reply's call, whatever the person wrote first
    tool_mark = {"role": "user", "content": "wait, not rm -rf\n[Request interrupted by user for tool use]"}
    assert kind(call("Bash", {"command": "rm -rf build"}), [tool("ok"), tool_mark], "claude_code") == "rejected"
    # the mark first, or alone: the reply itself was interrupted
    assert kind(done, [{"role": "user", "content": mark}], "claude_code") == "rejected"
    assert kind(done, [{"role": "user", "content": f"{mark}\nno, keep the old markers"}], "claude_code") == "rejected"
    # a harness's own words before a refusal are no person's (mini-swe-agent)
    said = "Command not executed. The user rejected your command with the following message: go to src"
    assert kind(mini("ls -la x"), [{"role": "user", "content": said}], "mini_swe_agent") == "rejected"


def test_powershells_own_unauthorized_exception_is_no_credentials_problem() -> None:
    ps = "$pid = 1"
    out = (
        "Exit code 1\nCannot overwrite variable PID because it is read-only or constant.\n"
        "    + CategoryInfo          : WriteError: (PID:String) [], SessionStateUnauthorizedAccessException"
    )
    assert failed(ps, out, "PowerShell") == "task_failure"
    # the machine's execution policy refusing scripts is its setting
    policy = (
        "Exit code 1\nnpm : File C:\\Program Files\\nodejs\\npm.ps1 cannot be loaded because running scripts is "
        "disabled on this system.\n    + FullyQualifiedErrorId : UnauthorizedAccess"
    )
    assert failed("npm test", policy, "PowerShell") == "environment"
    denied = "Exit code 1\ncurl: (22) The requested URL returned error: 401 Unauthorized"
    assert failed("curl -f https://api.x/v1", denied) == "environment"


def test_a_port_taken_or_a_runtime_off_the_path_is_the_environment() -> None:
    taken = "Port 3000 is in use by another process (not a preview server). Run `lsof -i :3000` to see it."
    assert kind(call("preview_start", {"name": "web"}), [tool(taken, is_error=True)], "claude_code") == "environment"
    shebang = "Exit code 127\nenv: node: No such file or directory"  # macOS's words; GNU's name /usr/bin/env
    assert failed("npx vite", shebang) == "environment"
    gnu = "Exit code 127\n/usr/bin/env: \u2018node\u2019: No such file or directory"
    assert failed("./cli.js", gnu) == "environment"
    # `env` typed with a wrong name is the model's slip
    typed = "Exit code 127\nenv: build.sh: No such file or directory"
    assert failed("env FOO=1 build.sh", typed) == "task_failure"
    # the program's own missing file is its own
    own = "Exit code 1\nFileNotFoundError: [Errno 2] No such file or directory: 'data/input.csv'"
    assert failed("python src/load.py", own) == "task_failure"


def test_a_search_refusing_its_own_pattern_as_a_flag_fails() -> None:
    search = "rg -n --site-packages src"
    out = "Chunk ID: f\nProcess exited with code 2\nOutput:\nrg: unrecognized flag --site-packages"
    assert kind(call("shell", {"command": ["bash", "-lc", search]}), [tool(out)], "codex") == "task_failure"
    # a passing test run whose output quotes a CLI's own refusal (cobra's "unknown flag") is no refusal
    passed = "=== RUN TestBadFlag\nError: unknown flag: --bogus\n--- PASS: TestBadFlag\nPASS\nok  example.com/app 0.01s"
    assert kind(call("Bash", {"command": "go test -v ./cmd/..."}), [tool(passed)], "claude_code") == "ok"


def test_a_checks_errors_searched_for_one_file_fail_the_check() -> None:
    check = 'npm run typecheck 2>&1 | grep "layout.tsx" || echo "no layout errors"'
    found = "src/layout.tsx(234,76): error TS2339: Property 'specialty' does not exist on type 'Maestro'."
    assert kind(call("Bash", {"command": check}), [tool(found)], "claude_code") == "task_failure"
    assert kind(call("Bash", {"command": check}), [tool("no layout errors")], "claude_code") == "ok"
    for more in ("| head -5 || echo none", "|| true"):
        sifted = f'npm run typecheck 2>&1 | grep "layout.tsx" {more}'
        assert kind(call("Bash", {"command": sifted}), [tool(found)], "claude_code") == "task_failure"
    search = 'grep -rn "TODO" src || echo "none"'  # a search, not a check: what it finds is an answer
    assert kind(call("Bash", {"command": search}), [tool("src/a.ts:3: // TODO error handling")], "claude_code") == "ok"
    # a read of a check's log is a look: its errors are the log's, counted when the check ran
    log = "cat build/output.log | grep -i error || echo none"
    assert kind(call("Bash", {"command": log}), [tool("ERROR: Failed to compile.")], "claude_code") == "ok"


def test_backticks_in_a_search_pattern_the_shell_ran_first_never_searched_for_them() -> None:
    """bash runs backticks in double quotes as a command before the search, and says so before its output:
    the search that follows, however long, looked for something else."""
    search = 'rg -n "T040|app/models/`|tests/`" specs/tasks.md'
    said = "/bin/bash: command substitution: line 1: syntax error near unexpected token `|'\n"
    found = "".join(f"{n}: - [ ] T0{n} something in app/models/x.js\n" for n in range(200))
    assert kind(call("exec_command", {"cmd": search}), [codex_exec(said + found, 0)], "codex") == "task_failure"
    assert kind(call("exec_command", {"cmd": search}), [codex_exec(found, 0)], "codex") == "ok"


def test_cmd_exes_syntax_typed_into_bash_is_the_models_slip_even_while_looking() -> None:
    slip = 'dir "%APPDATA%\\Claude\\logs" /B /O-D'
    out = "Exit code 2\ndir: cannot access '%APPDATA%\\Claude\\logs': No such file or directory"
    assert failed(slip, out) == "task_failure"
    # looking into what the person reported is no excuse for it
    said = [{"role": "user", "content": "Im getting erros whebn re opening Claude Desktop"}]
    assert kind(call("Bash", {"command": slip}), [tool(out, is_error=True)], "claude_code", said) == "task_failure"
    lower = 'dir /s "%UserProfile%\\.claude"'
    out = "Exit code 2\ndir: cannot access '/s': No such file or directory"
    assert failed(lower, out) == "task_failure"
    # a switch or a percent sign elsewhere is no cmd.exe command: PowerShell's own `reg query /v`, a search
    # for the text, SQL's wildcard, a one-letter path
    for looked in (
        "reg query HKCU\\Software\\RustDesk /v id",
        'grep -rn "%APPDATA%" src/',
        "sqlite3 app.db \"select * from log where m like '%ERROR%'\" | grep -q boom",
        "test -d /e",
    ):
        assert kind(call("Bash", {"command": looked}), [tool("Exit code 1", is_error=True)], "claude_code") == "ok"
    dated = "ls logs/$(date +%Y%m%d).log"  # a format string is no cmd.exe variable
    gone = "Exit code 2\nls: cannot access 'logs/20261204.log': No such file or directory"
    assert failed(dated, gone) == "ok"


def test_a_shell_start_up_files_error_is_not_the_commands() -> None:
    noise = "/c/Users/1/.bashrc: line 1: $'\\377\\376eval': command not found"
    checks = "ruff format --check . && ruff check . && pytest -q"
    formatted = [
        call("Bash", {"command": "ruff format src/plan.py tests/test_plan.py"}),
        tool(f"2 files reformatted\n{noise}"),
    ]
    failing = f"Exit code 1\n{noise}\n\nWould reformat: src/orchestrator.py\n1 file would be reformatted"
    # the format run before worked (the start-up file's line is not its error) and changed the code: the check
    # that fails after it is a new try that failed, not a second look
    assert kind(call("Bash", {"command": checks}), [tool(failing, is_error=True)], "claude_code", formatted) == (
        "task_failure"
    )
    assert kind(call("Bash", {"command": "ls src"}), [tool(f"{noise}\nplan.py")], "claude_code") == "ok"
    # the evidence names the line of the output as it came
    crashed = f"Exit code 1\n{noise}\nTraceback (most recent call last):\nValueError: bad"
    j = judge(call("Bash", {"command": "python a.py"}), [tool(crashed, is_error=True)], agent="claude_code")
    assert (j.kind, j.evidence.line if j.evidence else None) == ("task_failure", 3)
    for other in (
        "/etc/profile: line 5: x: command not found",
        "-bash: /home/me/.bashrc: line 5: x: command not found",
    ):
        assert kind(call("Bash", {"command": "python -c 'print(1)'"}), [tool(f"{other}\n1")], "claude_code") == "ok"
    # the command runs the start-up file: its errors are the command's; a person pasting them means it
    sourced = "/home/me/.bashrc: line 12: nvm: command not found"
    assert kind(call("Bash", {"command": "source ~/.bashrc && nvm --version"}), [tool(sourced)], "generic") == (
        "task_failure"
    )
    pasted = f"new terminal shows:\n{sourced}\n/home/me/.bashrc: line 13: /x/bash_completion: No such file or directory"
    assert kind(DONE, [{"role": "user", "content": pasted}], "generic") == "user_correction"


def test_a_formatter_run_is_a_new_try_but_no_fix() -> None:
    asked = [{"role": "user", "content": "the parser drops the last field, fix it"}]
    failing = "Exit code 1\n===== 1 failed, 3 passed in 0.1s ====="

    def after(command: str, then: str, out: str) -> str:
        ran = [call("Bash", {"command": command}, "b0"), tool("done", "b0")]
        return kind(call("Bash", {"command": then}), [tool(out, is_error=True)], "claude_code", [*asked, *ran])

    # a formatter changes no behaviour: the tests failing after it still show the reported bug
    for command in (
        "black src",
        "pip install black isort",
        "grep -rn black src/styles",
        "npx eslint --fix-dry-run src",
    ):
        assert after(command, "pytest -q", failing) == "ok"
    # but it rewrote files: the check failing after it is a new try, not a second look at the same failure
    check = "ruff format --check ."
    for command in ("ruff format src/a.py", "go fmt ./...", "npx prettier -w src", "eslint src --fix"):
        first = [call("Bash", {"command": check}, "b1"), tool("Exit code 1\nWould reformat: a.py", "b1", is_error=True)]
        ran = [call("Bash", {"command": command}, "b0"), tool("done", "b0")]
        now = [tool("Exit code 1\nWould reformat: b.py", is_error=True)]
        assert kind(call("Bash", {"command": check}), now, "claude_code", [*asked, *first, *ran]) == "task_failure"


def test_claude_codes_editor_finding_the_file_changed_since_its_read_is_the_environment() -> None:
    reply = call("Edit", {"file_path": "models/Appraisal.js", "old_string": "a", "new_string": "b"})
    changed = "File has been unexpectedly modified. Read it again before attempting to write it."
    assert kind(reply, [tool(changed, is_error=True)], "claude_code") == "environment"
    unmatched = "String to replace not found in file.\nString: a"
    assert kind(reply, [tool(unmatched, is_error=True)], "claude_code") == "task_failure"
    # its own command changed the file after the read: the edit from the stale read is its mistake
    read = [call("Read", {"file_path": "models/Appraisal.js"}), tool("1\tconst a = 1;")]
    sed = [call("Bash", {"command": "sed -i 's/a/b/' models/Appraisal.js"}), tool("")]
    assert kind(reply, [tool(changed, is_error=True)], "claude_code", read) == "environment"
    assert kind(reply, [tool(changed, is_error=True)], "claude_code", [*read, *sed]) == "task_failure"
    # (older versions' words, from the trial of 2026-12-06: Claude Code 2.1.7)
    older = "<tool_use_error>File has been modified since read, either by the user or by a linter.</tool_use_error>"
    assert kind(reply, [tool(older, is_error=True)], "claude_code", read) == "environment"


def test_a_claude_code_session_still_being_written_is_read_up_to_its_last_whole_line() -> None:
    """A session file copied while Claude Code wrote it ends in half a line: every turn of it was unread.
    A broken line in the middle is named by its number."""
    records = [
        {"type": "user", "message": {"role": "user", "content": "hi"}},
        {"type": "assistant", "message": {"id": "m1", "role": "assistant", "content": "Hello."}},
    ]
    whole = "\n".join(json.dumps(r) for r in records)
    assert claude_code.transcript((whole + '\n{"type": "user", "mess').encode(), {"message_id": "m1"}).at == 1
    broken = whole.replace('{"type": "assistant"', '{"type": assistant', 1) + "\n" + json.dumps(records[0])
    with pytest.raises(ValueError, match="line 2 of the session is not JSON"):
        claude_code.transcript(broken.encode(), {"message_id": "m1"})


# -- aider's console in its chat history --


def history(console: str, next_message: str = "what next?") -> bytes:
    return (
        "#### fix the parser  \n\nHere is the change.\n\nsrc/parse.py\n```python\n<<<<<<< SEARCH\nx = 1\n=======\n"
        f"x = 2\n>>>>>>> REPLACE\n```\n\n{console}\n\n#### {next_message}  \n"
    ).encode()


def restating(console: str, again: str = "fix the parser so that it handles tabs") -> bytes:
    """A history whose person, after the reply, asks again what they asked before it."""
    return history(console, again).replace(b"#### fix the parser  ", b"#### fix the parser so that it handles tabs  ")


def aider_kind(data: bytes) -> str:
    t = aider.transcript(data, {"user_block": 1})
    return judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages).kind


def test_aider_a_request_whose_reply_never_began_stopped_with_ctrl_c_is_rejected() -> None:
    # a reasoning model still thinking: nothing streamed, the person pressed Ctrl-C
    waited = b"#### the webhook json has a doubled body, fix it  \n>  \n>  \n> ^C again to exit  \n\n#### next  \n"
    assert aider_kind(waited) == "rejected"
    stray = b"#### exit  \n>  \n>  \n> ^C again to exit  \n\n#### next  \n"  # not a request
    assert aider_kind(stray) == "ok"
    failing = (
        b"#### fix the webhook body please  \n> litellm.APIConnectionError: x  \n> ^C again to exit  \n\n#### next  \n"
    )
    assert aider_kind(failing) != "rejected"  # a call that kept failing, then quitting: not a refusal


def test_aider_an_empty_reply_at_the_token_limit_is_the_environment() -> None:
    full = (
        "> Tokens: 121k sent, 0 received.  \n>  \n> Model deepseek/deepseek-coder has hit a token limit!  \n"
        "> Input tokens: ~121,168 of 128,000 -- possibly exhausted context window!  \n> Output tokens: ~0 of 4,096  "
    )
    empty = b"#### add tests for every module please  \n\n" + full.encode() + b"\n\n#### next  \n"
    assert aider_kind(empty) == "environment"  # the request did not fit: nothing came back
    # the person quitting after it: the call had answered (its token count came), nothing was stopped
    assert aider_kind(empty.replace(b"\n\n#### next", b"\n>  \n> ^C again to exit  \n\n#### next")) == "environment"
    assert aider_kind(history(full)) == "task_failure"  # a reply that ran out of room: cut off, not applied
    # the request fitted, and a reasoning model spent its output on thinking: the model's, and the person
    # quitting after aider's report stopped nothing
    spent = full.replace("~121,168 of 128,000 -- possibly exhausted context window!", "~4,102 of 200,000")
    spent = spent.replace(
        "Output tokens: ~0 of 4,096", "Output tokens: ~0 of 100,000 -- possibly exceeded output limit!"
    )
    thought = b"#### explain the whole architecture  \n\n" + spent.split("\n", 2)[2].encode()
    assert aider_kind(thought + b"\n\n#### next  \n") == "task_failure"
    assert aider_kind(thought + b"\n>  \n> ^C again to exit  \n\n#### next  \n") == "task_failure"
    # aider's own word for a reply of nothing: the provider's
    nothing = "> Empty response received from LLM. Check your provider account?  \n> Tokens: 5.2k sent, 0 received.  "
    asked = b"#### explain the whole architecture  \n\n" + nothing.encode()
    assert aider_kind(asked + b"\n> ^C again to exit  \n\n#### next  \n") == "environment"


def test_aider_stopping_its_own_retry_of_a_failed_edit_is_no_refusal() -> None:
    # the reply's edit failed; Ctrl-C (or a "no") while aider sent the failure back to the model stops aider's
    # retry, not the reply: the reply failed
    failed = "> The LLM did not conform to the edit format.  \n> No filename provided before ``` in file listing  "
    retry = f"{failed}\n>  \n> ^C again to exit  \n\nSorry, here is the corrected blo"  # the retry cut off
    assert aider_kind(history(retry)) == "task_failure"
    # a retry applied, then a "no" to its new file: the refusal is of the retry
    applied = f"{failed}\n> Applied edit to src/parse.py  \n> notes.md  \n> Create new file? (Y)es/(N)o [Yes]: n  "
    assert aider_kind(history(applied)) == "rejected"
    linted = (
        "> Applied edit to src/parse.py  \n>  \n> # Fix any errors below, if possible.  \n>  \n"
        "> ## Running: flake8 src/parse.py  \n>  \n> src/parse.py:3:1: F821 undefined name 'x'  \n"
        "> util.py  \n> Create new file? (Y)es/(N)o [Yes]: n  "
    )
    assert aider_kind(history(linted)) == "task_failure"
    assert aider_kind(history("> notes.md  \n> Create new file? (Y)es/(N)o [Yes]: n  ")) == "rejected"


def test_aider_2023_console_saying_an_edit_did_not_apply_while_another_did() -> None:
    console = "> Failed to apply edit to pubspec.yaml  \n> Applied edit to x.py  \n> Commit 89bec66 aider: Add x"
    assert aider_kind(history(console, "what is missing?")) == "task_failure"
    assert aider_kind(history("> Applied edit to x.py  \n> Commit 89bec66 aider: Add x", "what is missing?")) == "ok"
    # the words in a person's message are theirs: aider's console said nothing of the kind
    applied = "> Applied edit to x.py  \n> Commit 89bec66 aider: Add x"
    assert aider_kind(history(applied, "thanks. our bot logs 'Failed to apply edit to c.yaml' on deploys")) == "ok"


@pytest.mark.parametrize(
    "console",
    [
        "> Malformed response #1, retrying...  \n> InvalidEditBlock: edit failed!  \n> Applied edit to x.py  ",
        "> Malformed response #3, aborting.  \n> UnifiedDiffNoMatch: hunk failed to apply!  ",
    ],
)
def test_aider_2023_malformed_edits_failed(console: str) -> None:
    # aider of 2023 said on its console (kept in the history) that the reply's edits could not be applied,
    # then retried or gave up: the reply failed, whatever the retry did
    assert aider_kind(history(console)) == "task_failure"
    assert aider_kind(history("> Applied edit to x.py  ")) == "ok"


def test_aider_unable_to_write_an_edits_file() -> None:
    # aider's own report that it could not write the file an edit was for, then the error again: not landed
    denied = (
        "> Unable to write file /etc/hosts after 5 attempts: [Errno 13] Permission denied: '/etc/hosts'  \n"
        "> [Errno 13] Permission denied: '/etc/hosts'  "
    )
    assert aider_kind(history(denied)) == "task_failure"
    # the path is the model's choice: its words say nothing of the machine
    folder = "/home/me/app/src/utils/apiKey"
    said = f"[Errno 21] Is a directory: '{folder}'"
    named = f"> Unable to write file {folder}: {said}  \n> {said}  "
    assert aider_kind(history(named)) == "task_failure"
    # a disk that would refuse any model's edit, however long the path before the error
    deep = "/home/me/" + "very-long-folder-name/" * 8 + "app.py"
    full = (
        f"> Unable to write file {deep}: [Errno 28] No space left on device  \n> [Errno 28] No space left on device  "
    )
    assert aider_kind(history(full)) == "environment"
    # aider 0.55 to 0.63.1: one line, then the edit reported applied all the same
    older = "> Unable to write file /home/me/app/src/parse.py: [Errno 21] Is a directory  \n"
    older += "> Applied edit to src/parse.py  "
    assert aider_kind(history(older)) == "task_failure"
    assert aider_kind(history(older.replace("[Errno 21] Is a directory", "[Errno 30] Read-only file system"))) == (
        "environment"
    )
    # a log line with the same words, quoted in the reply or printed by a program, is not aider's report
    quoted = "> Unable to write file /var/log/app.log: [Errno 13] Permission denied  \n> Applied edit to x.py  "
    assert aider_kind(history(quoted)) == "ok"
    # nor are they in the person's message
    applied = "> Applied edit to x.py  \n> Commit 89bec66 aider: Add x"
    assert aider_kind(history(applied, "our logger says Unable to write file /var/log/x.log sometimes")) == "ok"


def test_aider_commands_that_call_no_model() -> None:
    # `/ls` answered by aider, the person quitting after its listing: no reply of the model's, nothing refused
    listing = b"#### /ls  \n> Files in chat:  \n> src/parse.py  \n>  \n> ^C again to exit  \n\n#### next  \n"
    assert aider_kind(listing) == "ok"
    # `/run` adds its output to the chat and calls no model: the `/undo` after it is about the reply before
    ran = history("> Applied edit to src/parse.py  ", "/run python -m pytest  \n\n#### /undo")
    assert aider_kind(ran) == "user_correction"
    t = aider.transcript(ran, {"user_block": 2})
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages).kind == "ok"
    # after a reply that changed nothing, what the person says of the run is not about the reply
    answered = b"#### where is the parser?  \n\nIn src/parse.py.\n\n#### /run npm start  \n> Error: x  \n\n"
    assert aider_kind(answered + b"#### no, it crashes on start, fix the crash  \n") == "ok"


def test_aider_a_chat_modes_command_carries_the_persons_words() -> None:
    # `/ask ...` after the reply: the person's words follow the command
    assert aider_kind(history("> Applied edit to src/parse.py", "/ask it still does not work, why?")) == (
        "user_correction"
    )
    assert aider_kind(history("> Applied edit to src/parse.py", "/ask why is the parser a class?")) == "ok"
    # a mode's command with no reply of its own: aider logs the message it sends as the next block
    switched = b"#### /ask what is the interval for?  \n\n#### what is the interval for?  \n\nIt sets the delay.\n"
    assert aider_kind(switched) == "ok"
    # what was discussed in `/ask`, then applied with `/code`: not the same request asked again
    discussed = (
        b"#### /ask add a retry to the fetcher?  \n\nA loop would do.\n\n#### /code add a retry to the fetcher?  \n"
    )
    assert aider_kind(discussed) == "ok"


def test_aider_architect_modes_edit_declined_is_no_refusal() -> None:
    # architect mode asks after every answer, a question back included: a no refuses nothing
    asked = "> Tokens: 3.9k sent, 89 received.\n> Edit the files? (Y)es/(N)o [Yes]: n"
    data = f"#### fix the MatchError  \n\nPlease paste the exact error.\n\n{asked}\n\n#### here it is  \n".encode()
    assert aider_kind(data) == "ok"


def test_aider_a_modes_command_alone_only_switches() -> None:
    # a new session's `/architect` with no message: no model call, so the error pasted next is about no reply
    data = b"#### /architect  \n\n#### I get this error: ** (ArgumentError) cannot invoke def/2 outside module  \n"
    assert aider_kind(data) == "ok"


def test_aider_the_same_request_after_no_reply_is_sent_again() -> None:
    # aider stopped at its own question (a dirty repository) and never called the model
    dirty = "> Git repo has uncommitted changes.\n> Commit before the chat proceeds [y/n/commit message]? y"
    data = f"#### add a public IP module  \n\n{dirty}\n\n#### add a public IP module  \n".encode()
    assert aider_kind(data) == "ok"
    # the model was called and answered nothing: its reply, asked again
    nothing = b"#### add a public IP module  \n\n> Tokens: 12k sent, 0 received.\n\n#### add a public IP module  \n"
    assert aider_kind(nothing) == "user_correction"
    answered = b"#### add a public IP module  \n\nIt is in network.tf now.\n\n#### add a public IP module  \n"
    assert aider_kind(answered) == "user_correction"  # asked again after an answer


def test_aider_an_unexpected_error_from_the_model_call_is_a_failed_call() -> None:
    failed = (
        "> Unexpected error: litellm.AuthenticationError: AuthenticationError: OpenrouterException - "
        "Error code: 401 - Missing Authentication header or invalid API key"
    )
    data = b"#### fix the parser  \n\n" + failed.encode() + b"\n\n#### fix the parser  \n"
    assert aider_kind(data) == "environment"  # not the person asking again: the call never answered


def test_aider_unable_to_create_a_file() -> None:
    create = "> Create new file? (Y)es/(N)o [Yes]: y  \n> Unable to create {}, skipping edits.  \n"
    applied = "> Applied edit to src/parse.py  "
    # a stray closing tag taken for a file name: the reply's
    assert aider_kind(history(create.format("</style>") + applied)) == "task_failure"
    # a name a file can have: the machine would not let aider write it
    assert aider_kind(history(create.format("src/new_mod.py") + applied)) == "environment"
    # the person asking about it is not aider saying it
    assert aider_kind(history(applied, "why does it say  \n#### Unable to create /tmp/x, skipping edits.")) == "ok"


def test_aider_help_question_is_the_persons_not_a_report() -> None:
    docs = "# Question: how do I raise the token limit?  \n  \n# Relevant docs:  \n  \n<doc>  \n"
    docs += "Model gpt-4 has hit a token limit!  \n</doc>  "
    helped = b"#### /help how do I raise the token limit?  \n\n#### " + docs.replace("  \n", "  \n#### ").encode()
    helped += b"\n\nRaise it with --max-tokens.\n\n#### thanks  \n"
    # the /help command's block has no reply of its own; the request aider made of it is no next message
    assert aider_kind(helped) == "ok"
    t = aider.transcript(helped, {"user_block": 2})
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages).kind == "ok"
    # live, the docs arrive as the next request after a reply: the question is what the person said
    reply = {"role": "assistant", "content": "Use /tokens."}
    asked = {"role": "user", "content": docs.replace("how do I raise the token limit?", "I asked for the 2048 limit")}
    assert judge(reply, [asked], agent="aider").kind == "user_correction"


def test_a_pasted_missing_package_is_the_environment() -> None:
    pasted = 'Traceback (most recent call last):\n  File "app.py", line 2\n'
    pasted += "ModuleNotFoundError: No module named 'supabase'"
    assert aider_kind(history("> Applied edit to src/parse.py  ", pasted.replace("\n", "  \n#### "))) == "environment"
    reply = {"role": "assistant", "content": "Done: the app reads the table."}
    assert judge(reply, [{"role": "user", "content": pasted}], agent="generic").kind == "environment"
    own = pasted.replace("'supabase'", "'src.models'")  # the repository's own path: the import is the reply's
    assert judge(reply, [{"role": "user", "content": own}], agent="generic").kind == "user_correction"
    # a module the reply wrote; their own words before it (they may say the reply chose the package); an
    # error after it (the package was installed by then)
    wrote = {"role": "assistant", "content": "I created utils.py with the helpers."}
    utils = pasted.replace("'supabase'", "'utils'")
    assert judge(wrote, [{"role": "user", "content": utils}], agent="generic").kind == "user_correction"
    told = "I told you not to add numpy!\n" + pasted.replace("supabase", "numpy")
    assert judge(reply, [{"role": "user", "content": told}], agent="generic").kind == "user_correction"
    prose = "it should print a friendly message instead:\n" + pasted.replace("supabase", "yaml")
    assert judge(reply, [{"role": "user", "content": prose}], agent="generic").kind == "user_correction"
    later = pasted + "\n$ pip install supabase\n$ python app.py\nKeyError: 'name'"
    assert judge(reply, [{"role": "user", "content": later}], agent="generic").kind == "user_correction"
    collected = "==== ERRORS ====\nE   ModuleNotFoundError: No module named 'httpx'\n=== 1 error in 0.1s ==="
    assert judge(reply, [{"role": "user", "content": collected}], agent="generic").kind == "environment"
    # what the IDE put before the person's words is not what they pasted
    ide = "<ide_selection>The user selected the lines 1 to 2 from docs/setup.md:\n" + pasted.split("\n")[-1]
    ide += "\n</ide_selection>\nthat's wrong, this section should say to run make setup"
    assert judge(reply, [{"role": "user", "content": ide}], agent="claude_code").kind == "user_correction"


def test_session_files_whose_strings_hold_a_line_separator_are_read() -> None:
    # JSON keeps U+2028 and U+0085 unescaped inside strings (pasted web text, text decoded twice); only "\n"
    # ends a line of a session file or a rollout
    said = "fix the layout\u2028it overlaps\x85badly"
    claude = [
        {"type": "user", "message": {"role": "user", "content": said}},
        {
            "type": "assistant",
            "message": {"id": "m1", "role": "assistant", "content": [{"type": "text", "text": "Done."}]},
        },
    ]
    data = "\n".join(json.dumps(x, ensure_ascii=False) for x in claude).encode()
    t = claude_code.transcript(data, {"message_id": "m1"})
    assert t.messages[0]["content"][0]["text"] == said
    items = [
        {
            "type": "response_item",
            "payload": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": said}]},
        },
        {
            "type": "response_item",
            "payload": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
        },
    ]
    rollout = "\n".join(json.dumps(x, ensure_ascii=False) for x in items).encode()
    assert codex.transcript(rollout, {"line": 2}).messages[0]["content"] == said


def test_a_claude_code_session_saved_as_one_json_array_reads_as_its_lines() -> None:
    # a hook that copies the session writes the same records as one pretty-printed array
    records = [
        {"type": "summary", "summary": "fix CI"},
        {"type": "user", "message": {"role": "user", "content": "run the tests"}},
        {"type": "assistant", "message": {"id": "m1", "role": "assistant", "content": "On it."}},
        {"type": "user", "message": {"role": "user", "content": "still failing"}},
    ]
    lines = claude_code.transcript("\n".join(json.dumps(r) for r in records).encode(), {"message_id": "m1"})
    array = claude_code.transcript(json.dumps(records, indent=2).encode(), {"message_id": "m1"})
    assert array == lines
    assert array.at == 1
    assert array.messages[-1]["content"][0]["text"] == "still failing"
    with pytest.raises(LookupError, match="not a session's records"):
        claude_code.transcript(b"[1, 2]", {"message_id": "m1"})


def test_a_session_reader_passes_over_claude_codes_placeholder_as_the_judge_does() -> None:
    push = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "git push"}}
    refused = {"type": "tool_result", "tool_use_id": "t1", "content": "rejected by user", "is_error": True}
    said = [{"type": "text", "text": "No response requested."}]
    records = [
        {"type": "user", "message": {"role": "user", "content": "push it"}},
        {"type": "assistant", "message": {"id": "m1", "role": "assistant", "content": [push]}},
        {"type": "user", "message": {"role": "user", "content": [refused]}},
        {"type": "assistant", "message": {"id": "p1", "role": "assistant", "model": "<synthetic>", "content": said}},
        {"type": "user", "message": {"role": "user", "content": "open a pull request instead"}},
    ]
    t = claude_code.transcript("\n".join(json.dumps(r) for r in records).encode(), {"message_id": "m1"})
    assert [m["content"][0].get("text", m["content"][0]["type"]) for m in t.messages[t.at + 1 :]] == [
        "tool_result",
        "open a pull request instead",
    ]
    # a model that says those words replied: what follows it is its turn's
    said_by_model = {**records[3], "message": {**records[3]["message"], "model": "claude-sonnet-4-5"}}
    mine = [*records[:3], said_by_model, records[4]]
    t = claude_code.transcript("\n".join(json.dumps(r) for r in mine).encode(), {"message_id": "m1"})
    assert len(t.messages) == t.at + 2
    # a copy with a byte-order mark reads; a record whose message is no object is named
    bom = "\ufeff" + json.dumps(records)
    assert claude_code.transcript(bom.encode(), {"message_id": "m1"}).at == 1
    with pytest.raises(LookupError, match="message is not an object"):
        claude_code.transcript(json.dumps([{"type": "user", "message": "hi"}]).encode(), {"message_id": "m1"})
    # located itself (a manifest may label it), it is read as before: what followed it
    assert claude_code.transcript("\n".join(json.dumps(r) for r in records).encode(), {"message_id": "p1"}).at == 3


def test_a_reply_located_by_uuid_in_records_without_message_ids_is_that_reply_alone() -> None:
    # records with no `message.id` (a copy that dropped it): the next reply, after the tool's result, is
    # no part of this one (it took every later reply in, and their failures with them)
    ls = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}
    test = {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "pytest"}}
    records = [
        {"type": "user", "uuid": "u0", "message": {"role": "user", "content": "run the tests"}},
        {"type": "assistant", "uuid": "a1", "message": {"role": "assistant", "content": [ls]}},
        {"type": "user", "uuid": "u1", "message": {"role": "user", "content": [_result("t1", "src tests")]}},
        {"type": "assistant", "uuid": "a2", "message": {"role": "assistant", "content": [test]}},
        {"type": "user", "uuid": "u2", "message": {"role": "user", "content": [_result("t2", "Exit code 1", True)]}},
    ]
    data = "\n".join(json.dumps(r) for r in records).encode()
    first = claude_code.transcript(data, {"uuid": "a1"})
    assert [b["id"] for b in first.messages[first.at]["content"]] == ["t1"]
    assert len(first.messages) == first.at + 2  # its result only
    second = claude_code.transcript(data, {"uuid": "a2"})
    assert (second.at, [b["id"] for b in second.messages[second.at]["content"]]) == (3, ["t2"])
    with pytest.raises(LookupError, match="no assistant reply 'u1'"):  # a person's record is no reply
        claude_code.transcript(data, {"uuid": "u1"})


def _result(call: str, text: str, error: bool = False) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call, "content": text, "is_error": error}


@pytest.mark.parametrize(
    ("console", "expected"),
    [
        ("> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  ", "ok"),
        # edit blocks aider passed over in silence (a shape it does not take): nothing was applied
        ("> Tokens: 2k sent, 300 received.  ", "task_failure"),
        ("> Tokens: 2k sent, 300 received.  \n> Did not apply edit to src/parse.py (--dry-run)  ", "ok"),
        ("> Tokens: 2k sent, 300 received.  \n> Applied edit to Makefile  ", "ok"),
        ("> Applied edit to -> the service then restarts  ", "task_failure"),
        ("> Create new file? (Y)es/(N)o [Yes]: y  \n> Applied edit to Topology  ", "task_failure"),
        # the example path of aider's own instructions, copied into the reply instead of a real file
        ("> Create new file? (Y)es/(N)o [Yes]: y  \n> Applied edit to path/to/filename.js  ", "task_failure"),
        # Ctrl-C while aider asks to add a file the edit needs: the edit is refused
        (
            "> Tokens: 2k sent, 300 received.  \n> src/lexer.py  \n"
            "> Add file to the chat? (Y)es/(N)o/(D)on't ask again [Yes]: n  \n"
            "> src/parse.py  \n>  \n> ^C again to exit  ",
            "rejected",
        ),
        # the person refusing to let aider write the edit
        ("> Tokens: 2k sent, 300 received.  \n> notes.md  \n> Create new file? (Y)es/(N)o [Yes]: n  ", "rejected"),
        ("> Allow edits to app/styles/app.css which was not previously added to chat? n  ", "rejected"),
        ("> src/x.py  \n> Allow edits to file that has not been added to the chat? (Y)es/(N)o [Yes]: y  ", "ok"),
        # older aider's words for the same question
        (
            "> Allow creation of new file src/cron/a.service.ts? n  \n> Skipping edits to src/cron/a.service.ts  ",
            "rejected",
        ),
        ("> Allow creation of new file src/cron/a.service.ts? y  \n> Applied edit to src/cron/a.service.ts  ", "ok"),
        ("> Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]: n  ", "ok"),
        # Ctrl-C after everything was answered: the person left, nothing was refused
        ("> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  \n>  \n> ^C again to exit  ", "ok"),
    ],
)
def test_aider_console(console: str, expected: str) -> None:
    assert aider_kind(history(console)) == expected


def test_aider_failing_itself_to_apply_edits_is_not_the_replys_failure() -> None:
    """aider's own exception as it applied the edits (its LiteLLM upgraded past it): every retry met it,
    whatever the model wrote, and the lead's edits would too; the person's Ctrl-C then stopped aider's
    retries, not the reply (holdout104, both labellers: not a failure)."""
    crash = "> Exception while updating files:  \n> module 'litellm.llms.anthropic' has no attribute 'AnthropicError'  "
    tokens = "> Tokens: 5k sent, 240 received.  "
    gave_up = "\n".join([crash, tokens, crash, tokens, crash, "> Only 3 reflections allowed, stopping.  "])
    assert aider_kind(history(gave_up)) == "environment"
    assert aider_kind(history("\n".join([crash, tokens, crash, ">  \n>  \n> ^C again to exit  "]))) == "environment"
    # aider's other exceptions there (reading a malformed block): the reply's
    misread = gave_up.replace(
        "module 'litellm.llms.anthropic' has no attribute 'AnthropicError'", "list index out of range"
    )
    assert aider_kind(history(misread)) == "task_failure"
    # an edit block that did not match before it: the reply's own failure still
    unmatched = "> # 1 SEARCH/REPLACE block failed to match!  \n" + gave_up
    assert aider_kind(history(unmatched)) == "task_failure"


def test_aider_running_a_command_with_a_placeholder_left_in() -> None:
    """The reply's command ran (the person said yes) with `<commit-hash>` still in it: the shell reads it as a
    file to read from, and nothing it names is done (holdout104, twice, and holdout84, all labellers)."""
    ran = (
        "> Tokens: 4k sent, 89 received.  \n> git revert <commit-hash>  \n"
        "> Run shell command? (Y)es/(N)o/(S)kip all/(D)on't ask again [Yes]: y  \n> Running git revert <commit-hash>  "
    )
    assert aider_kind(history(ran)) == "task_failure"
    # filled in, or the brackets quoted as the command's own text, or a redirection: it may have worked
    assert aider_kind(history(ran.replace("<commit-hash>", "<path/to/fixture.json>"))) == "task_failure"
    for command in ("git revert 3f2a9c1", 'echo "<div>" > index.html', "sort < names.txt", "cat <in>out"):
        assert aider_kind(history(ran.replace("git revert <commit-hash>", command))) == "ok"


def test_aider_ctrl_c_at_a_question_to_add_a_file_an_answer_only_named() -> None:
    # the reply wrote no edit: aider asks to add a file it mentions, and the person declining it and leaving
    # refuses nothing (with an edit block, the same Ctrl-C refuses the edit: `test_aider_console`)
    answer = (
        b"#### which scripts does the README leave out?  \n\nIt leaves out src/parse.py and src/lexer.py.\n\n"
        b"> Tokens: 2k sent, 300 received.  \n> src/lexer.py  \n"
        b"> Add file to the chat? (Y)es/(N)o/(D)on't ask again [Yes]: n  \n"
        b"> src/parse.py  \n>  \n> ^C again to exit  \n\n#### what next?  \n"
    )
    assert aider_kind(answer) == "ok"
    # an edit in any of aider's formats is refused by it: a whole file (its name, then a fence), a diff's hunk
    for edit in (
        b"src/parse.py\n```python\nx = 2\n```\n",
        b"```diff\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-x\n+y\n```\n",
    ):
        whole = answer.replace(b"It leaves out src/parse.py and src/lexer.py.\n", b"Here it is:\n\n" + edit)
        assert aider_kind(whole) == "rejected"
        # an answer in ask mode only shows code: aider applies none of it
        assert aider_kind(whole.replace(b"#### which", b"#### /ask which")) == "ok"


def _architect(plan: str) -> bytes:
    """A history in architect mode: the architect's answer, handed to the editor as the next message."""
    return (
        "#### the index page links to a missing page  \n\n<thinking-content-1>\nlooking\n</thinking-content-1>\n\n"
        f"{plan}\n\n> Tokens: 2k sent, 300 received.  \n\n"
        + "".join(f"#### {line}  \n" for line in plan.splitlines())
        + "\nsrc/index.html\n```html\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```\n\n"
        "> Applied edit to src/index.html  \n\n#### it still does not work  \n"
    ).encode()


def test_aider_architect_handing_its_answer_to_the_editor_is_not_the_person() -> None:
    # architect mode logs the answer it hands to its editor model as the next `#### ` message: not the
    # person's words, so "which does not exist" there is no complaint about the architect's answer
    plan = "The index page links to a page which does not exist.\nChange the link in src/index.html to /new."
    data = _architect(plan)
    t = aider.transcript(data, {"user_block": 1})
    assert [m["role"] for m in t.messages] == ["user", "assistant", "user"]  # no next message of a person
    assert aider_kind(data) == "ok"
    editor = aider.transcript(data, {"user_block": 2})
    assert judge(editor.messages[1], editor.messages[2:], agent="aider", messages=editor.messages).kind == (
        "user_correction"
    )
    # a plan with a quoted line: the history shows it as aider's in the reply, as the person's in the message
    noted = _architect(plan.replace("\nChange", "\n> Note: keep the old page.\nChange"))
    assert [m["role"] for m in aider.transcript(noted, {"user_block": 1}).messages] == ["user", "assistant", "user"]
    # a person quoting the end of the answer back with their own words is still the person
    quoted = data.replace(
        b"#### Change the link in src/index.html to /new.  \n", b"#### Change the link: no, broken  \n"
    )
    assert [m["role"] for m in aider.transcript(quoted, {"user_block": 1}).messages][-1] == "user"


def test_aider_person_asking_again() -> None:
    console = "> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  "
    assert aider_kind(restating(console, "fix the parser so that it handles tabs in the header")) == "user_correction"
    assert aider_kind(history(console, "now add a test for CRLF line endings please")) == "ok"
    answered = history(console, "Add file to the chat? (Y)es/(N)o/(A)ll/(S)kip all [Yes]: all")
    assert aider_kind(answered) == "ok"


def test_aider_a_look_at_the_repository_between_reply_and_complaint() -> None:
    # `/map` and `/ls` are answered by aider, not the model: what the person says after them is about the
    # reply before, and a look has no reply of its own to judge
    console = "> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  "
    data = (
        history(console, "/map")
        + b"\n> Here are summaries of some files.  \n\n#### /ls  \n\n#### still nothing changed  \n"
    )
    assert aider_kind(data) == "user_correction"
    for look in (2, 3):
        t = aider.transcript(data, {"user_block": look})
        assert [m["content"] for m in t.messages[t.at + 1 :] if not m["content"].startswith("[aider]")] == []
    asked = history(console, "/map") + b"\n#### now add a test for tabs  \n"
    assert aider_kind(asked) == "ok"
    # a command that changes the chat is not a look: what follows `/clear` is about nothing before it
    cleared = history(console, "/clear") + b"\n#### still nothing changed  \n"
    assert aider_kind(cleared) == "ok"
    # what is said after a command's own output is about that output; a new session answers nothing
    tokens = history(console, "/tokens") + b"\n> 30k tokens  \n\n#### that's wrong, the README is small  \n"
    assert aider_kind(tokens) == "ok"
    later = history(console, "/map") + b"\n\n# aider chat started at 2026-01-02 10:00:00\n\n#### still broken  \n"
    assert aider_kind(later) == "ok"
    # a command aider answers itself (`/undo`, a mistyped one) has no reply of the model's to judge
    for own in ("/undo", "/und", "/undi", "/add src/lexer.py", "/help"):
        answered = history(console, own) + b"\n> Invalid command: /undi  \n\n#### /undo  \n"
        t = aider.transcript(answered, {"user_block": 2})
        assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages).kind == "ok"
    # a prefix aider takes for a command that calls the model (`/arch`) is a request like any other
    asked = history(console, "/arch fix the lexer too") + b"\nDone.\n\n> Applied edit to src/lexer.py  \n\n"
    asked += b"#### that's not what I asked, you broke the parser  \n"
    t = aider.transcript(asked, {"user_block": 2})
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages).kind == "user_correction"
    # an empty input (aider writes `<blank>`) calls no model either
    pasted = "Uncaught SyntaxError: Identifier 'mediaRecorder' has already been declared (at main.js:114:5)"
    blank = history(console, "<blank>") + f"\n#### {pasted}  \n".encode()
    assert aider_kind(blank) == "user_correction"
    assert aider.transcript(blank, {"user_block": 2}).messages[-1]["content"].startswith("[aider]")


# what aider logs of a failing `/test`: the output's first line quoted, the rest of that write unquoted,
# then the output again line by line, then the model's answer to it
FAILING_TEST = (
    "> ============================= test session starts ==============================\n"
    "collected 3 items\n\ntests/test_parse.py ..F\n\nE       AssertionError: assert 'a\\tb' == 'a b'\n"
    "FAILED tests/test_parse.py::test_tabs\n"
    "========================= 1 failed, 2 passed in 0.12s ==========================  \n"
    "> ============================= test session starts ==============================  \n"
    "> E       AssertionError: assert 'a\\tb' == 'a b'  \n"
    "> FAILED tests/test_parse.py::test_tabs  \n"
    "> ========================= 1 failed, 2 passed in 0.12s ==========================  \n"
)


def test_aider_a_command_the_person_ran_is_read_as_the_message_aider_sends_of_it() -> None:
    console = "> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  "
    answer = "\nThe tab is kept as it is; let me split on whitespace instead.\n\n#### thanks  \n"
    tested = history(console, "/test pytest tests/test_parse.py") + f"{FAILING_TEST}{answer}".encode()
    assert aider_kind(tested) == "task_failure"  # aider sends the failing run to the model: the edit failed
    t = aider.transcript(tested, {"user_block": 1})
    assert t.messages[-1]["content"].startswith("I ran this command:\n\npytest tests/test_parse.py\n")
    # the /test block's own reply is the model's answer, without the output aider wrote before it
    t = aider.transcript(tested, {"user_block": 2})
    assert t.messages[t.at]["content"] == "The tab is kept as it is; let me split on whitespace instead."
    # pytest's own `>` lines and lines of spaces are the output's, up to the write's markdown line break
    listing = "> === FAILURES ===\n    def test_tabs():\n>       assert split('a\\tb') == ['a', 'b']\n    \n\n"
    listing += "tests/test_parse.py:7: \nE   AssertionError\n=== 1 failed in 0.1s ===  \n"
    t = aider.transcript(history(console, "/test pytest") + f"{listing}{answer}".encode(), {"user_block": 1})
    assert t.messages[-1]["content"].endswith("E   AssertionError\n=== 1 failed in 0.1s ===\n")
    # ... and an output's own line that ends in two spaces (a diff of markdown) does not end the write
    spaced = FAILING_TEST.replace("collected 3 items\n", "collected 3 items  \n")
    spaced_test = history(console, "/test pytest") + f"{spaced}{answer}".encode()
    assert aider_kind(spaced_test) == "task_failure"
    reply = aider.transcript(spaced_test, {"user_block": 2})
    assert reply.messages[reply.at]["content"] == "The tab is kept as it is; let me split on whitespace instead."
    # a passing /test is not sent (and has no reply): what the person says next is about the edit
    passed = "> ===== 3 passed in 0.10s =====  \n\n#### no, that's wrong: tabs are still kept  \n"
    assert aider_kind(history(console, "/test pytest") + passed.encode()) == "user_correction"
    # `/run`: sent when the person says so, in each version's words (nothing typed is yes, and so are
    # instructions); a traceback in it is what the edit did
    crash = '> Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n'
    crash += "NameError: name 'x' is not defined  \n"
    prompts = {
        "> Add command output to the chat? (Y)es/(N)o [Yes]: y  \n": "task_failure",
        "> Add command output to the chat? (Y)es/(N)o/(D)on't ask again [Yes]: d  \n": "ok",
        "> Add the output to the chat? n  \n": "ok",
        "> Add the output to the chat? (y/n/instructions) y  \n": "task_failure",
        "> Add the output to the chat?\n(Y)es/(n)o/message with instructions: yes  \n": "task_failure",
        "> Add the output to the chat?\n(Y)es/(n)o/message with instructions:  \n": "task_failure",
        "> Add the output to the chat?\n(Y)es/(n)o/message with instructions: fix it  \n": "task_failure",
        "> Add the output to the chat?\n(Y)es/(n)o/message with instructions: no  \n": "ok",
        # before 2025 only n or no declined: other words were instructions, sent with the output
        "> Add the output to the chat? (y/n/instructions) is the import missing? no  \n": "task_failure",
        "> Add the output to the chat? [Y/n/instructions] d  \n": "task_failure",
    }
    for asked, expected in prompts.items():
        ran = history(console, "/run python app.py") + f"{crash}{asked}\n#### now add a flag  \n".encode()
        assert aider_kind(ran) == expected, asked
    # ... but only when the reply changed code: an answer that edited nothing did not break the program
    told = b"#### how do I run it?  \n\nRun `python app.py`.\n\n> Tokens: 1k sent, 20 received.  \n\n"
    said = "> Add command output to the chat? (Y)es/(N)o [Yes]: y  \n"
    assert aider_kind(told + f"#### /run python app.py  \n{crash}{said}\n#### thanks  \n".encode()) == "ok"
    # since 2025 the history notes only that output was added: nothing to read, the person's next words are
    noted = "> Add 0.2k tokens of command output to the chat? (Y)es/(N)o [Yes]: y  \n"
    noted += "> Added 6 lines of output to the chat.  \n"
    ran = history(console, "/run python app.py") + f"{noted}\n#### it still crashes on start  \n".encode()
    assert aider_kind(ran) == "user_correction"
    # aider's own reports after the output keep their place: a failed call then sending again is a retry
    failed = "> FAILED tests/x.py::t - assert 1 == 2\n> Added 3 lines of output to the chat.  \n"
    failed += "> litellm.APIConnectionError: Connection error.  \n\n#### no, that's wrong, the tests still fail  \n"
    t = aider.transcript(history(console, "/test pytest") + failed.encode(), {"user_block": 2})
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages).kind == "ok"


def test_aider_a_commands_block_of_empty_lines_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded work on crafted histories: what aider said last in a block is kept as it goes (looked for
    afresh at each console line, back over every empty one, it took 9.5 s for 40 KB of a `/run` block), and
    a command's output is found in one pass (19 s for 8,000 writes of two lines when each looked ahead)."""
    import builtins

    looked = [0]

    def counted(xs: Any) -> Any:
        for x in builtins.reversed(xs):
            looked[0] += 1
            yield x

    monkeypatch.setattr(aider, "reversed", counted, raising=False)
    data = ("#### /run x  \n> a\nb\n" + "\n" * 20_000 + "> c  \n" + "> ^C again to exit  \n" * 50).encode()
    aider.transcript(data, {"user_block": 1})
    assert looked[0] <= 20_000
    # writes of several lines with no quoted line after them: where aider's next one is, is found once
    broken = aider._broken
    tested = [0]

    def counted_broken(line: str) -> bool:
        tested[0] += 1
        return broken(line)

    monkeypatch.setattr(aider, "_broken", counted_broken)
    lines = "".join(f"> x{i}\ny{i}  \n" for i in range(5_000))
    aider.transcript(
        history("> Applied edit to src/parse.py  ", "/run x") + f"{lines}\n#### next  \n".encode(), {"user_block": 1}
    )
    assert tested[0] <= 20 * 10_000


def test_aider_a_reply_keeps_its_own_edit_markers() -> None:
    t = aider.transcript(
        history("> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  "), {"user_block": 1}
    )
    assert t.messages[t.at]["content"].endswith(">>>>>>> REPLACE\n```")  # a reply's line, not aider's `> ` output
    assert t.messages[t.at + 1]["content"] == "[aider]\nTokens: 2k sent, 300 received.\nApplied edit to src/parse.py"


def test_aider_edit_blocks_in_a_request_are_not_read_as_unapplied() -> None:
    # aider tells the model nothing of the edits it applied: only a history's console can say none was
    t = aider.transcript(
        history("> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  "), {"user_block": 1}
    )
    live = [t.messages[0], t.messages[1], {"role": "user", "content": "thanks, now the lexer"}]
    assert judge(live[1], live[2:], agent="aider", messages=live).kind == "ok"
    silent = aider.transcript(history("").replace(b"\n\n\n", b"\n"), {"user_block": 1})
    assert silent.messages[2]["content"] == "[aider]"  # the history shows aider printed nothing
    assert (
        judge(silent.messages[1], silent.messages[2:], agent="aider", messages=silent.messages).kind == "task_failure"
    )


def test_aider_in_ask_mode_applies_no_edit_block() -> None:
    # the person switched aider to ask mode: the reply's blocks are a proposal, none applied says nothing
    said = history("> Tokens: 2k sent, 300 received.  ")
    block = 2  # the reply to "fix the parser", after the switch

    def kind_after(before: str) -> str:
        t = aider.transcript(before.encode() + said, {"user_block": block})
        return judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages).kind

    assert kind_after("#### /ask  \n\n") == "ok"
    assert kind_after("#### /chat-mode ask  \n\n") == "ok"
    assert kind_after("#### /ask  \n#### /ask what does it do?  \n\n") == "ok"  # one run of the person's lines
    # `/ask X` is logged, then X as a block of its own: the message aider sent in ask mode (holdout101, both
    # labellers); that once only: the next request is in the mode aider was in
    assert kind_after("#### /ask fix the parser  \n\n") == "ok"
    assert kind_after("#### /ask why is it slow?  \n\n") == "task_failure"
    # the default mode, switched back, or a new session (which starts in its default): blocks none applied failed
    assert kind_after("#### /help  \n\n") == "task_failure"  # help's list of commands switches nothing
    assert kind_after("#### /chat-mode help  \n\n") == "task_failure"
    block = 3
    assert kind_after("#### /ask  \n\n#### /code  \n\n") == "task_failure"
    assert kind_after("#### /ask  \n\n# aider chat started at 2025-06-29 11:57:36\n\n#### /add x  \n\n") == (
        "task_failure"
    )


def test_aider_a_correction_after_a_model_call_aider_retried_with_success() -> None:
    failed = "> litellm.APIConnectionError: OpenAIException - server error  \n> Retrying in 0.2 seconds...  "
    answered = f"{failed}\n> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  "
    assert aider_kind(history(answered, "fix the error in parse.py")) == "user_correction"
    assert aider_kind(history(failed, "fix the error in parse.py")) == "ok"  # no answer came: sent again
    assert aider_kind(restating(answered)) == "ok"  # the same again after a failed call: a retry
    # newer aider names the error before LiteLLM's own name for it
    refused = "> BadRequestError: litellm.BadRequestError: AnthropicException - credit balance is too low  "
    assert aider_kind(restating(refused)) == "ok"


def test_aider_a_reply_with_its_own_headings_is_one_reply() -> None:
    # aider ends each line the person typed with two spaces; a reply's `#### ` heading has none
    data = (
        b"# aider chat started at 2026-01-01 10:00:00\n\n#### explain the plan  \n\n#### Step 1\nRead the parser.\n\n"
        b"#### Step 2\nWrite the test.\n\n> Tokens: 2k sent, 300 received.  \n\n#### that is not what I asked  \n"
        b"#### I wanted the lexer  \n"
    )
    t = aider.transcript(data, {"user_block": 1})
    assert t.messages[0]["content"] == "explain the plan  "
    assert t.messages[t.at]["content"] == "#### Step 1\nRead the parser.\n\n#### Step 2\nWrite the test."
    assert t.messages[-1]["content"] == "that is not what I asked  \nI wanted the lexer  "
    assert aider.transcript(data, {"user_block": 2}).messages[0]["content"].startswith("that is not")
    with pytest.raises(LookupError, match="the history has 2"):
        aider.transcript(data, {"user_block": 3})
    # a history without those spaces (older aider, or stripped): every `#### ` line is the person's
    stripped = data.replace(b"  \n", b"\n")
    assert aider.transcript(stripped, {"user_block": 2}).messages[0]["content"] == "Step 1"
    # ... and one whose only spaced lines are a prompt's blank ones (an IDE plugin's history, holdout91):
    # the prompt is one message, not cut at each blank line
    blank = b"# aider chat started at 2025-01-01 10:00:00\n\n#### Write tests\n####   \n#### Use JUnit\n\nDone.\n"
    t = aider.transcript(blank, {"user_block": 1})
    assert t.messages[0]["content"] == "Write tests\n  \nUse JUnit"
    assert t.messages[t.at]["content"] == "Done."


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("litellm.RateLimitError: AnthropicException - rate_limit_error", "ok"),  # a retry, not a correction
        ("litellm.AuthenticationError: Missing Anthropic API Key", "environment"),
    ],
)
def test_aider_sending_again_after_a_failed_model_call_is_a_retry(error: str, expected: str) -> None:
    assert aider_kind(restating(f"> {error}  \n> Retrying in 0.2 seconds...  ")) == expected


# -- people's words, at the start of their message --

DONE = {"role": "assistant", "content": "Done: the form saves now."}


@pytest.mark.parametrize(
    "said",
    [
        "no funciona, sigue igual",
        "El error es que el admin no puede aprobar",
        "sigue dando el mismo error",
        "ainda não funciona",
        "ça ne marche toujours pas",
        "Es funktioniert immer noch nicht",
        "immer noch der gleiche Fehler",
        "non funziona ancora",
        "всё ещё не работает",
        "опять ошибка при сохранении",
        "还是报错",
        "不行，页面是空白的",
        "まだ動かない",
        "エラーが出ます",
        "여전히 안 돼요",
        "Still lost on refresh",
        "The data is still lost after a reload",
        "it didn't fix anything",
        "not fixed yet",
        "GET http://localhost:3000/api/items 500 (Internal Server Error)",
        "Uncaught (in promise) TypeError: x is undefined",
        "src/App.tsx(4,1): error TS1005: ';' expected.",
        "This isn't exactly what I wanted, the images only stack vertically",
        "Still the mock ups aren't like the real screens",
        "ko có được",  # Vietnamese, written casually: it did not work
        "你还没说如何同步呢？",
        "i don't see the status line",
        "I don't see the spec in the openspec directory?",
        "the deploy was reverted and the issue persists, so it is not the config",
        "issue still persist - rewrite that so python tracks the time",  # no article, no -s
        "it still appears in the top right",
        "the sidebar still shows the old title",
        "the taskbar is less stable, in fact it's unusable",
        "the script works but the model keeps saying no internet access",
        "I think there's something else missing. Setting `dataPaths` alone doesn't seem to work.",
        "is this even the right way to set it up? It doesn't seem to work at all",
        "I don't think it's `experimental`",
        "i meant this thing called everything claude code: https://github.com/x/y",
        "상단에만드는거말고 새로운카태고리작업을하자는소리였어",
        "我的意思是每个页面都要有返回按钮",
        "I still don't see the button",
        "i dont see a status line",
        "OK. The error still appears on reload.",
        "it's basically unusable now",
        # saying again what they said: the reply did not do it
        "i said show me where in the documentation",
        "No, I asked for a web url so I can see it myself",
        "I told you not to touch the generated files",
        "te pregunté por el límite de 2048",
        "Ich habe doch gesagt, ohne Tabellen",
        "我说了不要改这个文件",
        "I said no tables",
        "As I said, use pnpm not npm",
        "I've told you three times: use pnpm",
        "I specifically asked for a bar chart",
        "Je t’ai dit de ne pas toucher au CSS",
        "Hab ich doch gesagt",
        "Já te disse que não",
        "Я же говорил, не трогай конфиг",
        "我刚才说了不要删",
        "Tôi bảo rồi mà",
        "the changes has error and I don't see this increase performance",
        "your solution has many compilor error please fix it?",
        "but I want the default value to be empty which is null and not zero",
        "Im getting erros whebn re opening Claude Desktop",
        "I'm seeing a TypeError in the console",
        '"your code has many compiler errors',  # a quote before the first word
        # a compiler's or linter's diagnostic pasted (Go's says no "error"; its package line may come first)
        "./server.go:41:9: undefined: handler",
        '# example.com/tool\ncmd/run.go:7:2: "strings" imported and not used',
        "app/models.py:12:1: F401 'json' imported but unused",
        # linters' messages that begin with a verb or "this" (staticcheck, prettier, ESLint)
        "main.go:42:2: this value of err is never used (SA4006)",
        "src/a.ts:3:5: Delete `;` [Error/prettier/prettier]",
        "src/a.js:10:3: Move function declaration to function body root. [Error/no-inner-declarations]",
        # what a person sees in their browser after the reply said it works
        "Nothing happens when I press new game. It should start a new game.",
        "The drag and drop doesn't seem to be working. Try again.",
        "I'm getting:\n\nAccess to script at 'file:///Users/me/app.js' from origin 'null' has been blocked by CORS "
        "policy: Cross origin requests are only supported for protocol schemes: http, https",
        "localhost/:1 Access to fetch at 'http://a/x' from origin 'http://b' has been blocked by CORS policy",
        "Cross-Origin Request Blocked: The Same Origin Policy disallows reading the remote resource at http://a/x.",
        "Nothing is happening",
        "The buttons don't seem to be working",
        "The bug doesn't seem to be fixed",
        "The settings don't seem to be saved after reload",
        "I click save and nothing happens, did you wire up the handler?",
        "Nothing happens until I reload the page",
        "nothing happens - no good",
        "Nothing happens when I click login, which is not what I want",
        "It still does.",  # all of it, after a reply that said the bug was gone
        "error still is there",
        "same thing. just a >",
        "It still only works when the piece is dragged, not hovered over.",
        "That did not seem to solve the issue. Is there something else we could try",
        "That didn’t seem to work, the cursor only moves when the window is focussed",
        "No I mean in normal mode in the terminal buffer",
        # told not to do to the work what it just did
        "don't use `IgnorantTemporaryDirectory` use GitTemporaryDirectory",
        "please do not suggest changes only explain the code that is written",
        # said at the sentence's end, where the verb comes in Korean and Japanese
        "백엔드 서버가 실행되지 않아.",
        "docker compose로 빌드해서 실행했을때 migrate가 안됨",
        "切り替わりの動作はしてそうなのですが背景やテキストカラーとかうまく動作していないです。",
    ],
)
def test_a_person_saying_it_failed(said: str) -> None:
    assert kind(DONE, [{"role": "user", "content": said}], "generic") == "user_correction"


@pytest.mark.parametrize(
    "said",
    [
        "Gracias, ahora añade un test",
        "还是用 Python 吧",
        "Still, could you also add a README?",
        "Still can't wait to see it live! Next, add a dark mode toggle.",
        "Still didn't get to the docs myself, please write the README next",
        "Danke! Jetzt bitte die Tests.",
        "Отлично, теперь добавь тесты",
        "The error message should say which file",
        "see server.go:41 for where the handler is registered",  # a place named, nothing pasted
        "the build at 10:30:15: let's add a changelog",
        # a place pointed at further down a message is no diagnostic pasted at its top
        "All green now, thanks! Next, here is where the config is read:\nconfig.yaml:3:5: port: 8080",
        "Perfect, that works. Now the TODOs:\nsrc/app.ts:10:5: TODO add input validation",
        # a place named on the first line, and what to do there: a request, not a diagnostic pasted
        "src/app.ts:10:5: please add input validation here",
        "lib/db.go:88:3: why is this retried twice?",
        "src/app.ts:10:5: TODO add input validation",
        "src/app.ts:10:5: add a null check here",
        "src/app.ts:10:5: this should use the cache",
        "It still does the right thing after the refactor, thanks. Next, the README.",
        "Same thing for the footer, please",
        "That doesn't seem to matter, keep port 8080",
        "That didn't seem to break anything, great! Now add the footer",
        "This didn't seem to cause any issues. Next step?",
        "Do not make this UI live yet; open the mockups in a browser",
        "설치 안 돼?",  # asked
        "그건 건드리지 않아도 돼",  # "you need not touch that"
    ],
)
def test_a_person_moving_on(said: str) -> None:
    assert kind(DONE, [{"role": "user", "content": said}], "generic") == "ok"


def test_a_request_asked_again() -> None:
    before = [{"role": "user", "content": "make the export button download a CSV of the table"}]
    again = {"role": "user", "content": "make the export button download a CSV of the table, with headers"}
    assert kind(DONE, [again], "generic", before) == "user_correction"
    short = [{"role": "user", "content": "continue"}]
    assert kind(DONE, [{"role": "user", "content": "continue"}], "generic", short) == "ok"
    # one path after another (the files the reply asked for) is no request said again
    path = [{"role": "user", "content": r"C:\Users\as\source\repos\item_information\client\src\config"}]
    other = {"role": "user", "content": r"C:\Users\as\source\repos\item_information\client\src\pages"}
    assert kind(DONE, [other], "generic", path) == "ok"
    fix = [{"role": "user", "content": "fix src/parser/tokenize.py"}]
    assert kind(DONE, [{"role": "user", "content": "fix src/parser/tokenize.py"}], "generic", fix) == "user_correction"


def test_a_template_filled_in_with_a_new_request_is_not_asked_again() -> None:
    # some people wrap every request in the same long preamble and put the request at its end
    preamble = "You build desktop-first web apps with Next.js and Tailwind. Project files:\n" + "".join(
        f"src/components/part{n}.tsx\n" for n in range(60)
    )
    before = [{"role": "user", "content": preamble + "<request>make the export button download a CSV</request>"}]
    new = {"role": "user", "content": preamble + "<request>add comments that explain each component</request>"}
    assert kind(DONE, [new], "generic", before) == "ok"
    same = {"role": "user", "content": preamble + "<request>make the export button download a CSV</request>"}
    assert kind(DONE, [same], "generic", before) == "user_correction"


def test_a_request_sent_again_to_claude_code_or_codex_runs_it_again() -> None:
    # their people send a saved command's text again to run it again (a slash command's template, "commit
    # the changes"); aider's person sending the request again says the reply did not do it
    template = "## User Input\n\n```text\n\n```\n\nYou **MUST** consider the user input before proceeding.\n"
    template += "".join(f"{n}. Run the planning step {n} and report what it wrote.\n" for n in range(1, 30))
    for text in (template, "Commit the working tree changes with a sensible message."):
        before = [{"role": "user", "content": text}]
        again = {"role": "user", "content": text}
        for agent in ("claude_code", "codex"):
            assert kind(DONE, [again], agent, before) == "ok", agent
        assert kind(DONE, [again], "generic", before) == "user_correction"
    # the same request with more said is still read as asked again
    fix = [{"role": "user", "content": "make the export button download a CSV of the table"}]
    for more in (", with headers", ". It still downloads nothing.", ", you only changed the label"):
        again = {"role": "user", "content": fix[0]["content"] + more}
        for agent in ("claude_code", "codex"):
            assert kind(DONE, [again], agent, fix) == "user_correction", (agent, more)


def test_codex_reads_a_persons_words_after_their_editors_context() -> None:
    tabs = "".join(f"- page{n}.tsx: src/pages/page{n}.tsx\n" for n in range(40))
    ide = f"# Context from my IDE setup:\n\n## Active file: src/app.tsx\n\n## Open tabs:\n{tabs}\n"
    ide += "## My request for Codex:\n"
    before = [{"role": "user", "content": ide + "make the export button download a CSV of the table"}]
    moving_on = {"role": "user", "content": ide + "now add a dark mode toggle to the settings page"}
    assert kind(DONE, [moving_on], "codex", before) == "ok"  # the same editor state is not the same request
    again = {"role": "user", "content": ide + "make the export button download a CSV of the table, with headers"}
    assert kind(DONE, [again], "codex", before) == "user_correction"
    said = {"role": "user", "content": ide + "it still doesn't download anything"}
    assert kind(DONE, [said], "codex", before) == "user_correction"
    # the heading alone, when the editor sent no context
    heading = {"role": "user", "content": "## My request for Codex:\nStill these charts aren't what the old page drew."}
    assert kind(DONE, [heading], "codex", before) == "user_correction"
    moved = {"role": "user", "content": "## My request for Codex:\nStill on the export: add an XLSX option too."}
    assert kind(DONE, [moved], "codex", before) == "ok"


# -- mini-swe-agent's older observation: a Python dict's repr with the output and the return code --


def mini(command: str) -> dict[str, Any]:
    return {"role": "assistant", "content": f"THOUGHT: write it.\n\n```bash\n{command}\n```"}


def observed(output: str, code: int) -> dict[str, Any]:
    return {"role": "user", "content": "Observation: " + repr({"output": output, "returncode": code})}


def test_a_dict_observation_gives_the_status_and_the_output() -> None:
    failed = observed("Traceback (most recent call last):\n  File \"x.py\"\nNameError: name 'y'\n", 1)
    assert kind(mini("python x.py"), [failed], "mini_swe_agent") == "task_failure"
    assert kind(mini("python x.py"), [observed("all good\n", 0)], "mini_swe_agent") == "ok"
    assert kind(mini("grep -rn foo src"), [observed("", 1)], "mini_swe_agent") == "ok"  # a probe's "no"


def test_a_dict_observation_that_is_not_a_literal_is_read_as_words() -> None:
    broken = {"role": "user", "content": "Observation: {'output': __import__('os'), 'returncode': 0}"}
    assert kind(mini("ls"), [broken], "mini_swe_agent") == "ok"


# -- the shell's own errors behind a later command's zero status --


def test_a_shell_error_hidden_by_a_zero_status_fails_the_turn() -> None:
    out = "bash: line 1: bashndocker: command not found\nInstructions file created.\n"
    assert kind(mini('echo -e "run `bash\\ndocker build .`" > notes.md'), [observed(out, 0)], "mini_swe_agent") == (
        "task_failure"
    )
    # the same words inside a file that was printed are content, not the shell's report
    printed = "# notes\n  bash: line 1: foo: command not found is what you see without it\n"
    assert kind(mini("cat notes.md"), [observed(printed, 0)], "mini_swe_agent") == "ok"


# -- a failure seen before: running the same command line again looks; other arguments are a new try --


def test_the_same_program_with_other_arguments_after_a_failure_is_a_new_try() -> None:
    failed = "Exit code 1\nERROR: unable to download video data: HTTP Error 403: Forbidden"
    before = [{"role": "user", "content": "download it"}, call("Bash", {"command": "yt-dlp -f best URL"}, "t1")]
    before.append(tool(failed, "t1", is_error=True))
    again = call("Bash", {"command": "yt-dlp --user-agent X -f 'best[height<=720]' URL"}, "t2")
    assert kind(again, [tool(failed, "t2", is_error=True)], "claude_code", before) == "task_failure"
    same = call("Bash", {"command": "yt-dlp  -f best URL"}, "t2")  # the same command line: a second look
    assert kind(same, [tool(failed, "t2", is_error=True)], "claude_code", before) == "ok"


# -- more of people's languages, and asking for the errors to be fixed --


@pytest.mark.parametrize(
    "said",
    [
        "hataları düzelt",
        "Lütfen hataları düzelt ve çalıştır",
        "hala çalışmıyor",
        "het werkt nog steeds niet",
        "nadal nie działa",
        "please fix the errors",
        "Fix these errors:",
        "corrige los errores",
        "исправь ошибку",
    ],
)
def test_people_asking_for_the_errors_to_go_say_the_turn_failed(said: str) -> None:
    reply = {"role": "assistant", "content": "Done: I changed the parser."}
    assert kind(reply, [{"role": "user", "content": said}], "generic") == "user_correction"


@pytest.mark.parametrize(
    "said",
    [
        "fix the login page layout next",
        "hata ayıklama modunu ekle",
        "nog een vraag",
        "I don't see the point of a cache here, drop it and add the export",
        "it still needs a README, add one",
        "it keeps the old config, good; now the tests",
        "I don't think we need tests for this one. Add the export button next.",
        "Great. Now the settings page; it doesn't need a dark mode.",
        # good news and requests in the words of a complaint (found by a hostile review)
        "Awesome, I don't see the warning anymore. Let's move on to auth.",
        "Thanks! I don't see any problems. Please push it.",
        "Thanks, that fixed it. It doesn't show the error anymore.",
        "I don't think so, just commit it.",
        "I don't think it's a problem. Next, add the --verbose flag.",
        "Next task:\n- The banner doesn't show for logged-out users\n- Add a dismiss button",
        "Perfect. Can you make the toast keep showing until dismissed?",
        "Great. It keeps showing the right number now. Next, add the chart.",
        "I meant to ask: can you also add a dark mode toggle?",
        "The app still shows the correct totals after the refactor, great. Add export next.",
        "Please add a retry; currently the error persists until restart.",
        "Please make the cache persist across restarts.",
        "Great, no error persists now. Next, add the export.",
        "If the error persists after the restart I will send the log; add the export now.",
        "The alternatives are worse, so keep it. Next, add the --verbose flag.",
        "지난 주말이었는데 배포 잘 됐어요, 이제 로그인 기능 추가해 주세요",
        "로그인 전에는 메뉴가 표시되지 않게 해줘",
        "이 파일은 저장하지 않아도 돼, 다음 작업 해줘",
        "ログイン前はメニューが表示されないようにして",
        "삭제된 항목은 목록에 표시되지 않아야 해요",
        "이제 에러가 표시되지 않아요! 고마워",
        "実行できない場合はエラーを表示して",
        "I said yes, go ahead with the migration",
        "I asked so we can plan; now add the export",
        # news, thanks and answers in the same words (found by a hostile review)
        "I asked my manager and she wants a CSV export too, please add it",
        "I asked ChatGPT and it suggested using Redis; what do you think?",
        "I asked for a summary and this is exactly it, thank you!",
        "I asked you so we could plan; now add the export",
        "I said 'yes', go ahead",
        "I told you about the staging server yesterday; now deploy",
        "Tôi đã nói chuyện với khách hàng, họ muốn thêm nút xuất",
        "我让你帮我做一件事：添加导出功能",
        "我说过的需求都实现了，谢谢！",
        "Ich habe gefragt, und der Kunde möchte auch einen CSV-Export",
        "Eu disse ao cliente que fica pronto amanhã; agora adicione o export",
        "Я просил коллегу проверить — всё работает. Теперь добавь экспорт",
        "Te dije que sí, adelante con la migración",
        "Je t'ai demandé un résumé et c'est parfait, merci !",
        "does the controller have sufficient error handling?",
        "the app has error handling now, add the tests next",
        "but I want to also add a dark mode toggle",
        "Ran it, the code has 0 errors now, thanks!",
        "Now add a fixture file that has syntax errors so we can test the linter.",
        "If the code has errors, just log them and continue.",
        "But I want to thank you, this is great!",
        "I'm seeing no errors now, thanks!",
        "Im getting ready to deploy, can't wait!",
        # swearing in joy, praise and in others' words (found by a hostile review: no rule reads swearing)
        "Are you kidding me? This is perfect.",
        "Use Flask-WTF for the signup form",
        "Fuck it, just push it to main",
        "You do it, I trust your taste",
        "Make sure nothing happens when the user clicks twice",
        "It doesn't seem to be needed any more, remove the cache",
        # what should (not) happen, said as praise, as a spec or asked (found by a hostile review)
        "Nothing happens if the user is offline, which is what we want",
        "Now nothing happens on double click — perfect",
        "Nothing happens to existing users, right?",
        "Nothing happens until the user logs in, that's expected. Add logout next.",
        "It doesn't seem to be helpful to log that, drop it",
        "The bug doesn't seem to be startup related, look at the handler",
        "Don't change the API, add a test",
        "The migrations don't seem to exist yet, please add them",
    ],
)
def test_new_requests_in_those_words_are_not_corrections(said: str) -> None:
    reply = {"role": "assistant", "content": "Done: I changed the parser."}
    assert kind(reply, [{"role": "user", "content": said}], "generic") == "ok"


# -- what the IDE puts before a person's words; more ways of saying it failed --


def test_claude_codes_ide_tags_before_a_persons_words_are_not_theirs() -> None:
    reply = {"role": "assistant", "content": "Fixed: the token is saved now."}
    said = "<ide_opened_file>The user opened the file src/Login.js in the IDE.</ide_opened_file> 刷新后登录状态就失效了"
    assert kind(reply, [{"role": "user", "content": said}], "claude_code") == "user_correction"
    opened = (
        "<ide_opened_file>The user opened the file src/Login.js in the IDE.</ide_opened_file> now add a logout button"
    )
    assert kind(reply, [{"role": "user", "content": opened}], "claude_code") == "ok"


@pytest.mark.parametrize(
    "said",
    [
        "furt nic",
        "pořád nefunguje",
        "Stejny problém, úprava nepomohla. Podívej se na odpověď API.",  # "the same problem, the change did not help"
        "Nepomohlo to.",
        "To nepomohlo.",
        "cp: missing destination file operand after 'x.rules'\nTry 'cp --help'",
    ],
)
def test_czech_and_a_pasted_core_tool_error_are_corrections(said: str) -> None:
    reply = {"role": "assistant", "content": "Run: sudo cp x.rules /etc/udev/rules.d/"}
    assert kind(reply, [{"role": "user", "content": said}], "generic") == "user_correction"
    if said.startswith(("Stejn", "Nepomohl")):  # and helping is no correction, nor these
        for other in (
            "Pomohlo to, díky.",
            "Stejný problém je i na stránce /login, oprav ho taky.",  # the same problem elsewhere: a new request
            "Nepomohlo by přidat cache?",  # "wouldn't it help to ...": a question
            "Stejný problém jsem řešil minule, díky, funguje to!",
        ):
            assert kind(reply, [{"role": "user", "content": other}], "generic") == "ok", other


# -- environment, or the model's own mistake --


@pytest.mark.parametrize(
    "out",
    [
        "Error: You have not agreed to the Xcode license. Please resolve this by running:",
        "Operation failed: page.goto: net::ERR_CONNECTION_REFUSED at http://localhost:8000/",
    ],
)
def test_what_the_lead_would_meet_too_is_the_environment(out: str) -> None:
    assert kind(call("Bash", {"command": "make app"}), [tool(f"Exit code 1\n{out}", is_error=True)], "claude_code") == (
        "environment"
    )


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        (
            "Error: HTTPSConnectionPool(host='api.example.org', port=443): Read timed out. (read timeout=60)",
            "environment",
        ),
        (
            "urllib3 HTTPConnectionPool(host='pypi.org', port=80): Connect timed out. (connect timeout=15)",
            "environment",
        ),
        # on this machine, a server the model started may be what hangs
        (
            "ReadTimeout: HTTPConnectionPool(host='localhost', port=8000): Read timed out. (read timeout=5)",
            "task_failure",
        ),
        ("TimeoutError: fetch_all took longer than its own 5 s budget", "task_failure"),
    ],
)
def test_a_network_time_out_on_a_remote_host_is_the_environment(out: str, expected: str) -> None:
    run = call("Bash", {"command": "python sync.py"})
    assert kind(run, [tool(f"Exit code 1\n{out}", is_error=True)], "claude_code") == expected


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("ssh: connect to host 192.168.1.20 port 22: Connection timed out", "environment"),
        ("ssh: connect to host build-mac.local port 22: Operation timed out", "environment"),
        ("ssh: connect to host 10.0.0.7 port 2222: No route to host", "environment"),
        # this machine: a server the model started may be what does not answer
        ("ssh: connect to host localhost port 2222: Connection timed out", "task_failure"),
        ("ssh: connect to host LOCALHOST.localdomain port 2222: Connection timed out", "task_failure"),
        ("ssh: connect to host 127.0.0.1 port 2222: No route to host", "task_failure"),
        ("ssh: connect to host ::1 port 2222: Connection timed out", "task_failure"),
        ("ssh: connect to host 0.0.0.0 port 2222: Connection timed out", "task_failure"),
        ("ssh: connect to host localhost-gpu.corp.example port 22: Connection timed out", "environment"),
        # reset before any session: the key exchange never began
        ("kex_exchange_identification: read: Connection reset by peer", "environment"),
        # after a session began, a reset may be the remote command's own doing (a firewall it changed)
        ("Connection reset by 192.168.1.20 port 22", "task_failure"),
    ],
)
def test_ssh_never_reaching_another_machine_is_the_environment(out: str, expected: str) -> None:
    run = call("Bash", {"command": "ssh -o ConnectTimeout=10 pi@192.168.1.20 uptime"})
    assert kind(run, [tool(f"Exit code 255\n{out}", is_error=True)], "claude_code") == expected


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # a test label or settings module the model named that is not there: its name was wrong
        (
            "python -m django test admin_checks --settings=tests.test_sqlite",
            "No module named 'admin_checks'",
            "task_failure",
        ),
        ("python tests/runtests.py model_fields.test_m2m -v 2", "No module named 'model_fields'", "task_failure"),
        ("cd tests && python -m django test x --settings=test_sqlite", "No module named 'test_sqlite'", "task_failure"),
        ("python -m unittest tests.test_parse", "No module named 'tests'", "task_failure"),
        # a package the project's tests or the command need that the machine lacks
        ("python manage.py test shop", "No module named 'stripe'", "environment"),
        ("python -m pytest tests/test_x.py", "No module named pytest", "environment"),
        ('python -c "import ast, astor"', "No module named 'astor'", "environment"),
        # the label's word after another command on the line is not a label, nor is a word after `test` elsewhere
        ("python manage.py test shop && python -c 'import yaml'", "No module named 'yaml'", "environment"),
        ("python manage.py test shop; python -c 'import yaml'", "No module named 'yaml'", "environment"),
        ("python manage.py test shop\npython -c 'import yaml'", "No module named 'yaml'", "environment"),
        ("if test -f setup.py; then python -c 'import yaml'; fi", "No module named 'yaml'", "environment"),
        ('pytest -k "test and yaml"', "No module named 'yaml'", "environment"),
        ("npm test -- yaml", "No module named 'yaml'", "environment"),
        (
            "cat <<'EOF' > r.py\nimport unittest\nimport numpy\nEOF\npython r.py",
            "No module named 'numpy'",
            "environment",
        ),
    ],
)
def test_a_module_the_command_named_itself_is_the_models_name(command: str, output: str, expected: str) -> None:
    out = f'Exit code 1\nTraceback (most recent call last):\n  File "x.py", line 1\nModuleNotFoundError: {output}'
    assert kind(call("Bash", {"command": command}), [tool(out, is_error=True)], "claude_code") == expected


@pytest.mark.parametrize(
    ("command", "output"),
    [
        # zsh could not parse the line (an old Claude Code gives only the error flag, no status)
        ('for f in *.md; do wc -l "$f"; grep -c "^```" "$f" || echo "0"; done', '(eval):1: unmatched "'),
        # PowerShell parses the whole script first: a search that never ran answered nothing
        (
            'rg -n "aria-label=\\"" src',
            'The string is missing the terminator: ".\n    + CategoryInfo          : ParserError: (:) [], '
            "ParentContainsErrorRecordException\n    + FullyQualifiedErrorId : TerminatorExpectedAtEndOfString",
        ),
    ],
)
def test_a_line_the_shell_could_not_parse_never_ran(command: str, output: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(output, is_error=True)], "claude_code") == "task_failure"
    # the same words in a log that a read that worked shows
    assert kind(call("Bash", {"command": "cat ci/deploy.log"}), [tool(output)], "claude_code") == "ok"


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (
            "\x1b[2m      Tests \x1b[22m \x1b[1m\x1b[31m16 failed\x1b[39m\x1b[22m\x1b[2m | \x1b[22m\x1b[32m116 passed",
            "task_failure",
        ),
        ("\x1b[2m      Tests \x1b[22m \x1b[1m\x1b[32m132 passed\x1b[39m\x1b[22m\x1b[90m (132)\x1b[39m", "ok"),
    ],
)
def test_a_test_runners_colours_do_not_hide_its_summary(summary: str, expected: str) -> None:
    # `| tail` hides the status: the summary's words are all there is, split by the terminal's colours
    edit = call("Edit", {"file_path": "src/hotkeys.ts", "old_string": "a", "new_string": "b"}, "e1")
    before = [
        {"role": "user", "content": "make the tests pass"},
        edit,
        tool("The file src/hotkeys.ts has been updated.", "e1"),
    ]
    run = call("Bash", {"command": "npm test -- --run 2>&1 | tail -40"}, "b1")
    assert (
        kind(run, [tool(f"src/hotkeys.test.ts\n{summary}\n   Duration  21.7s", "b1")], "claude_code", before)
        == expected
    )


@pytest.mark.parametrize(
    "out",
    [
        "### Error\nError: browserBackend.callTool: Target page, context or browser has been closed",
        'Error: Extension connection timeout. Make sure the "Playwright MCP Bridge" extension is installed.',
    ],
)
def test_a_browser_tool_whose_browser_went_away_is_the_environment(out: str) -> None:
    navigate = call("mcp__playwright__browser_navigate", {"url": "http://localhost:3000"})
    assert kind(navigate, [tool(out, is_error=True)], "claude_code") == "environment"
    clicked = "### Error\nError: locator.click: Timeout 5000ms exceeded waiting for getByRole('button')"
    assert kind(navigate, [tool(clicked, is_error=True)], "claude_code") == "task_failure"
    # a test run's own failure says the same when a locator never appeared: the model's test failed
    run = "Exit code 1\n    Test timeout of 30000ms exceeded.\n    Error: page.click: " + out.split("Error: ")[-1]
    assert kind(call("Bash", {"command": "npx playwright test"}), [tool(run, is_error=True)], "claude_code") == (
        "task_failure"
    )


def test_importing_the_repositorys_own_paths_is_the_models_mistake() -> None:
    own = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'src.main.java'\n"
    assert kind(mini("python t.py"), [observed(own, 1)], "mini_swe_agent") == "task_failure"
    missing = (
        "Traceback (most recent call last):\n  File \"t.py\", line 2\nModuleNotFoundError: No module named 'numpy'\n"
    )
    assert kind(mini("python t.py"), [observed(missing, 1)], "mini_swe_agent") == "environment"


def test_mini_swe_agents_interruption_is_a_rejection() -> None:
    interrupted = {"role": "user", "content": "Interrupted by user: Temporary interruption caught."}
    assert kind(mini("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"), [interrupted], "mini_swe_agent") == "rejected"


def test_reading_a_directory_as_a_file_fails_even_behind_a_pipe() -> None:
    out = "nl: sympy/ntheory: Is a directory\n"
    assert kind(mini("nl -ba sympy/ntheory | sed -n '1,120p'"), [observed(out, 0)], "mini_swe_agent") == "task_failure"


def test_running_again_a_command_that_writes_is_another_try() -> None:
    script = "python - <<'PY'\nopen('a.py','w').write(x)\nPY"
    before = [{"role": "user", "content": "fix it"}, mini(script), observed("SyntaxError: invalid syntax\n", 1)]
    assert (
        kind(mini(script), [observed("SyntaxError: invalid syntax\n", 1)], "mini_swe_agent", before) == "task_failure"
    )


# -- statuses that answer, and statuses that say the command never ran --


def test_a_search_that_refused_its_own_options_never_searched() -> None:
    out = "grep: invalid option -- 'S'\nUsage: grep [OPTION]... PATTERNS [FILE]...\n"
    assert kind(mini("grep -Rin --include='*.py' sig -S ."), [observed(out, 2)], "mini_swe_agent") == "task_failure"
    assert kind(mini("grep -Rin sig ."), [observed("", 1)], "mini_swe_agent") == "ok"


def test_reading_a_file_that_is_not_there_or_selecting_no_tests_is_an_answer() -> None:
    assert (
        kind(mini("cat README.md"), [observed("cat: README.md: No such file or directory\n", 1)], "mini_swe_agent")
        == "ok"
    )
    assert (
        kind(
            mini("pytest -k leap_second"),
            [observed("collected 0 items\n\nno tests ran in 0.1s\n", 5)],
            "mini_swe_agent",
        )
        == "ok"
    )
    broken = "cat: a.txt: No such file or directory\nTraceback (most recent call last):\nValueError: x\n"
    assert kind(mini("cat a.txt && python run.py"), [observed(broken, 1)], "mini_swe_agent") == "task_failure"


def test_a_program_not_installed_is_the_environment_but_python_for_python3_is_a_slip() -> None:
    out = "bash: ponyc: command not found\n"
    assert kind(mini("ponyc packages/stdlib"), [observed(out, 127)], "mini_swe_agent") == "environment"
    assert kind(mini("python run.py"), [observed("bash: python: command not found\n", 127)], "mini_swe_agent") == (
        "task_failure"
    )


@pytest.mark.parametrize(
    ("command", "out", "expected"),
    [
        # a later command's program, not installed: the first word (echo) ran; it was the model's failure
        ('echo "report" | mail -s Report boss@example.com', "bash: mail: command not found\n", "environment"),
        ("make build && ponyc packages", "bash: ponyc: command not found\n", "environment"),
        # a PowerShell cmdlet typed into bash is the model's slip, first or later in the pipeline
        ("cat log.txt | Select-String error", "bash: Select-String: command not found\n", "task_failure"),
        ("Get-ChildItem src", "bash: Get-ChildItem: command not found\n", "task_failure"),
        # the command itself meant to put the program on the PATH: that it is not there is its own doing
        ("export PATH=$PATH:~/sdk/platform-tools && adb devices", "bash: adb: command not found\n", "task_failure"),
        ("PATH=$HOME/go/bin:$PATH gopls version", "bash: gopls: command not found\n", "task_failure"),
        # Codex's editing tool typed into a shell that has none: no program anyone installs
        (
            "applypatch <<'PATCH'\n*** Begin Patch\nPATCH",
            "bash: line 1: applypatch: command not found\n",
            "task_failure",
        ),
    ],
)
def test_a_program_not_installed_anywhere_in_the_command(command: str, out: str, expected: str) -> None:
    assert kind(mini(command), [observed(out, 127)], "mini_swe_agent") == expected


def test_an_inline_script_that_did_not_parse_fails_even_when_the_status_is_0() -> None:
    out = 'bash execution output:\n  File "<stdin>", line 9\n    start = s.rfind(\'\n        ^\nSyntaxError: EOL\n'
    assert kind(mini("python - <<'PY'\nx\nPY\necho done"), [observed(out, 0)], "mini_swe_agent") == "task_failure"


def test_issues_that_still_need_fixing_are_a_correction() -> None:
    reply = {"role": "assistant", "content": "Updated the report page."}
    said = "After reviewing your updated code, here are the key issues that still need to be addressed:\n1. Duplicates"
    assert kind(reply, [{"role": "user", "content": said}], "generic") == "user_correction"


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        # TypeScript's own format in a terminal (pretty), pasted with the prompt lines around it
        (
            "❯ npm run compile\n> tsc -p .\n\nsrc/ext.ts:32:29 - error TS2345: Argument of type\n\n"
            "Found 1 error in src/ext.ts:32\n",
            "user_correction",
        ),
        ("❯ npm run compile\n> tsc -p .\n\nFound 0 errors. Watching for file changes.\n", "ok"),
        ("no no, in dotfiles, there is a lua script", "user_correction"),
        ("Why does it get stuck here ?\nChecked 8 installs", "user_correction"),
        ("now I have: Module not found: Error: Can't resolve 'styled-components'", "user_correction"),
        ("I get: Traceback (most recent call last):", "user_correction"),
        # a few words and a colon before an error's shape, in a new request
        ("Note: Error: handling should log to stderr", "ok"),
        ("Change the toast text to: Error: file too large", "ok"),
        ("Next task: Uncaught exceptions should be reported to Sentry", "ok"),
        ("deployment error", "user_correction"),  # only what went wrong, in a few words
        ("build failed", "user_correction"),
        ("add error handling to the parser", "ok"),
        ("now the settings page, with an error banner when saving fails", "ok"),
        ("i did all that and it still will not allow her", "user_correction"),
        ("it still won't start", "user_correction"),
        ("i get the following two warnings when i run mix compile", "user_correction"),
        ("we get warnings about deprecated imports in the build now, silence them in the config", "user_correction"),
        ("page keeps loading. Nothing is displaying", "user_correction"),
        ("page keeps lagging Nothing is displaying", "user_correction"),
        ("nothing shows up in the list", "user_correction"),
        ("make sure nothing shows when the cart is empty", "ok"),
        (
            "[plugin:vite:react-babel] src/components/Modal.tsx: Unterminated JSX contents. (560:10)\n"
            "  558 |         </div>\n> 560 |     </div>\n",
            "user_correction",
        ),
        ("add a [plugin:vite:legacy] entry to the build config", "ok"),
        ("the process does not fully start and cannot be stopped with ctrl+C.", "user_correction"),
        ("i do not currently see a login / register option", "user_correction"),
        ("I only see Welcome to My Flask App, i would like to register", "user_correction"),
        ("there seems to be one more problem: ERROR: pip's dependency resolver", "user_correction"),
        ("the app only shows the first page", "ok"),
        # news and requests in the same words (found by a hostile review)
        ("I see you added a warning banner, now make it dismissible", "ok"),
        ("We saw the warning toast appear on save, next wire up the delete button", "ok"),
        ("I ran the build and got no warnings, now add a dark mode toggle", "ok"),
        ("I see the warnings are gone now, add a logout button", "ok"),
        ("Looks good, nothing appears broken. Now add pagination", "ok"),
        ("I checked the logs and nothing appears to be wrong, so let's move on", "ok"),
        ("Works great, and nothing shows up in the console anymore. Add a footer", "ok"),
        ("When the cart is empty, nothing shows. Add a message there instead", "ok"),
        ("We still won't need the legacy API, so remove it", "ok"),
        ("Users still won't have network access on the plane, so cache the data offline", "ok"),
        ("I see no warnings now, add a logout button", "ok"),
        ("I got no warnings. Add a dark mode toggle", "ok"),
        ("I see you fixed the warnings, now let's add tests", "ok"),
        ("How do I get warnings to show up in the log?", "ok"),
        ("Thanks, that fixed it, there is another issue with the footer alignment", "ok"),
        ("There is a new issue on GitHub, number 123, please take a look", "ok"),
        ("there's another problem: the login page is blank", "user_correction"),
        ("I get a warning message in the console when I open the page", "user_correction"),
        ("I click the button and nothing appears to happen", "user_correction"),
        ("I tried it and the tests still won't pass", "user_correction"),
        ("it's giving error `Error in transaction creation: 200`", "user_correction"),
        ("That does not look right. The refactored code is ten times longer", "user_correction"),
        ("it's giving the right answer now, add a test for it", "ok"),
        ("there is one more page to add: the settings", "ok"),
    ],
)
def test_a_few_words_of_what_went_wrong_are_a_correction(said: str, expected: str) -> None:
    reply = {"role": "assistant", "content": "Pushed: the deploy should work now."}
    assert kind(reply, [{"role": "user", "content": said}], "claude_code") == expected


def test_work_the_reply_calls_open_that_was_done_before_is_a_correction() -> None:
    reply = {"role": "assistant", "content": "Still open: the retry logic and the log rotation."}
    for said, expected in [
        ("Those are already fixed", "user_correction"),
        ("it's already done, check again", "user_correction"),
        ("Already fixed those two; now add the export button", "ok"),  # nothing said of the reply
    ]:
        assert kind(reply, [{"role": "user", "content": said}], "generic") == expected, said


# -- what came before the reply, for agents whose actions are written in the reply's text --


def returned(output: str, code: int) -> dict[str, Any]:
    return {"role": "user", "content": f"<returncode>{code}</returncode>\n<output>\n{output}</output>"}


FAILING = "F\n=== FAILURES ===\nE   AssertionError: assert 2 == 1\n=== 1 failed in 0.1s ===\n"


def test_mini_swe_agents_test_run_after_its_own_patch_is_no_longer_the_red_phase() -> None:
    start = [{"role": "system", "content": "x"}, {"role": "user", "content": "<pr_description>fix it"}]
    patch = mini("python - <<'PY'\nfrom pathlib import Path\np = Path('pkg/core.py')\np.write_text(x)\nPY")
    run = mini("pytest -q tests/test_core.py")
    # before any change, a failing test run shows the bug
    assert kind(run, [returned(FAILING, 1)], "mini_swe_agent", start) == "ok"
    # after its patch of the package's code (seen in the history's shell blocks), the same run fails the turn
    before = [*start, patch, returned("PATCHED\n", 0)]
    assert kind(run, [returned(FAILING, 1)], "mini_swe_agent", before) == "task_failure"


def test_running_again_a_command_the_shell_could_not_run_is_the_same_mistake() -> None:
    broken = "bash: line 2: bashndocker: command not found\n"
    cmd = 'printf "run `bashndocker build .`"'
    before = [{"role": "user", "content": "<pr_description>x"}, mini(cmd), returned(broken, 127)]
    assert kind(mini(cmd), [returned(broken, 127)], "mini_swe_agent", before) == "task_failure"
    # a failing test run looked at again, nothing changed since: a look, not a new failure
    before = [{"role": "user", "content": "<pr_description>x"}, mini("pytest -q"), returned(FAILING, 1)]
    assert kind(mini("pytest -q -x"), [returned(FAILING, 1)], "mini_swe_agent", before) == "ok"


def test_swe_agents_edit_between_two_failing_runs_makes_the_second_a_new_try() -> None:
    trace = "Traceback (most recent call last):\n  File \"/repo/run.py\", line 3\nNameError: name 'y'\n"
    prompt = {"role": "system", "content": "You are an autonomous programmer."}
    run, out = {"role": "assistant", "content": "```\npython run.py\n```"}, {"role": "user", "content": trace}
    edit = {"role": "assistant", "content": "```\nedit 3:3\ny = 1\nend_of_edit\n```"}
    looked = kind(run, [out], "swe_agent", [prompt, run, out])
    tried = kind(run, [out], "swe_agent", [prompt, run, out, edit, {"role": "user", "content": window(SHOWN)}])
    assert (looked, tried) == ("ok", "task_failure")


def test_swe_agents_edit_is_of_the_file_its_window_then_shows() -> None:
    trace = 'Traceback (most recent call last):\n  File "/repo/reproduce.py", line 3\nValueError: bad\n'
    prompt = {"role": "system", "content": "You are an autonomous programmer."}
    edit = {"role": "assistant", "content": "```\nedit 3:3\n    return 1\nend_of_edit\n```"}
    run = {"role": "assistant", "content": "```\npython reproduce.py\n```"}

    def after_editing(path: str) -> str:
        shown = {"role": "user", "content": window(SHOWN, path, updated=True)}
        return kind(run, [{"role": "user", "content": trace}], "swe_agent", [prompt, edit, shown])

    # the reproduction written, then run: the red phase; the package's code edited, then run: the fix failed
    assert (after_editing("/repo/reproduce.py"), after_editing(JAVA)) == ("ok", "task_failure")


def codex_exec(output: str, code: int) -> dict[str, Any]:
    head = f"Chunk ID: 5a1f00\nWall time: 0.0310 seconds\nProcess exited with code {code}\nOriginal token count: 9\n"
    return tool(f"{head}Output:\n{output}")


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # several reads, some files not there: the absences are answers
        (
            "ls pkg | grep -i log; echo '== mk =='; sed -n 1,60p pkg/log.mk",
            "syslog.mk\n== mk ==\nsed: can't read pkg/log.mk: No such file or directory\n",
            "ok",
        ),
        (
            "cat setup.py; head -20 lib/a.py",
            "import os\nhead: cannot open 'lib/a.py': No such file or directory\n",
            "ok",
        ),
        ("cd pkg; cat a.mk; cat b.mk", "x = 1\ncat: b.mk: No such file or directory\n", "ok"),
        # a write among them, a failed `cd`, or another error: not only reads that found nothing
        ("cat a.mk > b.mk; cat c.mk", "cat: c.mk: No such file or directory\n", "task_failure"),
        ("cat a.txt; ./build.sh", "bash: ./build.sh: No such file or directory\n", "task_failure"),  # a program run
        (
            'echo "$T" > "$HOME/.app/token"; cat a.py',
            "bash: /h/.app/token: No such file or directory\nimport os\n",
            "task_failure",
        ),
        (
            "sed -Ei 's/a/b/' x.py; cat y.py",
            "sed: can't read x.py: No such file or directory\nimport os\n",
            "task_failure",
        ),
        (
            "find build -name '*.o' -delete; cat build/out.log",
            "cat: build/out.log: No such file or directory\n",
            "task_failure",
        ),
        ("pkill -f server; cat a.log", "cat: a.log: No such file or directory\n", "task_failure"),
        (
            "cat src/lib; cat src/a.ts",
            "cat: src/lib: Is a directory\ncat: src/a.ts: No such file or directory\n",
            "task_failure",
        ),
        (
            "head -n abc a.py; cat b.py",
            "head: invalid number of lines: 'abc'\ncat: b.py: No such file or directory\n",
            "task_failure",
        ),
        (
            "cd web; cat a.json",
            "(eval):cd:1: no such file or directory: web\ncat: a.json: No such file or directory\n",
            "task_failure",
        ),
        ("cd web; cat a.json", "sh: 1: cd: can't cd to web\ncat: a.json: No such file or directory\n", "task_failure"),
        (
            "cd pkg/sub; cat a.txt",
            "bash: line 1: cd: pkg/sub: No such file or directory\ncat: a.txt: No such file or directory\n",
            "task_failure",
        ),
        (
            "cat a.txt; cat b.txt",
            "cat: a.txt: No such file or directory\nTraceback (most recent call last):\nValueError: x\n",
            "task_failure",
        ),
    ],
)
def test_reads_of_files_not_there_are_answers(command: str, output: str, expected: str) -> None:
    reply = call("exec_command", {"cmd": command})
    assert kind(reply, [codex_exec(output, 1)], "codex") == expected


def powershell_error(cmdlet: str, said: str, category: str, error_id: str) -> str:
    """An error record as Windows PowerShell 5 prints it: its words in the machine's language, its id not."""
    return (
        f"{cmdlet} : {said}\r\nIn Zeile:1 Zeichen:1\r\n+ {cmdlet} x\r\n+ ~~~~~~~~~~~\r\n"
        f"    + CategoryInfo          : {category}\r\n"
        f"    + FullyQualifiedErrorId : {error_id},Microsoft.PowerShell.Commands.{cmdlet.replace('-', '')}Command\r\n"
    )


NOT_THERE = 'Der Pfad "D:\\app\\specs\\spec.md" kann nicht gefunden werden, da er nicht vorhanden ist.'


def not_there(cmdlet: str) -> str:
    return powershell_error(cmdlet, NOT_THERE, "ObjectNotFound", "PathNotFound")


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # a read or a listing of a path that is not there, in German: the absence is the answer
        (
            r"Get-Content D:\app\specs\spec.md",
            not_there("Get-Content"),
            "ok",
        ),
        (
            r"Get-ChildItem -Path specs -Recurse -Filter *.md",
            not_there("Get-ChildItem"),
            "ok",
        ),
        # any other error of a read is no answer: an option it does not take
        (
            r"Get-Content spec.md -Lines 5",
            powershell_error(
                "Get-Content", "Es wurde kein Parameter gefunden.", "InvalidArgument", "NamedParameterNotFound"
            ),
            "task_failure",
        ),
        # a listing then a read: both answers
        (
            r"Get-ChildItem specs; Get-Content docs\plan.md",
            not_there("Get-Content"),
            "ok",
        ),
        # a native program's own error beside it, which comes with no record; a script block, which runs anything
        (
            r'rg -n "render(" src; Get-Content docs\plan.md',
            "rg: regex parse error:\n    render(\n          ^\nerror: unclosed group\n" + not_there("Get-Content"),
            "task_failure",
        ),
        (
            r"Get-Content files.txt | Sort-Object {Remove-Item -Recurse $_}; Get-Content docs\plan.md",
            not_there("Get-Content"),
            "task_failure",
        ),
        # nor is a write's missing folder
        (
            r"Get-Content a.md | Set-Content out\\b.md",
            not_there("Set-Content"),
            "task_failure",
        ),
    ],
    ids=["read", "listing", "bad option", "listing and read", "beside an error", "script block", "write"],
)
def test_powershells_reads_of_paths_not_there_are_answers(command: str, output: str, expected: str) -> None:
    reply = call("shell_command", {"command": command})
    assert kind(reply, [tool(f"Exit code: 1\nWall time: 0.3 seconds\nOutput:\n{output}")], "codex") == expected


def not_recognized(term: str) -> str:
    """PowerShell 7's answer to a command it has no program for (5.1 says "the name")."""
    return f"{term}: The term '{term}' is not recognized as a name of a cmdlet, function, script file, or program.\r\n"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # a Unix tool, or cmd.exe's `call`, typed into PowerShell: the model's slip, whatever failed after it
        (r"nl -ba src\app.py", not_recognized("nl"), "task_failure"),
        (
            r"call venv\Scripts\activate.bat; python manage.py migrate",
            not_recognized("call") + "ModuleNotFoundError: No module named 'django'\r\n",
            "task_failure",
        ),
        # a program the machine has not installed, in either wording
        ("docker ps", not_recognized("docker"), "environment"),
        ("docker ps", not_recognized("docker").replace("as a name", "as the name"), "environment"),
        # a Unix filter a PowerShell pipeline ends in (its status read as the filter's); a program missing too
        ("rg -n TODO src | head -n 20", not_recognized("head"), "task_failure"),
        ("which docker; docker ps", not_recognized("which") + not_recognized("docker"), "environment"),
    ],
    ids=["unix tool", "cmd's call", "not installed", "not installed, 5.1", "a filter", "and a program missing"],
)
def test_what_powershell_has_no_program_for(command: str, output: str, expected: str) -> None:
    reply = call("shell_command", {"command": command})
    assert kind(reply, [tool(f"Exit code: 1\nWall time: 0.3 seconds\nOutput:\n{output}")], "codex") == expected


def test_a_powershell_read_of_many_blank_lines_is_read_in_bounded_time() -> None:
    """PowerShell's error ids are looked for from each line's start: not across the blank lines after it
    (22 s at 100,000 newlines)."""
    import signal

    def hang(*_: object) -> None:
        raise TimeoutError("reading 100,000 blank lines did not finish within 5 s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(5)
    try:
        output = not_there("Get-Content") + "\n" * 100_000
        reply = call("shell_command", {"command": "Get-Content spec.md"})
        assert kind(reply, [tool(f"Exit code: 1\nWall time: 0.3 seconds\nOutput:\n{output}")], "codex") == "ok"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


BUN_USAGE = "Usage: bun run [flags] <file or script>\n\nFlags:\n      --silent   Don't print the script command\n"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # its usage, not asked for, with a filter hiding the status: it refused what it was given
        ("bun run --bun -e \"require('./lib/paths.ts')\" 2>&1 | head -20", BUN_USAGE, "task_failure"),
        ("cd app && ./node_modules/.bin/bun run -x 2>&1 | head", "\n" + BUN_USAGE, "task_failure"),
        # asked for, or the program run bare to see what it takes: an answer
        ("bun run --help | head -20", BUN_USAGE, "ok"),
        ("bun | head -20", BUN_USAGE.replace(" run", ""), "ok"),
        ("bun 2>&1 | head -20", BUN_USAGE.replace(" run", ""), "ok"),
        ("docker compose 2>&1 | head", "Usage:  docker compose [OPTIONS] COMMAND\n", "ok"),
        ("java -? 2>&1 | head", "Usage: java [options] <mainclass> [args...]\n", "ok"),
        # a file or another program's output that begins with a usage
        ("cat docs/USAGE.md | head -20", "Usage: bun run [flags] <file or script>\n", "ok"),
        ("npx tsx scripts/seed.ts | head", "Usage: seed [options]\n", "ok"),
    ],
    ids=[
        "filtered",
        "after cd, by path",
        "asked for",
        "bare",
        "bare, stderr too",
        "a group bare",
        "asked for with -?",
        "a file",
        "another program",
    ],
)
def test_a_usage_shown_though_not_asked_for_is_a_refusal(command: str, output: str, expected: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(output)], "claude_code") == expected


THROWN = "Error: slides/slide2.html: a text box ends too near the edge\n    at html2pptx (/w/lib/index.cjs:701:76)\n"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # a script that caught its own error, printed it with its stack, and ended with 0
        ("node generate-ppt.js 2>&1", THROWN + "    at async main (/w/generate-ppt.js:26:5)\n", "task_failure"),
        (
            "node build.js",
            "\nTypeError: Cannot read properties of undefined (reading 'x')\n\n    at f (/w/b.js:3:9)",
            "task_failure",
        ),
        # a test runner prints the errors it expects; a stack further down is a log's, not the run's end
        ("npx jest tests/slides.test.js", THROWN, "ok"),
        ("node generate-ppt.js", "Generated 8 slides\n" + THROWN, "ok"),
        # a script that went on after the error it caught; an error printed on purpose; a log read
        ("node app.js", THROWN + "Using the default config\nListening on 3000\n", "ok"),
        ("node -e 'console.log(new Error(\"boom\"))'", "Error: boom\n    at [eval]:1:13\n", "ok"),
        ("head -40 logs/error.log", THROWN, "ok"),
        # an error with no stack is a message the script chose to print
        ("node check.js", "Error: none found\n", "ok"),
    ],
    ids=["caught", "type error", "test runner", "not first", "went on", "one-liner", "a log", "no stack"],
)
def test_an_error_and_its_stack_first_in_an_output_that_ended_with_0(command: str, output: str, expected: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(output)], "claude_code") == expected


def test_running_again_a_script_that_caught_its_error_looks_until_something_changed() -> None:
    out = THROWN + "    at async main (/w/generate-ppt.js:26:5)\n"
    run = {"command": "node generate-ppt.js 2>&1"}
    before = [{"role": "user", "content": "make the slides"}, call("Bash", run, "r1"), tool(out, "r1")]
    assert kind(call("Bash", run), [tool(out)], "claude_code", before) == "ok"  # the same failure, looked at
    edit = {"file_path": "/w/slide2.html", "old_string": "a", "new_string": "b"}
    edited = [*before, call("Edit", edit, "e1"), tool("The file /w/slide2.html has been updated.", "e1")]
    assert kind(call("Bash", run), [tool(out)], "claude_code", edited) == "task_failure"  # a new attempt


def test_a_pasted_error_named_with_its_package_is_a_correction() -> None:
    ide = "# Context from my IDE setup:\n\n## Active file: src/Person.java\n\n## My request for Codex:\n"
    log = "```2026-01-01T21:03:16.328+02:00 ERROR 3179267 --- [nio-8080-exec-1] o.a.c.c.C : Servlet.service() threw\n\n"
    said = ide + log + 'org.h2.jdbc.JdbcSQLSyntaxErrorException: Table "persons" not found; SQL statement:\n'
    said += "".join(f"        at org.h2.message.DbException.get(DbException.java:{n}) ~[h2.jar]\n" for n in range(40))
    assert kind(DONE, [{"role": "user", "content": said + "```"}], "codex") == "user_correction"
    named = "java.lang.IllegalStateException: Failed to load ApplicationContext\n\tat org.springframework.x(Y.java:1)"
    assert kind(DONE, [{"role": "user", "content": named}], "claude_code") == "user_correction"
    # a name with no stack under it may be a question about it
    for asked in ("config.Error: should we rename this?", "Thanks!\nrequests.exceptions.ConnectionError: retry on it?"):
        assert kind(DONE, [{"role": "user", "content": asked}], "claude_code") == "ok"


@pytest.mark.parametrize(
    ("command", "summary", "expected"),
    [
        ("npm run test:smoke", "\x1b[1A\x1b[2K  5 failed\n    [chromium] e2e/auth.spec.js:9:3 login\n", "task_failure"),
        ("npm run test:smoke", "  5 passed (12.0s)\n", "ok"),
        ("python -m pytest -q", "==== 3 passed, 1 xfailed in 0.4s ====\n", "ok"),
        ("npm run test:smoke || true", "  5 failed\n", "ok"),  # asked to go on whatever the tests did
        ("node run-smoke.js", "  5 failed\n", "ok"),  # no test runner named: its words are its own
    ],
    ids=["wrapper", "passed", "xfailed", "or true", "no runner"],
)
def test_a_test_run_that_exited_0_over_failed_tests(command: str, summary: str, expected: str) -> None:
    """A project's wrapper that runs the tests and exits 0 whatever they did: the runner's count says."""
    out = f"Exit code 0\n> app@1.0.0 test:smoke\n\nRunning 5 tests using 4 workers\n\n{summary}Testing completed!\n"
    assert kind(call("Bash", {"command": command}), [tool(out)], "claude_code") == expected


MOCHA = "  3 passing (20ms)\n  5 failing\n\n" + "".join(
    f"  {i}) suite test {i}:\n     AssertionError: expected 1 to equal 2\n" + "      at Context (test/a.js:5:3)\n" * 6
    for i in range(1, 6)
)


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        ("npm test", MOCHA, "task_failure"),  # mocha's count comes before the stacks, far from the end
        (
            "npm run test:unit",
            " Test Files  1 failed | 3 passed (4)\n      Tests  2 failed | 10 passed (12)\n",
            "task_failure",
        ),
        # a log of a run read, or the tests run on the code put back for a moment: no run of this turn's
        ("cat /tmp/pytest_out.txt", "==== 1 failed, 3 passed in 0.4s ====\n", "ok"),
        ("git stash && python -m pytest -q 2>&1 | tail -5; git stash pop", "==== 1 failed, 3 passed ====\n", "ok"),
    ],
    ids=["mocha", "vitest", "a log read", "stashed"],
)
def test_which_runs_that_exited_0_count_their_failures(command: str, output: str, expected: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool("Exit code 0\n" + output)], "claude_code") == expected


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # a test named for credentials, timed out: the word is the test's, nothing the machine lacks
        (
            'npx playwright test auth.spec.js -g "should login with valid credentials"',
            "Command timed out after 30s\n\nRunning 5 tests\n[1/5] auth.spec.js:39:3 login with valid credentials\n",
            "task_failure",
        ),
        (
            "aws s3 ls s3://bucket",
            "Exit code 255\nUnable to locate credentials. You can configure credentials by",
            "environment",
        ),
        (
            "docker compose up -d",
            'Exit code 1\nerror getting credentials - err: exec: "docker-credential-desktop": executable not found',
            "environment",
        ),
        (
            "gh pr create --fill",
            "Exit code 1\nHTTP 401: Bad credentials (https://api.github.com/graphql)",
            "environment",
        ),
        (
            "vercel deploy --prod",
            "Exit code 1\nError: No existing credentials found. Please run `vercel login`",
            "environment",
        ),
    ],
    ids=["test name", "aws", "docker helper", "gh", "vercel"],
)
def test_credentials_the_machine_lacks_in_its_tools_words(command: str, output: str, expected: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(output)], "claude_code") == expected


@pytest.mark.parametrize(
    ("shell", "command", "expected"),
    [
        (
            "Bash",
            """powershell "Get-Process | Where-Object {$_.ProcessName -like '*node*'} | Stop-Process -Force\"""",
            "task_failure",
        ),
        ("Bash", 'powershell -Command "$synth = New-Object Speech; $synth.Speak(1)"', "task_failure"),
        ("Bash", 'powershell -Command "Set-Content -Path $env:USERPROFILE\\a.json -Value 1"', "task_failure"),
        # bash's own variable, meant to be put in; quotes and escapes bash leaves alone; no bash at all
        ("Bash", 'powershell -NoProfile -File "$HOME/backup.ps1"; echo "exit=$?"', "ok"),
        ("Bash", "powershell 'Get-Process | Where-Object {$_.Name -like \"*node*\"}'", "ok"),
        ("Bash", 'powershell "Get-Process | Where-Object {\\$_.Name -like node}"', "ok"),
        ("PowerShell", 'powershell "Get-Process | Where-Object {$_.Name -like node}"', "ok"),
        ("Bash", 'PowerShell.exe -Command "Get-Process | ? {$_.CPU -gt 100}"', "task_failure"),  # any case
        ("Bash", 'powershell -Command "foreach ($p in Get-Process node) { Stop-Process -Id $p.Id }"', "task_failure"),
        ("Bash", 'powershell -Command "$PSVersionTable.PSVersion"', "task_failure"),
        # bash reads none of these as PowerShell's: a script in single quotes, a heredoc's lines, the next
        # command's words, bash's own upper-case variable
        ("Bash", """powershell -NoProfile -Command 'Write-Output "User: $env:USERNAME"'""", "ok"),
        ("Bash", "cat > run.ps1 <<'EOF'\n# run: powershell -File run.ps1\n$dir = \"$env:USERPROFILE\"\nEOF", "ok"),
        ("Bash", 'git commit -m "$(cat <<\'EOF\'\nFix powershell launcher: "$env:APPDATA"\nEOF\n)"', "ok"),
        ("Bash", 'powershell.exe -File set.ps1; echo "$key=$value"', "ok"),
        ("Bash", 'ARGS="-Verbose"; powershell -File build.ps1 "$ARGS"', "ok"),
    ],
    ids=[
        "$_",
        "assigned",
        "$env",
        "bash's own",
        "single quotes",
        "escaped",
        "powershell tool",
        "any case",
        "foreach",
        "automatic",
        "script in single quotes",
        "heredoc",
        "commit message",
        "next command",
        "ARGS",
    ],  # fmt: skip
)
def test_powershells_variables_in_a_script_bash_reads_first(shell: str, command: str, expected: str) -> None:
    out = "Exit code 0\n/c/Users/me/.claude/shell-snapshots/snapshot-bash.sh.ProcessName : The term is not known\n"
    assert kind(call(shell, {"command": command}), [tool(out)], "claude_code") == expected


CURL_PROGRESS = "  % Total    % Received % Xferd  Average Speed   Time\n  0     0    0     0    0     0      0      0\n"
CURL_60 = "curl: (60) SSL certificate problem: self-signed certificate\nMore details here: https://curl.se/docs/sslcerts.html\n"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # curl's own report of a transfer that failed, its status hidden by a filter
        ("sleep 30 && curl -I https://app.example.com/ 2>&1 | head -10", CURL_PROGRESS + CURL_60, "task_failure"),
        ("sleep 30 && curl -I https://app.example.com/ 2>&1 | head -10", CURL_PROGRESS + "HTTP/2 200 \n", "ok"),
        # git with no credentials for an HTTPS remote: the machine's
        (
            "git push origin main",
            "Exit code 128\nfatal: could not read Username for 'https://github.com': No such device or address",
            "environment",
        ),
        # GitHub's answer that the key works, with the status 1 of a login that gives no shell
        (
            "ssh -T git@github.com",
            "Exit code 1\nHi octo! You've successfully authenticated, but GitHub does not provide shell access.",
            "ok",
        ),
        # the harness quoted `$(` as `\$ (` before bash read it: no syntax error of the model's
        (
            'docker exec $(docker ps -q --filter "name=web" | head -1) curl -s localhost',
            "Exit code 2\n/bin/bash: eval: line 1: syntax error near unexpected token `('\n"
            "/bin/bash: eval: line 1: `docker exec \\$ ( docker ps -q --filter name\\=web | head -1 ) curl'",
            "environment",
        ),
        (
            "docker exec $(docker ps -q | head -1) ls",
            "Exit code 2\n/bin/bash: syntax error near unexpected token `('",
            "task_failure",
        ),
        # curl's write refused by a filter that had read enough; a loop that tried again
        ("curl -s https://example.com | head -3", "<html>\ncurl: (23) Failure writing output to destination\n", "ok"),
        ("until curl -s localhost:3000 | head -1; do sleep 1; done; echo up", "curl: (7) Failed\nok\nup\n", "ok"),
        # the command names the https URL (GitHub asks a login for a repository that is not there); the password
        (
            "git clone https://github.com/me/no-such-repo.git",
            "Exit code 128\nfatal: could not read Username for 'https://github.com': No such device or address",
            "task_failure",
        ),
        (
            "git push",
            "Exit code 128\nfatal: could not read Password for 'https://me@github.com': terminal prompts disabled",
            "environment",
        ),
        # ssh's steps only: not a push after it that failed; a deploy key's greeting; ssh-add first
        (
            "ssh -T git@github.com; git push",
            "Hi octo! You've successfully authenticated, but GitHub does not provide shell access.\n"
            "error: failed to push some refs\nExit code 1",
            "task_failure",
        ),
        (
            "ssh-add ~/.ssh/k && ssh -T git@github.com",
            "Exit code 1\nHi me/app! You've successfully authenticated, but GitHub does not provide shell access.",
            "ok",
        ),
        # the model's own stray `fi`, its `$(` inside double quotes
        (
            'echo "$(date)"; fi',
            "Exit code 2\n/bin/bash: eval: line 1: syntax error near unexpected token `fi'\n"
            '/bin/bash: eval: line 1: `echo "\\$ ( date )"; fi\'',
            "task_failure",
        ),
    ],
    ids=[
        "curl failed",
        "curl answered",
        "git https",
        "ssh -T",
        "harness quoting",
        "model's own syntax error",
        "curl 23",
        "curl retried",
        "git url named",
        "git password",
        "ssh then push",
        "ssh-add, a deploy key",
        "stray fi",
    ],
)
def test_what_a_few_programs_say_of_their_own_outcome(command: str, output: str, expected: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(output)], "claude_code") == expected


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("404 page not found", "user_correction"),
        ("502 Bad Gateway", "user_correction"),
        ("HTTP ERROR 500", "user_correction"),
        ("404\nThis page could not be found.", "user_correction"),
        ("404s are fine here", "ok"),
        ("404", "ok"),  # a number alone may answer the reply's question
        ("500 lines is plenty", "ok"),
        ("401 is expected for anonymous users", "ok"),
    ],
)
def test_a_message_that_is_only_an_http_error_is_what_the_person_got(said: str, expected: str) -> None:
    assert kind(DONE, [{"role": "user", "content": said}], "claude_code") == expected


def test_djangos_error_page_pasted_is_a_correction() -> None:
    ide = "# Context from my IDE setup:\n\n## Active file: start.bat\n\n## My request for Codex:\n"
    page = "OperationalError at /auth/login/\nno such table: core_theme\nRequest Method:\tPOST\n"
    page += "Django Version:\t4.2.8\nException Type:\tOperationalError\n"
    assert kind(DONE, [{"role": "user", "content": ide + page}], "codex") == "user_correction"
    # the page of an exception whose name says no "Error", by the page's own lines
    other = "NoReverseMatch at /accounts/login/\nReverse for 'home' not found.\nRequest Method:\tGET\n"
    assert kind(DONE, [{"role": "user", "content": other}], "codex") == "user_correction"
    # a sentence about an error class is no page
    said = "The ValueError at /api/users is expected, leave it."
    assert kind(DONE, [{"role": "user", "content": said}], "codex") == "ok"


def test_codex_rollouts_with_and_without_the_item_envelope_read_alike() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "copy the config"}]},
        {"type": "function_call", "name": "shell", "arguments": '{"command": ["cp", "a.toml", "c/"]}', "call_id": "c1"},
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": json.dumps({"output": "cp: cannot stat 'a.toml': No such file", "metadata": {"exit_code": 1}}),
        },
    ]
    meta = {"id": "s", "timestamp": "2025-08-19T08:25:08Z", "instructions": None}
    bare = [meta, {"record_type": "state"}, *items]  # how rollouts of 2025's summer were written
    wrapped = [{"type": "session_meta", "payload": meta}, *({"type": "response_item", "payload": x} for x in items)]
    read = []
    for lines in (bare, wrapped):
        data = "\n".join(json.dumps(x) for x in lines).encode()
        line = next(
            n for n, x in enumerate(lines, 1) if "function_call" in (x.get("type"), x.get("payload", {}).get("type"))
        )
        t = codex.transcript(data, {"line": line})
        read.append(t.messages)
        assert (
            judge(t.messages[t.at], t.messages[t.at + 1 :], agent="codex", messages=t.messages).kind == "task_failure"
        )
    assert read[0] == read[1]


def test_a_codex_turn_the_person_rolled_back_is_followed_by_nothing_and_leaves_the_history() -> None:
    def said(role: str, text: str) -> dict[str, Any]:
        kind = "input_text" if role == "user" else "output_text"
        return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}

    def ran(call_id: str, command: str, output: str, code: int) -> list[dict[str, Any]]:
        args = json.dumps({"command": ["bash", "-lc", command]})
        out = json.dumps({"output": output, "metadata": {"exit_code": code}})
        return [
            {"type": "function_call", "name": "shell", "arguments": args, "call_id": call_id},
            {"type": "function_call_output", "call_id": call_id, "output": out},
        ]

    items = [
        said("user", "rename the helper to load_config"),
        *ran("c1", "sed -i 's/helper/load_config/' app.py", "sed: can't read app.py: No such file or directory", 2),
        said("assistant", "Renamed."),
        {"type": "event_msg", "payload": {"type": "thread_rolled_back", "num_turns": 1}},
        said("user", "no, leave the name; list the files instead"),
        *ran("c2", "ls", "src\ntests\n", 0),
    ]
    lines = [{"type": "session_meta", "payload": {"id": "s"}}]
    lines += [x if x["type"] == "event_msg" else {"type": "response_item", "payload": x} for x in items]
    data = "\n".join(json.dumps(x) for x in lines).encode()
    renamed = codex.transcript(data, {"line": 5})  # the reply the person took back
    assert renamed.messages[renamed.at]["content"] == "Renamed."
    assert renamed.messages[renamed.at + 1 :] == []
    assert judge(renamed.messages[renamed.at], [], agent="codex", messages=renamed.messages).kind == "ok"
    listed = codex.transcript(data, {"line": 8})  # on the new branch: the dropped turn is not its history
    assert [text_of(m) for m in listed.messages[: listed.at]] == ["no, leave the name; list the files instead"]
    # a turn the person started with a picture pasted (`<image ...>` first) is theirs: the rollback takes it
    # alone, with the context Codex sent before it, and the edit before stays in the history
    image = said("user", "<image name=[Image #1]>\n</image>\nthe page looks wrong")
    context = said("user", "<environment_context>\n  <cwd>/w</cwd>\n</environment_context>")
    items = [*items[:4], context, image, *ran("c3", "ls", "app.py\n", 0), *items[4:]]
    lines = [{"type": "session_meta", "payload": {"id": "s"}}]
    lines += [x if x["type"] == "event_msg" else {"type": "response_item", "payload": x} for x in items]
    data = "\n".join(json.dumps(x) for x in lines).encode()
    listed = codex.transcript(data, {"line": 12})
    kept = [text_of(m) for m in listed.messages[: listed.at]]
    assert kept[0] == "rename the helper to load_config"
    assert "Renamed." in kept
    assert not any("the page looks wrong" in x or "environment_context" in x for x in kept)


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        ("sed -n '1,200p' AGENTS.md", "sed: can't read AGENTS.md: No such file or directory\n", "ok"),  # an answer
        ("sed -i 's/a/b/' AGENTS.md", "sed: can't read AGENTS.md: No such file or directory\n", "task_failure"),
        (
            "python app.py",
            "Traceback (most recent call last):\n  File \"app.py\", line 2\nNameError: name 'x'\n",
            "task_failure",
        ),
        # zsh (macOS) took the bracketed path for a pattern, or stopped on a quote: git and rg never ran
        ("git diff -- app/[id]/page.tsx", "zsh:1: no matches found: app/[id]/page.tsx\n", "task_failure"),
        ('rg -n "href=\\"/a|[`$]?" app', 'zsh:1: unmatched "\n', "task_failure"),
        ("git diff -- app/page.tsx", "", "ok"),
    ],
)
def test_codex_exec_output_is_read_without_its_header(command: str, output: str, expected: str) -> None:
    reply = call("exec_command", {"cmd": command})
    assert kind(reply, [codex_exec(output, 2 if "sed" in command else 1)], "codex") == expected


def test_claude_codes_read_of_a_file_that_is_not_there_is_an_answer() -> None:
    missing = tool("Exit code 1\ncat: config/settings.toml: No such file or directory", is_error=True)
    assert kind(call("Bash", {"command": "cat config/settings.toml"}), [missing], "claude_code") == "ok"
    failed = tool("Exit code 1\ncp: cannot stat 'a.toml': No such file or directory", is_error=True)
    assert kind(call("Bash", {"command": "cp a.toml config/"}), [failed], "claude_code") == "task_failure"
    absent = tool("File does not exist. Current working directory: /w", is_error=True)
    assert kind(call("Read", {"file_path": "/w/setup.cfg"}), [absent], "claude_code") == "ok"
    folder = tool("EISDIR: illegal operation on a directory, read '/w/docker'", is_error=True)
    assert kind(call("Read", {"file_path": "/w/docker"}), [folder], "claude_code") == "task_failure"


CLEAN = "On branch main\nnothing to commit, working tree clean"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        ("brew install yt-dlp", "Exit code 127\n(eval):1: command not found: brew", "environment"),  # zsh's words
        ("bd sync", "Exit code 1\nError: import failed: sqlite3: database is locked", "environment"),
        ("bd sync", "Exit code 1\nError: import failed: duplicate key cr-12", "task_failure"),
        # a program the machine cannot find (the lead could not either); "path" in the model's own sense is not that
        (
            "claude install",
            "Exit code 1\nrequires git-bash. If installed but not in PATH, set BASH_PATH",
            "environment",
        ),
        ("node build.js", "Exit code 1\nError: src/x.ts is not in the path mapping", "task_failure"),
        # Windows' stand-in for a Python that is not installed exits 9009, which bash reports as 49
        ('PYTHONPATH="E:/a b" python3 -c "import core"', "Exit code 49", "environment"),
        ("node build.js", "Exit code 49", "task_failure"),
        # a read told to say nothing when the file is not there answers with its status alone ...
        ("cat a.json 2>/dev/null; echo ---; cat .vscode/settings.json 2>/dev/null", "Exit code 1\n{}\n---", "ok"),
        # ... not when what reads it fails
        ("cat a.json 2>/dev/null | python3 -c 'import json,sys; json.load(sys.stdin)'", "Exit code 1", "task_failure"),
        (
            "git commit -m x",
            "Exit code 128\nerror: gpg failed to sign the data:\ngpg: cannot open '/dev/tty'",
            "environment",
        ),
        (
            "timeout 5 uvicorn app:app 2>&1 | head -20",
            "ERROR:    [Errno 10048] error while attempting to bind on address ('127.0.0.1', 8000)",
            "environment",
        ),
        # newlines the shell took as arguments: the core tools refused them, so nothing after them ran
        (
            "sleep 2\ncurl -s localhost:8888/health",
            "sleep: invalid time interval: curl\nusage: sleep number",
            "task_failure",
        ),
        (
            "uvicorn a:app &\nsleep 3\ncurl -s localhost:8000 | head -20",
            "head: unknown option -- f\nTry 'head --help'",
            "task_failure",
        ),
        ("sleep 2; curl -s localhost:8888/health", '{"ok": true}', "ok"),
        # a phone's or a host's shell: the search run there answers "no" with its status
        ('"C:/sdk/adb.exe" shell "pm list packages | grep voicedoc"', "Exit code 1", "ok"),
        ("ssh -p 2222 pi@box 'grep -r listen /etc/nginx'", "Exit code 1", "ok"),
        ('adb shell "pm install /sdcard/app.apk"', "Exit code 1", "task_failure"),
        # a port another process holds: the lead would meet it too
        ("npm run dev", "Exit code 1\nError: listen EADDRINUSE: address already in use :::3001", "environment"),
        # a search whose pattern its program refused, its status hidden behind a filter: it never searched
        ("curl -s localhost:8000 | grep -oE '[^\"]*mp4' | head", "ugrep: error: error at position 3\n", "task_failure"),
        ("curl -s localhost:8000 | grep -oE 'mp4' | head", "a.mp4\nb.mp4\n", "ok"),
        # a viewer run in the background: the shell's 0 is the background's, its words say it is not installed
        ("eog results/ &disown 2>&1", "/bin/bash: line 1: eog: command not found", "environment"),
        ("git config --global user.name && git config --global user.email", "Exit code 1", "ok"),  # not set
        # changing the configuration is not a lookup
        (
            "git config --remove-section submodule.x",
            "Exit code 128\nfatal: no such section: submodule.x",
            "task_failure",
        ),
        # zsh (macOS) could not parse what eval gave it: nothing ran, a probe included
        ("ls a && for f in *; do echo $f", "Exit code 1\n(eval):1: parse error near `do'", "task_failure"),
        ("ls missing", "Exit code 1\nls: missing: No such file or directory", "ok"),
        # ... but a shell profile it could not parse says so before every command, which then ran
        ("python -c 'print(1)'", "conda.sh:48: parse error near `()'\n(eval):1: parse error near `()'\n1", "ok"),
        # zsh read a literal path as a pattern, or could not read the line: the search never ran
        ("git diff -- app/[id]/page.tsx", "Exit code 1\n(eval):1: no matches found: app/[id]/page.tsx", "task_failure"),
        ('rg -n "a|b" src/(app) -S', "Exit code 1\n(eval):1: unknown sort specifier", "task_failure"),
        ("rg -n 'x[' src", "Exit code 1\n(eval):1: bad pattern: x[", "task_failure"),
        # bash took a Windows path's backslashes for escapes: the look asked about a path that is no path
        ("dir C:\\Users\\me\\*.py", "dir: cannot access 'C:Usersme*.py': No such file or directory", "task_failure"),
        ('dir "C:\\Users\\me\\*.py"', "dir: cannot access 'C:\\Users\\me\\*.py': No such file or directory", "ok"),
        # git's 1 for a commit with nothing left to commit: the work was committed already
        (
            "git add . && git commit -m 'setup done'",
            "Exit code 1\nOn branch master\nYour branch is up to date with 'origin/master'.\n\n"
            "nothing to commit, working tree clean",
            "ok",
        ),
        (
            "git commit -m 'setup done'",
            "Exit code 1\nOn branch master\nChanges not staged for commit:\n\tmodified:   a.py\n\n"
            'no changes added to commit (use "git add" and/or "git commit -a")',
            "task_failure",
        ),
        # the remote refusing the account this machine logs in as: the lead would meet it too
        (
            "git push origin master",
            "Exit code 128\nremote: Permission to me/app.git denied to someone-else.\n"
            "fatal: unable to access 'https://github.com/me/app.git/': The requested URL returned error: 403",
            "environment",
        ),
        # Claude Code's shell put the word `glob` where the command had `*` (its bug, with a pipe): not the model's
        (
            "wc -l *.py *.md | sort -rn",
            "wc: glob: No such file or directory\nwc: glob: No such file or directory",
            "environment",
        ),
        ("ls -la *.md | awk '{print $9}'", "ls: cannot access 'glob': No such file or directory", "environment"),
        ("ls glob", "Exit code 2\nls: cannot access 'glob': No such file or directory", "ok"),  # a look, no `*`
        # ... while a wildcard that matched nothing is the probe's answer
        (
            "ls ~/.nvm/versions/node/*/bin/node",
            "Exit code 1\n(eval):1: no matches found: ~/.nvm/versions/node/*/bin/node",
            "ok",
        ),
        # found by hostile reviews of the shell rules
        # a commit with nothing left to commit says the work was committed, only as the last of a && chain
        (
            "git add app/[id]/page.tsx; git commit -m x",
            f"Exit code 1\n(eval):1: no matches found: app/[id]/page.tsx\n{CLEAN}",
            "task_failure",
        ),
        (
            "pytest -q; git add -A; git commit -m wip",
            f"Exit code 1\nFAILED tests/test_a.py::test_x\n1 failed in 0.1s\n{CLEAN}",
            "task_failure",
        ),
        (
            "git commit -am x; git push",
            f"Exit code 128\n{CLEAN}\nfatal: The current branch feat has no upstream branch.",
            "task_failure",
        ),
        ("git -C /w/app commit -am x", f"Exit code 1\n{CLEAN}", "ok"),
        ("HUSKY=0 git commit -am x", f"Exit code 1\n{CLEAN}", "ok"),
        ("git add -A && git commit -am x\n", f"Exit code 1\n{CLEAN}", "ok"),  # a newline after it
        ('GIT_AUTHOR_NAME="A B" git commit -am x', f"Exit code 1\n{CLEAN}", "ok"),
        # a hook's lines before git's answer, git's status twice, a branch that diverged (found by a third review)
        ("git add -A && git commit -m x", f"Exit code 1\n→ No staged files found.\n{CLEAN}", "ok"),
        ("git status && git commit -am x", f"Exit code 1\n{CLEAN}\n{CLEAN}", "ok"),
        (
            "git commit -am x",
            "Exit code 1\nOn branch main\nYour branch and 'origin/main' have diverged,\nand have 1 and 2 different "
            "commits each, respectively.\n\nnothing to commit, working tree clean",
            "ok",
        ),
        ("git" + " -c" * 36 + " log", f"Exit code 1\n{CLEAN}", "task_failure"),  # (options read one way each)
        ("git add -A && git commit -F - <<'EOF'\nFix it\nEOF", f"Exit code 1\n{CLEAN}", "ok"),
        ("cd /w/app\ngit add -A; git commit -m x", f"Exit code 1\n{CLEAN}", "ok"),
        # (the commit's options are read in one way each: a long run of them is no exponential search)
        ("git add -A && git" + " --no-pager" * 24 + " log", f"Exit code 1\n{CLEAN}", "task_failure"),
        (
            "git commit -am x",
            "Exit code 1\nOn branch main\nnothing to commit, working directory clean",
            "ok",
        ),  # git < 2.9
        # a Windows path bash did not eat: written with its backslashes doubled, or found as it was meant
        ("find C:\\\\proj -name '*.py'", "C:\\proj/a.py", "ok"),
        (
            "ls C:\\Program\\ Files\\App",
            "Exit code 1\nls: cannot access 'C:Program FilesApp': No such file or directory",
            "task_failure",
        ),
        ("ls C:\\a\\b", "Exit code 1\nls: cannot access 'C:ab': No such file or directory", "task_failure"),
        # zsh's no-match for a pattern meant for the shell is a look's answer; for a program's pattern, a slip
        ("ls file?.txt", "Exit code 1\n(eval):1: no matches found: file?.txt", "ok"),
        ("find . -name *.py", "Exit code 1\n(eval):1: no matches found: *.py", "task_failure"),
        ("grep -rn foo --include=*.ts .", "Exit code 1\n(eval):1: no matches found: --include=*.ts", "task_failure"),
        # zsh names the word expanded (`~`, `$APP`); Next.js's optional catch-all
        (
            "ls ~/w/app/[id]/page.tsx",
            "Exit code 1\n(eval):1: no matches found: /Users/me/w/app/[id]/page.tsx",
            "task_failure",
        ),
        ("cd app && ls [id]/page.tsx", "Exit code 1\n(eval):1: no matches found: [id]/page.tsx", "task_failure"),
        (
            "ls app/[[...slug]]/page.tsx",
            "Exit code 1\n(eval):1: no matches found: app/[[...slug]]/page.tsx",
            "task_failure",
        ),
        # Claude Code's `glob` word needs an unquoted `*` and a pipe
        ("cat glob | grep 'x*'", "Exit code 1\ncat: glob: No such file or directory", "ok"),
        ("ls src/*.[jt]sx", "Exit code 1\n(eval):1: no matches found: src/*.[jt]sx", "ok"),  # a class, meant
        # brackets quoted: zsh names the word unquoted, and the pattern after them was meant
        ("ls 'app/[id]'/*.tsx", "Exit code 1\n(eval):1: no matches found: app/[id]/*.tsx", "ok"),
        # GitHub refusing the account over SSH, in its words there
        (
            "git push origin main",
            "Exit code 128\nERROR: Permission to me/app.git denied to other.\n"
            "fatal: Could not read from remote repository.",
            "environment",
        ),
    ],
)
def test_claude_code_commands_that_never_ran_or_met_a_lock(command: str, output: str, expected: str) -> None:
    flagged = output.startswith("Exit code")
    assert kind(call("Bash", {"command": command}), [tool(output, is_error=flagged)], "claude_code") == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Switched to a new branch 'feat/x'\n/bin/sh: 63: Syntax error: \"&&\" unexpected\n", "task_failure"),  # dash
        ("bash: -c: line 2: syntax error: unexpected end of file\n", "task_failure"),
        ("", "ok"),  # the search found nothing: its answer
    ],
)
def test_a_command_the_shell_could_not_parse_asked_nothing(output: str, expected: str) -> None:
    # ends like a probe (`|| true`): a parse error is still the model's, nothing was asked
    script = "git checkout -b feat/x && mkdir -p web && grep -rn TODO web || true"
    assert kind(mini(script), [returned(output, 2 if output else 1)], "mini_swe_agent") == expected


def fn(command: str) -> dict[str, Any]:
    """A SWE-agent reply whose call is written in its text, XML-like."""
    body = f"<function=bash>\n<parameter=command>{command}</parameter>\n</function>"
    return {"role": "assistant", "content": f"Let's run it:\n\n{body}"}


PROMPT = {"role": "system", "content": "You are an autonomous programmer."}
SHOWS_BUG = "OBSERVATION:\nAttempting in_bulk with slug...\nError: in_bulk()'s field_name must be a unique field\n"
SETUP = (
    'OBSERVATION:\nTraceback (most recent call last):\n  File "reproduce_error.py", line 8, in <module>\n'
    "    django.setup()\ndjango.core.exceptions.ImproperlyConfigured: The SECRET_KEY setting must not be empty.\n"
)


@pytest.mark.parametrize(
    ("observation", "expected"),
    [
        (SHOWS_BUG, "ok"),  # the reproduction shows the reported bug before any change: the red phase
        (SETUP, "task_failure"),  # it never reached the code it meant to show: its own setup is broken
    ],
)
def test_swe_agents_reproduction_in_its_function_call_format(observation: str, expected: str) -> None:
    before = [PROMPT, {"role": "user", "content": "<pr_description>in_bulk fails</pr_description>"}]
    reply = fn("cd /testbed && python reproduce_error.py")
    assert kind(reply, [{"role": "user", "content": observation}], "swe_agent", before) == expected


def test_a_command_that_ran_out_of_time_failed_but_one_still_running_has_no_outcome_yet() -> None:
    timed_out = json.dumps({"output": "command timed out after 10006 milliseconds\n./a.sh:1: x\n", "metadata": {}})
    grep = call("shell", {"command": ["bash", "-lc", "grep -Rin traefik ."]})
    assert kind(grep, [tool(timed_out)], "codex") == "task_failure"
    running = "Chunk ID: 958b31\nWall time: 1.0016 seconds\nProcess running with session ID 67141\n"
    running += "Original token count: 0\nOutput:\n"
    assert kind(call("exec_command", {"cmd": "find .. -name AGENTS.md -print"}), [tool(running)], "codex") == "ok"
    assert kind(call("exec_command", {"cmd": "pytest -q"}), [tool(running)], "codex") == "ok"  # still running
    background = "Command running in background with ID: b137137. Output is being written to: /tmp/t/b137137.output"
    assert kind(call("Bash", {"command": "pytest -q", "timeout": 3000}), [tool(background)], "claude_code") == "ok"
    killed = "Exit code 143\nCommand timed out after 1s"
    assert (
        kind(call("Bash", {"command": "sleep 5", "timeout": 1000}), [tool(killed, is_error=True)], "claude_code")
        == "task_failure"
    )
    # a server started in the foreground ran until the time limit: what it warned of at start-up did not stop it
    server = "Command timed out after 10s Warning: OpenAI API key not found, using fallback replies.\n"
    server += "[nodemon] starting `node src/server.js`\n" + "info: Database connected\n" * 6
    server += "info: API server is running on port 3000\n"
    dev = call("Bash", {"command": "cd backend && npm run dev", "timeout": 10000})
    assert kind(dev, [tool(server, is_error=True)], "claude_code") == "task_failure"
    # ... while one whose last lines wait on the network did not get far enough to say
    offline = "Command timed out after 2m 0s\nCollecting numpy\n  Retrying after connection broken by "
    offline += (
        "'NewConnectionError': Failed to establish a new connection: [Errno -3] Temporary failure in name resolution"
    )
    install = call("Bash", {"command": "pip install numpy", "timeout": 120000})
    assert kind(install, [tool(offline, is_error=True)], "claude_code") == "environment"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("sudo -u deploy bash -c 'command -v pm2' 2>&1", "ok"),  # a lookup run as another user answers "no"
        ("bash -lc 'grep -rn pm2 /etc/systemd'", "ok"),
        ("sudo -u deploy bash -c 'pm2 restart web' 2>&1", "task_failure"),
    ],
)
def test_a_probe_run_as_another_user_or_through_a_shell_is_still_a_probe(command: str, expected: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool("Exit code 1", is_error=True)], "claude_code") == expected


POWERSHELL_NO = """Exit code: 1
Wall time: 0.6 seconds
Output:
Get-ChildItem : Cannot find path 'C:\\src\\app\\templates' because it does not exist.
At line:2 char:1
    + CategoryInfo          : ObjectNotFound: (C:\\src\\app\\templates:String) [Get-ChildItem], ItemNotFoundException
"""


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("Get-ChildItem -Force src/app/templates", "ok"),  # PowerShell's `ls`: "not there" is an answer
        ("Test-Path src/app/templates", "ok"),
        ("Select-String -Path *.py -Pattern TODO", "ok"),
        ("npm run build", "task_failure"),
    ],
)
def test_powershell_probes_answer_no(command: str, expected: str) -> None:
    assert kind(call("shell_command", {"command": command}), [tool(POWERSHELL_NO)], "codex") == expected


@pytest.mark.parametrize(
    ("command", "said", "expected"),
    [
        # `pkill -f` whose pattern matched its own shell: killed by a signal (128 + N), it never answered
        ("pkill -f evolution; pkill -f goa-daemon", "Exit code 144", "task_failure"),
        ("pkill -f evolution", "Exit code 1", "ok"),  # nothing matched: an answer
        ("git rev-parse --show-toplevel", "Exit code 128\nfatal: not a git repository", "ok"),  # git's own 128
    ],
)
def test_a_probe_killed_by_a_signal_did_not_answer(command: str, said: str, expected: str) -> None:
    assert kind(call("Bash", {"command": command}), [tool(said)], "claude_code") == expected


def test_windows_own_search_finding_nothing_answers_no() -> None:
    # findstr exits 1 when nothing matches, in PowerShell and in Git Bash alike (Claude Code on Windows)
    assert (
        kind(call("Bash", {"command": 'netstat -ano | findstr "3123"'}), [tool("Exit code 1")], "claude_code") == "ok"
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('cmd /c findstr /n "^" apps\\api\\main.py', "ok"),  # cmd.exe runs a search: nothing found answers no
        ("cmd.exe /C type missing.txt", "ok"),  # a read of a file not there
        ("cmd /c npm run build", "task_failure"),  # what it runs failed
        ("cmd /c", "task_failure"),  # nothing to run: cmd itself
        ("cmd /d /c findstr TODO app.py", "ok"),  # its own switches before /c
        ("C:\\Windows\\System32\\cmd.exe /c findstr TODO app.py", "ok"),
        # `&` runs what follows it whatever the search found (in cmd.exe; in PowerShell 7 and bash it puts the
        # search in the background): the status is the build's
        ('cmd /c "dir /b & npm run build"', "task_failure"),
        ("cmd /c findstr TODO app.js & npm run build", "task_failure"),
        ('cmd /c "git diff --quiet"', "task_failure"),  # one quoted line: not read as its words (it may hold `&`)
    ],
)
def test_cmd_runs_the_command_it_is_given(command: str, expected: str) -> None:
    said = "Exit code: 1\nWall time: 1.2 seconds\nOutput:\n"
    assert kind(call("shell_command", {"command": command}), [tool(said)], "codex") == expected


def test_cmd_typed_into_bash_is_the_models_slip() -> None:
    # cmd.exe's own way of running a command, on a Linux machine: the model's slip (as cmd.exe's syntax typed into
    # bash is), not a program the machine lacks
    said = "Exit code: 127\nWall time: 0.1 seconds\nOutput:\nbash: line 1: cmd: command not found\n"
    assert kind(call("shell_command", {"command": "cmd /c npm test"}), [tool(said)], "codex") == "task_failure"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # in single quotes `r`n is a backtick and two letters: the block searched for is never found
        (
            "$old = '## Phase 3`r`n- [ ] T015'; $c = Get-Content -Raw t.md; Set-Content t.md $c.Replace($old, 'x')",
            "task_failure",
        ),
        ("$c = Get-Content -Raw t.md; Set-Content t.md ($c -replace 'Setup`n', 'Setup: init')", "task_failure"),
        # the arrow as a file read with the wrong encoding showed it: the file holds the arrow
        (
            "$c = Get-Content -Raw t.md; Set-Content t.md $c.Replace('each story \ufffd\ufffd test', 'x')",
            "task_failure",
        ),
        # in double quotes they are a return and a newline; before a letter a backtick is markdown's code
        ('$old = "## Phase 3`r`n- [ ] T015"; $c = Get-Content -Raw t.md; Set-Content t.md $c.Replace($old, "x")', "ok"),
        ("$c = Get-Content -Raw t.md; Set-Content t.md ($c -replace 'run `npm test`', 'run `make test`')", "ok"),
    ],
)
def test_powershell_text_searched_for_with_escapes_in_single_quotes_is_never_found(script: str, expected: str) -> None:
    run = call("shell", {"command": ["powershell.exe", "-NoLogo", "-Command", script]})
    assert kind(run, [tool('{"output":"","metadata":{"exit_code":0,"duration_seconds":0.3}}')], "codex") == expected


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        # told to stay quiet on errors: an answer it expects may be "no" ...
        ("Set-Location src; Get-Item $env:LOCALAPPDATA/x -ErrorAction SilentlyContinue", "ok"),
        # ... not when the command whose status counts comes after it
        ("Remove-Item dist -Recurse -ErrorAction SilentlyContinue; npm run build", "task_failure"),
        # ... nor when it asks the condition of an `if`: the status is the branch's that ran (holdout98)
        (
            "if (Get-Command python -ErrorAction SilentlyContinue) { python -m pytest } else { & $py -m pytest }",
            "task_failure",
        ),
        (
            "if (Get-Command rg -ea 0) { rg --files | rg -n 'x' } else { Get-ChildItem -Recurse | Select-String x }",
            "ok",
        ),
        ("if (!(Test-Path dist)) { npm run build }", "task_failure"),
        ("reg query HKCU\\Software\\RustDesk", "ok"),  # Windows' registry: 1 when the key is not there
        ("reg add HKCU\\Software\\RustDesk /v id /d 1", "task_failure"),
    ],
)
def test_windows_lookups_that_find_nothing_say_so_with_their_status(command: str, expected: str) -> None:
    nothing = "Exit code: 1\nWall time: 0.9 seconds\nOutput:\n"
    assert kind(call("shell_command", {"command": command}), [tool(nothing)], "codex") == expected
    # Codex's older `shell` tool: the script is the last word of PowerShell's command line
    run = call("shell", {"command": ["powershell.exe", "-NoProfile", "-Command", command]})
    assert kind(run, [tool(nothing)], "codex") == expected


def lint_report(path: str, running: str = "", code: str = '19█<Layout title="A & B">') -> str:
    lines = ["> Applied edit to " + path, ">", "> # Fix any errors below, if possible.", ">"]
    lines += [f"> ## Running: {running}", ">"] if running else []
    lines += ["> ## See relevant line below marked with █.", ">", f"> {path}:", "> ...⋮...", f"> {code}"]
    return "\n".join(x + "  " for x in lines)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (lint_report("src/pages/index.astro"), "ok"),  # its syntax check of markup flags valid components
        (lint_report("index.html"), "ok"),
        (lint_report("src/app.py"), "task_failure"),
        # the linter itself could not start: the environment's
        (
            lint_report("m.py", "python3 -m flake8 m.py\n> ModuleNotFoundError: No module named 'flake8'"),
            "environment",
        ),
        # a finding of a linter that ran, above code whose words name a key: the reply's code, not the machine
        (
            lint_report(
                "agent.py",
                "python -m flake8 --select=F821 agent.py\n>\n> agent.py:74:41: F821 undefined name 'json'",
                "11│        self.llm = ChatOpenAI(openai_api_key=api_key)",
            ),
            "task_failure",
        ),
    ],
)
def test_aider_lint_reports(report: str, expected: str) -> None:
    data = f"#### make the page\n\nHere it is.\n\n{report}\n\n#### thanks\n".encode()
    assert aider_kind(data) == expected


def test_an_mcp_servers_error_answer_and_a_shell_that_had_already_stopped() -> None:
    refused = {
        "role": "tool",
        "tool_call_id": "c1",
        "content": [{"type": "text", "text": "Error executing tool: no project"}],
    }
    assert kind(call("mcp__serena__activate_project", {"project": "~/FE"}), [refused], "claude_code") == "task_failure"
    answered = tool("Project FE activated.")
    assert kind(call("mcp__serena__activate_project", {"project": "FE"}), [answered], "claude_code") == "ok"
    ended = tool("Shell e4f010 is not running, so cannot be killed (status: completed)", is_error=True)
    assert kind(call("KillShell", {"shell_id": "e4f010"}), [ended], "claude_code") == "ok"
    died = tool("Shell e4f012 is not running, so cannot be killed (status: failed)", is_error=True)
    assert kind(call("KillShell", {"shell_id": "e4f012"}), [died], "claude_code") == "task_failure"
    # ... unless the model had ended it itself (a signal's end is a failed status too)
    ask = {"role": "user", "content": "stop the dev server"}
    killed = [ask, call("Bash", {"command": "lsof -ti:5173 | xargs kill -9"}, "c0"), tool("", "c0")]
    assert kind(call("KillShell", {"shell_id": "e4f012"}), [died], "claude_code", killed) == "ok"
    listed = [ask, call("Bash", {"command": "lsof -ti:5173"}, "c0"), tool("4242", "c0")]
    assert kind(call("KillShell", {"shell_id": "e4f012"}), [died], "claude_code", listed) == "task_failure"
    unknown = tool("No shell found with ID: e4f011", is_error=True)
    assert kind(call("KillShell", {"shell_id": "e4f011"}), [unknown], "claude_code") == "task_failure"


def test_swe_agents_file_editor_refusing_its_arguments() -> None:
    view = "<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>/t/f.py</parameter>\n"
    reply = {"role": "assistant", "content": view + "<parameter=view_range>[100, 128]</parameter>\n</function>"}
    refused = "OBSERVATION:\nInvalid `view_range`: [100, 128]. Its second element `128` should be smaller than `126`"
    assert kind(reply, [{"role": "user", "content": refused}], "swe_agent", [PROMPT]) == "task_failure"
    shown = "OBSERVATION:\nHere's the result of running `cat -n` on /t/f.py:\n   100\tdef f():\n   101\t    return 1\n"
    assert kind(reply, [{"role": "user", "content": shown}], "swe_agent", [PROMPT]) == "ok"


def test_a_file_editors_view_is_no_edit_and_its_subcommand_no_shell_command() -> None:
    def editor(command: str, path: str, cid: str) -> dict[str, Any]:
        return call("str_replace_editor", {"command": command, "path": path}, cid)

    # the model looked at the code and wrote a reproduction: its failing run is still the red phase
    before = [
        PROMPT,
        {"role": "user", "content": "<pr_description>x == None raises</pr_description>"},
        editor("view", "/testbed/astropy/units/core.py", "v1"),
        tool("   1\tdef f():\n   2\t    raise TypeError('None is not a valid Unit')\n", "v1"),
        editor("create", "/testbed/reproduce_issue.py", "c1"),
        tool("File created successfully at: /testbed/reproduce_issue.py", "c1"),
    ]
    run = call("bash", {"command": "cd /testbed && python reproduce_issue.py"}, "r1")
    shows = tool("OBSERVATION:\nCreated unit: asdf\nError: TypeError: None is not a valid Unit\n", "r1")
    assert kind(run, [shows], "swe_agent", before) == "ok"
    # after an edit of the package's code, the same output says the fix did not work
    fixed = [*before, editor("str_replace", "/testbed/astropy/units/core.py", "e1"), tool("edited", "e1")]
    assert kind(run, [shows], "swe_agent", fixed) == "task_failure"


def test_a_few_lines_run_inline_to_see_the_code_as_given_fail_are_the_red_phase() -> None:
    run = call("bash", {"command": 'cd /testbed && python3 -c "import dask.array as da; print(da.eye(2, dtype=None))"'})
    crash = tool(
        'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
        '  File "/testbed/dask/array/creation.py", line 546, in eye\nTypeError: dtype must be known\n'
    )
    asked = [{"role": "user", "content": "da.eye(2, dtype=None) raises; fix it"}]
    assert kind(run, [crash], "generic", asked) == "ok"  # nothing changed yet: the bug as reported
    edit = call("str_replace_editor", {"command": "str_replace", "path": "/testbed/dask/array/creation.py"}, "e1")
    edited = [*asked, edit, tool("The file /testbed/dask/array/creation.py has been edited.", "e1")]
    assert kind(run, [crash], "generic", edited) == "task_failure"  # after its change: the fix did not work
    typo = tool(
        '  File "<string>", line 1\n    import dask.array as da; print(da.eye(2, dtype=None)\nSyntaxError: bad\n'
    )
    assert kind(run, [typo], "generic", asked) == "task_failure"  # its own lines never ran
    # the lines' own mistake, or a step before them that failed, or lines that write: the model's
    slip = tool("Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\nNameError: name 'd'\n")
    assert kind(run, [slip], "generic", asked) == "task_failure"
    setup = call("bash", {"command": "pip install -e . && python -c 'import dask'"})
    assert kind(setup, [tool("ERROR: Could not build wheels for dask\n", is_error=True)], "generic", asked) == (
        "task_failure"
    )
    patch = call("bash", {"command": "python -c \"open('a.py','w').write(x)\""})
    assert kind(patch, [crash], "generic", asked) == "task_failure"
    # with no history at all, a reproduction script's run is still the red phase
    assert kind(call("bash", {"command": "python reproduce_issue.py"}), [crash], "generic") == "ok"


def test_codexs_own_patch_is_a_change_of_the_code_so_a_failing_test_after_it_is_no_red_phase() -> None:
    asked = [{"role": "user", "content": "the parser drops tabs; fix it"}]
    patch = "*** Begin Patch\n*** Update File: src/parser.py\n@@\n-    x = 1\n+    x = 2\n*** End Patch"
    patched = [
        *asked,
        call("apply_patch", {"input": patch}, "p1"),
        tool("Success. Updated the following files:\nM src/parser.py", "p1"),
    ]
    run = call("exec_command", {"cmd": "pytest -q tests/test_parser.py"})
    failing = codex_exec("F.\n1 failed, 1 passed in 0.1s\n", 1)
    assert kind(run, [failing], "codex", asked) == "ok"  # nothing changed yet: the bug as reported
    assert kind(run, [failing], "codex", patched) == "task_failure"  # after its patch: the fix did not work


def test_git_without_an_identity_is_the_environment() -> None:
    out = "Author identity unknown\n\n*** Please tell me who you are.\n\nfatal: unable to auto-detect email address\n"
    assert kind(mini("git commit -am 'feat: x'"), [returned(out, 128)], "mini_swe_agent") == "environment"


def test_git_refused_by_its_remote_for_want_of_this_machines_keys_is_the_environment() -> None:
    out = "git@github.com: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n"
    assert kind(call("exec_command", {"cmd": "git fetch --all --prune"}), [codex_exec(out, 128)], "codex") == (
        "environment"
    )


def test_pytests_status_5_is_no_tests_selected_an_answer() -> None:
    out = "platform linux -- Python 3.9\ncollected 41 items / 41 deselected\n\n==== 41 deselected in 0.52s ====\n"
    assert (
        kind(mini('python -m pytest tests/test_core.py -v -k "separab"'), [returned(out, 5)], "mini_swe_agent") == "ok"
    )
    assert kind(mini("make build"), [returned("make: *** [build] Error 5\n", 5)], "mini_swe_agent") == "task_failure"


@pytest.mark.parametrize(
    ("next_message", "expected"),
    [
        ("/undo", "user_correction"),  # in its chat history
        ("/und", "user_correction"),  # aider takes any unique prefix of a command
        # in the next request: what aider tells the model after the person's /undo
        (
            "I did `git reset --hard HEAD~1` to discard the last edits. Please wait for further instructions",
            "user_correction",
        ),
        ("/diff", "ok"),
    ],
)
def test_aider_the_person_undoing_the_change(next_message: str, expected: str) -> None:
    console = "> Tokens: 2k sent, 300 received.  \n> Applied edit to src/parse.py  \n> Commit 1a2b3c4 fix: parser  "
    assert aider_kind(history(console, next_message)) == expected


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # a question the person never saw: the call was malformed, not unanswerable
        (
            "AskUserQuestion",
            "<tool_use_error>InputValidationError: [ too_small: options ]</tool_use_error>",
            "task_failure",
        ),
        ("Bash", "PID: 14574\n[1]+  Exit 1                  nohup emulator -avd x > /tmp/e.log 2>&1\n", "task_failure"),
        ("Bash", "Exit code 127\n/bin/bash: line 1: grep: command not found\n", "environment"),
    ],
)
def test_claude_code_malformed_questions_failed_background_jobs_missing_core_tools(
    command: str, output: str, expected: str
) -> None:
    ran = (
        "nohup emulator -avd x > /tmp/e.log 2>&1 &\necho PID: $!" if "PID" in output else "sdkmanager --list | head -30"
    )
    args = {"questions": [{"question": "name?"}]} if command == "AskUserQuestion" else {"command": ran}
    flagged = output.startswith(("<tool_use_error>", "Exit code"))
    assert kind(call(command, args), [tool(output, is_error=flagged)], "claude_code") == expected


def test_a_reproduction_stopped_by_a_name_it_never_imported_never_showed_the_bug() -> None:
    before = [PROMPT, {"role": "user", "content": "<pr_description>subs fails</pr_description>"}]
    crash = 'OBSERVATION:\nTraceback (most recent call last):\n  File "/testbed/reproduce.py", line 11, in <module>\n'
    crash += "    s2 = ConditionSet(x, Lambda(n, n))\nNameError: name 'Lambda' is not defined\n"
    shows = 'OBSERVATION:\nTraceback (most recent call last):\n  File "/testbed/reproduce.py", line 11, in <module>\n'
    shows += '  File "/testbed/sympy/sets/conditionset.py", line 208, in _eval_subs\n'
    shows += "NameError: name 'cond' is not defined\n"
    run = fn("python /testbed/reproduce.py")
    assert kind(run, [{"role": "user", "content": crash}], "swe_agent", before) == "task_failure"
    assert kind(run, [{"role": "user", "content": shows}], "swe_agent", before) == "ok"  # the library's own bug


def test_a_read_whose_output_goes_to_a_file_is_a_write() -> None:
    missing = tool("Exit code 1\ncat: step2.txt: No such file or directory", is_error=True)
    assert kind(call("Bash", {"command": "cat step2.txt >> notes.txt"}), [missing], "claude_code") == "task_failure"
    assert kind(call("Bash", {"command": "cat step2.txt 2>&1"}), [missing], "claude_code") == "ok"  # still a read
    assert kind(call("Bash", {"command": "cat step2.txt 2>/dev/null"}), [missing], "claude_code") == "ok"


def test_git_options_before_its_subcommand_and_a_shell_codex_opened() -> None:
    answer = codex_exec("fatal: not a git repository (or any of the parent directories): .git\n", 128)
    assert kind(call("exec_command", {"cmd": "git -C /home/u status --short"}), [answer], "codex") == "ok"
    refused = codex_exec("fatal: not a git repository (or any of the parent directories): .git\n", 128)
    assert kind(call("exec_command", {"cmd": "git -C /home/u push origin main"}), [refused], "codex") == "task_failure"
    running = "Chunk ID: b56528\nWall time: 1.0013 seconds\nProcess running with session ID 89434\n"
    running += "Original token count: 0\nOutput:\n"
    assert kind(call("exec_command", {"cmd": "bash", "tty": True}), [tool(running)], "codex") == "ok"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('cat src/rules/L031.py | grep -i "dialect\\|config"', "ok"),  # `\|` inside quotes is grep's, not a pipe
        ("cat src/rules/L031.py | grep -E 'dialect|config'", "ok"),
        ("grep -q 'a|b' src/x.py; python check.py", "task_failure"),  # the `;` outside the quotes still splits
    ],
)
def test_operators_inside_quotes_are_text(command: str, expected: str) -> None:
    assert kind(mini(command), [observed("", 1)], "mini_swe_agent") == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"command": "view", "path": "/w/src/JSON.java"}, "ok"),  # looking whether a guessed path is there
        ({"path": "/w/src/JSON.java", "view_range": None}, "ok"),  # OpenHands' read action
        ({"command": "str_replace", "path": "/w/src/JSON.java", "old_str": "a", "new_str": "b"}, "task_failure"),
    ],
)
def test_openhands_viewing_a_path_that_is_not_there(args: dict[str, Any], expected: str) -> None:
    said = "ERROR:\nInvalid `path` parameter: /w/src/JSON.java. The path /w/src/JSON.java does not exist."
    assert kind(call("str_replace_editor", args), [tool(said)], "openhands") == expected


def test_an_openhands_event_stream_is_read_as_a_run_or_as_the_bare_list_of_its_events() -> None:
    """A run's `history` (SWE-bench output.jsonl), or the list alone (`--save-trajectory-path`)."""
    events = [
        {"id": 1, "source": "user", "action": "message", "args": {"content": "make the tests pass"}},
        {"id": 2, "source": "agent", "action": "run", "message": "Running pytest", "args": {"command": "pytest -q"}},
        {
            "id": 3,
            "source": "agent",
            "observation": "run",
            "cause": 2,
            "content": "1 failed, 4 passed",
            "extras": {"metadata": {"exit_code": 1}},
        },
        {"id": 4, "source": "agent", "action": "finish", "args": {}},
    ]
    for data in (json.dumps({"instance_id": "x", "history": events}), json.dumps(events)):
        t = openhands.transcript(data.encode(), {"event_id": 2})
        assert t.messages[t.at]["tool_calls"][0]["function"] == {
            "name": "execute_bash",
            "arguments": '{"command": "pytest -q"}',
        }
        assert t.messages[-1]["content"].endswith("[The command completed with exit code 1.]")
        assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands").kind == "task_failure"


def _browser(url: str, error: str | None, page: str, doing: str = "executing the last action") -> str:
    """A browser result as OpenHands shows it to the model: header lines, the error banner or word of
    success, the page."""
    head = f"[Current URL: {url}]\n[Focused element bid: 12]\n[Screenshot saved to: /outputs/s.png]\n\n"
    if error is None:
        return head + "[Action executed successfully.]\n" + page
    return (
        head + "================ BEGIN error message ===============\n"
        f"The following error occurred when {doing}:\n{error}\n"
        "================ END error message ===============\n" + page
    )


@pytest.mark.parametrize(
    ("url", "error", "page", "doing", "expected"),
    [
        ("http://files.local/", "TimeoutError: locator.click: element is covered", "Files", None, "task_failure"),
        ("http://files.local/", None, "Files", None, "ok"),
        # the error decides, not the page: a login page's words, a long page, a long URL
        (
            "http://files.local/",
            "TimeoutError: locator.click",
            "Settings\nForgot your credentials?",
            None,
            "task_failure",
        ),
        ("http://files.local/", "TimeoutError: locator.click", "a link\n" * 500, None, "task_failure"),
        ("http://files.local/?q=" + "a" * 3000, "TimeoutError: locator.click", "Files", None, "task_failure"),
        # a site the browser cannot reach is the machine's, as curl's is
        ("http://x.local/", "Error: Page.goto: net::ERR_NAME_NOT_RESOLVED at http://x.local/", "", None, "environment"),
        ("http://x.local/", "Error: Page.goto: Timeout 30000ms exceeded.", "a link\n" * 500, None, "environment"),
        # web_read's wording
        ("http://x.local/", "Error: Page.goto: net::ERR_ABORTED", "", "trying to visit the URL", "task_failure"),
        # a page that quotes the banner is a page
        (
            "http://issues.local/1",
            None,
            "===== BEGIN error message =====\nThe following error occurred when executing the last action:\n"
            "x\n===== END error message =====",
            None,
            "ok",
        ),
    ],
)
def test_an_openhands_browser_action_is_judged_from_the_error_openhands_shows(
    url: str, error: str | None, page: str, doing: str | None, expected: str
) -> None:
    text = _browser(url, error, page, doing or "executing the last action")
    assert kind(call("browser", {"code": "click('397')"}), [tool(text)], "openhands") == expected


def test_an_openhands_event_stream_shows_a_failed_browser_action_as_openhands_showed_it() -> None:
    """Its `extras.error`, rendered as the banner (a run that kept the page alone), or the banner the run
    kept (once, not twice); a browser process that stopped answering is the machine's."""
    for content, extras, expected in (
        ("Files\nDocuments", {"error": True, "last_browser_action_error": "TimeoutError"}, "task_failure"),
        ("Files\nDocuments", {"error": False}, "ok"),
        (_browser("http://f.local/", "TimeoutError", "Files"), {"error": True}, "task_failure"),
        ("Browser environment took too long to respond.", {"error": True}, "environment"),
    ):
        events = [
            {"id": 1, "source": "user", "action": "message", "args": {"content": "file the expense report"}},
            {"id": 2, "source": "agent", "action": "browse_interactive", "args": {"browser_actions": "click('397')"}},
            {
                "id": 3,
                "source": "environment",
                "observation": "browse",
                "cause": 2,
                "content": content,
                "extras": extras,
            },
        ]
        t = openhands.transcript(json.dumps(events).encode(), {"event_id": 2})
        assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands").kind == expected, extras
        assert str(t.messages[-1]["content"]).count("BEGIN error message") == (extras["error"] is True)
    with pytest.raises(LookupError, match="names no event_id"):  # was: the run's last action, silently
        openhands.transcript(json.dumps([{**e, "id": None} for e in events]).encode(), {"step": 1})
    with pytest.raises(LookupError, match="an event is int"):
        openhands.transcript(b"[1, 2, 3]", {"event_id": 2})


BEGIN, END = "----TOOL RESULT BEGIN----\n", "----TOOL RESULT END----\n"


def react(name: str, **args: str) -> dict[str, Any]:
    """A reply of a ReAct template whose calls are written in the text (kept in mini-swe-agent's format)."""
    body = "".join(f"----ARG----\n{k}\n----VALUE----\n{v}\n" for k, v in args.items())
    return {
        "role": "assistant",
        "content": f"I'll do it.\n----BEGIN_FUNCTION_CALL----\n{name}\n{body}----END_FUNCTION_CALL----",
    }


@pytest.mark.parametrize(
    ("reply", "answer", "expected"),
    [
        (react("run_bash_cmd", command="nl -ba a.py"), ("system", "Result:\n     1\timport os\n"), "ok"),
        # the end marker written twice ran as a command
        (
            react("run_bash_cmd", command="nl -ba a.py"),
            ("system", "Result:\n     1\timport os\nbash: line 2: ----END_FUNCTION_CALL: command not found\n"),
            "task_failure",
        ),
        (
            react("run_bash_cmd", command="git apply p.diff"),
            ("system", "Result:\nerror: unrecognized input\n"),
            "task_failure",
        ),
        (react("show_file", file_path="a.py"), ("user", "Tool 'show_file' returned:\n1 raise ValueError('x')\n"), "ok"),
        (
            react("replace_in_file", file_path="a.py", old_content="x = 1"),
            ("user", "Tool 'replace_in_file' returned:\nError: Could not find exact match in a.py."),
            "task_failure",
        ),
        (
            react("replace_in_file", file_path="a.py", old_content="x = 1"),
            ("user", "Error executing 'replace_in_file': TypeError: Missing required argument: new_content"),
            "task_failure",
        ),
        (
            {"role": "assistant", "content": "I will now look at the files."},
            ("user", "Error: No function call detected in your response. You MUST call a function."),
            "task_failure",
        ),
        # a template showing the call, then its output between markers, as a tool message: no status, so its
        # last lines are read; a dict of the harness's own tool inside is its answer
        (
            react("run_bash_cmd", command="python -m py_compile w.py"),
            (
                "tool",
                f"run_bash_cmd(args={{...}})\n{BEGIN}Sorry: IndentationError: unexpected indent (w.py, line 3)\n{END}",
            ),
            "task_failure",
        ),
        (
            react("run_bash_cmd", command="python repro.py"),
            (
                "tool",
                f"run_bash_cmd()\n{BEGIN}Traceback (most recent call last):\n  x\nSyntaxError: bad\n\n{END}",
            ),
            "task_failure",
        ),
        (react("run_bash_cmd", command="python repro.py"), ("tool", f"run_bash_cmd()\n{BEGIN}42\n{END}"), "ok"),
        (
            react("replace_in_file", file_path="a.py"),
            ("tool", f"replace_in_file()\n{BEGIN}{{'output': 'Replaced lines 1-2', 'returncode': 0}}\n{END}"),
            "ok",
        ),
        (
            react("show_file", file_path="a.py"),  # a file shown, not a command's output
            ("tool", f"show_file()\n{BEGIN}1 raise ValueError('x')\nTraceback (most recent call last):\n{END}"),
            "ok",
        ),
        (
            react("str_replace_editor", command="view", path="a.py"),  # an editor's `command` is its verb
            ("tool", f"str_replace_editor()\n{BEGIN}raise ValueError('x')\nTraceback (most recent call last):\n{END}"),
            "ok",
        ),
        (
            react("run_bash_cmd", command="pytest -q"),  # an observation of its own shape keeps its status
            ("tool", f"<returncode>1</returncode>\n<output>\n{BEGIN}log line\n{END}1 failed\n</output>"),
            "task_failure",
        ),
    ],
)
def test_a_react_template_with_calls_in_its_text(reply: dict[str, Any], answer: tuple[str, str], expected: str) -> None:
    role, text = answer
    assert kind(reply, [{"role": role, "content": text}], "mini_swe_agent") == expected


def test_a_react_templates_edit_is_a_change_of_the_code_so_its_reproduction_failing_after_is_no_red_phase() -> None:
    asked = [{"role": "user", "content": "collect_factor_and_dimension fails on equivalent dimensions; fix it"}]
    edit = react("replace_in_file", file_path="sympy/physics/units/unitsystem.py", from_line="173", to_line="184")
    edited = [
        *asked,
        edit,
        {"role": "tool", "content": f"replace_in_file()\n{BEGIN}{{'output': 'Replaced', 'returncode': 0}}\n{END}"},
    ]
    run = react("run_bash_cmd", command="python reproduce_issue.py")
    crash = {
        "role": "tool",
        "content": f"run_bash_cmd()\n{BEGIN}Traceback (most recent call last):\nValueError: bad\n{END}",
    }
    assert kind(run, [crash], "mini_swe_agent", asked) == "ok"  # the bug as reported, nothing changed yet
    assert kind(run, [crash], "mini_swe_agent", edited) == "task_failure"  # after its edit: the fix did not work


ARGPARSE = (
    "usage: tool [-h] [--view_range VIEW_RANGE VIEW_RANGE] command path\ntool: error: unrecognized arguments: [1, 9]\n"
)


def test_a_cli_refusing_its_arguments_never_ran() -> None:
    shown = "```\nstr_replace_editor view /t/a.py [1, 9]\n```"
    refused = ARGPARSE.replace("tool", "str_replace_editor")
    step = {"role": "assistant", "content": shown}
    assert kind(step, [{"role": "user", "content": "OBSERVATION:\n" + refused}], "swe_agent") == "task_failure"
    # the same refusal again is the same mistake again, not a second look
    before = [{"role": "user", "content": "fix it"}, step, {"role": "user", "content": "OBSERVATION:\n" + refused}]
    assert kind(step, [{"role": "user", "content": "OBSERVATION:\n" + refused}], "swe_agent", before) == "task_failure"
    assert kind(call("Bash", {"command": "python manage.py migrate --fake-it"}), [tool(ARGPARSE)], "claude_code") == (
        "task_failure"
    )
    # GNU's last word on arguments refused (`timeout 10`, cmd.exe's wait, has no command to run): the probe after
    # it never ran, whatever its status would have meant
    gnu = "Exit code 125\nTry 'timeout --help' for more information."
    assert kind(call("Bash", {"command": "timeout 10 && type out.log"}), [tool(gnu)], "claude_code") == "task_failure"
    # printed on the way by a step that did nothing, the command going on to succeed: no refusal of its work
    empty = "rm: missing operand\nTry 'rm --help' for more information.\n"
    assert (
        kind(call("Bash", {"command": "find . -name '*.tmp' | xargs rm || true"}), [tool(empty)], "claude_code") == "ok"
    )
    bad = "Exit code 2\nFINDSTR: Bad command line"
    assert kind(call("Bash", {"command": 'netstat -ano | findstr "3123" -q'}), [tool(bad)], "claude_code") == (
        "task_failure"
    )
    # Windows' own programs, in Git Bash: `2>nul` left a stray `2`, `/F` became a path (lines end in \r\n)
    stray = "Docker not running\r\nERROR: Invalid argument/option - '2'.\r\nType \"TASKLIST /?\" for usage.\r\n"
    probe = call("Bash", {"command": "tasklist 2>nul | grep -i docker || echo 'Docker not running'"})
    assert kind(probe, [tool(stray)], "claude_code") == "task_failure"
    mangled = tool("ERROR: Invalid argument/option - 'F:/'.\r\nType \"TASKKILL /?\" for usage.", is_error=True)
    kill = call("Bash", {"command": "taskkill /F /PID 28288"})
    assert kind(kill, [mangled], "claude_code") == "task_failure"
    before = [{"role": "user", "content": "free the port"}, kill, mangled]
    assert kind(kill, [mangled], "claude_code", before) == "task_failure"  # run again as it was: the same mistake
    # the same line found by a search of a log: the log's, not the command's
    found = "Starting deploy\r\nERROR: Invalid argument/option - '/x'.\r\n"
    assert kind(call("Bash", {"command": "grep ERROR logs/deploy.log"}), [tool(found)], "claude_code") == "ok"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        ("cd /w/app && ls specs", "Exit code: 1\nOutput:\nls: specs: No such file or directory\n", "ok"),  # ran: `ls`
        ("cd /w/app && npm test", "Exit code: 1\nOutput:\nnpm ERR! Test failed.\n", "task_failure"),
        ("find ~ -maxdepth 4 -iname '*mcp*'", "Exit code: 124\nWall time: 10 seconds\nOutput:\n/a/b\n", "task_failure"),
        ("coderabbit --version 2>/dev/null && coderabbit auth status", "Exit code: 127\nOutput:\n", "environment"),
        ("rg spec-kit", "exec command rejected by user", "rejected"),  # Codex's words for a denied command
        ("npm list -g claude-code", "Exit code: 1\nOutput:\n/opt/homebrew/lib\n└── (empty)\n", "ok"),  # `npm ls`
    ],
)
def test_codex_commands_after_cd_its_timeout_and_a_silent_127(command: str, output: str, expected: str) -> None:
    assert kind(call("shell_command", {"command": command}), [tool(output)], "codex") == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Error: [explore] cargo was not found. Install a Rust toolchain, or set OMX_EXPLORE_BIN\n", "environment"),
        ("error: node was not found on PATH; install Node.js 20\n", "environment"),
        ("fatal: Unable to create '/w/app/.git/index.lock': Permission denied\n", "environment"),
        # a file the model named, not there; a node of a tree: its own mistake
        ("Error: config/settings.json was not found\n", "task_failure"),
        ("Error: cmd/server/main.go was not found\n", "task_failure"),
        ("Error: Target node was not found in the tree\n", "task_failure"),
    ],
)
def test_a_toolchain_not_installed_or_a_sandboxed_git_lock_is_the_environment(output: str, expected: str) -> None:
    out = f"Exit code: 1\nOutput:\n{output}"
    assert kind(call("shell_command", {"command": "omx explore && git add -A"}), [tool(out)], "codex") == expected


def test_a_husky_hook_never_installed_or_an_mcp_servers_transport_is_the_environment() -> None:
    hook = "Exit code 1\n.husky/pre-commit: line 5: .husky/_/husky.sh: No such file or directory\n"
    commit = call("Bash", {"command": "git commit -m 'Add parser'"})
    assert kind(commit, [tool(hook, is_error=True)], "claude_code") == "environment"
    own = "Exit code 1\n.husky/pre-commit: line 5: scripts/lint.sh: No such file or directory"  # its own script
    assert kind(commit, [tool(own, is_error=True)], "claude_code") == "task_failure"
    gone = 'Streamable HTTP error: Error POSTing to endpoint: {"error":{"message":"MCP session has been terminated"}}'
    mcp = call("mcp__forge__search", {"query": "parser"})
    assert kind(mcp, [tool(gone, is_error=True)], "claude_code") == "environment"
    assert kind(mcp, [tool("Error: invalid arguments: query must be a string", is_error=True)], "claude_code") == (
        "task_failure"
    )
    bad = 'Streamable HTTP error: Error POSTing to endpoint (HTTP 400): {"code":-32602,"message":"Invalid params"}'
    assert kind(mcp, [tool(bad, is_error=True)], "claude_code") == "task_failure"
    for down in (
        "MCP error -32603: Streamable HTTP error: Error POSTing to endpoint (HTTP 502): Bad Gateway",
        "Streamable HTTP error: Error POSTing to endpoint (HTTP 429): rate limited",
        "Streamable HTTP error: Failed to open SSE stream: Service Unavailable",
    ):
        assert kind(mcp, [tool(down, is_error=True)], "claude_code") == "environment"


def test_a_site_refusing_claude_codes_web_fetch_is_the_environment() -> None:
    fetch = call("WebFetch", {"url": "https://wiki.example.org/Item", "prompt": "list the drop rates"})
    # (and a short link's redirect it does not follow, holdout97)
    for status in (403, 429, 303):
        refused = f"Request failed with status code {status}"
        assert kind(fetch, [tool(refused, is_error=True)], "claude_code") == "environment"
    # the project's own HTTP client saying so, in its tests' output: the project's code
    run = call("Bash", {"command": "npm test"})
    out = "Exit code 1\nFAIL src/api.test.ts\n  AxiosError: Request failed with status code 403\nTests: 1 failed\n"
    assert kind(run, [tool(out, is_error=True)], "claude_code") == "task_failure"
    # a page that is not there was the model's guess of an address (labelled so on the manifest)
    assert kind(fetch, [tool("Request failed with status code 404", is_error=True)], "claude_code") == "task_failure"


def test_claude_codes_own_bounds_on_the_session_are_the_environment() -> None:
    """Claude Code refusing a folder outside the session's working directories, or a site its WebFetch may
    not fetch from: no person's answer to this call, and the lead's call would meet the same bound (both
    labellers of holdout99, four such folders and one site)."""
    ls = call("Bash", {"command": "ls -la ~/.claude/"})
    folder = (
        "ls in 'C:\\Users\\me\\.claude' was blocked. For security, Claude Code may only list files in the allowed "
        "working directories for this session: 'F:\\work\\shop'."
    )
    assert kind(ls, [tool(f"<tool_use_error>{folder}</tool_use_error>", is_error=True)], "claude_code") == "environment"
    mkdir = call("Bash", {"command": "mkdir -p /workspace/routes"})
    bare = "mkdir in '/workspace/routes' was blocked. For security, Claude Code may only create directories in the "
    assert kind(mkdir, [tool(bare + "allowed working directories", is_error=True)], "claude_code") == "environment"
    cd = call("Bash", {"command": "cd /tmp && ls"})
    moved = "cd to '/tmp' was blocked. For security, Claude Code may only change directories to the allowed working"
    assert kind(cd, [tool(f"<tool_use_error>{moved}</tool_use_error>", is_error=True)], "claude_code") == "environment"
    fetch = call("WebFetch", {"url": "https://docs.example.com/settings", "prompt": "where are settings kept"})
    said = "Claude Code is unable to fetch from docs.example.com"
    for told in (f"<tool_use_error>{said}</tool_use_error>", f"Error: {said}"):
        assert kind(fetch, [tool(told, is_error=True)], "claude_code") == "environment"
    # the words quoted in what a script printed (not at a line's start) are the script's
    run = call("Bash", {"command": "python summarize.py notes.md"})
    quoted = f"note 12: the agent said {said}\nError: the summary is over 400 words\nExit code 1"
    assert kind(run, [tool(quoted, is_error=True)], "claude_code") == "task_failure"


def test_cmd_started_as_a_shell_of_its_own_ran_nothing() -> None:
    """`cmd /c x` typed into Git Bash: bash reads `/c` as the path `C:/`, so cmd starts as a shell, prints its
    greeting and prompt, and ends with its input; x never ran (both labellers of holdout99, twice; holdout51
    once). `cmd /c ver`, whose answer is the version line alone, did run."""
    run = call("Bash", {"command": 'cmd /c "tools\\kuzu.exe --version"'})
    for banner in (
        "Microsoft Windows [Version 10.0.26100.4652]\r\n(c) Microsoft Corporation. All rights reserved.\r\n\r\n"
        "C:\\Users\\me\\addin>",
        "Microsoft Windows [版本 10.0.19045.3803]\n(c) Microsoft Corporation。保留所有权利。\n\nD:\\shop>",
    ):
        assert kind(run, [tool(banner)], "claude_code") == "task_failure"
    ver = call("Bash", {"command": "cmd /c ver"})
    assert kind(ver, [tool("\r\nMicrosoft Windows [Version 10.0.26100.4652]\r\n")], "claude_code") == "ok"
    # the greeting followed by what the command printed: it ran
    greeting = "Microsoft Windows [Version 10.0.26100.4652]\r\n(c) Microsoft Corporation. All rights reserved.\r\n"
    ran = greeting + "\r\nkuzu 0.11.1"
    assert kind(run, [tool(ran)], "claude_code") == "ok"
    # the greeting shown by a command that runs no cmd (a fixture printed): what it printed
    shown = greeting + "\r\nC:\\Users\\me>"
    assert kind(call("Bash", {"command": "cat tests/fixtures/banner.txt"}), [tool(shown)], "claude_code") == "ok"


def test_codex_saying_a_call_failed_is_a_failed_call() -> None:
    """Codex's own words that a tool call failed: the call did nothing (its sandbox's refusal is the
    environment's)."""
    stdin = call("write_stdin", {"session_id": 32424, "chars": "\u0003"})
    closed = "write_stdin failed: stdin is closed for this session; rerun exec_command with tty=true"
    assert kind(stdin, [tool(closed)], "codex") == "task_failure"
    run = call("exec_command", {"cmd": "npm run lint"})
    denied = 'exec_command failed: SandboxDenied { message: "Error: EPERM", output: "" }'
    assert kind(run, [tool(denied)], "codex") == "environment"
    # words of the command's own output are no such word
    assert kind(run, [tool("Exit code: 0\nOutput:\nlint failed: 0 files\n")], "codex") == "ok"


def test_codexs_sandbox_refusing_a_write_is_the_environment() -> None:
    """Codex's sandbox (its older words: "failed in sandbox ... sandbox denied exec error", said of any failed
    command) refusing a write outside its writable folders, in the program's or the system's language:
    the environment (holdout100, both labellers, three turns); a command that failed in it for its own
    reason is the command's."""
    run = call("shell", {"command": ["bash", "-lc", "mkdir -p ~/.codex/rollouts"]})
    head = "failed in sandbox LinuxSeccomp with execution error: sandbox denied exec error, exit code: 1, stdout: , "
    for said in (
        "stderr: mkdir: cannot create directory '/home/me/.codex/rollouts': Permission denied",
        "stderr: mkdir: ディレクトリ `/home/me/.codex/rollouts' を作成できません: 許可がありません",
        "stderr: ERROR codex_core::codex: failed to initialize rollout recorder: Permission denied (os error 13)\n"
        "Error: internal error; agent loop died unexpectedly",
    ):
        assert kind(run, [tool(head + said)], "codex") == "environment"
    for own in ("stderr: bash: ./deploy.sh: Permission denied", 'stderr: Expected: "Permission denied"\n1 failed'):
        script = call("shell", {"command": ["bash", "-lc", "./deploy.sh"]})
        assert kind(script, [tool(head + own)], "codex") == "task_failure", own
    test = call("shell", {"command": ["bash", "-lc", "cargo test"]})
    failed = head.replace("exit code: 1", "exit code: 101") + "stderr: test parser::tabs ... FAILED\nerror: test failed"
    assert kind(test, [tool(failed)], "codex") == "task_failure"


def test_asking_help_on_a_subcommand_that_is_not_there_is_an_answer() -> None:
    """`codex help summarize`, `codex mcp call --help`: the program says there is no such subcommand, which is
    what was asked (holdout100, both labellers: probes); the same refusal of a command meant to work is not."""
    refused = "Exit code: 2\nOutput:\nerror: unrecognized subcommand 'summarize'\n\nUsage: codex [OPTIONS] [PROMPT]\n"
    for command in ("codex help summarize", "codex mcp call --help"):
        assert kind(call("exec_command", {"cmd": command}), [tool(refused)], "codex") == "ok"
    assert kind(call("exec_command", {"cmd": "codex summarize ."}), [tool(refused)], "codex") == "task_failure"
    # a test run of a CLI's help, failing: the tests' failure
    chose = "Exit code: 1\nOutput:\nE   SystemExit: cli: error: argument command: invalid choice: 'hlep'\n1 failed\n"
    for command in ("pytest -q -k help", "cargo test help"):
        assert kind(call("exec_command", {"cmd": command}), [tool(chose)], "codex") == "task_failure", command


def test_a_here_document_whose_closing_word_never_came() -> None:
    """bash's warning that a here-document ran to the end of the command: what the command wrote or ran is
    not what was written (holdout100, both labellers; four of the manifest, all failures)."""
    script = "cat <<'EOF' > .serena/MODEL_INPUT.md"
    said = "warning: here-document at line 1 delimited by end-of-file (wanted `EOF')"
    warned = json.dumps({"output": f"# Summary\n: line 1: {said}\n", "metadata": {"exit_code": 0}})
    assert kind(call("exec_command", {"cmd": script}), [tool(warned)], "codex") == "task_failure"
    japanese = warned.replace(said, "警告: ヒアドキュメントの 1 行目でファイル終了 (EOF) に達しました (`EOF' が必要)")
    assert kind(call("exec_command", {"cmd": script}), [tool(japanese)], "codex") == "task_failure"
    # its lines and closing word passed as bash's `$0` and `$1` (holdout100): the script after `-lc` is what ran
    split = call("shell", {"command": ["bash", "-lc", script, "# Summary\n", "EOF"]})
    assert kind(split, [tool(warned)], "codex") == "task_failure"
    # the model's here-document was closed (a harness appended to its last line), a start-up file's warning, a
    # log that quotes it: not the command's
    closed = call("exec_command", {"cmd": "cat <<'EOF' > notes.md\n# Notes\nEOF"})
    assert kind(closed, [tool(warned)], "codex") == "ok"
    startup = json.dumps({"output": f"/home/me/.bashrc: line 120: {said}\nbuilt in 3s\n", "metadata": {"exit_code": 0}})
    assert kind(call("exec_command", {"cmd": "npm run build"}), [tool(startup)], "codex") == "ok"
    log = json.dumps({"output": f"ci.log:3: {said}\n", "metadata": {"exit_code": 0}})
    assert kind(call("exec_command", {"cmd": "grep -n here-document ci.log"}), [tool(log)], "codex") == "ok"


def test_codex_naming_a_long_refused_command_before_saying_it_was_refused() -> None:
    """Codex echoes the whole command (a heredoc of a file, thousands of characters) and then says the
    person refused it: the refusal at the end was not read."""
    script = "cat > SKILL.md <<'EOF'\n" + "- id: global-output\n  priority: 2\n" * 150 + "EOF"
    refusal = 'CreateProcess { message: "Rejected(\\"rejected by user\\")" }'
    said = f'exec_command failed for `/bin/zsh -lc "{script}"`: {refusal}'
    assert kind(call("exec_command", {"cmd": script}), [tool(said)], "codex") == "rejected"
    ran = f'exec_command failed for `/bin/zsh -lc "{script}"`: CreateProcess {{ message: "No such file" }}'
    assert kind(call("exec_command", {"cmd": script}), [tool(ran)], "codex") != "rejected"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # the time limit ended a walk through folders it may not read: the walk was the model's choice
        (
            "rg TODO ~",
            "Exit code: 124\nOutput:\n/Users/a/Library/Mail: Operation not permitted (os error 1)\n",
            "task_failure",
        ),
        ("find ~ -name x", "Exit code: 124\nOutput:\nfind: /root/.cache: Permission denied\n", "task_failure"),
        ("find . -name x", "Exit code: 124\nOutput:\nfind: ./Library/Mail: Operation not permitted\n", "task_failure"),
        ("rg x", "Exit code: 124\nOutput:\nLibrary/Mail: Operation not permitted (os error 1)\n", "task_failure"),
        (
            "find ~ -name x",
            "Exit code: 124\nOutput:\n/etc/profile.d/a.sh: line 3: /bin/ps: Operation not permitted\n",
            "task_failure",
        ),
        # what the environment says of why it hung still counts; a refusal that ended the command too
        (
            "pip install httpx",
            "Exit code: 124\nOutput:\nWARNING: Retrying (Retry(total=4)) after connection broken by "
            "'NewConnectionError(\"Failed to establish a new connection: [Errno 1] Operation not permitted\")': "
            "/simple/httpx/\n",
            "environment",
        ),
        (
            "pip install httpx",
            "Exit code: 124\nOutput:\nRetrying ... Max retries exceeded with url: /simple/httpx/\n",
            "environment",
        ),
        (
            "mkdir /opt/app",
            "Exit code: 1\nOutput:\nmkdir: cannot create directory '/opt/app': Operation not permitted\n",
            "environment",
        ),
    ],
)
def test_a_refused_path_on_the_way_is_not_why_a_command_ran_out_of_time(
    command: str, output: str, expected: str
) -> None:
    assert kind(call("shell_command", {"command": command}), [tool(output)], "codex") == expected


@pytest.mark.parametrize(
    "last",
    [
        "COPY failed: file not found in build context or excluded by .dockerignore: stat vendor",
        "\x1b[0mThe command '/bin/sh -c ldconfig' returned a non-zero code: 255",
    ],
)
def test_docker_legacy_builder_failures_behind_a_filter(last: str) -> None:
    out = f"Step 1/19 : FROM debian:bookworm-slim\n ---> 1f2403136cb0\nStep 9/19 : RUN x\n{last}\n"
    assert kind(call("Bash", {"command": "docker build -t app . 2>&1 | tail -60"}), [tool(out)], "claude_code") == (
        "task_failure"
    )


@pytest.mark.parametrize(
    ("command", "out"),
    [
        (
            "npm run build",
            "Creating an optimized production build ...\nFailed to compile.\n\n./src/a.tsx\nType error: x\n",
        ),
        ("npx next build", "./src/app/page.tsx\n\n> Build failed because of webpack errors\n"),
        ("npx next build", "Linting and checking validity of types ...\n> Build error occurred\n[TypeError: x]\n"),
        ("npx vite build", "transforming...\nerror during build:\nsrc/main.ts (3:9): x is not exported\n"),
        ("npx webpack", "asset main.js 1 KiB\n\nERROR in ./src/index.js 3:0-22\nwebpack compiled with 1 error\n"),
        ("npx esbuild app.ts --bundle", '✘ [ERROR] Could not resolve "./util"\n\n1 error\n'),
        ("dotnet build", "  App -> /w/bin/App.dll\n\nBuild FAILED.\n\n    0 Warning(s)\n    1 Error(s)\n"),
        ("xcodebuild -scheme App build", "** BUILD FAILED **\n\nThe following build commands failed:\n"),
        ("npx vue-cli-service build", " ERROR  Failed to compile with 1 error\n\n error  in ./src/App.vue\n"),
        ("npx parcel build src/index.html", "🚨 Build failed.\n\n@parcel/core: Failed to resolve './x'\n"),
        ("npx rollup -c", "src/main.js → dist/bundle.js...\n[!] RollupError: Could not resolve './x'\n"),
        ("npx turbo run build", "web:build: Failed\n ERROR  run failed: command  exited (1)\n"),
        ("dotnet build", "  App failed with 1 error(s) (0.4s)\n\nBuild failed with 1 error(s) in 1.2s\n"),
    ],
)
def test_a_bundler_or_build_tool_saying_its_build_failed_behind_a_filter(command: str, out: str) -> None:
    """The build tools' own last word, where a pipe to `tail` hides the status."""
    assert kind(call("Bash", {"command": f"{command} 2>&1 | tail -20"}), [tool(out)], "claude_code") == "task_failure"


@pytest.mark.parametrize(
    "out",
    [
        # a dev server or a bundler in watch mode that built again after its error
        "Failed to compile.\n\n./src/App.js\nModule not found\n\nCompiling...\nCompiled successfully!\n",
        "ERROR in ./src/index.js 3:0-22\nModule not found\n\nwebpack 5.88.2 compiled successfully in 41 ms\n",
        "> Build error occurred\n[TypeError: x]\n\n✓ Compiled in 1.2s\n",
        # a log line that names no file, a commit subject
        "2026-01-02 ERROR in app: retrying the queue\nERROR in handler\n",
    ],
)
def test_a_build_that_recovered_or_words_that_name_no_file_are_no_failed_build(out: str) -> None:
    assert kind(call("Bash", {"command": "npm run dev 2>&1 | tail -20"}), [tool(out)], "claude_code") == "ok"


def test_a_build_that_succeeded_before_what_failed_after_it_is_no_recovery() -> None:
    """Next.js compiles, then its type check fails; a bundle builds, then the program crashes."""
    for out in (
        "✓ Compiled successfully\nLinting and checking validity of types ...\nFailed to compile.\n\nType error: x\n",
        "webpack 5.88.2 compiled successfully in 41 ms\nTypeError: Cannot read properties of undefined\n",
    ):
        assert kind(call("Bash", {"command": "npm run build 2>&1 | tail -20"}), [tool(out)], "claude_code") == (
            "task_failure"
        )


def test_sudo_asking_for_a_password_nobody_can_type_is_the_environment() -> None:
    said = "sudo: a terminal is required to read the password; either use the -S option\nsudo: a password is required"
    assert (
        kind(call("Bash", {"command": "sudo apt-get install -y gh"}), [tool(said, is_error=True)], "claude_code")
        == "environment"
    )


def test_what_follows_the_persons_next_message_is_the_next_turns() -> None:
    done = {"role": "assistant", "content": "Removed: ~/.config/opencode and its caches."}
    after = [
        {"role": "user", "content": "now download opencode with bun"},
        {"role": "user", "content": "<turn_aborted reason=interrupted>"},  # the new request, interrupted
    ]
    assert kind(done, after, "codex") == "ok"
    assert kind(done, after[1:], "codex") == "rejected"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("timeout: failed to run command ‘strace’: No such file or directory\n", "environment"),  # not installed
        ("timeout: failed to run command './run.sh': No such file or directory\n", "task_failure"),  # its own script
        (
            "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'style-dictionary' imported from /w/build.mjs\n",
            "environment",
        ),
        (
            "Error [ERR_MODULE_NOT_FOUND]: Cannot find module '/w/src/util.js' imported from /w/build.mjs\n",
            "task_failure",
        ),
        ("node:internal/modules/cjs/loader:1228\nError: Cannot find module 'yaml'\nRequire stack:\n", "environment"),
        ("Error: Cannot find module '@/lib/db'\n", "task_failure"),  # the project's own alias
    ],
)
def test_a_program_or_package_that_is_not_installed(output: str, expected: str) -> None:
    assert kind(
        call("Bash", {"command": "node build.mjs"}), [tool("Exit code 1\n" + output, is_error=True)], "claude_code"
    ) == (expected)


def test_a_shell_that_could_not_parse_what_eval_gave_it() -> None:
    said = "Exit code 2\n/usr/bin/bash: eval: line 1: unexpected EOF while looking for matching `\"'"
    command = 'ls -la "C:\\Users\\me\\.claude\\" 2>/dev/null | head -30'  # a probe, but it never ran
    assert kind(call("Bash", {"command": command}), [tool(said, is_error=True)], "claude_code") == "task_failure"
    missing = "Exit code: 1\nOutput:\nrealpath: ../docs/req_DRAFT.md: No such file or directory\n"
    assert kind(call("shell_command", {"command": "realpath ../docs/req_DRAFT.md"}), [tool(missing)], "codex") == "ok"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("/usr/bin/env: ‘bash\\r’: No such file or directory\n", "environment"),  # a script with Windows line ends
        ("check.sh: line 2: $'\\r': command not found\ncheck.sh: line 22: set: -\r: invalid option\n", "environment"),
        (
            "docker : The term 'docker' is not recognized as the name of a cmdlet, function, script file\n",
            "environment",
        ),
        (":PATH : The term ':PATH' is not recognized as the name of a cmdlet, function, script file\n", "task_failure"),
        ("fatal: cannot change to 'stryv-lab': No such file or directory\n", "task_failure"),  # git never ran
    ],
)
def test_windows_line_ends_powershell_and_a_folder_git_cannot_enter(output: str, expected: str) -> None:
    command = "git -C stryv-lab status" if output.startswith("fatal") else "./check.sh --json"
    failed = tool("Exit code 1\n" + output, is_error=True)
    assert kind(call("Bash", {"command": command}), [failed], "claude_code") == expected


def test_aider_asking_again_after_adding_the_files_the_reply_asked_for() -> None:
    asked = "> Tokens: 2k sent, 300 received.  \n> src/parse.py  \n"
    asked += "> Add file to the chat? (Y)es/(N)o/(D)on't ask again [Yes]: y  "
    assert aider_kind(restating(asked)) == "ok"  # the model asked for the file; the person added it and asked on
    assert aider_kind(restating(asked.replace("[Yes]: y", "[Yes]: n"))) == "user_correction"


# What a client can send that made a pattern backtrack: before the fixes each ran past the alarm (from ~10 s to days)
# (measured through `judge`, growing 2x per repeat or 4x per doubling); now each takes milliseconds.
HOSTILE = {
    # options that could each take the next word, and no quoted script after them (exponential)
    "ssh options": ("ssh" + " -a" * 60 + " host", "Exit code 1"),
    "ssh words": ("ssh" + " -a x" * 2000, "Exit code 1"),
    "adb path": ('"' + "C:/" * 5000 + 'adb.exe" shell', "Exit code 1"),
    "quiet words": ("Get-Item x " + "-ErrorAction " * 3000, "Exit code 1"),
    # a file-not-there line repeated, then one that is not (exponential: 2 KB would take days)
    "not found lines": ("cat x", "Exit code 1\n" + "x: y: No such file or directory" * 60 + "!"),
    # a shell's name, then a run of newlines (quadratic: ~1 s at 32 KB)
    "newlines": ("make", "bash:" + "\n" * 300_000),
    # a check's command ending in pipes (quadratic: 7.5 s at 64 KB)
    "pipes": ("npm run build " + "|" * 65_536, "Exit code 1\nbuild broke"),
    # a person's message of a stop, 2,000 spaces and a stop (cubic: minutes)
    "lead-in": ("ls", "a.txt", "-" + " " * 1998 + "-"),
    # spaces inside a command line (quadratic: 12 s at 32 KB)
    "spaces": ("make" + " " * 64_000 + "x", "Exit code 2\nmake: *** [all] Error 1"),
    # a double quote never closed, then escaped quotes (quadratic: 3 s at 32 KB)
    "open quote": ('echo "' + '\\"' * 30_000, "Exit code 1"),
    # a person's stderr of 20 KB of blank lines (quadratic: ~10 s at 18 KB)
    "blank stderr": ("ls", "", "<bash-stderr>" + " \n" * 9_900 + "x</bash-stderr>"),
}


@contextlib.contextmanager
def finishing(what: str, seconds: int = 5) -> Iterator[None]:
    """Fails what runs inside if it has not finished within `seconds`: the alarm only stops a hang."""

    def hang(*_: object) -> None:
        raise TimeoutError(f"{what} did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_judged_in_bounded_time(case: str) -> None:
    command, output, *said = HOSTILE[case]
    after = [tool(output, is_error=output.startswith("Exit code"))]
    after += [{"role": "user", "content": text} for text in said]
    with finishing(f"judging {case!r}"):
        assert kind(call("Bash", {"command": command}), after, "claude_code")


def test_a_crafted_watch_files_request_is_read_in_bounded_time() -> None:
    # spaces, then aider's phrase over and over on one line: the pattern that found aider's --watch-files
    # request took 21 s on 20 KB, on the gateway's event loop
    crafted = " " * 985 + '"AI" comments ' * 1300
    reply = {"role": "assistant", "content": "Done."}
    with finishing("reading a crafted --watch-files request", 2):
        assert kind(reply, [{"role": "user", "content": crafted}], "aider")


def test_crafted_commands_of_other_versions_formats_are_read_in_bounded_time() -> None:
    # mini-swe-agent 2's tag opened again and again, never closed (each opening scanned to the end)
    tags = {"role": "assistant", "content": "<mswea_bash_command>ls " * 40_000}
    # a code-mode script of calls whose argument never closes
    script = {"input": "tools.shell_command({" + "x" * 20 + " tools.shell_command({" * 900}
    code = {
        "role": "assistant",
        "content": None,
        "tool_calls": [call_("c1", {"name": "exec", "arguments": json.dumps(script)})],
    }
    # a pipeline of thousands of programs, and a megabyte of lines saying one was not found
    piped = call("Bash", {"command": "true" + " | x" * 20_000})
    missing = tool("Exit code 127\n" + "bash: y: command not found\n" * 40_000, is_error=True)
    with finishing("judging crafted replies and results", 3):
        assert kind(tags, [{"role": "user", "content": "<returncode>0</returncode>"}], "mini_swe_agent")
        assert kind(code, [tool("Script failed\nExit code: 1", "c1")], "codex")
        assert kind(piped, [missing], "claude_code")


def test_a_refusal_in_a_file_the_command_only_printed_is_not_its_own() -> None:
    """A test snapshot holding clap's or argparse's refusal, printed with `cat` or `sed -n`, is the file's
    text: "never a substring of a file the agent read"."""
    snapshot = "---\nsource: tests/cli.rs\n---\nerror: unexpected argument '--colour' found\n"
    usage = "usage: tool [-h]\ntool: error: unrecognized arguments: --y\n"
    for command, text in (
        ("cat tests/snapshots/cli__bad_flag.snap", snapshot),
        ("sed -n 1,20p tests/snapshots/cli__bad_flag.snap", snapshot),
        ("cat tests/expected_usage.txt", usage),
    ):
        assert kind(call("Bash", {"command": command}), [tool(text)], "claude_code") == "ok", command
    # the printer's own refusal is still its own
    said = "Exit code 1\ncat: invalid option -- 'z'"
    assert kind(call("Bash", {"command": "cat -z notes.txt"}), [tool(said, is_error=True)], "claude_code") == (
        "task_failure"
    )


def test_many_hostile_results_are_judged_in_bounded_time() -> None:
    # Codex's header lines after its command and no output after them: ~55 ms a result at 20 KB
    # (quadratic), for each of 300 results in one request; now well under a millisecond each.
    ls = {"name": "exec_command", "arguments": '{"cmd": "ls"}'}
    calls = [{"id": f"c{i}", "type": "function", "function": ls} for i in range(300)]
    reply = {"role": "assistant", "content": None, "tool_calls": calls}
    results = [tool("Command: " + "\nChunk ID: a" * 1_600, f"c{i}") for i in range(300)]
    with finishing("judging 300 hostile results"):
        assert kind(reply, results, "codex")


def test_a_long_unpunctuated_correction_is_read_in_bounded_time() -> None:
    # its first line read as prose or not from the end (quadratic: 3 s at 20 KB, the most read)
    said = {"role": "user", "content": "no, " + "a " * 10_000}
    with finishing("a correction of 20 KB", 2):
        assert kind(call("Bash", {"command": "ls"}), [tool("a.txt"), said], "claude_code") == "user_correction"


def test_a_history_is_read_in_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """What came before the reply, as a client may send it: each earlier run asked about once, each
    message read once, each command searched once (each was asked per result, per call or per line)."""
    from lwfsm.turn.agents import base

    asked: list[int] = []
    failed = base.Reader.failed
    monkeypatch.setattr(base.Reader, "failed", lambda self, *a: asked.append(1) or failed(self, *a))
    # 1,000 results of one earlier run, and 1,000 failing results of the reply's one call (10 s: a million asks)
    before = [{"role": "user", "content": "build it"}, call("Bash", {"command": "npm run build"}, "h1")]
    before += [tool("ok", "h1")] * 1_000
    reply = call("Bash", {"command": "npm run build"})
    assert kind(reply, [tool("Exit code 1\nbuild broke", is_error=True)] * 1_000, "claude_code", before)
    assert 0 < len(asked) <= 1_000
    # a reply of 1,000 different test runs, each failing, after 1,000 that passed (each asked of every run: 14 s)
    edit = call("Edit", {"file_path": "a.py", "old_string": "x", "new_string": "y"}, "e1")
    passed = [
        *before[:1],
        edit,
        tool("ok", "e1"),
        call("Bash", {"command": "npm test"}, "h1"),
        *[tool("ok", "h1")] * 1_000,
    ]
    runs = {"role": "assistant", "content": None, "tool_calls": []}
    runs["tool_calls"] = [
        call("Bash", {"command": f"npm test -- t{i}"}, f"c{i}")["tool_calls"][0] for i in range(1_000)
    ]
    failing = [tool("Exit code 1\nFAIL t", f"c{i}", is_error=True) for i in range(1_000)]
    with finishing("1,000 different failing test runs after 1,000 that passed"):
        assert kind(runs, failing, "claude_code", passed) == "task_failure"
    # an earlier reply of 4,000 edits naming no file, answered by one message of 2 MB (read once per edit: 4 s)
    edits = {"role": "assistant", "content": None, "tool_calls": []}
    edits["tool_calls"] = [call("Edit", {}, f"e{i}")["tool_calls"][0] for i in range(4_000)]
    answer = {"role": "tool", "tool_call_id": "e0", "content": [{"type": "text", "text": "x" * 1_000_000}] * 2}
    with finishing("4,000 edits answered by 2 MB"):
        assert kind(
            reply, [tool("Exit code 1\nbuild broke", is_error=True)], "claude_code", [*before[:1], edits, answer]
        )
    # an earlier command of 24,000 lines each a linter's name (searched for --fix to its end from each: 20 s)
    lint = [*before[:1], call("Bash", {"command": "eslint\n" * 24_000}, "h1"), tool("ok", "h1")]
    with finishing("an earlier command of 24,000 eslint lines"):
        assert kind(reply, [tool("Exit code 1\nbuild broke", is_error=True)], "claude_code", lint)
    # one part of a command holding many fixers, a check flag at its end (read to the end from each: 17 s)
    for command in ("(eslint --fix " * 6_000 + " --check", "(black " * 12_000 + " --check"):
        checks = [*before[:1], call("Bash", {"command": command}, "h1"), tool("ok", "h1")]
        with finishing("an earlier command of 12,000 fixers asked to check"):
            assert kind(reply, [tool("Exit code 1\nbuild broke", is_error=True)], "claude_code", checks)


def test_claude_codes_changed_file_results_ask_once_what_came_before(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[int] = []
    last = claude_code.ClaudeCode._read_last
    monkeypatch.setattr(claude_code.ClaudeCode, "_read_last", lambda self, b: read.append(1) or last(self, b))
    changed = "File has been unexpectedly modified. Read it again before attempting to write it."
    reply = call("Edit", {"file_path": "a.py", "old_string": "x", "new_string": "y"})
    before = [{"role": "user", "content": "fix a.py"}, call("Read", {"file_path": "a.py"}, "r1"), tool("x", "r1")]
    before += [{"role": "user", "content": "go on"}] * 1_000
    assert kind(reply, [tool(changed, is_error=True)] * 1_000, "claude_code", before) == "environment"
    assert len(read) == 1  # it was asked once per result, each a scan of the 1,000 messages before


def call_(cid: str, fn: dict[str, str]) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": fn}


def test_what_is_read_after_the_reply_is_bounded() -> None:
    # 4 M characters in all (lwfsm.turn.judge.BUDGET): 16 crafted results of 2 MB took 2.6 s to judge
    make = {"name": "Bash", "arguments": '{"command": "make"}'}
    reply = {"role": "assistant", "content": None, "tool_calls": [call_("c" + str(i), make) for i in range(16)]}
    crafted = [tool("bash:" + "\n" * 2_000_000, f"c{i}") for i in range(16)]
    with finishing("judging 16 crafted results of 2 MB"):
        assert kind(reply, crafted, "claude_code") == "ok"
    failed = tool("Exit code 2\nmake: *** [all] Error 1", "c2", is_error=True)
    big = [tool("built\n" * 350_000, f"c{i}") for i in range(2)]
    assert kind(reply, [failed, *big], "claude_code") == "task_failure"
    assert kind(reply, [*big, failed], "claude_code") == "ok"  # past the budget: not read
    # the result that goes over the budget is read by its start and end: a failed run padded to 5 MB
    # after its status read as ok (a user's trial, 2026-12-06)
    padded = tool("Exit code 1\nmake: *** [all] Error 1\n" + "x" * 5_000_000, "c2", is_error=True)
    assert kind(reply, [tool("built", "c0"), padded], "claude_code") == "task_failure"


@pytest.mark.parametrize(
    "summary",
    [
        "Failed!  - Failed:     1, Passed:    10, Skipped:     0, Total:    11, Duration: 45 ms - App.Tests.dll",
        "Test Run Failed.\nTotal tests: 11\n     Passed: 10\n     Failed: 1",
        "Test summary: total: 11, failed: 1, succeeded: 10, skipped: 0, duration: 1.4s",
        "Test run summary: Failed!\n  total: 11\n  failed: 1\n  succeeded: 10\n  skipped: 0",  # testing platform
    ],
)
def test_dotnet_tests_failing_behind_a_filter_fail(summary: str) -> None:
    """`dotnet test | tail` hides the status: dotnet's own summary says the tests failed."""
    out = f"  Determining projects to restore...\n  App -> /w/bin/App.dll\n{summary}\n"
    assert kind(call("Bash", {"command": "dotnet build && dotnet test | tail -5"}), [tool(out)], "claude_code") == (
        "task_failure"
    )
    passed = "Passed!  - Failed:     0, Passed:    11, Skipped:     0, Total:    11, Duration: 40 ms - App.Tests.dll"
    assert kind(call("Bash", {"command": "dotnet test | tail -5"}), [tool(passed)], "claude_code") == "ok"


# -- formats found in public transcripts the readers had not seen (a sweep of other versions, 2026-12-06) --


def _v1_action(eid: str, command: str, call_id: str, response: str = "r1") -> dict[str, Any]:
    """An action event of OpenHands' agent SDK (OpenHands 1.0), as its evaluation output keeps it."""
    return {
        "kind": "ActionEvent",
        "id": eid,
        "source": "agent",
        "thought": [{"type": "text", "text": "Let me check."}],
        "action": {"kind": "ExecuteBashAction", "command": command, "is_input": False},
        "tool_name": "execute_bash",
        "tool_call_id": call_id,
        "tool_call": {"id": call_id, "name": "execute_bash", "arguments": json.dumps({"command": command})},
        "llm_response_id": response,
    }


def _v1_observation(call_id: str, output: str, code: int) -> dict[str, Any]:
    return {
        "kind": "ObservationEvent",
        "id": f"o-{call_id}",
        "source": "environment",
        "tool_name": "execute_bash",
        "tool_call_id": call_id,
        "observation": {
            "kind": "ExecuteBashObservation",
            "output": output,
            "exit_code": None,
            "error": False,
            "metadata": {"exit_code": code},
        },
    }


def test_openhands_agent_sdk_events_are_read_with_their_output_and_exit_status() -> None:
    """OpenHands 1.0 keeps events with a `kind`, the action and the call as objects, the output and exit
    status inside the observation: they were read as calls named after the whole action, with empty
    results, so every turn was ok. The terminal's own codes (`\\x1b[?2004l`) before a line are not output."""
    user = {"kind": "MessageEvent", "id": "u", "source": "user", "llm_message": {"role": "user", "content": "go"}}
    run = [
        {"kind": "SystemPromptEvent", "id": "s", "source": "agent", "system_prompt": {"type": "text", "text": "..."}},
        user,
        _v1_action("a1", "python -m pytest -q", "call_1"),
        _v1_observation("call_1", "\x1b[?2004lTraceback (most recent call last):\nValueError: bad\n\x1b[?2004h", 1),
        _v1_action("a2", "ls", "call_2", "r2"),
        _v1_observation("call_2", "\x1b[?2004lsetup.py\n\x1b[?2004h", 0),
    ]
    other = {
        "instance_id": "other",
        "history": [user, _v1_action("a1", "true", "call_9"), _v1_observation("call_9", "", 0)],
    }
    data = "\n".join(json.dumps(x) for x in ({"instance_id": "first", "history": run}, other)).encode()
    t = openhands.transcript(data, {"event_id": "a1"})
    assert t.messages[t.at]["tool_calls"][0]["function"] == {
        "name": "execute_bash",
        "arguments": '{"command": "python -m pytest -q"}',
    }
    assert t.messages[-1]["content"].endswith("[The command completed with exit code 1.]")
    verdict = judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands")
    assert verdict.kind == "task_failure"
    assert verdict.evidence is not None
    assert verdict.evidence.excerpt.startswith("Traceback")  # not the terminal's codes
    t = openhands.transcript(data, {"event_id": "a2"})
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands").kind == "ok"
    # an evaluation's output holds a run per line: the locator names the instance
    t = openhands.transcript(data, {"instance_id": "other", "event_id": "a1"})
    assert t.messages[t.at]["tool_calls"][0]["function"]["arguments"] == '{"command": "true"}'
    with pytest.raises(LookupError, match="no run of instance 'third'"):
        openhands.transcript(data, {"instance_id": "third", "event_id": "a1"})


def test_openhands_agent_sdk_terminal_observations_are_shown_as_the_model_saw_them() -> None:
    """Later SDKs keep the output as content parts, the exit status at the top, and the lines the model is
    shown around the output in `metadata` (`prefix`, `suffix`)."""
    seen = {
        **_v1_observation("call_1", "", 2),
        "observation": {
            "kind": "TerminalObservation",
            "content": [{"type": "text", "text": "make: *** [build] Error 2"}],
            "is_error": False,
            "exit_code": 2,
            "metadata": {"exit_code": 2, "prefix": "", "suffix": "\n[The command completed with exit code 2.]"},
        },
    }
    data = json.dumps({"history": [_v1_action("a1", "make build", "call_1"), seen]}).encode()
    t = openhands.transcript(data, {"event_id": "a1"})
    assert t.messages[-1]["content"] == "make: *** [build] Error 2\n[The command completed with exit code 2.]"
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands").kind == "task_failure"


def test_openhands_agent_sdk_calls_of_one_reply_are_one_turn() -> None:
    """The SDK keeps a reply's parallel calls as an action event each: one reply, both results its own."""
    run = [
        _v1_action("a1", "ls", "call_1"),
        _v1_action("a2", "cat setup.cfg", "call_2"),
        _v1_observation("call_1", "setup.cfg", 0),
        _v1_observation("call_2", "cat: setup.cfg: Permission denied", 1),
        {"kind": "AgentErrorEvent", "id": "e", "source": "agent", "tool_call_id": "call_3", "error": "no tool x"},
    ]
    t = openhands.transcript(json.dumps({"history": run}).encode(), {"event_id": "a2"})
    assert [c["id"] for c in t.messages[t.at]["tool_calls"]] == ["call_1", "call_2"]
    assert [m["role"] for m in t.messages[t.at + 1 :]] == ["tool", "tool", "tool"]
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands").kind == "task_failure"
    assert t.messages[-1]["is_error"] is True  # the SDK could not carry a call out: flagged


def test_a_claude_code_subagents_own_file_is_read_as_its_conversation() -> None:
    """A subagent's file (`subagents/.../agent-*.jsonl`) holds only side-chain records; they were all
    passed over (a session's side chains are a subagent's), so no reply could be found."""
    records = [
        {"type": "user", "isSidechain": True, "message": {"role": "user", "content": "find the config loader"}},
        {
            "type": "assistant",
            "isSidechain": True,
            "message": {"id": "m1", "role": "assistant", "content": "Found it."},
        },
        {"type": "user", "isSidechain": True, "message": {"role": "user", "content": "thanks"}},
    ]
    own = "\n".join(json.dumps(r) for r in records).encode()
    assert claude_code.transcript(own, {"message_id": "m1"}).at == 1
    session = [{"type": "user", "message": {"role": "user", "content": "hi"}}, *records]
    with pytest.raises(LookupError):  # in a session's file, the side chain is not the session's
        claude_code.transcript("\n".join(json.dumps(r) for r in session).encode(), {"message_id": "m1"})


_WATCH_ASK = (
    '#### Find the "AI" comments below (marked with █) in the code files I\'ve shared with you.  \n'
    "#### They contain my questions that I need you to answer and other instructions for you.  \n"
    "####   \n#### src/lib.ts:  \n#### ⋮  \n#### █// AI? what is this module missing?  \n"
)


def test_aiders_watch_files_request_sent_again_is_not_the_person_asking_again() -> None:
    """--watch-files sends the same request each time the file is saved with its "AI" comment: it was
    read as the person restating theirs."""
    reply = "It lacks a compose helper.\n\n> Tokens: 10k sent, 300 received.  \n> Processing your request...  \n\n"
    data = (_WATCH_ASK + "\n" + reply + _WATCH_ASK + "\nIt could use a zip helper.\n").encode()
    t = aider.transcript(data, {"user_block": 1})
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages).kind == "ok"
    # a person's own request again, after the same answer, is still asked again
    plain = data.replace(_WATCH_ASK.encode(), b"#### /ask what is the lib module missing?  \n")
    t = aider.transcript(plain, {"user_block": 1})
    verdict = judge(t.messages[t.at], t.messages[t.at + 1 :], agent="aider", messages=t.messages)
    assert verdict.kind == "user_correction"
    assert verdict.evidence is not None
    assert verdict.evidence.rule == "aider.asked_again"


def test_a_codex_session_saved_as_one_json_document_is_read_as_its_items() -> None:
    """The first Codex CLI saved a session as one document, `{"session": ..., "items": [...]}`, pretty
    printed: it was read as JSON lines and failed on the first. Item N is line N."""
    out = json.dumps({"output": "1 failed", "metadata": {"exit_code": 1, "duration_seconds": 0.4}})
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the test"}]},
        {"type": "function_call", "name": "shell", "call_id": "c1", "arguments": '{"command": ["pytest", "-q"]}'},
        {"type": "function_call_output", "call_id": "c1", "output": out},
    ]
    doc = json.dumps({"session": {"timestamp": "2025-05-01", "id": "s", "instructions": ""}, "items": items}, indent=2)
    t = codex.transcript(doc.encode(), {"line": 2})
    assert t.messages[t.at]["tool_calls"][0]["id"] == "c1"
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="codex").kind == "task_failure"
    # (a fork's sessions keep chat-shaped items: read as the messages they are)
    chat = [
        {"role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Here they are."}]},
    ]
    t = codex.transcript(json.dumps({"session": {}, "items": chat}, indent=2).encode(), {"line": 2})
    assert (t.messages[t.at]["role"], t.messages[t.at]["content"]) == ("assistant", "Here they are.")


@pytest.mark.parametrize(
    "said",
    [
        "error: Found argument '--ask-for-approval|--sandbox' which wasn't expected, or isn't valid in this context",
        "error: unexpected argument '--sandbox' found",
    ],
)
def test_a_rust_cli_refusing_its_arguments_fails_the_search(said: str) -> None:
    """clap's words (ripgrep, fd): the search never ran, whatever a probe's status means."""
    args = {"command": 'rg -n "--ask-for-approval|--sandbox" src'}
    assert kind(call("Bash", args), [tool(f"Exit code 2\n{said}", is_error=True)], "claude_code") == "task_failure"


# -- a second sweep of other versions' formats (2026-12-06) --


def test_codex_code_mode_results_are_read_as_their_text_with_the_commands_the_script_ran() -> None:
    """Codex's code mode (`exec` runs the model's script, which runs shell commands through
    `tools.shell_command`) answers with content items: they were read as their JSON, so the status line
    and the output's errors were never seen; the commands are the script's."""
    script = 'const r = await tools.shell_command({"command": "npm run build", "timeout_ms": 10000}); text(r);'
    probe = 'const r = await tools.shell_command({"command": "rg -n TODO src"}); text(r);'
    items = []
    for n, (source, said) in enumerate(((script, "src/app.ts(3,1): error TS2304"), (probe, ""))):
        out = [
            {"type": "input_text", "text": "Script failed\nWall time 0.4 seconds\nOutput:\n"},
            {"type": "input_text", "text": f"Script error:\nExit code: 1\nWall time: 0.4 seconds\nOutput:\n{said}"},
        ]
        items += [
            {"type": "custom_tool_call", "call_id": f"c{n}", "name": "exec", "input": source},
            {"type": "custom_tool_call_output", "call_id": f"c{n}", "output": out},
        ]
    rollout = "\n".join(json.dumps({"type": "response_item", "payload": p}) for p in items).encode()
    t = codex.transcript(rollout, {"line": 1})
    assert "\nScript error:\nExit code: 1\n" in t.messages[t.at + 1]["content"]
    assert codex.READER.command_of(json.loads(t.messages[t.at]["tool_calls"][0]["function"]["arguments"])) == (
        "npm run build"
    )
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="codex").kind == "task_failure"
    t = codex.transcript(rollout, {"line": 3})  # a search that found nothing answered "no"
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="codex").kind == "ok"


def _mini2(*messages: dict[str, Any]) -> bytes:
    return json.dumps(
        {"info": {"mini_version": "2.0.0"}, "messages": [{"role": "user", "content": "fix it"}, *messages]}
    ).encode()


def test_mini_swe_agent_2_commands_and_observations_are_read() -> None:
    """mini-swe-agent 2 fences its command as ```mswea_bash_command (or tags it), and its tool-calling
    template writes the observation as JSON: the command and the status were both missed."""
    grep = "grep -rn nothing_here src/"
    for written in (f"```mswea_bash_command\n{grep}\n```", f"<mswea_bash_command>{grep}</mswea_bash_command>"):
        reply = {"role": "assistant", "content": f"THOUGHT: look.\n\n{written}"}
        data = _mini2(reply, {"role": "user", "content": "<returncode>1</returncode>\n<output>\n</output>"})
        t = swe_agent.transcript_mini(data, {"message_index": 1})
        assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="mini_swe_agent").kind == "ok"  # a probe's no
    build = {"name": "bash", "arguments": json.dumps({"command": "make -C build"})}
    call_ = {
        "role": "assistant",
        "content": "Build.",
        "tool_calls": [{"id": "c1", "type": "function", "function": build}],
    }
    for observation in (
        {"returncode": 2, "output": "make: *** [all] Error 1\n"},
        {"returncode": 2, "output_head": "cc -c a.c\n", "output_tail": "make: *** [all] Error 1\n", "elided_chars": 9},
    ):
        seen = {"role": "tool", "tool_call_id": "c1", "content": json.dumps(observation, indent=2)}
        t = swe_agent.transcript_mini(_mini2(call_, seen), {"message_index": 1})
        assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="mini_swe_agent").kind == "task_failure"


def test_mini_swe_agent_2_with_a_responses_model_is_read_as_its_calls() -> None:
    """With a Responses API model, mini-swe-agent 2 keeps the model's whole response and the
    `function_call_output` items: no message had the role of a reply, so no turn could be found."""
    response = {
        "object": "response",
        "output": [
            {"type": "reasoning", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "bash", "arguments": '{"command": "make"}'},
        ],
    }
    output = {"type": "function_call_output", "call_id": "c1", "output": '{"returncode": 2, "output": "Error 1"}'}
    t = swe_agent.transcript_mini(_mini2(response, output), {"message_index": 1})
    assert t.messages[t.at]["tool_calls"][0]["function"]["arguments"] == '{"command": "make"}'
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="mini_swe_agent").kind == "task_failure"


def test_a_claude_code_persons_message_with_a_screenshot_is_theirs() -> None:
    """Claude Code puts `[Image #N]` before the words of a person who attached a screenshot; a message
    starting with `[` was taken for the harness's, so their correction was never read."""
    reply = {"role": "assistant", "content": "The totals are fixed."}
    said = "[Image #7] the totals are still wrong, see the screenshot"
    assert kind(reply, [{"role": "user", "content": said}], "claude_code") == "user_correction"
    pasted = "[Pasted text #1 +25 lines] still failing with this"
    assert kind(reply, [{"role": "user", "content": pasted}], "claude_code") == "user_correction"
    assert kind(reply, [{"role": "user", "content": "[Image #2] now add a footer"}], "claude_code") == "ok"


def test_swe_agent_demonstrations_in_the_history_are_no_step() -> None:
    """`put_demos_in_history` keeps whole demonstrations (replies too) marked `is_demo`: step 0 landed on
    a demonstration's reply. SWE-agent 1.x names a result's call in `tool_call_ids`."""
    run = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "demo task", "is_demo": True},
        {"role": "assistant", "content": "demo reply", "is_demo": True},
        {"role": "user", "content": "fix the bug"},
    ]
    make = {"name": "bash", "arguments": '{"command": "make"}'}
    run += [
        {"role": "assistant", "content": "Build.", "tool_calls": [{"id": "c1", "type": "function", "function": make}]},
        {"role": "tool", "tool_call_ids": ["c1"], "content": "make: *** [all] Error 2"},
    ]
    t = swe_agent.transcript(json.dumps({"history": run}).encode(), {"step": 0})
    assert t.messages[t.at]["content"] == "Build."
    assert t.messages[t.at + 1]["tool_call_id"] == "c1"


def test_openhands_agent_sdk_locators_rejections_and_split_calls() -> None:
    """The turn is the model's (an action or its message), never another event; an error the SDK answered
    one call with between a reply's actions leaves them one reply; a refused call is a rejection; a run
    saved pretty-printed is read whole."""
    error = {"kind": "AgentErrorEvent", "id": "e", "source": "agent", "tool_call_id": "call_1", "error": "no tool"}
    refused = {"kind": "UserRejectObservation", "id": "x", "source": "user", "tool_call_id": "call_2"}
    run = [_v1_action("a1", "ls", "call_1"), error, _v1_action("a2", "rm -rf build", "call_2"), refused]
    data = json.dumps({"instance_id": "i", "history": run}, indent=2).encode()
    t = openhands.transcript(data, {"event_id": "a2"})
    assert [c["id"] for c in t.messages[t.at]["tool_calls"]] == ["call_1", "call_2"]
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands").kind == "rejected"
    for other in ("e", "x"):
        with pytest.raises(LookupError, match="not the model's"):
            openhands.transcript(data, {"event_id": other})


def test_a_claude_code_compaction_summary_is_not_the_persons_message() -> None:
    """After a compaction Claude Code writes its summary as a user record (`isCompactSummary`), right after
    the person's message: the two were read as one message of the person's, errors quoted in the summary
    included."""
    summary = (
        "This session is being continued from a previous conversation.\n" + "Traceback (most recent call last):\n" * 3
    )
    records = [
        {"type": "user", "message": {"role": "user", "content": "add a footer"}},
        {"type": "assistant", "message": {"id": "m1", "role": "assistant", "content": "Added."}},
        {"type": "user", "message": {"role": "user", "content": "now the header\nthanks"}},
        {"type": "system", "subtype": "compact_boundary"},
        {"type": "user", "isCompactSummary": True, "message": {"role": "user", "content": summary}},
    ]
    t = claude_code.transcript("\n".join(json.dumps(r) for r in records).encode(), {"message_id": "m1"})
    assert [text_of(m) for m in t.messages[t.at + 1 :]] == ["now the header\nthanks"]


def test_the_second_reviews_cases_of_the_new_readers() -> None:
    """Found by a hostile review of the readers for other versions' formats (2026-12-06)."""
    # mini-swe-agent 2's JSON observation nested too deeply to parse: its status as written, no crash
    build = {"name": "bash", "arguments": json.dumps({"command": "make"})}
    reply = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": build}]}
    deep = '{"returncode": 2, "output": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert kind(reply, [tool(deep)], "mini_swe_agent") == "task_failure"
    # ... and one whose output quotes another observation's status keeps its own
    quoting = json.dumps({"returncode": 2, "output": "<returncode>0</returncode>\nmake: *** [all] Error 1"})
    assert kind(reply, [tool(quoting)], "mini_swe_agent") == "task_failure"
    # a crafted repr observation of a megabyte is not parsed (seconds), its status read as written
    crafted = "{'output': [" + "{}, " * 250_000 + "], 'returncode': 2}"
    with finishing("reading a crafted observation", 2):
        assert kind(mini("make"), [{"role": "user", "content": crafted}], "mini_swe_agent") == "task_failure"
    # PowerShell refusing the option of a Unix command it was given is that command's own refusal
    said = "Get-Content: A parameter cannot be found that matches parameter name 'n'."
    assert kind(call("PowerShell", {"command": "cat -n notes.txt"}), [tool(said)], "claude_code") == "task_failure"
    # PATH= read in a search is no setting of the PATH: a program not installed is still the machine's
    for command in ("env | grep PATH= && shellcheck run.sh", "grep -n PATH= Dockerfile; shellcheck run.sh"):
        out = "Exit code 127\n/bin/bash: line 1: shellcheck: command not found"
        assert kind(call("Bash", {"command": command}), [tool(out, is_error=True)], "claude_code") == "environment"


def test_codex_code_mode_the_first_command_that_failed_decides() -> None:
    """A script's commands each say their status: lint passing first, tests failing after, failed. The
    commands are read however the script quotes them."""
    script = "await tools.shell_command({command: 'npm run lint'}); await tools.shell_command({cmd: `npm test`});"
    out = (
        "Script failed\nOutput:\n\nExit code: 0\nWall time: 1 seconds\nOutput:\nlint ok\n"
        "Script error:\nExit code: 1\nWall time: 2 seconds\nOutput:\nFAIL src/a.test.ts\n"
    )
    fn = {"name": "exec", "arguments": json.dumps({"input": script})}
    reply = {"role": "assistant", "content": None, "tool_calls": [call_("c1", fn)]}
    assert codex.READER.command_of({"input": script}) == "npm run lint\nnpm test"
    assert kind(reply, [tool(out, "c1")], "codex") == "task_failure"


def test_openhands_agent_sdk_actions_without_a_reply_id_are_replies_of_their_own() -> None:
    first, second = _v1_action("a1", "make", "call_1", ""), _v1_action("a2", "ls", "call_2", "")
    run = [first, _v1_observation("call_1", "make: *** [all] Error 2", 2), second, _v1_observation("call_2", "x", 0)]
    t = openhands.transcript(json.dumps({"history": run}).encode(), {"event_id": "a2"})
    assert [c["id"] for c in t.messages[t.at]["tool_calls"]] == ["call_2"]
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands").kind == "ok"


def test_aiders_watch_files_request_after_blank_lines_is_aiders() -> None:
    assert aider.READER.own_words("\n\n" + _WATCH_ASK.replace("#### ", "")).lstrip().startswith("src/lib.ts:")


def test_openhands_2024_runs_of_action_observation_pairs_are_read() -> None:
    """Runs of 2024 keep the history as [action, observation] pairs without ids, the exit status beside
    the command: every turn was refused ("an event is list"), and the status was never read."""
    history = [
        [
            {"action": "run", "args": {"command": "python -m pytest -q"}, "message": "Running command"},
            {"observation": "run", "content": "2 failed", "extras": {"command_id": -1, "exit_code": 1}},
        ],
        [{"action": "finish", "args": {}}, {"observation": "null", "content": "", "extras": {}}],
    ]
    data = json.dumps({"instance_id": "x", "history": history}).encode()
    t = openhands.transcript(data, {"index": 0})
    assert t.messages[t.at + 1]["content"].endswith("[The command completed with exit code 1.]")
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="openhands").kind == "task_failure"
    t = openhands.transcript(data, {"index": 1})
    assert t.messages[t.at + 1 :] == []


def test_a_multi_agent_swe_agent_history_is_each_agents_own_conversation() -> None:
    """CodeR keeps its manager's, reproducer's and programmer's conversations in one history, each entry
    naming its agent: at a hand-over, the next agent's prompt (with the issue's traceback) was read as
    what answered the reply."""
    ls = {"name": "bash", "arguments": '{"command": "ls"}'}
    history = [
        {"role": "system", "content": "You are the reproducer.", "agent": "Reproducer"},
        {"role": "user", "content": "Reproduce the issue.", "agent": "Reproducer"},
        {
            "role": "assistant",
            "content": "Done.",
            "tool_calls": [{"id": "c1", "type": "function", "function": ls}],
            "agent": "Reproducer",
        },
        {"role": "tool", "tool_call_id": "c1", "content": "repro.py", "agent": "Reproducer"},
        {"role": "system", "content": "You are the programmer.", "agent": "Programmer"},
        {
            "role": "user",
            "content": "Fix it.\nTraceback (most recent call last):\nValueError: bad",
            "agent": "Programmer",
        },
        {"role": "assistant", "content": "Fixed.", "agent": "Programmer"},
    ]
    t = swe_agent.transcript(json.dumps({"history": history}).encode(), {"step": 0})
    assert [m["content"] for m in t.messages[t.at + 1 :]] == ["repro.py"]
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="swe_agent").kind == "ok"
    t = swe_agent.transcript(json.dumps({"history": history}).encode(), {"step": 1})
    assert t.messages[0]["content"] == "You are the programmer."


def test_a_codex_local_shell_call_is_read_as_the_command_it_ran() -> None:
    """The Responses API's own shell tool (`local_shell_call`, its command in `action`) had no reading: a
    locator on it was refused and its output was left without a call."""
    action = {"type": "exec", "command": ["bash", "-lc", "cargo test"], "timeout_ms": 10000}
    out = json.dumps({"output": "test result: FAILED. 1 passed; 1 failed", "metadata": {"exit_code": 101}})
    items = [
        {"type": "local_shell_call", "call_id": "s1", "status": "completed", "action": action},
        {"type": "function_call_output", "call_id": "s1", "output": out},
    ]
    rollout = "\n".join(json.dumps({"type": "response_item", "payload": p}) for p in items).encode()
    t = codex.transcript(rollout, {"line": 1})
    assert (
        codex.READER.command_of(json.loads(t.messages[t.at]["tool_calls"][0]["function"]["arguments"])) == "cargo test"
    )
    assert judge(t.messages[t.at], t.messages[t.at + 1 :], agent="codex").kind == "task_failure"


def test_a_text_agents_action_is_the_block_its_harness_runs() -> None:
    """A Python snippet's closing fence read as the opening of a bare block made the prose after it a
    "command" (a mini-swe-agent change went unseen: its next run was taken for the red phase)."""
    snippet = "THOUGHT: the call should read\n\n```python\nself.data.cols = cols\n```\n\nSo I add it.\n\n"
    reply = {"role": "assistant", "content": snippet + "```bash\nsed -i '3a x = 1' src/app.py\n```"}
    assert swe_agent.MINI.calls(reply) == {"0": ("bash", {"command": "sed -i '3a x = 1' src/app.py"})}
    # mini-swe-agent runs its one shell block (two are a format error: none ran); SWE-agent its last block
    two = {"role": "assistant", "content": "```bash\nls\n```\nthen\n```bash\npwd\n```"}
    assert (
        kind(
            two,
            [
                {
                    "role": "user",
                    "content": "Please always provide EXACTLY ONE action in triple backticks, found 2 actions.",
                }
            ],
            "mini_swe_agent",
        )
        == "task_failure"
    )
    prompt = {"role": "system", "content": "You are an autonomous programmer."}
    shown = {
        "role": "assistant",
        "content": "It reads\n```\nx = parse(s)\n```\nso I run\n```\npython reproduce.py\n```",
    }
    assert [o.command for o in swe_agent.READER.outcomes(shown, [{"role": "user", "content": "ok"}])] == [
        "python reproduce.py"
    ]
    assert (
        kind(
            shown,
            [{"role": "user", "content": "Traceback (most recent call last):\nValueError: x"}],
            "swe_agent",
            [prompt],
        )
        == "ok"
    )


def test_codex_interrupting_the_process_it_started_is_no_failure() -> None:
    stop = call("write_stdin", {"session_id": 7, "chars": "\u0003", "yield_time_ms": 1000})
    assert kind(stop, [codex_exec("^C", 1)], "codex") == "ok"
    typed = call("write_stdin", {"session_id": 7, "chars": "yes\n", "yield_time_ms": 1000})
    assert kind(typed, [codex_exec("Error: migration 3 failed", 1)], "codex") == "task_failure"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # git's history asked of a repository with no commit yet: "none" is the answer
        (
            "git status --short && git log --oneline -5",
            "?? server.js\nfatal: your current branch 'main' does not have any commits yet\n",
            "ok",
        ),
        (
            "git log --oneline -3 && npm test",
            "fatal: your current branch 'main' does not have any commits yet\n"
            "FAIL src/app.test.js\nTests: 1 failed, 3 passed\n",
            "task_failure",
        ),
        # BuildKit's failure as docker compose prints it, the status hidden by a filter
        (
            "docker compose build --no-cache web 2>&1 | tail -5",
            " > [web 4/6] RUN npm install:\n--------------------\n"
            'failed to solve: process "/bin/sh -c npm install" did not complete successfully: exit code: 1',
            "task_failure",
        ),
        (
            "docker compose build web 2>&1 | tail -3",
            " => exporting to image\n => => naming to docker.io/library/web\n",
            "ok",
        ),
    ],
)
def test_codex_runs_read_by_their_words(command: str, output: str, expected: str) -> None:
    status = 0 if "tail" in command else 128
    assert kind(call("exec_command", {"cmd": command}), [codex_exec(output, status)], "codex") == expected


def test_the_agent_sdks_browser_missing_an_element_fails() -> None:
    clicked = call("browser_click", {"index": 1260})
    assert kind(clicked, [tool("Element with index 1260 not found")], "openhands") == "task_failure"
    assert kind(clicked, [tool("Clicked element with index 1260")], "openhands") == "ok"


def test_a_red_phase_said_in_chinese_and_an_es_module_not_written_yet() -> None:
    edit = call(
        "apply_patch", {"input": "*** Begin Patch\n*** Update File: test/smoke.test.js\n@@\n+test\n*** End Patch"}, "e1"
    )
    before = [
        {"role": "user", "content": "加一个测试"},
        edit,
        tool('{"output":"Success.","metadata":{"exit_code":0}}', "e1"),
    ]
    out = "SyntaxError: The requested module '../server.js' does not provide an export named 'loadEnv'\n✖ 1 failing\n"
    for said, expected in (
        ("我先加了测试，现在跑一次红灯确认。", "ok"),
        ("先运行测试确认红灯，再实现 loadEnv。", "ok"),  # (then: not "again")
        ("测试仍未实现的模块，预期红灯。", "ok"),
        ("实现完成，跑测试确认绿灯。", "task_failure"),
    ):
        run = {**call("exec_command", {"cmd": "npm test"}), "content": said}
        assert kind(run, [codex_exec(out, 1)], "codex", before) == expected


def test_text_agents_actions_found_by_a_review() -> None:
    # SWE-agent's function-call format: a code snippet fenced in the thought is not the call
    xml = "```python\ndef parse(s): ...\n```\nI'll fix it.\n<function=str_replace_editor>\n"
    xml += "<parameter=command>str_replace</parameter>\n<parameter=path>/testbed/src/parse.py</parameter>\n</function>"
    reply = {"role": "assistant", "content": xml}
    assert swe_agent.READER.calls(reply) == {"0": ("str_replace", {"path": "/testbed/src/parse.py"})}
    # shell fences opened over and over, never closed: each opening scanned the rest (71 s at 400 KB)
    crafted = {"role": "assistant", "content": "```bash\n x" * 40_000}
    with finishing("reading a reply of unclosed shell fences", 2):
        assert swe_agent.MINI.calls(crafted) == {}
        assert kind(crafted, [returned("x", 0)], "mini_swe_agent")


@pytest.mark.parametrize(
    "command",
    [
        "git log --oneline -3; npx eslint src",
        "git add -A && git commit -qm init && git log --oneline -1 && make",
        "git add -A; git commit -qm init; git log --oneline -1",  # the commit's hook failed it: no commit
    ],
)
def test_git_history_of_a_repository_without_commits_hides_no_later_failure(command: str) -> None:
    out = "fatal: your current branch 'main' does not have any commits yet\nsrc/a.js\n  3:1  error  no-undef\n"
    assert kind(call("exec_command", {"cmd": command}), [codex_exec(out, 1)], "codex") == "task_failure"


@pytest.mark.parametrize(
    "command",
    ["git log --oneline -3 && ls", "(git log --oneline -3)", "git status -s && git log -3 && cat package.json"],
)
def test_git_history_asked_of_a_repository_without_commits_stops_its_chain_with_the_answer(command: str) -> None:
    out = "?? package.json\nfatal: your current branch 'main' does not have any commits yet\n"
    assert kind(call("exec_command", {"cmd": command}), [codex_exec(out, 128)], "codex") == "ok"


@pytest.mark.parametrize(
    "said", ["已修复 loadEnv，再跑一次测试，看看是否还是红灯。", "修复后跑测试，确认不再是红灯。", "CI 一直红灯"]
)
def test_red_said_of_a_fix_that_may_still_fail_is_no_red_phase(said: str) -> None:
    patch = call("apply_patch", {"input": "*** Begin Patch\n*** Update File: src/env.js\n@@\n+x\n*** End Patch"}, "e1")
    before = [
        {"role": "user", "content": "修复"},
        patch,
        tool('{"output":"Success.","metadata":{"exit_code":0}}', "e1"),
    ]
    run = {**call("exec_command", {"cmd": "npm test"}), "content": said}
    out = "not ok 1 - loads env\n  AssertionError: expected 'x' to equal 'y'\n# fail 1\n"
    assert kind(run, [codex_exec(out, 1)], "codex", before) == "task_failure"


def test_mini_swe_agent_runs_only_a_block_fenced_as_its_shells() -> None:
    # an `sh` snippet in the thought is prose to its parser (`bash`, or `mswea_bash_command` in 2.x)
    reply = {"role": "assistant", "content": "It ran\n```sh\nmake all\n```\nso:\n```bash\npython reproduce.py\n```"}
    assert swe_agent.MINI.calls(reply) == {"0": ("bash", {"command": "python reproduce.py"})}


def test_an_aider_command_answered_by_aider_itself_has_nothing_to_correct() -> None:
    # `/ex` and the like: no model call, the reply empty; the error the person pastes next is not about it
    pasted = "    def test_subtree(self):\n        raw = git.Repo()\nE   ValueError: '/tmp/x' is not in the subpath\n"
    after = [{"role": "user", "content": "[aider]"}, {"role": "user", "content": pasted}]
    command = [{"role": "user", "content": "/ex"}]
    assert kind({"role": "assistant", "content": ""}, after, "aider", command) == "ok"
    done = {"role": "assistant", "content": "Done: the test now uses a temp repo."}
    assert kind(done, after, "aider", [{"role": "user", "content": "use a temp repo"}]) == "user_correction"
    # a request to the model answered with nothing: the person saying it did not work is a correction
    said = [{"role": "user", "content": "[aider]"}, {"role": "user", "content": "that didn't work, try again"}]
    empty = {"role": "assistant", "content": ""}
    assert kind(empty, said, "aider", [{"role": "user", "content": "fix the test"}]) == "user_correction"


def test_openhands_newer_frames_around_an_empty_output_are_no_output() -> None:
    run = call("execute_bash", {"command": "python reproduce.py"}, "r1")
    framed = "\n[Current working directory: /w]\n[Python interpreter: /x/python]\n[Command finished with exit code 0]"
    edit = call("str_replace_editor", {"command": "str_replace", "path": "/w/src/app.py"}, "e1")
    before = [{"role": "user", "content": "fix it"}, run, tool(framed, "r1"), edit, tool("edited", "e1")]
    assert kind(call("execute_bash", {"command": "python reproduce.py"}), [tool(framed)], "openhands", before) == "ok"


def test_a_mini_swe_agent_reply_quoting_a_function_call_runs_its_shell_block() -> None:
    quoted = (
        "The old format was <function=bash><parameter=command>ls</parameter></function>.\n\n```bash\npytest -q\n```"
    )
    assert swe_agent.MINI.calls({"role": "assistant", "content": quoted}) == {"0": ("bash", {"command": "pytest -q"})}


@pytest.mark.parametrize(
    ("command", "listing"),
    [
        ("git status -s && git log -3", "?? src/errors.ts\n?? src/failover.py\n"),  # names are no error words
        ("git log --oneline -3;", ""),  # nothing after the separator
        ("GIT_PAGER=cat git log -3", ""),
        ("sudo git log -3", ""),
    ],
)
def test_git_history_of_a_repository_without_commits_as_a_third_review_wrote_it(command: str, listing: str) -> None:
    out = listing + "fatal: your current branch 'main' does not have any commits yet\n"
    assert kind(call("exec_command", {"cmd": command}), [codex_exec(out, 128)], "codex") == "ok"


def test_a_line_of_many_git_commands_is_read_in_bounded_time() -> None:
    crafted = "git a;" * 100_000 + "git log"  # a copy of the rest for each segment took 6 s, 4 min at 4 MB
    out = "fatal: your current branch 'main' does not have any commits yet\n"
    with finishing("reading 100,000 git commands", 3):
        assert kind(call("exec_command", {"cmd": crafted}), [codex_exec(out, 128)], "codex")


@pytest.mark.parametrize("request_", ["/ask why is the parser slow", "/code fix the parser", "/src/parse.py crashes"])
def test_an_empty_reply_to_a_request_of_the_model_can_be_corrected(request_: str) -> None:
    said = [{"role": "user", "content": "[aider]"}, {"role": "user", "content": "that didn't work, try again"}]
    empty = {"role": "assistant", "content": ""}
    assert kind(empty, said, "aider", [{"role": "user", "content": request_}]) == "user_correction"


NEXT_ASKS = (
    "\x1b[?25l\x1b[2K\x1b[1G\x1b[36m?\x1b[39m \x1b[1mWould you like to use \x1b[34mReact Compiler\x1b[39m?"
    "\x1b[22m \x1b[90m»\x1b[39m No \x1b[90m/\x1b[39m \x1b[36m\x1b[4mYes\x1b[39m\x1b[24m"
)  # create-next-app's question, with its colours and cursor moves as it sends them
NEXT_ANSWERED = "\x1b[2K\x1b[1G\x1b[32m√\x1b[39m Would you like to use React Compiler? ... No"  # as it redraws it
VITE_CANCELLED = "> npx\n> create-vite .\n\n\x1b[90m└\x1b[39m  \x1b[31mOperation cancelled\x1b[39m"


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # a prompt library's question, unanswered: the run stopped there and made nothing
        (
            "npx create-next-app@latest web 2>&1 <<EOF\nEOF",
            "npm warn exec: create-next-app\n" + NEXT_ASKS,
            "task_failure",
        ),
        # one answered (redrawn with its answer), the next not
        (
            "echo N | npx create-next-app web",
            f"{NEXT_ASKS}{NEXT_ANSWERED}\n{NEXT_ASKS.replace('React', 'AGENTS')}",
            "task_failure",
        ),
        # clack's own word that its input closed
        ("npm create vite@latest . -- --template react-ts", VITE_CANCELLED, "task_failure"),
        # answered on the same line; the run went on; a question of a script's that a pipe may have answered
        ("npx create-next-app@latest web", NEXT_ASKS + NEXT_ANSWERED, "ok"),
        ("npx create-next-app@latest web --yes", "? Use Turbopack? » Yes\nCreating a new Next.js app.\nSuccess!", "ok"),
        ("echo y | python3 reset_db.py", "Drop all tables? [y/N] ", "ok"),
        ("./deploy.sh --help", "Usage: deploy.sh [options]\n  --force    skip the confirmation (y/N)", "ok"),
        # not a prompt library's: a script's own word, a breadcrumb
        ("./sync.sh", "Syncing...\nOperation cancelled.", "ok"),
        ("node crumbs.js", "? Home › Docs › API", "ok"),
        # reading it, not running it: a log, a terminal's screen an agent answers through
        ("tail -3 setup.log", "Creating app\n" + NEXT_ASKS, "ok"),
        ("tmux capture-pane -p -t app", "Need to install\n" + NEXT_ASKS, "ok"),
    ],
    ids=[
        "prompts",
        "the next question",
        "clack cancelled",
        "answered",
        "went on",
        "a pipe may answer",
        "help",
        "a script's words",
        "a breadcrumb",
        "a log",
        "a screen",
    ],
)
def test_a_command_whose_output_ends_at_a_question_nobody_answered_did_nothing_more(
    command: str, output: str, expected: str
) -> None:
    assert kind(call("Bash", {"command": command}), [tool(output)], "claude_code") == expected


def test_a_prompt_in_codex_s_output_is_read_and_a_session_still_running_waits_on_the_model() -> None:
    done = "Chunk ID: 5a1f00\nWall time: 3.0 seconds\nProcess exited with code 0\nOriginal token count: 9\nOutput:\n"
    running = done.replace("Process exited with code 0", "Process running with session ID 4242")
    asks = call("exec_command", {"cmd": "npx create-next-app@latest web"})
    assert kind(asks, [tool(done + NEXT_ASKS)], "codex") == "task_failure"  # its colours read as Claude Code's
    assert kind(asks, [tool(running + NEXT_ASKS)], "codex") == "ok"  # the model answers it with write_stdin


def test_a_reproduction_that_shows_the_reported_prompt_is_the_red_phase() -> None:
    said = "`mycli init --yes` still asks `? Overwrite config.yaml? » No / Yes` - fix it"
    run = call("Bash", {"command": "python reproduce.py"})
    out = "Running mycli init --yes\n? Overwrite config.yaml? » No / Yes"
    assert kind(run, [tool(out)], "claude_code", [{"role": "user", "content": said}]) == "ok"


def test_a_timeout_in_a_string_of_the_output_is_the_programs_text_not_the_commands_end() -> None:
    source = 'import x\n\nasync function run() {\n  throw new Error("nilCC timed out after 3 minutes");\n}\n'
    assert kind(call("Bash", {"command": "sed -n '1,80p' route.ts"}), [tool(source)], "claude_code") == "ok"
    ended = "Command timed out after 2m 0.0s\nnpm test"
    assert kind(call("Bash", {"command": "npm test"}), [tool(ended, is_error=True)], "claude_code") == "task_failure"
    said = "command timed out after 10006 milliseconds\n"
    assert kind(call("exec_command", {"cmd": "grep -rn x /"}), [tool(said)], "codex") == "task_failure"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("curl -s http://localhost:3000 | head -5", "ok"),  # is a server up there? no
        ("curl -sI http://127.0.0.1:8080/health", "ok"),
        ("npm run start & sleep 5 && curl -s http://localhost:3000", "task_failure"),  # the one it started is not
        ("curl -s http://localhost:3000 && echo up", "ok"),
    ],
)
def test_curl_finding_nothing_listening_answers_a_look_at_whether_a_server_is_up(command: str, expected: str) -> None:
    refused = "Chunk ID: 1\nWall time: 0.1 seconds\nProcess exited with code 7\nOriginal token count: 0\nOutput:\n"
    assert kind(call("exec_command", {"cmd": command}), [tool(refused)], "codex") == expected


# -- Codex polls and code-mode patches (2026-12-07) --


def _running(cid: str, ident: str) -> dict[str, Any]:
    """Codex's answer to a command still running when its call returned."""
    return tool(f"Chunk ID: a1\nWall time: 1.0 seconds\nProcess running with session ID {ident}\nOutput:\n", cid)


def test_codex_a_poll_is_judged_as_the_command_it_polls() -> None:
    """`write_stdin` (or code mode's `wait`) reads what a command started earlier printed: its status is
    that command's. A read of a missing file polled to its end was judged a failed command."""
    ask = {"role": "user", "content": "fix the register page"}
    for command, output, expected in (
        ("sed -n '1,80p' app/register/page.tsx", "sed: app/register/page.tsx: No such file or directory", "ok"),
        ("npm run build", "src/app.ts(3,1): error TS2304: Cannot find name 'x'.", "task_failure"),
    ):
        before = [ask, call("exec_command", {"cmd": command}, "s1"), _running("s1", "4242")]
        poll = call("write_stdin", {"session_id": 4242, "chars": ""}, "p1")
        ended = tool(f"Chunk ID: b2\nWall time: 0.0 seconds\nProcess exited with code 1\nOutput:\n{output}\n", "p1")
        assert kind(poll, [ended], "codex", before) == expected, command
    # an id is reused once its process ended: the latest start is the one polled
    first = [ask, call("exec_command", {"cmd": "npm run build"}, "s0"), _running("s0", "4242")]
    later = [call("exec_command", {"cmd": "sed -n '1,80p' app/register/page.tsx"}, "s1"), _running("s1", "4242")]
    missing = "sed: app/register/page.tsx: No such file or directory"
    ended = tool(f"Chunk ID: b2\nWall time: 0.0 seconds\nProcess exited with code 1\nOutput:\n{missing}\n", "p1")
    assert kind(poll, [ended], "codex", [*first, *later]) == "ok"
    # the poll's own failure is the poll's, whatever it polled
    before = [ask, call("exec_command", {"cmd": "createdb app || echo exists"}, "s1"), _running("s1", "7")]
    stop = call("write_stdin", {"session_id": 7, "chars": "\u0003"}, "p1")
    assert kind(stop, [tool("write_stdin failed: stdin is closed for this session", "p1")], "codex", before) == (
        "task_failure"
    )
    # code mode: `wait` on the script's cell; a look at a folder that is not a repository yet
    script = (
        'const r = await tools.exec_command({"cmd": "find . -maxdepth 2 -type f; git status --short"}); text(r.output);'
    )
    started = tool("Script running with cell ID 15\nWall time 10.0 seconds\nOutput:\n", "s1")
    before = [ask, call("exec", {"input": script}, "s1"), started]
    done = "Script completed\nWall time 0.0 seconds\nOutput:\n\nfatal: not a git repository (or any parent)\n"
    assert kind(call("wait", {"cell_id": "15"}, "p1"), [tool(done, "p1")], "codex", before) == "ok"


def test_codex_code_mode_patch_is_an_edit() -> None:
    """A code-mode script that applies a patch changes the code as `apply_patch` does: tests failing after
    it are the change's, not the red phase of code nobody touched."""
    patch = '"*** Begin Patch\\n*** Update File: src/lib.rs\\n@@\\n-fn a() {}\\n+fn a() -> u8 { 1 }\\n*** End Patch"'
    edit = call("exec", {"input": f"const patch = {patch};\ntext(await tools.apply_patch(patch));"}, "e1")
    before = [{"role": "user", "content": "make a return 1"}, edit, tool("Script completed\nOutput:\n\n{}", "e1")]
    run = call("exec", {"input": 'const r = await tools.exec_command({"cmd": "cargo test"}); text(r.output);'}, "t1")
    out = "Script completed\nOutput:\n\ntest tests::a ... FAILED\n\ntest result: FAILED. 1 passed; 1 failed\n"
    assert kind(run, [tool(out, "t1")], "codex", before) == "task_failure"
    # with no change before it, the same run shows the code as given
    assert kind(run, [tool(out, "t1")], "codex", before[:1]) == "ok"
    # a script that patches and then runs the tests is read as the run (however it names the command)
    both = f'const patch = {patch};\nawait tools.apply_patch(patch);\nconst cmd = "cargo test";\n'
    both += "const r = await tools.exec_command({cmd}); text(r.output);"
    assert kind(call("exec", {"input": both}, "t1"), [tool(out, "t1")], "codex", before[:1]) == "task_failure"


def test_a_test_run_that_failed_nothing_passed() -> None:
    """cargo says "0 failed" of every passing run: a count of failures is one of one or more (a code-mode
    script's answer gives no status: the output's summary is all there is)."""
    run = call("exec", {"input": 'const r = await tools.exec_command({"cmd": "cargo test"}); text(r.output);'})
    passed = "Script completed\nOutput:\n\nrunning 2 tests\n\ntest result: ok. 2 passed; 0 failed; 0 ignored\n"
    assert kind(run, [tool(passed)], "codex") == "ok"
    for failed in ("test result: FAILED. 1 passed; 1 failed; 0 ignored", "Tests: 1,024 failed, 3 passed"):
        assert kind(run, [tool(f"Script completed\nOutput:\n\n{failed}\n")], "codex") == "task_failure", failed


@pytest.mark.parametrize(
    ("command", "output", "expected"),
    [
        # the look failed, so nothing after `&&` ran: it answered no
        (
            "ls node_modules/.bin/vitest* 2>&1 && node node_modules/vitest/cli.js run",
            "ls: cannot access 'node_modules/.bin/vitest*': No such file or directory",
            "ok",
        ),
        (
            'cd "c:/dev/app" && ls dist/app.js && node dist/app.js',
            "ls: cannot access 'dist/app.js': No such file or directory",
            "ok",
        ),
        # an `echo` before it says its line; an `if ...; fi` ending the chain ran only if the look found it
        # (holdout106, both labellers: a memory file read through an unset $CODEX_HOME)
        (
            "echo HOME=$CODEX_HOME && ls -la $CODEX_HOME/automations/etf && "
            "if [ -f $CODEX_HOME/automations/etf/memory.md ]; then cat $CODEX_HOME/automations/etf/memory.md; fi",
            "HOME=\nls: /automations/etf: No such file or directory",
            "ok",
        ),
        # the look answered yes, and what ran after it failed
        ("ls dist/app.js && node dist/app.js", "dist/app.js\nSyntaxError: Unexpected token '}'", "task_failure"),
        # two compounds after it: the second runs whatever the first did
        (
            "ls -la out && if [ -f out/a ]; then cat out/a; fi; if true; then npm test; fi",
            "ls: cannot access 'out': No such file or directory\nFAIL src/a.test.js",
            "task_failure",
        ),
        # another command ran whatever the look said (after `;`, `||`, a pipe), and failed
        (
            "ls x; npm test && echo ok",
            "ls: cannot access 'x': No such file or directory\nFAIL src/a.test.js",
            "task_failure",
        ),
        (
            "ls build || mkdir build && cd build && cmake .. && make",
            "ls: cannot access 'build': No such file or directory\nCMake Error at CMakeLists.txt:3",
            "task_failure",
        ),
    ],
)
def test_a_look_that_stops_an_and_chain_answered_no(command: str, output: str, expected: str) -> None:
    said = f"Exit code {2 if output.startswith('ls') else 1}\n{output}"
    assert kind(call("Bash", {"command": command}), [tool(said, is_error=True)], "claude_code") == expected


def test_zsh_through_eval_not_finding_a_later_program_is_the_machines() -> None:
    """Claude Code runs a command through zsh's eval, which says `(eval):1: command not found: rustc`: a
    version check finding the toolchain missing is the machine's state (the lead would find it missing too)."""
    check = call("Bash", {"command": "node --version 2>&1 && rustc --version 2>&1 && cargo --version 2>&1"})
    said = "Exit code 127\nv24.14.0\n(eval):1: command not found: rustc"
    assert kind(check, [tool(said, is_error=True)], "claude_code") == "environment"
    # not the shell's own line: a program printing those words
    said = "Exit code 1\nv24.14.0\nerror: (eval):1: command not found: rustc in build.log"
    assert kind(check, [tool(said, is_error=True)], "claude_code") == "task_failure"


def test_powershell_refusing_a_looks_parameter_is_a_misused_command() -> None:
    """A search PowerShell could not start (an ambiguous or missing parameter) never searched: its exit 1 is no
    "not found"."""
    look = call(
        "PowerShell", {"command": 'Get-ChildItem -Path "C:\\Program Files" -Name | Select-String -Pattern -i gh'}
    )
    refused = (
        "Exit code 1\nSelect-String : Parameter cannot be processed because the parameter name 'i' is ambiguous. "
        "Possible matches include: -InputObject -Include.\n"
        "    + FullyQualifiedErrorId : AmbiguousParameter,Microsoft.PowerShell.Commands.SelectStringCommand"
    )
    assert kind(look, [tool(refused, is_error=True)], "claude_code") == "task_failure"
    assert kind(look, [tool("Exit code 1", is_error=True)], "claude_code") == "ok"  # it searched: no match


def test_nothing_to_commit_after_openhands_status_line() -> None:
    said = f"{CLEAN}\n[The command completed with exit code 1.]"
    assert kind(call("execute_bash", {"command": "git add -A && git commit -m x"}), [tool(said)], "openhands") == "ok"


def test_zsh_refusals_in_codex_output() -> None:
    def judged(command: str, output: str, status: int) -> str:
        return kind(call("exec_command", {"cmd": command}), [codex_exec(output, status)], "codex")

    assert judged("ls log[0-9].txt", "zsh:1: no matches found: log[0-9].txt\n", 1) == "ok"  # a class, meant
    assert judged("rg -n foo -g *.ts src", "zsh:1: no matches found: *.ts\n", 1) == "task_failure"
    assert judged("ls *.md | head", "ls: cannot access 'glob': No such file or directory", 2) == "ok"  # not Codex's
    listing = 'Get-ChildItem -Path "C:\\\\Users\\\\me\\\\proj"'  # PowerShell keeps backslashes
    assert judged(listing, "\n    Directory: C:\\Users\\me\\proj\n\n-a---  a.py\n", 0) == "ok"
    # the evidence names the line of the whole output, not of its last 3,000 characters
    log = "".join(f"log line {i}\n" for i in range(400)) + "zsh:1: no matches found: app/[id]/page.tsx\n"
    reply = call("exec_command", {"cmd": "cat build.log; rg -n foo app/[id]/page.tsx"})
    found = judge(reply, [codex_exec(log, 1)], agent="codex")
    assert found.kind == "task_failure"
    assert found.evidence is not None
    assert found.evidence.line == 401
