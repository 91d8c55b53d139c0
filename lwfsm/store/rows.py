"""How a conversation is kept in a store row, and the idempotency key of a call.

The format itself (header, key, state, the front end's lines) is `lwfsm.turn.rows`, re-exported here.
A row's data is one header line, `lwfsm-session/1 <call key>`, then the `ConversationState` JSON on
one line, then any lines of the front end's own (the gateway keeps its record of the conversation
and its recent judged turns there, one JSON line each). So every row of every front end can be read
by `lwfsm sessions`. The call key is the digest of the last settled turn call (its messages, or the
request id the client gave); a turn call arriving with the same key is a redelivery (a client retry)
and is not judged again.
"""

from __future__ import annotations

from ..turn import Conversation, TurnCore
from ..turn.rows import HEADER, Row, call_key, encode, parse, split
from .base import Store

__all__ = ["CHAINS", "HEADER", "call_key", "decode", "encode", "load", "restore", "split"]

CHAINS = "lwfsm-response:"  # keys of the gateway's Responses API chains: rows that are not conversations


def decode(store: Store, session: str, row: Row) -> tuple[str, str | None]:
    """(state JSON, call key) of a row; StoreError naming the store and session when it is not ours."""
    state, call, _ = split(store.url, session, row.data)
    return state, call


def load(store: Store, core: TurnCore, session: str) -> tuple[Conversation | None, str | None]:
    """The stored conversation `session` (None if there is none) and the key of its last settled call."""
    row = store.read(session)
    return (None, None) if row is None else restore(store, core, session, row)


def restore(store: Store, core: TurnCore, session: str, row: Row) -> tuple[Conversation, str | None]:
    """The conversation a row holds, and the key of its last settled call; StoreError when it is not ours."""
    conv, call, _ = parse(store.url, session, row, core.restore)
    return conv, call
