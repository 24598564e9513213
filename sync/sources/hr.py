"""The district HR export: one row per employee assignment (see README "HR CSV").

Header-driven like the student district CSV (column order free, names case-insensitive,
unknown columns ignored, UTF-8 with or without BOM, RFC 4180 quoting). Rows of one
employee are merged: their sites are those of the assignments still open; with none
open the employee has left (separation date: the latest leave date). Employees become
staff (ou=staff) of their sites, like OneRoster teachers and principals.
"""
from __future__ import annotations

from pathlib import Path

from directory.district.ids import DISTRICT_ID

from ..model import SITE_CODE, Input, Person, date_problem, district_csv_rows, open_text, parse_date

REQUIRED = ["employee_id", "first_name", "last_name", "site_code", "job_title", "status"]
OPTIONAL = ["middle_name", "email", "hire_date", "leave_date", "site_name"]
# HR status -> (still employed, rollcallEnrollmentStatus of the record)
STATUSES = {"ACTIVE": (True, "ENROLLED"), "ON_LEAVE": (True, "ENROLLED"), "LEAVE": (True, "ENROLLED"),
            "PRE_HIRE": (True, "PRE_ENROLLED"), "HIRED": (True, "PRE_ENROLLED"),
            "TERMINATED": (False, "WITHDRAWN"), "RESIGNED": (False, "WITHDRAWN"),
            "RETIRED": (False, "WITHDRAWN"), "SEPARATED": (False, "WITHDRAWN"), "INACTIVE": (False, "INACTIVE")}
# the OneRoster role names, so that HR and OneRoster staff carry the same titles
ROLES = {r.lower(): r for r in ("teacher", "principal", "administrator", "aide", "counselor", "proctor",
                                "districtAdministrator", "siteAdministrator", "systemAdministrator")}


def parse(path, today: str, data: bytes | None = None, opts=None) -> Input:
    order = getattr(opts, "date_order", "AUTO")
    name = Path(path).name if path else "hr.csv"
    fh = open_text(data if data is not None else path, name)
    out = Input(kind="hr-csv", bulk_kinds={"staff"})
    rows: dict[str, list] = {}
    for line, get, reject in district_csv_rows(name, fh, REQUIRED, OPTIONAL, out, "employee_id",
                                                 getattr(opts, "district_id_re", None) or DISTRICT_ID):
        eid = get("employee_id")
        codes = [c.strip() for c in get("site_code").split(";") if c.strip()]
        badc = next((c for c in codes if not SITE_CODE.match(c)), None)
        if badc is not None or not codes:
            reject("site_code", f"{badc!r} is not a site code")
            continue
        status = get("status").upper().replace(" ", "_").replace("-", "_")
        if status not in STATUSES:
            reject("status", f"{get('status')!r} is not one of {', '.join(STATUSES)}")
            continue
        dates = {}
        for col in ("hire_date", "leave_date"):
            dates[col] = parse_date(get(col), order) if get(col) else ""
            if dates[col] is None:
                reject(col, date_problem(get(col), order))
                break
        else:
            col = None
        if col:
            continue
        email = get("email")
        if email and ("@" not in email or " " in email):
            reject("email", f"{email!r} is not an e-mail address")
            continue
        title = get("job_title")
        title = ROLES.get(title.lower().replace(" ", ""), title)
        for c in codes:
            out.sites.setdefault(c, (get("site_name") or None, "SCHOOL", None) if len(codes) == 1 else
                                 (None, "SCHOOL", None))
        employed, rec_status = STATUSES[status]
        hire, leave = dates["hire_date"], dates["leave_date"]
        ended = not employed or bool(leave and leave <= today)
        if employed and hire and hire > today:
            rec_status = "PRE_ENROLLED"
        rows.setdefault(eid, []).append((ended, hire, leave, rec_status, tuple(codes), get("first_name"),
                                         get("last_name"), get("middle_name"), email, title, f"{name}:{line}"))
    for eid, rs in rows.items():
        open_rows = [r for r in rs if not r[0]]
        if open_rows:
            latest = max(open_rows, key=lambda r: r[1])
            status = "PRE_ENROLLED" if all(r[3] == "PRE_ENROLLED" for r in open_rows) else "ENROLLED"
            sites = tuple(sorted({c for r in open_rows for c in r[4]}))
            entry = min((r[1] for r in open_rows if r[1]), default="")
            leave = ""
        else:
            latest = max(rs, key=lambda r: (r[2] or today, r[1]))
            status = latest[3] if latest[3] != "ENROLLED" and latest[3] != "PRE_ENROLLED" else "WITHDRAWN"
            sites = latest[4]
            entry = latest[1]
            # no date: the engine keeps the first day it saw the departure (stable re-runs)
            leave = latest[2]
        _, _, _, _, _, first, last, middle, email, title, origin = latest
        out.people[eid] = Person(source_id=eid, district_id=eid, kind="staff", given=first, family=last,
                                 middle=middle, schools=tuple(sorted(sites)), status=status, entry=entry,
                                 leave=leave, email=email, title=title, origin=origin)
    return out
