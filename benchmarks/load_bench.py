"""`rollcall load` alone: N synthetic users into a fresh store, several runs, and
`slapadd -q` (a private slapd, back-mdb, the same indexes) on the same LDIF.

    scripts/bench-load [--users N] [--runs R] [--store sqlite|postgresql] [--no-slapadd]
        [--groups G --members M [--nest P] [--memberof-index eq,pres,sub]]
    (--users 999997: 1,000,000 entries with the three base entries)

Uses the same data (bench-out/users-N-*.ldif) and config as scripts/bench. Prints
per run: entries/s, wall seconds, the CPU seconds (user+sys) of the loader and its
workers (on a shared machine the steadier number) and the peak memory: the largest
sum of the resident sizes of the loader and its workers seen (sampled every 0.1 s;
for PostgreSQL the server's memory is not counted; its CPU neither), beside each process's own peak.

--groups adds G groups of M members each (consecutive users, wrapping round), like a
district's site groups; --nest P adds P groups that each hold every P-th of those
groups and one group holding the P, so every member gets transitive memberOf values.
With groups, member and memberOf are indexed and the memberOf step is timed too.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from directory.testing import pgcluster

from . import datagen
from .bench import DEFAULT_OUT, ROOT, RollcallServer
from .slapd import SLAPADD, PrivateSlapd


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(name))
    total, todo, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(kids.get(p, ()))
    return total


def measured(cmd: list[str], **kw) -> dict:
    """Run cmd; wall and CPU seconds (it and its children), peak summed RSS (sampled)
    and the largest single process's peak RSS (bytes), its output."""
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            peak[0] = max(peak[0], _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read().decode("utf-8", "replace")
    proc.stdout.close()
    # this child's own usage (with the workers it waited for), not every child's so far
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{out.replace(chr(13), chr(10))[-3000:]}")
    # the sum is at least the largest process (a run shorter than one sample)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_rss": max(peak[0], usage.ru_maxrss * 1024),
            "max_rss": usage.ru_maxrss * 1024, "output": out}


def _row(name: str, entries: int, m: dict) -> str:
    return (f"{name:10s} {entries / m['wall']:9,.0f} entries/s  {m['wall']:7.1f} s wall  {m['cpu']:7.1f} s CPU  "
            f"peak RSS {m['peak_rss'] / 2**20:7,.0f} MiB (all processes; largest one {m['max_rss'] / 2**20:,.0f} MiB)")


def groups_ldif(out: str, users_ldif: str, n: int, groups: int, members: int, nest: int) -> tuple[str, int, int]:
    """The users LDIF plus the groups; returns (path, entries, member values)."""
    path = os.path.join(out, f"groups-{n}-{groups}x{members}-n{nest}-" + os.path.basename(users_ldif))
    base = f"ou=groups,{datagen.SUFFIX}"
    extra = groups + (nest + 1 if nest else 0)
    values = groups * members + (groups + nest if nest else 0)
    if os.path.exists(path):
        return path, n + 4 + extra, values
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii", buffering=1 << 20) as f, open(users_ldif, encoding="ascii") as src:
        while block := src.read(1 << 20):
            f.write(block)
        f.write(f"dn: {base}\nobjectClass: organizationalUnit\nou: groups\n\n")
        for g in range(groups):
            f.write(f"dn: cn=g{g:05d},{base}\nobjectClass: groupOfNames\ncn: g{g:05d}\n")
            f.writelines(f"member: {datagen.dn_of((g * members + j) % n)}\n" for j in range(members))
            f.write("\n")
        for p in range(nest):
            f.write(f"dn: cn=p{p:03d},{base}\nobjectClass: groupOfNames\ncn: p{p:03d}\n")
            f.writelines(f"member: cn=g{g:05d},{base}\n" for g in range(p, groups, nest))
            f.write("\n")
        if nest:
            f.write(f"dn: cn=all,{base}\nobjectClass: groupOfNames\ncn: all\n")
            f.writelines(f"member: cn=p{p:03d},{base}\n" for p in range(nest))
            f.write("\n")
    os.replace(tmp, path)
    return path, n + 4 + extra, values


