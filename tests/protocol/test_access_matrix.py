"""The access-control matrix of config.yaml's `access:` rules, over the wire with ldap3:
one connection per role (bound as that role, and anonymous), every (role, target,
operation) cell asserted, denials included. Then the rules around the matrix: filters
on unreadable attributes, site codes an administrator may not assign, principals
managing their site's role groups, a disabled administrator on an open connection,
and the OpenLDAP command-line client seeing what the rules allow."""
import re

import pytest
from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, SUBTREE

from tests.conftest import SUFFIX, requires_ldap_utils
from tests.protocol import ldaputil
from tests.protocol.district import (
    PEOPLE, STUDENTS, STUDENT_DATA, bind, dn_of, make_server, password, role_group, staff, student,
)

SUCCESS, COMPARE_TRUE = 0, 6
INVALID_CREDENTIALS, INSUFFICIENT_ACCESS, NO_SUCH_OBJECT, UNWILLING = 49, 50, 32, 53

TARGETS = ["s1", "s2", "s12", "s3"]
OPS = ["search", "mail", "password", "compare", "write", "reset"]
ROLES = ["admin1", "admin12", "adminnone", "sso-portal", "sis-sync", "s1", "distadmin", "anonymous"]

# The expected matrix, read off config.yaml's rules (first match wins, default deny):
#   userPassword: district-admins manage, student-email-admins of the student's site
#                 write, self write, anonymous auth, * none; hashes readable only with manage
#   students:     sis-sync write, district-admins manage, student-email-admins of the
#                 student's site write, principals/photo-designees read, services read,
#                 self read, * none
# s1 = 1111, s2 = 2222, s12 = 1111 + 2222, s3 = 3333. admin1 administers 1111,
# admin12 1111 and 2222. Columns:
#   search   the entry is returned by a subtree search of ou=people for (uid=…)
#   mail     mail is returned with it
#   password userPassword is returned with it (manage only)
#   compare  compare uid succeeds (compareTrue)
#   write    modify/replace description succeeds
#   reset    Password Modify with no new password succeeds and returns a generated one
#            (write on userPassword: sis-sync has no clause in the secrets rule, so none;
#            a student may change their own password: 'self write')
MATRIX_TEXT = """
role         op        s1  s2  s12  s3
admin1       search    Y   N   Y    N
admin1       mail      Y   N   Y    N
admin1       password  N   N   N    N
admin1       compare   Y   N   Y    N
admin1       write     Y   N   Y    N
admin1       reset     Y   N   Y    N
admin12      search    Y   Y   Y    N
admin12      mail      Y   Y   Y    N
admin12      password  N   N   N    N
admin12      compare   Y   Y   Y    N
admin12      write     Y   Y   Y    N
admin12      reset     Y   Y   Y    N
adminnone    search    N   N   N    N
adminnone    mail      N   N   N    N
adminnone    password  N   N   N    N
adminnone    compare   N   N   N    N
adminnone    write     N   N   N    N
adminnone    reset     N   N   N    N
sso-portal   search    Y   Y   Y    Y
sso-portal   mail      Y   Y   Y    Y
sso-portal   password  N   N   N    N
sso-portal   compare   Y   Y   Y    Y
sso-portal   write     N   N   N    N
sso-portal   reset     N   N   N    N
sis-sync     search    Y   Y   Y    Y
sis-sync     mail      Y   Y   Y    Y
sis-sync     password  N   N   N    N
sis-sync     compare   Y   Y   Y    Y
sis-sync     write     Y   Y   Y    Y
sis-sync     reset     N   N   N    N
s1           search    Y   N   N    N
s1           mail      Y   N   N    N
s1           password  N   N   N    N
s1           compare   Y   N   N    N
s1           write     N   N   N    N
s1           reset     Y   N   N    N
distadmin    search    Y   Y   Y    Y
distadmin    mail      Y   Y   Y    Y
distadmin    password  Y   Y   Y    Y
distadmin    compare   Y   Y   Y    Y
distadmin    write     Y   Y   Y    Y
distadmin    reset     Y   Y   Y    Y
anonymous    search    N   N   N    N
anonymous    mail      N   N   N    N
anonymous    password  N   N   N    N
anonymous    compare   N   N   N    N
anonymous    write     N   N   N    N
anonymous    reset     N   N   N    N
"""


