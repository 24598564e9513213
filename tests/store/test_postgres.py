"""What only the PostgreSQL store has to show: several processes (store objects) on
one database kept exact by NOTIFY and the invalidation table, writers serialised
across them, shared throttles under contention, versioned migrations, the config's
password rule, literal substring pieces, and a database that goes away and comes back.
A real PostgreSQL (tests/pgcluster.py), no mocks."""
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import psycopg
import pytest
import yaml

from directory.config import ConfigError, load_config
from directory.core.entry import Entry
from directory.core.errors import LDAPError
from directory.store import open_store, store_password
from directory.store.base import (JobLocked, Prefix, Range, StoreError, StoreUnavailable, StoreVersionError,
                                  Substring)
from directory.store.postgres import LATEST, migrate
from tests.conftest import ROOT, ROOT_HASH

from .test_contract import SUFFIX, add, person


def pg_config(conninfo, **kw):
    return SimpleNamespace(store_backend="postgresql", store_conninfo=conninfo, store_password_file=None,
                           store_pool_size=4, store_cache_ttl=kw.pop("cache_ttl", 300.0),
                           cache_entries=1000, **kw)


@pytest.fixture
def dsn(pg_cluster):
    return pg_cluster.create_database()


@pytest.fixture
def stores(dsn):
    opened = []

    def open_one(**kw):
        s = open_store(pg_config(dsn), **kw)
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        s.close()


def small_tree(store):
    with store.transaction() as tx:
        top = add(tx, SUFFIX, rows=[("objectclass", "eq", "organization")])
        people = add(tx, f"ou=people,{SUFFIX}", top, [("ou", "eq", "people")], ou=["people"])
        js = person(tx, "jsmith", people, "john smith")
    return top, people, js


def rewrite(store, entry, cn):
    with store.transaction() as tx:
        tx.replace(Entry(entry.dn, entry.ndn, {"cn": [cn.encode()]}, entry.id), [("cn", "eq", cn)])


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- two processes, one database ---------------------------------------------------------

def test_notify_evicts_the_other_process_without_refresh(stores):
    a, b = stores(), stores()
    _, _, js = small_tree(a)
    assert b.get(js.id).attrs["cn"] == [b"john smith"]  # cached by B
    rewrite(a, js, "changed by a")
    # B never calls refresh(): its listener thread got the NOTIFY and evicted the entry
    assert wait_for(lambda: b.get(js.id).attrs["cn"] == [b"changed by a"])
    assert b.get_by_ndn(js.ndn).attrs["cn"] == [b"changed by a"]


def test_refresh_catches_up_after_the_listener_connection_is_killed(stores, dsn):
    a, b = stores(), stores()
    _, _, js = small_tree(a)
    b.get(js.id)
    with psycopg.connect(dsn, autocommit=True) as admin:
        killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE application_name='rollcall-listener' AND datname=current_database()").fetchall()
        assert killed and all(r[0] for r in killed)
    rewrite(a, js, "while b was deaf")
    b.refresh()  # at B's next operation: from the table, whatever became of the notification
    assert b.get(js.id).attrs["cn"] == [b"while b was deaf"]
    # and the listener comes back by itself, catching up from the table
    c = stores()
    c.get(js.id)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name='rollcall-listener' AND datname=current_database()")
    rewrite(a, js, "after the reconnect")
    assert wait_for(lambda: c.get(js.id).attrs["cn"] == [b"after the reconnect"], timeout=10)


def test_a_pruned_invalidation_history_drops_the_whole_cache(stores, dsn):
    a, b = stores(), stores(listen=False)
    _, _, js = small_tree(a)
    b.get(js.id)
    rewrite(a, js, "one")
    with psycopg.connect(dsn, autocommit=True) as admin:  # as if B were KEEP_INVALIDATIONS behind
        admin.execute("DELETE FROM invalidation WHERE seq < (SELECT max(seq) FROM invalidation)")
    b.refresh()
    assert b.get(js.id).attrs["cn"] == [b"one"]


