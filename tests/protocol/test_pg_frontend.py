"""A frontend on the PostgreSQL store. PostgreSQL stopped under it: every operation
that needs the database is answered `unavailable` (52), the server stays up, and once
PostgreSQL is back it serves again without a restart; nothing acknowledged is lost.
And NUL characters (which PostgreSQL text cannot hold) never make an internal error."""
import time
import urllib.error
import urllib.request

import pytest
from ldap3 import BASE, MODIFY_REPLACE, SUBTREE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, ServerProcess, free_port


@pytest.fixture
def pg_server(tmp_path, pg_cluster):
    if not pg_cluster.owned:
        pytest.skip("stops the server: only the private cluster")
    srv = ServerProcess(tmp_path, extra_config={"store": {"backend": "postgresql",
                                                          "conninfo": pg_cluster.create_database("down")}})
    srv.start()
    yield srv
    srv.stop()


def connect(srv):
    conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, receive_timeout=30)
    conn.open()
    assert conn.bind()
    return conn


def test_database_away_then_back(pg_server, pg_cluster):
    conn = connect(pg_server)
    jsmith = f"uid=jsmith,ou=students,ou=people,{SUFFIX}"
    assert conn.modify(jsmith, {"description": [(MODIFY_REPLACE, ["before"])]})
    pg_cluster.stop()
    try:
        codes = set()
        for _ in range(3):
            conn.search(f"ou=people,{SUFFIX}", "(cn=*smith*)", SUBTREE, attributes=["cn"])
            codes.add(conn.result["result"])
            conn.modify(jsmith, {"description": [(MODIFY_REPLACE, ["during"])]})
            codes.add(conn.result["result"])
        assert codes == {52}, codes
        other = Connection(Server(pg_server.url), f"uid=mgarcia,ou=students,ou=people,{SUFFIX}", "whatever")
        other.open()
        other.bind()
        assert other.result["result"] == 52  # not invalidCredentials: we could not tell
        other.unbind()
        assert pg_server.proc.poll() is None  # still up
    finally:
        pg_cluster.start_again()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        conn.search(jsmith, "(objectClass=*)", BASE, attributes=["description"])
        if conn.result["result"] == 0:
            break
        time.sleep(0.2)
    assert conn.result["result"] == 0
    assert conn.entries[0].description.values == ["before"]  # the refused write left nothing
    assert conn.modify(jsmith, {"description": [(MODIFY_REPLACE, ["after"])]})
    fresh = connect(pg_server)  # a new connection and bind work too
    fresh.search(jsmith, "(objectClass=*)", BASE, attributes=["description"])
    assert fresh.entries[0].description.values == ["after"]


def test_nul_in_filters_and_values_is_never_an_internal_error(pg_server):
    """PostgreSQL text holds no NUL; LDAP values may. Searches and writes with one
    get a real answer on the PostgreSQL store, never other (80)."""
    conn = connect(pg_server)
    people = f"ou=people,{SUFFIX}"
    assert conn.add(f"uid=nul1,{people}", ["inetOrgPerson"],
                    {"uid": "nul1", "cn": "with\x00nul", "sn": "x\x00y", "mail": "a\x00b@x.example"}), conn.result
    for flt in ("(sn=x\\00y)", "(cn=*h\\00n*)", "(mail=a\\00*)", "(sn>=x\\00)", "(uid=a\\00b)"):
        conn.search(people, flt, SUBTREE, attributes=["uid"])
        assert conn.result["result"] == 0, (flt, conn.result)
    conn.search(people, "(sn=x\\00y)", SUBTREE, attributes=["uid"])
    assert [e.uid.value for e in conn.entries] == ["nul1"]
    conn.search(f"uid=a\x00b,{people}", "(objectClass=*)", BASE)
    assert conn.result["result"] in (32, 34), conn.result


def test_a_very_long_dn_is_refused_not_an_internal_error(pg_server):
    conn = connect(pg_server)
    long_uid = "u" * 3000
    conn.add(f"uid={long_uid},ou=people,{SUFFIX}", ["inetOrgPerson"], {"uid": long_uid, "cn": "x", "sn": "y"})
    assert conn.result["result"] == 11, conn.result  # adminLimitExceeded, with the reason
    conn.search(f"uid={long_uid},ou=people,{SUFFIX}", "(objectClass=*)", BASE)
    assert conn.result["result"] == 32, conn.result
    conn.search(f"ou=people,{SUFFIX}", f"(uid={long_uid})", SUBTREE)
    assert conn.result["result"] == 0, conn.result


def test_readyz_follows_the_database(tmp_path, pg_cluster):
    """/readyz: 503 while PostgreSQL is away (a load balancer stops sending clients to
    this frontend), 200 again once it is back; /healthz stays 200 throughout."""
    if not pg_cluster.owned:
        pytest.skip("stops the server: only the private cluster")
    port = free_port()
    srv = ServerProcess(tmp_path, extra_config={
        "store": {"backend": "postgresql", "conninfo": pg_cluster.create_database("ready")},
        "metrics": {"listen": f"http://127.0.0.1:{port}"}})
    srv.start()
    url = f"http://127.0.0.1:{port}"

    def status(path):
        try:
            with urllib.request.urlopen(url + path, timeout=15) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert status("/readyz") == 200
        pg_cluster.stop()
        try:
            assert status("/readyz") == 503
            assert status("/healthz") == 200
        finally:
            pg_cluster.start_again()
        deadline = time.monotonic() + 20
        while status("/readyz") != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert status("/readyz") == 200
    finally:
        srv.stop()
