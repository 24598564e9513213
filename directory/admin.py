"""Delegated account administration: what a school's email sub-administrator does
every week, as functions over an ldap3 connection bound as the caller. The
`rollcall roster` / `rollcall account …` commands call them, and so will the web
console. They are LDAP clients: the rules (who may act on which student, ENABLED-only
resets and deactivations, reason + reference, sync never re-enabling) are the
directory's, so `ldappasswd` and `ldapmodify` obey exactly the same ones; a check
made here too is only there to phrase the refusal well.

    roster(conn, code, ids=None, issue_codes=True) -> Roster   (.rows, .missing, .zip_bytes())
    find_students(conn, text) -> StudentSearch  district ID (or part), mail, names in either order,
                                              "Last, First"; SIS enrollees without an account
    resolve_student(conn, target)             username, district ID or DN -> one student
    create_account(conn, district_id)         RollcallAccountOp "create" (new enrollee)
    reset_password(conn, target)              Password Modify without a new password
    deactivate(conn, target, reason, reference)
    reactivate(conn, target)
    issue_codes(conn, [uid, …])               new one-time activation codes (PENDING accounts)
    activate(conn, uid, code, new_password)   self-service, anonymous connection
    change_password(conn, old, new)           the must-change-after-reset flow (bound as the user)

Every function raises AdminError (message, LDAP result code; a directory.client
ClientError) when the directory refuses; the message is fit to show to the
sub-administrator. Connections, paged searches and results go through directory.client.
"""
from __future__ import annotations

import csv
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field

from ldap3 import BASE, MODIFY_REPLACE, SUBTREE
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from . import client
from .client import ClientError
from .district import display
from .district.ids import DISTRICT_ID

ACCOUNT_OP = "2.25.69814933526364736177629039217756273497.4.1"
SUBADMIN_ROLE = "student-email-admins"
STUDENT_ATTRS = ["uid", "cn", "givenName", "sn", "mail", "employeeNumber", "departmentNumber",
                 "rollcallGrade", "rollcallAccountStatus", "rollcallActivationState", "rollcallPhotoStatus",
                 "rollcallDeactivationReason", "rollcallDeactivationReference", "rollcallDeactivatedBy",
                 "rollcallDeactivatedAt", "rollcallStatusSource", "rollcallActivationCodeExpiry"]
SIS_ATTRS = ["employeeNumber", "givenName", "sn", "rollcallGrade", "departmentNumber",
             "rollcallSisImportedAt", "rollcallLinkedAccount"]
ROSTER_STUDENT_ATTRS = ["uid", "givenName", "sn", "mail", "employeeNumber", "departmentNumber", "rollcallGrade",
                        "rollcallAccountStatus", "rollcallActivationState", "rollcallPhotoStatus"]
ROSTER_COLUMNS = ["district_id", "last_name", "first_name", "grade", "school_code", "school", "username",
                  "email", "account_status", "activation_state", "activation_code", "activation_code_expires",
                  "activation_code_note", "photo_status", "sis_record_date", "all_schools"]
MISSING_COLUMNS = ["district_id", "reason"]
PAGE = 1000


class AdminError(ClientError):
    """A refusal, phrased for the sub-administrator (a ClientError: message, code)."""

    def __init__(self, message: str, code: int | None = None, description: str = "", kind: str = "result"):
        super().__init__(message, code, description, kind)

    @classmethod
    def of(cls, exc: ClientError) -> "AdminError":
        return exc if isinstance(exc, cls) else cls(exc.message, exc.code, exc.description, exc.kind)


# --------------------------------------------------------------------------- helpers


def _suffix(conn) -> str:
    """The naming context (from the root DSE), cached on the connection."""
    try:
        return client.naming_context(conn)
    except ClientError as exc:
        raise AdminError.of(exc) from None


def _fail(conn, what: str):
    try:
        client.check(conn, what)
    except ClientError as exc:
        raise AdminError.of(exc) from None
    raise AdminError(f"{what}: failed", (conn.result or {}).get("result"))


def _one(v):
    if isinstance(v, list):
        return v[0] if v else None
    return v


def _str(v) -> str:
    v = _one(v)
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _entries(conn):
    return [e for e in (conn.response or []) if e.get("type") == "searchResEntry"]


