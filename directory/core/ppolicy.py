"""Password policy (in the spirit of OpenLDAP's ppolicy overlay, draft-behera):
account state at bind, lockout after repeated failures, per-source throttling,
must-change-after-reset, password quality and history.

Lockout state lives in the entry (pwdFailureTime, pwdAccountLockedTime) so it holds
across restarts and worker processes, and an administrator clears it by deleting
pwdAccountLockedTime. Per-source throttling is counted in the store's throttle file
(store/throttle.py), shared by every worker process and kept across restarts.
"""
import time
from dataclasses import dataclass, field

from .. import passwords
from ..district.gentime import gentime, gentime_micro, parse_gentime
from ..store.base import MemoryThrottles
from .errors import LDAPError, ResultCode
from .operation import operation
from .overlay import Overlay


@dataclass
class PolicyConfig:
    min_length: int = 8
    history: int = 5
    max_failures: int = 5
    failure_window: int = 300  # seconds in which max_failures locks the account
    lockout_duration: int = 900  # seconds; 0 = until an administrator clears it
    source_max_failures: int = 50  # failed binds from one address …
    source_window: int = 60  # … within this many seconds, then that address is refused

    @classmethod
    def from_raw(cls, raw):
        raw = raw or {}
        cfg = cls()
        for key, value in raw.items():
            if not hasattr(cfg, key):
                raise ValueError(f"password_policy.{key}: unknown key")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"password_policy.{key}: expected an integer >= 0")
            setattr(cfg, key, value)
        return cfg


class PasswordPolicy:
    def __init__(self, config: PolicyConfig, store=None):
        self.cfg = config
        if store is None:  # a directory opened without a store (configuration checks)
            store = MemoryThrottles()
        self._throttle = store  # failed binds per address: shared by every worker (store/throttle.py)

    # -- bind
    # Both run on the reactor thread (listener.authenticate): the count is a read, the
    # record one INSERT into the throttle file, which never fsyncs (tens of µs). The
    # failure is recorded before the client has its answer, so its next bind — on
    # whichever worker — already counts it; the writer thread would make every failed
    # bind wait for the group commit of the store.
    def source_blocked(self, host: str) -> bool:
        limit = self.cfg.source_max_failures
        return limit > 0 and self._throttle.throttle_count("bind-src:" + host, self.cfg.source_window) >= limit

    def note_source_failure(self, host: str):
        if self.cfg.source_max_failures > 0:
            self._throttle.throttle_hit("bind-src:" + host, self.cfg.source_window)

    def locked(self, entry, now=None) -> bool:
        stamp = entry.first("pwdAccountLockedTime")
        if stamp is None:
            return False
        if stamp == b"000001010000Z":  # ppolicy's "locked until an administrator unlocks"
            return True
        locked_at = parse_gentime(stamp)
        if locked_at is None or self.cfg.lockout_duration == 0:
            return True
        return (now or time.time()) < locked_at + self.cfg.lockout_duration

    def after_failure(self, attrs: dict, now=None):
        """Record a failed bind in the entry's attributes; lock when over the limit."""
        now = now or time.time()
        cutoff = now - self.cfg.failure_window
        recent = [v for v in dict.fromkeys(attrs.get("pwdFailureTime", [])) if (parse_gentime(v) or 0) >= cutoff]
        stamp = gentime_micro(now)
        while stamp in recent:
            now += 0.000001
            stamp = gentime_micro(now)
        recent.append(stamp)
        attrs["pwdFailureTime"] = recent[-max(self.cfg.max_failures, 1):]
        if self.cfg.max_failures and len(recent) >= self.cfg.max_failures:
            attrs["pwdAccountLockedTime"] = [gentime(now)]

    @staticmethod
    def after_success(attrs: dict) -> bool:
        """Forget failures after a successful bind; True if anything changed."""
        changed = False
        for name in ("pwdFailureTime", "pwdAccountLockedTime"):
            if name in attrs:
                del attrs[name]
                changed = True
        return changed

    # -- changes
    def check_quality(self, entry, new: bytes):
        if len(new) < self.cfg.min_length:
            raise LDAPError(ResultCode.CONSTRAINT_VIOLATION,
                            f"password is too short (at least {self.cfg.min_length} characters)")
        folded = new.decode("utf-8", "replace").casefold()
        for attr in ("uid", "employeeNumber", "mail", "cn"):
            for v in entry.attrs.get(attr, ()):
                if v.decode("utf-8", "replace").casefold() == folded:
                    raise LDAPError(ResultCode.CONSTRAINT_VIOLATION, f"password must not be the account's {attr}")
        for old in list(entry.attrs.get("userPassword", ())) + list(entry.attrs.get("pwdHistory", ())):
            if passwords.verify(new, _history_hash(old)):
                raise LDAPError(ResultCode.CONSTRAINT_VIOLATION, "password was used recently; choose another")

    def new_history(self, entry) -> list:
        """pwdHistory after a change: the current hash joins the last N."""
        if not self.cfg.history:
            return []
        hist = list(entry.attrs.get("pwdHistory", ()))
        for cur in entry.attrs.get("userPassword", ()):
            hist.append(gentime() + b"#" + cur)
        return hist[-self.cfg.history:]


