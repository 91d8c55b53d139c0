"""A small OpenAI-compatible chat-completions server on 127.0.0.1, scripted per model, for tests.

Unscripted requests get a 200 reply whose text names the model and echoes the last user message,
so tests can tell sessions apart. A request with "stream": true gets the reply as SSE chunks (with a
usage chunk when stream_options.include_usage is set). Request headers are kept in `headers`, paths
in `paths`.
`script(model, *steps)` queues steps for that model: a dict
{"status": 500, "headers": {...}, "body": {...}, "delay": 0.5, "tool_calls": [...], "content": "...",
"cut": True (a stream that stops half-way, without its finish chunk and [DONE] or its
response.completed), "broken": True (a chunked stream whose connection drops in its second event,
mid-transfer; N: in its Nth), "no_status": True (Responses without a status), "garbled": True (a stream whose
second event is not JSON; a text: that text), "no_finish": True (no finish chunk, then [DONE]),
"multiline": True (each event's JSON over several data lines), "page": "<html>..." (that text as
text/html), "whole": True (one JSON body even when the request asks for a stream, as some servers do),
"hold": threading.Event() (a stream that sends its text and tool calls, then waits for the event, up
to 10 s, before its finish chunk, or before its usage chunk with "hold_at": "usage", or any reply before
its first byte with "hold_at": "start"; the step's "released" says whether the event came)}.

`Server(quirks=...)` behaves as a real llama.cpp server (llama-cpp-python) does where fakes usually do not:
- "repeated_tool_names": every streamed tool-call chunk repeats the call's whole name;
- "no_stream_usage": streams carry no usage, whatever stream_options asks (a step's "no_usage": False
  sends it all the same);
- "refuse_null_content": a 500 for an assistant message whose content is null or missing;
- "refuse_system_parts": a 500 for a system message whose content is a list of parts;
- "no_responses_endpoint": a 404 for any path but .../chat/completions (no /v1/responses);
- "keyless": it needs no key and must never be sent a real one: a 401 for a bearer token other than
  lwfsm's placeholder "no-key" (so a key an SDK found in the environment would show).

Like llama.cpp and most OpenAI-compatible servers, it has no Responses API: `/v1/responses` is a 404.
`Server(responses=True)` is the other kind, an upstream that speaks only the Responses API (as OpenAI's
newest models do): `/v1/responses` answers the same scripted steps (text, or `tool_calls` as
`function_call` items), whole or as Responses SSE events, and `/v1/chat/completions` is a 404.
"""

import json
import socket
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


def _last_user_text(items: Any) -> str:
    """The text of the last user message of a Responses `input` (a string or items)."""
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


QUIRKS = frozenset(
    {
        "repeated_tool_names",
        "no_stream_usage",
        "refuse_null_content",
        "refuse_system_parts",
        "no_responses_endpoint",
        "keyless",
    }
)


def _refusal(quirks: frozenset[str], path: str, headers: Any, body: dict[str, Any]) -> tuple[int, str] | None:
    """(status, message) of a request this server's quirks refuse, as llama.cpp would."""
    if "no_responses_endpoint" in quirks and not path.rstrip("/").endswith("/chat/completions"):
        return 404, f"File Not Found: {path}"
    auth = headers.get("Authorization")
    if "keyless" in quirks and auth is not None and auth != "Bearer no-key":
        return 401, "this server takes no key, and was sent one"
    for i, m in enumerate(body.get("messages") or ()):
        if "refuse_null_content" in quirks and m.get("role") == "assistant" and m.get("content") is None:
            return 500, f'messages[{i}]: can only concatenate str (not "NoneType") to str'
        if "refuse_system_parts" in quirks and m.get("role") == "system" and isinstance(m.get("content"), list):
            return 500, f'messages[{i}]: can only concatenate str (not "list") to str'
    return None


