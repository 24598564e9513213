"""A console session ends when the person's password changes elsewhere: ldappasswd
(the password modify extended operation), an administrator's reset, or the person's
own change in another browser. The session that made the change goes on."""
import pytest
from ldap3 import MODIFY_REPLACE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX
from tests.web.conftest import Console, sign_in

RJOHNSON = f"uid=rjohnson,ou=staff,ou=people,{SUFFIX}"
KPATEL = f"uid=kpatel,ou=staff,ou=people,{SUFFIX}"


@pytest.fixture(scope="module")
def pw_console(tmp_path_factory):
    c = Console(tmp_path_factory.mktemp("pwchange")).start()
    yield c
    c.stop()


def signed_in(page, console) -> bool:
    page.goto(console.base + "/password")
    return "/signin" not in page.url


def test_password_modify_elsewhere_ends_the_session(pw_console, new_page):
    page = sign_in(new_page(), pw_console, "rjohnson", "demo-subadmin-pw")
    assert signed_in(page, pw_console)
    # ldappasswd, as the person, over LDAP
    c = Connection(Server(pw_console.server.url), RJOHNSON, "demo-subadmin-pw", auto_bind=True)
    assert c.extend.standard.modify_password(RJOHNSON, "demo-subadmin-pw", "Changed-elsewhere-1")
    c.unbind()
    page.goto(pw_console.base + "/students")
    assert "/signin" in page.url
    assert "Your password was changed" in page.content()
    # the old cookie stays worthless; the new password signs in
    assert not signed_in(page, pw_console)
    sign_in(page, pw_console, "rjohnson", "Changed-elsewhere-1")
    assert signed_in(page, pw_console)


def test_an_administrators_reset_ends_the_session(pw_console, new_page):
    page = sign_in(new_page(), pw_console, "kpatel", "demo-designee-pw")
    assert signed_in(page, pw_console)
    root = Connection(Server(pw_console.server.url), ROOT_DN, ROOT_PW, auto_bind=True)
    assert root.modify(KPATEL, {"userPassword": [(MODIFY_REPLACE, ["Reset-by-admin-2"])]}), root.result
    root.unbind()
    page.goto(pw_console.base + "/photos")
    assert "/signin" in page.url


def test_own_change_keeps_this_session_and_ends_the_others(pw_console, new_page):
    mine, other = new_page(), new_page()
    sign_in(mine, pw_console, "tnguyen", "demo-subadmin-pw")
    sign_in(other, pw_console, "tnguyen", "demo-subadmin-pw")
    mine.goto(pw_console.base + "/password")
    mine.get_by_label("Current password").fill("demo-subadmin-pw")
    mine.get_by_label("New password", exact=True).fill("Brand-new-pass-3")
    mine.get_by_label("New password again").fill("Brand-new-pass-3")
    mine.get_by_role("button", name="Change password").click()
    mine.wait_for_load_state()
    assert "changed" in mine.content().lower()
    mine.goto(pw_console.base + "/students")
    assert "/students" in mine.url and "/signin" not in mine.url
    other.goto(pw_console.base + "/students")
    assert "/signin" in other.url
