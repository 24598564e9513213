"""Malformed input over raw sockets.

For every kind of bad input: the offending connection gets a Notice of Disconnection
(an ExtendedResponse with messageID 0 and resultCode protocolError) or is simply
closed; a connection that was already open before keeps being answered; and a new
client (ldapsearch) is served as usual.
"""
import socket
import subprocess
import time

import ldap3
import pytest

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, requires_ldap_utils

pytestmark = requires_ldap_utils

NOTICE_OID = b"1.3.6.1.4.1.1466.20036"
WHOAMI_OID = b"1.3.6.1.4.1.4203.1.11.3"
DEFAULT_MAX_PDU = 10 * 1024 * 1024  # limits.max_pdu when the config does not set it
JSMITH = f"uid=jsmith,ou=students,ou=people,{SUFFIX}"


# ----------------------------------------------------------------------------- BER, written
# independently of the server's codec


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(body))) + body + content


def integer(tag: int, n: int) -> bytes:
    return tlv(tag, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def message(msgid: int, op: bytes) -> bytes:
    return tlv(0x30, integer(0x02, msgid) + op)


def bind_request(msgid, dn=b"", password=b""):
    return message(msgid, tlv(0x60, integer(0x02, 3) + tlv(0x04, dn) + tlv(0x80, password)))


def whoami_request(msgid):
    return message(msgid, tlv(0x77, tlv(0x80, WHOAMI_OID)))


def search_request(msgid, base: bytes, uid: bytes):
    flt = tlv(0xA3, tlv(0x04, b"uid") + tlv(0x04, uid))
    body = (tlv(0x04, base) + integer(0x0A, 2) + integer(0x0A, 0) + integer(0x02, 0) + integer(0x02, 0)
            + tlv(0x01, b"\x00") + flt + tlv(0x30, tlv(0x04, b"1.1")))
    return message(msgid, tlv(0x63, body))


def read_tlv(buf: bytes, i: int):
    """(tag, content, next offset) of the element at buf[i]; raises IndexError if incomplete."""
    tag = buf[i]
    n = buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if i + k > len(buf):
            raise IndexError
        n = int.from_bytes(buf[i : i + k], "big")
        i += k
    if i + n > len(buf):
        raise IndexError
    return tag, buf[i : i + n], i + n


def split_messages(data: bytes):
    """[(msgid, op_tag, op_content)] for each complete LDAPMessage in data."""
    out, i = [], 0
    while i < len(data):
        try:
            tag, content, i = read_tlv(data, i)
        except IndexError:
            break
        assert tag == 0x30, f"response is not an LDAPMessage: {data!r}"
        _, mid, j = read_tlv(content, 0)
        op_tag, op, _ = read_tlv(content, j)
        out.append((int.from_bytes(mid, "big"), op_tag, op))
    return out


def ldap_result(op: bytes):
    """(resultCode, matchedDN, message, [extra elements]) of an LDAPResult-shaped op."""
    _, code, i = read_tlv(op, 0)
    _, matched, i = read_tlv(op, i)
    _, msg, i = read_tlv(op, i)
    extra = []
    while i < len(op):
        t, c, i = read_tlv(op, i)
        extra.append((t, c))
    return int.from_bytes(code, "big"), matched, msg, extra


def recv_until_closed(sock, timeout=5.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; (data, closed)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def recv_messages(sock, count, timeout=5.0):
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = split_messages(data)
        if len(msgs) >= count:
            return msgs
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    raise AssertionError(f"expected {count} messages, got {split_messages(data)!r}")


def connect(srv):
    port = int(srv.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def assert_disconnected(sock, require_notice=False):
    """The server either sent a Notice of Disconnection (protocolError) and closed, or closed."""
    data, closed = recv_until_closed(sock)
    assert closed, f"the server kept the connection open after bad input (sent {data!r})"
    msgs = split_messages(data)
    if require_notice:
        assert msgs, "no Notice of Disconnection"
    for msgid, op_tag, op in msgs:
        assert msgid == 0 and op_tag == 0x78, f"unexpected response {msgs!r}"
        code, _, _, extra = ldap_result(op)
        assert code == 2, f"notice resultCode {code}, expected protocolError (2)"
        assert (0x8A, NOTICE_OID) in extra, f"notice without responseName {NOTICE_OID!r}: {extra!r}"
    return msgs


# ----------------------------------------------------------------------------- live checks


class LiveConnections:
    """Two connections opened before the bad one: ldap3 bound as the root DN, and a raw
    socket bound as jsmith."""

    def __init__(self, srv):
        import ldap3

        self.srv = srv
        port = int(srv.url.rsplit(":", 1)[1])
        self.ldap3 = ldap3.Connection(ldap3.Server("127.0.0.1", port=port, connect_timeout=5),
                                      user=ROOT_DN, password=ROOT_PW, receive_timeout=10)
        assert self.ldap3.bind(), self.ldap3.result
        self.raw = connect(srv)
        self.raw.sendall(bind_request(1, JSMITH.encode(), b"student-pw-1"))
        [(msgid, op_tag, op)] = recv_messages(self.raw, 1)
        assert (msgid, op_tag, ldap_result(op)[0]) == (1, 0x61, 0)
        self.next_id = 2

    def check(self):
        # ldap3: a search
        assert self.ldap3.search(f"ou=people,{SUFFIX}", "(uid=mgarcia)", attributes=["uid"])
        assert [e.entry_dn for e in self.ldap3.entries] == [f"uid=mgarcia,ou=students,ou=people,{SUFFIX}"]
        # raw: WhoAmI and a search, pipelined
        a, b = self.next_id, self.next_id + 1
        self.next_id += 2
        self.raw.sendall(whoami_request(a) + search_request(b, f"ou=people,{SUFFIX}".encode(), b"teacher1"))
        msgs = recv_messages(self.raw, 3)
        who = [m for m in msgs if m[0] == a]
        assert who and who[0][1] == 0x78
        code, _, _, extra = ldap_result(who[0][2])
        assert code == 0 and (0x8B, b"dn:" + JSMITH.encode()) in extra
        found = [m for m in msgs if m[0] == b and m[1] == 0x64]
        done = [m for m in msgs if m[0] == b and m[1] == 0x65]
        assert len(found) == 1 and done and ldap_result(done[0][2])[0] == 0

    def close(self):
        self.ldap3.unbind()
        self.raw.close()


@pytest.fixture
def live(server):
    conns = LiveConnections(server)
    yield conns
    conns.close()


def new_client_works(srv):
    r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", srv.url, "-D", ROOT_DN, "-w", ROOT_PW,
                        "-b", f"ou=people,{SUFFIX}", "(uid=jsmith)", "1.1"],
                       capture_output=True, text=True, env=srv.env(), timeout=30)
    assert r.returncode == 0, r
    assert r.stdout.strip() == f"dn: {JSMITH}"


def after_bad_input(srv, live):
    live.check()
    new_client_works(srv)


# ----------------------------------------------------------------------------- the cases


def test_garbage_bytes(server, live):
    with connect(server) as s:
        s.sendall(b"\xde\xad\xbe\xef garbage \x00\x01\x02" * 10)
        assert_disconnected(s, require_notice=True)
    after_bad_input(server, live)


def test_http_request(server, live):
    with connect(server) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert_disconnected(s)
    after_bad_input(server, live)


def test_truncated_pdu_then_close(server, live):
    whole = bind_request(1, JSMITH.encode(), b"student-pw-1")
    with connect(server) as s:
        s.sendall(whole[: len(whole) // 2])
        time.sleep(0.2)
        live.check()  # a half-received PDU on one connection holds up no one else
        s.shutdown(socket.SHUT_WR)  # and no more: the server must give up on it
        data, closed = recv_until_closed(s)
        assert closed
        for msgid, op_tag, op in split_messages(data):
            assert msgid == 0 and op_tag == 0x78 and ldap_result(op)[0] == 2
    after_bad_input(server, live)


def test_truncated_pdu_abrupt_close(server, live):
    whole = search_request(7, SUFFIX.encode(), b"jsmith")
    s = connect(server)
    s.sendall(whole[:5])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # RST
    after_bad_input(server, live)


def test_wrong_outer_tag(server, live):
    good = bind_request(1)
    with connect(server) as s:
        s.sendall(b"\x31" + good[1:])  # SET instead of SEQUENCE
        assert_disconnected(s, require_notice=True)
    after_bad_input(server, live)


def test_wrong_protocol_op_tag(server, live):
    with connect(server) as s:
        s.sendall(message(1, tlv(0x7F - 0x20, b"\x00")))  # [APPLICATION 31] primitive
        assert_disconnected(s, require_notice=True)
    after_bad_input(server, live)


def test_indefinite_length(server, live):
    with connect(server) as s:
        body = integer(0x02, 1) + tlv(0x60, integer(0x02, 3) + tlv(0x04, b"") + tlv(0x80, b""))
        s.sendall(b"\x30\x80" + body + b"\x00\x00")
        assert_disconnected(s, require_notice=True)
    after_bad_input(server, live)


def test_oversized_declared_length(server, live):
    with connect(server) as s:
        n = DEFAULT_MAX_PDU + 1
        s.sendall(b"\x30\x84" + n.to_bytes(4, "big") + b"\x02\x01\x01")
        assert_disconnected(s, require_notice=True)
    after_bad_input(server, live)


def test_huge_length_field(server, live):
    with connect(server) as s:
        s.sendall(b"\x30\x88" + b"\xff" * 8)  # a length of 8 octets
        assert_disconnected(s, require_notice=True)
    after_bad_input(server, live)


def test_valid_bind_then_garbage(server, live):
    with connect(server) as s:
        s.sendall(bind_request(1, JSMITH.encode(), b"student-pw-1"))
        [(msgid, op_tag, op)] = recv_messages(s, 1)
        assert (msgid, op_tag, ldap_result(op)[0]) == (1, 0x61, 0)
        s.sendall(b"\x30\x03\x02\x01")  # a message whose content is cut short inside
        s.sendall(b"\x05" + b"\xff" * 20)
        assert_disconnected(s, require_notice=True)
    after_bad_input(server, live)


_S = SUFFIX.encode()
_JS = JSMITH.encode()
MALFORMED_REQUESTS = {
    # the LDAPMessage framing is right, the protocolOp inside is not
    "add-attributes-not-a-sequence": tlv(0x68, tlv(0x04, b"cn=x," + _S) + integer(0x02, 5)),
    "add-attribute-without-values": tlv(0x68, tlv(0x04, b"cn=x," + _S) + tlv(0x30, tlv(0x30, tlv(0x04, b"cn")))),
    "add-dn-invalid-utf8": tlv(0x68, tlv(0x04, b"cn=\xff," + _S) + tlv(0x30, b"")),
    "add-type-invalid-utf8": tlv(0x68, tlv(0x04, b"cn=x," + _S) + tlv(0x30, tlv(0x30, tlv(0x04, b"c\xffn")
                                                                                + tlv(0x31, tlv(0x04, b"x"))))),
    "modify-changes-not-a-sequence": tlv(0x66, tlv(0x04, _JS) + integer(0x02, 5)),
    "modify-change-without-modification": tlv(0x66, tlv(0x04, _JS) + tlv(0x30, tlv(0x30, integer(0x0A, 0)))),
    "delete-dn-invalid-utf8": tlv(0x4A, b"cn=\xff," + _S),
    "compare-without-ava": tlv(0x6E, tlv(0x04, _JS)),
    "moddn-without-newrdn": tlv(0x6C, tlv(0x04, _JS)),
    "extended-without-name": tlv(0x77, b""),
    "extended-name-invalid-utf8": tlv(0x77, tlv(0x80, b"\xff\xfe")),
    # every path of the decoder for these operations: wrong tags, overruns, invalid UTF-8, trailing octets
    "add-values-a-sequence": tlv(0x68, tlv(0x04, b"cn=x," + _S) + tlv(0x30, tlv(0x30, tlv(0x04, b"cn")
                                                                              + tlv(0x30, tlv(0x04, b"x"))))),
    "add-value-not-octets": tlv(0x68, tlv(0x04, b"cn=x," + _S) + tlv(0x30, tlv(0x30, tlv(0x04, b"cn")
                                                                              + tlv(0x31, integer(0x02, 1))))),
    "add-value-overruns-set": tlv(0x68, tlv(0x04, b"cn=x," + _S) + tlv(0x30, tlv(0x30, tlv(0x04, b"cn")
                                                                                + b"\x31\x03\x04\x09abc"))),
    "add-trailing-after-attributes": tlv(0x68, tlv(0x04, b"cn=x," + _S) + tlv(0x30, b"") + tlv(0x04, b"x")),
    "add-dn-an-integer": tlv(0x68, integer(0x02, 1) + tlv(0x30, b"")),
    "modify-operation-an-integer": tlv(0x66, tlv(0x04, _JS) + tlv(0x30, tlv(0x30, integer(0x02, 2) + tlv(
        0x30, tlv(0x04, b"sn") + tlv(0x31, tlv(0x04, b"x")))))),
    "modify-without-values": tlv(0x66, tlv(0x04, _JS) + tlv(0x30, tlv(0x30, integer(0x0A, 2) + tlv(
        0x30, tlv(0x04, b"sn"))))),
    "modify-trailing-in-change": tlv(0x66, tlv(0x04, _JS) + tlv(0x30, tlv(0x30, integer(0x0A, 2) + tlv(
        0x30, tlv(0x04, b"sn") + tlv(0x31, tlv(0x04, b"x"))) + tlv(0x04, b"")))),
    "modify-type-invalid-utf8": tlv(0x66, tlv(0x04, _JS) + tlv(0x30, tlv(0x30, integer(0x0A, 2) + tlv(
        0x30, tlv(0x04, b"s\xc3") + tlv(0x31, tlv(0x04, b"x")))))),
    "modify-dn-invalid-utf8": tlv(0x66, tlv(0x04, b"uid=\xe9," + _S) + tlv(0x30, b"")),
    "modify-change-overruns": tlv(0x66, tlv(0x04, _JS) + tlv(0x30, b"\x30\x7f\x0a\x01\x02")),
    "moddn-deleteoldrdn-an-integer": tlv(0x6C, tlv(0x04, _JS) + tlv(0x04, b"uid=x") + integer(0x02, 1)),
    "moddn-newsuperior-wrong-tag": tlv(0x6C, tlv(0x04, _JS) + tlv(0x04, b"uid=x") + tlv(0x01, b"\xff")
                                       + tlv(0x04, _S)),
    "moddn-newrdn-invalid-utf8": tlv(0x6C, tlv(0x04, _JS) + tlv(0x04, b"uid=\xff") + tlv(0x01, b"\xff")),
    "moddn-trailing": tlv(0x6C, tlv(0x04, _JS) + tlv(0x04, b"uid=x") + tlv(0x01, b"\xff") + tlv(0x80, _S)
                          + tlv(0x80, _S)),
    "compare-ava-a-set": tlv(0x6E, tlv(0x04, _JS) + tlv(0x31, tlv(0x04, b"sn") + tlv(0x04, b"Smith"))),
    "compare-value-missing": tlv(0x6E, tlv(0x04, _JS) + tlv(0x30, tlv(0x04, b"sn"))),
    "compare-attr-invalid-utf8": tlv(0x6E, tlv(0x04, _JS) + tlv(0x30, tlv(0x04, b"s\xffn") + tlv(0x04, b"x"))),
    "compare-trailing": tlv(0x6E, tlv(0x04, _JS) + tlv(0x30, tlv(0x04, b"sn") + tlv(0x04, b"Smith")) + b"\x04\x00"),
    "delete-constructed": tlv(0x6A, tlv(0x04, _JS)),
    "extended-name-an-octet-string": tlv(0x77, tlv(0x04, WHOAMI_OID)),
    "extended-value-wrong-tag": tlv(0x77, tlv(0x80, WHOAMI_OID) + tlv(0x04, b"")),
    "extended-trailing": tlv(0x77, tlv(0x80, WHOAMI_OID) + tlv(0x81, b"") + tlv(0x81, b"")),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_REQUESTS))
def test_valid_pdu_with_malformed_content(server, live, name):
    with connect(server) as s:
        s.sendall(bind_request(1, ROOT_DN.encode(), ROOT_PW.encode()))
        [(_, _, op)] = recv_messages(s, 1)
        assert ldap_result(op)[0] == 0
        s.sendall(message(2, MALFORMED_REQUESTS[name]))
        data, closed = recv_until_closed(s)
        msgs = split_messages(data)
        # a protocolError answer to the request, or a notice and the connection closed;
        # never "internal server error", never success
        assert msgs or closed, "no answer and the connection left open"
        for msgid, op_tag, op in msgs:
            assert msgid in (0, 2), msgs
            assert ldap_result(op)[0] == 2, msgs
    after_bad_input(server, live)
    # and nothing was written
    assert live.ldap3.search(SUFFIX, "(|(cn=x)(uid=jsmith))", attributes=["sn"])
    assert [e.entry_dn for e in live.ldap3.entries] == [JSMITH]
    assert live.ldap3.entries[0].sn.value == "Smith"


def test_bad_filter_in_search(server, live):
    with connect(server) as s:
        bad = (tlv(0x04, SUFFIX.encode()) + integer(0x0A, 2) + integer(0x0A, 0) + integer(0x02, 0)
               + integer(0x02, 0) + tlv(0x01, b"\x00") + tlv(0xAF, b"\x04\x01x") + tlv(0x30, b""))
        s.sendall(message(3, tlv(0x63, bad)))
        assert_disconnected(s, require_notice=True)
    after_bad_input(server, live)


def test_invalid_utf8_dn(server, live):
    with connect(server) as s:
        s.sendall(bind_request(1, b"cn=\xff\xfe," + SUFFIX.encode(), b"x"))
        data, closed = recv_until_closed(s)
        msgs = split_messages(data)
        for msgid, op_tag, op in msgs:
            assert (msgid, op_tag) in ((1, 0x61), (0, 0x78)), msgs
            assert ldap_result(op)[0] in (2, 34, 49), msgs
        assert closed or msgs
    after_bad_input(server, live)


def test_many_bad_connections(server, live):
    """A burst of bad clients does not wear the server down."""
    socks = [connect(server) for _ in range(30)]
    for i, s in enumerate(socks):
        s.sendall([b"\xff" * 4, b"\x30\x80\x00\x00", b"\x30\x84\x7f\xff\xff\xff"][i % 3])
    for s in socks:
        assert_disconnected(s)
        s.close()
    after_bad_input(server, live)


# ----------------------------------------------------------------------------- StartTLS injection

STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def _starttls(srv, trailing: bytes):
    """Send StartTLS with `trailing` in clear right behind it, in one segment; do the
    handshake; send a WhoAmI (msgid 9) over TLS. Returns the messages received over TLS."""
    import ssl

    s = connect(srv)
    s.sendall(message(1, tlv(0x77, tlv(0x80, STARTTLS_OID))) + trailing)
    data = b""
    while not split_messages(data):
        chunk = s.recv(4096)
        assert chunk, "closed before the StartTLS response"
        data += chunk
    [(msgid, op_tag, op)] = split_messages(data)
    code, _, _, extra = ldap_result(op)
    assert (msgid, op_tag, code) == (1, 0x78, 0) and (0x8A, STARTTLS_OID) in extra
    ctx = ssl.create_default_context(cafile=str(srv.ca_file))
    ctx.check_hostname = False
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    got = b""
    try:
        t.settimeout(3)
        t.sendall(whoami_request(9))
        while True:
            chunk = t.recv(4096)
            if not chunk:
                break
            got += chunk
            if any(m[0] == 9 for m in split_messages(got)):
                break
    except (OSError, ssl.SSLError):
        pass
    finally:
        t.close()
    return split_messages(got)


def test_starttls_then_tls_works(server, live):
    msgs = _starttls(server, b"")
    assert [(m[0], m[1]) for m in msgs] == [(9, 0x78)]
    code, _, _, extra = ldap_result(msgs[0][2])
    assert code == 0 and (0x8B, b"") in extra  # anonymous
    after_bad_input(server, live)


@pytest.mark.parametrize("injected", ["whole-pdu", "bind-pdu", "partial-pdu"])
def test_starttls_command_injection(server, live, injected):
    """Bytes sent in clear right after StartTLS (before the handshake) must not be
    executed inside the TLS session (RFC 4511 4.14.1; cf. CVE-2011-0411)."""
    trailing = {
        "whole-pdu": whoami_request(2),
        "bind-pdu": bind_request(2, JSMITH.encode(), b"student-pw-1"),
        "partial-pdu": whoami_request(2)[:6],
    }[injected]
    msgs = _starttls(server, trailing)
    assert not [m for m in msgs if m[0] == 2], f"the injected request was answered: {msgs!r}"
    assert not [m for m in msgs if m[0] == 9 and ldap_result(m[2])[3] == [(0x8B, b"dn:" + JSMITH.encode())]]
    for msgid, op_tag, op in msgs:
        assert msgid == 0 and ldap_result(op)[0] == 2, msgs  # only a Notice of Disconnection
    after_bad_input(server, live)


def test_idle_connections_are_closed(tmp_path):
    """limits.idle_timeout: a connection that sends nothing is told and closed; an
    active one is not."""
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path, extra_config={"limits": {"idle_timeout": 1}}).start()
    try:
        idle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        busy = ldap3.Connection(ldap3.Server(srv.url), auto_bind=True)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            busy.search("", "(objectClass=*)", search_scope=ldap3.BASE)
            time.sleep(0.3)
        data = idle.recv(4096)
        assert b"1.3.6.1.4.1.1466.20036" in data  # Notice of Disconnection
        assert idle.recv(4096) == b""  # then closed
        assert busy.search("", "(objectClass=*)", search_scope=ldap3.BASE)
    finally:
        srv.stop()


# ----------------------------------------------------------------------------- every operation, decoded by
# the server's codec: valid requests answered, oversized ones refused (limits.request_*)


def add_request(msgid, dn: bytes, attrs):
    body = b"".join(tlv(0x30, tlv(0x04, a) + tlv(0x31, b"".join(tlv(0x04, v) for v in vs))) for a, vs in attrs)
    return message(msgid, tlv(0x68, tlv(0x04, dn) + tlv(0x30, body)))


def modify_request(msgid, dn: bytes, changes, controls: bytes = b""):
    body = b"".join(tlv(0x30, integer(0x0A, op) + tlv(0x30, tlv(0x04, a) + tlv(0x31, b"".join(tlv(0x04, v) for v in vs))))
                    for op, a, vs in changes)
    return tlv(0x30, integer(0x02, msgid) + tlv(0x66, tlv(0x04, dn) + tlv(0x30, body)) + controls)


def repeated_change_modify(msgid, dn: bytes, count: int) -> bytes:
    """A modify of `count` changes (replace cn: a 10-octet value), built without a list of
    `count` elements: the 4 MB, 160,000-change request of the security report."""
    one = tlv(0x30, integer(0x0A, 2) + tlv(0x30, tlv(0x04, b"cn") + tlv(0x31, tlv(0x04, b"0123456789"))))
    return message(msgid, tlv(0x66, tlv(0x04, dn) + tlv(0x30, one * count)))


def many_values_modify(msgid, dn: bytes, count: int) -> bytes:
    """One change with `count` values (add description)."""
    values = b"".join(tlv(0x04, b"value-%017d" % i) for i in range(count))
    return message(msgid, tlv(0x66, tlv(0x04, dn) + tlv(0x30, tlv(0x30, integer(0x0A, 0) + tlv(
        0x30, tlv(0x04, b"description") + tlv(0x31, values))))))


def answer(sock, msgid, timeout=10.0):
    """(op tag, resultCode, diagnosticMessage) of the response to msgid."""
    for m, op_tag, op in recv_messages(sock, 1, timeout):
        assert m == msgid, (m, op_tag, op)
        code, _, text, _ = ldap_result(op)
        return op_tag, code, text.decode()


def bound(srv, dn: str | None = None, password: str | None = None):
    s = connect(srv)
    if dn is not None:
        s.sendall(bind_request(1, dn.encode(), password.encode()))
        assert answer(s, 1)[:2] == (0x61, 0)
    return s


def test_every_operation_over_the_codec(server, live):
    """Add, compare, modify, modDN, delete and extended, sent as raw PDUs, decoded by the
    server's codec and answered as before."""
    dn = f"uid=codec,ou=students,ou=people,{SUFFIX}".encode()
    with bound(server, ROOT_DN, ROOT_PW) as s:
        s.sendall(add_request(2, dn, [(b"objectClass", [b"inetOrgPerson"]), (b"uid", [b"codec"]), (b"cn", [b"C"]),
                                      (b"sn", [b"Codec"]), (b"description", [b"a", b"b"])]))
        assert answer(s, 2)[:2] == (0x69, 0)
        s.sendall(message(3, tlv(0x6E, tlv(0x04, dn) + tlv(0x30, tlv(0x04, b"sn") + tlv(0x04, b"codec")))))
        assert answer(s, 3)[:2] == (0x6F, 6)  # compareTrue
        s.sendall(modify_request(4, dn, [(0, b"mail", [b"c@district.example"]), (1, b"description", [b"a"]),
                                         (2, b"cn", [b"C", b"Codec"])]))
        assert answer(s, 4)[:2] == (0x67, 0)
        s.sendall(modify_request(5, dn, [(7, b"cn", [b"x"])]))  # an unknown operation: the core's answer
        assert answer(s, 5)[:2] == (0x67, 2)
        s.sendall(message(6, tlv(0x6C, tlv(0x04, dn) + tlv(0x04, b"uid=codec2") + tlv(0x01, b"\xff")
                                 + tlv(0x80, f"ou=staff,ou=people,{SUFFIX}".encode()))))
        assert answer(s, 6)[:2] == (0x6D, 0)
        moved = f"uid=codec2,ou=staff,ou=people,{SUFFIX}".encode()
        s.sendall(message(7, tlv(0x6E, tlv(0x04, moved) + tlv(0x30, tlv(0x04, b"description") + tlv(0x04, b"a")))))
        assert answer(s, 7)[:2] == (0x6F, 5)  # compareFalse: deleted by the modify
        s.sendall(message(8, tlv(0x4A, moved)))
        assert answer(s, 8)[:2] == (0x6B, 0)
        s.sendall(message(9, tlv(0x4A, moved)))
        assert answer(s, 9)[:2] == (0x6B, 32)
        s.sendall(whoami_request(10))
        [(msgid, op_tag, op)] = recv_messages(s, 1)
        assert (msgid, op_tag) == (10, 0x78) and ldap_result(op)[3] == [(0x8B, b"dn:" + ROOT_DN.encode())]
    after_bad_input(server, live)


@pytest.mark.parametrize("kind", ["changes", "values"])
def test_huge_anonymous_modify_does_not_stall_other_clients(server, live, kind):
    """The report's request: one modify of ~4 MB with 160,000 changes (or one change
    with 160,000 values). Anonymous, it is cut off at limits.max_pdu_anonymous (256 KB,
    test_limits.py); from a bound user it reaches the decoder, which refuses it
    (adminLimitExceeded, over limits.request_changes / request_values_per_attribute)
    while another client's searches are each answered within a second; ldaptor took
    ~25 s to decode it, on the reactor."""
    import threading

    pdu = (repeated_change_modify(5, JSMITH.encode(), 160_000) if kind == "changes"
           else many_values_modify(5, JSMITH.encode(), 160_000))
    assert len(pdu) > 3_900_000
    searcher = bound(server, JSMITH, "student-pw-1")
    attacker = bound(server, JSMITH, "student-pw-1")
    got = {}

    def attack():
        t = time.monotonic()
        attacker.sendall(pdu)
        got["sent"] = time.monotonic() - t
        got["answer"] = answer(attacker, 5, timeout=60)
        got["done"] = time.monotonic() - t

    thread = threading.Thread(target=attack)
    latencies = []
    try:
        thread.start()
        msgid = 10
        while thread.is_alive() or not latencies:
            t = time.monotonic()
            searcher.sendall(search_request(msgid, f"ou=people,{SUFFIX}".encode(), b"teacher1"))
            msgs = recv_messages(searcher, 2, timeout=30)
            latencies.append(time.monotonic() - t)
            assert [(m[0], m[1]) for m in msgs] == [(msgid, 0x64), (msgid, 0x65)]
            msgid += 1
        thread.join(60)
    finally:
        searcher.close()
        attacker.close()
    op_tag, code, text = got["answer"]
    assert (op_tag, code) == (0x67, 11), got  # adminLimitExceeded, never 80
    assert ("limits.request_changes" if kind == "changes" else "limits.request_values_per_attribute") in text
    assert max(latencies) < 1.0, (latencies, got)
    assert got["done"] < 10, got
    after_bad_input(server, live)


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("capped"), extra_config={"limits": {
        "request_attributes": 6, "request_values_per_attribute": 3, "request_values": 8, "request_changes": 4}}).start()
    yield srv
    srv.stop()


