"""The Directory core: every operation of every front end goes through here, with
the caller's Identity, so schema checks, access control and business rules are the
same for ldapmodify, the command line and the sync jobs.

Methods are synchronous. The LDAP server calls reads on the reactor thread (they are
index-driven and bounded) and writes and password checks in thread pools.
"""
import secrets
import time
import uuid
from dataclasses import dataclass, field

from .. import passwords
from ..config import ConfigError
from ..district.gentime import gentime_text, now_generalized, parse_gentime
from .accounts import AccountsOverlay
from .acl import ACLConfigError, AccessControl, Level, parse_rules
from .bulk import BulkLoader
from .limits import LimitRules, RuleError, SearchLimits
from .memberof import MemberOf
from .operation import Operation, internal_replace, system_identity
from .photos import PhotoOverlay
from .posix import PosixConfigError, PosixOverlay
from .ppolicy import PasswordPolicy, PasswordPolicyOverlay, PolicyConfig, PreparedPasswords, retry_stale
from .dn import DN, DNNormalizer
from .entry import Entry
from .errors import LDAPError, ResultCode
from .filter import STREAMS, FilterCompiler, IndexPlanner
from .identity import ANONYMOUS, Identity  # noqa: F401 - ANONYMOUS: re-exported (the server imports it from here)
from .requests import RequestsOverlay
from .unique import UniqueIdentifiers

SCOPE_BASE, SCOPE_ONE, SCOPE_SUB, SCOPE_CHILDREN = 0, 1, 2, 3
MOD_ADD, MOD_DELETE, MOD_REPLACE, MOD_INCREMENT = 0, 1, 2, 3

SUBSCHEMA_DN = "cn=Subschema"
VENDOR = "Rollcall"
VERSION = "0.1.0"

# The server's own writes, named in the audit log.
PPOLICY = system_identity("ppolicy")  # bind bookkeeping: failures, lockout
REHASH = system_identity("rehash")    # a migrated hash upgraded after a bind

# Virtual operational attributes: computed when read, never stored.
VIRTUAL = ("entryDN", "hasSubordinates", "subschemaSubentry")
# Written by the server only (RFC 4512 NO-USER-MODIFICATION, and ours).
SERVER_MAINTAINED = {
    "entryUUID", "createTimestamp", "modifyTimestamp", "creatorsName", "modifiersName",
    "structuralObjectClass", "entryDN", "hasSubordinates", "subschemaSubentry", "memberOf",
    "pwdChangedTime", "pwdFailureTime", "pwdHistory", "pwdReset",
}
# Server-maintained, but an administrator may delete them (to unlock an account).
ADMIN_CLEARABLE = {"pwdAccountLockedTime", "pwdFailureTime"}
RESTRICTED_MESSAGE = "Operations are restricted to bind/unbind/abandon/StartTLS/modify password"

# The built-in policy when config.yaml has no `access:` section.
DEFAULT_ACCESS = [
    {"to": {"attrs": ["userPassword", "pwdHistory"]}, "by": ["self write", "anonymous auth", "* none"]},
    {"to": "*", "by": ["self read", "users read", "* none"]},
]


def _increment_ok(v: bytes) -> bool:
    """RFC 4517 3.3.16, strictly as the schema checks it: not 'abc', '1.5', '', '+1',
    ' 1', '1_0' or '01' (all of which int() takes or chokes on); and short enough
    for int()/str() (Python refuses more than 4300 digits)."""
    digits = v[1:] if v[:1] == b"-" else v
    return digits.isdigit() and digits.isascii() and (digits[:1] != b"0" or v == b"0") and len(v) <= 4000


@dataclass
class WriteOptions:
    """Per-operation controls that change what a write does or returns."""

    assertion: tuple | None = None  # RFC 4528 filter the target must match
    pre_read: list | None = None  # RFC 4527 attributes to return as before the change
    post_read: list | None = None  # ... and after it
    relax: bool = False  # bulk load: accept server-maintained attributes as given


@dataclass
class WriteResult:
    dn: str
    pre_read: tuple | None = None  # (dn, [(attr, values)])
    post_read: tuple | None = None
    generated_password: str | None = None
    extra: dict = field(default_factory=dict)


def _disabled(disabled: bool, expires: float | None) -> bool:
    return disabled or (expires is not None and expires <= time.time())


BIND_CARD = "\0bind"  # Entry.keys slot of the entry's BindCard


class BindCard:
    """The parts of a bind decision that depend on the entry alone (the time, the
    lockout duration and the throttles are looked at per bind): its userPassword values
    parsed for checking (passwords.prepare), status, expiry, whether a reset
    is recorded, and whether the access rules let it authenticate."""

    __slots__ = ("checks", "slow", "disabled", "pending", "expires", "can_authenticate", "restricted")

    def __init__(self, directory, entry: Entry):
        hashes = entry.attrs.get("userPassword", ())
        self.checks = tuple((stored, passwords.prepare(stored)) for stored in hashes)
        self.slow = any(passwords.is_slow(h) for h in hashes)
        status = directory.account_status(entry)
        self.disabled = status == "DISABLED"
        self.pending = status == "PENDING"
        self.expires = directory.account_expiry(entry)
        self.can_authenticate = directory.acl.can_authenticate(entry)
        self.restricted = entry.first("pwdReset") == b"TRUE"

    def match(self, password: bytes) -> bytes | None:
        """The stored value the password matches, or None (Directory.verify_any)."""
        for stored, check in self.checks:
            if check(password):
                return stored
        return None


