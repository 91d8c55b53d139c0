"""memory://: one process's dictionary; for tests and single-process use."""

from __future__ import annotations

import threading
import time

from .base import Row

__all__ = ["MemoryStore"]


class MemoryStore:
    """Rows in a dict behind a lock; expiry is checked when a row is read. Nothing waits: `nowait`."""

    nowait = True

    def __init__(self, url: str = "memory://", *, ttl: float | None = None) -> None:
        self.url = url
        self.where = f"memory:{id(self)}"  # (its rows are its own, whatever its URL)
        self.ttl = ttl
        self._rows: dict[str, tuple[Row, float | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryStore {self.url} rows={len(self._rows)}>"

    def _live(self, session: str, now: float) -> Row | None:
        got = self._rows.get(session)
        if got is None:
            return None
        row, expires = got
        if expires is not None and expires <= now:
            del self._rows[session]
            return None
        return row

    def read(self, session: str, *, wait: bool = True) -> Row | None:
        with self._lock:
            return self._live(session, time.monotonic())

    def write(self, session: str, expected: int, row: Row, *, wait: bool = True) -> bool:
        with self._lock:
            now = time.monotonic()
            current = self._live(session, now)
            if (current.version if current else 0) != expected:
                return False
            self._rows[session] = (row, now + self.ttl if self.ttl else None)
            return True

    def list(self) -> list[str]:
        with self._lock:
            now = time.monotonic()
            return sorted(s for s in list(self._rows) if self._live(s, now) is not None)

    def delete(self, session: str) -> bool:
        with self._lock:
            return self._rows.pop(session, None) is not None

    def close(self) -> None:
        pass
