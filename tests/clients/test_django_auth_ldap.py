"""contrib/clients/django_auth_ldap_settings.py with real Django and django-auth-ldap
(python-ldap) against a real server over STARTTLS (issue 20, item 5)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.protocol.district import make_server, password

django_auth_ldap = pytest.importorskip("django_auth_ldap", reason="pip install django django-auth-ldap")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("django"))
    yield srv
    srv.stop()


def test_contrib_settings_sign_people_in(srv):
    logins = [("principal1", password("principal1")), ("teach1", password("teach1")), ("s1", password("s1")),
              ("s1", "Wrong-pw-2025!"), ("sD", password("sD")), ("sso-portal", password("sso-portal"))]
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "clients" / "django_login.py"),
                          str(ROOT / "contrib" / "clients" / "django_auth_ldap_settings.py"), srv.url,
                          str(srv.ca_file), password("sso-portal"), *(f"{u}:{p}" for u, p in logins)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    principal, teacher, s1, wrong, disabled, service = got
    assert principal["username"] == "principal1" and principal["is_staff"] is True, got
    assert teacher["username"] == "teach1" and teacher["is_staff"] is False, got
    assert s1["username"] == "s1" and s1["email"], got
    assert wrong is None and disabled is None and service is None, got
