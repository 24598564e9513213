"""Moving a district: `rollcall export` from a SQLite store, `rollcall load` into
PostgreSQL; then every search below gets the same answer (same entries, same
attributes and values, operational ones included) from both servers, and an export
from PostgreSQL gives the same LDIF back."""
import pytest
from ldap3 import BASE, LEVEL, SUBTREE

from tests.conftest import ROOT, ServerProcess
from tests.protocol.district import (GROUPS, PEOPLE, SCHEMA_FILES, SITES, STUDENTS, access_rules, bind,
                                     crowd_ldif, district_ldif, role_group)

SEARCHES = [
    (PEOPLE, SUBTREE, "(objectClass=*)"),
    (PEOPLE, LEVEL, "(objectClass=*)"),
    (STUDENTS, BASE, "(objectClass=*)"),
    (PEOPLE, SUBTREE, "(uid=s1)"),
    (PEOPLE, SUBTREE, "(uid=cr*)"),
    (PEOPLE, SUBTREE, "(cn=*udent cr0*)"),
    (PEOPLE, SUBTREE, "(mail=*@students.district.example)"),
    (PEOPLE, SUBTREE, "(&(departmentNumber=1111)(rollcallAccountStatus=ENABLED))"),
    (PEOPLE, SUBTREE, "(|(departmentNumber=2222)(departmentNumber=3333))"),
    (PEOPLE, SUBTREE, "(!(rollcallAccountStatus=ENABLED))"),
    (PEOPLE, SUBTREE, "(employeeNumber>=800010)"),
    (PEOPLE, SUBTREE, "(employeeNumber<=800005c999)"),
    (PEOPLE, SUBTREE, "(memberOf=%s)" % role_group("student-email-admins", "1111")),
    (SITES, SUBTREE, "(member=*)"),
    (GROUPS, SUBTREE, "(objectClass=*)"),
    (PEOPLE, SUBTREE, "(sn~=smith)"),
    (PEOPLE, SUBTREE, "(entryUUID=*)"),
]


def answers(srv):
    conn = bind(srv, "root")
    out = {}
    for base, scope, flt in SEARCHES:
        conn.search(base, flt, scope, attributes=["*", "+"])
        assert conn.result["result"] == 0, (flt, conn.result)
        out[(base, scope, flt)] = {
            e.entry_dn.lower(): {k.lower(): sorted(v if isinstance(v, list) else [v])
                                 for k, v in e.entry_raw_attributes.items()}
            for e in conn.entries}
    conn.unbind()
    return out


@pytest.fixture
def pg_config(pg_cluster):
    return {"backend": "postgresql", "conninfo": pg_cluster.create_database("move")}


def test_export_from_sqlite_then_load_into_postgresql_gives_the_same_answers(tmp_path, pg_config):
    extra = {"schema": [str(ROOT / "schema" / n) for n in SCHEMA_FILES], "access": access_rules(),
             "indexes": {"memberOf": ["eq"], "uniqueMember": ["eq"]}}
    ldif = district_ldif() + "\n" + crowd_ldif("cr", 40)
    (tmp_path / "lite").mkdir()
    lite = ServerProcess(tmp_path / "lite", extra_config=dict(extra, store={"backend": "sqlite",
                                                                           "path": "var/rollcall.db"}), ldif=ldif)
    exported = tmp_path / "district.ldif"
    lite.rollcall("export", "-o", str(exported))
    (tmp_path / "pg").mkdir()
    pg = ServerProcess(tmp_path / "pg", extra_config=dict(extra, store=pg_config), ldif=None)
    loaded = pg.rollcall("load", str(exported))
    assert "loaded" in loaded.stderr, loaded
    # and back: PostgreSQL's export holds the same entries, parents first
    back = tmp_path / "back.ldif"
    pg.rollcall("export", "-o", str(back))
    blocks = [b for b in exported.read_text().split("\n\n") if b.strip()]
    blocks_back = [b for b in back.read_text().split("\n\n") if b.strip()]
    assert sorted(blocks_back) == sorted(blocks)
    assert blocks_back[0].startswith("dn: dc=district,dc=example")
    lite.start()
    pg.start()
    try:
        got_lite, got_pg = answers(lite), answers(pg)
    finally:
        lite.stop()
        pg.stop()
    assert sum(len(v) for v in got_lite.values()) > 100  # the searches found something
    for key in SEARCHES:
        assert got_pg[key] == got_lite[key], key
