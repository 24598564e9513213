"""`rollcall request …`: access requests from the command line.

submit, list, show, approve, deny and withdraw are LDAP clients (ldap3) of the server
named by --url (default: the first ldap:// listener of --config), bound as the person
acting (-D/--bind-dn, password from -w, --password-file or $ROLLCALL_PASSWORD; no -D:
anonymous, which may only submit a non-employee account request and follow it by
number). They obey the same rules as ldapadd/ldapmodify because the server's requests
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
"""
import argparse
import datetime
import os
import sys

from .config import ConfigError, load_config

KIND_ALIASES = {
    "nonemployee": "NON_EMPLOYEE_ACCOUNT", "non-employee": "NON_EMPLOYEE_ACCOUNT",
    "role": "APPLICATION_ROLE", "application-role": "APPLICATION_ROLE",
    "subadmin": "SUBADMIN", "sub-admin": "SUBADMIN",
    "photo-vendor": "PHOTO_VENDOR", "photovendor": "PHOTO_VENDOR",
}
SHOW_ATTRS = ["rollcallRequestNumber", "rollcallRequestKind", "rollcallRequestStatus", "rollcallRequester",
              "rollcallRequestTarget", "rollcallGrantee", "rollcallJustification", "givenName", "sn", "cn",
              "mail", "telephoneNumber", "rollcallOrganization", "rollcallNonEmployeeKind", "rollcallSponsor",
              "rollcallExpiry", "description", "rollcallDecidedBy", "rollcallDecidedAt",
              "rollcallDecisionReason", "rollcallLinkedAccount", "createTimestamp"]


class CLIError(Exception):
    pass


def add_request_parser(p):
    """The `request` subcommand's own subcommands (p: the `request` parser from cli.py)."""
    sub = p.add_subparsers(dest="request_command", required=True)

    def cmd(name, fn, help, ldap=True):
        q = sub.add_parser(name, help=help)
        q.set_defaults(fn=lambda a, fn=fn: run(fn, a))
        q.add_argument("--config", default=argparse.SUPPRESS, help="configuration file (default: config.yaml)")
        if ldap:
            q.add_argument("--url", help="server URL (default: the first ldap:// listener in the config)")
            q.add_argument("-D", "--bind-dn", help="bind as this DN (default: anonymous)")
            q.add_argument("-w", "--password", help="bind password (or --password-file, or $ROLLCALL_PASSWORD)")
            q.add_argument("--password-file")
            q.add_argument("--cacert", help="CA certificate for ldaps:// (default: tls.cert of the config)")
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
    q = cmd("expire", cmd_expire, "remove expired grants, disable expired non-employee accounts (cron job)",
            ldap=False)
    q.add_argument("--now", help="act as if it were this time (generalized time; for tests and catch-up)")
    q.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")


# ----------------------------------------------------------------------------


def _config(args):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CLIError(f"configuration error: {exc}") from None


def _gentime(text):
    if text is None:
        return None
    if len(text) == 10 and text[4] == "-":
        d = datetime.date.fromisoformat(text)
        return d.strftime("%Y%m%d") + "235959Z"
    if text.endswith("Z") and len(text) == 15 and text[:14].isdigit():
        return text
    raise CLIError(f"expected YYYY-MM-DD or YYYYMMDDHHMMSSZ, not {text!r}")


