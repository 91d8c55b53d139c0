"""A small Anthropic-Messages server on 127.0.0.1, scripted per model, for tests.

`script(model, *steps)`: a step is {"status": 429, "headers": {...}, "body": {...}, "content": "...",
"tool_use": [{"name": ..., "input": {...}}], "delay": 0.02, "cut": True (a stream that stops half-way,
without its message_stop), "garbled": True (a stream whose second event is not JSON)}. Unscripted
requests get a text reply naming the model. "stream": true requests get the reply as Anthropic SSE
events. Request headers are kept in `headers`, paths in `paths`. `/v1/messages/count_tokens` answers
the number of whitespace-separated words in the JSON of [system, messages, tools] (scripted steps apply).
"""

import json
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    # http.server listens with a backlog of 5: two hundred clients connecting at once saw their SYNs
    # dropped and retried a second later, so a concurrency test measured the kernel's retry timer.
    request_queue_size = 512
    daemon_threads = True


class Server:
    def __init__(self) -> None:
        self.scripts: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []
        self.raw: list[bytes] = []  # each request's body as it came, byte for byte
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.ids = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                with server.lock:
                    server.requests.append(body)
                    server.raw.append(raw)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.paths.append(self.path)
                    steps = server.scripts[body["model"]]
                    step = steps.popleft() if steps else {}
                    server.ids += 1
                    n = server.ids
                time.sleep(step.get("delay", 0))
                status = step.get("status", 200)
                if status != 200:
                    payload = step.get("body") or {
                        "type": "error",
                        "error": {
                            "type": "rate_limit_error" if status == 429 else "api_error",
                            "message": f"scripted {status}",
                        },
                    }
                    return self.send(status, payload, step.get("headers", {}))
                if self.path.endswith("/count_tokens"):  # a count the test can predict: words of what is sent
                    said = json.dumps([body.get("system"), body.get("messages"), body.get("tools")])
                    return self.send(200, {"input_tokens": len(said.split())}, step.get("headers", {}))
                message = server.reply(body, step, n)
                if body.get("stream"):
                    return self.stream(message, step)
                self.send(200, message, step.get("headers", {}))

            def send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def stream(self, message: dict[str, Any], step: dict[str, Any]) -> None:
                head = {**message, "content": [], "stop_reason": None}
                events: list[dict[str, Any]] = [{"type": "message_start", "message": head}]
                for i, block in enumerate(message["content"]):
                    if block["type"] == "text":
                        events.append(
                            {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}
                        )
                        text = block["text"]
                        events += [
                            {
                                "type": "content_block_delta",
                                "index": i,
                                "delta": {"type": "text_delta", "text": text[j : j + 5]},
                            }
                            for j in range(0, len(text), 5)
                        ]
                    else:
                        start = {**block, "input": {}}
                        events.append({"type": "content_block_start", "index": i, "content_block": start})
                        args = json.dumps(block["input"])
                        events += [
                            {
                                "type": "content_block_delta",
                                "index": i,
                                "delta": {"type": "input_json_delta", "partial_json": args[j : j + 4]},
                            }
                            for j in range(0, len(args), 4)
                        ]
                    events.append({"type": "content_block_stop", "index": i})
                events.append(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                        "usage": {"output_tokens": message["usage"]["output_tokens"]},
                    }
                )
                events.append({"type": "message_stop"})
                if step.get("cut"):
                    events = events[: len(events) // 2]
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for n, e in enumerate(events):
                        data = "{not json" if step.get("garbled") and n == 1 else json.dumps(e)
                        self.wfile.write(f"event: {e['type']}\ndata: {data}\n\n".encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reply(self, request: dict[str, Any], step: dict[str, Any], n: int) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if step.get("content", "") is not None:
            content.append({"type": "text", "text": step.get("content") or f"{request['model']} reply {n}"})
        for i, use in enumerate(step.get("tool_use", ())):
            content.append(
                {"type": "tool_use", "id": f"toolu_{n}_{i}", "name": use["name"], "input": use.get("input", {})}
            )
        return {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": content,
            "stop_reason": "tool_use" if step.get("tool_use") else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 7},
        }

    def script(self, model: str, *steps: dict[str, Any]) -> None:
        with self.lock:
            self.scripts[model].extend(steps)

    def models(self) -> list[str]:
        with self.lock:
            return [r["model"] for r in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
