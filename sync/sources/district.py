"""The district CSV export: one row per student enrollment (see README "District CSV").

Header-driven (column order free, names case-insensitive, unknown columns ignored),
UTF-8 with or without BOM, RFC 4180 quoting. Rows of one district ID are merged: the
student's schools are those of the enrollments still open; when none is open the
student has left (withdrawal date: the latest leave date).
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..config import GRADES
from ..model import (DISTRICT_ID, ENDED, SITE_CODE, STATUSES, Input, InputError, Person, Rejected,
                     open_text, parse_date)

COLUMNS = ["district_id", "first_name", "last_name", "middle_name", "birth_date", "grade", "school_code",
           "enrollment_status", "entry_date", "leave_date", "email"]
REQUIRED = ["district_id", "first_name", "last_name", "birth_date", "grade", "school_code",
            "enrollment_status", "entry_date"]
OPTIONAL = ["middle_name", "leave_date", "email", "school_name"]
STATUS_ALIASES = {"ACTIVE": "ENROLLED", "PREENROLLED": "PRE_ENROLLED", "PRE-ENROLLED": "PRE_ENROLLED"}


def parse(path, today: str, data: bytes | None = None) -> Input:
    name = Path(path).name if path else "input.csv"
    fh = open_text(data if data is not None else path, name)
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        raise InputError(f"{name}: line 1: {exc}") from None
    cols = {h.strip().lower(): i for i, h in enumerate(header)}
    if header:
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise InputError(f"{name}: line 1: missing required column(s) {', '.join(missing)} "
                             f"(required: {', '.join(REQUIRED)})")
    out = Input(kind="district-csv", bulk_kinds={"student"})
    rows: dict[str, list] = {}
    idx = {c: cols.get(c) for c in REQUIRED + OPTIONAL}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.rejected.append(Rejected(name, reader.line_num, "", f"unreadable CSV: {exc}"))
            continue
        line = reader.line_num
        if not any(x.strip() for x in row):
            continue
        out.rows += 1

        def get(c):
            i = idx[c]
            return row[i].strip() if i is not None and i < len(row) else ""

        did = get("district_id")

        def reject(col, reason):
            out.rejected.append(Rejected(name, line, col, reason, did))
            if did:
                out.protected.add(did)

        if len(row) < len(header):
            reject("", f"{len(row)} fields, the header has {len(header)}")
            continue
        bad = next((c for c in REQUIRED if not get(c)), None)
        if bad:
            reject(bad, "required value is empty")
            continue
        if not DISTRICT_ID.match(did):
            reject("district_id", f"{did!r} is not a district ID (6 digits, a letter or digit, 3 digits)")
            continue
        birth = parse_date(get("birth_date"))
        if birth is None:
            reject("birth_date", f"{get('birth_date')!r} is not a date (YYYY-MM-DD)")
            continue
        grade = get("grade").upper()
        if grade.isdigit() and len(grade) == 1:
            grade = "0" + grade
        if grade == "K":
            grade = "KG"
        if grade not in GRADES:
            reject("grade", f"{get('grade')!r} is not a grade (KG, 01 … 12, PK, TK …)")
            continue
        code = get("school_code")
        if not SITE_CODE.match(code):
            reject("school_code", f"{code!r} is not a school code")
            continue
        status = get("enrollment_status").upper().replace(" ", "_")
        status = STATUS_ALIASES.get(status, status)
        if status not in STATUSES:
            reject("enrollment_status", f"{get('enrollment_status')!r} is not one of {', '.join(STATUSES)}")
            continue
        entry = parse_date(get("entry_date"))
        if entry is None:
            reject("entry_date", f"{get('entry_date')!r} is not a date (YYYY-MM-DD)")
            continue
        leave = ""
        if get("leave_date"):
            leave = parse_date(get("leave_date"))
            if leave is None:
                reject("leave_date", f"{get('leave_date')!r} is not a date (YYYY-MM-DD)")
                continue
        email = get("email")
        if email and ("@" not in email or " " in email):
            reject("email", f"{email!r} is not an e-mail address")
            continue
        if get("school_name"):
            out.sites.setdefault(code, (get("school_name"), "SCHOOL", None))
        else:
            out.sites.setdefault(code, (None, "SCHOOL", None))
        ended = status in ENDED or (leave and leave <= today)
        rows.setdefault(did, []).append((ended, entry, leave, status, code, get("first_name"), get("last_name"),
                                         get("middle_name"), birth, grade, email, f"{name}:{line}"))
    for did, rs in rows.items():
        open_rows = [r for r in rs if not r[0]]
        if open_rows:
            latest = max(open_rows, key=lambda r: r[1])
            status = "ENROLLED" if any(r[3] == "ENROLLED" or r[3] in ENDED for r in open_rows) else "PRE_ENROLLED"
            schools = tuple(sorted({r[4] for r in open_rows}))
            entry = min(r[1] for r in open_rows)
            leave = ""
        else:
            latest = max(rs, key=lambda r: (r[2] or today, r[1]))
            status = latest[3] if latest[3] in ENDED else "WITHDRAWN"
            schools = (latest[4],)
            entry = latest[1]
            # no date: the engine keeps the day it first saw the departure (else "today"
            # would move the withdrawal date on every run and the grace period never end)
            leave = latest[2]
        _, _, _, _, _, first, last, middle, birth, grade, email, origin = latest
        out.people[did] = Person(source_id=did, district_id=did, kind="student", given=first, family=last,
                                 middle=middle, birth=birth, grade=grade, schools=schools, status=status,
                                 entry=entry, leave=leave, email=email, origin=origin)
    return out
