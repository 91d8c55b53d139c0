"""redis://, rediss://, redis+sentinel://, redis+cluster://: the shared store for many hosts (redis-py,
the `redis` extra). The URL forms are in redis_url.py.

Each conversation is one hash {v: version, d: data} under one key: `prefix + id`, or in a cluster
`prefix + "{" + id + "}"`, so that the slot is chosen by the id alone and whatever else a conversation
may one day keep lands in the same slot. Compare-and-set is one Lua script over that one key,
declared in KEYS, so it is atomic on the server and valid in a cluster.

Replication is asynchronous: a write acknowledged by a master that dies before its replicas have it is
lost in the failover. With `?wait=N` each successful write is followed by `WAIT N timeout` on the same
connection, and a write that fewer than N replicas confirmed is a StoreError, not an acknowledgement.

Sentinel and cluster stores retry what a failover causes (refused connections, MOVED, CLUSTERDOWN,
TRYAGAIN, a demoted master) until their timeout, re-reading the topology each time; a compare-and-set
is safe to resend (a resent write that had landed finds its version moved: a conflict, which the
conversation loop reloads and recognises as its own call). The password is given to redis-py only;
everything lwfsm shows (repr, errors, logs) uses the redacted URL.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import ClusterDownError, RedisClusterException, TryAgainError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('redis:// stores need redis-py: pip install "lwfsm[redis]"') from exc

from ..errors import StoreError
from .base import Row, redact
from .redis_url import OURS, RedisTarget, parse

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

# What a failover looks like from a client: retried until the store's timeout. (A demoted master's
# READONLY becomes a ConnectionError in redis-py's Sentinel pool; MovedError is an AskError.)
_FAILOVER = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError, redis.exceptions.AskError)

_REFUSED = (redis.AuthenticationError, redis.exceptions.AuthorizationError)  # ConnectionErrors no failover mends


class _NotAcknowledged(Exception):
    def __init__(self, acked: int) -> None:
        self.acked = acked


class RedisStore:
    def __init__(self, url: str, *, ttl: float | None = None, prefix: str | None = None, timeout: float = 30.0) -> None:
        self.url = redact(url)
        self.ttl = ttl
        self.timeout = timeout
        self.target: RedisTarget = parse(url, self.url)
        self.mode = self.target.mode
        self.prefix = prefix if prefix is not None else "lwfsm:session:"
        if self.mode == "cluster" and ("{" in self.prefix or "}" in self.prefix):
            raise StoreError(
                f"store URL {self.url!r}: prefix {self.prefix!r} has a brace: in a cluster the braces of a key "
                "choose its slot (lwfsm puts the conversation id in them); use a prefix without { and }",
                store=self.url,
            )
        self._password = self.target.password
        self._r: Any = self._client()
        self._cas = self._r.register_script(_CAS)
        try:
            self._run("connect", None, self._r.ping, retry=False)  # an unreachable server: an error now
        except TypeError as exc:  # redis-py hands a query parameter it does not know to its connection
            raise StoreError(
                f"store URL {self.url!r}: a query parameter redis-py does not take ({self._scrub(str(exc))}); "
                f"lwfsm's own are {', '.join(OURS)}",
                store=self.url,
            ) from None
        self.where = f"{self._rows()} {self.prefix}"

    def _rows(self) -> str:
        """Whose rows these are, for `where`: one server's, under any spelling of its URL (localhost,
        127.0.0.1, the port left out, across restarts), by the address and port it took this connection on
        and the database. Sentinel and cluster stores, and a server without CLIENT INFO (before Redis 6.2,
        or an ACL refusing it), are named by their URL."""
        if self.mode != "single":
            return self.url
        try:
            laddr = self._run("connect", None, lambda: self._r.client_info()["laddr"], retry=False)
        except (StoreError, KeyError):
            return self.url
        return f"redis:{laddr}/{self._r.connection_pool.connection_kwargs.get('db', 0)}"

    def _client(self) -> Any:
        t = self.target
        sockets: dict[str, Any] = {"socket_connect_timeout": min(5.0, self.timeout), "socket_timeout": self.timeout}
        if t.mode == "single":
            try:
                return redis.Redis.from_url(t.plain, **sockets)
            except ValueError as exc:
                raise StoreError(f"store URL {self.url!r}: {self._scrub(str(exc))}", store=self.url) from None
        auth: dict[str, Any] = {"username": t.username, "password": t.password}
        once = Retry(NoBackoff(), 0)  # the failover retries are ours (`_run`), bounded by the timeout
        if t.mode == "sentinel":
            from redis.sentinel import Sentinel

            sentinels = Sentinel(  # type: ignore[no-untyped-call]
                list(t.nodes), sentinel_kwargs={**sockets, "retry": once}, **sockets
            )
            return sentinels.master_for(t.service, db=t.db, retry=once, **auth)  # type: ignore[no-untyped-call]
        from redis.cluster import ClusterNode, RedisCluster

        try:
            seeds = [ClusterNode(h, p) for h, p in t.nodes]  # type: ignore[no-untyped-call]
            return RedisCluster(startup_nodes=seeds, retry=once, **auth, **sockets)
        except (redis.RedisError, RedisClusterException) as exc:
            raise StoreError(f"store {self.url}: connect failed: {self._scrub(str(exc))}", store=self.url) from None

    def __repr__(self) -> str:
        return f"<RedisStore {self.url} prefix={self.prefix!r}>"

    def key(self, session: str) -> str:
        """The Redis key of a conversation."""
        return f"{self.prefix}{{{session}}}" if self.mode == "cluster" else self.prefix + session

    def _scrub(self, text: str) -> str:
        if self._password:
            for form in {self._password, urllib.parse.quote(self._password, safe="")}:
                text = text.replace(form, "***")
        return text

    def _run(self, what: str, session: str | None, fn: Callable[[], T], retry: bool = True) -> T:
        deadline = time.monotonic() + self.timeout
        pause = 0.02
        while True:
            try:
                return fn()
            except (redis.RedisError, RedisClusterException) as exc:
                if (
                    retry
                    and self.mode != "single"
                    and isinstance(exc, _FAILOVER)
                    and not isinstance(exc, _REFUSED)
                    and time.monotonic() < deadline
                ):
                    # A failover in progress: the next attempt finds the new master (Sentinel asks the
                    # sentinels on each new connection; a cluster client re-reads its slot map here).
                    self._refresh()
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                    pause = min(pause * 2, 0.5)
                    continue
                raise self._error(what, session, exc) from None
            except _NotAcknowledged as exc:
                t = self.target
                raise StoreError(
                    f"store {self.url}: session {session!r}: the write reached {exc.acked} of the {t.wait} "
                    f"replica(s) wait={t.wait} asks for within {t.wait_timeout_ms} ms (wait_timeout_ms): it is not "
                    "acknowledged and a failover could lose it; retry the request (a retry is not counted twice)",
                    store=self.url,
                    session=session,
                ) from None

    def _refresh(self) -> None:
        if self.mode == "cluster":
            try:
                self._r.nodes_manager.initialize()
            except (redis.RedisError, RedisClusterException):
                pass  # still failing over: the next attempt tries again

    def _error(self, what: str, session: str | None, exc: BaseException) -> StoreError:
        about = f" session {session!r}:" if session else ""
        message = self._scrub(f"{type(exc).__name__}: {exc}")
        if self.mode == "sentinel" and "MasterNotFoundError" in message:  # its text is a repr of redis-py's client
            hosts = ",".join(f"{h}:{p}" for h, p in self.target.nodes)
            message = (
                f"no sentinel ({hosts}) named a master for service {self.target.service!r}: check the service "
                "name after the hosts in the URL, and that the sentinels are up"
            )
        if isinstance(exc, redis.AuthenticationError):  # redis-py's words are about its HELLO command
            need = (
                "refused the user and password in the URL"
                if self._password
                else "needs a password: give it in the URL, redis://:PASSWORD@host:port/db (or USER:PASSWORD)"
            )
            message = f"the server {need}; percent-encode @ : / # ? in it ({message})"
        if isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc):
            message = f"key {self.key(session or '')} holds something that is not an lwfsm session ({message})"
        # from None by the caller: redis-py's exception (and its traceback locals) may carry the password
        return StoreError(f"store {self.url}:{about} {what} failed: {message}", store=self.url, session=session)

    def read(self, session: str) -> Row | None:
        def go() -> Row | None:
            version, data = self._r.hmget(self.key(session), ["v", "d"])
            if version is None and data is None:
                return None
            if version is None or data is None or not version.isdigit():
                raise StoreError(
                    f"store {self.url}: session {session!r}: the row under {self.key(session)} is not an lwfsm "
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
        keys = [self.key(session)]
        if not self.target.wait:
            return bool(self._run("compare-and-set", session, lambda: self._cas(keys=keys, args=args)))
        return self._run("compare-and-set", session, lambda: self._write_and_wait(keys, args))

    def _write_and_wait(self, keys: list[str], args: list[Any]) -> bool:
        # WAIT counts the replicas that have every write of *its connection*: so the script and WAIT go
        # down one connection, as one pipeline (one round trip), to the master of the key's slot.
        node = self._r
        if self.mode == "cluster":
            node = self._r.get_redis_connection(self._r.get_node_from_key(keys[0]))
        try:
            done, acked = self._pipeline(node, keys, args)
        except redis.exceptions.NoScriptError:  # a new master (scripts are not replicated): load it, again
            node.script_load(_CAS)
            done, acked = self._pipeline(node, keys, args)
        if done and int(acked) < self.target.wait:
            raise _NotAcknowledged(int(acked))
        return bool(done)

    def _pipeline(self, node: Any, keys: list[str], args: list[Any]) -> list[Any]:
        pipe = node.pipeline(transaction=False)
        pipe.evalsha(self._cas.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", self.target.wait, self.target.wait_timeout_ms)
        out: list[Any] = pipe.execute()
        return out

    def list(self) -> list[str]:
        def go() -> list[str]:
            # A cluster client's scan_iter walks every master in turn.
            n, cut = len(self.prefix), (1 if self.mode == "cluster" else 0)
            keys = self._r.scan_iter(match=self.prefix + "*", count=500)
            names = ((k.decode() if isinstance(k, bytes) else k)[n:] for k in keys)
            return sorted(k[cut : len(k) - cut] for k in names)

        return self._run("list", None, go)

    def delete(self, session: str) -> bool:
        return bool(self._run("delete", session, lambda: self._r.delete(self.key(session))))

    def close(self) -> None:
        self._r.close()
