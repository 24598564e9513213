"""`rollcall backup` under a steady write load, `rollcall restore` into a new path, a
server started on it: every write acknowledged before the backup began is there. A
damaged backup, a live target and the PostgreSQL store are refused with a reason."""
import tarfile
import threading
import time

import yaml
from ldap3 import SUBTREE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, ServerProcess

PEOPLE = f"ou=people,{SUFFIX}"


def _dir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def _uids(srv):
    conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
    found = conn.extend.standard.paged_search(PEOPLE, "(uid=w*)", SUBTREE, attributes=["uid"], paged_size=400,
                                              generator=False)
    conn.unbind()
    return {e["attributes"]["uid"][0] for e in found if e.get("type") == "searchResEntry"}


def test_backup_under_writes_and_restore_answers_the_same(tmp_path):
    srv = ServerProcess(_dir(tmp_path / "a")).start()
    try:
        _backup_and_restore(srv, tmp_path)
    finally:
        srv.stop()


def _backup_and_restore(srv, tmp_path):
    acked = []          # (uid, time the server acknowledged it)
    stop = threading.Event()
    errors = []

    def writer(n):
        conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
        i = 0
        while not stop.is_set():
            uid = f"w{n}x{i}"
            ok = conn.add(f"uid={uid},{PEOPLE}", ["inetOrgPerson"], {"uid": uid, "cn": uid, "sn": "Writer"})
            if ok:
                acked.append((uid, time.monotonic()))
            else:
                errors.append(conn.result)
            i += 1
        conn.unbind()

    def reader():
        conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
        while not stop.is_set():
            conn.search(PEOPLE, "(uid=jsmith)", SUBTREE, attributes=["cn"])
            assert len(conn.entries) == 1
        conn.unbind()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 50 and time.monotonic() < deadline:  # a steady load first
            time.sleep(0.1)
        began = time.monotonic()
        out = tmp_path / "backups/rollcall.backup"
        r = srv.rollcall("backup", str(out))
        ended = time.monotonic()
        assert "backed up" in r.stdout
        n = len(acked)
        while len(acked) < n + 20 and time.monotonic() < deadline:  # writes go on after it
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    before = {uid for uid, at in acked if at < began}
    after = {uid for uid, at in acked if at > ended}
    assert len(before) > 20 and after, (len(before), len(after))

    with tarfile.open(out) as tar:
        assert tar.getnames() == ["MANIFEST.json", "rollcall.db"]

    # restored into a new store path, a server on it finds every write acknowledged before
    # the backup began, nothing written after it ended, and the base data
    b = ServerProcess(_dir(tmp_path / "b"), ldif=None)
    r = b.rollcall("restore", str(out))
    assert "restored" in r.stdout
    b.start()
    try:
        restored = _uids(b)
        assert before <= restored
        assert not (after & restored)
        assert restored <= {uid for uid, _ in acked}
        conn = Connection(Server(b.url), ROOT_DN, ROOT_PW, auto_bind=True)
        conn.search(SUFFIX, "(uid=jsmith)", SUBTREE, attributes=["cn", "mail"])
        assert [str(e.mail) for e in conn.entries] == ["jsmith@district.example"]
        conn.unbind()
        # never over a live store
        r = b.rollcall("restore", str(out), check=False)
        assert r.returncode == 1 and "refuses to overwrite" in r.stderr
    finally:
        b.stop()

    # a damaged backup: one byte changed in the database, or the file cut short
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(bytes(data))
    c = ServerProcess(_dir(tmp_path / "c"), ldif=None)
    r = c.rollcall("restore", str(damaged), check=False)
    assert r.returncode == 1 and "damaged" in r.stderr and "nothing was restored" in r.stderr
    assert not (tmp_path / "c/var/rollcall.db").exists()
    cut = tmp_path / "cut.backup"
    cut.write_bytes(bytes(data[:2000]))
    r = c.rollcall("restore", str(cut), check=False)
    assert r.returncode == 1 and ("damaged" in r.stderr or "not a Rollcall backup" in r.stderr), r.stderr
    r = c.rollcall("restore", str(tmp_path / "none.backup"), check=False)
    assert r.returncode == 1 and "no such file" in r.stderr


def test_postgresql_store_points_to_pg_dump(tmp_path):
    srv = ServerProcess(tmp_path, ldif=None)
    cfg = yaml.safe_load(srv.config_path.read_text())
    cfg["store"] = {"backend": "postgresql", "conninfo": "host=/nonexistent dbname=rollcall"}
    srv.config_path.write_text(yaml.safe_dump(cfg))
    for args in (("backup", str(tmp_path / "x.backup")), ("restore", str(tmp_path / "x.backup"))):
        r = srv.rollcall(*args, check=False)
        assert r.returncode == 1 and "pg_dump" in r.stderr and "rollcall export" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    srv = ServerProcess(tmp_path, ldif=None)
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var/rollcall.db").write_bytes(b"this is not a database" * 100)
    r = srv.rollcall("backup", str(tmp_path / "x.backup"), check=False)
    assert r.returncode == 1 and "cannot back up" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.backup").exists()
