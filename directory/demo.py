"""A demo school district for `scripts/serve`'s first start, and for tests.

    demo_ldif(suffix) -> str               the whole directory as LDIF (clear-text
                                           passwords: the loader hashes them)
    credentials(suffix) -> [(dn, pw)]      one bindable account per role
    credential_table(suffix) -> str        every demo account with its role and state
    demo_accounts(suffix) -> [DemoAccount] the same as data

The district (see schema/rollcall.schema and ../shared/DESIGN.md):

    <suffix>
     ou=people
       ou=students      60 students (inetOrgPerson, eduPerson, rollcallAccount,
                        rollcallStudent); 3 PENDING, 1 DISABLED, 3 at two schools
       ou=staff         13 staff: a principal, a sub-administrator and a photo
                        designee per site, one sub-administrator of two sites, a
                        DISABLED sub-administrator still in a site group, a teacher
                        with no role, application users, a district administrator
       ou=nonemployees  a contract therapist and a photo vendor (sponsor, expiry)
     ou=sites           ou=1234 Lincoln Elementary, ou=5678 Roosevelt Middle,
                        ou=9012 Washington High; beneath each: cn=student-email-admins,
                        cn=principals, cn=photo-designees, cn=photo-vendors
     ou=groups          cn=district-admins; ou=welligent (an application:
                        rollcallApplication) with cn=welligent-therapist,
                        cn=welligent-case-manager, cn=welligent-approvers
     ou=services        cn=sso-portal, cn=sis-sync
     ou=sis             a SIS record per student, and 3 new enrollees with no account yet
     ou=requests        empty
     ou=jobs            the nightly jobs' locks (taken and given back by the jobs)

Everything is deterministic (seeded) except the dates that must lie in the future
(non-employee expiry, activation code expiry), which are computed from today.
`memberOf` is not in the LDIF: the server maintains it.
"""
from __future__ import annotations

import functools
import hashlib
import io
import random
import time
import unicodedata
from dataclasses import dataclass

from argon2 import Type
from argon2.low_level import hash_secret

from .ldif import format_entry, records

__all__ = ["demo_ldif", "credentials", "credential_table", "demo_accounts", "DemoAccount",
           "SITES", "PASSWORDS"]

MAIL_DOMAIN = "district.example"
STUDENT_MAIL_DOMAIN = "students.district.example"
SIS_SOURCE = "demo-sis"
SCHOOL_YEAR = 2025                  # the 2025-26 school year
FIRST_DAY = "20250818000000Z"       # first day of school
PICTURE_DAY = "20250910000000Z"
IMPORTED_AT = "20251006060000Z"     # last SIS import
CREATED_AT = "20251001000000Z"      # when PENDING accounts were created

# One password per role, readable; the loader stores {ARGON2} hashes.
PASSWORDS = {
    "student": "demo-student-pw",
    "principal": "demo-principal-pw",
    "sub-administrator": "demo-subadmin-pw",
    "photo designee": "demo-designee-pw",
    "teacher": "demo-teacher-pw",
    "therapist": "demo-therapist-pw",
    "case manager": "demo-case-manager-pw",
    "district administrator": "demo-district-admin-pw",
    "contractor": "demo-contractor-pw",
    "photo vendor": "demo-vendor-pw",
    "SSO service": "demo-sso-service-pw",
    "sync service": "demo-sync-service-pw",
    "photo publisher": "demo-photo-publisher-pw",
}

# code, name, kind, grades, city, street, phone
SITES = [
    ("1234", "Lincoln Elementary", "SCHOOL", ["KG", "01", "02", "03", "04", "05"],
     "Springfield", "1200 Lincoln Avenue", "+1 555 0100 1234"),
    ("5678", "Roosevelt Middle", "SCHOOL", ["06", "07", "08"],
     "Springfield", "56 Roosevelt Road", "+1 555 0100 5678"),
    ("9012", "Washington High", "SCHOOL", ["09", "10", "11", "12"],
     "Shelbyville", "901 Washington Boulevard", "+1 555 0100 9012"),
]

SITE_GROUPS = [
    ("student-email-admins", "Sub-administrators: manage the accounts of this site's students"),
    ("principals", "Principals of the site: manage the site's role groups"),
    ("photo-designees", "Staff who stage and publish student ID photos for the site"),
    ("photo-vendors", "Photo vendor staff who deliver the site's student photos"),
]

