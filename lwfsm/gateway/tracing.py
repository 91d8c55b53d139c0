"""OpenTelemetry traces of the gateway (the `otel` extra: opentelemetry-sdk and the OTLP/HTTP exporter).

Off unless OTEL_TRACES_EXPORTER names an exporter (`console`, `otlp`, or both, comma-separated). Its
value is read once when the app is built (`Tracing.from_env`: a mistake, or an exporter whose package is
missing, fails the start with a message naming the fix), and the SDK is set up in the app's lifespan
(`start`). Everything else (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_*,
OTEL_TRACES_SAMPLER, OTEL_BSP_*) the SDK reads itself from the process environment.

Spans, in one trace per client call (a client's `traceparent` header makes it a child of the client's):

    chat {model the client named}     SERVER  the call: from its request to its answer's last byte (a
    │                                         stream ends after the turn is committed)
    └─ chat {upstream model}          CLIENT  one per upstream attempt: the role chosen, then the spec's
                                              technical fallback (`lwfsm.attempt` 0, 1, ...)

Attributes: the GenAI semantic conventions (`gen_ai.*`; a usage count the upstream did not report is
left out, never 0) and lwfsm's (`lwfsm.session`, `lwfsm.state`, `lwfsm.role`, `lwfsm.verdict`,
`lwfsm.verdict.kind`, `lwfsm.transition.*`). While a call is traced, the `lwfsm.gateway` logger's
records carry `trace_id` and `span_id` (hex), which `lwfsm serve` appends to its log lines.

Off, nothing of OpenTelemetry is imported and every hook returns at its first line. The hooks find the
call they belong to through a context variable, so the gateway passes no tracing state around.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

from ..errors import ConfigError
from ..turn import Plan

__all__ = ["Tracing"]

logger = logging.getLogger("lwfsm.gateway")

HINT = 'pip install "lwfsm[otel]"'
_PROTOCOLS = {  # OTLP protocol -> the module of its span exporter
    "http/protobuf": ("opentelemetry.exporter.otlp.proto.http.trace_exporter", HINT),
    "grpc": (
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "pip install opentelemetry-exporter-otlp-proto-grpc",
    ),
}
# LiteLLM's provider prefixes whose GenAI-convention name differs (others, openai and anthropic among
# them, are the same word).
_PROVIDERS = {
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}
R = TypeVar("R")
_CURRENT: ContextVar[_Traced | None] = ContextVar("lwfsm_traced_call", default=None)


def _usage(usage: Any) -> dict[str, int]:
    """The token counts an upstream reported, as gen_ai.usage.* attributes; a count it did not report is absent."""

    def field(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)

    def count(obj: Any, *names: str) -> int | None:
        found = (field(obj, n) for n in names)
        return next((v for v in found if type(v) is int and v >= 0), None)

    if usage is None:
        return {}
    read = count(usage, "cache_read_input_tokens")  # Anthropic's name, else OpenAI's detail
    counts = {
        "gen_ai.usage.input_tokens": count(usage, "prompt_tokens", "input_tokens"),
        "gen_ai.usage.output_tokens": count(usage, "completion_tokens", "output_tokens"),
        "gen_ai.usage.cache_read.input_tokens": read
        if read is not None
        else count(field(usage, "prompt_tokens_details"), "cached_tokens"),
        "gen_ai.usage.cache_creation.input_tokens": count(usage, "cache_creation_input_tokens"),
    }
    return {k: v for k, v in counts.items() if v is not None}


class Tracing:
    """The gateway's tracer, or nothing (`on` False). Build with `from_env`; `start`/`stop` in the lifespan.
    `provider` (an SDK TracerProvider) is for embedding and tests: spans go to it, and `stop` leaves it open."""

    def __init__(self, exporters: Sequence[str] = (), *, protocol: str = "http/protobuf", provider: Any = None) -> None:
        self.exporters, self.protocol, self._given = tuple(exporters), protocol, provider
        self.on = bool(self.exporters) or provider is not None
        self._provider: Any = None
        self._tracer: Any = None
        self._filter: logging.Filter | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tracing:
        """Tracing as OTEL_TRACES_EXPORTER (and OTEL_SDK_DISABLED, OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL) ask."""
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls()
        raw = env.get("OTEL_TRACES_EXPORTER", "")
        names = [n.strip().lower() for n in raw.split(",") if n.strip()]
        if not names:
            # The SDK's own default would be otlp: installing an extra must not start sending data, so
            # tracing is asked for by name; an endpoint alone is a half-done setup, said once.
            if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
                logger.warning("an OTLP endpoint is set, OTEL_TRACES_EXPORTER not: no traces are sent (set it to otlp)")
            return cls()
        if names == ["none"]:
            return cls()
        bad = [n for n in names if n not in ("console", "otlp")]
        if bad:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER={raw!r}: {bad[0]!r} is not an exporter lwfsm serve knows "
                "(console, otlp, or both as console,otlp; none turns traces off)"
            )
        needed = [("opentelemetry.sdk.trace", HINT)]
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
        )
        if "otlp" in names:
            if protocol not in _PROTOCOLS:
                raise ConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: the Python exporters speak http/protobuf (the default) "
                    "or grpc"
                )
            needed.append(_PROTOCOLS[protocol])
        for module, hint in needed:
            if not _installed(module):
                raise ConfigError(
                    f"OTEL_TRACES_EXPORTER={raw!r} asks for traces, but {module} is not installed: {hint} "
                    "(or unset OTEL_TRACES_EXPORTER to serve without traces)"
                )
        return cls(names, protocol=protocol)

    # -- the lifespan --

    def start(self) -> None:
        if not self.on:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

        provider = self._given
        if provider is None:
            resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
            if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
                resource = resource.merge(Resource({"service.name": "lwfsm-gateway"}))
            provider = self._provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
            for name in self.exporters:
                if name == "console":  # a reading aid: each span printed as it ends, not batched
                    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
                else:
                    module = importlib.import_module(_PROTOCOLS[self.protocol][0])
                    provider.add_span_processor(BatchSpanProcessor(module.OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_*
        from .. import __version__

        self._tracer = provider.get_tracer("lwfsm.gateway", __version__)
        self._filter = _TraceIds()
        logger.addFilter(self._filter)

    def stop(self) -> None:
        """Export what is left (the SDK's shutdown flushes its processors), once the last call has ended."""
        if self._filter is not None:
            logger.removeFilter(self._filter)
            self._filter = None
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
        elif self._given is not None:
            self._given.force_flush()

    # -- the hooks (app.py) --

    def call(self, headers: Mapping[str, str], method: str, route: str) -> _Traced | _Untraced:
        """The span of one client call, as a context manager around the handler; `send(response)` hands
        it the answer (a stream's span then ends with the stream)."""
        if self._tracer is None:
            return _UNTRACED
        return _Traced(self._tracer, headers, method, route)

    def planned(self, session: str, client_model: Any, stream: bool, plan: Plan, side: str | None, retry: bool) -> None:
        """The call's conversation is loaded and its pending turn judged: what this call will do."""
        t = _CURRENT.get()
        if t is None:
            return
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.conversation.id": session,
            "gen_ai.request.stream": stream,
            "lwfsm.session": session,
            "lwfsm.state": plan.state,
            "lwfsm.role": plan.role,
        }
        if isinstance(client_model, str):
            attributes["gen_ai.request.model"] = client_model
            t.span.update_name(f"chat {client_model}")
        if plan.verdict.event is not None:  # the previous turn's event, judged from this call's messages
            attributes["lwfsm.verdict"] = plan.verdict.event
        if plan.verdict.kind is not None:
            attributes["lwfsm.verdict.kind"] = plan.verdict.kind
        if side is not None:
            attributes["lwfsm.side_call"] = side
        if retry:
            attributes["lwfsm.retry"] = True  # the same request again: not a turn
        t.span.set_attributes(attributes)

    def attempt(self, role: str, model: str, index: int, stream: bool) -> None:
        """An upstream attempt begins (the one before it, if any, has failed)."""
        t = _CURRENT.get()
        if t is None:
            return
        t.end_attempt()
        provider, _, name = model.partition("/")
        if not name:
            provider, name = "", model
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": name,
            "gen_ai.request.stream": stream,
            "lwfsm.role": role,
            "lwfsm.attempt": index,
        }
        if provider:  # LiteLLM's provider prefix, in the conventions' names where they differ
            attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = _PROVIDERS.get(provider, provider)
        if index:
            attributes["lwfsm.attempt.fallback"] = True  # a technical fallback to another role
        from opentelemetry import trace

        t.attempt = t.tracer.start_span(
            f"chat {name}", trace.set_span_in_context(t.span), kind=trace.SpanKind.CLIENT, attributes=attributes
        )
        # The call's span names who served it: the last attempt's role and provider.
        t.span.set_attributes({k: attributes[k] for k in ("gen_ai.provider.name", "gen_ai.system") if k in attributes})
        t.span.set_attribute("lwfsm.role", role)

    def failed(self, error: int | str) -> None:
        """The attempt failed technically: an upstream's status, `unreachable`, or an exception's name."""
        t = _CURRENT.get()
        if t is None or t.attempt is None:
            return
        from opentelemetry.trace import Status, StatusCode

        t.attempt.set_attribute("error.type", str(error))
        t.attempt.set_status(Status(StatusCode.ERROR, f"upstream: {error}"))

    def answered(self, model: Any, usage: Any) -> None:
        """The attempt's answer came whole: the model that answered and the tokens it reported."""
        t = _CURRENT.get()
        if t is None:
            return
        attributes: dict[str, Any] = dict(_usage(usage))
        if isinstance(model, str) and model:
            attributes["gen_ai.response.model"] = model
        for span in (t.attempt, t.span):
            if span is not None:
                span.set_attributes(attributes)

    def committed(self, turn: str | None, judged: Any) -> None:
        """The call is stored: the turn it was recorded as, and what judging the turn before did."""
        t = _CURRENT.get()
        if t is None:
            return
        attributes: dict[str, Any] = {}
        if turn is not None:
            attributes["lwfsm.turn"] = int(turn)
        if judged is not None:
            r = judged.transition
            attributes.update(
                {
                    "lwfsm.verdict": judged.event,
                    "lwfsm.state": r.dest,
                    "lwfsm.transition.source": r.source,
                    "lwfsm.transition.dest": r.dest,
                    "lwfsm.transition.event": r.event,
                }
            )
            if judged.kind is not None:
                attributes["lwfsm.verdict.kind"] = judged.kind
            if r.guard is not None:
                attributes["lwfsm.transition.guard"] = r.guard
            if r.transition is not None:
                attributes["lwfsm.transition.index"] = r.transition
        t.span.set_attributes(attributes)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


