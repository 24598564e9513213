"""Durability: a change the server acknowledged survives `kill -9` of the server at
the very next moment; and `rollcall export` -> LDIF -> `rollcall load` round-trips."""
import base64
import io
import threading
import time

import pytest

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, ServerProcess, requires_ldap_utils

from .ldaputil import (
    ADMIN, JSMITH, MGARCIA, STUDENTS, TEACHER1, add, dns, entries, lower_keys, modify, ok, search, tool,
)

pytestmark = requires_ldap_utils


def person_ldif(dn, uid, *extra):
    return "\n".join([f"dn: {dn}", "objectClass: inetOrgPerson", f"uid: {uid}", f"cn: {uid} durable",
                      f"sn: {uid}", *extra]) + "\n"


def crash_and_restart(srv):
    srv.kill()  # SIGKILL: no shutdown hook, no checkpoint
    srv.start()


def read(srv, dn, *attrs):
    r = search(srv, "-b", dn, "-s", "base", "(objectClass=*)", *attrs)
    if r.returncode == 32:
        return None
    got = entries(ok(r))
    return lower_keys(next(iter(got.values())))


def test_acknowledged_changes_survive_kill_9(fresh_server):
    srv = fresh_server
    acked = {}  # dn -> expected sn (None: must not exist)

    def check_all():
        for dn, sn in acked.items():
            got = read(srv, dn, "sn", "uid")
            if sn is None:
                assert got is None, f"{dn} was deleted (acknowledged) but is back after kill -9"
            else:
                assert got is not None, f"{dn} was acknowledged but is gone after kill -9"
                assert got["sn"] == [sn], f"{dn}: sn {got['sn']} after kill -9, acknowledged {sn}"
        # the indexes were committed with the entries
        live = {dn for dn, sn in acked.items() if sn is not None and dn.startswith("uid=dur")}
        assert set(dns(ok(search(srv, "-b", SUFFIX, "(uid=dur*)", "1.1")))) == live

    # adds, each followed at once by kill -9
    for i in range(5):
        dn = f"uid=dur{i},{STUDENTS}"
        ok(add(srv, person_ldif(dn, f"dur{i}")))
        acked[dn] = f"dur{i}"
        crash_and_restart(srv)
        check_all()

    # a modify
    dn = f"uid=dur1,{STUDENTS}"
    ok(modify(srv, f"dn: {dn}\nchangetype: modify\nreplace: sn\nsn: Modified\n-\nadd: mail\nmail: dur1@x.example\n-\n"))
    acked[dn] = "Modified"
    crash_and_restart(srv)
    check_all()
    assert read(srv, dn, "mail")["mail"] == ["dur1@x.example"]
    assert set(dns(ok(search(srv, "-b", SUFFIX, "(sn=modified)", "1.1")))) == {dn}

    # a delete
    dn = f"uid=dur2,{STUDENTS}"
    ok(tool(srv, "ldapdelete", *ADMIN, dn))
    acked[dn] = None
    crash_and_restart(srv)
    check_all()

    # a rename (modrdn with newSuperior)
    old, new = f"uid=dur3,{STUDENTS}", f"uid=dur3moved,ou=staff,ou=people,{SUFFIX}"
    ok(tool(srv, "ldapmodrdn", *ADMIN, "-r", "-s", f"ou=staff,ou=people,{SUFFIX}", old, "uid=dur3moved"))
    acked[old], acked[new] = None, "dur3"
    crash_and_restart(srv)
    check_all()
    assert read(srv, new, "uid")["uid"] == ["dur3moved"]

    # a subtree rename: the children's DNs change in the same transaction
    dept = f"ou=dept,ou=people,{SUFFIX}"
    ok(add(srv, f"dn: {dept}\nobjectClass: organizationalUnit\nou: dept\n\n"
                + person_ldif(f"uid=kid1,{dept}", "kid1") + "\n" + person_ldif(f"uid=kid2,{dept}", "kid2")))
    ok(tool(srv, "ldapmodrdn", *ADMIN, "-r", dept, "ou=dept2"))
    crash_and_restart(srv)
    dept2 = f"ou=dept2,ou=people,{SUFFIX}"
    assert set(dns(ok(search(srv, "-b", dept2, "(objectClass=*)", "1.1")))) == {
        dept2, f"uid=kid1,{dept2}", f"uid=kid2,{dept2}"}
    assert read(srv, dept) is None
    assert dns(ok(search(srv, "-b", SUFFIX, "(uid=kid2)", "1.1"))) == [f"uid=kid2,{dept2}"]

    # a password change
    ok(tool(srv, "ldappasswd", "-D", MGARCIA, "-w", "student-pw-2", "-a", "student-pw-2", "-s", "durable-pw-7"))
    crash_and_restart(srv)
    assert ok(tool(srv, "ldapwhoami", "-D", MGARCIA, "-w", "durable-pw-7")).strip() == f"dn:{MGARCIA}"
    assert tool(srv, "ldapwhoami", "-D", MGARCIA, "-w", "student-pw-2").returncode == 49

    # the demo entries are untouched
    assert read(srv, JSMITH, "sn")["sn"] == ["Smith"]
    assert read(srv, TEACHER1, "sn")["sn"] == ["Teacher"]


