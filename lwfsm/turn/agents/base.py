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

import json
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["KINDS", "Evidence", "Finding", "Kind", "Outcome", "Reader", "text_of"]

Message = Mapping[str, Any]
Kind = Literal["ok", "task_failure", "environment", "user_correction", "rejected", "technical"]
KINDS: tuple[Kind, ...] = ("ok", "task_failure", "environment", "user_correction", "rejected", "technical")
# When one turn shows several findings, the verdict is the first of these kinds present.
PRECEDENCE: tuple[Kind, ...] = ("rejected", "user_correction", "task_failure", "environment")

_SCAN = 2_000_000  # characters of a message read at most
TAIL = 40  # last lines of a command's output where words may count


def text_of(message: Message) -> str:
    """The text of a message: a string, or the text of its content parts (OpenAI and Anthropic shapes)."""
    content = message.get("content")
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, Mapping):
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
    extra: dict[str, Any] = field(default_factory=dict)


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
        "git rev-parse",
        "pip show",
        "npm ls",
        "dpkg",
        "id",
        "getent",
        "false",
    }
)
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
_SPLIT = re.compile(r"\s*(\|\||&&|;|\n|\|(?!\|))\s*")


def _words(segment: str) -> list[str]:
    try:
        words = shlex.split(segment, comments=True)
    except ValueError:
        words = segment.split()
    while words and ("=" in words[0] and not words[0].startswith("=") or words[0] in ("sudo", "time", "env", "!")):
        words = words[1:]  # VAR=value, sudo, time, env: the command is what follows
    if words and words[0] in ("timeout",):
        words = [w for w in words[1:] if not w[:1].isdigit() and not w.startswith("-")]
    if words and words[0] in ("cd",):
        return []
    return words


def last_command(command: str) -> tuple[str, str, str | None]:
    """(the command that sets the status, the operator before it, the name of the pipeline's first command)."""
    parts = _SPLIT.split(command.strip())
    segments = parts[0::2]
    ops = parts[1::2]
    while len(segments) > 1 and not segments[-1].strip():
        segments.pop()
        ops = ops[: len(segments) - 1]

    def name(segment: str) -> str:
        words = _words(segment)
        return " ".join(words[:2] if words[:1] in (["git"], ["pip"], ["npm"]) else words[:1])

    last = name(segments[-1]) if segments else ""
    op = ops[-1] if ops else ""
    first = None
    if op == "|":  # the pipeline's first command, before the filters
        i = len(segments) - 1
        while i > 0 and ops[i - 1] == "|":
            i -= 1
        first = name(segments[i])
    return last, op, first


def is_probe(command: str) -> bool:
    """A command whose failure is an answer: a search, a test, a lookup, or one that ends `|| true`."""
    c = command.strip()
    if re.search(r"\|\|\s*(true|:|echo\b|exit 0|printf\b)", c):
        return True
    if "&&" in c and any(_words(seg)[:1] and (_words(seg)[0] in PROBES) for seg in c.split("&&")[:-1]):
        return True  # `which gh && gh --version`: the probe may be what failed (an error line still counts)
    last, op, first = last_command(c)
    if last in PROBES or last.split(" ")[0] in PROBES and last.split(" ")[0] not in ("git", "pip", "npm"):
        return last.split(" ")[0] not in ("cat",)
    return op == "|" and first is not None and (first in PROBES or first.split(" ")[0] in ("grep", "rg", "find"))


def status_hidden(command: str) -> bool:
    """The status belongs to a filter at the end of a pipeline (`pytest | tail`), not to the work."""
    last, op, first = last_command(command.strip())
    return op == "|" and last.split(" ")[0] in FILTERS


_REPRO = re.compile(
    r"(^|[\s/_-])(repro\w*|reproduce\w*|bug_?repro\w*|test_?(issue|bug)\w*|check_?(issue|bug)\w*)\.(py|js|ts|sh|rb|java)\b",
    re.I,
)


def is_reproduction(command: str) -> bool:
    """A run of a script written to show the reported bug (the red phase)."""
    return bool(_REPRO.search(command))


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
    r"^\s*(Traceback \(most recent call last\):|(?:[A-Za-z_]\w*\.)*[A-Z]?\w*(Error|Exception): |error(\[E\d+\])?: |"
    r"fatal: |FAILED\b|FAIL\b|npm ERR!|ERROR: |E\s{3}|BUILD FAILURE|BUILD FAILED|make: \*\*\*|"
    r"SyntaxError|panic: |Segmentation fault|Aborted|.*: command not found$|.*: No such file or directory$)",
)
# Test runners' own summaries.
_SUMMARY = re.compile(
    r"(^=+ .*\b\d+ (failed|errors?)\b|^FAILED \S|^Tests?:.*\b\d+ failed|^test result: FAILED|"
    r"^Ran \d+ tests?.*\n+FAILED|^FAILED \(|^--- FAIL|^FAIL\s|\b\d+ (failing|failed)\b.*$|^ERRORS?$)",
    re.M,
)
_PASSED = re.compile(
    r"(^=+ .*\b\d+ passed\b(?!.*\b(failed|error))|^OK\b|^Tests?:.*\bpassed\b(?!.*failed)|"
    r"test result: ok|^PASS\b|\ball tests passed\b)",
    re.M | re.I,
)

