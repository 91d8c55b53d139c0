"""The conversation loop (lwfsm.turn.loop): the one compare-and-set policy, idempotency key and
lost-race behaviour every front end uses, on a real SQLite file, a memory:// store and in memory."""

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lwfsm import Engine, TurnCore, load_spec
from lwfsm.errors import ConfigError, Conflict, SessionBusy, StoreError
from lwfsm.store import Row, open_store
from lwfsm.store.base import Store
from lwfsm.turn import Usage
from lwfsm.turn.loop import ATTEMPTS, WARM_BYTES, Loop, Stored

GO = [{"role": "user", "content": "fix the parser"}]
BROKEN = "```python\ndef f(:\n```"  # code that does not parse: the turn that gave it failed


def core(**params: int) -> TurnCore:
    return TurnCore(Engine(load_spec("lead_worker", params=params or None)))


def said(*turns: tuple[str, str]) -> list[dict[str, Any]]:
    """The opening, then (assistant reply, user's answer) pairs."""
    out = list(GO)
    for reply, answer in turns:
        out += [{"role": "assistant", "content": reply}, {"role": "user", "content": answer}]
    return out


def commit(loop: Loop, turn: Any, text: str, tokens: int = 10) -> Any:
    return loop.commit(
        turn,
        role=turn.plan.role,
        model=f"m/{turn.plan.role}",
        reply={"role": "assistant", "content": text},
        usage=Usage(prompt_tokens=tokens, completion_tokens=1),
    )


