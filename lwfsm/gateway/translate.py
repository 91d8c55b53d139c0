"""Through LiteLLM: a call to an upstream of the other protocol (or --mock), translated both ways."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import causes
from ..turn import params
from ..turn.bindings import RoleBinding
from .codec import CODECS
from .codec.common import SSEReader
from .forward import Redirected, key_hint, origin, redirected, translated_always
from .intake import Call, call_names
from .replies import AsciiJSON, error_body, recorded_trailer, usage_header

__all__ = ["Translate", "why_not_imported"]

if TYPE_CHECKING:
    from .app import Gateway, _Loaded

logger = logging.getLogger("lwfsm.gateway")


class Translate:
    """The LiteLLM path: LiteLLM imported on first use, a call translated to the role's upstream and its
    answer back to the client's protocol, recorded as it ends."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._adapter: asyncio.Future[Any] | None = None  # lwfsm.provider.adapter (LiteLLM), once imported
        self._clients: dict[str, Any] = {}  # role -> LiteLLM's OpenAI client for Anthropic clients (`_tidy_client`)
        self._guarded: Any = None  # LiteLLM's HTTP client for Anthropic upstreams, following no redirect
        self._supported: dict[str, frozenset[str] | None] = {}  # model -> the Chat parameters LiteLLM takes for it
        self.preloaded = False  # imported at start-up: every call needs it (`preload`)

    async def close(self) -> None:
        for client in [*self._clients.values(), *([self._guarded] if self._guarded is not None else [])]:
            await client.close()

    async def adapter(self) -> Any:
        """lwfsm's LiteLLM adapter module, imported on first use or by `preload` (ImportError: LiteLLM
        cannot be imported here)."""
        return await asyncio.shield(self._load())

    def _load(self) -> asyncio.Future[Any]:
        """The adapter's import, begun once, after `startup` has set LiteLLM offline. It takes seconds (6 s
        of CPU here): in a thread of its own, which a gateway stopped meanwhile does not wait for."""
        if self._adapter is None:
            loop, future = asyncio.get_running_loop(), asyncio.get_running_loop().create_future()

            def done(module: Any, exc: BaseException | None) -> None:
                if future.done():
                    return
                if exc is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(module)

            def run() -> None:
                try:
                    module, exc = _import_adapter(), None
                except BaseException as error:  # handed to whoever awaits it, as raised
                    module, exc = None, error
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                    loop.call_soon_threadsafe(done, module, exc)

            threading.Thread(target=run, name="lwfsm-litellm", daemon=True).start()
            self._adapter = future
        return self._adapter

    def preload(self) -> None:
        """Begin importing LiteLLM now when calls will need it whichever protocol a client speaks
        (`translated_always`): else the first such call waits those seconds. Logged once it is done."""
        if not translated_always(self.gateway.roles, self.gateway.mock):
            return
        self.preloaded, started = True, time.perf_counter()

        def loaded(future: asyncio.Future[Any]) -> None:
            if future.cancelled():
                return
            if (exc := future.exception()) is not None:  # (read here, so it is never left unretrieved)
                logger.error(
                    "LiteLLM could not be imported; every translated call will fail: %s", why_not_imported(exc)
                )
            else:
                logger.info("LiteLLM loaded for translated calls in %.1f s", time.perf_counter() - started)

        self._load().add_done_callback(loaded)

    def unready(self) -> str | None:
        """For /readyz: why calls that all need LiteLLM (`preload`) cannot be served (its import failed);
        else None. (Not while it loads: calls then wait for it, and a worker replaced in a rollout would
        take the whole gateway out of readiness.)"""
        if not self.preloaded or self._adapter is None or not self._adapter.done() or self._adapter.cancelled():
            return None
        exc = self._adapter.exception()
        return None if exc is None else f"LiteLLM could not be imported: {why_not_imported(exc)}"

    async def unavailable(self) -> str | None:
        """Why LiteLLM cannot translate calls here (its import failed, however it failed), else None."""
        try:
            await self.adapter()
        except Exception as exc:  # a missing dependency, a version LiteLLM refuses: each call says so, no stack
            return why_not_imported(exc)
        return None

    async def supported(self, model: str) -> frozenset[str] | None:
        """The Chat Completions parameters LiteLLM sends on to `model` (None: it cannot say)."""
        if model not in self._supported:
            self._supported[model] = _supported_params((await self.adapter()).litellm, model)
        return self._supported[model]

    # -- through LiteLLM, when the upstream speaks the other protocol (or --mock) --

    async def send(
        self, call: Call, loaded: _Loaded, role: str, binding: RoleBinding, lw: dict[str, str], final: bool
    ) -> Response | None:
        adapter = await self.adapter()
        litellm = adapter.litellm
        # Only the client's protocol parameters (checked at intake) reach LiteLLM, less those it would
        # act on itself; where the call goes and its key come from the binding, applied last.
        kwargs: dict[str, Any] = {
            k: v for k, v in call.body.items() if k != "model" and k not in params.NOT_FOR_LITELLM
        }
        kwargs.update(binding.call_kwargs(self.gateway.env))
        if isinstance(kwargs.get("tools"), list):  # shared with other calls (`intake._Tools`): LiteLLM may change them
            kwargs["tools"] = _copied(kwargs["tools"])
        kwargs["num_retries"] = 0  # the gateway moves to the next role itself: LiteLLM retries nothing
        # LiteLLM's own timeout (600 s) would replace the gateway's. Its clients bound each read, not the
        # first byte apart from the gaps after it: a whole answer waits for its first byte; a stream is
        # bounded by the larger of the two.
        g = self.gateway
        kwargs["timeout"] = max(g.first_byte_timeout, g.idle_timeout) if call.stream else g.first_byte_timeout
        if self.gateway.mock:
            kwargs["mock_response"] = f"[{binding.model} as the {role}] mock reply"
        if loaded.plan.note:
            kwargs["messages"] = CODECS[call.protocol].note(kwargs.get("messages") or [], loaded.plan.note)
        # A self-hosted OpenAI-compatible server (an api_base) with its key or keyless: LiteLLM's calls to it
        # through a client that tidies them (`sse_fix`). OpenAI's own API needs none (nor loses proxy settings).
        if (
            call.protocol == "anthropic"
            and binding.model.startswith("openai/")
            and binding.api_base
            and "api_key" in kwargs
        ):
            kwargs["client"] = self._tidy_client(role, kwargs)
        elif call.protocol == "openai" and binding.model.startswith("anthropic/") and not self.gateway.mock:
            kwargs["client"] = self._no_redirects()
        try:
            if call.protocol == "openai":
                result = await litellm.acompletion(**kwargs)
            else:
                if self.gateway.mock:
                    kwargs.pop("stream", None)  # LiteLLM's mock answers Messages whole: streamed below
                result = await litellm.anthropic_messages(**kwargs)
        except Exception as exc:
            kind, down = adapter.classify(exc), _unreachable(exc)
            self.gateway._failed(
                role, "unreachable" if down else getattr(exc, "status_code", None) or type(exc).__name__
            )
            if kind == "retry" and not final:
                what = (
                    f"upstream unreachable ({type(down).__name__})" if down else f"model failed ({type(exc).__name__})"
                )
                logger.warning("session %s: %s %s; trying the next role", call.ident.key, role, what)
                return None
            status = getattr(exc, "status_code", None)
            status = status if isinstance(status, int) and 400 <= status < 600 else 502
            out = dict(lw)
            wait = adapter.retry_after(exc)
            if wait is not None:
                out["retry-after"] = str(int(wait))
            msg = self.gateway.redact(f"{role} model {binding.model}: {type(exc).__name__}: {exc}".encode()).decode()
            where = origin(binding.api_base) if binding.api_base else binding.model
            if status in (401, 403):  # the upstream refused the gateway's key, not the client's (as the fast path)
                status, msg = 502, f"{role} upstream {where} refused the gateway's key: {key_hint(role, binding)}"
            moved = _redirect(exc)
            if moved is not None:  # said as the fast path says it
                status, msg = 502, redirected(role, moved.url, moved.status, moved.location)
            elif down:  # said as the fast path says it (LiteLLM: a 500, or its own class)
                status, msg = 502, f"{role} upstream {where} unreachable: {type(down).__name__}"
            elif _timed_out(exc):  # the upstream's silence (LiteLLM calls it a 408, as it does an upstream's own)
                bound = "--first-byte-timeout" + (" or --idle-timeout, the larger" if call.stream else "")
                status, msg = 502, f"{role} upstream {where}: no answer within {kwargs['timeout']:g} s ({bound})"
            kind = "api_error" if status >= 500 else None  # an upstream's 4xx relayed: the protocol's name for it
            return JSONResponse(error_body(call.protocol, status, msg, kind), status, headers=out)
        if call.protocol == "openai" and not call.stream:
            data = call.answer = result.model_dump(mode="json", exclude_none=True)
            answer = CODECS[call.protocol].read_answer(data)
            reply, usage = answer.message, answer.usage
            if (turn := await self.gateway._commit(call, loaded, role, reply, usage, data.get("model"))) is not None:
                lw["x-lwfsm-turn"] = turn
            lw.update(usage_header(call))
            return AsciiJSON(data, headers=lw)
        if call.protocol == "openai":
            return StreamingResponse(
                self._litellm_stream(call, loaded, role, result), headers=lw, media_type="text/event-stream"
            )
        if isinstance(result, Mapping):
            message = dict(result)
            if call.stream:
                return StreamingResponse(
                    self._replay(call, loaded, role, CODECS[call.protocol].events(message)),
                    headers=lw,
                    media_type="text/event-stream",
                )
            answer = CODECS[call.protocol].read_answer(message)
            reply, usage = answer.message, answer.usage
            if usage is not None and not (usage["prompt_tokens"] or usage["completion_tokens"]):
                usage = None  # no call reads no tokens: LiteLLM's zeros for an upstream that reported none
            if (turn := await self.gateway._commit(call, loaded, role, reply, usage, message.get("model"))) is not None:
                lw["x-lwfsm-turn"] = turn
            lw.update(usage_header(call))
            return AsciiJSON(message, headers=lw)
        return StreamingResponse(
            self._bytes_stream(call, loaded, role, result, adapter.anthropic_reported),
            headers=lw,
            media_type="text/event-stream",
        )

    def _no_redirects(self) -> Any:
        """LiteLLM's HTTP client for an Anthropic upstream, made once, that follows no redirect: LiteLLM's
        own follow them, and a 307 from the role's upstream took the request, x-api-key and all, to the
        host it named (httpx drops Authorization across origins, not x-api-key)."""
        if self._guarded is None:
            from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

            async def refuse(response: Any) -> None:  # an httpx response hook: it runs before a redirect is followed
                if response.has_redirect_location:
                    location = response.headers.get("location", "")
                    raise Redirected(str(response.request.url), response.status_code, location)

            self._guarded = AsyncHTTPHandler(event_hooks={"response": [refuse]})
            # Not followed even without the hook: newer LiteLLM makes its client again with this setting.
            self._guarded.follow_redirects = self._guarded.client.follow_redirects = False
        return self._guarded

    def _tidy_client(self, role: str, kwargs: Mapping[str, Any]) -> Any:
        """The role's OpenAI SDK client for LiteLLM, its streams tidied (`sse_fix`), made once per role."""
        if role not in self._clients:
            from . import sse_fix

            base = kwargs["api_base"]
            self._clients[role] = sse_fix.client(
                base, kwargs["api_key"], self.gateway.connect_timeout, self.gateway.idle_timeout
            )
        return self._clients[role]

    async def _litellm_stream(self, call: Call, loaded: _Loaded, role: str, stream: Any) -> AsyncIterator[bytes]:
        acc = CODECS[call.protocol].stream(call_names(call))
        try:
            async for chunk in stream:
                data = chunk.model_dump(mode="json", exclude_none=True)
                acc.add(data)
                yield b"data: " + json.dumps(data).encode() + b"\n\n"
        except Exception as exc:  # LiteLLM's, for an upstream that broke off (its text may quote the request)
            said = f"the {role} upstream broke off mid-stream ({type(exc).__name__})"
            yield self.gateway.turns.broken(call, role, "broke_off", said)
            return
        acc.done = True
        # What the provider counted, whether or not the client asked for a usage chunk; never LiteLLM's
        # estimate (None: unknown).
        acc.usage = (await self.adapter()).provider_usage(stream)
        # stored before the client sees the end
        if (failed := await self.gateway.turns.settle_stream(call, loaded, role, acc)) is not None:
            yield failed
            return
        yield b"data: [DONE]\n\n" + (recorded_trailer(call.turn) if call.turn is not None else b"")

    async def _replay(self, call: Call, loaded: _Loaded, role: str, data: bytes) -> AsyncIterator[bytes]:
        acc = CODECS[call.protocol].stream()
        for event in SSEReader().feed(data):
            acc.add(event)
        # stored before the client sees the end
        if (failed := await self.gateway.turns.settle_stream(call, loaded, role, acc)) is not None:
            yield failed
            return
        yield data + (recorded_trailer(call.turn) if call.turn is not None else b"")

    async def _bytes_stream(
        self, call: Call, loaded: _Loaded, role: str, stream: Any, reported: Callable[[Any], bool]
    ) -> AsyncIterator[bytes]:
        """An Anthropic stream LiteLLM translated from another protocol's upstream, recorded as it ends."""
        reader, acc = SSEReader(), CODECS[call.protocol].stream()
        settled = False
        async for chunk in stream:
            data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
            for event in reader.feed(data):
                acc.add(event)
            if acc.done and not settled and not reported(stream):
                acc.usage = {}  # LiteLLM's estimate of tokens the upstream did not report: unknown, not measured
            if acc.done and not settled:
                settled = True
                # stored before the client sees the end
                if (failed := await self.gateway.turns.settle_stream(call, loaded, role, acc)) is not None:
                    yield failed
                    return
            yield data
        if not settled and (failed := await self.gateway.turns.settle_stream(call, loaded, role, acc)) is not None:
            yield failed
            return
        if call.turn is not None:
            yield recorded_trailer(call.turn, reader.partial)


