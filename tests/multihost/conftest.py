"""Two Rollcall frontends on two test hosts (network namespaces) over one PostgreSQL
that listens on the bridge: the several-hosts set-up of the scale-out issue."""
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

