"""The access log: one line per operation result, and per connection opened and closed.

In slapd's spirit (`conn=12 op=3 SRCH base=… scope=2 filter=…`), machine-parsable:
`log.access_format: kv` writes key=value pairs (values with spaces or quotes are
quoted, JSON-style), `json` one JSON object per line. What a line holds is chosen
here, field by field: DNs, filters as sent, attribute *names*; never a value of an
add, modify or compare, never a bind password, a Password Modify request or an
extended operation's payload (an activation code travels in one).

`log.access`: false (off), true (standard output) or a file path, reopened on
SIGHUP (logrotate's `postrotate`). Lines are buffered and written at most every
FLUSH_SECONDS from the reactor, so logging adds no write(2) per operation.
"""
import json
import logging
import re
import sys
import time

log = logging.getLogger("rollcall.access")

FLUSH_SECONDS = 0.2
SCOPES = ("base", "one", "sub", "children")


# a value with white space, a quote or a backslash (or an empty one) is JSON-quoted
_NEEDS_QUOTES = re.compile(r'[\s"\\]|^$').search


def _kv_value(value) -> str:
    kind = type(value)
    if kind is str:
        return json.dumps(value, ensure_ascii=False) if _NEEDS_QUOTES(value) else value
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    if kind is list or kind is tuple:
        return _kv_value(",".join(value))
    return _kv_value(str(value))


def format_kv(fields: dict) -> str:
    return " ".join([f"{k}={_kv_value(v)}" for k, v in fields.items() if v is not None])


def format_json(fields: dict) -> str:
    return json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False,
                      separators=(",", ":"))


class _Clock:
    """The line's time, ISO 8601 UTC with milliseconds; the seconds part is formatted
    once per second, not per line."""

    def __init__(self):
        self.second = None
        self.text = ""

    def now(self) -> str:
        t = time.time()
        s = int(t)
        if s != self.second:
            self.second = s
            self.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        return f"{self.text}.{int((t - s) * 1000):03d}Z"


class AccessLog:
    """Where access lines go. `target`: True (stdout) or a path; `fmt`: kv | json."""

    def __init__(self, target, fmt: str = "kv", call_later=None):
        self.target = target
        self.kv = fmt != "json"
        self.clock = _Clock()
        self.pending: list[str] = []
        self.call_later = call_later  # reactor.callLater: flushes are scheduled, not per line
        self.flush_call = None
        self.fh = None
        self.open()

    def open(self):
        if self.target is True:
            self.fh = sys.stdout
        else:
            self.fh = open(self.target, "a", encoding="utf-8")

    def reopen(self):
        """After logrotate moved the file: write what is pending to the old one, open
        the path anew."""
        self.flush()
        if self.target is not True:
            old, self.fh = self.fh, None
            try:
                self.open()
            except OSError as exc:
                self.fh = old  # keep logging somewhere rather than nowhere
                log.error("access log: cannot reopen %s: %s; still writing to the old file", self.target, exc)
                return
            old.close()
        log.info("access log reopened: %s", "stdout" if self.target is True else self.target)

    def write(self, fields: dict):
        if self.kv:  # the time in front without copying the fields
            self.pending.append(f"time={self.clock.now()} {format_kv(fields)}")
        else:
            self.pending.append(format_json({"time": self.clock.now(), **fields}))
        if self.call_later is None:
            self.flush()
        elif self.flush_call is None:
            self.flush_call = self.call_later(FLUSH_SECONDS, self.flush)

    def flush(self):
        self.flush_call = None
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        try:
            self.fh.write("\n".join(lines) + "\n")
            self.fh.flush()
        except (OSError, ValueError) as exc:  # a full disk must not stop the directory
            log.error("access log: cannot write %d lines: %s", len(lines), exc)

    def close(self):
        self.flush()
        if self.target is not True and self.fh is not None:
            self.fh.close()
            self.fh = None


def open_access_log(config, call_later=None) -> AccessLog | None:
    section = config.section("log")
    target = section["access"]
    if target is False or target is None:
        return None
    if isinstance(target, str) and target.lower() == "stdout":
        target = True
    elif isinstance(target, str):
        target = str(config.base_dir / target)
    return AccessLog(target, section["access_format"], call_later)
