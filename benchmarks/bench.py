"""Rollcall benchmark: load N synthetic users, measure eq search / bind / substring search.

    scripts/bench [--users N] [--duration S] [--cases eq,bind,sub,typeahead,argon2,argon2-cached]
                  [--store sqlite,postgresql] [--vs-slapd] [--repeat R]

Flow: generate (or reuse) bench-out/users-N-*.ldif; for each Rollcall store
(--store: sqlite, postgresql or both) write a temporary config.yaml (from the
project's, on 127.0.0.1:<free port>, the same indexes as the slapd run), time
`rollcall load`, start `rollcall serve`.  The SQLite store lives in a temp dir; the
PostgreSQL store in a private cluster started for the run (directory/testing/
pgcluster.py: initdb as the postgres user, production settings: fsync and
synchronous_commit on), reached over TCP on 127.0.0.1.  With --vs-slapd also
slapadd the same LDIF into a private slapd (back-mdb, argon2 module).  Then for
each case and repeat the servers are measured one after the other (all stay up,
the idle ones cost nothing), and a table with ops/s (best and range over the
repeats), p50/p99 latency, errors, the CPU of each server (for the PostgreSQL
store the frontend and PostgreSQL's postmaster with all its backends, counted
apart and together), operations per server CPU-second and the ratios between
servers is printed.  Results also go to bench-out/results-<timestamp>.json.

The argon2 case binds as users whose userPassword is {ARGON2} at the production
parameters (m=64 MiB, t=2; the first --argon2-users users): bind capacity when
every bind is a full verification (Rollcall: measured on a twin server process on
the same store with passwords.verified_cache_seconds 0).  The argon2-cached case
binds as the same users again and again (each bound once first), on the server
with its default settings: the verified-password cache; compare with the bind
case ({SSHA}), the goal being >= 0.5x of its rate.

The substring cases search as an SSO service's account (cn=bench-sso,ou=services: the
access rules apply, as they do to a login page's type-ahead), ask for all user
attributes and set a size limit of 10: sub is (cn=*<piece>*) with a 4-letter piece of a
common surname; typeahead is (cn=<Given> <Su>*), an existing user's given name and the
first 2-3 letters of the surname.  The issue's shape is 8 connections x 4 in flight
(--depth 4, the default).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from directory.testing import pgcluster

from . import datagen, loadgen
from .slapd import PrivateSlapd, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench-out"

# The index set of both servers ("same data and indexes").
INDEXES = {"objectClass": ["eq"], "uid": ["eq", "sub"], "cn": ["eq", "sub"], "mail": ["eq"]}

TARGETS = {  # from the issue: 100k users, 2 cores
    "eq": {"ratio": 0.45, "p99_ms": 5.0, "per_cpu": 0.5},
    "bind": {"ratio": 0.45, "p99_ms": 5.0, "per_cpu": 0.5},
    "sub": {"ratio": 0.3, "p99_ms": 10.0},
    "typeahead": {"ratio": 0.3, "p99_ms": 10.0},
    "load_entries_per_s": 10000,
}


# ---------------------------------------------------------------- Rollcall

def _self_signed(cert: Path, key: Path) -> None:
    """A throw-away pair so a config checker that wants tls.* is satisfied."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = _dt.datetime.now(_dt.timezone.utc)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(k.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - _dt.timedelta(days=1))
         .not_valid_after(now + _dt.timedelta(days=30))
         .add_extension(x509.SubjectAlternativeName(
             [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
             critical=False)
         .sign(k, hashes.SHA256()))
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    os.chmod(key, 0o600)


STORE_NAMES = {"sqlite": "rc-sqlite", "postgresql": "rc-pg"}


class RollcallServer:
    name = "rollcall"

    def __init__(self, workdir: str, workers: int | None, rehash_on_bind: bool,
                 log_level: str, project_config: Path, backend: str = "sqlite",
                 conninfo: str | None = None, db_pid=None, access_log: str = "off",
                 nocache_twin: bool = False):
        """backend sqlite (a file in workdir) or postgresql (conninfo; db_pid: a callable
        giving the postmaster's pid, whose CPU is measured with the frontend's)."""
        self.backend = backend
        self.conninfo = conninfo
        self.db_pid = db_pid
        self.name = STORE_NAMES[backend]
        self.dir = Path(workdir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg_path = self.dir / "config.yaml"
        self.workers = workers
        self.rehash_on_bind = rehash_on_bind
        self.log_level = log_level
        self.access_log = access_log
        self.project_config = project_config
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "rollcall.log"
        self._log = None
        # the argon2 case: a second process on the same store with the verified-password
        # cache off (every bind a full verification); idle during the other cases
        self.nocache_twin = nocache_twin
        self.twin_port: int | None = None
        self.twin_proc: subprocess.Popen | None = None
        self._twin_log = None
        # this checkout's code (an editable install may point at another worktree)
        self.rollcall = [sys.executable, "-m", "directory.cli"]
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def extra_pids(self) -> dict:
        pid = self.db_pid() if self.db_pid else None
        return {"db": pid} if pid else {}

    def write_config(self) -> dict:
        import yaml

        base = self.project_config.parent
        doc = yaml.safe_load(self.project_config.read_text(encoding="utf-8")) or {}
        self.port = free_port()
        doc["suffix"] = datagen.SUFFIX
        doc["listeners"] = ["ldap://127.0.0.1:%d" % self.port]
        doc["root"] = {"dn": datagen.ROOT_DN,
                       # same hash as slapd's rootpw; only bound once per connection
                       "password": datagen.ssha(datagen.ROOT_PASSWORD, b"bnch")}
        store = dict(doc.get("store") or {})
        store["backend"] = self.backend
        if self.backend == "postgresql":
            store.pop("path", None)
            store["conninfo"] = self.conninfo
        else:
            store["path"] = str(self.dir / "rollcall.db")
            store.pop("conninfo", None)
        doc["store"] = store
        doc["schema"] = [str(p if Path(p).is_absolute() else (base / p).resolve())
                         for p in doc.get("schema") or []]
        cert, key = self.dir / "server.crt", self.dir / "server.key"
        _self_signed(cert, key)
        tls = dict(doc.get("tls") or {})
        tls.update({"cert": str(cert), "key": str(key), "require_tls_for_bind": False})
        doc["tls"] = tls
        doc["indexes"] = {k: list(v) for k, v in INDEXES.items()}
        # no web console: its fixed port would clash between the servers of one run
        doc.pop("web", None)
        # all the load comes from one address (127.0.0.1); a district's logins come from
        # many (or from a load balancer passing them on): the per-address cap of binds
        # being verified would answer busy (51) to the bind case's 32 connections
        lim = dict(doc.get("limits") or {})
        lim["max_binds_per_address"] = max(int(lim.get("max_binds_per_address") or 0), 256)
        doc["limits"] = lim
        pw = dict(doc.get("passwords") or {})
        # Binding a migrated {SSHA} user would otherwise rewrite it as {ARGON2}: the
        # bind case would measure Argon2 and the store would change under the run.
        pw["rehash_on_bind"] = bool(self.rehash_on_bind)
        doc["passwords"] = pw
        if self.workers:
            doc.setdefault("server", {})
            doc["server"] = dict(doc["server"] or {}, workers=int(self.workers))
        doc["log"] = dict(doc.get("log") or {}, level=self.log_level)
        if self.access_log != "off":  # --access-log: its cost at full load
            doc["log"]["access"] = str(self.dir / "access.log") if self.access_log == "file" else True
        self.cfg_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        if self.nocache_twin:
            self.twin_port = free_port()
            twin = dict(doc, listeners=["ldap://127.0.0.1:%d" % self.twin_port])
            twin["passwords"] = dict(doc["passwords"], verified_cache_seconds=0)
            twin.pop("metrics", None)
            twin["server"] = dict(doc.get("server") or {}, workers=1)
            (self.dir / "config-nocache.yaml").write_text(yaml.safe_dump(twin, sort_keys=False),
                                                          encoding="utf-8")
        return doc

    def target(self, case: str):
        """(port, pid) of the process a case is measured on."""
        if case == "argon2" and self.twin_proc is not None:
            return self.twin_port, self.twin_proc.pid
        return self.port, self.pid

    def load(self, ldif: str) -> float:
        self.write_config()
        t0 = time.perf_counter()
        r = subprocess.run([*self.rollcall, "load", "--config", str(self.cfg_path), ldif],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           cwd=str(self.dir), env=self.env)
        secs = time.perf_counter() - t0
        (self.dir / "load.log").write_text(r.stdout)
        if r.returncode != 0:
            raise RuntimeError("rollcall load failed (%d):\n%s"
                               % (r.returncode, r.stdout.replace("\r", "\n")[-3000:]))
        return secs

    def start(self, timeout: float = 120.0) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.rollcall, "serve", "--config", str(self.cfg_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=str(self.dir),
                                     start_new_session=True, env=self.env)
        try:
            wait_for_port(self.port, timeout, self.proc)
            if self.nocache_twin:
                self._twin_log = open(self.dir / "rollcall-nocache.log", "ab")
                self.twin_proc = subprocess.Popen(
                    [*self.rollcall, "serve", "--config", str(self.dir / "config-nocache.yaml")],
                    stdin=subprocess.DEVNULL, stdout=self._twin_log, stderr=subprocess.STDOUT,
                    cwd=str(self.dir), start_new_session=True, env=self.env)
                wait_for_port(self.twin_port, timeout, self.twin_proc)
        except Exception:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0):
        if self.twin_proc is not None:
            if self.twin_proc.poll() is None:
                self.twin_proc.send_signal(signal.SIGTERM)
                try:
                    self.twin_proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.twin_proc.kill()
                    self.twin_proc.wait()
            self.twin_proc = None
        if self._twin_log is not None:
            self._twin_log.close()
            self._twin_log = None
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    # our own session (start_new_session): its group is ours to kill
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    self.proc.wait()
            rc = self.proc.returncode
            # worker processes (server.workers > 1) live in the session we created
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


# ---------------------------------------------------------------- output

SERVER_ORDER = ("rc-sqlite", "rc-pg", "slapd")
# (numerator, denominator) pairs printed as ratios when both were measured
RATIO_PAIRS = (("rc-pg", "rc-sqlite"), ("rc-sqlite", "slapd"), ("rc-pg", "slapd"))


def _fmt_ratio(a, b):
    if not a or not b:
        return "-"
    r = a / b
    return ("%.2fx" if r >= 0.1 else "%.4fx") % r


def _ordered(servers: dict):
    return [s for s in SERVER_ORDER if s in servers] + [s for s in servers if s not in SERVER_ORDER]


def cpu_figures(r: dict) -> dict:
    """CPU of the run as % of one core and per operation: fe (the LDAP server process:
    Rollcall's frontend, or slapd), db (PostgreSQL: postmaster and all its backends),
    total; ops per CPU-second and CPU ms per operation of each."""
    out = {}
    ops = r.get("ops_per_s") or 0.0
    fe = r.get("server_cpu_pct")
    db = (r.get("extra_cpu_pct") or {}).get("db")
    parts = {"fe": fe, "db": db}
    parts["total"] = None if fe is None else fe + (db or 0.0)
    for k, pct in parts.items():
        if pct is None:
            continue
        out[k + "_cpu_pct"] = pct
        cores = pct / 100.0
        out[k + "_ops_per_cpu_s"] = ops / cores if cores > 0 else None
        out[k + "_cpu_ms_per_op"] = 1000.0 * cores / ops if ops else None
    return out


def _ops(v):
    return ("%.1f" if v < 100 else "%.0f") % v


def _num(v, fmt="%.0f"):
    if fmt == "%.0f" and v is not None and v < 100:
        fmt = "%.1f"
    return "-" if v is None else fmt % v


def print_table(results: list[dict], loads: dict, out=sys.stdout):
    w = out.write
    w("\n%-13s %-9s %9s %15s %8s %8s %6s %6s %6s %7s %8s %8s %8s %6s\n"
      % ("case", "server", "ops/s", "range (n runs)", "p50 ms", "p99 ms", "errors",
         "fe%", "db%", "total%", "ops/feCs", "ops/dbCs", "ops/CPUs", "other%"))
    w("-" * 130 + "\n")
    by_case: dict[str, dict[str, dict]] = {}
    for r in results:
        by_case.setdefault(r["name"], {})[r["server"]] = r
    for case, servers in by_case.items():
        for server in _ordered(servers):
            r = servers[server]
            c = cpu_figures(r)
            runs = r.get("all_runs_ops_per_s") or [r["ops_per_s"]]
            rng = "%s-%s (%d)" % (_ops(min(runs)), _ops(max(runs)), len(runs))
            w("%-13s %-9s %9s %15s %8.2f %8.2f %6d %6s %6s %7s %8s %8s %8s %6s\n" % (
                case, server, _ops(r["ops_per_s"]), rng, r["p50_ms"], r["p99_ms"], r["errors"],
                _pct(c.get("fe_cpu_pct")), _pct(c.get("db_cpu_pct")), _pct(c.get("total_cpu_pct")),
                _num(c.get("fe_ops_per_cpu_s")), _num(c.get("db_ops_per_cpu_s")),
                _num(c.get("total_ops_per_cpu_s")), _pct(r.get("other_cpu_pct"))))
        for a, b in RATIO_PAIRS:
            if a in servers and b in servers:
                ra, rb = servers[a], servers[b]
                ca, cb = cpu_figures(ra), cpu_figures(rb)
                line = "%-13s %-9s %9s   ops/CPU-s %s" % (
                    case, "%s/%s" % (a.replace("rc-", ""), b.replace("rc-", "")),
                    _fmt_ratio(ra["ops_per_s"], rb["ops_per_s"]),
                    _fmt_ratio(ca.get("total_ops_per_cpu_s"), cb.get("total_ops_per_cpu_s")))
                t = TARGETS.get(case)
                if t and b == "slapd" and rb["ops_per_s"]:
                    pa, pb = ca.get("total_ops_per_cpu_s"), cb.get("total_ops_per_cpu_s")
                    ok = (ra["ops_per_s"] / rb["ops_per_s"] >= t["ratio"] and ra["p99_ms"] < t["p99_ms"]
                          and ra["errors"] == 0)
                    if t.get("per_cpu"):
                        ok = ok and bool(pa and pb and pa / pb >= t["per_cpu"])
                        line += "   target >= %.2fx ops/s, >= %.2fx per CPU-s, p99 < %g ms: %s" % (
                            t["ratio"], t["per_cpu"], t["p99_ms"], "met" if ok else "NOT met")
                    else:
                        line += "   target >= %.2fx, p99 < %g ms: %s" % (t["ratio"], t["p99_ms"],
                                                                      "met" if ok else "NOT met")
                w(line + "\n")
    for server in SERVER_ORDER:
        b, a = by_case.get("bind", {}).get(server), by_case.get("argon2-cached", {}).get(server)
        if a and b and b["ops_per_s"]:
            r = a["ops_per_s"] / b["ops_per_s"]
            line = "%-13s %-9s %9s   ops/CPU-s %s   repeated {ARGON2} binds / {SSHA} binds" % (
                "argon2-cached", server + "/bind", _fmt_ratio(a["ops_per_s"], b["ops_per_s"]),
                _fmt_ratio(cpu_figures(a).get("total_ops_per_cpu_s"), cpu_figures(b).get("total_ops_per_cpu_s")))
            if server != "slapd":
                line += "   target >= 0.50x: %s" % ("met" if r >= 0.5 and a["errors"] == 0 else "NOT met")
            w(line + "\n")
        u = by_case.get("argon2", {}).get(server)
        if a and u and u["ops_per_s"]:
            w("%-13s %-9s %9s   repeated (cached) / full-verification {ARGON2} binds\n" % (
                "argon2-cached", server + "/argon2", _fmt_ratio(a["ops_per_s"], u["ops_per_s"])))
    w("ops/s: the best of the repeats (noise on a shared machine only slows a run down); "
      "range: all repeats.\nfe%%: the LDAP server process (Rollcall's frontend, or slapd); "
      "db%%: PostgreSQL (postmaster, backends, background workers); total%%: both; 100 = one "
      "core of %d.\nops/feCs, ops/dbCs, ops/CPUs: operations per CPU-second of the frontend, "
      "of PostgreSQL, of both.  other%%: everything else on the machine (load generator "
      "excluded)\n" % (os.cpu_count() or 1))
    if any((r.get("other_cpu_pct") or 0) > 20 for r in results):
        w("WARNING: other processes used > 20% of a core during some runs: those numbers "
          "are skewed (see other%)\n")
    w("\nCPU per operation (ms of one core; from the best run):\n")
    w("%-13s %-9s %9s %9s %9s\n" % ("case", "server", "frontend", "postgres", "total"))
    for case, servers in by_case.items():
        for server in _ordered(servers):
            c = cpu_figures(servers[server])
            w("%-13s %-9s %9s %9s %9s\n" % (case, server, _num(c.get("fe_cpu_ms_per_op"), "%.3f"),
                                           _num(c.get("db_cpu_ms_per_op"), "%.3f"),
                                           _num(c.get("total_cpu_ms_per_op"), "%.3f")))
    w("\n")
    for case, servers in by_case.items():
        any_r = next(iter(servers.values()))
        w("%-13s %s\n" % (case, any_r.get("describe", "")))
        for server, r in servers.items():
            extra = []
            if r.get("codes"):
                extra.append("result codes %s" % r["codes"])
            if r.get("wrong_entries"):
                extra.append("%d searches with a wrong entry count" % r["wrong_entries"])
            if r.get("unfinished"):
                extra.append("%d requests unanswered at the end" % r["unfinished"])
            if r.get("conn_errors"):
                extra.append("connection errors: %s" % "; ".join(r["conn_errors"][:3]))
            if r.get("error"):
                extra.append("FAILED: %s" % r["error"])
            if extra:
                w("      %s: %s\n" % (server, ", ".join(extra)))
    w("\n")
    for server in _ordered(loads):
        l = loads[server]
        if l.get("error"):
            w("load  %-9s FAILED: %s\n" % (server, l["error"].splitlines()[0][:200]))
        else:
            w("load  %-9s %8.0f entries/s  (%d entries in %.2f s, %s)\n"
              % (server, l["entries_per_s"], l["entries"], l["seconds"], l["tool"]))
    for server in ("rc-sqlite", "rc-pg"):
        r = loads.get(server, {}).get("entries_per_s")
        if r:
            w("load  %-9s target >= %d entries/s: %s%s\n" % (
                server, TARGETS["load_entries_per_s"],
                "met" if r >= TARGETS["load_entries_per_s"] else "NOT met",
                ("   (vs slapadd %s)" % _fmt_ratio(r, loads["slapd"]["entries_per_s"]))
                if loads.get("slapd", {}).get("entries_per_s") else ""))


def prime_binds(host: str, port: int, k: int, threads: int = 8) -> float:
    """Bind as each of the first k ({ARGON2}) users once: their first, full verification
    happens before the argon2-cached case is measured. Returns the seconds it took."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        loadgen._connect(host, port, (datagen.dn_of(i), datagen.password_of(i)), timeout=60.0).close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(k)))
    return time.perf_counter() - t0


def wait_quiet(max_wait: float, threshold: float = 15.0) -> float | None:
    """Wait (at most max_wait s) until the machine is < threshold % busy over 1 s.

    Returns the last busy % measured (None when /proc/stat is unreadable)."""
    deadline = time.monotonic() + max_wait
    busy = None
    while True:
        a = loadgen._machine_cpu()
        time.sleep(1.0)
        b = loadgen._machine_cpu()
        if not a or not b or b[1] <= a[1]:
            return None
        busy = 100.0 * (b[0] - a[0]) / (b[1] - a[1])
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def _pct(v):
    return "-" if v is None else "%.0f" % v


# ---------------------------------------------------------------- main

CASES = ("eq", "bind", "sub", "typeahead", "argon2", "argon2-cached")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--users", type=int, default=100000, help="synthetic users (default 100000)")
    ap.add_argument("--duration", type=float, default=10.0, help="recorded seconds per case (10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before (2)")
    ap.add_argument("--connections", type=int, default=8, help="connections for searches (8)")
    # 4: the 8 x 4 (at 8, twice the requests wait in the server's queue and
    # the latency of a saturated server doubles with them)
    ap.add_argument("--depth", type=int, default=4,
                    help="outstanding requests per connection in the sub and typeahead cases "
                         "(4: the issue's 8 x 4)")
    ap.add_argument("--eq-depth", type=int, default=4,
                    help="outstanding searches per connection in the eq case (4: the issue's "
                         "8 x 4)")
    ap.add_argument("--bind-connections", type=int, default=32,
                    help="connections for the bind case, 1 outstanding bind each (32)")
    ap.add_argument("--procs", type=int, default=1,
                    help="load generator processes (1; 2 did not help on 2 cores)")
    ap.add_argument("--cases", default="eq,bind,sub",
                    help="comma list of eq,bind,sub,typeahead,argon2,argon2-cached (default eq,bind,sub)")
    ap.add_argument("--store", default="sqlite",
                    help="Rollcall store(s) to measure, comma list of sqlite,postgresql "
                         "(default sqlite); several: measured alternately in the same run")
    ap.add_argument("--argon2-users", type=int, default=64,
                    help="users with {ARGON2} hashes for the argon2 case (64; hashed once, "
                         "cached in the output directory)")
    ap.add_argument("--argon2-connections", type=int, default=8,
                    help="connections for the argon2 case, 1 outstanding bind each (8; "
                         "limits.max_binds_per_address is 16)")
    ap.add_argument("--argon2-duration", type=float, default=30.0,
                    help="recorded seconds of the argon2 case (30: a few binds/s)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each case R times per server (alternating) and keep the "
                         "best ops/s run, showing the range (1)")
    ap.add_argument("--vs-slapd", action="store_true", help="also run a private slapd (back-mdb)")
    ap.add_argument("--only-slapd", action="store_true", help="measure slapd only (no Rollcall)")
    ap.add_argument("--rollcall-workers", type=int, default=None,
                    help="server.workers for Rollcall (default: as in config.yaml)")
    ap.add_argument("--rehash-on-bind", action="store_true",
                    help="keep passwords.rehash_on_bind on (off by default: binds would "
                         "rewrite {SSHA} as {ARGON2} during the run)")
    ap.add_argument("--rollcall-log-level", default="warning",
                    help="log.level for Rollcall (warning; slapd runs with loglevel none)")
    ap.add_argument("--access-log", choices=["off", "file", "stdout"], default="off",
                    help="log.access for Rollcall: off, a file in the run directory, or stdout (off)")
    ap.add_argument("--config", default=str(ROOT / "config.yaml"),
                    help="project config.yaml to copy settings from")
    ap.add_argument("--slapd-threads", type=int, default=16, help="slapd 'threads' (16)")
    ap.add_argument("--pg-dsn", default=None,
                    help="an existing PostgreSQL server (conninfo without dbname, a role "
                         "that may CREATE DATABASE; pg_trgm available) instead of a private "
                         "cluster; its CPU is then not measured unless --pg-pid is given")
    ap.add_argument("--pg-pid", type=int, default=None,
                    help="the postmaster pid of --pg-dsn's server (on this machine)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="before each measurement wait up to S s for the machine to be "
                         "idle (< 15%% busy), since other work skews a 2-core run (30; 0 = off)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output/cache directory (bench-out/)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary server directories")
    args = ap.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in args.cases:
        if c not in CASES:
            ap.error("unknown case %r (%s)" % (c, ", ".join(CASES)))
    args.store = [x.strip() for x in args.store.split(",") if x.strip()]
    for x in args.store:
        if x not in STORE_NAMES:
            ap.error("unknown store %r (sqlite, postgresql)" % x)
    if not 1 <= args.users <= 999999:
        ap.error("--users must be between 1 and 999999")
    if "argon2" not in args.cases and "argon2-cached" not in args.cases:
        args.argon2_users = 0
    elif not 1 <= args.argon2_users < args.users:
        ap.error("--argon2-users must be between 1 and --users - 1")
    if args.only_slapd:
        args.vs_slapd = True
        args.store = []
    return args


class _PrivatePG:
    """The run's PostgreSQL for the rc-pg server: a private durable cluster (or
    --pg-dsn's server) and one database in it."""

    def __init__(self, dsn: str | None, pid: int | None):
        self.cluster = None
        self.pid = pid
        if dsn:
            self.cluster = pgcluster.PGCluster(dsn, owned=False)
            self.cluster._make_template()
        else:
            self.cluster = pgcluster.PGCluster.start(listen_addresses="127.0.0.1", durable=True)
        dsn_db = self.cluster.create_database("bench")
        self.dbname = dsn_db.rsplit("dbname=", 1)[1]
        if dsn:
            self.conninfo = dsn_db
        else:  # over TCP, as a frontend on another host would reach it
            self.conninfo = "host=127.0.0.1 port=%d user=postgres dbname=%s" % (
                self.cluster.port, self.dbname)

    def postmaster_pid(self):
        return self.pid or self.cluster.postmaster_pid()

    def settings(self) -> dict:
        names = ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                 "shared_buffers", "wal_level")
        with self.cluster.admin() as conn:
            return {n: conn.execute("SHOW %s" % n).fetchone()[0] for n in names}

    def teardown(self):
        if self.cluster is not None:
            self.cluster.teardown()


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(tempfile.mkdtemp(prefix="run-%s-" % stamp, dir=str(out_dir)))
    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    t0 = time.perf_counter()
    if args.argon2_users:
        say("data: %d {ARGON2} hashes (m=%d KiB, t=%d) ..." % (
            args.argon2_users, datagen.ARGON2["memory_cost"], datagen.ARGON2["time_cost"]))
    ldif, fresh = datagen.cached_ldif(str(out_dir), args.users, argon2_users=args.argon2_users)
    say("data: %s (%s, %.2f s)" % (ldif, "generated" if fresh else "cached",
                                   time.perf_counter() - t0))
    entries = args.users + datagen.BASE_ENTRIES

    servers: list = []
    loads: dict = {}
    results: list[dict] = []
    pg = None
    pg_settings = None
    rc_exit = 0
    try:
        for backend in args.store:
            name = STORE_NAMES[backend]
            rc = None
            try:
                if backend == "postgresql":
                    say("postgresql: %s ..." % ("database on %s" % args.pg_dsn if args.pg_dsn
                                                else "private cluster (initdb, durable settings)"))
                    pg = _PrivatePG(args.pg_dsn, args.pg_pid)
                    pg_settings = pg.settings()
                    say("postgresql: %s (postmaster pid %s)" % (
                        ", ".join("%s=%s" % kv for kv in pg_settings.items()), pg.postmaster_pid()))
                rc = RollcallServer(str(run_dir / name), args.rollcall_workers,
                                    args.rehash_on_bind, args.rollcall_log_level, Path(args.config),
                                    backend=backend, conninfo=pg.conninfo if pg else None,
                                    db_pid=pg.postmaster_pid if pg and backend == "postgresql" else None,
                                    access_log=args.access_log, nocache_twin="argon2" in args.cases)
                say("%s: load %d entries ..." % (name, entries))
                secs = rc.load(ldif)
                loads[name] = {"entries": entries, "seconds": secs,
                               "entries_per_s": entries / secs, "tool": "rollcall load"}
                say("%s: loaded in %.2f s (%.0f entries/s); starting serve"
                    % (name, secs, entries / secs))
                rc.start()
                servers.append(rc)
                say("%s: listening on 127.0.0.1:%d (pid %d)" % (name, rc.port, rc.pid))
            except Exception as e:  # report and go on with the others
                loads.setdefault(name, {"tool": "rollcall load"})
                loads[name]["error"] = "%s: %s" % (type(e).__name__, e)
                say("%s: FAILED: %s\n%s" % (name, e, rc.log_tail() if rc else ""))
                if rc:
                    rc.stop()
                rc_exit = 1
        if args.vs_slapd:
            sl = PrivateSlapd(str(run_dir / "slapd"), threads=args.slapd_threads,
                              argon2=bool(args.argon2_users))
            try:
                say("slapd: slapadd %d entries ..." % entries)
                secs = sl.load(ldif)
                loads["slapd"] = {"entries": entries, "seconds": secs,
                                  "entries_per_s": entries / secs, "tool": "slapadd -q"}
                say("slapd: slapadd in %.2f s (%.0f entries/s); starting slapd"
                    % (secs, entries / secs))
                sl.start()
                servers.append(sl)
                say("slapd: listening on 127.0.0.1:%d (pid %d)" % (sl.port, sl.pid))
            except Exception as e:
                loads.setdefault("slapd", {"tool": "slapadd -q"})
                loads["slapd"]["error"] = "%s: %s" % (type(e).__name__, e)
                say("slapd: FAILED: %s" % e)
                sl.stop()
                rc_exit = 1

        wls = loadgen.make_workloads(args.users, datagen.ROOT_DN, datagen.ROOT_PASSWORD,
                                     connections=args.connections, depth=args.depth,
                                     bind_connections=args.bind_connections, cases=args.cases,
                                     argon2_users=args.argon2_users,
                                     argon2_connections=args.argon2_connections,
                                     eq_depth=args.eq_depth)
        ncpu = os.cpu_count() or 1
        for wl in wls:
            runs: dict[str, list[dict]] = {srv.name: [] for srv in servers}
            for rep in range(args.repeat):
                for srv in servers:
                    if srv.proc is None or srv.proc.poll() is not None:
                        continue
                    idle_busy = None
                    if args.quiet_wait > 0:
                        idle_busy = wait_quiet(args.quiet_wait)
                        if idle_busy is not None and idle_busy >= 15.0:
                            say("note: machine still %.0f%% busy before %s/%s: numbers are "
                                "skewed by other work" % (idle_busy, wl.name, srv.name))
                    extra = srv.extra_pids() if hasattr(srv, "extra_pids") else {}
                    port, pid = srv.target(wl.name) if hasattr(srv, "target") else (srv.port, srv.pid)
                    try:
                        slow = wl.name == "argon2"
                        if wl.name == "argon2-cached":
                            primed = prime_binds("127.0.0.1", port, args.argon2_users)
                            say("argon2-cached %s: bound each of %d {ARGON2} users once (%.1f s)"
                                % (srv.name, args.argon2_users, primed))
                        r = loadgen.run("127.0.0.1", port, wl, warmup=args.warmup,
                                        duration=args.argon2_duration if slow else args.duration,
                                        procs=args.procs, drain=30.0 if slow else 5.0,
                                        server_pid=pid, extra_pids=extra)
                        d = r.as_dict()
                        if r.machine_busy_pct is not None and r.server_cpu_pct is not None:
                            d["other_cpu_pct"] = max(0.0, r.machine_busy_pct * ncpu
                                                     - r.server_cpu_pct - r.loadgen_cpu_pct
                                                     - sum(r.extra_cpu_pct.values()))
                    except Exception as e:
                        d = loadgen.Result(wl.name, describe=wl.describe).as_dict()
                        d["error"] = "%s: %s" % (type(e).__name__, e)
                        d["errors"] = 1
                    d["server"] = srv.name
                    d["repeat"] = rep
                    d["machine_busy_before_pct"] = idle_busy
                    d.update(cpu_figures(d))
                    runs[srv.name].append(d)
                    say("%-13s %-9s #%d: %8.0f ops/s  p50 %.2f ms  p99 %.2f ms  errors %d  "
                        "fe %s%%  db %s%%  other %s%%%s" % (
                            wl.name, srv.name, rep + 1, d["ops_per_s"], d["p50_ms"], d["p99_ms"],
                            d["errors"], _pct(d.get("fe_cpu_pct")), _pct(d.get("db_cpu_pct")),
                            _pct(d.get("other_cpu_pct")),
                            ("  (%s)" % d["error"]) if d.get("error") else ""))
                    if srv.proc is not None and srv.proc.poll() is not None:
                        say("%s exited (status %s)" % (srv.name, srv.proc.returncode))
            for name, rs in runs.items():
                if not rs:
                    continue
                best = dict(max(rs, key=lambda d: d["ops_per_s"]))
                best["all_runs_ops_per_s"] = [round(d["ops_per_s"], 1) for d in rs]
                best["all_runs"] = [{k: d.get(k) for k in (
                    "ops_per_s", "p50_ms", "p99_ms", "errors", "fe_cpu_pct", "db_cpu_pct",
                    "total_cpu_pct", "fe_cpu_ms_per_op", "db_cpu_ms_per_op", "total_cpu_ms_per_op",
                    "other_cpu_pct")} for d in rs]
                results.append(best)
                if best["errors"]:
                    rc_exit = 1
    finally:
        for srv in servers:
            srv.stop()
        if pg is not None:
            pg.teardown()

    print_table(results, loads)
    ratios = {}
    by_case: dict = {}
    for r in results:
        by_case.setdefault(r["name"], {})[r["server"]] = r
    for case, s in by_case.items():
        for a, b in RATIO_PAIRS:
            if a in s and b in s and s[b]["ops_per_s"]:
                ratios["%s/%s %s" % (a, b, case)] = s[a]["ops_per_s"] / s[b]["ops_per_s"]
    doc = {
        "timestamp": stamp,
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(),
                 "python": platform.python_version(), "loadavg_at_end": os.getloadavg()},
        "args": {k: v for k, v in vars(args).items()},
        "data": {"users": args.users, "ldif": ldif, "entries": entries,
                 "argon2_users": args.argon2_users},
        "postgresql": pg_settings,
        "loads": loads,
        "results": results,
        "ratios": ratios,
        "targets": TARGETS,
    }
    res_path = out_dir / ("results-%s.json" % stamp)
    res_path.write_text(json.dumps(doc, indent=2, default=str))
    print("results: %s" % res_path)
    if args.keep:
        print("kept: %s" % run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return rc_exit


if __name__ == "__main__":
    sys.exit(main())
