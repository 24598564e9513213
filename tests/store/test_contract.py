"""The store contract (directory/store/base.py): what every backend must do, tested
on a store directly, without the core. Runs once per backend in conftest.STORES."""
import json

import pytest

from directory.config import ConfigError
from directory.core.entry import Entry, encode_attrs
from directory.store import open_store
from directory.store.base import (Eq, JobLocked, MemoryThrottles, Prefix, Present, Range, Store, Substring, Tx,
                                  prefix_end)

SUFFIX = "o=district"


def ndn_of(dn):
    return dn.lower()


def add(tx, dn, parent=None, rows=(), **attrs):
    """Add dn (attrs as name=[text…]) under the entry `parent` (an Entry or id)."""
    parent_id = parent.id if isinstance(parent, Entry) else parent
    values = {k: [v.encode() for v in vs] for k, vs in attrs.items()} or {"o": [b"x"]}
    entry = Entry(dn, ndn_of(dn), values)
    tx.add(entry, parent_id, ndn_of(dn).split(",")[0], list(rows))
    return entry


def person(tx, uid, parent, cn, mail=None):
    rows = [("objectclass", "eq", "person"), ("uid", "eq", uid), ("cn", "eq", cn), ("cn", "sub", cn)]
    if mail:
        rows += [("mail", "eq", mail), ("mail", "sub", mail)]
    return add(tx, f"uid={uid},{parent.dn}", parent, rows, uid=[uid], cn=[cn])


@pytest.fixture
def tree(store):
    """o=district / ou=people / {uid=jsmith, uid=mgarcia}, ou=groups, ou=peoplex."""
    with store.transaction() as tx:
        top = add(tx, SUFFIX, rows=[("objectclass", "eq", "organization")])
        people = add(tx, f"ou=people,{SUFFIX}", top, [("ou", "eq", "people")], ou=["people"])
        groups = add(tx, f"ou=groups,{SUFFIX}", top, [("ou", "eq", "groups")], ou=["groups"])
        # shares "ou=people" as a text prefix: not below ou=people
        lookalike = add(tx, f"ou=peoplex,{SUFFIX}", top, [("ou", "eq", "peoplex")], ou=["peoplex"])
        js = person(tx, "jsmith", people, "john smith", "jsmith@district.example")
        mg = person(tx, "mgarcia", people, "maria garcia", "mgarcia@district.example")
    return dict(top=top, people=people, groups=groups, lookalike=lookalike, jsmith=js, mgarcia=mg)


def ids(*entries):
    return sorted(e.id for e in entries)


def protocol_members(proto):
    names = set()
    for klass in proto.__mro__:
        if klass.__module__ == "directory.store.base":
            names |= {n for n in vars(klass) if not n.startswith("_")}
    return names


# -- the interface and the factory ---------------------------------------------------

def test_store_and_tx_have_every_protocol_method(store):
    assert isinstance(store, Store)
    missing = [n for n in protocol_members(Store) if not callable(getattr(store, n, None))]
    with store.transaction() as tx:
        assert isinstance(tx, Tx)
        missing += [f"Tx.{n}" for n in protocol_members(Tx) if not callable(getattr(tx, n, None))]
    assert not missing


def test_factory_refuses_an_unknown_backend(tmp_path):
    cfg = type("C", (), dict(store_backend="oracle", store_path=tmp_path / "x.db", cache_entries=0))()
    with pytest.raises(ConfigError, match="store.backend.*oracle"):
        open_store(cfg)


# -- entries ---------------------------------------------------------------------

def test_add_then_get_by_id_and_by_ndn(store, tree):
    js = tree["jsmith"]
    got = store.get(js.id)
    assert (got.id, got.dn, got.ndn) == (js.id, js.dn, js.ndn)
    assert got.attrs == {"uid": [b"jsmith"], "cn": [b"john smith"]}
    assert store.get_by_ndn(js.ndn).id == js.id
    assert len({e.id for e in tree.values()}) == len(tree)  # distinct ids


def test_missing_entries_are_none(store, tree):
    assert store.get(max(e.id for e in tree.values()) + 100) is None
    assert store.get_by_ndn("uid=nobody,ou=people,o=district") is None
    with store.transaction() as tx:
        assert tx.get(10_000) is None and tx.get_by_ndn("o=nowhere") is None


def test_values_round_trip_binary_and_unicode(store):
    attrs = {"cn": ["Mar\u00eda".encode(), b"x"], "jpegPhoto": [b"\xff\xd8\x00\x01"]}
    with store.transaction() as tx:
        e = Entry("o=bin", "o=bin", attrs)
        tx.add(e, None, "o=bin", [])
    assert store.get(e.id).attrs == attrs


def test_get_many_returns_the_existing_ones(store, tree):
    js, mg = tree["jsmith"], tree["mgarcia"]
    store.get(js.id)  # one cached, one not
    got = store.get_many([js.id, 999_999, mg.id])
    assert sorted((e.id, e.dn) for e in got) == sorted([(js.id, js.dn), (mg.id, mg.dn)])


def test_children_and_has_children(store, tree):
    t = tree
    assert store.children_ids(t["top"].id) == ids(t["people"], t["groups"], t["lookalike"])
    assert store.children_ids(t["people"].id) == ids(t["jsmith"], t["mgarcia"])
    assert store.has_children(t["people"].id)
    assert not store.has_children(t["groups"].id)
    with store.transaction() as tx:
        assert tx.has_children(t["top"].id) and not tx.has_children(t["jsmith"].id)


