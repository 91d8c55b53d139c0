"""Codex CLI: Responses API; a command's output says `Process exited with code N` (older releases:
JSON with `metadata.exit_code`); `apply_patch` reports a patch that did not apply."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .base import Evidence, Finding, History, Message, Outcome, Reader, Transcript, text_of

__all__ = ["READER"]

_PATCH_FAILED = re.compile(
    r"(apply_patch verification failed|Failed to apply patch|patch (did not|does not) apply|"
    r"Failed to find expected lines|Invalid patch)",
)
# A command that failed inside Codex's sandbox comes back as one string with its exit code.
_SANDBOX = re.compile(r"^failed in sandbox \w+ with execution error: .*?exit code: (-?\d+)", re.S)
# ... and the sandbox refusing to let it create or write something (a folder outside the writable ones: its own
# `~/.codex` for a nested `codex exec`): the lead's command would be refused the same (EACCES, EPERM, as the
# program or the system's language says them); not a script it may not run, nor a test's own words
_CREATING = re.compile(
    r"cannot create|could not create|can't create|cannot touch|failed to (?:initialize|create|write|open)|"
    r"作成できません|无法创建"
)
_DENIED = (
    "Permission denied",
    "Operation not permitted",
    "(os error 1)",
    "(os error 13)",
    "許可がありません",
    "权限不够",
)


def _sandbox_denied(text: str) -> str | None:
    """The line of Codex's sandbox refusal text (its first 4,000 characters) in which a write was denied."""
    for line in text[:4000].splitlines():
        if any(map(line.__contains__, _DENIED)) and _CREATING.search(line):
            return line
    return None


# Codex's own answers to a call it could not make.
_REFUSED_CALL = re.compile(r"^(unsupported call: |failed to parse function arguments|\w+ failed: Unknown process id)")
# A command's answer (`exec_command`, `shell_command`): Codex's own lines (the command echoed, which may
# span lines, its time and status), then `Output:` and the command's output.
_EXEC_HEADER = re.compile(
    # the command runs to the first header line (a lazy scan retried from every one was quadratic)
    r"\A(?:Command: [^\n]*(?:\n(?!Chunk ID: |Wall time: |Exit code: |Process exited)[^\n]*)*\n)?"
    r"(?:(?:Chunk ID: |Wall time: |Exit code: |Process exited with code |Process running with |Original token count: )"
    r"[^\n]*\n)+Output:\n",
    re.S,
)


# A command a code-mode script runs: `tools.shell_command({"command": "..."})` (its argument as JSON).
# (its key quoted or not, its value in any of JavaScript's quotes; read from the call on, not as a whole object:
# a command may hold braces, `awk '{print $2}'`)
_CODE_MODE_CALL = re.compile(
    r"""tools\.(?:shell_command|exec_command)\(\s*\{[^}]{0,400}?["']?\b(?:command|cmd)["']?\s*:\s*"""
    r"""(?:"((?:[^"\\\n]|\\.){0,4000})"|'((?:[^'\\\n]|\\.){0,4000})'|`([^`]{0,4000})`)"""
)
_EXIT_CODES = re.compile(r"^Exit code: (-?\d+)", re.M)
# A command (or a code-mode script) still running when its call returned: the id the model polls it by,
# with `write_stdin` (empty chars: read what it printed since) or `wait`.
_STILL_RUNNING = re.compile(r"^(?:Process running with session ID (\d+)|Script running with cell ID (\w+))", re.M)
_POLLS = frozenset({"write_stdin", "wait"})
_TOOL_CALLED = re.compile(r"\btools\.(\w+)\s*\(")


def _polled(args: Mapping[str, Any]) -> Any:
    """The session or cell id a poll names (None: it names none)."""
    return args.get("session_id", args.get("cell_id"))


def _reports_process(text: str) -> bool:
    """An answer that reports on a command or script (its status, its output), not on the call itself."""
    return text.startswith("Script ") or _EXEC_HEADER.match(text[:20000]) is not None


# Codex's editor extensions put the editor's state (active file, selection, open tabs) before the
# person's words, which follow their own heading.
_IDE_CONTEXT = "# Context from my IDE setup:"
_REQUEST = "## My request for Codex:"


