"""One write as it passes the pipeline, and the internal writes made inside it.

Every change goes the same way (slapd's frontend → overlays → backend): the slow
part first, outside the write lock (password checks and hashes: PreparedPasswords in
ppolicy.py), then one short transaction — access check, schema, the overlays' before
hooks, the store, the overlays' after hooks, the changelog row — and, once it
commits, the invalidation of every entry it touched in every process (the store).

`Operation` is the per-operation context: who asks, what the operation is called in
the audit log, and `notes`, where overlays keep what one hook hands to another
within this operation (never module state keyed by id()). It travels with the
transaction (`tx.op`); internal writes made by an overlay inside an operation share
it.

Internal writes (an overlay's follow-up changes, bind bookkeeping, a rehash, the
nightly jobs) are `internal_add/replace/delete`: no access check (the rule that
triggered them decided), but schema, the overlays and an audit row, with the
identity that made them — a person, or a system identity (`system_identity`) that
the audit log names.
"""
import time
import uuid
from dataclasses import dataclass, field

from ..district.gentime import gentime
from .dn import DN
from .entry import Entry
from .errors import LDAPError, ResultCode
from .identity import Identity


@dataclass
class Operation:
    ident: Identity
    name: str  # add | modify | delete | modrdn | passwordModify | internal
    notes: dict = field(default_factory=dict)


def operation(tx, ident: Identity | None = None, name: str = "internal") -> Operation:
    """The operation a transaction carries (one is made for a transaction opened
    outside the Directory's write methods, e.g. by a job)."""
    op = getattr(tx, "op", None)
    if op is None:
        op = tx.op = Operation(ident or SYSTEM, name)
    return op


def system_identity(name: str) -> Identity:
    """The identity of the server's own writes, named in the audit log."""
    dn = f"cn={name},cn=internal"
    return Identity(dn=dn, ndn=dn, peer="internal")


SYSTEM = system_identity("rollcall")


def internal_add(d, tx, ident, dn_text: str, attrs: dict, detail: dict, op_name: str = "add") -> Entry:
    """Add an entry inside `tx` with the operational attributes, the schema check,
    the overlays' hooks and an audit row; no access check (see the module)."""
    dn = DN.parse(dn_text)
    ndn = d.normalize_dn(dn_text)
    if tx.get_by_ndn(ndn) is not None:
        raise LDAPError(ResultCode.ENTRY_ALREADY_EXISTS, f"{dn_text} already exists")
    parent = tx.get_by_ndn(d.normalize_dn(str(dn.parent())))
    if parent is None:
        raise LDAPError(ResultCode.NO_SUCH_OBJECT, f"the parent of {dn_text} does not exist")
    d.schema.check_entry(attrs)
    stamp = gentime(time.time())
    actor = (ident.dn or "").encode()
    for k, v in {"entryUUID": [str(uuid.uuid4()).encode()], "creatorsName": [actor],
                 "createTimestamp": [stamp], "modifiersName": [actor], "modifyTimestamp": [stamp],
                 "structuralObjectClass": [d.schema.structural_class(attrs["objectClass"]).encode()]}.items():
        attrs.setdefault(k, v)
    entry = Entry(str(dn), ndn, attrs)
    operation(tx, ident)
    for ov in d.overlays:
        ov.before_add(tx, ident, entry)
    tx.add(entry, parent.id, d.dn.rdn_of(dn.rdn), d.index_rows(attrs))
    for ov in d.overlays:
        ov.after_add(tx, ident, entry)
    tx.log(ident.ndn, ident.peer, op_name, entry.dn, entry.id, {"attributes": sorted(attrs), **detail})
    return entry


def internal_replace(d, tx, ident, old: Entry, attrs: dict, detail: dict, op_name: str = "modify",
                     stamp: bool = True) -> Entry:
    """Replace an entry's attributes inside `tx` (see internal_add). stamp=False keeps
    modifiersName/modifyTimestamp: bookkeeping of operational state (failed binds, a
    rehash) is not a change of the entry anyone made."""
    d.schema.check_entry(attrs)
    if stamp:
        attrs["modifiersName"] = [(ident.dn or "").encode()]
        attrs["modifyTimestamp"] = [gentime(time.time())]
    new = Entry(old.dn, old.ndn, attrs, old.id)
    operation(tx, ident)
    for ov in d.overlays:
        ov.before_modify(tx, ident, old, new)
    tx.replace(new, d.index_rows(new.attrs))
    for ov in d.overlays:
        ov.after_modify(tx, ident, old, new)
    tx.log(ident.ndn, ident.peer, op_name, old.dn, old.id, detail)
    return new


def internal_delete(d, tx, ident, entry: Entry, detail: dict, op_name: str = "delete"):
    operation(tx, ident)
    for ov in d.overlays:
        ov.before_delete(tx, ident, entry)
    tx.delete(entry.id)
    for ov in d.overlays:
        ov.after_delete(tx, ident, entry)
    tx.log(ident.ndn, ident.peer, op_name, entry.dn, entry.id, detail)
