"""sqlite:///path.db: the embedded store (one host, several processes), stdlib sqlite3 in WAL mode.

`sqlite:///sessions.db` is relative to the working directory, `sqlite:////var/lib/x.db` absolute
(SQLAlchemy's convention). Compare-and-set is one statement that writes only where the row still
has the expected version (SQLite runs it under its write lock), so two processes cannot both move a
row from version v to v+1.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TypeVar

from ..errors import StoreError
from .base import Busy, Row

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    expires REAL
)
"""


_UPDATE = """
UPDATE {table} SET version = ?, data = ?, expires = ?
WHERE id = ? AND version = ? AND (expires IS NULL OR expires > ?)
"""
_INSERT = """
INSERT INTO {table} (id, version, data, expires) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET version = excluded.version, data = excluded.data, expires = excluded.expires
WHERE {table}.expires IS NOT NULL AND {table}.expires <= ?
"""


class SQLiteStore:
    """One connection per thread that uses the store (so a write waiting for another process's lock
    holds up no read: WAL readers never wait); other processes open their own.

    `read` and `write` with `wait=False` (`nowait`) use a second connection of the thread that never
    waits for a lock: held by another connection, they raise `Busy` having done nothing, as does a write
    that would first sweep expired rows (work that grows with the store). Made so, a call costs ~15 us on
    the caller's thread where handing it to a thread cost ~350 us of CPU (the event loop and the thread
    woken, on cold caches: bench_gateway.py at c=1). Such a connection checkpoints the WAL on commit as
    SQLite does by default (every ~1,000 pages: a few ms, with a sync to disk): in a thread racing the
    writes, a checkpoint never caught up and the WAL grew without bound."""

    nowait = True

    def __init__(self, url: str, *, ttl: float | None = None, timeout: float = 30.0, table: str = "sessions") -> None:
        if not table.isidentifier():
            raise StoreError(f"store table name {table!r} must be an identifier", store=url)
        self.table = f"lwfsm_{table}"
        self._update, self._insert = _UPDATE.format(table=self.table), _INSERT.format(table=self.table)
        self.url = url
        self.ttl = ttl
        path = self.path_of(url)
        if not path:
            raise StoreError(f"store URL {url!r} names no database file: use sqlite:///path/to/file.db", store=url)
        if path == ":memory:":  # one database per connection, so one per thread
            raise StoreError(
                f"store URL {url!r}: SQLite gives each thread its own empty in-memory database, so a call served in "
                "another thread would find no table: use memory:// for a store held in this process",
                store=url,
            )
        # the file as opened, whatever the process's folder later (a relative path read again in a new
        # thread's connection after a chdir named another file)
        self.path = path if path.startswith((":", "file:")) else os.path.realpath(path)
        self.where = f"sqlite:{id(self) if path.startswith(':') else self.path}:{self.table}"
        self.timeout = timeout
        self._made: str | None = None  # the URI that opens the file without making it (`_connection`)
        if not path.startswith((":", "file:")):
            _create_private(self.path)
            self._made = "file:" + urllib.parse.quote(os.fsencode(self.path)) + "?mode=rw"  # (any bytes a path holds)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []  # every thread's connection, for close()
        self._lock = threading.Lock()  # guards _all
        deadline = time.monotonic() + timeout
        while True:
            try:
                db = self._connection(True)
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")  # kept by the file: set once
                db.execute(_SCHEMA.format(table=self.table))
                # the sweep of expired rows reads only those (it ran through every row)
                db.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_expires ON {self.table} (expires)")
                self._file = self._identity()
                break
            except sqlite3.Error as exc:
                # Processes opening one new file at once (--workers) each set it up: SQLite answers a
                # journal mode change "locked" at once, without its timeout (1 start in 15 failed so).
                if _locked(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                folder = os.path.dirname(path) or "."
                why = f"its folder {folder!r} does not exist: create it" if not os.path.isdir(folder) else str(exc)
                msg = f"store {url}: cannot open {path!r} as an lwfsm session store: {why}"
                raise StoreError(msg, store=url) from None

    def _identity(self) -> tuple[int, int] | None:
        """(device, inode) of the database file; None for an in-memory database, or no file at its path."""
        if self.path.startswith((":", "file:")):
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _same_file(self, session: str) -> None:
        """A file deleted (or replaced) while open still takes writes, which no one could read again: every
        turn from then on would be acknowledged and lost. Refused, before any write."""
        if self._file is not None and self._identity() != self._file:
            raise StoreError(
                f"store {self.url}: its file {self.path!r} was deleted or replaced while the store was open; "
                "nothing more is written to it: restart to open the file now at that path (a new one if none)",
                store=self.url,
                session=session,
            )

    def _connection(self, wait: bool) -> sqlite3.Connection:
        name = "db" if wait else "db_now"
        db: sqlite3.Connection | None = getattr(self._local, name, None)
        if db is None:
            # autocommit (isolation_level=None): each statement is its own transaction.
            # timeout: how long to wait for another process's write lock; a CAS holds it for microseconds.
            timeout = self.timeout if wait else 0
            # A file of ours is opened, never made: the file was made (0600) at the start, and one deleted
            # since would be made again readable by all, by the first thread to connect after.
            target, uri = (self.path, False) if self._made is None else (self._made, True)
            db = sqlite3.connect(target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=uri)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            setattr(self._local, name, db)
            with self._lock:
                self._all.append(db)
        return db

    @staticmethod
    def path_of(url: str) -> str:
        """The file of a sqlite:/// URL: sqlite:///rel.db -> rel.db; sqlite:////abs -> /abs."""
        path = url.split("://", 1)[1].split("?", 1)[0]
        return path[1:] if path.startswith("/") else path

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.url}>"

    def _run(self, what: str, session: str | None, fn: Callable[[sqlite3.Connection], T], wait: bool = True) -> T:
        db = None
        try:
            db = self._connection(wait)
            return fn(db)
        except sqlite3.Error as exc:
            if db is not None and db.in_transaction:
                db.execute("ROLLBACK")
            if not wait and _locked(exc):
                raise Busy(f"store {self.url}: {what}: {exc}") from None
            self._same_file(session or "")  # a file deleted since: say so, not SQLite's "unable to open"
            about = f" session {session!r}:" if session else ""
            raise StoreError(
                f"store {self.url}:{about} {what} failed: {exc}", store=self.url, session=session
            ) from None

    def read(self, session: str, *, wait: bool = True) -> Row | None:
        def go(db: sqlite3.Connection) -> Row | None:
            got = db.execute(
                f"SELECT data, version FROM {self.table} WHERE id = ? AND (expires IS NULL OR expires > ?)",
                (session, time.time()),
            ).fetchone()
            return Row(got[0], got[1]) if got else None

        return self._run("read", session, go, wait)

    def write(self, session: str, expected: int, row: Row, *, wait: bool = True) -> bool:
        # One statement each way (its own transaction): it holds the write lock for the statement only,
        # and costs a third of BEGIN IMMEDIATE + SELECT + INSERT + COMMIT (bench_gateway.py at c=1).
        if not wait and self.ttl and not expected:
            raise Busy(f"store {self.url}: a new row sweeps expired ones first: not made without waiting")

        def go(db: sqlite3.Connection) -> bool:
            self._same_file(session)
            now = time.time()
            expires = now + self.ttl if self.ttl else None
            if expected:
                cursor = db.execute(self._update, (row.version, row.data, expires, session, expected, now))
            else:  # absent, or expired (which reads as absent)
                if self.ttl:  # a new row: the moment to drop expired ones (list only reads)
                    db.execute(f"DELETE FROM {self.table} WHERE expires IS NOT NULL AND expires <= ?", (now,))
                cursor = db.execute(self._insert, (session, row.version, row.data, expires, now))
            return cursor.rowcount == 1

        return self._run("compare-and-set", session, go, wait)

    def list(self) -> list[str]:
        def go(db: sqlite3.Connection) -> list[str]:
            query = f"SELECT id FROM {self.table} WHERE expires IS NULL OR expires > ? ORDER BY id"
            return [r[0] for r in db.execute(query, (time.time(),))]

        return self._run("list", None, go)

    def delete(self, session: str) -> bool:
        def go(db: sqlite3.Connection) -> bool:
            self._same_file(session)
            return db.execute(f"DELETE FROM {self.table} WHERE id = ?", (session,)).rowcount > 0

        return self._run("delete", session, go)

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()


def _locked(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused for a lock another connection holds (SQLITE_BUSY, SQLITE_LOCKED)."""
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return bool(name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")))
    return "locked" in str(exc)


def _create_private(path: str) -> None:
    """Make a new database file readable by its owner only: its rows hold excerpts of tool output and
    people's messages, which sqlite3 would create readable by every user (0644 under the usual umask).
    SQLite gives its -wal and -shm files the database file's mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # the user's file, as they made it
    except OSError:
        pass  # a folder that is not there, or not writable: sqlite3 says so, naming the file, next