def paged_search(conn, base, flt, attributes, page=PAGE) -> list:
    """All entries of a search (directory.client.paged_search): [(dn, attrs)]; a base the
    caller cannot see gives nothing."""
    try:
        return client.paged_search(conn, base, flt, attributes, SUBTREE, page, absent_ok=True)
    except ClientError as exc:
        raise AdminError.of(exc) from None


def _raw(attrs, name) -> str:
    """First value of an attribute from ldap3 raw_attributes (case-insensitive name)."""
    v = attrs.get(name.lower())
    if v is None:
        v = attrs.get(name)
    if not v:
        return ""
    return v[0].decode("utf-8", "replace") if isinstance(v[0], bytes) else str(v[0])


def _raw_all(attrs, name) -> list:
    vals = attrs.get(name.lower())
    if vals is None:
        vals = next((v for k, v in attrs.items() if k.lower() == name.lower()), [])
    return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in vals]


def whoami(conn) -> str:
    """The caller's DN ('' when anonymous)."""
    got = conn.extend.standard.who_am_i()
    got = got.decode() if isinstance(got, bytes) else (got or "")
    return got[3:] if got.startswith("dn:") else got


@dataclass
class Scope:
    dn: str
    root: bool
    district_admin: bool
    cost_centers: set


def my_scope(conn) -> Scope:
    """Which cost centers the caller administers (student-email-admins of the site),
    read from the caller's memberOf (kept transitively by the server)."""
    me = whoami(conn)
    suffix = _suffix(conn)
    if not me:
        return Scope("", False, False, set())
    conn.search(me, "(objectClass=*)", BASE, attributes=["memberOf"])
    entries = _entries(conn)
    if not entries:
        # the root DN has no entry: it administers everything
        return Scope(me, True, True, set())
    groups = [g.lower().replace(" ", "") for g in _raw_all(entries[0]["raw_attributes"], "memberOf")]
    sites = f",ou=sites,{suffix}".lower().replace(" ", "")
    codes = set()
    for g in groups:
        if g.startswith(f"cn={SUBADMIN_ROLE},ou=") and g.endswith(sites):
            codes.add(g[len(f"cn={SUBADMIN_ROLE},ou="):-len(sites)])
    district = f"cn=district-admins,ou=groups,{suffix}".lower().replace(" ", "") in groups
    return Scope(me, False, district, codes)


def check_cost_center(conn, code: str) -> dict:
    """The site of a cost center, if the caller administers its students; else AdminError."""
    code = code.strip()
    if not re.match(r"^[0-9A-Za-z_-]{1,32}$", code):
        raise AdminError(f"{code!r} is not a cost center code")
    suffix = _suffix(conn)
    scope = my_scope(conn)
    if not (scope.root or scope.district_admin or code.lower() in scope.cost_centers):
        mine = ", ".join(sorted(scope.cost_centers)) or "none"
        raise AdminError(f"you are not a student email administrator of cost center {code} "
                         f"(your cost centers: {mine})", 50)
    conn.search(f"ou={code},ou=sites,{suffix}", "(objectClass=*)", BASE,
                attributes=["rollcallSiteName", "rollcallCostCenter"])
    entries = _entries(conn)
    if not entries:
        raise AdminError(f"no cost center {code} in the directory", 32)
    a = entries[0]["raw_attributes"]
    return {"code": _raw(a, "rollcallCostCenter") or code, "name": _raw(a, "rollcallSiteName") or code}


def _student(dn, attrs) -> dict:
    return {
        "dn": dn, "uid": _raw(attrs, "uid"), "name": _raw(attrs, "cn"), "given": _raw(attrs, "givenName"),
        "sn": _raw(attrs, "sn"), "mail": _raw(attrs, "mail"), "district_id": _raw(attrs, "employeeNumber"),
        "schools": _raw_all(attrs, "departmentNumber"), "grade": _raw(attrs, "rollcallGrade"),
        "status": (_raw(attrs, "rollcallAccountStatus") or "ENABLED").upper(),
        "activation_state": _raw(attrs, "rollcallActivationState"),
        "photo_status": _raw(attrs, "rollcallPhotoStatus"),
        "deactivation_reason": _raw(attrs, "rollcallDeactivationReason"),
        "deactivation_reference": _raw(attrs, "rollcallDeactivationReference"),
        "deactivated_by": _raw(attrs, "rollcallDeactivatedBy"),
        "deactivated_at": _raw(attrs, "rollcallDeactivatedAt"),
        "status_source": _raw(attrs, "rollcallStatusSource"),
    }


