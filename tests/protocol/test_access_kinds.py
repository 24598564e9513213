"""Every role × every kind of target entry × every operation, over the wire with the
real config.yaml rules — the matrix that would have caught a school's sub-administrator
resetting its principal's password (the first rule of the policy gave
`site-group=student-email-admins write` on userPassword with no `dn:` limit, so it
reached every entry whose departmentNumber is the school's: staff, contractors).

Each writing cell gets a fresh target made by the root DN (school 1111, like the
acting roles), so the cells are independent; each cell asserts the result code and
that the stored entry changed exactly when the operation succeeded. Then the
reproductions of the security review's privilege-escalation findings, with the
OpenLDAP command-line tools where the finding used them."""
import itertools

import pytest
import yaml
from ldap3 import BASE, MODIFY_ADD, MODIFY_REPLACE

from directory import admin
from tests.conftest import SUFFIX, requires_ldap_utils
from tests.protocol import ldaputil
from tests.protocol.district import (
    NONEMP, SERVICES, STAFF, STUDENTS, bind, dn_of, make_server, password, role_group, site, staff, student,
)
from tests.protocol.test_ldap3 import ASSERTION, encode_filter

SUCCESS, COMPARE_TRUE = 0, 6
INSUFFICIENT_ACCESS, NO_SUCH_OBJECT, UNWILLING = 50, 32, 53

ROLES = ["admin1", "principal1", "teach1", "s1", "nevalid", "sso-portal", "sis-sync", "distadmin", "anonymous"]
KINDS = ["student", "staff", "contractor", "service", "sitegroup"]
OPS = ["read", "compare", "modify", "passwd", "modrdn", "delete", "add"]

# Read off config.yaml (first match wins, default deny). The acting roles and the
# targets are all of school 1111. admin1 is 1111's student-email sub-administrator,
# principal1 its principal, teach1 a teacher there, s1 a student, nevalid a contractor.
#   student   sis-sync write; district admins manage; the school's sub-admins write the
#             status fields, description and (secrets rule) the password, read the rest;
#             principals and services read; deleting/renaming/adding needs write on
#             ou=students' children: the sync and district admins only
#   staff, contractor   sync write, district admins manage, every signed-in user reads;
#             passwords: district admins and self only (the fix)
#   service   district admins only
#   sitegroup (a role group under ou=1111) district admins manage, principals of 1111
#             write its attributes, signed-in users read; adding/removing/renaming a
#             group is a change of ou=1111's children: district admins only
MATRIX_TEXT = """
kind        op       admin1 principal1 teach1 s1 nevalid sso-portal sis-sync distadmin anonymous
student     read     Y      Y          N      N  N       Y          Y        Y         N
student     compare  Y      Y          N      N  N       Y          Y        Y         N
student     modify   Y      N          N      N  N       N          Y        Y         N
student     passwd   Y      N          N      N  N       N          N        Y         N
student     modrdn   N      N          N      N  N       N          Y        Y         N
student     delete   N      N          N      N  N       N          Y        Y         N
student     add      N      N          N      N  N       N          Y        Y         N
staff       read     Y      Y          Y      Y  Y       Y          Y        Y         N
staff       compare  Y      Y          Y      Y  Y       Y          Y        Y         N
staff       modify   N      N          N      N  N       N          Y        Y         N
staff       passwd   N      N          N      N  N       N          N        Y         N
staff       modrdn   N      N          N      N  N       N          Y        Y         N
staff       delete   N      N          N      N  N       N          Y        Y         N
staff       add      N      N          N      N  N       N          Y        Y         N
contractor  read     Y      Y          Y      Y  Y       Y          Y        Y         N
contractor  compare  Y      Y          Y      Y  Y       Y          Y        Y         N
contractor  modify   N      N          N      N  N       N          Y        Y         N
contractor  passwd   N      N          N      N  N       N          N        Y         N
contractor  modrdn   N      N          N      N  N       N          Y        Y         N
contractor  delete   N      N          N      N  N       N          Y        Y         N
contractor  add      N      N          N      N  N       N          Y        Y         N
service     read     N      N          N      N  N       N          N        Y         N
service     compare  N      N          N      N  N       N          N        Y         N
service     modify   N      N          N      N  N       N          N        Y         N
service     passwd   N      N          N      N  N       N          N        Y         N
service     modrdn   N      N          N      N  N       N          N        Y         N
service     delete   N      N          N      N  N       N          N        Y         N
service     add      N      N          N      N  N       N          N        Y         N
sitegroup   read     Y      Y          Y      Y  Y       Y          Y        Y         N
sitegroup   compare  Y      Y          Y      Y  Y       Y          Y        Y         N
sitegroup   modify   N      Y          N      N  N       N          N        Y         N
sitegroup   passwd   N      N          N      N  N       N          N        N         N
sitegroup   modrdn   N      N          N      N  N       N          N        Y         N
sitegroup   delete   N      N          N      N  N       N          N        Y         N
sitegroup   add      N      N          N      N  N       N          N        Y         N
"""


