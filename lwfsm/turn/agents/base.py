"""What a turn's outcome was, read from the messages after it: evidence first, words last.

A reader (one per agent) turns the messages that followed reply N into `Outcome`s, one per command
or tool result, with whatever structure the agent gives: the tool that ran, the shell command, its
exit status, an error flag, a timeout. `Reader.findings` classifies them in a fixed order:
1. what the user did: rejected a tool call, corrected the model;
2. structured outcomes: error flags, exit statuses (probes such as `grep`, `find`, `which`, `test`,
   `diff`, `... || true` exempt), timeouts, the agent's own edit failures;
3. words last, and anchored: only where no status is known, only lines that *start* an error report
   (`Traceback (most recent call last):`, `SomeError: ...`, a test runner's summary) among the last
   lines of a command's output, never a substring of a file the agent read.
A failure whose output says the environment is at fault (a module that cannot be installed, no
network, a missing toolchain, missing credentials) is an `environment` finding: the lead would hit
it too. Every finding carries its evidence: which message, which line, which rule.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

from .words import ENDS, MEANT, PASTED_MORE, SAID, STILL, Gated, restated

__all__ = ["KINDS", "Evidence", "Finding", "Kind", "Outcome", "Reader", "Transcript", "text_of"]

Message = Mapping[str, Any]
Kind = Literal["ok", "task_failure", "environment", "user_correction", "rejected", "technical"]
KINDS: tuple[Kind, ...] = ("ok", "task_failure", "environment", "user_correction", "rejected", "technical")
# When one turn shows several findings, the verdict is the first of these kinds present.
PRECEDENCE: tuple[Kind, ...] = ("rejected", "user_correction", "task_failure", "environment")

_T = TypeVar("_T")
_SCAN = 2_000_000  # characters of a message read at most
TAIL = 40  # last lines of a command's output where words may count


def is_object(x: Any) -> bool:
    """A JSON object (a dict; any Mapping from a caller). `type() is dict` first: ABC checks are slow."""
    return type(x) is dict or isinstance(x, Mapping)


def tool_calls(message: Message) -> list[tuple[str, str, Any]]:
    """(id, tool name, raw arguments) of a message's well-formed tool calls; malformed entries are skipped
    (a client's hostile shapes must not break judging)."""
    calls = message.get("tool_calls")
    out = []
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if is_object(call) else None
        if fn is not None and is_object(fn):
            out.append((str(call.get("id")), str(fn.get("name")), fn.get("arguments")))
    return out


def text_of(message: Message) -> str:
    """The text of a message: a string, or the text of its content parts (OpenAI and Anthropic shapes)."""
    content = message.get("content")
    if isinstance(content, list):
        parts = []
        for p in content:
            if is_object(p):
                inner = p.get("content")  # an Anthropic tool_result block nests its own content
                parts.append(str(p.get("text", "")) if inner is None else text_of({"content": inner}))
            elif isinstance(p, str):
                parts.append(p)
        return " ".join(parts)[:_SCAN]
    return str(content or "")[:_SCAN]


@dataclass(frozen=True)
class Evidence:
    """Where a finding comes from: the message after the reply (0-based), the line in it, the rule."""

    rule: str
    message: int | None = None
    line: int | None = None
    excerpt: str = ""

    def __str__(self) -> str:
        where = ""
        if self.message is not None:
            where = f" at message {self.message + 1}" + ("" if self.line is None else f", line {self.line}")
        return self.rule + where + (f": {self.excerpt!r}" if self.excerpt else "")


@dataclass(frozen=True)
class Finding:
    kind: Kind
    evidence: Evidence


class Transcript(NamedTuple):
    """One judged turn read from an agent's raw file: the conversation as its protocol carried it
    (`messages`), the index of the reply judged (`at`), and the tools offered, when the file says."""

    protocol: str  # "openai" or "anthropic"
    messages: list[Message]
    at: int
    tools: list[Message]


@dataclass
class History:
    known: bool = False  # the messages before the reply were given
    edited: bool = False  # the model has changed a file in this conversation (other than tests and reproductions)
    # the commands run since the model's last attempt: (command, index, message, tool, arguments)
    runs: list[tuple[str, int, Message, str | None, Mapping[str, Any]]] = field(default_factory=list)
    corrected: bool = False  # the user said the last change was wrong, and nothing changed since
    # of the runs that failed, by program: their command lines (spaces evened), read once (`Reader.failed_runs`)
    failed_by_program: dict[str, set[str]] | None = None


@dataclass
class Outcome:
    """One command or tool result after the reply."""

    message: int  # index in the messages after the reply
    text: str
    tool: str | None = None
    command: str | None = None  # the shell command, when the tool ran one
    status: int | None = None  # exit status, when the agent reports it
    flagged: bool = False  # the agent marked the result an error (is_error)
    timed_out: bool = False
    runs: bool = True  # a command's output (words may count) rather than a file or a listing
    said: str = ""  # what the model said the call is for (Claude Code's `description` of a command)
    running: bool = False  # still running, its session the model's to write to (Codex's `write_stdin`)
    edits: str | None = None  # the file a file editor's call changed (the tool's own path argument)


# -- commands --

# Commands whose non-zero status answers a question rather than reports a failure.
PROBES = frozenset(
    {
        "grep",
        "egrep",
        "fgrep",
        "rg",
        "ag",
        "ack",
        "find",
        "fd",
        "which",
        "whereis",
        "type",
        "test",
        "[",
        "[[",
        "ls",
        "diff",
        "cmp",
        "pgrep",
        "stat",
        "file",
        "command",
        "locate",
        "git grep",
        "git diff",
        "git ls-files",
        "git show-ref",
        "realpath",
        "git config",  # a lookup: 1 when the key is not set
        "git rev-parse",
        "pip show",
        "npm ls",
        "npm list",
        "dpkg",
        "id",
        "getent",
        "false",
        # is something running or installed: "no" is an answer
        "pkill",
        "killall",
        "pidof",
        "lsof",
        "nc",
        "systemctl status",
        "systemctl is-active",
        "systemctl is-enabled",
        "docker inspect",
        "git status",
        "git branch",
        "npm view",
        # PowerShell's (Codex on Windows): listing, testing, searching, looking up
        "Get-ChildItem",
        "gci",
        "dir",
        "Get-Item",
        "Test-Path",
        "Select-String",
        "sls",
        "findstr",  # Windows' own search, there in PowerShell and in Git Bash alike: 1 when nothing matches
        "Get-Command",
        "gcm",
        "where.exe",
        "Get-Process",
        "reg query",  # Windows' registry: 1 when the key is not there
        # a package manager's search that exits 1 when nothing matches (`gh`, `npm`, `apt` exit 0: theirs fail)
        "brew search",
        "mas search",
    }
)
# Commands named by their first two words (`git diff` is a probe, `git push` is not).
_TWO_WORDS = frozenset({"git", "pip", "npm", "systemctl", "docker", "reg", "brew", "mas"})
_HIDDEN = re.compile(r"(?:2|&)>\s*/dev/null")
_QUIET = re.compile(r"-(?:ErrorAction|ea)\s+(?:SilentlyContinue|Ignore|0)\b", re.I)
# PowerShell's `if (condition) { A } else { B }` ending a command line: its status is the branch's that ran,
# not the condition's (`if (Get-Command python -ea 0) { python -m pytest }` is a test run, not a lookup).
# Branches without braces of their own; a condition with parentheses one deep (`if (!(Test-Path x))`).
_PS_IF = re.compile(r"(?:^|;\s*)if\s*\((?:[^(){}]|\([^(){}]*\))*\)\s*\{([^{}]*)\}(?:\s*else\s*\{([^{}]*)\})?\s*$", re.I)
# The last command of a pipeline decides its status: a filter there hides the real one.
FILTERS = frozenset(
    {
        "tail",
        "head",
        "grep",
        "egrep",
        "less",
        "more",
        "tee",
        "sort",
        "uniq",
        "wc",
        "cut",
        "awk",
        "sed",
        "tr",
        "cat",
        "column",
        "nl",
        "fold",
        "xargs",
        "jq",
    }
)
# (?=...): only where an operator or a space starts; the space before an operator is taken whole from its
# start, never again from inside it (retrying \s* from each space of a long run was quadratic)
_SPLIT = re.compile(r"(?=[\s|&;])(?:(?<!\s)\s+)?(\|\||&&|;|\n|\|(?!\|))\s*")
# A double-quoted string that is never closed runs to the end (group 1 unset): no quote after it
# closes one either, so only single-quoted strings are looked for there (trying each `"` in it
# again was quadratic: `"\"\"\"...`).
_QUOTED = re.compile(r"""'[^']*'|"[^"\\]*(?:\\.[^"\\]*)*(?:(")|\\?\Z)""")


_SINGLE = re.compile(r"'[^']*'")


def quoted_away(command: str) -> str:
    """A command line without its quoted strings (what the shell itself reads as words and operators)."""
    return _QUOTED.sub("", command)


def _by_command(fn: Callable[[str], _T]) -> Callable[[str], _T]:
    """`fn` of a command line, remembered: one command is read by several rules in a turn, and again in
    every later turn's history. At most 1,024 lines of up to 2,000 characters are kept per rule, each with
    its answer (a word or two, at most the line again; not a line's parts, which may be a thousand strings)."""
    cached = functools.lru_cache(maxsize=1024)(fn)

    @functools.wraps(fn)
    def read(command: str) -> _T:
        return cached(command) if len(command) <= 2000 else fn(command)

    read.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return read


NOT_JSON = object()  # what `arguments` gives for text that is not JSON (`null` is JSON)


def arguments(raw: str | bytes) -> Any:
    """A tool call's arguments read from their JSON text (`NOT_JSON`: not JSON). A turn reads the same
    text twice (its outcomes, then its malformed calls): the last 16 of up to 16 KB read are remembered,
    what they hold shared (nothing may change it; a hostile 16 KB of `{}` holds ~8,000 objects). Text
    that is not JSON is not remembered: nesting too deep for the stack depends on the caller's depth."""
    try:
        return (_arguments if isinstance(raw, str | bytes) and len(raw) <= 16384 else json.loads)(raw or "{}")
    except (TypeError, ValueError, RecursionError):
        return NOT_JSON


_arguments = functools.lru_cache(maxsize=16)(json.loads)  # (no frame of its own: the stack as deep as without)


def _hide(m: re.Match[str]) -> str:
    if m.group(0)[0] == "'" or m.group(1) is not None:
        return "_" * len(m.group(0))
    return '"' + _SINGLE.sub(lambda q: "_" * len(q.group(0)), m.group(0)[1:])


# curl's own report of a transfer that failed, with its exit code; not 23, its write refused by a filter
# that had read enough (`curl url | head -3`)
_CURL_FAILED = re.compile(r"^curl: \((?!23\))\d+\) .*$", re.M)


def _programs(command: str) -> list[str]:
    """The program of each command of a line, in order (`cd a && curl x | head`: cd, curl, head)."""
    return [words[0] for words in map(_words, _split(command[:4000])[0::2]) if words]


def _curl_ran_last(command: str) -> bool:
    """curl is the command's last program but its filters (`sleep 30 && curl -I url 2>&1 | head`): not a
    script or a loop that may have tried again."""
    return [p for p in _programs(command) if p not in FILTERS][-1:] == ["curl"]


def _split(command: str) -> tuple[str, ...]:
    """A command line's parts with the operators between them (as `_SPLIT.split` gives them); an
    operator inside quotes is text: `grep "a\\|b" f` is one command."""
    masked = _QUOTED.sub(_hide, command)
    out, at = [], 0
    for m in _SPLIT.finditer(masked):
        out += [command[at : m.start()], m.group(1)]
        at = m.end()
    return (*out, command[at:])


def _last_pipeline(command: str) -> str:
    """The commands after the last operator that is not a pipe: those whose status is the command's."""
    parts = _split(command.strip())
    i = len(parts) - 1
    while i > 1 and parts[i - 1] == "|":
        i -= 2
    return " | ".join(parts[i::2])


# Leading `cd DIR &&`s: the command that ran is what follows them.
_CD = re.compile(r"\A(?:\s*cd\s+(?:'[^']*'|\"[^\"]*\"|[^\s;&|]+)\s*&&)+\s*")

_WORD = re.compile(r"""'[^']*'|"[^"]*"|[^\s'"#]+|#.*""")
# a word is its quoted and unquoted parts together (`PYTHONPATH="a b"` is one): read so only where a
# quoted value follows `=`, the one place it matters for the first words (the plain split is faster)
_JOINED = re.compile(r"""(?:[^\s'"#]+|'[^']*'|"[^"]*")+|#.*""")


# cmd.exe by any of its names, and its own switches before the `/c` or `/k` that runs a command
_CMD_EXE = re.compile(r"(?:.*[\\/])?cmd(?:\.exe)?", re.I)
_CMD_FLAGS = frozenset({"/d", "/s", "/q", "/a", "/u", "/e:on", "/e:off", "/v:on", "/v:off", "/f:on", "/f:off"})


def _words(segment: str) -> list[str]:
    # The first words are all that is read: quotes kept whole, a comment ends the command.
    words = []
    segment = segment[:2000]
    for w in (_JOINED if '="' in segment or "='" in segment else _WORD).findall(segment):
        if w.startswith("#"):
            break
        words.append(w.strip("'\"") if w[:1] in "'\"" else w)
    while words and ("=" in words[0] and not words[0].startswith("=") or words[0] in ("sudo", "time", "env", "!")):
        words = words[1:]  # VAR=value, sudo, time, env: the command is what follows
    if len(words) > 2 and _CMD_EXE.fullmatch(words[0]) and "&" not in segment:
        # cmd.exe running one command (`cmd /d /c findstr x f`): the command is what it runs. Not a quoted line
        # (`cmd /c "dir & npm start"`) nor one with `&` (cmd.exe runs what follows it: the status is its)
        at = next((i for i, w in enumerate(words[1:], 1) if w.lower() not in _CMD_FLAGS), len(words))
        if at < len(words) - 1 and words[at].lower() in ("/c", "/k") and not any(c.isspace() for c in words[at + 1]):
            words = words[at + 1 :]
    if words and words[0] in ("timeout",):
        words = [w for w in words[1:] if not w[:1].isdigit() and not w.startswith("-")]
    if words and words[0] in ("cd",):
        return []
    if words[:1] == ["git"]:  # git's own options come before its subcommand: `git -C dir status`
        rest = words[1:]
        while rest and rest[0].startswith("-"):
            rest = rest[2:] if rest[0] in ("-C", "-c") else rest[1:]
        words = ["git", *rest]
    return words


@_by_command
def last_command(command: str) -> tuple[str, str, str | None]:
    """(the command that sets the status, the operator before it, the name of the pipeline's first command)."""
    parts = _split(command.strip())
    segments = parts[0::2]
    n = len(segments)
    while n > 1 and not segments[n - 1].strip():
        n -= 1  # empty ends dropped, then cut once (popping one and copying the operators each time was quadratic)
    segments, ops = segments[:n], parts[1::2][: n - 1]

    def name(segment: str) -> str:
        words = _words(segment)
        return " ".join(words[:2] if words[:1] and words[0] in _TWO_WORDS else words[:1])

    last = name(segments[-1]) if segments else ""
    op = ops[-1] if ops else ""
    first = None
    if op == "|":  # the pipeline's first command, before the filters
        i = len(segments) - 1
        while i > 0 and ops[i - 1] == "|":
            i -= 1
        first = name(segments[i])
    return last, op, first


_WRAPPED = re.compile(
    r"^(?:(?:sudo(?:\s+-(?:u\s+\S+|E|H|n))*\s+)?(?:ba|z)?sh\s+-l?c|"
    # a phone's shell through adb (its path often quoted, Windows' .exe), a host's through ssh
    r"(?:\"[^\"]*[/\\])?adb(?:\.exe)?\"?(?:\s+-s\s+\S+)?\s+shell|ssh(?:\s+-\w(?:\s+[^\s'\"-]\S*)?)*\s+[\w.@-]+)"
    r"\s+(['\"])(.*)\1(?:\s+2>&1)?$",
    re.S,
)


_CONFIG_CHANGE = re.compile(
    r"\bgit config\b(?:(?!\bgit config\b)[^|;&\n])*"  # (a scan stops where the next one starts)
    r"\s--(?:unset|unset-all|remove-section|rename-section|add|replace-all)\b"
)


# cmd.exe's own commands in its syntax (`dir "%APPDATA%\\x" /B`) run by bash or PowerShell, which do not read them
# as meant (run through `cmd /c`, the command is not at a command's start)
_CMD_SYNTAX = re.compile(
    r"(?:^|[;&|]\s*)(?:dir|type|copy|del|erase|move|ren|rd|md|xcopy|findstr|mklink)\s"
    r"[^|;&\n]*?(?:%[A-Za-z_]\w{2,}%|(?<=\s)/[A-Za-z](?:[-:]\w*)?(?=[\s\"']|$))",
    re.M,
)


@_by_command
def is_probe(command: str) -> bool:
    """A command whose failure is an answer: a search, a test, a lookup, or one that ends `|| true`
    (also run as another user or through `bash -c '...'`). Not one in cmd.exe's syntax run elsewhere: its
    failure is the model's slip."""
    c = command.strip()
    if wrapped := _WRAPPED.match(c):
        c = wrapped.group(2).strip()
    if _CMD_SYNTAX.search(c):
        return False
    if re.search(r"\|\|\s*(true|:|echo\b|exit 0|printf\b)", c):
        return True
    if "&&" in c and any(_words(seg)[:1] and (_words(seg)[0] in PROBES) for seg in c.split("&&")[:-1]):
        return True  # `which gh && gh --version`: the probe may be what failed (an error line still counts)
    last, op, first = last_command(c)
    if last in _READS_ONLY and "/dev/null" in c and _HIDDEN.search(_last_pipeline(c)):
        return True  # a read told to say nothing when the file is not there: its "no" is the status alone
    if c.endswith("}") and (branches := _PS_IF.search(c)) is not None:
        return all(is_probe(b) for b in branches.groups() if b is not None and b.strip())
    if ("-e" in c or "-E" in c) and _QUIET.search(c) and _QUIET.search(_last_pipeline(c)):
        return True  # PowerShell told to stay quiet on errors where its status comes from: `2>/dev/null || true`
    if last == "git config" and _CONFIG_CHANGE.search(c):
        return False  # not a lookup: it changes the configuration
    if last in PROBES or (last.split(" ")[0] in PROBES and last.split(" ")[0] not in _TWO_WORDS):
        return True
    return op == "|" and first is not None and (first in PROBES or first.split(" ")[0] in ("grep", "rg", "find"))


# Commands that succeed whatever ran before them: after `;` the status is theirs, not the work's.
_TRAILERS = frozenset({"echo", "printf", "true", ":", "pwd", "sleep", "date"})


@_by_command
def status_hidden(command: str) -> bool:
    """The status belongs to a filter at the end of a pipeline (`pytest | tail`), or to an `echo`
    run after the work whatever its outcome (`pytest; echo done`), not to the work."""
    last, op, first = last_command(command.strip())
    head = last.split(" ")[0]
    return (op == "|" and head in FILTERS) or (op in (";", "\n") and head in _TRAILERS)


_REPRO = re.compile(
    r"(^|[\s/_-])(?:repro|bug_?repro|test_?(?:issue|bug)|check_?(?:issue|bug))"
    r"(?:[^\W_]|_(?!repro|bug_?repro|test_?(?:issue|bug)|check_?(?:issue|bug)))*\.(py|js|ts|sh|rb|java)\b",
    re.I,
)


# A file editor tool's subcommands (Anthropic's text editor, used by SWE-agent and OpenHands).
_EDITOR = frozenset({"view", "create", "str_replace", "insert", "undo_edit"})
# Tools and shell commands that change files.
_EDITS = re.compile(r"(edit|write|patch|create|replace|insert|apply|str_replace|notebook)", re.I)
_WRITES = re.compile(
    r"(sed -i|perl -p?i|\bcat\s*>|>\s*[\w./-]+\.\w+\b|\btee\b|apply_patch|\bpatch\b|git apply|"
    r"\bmv\b|\bcp\b|\brm\b|python3? - <<)"
)
# Formatters and fixers, run as a command (not asked only to check): they rewrite files, so a check that fails
# after them is a new try, not a second look; they change no behaviour, so a test failing after them still
# shows the reported bug (the red phase). `--fix` is looked for within 30 words; a flag asking only to check
# anywhere after the name in its part of the command (up to `|`, `;`, `&` or a line's end) makes it a check.
# (Searched from each name to the end of its part, as one pattern did, both were quadratic: 17 s at 84 KB.)
_FORMATTER = re.compile(
    r"(?:^|[;&|(]\s*)(?:(?:python3? -m|npx|uvx|uv run|poetry run|pipx run)\s+)?"
    r"(?:ruff format|black|isort|autopep8 (?:-i|--in-place)|gofmt (?:-s )?-w|goimports -w|go fmt|cargo fmt|rustfmt|"
    r"dotnet format|clang-format -i|prettier (?:--write|-w)|"
    r"(?:ruff check|eslint|stylelint)\s(?:[^|;&\s]+\s){0,30}?--fix(?![-\w]))",
    re.M,
)
_CHECK_ONLY = re.compile(r"\s(?:--(?:check|check-only|diff|verify-no-changes|dry-run|version|help)\b|-h\b)")
_PART_END = re.compile(r"[|;&\n]")


@_by_command
def formats(command: str) -> bool:
    """Whether `command` runs a formatter or a fixer not asked only to check."""
    flags: list[int] | None = None
    ends: list[int] = []
    for m in _FORMATTER.finditer(command):
        if flags is None:  # read once for the command, then looked up per name
            flags = [f.start() for f in _CHECK_ONLY.finditer(command)]
            ends = [e.start() for e in _PART_END.finditer(command)]
        i = bisect.bisect_left(ends, m.end())
        end = ends[i] if i < len(ends) else len(command)
        j = bisect.bisect_left(flags, m.end())
        if j == len(flags) or flags[j] > end:  # (at `end` itself only a newline: a flag on the next line counts)
            return True
    return False


# Test runners: their failure before the model changed anything shows the bug, not a mistake.
_INLINE = re.compile(r"\s*python3?(?:\.\d+)? -c\s")
_WRITES_INLINE = re.compile(r"write_text|write_bytes|\.write\(|open\([^)]*['\"][wax]")
_FRAME = re.compile(r'File "([^"\n]+)", line \d+')


def _inline_look(command: str, tail: str) -> bool:
    """A few lines run inline (`python -c`, the command's last) that write nothing, failing inside the
    project's own code (the innermost frame a file, not the lines given): a look at the code as it is.
    A failure in the lines themselves (a name, a typo) is the model's."""
    if not _INLINE.match(_split(command.strip())[-1]) or _WRITES_INLINE.search(command):
        return False
    frames = [m.group(1) for m in _FRAME.finditer(tail)]
    return bool(frames) and not frames[-1].startswith("<") and not _broken(tail)


TESTS = re.compile(
    r"\b(pytest|unittest|nosetests|tox|jest|mocha|vitest|go test|cargo test|mvn( -\S+){0,30} test|"
    r"gradle(?:(?!\bgradle)\S)* test|"
    r"(?:npm|pnpm|yarn|bun) (run )?test|deno test|dotnet test|rspec|phpunit|ctest|make (check|test)|node \S*test\S*)",
    re.I,
)


# A check run (tests, a type checker, a linter, a build: not a read of its log) and a search of its output
# that says "none" when it finds nothing.
_CHECKS = re.compile(
    r"^\s*(?:(?:npm|pnpm|yarn|bun) (?:run )?(?:typecheck|type-check|lint|build|test)\b|"
    r"npx (?:tsc|eslint|vitest|jest|ruff|mypy|pyright)\b|(?:tsc|mypy|pyright|eslint|ruff|pytest)\b|"
    r"python3? -m (?:pytest|mypy)\b|cargo (?:check|build|clippy|test)\b|go (?:build|vet|test)\b|make\b)"
)
_SIFTED = re.compile(  # (a path before grep holds no `|`: `\S*` went to the end from each pipe, quadratic)
    r"\|\s*(?:[^\s|]*/)?(?:grep|rg)\b[^|]*(?:\|\s*(?:head|tail|sort|uniq)\b[^|]*)*\|\|\s*(?:echo|printf|true|:)"
)

_INTERPRETERS = frozenset({"python", "python3", "node", "ruby", "bash", "sh", "perl", "php", "java", "deno", "bun"})


def _first_words(command: str) -> list[str]:
    """The words of the command's first segment that has any (`cd dir && pytest -x`: what runs is pytest)."""
    return next((w for w in map(_words, _split(command.strip())[0::2]) if w), [])


@_by_command
def program(command: str) -> str:
    """What a command runs, without its selection, flags and filters: `pytest -q t.py::x | tail` is
    `pytest`, `python -m pytest -x` is `python -m pytest`, `python repro.py` is itself."""
    if "<<" in command:
        return " ".join(command.split())  # a script given inline is itself
    words = _first_words(command)
    if words[:1] and words[0] in _INTERPRETERS:
        if len(words) > 1 and words[1] == "-m":
            return " ".join(words[:3])
        if len(words) > 1 and words[1] in ("-c", "-e"):
            return " ".join(words)
        return " ".join(words[:2])
    return " ".join(words[:2] if words[:1] in (["npm"], ["go"], ["cargo"], ["make"], ["yarn"]) else words[:1])


_PATCHED = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (\S+)", re.M)
_REDIRECT = re.compile(r"(?:>\s*|\btee\s+(?:-a\s+)?)([\w./-]+)")


def edited_path(tool: str | None, args: Mapping[str, Any]) -> str | None:
    """The file a file editor's call changes (its own path argument), or None."""
    if not tool or not _EDITS.search(tool) or args.get("command") == "view":
        return None
    path = args.get("file_path") or args.get("path") or args.get("notebook_path")
    if not path and isinstance(patch := args.get("input") or args.get("patch"), str):
        # Codex's apply_patch names its files inside the patch (`*** Update File: app.py`)
        path = (m := _PATCHED.search(patch[:100_000])) and m.group(1)
    return path if isinstance(path, str) and path else None


def _changes(o: Outcome) -> bool:
    """A call of the reply that changed code (not a test or a reproduction) and did not fail."""
    if o.edits is not None:
        return not is_scaffold(o.edits)
    return bool(o.command) and not o.status and changes_code(o.command or "")


@_by_command
def changes_code(command: str) -> bool:
    """A shell command that changes files other than a reproduction script."""
    if not _WRITES.search(command):
        return False
    paths = _PATCHED.findall(command) or _REDIRECT.findall(command)
    return not paths or any(not is_scaffold(p) and not p.startswith("/dev/") for p in paths)


_TEST_FILE = re.compile(r"((^|/)tests?/|(^|/)test_[^/]*$|_test\.\w+$|\.(test|spec)\.\w+$|Test\.java$)")


def is_scaffold(path: str) -> bool:
    """A file written to show or pin down the bug (a reproduction script, a test), not the fix: a
    failing run after writing only these is still the red phase."""
    return is_reproduction(path) or bool(_TEST_FILE.search(path))


# A run that never got to show the bug: the script itself is missing or broken.
# The shell's own report of a line it could not run; a later command's status hides it.
_SHELL_ERROR = re.compile(
    r"^(?:(?:/bin/|/usr/bin/)?bash: (?:line \d+: )?(?:\S+: command not found|syntax error[^\n]*|"
    r"unexpected EOF while looking for matching[^\n]*|\S+: (?:bad substitution|unbound variable))|"
    r"[\w.-]+: [^\n:]+: Is a directory|[^\S\n]*File \"<stdin>\", line \d+|"
    r"\[\d+\][+-]?\s+Exit \d+\s.*)$",  # bash's notice that a command it ran in the background failed
    re.M,
)

# The shell could not parse the command: nothing (or only its start) ran, whatever it was meant to ask.
_SYNTAX = re.compile(
    r"^(?:(?:/bin/|/usr/bin/)?(?:ba|z|da)?sh: (?:eval: |command substitution: )?(?:line \d+: |\d+: |-c: line \d+: )?"
    r"(?:syntax error\b|Syntax error: |unexpected EOF while looking for matching)[^\n]*)$",
    re.M,
)


# A Windows path written into a POSIX shell's command unquoted: the shell takes each backslash as an escape
_WINDOWS_PATH = re.compile(r"(?<![\w\\/'\"])[A-Za-z]:\\(?:\\ |[^\s'\"|;&<>()])+")
_ESCAPE = re.compile(r"\\(.)")


_NO_MATCH = re.compile(r"^(?:zsh|\(eval\)):\d+: no matches found: (?P<word>[^\n]+)$", re.M)
# a Next.js route's folder (`[id]`, `[...slug]`) or group (`(app)`), a whole segment of the path: a name, not
# a set of characters (`*.[jt]sx`)
_LITERAL_GROUP = re.compile(
    r"(?:^|/)(?:\[\[\.\.\.\w+\]\]|\[(?:\.\.\.)?[A-Za-z_][\w.]*\]|\([A-Za-z_][\w.-]*\))(?=/|\.|$)"
)
# a program's own pattern left unquoted (`find . -name *.py`, `grep --include=*.ts`): zsh names the whole word
_PATTERN_OPTION = re.compile(r"(?:\s-i?name|\s-g|\s--glob)\s+$")
_PATTERN_WORD = re.compile(r"--(?:include|glob|exclude)=")


def _no_match(cmd: str, text: str) -> tuple[int, str] | None:
    """(line, line) of zsh saying a word of the command matched no file, where the word was no pattern
    meant for the shell: a literal path with a route's brackets or parentheses, or a program's own pattern
    left unquoted. A wildcard that matched nothing is the shell's "no" to a look that meant one."""
    for m in _NO_MATCH.finditer(text[:3000]):
        word = m["word"]
        ats = [w.start() for w in re.finditer(re.escape(word), cmd[:4000])]
        if any(_PATTERN_WORD.match(word) or _PATTERN_OPTION.search(cmd[max(0, at - 12) : at]) for at in ats):
            return text.count("\n", 0, m.start()) + 1, m.group(0)[:160]
        if not ats:  # only the part the command wrote (zsh names `~` and `$HOME` expanded; `'app/[id]'/*.tsx`
            # unquoted, which leaves only `/*.tsx`: a pattern meant)
            wrote = (i for i in range(min(len(word), 500)) if word.startswith("/", i) and word[i:] in cmd)
            word = word[next(wrote, len(word)) :]
        if _LITERAL_GROUP.search(word):
            return text.count("\n", 0, m.start()) + 1, m.group(0)[:160]
    return None


def _clean_commit(cmd: str, text: str) -> bool:
    """A commit that found nothing left to commit, and nothing else said: the commit last, after commands
    joined by `&&` or that only stage (a heredoc's lines are its message), git's status block ending the
    output, and no error reported before it (a hook's lines may come first)."""
    parts = _split(cmd[:4000].split("<<", 1)[0].strip().rstrip(";"))
    if not _COMMIT.match(parts[-1]) or not (
        all(op == "&&" for op in parts[1::2]) or all(_BEFORE_COMMIT.match(p) for p in parts[0:-2:2])
    ):
        return False
    said = _STATUS_LINE.sub("", text[-20000:])
    return (
        _CLEAN_TREE.search(said) is not None
        and anchored_error(said) is None
        and _syntax(said) is None
        and _failed_syntax(cmd, said) is None
    )


def _failed_syntax(cmd: str, text: str) -> tuple[int, str] | None:
    """(line, line) of zsh or PowerShell refusing the command line, in the output's last 3,000 characters."""
    tail = text[-3000:]
    found = first_match(_FAILED_SYNTAX, tail) or (_no_match(cmd, tail) if "no matches found" in tail else None)
    return None if found is None else (found[0] + text.count("\n", 0, len(text) - len(tail)), found[1])


def _eaten_backslashes(cmd: str, text: str) -> tuple[int, str] | None:
    """(line, line) of the output naming a Windows path of the command as a POSIX shell read it unquoted,
    its backslashes gone (`C:\\Users\\me\\*.py` as `C:Usersme*.py`)."""
    for m in _WINDOWS_PATH.finditer(cmd[:2000]):
        eaten = _ESCAPE.sub(r"\1", m.group(0))[:60]
        if "\\" in eaten or len(eaten) < 4:  # `C:\\dir` is read as `C:\dir`: the path meant
            continue
        if (at := text.find(eaten, 0, 3000)) >= 0:
            start, end = text.rfind("\n", 0, at) + 1, text.find("\n", at)
            return text.count("\n", 0, at) + 1, text[start : end if end >= 0 else None][:160]
    return None


# A program asked for its help on a subcommand (`codex help summarize`, `tool mcp call --help`) answering that
# there is no such subcommand: a look whose answer is no, not a command that failed.
_HELP_ON_SUBCOMMAND = re.compile(r"\A[\w./-]+(?: help(?: [\w.-]+)*| [a-z][\w.-]*(?: [a-z][\w.-]*)* --help)\s*\Z")
_NO_SUCH = re.compile(
    r"unrecognized subcommand|unknown (?:sub)?command\b|[Nn]o such (?:sub)?command|invalid choice: |"
    r"is not a [\w.-]+ command\b"
)


# cmd.exe's greeting and prompt, all a command printed: cmd started as a shell of its own (Git Bash reads the
# `/c` of `cmd /c x` as the path `C:/`), and ended when its input did, so what it was given never ran.
_CMD_BANNER = re.compile(
    r"Microsoft Windows \[[^\]\n]{1,80}\]\r?\n\([Cc]\)[^\n]{0,120}Microsoft Corporation[^\n]{0,120}"
    r"(?:\r?\n)+(?:[A-Za-z]:\\[^\n]{0,500}>)?"
)
_RUNS_CMD = re.compile(r"(?:^|[\s;&|(])cmd(?:\.exe)?\s+/[cCkK]\b")


# bash's warning that a here-document's closing word never came: the command was not what was written (its
# lines after the `<<` all went to the here-document, or were split from it), in English and Japanese
_UNENDED = re.compile(
    r"^[^\n]*(?:here-document at line \d+ delimited by end-of-file|ヒアドキュメントの \d+ 行目でファイル終了)[^\n]*$",
    re.M,
)


def _syntax(text: str) -> tuple[int, str] | None:
    """The shell's own word that it could not parse the command (its words first: the pattern is tried at
    every line's start, ~17 µs on 3,000 characters)."""
    return first_match(_SYNTAX, text) if "yntax error" in text or "unexpected EOF" in text else None


_HEREDOC = re.compile(r"<<-?[^\S\n]*(['\"]?)([A-Za-z_]\w*)\1")


def _unended(command: str, text: str) -> tuple[int, str] | None:
    """bash's warning that a here-document of the command never ended, where the command as the model wrote
    it has no line closing one (a harness that mangled a closed one, Claude Code appending `< /dev/null`
    to its last line, is not the model's doing); not a start-up file's warning (`.bashrc: line 3: ...`)."""
    if not ("delimited by end-of-file" in text or "ヒアドキュメント" in text) or "<<" not in command:
        return None
    lines = {line.strip() for line in command[:20000].splitlines()}
    if all(m.group(2) in lines for m in _HEREDOC.finditer(command[:20000])):
        return None
    warned = first_match(_UNENDED, text[-3000:])
    return None if warned is None or ".bashrc:" in warned[1] or ".profile:" in warned[1] else warned


# A shell's `cd` into a folder that is not there (bash, dash; zsh, as itself or Claude Code's eval): what
# followed ran elsewhere, or not at all. The folder is named as the shell read it (`_cd_failed`).
_CD_FAILED = re.compile(
    r"^(?:(?:(?:/bin/|/usr/bin/)?(?:ba|da)?sh: (?:line \d+: |\d+: )?)?(?:cd|pushd): (?:(?P<a>[^\n]+): "
    r"(?:No such file or directory|Not a directory)|can't cd to (?P<b>[^\n]+))|"
    r"(?:zsh|\(eval\)):(?:cd|pushd):\d+: (?:no such file or directory|not a directory): (?P<c>[^\n]+))$",
    re.M,
)

# What may follow the folder of a `cd` that is meant to work (not `|| cd b`: a fallback tries places)
_CD_THEN = r"\s*(?:&&|;|\)|$|#|\|\|\s*(?:exit|return)\b|\d?>|&>)"
# A shell word's pieces: single-quoted, double-quoted (its escapes), an escaped character, a plain one
_PIECE = r"'[^']*'|\"(?:[^\"\\]|\\.)*\"|\\.|[^\s;&|)<>'\"\\]"
# The folders a command's own `cd` or `pushd` goes into, as written (a `#` starts a comment only at a
# word's start)
_CD_INTO = re.compile(
    rf"(?:^|[\s;&|(])(?:cd|pushd)\s+(?:-[LPe@]+\s+|--\s+)*((?!#)(?:{_PIECE})+)(?={_CD_THEN})",
    re.M,
)
# A home folder, as a shell expands `~` (Linux, macOS, Git Bash on Windows)
_HOME = r"(?:/root|(?:/[a-z])?/(?:home|Users|var/home)/[^/\n]+)"


def _cd_failed(command: str, text: str) -> tuple[int, str] | None:
    """The line saying the command's own `cd` (or `pushd`) into a folder failed. Not a log or file that
    holds such a line, nor a `cd` to a variable or one with a fallback after it (`cd a || cd b`): those try
    places. The shell names the folder as it read it: `my\\ dir` as `my dir`, `~/x` as `/home/me/x`."""
    if "cd" not in command and "pushd" not in command:
        return None
    into, home = set(), set()  # the folders as read; those under `~/` (a quoted `~` is not expanded)
    for m in _CD_INTO.finditer(command):
        word = m.group(1)
        if "$" not in word and "`" not in word:
            into.add(_unquoted(word).rstrip("/") or "/")
            if word.startswith("~/"):
                home.add(_unquoted(word[1:]).rstrip("/"))
    for m in _CD_FAILED.finditer(text[:3000]):
        folder = (m.group("a") or m.group("b") or m.group("c")).rstrip("/") or "/"
        if folder in into or any(re.fullmatch(_HOME + re.escape(w), folder) for w in home):
            return text.count("\n", 0, m.start()) + 1, m.group(0).strip()[:160]
    return None


def _unquoted(word: str) -> str:
    """A shell word as the shell reads it: its quotes taken off, its escapes read (`"my dir"/src` is
    `my dir/src`; in double quotes a backslash escapes only `"`, `\\`, `$` and a backquote)."""
    out = []
    for piece in re.findall(_PIECE, word):
        if piece[0] == "'":
            out.append(piece[1:-1])
        elif piece[0] == '"':
            out.append(re.sub(r'\\([\\"$`])', r"\1", piece[1:-1]))
        else:
            out.append(piece[-1])
    return "".join(out)


# zsh's words (Claude Code on macOS runs commands through zsh's eval), and PowerShell's, which parses a whole
# script before it runs any of it. Only with a failed status or an error flag: a shell profile that zsh
# cannot parse says the same on every command, which then runs, and a log read may hold such lines. Nothing
# of a line zsh refused ran, so a probe's status is the shell's, not the search's (`_no_match` for a pattern
# that matched nothing).
_FAILED_SYNTAX = re.compile(
    r"^(?:zsh|\(eval\)):\d+: (?:parse error near\b|unmatched [\"'`]|unknown sort specifier|bad pattern: )[^\n]*$|"
    r"^[^\S\n]*\+ CategoryInfo\s*: ParserError: [^\n]*$",
    re.M,
)

_BROKEN_RUN = Gated(
    re.compile(
        r"(can't open file|No such file or directory|SyntaxError|command not found|"
        r"Cannot find module|is not recognized|"
        # a script that never reached the code it meant to show: its framework was not set up (Django's words)
        r"ImproperlyConfigured|AppRegistryNotReady|settings are not configured|doesn't declare an explicit app_label|"
        r"no such table)",
        re.I | re.A,  # (its words are ASCII: so is what it matches)
    ),
    (
        "can't open file", "no such file or directory", "syntaxerror", "command not found", "cannot find module",
        "is not recognized", "improperlyconfigured", "appregistrynotready", "settings are not configured",
        "explicit app_label", "no such table",
    ),
)  # fmt: skip


# A traceback's innermost frame, then the exception: a name the script itself never defined or imported.
_OWN_NAME = re.compile(
    r'File "([^"]+)", line \d+[^\n]*\n(?:(?!\s*File ")[^\n]*\n)??(?:NameError|ImportError): [^\n]*\s*\Z'
)


def _broken(tail: str) -> bool:
    """The run never reached the code it meant to show: it could not start, or its own script is wrong."""
    if _BROKEN_RUN.search(tail):
        return True
    if "NameError" not in tail and "ImportError" not in tail:
        return False
    own = _OWN_NAME.search(tail.rstrip().removesuffix("</output>").rstrip() + "\n")
    return own is not None and is_reproduction(own.group(1))


def is_reproduction(command: str) -> bool:
    """A run of a script written to show the reported bug (the red phase)."""
    return bool(_REPRO.search(command))


# The model saying it runs tests it has just written to watch them fail, before the code they test exists;
# not when it says the code is written (GREEN), runs them again, or expects them not to fail.
_RED = re.compile(
    r"\bRED (?:phase|tests?)\b|红灯|\b(?:see|watch) (?:it|them|the tests?|this) fail\b|"
    r"\bexpect(?:ing)? (?:it|them|the tests?|this) to fail\b(?! (?:with|on|when|for|if|gracefully)\b)|"
    # (a command's own description: "Run test to confirm it fails (no games.ts yet)")
    r"\b(?:confirm|verify|ensure|make sure)(?: that)? "
    r"(?:it|they(?: all)?|them|this|the (?:new )?tests?|(?!(?:no|zero|none|any)\b)[\w-]+ tests?) fails?\b"
    r"(?! (?:with|on|when|if|gracefully|early|fast|closed|open|loudly|safely|silently|properly|correctly)\b)"
    r"(?! for (?!the (?:right|expected) reason))",
    re.I,
)
_NOT_RED = re.compile(
    r"\bGREEN\b|\bagain\b|\bno longer\b|\bnow that\b|n'?t (?:expect|see|want)|\bnot (?:expect|see)|"
    r"绿灯|再跑|再次|再运行|还是|不再|仍然是|一直|修复|已修|"  # (green, run again, still, no more, always, fix)
    r"\bafter (?:the|my|our|this) (?:fix|change)|\bimplemented\b|\bno (?:\w+ )?tests? fails?\b",
    re.I,
)
# What a red run may show: the code under test not written yet (a test broken otherwise is the model's).
_UNWRITTEN = re.compile(
    r"Cannot find module|No module named|ModuleNotFoundError|is not defined|cannot import name|"
    r"does not provide an export named"  # (an ES module's import of a name it does not have yet)
)
# The model saying it expects its change to work: a reproduction run after it is a check, not the red phase.
_EXPECTS = re.compile(
    r"\b(verify|confirm|check|ensure|see|test)\b[^.\n]{0,60}\b(fix|fixed|works?|working|resolved|solved|changes?|"
    r"now|correct(ly)?)\b|\b(again|re-?run|once more)\b|\bnow (that|let|we)\b|\bafter (the|our|my|these) (fix|change)",
    re.I,
)


def expects_success(reply_text: str) -> bool:
    return bool(_EXPECTS.search(reply_text[-1500:]))


# -- words, anchored --

# A line that starts an error report, in the last lines of a command's output.
_ERROR_LINE = re.compile(
    r"^\s*(?!\s)(?:\x1b\[[\d;]*m)*"  # a terminal's colour codes first
    r"(Traceback \(most recent call last\):|(?:[A-Za-z_]\w*\.)*[A-Z]?\w*(Error|Exception)( \[\w+\])?: |"
    r"Sorry: \w+Error: |"  # py_compile's own report of a file that does not compile
    r"error(\[E\d+\])?: |"
    r"fatal: |FAILED\b|FAIL\b|npm ERR!|ERROR: |E\s{3}|BUILD FAILURE|BUILD FAILED|make: \*\*\*|"
    r"SyntaxError|panic: |Segmentation fault|Aborted|.*: command not found$|.*No such file or directory$|"
    r".*can't open file|"
    # compilers (gcc, clang, javac, go, tsc) and build tools (Maven, Gradle) name the file and line
    r"[^\s:]+:\d+(:\d+)?: (fatal )?error: |[^\s(]+\(\d+,\d+\): error TS\d+|[^\s:]+:\d+:\d+ - error TS\d+|"
    r"Found \d+ errors? in |\[ERROR\] |\[INFO\] BUILD FAILURE|"
    r"FAILURE: Build failed|> Task \S+ FAILED|\[?Your proposed edit has introduced new syntax error|"
    # JavaScript bundlers (webpack, Next.js, Vite, Vue CLI, esbuild, Parcel, Rollup, turbo), MSBuild and Xcode
    # saying their build failed
    r"(?:ERROR\s+)?Failed to compile\b|> Build (?:failed because|error occurred)|error during build:|"
    r"ERROR in (?:\.{0,2}/|[\w@.-]+/|[\w.-]+\.\w+\b|[A-Za-z]:\\|Entry module not found|child compilations)|"
    r"✘ \[ERROR\] |🚨 Build failed|\[!\] \w*Error: |"
    r"ERROR\s+run failed: |Build FAILED\.|Build failed with \d+ error|\*\* BUILD FAILED \*\*|"
    # docker's legacy builder
    r"(?:COPY|ADD) failed: |The command '.*' returned a non-zero code: \d+|"
    # BuildKit's, as docker compose prints it (docker build's own starts `ERROR: `)
    r"(?:target [\w.-]+: )?failed to solve: )",
)
# Test runners' own summaries.
# Test runners' own summaries (matched at a line's start), and a count of failures anywhere in a line.
_SUMMARY = re.compile(
    r"(=+ .*\b\d+ (failed|errors?)\b|FAILED \S|Tests?:.*\b\d+ failed|test result: FAILED|FAILED \(|--- FAIL|"
    r"FAIL\s|ERRORS?$|"
    # dotnet test (vstest's summary, its closing line, the terminal logger's of .NET 8 and later, and
    # Microsoft.Testing.Platform's, whose counts follow on lines of their own)
    r"Failed!\s+-\s+Failed:\s+[1-9]|Test Run Failed\.|\s*Test summary: total: \d+, failed: [1-9]|"
    r"Test run summary: Failed!)"
)
# A count of failures: one or more (not "0 failed": cargo says it of every pass; "1,024 failed" is one)
_SOME = r"[1-9](?:[\d,]*\d)?"
_FAILED_COUNT = re.compile(rf"\b{_SOME} (failing|failed)\b")
# A runner's count of failed tests, as its summary line begins (Playwright's "  5 failed", mocha's "  2 failing",
# pytest's "=== 1 failed, 3 passed in 2s ===", jest's "Tests:  1 failed, 4 passed", vitest's "Tests  2 failed")
_FAILURES_COUNTED = re.compile(rf"\s*(?:=+ |Tests?:?\s+|Test Files\s+)?{_SOME} (?:failing|failed)\b")
_MOCHA_FAILING = re.compile(r"\s*[1-9]\d* failing\s*$")  # (above the failures' stacks, not among the last lines)
# JUnit's count, anywhere in a Maven or Gradle line ("[ERROR] Tests run: 4, Failures: 1, ...")
_JUNIT = re.compile(r"Tests run: \d+, Failures: ([1-9]|\d+, Errors: [1-9])")
_PASSED = re.compile(r"(=+ .*\b\d+ passed\b|OK\b|Tests?:.*\bpassed\b|test result: ok|PASS\b|.*\b[Aa]ll tests passed\b)")
_SUMMARY_WORDS = ("ail", "AIL", "rror", "RROR")  # one is in every match of _SUMMARY, _FAILED_COUNT and _JUNIT
_PASSED_WORDS = ("pass", "PASS", "OK", "ok")  # one is in every match of _PASSED
# A bundler in watch mode or a dev server that built again: the errors before it are behind it, not after
_BUILT = re.compile(r".*\b[Cc]ompiled successfully\b|\s*[✓✔] Compiled\b")


# Failures that are the environment's, not the model's: the lead would meet them too.
ENVIRONMENT = Gated(
    re.compile(
        r"(No module named '?[\w.]+'?|ModuleNotFoundError|ImportError: No module|"
        r"Could not resolve host|Temporary failure in name resolution|Name or service not known|Network is unreachable|"
        r"ProxyError|Max retries exceeded with url|No matching distribution found|"
        # a time-out on another machine (on this one, a server the model started may be what hangs)
        r"HTTPS?ConnectionPool\(host='(?!localhost'|127\.|0\.0\.0\.0'|::1')[^'\n]*', port=\d+\): "
        r"(?:Read|Connect) timed out|"
        # ssh's words for another machine it never reached (a person's network, not the command; not this one)
        r"ssh: connect to host (?!(?i:localhost|ip6-localhost)(?:\.\S*)? |127\.|0\.0\.0\.0 |\[?::1\]? |::ffff:127\.|"
        r"0:0:0:0:0:0:0:1 )\S+ port \d+: (?:(?:Connection|Operation) timed out|No route to host)|"
        r"kex_exchange_identification: (?:read: )?Connection (?:reset by peer|closed by remote host)|"
        r"Could not find a version that satisfies|"
        r"externally-managed-environment|Could not find an activated virtualenv|"
        r"Connection refused|ConnectionRefused|getaddrinfo|ENOTFOUND|EAI_AGAIN|"
        r"No space left on device|Read-only file system|Operation not permitted|"
        r"(API|[Aa]pi)[ _-]?([Kk]ey|KEY)|_TOKEN'|(?<!SessionState)Unauthorized|401 Unauthori[sz]ed|403 Forbidden|"
        # a site refusing the fetch (its bot protection, its rate limit), or sending it elsewhere (a short link's
        # redirect the fetch does not follow: the lead's fetch would not either), in axios's words (Claude Code's
        # WebFetch)
        r"\A\s*(?:Error: )?Request failed with status code (?:403|429|30[1-8])\s*\Z|"
        r"\b(java|javac|mvn|gradle|node|npm|npx|yarn|cargo|rustc|go|make|cmake|gcc|g\+\+|docker|pip|pip3|python2|"
        r"ruff|mypy|black|flake8|pylint|eslint|tsc|prettier|grep|head|tail|sed|awk|curl|wget|git|rg|jq|unzip|"
        r"ruby|php|composer|dotnet|kubectl|psql|mysql|redis-cli|pytest|tox|poetry|conda): (command )?not found|"
        r"command not found: (java|javac|mvn|gradle|node|npm|cargo|go|make|docker|pip|pytest)\b|"
        r"[Pp]eer authentication failed|Missing X server|\$DISPLAY|Host system is missing dependencies|"
        # a database refusing the credentials the machine has (PostgreSQL, MySQL's 1045)
        r"password authentication failed for user|Access denied for user '[^'\n]*'@|"
        r"Executable doesn'?t exist at|Failed to (launch|initialize) (the )?browser|is not installed|not installed\b|"
        r"[Cc]annot find Java|JAVA_HOME|[Cc]ould not resolve host|[Nn]etwork is unreachable|[Cc]onnection refused|"
        # credentials the machine lacks, in its tools' words (the word alone is in test names, code and docs)
        r"error (?:getting|storing) credentials|[Uu]nable to locate credentials|(?:No|Default)CredentialsError|"
        r"Bad credentials|No existing credentials found|DefaultAzureCredential failed|"
        r"[Cc]ould not (?:automatically determine|find|load) (?:default )?credentials|"
        r"[Nn]ot logged in(?:to)?\b[^\n]{0,80}?\b(?:run|use)\b:?\s*[`'\"]?[\w.-]+(?: auth)? login\b|"
        r"[Oo]peration not permitted|[Nn]o space left on device|[Rr]ead-only file system|"
        r"ERR_CONNECTION_REFUSED|ECONNREFUSED|not agreed to the Xcode license|Ripgrep search timed out|"
        # a browser's words for no network, or a site that does not answer (as curl's above)
        r"net::ERR_(?:INTERNET_DISCONNECTED|NAME_NOT_RESOLVED|CONNECTION_TIMED_OUT|CONNECTION_RESET|"
        r"ADDRESS_UNREACHABLE)\b|Page\.goto: Timeout \d+ms exceeded|"
        r"database is locked|EADDRINUSE|[Aa]ddress already in use|error while attempting to bind on address|"
        r"\b[Pp]ort \d+ is (?:already )?in use by another process|"
        # Claude Code on Windows failing to convert a path through Git Bash before running anything
        r"^(?:<tool_use_error>Error calling tool \(\w+\): )?Command failed: cygpath\b|"
        # mini-swe-agent's harness failing to start a command in its working folder (gone): nothing of it ran
        r"\A<exception>An error occurred while executing the command: \[Errno 2\] No such file or directory: "
        r"'[^'\n]*'</exception>|"
        r"not in (?:your |the )?PATH\b|gpg failed to sign the data|cannot open '/dev/tty'|"
        r"Author identity unknown|Please tell me who you are|sudo: a (?:terminal|password) is required|"
        # git's remote refusing this machine's keys, or the account they log in as (a login it asks for may be
        # a repository that is not there)
        r"Permission denied \(publickey|(?m:^)(?:remote|ERROR): Permission to \S+ denied to |"
        # a program run through `timeout`, `nohup` or `env` that is not installed; a Node package not installed
        r"failed to run command ['‘][\w.+-]+['’]: No such file or directory|"
        r"Cannot find (?:package|module) '(?![./]|@/|~/)[\w@][\w./@+-]*'|"
        # a script checked out with Windows line ends; PowerShell's word for a program not installed
        r"‘bash\\r’|\$'\\r': command not found|"
        r"The term '[A-Za-z][\w.]*' is not recognized as (?:the|a) name of a cmdlet|"
        # a toolchain a tool needs, not installed, in the tool's words; git refused its lock file by a sandbox
        r"(?<![\w./-])(?:cargo|rustc|node|npm|java|go|docker|dotnet|gcc|cmake|python3?) was not found"
        r"(?:[.,;:]? *(?:[Ii]nstall|[Pp]lease install)|,? (?:on|in) (?:your |the )?PATH)|"
        r"Unable to create '[^'\n]*\.lock': Permission denied|SandboxDenied\b|"
        # a git hook of husky's whose script its install never wrote (the project's dependencies not installed)
        r"\.husky/_/husky\.sh: No such file or directory|"
        # Claude Code's MCP client: the server failed or lost the session (a 4xx is the call's arguments)
        r"Streamable HTTP error: (?:Error POSTing to endpoint \(HTTP (?:5\d\d|404|429)\)|Failed to open SSE stream)|"
        r"MCP session has been terminated|"
        # Claude Code's own bounds on the session, whoever asks: a folder outside the ones it may work in (not the
        # person answering this call), a site its WebFetch may not fetch from
        r"(?m:^)(?:<tool_use_error>)?(?:Error: )?[^\n]{1,300}? was blocked\. For security, Claude Code may only\b|"
        r"(?m:^)(?:<tool_use_error>)?(?:Error: )?Claude Code is unable to fetch from \S)",
    ),
    (
        "no module", "modulenotfound", "resolve host", "name resolution", "service not known", "unreachable",
        "proxyerror", "max retries", "matching distribution", "timed out", "satisfies",
        "externally-managed", "activated virtualenv", "refused",
        "getaddrinfo", "enotfound", "eai_again", "no space left", "read-only file", "not permitted", "pi key",
        "pi_key", "pikey", "pi-key", "_token'", "unauthori", "forbidden", "not found", "authentication failed",
        "x server", "$display", "missing dependencies", "exist at", "browser", "not installed", "java",
        "credential", "logged in", "xcode", "publickey",
        "ripgrep", "database is locked", "eaddrinuse", "address already in use",
        "attempting to bind", "in use by another process", "gpg failed", "/dev/tty",
        "access denied for user", "cygpath",
        "not in your path", "not in the path", "not in path", "identity unknown", "who you are", "sudo: a",
        "failed to run command", "cannot find package", "cannot find module", "bash\\r", "$'\\r'",
        "is not recognized as", "while executing the command", "net::err_", "page.goto: timeout",
        "was not found", ".lock': permission denied", "sandboxdenied", "husky.sh", "streamable http error",
        "mcp session", "no route to host", "kex_exchange_identification", "request failed with status code",
        "permission to ", "for security, claude code", "unable to fetch from",
    ),
)  # fmt: skip


# A browser tool whose browser, tab or bridge extension went away (closed by the person, never set up).
_BROWSER_GONE = re.compile(
    r"Target page, context or browser has been closed|Make sure the \"[^\"\n]+\" extension is installed|"
    r"Browser environment took too long to respond"  # OpenHands' browser process, not the page
)

# A command refusing its own arguments: it never ran, so its status is no answer.
_MISUSED = re.compile(
    r"^\S+: (?:invalid|unrecognized|illegal|unknown) option\b.*$|^sleep: invalid time interval\b.*$|"
    r"^fatal: cannot change to '.*': No such file or directory$|"
    # argparse's refusal (a Python CLI, SWE-agent's file editor)
    r"^[\w.-]+: error: (?:unrecognized arguments|the following arguments are required|argument \S+: |"
    r"invalid choice).*$|"
    # clap's, the parser of Rust CLIs (ripgrep, fd): 2.x and 3.x, then 4.x
    r"^error: (?:Found argument '.*' which wasn't expected|unexpected argument '.*' found)\b.*$|"
    # PowerShell's and Windows' find.exe refusing a Unix command's options (`ls -la`, `find . -name`)
    r"A parameter cannot be found that matches parameter name\b.*$|^FIND: Parameter format not correct$|"
    r"Parameter cannot be processed because the parameter name '[^'\n]*' is ambiguous\b.*$|"
    r"Missing an argument for parameter '[^'\n]*'\..*$|"
    r"^FINDSTR: Bad command line$|"
    r"^(?:u?grep|egrep|rg|ag): (?:error: )?"
    r"(?:Unmatched|Invalid|regex parse error|error at position|Trailing backslash|unrecognized flag).*$",
    re.M,
)
# Words each of _MISUSED's refusals holds: one of its alternatives is not at a line's start, so it is tried at
# every place of an output; the words are looked for first (most outputs hold none).
_MISUSED_WORDS = (
    " option", "sleep: ", "fatal: cannot change", ": error: ", "argument", "A parameter cannot", "FIND: Parameter",
    "is ambiguous",
    "FINDSTR: Bad", "Unmatched", "Invalid", "regex parse error", "error at position", "Trailing backslash",
    "unrecognized flag",
)  # fmt: skip
# GNU tools' last word on arguments they refuse (`timeout 10` with no command to run): read only where a
# probe failed (a command that went on, or a probe's `|| echo`, may print it for a step that did nothing)
_GNU_REFUSED = re.compile(r"^(?:\S+: )?Try '[\w./-]+ --help' for more information\.$", re.M)
# A line saying a path was refused (a search walking into protected folders: `find: '/x': Permission denied`,
# ripgrep's `/x: Operation not permitted (os error 1)`; a start-up script's `x.sh: line 3: /bin/ps: ...`).
# Not a connection the sandbox refused (`[Errno 1] Operation not permitted`): that is why a download hangs.
_REFUSED_ON_THE_WAY = re.compile(
    r"^(?:[\w.-]+: )?['‘]?(?:\.{0,2}/|~/|[\w.-]+/)[^\n'’:]*['’]?: (?:line \d+: [^\n:]+: )?"
    r"(?:Operation not permitted|Permission denied)(?: \(os error \d+\))?$",
    re.M,
)
# A script's `#!/usr/bin/env X` whose X is not on the PATH (GNU's env names itself by its path, macOS's does not)
_SHEBANG = re.compile(r"(?:^|\n)(?:/usr/bin/)?env: ['‘]?([\w.+-]+)['’]?: No such file or directory")
# A probe's program that never ran: not installed, or not PowerShell's (`grep` typed into it)
_NOT_RUN = re.compile(
    r"command not found|is not recognized as (?:the name of a cmdlet|an internal or external command)"
)
# A command that only reads, or a tool or runner asked about what is not there: its "no" is an answer.
_READS_ONLY = frozenset(
    {"cat", "head", "tail", "nl", "wc", "less", "more", "file", "stat", "Get-Content", "gc", "type"}
)
# How agents print a command's exit status, at a line start (`Reader.STATUS` reads it; `_absent` drops the
# whole line: it is the agent's, not the command's output).
_STATUS_WORDS = (
    r"^(?:[Ee]xit code:? |Process exited with code |[Ee]xit status:? |\[The command completed with exit code |"
    r"\[Command finished with exit code |<returncode>)"
)
_STATUS_LINE = re.compile(_STATUS_WORDS + r"-?\d+[^\n]*\n?", re.M)
# Names whose installed form is another (`python3`, `pip3`): calling these is the model's slip.
# cmd.exe's own commands typed into bash (`del`, `copy`) are the same slip, and so is Codex's editing tool
# typed into a shell that has no such program (models trained on Codex call it anywhere).
_ALIASED = frozenset(
    {"python", "pip", "del", "copy", "move", "cls", "ren", "rd", "md", "xcopy", "findstr", "erase", "mklink"}
    | {"apply_patch", "applypatch"}
)
_PYTHONS = frozenset({"python", "python3", "py"})
_NOT_FOUND_BY_SHELL = (
    r"^(?:\S*/)?(?:(?:ba|da|z)?sh: (?:line \d+: |\d+: )?{0}: (?:command )?not found|zsh: command not found: {0})$|"
    r"^\(eval\):\d+: command not found: {0}$"  # zsh running the command through eval (Claude Code's)
)
_CMDLET = re.compile(r"[A-Z][a-z]+-[A-Z]\w*\Z")  # PowerShell's Verb-Noun (Select-String, Get-ChildItem)
# A Unix tool, or cmd.exe's own word, typed into PowerShell, which has neither (`nl`, `call x.bat`): the model's
# slip, not a program the machine lacks (and what failed after it, a venv never activated, follows from it)
_NOT_POWERSHELLS = frozenset(
    {"nl", "grep", "egrep", "sed", "awk", "head", "tail", "wc", "touch", "which", "xargs", "cut", "tr", "export"}
    | {"source", "chmod", "ln", "du", "df", "uniq", "basename", "dirname", "realpath", "readlink"}
    | {"call", "setlocal", "endlocal", "goto"}
)
_NOT_RECOGNIZED = re.compile(r"The term '([^'\n]{1,200})' is not recognized as (?:the|a) name\b")


def _powershell_slip(text: str) -> tuple[int, str] | None:
    """(line, line) of PowerShell's answer to a Unix tool or cmd.exe's word, where every term it did not
    recognize is one (`which docker; docker ps` with no docker: the machine's)."""
    terms = _NOT_RECOGNIZED.findall(text[:20000])
    if not terms or not all(t in _NOT_POWERSHELLS for t in terms):
        return None
    return first_match(_NOT_RECOGNIZED, text[:20000])


def _put_on_path(command: str, program: str) -> bool:
    """The command sets PATH (`export PATH=...`, or `PATH=... program`) before it runs `program`."""
    set_before = False
    for segment in _split(command[:4000])[0:200:2]:
        raw = segment.split()
        if raw[:1] == ["export"]:
            raw = raw[1:]
        if raw[:1] and raw[0].startswith("PATH="):
            if next((w for w in raw[1:] if "=" not in w), None) == program:  # `PATH=... program`
                return True
            set_before = True
        elif set_before and (_words(segment) or [""])[0] == program:
            return True
    return False


_NO_TESTS = re.compile(r"(?:collected 0 items|no tests ran)", re.I)


# A read's own words for a file that is not there, alone on its line (a failed `cd` is no read).
_NOT_FOUND = re.compile(r"^(?![^\n]*\bcd: )[^\n]*: No such file or directory$\n?", re.M)
# Programs that only read or look, whatever their arguments (`find` and `sed` are checked apart).
_LOOKS = _READS_ONLY | {
    "ls", "tree", "grep", "egrep", "fgrep", "rg", "ag", "ack", "fd", "which", "whereis", "test", "[", "realpath",
    "readlink", "echo", "printf", "true", ":", "pwd", "sed", "find",
    # PowerShell's (Codex on Windows runs it): listings, and the filters a listing is piped through
    "Get-ChildItem", "gci", "Get-Item", "Resolve-Path", "Select-Object", "Select-String", "Sort-Object",
    "Format-List", "Format-Table", "Out-String",
}  # fmt: skip
_READS_OR_FILTERS = _LOOKS | FILTERS
_ACTS = re.compile(r"^-(?:[a-zA-Z]*i|-in-place|delete|exec|execdir|ok|okdir|fprint\w*)\b")


def _only_reads(command: str) -> list[str] | None:
    """The programs of a line in which every command only reads or looks (`sed -n`, `cat`, `ls`, `grep`;
    `echo` and `cd` between them), else None: no redirection into a file."""
    if re.search(r">(?!\s*/dev/null|&)", quoted_away(command)):
        return None
    names = []
    for segment in _split(command.strip())[0::2]:
        words = _words(segment)
        if not words:
            if segment.strip() and not re.match(r"\s*cd\b", segment):
                return None  # what `_words` does not read
            continue
        if words[0] not in _LOOKS or (words[0] in ("sed", "find") and any(_ACTS.match(w) for w in words[1:])):
            return None
        names.append(words[0])
    return names


_PRINTS = _READS_ONLY | {"sed", "echo", "printf"}
_POWERSHELL_SAYS = ("A parameter cannot be found", "FIND: ", "Parameter cannot be processed", "Missing an argument")


# A program's usage, first in its output: printed when it refuses what it was given.
_USAGE = re.compile(r"[Uu]sage: +(?:\S*/)?([\w.-]+)[^\n]*")
_ASKS_HELP = re.compile(r"(?:^|[\s;|&(])(?:-h|-\?|--help(?:=\S*)?|-help|help|usage|--usage|/\?)(?=[\s;|&)]|$)")
_REDIRECTION = re.compile(r"\d*[<>]|&>")


def _usage_shown(o: Outcome) -> tuple[int, str] | None:
    """The program the command ran answered with its usage, not asked for it: it refused its arguments
    (`bun run --bun -e ...`), and a filter after it hid its status."""
    head = o.text[:2000]
    body = head.lstrip()
    cmd = o.command or ""
    if (m := _USAGE.match(body)) is None or _ASKS_HELP.search(cmd):
        return None
    words = [w for w in _first_words(cmd) if not _REDIRECTION.match(w)]
    if not words or m.group(1) != words[0].rsplit("/", 1)[-1] or all(w in m.group(0) for w in words[1:]):
        return None  # run as bare as its usage says (`bun`, `docker compose`): to see what it takes; another's
    return head.count("\n", 0, len(head) - len(body)) + 1, m.group(0).strip()[:160]


# An error and its JavaScript stack, all of a script's output: the script caught its own error, printed it and
# ended with 0 (`catch (e) { console.error(e) }`); not a test runner's, which prints the errors it expects.
_THROWN = re.compile(r"\A((?:Uncaught )?(?:\w+\.)*\w*Error: [^\n]+)\n(?:[^\n]*\n)*?[^\S\n]+at [^\n]+:\d+:\d+\)?\Z")
_SCRIPT_RUNNERS = frozenset({"node", "bun", "deno", "tsx", "ts-node", "npx"})


# Windows' own programs refusing a switch Git Bash turned into a path (`taskkill /F` as `F:/`) or a stray `2`
# from cmd.exe's `2>nul`: read where the command runs one (a search of a log may print the same line)
_WINDOWS_REFUSED = re.compile(r"^ERROR: Invalid argument/option - '[^'\n]*'\.", re.M)
_WINDOWS_PROGRAMS = re.compile(r"\b(?:taskkill|tasklist|schtasks|netsh|wmic|icacls|reg|sc|where)(?:\.exe)?\s", re.I)


def _misused(o: Outcome) -> tuple[int, str] | None:
    """A line in which a program refuses its arguments or its pattern; not one of a file the command only
    printed (`cat` of a test snapshot that holds another program's refusal), unless it is the printer's own
    (`cat: invalid option`, or PowerShell refusing the option it was given, whose words name no program)."""
    text = o.text[:2000]
    own: tuple[str, ...] | None = None  # the starts of the printer's own refusals (None: not only a printer)
    for n, m in enumerate(_MISUSED.finditer(text) if any(map(text.__contains__, _MISUSED_WORDS)) else ()):
        if n == 0:  # (read at the first match only: most outputs have none)
            names = _only_reads(_CD.sub("", o.command or "")) or []
            if names and all(x in _PRINTS for x in names):
                own = (*(f"{x}:" for x in names), *_POWERSHELL_SAYS)
        if own is None or m.group(0).startswith(own):
            return text.count("\n", 0, m.start()) + 1, m.group(0).strip()[:160]
    if "Invalid argument/option" in text and _WINDOWS_PROGRAMS.search(o.command or ""):
        return first_match(_WINDOWS_REFUSED, text)
    return None


# PowerShell's id of each error it reports, the same in every language it speaks (its words are not:
# "Cannot find path ... because it does not exist.", "Der Pfad ... kann nicht gefunden werden").
_PS_ERROR_ID = re.compile(r"^[^\S\n]*\+ FullyQualifiedErrorId : ([\w.]+)(?:,|[^\S\n]*$)", re.M)
# An error record's own lines after its message (the command, its marker, its category and id)
_PS_RECORD_LINE = re.compile(r"^[^\S\n]*\+[^\n]*\n?", re.M)


def _stopped_at_look(command: str, text: str) -> bool:
    """`ls x && node x` that said only the look's own complaint (`ls: cannot access 'x'`): nothing after `&&`
    ran, so the look answered no. Only a plain chain (no `;`, `|`, `&`, `||`, new line or substitution, after
    which another command may have run) whose every line of output is the look's; `echo`s before the look
    say a line each, and one `if ...; then ...; fi` may end the chain (it ran only if all before it had)."""
    command = _CD.sub("", command)
    if len(text) > 4000:
        return False
    segments = command.split("&&")
    if len(segments) > 2 and (last := segments[-1].strip()).startswith("if ") and last.endswith(" fi"):
        if last.count(" fi") != 1 or last.count("if ") != 1 or _NOT_A_PLAIN_CHAIN.search(last.replace(";", "")):
            return False
        segments = segments[:-1]  # (its `;` are its own: the chain ends at it)
    if _NOT_A_PLAIN_CHAIN.search("&&".join(segments)):
        return False
    echoes = 0
    while echoes < len(segments) - 1 and segments[echoes].split()[:1] == ["echo"]:
        echoes += 1
    words = segments[echoes].split()
    if not words or words[0] not in PROBES:
        return False
    said = [line for line in _STATUS_LINE.sub("", text).splitlines() if line.strip()][echoes:]
    return bool(said) and all(line.startswith(f"{words[0]}: ") for line in said)


_NOT_A_PLAIN_CHAIN = re.compile(r"[;|\n`]|\$\(|(?<![&>])&(?![&>])")  # (`2>&1`, `&>` redirect: no command)


def _absent(command: str, o: Outcome) -> bool:
    """The command looked for a file, a test or a tool that is not there, and said so; nothing else
    went wrong: the absence is the answer (`cat README.md`, `pytest -k nothing`, a toolchain not
    installed, which the lead would meet too, is the environment's and handled there)."""
    writes = any(not p.startswith("/dev/") for p in _REDIRECT.findall(command))  # `cat a >> b`; not `2>&1`
    names = None if writes else _only_reads(command)
    if names and _NOT_FOUND.search(o.text):
        # reads (`cat a`, `sed -n 1,40p a; cat b`): the files not there are answers, unless anything else
        # went wrong: a read's own complaint ("cat: x: Is a directory"), the shell's, an error line
        rest = _NOT_FOUND.sub("", _STATUS_LINE.sub("", o.text))
        said = re.compile(
            rf"^(?:{'|'.join(map(re.escape, names))}|(?:/usr)?(?:/bin/)?(?:ba|z|da)?sh|cd|\(eval\)):", re.M
        )
        return said.search(rest) is None and anchored_error(rest) is None
    if names and "{" not in command and (ids := _PS_ERROR_ID.findall(o.text)):  # (a script block runs anything)
        if not all(i == "PathNotFound" for i in ids):
            return False
        # PowerShell's reads of paths not there, and nothing else said it failed: a native program's own
        # words (rg's, find.exe's), which come with no record
        rest = _PS_RECORD_LINE.sub("", _STATUS_LINE.sub("", o.text))
        said = re.compile(rf"^(?:{'|'.join(map(re.escape, names))}):", re.M | re.I)
        return said.search(rest) is None and anchored_error(rest) is None and _misused(o) is None
    if "any commits yet" in o.text and _git_ran_last(command) and (rest := _NO_COMMITS.sub("", o.text)) != o.text:
        # git's history asked of a repository with none: "none" is the answer (unless something else said it
        # failed: a commit hook's errors before it)
        told = "\n".join(line for line in rest.splitlines() if not _GIT_LISTING.match(line))
        return anchored_error(rest) is None and _FAILED_WORD.search(told) is None
    if o.status == 5 and re.search(r"\bpytest\b", command):
        return True  # pytest's own status for "no tests collected" (a -k or a path that selected nothing)
    return o.status == 5 and TESTS.search(command) is not None and _NO_TESTS.search(o.text[-2000:]) is not None


_FAILED_WORD = re.compile(r"error|fail", re.I)
# git's listings of files (status, short and long; diff --stat), whose names may hold those words
_GIT_LISTING = re.compile(r"[ MADRCUT?!]{2} \S|\t|\s\S.*\|\s+\d+ [+-]*$")


def _git_ran_last(command: str) -> bool:
    """A git command of the line ran last: nothing after it but `&&` steps (its failure stopped them).
    One scan back from the end (a copy of the rest for each segment was quadratic)."""
    parts = _split(command[:20000])
    while len(parts) > 2 and not parts[-1].strip():
        parts = parts[:-2]  # `git log;`: nothing after the separator
    k = len(parts) - 1
    while k >= 2 and parts[k - 1] == "&&":
        k -= 2
    return any(_words(parts[j].strip().lstrip("("))[:1] == ["git"] for j in range(k, len(parts), 2))


_NO_COMMITS = re.compile(r"^fatal: your current branch '[^'\n]*' does not have any commits yet$", re.M)
# An import of the repository's own paths (`src.main.java...`, a Java package) is the model's mistake,
# not a missing package.
_OWN_MODULE = re.compile(r"No module named '(?:src|com|org)\.")
# A package missing on the person's machine, in what they pasted: the lead would meet it too.
_MISSING_PACKAGE = re.compile(
    r"^[^\S\n]*(?:E\s+|>\s*)?(?:ModuleNotFoundError|ImportError): No module named '?(?!(?:src|com|org)\.)([\w-]+)",
    re.M,
)
_FIRST_LETTER = re.compile(r"\W*[^\W\d_]")
_WORD_START = re.compile(r"\s+\S")
_WORD_END = re.compile(r"[^\W_]")
# A module Python could not import; the options that name a settings module
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_SETTINGS = ("--settings", "--ds", "DJANGO_SETTINGS_MODULE")


def _test_labels(words: list[str]) -> list[str]:
    """What a Python test runner was told to load (`python -m unittest a.b`, `manage.py test app`,
    `django-admin test app`, Django's `runtests.py app`): the words after the runner."""
    if words[:1] and words[0].rsplit("/", 1)[-1] in _PYTHONS:
        words = words[1:]
    if words[:2] == ["-m", "unittest"]:
        return words[2:]
    if words[:3] == ["-m", "django", "test"]:
        return words[3:]
    if words[:1] and words[0].endswith("runtests.py"):
        return words[1:]
    if len(words) > 1 and words[1] == "test" and (words[0].endswith("manage.py") or words[0] == "django-admin"):
        return words[2:]
    return []


def _own_module(text: str, command: str | None) -> bool:
    """Python could not import a module of the repository's own, or one the command named itself to a test
    runner (a label) or as its settings: the model's name was wrong; no package is missing."""
    if _OWN_MODULE.search(text):
        return True
    missing = {m[1] for m in _NO_MODULE.finditer(text[-20000:])}
    if not missing or not command:
        return False
    named = set()
    for segment in _split(command[:4000])[::2]:
        for before, word in itertools.pairwise(["", *segment.split()]):
            key, _, value = word.strip("'\"").partition("=")
            if key in _SETTINGS:  # --settings=x, DJANGO_SETTINGS_MODULE=x
                named.add(value)
            elif before in _SETTINGS:  # --settings x
                named.add(word)
        named.update(_test_labels(_words(segment)))
    return any(w == m or w.startswith(m + ".") for w in named if _DOTTED.fullmatch(w) for m in missing)


def _prose(line: str) -> bool:
    """Whether `line` is a person's own prose (a letter first, four words or more, the last one ended by a
    stop or a colon), not a line of what they pasted. (As one regex it was quadratic: 3 s at 20 KB.)"""
    text = line.rstrip()
    first = _FIRST_LETTER.match(text)
    if first is None or len(text) < 2 or text[-1] not in ".!?:…" or not _WORD_END.match(text[-2]):
        return False
    return len(_WORD_START.findall(text, first.end(), len(text) - 1)) >= 3


_COLOURS = re.compile(r"\x1b\[\??[\d;]*[A-Za-z]")


def _missing_package(text: str, reply: str) -> tuple[int, str] | None:
    """(line, line) of a missing package that ends what a person pasted, with no words of theirs before
    it (theirs may say the reply chose it). Not a module the reply wrote (`utils.py`, `app/`): its import
    is the reply's mistake."""
    lines = text.splitlines()
    first = next((x for x in lines if x.strip()), "")
    if _prose(first) and not _PASTED.match(first) and not _ERROR_LINE.match(first):
        return None
    missing = None
    for m in _MISSING_PACKAGE.finditer(text):
        missing = m
    if missing is None or re.search(rf"(?<![\w.-]){re.escape(missing.group(1))}(?:\.py\b|/)", reply):
        return None
    at = text.count("\n", 0, missing.start())
    if any(_ERROR_LINE.match(x) for x in lines[at + 1 :]):
        return None  # another error after it: the package was there by then
    return at + 1, missing.group(0).strip()


# The shell's own start-up file failing (a `.bashrc` saved as UTF-16): the same lines before every command's
# output on that machine, none of them the command's (unless the command runs the file).
_STARTUP = re.compile(
    r"^(?:-?(?:ba|z)?sh: )?(?:\S*[/\\~]\.(?:bashrc|bash_profile|bash_login|profile|zshrc|zprofile|zshenv)(?:\.d/\S+)?|"
    r"/etc/(?:bash\.bashrc|bashrc|profile|zshrc|zprofile|zshenv)(?:\.d/\S+)?)(?::\d+)?: [^\n]*",
    re.M,
)
_RUNS_STARTUP = re.compile(r"\bsource\b|(?:^|[;&|]\s*)\.\s|\b(?:ba|z)?sh\s+-\w*[il]|bashrc|profile|zshrc|zshenv")


@dataclass
class _Reproduced:
    # a reproduction's command line: its status and output last before the model's first change (a script
    # rewritten before it prints its last form), and each after it
    before: dict[str, tuple[int | None, str]] = field(default_factory=dict)
    since: dict[str, set[tuple[int | None, str]]] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)  # the lines run since the last change (run again, they look)
    changed: bool = False  # the model changed the code before the reply
    reverted: bool = False  # ... and undid a change, or was asked to


