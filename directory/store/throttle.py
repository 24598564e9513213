"""Shared attempt counters (throttles) for every worker process and restarts.

Failed binds per address, activation attempts, anonymous access requests and the web
console's sign-ins are counted here, not in process memory: with `server.workers: N`
each worker sees the attempts the others counted, and a restart forgets nothing
within the window.

One row per attempt: throttle(key, at, expires), keys namespaced by their user
("bind-src:10.1.2.3", "activate-src:…", "activate-acct:<ndn>", "request-src:…",
"signin-src:…", "signin-user:…"), times from the wall clock (time.time(): every
process, later every host, must agree). Counting is a COUNT over an index range and
recording an INSERT, so a PostgreSQL store implements the same method set with the
same two statements (and a periodic DELETE of expired rows).

The rows are not precious: they live in a small SQLite file of their own next to the
store (`var/rollcall.db` -> `var/rollcall-throttle.db`) in WAL mode with
synchronous=OFF, so recording an attempt never waits on an fsync (the store itself
runs synchronous=FULL) and may be done on the reactor thread: each call costs a few
to some tens of microseconds (benchmarks: tests/unit/test_throttle.py measures it).
A crash of the machine may lose the last attempts; a crash of the process loses none.

The web console's signed-in sessions (store/base.py Sessions) live here too, in
web_session: read at every page of a signed-in person (a primary-key SELECT, ~20 µs)
and touched at most every ~30 s, so they must not cost an fsync either; losing them in
a crash of the machine only means signing in again.
"""
import os
import sqlite3
import threading
import time
from pathlib import Path