def _parse(text):
    lines = [line.split() for line in text.strip().splitlines()]
    roles = lines[0][2:]
    assert roles == ROLES
    out = {}
    for kind, op, *cells in lines[1:]:
        for role, cell in zip(roles, cells):
            out[(role, kind, op)] = {"Y": True, "N": False}[cell]
    return out


EXPECTED = _parse(MATRIX_TEXT)
assert set(EXPECTED) == set(itertools.product(ROLES, KINDS, OPS))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("aclkinds"))
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
    out = {}
    for role in ROLES:
        conn = bind(srv, None if role == "anonymous" else role)
        assert conn.result["result"] == SUCCESS, (role, conn.result)
        out[role] = conn
    yield out
    for conn in out.values():
        conn.unbind()


# ----------------------------------------------------------------------------- targets

_serial = itertools.count(1)


def target_attrs(kind, name, with_password=True):
    """(dn, attributes) of a fresh target entry of school 1111."""
    pw = {"userPassword": [f"Target-{name}-pw1"]} if with_password else {}
    person = {"cn": [f"Target {name}"], "sn": [name], "uid": [name], "departmentNumber": ["1111"],
              "rollcallAccountStatus": ["ENABLED"], "description": ["original"], **pw}
    if kind == "student":
        return f"uid={name},{STUDENTS}", {"objectClass": ["inetOrgPerson", "rollcallAccount", "rollcallStudent"],
                                          **person}
    if kind == "staff":
        return f"uid={name},{STAFF}", {"objectClass": ["inetOrgPerson", "rollcallAccount"], **person}
    if kind == "contractor":
        return f"uid={name},{NONEMP}", {
            "objectClass": ["inetOrgPerson", "rollcallAccount", "rollcallNonEmployee"], **person,
            "rollcallNonEmployeeKind": ["CONTRACTOR"], "rollcallSponsor": [staff("principal1")],
            "rollcallExpiry": ["20991231000000Z"]}
    if kind == "service":
        return f"cn={name},{SERVICES}", {"objectClass": ["rollcallService"], "cn": [name],
                                         "description": ["original"], **pw}
    assert kind == "sitegroup"
    return f"cn={name},{site('1111')}", {"objectClass": ["groupOfNames"], "cn": [name],
                                         "member": [staff("teach1")], "description": ["original"]}


def rdn_attr(kind):
    return "cn" if kind in ("service", "sitegroup") else "uid"


def fresh(root, kind):
    name = f"t{next(_serial)}{kind[:3]}"
    dn, attrs = target_attrs(kind, name)
    assert root.add(dn, attributes=attrs), (dn, root.result)
    return name, dn


def exists(root, dn):
    root.search(dn, "(objectClass=*)", BASE, attributes=["description", "userPassword"])
    if root.result["result"] == NO_SUCH_OBJECT:
        return None
    assert root.result["result"] == SUCCESS, root.result
    return {k.lower(): v for k, v in root.response[0]["raw_attributes"].items() if v}


def remove(root, dn):
    if exists(root, dn) is not None:
        assert root.delete(dn), root.result


def refused(role, conn):
    """A refusal is never 'other' (80) and never a success."""
    code = conn.result["result"]
    assert code not in (SUCCESS, 80), conn.result
    if role == "anonymous":
        assert code in (INSUFFICIENT_ACCESS, NO_SUCH_OBJECT, UNWILLING), conn.result
    return code


