"""`rollcall load` alone: N synthetic users into a fresh store, several runs.

    .venv/bin/python -m benchmarks.load_bench [--users N] [--runs R]
        [--groups G --members M [--nest P] [--memberof-index eq,pres,sub]]

Uses the same data (bench-out/users-N-*.ldif) and config as scripts/bench. Prints
entries/s per run and the CPU seconds (user+sys) of the loader and its workers:
on a shared machine the CPU time is the steadier number.

--groups adds G groups of M members each (consecutive users, wrapping round), like a
district's site groups; --nest P adds P groups that each hold every P-th of those
groups and one group holding the P, so every member gets transitive memberOf values.
With groups, member and memberOf are indexed and the memberOf step is timed too.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from . import datagen
from .bench import DEFAULT_OUT, ROOT, RollcallServer


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
    rates = []
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        rc = RollcallServer(tmp, None, False, "warning", Path(args.config))
        if args.groups:
            rc = GroupsServer(tmp, None, False, "warning", Path(args.config))
            rc.memberof_index = args.memberof_index.split(",")
        for run in range(args.runs):
            for name in os.listdir(tmp):
                if name.startswith("rollcall.db"):
                    os.remove(os.path.join(tmp, name))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            secs = rc.load(ldif)  # a fresh config and an empty store each run
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rates.append(entries / secs)
            print(f"run {run + 1}: {rates[-1]:8.0f} entries/s  ({secs:.2f} s wall, {cpu:.2f} s CPU)", flush=True)
            got = re.search(r"memberOf: (\d+) members in ([\d.]+) s", (Path(tmp) / "load.log").read_text())
            if got:
                members, msecs = int(got[1]), float(got[2])
                print(f"       memberOf: {members} members in {msecs:.2f} s = "
                      f"{members / max(msecs, 1e-9):,.0f} members/s, {msecs / max(members, 1) * 1e6:.1f} µs/member",
                      flush=True)
    print(f"best {max(rates):.0f}, median {statistics.median(rates):.0f} entries/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
