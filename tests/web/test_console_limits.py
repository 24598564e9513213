"""The console's request body limit (web.max_upload_mb), over a raw HTTPS client: a
Content-Length over the limit is refused with 413 before the body is read, a chunked
body is cut off with 413 as soon as it passes the limit, and the server's memory does
not grow by what the client sends."""
import socket
import ssl
import time

import pytest

from tests.web.conftest import Console

MB = 1024 * 1024


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    c = Console(tmp_path_factory.mktemp("limits"), max_upload_mb=1).start()
    yield c
    c.stop()


def rss(console) -> int:
    with open(f"/proc/{console.server.proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect(console):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", console.web_port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def head(path, **headers) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: multipart/form-data; boundary=xyz"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock, timeout=5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ssl.SSLError, ConnectionError):
        pass
    return out


def test_content_length_over_the_limit_is_refused_before_the_body(small):
    before = rss(small)
    sock = connect(small)
    start = time.monotonic()
    sock.sendall(head("/photos", Content_Length=300 * MB))
    answer = read_response(sock)
    took = time.monotonic() - start
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"too large" in answer and took < 2.0
    assert rss(small) - before < 20 * MB


def test_a_chunked_body_is_cut_off_past_the_limit(small):
    before = rss(small)
    sock = connect(small)
    sock.sendall(head("/photos", Transfer_Encoding="chunked"))
    chunk = b"%x\r\n" % MB + b"x" * MB + b"\r\n"
    sent = 0
    start = time.monotonic()
    try:
        for _ in range(200):  # up to 200 MB, unless the server closes first
            sock.sendall(chunk)
            sent += MB
    except (ssl.SSLError, ConnectionError, socket.timeout):
        pass
    answer = read_response(sock)
    sock.close()
    # the 413 went out (and the connection closed) long before 200 MB were taken in
    assert sent < 100 * MB, sent
    assert time.monotonic() - start < 10
    assert answer.startswith(b"HTTP/1.1 413") or answer == b"", answer[:200]
    assert rss(small) - before < 20 * MB


def test_chunked_413_is_readable_by_a_client_that_waits(small):
    sock = connect(small)
    sock.sendall(head("/photos", Transfer_Encoding="chunked"))
    sock.sendall(b"%x\r\n" % (2 * MB) + b"y" * (2 * MB) + b"\r\n")
    answer = read_response(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_the_console_still_answers_after_refusals(small):
    sock = connect(small)
    sock.sendall(b"GET /signin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = read_response(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200")
    # a POST within the limit is read and judged as usual (no session: refused as a stale form)
    sock = connect(small)
    body = b"csrf=nope&username=x&password=y"
    sock.sendall(b"POST /signin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    answer = read_response(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
