"""Sessions and the HTTP surface of the console: cookie flags, a new session id at
sign-in, sign-out ending the session server-side, idle timeout, the sign-in throttle,
security headers, plain-sentence errors."""
import time

import pytest
from ldap3 import Connection, Server

from tests.conftest import SUFFIX
from tests.web.conftest import Console, sign_in

TICKET = "{ROLLCALL-SESSION}"


def session_cookie(page):
    return next(c for c in page.context.cookies() if c["name"] == "rollcall_session")


def test_cookie_flags_and_a_new_session_at_sign_in(console, new_page):
    page = new_page()
    page.goto(console.base + "/signin")
    before = session_cookie(page)
    assert before["secure"] and before["httpOnly"] and before["sameSite"] == "Strict"
    sign_in(page, console, "tnguyen", "demo-subadmin-pw")
    after = session_cookie(page)
    assert after["value"] != before["value"]          # no session fixation
    assert after["secure"] and after["httpOnly"] and after["sameSite"] == "Strict"
    # the script cannot read it
    assert "rollcall_session" not in page.evaluate("document.cookie")


def test_security_headers(console, new_page):
    page = new_page()
    r = page.goto(console.base + "/signin")
    h = r.headers
    assert "default-src 'self'" in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff"
    assert h["cache-control"] == "no-store"
    assert h["strict-transport-security"].startswith("max-age=")


def test_sign_out_ends_the_session_on_the_server(console, new_page, browser):
    page = new_page()
    sign_in(page, console, "tnguyen", "demo-subadmin-pw")
    stolen = session_cookie(page)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    # the old cookie, replayed, is worth nothing
    other = browser.new_context(ignore_https_errors=True)
    try:
        other.add_cookies([stolen])
        p2 = other.new_page()
        p2.goto(console.base + "/students")
        assert "/signin" in p2.url
    finally:
        other.close()


def test_a_session_ticket_binds_as_the_person_only_while_the_session_lives(console, new_page):
    """The console's own connection for a session signed in on another host: a bind
    over loopback with the ticket (prefix + session id), for the live session's DN only."""
    page = new_page()
    sign_in(page, console, "tnguyen", "demo-subadmin-pw")
    sid = session_cookie(page)["value"]
    dn = f"uid=tnguyen,ou=staff,ou=people,{SUFFIX}"

    def bind(name, secret):
        conn = Connection(Server(console.server.url), name, secret)
        ok = conn.bind()
        who = conn.extend.standard.who_am_i() if ok else None
        code = conn.result["result"]
        conn.unbind()
        return ok, code, who

    assert bind(dn, TICKET + sid) == (True, 0, f"dn:{dn}")
    assert bind(dn, TICKET + sid[:-2] + "xx")[:2] == (False, 49)           # a made-up session
    assert bind(f"uid=pwong,ou=staff,ou=people,{SUFFIX}", TICKET + sid)[:2] == (False, 49)  # not its DN
    assert bind(dn, sid)[:2] == (False, 49)                                # the id alone is no password
    # wrong tickets are no failed passwords: more of them than max_failures (5) lock nothing
    for _ in range(6):
        assert bind(dn, TICKET + "x" * 43)[:2] == (False, 49)
    assert bind(dn, "demo-subadmin-pw")[:2] == (True, 0)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    assert bind(dn, TICKET + sid)[:2] == (False, 49)                       # ended


def test_errors_are_plain_sentences(console, new_page):
    page = new_page()
    r = page.goto(console.base + "/no/such/page")
    assert r.status == 404
    assert page.get_by_role("alert").inner_text() == "There is no such page."
    r = page.request.put(console.base + "/signin")
    assert r.status == 405 and "Traceback" not in r.text()
    r = page.goto(console.base + "/students")
    assert "/signin" in page.url    # not signed in: to the sign-in page, then back
    page.get_by_label("Username").fill("tnguyen")
    page.get_by_label("Password", exact=True).fill("demo-subadmin-pw")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/students")


def test_a_disabled_account_cannot_sign_in(console, new_page):
    page = new_page()
    # bcarter: a DISABLED sub-administrator, still in a site group
    sign_in(page, console, "bcarter", "demo-subadmin-pw", expect_ok=False)
    assert page.get_by_role("alert").inner_text() == "The username or password is not correct."


@pytest.fixture(scope="module")
def short_console(tmp_path_factory):
    # the LDAP side drops connections idle for 1 s; console sessions last 3 s idle
    c = Console(tmp_path_factory.mktemp("short"), extra={"limits": {"idle_timeout": 1}},
                session_idle_minutes=0.05, signin_max_failures=3, signin_window=60).start()
    yield c
    c.stop()


def test_session_outlives_the_ldap_idle_timeout(short_console, new_page):
    page = new_page()
    sign_in(page, short_console, "tnguyen", "demo-subadmin-pw")
    time.sleep(2.2)     # longer than limits.idle_timeout, shorter than the session's idle time
    page.goto(short_console.base + "/students?q=smith")
    assert "jsmith" in page.locator("table.list").inner_text()


def test_idle_session_is_signed_out(short_console, new_page):
    page = new_page()
    sign_in(page, short_console, "tnguyen", "demo-subadmin-pw")
    page.goto(short_console.base + "/students")
    assert page.url.endswith("/students")
    time.sleep(3.5)
    page.goto(short_console.base + "/students")
    assert "/signin" in page.url


def test_sign_in_is_throttled_per_address(short_console, new_page):
    page = new_page()
    for _ in range(3):
        sign_in(page, short_console, "jsmith", "wrong-password", expect_ok=False)
        assert page.get_by_role("alert").inner_text() == "The username or password is not correct."
    # even the right password waits now
    sign_in(page, short_console, "jsmith", "demo-student-pw", expect_ok=False)
    assert "Too many failed sign-ins" in page.get_by_role("alert").inner_text()
    assert page.locator("form.signout").count() == 0
