"""Draining `lwfsm serve` on SIGTERM: uvicorn's server, told when to stop accepting and when to give up.

The order of events, from the first SIGTERM:
1. `/readyz` answers 503 `{"status": "draining"}` at once (a load balancer stops sending new calls);
2. for `grace` seconds everything else is served as before, new connections included, so that a
   balancer still routing here during its next probes is not refused;
3. then uvicorn's own graceful shutdown: the listening socket closes (a new connection is refused),
   idle keep-alive connections close, and calls in flight, streams included, run to their end and
   commit their turns;
4. the process exits 0 once they have all ended, or, when `timeout` seconds have passed since the
   signal or a second SIGTERM/SIGINT came, the calls still running are cancelled (a stream that has
   not finished commits nothing) and it exits 1 if there were any. SIGINT (Ctrl+C) as the first
   signal drains the same way without the grace: nobody load-balances a terminal.

uvicorn alone stops accepting at the first signal (no time for a balancer to see the 503), forces
only on a second SIGINT, waits without bound unless told a timeout, and then re-raises the signal so
the exit status says "killed by SIGTERM". `DrainServer` changes only the signal handler and reports
an exit code; accepting, closing connections and waiting for the calls stay uvicorn's.

With workers, uvicorn's supervisor cannot give its workers another server class, keeps its copy of
the listening socket open (a new connection then waits in the kernel's queue instead of being
refused), passes on only the first signal and exits 0 whatever its workers did; `run_workers` is the
small supervisor that does those four things differently, spawning its workers as uvicorn does
(`uvicorn._subprocess`, which uvicorn's own supervisors use). It needs POSIX signals.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn._subprocess import get_subprocess
from uvicorn.config import STARTUP_FAILURE

__all__ = ["DrainServer", "run_workers"]

logger = logging.getLogger("lwfsm.gateway.drain")

CUT = 1  # the exit code when calls were cut short (0: every call ended)


class DrainServer(uvicorn.Server):
    """uvicorn's Server with the drain above; `exit_code` once `run` returns."""

    def __init__(self, config: uvicorn.Config, *, grace: float, timeout: float, parent: Any = None) -> None:
        super().__init__(config)
        self.grace, self.timeout = grace, timeout
        # A --workers process takes its signals from the parent, which shares here the one it got first.
        self.parent = parent
        self.worker = parent is not None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_at: float | None = None  # when the drain began
        self.exit_code = 0
        self._timer: asyncio.TimerHandle | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.worker and sig == signal.SIGINT:
            return  # Ctrl+C in a terminal reaches every worker as well as the parent, which passes it on once
        if self.loop is None or self.loop.is_closed():  # not serving (yet, or any more): nothing to drain
            self.should_exit = True
            return
        # A signal handler interrupts the event loop anywhere: the work is done by the loop itself.
        self.loop.call_soon_threadsafe(self._signalled, sig)

    def _signalled(self, sig: int) -> None:
        assert self.loop is not None
        if self.started_at is not None:
            self._cut("a second signal")
            return
        self.started_at = time.monotonic()
        gateway = getattr(getattr(self.config.loaded_app, "state", None), "gateway", None)
        if gateway is not None:
            gateway.draining = True  # /readyz: 503 from now on
        else:  # not an app `create_app` made, or uvicorn wrapped it
            logger.warning("no gateway at app.state.gateway: /readyz cannot say that it is draining")
        # SIGUSR1: the parent retires this worker after a SIGHUP; the others go on accepting, so no grace.
        grace = 0.0 if sig == RETIRE or signal.SIGINT in (sig, self.parent and self.parent.value) else self.grace
        logger.info(
            "%s%s: draining; /readyz answers 503; new connections refused in %g s; calls in flight have until %g s "
            "after the signal (--drain-timeout); a second signal ends them",
            self._who(),
            signal.Signals(sig).name,
            grace,
            self.timeout,
        )
        self.loop.call_later(grace, self._stop_accepting)

    def _stop_accepting(self) -> None:
        assert self.loop is not None
        assert self.started_at is not None
        if self.should_exit:
            return
        self.should_exit = True  # uvicorn's graceful shutdown, at its next tick
        left = self.started_at + self.timeout - time.monotonic()
        self._timer = self.loop.call_later(max(left, 0.0), self._cut, "--drain-timeout")

    def _cut(self, why: str) -> None:
        running = [t for t in self.server_state.tasks if not t.done()]
        gateway = getattr(getattr(self.config.loaded_app, "state", None), "gateway", None)
        if gateway is not None:
            gateway.cut = why  # a call not yet answered is told so in its protocol (a 503), not uvicorn's 500
        if running:
            logger.warning(
                "%sdrain cut short by %s: ending %d call(s) still running; a turn not finished is not stored",
                self._who(),
                why,
                len(running),
            )
            self.exit_code = CUT
            # uvicorn logs each cancelled call as an application error with a traceback: expected here.
            logging.getLogger("uvicorn.error").addFilter(_cancelled)
        for task in running:
            task.cancel()
        self.should_exit = self.force_exit = True  # uvicorn stops waiting

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self._timer is not None:
            self._timer.cancel()
        if self.force_exit:
            await self.lifespan.shutdown()  # uvicorn skips the app's shutdown when forced; the gateway's is quick
        if not self.exit_code:
            logger.info("%sdrained: every call ended", self._who())

    def _who(self) -> str:
        return f"worker {os.getpid()}: " if self.worker else ""


