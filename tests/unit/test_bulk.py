"""Bulk load (`rollcall load`): what it stores must be what the add path stores, so
searches answer the same; and the quick LDIF reader must read what the general one does."""
import io
import sqlite3

import pytest

from directory.app import open_directory
from directory.config import load_config
from directory.core.bulk import BulkLoader, LoadError
from directory.core.directory import SCOPE_SUB, Identity, WriteOptions
from directory.ldif import LDIFError, records, records_in
from tests.conftest import BASE_LDIF, ROOT_DN, SUFFIX
from tests.unit.test_core import flt, write_config

PEOPLE = f"ou=people,{SUFFIX}"
STUDENTS = f"ou=students,{PEOPLE}"
GROUP = f"cn=club,ou=groups,{SUFFIX}"
OUTER = f"cn=outer,ou=groups,{SUFFIX}"  # nested: club is a member

# plain records (the quick path) and ones the general reader must take: a version
# line, comments, folded lines, base64, CRs; mixed-case names, objectClass orders
EXTRA_LDIF = f"""
dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: uid=zoe,{STUDENTS}
objectclass: top
objectclass: person
objectclass: organizationalPerson
objectclass: inetOrgPerson
UID: zoe
CN: Zoë Ångström
cn: Zoe Angstrom
sn: Ångström
mail: Zoe.Angstrom@District.Example
departmentNumber: 1234

# a comment between records
dn: uid=folded,{STUDENTS}
objectClass: inetOrgPerson
objectClass: person
uid: folded
cn: A Very Long Common Name That Is Folded Across
  Two Lines
sn:: Rm9sZGVk
# a comment inside a record
mail: folded@district.example
\r
dn: uid=crlf,{STUDENTS}\r
objectClass: inetOrgPerson\r
uid: crlf\r
cn: Carriage Return\r
sn: Return\r
\r
dn: {GROUP}
objectClass: groupOfNames
cn: club
member: uid=zoe,{STUDENTS}
member: uid=jsmith,{STUDENTS}

dn: {OUTER}
objectClass: groupOfNames
cn: outer
member: {GROUP}
member: uid=MGarcia,{STUDENTS}
member: uid=nobody,{STUDENTS}

dn: cn=unique,ou=groups,{SUFFIX}
objectClass: groupOfUniqueNames
cn: unique
uniqueMember: uid=zoe,{STUDENTS}#'0101'B
"""
LDIF = "version: 1\n" + BASE_LDIF + EXTRA_LDIF


def _open(path):
    path.mkdir(exist_ok=True)
    return open_directory(load_config(write_config(path)))


def _index(d):
    """Index rows by DN, and each entry's place in the tree."""
    conn = sqlite3.connect(d.store.path)
    try:
        eq = set(conn.execute("SELECT i.attr, i.key, e.ndn FROM idx i JOIN entries e ON e.id = i.id "
                              "WHERE i.attr != 'entryuuid'"))
        uuids = conn.execute("SELECT count(*) FROM idx WHERE attr = 'entryuuid'").fetchone()[0]
        sub = set(conn.execute("SELECT s.attr, s.key, e.ndn FROM idx_sub s JOIN entries e ON e.id = s.id "
                               "WHERE s.rowid / 1024 = s.id"))
        tree = set(conn.execute("SELECT e.ndn, e.dn, e.path, p.ndn FROM entries e "
                                "LEFT JOIN entries p ON p.id = e.parent"))
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()
    return eq, uuids, sub, tree, indexes


def _memberof(d):
    return {e.ndn: sorted(e.attrs.get("memberOf", [])) for e in d.export_entries()}


def _search(d, text):
    root = Identity(ROOT_DN, d.root_ndn, True)
    cursor = d.search(root, SUFFIX, SCOPE_SUB, flt(text), ["1.1"])
    out = set()
    while not cursor.done:
        out.update(dn for dn, _ in cursor.next_batch(50))
    return out


