"""Access requests: a non-employee account request (public) and its tracking by number
and secret tracking code;
an application role or sub-administrator rights (signed in); the approvers' queue,
approve / deny with a reason, withdraw.

Everything goes through directory/requests_client.py over the person's own connection
(the server's requests overlay decides who may file and decide what); the queue and the
decision buttons are only the console's guess from the person's roles.

One exception: an anonymous submission is written through the core with the browser's
address (as /activate does), because the overlay limits anonymous requests per source
address and over LDAP every browser would share the console's loopback address."""
from __future__ import annotations

import hmac
import re

from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool

from ... import admin
from ... import requests_client as rc
from ...core.directory import Identity
from ...core.errors import LDAPError
from ...district import display
from ..forms import PageError, redirect, sentence, url
from ..routes import route

NOT_STUDENT = (lambda r: r.kind != "student", "Students cannot file or decide access requests.")
NE_KINDS = {"CONTRACTOR": "Contractor", "CHARTER": "Charter school", "NON_PUBLIC_SCHOOL": "Non-public school",
            "AGENCY": "Agency"}
KIND_NAMES = {"NON_EMPLOYEE_ACCOUNT": "Non-employee account", "APPLICATION_ROLE": "Application role",
              "SUBADMIN": "Sub-administrator", "PHOTO_VENDOR": "Photo vendor"}
SUBADMIN_ROLES = {cn: display.SITE_ROLES[cn] for cn in ("student-email-admins", "photo-designees")}
SITE_CODE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,15}$")
NUMBER = re.compile(r"^[0-9]{1,9}$")
PHONE = re.compile(r"^[0-9+()./ -]{3,32}$")
LIMIT = {"given": 64, "sn": 64, "mail": 254, "phone": 32, "organization": 128, "justification": 2000,
         "reason": 1000}


def _too_long(values: dict) -> str:
    for k, v in values.items():
        if len(v) > LIMIT.get(k, 256):
            return f"That text is too long (at most {LIMIT.get(k, 256)} characters)."
    return ""


# ---------------------------------------------------------------------- public: account request
ACCOUNT_FIELDS = ("given", "sn", "mail", "phone", "organization", "ne_kind", "site", "justification")
NEW_FIELDS = ("what", "role", "site", "site_role", "justification")


def _account_form(ctx, status=200, error="", values=None, number=None, token=""):
    v = {k: (values or {}).get(k, "") for k in ACCOUNT_FIELDS}
    return ctx.console.render_page(ctx, "requests_account.html", status=status, error=error,
                                   v=v, ne_kinds=NE_KINDS, number=number, token=token,
                                   track_url=url("/track", number=number, token=token) if number else "")


@route("GET", "/request-account", allow="public")
def account_form(ctx):
    return _account_form(ctx)


@route("POST", "/request-account", allow="public")
def account_submit(ctx):
    v = {k: ctx.arg(k).strip() for k in ACCOUNT_FIELDS}
    error = _too_long(v)
    if not error:
        if not (v["given"] and v["sn"]):
            error = "Enter your given name and your family name."
        elif not rc.MAIL_RE.match(v["mail"]) or ".." in v["mail"]:
            error = "Enter a valid e-mail address, e.g. ana.lopez@example.org."
        elif v["phone"] and not PHONE.match(v["phone"]):
            error = "A phone number has digits, spaces and + ( ) - only."
        elif not v["organization"]:
            error = "Enter the organization you work for."
        elif v["ne_kind"] not in NE_KINDS:
            error = "Choose what kind of organization it is."
        elif not SITE_CODE.match(v["site"]):
            error = "Enter the code of the school or office that sponsors you (e.g. 1234)."
        elif not v["justification"]:
            error = "Say why you need an account."
    if error:
        return _account_form(ctx, 400, error, v)
    suffix = ctx.console.suffix
    fields = rc.nonemployee_attrs(suffix, v["given"], v["sn"], v["mail"], v["organization"], v["ne_kind"],
                                  v["site"], v["phone"] or None)
    # the secret the requester follows the request with (shown once; only its digest is kept)
    token = rc.new_tracking_secret()
    fields["rollcallTrackingDigest"] = rc.tracking_digest(token)
    try:
        attrs = rc.request_entry("NON_EMPLOYEE_ACCOUNT", justification=v["justification"], **fields)
        if ctx.session.signed_in:
            # filed by the signed-in person (they are the requester and see it under Requests)
            number = rc.submit(ctx.conn, "NON_EMPLOYEE_ACCOUNT", justification=v["justification"], **fields)
        else:
            number = _submit_anonymous(ctx, attrs)
    except rc.RequestError as exc:
        return _account_form(ctx, 403 if exc.code == 50 else 400, _submit_refusal(exc.message, v["site"]), v)
    except LDAPError as exc:
        return _account_form(ctx, 403 if exc.code == 50 else 400, _submit_refusal(exc.message or "", v["site"]), v)
    return _account_form(ctx, 200, "", {}, number, token)