def site_names(conn) -> dict:
    """{cost center: site name} of every site the caller may read (signed-in users read
    ou=sites), to name schools in output for people."""
    out = {}
    for _dn, a in paged_search(conn, f"ou=sites,{_suffix(conn)}", "(objectClass=rollcallSite)",
                               ["rollcallCostCenter", "rollcallSiteName", "ou"]):
        code = _raw(a, "rollcallCostCenter") or _raw(a, "ou")
        if code:
            out[code] = _raw(a, "rollcallSiteName") or code
    return out


def person_name(conn, dn: str) -> str:
    """How a person named by DN reads for people: their cn, else their username (the
    DN's first value) when the entry cannot be read."""
    if not dn:
        return ""
    try:
        conn.search(dn, "(objectClass=*)", BASE, attributes=["cn"])
        entries = _entries(conn)
    except LDAPException:
        entries = []
    return display.person_label(dn, _raw(entries[0]["raw_attributes"], "cn") if entries else "")


def _students_base(conn) -> str:
    return f"ou=students,ou=people,{_suffix(conn)}"


MIN_QUERY = 3  # the substring index is of trigrams: a shorter piece of a name cannot use it
PARTIAL_ID = re.compile(r"^(?=.*[0-9])(?:[0-9]{1,9}|[0-9]{0,6}[A-Za-z][0-9]{0,3})$")


@dataclass
class StudentSearch:
    """What a student search found: accounts, enrollees with a SIS record and no account
    yet (their account can be created), and a note saying how the query was read when
    that matters (a short query, a partial district ID)."""
    students: list = field(default_factory=list)
    enrollees: list = field(default_factory=list)  # {"district_id", "name", "given", "sn", "schools", "grade"}
    note: str = ""


def _words(text: str) -> tuple[list, list]:
    """("Jones, Mia") -> (["Jones"], ["Mia"]): last names before a comma, first names
    after it; without a comma every word is either ([], words)."""
    if "," in text:
        last, _, first = text.partition(",")
        return last.split(), first.replace(",", " ").split()
    return [], text.split()


def _name_term(word: str, attrs) -> str:
    """One word of a name: a substring of any of `attrs` (trigram index), or, shorter
    than MIN_QUERY, a whole value (equality index): both stay indexed."""
    e = escape_filter_chars(word)
    if len(word) >= MIN_QUERY:
        return "(|" + "".join(f"({a}=*{e}*)" for a in attrs) + ")"
    return "(|" + "".join(f"({a}={e})" for a in attrs) + ")"


def _name_filter(text: str) -> tuple[str, bool]:
    """(filter, short): names in either order ("Mia Jones", "Jones Mia") or the comma
    form ("Jones, Mia"); short when some word was matched whole only."""
    last, words = _words(text)
    if not last + words:  # "," alone: no name at all ("(&)" would match every student)
        raise AdminError("search for a district ID, an e-mail address or a name")
    short = any(len(w) < MIN_QUERY for w in last + words)
    if not last and len(words) == 1:
        w = words[0]
        e = escape_filter_chars(w)
        if len(w) >= MIN_QUERY:
            return f"(|(uid={e})(mail=*{e}*)(givenName=*{e}*)(sn=*{e}*)(cn=*{e}*))", short
        return f"(|(uid={e})(givenName={e})(sn={e}))", short
    terms = [_name_term(w, ("sn",)) for w in last]
    terms += [_name_term(w, ("givenName",) if last else ("givenName", "sn")) for w in words]
    return "(&" + "".join(terms) + ")", short


def _enrollee(dn, attrs) -> dict:
    given, sn = _raw(attrs, "givenName"), _raw(attrs, "sn")
    return {"dn": dn, "district_id": _raw(attrs, "employeeNumber"), "given": given, "sn": sn,
            "name": _raw(attrs, "cn") or " ".join(x for x in (given, sn) if x),
            "schools": _raw_all(attrs, "departmentNumber"), "grade": _raw(attrs, "rollcallGrade"),
            "linked": _raw(attrs, "rollcallLinkedAccount")}


