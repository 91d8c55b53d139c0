"""Spec rollout on a running gateway: SIGHUP re-reads the spec file, `POST /lwfsm/spec` sends the text.

A new spec serves only once it has passed the gate: it validates with serve's params (--set, then the
environment), names exactly the roles the gateway has bound, and `lwfsm check` finds nothing. The answer
and the log show the `lwfsm diagram --diff` summary, and what the new spec would have done on the
gateway's recent trace (--log-dir) next to what the current one does, replayed by the simulator. A
refused spec changes nothing: 422 when the spec itself is wrong (YAML, validation, check findings),
409 when it is sound but cannot replace this gateway's (other roles than the bound ones, or a POST to
one of several worker processes).

Conversations in flight (`--on-spec-change`):
- keep (default): a conversation stays on the spec it started with until it is reset; the gateway holds
  every spec it has served (the last RETIRED of them), and its replacement workers get them too;
- move: at its next call a conversation goes on under the new spec in the same state with the same
  counters (counters new to the spec start at their initial value), if that state exists there and the
  new spec's invariants hold; else it restarts in the new spec's initial configuration.
A conversation on a spec the gateway does not hold (started before a restart with another spec, or
beyond RETIRED) moves as with `move`. A turn waiting for its verdict is kept when its state and role
exist in the new spec, else dropped (that one turn is not judged). Each move or restart is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine import Engine, Snapshot
from ..errors import LwfsmError, SnapshotError, SpecError, TraceError, TransitionNotAllowed
from ..spec import Spec
from ..spec.model import shipped_specs
from ..turn import Conversation, ConversationState, TurnCore

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .app import Gateway

__all__ = ["POLICIES", "Outcome", "Rollout"]

logger = logging.getLogger("lwfsm.gateway")

POLICIES = ("keep", "move")
RETIRED = 16  # specs kept for conversations that keep theirs (oldest dropped: their conversations move)
RECENT_TURNS = 20_000  # the recent trace: the newest --log-dir files, whole, up to about this many lines
MAX_CONFIGURATIONS = 1_000_000  # as `lwfsm serve --check-only`


@dataclass
class Outcome:
    """What the gate made of a candidate spec."""

    accepted: bool
    status: int  # 200, or the refusal's 422 / 409
    source: str
    errors: list[str] = field(default_factory=list)
    spec: Spec | None = None
    previous: Spec | None = None
    diff: list[str] = field(default_factory=list)
    effect: dict[str, Any] | None = None
    effect_note: str = ""
    policy: str = "keep"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "source": self.source}
        if not self.accepted:
            return {**out, "errors": self.errors, "current": _about(self.previous)}
        return {
            **out,
            "spec": _about(self.spec),
            "previous": _about(self.previous),
            "diff": self.diff,
            "effect": self.effect,
            "effect_note": self.effect_note,
            "in_flight": _IN_FLIGHT[self.policy],
        }

    def log(self, how: str) -> None:
        if not self.accepted:
            logger.warning(
                "spec rollout (%s) refused, still serving %s: %s",
                how,
                _named(self.previous),
                "; ".join(self.errors),
            )
            return
        logger.info("spec rollout (%s) accepted: %s -> %s", how, _named(self.previous), _named(self.spec))
        for line in self.diff:
            logger.info("spec rollout diff: %s", line)
        logger.info("spec rollout effect: %s", self.effect_note)
        logger.info("spec rollout in-flight conversations: %s", _IN_FLIGHT[self.policy])


_IN_FLIGHT = {
    "keep": "they keep the spec they started with until reset; new conversations get the new spec",
    "move": "each moves to the new spec at its next call where its state exists there and the invariants "
    "hold, else restarts in the new spec's initial state",
}


def _about(spec: Spec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {
        "name": spec.name,
        "version": spec.version,
        "hash": spec.hash,
        "rules": spec.rules_hash,  # (what its trace records name: params left out)
        "params": spec.param_values,
    }


def _named(spec: Spec | None) -> str:
    return "(none)" if spec is None else f"{spec.name} v{spec.version} ({spec.hash})"


class Rollout:
    """A gateway's specs: the one serving new conversations, those kept for conversations in flight,
    and the gate a new one passes."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.path: str | None = None  # the spec file SIGHUP re-reads
        self.params: dict[str, int] = {}  # serve's --set
        self.policy = "keep"
        self.workers = 1
        self.cores: OrderedDict[str, TurnCore] = OrderedDict({gateway.spec.hash: gateway.core})
        self.last: dict[str, Any] | None = None  # the last rollout's answer, for GET /lwfsm/spec
        self._told: OrderedDict[tuple[str, str, str], None] = OrderedDict()  # moves logged (a listing reads rows too)
        self._lock = asyncio.Lock()

    def configure(
        self,
        *,
        path: str | None,
        params: Mapping[str, int] | None = None,
        policy: str = "keep",
        workers: int = 1,
        retired: list[Spec] | tuple[Spec, ...] = (),
    ) -> None:
        if policy not in POLICIES:
            raise LwfsmError(f"--on-spec-change must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.path, self.params, self.policy, self.workers = path, dict(params or {}), policy, workers
        # Handed over by the parent of --workers processes, oldest first; the current spec last.
        g = self.gateway
        self.cores = OrderedDict((s.hash, TurnCore(Engine(s))) for s in retired if s.hash != g.spec.hash)
        self.cores[g.spec.hash] = g.core

    # -- conversations in flight --

    def restore(self, key: str, text: str) -> Conversation:
        """The stored conversation `text` under the spec the policy gives it."""
        current = self.gateway.core
        try:
            value = ConversationState.model_validate_json(text)
        except ValueError:
            return current.restore(text)  # its located SnapshotError
        machine = value.machine
        if machine.spec_hash == current.engine.spec_hash:
            return current.restore(value)
        old = self.cores.get(machine.spec_hash)
        if self.policy == "keep" and old is not None and not _was_reset(old.spec, machine):
            return old.restore(value)
        return self._move(key, value, current)

    def _move(self, key: str, value: ConversationState, core: TurnCore) -> Conversation:
        machine, engine = value.machine, core.engine
        start = engine.session().counters
        counters = {name: machine.counters.get(name, start[name]) for name in engine.counter_names}
        try:
            was = self.cores.get(machine.spec_hash)
            if _was_reset(was.spec if was is not None else None, machine):
                raise SnapshotError("it was reset")
            session = engine.restore(
                Snapshot(
                    spec=core.spec.name,
                    version=core.spec.version,
                    spec_hash=engine.spec_hash,
                    state=machine.state,
                    counters=counters,
                    turn=machine.turn,
                )
            )
            how = f"moved in state {machine.state}"
        except SnapshotError as exc:
            # The new spec's initial configuration; turns go on being numbered (a trace's turns only increase).
            session = engine.at(engine.initial_state, list(start.values()), machine.turn)
            how = f"restarted in {engine.initial_state} ({exc})"
        p = value.pending
        keep = p is not None and p.state in core.spec.states and p.role in core.spec.roles
        moved = value.model_copy(update={"machine": session.snapshot(), "pending": p if keep else None})
        told = (key, machine.spec_hash, engine.spec_hash)
        if told not in self._told:
            self._told[told] = None
            while len(self._told) > 4096:
                self._told.popitem(last=False)
            logger.info(
                "session %s: spec %s v%s (%s) -> %s: %s%s",
                key,
                machine.spec,
                machine.version,
                machine.spec_hash,
                _named(core.spec),
                how,
                "" if keep or p is None else f"; its pending turn {p.turn} (state {p.state}) is not judged",
            )
        return core.restore(moved)

    # -- the gate --

    def gate(self, text: str | None, source: str) -> Outcome:
        """Validate, bind, check, diff and simulate a candidate (blocking: seconds for a large check)."""
        from ..check import check, unused_only_here
        from ..diagram import diff
        from ..errors import Unsaturable
        from ..spec import load_spec
        from ..turn.bindings import params_from_env

        g = self.gateway
        out = Outcome(False, 422, source, previous=g.spec, policy=self.policy)
        try:
            declared = load_spec(source) if text is None else Spec.from_text(text, source)  # its own defaults
            spec = declared.with_params(self.params) if self.params else declared
            overrides = params_from_env(spec, g.env)
            spec = spec.with_params(overrides) if overrides else spec
            TurnCore(Engine(spec))  # what the gateway will run: its judging names turn events
        except SpecError as exc:
            out.errors = [str(i) for i in exc.issues]
            return out
        except LwfsmError as exc:  # a param from the environment out of range, ...
            out.errors = [str(exc)]
            return out
        bound = set(g.roles)
        if set(spec.roles) != bound:
            out.status = 409
            extra, missing = sorted(set(spec.roles) - bound), sorted(bound - set(spec.roles))
            out.errors = [
                f"{source}: roles {', '.join(sorted(spec.roles))} differ from the roles this gateway has bound "
                f"({', '.join(sorted(bound))})"
                + (f": {', '.join(extra)} has no model here" if extra else "")
                + (f": {', '.join(missing)} would be unused" if missing else "")
                + "; keep the roles, or restart lwfsm serve with the new roles bound (LWFSM_<ROLE>_MODEL)"
            ]
            return out
        try:
            report = check(spec, None, MAX_CONFIGURATIONS)
        except Unsaturable as exc:
            out.errors = [f"{source}: lwfsm check cannot check it: {exc}"]
            return out
        unused = unused_only_here(report, declared, MAX_CONFIGURATIONS)  # left unused by these params: no mistake
        report.findings = [f for f in report.findings if f not in unused]
        if not report.ok:
            out.errors = [
                f"{source}: lwfsm check: {f.kind}: {f.message}"
                + (f" at {f.state}" if f.state else "")
                + (f"; shortest path: {', '.join(f.path) or '(initial)'}" if f.path is not None else "")
                for f in report.findings
            ]
            return out
        out.accepted, out.status, out.spec = True, 200, spec
        out.diff = diff(g.spec, spec).summary()
        out.effect, out.effect_note = self.effect(g.spec, spec)
        return out

    def effect(self, old: Spec, new: Spec) -> tuple[dict[str, Any] | None, str]:
        """Both specs replayed on the recent trace: cost and the turns a failing worker served."""
        from ..cost.records import read_records
        from ..cost.simulate import simulate

        trace = self.gateway.trace
        if trace is None:
            return None, "no recent trace: this gateway writes none (start lwfsm serve with --log-dir DIR)"
        files = sorted(trace.folder.glob("*.jsonl"), key=_mtime, reverse=True)
        chosen, lines = [], 0
        for path in files:
            if lines >= RECENT_TURNS:
                break
            chosen.append(path)
            lines += _lines(path)
        if not lines:
            return None, f"no recent trace: {trace.folder} holds no judged turn yet"
        chosen.reverse()  # oldest first, as they were written
        models = {r: b.model for r, b in self.gateway.roles.items()}
        try:
            before = simulate(old, read_records(chosen), self.gateway.pricer, models=models, per_conversation=False)
            after = simulate(new, read_records(chosen), self.gateway.pricer, models=models, per_conversation=False)
        except (TraceError, TransitionNotAllowed, ValueError) as exc:  # ValueError: a record neither spec reads
            return None, f"the recent trace in {trace.folder} could not be replayed: {exc}"
        a, b = before.total.to_dict(), after.total.to_dict()
        keys = ("turns", "turns_by_role", "switches", "fallbacks", "failing_worker_turns", "cost", "all_lead")
        effect = {
            "trace": {"folder": str(trace.folder), "files": len(chosen), "turns": a["turns"]},
            "current": {k: a[k] for k in keys},
            "new": {k: b[k] for k in keys},
        }

        why = "; ".join(before.unknowns()) or "unknown"  # (the trace's: both replays read the same records)

        def money(v: float | None) -> str:
            return f"unknown ({why})" if v is None else f"${v:.6f}"

        note = (
            f"replayed {a['turns']} recent turns ({len(chosen)} trace files of {trace.folder}) through both specs: "
            f"cost {money(a['cost'])} -> {money(b['cost'])}, turns served by a failing worker "
            f"{a['failing_worker_turns']} -> {b['failing_worker_turns']}, fallbacks {a['fallbacks']} -> "
            f"{b['fallbacks']}"
        )
        return effect, note

    # -- taking it --

    def take(self, out: Outcome) -> None:
        """Serve the accepted spec to new conversations (on the event loop: between two requests' steps)."""
        assert out.spec is not None
        g, spec = self.gateway, out.spec
        if spec.hash not in self.cores or self.cores[spec.hash].spec != spec:
            # (The hash leaves out handoff notes and descriptions: a reworded note is a new core, same hash.)
            self.cores[spec.hash] = TurnCore(Engine(spec))
        self.cores.move_to_end(spec.hash)
        while len(self.cores) > RETIRED + 1:
            self.cores.popitem(last=False)
        g.spec, g.core = spec, self.cores[spec.hash]
        g.lead = next((r for r, d in spec.roles.items() if not d.cheap), next(iter(spec.roles)))

    def handover(self) -> dict[str, Any]:
        """What replacement worker processes need: the current spec and those kept, as data."""
        specs = [c.spec.model_dump(mode="json") for c in self.cores.values()]
        return {"spec": specs[-1], "retired": specs[:-1]}

    async def _run(self, text: str | None, source: str, how: str) -> Outcome:
        async with self._lock:  # one at a time: each is checked against the spec it replaces
            out = await asyncio.to_thread(self.gate, text, source)
            if out.accepted:
                self.take(out)
            out.log(how)
            self.last = {"how": how, **out.to_dict()}
            return out

    async def reload_file(self) -> Outcome:
        """SIGHUP: the spec file again."""
        if self.path is None:  # pragma: no cover - lwfsm serve always has one
            raise LwfsmError("this gateway was not started from a spec file")
        return await self._run(None, self.path, "SIGHUP")

    def install(self) -> None:
        """SIGHUP re-reads the spec file. A --workers process ignores it: the parent handles it (`Handover`),
        and a SIGHUP to the whole process group must not stop the workers (its default action)."""
        if self.path is None:
            return
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[Any]] = set()

        def hup() -> None:
            if self.workers > 1:
                return
            task = loop.create_task(self.reload_file())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
            loop.add_signal_handler(signal.SIGHUP, hup)

    # -- the control API --

    async def post(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        from ..spec.model import MAX_SPEC_BYTES

        if (denied := self.gateway._control(request)) is not None:
            return denied
        if self.workers > 1:
            message = (
                f"this gateway runs {self.workers} worker processes and a POST reaches only one of them: write the "
                f"spec to {self.path} and send SIGHUP to the parent process ({os.getppid()}), which checks it once "
                "and replaces every worker"
            )
            return JSONResponse({"accepted": False, "errors": [message]}, 409)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_SPEC_BYTES:
                break
        if not raw.strip() or len(raw) > MAX_SPEC_BYTES:
            message = f"the body must be the spec's YAML text, 1 to {MAX_SPEC_BYTES:,} bytes"
            return JSONResponse({"accepted": False, "errors": [message]}, 400)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return JSONResponse({"accepted": False, "errors": ["the spec must be UTF-8 text"]}, 400)
        out = await self._run(text, "<POST /lwfsm/spec>", "POST /lwfsm/spec")
        answer = out.to_dict()
        file = self.path if self.path is None or os.path.isfile(self.path) else shipped_specs().get(self.path)
        if out.accepted and file is not None and _text(str(file)) != text:
            # a SIGHUP (a restart too) reads the file again, and would go back to what it holds
            keep = "write this spec there" if file == self.path else "serve it from a file of yours"
            answer["spec_file"] = (
                f"{file} still holds another spec: a SIGHUP or a restart would serve it again; {keep} to keep it"
            )
            logger.warning("spec rollout (POST): %s", answer["spec_file"])
        return JSONResponse(answer, out.status)

    async def get(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if (denied := self.gateway._control(request)) is not None:
            return denied
        return JSONResponse(
            {
                "spec": _about(self.gateway.spec),
                "path": self.path,
                "on_spec_change": self.policy,
                "kept": [_about(c.spec) for c in list(self.cores.values())[:-1]] if self.policy == "keep" else [],
                "last_rollout": self.last,
            }
        )


def _was_reset(spec: Spec | None, machine: Snapshot) -> bool:
    """The conversation's last event was a reset of its spec (a kept conversation then takes the new one)."""
    last = machine.last
    return (
        spec is not None
        and last is not None
        and last.transition is not None
        and last.transition < len(spec.transitions)
        and spec.transitions[last.transition].reset
    )


def _text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


class Handover:
    """The --workers parent's SIGHUP (`drain.run_workers` calls it): the spec file is checked once, here,
    and only an accepted spec reaches the workers, which are then replaced one by one. The accepted spec
    and the kept ones go to new workers in a file named in `variable` (and to any worker restarted later):
    up to RETIRED + 1 specs could pass the size a single environment variable may have."""

    def __init__(self, gateway: Gateway, settings: Mapping[str, Any], variable: str) -> None:
        import tempfile

        self.rollout, self.settings, self.variable = gateway.rollout, dict(settings), variable
        fd, self.path = tempfile.mkstemp(prefix="lwfsm-specs-", suffix=".json")
        os.close(fd)

    def __call__(self) -> bool:
        """Gate the spec file; True when the workers are to be replaced."""
        rollout = self.rollout
        out = rollout.gate(None, rollout.path or "")
        if out.accepted:
            rollout.take(out)
        out.log("SIGHUP")
        if not (out.accepted and out.spec != out.previous):  # refused, or the same spec again
            return False
        Path(self.path + ".new").write_text(json.dumps(rollout.handover()))
        os.replace(self.path + ".new", self.path)  # a worker starting now reads one whole file
        os.environ[self.variable] = json.dumps({**self.settings, "rollout": self.path})
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
