"""What one client may hold (limits: in config.yaml), over real sockets: the
reproductions from the security review, each refused with a clear LDAP result or a
clean close while everyone else keeps being served.

* a client that never reads its responses: the server stops reading its requests
  (back-pressure), its memory stays bounded, and after limits.write_timeout it is closed;
* before a bind, a request may be at most limits.max_pdu_anonymous octets;
* connections per client address and in all;
* search filters: elements and nesting (root DN exempt), refused while decoding;
* binds: one in flight per connection (later requests wait for it, as in slapd),
  limits.max_binds_per_address per client address.
"""
import socket
import threading
import time
from pathlib import Path

import ldap3
import pytest

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, BASE_LDIF, ServerProcess
from tests.protocol.test_malformed import (
    bind_request, integer, ldap_result, message, recv_messages, recv_until_closed, split_messages, tlv,
    whoami_request,
)

NOTICE_OID = b"1.3.6.1.4.1.1466.20036"
JSMITH = f"uid=jsmith,ou=students,ou=people,{SUFFIX}"
TEACHER = f"uid=teacher1,ou=staff,ou=people,{SUFFIX}"


# ----------------------------------------------------------------------------- helpers


def eq(attr: bytes, value: bytes) -> bytes:
    return tlv(0xA3, tlv(0x04, attr) + tlv(0x04, value))


def search(msgid, base: bytes, flt: bytes, attrs=(b"1.1",)) -> bytes:
    body = (tlv(0x04, base) + integer(0x0A, 2) + integer(0x0A, 0) + integer(0x02, 0) + integer(0x02, 0)
            + tlv(0x01, b"\x00") + flt + tlv(0x30, b"".join(tlv(0x04, a) for a in attrs)))
    return message(msgid, tlv(0x63, body))


