"""Shared fixtures: a real Rollcall server process on free loopback ports, with its
own config, store file and self-signed certificate in a temporary directory."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import pgcluster

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = "dc=district,dc=example"
ROOT_DN = "cn=admin,dc=district,dc=example"
ROOT_PW = "demo-admin-password"
ROOT_HASH = "{ARGON2}$argon2id$v=19$m=65536,t=2,p=1$C5amlbwbhrtIxbp2WRYnLQ$bfwoWNZAK3PvmUkWvhTaB2540OdAF8O2zb6bQJr1sk8"

BASE_LDIF = f"""dn: {SUFFIX}
objectClass: top
objectClass: dcObject
objectClass: organization
dc: district
o: Test District

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=students,ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: students

dn: ou=staff,ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: staff

dn: uid=jsmith,ou=students,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: jsmith
cn: John Smith
givenName: John
sn: Smith
mail: jsmith@district.example
employeeNumber: 000001s001
departmentNumber: 1234
userPassword: {{SSHA}}wHKTKchq694536SWFeMW+HFvQa6TnWtV

dn: uid=mgarcia,ou=students,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: mgarcia
cn:: TWFyw61hIEdhcmPDrWE=
givenName:: TWFyw61h
sn:: R2FyY8OtYQ==
mail: mgarcia@district.example
employeeNumber: 000002s002
departmentNumber: 1234
departmentNumber: 5678
userPassword: student-pw-2

dn: uid=teacher1,ou=staff,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: teacher1
cn: Terry Teacher
sn: Teacher
mail: teacher1@district.example
userPassword: staff-pw-1
"""
# jsmith's {SSHA} above is the hash of "student-pw-1" as slappasswd makes it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> int:
    """The first of n consecutive free ports (worker N listens on port + N): free_port
    alone says nothing of the ports after it, which another socket may hold."""
    while True:
        first = free_port()
        socks = []
        try:
            for p in range(first, first + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()


def wait_port(port, timeout=20.0, proc=None, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL if it has not ended within timeout seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def store_section() -> dict:
    """config.yaml's store section for a test server: SQLite in its directory, or with
    ROLLCALL_TEST_STORE=postgresql a fresh database of the run's PostgreSQL cluster (the
    protocol suites then run against the PostgreSQL store)."""
    if os.environ.get("ROLLCALL_TEST_STORE", "sqlite") == "postgresql":
        return {"backend": "postgresql", "conninfo": pgcluster.shared().create_database("srv")}
    return {"backend": "sqlite", "path": "var/rollcall.db"}


class ServerProcess:
    """A `rollcall serve` subprocess with its own directory. host/netns: listen on
    that address inside that network namespace (a test host, tests/multihost);
    store: a config `store:` section instead of the run's default."""

    def __init__(self, workdir: Path, extra_config=None, ldif=BASE_LDIF, host="127.0.0.1", netns=None,
                 store=None):
        self.workdir = workdir
        self.host, self.netns = host, netns
        self.port = free_port()
        self.tls_port = free_port()
        self.url = f"ldap://{host}:{self.port}"
        self.ldaps_url = f"ldaps://{host}:{self.tls_port}"
        schema = [str(ROOT / "schema" / n) for n in
                  ("core.schema", "cosine.schema", "inetorgperson.schema", "nis.schema", "eduperson.schema")]
        cfg = {
            "suffix": SUFFIX,
            "listeners": [self.url, self.ldaps_url],
            "root": {"dn": ROOT_DN, "password": ROOT_HASH},
            "store": store or store_section(),
            "schema": schema,
            "tls": {"cert": "var/tls/server.crt", "key": "var/tls/server.key"},
            "limits": {"size": 500, "time": 60, "unindexed": 50},
            "indexes": {"objectClass": ["eq"], "uid": ["eq", "sub"], "cn": ["eq", "sub"], "sn": ["eq", "sub"],
                        "mail": ["eq", "sub"], "employeeNumber": ["eq"], "departmentNumber": ["eq"],
                        "member": ["eq"], "entryUUID": ["eq"]},
            # cheap argon2 parameters keep the suite fast; production uses config.yaml's
            "passwords": {"scheme": "ARGON2", "argon2": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}},
            "log": {"level": "info"},
        }
        for key, value in (extra_config or {}).items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        self.store = cfg["store"]
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        from directory.tls import make_self_signed

        make_self_signed(workdir / "var/tls/server.crt", workdir / "var/tls/server.key")
        self.ca_file = workdir / "var/tls/server.crt"
        if ldif:
            (workdir / "base.ldif").write_text(ldif)
            self.rollcall("load", str(workdir / "base.ldif"))
        self.proc = None
        self.log_path = workdir / "server.log"

    def rollcall(self, *args, check=True, input=None):
        return subprocess.run([sys.executable, "-m", "directory.cli", args[0], "--config", str(self.config_path), *args[1:]],
                              cwd=ROOT, capture_output=True, text=True, check=check, input=input)

    def start(self):
        self.log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "directory.cli", "serve", "--config", str(self.config_path)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc, host=self.host)
        wait_port(self.tls_port, proc=self.proc, host=self.host)
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self):
        self.kill(signal.SIGTERM)

    def env(self):
        """Environment for OpenLDAP client tools: trust our self-signed certificate."""
        e = dict(os.environ)
        e["LDAPTLS_CACERT"] = str(self.ca_file)
        e["LDAPTLS_REQCERT"] = "demand"
        return e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path):
    srv = ServerProcess(tmp_path).start()
    yield srv
    srv.stop()


def have(tool):
    return shutil.which(tool) is not None


requires_ldap_utils = pytest.mark.skipif(not have("ldapsearch"), reason="OpenLDAP ldap-utils not installed")


@pytest.fixture(scope="session")
def pg_cluster():
    """One private PostgreSQL cluster for the run (or ROLLCALL_TEST_PG_DSN's server);
    tests make a scratch database each with pg_cluster.create_database()."""
    if not os.environ.get("ROLLCALL_TEST_PG_DSN") and pgcluster.find_binaries() is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; "
                    "scripts/test installs Debian's postgresql package when run as root)")
    return pgcluster.shared()  # torn down when the test process exits
