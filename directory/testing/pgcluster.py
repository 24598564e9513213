"""A private PostgreSQL cluster for a test run or a benchmark: `initdb` in a temporary
directory, its own port and unix socket directory, started and stopped with pg_ctl. Run
as the `postgres` OS user when we are root (initdb refuses root). With
ROLLCALL_TEST_PG_DSN set, that server is used instead (it must allow CREATE DATABASE and
have pg_trgm). Used by tests/ (tests/pgcluster.py re-exports it) and benchmarks/.

    cluster = PGCluster.start()            # or PGCluster.from_env() / find_binaries()
    cluster = PGCluster.start(durable=True)  # production settings (fsync, synchronous_commit)
    dsn = cluster.create_database()        # a scratch database with pg_trgm
    cluster.stop(); cluster.start_again()  # the database away for a moment
    cluster.postmaster_pid()               # for CPU accounting (/proc/<pid>/stat)
    cluster.teardown()
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

TEMPLATE = "rollcall_template"  # has pg_trgm: each scratch database is a cheap copy

# a test cluster: small, quick, no fsync waits for the tests' many commits
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                 "shared_buffers": "'64MB'"}
# what a district's production server would have (durability at its defaults, memory
# sized for a small dedicated database): the benchmarks' cluster
PRODUCTION_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
                       "wal_level": "replica", "shared_buffers": "'1GB'",
                       "effective_cache_size": "'4GB'", "maintenance_work_mem": "'256MB'",
                       "work_mem": "'16MB'", "max_wal_size": "'4GB'",
                       "checkpoint_completion_target": "0.9", "random_page_cost": "1.1"}


def _private_dirs(run_as) -> tuple[Path, Path]:
    """A temporary directory for one cluster: (its data directory, not yet made, and its
    socket directory), owned by the OS user the server runs as."""
    base = Path(tempfile.mkdtemp(prefix="rollcall-pg-"))
    datadir, sockdir = base / "data", base / "sock"
    sockdir.mkdir()
    if run_as:
        pw = pwd.getpwnam(run_as)
        for p in (base, sockdir):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        base.chmod(0o700)
        sockdir.chmod(0o777)
    return datadir, sockdir


def find_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin with initdb and pg_ctl (or $PG_BINDIR)."""
    candidates = [os.environ["PG_BINDIR"]] if os.environ.get("PG_BINDIR") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                         reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def free_port(host="127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PGCluster:
    def __init__(self, dsn_base: str, owned: bool, bindir=None, datadir=None, sockdir=None, port=None,
                 listen_addresses=None, run_as=None, netns=None):
        self.dsn_base = dsn_base  # conninfo without dbname
        self.owned = owned
        self.bindir, self.datadir, self.sockdir = bindir, datadir, sockdir
        self.port, self.listen_addresses, self.run_as, self.netns = port, listen_addresses, run_as, netns
        self.databases = []

    # -- making one ----------------------------------------------------------------------
    @classmethod
    def from_env(cls):
        dsn = os.environ.get("ROLLCALL_TEST_PG_DSN")
        if not dsn:
            return None
        cluster = cls(dsn, owned=False)
        cluster._make_template()
        return cluster

    @classmethod
    def start(cls, listen_addresses: str = "127.0.0.1", port: int | None = None, bindir=None,
              durable: bool = False, settings: dict | None = None, netns=None):
        """initdb + pg_ctl start. listen_addresses: where TCP listens ('' for the socket
        only). netns: run the server inside that network namespace (`ip netns exec`), e.g.
        on a veth address of a test host; the unix socket still reaches it from here.
        durable=False: a test cluster (no fsync, asynchronous commit: quick, loses data on
        a crash); durable=True: what a production server has (PRODUCTION_SETTINGS: fsync,
        synchronous_commit, full_page_writes on), for benchmarks. settings: more
        postgresql.conf lines (name: value), after those."""
        bindir = Path(bindir or find_binaries() or "")
        if not (bindir / "initdb").exists():
            raise RuntimeError("no PostgreSQL binaries (apt-get install postgresql)")
        run_as = "postgres" if os.geteuid() == 0 else None
        datadir, sockdir = _private_dirs(run_as)
        # a port free here (in a fresh namespace every port is free)
        port = port or free_port("127.0.0.1" if netns or not listen_addresses else listen_addresses.split(",")[0])
        cluster = cls(f"host={sockdir} port={port} user=postgres", owned=True, bindir=bindir, datadir=datadir,
                      sockdir=sockdir, port=port, listen_addresses=listen_addresses, run_as=run_as, netns=netns)
        cluster._run("initdb", "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--locale=C.UTF-8", *(() if durable else ("--no-sync",)))
        conf = datadir / "postgresql.conf"
        with open(conf, "a") as fh:
            fh.write(f"\nport = {port}\nunix_socket_directories = '{sockdir}'\n"
                     f"listen_addresses = '{listen_addresses}'\nmax_connections = 300\n")
            chosen = dict(PRODUCTION_SETTINGS if durable else TEST_SETTINGS, **(settings or {}))
            fh.writelines(f"{k} = {v}\n" for k, v in chosen.items())
        hba = datadir / "pg_hba.conf"
        with open(hba, "a") as fh:
            fh.write("host all all 0.0.0.0/0 trust\n")
        cluster.start_again()
        cluster._make_template()
        return cluster

    def start_standby(self, listen_addresses: str):
        """A synchronous streaming standby of this cluster (pg_basebackup -R, its own port
        and socket): from then on every commit here waits until the standby has it
        (synchronous_commit on, synchronous_standby_names '*'), as a district's failover
        pair would. Returns the standby, running."""
        with self.admin() as conn:
            conn.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
            conn.execute("ALTER SYSTEM SET fsync = 'on'")
        with open(self.datadir / "pg_hba.conf", "a") as fh:
            fh.write("local replication all trust\nhost replication all 0.0.0.0/0 trust\n")
        self._run("pg_ctl", "-D", str(self.datadir), "reload")
        datadir, sockdir = _private_dirs(self.run_as)
        port = free_port(listen_addresses)
        standby = PGCluster(f"host={sockdir} port={port} user=postgres", owned=True, bindir=self.bindir,
                            datadir=datadir, sockdir=sockdir, port=port, listen_addresses=listen_addresses,
                            run_as=self.run_as)
        standby._run("pg_basebackup", "-D", str(datadir), "-R", "-X", "stream", "-c", "fast",
                     "-d", f"host={self.sockdir} port={self.port} user=postgres application_name=standby")
        with open(datadir / "postgresql.conf", "a") as fh:
            fh.write(f"\nport = {port}\nunix_socket_directories = '{sockdir}'\n"
                     f"listen_addresses = '{listen_addresses}'\n")
        standby.start_again()
        with self.admin() as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while conn.execute("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone() is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("the standby did not become synchronous")
                time.sleep(0.1)
        return standby

    def promote(self):
        """pg_ctl promote: a standby becomes the primary."""
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "promote")

    def _run(self, tool, *args, check=True):
        cmd = [str(self.bindir / tool), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        if self.netns and tool == "pg_ctl":
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, cwd="/")

    def start_again(self):
        """pg_ctl start (waits until it accepts connections)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.datadir.parent / "log"), "-w", "-t", "60",
                  "start")

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid (first line of postmaster.pid), None when not running
        or not ours."""
        if not self.datadir:
            return None
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def teardown(self):
        if self.owned:
            self.stop("immediate")
            shutil.rmtree(self.datadir.parent, ignore_errors=True)
        else:
            for name in self.databases:
                self.drop_database(name)

    # -- databases -----------------------------------------------------------------------
    def dsn(self, dbname="postgres") -> str:
        return f"{self.dsn_base} dbname={dbname}"

    def admin(self):
        return psycopg.connect(self.dsn("postgres"), autocommit=True)

    def _make_template(self):
        with self.admin() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (TEMPLATE,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(self.dsn(TEMPLATE), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    def create_database(self, prefix="t") -> str:
        """A fresh empty database (pg_trgm installed); its conninfo."""
        name = f"rc_{prefix}_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        self.databases.append(name)
        return self.dsn(name)

    def drop_database(self, name):
        try:
            with self.admin() as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except psycopg.Error:
            pass