class Directory:
    def __init__(self, config, schema, store, hasher=None):
        self.config = config
        self.schema = schema
        self.store = store
        self.hasher = hasher or passwords.Hasher(config.password_scheme, **config.argon2)
        self.dn = DNNormalizer(schema)
        schema.dn_normalizer = self.dn.normalize
        self.suffix = config.suffix
        self.suffix_ndn = self.dn.normalize(config.suffix)
        self.root_ndn = self.dn.normalize(config.root_dn)
        self.root_dn = config.root_dn
        self.filters = FilterCompiler(self)
        self.planner = IndexPlanner(self)
        self._subtypes: dict[str, tuple] = {}
        self._selectors: dict[tuple, AttributeSelector] = {}
        self._index_kinds = {}
        for attr, kinds in config.indexes.items():
            at = schema.attribute(attr)
            if at is None:
                raise ConfigError(f"indexes.{attr}", "attribute type not in the schema", config.path)
            self._index_kinds[at.name] = frozenset(kinds)
        # an indexed supertype (name, …) indexes its subtypes' values too, as slapd's
        # index does: (name=x) is then one index read; sources: the types it covers
        self._index_plan = [(name, name.lower(), kinds, schema.attribute(name), self.subtypes(name))
                            for name, kinds in self._index_kinds.items()]
        self.supported_controls = []  # filled by the server: the controls it implements
        # filled by the server when metrics are on: () -> attributes of cn=Monitor (root DN only)
        self.monitor = None
        self.supported_extensions = []
        try:
            rules = parse_rules(config.raw.get("access", DEFAULT_ACCESS), self)
        except ACLConfigError as exc:  # "access[3].to.scope: must be …"
            key, _, reason = str(exc).partition(": ")
            raise ConfigError(key, reason, config.path) from None
        self.acl = AccessControl(self, rules)
        try:
            self.limits = LimitRules(self, config.limit_rules, SearchLimits(
                config.size_limit, config.time_limit, config.unindexed_limit))
        except RuleError as exc:  # "[0].who: …"
            key, _, reason = str(exc).partition(": ")
            raise ConfigError("limits.rules" + key, reason, config.path) from None
        self.policy = PasswordPolicy(PolicyConfig(**config.section("password_policy")), store,  # checked at load
                                     services_ndn=self.normalize_dn(f"ou=services,{config.suffix}"),
                                     root_ndn=self.root_ndn)
        self.memberof = MemberOf(self)
        self._decoy = self.hasher.hash(secrets.token_urlsafe(24).encode())
        # Business rules run inside each write's transaction, in this order: POSIX numbers
        # (posix.enabled), the password policy (history, change time, must-change after a
        # reset), district IDs and usernames below ou=people, memberOf, access requests and
        # grants (ou=requests), account status rules and activation, staged student photos
        # (ou=staged-photos).
        try:
            self.posix = PosixOverlay(self)
        except PosixConfigError as exc:
            raise ConfigError(*exc.args, config.path) from None
        # posix first: the other rules then see the entry as it will be stored
        self.overlays = [self.posix, PasswordPolicyOverlay(self), UniqueIdentifiers(self), self.memberof,
                         RequestsOverlay(self), AccountsOverlay(self), PhotoOverlay(self)]
        if store is not None:
            self._stamp_schema()

    # ------------------------------------------------------------------ helpers
    def parse_dn(self, text: str) -> DN:
        return DN.parse(text)

    def normalize_dn(self, text: str) -> str:
        return self.dn.normalize(text)

    def index_kinds(self, attr: str):
        return self._index_kinds.get(attr, ())

    @staticmethod
    def index_key(key) -> str:
        return key if isinstance(key, str) else "x:" + key.hex()

    def subtypes(self, name: str) -> tuple:
        """The attribute and every attribute derived from it (e.g. name -> cn, sn, …)."""
        got = self._subtypes.get(name)
        if got is None:
            out = [name]
            for at in self.schema.attribute_types:
                sup, seen = at.sup, set()
                while sup and sup not in seen:
                    seen.add(sup)
                    parent = self.schema.attribute(sup)
                    if parent is None:
                        break
                    if parent.name == name:
                        out.append(at.name)
                        break
                    sup = parent.sup
            got = self._subtypes[name] = tuple(out)
        return got

    def values_for_filter(self, entry: Entry, attr: str) -> list:
        values = entry.attrs.get(attr)
        if values is not None:
            return values
        if attr == "entryDN":
            return [entry.dn.encode()]
        if attr == "hasSubordinates":
            return [b"TRUE" if entry.id and self.store.has_children(entry.id) else b"FALSE"]
        if attr == "subschemaSubentry":
            return [SUBSCHEMA_DN.encode()]
        return []

    def keys_of(self, entry: Entry, attr: str):
        """Equality keys of an attribute's values, computed once per cached entry."""
        keys = entry.keys.get(attr)
        if keys is None:
            norm = self.schema.normalize_or_none
            keys = frozenset(
                k for k in (norm(attr, v) for v in self.values_for_filter(entry, attr)) if k is not None
            )
            entry.keys[attr] = keys
        return keys

    def objectclass_closure(self, entry: Entry) -> frozenset:
        got = entry.keys.get("\0oc")
        if got is None:
            names = set()
            for v in entry.attrs.get("objectClass", ()):
                try:
                    names.update(n.lower() for n in self.schema.superclasses(v.decode()))
                except Exception:
                    names.add(v.decode("utf-8", "replace").lower())
            got = entry.keys["\0oc"] = frozenset(names)
        return got

    def lookup(self, ndn: str) -> Entry | None:
        return self.store.get_by_ndn(ndn)

    def visible(self, ident: Identity | None, entry: Entry) -> bool:
        """May this identity know the entry exists? (slapd's 'disclose')"""
        return ident is None or ident.is_root or self.acl.hidden_attrs(ident, entry) is not None

    def _matched(self, dn: DN, ident: Identity | None = None) -> str:
        """The closest existing ancestor the caller may see, for noSuchObject's matchedDN."""
        parent = dn.parent()
        while parent:
            entry = self.store.get_by_ndn(self.dn.normalize(str(parent)))
            if entry is not None and self.visible(ident, entry):
                return entry.dn
            parent = parent.parent()
        return ""

    def require(self, text: str, tx=None, ident: Identity | None = None) -> Entry:
        """The entry at a DN, or noSuchObject with the matched DN. Inside a write
        transaction pass `tx`: it reads the database, not the shared cache. With
        `ident`, an entry the caller may not see is reported as not existing, so
        error codes do not reveal what is in the directory."""
        dn = DN.parse(text)
        ndn = self.dn.normalize(text) if dn else None
        entry = (tx.get_by_ndn(ndn) if tx is not None else self.store.get_by_ndn(ndn)) if dn else None
        if entry is None or not self.visible(ident, entry):
            raise LDAPError(ResultCode.NO_SUCH_OBJECT, "", self._matched(dn, ident) if dn else "")
        return entry

    def in_naming_context(self, ndn: str) -> bool:
        return ndn == self.suffix_ndn or ndn.endswith("," + self.suffix_ndn)

    def _special_entry(self, dn_text: str) -> Entry | None:
        """The root DSE or cn=Subschema when the DN names one of them."""
        ndn = self.dn.normalize(dn_text) if dn_text.strip() else ""
        if ndn == "":
            return self.root_dse()
        if ndn == "cn=subschema":
            return self.subschema()
        return None

    def _writable(self, dn_text: str, op: str) -> str:
        """The normalised DN of a write's target, after the answers slapd gives for the
        entries no write may touch: the root DSE and cn=Subschema (53; an add of
        them 68, they exist) and anything outside the naming context (53, "no
        global superior knowledge": there is no referral to give)."""
        ndn = self.dn.normalize(dn_text) if dn_text.strip() else ""
        if ndn in ("", "cn=subschema"):
            what = "the root DSE" if ndn == "" else "the subschema subentry"
            if op == "add":
                raise LDAPError(ResultCode.ENTRY_ALREADY_EXISTS, f"{what} already exists")
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, f"{op} of {what} not supported")
        if not self.in_naming_context(ndn):
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM,
                            f"no global superior knowledge: {dn_text!r} is outside {self.suffix!r}")
        return ndn

    def canonical_attrs(self, attrs) -> dict:
        """Attribute names to canonical form, merging 'CN' and 'commonName'."""
        out: dict[str, list] = {}
        for name, values in attrs.items() if isinstance(attrs, dict) else attrs:
            canon = self.schema.canonical(name)
            out.setdefault(canon, []).extend(values)
        return out

    # ------------------------------------------------------------------ bind
    def bind_lookup(self, dn_text: str):
        """Phase 1 of a simple bind (reactor thread): the target and its stored hashes.
        Returns (ndn, entry_or_None, hashes). Unknown DNs get an empty hash list so the
        caller can still spend the same effort and answer invalidCredentials."""
        try:
            ndn = self.dn.normalize(dn_text)
        except LDAPError:
            raise LDAPError(ResultCode.INVALID_DN_SYNTAX, "invalid DN") from None
        if ndn == self.root_ndn:
            return ndn, None, [self.config.root_password]
        entry = self.store.get_by_ndn(ndn)
        hashes = list(entry.attrs.get("userPassword", ())) if entry is not None else []
        # no such entry (or no password): verify against a decoy hash of the configured
        # scheme, so the answer takes as long as for a wrong password (no enumeration)
        return ndn, entry, hashes or [self._decoy_hash()]

    def _decoy_hash(self) -> bytes:
        """A hash of the configured scheme that matches nothing: an unknown DN costs a
        bind as much as a wrong password, so timing does not tell which accounts exist.
        Made when the directory opens, not on the reactor during a bind."""
        return self._decoy

    @staticmethod
    def verify_any(password: bytes, hashes) -> bytes | None:
        """Phase 2 (thread pool): the stored value that matches, or None."""
        for stored in hashes:
            if passwords.verify(password, stored):
                return stored
        return None

    def account_status(self, entry) -> str:
        return (entry.first("rollcallAccountStatus") or b"ENABLED").decode("ascii", "replace").upper()

    def account_disabled(self, entry) -> bool:
        """DISABLED, or past its expiry date (non-employees)."""
        return _disabled(self.account_status(entry) == "DISABLED", self.account_expiry(entry))

    @staticmethod
    def account_expiry(entry) -> float | None:
        expiry = entry.first("rollcallExpiry")
        return parse_gentime(expiry) if expiry is not None else None

    def bind_card(self, entry) -> "BindCard":
        """What binding as `entry` depends on, worked out once per version of the entry
        and kept on it (cached entries are immutable; a change makes a new one)."""
        card = entry.keys.get(BIND_CARD)
        if card is None:
            card = entry.keys[BIND_CARD] = BindCard(self, entry)
        return card

    def bind_refusal(self, entry) -> str | None:
        """Why an entry may not bind (for the log only; the client hears invalidCredentials)."""
        if entry is None:
            return "no such entry"
        card = self.bind_card(entry)
        if _disabled(card.disabled, card.expires):
            return "account disabled or expired"
        if card.pending:
            # not activated yet: its holder activates with the school's code (accounts.py),
            # never with a password, so a password it carries (imported, or from before a
            # re-activation) must not open SSO sessions: search-then-bind clients would
            # otherwise let the account in (Apache, Dovecot, RADIUS see only "bind ok")
            return "account pending activation"
        if self.policy.locked(entry):
            return "account locked"
        if not card.can_authenticate:
            return "no auth access"
        return None

    def bind_complete(self, ndn: str, entry: Entry | None, matched: bytes | None, peer: str, tls: bool) -> Identity:
        """Phase 3: decide. The same refusal for every reason: no hint which part was wrong."""
        if ndn == self.root_ndn and matched is not None:
            return Identity(self.root_dn, ndn, True, peer, tls)
        if matched is None or self.bind_refusal(entry) is not None:
            raise LDAPError(ResultCode.INVALID_CREDENTIALS, "")
        return Identity(entry.dn, ndn, False, peer, tls, entry.id, self.bind_card(entry).restricted)

    def record_bind(self, entry_id: int, ok: bool, peer: str):
        """Lockout bookkeeping after a bind on an existing entry (writer thread): an
        internal write of the password policy, audited as such."""
        with self.store.transaction() as tx:
            entry = tx.get(entry_id)
            if entry is None:
                return
            attrs = entry.copy_attrs()
            if ok:
                if not self.policy.after_success(attrs):
                    return
                op_name, detail = "bindSuccess", {"cleared": "pwdFailureTime"}
            else:
                was_locked = "pwdAccountLockedTime" in attrs
                self.policy.after_failure(attrs)
                locked = "pwdAccountLockedTime" in attrs and not was_locked
                op_name = "lockout" if locked else "bindFailure"
                detail = {"failures": len(attrs["pwdFailureTime"]), "from": peer}
            tx.op = Operation(PPOLICY, op_name)
            internal_replace(self, tx, PPOLICY, entry, attrs, detail, op_name, stamp=False)

    def usable(self, ident: Identity):
        if ident.restricted:
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, RESTRICTED_MESSAGE)

    def needs_rehash(self, matched: bytes) -> bool:
        return self.config.rehash_on_bind and self.hasher.needs_rehash(matched)

    def rehash_password(self, entry_id: int, old: bytes, plain: bytes):
        """Upgrade a migrated hash after a successful bind: hashed before the lock (the
        caller runs this in the password-change pool), written as an internal write."""
        new = self.hasher.hash(plain)
        with self.store.transaction() as tx:
            entry = tx.get(entry_id)
            if entry is None or old not in entry.attrs.get("userPassword", ()):
                return
            attrs = entry.copy_attrs()
            attrs["userPassword"] = [new if v == old else v for v in attrs["userPassword"]]
            tx.op = Operation(REHASH, "rehash")
            internal_replace(self, tx, REHASH, entry, attrs, {"userPassword": "rehashed"}, "rehash", stamp=False)

    def bind(self, dn_text: str, password: bytes, peer="internal", tls=False) -> Identity:
        """All three phases at once, for the command line and tests."""
        if not dn_text:
            return Identity(peer=peer, tls=tls)
        if not password:
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, "unauthenticated bind (DN with no password) disallowed")
        ndn, entry, hashes = self.bind_lookup(dn_text)
        matched = self.verify_any(password, hashes)
        try:
            return self.bind_complete(ndn, entry, matched, peer, tls)
        finally:
            if entry is not None and (matched is None or "pwdFailureTime" in entry.attrs):
                self.record_bind(entry.id, matched is not None, peer)

    # ------------------------------------------------------------------ search
    def root_dse(self) -> Entry:
        attrs = {
            "objectClass": [b"top", b"extensibleObject"],
            "namingContexts": [self.suffix.encode()],
            "supportedLDAPVersion": [b"3"],
            "supportedControl": [c.encode() for c in sorted(self.supported_controls)],
            "supportedExtension": [c.encode() for c in sorted(self.supported_extensions)],
            "supportedFeatures": [
                b"1.3.6.1.1.14",  # modify-increment
                b"1.3.6.1.4.1.4203.1.5.1",  # all operational attributes ('+')
                b"1.3.6.1.4.1.4203.1.5.2",  # objectClass attribute lists ('@class')
                b"1.3.6.1.4.1.4203.1.5.3",  # absolute true/false filters
            ],
            "supportedSASLMechanisms": [],
            "subschemaSubentry": [SUBSCHEMA_DN.encode()],
            "vendorName": [VENDOR.encode()],
            "vendorVersion": [VERSION.encode()],
        }
        return Entry("", "", {k: v for k, v in attrs.items() if v}, id=None)

    def _matches_all(self, ast) -> bool:
        """(objectClass=*) or the absolute true filter (&) (RFC 4526)."""
        if ast[0] == "present":
            at = self.schema.attribute(ast[1])
            return at is not None and at.name == "objectClass"
        return ast[0] == "and" and not ast[1]

    def _stamp_schema(self):
        """cn=Subschema's createTimestamp/modifyTimestamp (RFC 4512 4.2), kept in the
        store's meta keyed by the schema's digest: a changed schema file moves
        modifyTimestamp once, and every worker process reads the same stamps."""
        with self.store.transaction() as tx:
            if tx.get_meta("schema_digest") != self.schema.digest:
                now = gentime_text()
                if tx.get_meta("schema_created") is None:
                    tx.set_meta("schema_created", now)
                tx.set_meta("schema_digest", self.schema.digest)
                tx.set_meta("schema_modified", now)
            created, modified = tx.get_meta("schema_created"), tx.get_meta("schema_modified")
        self.schema.stamps = {"createTimestamp": created.encode(), "modifyTimestamp": modified.encode()}

    def subschema(self) -> Entry:
        return Entry(SUBSCHEMA_DN, "cn=subschema", self.schema.subschema_entry(), id=None)

    def search_deadline(self, ident: Identity, time_limit=0):
        """When a search request must end: the client's time limit and the identity's
        (limits.rules, else limits.time; the root DN has none). Each page of a paged
        search is a request of its own."""
        seconds = _tighter(time_limit, self.limits.for_identity(ident).time)
        return time.monotonic() + seconds if seconds else None

    def search(self, ident: Identity, base: str, scope: int, filter_ast, attributes, types_only=False,
               size_limit=0, time_limit=0, paged=False):
        """Start a search; returns a SearchCursor the caller drains in batches.
        A paged search (RFC 2696) is not held to the server's size limit."""
        self.usable(ident)
        compiled = self.filters.compile(filter_ast)
        selector = self.selector(attributes)
        mine = self.limits.for_identity(ident)
        size = _tighter(size_limit, 0 if paged else mine.size)
        seconds = _tighter(time_limit, mine.time)  # as search_deadline
        deadline = time.monotonic() + seconds if seconds else None

        base_ndn = self.dn.normalize(base) if base else ""
        if scope == SCOPE_BASE and base_ndn == "cn=monitor" and self.monitor is not None and ident.is_root:
            # slapd's back-monitor in one entry: the metrics endpoint's figures over LDAP
            entry = Entry("cn=Monitor", "cn=monitor", self.monitor(), id=None)
            return SearchCursor(self, ident, [entry], compiled, selector, types_only, size, deadline, virtual=True)
        if scope == SCOPE_BASE and base_ndn in ("", "cn=subschema"):
            entry = self.root_dse() if base_ndn == "" else self.subschema()
            return SearchCursor(self, ident, [entry], compiled, selector, types_only, size, deadline, virtual=True)
        if not base_ndn:
            # one-level/subtree from the root DSE: its children are the naming contexts, so
            # one level is the suffix entry and a subtree the whole context (without the
            # root DSE). slapd answers noSuchObject instead (README: Conformance notes).
            if scope == SCOPE_BASE:
                return SearchCursor(self, ident, [], compiled, selector, types_only, size, deadline)
            base_ndn, base = self.suffix_ndn, self.suffix
            if scope == SCOPE_ONE:
                scope = SCOPE_BASE
        base_entry = self.store.get_by_ndn(base_ndn)
        if base_entry is None or not self.visible(ident, base_entry):
            raise LDAPError(ResultCode.NO_SUCH_OBJECT, "", self._matched(DN.parse(base), ident))
        if scope == SCOPE_BASE:
            ids = [base_entry.id]
        else:
            ids = self._candidate_ids(ident, base_entry, scope, filter_ast)
        return SearchCursor(self, ident, ids, compiled, selector, types_only, size, deadline,
                            base_entry=base_entry, scope=scope)

    def _candidate_ids(self, ident, base_entry, scope, filter_ast):
        candidates = self.planner.candidates(filter_ast)
        if isinstance(candidates, STREAMS):
            return candidates  # read as the cursor goes
        if candidates is not None:
            return sorted(candidates)
        # A filter every entry matches ((objectClass=*), (&)): the tree index is the
        # answer, nothing is examined in vain, so the unindexed limit does not apply
        # (directory browsers and generic sync tools list a big OU this way).
        limit = 0 if self._matches_all(filter_ast) else self.limits.for_identity(ident).unindexed
        # Otherwise unindexed: the whole scope, bounded by the identity's limit.
        if scope == SCOPE_ONE:
            ids = self.store.children_ids(base_entry.id)
        elif not limit:
            ids = self.store.subtree_ids(base_entry.id)
        else:
            ids = self.store.subtree_ids(base_entry.id, limit + 1)
        if limit and len(ids) > limit:
            raise LDAPError(
                ResultCode.ADMIN_LIMIT_EXCEEDED,
                f"unindexed search examines more than {limit} entries; add an indexed attribute to the filter",
            )
        return ids

    def selector(self, attributes) -> "AttributeSelector":
        """The AttributeSelector of a request's attribute list (the schema is fixed while
        the server runs: one per distinct list, a few in practice)."""
        try:
            key = tuple(attributes)
            got = self._selectors.get(key)
        except TypeError:
            return AttributeSelector(self, attributes)
        if got is None:
            if len(self._selectors) >= 256:
                self._selectors.clear()
            got = self._selectors[key] = AttributeSelector(self, attributes)
        return got

    def render(self, ident: Identity, entry: Entry, selector, types_only=False, hidden=None):
        """The attributes of an entry a caller asked for and may read: [(name, [values])]."""
        if hidden is None:
            hidden = self.acl.hidden_attrs(ident, entry)
        out = []
        for name in selector.names(entry):
            if name in hidden:
                continue
            values = self.values_for_filter(entry, name) if name in VIRTUAL else entry.attrs.get(name)
            if values:
                out.append((name, [] if types_only else list(values)))
        return out

    def assert_entry(self, ident: Identity, dn: str, filter_ast) -> bool:
        """RFC 4528: does the entry match the assertion filter (as this identity sees it)?"""
        # an entry the caller may not see does not exist for them, and the matched DN
        # names only an ancestor they may see (as for every other operation)
        entry = self.require(dn, ident=ident)
        hidden = self.acl.hidden_attrs(ident, entry)
        if hidden is None:
            raise LDAPError(ResultCode.NO_SUCH_OBJECT, "", self._matched(DN.parse(dn), ident))
        return self.filters.compile(filter_ast)(entry, hidden) is True

    # ------------------------------------------------------------------ compare
    def compare(self, ident: Identity, dn: str, attr: str, value: bytes) -> bool:
        self.usable(ident)
        special = self._special_entry(dn)
        entry = special or self.require(dn, ident=ident)
        at = self.schema.attribute(attr)
        if at is None:
            raise LDAPError(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, f"{attr}: attribute type undefined")
        if special is not None:
            # the root DSE and cn=Subschema exist for every operation (RFC 4512 5.1, 4.2):
            # what a search of them shows, a compare may test
            hidden = self.acl.hidden_attrs(ident, entry)
            if hidden is None or at.name in hidden:
                raise LDAPError(ResultCode.INSUFFICIENT_ACCESS_RIGHTS, "")
        else:
            self.acl.check(ident, entry, Level.COMPARE, at.name)
        if at.name == "objectClass":
            oc = self.filters.objectclass_assertion(value)
            if oc is None:  # not an OID, or a name no class has: Undefined (slapd: 21)
                raise LDAPError(ResultCode.INVALID_ATTRIBUTE_SYNTAX,
                                "objectClass: value does not conform to assertion syntax")
            return oc is not False and oc.name.lower() in self.objectclass_closure(entry)
        if at.equality is None:
            raise LDAPError(ResultCode.INAPPROPRIATE_MATCHING, f"{at.name}: no equality matching rule")
        if not self.schema.assertion_ok(self.schema.matching_rule(at.equality), value):
            raise LDAPError(ResultCode.INVALID_ATTRIBUTE_SYNTAX,
                            f"{at.name}: value does not conform to assertion syntax")
        present = [n for n in self.subtypes(at.name) if self.values_for_filter(entry, n)]
        if not present:
            raise LDAPError(ResultCode.NO_SUCH_ATTRIBUTE, "")
        key = self.schema.normalize(at.name, value)
        return any(key in self.keys_of(entry, n) for n in present)

    # ------------------------------------------------------------------ writes
    def index_rows(self, attrs: dict, eq_keys=None, memo=None) -> list:
        """(attr, kind, key) rows for the configured indexes of an entry's attributes.
        Bulk load: eq_keys are the keys Schema.check_entry(keys=) computed; memo, a
        dict kept across entries, remembers objectClass keys."""
        rows = []
        index_key = self.index_key
        for name, lname, kinds, at, sources in self._index_plan:
            if len(sources) == 1:
                values = attrs.get(name)
            else:
                values = [v for n in sources for v in attrs.get(n, ())]
            if not values:
                continue
            if "eq" in kinds:
                if name == "objectClass":
                    # the rows themselves remembered: the same classes recur entry after entry
                    got = memo.get(tuple(values)) if memo is not None else None
                    if got is None:
                        keys = set()
                        for v in values:
                            oc = self.schema.objectclass(v.decode("utf-8", "replace"))
                            if oc is not None:
                                keys.update(n.lower() for n in self.schema.superclasses(oc.name))
                        got = [(lname, "eq", k) for k in keys]
                        if memo is not None:
                            memo[tuple(values)] = got
                    rows += got
                else:
                    keys = eq_keys.get(name) if eq_keys is not None and len(sources) == 1 else None
                    if keys is None:
                        norm = at.normalize_or_none
                        keys = {norm(v) for v in values}
                        keys.discard(None)
                    for k in keys:
                        rows.append((lname, "eq", k if type(k) is str else index_key(k)))
            elif "pres" in kinds:
                rows.append((lname, "pres", ""))
            if "sub" in kinds:
                sub = at.substr_key
                for v in values:
                    k = sub(v)
                    if k is not None:
                        rows.append((lname, "sub", k if isinstance(k, str) else k.decode("utf-8", "replace")))
        return rows

    def _check_assertion(self, ident, entry, opts: WriteOptions | None):
        if opts and opts.assertion is not None:
            hidden = self.acl.hidden_attrs(ident, entry)
            if self.filters.compile(opts.assertion)(entry, hidden) is not True:
                raise LDAPError(ResultCode.ASSERTION_FAILED, "assertion control: filter did not match")

    def _read_back(self, ident, entry, attrs):
        return (entry.dn, self.render(ident, entry, AttributeSelector(self, attrs or [])))

    def _missing_naming_values(self, dn: DN, attrs: dict):
        """(attribute name, value) of each RDN value the entry's attributes lack."""
        for t, v in dn.rdn:
            at = self.schema.attribute(t)
            if at is None:
                raise LDAPError(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, f"{t}: attribute type undefined")
            key = self.schema.normalize(at.name, v.encode())
            if key not in {self.schema.normalize_or_none(at.name, x) for x in attrs.get(at.name, ())}:
                yield at.name, v.encode()

    def add_naming_values(self, dn: DN, attrs: dict):
        """RFC 4511 4.7: the client MAY omit the RDN's values; they are added (valid in
        their syntax), as slapd does."""
        for name, value in list(self._missing_naming_values(dn, attrs)):
            self.schema.validate(name, value)
            attrs.setdefault(name, []).append(value)

    def check_naming(self, dn: DN, attrs: dict):
        """The RDN's values must be in the entry (slapd: namingViolation)."""
        for name, _value in self._missing_naming_values(dn, attrs):
            raise LDAPError(ResultCode.NAMING_VIOLATION, f"value of naming attribute '{name}' is not present in entry")

    def _hash_passwords(self, values: list) -> list:
        return [v if passwords.is_hashed(v) else self.hasher.hash(v) for v in values]

    def _no_user_modification(self, attrs, opts, deleting=False):
        if opts and opts.relax:
            return
        for name in attrs:
            if deleting and name in ADMIN_CLEARABLE:
                continue
            at = self.schema.attribute(name)
            if name in SERVER_MAINTAINED or (at is not None and at.no_user_modification):
                raise LDAPError(ResultCode.CONSTRAINT_VIOLATION, f"{name}: no user modification allowed")

    def add(self, ident: Identity, dn_text: str, attrs, opts: WriteOptions | None = None) -> WriteResult:
        self.usable(ident)
        dn = DN.parse(dn_text)
        ndn = self._writable(dn_text, "add")
        attrs = list(attrs.items()) if isinstance(attrs, dict) else list(attrs)
        for name, values in attrs:
            if not values:  # RFC 4511 4.7: every attribute of an add has a value
                raise LDAPError(ResultCode.PROTOCOL_ERROR, f"add: {name}: no values")
        attrs = self.canonical_attrs(attrs)
        self._no_user_modification(attrs, opts)
        self.add_naming_values(dn, attrs)
        clear = [v for v in attrs.get("userPassword", ()) if not passwords.is_hashed(v)]
        if clear:
            # hashing is slow: only after the access decision, and before the write lock
            # (the transaction below decides again)
            parent = self.store.get_by_ndn(self.dn.normalize(str(dn.parent()))) if ndn != self.suffix_ndn else None
            if parent is not None:
                self.acl.check(ident, parent, Level.WRITE, "children")
            self.acl.check_add(ident, Entry(str(dn), ndn, attrs))
            attrs["userPassword"] = PreparedPasswords({v: self.hasher.hash(v) for v in clear}).stored(
                attrs["userPassword"], self.hasher)
        self.schema.check_entry(attrs)
        stamp = now_generalized()
        actor = (ident.dn or "").encode()
        defaults = {
            "entryUUID": [str(uuid.uuid4()).encode()],
            "creatorsName": [actor],
            "createTimestamp": [stamp],
            "modifiersName": [actor],
            "modifyTimestamp": [stamp],
            "structuralObjectClass": [self.schema.structural_class(attrs["objectClass"]).encode()],
        }
        for k, v in defaults.items():
            attrs.setdefault(k, v)
        entry = Entry(str(dn), ndn, attrs)
        with self.store.transaction() as tx:
            tx.op = Operation(ident, "add")
            # access before existence: a caller who may not add here gets the same answer
            # (insufficientAccess) whether or not the entry exists, as from slapd
            parent_id = None
            if ndn != self.suffix_ndn:
                parent = tx.get_by_ndn(self.dn.normalize(str(dn.parent())))
                if parent is None:
                    raise LDAPError(ResultCode.NO_SUCH_OBJECT, "", self._matched(dn, ident))
                self.acl.check(ident, parent, Level.WRITE, "children")
                parent_id = parent.id
            self.acl.check_add(ident, entry)
            if tx.get_by_ndn(ndn) is not None:
                raise LDAPError(ResultCode.ENTRY_ALREADY_EXISTS, "")
            for ov in self.overlays:
                ov.before_add(tx, ident, entry)
            tx.add(entry, parent_id, self.dn.rdn_of(dn.rdn), self.index_rows(attrs))
            for ov in self.overlays:
                ov.after_add(tx, ident, entry)
            tx.log(ident.ndn, ident.peer, "add", entry.dn, entry.id, {"attributes": sorted(attrs)})
        result = WriteResult(entry.dn)
        if opts and opts.post_read is not None:
            result.post_read = self._read_back(ident, entry, opts.post_read)
        return result

    def delete(self, ident: Identity, dn_text: str, opts: WriteOptions | None = None) -> WriteResult:
        self.usable(ident)
        self._writable(dn_text, "delete")
        with self.store.transaction() as tx:
            tx.op = Operation(ident, "delete")
            entry = self.require(dn_text, tx, ident)
            self.acl.check(ident, entry, Level.WRITE, "entry")
            # as slapd: removing an entry is also a change of its parent's children
            parent = (tx.get_by_ndn(self.dn.normalize(str(DN.parse(entry.dn).parent())))
                      if entry.ndn != self.suffix_ndn else None)
            if parent is not None:
                self.acl.check(ident, parent, Level.WRITE, "children")
            self._check_assertion(ident, entry, opts)
            if tx.has_children(entry.id):
                raise LDAPError(ResultCode.NOT_ALLOWED_ON_NON_LEAF, "subordinate objects must be deleted first")
            result = WriteResult(entry.dn)
            if opts and opts.pre_read is not None:
                result.pre_read = self._read_back(ident, entry, opts.pre_read)
            for ov in self.overlays:
                ov.before_delete(tx, ident, entry)
            tx.delete(entry.id)
            for ov in self.overlays:
                ov.after_delete(tx, ident, entry)
            tx.log(ident.ndn, ident.peer, "delete", entry.dn, entry.id, {})
        return result

    def modify(self, ident: Identity, dn_text: str, changes, opts: WriteOptions | None = None) -> WriteResult:
        """changes: [(op, attr, [values])] with op MOD_ADD/DELETE/REPLACE/INCREMENT.
        Clear userPassword values are checked and hashed before the write lock."""
        self.usable(ident)
        self._writable(dn_text, "modify")
        self._check_change_values(changes)
        if not any(self.schema.canonical(name) == "userPassword" and any(not passwords.is_hashed(v) for v in values)
                   for _op, name, values in changes):
            return self._modify(Operation(ident, "modify"), dn_text, changes, opts, None)

        def attempt():
            prepared = self.prepare_password_changes(ident, dn_text, changes, opts)
            return self._modify(Operation(ident, "modify"), dn_text, changes, opts, prepared)

        return retry_stale(attempt)

    def _check_change_values(self, changes):
        """Every value of a modify in its attribute's syntax before anything else is
        decided (slapd's frontend): 'delete: uidNumber: abc' is 21, not 16, and
        'add: uidNumber: 01234' beside 1234 is 21, not 20."""
        for op, name, values in changes:
            at = self.schema.attribute(name)
            if at is None:
                raise LDAPError(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, f"{name}: attribute type undefined")
            if at.name in SERVER_MAINTAINED or at.no_user_modification:
                continue  # no user modification: 19 first, as from slapd
            if op == MOD_INCREMENT:
                # RFC 4525: the increment is an INTEGER (21), whatever the entry holds
                if len(values) == 1 and not _increment_ok(values[0]):
                    raise LDAPError(ResultCode.INVALID_ATTRIBUTE_SYNTAX,
                                    f"modify/increment: {at.name}: the increment is not an INTEGER")
                continue
            for i, v in enumerate(values):
                if not at.is_valid(v):
                    raise LDAPError(ResultCode.INVALID_ATTRIBUTE_SYNTAX, f"{at.name}: value #{i} invalid per syntax")

    def prepare_password_changes(self, ident, dn_text, changes, opts) -> PreparedPasswords:
        """The slow part of a modify of userPassword, outside the write lock: the access
        decision first (nothing is hashed for a caller who may not write it), then the
        policy (quality, history: argon2 verifications), the new hashes, and which
        stored values the clear values to delete match."""
        entry = self.require(dn_text, ident=ident)
        self.acl.check(ident, entry, Level.WRITE, "userPassword")
        prepared = PreparedPasswords(state=PreparedPasswords.state_of(entry))
        for op, name, values in changes:
            if self.schema.canonical(name) != "userPassword":
                continue
            clear = [v for v in values if not passwords.is_hashed(v)]
            if op in (MOD_ADD, MOD_REPLACE) and clear:
                if not ident.is_root and not (opts and opts.relax):
                    self._check_password_write(ident, entry, values)
                    prepared.checked = True
                prepared.hashes.update((v, self.hasher.hash(v)) for v in clear)
            elif op == MOD_DELETE:
                stored = entry.attrs.get("userPassword", ())
                for v in clear:
                    prepared.deletes[v] = [x for x in stored if x == v or passwords.verify(v, x)]
        return prepared

    def _modify(self, op: Operation, dn_text, changes, opts, prepared: PreparedPasswords | None) -> WriteResult:
        """The transaction of a modify (and of Password Modify, a modify of userPassword
        as in slapd): access, schema, the overlays (the password policy's among them),
        the store and the audit row."""
        ident = op.ident
        with self.store.transaction() as tx:
            tx.op = op
            entry = self.require(dn_text, tx, ident)
            if prepared is not None:
                prepared.check_unchanged(entry)
            self._check_assertion(ident, entry, opts)
            attrs = entry.copy_attrs()
            rdn = [(self.schema.canonical(t), self.schema.normalize(self.schema.canonical(t), v.encode()))
                   for t, v in DN.parse(entry.dn).rdn]
            summary = []
            new_password = False
            for mod, name, values in changes:
                at = self.schema.attribute(name)
                if at is None:
                    raise LDAPError(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, f"{name}: attribute type undefined")
                name = at.name
                deleting = mod == MOD_DELETE or (mod == MOD_REPLACE and not values)
                self._no_user_modification({name: values}, opts, deleting)
                self.acl.check(ident, entry, Level.WRITE, name)
                values = list(values)
                if name == "userPassword" and mod in (MOD_ADD, MOD_REPLACE):
                    # the policy governs a password set by anyone but the root DN's plain
                    # modify (like slapd), and every Password Modify
                    if values and not (opts and opts.relax) and (not ident.is_root or op.name == "passwordModify"):
                        if (prepared is None or not prepared.checked) and not ident.is_root:
                            self._check_password_write(ident, entry, values)
                        new_password = True
                    values = (prepared or PreparedPasswords()).stored(values, self.hasher)
                self._apply_change(attrs, mod, at, values, prepared)
                summary.append(f"{('add', 'delete', 'replace', 'increment')[mod]}:{name}")
            # the RDN's values must be in the entry the whole list makes (RFC 4511 4.6):
            # deleting and re-adding one in the same modify is fine
            for name, key in rdn:
                if key not in {self.schema.normalize_or_none(name, v) for v in attrs.get(name, ())}:
                    raise LDAPError(ResultCode.NOT_ALLOWED_ON_RDN, f"modify: {name}: cannot remove the naming value")
            if new_password:  # history, change time, must-change: the password policy overlay
                op.notes[("ppolicy", entry.id)] = True
            if [v.lower() for v in attrs.get("objectClass", [])] != [v.lower() for v in entry.attrs.get("objectClass", [])]:
                old_sc = entry.first("structuralObjectClass", b"").decode()
                if attrs.get("objectClass") and self.schema.structural_class(attrs["objectClass"]).lower() != old_sc.lower():
                    raise LDAPError(ResultCode.OBJECT_CLASS_MODS_PROHIBITED, "structural object class modification from "
                                    f"'{old_sc}' to '{self.schema.structural_class(attrs['objectClass'])}' not allowed")
            self.schema.check_entry(attrs)
            attrs["modifiersName"] = [(ident.dn or "").encode()]
            attrs["modifyTimestamp"] = [now_generalized()]
            new = Entry(entry.dn, entry.ndn, attrs, entry.id)
            # the changed entry must still be within the caller's rights (a school's
            # administrator cannot move a student to a school they do not administer)
            for _op, name, _values in changes:
                self.acl.check(ident, new, Level.WRITE, self.schema.canonical(name))
            self.acl.check_site_change(ident, entry, new)
            for ov in self.overlays:
                ov.before_modify(tx, ident, entry, new)
            tx.replace(new, self.index_rows(new.attrs))
            for ov in self.overlays:
                ov.after_modify(tx, ident, entry, new)
            tx.log(ident.ndn, ident.peer, op.name, entry.dn, entry.id, {"changes": summary, **op.notes.get("audit", {})})
        result = WriteResult(entry.dn)
        if opts and opts.pre_read is not None:
            result.pre_read = self._read_back(ident, entry, opts.pre_read)
        if opts and opts.post_read is not None:
            result.post_read = self._read_back(ident, new, opts.post_read)
        return result

    def _check_password_write(self, ident, entry, values):
        """The password policy for userPassword written by a plain modify, as for
        Password Modify: quality and history of each clear value, and an administrator
        sets passwords of ENABLED accounts only. The root DN is exempt (like slapd)."""
        if entry.ndn != ident.ndn:
            status = self.account_status(entry)
            if status != "ENABLED":
                raise LDAPError(ResultCode.UNWILLING_TO_PERFORM,
                                f"the account is {status}: only an ENABLED account can have its password reset")
        for v in values:
            if passwords.is_hashed(v):
                raise LDAPError(ResultCode.CONSTRAINT_VIOLATION,
                                "userPassword: a hashed value cannot be checked against the password policy")
            self.policy.check_quality(entry, v)

    def _apply_change(self, attrs, op, at, values, prepared=None):
        name = at.name
        norm = self.schema.normalize_or_none
        current = attrs.get(name, [])
        if op == MOD_ADD:
            if not values:
                raise LDAPError(ResultCode.PROTOCOL_ERROR, f"modify/add: {name}: no values given")
            have = {norm(name, v) for v in current}
            for i, v in enumerate(values):
                k = norm(name, v)
                if k in have:
                    raise LDAPError(ResultCode.ATTRIBUTE_OR_VALUE_EXISTS, f"modify/add: {name}: value #{i} already exists")
                have.add(k)
            attrs[name] = current + values
        elif op == MOD_DELETE:
            if name not in attrs:
                raise LDAPError(ResultCode.NO_SUCH_ATTRIBUTE, f"modify/delete: {name}: no such attribute")
            if not values:
                del attrs[name]
                return
            keep = list(current)
            for i, v in enumerate(values):
                k = norm(name, v)
                if name != "userPassword":
                    matches = [x for x in keep if norm(name, x) == k]
                elif prepared is not None and v in prepared.deletes:
                    matches = [x for x in keep if x in prepared.deletes[v]]
                else:  # a hashed value: compared as stored, no verification
                    matches = [x for x in keep if x == v or (not passwords.is_hashed(v) and passwords.verify(v, x))]
                if not matches:
                    raise LDAPError(ResultCode.NO_SUCH_ATTRIBUTE, f"modify/delete: {name}: no such value")
                keep = [x for x in keep if x not in matches]
            if keep:
                attrs[name] = keep
            else:
                del attrs[name]
        elif op == MOD_REPLACE:
            if values:
                attrs[name] = values
            else:
                attrs.pop(name, None)
        elif op == MOD_INCREMENT:
            if at.syntax != "1.3.6.1.4.1.1466.115.121.1.27":
                raise LDAPError(ResultCode.CONSTRAINT_VIOLATION, f"modify/increment: {name}: not an INTEGER attribute")
            if name not in attrs:
                raise LDAPError(ResultCode.NO_SUCH_ATTRIBUTE, f"modify/increment: {name}: no such attribute")
            if len(values) != 1:
                raise LDAPError(ResultCode.PROTOCOL_ERROR, f"modify/increment: {name}: exactly one value required")

            if not _increment_ok(values[0]):  # RFC 4525: invalidAttributeSyntax
                raise LDAPError(ResultCode.INVALID_ATTRIBUTE_SYNTAX,
                                f"modify/increment: {name}: the increment is not an INTEGER")
            delta = int(values[0])
            if not all(_increment_ok(v) for v in current):
                raise LDAPError(ResultCode.CONSTRAINT_VIOLATION,
                                f"modify/increment: {name}: a stored value is not an INTEGER that can be incremented")
            attrs[name] = [str(int(v) + delta).encode() for v in current]
        else:
            raise LDAPError(ResultCode.PROTOCOL_ERROR, f"unknown modify operation {op}")

    def modify_dn(self, ident: Identity, dn_text: str, new_rdn: str, delete_old: bool,
                  new_superior: str | None = None, opts: WriteOptions | None = None) -> WriteResult:
        rdn_dn = DN.parse(new_rdn)
        if len(rdn_dn) != 1:
            raise LDAPError(ResultCode.INVALID_DN_SYNTAX, f"invalid new RDN {new_rdn!r}")
        self.dn.rdn_of(rdn_dn.rdn)  # 34 for 'cn=a+cn=b' or 'cn='
        self.usable(ident)
        ndn = self._writable(dn_text, "rename")
        # RFC 4511 4.9: a move out of this server's naming context, or of the context
        # itself, would change what another DSA holds
        if ndn == self.suffix_ndn:
            raise LDAPError(ResultCode.AFFECTS_MULTIPLE_DSAS, "cannot rename the naming context")
        if new_superior is not None and not self.in_naming_context(
                self.dn.normalize(new_superior) if new_superior.strip() else ""):
            raise LDAPError(ResultCode.AFFECTS_MULTIPLE_DSAS, "new superior outside the naming context")
        with self.store.transaction() as tx:
            tx.op = Operation(ident, "modrdn")
            entry = self.require(dn_text, tx, ident)
            self._check_assertion(ident, entry, opts)
            self.acl.check(ident, entry, Level.WRITE, "entry")
            old = DN.parse(entry.dn)
            # as slapd: a rename changes the parent's children, and a move both parents'
            old_parent = tx.get_by_ndn(self.dn.normalize(str(old.parent())))
            self.acl.check(ident, old_parent, Level.WRITE, "children")
            if new_superior is not None:
                parent = self.require(new_superior, tx, ident)
                if parent.ndn == entry.ndn or parent.ndn.endswith("," + entry.ndn):
                    raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, "new superior is the entry itself or below it")
                self.acl.check(ident, parent, Level.WRITE, "children")
            else:
                parent = old_parent
            new_dn = DN((rdn_dn.rdn,) + DN.parse(parent.dn).rdns)
            new_ndn = self.dn.normalize(str(new_dn))
            if new_ndn != entry.ndn and tx.get_by_ndn(new_ndn) is not None:
                raise LDAPError(ResultCode.ENTRY_ALREADY_EXISTS, "")
            attrs = entry.copy_attrs()
            norm = self.schema.normalize
            new_keys = {}
            for t, v in rdn_dn.rdn:
                name = self.schema.canonical(t)
                new_keys.setdefault(name, set()).add(norm(name, v.encode()))
                if norm(name, v.encode()) not in {self.schema.normalize_or_none(name, x) for x in attrs.get(name, [])}:
                    self.schema.validate(name, v.encode())
                    attrs.setdefault(name, []).append(v.encode())
            if delete_old:
                for t, v in old.rdn:
                    name = self.schema.canonical(t)
                    k = norm(name, v.encode())
                    if k in new_keys.get(name, ()):
                        continue
                    attrs[name] = [x for x in attrs.get(name, []) if self.schema.normalize_or_none(name, x) != k]
                    if not attrs[name]:
                        del attrs[name]
            self.schema.check_entry(attrs)
            attrs["modifiersName"] = [(ident.dn or "").encode()]
            attrs["modifyTimestamp"] = [now_generalized()]
            new = Entry(str(new_dn), new_ndn, attrs, entry.id)
            result = WriteResult(str(new_dn))
            if opts and opts.pre_read is not None:
                result.pre_read = self._read_back(ident, entry, opts.pre_read)
            self.acl.check(ident, new, Level.WRITE, "entry")
            # the values the new RDN adds and the old RDN's values it removes are a
            # modify of those attributes: the same rules (rights on each attribute,
            # server-maintained attributes, school codes, overlays) decide
            changed = {n for n in set(attrs) | set(entry.attrs)
                       if n not in ("modifiersName", "modifyTimestamp") and attrs.get(n) != entry.attrs.get(n)}
            self._no_user_modification({n: () for n in changed}, opts)
            for name in sorted(changed):
                self.acl.check(ident, entry, Level.WRITE, name)
                self.acl.check(ident, new, Level.WRITE, name)
            self.acl.check_site_change(ident, entry, new)
            for ov in self.overlays:
                ov.before_rename(tx, ident, entry, new)
            moved = tx.rename(entry.id, str(new_dn), new_ndn, parent.id, self.dn.rdn_of(rdn_dn.rdn))
            tx.replace(new, self.index_rows(attrs))
            for ov in self.overlays:
                ov.after_rename(tx, ident, entry, new, moved)
            tx.log(ident.ndn, ident.peer, "modrdn", entry.dn, entry.id, {"newDN": str(new_dn)})
        if opts and opts.post_read is not None:
            result.post_read = self._read_back(ident, new, opts.post_read)
        return result

    # ------------------------------------------------------------------ extended
    def password_modify(self, ident: Identity, user: str | None, old: bytes | None, new: bytes | None) -> WriteResult:
        """RFC 3062. With no new password, one is generated and returned once."""
        if ident.anonymous:
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, "only authenticated users may change passwords")
        target_dn = user if user else ident.dn
        if ident.restricted and user and self.normalize_dn(user) != ident.ndn:
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, RESTRICTED_MESSAGE)
        if ident.is_root and not user:
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, "the root DN's password is set in config.yaml")
        generated = None
        if not new:
            generated = passwords.generate_password()
            new = generated.encode()
        return retry_stale(lambda: self._password_modify(ident, target_dn, old, new, generated))

    def _password_checks(self, ident, entry):
        """Who may change this password; raises LDAPError."""
        is_self = entry.ndn == ident.ndn
        self.acl.check_password_change(ident, entry, is_self)
        status = self.account_status(entry)
        if not is_self and not ident.is_root and status != "ENABLED":
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM,
                            f"the account is {status}: only an ENABLED account can have its password reset")
        return is_self, status

    def _password_modify(self, ident, target_dn, old, new, generated) -> WriteResult:
        # slow work first, outside the write lock: the access decision, the old
        # password, quality and history (argon2 verifications) and the new hash; then
        # a modify of userPassword in the pipeline (overlays, password policy, audit)
        entry = self.require(target_dn, ident=ident)
        is_self, _status = self._password_checks(ident, entry)
        self.schema.check_entry({**entry.attrs, "userPassword": [b"{ARGON2}-"]})  # a group has no userPassword
        if old is not None and self.verify_any(old, entry.attrs.get("userPassword", ())) is None:
            raise LDAPError(ResultCode.INVALID_CREDENTIALS, "old password does not match")
        self.policy.check_quality(entry, new)
        prepared = PreparedPasswords({new: self.hasher.hash(new)}, checked=True,
                                     state=PreparedPasswords.state_of(entry))
        op = Operation(ident, "passwordModify", {"audit": {"generated": generated is not None, "self": is_self}})
        result = self._modify(op, target_dn, [(MOD_REPLACE, "userPassword", [new])], None, prepared)
        if is_self and ident.restricted:
            # the password an administrator set is replaced: the session that changed it
            # is restricted no longer (like slapd's ppolicy)
            ident.restricted = False
        result.generated_password = generated
        return result

    def whoami(self, ident: Identity) -> str:
        return f"dn:{ident.dn}" if ident.ndn else ""

    # ------------------------------------------------------------------ bulk
    def load_entries(self, records, progress=None, workers=None) -> int:
        """Offline bulk load (like slapadd -q): all or nothing, schema-checked."""
        return BulkLoader(self, workers).load(records, progress)

    def export_entries(self):
        """Every entry, parents first, with all stored attributes (for LDIF export)."""
        ids = self.store.all_ids()
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            by_id = {e.id: e for e in self.store.get_many(chunk)}
            for i in chunk:
                yield by_id[i]