def test_subtree_ids_and_limit(store, tree):
    t = tree
    assert store.subtree_ids(t["people"].id) == ids(t["people"], t["jsmith"], t["mgarcia"])
    assert store.subtree_ids(t["top"].id) == ids(*t.values())
    assert store.subtree_ids(t["jsmith"].id) == [t["jsmith"].id]
    assert len(store.subtree_ids(t["top"].id, 2)) == 2
    assert store.subtree_ids(999_999) == []


def test_count_and_all_ids_parents_first(store, tree):
    t = tree
    assert store.count() == len(t)
    # move ou=people under ou=groups (created after it): export order is by depth
    with store.transaction() as tx:
        tx.rename(t["people"].id, f"ou=people,{t['groups'].dn}", f"ou=people,{t['groups'].ndn}",
                  t["groups"].id, "ou=people")
    order = store.all_ids()
    assert sorted(order) == ids(*t.values())
    assert order.index(t["groups"].id) < order.index(t["people"].id) < order.index(t["jsmith"].id)


def test_replace_changes_attributes_not_the_dn(store, tree):
    js = tree["jsmith"]
    assert store.get(js.id).attrs["cn"] == [b"john smith"]  # now cached
    with store.transaction() as tx:
        tx.replace(Entry(js.dn, js.ndn, {"uid": [b"jsmith"], "cn": [b"johnny"]}, js.id),
                   [("uid", "eq", "jsmith"), ("cn", "eq", "johnny")])
    got = store.get(js.id)
    assert got.attrs["cn"] == [b"johnny"] and got.dn == js.dn
    assert store.get_by_ndn(js.ndn).attrs["cn"] == [b"johnny"]


def test_delete_removes_entry_and_index_rows(store, tree):
    js = tree["jsmith"]
    store.get(js.id), store.get_by_ndn(js.ndn)  # cached
    with store.transaction() as tx:
        tx.delete(js.id)
    assert store.get(js.id) is None and store.get_by_ndn(js.ndn) is None
    assert store.index_eq("uid", "jsmith") == []
    assert store.candidates(Substring("cn", "john", (), None)) == []
    assert store.count() == len(tree) - 1
    assert store.children_ids(tree["people"].id) == [tree["mgarcia"].id]


def test_rename_a_leaf(store, tree):
    js = tree["jsmith"]
    store.get_by_ndn(js.ndn)  # cached under its old DN
    new_dn = f"uid=jsmith2,{tree['people'].dn}"
    with store.transaction() as tx:
        moved = tx.rename(js.id, new_dn, ndn_of(new_dn), tree["people"].id, "uid=jsmith2")
    assert moved == [(js.ndn, ndn_of(new_dn), new_dn)]
    assert store.get_by_ndn(js.ndn) is None
    got = store.get_by_ndn(ndn_of(new_dn))
    assert (got.id, got.dn) == (js.id, new_dn)
    assert store.get(js.id).dn == new_dn


def test_rename_moves_the_subtree(store, tree):
    t = tree
    for e in t.values():
        store.get(e.id), store.get_by_ndn(e.ndn)  # everything cached
    new_dn, new_ndn = f"ou=staff,{t['groups'].dn}", f"ou=staff,{t['groups'].ndn}"
    with store.transaction() as tx:
        moved = tx.rename(t["people"].id, new_dn, new_ndn, t["groups"].id, "ou=staff")
    js_dn = f"uid=jsmith,{new_dn}"
    assert sorted(moved) == sorted([
        (t["people"].ndn, new_ndn, new_dn),
        (t["jsmith"].ndn, ndn_of(js_dn), js_dn),
        (t["mgarcia"].ndn, f"uid=mgarcia,{new_ndn}", f"uid=mgarcia,{new_dn}"),
    ])
    # DNs of descendants, old DNs gone, parent ids
    assert store.get(t["jsmith"].id).dn == js_dn
    assert store.get_by_ndn(ndn_of(js_dn)).id == t["jsmith"].id
    assert store.get_by_ndn(t["jsmith"].ndn) is None
    assert store.children_ids(t["groups"].id) == [t["people"].id]
    assert store.children_ids(t["people"].id) == ids(t["jsmith"], t["mgarcia"])
    assert t["people"].id not in store.children_ids(t["top"].id)
    assert store.subtree_ids(t["groups"].id) == ids(t["groups"], t["people"], t["jsmith"], t["mgarcia"])
    # the paths moved too: a child added below a moved entry is in the new subtree
    with store.transaction() as tx:
        parent = tx.get(t["jsmith"].id)
        assert parent.dn == js_dn  # the transaction sees the new DN
        leaf = add(tx, f"cn=x,{js_dn}", parent)
    assert leaf.id in store.subtree_ids(t["groups"].id)
    assert leaf.id not in store.subtree_ids(t["lookalike"].id)


# -- transactions -----------------------------------------------------------------

def test_tx_reads_its_own_writes(store, tree, open_one):
    other = open_one()
    with store.transaction() as tx:
        e = add(tx, f"uid=new,{tree['people'].dn}", tree["people"], [("uid", "eq", "new")], uid=["new"])
        assert tx.get(e.id).dn == e.dn and tx.get_by_ndn(e.ndn).id == e.id
        assert tx.index_eq("uid", "new") == [e.id]
        assert tx.has_children(tree["people"].id)
        assert other.get_by_ndn(e.ndn) is None  # not committed yet
    other.refresh()
    assert other.get_by_ndn(e.ndn).id == e.id


