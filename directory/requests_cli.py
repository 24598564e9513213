"""`rollcall request …`: access requests from the command line.

submit, list, show, approve, deny and withdraw are LDAP clients (ldap3) of the server
named by -H/--url (default: the first ldap:// listener of --config), bound as the person
acting (-D/--bind-dn, password from -w, -y/--password-file, -W or $ROLLCALL_PASSWORD;
-Z StartTLS, --ca-file/--cacert: the connection options every command-line client
shares, directory/client/options.py; no -D: anonymous, which may only submit a non-employee account request: it gets a number and a
tracking code, and follows its status on the web console's Track page with both —
anonymous LDAP reads show a request's number and kind only). They obey the same rules as ldapadd/ldapmodify because the server's requests
overlay (directory/core/requests.py) enforces them.

`expire` is the scheduled job: it opens the store of --config directly and runs as the
system identity `cn=rollcall-expire` (audit log `who`), e.g. from cron, nightly:

    15 2 * * *  cd /srv/rollcall && .venv/bin/rollcall request expire --config config.yaml

Examples:
    rollcall request submit --kind nonemployee --given Ana --sn Lopez --mail ana@acme.example \\
        --organization "Acme Therapy" --ne-kind CONTRACTOR --site 1234
    rollcall request submit -D uid=ewilson,… -w … --kind role --application welligent --role therapist
    rollcall request submit -D … --kind subadmin --site 1234 --role photo-designees
    rollcall request submit -D … --kind photo-vendor --site 1234 --grantee uid=mdubois,…
    rollcall request list -D … [--status PENDING|APPROVED|…|all] [--mine]
    rollcall request show 17
    rollcall request approve 17 -D … -w … [--expiry 2026-06-30] [--reason …]
    rollcall request deny 17 -D … -w … --reason "wrong role: ask for case manager"
    rollcall request withdraw 17 -D … -w …
    rollcall request issue-code 17 -D … -w …   (the approver: username + one-time activation code)
"""
import argparse
import sys

from . import admin, client
from . import requests_client as rc
from .app import open_directory
from .config import ConfigError, load_config
from .core.identity import Identity
from .core.requests import expire
from .district import display
from .district.gentime import parse_time
from .store.base import JobLocked, StoreError


class CLIError(Exception):
    pass