def _submit_anonymous(ctx, attrs) -> int:
    console = ctx.console
    ident = Identity(peer=f"{ctx.client}:web", tls=True)
    raw = {k: [x.encode("utf-8") for x in (vs if isinstance(vs, list) else [vs])] for k, vs in attrs.items()}
    result = blockingCallFromThread(reactor, deferToThreadPool, reactor, console.factory.write_pool,
                                    console.directory.add, ident, rc.request_dn(console.suffix, 0), raw)
    return rc.number_of(result.dn)


def _submit_refusal(message: str, site: str) -> str:
    low = message.lower()
    if "rollcallrequesttarget" in low and ("does not exist" in low or "sponsoring site" in low):
        return f"There is no school or office with the code {site}."
    if "too many anonymous requests" in low:
        return "Too many requests from your address. Try again later."
    if low.startswith("mail "):
        return "Enter a valid e-mail address, e.g. ana.lopez@example.org."
    return sentence(message)


# ---------------------------------------------------------------------- public: tracking
NOT_FOUND = ("There is no account request with that number and tracking code. Check both (they were "
             "shown when the request was sent); other requests are followed under Requests after signing in.")


@route("GET", "/track", allow="public", on_reactor=True)
def track(ctx):
    """The status of a non-employee account request, for whoever holds its number AND
    its tracking code. Read from the directory's own entry (an indexed read, like the
    sign-in's lookup; console.store_read: on the reactor for a local store, in the pool
    for a remote one): over LDAP anonymous users see no status."""
    number = ctx.arg("number").strip().lstrip("#")
    token = ctx.arg("token").strip()

    def page(req, error="", status=200):
        return ctx.console.render_page(ctx, "requests_track.html", status=status, number=number, token=token,
                                       req=req, error=error)

    if not (number or token):
        return page(None)
    if not NUMBER.match(number):
        return page(None, "A request number is a whole number, e.g. 17.", 400)
    if not token:
        return page(None, "Enter the tracking code you were given with the request number.", 400)
    return ctx.console.store_read(_tracked, ctx.console, int(number), token).addCallback(
        lambda req: page(req) if req is not None else page(None, NOT_FOUND, 404))


def _tracked(console, number: int, token: str) -> dict | None:
    d = console.directory
    try:
        entry = d.lookup(d.normalize_dn(rc.request_dn(console.suffix, number)))
    except LDAPError:
        entry = None
    given = rc.tracking_digest(token).encode()
    stored = (entry.attrs.get("rollcallTrackingDigest") or [b""])[0] if entry is not None else b""
    # compared in constant time, and the same answer for "no such request" and "wrong code"
    if not hmac.compare_digest(given, stored.lower() or b"-" * 64):
        return None
    if (entry.attrs.get("rollcallRequestKind") or [b""])[0].upper() != b"NON_EMPLOYEE_ACCOUNT":
        return None

    def text(name):
        v = entry.attrs.get(name)
        return v[0].decode("utf-8", "replace") if v else ""

    return {"number": number, "status": text("rollcallRequestStatus"), "reason": text("rollcallDecisionReason"),
            "decided_at": rc._when(text("rollcallDecidedAt"))}


# ---------------------------------------------------------------------- signed in
def _approver_groups(roles) -> set:
    return {rc.norm_dn(g) for g in roles.approver_groups}


def _apps_by_dn(apps) -> dict:
    return {rc.norm_dn(a.dn): a for a in apps}


def may_decide(session, req, apps_by_dn) -> bool:
    """The console's guess of who may decide (the overlay still decides)."""
    return req.status == "PENDING" and _is_decider(session, req, apps_by_dn)


def may_issue_code(session, req) -> bool:
    """The console's guess of who may hand out the account of an approved non-employee
    account request: the people who may decide it (the server decides)."""
    return (req.kind == "NON_EMPLOYEE_ACCOUNT" and req.status == "APPROVED" and bool(req.linked_account)
            and _is_decider(session, req, {}))