class Codex(Reader):
    name = "codex"
    # Its people send a saved command's very text again (a slash command's template, "commit the changes") to
    # run it again, not to say the reply failed (the same request with more said is still read as one)
    resent_is_correction = False
    REJECTED = re.compile(Reader.REJECTED.pattern[:-1] + r"|<turn_aborted reason=interrupted>)")

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        return system.find("Codex", 0, 4000) >= 0 and system.find("apply_patch", 0, 60000) >= 0

    @staticmethod
    def own_words(text: str) -> str:
        head = text.lstrip()
        if head.startswith(_REQUEST):  # the heading alone: the editor sent no context this time
            return head[len(_REQUEST) :].lstrip("\n")
        if not head.startswith(_IDE_CONTEXT):
            return text
        at = text.find(_REQUEST)
        return "" if at < 0 else text[at + len(_REQUEST) :].lstrip("\n")

    def calls(self, reply: Message) -> dict[str, tuple[str, dict[str, Any]]]:
        out = super().calls(reply)
        for ident, (name, args) in out.items():
            script = args.get("input")
            if name == "exec" and isinstance(script, str) and "tools.apply_patch(" in script:
                if set(_TOOL_CALLED.findall(script[:20000])) == {"apply_patch"}:
                    # a code-mode script that only applies a patch (its text a JavaScript string in the script)
                    # is an edit, as an `apply_patch` call is: what ran before it is tried again after it. One
                    # that also runs a command is read as the command (its output may show it failed).
                    out[ident] = ("apply_patch", {"input": script.replace("\\n", "\n")})
        return out

    @staticmethod
    def command_of(args: Mapping[str, Any]) -> str | None:
        # Code mode: the model's script (`exec`'s input) runs shell commands through `tools.shell_command`
        # or `tools.exec_command`; their command lines are what ran.
        script = args.get("input")
        if isinstance(script, str) and "tools." in script:
            ran = []
            for m in _CODE_MODE_CALL.finditer(script[:20000]):
                if m.group(1) is not None:  # a JSON-like string: its escapes read as JSON reads them
                    try:
                        ran.append(json.loads(f'"{m.group(1)}"'))
                    except ValueError:
                        ran.append(m.group(1))
                elif m.group(2) is not None:
                    ran.append(m.group(2).replace("\\'", "'"))
                else:
                    ran.append(m.group(3))
            if ran:
                return "\n".join(ran)
        return Reader.command_of(args)

    def outcomes(self, reply: Message, after: Sequence[Message], before: Sequence[Message] = ()) -> Iterator[Outcome]:
        calls = self.calls(reply)
        polls = {str(p) for name, args in calls.values() if name in _POLLS and (p := _polled(args)) is not None}
        started = self._started(before, polls) if polls else {}
        for i, msg in enumerate(after):
            if msg.get("role") == "tool":
                tool, args = calls.get(str(msg.get("tool_call_id")), (None, {}))
                polled = _polled(args) if tool in _POLLS else None
                if polled is not None and str(polled) in started and _reports_process(text_of(msg)):
                    # a poll's answer is the polled command's: judged as that command (a read of a missing
                    # file stays a read), its own arguments kept (chars it typed). Not when the poll itself
                    # failed (`write_stdin failed: stdin is closed`): that is the poll's mistake.
                    args = {**started[str(polled)], **args}
                yield self.outcome(i, msg, tool, args)

    def _started(self, before: Sequence[Message], polls: set[str]) -> dict[str, Mapping[str, Any]]:
        """The arguments of the command each poll id names, from the answer that said it was still running
        (read backwards: the latest start of an id, as ids are reused once a process ends; and only as far
        as the starts polled: a long session is not read whole for every poll)."""
        out: dict[str, Mapping[str, Any]] = {}
        answered: dict[str, str] = {}  # tool call id -> poll id, of answers whose call is not found yet
        for m in reversed(before):
            if len(out) == len(polls):
                break
            if m.get("role") == "tool":
                s = _STILL_RUNNING.search(text_of(m)[:400])
                ident = s and (s.group(1) or s.group(2))
                if ident in polls and ident not in out and ident not in answered.values():
                    answered[str(m.get("tool_call_id"))] = ident
            elif answered and m.get("role") == "assistant" and m.get("tool_calls"):
                for call_id, (name, args) in self.calls(m).items():
                    if call_id in answered:
                        ident = answered.pop(call_id)
                        if name not in _POLLS:  # (a poll's own "still running": the start is further back)
                            out[ident] = args
        return out

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        text = text_of(msg)
        if text.startswith("{"):
            try:
                doc = json.loads(text)
            except (ValueError, RecursionError):
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
                code = doc["metadata"].get("exit_code")
                body = str(doc.get("output", ""))
                o = super().outcome(i, {**msg, "content": body}, tool, args)
                o.status = code if isinstance(code, int) else o.status
                return o
        o = super().outcome(i, msg, tool, args)
        if tool and text.startswith(f"{tool} failed"):  # Codex's own word that the call failed (stdin closed...)
            o.flagged = True
        if header := _EXEC_HEADER.match(text[:20000]):  # bounded: a long command echoed is still short
            o.text = text[header.end() :]  # the command's own output; the status was read from the header
            o.running = "\nProcess running with " in header.group(0)
        if text.startswith("Script ") and len(codes := _EXIT_CODES.findall(text[:20000])) > 1:
            # code mode: a script's commands each say their status; the first that failed is the turn's
            o.status = next((int(c) for c in codes if c != "0"), 0)
        if sandboxed := _SANDBOX.match(text[:4000]):
            o.status = int(sandboxed.group(1))
        if tool == "write_stdin" and "\x03" in str(args.get("chars", "")):
            o.status = None  # the process it interrupted exits as interrupted (1, 130): the model's choice
        if o.status == 124 and o.command is not None:
            o.timed_out = True  # Codex ends a command at its timeout with status 124 and says nothing more
        if _REFUSED_CALL.match(text):
            o.command, o.runs, o.flagged = None, False, True
            return o
        if tool == "apply_patch" or _PATCH_FAILED.search(text[:2000]):
            o.command, o.runs = None, False
            o.flagged = o.flagged or bool(_PATCH_FAILED.search(text[:2000]))
        return o

    def classify(self, o: Outcome, reply: Message, past: Callable[[], History] = History) -> Finding | None:
        if o.text.startswith("failed in sandbox ") and (denied := _sandbox_denied(o.text)):
            return Finding("environment", Evidence(f"{self.name}.sandbox_denied", o.message, None, denied[:160]))
        return super().classify(o, reply, past)

    def malformed(self, reply: Message, tools: Sequence[Message]) -> Iterator[Finding]:
        # Codex offers namespaced and built-in tools that a Chat Completions tool list cannot name:
        # only arguments that are not JSON are judged, never the tool's name.
        yield from super().malformed(reply, ())


