"""A small district for the access-control, password-policy and memberOf tests:
three sites with their role groups, students of one and of two schools, a sub-
administrator of one site and one of two sites, a principal, a district
administrator, the two service accounts, and accounts in every state.

`make_server(workdir, policy=...)` starts a ServerProcess with all six schema files,
the `access:` rules of the real config.yaml and a password policy with small numbers.
"""
from pathlib import Path

import yaml
from ldap3 import Connection, Server

from tests.conftest import ROOT, ROOT_DN, ROOT_PW, SUFFIX, ServerProcess

SCHEMA_FILES = ["core.schema", "cosine.schema", "inetorgperson.schema", "nis.schema",
                "eduperson.schema", "rollcall.schema", "rollcall-photos.schema"]

PEOPLE = f"ou=people,{SUFFIX}"
STUDENTS = f"ou=students,{PEOPLE}"
STAFF = f"ou=staff,{PEOPLE}"
NONEMP = f"ou=nonemployees,{PEOPLE}"
SITES = f"ou=sites,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICES = f"ou=services,{SUFFIX}"
JOBS = f"ou=jobs,{SUFFIX}"
DISTRICT_ADMINS = f"cn=district-admins,{GROUPS}"


def site(code):
    return f"ou={code},{SITES}"


def role_group(role, code):
    return f"cn={role},{site(code)}"


def student(uid):
    return f"uid={uid},{STUDENTS}"


def staff(uid):
    return f"uid={uid},{STAFF}"


def service(cn):
    return f"cn={cn},{SERVICES}"


NE_EXPIRED = f"uid=neexpired,{NONEMP}"
NE_VALID = f"uid=nevalid,{NONEMP}"

# uid -> (school codes, status)
STUDENT_DATA = {
    "s1": (["1111"], "ENABLED"),
    "s2": (["2222"], "ENABLED"),
    "s12": (["1111", "2222"], "ENABLED"),
    "s3": (["3333"], "ENABLED"),
    "sD": (["1111"], "DISABLED"),
    "sP": (["1111"], "PENDING"),
    # spare students of 1111 for the password-policy tests (one per scenario)
    "lock1": (["1111"], "ENABLED"),
    "lock2": (["1111"], "ENABLED"),
    "locked1": (["1111"], "ENABLED"),
    "reset1": (["1111"], "ENABLED"),
    "quality1": (["1111"], "ENABLED"),
    "hashme": (["1111"], "ENABLED"),
}
STAFF_UIDS = ["admin1", "admin12", "adminnone", "admindis", "principal1", "distadmin", "teach1"]
# staff whose school code is 1111: a school's sub-administrator must get no rights over them
STAFF_SITES = {"principal1": ["1111"], "admin1": ["1111"], "teach1": ["1111"]}

# role groups: (role, site) -> member DNs (an "empty" group names its own site)
ROLE_MEMBERS = {
    ("student-email-admins", "1111"): [staff("admin1"), staff("admin12"), staff("admindis")],
    ("principals", "1111"): [staff("principal1")],
    ("student-email-admins", "2222"): [staff("admin12")],
    ("principals", "2222"): [site("2222")],
    ("student-email-admins", "3333"): [site("3333")],
    ("principals", "3333"): [site("3333")],
}


def password(uid):
    """Everyone's known password (the uid reversed: the policy refuses one containing the uid)."""
    return f"Pw-{uid[::-1]}-2025!"  # the uid reversed: a password may not contain the uid


def dn_of(name):
    """DN of any named account of this district."""
    if name in STUDENT_DATA:
        return student(name)
    if name in STAFF_UIDS:
        return staff(name)
    if name in ("sso-portal", "sis-sync"):
        return service(name)
    if name == "neexpired":
        return NE_EXPIRED
    if name == "nevalid":
        return NE_VALID
    raise KeyError(name)


def bind(srv, name=None, pw=None):
    """An ldap3 connection bound as `name` (a district account), the root DN or anonymous."""
    server = Server(srv.url)
    if name is None:
        conn = Connection(server)
    elif name == "root":
        conn = Connection(server, ROOT_DN, ROOT_PW)
    else:
        conn = Connection(server, dn_of(name), pw or password(name))
    conn.open()
    conn.bind()
    return conn


def _entry(dn, *pairs):
    lines = [f"dn: {dn}"]
    for name, values in pairs:
        for v in values if isinstance(values, list) else [values]:
            lines.append(f"{name}: {v}")
    return "\n".join(lines) + "\n"


