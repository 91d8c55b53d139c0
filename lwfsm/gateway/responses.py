"""The Responses API: a call (with the chain behind `previous_response_id`) served as one Chat
Completions call."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..store.base import Row
from .codec import CODECS
from .codec.common import SSEReader
from .codec.responses import (
    ResponsesStream,
    responses_chat_request,
    responses_messages,
    responses_object,
    responses_tools,
)
from .intake import Call
from .replies import AsciiJSON, error_body, log_error, recorded_trailer, single_chunk
from .shape import Reject, check_responses

__all__ = ["Responses"]

logger = logging.getLogger("lwfsm.gateway")

if TYPE_CHECKING:
    from .app import Gateway


class Responses:
    """The Responses endpoint and its chains (kept in the gateway's chain store)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._left_out: set[tuple[str, ...]] = set()  # tools not offered to the model, already logged

    def _tools(self, given: Any) -> list[dict[str, Any]]:
        """The request's function tools, as Chat Completions tools. The others (hosted ones such as
        web_search, a namespace of tools, a custom tool of free text) have no Chat Completions form: not
        offered to the model, and said in the log the first time a client sends them."""
        tools = responses_tools(given)
        kept = {t["function"]["name"] for t in tools}
        left = sorted(
            f"{t.get('name') or t.get('type')} ({t.get('type')})"
            for t in (given if isinstance(given, list) else ())
            if isinstance(t, Mapping) and not (t.get("type") == "function" and t.get("name") in kept)
        )
        if left and tuple(left) not in self._left_out:
            self._left_out.add(tuple(left))
            logger.warning(
                "Responses tools not offered to the model: %s (a Chat Completions call has no form of them; "
                "logged once)",
                ", ".join(left),
            )
        return tools

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/responses", self.responses, methods=["POST"]),
        ]

    # -- the Responses API: translated to one Chat Completions call --

    async def responses(self, request: Request) -> Response:
        started, path = time.perf_counter(), request.scope["path"]  # not request.url: ~40 us to build
        with self.gateway.tracing.call(request.headers, request.method, path) as traced:
            try:
                response = await self._responses(request)
            except RecursionError:  # input items nested deeper than reading them allows
                response = JSONResponse(error_body("openai", 400, "request content is nested too deeply to read"), 400)
            except asyncio.CancelledError:
                if self.gateway.cut is None:
                    raise
                response = self.gateway.stopped("openai")
            self.gateway.metrics.latency.labels(path).observe(time.perf_counter() - started)
            log_error(request, response)
            return traced.send(response)

    def _chain_key(self, client_key: str | None, rid: str) -> str:
        # Scoped by the client's key, like conversations: one client cannot continue another's chain.
        return hashlib.sha256((client_key or "").encode()).hexdigest()[:16] + ":" + rid

    def _chain(self, client_key: str | None, rid: str) -> list[dict[str, Any]]:
        """The messages behind response `rid`, oldest first. Each response is stored once, with what its
        call added (input and reply) and the id it continued: a chain of N calls is N rows, not N² messages.
        Runs in a store thread (one row per link)."""
        parts: list[list[dict[str, Any]]] = []
        at: str | None = rid
        while at is not None:
            found = self.gateway.chains.read(self._chain_key(client_key, at))
            if found is None:
                gone = "is unknown to this gateway" if at == rid else f"continues {at!r}, which is no longer kept"
                raise Reject(
                    404,
                    f"previous_response_id {rid!r} {gone} (responses sent with store=false are not kept, and kept "
                    "ones expire with the store's TTL; send the whole input instead)",
                    "not_found_error",
                )
            link = json.loads(found.data)
            parts.append(link["messages"])
            at = link.get("prev")
        return [m for part in reversed(parts) for m in part]

    async def _responses(self, request: Request) -> Response:
        """`POST /v1/responses`. The conversation (the chain behind `previous_response_id` plus this
        input) becomes one Chat Completions request served like any other call: judged, routed to the
        role's model (forwarded, or through LiteLLM), settled. A streamed Responses call asks for a
        streamed reply, whose chunks are sent on as Responses events as they come (`_responses_stream`).
        Chains live in the gateway's store."""
        try:
            client_key, body, previous = await self._read(request)
        except Reject as exc:
            return JSONResponse(error_body("openai", exc.status, exc.message, exc.kind), exc.status, exc.headers)
        prev = body.get("previous_response_id")
        added = responses_messages(body["input"])
        call = self._chat(request.headers, client_key, body, previous + added)
        result = await self.gateway.turns.run(call)
        if result.status_code != 200:
            return result  # an error before the first byte: the status and the error body, as they are
        lw = {k: v for k, v in result.headers.items() if k.startswith("x-lwfsm")}
        rid = "resp_" + os.urandom(12).hex()
        chain = self._chain_key(client_key, rid) if body.get("store", True) is not False else None
        answer = call.answer or {}  # a whole answer (streams have none): as the upstream sent it, parsed once
        if body.get("stream"):
            # An upstream that ignored `stream: true` answered one body (its turn already recorded): the
            # client asked for events, so that body is sent on as the events of a one-chunk stream.
            chunks = (
                result.body_iterator
                if isinstance(result, StreamingResponse)
                else single_chunk(CODECS["openai"].events(answer))
            )
            shaper = ResponsesStream(rid, body, int(time.time()))
            events = self._responses_stream(call, chunks, shaper, chain, prev, added)
            return StreamingResponse(events, headers=lw, media_type="text/event-stream")
        read = CODECS["openai"].read_answer(answer)  # the Chat call's answer
        reply, usage = read.message, read.usage
        if reply is None:  # pragma: no cover - run answers 502 before this
            return JSONResponse(error_body("openai", 502, "the upstream's response has no message"), 502, headers=lw)
        out = responses_object(rid, body, reply, usage, int(time.time()))
        if chain is not None:
            link = json.dumps({"prev": prev, "messages": [*added, reply]})
            await self.gateway._io(self.gateway.chains.write, chain, 0, Row(link, 1))
        return AsciiJSON(out, headers=lw)  # ASCII: the reply may hold a lone surrogate

    async def _read(self, request: Request) -> tuple[str | None, dict[str, Any], list[dict[str, Any]]]:
        """Intake: the client's key, the checked body, and the messages of the chain it continues."""
        client_key = self.gateway.intake.authorise(request)
        raw, body, _ = await self.gateway.intake.read_json(request)  # its messages come from a chain too
        check_responses(body)
        previous: list[dict[str, Any]] = []
        prev = body.get("previous_response_id")
        if prev is not None:
            previous = await self.gateway._io(self._chain, client_key, prev)
        return client_key, body, previous

    def _chat(
        self, headers: Mapping[str, str], client_key: str | None, body: dict[str, Any], messages: list[dict[str, Any]]
    ) -> Call:
        """The Chat Completions call a Responses request is served as (its ids still identify the conversation)."""
        instructions = body.get("instructions")
        full = ([{"role": "system", "content": str(instructions)}] if instructions else []) + messages
        tools = self._tools(body.get("tools"))
        chat = responses_chat_request(body, full, tools)
        system = str(instructions or "") or "\n".join(
            str(m["content"]) for m in messages if m["role"] in ("system", "developer")
        )
        return self.gateway.intake.call(
            "openai", headers, chat, json.dumps(chat).encode(), full, tools, system, client_key, body
        )

    async def _responses_stream(
        self,
        call: Call,
        chat: AsyncIterable[Any],
        out: ResponsesStream,
        chain: str | None,
        prev: str | None,
        added: list[dict[str, Any]],
    ) -> AsyncIterator[bytes]:
        """The Chat Completions stream `_run` serves (`_relay` or `_litellm_stream`, which settle the
        turn before they end; or a whole reply, already settled, as one chunk) as Responses events. The
        chain is stored, and `response.completed` sent, only once that stream has ended whole: a cut
        stream records nothing and the client sees no end."""
        reader = SSEReader()
        yield out.start()
        try:
            async for chunk in chat:
                data = b"".join(out.add(e) for e in reader.feed(chunk if isinstance(chunk, bytes) else chunk.encode()))
                if data:
                    yield data
        finally:
            aclose = getattr(chat, "aclose", None)
            if aclose is not None:
                await aclose()  # the upstream connection goes back to the pool even if the client left
        if out.failed or not out.acc.done:  # an error (the store, the upstream) ends it: no chain, no completed
            return
        if chain is not None:
            link = {"prev": prev, "messages": [*added, out.acc.reply()]}
            await self.gateway._io(self.gateway.chains.write, chain, 0, Row(json.dumps(link), 1))
        yield out.finish() + (recorded_trailer(call.turn) if call.turn is not None else b"")
