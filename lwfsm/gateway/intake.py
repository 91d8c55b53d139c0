"""Intake: a request read, checked and made a `Call` (the gateway key, the body within its limits, the
shape both turn protocols require), before any store or upstream call.

A call's idempotency key (`lwfsm.turn.loop`: the client's request id if given, else a digest of its
messages) is taken here, as the body is parsed (`parse`): the digest of its `messages` as parsed,
written out again compactly in the client's key order. On an 84 KB agent body that is ~10 us, where
writing them out as canonical JSON (sorted keys, OpenAI-shaped) was ~220 us, on every call. The meaning
holds: the same call delivered again is the same bytes (an SDK's retry sends its body again), so the same
key; and equal messages are equal text (the Anthropic messages converted for judging are made from them
alone; the system prompt is no part of them). Only the same messages with their keys in another order,
or a `cache_control` mark moved, would be a new turn where the canonical digest saw a retry. The
Responses API's messages come from a stored chain too: the loop digests those."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import math
import re
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import ClientDisconnect, Request

from ..turn import Usage, params
from ..turn.bindings import is_loopback
from .codec import CODECS
from .identity import Identity, identify, side_call
from .shape import Protocol, Reject, check_shape

__all__ = ["Bodies", "Call", "call_names", "Intake"]

if TYPE_CHECKING:
    from .app import Gateway


@dataclass
class Call:
    """One request on its way through the gateway."""

    protocol: Protocol
    body: dict[str, Any]
    raw: bytes
    messages: list[dict[str, Any]]  # OpenAI-shaped, for judging
    tools: list[dict[str, Any]]  # OpenAI-shaped, names only
    ident: Identity
    messages_digest: str | None  # from the text the client sent: the idempotency key (None: the loop takes it)
    headers: Mapping[str, str]
    stream: bool
    started: float
    side: str | None  # a side call's kind (title, compaction...): served and priced, not a turn
    turn: str | None = None  # the turn it was recorded as, once it is (`_commit`)
    usage: Usage | None = None  # the tokens it was recorded with (`_commit`): unreported is unknown, not 0
    answer: dict[str, Any] | None = None  # the upstream's answer, parsed, when it came whole (for `responses`)


def call_names(call: Call) -> list[str]:
    """The tool names the request declared (what a streamed tool call's name is merged against)."""
    return [str(t["function"]["name"]) for t in call.tools]


class Bodies:
    """Gives back the body bytes a request took from --body-budget (`Gateway._hold`) once it has been
    answered: when the app returns, a streamed reply has been sent whole too."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app, self.gateway = app, gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            self.gateway.held -= scope.get("lwfsm.held", 0)


def _hostname(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:  # "[not-an-address]"
        return ""


@functools.lru_cache(maxsize=64)  # a client names the gateway the same way at every call (~15 µs each)
def _loopback_host(host: str) -> bool:
    return is_loopback(_hostname("//" + host))


def _this_host(request: Request) -> None:
    """Without a key the gateway answers this machine's clients, and a web page open in its browser is
    one: a page may send a cross-site POST of plain text with no preflight (a spec, an event, a paid
    call), and a DNS name it rebinds to 127.0.0.1 reads the answers. So the request must name the
    gateway by a loopback address (Host), and come from no page (SDKs send no Origin) or from the
    gateway's own (its dashboard: the origin is the scheme, host and port the request names; another
    loopback port is another program's page, a dev server or a notebook)."""
    host = request.headers.get("host")
    if host is not None and not _loopback_host(host):
        raise Reject(
            403,
            f"this gateway has no key, so it answers requests that name it 127.0.0.1, ::1 or localhost only, "
            f"not {host[:80]!r}: call it so, or give it a key (lwfsm serve --api-key-env)",
            "permission_error",
        )
    origin = request.headers.get("origin")
    if origin is not None and (
        host is None or origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower())
    ):
        raise Reject(
            403,
            f"a request from the web page {origin[:80]!r}: this gateway has no key, so it answers no page but "
            "its own (give it a key with lwfsm serve --api-key-env to serve others)",
            "permission_error",
        )


