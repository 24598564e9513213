"""People's identifiers (like slapd's constraint and unique overlays): below
ou=people, a district ID (employeeNumber) must have the district's syntax and belong
to one person only, and a username (uid) to one account only. The issued-names
record under ou=sis holds the same uids on purpose and is outside this scope.
"""
from ..district.ids import DISTRICT_ID
from .errors import LDAPError, ResultCode
from .overlay import Overlay

class UniqueIdentifiers(Overlay):
    def __init__(self, directory):
        super().__init__(directory)
        self.people = directory.normalize_dn("ou=people," + directory.suffix)

    def _in_scope(self, entry) -> bool:
        return entry.ndn.endswith("," + self.people)

    def _check(self, tx, entry, old=None):
        if not self._in_scope(entry):
            return
        for attr, what in (("employeeNumber", "district ID"), ("uid", "username")):
            values = entry.attrs.get(attr, [])
            if old is not None and values == old.attrs.get(attr, []):
                continue  # unchanged: nothing new to check
            if attr == "employeeNumber":
                if len(values) > 1:
                    raise LDAPError(ResultCode.CONSTRAINT_VIOLATION, "employeeNumber: a person has one district ID")
                for v in values:
                    if not DISTRICT_ID.match(v.decode("utf-8", "replace")):
                        raise LDAPError(ResultCode.CONSTRAINT_VIOLATION,
                                        f"employeeNumber: {v.decode('utf-8', 'replace')!r} is not a district ID "
                                        "(10 characters like 000000x000)")
            if "eq" not in self.d.index_kinds(attr):
                continue  # no index to answer it quickly (config.yaml indexes both)
            for v in values:
                key = self.d.schema.normalize_or_none(attr, v)
                if key is None:
                    continue
                for other_id in tx.index_eq(attr.lower(), self.d.index_key(key)):
                    if other_id == entry.id:
                        continue
                    other = tx.get(other_id)
                    if other is not None and self._in_scope(other):
                        raise LDAPError(ResultCode.CONSTRAINT_VIOLATION,
                                        f"{attr}: {what} {v.decode('utf-8', 'replace')!r} already belongs to {other.dn}")

    def before_add(self, tx, ident, entry):
        self._check(tx, entry)

    def before_modify(self, tx, ident, old, new):
        self._check(tx, new, old)

    def before_rename(self, tx, ident, old, new):
        # moved into ou=people from elsewhere, every identifier is new to the scope
        self._check(tx, new, old if self._in_scope(old) else None)