class _Untraced:
    """The off path: a context manager that does nothing, and hands the answer back unchanged."""

    def __enter__(self) -> _Untraced:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, response: R) -> R:
        return response


_UNTRACED = _Untraced()


class _Traced:
    """One traced call: its SERVER span, its current attempt's CLIENT span."""

    def __init__(self, tracer: Any, headers: Mapping[str, str], method: str, route: str) -> None:
        from opentelemetry import propagate, trace

        self.tracer = tracer
        self.span: Any = tracer.start_span(
            "chat",
            propagate.extract(headers),  # the client's traceparent, if it sent one (OTEL_PROPAGATORS)
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        )
        self.attempt: Any = None
        self.streaming = False
        self._tokens: list[tuple[Token[_Traced | None], object]] = []

    def _enter(self) -> None:
        from opentelemetry import context, trace

        self._tokens.append((_CURRENT.set(self), context.attach(trace.set_span_in_context(self.span))))

    def _leave(self) -> None:
        from opentelemetry import context

        mine, theirs = self._tokens.pop()
        context.detach(theirs)  # type: ignore[arg-type]
        _CURRENT.reset(mine)

    def __enter__(self) -> _Traced:
        self._enter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._leave()
        if exc is not None:
            self.end(exc)
        elif not self.streaming:
            self.end()

    def send(self, response: R) -> R:
        """The handler's answer: its status on the span; a stream's body wrapped, so the span ends with it."""
        status = int(getattr(response, "status_code", 0))
        self.span.set_attribute("http.response.status_code", status)
        if status >= 400:
            from opentelemetry.trace import Status, StatusCode

            # The last attempt gave this answer, unless it failed already; the call's span is an error
            # for a 5xx only (a 4xx is the client's, as the HTTP conventions have it).
            last = self.attempt
            if last is not None and "error.type" not in getattr(last, "attributes", {}):
                last.set_attribute("error.type", str(status))
                last.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            if status >= 500:
                self.span.set_attribute("error.type", str(status))
                self.span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        iterator = getattr(response, "body_iterator", None)
        if iterator is not None:
            self.streaming = True
            response.body_iterator = self._stream(iterator)  # type: ignore[attr-defined]
        return response

    async def _stream(self, body: AsyncIterator[Any]) -> AsyncIterator[Any]:
        # Each step runs with the call's span current (logs and hooks inside the stream find it); entered
        # and left within the step, as the consumer may resume the stream from another task.
        error: BaseException | None = None
        try:
            while True:
                self._enter()
                try:
                    chunk = await body.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    self._leave()
                yield chunk
        except BaseException as exc:  # a client that went away cancels the stream: the span says so
            error = exc
            raise
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
            self.end(error)

    def end_attempt(self) -> None:
        if self.attempt is not None:
            self.attempt.end()
            self.attempt = None

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            for span in (self.attempt, self.span):
                if span is not None:
                    span.set_attribute("error.type", type(error).__qualname__)
                    span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
        self.end_attempt()
        self.span.end()


class _TraceIds(logging.Filter):
    """Puts the current call's trace and span ids (hex) on the gateway's log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True