def _history_hash(value: bytes) -> bytes:
    # pwdHistory values are "<time>#<hash>" (ppolicy stores time#syntax#len#hash; we keep it simple)
    return value.split(b"#", 1)[1] if b"#" in value and value[:1].isdigit() else value


# The entry state a password check depends on: if any of it changed between the slow
# checks (outside the write lock) and the transaction, the write starts over.
PASSWORD_STATE = ("userPassword", "pwdHistory", "rollcallAccountStatus", "uid", "employeeNumber", "mail", "cn")
PASSWORD_RETRIES = 3


class StalePasswordCheck(Exception):
    """The entry changed after its password was checked and hashed: start again."""


@dataclass
class PreparedPasswords:
    """Slow password work done before the write lock: hashes of the clear values, the
    policy already checked, and which stored values clear values to delete match."""

    hashes: dict = field(default_factory=dict)  # clear value -> stored form
    deletes: dict = field(default_factory=dict)  # clear value -> [stored values it matches]
    checked: bool = False  # quality, history and status checked against `state`
    state: tuple | None = None  # PASSWORD_STATE of the entry as checked

    @staticmethod
    def state_of(entry) -> tuple:
        return tuple(tuple(entry.attrs.get(n, ())) for n in PASSWORD_STATE)

    def check_unchanged(self, entry):
        if self.state is not None and self.state_of(entry) != self.state:
            raise StalePasswordCheck(entry.dn)

    def stored(self, values: list, hasher) -> list:
        """Values as stored: hashed already, prepared, or (only when nothing was
        prepared: bulk load, the command line) hashed here."""
        return [v if passwords.is_hashed(v) else self.hashes.get(v) or hasher.hash(v) for v in values]


def retry_stale(fn):
    """Run a write whose slow part ran before the lock; if the entry changed meanwhile
    (StalePasswordCheck from the transaction), redo it from the start."""
    for attempt in range(PASSWORD_RETRIES):
        try:
            return fn()
        except StalePasswordCheck:
            if attempt == PASSWORD_RETRIES - 1:
                raise LDAPError(ResultCode.BUSY, "the entry kept changing during the password change; "
                                                 "try again") from None
    raise AssertionError("unreachable")


class PasswordPolicyOverlay(Overlay):
    """The password policy's part of a write's transaction (slapd's ppolicy overlay):
    after a password change the policy governs — anyone's but the root DN's plain
    modify, and every Password Modify, marked by the core in the operation's notes —
    the old hash joins pwdHistory, pwdChangedTime is set, and pwdReset says whether
    the holder must change it (set by someone else) or not (their own change). The
    slow checks (quality, history) ran before the lock: Directory.prepare_password_changes."""

    def before_modify(self, tx, ident, old, new):
        if not operation(tx, ident).notes.pop(("ppolicy", old.id), False):
            return
        history = self.d.policy.new_history(old)
        if history:
            new.attrs["pwdHistory"] = history
        new.attrs["pwdChangedTime"] = [gentime()]
        if old.ndn != ident.ndn:
            new.attrs["pwdReset"] = [b"TRUE"]  # set by someone else: must change at next login
        else:
            new.attrs.pop("pwdReset", None)
