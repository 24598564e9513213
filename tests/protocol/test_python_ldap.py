"""python-ldap (libldap underneath) against a real `rollcall serve`: the synchronous
API, paging, read-entry and assertion controls, extended operations, StartTLS/LDAPS,
and errors surfacing as the right exception classes."""
import pytest

ldap = pytest.importorskip("ldap")

import ldap.modlist  # noqa: E402
from ldap.controls import LDAPControl, SimplePagedResultsControl  # noqa: E402
from ldap.controls.libldap import AssertionControl  # noqa: E402
from ldap.controls.readentry import PostReadControl, PreReadControl  # noqa: E402

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX  # noqa: E402

PEOPLE = f"ou=people,{SUFFIX}"
STUDENTS = f"ou=students,{PEOPLE}"
STAFF = f"ou=staff,{PEOPLE}"
JSMITH = f"uid=jsmith,{STUDENTS}"
MGARCIA = f"uid=mgarcia,{STUDENTS}"
TEACHER1 = f"uid=teacher1,{STAFF}"
USERS = {JSMITH: "student-pw-1", MGARCIA: "student-pw-2", TEACHER1: "staff-pw-1"}
WORK = f"ou=pyldap,{SUFFIX}"
PAGED_OID = "1.2.840.113556.1.4.319"


def connect(srv, dn=ROOT_DN, pw=ROOT_PW, url=None):
    conn = ldap.initialize(url or srv.url)
    conn.protocol_version = 3
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.set_option(ldap.OPT_TIMEOUT, 30)
    if dn is not None:
        conn.simple_bind_s(dn, pw)
    return conn


def tls_options(conn, srv):
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(srv.ca_file))
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)


def person(uid, **extra):
    attrs = {"objectClass": [b"inetOrgPerson"], "uid": [uid.encode()], "cn": [f"Py {uid}".encode()],
             "sn": [uid.encode()]}
    attrs.update({k: [v.encode() if isinstance(v, str) else v for v in (vs if isinstance(vs, list) else [vs])]
                  for k, vs in extra.items()})
    return ldap.modlist.addModlist(attrs)


@pytest.fixture(scope="module")
def admin(server):
    conn = connect(server)
    conn.add_s(WORK, ldap.modlist.addModlist({"objectClass": [b"organizationalUnit"], "ou": [b"pyldap"]}))
    yield conn
    conn.unbind_s()


@pytest.fixture(scope="module")
def student(server, admin):
    conn = connect(server, JSMITH, USERS[JSMITH])
    yield conn
    conn.unbind_s()


# ----------------------------------------------------------------------------- bind


def test_simple_bind_and_whoami(server):
    for dn, pw in [*USERS.items(), (ROOT_DN, ROOT_PW)]:
        conn = connect(server, dn, pw)
        assert conn.whoami_s() == f"dn:{dn}"
        conn.unbind_s()
    anon = connect(server, None)
    anon.simple_bind_s("", "")
    assert anon.whoami_s() == ""


def test_bind_failures(server):
    conn = connect(server, None)
    with pytest.raises(ldap.INVALID_CREDENTIALS) as wrong:
        conn.simple_bind_s(JSMITH, "wrong-password")
    with pytest.raises(ldap.INVALID_CREDENTIALS) as unknown:
        conn.simple_bind_s(f"uid=nobody,{STUDENTS}", "wrong-password")
    # same answer for both: no hint which part was wrong
    strip = lambda e: {k: v for k, v in e.value.args[0].items() if k not in ("msgid", "ctrls")}  # noqa: E731
    assert strip(wrong) == strip(unknown)
    with pytest.raises(ldap.UNWILLING_TO_PERFORM):
        conn.simple_bind_s(JSMITH, "")
    with pytest.raises(ldap.INVALID_DN_SYNTAX):
        conn.simple_bind_s("this is not a dn", "x")
    # still usable afterwards
    conn.simple_bind_s(JSMITH, USERS[JSMITH])
    assert conn.whoami_s() == f"dn:{JSMITH}"


