"""The wal-index header shortcut (store/throttle.py WalWatch): a throttle count of 0 is
answered without a query while nothing was committed to the file, and any commit, by
another connection or another process, is seen at the next count."""
import subprocess
import sys

from directory.store.throttle import Throttle, WalWatch
from tests.conftest import ROOT


def test_a_zero_count_follows_every_commit(tmp_path):
    path = tmp_path / "t.db"
    a, b = Throttle(path), Throttle(path)
    assert a.count("bind-src:10.0.0.1", 60) == 0
    assert a.count("bind-src:10.0.0.1", 60) == 0  # from the memo: no commit since
    b.hit("bind-src:10.0.0.1", 60)  # another connection, as another worker's
    assert a.count("bind-src:10.0.0.1", 60) == 1
    assert a.count("bind-src:10.0.0.2", 60) == 0
    subprocess.run([sys.executable, "-c", "import sys; from directory.store.throttle import Throttle; "
                    "Throttle(sys.argv[1]).hit('bind-src:10.0.0.2', 60)", str(path)], cwd=ROOT, check=True)
    assert a.count("bind-src:10.0.0.2", 60) == 1


def test_a_zero_count_is_not_reused_for_an_earlier_time(tmp_path):
    t = Throttle(tmp_path / "t.db")
    t.hit("k", 10, now=1000.0)
    assert t.count("k", 10, now=2000.0) == 0  # long expired
    assert t.count("k", 10, now=1005.0) == 1  # an earlier instant asks the table again


def test_the_header_changes_with_each_commit(tmp_path):
    path = tmp_path / "t.db"
    t = Throttle(path)
    watch = WalWatch(str(path))
    heads = {watch.look()}
    for i in range(5):
        t.hit(f"k{i}", 60)
        heads.add(watch.look())
    assert None not in heads and len(heads) == 6
    assert WalWatch(str(tmp_path / "missing.db")).look() is None
