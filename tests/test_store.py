"""Session stores: the protocol on every backend, and conversations moving between real processes.

Redis tests run against a real redis-server (tests/redis_server.py). Processes are real processes
(tests/store_worker.py), each with its own adapter and store connection.
"""

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lwfsm.provider.adapter", reason='needs the litellm extra: pip install "lwfsm[litellm]"')

from lwfsm import load_spec  # noqa: E402
from lwfsm.errors import StoreError  # noqa: E402
from lwfsm.provider.adapter import Adapter  # noqa: E402
from lwfsm.store import Row, Store, open_store, redact  # noqa: E402
from lwfsm.store.base import Busy  # noqa: E402

from .openai_server import Server  # noqa: E402
from .redis_server import PASSWORD, free_port, redis_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "lead_worker.yaml"
MODELS = {"lead": "openai/big", "worker": "openai/small"}
ENV = {"OPENAI_API_KEY": "sk-test-not-a-real-key"}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    yield from redis_server()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"  # tmp_path is absolute: sqlite:////tmp/...
    url: str = request.getfixturevalue("redis_url")
    return f"{url}?prefix=t{request.node.name.__hash__() & 0xFFFF}:"  # one namespace per test


@pytest.fixture(params=["sqlite", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store several processes can share."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    url: str = request.getfixturevalue("redis_url")
    return f"{url}?prefix=p{free_port()}:"


# --- the protocol ---------------------------------------------------------------------------


def test_compare_and_set_on_every_backend(any_url: str) -> None:
    store = open_store(any_url)
    assert isinstance(store, Store)
    assert store.read("c") is None
    assert store.write("c", 0, Row("one", 1))
    assert not store.write("c", 0, Row("again", 1)), "a create must fail when the row exists"
    assert not store.write("c", 2, Row("skip", 3)), "a write must fail when the version read is not the stored one"
    assert store.read("c") == Row("one", 1)
    assert store.write("c", 1, Row("two", 2))
    assert store.write("d", 0, Row("x", 1))
    assert store.list() == ["c", "d"]
    assert store.delete("c")
    assert not store.delete("c")
    assert store.list() == ["d"]
    assert store.read("c") is None
    store.close()


def test_a_redis_server_that_needs_a_password_says_so(redis_url: str) -> None:
    """redis-py's words are about its HELLO command; the message says what to put in the URL."""
    with pytest.raises(StoreError, match=r"the server needs a password: give it in the URL, redis://:PASSWORD@"):
        open_store(redis_url.replace(f":{PASSWORD}@", ""))
    with pytest.raises(StoreError, match="the server refused the user and password in the URL") as wrong:
        open_store(redis_url.replace(PASSWORD, "Wr0ng-pa55"))
    assert "Wr0ng-pa55" not in str(wrong.value)


def test_redis_ttl_and_prefix(redis_url: str) -> None:
    import redis

    store = open_store(redis_url + "?ttl=60&prefix=ttl-test:")
    assert store.write("c", 0, Row("one", 1))
    raw = redis.Redis.from_url(redis_url)
    assert 0 < raw.pttl("ttl-test:c") <= 60_000  # the server expires abandoned conversations
    assert raw.hget("ttl-test:c", "v") == b"1"
    raw.close()


def test_one_redis_server_spelt_two_ways_is_one_order(redis_url: str) -> None:
    """A conversation's commits and trace lines take turns by the rows they go to: `localhost` and
    `127.0.0.1` (or the database left out) name the same server's rows, another database or prefix others."""
    from lwfsm.turn.loop import ordered

    other = redis_url.replace("@127.0.0.1:", "@localhost:").removesuffix("/0")
    assert other != redis_url
    assert ordered(open_store(redis_url), "c") is ordered(open_store(other), "c")
    assert ordered(open_store(redis_url), "c") is not ordered(open_store(redis_url[:-1] + "1"), "c")
    assert ordered(open_store(redis_url), "c") is not ordered(open_store(redis_url + "?prefix=p:"), "c")
    assert open_store(redis_url).where == f"redis:127.0.0.1:{redis_url.rsplit(':', 1)[1]} lwfsm:session:"


def test_expired_rows_read_as_absent(tmp_path: Path) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path}/ttl.db"):
        store = open_store(url, ttl=1e-9)  # expired by the time it is read
        assert store.write("c", 0, Row("one", 1))
        assert store.read("c") is None
        assert store.list() == []
        assert store.write("c", 0, Row("new", 1)), "an expired row is no obstacle to a new conversation"
        assert store.write("d", 0, Row("one", 1))
        assert not store.write("d", 1, Row("two", 2)), "an expired row is gone: its version cannot be matched"
        assert store.write("d", 0, Row("new", 1)), "an expired row, never listed, is overwritten as absent"


# --- bad input ------------------------------------------------------------------------------


def test_unknown_scheme_and_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"unknown scheme 'postgres'.*sqlite:///") as info:
        open_store("postgres://u:hunter2@db/x")
    assert "hunter2" not in str(info.value)
    assert info.value.store == "postgres://u:***@db/x"
    with pytest.raises(StoreError, match="names no database file"):
        open_store("sqlite:///")
    with pytest.raises(StoreError, match="ttl must be a number"):
        open_store("memory://?ttl=soon")
    # a misspelt option is refused, never ignored (rows would be kept for ever)
    with pytest.raises(
        StoreError, match=r"unknown parameter 'tll' for sqlite:// \(known: ttl\) \(did you mean 'ttl'\?\)"
    ):
        open_store(f"sqlite:///{tmp_path}/s.db?tll=60")
    with pytest.raises(StoreError, match="unknown parameter 'prefix' for memory://"):
        open_store("memory://?prefix=x")
    not_a_db = tmp_path / "x.db"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"cannot open .*x\.db"):
        open_store(f"sqlite:///{not_a_db}")
    with pytest.raises(StoreError, match=r"cannot open .*s\.db.*: its folder '.*/no/such' does not exist: create it"):
        open_store(f"sqlite:///{tmp_path}/no/such/s.db")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cr#t@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),  # "#", "/", "?" not percent-encoded
        ("redis://app:s3c/ret@127.0.0.1:1/0", "redis://app:***@127.0.0.1:1/0"),
        (
            "redis+sentinel://app:s3c?ret@h1:26379,h2:26379/mymaster",
            "redis+sentinel://app:***@h1:26379,h2:26379/mymaster",
        ),
        ("rediss://app:p@ss@host:6380/2?ttl=60", "rediss://app:***@host:6380/2?ttl=60"),
        ("redis://host:6379/0?password=s3cr@t&ttl=5", "redis://host:6379/0?password=***&ttl=5"),
        # redis-py's other passwords in the query (they were shown as given)
        ("rediss://host:6380/0?ssl_password=k3y&ttl=5", "rediss://host:6380/0?ssl_password=***&ttl=5"),
        ("redis://host:6379/0?sentinel_password=s3nt", "redis://host:6379/0?sentinel_password=***"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("sqlite:///data/me@work/s.db", "sqlite:///data/me@work/s.db"),  # a path: no password in it
    ],
)
def test_a_password_with_url_characters_is_hidden_too(url: str, shown: str) -> None:
    """A password a person pasted without percent-encoding it: hidden in what lwfsm shows of the URL (a
    store error at start-up printed it when it held '#', '/' or '?')."""
    assert redact(url) == shown
    with pytest.raises(StoreError) as info:
        open_store(url.replace("redis", "nosuch", 1))
    assert "s3c" not in str(info.value)
    assert "p@ss" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cr#t@127.0.0.1:1/0",
        "redis://app:s3c/ret@127.0.0.1:1/0",
        "redis://app:s3c?ret@127.0.0.1:1/0",
        "redis+sentinel://app:s3c?ret@127.0.0.1:1/mymaster",
        "redis+cluster://app:s3c/ret@127.0.0.1:1",
        "redis://:s3c@w0rd/x@127.0.0.1:1/0",  # an "@" before the "/" too: redis-py named w0rd as the host
    ],
)
def test_a_password_that_ends_the_host_early_is_refused_without_a_piece_of_it(url: str) -> None:
    """redis-py read the host from the password's "/", "?" or "#" on, and its error quoted what came before
    ("Port could not be cast to integer value as 's3cr'")."""
    pytest.importorskip("redis")
    with pytest.raises(StoreError, match=r"an '@' after the host: .* must percent-encode them") as info:
        open_store(url)
    assert "s3c" not in str(info.value)
    assert "w0rd" not in str(info.value)