def find_students(conn, text: str, limit: int = 200) -> StudentSearch:
    """Students in the caller's scope matching a district ID (whole, or part of one
    within the caller's schools), an e-mail address, a username, or names: first or
    last, both in either order, or "Last, First". Names match by substring from
    MIN_QUERY characters on, shorter ones as whole names (the note says so). Also
    finds enrollees whose SIS record the caller may read and who have no account yet.
    Every search is answered from an index (the server refuses unindexed searches of
    large OUs); the directory's access rules decide what the caller sees."""
    t = " ".join(text.split())
    if not t:
        raise AdminError("search for a district ID, an e-mail address or a name")
    e = escape_filter_chars(t)
    note = ""
    if DISTRICT_ID.match(t):
        flt = f"(employeeNumber={e})"
    elif PARTIAL_ID.match(t):
        flt, note = _partial_id_filter(conn, t)
        if flt is None:
            return StudentSearch(note=note)
    elif "@" in t:
        flt = f"(mail={e})"
    else:
        flt, short = _name_filter(t)
        if short:
            note = (f"Parts of names shorter than {MIN_QUERY} characters match whole first or last names only; "
                    f"type at least {MIN_QUERY} characters to match part of a name.")
    found = paged_search(conn, _students_base(conn), flt, STUDENT_ATTRS)
    out = StudentSearch(note=note)
    out.students = sorted((_student(dn, a) for dn, a in found),
                          key=lambda s: (s["sn"].casefold(), s["given"].casefold(), s["uid"]))[:limit]
    if "@" not in t:
        out.enrollees = _enrollees_without_account(conn, flt, out.students)[:limit]
    return out


def _partial_id_filter(conn, t: str):
    """Part of a district ID: matched within the caller's schools (the departmentNumber
    index narrows the candidates; employeeNumber has an equality index only). Returns
    (filter, note) or (None, why not)."""
    whole = "A district ID has 10 characters, e.g. 000123s456"
    if len(t) < MIN_QUERY:
        return None, f"“{t}” is too short to look for: {whole}; type at least {MIN_QUERY} of them."
    scope = my_scope(conn)
    if scope.root or scope.district_admin or not scope.cost_centers:
        return None, (f"“{t}” is part of a district ID. {whole}: type all of it (searching by part of an ID "
                      "works within a school's students, for its sub-administrators).")
    schools = "".join(f"(departmentNumber={escape_filter_chars(c)})" for c in sorted(scope.cost_centers))
    return (f"(&(|{schools})(employeeNumber=*{escape_filter_chars(t)}*))",
            f"District IDs containing “{t}” among the students of your schools.")


def _enrollees_without_account(conn, flt: str, students: list) -> list:
    """SIS records matching `flt` (read from the suffix: a sub-administrator may read
    the records of their sites, not the ou=sis entry) that no account carries."""
    records = [_enrollee(dn, a) for dn, a in
               paged_search(conn, _suffix(conn), f"(&(objectClass=rollcallSisRecord){flt})", SIS_ATTRS + ["cn"])]
    have = {s["district_id"].lower() for s in students}
    candidates = [r for r in records if r["district_id"] and not r["linked"] and r["district_id"].lower() not in have]
    if not candidates:
        return []
    # an account the search did not match (e.g. other names than the SIS's) still counts
    ids = "".join(f"(employeeNumber={escape_filter_chars(r['district_id'])})" for r in candidates)
    taken = {_raw(a, "employeeNumber").lower()
             for _dn, a in paged_search(conn, _students_base(conn), f"(|{ids})", ["employeeNumber"])}
    out = [r for r in candidates if r["district_id"].lower() not in taken]
    out.sort(key=lambda r: (r["sn"].casefold(), r["given"].casefold(), r["district_id"]))
    return out