def test_sasl_bind_is_refused(server):
    conn = connect(server, None)
    with pytest.raises(ldap.STRONG_AUTH_NOT_SUPPORTED):  # python-ldap's name for authMethodNotSupported (7)
        conn.sasl_bind_s("", "EXTERNAL", b"")
    with pytest.raises(ldap.STRONG_AUTH_NOT_SUPPORTED):  # python-ldap's name for authMethodNotSupported (7)
        conn.sasl_bind_s("", "PLAIN", b"\x00" + JSMITH.encode() + b"\x00" + USERS[JSMITH].encode())
    assert conn.whoami_s() == ""  # still anonymous


# ----------------------------------------------------------------------------- search


def test_search_s(server, student):
    res = student.search_s(PEOPLE, ldap.SCOPE_SUBTREE, "(departmentNumber=1234)", ["uid", "cn", "departmentNumber"])
    got = {dn.lower(): attrs for dn, attrs in res}
    assert set(got) == {JSMITH, MGARCIA}
    assert got[MGARCIA]["cn"] == ["María García".encode()]
    assert sorted(got[MGARCIA]["departmentNumber"]) == [b"1234", b"5678"]
    res = student.search_s(PEOPLE, ldap.SCOPE_SUBTREE, "(cn=maría*)", ["uid"])
    assert [a["uid"] for _, a in res] == [[b"mgarcia"]]
    res = student.search_s(PEOPLE, ldap.SCOPE_ONELEVEL, "(objectClass=*)", ["1.1"])
    assert sorted(dn.lower() for dn, _ in res) == sorted([STUDENTS, STAFF])
    res = student.search_s(JSMITH, ldap.SCOPE_BASE, "(objectClass=*)", ["+"])
    assert {"entryUUID", "entryDN", "createTimestamp", "hasSubordinates"} <= set(res[0][1])
    res = student.search_s(JSMITH, ldap.SCOPE_BASE, attrsonly=1)
    assert res[0][1]["cn"] == [] and "userPassword" not in res[0][1]


