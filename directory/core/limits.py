"""Search limits per identity, as slapd's `limits` directive: `limits.rules` in
config.yaml is a list of {who, size, time, unindexed}; the first rule whose `who`
matches the bound identity gives its limits (a value it leaves out: the default
`limits.size`/`time`/`unindexed`; 0 or "unlimited": none). The root DN has none.

who: a DN (that entry), `dn.subtree=<DN>`, `group=<DN>` (members, nested groups
included, through memberOf), `users` (any bound identity), `anonymous` or `*`.
"""
from dataclasses import dataclass

from .acl import Subject
from .errors import LDAPError


@dataclass(frozen=True)
class SearchLimits:
    size: int       # entries per unpaged search; 0: unlimited
    time: int       # seconds per search request (each page is one); 0: unlimited
    unindexed: int  # candidates an unindexed search may examine; 0: unlimited


UNLIMITED = SearchLimits(0, 0, 0)
_SIMPLE = {"*": "any", "anonymous": "anonymous", "users": "users"}


class RuleError(ValueError):
    """'[i].who: reason' (the config key below limits.rules)."""


def parse_who(text: str, directory) -> Subject:
    text = text.strip()
    if text in _SIMPLE:
        return Subject(_SIMPLE[text])
    kind, sep, value = text.partition("=")
    if sep and kind.strip().lower() in ("dn", "dn.exact", "dn.subtree", "group"):
        kind = {"dn.exact": "dn"}.get(kind.strip().lower(), kind.strip().lower())
    else:
        kind, value = "dn", text  # a bare DN: that identity
    return Subject(kind, directory.normalize_dn(value.replace("{suffix}", directory.suffix)))


class LimitRules:
    def __init__(self, directory, rules: list, defaults: SearchLimits):
        self.d = directory
        self.defaults = defaults
        self.rules = []
        for i, rule in enumerate(rules):
            try:
                subject = parse_who(rule["who"], directory)
            except LDAPError as exc:
                raise RuleError(f"[{i}].who: {exc.message}") from None
            self.rules.append((subject, SearchLimits(*(
                getattr(defaults, k) if rule.get(k) is None else rule[k] for k in ("size", "time", "unindexed")))))

    def for_identity(self, ident) -> SearchLimits:
        if ident.is_root:
            return UNLIMITED
        if not self.rules:
            return self.defaults
        # kept on the identity's own (immutable, cached) entry: its groups and status
        # decide, and a change to them replaces that entry; not for an expiring account
        me = self.d.acl._ident_entry(ident) if ident.entry_id is not None else None
        if me is not None and "rollcallExpiry" not in me.attrs:
            memo = me.keys.get("\0limits")
            if memo is not None and memo[0] is self and memo[1] == ident.ndn:
                return memo[2]
            got = self._match(ident)
            me.keys["\0limits"] = (self, ident.ndn, got)
            return got
        return self._match(ident)

    def _match(self, ident) -> SearchLimits:
        for subject, limits in self.rules:
            if self.d.acl.identity_matches(subject, ident):
                return limits
        return self.defaults
