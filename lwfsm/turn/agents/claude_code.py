"""Claude Code: Anthropic Messages with `tool_result` blocks (`is_error`), Bash results starting
`Exit code N`, `<tool_use_error>`, rejections, Stop-hook feedback; raw sessions are `.jsonl` files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .base import (
    Evidence,
    Finding,
    History,
    Message,
    Outcome,
    Reader,
    Transcript,
    first_match,
    is_object,
    quoted_away,
    text_of,
)
from .words import PASTED_MORE

__all__ = ["READER"]

# A parallel call cancelled because a sibling failed: the sibling's failure is the finding.
_SIBLING = re.compile(r"^(<tool_use_error>)?(Cancelled: parallel tool call|Sibling tool call errored)", re.I)
_STOP_HOOK = re.compile(r"^(Stop hook feedback|\S+ hook (error|feedback)|PostToolUse:\S+ hook)", re.I | re.M)
_ASKS = {"AskUserQuestion"}  # the tool that puts questions to the person
_RUNS = {"Bash", "PowerShell", "BashOutput", "TaskOutput", "KillShell"}  # PowerShell: its tool on Windows
_BASH_TAGS = re.compile(r"</?bash-(input|stdout|stderr)>")
_STDERR = re.compile(r"<bash-stderr>(.+?)</bash-stderr>", re.S)
_INJECTED = re.compile(r"^(?:\s*<(ide_opened_file|ide_selection|ide_diagnostics|system-reminder)>.*?</\1>)+\s*", re.S)
# What Claude Code writes in a person's message for what they attached (a screenshot, a long paste) before
# their words: not a harness's text, which starts with `[` as well.
_ATTACHED = re.compile(r"^(?:\s*\[(?:Image #\d+|Pasted text #\d+(?: \+\d+ lines)?)\])+\s*")
# A shell KillShell would stop had already ended: what it wanted holds (not when its command had failed:
# the server or job it ran had died, holdout92; unless the model had ended processes itself, as a signal's
# or a time limit's end is a failed status too)
_ENDED = re.compile(r"Shell \S+ is not running, so cannot be killed \(status: (\w+)\)")
_KILLS = re.compile(
    r"\b(?:kill|pkill|killall|taskkill|Stop-Process|timeout\s+-?\w*\s*\d)\b|\bfuser\b[^\n|;&]*\s-k", re.I
)
# the editor's refusal when a file changed since its read (older versions: "modified since read")
_CHANGED = re.compile(r"File has been (?:unexpectedly modified|modified since read)")
_LOOKUPS = {"Read", "Glob", "Grep", "LS", "NotebookRead", "WebSearch"}
_GLOB = re.compile(r"^[\w.-]+: (?:cannot access 'glob'|glob): No such file or directory$", re.M)
# Looking something up that is not there is an answer, not a failure. Reading a folder as a file
# (EISDIR) is a wrong call: labelled a failure both times it came up (holdout8, holdout14).
_NOT_THERE = re.compile(r"(does not exist|not found|No such file|No files found)", re.I)


class ClaudeCode(Reader):
    name = "claude_code"
    # Its people send a saved command's very text again (a slash command's template, "commit the changes") to
    # run it again, not to say the reply failed (the same request with more said is still read as one)
    resent_is_correction = False

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        # (one scan for what both names start with: every other agent's request is scanned too)
        at = system.find("Claude ", 0, 4000)
        while at >= 0:
            if system.startswith(("Claude Code", "Claude Agent SDK"), at, 4000):
                return True
            at = system.find("Claude ", at + 7, 4000)
        return False

    def human(self, msg: Message) -> bool:
        # A command the person ran themselves (`!cmd`) comes back as <bash-input>/<bash-stdout> text.
        if msg.get("role") != "user":
            return False
        text = text_of(msg).lstrip()
        # what the IDE or the harness put first is not theirs: what follows it may be
        if text.startswith("<") and (m := _INJECTED.match(text)) and text[m.end() :].strip():
            text = text[m.end() :]
        if text.startswith("[") and (m := _ATTACHED.match(text)):
            text = text[m.end() :] or "(attached)"  # (an image alone is the person's too)
        return super().human({"role": "user", "content": text}) or text.startswith("<bash-")

    def correction(self, text: str) -> str | None:
        # What a command the person ran (`!cmd`) wrote to stderr, read whole: its errors are what they got.
        # (read up to the last closing tag: an unclosed one would be scanned to the end from every opening)
        head = text[: text.rfind("</bash-stderr>", 0, 20000) + len("</bash-stderr>")] if "<bash-stderr>" in text else ""
        for err in _STDERR.findall(head) if "</bash-stderr>" in head else ():
            if m := PASTED_MORE.search(err):
                return m.group(0).strip()[:80]
        # What the IDE or the harness put before the person's words is not theirs.
        return super().correction(_ATTACHED.sub("", _BASH_TAGS.sub("\n", _INJECTED.sub("", text)), count=1))

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        o = super().outcome(i, msg, tool, args)
        if o.text.lstrip().startswith("<tool_use_error>"):
            o.command, o.status, o.runs, o.timed_out = None, None, False, False  # the call itself was refused
            if tool in _LOOKUPS and _NOT_THERE.search(o.text[:200]):
                o.flagged = False  # reading a file to see whether it is there
            return o
        if tool == "KillShell" and (ended := _ENDED.match(o.text.strip())) and ended[1] in ("completed", "killed"):
            o.flagged = False  # the shell it meant to stop had already stopped: what it wanted holds
        if tool in ("Bash", "PowerShell") and o.status is None and not o.flagged:
            o.status = 0  # Claude Code prints "Exit code N" (and flags is_error) only when a command failed
        if tool is not None and tool not in _RUNS:
            o.runs, o.timed_out, o.status = False, False, None  # a file, a listing, a search: words do not count
            o.command = None
            if tool in _LOOKUPS and o.flagged and _NOT_THERE.search(o.text[:500]):
                o.flagged = False
        return o

    def classify(self, o: Outcome, reply: Message, past: Callable[[], History] = History) -> Finding | None:
        if o.tool in _ASKS and o.flagged and "InputValidationError" not in o.text[:200]:
            # nobody to ask (a headless run, a channel without questions): the lead could not ask either
            return Finding("environment", Evidence(f"{self.name}.no_one_to_ask", o.message, 1, o.text.strip()[:160]))
        cmd = o.command or ""
        if "glob" in o.text and "|" in cmd and "*" in quoted_away(cmd) and (hit := first_match(_GLOB, o.text[:3000])):
            # its shell wrote the word `glob` for the command's `*` (its bug, with a pipe): the files were never named
            return Finding("environment", Evidence(f"{self.name}.harness_glob", o.message, *hit))
        return super().classify(o, reply, past)

    def outcomes(self, reply: Message, after: Sequence[Message], before: Sequence[Message] = ()) -> Iterator[Outcome]:
        for o in super().outcomes(reply, after, before):
            if not _SIBLING.match(o.text.lstrip()):
                yield o

    def findings(
        self, reply: Message, after: Sequence[Message], tools: Sequence[Message], before: Sequence[Message] = ()
    ) -> Iterator[Finding]:
        read_last: bool | None = None  # asked once: per finding it was a scan of what came before (quadratic)
        for f in super().findings(reply, after, tools, before):
            changed = f.kind == "task_failure" and _CHANGED.search(f.evidence.excerpt) is not None
            if changed and read_last is None:
                read_last = self._read_last(before)
            if changed and read_last:
                # the editor found the file changed since the model read it (a formatter, a watcher, the person,
                # Windows' stale state right after a read): not the edit's fault, unless the model's own
                # command changed it after that read
                said = f.evidence.excerpt[:80]
                f = Finding("environment", Evidence(f"{self.name}.environment", f.evidence.message, 1, said))
            died = f.kind == "task_failure" and (ended := _ENDED.match(f.evidence.excerpt)) and ended[1] == "failed"
            if died and self._killed([*before, reply]):
                continue  # its server died of the model's own kill or time limit: what it wanted holds
            yield f
        for i, msg in enumerate(after):
            if msg.get("role") == "user" and (hit := first_match(_STOP_HOOK, text_of(msg)[:2000])):
                yield Finding("task_failure", Evidence("claude_code.stop_hook", i, hit[0], hit[1]))

    def _killed(self, messages: Sequence[Message]) -> bool:
        """A command of the model's among `messages` ended processes (kill, pkill, fuser -k, a time limit)."""
        for m in messages:
            if m.get("role") == "assistant":
                for _, args in self.calls(m).values():
                    if _KILLS.search(self.command_of(args) or ""):
                        return True
        return False

    def _read_last(self, before: Sequence[Message]) -> bool:
        """The model's last action before this reply only looked (a Read), or nothing before is known."""
        last = next((m for m in reversed(before) if m.get("role") == "assistant" and not placeholder(m)), None)
        if last is None:
            return True
        calls = self.calls(last)
        return bool(calls) and all(name in _LOOKUPS for name, _ in calls.values())


