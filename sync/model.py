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
    preferred: str = ""           # preferred given name (OneRoster 1.2): the display name (cn)
    origin: str = ""              # file:line
    # fields the input does not carry (an absent file or column, a delta): taken from the
    # person's SIS record when there is one (an absent value never erases a stored one)
    keep: frozenset = frozenset()
    # OneRoster 1.2 role deltas: org references whose membership starts / ends
    add_schools: tuple = ()
    drop_schools: tuple = ()

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
    # OneRoster 1.2 delta: roles of people not in users.csv: sid -> [(org ref, role, active, end)]
    role_changes: dict = field(default_factory=dict)
    role_lines: dict = field(default_factory=dict)    # sid -> line of its first row in roles.csv
    delta: bool = False                               # a delta: an empty file is a quiet night
    columns: set = field(default_factory=set)         # district/HR CSV: the (mapped) columns present


DATE_ORDERS = ("AUTO", "MDY", "DMY")


def parse_date(text: str, order: str = "AUTO") -> str | None:
    """YYYY-MM-DD, YYYYMMDD, an ISO timestamp, or a slash date (M/D/YYYY or D/M/YYYY)
    -> YYYYMMDD; None if invalid. Slash dates follow `order` (sync.date_order): MDY or
    DMY; AUTO accepts a slash date only when one reading alone is a date or both
    readings agree (03/05/2012 is refused: set sync.date_order)."""
    t = (text or "").strip()
    if not t:
        return None
    if "T" in t:
        t = t.split("T", 1)[0]
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return _dt.datetime.strptime(t, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    if "/" not in t:
        return None
    readings = {}
    for o, fmt in (("MDY", "%m/%d/%Y"), ("DMY", "%d/%m/%Y")):
        try:
            readings[o] = _dt.datetime.strptime(t, fmt).strftime("%Y%m%d")
        except ValueError:
            pass
    if order in readings:
        return readings[order]
    if order == "AUTO" and len(set(readings.values())) == 1:
        return next(iter(readings.values()))
    return None


def date_problem(text: str, order: str = "AUTO") -> str:
    """Why parse_date refused `text` (for the report)."""
    t = (text or "").strip()
    if "/" in t and order == "AUTO":
        return (f"{t!r}: a slash date that reads as month/day and as day/month; set sync.date_order "
                "(MDY or DMY)")
    if "/" in t:
        return f"{t!r} is not a date in the order {order} (sync.date_order)"
    return f"{t!r} is not a date (YYYY-MM-DD)"



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


def csv_records(fh, name):
    """Every record of a CSV text: (header, [(line where it starts, row | None, problem)]).

    A file is refused whole (InputError naming the line where the bad record starts)
    when its last record is cut off (fewer fields than the header: a failed upload), when
    a quoted field never closes, or when a quoted field runs over lines that look like
    rows (a stray quote swallowing the records after it): either would make the people
    of the lost rows look absent."""
    text = fh.getvalue() if hasattr(fh, "getvalue") else fh.read()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise InputError(f"{name}: line 1: {exc}") from None
    width = len(header)
    recs, spans = [], []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            recs.append((start, None, f"unreadable CSV: {exc}"))
            continue
        if reader.line_num > start:
            spans.append((start, reader.line_num, row))
        if not any(x.strip() for x in row):
            continue
        recs.append((start, row, None))
    if spans:
        lines = io.StringIO(text, newline="").readlines()
        for start, end, row in spans:
            if end == len(lines):
                try:
                    list(csv.reader(io.StringIO("".join(lines[start - 1:]), newline=""), strict=True))
                except csv.Error:
                    raise InputError(f"{name}: line {start}: a quoted field opens in this record and never "
                                     "closes (a stray quote, or a file cut off): the file is refused, nothing "
                                     "applied") from None
            for value in row:
                inner = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
                if len(inner) > 1 and (len(row) > width or
                                       any(part.count(",") >= min(3, width - 1) for part in inner[1:])):
                    raise InputError(f"{name}: line {start}: a quoted field runs from here to line {end} over "
                                     "what look like rows (a stray quote?): the file is refused, nothing applied")
    last = next((r for r in reversed(recs) if r[1] is not None), None)
    if last is not None and len(last[1]) < width:
        raise InputError(f"{name}: line {last[0]}: the last record has {len(last[1])} of the header's {width} "
                         "fields: the file is cut off (an incomplete upload?) and is refused, nothing applied")
    return header, recs


def district_csv_rows(name, fh, required, optional, out, key, id_re=DISTRICT_ID, columns=None, values=None):
    """The rows of a header-driven district CSV (student or HR export), checked as far
    as both share: yields (line, get, reject) for each row that has every required
    value and a district ID in column `key`. The header must name every required
    column (InputError otherwise); empty rows are skipped; an unreadable row, a short
    row, a missing value or a malformed ID goes to out.rejected with file, line and
    column (and its ID to out.protected, so a bad row never withdraws its person)."""
    header, recs = csv_records(fh, name)
    columns, values = columns or {}, values or {}
    cols = {}
    for i, h in enumerate(header):   # sync.district_csv.columns: the export's names -> Rollcall's
        h = h.strip().lower()
        cols.setdefault(columns.get(h, h), i)
    out.columns = set(cols)
    if header:
        missing = [c for c in required if c not in cols]
        if missing:
            raise InputError(f"{name}: line 1: missing required column(s) {', '.join(missing)} "
                             f"(required: {', '.join(required)})")
    idx = {c: cols.get(c) for c in list(required) + list(optional)}
    for line, row, problem in recs:
        if row is None:
            out.rejected.append(Rejected(name, line, "", problem))
            continue
        out.rows += 1

        def get(c, row=row):
            i = idx[c]
            v = row[i].strip() if i is not None and i < len(row) else ""
            v = " ".join(v.split()) if "\n" in v or "\r" in v else v   # a line break in a value: a space
            m = values.get(c)
            return m.get(v, v) if m else v     # sync.district_csv.values

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
        if not id_re.match(ident):
            reject(key, f"{ident!r} is not a district ID (sync.district_id.pattern)")
            continue
        yield line, get, reject