def add_request_parser(p):
    """The `request` subcommand's own subcommands (p: the `request` parser from cli.py)."""
    sub = p.add_subparsers(dest="request_command", required=True)

    def cmd(name, fn, help, ldap=True):
        q = sub.add_parser(name, help=help)
        q.set_defaults(fn=lambda a, fn=fn: run(fn, a))
        q.add_argument("--config", default=argparse.SUPPRESS, help="configuration file (default: $ROLLCALL_CONFIG, "
                       "else ./config.yaml, else /etc/rollcall/config.yaml)")
        if ldap:
            client.add_connection_options(q, config_default=False)
        return q

    q = cmd("submit", cmd_submit, "file a request")
    q.add_argument("--kind", required=True, help="nonemployee | role | subadmin | photo-vendor (or the schema names)")
    q.add_argument("--target", help="DN of the site / role group (instead of --site/--application/--role)")
    q.add_argument("--site", help="site code (cost center)")
    q.add_argument("--application", help="application (ou=<name>,ou=groups) for --kind role")
    q.add_argument("--role", help="role: for an application its role group (therapist or welligent-therapist); "
                                  "for subadmin student-email-admins | photo-designees")
    q.add_argument("--grantee", help="DN of the account that gets the role (default: you)")
    q.add_argument("--justification")
    q.add_argument("--given")
    q.add_argument("--sn")
    q.add_argument("--mail")
    q.add_argument("--phone")
    q.add_argument("--organization")
    q.add_argument("--ne-kind", help="CONTRACTOR | CHARTER | NON_PUBLIC_SCHOOL | AGENCY")
    q.add_argument("--sponsor", help="DN of the sponsoring employee")
    q.add_argument("--expiry", help="wanted end date (YYYY-MM-DD or generalized time)")

    q = cmd("list", cmd_list, "list requests")
    q.add_argument("--status", default="PENDING", help="PENDING (default), APPROVED, DENIED, WITHDRAWN, EXPIRED or all")
    q.add_argument("--mine", action="store_true", help="only requests you filed or that name you as grantee")
    q = cmd("show", cmd_show, "show one request")
    q.add_argument("number", type=int)
    q.add_argument("--format", choices=["text", "ldif"], default="text",
                   help="text for people (default); ldif: its attributes as stored, with DNs and generalized times")
    q = cmd("approve", cmd_approve, "approve a request (the grant is made in the same transaction)")
    q.add_argument("number", type=int)
    q.add_argument("--reason")
    q.add_argument("--expiry", help="end of the grant / account (YYYY-MM-DD or generalized time)")
    q = cmd("deny", cmd_deny, "deny a request (a reason is required: the requester sees it)")
    q.add_argument("number", type=int)
    q.add_argument("--reason", required=True)
    q = cmd("withdraw", cmd_withdraw, "withdraw your own pending request")
    q.add_argument("number", type=int)
    q.add_argument("--reason")
    q = cmd("issue-code", cmd_issue_code, "the approver of a non-employee account request: the account's "
                                          "username and a one-time activation code (replaces an earlier one)")
    q.add_argument("number", type=int)
    q = cmd("expire", cmd_expire, "remove expired grants, disable expired non-employee accounts (cron job)",
            ldap=False)
    q.add_argument("--now", help="act as if it were this time (generalized time; for tests and catch-up)")
    q.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")


# ----------------------------------------------------------------------------


def _config(args):
    if getattr(args, "config", None) is None:
        raise CLIError(f"configuration error: {client.find_config(None)[1]}")
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CLIError(f"configuration error: {exc}") from None


def _gentime(text):
    try:
        return rc.gentime(text)
    except rc.RequestError as exc:
        raise CLIError(exc.message) from None


class Session:
    def __init__(self, args):
        self.cfg = _config(args)
        self.suffix = self.cfg.suffix
        self.me = args.bind_dn
        try:
            self.conn = client.connect_from_args(args, self.cfg, receive_timeout=30)
        except client.ClientError as exc:
            raise CLIError(exc.message) from None
        self.conn._rollcall_suffix = self.suffix


def cmd_submit(args):
    s = Session(args)
    kind = rc.KIND_ALIASES.get(args.kind.lower(), args.kind.upper())
    site = f"ou={args.site},ou=sites,{s.suffix}" if args.site else None
    target = args.target
    fields, secret = {}, None
    if kind == "NON_EMPLOYEE_ACCOUNT":
        target = target or site
        fields = rc.nonemployee_attrs(s.suffix, args.given, args.sn, args.mail, args.organization, args.ne_kind,
                                      None, args.phone, args.sponsor)
        secret = rc.new_tracking_secret()
        fields["rollcallTrackingDigest"] = rc.tracking_digest(secret)
    elif kind == "APPLICATION_ROLE" and not target:
        if not (args.application and args.role):
            raise CLIError("--kind role needs --application and --role (or --target)")
        target = rc.application_role_dn(s.conn, args.application, args.role)
    elif kind == "SUBADMIN" and not target:
        if not (site and args.role):
            raise CLIError("--kind subadmin needs --site and --role (student-email-admins | photo-designees)")
        target = rc.site_role_dn(s.conn, args.site, args.role)
    elif kind == "PHOTO_VENDOR" and not target:
        target = f"cn=photo-vendors,{site}" if site else None
    if not target:
        raise CLIError("which site / role? (--site, --application/--role or --target)")
    number = rc.submit(s.conn, kind, target, grantee=args.grantee, justification=args.justification,
                       expiry=_gentime(args.expiry), **fields)
    print(f"request {number} submitted")
    got = rc.get(s.conn, number) if s.me else None
    for flag in got.flags if got else ():
        print(f"  {flag}")
    if kind == "NON_EMPLOYEE_ACCOUNT":
        # shown once: anonymous users follow the request on the console's track page with it
        print(f"tracking code: {secret} (keep it: the web console's Track page shows the status "
              "with the number and this code)")
    if s.me or kind != "NON_EMPLOYEE_ACCOUNT":
        print(f"follow it with: rollcall request show {number}")


