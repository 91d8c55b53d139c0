"""What a redis URL asks for: one server, a Sentinel-watched master, or a Redis Cluster (no redis-py here).

    redis://[user:password@]host:port/db          one server (rediss:// for TLS); other query
                                                  parameters go to redis-py as before
    redis+sentinel://[user:password@]host:port[,host:port...]/service[?db=N]
                                                  the master Sentinel names `service`, found by
                                                  asking the listed sentinels (port 26379 if none)
    redis+cluster://[user:password@]host:port[,host:port...]
                                                  a Redis Cluster, found from any of the listed
                                                  nodes (port 6379 if none); database 0 only

Every form also takes lwfsm's own `?ttl=`, `?prefix=`, `?wait=N` (after each write, wait until N
replicas have it, else the write is an error) and `?wait_timeout_ms=` (how long to wait; default 1000).
The user name and password are the data nodes'; sentinels are asked without them.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ..errors import StoreError
from .base import userinfo_end

__all__ = ["RedisTarget", "parse"]

OURS = ("ttl", "prefix", "wait", "wait_timeout_ms")  # read by lwfsm, never handed to redis-py
WAIT_TIMEOUT_MS = 1000


@dataclass(frozen=True)
class RedisTarget:
    mode: str  # "single", "sentinel" or "cluster"
    shown: str  # the URL with its password redacted
    plain: str  # single: the URL for redis-py, lwfsm's parameters removed; else ""
    nodes: tuple[tuple[str, int], ...] = ()  # the sentinels, or the cluster's seed nodes
    service: str = ""  # sentinel: the master's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    wait: int = 0  # replicas that must have a write before it is acknowledged; 0: none
    wait_timeout_ms: int = WAIT_TIMEOUT_MS


def _fail(shown: str, what: str) -> StoreError:
    return StoreError(f"store URL {shown!r}: {what}", store=shown)


def _int(shown: str, query: dict[str, list[str]], name: str, low: int, default: int) -> int:
    if name not in query:
        return default
    text = query[name][-1]
    if not text.isdigit() or int(text) < low:
        raise _fail(shown, f"{name} must be a whole number >= {low}, got {text!r}")
    return int(text)


def _nodes(shown: str, hosts: str, default_port: int, example: str) -> tuple[tuple[str, int], ...]:
    out = []
    for entry in hosts.split(","):
        host, port = entry, str(default_port)
        if entry.startswith("["):  # [::1]:7000
            host, _, rest = entry[1:].partition("]")
            if rest:
                port = rest.removeprefix(":")
        elif ":" in entry:
            host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _fail(shown, f"{entry!r} is not host:port; list the nodes as {example}")
        out.append((host, int(port)))
    return tuple(out)


def parse(url: str, shown: str) -> RedisTarget:
    """The target of a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL; StoreError naming
    what to change when it is malformed."""
    scheme = url.partition("://")[0]
    parts = urllib.parse.urlsplit(url)
    if userinfo_end(url.partition("://")[2]) != parts.netloc.rfind("@"):
        # the host ended at a "/", "?", "#" or "@" of the password: redis-py's error would quote a piece of it
        raise _fail(
            shown,
            "an '@' after the host: a user name or password holding '/', '?', '#' or '@' must percent-encode "
            "them (%2F, %3F, %23, %40)",
        )
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    wait = _int(shown, query, "wait", 0, 0)
    wait_timeout = _int(shown, query, "wait_timeout_ms", 1, WAIT_TIMEOUT_MS)
    if "wait_timeout_ms" in query and not wait:
        raise _fail(shown, "wait_timeout_ms without wait=N: say how many replicas a write must reach (wait=1)")
    if scheme in ("redis", "rediss"):
        number = parts.path.strip("/")  # (redis-py reads /0/ as 0 too)
        if number and not (number.isdigit() and number.isascii()):
            # redis-py reads a database it cannot parse as database 0, silently
            raise _fail(
                shown, f"the database is a number after the host: {parts.path!r} is not one ({scheme}://host:6379/0)"
            )
        rest = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in OURS]
        plain = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest)))
        password = urllib.parse.unquote(parts.password) if parts.password else None  # only to keep it out of errors
        return RedisTarget("single", shown, plain, password=password, wait=wait, wait_timeout_ms=wait_timeout)
    mode = scheme.removeprefix("redis+")
    unknown = sorted(set(query) - {*OURS, *(("db",) if mode == "sentinel" else ())})
    if unknown:
        known = ", ".join([*OURS, *(["db"] if mode == "sentinel" else [])])
        raise _fail(shown, f"unknown parameter {unknown[0]!r} for {scheme}:// (known: {known})")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(pw) if colon else None
    if mode == "sentinel":
        example = "redis+sentinel://host:26379,host2:26379/mymaster"
        if not hosts:
            raise _fail(shown, f"name at least one sentinel: {example}")
        nodes = _nodes(shown, hosts, 26379, example)
        service = parts.path.strip("/")
        if not service or "/" in service:
            raise _fail(shown, f"name the master's service after the sentinels, and nothing else: {example}")
        db = _int(shown, query, "db", 0, 0)
        return RedisTarget(
            "sentinel", shown, "", nodes, urllib.parse.unquote(service), db, username, password, wait, wait_timeout
        )
    example = "redis+cluster://host:7000,host2:7001"
    if not hosts:
        raise _fail(shown, f"name at least one node of the cluster: {example}")
    nodes = _nodes(shown, hosts, 6379, example)
    if parts.path.strip("/") not in ("", "0"):
        raise _fail(shown, f"a Redis Cluster has database 0 only: remove {parts.path!r} from the URL ({example})")
    return RedisTarget("cluster", shown, "", nodes, "", 0, username, password, wait, wait_timeout)