class Intake:
    """Reading a request: the gateway key, the body within --max-body and --body-budget, a turn call."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def _client_key(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        return request.headers.get("x-api-key") or None

    def authorise(self, request: Request, control: bool = False) -> str | None:
        """The key the client presented, checked: the gateway key, or for the `control` API its own key
        when it has one; without a key, the request must come from this host (`_this_host`)."""
        g = self.gateway
        key, name = (g.control_key, "control key") if control and g.control_key is not None else (g.key, "gateway key")
        if key is None:
            _this_host(request)
        presented = self._client_key(request)
        # As bytes: compare_digest refuses str with non-ASCII characters (a 500, not the 401 it is).
        if key is not None and (presented is None or not hmac.compare_digest(presented.encode(), key.encode())):
            said = f"missing or wrong {name} (send it as a Bearer token or x-api-key)"
            raise Reject(401, said, "authentication_error")
        return presented

    def _hold(self, request: Request, size: int) -> None:
        """Count `size` more bytes of this request's body against --body-budget, or refuse the request."""
        self._fits(size)
        self.gateway.held += size
        request.scope["lwfsm.held"] = request.scope.get("lwfsm.held", 0) + size

    def _fits(self, size: int) -> None:
        """Refuse the request when `size` more bytes would go over --body-budget."""
        g = self.gateway
        if g.held + size > g.body_budget:
            raise Reject(
                503,
                f"the gateway is holding {g.held} bytes of other requests' bodies; {size} more would go over "
                f"--body-budget {g.body_budget}: retry in a moment",
                "overloaded_error",
                {"retry-after": "1"},
            )

    async def read_json(self, request: Request) -> tuple[bytes, dict[str, Any], str | None]:
        """The body's bytes, the object they hold, and the digest of its `messages` text (None: none)."""
        declared = request.headers.get("content-length")
        length = int(declared) if declared and declared.isdigit() else 0
        if length > self.gateway.max_body:
            raise Reject(413, f"request body over the gateway's limit of {self.gateway.max_body} bytes (--max-body)")
        # A body that cannot be held is not read; the bytes are counted as they come, not as declared: a
        # client declaring bodies it never sends held the budget from every other client.
        self._fits(length)
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.gateway.max_body:
                    raise Reject(
                        413, f"request body over the gateway's limit of {self.gateway.max_body} bytes (--max-body)"
                    )
                self._hold(request, len(chunk))
                chunks.append(chunk)
        except ClientDisconnect:  # nobody to answer; not an error of the gateway's
            raise Reject(400, "the client went away before sending the whole body") from None
        raw = b"".join(chunks)
        if not raw.strip():
            raise Reject(400, "request body is empty: send the request as a JSON object")
        try:
            body, key = parse(raw)
        except ValueError as exc:
            raise Reject(400, f"request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise Reject(400, "request body is nested too deeply to read") from None
        if not isinstance(body, dict):
            raise Reject(400, f"request body must be a JSON object, got {type(body).__name__}")
        return raw, body, key

    async def read(self, request: Request, protocol: Protocol, *, answered: bool = True) -> Call:
        """A turn call (`answered`=False: a request only counted, which has no max_tokens)."""
        client_key = self.authorise(request)
        raw, body, key = await self.read_json(request)
        check_shape(body, protocol, answered)
        codec = CODECS[protocol]
        why = params.refused(codec.params, body)
        if why is not None:
            raise Reject(400, why)
        read = codec.read_request(body)  # the conversation in OpenAI shape, for judging
        return self.call(
            protocol, request.headers, body, raw, read.messages, read.tools, read.system, client_key, body, key
        )

    @staticmethod
    def call(
        protocol: Protocol,
        headers: Mapping[str, str],
        body: dict[str, Any],
        raw: bytes,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        system: str,
        client_key: str | None,
        sent: Mapping[str, Any],  # the body the client sent (its ids identify the conversation)
        key: str | None = None,  # the digest of the messages' text (`read_json`)
    ) -> Call:
        names = [str((t.get("function") or {}).get("name")) for t in tools]
        ident = identify(headers, sent, messages, system, names, client_key)
        side = side_call(headers, sent, messages, system)
        return Call(
            protocol,
            body,
            raw,
            messages,
            # Judging reads only the tools' names: the stored turn keeps no schemas (Claude Code's 24
            # tools are 65 KB of JSON, which every call would otherwise write and parse again).
            [{"type": "function", "function": {"name": n}} for n in names],
            ident,
            key,
            headers,
            bool(body.get("stream")),
            time.perf_counter(),
            side,
        )


def parse(raw: bytes) -> tuple[Any, str | None]:
    """What `raw` holds, and the digest of its `messages` (None: not an object with messages).

    orjson reads what it can (twice json's speed; an integer beyond 64 bits is read as a double, as
    JavaScript reads it); json reads what orjson refuses (a lone surrogate, UTF-16), or says what is
    wrong (ValueError): NaN, Infinity and a number beyond a double are not JSON, and an upstream (or the
    gateway, writing its answer) would refuse them after a paid call. Tools an agent sends again are not
    read again (`_Tools`)."""
    body = _TOOLS.parse(raw)
    fast = body is not None
    if body is None:
        try:
            body, fast = orjson.loads(raw), True
        except orjson.JSONDecodeError:
            body = json.loads(raw, parse_constant=_not_json, parse_float=_finite, parse_int=_integer)
        if isinstance(body, dict) and fast:
            _TOOLS.learn(raw, body.get("tools"))
    if not isinstance(body, dict) or "messages" not in body:
        return body, None
    data = None
    if fast:  # what orjson read, orjson writes back as it was (what json read may hold NaN: json writes it)
        with contextlib.suppress(TypeError):  # nested deeper than orjson writes (255)
            data = orjson.dumps(body["messages"])
    if data is None:
        data = json.dumps(body["messages"], separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    return body, "m:" + hashlib.sha256(data).hexdigest()[:32]


def _not_json(word: str) -> Any:
    raise ValueError(f"{word} is not a JSON number: send a finite number, or null")


def _finite(text: str) -> float:
    if math.isinf(value := float(text)):
        raise _beyond(text)
    return value


_MOST = int(sys.float_info.max)


def _integer(text: str) -> int:
    if abs(value := int(text)) > _MOST:  # orjson refused it: it would be read as infinity
        raise _beyond(text)
    return value


def _beyond(text: str) -> ValueError:
    return ValueError(f"{text[:40]} is beyond what a JSON number may hold (a double): send a smaller number")


class _Tools:
    """The `tools` of recent bodies, by the bytes they came as. A coding agent sends the same tools on
    every call (Claude Code: 24, 65 KB of JSON, read into ~4,000 objects: most of the time reading a
    body took, and more under load); a body that holds bytes seen before is read with a stub in
    their place, and the tools read then put back. Everything in the gateway reads a body without
    changing it (`targets.fit` copies what it drops), so calls can share one list; what hands it to
    code of others (LiteLLM) copies it.

    The stub is a string no client can write (random, this process's, never shown): where the body's
    `tools` is the stub after reading, the bytes replaced were its own (one nested deeper, or a key
    given twice, leaves the body's `tools` as sent). Tools of 2 KB to 1 MiB are kept, the last 8 used."""

    KEY, BIG, MOST, KEEP = b'"tools":', 2048, 1 << 20, 8

    def __init__(self) -> None:
        self.stub = secrets.token_hex(16)
        self.known: dict[bytes, list[Any]] = {}  # the bytes -> the tools they hold, the last used last
        self.plain: set[bytes] = set()  # those of the known with no `"model"` in them (`span`)
        self.odd: dict[bytes, None] = {}  # tools a client writes other than orjson and json do, not looked for again

    def _at(self, raw: bytes) -> int:
        """Where the value of the first key `"tools"` starts (-1: none)."""
        at = raw.find(self.KEY)
        return -1 if at < 0 else _SPACE.match(raw, at + len(self.KEY)).end()  # type: ignore[union-attr]

    def parse(self, raw: bytes) -> Any:
        """The body with its tools as read before; None when its tools are not known (or not there)."""
        if not self.known or (at := self._at(raw)) < 0:
            return None
        for text in self.known:
            if raw.startswith(text, at):
                try:
                    body = orjson.loads(b'%b"%b"%b' % (raw[:at], self.stub.encode(), raw[at + len(text) :]))
                except orjson.JSONDecodeError:
                    return None
                if not isinstance(body, dict) or body.get("tools") != self.stub:
                    return None
                body["tools"] = self.known[text] = self.known.pop(text)  # now the last used
                return body
        return None

    def learn(self, raw: bytes, tools: Any) -> None:
        """Keep tools just read whole, by their bytes, when the body holds them as orjson or json writes
        them (compact, as JavaScript and httpx write; or with json's default spaces)."""
        if not isinstance(tools, list) or len(raw) < self.BIG or (at := self._at(raw)) < 0:
            return
        try:
            text = orjson.dumps(tools)  # read by orjson: it writes them back
        except TypeError:  # nested deeper than orjson writes (255)
            return
        if not self.BIG <= len(text) <= self.MOST or text in self.odd:
            return
        if not raw.startswith(text, at):
            spaced = json.dumps(tools).encode()
            if not raw.startswith(spaced, at):
                self.odd = _last({**self.odd, text: None}, self.KEEP)
                return
            text = spaced
        if len(text) <= self.MOST:
            self.known = _last({**self.known, text: tools}, self.KEEP)
            self.plain = {t for t in self.known if t in self.plain or (t == text and b'"model"' not in t)}

    def span(self, raw: bytes) -> tuple[int, int] | None:
        """Where in `raw` tools read before stand that hold no `"model"`: a whole JSON value outside any
        string (its quotes are bare), so a top-level key looked for in the bytes is not in there."""
        if not self.plain or (at := self._at(raw)) < 0:
            return None
        return next(((at, at + len(t)) for t in self.plain if raw.startswith(t, at)), None)


def _last(d: dict[bytes, Any], n: int) -> dict[bytes, Any]:
    """The last n items of d."""
    return d if len(d) <= n else dict(list(d.items())[-n:])


_SPACE = re.compile(rb"[ \t\r\n]*")
_TOOLS = _Tools()


def known_tools(raw: bytes) -> tuple[int, int] | None:
    """Where `raw` holds tools read before that hold no `"model"` (`with_model` skips them)."""
    return _TOOLS.span(raw)