def cmd_list(args):
    s = Session(args)
    if args.mine and not s.me:
        raise CLIError("--mine needs -D")
    rows = []
    names = dict(rc.sites(s.conn))
    for r in rc.list_requests(s.conn, args.status, s.me if args.mine else None):
        who = display.person_label(r.grantee or r.requester) if (r.grantee or r.requester) else \
            (r.name or r.one("mail") or "(anonymous)")
        rows.append((r.number, r.kind, r.status, _what(r, names), who, display.local_date(r.one("createTimestamp"))))
    print(f"{'number':>6}  {'kind':<20}  {'status':<9}  {'request':<40}  {'for':<24}  filed")
    for n, kind, st, target, who, created in rows:
        print(f"{n:>6}  {kind:<20}  {st:<9}  {target:<40}  {who:<24}  {created}")
    print(f"({len(rows)} request{'s' if len(rows) != 1 else ''})")


def _what(r, names) -> str:
    """What a request asks for, in the words of the console (site names, role names)."""
    site = display.site_label(r.site_code, names.get(r.site_code)) if r.site_code else ""
    if r.kind == "NON_EMPLOYEE_ACCOUNT":
        return f"account for {r.name or r.one('mail')}, {site}"
    if r.kind == "APPLICATION_ROLE":
        return f"role {r.role} ({display.person_label(r.application)})"
    return f"{r.role} of {site}" if site else r.role


def cmd_show(args):
    s = Session(args)
    r = rc.get(s.conn, args.number)
    if r is None:
        raise CLIError(f"request {args.number}: not found")
    if args.format == "ldif":  # the machine format: DNs and generalized times as stored
        print(f"dn: {r.dn}")
        for name in rc.SHOW_ATTRS:
            for v in r.all(name):
                print(f"{name}: {v}")
        return
    names = dict(rc.sites(s.conn)) if s.me else {}

    def person(dn):
        return admin.person_name(s.conn, dn) if dn else ""

    lines = [("asks for", _what(r, names) if r.target else ""),
             ("filed", " ".join(x for x in (r.filed_at, f"by {person(r.requester)}"
                                             if r.requester else "") if x)),
             ("for", person(r.grantee)),
             ("name", r.name if r.kind == "NON_EMPLOYEE_ACCOUNT" else ""), ("e-mail", r.one("mail")),
             ("organization", r.one("rollcallOrganization")), ("why", r.justification),
             ("decided", " ".join(x for x in (r.decided_at, f"by {person(r.decided_by)}"
                                               if r.decided_by else "") if x)),
             ("reason", r.reason), ("ends", display.local_date(r.one("rollcallExpiry"))),
             ("account", person(r.linked_account))]
    print(f"request {r.number}: {r.kind.replace('_', ' ').lower()}" + (f", {r.status}" if r.status else ""))
    for label, value in lines:
        if value:
            print(f"  {label + ':':<14}{value}")
    for flag in r.flags:
        print(f"  {flag}")


def _decide(args, status, reason=None, expiry=None):
    s = Session(args)
    r = rc.decide(s.conn, args.number, status, reason, expiry)
    print(f"request {args.number}: {status}")
    if r is not None and status == "APPROVED":
        if r.linked_account:
            print(f"  account:   {display.person_label(r.linked_account)} (PENDING until activated: "
                  f"`rollcall request issue-code {args.number}` gives its activation code)")
        if r.one("rollcallExpiry"):
            print(f"  ends:      {display.local_date(r.one('rollcallExpiry'))}")


