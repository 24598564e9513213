"""The store's throttle API (store/throttle.py): attempts within a window, expiry,
pruning, the separate non-fsync file, sharing between store objects and processes,
and the cost of a call."""
import subprocess
import sys
import time

from directory.core.ppolicy import PasswordPolicy, PolicyConfig
from directory.store import throttle as throttle_mod
from directory.store.sqlite import SQLiteStore
from directory.store.throttle import Throttle, throttle_path
from directory.web.session import SignInThrottle
from tests.conftest import ROOT


def test_hit_counts_attempts_within_the_window(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    t0 = 1_000_000.0
    assert store.throttle_count("bind-src:10.0.0.1", 60, now=t0) == 0
    assert store.throttle_hit("bind-src:10.0.0.1", 60, now=t0) == 1
    assert store.throttle_hit("bind-src:10.0.0.1", 60, now=t0 + 10) == 2
    assert store.throttle_hit("bind-src:10.0.0.2", 60, now=t0 + 10) == 1  # keys are separate
    assert store.throttle_count("bind-src:10.0.0.1", 60, now=t0 + 30) == 2
    # the first attempt leaves the window, then the second
    assert store.throttle_count("bind-src:10.0.0.1", 60, now=t0 + 60) == 1
    assert store.throttle_hit("bind-src:10.0.0.1", 60, now=t0 + 65) == 2
    assert store.throttle_count("bind-src:10.0.0.1", 60, now=t0 + 200) == 0
    store.throttle_clear("bind-src:10.0.0.2")
    assert store.throttle_count("bind-src:10.0.0.2", 60, now=t0 + 11) == 0


def test_wall_clock_by_default(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    assert store.throttle_hit("k", 0.3) == 1
    assert store.throttle_count("k", 0.3) == 1
    time.sleep(0.35)
    assert store.throttle_count("k", 0.3) == 0


def test_admit_records_only_below_the_limit(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    t0 = 2_000_000.0
    assert [store.throttle_admit("request-src:a", 100, 2, now=t0 + i) for i in range(4)] == [True, True, False, False]
    assert store.throttle_count("request-src:a", 100, now=t0 + 5) == 2  # refused ones are not counted
    assert store.throttle_admit("request-src:a", 100, 2, now=t0 + 100.5)  # the first left the window
    assert not store.throttle_admit("request-src:b", 100, 0, now=t0)


def test_prune_deletes_expired_rows_only_in_bounded_batches():
    t = Throttle()
    t0 = 3_000_000.0
    for i in range(10):
        t.hit("short", 10, now=t0 + i)
    t.hit("long", 86400, now=t0)
    assert t.rows() == 11
    assert t.prune(now=t0 + 5) == 0
    assert t.prune(now=t0 + 15, batch=3) == 3  # expired: the five rows of t0 .. t0+4
    assert t.prune(now=t0 + 15) == 2
    assert t.rows() == 6 and t.count("long", 86400, now=t0 + 15) == 1
    assert t.prune(now=t0 + 1000) == 5
    assert t.rows() == 1  # the day-long window's row stays


def test_hits_prune_old_rows_as_they_go():
    t = Throttle()
    t0 = 4_000_000.0
    n = throttle_mod.PRUNE_EVERY * 5
    for i in range(n):
        t.hit(f"bind-src:10.0.{i % 7}.1", 1, now=t0 + i)  # each row expires a second later
    assert t.rows() < throttle_mod.PRUNE_EVERY + 1


def test_separate_file_without_fsync_next_to_the_store(tmp_path):
    store = SQLiteStore(tmp_path / "rollcall.db")
    assert not (tmp_path / "rollcall-throttle.db").exists()  # opened on first use only
    store.throttle_hit("k", 60)
    assert (tmp_path / "rollcall-throttle.db").exists()
    conn = store.throttle._conn()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # the store stays FULL
    assert store._conn().execute("SELECT name FROM sqlite_master WHERE name='throttle'").fetchone() is None
    assert throttle_path(":memory:") == ":memory:"
    assert throttle_path("/x/var/rollcall.db") == "/x/var/rollcall-throttle.db"


def test_counts_are_shared_by_store_objects_and_processes(tmp_path):
    a = SQLiteStore(tmp_path / "s.db")
    b = SQLiteStore(tmp_path / "s.db")
    a.throttle_hit("activate-src:10.9.9.9", 3600)
    assert b.throttle_hit("activate-src:10.9.9.9", 3600) == 2
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from directory.store.sqlite import SQLiteStore; "
            "print(SQLiteStore(sys.argv[1]).throttle_hit('activate-src:10.9.9.9', 3600))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.db"), str(ROOT)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3"
    assert a.throttle_count("activate-src:10.9.9.9", 3600) == 3
    # and a store opened later (a restart) still sees them
    assert SQLiteStore(tmp_path / "s.db").throttle_count("activate-src:10.9.9.9", 3600) == 3


def test_password_policies_over_one_store_share_the_source_count(tmp_path):
    cfg = PolicyConfig(source_max_failures=3, source_window=60)
    one = PasswordPolicy(cfg, SQLiteStore(tmp_path / "s.db"))
    two = PasswordPolicy(cfg, SQLiteStore(tmp_path / "s.db"))  # another worker
    one.note_source_failure("10.1.2.3")
    two.note_source_failure("10.1.2.3")
    assert not one.source_blocked("10.1.2.3")
    one.note_source_failure("10.1.2.3")
    assert two.source_blocked("10.1.2.3") and one.source_blocked("10.1.2.3")
    assert not two.source_blocked("10.1.2.4")
    # without a store: counted in this process only, as before
    alone = PasswordPolicy(cfg)
    for _ in range(3):
        alone.note_source_failure("10.1.2.3")
    assert alone.source_blocked("10.1.2.3")


def test_sign_in_throttles_over_one_store_share_their_counts(tmp_path):
    one = SignInThrottle(2, 60, SQLiteStore(tmp_path / "s.db"))
    two = SignInThrottle(2, 60, SQLiteStore(tmp_path / "s.db"))
    one.failed("10.0.0.1", "user:ann")
    two.failed("10.0.0.1", "user:bob")
    assert one.blocked("10.0.0.1") and two.blocked("10.0.0.1")
    assert not two.blocked("user:ann") and not one.blocked("10.0.0.2")
    two.succeeded("user:bob")
    assert not one.blocked("user:bob") and one.blocked("10.0.0.1")
    assert one.store.throttle_count("signin-src:10.0.0.1", 60) == 2
    assert one.store.throttle_count("signin-user:ann", 60) == 1


def test_a_call_costs_tens_of_microseconds(tmp_path):
    store = SQLiteStore(tmp_path / "rollcall.db")
    n = 2000
    costs = {}
    for name, fn in (("hit", lambda i: store.throttle_hit(f"bind-src:10.0.{i % 50}.1", 60)),
                     ("count", lambda i: store.throttle_count(f"bind-src:10.0.{i % 50}.1", 60)),
                     ("admit", lambda i: store.throttle_admit(f"request-src:10.0.{i % 50}.1", 60, 10 ** 6))):
        fn(0)
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        costs[name] = (time.perf_counter() - t) / n * 1e6
    print("throttle cost per call (µs):", {k: round(v, 1) for k, v in costs.items()})
    # typically 5-20 µs; generous bounds for a busy shared machine
    assert costs["count"] < 500 and costs["hit"] < 1000 and costs["admit"] < 1000