def raw(srv, source="127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5, source_address=(source, 0))
    return s


def bound(srv, dn, pw, source="127.0.0.1") -> socket.socket:
    s = raw(srv, source)
    s.sendall(bind_request(1, dn.encode(), pw.encode()))
    [(msgid, op_tag, op)] = recv_messages(s, 1)
    assert (msgid, op_tag, ldap_result(op)[0]) == (1, 0x61, 0), ldap_result(op)
    return s


def whoami(s, msgid=99) -> bytes:
    s.sendall(whoami_request(msgid))
    [(mid, op_tag, op)] = recv_messages(s, 1)
    code, _, _, extra = ldap_result(op)
    assert (mid, op_tag, code) == (msgid, 0x78, 0)
    return dict(extra).get(0x8B, b"")


def notice(data: bytes):
    """(resultCode, message) of the Notice of Disconnection in data."""
    msgs = split_messages(data)
    assert msgs, f"no Notice of Disconnection in {data!r}"
    msgid, op_tag, op = msgs[-1]
    code, _, text, extra = ldap_result(op)
    assert msgid == 0 and op_tag == 0x78 and (0x8A, NOTICE_OID) in extra, msgs
    return code, text.decode()


def rss_kb(pid) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def timed_search(conn) -> float:
    t0 = time.monotonic()
    assert conn.search(f"ou=people,{SUFFIX}", "(uid=jsmith)", attributes=["uid"]), conn.result
    assert len(conn.entries) == 1
    return time.monotonic() - t0


def root_ldap3(srv):
    return ldap3.Connection(ldap3.Server(srv.url, connect_timeout=5), ROOT_DN, ROOT_PW, auto_bind=True,
                            receive_timeout=10)


# ----------------------------------------------------------------------------- 7. unread responses

STAFF = 100
FILLER = "x" * 1000


def many_staff_ldif() -> str:
    out = [BASE_LDIF]
    for i in range(STAFF):
        out.append(f"\ndn: uid=staff{i},ou=staff,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\n"
                   f"uid: staff{i}\ncn: Staff {i}\nsn: Staff\ndescription: {FILLER}\n")
    return "".join(out)


@pytest.fixture
def flood_server(tmp_path):
    srv = ServerProcess(tmp_path, extra_config={"limits": {"write_timeout": 3}}, ldif=many_staff_ldif()).start()
    yield srv
    srv.stop()


def test_a_client_that_never_reads_is_bounded_then_closed(flood_server):
    """Review: '174 KB of pipelined requests cost 217-332 MB'. Here 2,100 pipelined
    searches (~170 KB), each answered with ~110 KB of entries: without back-pressure
    the server would build ~230 MB of responses; with it, it stops reading the
    client's requests once 64 KB wait, another client is answered meanwhile, and after
    limits.write_timeout the connection is closed."""
    srv = flood_server
    other = root_ldap3(srv)
    assert other.search(SUFFIX, "(objectClass=*)", attributes=["*"])  # warm the entry cache
    assert len(other.entries) >= STAFF
    base = rss_kb(srv.proc.pid)

    flood = bound(srv, ROOT_DN, ROOT_PW)
    flt = tlv(0x87, b"objectClass")
    payload = b"".join(search(i, f"ou=staff,ou=people,{SUFFIX}".encode(), flt, (b"*",)) for i in range(2, 2102))
    assert 150_000 < len(payload) < 200_000

    def send():
        try:
            flood.sendall(payload)
        except OSError:
            pass  # closed by the server (write_timeout)

    sender = threading.Thread(target=send, daemon=True)
    started = time.monotonic()
    sender.start()
    waits, peak = [], base
    while time.monotonic() - started < 2.0:
        waits.append(timed_search(other))
        peak = max(peak, rss_kb(srv.proc.pid))
        time.sleep(0.1)
    grown_mb = (peak - base) / 1024
    assert grown_mb < 30, f"server RSS grew {grown_mb:.0f} MB for a client that does not read"
    assert max(waits) < 1.0, f"another client waited {max(waits):.2f}s"

    # limits.write_timeout (3 s here): the blocked connection is aborted, not kept
    time.sleep(max(0.0, started + 3.8 - time.monotonic()))
    data, closed = recv_until_closed(flood, timeout=10)
    assert closed, "the blocked connection was not closed after limits.write_timeout"
    flood.close()
    sender.join(5)
    assert timed_search(other) < 1.0
    assert "responses unread for 3s" in srv.log_path.read_text()
    other.unbind()


def test_a_slow_reader_gets_every_response(flood_server):
    """Back-pressure only pauses: a client that reads (slowly) receives everything."""
    srv = flood_server
    s = bound(srv, ROOT_DN, ROOT_PW)
    flt = tlv(0x87, b"objectClass")
    n = 30
    s.sendall(b"".join(search(i, f"ou=staff,ou=people,{SUFFIX}".encode(), flt, (b"*",)) for i in range(2, 2 + n)))
    time.sleep(0.5)  # the server fills its buffer and pauses
    chunks = []
    s.settimeout(10)
    done, tail = 0, b""
    while done < n:
        chunk = s.recv(16384)
        assert chunk
        chunks.append(chunk)
        window = tail + chunk  # a searchResultDone (success) may straddle two reads
        done += window.count(b"\x65\x07\x0a\x01\x00\x04\x00\x04\x00")
        tail = chunk[-8:]
        time.sleep(0.002)
    msgs = split_messages(b"".join(chunks))
    assert [m[0] for m in msgs if m[1] == 0x65] == list(range(2, 2 + n))
    entries = [m for m in msgs if m[1] == 0x64]
    assert len(entries) == n * (STAFF + 2)  # ou=staff, teacher1 and the others
    s.close()


# ----------------------------------------------------------------------------- 8. before bind


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("limits")).start()
    yield srv
    srv.stop()


def test_an_anonymous_connection_may_not_hold_a_large_partial_request(server):
    """Review: an unauthenticated connection could hold a 10 MB partial request. Before a
    bind a request may be limits.max_pdu_anonymous (262143) octets: a larger announced
    length is a protocolError at once, before its content arrives."""
    s = raw(server)
    n = 10 * 1024 * 1024 - 16
    s.sendall(b"\x30\x84" + n.to_bytes(4, "big") + b"\x02\x01\x01" + b"\x00" * 65536)
    data, closed = recv_until_closed(s, timeout=3)
    assert closed
    code, text = notice(data)
    assert code == 2 and "limit 262143" in text
    s.close()
    # once bound, the larger limit applies: a 300 KB search is answered
    s = bound(server, JSMITH, "student-pw-1")
    s.sendall(search(2, f"ou=people,{SUFFIX}".encode(), eq(b"description", b"y" * 300_000)))
    msgs = recv_messages(s, 1)
    assert msgs[-1][:2] == (2, 0x65) and ldap_result(msgs[-1][2])[0] == 0
    s.close()


