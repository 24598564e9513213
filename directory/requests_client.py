"""Access requests as functions over an ldap3 connection bound as the person acting
(or anonymous). The `rollcall request` commands and the web console use them; the
rules (who may file what, who decides, numbers, grants) are the server's requests
overlay (directory/core/requests.py), so a refusal comes back as RequestError.

    submit(conn, kind, target, grantee=None, justification=None, expiry=None, **fields) -> number
    nonemployee_attrs(suffix, given, sn, mail, organization, ne_kind, site, phone=None, …) -> attrs
    list_requests(conn, status="PENDING", mine_dn=None) -> [Request]
    get(conn, number) -> Request | None
    decide(conn, number, status, reason=None, expiry=None) -> Request | None
    applications(conn) -> [Application]      (with their role groups)
    sites(conn) -> [(code, name)]
    find_one(conn, base, filter, what) -> DN
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

from ldap3 import BASE, LEVEL, MODIFY_REPLACE, SUBTREE
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from . import client
from .client import ClientError
from .core.requests import KINDS, MAIL_RE, NE_KINDS, STATUSES  # noqa: F401 - re-exported for callers
from .district import display
from .district.gentime import from_user_input

KIND_ALIASES = {
    "nonemployee": "NON_EMPLOYEE_ACCOUNT", "non-employee": "NON_EMPLOYEE_ACCOUNT",
    "role": "APPLICATION_ROLE", "application-role": "APPLICATION_ROLE",
    "subadmin": "SUBADMIN", "sub-admin": "SUBADMIN",
    "photo-vendor": "PHOTO_VENDOR", "photovendor": "PHOTO_VENDOR",
}
SHOW_ATTRS = ["rollcallRequestNumber", "rollcallRequestKind", "rollcallRequestStatus", "rollcallRequester",
              "rollcallRequestTarget", "rollcallGrantee", "rollcallJustification", "givenName", "sn", "cn",
              "mail", "telephoneNumber", "rollcallOrganization", "rollcallNonEmployeeKind", "rollcallSponsor",
              "rollcallExpiry", "description", "rollcallDecidedBy", "rollcallDecidedAt",
              "rollcallDecisionReason", "rollcallLinkedAccount", "createTimestamp"]
READ_ATTRS = ["*", "createTimestamp"]
SUBADMIN_ROLES = ("student-email-admins", "photo-designees")


class RequestError(ClientError):
    """The directory refused (or the input cannot be sent). `message` is the server's
    diagnostic (or ours); `code`/`description` the LDAP result when there is one
    (a directory.client ClientError)."""

    def __init__(self, message: str, code: int | None = None, description: str = "", what: str = "",
                 kind: str = "result"):
        super().__init__(message, code, description, kind)
        self.what = what

    def detail(self) -> str:
        """One line for the command line: what, result name and code, diagnostic."""
        if self.code is None:
            return f"{self.what}: {self.message}" if self.what else self.message
        return f"{self.what}: {self.description} ({self.code}): {self.message}"


def _fail(conn, what: str):
    r = conn.result or {}
    raise RequestError(r.get("message") or r.get("description") or "refused", r.get("result"),
                       r.get("description") or "", what)


def suffix_of(conn) -> str:
    """The naming context (root DSE), cached on the connection."""
    try:
        return client.naming_context(conn)
    except ClientError as exc:
        raise RequestError(exc.message, exc.code, exc.description, kind=exc.kind) from None


def request_dn(suffix: str, number) -> str:
    return f"rollcallRequestNumber={int(number)},ou=requests,{suffix}"


def gentime(text: str | None) -> str | None:
    """YYYY-MM-DD (end of that day, UTC) or YYYYMMDDHHMMSSZ -> generalized time."""
    try:
        return from_user_input(text)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def norm_dn(dn: str) -> str:
    """A comparison key for DNs as the server writes them (case and spaces after commas)."""
    try:
        return ",".join(f"{a.lower()}={v.lower()}" for a, v, _ in parse_dn(dn or ""))
    except Exception:  # noqa: BLE001 - not a DN: compare as text
        return (dn or "").lower().replace(" ", "")


def rdn_value(dn: str, index: int = 0) -> str:
    try:
        return parse_dn(dn)[index][1]
    except Exception:  # noqa: BLE001
        return ""


def parent_dn(dn: str) -> str:
    try:
        parts = parse_dn(dn)
    except Exception:  # noqa: BLE001
        return ""
    return ",".join(f"{a}={v}" for a, v, _ in parts[1:])


def _when(value: str) -> str:
    """20260630235959Z -> 2026-06-30 16:59 (local time, for people)."""
    return display.local_datetime(value or "")


@dataclass
class Request:
    """One request as the caller may see it (attributes they may not read are absent)."""

    dn: str
    attrs: dict = field(default_factory=dict)   # lower-case attribute name -> [str]

    def one(self, name: str) -> str:
        v = self.attrs.get(name.lower())
        return v[0] if v else ""

    def all(self, name: str) -> list:
        return list(self.attrs.get(name.lower(), []))

    number = property(lambda self: int(self.one("rollcallRequestNumber") or rdn_value(self.dn) or 0))
    kind = property(lambda self: self.one("rollcallRequestKind").upper())
    status = property(lambda self: self.one("rollcallRequestStatus").upper())
    target = property(lambda self: self.one("rollcallRequestTarget"))
    requester = property(lambda self: self.one("rollcallRequester"))
    grantee = property(lambda self: self.one("rollcallGrantee"))
    justification = property(lambda self: self.one("rollcallJustification"))
    reason = property(lambda self: self.one("rollcallDecisionReason"))
    decided_by = property(lambda self: self.one("rollcallDecidedBy"))
    decided_at = property(lambda self: _when(self.one("rollcallDecidedAt")))
    filed_at = property(lambda self: _when(self.one("createTimestamp")))
    expiry = property(lambda self: _when(self.one("rollcallExpiry")))
    linked_account = property(lambda self: self.one("rollcallLinkedAccount"))
    flags = property(lambda self: [v for v in self.all("description") if v.lower().startswith("flag:")])

    @property
    def name(self) -> str:
        return self.one("cn") or " ".join(x for x in (self.one("givenName"), self.one("sn")) if x)

    @property
    def site_code(self) -> str:
        """The site a site kind is about: ou=<code>,ou=sites or cn=<role>,ou=<code>,ou=sites."""
        try:
            parts = parse_dn(self.target)
        except Exception:  # noqa: BLE001
            return ""
        for i, (a, v, _) in enumerate(parts[:-1]):
            if a.lower() == "ou" and parts[i + 1][0].lower() == "ou" and parts[i + 1][1].lower() == "sites":
                return v
        return ""

    @property
    def role(self) -> str:
        """The role group's cn (role kinds)."""
        return rdn_value(self.target) if self.kind != "NON_EMPLOYEE_ACCOUNT" else ""

    @property
    def application(self) -> str:
        """DN of the application an APPLICATION_ROLE request is about."""
        return parent_dn(self.target) if self.kind == "APPLICATION_ROLE" else ""

    def involves(self, dn: str) -> bool:
        """Filed by `dn` or naming `dn` as grantee."""
        me = norm_dn(dn)
        return bool(me) and me in (norm_dn(self.requester), norm_dn(self.grantee))


