"""Access control: the one place every operation asks "may this identity do that?".

This is the built-in minimal policy (the root DN may do everything; users read
non-secret attributes and change their own password; anonymous may only bind and
read the root DSE and subschema). The ordered rule engine from config.yaml plugs in
behind the same methods.
"""
from enum import IntEnum

from .errors import LDAPError, ResultCode


class Level(IntEnum):
    NONE = 0
    AUTH = 1
    COMPARE = 2
    SEARCH = 3
    READ = 4
    WRITE = 5
    MANAGE = 6


SECRET_ATTRS = frozenset({"userPassword", "pwdHistory"})
_EMPTY = frozenset()


class AccessControl:
    def __init__(self, directory):
        self.d = directory

    def level(self, ident, entry, attr=None) -> Level:
        if ident.is_root:
            return Level.MANAGE
        if entry.id is None:  # root DSE and subschema
            return Level.READ
        if attr in SECRET_ATTRS:
            return Level.AUTH
        if ident.anonymous:
            return Level.AUTH
        return Level.READ

    def check(self, ident, entry, needed: Level, attr=None):
        if self.level(ident, entry, attr) < needed:
            raise LDAPError(ResultCode.INSUFFICIENT_ACCESS_RIGHTS,
                            f"no {needed.name.lower()} access to {attr or 'entry'} of {entry.dn!r}")

    def check_add(self, ident, entry):
        self.check(ident, entry, Level.WRITE, "entry")

    def hidden_attrs(self, ident, entry):
        """Attributes of `entry` the identity may not read, or None if the entry
        itself is invisible (it is then left out of search results)."""
        if ident.is_root:
            return _EMPTY
        if entry.id is None:
            return _EMPTY
        if ident.anonymous:
            return None
        return SECRET_ATTRS

    def check_bind(self, entry):
        """Account state checks at bind time (disabled, expired …): none yet."""

    def check_password_change(self, ident, entry, is_self: bool):
        if ident.is_root or is_self:
            return
        raise LDAPError(ResultCode.INSUFFICIENT_ACCESS_RIGHTS, f"no write access to userPassword of {entry.dn!r}")

    def check_password_quality(self, entry, new: bytes):
        if len(new) < 8:
            raise LDAPError(ResultCode.CONSTRAINT_VIOLATION, "password is too short (at least 8 characters)")
