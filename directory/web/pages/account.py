"""Signing in and out, the home page, changing one's password, activating an account."""
from __future__ import annotations

import json
import logging
import unicodedata
from urllib.parse import unquote

from ldap3 import BASE, SUBTREE
from twisted.internet import reactor
from twisted.internet.threads import deferToThreadPool

from ... import admin, client
from ...core.accounts import accounts_of
from ...core.directory import Identity
from ...core.dn import escape_value as escape_rdn_value
from ...core.errors import LDAPError, ResultCode
from ...core.identity import SESSION_TICKET, session_key
from ...district import display
from ..forms import redirect
from ..routes import route
from ..session import Roles

log = logging.getLogger("rollcall.web")

PEOPLE_OUS = ("students", "staff", "nonemployees")
SIGNIN_FAILED = "The username or password is not correct."
SITE_ROLES = {"student-email-admins": "subadmin_sites", "principals": "principal_sites",
              "photo-designees": "designee_sites", "photo-vendors": "vendor_sites"}


def safe_next(value: str) -> str:
    """Only an absolute path of this site may follow a sign-in, else "/". Refused: a
    scheme or host (`https://x`, `//x`, `javascript:`), backslashes (browsers read
    them as slashes), non-ASCII, and control characters or whitespace, all judged after
    percent-decoding (repeatedly) so that `/%09/evil` or `/%2F/evil` do not pass."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2000:
        return "/"
    if not all(0x21 <= ord(c) < 0x7F for c in value):  # as sent: printable ASCII only
        return "/"
    decoded = _unquoted(value)
    path = value.split("?", 1)[0]
    for v in (path, _unquoted(path)):
        if not v.startswith("/") or v.startswith("//") or "\\" in v:
            return "/"
        if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in v):
            return "/"
    # the query may hold an encoded space (a search), never a control character or a backslash
    if "\\" in decoded or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in decoded):
        return "/"
    return value


def _unquoted(value: str) -> str:
    seen = set()
    while value not in seen:  # %252F -> %2F -> /
        seen.add(value)
        value = unquote(value)
    return value


@route("GET", "/", allow="public")
def home(ctx):
    if not ctx.session.signed_in:
        return ctx.console.render_page(ctx, "welcome.html")
    return ctx.console.render_page(ctx, "home.html")


@route("GET", "/signin", allow="public")
def signin_form(ctx):
    if ctx.session.signed_in:
        return redirect("/")
    return ctx.console.render_page(ctx, "signin.html", next=safe_next(ctx.arg("next", "/")), username="", error="")


def resolve_login(console, login: str) -> str | None:
    """The DN a sign-in name stands for: a username under ou=people (students, staff,
    non-employees), or a full DN. Looked up in the core (an index read; console.store_read:
    on the reactor for a local store, in the pool for a remote one)."""
    d = console.directory
    if "=" in login:
        return login
    for ou in PEOPLE_OUS:
        dn = f"uid={escape_rdn_value(login)},ou={ou},ou=people,{console.suffix}"
        try:
            if d.lookup(d.normalize_dn(dn)) is not None:
                return dn
        except LDAPError:
            return None
    return None


@route("POST", "/signin", allow="public", on_reactor=True)
def signin(ctx):
    console = ctx.console
    login = ctx.arg("username").strip()
    password = ctx.arg("password")
    nxt = safe_next(ctx.arg("next", "/"))

    def again(message, status=200):
        return console.render_page(ctx, "signin.html", status=status, next=nxt, username=login, error=message)

    if not login or not password:
        return again("Enter your username and your password.")
    user_key = "user:" + login.lower()

    def look_up():
        if console.throttle.blocked(ctx.client, user_key):
            return None
        return resolve_login(console, login) or f"uid={escape_rdn_value(login)},ou=people,{console.suffix}"

    def authenticate(dn):
        if dn is None:
            return again("Too many failed sign-ins. Wait a few minutes and try again.", 429)
        d = console.factory.authenticate(dn, password.encode("utf-8"), ctx.client, f"{ctx.client}:web", True)
        return d.addCallbacks(bound, refused)

    def bound(ident):
        # before the session's own bind (a rehash after it is no change of password)
        d = console.store_read(console.password_stamp, ident.dn)
        return d.addCallback(lambda stamp: deferToThreadPool(reactor, console.pool, _open_session, ctx, ident,
                                                             password, nxt, stamp))

    def refused(f):
        f.trap(LDAPError)
        log.info("console sign-in refused for %r from %s", login, ctx.client)
        d = console.store_read(console.throttle.failed, ctx.client, user_key)
        if f.value.code == ResultCode.UNWILLING_TO_PERFORM:
            return d.addCallback(lambda _: again("Too many failed sign-ins from your address. "
                                                 "Wait a few minutes and try again.", 429))
        return d.addCallback(lambda _: again(SIGNIN_FAILED))

    return console.store_read(look_up).addCallback(authenticate)


def _open_session(ctx, ident, password, nxt, stamp=None):
    """The password was verified once, by factory.authenticate: the session's own LDAP
    connection binds with the session ticket (its record saved first), not with the
    password again (a second argon2 run made every sign-in twice as slow). Only when
    the console reaches the directory other than over loopback (web.ldap_url), where a
    ticket is refused, does it bind with the password."""
    console = ctx.console
    old = ctx.session
    s = console.start_session(old)
    s.dn = ident.dn
    s.pwd_stamp = stamp
    s.must_change = ident.restricted
    saved = False
    try:
        if console.tickets:
            s.uid = display.person_label(s.dn)
            console.save_session(s)  # the ticket's proof; every host knows the session from now on
            saved = True
            s.conn = console.connect(s.dn, SESSION_TICKET.decode("ascii") + s.id)
        else:
            s.conn = console.connect(ident.dn, password)
        read_roles(console, s)
        console.save_session(s)  # with the name and roles
    except Exception:
        s.ended = True
        s.close()
        console.sessions.drop(s)
        if saved:
            try:
                console.store.session_delete(session_key(s.id))
            except Exception:  # noqa: BLE001 - the sign-in's own error is the one to report
                log.warning("console sign-in of %s: its session record could not be removed", ident.dn)
        raise
    console.throttle.succeeded("user:" + (s.uid or ident.dn).lower())
    ctx.session = ctx.set_session = s
    return redirect("/password" if s.must_change else nxt)


def read_roles(console, s):
    """Name, username and what the console offers, from the person's own entry."""
    conn, suffix = s.conn, console.suffix
    r = s.roles
    low = s.dn.lower().replace(" ", "")
    if low == console.config.root_dn.lower().replace(" ", ""):
        r.kind, r.district_admin, s.name = "root", True, "Directory manager"
        s.site_names = admin.site_names(conn)
        return
    for kind, ou in (("student", "ou=students"), ("staff", "ou=staff"), ("nonemployee", "ou=nonemployees"),
                     ("service", "ou=services")):
        if f",{ou}," in low:
            r.kind = kind
    # until a reset password is changed the connection may read nothing (not even the
    # person's own entry): the username comes from the DN, the rest once it is changed
    s.uid = s.uid or display.person_label(s.dn)
    conn.search(s.dn, "(objectClass=*)", BASE, attributes=["cn", "uid", "memberOf"])
    entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    if not entries:
        return
    s.site_names = admin.site_names(conn)
    a = entries[0]["raw_attributes"]
    s.name = admin._raw(a, "cn")
    s.uid = admin._raw(a, "uid")
    groups = [g.lower().replace(" ", "") for g in admin._raw_all(a, "memberOf")]
    sites = f",ou=sites,{suffix}".lower().replace(" ", "")
    for g in groups:
        if g == f"cn=district-admins,ou=groups,{suffix}".lower().replace(" ", ""):
            r.district_admin = True
        if g.endswith(sites) and g.startswith("cn="):
            role, _, code = g[len("cn="):-len(sites)].partition(",ou=")
            if role in SITE_ROLES and code:
                getattr(r, SITE_ROLES[role]).append(code)
    for attr in SITE_ROLES.values():
        getattr(r, attr).sort()
    # application approvers: groups named by an application's rollcallApprovers
    for _dn, attrs in client.paged_search(conn, f"ou=groups,{suffix}", "(objectClass=rollcallApplication)",
                                          ["rollcallApprovers"], SUBTREE, absent_ok=True):
        for g in admin._raw_all(attrs, "rollcallApprovers"):
            if g.lower().replace(" ", "") in groups:
                r.approver_groups.append(g)