# the groups the SIS and HR syncs keep per site (sync/engine.py, sync.site_groups):
# every enrolled student / every employee assigned to the site
SYNC_SITE_GROUPS = [
    ("students", "Students of {code} (maintained by the SIS sync)"),
    ("staff", "Staff of {code} (maintained by the SIS sync)"),
]
# the photo designee who staged a site's photos on picture day
PHOTO_STAGER = {"1234": "kpatel", "5678": "gsantos", "9012": "cdubois"}
STAGED_AT = "20250911150000Z"

# uid, given name, surname, title, schools, role, site groups [(code, cn)], other groups
# (relative to the suffix), status
STAFF = [
    ("pwong", "Patricia", "Wong", "Principal", ["1234"], "principal",
     [("1234", "principals")], [], "ENABLED"),
    ("dokafor", "Daniel", "Okafor", "Principal", ["5678"], "principal",
     [("5678", "principals")], [], "ENABLED"),
    ("lmartinez", "Lucía", "Martínez", "Principal", ["9012"], "principal",
     [("9012", "principals")], [], "ENABLED"),
    ("tnguyen", "Thanh", "Nguyen", "Assistant Principal", ["1234"], "sub-administrator",
     [("1234", "student-email-admins")], [], "ENABLED"),
    ("rjohnson", "Rachel", "Johnson", "Technology Coordinator", ["5678", "9012"], "sub-administrator",
     [("5678", "student-email-admins"), ("9012", "student-email-admins")], [], "ENABLED"),
    ("bcarter", "Brian", "Carter", "Library Technician", ["9012"], "sub-administrator",
     [("9012", "student-email-admins")], [], "DISABLED"),
    ("kpatel", "Kavya", "Patel", "Office Manager", ["1234"], "photo designee",
     [("1234", "photo-designees")], [], "ENABLED"),
    ("gsantos", "Gabriel", "Santos", "Office Manager", ["5678"], "photo designee",
     [("5678", "photo-designees")], [], "ENABLED"),
    ("cdubois", "Chloé", "Dubois", "Registrar", ["9012"], "photo designee",
     [("9012", "photo-designees")], [], "ENABLED"),
    ("ewilson", "Emily", "Wilson", "Teacher", ["5678"], "teacher", [], [], "ENABLED"),
    ("sjones", "Samuel", "Jones", "Speech-Language Pathologist", ["1234", "5678"], "therapist",
     [], ["cn=welligent-therapist,ou=welligent,ou=groups"], "ENABLED"),
    ("hkim", "Helen", "Kim", "Special Education Coordinator", ["5678", "9012"], "case manager",
     [], ["cn=welligent-case-manager,ou=welligent,ou=groups",
          "cn=welligent-approvers,ou=welligent,ou=groups"], "ENABLED"),
    ("aroberts", "Alex", "Roberts", "Identity Administrator", [], "district administrator",
     [], ["cn=district-admins,ou=groups"], "ENABLED"),
]

# uid, given, surname, title, schools, role, kind, organization, sponsor uid, site groups,
# other groups
NON_EMPLOYEES = [
    ("jreyes", "Jordan", "Reyes", "Occupational Therapist", ["1234"], "contractor", "CONTRACTOR",
     "Bright Path Therapy Services", "hkim", [],
     ["cn=welligent-therapist,ou=welligent,ou=groups"]),
    ("mdubois", "Marc", "Dubois-Laurent", "School Photographer", [], "photo vendor", "CONTRACTOR",
     "Shutterbug School Photos", "kpatel",
     [("1234", "photo-vendors"), ("5678", "photo-vendors"), ("9012", "photo-vendors")], []),
]

# Students whose details matter to the README and to tests:
# uid, given, surname, schools, grade
FIXED_STUDENTS = [
    ("jsmith", "John", "Smith", ["1234"], "03"),
    ("mgarcia", "María", "García", ["1234", "5678"], "05"),
    ("akim", "Anna", "Kim", ["5678", "9012"], "08"),
    (None, "Liam", "O'Brien", ["9012"], "10"),
    (None, "Thảo", "Nguyễn", ["1234"], "02"),
    (None, "Sofía", "García-López", ["9012", "5678"], "09"),
]
STUDENTS_PER_SITE = 20

