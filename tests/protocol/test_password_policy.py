"""The password policy over the wire (ldap3 and python-ldap): refused binds that all
look alike, PENDING accounts, lockout and unlock, must-change-after-reset with the
draft-behera response control, password quality and history, and hashing of
passwords written in clear."""
import base64
import hashlib
import os
import time

import pytest
from ldap3 import BASE, MODIFY_DELETE, MODIFY_REPLACE, SUBTREE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, requires_ldap_utils
from directory import admin
from tests.protocol import ldaputil
from tests.protocol.district import (
    DEFAULT_POLICY, NE_EXPIRED, NE_VALID, PEOPLE, STUDENTS, make_server, password, staff, student,
)

ldap = pytest.importorskip("ldap")
from ldap.controls.ppolicy import PasswordPolicyControl, PasswordPolicyError  # noqa: E402

SUCCESS, CONSTRAINT_VIOLATION, INVALID_CREDENTIALS, UNWILLING = 0, 19, 49, 53
RESTRICTED = "Operations are restricted to bind/unbind/abandon/StartTLS/modify password"
MAX_FAILURES = DEFAULT_POLICY["max_failures"]  # 3 (lockout_duration 0: until an administrator unlocks)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("ppolicy"))
    yield s
    s.stop()


def bind3(srv, dn, pw):
    """ldap3 connection, bind attempted; check .result."""
    conn = Connection(Server(srv.url), dn, pw)
    conn.open()
    conn.bind()
    return conn


@pytest.fixture(scope="module")
def root(srv):
    conn = bind3(srv, ROOT_DN, ROOT_PW)
    assert conn.bound
    yield conn
    conn.unbind()


def pl(srv):
    conn = ldap.initialize(srv.url)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.timeout = 20
    return conn


def pl_bind_error(srv, dn, pw):
    """(result code, info) of a refused python-ldap simple bind."""
    conn = pl(srv)
    try:
        with pytest.raises(ldap.LDAPError) as err:
            conn.simple_bind_s(dn, pw)
    finally:
        conn.unbind_s()
    info = err.value.args[0]
    return info["result"], info.get("info", ""), info.get("matched", "")


def entry_ops(root, dn):
    """User and operational attributes of an entry as the root DN sees them."""
    root.search(dn, "(objectClass=*)", BASE, attributes=["*", "+"])
    assert root.result["result"] == SUCCESS, root.result
    return {k.lower(): v for k, v in root.response[0]["raw_attributes"].items() if v}


def wrong_binds(srv, dn, n):
    for _ in range(n):
        c = bind3(srv, dn, "definitely-wrong-pw")
        assert c.result["result"] == INVALID_CREDENTIALS
        c.unbind()


def search_code(conn):
    conn.search(PEOPLE, "(uid=s2)", SUBTREE, attributes=["uid"])
    return conn.result["result"], conn.result["message"]


# ----------------------------------------------------------------------------- refused binds


def test_refused_binds_all_look_alike(srv, root):
    wrong_binds(srv, student("locked1"), MAX_FAILURES)
    assert "pwdaccountlockedtime" in entry_ops(root, student("locked1"))
    cases = {
        "wrong password": (student("s2"), "not-" + password("s2")),
        "unknown user": (f"uid=nobody,{STUDENTS}", "whatever-password"),
        "unknown parent": (f"uid=nobody,ou=nowhere,{SUFFIX}", "whatever-password"),
        "DISABLED": (student("sD"), password("sD")),
        "PENDING": (student("sP"), password("sP")),
        "expired non-employee": (NE_EXPIRED, password("neexpired")),
        "locked": (student("locked1"), password("locked1")),
    }
    seen3, seen_pl = {}, {}
    for label, (dn, pw) in cases.items():
        c = bind3(srv, dn, pw)
        seen3[label] = (c.result["result"], c.result["message"], c.result["dn"])
        assert not c.bound
        c.unbind()
        seen_pl[label] = pl_bind_error(srv, dn, pw)
    # 49 for every reason, and nothing else in the answer tells the reasons apart
    assert all(v[0] == INVALID_CREDENTIALS for v in seen3.values()), seen3
    assert len(set(seen3.values())) == 1, seen3
    assert all(v[0] == INVALID_CREDENTIALS for v in seen_pl.values()), seen_pl
    assert len(set(seen_pl.values())) == 1, seen_pl
    # the non-employee who has not expired binds; so do the others' right passwords for s2
    for dn, pw in ((NE_VALID, password("nevalid")), (student("s2"), password("s2"))):
        c = bind3(srv, dn, pw)
        assert c.result["result"] == SUCCESS, (dn, c.result)
        c.unbind()


