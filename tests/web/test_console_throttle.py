"""The console's sign-in throttle is kept in the store's throttle file: a restart of
the server does not forget the failed sign-ins within the window."""
from tests.web.conftest import Console, sign_in


def test_sign_in_throttle_survives_a_restart(tmp_path, new_page):
    console = Console(tmp_path, signin_max_failures=3, signin_window=60).start()
    try:
        page = new_page()
        for _ in range(3):
            sign_in(page, console, "jsmith", "wrong-password", expect_ok=False)
            assert page.get_by_role("alert").inner_text() == "The username or password is not correct."
        console.stop()
        console.start()
        page = new_page()
        sign_in(page, console, "jsmith", "demo-student-pw", expect_ok=False)
        assert "Too many failed sign-ins" in page.get_by_role("alert").inner_text()
        assert page.locator("form.signout").count() == 0
    finally:
        console.stop()
