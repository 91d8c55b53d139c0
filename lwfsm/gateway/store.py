"""The gateway's session store: an `lwfsm.store` backend (memory://, sqlite:///, redis://). The default is
an SQLite file, so a restarted gateway continues every conversation; several gateways (or `--workers N`)
share one SQLite file on a host, or one Redis."""

from __future__ import annotations

import urllib.parse

from ..store import Store, open_store

__all__ = ["DEFAULT_STORE", "RESPONSES_TTL", "open_chain_store", "open_gateway_store"]

DEFAULT_STORE = "sqlite:///lwfsm-sessions.db"  # in the directory `lwfsm serve` runs in


def open_gateway_store(url: str | None, timeout: float = 30.0) -> Store:
    """The store at `url` (default: an SQLite file in the working directory); `timeout` bounds each call."""
    return open_store(url or DEFAULT_STORE, timeout=timeout)


RESPONSES_TTL = 30 * 24 * 3600.0  # as long as OpenAI keeps a stored response, when the store sets no ttl


def open_chain_store(url: str | None, timeout: float = 30.0) -> Store:
    """Where the Responses API's responses live: the same store in a space of their own, each row
    expiring with the store's TTL (`?ttl=`, as conversations do), else after RESPONSES_TTL."""
    url = url or DEFAULT_STORE
    ttl = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("ttl")
    return open_store(url, timeout=timeout, space="responses", ttl=None if ttl else RESPONSES_TTL)
