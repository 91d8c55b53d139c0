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