RETIRE = getattr(signal, "SIGUSR1", 0)  # parent to worker: drain now, without the grace (POSIX only, as --workers)


def _cancelled(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def _worker(
    config: uvicorn.Config, grace: float, timeout: float, parent: Any, supervisor: int, sockets: list[socket.socket]
) -> None:  # pragma: no cover - runs in a worker process
    server = DrainServer(config, grace=grace, timeout=timeout, parent=parent)
    # It started with SIGTERM blocked and ignored (`run_workers`): now a SIGTERM drains it.
    signal.signal(signal.SIGTERM, server.handle_exit)
    signal.signal(RETIRE, server.handle_exit)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _drain_when_gone(supervisor)
    if parent.value:  # the parent's SIGTERM came while this worker was starting
        server.should_exit = True
    server.run(sockets=sockets)
    sys.exit(server.exit_code)


def _drain_when_gone(supervisor: int) -> None:  # pragma: no cover - runs in a worker process
    """A SIGTERM (a drain) to this worker when its supervisor dies, even killed (SIGKILL): orphaned, it
    would serve on and hold the port, and a new `lwfsm serve` could not start."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the kernel sends it
        if os.getppid() != supervisor:  # it died before that
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lwfsm-supervisor-watch", daemon=True).start()


def run_workers(
    config: uvicorn.Config,
    workers: int,
    *,
    grace: float,
    timeout: float,
    on_hup: Callable[[], bool] | None = None,
) -> int:
    """Run `workers` DrainServer processes on one socket and pass SIGTERM/SIGINT on to them: 0 when
    they all drained, 1 otherwise. A worker that dies while serving is replaced. On SIGHUP, when `on_hup`
    says so (a new spec passed its gate), every worker is replaced: a new one is started, then the old
    one drains without the grace (SIGUSR1; the others keep accepting on the shared socket meanwhile)."""
    sock = config.bind_socket()
    stopped_by = multiprocessing.get_context("spawn").Value("i", 0, lock=False)  # the first signal the parent got
    target = functools.partial(_worker, config, grace, timeout, stopped_by, os.getpid())
    signals: list[int] = []
    woke = threading.Event()

    def note(sig: int, frame: FrameType | None) -> None:
        signals.append(sig)
        woke.set()

    hups: list[int] = []

    def hup(sig: int, frame: FrameType | None) -> None:
        hups.append(sig)
        woke.set()

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hup if on_hup is not None else signal.SIG_IGN)
    retiring: list[Any] = []  # replaced on SIGHUP, finishing their calls

    def start() -> Any:
        process = get_subprocess(config, target, [sock])  # uvicorn's spawning, with the socket passed on
        # A worker must not die of a SIGTERM that comes before it has its handler: it starts with SIGTERM
        # blocked and ignored (both inherited through exec), and reads `stopped_by` once its handler is
        # in place. Blocked here meanwhile, so that the parent loses no SIGTERM of its own.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            process.start()
        finally:
            signal.signal(signal.SIGTERM, note)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return process

    try:
        procs = [start() for _ in range(workers)]
        while not signals:
            woke.wait(0.5)
            woke.clear()
            if hups and on_hup is not None:
                hups.clear()
                if on_hup():
                    for i, old in enumerate(procs):
                        procs[i] = start()
                        os.kill(old.pid, RETIRE)
                        retiring.append(old)
            retiring = [p for p in retiring if p.exitcode is None]
            for i, p in enumerate(procs):
                if p.exitcode is None or signals:
                    continue
                if p.exitcode == STARTUP_FAILURE:  # it would fail the same way again
                    logger.error("worker %d failed to start; stopping the others", p.pid)
                    signals.append(signal.SIGINT)
                    break
                logger.warning("worker %d died (exit code %s); starting another", p.pid, p.exitcode)
                procs[i] = start()
        # Once the workers have closed their copies (after the grace) the socket is closed: a new
        # connection is refused, not left waiting in the kernel's queue for a worker that never comes.
        sock.close()
        stopped_by.value = signals[0]
        passed = 0
        deadline = time.monotonic() + timeout + 10
        while alive := [p for p in procs + retiring if p.exitcode is None]:
            if passed < len(signals):  # each signal passed on once: the first drains, the next cuts short
                passed = len(signals)
                for p in alive:
                    os.kill(p.pid, signal.SIGTERM)
            if time.monotonic() > deadline:  # a worker that did not keep its own --drain-timeout
                logger.error("workers %s still running 10 s past --drain-timeout: killed", [p.pid for p in alive])
                for p in alive:
                    p.kill()
            alive[0].join(0.1)
        return 0 if all(p.exitcode == 0 for p in procs + retiring) else CUT
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