def test_a_redis_url_without_redis_py_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwfsm.cli import main

    monkeypatch.setitem(sys.modules, "redis", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "lwfsm.store.redis_store", raising=False)
    assert main(["sessions", "list", "--store", "redis://:hunter2@nohost:1"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "lwfsm sessions: store URL 'redis://:***@nohost:1': redis:// stores need redis-py: "
        'pip install "lwfsm[redis]"\n'
    )


def test_unreachable_redis_names_the_store_not_the_password() -> None:
    pytest.importorskip("redis")
    url = f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreError, match=r"connect failed.*Connection refused") as info:
        open_store(url)
    err = info.value
    assert PASSWORD not in str(err)
    assert PASSWORD not in repr(err)
    assert err.__cause__ is None  # redis-py's exception is not chained: it may hold the connection's password
    assert err.store == f"redis://app:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    assert PASSWORD not in str(pickle.loads(pickle.dumps(err)).__dict__)


def test_password_never_shown(redis_url: str) -> None:
    store = open_store(redis_url)
    assert PASSWORD not in repr(store)
    assert PASSWORD not in store.url
    assert redact(redis_url) == store.url
    assert ":***@" in store.url
    # redis-py takes the password as a query parameter too: hidden there as well, a wrong one named so
    host = redis_url.split("@", 1)[1]
    queried = open_store(f"redis://{host}?password={PASSWORD}&ttl=60")
    assert PASSWORD not in queried.url + repr(queried) + queried.where
    with pytest.raises(StoreError, match="connect failed") as refused:
        open_store(f"redis://{host}?password=not-{PASSWORD}")
    assert PASSWORD not in str(refused.value) + str(refused.value.store)
    # an "@" in a query's value is the value's, not the end of a password (such URLs were refused)
    at = open_store(f"redis://{host}?password={PASSWORD}&client_name=svc@box&prefix=team@prod:")
    assert at.url == f"redis://{host}?password=***&client_name=svc@box&prefix=team@prod:"
    assert at.prefix == "team@prod:"
    # a parameter redis-py does not take (its name spelt otherwise): named, with what lwfsm takes
    with pytest.raises(StoreError, match=r"does not take .*'Password'.*lwfsm's own are ttl") as refused:
        open_store(f"redis://{host}?Password={PASSWORD}")
    assert PASSWORD not in str(refused.value)
    adapter = Adapter(SPEC, MODELS, env=ENV, store=redis_url)
    assert PASSWORD not in repr(adapter.store)
    import redis

    raw = redis.Redis.from_url(redis_url)
    raw.set("lwfsm:session:foreign", "not a hash")
    with pytest.raises(StoreError, match="not an lwfsm session") as info:
        adapter.session("foreign")
    assert PASSWORD not in str(info.value)
    assert info.value.session == "foreign"
    raw.close()


