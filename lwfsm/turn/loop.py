"""The conversation loop: load, plan, (the front end calls the model), settle, compare-and-set, retry.

Every front end (the LiteLLM adapter, the gateway, the framework integrations' `Front`, the LiteLLM
proxy hook) goes through one `Loop`: `begin(id, messages)` loads the conversation and plans the call
(the role that serves it), the front end makes the call, `commit(turn, role=..., reply=...)` settles
it and writes it back. With a store, every write is a compare-and-set on the row's version; without
one (`store=None`), the loop holds its conversations in memory and the version check of
`TurnCore.settle` is the compare-and-set. `abegin` / `acommit` / `aupdate` are the same steps with
each store call that may wait awaited off the event loop (in a worker thread, bounded by a timeout); a
store that can make a call without waiting (`nowait`: memory://, SQLite whose lock is free) makes it
at once.

The one policy, the same in every front end:

- **Compare-and-set attempts**: `ATTEMPTS` (100) writes per call. Each lost write means another call
  of the conversation was recorded meanwhile, so N calls finishing together need up to N; the bound
  only stops a livelock. When every attempt loses, `Conflict` names the store and the conversation
  and nothing is recorded: the front end must not acknowledge the call.
- **Idempotency key**: `lwfsm.turn.rows.call_key`: the client's request id when it gives one, else a
  digest of the call's messages (OpenAI-shaped, as the core judges them; the gateway digests their JSON
  text as the client sent it, taken as it reads the body: `lwfsm.gateway.intake`). The key of the last settled
  turn call is kept in the row (side calls keep it). A turn call arriving with that key while its turn
  is still pending is a *retry*: not a new turn, not judged, no turn counter moves. A front end that
  can answer it from the record does so (the adapter: nothing called, nothing counted); one that must
  call again (the gateway, the proxy: a client waits on the wire) commits it as a side call, so its
  tokens are counted once, as spent, and its reply replaces the recorded one (the one the client saw).
- **A lost race**: the reply already produced is kept (a stream is with the client already). The
  conversation is loaded again, the call planned again on it (the newer pending turn judged from this
  call's messages), and settled as served by the role that served it, whatever role the new plan
  names. So the machine's counters move exactly once per judged turn, as the newer state says; the
  ledger counts the call once, under the model that served it; and the recorded turn may be one that
  the new state's role did not serve (the next call judges it as a turn of that state all the same).
  If the newer state shows this very call already recorded (a duplicate delivery won), it is committed
  as a retry.

The module imports the turn core and the row format (`lwfsm.turn.rows`) only: no store backend, no SDK,
no HTTP; a store is any object with `url`, `read` and `write` (`lwfsm.store.open_store` gives one).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..errors import ConfigError, Conflict, SessionBusy, StoreError
from .core import Conversation, Judged, Plan, TurnCore
from .ledger import Usage
from .rows import Busy, Row, call_key, encode, parse

__all__ = ["ATTEMPTS", "Committed", "Loop", "Order", "Store", "Stored", "Turn", "acquire", "ordered"]

ATTEMPTS = 100  # compare-and-set attempts per call (see the module's docstring)
WARM = 256  # conversations kept parsed per loop, for the next call of each (see Loop._take)
WARM_BYTES = 64 * 1024 * 1024  # and the most row text they may hold

T = TypeVar("T")


class Gate:
    """A lock taken by threads (`with gate:`) and by coroutines (`async with gate:`, without blocking the
    event loop). A wait that could never end is refused with `SessionBusy`: a thread's synchronous wait
    while a coroutine of the event loop it runs holds the gate or waits for it (that coroutine runs again
    only once the thread returns), and a coroutine's wait on a thread that holds it synchronously."""

    __slots__ = ("__weakref__", "lock", "what", "_loops", "_thread", "_owner")

    def __init__(self, what: str) -> None:
        self.lock = threading.Lock()
        self.what = what  # what it guards, for the refusal
        self._loops: dict[int, int] = {}  # thread -> coroutines of its event loop holding or awaiting the gate
        self._thread: int | None = None  # the thread holding it synchronously
        self._owner: int | None = None  # the thread whose coroutine holds it (it may be let go from another)

    def __enter__(self) -> None:
        me = threading.get_ident()
        if not self.lock.acquire(blocking=False):
            if self._loops.get(me):
                raise SessionBusy(
                    f"{self.what}: a synchronous call on the event loop's thread while an async call of it is "
                    "under way there would wait forever: await the async call (acompletion, aclose) instead"
                )
            self.lock.acquire()
        self._thread = me

    def __exit__(self, *exc: object) -> None:
        self._thread = None
        self.lock.release()

    async def __aenter__(self) -> None:
        me = threading.get_ident()
        if self._thread == me:
            raise SessionBusy(
                f"{self.what}: an async call on the thread of a synchronous call of it still under way would wait "
                "forever: make the call from another thread, or synchronously"
            )
        self._loops[me] = self._loops.get(me, 0) + 1  # (counted before the wait: the lock may be taken for it
        try:  # in a worker thread while this coroutine has not run again yet)
            await acquire(self.lock)
        except BaseException:
            self._left(me)
            raise
        self._owner = me

    async def __aexit__(self, *exc: object) -> None:
        # (an async generator's `async with` may be finalised on another thread than the one it entered on)
        owner, self._owner = self._owner, None
        assert owner is not None  # set by __aenter__ once it holds the lock
        self.lock.release()
        self._left(owner)

    def _left(self, me: int) -> None:
        if (n := self._loops.get(me, 1) - 1) > 0:
            self._loops[me] = n
        else:
            self._loops.pop(me, None)


