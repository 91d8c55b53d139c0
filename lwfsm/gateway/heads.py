"""A bound on the head of a request (its request line and headers) as the gateway reads it.

uvicorn's httptools protocol keeps no bound: one endless header grew the process by its size, read
before the gateway key is checked and before --max-body and --body-budget count anything (8
connections sending 100 MB each took a gateway from 250 MB to 1 GB). h11, uvicorn's other parser,
stops at 16 KiB; agents' heads are a few KiB."""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD", "BoundedHead"]

MAX_HEAD = 64 * 1024

_SAID = f"the request line and headers are over {MAX_HEAD} bytes\n".encode()
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%b" % (len(_SAID), _SAID)
)


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 and closing the connection once a request's head
    passes `MAX_HEAD` bytes: counted after each read while the head goes on (so at most one read more is
    held), and measured whole once it has ended within a read."""

    _head: int | None = None  # bytes of the request head being read; None between heads and in a body

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head is not None:  # the head began in this read or before, and has not ended
            self._head += len(data)
            if self._head > MAX_HEAD:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head = 0

    def on_headers_complete(self) -> None:
        self._head = None
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
