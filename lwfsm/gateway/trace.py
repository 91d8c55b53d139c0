"""`lwfsm serve --log-dir DIR`: the gateway's trace, one line per judged turn in the trace format
(`lwfsm.cost.records`, what the adapter's `log_dir` writes), so `lwfsm report DIR` and `lwfsm simulate
--trace DIR` read the traffic of agents nobody can modify.

One file per conversation. Its name is chosen when the conversation's first turn is judged and kept
in the conversation's stored metadata, so every gateway process, and a gateway after a restart,
appends to the same file, while a new conversation under an id used before (or one reset) gets a file
of its own, named to sort after the first (the time it began, then random).
The line's `session` is the gateway's conversation key (scoped by the client's key), not the id the
client sent: two clients' conversations never share a row of the report.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..turn.core import append_record

__all__ = ["TRACE_NAME", "TraceLog"]

# The names `TraceLog.name` gives: a file of --log-dir, never a path (a row read back is checked against it)
TRACE_NAME = re.compile(r"[\w.-]{0,48}-[0-9a-f]{12}(?:[0-9a-f]{8})?\.jsonl", re.ASCII)

logger = logging.getLogger("lwfsm.gateway")


class TraceLog:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:  # an unwritable directory is found at start, not after a turn was committed
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # its file names hold session ids
            probe = self.folder / f".lwfsm-write-test-{uuid.uuid4().hex}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"--log-dir {str(self.folder)!r} is not writable: {exc}") from None

    def name(self, meta: dict[str, Any], key: str) -> str:
        """The conversation's file name, chosen once and kept in `meta` (stored with the conversation)."""
        name = meta.get("trace")
        if not isinstance(name, str):
            readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[-48:].lstrip(".")
            # the time first: a conversation's files sort as they began (report reads the later one as ID#2)
            name = meta["trace"] = f"{readable}-{time.time_ns() // 1_000_000:012x}{uuid.uuid4().hex[:8]}.jsonl"
        return name

    def write(self, meta: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        """Append one judged turn; the turn is committed already, so a failed write is logged, not raised."""
        path = self.folder / str(meta["trace"])
        if (exc := append_record(path, record)) is not None:
            logger.error(
                "could not write turn %s of %s to %s: %s", record.get("turn"), record.get("session"), path, exc
            )
