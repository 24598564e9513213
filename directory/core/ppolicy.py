"""Password policy (in the spirit of OpenLDAP's ppolicy overlay, draft-behera):
account state at bind, lockout after repeated failures, throttling of failed binds,
must-change-after-reset, password quality and history.

Lockout state lives in the entry (pwdFailureTime, pwdAccountLockedTime) so it holds
across restarts and worker processes, and an administrator clears it by deleting
pwdAccountLockedTime. The throttles are counted in the store's throttle file
(store/throttle.py), shared by every worker process and kept across restarts.

Failed binds are counted three ways
-----------------------------------
Every single sign-on user arrives from the SSO server's address (an Apache with
mod_authnz_ldap, a CAS or SAML IdP): a refusal by address alone refuses the whole
district, the SSO's own service account included. So:

* per account: the ppolicy lockout in the entry (`max_failures` within
  `failure_window` lock it for `lockout_duration`), from wherever the failures come.
  Service accounts (names below ou=services) are never locked by failures: one
  locked SSO account is every login of the district refused. They are guarded by
  the next counter instead (an administrator may still lock one on purpose by
  writing pwdAccountLockedTime).
* per (address, account) — key "bind-pair:<address>|<ndn>", for the accounts no
  lockout guards (service accounts, the root DN, every name when max_failures is 0):
  `source_account_max_failures` failures within `source_account_window` refuse binds
  to that account from that address only (unwillingToPerform). Decided by the name,
  never by whether the entry exists (no hint which names exist). A success clears it.
* per address — key "bind-src:<address>": `source_max_failures` failures within
  `source_window` refuse further binds from that address, but only for addresses not
  in `trusted_sources`, and never binds to a service account.

A source in `trusted_sources` (addresses or CIDR blocks of the SSO servers and other
front ends) has no address limit; its binds to service accounts have no limit at all,
so a correct service password from a trusted front end is never refused; its binds to
other accounts keep the lockout and the per-(address, account) limit. IPv6 sources
are counted per /64 (one host has a whole /64 to rotate through); an IPv4-mapped
IPv6 address is its IPv4 address.

What an attacker can still do
-----------------------------
* Behind a trusted front end (anyone who can reach a login page): lock out the
  individual accounts whose names they know, `max_failures` wrong passwords each —
  the ppolicy lockout, as before (with `lockout_duration` 0: until an administrator
  unlocks). They can no longer refuse anyone else's login, nor the service account's
  bind. They guess at most `max_failures` passwords per account per lockout period.
* On a trusted front end itself (a process on that host, not a user of its login
  page): guess at the service accounts without limit. Trust only hosts you run.
* From an unknown address: the same per-account lockouts, and at most
  `source_max_failures` failed binds per `source_window` in all (then that address
  is refused, for everyone behind it, e.g. a NAT); at most `source_account_max_failures`
  guesses per `source_account_window` at one service account or the root DN per
  address (/64), which slows a search of a service password but does not stop an
  attacker with many addresses: service passwords must be long and random. They
  cannot lock a service account, nor refuse its binds from another address.
* Anywhere: binds in flight at the same moment are checked against the failures
  recorded so far, so many connections opened at once get one guess each before the
  first failures count (bounded by the hash pool's speed, as before).
* A trusted front end that forwards a client's own address (X-Forwarded-For) is not
  read: everything from it is one source. Listing a network in `trusted_sources`
  trusts every host in it.
"""
import functools
import hashlib
import ipaddress
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .. import passwords
from ..district.gentime import gentime, gentime_micro, parse_gentime
from ..store.base import MemoryThrottles
from .errors import LDAPError, ResultCode
from .operation import operation
from .overlay import Overlay

SOURCE_BLOCKED = "too many failed binds from this address; try again later"
PAIR_BLOCKED = "too many failed binds for this account from this address; try again later"


@dataclass
class PolicyConfig:
    """password_policy: in config.yaml (config.py declares its keys from these fields)."""
    min_length: int = 8
    history: int = 5
    max_failures: int = 5
    failure_window: int = 300  # seconds in which max_failures locks the account
    lockout_duration: int = 900  # seconds; 0 = until an administrator clears it
    source_max_failures: int = 50  # failed binds from one unknown address …
    source_window: int = 60  # … within this many seconds, then that address is refused
    source_account_max_failures: int = 5  # failed binds for one account from one address …
    source_account_window: int = 300  # … within this many seconds, then that pair is refused
    trusted_sources: tuple = ()  # addresses or CIDR blocks of SSO servers and other front ends
    check_common: bool = True  # refuse common passwords, repeats, runs and the account's names