from .base import session_record, session_record_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS throttle(key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS throttle_key ON throttle(key, at);
CREATE INDEX IF NOT EXISTS throttle_expires ON throttle(expires);
CREATE TABLE IF NOT EXISTS web_session(key TEXT PRIMARY KEY, dn TEXT NOT NULL, data TEXT NOT NULL,
    created REAL NOT NULL, last_seen REAL NOT NULL, idle REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS web_session_expires ON web_session(expires);
"""
# this process's pid, kept up to date across forks: os.getpid() is a system call, and
# _conn() asks at every count (one per bind)
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
OPEN_LOCK = threading.Lock()


class WalWatch:
    """Whether a WAL-mode SQLite file can have had a commit since an earlier look, for
    the price of one pread instead of a statement: the wal-index header (the first 48
    octets of its -shm file), which every commit rewrites (its change counter, last
    frame, salts) and which SQLite's own `PRAGMA data_version` compares. look() gives
    the header, or None when it cannot tell (no -shm file, a short read): then ask
    SQLite. A header equal to an earlier look means no commit in between; a different
    one (a commit, or a read torn by a commit in progress) means ask SQLite. The file
    stays while this process holds a connection to the database (SQLite removes it
    only with the last one)."""

    def __init__(self, db_path: str):
        self.path = db_path + "-shm"
        self._fd = None
        self._pid = None

    def look(self) -> bytes | None:
        if self._pid != _PID[0]:  # not a descriptor opened before a fork
            try:
                self._fd, self._pid = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), _PID[0]
            except OSError:
                return None
        try:
            head = os.pread(self._fd, 48, 0)
        except OSError:
            return None
        return head if len(head) == 48 else None


def wal_watch(path) -> WalWatch | None:
    """A WalWatch for a database file (None for an in-memory one)."""
    text = str(path)
    if text == ":memory:" or text.startswith("file:") or not text:
        return None
    return WalWatch(text)  # SQLiteStore.throttle: one Throttle per store
PRUNE_EVERY = 64  # hits of this process between two prunes …
PRUNE_BATCH = 512  # … each deleting at most this many expired rows (bounded time per call)


def throttle_path(store_path) -> str:
    """The throttle file next to a store file (an in-memory store: in memory too)."""
    text = str(store_path)
    if text == ":memory:" or text.startswith("file:") or not text:
        return ":memory:"
    p = Path(text)
    return str(p.with_name(f"{p.stem}-throttle{p.suffix or '.db'}"))


class Throttle:
    """Attempt counters in a non-durable SQLite file, safe for threads and processes."""

    def __init__(self, path=":memory:"):
        self.path = str(path)
        self._memory = self.path == ":memory:"
        self._local = threading.local()
        self._lock = threading.Lock()  # only for the single shared in-memory connection
        self._shared = None
        self._hits = 0
        self._conn().executescript(SCHEMA)
        # a count of 0 stays 0 while nothing is committed to the file and the clock moves
        # on: (key, window) -> (header, now) of such a count, so the usual bind (no failed
        # attempts anywhere) costs a pread, not a query
        self._watch = None if self._memory else wal_watch(self.path)
        self._zero: dict = {}

    def _conn(self) -> sqlite3.Connection:
        if self._memory:
            if self._shared is None:
                self._shared = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            return self._shared
        conn = getattr(self._local, "conn", None)
        # a connection made before a fork (workers) is not used in the child
        if conn is None or self._local.pid != _PID[0]:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            self._local.conn, self._local.pid = conn, _PID[0]
        return conn

    def _run(self, fn):
        if self._memory:
            with self._lock:
                return fn(self._conn())
        return fn(self._conn())

    # -- the API (SQLiteStore.throttle_* delegates here; store/base.py Throttles)
    def hit(self, key: str, window: float, now: float | None = None) -> int:
        """Record one attempt under `key`; the attempts within the last `window`
        seconds, this one included."""
        now = time.time() if now is None else now

        def go(conn):
            conn.execute("INSERT INTO throttle(key, at, expires) VALUES (?, ?, ?)", (key, now, now + window))
            return conn.execute("SELECT count(*) FROM throttle WHERE key=? AND at>?",
                                (key, now - window)).fetchone()[0]

        n = self._run(go)
        self._hits += 1
        if self._hits % PRUNE_EVERY == 0:
            self.prune(now)
        return n

    def count(self, key: str, window: float, now: float | None = None) -> int:
        """The attempts under `key` within the last `window` seconds."""
        now = time.time() if now is None else now
        head = self._watch.look() if self._watch is not None else None  # before the count
        if head is not None:
            zero = self._zero.get((key, window))
            if zero is not None and zero[0] == head and now >= zero[1]:
                return 0
        n = self._run(lambda conn: conn.execute("SELECT count(*) FROM throttle WHERE key=? AND at>?",
                                                (key, now - window)).fetchone()[0])
        if head is not None and n == 0:
            if len(self._zero) >= 4096:
                self._zero.clear()
            self._zero[(key, window)] = (head, now)
        return n

    def admit(self, key: str, window: float, limit: int, now: float | None = None) -> bool:
        """Record an attempt if fewer than `limit` are within the window (True), else
        record nothing (False): one transaction, so concurrent workers cannot both
        take the last place."""
        now = time.time() if now is None else now

        def go(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = conn.execute("SELECT count(*) FROM throttle WHERE key=? AND at>?",
                                 (key, now - window)).fetchone()[0]
                if n < limit:
                    conn.execute("INSERT INTO throttle(key, at, expires) VALUES (?, ?, ?)",
                                 (key, now, now + window))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return n < limit

        ok = self._run(go)
        self._hits += 1
        if self._hits % PRUNE_EVERY == 0:
            self.prune(now)
        return ok

    def clear(self, key: str):
        """Forget every attempt under `key` (e.g. after a success)."""
        self._run(lambda conn: conn.execute("DELETE FROM throttle WHERE key=?", (key,)))

    def prune(self, now: float | None = None, batch: int = PRUNE_BATCH) -> int:
        """Delete up to `batch` rows whose window has passed; returns how many."""
        now = time.time() if now is None else now
        return self._run(lambda conn: conn.execute(
            "DELETE FROM throttle WHERE rowid IN (SELECT rowid FROM throttle WHERE expires<? LIMIT ?)",
            (now, batch)).rowcount)

    # -- web console sessions (store/base.py Sessions): not precious either; a crash of
    # the machine may lose the last ones (their people sign in again)
    def session_save(self, key: str, record: dict):
        r = record
        self._run(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO web_session(key, dn, data, created, last_seen, idle, expires) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, r["dn"], session_record_json(r), r["created"], r["last_seen"], r["idle"],
             r["last_seen"] + r["idle"])))

    def session_load(self, key: str, now: float | None = None):
        now = time.time() if now is None else now
        row = self._run(lambda conn: conn.execute(
            "SELECT dn, data, created, last_seen, idle FROM web_session WHERE key=? AND expires>=?",
            (key, now)).fetchone())
        return session_record(*row) if row else None

    def session_touch(self, key: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._run(lambda conn: conn.execute(
            "UPDATE web_session SET last_seen=?, expires=?+idle WHERE key=? AND expires>=?",
            (now, now, key, now)).rowcount) > 0

    def session_delete(self, key: str):
        self._run(lambda conn: conn.execute("DELETE FROM web_session WHERE key=?", (key,)))

    def session_prune(self, now: float | None = None, batch: int = PRUNE_BATCH) -> int:
        now = time.time() if now is None else now
        return self._run(lambda conn: conn.execute(
            "DELETE FROM web_session WHERE key IN (SELECT key FROM web_session WHERE expires<? LIMIT ?)",
            (now, batch)).rowcount)

    def rows(self) -> int:
        return self._run(lambda conn: conn.execute("SELECT count(*) FROM throttle").fetchone()[0])

    def close(self):
        conn = self._shared if self._memory else getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._shared = None
        self._local.conn = None

