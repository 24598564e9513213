"""Access requests and role grants (the `ou=requests` workflow), as an overlay: every
rule below runs inside the write's transaction, so LDAP clients (ldapadd/ldapmodify),
the `rollcall request` command line and any other front end obey the same rules, and
an approval commits together with its grant or not at all.

A request is `rollcallRequestNumber=<n>,ou=requests,<suffix>` (objectClass
rollcallRequest). The number is assigned by the server: add the entry as
`rollcallRequestNumber=0,ou=requests,<suffix>` (with `rollcallRequestNumber: 0`) and
the overlay renames it to the next number of a counter kept in the store's meta table
(the new DN is in the AddResponse's diagnostic message and in a post-read control).

Kinds (rollcallRequestKind) and what they need:

  NON_EMPLOYEE_ACCOUNT  givenName, sn, mail (syntax checked, one value), rollcallOrganization,
                        rollcallNonEmployeeKind (CONTRACTOR | CHARTER | NON_PUBLIC_SCHOOL |
                        AGENCY), rollcallRequestTarget = the sponsoring site
                        (ou=<code>,ou=sites). Optional: telephoneNumber, rollcallSponsor
                        (an employee), rollcallExpiry (wanted end date), justification.
                        Anyone may submit, anonymous too (rate-limited per source
                        address), with rollcallTrackingDigest = SHA-256 (hex) of a
                        secret only the requester holds: anonymous users read a
                        request's number and kind, never its status or reason, so
                        following it needs the secret (the console's track page
                        checks it); a mail already used by an account is flagged in
                        `description` ("flag: duplicate mail …"). An anonymous request
                        for a site code that does not exist is accepted all the same
                        (flagged "flag: no school or office …"), so that the answer
                        tells nobody which codes exist; no principal sees it and
                        approving it is refused. Approval creates
                        uid=<uid>,ou=nonemployees,ou=people: PENDING, with rollcallExpiry
                        (default now + requests.account_expiry_days, 365), sponsor (the
                        one named, else the approver), seeAlso the flagged account(s);
                        the request's rollcallLinkedAccount names it.
  APPLICATION_ROLE      rollcallRequestTarget = a role group beneath an application
                        (a rollcallApplication entry in ou=groups), not its approvers group.
  SUBADMIN              rollcallRequestTarget = cn=student-email-admins or cn=photo-designees
                        (requests.subadmin_roles) of ou=<code>,ou=sites.
  PHOTO_VENDOR          rollcallRequestTarget = cn=photo-vendors of a site (or the site,
                        which is read as its cn=photo-vendors); the grantee must hold an
                        ENABLED account.

For the role kinds rollcallGrantee is the account that gets the role (default: the
requester); it must exist and be active. Approval adds it to the role group's `member`
(so memberOf is kept by the memberOf overlay) and writes a rollcallGrant entry
cn=<grantee uid>,<role group> with granted by/at, the request's DN and the expiry
(the request's rollcallExpiry, which the approver may set in the approving modify).

Status (rollcallRequestStatus): PENDING -> APPROVED | DENIED | WITHDRAWN | EXPIRED, and
only PENDING can change. Authenticated users modify only rollcallRequestStatus,
rollcallDecisionReason and rollcallExpiry; the server sets rollcallDecidedBy/At.
DENIED needs a reason; WITHDRAWN only by the requester; EXPIRED only by the system.

Who decides (approve or deny) — enforced here, not by the access rules:

  NON_EMPLOYEE_ACCOUNT  members of cn=principals of the sponsoring site, or district-admins.
                        (A site's student-email-admins administer its students' accounts
                        only; creating an account for an outsider is the principal's call.)
  APPLICATION_ROLE      members of the group named by the application's rollcallApprovers.
  SUBADMIN              members of cn=principals of the site, or district-admins.
  PHOTO_VENDOR          members of cn=principals of the site.

Nobody decides a request they made or that names them as grantee (nor a non-employee
account request carrying their own mail). An approver's rights are read from the store
inside the transaction: a principal removed from cn=principals (or DISABLED) decides
nothing from then on, their pending requests stay PENDING for the next approver. The
root DN may decide anything (it bypasses the rules, as in slapd).

Dual capacity (an employee who is also a contractor): one identity per capacity. The
non-employee account is separate (own uid, sponsor, expiry, grants), so a contract's
end never disables the employee account and a contractor's roles never ride on the
employee identity; the two are linked by `seeAlso` on the non-employee account (and
the request's duplicate-mail flag tells the approver).

Expiry: `expire(directory)` (the `rollcall request expire` command, run from cron)
removes expired grants from their groups, disables expired non-employee accounts and
marks PENDING requests older than requests.pending_days (90) EXPIRED; each change has
its audit entry.

Config (optional `requests:` section in config.yaml):
    account_expiry_days: 365   anonymous_limit: 5   anonymous_window: 3600
    pending_days: 90           subadmin_roles: [student-email-admins, photo-designees]
    district_admins: "cn=district-admins,ou=groups,{suffix}"
"""
import re
import time

from ..district.gentime import gentime, parse_time
from ..district.usernames import ascii_letters
from .dn import DN, escape_value
from .entry import Entry
from .errors import LDAPError, ResultCode
from .operation import internal_add, internal_delete, internal_replace, operation
from .overlay import Overlay

