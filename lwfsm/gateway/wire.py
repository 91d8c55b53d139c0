"""What the gateway reads from the two wire protocols, as pure functions (no HTTP, no SDK).

Judging runs on OpenAI-shaped messages (`lwfsm.turn.judge`); an Anthropic Messages request is
normalised to that shape for judging only, and the request bytes go upstream as the client sent
them (the model replaced). Replies are read back into one OpenAI-shaped assistant message, whole
or from the SSE events of a stream, with their usage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..turn.stream import OpenAIStream, merged_name

__all__ = [
    "AnthropicStream",
    "anthropic_events",
    "OpenAIStream",
    "SSEReader",
    "anthropic_messages",
    "anthropic_reply",
    "anthropic_tools",
    "first_user_text",
    "plain_chat",
    "merged_name",
    "note_messages",
    "with_model",
    "with_note",
    "openai_reply",
    "ResponsesStream",
    "responses_chat_request",
    "responses_messages",
    "responses_object",
    "responses_tools",
]

Message = dict[str, Any]


def _text(blocks: Any) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        return ""
    out = []
    for b in blocks:
        if isinstance(b, Mapping) and b.get("type") == "text":
            out.append(str(b.get("text", "")))
        elif isinstance(b, str):
            out.append(b)
    return "\n".join(out)


def anthropic_messages(body: Mapping[str, Any]) -> list[Message]:
    """An Anthropic Messages request's conversation in OpenAI shape (for judging only).

    `tool_result` blocks become `tool` messages (with `is_error` kept), `tool_use` blocks become
    `tool_calls` with JSON arguments, text blocks become text. The system prompt is not a turn.
    """
    out: list[Message] = []
    for m in body.get("messages") or ():
        if not isinstance(m, Mapping):
            continue
        role, content = m.get("role"), m.get("content")
        if role == "assistant":
            msg: Message = {"role": "assistant", "content": _text(content)}
            calls = [
                {
                    "id": b.get("id"),
                    "type": "function",
                    "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input", {}))},
                }
                for b in (content if isinstance(content, list) else ())
                if isinstance(b, Mapping) and b.get("type") == "tool_use"
            ]
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
        elif role == "user":
            if not isinstance(content, list):
                out.append({"role": "user", "content": str(content or "")})
                continue
            texts = []
            for b in content:
                if isinstance(b, Mapping) and b.get("type") == "tool_result":
                    tool: Message = {
                        "role": "tool",
                        "tool_call_id": b.get("tool_use_id"),
                        "content": _text(b.get("content")),
                    }
                    if b.get("is_error") is True:
                        tool["is_error"] = True
                    out.append(tool)
                elif isinstance(b, Mapping) and b.get("type") == "text":
                    texts.append(str(b.get("text", "")))
                elif isinstance(b, str):
                    texts.append(b)
            if texts:
                out.append({"role": "user", "content": "\n".join(texts)})
    return out


def anthropic_tools(tools: Any) -> list[Message]:
    """Anthropic tool definitions in OpenAI shape (what the malformed-call detector reads)."""
    return [
        {"type": "function", "function": {"name": t.get("name"), "parameters": t.get("input_schema", {})}}
        for t in (tools if isinstance(tools, list) else ())
        if isinstance(t, Mapping) and t.get("name")
    ]


def openai_reply(response: Mapping[str, Any]) -> tuple[Message | None, Any]:
    """(assistant message, usage) of a Chat Completions response; message None when it has no choice."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None, response.get("usage")
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        return None, response.get("usage")
    reply: Message = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        reply["tool_calls"] = list(message["tool_calls"])
    return reply, response.get("usage")


