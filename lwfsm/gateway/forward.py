"""The fast path: a request forwarded as bytes to an upstream of the client's protocol, its answer
streamed back as it comes and settled before the client sees its end."""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import aiohttp
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..turn.bindings import RoleBinding
from .codec import CODECS, Stream, noted
from .codec.common import SSEReader, loads, with_model
from .intake import Call, call_names, known_tools
from .replies import error_body, recorded_trailer, usage_header
from .shape import Protocol

__all__ = ["Forward", "translated_always"]

if TYPE_CHECKING:
    from .app import Gateway, _Loaded

logger = logging.getLogger("lwfsm.gateway")

# The most of an upstream's answer the gateway holds (a body read whole, a stream's bytes): far more than
# a model writes (128k tokens are ~0.5 MB of text), and a bound on a broken or hostile upstream (400 KB of
# gzip expanded to 400 MiB in memory, a 120 MB stream stored whole in the conversation's row).
MAX_REPLY = 64 * 1024 * 1024


class _TooLarge(Exception):
    pass


class _Unsound(Exception):
    """A stream the client would take for a whole reply that is not one: nothing of it is recorded."""


async def _read(upstream: aiohttp.ClientResponse) -> bytes:
    """The upstream's body (decompressed), read up to `MAX_REPLY` bytes; `_TooLarge` past it."""
    parts, size = [], 0
    async for chunk in upstream.content.iter_any():
        size += len(chunk)
        if size > MAX_REPLY:
            raise _TooLarge
        parts.append(chunk)
    return b"".join(parts)


def _json(data: bytes) -> bool:
    try:
        loads(data)
    except ValueError:
        return False
    return True


def _unlike_json(role: str, url: str, upstream: aiohttp.ClientResponse, data: bytes) -> str:
    """What an upstream answered that is not JSON, its start shown: often a web page at a wrong api_base."""
    kind = upstream.headers.get("content-type", "no content-type")
    start = " ".join(data[:120].decode(errors="replace").split())
    return f"the {role} upstream {origin(url)} answered {upstream.status} with {kind}, not JSON: {start!r}"


def _too_large(role: str) -> str:
    return f"the {role} upstream's answer is over {MAX_REPLY >> 20} MiB; nothing was recorded"


# Not passed on from the upstream's response: hop-by-hop, or set by our own server.
_HOP = {  # hop-by-hop (RFC 9110 7.6.1), or what the gateway's own server writes
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "date",
    "server",
}
# Not the upstream's to say to the gateway's client: its cookies, what a browser may read cross-origin
# (access-control-*), where else it serves (alt-svc), the type (set from what was read).
_DROPPED = {"set-cookie", "set-cookie2", "alt-svc", "strict-transport-security", "content-type"}


REDIRECTS = frozenset({301, 302, 303, 307, 308})  # the statuses an HTTP client follows (httpx's, aiohttp's)


class Redirected(Exception):
    """An upstream's redirect, refused by the HTTP clients the gateway gives LiteLLM (`translate`, `sse_fix`)."""

    def __init__(self, url: str, status: int, location: str) -> None:
        super().__init__(f"redirected ({status})")
        self.url, self.status, self.location = url, status, location


def redirected(role: str, url: str, status: int, location: str) -> str:
    """What a client is told of an upstream's redirect, which the gateway does not follow."""
    try:  # (only where it points, never its path or query)
        to = f" to {origin(location)}" if location.startswith(("http://", "https://")) else ""
    except ValueError:  # a port that is no number
        to = ""
    return (
        f"{role} upstream {origin(url)} redirected ({status}{to}): the gateway follows no redirect, which "
        "would take the key along; set the role's API base to where it answers"
    )


