"""The web console under load, and what it costs the LDAP clients of the same process.

    scripts/bench-web [--clients 8] [--duration 10]

One server (demo district, the project's access rules, production argon2 parameters)
with its HTTPS console. Measures:
  1. sign-in latency (argon2 verification in the hash pool, then the session's own bind);
  2. console page throughput and p50/p99: `clients` browsers-worth of signed-in
     sub-administrators searching students (GET /students?q=…), keep-alive HTTPS;
  3. LDAP equality-search latency from a separate client, first alone, then while the
     console is under load: the ratio shows whether console work holds up the reactor.
Prints a table; numbers are for the machine it runs on.
"""
import argparse
import http.client
import random
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import yaml
from ldap3 import SUBTREE, Connection, Server

from directory.demo import demo_ldif

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = "dc=district,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "demo-admin-password"
QUERIES = ["smith", "garcia", "000001s001", "kim", "jackson", "torres", "lee", "brown"]


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] * 1000 if v else float("nan")


class Browser:
    """A keep-alive HTTPS client with one cookie, like one browser tab."""

    def __init__(self, port):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.http = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
        self.cookie = ""
        self.csrf = ""

    def request(self, method, path, form=None):
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.http.request(method, path, body=body, headers=headers)
        r = self.http.getresponse()
        data = r.read().decode("utf-8", "replace")
        got = r.getheader("Set-Cookie")
        if got:
            self.cookie = got.split(";", 1)[0]
        m = re.search(r'name="csrf" value="([^"]+)"', data)
        if m:
            self.csrf = m.group(1)
        return r.status, data

    def sign_in(self, user, password):
        self.request("GET", "/signin")
        status, _ = self.request("POST", "/signin", {"csrf": self.csrf, "username": user, "password": password,
                                                     "next": "/"})
        if status != 303:
            raise RuntimeError(f"sign-in of {user} answered {status}")
        self.request("GET", "/")  # the signed-in page carries the session's CSRF token


def start_server(workdir: Path):
    doc = yaml.safe_load((ROOT / "config.yaml").read_text())
    ldap_port, web_port = free_port(), free_port()
    doc["listeners"] = [f"ldap://127.0.0.1:{ldap_port}"]
    doc["store"]["path"] = str(workdir / "rollcall.db")
    doc["schema"] = [str(ROOT / p.split("#")[0].strip()) for p in doc["schema"]]
    doc["tls"] = {"cert": str(workdir / "server.crt"), "key": str(workdir / "server.key")}
    doc["web"] = {"listen": f"https://127.0.0.1:{web_port}", "signin_max_failures": 0}
    doc["password_policy"]["source_max_failures"] = 0
    doc["log"] = {"level": "warning"}
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    from directory.tls import make_self_signed

    make_self_signed(workdir / "server.crt", workdir / "server.key")
    (workdir / "demo.ldif").write_text(demo_ldif(SUFFIX))
    subprocess.run([sys.executable, "-m", "directory.cli", "load", "--config", str(cfg), str(workdir / "demo.ldif")],
                   check=True, capture_output=True, cwd=ROOT)
    log = open(workdir / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "directory.cli", "serve", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    import socket

    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", web_port), timeout=0.5).close()
            return proc, ldap_port, web_port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def ldap_latencies(port, seconds, stop=None):
    """Sequential equality searches (one outstanding request): per-request latency."""
    c = Connection(Server(f"ldap://127.0.0.1:{port}"), ROOT_DN, ROOT_PW, auto_bind=True)
    uids = ["jsmith", "mgarcia", "akim", "lobrien", "osmith", "jobrien"]
    out, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end and not (stop and stop.is_set()):
        t = time.perf_counter()
        c.search(f"ou=people,{SUFFIX}", f"(uid={random.choice(uids)})", SUBTREE, attributes=["cn"])
        out.append(time.perf_counter() - t)
    c.unbind()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--signins", type=int, default=20)
    ap.add_argument("--rate", type=float, default=0, help="pages/s for all clients together (0: as fast as they go)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rollcall-web-bench-") as tmp:
        proc, ldap_port, web_port = start_server(Path(tmp))
        try:
            # warm up: caches, first template compiles
            Browser(web_port).sign_in("tnguyen", "demo-subadmin-pw")
            signin = []
            for _ in range(args.signins):
                b = Browser(web_port)
                t = time.perf_counter()
                b.sign_in("tnguyen", "demo-subadmin-pw")
                signin.append(time.perf_counter() - t)

            alone = ldap_latencies(ldap_port, args.duration / 2)

            browsers = []
            for _ in range(args.clients):
                b = Browser(web_port)
                b.sign_in("tnguyen", "demo-subadmin-pw")
                browsers.append(b)
            stop = threading.Event()
            pages = [[] for _ in browsers]
            errors = []

            gap = args.clients / args.rate if args.rate else 0

            def browse(i, b):
                rng = random.Random(i)
                next_at = time.perf_counter() + rng.random() * gap
                while not stop.is_set():
                    if gap:
                        time.sleep(max(0.0, next_at - time.perf_counter()))
                        next_at += gap
                    t = time.perf_counter()
                    status, body = b.request("GET", "/students?" + urlencode({"q": rng.choice(QUERIES)}))
                    if status != 200 or "table" not in body and "No student" not in body:
                        errors.append(status)
                    pages[i].append(time.perf_counter() - t)

            threads = [threading.Thread(target=browse, args=(i, b)) for i, b in enumerate(browsers)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(1)  # let the console load settle before measuring LDAP beside it
            loaded = ldap_latencies(ldap_port, args.duration - 1)
            stop.set()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            all_pages = [x for p in pages for x in p]
        finally:
            proc.terminate()
            proc.wait(10)

    rate = f", {args.rate:.0f} pages/s offered" if args.rate else ", as fast as they go"
    print(f"web console benchmark ({args.clients} signed-in clients{rate}, {args.duration:.0f} s)")
    print(f"  sign-in (argon2 m=64MiB t=2, then the session bind): n={len(signin)}  "
          f"p50 {pct(signin, .5):.0f} ms  p99 {pct(signin, .99):.0f} ms")
    print(f"  student search page: {len(all_pages) / elapsed:.0f} pages/s  p50 {pct(all_pages, .5):.1f} ms  "
          f"p99 {pct(all_pages, .99):.1f} ms  errors {len(errors)}")
    print(f"  LDAP eq search alone:           p50 {pct(alone, .5):.2f} ms  p99 {pct(alone, .99):.2f} ms  "
          f"({len(alone) / (args.duration / 2):.0f} ops/s, one at a time)")
    print(f"  LDAP eq search beside console:  p50 {pct(loaded, .5):.2f} ms  p99 {pct(loaded, .99):.2f} ms")
    print(f"  ratio (beside / alone): p50 {statistics.median(loaded) / statistics.median(alone):.2f}x  "
          f"p99 {pct(loaded, .99) / pct(alone, .99):.2f}x")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
