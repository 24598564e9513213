"""POSIX accounts and site groups (issue 20, item 1; RFC 2307bis): with posix.enabled
and schema/optional/rfc2307bis.schema, a server process gives each person added below
ou=people a uidNumber from the configured range, the default gidNumber, a home and a
shell, and each groupOfNames added below ou=sites a posixGroup gidNumber; numbers are
given once, never reused after a delete, survive a restart, and only the root DN may
set or change them. Through real clients (ldap3; ldapsearch as SSSD asks)."""
import subprocess

import pytest
from ldap3 import MODIFY_REPLACE, SUBTREE

from tests.conftest import ROOT, requires_ldap_utils
from tests.protocol.district import (
    SCHEMA_FILES, STUDENTS, bind, dn_of, make_server, password, site, staff, student,
)

POSIX = {"enabled": True, "uid_min": 20000, "uid_max": 20004, "gid_min": 30000, "gid_max": 30999,
         "default_gid": 100, "home": "/home/{uid}", "shell": "/bin/bash"}
SCHEMA = [str(ROOT / "schema" / ("optional/rfc2307bis.schema" if n == "nis.schema" else n)) for n in SCHEMA_FILES]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("posix"), extra={"schema": SCHEMA, "posix": POSIX})
    yield srv
    srv.stop()


def new_student(uid, i):
    return {"objectClass": ["inetOrgPerson", "rollcallAccount", "rollcallStudent"], "uid": uid,
            "cn": f"Student {uid}", "givenName": "Student", "sn": uid, "mail": f"{uid}@students.district.example",
            "employeeNumber": f"7000{i:02d}x{i:03d}", "departmentNumber": "1111",
            "rollcallAccountStatus": "ENABLED", "rollcallGrade": "05", "userPassword": password(uid)}


def read(conn, dn, attrs=("objectClass", "uidNumber", "gidNumber", "homeDirectory", "loginShell")):
    assert conn.search(dn, "(objectClass=*)", "BASE", attributes=list(attrs)), conn.result
    return {k: [v.decode() for v in vs] for k, vs in conn.response[0]["raw_attributes"].items() if vs}


def add(conn, dn, attrs):
    conn.add(dn, attributes=attrs)
    return conn.result["result"], conn.result["message"]


def test_accounts_get_numbers_once(srv):
    sync, root = bind(srv, "sis-sync"), bind(srv, "root")
    assert add(sync, student("px1"), new_student("px1", 1))[0] == 0
    assert add(bind(srv, "distadmin"), student("px2"), new_student("px2", 2))[0] == 0
    a, b = read(root, student("px1")), read(root, student("px2"))
    assert a["uidNumber"] == ["20000"] and b["uidNumber"] == ["20001"]
    assert a["gidNumber"] == ["100"] and a["homeDirectory"] == ["/home/px1"] and a["loginShell"] == ["/bin/bash"]
    assert "posixAccount" in a["objectClass"]
    # deleted, its number is never given again
    root.delete(student("px2"))
    assert root.result["result"] == 0
    assert add(sync, student("px3"), new_student("px3", 3))[0] == 0
    assert read(root, student("px3"))["uidNumber"] == ["20002"]
    # a restart keeps the counter (the store's meta)
    srv.stop()
    srv.start()
    sync = bind(srv, "sis-sync")
    assert add(sync, student("px4"), new_student("px4", 4))[0] == 0
    assert read(bind(srv, "root"), student("px4"))["uidNumber"] == ["20003"]


def test_numbers_are_the_servers(srv):
    admin = bind(srv, "distadmin")
    code, msg = add(admin, student("px9"), dict(new_student("px9", 9), uidNumber="0", gidNumber="0",
                                                 homeDirectory="/root", objectClass=["inetOrgPerson", "rollcallAccount",
                                                                                     "rollcallStudent", "posixAccount"]))
    assert code == 19 and "allocated by the server" in msg, msg
    admin.modify(student("px1"), {"uidNumber": [(MODIFY_REPLACE, ["0"])]})
    assert admin.result["result"] == 19, admin.result
    admin.modify(student("px1"), {"loginShell": [(MODIFY_REPLACE, ["/bin/zsh"])]})
    assert admin.result["result"] == 0, admin.result  # the shell may change
    # the root DN may set numbers (a migration keeps a lab's numbers)
    root = bind(srv, "root")
    assert add(root, student("pxm"), dict(new_student("pxm", 11), uidNumber="5001", gidNumber="5001",
                                          homeDirectory="/home/pxm", objectClass=["inetOrgPerson", "rollcallAccount",
                                                                                  "rollcallStudent", "posixAccount"]))[0] == 0
    assert read(root, student("pxm"))["uidNumber"] == ["5001"]