def test_bulk_load_stores_what_add_stores(tmp_path):
    bulk = _open(tmp_path / "bulk")
    with io.BytesIO(LDIF.encode()) as fh:
        assert BulkLoader(bulk, workers=1).load_ldif(fh, "extra.ldif") == 14
    added = _open(tmp_path / "added")
    root = Identity(ROOT_DN, added.root_ndn, True)
    for _, dn, attrs in records(io.BytesIO(LDIF.encode())):
        added.add(root, dn, {name: values for name, values in attrs})

    eq, uuids, sub, tree, indexes = _index(bulk)
    assert (eq, uuids, sub, tree) == _index(added)[:4]
    assert uuids == 14 and "idx_by_id" in indexes
    assert ("cn", "zoë ångström", f"uid=zoe,{STUDENTS}".lower()) in sub
    assert ("objectclass", "person", f"uid=crlf,{STUDENTS}".lower()) in eq

    for text, dns in [
        ("(uid=ZOE)", {f"uid=zoe,{STUDENTS}"}),
        ("(cn=*ångs*)", {f"uid=zoe,{STUDENTS}"}),
        ("(cn=*folded across two*)", {f"uid=folded,{STUDENTS}"}),
        ("(sn=return)", {f"uid=crlf,{STUDENTS}"}),
        ("(mail=zoe.angstrom@district.example)", {f"uid=zoe,{STUDENTS}"}),
        ("(departmentNumber=1234)", {f"uid=zoe,{STUDENTS}", f"uid=jsmith,{STUDENTS}", f"uid=mgarcia,{STUDENTS}"}),
        (f"(memberOf={GROUP})", {f"uid=zoe,{STUDENTS}", f"uid=jsmith,{STUDENTS}"}),
        (f"(memberOf={OUTER})", {f"uid=zoe,{STUDENTS}", f"uid=jsmith,{STUDENTS}", f"uid=mgarcia,{STUDENTS}", GROUP}),
        ("(objectClass=organizationalPerson)", {f"uid={u},{'ou=staff,' + PEOPLE if u == 'teacher1' else STUDENTS}"
                                                for u in ("jsmith", "mgarcia", "teacher1", "zoe", "folded", "crlf")}),
    ]:
        assert _search(bulk, text) == dns == _search(added, text), text
    assert len(_search(bulk, "(objectClass=*)")) == 14
    assert _memberof(bulk) == _memberof(added)
    assert _memberof(bulk)[f"uid=zoe,{STUDENTS}".lower()] == sorted([GROUP.encode(), OUTER.encode()])


def test_failed_bulk_load_leaves_the_store_as_it_was(tmp_path):
    d = _open(tmp_path)
    bad = LDIF + f"\ndn: uid=nosn,{STUDENTS}\nobjectClass: inetOrgPerson\nuid: nosn\ncn: No Sn\n"
    with pytest.raises(LoadError) as info:
        BulkLoader(d, workers=1).load_ldif(io.BytesIO(bad.encode()), "bad.ldif")
    assert info.value.line == bad.count("\n") - 3 and "nosn" in str(info.value)
    assert d.store.count() == 0
    assert {"idx_by_id", "entries_parent", "entries_path"} <= _index(d)[4]  # dropped during the load
    assert BulkLoader(d, workers=1).load_ldif(io.BytesIO(LDIF.encode())) == 14
    assert {"idx_by_id", "entries_parent", "entries_path"} <= _index(d)[4]  # and built at its end


@pytest.mark.parametrize("data", [
    b"", b"\n\n", b"dn: a=1\nx: 1", b"\n\ndn: a=1\nx: 1\n\n\n\ndn: a=2\nX:  2\nx:3\n\n",
    b"version: 1\ndn: a=1\nx: 1\n\ndn: b=1\ny:: Zm9v\n", b"dn: a=1\r\nx: 1\r\n\r\ndn: a=2\r\nx: 2\r\n",
    b"dn: a=1\nx: 1\n y\n\ndn: b=2\n", b"# c\ndn: a=1\n#x\nx: 1\n\ndn: a=2\nbad\n", b"dn: a=1\nchangetype: add\n",
    b"dn:: YT0x\nx: 1\n", b"x: 1\n", b"dn: \xff\nx: 1\n", b"dn: a=1\nx:<f\n", b"dn: a=1\n:x\n",
    b"dn: a=1\n\n dn: b\n", b"dn: a=1\nx: a#b\ncn: \xc3\xa9\n", b" dn: a\n", b"dn: a=1\nCN: 1\ncn: 2\n",
    b"dn: a=1\ncontrol: 1\n", b"DN : a=1\nx: 1\n",
])
def test_quick_ldif_reader_reads_as_the_general_one(data):
    def read(fn):
        try:
            return list(fn())
        except LDIFError as exc:
            return exc.line, exc.reason

    assert read(lambda: records_in(data, "s", 3)) == read(lambda: records(io.BytesIO(data), "s", 3))