READER = ClaudeCode()

# What Claude Code puts in as the assistant's message when it resumes a conversation the person had
# interrupted (a refused tool call, Esc): no model wrote it, and it is sent on to the API with the rest.
PLACEHOLDER = "No response requested."


def placeholder(msg: Mapping[str, Any]) -> bool:
    """Whether an assistant message is Claude Code's own placeholder, not a model's reply."""
    content = msg.get("content")
    if isinstance(content, list) and len(content) == 1 and is_object(content[0]):
        content = content[0].get("text") if content[0].get("type") == "text" else None
    return msg.get("role") == "assistant" and content == PLACEHOLDER and not msg.get("tool_calls")


def _records(raw: list[str]) -> list[Any]:
    """A session file's records; a last line cut short (a session still being written) is left out, any
    other that is not JSON is named by its line."""
    numbered = [(n, x) for n, x in enumerate(raw, 1) if x.strip()]
    out = []
    for i, (n, x) in enumerate(numbered):
        try:
            out.append(json.loads(x))
        except ValueError as exc:
            if i == len(numbered) - 1 and not x.rstrip().endswith("}"):
                break
            raise ValueError(f"line {n} of the session is not JSON: {exc}") from None
    return out


def transcript(data: bytes, locator: Mapping[str, Any]) -> Transcript:
    """One assistant reply of a raw session file: the conversation before it, the reply (its blocks
    gathered across lines) and what came after, as the Messages API carried them."""
    text = data.decode("utf-8-sig")  # a copy saved on Windows may begin with a byte-order mark
    if text.lstrip().startswith("["):  # the same records saved as one JSON array (a hook's copy of a session)
        lines = json.loads(text)
        if not isinstance(lines, list) or not all(isinstance(x, dict) for x in lines):
            raise LookupError("a JSON array that is not a session's records (objects with a 'type')")
    else:  # one JSON document per "\n": not `splitlines()`, which also breaks at U+2028, U+0085 and the like,
        # which JSON strings hold unescaped (pasted web text, text decoded twice)
        lines = _records(text.split("\n"))
    key = "message_id" if "message_id" in locator else "uuid"
    target = str(locator[key])
    convo: list[dict[str, Any]] = []  # Anthropic-shaped messages, consecutive same-role lines merged
    start = None
    # A subagent's own file (`subagents/.../agent-*.jsonl`) holds nothing but its side chain: read it as the
    # conversation it is. In a session's file, a side chain is a subagent's, not the session's.
    talk = [x for x in lines if x.get("type") in ("user", "assistant")]
    own = bool(talk) and all(x.get("isSidechain") for x in talk)
    for line in lines:
        if line.get("type") not in ("user", "assistant") or (line.get("isSidechain") and not own) or line.get("isMeta"):
            continue
        if line.get("isCompactSummary") or line.get("isVisibleInTranscriptOnly"):
            continue  # a compaction's summary: Claude Code's own words, which would join the person's message
        msg = line.get("message") or {}
        if not isinstance(msg, dict):
            raise LookupError(f"a {line.get('type')} record whose message is not an object: is this a session?")
        role, content = msg.get("role"), msg.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": str(content or "")}]
        ident = msg.get("id") if role == "assistant" else None
        # the reply located: an assistant's (a uuid may name any record, a person's too)
        mine = role == "assistant" and ((ident == target) if key == "message_id" else (line.get("uuid") == target))
        if convo and convo[-1]["role"] == role and (role == "user" or convo[-1].get("_id") == ident):
            convo[-1]["content"] += blocks  # one reply spans lines; a user's results come as several
        else:
            convo.append({"role": role, "content": list(blocks), "_id": ident, "_by": msg.get("model")})
        if mine and start is None:
            start = len(convo) - 1
    if start is None:
        raise LookupError(f"no assistant reply {target!r} in this session")
    # One reply may be interleaved with its tool results (parallel calls): gather the reply's blocks.
    reply_blocks, after_msgs, i = list(convo[start]["content"]), [], start + 1
    ident = convo[start].get("_id")  # None: records without the API's message id tell no reply apart
    while i < len(convo):
        m = convo[i]
        if m["role"] == "assistant":
            if ident is not None and m.get("_id") == ident:
                reply_blocks += m["content"]
                i += 1
                continue
            if m["_by"] == "<synthetic>" and placeholder(m):  # Claude Code's, not a model's: the judge passes
                # over it too (`lwfsm.turn.judge.what_came_after`)
                i += 1
                continue
            break
        after_msgs.append(m)
        i += 1
    after = [{"role": m["role"], "content": m["content"]} for m in after_msgs]
    before = [{"role": m["role"], "content": m["content"]} for m in convo[:start]]
    return Transcript("anthropic", [*before, {"role": "assistant", "content": reply_blocks}, *after], start, [])