class Server:
    def __init__(self, quirks: tuple[str, ...] = (), responses: bool = False) -> None:
        self.responses = responses
        unknown = set(quirks) - QUIRKS
        assert not unknown, f"unknown quirks {unknown}; known: {sorted(QUIRKS)}"
        self.quirks = frozenset(quirks)
        self.scripts: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []
        self.raw: list[bytes] = []  # each request's body as it came, byte for byte
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                with server.lock:
                    server.requests.append(body)
                    n = len(server.requests)  # this answer's number: its ids are unique, as OpenAI's are
                    server.raw.append(raw)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.paths.append(self.path)
                    if self.path.endswith("/responses") != server.responses:
                        # what a server without that API answers: a 404, before any scripted step is used
                        return self.send_json(404, {"error": {"message": f"no route {self.path}", "code": 404}})
                    refused = _refusal(server.quirks, self.path, self.headers, body)
                    steps = server.scripts[body["model"]]
                    step = steps.popleft() if steps and refused is None else {}
                if refused is not None:
                    step = {"status": refused[0], "body": {"error": {"message": refused[1], "type": "server_error"}}}
                time.sleep(step.get("delay", 0))
                if step.get("hold_at") == "start":
                    step["released"] = step.pop("hold").wait(10)
                status = step.get("status", 200)
                if server.responses and status == 200:
                    return self.respond(body, step, n)
                payload = step.get("body") or (
                    server.reply(body, step)
                    if status == 200
                    else {"error": {"message": f"scripted {status}", "type": "server_error"}}
                )
                if "page" in step:  # a web page, not JSON: a proxy's error page, or an api_base that is a site
                    return self.send_json(
                        status, step["page"].encode(), {"Content-Type": "text/html", **step.get("headers", {})}
                    )
                if status == 200 and body.get("stream") and not step.get("whole"):
                    self.stream(body, payload, step)
                    return
                self.send_json(status, payload, step.get("headers", {}))

            def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()  # bytes: as they are
                try:
                    self.send_response(status)
                    if "Content-Type" not in (headers or {}):
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def respond(self, request: dict[str, Any], step: dict[str, Any], n: int) -> None:
                """A Responses API answer, the `n`th request's: the step's text and tool calls as output items
                (ids unique per answer, as OpenAI's: LangChain keys messages by them)."""
                said = _last_user_text(request.get("input"))
                text = step.get("content", f"{request['model']} says: {said}")
                output: list[dict[str, Any]] = []
                if text is not None and "tool_calls" not in step or step.get("content"):
                    part = {"type": "output_text", "text": text, "annotations": []}
                    output.append(
                        {
                            "type": "message",
                            "id": f"msg_{n}",
                            "role": "assistant",
                            "status": "completed",
                            "content": [part],
                        }
                    )
                for i, call in enumerate(step.get("tool_calls") or ()):
                    fn = call["function"]
                    output.append(
                        {
                            "type": "function_call",
                            "id": f"fc_{n}_{i}",
                            "call_id": call["id"],
                            "name": fn["name"],
                            "arguments": fn["arguments"],
                            "status": "completed",
                        }
                    )
                usage = {
                    "input_tokens": 11,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 7,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 18,
                }
                done = {
                    "id": f"resp_{n}",
                    "object": "response",
                    "created_at": 0,
                    "status": "completed",
                    "model": request["model"],
                    "output": output,
                    "parallel_tool_calls": True,
                    "tool_choice": "auto",
                    "tools": [],
                    "usage": usage,
                    # what OpenAI sends in every response, null or not (LiteLLM 1.74 requires them)
                    "error": None,
                    "incomplete_details": None,
                    "instructions": None,
                    "metadata": {},
                    "temperature": 1.0,
                    "top_p": 1.0,
                    "max_output_tokens": None,
                    "previous_response_id": None,
                    "reasoning": {"effort": None, "summary": None},
                    "text": {"format": {"type": "text"}},
                    "truncation": "disabled",
                    "user": None,
                }
                if step.get("no_status"):  # a server whose responses carry no status (the SDK allows it)
                    del done["status"]
                if not request.get("stream"):
                    return self.send_json(200, done)
                events: list[dict[str, Any]] = [
                    {
                        "type": "response.created",
                        "response": {
                            **done,
                            "output": [],
                            **({} if step.get("no_status") else {"status": "in_progress"}),
                        },
                    }
                ]
                for i, item in enumerate(output):
                    if item["type"] == "message":
                        events.append(
                            {"type": "response.output_item.added", "output_index": i, "item": {**item, "content": []}}
                        )
                        events.append(
                            {
                                "type": "response.content_part.added",
                                "output_index": i,
                                "item_id": item["id"],
                                "content_index": 0,
                                "part": {"type": "output_text", "text": "", "annotations": []},
                            }
                        )
                        events += [
                            {
                                "type": "response.output_text.delta",
                                "output_index": i,
                                "item_id": item["id"],
                                "content_index": 0,
                                "delta": text[j : j + 5],
                            }
                            for j in range(0, len(text), 5)
                        ]
                        events.append(
                            {
                                "type": "response.output_text.done",
                                "output_index": i,
                                "item_id": item["id"],
                                "content_index": 0,
                                "text": text,
                            }
                        )
                    else:
                        events.append(
                            {"type": "response.output_item.added", "output_index": i, "item": {**item, "arguments": ""}}
                        )
                        events.append(
                            {
                                "type": "response.function_call_arguments.delta",
                                "output_index": i,
                                "item_id": item["id"],
                                "delta": item["arguments"],
                            }
                        )
                        events.append(
                            {
                                "type": "response.function_call_arguments.done",
                                "output_index": i,
                                "item_id": item["id"],
                                "arguments": item["arguments"],
                            }
                        )
                    events.append({"type": "response.output_item.done", "output_index": i, "item": item})
                events.append({"type": "response.completed", "response": done})
                if step.get("cut"):  # the connection ends half-way, before response.completed
                    events = events[: len(events) // 2]
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for n, e in enumerate(events):
                        e["sequence_number"] = n
                        self.wfile.write(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def stream(self, request: dict[str, Any], payload: dict[str, Any], step: dict[str, Any]) -> None:
                cut = payload.pop("_cut", False)  # the connection ends without the finish chunk and [DONE]
                message = payload["choices"][0]["message"]
                head = {"id": payload["id"], "object": "chat.completion.chunk", "created": 0, "model": payload["model"]}
                deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
                text = message.get("content") or ""
                deltas += [{"content": text[i : i + 5]} for i in range(0, len(text), 5)]
                repeat = "repeated_tool_names" in server.quirks
                for i, call in enumerate(message.get("tool_calls") or ()):
                    fn = call["function"]
                    deltas.append(
                        {
                            "tool_calls": [
                                {
                                    "index": i,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": fn["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                    args = fn["arguments"]
                    named = {"name": fn["name"]} if repeat else {}  # llama.cpp: the whole name in every chunk
                    deltas += [
                        {"tool_calls": [{"index": i, "function": {**named, "arguments": args[j : j + 4]}}]}
                        for j in range(0, len(args), 4)
                    ]
                chunks = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
                held = len(chunks) + (step.get("hold_at") == "usage")  # the chunks sent before a "hold" step waits
                if cut:
                    chunks = chunks[: max(1, len(chunks) // 2)]
                reason = "tool_calls" if message.get("tool_calls") else "stop"
                if not cut and not step.get("no_finish"):
                    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
                # "no_usage": a server that ignores stream_options (some OpenAI-compatible ones do).
                no_usage = step.get("no_usage", "no_stream_usage" in server.quirks)  # a step may say otherwise
                if not cut and not no_usage and (request.get("stream_options") or {}).get("include_usage"):
                    chunks.append({**head, "choices": [], "usage": payload["usage"]})
                if step.get("broken"):  # chunked, and the connection drops mid-transfer
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    at = 2 if step["broken"] is True else int(step["broken"])  # the event the drop comes in
                    events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks[:at]]
                    data = b"".join(events[:-1]) + events[-1][: len(events[-1]) // 2]  # the drop comes mid-event
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for n, chunk in enumerate(chunks):
                        if n == held and "hold" in step:
                            step["released"] = step["hold"].wait(10)
                        garbled = step.get("garbled")  # True, or the text to send
                        data = json.dumps(chunk).encode()
                        if garbled and n == 1:
                            data = garbled.encode() if isinstance(garbled, str) else b"{not json"
                        if step.get("multiline"):  # the event's JSON over several data lines, as SSE allows
                            data = data.replace(b", ", b",\ndata: ")
                        self.wfile.write(b"data: " + data + b"\n\n")
                        self.wfile.flush()
                    if not cut:
                        self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reply(self, request: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
        # What the user said last: a handoff note lwfsm added for the model is not the user's words.
        said = [m.get("content") for m in request["messages"] if m.get("role") == "user"]
        last_user = next((c for c in reversed(said) if not str(c).startswith("[lwfsm handoff")), "")
        message: dict[str, Any] = {
            "role": "assistant",
            "content": step.get("content", f"{request['model']} says: {last_user}"),
        }
        if "tool_calls" in step:
            message["tool_calls"] = step["tool_calls"]
            message["content"] = step.get("content")
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": request["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
        if step.get("cut"):
            payload["_cut"] = True
        return payload

    def script(self, model: str, *steps: dict[str, Any]) -> None:
        with self.lock:
            self.scripts[model].extend(steps)

    def count(self, model: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["model"] == model)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