def _add_attrs(n_attrs=5, per_attr=(1,) * 5):
    attrs = [(b"objectClass", [b"inetOrgPerson"]), (b"uid", [b"capped"]), (b"cn", [b"C"]), (b"sn", [b"S"])]
    attrs += [(name, [b"v%d" % i for i in range(n)]) for name, n in zip((b"description", b"title", b"l"),
                                                                      per_attr[: n_attrs - 4])]
    return attrs


CAPPED_DN = f"uid=capped,ou=students,ou=people,{SUFFIX}".encode()
OVER_CAPS = {
    # (request, the cap named in the answer)
    "add: attributes": (add_request(2, CAPPED_DN, _add_attrs(7, (1, 1, 1))), "limits.request_attributes"),
    "add: values of an attribute": (add_request(2, CAPPED_DN, _add_attrs(5, (4,))),
                                    "limits.request_values_per_attribute"),
    "add: values in all": (add_request(2, CAPPED_DN, _add_attrs(6, (3, 3))), "limits.request_values)"),
    "modify: changes": (modify_request(2, _JS, [(2, b"description", [b"x"])] * 5), "limits.request_changes"),
    "modify: values of a change": (modify_request(2, _JS, [(0, b"description", [b"1", b"2", b"3", b"4"])]),
                                   "limits.request_values_per_attribute"),
    "modify: values in all": (modify_request(2, _JS, [(0, b"description", [b"1", b"2", b"3"])] * 3),
                              "limits.request_values)"),
}


