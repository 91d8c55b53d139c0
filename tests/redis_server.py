"""A real redis-server for tests: started on a free port on 127.0.0.1, with a password, no persistence.

Missing server: the tests skip with how to install it, unless LWFSM_REQUIRE_REDIS=1 (CI), where that
is a failure. fakeredis is no substitute: compare-and-set runs as a Lua script on the real server.
"""

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "s3cret-Pa55word"  # asserted never to appear in reprs, errors or logs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server() -> Iterator[str]:
    """Yield the URL (with password) of a fresh redis-server; stop it afterwards."""
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if exe is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("LWFSM_REQUIRE_REDIS") == "1":
            pytest.fail(message + "; LWFSM_REQUIRE_REDIS=1 requires it")
        pytest.skip(message)
    pytest.importorskip("redis", reason='needs redis-py: pip install "lwfsm[redis]"')
    import redis

    port = free_port()
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--requirepass", PASSWORD], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:  # wait for readiness, not for a fixed time
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"redis-server did not start on port {port}: {err}")
                time.sleep(0.01)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def _exe(name: str) -> str:
    exe = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if exe is None:
        message = f"{name} is not installed (apt-get install redis-server redis-tools)"
        if os.environ.get("LWFSM_REQUIRE_REDIS") == "1":
            pytest.fail(message + "; LWFSM_REQUIRE_REDIS=1 requires it")
        pytest.skip(message)
    return exe


def _until(done: Any, what: str, seconds: float = 20) -> None:
    """Poll `done()` (a state of the servers) until it holds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling for a state, not for a timing


class Servers:
    """redis-server processes (data nodes and sentinels) in one temporary directory, stopped together."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.args: dict[int, tuple[str, ...]] = {}
        self.exe = _exe("redis-server")
        pytest.importorskip("redis", reason='needs redis-py: pip install "lwfsm[redis]"')

    def start(self, port: int, *args: str) -> None:
        self.args[port] = args
        log = self.tmp / f"{port}.log"
        cmd = [self.exe, *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.tmp)]
        self.procs[port] = subprocess.Popen([*cmd, "--logfile", str(log)], stdout=subprocess.DEVNULL)

    def client(self, port: int, password: str | None = PASSWORD) -> Any:
        import redis

        return redis.Redis("127.0.0.1", port, password=password, socket_timeout=5, socket_connect_timeout=1)

    def answers(self, port: int, password: str | None = PASSWORD) -> bool:
        import redis

        proc = self.procs[port]
        if proc.poll() is not None:
            log = (self.tmp / f"{port}.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"redis-server on port {port} exited: {log}")
        try:
            with self.client(port, password) as c:
                return bool(c.ping())
        except redis.ConnectionError:
            return False

    def info(self, port: int, section: str) -> dict[str, Any]:
        with self.client(port) as c:
            out: dict[str, Any] = c.info(section)
            return out

    def kill(self, port: int) -> None:
        """SIGKILL: the process dies with whatever it has not yet sent to its replicas."""
        self.procs[port].kill()
        self.procs[port].wait(10)

    def restart(self, port: int) -> None:
        """Start a killed node again with its arguments (a cluster node re-reads its nodes-<port>.conf)."""
        self.start(port, *self.args[port])
        _until(lambda: self.answers(port), f"redis-server on port {port} again")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# No persistence; a replica's first sync starts at once (by default a master waits 5 s for more replicas).
DATA = ("--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")
DATA += ("--requirepass", PASSWORD, "--masterauth", PASSWORD)


class Cluster(Servers):
    """Six redis-server processes in cluster mode, three masters and three replicas, made a cluster by
    `redis-cli --cluster create`. A node that misses `node_timeout_ms` is failed over: kept small, so a
    test's failover takes a second or two."""

    def boot(self, node_timeout_ms: int) -> None:
        self.ports = [free_port() for _ in range(6)]
        cli = _exe("redis-cli")
        for port in self.ports:
            self.start(
                port,
                *DATA,
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-port", str(free_port()),  # not port + 10000, which may be taken or over 65535
                "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-replica-validity-factor", "0",  # a replica may always take over: the test kills its master
            )  # fmt: skip
        for port in self.ports:
            _until(lambda port=port: self.answers(port), f"redis-server on port {port}")
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        made = subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": PASSWORD},  # not -a: that prints a warning, and shows in ps
            capture_output=True,
            text=True,
            timeout=60,
        )
        if made.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {made.stdout}{made.stderr}")
        self.wait_ok()
        self.url = f"redis+cluster://:{PASSWORD}@" + ",".join(nodes[:2])

    def state(self, port: int) -> str:
        with self.client(port) as c:
            text = c.execute_command("CLUSTER", "INFO")
        text = text.decode() if isinstance(text, bytes) else str(text)
        return dict(line.split(":", 1) for line in text.split() if ":" in line).get("cluster_state", "")

    def masters(self) -> list[int]:
        return [p for p in self.live() if self.info(p, "replication")["role"] == "master"]

    def live(self) -> list[int]:
        return [p for p in self.ports if self.procs[p].poll() is None]

    def wait_ok(self) -> None:
        """Every live node says cluster_state:ok and every live master has a replica in sync (a WAIT
        test needs one)."""

        def ok() -> bool:
            if any(self.state(p) != "ok" for p in self.live()):
                return False
            masters = self.masters()
            return len(masters) == 3 and all(
                any(str(v.get("state")) == "online" for k, v in self.info(p, "replication").items() if k[:5] == "slave")
                for p in masters
            )

        _until(ok, "the cluster to be ok with a replica in sync per master")

    def replica_of(self, master: int) -> int:
        """The port of `master`'s replica."""
        return int(self.info(master, "replication")["slave0"]["port"])

    def master_of(self, key: str) -> int:
        """The port of the master that holds `key`'s slot."""
        port = self.holder(key)
        assert port is not None, f"no master holds the slot of {key!r}"
        return port

    def holder(self, key: str) -> int | None:
        """The port of the master a node says holds `key`'s slot, or None: while a failover changes
        hands, a node's map can list the slot under nobody for a moment."""
        with self.client(self.live()[0]) as c:
            slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        return None