def _redirect(exc: BaseException) -> Redirected | None:
    """The redirect LiteLLM's error comes from, refused by the client the gateway gave it
    (`_no_redirects`, `sse_fix`)."""
    return next((c for c in causes(exc) if isinstance(c, Redirected)), None)


def why_not_imported(exc: BaseException) -> str:
    """An import's failure in words: an ImportError says what it is, another is named by its type."""
    return str(exc) if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"


def _import_adapter() -> Any:
    module = importlib.import_module("lwfsm.provider.adapter")
    # Newer LiteLLM sends a Messages call for an openai/... model to the upstream's /v1/responses, which
    # llama.cpp, older vLLM and most OpenAI-compatible servers lack; every one has chat completions. (An
    # upstream with only the Responses API is bound as openai/responses/<model>.) Older LiteLLM has no
    # such switch and always used chat completions.
    module.litellm.use_chat_completions_url_for_anthropic_messages = True
    return module


def _supported_params(litellm: Any, model: str) -> frozenset[str] | None:
    """The Chat Completions parameters LiteLLM sends on to `model` (None: it cannot say, nothing is dropped)."""
    try:
        name, provider, _, _ = litellm.get_llm_provider(model)
        found = litellm.get_supported_openai_params(model=name, custom_llm_provider=provider)
    except Exception:  # an unknown provider: LiteLLM itself will say what is wrong with the call
        return None
    return frozenset(found) if found else None


