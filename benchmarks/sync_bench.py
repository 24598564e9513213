"""SIS sync benchmark: a synthetic district CSV (N students, 1,000 schools), first load
and a no-change re-run, against a real server on loopback.

    scripts/bench-sync --students 100000                 # first load through the sync, then re-run
    scripts/bench-sync --students 600000 --preload       # state bulk-loaded (`rollcall load`) as the
                                                         # sync would leave it, then the no-change re-run

Prints and writes (bench-out/sync-<N>-<time>.json) the wall times and the sync's own
phase timings (parse, read records, plan, apply …).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SUFFIX, ServerProcess  # noqa: E402
from tests.protocol.district import DEFAULT_POLICY, SCHEMA_FILES, access_rules, district_ldif, password  # noqa: E402

FIRST = ["Liam", "Olivia", "Noah", "Emma", "Mateo", "Sofía", "Aiden", "Ava", "Lucas", "Isabella", "Ethan",
         "Mia", "Zoë", "Chloé", "José", "Ngozi", "Hiroshi", "Aaliyah", "Dmitri", "Siobhán", "Minh", "Priya"]
LAST = ["Smith", "Johnson", "García", "Nguyễn", "O'Brien", "D'Angelo", "García-López", "Müller", "Østergaard",
        "Kowalski", "Patel", "Okafor", "Chen", "Kim", "Tanaka", "Novák", "Yılmaz", "Brown", "Lee", "Walker"]
GRADES = ["KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]
HEADER = "district_id,first_name,last_name,middle_name,birth_date,grade,school_code,enrollment_status,entry_date,leave_date,email\n"


def people(n, seed=2025):
    rng = random.Random(seed)
    for i in range(n):
        # from 500000s000 up: clear of the test district's IDs (000001s001 …) loaded beside them
        did = f"{500000 + i // 1000:06d}s{i % 1000:03d}"
        g = rng.choice(GRADES)
        yield (did, rng.choice(FIRST), rng.choice(LAST) + (str(rng.randint(1, 400)) if rng.random() < 0.7 else ""),
               f"20{10 + rng.randint(0, 9):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", g,
               f"S{i % 1000:04d}")


def write_csv(path, n):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(HEADER)
        for did, first, last, birth, grade, code in people(n):
            fh.write(f"{did},{first},{last},,{birth},{grade},{code},ENROLLED,2025-08-18,,\n")


def preload_ldif(path, n, source="district-sis"):
    """The directory as a first sync would leave it: sites, student groups, accounts, SIS records."""
    from directory.district.usernames import base_name, candidates

    students = f"ou=students,ou=people,{SUFFIX}"
    taken, uid_of = set(), {}
    rows = sorted(people(n))
    for did, first, last, *_ in rows:
        for c in candidates(base_name("{first:1}{last}", first, last, "", did, 20), 20):
            if c not in taken:
                taken.add(c)
                uid_of[did] = c
                break
    members = {}
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(district_ldif())
        fh.write(f"\ndn: ou=sis,{SUFFIX}\nobjectClass: organizationalUnit\nou: sis\n")
        for did, first, last, birth, grade, code in rows:
            uid = uid_of[did]
            dn = f"uid={uid},{students}"
            members.setdefault(code, []).append(dn)
            b = birth.replace("-", "")
            fh.write(f"\ndn: {dn}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n"
                     f"objectClass: inetOrgPerson\nobjectClass: eduPerson\nobjectClass: rollcallAccount\n"
                     f"objectClass: rollcallStudent\nuid: {uid}\ncn: {first} {last}\ngivenName: {first}\nsn: {last}\n"
                     f"employeeNumber: {did}\ndepartmentNumber: {code}\nrollcallSisSourceId: {did}\n"
                     f"rollcallGrade: {grade}\nrollcallBirthDate: {b}\nrollcallEnrollmentStatus: ENROLLED\n"
                     f"rollcallEnrollmentDate: 20250818000000Z\neduPersonAffiliation: student\n"
                     f"rollcallAccountStatus: PENDING\nrollcallStatusSource: SYNC\n"
                     f"rollcallActivationState: NOT_ACTIVATED\nmail: {uid}@students.district.example\n")
            fh.write(f"\ndn: rollcallSisSourceId={did},ou=sis,{SUFFIX}\nobjectClass: top\n"
                     f"objectClass: rollcallSisRecord\nrollcallSisSourceId: {did}\nemployeeNumber: {did}\n"
                     f"givenName: {first}\nsn: {last}\ncn: {first} {last}\nrollcallBirthDate: {b}\n"
                     f"rollcallGrade: {grade}\ndepartmentNumber: {code}\nrollcallEnrollmentStatus: ENROLLED\n"
                     f"rollcallEnrollmentDate: 20250818000000Z\nrollcallSisSource: {source}\n"
                     f"rollcallLinkedAccount: {dn}\nrollcallSisImportedAt: 20250901000000Z\n")
        for code in sorted(members):
            fh.write(f"\ndn: ou={code},ou=sites,{SUFFIX}\nobjectClass: top\nobjectClass: rollcallSite\n"
                     f"ou: {code}\nrollcallCostCenter: {code}\nrollcallSiteKind: SCHOOL\n")
            fh.write(f"\ndn: cn=students,ou={code},ou=sites,{SUFFIX}\nobjectClass: top\nobjectClass: groupOfNames\n"
                     f"cn: students\n" + "".join(f"member: {m}\n" for m in members[code]))


def run_sync(cfg_path, csv_path, label):
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "directory.cli", "sync", "sis", str(csv_path), "--config",
                        str(cfg_path), "--quiet", "--today", "2025-09-01"], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t
    print(f"[{label}] exit {p.returncode} in {wall:.1f} s\n{p.stdout[-3000:]}{p.stderr[-2000:]}", flush=True)
    return wall, p.returncode, p.stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=600_000)
    ap.add_argument("--preload", action="store_true",
                    help="bulk-load the post-first-load state instead of syncing it (measures only the re-run)")
    ap.add_argument("--workdir", help="default: a new temporary directory")
    ap.add_argument("--window", type=int, default=64)
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sync-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    n = args.students
    csv_path = work / f"district-{n}.csv"
    t = time.monotonic()
    write_csv(csv_path, n)
    print(f"generated {csv_path} ({n} rows, {csv_path.stat().st_size / 1e6:.0f} MB) in "
          f"{time.monotonic() - t:.1f} s", flush=True)
    extra = {"schema": [str(ROOT / "schema" / s) for s in SCHEMA_FILES], "access": access_rules(),
             "password_policy": DEFAULT_POLICY,
             "indexes": {"memberOf": ["eq"], "rollcallSisSourceId": ["eq"], "rollcallAccountStatus": ["eq"],
                         "rollcallCostCenter": ["eq"]},
             "store": {"cache_entries": 200000}}
    ldif = district_ldif() + f"\ndn: ou=sis,{SUFFIX}\nobjectClass: organizationalUnit\nou: sis\n"
    load_s = None
    if args.preload:
        lpath = work / "preload.ldif"
        preload_ldif(lpath, n)
        srv = ServerProcess(work, extra_config=extra, ldif=None)
        t = time.monotonic()
        r = srv.rollcall("load", str(lpath), check=False)
        load_s = time.monotonic() - t
        print(f"preloaded the first-load state ({lpath.stat().st_size / 1e6:.0f} MB LDIF) in {load_s:.0f} s "
              f"{r.stderr.strip()[-200:]}", flush=True)
    else:
        srv = ServerProcess(work, extra_config=extra, ldif=ldif)
    srv.start()
    cfg = work / "sync.yaml"
    (work / "sync.secret").write_text(password("sis-sync"))
    import yaml

    cfg.write_text(yaml.safe_dump({"suffix": SUFFIX, "sync": {
        "server": srv.url, "password_file": str(work / "sync.secret"), "window": args.window,
        "auto_provision": [{"sites": "*", "grades": "*"}], "student_mail_domain": "students.district.example",
        "report_dir": str(work / "reports"), "thresholds": {"max_deactivations": 1000}}}))
    results = {"students": n, "cores": os.cpu_count(), "preload": args.preload, "preload_load_s": load_s}
    try:
        if not args.preload:
            results["first_load_s"], code, _ = run_sync(cfg, csv_path, "first load")
            results["first_load_exit"] = code
        results["no_change_rerun_s"], code, out = run_sync(cfg, csv_path, "no-change re-run")
        results["no_change_exit"] = code
        reports = sorted((work / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
        results["reports"] = [{"file": str(p), **{k: json.loads(p.read_text())[k] for k in ("counts", "timings_s")}}
                              for p in reports]
    finally:
        try:
            srv.stop()
        except subprocess.TimeoutExpired:   # a 600k store can take a while to close
            srv.kill()
    out_dir = ROOT / "bench-out"
    out_dir.mkdir(exist_ok=True)
    dest = out_dir / f"sync-{n}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "reports"}, indent=1))
    print(f"written {dest}")


if __name__ == "__main__":
    main()