# ----------------------------------------------------------------------------- one cell per op


def run_cell(srv, root, conn, role, kind, op):
    """Perform op as role on a fresh target; return whether it succeeded, after
    checking that the stored directory agrees with the answer."""
    if op == "add":
        name = f"t{next(_serial)}new"
        dn, attrs = target_attrs(kind, name)
        ok = conn.add(dn, attributes=attrs)
        now = exists(root, dn)
        assert ok == (now is not None), (conn.result, now)
        if not ok:
            refused(role, conn)
        remove(root, dn)
        return ok
    name, dn = fresh(root, kind)
    before = exists(root, dn)
    try:
        if op in ("read", "compare"):
            if op == "read":
                conn.search(dn, "(objectClass=*)", BASE, attributes=["cn", "description"])
                entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
                ok = bool(entries) and conn.result["result"] == SUCCESS
                if ok:
                    assert entries[0]["raw_attributes"]["description"] == [b"original"]
            else:
                conn.compare(dn, "cn", f"Target {name}" if kind not in ("service", "sitegroup") else name)
                ok = conn.result["result"] == COMPARE_TRUE
            if not ok:
                refused(role, conn)
            assert exists(root, dn) == before
            return ok
        if op == "modify":
            ok = conn.modify(dn, {"description": [(MODIFY_REPLACE, [f"by {role}"])]})
            after = exists(root, dn)
            assert after["description"] == ([f"by {role}".encode()] if ok else [b"original"]), conn.result
        elif op == "passwd":
            got = conn.extend.standard.modify_password(dn, None, None)
            ok = conn.result["result"] == SUCCESS
            after = exists(root, dn)
            if ok:
                assert isinstance(got, str) and len(got) >= 12
                assert after["userpassword"] != before.get("userpassword")
                check = bind(srv, None)
                assert check.rebind(dn, got), check.result   # the new password is real
                check.unbind()
            else:
                assert after.get("userpassword") == before.get("userpassword")
        elif op == "modrdn":
            new_rdn = f"{rdn_attr(kind)}={name}r"
            ok = conn.modify_dn(dn, new_rdn)
            new_dn = new_rdn + dn[dn.index(","):]
            assert (exists(root, new_dn) is not None) == ok, conn.result
            assert (exists(root, dn) is None) == ok
            if ok:
                remove(root, new_dn)
        elif op == "delete":
            ok = conn.delete(dn)
            assert (exists(root, dn) is None) == ok, conn.result
        else:
            raise AssertionError(op)
        if not ok:
            refused(role, conn)
        return ok
    finally:
        remove(root, dn)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", KINDS)
def test_matrix(srv, root, conns, role, kind):
    got = {op: run_cell(srv, root, conns[role], role, kind, op) for op in OPS}
    assert got == {op: EXPECTED[(role, kind, op)] for op in OPS}


# ----------------------------------------------------------------------------- the findings


@requires_ldap_utils
def test_subadmin_cannot_reset_the_principals_password_with_ldappasswd(srv, root):
    """Finding 1: `ldappasswd -D <1111 sub-admin> uid=principal1` returned a new password,
    and with it the sub-admin added themself to cn=principals,ou=1111."""
    before = exists(root, staff("principal1"))["userpassword"]
    r = ldaputil.tool(srv, "ldappasswd", "-D", staff("admin1"), "-w", password("admin1"), staff("principal1"))
    assert r.returncode != 0 and "Insufficient access (50)" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert "New password" not in r.stdout
    assert exists(root, staff("principal1"))["userpassword"] == before
    # the principal's own password still works, and the sub-admin is not a principal
    principal = bind(srv, "principal1")
    assert principal.result["result"] == SUCCESS
    principal.unbind()
    sub = bind(srv, "admin1")
    sub.modify(role_group("principals", "1111"), {"member": [(MODIFY_ADD, [staff("admin1")])]})
    assert sub.result["result"] == INSUFFICIENT_ACCESS, sub.result
    sub.unbind()
    root.search(role_group("principals", "1111"), "(objectClass=*)", BASE, attributes=["member"])
    assert staff("admin1").encode() not in root.response[0]["raw_attributes"]["member"]


