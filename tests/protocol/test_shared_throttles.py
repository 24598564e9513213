"""Throttles shared by the worker processes (`server.workers: 2`) and kept across a
restart: failed binds per address, activation attempts per address and per account.

Which worker holds a connection is read from /proc: the server side of our TCP
connection is a socket inode, and exactly one worker has it among its open files.
Connections are opened until both workers hold some, then the attempts are spread
over both on purpose."""
import os
import time
from pathlib import Path

import pytest
from ldap3 import BASE, SIMPLE, Connection, Server

from directory import admin
from tests.conftest import ROOT, ROOT_DN, ROOT_PW, SUFFIX, ServerProcess
from tests.protocol.district import DEFAULT_POLICY, SCHEMA_FILES, access_rules, district_ldif, student

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

TEACHER = f"uid=teacher1,ou=staff,ou=people,{SUFFIX}"
SIS = f"ou=sis,{SUFFIX}"


def worker_pids(srv) -> set:
    pids = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == srv.proc.pid:
                pids.add(int(d))
    return pids


def worker_of(srv, conn) -> int:
    """The pid of the worker process holding the server side of `conn`."""
    client_port = conn.socket.getsockname()[1]
    want = f"0100007F:{client_port:04X}"
    inode = None
    for _ in range(100):  # the worker accepts a moment after connect() returns
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = line.split()
            if f[2] == want and f[1].endswith(f":{srv.port:04X}"):
                inode = f[9]
        if inode not in (None, "0"):
            link = f"socket:[{inode}]"
            for pid in worker_pids(srv):
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                            return pid
                    except OSError:
                        pass
        time.sleep(0.02)
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def spread(srv, per_worker: int, dn=None, pw=None) -> dict:
    """Open connections until each of the two workers holds `per_worker` of them:
    {pid: [connection, ...]} (the extra ones are closed)."""
    deadline = time.monotonic() + 20  # the parent listens before it has forked every worker
    pids = worker_pids(srv)
    while len(pids) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = worker_pids(srv)
    assert len(pids) == 2, pids
    got = {pid: [] for pid in pids}
    for _ in range(400):
        if all(len(v) >= per_worker for v in got.values()):
            return got
        conn = Connection(Server(srv.url), dn, pw, raise_exceptions=False)
        conn.open()
        pid = worker_of(srv, conn)
        if len(got[pid]) < per_worker:
            got[pid].append(conn)
        else:
            conn.unbind()
    raise AssertionError(f"connections did not reach both workers: {[len(v) for v in got.values()]}")


def bind_as(conn, dn, pw) -> bool:
    conn.user, conn.password, conn.authentication = dn, pw, SIMPLE
    return conn.bind()


def close_all(groups):
    for conns in groups.values():
        for c in conns:
            c.unbind()


def test_failed_binds_are_counted_across_workers_and_restarts(tmp_path):
    srv = ServerProcess(tmp_path, extra_config={
        "server": {"workers": 2},
        "password_policy": {"max_failures": 1000, "source_max_failures": 6, "source_window": 60}}).start()
    try:
        a, b = spread(srv, 4).values()
        # six wrong passwords: three through each worker — neither alone reaches six
        for conn in a[:3] + b[:3]:
            assert not bind_as(conn, TEACHER, "wrong-password") and conn.result["result"] == 49
        # the seventh, even with the right password, is refused by whichever worker
        for conn in (a[3], b[3]):
            assert not bind_as(conn, TEACHER, "staff-pw-1")
            assert conn.result["result"] == 53
            assert "too many failed binds from this address" in conn.result["message"]
        close_all({0: a, 1: b})
        # a restart does not forget them (within the window)
        srv.stop()
        srv.start()
        conn = Connection(Server(srv.url), TEACHER, "staff-pw-1", raise_exceptions=False)
        assert not conn.bind() and conn.result["result"] == 53
        assert "too many failed binds from this address" in conn.result["message"]
        conn.unbind()
    finally:
        srv.stop()
    if srv.store["backend"] == "sqlite":  # PostgreSQL keeps them in a table of the database
        assert (tmp_path / "var" / "rollcall-throttle.db").exists()


