"""Bounds on the head of a request (its request line and headers) as the gateway reads it: its size,
and the time it may take.

uvicorn's httptools protocol keeps no bound: one endless header grew the process by its size, read
before the gateway key is checked and before --max-body and --body-budget count anything (8
connections sending 100 MB each took a gateway from 250 MB to 1 GB). h11, uvicorn's other parser,
stops at 16 KiB; agents' heads are a few KiB. Nor does it time a head: its keep-alive timeout runs
only after a response, so a connection that sends nothing, or a head a byte at a time, was held for
good (1,100 such connections, opened by a client with no key, stayed open as long as it liked)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD", "BoundedHead"]

MAX_HEAD = 64 * 1024


_HEAD = "HTTP/1.1 {}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: {}\r\n\r\n"


def _answer(status: str, said: str) -> bytes:
    text = said.encode()
    return _HEAD.format(status, len(text)).encode() + text


_TOO_LARGE = _answer("431 Request Header Fields Too Large", f"the request line and headers are over {MAX_HEAD} bytes\n")


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 and closing the connection once a request's head
    passes `MAX_HEAD` bytes: counted after each read while the head goes on (so at most one read more is
    held), and measured whole once it has ended within a read.

    And a connection waits on its client for at most `head_timeout` seconds (`lwfsm serve
    --head-timeout`) at a time when no answer is owed: for its first head, for a head begun on a
    kept-alive connection (a 408 then, and it closes), and for the rest of a body the gateway answered
    without reading whole (a refused key: the connection closes). While a request is being answered,
    a pipelined head waits unread, untimed."""

    head_timeout = 10.0
    _head: int | None = None  # bytes of the request head being read; None between heads and in a body
    _late: asyncio.TimerHandle | None = None  # closes the connection when the client takes too long

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waited()
        super().connection_lost(exc)

    def _answering(self) -> bool:
        """Whether an answer is owed: a request's response not yet ended, or requests queued behind it."""
        return (self.cycle is not None and not self.cycle.response_complete) or bool(self.pipeline)

    def _wait(self) -> None:
        if self._late is None and not self._answering():
            self._late = self.loop.call_later(self.head_timeout, self._too_slow)

    def _waited(self) -> None:
        if self._late is not None:
            self._late.cancel()
            self._late = None

    def _too_slow(self) -> None:
        self._late = None
        if self.transport.is_closing() or self._answering():
            return
        if self.cycle is None or not self.cycle.more_body:  # between requests: the head is late
            said = f"the request line and headers did not come within {self.head_timeout:g} s\n"
            self.transport.write(_answer("408 Request Timeout", said))
        self.transport.close()  # (else the body of a request answered already: nothing more to say)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if (self.cycle is not None and self.cycle.more_body) or self._head is not None:
            self._wait()  # the rest of a body answered early, or a head begun while answering

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:
            self.cycle.more_body = False  # (uvicorn leaves it set for a request it has answered)
            self._waited()  # the body of a request answered early has come: now the next head is awaited
            self._wait()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head is not None:  # the head began in this read or before, and has not ended
            self._head += len(data)
            if self._head > MAX_HEAD:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head = 0
        self._wait()

    def on_headers_complete(self) -> None:
        self._head = None
        self._waited()
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEAD:
            self._refuse()
            raise _Refused  # stops the parser: nothing of this request reaches the app
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # (a parser stopped by `_Refused` has had its answer)
            super().send_400_response(msg)

    def _refuse(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(_TOO_LARGE)
            self.transport.close()


class _Refused(Exception):
    pass
