"""The web console on two frontends, A and B, on two test hosts over one PostgreSQL:
a browser signed in on A may land on B (the same person, pages that act work there);
signing out, or a password change, on one host ends the session on the other; failed
sign-ins on both hosts count towards one throttle; a generated password is never in
the database. A plain HTTP client with its cookie and the console's CSRF form tokens,
as a browser behind a load balancer would send them."""
import html
import http.client
import re
import ssl
import time
from urllib.parse import urlencode

import psycopg
import pytest
import yaml
from ldap3 import Connection, Server

from directory.district.display import DEACTIVATION_REASONS
from tests.conftest import free_port
from tests.protocol.district import make_server, password, staff

from .conftest import tcp_conninfo

COOKIE = "rollcall_session"
DEACTIVATION_REASON = next(iter(DEACTIVATION_REASONS))
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """Requests to one host's console with the session cookie given (no redirects followed)."""

    def __init__(self, host, port, sid=""):
        self.host, self.port, self.sid = host, port, sid
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE  # the test server's self-signed certificate

    def request(self, method, path, form=None):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.tls, timeout=60)
        headers = {"Cookie": f"{COOKIE}={self.sid}"} if self.sid else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8")
        finally:
            conn.close()
        for value in resp.headers.get_all("Set-Cookie") or []:
            m = re.match(rf"{COOKIE}=([^;]*)", value)
            if m:
                self.sid = m.group(1)
        return resp.status, resp.headers.get("Location", ""), text

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, form, csrf_from):
        """A POST with the CSRF token of the form on the page `csrf_from`."""
        status, _, page = self.get(csrf_from)
        assert status == 200, (csrf_from, status, page[:500])
        token = CSRF.search(page).group(1)
        return self.request("POST", path, dict(form, csrf=token))

    def sign_in(self, username, secret):
        status, location, page = self.post("/signin", {"username": username, "password": secret, "next": "/"},
                                           "/signin")
        return status, location, page


def on(host_browser, sid):
    """The same browser (cookie) on another host."""
    return Browser(host_browser.host, host_browser.port, sid)


@pytest.fixture
def consoles(tmp_path, network, db_server):
    """Servers A and B with the web console on their host's address; each console
    reaches its own server over the host's loopback (as in production), where the
    session ticket is accepted."""
    dsn = db_server.create_database("web")
    dbname = dsn.rsplit("dbname=", 1)[1]
    store = {"backend": "postgresql", "conninfo": tcp_conninfo(db_server, dbname, network.gateway)}
    servers = []
    try:
        for name, host, load in (("a", network.a, True), ("b", network.b, False)):
            (tmp_path / name).mkdir()
            srv = make_server(tmp_path / name, load=load, start=False, host=host.address, netns=host.netns,
                              store=store)
            loopback, web_port = free_port(), free_port()
            cfg = yaml.safe_load(srv.config_path.read_text())
            cfg["listeners"].append(f"ldap://127.0.0.1:{loopback}")
            cfg["web"] = {"listen": f"https://{host.address}:{web_port}", "ldap_url": f"ldap://127.0.0.1:{loopback}",
                          "signin_max_failures": 2, "signin_window": 300}
            srv.config_path.write_text(yaml.safe_dump(cfg))
            srv.start()
            srv.browser = Browser(host.address, web_port)
            servers.append(srv)
        wait_console(servers)
        yield servers[0], servers[1], dsn
    finally:
        for srv in servers:
            srv.stop()


def wait_console(servers):
    for srv in servers:
        for _ in range(100):
            try:
                srv.browser.get("/static/console.css")
                break
            except OSError:
                time.sleep(0.1)


def signed_in_as(page, name):
    return "Sign out" in page and name in page


def test_a_session_signed_in_on_a_is_used_signed_out_and_ended_on_b(consoles):
    a, b, dsn = consoles
    on_a = Browser(a.browser.host, a.browser.port)
    status, location, _ = on_a.sign_in("admin1", password("admin1"))
    assert status in (302, 303) and location == "/", (status, location)
    sid = on_a.sid

    # B never saw this browser: the same person, and a page that acts (a student search
    # through B's own LDAP connection, bound with the session ticket)
    on_b = on(b.browser, sid)
    status, _, page = on_b.get("/students?q=reset1")
    assert status == 200, page[:2000]
    assert "/students/reset1" in page, page[:4000]
    assert on_b.sid == sid, "B gave the browser another session"

    # a reset's generated password: shown on the page after it on B only, never stored
    status, location, page = on_b.post("/students/reset1/reset", {"confirmed": "yes"}, "/students/reset1/reset")
    assert status in (302, 303) and "/reset/" in location, (status, page[:2000])
    status, _, elsewhere = on(a.browser, sid).get(location)
    assert status == 200 and "only by the server that made it" in " ".join(html.unescape(elsewhere).split())
    status, _, page = on_b.get(location)
    secret = html.unescape(re.search(r'id="new-password">([^<]+)<', page).group(1))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT key, dn, data FROM web_session").fetchall()
    assert rows and all(secret not in r[2] and sid not in r[0] + r[2] for r in rows)
    assert password("admin1") not in repr(rows)

    # the ticket is accepted from the host's own loopback only: from elsewhere it is a wrong password
    ticket = Connection(Server(a.url), staff("admin1"), "{ROLLCALL-SESSION}" + sid)
    assert not ticket.bind() and ticket.result["result"] == 49

    # signed out on B: refused on A at its next request (A has the session cached)
    status, _, page = on(a.browser, sid).get("/students?q=reset1")
    assert status == 200
    status, location, _ = on_b.post("/signout", {}, "/")
    assert location.startswith("/signin")
    status, location, _ = on(a.browser, sid).get("/students?q=reset1")
    assert status in (302, 303) and location.startswith("/signin"), (status, location)


