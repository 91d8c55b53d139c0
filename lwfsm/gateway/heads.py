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


def _answer(status: str, said: str) -> bytes:
    text = said.encode()
    return (
        b"HTTP/1.1 %b\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%b"
        % (
            status.encode(),
            len(text),
            text,
        )
    )


_TOO_LARGE = _answer("431 Request Header Fields Too Large", f"the request line and headers are over {MAX_HEAD} bytes\n")


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 and closing the connection once a request's head
    passes `MAX_HEAD` bytes: counted after each read while the head goes on (so at most one read more is
    held), and measured whole once it has ended within a read. A head must also end within
    `head_timeout` seconds (`lwfsm serve --head-timeout`) of the connection, or of its first byte on a
    kept-alive connection: else a 408, and the connection closes."""

    head_timeout = 10.0
    _head: int | None = None  # bytes of the request head being read; None between heads and in a body
    _late: asyncio.TimerHandle | None = None  # closes the connection when the head takes too long

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._time_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _time_head(self) -> None:
        if self._late is None:
            self._late = self.loop.call_later(self.head_timeout, self._too_slow)

    def _head_done(self) -> None:
        if self._late is not None:
            self._late.cancel()
            self._late = None

    def _too_slow(self) -> None:
        self._late = None
        if not self.transport.is_closing():
            said = f"the request line and headers did not come within {self.head_timeout:g} s\n"
            self.transport.write(_answer("408 Request Timeout", said))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head is not None:  # the head began in this read or before, and has not ended
            self._head += len(data)
            if self._head > MAX_HEAD:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head = 0
        self._time_head()

    def on_headers_complete(self) -> None:
        self._head = None
        self._head_done()
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