def test_range_exhausted_is_refused_cleanly(srv):
    sync = bind(srv, "sis-sync")
    results = [add(sync, student(f"pz{i}"), new_student(f"pz{i}", 20 + i)) for i in range(3)]
    # 20000..20004: 20004 is the last; then unwillingToPerform, never a server error
    assert [r[0] for r in results][:1] == [0] and results[-1][0] == 53, results
    assert "no uidNumber left" in results[-1][1]


def test_site_groups_get_a_stable_gid(srv):
    root, admin = bind(srv, "root"), bind(srv, "distadmin")
    dn = f"cn=lab-users,{site('1111')}"
    code, msg = add(admin, dn, {"objectClass": ["groupOfNames"], "cn": "lab-users",
                                "member": [student("px1"), staff("teach1")]})
    assert code == 0, msg
    got = read(root, dn)
    assert "posixGroup" in got["objectClass"] and got["gidNumber"] == ["30000"]
    admin.modify(dn, {"gidNumber": [(MODIFY_REPLACE, ["30001"])]})
    assert admin.result["result"] == 19
    admin.modify(dn, {"description": [(MODIFY_REPLACE, ["Linux lab"])]})
    assert admin.result["result"] == 0
    assert read(root, dn)["gidNumber"] == ["30000"]


@requires_ldap_utils
def test_sssd_style_lookups(srv):
    """What SSSD's rfc2307bis mode asks, as the SSO service account."""
    def search(flt, *attrs):
        out = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", srv.url, "-D", dn_of("sso-portal"),
                              "-w", password("sso-portal"), "-b", "dc=district,dc=example", flt, *attrs],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    out = search("(&(objectClass=posixAccount)(uid=px1))", "uidNumber", "gidNumber", "homeDirectory", "loginShell")
    assert "uidNumber: 20000" in out and "homeDirectory: /home/px1" in out, out
    out = search("(&(objectClass=posixGroup)(member=" + student("px1") + "))", "gidNumber", "cn")
    assert "gidNumber: 30000" in out and "cn: lab-users" in out, out
    out = search("(&(objectClass=posixAccount)(uidNumber=20000))", "uid")
    assert "uid: px1" in out, out


def test_posix_assign_numbers_a_loaded_district(tmp_path):
    """`rollcall load` runs no overlay (like slapadd): `rollcall posix-assign`, beside
    the running server, numbers the loaded people and site groups, oldest first, once."""
    srv = make_server(tmp_path, extra={"schema": SCHEMA, "posix": dict(POSIX, uid_min=40000, uid_max=49999)})
    try:
        root = bind(srv, "root")
        assert "uidNumber" not in read(root, student("s1"))
        r = srv.rollcall("posix-assign")
        assert "site groups numbered" in r.stderr, r.stderr
        s1, t1 = read(root, student("s1")), read(root, staff("teach1"))
        assert int(s1["uidNumber"][0]) >= 40000 and s1["homeDirectory"] == ["/home/s1"]
        assert s1["uidNumber"] != t1["uidNumber"] and "posixAccount" in t1["objectClass"]
        group = read(root, f"cn=principals,{site('1111')}")
        assert "posixGroup" in group["objectClass"] and int(group["gidNumber"][0]) >= 30000
        # a second run changes nothing
        r = srv.rollcall("posix-assign")
        assert "posix: 0 accounts and 0 site groups numbered" in r.stderr, r.stderr
        assert read(root, student("s1"))["uidNumber"] == s1["uidNumber"]
        # the sync's next account continues after them
        sync = bind(srv, "sis-sync")
        assert add(sync, student("pn1"), new_student("pn1", 31))[0] == 0
        numbers = [int(e["raw_attributes"]["uidNumber"][0]) for e in root.extend.standard.paged_search(
            STUDENTS, "(objectClass=posixAccount)", SUBTREE, attributes=["uidNumber"], generator=False)]
        assert len(numbers) == len(set(numbers))
        assert int(read(root, student("pn1"))["uidNumber"][0]) == max(numbers)
    finally:
        srv.stop()