def test_search_errors(server, student):
    with pytest.raises(ldap.NO_SUCH_OBJECT) as info:
        student.search_s(f"uid=nobody,{STUDENTS}", ldap.SCOPE_BASE)
    assert info.value.args[0]["matched"].lower() == STUDENTS
    with pytest.raises(ldap.NO_SUCH_OBJECT) as info:
        student.search_s(f"uid=x,ou=a,ou=b,{PEOPLE}", ldap.SCOPE_SUBTREE)
    assert info.value.args[0]["matched"].lower() == PEOPLE
    with pytest.raises(ldap.FILTER_ERROR):  # client side
        student.search_s(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=jsmith")
    with pytest.raises(ldap.INVALID_DN_SYNTAX):
        student.search_s("not a dn", ldap.SCOPE_BASE)


def test_search_size_limit(server, student):
    with pytest.raises(ldap.SIZELIMIT_EXCEEDED):
        student.search_ext_s(PEOPLE, ldap.SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", ["uid"], sizelimit=1)


def test_search_root_dse(server):
    conn = connect(server, None)
    res = conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["+", "*"])
    attrs = res[0][1]
    assert attrs["namingContexts"] == [SUFFIX.encode()]
    assert b"1.3.6.1.4.1.4203.1.11.1" in attrs["supportedExtension"]
    assert PAGED_OID.encode() in attrs["supportedControl"]
    res = conn.search_s("cn=subschema", ldap.SCOPE_BASE, "(objectClass=*)", ["objectClasses"])
    assert any(b"NAME 'inetOrgPerson'" in v for v in res[0][1]["objectClasses"])


def test_paged_results_control(server, admin):
    for i in range(7):
        admin.add_s(f"uid=page{i},{WORK}", person(f"page{i}"))
    page = SimplePagedResultsControl(True, size=3, cookie=b"")
    got, pages = [], 0
    while True:
        msgid = admin.search_ext(WORK, ldap.SCOPE_ONELEVEL, "(uid=page*)", ["uid"], serverctrls=[page])
        rtype, rdata, rmsgid, ctrls = admin.result3(msgid)
        pages += 1
        assert len(rdata) <= 3
        got += [a["uid"][0] for _, a in rdata]
        resp = [c for c in ctrls if c.controlType == SimplePagedResultsControl.controlType]
        assert resp, "no paged results response control"
        if not resp[0].cookie:
            break
        page.cookie = resp[0].cookie
    assert sorted(got) == [f"page{i}".encode() for i in range(7)]
    assert pages == 3


def test_paged_results_abandon_with_size_zero(server, admin):
    page = SimplePagedResultsControl(True, size=2, cookie=b"")
    rtype, rdata, rmsgid, ctrls = admin.result3(
        admin.search_ext(PEOPLE, ldap.SCOPE_SUBTREE, "(objectClass=*)", ["1.1"], serverctrls=[page]))
    assert len(rdata) == 2
    cookie = ctrls[0].cookie
    assert cookie
    stop = SimplePagedResultsControl(True, size=0, cookie=cookie)
    rtype, rdata, rmsgid, ctrls = admin.result3(
        admin.search_ext(PEOPLE, ldap.SCOPE_SUBTREE, "(objectClass=*)", ["1.1"], serverctrls=[stop]))
    assert rdata == [] and not ctrls[0].cookie
    with pytest.raises(ldap.LDAPError):
        again = SimplePagedResultsControl(True, size=2, cookie=cookie)
        admin.result3(admin.search_ext(PEOPLE, ldap.SCOPE_SUBTREE, "(objectClass=*)", ["1.1"], serverctrls=[again]))


# ----------------------------------------------------------------------------- writes


def test_add_modify_rename_delete(server, admin, student):
    dn = f"uid=pyuser,{WORK}"
    admin.add_s(dn, person("pyuser", mail="pyuser@district.example", userPassword="py-user-password"))
    res = student.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["mail", "cn"])
    assert res[0][1]["mail"] == [b"pyuser@district.example"]
    admin.modify_s(dn, [(ldap.MOD_ADD, "mail", [b"second@district.example"]),
                        (ldap.MOD_REPLACE, "cn", [b"Py User", "Pý Üser".encode()]),
                        (ldap.MOD_ADD, "description", [b"added"])])
    admin.modify_s(dn, [(ldap.MOD_DELETE, "mail", [b"PYUSER@district.example"]),
                        (ldap.MOD_DELETE, "description", None)])
    attrs = admin.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["mail", "cn", "description", "userPassword"])[0][1]
    assert attrs["mail"] == [b"second@district.example"]
    assert sorted(attrs["cn"]) == sorted([b"Py User", "Pý Üser".encode()])
    assert "description" not in attrs
    assert attrs["userPassword"][0].startswith(b"{ARGON2}")
    # the password given in clear on add was hashed, and binds work with it
    user = connect(server, dn, "py-user-password")
    assert user.whoami_s() == f"dn:{dn}"
    # replacing userPassword in clear hashes it too
    admin.modify_s(dn, [(ldap.MOD_REPLACE, "userPassword", [b"replaced-password"])])
    stored = admin.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["userPassword"])[0][1]["userPassword"]
    assert stored[0].startswith(b"{ARGON2}") and b"replaced-password" not in stored[0]
    connect(server, dn, "replaced-password").unbind_s()
    # rename, keeping the old RDN value
    admin.rename_s(dn, "uid=pyuser2", delold=0)
    new_dn = f"uid=pyuser2,{WORK}"
    attrs = admin.search_s(new_dn, ldap.SCOPE_BASE, "(objectClass=*)", ["uid"])[0][1]
    assert sorted(attrs["uid"]) == [b"pyuser", b"pyuser2"]
    # and move it
    admin.rename_s(new_dn, "uid=pyuser3", STAFF, delold=1)
    moved = f"uid=pyuser3,{STAFF}"
    attrs = admin.search_s(moved, ldap.SCOPE_BASE, "(objectClass=*)", ["uid"])[0][1]
    assert sorted(attrs["uid"]) == [b"pyuser", b"pyuser3"]
    # the moved user can still bind under the new DN
    connect(server, moved, "replaced-password").unbind_s()
    with pytest.raises(ldap.NO_SUCH_OBJECT):
        admin.search_s(new_dn, ldap.SCOPE_BASE)
    admin.delete_s(moved)
    with pytest.raises(ldap.NO_SUCH_OBJECT) as info:
        admin.delete_s(moved)
    assert info.value.args[0]["matched"].lower() == STAFF


