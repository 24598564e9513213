"""Two frontends, A and B, on two test hosts over one PostgreSQL: what one host does,
the other sees at once; checks that guard a value (unique IDs, lockout, access) hold
when both hosts write at the same moment; a crash of one host loses nothing."""
import threading
import time

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, Connection, Server

from tests import pgcluster
from tests.conftest import ROOT_DN, ROOT_PW
from tests.protocol.district import bind, password, role_group, staff, student

from .conftest import frontends

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


class Writers:
    """Threads adding entries through each frontend: what was acknowledged, and
    every result code seen (a frontend must answer, never crash nor hang)."""

    def __init__(self, servers, per_server=2):
        self.acked, self.codes, self.lock, self.stop = [], set(), threading.Lock(), threading.Event()
        self.prefixes = {f"{name}{n}w": srv for name, srv in servers.items() for n in range(per_server)}
        self.threads = [threading.Thread(target=self.run, args=(srv, prefix), daemon=True)
                        for prefix, srv in self.prefixes.items()]

    def run(self, srv, prefix):
        i = 0
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = root(srv)
                code = add_person(conn, f"{prefix}{i}")
            except Exception:
                conn = None  # the frontend went away: connect again
                time.sleep(0.1)
                continue
            with self.lock:
                self.codes.add(code)
                if code == SUCCESS:
                    self.acked.append(f"{prefix}{i}")
            if code != SUCCESS:
                time.sleep(0.05)
            i += 1

    def count(self, prefix=""):
        with self.lock:
            return sum(1 for uid in self.acked if uid.startswith(prefix))

    def wait_for(self, n, prefix="", timeout=30):
        start = self.count(prefix)
        deadline = time.monotonic() + timeout
        while self.count(prefix) < start + n:
            assert time.monotonic() < deadline, f"no {n} more acknowledged writes{' via ' + prefix if prefix else ''}"
            time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def missing(self, srv):
        found = set()
        conn = root(srv)
        for prefix in self.prefixes:
            conn.search(STUDENTS_OU, f"(uid={prefix}*)", attributes=["uid"], paged_size=1000)
            found.update(str(e.uid) for e in conn.entries)
        return [uid for uid in self.acked if uid not in found]


def test_postgresql_away_for_seconds_then_both_hosts_serve_again(pair, db_server):
    a, b = pair
    with Writers({"a": a, "b": b}) as w:
        w.wait_for(5, "a")
        w.wait_for(5, "b")
        readers = [root(srv) for srv in (a, b)]
        db_server.stop("fast")
        time.sleep(3)
        away = w.codes.copy()
        # while it is away: a search is answered (unavailable), not left hanging
        for c in readers:
            c.search(STUDENTS_OU, "(uid=s1)", attributes=["uid"])
            assert c.result["result"] in (51, 52), c.result
        db_server.start_again()
        w.wait_for(5, "a")  # both frontends write again, without a restart
        w.wait_for(5, "b")
    assert w.codes <= {SUCCESS, 51, 52}, f"result codes seen: {sorted(w.codes)}"
    assert away <= {SUCCESS, 51, 52}
    assert not w.missing(b), "acknowledged writes are missing"


def test_failover_to_a_synchronous_standby_loses_no_acknowledged_write(tmp_path, network):
    primary = pgcluster.PGCluster.start(listen_addresses=network.gateway)
    standby = None
    a = b = None
    try:
        dbname = primary.create_database("fo").rsplit("dbname=", 1)[1]
        standby = primary.start_standby(network.gateway)
        # the multi-host connection string: whichever of the two accepts writes
        conninfo = (f"host={network.gateway},{network.gateway} port={primary.port},{standby.port} "
                    f"user=postgres dbname={dbname} target_session_attrs=read-write connect_timeout=2")
        a, b = frontends(tmp_path, network, conninfo)
        with Writers({"a": a, "b": b}) as w:
            w.wait_for(10, "a")
            w.wait_for(10, "b")
            primary.stop("immediate")  # the primary's host dies
            before = len(w.acked)
            standby.promote()
            w.wait_for(5, "a", timeout=60)  # both frontends write to the new primary
            w.wait_for(5, "b", timeout=60)
        assert before > 0
        assert w.codes <= {SUCCESS, 51, 52}, f"result codes seen: {sorted(w.codes)}"
        assert not w.missing(b), "acknowledged writes are missing after the failover"
    finally:
        for srv in (a, b):
            if srv is not None:
                srv.stop()
        for cluster in (standby, primary):
            if cluster is not None:
                cluster.teardown()
