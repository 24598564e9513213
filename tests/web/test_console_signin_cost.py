"""The console's sign-in verifies the password once: the bind that checks it
(LDAPServerFactory.authenticate, with lockout and throttles) is the only argon2 run;
the session's own LDAP connection binds with its session ticket. Counted with the
server's metric of slow verifications, the verified-password cache off (it would hide
a second verification) and on (a second sign-in of the same person costs none)."""
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.web.conftest import Console, sign_in

SLOW = "rollcall_password_verifications_slow_total"


def slow_verifications(url) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == SLOW:
                return s.value
    raise AssertionError(f"no {SLOW} in /metrics")


def console_with_metrics(workdir, cache_seconds):
    port = free_port()
    c = Console(workdir, extra={"metrics": {"listen": f"http://127.0.0.1:{port}"},
                                "passwords": {"scheme": "ARGON2",
                                              "argon2": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1},
                                              "verified_cache_seconds": cache_seconds}})
    c.metrics_url = f"http://127.0.0.1:{port}"
    return c.start()


@pytest.fixture(scope="module")
def uncached(tmp_path_factory):
    c = console_with_metrics(tmp_path_factory.mktemp("signin-uncached"), 0)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    c = console_with_metrics(tmp_path_factory.mktemp("signin-cached"), 300)
    yield c
    c.stop()


def test_a_sign_in_verifies_the_password_once(uncached, new_page):
    before = slow_verifications(uncached.metrics_url)
    page = sign_in(new_page(), uncached, "rjohnson", "demo-subadmin-pw")
    assert slow_verifications(uncached.metrics_url) - before == 1
    # the session works on its ticket-bound connection: another page, as the person
    page.goto(uncached.base + "/password")
    assert page.locator("form.signout").count() == 1
    assert "/signin" not in page.url
    assert slow_verifications(uncached.metrics_url) - before == 1


def test_a_wrong_password_is_still_refused(uncached, new_page):
    page = sign_in(new_page(), uncached, "rjohnson", "not-the-password", expect_ok=False)
    page.wait_for_selector("text=The username or password is not correct.")
    assert "/signin" in page.url


def test_a_second_sign_in_is_served_from_the_cache(cached, new_page):
    sign_in(new_page(), cached, "rjohnson", "demo-subadmin-pw")
    before = slow_verifications(cached.metrics_url)
    sign_in(new_page(), cached, "rjohnson", "demo-subadmin-pw")
    assert slow_verifications(cached.metrics_url) - before == 0