def _runs_reproduction(command: str) -> bool:
    """The command runs a reproduction script (not a read of it: `cat repro.py`, `sed -n 1,9p repro.py`)."""
    return "<<" not in command and is_reproduction(program(command))


# What an output carries beside what the command printed, line by line: the agents' frames (OpenHands'
# old and new ones), SWE-agent's prompt and its reproduction scripts' closing line (a script that prints
# only that shows nothing either way); the frames saying the status are kept for comparing two runs.
_CHROME = (
    r"\[(?:Current working directory|Python interpreter): .*\]|</?output>|OBSERVATION:|\(Open file: .*\)|"
    r"\(Current directory: .*\)|bash-\$|Script completed successfully, no errors\."
)
_STATUS_FRAME = (
    r"<returncode>-?\d+</returncode>|\[The command completed with exit code -?\d+\.\]|"
    r"\[Command finished with exit code -?\d+\]|Exit code -?\d+"
)
_FRAMED = re.compile(rf"\s*(?:{_CHROME}|{_STATUS_FRAME})\s*")
_CHROMED = re.compile(rf"\s*(?:{_CHROME})\s*")
# The person asking to undo the change, in their first words; git or patch putting files back.
_UNDO = re.compile(
    r"\b(?:revert|undo|roll ?back)\s+(?:it|that|this|the|your|these|those|all|everything|last|my)\b|"
    r"\bput (?:it|them) back\b|\A\s*/undo\b",
    re.I,
)
_UNDO_COMMAND = re.compile(
    r"(?:^|[;&|(\n]\s*)(?:sudo\s+)?git\s+(?:stash(?!\s+(?:pop|apply|list|show|drop|branch))|"
    r"restore\s+(?!-S\b|--staged)|reset\s+--hard|revert\b|apply\s+(?:-R|--reverse)\b|"
    r"checkout\s+(?:HEAD\s+)?(?:--\s|\.(?:\s|$)|\S*\.\w{1,5}(?:\s|$)))|"  # files put back, not a branch
    r"(?:^|[;&|(\n]\s*)patch\s+(?:-R|--reverse)\b"
)


