"""The verified-password cache (passwords.VerifiedCache, `passwords.verified_cache_seconds`)
against real servers and real clients: a repeated bind of an {ARGON2} account is
checked by HMAC (the metrics count a cache hit and no new slow verification), and
every write that touches the entry drops it, in the process that made the write, in
another worker process and in another frontend over PostgreSQL; a failed bind drops
it too; and it never lets a bind skip the password policy (a wrong password, a
disabled or locked account fail at once)."""
import subprocess

import pytest
from ldap3 import MODIFY_DELETE, MODIFY_REPLACE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, free_ports, requires_ldap_utils
from tests.protocol.district import make_server, password, student
from tests.protocol.test_metrics import scrape
from tests.protocol.test_workers import pids_serving

HIT = ("rollcall_bind_cache_lookups_total", (("outcome", "hit"),))
MISS = ("rollcall_bind_cache_lookups_total", (("outcome", "miss"),))
SLOW = ("rollcall_password_verifications_slow_total", ())


def moved(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


def server_with_metrics(workdir, **kw):
    port = free_ports(2)  # worker N reports on port + N
    extra = dict(kw.pop("extra", {}) or {})
    extra["metrics"] = {"listen": f"http://127.0.0.1:{port}"}
    srv = make_server(workdir, extra=extra, **kw)
    srv.metrics_url = f"http://127.0.0.1:{port}"
    srv.metrics_port = port
    return srv


def bind_result(srv, dn, pw) -> int:
    conn = Connection(Server(srv.url), dn, pw, receive_timeout=30)
    conn.open()
    conn.bind()
    code = conn.result["result"]
    conn.unbind()
    return code


def root(srv):
    conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, receive_timeout=30)
    conn.open()
    assert conn.bind(), conn.result
    return conn


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = server_with_metrics(tmp_path_factory.mktemp("bindcache"))
    yield s
    s.stop()


def test_repeated_binds_are_served_from_the_cache(srv):
    dn, pw = student("s1"), password("s1")
    before = scrape(srv.metrics_url)
    assert bind_result(srv, dn, pw) == 0  # the first bind: a full argon2 verification
    middle = scrape(srv.metrics_url)
    assert moved(before, middle, SLOW) == 1
    for _ in range(5):
        assert bind_result(srv, dn, pw) == 0
    after = scrape(srv.metrics_url)
    assert moved(middle, after, SLOW) == 0  # no argon2 run for the five
    assert moved(middle, after, HIT) == 5
    assert after[("rollcall_bind_cache_entries", ())] >= 1


def test_a_wrong_password_after_a_cached_right_one_fails_and_drops_it(srv):
    dn, pw = student("s2"), password("s2")
    assert bind_result(srv, dn, pw) == 0
    assert bind_result(srv, dn, pw) == 0  # cached now
    before = scrape(srv.metrics_url)
    assert bind_result(srv, dn, pw + "x") == 49
    assert bind_result(srv, dn, pw[:-1]) == 49
    assert bind_result(srv, dn, pw) == 0
    after = scrape(srv.metrics_url)
    # the two wrong ones and the right one after them: all full verifications (a
    # failed bind forgets the account's cached password)
    assert moved(before, after, SLOW) == 3
    assert moved(before, after, HIT) == 0


@requires_ldap_utils
def test_a_password_change_by_ldappasswd_makes_the_old_one_fail_at_once(srv):
    dn, old = student("s12"), password("s12")
    assert bind_result(srv, dn, old) == 0
    assert bind_result(srv, dn, old) == 0  # cached
    new = "Fresh-Start-2026!"
    r = subprocess.run(["ldappasswd", "-x", "-H", srv.url, "-D", ROOT_DN, "-w", ROOT_PW, "-s", new, dn],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert bind_result(srv, dn, old) == 49
    assert bind_result(srv, dn, new) == 0
    assert bind_result(srv, dn, new) == 0


def test_a_password_change_by_modify_makes_the_old_one_fail_at_once(srv):
    dn, old = student("s3"), password("s3")
    assert bind_result(srv, dn, old) == 0
    assert bind_result(srv, dn, old) == 0  # cached
    admin = root(srv)
    new = "Another-Start-2026!"
    assert admin.modify(dn, {"userPassword": [(MODIFY_REPLACE, [new])]}), admin.result
    assert bind_result(srv, dn, old) == 49
    assert bind_result(srv, dn, new) == 0


def test_disabling_or_locking_the_account_fails_the_cached_bind_at_once(srv):
    dn, pw = student("hashme"), password("hashme")
    admin = root(srv)
    assert bind_result(srv, dn, pw) == 0
    assert bind_result(srv, dn, pw) == 0  # cached
    assert admin.modify(dn, {"rollcallAccountStatus": [(MODIFY_REPLACE, ["DISABLED"])]}), admin.result
    assert bind_result(srv, dn, pw) == 49
    assert admin.modify(dn, {"rollcallAccountStatus": [(MODIFY_REPLACE, ["ENABLED"])]}), admin.result
    assert bind_result(srv, dn, pw) == 0
    assert bind_result(srv, dn, pw) == 0  # cached again
    assert admin.modify(dn, {"pwdAccountLockedTime": [(MODIFY_REPLACE, ["000001010000Z"])]}), admin.result
    assert bind_result(srv, dn, pw) == 49
    assert admin.modify(dn, {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]}), admin.result
    assert bind_result(srv, dn, pw) == 0


