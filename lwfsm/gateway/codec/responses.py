"""The OpenAI Responses codec, translated to and from Chat Completions: a request's items as chat
messages, the Chat request that serves it, a Responses object and its stream events. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .base import Answer, Request
from .chat import Chat, OpenAIStream, plain_chat
from .common import Message

__all__ = [
    "CODEC",
    "ResponsesStream",
    "responses_chat_request",
    "responses_messages",
    "responses_object",
    "responses_tools",
]


def _parts_text(content: Any) -> str:
    """Text of a Responses content value: a string, or parts (input_text, output_text, refusal...)."""
    if isinstance(content, str):
        return content
    out = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            out.append(part["text"])
        elif isinstance(part, Mapping) and isinstance(part.get("refusal"), str):
            out.append(part["refusal"])
    return "\n".join(out)


def responses_messages(items: Any) -> list[Message]:
    """Responses `input` (a string or items) as OpenAI chat messages.

    Messages keep their role and text; `function_call` items become the `tool_calls` of an assistant
    message (consecutive calls, and a text message just before them, share one); `function_call_output`
    items become `tool` messages. Reasoning and other item types carry nothing judging reads: dropped.
    """
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[Message] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") in ("user", "assistant", "system", "developer"):
            out.append({"role": item["role"], "content": _parts_text(item.get("content"))})
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id") or ""),
                "type": "function",
                "function": {"name": str(item.get("name", "")), "arguments": str(item.get("arguments", ""))},
            }
            if out and out[-1]["role"] == "assistant":
                out[-1].setdefault("tool_calls", []).append(call)
                if out[-1].get("content") == "":
                    out[-1]["content"] = None
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")), "content": _parts_text(output)})
    return out


def responses_tools(tools: Any) -> list[Message]:
    """Responses function tools in Chat Completions shape; built-in tools (web search...) are dropped."""
    out: list[Message] = []
    for t in tools if isinstance(tools, list) else ():
        if isinstance(t, Mapping) and t.get("type") == "function" and t.get("name"):
            fn = {k: t[k] for k in ("name", "description", "parameters", "strict") if t.get(k) is not None}
            out.append({"type": "function", "function": fn})
    return out


def responses_chat_request(body: Mapping[str, Any], messages: list[Message], tools: list[Message]) -> Message:
    """The Chat Completions request that serves a Responses request (streamed, with usage, if it is)."""
    # Codex sends its instructions as `developer` messages; `system` is what every Chat Completions
    # server accepts (OpenAI treats the two alike), so any openai/... upstream can serve them.
    messages = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in messages]
    messages = plain_chat(messages)  # Responses items and stored replies have tool calls with a null content
    chat: Message = {"model": body.get("model", "lwfsm"), "messages": messages}
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        chat["tool_choice"] = choice
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "max_tokens")):
        if body.get(ours) is not None:
            chat[theirs] = body[ours]
    if tools and body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]  # dropped for a model without reasoning (`targets`)
    if body.get("stream"):
        chat["stream"], chat["stream_options"] = True, {"include_usage": True}
    return chat


def _responses_usage(usage: Any) -> Message | None:
    if not isinstance(usage, Mapping):
        return None  # the upstream reported none: the client sees null, not zero tokens
    u = usage

    def num(v: Any) -> int:
        return v if type(v) is int and v > 0 else 0

    inp, out = num(u.get("prompt_tokens")), num(u.get("completion_tokens"))
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": num((u.get("prompt_tokens_details") or {}).get("cached_tokens"))},
        "output_tokens": out,
        "output_tokens_details": {
            "reasoning_tokens": num((u.get("completion_tokens_details") or {}).get("reasoning_tokens"))
        },
        "total_tokens": inp + out,
    }


def responses_object(rid: str, body: Mapping[str, Any], reply: Mapping[str, Any], usage: Any, created: int) -> Message:
    """A completed Responses API response for an assistant message (OpenAI chat shape)."""
    output: list[Message] = []
    text = reply.get("content")
    if isinstance(text, str) and text:
        output.append(
            {
                "type": "message",
                "id": f"msg_{rid[5:]}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        )
    for i, call in enumerate(reply.get("tool_calls") or ()):
        fn = call.get("function") or {}
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{rid[5:]}_{i}",
                "call_id": call.get("id"),
                "name": fn.get("name"),
                "arguments": fn.get("arguments", ""),
                "status": "completed",
            }
        )
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": "completed",
        "model": body.get("model", "lwfsm"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "previous_response_id": body.get("previous_response_id"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "error": None,
        "incomplete_details": None,
        "text": {"format": {"type": "text"}},
        "usage": _responses_usage(usage),
    }


class ResponsesStream:
    """Chat Completions stream chunks as Responses API events, written as the chunks arrive.

    `start()` is `response.created` and `response.in_progress`; `add(chunk)` opens an output item when
    its first text or tool call arrives (closing the one before: `*.done` and `output_item.done`) and
    sends each piece as a delta; `finish()` closes the last item and sends `response.completed` with
    the whole response, usage included. The chunks also build the reply (`acc`) the turn is judged on.
    """

    def __init__(self, rid: str, body: Mapping[str, Any], created: int) -> None:
        self.rid, self.body, self.created = rid, body, created
        self.acc = OpenAIStream(str(t["function"]["name"]) for t in responses_tools(body.get("tools")))
        self.items: list[Message] = []  # output items, in the order they were opened
        self.calls: dict[int, Message] = {}  # tool call index -> its item
        self._index: dict[str, int] = {}  # a call item's id -> its index (its arguments: acc.pieces)
        self._texts: dict[str, list[str]] = {}  # a message item's id -> its text's pieces
        self.seq = 0
        self.failed = False  # an error event came: the response never completes, nothing more is sent

    def _emit(self, kind: str, **data: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode()

    def _ids(self) -> Message:
        return {"item_id": self.items[-1]["id"], "output_index": len(self.items) - 1}

    def _open(self, item: Message) -> bytes:
        out = self._close()
        self.items.append(item)
        added = {**item, "content": []} if item["type"] == "message" else item
        out += self._emit("response.output_item.added", output_index=len(self.items) - 1, item=added)
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += self._emit("response.content_part.added", **self._ids(), content_index=0, part=part)
        return out

    def _close(self) -> bytes:
        if not self.items or self.items[-1]["status"] == "completed":
            return b""
        item, ids = self.items[-1], self._ids()
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            part["text"] = "".join(self._texts.get(item["id"], ()))
            out = self._emit("response.output_text.done", **ids, content_index=0, text=part["text"], logprobs=[])
            out += self._emit("response.content_part.done", **ids, content_index=0, part=part)
        else:
            args = item["arguments"] = "".join(self.acc.pieces.get(self._index[item["id"]], ()))
            out = self._emit("response.function_call_arguments.done", **ids, name=item["name"], arguments=args)
        return out + self._emit("response.output_item.done", output_index=ids["output_index"], item=item)

    def start(self) -> bytes:
        head = {**responses_object(self.rid, self.body, {}, None, self.created), "status": "in_progress", "usage": None}
        return self._emit("response.created", response=head) + self._emit("response.in_progress", response=head)

    def add(self, chunk: Any) -> bytes:
        if isinstance(chunk, Mapping) and isinstance(chunk.get("error"), Mapping):
            # the Chat stream's error event (an upstream that broke off): the Responses one. Its `error`
            # member is what the SDK raises on, iterating `responses.create(stream=True)` or `.stream()`.
            e = chunk["error"]
            self.failed = True
            return self._emit("error", code=e.get("type"), message=e.get("message"), param=None, error=e)
        if self.failed:
            return b""
        touched = self.acc.add(chunk)
        out = b""
        choices = chunk.get("choices") if isinstance(chunk, Mapping) else None
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping) and isinstance(delta.get("content"), str) and delta["content"]:
                text = delta["content"]
                item = self.items[-1] if self.items else None
                if item is None or item["type"] != "message" or item["status"] == "completed":
                    n = sum(1 for i in self.items if i["type"] == "message")
                    mid = f"msg_{self.rid[5:]}" + (f"_{n}" if n else "")
                    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    item = {"type": "message", "id": mid, "status": "in_progress", "role": "assistant"}
                    item["content"] = [part]
                    out += self._open(item)
                self._texts.setdefault(item["id"], []).append(text)  # joined once, at its close (not += in a dict)
                out += self._emit("response.output_text.delta", **self._ids(), content_index=0, delta=text, logprobs=[])
        # Tool calls as the accumulator merged them (names taken once, however the server repeats them).
        for i, call, args in touched:
            fn = call["function"]
            if i not in self.calls:
                self._index[f"fc_{self.rid[5:]}_{i}"] = i
                self.calls[i] = {
                    "type": "function_call",
                    "id": f"fc_{self.rid[5:]}_{i}",
                    "call_id": call["id"],
                    "name": fn["name"],
                    "arguments": "",
                    "status": "in_progress",
                }
                out += self._open(self.calls[i])
            item = self.calls[i]
            item["call_id"], item["name"] = call["id"], fn["name"]
            if args and self.items[-1] is item:
                out += self._emit("response.function_call_arguments.delta", **self._ids(), delta=args)
        return out

    def finish(self) -> bytes:
        """The last item's closing events and `response.completed` (once the upstream stream is done)."""
        out = self._close()
        response = responses_object(self.rid, self.body, self.acc.reply(), self.acc.usage, self.created)
        return out + self._emit("response.completed", response={**response, "output": self.items})