def _undoes(command: str | None) -> bool:
    """A command that puts files back (its words first: it is asked of every call of a reply)."""
    if not command or ("git" not in command and "patch" not in command):
        return False
    return _UNDO_COMMAND.search(command) is not None


def _shown(text: str, frames: re.Pattern[str] = _FRAMED) -> str:
    """What a command printed, `frames` dropped, line ends evened (line by line: one pattern over the
    whole text scanned on from every line's start)."""
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip() and not frames.fullmatch(line))


def own_output(o: Outcome) -> str:
    """A command's output with the lines the shell's start-up files printed before it blanked (kept as empty
    lines: evidence names lines of the output as it came)."""
    if not any(name in o.text for name in ("bashrc", "zshrc", "profile", "zshenv", "bash_login")):
        return o.text  # (the usual case: no substitution over a whole output on every failed run)
    return o.text if _RUNS_STARTUP.search(o.command or "") else _STARTUP.sub("", o.text)


def anchored_error(text: str) -> tuple[int, str] | None:
    """(line number, line) of the first error report among the last lines of a command's output;
    None when those lines also say the run passed and no summary reports a failure."""
    cut = max(0, len(text) - 8000)
    lines = text[cut:].splitlines()[-TAIL:]
    first = text.count("\n") + (0 if text.endswith("\n") else 1) - len(lines) + 1
    hit = None
    summary = passed = False
    for n, line in enumerate(lines):
        if "\x1b[" in line:  # a terminal's colours split words ("\x1b[31m16 failed"): read without them
            line = _COLOURS.sub("", line)
        # (most lines hold none of the words a summary or a pass holds: they are tried by no pattern)
        if any(map(line.__contains__, _SUMMARY_WORDS)) and (
            _SUMMARY.match(line) or _FAILED_COUNT.search(line) or ("Tests run:" in line and _JUNIT.search(line))
        ):
            summary = True
            hit = hit or (first + n, line.strip()[:160])
        elif hit is None and _ERROR_LINE.match(line):
            hit = (first + n, line.strip()[:160])
        elif hit is not None and not summary and _BUILT.match(line):
            hit = None
        elif (
            any(map(line.__contains__, _PASSED_WORDS))
            and _PASSED.match(line)
            and "failed" not in line
            and "error" not in line
        ):
            passed = True
    return None if passed and not summary else hit


