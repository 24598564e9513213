"""Group commit: writes queued together share one transaction (one fsync); each is
still all or nothing, and none is reported before the commit."""
import sqlite3
import threading

import pytest

from directory.core.entry import Entry
from directory.server.writer import GroupCommitWriter
from directory.store.sqlite import SQLiteStore


def add(store, name, fail=False):
    with store.transaction() as tx:
        tx.add(Entry(f"o={name}", f"o={name}", {"o": [name.encode()]}), None, f"o={name}", [("o", "eq", name)])
        if fail:
            raise ValueError(name)
    return name


def committed(path):
    conn = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in conn.execute("SELECT ndn FROM entries"))
    finally:
        conn.close()


def test_savepoints_inside_one_commit(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    with store.group_commit():
        add(store, "a")
        with pytest.raises(ValueError):
            add(store, "b", fail=True)
        add(store, "c")
        assert committed(tmp_path / "s.db") == []  # nothing visible (or acknowledged) yet
        assert store.get_by_ndn("o=a").dn == "o=a"  # the writer sees its own group
        assert store._cache == {}  # uncommitted entries never reach the shared cache
    assert committed(tmp_path / "s.db") == ["o=a", "o=c"]
    assert [r[0] for r in store._conn().execute("SELECT key FROM idx ORDER BY key")] == ["a", "c"]


def test_failed_group_stores_nothing(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        with store.group_commit():
            add(store, "a")
            raise RuntimeError
    assert committed(tmp_path / "s.db") == []
    add(store, "d")  # a plain transaction afterwards
    assert committed(tmp_path / "s.db") == ["o=d"]


def test_writer_reports_each_result_after_the_commit(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    writer = GroupCommitWriter(store)
    gate, results, done = threading.Event(), [], threading.Event()

    def report(name):
        def on_result(ok, result):
            results.append((name, ok, committed(tmp_path / "s.db")))
            if len(results) == 4:
                done.set()
        return on_result

    writer.callInThreadWithCallback(report("gate"), gate.wait)  # hold the writer so the rest queue up
    writer.callInThreadWithCallback(report("a"), add, store, "a")
    writer.callInThreadWithCallback(report("b"), add, store, "b", True)
    writer.callInThreadWithCallback(report("c"), add, store, "c")
    writer.start()
    gate.set()
    assert done.wait(10)
    writer.stop()
    assert [(n, ok) for n, ok, _ in results] == [("gate", True), ("a", True), ("b", False), ("c", True)]
    for name, ok, seen in results[1:]:
        assert seen == ["o=a", "o=c"], name  # reported only once durable