def test_rollback_leaves_nothing(store, tree):
    js = tree["jsmith"]
    store.get(js.id)  # cached before the failed write
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            new = add(tx, f"uid=new,{tree['people'].dn}", tree["people"], [("uid", "eq", "new")])
            tx.replace(Entry(js.dn, js.ndn, {"uid": [b"jsmith"], "cn": [b"changed"]}, js.id), [])
            tx.delete(tree["mgarcia"].id)
            tx.set_meta("counter", 7)
            tx.log("cn=admin", "test", "add", new.dn, new.id, {})
            raise RuntimeError("abort")
    assert store.get_by_ndn(new.ndn) is None and store.index_eq("uid", "new") == []
    assert store.get(js.id).attrs["cn"] == [b"john smith"]
    assert store.index_eq("uid", "jsmith") == [js.id]
    assert store.get(tree["mgarcia"].id) is not None
    assert store.get_meta("counter") is None
    assert store.changes() == []
    assert store.count() == len(tree)


def test_group_commit_each_write_all_or_nothing(store, tree, open_one):
    people = tree["people"]
    with store.group_commit():
        with store.transaction() as tx:
            a = add(tx, f"uid=a,{people.dn}", people, [("uid", "eq", "a")])
            tx.log("x", "test", "add", a.dn, a.id, {})
        with pytest.raises(ValueError):
            with store.transaction() as tx:
                b = add(tx, f"uid=b,{people.dn}", people, [("uid", "eq", "b")])
                tx.log("x", "test", "add", b.dn, b.id, {})
                raise ValueError
        with store.transaction() as tx:
            assert tx.get_by_ndn(a.ndn) is not None  # sees the group's earlier writes
            assert tx.get_by_ndn(b.ndn) is None
            c = add(tx, f"uid=c,{people.dn}", people, [("uid", "eq", "c")])
        assert open_one().get_by_ndn(a.ndn) is None  # durable only when the group ends
    other = open_one()
    assert other.get_by_ndn(a.ndn) is not None and other.get_by_ndn(c.ndn) is not None
    assert other.get_by_ndn(b.ndn) is None and other.index_eq("uid", "b") == []
    assert [r["dn"] for r in other.changes()] == [a.dn]
    assert store.get_by_ndn(a.ndn).id == a.id


def test_failed_group_commit_stores_nothing(store, tree):
    people = tree["people"]
    with pytest.raises(RuntimeError):
        with store.group_commit():
            with store.transaction() as tx:
                a = add(tx, f"uid=a,{people.dn}", people)
            raise RuntimeError
    assert store.get_by_ndn(a.ndn) is None
    with store.transaction() as tx:  # the store works on afterwards
        d = add(tx, f"uid=d,{people.dn}", people)
    assert store.get_by_ndn(d.ndn).id == d.id


# -- index queries ------------------------------------------------------------------

def test_eq(store, tree):
    t = tree
    assert store.candidates(Eq("uid", "jsmith")) == [t["jsmith"].id]
    assert store.candidates(Eq("uid", "jsmit")) == []  # exact, not a prefix
    assert store.candidates(Eq("cn", "jsmith")) == []  # another attribute
    assert sorted(store.candidates(Eq("objectclass", "person"))) == ids(t["jsmith"], t["mgarcia"])
    assert store.index_eq("uid", "mgarcia") == [t["mgarcia"].id]


def test_present(store, tree):
    t = tree
    assert sorted(store.candidates(Present("uid"))) == ids(t["jsmith"], t["mgarcia"])
    assert sorted(store.candidates(Present("ou"))) == ids(t["people"], t["groups"], t["lookalike"])
    assert store.candidates(Present("telephonenumber")) == []


def test_substring_initial(store, tree):
    t = tree
    assert store.candidates(Substring("cn", "john", (), None)) == [t["jsmith"].id]
    assert store.candidates(Substring("cn", "smith", (), None)) == []  # not at the start


def test_substring_final(store, tree):
    t = tree
    assert store.candidates(Substring("cn", None, (), "garcia")) == [t["mgarcia"].id]
    assert store.candidates(Substring("cn", None, (), "maria")) == []  # not at the end


def test_substring_any_in_order(store, tree):
    t = tree
    assert store.candidates(Substring("cn", None, ("ohn",), None)) == [t["jsmith"].id]
    assert store.candidates(Substring("cn", None, ("john", "smith"), None)) == [t["jsmith"].id]
    assert store.candidates(Substring("cn", None, ("smith", "john"), None)) == []
    assert sorted(store.candidates(Substring("mail", None, ("district",), None))) == ids(t["jsmith"], t["mgarcia"])


def test_substring_is_per_attribute(store, tree):
    assert store.candidates(Substring("mail", "john", (), None)) == []
    assert store.candidates(Substring("uid", "jsm", (), None)) == []  # uid has no "sub" rows


def test_substring_short_pieces_with_a_long_one(store, tree):
    t = tree
    assert store.candidates(Substring("cn", "jo", ("smith",), None)) == [t["jsmith"].id]
    assert store.candidates(Substring("cn", "ma", ("smith",), None)) == []
    assert store.candidates(Substring("cn", None, ("gar",), "a")) == [t["mgarcia"].id]
    assert store.candidates(Substring("cn", "j", ("n s",), "h")) == [t["jsmith"].id]


