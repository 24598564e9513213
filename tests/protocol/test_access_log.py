"""The access log against a real server: one JSON line per operation result and per
connection, the fields an operator greps for, no secret anywhere in the log, reopened
on SIGHUP (logrotate), and slow searches logged at warning with the access log off."""
import json
import os
import signal
import subprocess
import time

import pytest
from ldap3 import MODIFY_REPLACE, SUBTREE

from directory import admin
from directory.server.accesslog import format_kv
from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, ServerProcess, requires_ldap_utils
from tests.protocol.district import STUDENTS, bind, make_server, password, student


def lines_of(path, wait_for=None, timeout=5.0):
    """The access log's lines as dicts (waiting for the buffered lines to be written)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
        if wait_for is None or any(wait_for(x) for x in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("accesslog"),
                    extra={"log": {"level": "info", "access": "var/access.log", "access_format": "json"}})
    yield s
    s.stop()


def test_search_line_has_the_fields_an_operator_needs(srv):
    log_path = srv.workdir / "var/access.log"
    conn = bind(srv, "root")
    conn.search(STUDENTS, "(&(uid=s1)(objectClass=*))", SUBTREE, attributes=["cn", "mail"])
    assert len(conn.entries) == 1
    conn.search(f"ou=nowhere,{SUFFIX}", "(uid=*)", SUBTREE)
    conn.unbind()
    lines = lines_of(log_path, lambda x: x.get("base") == f"ou=nowhere,{SUFFIX}")
    search = [x for x in lines if x.get("type") == "search" and x.get("base") == STUDENTS][-1]
    assert search["scope"] == "sub" and search["filter"] == "(&(uid=s1)(objectClass=*))"
    assert search["attrs"] == ["cn", "mail"] and search["entries"] == 1 and search["result"] == 0
    assert search["who"] == ROOT_DN and search["tls"] is False and search["from"].startswith("127.0.0.1:")
    assert isinstance(search["ms"], float) and search["time"].endswith("Z")
    assert isinstance(search["conn"], int) and isinstance(search["op"], int)
    missing = [x for x in lines if x.get("base") == f"ou=nowhere,{SUFFIX}"][-1]
    assert missing["result"] == 32 and missing["error"] == "no_such_object" and missing["entries"] == 0
    # the connection's life: opened, bound, closed by unbind (its close is logged once the
    # server has seen the connection go, which may be after the client read its last answer)
    lines = lines_of(log_path, lambda x: x.get("conn") == search["conn"] and x.get("event") == "close")
    mine = [x for x in lines if x["conn"] == search["conn"]]
    assert mine[0]["event"] == "connect" and mine[-1]["event"] == "close" and mine[-1]["reason"] == "unbind"
    assert any(x.get("type") == "bind" and x.get("dn") == ROOT_DN and x["result"] == 0 for x in mine)


@requires_ldap_utils
def test_no_secret_ever_reaches_the_log(srv):
    """Binds (good and bad), Password Modify (ldappasswd), an add and a modify with
    userPassword, a compare on it, activation codes issued and used: then every secret
    used is looked for in the whole access log and the server's own log."""
    secrets = ["Alpha-Secret-7391", "Bravo-Secret-8462", "Charlie-Secret-9573", "Delta-Secret-1684",
               "Echo-Secret-2795", "Foxtrot-Wrong-3806", "Golf-Compare-4917", "Hotel-Filter-5028"]
    env = srv.env()
    s1 = student("s1")
    # Password Modify by the root DN, then by the user (old and new in the request)
    subprocess.run(["ldappasswd", "-x", "-H", srv.url, "-D", ROOT_DN, "-w", ROOT_PW, "-s", secrets[0], s1],
                   check=True, env=env, capture_output=True)
    subprocess.run(["ldappasswd", "-x", "-H", srv.url, "-D", s1, "-w", secrets[0], "-a", secrets[0],
                    "-s", secrets[1]], check=True, env=env, capture_output=True)
    subprocess.run(["ldapwhoami", "-x", "-H", srv.url, "-D", s1, "-w", secrets[1]], check=True, env=env,
                   capture_output=True)
    bad = subprocess.run(["ldapwhoami", "-x", "-H", srv.url, "-D", s1, "-w", secrets[5]], env=env,
                         capture_output=True)
    assert bad.returncode == 49
    root = bind(srv, "root")
    dn = f"uid=secretive,{STUDENTS}"
    assert root.add(dn, ["inetOrgPerson"], {"uid": "secretive", "cn": "Sec Retive", "sn": "Retive",
                                            "userPassword": secrets[2]}), root.result
    assert root.modify(dn, {"userPassword": [(MODIFY_REPLACE, [secrets[3]])]}), root.result
    subprocess.run(["ldapcompare", "-x", "-H", srv.url, "-D", ROOT_DN, "-w", ROOT_PW, dn,
                    f"userPassword:{secrets[6]}"], env=env, capture_output=True)
    # a legacy application checking a password with a search filter
    root.search(STUDENTS, f"(&(uid=secretive)(|(userPassword={secrets[7]})(userPassword=*{secrets[7]}*)))",
                SUBTREE)
    # an activation code issued to a PENDING student and used with a new password
    codes = admin.issue_codes(root, [student("sP")])
    code = codes[0]["code"]
    anon = bind(srv)
    admin.activate(anon, "sP", code, secrets[4])
    anon.unbind()
    root.unbind()
    lines = lines_of(srv.workdir / "var/access.log", lambda x: x.get("oid") and x.get("conn") and
                     any(y.get("type") == "extended" for y in [x]))
    time.sleep(0.5)  # the last buffered lines
    text = (srv.workdir / "var/access.log").read_text() + srv.log_path.read_text()
    for secret in secrets + [code, code.replace("-", ""), ROOT_PW, password("s1")]:
        assert secret not in text, f"{secret!r} is in the log"
    # and yet the operations are all there
    types = [x.get("type") for x in lines_of(srv.workdir / "var/access.log")]
    assert {"bind", "add", "modify", "compare", "extended"} <= set(types)
    assert any(x.get("filter") == "(&(uid=secretive)(|(userPassword=REDACTED)(userPassword=REDACTED*)))"
               for x in lines_of(srv.workdir / "var/access.log")), "the filter is logged, its password hidden"
    modify = [x for x in lines_of(srv.workdir / "var/access.log") if x.get("type") == "modify" and x["dn"] == dn]
    assert modify[-1]["attrs"] == ["userPassword"]