# Failures that are the environment's, not the model's: the lead would meet them too.
ENVIRONMENT = re.compile(
    r"(No module named '?[\w.]+'?|ModuleNotFoundError|ImportError: (cannot|No module)|"
    r"Could not resolve host|Temporary failure in name resolution|Name or service not known|Network is unreachable|"
    r"ProxyError|Max retries exceeded with url|No matching distribution found|Could not find a version that satisfies|"
    r"externally-managed-environment|Connection refused|ConnectionRefused|getaddrinfo|ENOTFOUND|EAI_AGAIN|"
    r"No space left on device|Read-only file system|Operation not permitted|"
    r"(API|api)[ _-]?[Kk]ey|credentials|Unauthorized|401 Unauthori[sz]ed|403 Forbidden|"
    r"\b(java|javac|mvn|gradle|node|npm|npx|yarn|cargo|rustc|go|make|cmake|gcc|g\+\+|docker|pip|pip3|python2|"
    r"ruby|php|composer|dotnet|kubectl|psql|mysql|redis-cli|pytest|tox|poetry|conda): (command )?not found|"
    r"command not found: (java|javac|mvn|gradle|node|npm|cargo|go|make|docker|pip|pytest)\b|"
    r"peer authentication failed|Missing X server|\$DISPLAY|Host system is missing dependencies|"
    r"Executable doesn'?t exist at|Failed to (launch|initialize) (the )?browser|is not installed|not installed\b|"
    r"cannot find Java|JAVA_HOME)",
    re.I,
)


def anchored_error(text: str) -> tuple[int, str] | None:
    """(line number, line) of the first error report among the last lines of a command's output."""
    lines = text.splitlines()
    start = max(0, len(lines) - TAIL)
    tail = "\n".join(lines[start:])
    if _PASSED.search(tail) and not _SUMMARY.search(tail):
        return None
    for i in range(start, len(lines)):
        if _ERROR_LINE.match(lines[i]) or _SUMMARY.match(lines[i]):
            return i + 1, lines[i].strip()[:160]
    return None


def first_match(pattern: re.Pattern[str], text: str) -> tuple[int, str] | None:
    m = pattern.search(text)
    if not m:
        return None
    line = text.count("\n", 0, m.start()) + 1
    return line, m.group(0).strip()[:160]


# -- the reader --

# Tool names that read or list things: what they return is content, whatever words are in it.
_READS = re.compile(r"(read|view|open|cat|show|get|fetch|search|grep|find|list|ls|glob|browse|web|look)", re.I)