def test_substring_only_short_pieces(store, tree):
    """Either answered (then every match is among the candidates) or None: scan."""
    got = store.candidates(Substring("cn", "jo", ("n",), "th"))
    assert got is None or tree["jsmith"].id in got
    got = store.candidates(Substring("cn", "m", (), None))
    assert got is None or tree["mgarcia"].id in got and tree["jsmith"].id not in got


def test_range(store, tree):
    t = tree
    assert sorted(store.candidates(Range("uid", "a", "z"))) == ids(t["jsmith"], t["mgarcia"])
    assert store.candidates(Range("uid", "k", None)) == [t["mgarcia"].id]
    assert store.candidates(Range("uid", None, "k")) == [t["jsmith"].id]
    assert store.candidates(Range("uid", "jsmith", "jsmith")) == [t["jsmith"].id]  # inclusive
    assert store.candidates(Range("uid", "jsmith0", "mgarci")) == []
    assert store.candidates(Range("cn", "a", "z")) == ids(t["jsmith"], t["mgarcia"])  # eq rows only


def test_prefix_is_a_range_of_equality_keys(store, tree):
    t = tree
    assert store.candidates(Prefix("cn", "john")) == [t["jsmith"].id]
    assert store.candidates(Prefix("cn", "john smith")) == [t["jsmith"].id]  # the whole key
    assert store.candidates(Prefix("cn", "john smithx")) == []
    assert store.candidates(Prefix("cn", "smith")) == []  # not at the start
    assert sorted(store.candidates(Prefix("cn", "m"))) == [t["mgarcia"].id]
    assert store.candidates(Prefix("uid", "jsm")) == [t["jsmith"].id]  # eq rows: no "sub" rows needed
    assert store.candidates(Prefix("mail", "john")) == []  # per attribute


def test_prefix_at_the_edges_of_code_point_order(store, tree):
    people = tree["people"]
    keys = ["ab", "ab\x7f", "ab\u00e9", "ab\ud7ff", "ab\ue000", "ab\U0010ffff", "ab\U0010ffffz", "ac", "aa\U0010ffff"]
    made = {}
    with store.transaction() as tx:
        for n, k in enumerate(keys):
            made[k] = add(tx, f"uid=e{n},{people.dn}", people, [("description", "eq", k)]).id
    def got(prefix):
        return sorted(store.candidates(Prefix("description", prefix)))
    assert got("ab") == sorted(made[k] for k in keys if k.startswith("ab"))
    assert got("ab\U0010ffff") == sorted([made["ab\U0010ffff"], made["ab\U0010ffffz"]])
    assert got("ab\ud7ff") == [made["ab\ud7ff"]]
    assert got("a") == sorted(made.values())
    assert prefix_end("ab") == "ac" and prefix_end("a\ud7ff") == "a\ue000" and prefix_end("\U0010ffff") is None


def test_candidates_after_reads_substring_matches_in_id_order(store, tree):
    people = tree["people"]
    with store.transaction() as tx:
        made = [person(tx, f"u{n}", people, f"smith number {n}").id for n in range(40)]
        # two "sub" rows of one entry: one id
        twice = add(tx, f"uid=twice,{people.dn}", people, [("cn", "sub", "smith a"), ("cn", "sub", "smith b")]).id
        add(tx, f"uid=other,{people.dn}", people, [("cn", "sub", "jones")])
    want = sorted(made + [twice, tree["jsmith"].id])  # "john smith" too
    q = Substring("cn", None, ("smith",), None)
    assert sorted(store.candidates(q)) == want
    out, after, reads = [], None, 0
    while True:
        ids_, after = store.candidates_after(q, after, 7)
        assert ids_ == sorted(set(ids_)) and all(i > max(out, default=0) for i in ids_)
        out += ids_
        reads += 1
        if after is None:
            break
    assert out == want and reads >= 6
    assert store.candidates_after(Substring("cn", "john", (), None), None, 5) == ([tree["jsmith"].id], None)
    assert store.candidates_after(Substring("cn", "nobody", (), None), None, 5) == ([], None)
    # what candidates() cannot answer, neither can this
    if store.candidates(Substring("cn", None, ("ab",), None)) is None:
        assert store.candidates_after(Substring("cn", None, ("ab",), None), None, 5) is None


def test_candidates_after_reads_a_prefix_in_key_order(store, tree):
    people = tree["people"]
    with store.transaction() as tx:
        made = {}
        for n in range(30):
            key = f"smith {(n * 7) % 30:02d}"
            made[key] = add(tx, f"uid=p{n},{people.dn}", people, [("cn", "eq", key)]).id
        # one entry, two matching keys
        made["smith two a"] = made["smith two b"] = add(
            tx, f"uid=two,{people.dn}", people, [("cn", "eq", "smith two a"), ("cn", "eq", "smith two b")]).id
        add(tx, f"uid=smithy,{people.dn}", people, [("cn", "eq", "smithy")])
    rows, after = [], None
    while True:
        ids_, after = store.candidates_after(Prefix("cn", "smith "), after, 4)
        rows += ids_
        if after is None:
            break
    assert rows == [made[k] for k in sorted(made)]  # key order; the two-key entry twice
    assert store.candidates_after(Prefix("cn", "smith 0"), None, 100) == (
        [made[k] for k in sorted(made) if k.startswith("smith 0")], None)
    assert store.candidates_after(Prefix("cn", "nobody"), None, 5) == ([], None)