def _request(entry) -> Request:
    attrs = {}
    for k, vs in (entry.get("raw_attributes") or {}).items():
        attrs[k.lower()] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in vs]
    return Request(entry["dn"], attrs)


def _search(conn, base, flt, scope, attributes, what, page=200) -> list:
    """All entries of a (paged) search (directory.client.paged_search) as
    {"dn", "raw_attributes"}; a base the caller cannot see gives nothing."""
    try:
        found = client.paged_search(conn, base, flt, attributes, scope, page, absent_ok=True)
    except ClientError as exc:
        if exc.code is not None:
            _fail(conn, what)
        raise RequestError(exc.message, None, "", what, exc.kind) from None
    return [{"dn": dn, "raw_attributes": attrs} for dn, attrs in found]


# --------------------------------------------------------------------------- submit


def nonemployee_attrs(suffix, given, sn, mail, organization, ne_kind, site, phone=None, sponsor=None) -> dict:
    """The fields of a NON_EMPLOYEE_ACCOUNT request (pass them to submit as **fields)."""
    out = {"rollcallRequestTarget": f"ou={site},ou=sites,{suffix}" if site else None,
           "givenName": given, "sn": sn, "mail": mail, "telephoneNumber": phone,
           "rollcallOrganization": organization, "rollcallNonEmployeeKind": ne_kind and ne_kind.upper(),
           "rollcallSponsor": sponsor}
    return {k: v for k, v in out.items() if v}


