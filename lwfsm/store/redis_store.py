"""redis:// and rediss://: the shared store for many hosts (redis-py, the `redis` extra).

Each conversation is one hash {v: version, d: data} under `prefix + id`. Compare-and-set is one Lua
script, so it is atomic on the server whatever the number of clients. The password is given to
redis-py only; everything lwfsm shows (repr, errors, logs) uses the redacted URL.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

try:
    import redis
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('redis:// stores need redis-py: pip install "lwfsm[redis]"') from exc

from ..errors import StoreError
from .base import Row, redact

__all__ = ["RedisStore"]

T = TypeVar("T")

# KEYS[1] key; ARGV: expected version, new version, data, ttl in ms (0: none). A missing key is version 0.
_CAS = """
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


class RedisStore:
    def __init__(self, url: str, *, ttl: float | None = None, prefix: str | None = None, timeout: float = 30.0) -> None:
        self.url = redact(url)
        self.ttl = ttl
        self.prefix = prefix if prefix is not None else "lwfsm:session:"
        parts = urllib.parse.urlsplit(url)
        # lwfsm's own query parameters are not redis-py's
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("ttl", "prefix")]
        plain = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        try:
            self._r = redis.Redis.from_url(plain, socket_connect_timeout=min(5.0, timeout), socket_timeout=timeout)
        except ValueError as exc:
            raise StoreError(f"store URL {self.url!r}: {self._scrub(str(exc), url)}", store=self.url) from None
        self._cas = self._r.register_script(_CAS)
        self._run("connect", None, self._r.ping)  # an unreachable server is an error now, not at the first call

    def __repr__(self) -> str:
        return f"<RedisStore {self.url} prefix={self.prefix!r}>"

    def _scrub(self, text: str, url: str | None = None) -> str:
        password = (
            urllib.parse.urlsplit(url).password if url else self._r.connection_pool.connection_kwargs.get("password")
        )
        return text.replace(password, "***") if password else text

    def _run(self, what: str, session: str | None, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except redis.RedisError as exc:
            about = f" session {session!r}:" if session else ""
            message = self._scrub(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc):
                message = f"key {self.prefix}{session} holds something that is not an lwfsm session ({message})"
            # from None: redis-py's exception (and its traceback locals) may carry the connection's password
            raise StoreError(
                f"store {self.url}:{about} {what} failed: {message}", store=self.url, session=session
            ) from None

    def read(self, session: str) -> Row | None:
        def go() -> Row | None:
            version, data = self._r.hmget(self.prefix + session, ["v", "d"])
            if version is None and data is None:
                return None
            if version is None or data is None or not version.isdigit():
                raise StoreError(
                    f"store {self.url}: session {session!r}: the row under {self.prefix}{session} is not an lwfsm "
                    "session (missing or bad version/data fields); delete it or use another prefix",
                    store=self.url,
                    session=session,
                )
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            return Row(text, int(version))

        return self._run("read", session, go)

    def write(self, session: str, expected: int, row: Row) -> bool:
        ttl = str(int(self.ttl * 1000)) if self.ttl else "0"
        args: list[Any] = [str(expected), str(row.version), row.data, ttl]
        return bool(self._run("compare-and-set", session, lambda: self._cas(keys=[self.prefix + session], args=args)))

    def list(self) -> list[str]:
        def go() -> list[str]:
            n = len(self.prefix)
            keys = self._r.scan_iter(match=self.prefix + "*", count=500)
            return sorted((k.decode() if isinstance(k, bytes) else k)[n:] for k in keys)

        return self._run("list", None, go)

    def delete(self, session: str) -> bool:
        return bool(self._run("delete", session, lambda: self._r.delete(self.prefix + session)))

    def close(self) -> None:
        self._r.close()
