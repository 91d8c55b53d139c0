"""An OpenAI-compatible upstream's requests and streams, tidied around LiteLLM's translation for an
Anthropic client. Its requests: messages as every server takes them (`codec.chat.plain_chat`: LiteLLM writes
a tool-calling assistant message with a null content, and an Anthropic system prompt in blocks as a
list of parts, each a 500 from llama.cpp's server). Its streams:

llama.cpp's server repeats a tool call's whole name (and id) in every chunk. The gateway's own
accumulator takes that in its stride (`codec.chat.merged_name`), but LiteLLM's Messages adapter opens a new
`tool_use` block for every chunk that names a tool, so the client got one call per argument piece.
Here the chunks reach LiteLLM with a repeated name or id dropped, decided by the same `merged_name`
rule; a server that names a call once is passed through unchanged. Used through an OpenAI SDK client
whose httpx transport rewrites the `data:` lines of event streams (LiteLLM takes such a `client=`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .codec.chat import merged_name, plain_chat
from .forward import REDIRECTS, Redirected

__all__ = ["SSETidy", "client"]


class SSETidy:
    """Rewrites Chat Completions SSE bytes: a tool call's repeated name or id is dropped."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.ids: dict[int, Any] = {}
        self.held: list[bytes] = []  # the bytes of a line not yet whole, as they came (joined once whole)

    def _chunk(self, chunk: Any) -> bool:
        """Tidy one parsed chunk in place; whether anything was dropped."""
        changed = False
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            for call in (delta.get("tool_calls") or ()) if isinstance(delta, dict) else ():
                if not isinstance(call, dict) or type(call.get("index", 0)) is not int:
                    continue
                i, fn = call.get("index", 0), call.get("function")
                if call.get("id") is not None and self.ids.get(i) == call["id"]:
                    del call["id"]
                    call.pop("type", None)
                    changed = True
                elif call.get("id") is not None:
                    self.ids[i] = call["id"]
                name = fn.get("name") if isinstance(fn, Mapping) else None
                if isinstance(name, str) and name and i in self.names and isinstance(fn, dict):
                    if merged_name(self.names[i], name) == self.names[i]:
                        del fn["name"]
                        changed = True
                    else:
                        self.names[i] = merged_name(self.names[i], name)
                elif isinstance(name, str) and name:
                    self.names[i] = name
        return changed

    def feed(self, data: bytes) -> bytes:
        """The bytes to pass on for `data` (whole lines only, ended by \n, \r\n or \r; the rest waits for
        the next bytes)."""
        if b"\n" not in data and b"\r" not in data:
            self.held.append(data)
            return b""
        buf = b"".join([*self.held, data])
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
        lines, rest = buf[:cut], buf[cut:]
        self.held = [rest] if rest else []
        out = []
        for line in lines.splitlines(keepends=True):
            body = line.strip()
            if body.startswith(b"data:") and body[5:].strip().startswith(b"{"):
                try:
                    chunk = json.loads(body[5:])
                except ValueError:
                    chunk = None
                if chunk is not None and self._chunk(chunk):
                    line = b"data: " + json.dumps(chunk).encode() + b"\n"
            out.append(line)
        return b"".join(out)

    def end(self) -> bytes:
        rest, self.held = b"".join(self.held), []
        return rest


def client(base_url: str | None, api_key: str, connect: float, idle: float) -> Any:
    """An `openai.AsyncOpenAI` (for LiteLLM's `client=`) whose event streams come tidied by `SSETidy`."""
    import importlib

    import openai

    # The HTTP library this openai SDK is built on (httpx, or httpx2 in the newest releases).
    httpx: Any = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])

    class Transport(httpx.AsyncBaseTransport):  # type: ignore[misc]
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: Any) -> Any:
            if request.method == "POST" and request.url.path.endswith("/chat/completions"):
                request = _plain(request)
            response = await self.inner.handle_async_request(request)
            if response.status_code in REDIRECTS and "location" in response.headers:  # followed by none
                await response.aclose()
                raise Redirected(str(request.url), response.status_code, response.headers["location"])
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                if response.status_code == 200 and request.url.path.endswith("/chat/completions"):
                    return await _whole(response)
                return response
            raw = response.stream
            assert isinstance(raw, httpx.AsyncByteStream)

            async def tidied() -> AsyncIterator[bytes]:
                tidy = SSETidy()
                try:
                    async for data in raw:
                        yield tidy.feed(data)
                    yield tidy.end()
                finally:
                    await raw.aclose()

            return httpx.Response(
                response.status_code, headers=response.headers, stream=_Stream(tidied()), extensions=response.extensions
            )

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def _whole(response: Any) -> Any:
        """A whole 200 answer as it came, if it holds a reply (`choices`); else a 502 saying what came.
        LiteLLM read a page or JSON of no reply as a reply with nothing in it, and a stream asked for
        became an empty message, recorded as a turn."""
        data = await response.aread()
        try:
            found = json.loads(data)
        except ValueError:
            found = None
        if isinstance(found, dict) and isinstance(found.get("choices"), list):
            return httpx.Response(200, headers=response.headers, content=data, extensions=response.extensions)
        what = response.headers.get("content-type", "no content type")
        said = data[:120].decode("utf-8", "replace")
        error = {"message": f"the upstream answered 200 with no reply in it ({what}): {said!r}", "type": "api_error"}
        return httpx.Response(502, json={"error": error}, extensions=response.extensions)

    def _plain(request: Any) -> Any:
        """The request LiteLLM built, its messages as every server takes them (`codec.chat.plain_chat`)."""
        try:
            body = json.loads(request.content)
        except ValueError:
            return request
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return request
        plain = plain_chat(body["messages"])
        if all(a is b for a, b in zip(plain, body["messages"], strict=True)):
            return request
        content = json.dumps({**body, "messages": plain}).encode()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
        return httpx.Request(
            request.method, request.url, headers=headers, content=content, extensions=request.extensions
        )

    class _Stream(httpx.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, it: AsyncIterator[bytes]) -> None:
            self.it = it

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for data in self.it:
                yield data

        async def aclose(self) -> None:
            await self.it.aclose()  # type: ignore[attr-defined]

    http = httpx.AsyncClient(transport=Transport(), timeout=httpx.Timeout(idle, connect=connect))
    # No retries of the SDK's own: the gateway moves to the next role itself, as on every other path
    # (with the SDK's two, a Messages call hit a failing upstream three times where a Chat call hit it once)
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, http_client=http, max_retries=0)
