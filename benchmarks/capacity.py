"""A capacity estimate for the PostgreSQL store from a `scripts/bench` result:

    python -m benchmarks.capacity bench-out/results-<stamp>.json
        [--logins 300] [--searches 5000] [--cores 4,8,16] [--utilisation 0.6]

Inputs (measured by scripts/bench --store postgresql --cases eq,argon2 …): the CPU
milliseconds one operation costs the frontend and PostgreSQL (postmaster and backends):
an {ARGON2} bind (a login) and an equality search.  The arithmetic, printed with the
result:

    frontend cores = logins/s x frontend ms per bind / 1000 + searches/s x frontend ms per search / 1000
    hosts of N cores = ceil(frontend cores / (N x utilisation)) + 1     (one spare: N+1)
    PostgreSQL cores = (logins/s x db ms per bind + searches/s x db ms per search) / 1000 / utilisation

utilisation: the share of a core planned for at the peak (0.6 leaves room for bursts
inside the peak second, garbage collection and a host lost).  Everything beyond the
per-operation CPU is extrapolation: it assumes the cost per operation stays what it was
on the measuring host and that Argon2 scales with cores (passwords.hash_threads >= cores;
each verification holds 64 MiB while it runs).
"""
from __future__ import annotations

import argparse
import json
import math
import sys


def per_op(results, case, server="rc-pg"):
    for r in results:
        if r["name"] == case and r["server"] == server:
            return r
    raise SystemExit("no %s/%s result in the file (run scripts/bench --store postgresql "
                     "--cases eq,argon2)" % (case, server))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.capacity", description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("--logins", type=float, default=300.0, help="peak logins/s ({ARGON2} binds) (300)")
    ap.add_argument("--searches", type=float, default=5000.0, help="peak searches/s (5000)")
    ap.add_argument("--search-case", default="eq", help="the case standing for a search (eq)")
    ap.add_argument("--cores", default="4,8,16", help="frontend host sizes (4,8,16)")
    ap.add_argument("--utilisation", type=float, default=0.6, help="planned share of each core (0.6)")
    args = ap.parse_args(argv)
    doc = json.load(open(args.results))
    bind, search = per_op(doc["results"], "argon2"), per_op(doc["results"], args.search_case)
    w = sys.stdout.write
    fb, db_b = bind["fe_cpu_ms_per_op"], bind.get("db_cpu_ms_per_op") or 0.0
    fs, db_s = search["fe_cpu_ms_per_op"], search.get("db_cpu_ms_per_op") or 0.0
    w("measured (%s, %d cores, load average at the end %.1f):\n" % (
        doc["timestamp"], doc["host"]["cpus"], doc["host"]["loadavg_at_end"][0]))
    w("  {ARGON2} bind: %.1f binds/s on this host (best of %s); CPU per bind: frontend %.1f ms, "
      "PostgreSQL %.3f ms\n" % (bind["ops_per_s"], bind.get("all_runs_ops_per_s"), fb, db_b))
    w("  %s search: %.0f searches/s; CPU per search: frontend %.3f ms, PostgreSQL %.3f ms\n"
      % (args.search_case, search["ops_per_s"], fs, db_s))
    w("  an idle %d-core host would verify %d x 1000 / %.1f = %.1f binds/s (extrapolated)\n"
      % (doc["host"]["cpus"], doc["host"]["cpus"], fb, doc["host"]["cpus"] * 1000 / fb))
    fe_bind = args.logins * fb / 1000
    fe_search = args.searches * fs / 1000
    fe = fe_bind + fe_search
    w("\nfrontend cores = %g x %.1f ms + %g x %.3f ms = %.1f + %.1f = %.1f cores busy at the peak\n"
      % (args.logins, fb, args.searches, fs, fe_bind, fe_search, fe))
    w("%-12s %-46s %s\n" % ("host size", "hosts = ceil(cores / (N x %.1f)) + 1" % args.utilisation,
                            "Argon2 memory per host"))
    for n in [int(x) for x in args.cores.split(",")]:
        need = math.ceil(fe / (n * args.utilisation))
        w("%-12s %-46s %d MiB (hash_threads %d x 64 MiB)\n" % (
            "%d cores" % n, "ceil(%.1f / %.1f) + 1 = %d" % (fe, n * args.utilisation, need + 1),
            n * 64, n))
    pg = (args.logins * db_b + args.searches * db_s) / 1000
    w("\nPostgreSQL cores = (%g x %.3f ms + %g x %.3f ms) / 1000 = %.2f cores busy; / %.1f = %.1f "
      "cores planned\n" % (args.logins, db_b, args.searches, db_s, pg, args.utilisation,
                          pg / args.utilisation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