class Reader:
    """The generic tool-calling agent (OpenAI, Anthropic or Responses shape). Agents override parts."""

    name = "generic"
    human_turns = True  # the agent has a human in the loop (corrections and rejections can happen)

    # Exit statuses as agents print them, anchored at a line start.
    STATUS = re.compile(
        r"^(?:Exit code:? |Process exited with code |exit (?:code|status):? |\[The command completed with exit code |"
        r"\[Command finished with exit code |<returncode>)(-?\d+)",
        re.M | re.I,
    )
    TIMEOUT = re.compile(
        r"(timed out after|Command timed out|timed out and has been killed|has no new output after \d+ seconds|"
        r"TimeoutExpired|\btimeout\b.*\bexceeded)",
        re.I,
    )
    REJECTED = re.compile(
        r"(The user doesn't want to proceed with this tool use|User rejected|rejected by the user|"
        r"user (declined|denied)|\[Request interrupted by user( for tool use)?\]|requested permissions? to use .*"
        r"(haven't|have not) granted)",
        re.I,
    )
    # A human saying the last step was wrong, at the start of the message (not anywhere in it).
    CORRECTION = re.compile(
        r"^\W*(no[,.!]|nope\b|wrong\b|that'?s (wrong|not (right|it|what)|incorrect)|that is (wrong|not)|"
        r"(it|this|that) (still |now )?(doesn'?t|does not|didn'?t|did not|isn'?t|is not) (work|run|build|compile|"
        r"pass|fix|change)|still (fail|broken|not|the same|getting|get|doesn|does not|error)|"
        r"(it|this|that|you) (broke|broken)|you broke|not what i (asked|wanted)|revert|undo\b|stop\b|"
        r"why did you|don'?t do that|nothing (changed|happened)|same (error|problem|issue)|"
        r"(it'?s |it is )?(still )?not working|failed to compile|doesn'?t work|didn'?t work|"
        r"(there (is|are) )?(an? )?(errors?|bugs?)\b|try again\b)",
        re.I,
    )

    def detect(self, messages: Sequence[Message], system: str) -> bool:  # pragma: no cover - generic is last
        return True

    # -- reading --

    def calls(self, reply: Message) -> dict[str, tuple[str, dict[str, Any]]]:
        """tool_call id -> (tool name, parsed arguments)."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for call in reply.get("tool_calls") or ():
            if not isinstance(call, Mapping):
                continue
            fn = call.get("function") or {}
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except (TypeError, ValueError, RecursionError):
                args = {}
            out[str(call.get("id"))] = (str(fn.get("name")), args if isinstance(args, dict) else {})
        return out

    @staticmethod
    def command_of(args: Mapping[str, Any]) -> str | None:
        for key in ("command", "cmd", "script", "code"):
            v = args.get(key)
            if isinstance(v, str):
                return v
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                # ["bash", "-lc", "pytest -q"]: the script is what runs
                return v[-1] if len(v) >= 3 and v[1] in ("-c", "-lc") else " ".join(v)
        return None

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        text = text_of(msg)
        command = self.command_of(args)
        m = self.STATUS.search(text[:2000]) or self.STATUS.search(text[-2000:])
        return Outcome(
            message=i,
            text=text,
            tool=tool,
            command=command,
            status=int(m.group(1)) if m else None,
            flagged=msg.get("is_error") is True,
            timed_out=bool(self.TIMEOUT.search(text[:3000])) if command is not None else False,
            # a command's output, or a tool we do not know that does not look like reading something
            runs=command is not None or not _READS.search(tool or ""),
        )

    def outcomes(self, reply: Message, after: Sequence[Message]) -> Iterator[Outcome]:
        calls = self.calls(reply)
        for i, msg in enumerate(after):
            if msg.get("role") == "tool":
                tool, args = calls.get(str(msg.get("tool_call_id")), (None, {}))
                yield self.outcome(i, msg, tool, args)

    def human(self, msg: Message) -> bool:
        """A user message written by a person (not a tool result or the harness's own text)."""
        text = text_of(msg).lstrip()
        return msg.get("role") == "user" and not text.startswith(("<", "[", "Caveat:", "This session is being"))

    # -- judging --

    def findings(self, reply: Message, after: Sequence[Message], tools: Sequence[Message]) -> Iterator[Finding]:
        yield from self.from_user(reply, after)
        for o in self.outcomes(reply, after):
            f = self.classify(o, reply)
            if f is not None:
                yield f
        yield from self.malformed(reply, tools)

    def from_user(self, reply: Message, after: Sequence[Message]) -> Iterator[Finding]:
        for i, msg in enumerate(after):
            text = text_of(msg)
            if msg.get("role") in ("tool", "user") and (hit := first_match(self.REJECTED, text[:3000])):
                yield Finding("rejected", Evidence(f"{self.name}.rejected", i, hit[0], hit[1]))
            elif self.human_turns and self.human(msg):
                correction = self.correction(text)
                if correction is not None:
                    yield Finding("user_correction", Evidence(f"{self.name}.correction", i, 1, correction))

    def correction(self, text: str) -> str | None:
        m = self.CORRECTION.match(text.strip()[:400])
        return m.group(0).strip()[:80] if m else None

    def classify(self, o: Outcome, reply: Message) -> Finding | None:
        rule = f"{self.name}."
        cmd = o.command or ""
        # A reproduction of the reported bug failing is the red phase, unless the model said it
        # expects its change to work (then the same run is the check that failed).
        red = bool(cmd) and is_reproduction(cmd) and not expects_success(text_of(reply))
        probe = bool(cmd) and is_probe(cmd)
        if red:
            return None

        def found(kind: Kind, why: str, hit: tuple[int, str] | None = None) -> Finding:
            env = first_match(ENVIRONMENT, o.text[-4000:])
            if env is not None:
                return Finding("environment", Evidence(rule + "environment", o.message, None, env[1]))
            return Finding(kind, Evidence(rule + why, o.message, hit[0] if hit else None, hit[1] if hit else ""))

        if o.timed_out and not probe:
            return found("task_failure", "timeout", first_match(self.TIMEOUT, o.text))
        error = anchored_error(o.text) if o.runs else None
        if o.status is not None and not status_hidden(cmd):
            if o.status == 0 or (probe and error is None):
                return None  # it worked, or a search answered "no": its words do not count
            return found("task_failure", f"exit_status={o.status}", error or (1, f"exit {o.status}"))
        if o.flagged:
            if probe and error is None:
                return None
            first = o.text.strip().splitlines()[0][:160] if o.text.strip() else ""
            return found("task_failure", "tool_error_flag", (1, first))
        if error is not None and not probe:
            return found("task_failure", "error_line", error)
        return None

    def malformed(self, reply: Message, tools: Sequence[Message]) -> Iterator[Finding]:
        offered = {(t.get("function") or {}).get("name") for t in tools}
        for call in reply.get("tool_calls") or ():
            fn = call.get("function") or {}
            name, args = fn.get("name"), fn.get("arguments")
            if tools and name not in offered:
                yield Finding("task_failure", Evidence("malformed.unknown_tool", None, None, f"{name!s:.80}"))
            elif isinstance(args, str) and len(args) <= 200_000:
                try:
                    json.loads(args or "{}")
                except (TypeError, ValueError, RecursionError):
                    yield Finding("task_failure", Evidence("malformed.arguments", None, None, str(name)[:80]))
