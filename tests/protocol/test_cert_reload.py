"""SIGHUP reloads the TLS certificate and key: a new LDAPS or StartTLS connection
(`openssl s_client`) gets the new certificate, a connection opened before keeps
working, and a certificate that does not match its key is refused (the old pair is
kept, the log says why)."""
import shutil
import signal
import ssl
import subprocess
import time

import pytest
from ldap3 import NONE, SUBTREE, Connection, Server, Tls

from directory.tls import make_self_signed
from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, ServerProcess, have

pytestmark = pytest.mark.skipif(not have("openssl"), reason="openssl not installed")


def fingerprint_of_file(path) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


def served(srv, starttls=False) -> str:
    """The SHA-256 fingerprint of the certificate a new connection is given."""
    port = srv.port if starttls else srv.tls_port
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"]
    if starttls:
        cmd += ["-starttls", "ldap"]
    shown = subprocess.run(cmd, input="", capture_output=True, text=True, timeout=20)
    pem = shown.stdout[shown.stdout.index("-----BEGIN CERTIFICATE-----"):
                       shown.stdout.index("-----END CERTIFICATE-----") + 25]
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


def wait_served(srv, want, starttls=False, timeout=10.0):
    deadline = time.monotonic() + timeout
    got = served(srv, starttls)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = served(srv, starttls)
    return got


def test_sighup_reloads_the_certificate(tmp_path):
    srv = ServerProcess(tmp_path).start()
    try:
        cert, key = tmp_path / "var/tls/server.crt", tmp_path / "var/tls/server.key"
        old = fingerprint_of_file(cert)
        assert served(srv) == old and served(srv, starttls=True) == old
        # a connection opened before the reload
        tls = Tls(validate=ssl.CERT_NONE)
        before = Connection(Server(srv.ldaps_url, use_ssl=True, tls=tls, get_info=NONE), ROOT_DN, ROOT_PW,
                            auto_bind=True)

        # the renewed pair, written over the configured files, then SIGHUP
        make_self_signed(tmp_path / "new.crt", tmp_path / "new.key")
        shutil.copy(tmp_path / "new.key", key)
        shutil.copy(tmp_path / "new.crt", cert)
        new = fingerprint_of_file(cert)
        assert new != old
        srv.proc.send_signal(signal.SIGHUP)
        assert wait_served(srv, new) == new
        assert served(srv, starttls=True) == new
        # the connection opened before goes on, with the certificate it was given
        before.search(SUFFIX, "(uid=jsmith)", SUBTREE, attributes=["cn"])
        assert len(before.entries) == 1

        # a certificate that does not match the key: refused, the current pair kept
        make_self_signed(tmp_path / "other.crt", tmp_path / "other.key")
        shutil.copy(tmp_path / "other.crt", cert)
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "NOT reloaded" not in srv.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "TLS certificate NOT reloaded (still serving the previous one)" in srv.log_path.read_text()
        assert served(srv) == new and served(srv, starttls=True) == new
        before.search(SUFFIX, "(uid=jsmith)", SUBTREE, attributes=["cn"])
        assert len(before.entries) == 1
        before.unbind()
        assert srv.proc.poll() is None
    finally:
        srv.stop()


def test_with_workers_sighup_reaches_every_worker(tmp_path):
    """server.workers: 2: the parent passes SIGHUP on, so every worker serves the new
    certificate and writes to the reopened access log."""
    srv = ServerProcess(tmp_path, extra_config={"server": {"workers": 2},
                                                "log": {"access": "var/access.log", "access_format": "json"}})
    srv.start()
    try:
        cert, key = tmp_path / "var/tls/server.crt", tmp_path / "var/tls/server.key"
        access = tmp_path / "var/access.log"
        make_self_signed(tmp_path / "new.crt", tmp_path / "new.key")
        shutil.copy(tmp_path / "new.key", key)
        shutil.copy(tmp_path / "new.crt", cert)
        new = fingerprint_of_file(cert)
        deadline = time.monotonic() + 10
        while not access.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        access.rename(tmp_path / "var/access.log.1")
        srv.proc.send_signal(signal.SIGHUP)
        assert wait_served(srv, new) == new
        # the kernel spreads new connections over the workers: every one of these gets
        # the new certificate, and the log lines go to the new file
        seen = {served(srv) for _ in range(12)}
        assert seen == {new}
        for _ in range(6):
            c = Connection(Server(srv.url, get_info=NONE), ROOT_DN, ROOT_PW, auto_bind=True)
            c.search(SUFFIX, "(uid=after-rotate)", SUBTREE)
            c.unbind()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = access.read_text() if access.exists() else ""
            if text.count("(uid=after-rotate)") == 6:
                break
            time.sleep(0.2)
        assert text.count("(uid=after-rotate)") == 6
        assert "(uid=after-rotate)" not in (tmp_path / "var/access.log.1").read_text()
    finally:
        srv.stop()
