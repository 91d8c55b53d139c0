"""The control API: list, read, change and delete conversations; totals and costs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import LwfsmError
from ..store.rows import CHAINS
from ..turn.handoff import MAX_NOTE
from .identity import is_loopback, stored_as
from .replies import AsciiJSON
from .shape import Reject

__all__ = ["Control", "operator_note"]

if TYPE_CHECKING:
    from .app import Gateway, _Record

_UNREADABLE = (LwfsmError, ValueError, KeyError, TypeError)  # what reading a damaged row can raise


class Control:
    """The control API, mounted at /lwfsm."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/sessions", self.list_sessions, methods=["GET"]),
            Route("/sessions/{id}", self.get_session, methods=["GET"]),
            Route("/sessions/{id}", self.delete_session, methods=["DELETE"]),
            Route("/sessions/{id}/events/{event}", self.gateway.fire, methods=["POST"]),
        ]

    # -- the control API --

    def check(self, request: Request) -> Response | None:
        """The control API (and /metrics) lists, changes and deletes every client's conversations: it
        needs the control key (--control-key-env), else the gateway key; without either it answers this
        host's clients only."""
        g = self.gateway
        try:
            g.intake.authorise(request, control=True)
        except Reject as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        if g.key is None and g.control_key is None and not is_loopback(request.client.host if request.client else ""):
            message = (
                "the control API answers other hosts only when the gateway has a key (lwfsm serve --control-key-env "
                "or --api-key-env)"
            )
            return JSONResponse({"error": message}, 403)
        return None

    def summary(self, key: str, record: _Record) -> dict[str, Any]:
        conv, meta = record.conv, record.meta
        state = conv.session.state
        ledger, lead = conv.ledger, self.gateway.roles[self.gateway.lead].model
        return {
            "id": key,
            "session": meta.get("session"),
            "source": meta.get("source"),
            "agent": meta.get("agent"),
            "state": state,
            "role": conv.core.spec.states[state].role,
            "model": self.gateway.roles[conv.core.spec.states[state].role].model,
            "turn": conv.session.turn,
            "version": conv.version,
            "last_switch": meta.get("last_switch"),
            "switches": meta.get("switches", 0),
            "fallbacks": meta.get("fallbacks", 0),
            "technical_fallbacks": meta.get("technical_fallbacks", 0),
            "calls": ledger.calls,
            "unknown_usage_calls": sum(r.usage.unreported for r in ledger.rows),  # their cost is unknown too
            "cost": ledger.cost(self.gateway.pricer),
            "lead_cost": ledger.cost_on(lead, self.gateway.pricer),
            "calls_by_role": {r: sum(x.calls for x in ledger.rows if x.role == r) for r in self.gateway.roles},
        }

    async def list_sessions(self, request: Request) -> Response:
        if (denied := self.check(request)) is not None:
            return denied
        return AsciiJSON(await self.sessions())

    async def sessions(self) -> dict[str, Any]:
        """Every conversation's summary, the rows that cannot be read, and the totals across them."""
        out, unreadable = [], []
        for key in await self.gateway._io(self.gateway.store.list):
            if key.startswith(CHAINS):
                continue
            found = await self.gateway._io(self.gateway.store.read, key)
            if found is None:
                continue
            try:
                out.append(self.summary(key, self.gateway._record(key, found.data)))
            except _UNREADABLE as exc:  # one bad row must not hide every other conversation
                unreadable.append({"id": key, "error": str(exc)})
        return {"sessions": out, "unreadable": unreadable, "totals": _totals(out, list(self.gateway.roles))}

    async def find(self, key: str) -> tuple[int, _Record] | Response:
        found = await self.gateway._io(self.gateway.store.read, key)
        if found is None:
            return await self.missing(key)
        try:
            return found.version, self.gateway._record(key, found.data)
        except _UNREADABLE as exc:
            message = f"session {key!r} cannot be read: {exc}; DELETE /lwfsm/sessions/{key} removes it"
            return AsciiJSON({"error": message}, 409)

    async def get_session(self, request: Request) -> Response:
        if (denied := self.check(request)) is not None:
            return denied
        key = request.path_params["id"]
        found = await self.find(key)
        if isinstance(found, Response):
            return found
        return AsciiJSON(self.detail(key, found[1]))

    def detail(self, key: str, record: _Record) -> dict[str, Any]:
        """One conversation: its summary, counters, pending turn, recent history, ledger and diagram."""
        conv = record.conv
        from ..diagram import mermaid

        out = self.summary(key, record)
        state = conv.state().model_dump(mode="json")
        out.update(
            counters=conv.session.counters,
            pending=state["pending"],
            history=[json.loads(line) for line in record.history],
            ledger=state["ledger"],
            diagram=mermaid(conv.core.spec, snapshot=conv.session.snapshot()),
            manual_events=[e for e, d in conv.core.spec.events.items() if not d.turn],
            handoff_waiting=conv.note,  # a note the next call will carry (an operator's, with a manual event)
        )
        return out

    async def delete_session(self, request: Request) -> Response:
        if (denied := self.check(request)) is not None:
            return denied
        key = request.path_params["id"]
        if not await self.gateway._io(self.gateway.store.delete, key):
            return await self.missing(key)
        return Response(status_code=204)

    async def missing(self, key: str) -> Response:
        """404 for a conversation id, naming the stored ids a client's own name became."""
        hint = stored_as(await self.gateway._io(self.gateway.store.list), key)
        return JSONResponse({"error": f"no session {key!r}{hint or ' (GET /lwfsm/sessions lists them)'}"}, 404)