def test_a_password_changed_on_a_ends_the_session_on_b(consoles):
    a, b, _dsn = consoles
    # one browser signed in on A and used on B (B holds its connection) …
    first = Browser(a.browser.host, a.browser.port)
    first.sign_in("admin12", password("admin12"))
    status, _, page = on(b.browser, first.sid).get("/students?q=reset1")
    assert status == 200 and "Sign out" in page
    # … and another browser of the same person changes the password on A
    second = Browser(a.browser.host, a.browser.port)
    second.sign_in("admin12", password("admin12"))
    on(b.browser, second.sid).get("/")  # B has this one cached too
    new = "Tr0ub4dor-horse-77"
    status, _, page = second.post("/password", {"current": password("admin12"), "new": new, "again": new},
                                  "/password")
    assert status == 200 and 'class="error"' not in page, page[:3000]
    # the first session ends on B at its next request (and so on A)
    on_b = on(b.browser, first.sid)
    status, location, _ = on_b.get("/students?q=reset1")
    assert status in (302, 303) and location.startswith("/signin"), (status, location)
    assert on_b.sid != first.sid
    status, location, _ = on(a.browser, first.sid).get("/students?q=reset1")
    assert status in (302, 303) and location.startswith("/signin"), (status, location)
    # the session that made the change goes on, on both hosts
    for host in (a, b):
        status, _, page = on(host.browser, second.sid).get("/students?q=reset1")
        assert status == 200 and "Sign out" in page and "/students/reset1" in page


def test_the_sign_in_form_of_one_host_may_be_posted_to_the_other(consoles):
    a, b, _dsn = consoles
    on_a = Browser(a.browser.host, a.browser.port)
    status, _, page = on_a.get("/signin")
    token = CSRF.search(page).group(1)
    on_b = on(b.browser, on_a.sid)  # the load balancer sends the POST to B
    status, location, page = on_b.request("POST", "/signin", {"username": "admin1", "password": password("admin1"),
                                                               "next": "/", "csrf": token})
    assert (status, location) == (303, "/") or status in (302, 303), (status, page[:2000])
    assert on_b.sid != on_a.sid  # a new id at sign-in, as on one host
    status, _, page = on(a.browser, on_b.sid).get("/")
    assert status == 200 and "Sign out" in page
    # a made-up token is still refused
    stranger = Browser(b.browser.host, b.browser.port, on_a.sid)
    status, _, _ = stranger.request("POST", "/signin", {"username": "admin1", "password": password("admin1"),
                                                        "next": "/", "csrf": token[:-2] + "xx"})
    assert status == 403


def test_failed_signins_on_both_hosts_count_towards_one_throttle(consoles):
    a, b, _dsn = consoles
    on_a, on_b = Browser(a.browser.host, a.browser.port), Browser(b.browser.host, b.browser.port)
    for browser in (on_a, on_b):  # signin_max_failures is 2
        status, _, page = browser.sign_in("teach1", "not-the-password")
        assert status == 200 and "not correct" in page
    status, _, page = on_a.sign_in("teach1", password("teach1"))
    assert status == 429 and "Too many failed sign-ins" in page
    status, _, page = on_b.sign_in("teach1", password("teach1"))
    assert status == 429


def test_a_notice_made_on_a_is_shown_once_on_b(consoles):
    """POST-redirect-GET across hosts: the deactivation's notice, made by A, shows on
    the page B serves after the redirect, and only there."""
    a, b, _ = consoles
    on_a = Browser(a.browser.host, a.browser.port)
    status, _, _ = on_a.sign_in("admin1", password("admin1"))
    assert status in (302, 303)
    status, location, page = on_a.post("/students/s1/deactivate", {
        "reason": DEACTIVATION_REASON, "reference": "FORM-2026-17", "confirmed": "yes"}, "/students/s1/deactivate")
    assert status in (302, 303), page[:2000]
    on_b = on(b.browser, on_a.sid)
    status, _, page = on_b.get(location)
    assert status == 200 and "is now deactivated." in html.unescape(page), page[:3000]
    status, _, page = on_a.get(location)  # shown once: not again, on either host
    assert status == 200 and "is now deactivated." not in html.unescape(page)