KINDS = ("NON_EMPLOYEE_ACCOUNT", "APPLICATION_ROLE", "SUBADMIN", "PHOTO_VENDOR")
STATUSES = ("PENDING", "APPROVED", "DENIED", "WITHDRAWN", "EXPIRED")
NE_KINDS = ("CONTRACTOR", "CHARTER", "NON_PUBLIC_SCHOOL", "AGENCY")
DECISION_ATTRS = {"rollcallRequestStatus", "rollcallDecisionReason", "rollcallExpiry"}
SERVER_SET = ("rollcallDecidedBy", "rollcallDecidedAt", "rollcallLinkedAccount")
STAMPS = {"modifiersName", "modifyTimestamp"}
MAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
COUNTER_KEY = "requests.next_number"
TRACKING_DIGEST_RE = re.compile(rb"^[0-9a-fA-F]{64}$")
UNKNOWN_SITE_FLAG = b"flag: no school or office has this code (the request reaches no principal)"


def _text(attrs, name, default=None):
    values = attrs.get(name)
    return values[0].decode("utf-8", "replace") if values else default


def _refuse(message, code=ResultCode.UNWILLING_TO_PERFORM):
    raise LDAPError(code, message)


class Target:
    """What a request asks for, resolved against the store inside the transaction."""

    def __init__(self, kind, target=None, site=None, code=None, group=None, app=None, approvers=None):
        self.kind = kind
        self.target = target  # the entry named by rollcallRequestTarget (after mapping)
        self.site = site  # the rollcallSite entry (site kinds)
        self.code = code  # its cost center
        self.group = group  # the role group entry (role kinds)
        self.app = app  # the rollcallApplication entry (APPLICATION_ROLE)
        self.approvers = approvers  # ndn of the application's approvers group


# ----------------------------------------------------------------------------


