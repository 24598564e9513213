"""Access control: ordered rules from config.yaml, first match wins, default deny —
the semantics of OpenLDAP's olcAccess.

    access:
      - to: {dn: "ou=students,ou=people,{suffix}", scope: children,
             filter: "(objectClass=rollcallStudent)", attrs: [userPassword]}
        by:
          - "site-group=student-email-admins write"
          - "self write"
          - "anonymous auth"

A rule's target is a DN with a scope (base | one | subtree | children), a filter and
an attribute list (the pseudo-attributes `entry` and `children` as in slapd). The
first rule whose target matches decides; in it the first `by` clause whose subject
matches gives the level; no matching clause means none. Subjects:

    *  anonymous  users  self
    dn=<DN>  dn.subtree=<DN>      an identity, or every identity below a DN
    group=<DN>                    members of a group (nested groups included)
    site-group=<cn>               members of cn=<cn>,ou=<code>,ou=sites,<suffix> for
                                  entries whose school code (departmentNumber, or the
                                  site the entry sits under) is <code>

Levels: none < auth < compare < search < read < write < manage. The root DN is
never subject to the rules. `{suffix}` in a DN is replaced by the configured suffix.
"""
import time
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

from ..district.gentime import parse_gentime
from .entry import Entry
from .errors import LDAPError, ResultCode
from .filterparse import parse_filter_string
from .identity import ANONYMOUS


class Level(IntEnum):
    NONE = 0
    AUTH = 1
    COMPARE = 2
    SEARCH = 3
    READ = 4
    WRITE = 5
    MANAGE = 6


SCOPES = ("base", "one", "subtree", "children")
_EMPTY = frozenset()
_INTERNED: dict = {}


def _intern(hidden: frozenset) -> frozenset:
    """Most entries hide the same few attributes: share one set per distinct answer."""
    return _INTERNED.setdefault(hidden, hidden)


class ACLConfigError(ValueError):
    pass


@dataclass
class Subject:
    kind: str  # any | anonymous | users | self | dn | dn.subtree | group | site-group
    value: str = ""  # normalised DN, or the role group's cn

    def describe(self):
        return self.kind + (f"={self.value}" if self.value else "")


@dataclass
class Rule:
    index: int
    base: str | None  # normalised DN, or None for every entry
    scope: str
    filter: object  # compiled filter or None
    filter_text: str
    attrs: frozenset | None  # None: every attribute
    by: list = field(default_factory=list)  # [(Subject, Level)]

    @cached_property
    def site_subject(self) -> bool:
        """Whether a decision depends on the target's school codes."""
        return any(subject.kind == "site-group" for subject, _level in self.by)


def parse_rules(raw, directory) -> list:
    """Parse and check the `access:` section; errors name the rule and the clause."""
    suffix = directory.suffix
    rules = []
    if raw is None:
        return rules
    if not isinstance(raw, list):
        raise ACLConfigError("access: expected a list of rules")
    for i, item in enumerate(raw):
        where = f"access[{i}]"
        if not isinstance(item, dict) or "by" not in item:
            raise ACLConfigError(f"{where}: a rule needs 'to' and 'by'")
        to = item.get("to") or {}
        if to == "*":
            to = {}
        if not isinstance(to, dict):
            raise ACLConfigError(f"{where}.to: expected a mapping (dn, scope, filter, attrs) or '*'")
        unknown = set(to) - {"dn", "scope", "filter", "attrs"}
        if unknown:
            raise ACLConfigError(f"{where}.to: unknown keys {sorted(unknown)}")
        base = None
        if to.get("dn"):
            try:
                base = directory.normalize_dn(str(to["dn"]).replace("{suffix}", suffix))
            except LDAPError as exc:
                raise ACLConfigError(f"{where}.to.dn: {exc.message}") from None
        scope = to.get("scope", "subtree")
        if scope not in SCOPES:
            raise ACLConfigError(f"{where}.to.scope: must be one of {', '.join(SCOPES)}")
        compiled, ftext = None, to.get("filter") or ""
        if ftext:
            try:
                compiled = directory.filters.compile(parse_filter_string(ftext))
            except ValueError as exc:
                raise ACLConfigError(f"{where}.to.filter: {exc}") from None
        attrs = None
        if to.get("attrs"):
            names = set()
            for a in to["attrs"]:
                if a in ("entry", "children"):
                    names.add(a)
                    continue
                at = directory.schema.attribute(a)
                if at is None:
                    raise ACLConfigError(f"{where}.to.attrs: unknown attribute {a!r}")
                names.update(directory.subtypes(at.name))
            attrs = frozenset(names)
        by = []
        if not isinstance(item["by"], list) or not item["by"]:
            raise ACLConfigError(f"{where}.by: expected a list like ['self write', 'users read']")
        for j, clause in enumerate(item["by"]):
            by.append(_parse_clause(str(clause), f"{where}.by[{j}]", directory))
        rules.append(Rule(i, base, scope, compiled, ftext, attrs, by))
    return rules


