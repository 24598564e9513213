"""`rollcall sync sis FILE | hr FILE | oneroster ZIP [--dry-run] [--force] [--every 1h] …`

The connection comes from the `sync:` section of --config (server, bind_dn, password_env
/ password_file, start_tls, ca_file); the connection options every command-line client
shares (directory/client/options.py: -H URL, -D DN, -w/-W/-y, -Z, --ca-file) override it.

Exit codes (README "SIS sync" says what each means for a nightly job): 0 done (a quiet
delta included); 1 done, but rows were rejected or operations failed (see the report);
2 unusable input, configuration or connection, or every row rejected (nothing applied);
3 refused by a safety rule (deactivation or change threshold, empty bulk file) — nothing
applied; `--force` overrides a threshold (never an empty file) and leaves an audit entry
in the directory.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
import datetime as _dt
import re
import sys
import time
from pathlib import Path

from directory import client

from .config import SyncConfigError, load
from . import ldapwrite
from .engine import EXIT_ERRORS, EXIT_INPUT, EXIT_OK, EXIT_REFUSED, Sync
from .model import InputError, parse_date
from .report import Report
from .sources import district, hr, oneroster


def _general(reason: str) -> str:
    """A rejection reason without its value ('…' is not a district ID -> is not a district ID)."""
    return re.sub(r"^'[^']*'\s*", "", reason)


def _nothing_synced(inp, report) -> bool:
    """Every row rejected: the mapping (district ID pattern or field, site codes …) is
    wrong far more likely than every row. Says what (report.refused); nothing is applied."""
    if not (inp.rows and not inp.people and not inp.deleted and not inp.role_changes and report.rejected
            and not inp.skipped):
        return False
    reasons = Counter(f"{r.file}: {r.column or 'row'}: {_general(r.reason)}" for r in report.rejected)
    top = "; ".join(f"{why} ({n}×)" for why, n in reasons.most_common(3))
    report.refused = f"nothing could be synced: all {len(report.rejected)} rows were rejected — {top}"
    return True


def register(sub):
    """Add `sync` to the `rollcall` command line (called from directory/cli.py)."""
    p = sub.add_parser("sync", help="import SIS enrollments (district CSV, OneRoster) into the directory")
    kinds = p.add_subparsers(dest="sync_kind", required=True)
    for kind, what in (("sis", "the district SIS CSV export (one row per enrollment)"),
                       ("hr", "the district HR CSV export of employees (one row per assignment)"),
                       ("oneroster", "a OneRoster 1.1/1.2 CSV package (zip or directory)")):
        k = kinds.add_parser(kind, help=f"sync {what}")
        k.add_argument("input", metavar="ZIP" if kind == "oneroster" else "FILE")
        k.add_argument("--config", default=None, help="configuration file (default: $ROLLCALL_CONFIG, else "
                       "./config.yaml, else /etc/rollcall/config.yaml)")
        client.add_connection_options(k, config_default=False, env_defaults=False)
        k.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
        k.add_argument("--force", action="store_true",
                       help="apply even above the safety thresholds (recorded in the directory's audit log)")
        k.add_argument("--source", help="source name recorded on SIS records (default: "
                       + {"sis": "sync.source", "hr": "sync.hr_source", "oneroster": "'oneroster'"}[kind] + ")")
        k.add_argument("--full", action="store_true",
                       help="compare every account, not only those whose SIS record changed")
        k.add_argument("--today", help="run as of this date (YYYY-MM-DD): back-dated imports and tests")
        k.add_argument("--date-order", type=str.upper, choices=["AUTO", "MDY", "DMY"],
                       help="how this file's slash dates read (default: sync.date_order): a setting of the "
                       "source, when the district's exports differ")
        k.add_argument("--every", help="repeat: run, wait this long (e.g. 30m, 1h, 1d), run again …")
        k.add_argument("--progress", action="store_true", default=None, help="always show the progress bar")
        k.add_argument("--quiet", action="store_true", help="only the summary")
        k.set_defaults(fn=main_args)
    return p


def _interval(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text or "")
    if not m:
        raise ValueError(f"--every {text!r}: use e.g. 90s, 30m, 1h, 1d")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _load(args):
    """The sync configuration, with the command line's connection options over it."""
    password = None
    if any(getattr(args, k, None) for k in ("password", "password_file", "prompt", "bind_dn")):
        password = client.password_from_args(args)
    if getattr(args, "config", None) is None:
        raise SyncConfigError("", client.find_config(None)[1], dotted="(file)")
    source = getattr(args, "config_source", "")
    if source.startswith(("--", "$")) and not Path(args.config).is_file():
        raise SyncConfigError("", f"{args.config} (named by {source}): no such file", dotted="(file)")
    cfg = load(args.config, password=password)
    over = {"server": getattr(args, "url", None), "bind_dn": getattr(args, "bind_dn", None),
            "ca_file": getattr(args, "ca_file", None), "start_tls": getattr(args, "starttls", False) or None,
            "date_order": getattr(args, "date_order", None)}
    return dataclasses.replace(cfg, **{k: v for k, v in over.items() if v})


def main_args(args):
    if args.every:
        try:
            interval = _interval(args.every)
        except ValueError as exc:
            print(f"rollcall sync: {exc}", file=sys.stderr)
            sys.exit(EXIT_INPUT)
        while True:
            started = time.monotonic()
            code = run(args)
            print(f"rollcall sync: exit {code}; next run in {args.every}", file=sys.stderr, flush=True)
            time.sleep(max(0, interval - (time.monotonic() - started)))
    sys.exit(run(args))


