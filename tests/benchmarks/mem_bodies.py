"""On demand: the gateway's peak memory under many large request bodies at once, with and without a
bound on the bytes of bodies it holds (`--body-budget`).

`lwfsm serve` runs as a process on 127.0.0.1 in front of an upstream that reads each body, waits a
second (so the calls overlap), and answers a short reply. N clients send a B-MB Chat Completions body
each, all at once; the gateway's peak resident memory (VmHWM) is read from /proc, with --body-budget
larger than all the bodies together (no bound: the gateway before the budget) and at its default.
Run: `PYTHONPATH=. python tests/benchmarks/mem_bodies.py [--clients 24] [--mb 30]`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


class Upstream(BaseHTTPRequestHandler):
    """Reads the body without keeping it (the gateway's memory is measured, not this one's)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, MIB)))
        time.sleep(1)  # every call in flight at once
        reply = {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def run(upstream: str, clients: int, size: int, budget: int | None) -> tuple[float, dict[int, int]]:
    port = _port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LWFSM_LEAD_MODEL": "openai/lead",
        "LWFSM_WORKER_MODEL": "openai/worker",
        "LWFSM_LEAD_API_BASE": upstream,
        "LWFSM_WORKER_API_BASE": upstream,
    }
    args = ["--store", "memory://", "--port", str(port), "--max-body", str(size + MIB)]
    if budget is not None:
        args += ["--body-budget", str(budget)]
    proc = subprocess.Popen([sys.executable, "-m", "lwfsm", "serve", *args], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                httpx.get(base + "/v1/models", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)  # polling for readiness
        idle = _peak_mib(proc.pid)
        text = "x" * (size - 200)

        def call(n: int) -> int:
            body = {"model": "m", "messages": [{"role": "user", "content": text}]}
            headers = {"x-lwfsm-session": f"big-{n}", "content-type": "application/json"}
            payload = json.dumps(body).encode()
            return httpx.post(base + "/v1/chat/completions", content=payload, headers=headers, timeout=300).status_code

        with ThreadPoolExecutor(clients) as pool:
            statuses = list(pool.map(call, range(clients)))
        peak = _peak_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"  idle {idle:7.0f} MiB, peak {peak:7.0f} MiB, answers {counts}")
    return peak, counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--mb", type=int, default=30)
    args = parser.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    size = args.mb * 1000 * 1000
    print(f"{args.clients} clients, {args.mb} MB bodies each, at once")
    print("no bound (--body-budget over all the bodies together):")
    before, _ = run(upstream, args.clients, size, budget=(args.clients + 1) * (size + MIB))
    print("--body-budget at its default (128 MiB):")
    after, _ = run(upstream, args.clients, size, budget=None)
    print(f"peak memory with the default budget: {after / before:.2f} of the unbounded gateway's")
    httpd.shutdown()


if __name__ == "__main__":
    main()