class SentinelSet(Servers):
    """One master, one replica and one sentinel watching them (quorum 1, down after `down_ms`)."""

    SERVICE = "lwfsm-master"

    def boot(self, down_ms: int) -> None:
        self.master, self.replica, self.sentinel = (free_port() for _ in range(3))
        self.start(self.master, *DATA)
        _until(lambda: self.answers(self.master), "the master")
        self.start(self.replica, *DATA, "--replicaof", "127.0.0.1", str(self.master))
        # In sync before the sentinel starts: it finds replicas in the master's INFO, asked at once, then every 10 s.
        _until(lambda: self.info(self.master, "replication").get("slave0", {}).get("state") == "online", "the replica")
        conf = self.tmp / "sentinel.conf"  # a sentinel rewrites its config file: one of its own
        conf.write_text(
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master} 1\n"
            f"sentinel auth-pass {self.SERVICE} {PASSWORD}\n"
            f"sentinel down-after-milliseconds {self.SERVICE} {down_ms}\n"
            f"sentinel failover-timeout {self.SERVICE} 10000\n"
        )
        self.start(self.sentinel, str(conf), "--sentinel")
        _until(lambda: self.answers(self.sentinel, None), "the sentinel")
        _until(self._watched, "the sentinel to see the replica in sync")
        self.url = f"redis+sentinel://:{PASSWORD}@127.0.0.1:{self.sentinel}/{self.SERVICE}"

    def _watched(self) -> bool:
        with self.client(self.sentinel, None) as c:
            replicas = c.execute_command("SENTINEL", "REPLICAS", self.SERVICE)
        return any(
            "s_down" not in str(r.get("flags", "")) and str(r.get("master-link-status")) == "ok"
            for r in (_pairs(x) for x in replicas)
        )

    def current_master(self) -> int:
        """The master's port, once the sentinel names it as a client takes it (a master, not down): right
        after a failover the address moves first, and a client asking then is told there is no master."""

        def up() -> bool:
            with self.client(self.sentinel, None) as c:
                flags = _pairs(c.execute_command("SENTINEL", "MASTER", self.SERVICE)).get("flags", "").split(",")
            return "master" in flags and "s_down" not in flags and "o_down" not in flags

        _until(up, "the sentinel to name a master that is up")
        with self.client(self.sentinel, None) as c:
            _host, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
        return int(port)


def _pairs(flat: Any) -> dict[str, str]:
    """SENTINEL REPLICAS answers each replica as a flat list (RESP2) or a dict: a dict of str either way."""
    if isinstance(flat, dict):
        items = list(flat.items())
    else:
        items = list(zip(flat[::2], flat[1::2], strict=True))
    dec = [
        (k.decode() if isinstance(k, bytes) else str(k), v.decode() if isinstance(v, bytes) else str(v))
        for k, v in items
    ]
    return dict(dec)


def redis_cluster(tmp: Path, node_timeout_ms: int = 1000) -> Iterator[Cluster]:
    """Yield a booted six-node cluster; stop every process afterwards (also when booting failed)."""
    cluster = Cluster(tmp)
    try:
        cluster.boot(node_timeout_ms)
        yield cluster
    finally:
        cluster.stop()


def redis_sentinel(tmp: Path, down_ms: int = 1000) -> Iterator[SentinelSet]:
    """Yield a master, its replica and a sentinel; stop them afterwards."""
    sentinels = SentinelSet(tmp)
    try:
        sentinels.boot(down_ms)
        yield sentinels
    finally:
        sentinels.stop()