def test_bulk_ldapadd_then_kill_9(fresh_server):
    srv = fresh_server
    n = 150
    ldif = "\n".join(person_ldif(f"uid=bulk{i},{STUDENTS}", f"bulk{i}") for i in range(n))
    ok(add(srv, ldif))
    crash_and_restart(srv)
    got = dns(ok(search(srv, "-b", STUDENTS, "(uid=bulk*)", "1.1")))
    assert len(got) == n
    assert set(got) == {f"uid=bulk{i},{STUDENTS}" for i in range(n)}


def test_kill_9_during_a_stream_of_writes(fresh_server):
    """Writes acknowledged right up to the kill are all there afterwards; at most the one
    in flight (never acknowledged) may or may not be."""
    ldap3 = pytest.importorskip("ldap3")
    srv = fresh_server
    port = int(srv.url.rsplit(":", 1)[1])
    conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=port), user=ROOT_DN, password=ROOT_PW,
                            receive_timeout=5, raise_exceptions=False)
    assert conn.bind()
    acked, attempted = [], []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            dn = f"uid=s{i},{STUDENTS}"
            attempted.append(dn)
            try:
                ok_ = conn.add(dn, ["inetOrgPerson"], {"uid": f"s{i}", "cn": f"s{i}", "sn": f"s{i}"})
            except Exception:
                return  # the server went away
            if not ok_:
                return
            acked.append(dn)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill()
    stop.set()
    t.join(10)
    assert not t.is_alive()
    assert len(acked) >= 40, "the writer did not get going"
    srv.start()
    present = set(dns(ok(search(srv, "-b", STUDENTS, "(uid=s*)", "1.1"))))
    missing = [dn for dn in acked if dn not in present]
    assert not missing, f"{len(missing)} acknowledged adds lost after kill -9: {missing[:5]}"
    extra = present - set(acked)
    assert extra <= set(attempted[len(acked):]) and len(extra) <= 1, extra
    try:
        conn.unbind()
    except Exception:
        pass