READER = Codex()


_BARE = frozenset(
    {"message", "reasoning", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"}
    | {"local_shell_call"}
)


def _entries(data: bytes) -> list[str]:
    """A rollout's JSON lines; the items of the single JSON document the first Codex CLI (in TypeScript)
    saved a session as (`{"session": ..., "items": [...]}`), one per line: item N is line N."""
    text = data.decode("utf-8")
    head = text[:200_000].lstrip()
    pretty = head.partition("\n")[0].rstrip() == "{"
    if pretty or (head.startswith('{"session"') and '"items"' in head):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("items"), list):
            return [json.dumps(item) for item in doc["items"]]
    return text.split("\n")  # JSON lines: U+2028 and the like may sit inside their strings


# What Codex itself puts in the conversation as the user's or the developer's: no turn of the person's.
_CONTEXT = (
    "<environment_context>", "<user_instructions>", "# AGENTS.md instructions for", "<turn_aborted",
    "<user_shell_command>", "<skill>", "<subagent_notification>",
)  # fmt: skip


def _context(msg: Mapping[str, Any]) -> bool:
    return msg.get("role") == "developer" or (msg.get("role") == "user" and text_of(msg).lstrip().startswith(_CONTEXT))


def _turn_starts(msg: Mapping[str, Any]) -> bool:
    """A message that starts a turn as Codex counts them for a rollback: any user message but its own context
    (one with a pasted image, `<image name=...>` first, is the person's)."""
    return msg.get("role") == "user" and not _context(msg)


