"""The access log's cost per operation, measured in-process (no network, no other
sessions' noise): describing a decoded search request, formatting its line (kv and
json) and buffering it, flushed to a file every 1000 lines as the server's 0.2 s timer
would. Compare with the server CPU per operation that scripts/bench reports.

    .venv/bin/python -m benchmarks.accesslog_cost
"""
import tempfile
import time
from pathlib import Path

from directory.core.filterparse import parse_filter_string
from directory.server import ber
from directory.server.accesslog import AccessLog
from directory.server.listener import describe

N = 200_000


def main():
    req = ber.SearchRequest(base="ou=people,dc=district,dc=example", scope=2, deref=0, size_limit=0, time_limit=0,
                            types_only=False, filter=parse_filter_string("(uid=jsmith)"), attributes=["cn", "mail"])
    msg = ber.Message(msgid=7, op=3, request=req, controls=[], raw=b"")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("kv", "json"):
            log = AccessLog(str(Path(tmp) / f"access-{fmt}.log"), fmt, call_later=lambda *_: None)
            t0 = time.process_time()
            for i in range(N):
                start = time.perf_counter()
                fields = {"conn": 12, "op": i, "from": "127.0.0.1:50432", "tls": False,
                          "who": "cn=admin,dc=district,dc=example", "type": "search"}
                describe(msg, fields)
                fields["result"] = 0
                fields["error"] = None
                fields["entries"] = 1
                fields["ms"] = round((time.perf_counter() - start) * 1000, 3)
                log.write(fields)
                if i % 1000 == 999:
                    log.flush()
            log.close()
            per_op = (time.process_time() - t0) / N * 1e6
            print(f"access log {fmt:4}: {per_op:5.2f} µs per search line")
        # what every operation pays with the access log off (slow-search check on)
        t0 = time.process_time()
        ops = {}
        for i in range(N):
            ops[i] = [msg, time.perf_counter(), "cn=admin", 0]
            record = ops.pop(i)
            elapsed = time.perf_counter() - record[1]
            _slow = elapsed >= 1.0
        print(f"access log off: {(time.process_time() - t0) / N * 1e6:5.2f} µs per operation (timing, slow check)")


if __name__ == "__main__":
    main()