class AttributeSelector:
    """Which attributes a search returns: names, '*', '+', '1.1', '@objectClass'."""

    def __init__(self, directory: Directory, requested):
        self.d = directory
        self.all_user = not requested
        self.all_operational = False
        self.explicit = []
        schema = directory.schema
        for raw in requested:
            name = raw.decode() if isinstance(raw, bytes) else raw
            if name == "*":
                self.all_user = True
            elif name == "+":
                self.all_operational = True
            elif name == "1.1" and len(requested) == 1:
                pass
            elif name.startswith("@"):
                oc = schema.objectclass(name[1:])
                if oc is not None:
                    for cls in schema.superclasses(oc.name):
                        c = schema.objectclass(cls)
                        self.explicit.extend(c.must + c.may)
            else:
                at = schema.attribute(name)
                if at is not None:
                    self.explicit.extend(directory.subtypes(at.name))
        self._explicit_set = set(self.explicit)
        self._by_shape = {}  # (attribute names, not stored) -> names(): see names
        # what a rendering depends on besides the entry and the hidden set: None when a
        # virtual attribute (hasSubordinates: the children, not the entry) may be
        # rendered, so the encoded entry may not be cached on the entry
        self.cache_key = None if self.all_operational or any(n in VIRTUAL for n in self.explicit) else (
            self.all_user, tuple(dict.fromkeys(self.explicit)))

    def names(self, entry: Entry):
        """The entry's attributes this selection returns, in the entry's order. With
        '*' or '+' they follow from the entry's attribute names alone (and whether it
        is stored): entries of one shape share the answer."""
        if self.all_user or self.all_operational:
            shape = (tuple(entry.attrs), entry.id is None)
            got = self._by_shape.get(shape)
            if got is None:
                if len(self._by_shape) >= 1024:
                    self._by_shape.clear()
                got = self._by_shape[shape] = self._names(entry)
            return got
        return self._names(entry)

    def _names(self, entry: Entry):
        out = []
        schema = self.d.schema
        if self.all_user or self.all_operational:
            for name in entry.attrs:
                at = schema.attribute(name)
                operational = at is not None and at.is_operational
                if (operational and self.all_operational) or (not operational and self.all_user) or name in self._explicit_set:
                    out.append(name)
            if self.all_operational:
                out.extend(n for n in VIRTUAL if n not in entry.attrs and entry.id is not None)
            seen = set(out)
            out.extend(n for n in self.explicit if n not in seen and (n in entry.attrs or n in VIRTUAL))
            return out
        return [n for n in dict.fromkeys(self.explicit) if n in entry.attrs or (n in VIRTUAL and entry.id is not None)]