def test_reopened_on_sighup_for_logrotate(srv):
    log_path = srv.workdir / "var/access.log"
    conn = bind(srv, "root")
    conn.search(SUFFIX, "(uid=before-rotate)", SUBTREE)
    lines_of(log_path, lambda x: x.get("filter") == "(uid=before-rotate)")
    rotated = srv.workdir / "var/access.log.1"
    os.rename(log_path, rotated)
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while not log_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    conn.search(SUFFIX, "(uid=after-rotate)", SUBTREE)
    conn.unbind()
    after = lines_of(log_path, lambda x: x.get("filter") == "(uid=after-rotate)")
    assert any(x.get("filter") == "(uid=after-rotate)" for x in after)
    assert not any(x.get("filter") == "(uid=before-rotate)" for x in after)
    assert any(x.get("filter") == "(uid=before-rotate)" for x in lines_of(rotated))
    assert srv.proc.poll() is None  # SIGHUP reloads, never stops the server


def test_slow_searches_logged_at_warning_with_the_access_log_off(tmp_path):
    s = ServerProcess(tmp_path, extra_config={"log": {"level": "warning", "access": False, "slow_ms": 0.0001}})
    s.start()
    try:
        conn = bind(s, "root")
        conn.search(SUFFIX, "(cn=*Smith*)", SUBTREE, attributes=["cn"])
        conn.unbind()
        deadline = time.monotonic() + 5
        while "slow search" not in s.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = s.log_path.read_text()
        line = [x for x in text.splitlines() if "slow search" in x][-1]
        assert "WARNING" in line and "filter=(cn=*Smith*)" in line and f"base={SUFFIX}" in line and "entries=1" in line
        assert not (tmp_path / "var/access.log").exists()
    finally:
        s.stop()


def test_key_value_format_quotes_what_needs_it():
    line = format_kv({"conn": 3, "op": 2, "tls": True, "base": "ou=a b,dc=x", "filter": '(cn=a "b")',
                      "attrs": ["cn", "mail"], "matched": None, "who": ""})
    assert line == 'conn=3 op=2 tls=true base="ou=a b,dc=x" filter="(cn=a \\"b\\")" attrs=cn,mail who=""'