def resolve_student(conn, target: str) -> dict:
    """One student by username, district ID or DN, within the caller's scope."""
    t = target.strip()
    base = _students_base(conn)
    if "=" in t and "," in t:
        conn.search(t, "(objectClass=*)", BASE, attributes=STUDENT_ATTRS)
        # a DN names a student only below the students' container (not a principal
        # or a contractor whose departmentNumber is the same school)
        found = [(x["dn"], x["raw_attributes"]) for x in _entries(conn)
                 if _under(x["dn"], base)]
    else:
        e = escape_filter_chars(t)
        flt = f"(employeeNumber={e})" if DISTRICT_ID.match(t) else f"(uid={e})"
        found = paged_search(conn, base, flt, STUDENT_ATTRS)
    if not found:
        raise AdminError(f"no student {t!r} in your scope (unknown, or a student of a school you do "
                         "not administer)", 32)
    if len(found) > 1:
        raise AdminError(f"{t!r} matches {len(found)} students; use the username", 53)
    return _student(*found[0])


def _under(dn: str, base: str) -> bool:
    """Whether `dn` is strictly below `base` (RFC 4514 strings compared RDN by RDN,
    ignoring case and the spaces around separators)."""
    def rdns(text):
        return [(a.lower(), v.lower()) for a, v, _sep in parse_dn(text, strip=True)]

    d, b = rdns(dn), rdns(base)
    return len(d) > len(b) and d[-len(b):] == b


def _show(s: dict) -> dict:
    return {"name": s["name"], "username": s["uid"], "email": s["mail"], "district_id": s["district_id"],
            "dn": s["dn"]}


# --------------------------------------------------------------------------- actions


def account_op(conn, request: dict) -> dict:
    """Call the RollcallAccountOp extended operation; returns its JSON answer."""
    conn.extended(ACCOUNT_OP, json.dumps(request).encode("utf-8"))
    try:
        r = client.check(conn, "")
    except ClientError as exc:
        raise AdminError.of(exc) from None
    value = r.get("responseValue") or b"{}"
    return json.loads(value.decode("utf-8") if isinstance(value, bytes) else value)


def create_account(conn, district_id: str) -> dict:
    """The account of a new enrollee (SIS record, no account yet): PENDING, with a
    one-time activation code. Returns name, username, email, dn, activation code."""
    out = account_op(conn, {"action": "create", "employeeNumber": district_id.strip()})
    out["name"] = out.get("cn", "")
    out["username"] = out.get("uid", "")
    out["email"] = out.get("mail", "")
    return out


def issue_codes(conn, accounts: list, keep_valid: bool = False) -> list:
    """New one-time activation codes for PENDING accounts (each replaces the earlier
    code); with keep_valid an account whose code has not expired keeps it, and its item
    says so ({"uid", "dn", "valid": True, "issued", "expiry"})."""
    if not accounts:
        return []
    req = {"action": "issue-codes", "accounts": list(accounts)}
    if keep_valid:
        req["keepValid"] = True
    return account_op(conn, req)["codes"]


def reset_password(conn, target: str) -> dict:
    """A generated password for an ENABLED student of the caller's scope (RFC 3062 with
    no new password: exactly what `ldappasswd -D <subadmin> uid=…` does). The student
    must change it at the next login. Returns name, username, email, password."""
    s = resolve_student(conn, target)
    if s["status"] != "ENABLED":
        raise AdminError(f"{s['uid']} is {s['status']}: only an ENABLED account can have its password reset"
                         + (" (a PENDING account is activated with its activation code)"
                            if s["status"] == "PENDING" else ""), 53)
    ok = conn.extend.standard.modify_password(user=s["dn"])
    if not ok or not isinstance(ok, (str, bytes)):
        _fail(conn, f"password reset of {s['uid']}")
    password = ok.decode() if isinstance(ok, bytes) else ok
    return {**_show(s), "password": password}