FIRST_STEP = 16  # candidates a search examines before its first full batch


def _tighter(a, b):
    """The smaller of two limits, 0 meaning none."""
    return (a if a < b else b) if a and b else a or b


class SearchCursor:
    """A running search: candidate ids, checked in batches so a large result never
    holds the reactor, and resumable for paged results."""

    def __init__(self, directory, ident, ids, compiled, selector, types_only, size_limit, deadline,
                 virtual=False, base_entry=None, scope=SCOPE_BASE):
        self.d = directory
        self.ident = ident
        # candidate ids: a list, or a stream whose `ids` grow as they are read
        self.stream = ids if isinstance(ids, STREAMS) else None
        self.ids = ids.ids if self.stream is not None else ids
        self.pos = 0
        self.compiled = compiled
        self.selector = selector
        self.types_only = types_only
        self.size_limit = size_limit
        self.deadline = deadline
        self.virtual = virtual
        self.base = base_entry
        self.scope = scope
        self.returned = 0
        self.done = False
        self.key_of = None  # (entry, hidden) -> sort key, for server-side sorting
        # (dn, [(attr, values)]) -> bytes, set by the protocol: a rendered entry is then
        # returned encoded, and kept on the (immutable, cached) entry for the next read
        # with the same attribute selection and the same hidden attributes
        self.encode = None
        # a subtree search of the suffix: every entry is in scope, no DN to compare
        self.whole_context = (scope == SCOPE_SUB and base_entry is not None
                              and base_entry.ndn == directory.suffix_ndn)

    def _in_scope(self, entry):
        if self.whole_context:
            return True
        if self.scope == SCOPE_BASE:
            return entry.id == self.base.id
        b = self.base.ndn
        if self.scope == SCOPE_SUB:
            return entry.ndn == b or entry.ndn.endswith("," + b)
        if self.scope == SCOPE_CHILDREN:
            return entry.ndn.endswith("," + b)
        # one level: the entry's parent is the base
        if not entry.ndn.endswith("," + b):
            return False
        if "," not in entry.ndn[: -len(b) - 1]:
            return True  # a single RDN before the base: no need to parse the DN
        return self.d.dn.normalize(str(DN.parse(entry.dn).parent())) == b

    def _chunk(self, n):
        """The next (at most n) candidate ids; a stream reads one more batch from the
        store when the ids read so far are used up, so a search that stops early (size
        limit, page) reads no further."""
        ids = self.ids
        if self.stream is not None:
            while self.pos >= len(ids) and not self.stream.exhausted:
                self.stream.more()  # may bring only ids seen before: read on
            if self.stream.exhausted and self.pos + n >= len(ids):
                self.stream = None  # all read: from here on a plain list
        return ids[self.pos : self.pos + n]

    def next_batch(self, max_candidates=256, max_results=None):
        """Up to max_candidates candidates examined; returns [(dn, [(attr, values)])].
        Raises LDAPError sizeLimitExceeded/timeLimitExceeded when a limit is hit
        (entries already returned stand, as RFC 4511 says)."""
        out = []
        if self.done:
            return out
        examined = 0
        while examined < max_candidates:
            if self.virtual:
                chunk, by_id = list(range(len(self.ids))), dict(enumerate(self.ids))
            else:
                # a search's first candidates in small steps: with a size limit (a
                # type-ahead's 10) the rest is usually never read
                step = max_candidates - examined if self.pos >= FIRST_STEP else min(max_candidates, FIRST_STEP)
                chunk = self._chunk(step)
                if not chunk:
                    break
                by_id = {e.id: e for e in self.d.store.get_many(chunk)}
            examined += len(chunk)
            if self._examine(chunk, by_id, out, max_results) or self.virtual:
                break
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.done = True
            raise PartialResult(out, LDAPError(ResultCode.TIME_LIMIT_EXCEEDED, ""))
        if self.pos >= len(self.ids) and self.stream is None:
            self.done = True
        return out

    def _examine(self, chunk, by_id, out, max_results) -> bool:
        """Check candidates against scope, access and filter, rendering the matches
        into out; True when a page is full."""
        acl = self.d.acl
        encode = self.encode if self.key_of is None and not self.virtual else None
        if encode is not None:
            sel_key = self.selector.cache_key
            if sel_key is None:
                encode = None
            else:
                enc_key = ("\0enc", sel_key, self.types_only)
        for key in chunk:
            self.pos += 1
            entry = by_id.get(key)
            if entry is None or (not self.virtual and not self._in_scope(entry)):
                continue  # deleted since the search started, or out of scope
            hidden = acl.hidden_attrs(self.ident, entry)
            if hidden is None:  # entry not visible at all
                continue
            if self.compiled(entry, hidden) is not True:
                continue
            if self.size_limit and self.returned >= self.size_limit:
                self.done = True
                raise PartialResult(out, LDAPError(ResultCode.SIZE_LIMIT_EXCEEDED, ""))
            self.returned += 1
            if encode is not None:
                # by the hidden set (interned: one per distinct answer), so identities
                # that see the same attributes share one encoding
                encodings = entry.keys.get(enc_key)
                if encodings is None:
                    encodings = entry.keys[enc_key] = {}
                body = encodings.get(hidden)
                if body is None:
                    body = encode(entry.dn, self.d.render(self.ident, entry, self.selector, self.types_only,
                                                          hidden))
                    if len(encodings) < 8:  # a bound on the variants kept per entry
                        encodings[hidden] = body
                out.append((entry.dn, body))
                if max_results is not None and len(out) >= max_results:
                    return True  # a full page: the rest waits for the next cookie
                continue
            rendered = self.d.render(self.ident, entry, self.selector, self.types_only, hidden)
            if self.key_of is None:
                out.append((entry.dn, rendered))
            else:  # server-side sorting: the sort key travels with the entry
                out.append((entry.dn, rendered, self.key_of(entry, hidden)))
            if max_results is not None and len(out) >= max_results:
                return True  # a full page: the rest waits for the next cookie
        return False


class PartialResult(Exception):
    """Entries found before a limit stopped the search, and the limit's error."""

    def __init__(self, entries, error: LDAPError):
        super().__init__(error.message)
        self.entries = entries
        self.error = error
