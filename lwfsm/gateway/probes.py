"""Probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import StoreError
from .metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    pass


PROBE_KEY = "lwfsm-readyz-probe"  # read, never written, by GET /readyz


class Probes:
    """The probes (a mixin of `Gateway`)."""

    async def metrics_page(self, request: Request) -> Response:
        if (denied := self._control(request)) is not None:
            return denied
        return Response(await self._io(self.metrics.text), headers={"content-type": CONTENT_TYPE_LATEST})

    # -- probes (no key, no upstream: a load balancer's and an orchestrator's view) --

    async def healthz(self, request: Request) -> Response:
        """Alive: the process serves requests."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready: the spec is loaded and the store answers a read within --store-timeout (through the same
        worker threads as the turns' store calls, so a stopped or locked store shows here as it would there)."""
        if self.draining:
            return JSONResponse({"status": "draining"}, 503)
        try:
            await self._io(self.store.get, PROBE_KEY)
        except StoreError as exc:  # no answer in time, refused, unreachable: named, password redacted
            return JSONResponse({"status": "unavailable", "store": self.store.url, "reason": str(exc)}, 503)
        return JSONResponse({"status": "ready", "spec": self.spec.name, "store": self.store.url})