def run(args, out=None) -> int:
    out = out or sys.stdout
    def err(msg):
        print(f"rollcall sync: {msg}", file=sys.stderr)

    try:
        cfg = _load(args)
    except SyncConfigError as exc:
        err(f"configuration error: {exc}")
        return EXIT_INPUT
    except client.ClientError as exc:
        err(exc.message)
        return EXIT_INPUT
    today = _dt.date.today().strftime("%Y%m%d")
    if args.today:
        today = parse_date(args.today)
        if today is None:
            err(f"--today {args.today!r}: not a date")
            return EXIT_INPUT
    kind = args.sync_kind
    source = args.source or {"sis": cfg.source, "hr": cfg.hr_source}.get(kind, "oneroster")
    t0 = time.monotonic()
    sync = Sync(cfg, source, today, progress=args.progress)
    sync.prefetch()   # read ou=sis while the file is parsed
    try:
        if kind == "sis":
            inp = district.parse(args.input, today, opts=cfg)
        elif kind == "hr":
            inp = hr.parse(args.input, today, opts=cfg)
        else:
            inp = oneroster.parse(args.input, today, opts=cfg)
    except InputError as exc:
        err(f"input error: {exc} — nothing was applied")
        return EXIT_INPUT
    except OSError as exc:
        err(f"{args.input}: {exc.strerror or exc} — nothing was applied")
        return EXIT_INPUT
    report = Report(source=source, input_kind=inp.kind, input_path=str(args.input), dry_run=args.dry_run,
                    rows=inp.rows, people=len(inp.people), skipped=inp.skipped)
    report.rejected = inp.rejected
    report.timings["parse"] = time.monotonic() - t0

    def finish(code):
        try:
            jpath, cpath = report.write(cfg.report_dir)
            where = f"\n  report: {jpath} and {cpath.name}"
        except OSError as exc:
            where = f"\n  report not written: {exc}"
        print(report.summary() + where, file=out, flush=True)
        return code

    if inp.bulk_kinds and (inp.rows == 0 or (not inp.people and not inp.rejected and not inp.skipped)):
        report.refused = ("the input has no data rows: an empty or header-only file never means that everyone "
                          "left (nothing applied; --force does not override this)")
        return finish(EXIT_REFUSED)

    if _nothing_synced(inp, report):
        return finish(EXIT_INPUT)

    cfg.report_dir.mkdir(parents=True, exist_ok=True)
    # one run of a source at a time, whichever host cron starts it on: a lease held in the
    # directory itself (directory/client/lease.py); a dry run changes nothing and takes none
    lease = None
    if not args.dry_run:
        try:
            lease = client.job_lease(ldapwrite.connect(cfg, strategy=client.SYNC),
                                     f"sync-{source.replace('/', '-')}").acquire()
        except client.JobBusy as exc:
            err(f"{exc.message}; nothing applied")
            return EXIT_INPUT
        except client.ClientError as exc:
            err(f"cannot take the sync's lock at {cfg.server}: {exc.message}")
            return EXIT_INPUT

    def planned_run():
        try:
            work, records = sync.plan(inp, report, full=args.full)
        except client.ClientError as exc:  # unreachable, TLS, bind refused, LDAPReadError (no ou=sis …)
            err(f"cannot read the directory at {cfg.server}: {exc.message}")
            return EXIT_INPUT
        except (OSError, ConnectionError) as exc:
            err(f"cannot read the directory at {cfg.server}: {exc}")
            return EXIT_INPUT
        except Exception as exc:  # noqa: BLE001 - an unexpected answer: reported, nothing applied
            err(f"cannot read the directory at {cfg.server}: {exc}")
            return EXIT_INPUT
        report.timings.update(sync.timings)
        if _nothing_synced(inp, report):   # e.g. every person's orgs unknown
            return finish(EXIT_INPUT)
        refusal = sync.check_thresholds(work, records)
        if args.dry_run:
            if not args.quiet and report.actions:
                print(report.plan_text(limit=None if len(report.actions) <= 5000 else 5000), file=out)
            if refusal:
                report.refused = refusal + (" (--force would apply it)" if not args.force else " (--force given)")
            return finish(EXIT_REFUSED if refusal and not args.force else
                          EXIT_ERRORS if report.rejected else EXIT_OK)
        if refusal and not args.force:
            report.refused = refusal + " — nothing applied; check the input, then rerun with --force if it is right"
            return finish(EXIT_REFUSED)
        if refusal:
            report.forced = refusal
        t = time.monotonic()
        try:
            sync.apply(work, report, forced_reason=refusal)
        except (OSError, ConnectionError, client.ClientError) as exc:
            err(f"apply interrupted: {exc} (rerun: the sync resumes where it stopped)")
            report.timings.update(sync.timings)
            finish(EXIT_ERRORS)
            return EXIT_ERRORS
        report.timings.update(sync.timings)
        report.timings["apply"] = time.monotonic() - t
        report.timings["total"] = time.monotonic() - t0
        return finish(EXIT_ERRORS if report.rejected or report.failures else EXIT_OK)

    try:
        return planned_run()
    finally:
        if lease is not None:
            lease.release()
            lease.conn.unbind()