@pytest.mark.parametrize("name", sorted(OVER_CAPS))
@pytest.mark.parametrize("who", ["anonymous", "jsmith"])
def test_over_the_caps_is_admin_limit_exceeded(capped, name, who):
    pdu, cap = OVER_CAPS[name]
    with bound(capped, *((JSMITH, "student-pw-1") if who == "jsmith" else ())) as s:
        s.sendall(pdu)
        op_tag, code, text = answer(s, 2)
        assert code == 11 and cap in text, (code, text)
        assert op_tag == (0x69 if name.startswith("add") else 0x67)
        s.sendall(whoami_request(3))
        [(msgid, op_tag, op)] = recv_messages(s, 1)  # the connection goes on
        assert (msgid, op_tag, ldap_result(op)[0]) == (3, 0x78, 0)


def test_at_the_caps_is_decoded_and_the_root_dn_is_exempt(capped):
    at_caps = add_request(2, CAPPED_DN, _add_attrs(6, (3, 1)))  # 6 attributes, 8 values, 3 for description
    with bound(capped) as s:  # anonymous: decoded, then refused for want of access (not for its size)
        s.sendall(at_caps)
        assert answer(s, 2)[1] == 50
    with bound(capped, ROOT_DN, ROOT_PW) as s:
        s.sendall(at_caps)
        assert answer(s, 2)[:2] == (0x69, 0)
        for name in sorted(OVER_CAPS):
            if name.startswith("modify"):
                s.sendall(OVER_CAPS[name][0])
                op_tag, code, text = answer(s, 2)
                assert (op_tag, code) in ((0x67, 0), (0x67, 20)), (name, code, text)  # decoded and applied
        s.sendall(modify_request(3, CAPPED_DN, [(2, b"description", [b"v%d" % i for i in range(50)])]
                                 + [(2, b"cn", [b"C"])] * 10))
        assert answer(s, 3)[:2] == (0x67, 0)
        s.sendall(message(4, tlv(0x4A, CAPPED_DN)))
        assert answer(s, 4)[:2] == (0x6B, 0)


