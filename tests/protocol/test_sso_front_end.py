"""Many users behind one SSO front end (security issue, item 10): fifty mistyped
passwords for fifty students arriving from the SSO server's address used to make the
server refuse every bind from that address, the SSO's service account included, so
every login of the district failed (HTTP 500 from Apache's mod_authnz_ldap).

The district server trusts 127.0.0.1 (`password_policy.trusted_sources`), the front
end; other loopback addresses (127.0.0.2, …: the client binds its socket to them) are
unknown addresses. First over ldap3, then through a real SSO client: Apache httpd with
mod_authnz_ldap on a loopback port, bound as the SSO service account, driven with HTTP
basic authentication."""
import base64
from contextlib import contextmanager
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ldap3 import BASE, MODIFY_DELETE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, free_port, stop_process, wait_port
from tests.protocol.district import PEOPLE, crowd_ldif, make_server, password, service, student

SUCCESS, INVALID_CREDENTIALS, UNWILLING = 0, 49, 53
FRONT_END = "127.0.0.1"
ADMIN_HOST = "127.0.0.9"  # where the root DN's own checks bind from
SSO = service("sso-portal")
SYNC = service("sis-sync")
POLICY = {  # config.yaml's numbers for the throttles; the district's lockout after 3
    "source_max_failures": 50, "source_window": 60,
    "source_account_max_failures": 5, "source_account_window": 300,
    "trusted_sources": [FRONT_END],
}


def bind(srv, dn, pw, source=FRONT_END):
    """(result code, message) of a simple bind from `source`."""
    conn = Connection(Server(srv.url), dn, pw, source_address=source, raise_exceptions=False)
    conn.open()
    conn.bind()
    result = conn.result["result"], conn.result["message"]
    conn.unbind()
    return result


def operational(srv, dn):
    conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True, source_address=ADMIN_HOST)
    conn.search(dn, "(objectClass=*)", BASE, attributes=["*", "+"])
    attrs = {k.lower(): v for k, v in conn.response[0]["raw_attributes"].items() if v}
    conn.unbind()
    return attrs


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # crowd a: behind the front end; crowd b: from an unknown address
    s = make_server(tmp_path_factory.mktemp("sso"), policy=POLICY,
                    extra_ldif=crowd_ldif("crowda", 50) + "\n" + crowd_ldif("crowdb", 50))
    yield s
    s.stop()


def test_fifty_wrong_passwords_behind_the_front_end_refuse_nobody_else(srv):
    for i in range(1, 51):
        assert bind(srv, student(f"crowda{i:02d}"), "mistyped-Pw-1")[0] == INVALID_CREDENTIALS
    # the SSO's service account and every other user still bind through the front end
    assert bind(srv, SSO, password("sso-portal")) == (SUCCESS, "")
    for uid in ("s1", "s2", "crowda01", "crowda50"):
        assert bind(srv, student(uid), password(uid)) == (SUCCESS, ""), uid


def test_an_unknown_address_is_still_throttled_but_not_for_service_accounts(srv):
    attacker = "127.0.0.2"
    for i in range(1, 51):
        assert bind(srv, student(f"crowdb{i:02d}"), "mistyped-Pw-1", attacker)[0] == INVALID_CREDENTIALS
    code, message = bind(srv, student("s3"), password("s3"), attacker)
    assert code == UNWILLING and "too many failed binds from this address" in message
    # a service account's correct password is never refused by the address limit
    assert bind(srv, SSO, password("sso-portal"), attacker) == (SUCCESS, "")
    # the front end and other addresses are not affected
    assert bind(srv, student("s3"), password("s3")) == (SUCCESS, "")
    assert bind(srv, student("s3"), password("s3"), "127.0.0.5") == (SUCCESS, "")


def test_the_per_address_and_account_counter_trips_and_service_accounts_do_not_lock(srv):
    guesser = "127.0.0.3"
    for _ in range(5):  # more than the district's max_failures (3): a person would be locked
        assert bind(srv, SYNC, "guess-Pw-1", guesser)[0] == INVALID_CREDENTIALS
    code, message = bind(srv, SYNC, password("sis-sync"), guesser)
    assert code == UNWILLING and "for this account from this address" in message
    # only that pair: the service binds from the front end and from elsewhere
    assert bind(srv, SYNC, password("sis-sync")) == (SUCCESS, "")
    assert bind(srv, SYNC, password("sis-sync"), "127.0.0.4") == (SUCCESS, "")
    attrs = operational(srv, SYNC)
    assert "pwdaccountlockedtime" not in attrs and "pwdfailuretime" not in attrs
    # other accounts from the guesser's address still bind
    assert bind(srv, student("s1"), password("s1"), guesser) == (SUCCESS, "")
    # a service name that does not exist answers alike (no hint which exist)
    for _ in range(5):
        assert bind(srv, service("nobody"), "guess-Pw-1", guesser)[0] == INVALID_CREDENTIALS
    assert bind(srv, service("nobody"), "guess-Pw-1", guesser)[0] == UNWILLING