@pytest.fixture(params=["sqlite", "memory", "held"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A factory of (loop, loop) pairs over one store: two front ends (processes) sharing a conversation."""
    kind = request.param
    url = f"sqlite:///{tmp_path}/loop.db" if kind == "sqlite" else "memory://"
    shared = open_store(url) if kind == "memory" else None
    opened: list[Store] = []

    def make(c: TurnCore) -> tuple[Loop, Loop]:
        if kind == "held":  # no store: one loop holds the conversation; two calls of it race all the same
            one = Loop(c)
            return one, one
        if kind == "memory":
            assert shared is not None
            return Loop(c, shared), Loop(c, shared)
        a, b = open_store(url), open_store(url)  # two connections, as two processes have
        opened.extend((a, b))
        return Loop(c, a), Loop(c, b)

    yield make
    for s in opened:
        s.close()


def test_two_writers_racing_both_commit_and_the_loser_keeps_the_role_that_served(stores: Any) -> None:
    c = core(lead_turns=0, failure_threshold=1)
    a, b = stores(c)
    commit(a, a.begin("c", GO), "first try")  # turn 1, the worker's
    # Both calls are planned on version 1 (turn 1 went fine: the worker again); b is recorded first,
    # with a reply whose code does not parse.
    ta = a.begin("c", said(("first try", "go on")))
    tb = b.begin("c", said(("first try", "go on, please")))  # another call (other messages), not a retry
    assert ta.plan.role == tb.plan.role == "worker"
    assert ta.plan.version == tb.plan.version == 1
    won = commit(b, tb, BROKEN)
    assert (won.lost, won.judged.event) == (0, "turn_completed")
    lost = commit(a, ta, "a's answer")
    # Planned again on b's state: a's messages now judge b's turn (a failure), which moves the machine to
    # the lead's fallback; a's worker answer (already with its client) is recorded as served by the worker.
    assert lost.lost == 1
    assert lost.judged.pending.reply["content"] == BROKEN
    assert lost.judged.event == "failure"
    assert ta.plan.role == "lead"  # what the newer state would have chosen
    state = a.load("c").conv.state()
    assert state.version == 3
    assert state.machine.state == "fallback"
    assert state.machine.turn == 2  # turn 1 and b's turn judged, each once
    assert state.pending is not None
    assert (state.pending.turn, state.pending.state, state.pending.role) == (3, "fallback", "worker")
    assert state.pending.reply["content"] == "a's answer"
    assert state.ledger.calls == 3  # every call counted once, under the model that served it
    assert [(r.role, r.calls) for r in state.ledger.rows] == [("worker", 3)]


def test_a_retried_call_is_counted_once(tmp_path: Path) -> None:
    loop = Loop(core(), open_store(f"sqlite:///{tmp_path}/r.db"))
    commit(loop, loop.begin("c", GO), "plan")
    again = loop.begin("c", GO)  # the client retried: same messages, its turn still pending
    assert again.retry
    assert again.plan.side  # not a turn: nothing judged
    done = commit(loop, again, "plan, said again", tokens=7)
    assert done.judged is None
    state = loop.load("c").conv.state()
    assert state.machine.turn == 0
    assert state.pending is not None
    assert (state.pending.turn, state.pending.reply["content"]) == (1, "plan, said again")  # what the client saw
    assert [(r.calls, r.side_calls) for r in state.ledger.rows] == [(2, 1)]  # each call once; one not a turn
    assert loop.load("c").key == again.key  # the key stays: a third delivery is a retry too
    assert loop.begin("c", GO).retry
    # A side call keeps the last turn call's key; the next messages are a new turn.
    commit(loop, loop.begin("c", [{"role": "user", "content": "a title?"}], side=True), "Title")
    assert loop.begin("c", GO).retry
    nxt = loop.begin("c", said(("plan, said again", "go")))
    assert not nxt.retry
    assert commit(loop, nxt, "more").judged is not None
    # The client's request id, when it gives one, is the key whatever the messages.
    first = loop.begin("c", said(("plan, said again", "go"), ("more", "go")), request_id="r-1")
    commit(loop, first, "done")
    assert loop.begin("c", [{"role": "user", "content": "other words"}], request_id="r-1").retry
    assert not loop.begin("c", said(("plan, said again", "go"), ("more", "go")), request_id="r-2").retry
    assert loop.load("c").conv.state().machine.turn == 2


def test_a_duplicate_delivery_that_wins_the_race_makes_the_other_a_retry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/d.db"
    a, b = Loop(core(), open_store(url)), Loop(core(), open_store(url))
    commit(a, a.begin("c", GO), "plan")
    msgs = said(("plan", "go"))
    ta, tb = a.begin("c", msgs), b.begin("c", msgs)  # one call delivered twice, to two processes
    commit(b, tb, "from b")
    done = commit(a, ta, "from a")
    assert (done.lost, done.judged, ta.retry) == (1, None, True)
    state = a.load("c").conv.state()
    assert state.machine.turn == 1  # the turn was judged once
    assert [(r.calls, r.side_calls) for r in state.ledger.rows] == [(3, 1)]  # each delivery once, one not a turn


class Refusing:
    """A real memory store whose writes all lose: another writer is always first."""

    def __init__(self) -> None:
        self.inner = open_store("memory://")
        self.url, self.read, self.list, self.delete, self.close = (
            self.inner.url,
            self.inner.read,
            self.inner.list,
            self.inner.delete,
            self.inner.close,
        )
        self.writes = 0

    def write(self, session: str, expected: int, row: Row) -> bool:
        self.writes += 1
        return False


def test_a_call_that_loses_every_race_is_a_conflict_and_records_nothing() -> None:
    store = Refusing()
    loop = Loop(core(), store)
    turn = loop.begin("c", GO)
    with pytest.raises(Conflict, match=rf"store memory://: session 'c': {ATTEMPTS} writes in a row conflicted"):
        commit(loop, turn, "lost")
    assert store.writes == ATTEMPTS
    assert store.list() == []


def test_many_calls_racing_on_one_sqlite_conversation_are_all_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/many.db"
    c = core()
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        store = open_store(url)
        loop = Loop(c, store)
        try:
            for k in range(25):
                commit(loop, loop.begin("c", [{"role": "user", "content": f"{tag} {k}"}]), "ok")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = Loop(c, open_store(url)).load("c").conv.state()
    assert state.version == 50
    assert state.ledger.calls == 50
    assert state.machine.turn == 49


class Stalled:
    """A memory store whose reads wait for `go`: a store that stopped answering."""

    def __init__(self) -> None:
        self.inner = open_store("memory://")
        self.url = "sqlite:///stalled.db"  # and no `nowait`: the loop must not call it inline
        self.go = threading.Event()
        self.write, self.list, self.delete, self.close = (
            self.inner.write,
            self.inner.list,
            self.inner.delete,
            self.inner.close,
        )

    def read(self, session: str) -> Row | None:
        self.go.wait(10)
        return self.inner.read(session)


def test_async_calls_keep_store_io_off_the_event_loop_within_the_timeout() -> None:
    store = Stalled()
    loop = Loop(core(), store, timeout=0.3)

    async def run() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.ensure_future(tick())
        with pytest.raises(StoreError, match="no answer within 0.3 s"):
            await loop.abegin("c", GO)
        ticker.cancel()
        store.go.set()  # the store answers again: the same steps, each store call awaited
        turn = await loop.abegin("c", GO)
        done = await loop.acommit(turn, role=turn.plan.role, model="m", reply={"role": "assistant", "content": "x"})
        assert done.stored.version == 1
        return ticks

    started = time.perf_counter()
    assert asyncio.run(run()) > 5  # the event loop ran while the store stalled
    assert time.perf_counter() - started < 5


def test_the_warm_cache_is_bounded_in_bytes() -> None:
    loop = Loop(core(), open_store("memory://"))
    conv = loop.core.start()
    big = "x" * (WARM_BYTES // 10)
    for n in range(40):  # 40 conversations of 6.4 MB rows: 256 MB, were all kept
        loop._keep(f"c{n}", Stored(conv, 1, None, (), big + str(n)))
    assert loop._warm_bytes <= WARM_BYTES
    assert loop._warm_bytes == sum(len(s.text or "") for s in loop._warm.values())
    assert "c39" in loop._warm
    loop._keep("huge", Stored(conv, 1, None, (), "x" * WARM_BYTES))  # larger than an eighth: not kept at all
    assert "huge" not in loop._warm


def test_framework_fronts_share_a_stored_conversation_through_the_loop(tmp_path: Path) -> None:
    from lwfsm.turn.front import Front

    url = f"sqlite:///{tmp_path}/front.db"
    models = {"lead": "big", "worker": "small"}
    a, b = (Front("lead_worker", models, store=open_store(url), name="c", turn_unit="call") for _ in range(2))
    reply = {"role": "assistant", "content": "plan"}
    a.end(a.begin(GO), model="big", reply=reply)
    ca, cb = a.begin(said(("plan", "go"))), b.begin(said(("plan", "go on")))  # both planned on version 1
    b.end(cb, model="big", reply=reply)
    judged = a.end(ca, model="big", reply=reply)  # lost the race: settled on b's state, judging b's turn
    assert judged is not None
    assert judged.pending.turn == 2
    assert ca.turn.plan.version == 2
    state = Front("lead_worker", models, store=open_store(url), name="c", turn_unit="call").state()
    assert (state.version, state.machine.turn, state.ledger.calls) == (3, 2, 3)
    with pytest.raises(ConfigError, match="with a store, the conversation is the store's"):
        Front("lead_worker", models, store=open_store(url), state=state)


def test_a_conversation_has_one_order_per_rows_held_whatever_the_url_spelling(tmp_path: Path) -> None:
    """Commits and log lines of one conversation take turns by the rows they go to: one SQLite file spelt
    two ways was two orders (a trace written out of turn order), two memory stores were one (waits)."""
    from lwfsm.turn.loop import ordered

    (tmp_path / "sub").mkdir()
    plain, dotted = open_store(f"sqlite:///{tmp_path}/o.db"), open_store(f"sqlite:///{tmp_path}/sub/../o.db")
    assert ordered(plain, "c") is ordered(dotted, "c")
    assert ordered(plain, "c") is not ordered(plain, "d")
    assert ordered(plain, "c") is not ordered(open_store(f"sqlite:///{tmp_path}/o.db", space="other"), "c")
    one, another = open_store("memory://"), open_store("memory://")
    assert ordered(one, "c") is not ordered(another, "c")


def test_a_sync_wait_for_an_order_its_own_event_loop_holds_is_refused_not_hung() -> None:
    """A store that calls back, on the event loop's thread, into a synchronous commit of a conversation
    whose async commit holds its order waited for good; it is refused. Threads still wait their turn."""
    from lwfsm.turn.loop import ordered

    store = open_store("memory://")
    order, said, took = ordered(store, "c"), [], []

    async def held() -> None:
        async with order:
            with pytest.raises(SessionBusy, match="would wait forever") as refused:
                with order:
                    pass
            said.append(str(refused.value))
            other = threading.Thread(target=lambda: order.__enter__() or took.append(1) or order.__exit__())
            other.start()
            await asyncio.to_thread(other.join, 0.2)
            assert not took  # another thread waits for its turn
        await asyncio.to_thread(other.join, 30)
        assert took == [1]

    t = threading.Thread(target=asyncio.run, args=(held(),), daemon=True)  # a hang fails the test
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert said == [said[0]]
    assert "conversation 'c'" in said[0]


def test_a_sync_wait_during_the_hand_off_to_a_coroutine_of_the_same_loop_is_refused_not_hung() -> None:
    """A coroutine waiting for the gate gets it in a worker thread, then runs again once the loop is free:
    a synchronous wait on the loop's thread in between waited for good (it was counted only once the
    coroutine ran again). And a thread that holds it synchronously, then awaits it, is refused too."""
    from lwfsm.turn.loop import Gate

    gate, said = Gate("session 's'"), []

    async def handed() -> None:
        async def other() -> None:
            async with gate:
                pass

        async with gate:
            waiting = asyncio.ensure_future(other())
            for _ in range(3):  # it starts, and waits for the gate in a worker thread
                await asyncio.sleep(0)
        while not gate.lock.locked():  # the worker took it for the coroutine, which cannot run again yet
            time.sleep(0.001)  # (the loop is held here)
        with pytest.raises(SessionBusy, match="would wait forever") as refused:
            with gate:
                pass
        said.append(str(refused.value))
        await waiting
        with gate:  # nobody of this loop holds or awaits it now: taken at once
            pass

    def held() -> None:
        async def inner() -> None:
            async with gate:
                pass

        with gate, pytest.raises(SessionBusy, match="from another thread") as refused:
            asyncio.run(inner())
        said.append(str(refused.value))

    for scenario in (lambda: asyncio.run(handed()), held):
        t = threading.Thread(target=scenario, daemon=True)  # a hang fails the test
        t.start()
        t.join(30)
        assert not t.is_alive()
    assert len(said) == 2
    assert not gate.lock.locked()


def test_a_relative_sqlite_path_stays_the_file_opened_after_the_process_changes_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    store = open_store("sqlite:///rel.db")
    monkeypatch.chdir(tmp_path / "b")
    t = threading.Thread(target=store.write, args=("c", 0, Row("x", 1)))  # a new thread: a new connection
    t.start()
    t.join()
    assert not (tmp_path / "b" / "rel.db").exists()
    assert open_store(f"sqlite:///{tmp_path}/a/rel.db").read("c") == Row("x", 1)


def test_an_async_wait_given_up_leaves_the_gate_to_a_sync_call_on_the_loops_thread() -> None:
    """A coroutine's wait cancelled (a timeout) while another thread held the gate: the worker thread took it
    later and gave it back through the event loop, which a synchronous call waiting for the gate on the
    loop's thread blocked: it waited for good. The worker now gives it back itself."""
    from lwfsm.turn.loop import Gate

    gate, held, release, took = Gate("conversation 'c'"), threading.Event(), threading.Event(), []

    def other() -> None:
        with gate:
            held.set()
            release.wait(30)

    async def given_up() -> None:
        async def enter() -> None:
            async with gate:
                pass

        threading.Thread(target=other).start()
        held.wait(30)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(enter(), 0.05)
        release.set()
        with gate:  # on the loop's thread: waits for the worker to give it back, not for the loop
            took.append(1)

    t = threading.Thread(target=asyncio.run, args=(given_up(),), daemon=True)  # a hang fails the test
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert took == [1]
    assert not gate.lock.locked()


def test_a_gate_let_go_on_another_thread_than_it_was_taken_on_forgets_its_coroutine() -> None:
    """An async generator's or a dropped task's `async with` may be finalised on another thread: the count
    stayed on the first thread, whose synchronous calls were then refused instead of waiting their turn."""
    from lwfsm.turn.loop import Gate

    gate = Gate("conversation 'c'")

    async def holder() -> None:
        async with gate:
            await asyncio.sleep(3600)

    loop = asyncio.new_event_loop()
    task = loop.create_task(holder())
    loop.run_until_complete(asyncio.sleep(0))  # it takes the gate
    assert gate.lock.locked()
    elsewhere = threading.Thread(target=task.get_coro().close)
    elsewhere.start()
    elsewhere.join()
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # (its coroutine was closed, not the task)
    loop.close()
    held, release = threading.Event(), threading.Event()

    def other() -> None:
        with gate:
            held.set()
            release.wait(30)

    threading.Thread(target=other).start()
    held.wait(30)
    threading.Timer(0.05, release.set).start()
    with gate:  # this thread's loop holds nothing: it waits for the other thread, it is not refused
        pass
    assert not gate.lock.locked()