# A person's complaint anywhere in the first sentence of their message (or the second: `Reader.correction`).
_COMPLAINT = Gated(
    re.compile(
        r"\b(still (doesn'?t|does not|isn'?t|is not|not|fail\w*|broken|get\w*|the same|wrong|errors?|crash\w*|"
        r"(won'?t|will not) (work|run|start|load|open|show|allow|let|compile|build|connect|save|display|render|launch|"
        r"pass|update|stop|change|go away|respond|install|boot))|"
        r"(doesn'?t|does not|didn'?t|did not|isn'?t|is not|won'?t|wasn'?t|aren'?t) (\w+ly )?"
        r"(work|run|build|compile|load|start|show|appear|fix|change|help|exist|save|persist)\w*|"
        # "doesn't seem to be working", "... to be fixed" (not "to be helpful", an adjective; not "don't seem to exist
        # yet, add them": news)
        r"(doesn'?t|does not|didn'?t|did not|don'?t|do not) (seem|appear) to (be (?=\w+(ing|ed)\b))?"
        r"(work|run|build|compile|load|start|show|fix|save|persist|solve|resolve|help|update|apply|trigger|"
        r"take effect|make (a|any) difference)\w*|"
        r"not working|no longer works?|"
        r"same (error|problem|issue|result)|^\W*same (thing|again|behaviou?r|output)\W*$|"
        r"(^|(?<!\bif )(?<!\bwhether )(the|this|that|same) )(issue|problem|error|bug) "
        r"(still )?persists?\b"
        r"(?! (until|across|between|by design))|"
        # not seeing what the reply said is there ("the warning" no longer there, "any problems": good news)
        r"\b(i|we) (still )?(don'?t|dont|do not|can'?t|cant|cannot) (\w+ly )?see (the|it|them|my|your|a|an|anything)\b"
        r"(?! (point|need|reason|value|use|problems?|issues?|errors?|bugs?|difference)\b)"
        r"(?![^.!?\n]*\b(any ?more|no longer)\b)|"
        r"^\W*(i|we) (can )?only see\b|"
        # another problem, said first (after thanks it is news of a new one; a ticket is not a fault)
        r"^\W*((but|and|so|now|also|still|ok|okay),? )?there('s|’s| (still )?(is|are|seems to be)) (still )?"
        r"(one more|another|a new) (problem|issue|error|bug)\b(?! (on github|in the tracker|i want you to)\b)|"
        # (not in a request: "make sure nothing shows when ..."; a capital is a new sentence without its stop)
        r"nothing (changed|happened)|(^|[.;!]\s*|\b(but|and|still|now|yet)\s+|\s(?=(?-i:N)))nothing (is )?"
        r"((displaying|showing|shows|displays|appears|renders|rendering)\b(?! (to be|broken|wrong|fine|off|odd)\b)|"
        # (not what should happen, said as praise or asked: "nothing happens offline, perfect", "... to old users?")
        r"(happens|happening)\b(?! (if|unless|by design)\b)"
        r"(?![^.!\n]*((?<!not )(?<!no )\b(perfect|great|good|correct|intended|as it should)\b(?! luck)|"
        r"(that'?s|is|as) expected|(?<!not )what (i|we) want|, right\?)))"
        r"(?![^.!?\n]*\b(any ?more|no longer)\b)|"
        # warnings the person got running it: not a warning banner asked for, not "no warnings" or news that they
        # are gone, not a question about where to see them
        # (the sentence is read on only where "i " or "we " starts: not from every word of it)
        r"\b(?=(i|we) )(?![^.!?\n]*\b(gone|fixed|resolved|silenced|rid of)\b)(?![^.!\n]*\?)(i|we) (still )?"
        r"(get|got|getting|see|seeing|am getting|are getting) (?!(no|zero|0|none|any|no more)\b)(\w+ ){0,3}?warnings?\b"
        r"(?! (banner|toast|dialog|icon|modal|popup|label|colou?r)s?\b)(?![^.!?\n]*\b(any ?more|no longer)\b)|"
        r"(it|that|this) (broke|is broken|failed)|"
        r"\b(it'?s|it is) (now |still )?(giving|throwing) (me )?(an? |this |the )?"
        r"(errors?|exceptions?)\b|(doesn'?t|does not|didn'?t|did not) (seem to |\w+ly )?look (right|correct)\b|"
        r"\bit'?s (\w+ )?(unusable|(even )?worse)\b|\b(is|are) (now |still )?unusable\b|"
        r"\bkeeps (failing|crashing|erroring|breaking|hanging|freezing|timing out|"
        r"throwing (an? |the )?(error|exception)|"
        r"saying (no|that|it can'?t|there'?s no|the same)|(giving|showing|returning) (me )?(an? |the same )?"
        r"(errors?|exceptions?|blank|empty|nothing|404|500))\b|"
        r"you (broke|missed|forgot)|"
        # what the reply said is still to do was done before: it did not look
        r"(those|these|they|that|this|it) ?('s|'re| is| are| was| were) already "
        r"(fixed|done|implemented|resolved|there)|"
        r"\b(gets?|got|getting|is|it'?s|still|was) stuck\b|"
        r"(is ?n[o']t|not) (exactly |quite )?what (i|we) (wanted|asked|meant|expected)|"
        # saying what they meant, or that they doubt what the reply said
        r"^\W*(no,? |sorry,? )?(i|we) meant\b(?! to\b)|\bwhat (i|we) meant (is|was)\b|"
        r"^\W*i (don'?t|do not) think (it'?s|that'?s|this is|that is|it is)\b"
        r"(?! (a |an )?(problem|issue|necessary|needed|required|worth|important|big deal|concern|relevant)\b)|"
        r"wrong (file|place|answer|output|result|one)|(got|get|getting|see|seeing) (an? |the |this |these )?"
        r"(errors?|exceptions?|tracebacks?)\b)",
        re.I,
    ),
    # (one is in every match)
    (
        "still", "n't", "nt ", "not", "longer", "same", "persist", "see", "there", "warning", "broke", "fail",
        "error", "exception", "unusable", "worse", "keeps", "missed", "forgot", "already", "stuck", "meant", "think",
        "wrong", "traceback",
    ),
)  # fmt: skip
# What the reply left has errors ("your solution has many compiler errors"), in a sentence: not a question or
# a condition, not error handling, not news that they are gone.
_HAS_ERRORS = re.compile(
    r"(?!\W*(does|do|did|can|could|would|will|should|is|are|if|when|whether)\b)[^.!?\n]*?"
    r"\b(the|your) (changes?|code|solution|fix|edit|update|patch) (still )?(has|have) "
    r"(an? |some |many |so many |lots of |a lot of |two |three |several )?"
    r"(compil\w+ |type ?script |type |syntax |build |runtime |lint |new )?(errors?|bugs?)"
    r"\b(?!-\w| (handling|messages?|codes?|pages?|boundar\w*|states?|logging|reporting|tracking|logs?)\b)"
    r"(?![^.!?\n]*\b(now|fixed|no more|thanks?|thank you|great|nice|clean|gone)\b)",
    re.I,
)
# A first sentence that thanks or praises: what follows it is news of what works ("the error doesn't show").
_THANKS = re.compile(
    r"^\W*(thanks?|thank you|thx|great|awesome|perfect|nice|cool|excellent|amazing|good|it works)\b", re.I
)
# A message that is only what went wrong, in a few words ("deployment error", "build failed").
_TERSE = re.compile(r"^\W*(?:[\w-]+\s+){0,2}?(?:errors?|failed|fails|failing|crash(?:ed|es)?|broken)\W*$", re.I)
# A message that is only an HTTP error the person got, as a server or a browser shows it ("404 page not found",
# "502 Bad Gateway", "HTTP ERROR 500"); a number alone, or with other words, may be an answer ("404 is right")
_STATUS_ONLY = re.compile(
    r"\W*(?:HTTP(?:/[\d.]+)?|HTTP ERROR)\s+[45]\d\d\W*|"
    r"\W*[45]\d\d\s*[-:.]?\s*(?:(?:page |file or directory )?not[ _]found|this page could not be found|bad gateway|"
    r"gateway time-?out|internal server error|service unavailable|forbidden|unauthorized|bad request|"
    r"method not allowed|too many requests)\b[^\n]{0,40}",
    re.I,
)
# An error output a person pasted at the top of their message (a run or build of what the model wrote).
_PASTED = re.compile(
    # (`[plugin:vite:react-babel] src/App.tsx: Unterminated JSX contents.`: Vite's error overlay, copied)
    r"^\s*(Traceback \(most recent call last\)|\w*(Error|Exception):|error(\[\w+\])?:|Failed to compile|"
    r"\[plugin:[\w:-]+\] |Module not found|Uncaught|ERROR in|Build failed|npm ERR!|\S+\.\w+:\d+(:\d+)?: error)",
    re.M,
)
# Django's error page, copied: its title line (`NoReverseMatch at /accounts/login/`) and the page's own lines
_DJANGO_PAGE = re.compile(r"^[A-Z]\w+ at /\S*[^\S\n]*\n(?:[^\n]*\n){0,3}?Request (?:Method|URL):", re.M)
# An exception named with its package (`org.h2.jdbc.JdbcSQLSyntaxErrorException: ...`), pasted with the stack
# under it (Java's `\tat ...`, JavaScript's `    at ...`, `Caused by:`): a name alone may be a question about it.
_PASTED_QUALIFIED = re.compile(r"^\s*(?:[a-z_]\w*\.)+[A-Z]\w*(?:Error|Exception):", re.M)
_STACK_LINE = re.compile(r"^\s+at \S|^Caused by: ", re.M)
# A compiler's or linter's diagnostic, `file:line:column: message`, as the message's first line (after
# Go's `# package` line): one whether or not it says "error" (Go's `./main.go:62:2: declared and not used:
# x`, flake8's and ruff's codes). Further down a message, such a line may be a place the person points at.
_DIAGNOSTIC = re.compile(
    r"(?:#[^\S\n]*\S+[^\S\n]*\n\s*)?\.{0,2}/?[\w.\\/-]*\w\.[A-Za-z]{1,5}:\d+:\d+: (?P<said>\S[^\n]*)"
)
# What a person asks for at a place they name ("src/app.ts:10:5: please add validation here", "add a null
# check here", "this should use the cache"), unless the line ends in a linter's rule tag: linters' own
# messages may begin with a verb or "this" (prettier's "Delete `;` [prettier/prettier]", staticcheck's "this
# value of err is never used (SA4006)"); the verbs are a person's lowercase.
_ASKS = re.compile(
    r"(?i:please|pls|can you|could you|would you|let'?s|why|what|how|todo)\b|"
    r"(?:add|fix|change|remove|delete|rename|move|make|update|implement|refactor|replace|handle|extract|write|"
    r"put|create|convert|here|this)\b"
)
_RULE_TAG = re.compile(r"(?:\((?:[A-Z]{1,4}\d{2,5}|[\w-]+/[\w-]+)\)|\[[\w@/.-]+\])\s*$")
# A few words saying what the person got, and a colon, at the start of a message: "now I have: ...". (Each
# space may be taken one way only: two optional words, each with a `\s*` after them whether there or not, let
# a run of spaces split three ways, cubic: 8 s for 600 spaces.)
_LEAD_IN = re.compile(
    r"\W*(?:(?:now|still|again|but|and|yet|so)\s+)*(?:(?:i|we|it)\b\s*)?(?:(?:'m|am|are|is)\b\s*)?"
    r"(?:have|has|get|gets|got|getting|see|seeing|saw|shows?|showing|says?|gives?|giving|throws?)\b"
    r"[^\n:]{0,30}:[^\S\n]+(?=\S)",
    re.I,
)
# A person saying what happened when they used the result.
_REPORTS = re.compile(
    # (not news that it works: "I'm seeing no errors now", "nothing failed")
    r"^(?![^.?!\n]*\b(no (more )?(errors?|failures?|crash\w*)|nothing (failed|broke)|thanks|thank you|great|"
    r"can'?t (wait|thank))\b)"
    r"\W*(i|we)('m|’m|m| am|'re| are)?\s+(still\s+)?(get|got|getting|keep getting|see|saw|seeing|tried|ran)\b"
    r"[^.?!\n]{0,160}\b(error|errors|erro?s|\w+Error|fail\w*|exception|crash\w*|broken|unable|can'?t|cannot|"
    r"does ?n[o']t|did ?n[o']t)\b",
    re.I,
)