def test_corrupt_and_foreign_rows_are_errors_and_stay(any_url: str) -> None:
    store = open_store(any_url)
    adapter = Adapter(SPEC, MODELS, env=ENV, store=store)
    for name, row in [
        ("garbage", Row("garbage", 1)),
        ("bad-json", Row("lwfsm-session/1 -\n{not json", 1)),
    ]:
        store.write(name, 0, row)
        with pytest.raises(StoreError) as info:
            adapter.session(name)
        assert info.value.session == name
        assert store.url in str(info.value)
        assert repr(name) in str(info.value)
        assert store.read(name) == row, "a bad row must not be overwritten"
    # a row written under other params: the restore refuses it (SnapshotError), named by store and session
    s = adapter.session("c-42")
    s.completion([{"role": "user", "content": "hi"}], mock_response="ok")
    before = store.read("c-42")
    other = Adapter(load_spec(SPEC).with_params({"lead_turns": 1}), MODELS, env=ENV, store=store)
    with pytest.raises(StoreError, match=r"session 'c-42': .*rules or params differ.*nothing was overwritten"):
        other.session("c-42")
    assert store.read("c-42") == before


def test_a_row_whose_version_disagrees_with_its_state_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    adapter = Adapter(SPEC, MODELS, env=ENV, store=url)
    adapter.session("c").completion([{"role": "user", "content": "hi"}], mock_response="ok")
    db = sqlite3.connect(tmp_path / "v.db")
    db.execute("UPDATE lwfsm_sessions SET version = 7")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="row says version 7 but its state says 1"):
        adapter.session("c")