def _is_decider(session, req, apps_by_dn) -> bool:
    roles = session.roles
    if req.involves(session.dn):
        return False
    if roles.kind == "root":
        return True
    if req.kind in ("NON_EMPLOYEE_ACCOUNT", "SUBADMIN") and roles.district_admin:
        return True
    if req.kind in ("NON_EMPLOYEE_ACCOUNT", "SUBADMIN", "PHOTO_VENDOR"):
        return bool(req.site_code) and req.site_code in roles.principal_sites
    if req.kind == "APPLICATION_ROLE":
        app = apps_by_dn.get(rc.norm_dn(req.application))
        return app is not None and rc.norm_dn(app.approvers) in _approver_groups(roles)
    return False


def deciders(ctx, req, apps_by_dn) -> str:
    """Who decides this request, as a sentence."""
    if req.kind == "APPLICATION_ROLE":
        app = apps_by_dn.get(rc.norm_dn(req.application))
        return f"The approvers of {app.name if app else 'the application'} decide this request."
    site = ctx.site(req.site_code) if req.site_code else "the site"
    if req.kind == "PHOTO_VENDOR":
        return f"The principals of {site} decide this request."
    return f"The principals of {site} or a district administrator decide this request."


@route("GET", "/requests", allow=NOT_STUDENT)
def overview(ctx):
    s = ctx.session
    mine = rc.list_requests(ctx.conn, "ALL", s.dn) if s.dn else []
    queue = []
    if s.roles.approver:
        apps = _apps_by_dn(rc.applications(ctx.conn)) if s.roles.approver_groups else {}
        queue = [r for r in rc.list_requests(ctx.conn, "PENDING") if may_decide(s, r, apps)]
    return ctx.console.render_page(ctx, "requests_list.html", mine=mine, queue=queue, kinds=KIND_NAMES)


def _new_form(ctx, status=200, error="", values=None):
    conn = ctx.conn
    v = {k: (values or {}).get(k, "") for k in NEW_FIELDS}
    return ctx.console.render_page(ctx, "requests_new.html", status=status, error=error, v=v,
                                   apps=rc.applications(conn), sites=rc.sites(conn), subadmin_roles=SUBADMIN_ROLES)


@route("GET", "/requests/new", allow=NOT_STUDENT)
def new_form(ctx):
    return _new_form(ctx, values={"what": ctx.arg("what") or "role"})


@route("POST", "/requests/new", allow=NOT_STUDENT)
def new_submit(ctx):
    v = {k: ctx.arg(k).strip() for k in NEW_FIELDS}
    error = _too_long({"justification": v["justification"]})
    target, kind = None, None
    if not error and v["what"] == "role":
        roles = {rc.norm_dn(r.dn): r.dn for a in rc.applications(ctx.conn) for r in a.roles}
        target, kind = roles.get(rc.norm_dn(v["role"])), "APPLICATION_ROLE"
        if not v["role"] or target is None:
            error = "Choose the application role you need."
    elif not error and v["what"] == "subadmin":
        codes = {code for code, _ in rc.sites(ctx.conn)}
        if v["site"] not in codes:
            error = "Choose the school or office."
        elif v["site_role"] not in SUBADMIN_ROLES:
            error = "Choose the administrator role you need."
        else:
            target, kind = rc.site_role_dn(ctx.conn, v["site"], v["site_role"]), "SUBADMIN"
    elif not error:
        error = "Choose what you are asking for."
    if not error and not v["justification"]:
        error = "Say why you need it: the approver reads it."
    if error:
        return _new_form(ctx, 400, error, v)
    try:
        number = rc.submit(ctx.conn, kind, target, justification=v["justification"])
    except rc.RequestError as exc:
        message = exc.message
        if exc.code == 20 or "already holds" in message:
            message = "You already have that role."
        return _new_form(ctx, 403 if exc.code == 50 else 400, sentence(message), v)
    ctx.session.flash.append(f"Request {number} submitted. Its approvers see it in their queue.")
    return redirect(f"/requests/{number}")


def _load(ctx):
    req = rc.get(ctx.conn, int(ctx.params["n"]))
    if req is None:
        raise PageError(f"There is no request number {int(ctx.params['n'])} you may see.", 404)
    return req