def request_entry(kind, target=None, grantee=None, justification=None, expiry=None, **fields) -> dict:
    """The attributes of a new request (added as rollcallRequestNumber=0: the server numbers it)."""
    kind = KIND_ALIASES.get(kind.lower(), kind.upper())
    attrs = {"objectClass": ["top", "rollcallRequest"], "rollcallRequestNumber": "0",
             "rollcallRequestKind": kind, "rollcallRequestStatus": "PENDING"}
    fields.setdefault("rollcallRequestTarget", target)
    for name, value in (*fields.items(), ("rollcallGrantee", grantee),
                        ("rollcallJustification", justification), ("rollcallExpiry", gentime(expiry))):
        if value:
            attrs[name] = value
    if not attrs.get("rollcallRequestTarget"):
        raise RequestError("which site / role? the request has no target")
    return attrs


def new_tracking_secret() -> str:
    """The secret a non-employee account request is followed with (anonymously): 128
    random bits; only its SHA-256 is stored (rollcallTrackingDigest)."""
    return secrets.token_urlsafe(16)


def tracking_digest(secret: str) -> str:
    return hashlib.sha256(secret.strip().encode("utf-8")).hexdigest()


def number_of(dn: str) -> int:
    return int(rdn_value(dn) or 0)


def submit(conn, kind, target=None, grantee=None, justification=None, expiry=None, **fields) -> int:
    """File a request; returns the number the server gave it."""
    suffix = suffix_of(conn)
    attrs = request_entry(kind, target, grantee, justification, expiry, **fields)
    new = request_dn(suffix, 0)
    if not conn.add(new, attributes=attrs):
        _fail(conn, "submit")
    message = (conn.result or {}).get("message") or ""
    dn = message[len("added as "):] if message.startswith("added as ") else new
    return number_of(dn)


def find_one(conn, base, flt, what) -> str:
    conn.search(base, flt, LEVEL, attributes=["cn"])
    entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    if not entries:
        raise RequestError(f"{what}: not found under {base}")
    return entries[0]["dn"]


def application_role_dn(conn, application: str, role: str) -> str:
    """The role group of an application by short names (therapist or welligent-therapist)."""
    app = f"ou={application},ou=groups,{suffix_of(conn)}"
    r, a = escape_filter_chars(role), escape_filter_chars(application)
    return find_one(conn, app, f"(&(objectClass=groupOfNames)(|(cn={r})(cn={a}-{r})))",
                    f"role {role} of {application}")


def site_role_dn(conn, code: str, role: str) -> str:
    return f"cn={role},ou={code},ou=sites,{suffix_of(conn)}"


# --------------------------------------------------------------------------- read


def list_requests(conn, status: str = "PENDING", mine_dn: str | None = None) -> list:
    """Requests with this status ('ALL' for any) the caller may read, by number;
    mine_dn: only those filed by or naming that DN as grantee."""
    status = (status or "ALL").upper()
    parts = ["(objectClass=rollcallRequest)"]
    if status != "ALL":
        parts.append(f"(rollcallRequestStatus={escape_filter_chars(status)})")
    if mine_dn:
        me = escape_filter_chars(mine_dn)
        parts.append(f"(|(rollcallRequester={me})(rollcallGrantee={me}))")
    entries = _search(conn, f"ou=requests,{suffix_of(conn)}", "(&" + "".join(parts) + ")", LEVEL,
                      READ_ATTRS, "list")
    return sorted((_request(e) for e in entries), key=lambda r: r.number)


