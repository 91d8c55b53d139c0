"""Prometheus metrics of the gateway, in their own `CollectorRegistry` (never the global one, so two
apps in one process do not share counters). With `lwfsm serve --workers N` the counters are kept in
prometheus-client's multiprocess mode: `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
the workers start, each worker writes its counts there, and a scrape of any worker reads them all
(`MultiProcessCollector`), so /metrics sums the workers. The live-conversation gauge reads the shared
store when scraped, so it is the same number whichever worker answers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..turn import Usage
from ..turn.moves import Move

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_KINDS = ("prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


class Metrics:
    """The gateway's counters; `text()` is the /metrics page."""

    def __init__(self, live: Callable[[], int]) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.turns = Counter(
            "lwfsm_turns",
            "Judged turns by the role that served them and their outcome (event)",
            ["role", "outcome"],
            registry=r,
        )
        self.switches = Counter(
            "lwfsm_switches",
            "Switches (the machine moved to a state of another role) by source state, destination state and event",
            ["from_state", "to_state", "event"],
            registry=r,
        )
        # The words are lwfsm.turn.moves': a fallback is also a switch; a technical fallback is none.
        self.fallbacks = Counter(
            "lwfsm_fallbacks",
            "Fallbacks (a turn moved the machine from a cheap role's state to a strong role's) by source, dest state",
            ["from_state", "to_state"],
            registry=r,
        )
        self.technical_fallbacks = Counter(
            "lwfsm_technical_fallbacks",
            "Judged turns served by another role than their state's (technical fallbacks), by state and serving role",
            ["state", "role"],
            registry=r,
        )
        self.errors = Counter(
            "lwfsm_upstream_errors",
            "Technical errors by upstream (role, model) and status",
            ["role", "model", "status"],
            registry=r,
        )
        self.tokens = Counter("lwfsm_tokens", "Tokens by role and kind", ["role", "kind"], registry=r)
        self.cost = Counter("lwfsm_cost_dollars", "Dollars by role (LiteLLM's local price map)", ["role"], registry=r)
        self.calls = Counter("lwfsm_calls", "Upstream calls recorded, by role", ["role"], registry=r)
        self.unknown = Counter(
            "lwfsm_unknown_usage_calls",
            "Calls whose upstream reported no tokens (their tokens and cost are in no other counter), by role",
            ["role"],
            registry=r,
        )
        self.latency = Histogram(
            "lwfsm_request_seconds",
            "Time to the response head, by endpoint",
            ["endpoint"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        # prometheus-client chose its mode when it was imported, from this variable (its own): the page
        # must be read the same way the counts are kept.
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            from prometheus_client import multiprocess

            self.page = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.page, path=folder)  # type: ignore[no-untyped-call]
        else:
            self.page = r
        self.page.register(_Live(live))

    def call(self, role: str, usage: Usage, cost: float | None) -> None:
        self.calls.labels(role).inc()
        if usage.unreported:  # unknown, not zero: counted as such, nothing added to the token counters
            self.unknown.labels(role).inc(usage.unreported)
            return
        for kind in _KINDS:
            n = getattr(usage, kind)
            if n:
                self.tokens.labels(role, kind).inc(n)
        if cost:
            self.cost.labels(role).inc(cost)

    def moved(
        self, done: Move, source: str, dest: str, event: str, state: str | None = None, role: str | None = None
    ) -> None:
        """Count what a turn (or an event fired by hand) did, as `lwfsm.turn.moves.move` judged it."""
        if done.switch:
            self.switches.labels(source, dest, event).inc()
        if done.fallback:
            self.fallbacks.labels(source, dest).inc()
        if done.technical_fallback and state is not None and role is not None:
            self.technical_fallbacks.labels(state, role).inc()

    def text(self) -> bytes:
        return generate_latest(self.page)


class _Live:
    """lwfsm_live_conversations, read from the store when scraped (in every mode: no per-process value)."""

    def __init__(self, live: Callable[[], int]) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("lwfsm_live_conversations", "Conversations in the store", value=float(self.live()))
