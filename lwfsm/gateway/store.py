"""The gateway's view of a session store: `lwfsm.store` (memory://, sqlite:///, redis://) behind the
four calls the gateway makes. The default is an SQLite file, so a restarted gateway continues every
conversation; several gateways (or `--workers N`) share one SQLite file on a host, or one Redis."""

from __future__ import annotations

import urllib.parse
from typing import Protocol

from ..store import Row, open_store
from ..store import Store as BackingStore

__all__ = ["DEFAULT_STORE", "RESPONSES_TTL", "GatewayStore", "Store", "open_chain_store", "open_gateway_store"]

DEFAULT_STORE = "sqlite:///lwfsm-sessions.db"  # in the directory `lwfsm serve` runs in


class Store(Protocol):
    url: str  # for messages (password redacted)

    def get(self, key: str) -> tuple[int, str] | None:
        """(version, value) or None when the key is unknown."""

    def put(self, key: str, value: str, expected: int) -> bool:
        """Write when the stored version is `expected` (0: absent); False on a conflict."""

    def list(self) -> list[str]: ...

    def delete(self, key: str) -> bool: ...


class GatewayStore:
    """An `lwfsm.store` backend seen through the gateway's four calls."""

    def __init__(self, backing: BackingStore) -> None:
        self.backing = backing
        self.url = backing.url  # password redacted

    def get(self, key: str) -> tuple[int, str] | None:
        row = self.backing.read(key)
        return None if row is None else (row.version, row.data)

    def put(self, key: str, value: str, expected: int) -> bool:
        return self.backing.write(key, expected, Row(value, expected + 1))

    def list(self) -> list[str]:
        return self.backing.list()

    def delete(self, key: str) -> bool:
        return self.backing.delete(key)


def open_gateway_store(url: str | None, timeout: float = 30.0) -> GatewayStore:
    """The store at `url` (default: an SQLite file in the working directory); `timeout` bounds each call."""
    return GatewayStore(open_store(url or DEFAULT_STORE, timeout=timeout))


RESPONSES_TTL = 30 * 24 * 3600.0  # as long as OpenAI keeps a stored response, when the store sets no ttl


def open_chain_store(url: str | None, timeout: float = 30.0) -> GatewayStore:
    """Where the Responses API's responses live: the same store in a space of their own, each row
    expiring with the store's TTL (`?ttl=`, as conversations do), else after RESPONSES_TTL."""
    url = url or DEFAULT_STORE
    ttl = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("ttl")
    return GatewayStore(open_store(url, timeout=timeout, space="responses", ttl=None if ttl else RESPONSES_TTL))