def test_any_write_to_the_entry_drops_it(srv):
    """Not only the password: a write that changes nothing a bind looks at (here the
    description) still makes the next bind a full verification."""
    dn, pw = student("quality1"), password("quality1")
    assert bind_result(srv, dn, pw) == 0
    assert bind_result(srv, dn, pw) == 0
    admin = root(srv)
    assert admin.modify(dn, {"description": [(MODIFY_REPLACE, ["changed"])]}), admin.result
    before = scrape(srv.metrics_url)
    assert bind_result(srv, dn, pw) == 0
    after = scrape(srv.metrics_url)
    assert moved(before, after, SLOW) == 1 and moved(before, after, HIT) == 0


def test_must_change_after_reset_is_still_restricted_on_a_cached_bind(srv):
    """The cache skips the hash only: an account whose password an administrator reset
    binds restricted (may only change its password), on the cached bind as on the first."""
    dn = student("reset1")
    admin = root(srv)
    pw = admin.extend.standard.modify_password(dn, None, None)  # a reset: generated, pwdReset
    assert pw, admin.result
    before = scrape(srv.metrics_url)
    for _ in range(2):  # the first bind verifies, the second is served from the cache
        conn = Connection(Server(srv.url), dn, pw, receive_timeout=30)
        conn.open()
        assert conn.bind(), conn.result
        conn.search(dn, "(objectClass=*)", "BASE", attributes=["uid"])
        assert conn.result["result"] == 53, conn.result  # unwillingToPerform: change your password first
        conn.unbind()
    after = scrape(srv.metrics_url)
    assert moved(before, after, SLOW) == 1 and moved(before, after, HIT) == 1


def test_a_cached_password_does_not_bind_a_pending_account(srv):
    """Back to PENDING (a re-activation of a never-activated account): no bind at all."""
    dn, pw = student("lock2"), password("lock2")
    assert bind_result(srv, dn, pw) == 0
    admin = root(srv)
    assert admin.modify(dn, {"rollcallAccountStatus": [(MODIFY_REPLACE, ["PENDING"])]}), admin.result
    assert bind_result(srv, dn, pw) == 49


def test_off_switch(tmp_path):
    s = server_with_metrics(tmp_path, extra={"passwords": {"verified_cache_seconds": 0}})
    try:
        dn, pw = student("s1"), password("s1")
        before = scrape(s.metrics_url)
        for _ in range(3):
            assert bind_result(s, dn, pw) == 0
        after = scrape(s.metrics_url)
        assert moved(before, after, SLOW) == 3
        assert after.get(("rollcall_bind_cache_entries", ()), 0) == 0 and moved(before, after, HIT) == 0
    finally:
        s.stop()


@pytest.mark.parametrize("passwords_section, key", [
    ({"verified_cache_seconds": -1}, "passwords.verified_cache_seconds"),
    ({"verified_cache_seconds": 90000}, "passwords.verified_cache_seconds"),
    ({"verified_cache_entries": "many"}, "passwords.verified_cache_entries"),
    ({"argon2": {"memory_cost": 4}}, "passwords.argon2.memory_cost"),
    ({"argon2": {"time_cost": 65}}, "passwords.argon2.time_cost"),
])
def test_the_config_keys_are_checked(tmp_path, passwords_section, key):
    s = make_server(tmp_path, start=False, load=False, extra={"passwords": passwords_section})
    r = s.rollcall("export", check=False)
    assert r.returncode == 2 and key in r.stderr, r.stderr