# ----------------------------------------------------------------------------- once answered 80


def _new_log(srv, start: int) -> str:
    return srv.log_path.read_bytes()[start:].decode("utf-8", "replace")


ACCOUNT_OP_OID = b"2.25.69814933526364736177629039217756273497.4.1"
ASSERTION_OID = b"1.3.6.1.1.12"


def test_inputs_that_reached_an_unhandled_exception(server, live):
    """A malformed assertion control, deeply nested JSON in the account operation
    (anonymous) and increment by a non-integer: each its exact result code, never
    other (80), and no traceback in the server log."""
    start = server.log_path.stat().st_size
    bad_assertion = tlv(0xA0, tlv(0x30, tlv(0x04, ASSERTION_OID) + tlv(0x01, b"\xff") + tlv(0x04, b"\x04\x01x")))
    with bound(server) as anon:
        # search with a malformed assertion control value: protocolError (2)
        flt = tlv(0x87, b"objectClass")
        search = (tlv(0x04, SUFFIX.encode()) + integer(0x0A, 0) + integer(0x0A, 0) + integer(0x02, 0)
                  + integer(0x02, 0) + tlv(0x01, b"\x00") + flt + tlv(0x30, b""))
        anon.sendall(tlv(0x30, integer(0x02, 2) + tlv(0x63, search) + bad_assertion))
        assert answer(anon, 2)[:2] == (0x65, 2)
        # the account operation with 100,000 nested arrays: protocolError (2)
        nested = b'{"action":"activate","uid":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        anon.sendall(message(3, tlv(0x77, tlv(0x80, ACCOUNT_OP_OID) + tlv(0x81, nested))))
        assert answer(anon, 3)[:2] == (0x78, 2)
        anon.sendall(message(4, tlv(0x77, tlv(0x80, ACCOUNT_OP_OID) + tlv(0x81, b"[" * 100_000))))
        assert answer(anon, 4)[:2] == (0x78, 2)
    dn = f"uid=counter,ou=staff,ou=people,{SUFFIX}".encode()
    with bound(server, ROOT_DN, ROOT_PW) as root:
        # the same malformed assertion on a modify: protocolError (2)
        root.sendall(modify_request(5, _JS, [(2, b"sn", [b"Smith"])], bad_assertion))
        assert answer(root, 5)[:2] == (0x67, 2)
        root.sendall(add_request(6, dn, [(b"objectClass", [b"inetOrgPerson", b"posixAccount"]), (b"uid", [b"counter"]),
                                         (b"cn", [b"C"]), (b"sn", [b"C"]), (b"uidNumber", [b"5000"]),
                                         (b"gidNumber", [b"100"]), (b"homeDirectory", [b"/home/counter"])]))
        assert answer(root, 6)[:2] == (0x69, 0)
        # increment by a non-integer: invalidAttributeSyntax (21), RFC 4525
        for i, value in enumerate([b"abc", b"1.5", b"", b"+1", b" 1", b"1_0", b"01", b"-0", b"9" * 5000]):
            root.sendall(modify_request(10 + i, dn, [(3, b"uidNumber", [value])]))
            op_tag, code, text = answer(root, 10 + i)
            assert (op_tag, code) == (0x67, 21), (value[:10], code, text)
        root.sendall(modify_request(30, dn, [(3, b"uidNumber", [b"-7"])]))
        assert answer(root, 30)[:2] == (0x67, 0)
        root.sendall(message(31, tlv(0x6E, tlv(0x04, dn) + tlv(0x30, tlv(0x04, b"uidNumber") + tlv(0x04, b"4993")))))
        assert answer(root, 31)[:2] == (0x6F, 6)
        root.sendall(message(32, tlv(0x4A, dn)))
        assert answer(root, 32)[:2] == (0x6B, 0)
    after_bad_input(server, live)
    time.sleep(0.2)  # the log is written by the server process
    log = _new_log(server, start)
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_add_answers_the_same_whether_or_not_the_entry_exists(server):
    """Security report item 11: an add by a caller who may not add there is refused with
    insufficientAccess (50) whether the entry exists (invisible to them) or not; it
    used to answer entryAlreadyExists (68) for an existing one."""
    attrs = [(b"objectClass", [b"inetOrgPerson"]), (b"cn", [b"x"]), (b"sn", [b"x"])]
    exists = JSMITH.encode()
    unknown = f"uid=nobody,ou=students,ou=people,{SUFFIX}".encode()
    for who in [(), (JSMITH, "student-pw-1"), (f"uid=teacher1,ou=staff,ou=people,{SUFFIX}", "staff-pw-1")]:
        with bound(server, *who) as s:
            s.sendall(add_request(2, exists, attrs + [(b"uid", [b"jsmith"])])
                      + add_request(3, unknown, attrs + [(b"uid", [b"nobody"])]))
            msgs = recv_messages(s, 2)
            got = {m[0]: ldap_result(m[2])[:3] for m in msgs}
            assert got[2][0] == got[3][0] == 50, (who, got)
            assert got[2] == got[3], (who, got)  # same matched DN and message too
    with bound(server, ROOT_DN, ROOT_PW) as s:  # who may add there still learns it exists
        s.sendall(add_request(2, exists, attrs + [(b"uid", [b"jsmith"])]))
        assert answer(s, 2)[:2] == (0x69, 68)