def _parse_clause(text, where, directory):
    try:
        who, level = text.strip().rsplit(None, 1)
    except ValueError:
        raise ACLConfigError(f"{where}: expected '<who> <level>', got {text!r}") from None
    try:
        lvl = Level[level.upper()]
    except KeyError:
        raise ACLConfigError(f"{where}: unknown level {level!r} (none auth compare search read write manage)") from None
    who = who.strip()
    simple = {"*": "any", "anonymous": "anonymous", "users": "users", "self": "self"}
    if who in simple:
        return Subject(simple[who]), lvl
    kind, sep, value = who.partition("=")
    if not sep or kind not in ("dn", "dn.subtree", "group", "site-group"):
        raise ACLConfigError(f"{where}: unknown subject {who!r}")
    if kind == "site-group":
        return Subject(kind, value.strip().lower()), lvl
    try:
        ndn = directory.normalize_dn(value.replace("{suffix}", directory.suffix))
    except LDAPError as exc:
        raise ACLConfigError(f"{where}: {exc.message}") from None
    return Subject(kind, ndn), lvl


class AccessControl:
    def __init__(self, directory, rules=None):
        self.d = directory
        self.rules = rules if rules is not None else []
        self.sites_ndn = directory.normalize_dn("ou=sites," + directory.suffix)
        self.secret_attrs = frozenset({"userPassword", "pwdHistory", "rollcallActivationCodeHash"})
        self._shapes_of, self._shapes = None, {}   # _hidden_attrs by entry shape
        self._bases_of, self._base_set, self._under = None, frozenset(), {}  # _applicable by parent

    # -- facts about identities and entries (cached on the shared, immutable entries)
    def _ident_entry(self, ident):
        if ident.entry_id is None:
            return None
        return self.d.store.get(ident.entry_id)

    def inactive(self, ident) -> bool:
        """A bound account that has since been DISABLED, has expired or was deleted:
        on a connection still open it holds no rights beyond an anonymous one's."""
        if ident.entry_id is None:
            return False
        entry = self._ident_entry(ident)
        if entry is None:
            return True
        got = entry.keys.get("\0inactive")
        if got is None:
            expiry = entry.first("rollcallExpiry")
            stamp = parse_gentime(expiry) if expiry is not None else None
            got = entry.keys["\0inactive"] = (self.d.account_status(entry) == "DISABLED", stamp)
        disabled, expiry = got
        return disabled or (expiry is not None and expiry <= time.time())

    def memberships(self, ident) -> frozenset:
        """Normalised DNs of the groups the identity belongs to (memberOf is kept
        transitively closed on write, so this is one attribute read)."""
        entry = self._ident_entry(ident)
        if entry is None:
            return _EMPTY
        got = entry.keys.get("\0groups")
        if got is None:
            if self.d.account_disabled(entry):
                got = _EMPTY  # a disabled administrator holds no rights
            else:
                got = frozenset(self.d.normalize_dn(v.decode()) for v in entry.attrs.get("memberOf", ()))
            entry.keys["\0groups"] = got
        return got

    def site_roles(self, ident) -> dict:
        """{role cn: set of site codes} from the identity's site role groups."""
        entry = self._ident_entry(ident)
        if entry is None:
            return {}
        got = entry.keys.get("\0siteroles")
        if got is None:
            got = {}
            tail = "," + self.sites_ndn
            for g in self.memberships(ident):
                if not g.endswith(tail):
                    continue
                parts = g[: -len(tail)].split(",")
                if len(parts) == 2 and parts[0].startswith("cn=") and parts[1].startswith("ou="):
                    got.setdefault(parts[0][3:], set()).add(parts[1][3:])
            entry.keys["\0siteroles"] = got
        return got

    def site_codes(self, entry) -> frozenset:
        """School codes an entry belongs to: its departmentNumber values, and the
        site it sits under (for a site's own entry and its role groups)."""
        got = entry.keys.get("\0sites")
        if got is None:
            codes = set(self.d.keys_of(entry, "departmentNumber"))
            tail = "," + self.sites_ndn
            if entry.ndn.endswith(tail):
                first = entry.ndn[: -len(tail)].rsplit(",", 1)[-1]
                if first.startswith("ou="):
                    codes.add(first[3:])
            got = entry.keys["\0sites"] = frozenset(codes)
        return got

    # -- rule evaluation
    def _target_matches(self, rule, entry) -> bool:
        if rule.base is not None:
            ndn, base = entry.ndn, rule.base
            if rule.scope == "base":
                if ndn != base:
                    return False
            elif rule.scope == "subtree":
                if ndn != base and not ndn.endswith("," + base):
                    return False
            elif not ndn.endswith("," + base):
                return False
            elif rule.scope == "one" and ndn[: -len(base) - 1].replace("\\,", "").count(",") != 0:
                return False
        if rule.filter is not None and rule.filter(entry, _EMPTY) is not True:
            return False
        return True

    def identity_matches(self, subject, ident) -> bool:
        """A subject that names identities only (no `self`, no `site-group`): the
        per-identity search limits (core/limits.py) share this matching."""
        return self._subject_matches(subject, ident, None)

    def _subject_matches(self, subject, ident, entry) -> bool:
        kind = subject.kind
        if kind == "any":
            return True
        if kind == "anonymous":
            return ident.anonymous
        if ident.anonymous or self.inactive(ident):
            return False
        if kind == "users":
            return True
        if kind == "self":
            return ident.ndn == entry.ndn
        if kind == "dn":
            return ident.ndn == subject.value
        if kind == "dn.subtree":
            return ident.ndn == subject.value or ident.ndn.endswith("," + subject.value)
        if kind == "group":
            return subject.value in self.memberships(ident)
        if kind == "site-group":
            codes = self.site_roles(ident).get(subject.value)
            return bool(codes) and not codes.isdisjoint(self.site_codes(entry))
        return False

    def _decide(self, rule, ident, entry) -> Level:
        for subject, level in rule.by:
            if self._subject_matches(subject, ident, entry):
                return level
        return Level.NONE

    def _applicable(self, ident, entry):
        """Rules whose target matches the entry."""
        ndn = entry.ndn
        if "\\" in ndn or ndn in self._bases():
            # an escaped character (a comma may hide in the RDN), or a rule's own base
            # (base scope, or the base of a subtree): every rule looked at
            return [r for r in self.rules if self._target_matches(r, entry)]
        parent = ndn.partition(",")[2]
        rules = self._under.get(parent)
        if rules is None:
            if len(self._under) > 4096:
                self._under.clear()
            rules = self._under[parent] = [r for r in self.rules if self._below(r, parent)]
        return [r for r in rules if r.filter is None or r.filter(entry, _EMPTY) is True]

    def _bases(self):
        """The rules' bases; the per-parent memo (_under) goes with the rules it was made of."""
        rules = self.rules
        if self._bases_of is not rules:
            self._base_set = frozenset(r.base for r in rules if r.base is not None)
            self._under = {}
            self._bases_of = rules
        return self._base_set

    @staticmethod
    def _below(rule, parent) -> bool:
        """_target_matches' DN test for an entry under `parent` whose RDN holds no comma
        and which is no rule's base: the parent alone decides."""
        base = rule.base
        if base is None:
            return True
        if rule.scope == "base":
            return False  # the entry is not the base
        if rule.scope == "one":
            return parent == base
        return parent == base or parent.endswith("," + base)  # subtree, children

    def level(self, ident, entry, attr=None) -> Level:
        if ident.is_root:
            return Level.MANAGE
        if entry.id is None:  # root DSE and subschema: readable by everyone
            return Level.READ
        attr = attr or "entry"
        for rule in self.rules:
            if rule.attrs is not None and attr not in rule.attrs:
                continue
            if self._target_matches(rule, entry):
                return self._decide(rule, ident, entry)
        return Level.NONE

    def check(self, ident, entry, needed: Level, attr=None):
        if self.level(ident, entry, attr) < needed:
            raise LDAPError(ResultCode.INSUFFICIENT_ACCESS_RIGHTS,
                            f"no {needed.name.lower()} access to {attr or 'entry'} of {entry.dn!r}")

    def check_add(self, ident, entry):
        # the new entry has no id yet, and level() takes an id-less entry for the root
        # DSE (readable by all, writable by none): judge a stand-in with a dummy id
        probe = entry if entry.id is not None else Entry(entry.dn, entry.ndn, entry.attrs, 0)
        self.check(ident, probe, Level.WRITE, "entry")

    def check_site_change(self, ident, old, new):
        """A change of an entry's school codes (departmentNumber) needs write access at
        each school added or removed, judged as if the entry belonged to that school
        only: an administrator of 1111 may not add 2222 to (or remove it from) a
        student of 1111 and 2222, which a check of the changed entry as a whole allows."""
        if ident.is_root:
            return
        for code in sorted(self.site_codes(old) ^ self.site_codes(new)):
            attrs = dict(new.attrs)
            attrs["departmentNumber"] = [code.encode()]
            probe = Entry(new.dn, new.ndn, attrs, new.id)
            if self.level(ident, probe, "departmentNumber") < Level.WRITE:
                raise LDAPError(ResultCode.INSUFFICIENT_ACCESS_RIGHTS,
                                f"no write access to school {code} for {new.dn!r}")

    def hidden_attrs(self, ident, entry):
        """Attributes of `entry` the identity may not read, or None when the entry is
        invisible (left out of search results, as if it did not exist)."""
        if ident.is_root or entry.id is None:
            return _EMPTY
        # Memoised on the (immutable, cached) target entry per identity. The answer
        # depends only on the rules, the target and the identity's own entry, and a
        # change to either replaces that entry object; an expiring identity is not memoised.
        me = self._ident_entry(ident)
        key = ("\0acl", ident.ndn)
        memo = entry.keys.get(key)
        if memo is not None and memo[0] is me:
            return memo[1]
        cacheable = me is None or "rollcallExpiry" not in me.attrs
        hidden = self._hidden_attrs(ident, entry, me, cacheable)
        if cacheable:
            entry.keys[key] = (me, hidden)
        return hidden

    def _hidden_attrs(self, ident, entry, me=None, cacheable=False):
        rules = self._applicable(ident, entry)
        # Beyond the applicable rules, the answer depends on the entry only through its
        # attribute names, whether it is the identity's own entry and (site-group
        # subjects) its school codes: entries of one shape share it. A large search
        # meets mostly uncached entries, so the per-entry memo above rarely helps there.
        if cacheable:
            if self._shapes_of is not self.rules or len(self._shapes) > 4096:
                self._shapes_of, self._shapes = self.rules, {}
            shape = (ident.ndn, ident.entry_id, ident.anonymous, tuple([r.index for r in rules]),
                     tuple(entry.attrs), ident.ndn == entry.ndn,
                     self.site_codes(entry) if any(r.site_subject for r in rules) else None)
            got = self._shapes.get(shape)
            if got is not None and got[0] is me:
                return got[1]
            hidden = self._hidden_attrs_of(ident, entry, rules)
            self._shapes[shape] = (me, hidden)
            return hidden
        return self._hidden_attrs_of(ident, entry, rules)

    def _hidden_attrs_of(self, ident, entry, rules):
        decided = {}

        def level_for(attr):
            for r in rules:
                if r.attrs is None or attr in r.attrs:
                    got = decided.get(r.index)
                    if got is None:
                        got = decided[r.index] = self._decide(r, ident, entry)
                    return got
            return Level.NONE

        if level_for("entry") < Level.SEARCH:
            return None
        # secrets (password hashes) are readable only with manage: `self write` lets a
        # user change their password without reading its hash
        secret = self.secret_attrs
        hidden = {name for name in entry.attrs
                  if level_for(name) < (Level.MANAGE if name in secret else Level.READ)}
        for name in ("entryDN", "hasSubordinates", "subschemaSubentry"):
            if level_for(name) < Level.READ:
                hidden.add(name)
        return _intern(frozenset(hidden))

    def can_authenticate(self, entry) -> bool:
        """Binding is 'auth' access to userPassword for an anonymous connection."""
        return self.level(ANONYMOUS, entry, "userPassword") >= Level.AUTH

    def check_password_change(self, ident, entry, is_self: bool):
        self.check(ident, entry, Level.WRITE, "userPassword")
