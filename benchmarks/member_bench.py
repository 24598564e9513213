"""Member adds to one group of growing size through a real server (ldap3 modify, one
at a time, as the root DN): the per-add time should not grow with the group.

    .venv/bin/python -m benchmarks.member_bench --members 3000 --step 500
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ldap3 import MODIFY_ADD, Connection, Server  # noqa: E402

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX  # noqa: E402
from tests.protocol.district import make_server  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=3000)
    ap.add_argument("--step", type=int, default=500)
    ap.add_argument("--workdir", help="default: a new temporary directory")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="member-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    users, group = f"ou=mbench,{SUFFIX}", f"cn=mbench,{SUFFIX}"
    ldif = [f"dn: {users}\nobjectClass: organizationalUnit\nou: mbench\n"]
    ldif += [f"dn: uid=m{i},{users}\nobjectClass: inetOrgPerson\nuid: m{i}\ncn: m {i}\nsn: m\n"
             for i in range(args.members)]
    (work / "users.ldif").write_text("\n".join(ldif))
    srv = make_server(work)
    try:
        srv.stop()
        srv.rollcall("load", str(work / "users.ldif"))
        srv.start()
        conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
        assert conn.add(group, ["groupOfNames"], {"cn": "mbench", "member": f"uid=m0,{users}"}), conn.result
        cpu0, t0 = os.times(), time.monotonic()
        t = t0
        for i in range(1, args.members):
            assert conn.modify(group, {"member": [(MODIFY_ADD, [f"uid=m{i},{users}"])]}), conn.result
            if (i + 1) % args.step == 0:
                now = time.monotonic()
                print(f"group size {i + 1 - args.step:6d}..{i + 1:6d}: {(now - t) / args.step * 1000:.2f} ms/add",
                      flush=True)
                t = now
        wall = time.monotonic() - t0
        print(f"{args.members - 1} adds in {wall:.1f} s ({wall / (args.members - 1) * 1000:.2f} ms/add)")
        conn.unbind()
    finally:
        srv.stop()
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"server+loader CPU: user {ru.ru_utime:.1f} s, sys {ru.ru_stime:.1f} s")


if __name__ == "__main__":
    main()