# --- the adapter on a store -----------------------------------------------------------------


def test_a_redelivered_call_is_answered_from_the_store_and_not_counted(any_url: str) -> None:
    adapter = Adapter(SPEC, MODELS, env=ENV, store=any_url)
    s = adapter.session("dup")
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
    first = s.completion(msgs, mock_response="first")
    again = s.completion(msgs, mock_response="second")  # a client retry after a timeout
    assert again.choices[0].message.content == "first"
    assert s.last is not None
    assert s.last.replayed
    assert s.state().version == 1
    assert s.machine.turn == 0
    msgs += [{"role": "assistant", "content": first.choices[0].message.content}, {"role": "user", "content": "ok"}]
    s.completion(msgs, mock_response="next")
    assert s.state().version == 2
    assert s.machine.turn == 1
    # the same request id is the same call, whatever its messages
    s.completion([{"role": "user", "content": "x"}], mock_response="a", request_id="r-1")
    r = s.completion([{"role": "user", "content": "y"}], mock_response="b", request_id="r-1")
    assert r.choices[0].message.content == "a"
    assert s.state().version == 3


class Locker:
    """Another connection holding an SQLite file's write lock (as another process writing) until
    `release()`, or for 3 s at most: a call that waited for the lock instead of refusing at once would
    get it then, and succeed where it must have raised `Busy`."""

    def __init__(self, path: Path) -> None:
        import threading

        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("BEGIN IMMEDIATE")
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._hold)
        self.thread.start()

    def _hold(self) -> None:
        self.released.wait(3)
        self.db.execute("ROLLBACK")

    def release(self) -> None:
        self.released.set()
        self.thread.join()
        self.db.close()


def test_sqlite_without_waiting_refuses_a_held_lock_having_done_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = open_store(f"sqlite:///{path}")
    assert store.write("c", 0, Row("one", 1), wait=False)
    locker = Locker(path)
    with pytest.raises(Busy, match="locked"):
        store.write("c", 1, Row("two", 2), wait=False)
    assert store.read("c", wait=False) == Row("one", 1)  # WAL: a read needs no write lock
    locker.release()
    assert store.read("c") == Row("one", 1)  # the refused write did nothing
    assert store.write("c", 1, Row("two", 2), wait=False)
    assert store.read("c") == Row("two", 2)
    store.close()


@pytest.mark.parametrize("how", ["folder deleted", "file deleted", "file replaced"])
def test_sqlite_refuses_to_write_to_a_file_deleted_or_replaced_while_open(tmp_path: Path, how: str) -> None:
    """SQLite goes on writing to a file unlinked under it, which nobody can open again: every turn
    would be acknowledged and lost. The store refuses the write, naming the file and what to do."""
    import shutil

    path = tmp_path / "data" / "s.db"
    path.parent.mkdir()
    url = f"sqlite:///{path}"
    store = open_store(url)
    assert store.write("c", 0, Row("one", 1))
    assert store.write("c", 1, Row("two", 2), wait=False)
    if how == "folder deleted":
        shutil.rmtree(path.parent)
    elif how == "file deleted":
        path.unlink()
    else:
        other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
        other.close()
        os.replace(tmp_path / "other.db", path)
    for wait in (True, False):
        with pytest.raises(StoreError, match=f"its file '{path}' was deleted or replaced while the store was open"):
            store.write("c", 2, Row("three", 3), wait=wait)
    with pytest.raises(StoreError, match="restart to open the file now at that path"):
        store.delete("c")  # a delete too: it would answer for a file no one reads
    if how == "file deleted":
        # a thread's first connection made the file again, readable by all (0644), empty, kept at restart
        failed: list[BaseException] = []
        thread = threading.Thread(target=lambda: _caught(failed, lambda: store.read("c")))
        thread.start()
        thread.join()
        assert "was deleted or replaced while the store was open" in str(failed[0])
        assert not path.exists()
    store.close()
    if how != "file replaced":
        path.parent.mkdir(exist_ok=True)
        reopened = open_store(url)  # a restart begins a new file
        assert reopened.read("c") is None
        assert reopened.write("c", 0, Row("one", 1))
        reopened.close()