@route("POST", "/signout", allow="public")
def signout(ctx):
    if ctx.session is not None:
        ctx.console.end_session(ctx.session)  # on every host
    ctx.clear_session = True
    return redirect("/signin")


@route("GET", "/password")
def password_form(ctx):
    return ctx.console.render_page(ctx, "password.html", error="", done=False)


@route("POST", "/password")
def password_change(ctx):
    old, new, again = ctx.arg("current"), ctx.arg("new"), ctx.arg("again")
    if not old or not new:
        error = "Enter your current password and a new one."
    elif new != again:
        error = "The two new passwords are not the same."
    else:
        s, console = ctx.session, ctx.console
        conn = ctx.conn
        # no check while the current session changes it, here or on another host
        stamp, s.pwd_stamp = s.pwd_stamp, None
        console.save_session(s)
        try:
            admin.change_password(conn, old, new)
        except admin.AdminError as exc:
            s.pwd_stamp = stamp
            console.save_session(s)
            error = _password_refusal(exc)
        else:
            s.must_change = False
            # the connection's identity was restricted until now: bind again with the new password
            s.close()
            s.conn = console.connect(s.dn, new)
            # this change is the session's own: it goes on with the new password's stamp
            s.pwd_stamp = console.read_now(console.password_stamp, s.dn)
            # the restricted connection could not read the person's name and roles: now it can
            s.roles = Roles()
            read_roles(console, s)
            console.save_session(s)
            return ctx.console.render_page(ctx, "password.html", error="", done=True)
    return ctx.console.render_page(ctx, "password.html", status=400, error=error, done=False)