# -- weak passwords (check_common)
COMMON_FILE = Path(__file__).with_name("common-passwords.txt")
# runs a password must not mostly be (and their reverses): the alphabet, digits, keyboard rows
RUNS = ("abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm",
        "qwertzuiop", "azertyuiop", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p")
NAME_ATTRS = ("uid", "givenName", "sn", "cn")  # the account's names a password must not contain
MIN_NAME = 3  # shorter names (uid "s3", "Li") are not looked for


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset:
    """The shipped list (common-passwords.txt), read once per process."""
    with open(COMMON_FILE, encoding="utf-8") as fh:
        return frozenset(line.strip().casefold() for line in fh if line.strip() and not line.startswith("#"))


def _plain(text: str) -> str:
    """Case-folded, accents removed: "José" and "jose" are the same name."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def _longest_run(pw: str) -> int:
    """The longest stretch of pw that is a run of RUNS, forwards or backwards."""
    best = 0
    for run in RUNS + tuple(r[::-1] for r in RUNS):
        i = 0
        while i < len(pw):
            j = i
            while j + 1 < len(pw) and run.find(pw[j:j + 2]) >= 0:
                j += 1
            best = max(best, j - i + 1)
            i = j + 1
    return best


def weakness(password: str, names=()) -> str | None:
    """Why `password` is weak, or None: mostly one character or a short pattern repeated,
    mostly an alphabet, digit or keyboard run, containing one of `names` (3 letters or
    more), or a common password (also with digits or symbols before or after it)."""
    pw = _plain(password)
    n = len(pw)
    if not n:
        return "the password is empty"
    if Counter(pw).most_common(1)[0][1] * 5 >= n * 3 or len(set(pw)) <= 2:
        return "the password is mostly one repeated character"
    for period in range(2, min(4, n // 2) + 1):
        if all(pw[i] == pw[i % period] for i in range(n)):
            return "the password is a short pattern repeated"
    if _longest_run(pw) >= max(4, n - 2):
        return "the password is a sequence of letters, digits or keyboard keys (such as abcdefgh or 12345678)"
    for name in names:
        name = _plain(name)
        for part in {name, *name.replace("-", " ").replace("'", " ").replace(".", " ").split()}:
            if sum(c.isalpha() for c in part) >= MIN_NAME and part in pw:
                return "the password contains the account's name"
    common = common_passwords()
    core = pw.strip("0123456789!@#$%^&*()-_=+.,;:?/ ")
    if pw in common or (core and core in common):
        return "the password is one of the most common passwords"
    return None


def parse_sources(values) -> tuple:
    """`trusted_sources` as networks; ValueError names a bad one."""
    nets = []
    for v in values or ():
        try:
            nets.append(ipaddress.ip_network(str(v).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address or CIDR block") from None
    return tuple(nets)


def _address(host: str):
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@functools.lru_cache(maxsize=4096)  # a pure function of the address: parsed once per client
def source_key(host: str) -> str:
    """What failures of `host` are counted under: the IPv4 address, the IPv6 /64."""
    addr = _address(host)
    if addr is None:
        return host
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class BindAttempt(NamedTuple):  # one per bind: a tuple is the cheapest record to make
    """A bind admitted by PasswordPolicy.bind_attempt: the throttle keys its failure is
    counted under, and whether to clear the pair counter on success."""
    keys: tuple = ()
    pair: str | None = None
    pair_failures: int = 0
    service: bool = False
    trusted: bool = False


class PasswordPolicy:
    def __init__(self, config: PolicyConfig, store=None, services_ndn: str = "", root_ndn: str = ""):
        self.cfg = config
        self._trusted = parse_sources(config.trusted_sources)
        self.services_ndn = services_ndn  # ou=services,<suffix>, normalized
        self.root_ndn = root_ndn
        if store is None:  # a directory opened without a store (configuration checks)
            store = MemoryThrottles()
        self._throttle = store  # failed binds per address: shared by every worker (store/throttle.py)

    # -- bind
    # Run on the reactor thread (listener.authenticate): the checks are reads, a failure
    # one INSERT per key into the throttle file, which never fsyncs (tens of µs). The
    # failure is recorded before the client has its answer, so its next bind — on
    # whichever worker — already counts it; the writer thread would make every failed
    # bind wait for the group commit of the store.
    def trusted(self, host: str) -> bool:
        """Is `host` one of the configured trusted front ends?"""
        if not self._trusted:
            return False
        addr = _address(host)
        return addr is not None and any(addr in net for net in self._trusted)

    def is_service(self, ndn: str) -> bool:
        """A service account: a name below ou=services (whom the access rules name as
        services too). By name, whether it exists or not: the answers must not tell."""
        return bool(self.services_ndn) and ndn.endswith("," + self.services_ndn)

    def pair_limited(self, ndn: str, service: bool) -> bool:
        """Whether the per-(address, account) limit applies: to the accounts no lockout
        guards — service accounts, the root DN, every name when max_failures is 0. (For
        the others the lockout already limits guesses, and an administrator's unlock
        must take effect at once; by name only, so existing and unknown names alike.)"""
        return service or ndn == self.root_ndn or self.cfg.max_failures == 0

    def bind_attempt(self, host: str, ndn: str, service: bool, now=None) -> BindAttempt:
        """Before verifying a password: refuse (LDAPError unwillingToPerform) if a
        throttle is over its limit, else the BindAttempt to report the outcome with."""
        cfg = self.cfg
        trusted = self.trusted(host)
        src = source_key(host)
        keys = []
        if not trusted:
            key = "bind-src:" + src
            if not service and cfg.source_max_failures > 0 and \
                    self._throttle.throttle_count(key, cfg.source_window, now) >= cfg.source_max_failures:
                raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, SOURCE_BLOCKED)
            if cfg.source_max_failures > 0:
                keys.append((key, cfg.source_window))
        pair, failures = None, 0
        if not (trusted and service) and cfg.source_account_max_failures > 0 and self.pair_limited(ndn, service):
            # a long DN is counted under its digest: the row stays small whatever is sent
            pair = f"bind-pair:{src}|{ndn if len(ndn) <= 256 else hashlib.sha256(ndn.encode()).hexdigest()}"
            failures = self._throttle.throttle_count(pair, cfg.source_account_window, now)
            if failures >= cfg.source_account_max_failures:
                raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, PAIR_BLOCKED)
            keys.append((pair, cfg.source_account_window))
        return BindAttempt(tuple(keys), pair, failures, service, trusted)

    def bind_failed(self, attempt: BindAttempt, now=None):
        """The bind was refused (wrong password, or a disabled, locked, … account)."""
        for key, window in attempt.keys:
            self._throttle.throttle_hit(key, window, now)

    def bind_succeeded(self, attempt: BindAttempt):
        if attempt.pair is not None and attempt.pair_failures:
            self._throttle.throttle_clear(attempt.pair)

    @staticmethod
    def records_failures(attempt: BindAttempt) -> bool:
        """Whether a failure goes into the entry (pwdFailureTime, lockout): not for
        service accounts."""
        return not attempt.service

    # the address limit alone (an unknown address, a non-service account)
    def source_blocked(self, host: str) -> bool:
        limit = self.cfg.source_max_failures
        return limit > 0 and not self.trusted(host) and \
            self._throttle.throttle_count("bind-src:" + source_key(host), self.cfg.source_window) >= limit

    def note_source_failure(self, host: str):
        if self.cfg.source_max_failures > 0 and not self.trusted(host):
            self._throttle.throttle_hit("bind-src:" + source_key(host), self.cfg.source_window)

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
        if self.cfg.check_common:
            names = [v.decode("utf-8", "replace") for a in NAME_ATTRS for v in entry.attrs.get(a, ())]
            why = weakness(new.decode("utf-8", "replace"), names)
            if why:
                raise LDAPError(ResultCode.CONSTRAINT_VIOLATION, f"{why}; choose another")
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
PASSWORD_STATE = ("userPassword", "pwdHistory", "rollcallAccountStatus", "uid", "employeeNumber", "mail", "cn",
                  "givenName", "sn")
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