def test_requests_pipelined_after_a_bind_wait_for_it(server):
    """RFC 4511 4.2.1 / slapd: what follows a bind on the connection is read once the bind
    is done, and runs as the new identity; so the large-request limit of a bound client
    applies to it too."""
    s = raw(server)
    big = search(3, f"ou=people,{SUFFIX}".encode(), eq(b"description", b"y" * 300_000))
    s.sendall(bind_request(1, TEACHER.encode(), b"staff-pw-1") + whoami_request(2) + big)
    msgs = recv_messages(s, 3)
    assert [(m[0], m[1]) for m in msgs] == [(1, 0x61), (2, 0x78), (3, 0x65)]
    assert (0x8B, b"dn:" + TEACHER.encode()) in ldap_result(msgs[1][2])[3]
    assert ldap_result(msgs[2][2])[0] == 0
    s.close()


def test_idle_timeout_is_on_by_default():
    from directory.config import check_document, sections  # noqa: F401

    limits = check_document({"suffix": SUFFIX, "listeners": [], "root": {"dn": ROOT_DN, "password": "x"},
                             "store": {"path": "x"}, "schema": []})["limits"]
    assert limits["idle_timeout"] == 900 and limits["max_pdu_anonymous"] == 262143


# ----------------------------------------------------------------------------- 8. filters


def big_or(n: int) -> bytes:
    return tlv(0xA1, b"".join(eq(b"uid", b"u%d" % i) for i in range(n)))


def test_a_huge_filter_is_refused_before_it_is_evaluated(server):
    """Review: 'a student's 300,000-term OR filter stalled others for 7 s'. Beyond
    limits.filter_max_terms (1000) a filter is adminLimitExceeded, decided while it is
    decoded; the connection and everyone else go on."""
    s = bound(server, JSMITH, "student-pw-1")
    other = root_ldap3(server)
    flt = big_or(300_000)
    assert len(flt) > 4_000_000
    t0 = time.monotonic()
    s.sendall(search(2, SUFFIX.encode(), flt))
    [(msgid, op_tag, op)] = recv_messages(s, 1, timeout=10)
    took = time.monotonic() - t0
    code, _, text, _ = ldap_result(op)
    assert (msgid, op_tag, code) == (2, 0x65, 11), text
    assert b"more than 1000 elements" in text
    assert took < 1.5, f"refusing took {took:.2f}s"
    assert timed_search(other) < 1.0
    # nesting: 40 levels of (!(!(...)))
    deep = eq(b"uid", b"jsmith")
    for _ in range(40):
        deep = tlv(0xA2, deep)
    s.sendall(search(3, SUFFIX.encode(), deep))
    [(msgid, op_tag, op)] = recv_messages(s, 1)
    assert (msgid, op_tag, ldap_result(op)[0]) == (3, 0x65, 11)
    assert b"nested deeper than 32 levels" in ldap_result(op)[2]
    # the same connection still searches; a filter within the limits is evaluated
    within = tlv(0xA1, b"".join(eq(b"uid", b"u%d" % i) for i in range(998)) + eq(b"uid", b"jsmith"))
    s.sendall(search(4, f"ou=people,{SUFFIX}".encode(), within))  # 1,000 elements
    msgs = recv_messages(s, 1)
    assert msgs[-1][:2] == (4, 0x65) and ldap_result(msgs[-1][2])[0] == 0
    assert whoami(s) == b"dn:" + JSMITH.encode()
    s.close()
    other.unbind()


def test_the_root_dn_is_exempt_from_the_filter_limits(server):
    s = bound(server, ROOT_DN, ROOT_PW)
    s.sendall(search(2, f"ou=people,{SUFFIX}".encode(), tlv(0xA1, big_or(3000) + eq(b"uid", b"jsmith"))))
    msgs = recv_messages(s, 2)
    assert [m[:2] for m in msgs] == [(2, 0x64), (2, 0x65)] and ldap_result(msgs[-1][2])[0] == 0
    s.close()


def test_an_assertion_control_filter_is_limited_too(server):
    """The assertion control (RFC 4528) carries a filter as well: adminLimitExceeded, never 80."""
    s = bound(server, JSMITH, "student-pw-1")
    ctl = tlv(0x30, tlv(0x04, b"1.3.6.1.1.12") + tlv(0x01, b"\xff") + tlv(0x04, big_or(5000)))
    req = search(2, JSMITH.encode(), tlv(0x87, b"objectClass"))
    # splice the controls [0] into the LDAPMessage
    body = req[4:] if req[1] & 0x80 else req[2:]
    s.sendall(tlv(0x30, body + tlv(0xA0, ctl)))
    [(msgid, op_tag, op)] = recv_messages(s, 1)
    assert (msgid, op_tag, ldap_result(op)[0]) == (2, 0x65, 11), ldap_result(op)
    assert whoami(s) == b"dn:" + JSMITH.encode()
    s.close()


