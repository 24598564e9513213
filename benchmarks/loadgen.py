"""A pipelined LDAP load generator on raw non-blocking sockets.

Requests are BER pre-encoded (a tiny encoder below) into a ring of 65536
complete messages whose message ids are their ring slots; every connection
walks the shared ring from its own random starting slot, so sending n requests
is one join of a slice and one send() (ids only need to be unique per
connection, and at most ``depth`` of them are ever in flight).  Responses are
parsed only as far as needed: frame by length, read the message id and the
protocol-op tag, count SearchResultEntry PDUs and read the result code of
SearchResultDone / BindResponse.

Each connection keeps ``depth`` requests in flight; new requests for a
connection are written in one send() after each read.  Latency is measured per
request from the send() that carried it to the read() that completed it, with
time.perf_counter_ns (CLOCK_MONOTONIC on Linux, so it is comparable between the
worker processes of ``procs > 1``).

A run is: connect (+ optional root bind per connection) -> ``warmup`` seconds
unrecorded -> ``duration`` seconds recorded -> stop sending, drain for at most
``drain`` seconds.  It is bounded by time and by ``max_ops`` and always stops
by itself.
"""

from __future__ import annotations

import array
import multiprocessing
import os
import random
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field

# ---------------------------------------------------------------- BER encoder

def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _len(len(content)) + content


