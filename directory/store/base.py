"""The store interface: what the core, the server and the command line use of a store.

Everything outside `directory/store/` talks to a store through these protocols
(`Store`, `Tx`, `Reader`, `Throttles`) and the index queries below; which backend
answers is chosen once, by `directory.store.open_store(config)`. The SQLite store
(store/sqlite.py) is the reference implementation; tests/store/test_contract.py is
the observable behaviour every backend must have.

Terms
  id        an entry's integer id, assigned by the store, never reused while the
            entry exists; ids of parents are smaller than their children's only
            after a bulk load (an entry may be moved under a later one).
  ndn       the normalised DN (the core normalises; the store compares it exactly).
  path      an opaque string a store derives from a parent's path and an entry's
            normalised RDN (child_path). Only the bulk load handles paths, to place
            children under parents it loaded in the same run.
  index row (attr, kind, key), computed by the core from an entry's attributes:
            kind "eq" (equality and presence) or "sub" (substring); attr is the
            lower-case attribute name, key the normalised value as text.

Reads outside a transaction may be served from a per-process cache; refresh()
drops what other processes (or other store objects on the same database) changed.
Each drop — this process's commits, refresh(), a PostgreSQL notification — also calls
the store's `invalidation_hooks` (callables of the ids, or None for everything), so
another per-process cache keyed by entry id (the server's verified-password cache)
follows the same invalidation.
Reads on a Tx see that transaction's own uncommitted writes.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Iterable, Protocol, runtime_checkable

from ..core.entry import Entry

# -- index queries ---------------------------------------------------------------
# Values, not SQL: each backend turns them into its own look-up. `candidates()`
# returns the ids of the entries that may match (the core re-checks every candidate
# against the whole filter), or None when the store cannot answer the query from an
# index (the core then scans the search scope).


@dataclass(frozen=True, slots=True)
class Eq:
    """Entries with an "eq" index row (attr, key): exact."""
    attr: str
    key: str


@dataclass(frozen=True, slots=True)
class Present:
    """Entries with any "eq" index row for attr: exact."""
    attr: str


@dataclass(frozen=True, slots=True)
class Substring:
    """Entries with a "sub" index row for attr whose key starts with `initial`,
    contains the `any` pieces in order after it, and ends with `final` (pieces are
    the normalised filter pieces; None/() for absent ones). A store may answer None
    when no piece is long enough for its index (SQLite's trigrams need 3 characters)."""
    attr: str
    initial: str | None = None
    any: tuple = ()
    final: str | None = None


@dataclass(frozen=True, slots=True)
class Range:
    """Entries with an "eq" index row for attr whose key k has low <= k <= high
    (text order; None: unbounded on that side)."""
    attr: str
    low: str | None = None
    high: str | None = None


@dataclass(frozen=True, slots=True)
class Prefix:
    """Entries with an "eq" index row for attr whose key starts with `prefix`: exact.
    The core asks it for an initial substring only where the attribute's equality
    keys are its substring keys (caseIgnore* and the like): one range scan of the
    sorted equality index instead of a trigram look-up."""
    attr: str
    prefix: str


IndexQuery = Eq | Present | Substring | Range | Prefix


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with prefix (code point
    order, as UTF-8 bytes compare), or None when there is none (all U+10FFFF)."""
    text = prefix.rstrip("\U0010ffff")
    if not text:
        return None
    c = ord(text[-1]) + 1
    if 0xD800 <= c <= 0xDFFF:  # surrogates are not text: the next code point is U+E000
        c = 0xE000
    return text[:-1] + chr(c)

IndexRow = tuple  # (attr, kind, key)


# -- errors a store raises (besides the core's) -------------------------------------

class StoreError(Exception):
    """A store's own refusal, with a message for an operator."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (a server down, a failover under way): the
    LDAP server answers `unavailable` (52) and tries again at the next operation."""


class StoreVersionError(StoreError):
    """The database's schema is older (run `rollcall db upgrade`) or newer than this
    code knows: refused before anything is served."""


class JobLocked(StoreError):
    """store.job_lock(name): another process (on any host) holds it."""

    def __init__(self, name):
        super().__init__(f"another process holds the job lock {name!r} (is the job running elsewhere?)")
        self.name = name


# -- protocols -------------------------------------------------------------------

@runtime_checkable
class Reader(Protocol):
    """What both a Store (committed data) and a Tx (its own view) can read."""

    def get(self, entry_id: int) -> Entry | None: ...

    def get_by_ndn(self, ndn: str) -> Entry | None: ...

    def index_eq(self, attr: str, key: str) -> list[int]:
        """Ids with the "eq" index row (attr, key): candidates(Eq(attr, key))."""
        ...

    def has_children(self, entry_id: int) -> bool: ...


@runtime_checkable
class Throttles(Protocol):
    """Shared attempt counters (failed binds, activation attempts, sign-ins …): every
    worker process sees the others' attempts, and a restart forgets none within
    the window. Times are wall-clock seconds (time.time()); `now` is for tests."""

    def throttle_hit(self, key: str, window: float, now: float | None = None) -> int:
        """Record one attempt; the attempts within the last `window` seconds, it included."""
        ...

    def throttle_count(self, key: str, window: float, now: float | None = None) -> int: ...

    def throttle_admit(self, key: str, window: float, limit: int, now: float | None = None) -> bool:
        """Record an attempt only if fewer than `limit` are within the window, atomically."""
        ...

    def throttle_clear(self, key: str) -> None: ...


@runtime_checkable
class Sessions(Protocol):
    """Signed-in web console sessions, shared by every process on every host, so a
    browser's next request may reach any frontend. Keyed by sha256 of the session id
    (never the id). A record is a dict: dn, name, uid, roles (dict), site_names (dict),
    csrf, must_change, pwd_stamp (JSON-able), created, last_seen (wall-clock seconds),
    idle (seconds). It is live while now - last_seen <= idle; load/touch see only live
    records. No generated password is ever in a record."""

    def session_save(self, key: str, record: dict) -> None:
        """Insert or replace the record under `key`."""
        ...

    def session_load(self, key: str, now: float | None = None) -> dict | None:
        """The live record under `key`; None when absent or idle too long."""
        ...

    def session_touch(self, key: str, now: float | None = None) -> bool:
        """last_seen = now for a live record; False when there is none (ended)."""
        ...

    def session_delete(self, key: str) -> None: ...

    def session_prune(self, now: float | None = None) -> int:
        """Delete (a bounded batch of) records idle too long; how many."""
        ...


@runtime_checkable
class Tx(Reader, Protocol):
    """Writes inside one transaction (all or nothing). Index rows come from the core."""

    # -- entries -----------------------------------------------------------------
    def add(self, entry: Entry, parent_id: int | None, rdn_key: str, index_rows: Iterable[IndexRow]) -> int:
        """Insert an entry under parent_id (None: a suffix entry); sets and returns entry.id."""
        ...

    def replace(self, entry: Entry, index_rows: Iterable[IndexRow]) -> None:
        """Rewrite entry.id's attributes and index rows (its DN stays)."""
        ...

    def delete(self, entry_id: int) -> None: ...

    def rename(self, entry_id: int, new_dn: str, new_ndn: str, new_parent_id: int,
               new_rdn_key: str) -> list[tuple[str, str, str]]:
        """Move an entry and its subtree; (old ndn, new ndn, new dn) of each moved entry."""
        ...

    def log(self, who: str, peer: str, op: str, dn: str, entry_id: int | None, detail: dict) -> None:
        """One audit (changelog) row, committed with the transaction."""
        ...

    # -- small named values (e.g. the request counter) ---------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None: ...

    def set_meta(self, key: str, value) -> None:
        """Store str(value) under key."""
        ...

    # -- bulk load (store.bulk()) ------------------------------------------------
    def is_empty(self) -> bool:
        """No entry at all."""
        ...

    def next_id(self) -> int:
        """An id greater than every id in use (bulk load assigns ids from here)."""
        ...

    def child_path(self, parent_path: str | None, rdn_key: str) -> str:
        """The path of an entry with normalised RDN rdn_key under parent_path (None: a suffix)."""
        ...

    def id_path(self, ndn: str) -> tuple[int, str] | None:
        """(id, path) of an entry, or None."""
        ...

    def insert_prepared(self, rows) -> None:
        """Rows of (id, ndn, dn, parent id, path, attributes as JSON text (core.entry's
        encoding), index rows), ids assigned by the caller from next_id()."""
        ...

    def defer_id_index(self) -> None:
        """A hint: the load into an empty store may skip per-row index upkeep until
        build_id_index() (which must then be called before the transaction ends)."""
        ...

    def build_id_index(self) -> None: ...

    def index_pairs(self, attr: str) -> Iterable[tuple[str, int]]:
        """(key, id) of every "eq" index row of attr."""
        ...

    def attr_json(self, ndn: str, name: str) -> tuple[int, str | None] | None:
        """(id, one attribute's values as JSON text or None) of an entry, or None."""
        ...

    def set_attr_json(self, name: str, rows) -> None:
        """rows of (id, values as JSON text, or None to remove the attribute): one
        attribute of many entries, the rest of each entry untouched."""
        ...

    def change_index(self, changes) -> list[int]:
        """changes of (id, rows to drop, rows to add); the other rows stay. Returns the
        ids left unchanged because the store cannot take more rows for them (the caller
        rewrites those with replace())."""
        ...


@runtime_checkable
class Store(Reader, Throttles, Sessions, Protocol):
    """A directory's entries, indexes, audit log and counters."""

    # True when a read may wait on the network (PostgreSQL): the server then reads in
    # its read pool, never on the reactor thread; False (SQLite) reads inline
    remote: bool

    # -- reads (hot: implementations add no layers here) -------------------------
    def get_many(self, ids: Iterable[int]) -> list[Entry]:
        """The entries among ids that exist (any order)."""
        ...

    def children_ids(self, entry_id: int) -> list[int]:
        """The ids of an entry's children, ascending."""
        ...

    def subtree_ids(self, entry_id: int, limit: int | None = None) -> list[int]:
        """The entry and every entry below it, ascending ids (at most limit)."""
        ...

    def count(self) -> int: ...

    def all_ids(self) -> list[int]:
        """Every id, parents before their children (export order)."""
        ...

    def candidates(self, query: IndexQuery) -> list[int] | None:
        """The ids an index query selects, or None: not answerable from an index."""
        ...

    def candidates_after(self, query: Substring | Prefix, after, limit: int) -> tuple[list[int], object] | None:
        """candidates(query) a batch at a time, for a search that reads its candidates
        as it goes (and stops at its size limit or page): (at most `limit` distinct ids,
        the position to pass as `after` for the next batch, or None when there is no
        more). `after` is None for the first batch. A Substring's ids come in ascending
        id order, each once; a Prefix's in key order (an entry with several matching
        keys may come again: the caller drops repeats). None when candidates(query) is None."""
        ...

    # -- writes --------------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[Tx]:
        """One durable write transaction: committed when the block ends, rolled back
        (nothing of it stays) when it raises."""
        ...

    def group_commit(self) -> AbstractContextManager[Tx]:
        """transaction() blocks of this thread inside are each all or nothing, and
        made durable together when this block ends."""
        ...

    def bulk(self) -> AbstractContextManager[Tx]:
        """An offline bulk load: one transaction; every process's cache starts afresh."""
        ...

    def refresh(self) -> None:
        """Drop cached entries that other processes changed since the last call."""
        ...

    def close(self) -> None: ...

    # -- audit and named values ----------------------------------------------------
    def changes(self, since: int = 0, dn_suffix: str | None = None, who: str | None = None,
                limit: int = 1000) -> list[dict]:
        """Audit rows after seq `since`, oldest first: dicts of seq, time, who, peer,
        op, dn, detail; dn_suffix: that DN or below it (case-insensitive)."""
        ...

    def get_meta(self, key: str, default: str | None = None) -> str | None: ...

    # -- operations ------------------------------------------------------------------
    def job_lock(self, name: str) -> AbstractContextManager[None]:
        """Held while the block runs, by one process on any host at a time: a nightly
        job's guard. Raises JobLocked at once (never waits) when another holds it."""
        ...

    def schema_version(self) -> tuple[int | None, int]:
        """(the database's schema version, the version this code needs)."""
        ...


def session_record_json(record: dict) -> str:
    """The record's fields other than the indexed ones, as stored text."""
    return json.dumps({k: v for k, v in record.items() if k not in ("dn", "created", "last_seen", "idle")},
                      sort_keys=True)


def session_record(dn, data, created, last_seen, idle) -> dict:
    return dict(json.loads(data), dn=dn, created=created, last_seen=last_seen, idle=idle)


class MemoryThrottles:
    """Throttles in this process's memory only, for code given no store (a directory
    opened for a configuration check, unit tests). Same counting as a store's: an
    attempt counts while it is younger than the window asked about, and is forgotten
    once older than the window it was recorded with."""

    def __init__(self):
        self._lock = threading.Lock()
        self._hits: dict[str, list[tuple[float, float]]] = {}  # key -> [(at, expires)]

    def _count(self, key, window, now):
        return sum(1 for at, _ in self._hits.get(key, ()) if at > now - window)

    def _record(self, key, window, now):
        kept = [h for h in self._hits.get(key, ()) if h[1] >= now]
        kept.append((now, now + window))
        self._hits[key] = kept

    def throttle_hit(self, key, window, now=None):
        now = time.time() if now is None else now
        with self._lock:
            self._record(key, window, now)
            return self._count(key, window, now)

    def throttle_count(self, key, window, now=None):
        now = time.time() if now is None else now
        with self._lock:
            return self._count(key, window, now)

    def throttle_admit(self, key, window, limit, now=None):
        now = time.time() if now is None else now
        with self._lock:
            if self._count(key, window, now) >= limit:
                return False
            self._record(key, window, now)
            return True

    def throttle_clear(self, key):
        with self._lock:
            self._hits.pop(key, None)
