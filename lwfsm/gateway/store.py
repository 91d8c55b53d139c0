"""The gateway's view of a session store: read, compare-and-set, list, delete; pure Python.

This is the seam where `lwfsm.store.open_store(url)` (SQLite, Redis) plugs in: anything with these
four methods works. Two stand-ins ship here: `MemoryStore` (one process, lost on restart) and
`DirectoryStore` (one JSON file per conversation, for a single host; enough to restart a gateway).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from ..errors import ConfigError

__all__ = ["DirectoryStore", "MemoryStore", "Store", "open_gateway_store"]


class Store(Protocol):
    def get(self, key: str) -> tuple[int, str] | None:
        """(version, value) or None when the key is unknown."""

    def put(self, key: str, value: str, expected: int) -> bool:
        """Write when the stored version is `expected` (0: absent); False on a conflict."""

    def list(self) -> list[str]: ...

    def delete(self, key: str) -> bool: ...


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[int, str] | None:
        return self._data.get(key)

    def put(self, key: str, value: str, expected: int) -> bool:
        with self._lock:
            current = self._data.get(key)
            if (current[0] if current else 0) != expected:
                return False
            self._data[key] = (expected + 1, value)
            return True

    def list(self) -> list[str]:
        return list(self._data)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None


class DirectoryStore:
    """One file per key: `<version>\\n<value>`, replaced atomically. One process at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"store directory {str(self.path)!r} cannot be created: {exc}") from None
        self._lock = threading.Lock()

    def _file(self, key: str) -> Path:
        return self.path / f"{key}.json"  # keys are made of [A-Za-z0-9_.-] (gateway.identity)

    def get(self, key: str) -> tuple[int, str] | None:
        try:
            text = self._file(key).read_text("utf-8")
        except FileNotFoundError:
            return None
        version, _, value = text.partition("\n")
        return int(version), value

    def put(self, key: str, value: str, expected: int) -> bool:
        with self._lock:
            current = self.get(key)
            if (current[0] if current else 0) != expected:
                return False
            fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{expected + 1}\n{value}")
            os.replace(tmp, self._file(key))
            return True

    def list(self) -> list[str]:
        return sorted(p.name[: -len(".json")] for p in self.path.glob("*.json"))

    def delete(self, key: str) -> bool:
        with self._lock:
            try:
                self._file(key).unlink()
            except FileNotFoundError:
                return False
            return True


def open_gateway_store(url: str | None) -> Store:
    """`memory://` (the default) or `file:///some/dir`. Swap for `lwfsm.store.open_store` once it lands."""
    if not url or url == "memory://":
        return MemoryStore()
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.path:
        return DirectoryStore(parsed.path)
    raise ConfigError(f"store {url!r}: this gateway knows memory:// and file:///path/to/dir")
