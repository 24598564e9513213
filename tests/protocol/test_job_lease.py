"""Nightly jobs take a lease in the directory (directory/client/lease.py), so one run
of a job happens at a time whichever host cron starts it on: a second run is told who
holds it, a crashed run's lease runs out and is taken over by exactly one taker, and
a run gives back only its own lease."""
import socket
import subprocess
import threading
import time

import pytest
from ldap3 import BASE

from directory import client
from tests.protocol.district import JOBS, bind, make_server

JOB = "nightly-test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("lease"))
    yield s
    s.stop()


def holder_of(conn):
    conn.search(f"cn={JOB},{JOBS}", "(objectClass=*)", BASE, attributes=["description"])
    if conn.result["result"] == 32:
        return None
    return conn.response[0]["attributes"]["description"][0]


def test_a_second_run_is_told_who_holds_the_job(srv):
    first, second = bind(srv, "sis-sync"), bind(srv, "sso-portal")
    with client.job_lease(first, JOB):
        assert "holder=" in holder_of(first)
        with pytest.raises(client.JobBusy) as busy:
            client.job_lease(second, JOB).acquire()
        assert "already running" in busy.value.message and "lock held until" in busy.value.message
    assert holder_of(first) is None  # given back
    with client.job_lease(second, JOB):
        pass


def test_a_crashed_runs_lease_runs_out_and_is_taken_over_once(srv):
    crashed = client.job_lease(bind(srv, "sis-sync"), JOB, ttl=60, clock=lambda: time.time() - 3600, renew=False)
    crashed.acquire()  # a lease that ran out an hour ago: its run died without giving it back
    takers = [bind(srv, "sis-sync") for _ in range(4)]
    start = threading.Barrier(len(takers))
    results = [None] * len(takers)

    def take(i):
        start.wait()
        try:
            results[i] = client.job_lease(takers[i], JOB).acquire()
        except client.JobBusy as exc:
            results[i] = exc

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(takers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [r for r in results if isinstance(r, client.job_lease)]
    assert len(winners) == 1, results
    assert all(isinstance(r, client.JobBusy) for r in results if r is not winners[0])
    # the crashed run comes back and gives back "its" lease: the new holder's stays
    crashed.release()
    assert holder_of(takers[0]) == winners[0].value
    winners[0].release()
    assert holder_of(takers[0]) is None


def test_only_services_take_leases(srv):
    student = bind(srv, "s1")
    with pytest.raises(client.ClientError) as refused:
        client.job_lease(student, JOB).acquire()
    assert refused.value.code in (32, 50)
    assert not isinstance(refused.value, client.JobBusy)


def test_a_dead_holder_on_this_host_is_taken_over_at_once(srv):
    """A rerun right after a crash (kill -9) on the same host need not wait for the lease
    to run out: its holder's process is gone."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    root = bind(srv, "root")
    value = f"holder={socket.gethostname()}:{dead.pid} expires={int(time.time()) + 3600}"
    assert root.add(f"cn={JOB},{JOBS}", ["applicationProcess"], {"cn": JOB, "description": value}), root.result
    with client.job_lease(bind(srv, "sis-sync"), JOB) as lease:
        assert holder_of(root) == lease.value
    assert holder_of(root) is None


def test_a_long_run_keeps_its_lease_by_renewing_it(srv):
    conn = bind(srv, "sis-sync")
    with client.job_lease(conn, JOB, ttl=1.5) as lease:
        first = lease.value
        time.sleep(2.5)  # past the first time to live: renewed (every ttl/3) meanwhile
        with pytest.raises(client.JobBusy):
            client.job_lease(bind(srv, "sso-portal"), JOB, renew=False).acquire()
        assert lease.value != first and holder_of(bind(srv, "root")) == lease.value
