"""One write pipeline: Password Modify is a modify of userPassword through the
overlays (the password policy's among them) and the audit log; the server's own
writes (bind bookkeeping, rehash) are internal writes with a system identity the
audit log names, and they leave modifiersName/modifyTimestamp alone."""
import base64
import hashlib
import json
import threading
import time

import pytest
from ldap3 import BASE, MODIFY_ADD, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW
from tests.protocol.district import (
    STAFF, STAFF_UIDS, STUDENT_DATA, dn_of, make_server, password, role_group, staff, student,
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("pipeline"), policy={"max_failures": 100})
    yield s
    s.stop()


def audit(srv, dn):
    out = srv.rollcall("audit", "--dn", dn, "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def read(srv, dn, attrs):
    c = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
    c.search(dn, "(objectClass=*)", BASE, attributes=attrs)
    got = {k: v for k, v in c.response[0]["raw_attributes"].items() if v}
    c.unbind()
    return got


def test_password_modify_is_an_audited_modify_through_the_policy_overlay(srv):
    dn = student("s1")
    before = read(srv, dn, ["pwdHistory", "userPassword"])
    admin = Connection(Server(srv.url), staff("admin1"), password("admin1"), auto_bind=True)
    new = admin.extend.standard.modify_password(dn, None, None)
    assert isinstance(new, str), admin.result
    admin.unbind()
    after = read(srv, dn, ["pwdHistory", "pwdReset", "pwdChangedTime", "modifiersName", "userPassword"])
    # the policy overlay: the old hash joined the history; an administrator's reset
    assert len(after.get("pwdHistory", [])) == len(before.get("pwdHistory", [])) + 1
    assert before["userPassword"][0] in after["pwdHistory"][-1]
    assert after["pwdReset"] == [b"TRUE"] and after["pwdChangedTime"]
    assert after["modifiersName"] == [staff("admin1").encode()]
    row = [r for r in audit(srv, dn) if r["op"] == "passwordModify"][-1]
    assert row["who"] == staff("admin1").lower()
    assert row["detail"]["changes"] == ["replace:userPassword"]
    assert row["detail"]["generated"] is True and row["detail"]["self"] is False
    assert new not in json.dumps(audit(srv, dn))  # never the password


def test_bind_bookkeeping_is_an_internal_write_named_in_the_audit_log(srv):
    dn = student("s2")
    stamp = read(srv, dn, ["modifyTimestamp", "modifiersName"])
    time.sleep(1.1)  # a write would now change modifyTimestamp
    c = Connection(Server(srv.url), dn, "not-the-password")
    c.open()
    assert not c.bind()
    c.unbind()
    deadline = time.monotonic() + 5
    while not [r for r in audit(srv, dn) if r["op"] == "bindFailure"] and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = [r for r in audit(srv, dn) if r["op"] == "bindFailure"]
    assert rows and rows[-1]["who"] == "cn=ppolicy,cn=internal"
    assert rows[-1]["detail"]["failures"] == 1 and rows[-1]["detail"]["from"].startswith("127.0.0.1:")
    after = read(srv, dn, ["modifyTimestamp", "modifiersName", "pwdFailureTime"])
    assert after["pwdFailureTime"]
    assert after["modifyTimestamp"] == stamp["modifyTimestamp"]    # bookkeeping, not a change by anyone
    assert after.get("modifiersName") == stamp.get("modifiersName")
    # the right password clears the failures, audited the same way
    ok = Connection(Server(srv.url), dn, password("s2"), auto_bind=True)
    ok.unbind()
    deadline = time.monotonic() + 5
    while "pwdFailureTime" in read(srv, dn, ["pwdFailureTime"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "pwdFailureTime" not in read(srv, dn, ["pwdFailureTime"])
    assert [r for r in audit(srv, dn) if r["op"] == "bindSuccess"][-1]["who"] == "cn=ppolicy,cn=internal"


def test_rehash_is_an_internal_write_named_in_the_audit_log(srv):
    dn = student("hashme")
    root = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
    # a migrated {SSHA} hash of the account's password, as slappasswd makes it
    salt = b"abcd"
    ssha = b"{SSHA}" + base64.b64encode(hashlib.sha1(password("hashme").encode() + salt).digest() + salt)
    assert root.modify(dn, {"userPassword": [(2, [ssha])]}), root.result
    root.unbind()
    stamp = read(srv, dn, ["modifyTimestamp"])
    c = Connection(Server(srv.url), dn, password("hashme"), auto_bind=True)
    c.unbind()
    deadline = time.monotonic() + 10
    while read(srv, dn, ["userPassword"])["userPassword"][0].startswith(b"{SSHA}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read(srv, dn, ["userPassword"])["userPassword"][0].startswith(b"{ARGON2}")
    assert read(srv, dn, ["modifyTimestamp"]) == stamp
    row = [r for r in audit(srv, dn) if r["op"] == "rehash"][-1]
    assert row["who"] == "cn=rehash,cn=internal" and row["detail"] == {"userPassword": "rehashed"}


def test_sign_ins_do_not_queue_behind_password_changes(tmp_path):
    """Password changes (history and quality verifications, new hashes) run in a pool
    of their own: with a queue of them in flight, a sign-in is verified at once instead
    of waiting for the whole queue (it waited 14 s behind a reset storm in
    scripts/bench-writes when both shared one pool)."""
    argon2 = {"time_cost": 2, "memory_cost": 65536, "parallelism": 1}  # production cost: ~0.1 s a hash
    s = make_server(tmp_path, extra={"passwords": {"scheme": "ARGON2", "argon2": argon2,
                                                   "hash_threads": 1, "change_threads": 1}})
    try:
        admin = Connection(Server(s.url), ROOT_DN, ROOT_PW, auto_bind=True)
        # the district's passwords were loaded in clear; give them slow hashes first
        targets = [dn_of(u) for u in STUDENT_DATA if STUDENT_DATA[u][1] == "ENABLED"] + \
                  [dn_of(u) for u in STAFF_UIDS if u not in ("admindis",)]
        conns = [Connection(Server(s.url), ROOT_DN, ROOT_PW, auto_bind=True, receive_timeout=120)
                 for _ in targets]
        done = []

        def change(conn, dn, n):
            conn.extend.standard.modify_password(dn, None, f"Storm-{n}-pw-2026")
            done.append(time.monotonic())

        threads = [threading.Thread(target=change, args=(c, dn, n)) for n, (c, dn) in enumerate(zip(conns, targets))]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the changes are queued in their pool
        t0 = time.monotonic()
        sso = Connection(Server(s.url), dn_of("sso-portal"), password("sso-portal"))
        assert sso.bind(), sso.result
        signed_in = time.monotonic()
        for t in threads:
            t.join(120)
        assert len(done) == len(targets)
        # the queue of changes took seconds; the sign-in waited for none of it
        storm = max(done) - t0
        assert storm > 1.0, storm
        assert signed_in - t0 < storm / 4, (signed_in - t0, storm)
        assert sum(1 for d in done if d > signed_in) >= len(targets) // 2, (len(targets), sorted(done), signed_in)
        for c in conns + [admin, sso]:
            c.unbind()
    finally:
        s.stop()


def test_refint_rewrites_are_audited_as_refint(srv):
    """Deleting an entry removes it from the groups that named it (referential
    integrity): that rewrite of the group is in the audit log, by the refint identity."""
    root = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
    dn = f"uid=leaver,{STAFF}"
    group = role_group("principals", "3333")
    assert root.add(dn, ["inetOrgPerson"], {"uid": "leaver", "cn": "Lea Ver", "sn": "Ver"}), root.result
    assert root.modify(group, {"member": [(MODIFY_ADD, [dn])]}), root.result
    assert root.delete(dn), root.result
    root.unbind()
    assert dn.encode() not in read(srv, group, ["member"])["member"]
    row = [r for r in audit(srv, group) if r["detail"].get("refint")][-1]
    assert row["who"] == "cn=refint,cn=internal"
    assert row["detail"] == {"changes": ["replace:member"], "refint": "member deleted", "member": dn}
    assert read(srv, group, ["modifiersName"])["modifiersName"] == [b"cn=refint,cn=internal"]
