"""The embedded store: one SQLite file in WAL mode. It implements the Store and Tx
protocols of store/base.py (opened by store.open_store); the tables, paths, SQL and
LIKE patterns below are its own business, never the core's.

Tables
  entries    one row per entry: normalised DN, user DN, parent id, `path` (the
             normalised RDNs from the suffix down, each followed by \\x01) so a
             subtree is one range scan, and the attributes as JSON.
  idx        equality/presence index rows (attr, key, id), kept by the core.
  idx_sub    FTS5 trigram table: substring search without scanning values.
  changelog  every change (who, from where, when, what) — the audit log, and how
             other worker processes learn which cached entries went stale.

Each write is one transaction; with synchronous=FULL a commit is on disk before
the client sees success. Reads and writes use one connection per thread.
"""
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager

from ..core.entry import Entry, decode_attrs, encode_attrs
from ..district.gentime import gentime_text
from .base import Eq, JobLocked, Prefix, Present, Range, Substring, prefix_end
from .throttle import OPEN_LOCK, Throttle, throttle_path, wal_watch

SCHEMA_VERSION = 1  # of the tables below (recorded in backups: restore checks it)
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
    id INTEGER PRIMARY KEY,
    ndn TEXT NOT NULL UNIQUE,
    dn TEXT NOT NULL,
    parent INTEGER,
    path TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_parent ON entries(parent);
