"""The search and bind hot path (issue 14): an encoded SearchResultEntry kept on the
cached entry per (attribute selection, hidden attributes), equality index look-ups
kept across unrelated commits, the responses of one read sent together, and a {SSHA}
bind answered without a thread hop. Every cache must follow every change at once, in
every worker process, and every reader must get exactly its own access view."""
import socket

import pytest
from ldap3 import BASE, MODIFY_REPLACE, SUBTREE, Connection, Server

from benchmarks.loadgen import bind_op, filter_eq, message, recv_one, search_op
from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, ServerProcess
from tests.protocol.district import STUDENTS, make_server, password, service, student
from tests.protocol.test_workers import spread_connections

TRIES = 20


def bind(srv, dn, pw):
    conn = Connection(Server(srv.url), dn, pw, receive_timeout=30)
    conn.open()
    assert conn.bind(), conn.result
    return conn


def entries(conn, base, flt, attrs=("*",), scope=SUBTREE):
    conn.search(base, flt, scope, attributes=list(attrs))
    assert conn.result["result"] == 0, conn.result
    return {e["dn"]: {k: sorted(v) for k, v in e["raw_attributes"].items()}
            for e in conn.response or [] if e.get("type") == "searchResEntry"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("hotpath"), extra={"server": {"workers": 2}})
    yield s
    s.stop()


def test_repeated_reads_follow_every_change_in_every_worker(srv):
    """An SSO service looks a student up by mail over and over (served from the encoded
    entry and the cached index look-up); after each change, made through the other
    worker as often as not, every connection finds the new value and not the old."""
    admin = bind(srv, ROOT_DN, ROOT_PW)
    conns = spread_connections(srv, service("sso-portal"), password("sso-portal"))
    target, stale = student("s1"), 0
    try:
        for i in range(TRIES):
            # two values in turn: each look-up was made (and cached) before, with the other answer
            new, old = f"s1-{i % 2}@students.district.example", f"s1-{(i + 1) % 2}@students.district.example"
            assert admin.modify(target, {"mail": [(MODIFY_REPLACE, [new])]}), admin.result
            for c in conns:
                for _ in range(2):  # the second read is a cache hit
                    got = entries(c, STUDENTS, f"(mail={new})")
                    stale += list(got) != [target] or got[target].get("mail") != [new.encode()]
                    stale += bool(entries(c, STUDENTS, f"(mail={old})"))
    finally:
        for c in conns + [admin]:
            c.unbind()
    assert stale == 0, f"{stale} stale reads"


def test_each_reader_gets_its_own_view_of_a_cached_entry(srv):
    """The same entry read in turn by the root DN, an SSO service, the student and
    another student, with different attribute lists: each answer is the same on every
    repetition (cache hits) as on the first, and the views differ as the rules say."""
    readers = {"root": bind(srv, ROOT_DN, ROOT_PW),
               "service": bind(srv, service("sso-portal"), password("sso-portal")),
               "self": bind(srv, student("s2"), password("s2")),
               "other": bind(srv, student("s3"), password("s3"))}
    lists = (("*",), ("cn", "mail"), ("*", "+"), ("1.1",))
    try:
        first = {}
        for _ in range(3):
            for who, conn in readers.items():
                for attrs in lists:
                    got = entries(conn, STUDENTS, "(uid=s2)", attrs)
                    assert first.setdefault((who, attrs), got) == got, (who, attrs)
        star = {who: first[(who, ("*",))] for who in readers}
        assert "userPassword" in star["root"][student("s2")]
        assert "userPassword" not in star["service"][student("s2")]
        assert "userPassword" not in star["self"][student("s2")]  # self write is not read of a hash
        assert star["other"] == {}  # a student does not see another
        assert first[("service", ("cn", "mail"))][student("s2")].keys() == {"cn", "mail"}
        assert "entryUUID" in first[("root", ("*", "+"))][student("s2")]
        assert first[("root", ("1.1",))] == {student("s2"): {}}
    finally:
        for conn in readers.values():
            conn.unbind()


def test_has_subordinates_follows_the_children_of_a_cached_entry(srv):
    """hasSubordinates depends on the children, not on the entry: never served from an
    encoding kept on the entry."""
    admin = bind(srv, ROOT_DN, ROOT_PW)
    ou, child = f"ou=hot-path,{SUFFIX}", f"ou=child,ou=hot-path,{SUFFIX}"
    try:
        assert admin.add(ou, ["organizationalUnit"], {"ou": "hot-path"}), admin.result
        for present in (False, True, False, True):
            if present:
                assert admin.add(child, ["organizationalUnit"], {"ou": "child"}), admin.result
            elif admin.search(child, "(objectClass=*)", BASE, attributes=["1.1"]):
                assert admin.delete(child), admin.result
            for _ in range(2):
                got = entries(admin, ou, "(objectClass=*)", ("*", "hasSubordinates"), BASE)
                assert got[ou]["hasSubordinates"] == [b"TRUE" if present else b"FALSE"]
    finally:
        admin.delete(child)
        admin.delete(ou)
        admin.unbind()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("hotpath-plain")).start()
    yield s
    s.stop()


