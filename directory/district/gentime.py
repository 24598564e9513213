"""Generalized time (RFC 4517 3.3.13) as the directory writes and reads it.

    gentime(t=None) -> b"20260630235959Z"        (now when t is None; whole seconds, UTC)
    gentime_text(t=None) -> "20260630235959Z"
    now_generalized() -> b"…Z"                   (= gentime())
    gentime_micro(t) -> b"20260630235959.123456Z" (pwdFailureTime: distinct within a second)
    parse_gentime(b"…Z") -> epoch seconds | None   (fraction ignored; None if unreadable)
    parse_time(value_or_None) -> epoch seconds | None
    from_date("20260630") -> "20260630000000Z"   (a YYYYMMDD date; "" stays "")
    from_user_input("2026-06-30" | "20260630235959Z") -> "20260630235959Z"  (ValueError)

(The schema's matching rules normalise every form RFC 4517 allows, with zones and
fractions: directory/core/schema.py; this module is the form Rollcall writes.)
"""
from __future__ import annotations

import calendar
import datetime
import re
import time

FORMAT = "%Y%m%d%H%M%SZ"


def gentime_text(t: float | None = None) -> str:
    return time.strftime(FORMAT, time.gmtime(t if t is not None else time.time()))


def gentime(t: float | None = None) -> bytes:
    return gentime_text(t).encode()


def now_generalized() -> bytes:
    return gentime()


def gentime_micro(t: float) -> bytes:
    """Generalized Time with microseconds, as slapd writes pwdFailureTime: failures
    within one second are distinct values (an attribute holds no duplicate values)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(t)).encode() + b".%06dZ" % (int(t * 1_000_000) % 1_000_000)


def parse_gentime(value: bytes) -> float | None:
    try:
        text = value.decode("ascii").rstrip("Z").split(".")[0]
        return float(calendar.timegm(time.strptime(text[:14], "%Y%m%d%H%M%S")))
    except (ValueError, UnicodeDecodeError):
        return None


def parse_time(value) -> float | None:
    return parse_gentime(value) if value is not None else None


def from_date(yyyymmdd: str) -> str:
    """A YYYYMMDD date as generalized time at midnight UTC ("" stays "")."""
    return yyyymmdd + "000000Z" if yyyymmdd else ""


def from_user_input(text: str | None) -> str | None:
    """YYYY-MM-DD (end of that day, UTC) or YYYYMMDDHHMMSSZ -> generalized time;
    ValueError for anything else."""
    if not text:
        return None
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            d = datetime.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text} is not a date") from None
        return d.strftime("%Y%m%d") + "235959Z"
    if re.fullmatch(r"\d{14}Z", text):
        return text
    raise ValueError(f"expected YYYY-MM-DD or YYYYMMDDHHMMSSZ, not {text!r}")