class Order(Gate):
    """One conversation's commits and log lines in one order, in this process: the sessions (or fronts) of
    a conversation on several threads write its trace in turn order (`lwfsm report` reads turns in order).
    Re-entrant on a thread: a store that calls back into a commit of the conversation does not wait."""

    __slots__ = ("_inside",)

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self._inside = threading.local()

    def __enter__(self) -> None:
        if getattr(self._inside, "depth", 0) == 0:
            super().__enter__()
        self._inside.depth = getattr(self._inside, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        self._inside.depth -= 1
        if self._inside.depth == 0:
            super().__exit__()


async def acquire(lock: threading.Lock) -> None:
    """Take a threading lock from a coroutine without blocking the event loop. Cancelled while it waits,
    it leaves the lock as it was: the worker thread that takes it afterwards gives it back itself (by then
    the event loop may be blocked waiting for that very lock)."""
    if lock.acquire(blocking=False):
        return
    claim, state = threading.Lock(), {"taken": False, "abandoned": False}

    def take() -> None:
        lock.acquire()
        with claim:
            if state["abandoned"]:
                lock.release()
            else:
                state["taken"] = True

    waiter = asyncio.ensure_future(asyncio.to_thread(take))
    try:
        await asyncio.shield(waiter)
    except asyncio.CancelledError:
        with claim:
            state["abandoned"] = True
            if state["taken"]:  # taken for this coroutine, which will not use it
                lock.release()
        raise


# Kept while a session or front of the conversation holds its Order: none outlives them.
_ORDERS: weakref.WeakValueDictionary[tuple[str | None, str], Order] = weakref.WeakValueDictionary()
_ORDERS_LOCK = threading.Lock()


def ordered(store: Store | None, name: str) -> Order:
    """The Order of conversation `name` in `store`: one per rows held (`store.where`: one SQLite file and
    table under any spelling of its URL; each memory store its own), else per URL."""
    key = (getattr(store, "where", None) or getattr(store, "url", None), name)
    with _ORDERS_LOCK:
        order = _ORDERS.get(key)
        if order is None:
            order = _ORDERS[key] = Order(f"conversation {name!r}")
        return order


Lines = Callable[["Stored", "Judged | None"], Sequence[str]]  # a front end's own row lines, per attempt
Runner = Callable[..., Awaitable[Any]]  # runs a blocking store call off the event loop


class Store(Protocol):
    """What the loop needs of a store: an `lwfsm.store.Store` (the backends import the turn core, not
    the other way round)."""

    url: str

    def read(self, session: str) -> Row | None: ...

    def write(self, session: str, expected: int, row: Row) -> bool: ...

    # Optional: `where`, a string naming the rows it holds (stores with the same `where` hold the same rows).
    # Optional: `nowait = True` when read and write take wait=False and then raise `Busy` rather than
    # wait (lwfsm.store.base.Store): the async API makes those calls on the event loop.


@dataclass
class Stored:
    """A conversation as the loop read (or wrote) it."""

    conv: Conversation
    version: int  # the store's version (0: there is no row yet)
    key: str | None  # the idempotency key of the last settled turn call
    lines: Sequence[str] = ()  # the front end's own lines of the row
    text: str | None = None  # the row's data, when it came from (or went to) a store


@dataclass
class Turn:
    """A call on its way: planned by `begin`, settled by `commit` (which may plan it again)."""

    name: str
    messages: Sequence[Mapping[str, Any]]
    headers: Mapping[str, str] | None
    key: str | None  # its idempotency key (None: a side call, or no store)
    side: bool
    stored: Stored
    plan: Plan
    retry: bool  # a retried call: not a new turn (see the module's docstring)
    started: float = field(default_factory=time.perf_counter)

    @property
    def conv(self) -> Conversation:
        return self.stored.conv


@dataclass(frozen=True)
class Committed:
    """A committed call: the turn it judged (None: none), the conversation as written, races lost first."""

    judged: Judged | None
    stored: Stored
    lost: int


_Step = Generator[tuple[Any, ...], Any, T]  # yields ("read", id) or ("write", id, expected, Stored)


class Loop:
    """The conversation loop of one front end: a turn core, a store (None: in memory), the policy."""

    def __init__(
        self,
        core: TurnCore,
        store: Store | None = None,
        *,
        attempts: int = ATTEMPTS,
        run: Runner | None = None,
        timeout: float = 30.0,
    ) -> None:
        """`run(fn, *args)` awaits a store call that may wait off the event loop (default: a worker thread,
        `timeout` seconds, then a `StoreError` naming the store); see `_call` for the calls made inline."""
        if attempts < 1:
            raise ConfigError(f"attempts must be >= 1 (compare-and-set attempts per call), got {attempts}")
        self.core, self.store, self.attempts, self.timeout = core, store, attempts, timeout
        self._run = run
        self._held: dict[str, Stored] = {}  # without a store: the conversations themselves
        self._warm: OrderedDict[str, Stored] = OrderedDict()
        self._warm_bytes = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.store.url if self.store is not None else "(in memory)"

    # -- what a front end may override --

    def start(self, name: str) -> Conversation:
        """A new conversation."""
        return self.core.start()

    def restore(self, name: str, state: str) -> Conversation:
        """The conversation a row's state JSON holds."""
        return self.core.restore(state)

    def current(self, stored: Stored) -> bool:
        """Whether a conversation kept parsed may serve its next call (a front end may retire its core)."""
        return True

    # -- in memory --

    def hold(self, name: str, conv: Conversation, key: str | None = None) -> Stored:
        """Without a store: keep `conv` as conversation `name` (a front end's own, or one restored)."""
        stored = self._held[name] = Stored(conv, conv.version, key)
        return stored

    # -- reading and writing rows (blocking) --

    def read(self, name: str) -> Stored:
        """The conversation `name` (a new one, version 0, when there is none)."""
        if self.store is None:
            with self._lock:
                held = self._held.get(name)
                return held if held is not None else self.hold(name, self.start(name))
        return self.stored(name, self.store.read(name))

    def stored(self, name: str, row: Row | None) -> Stored:
        """The conversation a row of the store holds (a new one when there is no row): kept parsed if
        the row is still the text last read or written here, else parsed."""
        assert self.store is not None
        if row is None:
            self._take(name, None)
            return Stored(self.start(name), 0, None)
        warm = self._take(name, row.data)
        if warm is not None:
            return warm
        conv, key, lines = parse(self.store.url, name, row, lambda state: self.restore(name, state))
        return Stored(conv, row.version, key, lines, row.data)

    def write(self, name: str, expected: int, stored: Stored) -> bool:
        """Store `stored` if the row is still at `expected`; keep it parsed for the next call."""
        if self.store is None:
            with self._lock:  # settled in place already: the core's version check was the compare-and-set
                self._held[name] = stored
            return True
        row = self._row(stored, expected)
        if not self.store.write(name, expected, row):
            return False
        self._wrote(name, stored, row)
        return True

    @staticmethod
    def _row(stored: Stored, expected: int) -> Row:
        return Row(encode(stored.conv.state(), stored.key, stored.lines).data, expected + 1)

    def _wrote(self, name: str, stored: Stored, row: Row) -> None:
        stored.text = row.data
        self._keep(name, stored)

    def _take(self, name: str, text: str | None) -> Stored | None:
        """The conversation kept parsed, taken out (a call uses it alone), if the row is still its text."""
        with self._lock:
            warm = self._warm.pop(name, None)
            if warm is not None:
                self._warm_bytes -= len(warm.text or "")
        return warm if warm is not None and warm.text == text and self.current(warm) else None

    def _keep(self, name: str, stored: Stored) -> None:
        size = len(stored.text or "")
        with self._lock:
            old = self._warm.pop(name, None)
            if old is not None:
                self._warm_bytes -= len(old.text or "")
            if size <= WARM_BYTES // 8:  # one huge conversation does not push out all the others
                self._warm[name] = stored
                self._warm_bytes += size
            while len(self._warm) > WARM or self._warm_bytes > WARM_BYTES:
                self._warm_bytes -= len(self._warm.popitem(last=False)[1].text or "")

    def forget(self, name: str) -> None:
        """Drop what the loop keeps of `name` (after a delete)."""
        self._take(name, None)
        with self._lock:
            self._held.pop(name, None)

    # -- the steps, written once; `_drive` and `_adrive` do their store calls --

    def _begin(
        self,
        name: str,
        messages: Sequence[Mapping[str, Any]],
        side: bool,
        request_id: str | None,
        headers: Mapping[str, str] | None,
        digest: str | None = None,
    ) -> _Step[Turn]:
        # Without a store no delivery can be repeated (the caller holds the conversation): every call is new.
        if side or self.store is None:
            key = None
        elif request_id is None and digest is not None:
            key = digest  # the messages' digest, which the front end already took
        else:
            key = call_key(messages, request_id)
        stored = yield ("read", name)
        retry = self._retry(stored, key)
        plan = stored.conv.core.plan(stored.conv, messages, side=side or retry, headers=headers)
        return Turn(name, messages, headers, key, side, stored, plan, retry)

    @staticmethod
    def _retry(stored: Stored, key: str | None) -> bool:
        return key is not None and key == stored.key and stored.conv.pending is not None

    def _commit(
        self,
        turn: Turn,
        role: str,
        model: str,
        reply: Mapping[str, Any] | None,
        tools: Sequence[Mapping[str, Any]],
        usage: Usage | None,
        latency: float | None,
        retries: int,
        lines: Lines | None,
    ) -> _Step[Committed]:
        latency = time.perf_counter() - turn.started if latency is None else latency
        for lost in range(self.attempts):
            stored, conv = turn.stored, turn.stored.conv
            try:
                judged = conv.core.settle(
                    conv,
                    turn.plan,
                    role=role,
                    model=model,
                    reply=reply,
                    tools=tools,
                    usage=usage,
                    latency=latency,
                    retries=retries,
                )
            except Conflict:  # in memory, another call settled this conversation since the plan
                yield from self._again(turn)
                continue
            if turn.retry and reply is not None and conv.pending is not None:
                # Not a turn: the reply the client saw replaces the recorded one.
                conv.pending = conv.pending.model_copy(update={"reply": dict(reply), "model": model, "role": role})
            key = turn.key if turn.key is not None else stored.key  # a side call keeps the last turn call's
            new = Stored(conv, conv.version, key, stored.lines)
            if lines is not None:
                new.lines = list(lines(stored, judged))
            if (yield ("write", turn.name, stored.version, new)):
                return Committed(judged, new, lost)
            yield from self._again(turn)
        raise Conflict(
            f"store {self.url}: session {turn.name!r}: {self.attempts} writes in a row conflicted with other calls "
            "of this conversation; the call was not recorded: retry it"
        )

    def _again(self, turn: Turn) -> _Step[None]:
        """After a lost race: load the conversation again and plan the call on it (the served role stays)."""
        stored = yield ("read", turn.name)
        turn.retry = self._retry(stored, turn.key)
        turn.stored = stored
        turn.plan = stored.conv.core.plan(
            stored.conv, turn.messages, side=turn.side or turn.retry, headers=turn.headers
        )

    def _update(
        self, name: str, change: Callable[[Stored], T | None], lines: Lines | None, create: bool = False
    ) -> _Step[tuple[T | None, Stored]]:
        for _ in range(self.attempts):
            stored = yield ("read", name)
            if stored.version == 0 and self.store is not None and not create:
                return None, stored
            done = change(stored)
            if done is None:
                return None, stored
            new = Stored(stored.conv, stored.conv.version, stored.key, stored.lines)
            if lines is not None:
                new.lines = list(lines(stored, None))
            if (yield ("write", name, stored.version, new)):
                return done, new
        raise Conflict(
            f"store {self.url}: session {name!r}: {self.attempts} writes in a row conflicted with other calls "
            "of this conversation; nothing was changed: try again"
        )

    def _drive(self, step: _Step[T]) -> T:
        try:
            ask = next(step)
            while True:
                ask = step.send(self.read(ask[1]) if ask[0] == "read" else self.write(*ask[1:]))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _adrive(self, step: _Step[T]) -> T:
        try:
            ask = next(step)
            while True:
                got: Any = await (self._aread(ask[1]) if ask[0] == "read" else self._awrite(*ask[1:]))
                ask = step.send(got)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # A store call is made at once when the store can make it without waiting (`nowait`: memory://, SQLite
    # whose lock is free), else in a thread: handing a call to a thread cost ~350 us of CPU per call at c=1
    # (bench_gateway.py: the event loop and the thread woken, on cold caches), SQLite's read or
    # compare-and-set ~15 us here. Parsing rows (or taking the one kept parsed) and writing them out stay
    # here either way: CPU work, like the judging around them.

    async def _call(self, op: str, *args: Any) -> Any:
        assert self.store is not None
        fn = getattr(self.store, op)
        if getattr(self.store, "nowait", False):
            try:
                return fn(*args, wait=False)
            except Busy:  # another connection holds the lock: wait for it, off the event loop
                pass
        return await self.offload(fn, *args)

    async def _aread(self, name: str) -> Stored:
        if self.store is None:
            return self.read(name)
        return self.stored(name, await self._call("read", name))

    async def _awrite(self, name: str, expected: int, stored: Stored) -> bool:
        if self.store is None:
            return self.write(name, expected, stored)
        row = self._row(stored, expected)
        if not await self._call("write", name, expected, row):
            return False
        self._wrote(name, stored, row)
        return True

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` (a blocking store call) off the event loop, within the loop's timeout."""
        if self._run is not None:
            return await self._run(fn, *args)  # type: ignore[no-any-return]
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), self.timeout)
        except TimeoutError:
            assert self.store is not None
            raise StoreError(
                f"store {self.store.url}: no answer within {self.timeout:g} s: is it down, or locked by another "
                "process? Retry the call once the store answers.",
                store=self.store.url,
            ) from None

    # -- the API: sync --

    def load(self, name: str) -> Stored:
        """Conversation `name` as stored (a new one at version 0 when there is none)."""
        return self.read(name)

    def begin(
        self,
        name: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        side: bool = False,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Turn:
        """Load conversation `name` and plan a call with `messages` (OpenAI-shaped); nothing is written.
        `request_id`, when the client gives one, is the call's idempotency key instead of its messages."""
        return self._drive(self._begin(name, messages, side, request_id, headers))

    def commit(
        self,
        turn: Turn,
        *,
        role: str,
        model: str,
        reply: Mapping[str, Any] | None,
        tools: Sequence[Mapping[str, Any]] = (),
        usage: Usage | None = None,
        latency: float | None = None,
        retries: int = 0,
        lines: Lines | None = None,
    ) -> Committed:
        """Settle `turn` as served by `role` with `reply`, and write it; a lost race plans it again on the
        newer state (`turn` is updated) and settles it there. `lines(stored, judged)` gives the front end's
        own row lines for each attempt. `Conflict` when every attempt lost: nothing was recorded."""
        return self._drive(self._commit(turn, role, model, reply, tools, usage, latency, retries, lines))

    def update(
        self, name: str, change: Callable[[Stored], T | None], *, lines: Lines | None = None, create: bool = False
    ) -> tuple[T | None, Stored]:
        """Change a stored conversation outside a call (close it, fire an event by hand): `change(stored)`
        mutates `stored.conv` and returns what to give back, or None to write nothing (as does a missing
        row, unless `create`: then the change is made to a new conversation and stored); retried on the
        newer state after a lost race."""
        return self._drive(self._update(name, change, lines, create))

    # -- the API: async (the same steps; each store call off the event loop) --

    async def aload(self, name: str) -> Stored:
        return await self._aread(name)

    async def abegin(
        self,
        name: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        side: bool = False,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        digest: str | None = None,
    ) -> Turn:
        """`begin`, each store call awaited off the event loop. `digest`: the messages' digest as a front end
        that read them as bytes took it (the gateway: `lwfsm.gateway.intake`), instead of `call_key`'s."""
        return await self._adrive(self._begin(name, messages, side, request_id, headers, digest))

    async def acommit(
        self,
        turn: Turn,
        *,
        role: str,
        model: str,
        reply: Mapping[str, Any] | None,
        tools: Sequence[Mapping[str, Any]] = (),
        usage: Usage | None = None,
        latency: float | None = None,
        retries: int = 0,
        lines: Lines | None = None,
    ) -> Committed:
        return await self._adrive(self._commit(turn, role, model, reply, tools, usage, latency, retries, lines))

    async def aupdate(
        self, name: str, change: Callable[[Stored], T | None], *, lines: Lines | None = None, create: bool = False
    ) -> tuple[T | None, Stored]:
        return await self._adrive(self._update(name, change, lines, create))