def test_compare_s(server, student):
    assert student.compare_s(JSMITH, "uid", b"jsmith") is True
    assert student.compare_s(JSMITH, "cn", b"JOHN SMITH") is True
    assert student.compare_s(JSMITH, "cn", b"nobody") is False
    assert student.compare_s(MGARCIA, "sn", "garcía".encode()) is True
    with pytest.raises(ldap.NO_SUCH_ATTRIBUTE):
        student.compare_s(JSMITH, "telephoneNumber", b"1")
    with pytest.raises(ldap.UNDEFINED_TYPE):
        student.compare_s(JSMITH, "fooBarBaz", b"1")
    with pytest.raises(ldap.NO_SUCH_OBJECT):
        student.compare_s(f"uid=nobody,{STUDENTS}", "uid", b"nobody")
    with pytest.raises(ldap.INSUFFICIENT_ACCESS):
        student.compare_s(TEACHER1, "userPassword", b"staff-pw-1")


def test_errors_raise_the_right_exceptions(server, admin, student):
    dn = f"uid=errs,{WORK}"
    admin.add_s(dn, person("errs"))
    with pytest.raises(ldap.ALREADY_EXISTS):
        admin.add_s(dn, person("errs"))
    with pytest.raises(ldap.NO_SUCH_OBJECT) as info:
        admin.add_s(f"uid=x,ou=missing,{WORK}", person("x"))
    assert info.value.args[0]["matched"].lower() == WORK
    with pytest.raises(ldap.INSUFFICIENT_ACCESS):
        student.add_s(f"uid=bystudent,{WORK}", person("bystudent"))
    with pytest.raises(ldap.INSUFFICIENT_ACCESS):
        student.modify_s(JSMITH, [(ldap.MOD_REPLACE, "cn", [b"Me"])])
    with pytest.raises(ldap.INSUFFICIENT_ACCESS):
        student.delete_s(dn)
    with pytest.raises(ldap.NOT_ALLOWED_ON_NONLEAF):
        admin.delete_s(WORK)
    with pytest.raises(ldap.OBJECT_CLASS_VIOLATION):
        admin.add_s(f"uid=nosn,{WORK}", ldap.modlist.addModlist({"objectClass": [b"inetOrgPerson"],
                                                                 "uid": [b"nosn"], "cn": [b"x"]}))
    with pytest.raises(ldap.UNDEFINED_TYPE):
        admin.modify_s(dn, [(ldap.MOD_ADD, "fooBarBaz", [b"x"])])
    with pytest.raises(ldap.CONSTRAINT_VIOLATION):
        admin.modify_s(dn, [(ldap.MOD_ADD, "displayName", [b"a", b"b"])])
    with pytest.raises(ldap.CONSTRAINT_VIOLATION):
        admin.modify_s(dn, [(ldap.MOD_REPLACE, "entryUUID", [b"00000000-0000-0000-0000-000000000000"])])
    with pytest.raises(ldap.INVALID_SYNTAX):
        admin.modify_s(dn, [(ldap.MOD_ADD, "objectClass", [b"posixAccount"]), (ldap.MOD_ADD, "uidNumber", [b"abc"]),
                            (ldap.MOD_ADD, "gidNumber", [b"1"]), (ldap.MOD_ADD, "homeDirectory", [b"/h"])])
    with pytest.raises(ldap.NO_OBJECT_CLASS_MODS):  # objectClassModsProhibited (69)
        admin.modify_s(dn, [(ldap.MOD_REPLACE, "objectClass", [b"account"])])
    with pytest.raises(ldap.NOT_ALLOWED_ON_RDN):
        admin.modify_s(dn, [(ldap.MOD_DELETE, "uid", None)])
    with pytest.raises(ldap.TYPE_OR_VALUE_EXISTS):
        admin.modify_s(dn, [(ldap.MOD_ADD, "uid", [b"ERRS"])])
    with pytest.raises(ldap.NO_SUCH_ATTRIBUTE):
        admin.modify_s(dn, [(ldap.MOD_DELETE, "mail", [b"x@y"])])
    with pytest.raises(ldap.OBJECT_CLASS_VIOLATION):  # the RDN's dc value is added, and not allowed
        admin.add_s(f"dc=named,{WORK}", person("other"))
    with pytest.raises(ldap.UNAVAILABLE_CRITICAL_EXTENSION):
        admin.search_ext_s(dn, ldap.SCOPE_BASE, serverctrls=[LDAPControl("1.2.3.4.99", True, None)])
    with pytest.raises(ldap.UNAVAILABLE_CRITICAL_EXTENSION):
        admin.modify_ext_s(dn, [(ldap.MOD_REPLACE, "cn", [b"x"])], serverctrls=[LDAPControl("1.2.3.4.99", True, b"")])
    # non-critical unknown controls are ignored
    assert admin.search_ext_s(dn, ldap.SCOPE_BASE, serverctrls=[LDAPControl("1.2.3.4.99", False, b"x")])