def test_candidates_after_sees_writes_after_a_repeated_read(store, tree, open_one):
    """A repeated first batch may be cached (a type-ahead's size-limited search), but
    never past a write: this store's own, or one made by another process."""
    people, js = tree["people"], tree["jsmith"]
    q, p = Substring("cn", None, ("smith",), None), Prefix("cn", "john")
    for _ in range(2):
        assert store.candidates_after(q, None, 16) == ([js.id], None)
        assert store.candidates_after(p, None, 16) == ([js.id], None)
    with store.transaction() as tx:
        mine = add(tx, f"uid=mine,{people.dn}", people, [("cn", "sub", "jane smith"), ("cn", "eq", "johnny")]).id
    assert store.candidates_after(q, None, 16) == (sorted([js.id, mine]), None)
    assert sorted(store.candidates_after(p, None, 16)[0]) == sorted([js.id, mine])
    other = open_one()
    with other.transaction() as tx:
        tx.delete(mine)
    store.refresh()
    assert store.candidates_after(q, None, 16) == ([js.id], None)
    assert store.candidates_after(p, None, 16) == ([js.id], None)


def test_replace_rewrites_index_rows(store, tree):
    js = tree["jsmith"]
    with store.transaction() as tx:
        tx.replace(Entry(js.dn, js.ndn, {"cn": [b"jim"]}, js.id), [("cn", "eq", "jim"), ("cn", "sub", "jim bo")])
    assert store.candidates(Eq("cn", "john smith")) == []
    assert store.candidates(Eq("cn", "jim")) == [js.id]
    assert store.candidates(Present("uid")) == [tree["mgarcia"].id]
    assert store.candidates(Substring("cn", "john", (), None)) == []
    assert store.candidates(Substring("cn", "jim", (), None)) == [js.id]


def test_change_index_drops_and_adds_rows(store, tree):
    js = tree["jsmith"]
    with store.transaction() as tx:
        full = tx.change_index([(js.id, {("uid", "eq", "jsmith"), ("cn", "sub", "john smith")},
                                 {("uid", "eq", "jsmith9"), ("mail", "sub", "other@x.example")})])
    assert full == []
    assert store.index_eq("uid", "jsmith") == [] and store.index_eq("uid", "jsmith9") == [js.id]
    assert store.candidates(Substring("cn", "john", (), None)) == []
    assert store.candidates(Substring("mail", "other", (), None)) == [js.id]
    assert store.index_eq("cn", "john smith") == [js.id]  # rows not named stay


# -- audit log ----------------------------------------------------------------------

def test_changelog_rows(store, tree):
    js = tree["jsmith"]
    with store.transaction() as tx:
        tx.log("cn=admin,o=district", "10.0.0.1:389", "modify", js.dn, js.id, {"changes": ["replace:cn"], "n": 2})
    with store.transaction() as tx:
        tx.log("uid=x", "cron", "delete", "uid=gone,o=district", None, {})
    rows = store.changes()
    assert [r["op"] for r in rows] == ["modify", "delete"]
    first = rows[0]
    assert (first["who"], first["peer"], first["dn"]) == ("cn=admin,o=district", "10.0.0.1:389", js.dn)
    assert first["detail"] == {"changes": ["replace:cn"], "n": 2}
    assert first["time"] and rows[1]["seq"] > first["seq"]
    assert [r["op"] for r in store.changes(since=first["seq"])] == ["delete"]
    assert json.dumps(rows)  # plain data


def test_changelog_filters(store, tree):
    with store.transaction() as tx:
        for who, dn in [("a", "uid=1,ou=People,o=district"), ("b", "ou=people,o=district"),
                        ("a", "uid=2,ou=peoplex,o=district"), ("a", "uid=3,ou=people,o=district")]:
            tx.log(who, "p", "add", dn, None, {})
    assert [r["dn"] for r in store.changes(dn_suffix="OU=people,o=district")] == [
        "uid=1,ou=People,o=district", "ou=people,o=district", "uid=3,ou=people,o=district"]
    assert [r["who"] for r in store.changes(who="b")] == ["b"]
    assert len(store.changes(limit=2)) == 2
    assert [r["dn"] for r in store.changes(who="a", dn_suffix="ou=people,o=district", limit=1)] == [
        "uid=1,ou=People,o=district"]


# -- two store objects on one database (two worker processes) ---------------------

def test_change_by_a_is_evicted_from_b_on_refresh(store, tree, open_one):
    b = open_one()
    js = tree["jsmith"]
    assert b.get(js.id).attrs["cn"] == [b"john smith"]  # cached by B
    with store.transaction() as tx:
        tx.replace(Entry(js.dn, js.ndn, {"cn": [b"changed"]}, js.id), [])
    b.refresh()
    assert b.get(js.id).attrs["cn"] == [b"changed"]
    assert b.get_by_ndn(js.ndn).attrs["cn"] == [b"changed"]
    assert b.get_many([js.id])[0].attrs["cn"] == [b"changed"]


def test_group_commit_by_a_is_evicted_from_b_on_refresh(store, tree, open_one):
    b = open_one()
    js, mg = tree["jsmith"], tree["mgarcia"]
    b.get(js.id), b.get(mg.id)
    with store.group_commit():
        for e in (js, mg):
            with store.transaction() as tx:
                tx.replace(Entry(e.dn, e.ndn, {"cn": [b"new " + e.ndn.encode()]}, e.id), [])
    b.refresh()
    assert [b.get(e.id).attrs["cn"] for e in (js, mg)] == [[b"new " + e.ndn.encode()] for e in (js, mg)]
    assert store.get(js.id).attrs["cn"] == [b"new " + js.ndn.encode()]