class RequestsOverlay(Overlay):
    def __init__(self, directory):
        super().__init__(directory)
        d = directory
        cfg = d.config.section("requests")  # checked by directory/config.py
        self.account_days = cfg["account_expiry_days"]
        self.anon_limit = cfg["anonymous_limit"]
        self.anon_window = float(cfg["anonymous_window"])
        self.pending_days = cfg["pending_days"]
        self.subadmin_roles = tuple(r.lower() for r in cfg["subadmin_roles"])
        suffix = d.suffix
        self.district_admins = d.normalize_dn(cfg["district_admins"].replace("{suffix}", suffix))
        self.requests_dn = f"ou=requests,{suffix}"
        self.requests_ndn = d.normalize_dn(self.requests_dn)
        self.sites_ndn = d.normalize_dn(f"ou=sites,{suffix}")
        self.groups_ndn = d.normalize_dn(f"ou=groups,{suffix}")
        self.people_ndn = d.normalize_dn(f"ou=people,{suffix}")
        self.nonemployees_dn = f"ou=nonemployees,ou=people,{suffix}"

    # -- helpers ---------------------------------------------------------------
    def is_request(self, entry) -> bool:
        return (entry.ndn.endswith("," + self.requests_ndn)
                and "rollcallrequest" in self.d.objectclass_closure(entry))

    def _parent_ndn(self, ndn):
        return ndn.split(",", 1)[1] if "," in ndn else ""

    def _dn_value(self, attrs, name):
        v = _text(attrs, name)
        if v is None:
            return None, None
        try:
            return v, self.d.normalize_dn(v)
        except LDAPError:
            _refuse(f"{name}: invalid DN {v!r}", ResultCode.INVALID_ATTRIBUTE_SYNTAX)

    def _classes(self, entry):
        return self.d.objectclass_closure(entry)

    def _site_of_group(self, tx, group):
        """(site entry, code) when `group` is a role group directly beneath a site."""
        parent_ndn = self._parent_ndn(group.ndn)
        if self._parent_ndn(parent_ndn) != self.sites_ndn:
            return None, None
        site = tx.get_by_ndn(parent_ndn)
        if site is None or "rollcallsite" not in self._classes(site):
            return None, None
        return site, (_text(site.attrs, "rollcallCostCenter") or _text(site.attrs, "ou"))

    def _site_group_ndn(self, site, cn):
        return self.d.normalize_dn(f"cn={cn},{site.dn}")

    def number_of(self, entry_or_attrs) -> str:
        attrs = entry_or_attrs.attrs if isinstance(entry_or_attrs, Entry) else entry_or_attrs
        return _text(attrs, "rollcallRequestNumber", "?")

    def resolve(self, tx, attrs) -> Target:
        """Check what the request asks for against the store; the same checks run when it
        is submitted and again when it is approved (things change in between)."""
        kind = _text(attrs, "rollcallRequestKind", "").upper()
        text, ndn = self._dn_value(attrs, "rollcallRequestTarget")
        if ndn is None:
            _refuse(f"a {kind} request needs rollcallRequestTarget", ResultCode.OBJECT_CLASS_VIOLATION)
        target = tx.get_by_ndn(ndn)
        if target is None:
            _refuse(f"rollcallRequestTarget {text!r} does not exist", ResultCode.CONSTRAINT_VIOLATION)
        classes = self._classes(target)
        if kind == "NON_EMPLOYEE_ACCOUNT":
            if "rollcallsite" not in classes:
                _refuse("rollcallRequestTarget of a NON_EMPLOYEE_ACCOUNT request is the sponsoring site "
                        "(ou=<code>,ou=sites,…)", ResultCode.CONSTRAINT_VIOLATION)
            code = _text(target.attrs, "rollcallCostCenter") or _text(target.attrs, "ou")
            return Target(kind, target, target, code)
        if kind == "PHOTO_VENDOR" and "rollcallsite" in classes:
            group = tx.get_by_ndn(self._site_group_ndn(target, "photo-vendors"))
            if group is None:
                _refuse(f"site {text} has no cn=photo-vendors group", ResultCode.CONSTRAINT_VIOLATION)
            target, classes = group, self._classes(group)
        if "groupofnames" not in classes:
            _refuse(f"rollcallRequestTarget {text!r} is not a role group", ResultCode.CONSTRAINT_VIOLATION)
        cn = (_text(target.attrs, "cn") or "").lower()
        if kind == "APPLICATION_ROLE":
            app = tx.get_by_ndn(self._parent_ndn(target.ndn))
            if app is None or "rollcallapplication" not in self._classes(app) \
                    or not app.ndn.endswith("," + self.groups_ndn):
                _refuse(f"{target.dn} is not a role of an application (a group beneath a "
                        "rollcallApplication entry in ou=groups)", ResultCode.CONSTRAINT_VIOLATION)
            _, approvers = self._dn_value(app.attrs, "rollcallApprovers")
            if approvers is None:
                _refuse(f"application {app.dn} names no approvers (rollcallApprovers)")
            if approvers == target.ndn:
                _refuse(f"{target.dn} is the application's approvers group, not one of its roles",
                        ResultCode.CONSTRAINT_VIOLATION)
            return Target(kind, target, group=target, app=app, approvers=approvers)
        site, code = self._site_of_group(tx, target)
        if site is None:
            _refuse(f"{target.dn} is not a role group of a site (cn=<role>,ou=<code>,ou=sites,…)",
                    ResultCode.CONSTRAINT_VIOLATION)
        if kind == "SUBADMIN" and cn not in self.subadmin_roles:
            _refuse(f"a SUBADMIN request is for one of {', '.join(self.subadmin_roles)} of a site, "
                    f"not {cn}", ResultCode.CONSTRAINT_VIOLATION)
        if kind == "PHOTO_VENDOR" and cn != "photo-vendors":
            _refuse("a PHOTO_VENDOR request is for a site's cn=photo-vendors", ResultCode.CONSTRAINT_VIOLATION)
        return Target(kind, target, site, code, group=target)

    def _check_grantee(self, tx, kind, attrs):
        text, ndn = self._dn_value(attrs, "rollcallGrantee")
        grantee = tx.get_by_ndn(ndn) if ndn else None
        if grantee is None:
            _refuse(f"rollcallGrantee {text!r} does not exist", ResultCode.CONSTRAINT_VIOLATION)
        if "rollcallaccount" in self._classes(grantee) or grantee.attrs.get("rollcallAccountStatus"):
            status = self.d.account_status(grantee)
            if self.d.account_disabled(grantee):
                _refuse(f"the grantee {grantee.dn} is DISABLED or expired", ResultCode.CONSTRAINT_VIOLATION)
            if kind == "PHOTO_VENDOR" and status != "ENABLED":
                _refuse(f"a photo vendor must hold an active (ENABLED) account; {grantee.dn} is {status}",
                        ResultCode.CONSTRAINT_VIOLATION)
        return grantee

    def _check_mail(self, attrs):
        mails = attrs.get("mail", [])
        if len(mails) != 1:
            _refuse("a NON_EMPLOYEE_ACCOUNT request needs exactly one mail", ResultCode.CONSTRAINT_VIOLATION)
        mail = mails[0].decode("utf-8", "replace").strip()
        if not MAIL_RE.match(mail) or ".." in mail or len(mail) > 254:
            _refuse(f"mail {mail!r} is not a valid e-mail address", ResultCode.INVALID_ATTRIBUTE_SYNTAX)
        return mail

    def _accounts_with_mail(self, tx, mail):
        """DNs of accounts (below ou=people) that already use this mail."""
        if "eq" not in self.d.index_kinds("mail"):
            return []
        key = self.d.index_key(self.d.schema.normalize("mail", mail.encode()))
        out = []
        for i in sorted(tx.index_eq("mail", key)):
            e = tx.get(i)
            if e is not None and e.ndn.endswith("," + self.people_ndn):
                out.append(e.dn)
        return out

    def _rate_limit(self, ident):
        # counted in the store's throttle file (store/throttle.py), shared by every
        # worker and kept across restarts; this runs in the writer thread (before_add)
        host = ident.peer.rsplit(":", 1)[0] if ":" in ident.peer else ident.peer
        if not self.d.store.throttle_admit("request-src:" + host, self.anon_window, self.anon_limit):
            _refuse("too many anonymous requests from this address; try again later", ResultCode.BUSY)

    def _next_number(self, tx) -> int:
        n = int(tx.get_meta(COUNTER_KEY, 1))
        while tx.get_by_ndn(self._request_ndn(n)) is not None:
            n += 1
        tx.set_meta(COUNTER_KEY, n + 1)
        return n

    def _request_ndn(self, n) -> str:
        return self.d.normalize_dn(f"rollcallRequestNumber={n},{self.requests_dn}")

    # -- submission ------------------------------------------------------------
    def before_add(self, tx, ident, entry):
        if not entry.ndn.endswith("," + self.requests_ndn):
            return
        attrs = entry.attrs
        if "rollcallrequest" not in self._classes(entry):
            if ident.is_root:
                return
            _refuse("only rollcallRequest entries go in ou=requests", ResultCode.OBJECT_CLASS_VIOLATION)
        if self._parent_ndn(entry.ndn) != self.requests_ndn:
            _refuse("a request goes directly beneath ou=requests", ResultCode.NAMING_VIOLATION)
        kind = _text(attrs, "rollcallRequestKind", "").upper()
        if kind not in KINDS:
            _refuse(f"rollcallRequestKind must be one of {', '.join(KINDS)}", ResultCode.CONSTRAINT_VIOLATION)
        attrs["rollcallRequestKind"] = [kind.encode()]
        if ident.anonymous:
            if kind != "NON_EMPLOYEE_ACCOUNT":
                _refuse("anonymous users may only request a non-employee account",
                        ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
            self._rate_limit(ident)
        if _text(attrs, "rollcallRequestStatus", "").upper() != "PENDING":
            _refuse("a new request's rollcallRequestStatus is PENDING", ResultCode.CONSTRAINT_VIOLATION)
        attrs["rollcallRequestStatus"] = [b"PENDING"]
        if not ident.is_root:
            for name in SERVER_SET + ("rollcallDecisionReason",):
                if name in attrs:
                    _refuse(f"{name} is set by the server when the request is decided",
                            ResultCode.CONSTRAINT_VIOLATION)
        # the requester is whoever is bound (only the root DN may file for someone else)
        _, requester = self._dn_value(attrs, "rollcallRequester")
        if ident.anonymous:
            if requester is not None:
                _refuse("an anonymous request has no rollcallRequester (mail is the contact)",
                        ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
        elif not ident.is_root:
            if requester is not None and requester != ident.ndn:
                _refuse("rollcallRequester must be the bound identity", ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
            attrs["rollcallRequester"] = [ident.dn.encode()]
        # the number: assigned here (rollcallRequestNumber=0), or given by the root DN
        given = int(_text(attrs, "rollcallRequestNumber", "0"))
        if given != 0 and not ident.is_root:
            _refuse("the server assigns request numbers: add rollcallRequestNumber=0,"
                    f"{self.requests_dn} with rollcallRequestNumber: 0", ResultCode.UNWILLING_TO_PERFORM)
        if given == 0:
            attrs["rollcallRequestNumber"] = [str(self._next_number(tx)).encode()]
        expiry = attrs.get("rollcallExpiry")
        if expiry:
            t = parse_time(expiry[0])
            if t is None or t <= time.time():
                _refuse("rollcallExpiry must be in the future", ResultCode.CONSTRAINT_VIOLATION)

        digest = attrs.get("rollcallTrackingDigest")
        if digest is not None:
            if kind != "NON_EMPLOYEE_ACCOUNT":
                _refuse("rollcallTrackingDigest goes with a NON_EMPLOYEE_ACCOUNT request only",
                        ResultCode.CONSTRAINT_VIOLATION)
            if len(digest) != 1 or not TRACKING_DIGEST_RE.match(digest[0]):
                _refuse("rollcallTrackingDigest: the SHA-256 of the tracking secret, 64 hex digits",
                        ResultCode.CONSTRAINT_VIOLATION)
            attrs["rollcallTrackingDigest"] = [digest[0].lower()]
        if ident.anonymous and self._unknown_site(tx, attrs):
            # Anonymous users cannot read ou=sites: a refusal here would tell them which
            # school codes exist. The request is recorded like any other (the same answer
            # and the same work); it reaches no principal, approving it is refused (resolve),
            # a district administrator may deny it and the expiry job ends it.
            self._validate_nonemployee(tx, attrs)
            attrs["description"] = attrs.get("description", []) + [UNKNOWN_SITE_FLAG]
            return
        target = self.resolve(tx, attrs)
        if kind == "NON_EMPLOYEE_ACCOUNT":
            self._validate_nonemployee(tx, attrs)
        else:
            if "rollcallGrantee" not in attrs:
                if not attrs.get("rollcallRequester"):
                    _refuse(f"a {kind} request needs rollcallGrantee", ResultCode.OBJECT_CLASS_VIOLATION)
                attrs["rollcallGrantee"] = list(attrs["rollcallRequester"])
            grantee = self._check_grantee(tx, kind, attrs)
            attrs["rollcallRequestTarget"] = [target.group.dn.encode()]
            if self.d.normalize_dn(grantee.dn) in self._member_ndns(target.group):
                _refuse(f"{grantee.dn} already holds {target.group.dn}", ResultCode.ATTRIBUTE_OR_VALUE_EXISTS)

    def _unknown_site(self, tx, attrs) -> bool:
        """Whether rollcallRequestTarget names a site (ou=<code>,ou=sites) that does not exist."""
        _, ndn = self._dn_value(attrs, "rollcallRequestTarget")
        return ndn is not None and self._parent_ndn(ndn) == self.sites_ndn and tx.get_by_ndn(ndn) is None

    def _validate_nonemployee(self, tx, attrs):
        for name in ("givenName", "sn", "rollcallOrganization", "rollcallNonEmployeeKind"):
            if not attrs.get(name) or not attrs[name][0].strip():
                _refuse(f"a NON_EMPLOYEE_ACCOUNT request needs {name}", ResultCode.OBJECT_CLASS_VIOLATION)
        nek = _text(attrs, "rollcallNonEmployeeKind").upper()
        if nek not in NE_KINDS:
            _refuse(f"rollcallNonEmployeeKind must be one of {', '.join(NE_KINDS)}", ResultCode.CONSTRAINT_VIOLATION)
        attrs["rollcallNonEmployeeKind"] = [nek.encode()]
        mail = self._check_mail(attrs)
        attrs["mail"] = [mail.encode()]
        if "cn" not in attrs:
            attrs["cn"] = [f"{_text(attrs, 'givenName')} {_text(attrs, 'sn')}".encode()]
        text, sponsor_ndn = self._dn_value(attrs, "rollcallSponsor")
        if sponsor_ndn is not None:
            sponsor = tx.get_by_ndn(sponsor_ndn)
            if sponsor is None or self.d.account_disabled(sponsor):
                _refuse(f"rollcallSponsor {text!r} is not an active account", ResultCode.CONSTRAINT_VIOLATION)
        if "rollcallGrantee" in attrs:
            _refuse("a NON_EMPLOYEE_ACCOUNT request has no rollcallGrantee", ResultCode.CONSTRAINT_VIOLATION)
        dups = self._accounts_with_mail(tx, mail)
        flags = [v for v in attrs.get("description", []) if not v.lower().startswith(b"flag:")]
        flags += [f"flag: duplicate mail, already used by {dn}".encode() for dn in dups]
        if flags:
            attrs["description"] = flags
        else:
            attrs.pop("description", None)

    def _member_ndns(self, group) -> set:
        return self.d.memberof.member_ndns(group.attrs)

    def after_add(self, tx, ident, entry):
        if not self.is_request(entry):
            return
        n = self.number_of(entry)
        ndn = self._request_ndn(n)
        if ndn == entry.ndn:
            return
        # named rollcallRequestNumber=0 by the client: move it to its number
        if tx.get_by_ndn(ndn) is not None:
            _refuse(f"request {n} already exists", ResultCode.ENTRY_ALREADY_EXISTS)
        dn = f"rollcallRequestNumber={n},{self.requests_dn}"
        parent = tx.get_by_ndn(self.requests_ndn)
        tx.rename(entry.id, dn, ndn, parent.id, self.d.dn.rdn_of(DN.parse(dn).rdn))
        entry.dn, entry.ndn = dn, ndn

    # -- decisions -------------------------------------------------------------
    def before_delete(self, tx, ident, entry):
        if self.is_request(entry) and not ident.is_root:
            _refuse("requests are kept (they are the record of every grant): set rollcallRequestStatus "
                    "to WITHDRAWN or DENIED instead")

    def after_rename(self, tx, ident, old, new, moved):
        if not ident.is_root and any(o.endswith("," + self.requests_ndn) or n.endswith("," + self.requests_ndn)
                                     for o, n, _ in moved):
            _refuse("requests cannot be renamed or moved")

    def before_modify(self, tx, ident, old, new):
        if not self.is_request(old):
            return
        changed = {k for k in set(old.attrs) | set(new.attrs)
                   if old.attrs.get(k) != new.attrs.get(k)} - STAMPS
        n = self.number_of(old)
        if ident.anonymous:
            _refuse(f"request {self.number_of(old)}: anonymous users decide nothing",
                    ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
        if not ident.is_root:
            extra = changed - DECISION_ATTRS
            if extra:
                _refuse(f"request {n}: only rollcallRequestStatus, rollcallDecisionReason and rollcallExpiry "
                        f"can be changed (not {', '.join(sorted(extra))})")
            if "rollcallRequestStatus" not in changed:
                _refuse(f"request {n}: a change to a request is a decision: set rollcallRequestStatus")
        if "rollcallRequestStatus" not in changed:
            return  # the root DN correcting a field
        old_status = _text(old.attrs, "rollcallRequestStatus", "").upper()
        status = _text(new.attrs, "rollcallRequestStatus", "").upper()
        if old_status != "PENDING":
            _refuse(f"request {n} is {old_status}: only a PENDING request can change")
        if status not in STATUSES or status == "PENDING":
            _refuse("rollcallRequestStatus: one of APPROVED, DENIED, WITHDRAWN", ResultCode.CONSTRAINT_VIOLATION)
        new.attrs["rollcallRequestStatus"] = [status.encode()]
        reason = _text(new.attrs, "rollcallDecisionReason")
        _, requester = self._dn_value(old.attrs, "rollcallRequester")
        if "rollcallExpiry" in changed and status != "APPROVED" and not ident.is_root:
            _refuse("rollcallExpiry can only be set when approving", ResultCode.CONSTRAINT_VIOLATION)
        if status == "WITHDRAWN":
            if not ident.is_root and (requester is None or ident.ndn != requester):
                _refuse(f"only the requester may withdraw request {n}", ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
        elif status == "EXPIRED":
            if not ident.is_root:
                _refuse("requests are EXPIRED by the expiry job only", ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
        else:
            if status == "DENIED" and not (reason and reason.strip()):
                _refuse("a denial needs rollcallDecisionReason (the requester sees it)",
                        ResultCode.CONSTRAINT_VIOLATION)
            target = self.resolve(tx, old.attrs) if status == "APPROVED" else self._resolve_loose(tx, old.attrs)
            self.check_approver(tx, ident, old.attrs, target)
            if status == "APPROVED":
                # handed to after_modify through the operation, with the very entry
                # object (never a stale plan)
                operation(tx, ident).notes[("grant-plan", new.id)] = (new, self._plan(tx, ident, old, new, target))
        stamp = gentime(time.time())
        new.attrs["rollcallDecidedBy"] = [(ident.dn or "").encode()]
        new.attrs["rollcallDecidedAt"] = [stamp]

    def _resolve_loose(self, tx, attrs):
        """For a denial: who decides, even when the target has since changed."""
        try:
            return self.resolve(tx, attrs)
        except LDAPError:
            return None

    def approver_rule(self, kind, target) -> str:
        if kind == "APPLICATION_ROLE":
            return f"members of {target.approvers if target else 'the application approvers'}"
        site = f"site {target.code}" if target else "the site"
        if kind == "PHOTO_VENDOR":
            return f"the principals of {site}"
        return f"the principals of {site} or district administrators"

    def check_approver(self, tx, ident, attrs, target):
        """Refuse unless `ident` may decide this request (approve or deny)."""
        if ident.is_root:
            return
        n = self.number_of(attrs)
        kind = _text(attrs, "rollcallRequestKind", "").upper()
        _, requester = self._dn_value(attrs, "rollcallRequester")
        _, grantee = self._dn_value(attrs, "rollcallGrantee")
        if ident.ndn in (requester, grantee):
            _refuse(f"nobody decides their own request (request {n})", ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
        me = tx.get_by_ndn(ident.ndn)
        if me is None or self.d.account_disabled(me):
            _refuse("a disabled or deleted account decides nothing", ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
        if kind == "NON_EMPLOYEE_ACCOUNT":
            mine = {self.d.schema.normalize("mail", v) for v in me.attrs.get("mail", [])}
            if any(self.d.schema.normalize("mail", v) in mine for v in attrs.get("mail", [])):
                _refuse(f"nobody decides their own request (request {n} carries your mail)",
                        ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
        groups = {self.d.normalize_dn(v.decode("utf-8", "replace")) for v in me.attrs.get("memberOf", [])}
        allowed = set()
        if target is not None:
            if kind == "APPLICATION_ROLE":
                allowed.add(target.approvers)
            else:
                allowed.add(self._site_group_ndn(target.site, "principals"))
        if kind in ("NON_EMPLOYEE_ACCOUNT", "SUBADMIN"):
            allowed.add(self.district_admins)
        if not groups & allowed:
            _refuse(f"{ident.dn} may not decide request {n}: {kind} requests are decided by "
                    f"{self.approver_rule(kind, target)}", ResultCode.INSUFFICIENT_ACCESS_RIGHTS)

    def approves_account(self, tx, ident, account) -> bool:
        """May `ident` hand the holder of `account` its activation code? Yes when the
        account was created by an APPROVED NON_EMPLOYEE_ACCOUNT request (its
        rollcallLinkedAccount) that `ident` may decide (check_approver, read now: a
        principal who left cn=principals no longer may). The accounts overlay's
        issue-codes asks this: the approver delivers the username and code, without
        write access to staff accounts' activation codes in general."""
        if ident.is_root or not account.ndn.endswith("," + self.d.normalize_dn(self.nonemployees_dn)):
            return False
        if "eq" in self.d.index_kinds("rollcallLinkedAccount"):
            key = self.d.index_key(self.d.schema.normalize("rollcallLinkedAccount", account.dn.encode()))
            ids = tx.index_eq("rollcalllinkedaccount", key)
        else:
            ids = tx.index_eq("objectclass", "rollcallrequest")
        for i in sorted(ids):
            r = tx.get(i)
            if r is None or not self.is_request(r):
                continue
            _, linked = self._dn_value(r.attrs, "rollcallLinkedAccount")
            if linked != account.ndn \
                    or _text(r.attrs, "rollcallRequestKind", "").upper() != "NON_EMPLOYEE_ACCOUNT" \
                    or _text(r.attrs, "rollcallRequestStatus", "").upper() != "APPROVED":
                continue
            try:
                self.check_approver(tx, ident, r.attrs, self.resolve(tx, r.attrs))
            except LDAPError:
                return False
            return True
        return False

    def _plan(self, tx, ident, old, new, target):
        kind = target.kind
        expiry = new.attrs.get("rollcallExpiry")
        if expiry:
            t = parse_time(expiry[0])
            if t is None or t <= time.time():
                _refuse("rollcallExpiry must be in the future", ResultCode.CONSTRAINT_VIOLATION)
        if kind == "NON_EMPLOYEE_ACCOUNT":
            if not expiry:
                expiry = [gentime(time.time() + self.account_days * 86400)]
                new.attrs["rollcallExpiry"] = expiry
            uid = self._free_uid(tx, _text(old.attrs, "givenName", ""), _text(old.attrs, "sn", ""))
            dn = f"uid={uid},{self.nonemployees_dn}"
            new.attrs["rollcallLinkedAccount"] = [dn.encode()]
            return ("account", dn, uid, target, expiry[0])
        grantee = self._check_grantee(tx, kind, old.attrs)
        return ("grant", grantee, target, expiry[0] if expiry else None)

    def _free_uid(self, tx, given, sn):
        base = (ascii_letters(given)[:1] + ascii_letters(sn))[:20] or "nonemployee"
        uid, n = base, 1
        while True:
            taken = tx.get_by_ndn(self.d.normalize_dn(f"uid={uid},{self.nonemployees_dn}")) is not None
            if not taken and "eq" in self.d.index_kinds("uid"):
                taken = bool(tx.index_eq("uid", self.d.index_key(self.d.schema.normalize("uid", uid.encode()))))
            if not taken:
                return uid
            n += 1
            uid = f"{base}{n}"

    def after_modify(self, tx, ident, old, new):
        held = operation(tx, ident).notes.pop(("grant-plan", new.id), None)
        plan = held[1] if held is not None and held[0] is new else None
        if not self.is_request(new):
            self._drop_grants_of_removed_members(tx, ident, old, new)
            return
        before = _text(old.attrs, "rollcallRequestStatus", "").upper()
        status = _text(new.attrs, "rollcallRequestStatus", "").upper()
        request_dn = new.dn
        detail = {"request": request_dn, "number": self.number_of(new)}
        if status != before:
            # the decision's own audit entry (the modify's entry names the attributes only)
            tx.log(ident.ndn, ident.peer, "request" + status.capitalize(), new.dn, new.id,
                   {**detail, "kind": _text(new.attrs, "rollcallRequestKind"), "from": before,
                    "reason": _text(new.attrs, "rollcallDecisionReason"),
                    "target": _text(new.attrs, "rollcallRequestTarget"),
                    "grantee": _text(new.attrs, "rollcallGrantee"),
                    "account": _text(new.attrs, "rollcallLinkedAccount")})
        if plan is None:
            return
        now = gentime(time.time())
        if plan[0] == "account":
            _, dn, uid, target, expiry = plan
            self._create_account(tx, ident, old, new, dn, uid, target, expiry, now, detail)
        else:
            _, grantee, target, expiry = plan
            self.grant(tx, ident, grantee, target.group, request_dn, expiry, now, detail)

    def _drop_grants_of_removed_members(self, tx, ident, old, new):
        """A member taken out of a role group by hand (a principal revoking a photo
        vendor, an administrator with ldapmodify) loses its grant record beneath the
        group in the same transaction: a stale record would outlive the grant, and an
        expired one would refuse the person if they were added again later."""
        before = old.attrs.get("member")
        if not before or not any(c.lower() == b"groupofnames" for c in old.attrs.get("objectClass", ())):
            return
        norm = self.d.memberof._norm
        kept = {norm(v) for v in new.attrs.get("member", ())}
        for value in before:
            gone = norm(value)
            if gone in kept:
                continue
            try:
                rdn_value = DN.parse(value.decode("utf-8")).rdn[0][1]
            except (LDAPError, ValueError, IndexError):
                continue
            grant = tx.get_by_ndn(self.d.normalize_dn(f"cn={escape_value(rdn_value)},{new.dn}"))
            if grant is None or norm(grant.first("rollcallGrantee") or b"") != gone:
                continue
            detail = {"reason": "member removed from the group", "grantee": value.decode("utf-8", "replace"),
                      "group": new.dn, "request": _text(grant.attrs, "rollcallGrantRequest")}
            internal_delete(self.d, tx, ident, grant, detail)
            tx.log(ident.ndn, ident.peer, "grantRevoked", grant.dn, grant.id, detail)

    def _create_account(self, tx, ident, old, new, dn, uid, target, expiry, now, detail):
        a = old.attrs
        schema = self.d.schema
        classes = [b"top", b"person", b"organizationalPerson", b"inetOrgPerson"]
        if schema.objectclass("eduPerson") is not None:
            classes.append(b"eduPerson")
        classes += [b"rollcallAccount", b"rollcallNonEmployee"]
        sponsor = a.get("rollcallSponsor") or [(ident.dn or self.d.root_dn).encode()]
        dups = [v.split(b" by ", 1)[1] for v in a.get("description", []) if v.startswith(b"flag: duplicate mail")]
        attrs = {
            "objectClass": classes, "uid": [uid.encode()], "cn": a["cn"], "givenName": a["givenName"],
            "sn": a["sn"], "mail": a["mail"], "departmentNumber": [target.code.encode()],
            "rollcallAccountStatus": [b"PENDING"], "rollcallStatusSource": [b"ADMIN"],
            "rollcallActivationState": [b"NOT_ACTIVATED"], "rollcallExpiry": [expiry],
            "rollcallNonEmployeeKind": a["rollcallNonEmployeeKind"],
            "rollcallOrganization": a["rollcallOrganization"], "rollcallSponsor": sponsor,
            "description": [f"Created by access request {self.number_of(old)}".encode()],
        }
        if schema.objectclass("eduPerson") is not None:
            attrs["eduPersonAffiliation"] = [b"affiliate"]
            attrs["eduPersonPrimaryAffiliation"] = [b"affiliate"]
        if a.get("telephoneNumber"):
            attrs["telephoneNumber"] = a["telephoneNumber"]
        if dups:
            attrs["seeAlso"] = dups  # the same person's other identity (dual capacity)
        internal_add(self.d, tx, ident, dn, attrs, {"request": new.dn, "grant": "nonEmployeeAccount"})

    def grant(self, tx, ident, grantee, group, request_dn, expiry, now, detail):
        """Make `grantee` a member of `group` and record the grant beneath the group."""
        group = tx.get(group.id)
        if self.d.normalize_dn(grantee.dn) not in self._member_ndns(group):
            attrs = group.copy_attrs()
            attrs["member"] = attrs.get("member", []) + [grantee.dn.encode()]
            internal_replace(self.d, tx, ident, group, attrs,
                           {"changes": ["add:member"], "member": grantee.dn, **detail})
        rdn_value = _text(grantee.attrs, "uid") or DN.parse(grantee.dn).rdn[0][1]
        grant_dn = f"cn={escape_value(rdn_value)},{group.dn}"
        attrs = {"objectClass": [b"top", b"rollcallGrant"], "cn": [rdn_value.encode()],
                 "rollcallGrantee": [grantee.dn.encode()], "rollcallGrantGroup": [group.dn.encode()],
                 "rollcallGrantedBy": [(ident.dn or "").encode()], "rollcallGrantedAt": [now],
                 "rollcallGrantRequest": [request_dn.encode()]}
        if expiry:
            attrs["rollcallGrantExpiry"] = [expiry]
        existing = tx.get_by_ndn(self.d.normalize_dn(grant_dn))
        if existing is not None:
            keep = {k: v for k, v in existing.attrs.items() if k in ("entryUUID", "creatorsName", "createTimestamp",
                                                                      "structuralObjectClass")}
            internal_replace(self.d, tx, ident, existing, {**attrs, **keep}, {"grant": "renewed", **detail})
        else:
            internal_add(self.d, tx, ident, grant_dn, attrs, {"grant": "role", **detail})


# ----------------------------------------------------------------------------
# the scheduled job


def expire(d, ident, now: float | None = None, dry_run: bool = False) -> dict:
    """Remove expired grants, disable expired non-employee accounts, expire stale PENDING
    requests. One transaction; each change has its audit entry (who = `ident`)."""
    ov = next((o for o in d.overlays if isinstance(o, RequestsOverlay)), None) or RequestsOverlay(d)
    now = time.time() if now is None else now
    stamp = gentime(now)
    report = {"grants": [], "accounts": [], "requests": []}

    class DryRun(Exception):
        pass

    try:
        with d.store.transaction() as tx:
            # 1. grants past rollcallGrantExpiry: leave the group, the grant record goes
            for i in sorted(tx.index_eq("objectclass", "rollcallgrant")):
                g = tx.get(i)
                t = parse_time(g.first("rollcallGrantExpiry")) if g else None
                if t is None or t > now:
                    continue
                grantee = _text(g.attrs, "rollcallGrantee")
                group = tx.get_by_ndn(d.normalize_dn(_text(g.attrs, "rollcallGrantGroup")))
                detail = {"reason": "grant expired", "grantee": grantee,
                          "request": _text(g.attrs, "rollcallGrantRequest"),
                          "expiry": _text(g.attrs, "rollcallGrantExpiry")}
                if group is not None:
                    gndn = d.normalize_dn(grantee)
                    attrs = group.copy_attrs()
                    attrs["member"] = [v for v in attrs.get("member", []) if ov.d.memberof._norm(v) != gndn]
                    if len(attrs["member"]) != len(group.attrs.get("member", [])):
                        if not attrs["member"]:
                            # groupOfNames MUST have a member: name the group's parent (the site
                            # or application), as the empty groups of the district do
                            attrs["member"] = [str(DN.parse(group.dn).parent()).encode()]
                        internal_replace(d, tx, ident, group, attrs, {"changes": ["delete:member"], **detail})
                internal_delete(d, tx, ident, g, detail)
                tx.log(ident.ndn, ident.peer, "grantExpired", g.dn, g.id, detail)
                report["grants"].append((grantee, group.dn if group else None))
            # 2. non-employee accounts past rollcallExpiry: DISABLED (kept, with the reason)
            for i in sorted(tx.index_eq("objectclass", "rollcallnonemployee")):
                e = tx.get(i)
                t = parse_time(e.first("rollcallExpiry")) if e else None
                if t is None or t > now or d.account_status(e) == "DISABLED":
                    continue
                attrs = e.copy_attrs()
                attrs.update({"rollcallAccountStatus": [b"DISABLED"], "rollcallStatusSource": [b"ADMIN"],
                              "rollcallDeactivationReason": [f"Expired on {_text(e.attrs, 'rollcallExpiry')}".encode()],
                              "rollcallDeactivatedBy": [ident.dn.encode()], "rollcallDeactivatedAt": [stamp]})
                internal_replace(d, tx, ident, e, attrs, {"changes": ["replace:rollcallAccountStatus"],
                                                        "reason": "account expired"})
                tx.log(ident.ndn, ident.peer, "accountExpired", e.dn, e.id,
                       {"expiry": _text(e.attrs, "rollcallExpiry")})
                report["accounts"].append(e.dn)
            # 3. requests nobody decided in time
            if "eq" in d.index_kinds("rollcallRequestStatus"):
                ids = tx.index_eq("rollcallrequeststatus", d.index_key(d.schema.normalize("rollcallRequestStatus", b"PENDING")))
            else:
                ids = tx.index_eq("objectclass", "rollcallrequest")
            limit = now - ov.pending_days * 86400
            for i in sorted(ids):
                r = tx.get(i)
                if r is None or _text(r.attrs, "rollcallRequestStatus", "").upper() != "PENDING":
                    continue
                created = parse_time(r.first("createTimestamp"))
                if created is None or created > limit:
                    continue
                attrs = r.copy_attrs()
                attrs["rollcallRequestStatus"] = [b"EXPIRED"]
                attrs["rollcallDecidedBy"] = [ident.dn.encode()]
                attrs["rollcallDecidedAt"] = [stamp]
                attrs["rollcallDecisionReason"] = [f"Not decided within {ov.pending_days} days".encode()]
                internal_replace(d, tx, ident, r, attrs, {"changes": ["replace:rollcallRequestStatus"],
                                                        "reason": "request expired"})
                report["requests"].append(r.dn)
            if dry_run:
                raise DryRun()
    except DryRun:
        pass
    return report