def test_subadmin_cannot_reset_staff_or_contractors_by_modify_either(srv, root):
    sub = bind(srv, "admin1")
    try:
        for dn in (staff("principal1"), staff("teach1"), dn_of("nevalid")):
            before = exists(root, dn)["userpassword"]
            sub.modify(dn, {"userPassword": [(MODIFY_REPLACE, ["Taken-over-pw-2025"])]})
            assert sub.result["result"] == INSUFFICIENT_ACCESS, (dn, sub.result)
            assert exists(root, dn)["userpassword"] == before
    finally:
        sub.unbind()


def test_subadmin_cannot_lock_out_staff(srv, root):
    """Finding 2: pwdAccountLockedTime on any staff member of the school."""
    sub = bind(srv, "admin1")
    try:
        for dn in (staff("principal1"), staff("teach1")):
            sub.modify(dn, {"pwdAccountLockedTime": [(MODIFY_REPLACE, ["000001010000Z"])]})
            assert sub.result["result"] in (INSUFFICIENT_ACCESS, 19), (dn, sub.result)
            root.search(dn, "(objectClass=*)", BASE, attributes=["pwdAccountLockedTime"])
            assert not root.response[0]["raw_attributes"].get("pwdAccountLockedTime")
        check = bind(srv, "principal1")
        assert check.result["result"] == SUCCESS, check.result
        check.unbind()
    finally:
        sub.unbind()


def test_console_reset_refuses_a_non_student_dn(srv, root):
    """The console's /students/<DN>/reset calls admin.reset_password with the DN it was
    given: a contractor's or principal's DN is not a student, whatever its school."""
    sub = bind(srv, "admin1")
    try:
        for dn in (dn_of("nevalid"), staff("principal1")):
            before = exists(root, dn)["userpassword"]
            with pytest.raises(admin.AdminError) as err:
                admin.reset_password(sub, dn)
            assert "no student" in err.value.message
            assert exists(root, dn)["userpassword"] == before
        # a student of the school still works through the same function
        out = admin.reset_password(sub, student("s1"))
        assert len(out["password"]) >= 12
    finally:
        sub.unbind()


def test_subadmin_cannot_issue_activation_codes_for_non_students(srv, root):
    """A newly approved contractor is PENDING: its code is for the approver's process,
    not for the school's student-email sub-administrator."""
    dn, attrs = target_attrs("contractor", "pendingne", with_password=False)
    attrs["rollcallAccountStatus"] = ["PENDING"]
    assert root.add(dn, attributes=attrs), root.result
    sub = bind(srv, "admin1")
    try:
        codes = admin.issue_codes(sub, [dn, "pendingne"])
        assert all("code" not in c for c in codes), codes
        assert all(c.get("result") in (INSUFFICIENT_ACCESS, NO_SUCH_OBJECT) for c in codes), codes
        assert "rollcallactivationcodehash" not in {k.lower() for k in exists(root, dn)}
    finally:
        sub.unbind()
        remove(root, dn)


@requires_ldap_utils
def test_subadmin_cannot_ldapdelete_a_student(srv, root):
    """Finding 4: deleting accounts is for the sync's purge and district administrators;
    a sub-administrator deactivates (ENABLED only, with reason and reference)."""
    name, dn = fresh(root, "student")
    try:
        r = ldaputil.tool(srv, "ldapdelete", "-D", staff("admin1"), "-w", password("admin1"), dn)
        assert r.returncode != 0 and "Insufficient access (50)" in r.stdout + r.stderr, (r.stdout, r.stderr)
        assert exists(root, dn) is not None
    finally:
        remove(root, dn)


def test_rename_cannot_take_a_uid_that_exists(srv, root):
    """Finding 3: a student renamed to uid=admin1 made (uid=admin1) ambiguous for every SSO."""
    name, dn = fresh(root, "student")
    distadmin = bind(srv, "distadmin")
    try:
        for new_rdn in ("uid=admin1", "uid=ADMIN1"):
            distadmin.modify_dn(dn, new_rdn, delete_old_dn=True)
            assert distadmin.result["result"] == 19, (new_rdn, distadmin.result)   # constraintViolation
            assert "admin1" in distadmin.result["message"]
        # one type twice in an RDN is no DN at all (RFC 4514; the conformance issue): 34
        distadmin.modify_dn(dn, f"uid={name}+uid=admin1", delete_old_dn=True)
        assert distadmin.result["result"] == 34, distadmin.result
        # the rename to a free uid works
        assert distadmin.modify_dn(dn, f"uid={name}x", delete_old_dn=True), distadmin.result
        remove(root, f"uid={name}x,{STUDENTS}")
    finally:
        distadmin.unbind()
        remove(root, dn)