def openai_chunk(response: Mapping[str, Any]) -> bytes:
    """A whole Chat Completions response as the SSE bytes of a stream: one chunk (its message as the
    delta, its finish reason and usage), then `[DONE]` (for an upstream that ignored `stream: true`)."""
    choices = response.get("choices")
    choice: Mapping[str, Any] = (
        choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
    )
    found = choice.get("message")
    message: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    delta: Message = {"role": "assistant", "content": message.get("content")}
    if isinstance(message.get("tool_calls"), list):
        delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(message["tool_calls"]) if isinstance(c, Mapping)]
    chunk = {
        "id": response.get("id"),
        "object": "chat.completion.chunk",
        "model": response.get("model"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason") or "stop"}],
        "usage": response.get("usage"),
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"


def _anthropic_usage(usage: Any) -> dict[str, int] | None:
    """Anthropic's usage in the ledger's names; None when the reply reported none (unknown, not zero)."""
    if not isinstance(usage, Mapping) or not any(k in usage for k in ("input_tokens", "output_tokens")):
        return None
    u = usage

    def num(k: str) -> int:
        v = u.get(k)
        return v if type(v) is int and v > 0 else 0

    read, write = num("cache_read_input_tokens"), num("cache_creation_input_tokens")
    return {
        "prompt_tokens": num("input_tokens") + read + write,  # the ledger counts all input, cached included
        "completion_tokens": num("output_tokens"),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }


def anthropic_reply(response: Mapping[str, Any]) -> tuple[Message | None, Any]:
    """(assistant message in OpenAI shape, usage in OpenAI names) of an Anthropic Messages response."""
    content = response.get("content")
    if not isinstance(content, list):
        return None, _anthropic_usage(response.get("usage"))
    reply: Message = {"role": "assistant", "content": _text(content)}
    calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input", {}))},
        }
        for b in content
        if isinstance(b, Mapping) and b.get("type") == "tool_use"
    ]
    if calls:
        reply["tool_calls"] = calls
    return reply, _anthropic_usage(response.get("usage"))


class SSEReader:
    """Splits a byte stream into the JSON payloads of its `data:` lines (as bytes arrive)."""

    __slots__ = ("_buf", "ended")

    def __init__(self) -> None:
        self._buf = b""
        self.ended = False  # the `data: [DONE]` that ends a Chat Completions stream came

    @property
    def partial(self) -> bool:
        """Whether the bytes so far end inside a line."""
        return bool(self._buf)

    def feed(self, chunk: bytes) -> list[Any]:
        self._buf += chunk
        out: list[Any] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                return out
            line, self._buf = self._buf[:i].rstrip(b"\r"), self._buf[i + 1 :]
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    self.ended = True
                elif data:
                    try:
                        out.append(json.loads(data))
                    except ValueError:
                        pass  # not ours to judge: the client gets the bytes as they came


