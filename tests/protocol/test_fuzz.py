"""A structure-aware fuzzer of the LDAP front end, kept in the suite.

Valid LDAPMessages (bind, SASL bind, search with nested filters, add, modify, modDN,
compare, delete, extended operations, abandon, with and without controls) are built
here with an encoder of our own, independent of the server's codec, then mutated as
trees and as bytes: tags flipped, lengths shortened, lengthened, made huge,
indefinite or non-minimal, encodings truncated, filters and sequences nested
thousands deep, contents replaced by random, empty or oversized bytes, children
dropped, duplicated and spliced from other messages, several PDUs pipelined.

With a fixed seed the run is reproducible. The normal suite runs a short bounded
batch (a few seconds); ROLLCALL_FUZZ_SECONDS=600 runs longer (ROLLCALL_FUZZ_SEED picks
another seed). After every batch: the server process lives, a fresh connection is
answered within a second, and the server's RSS stays within bounds. Every case that
drew resultCode 80 (other) or left a "Traceback" / "internal error" in the server log
is written to test-artifacts/fuzz/findings.jsonl with its bytes (hex) to replay:

    python -m tests.protocol.test_fuzz replay HOST PORT HEX
"""
from __future__ import annotations

import json
import os
import random
import select
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, ROOT_DN, ROOT_PW, SUFFIX, ServerProcess

SEED = int(os.environ.get("ROLLCALL_FUZZ_SEED", "20261206"))
SECONDS = float(os.environ.get("ROLLCALL_FUZZ_SECONDS", "8"))
BATCH = 24                   # concurrent connections per batch
CASE_DEADLINE = 0.6          # seconds a batch waits for its answers
RSS_SLACK = 200 * 1024 * 1024
MAX_CASE_BYTES = 256 * 1024  # what one case may send (its lengths may claim far more)
ARTIFACTS = ROOT / "test-artifacts" / "fuzz"
PROBE_ID = 0x7FFF0001
WHOAMI = b"1.3.6.1.4.1.4203.1.11.3"

# ----------------------------------------------------------------------------- BER trees
# A node is [tag, content] where content is bytes (primitive) or a list of nodes.
# Encoding options on a node (a dict in slot 2) bend the rules: "len" (the length to
# claim), "indefinite", "long" (non-minimal long-form length).


def P(tag, data: bytes):
    return [tag, data, {}]


def C(tag, *children):
    return [tag, list(children), {}]


def enc_len(n: int, opts: dict) -> bytes:
    if opts.get("indefinite"):
        return b"\x80"
    if "len" in opts:
        n = opts["len"]
    if n < 0x80 and not opts.get("long"):
        return bytes([n])
    body = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    if opts.get("long"):
        body = b"\x00" * opts["long"] + body
    return bytes([0x80 | len(body)]) + body


def encode(node) -> bytes:
    tag, content, opts = node
    if opts.get("raw"):  # already encoded (deep nesting, built without recursion)
        return content
    body = content if isinstance(content, bytes) else b"".join(encode(c) for c in content)
    tail = b"\x00\x00" if opts.get("indefinite") else b""
    tag_bytes = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big") if tag > 0xFF else bytes([tag])
    return tag_bytes + enc_len(len(body), opts) + body + tail