def test_rename_checks_school_codes_like_modify(tmp_path):
    """Finding 3: with a policy that lets a sub-administrator rename its students, a
    multi-valued RDN must not remove a school the caller does not administer. s12
    belongs to 1111 and 2222; admin1 administers 1111 only. Renaming to
    `departmentNumber=2222+uid=s12` changes no attribute; renaming back to `uid=s12`
    with deleteoldrdn would drop departmentNumber 2222 — a modify admin1 is refused."""
    rules = [
        {"to": {"attrs": ["userPassword"]}, "by": ["anonymous auth", "* none"]},
        {"to": {"dn": f"ou=students,ou=people,{SUFFIX}", "scope": "base", "attrs": ["children"]},
         "by": ["users write"]},
        {"to": {"dn": f"ou=students,ou=people,{SUFFIX}", "scope": "children"},
         "by": ["site-group=student-email-admins write", "* none"]},
        {"to": "*", "by": ["users read"]},
    ]
    s = make_server(tmp_path)
    s.stop()
    cfg = yaml.safe_load(s.config_path.read_text())
    cfg["access"] = rules
    s.config_path.write_text(yaml.safe_dump(cfg))
    s.start()
    try:
        root = bind(s, "root")
        sub = bind(s, "admin1")
        assert sub.bound, sub.result
        assert sub.modify_dn(student("s12"), "departmentNumber=2222+uid=s12", delete_old_dn=True), sub.result
        moved = f"departmentNumber=2222+uid=s12,{STUDENTS}"
        sub.modify_dn(moved, "uid=s12", delete_old_dn=True)
        assert sub.result["result"] == INSUFFICIENT_ACCESS, sub.result
        assert "2222" in sub.result["message"]
        root.search(moved, "(objectClass=*)", BASE, attributes=["departmentNumber"])
        assert sorted(root.response[0]["raw_attributes"]["departmentNumber"]) == [b"1111", b"2222"]
        # the same change as a plain modify is refused the same way
        sub.modify(moved, {"departmentNumber": [(MODIFY_REPLACE, ["1111"])]})
        assert sub.result["result"] in (INSUFFICIENT_ACCESS, 67), sub.result
        # a status field hidden in an RDN is refused: the status changes by a modify only
        sub.modify_dn(moved, "rollcallDeactivationReason=none+departmentNumber=2222+uid=s12", delete_old_dn=True)
        assert sub.result["result"] == 67, sub.result   # notAllowedOnRDN
        root.unbind()
        sub.unbind()
    finally:
        s.stop()


def test_assertion_control_does_not_reveal_invisible_entries(srv, conns):
    """A search or compare with the assertion control (RFC 4528) on an entry the caller
    may not see is noSuchObject with no matched DN below what they may see, like every
    other path (the check used to run without the caller's identity)."""
    ctl = [(ASSERTION, True, encode_filter("(objectClass=*)"))]
    s1 = conns["s1"]
    hidden = student("s2")                    # another student: invisible to s1
    below = f"cn=nothing,{hidden}"            # below it: its existence must not show
    for dn in (hidden, below):
        s1.search(dn, "(objectClass=*)", BASE, attributes=["uid"], controls=ctl)
        assert s1.result["result"] == NO_SUCH_OBJECT, s1.result
        assert s1.result["dn"].lower() == STUDENTS.lower(), s1.result   # ou=students is visible to s1
        s1.compare(dn, "uid", "s2", controls=ctl)
        assert s1.result["result"] == NO_SUCH_OBJECT, s1.result
        assert s1.result["dn"].lower() == STUDENTS.lower(), s1.result
    anon = conns["anonymous"]
    anon.search(student("s1"), "(objectClass=*)", BASE, attributes=["uid"], controls=ctl)
    assert anon.result["result"] == NO_SUCH_OBJECT and anon.result["dn"] == "", anon.result