# ----------------------------------------------------------------------------- PENDING


def test_pending_account_cannot_bind_until_its_holder_activates_it(srv, root):
    """A PENDING account that carries a password (imported, or set before a re-activation)
    does not bind: search-then-bind SSO clients (Apache, Dovecot, RADIUS) see only "bind
    ok", so a restricted session would still let the holder in. Its holder activates it
    with the school's code and a new password; from then on that password binds."""
    dn, pw = student("sP"), password("sP")
    assert "userpassword" in entry_ops(root, dn)  # it has one, and it is right
    refused = bind3(srv, dn, pw)
    assert refused.result["result"] == INVALID_CREDENTIALS and not refused.bound, refused.result
    refused.unbind()
    [issued] = admin.issue_codes(root, [dn])
    anon = Connection(Server(srv.url))
    anon.bind()
    new = "Pending-activated-1"
    assert admin.activate(anon, "sP", issued["code"], new)["status"] == "ENABLED"
    anon.unbind()
    assert bind3(srv, dn, pw).result["result"] == INVALID_CREDENTIALS  # the old password is gone
    enabled = bind3(srv, dn, new)
    assert enabled.result["result"] == SUCCESS, enabled.result
    assert search_code(enabled) == (SUCCESS, "")
    enabled.unbind()


# ----------------------------------------------------------------------------- lockout


def test_lockout_after_max_failures_until_an_administrator_unlocks(srv, root):
    dn, pw = student("lock1"), password("lock1")
    wrong_binds(srv, dn, MAX_FAILURES)
    # the right password no longer works (immediately after the last failure)
    c = bind3(srv, dn, pw)
    assert c.result["result"] == INVALID_CREDENTIALS, c.result
    c.unbind()
    ops = entry_ops(root, dn)
    assert len(ops["pwdaccountlockedtime"]) == 1 and ops["pwdaccountlockedtime"][0].endswith(b"Z")
    assert len(ops["pwdfailuretime"]) == MAX_FAILURES
    # still locked a little later (lockout_duration 0: until an administrator unlocks)
    time.sleep(1.1)
    c = bind3(srv, dn, pw)
    assert c.result["result"] == INVALID_CREDENTIALS
    c.unbind()
    # the account holder does not see the lockout state; the district admin does
    distadmin = bind3(srv, staff("distadmin"), password("distadmin"))
    distadmin.search(dn, "(objectClass=*)", BASE, attributes=["pwdAccountLockedTime"])
    assert distadmin.response[0]["raw_attributes"].get("pwdAccountLockedTime")
    # a site's sub-administrator may clear it too ('site-group=student-email-admins write');
    # a user with no role may not
    adminnone = bind3(srv, staff("adminnone"), password("adminnone"))
    adminnone.modify(dn, {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]})
    assert adminnone.result["result"] in (32, 50), adminnone.result
    adminnone.unbind()
    assert distadmin.modify(dn, {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]}), distadmin.result
    distadmin.unbind()
    assert "pwdaccountlockedtime" not in entry_ops(root, dn)
    c = bind3(srv, dn, pw)
    assert c.result["result"] == SUCCESS, c.result
    assert search_code(c)[0] == SUCCESS
    c.unbind()
    # a successful bind forgets the failures
    deadline = time.monotonic() + 5
    while "pwdfailuretime" in entry_ops(root, dn) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "pwdfailuretime" not in entry_ops(root, dn)


def test_fewer_failures_than_the_limit_do_not_lock(srv, root):
    dn, pw = student("lock2"), password("lock2")
    wrong_binds(srv, dn, MAX_FAILURES - 1)
    c = bind3(srv, dn, pw)
    assert c.result["result"] == SUCCESS, c.result
    c.unbind()
    assert "pwdaccountlockedtime" not in entry_ops(root, dn)
    # the success reset the count: another MAX_FAILURES - 1 failures still do not lock
    deadline = time.monotonic() + 5
    while "pwdfailuretime" in entry_ops(root, dn) and time.monotonic() < deadline:
        time.sleep(0.05)
    wrong_binds(srv, dn, MAX_FAILURES - 1)
    c = bind3(srv, dn, pw)
    assert c.result["result"] == SUCCESS, c.result
    c.unbind()