def cmd_approve(args):
    _decide(args, "APPROVED", args.reason, _gentime(args.expiry))


def cmd_deny(args):
    _decide(args, "DENIED", args.reason)


def cmd_withdraw(args):
    _decide(args, "WITHDRAWN", args.reason)


def cmd_issue_code(args):
    s = Session(args)
    out = rc.issue_activation_code(s.conn, args.number)
    print(f"request {out['number']}: account of {out['name']} ({out['mail']})")
    print(f"  username:        {out['username']}")
    print(f"  activation code: {out['code']}")
    print(f"  valid until:     {out['expiry']}")
    print("Give both to the person (shown once; a new code replaces this one). They activate the account "
          "with `rollcall account activate` or the console's activation page and choose their password.")


def cmd_expire(args):
    cfg = _config(args)
    if cfg.store_backend == "sqlite" and not cfg.store_path.exists():
        raise CLIError(f"no store at {cfg.store_path}")
    try:
        d = open_directory(cfg)
        # run from any host's cron: one at a time (a second one says so and stops)
        with d.store.job_lock("request-expire"):
            _expire(d, args)
    except JobLocked as exc:
        raise CLIError(f"expire: {exc}") from None
    except StoreError as exc:
        raise CLIError(str(exc)) from None


def _expire(d, args):
    ident = Identity("cn=rollcall-expire", "cn=rollcall-expire", is_root=True, peer="cron:request-expire")
    now = None
    if args.now:
        now = parse_time(_gentime(args.now).encode())
        if now is None:
            raise CLIError(f"--now: cannot read {args.now!r}")
    report = expire(d, ident, now=now, dry_run=args.dry_run)
    verb = "would " if args.dry_run else ""
    for grantee, group in report["grants"]:
        print(f"{verb}remove expired grant: {_person(d, grantee)} from {_group(d, group)}")
    for dn in report["accounts"]:
        print(f"{verb}disable expired account: {_person(d, dn)}")
    for dn in report["requests"]:
        print(f"{verb}expire undecided request: {display.person_label(dn)}")  # its number
    print(f"{len(report['grants'])} grants, {len(report['accounts'])} accounts, "
          f"{len(report['requests'])} requests{' (dry run: nothing changed)' if args.dry_run else ''}")


def _first(d, dn, attr) -> str | None:
    try:
        entry = d.lookup(d.normalize_dn(dn))
    except Exception:  # noqa: BLE001 - a DN that no longer parses or exists: named by its RDN
        return None
    value = entry.first(attr) if entry is not None else None
    return value.decode("utf-8", "replace") if value else None


def _person(d, dn) -> str:
    """'Emma Wilson (ewilson)' for the nightly job's report: a name and the username."""
    uid = display.person_label(dn)
    name = _first(d, dn, "cn")
    return f"{name} ({uid})" if name and name != uid else uid


def _group(d, dn) -> str:
    """A site's role group as '<role> of <school>', else the group's name."""
    cn = display.person_label(dn)
    parent = dn.split(",", 1)[1] if "," in dn else ""
    code = _first(d, parent, "rollcallCostCenter") if parent else None
    if code is None:
        return cn
    return f"{display.role_label(cn)} of {display.site_label(code, _first(d, parent, 'rollcallSiteName'))}"


def run(fn, args):
    try:
        fn(args)
    except CLIError as exc:
        print(f"rollcall request: {exc}", file=sys.stderr)
        sys.exit(1)
    except rc.RequestError as exc:
        print(f"rollcall request: {exc.detail()}", file=sys.stderr)
        sys.exit(1)
    except client.ClientError as exc:
        print(f"rollcall request: {exc.message}", file=sys.stderr)
        sys.exit(1)