# Text searched for (a Replace, a match, a variable kept for one) that no file holds: PowerShell reads `n,
# `r and `t as a newline, a return and a tab only in double quotes (in single quotes they are a backtick
# and a letter; before a letter a backtick is markdown's code: `npm test`), and U+FFFD is what a file read
# with the wrong encoding showed, not what it holds.
_LITERAL_ESCAPE = re.compile(
    r"(?:\.(?:Replace|IndexOf|Contains)\(|-(?:c?replace|eq|ne|like|match)\s+|\$\w+\s*=\s*)"
    r"'(?:[^'`]*(?:`(?:[rnt]\w|[^rnt'])[^'`]*)*`[rnt](?!\w)|[^'\ufffd]*\ufffd)[^']*'"
)


# PowerShell run from bash with its script in double quotes: bash puts its own values in for PowerShell's
# variables first (`$_` the last argument, `$env` and `$null` nothing), so the script PowerShell gets is
# not the one written. Its automatic variables, and the variables the script itself assigns or loops over
# (bash's own, `$HOME` or an upper-case `$ARGS`, are meant to be put in). Not after a backslash that is
# itself not escaped.
_PS_NAME = re.compile(r"(?:powershell|pwsh)(?:\.exe)?", re.I)
_PS_ONLY = re.compile(
    r"(?<!(?<!\\)\\)\$(?:_(?!\w)|(?i:env:|null\b|true\b|false\b)|"
    r"(?:args|input|PSItem|LASTEXITCODE|PSScriptRoot|PSVersionTable|PROFILE|PSHOME|Matches|Error)\b|"
    r"[A-Za-z_]\w*\s*[-+*/]?=(?!=)|[A-Za-z_]\w*\s+in\b)"  # (`$synth = New-Object ...`, `foreach ($p in ...)`)
)
_SSH_GREETING = re.compile(
    r"^Hi [\w./-]+! You've successfully authenticated, but GitHub does not provide shell access", re.M
)
# bash's echo of the line as the harness passed it on, `$(` quoted as `\$ (`: refused, where the `$(` stood
# outside double quotes (inside them the mangled `\$ (` is harmless, and a syntax error is the model's own)
_MANGLED = re.compile(r"^\S*bash: eval: line \d+: `.*\\\$ \(", re.M)


