"""memberOf and referential integrity, kept exact on write (like slapd's memberof and
refint overlays, with nesting resolved when a group is written, not when read).

memberOf(E) = every group that holds E as a member, directly or through groups that
are members of groups. When a group's membership changes, every entry below it in
the membership graph is recomputed; when an entry is deleted or renamed, every
group that named it is updated. All inside the caller's transaction.
"""
import json

from ..district.gentime import gentime
from .entry import Entry, decode_attrs
from .operation import system_identity
from .overlay import Overlay

REFINT = system_identity("refint")  # who rewrites a group's members after a delete or rename

MEMBER_ATTRS = ("member", "uniqueMember")
GROUP_CLASSES = {"groupofnames", "groupofuniquenames"}


class MemberOf(Overlay):
    def is_group(self, attrs) -> bool:
        return any(v.decode("utf-8", "replace").lower() in GROUP_CLASSES for v in attrs.get("objectClass", ()))

    def member_ndns(self, attrs, names=MEMBER_ATTRS) -> set:
        out = set()
        for name in names:
            for v in attrs.get(name, ()):
                try:
                    out.add(self.d.normalize_dn(v.decode("utf-8").split("#")[0]))
                except Exception:
                    continue
        return out

    def _groups_holding(self, tx, ndn) -> list:
        """Groups with ndn as a direct member (the member/uniqueMember eq index)."""
        ids = set()
        for name in MEMBER_ATTRS:
            if "eq" in self.d.index_kinds(name):
                ids.update(tx.index_eq(name.lower(), ndn))
        return [e for e in (tx.get(i) for i in sorted(ids)) if e is not None]

    def _closure_up(self, tx, ndn, holding=None) -> dict:
        """{group ndn: group dn} of all groups holding ndn, transitively."""
        holding = holding or self._groups_holding
        seen, todo = {}, [ndn]
        while todo:
            current = todo.pop()
            for g in holding(tx, current):
                if g.ndn not in seen and g.ndn != ndn:
                    seen[g.ndn] = g.dn
                    todo.append(g.ndn)
        return seen

    def _closure_down(self, tx, ndns) -> set:
        """The given entries and, for groups among them, their members transitively."""
        seen, todo = set(), list(ndns)
        while todo:
            ndn = todo.pop()
            if ndn in seen:
                continue
            seen.add(ndn)
            e = tx.get_by_ndn(ndn)
            if e is not None and self.is_group(e.attrs):
                todo.extend(self.member_ndns(e.attrs) - seen)
        return seen

    def refresh(self, tx, ndns, holding=None):
        """Recompute memberOf of these entries (and everything below groups among them).
        Bulk load: ndns are all members of all groups, and holding(tx, ndn) answers
        as _groups_holding does from the membership read once."""
        for ndn in self._closure_down(tx, ndns) if holding is None else ndns:
            entry = tx.get_by_ndn(ndn)
            if entry is None:
                continue  # a member DN that does not exist (allowed, as in slapd without refint)
            groups = self._closure_up(tx, ndn, holding)
            new = sorted(v.encode() for v in groups.values())
            if sorted(entry.attrs.get("memberOf", [])) == new:
                continue
            attrs = entry.copy_attrs()
            if new:
                attrs["memberOf"] = new
            else:
                attrs.pop("memberOf", None)
            tx.replace(Entry(entry.dn, entry.ndn, attrs, entry.id), self.d.index_rows(attrs))

    def refresh_bulk(self, tx, ndns, holding, locate, batch=20000) -> None:
        """refresh() for a bulk load: ndns are all members of all groups (nothing below
        them to walk), holding(tx, ndn) answers from the membership read once and
        locate(ndn) gives (id, memberOf as JSON text or None), or None. Only memberOf
        changes, so only it and its index rows are written, not the whole entry:
        members of one group share one closure and one set of index rows."""
        reach, rows_of, todo = {}, {}, []

        def index_rows(values):
            got = rows_of.get(values)
            if got is None:
                got = rows_of[values] = frozenset(self.d.index_rows({"memberOf": list(values)}))
            return got

        def flush():
            full = set(tx.change_index([(i, old_rows - new_rows, new_rows - old_rows)
                                        for i, _, old_rows, new_rows, _ in todo]))
            tx.set_attr_json("memberOf", [(i, text) for i, text, _, _, _ in todo if i not in full])
            if full:
                tx.build_id_index()  # replace() drops rows by id: the load may have deferred it
            for i, _, _, _, new in todo:
                if i in full:
                    entry = tx.get(i)
                    attrs = entry.copy_attrs()
                    attrs["memberOf"] = list(new)  # never empty: only additions run out of slots
                    tx.replace(Entry(entry.dn, entry.ndn, attrs, i), self.d.index_rows(attrs))
            todo.clear()

        located = []
        for ndn in ndns:
            got = locate(ndn)
            if got is not None:  # else a member DN that does not exist (allowed, as in slapd without refint)
                located.append((got[0], ndn, got[1]))
        located.sort()  # in id order, rows are updated and index rows added page by page
        for entry_id, ndn, old_json in located:
            direct = holding(tx, ndn)
            key = tuple(g.ndn for g in direct)
            got = reach.get(key)
            if got is None:
                # every group reachable in one step or more, as _closure_up walks it
                groups, stack = {}, list(direct)
                while stack:
                    g = stack.pop()
                    if g.ndn not in groups:
                        groups[g.ndn] = g.dn
                        stack.extend(holding(tx, g.ndn))
                got = reach[key] = (groups, tuple(sorted(v.encode() for v in groups.values())))
            groups, new = got
            if ndn in groups:  # a group in a cycle is not its own member
                new = tuple(sorted(v.encode() for k, v in groups.items() if k != ndn))
            old = tuple(sorted(decode_attrs(f'{{"v":{old_json}}}')["v"])) if old_json else ()
            if old == new:
                continue
            text = json.dumps([v.decode() for v in new], ensure_ascii=False) if new else None
            todo.append((entry_id, text, index_rows(old) if old else frozenset(), index_rows(new), new))
            if len(todo) >= batch:
                flush()
        flush()

    # -- hooks called by Directory inside the write transaction
    def after_add(self, tx, ident, entry):
        if self.is_group(entry.attrs):
            self.refresh(tx, self.member_ndns(entry.attrs))
        if self._groups_holding(tx, entry.ndn):
            self.refresh(tx, {entry.ndn})  # a group named it before it existed

    def after_modify(self, tx, ident, old, new_entry):
        old_attrs = old.attrs
        if self.is_group(old_attrs) or self.is_group(new_entry.attrs):
            before = self.member_ndns(old_attrs)
            after = self.member_ndns(new_entry.attrs)
            if before != after:
                self.refresh(tx, before ^ after)

    def after_delete(self, tx, ident, entry):
        # refint: drop the DN from every group that named it, then fix memberOf below
        affected = set()
        for g in self._groups_holding(tx, entry.ndn):
            attrs = g.copy_attrs()
            for name in MEMBER_ATTRS:
                if name in attrs:
                    attrs[name] = [v for v in attrs[name] if self._norm(v) != entry.ndn]
                    if not attrs[name]:
                        # groupOfNames must keep a member: like slapd's olcRefintNothing,
                        # the root DN stands in for the last one removed
                        attrs[name] = [self.d.root_dn.encode()]
            self._refint_write(tx, g, attrs, {"refint": "member deleted", "member": entry.dn})
        if self.is_group(entry.attrs):
            affected |= self.member_ndns(entry.attrs)
        if affected:
            self.refresh(tx, affected)

    def after_rename(self, tx, ident, old, new_entry, moved):
        """refint for renames: moved = [(old ndn, new ndn, new dn)] for the entry and its subtree."""
        renamed = {old: (new, dn) for old, new, dn in moved}
        touched_groups = set()
        for old, (new, dn) in renamed.items():
            for g in self._groups_holding(tx, old):
                attrs = g.copy_attrs()
                for name in MEMBER_ATTRS:
                    if name in attrs:
                        attrs[name] = [dn.encode() if self._norm(v) == old else v for v in attrs[name]]
                self._refint_write(tx, g, attrs, {"refint": "member renamed", "member": dn})
                touched_groups.add(g.ndn)
        # memberOf values naming a renamed group, and groups' own members
        affected = {new for _, (new, _) in renamed.items()}
        for old, (new, dn) in renamed.items():
            e = tx.get_by_ndn(new)
            if e is not None and self.is_group(e.attrs):
                affected |= self.member_ndns(e.attrs)
        self.refresh(tx, affected)

    def _refint_write(self, tx, group, attrs, detail):
        """A group's member values follow a deleted or renamed entry (slapd's refint):
        written and audited as the refint identity. The other overlays do not run on
        it (the change that caused it already passed them), and memberOf below is
        recomputed by the caller."""
        attrs["modifiersName"] = [REFINT.dn.encode()]
        attrs["modifyTimestamp"] = [gentime()]
        tx.replace(Entry(group.dn, group.ndn, attrs, group.id), self.d.index_rows(attrs))
        tx.log(REFINT.ndn, REFINT.peer, "modify", group.dn, group.id, {"changes": ["replace:member"], **detail})

    def _norm(self, value: bytes) -> str:
        try:
            return self.d.normalize_dn(value.decode("utf-8").split("#")[0])
        except Exception:
            return ""
