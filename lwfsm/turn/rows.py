"""How a conversation is kept in a store row, and the idempotency key of a call (the format the
conversation loop writes; `lwfsm.store` holds the rows).

A row's data is one header line, `lwfsm-session/1 <call key>`, then the `ConversationState` JSON on
one line, then any lines of the front end's own (the gateway keeps its record of the conversation
and its recent judged turns there, one JSON line each). So every row of every front end can be read
by `lwfsm sessions`. The call key is the digest of the last settled turn call (its messages, or the
request id the client gave); a turn call arriving with the same key is a retry (`lwfsm.turn.loop`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError

from ..errors import SnapshotError, StoreError
from .core import Conversation, ConversationState

__all__ = ["HEADER", "Busy", "Row", "call_key", "encode", "parse", "split"]


@dataclass(frozen=True)
class Row:
    """What a store holds for one conversation: its data (JSON text) and the version it was written at."""

    data: str
    version: int


class Busy(Exception):
    """A store call made with `wait=False` found the store's lock held by another connection: nothing was
    done; make the call again, allowed to wait (off the event loop: `lwfsm.turn.loop`)."""


HEADER = "lwfsm-session/1"


def call_key(messages: Sequence[Mapping[str, Any]], request_id: str | None = None) -> str:
    """The idempotency key of a turn call: its request id if the client gave one, else a digest of its messages."""
    if request_id is not None:
        return "id:" + hashlib.sha256(str(request_id).encode()).hexdigest()[:32]
    text = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), default=str)
    return "m:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def encode(state: ConversationState, call: str | None, extra: Iterable[str] = ()) -> Row:
    """A row: the header, the state, then the front end's `extra` lines (JSON: no newline in them)."""
    try:
        text = state.model_dump_json()
    except PydanticSerializationError:  # a lone surrogate (an upstream sent "\ud800"): not UTF-8, kept as U+FFFD
        text = json.dumps(_utf8(state.model_dump(mode="json")), separators=(",", ":"))
    return Row("\n".join((f"{HEADER} {call or '-'}", text, *extra)), state.version)


_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, a surrogate is always a lone one (JSON pairs are joined)


def _utf8(value: Any) -> Any:
    """`value` with every lone surrogate of its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    return value


def split(url: str, session: str, data: str) -> tuple[str, str | None, list[str]]:
    """(state JSON, call key, the front end's lines) of a row's data; StoreError naming the store
    and session when it is not ours."""
    head, sep, body = data.partition("\n")
    parts = head.split(" ")
    if not sep or len(parts) != 2 or parts[0] != HEADER:
        raise StoreError(
            f"store {url}: session {session!r}: the row is not an lwfsm session (it starts with "
            f"{head[:40]!r}); nothing was overwritten. Delete it (`lwfsm sessions delete`) or use another id.",
            store=url,
            session=session,
        )
    state, _, rest = body.partition("\n")
    return state, (None if parts[1] == "-" else parts[1]), rest.split("\n") if rest else []


def parse(
    url: str, session: str, row: Row, restore: Callable[[str], Conversation]
) -> tuple[Conversation, str | None, list[str]]:
    """(conversation, key of its last settled call, the front end's lines) of a row, the state given to
    `restore`; StoreError naming the store and session when the row is not ours or not this version's."""
    state, call, lines = split(url, session, row.data)
    try:
        conv = restore(state)
    except SnapshotError as exc:
        raise StoreError(
            f"store {url}: session {session!r}: {exc}; nothing was overwritten", store=url, session=session
        ) from exc
    if conv.version != row.version:
        raise StoreError(
            f"store {url}: session {session!r}: the row says version {row.version} but its state says "
            f"{conv.version}: it was edited by hand or by another program; nothing was overwritten",
            store=url,
            session=session,
        )
    return conv, call, lines