def get(conn, number) -> Request | None:
    """One request as the caller may see it; None when absent or not visible to them."""
    dn = request_dn(suffix_of(conn), number)
    ok = conn.search(dn, "(objectClass=*)", BASE, attributes=READ_ATTRS)
    if not ok:
        if (conn.result or {}).get("result") == 32:
            return None
        _fail(conn, f"read request {number}")
    entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    return _request(entries[0]) if entries else None


# --------------------------------------------------------------------------- decide


def decide(conn, number, status, reason=None, expiry=None) -> Request | None:
    """APPROVED | DENIED | WITHDRAWN with an optional reason (DENIED needs one) and, when
    approving, an expiry; the server makes the grant in the same transaction. Returns the
    request as it is afterwards."""
    status = status.upper()
    changes = {"rollcallRequestStatus": [(MODIFY_REPLACE, [status])]}
    if reason:
        changes["rollcallDecisionReason"] = [(MODIFY_REPLACE, [reason])]
    expiry = gentime(expiry)
    if expiry:
        changes["rollcallExpiry"] = [(MODIFY_REPLACE, [expiry])]
    if not conn.modify(request_dn(suffix_of(conn), number), changes):
        _fail(conn, f"request {number}")
    return get(conn, number)


def issue_activation_code(conn, number) -> dict:
    """The approver of an APPROVED non-employee account request delivers the account's
    username and a one-time activation code (it replaces any earlier code). The server
    decides who may (core/requests.py approves_account). Returns number, username, dn,
    name, mail, code, expiry."""
    from . import admin  # the account operation's client

    req = get(conn, number)
    if req is None:
        raise RequestError(f"request {number}: not found", 32)
    if req.kind != "NON_EMPLOYEE_ACCOUNT":
        raise RequestError(f"request {number} is a {req.kind} request: activation codes are for the accounts "
                           "of non-employee account requests", 53)
    if req.status != "APPROVED" or not req.linked_account:
        raise RequestError(f"request {number} is {req.status}: only an approved request has an account", 53)
    try:
        [item] = admin.issue_codes(conn, [req.linked_account])
    except ClientError as exc:
        raise RequestError(exc.message, exc.code) from None
    if "code" not in item:
        raise RequestError(item.get("error") or "no activation code issued", item.get("result"))
    return {"number": req.number, "username": item["uid"], "dn": item["dn"], "name": req.name,
            "mail": req.one("mail"), "code": item["code"], "expiry": _when(item["expiry"])}


# --------------------------------------------------------------------------- what may be asked for


@dataclass
class Role:
    dn: str
    cn: str
    description: str


@dataclass
class Application:
    dn: str
    name: str
    approvers: str                              # DN of the approvers group
    description: str = ""
    roles: list = field(default_factory=list)   # [Role], the approvers group left out


def applications(conn) -> list:
    """The applications (rollcallApplication entries in ou=groups) and their role groups."""
    suffix = suffix_of(conn)
    apps = []
    for e in _search(conn, f"ou=groups,{suffix}", "(objectClass=rollcallApplication)", SUBTREE,
                     ["ou", "rollcallApplicationName", "rollcallApprovers", "description"], "applications"):
        r = _request(e)
        apps.append(Application(e["dn"], r.one("rollcallApplicationName") or r.one("ou"),
                                r.one("rollcallApprovers"), r.one("description")))
    for app in apps:
        for e in _search(conn, app.dn, "(objectClass=groupOfNames)", LEVEL, ["cn", "description"],
                         f"roles of {app.name}"):
            if norm_dn(e["dn"]) == norm_dn(app.approvers):
                continue
            r = _request(e)
            app.roles.append(Role(e["dn"], r.one("cn"), r.one("description")))
        app.roles.sort(key=lambda x: x.cn)
    return sorted(apps, key=lambda a: a.name.lower())


def sites(conn) -> list:
    """[(code, name)] of the sites the caller may read."""
    out = []
    for e in _search(conn, f"ou=sites,{suffix_of(conn)}", "(objectClass=rollcallSite)", LEVEL,
                     ["ou", "rollcallCostCenter", "rollcallSiteName"], "sites"):
        r = _request(e)
        out.append((r.one("rollcallCostCenter") or r.one("ou"), r.one("rollcallSiteName")))
    return sorted(out)