def test_objectclass_mods_prohibited_code(server, admin):
    """Result 69 (objectClassModsProhibited) for a structural class change."""
    dn = f"uid=oc69,{WORK}"
    admin.add_s(dn, person("oc69"))
    with pytest.raises(ldap.LDAPError) as info:
        admin.modify_s(dn, [(ldap.MOD_REPLACE, "objectClass", [b"organizationalUnit"])])
    assert info.value.args[0]["result"] == 69


# ----------------------------------------------------------------------------- extended operations


def test_passwd_s(server, admin):
    dn = f"uid=pwd,{WORK}"
    admin.add_s(dn, person("pwd", userPassword="initial-password"))
    user = connect(server, dn, "initial-password")
    # with a new password
    oid, value = user.passwd_s(dn, "initial-password", "changed-password")
    assert value is None
    connect(server, dn, "changed-password").unbind_s()
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        connect(server, dn, "initial-password")
    # without: the server generates one and returns it
    oid, response = user.passwd_s(None, "changed-password", None, extract_newpw=True)
    generated = response.genPasswd
    assert isinstance(generated, bytes) and len(generated) >= 8
    # and the raw response value is the RFC 3062 PasswdModifyResponseValue
    oid, raw = user.passwd_s(None, generated, None)
    assert raw[:2] == bytes([0x30, len(raw) - 2]) and raw[2] == 0x80
    generated = raw[4:]
    assert len(generated) == raw[3] >= 8
    again = connect(server, dn, generated.decode())
    assert again.whoami_s() == f"dn:{dn}"
    # wrong old password
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        user.passwd_s(dn, "not-the-old-one", "whatever-password")
    # someone else's: not allowed for users, fine for root
    other = connect(server, MGARCIA, USERS[MGARCIA])
    with pytest.raises(ldap.INSUFFICIENT_ACCESS):
        other.passwd_s(dn, None, "stolen-password")
    oid, response = admin.passwd_s(dn, None, None, extract_newpw=True)
    connect(server, dn, response.genPasswd.decode()).unbind_s()
    # root reset: pwdReset is set
    attrs = admin.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["pwdReset", "pwdChangedTime", "userPassword"])
    assert attrs[0][1]["userPassword"][0].startswith(b"{ARGON2}")


def test_start_tls_s(server):
    conn = connect(server, None)
    tls_options(conn, server)
    conn.start_tls_s()
    conn.simple_bind_s(JSMITH, USERS[JSMITH])
    assert conn.whoami_s() == f"dn:{JSMITH}"
    res = conn.search_s(STUDENTS, ldap.SCOPE_SUBTREE, "(uid=mgarcia)", ["cn"])
    assert res[0][1]["cn"] == ["María García".encode()]
    conn.unbind_s()


def test_start_tls_after_bind_keeps_identity(server):
    conn = connect(server, JSMITH, USERS[JSMITH])
    tls_options(conn, server)
    conn.start_tls_s()
    assert conn.whoami_s() == f"dn:{JSMITH}"


def test_ldaps(server):
    conn = ldap.initialize(server.ldaps_url)
    tls_options(conn, server)
    conn.simple_bind_s(TEACHER1, USERS[TEACHER1])
    assert conn.whoami_s() == f"dn:{TEACHER1}"
    conn.unbind_s()


def test_ldaps_untrusted_cert_fails(server, tmp_path):
    from directory.tls import make_self_signed

    make_self_signed(tmp_path / "o.crt", tmp_path / "o.key")
    conn = ldap.initialize(server.ldaps_url)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(tmp_path / "o.crt"))
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    with pytest.raises(ldap.SERVER_DOWN):
        conn.simple_bind_s(TEACHER1, USERS[TEACHER1])


# ----------------------------------------------------------------------------- controls


