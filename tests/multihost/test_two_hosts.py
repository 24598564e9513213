"""Two frontends, A and B, on two test hosts over one PostgreSQL: what one host does,
the other sees at once; checks that guard a value (unique IDs, lockout, access) hold
when both hosts write at the same moment; a crash of one host loses nothing."""
import threading
import time

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW
from tests.protocol.district import bind, password, role_group, staff, student

SUCCESS, CONSTRAINT_VIOLATION, NO_SUCH_OBJECT, INVALID_CREDENTIALS = 0, 19, 32, 49
INSUFFICIENT_ACCESS, ALREADY_EXISTS = 50, 68
STUDENTS_OU = student("x").split(",", 1)[1]


def root(srv):
    return Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)


def sn_of(conn, dn):
    assert conn.search(dn, "(objectClass=*)", "BASE", attributes=["sn"]), conn.result
    return conn.response[0]["attributes"]["sn"][0]


def add_person(conn, uid, district_id=None, base=STUDENTS_OU):
    attrs = {"uid": uid, "cn": f"Test {uid}", "sn": "Test"}
    if district_id:
        attrs["employeeNumber"] = district_id
    conn.add(f"uid={uid},{base}", ["inetOrgPerson"], attrs)
    return conn.result["result"]


def at_once(*calls):
    """Run the calls in threads released together; their results in order."""
    start = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, fn):
        start.wait()
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_a_write_on_a_is_seen_on_b_at_its_next_operation(pair):
    a, b = pair
    on_a, on_b = root(a), root(b)
    dn = student("s1")
    for i in range(25):
        sn_of(on_b, dn)  # B has the entry in its cache
        assert on_a.modify(dn, {"sn": [(MODIFY_REPLACE, [f"Seen{i}"])]}), on_a.result
        assert sn_of(on_b, dn) == f"Seen{i}", f"round {i}: B answered from a stale cache"
    # an add and a delete too, and an index look-up on B
    assert add_person(on_a, "mhnew") == SUCCESS
    assert on_b.search(STUDENTS_OU, "(uid=mhnew)", attributes=["uid"]) and len(on_b.entries) == 1
    assert on_a.delete(f"uid=mhnew,{STUDENTS_OU}"), on_a.result
    on_b.search(STUDENTS_OU, "(uid=mhnew)", attributes=["uid"])
    assert on_b.entries == []


def test_the_same_new_account_on_both_hosts_at_once_exists_once(pair):
    a, b = pair
    on_a, on_b = root(a), root(b)
    for i in range(8):
        # the same DN: one is added, the other finds it there (entryAlreadyExists)
        got = at_once(lambda: add_person(on_a, f"race{i}"), lambda: add_person(on_b, f"race{i}"))
        assert sorted(got) == [SUCCESS, ALREADY_EXISTS], f"round {i}: {got}"
        # one district ID for two new people: the second is refused (one person each)
        did = f"77777{i}x777"
        got = at_once(lambda: add_person(on_a, f"ida{i}", did), lambda: add_person(on_b, f"idb{i}", did))
        assert sorted(got) == [SUCCESS, CONSTRAINT_VIOLATION], f"round {i}: {got}"
        # one username in two OUs (a student and a staff member): one account per username
        got = at_once(lambda: add_person(on_a, f"uname{i}"),
                      lambda: add_person(on_b, f"uname{i}", base=staff("x").split(",", 1)[1]))
        assert sorted(got) == [SUCCESS, CONSTRAINT_VIOLATION], f"round {i}: {got}"
    on_a.search(STUDENTS_OU, "(employeeNumber=77777*)", attributes=["uid"])
    assert len(on_a.entries) == 8


def test_failed_binds_on_both_hosts_count_towards_one_lockout(pair):
    a, b = pair
    dn = student("lock1")
    # max_failures is 3 (tests.protocol.district.DEFAULT_POLICY): two wrong on A, one on B
    for srv in (a, b, a):
        c = Connection(Server(srv.url), dn, "definitely-wrong-pw")
        assert not c.bind() and c.result["result"] == INVALID_CREDENTIALS
    for srv in (a, b):
        c = Connection(Server(srv.url), dn, password("lock1"))
        assert not c.bind(), f"the account is not locked on {srv.url}"
        assert c.result["result"] == INVALID_CREDENTIALS
    on_b = root(b)
    on_b.search(dn, "(objectClass=*)", "BASE", attributes=["pwdAccountLockedTime", "pwdFailureTime"])
    attrs = on_b.response[0]["raw_attributes"]
    assert attrs.get("pwdAccountLockedTime") and len(attrs["pwdFailureTime"]) == 3


def test_removing_a_subadministrator_on_a_ends_their_rights_on_b(pair):
    a, b = pair
    target = student("s1")
    admin_on_b = bind(b, "admin1")  # bound on B before the change, and stays so
    assert admin_on_b.modify(target, {"description": [(MODIFY_REPLACE, ["before"])]}), admin_on_b.result
    on_a = root(a)
    group = role_group("student-email-admins", "1111")
    assert on_a.modify(group, {"member": [(MODIFY_DELETE, [staff("admin1")])]}), on_a.result
    assert not admin_on_b.modify(target, {"description": [(MODIFY_REPLACE, ["after"])]})
    # no right left to see the student either: noSuchObject, as on one host
    assert admin_on_b.result["result"] in (NO_SUCH_OBJECT, INSUFFICIENT_ACCESS), admin_on_b.result
    # and back: given again on A, usable on B at once
    assert on_a.modify(group, {"member": [(MODIFY_ADD, [staff("admin1")])]}), on_a.result
    assert admin_on_b.modify(target, {"description": [(MODIFY_REPLACE, ["again"])]}), admin_on_b.result


def test_kill_9_of_one_host_loses_no_acknowledged_write(pair):
    a, b = pair
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def writer(srv, prefix):
        try:
            conn = root(srv)
        except Exception:
            return
        i = 0
        while not stop.is_set():
            uid = f"{prefix}{i}"
            try:
                if add_person(conn, uid) == SUCCESS:
                    with lock:
                        acked.append(uid)
            except Exception:
                return  # the host is gone: its connection with it
            i += 1

    threads = [threading.Thread(target=writer, args=(srv, f"{name}{n}w"))
               for srv, name in ((a, "a"), (b, "b")) for n in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(1 for uid in acked if uid.startswith("a")) < 10:
        time.sleep(0.1)
    a.kill()  # SIGKILL while its writers are busy: no shutdown of any kind
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert sum(1 for uid in acked if uid.startswith("a")) > 0, "A acknowledged nothing before the kill"
    on_b = root(b)
    found = set()
    for prefix in ("a0w", "a1w", "b0w", "b1w"):
        on_b.search(STUDENTS_OU, f"(uid={prefix}*)", attributes=["uid"], paged_size=500)
        found.update(str(e.uid) for e in on_b.entries)
    lost = [uid for uid in acked if uid not in found]
    assert not lost, f"{len(lost)} acknowledged adds are missing: {lost[:5]}"