class Session:
    def __init__(self, args):
        from ldap3 import NONE, Connection, Server, Tls

        self.cfg = _config(args)
        self.suffix = self.cfg.suffix
        url = args.url
        if not url:
            plain = [lst for lst in self.cfg.listeners if lst.scheme == "ldap"]
            lst = plain[0] if plain else self.cfg.listeners[0]
            url = lst.url
        tls = None
        if url.startswith("ldaps://"):
            import ssl

            ca = args.cacert or (str(self.cfg.tls_cert) if self.cfg.tls_cert else None)
            tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca)
        password = args.password
        if password is None and args.password_file:
            with open(args.password_file) as fh:
                password = fh.readline().rstrip("\n")
        if password is None:
            password = os.environ.get("ROLLCALL_PASSWORD")
        self.me = args.bind_dn
        if self.me and not password:
            raise CLIError("-D needs a password (-w, --password-file or $ROLLCALL_PASSWORD)")
        self.conn = Connection(Server(url, tls=tls, get_info=NONE), user=self.me, password=password if self.me else None,
                               raise_exceptions=False, receive_timeout=30)
        if not self.conn.bind():
            raise CLIError(f"bind failed: {self.conn.result.get('description')} {self.conn.result.get('message')}")

    def dn(self, n):
        return f"rollcallRequestNumber={int(n)},ou=requests,{self.suffix}"

    def check(self, ok, what):
        if not ok:
            r = self.conn.result
            raise CLIError(f"{what}: {r.get('description')} ({r.get('result')}): {r.get('message')}")

    def get(self, dn, attrs=None):
        from ldap3 import BASE

        ok = self.conn.search(dn, "(objectClass=*)", BASE, attributes=attrs or ["*", "createTimestamp"])
        self.check(ok, f"read {dn}")
        return self.conn.entries[0] if self.conn.entries else None

    def find_one(self, base, flt, what):
        from ldap3 import LEVEL

        ok = self.conn.search(base, flt, LEVEL, attributes=["cn"])
        if not ok or not self.conn.entries:
            raise CLIError(f"{what}: not found under {base}")
        return self.conn.entries[0].entry_dn


def _values(entry, name):
    if entry is None or name not in entry.entry_attributes:
        return []
    return [str(v) for v in entry[name].values]


def cmd_submit(args):
    from ldap3.utils.conv import escape_filter_chars

    s = Session(args)
    kind = KIND_ALIASES.get(args.kind.lower(), args.kind.upper())
    attrs = {"objectClass": ["top", "rollcallRequest"], "rollcallRequestNumber": "0",
             "rollcallRequestKind": kind, "rollcallRequestStatus": "PENDING"}
    site = f"ou={args.site},ou=sites,{s.suffix}" if args.site else None
    target = args.target
    if kind == "NON_EMPLOYEE_ACCOUNT":
        target = target or site
        for name, value in (("givenName", args.given), ("sn", args.sn), ("mail", args.mail),
                            ("telephoneNumber", args.phone), ("rollcallOrganization", args.organization),
                            ("rollcallNonEmployeeKind", args.ne_kind and args.ne_kind.upper()),
                            ("rollcallSponsor", args.sponsor)):
            if value:
                attrs[name] = value
    elif kind == "APPLICATION_ROLE" and not target:
        if not (args.application and args.role):
            raise CLIError("--kind role needs --application and --role (or --target)")
        app = f"ou={args.application},ou=groups,{s.suffix}"
        r, a = escape_filter_chars(args.role), escape_filter_chars(args.application)
        target = s.find_one(app, f"(&(objectClass=groupOfNames)(|(cn={r})(cn={a}-{r})))",
                            f"role {args.role} of {args.application}")
    elif kind == "SUBADMIN" and not target:
        if not (site and args.role):
            raise CLIError("--kind subadmin needs --site and --role (student-email-admins | photo-designees)")
        target = f"cn={args.role},{site}"
    elif kind == "PHOTO_VENDOR" and not target:
        target = f"cn=photo-vendors,{site}" if site else None
    if not target:
        raise CLIError("which site / role? (--site, --application/--role or --target)")
    attrs["rollcallRequestTarget"] = target
    if args.grantee:
        attrs["rollcallGrantee"] = args.grantee
    if args.justification:
        attrs["rollcallJustification"] = args.justification
    if args.expiry:
        attrs["rollcallExpiry"] = _gentime(args.expiry)
    ok = s.conn.add(s.dn(0), attributes=attrs)
    s.check(ok, "submit")
    message = s.conn.result.get("message") or ""
    dn = message[len("added as "):] if message.startswith("added as ") else s.dn(0)
    number = dn.split(",", 1)[0].split("=", 1)[1]
    print(f"request {number} submitted: {dn}")
    entry = s.get(dn, ["rollcallRequestStatus", "description"]) if s.me else None
    for flag in _values(entry, "description"):
        if flag.lower().startswith("flag:"):
            print(f"  {flag}")
    print(f"follow it with: rollcall request show {number}")