def origin(url: str) -> str:
    """scheme://host:port of an upstream URL, to name it in a message (never a path or credentials)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def refused_key(role: str, url: str, status: int, binding: RoleBinding) -> str:
    """What a client is told when a role's upstream refuses the gateway's key (a 502, not the upstream's 401:
    the client would check, or retry, its own key)."""
    return f"{role} upstream {origin(url)} refused the gateway's key ({status}): {key_hint(role, binding)}"


def key_hint(role: str, binding: RoleBinding) -> str:
    """What to check when a role's upstream refuses the gateway's key."""
    if binding.api_key_env:
        return f"check the key in {binding.api_key_env} (LWFSM_{role.upper()}_API_KEY_ENV names it)"
    return f"the gateway sent none: set LWFSM_{role.upper()}_API_KEY_ENV to the variable holding it"


class Forward:
    """The fast path, through the gateway's one aiohttp session (`Gateway.http`)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @staticmethod
    def fast(protocol: Protocol, binding: RoleBinding) -> bool:
        """The role's upstream speaks the client's protocol: the bytes go as they are."""
        prefix = binding.model.split("/", 1)[0]
        if binding.model.startswith("openai/responses/"):  # an upstream with the Responses API only: LiteLLM's bridge
            return False
        provider = CODECS[protocol].provider  # "" for a protocol no upstream is forwarded in
        return bool(provider) and prefix == provider

    def _upstream(self, call: Call, binding: RoleBinding) -> tuple[str, dict[str, str]]:
        key = self.gateway.env.get(binding.api_key_env) if binding.api_key_env else None
        return CODECS[call.protocol].endpoint(binding.api_base, key, call.headers)

    async def send(
        self, call: Call, loaded: _Loaded, role: str, binding: RoleBinding, lw: dict[str, str], final: bool
    ) -> Response | None:
        """The fast path: the client's bytes (model replaced) to an upstream of the same protocol."""
        assert self.gateway.http is not None
        url, headers = self._upstream(call, binding)
        model = binding.model.split("/", 1)[1]
        if binding.options:  # the operator's options over the client's, as the translated path has them
            content = json.dumps({**call.body, **binding.options, "model": model}).encode()
        else:
            content = with_model(call.raw, call.body, model, known_tools(call.raw))
        if note := loaded.plan.note:  # at the end of the messages, every earlier byte as the client sent it
            content = noted(CODECS[call.protocol], content, {**call.body, **binding.options, "model": model}, note)
        try:
            # no redirect followed: the key would go along to the host it names (aiohttp keeps x-api-key)
            upstream = await self.gateway.http.post(url, data=content, headers=headers, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.gateway._failed(role, "unreachable")
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                why = f"no connection within {self.gateway.connect_timeout:g} s (--connect-timeout)"
            elif isinstance(exc, aiohttp.SocketTimeoutError):
                why = f"no first byte within {self.gateway.first_byte_timeout:g} s (--first-byte-timeout)"
            else:
                why = type(exc).__name__
            if not final:
                logger.warning(
                    "session %s: %s upstream unreachable (%s); trying the next role", call.ident.key, role, why
                )
                return None
            msg = f"{role} upstream {origin(url)} unreachable: {why}"
            return JSONResponse(error_body(call.protocol, 502, msg, "api_error"), 502, headers=lw)
        self._first_byte(upstream)
        if 300 <= upstream.status < 400:
            upstream.release()
            self.gateway._failed(role, upstream.status)
            msg = redirected(role, url, upstream.status, upstream.headers.get("location", ""))
            return JSONResponse(error_body(call.protocol, 502, msg, "api_error"), 502, headers=lw)
        if upstream.status >= 400:
            try:
                data = await _read(upstream)
            except _TooLarge:
                data = _too_large(role).encode()
            finally:
                upstream.release()
            self.gateway._failed(role, upstream.status)
            if upstream.status >= 500 and not final:
                logger.warning(
                    "session %s: %s upstream answered %d; trying the next role",
                    call.ident.key,
                    role,
                    upstream.status,
                )
                return None
            return self._refusal(call.protocol, role, url, binding, upstream, data, lw)
        # The upstream's own headers go on (request ids, rate limits), but not its cookies (the upstream's
        # session is the gateway's, not the client's), and the type is what the gateway read it as: an
        # upstream's `text/html` over a JSON body would have a browser run a <script> in a model's words
        # on the gateway's origin.
        passthrough = {
            name: v
            for k, v in upstream.headers.items()
            if (name := k.lower()) not in _HOP
            and name not in _DROPPED
            and not name.startswith(("x-lwfsm", "access-control-"))
        }
        passthrough.update(lw)
        # An upstream that ignores `stream: true` answers one JSON body: the client gets it as it came,
        # and it is recorded like any whole reply.
        if not call.stream or upstream.content_type == "application/json":
            try:
                data = await _read(upstream)
            except _TooLarge:
                self.gateway._failed(role, "too_large")
                return JSONResponse(error_body(call.protocol, 502, _too_large(role), "api_error"), 502, headers=lw)
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = type(exc).__name__
                if isinstance(exc, aiohttp.SocketTimeoutError):
                    why = f"quiet for {self.gateway.idle_timeout:g} s (--idle-timeout)"
                msg = f"{role} upstream broke off: {why}"
                return JSONResponse(error_body(call.protocol, 502, msg, "api_error"), 502, headers=lw)
            finally:
                upstream.release()
            try:
                parsed = loads(data)
            except ValueError:
                self.gateway._failed(role, "not_json")
                said = _unlike_json(role, url, upstream, self.gateway.redact(data)) + "; nothing was recorded"
                return JSONResponse(error_body(call.protocol, 502, said, "api_error"), 502, headers=lw)
            if not isinstance(parsed, dict):  # valid JSON, not a reply (a list, a string): no message in it
                parsed = {}
            answer = CODECS[call.protocol].read_answer(parsed)
            reply, usage = answer.message, answer.usage
            if reply is None and not loaded.plan.side:
                msg = f"the {role} upstream's response has no assistant message; nothing was recorded"
                return JSONResponse(error_body(call.protocol, 502, msg, "api_error"), 502, headers=lw)
            call.answer = parsed
            passthrough["content-type"] = "application/json"
            if (turn := await self.gateway._commit(call, loaded, role, reply, usage, parsed.get("model"))) is not None:
                passthrough["x-lwfsm-turn"] = turn
            passthrough.update(usage_header(call))
            return Response(data, upstream.status, headers=passthrough)
        passthrough["content-type"] = "text/event-stream"
        return StreamingResponse(self._relay(call, loaded, role, upstream), upstream.status, headers=passthrough)

    async def count(self, call: Call, role: str, binding: RoleBinding, lw: dict[str, str]) -> Response | None:
        """A Messages token count sent on to the role's Anthropic upstream (its own count, exact, and no
        tokenizer to load here): the client's body with the role's model, answered as it answers. None: the
        upstream has no count endpoint (404, 405, 501; an Anthropic-compatible server that serves Messages
        only), to be counted another way."""
        assert self.gateway.http is not None
        url, headers = self._upstream(call, binding)
        model = binding.model.split("/", 1)[1]
        content = with_model(call.raw, call.body, model, known_tools(call.raw))
        try:
            upstream = await self.gateway.http.post(
                url + "/count_tokens", data=content, headers=headers, allow_redirects=False
            )
            try:
                data = await _read(upstream)
            finally:
                upstream.release()
        except _TooLarge:
            self.gateway._failed(role, "too_large")
            return JSONResponse(error_body("anthropic", 502, _too_large(role), "api_error"), 502, headers=lw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.gateway._failed(role, "unreachable")
            msg = f"{role} upstream {origin(url)} unreachable: {type(exc).__name__}"
            return JSONResponse(error_body("anthropic", 502, msg, "api_error"), 502, headers=lw)
        if upstream.status in (404, 405, 501):
            return None
        if upstream.status >= 300:
            self.gateway._failed(role, upstream.status)
        if 300 <= upstream.status < 400:
            msg = redirected(role, url, upstream.status, upstream.headers.get("location", ""))
            return JSONResponse(error_body("anthropic", 502, msg, "api_error"), 502, headers=lw)
        if upstream.status >= 400:
            return self._refusal("anthropic", role, url, binding, upstream, data, lw)
        if not _json(data):  # a 200 that is no count (a proxy's page): named
            said = _unlike_json(role, url, upstream, self.gateway.redact(data))
            return JSONResponse(error_body("anthropic", 502, said, "api_error"), 502, headers=lw)
        return Response(self.gateway.redact(data), upstream.status, headers={**lw, "content-type": "application/json"})

    def _refusal(
        self,
        protocol: Protocol,
        role: str,
        url: str,
        binding: RoleBinding,
        upstream: aiohttp.ClientResponse,
        data: bytes,
        lw: dict[str, str],
    ) -> Response:
        """What the client is told of an upstream's error answer (4xx, 5xx): its own, redacted, with its
        retry-after; a refusal of the gateway's key or a page that is no JSON named for what it is."""
        if upstream.status in (401, 403):
            # the upstream refused the gateway's key, not the client's: a 401 would have the client check (or
            # retry) its own; a 502 says whose it is
            msg = refused_key(role, url, upstream.status, binding)
            return JSONResponse(error_body(protocol, 502, msg, "api_error"), 502, headers=lw)
        out = {**lw, "content-type": "application/json"}  # (what it is, when it is JSON: checked below)
        if "retry-after" in upstream.headers:
            out["retry-after"] = upstream.headers["retry-after"]
        if not _json(data):  # a proxy's or server's HTML page: the client's SDK could show nothing of it
            said = _unlike_json(role, url, upstream, self.gateway.redact(data))
            out.pop("content-type")
            return JSONResponse(error_body(protocol, upstream.status, said, "api_error"), upstream.status, out)
        return Response(self.gateway.redact(data), upstream.status, headers=out)

    def _first_byte(self, upstream: aiohttp.ClientResponse) -> None:
        """The upstream has answered (its status and headers came): from now on it may go quiet for
        idle_timeout between reads, no longer first_byte_timeout. aiohttp restarts its read timer on each
        read with the connection's read_timeout, which is set per response; restarted here so the first
        wait is bounded too. (A body already read whole has no timer left to restart.)"""
        protocol = upstream.connection.protocol if upstream.connection is not None else None
        if protocol is not None and not upstream.content.is_eof():
            protocol.read_timeout = self.gateway.idle_timeout
            protocol.start_timeout()

    async def _relay(
        self, call: Call, loaded: _Loaded, role: str, upstream: aiohttp.ClientResponse
    ) -> AsyncIterator[bytes]:
        reader = SSEReader()
        codec = CODECS[call.protocol]
        acc: Stream = codec.stream(call_names(call))
        # A usage chunk that comes after the finish chunk: when it was asked for, the call settles with it.
        usage = codec.usage_follows(call.body)
        settled, size = False, 0
        held: list[bytes] = []  # bytes of an event not yet whole (kept apart: joining them on each read was quadratic)
        tail = b""  # the last bytes read, where a blank line may begin
        try:
            async for chunk in upstream.content.iter_any():
                size += len(chunk)
                if size > MAX_REPLY:
                    raise _TooLarge
                for event in reader.feed(chunk):
                    acc.add(event)
                if reader.bad is not None and not settled:  # not passed on: the client's SDK would raise on it
                    snippet = self.gateway.redact(reader.bad)[:80].decode(errors="replace")  # redacted whole, then cut
                    raise _Unsound(f"the {role} upstream sent an event that is not JSON ({snippet!r})")
                if reader.ended and not acc.done:  # [DONE] before the finish: a client would stop there, content
                    raise _Unsound(f"the {role} upstream ended the stream before its finish")
                # (A server that ignores `include_usage` ends with [DONE] and no usage: settle then.)
                if acc.done and not settled and (acc.usage is not None or not usage or reader.ended):
                    # Commit before the client sees the end of the stream: once it has the end it
                    # may send the next call, or the gateway may be stopped; the turn must be stored.
                    settled = True
                    if (failed := await self.gateway.turns.settle_stream(call, loaded, role, acc)) is not None:
                        yield failed  # the store failed: the client must not take the reply for a recorded turn
                        return
                # whole events only: an event the upstream breaks off in the middle never reaches the client
                window = tail + chunk
                end = _last_event_end(window) - len(tail)  # a blank line ends in this chunk (> 0) or not
                tail = window[-3:]
                if end <= 0:
                    held.append(chunk)
                    continue
                data, held = b"".join([*held, chunk[:end]]), [chunk[end:]] if end < len(chunk) else []
                yield data
            if not acc.done:  # ended cleanly, before its finish: a client would take the text so far for the reply
                raise _Unsound(f"the {role} upstream ended the stream before its finish")
            if held:
                yield b"".join(held)  # the upstream ended the stream itself, its last event unfinished: as it came
        except _Unsound as exc:
            yield self.gateway.turns.broken(call, role, "unsound", str(exc))
            return
        except _TooLarge:  # cut: once recorded, what follows the whole reply is not the client's either
            self.gateway._failed(role, "too_large")
            said = "the reply was recorded, what followed it is cut" if settled else "nothing was recorded"
            logger.warning(
                "session %s: the %s upstream's answer is over %d MiB; %s", call.ident.key, role, MAX_REPLY >> 20, said
            )
            if not settled:
                yield CODECS[call.protocol].stream_error(502, _too_large(role))
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            if settled:
                return  # the reply was whole and is recorded; only what followed it was lost
            why = f"quiet for {self.gateway.idle_timeout:g} s (--idle-timeout)" if isinstance(exc, TimeoutError) else ""
            why = why or f"{type(exc).__name__}: {exc}"
            # after whole events: it is an event of its own
            yield self.gateway.turns.broken(
                call, role, "broke_off", f"the {role} upstream broke off mid-stream ({why})"
            )
            return
        finally:
            upstream.release()
        if not settled and (failed := await self.gateway.turns.settle_stream(call, loaded, role, acc)) is not None:
            yield failed
            return
        if call.turn is not None:
            yield recorded_trailer(call.turn, reader.partial)


def translated_always(roles: Mapping[str, RoleBinding], mock: bool = False) -> bool:
    """Whether calls go through LiteLLM whichever protocol a client speaks: some role's upstream speaks
    the other one (a Claude lead and an OpenAI-compatible worker), or only LiteLLM calls it, or --mock."""
    return mock or all(any(not Forward.fast(p, b) for b in roles.values()) for p in ("openai", "anthropic"))


def _last_event_end(data: bytes) -> int:
    """Where the last whole server-sent event in `data` ends (a blank line ends one), 0 if none does."""
    return max(
        (at + len(blank) for blank in (b"\n\n", b"\r\n\r\n", b"\r\r") if (at := data.rfind(blank)) >= 0), default=0
    )