def test_bulk_load_into_a_store_with_entries(tmp_path):
    d = _open(tmp_path)
    assert BulkLoader(d, workers=1).load_ldif(io.BytesIO(BASE_LDIF.encode())) == 7
    more = f"dn: uid=later,{STUDENTS}\nobjectClass: inetOrgPerson\nuid: later\ncn: Later Load\nsn: Later\n"
    with pytest.raises(LoadError) as info:  # jsmith is there already
        BulkLoader(d, workers=1).load_ldif(io.BytesIO((more + "\n" + BASE_LDIF.split("\n\n")[4]).encode()))
    assert info.value.line == 7 and "already exists" in info.value.reason
    assert d.store.count() == 7
    assert BulkLoader(d, workers=1).load_ldif(io.BytesIO(more.encode())) == 1
    assert _search(d, "(cn=*ter lo*)") == {f"uid=later,{STUDENTS}"}
    assert _search(d, "(uid=jsmith)") == {f"uid=jsmith,{STUDENTS}"}


def _groups_ldif(users=240, size=60, with_memberof=False):
    """Users in overlapping site groups, groups of groups (two levels), a cycle, a member
    named before it exists and one that never does; with_memberof: stale values given."""
    out = [f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n"]
    for i in range(users):
        stale = f"memberOf: cn=stale,ou=groups,{SUFFIX}\nmemberOf: cn=s0,ou=groups,{SUFFIX}\n" if with_memberof and i % 3 == 0 else ""
        out.append(f"dn: uid=u{i:04d},{STUDENTS}\nobjectClass: inetOrgPerson\nuid: u{i:04d}\n"
                   f"cn: User {i}\nsn: S{i}\n{stale}")
    sites = users // size + 1
    for g in range(sites):  # the last one wraps round: its members are in two groups
        members = "".join(f"member: uid=u{(g * size + j) % users:04d},{STUDENTS}\n" for j in range(size))
        out.append(f"dn: cn=s{g},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: s{g}\n{members}")
    out.append(f"dn: cn=even,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: even\n"
               + "".join(f"member: cn=s{g},ou=groups,{SUFFIX}\n" for g in range(0, sites, 2))
               + f"member: uid=late,{STUDENTS}\nmember: uid=never,{STUDENTS}\n")
    out.append(f"dn: cn=all,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: all\n"
               f"member: cn=even,ou=groups,{SUFFIX}\nmember: cn=s1,ou=groups,{SUFFIX}\n"
               f"member: cn=loop,ou=groups,{SUFFIX}\n")
    out.append(f"dn: cn=loop,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: loop\n"
               f"member: cn=all,ou=groups,{SUFFIX}\nmember: uid=u0001,{STUDENTS}\n")
    out.append(f"dn: uid=late,{STUDENTS}\nobjectClass: inetOrgPerson\nuid: late\ncn: Late\nsn: Late\n")
    return "\n".join(out)


def _add_all(d, text):
    root = Identity(ROOT_DN, d.root_ndn, True)
    for _, dn, attrs in records(io.BytesIO(text.encode())):
        d.add(root, dn, {name: values for name, values in attrs}, WriteOptions(relax=True))


def _check_same(bulk, added):
    assert _index(bulk)[:4] == _index(added)[:4]
    assert _memberof(bulk) == _memberof(added)
    for g in ("s0", "s1", "s4", "even", "all", "loop", "stale"):
        text = f"(memberOf=cn={g},ou=groups,{SUFFIX})"
        assert _search(bulk, text) == _search(added, text), text


@pytest.mark.parametrize("kinds", [["eq"], ["eq", "sub"], ["pres"]])
def test_bulk_memberof_of_large_nested_groups(tmp_path, kinds):
    extra = _groups_ldif()
    bulk, added = (_open_indexed(tmp_path / n, kinds) for n in ("bulk", "added"))
    loader = BulkLoader(bulk, workers=1)
    assert loader.load_ldif(io.BytesIO((BASE_LDIF + "\n" + extra).encode())) == 7 + 1 + 240 + 5 + 3 + 1
    _add_all(added, BASE_LDIF + "\n" + extra)
    _check_same(bulk, added)
    got = _memberof(bulk)
    u0 = f"uid=u0000,{STUDENTS}".lower()
    assert got[u0] == sorted(f"cn={g},ou=groups,{SUFFIX}".encode() for g in ("s0", "s4", "even", "all", "loop"))
    assert got[f"cn=all,ou=groups,{SUFFIX}"] == [f"cn=loop,ou=groups,{SUFFIX}".encode()]  # not itself
    assert got[f"cn=loop,ou=groups,{SUFFIX}"] == [f"cn=all,ou=groups,{SUFFIX}".encode()]
    assert got[f"uid=late,{STUDENTS}".lower()] == sorted(f"cn={g},ou=groups,{SUFFIX}".encode() for g in ("even", "all", "loop"))
    assert loader.memberof_stats[0] >= 240


def test_bulk_memberof_corrects_given_values_and_loads_into_a_store_with_entries(tmp_path):
    # an LDIF with memberOf (e.g. from export), loaded after the base entries in a first load
    extra = _groups_ldif(with_memberof=True)
    bulk, added = (_open_indexed(tmp_path / n, ["eq", "sub"]) for n in ("bulk", "added"))
    assert BulkLoader(bulk, workers=1).load_ldif(io.BytesIO(BASE_LDIF.encode())) == 7
    assert BulkLoader(bulk, workers=1).load_ldif(io.BytesIO(extra.encode())) == 1 + 240 + 5 + 3 + 1
    _add_all(added, BASE_LDIF + "\n" + extra)
    _check_same(bulk, added)
    assert _search(bulk, f"(memberOf=cn=stale,ou=groups,{SUFFIX})") == set()
    # a second bulk load naming entries already there: their memberOf follows
    more = (f"dn: cn=late,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: late\n"
            f"member: uid=u0003,{STUDENTS}\nmember: cn=s1,ou=groups,{SUFFIX}\n")
    assert BulkLoader(bulk, workers=1).load_ldif(io.BytesIO(more.encode())) == 1
    _add_all(added, more)
    _check_same(bulk, added)
    assert _search(bulk, f"(memberOf=cn=late,ou=groups,{SUFFIX})") >= {f"uid=u0003,{STUDENTS}", f"uid=u0060,{STUDENTS}"}


def test_failed_memberof_step_loads_nothing(tmp_path, monkeypatch):
    from directory.store.sqlite import Tx

    d = _open_indexed(tmp_path, ["eq"])

    def boom(self, name, rows):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Tx, "set_attr_json", boom)
    with pytest.raises(RuntimeError):
        BulkLoader(d, workers=1).load_ldif(io.BytesIO((BASE_LDIF + "\n" + _groups_ldif()).encode()))
    assert d.store.count() == 0
    assert "idx_by_id" in _index(d)[4]


