"""The console's twisted.web resource: routing, sessions, CSRF, headers, errors.

Every request: find the route, find the session (cookie), refuse a POST whose CSRF
token or Origin does not match, check the route's audience, then run the page handler
in the console's thread pool (its LDAP calls block) and write what it returns. Errors
become plain sentences; anything unexpected is logged with a reference the person can
quote, never shown as a stack trace.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import logging
import secrets
import time
from pathlib import Path
from urllib.parse import urlparse

import jinja2
from ldap3.core.exceptions import LDAPException
from twisted.internet import defer, reactor, task
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.web import resource, server

from .. import client
from ..client import ClientError
from ..core.identity import SESSION_TICKET, is_loopback, session_key
from ..district import display
from ..district.photos import PhotoError
from ..store.base import StoreUnavailable
from . import pages  # noqa: F401 - registers the routes
from . import routes
from .forms import Ctx, PageError, Response, SessionEnded, parse_body, redirect, sentence, url
from .session import SESSION_ID, Session, SessionStore, SignInThrottle

log = logging.getLogger("rollcall.web")

HERE = Path(__file__).parent
COOKIE = "rollcall_session"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # passwords and activation codes are shown once: never cached, never restored from history
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=31536000",
}


def local_ldap_url(config) -> tuple[str, str | None]:
    """How the console reaches this same server: its first ldap:// listener on loopback
    (or ldaps://, trusting our own certificate). Returns (url, CA file or None)."""
    web = config.web
    cert = str(config.tls_cert) if config.tls_cert else None
    if web.ldap_url:
        return web.ldap_url, (cert if web.ldap_url.startswith("ldaps") else None)
    ordered = sorted(config.listeners, key=lambda lst: lst.scheme != "ldap")
    lst = ordered[0]
    host = "127.0.0.1" if lst.host in ("0.0.0.0", "", "localhost") else ("::1" if lst.host == "::" else lst.host)
    if ":" in host:
        host = f"[{host}]"
    if lst.scheme == "ldap":
        return f"ldap://{host}:{lst.port}", None
    # our own certificate over loopback: checked against the configured file
    return f"ldaps://{host}:{lst.port}", cert


@jinja2.pass_context
def _site_filter(context, code) -> str:
    """`{{ code|site }}`: "Lincoln Elementary (1234)", from the names read at sign-in."""
    return display.site_label(code, (context.get("site_names") or {}).get(code))


class Console(resource.Resource):
    isLeaf = True

    def __init__(self, factory, config):
        super().__init__()
        self.factory = factory
        self.directory = factory.directory
        self.config = config
        self.web = config.web
        self.suffix = config.suffix
        self.store = self.directory.store
        # a store across the network (PostgreSQL): its queries run in the pool, never here
        self.remote = bool(getattr(self.store, "remote", False))
        self.sessions = SessionStore(self.web.idle_minutes * 60)
        # the store's record of a session is touched at most this often (a write per page
        # would be the busiest write of the district)
        self.touch_every = min(30.0, self.web.idle_minutes * 60 / 4)
        self.throttle = SignInThrottle(self.web.signin_max_failures, self.web.signin_window, self.store)
        self.ldap_url, self.ldap_ca = local_ldap_url(config)
        ldap_host = urlparse(self.ldap_url).hostname or ""
        # a sign-in's connection binds with its session ticket (the password is verified once)
        self.tickets = ldap_host == "localhost" or is_loopback(ldap_host)
        if not self.tickets:
            # the server takes a session ticket from loopback only
            log.warning("the web console reaches the directory at %s, not over loopback: a session signed in "
                        "on another host (or before a lost connection) must sign in again; point web.ldap_url "
                        "at a listener on 127.0.0.1", self.ldap_url)
        self.pool = ThreadPool(1, self.web.threads, name="rollcall-web")
        self.pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", self._shutdown)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=jinja2.select_autoescape(["html"], default=True),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.filters.update(site=_site_filter, date=display.local_date, datetime=display.local_datetime,
                                      reason=display.reason_label, person=display.person_label,
                                      role=display.role_label)
        self.sweeper = task.LoopingCall(self._sweep)
        # with limits.idle_timeout, sweep often enough to keep session connections alive
        interval = min(30, config.idle_timeout / 4) if config.idle_timeout else 30
        self.sweeper.start(max(interval, 0.2), now=False)

    # ------------------------------------------------------------------ the store
    def store_read(self, fn, *args):
        """(reactor) A Deferred of fn(*args), which queries the store: at once on this
        thread for a store on local disk (tens of microseconds, as before), in the pool
        for a remote one (refreshed first, as the LDAP side's reads are)."""
        if not self.remote:
            return defer.maybeDeferred(fn, *args)

        def in_pool():
            self.store.refresh()
            return fn(*args)

        return deferToThreadPool(reactor, self.pool, in_pool)

    def read_now(self, fn, *args):
        """(pool thread) fn(*args) reading the store: here for a remote store, on the
        reactor for a local one (the core's cache is the reactor's)."""
        if self.remote:
            self.store.refresh()
            return fn(*args)
        return blockingCallFromThread(reactor, fn, *args)

    # ------------------------------------------------------------------ LDAP
    def connect(self, dn: str | None = None, password: str | None = None):
        """A new ldap3 connection to this server (directory.client): bound as `dn`, or anonymous."""
        try:
            conn = client.connect(self.ldap_url, dn, password, ca_file=self.ldap_ca, receive_timeout=60)
        except ClientError as exc:
            if exc.kind in ("bind", "input"):
                raise PageError(f"the directory refused the sign-in ({exc.description or exc.message})", 401) \
                    from None
            log.warning("console cannot reach the directory: %s", exc.message)
            raise PageError("The directory could not be reached. Sign in again and retry.", 503) from None
        conn._rollcall_suffix = self.suffix
        return conn

    # ------------------------------------------------------------------ pages
    def render_page(self, ctx, template: str, status: int = 200, **values) -> Response:
        s = ctx.session
        flash = []
        if s is not None:
            flash, s.flash = s.flash, []
        html = self.templates.get_template(template).render(
            session=s, roles=s.roles if s is not None else None, csrf=s.csrf if s is not None else "",
            flash=flash, path=ctx.path, suffix=self.suffix, site_names=s.site_names if s is not None else {},
            **values)
        return Response(status=status, body=html.encode("utf-8"))

    def error_page(self, ctx, message: str, status: int) -> Response:
        try:
            return self.render_page(ctx, "error.html", status=status, message=message)
        except Exception:  # noqa: BLE001 - a broken template must not hide the error
            log.exception("error page")
            body = f"<!doctype html><title>Error</title><p>{jinja2.escape(message)}</p>"
            return Response(status=status, body=body.encode())

    # ------------------------------------------------------------------ HTTP
    def render(self, request):
        d = defer.maybeDeferred(self._dispatch, request)
        d.addErrback(self._failed, request)
        d.addCallback(self._write, request)
        d.addErrback(self._write_failed, request)
        return server.NOT_DONE_YET

    def _write_failed(self, failure, request):
        log.error("writing the response to %s failed: %s", request.path, failure.getTraceback())
        if not request.finished and not getattr(request, "_disconnected", False):
            request.setResponseCode(500)
            request.write(b"Something went wrong on our side; the error was logged.")
            request.finish()

    def _client(self, request) -> str:
        peer = request.getClientAddress()
        return getattr(peer, "host", "") or "unknown"

    def _dispatch(self, request):
        method = request.method.decode("ascii", "replace").upper()
        path = request.path.decode("utf-8", "replace") or "/"
        request._rollcall = ctx = Ctx(method, path, {}, {}, {}, [], None, self._client(request), self)
        if path.startswith("/static/"):
            return self._static(path)
        ctx.query = {k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs]
                     for k, vs in request.args.items()} if method == "GET" else {}
        sid = (request.getCookie(COOKIE.encode()) or b"").decode("ascii", "replace")
        r, params = routes.match(method, path)
        if r is None:
            ctx.session = self.sessions.get(sid)
            if params:
                return self.error_page(ctx, "That page does not take this kind of request.", 405)
            return self.error_page(ctx, "There is no such page.", 404)
        ctx.params = params
        d = self.store_read(self._find_session, sid, ctx)
        if method == "POST":
            # reading and parsing a body (up to max_upload_mb of photos) is no work for
            # the reactor: it happens in the pool, then dispatch goes on here
            headers = {k: request.getHeader(k) or "" for k in ("content-type", "origin", "host")}
            d.addCallback(lambda _: deferToThreadPool(reactor, self.pool, self._read_form, request.content,
                                                      headers, ctx))
            return d.addCallback(lambda refusal: refusal or self._route(r, ctx))
        return d.addCallback(lambda _: self._route(r, ctx))

    def _find_session(self, sid: str, ctx):
        """(store_read) ctx.session from the cookie: this process's cached Session, or one
        rebuilt from the store's record (signed in on another host). A signed-in session
        is checked against its record at every request: ended there (sign-out, idle,
        password changed, on any host) means ended here."""
        if not sid:
            return
        s = self.sessions.get(sid)
        if s is not None and not s.signed_in:
            ctx.session = s  # anonymous: this process's memory only
            return
        key, now = session_key(sid), time.time()
        record = self.store.session_load(key, now)
        if record is None:
            if s is not None:  # ended on another host, or idle too long
                self.sessions.forget(s)
                self.pool.callInThread(s.close)
            elif SESSION_ID.fullmatch(sid):
                # an anonymous session of another host (or of this one before a restart):
                # the same id, so the CSRF token of a form that host served still holds
                ctx.session = self.sessions.new(sid)
            return
        if s is None:
            s = self.sessions.adopt(Session.from_record(sid, record))
        else:
            s.refresh(record)  # another host may have changed it (a password change clears must_change)
        if now - record["last_seen"] >= self.touch_every:
            self.store.session_touch(key, now)
        if self._password_changed(s):
            # changed elsewhere (ldappasswd, an administrator's reset, another browser):
            # the current session ends on every host; the browser gets a fresh anonymous one
            log.info("console session of %s ended: its password changed", s.dn)
            self.end_session(s)
            s = ctx.set_session = self.sessions.new()
            s.flash.append("Your password was changed. Sign in again with the new one.")
        ctx.session = s

    def save_session(self, s):
        """(pool thread) Write a signed-in session's record (sign-in, password change)."""
        self.store.session_save(session_key(s.id), s.record())

    def end_session(self, s):
        """(any thread) Sign-out, password changed, ticket refused: the record goes, so
        every host sees the session ended at its next request."""
        s.ended = True  # nothing may write its record again
        self.sessions.forget(s)
        if s.signed_in:
            self.store.session_delete(session_key(s.id))
        self.pool.callInThread(s.close)

    def ticket_connect(self, s):
        """(pool thread, holding s.lock) The connection of a session this process did not
        sign in (or lost): bound with the session ticket, no password needed."""
        try:
            return self.connect(s.dn, SESSION_TICKET.decode("ascii") + s.id)
        except PageError as exc:
            if exc.status == 401:
                raise SessionEnded() from None
            raise

    def _route(self, r, ctx):
        if ctx.session is None:
            # every page may carry a form: give it a session for the CSRF token
            ctx.session = ctx.set_session = self.sessions.new()
        ctx.session.touch()
        refusal = self._audience_refusal(r, ctx)
        if refusal is not None:
            return refusal
        if r.on_reactor:
            return r.handler(ctx)
        return deferToThreadPool(reactor, self.pool, self._run, r.handler, ctx)

    def _read_form(self, content, headers, ctx):
        """(pool thread) The POST body into ctx.form/ctx.files, its CSRF token and Origin
        checked. Returns an error Response, or None when the request may go on."""
        body = content.read() if content is not None else b""
        if len(body) > self.web.max_upload_mb * 1024 * 1024:
            return self.error_page(ctx, f"That upload is too large (at most {self.web.max_upload_mb} MB).", 413)
        refusal = self._csrf_refusal(headers, ctx, body)
        if refusal:
            log.warning("refused a POST to %s from %s: %s", ctx.path, ctx.client, refusal)
            return self.error_page(ctx, "This form has expired or did not come from this site. "
                                        "Go back, reload the page and try again.", 403)
        return None

    def _csrf_refusal(self, headers, ctx, body) -> str | None:
        origin, host = headers["origin"], headers["host"]
        if origin and origin != "null" and origin.split("://", 1)[-1] != host:
            return f"cross-site Origin {origin}"
        if ctx.session is None:
            return "no session"
        try:
            ctx.form, ctx.files = parse_body(headers["content-type"], body)
        except PageError as exc:
            return exc.message
        token = (ctx.form.get("csrf") or [""])[0]
        if not hmac.compare_digest(token.encode(), ctx.session.csrf.encode()):
            return "missing or wrong CSRF token"
        return None

    def _audience_refusal(self, r, ctx):
        s = ctx.session
        if r.allow == "public":
            return None
        if not s.signed_in:
            return redirect(url("/signin", next=ctx.path if ctx.method == "GET" else ""))
        if s.must_change and ctx.path not in ("/password", "/signout"):
            return redirect("/password")
        if r.allow == "user":
            return None
        predicate, sentence = r.allow
        if not predicate(s.roles):
            return self.error_page(ctx, sentence, 403)
        return None

    def _run(self, handler, ctx):
        """A page handler in the pool: one request at a time per session connection."""
        s = ctx.session
        if s is not None and (s.conn is not None or s.signed_in):
            with s.lock:
                response = self._guarded(handler, ctx)
            s = ctx.session  # (a new one if the page ended the session)
            if s.signed_in and not s.ended and s.flash != s.stored_flash:
                self.save_session(s)  # notices made or shown: every host sees the same ones
            return response
        return self._guarded(handler, ctx)

    def _guarded(self, handler, ctx):
        try:
            return handler(ctx)
        except SessionEnded:
            # the directory refused the session's ticket: ended meanwhile on another host
            log.info("console session of %s ended: its ticket was refused", ctx.session.dn)
            self.end_session(ctx.session)
            ctx.session = ctx.set_session = self.sessions.new()
            return redirect(url("/signin", next=ctx.path if ctx.method == "GET" else ""))
        except PageError as exc:
            return self.error_page(ctx, exc.message, exc.status)
        except ClientError as exc:
            if exc.kind == "connect":
                return self._unreachable(ctx, exc.message)
            status = 403 if exc.code == 50 else 404 if exc.code == 32 else 400
            return self.error_page(ctx, sentence(exc.message), status)
        except PhotoError as exc:
            return self.error_page(ctx, sentence(str(getattr(exc, "message", exc))), 400)
        except LDAPException as exc:
            return self._unreachable(ctx, exc)

    def _unreachable(self, ctx, why):
        log.warning("LDAP error on %s: %s", ctx.path, why)
        if ctx.session is not None and ctx.session.conn is not None:
            # the connection may be gone (server restart): the next request binds a new one
            # with the session's ticket while the session lives in the store
            self.sessions.drop(ctx.session)
        return self.error_page(ctx, "The directory could not be reached. Try again in a moment.", 503)

    def _failed(self, failure, request):
        ctx = getattr(request, "_rollcall", None)
        if failure.check(StoreUnavailable) and ctx is not None:
            log.warning("page %s: the store is unavailable: %s", request.path, failure.getErrorMessage())
            return self.error_page(ctx, "The directory is unavailable for a moment. Try again shortly.", 503)
        ref = secrets.token_hex(4)
        log.error("page %s failed (reference %s): %s", request.path, ref, failure.getTraceback())
        message = f"Something went wrong on our side. The error was logged with reference {ref}."
        if ctx is None:
            return Response(status=500, body=message.encode())
        return self.error_page(ctx, message, 500)

    def _write(self, resp: Response, request):
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(resp.status)
        request.setHeader("Server", "Rollcall")
        for k, v in SECURITY_HEADERS.items():
            request.setHeader(k, v)
        request.setHeader("Content-Type", resp.content_type)
        for k, v in resp.headers.items():
            request.setHeader(k, v)
        ctx = getattr(request, "_rollcall", None)
        if ctx is not None and ctx.clear_session:
            request.addCookie(COOKIE, "", path="/", secure=True, httpOnly=True, sameSite="strict",
                              max_age="0", expires="Thu, 01 Jan 1970 00:00:00 GMT")
        elif ctx is not None and ctx.set_session is not None:
            request.addCookie(COOKIE, ctx.set_session.id, path="/", secure=True, httpOnly=True, sameSite="strict")
        if request.method != b"HEAD":
            request.write(resp.body)
        request.finish()

    def _static(self, path: str) -> Response:
        name = path[len("/static/"):]
        f = (HERE / "static" / name).resolve()
        if not name or "/" in name or f.parent != (HERE / "static").resolve() or not f.is_file():
            return Response(status=404, body=b"not found", content_type="text/plain")
        ctype = STATIC_TYPES.get(f.suffix, "application/octet-stream")
        return Response(body=f.read_bytes(), content_type=ctype, headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------------ sessions
    PASSWORD_STAMP_ATTRS = ("pwdchangedtime", "pwdhistory")

    def password_stamp(self, dn: str):
        """(store_read / read_now) What changes with the person's password, from the directory's cached
        entry: pwdChangedTime and pwdHistory (set by every password change: modify,
        the password modify extended operation, an administrator's reset, activation),
        and a digest of userPassword (the root DN's writes set no pwdChangedTime).
        None for an identity outside the store (the root DN); () for a gone entry."""
        d = self.directory
        try:
            entry = d.lookup(d.normalize_dn(dn))
        except Exception:  # noqa: BLE001 - an unparsable DN has no entry
            entry = None
        if entry is None:
            return None if dn.lower().replace(" ", "") == self.config.root_dn.lower().replace(" ", "") else ()
        policy, hashes = [], []
        for k, v in entry.attrs.items():
            if k.lower() in self.PASSWORD_STAMP_ATTRS:
                policy.append((k.lower(), tuple(sorted(v))))
            elif k.lower() == "userpassword":
                hashes = sorted(v)
        digest = hashlib.sha256(b"\0".join(hashes)).hexdigest()
        # a hash the server will rewrite at the next bind (rehash_on_bind): not a change
        outdated = any(d.needs_rehash(h) for h in hashes)
        # digests, not the values: the stamp is kept in the session's record
        policy_digest = hashlib.sha256(repr(sorted(policy)).encode()).hexdigest()
        return (policy_digest, digest, outdated)

    def _password_changed(self, s) -> bool:
        if s.pwd_stamp is None:
            return False
        now = self.password_stamp(s.dn)
        if now == s.pwd_stamp:
            return False
        if now and s.pwd_stamp and now[0] == s.pwd_stamp[0] and s.pwd_stamp[2] and not now[2]:
            # only userPassword changed, from an outdated hash to a current one, with no
            # password change recorded: the rehash after a bind
            s.pwd_stamp = now
            return False
        return True

    def start_session(self, old=None):
        """A new session id after sign-in (the pre-sign-in id is discarded)."""
        if old is not None:
            self.sessions.drop(old)
        s = self.sessions.new()
        s.csrf = secrets.token_urlsafe(32)  # its own, kept in its record (not derived from the id)
        return s

    def _sweep(self):
        gone = self.sessions.expired()
        if gone:
            self.pool.callInThread(lambda: [s.close() for s in gone])
        # records idle too long, whichever host made them (a bounded batch)
        self.store_read(self.store.session_prune).addErrback(
            lambda f: log.warning("pruning console sessions failed: %s", f.getErrorMessage()))
        idle = self.config.idle_timeout
        if idle:
            # the LDAP side closes idle connections (limits.idle_timeout): keep the
            # signed-in sessions' connections alive while the sessions are
            stale = [s for s in self.sessions.all() if s.conn is not None and s.idle_for() > idle / 4]
            if stale:
                self.pool.callInThread(self._keep_alive, stale)

    @staticmethod
    def _keep_alive(sessions):
        for s in sessions:
            if s.lock.acquire(blocking=False):
                try:
                    if s.conn is not None:
                        s.conn.extend.standard.who_am_i()
                except LDAPException:
                    pass
                finally:
                    s.lock.release()

    def _shutdown(self):
        for s in self.sessions.all():
            s.close()
        self.pool.stop()


class ConsoleRequest(server.Request):
    """A request whose body may not pass the site's `max_body` bytes: a Content-Length
    over it is answered 413 before any of the body is read, and a chunked (or lying)
    body is cut off with a 413 as soon as it passes the limit. The rest of an oversized
    body is discarded as it arrives and the connection is closed; the page is never run."""

    refused = False
    received = 0

    def _limit(self) -> int:
        return self.channel.site.max_body

    def gotLength(self, length):
        if length is not None and length > self._limit():
            self._refuse(f"Content-Length {length}")
            self.content = io.BytesIO()
            return
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self.refused:
            return
        self.received += len(data)
        if self.received > self._limit():
            self._refuse(f"more than {self._limit()} bytes")
            self.content.close()
            self.content = io.BytesIO()
            return
        super().handleContentChunk(data)

    def _refuse(self, why: str):
        self.refused = True
        mb = self._limit() // (1024 * 1024)
        log.warning("refused a request body to %s: %s (web.max_upload_mb is %d)",
                    (getattr(self.channel, "_path", None) or b"?").split(b"?", 1)[0].decode("utf-8", "replace"),
                    why, mb)
        body = f"That upload is too large (at most {mb} MB).\n".encode()
        self.channel.persistent = False
        self.channel.transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"X-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        transport = self.channel.transport
        self.channel.loseConnection()
        # TLS waits for the client's close_notify, which a client still sending never
        # sends: stop reading (the client's sends block) and cut the connection shortly
        transport.pauseProducing()
        reactor.callLater(1.0, _abort, transport)

    def requestReceived(self, command, path, version):
        if self.refused:
            return  # answered already; the connection is closing
        super().requestReceived(command, path, version)


def _abort(transport):
    if getattr(transport, "connected", True) and not getattr(transport, "disconnected", False):
        try:
            transport.abortConnection()
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass


class ConsoleSite(server.Site):
    requestFactory = ConsoleRequest
    max_body = 50 * 1024 * 1024

    def log(self, request):
        # one line per request without query strings (they may carry district IDs)
        log.debug("%s %s %d", request.method.decode(), request.path.decode("utf-8", "replace"), request.code)


def listen(factory, config):
    """Open the console's HTTPS listener; returns the port."""
    u = urlparse(config.web.listen)
    console = Console(factory, config)
    site = ConsoleSite(console)
    site.max_body = config.web.max_upload_mb * 1024 * 1024
    site.displayTracebacks = False
    host = u.hostname or "127.0.0.1"
    if u.scheme == "https":
        port = reactor.listenSSL(u.port or 443, site, factory.tls_context, interface=host)
    else:
        port = reactor.listenTCP(u.port or 80, site, interface=host)
    log.info("web console on %s://%s:%d", u.scheme, host, port.getHost().port)
    return port