def test_the_root_dn_has_the_per_address_and_account_limit_even_behind_the_front_end(srv):
    for _ in range(5):
        assert bind(srv, ROOT_DN, "guess-Pw-1")[0] == INVALID_CREDENTIALS
    code, message = bind(srv, ROOT_DN, ROOT_PW)
    assert code == UNWILLING and "for this account" in message
    assert bind(srv, ROOT_DN, ROOT_PW, "127.0.0.6") == (SUCCESS, "")


def test_a_person_behind_the_front_end_is_still_locked_out_until_unlocked(srv):
    for _ in range(6):
        assert bind(srv, student("lock1"), "mistyped-Pw-1")[0] == INVALID_CREDENTIALS
    assert bind(srv, student("lock1"), password("lock1"))[0] == INVALID_CREDENTIALS  # locked
    assert "pwdaccountlockedtime" in operational(srv, student("lock1"))
    # an administrator's unlock takes effect at once (no other counter holds them)
    conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True, source_address=ADMIN_HOST)
    assert conn.modify(student("lock1"), {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]}), conn.result
    conn.unbind()
    assert bind(srv, student("lock1"), password("lock1")) == (SUCCESS, "")


# ------------------------------------------------------------------- a real SSO client

APACHE = shutil.which("apache2") or shutil.which("httpd") or "/usr/sbin/apache2"
MODULES = next((Path(p) for p in ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules", "/usr/lib/httpd/modules")
                if Path(p, "mod_authnz_ldap.so").exists()), None)
NEEDED = ["mpm_prefork", "authn_core", "authz_core", "authz_user", "auth_basic", "ldap", "authnz_ldap"]


def httpd_base(root: Path, port: int) -> str:
    """A private Apache in `root` on 127.0.0.1:port with the LDAP modules (no site yet)."""
    loads = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in NEEDED)  # unixd: built in
    user = "" if os.geteuid() else "User nobody\nGroup nogroup\n"
    return f"""ServerRoot "{root}"
DefaultRuntimeDir "{root}"
PidFile "{root}/httpd.pid"
ErrorLog "{root}/error.log"
LogLevel warn ldap:debug authnz_ldap:debug
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
{user}{loads}
DocumentRoot "{root}/htdocs"
"""


def apache_conf(root: Path, port: int, ldap_port: int) -> str:
    return httpd_base(root, port) + f"""LDAPCacheEntries 0
LDAPOpCacheEntries 0
LDAPConnectionTimeout 10
<Directory "{root}/htdocs">
    AuthType Basic
    AuthName "District single sign-on"
    AuthBasicProvider ldap
    AuthLDAPURL "ldap://127.0.0.1:{ldap_port}/{PEOPLE}?uid?sub?(objectClass=inetOrgPerson)"
    AuthLDAPBindDN "{SSO}"
    AuthLDAPBindPassword "{password('sso-portal')}"
    Require valid-user
</Directory>
"""


@pytest.fixture(scope="module")
def apache(tmp_path_factory):
    if MODULES is None or not Path(APACHE).exists():
        pytest.skip("apache2 with mod_authnz_ldap is not installed (scripts/test installs apache2-bin)")
    srv = make_server(tmp_path_factory.mktemp("sso-apache"), policy=POLICY, extra_ldif=crowd_ldif("crowdc", 50))
    # a world-readable root: Apache started as root serves as nobody
    root = Path(tempfile.mkdtemp(prefix="rollcall-apache-"))
    os.chmod(root, 0o755)
    (root / "htdocs").mkdir(mode=0o755)
    (root / "htdocs" / "index.html").write_text("signed in\n")
    os.chmod(root / "htdocs" / "index.html", 0o644)
    port = free_port()
    conf = root / "httpd.conf"
    conf.write_text(apache_conf(root, port, srv.port))
    try:
        with running_apache(conf, port, root / "error.log"):
            yield srv, f"http://127.0.0.1:{port}/index.html", root
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_apache(conf: Path, port: int, error_log: Path):
    """`apache2 -X` with conf, listening on 127.0.0.1:port, until the block ends."""
    proc = subprocess.Popen([APACHE, "-X", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            wait_port(port, proc=proc)
        except RuntimeError:
            log = error_log.read_text() if error_log.exists() else ""
            raise AssertionError(f"apache exited: {proc.stderr.read().decode()}{log}") from None
        yield proc
    finally:
        stop_process(proc)


def login(url, user, pw) -> int:
    token = base64.b64encode(f"{user}:{pw}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": "Basic " + token})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_fifty_mistyped_student_logins_through_apache_do_not_break_sso(apache):
    srv, url, root = apache
    assert login(url, "s1", password("s1")) == 200
    for i in range(1, 51):
        assert login(url, f"crowdc{i:02d}", "mistyped-Pw-1") == 401, i
    # was HTTP 500: the service account's bind and every user's were refused
    for uid in ("s2", "s12", "crowdc01", "s1"):
        assert login(url, uid, password(uid)) == 200, (uid, (root / "error.log").read_text()[-2000:])
    assert login(url, "s3", "mistyped-Pw-1") == 401
    # and the SSO service account was never locked
    assert "pwdaccountlockedtime" not in operational(srv, SSO)
