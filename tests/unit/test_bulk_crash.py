"""A `rollcall load` killed mid-way (kill -9, out of memory) leaves the store as it
was before the load: the next open rolls the load back, the file is sound, and
the same load run again succeeds. The loader is a real process killed with
SIGKILL while its pages are going to the database file (a small page cache makes
SQLite write them out mid-load, as a load larger than the cache does)."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from directory.app import open_directory
from directory.config import load_config
from directory.core.bulk import BulkLoader
from tests.conftest import BASE_LDIF, SUFFIX
from tests.unit.test_core import write_config

ROOT = Path(__file__).resolve().parents[2]
STUDENTS = f"ou=students,ou=people,{SUFFIX}"
USERS = 20000

# `rollcall load` with a 1 MiB page cache during the load, so that pages spill to
# the file (and the rollback journal holds what they replaced) long before the end
LOADER = """
import sys
import directory.store.sqlite as sqlite_store
sqlite_store.BULK_CACHE_KIB = 1024
from directory.cli import main
main(["load", "--config", sys.argv[1], sys.argv[2]])
"""


def _users_ldif(path, first=0, n=USERS):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(first, first + n):
            f.write(f"dn: uid=c{i:06d},{STUDENTS}\nobjectClass: inetOrgPerson\nuid: c{i:06d}\n"
                    f"cn: Crash Test {i}\nsn: Test{i}\nmail: c{i}@district.example\n\n")


def _kill_mid_load(cfg, ldif, tmp_path):
    """Start the load, SIGKILL it (and its workers) once it has loaded entries; the
    journal or WAL it leaves behind, if any."""
    err = open(tmp_path / "load.err", "wb")
    proc = subprocess.Popen([sys.executable, "-c", LOADER, str(cfg), str(ldif)], cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while "entries…".encode() not in (tmp_path / "load.err").read_bytes():  # every 10,000 or so
            assert proc.poll() is None, (tmp_path / "load.err").read_text()
            assert time.monotonic() < deadline, "the load never got going"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the loader and its forked workers
        proc.wait()
        err.close()
    assert proc.returncode == -signal.SIGKILL


def _check_sound(db):
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    finally:
        conn.close()


def test_killed_load_into_an_empty_store_leaves_it_empty_and_loadable(tmp_path):
    cfg = write_config(tmp_path)
    db = tmp_path / "var" / "rollcall.db"
    ldif = tmp_path / "users.ldif"
    (tmp_path / "base.ldif").write_text(BASE_LDIF)
    with open(ldif, "w") as f:
        f.write(BASE_LDIF + "\n")
    with open(ldif, "a") as f:
        _users_ldif(tmp_path / "more.ldif")
        f.write((tmp_path / "more.ldif").read_text())
    open_directory(load_config(cfg)).store.close()  # the empty store, as `rollcall` makes it

    _kill_mid_load(cfg, ldif, tmp_path)
    assert os.path.getsize(db) > 1 << 20  # pages of the load had reached the file
    assert Path(str(db) + "-journal").exists()  # and the journal to undo them

    assert _check_sound(db) == 0  # opening it rolled the load back
    d = open_directory(load_config(cfg))
    assert d.store.count() == 0
    with open(ldif, "rb") as fh:  # the admin runs the load again
        assert BulkLoader(d).load_ldif(fh, str(ldif)) == USERS + 7
    assert d.store.count() == USERS + 7
    d.store.close()
    assert _check_sound(db) == USERS + 7


def test_killed_load_into_a_store_with_entries_leaves_them(tmp_path):
    cfg = write_config(tmp_path)
    db = tmp_path / "var" / "rollcall.db"
    d = open_directory(load_config(cfg))
    (tmp_path / "base.ldif").write_text(BASE_LDIF)
    with open(tmp_path / "base.ldif", "rb") as fh:
        assert BulkLoader(d, workers=1).load_ldif(fh) == 7
    d.store.close()
    ldif = tmp_path / "users.ldif"
    _users_ldif(ldif)

    _kill_mid_load(cfg, ldif, tmp_path)

    assert _check_sound(db) == 7
    d = open_directory(load_config(cfg))
    assert d.store.count() == 7
    with open(ldif, "rb") as fh:
        assert BulkLoader(d).load_ldif(fh, str(ldif)) == USERS
    assert d.store.count() == USERS + 7
    d.store.close()