def test_root_unlocks_too(srv, root):
    dn, pw = student("locked1"), password("locked1")  # locked by the first test (or now)
    if "pwdaccountlockedtime" not in entry_ops(root, dn):
        wrong_binds(srv, dn, MAX_FAILURES)
    assert bind3(srv, dn, pw).result["result"] == INVALID_CREDENTIALS
    assert root.modify(dn, {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]}), root.result
    c = bind3(srv, dn, pw)
    assert c.result["result"] == SUCCESS, c.result
    c.unbind()


@pytest.fixture(scope="module")
def timed_srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("ppolicy-timed"), policy={"lockout_duration": 2})
    yield s
    s.stop()


def test_lockout_with_a_duration_ends_by_itself(timed_srv):
    dn, pw = student("lock1"), password("lock1")
    wrong_binds(timed_srv, dn, MAX_FAILURES)
    assert bind3(timed_srv, dn, pw).result["result"] == INVALID_CREDENTIALS
    time.sleep(2.5)
    c = bind3(timed_srv, dn, pw)
    assert c.result["result"] == SUCCESS, c.result
    c.unbind()


# ----------------------------------------------------------------------------- must change after reset


def test_must_change_after_reset(srv, root):
    dn = student("s1")
    admin1 = bind3(srv, staff("admin1"), password("admin1"))
    generated = admin1.extend.standard.modify_password(dn, None, None)
    admin1.unbind()
    assert isinstance(generated, str) and len(generated) >= 12
    assert entry_ops(root, dn)["pwdreset"] == [b"TRUE"]

    conn = pl(srv)
    try:
        _, _, _, ctrls = conn.simple_bind_s(dn, generated, serverctrls=[PasswordPolicyControl()])
        pp = [c for c in ctrls if c.controlType == PasswordPolicyControl.controlType]
        assert len(pp) == 1
        assert PasswordPolicyError(pp[0].error).prettyPrint() == "changeAfterReset"
        with pytest.raises(ldap.UNWILLING_TO_PERFORM) as err:
            conn.search_s(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=s1)", ["uid"])
        assert err.value.args[0]["info"] == RESTRICTED
        with pytest.raises(ldap.UNWILLING_TO_PERFORM):
            conn.modify_s(dn, [(ldap.MOD_REPLACE, "description", [b"x"])])
        assert conn.whoami_s() == f"dn:{dn}"
        # the user chooses a password: the restriction ends on this very connection
        conn.passwd_s(dn, generated, "S1-chosen-password")
        got = conn.search_s(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=s1)", ["uid"])
        assert [d for d, _ in got] == [dn]
    finally:
        conn.unbind_s()
    ops = entry_ops(root, dn)
    assert "pwdreset" not in ops
    assert "pwdchangedtime" in ops
    # a new session with the new password: no ppolicy error, nothing restricted
    conn = pl(srv)
    try:
        _, _, _, ctrls = conn.simple_bind_s(dn, "S1-chosen-password", serverctrls=[PasswordPolicyControl()])
        assert all(c.error is None for c in ctrls if c.controlType == PasswordPolicyControl.controlType)
        assert conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["uid"])[0][0] == dn
    finally:
        conn.unbind_s()


def test_reset_without_the_control_still_restricts(srv, root):
    dn = student("reset1")
    admin12 = bind3(srv, staff("admin12"), password("admin12"))
    generated = admin12.extend.standard.modify_password(dn, None, None)
    admin12.unbind()
    conn = bind3(srv, dn, generated)
    assert conn.result["result"] == SUCCESS
    assert search_code(conn) == (UNWILLING, RESTRICTED)
    conn.unbind()


# ----------------------------------------------------------------------------- quality and history


def _change(conn, dn, old, new):
    ok = conn.extend.standard.modify_password(dn, old, new)
    return ok, conn.result["result"], conn.result["message"]


