"""Moving a district from SQLite to PostgreSQL: how long `rollcall export` from the
SQLite store then `rollcall load` into the PostgreSQL store take.

    scripts/bench-migrate [--users N]      (N + 3 entries; 999997 users = 1,000,000 entries)

Flow: generate (or reuse) bench-out/users-N-*.ldif (benchmarks/datagen.py); `rollcall
load` it into a fresh SQLite store (the district as it is before the move; timed too);
`rollcall export` the SQLite store to LDIF (timed); `rollcall load` that LDIF into a
fresh database of a private PostgreSQL cluster with production settings (fsync,
synchronous_commit on; directory/testing/pgcluster.py), over TCP (timed); then the
entry count of the PostgreSQL store is checked against the export's.  The same
indexes as scripts/bench (the project's config.yaml otherwise).  Wall seconds and
entries/s of each step are printed and written to bench-out/migrate-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from directory.testing import pgcluster

from . import datagen
from .bench import DEFAULT_OUT, ROOT, RollcallServer


def _run(rc: RollcallServer, *args) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([*rc.rollcall, *args, "--config", str(rc.cfg_path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, cwd=str(rc.dir), env=rc.env)
    secs = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError("rollcall %s failed (%d):\n%s" % (args[0], r.returncode,
                                                             r.stdout.replace("\r", "\n")[-3000:]))
    return secs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-migrate", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--users", type=int, default=200000, help="synthetic users (200000)")
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args(argv)
    if not 1 <= args.users <= 999999:
        ap.error("--users must be between 1 and 999999")
    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(tempfile.mkdtemp(prefix="migrate-%s-" % stamp, dir=str(out_dir)))
    entries = args.users + datagen.BASE_ENTRIES
    steps: dict[str, dict] = {}

    def step(name, secs, n=entries):
        steps[name] = {"seconds": round(secs, 2), "entries": n, "entries_per_s": round(n / secs)}
        say("%-22s %8.1f s  %8.0f entries/s" % (name, secs, n / secs))

    t0 = time.perf_counter()
    ldif, fresh = datagen.cached_ldif(str(out_dir), args.users)
    say("data: %s (%s, %.1f s)" % (ldif, "generated" if fresh else "cached", time.perf_counter() - t0))
    cluster = None
    try:
        src = RollcallServer(str(run_dir / "sqlite"), None, False, "warning", Path(args.config))
        step("load into SQLite", src.load(ldif))
        export = run_dir / "export.ldif"
        step("export from SQLite", _run(src, "export", "-o", str(export)))
        cluster = pgcluster.PGCluster.start(listen_addresses="127.0.0.1", durable=True)
        dbname = cluster.create_database("migrate").rsplit("dbname=", 1)[1]
        conninfo = "host=127.0.0.1 port=%d user=postgres dbname=%s" % (cluster.port, dbname)
        dst = RollcallServer(str(run_dir / "pg"), None, False, "warning", Path(args.config),
                             backend="postgresql", conninfo=conninfo)
        step("load into PostgreSQL", dst.load(str(export)))
        with psycopg.connect(cluster.dsn(dbname)) as conn:
            n = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        sqlite_size = (run_dir / "sqlite" / "rollcall.db").stat().st_size
        total = steps["export from SQLite"]["seconds"] + steps["load into PostgreSQL"]["seconds"]
        step("export + load (move)", total)
        say("PostgreSQL store: %d entries (%s), database %.0f MB; SQLite file %.0f MB; export %.0f MB"
            % (n, "as exported" if n == entries else "MISMATCH: %d exported" % entries,
               size / 1e6, sqlite_size / 1e6, export.stat().st_size / 1e6))
        per_million = total * 1_000_000 / entries
        say("move time for 1,000,000 entries: %.0f s (%.1f min)%s" % (
            per_million, per_million / 60,
            "" if entries >= 1_000_000 else " -- EXTRAPOLATED linearly from %d entries" % entries))
        doc = {"timestamp": stamp, "entries": entries, "steps": steps, "pg_entries": n,
               "pg_database_bytes": size, "sqlite_bytes": sqlite_size,
               "move_seconds_per_million": round(per_million, 1),
               "extrapolated": entries < 1_000_000, "host_cpus": os.cpu_count(),
               "loadavg_at_end": os.getloadavg(), "postgresql": pgcluster.PRODUCTION_SETTINGS}
        path = out_dir / ("migrate-%s.json" % stamp)
        path.write_text(json.dumps(doc, indent=2))
        print(json.dumps(doc, indent=2))
        return 0 if n == entries else 1
    finally:
        if cluster is not None:
            cluster.teardown()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
