"""OpenHands: `execute_bash` results end `[The command completed with exit code N.]`; a command that
stops printing is reported as having no new output after 30 seconds; the file editor's failures start
`ERROR:`. Raw runs are LiteLLM completion logs (`messages`, `fncall_messages`) or event streams."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Message, Outcome, Reader, Transcript, edited_path, text_of

__all__ = ["READER"]

_SHELL = {"execute_bash", "execute_command", "bash", "run", "execute_ipython_cell", "terminal"}
# OpenHands shows the model a browser action it could not carry out as a banner right after the page's
# bracketed header lines ([Current URL: ...], [Focused element bid: ...]), before the page: the error
# between its lines is the evidence (words in the page are not).
_BROWSER_FAILED = re.compile(
    r"\A(?:\[[^\n]*\]\n)*\n?=+ BEGIN error message =+\n"
    r"The following error occurred when (?:executing the last action|trying to visit the URL):\n"
    r"(?P<error>.*?)\n=+ END error message =+$",
    re.S | re.M,
)
_NO_ELEMENT = re.compile(r"Element with index \d+ (?:not found|does not exist)")
_BANNER = (
    "================ BEGIN error message ===============\n"
    "The following error occurred when {}:\n{}\n"
    "================ END error message ===============\n"
)


class OpenHands(Reader):
    name = "openhands"
    human_turns = False  # benchmark runs; OpenHands' own "please continue" nudges are not corrections

    def detect(self, messages: Sequence[Message], system: str) -> bool:
        return system.find("OpenHands", 0, 6000) >= 0 or system.find("execute_bash", 0, 20000) >= 0

    def outcome(self, i: int, msg: Message, tool: str | None, args: Mapping[str, Any]) -> Outcome:
        text = text_of(msg)
        if tool in _SHELL:
            o = super().outcome(i, msg, tool, args)
            o.runs = True
            if str(args.get("is_input", "")).lower() == "true":
                # keys sent to a running process: what it prints and its status are that process's
                o.status, o.runs, o.timed_out = None, False, False
            return o
        # the file editor, the browser, think, finish...: its argument "command" is an editor verb, not a
        # shell command
        failed = text.lstrip().startswith(("ERROR:", "Error:")) or "did not appear verbatim" in text[:500]
        if (args.get("command") == "view" or "view_range" in args) and "does not exist" in text[:500]:
            failed = False  # looking at a path to see whether it is there: "no" is an answer
        if tool and tool.startswith("browser") and _NO_ELEMENT.match(text):
            failed = True  # the agent SDK's browser missing what the model asked for, with no error flag
        if (browser := _BROWSER_FAILED.match(text)) is not None:
            # no error text: what the browser said instead, in the first line after the banner
            said = browser["error"].strip() or text[browser.end() :].strip().partition("\n")[0][:200]
            failed, text = True, said or "(the browser gave no error text)"
        return Outcome(message=i, text=text, tool=tool, flagged=failed, runs=False, edits=edited_path(tool, args))


READER = OpenHands()


def transcript(data: bytes, locator: Mapping[str, Any]) -> Transcript:
    """(messages, index of the reply, tools) for a turn of an OpenHands run: at `index` of a completion
    log's (function-calling) messages, or the action event `event_id` of an event stream (`history`, or
    the bare list of events `--save-trajectory-path` writes)."""
    first = data.lstrip()[:1]
    lines = data.lstrip().split(b"\n", 1)
    if first == b"{" and lines[0].rstrip() != b"{" and b'"history"' in data[:200_000]:  # output.jsonl: a run per line
        doc = _instance(data.splitlines(), locator.get("instance_id"))
    else:
        doc = json.loads(data)
    if isinstance(doc, list):
        return _from_events(_paired(doc), str(locator.get("event_id", locator.get("index"))))
    if "history" in doc:
        return _from_events(_paired(doc["history"]), str(locator.get("event_id", locator.get("index"))))
    messages = doc.get("fncall_messages") or doc["messages"]
    i = int(locator.get("index", locator.get("event_id", -1)))
    if not 0 <= i < len(messages) or messages[i].get("role") != "assistant":
        raise LookupError(f"message {i} is not the model's reply")
    after = []
    for m in messages[i + 1 :]:
        if m.get("role") == "assistant":
            break
        after.append(m)
    tools = doc.get("kwargs", {}).get("tools") or []
    return Transcript("openai", [*messages[:i], messages[i], *after], i, tools if isinstance(tools, list) else [])


def _paired(history: Any) -> Any:
    """A history of [action, observation] pairs (2024's runs) as the events it stands for: a pair's
    index is its action's id, and its observation's cause. Any other history as it is."""
    if not isinstance(history, list) or not history or not all(isinstance(x, list) for x in history):
        return history
    events: list[Any] = []
    for n, pair in enumerate(history):
        action, seen = [*pair, None, None][:2]
        if isinstance(action, dict):
            events.append({**action, "id": n, "source": action.get("source", "agent")})
        if isinstance(seen, dict) and seen.get("observation") not in (None, "null"):
            events.append({**seen, "cause": n, "source": seen.get("source", "environment")})
    return events


def _instance(lines: list[bytes], instance: Any) -> Any:
    """The run of `instance` (its `instance_id`) in an evaluation's output, one run per line; the first
    run when the locator names none (a file of one run)."""
    if instance is None:
        return json.loads(lines[0])
    for line in lines:
        if line.strip() and (run := json.loads(line)).get("instance_id") == instance:
            return run
    raise LookupError(f"no run of instance {instance!r} in this output")


# An event stream's actions, as the tools the model called.
_TOOL_OF = {
    "run": "execute_bash",
    "read": "str_replace_editor",
    "edit": "str_replace_editor",
    "run_ipython": "execute_ipython_cell",
    "browse_interactive": "browser",
}


def _from_events(history: list[dict[str, Any]], event_id: str) -> Transcript:
    """An OpenHands event stream as the messages the model saw: an action is a tool call, its
    observation (linked by `cause`) the tool's answer, with the exit status line OpenHands adds."""
    messages: list[Message] = []
    at = None
    replies: dict[Any, int] = {}  # the message of each of the model's replies (the agent SDK's `llm_response_id`)
    current = None  # the reply the model's last event came from
    if event_id == "None":
        raise LookupError("the locator names no event_id")
    for e in history:
        if not isinstance(e, dict):
            raise LookupError(f"not an OpenHands event stream: an event is {type(e).__name__}")
        if "kind" in e:  # the agent SDK's events (OpenHands 1.0)
            read = _v1(e)
            response = (e.get("llm_response_id") or None) if e["kind"] == "ActionEvent" else None
            # the same reply only while no other of the model's came between (a provider may repeat an id)
            reply = replies.get(response) if response is not None and response == current else None
            if e["kind"] == "ActionEvent" or (e["kind"] == "MessageEvent" and e.get("source") == "agent"):
                current = response
            if reply is not None:
                # the calls of one reply come as an event each (an error the SDK answered one with may come
                # between them): one message, as the model wrote them
                messages[reply] = {
                    **messages[reply],
                    "tool_calls": [*messages[reply]["tool_calls"], *read[0]["tool_calls"]],
                }
                read = []
            elif response is not None:
                replies[response] = len(messages)  # (a repeated id starts another reply)
            if e.get("id") is not None and str(e["id"]) == event_id:
                if e["kind"] != "ActionEvent" and not (e["kind"] == "MessageEvent" and e.get("source") == "agent"):
                    raise LookupError(f"event {event_id} is a {e['kind']}, not the model's")
                at = len(messages) if reply is None else reply
            messages.extend(read)
            continue
        given = e.get("args")
        args: dict[str, Any] = given if isinstance(given, dict) else {}
        if e.get("source") == "user" and e.get("action") == "message":
            messages.append({"role": "user", "content": str(args.get("content") or e.get("message") or "")})
        elif e.get("source") == "agent" and e.get("action"):
            if str(e.get("id")) == event_id:
                at = len(messages)
            name = _TOOL_OF.get(str(e["action"]), str(e["action"]))
            call = {
                "id": str(e.get("id")),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            messages.append(
                {
                    "role": "assistant",
                    "content": e.get("message") if e["action"] == "message" else None,
                    "tool_calls": [call] if e["action"] not in ("message", "finish") else [],
                }
            )
        elif e.get("observation"):
            text = str(e.get("content") or "")
            extras = e.get("extras")
            meta = extras.get("metadata") if isinstance(extras, dict) else None
            code = meta.get("exit_code") if isinstance(meta, dict) else None
            if code is None and isinstance(extras, dict):  # (2024's runs: the status beside the command)
                code = extras.get("exit_code")
            if isinstance(code, int) and code >= 0:
                text += f"\n[The command completed with exit code {code}.]"
            failed = e.get("observation") == "browse" and isinstance(extras, dict) and extras.get("error") is True
            if failed and _BROWSER_FAILED.match(text) is None:  # a run that kept the page alone
                said = extras if isinstance(extras, dict) else {}
                visit = said.get("trigger_by_action") == "browse"  # web_read, not an interactive action
                doing = "trying to visit the URL" if visit else "executing the last action"
                text = _BANNER.format(doing, said.get("last_browser_action_error") or "") + text
            messages.append({"role": "tool", "tool_call_id": str(e.get("cause")), "content": text})
    if at is None:
        raise LookupError(f"no agent action with id {event_id} in this run")
    end = next((j for j in range(at + 1, len(messages)) if messages[j]["role"] == "assistant"), len(messages))
    return Transcript("openai", messages[:end], at, [])


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _parts(content: Any) -> str:
    """Text given as a string or as parts (`[{"type": "text", "text": ...}]`)."""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content or () if isinstance(p, dict))


def _v1(e: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An event of the agent SDK as the message the model saw: an action is a tool call (its
    `tool_call`), an observation (linked by `tool_call_id`) the tool's answer with the exit status
    line, an error the agent SDK answered a call with a flagged answer, a message a message."""
    kind, call_id = e["kind"], str(e.get("tool_call_id"))
    if kind == "ActionEvent":
        call = _obj(e.get("tool_call"))
        args = call.get("arguments")
        if not isinstance(args, str):  # the action itself, when no call was kept: its fields are the arguments
            args = json.dumps({k: v for k, v in _obj(e.get("action")).items() if k != "kind"})
        fn = {"name": str(call.get("name") or e.get("tool_name")), "arguments": args}
        tool_call = {"id": call_id, "type": "function", "function": fn}
        return [{"role": "assistant", "content": _parts(e.get("thought")) or None, "tool_calls": [tool_call]}]
    if kind == "ObservationEvent":
        o = _obj(e.get("observation"))
        text = o["output"] if isinstance(o.get("output"), str) else _parts(o.get("content"))
        error = o.get("error")
        if isinstance(error, str) and error:
            text = f"ERROR:\n{error}" + (f"\n{text}" if text else "")
        meta = _obj(o.get("metadata"))
        code = o.get("exit_code") if isinstance(o.get("exit_code"), int) else meta.get("exit_code")
        if isinstance(meta.get("suffix"), str):  # what the model is shown around the output, as the SDK keeps it
            text = f"{meta.get('prefix') or ''}{text}{meta['suffix']}"
        elif isinstance(code, int) and code >= 0:
            text += f"\n[The command completed with exit code {code}.]"
        flag = {"is_error": True} if error is True or o.get("is_error") is True else {}
        return [{"role": "tool", "tool_call_id": call_id, "content": text, **flag}]
    if kind == "AgentErrorEvent":  # the SDK could not carry the call out (its arguments, a tool that is not there)
        return [{"role": "tool", "tool_call_id": call_id, "content": f"ERROR:\n{e.get('error')}", "is_error": True}]
    if kind == "UserRejectObservation":  # the person, or a hook of theirs, refused the call
        reason = str(e.get("rejection_reason") or "User rejected the action")
        said = reason if reason.lower().startswith("user rejected") else f"User rejected the action: {reason}"
        return [{"role": "tool", "tool_call_id": call_id, "content": said}]
    if kind == "MessageEvent":
        text = _parts(_obj(e.get("llm_message")).get("content"))
        return [{"role": "assistant" if e.get("source") == "agent" else "user", "content": text}]
    return []  # the system prompt, pauses, condensations, state updates: nothing the reply is judged by