# ----------------------------------------------------------------------------- 8. connections


def test_connections_per_address_and_in_all(tmp_path):
    srv = ServerProcess(tmp_path, extra_config={
        "limits": {"max_connections": 6, "max_connections_per_address": 4}}).start()
    try:
        time.sleep(0.5)  # the start-up probes' connections (from 127.0.0.1) are gone
        mine = [raw(srv, "127.0.0.4") for _ in range(4)]
        for i, s in enumerate(mine):
            assert whoami(s, 10 + i) == b""
        extra = raw(srv, "127.0.0.4")  # loopback is not special
        data, closed = recv_until_closed(extra, timeout=3)
        assert closed and notice(data) == (51, "too many connections from 127.0.0.4 (limit 4); "
                                               "close some and try again")
        others = [raw(srv, "127.0.0.2") for _ in range(2)]
        for s in others:
            assert whoami(s) == b""
        third = raw(srv, "127.0.0.3")
        data, closed = recv_until_closed(third, timeout=3)
        assert closed and notice(data)[0] == 51 and "too many connections (limit 6)" in notice(data)[1]
        # the admitted ones are still served; a closed one frees its place
        assert whoami(mine[0]) == b""
        mine.pop().close()
        deadline = time.monotonic() + 3
        while True:
            s = raw(srv, "127.0.0.4")
            try:
                assert whoami(s) == b""
                break
            except (AssertionError, OSError):
                s.close()
                assert time.monotonic() < deadline, "a closed connection did not free its place"
                time.sleep(0.1)
        for c in mine + others + [s, extra, third]:
            c.close()
    finally:
        srv.stop()


# ----------------------------------------------------------------------------- 9. binds


def test_pipelined_binds_do_not_get_past_the_address_throttle(tmp_path):
    """Review: pipelined binds on one connection were all verified before the first
    failure was counted. Now a connection has one bind in flight: after
    password_policy.source_max_failures failures the rest are refused unverified."""
    srv = ServerProcess(tmp_path, extra_config={
        "password_policy": {"max_failures": 1000, "source_max_failures": 5, "source_window": 60}}).start()
    try:
        s = raw(srv)
        s.sendall(b"".join(bind_request(i, TEACHER.encode(), b"wrong-password") for i in range(1, 31)))
        msgs = recv_messages(s, 30, timeout=10)
        codes = [ldap_result(m[2])[0] for m in msgs]
        assert [m[0] for m in msgs] == list(range(1, 31))
        assert codes == [49] * 5 + [53] * 25, codes
        s.close()
        assert srv.log_path.read_text().count("wrong password") == 5
    finally:
        srv.stop()


def test_binds_in_flight_per_address(tmp_path):
    """limits.max_binds_per_address: a client with many connections cannot queue
    password checks for all of them; the extra binds are answered busy (51), and
    another address binds meanwhile."""
    srv = ServerProcess(tmp_path, extra_config={
        "limits": {"max_binds_per_address": 2},
        "passwords": {"scheme": "ARGON2", "argon2": {"time_cost": 1, "memory_cost": 32768, "parallelism": 1},
                      "hash_threads": 1}}).start()
    try:
        conns = [raw(srv) for _ in range(8)]
        for i, s in enumerate(conns):
            s.sendall(bind_request(1, TEACHER.encode(), b"staff-pw-1"))
        results = []
        for s in conns:
            [(msgid, op_tag, op)] = recv_messages(s, 1, timeout=10)
            results.append(ldap_result(op))
        codes = sorted(r[0] for r in results)
        assert codes.count(51) >= 4 and 0 in codes, codes
        assert all(r[2] == b"too many binds in progress from this address; wait for their results"
                   for r in results if r[0] == 51)
        # another address is not affected, and a refused connection may bind again
        elsewhere = bound(srv, TEACHER, "staff-pw-1", source="127.0.0.2")
        assert whoami(elsewhere) == b"dn:" + TEACHER.encode()
        busy = conns[[r[0] for r in results].index(51)]
        busy.sendall(bind_request(2, TEACHER.encode(), b"staff-pw-1"))
        [(msgid, op_tag, op)] = recv_messages(busy, 1, timeout=10)
        assert (msgid, ldap_result(op)[0]) == (2, 0)
        for c in conns + [elsewhere]:
            c.close()
    finally:
        srv.stop()
