"""Two Rollcall frontends on two test hosts (network namespaces) over one PostgreSQL
that listens on the bridge: the several-hosts set-up of the scale-out issue."""
import os
import pwd
import tempfile
import time
from pathlib import Path

import pytest

from tests import pgcluster
from tests.protocol.district import make_server

from .netns import Network, available

WHY_NOT = available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"test hosts: {WHY_NOT}")


@pytest.fixture(scope="session")
def network():
    if WHY_NOT is not None:
        pytest.skip(f"test hosts: {WHY_NOT}")
    if pgcluster.find_binaries() is None:
        pytest.skip("PostgreSQL is not installed (scripts/test installs it when run as root)")
    with Network() as net:
        net.a, net.b = net.host("a"), net.host("b")
        yield net


@pytest.fixture(scope="session")
def db_server(network):
    """The hosts' PostgreSQL: on the bridge's address, reached over the virtual network."""
    cluster = pgcluster.PGCluster.start(listen_addresses=network.gateway)
    yield cluster
    cluster.teardown()


def tcp_conninfo(cluster, dbname, host):
    return f"host={host} port={cluster.port} user=postgres dbname={dbname} connect_timeout=2"


def frontends(tmp_path, network, conninfo, policy=None, extra=None):
    """Servers A and B on hosts a and b over the database `conninfo` (A loads the district)."""
    store = {"backend": "postgresql", "conninfo": conninfo}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_server(tmp_path / "a", policy=policy, extra=extra, host=network.a.address,
                    netns=network.a.netns, store=store)
    try:
        b = make_server(tmp_path / "b", policy=policy, extra=extra, load=False, host=network.b.address,
                        netns=network.b.netns, store=store)
    except BaseException:
        a.stop()
        raise
    return a, b


@pytest.fixture
def pair(tmp_path, network, db_server):
    """Servers A and B over a fresh database."""
    dsn = db_server.create_database("mh")
    dbname = dsn.rsplit("dbname=", 1)[1]
    a, b = frontends(tmp_path, network, tcp_conninfo(db_server, dbname, network.gateway))
    yield a, b
    for srv in (a, b):
        srv.stop()


def make_standby(primary, listen_addresses):
    """A synchronous streaming standby of `primary` (a PGCluster this test started):
    pg_basebackup -R, its own port and socket, then the primary waits for it at every
    commit (synchronous_commit on, synchronous_standby_names '*')."""
    with primary.admin() as conn:
        conn.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
        conn.execute("ALTER SYSTEM SET fsync = 'on'")
    with open(primary.datadir / "pg_hba.conf", "a") as fh:
        fh.write("local replication all trust\nhost replication all 0.0.0.0/0 trust\n")
    primary._run("pg_ctl", "-D", str(primary.datadir), "reload")
    base = Path(tempfile.mkdtemp(prefix="rollcall-pg-standby-"))
    datadir, sockdir = base / "data", base / "sock"
    sockdir.mkdir()
    if primary.run_as:
        pw = pwd.getpwnam(primary.run_as)
        for p in (base, sockdir):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        base.chmod(0o700)
        sockdir.chmod(0o777)
    port = pgcluster.free_port(listen_addresses)
    standby = pgcluster.PGCluster(f"host={sockdir} port={port} user=postgres", owned=True, bindir=primary.bindir,
                                  datadir=datadir, sockdir=sockdir, port=port,
                                  listen_addresses=listen_addresses, run_as=primary.run_as)
    standby._run("pg_basebackup", "-D", str(datadir), "-R", "-X", "stream", "-c", "fast",
                 "-d", f"host={primary.sockdir} port={primary.port} user=postgres application_name=standby")
    with open(datadir / "postgresql.conf", "a") as fh:
        fh.write(f"\nport = {port}\nunix_socket_directories = '{sockdir}'\nlisten_addresses = '{listen_addresses}'\n")
    standby.start_again()
    with primary.admin() as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while conn.execute("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone() is None:
            assert time.monotonic() < deadline, "the standby did not become synchronous"
            time.sleep(0.1)
    return standby
