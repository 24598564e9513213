"""The district CSV export: one row per student enrollment (see README "District CSV").

Header-driven (column order free, names case-insensitive, unknown columns ignored),
UTF-8 with or without BOM, RFC 4180 quoting. Rows of one district ID are merged: the
student's schools are those of the enrollments still open; when none is open the
student has left (withdrawal date: the latest leave date).
"""
from __future__ import annotations

from pathlib import Path

from directory.district.statuses import ENROLLMENT_ENDED as ENDED
from directory.district.statuses import ENROLLMENT_STATUSES as STATUSES

from directory.district.grades import GRADES
from directory.district.ids import DISTRICT_ID

from ..model import SITE_CODE, Input, Person, Rejected, date_problem, district_csv_rows, open_text, parse_date

COLUMNS = ["district_id", "first_name", "last_name", "middle_name", "birth_date", "grade", "school_code",
           "enrollment_status", "entry_date", "leave_date", "email"]
REQUIRED = ["district_id", "first_name", "last_name", "birth_date", "grade", "school_code",
            "enrollment_status"]
OPTIONAL = ["middle_name", "leave_date", "email", "school_name", "entry_date"]
STATUS_ALIASES = {"ACTIVE": "ENROLLED", "PREENROLLED": "PRE_ENROLLED", "PRE-ENROLLED": "PRE_ENROLLED"}


def parse(path, today: str, data: bytes | None = None, opts=None) -> Input:
    order = getattr(opts, "date_order", "AUTO")
    name = Path(path).name if path else "input.csv"
    fh = open_text(data if data is not None else path, name)
    out = Input(kind="district-csv", bulk_kinds={"student"})
    rows: dict[str, list] = {}
    for line, get, reject in district_csv_rows(name, fh, REQUIRED, OPTIONAL, out, "district_id",
                                                 getattr(opts, "district_id_re", None) or DISTRICT_ID,
                                                 getattr(opts, "csv_columns", None), getattr(opts, "csv_values", None)):
        did = get("district_id")
        birth = parse_date(get("birth_date"), order)
        if birth is None:
            reject("birth_date", date_problem(get("birth_date"), order))
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
        entry = parse_date(get("entry_date"), order) if get("entry_date") else ""
        if entry is None:
            reject("entry_date", date_problem(get("entry_date"), order))
            continue
        leave = ""
        if get("leave_date"):
            leave = parse_date(get("leave_date"), order)
            if leave is None:
                reject("leave_date", date_problem(get("leave_date"), order))
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
    # a column the file does not have changes nothing: the stored value stays
    keep = frozenset(f for c, f in (("entry_date", "entry"), ("middle_name", "middle"), ("email", "email"))
                     if c not in out.columns)
    for did, rs in rows.items():
        # rows of one ID are one student's enrollments: rows that disagree on who it is
        # (another birth date, or both names other) are two people under one ID — every row
        # rejected, the ID protected. (A changed surname alone is a name change, not a clash.)
        if len({r[8] for r in rs}) > 1 or (len({r[5].lower() for r in rs}) > 1 and len({r[6].lower() for r in rs}) > 1):
            lines = [int(r[11].rsplit(":", 1)[1]) for r in rs]
            for ln in lines:
                others = ", ".join(str(x) for x in lines if x != ln)
                out.rejected.append(Rejected(name, ln, "district_id", f"{did!r} is also on line(s) {others} with "
                                             "another birth date or other names: all its rows rejected", did))
            out.protected.add(did)
            continue
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
                                 entry=entry, leave=leave, email=email, origin=origin, keep=keep)
    return out