def test_equality_look_ups_follow_changes_by_a_in_b(store, tree, open_one):
    """B's equality look-ups, made before A's commits, answer as the new data after
    B's refresh: a value moved to another entry, a value added (a key B had looked up
    and found nothing for), a new entry, a deletion; unrelated ones stay right too."""
    b = open_one()
    js, mg, people = tree["jsmith"], tree["mgarcia"], tree["people"]
    before = {k: b.candidates(Eq("uid", k)) for k in ("jsmith", "mgarcia", "jsmith2", "newkid")}
    assert before == {"jsmith": [js.id], "mgarcia": [mg.id], "jsmith2": [], "newkid": []}
    assert b.candidates(Eq("uid", "jsmith")) == [js.id]  # a second look-up (a cache hit where kept)
    with store.transaction() as tx:
        tx.replace(Entry(js.dn, js.ndn, {"uid": [b"jsmith2"]}, js.id),
                   [("objectclass", "eq", "person"), ("uid", "eq", "jsmith2")])
    b.refresh()
    assert b.candidates(Eq("uid", "jsmith")) == []
    assert b.candidates(Eq("uid", "jsmith2")) == [js.id]
    assert b.candidates(Eq("uid", "mgarcia")) == [mg.id]
    with store.transaction() as tx:
        kid = person(tx, "newkid", people, "new kid")
        tx.delete(mg.id)
    b.refresh()
    assert b.candidates(Eq("uid", "newkid")) == [kid.id]
    assert b.candidates(Eq("uid", "mgarcia")) == []
    assert sorted(b.candidates(Eq("objectclass", "person"))) == ids(js, kid)
    with store.transaction() as tx:  # a value removed: js is no longer a person
        tx.replace(Entry(js.dn, js.ndn, {"uid": [b"jsmith2"]}, js.id), [("uid", "eq", "jsmith2")])
    b.refresh()
    assert b.candidates(Eq("objectclass", "person")) == [kid.id]


def test_an_unrelated_commit_keeps_equality_look_ups(backend, store, tree, open_one):
    """SQLite keeps its look-ups across commits that do not touch their entries: a
    login's failure count written for one student does not send every other look-up
    back to the database (counted as index queries B runs)."""
    if backend != "sqlite":
        pytest.skip("the equality look-up cache is the SQLite store's")
    b = open_one()
    js, mg = tree["jsmith"], tree["mgarcia"]
    queries = []
    b._conn().set_trace_callback(lambda sql: queries.append(sql) if "FROM idx WHERE attr" in sql else None)
    assert b.candidates(Eq("uid", "jsmith")) == [js.id]
    with store.transaction() as tx:
        tx.replace(Entry(mg.dn, mg.ndn, {"uid": [b"mgarcia"], "cn": [b"x"]}, mg.id), [("uid", "eq", "mgarcia")])
    b.refresh()
    assert b.candidates(Eq("uid", "jsmith")) == [js.id]
    assert len(queries) == 1, queries
    with store.transaction() as tx:  # a change to the entry itself: looked up again
        tx.replace(Entry(js.dn, js.ndn, {"uid": [b"jsmith"], "cn": [b"x"]}, js.id), [("uid", "eq", "jsmith")])
    b.refresh()
    assert b.candidates(Eq("uid", "jsmith")) == [js.id]
    assert len(queries) == 2, queries


def test_delete_and_rename_by_a_reach_b(store, tree, open_one):
    b = open_one()
    js, mg = tree["jsmith"], tree["mgarcia"]
    b.get_by_ndn(js.ndn), b.get_by_ndn(mg.ndn)
    new_dn = f"uid=maria,{tree['people'].dn}"
    with store.transaction() as tx:
        tx.delete(js.id)
        tx.rename(mg.id, new_dn, ndn_of(new_dn), tree["people"].id, "uid=maria")
    b.refresh()
    assert b.get_by_ndn(js.ndn) is None and b.get(js.id) is None
    assert b.get_by_ndn(mg.ndn) is None
    assert b.get_by_ndn(ndn_of(new_dn)).id == mg.id


def test_bulk_load_by_a_reaches_b(store, tree, open_one):
    b = open_one()
    js = tree["jsmith"]
    assert b.get(js.id).attrs.get("memberOf") is None  # cached by B
    with store.bulk() as tx:
        gid = tx.next_id()
        parent_id, parent_path = tx.id_path(tree["groups"].ndn)
        gdn = f"cn=g,{tree['groups'].dn}"
        tx.insert_prepared([(gid, ndn_of(gdn), gdn, parent_id, tx.child_path(parent_path, "cn=g"),
                             encode_attrs({"cn": [b"g"], "member": [js.dn.encode()]}), [("member", "eq", js.ndn)])])
        tx.set_attr_json("memberOf", [(js.id, json.dumps([gdn]))])
    b.refresh()
    assert b.get(js.id).attrs["memberOf"] == [gdn.encode()]
    assert b.get_by_ndn(ndn_of(gdn)).id == gid
    assert b.count() == len(tree) + 1


# -- throttles --------------------------------------------------------------------

@pytest.fixture(params=["store", "memory"])
def throttles(request, store):
    return store if request.param == "store" else MemoryThrottles()