def integer(n: int, tag=0x02):
    return P(tag, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def octets(s, tag=0x04):
    return P(tag, s if isinstance(s, bytes) else s.encode())


def boolean(v, tag=0x01):
    return P(tag, b"\xff" if v else b"\x00")


def message(msgid, op, controls=None):
    parts = [integer(msgid), op]
    if controls:
        parts.append(C(0xA0, *controls))
    return C(0x30, *parts)


def control(oid, critical=None, value=None):
    parts = [octets(oid)]
    if critical is not None:
        parts.append(boolean(critical))
    if value is not None:
        # a BER value inside the OCTET STRING stays a tree, so mutations reach into it
        parts.append(C(0x04, value) if isinstance(value, list) else octets(value))
    return C(0x30, *parts)


def ava(tag, attr, value):
    return C(tag, octets(attr), octets(value))


def filters():
    """A few filters, nested."""
    eq = ava(0xA3, "uid", "jsmith")
    sub = C(0xA4, octets("cn"), C(0x30, octets(b"J", 0x80), octets(b"h", 0x81), octets(b"th", 0x82)))
    ge = ava(0xA5, "employeeNumber", "000001")
    le = ava(0xA6, "employeeNumber", "999999")
    present = octets("objectClass", 0x87)
    approx = ava(0xA8, "sn", "Smyth")
    ext = C(0xA9, octets("2.5.13.2", 0x81), octets("cn", 0x82), octets("John Smith", 0x83), boolean(True, 0x84))
    return [eq, sub, ge, le, present, approx, ext,
            C(0xA0, eq, C(0xA1, sub, C(0xA2, ge)), present),
            C(0xA1, C(0xA0, le, approx), C(0xA2, C(0xA2, ext)))]


def search(msgid, flt, base=SUFFIX, scope=2, attrs=("cn", "uid"), controls=None, size=0):
    body = [octets(base), integer(scope, 0x0A), integer(0, 0x0A), integer(size), integer(0), boolean(False),
            flt, C(0x30, *[octets(a) for a in attrs])]
    return message(msgid, C(0x63, *body), controls)


def bind(msgid, dn=b"", password=b""):
    return message(msgid, C(0x60, integer(3), octets(dn), octets(password, 0x80)))


def sasl_bind(msgid, mech=b"EXTERNAL", creds=None):
    sasl = [octets(mech)] + ([octets(creds)] if creds is not None else [])
    return message(msgid, C(0x60, integer(3), octets(b""), C(0xA3, *sasl)))


def attribute(name, *values):
    return C(0x30, octets(name), C(0x31, *[octets(v) for v in values]))


def add(msgid, n):
    dn = f"uid=fuzz{n},ou=people,{SUFFIX}"
    return message(msgid, C(0x68, octets(dn), C(0x30, attribute("objectClass", "inetOrgPerson"),
                                                   attribute("uid", f"fuzz{n}"), attribute("cn", "Fuzz"),
                                                   attribute("sn", "Fuzz"), attribute("mail", "f@x.example"))))


def modify(msgid, dn=f"uid=jsmith,ou=students,ou=people,{SUFFIX}"):
    changes = [C(0x30, integer(op, 0x0A), attribute(name, *vals))
               for op, name, vals in ((0, "description", ("a", "b")), (2, "title", ("t",)),
                                      (1, "description", ("a",)), (3, "uidNumber", ("1",)))]
    return message(msgid, C(0x66, octets(dn), C(0x30, *changes)))


def moddn(msgid, superior=True):
    parts = [octets(f"uid=mgarcia,ou=students,ou=people,{SUFFIX}"), octets("uid=mgarcia2"), boolean(False)]
    if superior:
        parts.append(octets(f"ou=staff,ou=people,{SUFFIX}", 0x80))
    return message(msgid, C(0x6C, *parts))


def compare(msgid):
    return message(msgid, C(0x6E, octets(f"uid=jsmith,ou=students,ou=people,{SUFFIX}"),
                            C(0x30, octets("mail"), octets("jsmith@district.example"))))


def delete(msgid):
    return message(msgid, octets(f"uid=nobody,ou=people,{SUFFIX}", 0x4A))


def extended(msgid, oid, value=None):
    parts = [octets(oid, 0x80)]
    if value is not None:
        parts.append(C(0x81, value) if isinstance(value, list) else octets(value, 0x81))
    return message(msgid, C(0x77, *parts))


def passwd_modify_value():
    return C(0x30, octets(f"uid=jsmith,ou=students,ou=people,{SUFFIX}", 0x80), octets(b"old", 0x81),
             octets(b"new-password-1", 0x82))


ACCOUNT_OP = b"2.25.69814933526364736177629039217756273497.4.1"
STARTTLS = b"1.3.6.1.4.1.1466.20037"


def seeds(rng) -> list:
    """Lists of messages, each one connection's worth; the first are binds."""
    n = rng.randrange(1 << 30)
    paged = C(0x30, integer(10), octets(b""))
    sort = C(0x30, C(0x30, octets("cn"), octets("2.5.13.3", 0x80), boolean(True, 0x81)))
    ctrls = [control("1.2.840.113556.1.4.319", True, paged), control("1.2.840.113556.1.4.473", False, sort),
             control("2.16.840.1.113730.3.4.2"), control("1.3.6.1.1.13.2", True, C(0x30, octets("cn"))),
             control("1.3.6.1.1.13.1", True, C(0x30, octets("*"))),
             control("1.3.6.1.1.12", True, rng.choice(filters())),         # assertion
             control("1.3.6.1.4.1.42.2.27.8.5.1"), control("9.9.9.9", True)]
    bits = C(0xA9, octets("1.2.840.113556.1.4.803", 0x81), octets("uidNumber", 0x82), octets("2", 0x83))
    root = bind(1, ROOT_DN.encode(), ROOT_PW.encode())
    out = [
        [bind(1)], [root], [bind(1, b"uid=jsmith,ou=students,ou=people," + SUFFIX.encode(), b"wrong")],
        [sasl_bind(1)], [sasl_bind(1, b"DIGEST-MD5", b"x" * 40)],
        [extended(1, WHOAMI)], [extended(1, b"1.3.6.1.4.1.4203.1.11.1", passwd_modify_value())],
        [extended(1, b"1.2.3.4.5", b"\x30\x00")], [compare(1)], [delete(1)],
        [extended(1, ACCOUNT_OP, b'{"action": "activate", "uid": "jsmith", "code": "x", "newPassword": "y"}')],
        [extended(1, STARTTLS), bind(2)], [message(1, P(0x42, b"")), bind(2)],   # StartTLS, unbind: then more
        [bind(0)], [bind(-5)], [search(1, bits)],
        [message(1, integer(5, 0x50))],  # abandon
    ]
    for f in filters():
        out.append([search(1, f)])
        out.append([root, search(2, f, controls=rng.sample(ctrls, rng.randint(1, 3)))])
    for c in ctrls:
        out.append([root, rng.choice([modify(2), moddn(2), compare(2), add(2, n + 1), delete(2)])])
        out[-1][1][1].append(C(0xA0, c))
    out += [[root, add(2, n)], [root, modify(2)], [root, moddn(2)], [root, moddn(2, False)],
            [root, compare(2), delete(3)], [root, add(2, n), modify(3, f"uid=fuzz{n},ou=people,{SUFFIX}")]]
    return out


# ----------------------------------------------------------------------------- mutations


def nodes_of(node, out=None):
    out = [] if out is None else out
    out.append(node)
    if isinstance(node[1], list):
        for c in node[1]:
            nodes_of(c, out)
    return out


def clone(node):
    tag, content, opts = node
    return [tag, content if isinstance(content, bytes) else [clone(c) for c in content], dict(opts)]


def mutate_tree(rng, msg, others):
    msg = clone(msg)
    all_nodes = nodes_of(msg)
    node = rng.choice(all_nodes)
    kind = rng.randrange(12)
    if kind == 0:    # flip a tag: a bit, or any byte
        node[0] = (node[0] ^ (1 << rng.randrange(8))) if rng.random() < 0.6 else rng.randrange(256)
    elif kind == 1:  # a wrong length
        node[2]["len"] = max(0, len(encode(node)) + rng.choice([-3, -2, -1, 1, 2, 5, 100]))
    elif kind == 2:  # a huge length
        node[2]["len"] = rng.choice([0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, 1 << 63, 10 * 1024 * 1024 - 1,
                                     10 * 1024 * 1024 + 1, 65536])
    elif kind == 3:  # indefinite or non-minimal length
        if rng.random() < 0.5:
            node[2]["indefinite"] = True
        else:
            node[2]["long"] = rng.randint(1, 8)
    elif kind == 4 and isinstance(node[1], bytes):  # other content
        node[1] = rng.choice([b"", b"\x00", b"\xff" * rng.randint(1, 40), os.urandom(rng.randint(1, 64)),
                              b"A" * rng.choice([1000, 70000]), b"\x80" + b"\x00" * 20, "é".encode() * 50,
                              b"\xc3", b"=,+<>#;\\\"", b"*" * 500])
    elif kind == 5 and isinstance(node[1], list) and node[1]:  # drop a child
        node[1].pop(rng.randrange(len(node[1])))
    elif kind == 6 and isinstance(node[1], list) and node[1]:  # duplicate a child
        node[1].insert(rng.randrange(len(node[1]) + 1), clone(rng.choice(node[1])))
    elif kind == 7 and isinstance(node[1], list):  # splice in a node of another message
        donor = rng.choice(nodes_of(rng.choice(others)))
        if node[1]:
            node[1][rng.randrange(len(node[1]))] = clone(donor)
        else:
            node[1].append(clone(donor))
    elif kind == 8:  # nest deeply: a filter wrapped in NOT/AND/OR, or SEQUENCEs
        depth = rng.choice([50, 500, 3000, 20000])
        wrap = rng.choice([0xA2, 0xA0, 0xA1, 0x30, 0x31])
        blob = encode(node)
        for _ in range(depth):
            blob = bytes([wrap]) + enc_len(len(blob), {}) + blob
            if len(blob) > MAX_CASE_BYTES:
                break
        node[:] = [wrap, blob, {"raw": True}]
    elif kind == 9:  # an integer too wide, negative or empty
        ints = [x for x in all_nodes if x[0] in (0x02, 0x0A) and isinstance(x[1], bytes)]
        if ints:
            rng.choice(ints)[1] = rng.choice([b"", b"\xff", b"\x80" + b"\x00" * 9, b"\x7f" * 20, b"\x00" * 3])
    elif kind == 10 and isinstance(node[1], list):  # a constructed node made primitive
        node[1] = encode(node)[2:][: rng.randint(0, 40)]
    else:            # many children
        if isinstance(node[1], list) and node[1]:
            node[1] = node[1] * rng.choice([2, 50, 2000])
    return msg


def mutate_bytes(rng, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        kind = rng.randrange(5)
        i = rng.randrange(len(b))
        if kind == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b[i] = rng.choice([0x00, 0x7F, 0x80, 0x81, 0x84, 0x88, 0xFF])
        elif kind == 2:
            del b[i:i + rng.randint(1, 8)]
        elif kind == 3:
            b[i:i] = os.urandom(rng.randint(1, 8))
        else:
            del b[i:]  # truncate
    return bytes(b)


def make_case(rng, corpus) -> bytes:
    conn = [clone(m) for m in rng.choice(corpus)]
    flat = [m for msgs in corpus for m in msgs]
    target = rng.randrange(len(conn))
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        conn[target] = mutate_tree(rng, conn[target], flat)
    data = b"".join(encode(m) for m in conn)
    if rng.random() < 0.3:
        data = mutate_bytes(rng, data)
    if rng.random() < 0.1:  # pipelined: more messages after it
        data += b"".join(encode(m) for m in rng.choice(corpus))
    return data[:MAX_CASE_BYTES]


# ----------------------------------------------------------------------------- reading answers


def read_tlv(buf: bytes, i: int):
    """(tag, content start, end) of the TLV at i, or None when incomplete/invalid."""
    if i + 2 > len(buf):
        return None
    tag, first = buf[i], buf[i + 1]
    j = i + 2
    if first < 0x80:
        n = first
    else:
        k = first & 0x7F
        if k == 0 or k > 4 or j + k > len(buf):
            return None
        n = int.from_bytes(buf[j:j + k], "big")
        j += k
    if j + n > len(buf):
        return None
    return tag, j, j + n


def answers(buf: bytes):
    """(messageID, op tag, resultCode or None) of every complete response in buf."""
    out, i = [], 0
    while True:
        t = read_tlv(buf, i)
        if t is None or t[0] != 0x30:
            return out
        _, start, end = t
        mid = read_tlv(buf, start)
        op = read_tlv(buf, mid[2]) if mid else None
        if mid is None or op is None:
            return out
        msgid = int.from_bytes(buf[mid[1]:mid[2]], "big", signed=True)
        code = None
        if op[0] in (0x61, 0x65, 0x67, 0x69, 0x6B, 0x6D, 0x6F, 0x78):
            rc = read_tlv(buf, op[1])
            if rc and rc[0] == 0x0A:
                code = int.from_bytes(buf[rc[1]:rc[2]], "big")
        out.append((msgid, op[0], code))
        i = end


def probe_bytes() -> bytes:
    return encode(extended(PROBE_ID, WHOAMI))


def run_batch(port: int, cases: list) -> list:
    """Send every case on its own connection, followed by a whoami probe; collect what
    comes back until each connection is answered or closed, or the deadline passes."""
    socks, results = {}, []
    for idx, data in enumerate(cases):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        socks[s] = [idx, data + probe_bytes(), b"", False]
    deadline = time.monotonic() + CASE_DEADLINE
    while socks and time.monotonic() < deadline:
        writers = [s for s, st in socks.items() if st[1]]
        r, w, _ = select.select(list(socks), writers, [], 0.05)
        for s in w:
            st = socks[s]
            try:
                n = s.send(st[1][:65536])
                st[1] = st[1][n:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                st[1] = b""
        for s in r:
            st = socks[s]
            try:
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                st[3] = True
            else:
                st[2] += chunk
            if st[3] or any(m == PROBE_ID for m, _, _ in answers(st[2])):
                results.append((st[0], st[2]))
                del socks[s]
                s.close()
    for s, st in socks.items():
        results.append((st[0], st[2]))
        s.close()
    return sorted(results)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def answered_within(port: int, seconds: float) -> bool:
    s = socket.create_connection(("127.0.0.1", port), timeout=seconds)
    try:
        s.sendall(probe_bytes())
        s.settimeout(seconds)
        buf, end = b"", time.monotonic() + seconds
        while time.monotonic() < end:
            chunk = s.recv(4096)
            if not chunk:
                return False
            buf += chunk
            if any(m == PROBE_ID and code == 0 for m, _, code in answers(buf)):
                return True
        return False
    except OSError:
        return False
    finally:
        s.close()


# ----------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    from directory.passwords import Hasher

    # the root DN's hash with cheap argon2 parameters: the suite's default (64 MB per
    # verification, in every hash thread) would drown the RSS check in legitimate churn
    cheap = Hasher("ARGON2", time_cost=1, memory_cost=1024).hash(ROOT_PW.encode()).decode()
    srv = ServerProcess(tmp_path_factory.mktemp("fuzz"), extra_config={
        "root": {"dn": ROOT_DN, "password": cheap},
        # failed binds are part of the diet: no address throttling, no lockout
        "password_policy": {"source_max_failures": 0, "max_failures": 0},
    }).start()
    yield srv
    srv.stop()


def log_problems(path: Path, offset: int):
    with open(path, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode("utf-8", "replace")
        end = fh.tell()
    lines = [ln for ln in text.splitlines() if "Traceback" in ln or "internal error" in ln]
    return lines, text, end


def test_fuzz_ldap_pdus(fuzz_server):
    srv, rng = fuzz_server, random.Random(SEED)
    pid = srv.proc.pid
    corpus = seeds(rng)
    # the corpus itself is valid: every connection gets its answers
    valid = [b"".join(encode(m) for m in c) for c in corpus]
    for idx, buf in run_batch(srv.port, valid):
        if STARTTLS in valid[idx] or b"\x42\x00" in valid[idx][:12] or valid[idx][4:6] in (b"\x00\x60", b"\xfb\x60"):
            continue  # after StartTLS or unbind nothing more is answered; message ID 0 or < 0 is refused
        assert any(m == PROBE_ID for m, _, _ in answers(buf)), (idx, valid[idx].hex(), answers(buf))
    baseline = rss(pid)
    findings_path = ARTIFACTS / "findings.jsonl"
    findings, cases_run, batches = [], 0, 0
    log_offset = srv.log_path.stat().st_size
    peak = baseline
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        cases = [make_case(rng, corpus) for _ in range(BATCH)]
        results = run_batch(srv.port, cases)
        cases_run += len(cases)
        batches += 1
        for idx, buf in results:
            for msgid, op, code in answers(buf):
                if code == 80:
                    findings.append({"kind": "resultCode 80", "seed": SEED, "batch": batches, "op": hex(op),
                                     "case": cases[idx].hex()})
        problems, text, log_offset = log_problems(srv.log_path, log_offset)
        if problems:
            findings.append({"kind": "log", "seed": SEED, "batch": batches, "lines": problems[:5],
                             "log": text[-4000:], "cases": [c.hex() for c in cases]})
        # after every batch: alive, answering, bounded
        assert srv.proc.poll() is None, f"the server died in batch {batches} (seed {SEED}); see {srv.log_path}"
        assert answered_within(srv.port, 1.0), f"no answer within a second after batch {batches} (seed {SEED})"
        peak = max(peak, rss(pid))
        assert peak - baseline < RSS_SLACK, f"RSS grew by {(peak - baseline) >> 20} MB (batch {batches})"
    if findings:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with open(findings_path, "a") as fh:
            for f in findings:
                fh.write(json.dumps(f) + "\n")
    print(f"fuzz: seed {SEED}, {cases_run} cases in {batches} batches, RSS {baseline >> 20} -> {peak >> 20} MB, "
          f"{len(findings)} findings" + (f" (written to {findings_path})" if findings else ""))
    assert not findings, f"{len(findings)} fuzz findings, see {findings_path}: {findings[0]}"[:3000]


def replay(host: str, port: int, hexdata: str):
    """Send one recorded case and print what comes back."""
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(bytes.fromhex(hexdata) + probe_bytes())
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if any(m == PROBE_ID for m, _, _ in answers(buf)):
                break
    except OSError:
        pass
    print(answers(buf))


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "replay":
    replay(sys.argv[2], int(sys.argv[3]), sys.argv[4])
