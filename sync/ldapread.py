"""A minimal LDAPv3 reader for bulk state reads: simple bind + paged search (RFC 2696).

Why not ldap3 for this part: measured on this machine, ldap3 spends ~190 µs of client CPU
decoding one 13-attribute search entry (its generic BER decoder and per-value config
look-ups), i.e. ~2 minutes for 600k SIS records before the planner even starts. This
reader decodes only what a SearchResultEntry/Done needs (~15 µs per entry). Everything
else (all writes, small look-ups) goes through ldap3. Plain standard LDAPv3: it works
against any server that implements the paged-results control.

Supports ldap:// (optionally StartTLS) and ldaps://. The URL, the TLS verification and
the error sentences are directory.client's, as for every other client.
"""
from __future__ import annotations

import socket

from directory import client
from directory.client import bind_error

PAGED_OID = b"1.2.840.113556.1.4.319"
STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
SCOPE_BASE, SCOPE_ONE, SCOPE_SUB = 0, 1, 2


class LDAPReadError(client.ClientError):
    def __init__(self, code, message, text=None, kind="result"):
        super().__init__(text or f"LDAP result {code}: {message}", code, "", kind)


# ---------------------------------------------------------------------- encoding
def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _len(len(value)) + value


def _int(tag: int, n: int) -> bytes:
    return tlv(tag, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def octets(s) -> bytes:
    return tlv(0x04, s.encode() if isinstance(s, str) else s)


def f_eq(attr: str, value) -> bytes:
    return tlv(0xA3, octets(attr) + octets(value))


def f_present(attr: str) -> bytes:
    return tlv(0x87, attr.encode())


def f_and(*parts: bytes) -> bytes:
    return tlv(0xA0, b"".join(parts))


def f_or(*parts: bytes) -> bytes:
    return tlv(0xA1, b"".join(parts))


# ---------------------------------------------------------------------- decoding
def _tl(buf, pos):
    """(tag, value start, value end) of the TLV at pos."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    return tag, pos, pos + n


def _read_int(buf, s, e):
    return int.from_bytes(buf[s:e], "big", signed=True)


class Reader:
    def __init__(self, url: str, ca_file: str | None = None, timeout: float = 600.0, start_tls=False,
                 connect_timeout: float = 10.0):
        scheme, self.host, port = client.endpoint(url)
        self.url = url
        self.ca_file = ca_file
        self.sock = None
        try:
            self.sock = socket.create_connection((self.host, port), timeout=connect_timeout)
            self.sock.settimeout(timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "ldaps":
                self._wrap()
            self.buf = bytearray()
            self.msgid = 0
            if start_tls and scheme != "ldaps":
                self._send(tlv(0x77, tlv(0x80, STARTTLS_OID)))
                _, _, res = self._next()
                code, msg = self._result(res)
                if code:
                    raise LDAPReadError(code, "StartTLS: " + msg, f"the server at {url} refused StartTLS: {msg}",
                                        "tls")
                self._wrap()
        except OSError as exc:
            if self.sock is not None:
                self.sock.close()
            raise client.describe_exception(exc, url) from None

    def _wrap(self):
        self.sock = client.ssl_context(self.ca_file).wrap_socket(self.sock, server_hostname=self.host)

    def close(self):
        try:
            self._send(tlv(0x42, b""))  # unbind
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, op: bytes, controls: bytes = b"") -> int:
        self.msgid += 1
        body = _int(0x02, self.msgid) + op + (tlv(0xA0, controls) if controls else b"")
        self.sock.sendall(tlv(0x30, body))
        return self.msgid

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _messages(self):
        """Yield (protocolOp tag, op bytes (memoryview-free copy), controls bytes) per message."""
        while True:
            buf = self.buf
            pos = 0
            out = []
            blen = len(buf)
            while blen - pos >= 6:
                n = buf[pos + 1]
                hdr = 2
                if n & 0x80:
                    k = n & 0x7F
                    if blen - pos < 2 + k:
                        break
                    n = int.from_bytes(buf[pos + 2:pos + 2 + k], "big")
                    hdr += k
                end = pos + hdr + n
                if end > blen:
                    break
                out.append(bytes(buf[pos + hdr:end]))
                pos = end
            if pos:
                del self.buf[:pos]
            for m in out:
                yield m
            self._fill()

    def _next(self):
        for m in self._messages():
            _, s, e = _tl(m, 0)               # messageID
            tag, os_, oe = _tl(m, e)          # protocolOp
            return tag, m, (m, os_, oe, oe)
        raise ConnectionError("no message")

    @staticmethod
    def _result(res):
        m, s, e, _ = res
        _, a, b = _tl(m, s)
        code = _read_int(m, a, b)
        _, a2, b2 = _tl(m, b)
        _, a3, b3 = _tl(m, b2)
        return code, m[a3:b3].decode("utf-8", "replace")

    def bind(self, dn: str, password: str):
        self._send(tlv(0x60, _int(0x02, 3) + octets(dn) + tlv(0x80, password.encode())))
        _, _, res = self._next()
        code, msg = self._result(res)
        if code:
            e = bind_error({"result": code, "message": msg}, self.url, dn)
            raise LDAPReadError(code, "bind: " + msg, e.message, "bind")

    def paged_search(self, base: str, scope: int, filt: bytes, attrs, page_size: int = 1000):
        """Yield (dn, {attr lower-case: [bytes, ...]}) for every entry, page by page."""
        attr_seq = tlv(0x30, b"".join(octets(a) for a in attrs))
        head = octets(base) + tlv(0x0A, bytes((scope,))) + tlv(0x0A, b"\x00") + _int(0x02, 0) + _int(0x02, 0) \
            + tlv(0x01, b"\x00") + filt + attr_seq
        req = tlv(0x63, head)
        cookie = b""
        while True:
            ctrl_value = tlv(0x30, _int(0x02, page_size) + octets(cookie))
            control = tlv(0x30, octets(PAGED_OID) + octets(ctrl_value))
            self._send(req, control)
            cookie = None
            for m in self._messages():
                _, s, e = _tl(m, 0)
                tag, os_, oe = _tl(m, e)
                if tag == 0x64:
                    yield self._entry(m, os_, oe)
                elif tag == 0x65:
                    code, msg = self._result((m, os_, oe, oe))
                    if code:
                        raise LDAPReadError(code, msg)
                    cookie = b""
                    if oe < len(m):  # controls [0]
                        _, cs, ce = _tl(m, oe)
                        p = cs
                        while p < ce:
                            _, a, b = _tl(m, p)
                            _, ta, tb = _tl(m, a)
                            if m[ta:tb] == PAGED_OID:
                                q = tb
                                while q < b:
                                    t2, va, vb = _tl(m, q)
                                    if t2 == 0x04:
                                        _, sa, sb = _tl(m, va)   # SEQUENCE
                                        _, ia, ib = _tl(m, sa)   # size
                                        _, ca, cb = _tl(m, ib)   # cookie
                                        cookie = bytes(m[ca:cb])
                                    q = vb
                            p = b
                    break
                # referrals (0x73) and anything else: ignored
            if not cookie:
                return

    @staticmethod
    def _entry(m, s, e):
        _, a, b = _tl(m, s)
        dn = m[a:b].decode("utf-8")
        _, p, end = _tl(m, b)
        attrs = {}
        while p < end:
            _, a, nxt = _tl(m, p)
            _, ta, tb = _tl(m, a)
            name = m[ta:tb].decode("ascii").lower()
            _, va, vb = _tl(m, tb)
            vals = []
            while va < vb:
                _, x, y = _tl(m, va)
                vals.append(m[x:y])
                va = y
            attrs[name] = vals
            p = nxt
        return dn, attrs