def _only_ssh(command: str) -> bool:
    """A command of ssh's own steps only (`ssh-add key && ssh -T git@github.com`), nothing after them."""
    programs = _programs(command)
    return "ssh" in programs and all(p in ("ssh", "ssh-add", "eval", "ssh-keyscan") for p in programs)


_NO_LOGIN = re.compile(r"could not read (?:Username|Password) for 'https?://[^\n]*")
_BASH_TOOLS = frozenset({"Bash", "bash", "execute_bash"})  # tools whose commands bash reads
# git's answer to a commit with nothing left to commit, at the end of the output (a hook's lines may come first)
_CLEAN_TREE = re.compile(
    r"^(?:On branch|HEAD detached|(?:interactive )?rebase in progress)[^\n]*\n(?:[^\n]*\n)*?"
    r"nothing to commit, working (?:tree|directory) clean\s*\Z",
    re.M,
)
# (its options read one way each: `-C dir` or another option, never both)
_COMMIT = re.compile(
    r"\s*(?:\w+=(?:\"[^\"\n]*\"|'[^'\n]*'|\S*)\s+)*git(?:\s+-[Cc]\s+\S+|\s+-(?![Cc]\s)[\w-]+(?:=\S+)?)*\s+commit\b"
)
# what may come before the commit in a chain not joined by `&&`, its output being git's own
_BEFORE_COMMIT = re.compile(r"\s*(?:cd\s|git\s+(?:add|status)\b)")
_SHELL_WORD = re.compile(r"[^\s;|&()'\"\\<]+")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")


def _expanded_by_bash(command: str) -> str | None:
    """A PowerShell variable in a double-quoted argument of a `powershell` or `pwsh` that bash runs: bash
    put its own value in first. Read as bash reads the line: single quotes and a heredoc's lines are
    left alone, and only the arguments of a `powershell` at a command's start, up to the next `;`, `|`, `&`
    or line end, are PowerShell's."""
    c = command[:4000]
    if not _PS_NAME.search(c):
        return None
    i, n = 0, len(c)
    starts, powershell = True, False  # at a command's start; in the arguments of a powershell
    while i < n:
        ch = c[i]
        if ch == "'":
            end = c.find("'", i + 1)
            i, starts = (n if end < 0 else end + 1), False
        elif ch == '"':
            end = i + 1
            while end < n and c[end] != '"':
                end += 2 if c[end] == "\\" else 1
            if powershell and (m := _PS_ONLY.search(c, i + 1, min(end, n))) is not None:
                return f"{m.group(0).strip()} in a double-quoted PowerShell script"
            i, starts = end + 1, False
        elif ch == "\\":
            i, starts = i + 2, False
        elif ch == "<" and (doc := _HEREDOC.match(c, i)) is not None:  # its lines are data, to its last line
            last = re.compile(rf"^\s*{doc.group(2)}\s*$", re.M).search(c, doc.end())
            i = n if last is None else last.end()
        elif ch in ";|&(\n":
            i, starts, powershell = i + 1, True, False
        elif ch.isspace() or ch in "<)":
            i += 1
        else:
            word = _SHELL_WORD.match(c, i)
            end = word.end() if word else i + 1
            if starts and word and "=" not in word.group(0):  # (`X=1 powershell ...`: still the start)
                powershell = _PS_NAME.fullmatch(word.group(0).rsplit("/", 1)[-1]) is not None
                starts = False
            i = end
    return None


# curl printing only the status it got (`-w "%{http_code}"`): a 5xx is the server failing, not a "no".
_HTTP_CODE = re.compile(r"^[^\S\n]*(?:HTTP(?:[ _](?:status|code))?:?\s*)?(5\d\d)\s*$", re.M | re.I)


def _server_error(command: str, text: str) -> tuple[int, str] | None:
    if "http_code" not in command or "curl" not in command:
        return None
    m = _HTTP_CODE.search(text[:2000])
    return (text.count("\n", 0, m.start()) + 1, f"HTTP {m.group(1)}") if m else None


def _head(msg: Message, n: int = 2000) -> str:
    """The first `n` characters of a typed message's text, without joining the rest."""
    content = msg.get("content")
    if isinstance(content, str):
        return content[:n]
    out: list[str] = []
    size = 0
    for p in content if isinstance(content, list) else ():
        if size >= n:
            break
        text = str(p.get("text", "")) if is_object(p) else ""
        out.append(text[: n - size])
        size += len(out[-1])
    return " ".join(out)


def _typed(msg: Message) -> bool:
    """A user message that can be a person's: text, not tool results."""
    if msg.get("role") != "user":
        return False
    content = msg.get("content")
    return isinstance(content, str) or (
        isinstance(content, list) and all(is_object(p) and p.get("type") in ("text", "input_text") for p in content)
    )


def first_match(pattern: re.Pattern[str] | Gated, text: str) -> tuple[int, str] | None:
    m = pattern.search(text)
    if not m:
        return None
    line = text.count("\n", 0, m.start()) + 1
    return line, m.group(0).strip()[:160]


# A command whose output ends at a question a prompt library asked, unanswered: nobody in an agent's shell
# answers, so it did nothing more. prompts' (create-next-app): `? Would you like to use X? » No / Yes`, which an
# answer redraws on the same line as `√ ... » Yes`; clack's (create-vite, create-astro) own word when its input
# closed, `└  Operation cancelled`. (Not a bare `(y/N)`: a script's `input()` prints it whether or not a pipe
# answers it, and help texts end so; nor clack's question left open over its choices: one such menu, of a
# tool's own configuration, was labelled the environment's.)
_PROMPTED = re.compile(r"^\W*\?\s.*[?:]\s*[»›]\s*\S")
_CLACK_CANCELLED = re.compile(r"^\s*└\s+operation cancell?ed\W*$", re.I)
_ANSWERED = re.compile(r"[√✔✖×]")


def _reads_only(command: str) -> bool:
    """Every command of the line only reads or looks (`_only_reads`: `cat notes.md | tail`), or it reads a
    terminal's screen (`tmux capture-pane`, an agent answering a prompt itself): a question at its end is
    not its own."""
    return "capture-pane" in command or bool(_only_reads(command))


def _waiting(text: str) -> tuple[int, str] | None:
    """The prompt a command's output ends at, unanswered (from its last lines: every command's output is
    asked this, so only its end is read, and its lines counted only for a prompt found)."""
    tail = text[-2000:].rstrip()
    lines = _COLOURS.sub("", tail).splitlines()
    if not lines or (len(lines) == 1 and len(text) > 2000):
        return None  # (a last line longer than what is read: its end is not a prompt's line)
    last = _ANSWERED.split(lines[-1])[-1]  # what is left after a prompt redrawn as answered
    if not (_PROMPTED.match(last) or _CLACK_CANCELLED.match(last)):
        return None
    return text.count("\n", 0, max(0, len(text) - 2000) + len(tail)) + 1, last.strip()[:160]


def _outside_a_string(m: re.Match[str] | None) -> bool:
    """A match that is not inside a string its line opened (`throw new Error("timed out after 3 minutes")`,
    a program's source printed: its words are not what happened to the command)."""
    if m is None:
        return False
    line = m.string[m.string.rfind("\n", 0, m.start()) + 1 : m.start()]
    return line.count('"') % 2 == 0 and line.count("`") % 2 == 0


# -- the reader --

# Words every match of a pattern contains: a plain substring test (fast) before the regex (slow).
_STATUS_HINTS = ("xit code", "xit status", "exited with code", "returncode")
_TIMEOUT_HINTS = ("imed out", "imeout", "no new output")
_REJECT_HINTS = (
    "want to proceed", "ejected", "eclined", "enied", "nterrupted by user", "granted", "turn_aborted", "approval",
)  # fmt: skip


def _hinted(pattern: re.Pattern[str], text: str, hints: tuple[str, ...]) -> re.Match[str] | None:
    return pattern.search(text) if any(map(text.__contains__, hints)) else None