def district_ldif() -> str:
    out = [
        _entry(SUFFIX, ("objectClass", ["top", "dcObject", "organization"]), ("dc", "district"),
               ("o", "Test District")),
        _entry(PEOPLE, ("objectClass", "organizationalUnit"), ("ou", "people")),
        _entry(STUDENTS, ("objectClass", "organizationalUnit"), ("ou", "students")),
        _entry(STAFF, ("objectClass", "organizationalUnit"), ("ou", "staff")),
        _entry(NONEMP, ("objectClass", "organizationalUnit"), ("ou", "nonemployees")),
    ]
    for n, (uid, (codes, status)) in enumerate(STUDENT_DATA.items(), 1):
        out.append(_entry(
            student(uid),
            ("objectClass", ["inetOrgPerson", "rollcallAccount", "rollcallStudent"]),
            ("uid", uid), ("cn", f"Student {uid}"), ("givenName", "Student"), ("sn", uid),
            ("mail", f"{uid}@students.district.example"), ("employeeNumber", f"{n:06d}s{n:03d}"),
            ("departmentNumber", codes), ("rollcallAccountStatus", status), ("rollcallGrade", "05"),
            ("description", f"student {uid}"), ("userPassword", password(uid))))
    for n, uid in enumerate(STAFF_UIDS, 1):
        out.append(_entry(
            staff(uid), ("objectClass", ["inetOrgPerson", "rollcallAccount"]),
            ("uid", uid), ("cn", f"Staff {uid}"), ("sn", uid), ("mail", f"{uid}@district.example"),
            ("employeeNumber", f"{n:06d}e{n:03d}"), ("rollcallAccountStatus", "ENABLED"),
            *((("departmentNumber", STAFF_SITES[uid]),) if uid in STAFF_SITES else ()),
            ("userPassword", password(uid))))
    for uid, expiry in (("neexpired", "20200101000000Z"), ("nevalid", "20991231000000Z")):
        out.append(_entry(
            f"uid={uid},{NONEMP}",
            ("objectClass", ["inetOrgPerson", "rollcallAccount", "rollcallNonEmployee"]),
            ("uid", uid), ("cn", f"Contractor {uid}"), ("sn", uid), ("mail", f"{uid}@vendor.example"),
            ("rollcallAccountStatus", "ENABLED"), ("rollcallNonEmployeeKind", "CONTRACTOR"),
            ("rollcallSponsor", staff("principal1")), ("rollcallExpiry", expiry),
            ("rollcallOrganization", "Therapy Inc"), ("departmentNumber", "1111"),
            ("userPassword", password(uid))))
    out.append(_entry(SITES, ("objectClass", "organizationalUnit"), ("ou", "sites")))
    for code in ("1111", "2222", "3333"):
        out.append(_entry(site(code), ("objectClass", ["top", "rollcallSite"]), ("ou", code),
                          ("rollcallCostCenter", code), ("rollcallSiteName", f"School {code}")))
        for role in ("student-email-admins", "principals"):
            out.append(_entry(role_group(role, code), ("objectClass", "groupOfNames"), ("cn", role),
                              ("member", ROLE_MEMBERS[(role, code)])))
    out += [
        _entry(GROUPS, ("objectClass", "organizationalUnit"), ("ou", "groups")),
        _entry(DISTRICT_ADMINS, ("objectClass", "groupOfNames"), ("cn", "district-admins"),
               ("member", staff("distadmin"))),
        _entry(SERVICES, ("objectClass", "organizationalUnit"), ("ou", "services")),
        _entry(JOBS, ("objectClass", "organizationalUnit"), ("ou", "jobs")),
    ]
    for cn, kind in (("sso-portal", "SSO"), ("sis-sync", "SYNC")):
        out.append(_entry(service(cn), ("objectClass", "rollcallService"), ("cn", cn),
                          ("rollcallServiceKind", kind), ("userPassword", password(cn))))
    return "\n".join(out)


def crowd_ldif(prefix: str, n: int, school="1111") -> str:
    """`n` more ENABLED students of one school, uid <prefix>01…, for the tests of many
    users behind one SSO front end (password(uid) as everyone's)."""
    out = []
    for i in range(1, n + 1):
        uid = f"{prefix}{i:02d}"
        out.append(_entry(
            student(uid), ("objectClass", ["inetOrgPerson", "rollcallAccount", "rollcallStudent"]),
            ("uid", uid), ("cn", f"Student {uid}"), ("givenName", "Student"), ("sn", uid),
            ("mail", f"{uid}@students.district.example"), ("employeeNumber", f"8{i:05d}{prefix[-1]}{i:03d}"),
            ("departmentNumber", school), ("rollcallAccountStatus", "ENABLED"), ("rollcallGrade", "05"),
            ("userPassword", password(uid))))
    return "\n".join(out)


def access_rules():
    with open(ROOT / "config.yaml") as fh:
        return yaml.safe_load(fh)["access"]


DEFAULT_POLICY = {"min_length": 8, "history": 2, "max_failures": 3, "failure_window": 60,
                  "lockout_duration": 0, "source_max_failures": 1000, "source_window": 60}


def make_server(workdir: Path, policy=None, indexes=None, extra=None, extra_ldif="", load=True,
                start=True, **server) -> ServerProcess:
    """The test district's server. load=False: its store already has the district
    (another host's server over the same database); server: ServerProcess's host,
    netns, store."""
    extra = {
        "schema": [str(ROOT / "schema" / n) for n in SCHEMA_FILES],
        "access": access_rules(),
        "password_policy": dict(DEFAULT_POLICY, **(policy or {})),
        # like config.yaml: memberOf is indexed (the memberOf filter tests use it)
        "indexes": {"memberOf": ["eq"], "uniqueMember": ["eq"], **(indexes or {})},
        **(extra or {}),
    }
    ldif = district_ldif() + ("\n" + extra_ldif if extra_ldif else "") if load else None
    srv = ServerProcess(workdir, extra_config=extra, ldif=ldif, **server)
    return srv.start() if start else srv