def _detail(ctx, req, status=200, error="", reason="", expiry=""):
    s = ctx.session
    apps = _apps_by_dn(rc.applications(ctx.conn)) if req.kind == "APPLICATION_ROLE" else {}
    app = apps.get(rc.norm_dn(req.application))
    return ctx.console.render_page(
        ctx, "requests_detail.html", status=status, req=req, error=error, reason=reason, expiry=expiry,
        kinds=KIND_NAMES, ne_kinds=NE_KINDS, app=app, can_decide=may_decide(s, req, apps),
        can_withdraw=req.status == "PENDING" and rc.norm_dn(req.requester) == rc.norm_dn(s.dn),
        deciders=deciders(ctx, req, apps), mine=req.involves(s.dn), can_issue_code=may_issue_code(s, req),
        # people by name (who filed, for whom, who decided), not by DN
        people={dn: admin.person_name(ctx.conn, dn) for dn in (req.requester, req.grantee, req.decided_by) if dn})


@route("GET", "/requests/(?P<n>[0-9]{1,9})", allow=NOT_STUDENT)
def detail(ctx):
    return _detail(ctx, _load(ctx))


@route("POST", "/requests/(?P<n>[0-9]{1,9})/decide", allow=NOT_STUDENT)
def decide(ctx):
    req = _load(ctx)
    decision, reason, expiry = ctx.arg("decision"), ctx.arg("reason").strip(), ctx.arg("expiry").strip()

    def again(error, status=400):
        return _detail(ctx, req, status, error, reason, expiry)

    if decision not in ("approve", "deny"):
        return again("Choose approve or deny.")
    if len(reason) > LIMIT["reason"]:
        return again(f"The reason is too long (at most {LIMIT['reason']} characters).")
    if decision == "deny" and not reason:
        return again("A denial needs a reason: the requester sees it.")
    if decision == "deny" and expiry:
        return again("An end date goes with an approval only.")
    if expiry and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", expiry):
        return again("Enter the end date as a date, e.g. 2026-06-30.")
    status = "APPROVED" if decision == "approve" else "DENIED"
    try:
        rc.decide(ctx.conn, req.number, status, reason or None, expiry or None)
    except rc.RequestError as exc:
        return again(_decision_refusal(exc, req, ctx), 403 if exc.code == 50 else 400)
    ctx.session.flash.append(f"Request {req.number} {status.lower()}.")
    return redirect(f"/requests/{req.number}")


def _decision_refusal(exc, req, ctx) -> str:
    low = exc.message.lower()
    if exc.code == 50 and "own request" in low:
        return "Nobody decides their own request."
    if exc.code == 50:
        apps = _apps_by_dn(rc.applications(ctx.conn)) if req.kind == "APPLICATION_ROLE" else {}
        return f"You may not decide request {req.number}. {deciders(ctx, req, apps)}"
    if "only a pending request" in low:
        return f"Request {req.number} has already been decided."
    if "must be in the future" in low:
        return "The end date must be in the future."
    return sentence(exc.message)


@route("POST", "/requests/(?P<n>[0-9]{1,9})/withdraw", allow=NOT_STUDENT)
def withdraw(ctx):
    req = _load(ctx)
    try:
        rc.decide(ctx.conn, req.number, "WITHDRAWN")
    except rc.RequestError as exc:
        message = ("Only the person who filed a request may withdraw it." if exc.code == 50
                   else f"Request {req.number} has already been decided."
                   if "only a pending request" in exc.message.lower() else sentence(exc.message))
        return _detail(ctx, req, 403 if exc.code == 50 else 400, message)
    ctx.session.flash.append(f"Request {req.number} withdrawn.")
    return redirect(f"/requests/{req.number}")


@route("POST", "/requests/(?P<n>[0-9]{1,9})/issue-code", allow=NOT_STUDENT)
def issue_code(ctx):
    req = _load(ctx)
    try:
        out = rc.issue_activation_code(ctx.conn, req.number)
    except rc.RequestError as exc:
        message = (f"You may not hand out the account of request {req.number}. {deciders(ctx, req, {})}"
                   if exc.code in (32, 50) else sentence(exc.message))
        return _detail(ctx, req, 403 if exc.code in (32, 50) else 400, message)
    # POST-redirect-GET: the code is shown once (kept in the session for one GET)
    token = ctx.session.keep_result({"kind": "request-code", **out})
    return redirect(f"/requests/{req.number}/code/{token}")


@route("GET", "/requests/(?P<n>[0-9]{1,9})/code/(?P<token>[A-Za-z0-9_-]+)", allow=NOT_STUDENT)
def issued_code(ctx):
    out = ctx.session.take_result(ctx.params["token"])
    if out is None or out.get("kind") != "request-code" or str(out["number"]) != ctx.params["n"]:
        return ctx.console.render_page(ctx, "code_shown_already.html", number=int(ctx.params["n"]))
    return ctx.console.render_page(ctx, "requests_code.html", out=out)