def _sis_ou():
    return f"dn: {SIS}\nobjectClass: organizationalUnit\nou: sis\n"


def test_activation_attempts_are_counted_across_workers_and_restarts(tmp_path):
    extra = {
        "server": {"workers": 2},
        "schema": [str(ROOT / "schema" / n) for n in SCHEMA_FILES],
        "access": access_rules(),
        "password_policy": dict(DEFAULT_POLICY),
        "indexes": {"memberOf": ["eq"], "uniqueMember": ["eq"], "rollcallAccountStatus": ["eq"]},
        "accounts": {"activation_source_limit": 5, "activation_max_failures": 3},
    }
    srv = ServerProcess(tmp_path, extra_config=extra, ldif=district_ldif() + "\n" + _sis_ou()).start()
    try:
        root = Connection(Server(srv.url), ROOT_DN, ROOT_PW, raise_exceptions=False)
        assert root.bind()
        [item] = admin.issue_codes(root, ["sP"])
        assert "code" in item, item
        root.search(student("sP"), "(objectClass=*)", BASE, attributes=["rollcallActivationCodeHash"])
        assert root.response[0]["raw_attributes"]["rollcallActivationCodeHash"]
        a, b = spread(srv, 3).values()
        # three wrong codes for sP, through both workers: the per-account limit (3) burns the code
        for conn in (a[0], a[1], b[0]):
            with pytest.raises(admin.AdminError) as exc:
                admin.activate(conn, "sP", "WXYZ-2345", "Guessing-pass-9")
            assert exc.value.code == 49
        root.search(student("sP"), "(objectClass=*)", BASE, attributes=["rollcallActivationCodeHash"])
        assert root.response[0]["raw_attributes"].get("rollcallActivationCodeHash", []) == []
        # a fourth failure (five from this address in all, with the restart's) …
        with pytest.raises(admin.AdminError) as exc:
            admin.activate(b[1], "sP", "WXYZ-2345", "Guessing-pass-9")
        assert exc.value.code == 49
        close_all({0: a, 1: b})
        root.unbind()
        srv.stop()
        srv.start()  # … after a restart
        anon = Connection(Server(srv.url), raise_exceptions=False)
        anon.open()
        with pytest.raises(admin.AdminError) as exc:
            admin.activate(anon, "sP", "WXYZ-2345", "Guessing-pass-9")
        assert exc.value.code == 49
        anon.unbind()
        # the source limit (5) is reached: both workers refuse the next attempt
        a, b = spread(srv, 1).values()
        for conn in (a[0], b[0]):
            with pytest.raises(admin.AdminError) as exc:
                admin.activate(conn, "sP", "WXYZ-2345", "Guessing-pass-9")
            assert exc.value.code == 51
            assert "too many failed activation attempts from this address" in exc.value.message
        close_all({0: a, 1: b})
    finally:
        srv.stop()


def test_anonymous_requests_are_counted_across_workers_and_restarts(tmp_path):
    from directory.demo import demo_ldif
    from tests.protocol.test_requests import BUSY, SUCCESS, config_for, nonemployee

    extra = dict(config_for(anonymous_limit=3, anonymous_window=3600), server={"workers": 2})
    srv = ServerProcess(tmp_path, extra_config=extra, ldif=demo_ldif(SUFFIX)).start()
    try:
        a, b = spread(srv, 2).values()
        # one request through one worker, one through the other: two of three
        assert nonemployee(a[0], mail="one@acme.example")[0] == SUCCESS
        assert nonemployee(b[0], mail="two@acme.example")[0] == SUCCESS
        close_all({0: a, 1: b})
        srv.stop()
        srv.start()
        a, b = spread(srv, 2).values()
        assert nonemployee(a[0], mail="three@acme.example")[0] == SUCCESS
        # the limit is reached on both workers, restart or not
        for conn in (a[1], b[0]):
            code, _, _ = nonemployee(conn, mail="four@acme.example")
            assert code == BUSY and "too many anonymous requests from this address" in conn.result["message"]
        close_all({0: a, 1: b})
    finally:
        srv.stop()