JSMITH = f"uid=jsmith,ou=students,ou=people,{SUFFIX}"  # an {SSHA} hash (tests/conftest.py)


def test_requests_pipelined_behind_a_fast_bind_run_as_its_identity(plain):
    """A {SSHA} bind is answered at once on the reactor; what the client pipelined behind
    it, in the same packet, still runs after it and as the identity it set (or as
    anonymous after a wrong password), and all answers come in order."""
    people = f"ou=people,{SUFFIX}"
    for pw, code in ((b"student-pw-1", 0), (b"wrong", 49)):
        s = socket.create_connection(("127.0.0.1", plain.port), timeout=10)
        try:
            # who am I, then a search only a bound user may answer (default rules: users read)
            s.sendall(message(1, bind_op(JSMITH, pw.decode()))
                      + message(2, search_op(people, filter_eq("uid", "teacher1"), ("cn",)))
                      + message(3, search_op(people, filter_eq("uid", "mgarcia"), ("cn",))))
            buf = bytearray()
            got = [recv_one(s, buf) for _ in range(3 if code else 5)]
        finally:
            s.close()
        assert got[0] == (1, 0x61, code)
        if code == 0:
            assert [(m, t) for m, t, _ in got[1:]] == [(2, 0x64), (2, 0x65), (3, 0x64), (3, 0x65)]
        else:  # anonymous: the base itself is not visible (noSuchObject), in order
            assert [(m, t, c) for m, t, c in got[1:]] == [(2, 0x65, 32), (3, 0x65, 32)]


def test_many_pipelined_searches_are_all_answered_in_order(plain):
    """The answers of the requests of one read go out together: none is lost or
    reordered, small or large."""
    s = socket.create_connection(("127.0.0.1", plain.port), timeout=10)
    try:
        s.sendall(message(1, bind_op(ROOT_DN, ROOT_PW)))
        assert recv_one(s, bytearray())[1:] == (0x61, 0)
        reqs = []
        for i in range(2, 302):
            uid = ("jsmith", "mgarcia", "teacher1", "nobody")[i % 4]
            attrs = ("*",) if i % 3 else ("1.1",)
            reqs.append(message(i, search_op(SUFFIX, filter_eq("uid", uid), attrs)))
        s.sendall(b"".join(reqs))
        buf, done, seen = bytearray(), [], []
        while len(done) < 300:
            msgid, tag, code = recv_one(s, buf)
            seen.append((msgid, tag))
            if tag == 0x65:
                assert code == 0
                done.append(msgid)
        assert done == list(range(2, 302))
        assert sum(t == 0x64 for _, t in seen) == 225  # 3 of every 4 uids exist
    finally:
        s.close()


def test_answers_held_for_the_end_of_a_turn_all_reach_their_connections(plain):
    """Small answers on plain TCP go out at the end of the reactor turn, together with
    the other connections' (LDAPServerProtocol._write): many connections asking at once
    each get exactly their own answers, a bind's and then a search's, in order."""
    socks = [socket.create_connection(("127.0.0.1", plain.port), timeout=10) for _ in range(32)]
    try:
        for rnd in range(3):
            for i, s in enumerate(socks):
                uid = "jsmith" if i % 2 else "nobody"
                # the root DN: a fast bind every time (a student's {SSHA} is rehashed to a
                # slow {ARGON2} at its first bind, and 32 of those at once would be busy)
                s.sendall(message(2 * rnd + 1, bind_op(ROOT_DN, ROOT_PW))
                          + message(2 * rnd + 2, search_op(SUFFIX, filter_eq("uid", uid), ("uid",))))
            for i, s in enumerate(socks):
                buf = bytearray()
                assert recv_one(s, buf) == (2 * rnd + 1, 0x61, 0)
                got = [recv_one(s, buf)[:2] for _ in range(2 if i % 2 else 1)]
                assert got == ([(2 * rnd + 2, 0x64), (2 * rnd + 2, 0x65)] if i % 2 else [(2 * rnd + 2, 0x65)])
    finally:
        for s in socks:
            s.close()