def transcript(data: bytes, locator: Mapping[str, Any]) -> Transcript:
    """The turn at `line` (1-based) of a Codex rollout file: the run of model items around it (a
    preamble, reasoning, one or more calls), what came back, and the conversation before, as Chat
    Completions messages (a custom tool's input becomes its `input` argument)."""
    lines = _entries(data)
    target = int(locator["line"])
    items: list[tuple[int, dict[str, Any]]] = []  # (line, message) in order
    asked: list[int] = []  # where in `items` the messages a person typed are, read at a rollback
    seen = 0
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        entry = json.loads(text)
        if "type" not in entry and entry.get("role") in ("user", "assistant", "tool"):  # a session's items as chat
            msg = {k: entry[k] for k in ("role", "tool_calls", "tool_call_id") if k in entry}
            items.append((n, {**msg, "content": text_of(entry) or None}))
            continue
        if "payload" not in entry and entry.get("type") in _BARE:
            p, item = entry, True  # rollouts of 2025's summer wrote each item bare, without its envelope
        else:
            p, item = entry.get("payload") or {}, entry.get("type") == "response_item"
        kind = p.get("type")
        if entry.get("type") == "event_msg" and kind == "turn_aborted":
            items.append((n, {"role": "user", "content": f"<turn_aborted reason={p.get('reason')}>"}))
        if entry.get("type") == "event_msg" and kind == "thread_rolled_back":
            # the person took back their last `num_turns` turns: Codex dropped them from the model's history
            # (the file keeps them, and what they did on disk stays done); a reply in them is followed by nothing
            asked += [i for i in range(seen, len(items)) if _turn_starts(items[i][1])]
            turns = p.get("num_turns")
            if type(turns) is int and turns > 0 and asked:
                taken = min(turns, len(asked))
                cut = asked[-taken]
                while cut > 0 and _context(items[cut - 1][1]):  # its context goes with it, as Codex drops it
                    cut -= 1
                if items[cut][0] <= target < n:
                    break
                del items[cut:]
                del asked[-taken:]
            seen = len(items)  # (each item is asked about once: a file of many rollbacks stays linear)
            continue
        if not item:
            continue
        if kind == "message" and p.get("role") in ("user", "assistant", "developer"):
            parts = p.get("content") or []
            body = "\n".join(str(c.get("text", "")) for c in parts if isinstance(c, dict))
            items.append((n, {"role": p["role"], "content": body}))
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            if kind == "local_shell_call":  # the Responses API's own shell tool: its command in `action`
                action = p.get("action") if isinstance(p.get("action"), dict) else {}
                name, args = "local_shell", json.dumps({"command": action.get("command")})
            else:
                name = p.get("name")
                args = p.get("arguments") if kind == "function_call" else json.dumps({"input": p.get("input", "")})
            call = {"id": str(p.get("call_id")), "type": "function", "function": {"name": name, "arguments": args}}
            items.append((n, {"role": "assistant", "content": None, "tool_calls": [call]}))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out = p.get("output")
            # content items (code mode's `exec` and `wait`): their text, as the model reads it
            if isinstance(out, list):
                text_out = "\n".join(str(x.get("text", "")) for x in out if isinstance(x, dict))
            else:
                text_out = out if isinstance(out, str) else json.dumps(out)
            items.append((n, {"role": "tool", "tool_call_id": str(p.get("call_id")), "content": text_out}))
    at = next((i for i, (n, _) in enumerate(items) if n >= target), None)
    if at is None or items[at][1]["role"] != "assistant":
        raise LookupError(f"line {target} is not a model item of this rollout")
    start = at
    while start > 0 and items[start - 1][1]["role"] == "assistant" and items[start - 1][1].get("content"):
        start -= 1  # a preamble message said just before the call belongs to the same turn
    end = at + 1
    while end < len(items) and items[end][1]["role"] == "assistant":
        end += 1
    reply: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": []}
    for _, m in items[start:end]:
        reply["content"] = "\n".join(x for x in (reply["content"], m.get("content") or "") if x)
        reply["tool_calls"] += m.get("tool_calls") or []
    after = []
    for _, m in items[end:]:
        if m["role"] == "assistant":
            break
        after.append(m)
    before = [m for _, m in items[:start]]
    return Transcript("openai", [*before, reply, *after], len(before), [])