def _open_indexed(path, memberof_kinds):
    path.mkdir(exist_ok=True)
    return open_directory(load_config(write_config(path, indexes={"memberOf": memberof_kinds})))


def test_worker_processes_load_what_one_process_loads(tmp_path):
    """Two workers, from a file they read themselves and from records handed to them,
    store what the writer alone stores (ids and entryUUIDs aside: the UUIDs are random)."""
    path = tmp_path / "extra.ldif"
    path.write_bytes(LDIF.encode())
    one = _open(tmp_path / "one")
    assert BulkLoader(one, workers=1).load_ldif(io.BytesIO(LDIF.encode())) == 14
    from_file = _open(tmp_path / "file")
    with open(path, "rb") as fh:
        assert BulkLoader(from_file, workers=2).load_ldif(fh, str(path)) == 14
    from_records = _open(tmp_path / "records")
    recs = list(records(io.BytesIO(LDIF.encode())))
    assert from_records.load_entries(recs, workers=2) == 14
    for d in (from_file, from_records):
        assert _index(d)[:4] == _index(one)[:4]
        assert _memberof(d) == _memberof(one)
        assert _search(d, "(cn=*ångs*)") == {f"uid=zoe,{STUDENTS}"}


def test_worker_error_is_reported_with_its_line(tmp_path):
    """A bad entry far into a file read by two workers: its line, nothing loaded, and
    the workers stop (the load returns)."""
    users = "".join(f"dn: uid=w{i},{STUDENTS}\nobjectClass: inetOrgPerson\nuid: w{i}\ncn: W {i}\nsn: W\n\n"
                    for i in range(6000))
    bad = f"dn: uid=nosn,{STUDENTS}\nobjectClass: inetOrgPerson\nuid: nosn\ncn: No Sn\n\n"
    text = BASE_LDIF + "\n" + users + bad + users.replace("uid=w", "uid=x").replace("uid: w", "uid: x")
    path = tmp_path / "bad.ldif"
    path.write_text(text)
    d = _open(tmp_path / "d")
    with pytest.raises(LoadError) as info, open(path, "rb") as fh:
        BulkLoader(d, workers=2).load_ldif(fh, str(path))
    assert info.value.line == text[:text.index(bad)].count("\n") + 1 and "nosn" in str(info.value)
    assert d.store.count() == 0