GIVEN_NAMES = [
    "Liam", "Olivia", "Noah", "Emma", "Mateo", "Sofía", "Aiden", "Ava", "Lucas", "Isabella",
    "Ethan", "Mia", "Zoë", "Chloé", "José", "Ngozi", "Hiroshi", "Aaliyah", "Dmitri", "Siobhán",
    "Minh", "Priya", "Omar", "Fatima", "Yusuf", "Elena", "Mei", "Kai", "Nora", "Amara",
    "Diego", "Camila", "Ryan", "Grace", "Jamal", "Leila", "Søren", "Ana-María", "Jean-Luc", "Aroha",
]
SURNAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "García", "Miller", "Davis", "Rodríguez",
    "Martinez", "Hernández", "Lopez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Lee",
    "Pérez", "Thompson", "White", "Harris", "Sánchez", "Clark", "Ramirez", "Walker", "Young",
    "King", "Torres", "O'Brien", "O'Connor", "D'Angelo", "Nguyễn", "Trần", "García-López",
    "Smith-Jones", "Müller", "Kowalski", "Østergaard", "Ahmed", "Patel", "Okafor", "Chen", "Kim",
    "Tanaka", "Novák", "Ó Súilleabháin", "Yılmaz",
]

_FOLD = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "đ": "d", "Đ": "D",
                       "ł": "l", "Ł": "L", "ı": "i", "œ": "oe", "Œ": "OE", "þ": "th"})


@dataclass(frozen=True)
class DemoAccount:
    dn: str
    password: str | None      # None: cannot bind (PENDING, not yet activated)
    role: str
    status: str               # rollcallAccountStatus
    note: str = ""
    listed: bool = False      # one of credentials(): a bindable representative of its role


# --------------------------------------------------------------------------
# helpers


def _ascii_letters(s: str) -> str:
    s = unicodedata.normalize("NFKD", s.translate(_FOLD))
    return "".join(c for c in s if c.isascii() and c.isalnum()).lower()


def _birth_date(rng: random.Random, grade: str) -> str:
    """YYYYMMDD for a student of `grade` in SCHOOL_YEAR (age cut-off 1 September)."""
    g = 0 if grade == "KG" else int(grade)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    year = SCHOOL_YEAR - 6 - g + (0 if month >= 9 else 1)
    return f"{year:04d}{month:02d}{day:02d}"


def _enrollment_date(grade: str, grades: list[str]) -> str:
    """First day at the current school: August of the year they entered its first grade."""
    years_here = grades.index(grade) if grade in grades else 0
    return f"{SCHOOL_YEAR - years_here:04d}0818000000Z"


def _placeholder_jpeg(level: int) -> bytes:
    """A valid baseline JPEG: 8x8 pixels of one grey `level` (129..255).

    Demo "photos" need real JPEG data (jpegPhoto's syntax) but no image library:
    one 8x8 block whose DCT has only a DC coefficient, with a quantisation table
    of ones and one-code Huffman tables (DC category, AC end-of-block).
    """
    if not 129 <= level <= 255:
        raise ValueError("level must be 129..255")
    dc = 8 * (level - 128)               # F(0,0) = 8 * (level - 128) for a flat block
    cat = dc.bit_length()
    bits = "0" + format(dc, f"0{cat}b") + "0"   # DC code, DC value, AC EOB code
    bits += "1" * (-len(bits) % 8)
    scan = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")

    def segment(marker: int, body: bytes) -> bytes:
        return bytes((0xFF, marker)) + (len(body) + 2).to_bytes(2, "big") + body

    def one_code_table(cls_id: int, symbol: int) -> bytes:
        return bytes((cls_id, 1)) + bytes(15) + bytes((symbol,))

    return (b"\xff\xd8"
            + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            + segment(0xDB, b"\x00" + bytes([1] * 64))
            + segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
            + segment(0xC4, one_code_table(0x00, cat))
            + segment(0xC4, one_code_table(0x10, 0x00))
            + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
            + scan + b"\xff\xd9")


