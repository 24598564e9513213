"""OneRoster 1.1 / 1.2 CSV packages (1EdTech), zip or directory.

manifest.csv (propertyName,value) decides, per file, bulk | delta | absent. Used:
  orgs.csv           -> sites (code: `identifier`, else a stable short form of the
                        sourcedId when it is too long for a site code)
  users.csv          -> students and staff (1.1: `role` and `orgSourcedIds` here;
                        1.2: roles.csv gives roles and orgs)
  roles.csv (1.2)    -> role per user and org (beginDate/endDate respected)
  demographics.csv   -> birthDate, when present
enrollments.csv (class rosters) is not needed for school membership and is ignored.
Only the columns Rollcall reads are required; every missing column of every file is
reported in one error. Role names are compared case-insensitively. A missing required
value rejects the row (file, line, column) and protects its person: a rejected row never
makes anyone absent. Two rows with one sourcedId or one district ID are both rejected.
An optional column or a file that is absent changes nothing (the stored value stays).

bulk users file: a user of a synced kind that is absent has left. delta: `status`
tobedeleted (or enabledUser false) means the user left; absent users are untouched;
a 1.2 roles.csv delta changes only the memberships of its rows. The departure date is
the role's endDate when given, else the day the sync first sees the departure (never
dateLastModified, which says when the row was edited).
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from directory.district.grades import GRADES
from directory.district.ids import DISTRICT_ID

from ..model import SITE_CODE, Input, InputError, Person, Rejected, csv_records, date_problem, open_text, parse_date

# the columns Rollcall reads (others, and the spec's other columns, may be absent)
REQUIRED = {
    "orgs.csv": ["sourcedId", "name", "type"],
    "users.csv": ["sourcedId", "enabledUser", "givenName", "familyName"],
    "users.csv/1.1": ["role", "orgSourcedIds"],
    "roles.csv": ["userSourcedId", "role", "orgSourcedId"],
    "demographics.csv": ["sourcedId", "birthDate"],
}
STAFF_ROLES = {"teacher", "principal", "administrator", "aide", "counselor", "proctor",
               "districtadministrator", "siteadministrator", "systemadministrator"}
SKIPPED_ROLES = {"guardian", "parent", "relative", "student-guardian"}   # not directory accounts
ORG_KINDS = {"school": "SCHOOL", "district": "OFFICE", "department": "OFFICE", "local": "OFFICE",
             "state": "OFFICE", "national": "OFFICE"}
SITE_CODE_MAX = 32


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


class _File:
    """One CSV of the package: its header (columns present) and its records."""

    def __init__(self, pkg, name, required, problems):
        self.name = name
        self.header, self.recs = [], []
        data = pkg.read(name)
        if data is None:
            problems.append(f"{name}: listed in manifest.csv but not in the package")
            return
        try:
            header, self.recs = csv_records(open_text(data, name), name)
        except InputError as exc:
            problems.append(str(exc))
            return
        self.header = [h.strip() for h in header]
        missing = [c for c in required if c not in self.header]
        if missing:
            problems.append(f"{name}: line 1: missing column(s) {', '.join(missing)} (headers are exact, "
                            "case-sensitive; columns Rollcall reads: " + ", ".join(required) + ")")
        self.idx = {h: i for i, h in enumerate(self.header)}

    def has(self, col):
        return col in self.idx

    def rows(self):
        """(line, row dict | None, problem, key dict of what could be read)."""
        width = len(self.header)
        for line, row, problem in self.recs:
            if row is None:
                yield line, None, problem, {}
                continue
            got = {h: row[i].strip() for h, i in self.idx.items() if i < len(row)}
            if len(row) < width:
                yield line, None, f"{len(row)} fields, the header has {width}", got
                continue
            yield line, got, None, got


def short_code(sourced_id: str) -> str:
    """A stable site code for an org whose sourcedId is no usable code (a GUID …):
    'org-' and 12 hex digits of its SHA-256."""
    return "org-" + hashlib.sha256(sourced_id.encode("utf-8")).hexdigest()[:12]


def parse(path, today: str, opts=None) -> Input:
    """opts: the SyncConfig (date_order, district_id, oneroster settings); None: defaults."""
    order = getattr(opts, "date_order", "AUTO")
    id_re = getattr(opts, "district_id_re", None) or DISTRICT_ID
    id_field = getattr(opts, "oneroster_id_field", "identifier")       # identifier | username | sourcedId | userIds:TYPE
    site_field = getattr(opts, "oneroster_site_code_field", "identifier")
    pkg = _Package(path)
    man = pkg.read("manifest.csv")
    if man is None:
        raise InputError(f"{Path(path).name}: no manifest.csv")
    problems = []
    mf = _File(pkg, "manifest.csv", ["propertyName", "value"], problems)
    if problems:
        raise InputError("; ".join(problems))
    props = {row["propertyName"]: row["value"] for _l, row, _p, _k in mf.rows() if row}
    version = props.get("oneroster.version", "")
    if version not in ("1.1", "1.2"):
        raise InputError(f"manifest.csv: oneroster.version {version!r} (supported: 1.1, 1.2)")

    def mode(f):
        m = props.get(f"file.{f}", "absent").strip().lower()
        if m not in ("bulk", "delta", "absent"):
            problems.append(f"manifest.csv: file.{f} = {m!r} (bulk, delta or absent)")
            return "absent"
        return m

    modes = {f: mode(f) for f in ("orgs", "users", "roles", "demographics")}
    id_col = id_field.split(":", 1)[0]
    users_req = REQUIRED["users.csv"] + (REQUIRED["users.csv/1.1"] if version == "1.1" else []) + [id_col]
    files = {}
    for f, req in (("orgs", REQUIRED["orgs.csv"]), ("users", users_req), ("roles", REQUIRED["roles.csv"]),
                   ("demographics", REQUIRED["demographics.csv"])):
        if f == "roles" and version != "1.2":
            continue
        if modes[f] != "absent":
            files[f] = _File(pkg, f"{f}.csv", sorted(set(req), key=req.index), problems)
    if problems:   # every problem of every file, in one run
        raise InputError("; ".join(problems))

    out = Input(kind=f"oneroster-{version}")
    out.delta = modes["users"] != "bulk"
    # orgs -> sites
    org_code = {}
    if "orgs" in files:
        of = files["orgs"]
        for line, row, problem, got in of.rows():
            if problem:
                out.rejected.append(Rejected("orgs.csv", line, "", problem, got.get("sourcedId", "")))
                continue
            bad = next((c for c in ("sourcedId", "name", "type") if not row[c]), None)
            if bad:
                out.rejected.append(Rejected("orgs.csv", line, bad, "required value is empty", row["sourcedId"]))
                continue
            code = row.get(site_field, "") if of.has(site_field) else ""
            if not code:
                code = row["sourcedId"] if SITE_CODE.match(row["sourcedId"]) else short_code(row["sourcedId"])
            if not SITE_CODE.match(code):
                out.rejected.append(Rejected("orgs.csv", line, site_field, f"{code!r} is not a usable site code "
                                             f"(letters, digits, - and _, at most {SITE_CODE_MAX})",
                                             row["sourcedId"]))
                continue
            org_code[row["sourcedId"]] = code
            if row.get("status", "") != "tobedeleted":
                out.sites[code] = (row["name"], ORG_KINDS.get(row["type"].lower(), "OFFICE"), row["sourcedId"])
    out.org_code = org_code
    # 1.2 roles: sid -> [(role, org ref, active, primary, end)]
    roles = {}
    roles_delta = version == "1.2" and modes["roles"] == "delta"
    if version == "1.2" and modes["roles"] == "absent" and modes["users"] == "bulk":
        raise InputError("manifest.csv: OneRoster 1.2 needs roles.csv (file.roles is absent)")
    bad_role_users = set()
    role_line = {}
    if "roles" in files:
        rf = files["roles"]
        for line, row, problem, got in rf.rows():
            if problem:
                out.rejected.append(Rejected("roles.csv", line, "", problem, got.get("userSourcedId", "")))
                if got.get("userSourcedId"):
                    out.protected.add(got["userSourcedId"])
                    bad_role_users.add(got["userSourcedId"])
                continue
            bad = next((c for c in ("userSourcedId", "role", "orgSourcedId") if not row[c]), None)
            dates = {}
            for c in ("beginDate", "endDate"):
                if row.get(c):
                    dates[c] = parse_date(row[c], order)
                    if dates[c] is None and not bad:
                        bad = c
            if bad:
                why = "required value is empty" if not row.get(bad) else date_problem(row[bad], order)
                out.rejected.append(Rejected("roles.csv", line, bad, why, row["userSourcedId"]))
                out.protected.add(row["userSourcedId"])
                bad_role_users.add(row["userSourcedId"])
                continue
            end, begin = dates.get("endDate"), dates.get("beginDate")
            active = row.get("status", "") != "tobedeleted" and not (end and end < today) \
                and not (begin and begin > today)
            role_line.setdefault(row["userSourcedId"], line)
            roles.setdefault(row["userSourcedId"], []).append(
                (row["role"].lower(), org_code.get(row["orgSourcedId"], "@" + row["orgSourcedId"]), active,
                 row.get("roleType", "").lower() == "primary", end or ""))
    births = {}
    if "demographics" in files:
        for line, row, problem, got in files["demographics"].rows():
            if problem:
                out.rejected.append(Rejected("demographics.csv", line, "", problem, got.get("sourcedId", "")))
                if got.get("sourcedId"):
                    out.protected.add(got["sourcedId"])
                    births[got["sourcedId"]] = None
                continue
            b = row["birthDate"]
            if not b:
                births[row["sourcedId"]] = ""          # an explicit empty value clears it
                continue
            births[row["sourcedId"]] = parse_date(b, order)
            if births[row["sourcedId"]] is None:
                out.rejected.append(Rejected("demographics.csv", line, "birthDate", date_problem(b, order),
                                             row["sourcedId"]))
    if modes["users"] == "bulk":
        out.bulk_kinds = {"student", "staff"}
    uf = files.get("users")
    user_rows = list(uf.rows()) if uf else []
    # duplicate keys: both rows rejected, both people protected
    seen_sid, seen_did, dup = {}, {}, {}
    for line, row, problem, got in user_rows:
        if row is None:
            continue
        for key, seen in ((row["sourcedId"], seen_sid), (_user_id(row, id_field), seen_did)):
            if key:
                seen.setdefault(key, []).append(line)
    for seen, col in ((seen_sid, "sourcedId"), (seen_did, id_col)):
        for key, lines in seen.items():
            if len(lines) > 1:
                for ln in lines:
                    others = ", ".join(str(x) for x in lines if x != ln)
                    dup.setdefault(ln, (col, f"{key!r} is also on line(s) {others}: both rows rejected"))
    for line, row, problem, got in user_rows:
        out.rows += 1
        if problem:
            out.rejected.append(Rejected("users.csv", line, "", problem, got.get(id_col, "") or got.get("sourcedId", "")))
            if got.get("sourcedId"):
                out.protected.add(got["sourcedId"])
            continue
        sid = row["sourcedId"]

        def reject(col, reason):
            out.rejected.append(Rejected("users.csv", line, col, reason, _user_id(row, id_field) or sid))
            if sid:
                out.protected.add(sid)

        if not sid:
            reject("sourcedId", "required value is empty")
            continue
        if line in dup:
            reject(*dup[line])
            continue
        status = row.get("status", "").lower()
        if modes["users"] == "delta" and status not in ("active", "tobedeleted"):
            reject("status", f"{row.get('status', '')!r}: a delta row needs status active or tobedeleted")
            continue
        if status == "tobedeleted":
            out.deleted[sid] = ""          # the departure: the day the sync first sees it
            continue
        if version == "1.1":
            role = row["role"].lower()
            if not role:
                reject("role", "required value is empty")
                continue
            orgs = [o.strip() for o in row["orgSourcedIds"].split(",") if o.strip()]
            if not orgs:
                reject("orgSourcedIds", "required value is empty")
                continue
            user_roles = [(role, org_code.get(o, "@" + o), True, False, "") for o in orgs]
        else:
            if sid in bad_role_users:
                reject("sourcedId", "a role of this user in roles.csv was rejected")
                continue
            user_roles = roles.pop(sid, [])
            if not user_roles and not roles_delta:
                reject("sourcedId", "no role in roles.csv")
                continue
        kinds = {"student" if r == "student" else "staff" if r in STAFF_ROLES else None for r, *_ in user_roles}
        kind = "student" if "student" in kinds else "staff" if "staff" in kinds else None
        if not user_roles:   # a 1.2 delta row without role rows: kind and schools from the record
            kind = "?"
        if kind is None:
            if all(r in SKIPPED_ROLES for r, *_ in user_roles):
                out.skipped += 1   # guardians, parents, relatives: not directory accounts here
            else:
                reject("role", f"{', '.join(sorted({r for r, *_ in user_roles}))}: not a role Rollcall syncs")
            continue
        bad = next((c for c in ("enabledUser", "givenName", "familyName") if not row[c]), None)
        if bad:
            reject(bad, "required value is empty")
            continue
        if row["enabledUser"].lower() not in ("true", "false"):
            reject("enabledUser", f"{row['enabledUser']!r}: true or false")
            continue
        did = _user_id(row, id_field)
        if not did:
            reject(id_col, f"empty: the district ID is required ({id_field})")
            continue
        if not id_re.match(did):
            reject(id_col, f"{did!r} is not a district ID (sync.district_id.pattern)")
            continue
        names = {}
        for col in ("givenName", "familyName", "middleName", "preferredGivenName"):
            v = row.get(col, "")
            if "\n" in v or "\r" in v:
                v = " ".join(v.split())      # a line break in a name is folded to a space
            names[col] = v
        my_roles = [t for t in user_roles if (t[0] == "student") == (kind == "student")] if kind != "?" else []
        keep = set()
        if births.get(sid) is None:
            keep.add("birth")            # no demographics row (or file): the stored birth date stays
        for col, fld in (("middleName", "middle"), ("email", "email")):
            if not uf.has(col):
                keep.add(fld)
        grade = ""
        if kind in ("student", "?") and uf.has("grades") and row["grades"]:
            grade = row["grades"].split(",")[0].strip().upper()
            if grade.isdigit() and len(grade) == 1:
                grade = "0" + grade
            if grade == "K":
                grade = "KG"
            if grade not in GRADES:
                reject("grades", f"{row['grades']!r} is not a OneRoster grade")
                continue
        elif not uf.has("grades"):
            keep.add("grade")
        enabled = row["enabledUser"].lower() == "true"
        schools = tuple(sorted({o for r, o, a, *_ in my_roles if a}))
        adds = drops = ()
        if roles_delta:
            keep.add("schools")
            adds = schools
            drops = tuple(sorted({o for r, o, a, *_ in my_roles if not a}))
        if kind == "?":
            keep.update({"kind", "schools"})
        status = "ENROLLED" if enabled and (schools or "schools" in keep) else "INACTIVE"
        ends = [e for r, o, a, p, e in my_roles]
        # departure: the role's endDate when every role has one, else "" (the engine keeps
        # the day it first sees the departure)
        leave = "" if status == "ENROLLED" else (max(ends) if ends and all(ends) else "")
        if not schools and "schools" not in keep:
            schools = tuple(sorted({o for r, o, a, *_ in my_roles}))
        title = next((r for r, o, a, *_ in my_roles if a), my_roles[0][0] if my_roles else "")
        out.people[sid] = Person(source_id=sid, district_id=did, kind=kind, given=names["givenName"],
                                 preferred=names["preferredGivenName"],
                                 family=names["familyName"], middle=names["middleName"], birth=births.get(sid) or "",
                                 grade=grade, schools=schools, status=status, entry="", leave=leave,
                                 email=row.get("email", ""), title=_title(title) if kind == "staff" else "",
                                 origin=f"users.csv:{line}", keep=frozenset(keep), add_schools=adds,
                                 drop_schools=drops)
    # a 1.2 roles.csv delta about people not in users.csv: memberships only
    if roles_delta:
        for sid, rs in roles.items():
            if any(r == "student" or r in STAFF_ROLES for r, *_ in rs):
                out.role_changes[sid] = rs
                out.role_lines[sid] = role_line[sid]
            else:
                out.skipped += 1   # a guardian's role …
    return out


def _title(role):
    return {r.lower(): r for r in ("teacher", "principal", "administrator", "aide", "counselor", "proctor",
                                   "districtAdministrator", "siteAdministrator", "systemAdministrator")}.get(role, role)


def _user_id(row, id_field):
    """The district ID of a users.csv row: `identifier`, `username`, `sourcedId`, or the
    `userIds` entry of a type ("userIds:District" reads {District:000123s045})."""
    if ":" not in id_field:
        return row.get(id_field, "")
    _col, typ = id_field.split(":", 1)
    for part in row.get("userIds", "").strip("[]").split(","):
        part = part.strip().strip("{}")
        if ":" in part:
            t, v = part.split(":", 1)
            if t.strip().lower() == typ.lower():
                return v.strip()
    return ""
