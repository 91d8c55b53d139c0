"""Probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import StoreError
from .metrics import CONTENT_TYPE_LATEST

__all__ = ["PROBE_KEY", "Probes"]

if TYPE_CHECKING:
    from .app import Gateway


logger = logging.getLogger("lwfsm.gateway")

PROBE_KEY = "lwfsm-readyz-probe"  # read, never written, by GET /readyz


class Probes:
    """The probes and /metrics."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._unready = False  # /readyz said 503 last (its reason is logged when that changes)

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/metrics", self.metrics_page, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]

    async def metrics_page(self, request: Request) -> Response:
        if (denied := self.gateway.control.check(request)) is not None:
            return denied
        return Response(
            await self.gateway._io(self.gateway.metrics.text), headers={"content-type": CONTENT_TYPE_LATEST}
        )

    # -- probes (no key, no upstream: a load balancer's and an orchestrator's view) --

    async def healthz(self, request: Request) -> Response:
        """Alive: the process serves requests."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready: the spec is loaded, LiteLLM could be imported where every call needs it, and the store
        answers a read within --store-timeout (through the same worker threads as the turns' store calls,
        so a stopped or locked store shows here as it would there)."""
        g = self.gateway
        if g.draining:
            return JSONResponse({"status": "draining"}, 503)
        # Which spec and store, and why not ready, only to whom the control API answers: a probe needs
        # no key, so anyone who reaches the port would learn them (the log says why, once a change).
        told = g.control.check(request) is None
        if (why := g.translate.unready()) is not None:  # every call would fail
            return JSONResponse({"status": "unavailable", **({"reason": why} if told else {})}, 503)
        try:
            await g._io(g.store.read, PROBE_KEY)
        except StoreError as exc:  # no answer in time, refused, unreachable: named, password redacted
            if not self._unready:  # (once per change: a reason may be worded anew at every probe)
                logger.warning("/readyz: not ready: %s", exc)
            self._unready = True
            return JSONResponse(
                {"status": "unavailable", **({"store": g.store.url, "reason": str(exc)} if told else {})}, 503
            )
        if self._unready:
            logger.warning("/readyz: ready again: the store %s answers", g.store.url)
        self._unready = False
        return JSONResponse({"status": "ready", **({"spec": g.spec.name, "store": g.store.url} if told else {})})
