"""Tx.replace writes only the index rows that changed; the result must be what a
fresh insert of the entry would leave."""
import random

from directory.core.entry import Entry
from directory.store.sqlite import SUB_SLOTS, SQLiteStore


def rows_of(store, entry_id):
    conn = store._conn()
    eq = sorted(conn.execute("SELECT attr, key FROM idx WHERE id=?", (entry_id,)))
    base = entry_id * SUB_SLOTS
    sub = sorted((r - base, a, k, i) for r, a, k, i in conn.execute(
        "SELECT rowid, attr, key, id FROM idx_sub WHERE rowid BETWEEN ? AND ?", (base, base + SUB_SLOTS - 1)))
    return eq, sub


def fresh(tmp_path, name, index_rows):
    store = SQLiteStore(tmp_path / name)
    with store.transaction() as tx:
        tx.add(Entry("o=x", "o=x", {"o": [b"x"]}), None, "o=x", [])
        entry_id = tx.add(Entry("cn=g,o=x", "cn=g,o=x", {"cn": [b"g"]}), 1, "cn=g", index_rows)
    return store, entry_id


def versions():
    rng = random.Random(7)
    members = [f"uid=u{i},o=x" for i in range(SUB_SLOTS + 40)]
    yield [("cn", "eq", "g"), ("cn", "sub", "g")]
    for n in (1, 2, 50, 51, SUB_SLOTS - 2, SUB_SLOTS - 1, SUB_SLOTS, SUB_SLOTS + 40, 10, 0):
        picked = members[:n]
        rng.shuffle(picked) if n == 10 else None
        rows = [("cn", "eq", "g"), ("objectclass", "pres", "")]
        rows += [("member", "eq", m) for m in picked] + [("member", "sub", m) for m in picked]
        yield rows
    yield [("cn", "eq", "g2"), ("cn", "sub", "g2"), ("description", "sub", "other")]


def test_replace_leaves_the_rows_of_a_fresh_insert(tmp_path):
    store, entry_id = fresh(tmp_path, "a.db", [])
    for i, index_rows in enumerate(versions()):
        with store.transaction() as tx:
            tx.replace(Entry("cn=g,o=x", "cn=g,o=x", {"cn": [b"g"]}, entry_id), index_rows)
        other, other_id = fresh(tmp_path, f"b{i}.db", index_rows)
        assert other_id == entry_id
        assert rows_of(store, entry_id) == rows_of(other, other_id), i
        other.close()
    # the other entry's rows are untouched
    assert rows_of(store, 1) == ([], [])


def test_replace_rolls_back_with_its_transaction(tmp_path):
    store, entry_id = fresh(tmp_path, "a.db", [("member", "eq", "a"), ("member", "sub", "a")])
    before = rows_of(store, entry_id)
    try:
        with store.transaction() as tx:
            tx.replace(Entry("cn=g,o=x", "cn=g,o=x", {"cn": [b"g"]}, entry_id),
                       [("member", "eq", "b"), ("member", "sub", "b")])
            raise RuntimeError
    except RuntimeError:
        pass
    assert rows_of(store, entry_id) == before