@functools.lru_cache(maxsize=None)
def _staged_jpeg(seed: int) -> bytes:
    """A 175x233 JPEG of 15-30 KB that passes the photo checks (a noisy gradient),
    deterministic for a seed."""
    from PIL import Image  # lazy: Pillow only when the demo is built

    from .district.photos import _fit  # lazy: with Pillow, only when the demo is built

    rng = random.Random(seed)
    img = Image.new("RGB", (175, 233))
    img.putdata([((x * 255 // 175 + rng.randint(0, 40)) % 256, (y * 255 // 233 + rng.randint(0, 40)) % 256,
                  128 + rng.randint(0, 40)) for y in range(233) for x in range(175)])
    data = _fit(img)
    assert data is not None
    return data


def _code_hash(code: str, uid: str) -> str:
    """{ARGON2} hash of an activation code, with a salt derived from the uid (deterministic)."""
    salt = hashlib.sha256(b"rollcall-demo-activation:" + uid.encode()).digest()[:16]
    encoded = hash_secret(code.encode(), salt, time_cost=2, memory_cost=65536, parallelism=1,
                          hash_len=32, type=Type.ID)
    return "{ARGON2}" + encoded.decode("ascii")


def _activation_code(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
    return "-".join("".join(rng.choice(alphabet) for _ in range(4)) for _ in range(2))


def _future(years: int, month_day: str) -> str:
    """Generalized time on month_day of (this year + years), 23:59:59 UTC."""
    return f"{time.gmtime().tm_year + years:04d}{month_day}235959Z"


# --------------------------------------------------------------------------
# the district


class _Builder:
    def __init__(self, suffix: str):
        self.suffix = suffix
        self.entries: list[tuple[str, list]] = []
        self.accounts: list[DemoAccount] = []
        self.uids: set[str] = set()
        self.members: dict[str, list[str]] = {}   # group DN (relative) -> member DNs
        self.staged: list = []                    # (student rel, district ID, schools, n): STAGED photos
        self.rng = random.Random(20250818)

    def dn(self, rel: str) -> str:
        return f"{rel},{self.suffix}" if rel else self.suffix

    def add(self, rel: str, *attrs):
        self.entries.append(self.entry(rel, *attrs))

    def entry(self, rel: str, *attrs):
        """(dn, [(name, [bytes])]); attrs are (name, value-or-list) pairs, None/[] left out."""
        out = []
        for name, values in attrs:
            if values is None:
                continue
            if not isinstance(values, (list, tuple)):
                values = [values]
            values = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
            if values:
                out.append((name, values))
        return self.dn(rel), out

    def new_uid(self, given: str, sn: str) -> str:
        base = (_ascii_letters(given)[:1] + _ascii_letters(sn))[:20] or "user"
        uid, n = base, 1
        while uid in self.uids:
            n += 1
            uid = f"{base}{n}"
        self.uids.add(uid)
        return uid

    def grant(self, group_rel: str, member_rel: str):
        self.members.setdefault(group_rel, []).append(self.dn(member_rel))

    def ou(self, rel: str, name: str, description: str):
        self.add(rel, ("objectClass", ["top", "organizationalUnit"]), ("ou", name),
                 ("description", description))

    # -- build ------------------------------------------------------------

    def build(self):
        top = self.suffix.split(",")[0].split("=", 1)[1]
        self.add("", ("objectClass", ["top", "dcObject", "organization"]), ("dc", top),
                 ("o", "Demo School District"), ("description", "Rollcall demo district"))
        self.ou("ou=people", "people", "People with accounts")
        self.ou("ou=students,ou=people", "students", "Student accounts")
        self.ou("ou=staff,ou=people", "staff", "District employees")
        self.ou("ou=nonemployees,ou=people", "nonemployees",
                "Contractors, charter and non-public-school staff: each with a sponsor and an expiry")
        self.ou("ou=sites", "sites", "Schools and offices, named by cost center; role groups beneath")

        for uid in [s[0] for s in STAFF] + [n[0] for n in NON_EMPLOYEES]:
            self.uids.add(uid)
        staff_entries = self.staff()
        nonemployee_entries = self.nonemployees()
        students, sis_only = self.students()

        # people first, then the groups that name them (parents before children)
        self.entries.extend(students)
        self.entries.extend(staff_entries)
        self.entries.extend(nonemployee_entries)
        self.sites()
        self.groups()
        self.services()
        self.sis(students, sis_only)
        self.ou("ou=requests", "requests", "Access requests: kind, requester, target, status, decision")
        self.ou("ou=staged-photos", "staged-photos", "Uploaded student photos waiting for the nightly publish")
        self.staged_photos()
        self.ou("ou=jobs", "jobs", "Nightly jobs' locks: one run of each at a time, whichever host starts it")

    def person(self, rel, given, sn, uid, mail_domain, district_id, schools, extra_classes,
               affiliations, primary, password, status, *extra):
        classes = ["top", "person", "organizationalPerson", "inetOrgPerson", "eduPerson",
                   "rollcallAccount", *extra_classes]
        return self.entry(rel, ("objectClass", classes), ("uid", uid), ("cn", f"{given} {sn}"),
                 ("givenName", given), ("sn", sn), ("displayName", f"{given} {sn}"),
                 ("mail", f"{uid}@{mail_domain}"), ("employeeNumber", district_id),
                 ("departmentNumber", list(schools)),
                 ("eduPersonAffiliation", affiliations), ("eduPersonPrimaryAffiliation", primary),
                 ("eduPersonPrincipalName", f"{uid}@{MAIL_DOMAIN}"),
                 ("rollcallAccountStatus", status), *extra, ("userPassword", password))

    def staff(self):
        out = []
        for n, (uid, given, sn, title, schools, role, site_groups, groups, status) in enumerate(STAFF, 1):
            rel = f"uid={uid},ou=staff,ou=people"
            password = PASSWORDS[role]
            disabled = status == "DISABLED"
            faculty = role in ("teacher", "principal", "therapist")
            out.append(self.person(
                rel, given, sn, uid, MAIL_DOMAIN, f"1{n:05d}e{n:03d}", schools, [],
                ["faculty", "staff", "employee", "member"] if faculty else ["staff", "employee", "member"],
                "faculty" if faculty else "staff", password, status,
                ("title", title),
                ("rollcallStatusSource", "ADMIN" if disabled else "SYNC"),
                ("rollcallActivationState", "ACTIVATED"),
                ("rollcallMustChangePassword", "FALSE"),
                ("rollcallDeactivationReason", "Left the district (resignation)" if disabled else None),
                ("rollcallDeactivationReference", "HR-2025-0117" if disabled else None),
                ("rollcallDeactivatedBy", self.dn("uid=aroberts,ou=staff,ou=people") if disabled else None),
                ("rollcallDeactivatedAt", "20250930170000Z" if disabled else None),
            ))
            for code, cn in site_groups:
                self.grant(f"cn={cn},ou={code},ou=sites", rel)
            if not disabled:  # the HR sync removed the one who left from cn=staff
                for code in schools:
                    self.grant(f"cn=staff,ou={code},ou=sites", rel)
            for g in groups:
                self.grant(g, rel)
            sites = ", ".join(f"{cn} of {code}" for code, cn in site_groups)
            groups_text = ", ".join(g.split(",")[0][3:] for g in groups)
            note = "; ".join(x for x in (sites, groups_text) if x) or "no administrative role"
            if disabled:
                note += "; DISABLED: binds are refused"
            listed = not disabled and uid not in ("dokafor", "lmartinez", "gsantos", "cdubois")
            self.accounts.append(DemoAccount(self.dn(rel), password, role, status, note, listed))
        return out

    def nonemployees(self):
        out = []
        expiry = _future(1, "0630")
        for n, (uid, given, sn, title, schools, role, kind, org, sponsor, site_groups, groups) \
                in enumerate(NON_EMPLOYEES, 1):
            rel = f"uid={uid},ou=nonemployees,ou=people"
            password = PASSWORDS[role]
            out.append(self.person(
                rel, given, sn, uid, MAIL_DOMAIN, f"2{n:05d}c{n:03d}", schools, ["rollcallNonEmployee"],
                ["affiliate"], "affiliate", password, "ENABLED",
                ("title", title),
                ("rollcallStatusSource", "ADMIN"),
                ("rollcallActivationState", "ACTIVATED"),
                ("rollcallMustChangePassword", "FALSE"),
                ("rollcallExpiry", expiry),
                ("rollcallNonEmployeeKind", kind), ("rollcallOrganization", org),
                ("rollcallSponsor", self.dn(f"uid={sponsor},ou=staff,ou=people")),
            ))
            for code, cn in site_groups:
                self.grant(f"cn={cn},ou={code},ou=sites", rel)
            for g in groups:
                self.grant(g, rel)
            note = f"{org}; sponsor {sponsor}; expires {expiry[:8]}"
            self.accounts.append(DemoAccount(self.dn(rel), password, role, "ENABLED", note, True))
        return out

    def students(self):
        rng = self.rng
        grades_of = {code: grades for code, _, _, grades, *_ in SITES}
        plan = []  # (uid or None, given, sn, schools, grade)
        plan.extend(FIXED_STUDENTS)
        per_site = {code: sum(1 for s in FIXED_STUDENTS if s[3][0] == code) for code, *_ in SITES}
        for code, *_ in SITES:
            for _ in range(STUDENTS_PER_SITE - per_site[code]):
                plan.append((None, rng.choice(GIVEN_NAMES), rng.choice(SURNAMES), [code],
                             rng.choice(grades_of[code])))
        sis_only = [(rng.choice(GIVEN_NAMES), rng.choice(SURNAMES), code, rng.choice(grades_of[code]))
                    for code, *_ in SITES]

        # a few PENDING (created by the last sync, not yet activated): never the fixed ones
        pending = set(rng.sample(range(len(FIXED_STUDENTS), len(plan)), 3))
        out = []
        disabled_done = False
        for n, (uid, given, sn, schools, grade) in enumerate(plan, 1):
            uid = uid or self.new_uid(given, sn)
            self.uids.add(uid)
            rel = f"uid={uid},ou=students,ou=people"
            home = schools[0]
            is_pending = (n - 1) in pending
            # the first random student of 1234 is the one a sub-administrator disabled
            is_disabled = (not disabled_done and not is_pending and n > len(FIXED_STUDENTS)
                           and home == "1234")
            disabled_done = disabled_done or is_disabled
            status = "PENDING" if is_pending else "DISABLED" if is_disabled else "ENABLED"
            password = None if is_pending else PASSWORDS["student"]
            code = _activation_code(rng) if is_pending else None
            photo = "NONE" if is_pending else rng.choice(["PUBLISHED"] * 7 + ["STAGED"] * 2 + ["NONE"])
            out.append(self.person(
                rel, given, sn, uid, STUDENT_MAIL_DOMAIN, f"{n:06d}s{n:03d}", schools,
                ["rollcallStudent"], ["student", "member"], "student", password, status,
                ("rollcallStatusSource", "ADMIN" if is_disabled else "SYNC"),
                ("rollcallActivationState", "NOT_ACTIVATED" if is_pending else "ACTIVATED"),
                ("rollcallMustChangePassword", "TRUE" if is_pending else "FALSE"),
                ("rollcallActivationCodeHash", _code_hash(code, uid) if code else None),
                ("rollcallActivationCodeExpiry", _future(1, "0131") if code else None),
                ("rollcallDeactivationReason",
                 "Misuse of district email (acceptable use policy)" if is_disabled else None),
                ("rollcallDeactivationReference", "AUP-2025-0042" if is_disabled else None),
                ("rollcallDeactivatedBy", self.dn("uid=tnguyen,ou=staff,ou=people") if is_disabled else None),
                ("rollcallDeactivatedAt", "20251002153000Z" if is_disabled else None),
                ("rollcallGrade", grade), ("rollcallSisSourceId", f"stu-{n:06d}"),
                ("rollcallEnrollmentStatus", "ENROLLED"),
                ("rollcallEnrollmentDate", CREATED_AT if is_pending else _enrollment_date(grade, grades_of[home])),
                ("rollcallBirthDate", _birth_date(rng, grade)),
                ("rollcallPhotoStatus", photo),
                ("rollcallPhotoDate", PICTURE_DAY if photo != "NONE" else None),
                ("jpegPhoto", _placeholder_jpeg(rng.randint(140, 230)) if photo == "PUBLISHED" else None),
            ))
            for school in schools:  # as the SIS sync makes them: every enrolled student
                self.grant(f"cn=students,ou={school},ou=sites", rel)
            if photo == "STAGED":  # what picture day left behind: the photo waiting to be published
                self.staged.append((rel, f"{n:06d}s{n:03d}", schools, n))
            if uid == "jsmith" or status != "ENABLED" or len(schools) > 1:
                if is_pending:
                    note, role = f"PENDING: activation code {code}", "student"
                elif is_disabled:
                    note, role = "DISABLED by the 1234 sub-administrator: binds are refused", "student"
                elif len(schools) > 1:
                    note, role = "enrolled at " + " and ".join(schools), "student"
                else:
                    note, role = f"grade {grade} at {home}", "student"
                self.accounts.append(DemoAccount(self.dn(rel), password, role, status, note,
                                                 listed=uid == "jsmith"))
        return out, [(len(plan) + i + 1, *rec) for i, rec in enumerate(sis_only)]

    def staged_photos(self):
        """The STAGED students' photos, as an upload by the site's photo designee leaves
        them (directory/core/photos.py fills the same attributes)."""
        for student_rel, district_id, schools, n in self.staged:
            data = _staged_jpeg(n)
            self.add(f"employeeNumber={district_id},ou=staged-photos",
                     ("objectClass", ["top", "rollcallStagedPhoto"]), ("employeeNumber", district_id),
                     ("jpegPhoto", data), ("departmentNumber", list(schools)),
                     ("rollcallPhotoUploadedBy", self.dn(f"uid={PHOTO_STAGER[schools[0]]},ou=staff,ou=people")),
                     ("rollcallPhotoUploadedAt", STAGED_AT),
                     ("rollcallPhotoSource", f"picture-day-{schools[0]}.zip:{district_id}.jpg"),
                     ("rollcallPhotoStudent", self.dn(student_rel)),
                     ("rollcallPhotoDigest", hashlib.sha256(data).hexdigest()))

    def sites(self):
        for code, name, kind, grades, city, street, phone in SITES:
            self.add(f"ou={code},ou=sites", ("objectClass", ["top", "rollcallSite"]), ("ou", code),
                     ("rollcallCostCenter", code), ("rollcallSiteName", name), ("rollcallSiteKind", kind),
                     ("description", f"{name}, grades {grades[0]}-{grades[-1]}"), ("l", city),
                     ("postalAddress", f"{name}${street}${city}"), ("telephoneNumber", phone))
            for cn, description in SITE_GROUPS:
                rel = f"cn={cn},ou={code},ou=sites"
                self.add(rel, ("objectClass", ["top", "groupOfNames"]), ("cn", cn),
                         ("description", f"{description} ({name})"), ("member", self.members[rel]))
            for cn, description in SYNC_SITE_GROUPS:
                rel = f"cn={cn},ou={code},ou=sites"
                # groupOfNames needs a member: the site stands in for none (as the sync does)
                self.add(rel, ("objectClass", ["top", "groupOfNames"]), ("cn", cn),
                         ("description", description.format(code=code)),
                         ("member", self.members.get(rel) or [self.dn(f"ou={code},ou=sites")]))

    def groups(self):
        self.ou("ou=groups", "groups", "Application roles and district-wide groups")
        self.add("cn=district-admins,ou=groups", ("objectClass", ["top", "groupOfNames"]),
                 ("cn", "district-admins"), ("description", "District identity administrators"),
                 ("member", self.members["cn=district-admins,ou=groups"]))
        app = "ou=welligent,ou=groups"
        self.add(app, ("objectClass", ["top", "organizationalUnit", "rollcallApplication"]),
                 ("ou", "welligent"), ("rollcallApplicationName", "Welligent"),
                 ("rollcallApprovers", self.dn(f"cn=welligent-approvers,{app}")),
                 ("labeledURI", "https://welligent.example/ Welligent"),
                 ("description", "Special education and health records; its roles are the groups beneath"))
        for cn, description in (("welligent-therapist", "Welligent role: therapist"),
                                ("welligent-case-manager", "Welligent role: case manager"),
                                ("welligent-approvers", "Approve requests for Welligent roles")):
            rel = f"cn={cn},{app}"
            self.add(rel, ("objectClass", ["top", "groupOfNames"]), ("cn", cn),
                     ("description", description), ("member", self.members[rel]))

    def services(self):
        self.ou("ou=services", "services", "Bind identities of SSO systems and sync daemons")
        owner = self.dn("uid=aroberts,ou=staff,ou=people")
        for cn, kind, role, description in (
                ("sso-portal", "SSO", "SSO service", "Single sign-on portal: looks up and authenticates users"),
                ("sis-sync", "SYNC", "sync service", "SIS sync: imports SIS records, creates and updates accounts"),
                ("photo-publisher", "SYNC", "photo publisher", "Nightly job: publishes staged student photos")):
            rel = f"cn={cn},ou=services"
            password = PASSWORDS[role]
            self.add(rel, ("objectClass", ["top", "applicationProcess", "rollcallService", "rollcallAccount"]),
                     ("cn", cn), ("description", description), ("rollcallServiceKind", kind),
                     ("owner", owner), ("rollcallAccountStatus", "ENABLED"),
                     ("rollcallStatusSource", "ADMIN"), ("userPassword", password))
            self.accounts.append(DemoAccount(self.dn(rel), password, role, "ENABLED", description, True))

    def sis(self, students, sis_only):
        self.ou("ou=sis", "sis", "Student information system records as last imported")
        for dn, attrs in students:
            a = dict(attrs)
            source_id = a["rollcallSisSourceId"][0].decode()
            self.add(f"rollcallSisSourceId={source_id},ou=sis",
                     ("objectClass", ["top", "rollcallSisRecord"]),
                     *[(name, a.get(name)) for name in (
                         "rollcallSisSourceId", "employeeNumber", "givenName", "sn", "cn",
                         "rollcallBirthDate", "rollcallGrade", "departmentNumber",
                         "rollcallEnrollmentStatus", "rollcallEnrollmentDate")],
                     ("rollcallSisImportedAt", IMPORTED_AT), ("rollcallSisSource", SIS_SOURCE),
                     ("rollcallLinkedAccount", dn))
        # new enrollees: the next sync creates their accounts
        for n, given, sn, code, grade in sis_only:
            source_id = f"stu-{n:06d}"
            self.add(f"rollcallSisSourceId={source_id},ou=sis",
                     ("objectClass", ["top", "rollcallSisRecord"]),
                     ("rollcallSisSourceId", source_id), ("employeeNumber", f"{n:06d}s{n:03d}"),
                     ("givenName", given), ("sn", sn), ("cn", f"{given} {sn}"),
                     ("rollcallBirthDate", _birth_date(self.rng, grade)), ("rollcallGrade", grade),
                     ("departmentNumber", code), ("rollcallEnrollmentStatus", "ENROLLED"),
                     ("rollcallEnrollmentDate", "20251006000000Z"),
                     ("rollcallSisImportedAt", IMPORTED_AT), ("rollcallSisSource", SIS_SOURCE))


@functools.lru_cache(maxsize=8)
def _build(suffix: str):
    b = _Builder(suffix)
    b.build()
    ldif = "".join(format_entry(dn, attrs) for dn, attrs in b.entries)
    return ldif, tuple(b.accounts)


# --------------------------------------------------------------------------
# public


def demo_ldif(suffix: str) -> str:
    """The demo district as LDIF content records (parents first; passwords in clear)."""
    return _build(suffix)[0]


def load_demo(directory, suffix: str) -> tuple[int, dict | None]:
    """Load the demo district into an empty store (scripts/serve's first start); with
    posix on, number its people and site groups as the server would have on add (a load,
    like slapadd, runs no rule). Returns (entries loaded, posix counts or None)."""
    n = directory.load_entries(records(io.BytesIO(demo_ldif(suffix).encode()), "demo"))
    return n, directory.posix.assign_missing() if directory.posix.enabled else None


def demo_accounts(suffix: str) -> list[DemoAccount]:
    """Every demo account worth knowing: one or more per role, incl. the PENDING and
    DISABLED ones (all other students share jsmith's password)."""
    return list(_build(suffix)[1])


def credentials(suffix: str) -> list:
    """[(dn, password)]: a bindable account (ENABLED, with a password) of every role,
    incl. the sub-administrator of two sites. credential_table() lists more."""
    return [(a.dn, a.password) for a in _build(suffix)[1] if a.listed]


def credential_table(suffix: str) -> str:
    """A table of the demo accounts: role, password, state and what each can do."""
    rows = [("role", "password", "status", "DN", "notes")]
    for a in _build(suffix)[1]:
        rows.append((a.role, a.password or "-", a.status, a.dn, a.note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(r[j].ljust(widths[j]) for j in range(4)) + "  " + r[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    lines.append(f"(every other student: {PASSWORDS['student']})")
    return "\n".join(lines)
