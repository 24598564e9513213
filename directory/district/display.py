"""How the district's records read in output meant for people (console pages, the
command line's text and table output), written once. Machine formats (`--format
json/csv`, the audit log, roster CSV columns that name DNs) keep the raw values.

    site_label("1234", "Lincoln Elementary") -> "Lincoln Elementary (1234)"
    person_label(dn, name="") -> "Thanh Nguyen" | "tnguyen" (the RDN's value when no name)
    local_date("20270101131717Z") -> "2027-01-01"        (the server's local date)
    local_datetime("20270101131717Z") -> "2027-01-01 13:17" (local time; "" stays "")
    reason_label("parent-refusal") -> "Parent or guardian refused (signed form)"
    role_label("student-email-admins") -> "Student e-mail administrator"
    DEACTIVATION_REASONS                 the reasons a sub-administrator chooses from
    plain_reason(exc_text) -> a sentence without Python object reprs
"""
from __future__ import annotations

import re
import time

from .gentime import parse_gentime

DEACTIVATION_REASONS = {
    "parent-refusal": "Parent or guardian refused (signed form)",
    "student-request": "Student request",
    "misuse": "Misuse of the account",
    "other": "Other (explain in the reference)",
}


SITE_ROLES = {
    "student-email-admins": "Student e-mail administrator",
    "photo-designees": "Photo designee",
    "principals": "Principal",
    "photo-vendors": "Photo vendor",
}


def role_label(cn: str) -> str:
    """A site's role group (its cn) as people name the role."""
    return SITE_ROLES.get((cn or "").strip().lower(), cn or "")


def site_label(code: str, name: str | None = None) -> str:
    """A school as a clerk names it: its name, with the code people also quote."""
    code = (code or "").strip()
    name = (name or "").strip()
    if not name or name == code:
        return code
    return f"{name} ({code})"


def person_label(dn: str, name: str | None = None) -> str:
    """A person by name; without one, the value of the DN's first RDN (the username),
    never the whole DN."""
    if name and name.strip():
        return name.strip()
    first = (dn or "").split(",", 1)[0]
    return first.split("=", 1)[1].strip() if "=" in first else first.strip()


def _epoch(value) -> float | None:
    if value is None or value == "" or value == b"":
        return None
    return parse_gentime(value if isinstance(value, bytes) else str(value).encode("ascii", "replace"))


def local_date(value) -> str:
    """A generalized time as the local date (YYYY-MM-DD); "" for none; the text itself
    when it is not a time."""
    t = _epoch(value)
    if t is None:
        return "" if not value else (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return time.strftime("%Y-%m-%d", time.localtime(t))


def local_datetime(value) -> str:
    """A generalized time as local date and time to the minute (YYYY-MM-DD HH:MM)."""
    t = _epoch(value)
    if t is None:
        return "" if not value else (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def reason_label(code: str) -> str:
    """A deactivation reason code as its label (a reason typed as text stays as typed)."""
    return DEACTIVATION_REASONS.get((code or "").strip(), code or "")


_REPR = re.compile(r"\s*<[A-Za-z_][\w.]* object at 0x[0-9a-fA-F]+>")


def plain_reason(text: str) -> str:
    """Exception text as a plain reason: Python object reprs (`<_io.BytesIO object at
    0x…>`) are dropped, e.g. "cannot identify image file" is what remains."""
    out = _REPR.sub("", text or "").strip()
    out = re.sub(r"\s+([:;,.)])", r"\1", out).rstrip(" :")
    return out