def test_cache_ttl_is_a_safety_net(stores, dsn):
    a = stores()
    b = stores(listen=False, cache_ttl=0.3)
    _, _, js = small_tree(a)
    b.get(js.id)
    with psycopg.connect(dsn, autocommit=True) as admin:  # a write that bypassed the store
        admin.execute("UPDATE entries SET data='{\"cn\": [\"behind our back\"]}' WHERE id=%s", (js.id,))
    assert b.get(js.id).attrs["cn"] == [b"john smith"]
    time.sleep(0.4)
    assert b.get(js.id).attrs["cn"] == [b"behind our back"]


def test_writers_of_two_processes_are_serialised(stores):
    """A check-then-act in both (the uniqueness overlay's shape): exactly one wins."""
    a, b = stores(), stores()
    _, people, _ = small_tree(a)
    barrier = threading.Barrier(2)
    outcome = {}

    def writer(store, name):
        barrier.wait()
        try:
            with store.transaction() as tx:
                if tx.index_eq("uid", "newkid"):
                    outcome[name] = "exists"
                    return
                time.sleep(0.3)  # the other writer would slip in here without the lock
                add(tx, f"uid=newkid-{name},{people.dn}", people, [("uid", "eq", "newkid")], uid=["newkid"])
                outcome[name] = "added"
        except Exception as exc:  # noqa: BLE001
            outcome[name] = repr(exc)

    threads = [threading.Thread(target=writer, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcome.values()) == ["added", "exists"], outcome
    assert len(a.index_eq("uid", "newkid")) == 1


def test_meta_counter_is_exact_under_concurrent_writers(stores):
    ss = [stores() for _ in range(3)]

    def bump(store):
        for _ in range(20):
            with store.transaction() as tx:
                tx.set_meta("requests.next", int(tx.get_meta("requests.next", "0")) + 1)

    threads = [threading.Thread(target=bump, args=(s,)) for s in ss]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ss[0].get_meta("requests.next") == "60"


def test_throttle_admit_is_atomic_across_processes(stores):
    ss = [stores() for _ in range(3)]
    admitted = []

    def go(store):
        for _ in range(10):
            if store.throttle_admit("request-src:10.1.1.1", 60, 7):
                admitted.append(1)

    threads = [threading.Thread(target=go, args=(s,)) for s in ss]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 7
    assert ss[1].throttle_count("request-src:10.1.1.1", 60) == 7


def test_job_lock_is_held_by_one_process(stores):
    a, b = stores(), stores()
    with a.job_lock("request-expire"):
        with pytest.raises(JobLocked, match="request-expire"):
            with b.job_lock("request-expire"):
                pass
        with b.job_lock("photos-publish"):  # another job's lock is separate
            pass
    with b.job_lock("request-expire"):
        pass


# -- substring pieces are literal --------------------------------------------------------

def test_backslash_percent_underscore_in_substrings_are_literal(stores):
    s = stores()
    with s.transaction() as tx:
        top = add(tx, SUFFIX)
        made = {}
        for i, cn in enumerate(["c:\\temp\\files", "c:xtempxfiles", "50% off sale", "500 off sale",
                                "first_last name", "firstxlast name"]):
            made[cn] = add(tx, f"cn={i},{SUFFIX}", top, [("cn", "sub", cn)], cn=[cn]).id
    assert s.candidates(Substring("cn", None, ("\\temp\\",), None)) == [made["c:\\temp\\files"]]
    assert s.candidates(Substring("cn", "50%", (), None)) == [made["50% off sale"]]
    assert s.candidates(Substring("cn", None, ("0% o",), None)) == [made["50% off sale"]]
    assert s.candidates(Substring("cn", "first_", (), None)) == [made["first_last name"]]
    assert s.candidates(Substring("cn", None, ("t_l",), "name")) == [made["first_last name"]]


def test_long_index_keys(stores):
    """A B-tree row must stay under ~2.7 kB; the index keeps a prefix, queries the whole key."""
    s = stores()
    long_a, long_b = "x" * 3000 + "a", "x" * 3000 + "b"
    with s.transaction() as tx:
        top = add(tx, SUFFIX)
        a = add(tx, f"cn=a,{SUFFIX}", top, [("description", "eq", long_a), ("description", "sub", long_a)])
        b = add(tx, f"cn=b,{SUFFIX}", top, [("description", "eq", long_b)])
    assert s.index_eq("description", long_a) == [a.id]
    assert s.index_eq("description", long_b) == [b.id]
    assert s.candidates(Range("description", long_b, None)) == [b.id]
    assert s.candidates(Range("description", None, long_a)) == [a.id]
    assert s.candidates(Substring("description", None, (), "xxa")) == [a.id]


def test_prefix_longer_than_the_indexed_part_of_a_key(stores):
    """The B-tree holds left(key, KEY_PREFIX): a longer prefix is re-checked whole."""
    s = stores()
    long_a, long_b = "x" * 3000 + "a" + "tail", "x" * 3000 + "b"
    with s.transaction() as tx:
        top = add(tx, SUFFIX)
        a = add(tx, f"cn=a,{SUFFIX}", top, [("description", "eq", long_a)])
        b = add(tx, f"cn=b,{SUFFIX}", top, [("description", "eq", long_b)])
        c = add(tx, f"cn=c,{SUFFIX}", top, [("description", "eq", "50%_\\ off")])
        add(tx, f"cn=d,{SUFFIX}", top, [("description", "eq", "500x\\ off")])
    assert s.candidates(Prefix("description", "x" * 3000 + "a")) == [a.id]
    assert sorted(s.candidates(Prefix("description", "x" * 2000))) == sorted([a.id, b.id])
    assert s.candidates_after(Prefix("description", "x" * 3000 + "b"), None, 5) == ([b.id], None)
    ids, after = s.candidates_after(Prefix("description", "x" * 3000), None, 1)
    assert ids == [a.id] and after is not None
    ids, after = s.candidates_after(Prefix("description", "x" * 3000), after, 1)
    assert ids == [b.id]  # a full batch: maybe more
    assert s.candidates_after(Prefix("description", "x" * 3000), after, 1) == ([], None)
    # LIKE's wildcards mean nothing to a prefix
    assert s.candidates(Prefix("description", "50%_\\")) == [c.id]
    assert s.candidates_after(Prefix("description", "50%"), None, 5) == ([c.id], None)


def test_a_bulk_load_leaves_planner_statistics(stores, dsn):
    s = stores()
    with s.bulk() as tx:
        top = add(tx, SUFFIX)
        for n in range(50):
            person(tx, f"u{n}", top, f"name {n}")
    with psycopg.connect(dsn) as conn:
        analyzed = dict(conn.execute("SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                                     "WHERE relname IN ('entries', 'idx', 'idx_sub')").fetchall())
    assert analyzed == {"entries": True, "idx": True, "idx_sub": True}


# -- schema versions ---------------------------------------------------------------------

def test_empty_database_is_initialised_then_current(stores):
    s = stores()
    assert s.schema_version() == (LATEST, LATEST)


def test_older_schema_refused_until_upgraded(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert migrate(conn, target=1) == (0, 1)
    with pytest.raises(StoreVersionError, match=r"version 1, this Rollcall needs version %d: run `rollcall db upgrade`"
                       % LATEST):
        open_store(pg_config(dsn))
    up = open_store(pg_config(dsn), schema="upgrade")
    assert up.schema_version() == (1, LATEST)
    up.close()
    again = open_store(pg_config(dsn))
    assert again.schema_version() == (LATEST, LATEST)
    assert again.throttle_hit("k", 60) == 1  # migration 2's table
    again.close()


def test_newer_schema_refused(dsn):
    open_store(pg_config(dsn)).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE rollcall_schema SET version=%s", (LATEST + 7,))
    for schema in ("check", "upgrade"):
        with pytest.raises(StoreVersionError, match=f"version {LATEST + 7}, newer than this Rollcall knows"):
            open_store(pg_config(dsn), schema=schema)


def write_config(tmp_path, store):
    schema = [str(ROOT / "schema" / n) for n in
              ("core.schema", "cosine.schema", "inetorgperson.schema", "nis.schema", "eduperson.schema")]
    cfg = {"suffix": "dc=district,dc=example", "listeners": ["ldap://127.0.0.1:3999"],
           "root": {"dn": "cn=admin,dc=district,dc=example", "password": ROOT_HASH},
           "store": store, "schema": schema}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def rollcall(*args):
    return subprocess.run([sys.executable, "-m", "directory.cli", *args], cwd=ROOT, capture_output=True, text=True)


def test_db_commands(tmp_path, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, target=1)
    path = write_config(tmp_path, {"backend": "postgresql", "conninfo": dsn})
    got = rollcall("db", "version", "--config", str(path))
    assert got.returncode == 0 and "schema version 1 (this Rollcall: %d; older: run `rollcall db upgrade`)" % LATEST \
        in got.stdout, got
    got = rollcall("audit", "--config", str(path))  # refuses, one line, no traceback
    assert got.returncode == 1 and "rollcall db upgrade" in got.stderr and "Traceback" not in got.stderr, got
    got = rollcall("db", "upgrade", "--config", str(path))
    assert got.returncode == 0 and f"upgraded from version 1 to {LATEST}" in got.stdout, got
    got = rollcall("db", "upgrade", "--config", str(path))
    assert got.returncode == 0 and "already current" in got.stdout
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE rollcall_schema SET version=99")
    got = rollcall("db", "version", "--config", str(path))
    assert got.returncode == 1 and "newer than this Rollcall" in got.stdout
    got = rollcall("audit", "--config", str(path))
    assert got.returncode == 1 and "newer than this Rollcall knows" in got.stderr and "Traceback" not in got.stderr


def test_db_commands_on_sqlite(tmp_path):
    path = write_config(tmp_path, {"backend": "sqlite", "path": "var/rollcall.db"})
    got = rollcall("db", "version", "--config", str(path))
    assert got.returncode == 0 and "sqlite schema version 1 (this Rollcall: 1; current)" in got.stdout, got
    assert "already current" in rollcall("db", "upgrade", "--config", str(path)).stdout


def test_unreachable_database_at_start_is_one_clear_line(tmp_path, pg_cluster):
    path = write_config(tmp_path, {"backend": "postgresql",
                                   "conninfo": f"host=127.0.0.1 port={pg_cluster.port or 1} dbname=nosuchdb"
                                               " user=postgres connect_timeout=2"})
    got = rollcall("audit", "--config", str(path))
    assert got.returncode == 1 and "PostgreSQL unavailable" in got.stderr and "Traceback" not in got.stderr, got


# -- configuration -------------------------------------------------------------------------

@pytest.mark.parametrize("conninfo", ["host=db1 dbname=rollcall password=secret",
                                      "host=db1 password = 'x y' dbname=rollcall",
                                      "postgresql://rollcall:secret@db1/rollcall",
                                      "postgresql://db1/rollcall?user=rollcall&password=secret"])
def test_conninfo_with_a_password_is_refused(tmp_path, conninfo):
    path = write_config(tmp_path, {"backend": "postgresql", "conninfo": conninfo})
    with pytest.raises(ConfigError, match="store.conninfo: holds a password.*PGPASSWORD.*password_file"):
        load_config(path)


def test_postgresql_config_keys(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    path = write_config(tmp_path, {"backend": "postgresql", "password_file": "pw", "pool_size": 4, "cache_ttl": 60,
                                   "conninfo": "host=db1,db2 dbname=rollcall user=rollcall "
                                               "target_session_attrs=read-write"})
    cfg = load_config(path)
    assert (cfg.store_backend, cfg.store_pool_size, cfg.store_cache_ttl) == ("postgresql", 4, 60)
    assert store_password(cfg) == "s3cret"
    with pytest.raises(ConfigError, match="store.conninfo: store.backend postgresql needs"):
        load_config(write_config(tmp_path, {"backend": "postgresql"}))
    with pytest.raises(ConfigError, match="store.path"):
        load_config(write_config(tmp_path, {"backend": "sqlite"}))


def test_multi_host_conninfo_finds_the_server(pg_cluster):
    """libpq tries the hosts in order: the first (nothing listens there) is skipped."""
    if not pg_cluster.owned:
        pytest.skip("needs the private cluster's port")
    dsn = pg_cluster.create_database()
    dbname = dsn.split("dbname=")[1]
    multi = (f"host=127.0.0.2,127.0.0.1 port={pg_cluster.port} dbname={dbname} user=postgres "
             "target_session_attrs=read-write connect_timeout=2")
    s = open_store(pg_config(multi))
    try:
        small_tree(s)
        assert s.count() == 3
    finally:
        s.close()


# -- the database away for a moment --------------------------------------------------------

def test_unavailable_then_recovers_without_reopening(stores, pg_cluster):
    if not pg_cluster.owned:
        pytest.skip("stops the server: only the private cluster")
    s = stores()
    _, people, js = small_tree(s)
    pg_cluster.stop()
    try:
        with pytest.raises(StoreUnavailable):
            s.get(js.id + 1000)  # not cached: goes to the database
        with pytest.raises(StoreUnavailable):
            with s.transaction() as tx:
                add(tx, f"uid=x,{people.dn}", people)
        with pytest.raises(StoreUnavailable):
            s.throttle_hit("k", 60)
        s.refresh()  # quiet: the operation after it reports
    finally:
        pg_cluster.start_again()
    assert wait_for(lambda: _works(s), timeout=15)
    with s.transaction() as tx:
        add(tx, f"uid=y,{people.dn}", people)
    assert s.get_by_ndn(f"uid=y,{people.ndn}") is not None


def _works(store):
    try:
        store.count()
        return True
    except StoreUnavailable:
        return False


def test_a_restart_between_two_operations_costs_the_client_nothing(stores, pg_cluster):
    """Every pooled connection breaks when PostgreSQL restarts; a read finding one broken
    tries once more on a fresh connection instead of failing."""
    if not pg_cluster.owned:
        pytest.skip("restarts the server: only the private cluster")
    s = stores()
    _, people, js = small_tree(s)
    assert s.count() == 3
    pg_cluster.stop()
    pg_cluster.start_again()
    assert s.count() == 3
    assert s.get_by_ndn(f"uid=nobody,{people.ndn}") is None
    pg_cluster.stop()
    pg_cluster.start_again()
    with s.transaction() as tx:  # a write too: nothing was sent before the broken connection showed
        add(tx, f"uid=after,{people.dn}", people)
    assert s.count() == 4


def test_a_role_that_may_not_create_the_schema_is_one_clear_error(pg_cluster):
    dsn = pg_cluster.create_database("priv")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS rc_weak")
        conn.execute("CREATE ROLE rc_weak LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    weak = dsn.replace("user=postgres", "user=rc_weak")
    with pytest.raises(StoreError, match="PostgreSQL refused to set up or read Rollcall's schema: permission denied"):
        open_store(pg_config(weak))


def test_nul_in_keys_and_dns_is_no_internal_error(stores):
    """PostgreSQL text holds no NUL (an LDAP value may): keys map it, DNs are refused."""
    s = stores()
    with s.transaction() as tx:
        top = add(tx, SUFFIX)
        e = add(tx, f"cn=n,{SUFFIX}", top, [("sn", "eq", "x\x00y"), ("sn", "sub", "x\x00yz")], sn=["x\x00y"])
        with pytest.raises(LDAPError) as err:
            add(tx, f"cn=a\x00b,{SUFFIX}", top)
        assert err.value.code == 34
        assert tx.get_by_ndn("cn=a\x00b,o=district") is None
        tx.log("cn=x\x00", "peer", "add", f"cn=a\x00b,{SUFFIX}", None, {})
    assert s.index_eq("sn", "x\x00y") == [e.id]
    assert s.candidates(Substring("sn", None, ("x\x00yz",), None)) == [e.id]
    assert s.candidates(Range("sn", "x\x00", "x\x00z")) == [e.id]
    assert s.get_by_ndn("cn=a\x00b,o=district") is None
    assert s.changes()[-1]["dn"] == f"cn=a\\00b,{SUFFIX}"


def test_throttle_keys_with_nul(stores):
    s = stores()
    assert s.throttle_hit("signin-user:a\x00b", 60) == 1
    assert s.throttle_admit("signin-user:a\x00b", 60, 5)
    assert s.throttle_count("signin-user:a\x00b", 60) == 2
    s.throttle_clear("signin-user:a\x00b")
    assert s.throttle_count("signin-user:a\x00b", 60) == 0
