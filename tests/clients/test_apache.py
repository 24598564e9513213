"""contrib/clients/apache-authnz-ldap.conf run by a real Apache (issue 20, item 5):
search-then-bind as the SSO service account over STARTTLS with the server's certificate,
`Require ldap-group` on a site role group. Only the server's address, certificate file
and the service password are replaced."""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.protocol.district import make_server, password
from tests.protocol.test_sso_front_end import APACHE, MODULES, httpd_base, login, running_apache

SNIPPET = ROOT / "contrib" / "clients" / "apache-authnz-ldap.conf"


def snippet(port: int, cacert: Path) -> str:
    text = SNIPPET.read_text()
    for pattern, repl in ((r"(LDAPTrustedGlobalCert CA_BASE64) \S+", rf"\1 {cacert}"),
                          (r"ldap://ldap\.district\.example:389/", f"ldap://127.0.0.1:{port}/"),
                          (r'AuthLDAPBindPassword "CHANGE-ME"', f'AuthLDAPBindPassword "{password("sso-portal")}"')):
        text, n = re.subn(pattern, repl, text)
        assert n == 1, pattern
    return text


@pytest.fixture(scope="module")
def apache(tmp_path_factory):
    if MODULES is None or not Path(APACHE).exists():
        pytest.skip("apache2 with mod_authnz_ldap is not installed (scripts/test installs apache2-bin)")
    srv = make_server(tmp_path_factory.mktemp("apache-contrib"))
    root = Path(tempfile.mkdtemp(prefix="rollcall-apache-contrib-"))
    os.chmod(root, 0o755)
    (root / "htdocs" / "principals").mkdir(parents=True)
    (root / "htdocs" / "principals" / "index.html").write_text("principals only\n")
    for p in (root / "htdocs", root / "htdocs" / "principals"):
        os.chmod(p, 0o755)
    os.chmod(root / "htdocs" / "principals" / "index.html", 0o644)
    shutil.copy(srv.ca_file, root / "ca.pem")
    os.chmod(root / "ca.pem", 0o644)
    (root / "rollcall.conf").write_text(snippet(srv.port, root / "ca.pem"))
    port = free_port()
    (root / "httpd.conf").write_text(httpd_base(root, port) + f'Include "{root}/rollcall.conf"\n')
    check = subprocess.run([APACHE, "-t", "-f", str(root / "httpd.conf")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    try:
        with running_apache(root / "httpd.conf", port, root / "error.log"):
            yield f"http://127.0.0.1:{port}/principals/index.html", root
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_principal_of_the_site_signs_in(apache):
    url, root = apache
    assert login(url, "principal1", password("principal1")) == 200, (root / "error.log").read_text()[-3000:]


@pytest.mark.parametrize("uid, pw", [("principal1", "Wrong-pw-2025!"), ("teach1", password("teach1")),
                                     ("s1", password("s1")), ("sD", password("sD")), ("sP", password("sP")),
                                     ("sso-portal", password("sso-portal"))])
def test_others_are_refused(apache, uid, pw):
    url, root = apache
    assert login(url, uid, pw) == 401, (root / "error.log").read_text()[-3000:]