def deactivate(conn, target: str, reason: str, reference: str) -> dict:
    """ENABLED -> DISABLED with a reason and a reference (the server records who and
    when, and keeps sync from re-enabling it). Returns name, username, email."""
    if not (reason or "").strip():
        raise AdminError("a deactivation needs a reason (e.g. parent-refusal)")
    if not (reference or "").strip():
        raise AdminError("a deactivation needs a reference (e.g. the signed form's number)")
    s = resolve_student(conn, target)
    if s["status"] != "ENABLED":
        raise AdminError(f"{s['uid']} is {s['status']}: only an ENABLED account can be deactivated", 53)
    ok = conn.modify(s["dn"], {"rollcallAccountStatus": [(MODIFY_REPLACE, ["DISABLED"])],
                               "rollcallDeactivationReason": [(MODIFY_REPLACE, [reason.strip()])],
                               "rollcallDeactivationReference": [(MODIFY_REPLACE, [reference.strip()])]})
    if not ok:
        _fail(conn, f"deactivation of {s['uid']}")
    after = resolve_student(conn, s["dn"])
    return {**_show(after), "status": after["status"], "reason": after["deactivation_reason"],
            "reference": after["deactivation_reference"], "by": after["deactivated_by"],
            "at": after["deactivated_at"]}


def reactivate(conn, target: str) -> dict:
    """DISABLED -> ENABLED, or PENDING for a never-activated account (it has no password);
    audited by the server with the earlier reason and reference."""
    s = resolve_student(conn, target)
    if s["status"] != "DISABLED":
        raise AdminError(f"{s['uid']} is {s['status']}: only a DISABLED account can be re-activated", 53)
    new = "PENDING" if (s["activation_state"] or "").upper() == "NOT_ACTIVATED" else "ENABLED"
    if not conn.modify(s["dn"], {"rollcallAccountStatus": [(MODIFY_REPLACE, [new])]}):
        _fail(conn, f"re-activation of {s['uid']}")
    return {**_show(s), "status": new, "previous_reason": s["deactivation_reason"],
            "previous_reference": s["deactivation_reference"]}


def activate(conn, uid: str, code: str, new_password: str) -> dict:
    """Self-service activation of a PENDING account (anonymous connection)."""
    return account_op(conn, {"action": "activate", "uid": uid.strip(), "code": code.strip(),
                             "newPassword": new_password})


def change_password(conn, old: str, new: str):
    """The bound user changes their own password (e.g. the must-change after a reset)."""
    ok = conn.extend.standard.modify_password(old_password=old, new_password=new)
    if not ok:
        _fail(conn, "password change")
    return True


# --------------------------------------------------------------------------- roster


@dataclass
class Roster:
    code: str
    site_name: str
    rows: list = field(default_factory=list)  # dicts with ROSTER_COLUMNS keys
    missing: list = field(default_factory=list)  # dicts with MISSING_COLUMNS keys
    generated_at: float = field(default_factory=time.time)
    codes_issued: int = 0
    codes_kept: int = 0  # PENDING accounts whose earlier code is still valid (not replaced)
    code_errors: list = field(default_factory=list)

    @property
    def stamp(self) -> str:
        return time.strftime("%Y%m%d-%H%M", time.localtime(self.generated_at))

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"roster-{self.code}-{self.stamp}.csv", csv_bytes(ROSTER_COLUMNS, self.rows))
            if self.missing:
                z.writestr(f"not-found-{self.code}-{self.stamp}.csv", csv_bytes(MISSING_COLUMNS, self.missing))
        return buf.getvalue()


_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """A cell a spreadsheet shows as text: a leading = + - @ (tab, CR) would start a
    formula (CSV injection), so such cells get a leading apostrophe (OWASP advice)."""
    s = "" if value is None else str(value)
    return "'" + s if s.startswith(_DANGEROUS) else s


