"""The store protocol and `open_store(url)`: one small contract, backends chosen by URL."""

from __future__ import annotations

import re
import urllib.parse
from typing import Protocol, runtime_checkable

from ..errors import StoreError, did_you_mean
from ..turn.rows import Busy, Row

__all__ = ["SCHEMES", "Busy", "Row", "Store", "open_store", "redact"]

SCHEMES = ("memory", "sqlite", "redis", "rediss", "redis+sentinel", "redis+cluster")


@runtime_checkable
class Store(Protocol):
    """Compare-and-set storage of one JSON value per conversation id.

    Versions start at 1; `write(id, expected=0, ...)` creates the row only if there is none. A row
    whose TTL has run out reads as absent. Every method raises `StoreError` when the store fails.

    A store whose `read` and `write` can be made without waiting on anything but local memory or disk
    says so with `nowait = True` and takes `wait=False` on both: then a call that would wait for a lock,
    or do work that grows with the store, raises `Busy` having done nothing (the conversation loop makes
    such calls on its event loop, and the others in a thread).

    A store may name the rows it holds with `where` (a string; two stores with the same `where` hold the
    same rows): the conversation loop orders a conversation's commits by it, else by `url`.
    """

    url: str  # the URL it was opened with, password redacted: safe for logs and errors

    def read(self, session: str) -> Row | None:
        """The row of `session`, or None."""
        ...

    def write(self, session: str, expected: int, row: Row) -> bool:
        """Store `row` only if the stored version is still `expected` (0: absent); False if it moved."""
        ...

    def list(self) -> list[str]:
        """The ids of every live row, sorted."""
        ...

    def delete(self, session: str) -> bool:
        """Remove `session`'s row; False if there was none."""
        ...

    def close(self) -> None: ...


def redact(url: str) -> str:
    """`url` with its password replaced by ***, so it can appear in logs, errors and reprs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest = _PASSWORD_PARAM.sub(r"\1***", rest)  # redis-py takes ?password= too
    # By hand, not urlsplit: a Sentinel or Cluster URL lists several host:port, which urlsplit cannot read.
    at = userinfo_end(rest)
    if at >= 0 and ":" in rest[:at]:
        return f"{scheme}://{rest[:at].split(':', 1)[0]}:***{rest[at:]}"
    return f"{scheme}://{rest}"


def userinfo_end(rest: str) -> int:
    """Where the user name and password of a URL's text after `://` end (their `@`), -1 without them.

    A password a person did not percent-encode may hold "/", "?", "#" or "@", so the last "@" ends them,
    wherever it is, but for one in a query's `key=value` (`?client_name=svc@box`): hiding more than the
    password is better than showing a piece of it. A path of its own (sqlite:///path) has no host."""
    if rest.startswith("/"):
        return -1
    query = rest.find("?")
    at = len(rest)
    while (at := rest.rfind("@", 0, at)) >= 0:
        if query < 0 or at < query:
            return at
        segment = rest[rest.rfind("&", query, at) + 1 if "&" in rest[query:at] else query + 1 : at]
        if "=" not in segment:  # no key=value: the password went on past its "?"
            return at
    return -1


_PASSWORD_PARAM = re.compile(r"([?&](?:[a-z_]*_)?password=)[^&#]*", re.I)  # (sentinel_password=, ssl_password=)


def open_store(
    url: str, *, ttl: float | None = None, prefix: str | None = None, timeout: float = 30.0, space: str = "sessions"
) -> Store:
    """A store from its URL: memory://, sqlite:///path.db, redis://[user:password@]host:port/db, rediss://,
    redis+sentinel://host:port,.../service, redis+cluster://host:port,... (lwfsm/store/redis_url.py).

    `ttl` (seconds; also `?ttl=` in the URL) makes rows that are not written for that long expire.
    `prefix` (Redis only; also `?prefix=`) namespaces the keys, default "lwfsm:session:".
    `timeout` (seconds) bounds one call: SQLite's wait for another process's write lock, Redis's socket reads.
    `space` keeps other kinds of rows (the gateway's "responses") apart from conversations: their own
    SQLite table (lwfsm_<space>), Redis keys ("<prefix>-<space>:", default "lwfsm-<space>:"), memory dict.
    """
    shown = redact(url)
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise StoreError(
            f"store URL {shown!r}: unknown scheme {scheme!r}; use memory://, sqlite:///path/to/file.db, "
            "redis://[user:password@]host:port/db, rediss://..., redis+sentinel://host:26379,.../service "
            "or redis+cluster://host:port,...",
            store=shown,
        )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)
    if scheme in ("memory", "sqlite") and (unknown := sorted(set(query) - {"ttl"})):
        # a misspelt option would otherwise be ignored: `?tll=60` keeping rows for ever
        raise StoreError(
            f"store URL {shown!r}: unknown parameter {unknown[0]!r} for {scheme}:// (known: ttl)"
            + did_you_mean(unknown[0], ["ttl"]),
            store=shown,
        )
    if ttl is None and "ttl" in query:
        try:
            ttl = float(query["ttl"][-1])
        except ValueError:
            raise StoreError(f"store URL {shown!r}: ttl must be a number of seconds", store=shown) from None
    if ttl is not None and ttl <= 0:
        raise StoreError(f"store URL {shown!r}: ttl must be > 0 seconds, got {ttl}", store=shown)
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(shown, ttl=ttl)
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(url, ttl=ttl, timeout=timeout, table=space)
    try:
        from .redis_store import RedisStore
    except ImportError as exc:  # the extra is not installed: its install hint, said as the store's error
        raise StoreError(f"store URL {shown!r}: {exc}", store=shown) from None

    prefix = prefix if prefix is not None else query.get("prefix", [None])[-1]
    if space != "sessions":  # beside the sessions' keys, never under them (a scan of "pre:*" would list them)
        prefix = (prefix if prefix is not None else "lwfsm").rstrip(":") + f"-{space}:"
    return RedisStore(url, ttl=ttl, prefix=prefix, timeout=timeout)