def cmd_list(args):
    from ldap3 import LEVEL
    from ldap3.utils.conv import escape_filter_chars

    s = Session(args)
    status = args.status.upper()
    parts = ["(objectClass=rollcallRequest)"]
    if status != "ALL":
        parts.append(f"(rollcallRequestStatus={escape_filter_chars(status)})")
    if args.mine:
        if not s.me:
            raise CLIError("--mine needs -D")
        me = escape_filter_chars(s.me)
        parts.append(f"(|(rollcallRequester={me})(rollcallGrantee={me}))")
    flt = "(&" + "".join(parts) + ")"
    entries = s.conn.extend.standard.paged_search(
        f"ou=requests,{s.suffix}", flt, LEVEL, attributes=["*", "createTimestamp"], paged_size=200, generator=False)
    s.check(s.conn.result.get("result") == 0, "list")
    rows = []
    for e in entries:
        if e.get("type") != "searchResEntry":
            continue
        a = e["attributes"]

        def one(name, a=a):
            v = a.get(name)
            return str(v[0] if isinstance(v, list) and v else v or "")
        who = one("rollcallRequester") or one("mail") or "(anonymous)"
        rows.append((int(one("rollcallRequestNumber") or 0), one("rollcallRequestKind"),
                     one("rollcallRequestStatus"), one("rollcallRequestTarget").split(",")[0]
                     + ("," + one("rollcallRequestTarget").split(",")[1] if "," in one("rollcallRequestTarget") else ""),
                     (one("rollcallGrantee") or who).split(",")[0], one("createTimestamp")[:8]))
    rows.sort()
    print(f"{'number':>6}  {'kind':<20}  {'status':<9}  {'target':<40}  {'for':<24}  filed")
    for n, kind, st, target, who, created in rows:
        print(f"{n:>6}  {kind:<20}  {st:<9}  {target:<40}  {who:<24}  {created}")
    print(f"({len(rows)} request{'s' if len(rows) != 1 else ''})")


def cmd_show(args):
    s = Session(args)
    entry = s.get(s.dn(args.number))
    if entry is None:
        raise CLIError(f"request {args.number}: not found")
    print(f"dn: {entry.entry_dn}")
    for name in SHOW_ATTRS:
        for v in _values(entry, name):
            print(f"{name}: {v}")


def _decide(args, status, reason=None, expiry=None):
    from ldap3 import MODIFY_REPLACE

    s = Session(args)
    changes = {"rollcallRequestStatus": [(MODIFY_REPLACE, [status])]}
    if reason:
        changes["rollcallDecisionReason"] = [(MODIFY_REPLACE, [reason])]
    if expiry:
        changes["rollcallExpiry"] = [(MODIFY_REPLACE, [expiry])]
    ok = s.conn.modify(s.dn(args.number), changes)
    s.check(ok, f"request {args.number}")
    entry = s.get(s.dn(args.number))
    print(f"request {args.number}: {status}")
    for name in ("rollcallLinkedAccount", "rollcallExpiry"):
        for v in _values(entry, name) if status == "APPROVED" else ():
            print(f"  {name}: {v}")


def cmd_approve(args):
    _decide(args, "APPROVED", args.reason, _gentime(args.expiry))


def cmd_deny(args):
    _decide(args, "DENIED", args.reason)


def cmd_withdraw(args):
    _decide(args, "WITHDRAWN", args.reason)


def cmd_expire(args):
    from .app import open_directory
    from .core.directory import Identity
    from .core.requests import expire, parse_time

    cfg = _config(args)
    if not cfg.store_path.exists():
        raise CLIError(f"no store at {cfg.store_path}")
    d = open_directory(cfg)
    ident = Identity("cn=rollcall-expire", "cn=rollcall-expire", is_root=True, peer="cron:request-expire")
    now = None
    if args.now:
        now = parse_time(_gentime(args.now).encode())
        if now is None:
            raise CLIError(f"--now: cannot read {args.now!r}")
    report = expire(d, ident, now=now, dry_run=args.dry_run)
    verb = "would " if args.dry_run else ""
    for grantee, group in report["grants"]:
        print(f"{verb}remove expired grant: {grantee} from {group}")
    for dn in report["accounts"]:
        print(f"{verb}disable expired account: {dn}")
    for dn in report["requests"]:
        print(f"{verb}expire undecided request: {dn}")
    print(f"{len(report['grants'])} grants, {len(report['accounts'])} accounts, "
          f"{len(report['requests'])} requests{' (dry run: nothing changed)' if args.dry_run else ''}")


def run(fn, args):
    try:
        fn(args)
    except CLIError as exc:
        print(f"rollcall request: {exc}", file=sys.stderr)
        sys.exit(1)
