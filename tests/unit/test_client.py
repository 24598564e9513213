"""directory.client against a real server: connect (right and wrong password, a closed
port, StartTLS with and without the CA), paged search over several pages, an error
result, and the command-line options."""
import argparse

import pytest
from ldap3 import MODIFY_REPLACE

from directory import client
from directory.client import ClientError
from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, free_port

STUDENTS = f"ou=students,ou=people,{SUFFIX}"
JSMITH = f"uid=jsmith,{STUDENTS}"


def test_connect_with_the_right_password(server):
    conn = client.connect(server.url, ROOT_DN, ROOT_PW)
    try:
        assert conn.bound
        assert client.naming_context(conn) == SUFFIX
        assert conn.extend.standard.who_am_i().lower().startswith("dn:cn=admin")
    finally:
        conn.unbind()


def test_connect_with_a_wrong_password(server):
    with pytest.raises(ClientError) as err:
        client.connect(server.url, JSMITH, "not-the-password")
    assert err.value.code == 49 and err.value.kind == "bind"
    assert str(err.value) == f"the server refused the password for {JSMITH}"


def test_anonymous_connection(server):
    conn = client.connect(server.url)
    try:
        assert conn.extend.standard.who_am_i() in ("", None, b"")
    finally:
        conn.unbind()


def test_connect_to_a_closed_port():
    url = f"ldap://127.0.0.1:{free_port()}"
    with pytest.raises(ClientError) as err:
        client.connect(url, ROOT_DN, ROOT_PW, connect_timeout=3)
    assert str(err.value) == f"cannot reach {url}: connection refused"
    assert err.value.code is None and err.value.kind == "connect"


def test_not_an_ldap_url():
    with pytest.raises(ClientError, match="not an LDAP URL"):
        client.connect("http://127.0.0.1:80")


def test_a_bind_dn_needs_a_password(server):
    with pytest.raises(ClientError, match="no password for"):
        client.connect(server.url, ROOT_DN, "")


def test_start_tls_with_the_test_ca(server):
    conn = client.connect(server.url, ROOT_DN, ROOT_PW, start_tls=True, ca_file=server.ca_file)
    try:
        assert conn.tls_started
        assert client.naming_context(conn) == SUFFIX
    finally:
        conn.unbind()


def test_ldaps_with_the_test_ca(server):
    conn = client.connect(server.ldaps_url, JSMITH, "student-pw-1", ca_file=server.ca_file)
    try:
        assert "jsmith" in conn.extend.standard.who_am_i()
    finally:
        conn.unbind()


@pytest.mark.parametrize("tls", ["starttls", "ldaps"])
def test_tls_without_the_ca_is_a_verification_failure(server, tls):
    url = server.url if tls == "starttls" else server.ldaps_url
    with pytest.raises(ClientError) as err:
        client.connect(url, ROOT_DN, ROOT_PW, start_tls=tls == "starttls")
    assert err.value.kind == "tls"
    assert str(err.value).startswith(f"cannot verify the TLS certificate of {url}")
    assert "--ca-file" in str(err.value) and "Traceback" not in str(err.value)


def test_paged_search_over_several_pages(server):
    conn = client.connect(server.url, ROOT_DN, ROOT_PW)
    try:
        found = client.paged_search(conn, SUFFIX, "(objectClass=*)", ["uid", "cn"], page=2)
        dns = [dn.lower() for dn, _ in found]
        assert len(found) >= 7 and len(set(dns)) == len(dns)
        attrs = dict(found)[next(dn for dn, _ in found if dn.lower().startswith("uid=jsmith"))]
        assert attrs["uid"] == [b"jsmith"] and attrs["cn"] == [b"John Smith"]
        assert conn.check_names  # restored after the search
        one = client.paged_search(conn, STUDENTS, "(uid=mgarcia)", ["cn"], scope=client.LEVEL)
        assert [a["cn"] for _, a in one] == [["María García".encode()]]
    finally:
        conn.unbind()


def test_paged_search_error_result(server):
    conn = client.connect(server.url, ROOT_DN, ROOT_PW)
    try:
        with pytest.raises(ClientError) as err:
            client.paged_search(conn, f"ou=nowhere,{SUFFIX}", "(objectClass=*)", ["cn"])
        assert err.value.code == 32 and str(err.value).startswith(f"search of ou=nowhere,{SUFFIX}: ")
        assert client.paged_search(conn, f"ou=nowhere,{SUFFIX}", "(objectClass=*)", ["cn"], absent_ok=True) == []
    finally:
        conn.unbind()


def test_check_turns_the_last_result_into_an_error(server):
    conn = client.connect(server.url, JSMITH, "student-pw-1")
    try:
        conn.modify(f"uid=teacher1,ou=staff,ou=people,{SUFFIX}", {"cn": [(MODIFY_REPLACE, ["X"])]})
        with pytest.raises(ClientError) as err:
            client.check(conn, "change of teacher1")
        assert err.value.code == 50 and str(err.value).startswith("change of teacher1: ")
        conn.search(STUDENTS, "(uid=jsmith)", attributes=["cn"])
        assert client.check(conn, "search")["result"] == 0
    finally:
        conn.unbind()


def test_async_strategy_connection(server):
    conn = client.connect(server.url, ROOT_DN, ROOT_PW, strategy=client.ASYNC, check_names=False)
    try:
        msgid = conn.search(STUDENTS, "(uid=jsmith)", attributes=["uid"])
        response, result = conn.get_response(msgid, timeout=30)
        assert result["result"] == 0 and len(response) == 1
    finally:
        conn.unbind()


# ----------------------------------------------------------------------------- options


def parse(*argv, **kw):
    p = argparse.ArgumentParser()
    client.add_connection_options(p, **kw)
    return p.parse_args(list(argv))


def test_options_ldap_utils_style_and_aliases(tmp_path, monkeypatch):
    monkeypatch.delenv("ROLLCALL_BIND_DN", raising=False)
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    a = parse("-H", "ldap://h:1", "-D", "cn=x", "-y", str(pw), "-Z", "--cacert", "ca.pem")
    b = parse("--url", "ldap://h:1", "--as", "cn=x", "--password-file", str(pw), "--starttls", "--ca-file", "ca.pem")
    for args in (a, b):
        assert (args.url, args.bind_dn, args.starttls, args.ca_file) == ("ldap://h:1", "cn=x", True, "ca.pem")
        assert client.password_from_args(args) == "secret"
    assert client.password_from_args(parse("-D", "cn=x", "-w", "pw")) == "pw"


def test_options_defaults_from_the_config(server, monkeypatch):
    monkeypatch.delenv("ROLLCALL_URL", raising=False)
    args = parse("--config", str(server.config_path), "-D", ROOT_DN, "-w", ROOT_PW)
    got = client.resolve(args)
    assert got["url"] == server.url and got["ca_file"] is None
    args = parse("--config", str(server.config_path), "-D", ROOT_DN, "-w", ROOT_PW, "-Z")
    assert client.resolve(args)["ca_file"] == str(server.ca_file)
    conn = client.connect_from_args(args)
    try:
        assert conn.tls_started and conn.bound
    finally:
        conn.unbind()


def test_no_password_without_a_terminal(monkeypatch):
    for name in ("ROLLCALL_BIND_PASSWORD", "ROLLCALL_PASSWORD", "ROLLCALL_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(ClientError, match="no password"):
        client.password_from_args(parse("-D", "cn=x"))
