"""SWE-agent and mini-swe-agent: observations come back as *user* messages (classic SWE-agent, and
mini-swe-agent's text mode) or tool messages (mini-swe-agent's tool-call mode). mini-swe-agent gives
`<returncode>N</returncode>`; classic SWE-agent gives no status, so its words are read, anchored.
Neither has a person in the loop: their "... and try again" is the harness, not a correction."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .base import (
    _MISUSED,
    Evidence,
    Finding,
    History,
    Message,
    Outcome,
    Reader,
    Transcript,
    first_match,
    text_of,
    tool_calls,
)
from .edits import unbalanced_edit

__all__ = ["MINI", "READER"]

# (mini-swe-agent 2 fences its command as ```mswea_bash_command, or tags it <mswea_bash_command>)
# mini-swe-agent's action: a block tagged as the shell's, `bash` (1.x) or `mswea_bash_command` (2.x), one per
# reply, else it runs none (no release took `sh`: such a block is prose). A bare fence is no
# action: read as one, the closing fence of a Python snippet opened a "command" of the prose after it.
_SHELL_FENCE = re.compile(r"```(?:bash|mswea_bash_command)\s*\n")
# SWE-agent's: the last code block of the reply, fences paired in order at the starts of lines (any tag).
_FENCE = re.compile(r"^```(\S*)\s*\n|^```\s*$", re.M)
_TAGGED = re.compile(r"<mswea_bash_command>(.*?)</mswea_bash_command>", re.S)
_SHOWN_FILE = re.compile(r"\[File: (\S+) \(\d+ lines total\)\]")
_FUNCTION = re.compile(r"<function=([\w-]+)>(.*?)</function>", re.S)
_PARAMETER = re.compile(r"<parameter=(\w+)>\n?(.*?)\n?</parameter>", re.S)
_RETURNCODE = re.compile(r"<returncode>(-?\d+)</returncode>")
# A ReAct template's calls written in the text (`----BEGIN_FUNCTION_CALL----`, the name, then `----ARG----`
# name and value pairs) and its answers, `Result:` or `Tool 'x' returned:`, as system or user messages.
_TEXT_CALL = re.compile(r"----BEGIN_FUNCTION_CALL----\n([\w-]+)\n(.*?)----END_FUNCTION_CALL", re.S)
_RUNS = re.compile(r"bash|shell|cmd|command|exec|run|terminal", re.I)
_TEXT_ARG = re.compile(r"----ARG----\n([\w-]+)\n(?:----VALUE----\n)?(.*?)(?=\n?----ARG----|\Z)", re.S)
_TEXT_RESULT = re.compile(r"\A(?:Result:|Tool '[\w-]+' returned:|(Error executing '[\w-]+':))\s*")
# Older mini-swe-agent templates (and forks) show the observation as a Python dict's repr; mini-swe-agent 2's
# tool-calling template as JSON, the status first (`{"returncode": N, "output": ...}`, or the output's
# head and tail when it is long).
_DICT_OBS = re.compile(r"^\s*(?:Observation:\s*)?\{'output': |^\s*\{\s*\"returncode\": -?\d")


_STATUS_KEY = re.compile(r"""["']returncode["']:\s*(-?\d+)""")
_PARSED = 200_000  # an observation longer is not parsed (a crafted one of nested lists took seconds): its text is read


def _observation(text: str) -> tuple[int, str] | None:
    """(status, output) of an observation written as `{'output': '...', 'returncode': N}`, or as JSON."""
    if not _DICT_OBS.match(text[:40]):
        return None
    value: Any = None
    if len(text) <= _PARSED:
        try:
            if text.lstrip().startswith(("{'", "Observation")):  # a repr: a literal only, nothing is run
                value = ast.literal_eval(text[text.index("{") :].strip())
            else:
                value = json.loads(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = None
    if not isinstance(value, dict) or not isinstance(value.get("returncode"), int):
        # too long to parse, or cut (a message is read up to 2 MB): the status as written, the whole text
        status = _STATUS_KEY.search(text[:200]) or _STATUS_KEY.search(text[-200:])
        return (int(status.group(1)), text) if status else None
    if "output" not in value and "output_head" in value:  # JSON of a long output: its head and tail
        return value["returncode"], f"{value.get('output_head', '')}\n...\n{value.get('output_tail', '')}"
    return value["returncode"], str(value.get("output", ""))


_CALLED = re.compile(r"[\w-]+\(")


def _result(text: str) -> str:
    """A result a ReAct template shows as the call (`name(args=...)`), then the output between markers:
    the output."""
    if not _CALLED.match(text):
        return text
    start = text.find("\n----TOOL RESULT BEGIN----\n")
    end = text.rfind("\n----TOOL RESULT END----")
    return text[start + 27 : end + 1] if 0 <= start < end else text


def _text_calls(text: str) -> list[tuple[str, dict[str, str]]]:
    """A ReAct template's calls written in a reply's text: each tool's name and its arguments."""
    calls = _TEXT_CALL.findall(_closed(text, "----END_FUNCTION_CALL"))
    return [(name, {k: v.strip() for k, v in _TEXT_ARG.findall(body)}) for name, body in calls]


def _closed(text: str, end: str) -> str:
    """`text` up to its last `end`: every match ends there, and an opening with no end after it would
    be scanned to the text's end from every opening (quadratic on `<function=x>` repeated)."""
    return text[: text.rfind(end) + len(end)] if end in text else ""


def _shell_blocks(text: str) -> list[str]:
    """The blocks fenced as the shell's, each to the next fence at a line's start, as mini-swe-agent's
    pattern finds them, in one pass: an opening with no closing after it ends the search (a pattern
    scanned the rest of the text from each of many such openings)."""
    out, at = [], 0
    while (m := _SHELL_FENCE.search(text, at)) is not None:
        end = text.find("\n```", m.end())
        if end < 0:
            break
        out.append(text[m.end() : end].strip())
        at = end + 4
    return out


def _last_block(text: str) -> list[str]:
    """The last code block not inside another, as SWE-agent's thought-action parser takes it."""
    opened: list[re.Match[str]] = []
    last = None
    for m in _FENCE.finditer(text):
        if opened and not m.group(1):
            start = opened.pop()
            if not opened:
                last = text[start.end() : m.start()]
        elif m.group(1) is not None:
            opened.append(m)
    return [] if last is None else [last.strip()]


def _actions(reply: Message, last: bool = False) -> list[str]:
    calls = tool_calls(reply)
    if calls:
        out = []
        for _, _, raw in calls:
            try:
                args = json.loads(raw or "{}") if isinstance(raw, str) else raw
            except (TypeError, ValueError, RecursionError):
                args = {}
            out.append(str(args.get("command", "")) if isinstance(args, dict) else "")
        return out
    text = text_of(reply)
    if "----BEGIN_FUNCTION_CALL----" in text:
        # another tool (a file viewer, a search; an editor's `command` is its verb) runs no command
        return [params.get("command", "") if _RUNS.search(name) else "" for name, params in _text_calls(text)]
    # SWE-agent's XML-like calls written in the text (`<function=bash><parameter=command>...</parameter>`):
    # its parser for them reads no fences, which the thought before the call may hold (mini-swe-agent's
    # reads its fence: a call it quotes is text)
    if last and (out := _functions(text)):
        return out
    blocks = _last_block(text) if last else _shell_blocks(text)
    if not blocks and "<mswea_bash_command>" in text:
        blocks = [m.group(1).strip() for m in _TAGGED.finditer(_closed(text, "</mswea_bash_command>"))]
    return blocks if blocks or last else _functions(text)


def _functions(text: str) -> list[str]:
    out = []
    for name, body in _FUNCTION.findall(_closed(text, "</function>")) if "<function=" in text else ():
        params = dict(_PARAMETER.findall(_closed(body, "</parameter>")))
        if name == "bash":
            out.append(params.get("command", "").strip())
        else:
            out.append(" ".join(x for x in (name, params.get("command", ""), params.get("path", "")) if x))
    return out


class MiniSweAgent(Reader):
    name = "mini_swe_agent"
    LAST = False  # its action is its one shell block (SWE-agent's: the last block)
    human_turns = False
    FORMAT = re.compile(
        r"(Please always provide EXACTLY ONE action|No tool calls found in the response|No function call detected|"
        r"format(ting)? error|Your (last )?(output|response) (was not|did not))",
        re.I,
    )

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        return system.find("<returncode>", 0, 20000) >= 0 or any(
            "<returncode>" in (t := text_of(m)[:200]) or _DICT_OBS.match(t)
            for m in messages[-6:]
            if m.get("role") in ("user", "tool")
        )

    def calls(self, reply: Message) -> dict[str, tuple[str, dict[str, Any]]]:
        """Its actions are shell commands in the reply's text (tool calls in newer versions): read as
        calls, so what the conversation did before a reply (edits, failed runs) is known."""
        if tool_calls(reply):
            return super().calls(reply)
        text = text_of(reply)
        if "----BEGIN_FUNCTION_CALL----" in text:  # a ReAct template's calls: each tool with its own arguments
            return {str(n): call for n, call in enumerate(_text_calls(text))}
        return {str(n): ("bash", {"command": a}) for n, a in enumerate(_actions(reply, self.LAST))}

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        obs = _observation(text_of(msg))
        if obs is None:
            return super().outcome(i, msg, tool, args)
        return Outcome(message=i, text=obs[1], tool=tool, command=self.command_of(args), status=obs[0])

    def outcomes(self, reply: Message, after: Sequence[Message], before: Sequence[Message] = ()) -> Iterator[Outcome]:
        actions = _actions(reply, self.LAST)
        n = 0
        for i, msg in enumerate(after):
            text = _result(text_of(msg))
            # (an observation of its own form first: its output may quote another's `<returncode>`)
            obs = _observation(text) if msg.get("role") in ("user", "tool") else None
            m = None if obs is not None else _RETURNCODE.search(text[:200])
            if obs is not None:
                yield Outcome(
                    message=i,
                    text=obs[1],
                    command=actions[n] if n < len(actions) else None,
                    status=obs[0],
                    runs=True,
                    timed_out=bool(self.TIMEOUT.search(obs[1][:3000])),
                )
                n += 1
            elif msg.get("role") in ("user", "tool") and m:
                command = actions[n] if n < len(actions) else None
                n += 1
                yield Outcome(
                    message=i,
                    text=text,
                    command=command,
                    status=int(m.group(1)),
                    runs=True,
                    timed_out=bool(self.TIMEOUT.search(text[:3000])),
                )
            elif (said := _TEXT_RESULT.match(text)) is not None:
                command = (actions[n] if n < len(actions) else None) or None
                n += 1
                yield Outcome(
                    message=i,
                    text=text[said.end() :],
                    command=command,
                    # a tool's own answer that it failed (the harness could not call it, or it refused)
                    flagged=said.group(1) is not None or (command is None and text[said.end() :].startswith("Error")),
                    runs=command is not None,
                    timed_out=bool(self.TIMEOUT.search(text[:3000])),
                )
            elif msg.get("role") in ("user", "tool") and self.TIMEOUT.search(text[:1000]):
                yield Outcome(message=i, text=text, command=actions[n] if n < len(actions) else None, timed_out=True)
                n += 1
            elif msg.get("role") == "tool" and n < len(actions):
                # a command's output in no shape known: no status, so its last lines are read, as any command's
                if actions[n]:  # (not another tool's answer: a file shown is no output)
                    yield self.outcome(i, {"content": text}, None, {"command": actions[n]})
                n += 1

    def findings(
        self, reply: Message, after: Sequence[Message], tools: Sequence[Message], before: Sequence[Message] = ()
    ) -> Iterator[Finding]:
        yield from super().findings(reply, after, tools, before)
        actions = _actions(reply, self.LAST)
        if len(actions) != 1 and not tool_calls(reply):
            for i, msg in enumerate(after):
                if hit := first_match(self.FORMAT, text_of(msg)[:2000]):
                    yield Finding("task_failure", Evidence(f"{self.name}.format_error", i, hit[0], hit[1]))
                    break


class SweAgent(MiniSweAgent):
    name = "swe_agent"
    LAST = True
    FORMAT = re.compile(
        r"(Your output was not formatted correctly|Your last output did not use any tool calls|"
        r"did not (use|contain) (a|any) (tool|command)|malformed)",
        re.I,
    )
    # The interface's own commands that show a file or search: their output is content, not a report.
    VIEWS = frozenset(
        {
            "open",
            "goto",
            "scroll_up",
            "scroll_down",
            "search_file",
            "search_dir",
            "find_file",
            "create",
            "submit",
            "view",
            "filemap",
            "str_replace_editor",
        }
    )
    EDIT_FAILED = re.compile(
        r"^\[?(Your proposed edit has introduced new syntax error|Error: |ERROR: |Usage: |No replacement was performed|"
        r"Your bash command contained syntax errors and was NOT executed|Interactive operation '.*' is not supported|"
        r"bash: .*: command not found|.*: No such file or directory$|\w+: cannot access|"
        # the file editor refusing its own arguments
        r"Invalid `\w+`(?: parameter)?: |Parameter `\w+` is required)",
        re.M,
    )
    # The harness cancelling a command that ran too long (its `command_cancelled_timeout_template`).
    TIMEOUT = re.compile(f"{Reader.TIMEOUT.pattern}|was cancelled because it took more than \\d+ seconds")

    def calls(self, reply: Message) -> dict[str, tuple[str, dict[str, Any]]]:
        """Its interface's edits are calls of their own (an attempt at the open file, whose path the
        action does not name; `create` names it); anything else runs in the shell."""
        out = super().calls(reply)
        for key, (name, args) in out.items():
            words = str(args.get("command") or "").split(maxsplit=3)
            if name == "bash" and words and words[0] in ("edit", "insert", "append", "create"):
                out[key] = (words[0], {"path": words[1] if words[0] == "create" and len(words) > 1 else ""})
            elif name == "bash" and words[:1] == ["str_replace_editor"] and len(words) > 2 and words[1] != "view":
                out[key] = (words[1], {"path": words[2]})
        return out

    def edited_file(self, observation: str) -> str | None:
        m = _SHOWN_FILE.search(observation[:500])  # the window it shows after an edit is of the file edited
        return m.group(1) if m else None

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        return system.find("autonomous programmer", 0, 4000) >= 0 or any(
            "(Open file:" in text_of(m)[-400:] for m in messages[-4:] if m.get("role") == "user"
        )

    def outcomes(self, reply: Message, after: Sequence[Message], before: Sequence[Message] = ()) -> Iterator[Outcome]:
        actions = _actions(reply, self.LAST)
        for i, msg in enumerate(after):
            if msg.get("role") not in ("user", "tool"):
                continue
            text = re.sub(
                r"(?m)^\(Open file: .*\)\s*\n\(Current directory: .*\)\s*\nbash-\$\s*\Z", "", text_of(msg)
            ).rstrip()
            command = actions[0] if actions else None
            first = (command or "").split()[:1]
            yield Outcome(
                message=i,
                text=text,
                command=command,
                runs=not (first and first[0] in self.VIEWS),
                timed_out=bool(self.TIMEOUT.search(text[:1000])),
            )
            break  # one observation per step

    def findings(
        self, reply: Message, after: Sequence[Message], tools: Sequence[Message], before: Sequence[Message] = ()
    ) -> Iterator[Finding]:
        yield from super().findings(reply, after, tools, before)
        # An edit the harness applied without a linter (only Python files are linted): an edit whose
        # brackets do not balance like the lines it replaced leaves the file broken.
        obs = next((m for m in after if m.get("role") in ("user", "tool")), None)
        if obs is not None and before:
            said = unbalanced_edit(text_of(reply), text_of(obs), before)
            if said is not None:
                yield Finding("task_failure", Evidence(f"{self.name}.unbalanced_edit", after.index(obs), None, said))

    def classify(self, o: Outcome, reply: Message, past: Callable[[], History] = History) -> Finding | None:
        if misused := first_match(_MISUSED, o.text[:4000]):  # its file editor refusing its arguments: nothing ran
            return self._found(o, "task_failure", "misused_command", misused)
        hit = first_match(self.EDIT_FAILED, o.text[:4000])
        if hit and not (o.command and "No matches found" in o.text[:300]):
            from .base import is_probe

            if o.command and is_probe(o.command) and not hit[1].startswith("Your proposed edit"):
                return None
            finding = self._found(o, "task_failure", "error_line", hit, tail=4000)
            if hit[1].lstrip("[").startswith(("Your ", "Interactive operation", "No replacement")):
                return finding  # the harness refused the action: nothing ran, no red phase to look at
            return None if finding.kind != "environment" and self.looked(o, reply, past()) else finding
        return super().classify(o, reply, past)


MINI = MiniSweAgent()
READER = SweAgent()


def transcript_mini(data: bytes, locator: Mapping[str, Any]) -> Transcript:
    """(reply, after, tools) at `message_index` of a mini-swe-agent trajectory's `messages`."""
    messages = [_chat(m) for m in json.loads(data)["messages"]]
    i = int(locator["message_index"])
    return _cut(messages, i)


def _chat(m: Any) -> Any:
    """An entry of a trajectory of mini-swe-agent 2 with a Responses API model (the model's whole response,
    `function_call_output` items) as the chat message it stands for; others unchanged."""
    if not isinstance(m, dict):
        return m
    if m.get("object") == "response":
        said, calls = [], []
        for item in m.get("output") or ():
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                said.append(text_of(item))
            elif item.get("type") == "function_call":
                fn = {"name": str(item.get("name")), "arguments": str(item.get("arguments", ""))}
                calls.append({"id": str(item.get("call_id")), "type": "function", "function": fn})
        return {"role": "assistant", "content": "\n".join(said) or None, "tool_calls": calls}
    if m.get("type") == "function_call_output":
        return {"role": "tool", "tool_call_id": str(m.get("call_id")), "content": str(m.get("output", ""))}
    return m


def transcript(data: bytes, locator: Mapping[str, Any]) -> Transcript:
    """(reply, after, tools) of step `step` of a classic SWE-agent `.traj`: its `history` messages."""
    doc = json.loads(data)
    step = int(locator["step"])
    # (demonstrations kept in the history, `put_demos_in_history`, are marked `is_demo`: no step of this run;
    # a tool result of SWE-agent 1.x names its call in a list, `tool_call_ids`)
    history = [
        {**m, "tool_call_id": m["tool_call_ids"][0]} if m.get("tool_call_ids") and "tool_call_id" not in m else m
        for m in doc["history"]
        if m.get("role") in ("system", "user", "assistant", "tool") and not m.get("is_demo")
    ]
    assistants = [j for j, m in enumerate(history) if m["role"] == "assistant"]
    if step >= len(assistants):
        raise LookupError(f"no step {step} (the trajectory has {len(assistants)} model replies)")
    at = assistants[step]
    agent = history[at].get("agent")
    if agent is not None and any(m.get("agent") not in (None, agent) for m in history):
        # several agents' conversations in one history (CodeR's manager, reproducer, programmer...): the
        # reply's own agent's is its conversation; the next agent's prompt is no answer to it
        own = [j for j, m in enumerate(history) if m.get("agent") in (None, agent)]
        return _cut([history[j] for j in own], own.index(at))
    return _cut(history, at)


def _cut(messages: list[dict[str, Any]], i: int) -> Transcript:
    if messages[i].get("role") != "assistant":
        raise LookupError(f"message {i} is a {messages[i].get('role')} message, not the model's reply")
    after = []
    for m in messages[i + 1 :]:
        if m.get("role") == "assistant":
            break
        after.append({k: v for k, v in m.items() if k in ("role", "content", "tool_call_id", "name")})
    reply = {k: v for k, v in messages[i].items() if k in ("role", "content", "tool_calls")}
    keep = ("role", "content", "tool_calls", "tool_call_id", "name")
    before = [{k: v for k, v in m.items() if k in keep} for m in messages[:i]]
    return Transcript("openai", [*before, reply, *after], i, [])