CREATE INDEX IF NOT EXISTS entries_path ON entries(path);
CREATE TABLE IF NOT EXISTS idx(
    attr TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY(attr, key, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_by_id ON idx(id);
CREATE VIRTUAL TABLE IF NOT EXISTS idx_sub USING fts5(attr UNINDEXED, key, id UNINDEXED, tokenize='trigram');
CREATE TABLE IF NOT EXISTS changelog(
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    who TEXT NOT NULL,
    peer TEXT NOT NULL,
    op TEXT NOT NULL,
    dn TEXT NOT NULL,
    entry_id INTEGER,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invalidation(
    seq INTEGER PRIMARY KEY,
    ids TEXT
);
"""
# invalidation: one row per committed transaction that touched entries, written in
# that transaction: the ids of every entry it touched (derived writes included:
# memberOf, referential integrity, bind bookkeeping, rehash), or NULL for "drop
# everything" (a bulk load). Other processes evict exactly those ids before their
# next operation (refresh); the changelog stays the audit log only.
KEEP_INVALIDATIONS = 100_000  # rows kept; a process further behind drops its whole cache

SEP = "\x01"
SUB_SLOTS = 1024  # substring-index rows per entry (more values are joined into the last row)
SEP_END = "\x02"
BULK_CACHE_KIB = 1 << 18  # page cache during a bulk load: 256 MiB at most
# FTS5 buffers new substring rows in memory up to this size before writing a segment
# (default 1 MiB): during a bulk load larger, fewer segments mean fewer merges
# (measured: ~25% less CPU per trigram row at 1M entries); back to the default after
BULK_FTS_HASH = 64 << 20
FTS_HASH_DEFAULT = 1 << 20
# equality rows per INSERT statement in a bulk load: per-statement overhead (reset,
# cursor open/close) was about a quarter of each row's cost
EQ_ROWS_PER_INSERT = 50
# equality look-ups listing more entries than this go at any commit (objectClass=person:
# no per-entry bookkeeping for it); a commit touching more entries empties them all
EQ_EXACT_IDS = 64
EQ_EXACT_COMMIT = 1000
_EQ_INSERT = "INSERT OR IGNORE INTO idx(attr, key, id) VALUES (?,?,?)"
_EQ_INSERT_MANY = _EQ_INSERT.replace("(?,?,?)", ",".join(["(?,?,?)"] * EQ_ROWS_PER_INSERT))
_SUB_INSERT = "INSERT INTO idx_sub(rowid, attr, key, id) VALUES (?,?,?,?)"
# Indexes of entries a load into an empty store builds once at the end (sorted
# input, not one B-tree insert per row); idx_by_id likewise.
DEFERRED_ENTRY_INDEXES = {
    "entries_parent": "CREATE INDEX IF NOT EXISTS entries_parent ON entries(parent)",
    "entries_path": "CREATE INDEX IF NOT EXISTS entries_path ON entries(path)",
    "idx_by_id": "CREATE INDEX IF NOT EXISTS idx_by_id ON idx(id)",
}


def _fsync_file(path):
    if not os.path.isfile(path):  # ":memory:", a URI
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SQLiteStore:
    remote = False  # a file on this host: read inline (see Store.remote)
    def __init__(self, path, cache_entries: int = 200000):
        self.path = str(path)
        self.cache_limit = cache_entries
        # FIFO: a plain dict's next(iter()) after many pops from its front scans the
        # deleted slots (O(n) per eviction, ~half the time of a large cold search)
        self._cache: OrderedDict[int, Entry] = OrderedDict()
        self._ndn_ids: dict[str, int] = {}
        # equality index look-ups ((attr, key) -> ids), kept across commits: a commit
        # that touched entries (here or, via refresh, in another process) drops the
        # look-ups holding one of them (_eq_holding) and those of the keys they hold
        # now (read from the index); substring batches and long lists (_eq_loose) go
        # at any commit. Without this, every failed login's lockout count emptied it.
        self._eq_cache: dict[tuple, list] = {}
        self._eq_holding: dict[int, list] = {}  # entry id -> look-ups listing it
        self._eq_loose: list = []
        self._local = threading.local()
        self._write_lock = threading.Lock()
        # (generation, eviction) and (generation check, caching) are atomic under this
        # lock: a read that began before a commit never caches the row that commit replaced
        self._cache_lock = threading.Lock()
        self._batches = 0  # group commits running (see _in_batch)
        self._generation = 0
        # called with the ids of every invalidation (None: everything) after the entry
        # cache has dropped them: this process's commits, other workers' and hosts'
        # (the server's verified-password cache hangs on it: passwords.VerifiedCache)
        self.invalidation_hooks: list = []
        self.refresh_interval = 0.0
        self._last_refresh = 0.0
        self._commits = 0
        # entry cache lookups, for the metrics (plain ints: a lost increment between
        # threads only blurs a ratio)
        self.cache_hits = self.cache_misses = 0
        conn = self._conn()
        conn.executescript(SCHEMA)
        self._watch = wal_watch(self.path)  # see refresh()
        row = conn.execute("SELECT max(seq) FROM invalidation").fetchone()
        self._seen_inv = row[0] or 0

    # -- connections -------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
            self._local.data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        return conn

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def refresh(self):
        """Drop the cached entries other processes (sibling workers, offline jobs such
        as `rollcall request expire`) changed since we last looked: exactly the ids
        their transactions recorded. Called before every operation; `refresh_interval`
        > 0 trades that freshness for a few µs."""
        if self.refresh_interval:
            now = time.monotonic()
            if now - self._last_refresh < self.refresh_interval:
                return
            self._last_refresh = now
        # no commit to the file since the last look (one pread): nothing to catch up on
        watch = self._watch
        head = watch.look() if watch is not None else None
        if head is not None and head == getattr(self._local, "wal_head", None):
            return
        self._catch_up()
        self._local.wal_head = head  # read before catching up: a commit after it is seen next time

    def _catch_up(self):
        conn = self._conn()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._local.data_version:
            return
        self._local.data_version = version
        rows = conn.execute("SELECT seq, ids FROM invalidation WHERE seq > ? ORDER BY seq",
                            (self._seen_inv,)).fetchall()
        if not rows:
            return
        drop_all = rows[0][0] > self._seen_inv + 1  # rows we never saw were pruned
        ids = set()
        for _seq, text in rows:
            if text is None:
                drop_all = True
            else:
                ids.update(json.loads(text))
        self._invalidate(None if drop_all else ids)
        self._seen_inv = max(self._seen_inv, rows[-1][0])

    def _invalidate(self, ids):
        self._drop_cached(ids)
        for hook in self.invalidation_hooks:
            hook(ids)

    def _drop_cached(self, ids):
        """Evict ids (None: everything) and start a new cache generation."""
        with self._cache_lock:
            self._generation += 1
            if ids is None or len(ids) > EQ_EXACT_COMMIT:
                self._clear_eq()
            else:
                eq_cache = self._eq_cache
                for key in self._eq_loose:
                    eq_cache.pop(key, None)
                self._eq_loose = []
                for entry_id in ids:
                    for key in self._eq_holding.pop(entry_id, ()):
                        eq_cache.pop(key, None)
            if ids is None:
                self._cache.clear()
                self._ndn_ids.clear()
                return
            for entry_id in ids:
                entry = self._cache.pop(entry_id, None)
                if entry is not None:
                    self._ndn_ids.pop(entry.ndn, None)
        if ids and len(ids) <= EQ_EXACT_COMMIT and self._eq_cache:
            # the keys these entries hold now (a value added, an entry created): a
            # look-up of one of them, made before the commit, lacks the entry. The
            # generation moved first, so no look-up older than the commit is kept after this
            ids = list(ids)
            try:
                rows = self._conn().execute("SELECT DISTINCT attr, key FROM idx WHERE id IN (%s)"
                                            % ",".join("?" * len(ids)), ids).fetchall()
            except sqlite3.Error:  # the commit stands: forget every look-up instead
                rows = None
            with self._cache_lock:
                if rows is None:
                    self._clear_eq()
                else:
                    for row in rows:
                        self._eq_cache.pop(row, None)

    def _clear_eq(self):
        self._eq_cache.clear()
        self._eq_holding.clear()
        self._eq_loose = []

    def _keep_eq(self, key, value, ids):
        """Cache a look-up (under _cache_lock, generation checked); ids: the entries it lists."""
        if len(self._eq_cache) >= self.cache_limit:
            self._clear_eq()
        self._eq_cache[key] = value
        if ids is None or len(ids) > EQ_EXACT_IDS:
            self._eq_loose.append(key)
        else:
            holding = self._eq_holding
            for entry_id in ids:
                got = holding.get(entry_id)
                if got is None:
                    holding[entry_id] = [key]
                elif key not in got:  # cached again after the new-keys drop above
                    got.append(key)

    def _evict(self, entry_id):
        self._invalidate((entry_id,))

    def _remember(self, entry: Entry, generation: int):
        """Cache a row read while `generation` was current, unless a commit (of this
        process or, via refresh, another's) has invalidated anything since: the row
        may predate that commit."""
        if self.cache_limit <= 0:
            return
        with self._cache_lock:
            if generation != self._generation:
                return
            if len(self._cache) >= self.cache_limit:
                _, old = self._cache.popitem(last=False)
                self._ndn_ids.pop(old.ndn, None)
            self._cache[entry.id] = entry
            self._ndn_ids[entry.ndn] = entry.id

    # -- reads -------------------------------------------------------------
    def _in_batch(self) -> bool:
        # the thread-local look only while some thread runs a group commit
        return self._batches > 0 and getattr(self._local, "batch", None) is not None

    def get(self, entry_id: int) -> Entry | None:
        if self._in_batch():
            return self._uncached("id", entry_id)
        entry = self._cache.get(entry_id)
        if entry is not None:
            self.cache_hits += 1
            return entry
        self.cache_misses += 1
        generation = self._generation
        row = self._conn().execute("SELECT id, dn, ndn, data FROM entries WHERE id=?", (entry_id,)).fetchone()
        return self._row(row, generation)

    def _uncached(self, column, value):
        """Inside a group commit the connection sees writes not yet committed: they must
        not reach the shared cache, and the cache may hold what earlier writes replaced."""
        row = self._conn().execute(f"SELECT id, dn, ndn, data FROM entries WHERE {column}=?", (value,)).fetchone()
        return Entry(row[1], row[2], decode_attrs(row[3]), id=row[0]) if row else None

    def get_by_ndn(self, ndn: str) -> Entry | None:
        if self._in_batch():
            return self._uncached("ndn", ndn)
        entry_id = self._ndn_ids.get(ndn)
        if entry_id is not None:
            entry = self._cache.get(entry_id)
            if entry is not None and entry.ndn == ndn:
                self.cache_hits += 1
                return entry
        self.cache_misses += 1
        generation = self._generation
        row = self._conn().execute("SELECT id, dn, ndn, data FROM entries WHERE ndn=?", (ndn,)).fetchone()
        return self._row(row, generation)

    def get_many(self, ids) -> list:
        if self._in_batch():
            return [e for e in (self._uncached("id", i) for i in ids) if e is not None]
        out, missing = [], []
        cache = self._cache
        for i in ids:
            e = cache.get(i)
            if e is None:
                missing.append(i)
            else:
                out.append(e)
        self.cache_hits += len(out)
        if not missing:
            return out
        self.cache_misses += len(missing)
        conn = self._conn()
        generation = self._generation
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            q = "SELECT id, dn, ndn, data FROM entries WHERE id IN (%s)" % ",".join("?" * len(chunk))
            out.extend(self._row(r, generation) for r in conn.execute(q, chunk))
        return out

    def _row(self, row, generation: int) -> Entry | None:
        if row is None:
            return None
        entry = Entry(row[1], row[2], decode_attrs(row[3]), id=row[0])
        self._remember(entry, generation)
        return entry

    def has_children(self, entry_id: int) -> bool:
        return self._conn().execute("SELECT 1 FROM entries WHERE parent=? LIMIT 1", (entry_id,)).fetchone() is not None

    def path_of(self, entry_id: int) -> str | None:
        row = self._conn().execute("SELECT path FROM entries WHERE id=?", (entry_id,)).fetchone()
        return row[0] if row else None

    def children_ids(self, entry_id: int) -> list:
        return [r[0] for r in self._conn().execute("SELECT id FROM entries WHERE parent=? ORDER BY id", (entry_id,))]

    def subtree_ids(self, entry_id: int, limit: int | None = None) -> list:
        """The entry and all below it, by a range scan on `path`."""
        path = self.path_of(entry_id)
        if path is None:
            return []
        q = "SELECT id FROM entries WHERE path >= ? AND path < ? ORDER BY id"
        args = [path, path[:-1] + SEP_END]
        if limit is not None:
            q += " LIMIT ?"
            args.append(limit)
        return [r[0] for r in self._conn().execute(q, args)]

    def count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM entries").fetchone()[0]

    def all_ids(self) -> list:
        """Parents before children (export order)."""
        return [r[0] for r in self._conn().execute("SELECT id FROM entries ORDER BY length(path) - length(replace(path, char(1), '')), id")]

    # -- index look-ups (candidates; the core re-checks the filter) --------
    def index_eq(self, attr: str, key: str) -> list:
        got = self._eq_cache.get((attr, key))
        conn = self._conn()
        if conn.in_transaction:  # a write's reads see its uncommitted changes: never cached
            return [r[0] for r in conn.execute("SELECT id FROM idx WHERE attr=? AND key=?", (attr, key))]
        if got is not None:
            return list(got)
        generation = self._generation
        ids = [r[0] for r in conn.execute("SELECT id FROM idx WHERE attr=? AND key=?", (attr, key))]
        if self.cache_limit > 0:
            with self._cache_lock:
                # as _remember: not when a commit may have changed the index meanwhile
                if generation == self._generation:
                    self._keep_eq((attr, key), ids, ids)
        return list(ids)

    def candidates(self, query) -> list | None:
        """The ids an index query (store/base.py) selects; None: not from an index."""
        kind = type(query)
        if kind is Eq:
            return self.index_eq(query.attr, query.key)
        if kind is Present:
            return [r[0] for r in self._conn().execute("SELECT DISTINCT id FROM idx WHERE attr=?", (query.attr,))]
        if kind is Substring:
            return self._substring(query)
        if kind is Prefix:
            end = prefix_end(query.prefix)
            if end is None:
                return [r[0] for r in self._conn().execute(
                    "SELECT DISTINCT id FROM idx WHERE attr=? AND key >= ?", (query.attr, query.prefix))]
            return [r[0] for r in self._conn().execute(
                "SELECT DISTINCT id FROM idx WHERE attr=? AND key >= ? AND key < ?", (query.attr, query.prefix, end))]
        if kind is Range:
            q, args = "SELECT DISTINCT id FROM idx WHERE attr=?", [query.attr]
            if query.low is not None:
                q += " AND key >= ?"
                args.append(query.low)
            if query.high is not None:
                q += " AND key <= ?"
                args.append(query.high)
            return [r[0] for r in self._conn().execute(q, args)]
        raise TypeError(f"not an index query: {query!r}")

    @staticmethod
    def _like(query):
        """Trigram-indexed LIKE: a pattern without a run of >= 3 characters would scan
        the whole table, so such a query is left to the core's scan (None).
        No ESCAPE clause: it turns the trigram index off. A literal % or _ in a piece
        then acts as a wildcard, which only widens the candidates the core re-checks."""
        pieces = [query.initial, *query.any, query.final]
        if not any(p is not None and len(p) >= 3 for p in pieces):
            return None
        pattern = "%".join([query.initial or "", *query.any, query.final or ""])
        return pattern.replace("%%", "%")

    def candidates_after(self, query, after, limit):
        """Substring: rows in rowid order (id*SUB_SLOTS + slot: id order, an entry's
        rows together) from the first slot after id `after`: FTS5 seeks there and stops
        after `limit` rows instead of reading every trigram match. Prefix: the
        equality index from (key, id) `after` on, in its own order.
        Cached as the equality look-ups, dropped at any commit (a search with a size limit
        reads the same first batch each time: a type-ahead's common beginnings)."""
        conn = self._conn()
        if conn.in_transaction:  # a write's reads see its uncommitted changes: never cached
            return self._candidates_after(conn, query, after, limit)
        key = ("\0after", query, after, limit)
        got = self._eq_cache.get(key)
        if got is not None:
            return list(got[0]), got[1]
        generation = self._generation
        got = self._candidates_after(conn, query, after, limit)
        if got is not None and self.cache_limit > 0:
            with self._cache_lock:
                if generation == self._generation:  # as index_eq
                    self._keep_eq(key, (tuple(got[0]), got[1]), None)  # a substring batch: loose
        return got

    def _candidates_after(self, conn, query, after, limit):
        if type(query) is Prefix:
            end = prefix_end(query.prefix)
            q = "SELECT key, id FROM idx WHERE attr=? AND (key, id) > (?, ?)"
            args = [query.attr, *(after or (query.prefix, 0))]
            if end is not None:
                q += " AND key < ?"
                args.append(end)
            rows = conn.execute(q + " ORDER BY key, id LIMIT ?", (*args, limit)).fetchall()
            return [r[1] for r in rows], (tuple(rows[-1]) if len(rows) == limit else None)
        pattern = self._like(query)
        if pattern is None:
            return None
        rows = conn.execute(
            "SELECT id FROM idx_sub WHERE key LIKE ? AND attr=? AND rowid >= ? ORDER BY rowid LIMIT ?",
            (pattern, query.attr, ((after or 0) + 1) * SUB_SLOTS, limit)).fetchall()
        ids, last = [], None
        for (i,) in rows:
            if i != last:
                ids.append(i)
                last = i
        return ids, (last if len(rows) == limit else None)

    def _substring(self, query):
        pattern = self._like(query)
        if pattern is None:
            return None
        return [
            r[0]
            for r in self._conn().execute(
                "SELECT DISTINCT id FROM idx_sub WHERE key LIKE ? AND attr=?", (pattern, query.attr)
            )
        ]

    # -- writes ------------------------------------------------------------
    @contextmanager
    def transaction(self):
        """One durable write transaction. Yields a Tx; commits on success. Inside
        group_commit() it is a savepoint, made durable by the group's commit."""
        batch = getattr(self._local, "batch", None)
        if batch is not None:
            yield from self._savepoint(batch)
            return
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            tx = Tx(self, conn)
            try:
                yield tx
                self._record_invalidation(tx)
            except BaseException:
                conn.execute("ROLLBACK")
                self._invalidate(tx.touched)
                raise
            conn.execute("COMMIT")
            self._after_commit(tx)

    def _savepoint(self, batch):
        conn = self._conn()
        if not conn.in_transaction:  # SQLite rolled the group back (e.g. disk full)
            raise sqlite3.OperationalError("the group commit's transaction was rolled back")
        conn.execute("SAVEPOINT op")
        tx = Tx(self, conn)
        try:
            yield tx
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            raise
        conn.execute("RELEASE op")
        batch.touched |= tx.touched
        batch.renamed = batch.renamed or tx.renamed
        batch.drop_all = batch.drop_all or tx.drop_all

    @contextmanager
    def group_commit(self):
        """Group commit: transaction() calls of this thread inside the block are
        savepoints of one transaction, committed (one fsync) when the block ends. The
        caller acknowledges none of them before that: durability is unchanged, and
        each one is still all or nothing."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            batch = self._local.batch = Tx(self, conn)
            self._batches += 1  # under the write lock
            try:
                try:
                    yield batch
                finally:
                    self._local.batch = None
                    self._batches -= 1
                self._record_invalidation(batch)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._invalidate(batch.touched)
                raise
            self._after_commit(batch)

    def _record_invalidation(self, tx):
        """Inside the transaction: what it touched, for the other processes."""
        if tx.drop_all:
            tx.conn.execute("INSERT INTO invalidation(ids) VALUES (NULL)")
        elif tx.touched:
            tx.conn.execute("INSERT INTO invalidation(ids) VALUES (?)", (json.dumps(sorted(tx.touched)),))
        else:
            return
        self._commits += 1
        if self._commits % 1000 == 0:
            tx.conn.execute("DELETE FROM invalidation WHERE seq < (SELECT max(seq) FROM invalidation) - ?",
                            (KEEP_INVALIDATIONS,))

    def _after_commit(self, tx):
        """This process's own cache, after the commit: exactly what the write touched
        (a rename changes DNs below it too: the DN-to-id map starts afresh)."""
        self._invalidate(None if tx.drop_all else tx.touched)
        if tx.renamed and not tx.drop_all:
            with self._cache_lock:
                self._ndn_ids.clear()

    @contextmanager
    def bulk(self):
        """Offline bulk load: one transaction, no fsync until the end (like slapadd -q).
        Into an empty store the pages go straight to the database file with a rollback
        journal beside it (WAL comes back at the end): new pages past the old end of
        the file need no journal, so this costs nothing, and a load that fails or a
        process that dies (kill -9, out of memory) mid-load leaves the old, empty store
        (SQLite rolls the hot journal back on the next open). Into a store with entries
        the WAL stays: the same holds. Only a power loss or OS crash mid-load can leave
        a damaged file (no fsync until the end): delete it and load again, as after
        slapadd -q. The commit is fsynced before load reports success."""
        conn = self._conn()
        empty = conn.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is None
        if empty:
            conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=OFF")
        # pages of the tables being built stay in memory (bounded: KiB, negative)
        conn.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        # temp_store stays DEFAULT and threads 0: temp_store=MEMORY turns the sorter's
        # helper threads off anyway, and the end-of-load index builds measured faster
        # without both (idx_by_id of 7M rows: 4.0 s CPU instead of 5.6)
        try:
            with self.transaction() as tx:
                tx.drop_all = True  # every process starts its cache afresh
                tx.set_fts_hash(BULK_FTS_HASH)
                yield tx
                tx.finish_bulk()
                tx.set_fts_hash(FTS_HASH_DEFAULT)
            # durable before "loaded": synchronous=OFF skipped every fsync of the load
            _fsync_file(self.path)
        finally:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA cache_size=-65536")
            if empty:
                conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- audit ---------------------------------------------------------------
    def changes(self, since: int = 0, dn_suffix: str | None = None, who: str | None = None, limit: int = 1000):
        q, args = "SELECT seq, time, who, peer, op, dn, detail FROM changelog WHERE seq > ?", [since]
        if who:
            q += " AND who = ?"
            args.append(who)
        if dn_suffix:
            q += " AND (lower(dn) = ? OR lower(dn) LIKE ?)"
            args += [dn_suffix.lower(), "%," + dn_suffix.lower()]
        q += " ORDER BY seq LIMIT ?"
        args.append(limit)
        return [
            dict(seq=r[0], time=r[1], who=r[2], peer=r[3], op=r[4], dn=r[5], detail=json.loads(r[6]))
            for r in self._conn().execute(q, args)
        ]

    def get_meta(self, key, default=None):
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    # -- operations ------------------------------------------------------------
    @contextmanager
    def job_lock(self, name: str):
        """A lock file next to the store (`rollcall-job-<name>.lock`): one holder among
        the processes of this host (the only host a SQLite store has). The kernel
        releases it when the holder dies, so no stale lock outlives a crash."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = (os.path.splitext(self.path)[0] if self.path != ":memory:" else "rollcall") + f"-job-{safe}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JobLocked(name) from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def schema_version(self):
        """The SQLite store creates its tables as it opens: always current."""
        return (SCHEMA_VERSION, SCHEMA_VERSION)

    # -- throttles (shared attempt counters) ---------------------------------
    # Kept in a file of their own without fsync (see store/throttle.py), opened on
    # first use: offline tools that never throttle never create it.
    @property
    def throttle(self):
        t = self.__dict__.get("_throttle")
        if t is None:
            with OPEN_LOCK:  # not _write_lock: a transaction may hold it (requests' limit)
                t = self.__dict__.get("_throttle")
                if t is None:
                    t = self._throttle = Throttle(throttle_path(self.path))
        return t

    def throttle_hit(self, key: str, window: float, now: float | None = None) -> int:
        return self.throttle.hit(key, window, now)

    def throttle_count(self, key: str, window: float, now: float | None = None) -> int:
        return self.throttle.count(key, window, now)

    def throttle_admit(self, key: str, window: float, limit: int, now: float | None = None) -> bool:
        return self.throttle.admit(key, window, limit, now)

    def throttle_clear(self, key: str):
        self.throttle.clear(key)

    # web console sessions: in the throttle file too (no fsync per page)
    def session_save(self, key: str, record: dict):
        self.throttle.session_save(key, record)

    def session_load(self, key: str, now: float | None = None):
        return self.throttle.session_load(key, now)

    def session_touch(self, key: str, now: float | None = None) -> bool:
        return self.throttle.session_touch(key, now)

    def session_delete(self, key: str):
        self.throttle.session_delete(key)

    def session_prune(self, now: float | None = None) -> int:
        return self.throttle.session_prune(now)
    # -- end of throttles ----------------------------------------------------


def _json_path(name):
    return f'$."{name}"'


class Tx:
    """Write operations inside one transaction. Index rows come from the core."""

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection):
        self.store = store
        self.conn = conn
        self.touched: set[int] = set()
        self.renamed = False
        self.drop_all = False
        self.op = None  # the core's context of the operation this transaction carries
        self._deferred = False  # bulk load: indexes dropped until build_id_index()

    def add(self, entry: Entry, parent_id: int | None, rdn_key: str, index_rows) -> int:
        if parent_id is None:
            path = rdn_key + SEP
        else:
            parent_path = self.conn.execute("SELECT path FROM entries WHERE id=?", (parent_id,)).fetchone()[0]
            path = parent_path + rdn_key + SEP
        cur = self.conn.execute(
            "INSERT INTO entries(ndn, dn, parent, path, data) VALUES (?,?,?,?,?)",
            (entry.ndn, entry.dn, parent_id, path, encode_attrs(entry.attrs)),
        )
        entry.id = cur.lastrowid
        self._write_index(entry.id, index_rows)
        self.touched.add(entry.id)
        return entry.id

    def insert_prepared(self, rows):
        """Bulk load: rows of (id, ndn, dn, parent, path, json, index_rows) with ids assigned."""
        self.conn.executemany(
            "INSERT INTO entries(id, ndn, dn, parent, path, data) VALUES (?,?,?,?,?,?)", [r[:6] for r in rows]
        )
        eq, sub = [], []
        for row in rows:
            self._split_index(row[0], row[6], eq, sub, flat=True)
        step = 3 * EQ_ROWS_PER_INSERT
        full = len(eq) - len(eq) % step
        if full:
            self.conn.executemany(_EQ_INSERT_MANY, [eq[i:i + step] for i in range(0, full, step)])
        self._insert_index([eq[i:i + 3] for i in range(full, len(eq), 3)], sub)

    def set_fts_hash(self, size):
        """The substring index's in-memory buffer (bytes; FTS5's 'hashsize')."""
        self.conn.execute("INSERT INTO idx_sub(idx_sub, rank) VALUES ('hashsize', ?)", (size,))

    def finish_bulk(self):
        """The end of a bulk load's transaction (store.bulk()): deferred indexes in place."""
        if self._deferred:
            self.build_id_index()

    def defer_id_index(self):
        """Bulk load into an empty store: build idx_by_id and the entries' parent and
        path indexes once after the rows, not row by row (DDL is transactional: a
        failed load gets them back)."""
        for name in DEFERRED_ENTRY_INDEXES:
            self.conn.execute(f"DROP INDEX IF EXISTS {name}")
        self._deferred = True

    def build_id_index(self):
        for text in DEFERRED_ENTRY_INDEXES.values():
            self.conn.execute(text)
        self._deferred = False

    def index_pairs(self, attr):
        """(key, id) of every equality row of attr."""
        return self.conn.execute("SELECT key, id FROM idx WHERE attr=?", (attr,))

    def id_path(self, ndn):
        return self.conn.execute("SELECT id, path FROM entries WHERE ndn=?", (ndn,)).fetchone()

    # One attribute of many entries (bulk load's memberOf): the rest of each entry's
    # JSON and index rows stays as it is, so nothing else is decoded or rewritten.
    def attr_json(self, ndn, name):
        """(id, the attribute's values as JSON text or None) of an entry, or None."""
        return self.conn.execute("SELECT id, json_extract(data, ?) FROM entries WHERE ndn=?",
                                 (_json_path(name), ndn)).fetchone()

    def set_attr_json(self, name, rows):
        """rows of (id, values as JSON text, or None to remove the attribute)."""
        path = _json_path(name)
        self.conn.executemany("UPDATE entries SET data=json_set(data, ?, json(?)) WHERE id=?",
                              [(path, values, i) for i, values in rows if values is not None])
        self.conn.executemany("UPDATE entries SET data=json_remove(data, ?) WHERE id=?",
                              [(path, i) for i, values in rows if values is None])
        self.touched.update(i for i, _ in rows)

    def change_index(self, changes) -> list:
        """changes of (id, rows to drop, rows to add), rows as (attr, kind, key); the
        entries' other rows stay. Returns the ids left unchanged because their substring
        slots would run out (the caller rewrites those whole with replace())."""
        drop_eq, add_eq, add_sub, full = [], [], [], []
        for entry_id, drop, add in changes:
            base = entry_id * SUB_SLOTS
            if any(kind == "sub" for _, kind, _ in add):
                top = self.conn.execute("SELECT max(rowid) FROM idx_sub WHERE rowid BETWEEN ? AND ?",
                                        (base, base + SUB_SLOTS - 1)).fetchone()[0]
                n = base if top is None else top + 1
                if n + sum(kind == "sub" for _, kind, _ in add) > base + SUB_SLOTS - 1:
                    full.append(entry_id)  # the last slot is for overflow (see _split_index)
                    continue
            for attr, kind, key in drop:
                if kind == "sub":
                    self.conn.execute("DELETE FROM idx_sub WHERE rowid BETWEEN ? AND ? AND attr=? AND key=?",
                                      (base, base + SUB_SLOTS - 1, attr, key))
                else:
                    drop_eq.append((attr, key, entry_id))
            for attr, kind, key in add:
                if kind == "sub":
                    add_sub.append((n, attr, key, entry_id))
                    n += 1
                else:
                    add_eq.append((attr, key, entry_id))
            self.touched.add(entry_id)
        if drop_eq:
            self.conn.executemany("DELETE FROM idx WHERE attr=? AND key=? AND id=?", drop_eq)
        add_eq.sort()  # in key order: B-tree pages filled one after another
        self._insert_index(add_eq, add_sub)
        return full

    def replace(self, entry: Entry, index_rows):
        """Rewrite an entry. Only the index rows that differ are written: dropping and
        re-inserting them all made each member added to a group cost O(group size)."""
        entry_id = entry.id
        self.conn.execute("UPDATE entries SET data=? WHERE id=?", (encode_attrs(entry.attrs), entry_id))
        eq, sub = [], []
        self._split_index(entry_id, index_rows, eq, sub)
        new_eq = {(attr, key) for attr, key, _ in eq}
        old_eq = set(self.conn.execute("SELECT attr, key FROM idx WHERE id=?", (entry_id,)))
        drop = [(attr, key, entry_id) for attr, key in old_eq - new_eq]
        if drop:
            self.conn.executemany("DELETE FROM idx WHERE attr=? AND key=? AND id=?", drop)
        add_eq = sorted((attr, key, entry_id) for attr, key in new_eq - old_eq)
        # substring rows by slot, as a fresh insert would number them
        base = entry_id * SUB_SLOTS
        old_sub = {r[0]: (r[1], r[2]) for r in self.conn.execute(
            "SELECT rowid, attr, key FROM idx_sub WHERE rowid BETWEEN ? AND ?", (base, base + SUB_SLOTS - 1))}
        add_sub = []
        for row in sub:
            had = old_sub.pop(row[0], None)
            if had == (row[1], row[2]):
                continue
            if had is not None:
                self.conn.execute("DELETE FROM idx_sub WHERE rowid=?", (row[0],))
            add_sub.append(row)
        if old_sub:
            self.conn.executemany("DELETE FROM idx_sub WHERE rowid=?", [(r,) for r in old_sub])
        self._insert_index(add_eq, add_sub)
        self.touched.add(entry_id)

    def delete(self, entry_id: int):
        self.conn.execute("DELETE FROM entries WHERE id=?", (entry_id,))
        self._drop_index(entry_id)
        self.touched.add(entry_id)

    def rename(self, entry_id: int, new_dn: str, new_ndn: str, new_parent_id: int, new_rdn_key: str):
        """Move an entry (and its subtree) to a new DN / parent."""
        old_ndn, old_dn, old_path = self.conn.execute(
            "SELECT ndn, dn, path FROM entries WHERE id=?", (entry_id,)
        ).fetchone()
        parent_path = self.conn.execute("SELECT path FROM entries WHERE id=?", (new_parent_id,)).fetchone()[0]
        new_path = parent_path + new_rdn_key + SEP
        rows = self.conn.execute(
            "SELECT id, ndn, dn, path FROM entries WHERE path >= ? AND path < ?", (old_path, old_path[:-1] + SEP_END)
        ).fetchall()
        for rid, ndn, dn, path in rows:
            if rid == entry_id:
                self.conn.execute(
                    "UPDATE entries SET ndn=?, dn=?, path=?, parent=? WHERE id=?",
                    (new_ndn, new_dn, new_path, new_parent_id, rid),
                )
            else:
                self.conn.execute(
                    "UPDATE entries SET ndn=?, dn=?, path=? WHERE id=?",
                    (
                        ndn[: len(ndn) - len(old_ndn)] + new_ndn,
                        dn[: len(dn) - len(old_dn)] + new_dn,
                        new_path + path[len(old_path) :],
                        rid,
                    ),
                )
            self.touched.add(rid)
        self.renamed = True
        moved = []
        for rid, ndn, dn, path in rows:
            if rid == entry_id:
                moved.append((ndn, new_ndn, new_dn))
            else:
                moved.append((ndn, ndn[: len(ndn) - len(old_ndn)] + new_ndn, dn[: len(dn) - len(old_dn)] + new_dn))
        return moved

    def _write_index(self, entry_id, index_rows):
        eq, sub = [], []
        self._split_index(entry_id, index_rows, eq, sub)
        self._insert_index(eq, sub)

    @staticmethod
    def _split_index(entry_id, index_rows, eq, sub, flat=False):
        """Equality rows as (attr, key, id) (flat: their values one after another in
        eq); substring rows as (rowid, attr, key, id) with rowid = id*SUB_SLOTS + n,
        so an entry's rows are one rowid range to delete."""
        base, n = entry_id * SUB_SLOTS, 0
        overflow = []
        for attr, kind, key in index_rows:
            if kind != "sub":
                if flat:
                    eq += (attr, key, entry_id)
                else:
                    eq.append((attr, key, entry_id))
            elif n < SUB_SLOTS - 1:
                sub.append((base + n, attr, key, entry_id))
                n += 1
            else:
                overflow.append(key)
        if overflow:
            sub.append((base + n, attr, "\x1f".join(overflow), entry_id))

    def _insert_index(self, eq, sub):
        if eq:
            self.conn.executemany(_EQ_INSERT, eq)
        if sub:
            self.conn.executemany(_SUB_INSERT, sub)

    def _drop_index(self, entry_id):
        self.conn.execute("DELETE FROM idx WHERE id=?", (entry_id,))
        base = entry_id * SUB_SLOTS
        self.conn.execute("DELETE FROM idx_sub WHERE rowid BETWEEN ? AND ?", (base, base + SUB_SLOTS - 1))

    def log(self, who: str, peer: str, op: str, dn: str, entry_id: int | None, detail: dict):
        self.conn.execute(
            "INSERT INTO changelog(time, who, peer, op, dn, entry_id, detail) VALUES (?,?,?,?,?,?,?)",
            (
                gentime_text(),
                who,
                peer,
                op,
                dn,
                entry_id,
                json.dumps(detail, ensure_ascii=False, default=str),
            ),
        )

    def set_meta(self, key, value):
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)", (key, str(value)))

    def get_meta(self, key, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    # -- bulk load ---------------------------------------------------------
    def is_empty(self) -> bool:
        return self.conn.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is None

    def next_id(self) -> int:
        return (self.conn.execute("SELECT max(id) FROM entries").fetchone()[0] or 0) + 1

    @staticmethod
    def child_path(parent_path, rdn_key):
        return rdn_key + SEP if parent_path is None else parent_path + rdn_key + SEP

    # Reads inside the transaction go to the connection, not the shared cache, so
    # they see this transaction's own uncommitted changes.
    def get_by_ndn(self, ndn):
        row = self.conn.execute("SELECT id, dn, ndn, data FROM entries WHERE ndn=?", (ndn,)).fetchone()
        return Entry(row[1], row[2], decode_attrs(row[3]), id=row[0]) if row else None

    def get(self, entry_id):
        row = self.conn.execute("SELECT id, dn, ndn, data FROM entries WHERE id=?", (entry_id,)).fetchone()
        return Entry(row[1], row[2], decode_attrs(row[3]), id=row[0]) if row else None

    def index_eq(self, attr, key):
        return [r[0] for r in self.conn.execute("SELECT id FROM idx WHERE attr=? AND key=?", (attr, key))]

    def has_children(self, entry_id):
        return self.conn.execute("SELECT 1 FROM entries WHERE parent=? LIMIT 1", (entry_id,)).fetchone() is not None