class GroupsServer(RollcallServer):
    """The scripts/bench config with member and memberOf indexed."""

    memberof_index = ("eq",)

    def write_config(self) -> dict:
        import yaml

        doc = super().write_config()
        doc["indexes"].update({"member": ["eq"], "memberOf": list(self.memberof_index)})
        self.cfg_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="load_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--store", default="sqlite", choices=("sqlite", "postgresql"))
    ap.add_argument("--no-slapadd", action="store_true", help="skip slapadd -q (run when slapadd is installed)")
    ap.add_argument("--groups", type=int, default=0, help="groups of --members users each")
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--nest", type=int, default=0, help="groups holding the groups (and one holding those)")
    ap.add_argument("--memberof-index", default="eq", help="index kinds of memberOf (with --groups)")
    args = ap.parse_args(argv)
    ldif, _ = datagen.cached_ldif(args.out, args.users)
    entries = args.users + datagen.BASE_ENTRIES
    if args.groups:
        ldif, entries, values = groups_ldif(args.out, ldif, args.users, args.groups, args.members, args.nest)
        print(f"{entries} entries, {args.groups} groups of {args.members}, nest {args.nest}: "
              f"{values} member values", flush=True)
    print(f"{entries:,} entries from {ldif} ({os.path.getsize(ldif) / 2**20:,.0f} MiB), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rates = []
    cluster = None
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        cls = GroupsServer if args.groups else RollcallServer
        if args.store == "postgresql":  # production settings (fsync on), over TCP like migrate_bench
            cluster = pgcluster.PGCluster.start(listen_addresses="127.0.0.1", durable=True)
        try:
            rc = cls(os.path.join(tmp, "rollcall"), None, False, "warning", Path(args.config), backend=args.store)
            if args.groups:
                rc.memberof_index = args.memberof_index.split(",")
            for run in range(args.runs):
                if args.store == "postgresql":  # a fresh database each run
                    dbname = cluster.create_database("load").rsplit("dbname=", 1)[1]
                    rc.conninfo = f"host=127.0.0.1 port={cluster.port} user=postgres dbname={dbname}"
                else:
                    for name in os.listdir(rc.dir) if rc.dir.exists() else ():
                        if name.startswith("rollcall.db"):
                            os.remove(rc.dir / name)
                rc.write_config()  # a fresh config and an empty store each run
                m = measured([*rc.rollcall, "load", "--config", str(rc.cfg_path), ldif],
                             cwd=str(rc.dir), env=rc.env)
                (rc.dir / "load.log").write_text(m["output"])
                rates.append(entries / m["wall"])
                print(_row(f"rollcall {run + 1}", entries, m), flush=True)
                for got in re.findall(r"^(?:CPU: |of which ).*", m["output"], re.M):  # rollcall load's own account
                    print(f"           {got}", flush=True)
                got = re.search(r"memberOf: (\d+) members in ([\d.]+) s", m["output"])
                if got:
                    members, msecs = int(got[1]), float(got[2])
                    print(f"           memberOf: {members} members in {msecs:.2f} s = "
                          f"{members / max(msecs, 1e-9):,.0f} members/s, "
                          f"{msecs / max(members, 1) * 1e6:.1f} µs/member", flush=True)
        finally:
            if cluster is not None:
                cluster.teardown()
        if not args.no_slapadd and os.access(SLAPADD, os.X_OK) and not args.groups:
            slapd = PrivateSlapd(os.path.join(tmp, "slapd"), maxsize=8 << 30)
            slapd.write_config()
            m = measured([SLAPADD, "-q", "-f", slapd.conf, "-l", ldif])
            print(_row("slapadd -q", entries, m), flush=True)
            shutil.rmtree(slapd.dir, ignore_errors=True)
    print(f"rollcall best {max(rates):,.0f}, median {statistics.median(rates):,.0f} entries/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
