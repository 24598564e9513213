"""OneRoster 1.1 / 1.2 CSV packages (1EdTech), zip or directory.

manifest.csv (propertyName,value) decides, per file, bulk | delta | absent. Used:
  orgs.csv           -> sites (code: `identifier`, else the sourcedId; name; type)
  users.csv          -> students and staff (1.1: `role` and `orgSourcedIds` here;
                        1.2: roles.csv gives roles and orgs)
  roles.csv (1.2)    -> role per user and org (beginDate/endDate respected)
  demographics.csv   -> birthDate, when present
enrollments.csv (class rosters) is not needed for school membership and is ignored.
Headers are checked by exact name; unknown extra columns are tolerated; a missing
required column is an error naming the file; a missing required value rejects the row
(file, line, column). `identifier` carries the district ID (required for people).

bulk users file: a user of a synced kind that is absent has left. delta: `status`
tobedeleted (or enabledUser false) means the user left; absent users are untouched.
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

from directory.district.ids import DISTRICT_ID

from directory.district.grades import GRADES
from ..model import SITE_CODE, Input, InputError, Person, Rejected, open_text, parse_date

COMMON = ["sourcedId", "status", "dateLastModified"]
HEADERS = {
    "1.1": {
        "orgs.csv": COMMON + ["name", "type", "identifier", "parentSourcedId"],
        "users.csv": COMMON + ["enabledUser", "orgSourcedIds", "role", "username", "userIds", "givenName",
                               "familyName", "middleName", "identifier", "email", "sms", "phone",
                               "agentSourcedIds", "grades", "password"],
        "demographics.csv": COMMON + ["birthDate"],
    },
    "1.2": {
        "orgs.csv": COMMON + ["name", "type", "identifier", "parentSourcedId"],
        "users.csv": COMMON + ["enabledUser", "username", "userIds", "givenName", "familyName", "middleName",
                               "identifier", "email", "sms", "phone", "agentSourcedIds", "grades", "password",
                               "userMasterIdentifier", "resourceSourcedIds", "preferredGivenName",
                               "preferredMiddleName", "preferredFamilyName", "primaryOrgSourcedId", "pronouns"],
        "roles.csv": COMMON + ["userSourcedId", "roleType", "role", "beginDate", "endDate", "orgSourcedId",
                               "userProfileSourcedId"],
        "demographics.csv": COMMON + ["birthDate"],
    },
}
STAFF_ROLES = {"teacher", "principal", "administrator", "aide", "counselor", "proctor",
               "districtadministrator", "siteadministrator", "systemadministrator"}
ORG_KINDS = {"school": "SCHOOL", "district": "OFFICE", "department": "OFFICE", "local": "OFFICE",
             "state": "OFFICE", "national": "OFFICE"}


class _Package:
    def __init__(self, path):
        self.path = Path(path)
        if self.path.is_dir():
            self.zip = None
        else:
            try:
                self.zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise InputError(f"{self.path.name}: not a OneRoster zip ({exc})") from None
            self.names = {Path(n).name: n for n in self.zip.namelist() if not n.endswith("/")}

    def read(self, name) -> bytes | None:
        if self.zip is None:
            p = self.path / name
            return p.read_bytes() if p.exists() else None
        n = self.names.get(name)
        return self.zip.read(n) if n else None


def _rows(pkg, name, required):
    data = pkg.read(name)
    if data is None:
        raise InputError(f"{name}: listed in manifest.csv but not in the package")
    reader = csv.reader(open_text(data, name))
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        raise InputError(f"{name}: line 1: {exc}") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{name}: line 1: missing column(s) {', '.join(missing)} (headers are exact, "
                         "case-sensitive)")
    idx = {h: i for i, h in enumerate(header)}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, f"unreadable CSV: {exc}"
            continue
        if not any(x.strip() for x in row):
            continue
        if len(row) < len(header):
            yield reader.line_num, None, f"{len(row)} fields, the header has {len(header)}"
            continue
        yield reader.line_num, {h: row[i].strip() for h, i in idx.items()}, None


def parse(path, today: str) -> Input:
    pkg = _Package(path)
    man = pkg.read("manifest.csv")
    if man is None:
        raise InputError(f"{Path(path).name}: no manifest.csv")
    props = {}
    for line, row, problem in _rows(pkg, "manifest.csv", ["propertyName", "value"]):
        if row:
            props[row["propertyName"]] = row["value"]
    version = props.get("oneroster.version", "")
    if version not in HEADERS:
        raise InputError(f"manifest.csv: oneroster.version {version!r} (supported: 1.1, 1.2)")
    heads = HEADERS[version]

    def mode(f):
        m = props.get(f"file.{f}", "absent").strip().lower()
        if m not in ("bulk", "delta", "absent"):
            raise InputError(f"manifest.csv: file.{f} = {m!r} (bulk, delta or absent)")
        return m

    out = Input(kind=f"oneroster-{version}")
    # orgs -> sites
    org_code = {}
    if mode("orgs") != "absent":
        for line, row, problem in _rows(pkg, "orgs.csv", heads["orgs.csv"]):
            if problem:
                out.rejected.append(Rejected("orgs.csv", line, "", problem))
                continue
            for col in ("sourcedId", "name", "type"):
                if not row[col]:
                    out.rejected.append(Rejected("orgs.csv", line, col, "required value is empty", row["sourcedId"]))
                    break
            else:
                code = row["identifier"] or row["sourcedId"]
                if not SITE_CODE.match(code):
                    out.rejected.append(Rejected("orgs.csv", line, "identifier", f"{code!r} is not a usable site code",
                                                 row["sourcedId"]))
                    continue
                org_code[row["sourcedId"]] = code
                if row["status"] != "tobedeleted":
                    out.sites[code] = (row["name"], ORG_KINDS.get(row["type"], "OFFICE"), row["sourcedId"])
    users_mode = mode("users")
    if users_mode == "absent":
        raise InputError("manifest.csv: file.users is absent: nothing to sync")
    # 1.2 roles
    roles = {}
    if version == "1.2":
        if mode("roles") == "absent":
            raise InputError("manifest.csv: OneRoster 1.2 needs roles.csv (file.roles is absent)")
        for line, row, problem in _rows(pkg, "roles.csv", heads["roles.csv"]):
            if problem:
                out.rejected.append(Rejected("roles.csv", line, "", problem))
                continue
            bad = next((c for c in ("userSourcedId", "roleType", "role", "orgSourcedId") if not row[c]), None)
            if bad:
                out.rejected.append(Rejected("roles.csv", line, bad, "required value is empty", row["userSourcedId"]))
                out.protected.add(row["userSourcedId"])
                continue
            end = parse_date(row["endDate"]) if row["endDate"] else None
            begin = parse_date(row["beginDate"]) if row["beginDate"] else None
            active = row["status"] != "tobedeleted" and not (end and end < today) and not (begin and begin > today)
            roles.setdefault(row["userSourcedId"], []).append((row["role"], row["orgSourcedId"], active,
                                                               row["roleType"] == "primary"))
    births = {}
    if mode("demographics") != "absent" and pkg.read("demographics.csv") is not None:
        for line, row, problem in _rows(pkg, "demographics.csv", heads["demographics.csv"]):
            if row and row["birthDate"]:
                births[row["sourcedId"]] = parse_date(row["birthDate"]) or ""
    if users_mode == "bulk":
        out.bulk_kinds = {"student", "staff"}
    for line, row, problem in _rows(pkg, "users.csv", heads["users.csv"]):
        out.rows += 1
        if problem:
            out.rejected.append(Rejected("users.csv", line, "", problem))
            continue
        sid = row["sourcedId"]

        def reject(col, reason):
            out.rejected.append(Rejected("users.csv", line, col, reason, row.get("identifier") or sid))
            if sid:
                out.protected.add(sid)

        if not sid:
            reject("sourcedId", "required value is empty")
            continue
        if users_mode == "delta" and row["status"] not in ("active", "tobedeleted"):
            reject("status", f"{row['status']!r}: a delta row needs status active or tobedeleted")
            continue
        if row["status"] == "tobedeleted":
            out.deleted[sid] = parse_date(row["dateLastModified"]) or today
            continue
        if version == "1.1":
            role = row["role"]
            if not role:
                reject("role", "required value is empty")
                continue
            orgs = [o.strip() for o in row["orgSourcedIds"].split(",") if o.strip()]
            if not orgs:
                reject("orgSourcedIds", "required value is empty")
                continue
            user_roles = [(role, o, True) for o in orgs]
        else:
            user_roles = [(r, o, a) for r, o, a, _primary in roles.get(sid, [])]
            if not user_roles:
                reject("sourcedId", "no role in roles.csv")
                continue
        kinds = {"student" if r == "student" else "staff" if r.lower() in STAFF_ROLES else None
                 for r, _o, _a in user_roles}
        kind = "student" if "student" in kinds else "staff" if "staff" in kinds else None
        if kind is None:
            out.skipped += 1   # guardians, parents, relatives: not directory accounts here
            continue
        for col in ("enabledUser", "givenName", "familyName"):
            if not row[col]:
                break
        else:
            col = None
        if col:
            reject(col, "required value is empty")
            continue
        if row["enabledUser"].lower() not in ("true", "false"):
            reject("enabledUser", f"{row['enabledUser']!r}: true or false")
            continue
        did = row["identifier"]
        if not did:
            reject("identifier", "empty: the district ID is required")
            continue
        if not DISTRICT_ID.match(did):
            reject("identifier", f"{did!r} is not a district ID")
            continue
        my_roles = [(r, o, a) for r, o, a in user_roles if (r == "student") == (kind == "student")]
        # an org not in this package's orgs.csv (a delta): "@sourcedId", resolved by the
        # engine from the sites' recorded OneRoster ids
        schools = tuple(sorted({org_code.get(o, "@" + o) for r, o, a in my_roles if a}))
        grade = ""
        if kind == "student" and row["grades"]:
            grade = row["grades"].split(",")[0].strip().upper()
            if grade.isdigit() and len(grade) == 1:
                grade = "0" + grade
            if grade not in GRADES:
                reject("grades", f"{row['grades']!r} is not a OneRoster grade")
                continue
        enabled = row["enabledUser"].lower() == "true"
        status = "ENROLLED" if enabled and schools else "INACTIVE"
        leave = "" if status == "ENROLLED" else (parse_date(row["dateLastModified"]) or today)
        if not schools:
            schools = tuple(sorted({org_code.get(o, "@" + o) for r, o, a in my_roles}))
        title = next((r for r, o, a in my_roles if a), my_roles[0][0] if my_roles else "")
        out.people[sid] = Person(source_id=sid, district_id=did, kind=kind, given=row["givenName"],
                                 family=row["familyName"], middle=row["middleName"], birth=births.get(sid, ""),
                                 grade=grade, schools=schools, status=status, entry="", leave=leave,
                                 email=row["email"], title=title if kind == "staff" else "",
                                 origin=f"users.csv:{line}")
    return out