def test_the_loop_hands_a_call_that_would_wait_for_a_lock_to_a_thread_and_makes_the_others_at_once(
    tmp_path: Path,
) -> None:
    """SQLite (`nowait`): a read and a compare-and-set are made on the event loop while the lock is free;
    with another connection holding it, the write goes to the loop's runner (a thread), waits there, and
    is recorded once the lock is gone."""
    import asyncio

    from lwfsm import Engine, TurnCore
    from lwfsm.turn.loop import Loop

    path = tmp_path / "n.db"
    store = open_store(f"sqlite:///{path}")
    handed: list[str] = []
    locker: Locker | None = None

    async def runner(fn: Any, *args: Any) -> Any:
        handed.append(fn.__name__)
        if locker is not None:
            locker.release()
        return await asyncio.to_thread(fn, *args)

    loop = Loop(TurnCore(Engine(load_spec(SPEC))), store, run=runner)

    async def run() -> Any:
        nonlocal locker
        turn = await loop.abegin("c", [{"role": "user", "content": "fix it"}])
        locker = Locker(path)
        return await loop.acommit(turn, role=turn.plan.role, model="m", reply={"role": "assistant", "content": "x"})

    done = asyncio.run(run())
    assert handed == ["write"]
    assert done.stored.version == 1
    assert open_store(f"sqlite:///{path}").read("c") is not None
    store.close()


def test_writes_made_without_waiting_keep_the_wal_bounded(tmp_path: Path) -> None:
    """They checkpoint on commit as SQLite does (a checkpoint in a thread racing them never caught up:
    the WAL grew by every write, ~80 MB here)."""
    path = tmp_path / "w.db"
    store = open_store(f"sqlite:///{path}")
    for version in range(20_000):
        assert store.write("c", version, Row("x" * 3000 + str(version), version + 1), wait=False)
    assert os.path.getsize(f"{path}-wal") < 16 * 1024 * 1024
    assert store.read("c") == Row("x" * 3000 + "19999", 20_000)
    store.close()


def test_with_a_ttl_a_new_row_is_not_made_without_waiting(tmp_path: Path) -> None:
    """A new row first sweeps the expired ones: work that grows with the store, so not on an event loop."""
    store = open_store(f"sqlite:///{tmp_path}/t.db?ttl=60")
    with pytest.raises(Busy, match="sweeps expired"):
        store.write("c", 0, Row("one", 1), wait=False)
    assert store.read("c") is None  # nothing was done
    assert store.write("c", 0, Row("one", 1))
    assert store.write("c", 1, Row("two", 2), wait=False)  # an update sweeps nothing
    assert store.read("c", wait=False) == Row("two", 2)
    store.close()


