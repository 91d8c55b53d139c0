"""The gateway's conversations: `lwfsm.turn.loop.Loop` over the gateway's store, its rollout and its
store calls (off the event loop within --store-timeout). The policy (attempts, retries, lost races) is
the loop's; only where conversations come from differs: each runs under the spec the rollout gives it.
`Gateway.conversations` is one; `Gateway._load`, `_commit` and `fire` go through it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import SnapshotError, StoreError
from ..turn import Conversation
from ..turn.loop import Loop, Stored
from ..turn.rows import Row
from .trace import TRACE_NAME

if TYPE_CHECKING:
    from .app import Gateway

__all__ = ["Conversations", "meta_of"]


class Conversations(Loop):
    """The conversation loop of one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway.core, gateway.store, run=gateway._io)
        self.gateway = gateway

    def start(self, name: str) -> Conversation:
        return self.gateway.core.start()  # the current spec's (a rollout replaces gateway.core)

    def restore(self, name: str, state: str) -> Conversation:
        return self.gateway.rollout.restore(name, state)

    def current(self, stored: Stored) -> bool:
        return stored.conv.core is self.gateway.core  # kept under a retired spec: restored again, moved

    def stored(self, name: str, row: Row | None) -> Stored:
        try:
            return super().stored(name, row)
        except StoreError as exc:  # a state the spec cannot take: the gateway's 409, not a store failure
            if isinstance(exc.__cause__, SnapshotError):
                raise exc.__cause__ from None
            raise


def meta_of(key: str, lines: Any) -> dict[str, Any]:
    """The gateway's own line of a row (who the conversation is, its switches); {} for a new one."""
    try:
        meta = json.loads(lines[0]) if lines else {}
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise SnapshotError(f"session {key!r}: the gateway's line of the row is not a JSON object")
    trace = meta.get("trace")  # a file in --log-dir: a path from the row would append turns anywhere
    if trace is not None and not (isinstance(trace, str) and TRACE_NAME.fullmatch(trace)):
        raise SnapshotError(
            f"session {key!r}: the row names the trace file {str(trace)[:80]!r}, which is no name the gateway "
            "gives (a file of its own in --log-dir): the row was changed outside the gateway"
        )
    return meta
