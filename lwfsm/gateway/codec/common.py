"""What every codec shares: the text of content parts, the SSE reader, and request bytes edited in
place (the model replaced, a handoff note spliced in) without serialising the body again. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

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


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for m in messages:
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else _text(c)
    return ""


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
