"""What the gateway answers: errors in each protocol's shape, JSON bodies, the last line of a stream,
the app's exception handlers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..cost.report import printable
from .codec import CODECS
from .intake import Call
from .shape import Protocol

__all__ = [
    "AsciiJSON",
    "crash",
    "error_body",
    "log_error",
    "not_found",
    "recorded_trailer",
    "single_chunk",
    "store_failed",
    "usage_header",
]

logger = logging.getLogger("lwfsm.gateway")


def error_body(protocol: Protocol, status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    return CODECS[protocol].error_body(status, message, kind)


class AsciiJSON(JSONResponse):
    """JSON in ASCII: a lone surrogate a client or an upstream sent (JSON allows
    "\\ud800") is escaped again, not a 500 for UTF-8."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def usage_header(call: Call) -> dict[str, str]:
    """x-lwfsm-usage of a reply recorded whole: the tokens recorded, or `unknown` when the upstream
    reported none (never 0)."""
    u = call.usage
    if u is None:
        return {}
    return {"x-lwfsm-usage": "unknown" if u.unreported else f"in={u.prompt_tokens} out={u.completion_tokens}"}


def recorded_trailer(turn: str, partial: bool = False) -> bytes:
    """A stream's last line: an SSE comment (every SSE client skips it) with the turn the call was
    recorded as. A streamed reply's x-lwfsm-turn header went out before the call was recorded: it is
    the turn planned, which a concurrent call of the same conversation may have taken first.
    (After a last line the upstream left unfinished, a newline first, so the comment is a line.)"""
    return (b"\n" if partial else b"") + b": x-lwfsm-turn " + turn.encode() + b"\n\n"


async def single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


# What a client can call, named when it calls something else.
_ROUTES = "POST /v1/chat/completions, /v1/messages, /v1/responses; GET /v1/models; /lwfsm/ (the dashboard)"


async def not_found(request: Request, exc: Exception) -> Response:
    """404 and 405, in the shape of the protocol the path belongs to (an SDK reads `error.message`)."""
    status, path = getattr(exc, "status_code", 404), request.url.path
    if status == 405:
        allowed = (getattr(exc, "headers", None) or {}).get("Allow", "POST")
        message = f"{request.method} {path}: this route takes {allowed}"
    else:
        message = f"no route {request.method} {path}; the gateway serves {_ROUTES}"
    protocol: Protocol = "anthropic" if path.startswith("/v1/messages") else "openai"
    kind = "not_found_error" if status == 404 else "invalid_request_error"  # a 405 is a request the route refuses
    return JSONResponse(error_body(protocol, status, message, kind), status, getattr(exc, "headers", None))


def log_error(request: Request, response: Response) -> None:
    """An error a turn endpoint answers is one log line: the agent shows its user a failure (an
    unreachable upstream, a request an upstream refused, a parameter the gateway refuses), and whoever
    runs the gateway sees which and why. The body is what the client got: upstream keys already redacted."""
    if response.status_code < 400 or isinstance(response, StreamingResponse):
        return
    body = bytes(response.body)
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (AttributeError, ValueError):
        message = None
    text = printable(str(message) if message else body[:300].decode(errors="replace"))
    session = response.headers.get("x-lwfsm-session")
    where = f" session {printable(session)} ({response.headers.get('x-lwfsm-role')})" if session else ""
    logger.warning("%s %s%s: %d to the client: %s", request.method, request.url.path, where, response.status_code, text)


async def store_failed(request: Request, exc: Exception) -> Response:
    # A store that is down, or a row that is not ours: the message names the store (password
    # redacted) and the session, and says what to do; nothing was written.
    logger.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"error": {"message": str(exc), "type": "api_error"}}, 503)


async def crash(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": {"message": f"internal gateway error: {type(exc).__name__}", "type": "api_error"}}, 500
    )
