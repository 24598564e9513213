"""`rollcall roster` and `rollcall account …`: LDAP clients (ldap3) that bind as the
caller, so the directory's rules apply to them as to ldapmodify/ldappasswd.

Connection options (every command; directory/client/options.py, shared by every
command-line LDAP client): -H/--url URL, -D/--bind-dn DN, -y/--password-file FILE,
-W (prompt), -w PASSWORD, -Z/--starttls, --ca-file FILE, --config FILE (defaults);
env ROLLCALL_URL, ROLLCALL_BIND_DN, ROLLCALL_BIND_PASSWORD.

    rollcall roster --cost-center CODE [--ids ID,ID,…] [-o FILE.zip] [--no-codes | --reissue-codes]
    rollcall account find TEXT [--format text|json|csv]
    rollcall account create DISTRICT_ID
    rollcall account reset USERNAME|DISTRICT_ID
    rollcall account deactivate USERNAME|DISTRICT_ID --reason REASON --reference FORM-NUMBER
    rollcall account reactivate USERNAME|DISTRICT_ID
    rollcall account activate USERNAME [--code CODE] [--new-password-file FILE]   (anonymous)
    rollcall account change-password [--new-password-file FILE]   (bound as the account)
"""
import csv
import getpass
import json
import os
import sys
import time

from ldap3.core.exceptions import LDAPException

from . import admin, client
from .district import display


def _password(args, prompt="Password: "):
    return client.password_from_args(args)