# Tool names that read or list things: what they return is content, whatever words are in it.
_READS = re.compile(r"(read|view|open|cat|show|get|fetch|search|grep|find|list|ls|glob|browse|web|look)", re.I)


class Reader:
    """The generic tool-calling agent (OpenAI, Anthropic or Responses shape). Agents override parts."""

    name = "generic"
    human_turns = True  # the agent has a human in the loop (corrections and rejections can happen)
    # the person sending the very same request again means the reply did not do it (see `asked_again`)
    resent_is_correction = True

    # Exit statuses as agents print them, anchored at a line start.
    STATUS = re.compile(_STATUS_WORDS + r"(-?\d+)", re.M)
    TIMEOUT = re.compile(
        r"([Tt]imed out after|Command timed out|timed out and has been killed|has no new output after \d+ seconds|"
        r"TimeoutExpired|[Tt]imeout exceeded)",
    )
    REJECTED = re.compile(
        r"(The user doesn't want to proceed with this tool use|[Uu]ser rejected|rejected by (?:the )?user|"
        r"[Uu]ser (declined|denied)|\[Request interrupted by user( for tool use)?\]|^Interrupted by user: |"
        # Claude Code's auto mode: a classifier answering for the person (the person's own rules, applied)
        r"^Permission for this action was denied by the Claude Code auto mode classifier\b|"
        # Claude Code's permission layer answering for the person (their settings, or -p mode): to use a tool,
        # to write or read a path, a command its rules do not allow, a removal outside the working directories
        r"requested permissions? to \w+\b.*(haven't|have not) granted|"
        r"^Permission to use \w+ (?:with command .*)?has been denied\b|^This command (?:requires|needs) approval\b|"
        r"^[^\n]{1,300}? needs approval\. The path is (?:inside|outside) the working directories\b)",
    )
    # A human saying the last step was wrong, at the start of the message (not anywhere in it).
    CORRECTION = re.compile(
        r"^\W*(no[,.!]|no no\b|nope\b|wrong\b|that'?s (wrong|not (right|it|what)|incorrect)|that is (wrong|not)|"
        r"(it|this|that) (still |now )?(doesn'?t|does not|didn'?t|did not|isn'?t|is not) (work|run|build|compile|"
        r"pass|fix|change)|still (fail|broken|not|the same|getting|get|doesn|does not|error)|"
        # what they meant, against what the reply took; not to use what it just used, nor to propose
        r"no,? i (mean|meant)\b|(please,? )?(do not|don'?t) (use|suggest)\b|"
        r"(it|this|that|you) (broke|broken)|you broke|not what i (asked|wanted)|revert|undo\b|stop\b|"
        r"why did you|don'?t do that|nothing (changed|happened)|same (error|problem|issue)|"
        r"(it'?s |it is )?(still )?not working|failed to compile|doesn'?t work|didn'?t work|"
        r"there(?:'s| is| are) (still )?(an? )?(error|bug|problem)|try again\b|"
        # what they want, against what the reply did
        r"but i (want|wanted|need|needed|meant) (it|the|them|this|that|a|an|my|you to|to be)\b|"
        # saying again what they said before: the reply did not do it (not their answer to a question, not
        # news, not thanks)
        r"(but |no,? |as |like )?i('ve| have)?( already| specifically| literally| clearly| explicitly| just)? "
        r"(said|told you|asked you( for| to)?|asked for)\b(?!,? ['\"]?(yes|ok|okay|so|sure|thanks|go ahead|about)\b)"
        r"(?![^.!?\n]*\b(thanks|thank you|perfect|exactly|great)\b))",
        re.I,
    )

    def detect(self, messages: Sequence[Message], system: str) -> bool:  # pragma: no cover - generic is last
        return True

    # -- reading --

    def calls(self, reply: Message) -> dict[str, tuple[str, dict[str, Any]]]:
        """tool_call id -> (tool name, parsed arguments). The arguments are shared (`arguments`): read them,
        never change them."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for ident, name, raw in tool_calls(reply):
            args = arguments(raw) if isinstance(raw, str | bytes) else raw
            out[ident] = (name, args if isinstance(args, dict) else {})
        return out

    @staticmethod
    def command_of(args: Mapping[str, Any]) -> str | None:
        if isinstance(sub := args.get("command"), str) and sub in _EDITOR and "path" in args:
            return None  # a file editor's own subcommand (`view`, `str_replace`), not a shell command
        for key in ("command", "cmd", "script", "code"):
            v = args.get(key)
            if isinstance(v, str):
                return v
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                # ["bash", "-lc", "pytest -q"], ["powershell.exe", "-NoProfile", "-Command", "..."]: the script runs
                # (bash's: the one after `-c`; what follows it is its `$0`, `$1`..., never run)
                if len(v) >= 3 and v[1] in ("-c", "-lc"):
                    return str(v[2])
                return v[-1] if len(v) >= 3 and v[-2].lower() in ("-command", "-c") else " ".join(v)
        return None

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        text = text_of(msg)
        if "\x1b[" in text:  # a terminal's own codes (bracketed paste's `\x1b[?2004l` before a line): not output
            text = _COLOURS.sub("", text)
        command = self.command_of(args)
        m = _hinted(self.STATUS, text[:2000], _STATUS_HINTS) or (
            _hinted(self.STATUS, text[-2000:], _STATUS_HINTS) if len(text) > 2000 else None  # (else the same text)
        )
        if m and m.group(1) == "124" and command and command.lstrip().startswith("timeout "):
            text = f"timed out after its `timeout` limit (exit 124)\n{text}"  # coreutils' timeout says nothing
        return Outcome(
            message=i,
            text=text,
            tool=tool,
            command=command,
            status=int(m.group(1)) if m else None,
            # an MCP server's own error answer is an error whether or not the agent flags it
            flagged=msg.get("is_error") is True or text.startswith("Error executing tool"),
            timed_out=command is not None and _outside_a_string(_hinted(self.TIMEOUT, text[:3000], _TIMEOUT_HINTS)),
            # a command's output, or a tool we do not know that does not look like reading something
            runs=command is not None or not _READS.search(tool or ""),
            edits=edited_path(tool, args) if command is None else None,
            said=said if command is not None and isinstance(said := args.get("description"), str) else "",
        )

    def outcomes(self, reply: Message, after: Sequence[Message], before: Sequence[Message] = ()) -> Iterator[Outcome]:
        calls = self.calls(reply)
        for i, msg in enumerate(after):
            if msg.get("role") == "tool":
                tool, args = calls.get(str(msg.get("tool_call_id")), (None, {}))
                yield self.outcome(i, msg, tool, args)

    def human(self, msg: Message) -> bool:
        """A user message written by a person (not a tool result or the harness's own text)."""
        text = text_of(msg).lstrip()
        return msg.get("role") == "user" and (
            not text.startswith(("<", "[", "Caveat:", "This session is being", "# AGENTS.md"))
            or text.startswith("[plugin:")  # Vite's error overlay, copied: no harness writes it
        )

    # -- judging --

    def findings(
        self, reply: Message, after: Sequence[Message], tools: Sequence[Message], before: Sequence[Message] = ()
    ) -> Iterator[Finding]:
        yield from self.from_user(reply, after)
        if self.human_turns and before:
            yield from self.asked_again(after, before)
        read: list[History] = []

        def past() -> History:  # read only when a failed run asks whether it is a look (most never do)
            if not read:
                read.append(self.history(before))
            return read[0]

        seen: list[tuple[Outcome, Finding | None]] = []
        looked, changed = 0, False  # how many of `seen` were looked at (each once at most), and what they say

        def changed_here() -> bool:  # whether a call of this reply before the current one changed the code
            nonlocal looked, changed
            while not changed and looked < len(seen):
                o, f = seen[looked]
                looked, changed = looked + 1, f is None and _changes(o)
            return changed

        def here() -> History:  # a run after this reply's own change to the code tries it: no look
            return History(known=True, edited=True) if changed_here() else past()

        ran: _Reproduced | None = None  # the reproductions run before the reply, read when one runs again
        undone = False  # a call of this reply put files back (`git stash`, then the reproduction: the code as given)
        for o in self.outcomes(reply, after, before):
            f = self.classify(o, reply, here)
            if f is None and before and o.runs and o.command and not undone and _runs_reproduction(o.command):
                ran = ran or self._reproductions(before)
                f = self.unchanged(o, ran, changed_here())
            undone = undone or _undoes(o.command)
            if f is not None:
                yield f
            seen.append((o, f))
        yield from self.malformed(reply, tools)

    def unchanged(self, o: Outcome, ran: _Reproduced, changed_here: bool) -> Finding | None:
        """A reproduction run after the model changed the code that prints, to the character and with the
        same status, what it printed last before any change, and nothing else since: the change did not
        touch what it shows (the bug is still there). Not when nothing changed since it last ran (a look),
        nor after an undo."""
        line = " ".join((o.command or "").split())
        if line not in ran.before or ran.reverted or not (ran.changed or changed_here):
            return None  # no change yet: the red phase again
        if line in ran.stale and not changed_here:
            return None
        now = (o.status, _shown(o.text, _CHROMED))
        if now != ran.before[line] or ran.since.get(line, {now}) != {now} or len(printed := _shown(o.text)) < 20:
            return None  # one that moved since is an undo, or a new bug; a near-empty output says nothing
        first = printed.partition("\n")[0]
        return Finding("task_failure", Evidence(f"{self.name}.unchanged_reproduction", o.message, None, first[:160]))

    def _reproductions(self, before: Sequence[Message]) -> _Reproduced:
        """What each reproduction run before the reply printed, before the model's first change and
        since, in one pass, call by call."""
        ran = _Reproduced()
        starts = [i for i, m in enumerate(before) if m.get("role") == "assistant"]
        for n, i in enumerate(starts):
            calls = self.calls(before[i])
            for j, msg, tool, args in self._answers(calls, before, i, starts[n + 1] if n + 1 < len(starts) else None):
                command = self.command_of(args)
                if tool is None and not args:
                    if ran.changed and self.human_turns and self.human(msg) and _UNDO.search(text_of(msg)[:200]):
                        ran.reverted = True
                    continue
                ran.reverted = ran.reverted or (ran.changed and _undoes(command))
                if command and _runs_reproduction(command):
                    line = " ".join(command.split())
                    o = self.outcome(j, msg, tool, args)
                    if ran.changed:
                        ran.since.setdefault(line, set()).add((o.status, _shown(o.text, _CHROMED)))
                    else:
                        ran.before[line] = (o.status, _shown(o.text, _CHROMED))
                    ran.stale.add(line)
                elif self._acts({"": (tool or "", args)}, before, i)[1]:
                    ran.changed = True
                    ran.stale.clear()
        return ran

    def from_user(self, reply: Message, after: Sequence[Message]) -> Iterator[Finding]:
        for i, msg in enumerate(after):
            text = text_of(msg)
            # (Codex names a refused command's whole text before saying it was refused: its end is read too)
            at = len(text) - 500 if text.startswith("exec_command failed for") and len(text) > 3000 else 0
            refused = (
                _hinted(self.REJECTED, text[at:] if at else text[:3000], _REJECT_HINTS)
                if msg.get("role") in ("tool", "user")
                else None
            )
            first = ""  # what the person wrote before a plain interrupt mark (a tool call's is the reply's call's)
            if refused is not None and msg.get("role") == "user" and "for tool use" not in refused.group(0):
                first = text[: at + refused.start()]
            if first.endswith("\n") and first.strip() and self.human({"role": "user", "content": first}):
                # the person spoke first, the mark on a line of its own after their words: what they
                # interrupted was the answer to their new message
                text, refused = first, None
            if refused is not None:
                line = text.count("\n", 0, at + refused.start()) + 1
                yield Finding("rejected", Evidence(f"{self.name}.rejected", i, line, refused.group(0).strip()[:160]))
            elif self.human_turns and self.human(msg):
                correction = self.correction(text)
                if correction is not None:
                    yield self.said(text, i, correction, text_of(reply))
                break  # the person's next message starts the next turn: what follows it is that turn's

    def asked_again(self, after: Sequence[Message], before: Sequence[Message]) -> Iterator[Finding]:
        """The person's next message restating the request the reply answered (the last message a
        person typed before it). The words are compared first: telling a person's message from the
        agent's own costs more."""
        now = next(((i, m) for i, m in enumerate(after) if _typed(m)), None)
        asked = next((m for m in reversed(before[-200:]) if _typed(m)), None) if now is not None else None
        if now is None or asked is None:
            return
        # a person's words are what it starts with: read the starts only, not whole pasted files
        said, was = self.own_words(_head(now[1], 8000)), self.own_words(_head(asked, 8000))
        if not self.resent_is_correction and said.split() == was.split():
            return  # the same text sent again runs it again (a saved command); with more said, it is still read
        if restated(was, said) and self.human({"role": "user", "content": said[:2000]}) and self.human(asked):
            yield Finding("user_correction", Evidence(f"{self.name}.asked_again", now[0], 1, said.strip()[:80]))

    def said(self, text: str, at: int, correction: str, reply: str = "") -> Finding:
        """What a person's message that says the last step went wrong is: their correction, or, when all
        they sent is output they pasted, ending in a package missing on their machine, the environment."""
        if (missing := _missing_package(self.own_words(text)[:20000], reply)) is not None:
            return Finding("environment", Evidence(f"{self.name}.missing_package", at, missing[0], missing[1]))
        return Finding("user_correction", Evidence(f"{self.name}.correction", at, 1, correction))

    @staticmethod
    def own_words(text: str) -> str:
        """A person's message without what their editor or the agent put before their words."""
        return text

    def correction(self, text: str) -> str | None:
        """What in a person's message says the last step went wrong: a correction at its start, a
        complaint in its first sentence, an error they pasted at its top, or what they got running it."""
        text = self.own_words(text)
        t = text.strip()[:2000].replace("’", "'")  # (a phone's or an editor's apostrophe: the patterns say ')
        # the first sentence, and the second when the first is not thanks (on the first line: a request's
        # next lines describe what it wants, "the banner doesn't show for guests")
        first, *second = re.split(r"(?<=[.!?])\s+", t[:300].split("\n", 1)[0], maxsplit=2)[:2]
        then = second[0] if second and not _THANKS.match(first) else ""
        head = "\n".join(t.splitlines()[:8])
        m = (
            self.CORRECTION.match(t[:400])
            or _TERSE.match(t[:80])
            or (len(t) <= 80 and _STATUS_ONLY.fullmatch(t))
            or _COMPLAINT.search(first)
            or _COMPLAINT.search(then)
            or _HAS_ERRORS.match(first)
            or _HAS_ERRORS.match(then)
            or STILL.match(then)
            or _PASTED.search(head)
            or (" at /" in head and _DJANGO_PAGE.search(head))
            or (_STACK_LINE.search(head) and _PASTED_QUALIFIED.search(head))
            or _REPORTS.match(t[:300])
            or SAID.match(t[:200])
            or STILL.match(first)
            or MEANT.match(first)
            or (not first.isascii() and ENDS.match(first))
            or PASTED_MORE.search(head)
            # a few words before what they pasted: "now I have: Module not found: ..."
            or ((lead := _LEAD_IN.match(head)) is not None and _PASTED.match(head[lead.end() :]))
        )
        if m:
            return m.group(0).strip()[:80]
        if (d := _DIAGNOSTIC.match(t)) and not (_ASKS.match(d["said"]) and not _RULE_TAG.search(d["said"])):
            return d.group(0).strip().splitlines()[-1][:80]  # the diagnostic, not the package line over it
        # Terminal output pasted in (several lines) whose own lines report an error: what they ran failed.
        pasted = anchored_error(text[:20000]) if text.count("\n") >= 2 else None
        return pasted[1][:80] if pasted else None

    def history(self, before: Sequence[Message]) -> History:
        """What the conversation did before the reply: whether the model has changed code yet, and
        what failed since its last attempt (running that again looks, it does not fail). Read
        backwards, step by step, only as far as the answers need."""
        past = History(known=bool(before))
        starts = [i for i, m in enumerate(before) if m.get("role") == "assistant"]
        since_attempt, corrected = True, False
        for n in range(len(starts) - 1, -1, -1):
            i = starts[n]
            calls = self.calls(before[i])
            attempt, code = self._acts(calls, before, i)
            if since_attempt:
                for j, msg, tool, args in self._answers(
                    calls, before, i, starts[n + 1] if n + 1 < len(starts) else None
                ):
                    if msg.get("role") != "tool" and (self.human_turns or msg.get("role") != "user"):
                        if self.human_turns and self.human(msg) and self.correction(text_of(msg)) is not None:
                            corrected = True
                        continue
                    command = self.command_of(args)
                    if command:  # whether it failed is read only if the reply runs the same program
                        past.runs.append((command, j, msg, tool, args))
            if attempt and since_attempt:
                since_attempt = False
            if code:
                past.edited = True
                break
        # a correction counts only once there was a change of the model's to correct
        past.corrected = corrected and past.edited
        return past

    def _acts(
        self, calls: Mapping[str, tuple[str, Mapping[str, Any]]], before: Sequence[Message], i: int
    ) -> tuple[bool, bool]:
        """Whether the reply `before[i]` (its `calls`) made an attempt (an edit, a write, a formatting),
        and whether it changed code (not a test or a reproduction)."""
        attempt = code = False
        answer: str | None = None  # the file the next message says was edited, read once (not once per call)
        for name, args in calls.values():
            command = self.command_of(args)
            if (_EDITS.search(name) and args.get("command") != "view") or (command and _WRITES.search(command)):
                attempt = True
                path = edited_path(name, args) or ""
                if not path and i + 1 < len(before):
                    if answer is None:
                        answer = self.edited_file(text_of(before[i + 1])) or ""
                    path = answer
                # an edit of a file it does not name (SWE-agent's open file) is an attempt, not known code
                # (a file the editor writes under /tmp is a scratch file, not the project's code)
                code = code or (
                    _EDITS.search(name) is not None
                    and bool(path)
                    and not is_scaffold(path)
                    and not path.startswith("/tmp/")
                )
                code = code or bool(command and changes_code(command))
            elif command and formats(command):
                attempt = True  # a new try of the same code: what failed before is not looked at again
        return attempt, code

    def _answers(
        self, calls: Mapping[str, tuple[str, Mapping[str, Any]]], before: Sequence[Message], i: int, end: int | None
    ) -> Iterator[tuple[int, Message, str | None, Mapping[str, Any]]]:
        """The messages answering the reply `before[i]` up to `end`, each with the call it answers
        (`None, {}`: a person's message, or one answering no call)."""
        answered = iter(calls.values())  # observations answer a reply's actions in order
        for j in range(i + 1, len(before) if end is None else end):
            msg = before[j]
            if msg.get("role") == "tool":
                tool, args = calls.get(str(msg.get("tool_call_id")), (None, {}))
            elif not self.human_turns and msg.get("role") == "user":
                tool, args = next(answered, (None, {}))  # an agent whose observations are user messages
            else:
                tool, args = None, {}
            yield j, msg, tool, args

    def edited_file(self, observation: str) -> str | None:
        """The file an edit that names none changed, as the agent's answer to it says."""
        return None

    def classify(self, o: Outcome, reply: Message, past: Callable[[], History] = History) -> Finding | None:
        cmd = _CD.sub("", o.command or "")  # `cd dir && ls x`: what ran is `ls x`
        # a check's output searched for a file's errors (`npm run typecheck | grep app.tsx || echo none`): the
        # status is the search's, the lines it found are the check's errors
        sifted = "|" in cmd and _CHECKS.search(cmd.split("|", 1)[0]) is not None and _SIFTED.search(cmd) is not None
        # (a status over 128 is a signal's: a search killed, not one that answered no; `pkill -f x` whose
        # pattern matched its own shell)
        probe = bool(cmd) and is_probe(cmd) and not sifted and (o.status or 0) <= 128
        # curl's 7 is nothing listening there: a look at whether a server is up, answered no (not one it started)
        probe = probe or (o.status == 7 and [p for p in _programs(cmd) if p not in _READS_OR_FILTERS] == ["curl"])
        served = _server_error(cmd, o.text) if not probe and not o.status else None
        if served is not None:
            return self._found(o, "task_failure", "http_status", served)
        if ("`" in cmd or "\ufffd" in cmd) and (literal := _LITERAL_ESCAPE.search(cmd)) is not None:
            return self._found(o, "task_failure", "literal_escape", (1, literal.group(0)[:160]))
        if ":\\" in cmd and (eaten := _eaten_backslashes(cmd, o.text)) is not None:
            # the shell read `C:\Users\me` as `C:Usersme` (its own error names that): a look asked about nothing
            return Finding("task_failure", Evidence(f"{self.name}.windows_path_in_bash", o.message, *eaten))
        if o.status and len(cmd) < 400 and _HELP_ON_SUBCOMMAND.match(cmd.strip()) and _NO_SUCH.search(o.text[:2000]):
            return None  # asked for help on a subcommand: there is none, an answer
        if (
            o.runs
            and len(o.text) < 1200
            and "Microsoft Windows [" in o.text[:200]
            and _RUNS_CMD.search(cmd)
            and _CMD_BANNER.fullmatch(o.text.strip())
        ):
            banner = o.text.strip().splitlines()[0]
            return Finding("task_failure", Evidence(f"{self.name}.cmd_not_run", o.message, 1, banner[:160]))
        if o.status in (1, None) and "nothing to commit" in o.text and _clean_commit(cmd, o.text):
            return None  # git's 1 for a commit with nothing left to commit: the work was committed already
        if o.runs and "is not recognized" in o.text and (slip := _powershell_slip(o.text)) is not None:
            # (a filter's too, `rg x | head`; and what failed after it, a venv never activated, follows from it)
            return Finding("task_failure", Evidence(f"{self.name}.not_powershells", o.message, slip[0], slip[1]))
        if "successfully authenticated" in o.text and _SSH_GREETING.search(o.text) and _only_ssh(cmd):
            return None  # `ssh -T git@github.com` answers that the key works and exits 1: it gives no shell
        if "eval: line" in o.text and "$(" in quoted_away(cmd) and (mangled := first_match(_MANGLED, o.text[:3000])):
            # the agent's harness quoted `$(` as `\$ (` before bash read it (Claude Code's, with a pipe inside
            # the substitution): a syntax error no command of the model's had, which the lead would meet too
            return Finding("environment", Evidence(f"{self.name}.harness_quoting", o.message, *mangled))
        if o.tool in _BASH_TOOLS and "$" in cmd and (expanded := _expanded_by_bash(cmd)) is not None:
            # (not the environment's, whatever the output says: PowerShell ran another script than the one written)
            return Finding("task_failure", Evidence(f"{self.name}.expanded_by_bash", o.message, None, expanded))
        if o.runs and (
            (broken := _syntax(o.text[:3000]) or _syntax(o.text[-3000:]) or _unended(cmd, o.text)) is not None
            or ((o.status or o.flagged) and (broken := _failed_syntax(cmd, o.text)) is not None)
        ):
            return self._found(o, "task_failure", "shell_syntax", broken)  # a probe too: it never asked
        if (
            o.runs
            and ("cd: " in o.text or ":cd:" in o.text or "pushd:" in o.text)
            and (lost := _cd_failed(o.command or "", o.text))
        ):
            return self._found(o, "task_failure", "cd_failed", lost)  # a probe too: it looked elsewhere
        if o.runs and o.command and not o.running and (asked := _waiting(o.text)) and not _reads_only(o.command):
            waited = self._found(o, "task_failure", "waited_for_input", asked)  # it did nothing more
            return None if self.looked(o, reply, past()) else waited  # (a reproduction of a bug that asks)
        if o.timed_out:  # a search that ran out of time never answered
            finding = self._found(o, "task_failure", "timeout", first_match(self.TIMEOUT, o.text))
        elif o.status is not None and not status_hidden(cmd) and not sifted:
            if o.status == 0:  # it worked, its words do not count: unless the shell said not, or the script
                caught = self._caught(o, cmd, probe) or self._swallowed(o, cmd, probe)  # printed what it caught
                return self._shell(o, probe, False) if caught is None or self.looked(o, reply, past()) else caught
            error = anchored_error(own_output(o)) if o.runs else None
            if probe and ((misused := _misused(o)) or (misused := first_match(_GNU_REFUSED, o.text[:2000]))):
                return self._found(o, "task_failure", "misused_command", misused)  # it never searched
            never = first_match(_NOT_RUN, o.text[:2000]) if probe else None
            if probe and (never is not None or o.status == 127):  # its program never ran: no answer
                return self._found(o, "task_failure", f"exit_status={o.status}", never or (1, f"exit {o.status}"))
            if probe and (error is None or "&&" not in cmd or _stopped_at_look(cmd, o.text)):
                return None  # a search answered "no" (in `which x && x --version` x itself may have failed)
            if _absent(cmd, o):
                return None
            finding = self._found(o, "task_failure", f"exit_status={o.status}", error or (1, f"exit {o.status}"))
        else:
            error = anchored_error(own_output(o)) if o.runs and not (probe and "&&" not in cmd) else None
            if error is None and o.runs and "curl: (" in o.text and _curl_ran_last(cmd):
                error = first_match(_CURL_FAILED, o.text[-3000:])  # (a filter hid curl's status)
            if o.flagged and not (probe and error is None):
                first = o.text.strip().splitlines()[0][:160] if o.text.strip() else ""
                finding = self._found(o, "task_failure", "tool_error_flag", (1, first))
            elif error is not None and not o.flagged:
                finding = self._found(o, "task_failure", "error_line", error)
            elif (caught := self._caught(o, cmd, probe)) is None or self.looked(o, reply, past()):
                return self._shell(o, probe, True)
            else:
                return caught
        return None if finding.kind != "environment" and self.looked(o, reply, past()) else finding

    def _caught(self, o: Outcome, command: str, probe: bool) -> Finding | None:
        """A script (`node x.js`, not a one-liner, not a test run) whose whole output is an error and its
        stack, though its status said it worked: it caught the error and printed it."""
        if probe or not o.runs or len(o.text) > 8000 or "Error: " not in o.text[:400]:
            return None  # (most outputs: read no further)
        text = o.text.strip()
        words = _first_words(command)
        if len(words) < 2 or words[0] not in _SCRIPT_RUNNERS or words[1] in ("-e", "-p", "--eval", "--print"):
            return None
        if TESTS.search(command) or (m := _THROWN.match(text)) is None:
            return None
        return self._found(o, "task_failure", "caught_error", (1, m.group(1)[:160]))

    def _swallowed(self, o: Outcome, command: str, probe: bool) -> Finding | None:
        """A test run whose status said it passed while its runner counted failed tests: a project's wrapper
        (`npm run test:smoke` running `node run-tests.js`) that exits 0 whatever they did. The runner is what
        the command runs (not a log of it read), with nothing put back around it (`git stash && pytest`)."""
        text = o.text[-8000:]
        if probe or not o.runs or ("failed" not in text and "failing" not in text):
            return None
        words = _first_words(command)
        if not words or words[0] in _LOOKS or not TESTS.search(" ".join(words[:4])) or _undoes(command):
            return None
        lines = text.splitlines()
        first = o.text.count("\n") + (0 if o.text.endswith("\n") else 1) - len(lines) + 1
        last = max(0, len(lines) - TAIL)
        for n, line in enumerate(lines):  # the summary among the last lines, or mocha's count above the stacks
            if n < last and "failing" not in line:
                continue
            if "\x1b[" in line:
                line = _COLOURS.sub("", line)
            if (_FAILURES_COUNTED if n >= last else _MOCHA_FAILING).match(line):
                return self._found(o, "task_failure", "failures_counted", (first + n, line.strip()[:160]))
        return None

    def _shell(self, o: Outcome, probe: bool, hidden: bool) -> Finding | None:
        """The shell or a core tool failed part of a command (a backtick run as a command, a folder read
        as a file, a search refusing its pattern) and a later command's 0, or a filter, hid it."""
        if o.runs and (misused := _misused(o) or (_usage_shown(o) if hidden else None)) is not None:
            return self._found(o, "task_failure", "misused_command", misused)  # it never ran
        if not o.runs or probe or not any(w in o.text for w in ("bash:", "directory", "<stdin>", "Exit ")):
            return None
        hit = first_match(_SHELL_ERROR, o.text)
        return None if hit is None else self._found(o, "task_failure", "shell_error", hit)

    def looked(self, o: Outcome, reply: Message, past: History) -> bool:
        """A failed run that is no mistake of this turn: the red phase (a run that shows the reported
        bug before the model changed anything; with no history, a reproduction the model does not say
        it expects to pass), or a look at a failure already seen with nothing changed since."""
        cmd = o.command or ""
        if not cmd or o.timed_out:
            return False
        ran = o.status is not None or not o.flagged
        if ran and (is_reproduction(cmd) or TESTS.search(cmd)) and not _broken(o.text[-3000:]):
            if past.known and not past.edited:
                return True
            if not past.known and is_reproduction(cmd) and not expects_success(text_of(reply)):
                return True
        if ran and past.known and not past.edited and _inline_look(cmd, o.text[-3000:]):
            return True  # a few lines run inline to see the code as given fail (the red phase)
        said = f"{text_of(reply)[-600:]}\n{o.said[:300]}" if TESTS.search(cmd) else ""
        if _RED.search(said) and not _NOT_RED.search(said):
            # test-first: the reply runs tests it wrote to see them fail (the red phase), the code they
            # test not written yet (a module not found is what it expects to see)
            tail = o.text[-3000:]
            return not _broken(tail) or _UNWRITTEN.search(tail) is not None
        if first_match(_SHELL_ERROR, o.text[-3000:]) is not None or _CMD_SYNTAX.search(cmd) or _misused(o):
            return False  # a command the shell could not run (or not as written), run again, is the same mistake again
        if past.corrected and (is_reproduction(cmd) or TESTS.search(cmd)):
            return True  # the person said it still fails: a reproduction or the tests show what they reported
        # It runs again what failed, to look: the same command line (unless it writes: then it is another
        # try), or, for a test runner or a reproduction, the same program with another selection or
        # verbosity. Another program, or the same one with other arguments (a download with other options,
        # a build with other flags), is a new try. Asked of an index of the failed runs built once (asked of
        # every run for each result it was quadratic in results and runs: 14 s for 1,000 of each).
        by_program = self.failed_runs(past)
        line = " ".join(cmd.split())
        if line in by_program[""] and not _WRITES.search(cmd) and not formats(cmd):
            return True
        return bool(by_program.get(program(cmd), set()) - {line}) and bool(TESTS.search(cmd) or is_reproduction(cmd))

    def failed_runs(self, past: History) -> dict[str, set[str]]:
        """The command lines (spaces evened) of the runs before the reply that failed, by program, and all
        of them under "" (read once per history)."""
        if past.failed_by_program is None:
            past.failed_by_program = {"": set()}
            for c, j, msg, tool, args in past.runs:
                if self.failed(j, msg, tool, args):
                    line = " ".join(c.split())
                    past.failed_by_program[""].add(line)
                    past.failed_by_program.setdefault(program(c), set()).add(line)
        return past.failed_by_program

    def failed(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> bool:
        o = self.outcome(i, msg, tool, args)
        return o.flagged or (o.status or 0) != 0 or anchored_error(own_output(o)) is not None

    def _found(self, o: Outcome, kind: Kind, why: str, hit: tuple[int, str] | None = None, tail: int = 1500) -> Finding:
        """A failed outcome's finding: the environment's when the last `tail` characters of its output
        say so, else `kind`."""
        # (whatever the status: a command run in the background or in a chain shows another's)
        tool = (_words(_CD.sub("", o.command or "")) or [""])[0]
        said = any(f in o.text for f in (f"{tool}: command not found", f"command not found: {tool}"))
        if not said and "command not found" in o.text and o.command:  # a later command's program (`x | mail`)
            # in the shell's own words (not a start-up file's line it sourced: `~/.bashrc: line 3: x: ...`);
            # only the lines that say so are searched, for the first commands (bounded on a crafted command)
            lines = "\n".join(x for x in o.text[-20000:].splitlines() if "not found" in x)
            for segment in _split(o.command[:4000])[2:100:2]:
                later = (_words(segment) or [""])[0]
                if later and re.search(_NOT_FOUND_BY_SHELL.format(re.escape(later)), lines, re.M):
                    tool, said = later, True
                    break
        # not the machine's: a PowerShell cmdlet typed into bash, or a program the command itself meant to put
        # on the PATH (`export PATH=...:~/sdk && adb devices`)
        mistaken = _CMDLET.match(tool) is not None or (said and _put_on_path(o.command or "", tool))
        quiet = o.status in (127, 49, 9009) and not _STATUS_LINE.sub("", o.text).strip()  # words sent to /dev/null
        silent = o.status == 127 and quiet
        # Windows' stand-in for a Python that is not installed (the Store's alias) exits 9009, 49 in bash
        stub = tool in _PYTHONS and o.status in (49, 9009) and (quiet or "Python was not found" in o.text)
        if stub or (tool and tool not in _ALIASED and not mistaken and (said or silent)):
            # the program the command runs is not installed: the lead would not find it either
            return Finding("environment", Evidence(f"{self.name}.environment", o.message, None, f"{tool}: not found"))
        # a script's `#!/usr/bin/env node` with no node on the PATH: not the program the command names (`env x`
        # typed with a wrong name is the model's slip)
        shebang = _SHEBANG.search(o.text[-tail:]) if "env: " in o.text else None
        if shebang is not None and shebang.group(1) not in (tool, "env"):
            said_so = shebang.group(0).strip()
            return Finding("environment", Evidence(f"{self.name}.environment", o.message, None, said_so))
        last = o.text[-tail:]
        if "could not read" in last and "https://" not in (o.command or "") and (no := first_match(_NO_LOGIN, last)):
            # git with no credentials for an HTTPS remote (one the command names may be a repository mistyped:
            # GitHub asks a login for one that is not there)
            return Finding("environment", Evidence(f"{self.name}.environment", o.message, None, no[1]))
        if o.timed_out:  # the time limit ended it: a folder or program it may not touch on the way did not,
            # nor a warning a server printed as it started (`API key not found`) before it ran until stopped:
            # what it was doing when the time ran out is in its last lines
            last = "\n".join(_REFUSED_ON_THE_WAY.sub("", last).rstrip().splitlines()[-5:])
        env = first_match(ENVIRONMENT, last)
        if env is None and not o.command:  # a browser tool's own answer, not a test run's output
            env = first_match(_BROWSER_GONE, o.text[:tail])
        if env is not None and not _own_module(o.text[-tail:], o.command):
            return Finding("environment", Evidence(f"{self.name}.environment", o.message, None, env[1]))
        return Finding(kind, Evidence(f"{self.name}.{why}", o.message, hit[0] if hit else None, hit[1] if hit else ""))

    def malformed(self, reply: Message, tools: Sequence[Message]) -> Iterator[Finding]:
        calls = tool_calls(reply)
        if not calls:
            return
        # the names called that no offered tool has (the tool list is read only until all are found)
        unknown = {name for _, name, _ in calls} if tools else set()
        for t in tools:
            if not unknown:
                break
            fn = t.get("function")
            if fn is not None and is_object(fn):
                unknown.discard(str(fn.get("name")))
        for _, name, args in calls:
            if name in unknown:
                yield Finding("task_failure", Evidence("malformed.unknown_tool", None, None, f"{name!s:.80}"))
            elif isinstance(args, str) and len(args) <= 200_000 and arguments(args) is NOT_JSON:
                yield Finding("task_failure", Evidence("malformed.arguments", None, None, str(name)[:80]))