def test_throttle_hit_and_count_within_the_window(throttles):
    t0 = 1_000_000.0
    assert throttles.throttle_count("k1", 60, now=t0) == 0
    assert throttles.throttle_hit("k1", 60, now=t0) == 1
    assert throttles.throttle_hit("k1", 60, now=t0 + 10) == 2
    assert throttles.throttle_hit("k2", 60, now=t0 + 10) == 1  # keys are separate
    assert throttles.throttle_count("k1", 60, now=t0 + 30) == 2
    assert throttles.throttle_count("k1", 60, now=t0 + 60) == 1  # the first left the window
    assert throttles.throttle_count("k1", 5, now=t0 + 12) == 1  # a smaller window asked about
    assert throttles.throttle_count("k1", 60, now=t0 + 200) == 0


def test_throttle_admit_and_clear(throttles):
    t0 = 2_000_000.0
    assert [throttles.throttle_admit("r", 100, 2, now=t0 + i) for i in range(4)] == [True, True, False, False]
    assert throttles.throttle_count("r", 100, now=t0 + 5) == 2  # refusals are not counted
    assert throttles.throttle_admit("r", 100, 2, now=t0 + 100.5)  # the first left the window
    throttles.throttle_hit("s", 100, now=t0)
    throttles.throttle_clear("r")
    assert throttles.throttle_count("r", 100, now=t0 + 101) == 0
    assert throttles.throttle_count("s", 100, now=t0 + 1) == 1  # other keys stay


def test_throttles_are_shared_between_store_objects(store, open_one):
    t0 = 3_000_000.0
    b = open_one()
    store.throttle_hit("bind-src:10.0.0.9", 60, now=t0)
    assert b.throttle_hit("bind-src:10.0.0.9", 60, now=t0 + 1) == 2
    b.throttle_clear("bind-src:10.0.0.9")
    assert store.throttle_count("bind-src:10.0.0.9", 60, now=t0 + 2) == 0


# -- named values (the request counter) ---------------------------------------------

def test_meta_in_a_transaction(store, open_one):
    assert store.get_meta("requests.next", "none") == "none"
    with store.transaction() as tx:
        assert tx.get_meta("requests.next") is None
        tx.set_meta("requests.next", 41)
        assert tx.get_meta("requests.next") == "41"  # text, and seen inside
    with store.transaction() as tx:
        tx.set_meta("requests.next", int(tx.get_meta("requests.next")) + 1)
    assert store.get_meta("requests.next") == "42"
    assert open_one().get_meta("requests.next") == "42"


def test_meta_rolls_back(store):
    with store.transaction() as tx:
        tx.set_meta("k", "one")
    with pytest.raises(KeyError):
        with store.transaction() as tx:
            tx.set_meta("k", "two")
            raise KeyError
    assert store.get_meta("k") == "one"


# -- bulk load ----------------------------------------------------------------------

def load(store, rows, log=True):
    """rows of (dn, parent dn or None, attrs, index rows); ids and paths from the store."""
    known = {}
    with store.bulk() as tx:
        empty = tx.is_empty()
        next_id = tx.next_id()
        if empty:
            tx.defer_id_index()
        prepared = []
        for dn, parent_dn, attrs, index_rows in rows:
            ndn, rdn = ndn_of(dn), ndn_of(dn).split(",")[0]
            if parent_dn is None:
                parent_id, path = None, tx.child_path(None, rdn)
            else:
                parent_id, parent_path = known.get(ndn_of(parent_dn)) or tx.id_path(ndn_of(parent_dn))
                path = tx.child_path(parent_path, rdn)
            known[ndn] = (next_id, path)
            prepared.append((next_id, ndn, dn, parent_id, path, encode_attrs(attrs), index_rows))
            next_id += 1
        tx.insert_prepared(prepared)
        if empty:
            tx.build_id_index()
        if log:
            tx.log("cn=root", "load", "load", SUFFIX, None, {"entries": len(rows)})
    return empty, {ndn: v[0] for ndn, v in known.items()}


def test_bulk_load_into_an_empty_store(store):
    with store.bulk() as tx:
        assert tx.is_empty() and tx.next_id() >= 1
    empty, got = load(store, [
        (SUFFIX, None, {"o": [b"district"]}, [("o", "eq", "district")]),
        (f"ou=people,{SUFFIX}", SUFFIX, {"ou": [b"people"]}, [("ou", "eq", "people")]),
        (f"uid=a,ou=people,{SUFFIX}", f"ou=people,{SUFFIX}", {"uid": [b"a"], "cn": [b"alice adams"]},
         [("uid", "eq", "a"), ("cn", "sub", "alice adams")]),
    ])
    assert empty
    top, people, a = got[SUFFIX], got[f"ou=people,{SUFFIX}"], got[f"uid=a,ou=people,{SUFFIX}"]
    assert store.count() == 3
    assert store.get_by_ndn(f"uid=a,ou=people,{SUFFIX}").attrs == {"uid": [b"a"], "cn": [b"alice adams"]}
    assert store.children_ids(top) == [people] and store.subtree_ids(people) == sorted([people, a])
    assert store.index_eq("uid", "a") == [a]
    assert store.candidates(Substring("cn", None, ("adams",), None)) == [a]
    assert [r["op"] for r in store.changes()] == ["load"]
    with store.transaction() as tx:  # deleting (index rows by id) works after the load
        tx.delete(a)
    assert store.index_eq("uid", "a") == []