def _new_password(args):
    if getattr(args, "new_password_file", None):
        with open(args.new_password_file, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    env = os.environ.get("ROLLCALL_NEW_PASSWORD")
    if env is not None:
        return env
    first = getpass.getpass("New password: ")
    if getpass.getpass("New password again: ") != first:
        _die(args, "the two passwords differ")
    return first


def _die(args, message, code=1):
    print(f"rollcall {args.command_name}: {message}", file=sys.stderr)
    sys.exit(code)


def connect(args, anonymous=False):
    """The caller's connection (directory.client); exits with the reason when it fails."""
    if not anonymous and not args.bind_dn:
        _die(args, "--bind-dn (or ROLLCALL_BIND_DN) is required", 2)
    try:
        return client.connect_from_args(args, anonymous=anonymous)
    except client.ClientError as exc:
        _die(args, exc.message)


def _run(args, fn):
    try:
        fn()
    except admin.AdminError as exc:
        _die(args, f"refused: {exc.message}")
    except client.ClientError as exc:
        _die(args, exc.message)
    except (LDAPException, OSError) as exc:
        _die(args, client.describe_exception(exc, args.url or "the directory").message)


def _print_person(d, extra=()):
    print(f"  name:     {d.get('name', '')}")
    print(f"  username: {d.get('username', '')}")
    print(f"  email:    {d.get('email', '')}")
    for label, value in extra:
        print(f"  {label + ':':<9} {value}")


# --------------------------------------------------------------------------- commands


def cmd_roster(args):
    def go():
        conn = connect(args)
        ids = [x for x in args.ids.split(",")] if args.ids else None
        started = time.perf_counter()
        report = admin.roster(conn, args.cost_center, ids, issue_activation_codes=not args.no_codes,
                              reissue_codes=args.reissue_codes)
        data = report.zip_bytes()
        elapsed = time.perf_counter() - started
        out = args.output or f"roster-{report.code}-{report.stamp}.zip"
        with open(out, "wb") as fh:
            fh.write(data)
        print(f"{out}: {len(report.rows)} students of {display.site_label(report.code, report.site_name)}"
              + (f", {len(report.missing)} IDs not found (see not-found CSV)" if report.missing else "")
              + f" ({elapsed:.2f} s)")
        if report.codes_issued:
            print(f"{report.codes_issued} one-time activation codes issued for PENDING accounts"
                  + (" (they replace codes printed earlier for these students)" if args.reissue_codes
                     else " that had no valid code"))
        if report.codes_kept:
            print(f"{report.codes_kept} PENDING accounts keep the code issued earlier (still valid; "
                  "--reissue-codes replaces them)")
        for item in report.code_errors:
            print(f"  no activation code for {item.get('account')}: {item.get('error')}", file=sys.stderr)

    _run(args, go)


FIND_COLUMNS = ["kind", "district_id", "username", "status", "name", "email", "schools", "grade", "dn"]


def cmd_find(args):
    def go():
        conn = connect(args)
        found = admin.find_students(conn, args.text)
        rows = ([{"kind": "account", "district_id": s["district_id"], "username": s["uid"], "status": s["status"],
                  "name": s["name"], "email": s["mail"], "schools": " ".join(s["schools"]), "grade": s["grade"],
                  "dn": s["dn"]} for s in found.students]
                + [{"kind": "enrollee", "district_id": r["district_id"], "username": "", "status": "NO ACCOUNT",
                    "name": r["name"], "email": "", "schools": " ".join(r["schools"]), "grade": r["grade"],
                    "dn": r["dn"]} for r in found.enrollees])
        if args.format == "json":  # machine formats: DNs and codes as the directory has them
            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
            return
        if args.format == "csv":
            w = csv.writer(sys.stdout)
            w.writerow(FIND_COLUMNS)
            for row in rows:
                w.writerow([row[c] for c in FIND_COLUMNS])
            return
        names = admin.site_names(conn)

        def schools(codes):
            return ", ".join(display.site_label(c, names.get(c)) for c in codes)

        if not rows and not found.note:  # the note says why instead
            print(f"no student in your scope matches “{args.text.strip()}”")
        for s in found.students:
            print(f"{s['district_id']:<11} {s['uid']:<20} {s['status']:<9} {s['name']:<30} {s['mail']}"
                  f"  [{schools(s['schools'])}]")
        if found.enrollees:
            print(f"{len(found.enrollees)} enrollee{'s' if len(found.enrollees) != 1 else ''} with a SIS record "
                  "and no account yet (`rollcall account create DISTRICT_ID` creates it):")
            for r in found.enrollees:
                print(f"{r['district_id']:<11} {'(no account)':<20} {'':<9} {r['name']:<30} "
                      f"grade {r['grade'] or '?'}  [{schools(r['schools'])}]")
        if found.note:
            print(found.note)

    _run(args, go)


def cmd_create(args):
    def go():
        conn = connect(args)
        out = admin.create_account(conn, args.district_id)
        print(f"created the account of {out['name']} (PENDING)")
        _print_person(out, [("status", "PENDING"),
                            ("activation code", out.get("activationCode", "")),
                            ("code expires", display.local_date(out.get("activationCodeExpiry", "")))])
        print("Hand the username and the activation code to the student: they choose their password "
              "with `rollcall account activate` or in the web console.")

    _run(args, go)


def cmd_reset(args):
    def go():
        conn = connect(args)
        out = admin.reset_password(conn, args.target)
        print("password reset; the student must change it at the next login")
        _print_person(out, [("password", out["password"])])

    _run(args, go)


def cmd_deactivate(args):
    def go():
        conn = connect(args)
        out = admin.deactivate(conn, args.target, args.reason, args.reference)
        print("account deactivated (DISABLED); sync will not re-enable it")
        _print_person(out, [("reason", display.reason_label(out["reason"])), ("reference", out["reference"]),
                            ("by", admin.person_name(conn, out["by"])), ("at", display.local_datetime(out["at"]))])

    _run(args, go)


def cmd_reactivate(args):
    def go():
        conn = connect(args)
        out = admin.reactivate(conn, args.target)
        print(f"account re-activated ({out['status']})")
        _print_person(out, [("was", f"{display.reason_label(out['previous_reason'])} "
                                    f"({out['previous_reference']})")])

    _run(args, go)


def cmd_activate(args):
    def go():
        conn = connect(args, anonymous=True)
        code = args.code or os.environ.get("ROLLCALL_ACTIVATION_CODE") or getpass.getpass("Activation code: ")
        new = _new_password(args)
        out = admin.activate(conn, args.username, code, new)
        print(f"account {out['uid']} activated: sign in with your new password")

    _run(args, go)


def cmd_change_password(args):
    def go():
        conn = connect(args)
        current = _password(args, "Current password: ")
        new = _new_password(args)
        admin.change_password(conn, current, new)
        print("password changed")

    _run(args, go)


# --------------------------------------------------------------------------- registration


def _connection_options(p):
    client.add_connection_options(p)


def register(sub):
    """Add `roster` and `account …` to the `rollcall` command's subparsers."""
    p = sub.add_parser("roster", help="roster of a cost center's students as a zip of CSV files")
    _connection_options(p)
    p.add_argument("--cost-center", required=True)
    p.add_argument("--ids", help="only these district IDs (comma-separated)")
    p.add_argument("-o", "--output", help="zip file to write (default roster-CODE-DATE.zip)")
    codes = p.add_mutually_exclusive_group()
    codes.add_argument("--no-codes", action="store_true",
                       help="do not issue activation codes for PENDING accounts (earlier codes stay valid)")
    codes.add_argument("--reissue-codes", action="store_true",
                       help="replace the activation codes of PENDING accounts, valid ones too (the codes "
                            "handed out earlier stop working); by default only accounts without a valid "
                            "code get one")
    p.set_defaults(fn=cmd_roster, command_name="roster")

    acc = sub.add_parser("account", help="delegated account administration (sub-administrators)")
    asub = acc.add_subparsers(dest="account_command", required=True)

    def command(name, fn, help):
        q = asub.add_parser(name, help=help)
        _connection_options(q)
        q.set_defaults(fn=fn, command_name=f"account {name}")
        return q

    q = command("find", cmd_find, "find students in your scope by district ID (or part of one), e-mail, "
                                  "username or name (\"Mia Jones\", \"Jones, Mia\"), and enrollees with no account")
    q.add_argument("text")
    q.add_argument("--format", choices=["text", "json", "csv"], default="text",
                   help="text for people (default); json or csv with DNs, for scripts")
    q = command("create", cmd_create, "create the account of a new enrollee (SIS record, no account)")
    q.add_argument("district_id")
    q = command("reset", cmd_reset, "reset an ENABLED student's password (generated, shown once)")
    q.add_argument("target", metavar="USERNAME|ID")
    q = command("deactivate", cmd_deactivate, "deactivate an ENABLED account with a reason and a reference")
    q.add_argument("target", metavar="USERNAME|ID")
    q.add_argument("--reason", required=True, help="e.g. parent-refusal")
    q.add_argument("--reference", required=True, help="e.g. the signed form's number")
    q = command("reactivate", cmd_reactivate, "re-activate a DISABLED account")
    q.add_argument("target", metavar="USERNAME|ID")
    q = command("activate", cmd_activate, "activate a PENDING account with its one-time code (students)")
    q.add_argument("username")
    q.add_argument("--code", help="the activation code from the school (prompted when absent)")
    q.add_argument("--new-password-file", help="read the new password from this file")
    q = command("change-password", cmd_change_password, "change your own password (e.g. after a reset)")
    q.add_argument("--new-password-file", help="read the new password from this file")
