"""cn=Subschema's createTimestamp and modifyTimestamp (RFC 4512 4.2), read by real
clients (ldap3, ldapsearch) from a server process: schema-caching clients (JNDI,
Apache Directory Studio) refresh when modifyTimestamp moves. The stamps are kept in
the store keyed by the schema files' digest: a restart with the same files keeps
them, a changed file moves modifyTimestamp and never createTimestamp."""
import re
import subprocess
import time

import pytest
from ldap3 import BASE, Connection, Server

from tests.conftest import ROOT, ServerProcess, requires_ldap_utils

FILES = ("core.schema", "cosine.schema", "inetorgperson.schema", "nis.schema", "eduperson.schema")
GENTIME = re.compile(r"^\d{14}Z$")



@pytest.fixture
def srv(tmp_path):
    schema_dir = tmp_path / "schema"
    schema_dir.mkdir()
    for name in FILES:
        (schema_dir / name).write_text((ROOT / "schema" / name).read_text())
    srv = ServerProcess(tmp_path, extra_config={"schema": [str(schema_dir / n) for n in FILES]})
    srv.schema_dir = schema_dir
    yield srv.start()
    srv.stop()


def raw_stamps(srv):
    conn = Connection(Server(srv.url), auto_bind=True)
    conn.search("cn=Subschema", "(objectClass=*)", BASE, attributes=["createTimestamp", "modifyTimestamp"])
    out = {k: conn.entries[0][k].raw_values[0].decode() for k in ("createTimestamp", "modifyTimestamp")}
    conn.unbind()
    return out


def test_stamps_present_and_operational(srv):
    got = raw_stamps(srv)
    assert GENTIME.match(got["createTimestamp"]) and GENTIME.match(got["modifyTimestamp"]), got
    assert got["createTimestamp"] <= got["modifyTimestamp"]
    conn = Connection(Server(srv.url), auto_bind=True)
    # operational: not in '*', in '+'
    conn.search("cn=Subschema", "(objectClass=*)", BASE, attributes=["*"])
    assert "modifyTimestamp" not in conn.entries[0].entry_attributes
    conn.search("cn=Subschema", "(objectClass=*)", BASE, attributes=["+"])
    assert {"createTimestamp", "modifyTimestamp"} <= set(conn.entries[0].entry_attributes)
    conn.unbind()


def test_restart_keeps_stamps_and_schema_change_moves_modify(srv):
    before = raw_stamps(srv)
    srv.stop()
    time.sleep(1.1)  # generalized time has one-second resolution
    srv.start()
    assert raw_stamps(srv) == before  # same files: same stamps
    srv.stop()
    path = srv.schema_dir / "eduperson.schema"
    path.write_text(path.read_text() + """
attributetype ( 1.3.6.1.4.1.99999.20.1 NAME 'rollcallTestStamp'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
""")
    srv.start()
    after = raw_stamps(srv)
    assert after["createTimestamp"] == before["createTimestamp"]
    assert after["modifyTimestamp"] > before["modifyTimestamp"], (before, after)
    srv.stop()
    time.sleep(1.1)
    srv.start()
    assert raw_stamps(srv) == after  # once per change, not per start


@requires_ldap_utils
def test_ldapsearch_reads_stamps(srv):
    out = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", srv.url, "-b", "cn=Subschema", "-s", "base",
                          "(objectClass=subschema)", "createTimestamp", "modifyTimestamp"],
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"^createTimestamp: \d{14}Z$", out, re.M), out
    assert re.search(r"^modifyTimestamp: \d{14}Z$", out, re.M), out
