"""`rollcall photos …`: student ID photos over LDAP (see directory/photos_client.py).

    rollcall photos upload FILE|ZIP … --as DN [--normalise] [--format text|csv|json]
    rollcall photos publish --as DN [--dry-run]          nightly, e.g. from cron:
        15 2 * * *  ROLLCALL_PASSWORD_FILE=/etc/rollcall/publisher.pw rollcall photos publish \\
                    --url ldaps://ldap.district.example --as cn=photo-publisher,ou=services,dc=…
    rollcall photos roster --cost-center CODE --as DN [-o FILE]   CSV for the site
    rollcall photos setup --as DN                       create ou=staged-photos (administrator)

Every command is an LDAP client bound as -D/--as (the access rules and the server's photo
rules apply to it as to ldapmodify), with the connection options every command-line
client shares (directory/client/options.py: -H/--url, -D/--as, -y/--password-file, -W,
-w, -Z, --ca-file, --config). The password comes from -w, -y, $ROLLCALL_PASSWORD_FILE,
$ROLLCALL_BIND_PASSWORD or $ROLLCALL_PASSWORD, else a prompt on a terminal.
Exit status: 0 all well; 1 some file rejected / some photo not published; 2 usage,
connection or bind error; 3 (publish) another run of the job holds its lock.
"""
import argparse
import contextlib
import csv
import json
import sys

import yaml

from . import admin, client
from .district import display
from .district.photos import ZIP_MAX_FILES, ZIP_MAX_MB
from .photos_client import make_uploader, publish, roster, setup, upload


def _zip_limits(config_path) -> tuple:
    """web.photo_zip_max_files and web.photo_zip_max_mb of config.yaml when it has them
    (the console's caps), else the defaults."""
    files, mb = ZIP_MAX_FILES, ZIP_MAX_MB
    try:
        with open(config_path) as fh:
            web = (yaml.safe_load(fh) or {}).get("web") or {}
        files = int(web.get("photo_zip_max_files", files))
        mb = int(web.get("photo_zip_max_mb", mb))
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return max(1, files), max(1, mb)


def _connect(args):
    try:
        return client.connect_from_args(args)
    except client.ClientError as exc:  # unreachable, TLS, bind refused, no password
        reason = f"cannot bind: {exc.message}" if exc.kind == "bind" else exc.message
        print(f"rollcall photos: {reason}", file=sys.stderr)
        sys.exit(2)


def cmd_upload(args):
    conn = _connect(args)
    try:
        up = make_uploader(conn, args.bind_dn, normalise=args.normalise, sites=args.site)
        verdicts = upload(up, args.files, *_zip_limits(args.config))
    except (RuntimeError, client.ClientError) as exc:
        print(f"rollcall photos upload: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        conn.unbind()
    if args.format == "json":
        for v in verdicts:
            print(json.dumps(v.__dict__, ensure_ascii=False))
    elif args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["file", "district_id", "verdict", "reason", "note"])
        for v in verdicts:
            w.writerow([v.file, v.district_id, v.verdict, v.reason, v.note])
    else:
        for v in verdicts:
            print(v.line())
    counts = {k: sum(1 for v in verdicts if v.verdict == k) for k in ("accepted", "replaced", "rejected")}
    print(f"{len(verdicts)} files: {counts['accepted']} accepted, {counts['replaced']} replaced, "
          f"{counts['rejected']} rejected" + (" — staged, published by the nightly job" if
                                              counts["accepted"] + counts["replaced"] else ""),
          file=sys.stderr)
    sys.exit(1 if counts["rejected"] else 0)


def cmd_publish(args):
    conn = _connect(args)
    try:
        # one run at a time, from whichever host cron starts it on (a dry run changes nothing);
        # the lease has a connection of its own (its renewal runs beside the job)
        with contextlib.nullcontext() if args.dry_run else client.job_lease(_connect(args), "photos-publish"):
            report = publish(conn, dry_run=args.dry_run, log=(lambda m: print(m)) if args.verbose else None)
    except client.JobBusy as exc:
        print(f"rollcall photos publish: {exc}; nothing done", file=sys.stderr)
        sys.exit(3)
    except (RuntimeError, client.ClientError) as exc:
        print(f"rollcall photos publish: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        conn.unbind()
    for district_id, reason in report.skipped:
        print(f"SKIPPED {district_id}: {reason}")
    for district_id, reason in report.failed:
        print(f"FAILED  {district_id}: {reason}")
    print(("dry run: " if args.dry_run else "") + report.summary())
    sys.exit(1 if report.failed else 0)


def cmd_roster(args):
    conn = _connect(args)
    try:
        rows = roster(conn, args.cost_center)
        school = display.site_label(args.cost_center, admin.site_names(conn).get(args.cost_center))
    except (RuntimeError, client.ClientError) as exc:
        print(f"rollcall photos roster: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        conn.unbind()
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    w = csv.writer(out)
    w.writerow(["district_id", "uid", "name", "grade", "photo_status", "published_date", "staged_at",
                "staged_by", "staged_source"])
    for r in rows:
        w.writerow([r.district_id, r.uid, r.name, r.grade, r.status, r.photo_date, r.staged_at, r.staged_by,
                    r.source])
    if args.output:
        out.close()
    counts = {k: sum(1 for r in rows if r.status == k) for k in ("NONE", "STAGED", "PUBLISHED")}
    print(f"{school}: {len(rows)} students, {counts['NONE']} without a photo, "
          f"{counts['STAGED']} staged, {counts['PUBLISHED']} published", file=sys.stderr)


def cmd_setup(args):
    conn = _connect(args)
    try:
        created = setup(conn)
    except (RuntimeError, client.ClientError) as exc:
        print(f"rollcall photos setup: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        conn.unbind()
    print("created ou=staged-photos" if created else "ou=staged-photos exists")


def register(sub):
    """Add `photos` and its subcommands to the `rollcall` parser's subparsers."""
    p = sub.add_parser("photos", help="student ID photos: upload, publish, roster",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photos = p.add_subparsers(dest="photos_command", required=True)

    def command(name, fn, help):
        c = photos.add_parser(name, help=help)
        c.set_defaults(fn=fn)
        client.add_connection_options(c, require_bind=True)
        return c

    c = command("upload", cmd_upload, "stage JPEG files and zip batches (each file gets a verdict)")
    c.add_argument("files", nargs="+", metavar="FILE|ZIP")
    c.add_argument("--normalise", "--normalize", action="store_true",
                   help="resize photos with the 3:4 aspect (e.g. 240x320) to 175x233")
    c.add_argument("--site", action="append", metavar="CODE",
                   help="school code(s) to upload as (default: the sites of your photo roles)")
    c.add_argument("--format", choices=["text", "csv", "json"], default="text")
    c = command("publish", cmd_publish, "nightly: move staged photos to the students (idempotent)")
    c.add_argument("--dry-run", action="store_true", help="report what would be published")
    c.add_argument("-v", "--verbose", action="store_true")
    c = command("roster", cmd_roster, "CSV of a site's students and their photo status")
    c.add_argument("--cost-center", required=True, metavar="CODE")
    c.add_argument("-o", "--output")
    command("setup", cmd_setup, "create ou=staged-photos (run once, as an administrator)")
    return p