def test_async_calls_commit_through_the_store(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite:///{tmp_path}/a.db"

    async def run() -> list[bool]:
        s = Adapter(SPEC, MODELS, env=ENV, store=url).session("c")
        msgs = [{"role": "user", "content": "hi"}]
        await s.acompletion(msgs, mock_response="one")
        await s.acompletion([*msgs, {"role": "assistant", "content": "one"}], mock_response="two")
        again = await s.acompletion(msgs, mock_response="never")  # not the last call: a new call
        assert s.last is not None
        return [s.last.replayed, again.choices[0].message.content == "never"]

    assert asyncio.run(run()) == [False, True]
    state = Adapter(SPEC, MODELS, env=ENV, store=url).session("c").state()
    assert state.version == 3
    assert state.machine.turn == 2


def test_session_resumes_by_id_and_side_calls_keep_the_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    msgs = [{"role": "user", "content": "hi"}]
    Adapter(SPEC, MODELS, env=ENV, store=url).session("c").completion(msgs, mock_response="ok")
    s = Adapter(SPEC, MODELS, env=ENV, store=url).session("c")  # a restarted process
    assert s.state().version == 1
    assert s.conversation.pending is not None
    s.completion([{"role": "user", "content": "title?"}], side=True, mock_response="A title")
    assert s.state().version == 2
    s.completion(msgs, mock_response="again")
    assert s.last is not None
    assert s.last.replayed, "a side call in between does not make a redelivery new"


class Racing:
    """A real memory store whose next write first lets `rival` run: another writer wins the race."""

    def __init__(self) -> None:
        from lwfsm.store.memory import MemoryStore

        self.inner = MemoryStore()
        self.url = self.inner.url
        self.rival: Any = None
        self.read, self.list, self.delete, self.close = (
            self.inner.read,
            self.inner.list,
            self.inner.delete,
            self.inner.close,
        )

    def write(self, session: str, expected: int, row: Row) -> bool:
        rival, self.rival = self.rival, None
        if rival is not None:
            rival()
        return self.inner.write(session, expected, row)


def test_a_lost_race_keeps_the_reply_in_hand_and_settles_it_on_the_newer_state() -> None:
    store = Racing()
    spec = load_spec(SPEC).with_params({"failure_threshold": 1})
    a = Adapter(spec, MODELS, env=ENV, store=store).session("c")
    b = Adapter(spec, MODELS, env=ENV, store=store).session("c")
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for _ in range(3):  # the lead's three turns
        a.completion(msgs, mock_response="plan")
        msgs += [{"role": "assistant", "content": "plan"}, {"role": "user", "content": "fine"}]
    # b serves the worker's first turn while a's call is out; a's messages then judge b's turn a failure
    store.rival = lambda: b.completion([*msgs, {"role": "assistant", "content": "x"}], mock_response="w")
    later = [*msgs, {"role": "assistant", "content": "w"}, {"role": "user", "content": "that's wrong"}]
    r = a.completion(later, mock_response="fixed")
    # The policy of lwfsm.turn.loop: the worker's reply in hand is kept (not called again on the lead),
    # and recorded on the newer state (b's turn judged a failure: fallback) as served by the worker.
    assert a.last is not None
    assert a.last.role == "worker"
    assert r.model == "small"
    assert r.choices[0].message.content == "fixed"
    state = Adapter(spec, MODELS, env=ENV, store=store).session("c").state()
    assert state.version == 5
    assert state.machine.turn == 4
    assert state.machine.state == "fallback"
    assert state.pending is not None
    assert (state.pending.turn, state.pending.state, state.pending.role) == (5, "fallback", "worker")
    assert sum(row.calls for row in state.ledger.rows) == 5  # every call counted once


# --- the CLI --------------------------------------------------------------------------------


def test_sessions_cli_list_show_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm.cli import main

    url = f"sqlite:///{tmp_path}/cli.db"
    s = Adapter(SPEC, MODELS, env=ENV, store=url).session("conv-1")
    s.completion([{"role": "user", "content": "hi"}], mock_response="ok")
    open_store(url).write("junk", 0, Row("garbage", 1))
    capsys.readouterr()
    assert main(["sessions", "list", "--store", url]) == 1  # the junk row is reported, the rest listed
    out, err = capsys.readouterr()
    assert out.splitlines()[2].split() == ["conv-1", "1", "lead_worker", "v1", "lead_initial", "0"]
    assert "session 'junk'" in err
    assert "not an lwfsm session" in err
    assert main(["sessions", "show", "conv-1", "--store", url, "--spec", str(SPEC)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"]["version"] == 1
    assert shown["last_call"].startswith("m:")
    assert main(["sessions", "show", "conv-1", "--store", url, "--spec", str(SPEC), "--set", "lead_turns=1"]) == 1
    assert "rules or params differ" in capsys.readouterr().err
    # a row damaged in the store: the field at fault is named, with a spec to check against or without
    damaged = open_store(url).read("conv-1")
    assert damaged is not None
    assert '"side_calls":0' in damaged.data
    open_store(url).write("damaged", 0, Row(damaged.data.replace('"side_calls":0', '"side_calls":-3', 1), 1))
    for spec in ([], ["--spec", str(SPEC)]):
        assert main(["sessions", "show", "damaged", "--store", url, *spec]) == 1
        err = capsys.readouterr().err
        assert "not an lwfsm conversation state: ledger.rows.0.side_calls: Input should be greater than" in err
    open_store(url).delete("damaged")
    # ids after an option are ids too (argparse alone called them unrecognized); an unknown option is not
    assert main(["sessions", "show", "--store", url, "conv-1"]) == 0
    assert json.loads(capsys.readouterr().out)["state"]["version"] == 1
    with pytest.raises(SystemExit) as usage:
        main(["sessions", "show", "--store", url, "conv-1", "--bogus"])
    assert usage.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert main(["sessions", "delete", "junk", "conv-1", "--store", url]) == 0
    assert open_store(url).list() == []
    assert main(["sessions", "delete", "conv-1", "--store", url]) == 1
    # a gateway's id puts a tag of the client's key first: the client's own name finds it in the message
    Adapter(SPEC, MODELS, env=ENV, store=url).session("k0123456789.demo1").completion(
        [{"role": "user", "content": "hi"}], mock_response="ok"
    )
    capsys.readouterr()
    assert main(["sessions", "show", "demo1", "--store", url]) == 1
    assert "no session 'demo1'; stored as 'k0123456789.demo1'" in capsys.readouterr().err
    assert main(["sessions", "show", "--store", url]) == 1
    assert "name at least one conversation id" in capsys.readouterr().err
    missing = tmp_path / "elsewhere" / "sessions.db"
    assert main(["sessions", "list", "--store", f"sqlite:///{missing}"]) == 1  # a wrong path, said so
    assert f"no such file '{missing}'" in capsys.readouterr().err
    assert not missing.parent.exists()  # and nothing was created there
    assert main(["sessions", "list", "--store", f"sqlite:///{tmp_path}"]) == 1
    assert "a folder, not a database file" in capsys.readouterr().err
    assert main(["sessions", "list", "--store", "sqlite:relative.db"]) == 1  # no traceback: the URL's mistake
    assert "unknown scheme 'sqlite:relative.db'" in capsys.readouterr().err
    assert main(["sessions", "list", "--store", f"redis://:{PASSWORD}@nohost.invalid:1/0"]) == 1
    assert PASSWORD not in capsys.readouterr().err


# --- processes ------------------------------------------------------------------------------


class Worker:
    """A store_worker.py process; `open` points it at a store and a conversation."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "store_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**env, "OPENAI_API_KEY": "sk-test"},
        )
        self.started = False

    def open(self, url: str, name: str, models: dict[str, Any] | None = None) -> None:
        if not self.started:
            assert self.answer() == {"started": True}
            self.started = True
        assert self.ask({"open": [url, name, models or MODELS]}) == {"ready": True}

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"worker exited with {self.proc.wait()}"
        out: dict[str, Any] = json.loads(line)
        return out

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.send(cmd)
        return self.answer()

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        elif self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)
        for f in (self.proc.stdin, self.proc.stdout):
            if f and not f.closed:
                f.close()


@pytest.fixture(scope="module")
def workers() -> Iterator[list[Worker]]:
    """Four worker processes for the whole module, started together (each imports LiteLLM once)."""
    pool = [Worker() for _ in range(4)]
    yield pool
    live = [w for w in pool if w.proc.poll() is None]  # the crash tests kill one each
    for w in live:  # all told at once: each takes a while to exit
        assert w.proc.stdin is not None
        w.proc.stdin.close()
    for w in live:
        w.stop()


CODE_BAD = "```json\n{,}\n```"
# (reply, the user's next message): three lead turns, two worker failures -> fallback, two lead
# successes -> recovery, a failure in recovery, a broken code block, back to the worker
SCRIPT = [
    ("plan", "fine"),
    ("plan more", "fine"),
    ("plan done", "fine"),
    ("work", "that's wrong"),
    ("work", "try again"),
    ("lead fixes", "fine"),
    ("lead fixes more", "fine"),
    ("worker again", "that's wrong"),
    (CODE_BAD, "hm"),
    ("lead", "fine"),
    ("lead", "fine"),
    ("worker", "fine"),
    ("worker", "fine"),
]


def scripted_calls() -> Iterator[tuple[list[dict[str, Any]], str]]:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "start"}]
    for reply, follow in SCRIPT:
        yield list(msgs), reply
        msgs += [{"role": "assistant", "content": reply}, {"role": "user", "content": follow}]


def reference_roles() -> tuple[list[str], list[str]]:
    s = Adapter(SPEC, MODELS, env=ENV).session()  # one process, no store: the reference
    roles = []
    for msgs, reply in scripted_calls():
        s.completion(msgs, mock_response=reply)
        assert s.last is not None
        roles.append(s.last.role)
    return roles, [h.dest for h in s.machine.history]


def test_alternating_processes_serve_the_one_process_sequence(shared_url: str, workers: list[Worker]) -> None:
    roles, states = reference_roles()
    assert {"fallback", "recovery"} <= set(states), "the script must exercise fallback and recovery"
    a, b = workers[:2]
    for w in (a, b):
        w.open(shared_url, "conv")
    served = []
    for i, (msgs, reply) in enumerate(scripted_calls()):
        w, other = (a, b) if i % 2 == 0 else (b, a)
        got = w.ask({"messages": msgs, "mock": reply})
        served.append(got["role"])
        if i == 5:  # the client retries this call on the other host: same reply, not counted again
            again = other.ask({"messages": msgs, "mock": "something else"})
            assert again == {**got, "replayed": True}
    assert served == roles
    state = Adapter(SPEC, MODELS, env=ENV, store=shared_url).session("conv").state()
    assert state.version == len(SCRIPT)
    assert state.machine.turn == len(SCRIPT) - 1


def test_four_processes_race_on_one_conversation(shared_url: str, workers: list[Worker]) -> None:
    for w in workers:
        w.open(shared_url, "race")
    for i, w in enumerate(workers):  # all four start together: their calls interleave
        w.send({"race": 250, "tag": f"p{i}"})
    assert [w.answer() for w in workers] == [{"done": 250}] * 4
    state = Adapter(SPEC, MODELS, env=ENV, store=shared_url).session("race").state()
    # every call committed once; every call but the last judged the turn before it
    assert state.version == 1000
    assert sum(r.calls for r in state.ledger.rows) == 1000
    assert state.machine.turn == 999
    assert state.pending is not None
    assert state.pending.turn == 1000


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def test_a_process_killed_mid_call_leaves_the_store_consistent(
    shared_url: str, server: Server, workers: list[Worker]
) -> None:
    bind = {"api_base": server.base, "api_key_env": "TEST_KEY"}
    models = {r: {"model": f"openai/crash-{r}", **bind} for r in ("lead", "worker")}
    calls = list(scripted_calls())[:5]
    a, b = [w for w in workers if w.proc.poll() is None][:2]  # the first of them is killed below
    a.open(shared_url, "crash", models)
    for msgs, _ in calls[:2]:
        a.ask({"messages": msgs})
    store = open_store(shared_url)
    before = store.read("crash")
    assert before is not None
    assert before.version == 2
    n = server.count("crash-lead")
    server.script("crash-lead", {"delay": 20})  # the third call hangs in the model: read done, not committed
    a.send({"messages": calls[2][0]})
    deadline = time.monotonic() + 20
    while server.count("crash-lead") == n:  # wait until the request is in flight
        assert time.monotonic() < deadline, "the worker never called the model"
        time.sleep(0.005)
    a.stop(kill=True)
    assert store.read("crash") == before, "a killed call commits nothing"
    b.open(shared_url, "crash", models)
    served = [b.ask({"messages": msgs})["role"] for msgs, _ in calls[2:]]
    assert served == ["lead", "worker", "worker"]
    after = store.read("crash")
    assert after is not None
    assert after.version == 5


def test_processes_opening_one_new_sqlite_file_at_once_all_open_it(tmp_path: Path) -> None:
    """`--workers` opens the store in each process at once: each sets up the new file, and SQLite answers
    a journal mode change "locked" without waiting (1 round in 15 failed so)."""
    failed: list[BaseException] = []

    def one(url: str) -> None:
        try:
            open_store(url).close()
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)

    for i in range(100):
        threads = [threading.Thread(target=one, args=(f"sqlite:///{tmp_path}/new{i}.db",)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failed == []


def test_an_sqlite_memory_database_is_refused_naming_memory_store() -> None:
    """sqlite:///:memory: is one database per connection, and each thread has its own: a second thread's
    call failed with 'no such table'."""
    with pytest.raises(StoreError, match="use memory:// for a store held in this process"):
        open_store("sqlite:///:memory:")


def test_sqlite_opens_a_file_whose_path_is_not_utf8(tmp_path: Path) -> None:
    """A path of bytes that are not UTF-8 (os.fsdecode's surrogates): the URI that opens the file without
    making it raised UnicodeEncodeError where a store error, or the store, was due."""
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    os.mkdir(folder)
    store = open_store(f"sqlite:///{folder}/s.db")
    assert store.write("c", 0, Row("one", 1))
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(store.read("c")))  # a thread's own connection
    thread.start()
    thread.join()
    assert got == [Row("one", 1)]
    store.close()


def _caught(into: list[BaseException], fn: Callable[[], object]) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
        into.append(exc)
