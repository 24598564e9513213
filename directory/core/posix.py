"""POSIX accounts and groups for the Linux labs (RFC 2307bis: schema/optional/rfc2307bis.schema),
as an overlay: with `posix.enabled`, a person added below ou=people (by the sync, the
account operation, the console or ldapadd) gets posixAccount with a uidNumber from
posix.uid_min..uid_max, gidNumber posix.default_gid, homeDirectory from posix.home and
loginShell posix.shell; a groupOfNames added below ou=sites (a site's role group) gets
posixGroup (auxiliary in rfc2307bis) and a gidNumber from posix.gid_min..gid_max.

Numbers come from counters in the store's meta, bumped in the add's transaction: each
is given once and never again, even after its holder is deleted (as usernames), and
uidNumber/gidNumber never change afterwards. Only the root DN may set or change them
(a migration keeps the numbers a lab already uses).
"""
from .errors import LDAPError, ResultCode
from .operation import internal_replace, system_identity
from .overlay import Overlay

NUMBERS = ("uidNumber", "gidNumber")
ASSIGNER = system_identity("posix-assign")  # named in the audit log


class PosixConfigError(ValueError):
    """(key, reason) of a posix: setting the schema cannot serve."""


class PosixOverlay(Overlay):
    def __init__(self, directory):
        super().__init__(directory)
        d = directory
        cfg = d.config.section("posix")
        self.enabled = cfg["enabled"]
        self.cfg = cfg
        self.people_ndn = d.normalize_dn(f"ou=people,{d.suffix}")
        self.sites_ndn = d.normalize_dn(f"ou=sites,{d.suffix}")
        if self.enabled:
            group = d.schema.objectclass("posixGroup")
            if d.schema.objectclass("posixAccount") is None or group is None or group.kind != "AUXILIARY":
                raise PosixConfigError("posix.enabled", "needs schema/optional/rfc2307bis.schema in `schema:` "
                                       "instead of nis.schema (posixGroup auxiliary, on a site's groupOfNames)")

    def _kind(self, entry):
        ocs = self.d.objectclass_closure(entry)
        if entry.ndn.endswith("," + self.people_ndn) and "inetorgperson" in ocs and entry.attrs.get("uid"):
            return "account"
        if entry.ndn.endswith("," + self.sites_ndn) and "groupofnames" in ocs:
            return "group"
        return None

    def _allocate(self, tx, key, low, high, what):
        n = max(int(tx.get_meta(key) or low), low)  # a range moved up: start at its bottom
        if n > high:
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM,
                            f"posix: no {what} left in {low}..{high} (config.yaml posix)")
        tx.set_meta(key, n + 1)
        return str(n).encode()

    def before_add(self, tx, ident, entry):
        if not self.enabled:
            return
        kind = self._kind(entry)
        if kind is None:
            return
        attrs = entry.attrs
        given = [a for a in NUMBERS if a in attrs]
        if given and not ident.is_root:
            raise LDAPError(ResultCode.CONSTRAINT_VIOLATION,
                            f"{given[0]}: allocated by the server (config.yaml posix); only the root DN sets it")
        self._assign(tx, kind, attrs)
        entry.keys.clear()  # the cached class closure and keys predate these values
        self.d.schema.check_entry(attrs)

    def _assign(self, tx, kind, attrs):
        cfg = self.cfg
        ocs = [v.decode().lower() for v in attrs["objectClass"]]
        if kind == "account":
            if "uidNumber" not in attrs:
                attrs["uidNumber"] = [self._allocate(tx, "posix_next_uid", cfg["uid_min"], cfg["uid_max"], "uidNumber")]
            uid = attrs["uid"][0].decode()
            attrs.setdefault("gidNumber", [str(cfg["default_gid"]).encode()])
            attrs.setdefault("homeDirectory", [cfg["home"].replace("{uid}", uid).encode()])
            attrs.setdefault("loginShell", [cfg["shell"].encode()])
            if "posixaccount" not in ocs:
                attrs["objectClass"] = attrs["objectClass"] + [b"posixAccount"]
        else:
            if "gidNumber" not in attrs:
                attrs["gidNumber"] = [self._allocate(tx, "posix_next_gid", cfg["gid_min"], cfg["gid_max"], "gidNumber")]
            if "posixgroup" not in ocs:
                attrs["objectClass"] = attrs["objectClass"] + [b"posixGroup"]

    def assign_missing(self, batch=200) -> dict:
        """Numbers for the people and site groups that have none: loaded by `rollcall
        load` (which, like slapadd, runs no overlay) or made before posix was enabled.
        Oldest entries first, in short transactions, so it may run beside the server."""
        d, counts = self.d, {"account": 0, "group": 0}
        for base in (self.people_ndn, self.sites_ndn):
            top = d.store.get_by_ndn(base)
            ids = sorted(d.store.subtree_ids(top.id)) if top is not None else []
            for i in range(0, len(ids), batch):
                with d.store.transaction() as tx:
                    for entry_id in ids[i:i + batch]:
                        entry = tx.get(entry_id)
                        kind = self._kind(entry) if entry is not None else None
                        if kind is None or ("uidNumber" if kind == "account" else "gidNumber") in entry.attrs:
                            continue
                        attrs = entry.copy_attrs()
                        self._assign(tx, kind, attrs)
                        internal_replace(d, tx, ASSIGNER, entry, attrs, {"posix": sorted(NUMBERS)}, "posixAssign")
                        counts[kind] += 1
        return counts

    def before_modify(self, tx, ident, old, new):
        # stable numbers: a file server's ownership and a lab's caches depend on them
        if not self.enabled or ident.is_root:
            return
        for attr in NUMBERS:
            if attr in old.attrs and new.attrs.get(attr) != old.attrs[attr]:
                raise LDAPError(ResultCode.CONSTRAINT_VIOLATION,
                                f"{attr}: allocated once and never changed (only the root DN may)")

    def before_rename(self, tx, ident, old, new):
        self.before_modify(tx, ident, old, new)
