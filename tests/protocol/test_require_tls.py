"""tls.require_tls_for_bind: a simple bind with a password in clear from a
non-loopback address is refused (confidentialityRequired, 13); over StartTLS or
LDAPS it works; loopback is exempt. The client runs in a network namespace of
its own (a test host made for this test), so the server sees a real remote peer."""
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.conftest import ROOT, ROOT_DN, ROOT_PW, ServerProcess, wait_port

HOST_IP, CLIENT_IP = "10.231.77.1", "10.231.77.2"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("ldapwhoami"),
    reason="needs root, iproute2 and ldap-utils to make a test host in a network namespace",
)


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def test_host():
    ns = "rc-" + uuid.uuid4().hex[:8]
    host_if, peer_if = "v" + ns[3:9] + "a", "v" + ns[3:9] + "b"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        sh("ip", "link", "set", peer_if, "netns", ns)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{CLIENT_IP}/30", "dev", peer_if)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", peer_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", host_if, check=False)
        pytest.skip(f"cannot make a network namespace here: {exc.stderr.strip()}")
    yield ns
    sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", host_if, check=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory, test_host):

    import yaml

    from directory.tls import make_self_signed

    srv = ServerProcess(tmp_path_factory.mktemp("tls-required"), extra_config={"tls": {"require_tls_for_bind": True}})
    # listen on the test network, with a certificate naming that address
    make_self_signed(srv.ca_file, srv.workdir / "var/tls/server.key", hosts=["localhost", "127.0.0.1", HOST_IP])
    cfg = yaml.safe_load(srv.config_path.read_text())
    cfg["listeners"] = [f"ldap://{HOST_IP}:{srv.port}", f"ldaps://{HOST_IP}:{srv.tls_port}", srv.url]
    srv.config_path.write_text(yaml.safe_dump(cfg))
    srv.proc = subprocess.Popen([sys.executable, "-m", "directory.cli", "serve", "--config", str(srv.config_path)],
                                cwd=ROOT, stdout=open(srv.log_path, "ab"), stderr=subprocess.STDOUT)
    wait_port(srv.port, proc=srv.proc)
    yield srv
    srv.stop()


def whoami(ns, srv, *extra):
    env = srv.env()
    cmd = ["ip", "netns", "exec", ns, "ldapwhoami", "-x", *extra, "-D", ROOT_DN, "-w", ROOT_PW]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_clear_bind_from_a_remote_host_is_refused(test_host, server):
    r = whoami(test_host, server, "-H", f"ldap://{HOST_IP}:{server.port}")
    assert r.returncode == 13, r
    assert "Confidentiality required" in r.stderr


def test_starttls_and_ldaps_from_a_remote_host_work(test_host, server):
    r = whoami(test_host, server, "-ZZ", "-H", f"ldap://{HOST_IP}:{server.port}")
    assert r.returncode == 0 and r.stdout.strip() == f"dn:{ROOT_DN}", r
    r = whoami(test_host, server, "-H", f"ldaps://{HOST_IP}:{server.tls_port}")
    assert r.returncode == 0 and r.stdout.strip() == f"dn:{ROOT_DN}", r


def test_loopback_is_exempt(server):
    r = subprocess.run(["ldapwhoami", "-x", "-H", server.url, "-D", ROOT_DN, "-w", ROOT_PW],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"dn:{ROOT_DN}", r


def test_anonymous_bind_from_a_remote_host_still_works(test_host, server):
    env = server.env()
    r = subprocess.run(["ip", "netns", "exec", test_host, "ldapwhoami", "-x", "-H", f"ldap://{HOST_IP}:{server.port}"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "anonymous", r
