"""What every codec shares: the text of content parts, the SSE reader, and request bytes edited in
place (the model replaced, a handoff note spliced in) without serialising the body again. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_fast: Callable[[bytes | str], Any]
_Refused: type[ValueError]
try:  # the gateway extra's: what the gateway reads on every call, read at twice json's speed
    import orjson

    _fast, _Refused = orjson.loads, orjson.JSONDecodeError
except ImportError:  # `lwfsm judge` reads with these codecs, and needs no extra
    _fast, _Refused = json.loads, ValueError

__all__ = ["Message", "SSEReader", "appended", "first_user_text", "members", "messages_span", "part_text", "with_model"]

Message = dict[str, Any]


def part_text(blocks: Any) -> str:
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
    """Splits a byte stream into the JSON payloads of its events' `data:` lines (as bytes arrive). A line
    that is JSON alone is an event (servers that leave out the blank line between events are read too);
    one that is not is joined with the event's next `data:` lines, with newlines, as SSE says, and read when
    the event ends."""

    __slots__ = ("_buf", "_cr", "_held", "bad", "ended")

    def __init__(self) -> None:
        self._buf: list[bytes] = []  # the bytes of a line not yet whole, as they came
        self._cr = False  # the bytes so far ended in \r: a \n next is the rest of a \r\n
        self._held: list[bytes] = []  # the `data:` lines of an event whose first one was not JSON alone
        self.ended = False  # the `data: [DONE]` that ends a Chat Completions stream came
        self.bad: bytes | None = None  # the first event whose data is not JSON

    @property
    def partial(self) -> bool:
        """Whether the bytes so far end inside a line."""
        return bool(self._buf)

    def feed(self, chunk: bytes) -> list[Any]:
        # A line is joined once it is whole (joining on each read was quadratic in a long line's reads),
        # and split once (cutting each line off the front copied the rest: quadratic in a chunk's lines).
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            if chunk:
                self._buf.append(chunk)
            return []
        data = b"".join([*self._buf, chunk])
        if b"\r" in data:  # a line may end in \r alone, or in \r\n (SSE allows both)
            self._cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = data.split(b"\n")
        self._buf = [rest] if rest else []
        out: list[Any] = []
        for line in lines:
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if self._held:
                    self._held.append(data)
                elif data == b"[DONE]":
                    self.ended = True
                elif data:
                    try:
                        out.append(loads(data))
                    except ValueError:
                        self._held = [data]
            elif not line.strip() and self._held:  # the event's end: its lines read as one
                whole, self._held = b"\n".join(self._held), []
                try:
                    out.append(loads(whole))
                except ValueError:
                    if self.bad is None:
                        self.bad = whole
        return out


def loads(data: bytes | str) -> Any:
    """json.loads at orjson's speed: what orjson refuses (NaN, a lone surrogate) is read by json."""
    try:
        return _fast(data)
    except _Refused:
        try:
            return json.loads(data)
        except RecursionError:  # (orjson refuses past 1,024 levels; json then ran out of stack: a 500)
            raise ValueError("JSON nested too deeply to read") from None


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for m in messages:
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else part_text(c)
    return ""


_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')
# An ASCII character written as \u00XX, which no JSON writer does: it may spell the top-level key
# ("mod\u0065l") where the search for `"model"` cannot see it, while a decoy (a nested key, or a key
# `"\"model"`) is found in its place, and the upstream would read the client's model.
_SPELT = re.compile(rb"\\u00[4-7][0-9a-fA-F]")


def with_model(raw: bytes, body: Mapping[str, Any], model: str, skip: tuple[int, int] | None = None) -> bytes:
    """The request bytes with the top-level model replaced, without re-serialising the body.

    Inside a JSON string a quote is escaped, so `"model": "..."` in the bytes is a key, or the end of
    one (`"\"model": ...`). The top-level key is written out (no escape spells it, `_SPELT`), so when
    there is exactly one such key-value and its value is the body's model, it is the top-level one.
    Otherwise the body is serialised again. `skip`: bytes known to hold no `"model"` (an agent's tools,
    most of its request), not searched.
    """
    a, b = skip or (len(raw), len(raw))
    spelt = _SPELT.search(raw, 0, a) or _SPELT.search(raw, b)
    found = [] if spelt else [*_MODEL.finditer(raw, 0, a), *_MODEL.finditer(raw, b)]
    if len(found) == 1:
        m = found[0]
        try:
            same = json.loads(b'"' + m.group(1) + b'"') == body.get("model")
        except ValueError:
            same = False
        if same:
            return raw[: m.start(1)] + json.dumps(model)[1:-1].encode() + raw[m.end(1) :]
    return json.dumps({**body, "model": model}).encode()


# -- handoff notes: each codec adds one at the end of the conversation, in the upstream request only --


# A JSON string (with an optional `:` after it: then it is a key) or a bracket. Numbers, true,
# false and null are skipped over: only strings and containers matter for finding a member.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?|[\[\]{}]')


def members(raw: bytes, start: int) -> tuple[int, list[tuple[bytes | None, int, int]]] | None:
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


def appended(raw: bytes, element: bytes) -> bytes | None:
    """Request bytes with `element` (JSON) added at the end of the top-level `messages`, every other
    byte as it was; None when the bytes do not have that shape."""
    found = messages_span(raw)
    if found is None:
        return None
    close, elements = found
    return raw[:close] + (b"," if elements else b"") + element + raw[close:]


def messages_span(raw: bytes) -> tuple[int, list[tuple[bytes | None, int, int]]] | None:
    """(where the `]` that ends the top-level `messages` is, its elements as `members` gives them) of
    request bytes; None when the bytes do not have that shape (the caller serialises again)."""
    top = members(raw, raw.find(b"{")) if raw.lstrip().startswith(b"{") else None
    spans = [m for m in top[1] if m[0] == b'"messages"'] if top else []
    if len(spans) != 1 or raw[spans[0][1]] != ord("["):
        return None
    _, first, end = spans[0]
    inside = members(raw, first)
    if inside is None:
        return None
    return end - 1, inside[1]