def ber_int(v: int, tag: int = 0x02) -> bytes:
    return tlv(tag, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def octets(s: str | bytes, tag: int = 0x04) -> bytes:
    return tlv(tag, s.encode("utf-8") if isinstance(s, str) else s)


SCOPE_BASE, SCOPE_ONE, SCOPE_SUB = 0, 1, 2


def bind_op(dn: str, password: str) -> bytes:
    """BindRequest ::= [APPLICATION 0] { version 3, name, simple [0] password }"""
    return tlv(0x60, ber_int(3) + octets(dn) + octets(password, 0x80))


def filter_eq(attr: str, value: str) -> bytes:
    return tlv(0xA3, octets(attr) + octets(value))


def filter_sub(attr: str, initial: str | None = None, any_: tuple[str, ...] = (),
               final: str | None = None) -> bytes:
    parts = b""
    if initial:
        parts += octets(initial, 0x80)
    for a in any_:
        parts += octets(a, 0x81)
    if final:
        parts += octets(final, 0x82)
    return tlv(0xA4, octets(attr) + tlv(0x30, parts))


def search_op(base: str, filt: bytes, attrs: tuple[str, ...] = (), scope: int = SCOPE_SUB,
              size_limit: int = 0, time_limit: int = 0) -> bytes:
    return tlv(0x63, octets(base) + ber_int(scope, 0x0A) + ber_int(0, 0x0A)
               + ber_int(size_limit) + ber_int(time_limit) + b"\x01\x01\x00"
               + filt + tlv(0x30, b"".join(octets(a) for a in attrs)))


MSGID_MIN = 0x8000   # ids MSGID_MIN .. MSGID_MIN + RING - 1: always 3 content octets
RING = 1 << 16       # message ids (and pre-built messages) per connection


def message_parts(op: bytes) -> tuple[bytes, bytes]:
    """(prefix, op): a message is prefix + msgid.to_bytes(3) + op."""
    body_len = 5 + len(op)  # 02 03 xx xx xx + op
    return b"\x30" + _len(body_len) + b"\x02\x03", op


def message(msgid: int, op: bytes) -> bytes:
    return tlv(0x30, ber_int(msgid) + op)


UNBIND = message(1, b"\x42\x00")

# ---------------------------------------------------------------- response parsing

TAG_BIND_RESP = 0x61
TAG_ENTRY = 0x64
TAG_DONE = 0x65
TAG_REF = 0x73
TAG_EXTENDED = 0x78


def _read_len(buf, p: int):
    """(length, position after the length octets) or None when incomplete."""
    if p >= len(buf):
        return None
    b = buf[p]
    if b < 0x80:
        return b, p + 1
    n = b & 0x7F
    if p + 1 + n > len(buf):
        return None
    return int.from_bytes(buf[p + 1:p + 1 + n], "big"), p + 1 + n


def result_code_at(buf, p: int) -> int:
    """Result code of an LDAPResult-shaped op whose tag is at p (complete PDU)."""
    r = _read_len(buf, p + 1)
    q = r[1]
    if buf[q] != 0x0A:
        return -1
    ln = buf[q + 1]
    return int.from_bytes(buf[q + 2:q + 2 + ln], "big")


def recv_one(sock: socket.socket, buf: bytearray, timeout: float = 10.0) -> tuple[int, int, int]:
    """Blocking read of one complete response: (msgid, op tag, result code or -1)."""
    deadline = time.monotonic() + timeout
    while True:
        if len(buf) >= 2:
            r = _read_len(buf, 1)
            if r is not None and r[1] + r[0] <= len(buf):
                end = r[1] + r[0]
                p = r[1]
                ml = buf[p + 1]
                msgid = int.from_bytes(buf[p + 2:p + 2 + ml], "big")
                q = p + 2 + ml
                tag = buf[q]
                code = result_code_at(buf, q) if tag in (TAG_BIND_RESP, TAG_DONE, TAG_EXTENDED) else -1
                del buf[:end]
                return msgid, tag, code
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no response within %.0f s" % timeout)
        sock.settimeout(left)
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        buf += data


# ---------------------------------------------------------------- cases

@dataclass
class Workload:
    """What to send.  ops: pre-encoded protocol ops (without the envelope)."""
    name: str
    ops: list[bytes]
    connections: int = 8
    depth: int = 8
    setup_bind: tuple[str, str] | None = None  # (dn, password) bound once per connection
    ok_codes: frozenset = frozenset({0})
    expect_entries: int | None = None          # entries per search, None = don't check
    describe: str = ""


@dataclass
class Result:
    name: str
    ops: int = 0
    seconds: float = 0.0
    ops_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0
    codes: dict = field(default_factory=dict)   # result code -> count (recorded window)
    wrong_entries: int = 0
    entries: int = 0
    unfinished: int = 0                          # still outstanding after the drain
    conn_errors: list = field(default_factory=list)
    loadgen_cpu: float = 0.0                      # CPU seconds of the generator in the window
    loadgen_cpu_pct: float = 0.0                  # of one core
    server_cpu_pct: float | None = None           # of one core
    extra_cpu_pct: dict = field(default_factory=dict)  # other servers (the database): of one core
    machine_busy_pct: float | None = None         # all cores, whole machine
    connections: int = 0
    depth: int = 0
    procs: int = 1
    describe: str = ""

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["codes"] = {str(k): v for k, v in self.codes.items()}
        return d


class _Conn:
    __slots__ = ("sock", "rbuf", "wbuf", "sent", "ecount", "outstanding", "k", "closed")

    def __init__(self, sock, k):
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.sent = [0] * RING      # send time (ns) by message slot; 0 = not outstanding
        self.ecount = [0] * RING    # SearchResultEntry PDUs received by slot
        self.outstanding = 0
        self.k = k                  # next slot to send
        self.closed = False


def _connect(host: str, port: int, setup_bind, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if setup_bind is not None:
        s.sendall(message(1, bind_op(*setup_bind)))
        _, tag, code = recv_one(s, bytearray(), timeout)
        if tag != TAG_BIND_RESP or code != 0:
            s.close()
            raise RuntimeError("setup bind as %s failed: result code %d" % (setup_bind[0], code))
    s.setblocking(False)
    return s


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _machine_cpu():
    """(busy, total) jiffies for the whole machine from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals) - idle, sum(vals)
    except (OSError, ValueError):
        return None


def _proc_tree(pid: int) -> list[int]:
    """pid and its live descendants (a server with worker processes)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _proc_cpu(pids):
    """{pid: CPU seconds (utime+stime, all threads)} from /proc."""
    out = {}
    for pid in pids or ():
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return out


def tree_cpu(pid: int) -> float | None:
    """CPU seconds used so far by pid and all its descendants, the exited ones included:
    its own utime+stime, cutime+cstime (children it has reaped) and the live
    descendants' utime+stime (/proc/<pid>/stat). For a server that forks a process
    per connection (PostgreSQL's postmaster and its backends) the difference between
    two readings is the whole server's CPU in between, even when backends come and go."""
    tck = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    total = sum(int(x) for x in fields[11:15]) / tck  # utime stime cutime cstime
    kids = _proc_cpu([p for p in _proc_tree(pid) if p != pid])
    return total + sum(kids.values())


class _Sampler:
    """CPU of the server process, of other servers (extra: {name: root pid}, e.g. the
    PostgreSQL postmaster) and of the machine between two instants."""

    def __init__(self, server_pid, extra=None):
        self.server_pid = server_pid
        self.extra = dict(extra or {})
        self.extra_pct: dict[str, float] = {}
        self.pids: list[int] = []
        self.a = None

    def start(self):
        self.pids = _proc_tree(self.server_pid) if self.server_pid else []
        self.e0 = {k: tree_cpu(pid) for k, pid in self.extra.items()}
        self.a = (_proc_cpu(self.pids), _machine_cpu(), time.perf_counter())

    def stop(self):
        """(server CPU % of one core, machine busy % of all cores); None if unknown.
        The extra servers' CPU % of one core goes to self.extra_pct."""
        server = machine = None
        if self.a is None:
            return server, machine
        s0, m0, t0 = self.a
        s1, m1, t1 = _proc_cpu(self.pids), _machine_cpu(), time.perf_counter()
        for k, pid in self.extra.items():
            e1 = tree_cpu(pid)
            if self.e0.get(k) is not None and e1 is not None and t1 > t0:
                self.extra_pct[k] = 100.0 * (e1 - self.e0[k]) / (t1 - t0)
        if s0 and s1 and t1 > t0:
            # processes alive at both ends (worker processes are long-lived)
            server = 100.0 * sum(s1[p] - s0[p] for p in s0 if p in s1) / (t1 - t0)
        if m0 and m1 and m1[1] > m0[1]:
            machine = 100.0 * (m1[0] - m0[0]) / (m1[1] - m0[1])
        return server, machine


def build_ring(ops: list[bytes], seed: int) -> list[bytes]:
    """RING complete messages: message j has id MSGID_MIN + j and op ops[perm[j]].

    Message ids only need to be unique per connection, so every connection
    shares this list and just starts at a different j: sending is a slice and a
    join, with no per-request encoding."""
    rng = random.Random(seed)
    n = len(ops)
    order = list(range(n)) * (RING // n + 1)
    rng.shuffle(order)
    out = []
    for j in range(RING):
        op = ops[order[j]]
        pre, _ = message_parts(op)
        out.append(pre + (MSGID_MIN + j).to_bytes(3, "big") + op)
    return out


def _worker(host, port, wl: Workload, conns: int, seed: int, warmup: float, duration: float,
            drain: float, max_ops: int, start_at_ns=None, ready=None, sampler=None):
    """Run one generator loop.  Returns (latencies array('q'), stats dict)."""
    rng = random.Random(seed)
    msgs = build_ring(wl.ops, seed)
    depth = min(wl.depth, RING // 2)

    cs = []
    for i in range(conns):
        cs.append(_Conn(_connect(host, port, wl.setup_bind), rng.randrange(RING)))
    if ready is not None:
        ready(cs)  # multiprocess handshake; returns after the start time is known
        start_at_ns = ready.start_at_ns
    sel = selectors.DefaultSelector()
    for c in cs:
        sel.register(c.sock, selectors.EVENT_READ, c)

    now = time.perf_counter_ns
    if start_at_ns is not None:
        while now() < start_at_ns:
            time.sleep(min(0.01, max(0.0, (start_at_ns - now()) / 1e9)))
    t_start = now()
    t_warm = t_start + int(warmup * 1e9)
    t_end = t_warm + int(duration * 1e9)
    t_hard = t_end + int(drain * 1e9)

    lat = array.array("q")
    lat_append = lat.append
    codes: dict[int, int] = {}
    stats = {"entries": 0, "wrong_entries": 0, "conn_errors": [], "unfinished": 0}
    expect = wl.expect_entries
    recorded = 0
    entries = 0
    wrong = 0
    sending = True
    cpu0 = None
    cpu1 = None
    mask = RING - 1

    def fill(c: _Conn, n: int, t: int):
        j = c.k
        e = j + n
        sent = c.sent
        if e <= RING:
            data = b"".join(msgs[j:e])
            sent[j:e] = [t] * n
            c.k = e & mask
        else:
            e -= RING
            data = b"".join(msgs[j:]) + b"".join(msgs[:e])
            sent[j:] = [t] * (RING - j)
            sent[:e] = [t] * e
            c.k = e
        c.outstanding += n
        if c.wbuf:
            c.wbuf += data
            return
        try:
            k = c.sock.send(data)
        except BlockingIOError:
            k = 0
        if k < len(data):
            c.wbuf += data[k:]
            sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def close(c: _Conn, why: str):
        if not c.closed:
            stats["conn_errors"].append(why)
            c.closed = True
            sel.unregister(c.sock)

    t0 = now()
    for c in cs:
        fill(c, depth, t0)

    while True:
        t = now()
        if sending and cpu0 is None and t >= t_warm:
            cpu0 = _cpu_self()
            if sampler:
                sampler.start()
        if sending and (t >= t_end or recorded >= max_ops):
            sending = False
            cpu1 = _cpu_self()
            if sampler:
                stats["server_cpu_pct"], stats["machine_busy_pct"] = sampler.stop()
            t_end = min(t, t_end)
        if not sending and (t >= t_hard or not any(c.outstanding for c in cs if not c.closed)):
            break
        if all(c.closed for c in cs):
            break
        events = sel.select(0.05)
        t = now()
        in_window = t_warm <= t <= t_end
        for key, ev in events:
            c = key.data
            if c.closed:
                continue
            if ev & selectors.EVENT_WRITE and c.wbuf:
                try:
                    k = c.sock.send(c.wbuf)
                    del c.wbuf[:k]
                except BlockingIOError:
                    pass
                except OSError as e:
                    close(c, "send: %s" % e)
                    continue
                if not c.wbuf:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
            if not ev & selectors.EVENT_READ:
                continue
            try:
                data = c.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError as e:
                close(c, "recv: %s" % e)
                continue
            if not data:
                close(c, "connection closed by server (%d in flight)" % c.outstanding)
                continue
            buf = c.rbuf
            if buf:
                buf += data
            else:
                buf = data
            blen = len(buf)
            p = 0
            done = 0
            sent = c.sent
            ecount = c.ecount
            while blen - p >= 2:
                b = buf[p + 1]
                if b < 0x80:
                    hdr = p + 2
                    end = hdr + b
                else:
                    hdr = p + 2 + (b & 0x7F)
                    if hdr > blen:
                        break
                    end = hdr + int.from_bytes(buf[p + 2:hdr], "big")
                if end > blen:
                    break
                ml = buf[hdr + 1]
                q = hdr + 2 + ml
                j = int.from_bytes(buf[hdr + 2:q], "big") - MSGID_MIN
                tag = buf[q]
                p = end
                if not 0 <= j < RING:
                    if tag == TAG_EXTENDED:  # e.g. Notice of Disconnection (msgid 0)
                        stats["conn_errors"].append("unsolicited notification from the server")
                    continue
                if tag == TAG_ENTRY:
                    ecount[j] += 1
                elif tag == TAG_DONE or tag == TAG_BIND_RESP:
                    ts = sent[j]
                    if not ts:
                        continue  # not outstanding (duplicate or stray response)
                    sent[j] = 0
                    done += 1
                    n_ent = ecount[j]
                    ecount[j] = 0
                    if in_window:
                        # LDAPResult: tag, length, ENUMERATED resultCode
                        b = buf[q + 1]
                        r = q + 2 if b < 0x80 else q + 2 + (b & 0x7F)
                        code = buf[r + 2] if buf[r + 1] == 1 else int.from_bytes(
                            buf[r + 2:r + 2 + buf[r + 1]], "big")
                        recorded += 1
                        lat_append(t - ts)
                        codes[code] = codes.get(code, 0) + 1
                        entries += n_ent
                        if expect is not None and n_ent != expect and code == 0 \
                                and tag == TAG_DONE:
                            wrong += 1
            if p < blen:
                c.rbuf = bytearray(buf[p:]) if p else (buf if isinstance(buf, bytearray)
                                                         else bytearray(buf))
            else:
                c.rbuf = bytearray()
            if done:
                c.outstanding -= done
                if sending:
                    fill(c, done, now())

    for c in cs:
        stats["unfinished"] += c.outstanding
        try:
            if not c.closed:
                c.sock.setblocking(True)
                c.sock.settimeout(1.0)
                c.sock.sendall(UNBIND)
        except OSError:
            pass
        c.sock.close()
    sel.close()
    if cpu0 is None:
        cpu0 = _cpu_self()
    if cpu1 is None:
        cpu1 = _cpu_self()
    stats["entries"] = entries
    stats["wrong_entries"] = wrong
    stats["codes"] = codes
    stats["recorded"] = recorded
    stats["window_s"] = max(1e-9, (t_end - t_warm) / 1e9)
    stats["cpu"] = cpu1 - cpu0
    return lat, stats


def _pct(sorted_lat, q: float) -> float:
    if not sorted_lat:
        return 0.0
    i = min(len(sorted_lat) - 1, max(0, int(round(q * (len(sorted_lat) - 1)))))
    return sorted_lat[i] / 1e6


def _summarise(wl: Workload, lat_parts, stats_parts, conns, procs) -> Result:
    lat = sorted(x for part in lat_parts for x in part)
    res = Result(wl.name, connections=conns, depth=wl.depth, procs=procs, describe=wl.describe)
    res.ops = len(lat)
    res.seconds = max(s["window_s"] for s in stats_parts)
    res.ops_per_s = sum(s["recorded"] / s["window_s"] for s in stats_parts)
    res.p50_ms = _pct(lat, 0.50)
    res.p99_ms = _pct(lat, 0.99)
    res.p999_ms = _pct(lat, 0.999)
    res.max_ms = lat[-1] / 1e6 if lat else 0.0
    for s in stats_parts:
        for k, v in s["codes"].items():
            res.codes[k] = res.codes.get(k, 0) + v
        res.entries += s["entries"]
        res.wrong_entries += s["wrong_entries"]
        res.unfinished += s["unfinished"]
        res.conn_errors.extend(s["conn_errors"])
        res.loadgen_cpu += s["cpu"]
    res.errors = (sum(v for k, v in res.codes.items() if k not in wl.ok_codes)
                  + res.wrong_entries + res.unfinished + len(res.conn_errors))
    res.loadgen_cpu_pct = 100.0 * res.loadgen_cpu / res.seconds if res.seconds else 0.0
    return res


def _child(conn, host, port, wl, conns, seed, warmup, duration, drain, max_ops):
    class Ready:
        start_at_ns = None

        def __call__(self, cs):
            conn.send(("ready", None))
            self.start_at_ns = conn.recv()

    try:
        lat, stats = _worker(host, port, wl, conns, seed, warmup, duration, drain, max_ops,
                             ready=Ready())
        conn.send(("ok", (lat.tobytes(), stats)))
    except BaseException as e:  # report, never hang the parent
        conn.send(("error", "%s: %s" % (type(e).__name__, e)))
    finally:
        conn.close()


def run(host: str, port: int, wl: Workload, warmup: float = 2.0, duration: float = 10.0,
        procs: int = 1, drain: float = 5.0, max_ops: int = 50_000_000, seed: int = 1,
        server_pid: int | None = None, extra_pids: dict | None = None) -> Result:
    """Run a workload; with procs > 1 the connections are split across processes.
    extra_pids {name: pid}: other servers whose CPU (with all their descendants, see
    tree_cpu) is measured over the recorded window too (Result.extra_cpu_pct)."""
    conns = wl.connections
    procs = max(1, min(procs, conns))
    sampler = _Sampler(server_pid, extra_pids)
    if procs == 1:
        lat, stats = _worker(host, port, wl, conns, seed, warmup, duration, drain, max_ops,
                             sampler=sampler)
        res = _summarise(wl, [lat], [stats], conns, 1)
        res.server_cpu_pct = stats.get("server_cpu_pct")
        res.machine_busy_pct = stats.get("machine_busy_pct")
        res.extra_cpu_pct = dict(sampler.extra_pct)
        return res

    ctx = multiprocessing.get_context("fork")
    children = []
    share = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    try:
        for i in range(procs):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_child, args=(b, host, port, wl, share[i], seed + 1000 * i,
                                                 warmup, duration, drain, max_ops // procs),
                            daemon=True)
            p.start()
            b.close()
            children.append((p, a))
        for p, a in children:
            if not a.poll(60):
                raise TimeoutError("load generator process did not get ready")
            kind, payload = a.recv()
            if kind == "error":
                raise RuntimeError("load generator process: %s" % payload)
        start_at = time.perf_counter_ns() + 50_000_000
        for p, a in children:
            a.send(start_at)
        # Sample the server over the recorded window from here.
        t_warm = start_at + int(warmup * 1e9)
        while time.perf_counter_ns() < t_warm:
            time.sleep(0.01)
        sampler.start()
        t_end = t_warm + int(duration * 1e9)
        while time.perf_counter_ns() < t_end:
            time.sleep(0.01)
        server_pct, machine_pct = sampler.stop()
        lats, stats = [], []
        deadline = time.monotonic() + warmup + duration + drain + 60
        for p, a in children:
            if not a.poll(max(0.1, deadline - time.monotonic())):
                raise TimeoutError("load generator process did not finish")
            kind, payload = a.recv()
            if kind == "error":
                raise RuntimeError("load generator process: %s" % payload)
            lb, st = payload
            la = array.array("q")
            la.frombytes(lb)
            lats.append(la)
            stats.append(st)
        res = _summarise(wl, lats, stats, conns, procs)
        res.server_cpu_pct = server_pct
        res.machine_busy_pct = machine_pct
        res.extra_cpu_pct = dict(sampler.extra_pct)
        return res
    finally:
        for p, a in children:
            a.close()
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join()


# ---------------------------------------------------------------- standard cases

def _search_identity(datagen):
    """The substring cases search as an SSO service's account, not the root DN."""
    return (datagen.SEARCH_DN, datagen.SEARCH_PASSWORD)


def typeahead_prefixes(users: int, rng, n: int = 4096) -> list[str]:
    """What a login page's type-ahead sends: an existing user's given name, a space and
    the first 2 or 3 letters of the surname (in the case a person types)."""
    from . import datagen

    names = datagen.user_names(users)
    out = []
    for _ in range(n):
        given, sur = names[rng.randrange(users)]
        out.append("%s %s" % (given, sur[:rng.choice((2, 3))]))
    return out


def make_workloads(users: int, root_dn: str, root_password: str, *, connections: int = 8,
                   depth: int = 8, bind_connections: int = 32, pool_size: int = 65536,
                   seed: int = 7, cases=("eq", "bind", "sub"), argon2_users: int = 0,
                   argon2_connections: int = 8, eq_depth: int | None = None) -> list[Workload]:
    """eq_depth: outstanding searches per connection of the eq case (default: depth).
    argon2_users: the first K users have {ARGON2} hashes (datagen.argon2_hashes): the
    "argon2" case binds as them, the "bind" case never does."""
    from . import datagen

    rng = random.Random(seed)
    k = min(argon2_users, users - 1) if argon2_users else 0
    if users - k <= pool_size:
        ids = list(range(k, users))
        rng.shuffle(ids)
    else:
        ids = rng.sample(range(k, users), pool_size)
    out = []
    for case in cases:
        if case == "eq":
            # as the harness: bound once per connection as an ordinary identity
            # (access rules apply), all user attributes asked for
            ops = [search_op(datagen.PEOPLE, filter_eq("uid", datagen.uid_of(i)), ("*",))
                   for i in ids]
            out.append(Workload("eq", ops, connections, eq_depth or depth,
                                (datagen.READER_DN, datagen.READER_PASSWORD),
                                expect_entries=1,
                                describe="subtree %s (uid=<random existing>) attrs *; %d "
                                         "connections x %d outstanding; bound as %s (not root: "
                                         "access rules apply)" % (datagen.PEOPLE, connections,
                                                                  eq_depth or depth,
                                                                  datagen.READER_DN)))
        elif case == "bind":
            ops = [bind_op(datagen.dn_of(i), datagen.password_of(i)) for i in ids]
            out.append(Workload("bind", ops, bind_connections, 1, None,
                                describe="simple bind uid=<random>,%s with the right password; "
                                         "%d connections x 1 outstanding"
                                         % (datagen.STUDENTS, bind_connections)))
        elif case in ("argon2", "argon2-cached"):
            if not k:
                raise ValueError("the %s case needs argon2_users > 0" % case)
            a_ids = [rng.randrange(k) for _ in range(4096)]
            ops = [bind_op(datagen.dn_of(i), datagen.password_of(i)) for i in a_ids]
            if case == "argon2":
                out.append(Workload("argon2", ops, argon2_connections, 1, None,
                                    describe="simple bind as one of %d users with {ARGON2} hashes "
                                             "(m=%d KiB, t=%d), right password, every bind a full "
                                             "verification (Rollcall: a twin server with "
                                             "passwords.verified_cache_seconds 0); %d connections x 1 "
                                             "outstanding" % (k, datagen.ARGON2["memory_cost"],
                                                              datagen.ARGON2["time_cost"],
                                                              argon2_connections)))
            else:
                out.append(Workload("argon2-cached", ops, bind_connections, 1, None,
                                    describe="repeated simple binds as the same %d {ARGON2} users "
                                             "(each bound once before the run), right password: "
                                             "Rollcall's verified-password cache (default settings); "
                                             "%d connections x 1 outstanding, as the bind case"
                                             % (k, bind_connections)))
        elif case == "sub":
            pieces = datagen.sub_pieces()
            ops = [search_op(datagen.PEOPLE, filter_sub("cn", any_=(rng.choice(pieces),)), (),
                             size_limit=10) for _ in range(4096)]
            out.append(Workload("sub", ops, connections, depth, _search_identity(datagen),
                                ok_codes=frozenset({0, 4}),
                                describe="subtree %s (cn=*<piece>*) sizelimit 10, all user "
                                         "attributes, piece from %s; bound as %s (access rules "
                                         "apply); sizeLimitExceeded counts as success; %d connections x %d outstanding"
                                         % (datagen.PEOPLE, ",".join(pieces), datagen.SEARCH_DN,
                                            connections, depth)))
        elif case == "typeahead":
            ops = [search_op(datagen.PEOPLE, filter_sub("cn", initial=p), (), size_limit=10)
                   for p in typeahead_prefixes(users, rng)]
            out.append(Workload("typeahead", ops, connections, depth, _search_identity(datagen),
                                ok_codes=frozenset({0, 4}),
                                describe="subtree %s (cn=<Given> <Su>*): an existing user's given "
                                         "name and the first 2-3 letters of the surname, sizelimit "
                                         "10, all user attributes; bound as %s (access rules apply); "
                                         "sizeLimitExceeded counts as success; %d connections x %d outstanding"
                                         % (datagen.PEOPLE, datagen.SEARCH_DN, connections, depth)))
        else:
            raise ValueError("unknown case %r (known: eq, bind, sub, typeahead, argon2, argon2-cached)" % case)
    return out