# -- another worker process ----------------------------------------------------------

@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    s = server_with_metrics(tmp_path_factory.mktemp("bindcache-workers"), extra={"server": {"workers": 2}})
    yield s
    s.stop()


def cached_in_both_workers(srv, dn, pw):
    """Bound connections that the two workers serve between them, each worker having
    verified the password once and cached it (rebinds stay on their worker)."""
    for _attempt in range(10):
        conns = []
        for _ in range(8):
            c = Connection(Server(srv.url), dn, pw, receive_timeout=30)
            c.open()
            assert c.bind(), c.result
            conns.append(c)
        if len(pids_serving(srv, conns, dn)) == 2:
            return conns
        for c in conns:
            c.unbind()
    pytest.fail("the kernel gave every connection to one worker ten times over")


def scrape_workers(srv):
    return [scrape(f"http://127.0.0.1:{srv.metrics_port + slot}") for slot in (0, 1)]


def test_a_write_through_another_worker_drops_it_in_every_worker(workers):
    dn, pw = student("s1"), password("s1")
    conns = cached_in_both_workers(workers, dn, pw)
    try:
        for c in conns:  # every worker has it now: rebinds are hits
            assert c.rebind(dn, pw), c.result
        admin = root(workers)  # (the root DN's own argon2 verification: before the count)
        before = scrape_workers(workers)
        assert admin.modify(dn, {"description": [(MODIFY_REPLACE, ["touched"])]}), admin.result
        for c in conns:
            assert c.rebind(dn, pw), c.result
        after = scrape_workers(workers)
        # one full verification in each worker (the first rebind after the write), the
        # others hits again
        assert [moved(b, a, SLOW) for b, a in zip(before, after)] == [1, 1]
        # and a password change through one worker: the old password fails in both
        new = "Worker-Change-2026!"
        assert admin.modify(dn, {"userPassword": [(MODIFY_REPLACE, [new])]}), admin.result
        for c in conns:
            assert not c.rebind(dn, pw)
            assert c.result["result"] == 49
    finally:
        for c in conns:
            c.unbind()


def test_disabling_through_another_worker_fails_the_cached_bind_everywhere(workers):
    dn, pw = student("s2"), password("s2")
    conns = cached_in_both_workers(workers, dn, pw)
    try:
        admin = root(workers)
        assert admin.modify(dn, {"rollcallAccountStatus": [(MODIFY_REPLACE, ["DISABLED"])]}), admin.result
        for c in conns:
            assert not c.rebind(dn, pw)
            assert c.result["result"] == 49
    finally:
        for c in conns:
            c.unbind()


# -- another frontend over PostgreSQL ------------------------------------------------

@pytest.fixture
def two_frontends(tmp_path, pg_cluster):
    store = {"backend": "postgresql", "conninfo": pg_cluster.create_database("bindcache")}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = server_with_metrics(tmp_path / "a", store=store)
    try:
        b = server_with_metrics(tmp_path / "b", store=store, load=False)
    except Exception:
        a.stop()
        raise
    yield a, b
    b.stop()
    a.stop()


def test_a_write_on_another_frontend_drops_it(two_frontends):
    a, b = two_frontends
    dn, pw = student("s1"), password("s1")
    assert bind_result(b, dn, pw) == 0
    assert bind_result(b, dn, pw) == 0  # cached on b
    admin = root(a)
    assert admin.modify(dn, {"description": [(MODIFY_REPLACE, ["from a"])]}), admin.result
    before = scrape(b.metrics_url)
    assert bind_result(b, dn, pw) == 0
    after = scrape(b.metrics_url)
    assert moved(before, after, SLOW) == 1 and moved(before, after, HIT) == 0
    assert bind_result(b, dn, pw) == 0  # cached again
    assert admin.modify(dn, {"rollcallAccountStatus": [(MODIFY_REPLACE, ["DISABLED"])]}), admin.result
    assert bind_result(b, dn, pw) == 49
    assert admin.modify(dn, {"rollcallAccountStatus": [(MODIFY_REPLACE, ["ENABLED"])]}), admin.result
    assert bind_result(b, dn, pw) == 0
    new = "Frontend-Change-2026!"
    assert admin.modify(dn, {"userPassword": [(MODIFY_REPLACE, [new])]}), admin.result
    assert bind_result(b, dn, pw) == 49
    assert bind_result(b, dn, new) == 0