def _parse_matrix(text):
    lines = [line.split() for line in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    targets = header[2:]
    out = {}
    for role, op, *cells in rows:
        assert len(cells) == len(targets), role
        for target, cell in zip(targets, cells):
            out[(role, target, op)] = {"Y": True, "N": False}[cell]
    return out


EXPECTED = _parse_matrix(MATRIX_TEXT)
assert len(EXPECTED) == len(ROLES) * len(TARGETS) * len(OPS)


def expected(role, target, op):
    return EXPECTED[(role, target, op)]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("acl"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def root(srv):
    conn = bind(srv, "root")
    assert conn.bound, conn.result
    yield conn
    conn.unbind()


@pytest.fixture(scope="module")
def conns(srv):
    """One open connection per role, all bound before any test writes anything."""
    out = {}
    for role in ROLES + ["admindis"]:
        conn = bind(srv, None if role == "anonymous" else role)
        assert conn.result["result"] == SUCCESS, (role, conn.result)
        out[role] = conn
    yield out
    for conn in out.values():
        conn.unbind()


# ----------------------------------------------------------------------------- probes


def find(conn, uid, attrs=("uid", "mail", "userPassword")):
    """Subtree search of ou=people for (uid=…): (result code, {attr: values} or None)."""
    conn.search(PEOPLE, f"(uid={uid})", SUBTREE, attributes=list(attrs))
    entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    assert len(entries) <= 1
    found = {k.lower(): v for k, v in entries[0]["raw_attributes"].items() if v} if entries else None
    return conn.result["result"], found


def search_code(role):
    # ou=people itself is readable by signed-in users only ('users read'); anonymous
    # cannot even see the search base, and is told it does not exist
    return NO_SUCH_OBJECT if role == "anonymous" else SUCCESS


def denial(role, target):
    """What a refused write/compare says: an entry the caller may not see does not
    exist for them (noSuchObject, like slapd without 'disclose'); one they may see
    but not change is insufficientAccessRights."""
    return INSUFFICIENT_ACCESS if expected(role, target, "search") else NO_SUCH_OBJECT


def probe_search(conn, role, target):
    code, found = find(conn, target)
    assert code == search_code(role), conn.result
    return found


def do_compare(conn, target):
    ok = conn.compare(student(target), "uid", target)
    return ok, conn.result


def do_write(conn, role, target):
    ok = conn.modify(student(target), {"description": [(MODIFY_REPLACE, [f"written by {role}"])]})
    return ok, conn.result


def do_reset(conn, target):
    got = conn.extend.standard.modify_password(student(target), None, None)
    return got, conn.result


def stored(root, dn, attrs):
    root.search(dn, "(objectClass=*)", BASE, attributes=attrs)
    assert root.result["result"] == SUCCESS, root.result
    return {k.lower(): v for k, v in root.response[0]["raw_attributes"].items() if v}


# ----------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("role", ROLES)
def test_visible_in_subtree_search(conns, role):
    seen = {t: probe_search(conns[role], role, t) is not None for t in TARGETS}
    assert seen == {t: expected(role, t, "search") for t in TARGETS}


@pytest.mark.parametrize("role", ROLES)
def test_mail_readable(conns, role):
    got = {}
    for t in TARGETS:
        found = probe_search(conns[role], role, t)
        got[t] = bool(found and found.get("mail"))
        if found and found.get("mail"):
            assert found["mail"] == [f"{t}@students.district.example".encode()]
    assert got == {t: expected(role, t, "mail") for t in TARGETS}


@pytest.mark.parametrize("role", ROLES)
def test_user_password_readable(conns, root, role):
    got = {}
    for t in TARGETS:
        found = probe_search(conns[role], role, t)
        got[t] = bool(found and found.get("userpassword"))
        if got[t]:  # the hash as stored, never the password
            assert found["userpassword"] == stored(root, student(t), ["userPassword"])["userpassword"]
            assert found["userpassword"][0].startswith(b"{ARGON2}")
    assert got == {t: expected(role, t, "password") for t in TARGETS}


@pytest.mark.parametrize("role", ROLES)
def test_compare_uid(conns, role):
    got = {}
    for t in TARGETS:
        ok, result = do_compare(conns[role], t)
        got[t] = result["result"] == COMPARE_TRUE
        if got[t]:
            assert ok is True
        else:
            assert result["result"] == denial(role, t), (t, result)
    assert got == {t: expected(role, t, "compare") for t in TARGETS}


@pytest.mark.parametrize("role", ROLES)
def test_write_description(conns, root, role):
    got = {}
    for t in TARGETS:
        before = stored(root, student(t), ["description"])["description"]
        ok, result = do_write(conns[role], role, t)
        got[t] = result["result"] == SUCCESS
        after = stored(root, student(t), ["description"])["description"]
        if got[t]:
            assert after == [f"written by {role}".encode()]
        else:
            assert result["result"] == denial(role, t), (t, result)
            assert after == before
    assert got == {t: expected(role, t, "write") for t in TARGETS}


@pytest.mark.parametrize("role", ROLES)
def test_password_reset(srv, conns, root, role):
    got = {}
    for t in TARGETS:
        before = stored(root, student(t), ["userPassword"])["userpassword"]
        generated, result = do_reset(conns[role], t)
        got[t] = result["result"] == SUCCESS
        after = stored(root, student(t), ["userPassword", "pwdReset"])
        if got[t]:
            assert isinstance(generated, str) and len(generated) >= 12, generated
            assert after["userpassword"] != before
            # the generated password really is the new one
            check = bind(srv, t, generated)
            assert check.result["result"] == SUCCESS, check.result
            check.unbind()
            if role == t:  # a user's own change is not an administrator's reset
                assert "pwdreset" not in after
            else:
                assert after["pwdreset"] == [b"TRUE"]
        else:
            assert generated is False
            if role == "anonymous":
                # RFC 3062 servers answer anonymous requests like slapd does
                assert result["result"] == UNWILLING, result
                assert "authenticated" in result["message"]
            else:
                assert result["result"] == denial(role, t), (t, result)
            assert after["userpassword"] == before
    assert got == {t: expected(role, t, "reset") for t in TARGETS}


def test_reset_refused_for_disabled_and_pending(conns, root):
    for uid in ("sD", "sP"):
        status = STUDENT_DATA[uid][1]
        before = stored(root, student(uid), ["userPassword"])["userpassword"]
        got = conns["admin1"].extend.standard.modify_password(student(uid), None, None)
        result = conns["admin1"].result
        assert got is False
        assert result["result"] == UNWILLING, result
        assert re.search(r"only an? ENABLED account", result["message"]), result["message"]
        assert status in result["message"]
        assert stored(root, student(uid), ["userPassword"])["userpassword"] == before


# ----------------------------------------------------------------------------- a disabled administrator


def test_disabled_admin_loses_rights_on_the_open_connection(srv, conns, root):
    conn = conns["admindis"]
    # while ENABLED, admindis is a student-email-admin of 1111 like admin1
    assert probe_search(conn, "admindis", "s1") is not None
    assert conn.compare(student("s12"), "uid", "s12") is True

    assert root.modify(staff("admindis"), {"rollcallAccountStatus": [(MODIFY_REPLACE, ["DISABLED"])]}), root.result

    # the same connection, still open and bound: every cell of its row is now denied
    for t in TARGETS:
        # like an anonymous client, it cannot even see the search base ou=people
        assert probe_search(conn, "anonymous", t) is None, t
        conn.compare(student(t), "uid", t)
        assert conn.result["result"] == NO_SUCH_OBJECT, (t, conn.result)
        before = stored(root, student(t), ["description", "userPassword"])
        conn.modify(student(t), {"description": [(MODIFY_REPLACE, ["by a disabled admin"])]})
        assert conn.result["result"] == NO_SUCH_OBJECT, (t, conn.result)
        assert conn.extend.standard.modify_password(student(t), None, None) is False
        assert conn.result["result"] == NO_SUCH_OBJECT, (t, conn.result)
        assert stored(root, student(t), ["description", "userPassword"]) == before
    # nor what every signed-in user has ('users read' of staff, sites, groups; 'self
    # write' of its own password): the account is treated like an anonymous client
    conn.search(SUFFIX, "(objectClass=*)", SUBTREE, attributes=["cn"])
    assert conn.result["result"] == NO_SUCH_OBJECT, conn.result
    assert not [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    conn.search(PEOPLE, "(uid=admin1)", SUBTREE, attributes=["cn"])
    assert not [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    before = stored(root, staff("admindis"), ["userPassword"])
    assert conn.extend.standard.modify_password(None, None, "Another-pass-2025") is False
    assert conn.result["result"] in (INSUFFICIENT_ACCESS, NO_SUCH_OBJECT), conn.result
    assert stored(root, staff("admindis"), ["userPassword"]) == before

    # and a new bind with the right password is refused like a wrong password
    again = bind(srv, "admindis")
    assert again.result["result"] == INVALID_CREDENTIALS, again.result
    wrong = bind(srv, "admindis", "not-the-password")
    assert wrong.result["result"] == INVALID_CREDENTIALS
    assert again.result["message"] == wrong.result["message"]
    again.unbind()
    wrong.unbind()


# ----------------------------------------------------------------------------- around the matrix


def test_filter_on_unreadable_attribute_does_not_leak(conns, root):
    admin1, distadmin = conns["admin1"], conns["distadmin"]
    h = stored(root, student("s1"), ["userPassword"])["userpassword"][0].decode()
    probes = ["(userPassword=*)", f"(&(uid=s1)(userPassword={h}))", "(|(uid=nobody)(userPassword=*))",
              "(&(uid=s1)(userPassword=*))", "(userPassword={ARGON2}*)"]
    for flt in probes:
        assert admin1.search(PEOPLE, flt, SUBTREE, attributes=["uid"]) is False, flt
        assert admin1.result["result"] == SUCCESS, (flt, admin1.result)
        assert not [e for e in admin1.response if e.get("type") == "searchResEntry"], flt
    # the same filters do match for someone allowed to read the hashes
    distadmin.search(PEOPLE, f"(&(uid=s1)(userPassword={h}))", SUBTREE, attributes=["uid"])
    assert [e["dn"] for e in distadmin.response if e.get("type") == "searchResEntry"] == [student("s1")]
    distadmin.search(STUDENTS, "(&(uid=s*)(userPassword=*))", SUBTREE, attributes=["uid"])
    assert distadmin.result["result"] == SUCCESS
    assert len([e for e in distadmin.response if e.get("type") == "searchResEntry"]) >= 4


def test_root_dse_readable_anonymously(conns):
    anon = conns["anonymous"]
    assert anon.search("", "(objectClass=*)", BASE, attributes=["namingContexts", "supportedExtension",
                                                                "supportedLDAPVersion"])
    attrs = anon.response[0]["raw_attributes"]
    assert attrs["namingContexts"] == [SUFFIX.encode()]
    assert b"1.3.6.1.4.1.4203.1.11.1" in attrs["supportedExtension"]  # Password Modify
    assert attrs["supportedLDAPVersion"] == [b"3"]


def test_admin_cannot_move_student_to_a_school_they_do_not_administer(conns, root):
    admin1, admin12 = conns["admin1"], conns["admin12"]
    s1 = student("s1")
    # replace 1111 by 3333: the student would leave admin1's school for one admin1 does not run
    admin1.modify(s1, {"departmentNumber": [(MODIFY_REPLACE, ["3333"])]})
    assert admin1.result["result"] == INSUFFICIENT_ACCESS, admin1.result
    assert stored(root, s1, ["departmentNumber"])["departmentnumber"] == [b"1111"]
    # add 2222 next to 1111: admin1 is not an administrator of 2222 either
    admin1.modify(s1, {"departmentNumber": [(MODIFY_ADD, ["2222"])]})
    assert admin1.result["result"] == INSUFFICIENT_ACCESS, admin1.result
    assert stored(root, s1, ["departmentNumber"])["departmentnumber"] == [b"1111"]
    # nor take s12 out of 2222 (admin1 only runs 1111)
    admin1.modify(student("s12"), {"departmentNumber": [(MODIFY_DELETE, ["2222"])]})
    assert admin1.result["result"] == INSUFFICIENT_ACCESS, admin1.result
    assert sorted(stored(root, student("s12"), ["departmentNumber"])["departmentnumber"]) == [b"1111", b"2222"]
    # even admin12, who runs both schools, does not move students between them: a
    # student's schools are the SIS's (the sync writes departmentNumber), not a
    # sub-administrator's
    for op, code in ((MODIFY_ADD, "2222"), (MODIFY_ADD, "3333"), (MODIFY_REPLACE, "2222")):
        admin12.modify(s1, {"departmentNumber": [(op, [code])]})
        assert admin12.result["result"] == INSUFFICIENT_ACCESS, admin12.result
        assert stored(root, s1, ["departmentNumber"])["departmentnumber"] == [b"1111"]
    # an unrelated change by admin1 to the same student still works
    assert admin1.modify(s1, {"description": [(MODIFY_REPLACE, ["still admin1's student"])]}), admin1.result


def test_principal_manages_only_their_sites_role_groups(srv, root):
    principal = bind(srv, "principal1")
    newcomer = dn_of("nevalid")
    g1111, g2222 = role_group("student-email-admins", "1111"), role_group("student-email-admins", "2222")
    try:
        assert principal.modify(g1111, {"member": [(MODIFY_ADD, [newcomer])]}), principal.result
        assert newcomer.lower() in [v.decode().lower() for v in stored(root, g1111, ["member"])["member"]]
        assert g1111.encode() in stored(root, newcomer, ["memberOf"])["memberof"]

        principal.modify(g2222, {"member": [(MODIFY_ADD, [newcomer])]})
        assert principal.result["result"] == INSUFFICIENT_ACCESS, principal.result
        assert newcomer.encode() not in stored(root, g2222, ["member"])["member"]
        # nor its own principals group at another site
        principal.modify(role_group("principals", "2222"), {"member": [(MODIFY_ADD, [staff("principal1")])]})
        assert principal.result["result"] == INSUFFICIENT_ACCESS, principal.result

        assert principal.modify(g1111, {"member": [(MODIFY_DELETE, [newcomer])]}), principal.result
        assert "memberof" not in stored(root, newcomer, ["memberOf"])
    finally:
        principal.unbind()


@requires_ldap_utils
def test_ldapsearch_as_site_admin_shows_only_that_sites_students(srv):
    out = ldaputil.ok(ldaputil.search(srv, "-b", STUDENTS, "(objectClass=inetOrgPerson)", "uid", "departmentNumber",
                                      bind=("-D", staff("admin1"), "-w", password("admin1"))))
    got = ldaputil.entries(out)
    want = {student(uid) for uid, (codes, _) in STUDENT_DATA.items() if "1111" in codes}
    assert set(got) == want
    for attrs in got.values():
        assert "1111" in attrs["departmentNumber"]
    # the same search as admin12 also shows 2222's; as adminnone nothing at all
    out = ldaputil.ok(ldaputil.search(srv, "-b", STUDENTS, "(objectClass=inetOrgPerson)", "uid",
                                      bind=("-D", staff("admin12"), "-w", password("admin12"))))
    assert set(ldaputil.dns(out)) == want | {student("s2")}
    r = ldaputil.search(srv, "-b", STUDENTS, "(objectClass=inetOrgPerson)", "uid",
                        bind=("-D", staff("adminnone"), "-w", password("adminnone")))
    assert ldaputil.dns(r.stdout) == []