def _password_refusal(exc) -> str:
    m = exc.message or ""
    if exc.code == ResultCode.INVALID_CREDENTIALS or "old password" in m.lower():
        return "Your current password is not correct."
    return m[0].upper() + m[1:] if m else "The directory refused the new password."


# ---------------------------------------------------------------------- activation
@route("GET", "/activate", allow="public")
def activate_form(ctx):
    return ctx.console.render_page(ctx, "activate.html", username=ctx.arg("username"), error="", done=None)


@route("POST", "/activate", allow="public", on_reactor=True)
def activate(ctx):
    """Self-service activation of a PENDING account with its one-time code. Runs the
    account overlay in the core's writer thread with the browser's address (so its
    per-address limit counts this browser, not the console)."""
    console = ctx.console
    uid, code = ctx.arg("username").strip(), ctx.arg("code").strip()
    new, again = ctx.arg("new"), ctx.arg("again")

    def form(error, status=400, done=None):
        return console.render_page(ctx, "activate.html", status=status, username=uid, error=error, done=done)

    if not uid or not code or not new:
        return form("Enter your username, your activation code and a new password.")
    if new != again:
        return form("The two new passwords are not the same.")
    key = "activate:" + uid.lower()
    return console.store_read(console.throttle.blocked, ctx.client, key).addCallback(
        _activate, ctx, form, uid, code, new, key)


def _activate(blocked, ctx, form, uid, code, new, key):
    console = ctx.console
    if blocked:
        return form("Too many failed attempts. Wait a few minutes and try again.", 429)
    ident = Identity(peer=f"{ctx.client}:web", tls=True)
    value = json.dumps({"action": "activate", "uid": uid, "code": code, "newPassword": new}).encode()
    d = deferToThreadPool(reactor, console.factory.change_pool, accounts_of(console.directory).extended,
                          ident, value)

    def ok(out):
        answer = json.loads(out.decode("utf-8")) if isinstance(out, bytes) else out
        return form("", 200, done=answer.get("uid") or uid)

    def refused(f):
        f.trap(LDAPError)
        m = f.value.message or "activation failed"
        return console.store_read(console.throttle.failed, ctx.client, key).addCallback(
            lambda _: form(m[0].upper() + m[1:].rstrip(".") + "."))

    return d.addCallbacks(ok, refused)
