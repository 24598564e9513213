"""Console sessions and the sign-in throttle.

A session is created on the first page that needs one (a public form gets an anonymous
session so it can carry a CSRF token). Signing in replaces it with a new one (no
fixation). A signed-in session owns an LDAP connection bound as the person; it is used
by one request at a time (ldap3 connections are not thread-safe) and unbound when the
session ends: sign-out, idle timeout, or server stop. The password is never kept.

A signed-in session is also a record in the store (store/base.py Sessions, under
sha256 of its id), so that a browser's next request may reach another host: that host
rebuilds the Session from the record and binds its connection with a session ticket
(core/identity.py). SessionStore is only this process's cache of live Session objects.
Anonymous sessions and one-time results (a generated password) stay
in this process's memory: a generated password is never written to the database.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field

from ..store.base import MemoryThrottles


@dataclass
class Roles:
    """What the signed-in person may do in the console, from their memberOf (the
    directory still decides every action)."""

    district_admin: bool = False
    subadmin_sites: list = field(default_factory=list)      # cn=student-email-admins
    principal_sites: list = field(default_factory=list)     # cn=principals
    designee_sites: list = field(default_factory=list)      # cn=photo-designees
    vendor_sites: list = field(default_factory=list)        # cn=photo-vendors
    approver_groups: list = field(default_factory=list)     # application approver groups (ndn)
    kind: str = ""                                          # student | staff | nonemployee | service | root

    @property
    def photo_sites(self) -> list:
        return sorted(set(self.principal_sites) | set(self.designee_sites) | set(self.vendor_sites))

    @property
    def approver(self) -> bool:
        return bool(self.district_admin or self.principal_sites or self.approver_groups)


SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def anonymous_csrf(sid: str) -> str:
    """An anonymous session's CSRF token, derived from its id: any host can check a
    public form (the sign-in form fetched from one host, posted to another) without
    anonymous sessions in the database. The id is in a Secure, HttpOnly, SameSite=Strict
    cookie that another site can neither read nor set, and the token does not reveal it.
    A signed-in session has a random token of its own, kept in its record."""
    digest = hashlib.sha256(b"rollcall-anonymous-csrf\0" + sid.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class Session:
    def __init__(self, idle_seconds: int):
        self.id = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(32)
        self.idle_seconds = idle_seconds
        self.last_seen = time.monotonic()
        self.dn = ""               # '' until signed in
        self.name = ""
        self.uid = ""
        self.must_change = False   # after an administrator's reset: only the password page
        self.roles = Roles()
        self.conn = None           # ldap3 connection bound as `dn`
        self.lock = threading.Lock()
        self.flash: list = []      # one-time messages for the next page
        self.results: dict = {}    # one-time results (a reset's password): token -> dict, taken once
        self.pwd_stamp = None      # the password's stamp at sign-in (Console.password_stamp)
        self.site_names: dict = {} # cost center -> site name, to name schools on pages
        self.created = time.time()
        self.stored_seen = 0.0     # wall-clock last_seen of the store's record (touched at most every ~30 s)
        self.stored_flash: list = []  # the notices the store's record holds (any host shows them once)
        self.ended = False         # signed out or ended elsewhere: its record is gone for good

    def record(self) -> dict:
        """What the store keeps of a signed-in session (store/base.py Sessions)."""
        now = time.time()
        self.stored_seen = now
        self.stored_flash = list(self.flash)
        return {"dn": self.dn, "name": self.name, "uid": self.uid, "roles": asdict(self.roles),
                "site_names": self.site_names, "csrf": self.csrf, "must_change": self.must_change,
                "pwd_stamp": self.pwd_stamp, "created": self.created, "last_seen": now,
                "idle": float(self.idle_seconds), "flash": self.stored_flash}

    def refresh(self, record: dict):
        """What another host may have changed in the record since this one was cached."""
        self.must_change = bool(record["must_change"])
        self.name, self.uid = record["name"], record["uid"]
        self.roles = Roles(**record["roles"])
        self.site_names = dict(record["site_names"])
        stamp = record["pwd_stamp"]
        self.pwd_stamp = None if stamp is None else tuple(stamp)
        self.stored_seen = record["last_seen"]
        # notices ("Request 12 approved.") follow the browser: the page after a redirect
        # may be served by another host, which shows them and clears them in the record
        self.flash = list(record.get("flash", ()))
        self.stored_flash = list(self.flash)

    @classmethod
    def from_record(cls, sid: str, record: dict) -> "Session":
        """A session another host (or an earlier cache entry) signed in; no connection yet."""
        s = cls(record["idle"])
        s.id, s.csrf, s.dn, s.created = sid, record["csrf"], record["dn"], record["created"]
        s.refresh(record)
        return s

    def keep_result(self, value: dict) -> str:
        """Keep a result for one GET (POST-redirect-GET); returns its token."""
        while len(self.results) >= 20:
            self.results.pop(next(iter(self.results)))
        token = secrets.token_urlsafe(16)
        self.results[token] = value
        return token

    def take_result(self, token: str):
        """The result kept under `token`, once; None afterwards (or for a made-up token)."""
        return self.results.pop(token, None)

    @property
    def signed_in(self) -> bool:
        return bool(self.dn)

    def expired(self, now: float | None = None) -> bool:
        return (now or time.monotonic()) - self.last_seen > self.idle_seconds

    def touch(self):
        self.last_seen = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_seen

    def close(self):
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.unbind()
            except Exception:  # noqa: BLE001 - the server may already have closed it
                pass


class SessionStore:
    """This process's live sessions (the console runs in one process, the first worker):
    the signed-in ones are a cache of the store's records (Console._find_session checks
    the record at every request), each with its LDAP connection. Anonymous sessions (a CSRF token for a public form) are capped: past `max_anonymous`
    the least recently used ones go first, so a crawler cannot fill the memory."""

    def __init__(self, idle_seconds: float, max_anonymous: int = 10000):
        self.idle_seconds = idle_seconds
        self.max_anonymous = max_anonymous
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self, sid: str | None = None) -> Session:
        """A new anonymous session; `sid`: one another host made (its cookie)."""
        s = Session(self.idle_seconds)
        if sid is not None:
            s.id = sid
        s.csrf = anonymous_csrf(s.id)
        with self._lock:
            self._sessions[s.id] = s
            anonymous = [x for x in self._sessions.values() if not x.signed_in]
            if len(anonymous) > self.max_anonymous:
                anonymous.sort(key=lambda x: x.last_seen)
                for x in anonymous[:len(anonymous) - self.max_anonymous]:
                    self._sessions.pop(x.id, None)
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            return None
        if s.expired():
            self.drop(s)
            return None
        return s

    def adopt(self, s: Session) -> Session:
        """Cache a session rebuilt from its record; one already cached (another request
        rebuilt it meanwhile) wins, so a session has one connection per process."""
        with self._lock:
            return self._sessions.setdefault(s.id, s)

    def forget(self, s: Session):
        """Remove without closing (the caller closes it off the reactor)."""
        with self._lock:
            self._sessions.pop(s.id, None)

    def drop(self, s: Session):
        with self._lock:
            self._sessions.pop(s.id, None)
        s.close()

    def expired(self) -> list:
        """Remove and return the idle sessions (the caller closes them off the reactor)."""
        now = time.monotonic()
        with self._lock:
            gone = [s for s in self._sessions.values() if s.expired(now)]
            for s in gone:
                self._sessions.pop(s.id, None)
        return gone

    def all(self) -> list:
        with self._lock:
            return list(self._sessions.values())


class SignInThrottle:
    """Failed sign-ins per browser address and per account name within a window: the
    console's own limit, before the directory's per-account lockout and per-address
    throttling (which see the same browser address) come into play.

    Counted in the store's throttles (SQLite: its throttle file, store/throttle.py;
    PostgreSQL: shared by every host), so a restart of the server keeps them. With a
    local store blocked and failed run on the reactor thread (the sign-in route): a
    COUNT and an INSERT without fsync, tens of microseconds; with a remote one in the
    console's pool (Console.store_read); succeeded runs in the pool."""

    def __init__(self, max_failures: int, window: int, store=None):
        self.max_failures = max_failures
        self.window = window
        if store is None:
            store = MemoryThrottles()
        self.store = store

    @staticmethod
    def _key(key: str) -> str:
        # the pages pass the browser address, "user:<name>" or "activate:<name>"
        kind, sep, rest = key.partition(":")
        if sep and kind in ("user", "activate"):
            return f"signin-{kind}:{rest}"
        return "signin-src:" + key

    def blocked(self, *keys) -> bool:
        if self.max_failures <= 0:
            return False
        return any(self.store.throttle_count(self._key(k), self.window) >= self.max_failures for k in keys)

    def failed(self, *keys):
        if self.max_failures <= 0:
            return
        for k in keys:
            self.store.throttle_hit(self._key(k), self.window)

    def succeeded(self, key):
        self.store.throttle_clear(self._key(key))
