"""The dashboard page and the mermaid script it draws the diagram with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = ["Dashboard", "MERMAID_HINT", "mermaid_js_path"]

if TYPE_CHECKING:
    from .app import Gateway


class Dashboard:
    """The dashboard, mounted at /lwfsm (it reads the control API)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/", self.dashboard, methods=["GET"]),
            Route("/mermaid.min.js", self.mermaid_js, methods=["GET"]),
        ]

    # -- the dashboard --

    async def dashboard(self, request: Request) -> Response:
        """The dashboard page. It holds no data, so it needs no key (a reload works): its script reads
        the control API with the key it was opened with (`/lwfsm/?key=...`, then kept in the tab's
        sessionStorage, not in the address)."""
        if not request.url.path.endswith("/"):
            return RedirectResponse(request.url.replace(path=request.url.path + "/"), 307)
        page = resources.files(__package__).joinpath("dashboard.html").read_bytes()
        return Response(page, headers=_PAGE)

    async def mermaid_js(self, request: Request) -> Response:
        """mermaid 11 for the dashboard's diagram, served from a local install (3 MB: not vendored).
        Without it the page shows the diagram's text."""
        path = mermaid_js_path(self.gateway.env)
        if path is None:
            return Response(f"mermaid.min.js not found: {MERMAID_HINT}\n", 404)
        return FileResponse(path, media_type="text/javascript", headers={"cache-control": "max-age=3600"})


# No page may frame the dashboard: a page framing it could have a person click its buttons (fire an event)
# through a decoy, and a gateway without a key takes the framed page's calls as its own.
_PAGE = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-security-policy": "frame-ancestors 'none'",
    "x-frame-options": "DENY",
}

MERMAID_HINT = "npm install --prefix ~/.cache/lwfsm-mermaid mermaid@11, or set LWFSM_MERMAID_JS to a mermaid.min.js"


def mermaid_js_path(env: Mapping[str, str]) -> str | None:
    """Where the dashboard's mermaid.min.js is: $LWFSM_MERMAID_JS, else the npm cache lwfsm's tests use."""
    home = os.path.expanduser("~/.cache/lwfsm-mermaid/node_modules/mermaid/dist/mermaid.min.js")
    path = env.get("LWFSM_MERMAID_JS") or home
    return path if os.path.isfile(path) else None