class AnthropicStream:
    """Rebuilds the assistant message (OpenAI shape) and usage from Anthropic stream events."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}
        self.model: Any = None  # the model message_start names
        self.done = False

    def add(self, event: Any) -> None:
        if not isinstance(event, Mapping):
            return
        kind = event.get("type")
        if kind == "message_start":
            self.usage.update((event.get("message") or {}).get("usage") or {})
            self.model = (event.get("message") or {}).get("model")
        elif kind == "content_block_start":
            block = dict(event.get("content_block") or {})
            block["_json"] = ""
            self.blocks[int(event.get("index", 0))] = block
        elif kind == "content_block_delta":
            block = self.blocks.setdefault(int(event.get("index", 0)), {"type": "text", "text": "", "_json": ""})
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + str(delta.get("text", ""))
            elif delta.get("type") == "input_json_delta":
                block["_json"] += str(delta.get("partial_json", ""))
        elif kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True

    def reply(self) -> tuple[Message, Any]:
        texts, calls = [], []
        for i in sorted(self.blocks):
            b = self.blocks[i]
            if b.get("type") == "text":
                texts.append(str(b.get("text", "")))
            elif b.get("type") == "tool_use":
                # the arguments as streamed: a malformed stream stays malformed, for the detector to see
                args = b["_json"] or json.dumps(b.get("input") or {})
                calls.append(
                    {"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": args}}
                )
        msg: Message = {"role": "assistant", "content": "\n".join(texts)}
        if calls:
            msg["tool_calls"] = calls
        return msg, _anthropic_usage(self.usage)


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for m in messages:
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else _text(c)
    return ""


def anthropic_events(message: Mapping[str, Any]) -> bytes:
    """A whole Anthropic message as the SSE events of a stream (for replies that were not streamed)."""
    head = {k: v for k, v in message.items() if k != "content"}
    head["content"] = []
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": head})]
    for i, block in enumerate(message.get("content") or ()):
        if block.get("type") == "tool_use":
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block.get("input", {}))}
        else:
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": str(block.get("text", ""))}
        events += [
            ("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": i}),
        ]
    usage = message.get("usage") or {}
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": None},
                "usage": {"output_tokens": usage.get("output_tokens", 0)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')


def with_model(raw: bytes, body: Mapping[str, Any], model: str) -> bytes:
    """The request bytes with the top-level model replaced, without re-serialising the body.

    Inside a JSON string a quote is escaped, so `"model": "..."` in the bytes is always a key; when
    there is exactly one such key-value and its value is the body's model, it is the top-level one.
    Otherwise the body is serialised again.
    """
    found = list(_MODEL.finditer(raw))
    if len(found) == 1:
        m = found[0]
        try:
            same = json.loads(b'"' + m.group(1) + b'"') == body.get("model")
        except ValueError:
            same = False
        if same:
            return raw[: m.start(1)] + json.dumps(model)[1:-1].encode() + raw[m.end(1) :]
    return json.dumps({**body, "model": model}).encode()


# -- handoff notes: added at the end of the conversation, in the upstream request only --


def note_messages(protocol: str, messages: Sequence[Any], note: str) -> list[Any]:
    """The messages with a handoff note at the end (a new list: the client's is not changed).

    Chat Completions: a user message after the last one. Messages: a text block at the end of the
    last user message's content (after its tool_result blocks), or a user message of its own when
    the last message is not the user's.
    """
    if protocol == "openai":
        return [*messages, {"role": "user", "content": note}]
    block = {"type": "text", "text": note}
    last = messages[-1] if messages else None
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return [*messages, {"role": "user", "content": [block]}]
    content = last.get("content")
    blocks = list(content) if isinstance(content, list) else ([{"type": "text", "text": content}] if content else [])
    return [*messages[:-1], {**last, "content": [*blocks, block]}]


# A JSON string (with an optional `:` after it: then it is a key) or a bracket. Numbers, true,
# false and null are skipped over: only strings and containers matter for finding a member.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?|[\[\]{}]')


def _members(raw: bytes, start: int) -> tuple[int, list[tuple[bytes | None, int, int]]] | None:
    """(end, members) of the object or array opening at raw[start]: each member whose value is a
    string, an object or an array, as (key as written, or None in an array, start, end)."""
    depth, key, opened = 0, None, 0
    out: list[tuple[bytes | None, int, int]] = []
    for m in _TOKEN.finditer(raw, start):
        c = raw[m.start()]
        if c == 0x22:  # a string: a key (followed by `:`) or a value
            if depth == 1:
                if m.group(1):
                    key = m.group(0)[: len(m.group(0)) - len(m.group(1))]
                else:
                    out.append((key, m.start(), m.end()))
                    key = None
        elif c in b"[{":
            depth += 1
            if depth == 2:
                opened = m.start()
        else:
            depth -= 1
            if depth == 1:
                out.append((key, opened, m.end()))
                key = None
            elif depth == 0:
                return m.end(), out
    return None


def with_note(raw: bytes, protocol: str, note: str) -> bytes | None:
    """The request bytes with a handoff note spliced in at the end of the conversation (as
    `note_messages` adds it), every byte before it unchanged, so a provider's prompt cache keeps the
    prefix. None when the bytes do not have the expected shape (the caller serialises again)."""
    top = _members(raw, raw.find(b"{")) if raw.lstrip().startswith(b"{") else None
    spans = [m for m in top[1] if m[0] == b'"messages"'] if top else []
    if len(spans) != 1 or raw[spans[0][1]] != ord("["):
        return None
    _, first, end = spans[0]
    inside = _members(raw, first)
    if inside is None:
        return None
    elements = inside[1]
    close = end - 1  # the `]` that ends the messages
    comma = b"," if elements else b""
    if protocol == "openai":
        return raw[:close] + comma + json.dumps({"role": "user", "content": note}).encode() + raw[close:]
    block = json.dumps({"type": "text", "text": note}).encode()
    last = json.loads(raw[elements[-1][1] : elements[-1][2]]) if elements else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return raw[:close] + comma + b'{"role":"user","content":[' + block + b"]}" + raw[close:]
    fields = _members(raw, elements[-1][1])
    content = [m for m in fields[1] if m[0] == b'"content"'] if fields else []
    if len(content) != 1:
        return None
    _, a, b = content[0]
    if raw[a] == ord("["):  # blocks: one more at the end
        more = b"," if isinstance(last["content"], list) and last["content"] else b""
        return raw[: b - 1] + more + block + raw[b - 1 :]
    # a string: the same text as the first block, then the note
    text = b'{"type":"text","text":' + raw[a:b] + b"}," if last["content"] else b""
    return raw[:a] + b"[" + text + block + b"]" + raw[b:]


def noted(raw: bytes, body: Mapping[str, Any], protocol: str, note: str) -> bytes:
    """`with_note`, or the body serialised again with `note_messages` when the bytes are unusual."""
    spliced = with_note(raw, protocol, note)
    if spliced is not None:
        return spliced
    return json.dumps({**body, "messages": note_messages(protocol, body.get("messages") or [], note)}).encode()


# -- the OpenAI Responses API, translated to and from Chat Completions --


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


def plain_chat(messages: Sequence[Any]) -> list[Any]:
    """Chat Completions messages as every OpenAI-compatible server takes them, for the requests the
    gateway translates (never a Chat client's own bytes): an assistant message's null or missing content
    is "" (llama.cpp's server answers 500 to null, and to missing, where OpenAI, vLLM and LiteLLM take
    ""), and a system message given as text parts is one string, the parts' texts one per line (a list
    is a 500 there too). Other messages are returned as they are (the same objects)."""
    out = []
    for m in messages:
        if isinstance(m, Mapping) and m.get("role") == "assistant" and m.get("content") is None:
            m = {**m, "content": ""}
        elif isinstance(m, Mapping) and m.get("role") == "system" and isinstance(m.get("content"), list):
            parts = m["content"]
            if all(isinstance(b, Mapping) and b.get("type") == "text" for b in parts):
                m = {**m, "content": _text(parts)}
        out.append(m)
    return out


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
        self.seq = 0

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
            out = self._emit("response.output_text.done", **ids, content_index=0, text=part["text"], logprobs=[])
            out += self._emit("response.content_part.done", **ids, content_index=0, part=part)
        else:
            args = item["arguments"]
            out = self._emit("response.function_call_arguments.done", **ids, name=item["name"], arguments=args)
        return out + self._emit("response.output_item.done", output_index=ids["output_index"], item=item)

    def start(self) -> bytes:
        head = {**responses_object(self.rid, self.body, {}, None, self.created), "status": "in_progress", "usage": None}
        return self._emit("response.created", response=head) + self._emit("response.in_progress", response=head)

    def add(self, chunk: Any) -> bytes:
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
                item["content"][0]["text"] += text
                out += self._emit("response.output_text.delta", **self._ids(), content_index=0, delta=text, logprobs=[])
        # Tool calls as the accumulator merged them (names taken once, however the server repeats them).
        for i, call, args in touched:
            fn = call["function"]
            if i not in self.calls:
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
            item["call_id"], item["name"], item["arguments"] = call["id"], fn["name"], fn["arguments"]
            if args and self.items[-1] is item:
                out += self._emit("response.function_call_arguments.delta", **self._ids(), delta=args)
        return out

    def finish(self) -> bytes:
        """The last item's closing events and `response.completed` (once the upstream stream is done)."""
        out = self._close()
        response = responses_object(self.rid, self.body, self.acc.reply(), self.acc.usage, self.created)
        return out + self._emit("response.completed", response={**response, "output": self.items})
