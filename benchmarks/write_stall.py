"""Do writes stall behind password changes? Unrelated adds are timed while Password
Modify requests with explicit new passwords arrive at a fixed rate, against accounts
with a full password history, with production Argon2 parameters (m=64 MiB, t=2).

Each change costs Argon2 work (the current password and 5 history entries verified,
the new one hashed); an add costs one short transaction. Before the write pipeline
moved hashing out of the write lock, the adds queued behind that work.

    scripts/bench-writes [--rate 20] [--duration 15] [--adds 10] [--checkout DIR]

--checkout runs the server from another checkout (e.g. a worktree of an older commit)
with this same load, for a before/after comparison on one machine.
"""
import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from ldap3 import Connection, Server

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = "dc=bench,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "bench-admin-password"
HISTORY = 5
ARGON2 = {"time_cost": 2, "memory_cost": 65536, "parallelism": 1}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def argon2_hash(ph, pw: str) -> str:
    return "{ARGON2}" + ph.hash(pw)


def build(workdir: Path, accounts: int, checkout: Path):
    ph = PasswordHasher(**ARGON2)
    current = argon2_hash(ph, "Current-pw-0001")
    history = [f"20260101000000Z#{argon2_hash(ph, f'Old-pw-{i:04d}')}" for i in range(HISTORY)]
    lines = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: bench\no: Bench\n",
             f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
             f"dn: ou=added,{SUFFIX}\nobjectClass: organizationalUnit\nou: added\n"]
    lines.append(f"dn: uid=binder,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: binder\ncn: Binder\nsn: Binder\n"
                 f"userPassword: {current}\n")  # signs in during the load; its password never changes
    for i in range(accounts):
        lines.append(f"dn: uid=u{i},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: User {i}\n"
                     f"sn: {i}\nuserPassword: {current}\n" + "".join(f"pwdHistory: {h}\n" for h in history))
    (workdir / "data.ldif").write_text("\n".join(lines))
    port = free_port()
    cfg = {
        "suffix": SUFFIX, "listeners": [f"ldap://127.0.0.1:{port}"],
        "root": {"dn": ROOT_DN, "password": argon2_hash(ph, ROOT_PW)},
        "store": {"backend": "sqlite", "path": str(workdir / "rollcall.db")},
        "schema": [str(checkout / "schema" / f"{n}.schema") for n in ("core", "cosine", "inetorgperson")],
        "indexes": {"objectClass": ["eq"], "uid": ["eq"]},
        "passwords": {"scheme": "ARGON2", "argon2": ARGON2, "rehash_on_bind": False},
        "password_policy": {"history": HISTORY, "min_length": 8},
        "access": [{"to": "*", "by": ["users read", "anonymous auth"]}],
        "log": {"level": "warning"},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    cli = [sys.executable, "-m", "directory.cli"]
    subprocess.run(cli + ["load", "--config", str(workdir / "config.yaml"), str(workdir / "data.ldif")],
                   cwd=checkout, check=True, capture_output=True)
    return port, cli


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run(port, rate, adds_per_s, duration, label):
    url = f"ldap://127.0.0.1:{port}"
    stop = time.monotonic() + duration
    add_lat, pw_lat, pw_err, bind_lat = [], [], [], []

    nthreads = max(1, min(int(rate), 32)) if rate else 0
    # bound one after the other before the load starts (the server verifies at most
    # limits.max_binds_per_address binds of one address at once)
    changer_conns = [Connection(Server(url), ROOT_DN, ROOT_PW, auto_bind=True, receive_timeout=120)
                     for _ in range(nthreads)]

    def changer(slot, nthreads):
        conn = changer_conns[slot]
        interval = nthreads / rate
        nxt = time.monotonic() + slot * interval / nthreads
        n = 0
        while time.monotonic() < stop:
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += interval
            uid = f"u{random.randrange(ACCOUNTS)}"
            t0 = time.perf_counter()
            ok = conn.extend.standard.modify_password(f"uid={uid},ou=people,{SUFFIX}", None,
                                                      f"Bench-{slot}-{n}-{random.random():.9f}")
            pw_lat.append(time.perf_counter() - t0)
            if ok is not True:
                pw_err.append(conn.result.get("description"))
            n += 1
        conn.unbind()

    # bound before the password load starts: a bind verifies Argon2 in the same pool
    add_conn = Connection(Server(url), ROOT_DN, ROOT_PW, auto_bind=True, receive_timeout=120)

    def adder():
        conn = add_conn
        i = 0
        nxt = time.monotonic() + 1.0  # let the password load start first
        while time.monotonic() < stop:
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += 1 / adds_per_s
            t0 = time.perf_counter()
            ok = conn.add(f"ou={label}-{i},ou=added,{SUFFIX}", ["organizationalUnit"], {"ou": f"{label}-{i}"})
            add_lat.append(time.perf_counter() - t0)
            assert ok, conn.result
            i += 1
        conn.unbind()

    def binder():
        """A person signing in every 0.25 s (new connection, simple bind)."""
        nxt = time.monotonic() + 1.0
        while time.monotonic() < stop:
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += 0.25
            t0 = time.perf_counter()
            c = Connection(Server(url), f"uid=binder,{SUFFIX}", "Current-pw-0001", receive_timeout=120)
            ok = c.bind()
            bind_lat.append(time.perf_counter() - t0)
            assert ok, c.result
            c.unbind()

    threads = [threading.Thread(target=binder)] + [threading.Thread(target=changer, args=(k, nthreads)) for k in range(nthreads)]
    threads.append(threading.Thread(target=adder))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return add_lat, pw_lat, pw_err, bind_lat


ACCOUNTS = 200


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20, help="password changes per second offered (default 20)")
    ap.add_argument("--adds", type=float, default=10, help="unrelated adds per second (default 10)")
    ap.add_argument("--duration", type=float, default=15, help="seconds per phase (default 15)")
    ap.add_argument("--checkout", default=str(ROOT), help="run the server from this checkout")
    args = ap.parse_args(argv)
    checkout = Path(args.checkout).resolve()
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        workdir = Path(tmp)
        print(f"building {ACCOUNTS} accounts with a {HISTORY}-entry Argon2 history (m=64 MiB, t=2) …", flush=True)
        port, cli = build(workdir, ACCOUNTS, checkout)
        log = open(workdir / "server.log", "ab")
        proc = subprocess.Popen(cli + ["serve", "--config", str(workdir / "config.yaml")], cwd=checkout,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("the server did not start")
                    time.sleep(0.1)
            print(f"server from {checkout}")
            print(f"{'phase':<28} {'ops':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   password changes")
            for label, rate in (("quiet", 0), ("loaded", args.rate)):
                t_server0 = _proc_cpu(proc.pid)
                add_lat, pw_lat, pw_err, bind_lat = run(port, rate, args.adds, args.duration, label)
                srv_cpu = _proc_cpu(proc.pid) - t_server0
                pw = (f"{len(pw_lat) / args.duration:.1f}/s done (offered {rate:g}/s), p50 {pct(pw_lat, 50) * 1000:.0f} ms,"
                      f" errors {len(pw_err)}; server CPU {srv_cpu:.1f} s") if rate else f"none; server CPU {srv_cpu:.1f} s"
                print(f"{label + ' (unrelated adds)':<28} {len(add_lat):>5} {pct(add_lat, 50) * 1000:>8.1f} "
                      f"{pct(add_lat, 99) * 1000:>8.1f} {max(add_lat) * 1000:>8.1f}   {pw}", flush=True)
                print(f"{label + ' (sign-ins)':<28} {len(bind_lat):>5} {pct(bind_lat, 50) * 1000:>8.1f} "
                      f"{pct(bind_lat, 99) * 1000:>8.1f} {max(bind_lat) * 1000:>8.1f}", flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            log.close()
    return 0


def _proc_cpu(pid) -> float:
    """CPU seconds (user + system) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


if __name__ == "__main__":
    sys.exit(main())