def test_bulk_load_into_a_store_with_entries(store, tree):
    with store.bulk() as tx:
        assert not tx.is_empty()
        assert tx.next_id() > max(e.id for e in tree.values())
        assert tx.id_path(tree["people"].ndn)[0] == tree["people"].id
        assert tx.id_path("ou=nowhere,o=district") is None
    empty, got = load(store, [(f"uid=new,{tree['people'].dn}", tree["people"].dn, {"uid": [b"new"]},
                               [("uid", "eq", "new")])])
    new = got[f"uid=new,{tree['people'].ndn}"]
    assert not empty
    assert new in store.subtree_ids(tree["people"].id) and new not in store.subtree_ids(tree["lookalike"].id)
    assert store.children_ids(tree["people"].id) == sorted([tree["jsmith"].id, tree["mgarcia"].id, new])
    assert store.get(tree["jsmith"].id).dn == tree["jsmith"].dn


def test_failed_bulk_load_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.bulk() as tx:
            tx.defer_id_index()
            tx.insert_prepared([(1, "o=x", "o=x", None, tx.child_path(None, "o=x"), encode_attrs({"o": [b"x"]}),
                                 [("o", "eq", "x")])])
            raise RuntimeError
    assert store.count() == 0 and store.index_eq("o", "x") == [] and store.changes() == []
    empty, _ = load(store, [("o=y", None, {"o": [b"y"]}, [("o", "eq", "y")])])
    assert empty and store.index_eq("o", "y") != []


def test_index_pairs_and_attr_json(store, tree):
    js, mg = tree["jsmith"], tree["mgarcia"]
    with store.bulk() as tx:
        assert sorted(tx.index_pairs("uid")) == sorted([("jsmith", js.id), ("mgarcia", mg.id)])
        assert tx.attr_json(js.ndn, "memberOf") == (js.id, None)
        assert tx.attr_json("uid=nobody,o=district", "memberOf") is None
        tx.set_attr_json("memberOf", [(js.id, json.dumps(["cn=g1", "cn=g2"])), (mg.id, json.dumps(["cn=g3"]))])
        got_id, text = tx.attr_json(js.ndn, "memberOf")
        assert (got_id, json.loads(text)) == (js.id, ["cn=g1", "cn=g2"])
    assert store.get(js.id).attrs == {"uid": [b"jsmith"], "cn": [b"john smith"], "memberOf": [b"cn=g1", b"cn=g2"]}
    with store.bulk() as tx:
        tx.set_attr_json("memberOf", [(mg.id, None)])  # removes the attribute
    assert "memberOf" not in store.get(mg.id).attrs and store.get(mg.id).attrs["uid"] == [b"mgarcia"]


# -- job lock (the nightly jobs) -------------------------------------------------------

def test_job_lock_one_holder_at_a_time(store, open_one):
    other = open_one()
    with store.job_lock("request-expire"):
        with pytest.raises(JobLocked):
            with other.job_lock("request-expire"):
                pass
        with other.job_lock("photos-publish"):  # another job: another lock
            pass
    with other.job_lock("request-expire"):  # released when the block ended
        pass


def test_schema_version_is_current(store):
    have, need = store.schema_version()
    assert have == need


# -- web console sessions ----------------------------------------------------------

def session_rec(t0, idle=600, **kw):
    return dict(dict(dn="uid=jsmith,ou=people,o=district", name="John Smith", uid="jsmith",
                     roles={"district_admin": False, "subadmin_sites": ["1234"]}, site_names={"1234": "Lincoln"},
                     csrf="c" * 43, must_change=False, pwd_stamp=[[["pwdchangedtime", ["2024"]]], "ab", False],
                     created=t0, last_seen=t0, idle=idle), **kw)


def test_session_save_load_round_trip(store):
    t0 = 1_000_000.0
    rec = session_rec(t0)
    store.session_save("k" * 64, rec)
    assert store.session_load("k" * 64, now=t0 + 1) == rec
    assert store.session_load("x" * 64, now=t0 + 1) is None
    # saved again (must_change cleared, roles re-read): replaced, not duplicated
    store.session_save("k" * 64, dict(rec, must_change=True, name="J. Smith"))
    got = store.session_load("k" * 64, now=t0 + 1)
    assert (got["must_change"], got["name"]) == (True, "J. Smith")


def test_session_is_live_while_touched_within_its_idle_time(store):
    t0 = 1_000_000.0
    store.session_save("k1", session_rec(t0, idle=60))
    assert store.session_load("k1", now=t0 + 60) is not None
    assert store.session_touch("k1", now=t0 + 50)
    assert store.session_load("k1", now=t0 + 100)["last_seen"] == t0 + 50
    assert store.session_load("k1", now=t0 + 111) is None          # idle too long
    assert not store.session_touch("k1", now=t0 + 111)             # an ended session is not revived
    assert store.session_load("k1", now=t0 + 50) is not None       # not deleted by looking


def test_session_delete_and_prune(store, open_one):
    t0 = 1_000_000.0
    store.session_save("gone", session_rec(t0))
    store.session_save("old", session_rec(t0, idle=10))
    store.session_save("live", session_rec(t0 + 100, idle=10))
    other = open_one()  # another process (or host) sees the same sessions
    assert other.session_load("gone", now=t0 + 1) is not None
    other.session_delete("gone")
    assert store.session_load("gone", now=t0 + 1) is None
    assert store.session_prune(now=t0 + 105) == 1                   # "old" only
    assert store.session_load("live", now=t0 + 105) is not None
    store.session_save("old", session_rec(t0 + 105, idle=10))       # its key may be used again
    assert store.session_load("old", now=t0 + 106) is not None