# What a connection that could not be made is called by the clients LiteLLM calls through.
_NO_CONNECTION = {"APIConnectionError", "ConnectError", "ConnectTimeout", "ClientConnectorError"}


def _unreachable(exc: BaseException) -> BaseException | None:
    """The connection's error in the cause chain of LiteLLM's error for an upstream it could not
    connect to (the innermost found: LiteLLM's own class says less), else None."""
    found = [c for c in causes(exc) if isinstance(c, ConnectionError) or type(c).__name__ in _NO_CONNECTION]
    return found[-1] if found else None


_TIMEOUTS = {"APITimeoutError", "ReadTimeout", "ConnectTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException"}


def _timed_out(exc: BaseException) -> bool:
    """Whether LiteLLM's error is the bound it was given running out (an upstream's own 408 is not)."""
    return any(isinstance(c, TimeoutError) or type(c).__name__ in _TIMEOUTS for c in causes(exc))


def _copied(value: Any) -> Any:
    """A deep copy, written out and read back by orjson: Claude Code's 65 KB of tools in 0.07 ms, where
    copy.deepcopy took 0.4 ms on every translated call. What orjson cannot write is deep-copied."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # an integer beyond 64 bits, a lone surrogate, nesting deeper than 255
        return copy.deepcopy(value)
