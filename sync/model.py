"""What a source file says, normalised: people (students and staff), sites, rejected rows."""
from __future__ import annotations

import csv
import datetime as _dt
import io
import re
from dataclasses import dataclass, field

from directory.district.ids import DISTRICT_ID
from directory.district.statuses import ENROLLMENT_ACTIVE as ACTIVE

SITE_CODE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")


class InputError(Exception):
    """The file as a whole is unusable (missing column, bad manifest …): nothing is applied."""


@dataclass
class Person:
    source_id: str
    district_id: str
    kind: str                     # "student" | "staff"
    given: str
    family: str
    middle: str = ""
    birth: str = ""               # YYYYMMDD
    grade: str = ""
    schools: tuple = ()           # site codes, sorted
    status: str = "ENROLLED"      # rollcallEnrollmentStatus
    entry: str = ""               # YYYYMMDD
    leave: str = ""               # YYYYMMDD
    email: str = ""
    title: str = ""               # staff: role
    origin: str = ""              # file:line

    @property
    def active(self) -> bool:
        return self.status in ACTIVE and bool(self.schools)


@dataclass
class Rejected:
    file: str
    line: int
    column: str
    reason: str
    key: str = ""                 # district ID / sourcedId when readable


@dataclass
class Input:
    kind: str                                         # "district-csv" | "oneroster-1.1" | "oneroster-1.2"
    people: dict = field(default_factory=dict)        # source_id -> Person
    rejected: list = field(default_factory=list)
    protected: set = field(default_factory=set)       # source ids in rejected rows: never "absent"
    bulk_kinds: set = field(default_factory=set)      # kinds for which absence means withdrawal
    deleted: dict = field(default_factory=dict)       # source_id -> YYYYMMDD (delta tobedeleted)
    sites: dict = field(default_factory=dict)         # code -> (name, kind)
    rows: int = 0
    skipped: int = 0                                  # rows deliberately ignored (guardians …)


def parse_date(text: str) -> str | None:
    """YYYY-MM-DD, YYYYMMDD, MM/DD/YYYY or an ISO timestamp -> YYYYMMDD; None if invalid."""
    t = (text or "").strip()
    if not t:
        return None
    if "T" in t:
        t = t.split("T", 1)[0]
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%m/%d/%Y"):
        try:
            return _dt.datetime.strptime(t, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    return None


def days_between(a: str, b: str) -> int:
    """b - a in days (YYYYMMDD)."""
    da = _dt.date(int(a[:4]), int(a[4:6]), int(a[6:8]))
    db = _dt.date(int(b[:4]), int(b[4:6]), int(b[6:8]))
    return (db - da).days


def open_text(path_or_bytes, name="input"):
    """UTF-8 text with or without a BOM; a decoding error names the file."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else open(path_or_bytes, "rb").read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{name}: line {line}: not UTF-8 ({exc.reason})") from None
    return io.StringIO(text, newline="")


def district_csv_rows(name, fh, required, optional, out, key):
    """The rows of a header-driven district CSV (student or HR export), checked as far
    as both share: yields (line, get, reject) for each row that has every required
    value and a district ID in column `key`. The header must name every required
    column (InputError otherwise); empty rows are skipped; an unreadable row, a short
    row, a missing value or a malformed ID goes to out.rejected with file, line and
    column (and its ID to out.protected, so a bad row never withdraws its person)."""
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        raise InputError(f"{name}: line 1: {exc}") from None
    cols = {h.strip().lower(): i for i, h in enumerate(header)}
    if header:
        missing = [c for c in required if c not in cols]
        if missing:
            raise InputError(f"{name}: line 1: missing required column(s) {', '.join(missing)} "
                             f"(required: {', '.join(required)})")
    idx = {c: cols.get(c) for c in list(required) + list(optional)}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            out.rejected.append(Rejected(name, reader.line_num, "", f"unreadable CSV: {exc}"))
            continue
        line = reader.line_num
        if not any(x.strip() for x in row):
            continue
        out.rows += 1

        def get(c, row=row):
            i = idx[c]
            return row[i].strip() if i is not None and i < len(row) else ""

        ident = get(key)

        def reject(col, reason, line=line, ident=ident):
            out.rejected.append(Rejected(name, line, col, reason, ident))
            if ident:
                out.protected.add(ident)

        if len(row) < len(header):
            reject("", f"{len(row)} fields, the header has {len(header)}")
            continue
        bad = next((c for c in required if not get(c)), None)
        if bad:
            reject(bad, "required value is empty")
            continue
        if not DISTRICT_ID.match(ident):
            reject(key, f"{ident!r} is not a district ID (6 digits, a letter or digit, 3 digits)")
            continue
        yield line, get, reject