def test_quality_and_history(srv):
    dn, p0 = student("quality1"), password("quality1")
    conn = bind3(srv, dn, p0)
    assert conn.result["result"] == SUCCESS
    try:
        ok, code, msg = _change(conn, dn, p0, "Sh0rt!")
        assert (ok, code) == (False, CONSTRAINT_VIOLATION) and "too short" in msg
        ok, code, msg = _change(conn, dn, p0, "quality1")  # 8 characters: the uid
        assert (ok, code) == (False, CONSTRAINT_VIOLATION) and "uid" in msg
        ok, code, msg = _change(conn, dn, p0, "QUALITY1@students.district.example")  # the mail, any case
        assert (ok, code) == (False, CONSTRAINT_VIOLATION) and "mail" in msg
        ok, code, msg = _change(conn, dn, p0, p0)  # the current password
        assert (ok, code) == (False, CONSTRAINT_VIOLATION) and "used recently" in msg

        pa, pb, pc = "First-new-pw-A", "Second-new-pw-B", "Third-new-pw-C"
        assert _change(conn, dn, p0, pa)[:2] == (True, SUCCESS)
        assert _change(conn, dn, pa, pb)[:2] == (True, SUCCESS)
        # history 2: p0 and pa are remembered
        for reuse in (pa, p0, pb):
            ok, code, msg = _change(conn, dn, pb, reuse)
            assert (ok, code) == (False, CONSTRAINT_VIOLATION), reuse
            assert "used recently" in msg
        assert _change(conn, dn, pb, pc)[:2] == (True, SUCCESS)
        # now pa and pb are the last two: p0 has fallen out of the history
        assert _change(conn, dn, pc, p0)[:2] == (True, SUCCESS)
        # a wrong old password is refused as such
        ok, code, _ = _change(conn, dn, "not-the-old-one", "Fourth-new-pw-D")
        assert (ok, code) == (False, INVALID_CREDENTIALS)
    finally:
        conn.unbind()
    # an administrator's reset with a chosen password is held to the same rules
    admin1 = bind3(srv, staff("admin1"), password("admin1"))
    ok, code, msg = _change(admin1, dn, None, "short")
    assert (ok, code) == (False, CONSTRAINT_VIOLATION) and "too short" in msg
    admin1.unbind()
    # the account still works with p0
    c = bind3(srv, dn, p0)
    assert c.result["result"] == SUCCESS
    c.unbind()


def test_python_ldap_passwd_quality(srv):
    dn, pw = student("s3"), password("s3")
    conn = pl(srv)
    try:
        conn.simple_bind_s(dn, pw)
        with pytest.raises(ldap.CONSTRAINT_VIOLATION):
            conn.passwd_s(dn, pw, "tiny")
        with pytest.raises(ldap.CONSTRAINT_VIOLATION):
            conn.passwd_s(dn, pw, "s3")
        with pytest.raises(ldap.CONSTRAINT_VIOLATION):
            conn.passwd_s(dn, pw, pw)
        conn.passwd_s(dn, pw, "S3-new-password")
    finally:
        conn.unbind_s()


# ----------------------------------------------------------------------------- hashing


def _ssha(pw: str) -> str:
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(pw.encode() + salt).digest() + salt).decode()


def test_clear_password_written_by_modify_is_stored_hashed(srv, root):
    dn = student("hashme")
    clear = "Clear-text-written-1"
    assert root.modify(dn, {"userPassword": [(MODIFY_REPLACE, [clear])]}), root.result
    stored = entry_ops(root, dn)["userpassword"]
    assert len(stored) == 1 and stored[0].startswith(b"{ARGON2}$argon2id$")
    assert clear.encode() not in stored[0]
    c = bind3(srv, dn, clear)
    assert c.result["result"] == SUCCESS
    c.unbind()
    # a value that is already a hash is stored as given (migrations), and verifies
    ssha = _ssha("Migrated-pw-123")
    assert root.modify(dn, {"userPassword": [(MODIFY_REPLACE, [ssha])]}), root.result
    assert entry_ops(root, dn)["userpassword"][0].startswith(b"{")
    c = bind3(srv, dn, "Migrated-pw-123")
    assert c.result["result"] == SUCCESS
    c.unbind()


@requires_ldap_utils
def test_clear_password_written_by_ldapmodify_is_stored_hashed(srv, root):
    dn = student("hashme")
    clear = "Clear-text-by-ldapmodify-2"
    ldaputil.ok(ldaputil.modify(srv, f"dn: {dn}\nchangetype: modify\nreplace: userPassword\n"
                                     f"userPassword: {clear}\n"))
    stored = entry_ops(root, dn)["userpassword"]
    assert len(stored) == 1 and stored[0].startswith(b"{ARGON2}")
    ldaputil.ok(ldaputil.tool(srv, "ldapwhoami", "-D", dn, "-w", clear))


# ----------------------------------------------------------------------------- the policy on plain modify