def test_read_entry_controls(server, admin):
    dn = f"uid=readent,{WORK}"
    rtype, rdata, msgid, ctrls = admin.add_ext_s(dn, person("readent", description="v1"),
                                                 serverctrls=[PostReadControl(True, ["entryUUID", "description"])])
    post = [c for c in ctrls if isinstance(c, PostReadControl)][0]
    assert post.dn.lower() == dn and post.entry["description"] == [b"v1"]
    uuid = post.entry["entryUUID"]
    rtype, rdata, msgid, ctrls = admin.modify_ext_s(
        dn, [(ldap.MOD_REPLACE, "description", [b"v2"])],
        serverctrls=[PreReadControl(True, ["description"]), PostReadControl(True, ["description", "modifiersName"])])
    by_type = {c.controlType: c for c in ctrls}
    assert by_type[PreReadControl.controlType].entry == {"description": [b"v1"]}
    assert by_type[PostReadControl.controlType].entry["description"] == [b"v2"]
    assert by_type[PostReadControl.controlType].entry["modifiersName"] == [ROOT_DN.encode()]
    msgid = admin.rename(dn, "uid=readent2", serverctrls=[PostReadControl(True, ["entryUUID", "uid"])])
    rtype, rdata, rmsgid, ctrls = admin.result3(msgid)
    post = ctrls[0]
    assert post.dn.lower() == f"uid=readent2,{WORK}"
    assert post.entry["entryUUID"] == uuid and post.entry["uid"] == [b"readent2"]
    rtype, rdata, msgid, ctrls = admin.delete_ext_s(f"uid=readent2,{WORK}", serverctrls=[PreReadControl(True, ["uid"])])
    assert ctrls[0].entry == {"uid": [b"readent2"]}


def test_assertion_control(server, admin):
    dn = f"uid=assert,{WORK}"
    admin.add_s(dn, person("assert", description="one"))
    with pytest.raises(ldap.ASSERTION_FAILED):
        admin.modify_ext_s(dn, [(ldap.MOD_REPLACE, "description", [b"two"])],
                           serverctrls=[AssertionControl(True, "(description=zero)")])
    admin.modify_ext_s(dn, [(ldap.MOD_REPLACE, "description", [b"two"])],
                       serverctrls=[AssertionControl(True, "(&(description=one)(uid=assert))")])
    assert admin.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["description"])[0][1]["description"] == [b"two"]
    with pytest.raises(ldap.ASSERTION_FAILED):
        admin.search_ext_s(dn, ldap.SCOPE_BASE, serverctrls=[AssertionControl(True, "(description=one)")])
    res = admin.search_ext_s(dn, ldap.SCOPE_BASE, serverctrls=[AssertionControl(True, "(description=t*)")])
    assert len(res) == 1
    with pytest.raises(ldap.ASSERTION_FAILED):
        admin.delete_ext_s(dn, serverctrls=[AssertionControl(True, "(!(description=two))")])
    admin.delete_ext_s(dn, serverctrls=[AssertionControl(True, "(description=two)")])


def test_async_api_many_outstanding(server, admin):
    """libldap's asynchronous API: many requests in flight, results by message id."""
    msgids = {}
    for dn, uid in [(JSMITH, b"jsmith"), (MGARCIA, b"mgarcia"), (TEACHER1, b"teacher1")] * 20:
        msgids[admin.search(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["uid"])] = uid
    for msgid, uid in reversed(list(msgids.items())):
        rtype, rdata = admin.result(msgid)
        assert rdata[0][1]["uid"] == [uid]


def test_abandon(server, admin):
    msgid = admin.search(SUFFIX, ldap.SCOPE_SUBTREE, "(objectClass=*)", ["*"])
    admin.abandon(msgid)
    assert admin.whoami_s() == f"dn:{ROOT_DN}"
    assert admin.search_s(JSMITH, ldap.SCOPE_BASE, "(objectClass=*)", ["uid"])[0][1]["uid"] == [b"jsmith"]


def test_rehash_on_bind_upgrades_ssha(server, admin):
    """jsmith's password came from slapd as {SSHA}; a successful bind upgrades it to {ARGON2}."""
    import time

    connect(server, JSMITH, USERS[JSMITH]).unbind_s()
    deadline = time.monotonic() + 10
    while True:
        stored = admin.search_s(JSMITH, ldap.SCOPE_BASE, "(objectClass=*)", ["userPassword"])[0][1]["userPassword"]
        if stored[0].startswith(b"{ARGON2}") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(stored) == 1 and stored[0].startswith(b"{ARGON2}")
    connect(server, JSMITH, USERS[JSMITH]).unbind_s()
