"""Probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import StoreError
from .metrics import CONTENT_TYPE_LATEST

__all__ = ["PROBE_KEY", "Probes"]

if TYPE_CHECKING:
    from .app import Gateway


PROBE_KEY = "lwfsm-readyz-probe"  # read, never written, by GET /readyz


class Probes:
    """The probes and /metrics."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

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
        """Ready: the spec is loaded and the store answers a read within --store-timeout (through the same
        worker threads as the turns' store calls, so a stopped or locked store shows here as it would there)."""
        if self.gateway.draining:
            return JSONResponse({"status": "draining"}, 503)
        try:
            await self.gateway._io(self.gateway.store.read, PROBE_KEY)
        except StoreError as exc:  # no answer in time, refused, unreachable: named, password redacted
            return JSONResponse({"status": "unavailable", "store": self.gateway.store.url, "reason": str(exc)}, 503)
        return JSONResponse({"status": "ready", "spec": self.gateway.spec.name, "store": self.gateway.store.url})