def csv_bytes(columns, rows) -> bytes:
    """UTF-8 with a byte-order mark (Excel then reads accents right), CRLF line ends,
    every field quoted when needed (RFC 4180), cells neutralised against formulas."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([safe_cell(r.get(c, "")) for c in columns])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def roster(conn, code: str, ids=None, issue_activation_codes: bool = True, reissue_codes: bool = False) -> Roster:
    """The roster of a cost center (or only the listed district IDs): one row per
    student whose SIS record or account carries the code, including SIS records with
    no account yet. Unknown or out-of-scope IDs go to `missing`. A PENDING account
    without a valid activation code gets a one-time code; one whose code (e.g. printed
    when the account was created) has not expired keeps it, and its row says so in
    activation_code_note. reissue_codes replaces every PENDING account's code;
    issue_activation_codes=False issues none."""
    site = check_cost_center(conn, code)
    code = site["code"]
    suffix = _suffix(conn)
    e = escape_filter_chars(code)
    # from the suffix: sub-administrators may read SIS records but not the ou=sis entry itself
    sis = paged_search(conn, suffix, f"(&(objectClass=rollcallSisRecord)(departmentNumber={e}))", SIS_ATTRS)
    accounts = paged_search(conn, _students_base(conn), f"(departmentNumber={e})", ROSTER_STUDENT_ATTRS)
    by_id = {}
    by_dn = {}
    for dn, a in accounts:
        s = _student(dn, a)
        by_dn[dn.lower().replace(" ", "")] = s
        if s["district_id"]:
            by_id.setdefault(s["district_id"].lower(), s)
    rows = {}
    for dn, a in sis:
        did = _raw(a, "employeeNumber")
        linked = _raw(a, "rollcallLinkedAccount")
        acc = by_id.get(did.lower()) or (by_dn.get(linked.lower().replace(" ", "")) if linked else None)
        rows[did.lower()] = _row(site, did, a, acc)
    for s in by_id.values():
        if s["district_id"].lower() not in rows:
            rows[s["district_id"].lower()] = _row(site, s["district_id"], None, s)
    report = Roster(code, site["name"])
    if ids is not None:
        wanted = []
        seen = set()
        for raw in ids:
            t = raw.strip()
            if not t or t.lower() in seen:
                continue
            seen.add(t.lower())
            if not DISTRICT_ID.match(t):
                report.missing.append({"district_id": t, "reason": "not a district ID (10 characters, e.g. "
                                                                   "000123s456)"})
            elif t.lower() in rows:
                wanted.append(rows[t.lower()])
            else:
                report.missing.append({"district_id": t, "reason": f"not a student of cost center {code} "
                                                                   "(unknown district ID, or another school)"})
        selected = wanted
    else:
        selected = list(rows.values())
    selected.sort(key=lambda r: (r["last_name"].casefold(), r["first_name"].casefold(), r["district_id"]))
    if issue_activation_codes:
        pending = [r["username"] for r in selected if r["account_status"] == "PENDING" and r["username"]]
        if pending:
            by_uid = {r["username"]: r for r in selected}
            for item in issue_codes(conn, pending, keep_valid=not reissue_codes):
                if "code" in item:
                    r = by_uid.get(item["uid"])
                    if r is not None:
                        r["activation_code"] = item["code"]
                        r["activation_code_expires"] = display.local_date(item["expiry"])
                        r["activation_code_note"] = "new code in this roster (earlier codes no longer work)"
                        report.codes_issued += 1
                elif item.get("valid"):
                    r = by_uid.get(item["uid"])
                    if r is not None:
                        r["activation_code_expires"] = display.local_date(item["expiry"])
                        issued = display.local_date(item["issued"])
                        r["activation_code_note"] = (f"a code issued on {issued} is still valid "
                                                     "(ask the person who created the account, or reissue)")
                        report.codes_kept += 1
                else:
                    report.code_errors.append(item)
    report.rows = selected
    return report


def _row(site, did, sis_attrs, acc) -> dict:
    a = sis_attrs or {}
    return {
        "district_id": did,
        "last_name": (_raw(a, "sn") if sis_attrs else "") or (acc["sn"] if acc else ""),
        "first_name": (_raw(a, "givenName") if sis_attrs else "") or (acc["given"] if acc else ""),
        "grade": (_raw(a, "rollcallGrade") if sis_attrs else "") or (acc["grade"] if acc else ""),
        "school_code": site["code"], "school": site["name"],
        "username": acc["uid"] if acc else "",
        "email": acc["mail"] if acc else "",
        "account_status": acc["status"] if acc else "NO ACCOUNT",
        "activation_state": acc["activation_state"] if acc else "",
        "activation_code": "", "activation_code_expires": "", "activation_code_note": "",
        "photo_status": (acc["photo_status"] or "NONE") if acc else "",
        "sis_record_date": display.local_date(_raw(a, "rollcallSisImportedAt")) if sis_attrs else "",
        "all_schools": " ".join(acc["schools"] if acc else _raw_all(a, "departmentNumber")),
    }