def test_kill_9_during_concurrent_writes(fresh_server):
    """Several clients at once, so the writer commits their writes in groups: every
    acknowledged one survives kill -9; at most each client's one in flight may too."""
    ldap3 = pytest.importorskip("ldap3")
    srv = fresh_server
    port = int(srv.url.rsplit(":", 1)[1])
    acked, attempted, stop = [], [], threading.Event()

    def writer(c):
        conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=port), user=ROOT_DN, password=ROOT_PW,
                                receive_timeout=5, raise_exceptions=False)
        if not conn.bind():
            return
        i = 0
        while not stop.is_set():
            dn = f"uid=c{c}n{i},{STUDENTS}"
            attempted.append(dn)
            try:
                if not conn.add(dn, ["inetOrgPerson"], {"uid": f"c{c}n{i}", "cn": "c", "sn": "c"}):
                    return
            except Exception:
                return  # the server went away
            acked.append(dn)
            i += 1

    threads = [threading.Thread(target=writer, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    while len(acked) < 120 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert len(acked) >= 120, "the writers did not get going"
    srv.start()
    present = set(dns(ok(search(srv, "-b", STUDENTS, "(uid=c*)", "1.1"))))
    missing = [dn for dn in acked if dn not in present]
    assert not missing, f"{len(missing)} acknowledged adds lost after kill -9: {missing[:5]}"
    extra = present - set(acked)
    assert extra <= set(attempted) and len(extra) <= len(threads), extra


# ----------------------------------------------------------------------------- export / load


def _parse_ldif(text):
    """{dn: {attr: sorted values}} via python-ldap's LDIF parser (not the server's)."""
    ldif = pytest.importorskip("ldif")
    parser = ldif.LDIFRecordList(io.StringIO(text))
    parser.parse()
    out = {}
    for dn, attrs in parser.all_records:
        out[dn] = {k.lower(): sorted(v) for k, v in attrs.items()}
    return out


def test_export_load_round_trip(fresh_server, tmp_path):
    srv = fresh_server
    # values that stress the LDIF writer: non-ASCII, binary, leading/trailing spaces,
    # leading ':' and '<', embedded newline, long folded line
    audio = bytes(range(256))
    weird = person_ldif(
        f"uid=weird,{STUDENTS}", "weird",
        "description:: " + base64.b64encode(" leading space".encode()).decode(),
        "description:: " + base64.b64encode("trailing space ".encode()).decode(),
        "description:: " + base64.b64encode(":colon first".encode()).decode(),
        "description:: " + base64.b64encode("<angle first".encode()).decode(),
        "description:: " + base64.b64encode("two\nlines".encode()).decode(),
        "description: " + "x" * 300,
        "displayName: Zoë Ångström 日本",
        "audio:: " + base64.b64encode(audio).decode(),
        "userPassword: weird-pass-1",
    )
    ok(add(srv, weird))
    ok(add(srv, f"dn: ou=extra,{SUFFIX}\nobjectClass: organizationalUnit\nou: extra\n"))
    ok(add(srv, person_ldif(f"uid=x1,ou=extra,{SUFFIX}", "x1")))
    ok(modify(srv, f"dn: {JSMITH}\nchangetype: modify\nadd: description\ndescription: modified before export\n-\n"))
    ok(tool(srv, "ldapmodrdn", *ADMIN, "-r", f"ou=extra,{SUFFIX}", "ou=renamed"))
    ok(tool(srv, "ldapdelete", *ADMIN, TEACHER1))
    ok(tool(srv, "ldappasswd", *ADMIN, "-s", "exported-pw-1", MGARCIA))  # adds pwdChangedTime, pwdReset

    before = srv.rollcall("export").stdout  # from the live store
    out = tmp_path / "export.ldif"
    srv.rollcall("export", "-o", str(out))
    assert out.read_text(encoding="utf-8") == before
    exported = _parse_ldif(before)
    assert f"uid=x1,ou=renamed,{SUFFIX}" in exported and TEACHER1 not in exported
    w = exported[f"uid=weird,{STUDENTS}"]
    assert w["audio"] == [audio]
    assert sorted(w["description"]) == sorted(
        x.encode() for x in (" leading space", "trailing space ", ":colon first", "<angle first", "two\nlines",
                             "x" * 300))
    assert w["displayname"] == ["Zoë Ångström 日本".encode()]
    assert all(v.startswith(b"{") for v in w["userpassword"])  # hashes, as stored
    assert "entryuuid" in w and "createtimestamp" in w

    # load into a brand-new store
    dest = tmp_path / "dest"
    dest.mkdir()
    srv2 = ServerProcess(dest, ldif=None)
    r = srv2.rollcall("load", str(out), check=False)
    assert r.returncode == 0, r.stderr
    after = srv2.rollcall("export").stdout
    assert _parse_ldif(after) == exported  # same entries, same values (incl. operational)
    assert after == before  # and even the same text

    # the loaded store serves: passwords and indexes work
    srv2.start()
    try:
        assert ok(tool(srv2, "ldapwhoami", "-D", MGARCIA, "-w", "exported-pw-1")).strip() == f"dn:{MGARCIA}"
        weird_dn = f"uid=weird,{STUDENTS}"
        assert ok(tool(srv2, "ldapwhoami", "-D", weird_dn, "-w", "weird-pass-1")).strip() == f"dn:{weird_dn}"
        assert ok(tool(srv2, "ldapwhoami", "-D", JSMITH, "-w", "student-pw-1")).strip() == f"dn:{JSMITH}"
        assert dns(ok(search(srv2, "-b", SUFFIX, "(uid=x1)", "1.1"))) == [f"uid=x1,ou=renamed,{SUFFIX}"]
        assert dns(ok(search(srv2, "-b", SUFFIX, "(description=modified before*)", "1.1"))) == [JSMITH]
        assert dns(ok(search(srv2, "-b", SUFFIX, "(cn=weird*)", "1.1"))) == [weird_dn]
        assert set(dns(ok(search(srv2, "-b", SUFFIX, "(objectClass=*)", "1.1")))) == set(exported)
    finally:
        srv2.stop()


def test_load_is_all_or_nothing(fresh_server, tmp_path):
    srv = fresh_server
    good = person_ldif(f"uid=ok1,{STUDENTS}", "ok1")
    bad = f"dn: uid=bad,{STUDENTS}\nobjectClass: inetOrgPerson\nuid: bad\ncn: bad\n"  # no sn
    f = tmp_path / "partial.ldif"
    f.write_text(good + "\n" + bad)
    srv.stop()
    r = srv.rollcall("load", str(f), check=False)
    assert r.returncode != 0
    assert "nothing was loaded" in r.stderr
    srv.start()
    assert read(srv, f"uid=ok1,{STUDENTS}") is None
    assert read(srv, JSMITH, "uid")["uid"] == ["jsmith"]