def test_policy_applies_to_userpassword_written_by_modify(srv, root):
    """ldapmodify of userPassword is held to the same rules as Password Modify
    (otherwise `replace: userPassword` would skip quality, history and must-change)."""
    dn, pw = student("s12"), password("s12")
    conn = bind3(srv, dn, pw)
    try:
        for bad, why in (("short", "too short"), ("S12@students.district.example", "mail"),
                         (pw, "used recently"), (_ssha("Hashed-value-99"), "hashed")):
            assert conn.modify(dn, {"userPassword": [(MODIFY_REPLACE, [bad])]}) is False, bad
            assert conn.result["result"] == CONSTRAINT_VIOLATION, (bad, conn.result)
            assert why in conn.result["message"]
        assert conn.modify(dn, {"userPassword": [(MODIFY_REPLACE, ["S12-chosen-by-modify"])]}), conn.result
    finally:
        conn.unbind()
    ops = entry_ops(root, dn)
    assert ops["userpassword"][0].startswith(b"{ARGON2}")
    assert "pwdchangedtime" in ops and "pwdreset" not in ops
    assert len(ops["pwdhistory"]) == 1
    # an administrator's modify is a reset: the user must change it at the next login
    admin1 = bind3(srv, staff("admin1"), password("admin1"))
    try:
        assert admin1.modify(dn, {"userPassword": [(MODIFY_REPLACE, ["Set-by-admin1-pw"])]}), admin1.result
        assert entry_ops(root, dn)["pwdreset"] == [b"TRUE"]
        # and only for ENABLED accounts
        admin1.modify(student("sD"), {"userPassword": [(MODIFY_REPLACE, ["Set-by-admin1-pw"])]})
        assert admin1.result["result"] == UNWILLING, admin1.result
        assert "only an ENABLED account" in admin1.result["message"]
    finally:
        admin1.unbind()
    c = bind3(srv, dn, "Set-by-admin1-pw")
    assert c.result["result"] == SUCCESS
    assert search_code(c) == (UNWILLING, RESTRICTED)
    c.unbind()


# ----------------------------------------------------------------------------- weak passwords


def test_weak_passwords_refused_with_a_reason(srv, root):
    """password_policy.check_common (on by default): a student's own Password Modify to a
    repeated character, a run of digits or keys, a common password or the student's own
    name is refused (constraintViolation) with the reason; a good password works."""
    dn = f"uid=mquintero,{STUDENTS}"
    assert root.add(dn, ["inetOrgPerson", "rollcallAccount", "rollcallStudent"], {
        "uid": "mquintero", "cn": "Marisol Quintero", "givenName": "Marisol", "sn": "Quintero",
        "mail": "mquintero@students.district.example", "employeeNumber": "000777s777",
        "departmentNumber": "1111", "rollcallAccountStatus": "ENABLED", "rollcallGrade": "05",
        "userPassword": "Start-Pw-for-mq-2025"}), root.result
    conn = bind3(srv, dn, "Start-Pw-for-mq-2025")
    assert conn.result["result"] == SUCCESS
    try:
        for weak, why in (("aaaaaaaa", "repeated"), ("12345678", "sequence"), ("qwertyui", "sequence"),
                          ("abcdefgh", "sequence"), ("password1", "common"), ("Password123!", "common"),
                          ("iloveyou", "common"), ("Marisol2025!", "name"), ("quintero-99", "name"),
                          ("xx-MQUINTERO", "name"), ("abababab", "repeated")):
            ok, code, msg = _change(conn, dn, "Start-Pw-for-mq-2025", weak)
            assert (ok, code) == (False, CONSTRAINT_VIOLATION), weak
            assert why in msg, (weak, msg)
        assert _change(conn, dn, "Start-Pw-for-mq-2025", "Blue-Tractor-Harbor-41")[:2] == (True, SUCCESS)
    finally:
        conn.unbind()
    c = bind3(srv, dn, "Blue-Tractor-Harbor-41")
    assert c.result["result"] == SUCCESS
    c.unbind()


def test_weak_password_check_can_be_turned_off(tmp_path):
    from directory.core.ppolicy import PasswordPolicy, PolicyConfig, weakness
    from directory.core.entry import Entry

    assert weakness("aaaaaaaa") and weakness("zxcvbnm1") and weakness("Summer2025!")
    assert weakness("Correct-Horse-Battery") is None
    entry = Entry("uid=x,ou=people", "uid=x,ou=people", {"uid": [b"x"]})
    PasswordPolicy(PolicyConfig(check_common=False)).check_quality(entry, b"aaaaaaaa")
    with pytest.raises(Exception, match="repeated"):
        PasswordPolicy(PolicyConfig()).check_quality(entry, b"aaaaaaaa")
