"""Test hosts: network namespaces on one bridge, made by the tests and removed after.

Each host is a network namespace with one veth link into a bridge in this machine's
own namespace; the bridge's address (the gateway) is where the tests' PostgreSQL
listens. Processes of a host see only its own address and the bridge: A and B talk to
the database and to the test's clients over a real (virtual) network, never loopback.

    with Network() as net:
        a = net.host("a")            # namespace rc<pid>a, address 10.<n>.<m>.11
        a.popen(["rollcall", "serve", ...])
"""
import os
import shutil
import subprocess

HOST_OFFSET = 11  # the first host's last octet


def available() -> str | None:
    """Why test hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"rcprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot make a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args, netns=None):
    cmd = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")


class Host:
    def __init__(self, name: str, netns: str, address: str):
        self.name, self.netns, self.address = name, netns, address

    def command(self, cmd: list) -> list:
        """cmd run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *cmd]

    def run(self, cmd: list, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(cmd), capture_output=True, text=True, **kw)

    def __repr__(self):
        return f"Host({self.name} {self.address})"


class Network:
    def __init__(self):
        pid = os.getpid()
        self.tag = f"rc{pid % 1000000}"
        # a /24 of 10/8 from the pid: parallel test runs on one machine do not collide
        self.prefix = f"10.{200 + pid % 50}.{(pid // 50) % 250}"
        self.gateway = f"{self.prefix}.1"
        self.bridge = f"{self.tag}br"
        self.hosts: list[Host] = []

    def __enter__(self):
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def host(self, name: str) -> Host:
        netns = f"{self.tag}{name}"
        address = f"{self.prefix}.{HOST_OFFSET + len(self.hosts)}"
        inside, outside = f"{self.tag}{name}i", f"{self.tag}{name}o"
        _ip("netns", "add", netns)
        try:
            _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
            _ip("link", "set", inside, "netns", netns)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("addr", "add", f"{address}/24", "dev", inside, netns=netns)
            _ip("link", "set", inside, "up", netns=netns)
            _ip("link", "set", "lo", "up", netns=netns)
        except RuntimeError:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
            raise
        h = Host(name, netns, address)
        self.hosts.append(h)
        return h

    def __exit__(self, *exc):
        for h in self.hosts:
            # the namespace's processes are the tests' to stop; deleting it drops its veth end
            subprocess.run(["ip", "netns", "del", h.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        return False