def _chat_usage(usage: Any) -> Message | None:
    """Responses usage back in Chat Completions names (the details only where they count something)."""
    if not isinstance(usage, Mapping):
        return None
    inp, out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    found: Message = {
        "prompt_tokens": inp,
        "completion_tokens": out,
        "total_tokens": usage.get("total_tokens", inp + out),
    }
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if cached:
        found["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning:
        found["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return found


class _Events:
    """A Responses stream's events, accumulated: its answer is the one `response.completed` carries."""

    def __init__(self) -> None:
        self.done = False
        self.usage: Any = None  # as response.completed gives it (Responses names)
        self.final: Mapping[str, Any] = {}

    def add(self, event: Any) -> None:
        if isinstance(event, Mapping) and event.get("type") == "response.completed":
            response = event.get("response")
            self.final, self.done = (response if isinstance(response, Mapping) else {}), True
            self.usage = self.final.get("usage")

    def answer(self) -> Answer:
        return CODEC.read_answer(self.final)


class Responses(Chat):
    """The Responses codec (`lwfsm.gateway.codec.base.Codec`). A Responses request is served as one
    Chat Completions call (`responses_chat_request`): what goes upstream (the endpoint, a handoff
    note, when a stream's usage comes) and the error shape are the Chat codec's, inherited."""

    name, params, provider = "responses", "responses", ""

    def read_request(self, body: Mapping[str, Any]) -> Request:
        """The request alone (the chain behind `previous_response_id` is the gateway's to add)."""
        instructions = body.get("instructions")
        messages = responses_messages(body.get("input"))
        full = ([{"role": "system", "content": str(instructions)}] if instructions else []) + messages
        system = str(instructions or "") or "\n".join(
            str(m["content"]) for m in messages if m["role"] in ("system", "developer")
        )
        rest = {k: v for k, v in body.items() if k not in ("input", "instructions", "tools", "model", "stream")}
        tools = responses_tools(body.get("tools"))
        return Request(full, tools, system, bool(body.get("stream")), body.get("model"), rest)

    def read_answer(self, body: Mapping[str, Any]) -> Answer:
        texts: list[str] = []
        calls: list[Message] = []
        for item in body.get("output") or ():
            if not isinstance(item, Mapping):
                continue
            if item.get("type") == "message":
                texts.append(_parts_text(item.get("content")))
            elif item.get("type") == "function_call":
                fn = {"name": item.get("name"), "arguments": item.get("arguments", "")}
                calls.append({"id": item.get("call_id"), "type": "function", "function": fn})
        if not isinstance(body.get("output"), list):
            return Answer(None, _chat_usage(body.get("usage")), None, body.get("model"))
        reply: Message = {"role": "assistant", "content": "".join(texts) or None}
        if calls:
            reply["tool_calls"] = calls
        # Responses has no finish reason: tool calls, a cut for length, or a stop
        length = (body.get("incomplete_details") or {}).get("reason") == "max_output_tokens"
        finish = "tool_calls" if calls else "length" if length else "stop"
        return Answer(reply, _chat_usage(body.get("usage")), finish, body.get("model"))

    def stream(self, tools: Iterable[str] = ()) -> _Events:
        return _Events()

    def events(self, body: Mapping[str, Any]) -> bytes:
        """A whole Responses object as its stream: written by `ResponsesStream` from one Chat chunk."""
        answer = self.read_answer(body)
        message = answer.message or {}
        delta: Message = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(message["tool_calls"])]
        chunk = {
            "choices": [{"index": 0, "delta": delta, "finish_reason": answer.finish_reason}],
            "usage": answer.usage,
        }
        out = ResponsesStream(str(body.get("id", "resp_")), body, int(body.get("created_at") or 0))
        return out.start() + out.add(chunk) + out.finish()


CODEC = Responses()