async def operator_note(request: Request) -> str | None | Response:
    """The note a manual event may carry (`{"note": "..."}`), for the next call's model; a 400 if malformed."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if body == {}:  # (an HTTP client's empty JSON: no note)
        return None
    note = body.get("note") if isinstance(body, dict) and set(body) == {"note"} else None
    if isinstance(note, str) and 0 < len(note) <= MAX_NOTE:
        return note
    message = f'the body may be {{"note": "text of 1 to {MAX_NOTE} characters"}} for the next call\'s model'
    return JSONResponse({"error": message}, 400)


def _totals(sessions: list[dict[str, Any]], roles: list[str]) -> dict[str, Any]:
    """Across conversations: calls by role, switches, fallbacks (`lwfsm.turn.moves`), cost against the lead alone."""
    costs = [s["cost"] for s in sessions]
    leads = [s["lead_cost"] for s in sessions]
    cost = None if None in costs else sum(costs)
    lead = None if None in leads else sum(leads)
    return {
        "calls_by_role": {r: sum(s["calls_by_role"].get(r, 0) for s in sessions) for r in roles},
        "switches": sum(s["switches"] for s in sessions),
        "fallbacks": sum(s["fallbacks"] for s in sessions),
        "technical_fallbacks": sum(s["technical_fallbacks"] for s in sessions),
        "cost": cost,
        "lead_cost": lead,
        "savings": None if cost is None or lead is None else lead - cost,
        "unknown_usage_calls": sum(s["unknown_usage_calls"] for s in sessions),  # why a cost may be unknown
        "known": _known(sessions) if cost is None or lead is None else None,
    }


def _known(sessions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """When a total is unknown: the conversations whose cost and lead cost are both known, summed (as
    `lwfsm report` gives them; None: no conversation is known whole). One call without usage made every
    total unknown, and so the savings of every other conversation."""
    whole = [s for s in sessions if s["cost"] is not None and s["lead_cost"] is not None]
    if not whole:
        return None
    cost, lead = sum(s["cost"] for s in whole), sum(s["lead_cost"] for s in whole)
    return {"conversations": len(whole), "of": len(sessions), "cost": cost, "lead_cost": lead, "savings": lead - cost}
