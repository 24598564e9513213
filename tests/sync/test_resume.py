"""Kill the sync (SIGKILL) in the middle of applying, then rerun: same end state as an
uninterrupted run, nothing lost or duplicated."""
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, SUFFIX

from .conftest import SIS, STUDENTS

N = 600
FIRST = ["John", "Jane", "Liam", "Zoë", "Ana-María", "Søren"]
LAST = ["Smith", "O'Brien", "Nguyễn", "García-López", "Müller"]


def rows():
    out = []
    for i in range(N):
        out.append(f"{400000 + i:06d}s{i % 1000:03d},{FIRST[i % 6]},{LAST[i % 5]},,2014-01-01,05,"
                   f"{('1111', '2222', '3333')[i % 3]},ENROLLED,2025-08-18,,")
    return out


def count(sync, base, flt):
    c = sync.admin()
    gen = c.extend.standard.paged_search(base, flt, attributes=["1.1"], paged_size=500, generator=True)
    n = sum(1 for e in gen if e.get("type") == "searchResEntry")
    c.unbind()
    return n


def test_kill_mid_apply_then_rerun_converges(sync):
    sync.sync_cfg["window"] = 4
    sync.write_config()
    f = sync.csv("big.csv", rows())
    cmd = [sys.executable, "-m", "directory.cli", "sync", "sis", str(f), "--config", str(sync.config),
           "--today", "2025-09-01"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        n = count(sync, STUDENTS, "(rollcallSisSourceId=*)")
        if n >= 150:
            break
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    accounts_at_kill = count(sync, STUDENTS, "(rollcallSisSourceId=*)")
    records_at_kill = count(sync, SIS, "(objectClass=rollcallSisRecord)")
    assert 0 < accounts_at_kill < N and records_at_kill < N   # really killed halfway
    # rerun: converges
    assert sync("sis", f) == 0, sync.last_output
    accs = {d: a for d, a in sync.accounts().items() if d.startswith("4")}
    assert len(accs) == N
    uids = [a.uid.value for a in accs.values()]
    assert len(set(uids)) == N
    recs = sync.records()
    assert len(recs) == N
    for did, a in accs.items():
        assert recs[did]["rollcallLinkedAccount"][0].lower() == a.entry_dn.lower()
    members = set()
    for code in ("1111", "2222", "3333"):
        members |= sync.members(code)
    assert {a.entry_dn.lower() for a in accs.values()} <= members
    # every issued name belongs to exactly the account that carries it
    c = sync.admin()
    gen = c.extend.standard.paged_search(f"ou=usernames,{SIS}", "(objectClass=account)",
                                         attributes=["uid", "description"], paged_size=500, generator=True)
    issued = {e["attributes"]["uid"][0]: e["attributes"]["description"][0][4:] for e in gen
              if e.get("type") == "searchResEntry"}
    assert set(issued) == set(uids)
    for did, a in accs.items():
        assert issued[a.uid.value] == did
    # and a third run has nothing left to do
    assert sync("sis", f) == 0
    assert sync.report()["counts"] == {}
    assert SUFFIX
