"""Overlays: business rules that run inside a write's transaction (slapd's overlay
idea). `before_*` may refuse the operation by raising LDAPError; `after_*` may make
further changes in the same transaction, so a rule and the change that triggered it
commit together or not at all. Every front end (LDAP, CLI, sync) goes through them.
"""


class Overlay:
    def __init__(self, directory):
        self.d = directory

    def before_add(self, tx, ident, entry):
        pass

    def after_add(self, tx, ident, entry):
        pass

    def before_modify(self, tx, ident, old, new):
        pass

    def after_modify(self, tx, ident, old, new):
        pass

    def before_delete(self, tx, ident, entry):
        pass

    def after_delete(self, tx, ident, entry):
        pass

    def before_rename(self, tx, ident, old, new):
        """A rename changes the DN and, through the RDN, attributes: the rules a
        modify obeys apply to it too (old and new carry the attributes before and after)."""

    def after_rename(self, tx, ident, old, new, moved):
        """moved: [(old ndn, new ndn, new dn)] for the entry and its subtree."""
