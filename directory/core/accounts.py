"""Account rules (rollcallAccount), as an overlay, and the Rollcall account extended
operation. Every front end obeys the same rules: ldapmodify, the `rollcall account`
commands, the web console and the sync jobs.

Status changes (rollcallAccountStatus: ENABLED | DISABLED | PENDING), checked in
every modify by anyone but the root DN:

  ENABLED -> DISABLED   deactivation. Needs rollcallDeactivationReason and (from a
                        person; a service such as the SIS sync may omit it)
                        rollcallDeactivationReference in the same modify. The server
                        sets rollcallStatusSource (ADMIN, or SYNC for identities under
                        ou=services), rollcallDeactivatedBy and rollcallDeactivatedAt.
                        Only an ENABLED account can be deactivated by a person (a
                        service may also disable a PENDING one, e.g. a withdrawal).
  DISABLED -> ENABLED   re-activation: a separate, audited action of the same
                        administrators. A service never re-enables an account a person
                        disabled (rollcallStatusSource ADMIN, or none recorded): sync
                        cannot undo a sub-administrator's decision. The deactivation
                        fields are cleared from the entry; the audit log keeps them
                        (op accountReactivated).
  DISABLED -> PENDING   re-activation (same rules) of an account that was never
                        activated (rollcallActivationState NOT_ACTIVATED): it has no
                        password, so it returns to PENDING; DISABLED -> ENABLED is
                        refused for it.
  PENDING -> ENABLED    only by the holder's activation (below), never by a modify.
  anything else -> PENDING   refused.
  The deactivation fields and rollcallStatusSource change only with the status.

Extended operation RollcallAccountOp, OID RollcallExop.1
(2.25.69814933526364736177629039217756273497.4.1). The request value is a UTF-8 JSON
object with an "action"; the response value is a JSON object (and the responseName is
the OID). Errors are ordinary LDAP result codes with a diagnostic message.

  {"action": "create", "employeeNumber": "000123s123"}
        A site's sub-administrator creates the account of a new enrollee whose SIS
        record (ou=sis) exists but has no account yet. Refused when there is no SIS
        record (noSuchObject), the student is not in the caller's cost centers
        (insufficientAccessRights: the caller must be able to read the SIS record and
        write an account carrying its school codes), or an account exists
        (entryAlreadyExists). The account is PENDING; its uid comes from the sync's
        username rules (directory/district/usernames.py; config.yaml
        sync.username.pattern / max_length) and is added to the sync's record of
        issued names (ou=usernames,ou=sis: never given to anyone else); the SIS
        record's rollcallLinkedAccount names it, and a one-time activation code is
        issued. Answer: {"dn", "uid", "mail", "cn", "status", "activationCode",
        "activationCodeExpiry"}.
  {"action": "issue-codes", "accounts": [uid or DN, ...], "keepValid": false}
        New one-time activation codes for PENDING accounts the caller may write
        (rollcallActivationCodeHash), or, for a non-employee account, that the
        caller approved (the approver of the access request that created it, as
        core/requests.py approves_account decides); each replaces the account's
        earlier code. With "keepValid": true an account whose code has not expired
        keeps it (codes already handed out stay valid) and gets no new one.
        Answer: {"codes": [{"uid", "dn", "code", "expiry"} | {"uid", "dn", "valid": true,
        "issued", "expiry"} | {"account", "error"}]}.
  {"action": "activate", "uid": "...", "code": "XXXX-XXXX", "newPassword": "..."}
        Anonymous: a PENDING account's holder proves who they are with the code
        handed out by the school and chooses a password: the account becomes ENABLED
        and ACTIVATED, the code is deleted. Rate-limited per source address and per
        account; an account's code is revoked after `activation_max_failures` wrong
        attempts (the school prints a new one). Answer: {"dn", "uid", "status"}.

Codes are 8 symbols from an alphabet without look-alikes (XXXX-XXXX, 40 bits), stored
only as a hash (the configured password scheme) in rollcallActivationCodeHash, with
rollcallActivationCodeExpiry (`accounts.activation_code_days`, default 30).

Config (optional `accounts:` section in config.yaml; the username pattern, max length
and student mail domain are read from the `sync:` section first, so both agree):
    username_pattern: "{first:1}{last}"     student_mail_domain: students.<suffix's dc parts>
    activation_code_days: 30                activation_max_failures: 5
    activation_source_limit: 20             activation_source_window: 3600
"""
import json
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from ..district.gentime import gentime, now_generalized, parse_time
from ..district.ids import DISTRICT_ID
from ..district.statuses import ACCOUNT_STATUSES
from ..district.usernames import base_name
from ..district.usernames import candidates as username_candidates
from .acl import Level
from .dn import escape_value
from .entry import Entry
from .errors import LDAPError, ResultCode
from .identity import Identity
from .overlay import Overlay
from .ppolicy import PreparedPasswords
from .requests import RequestsOverlay
from .operation import internal_add, internal_replace, operation

ACCOUNT_EXOP = "2.25.69814933526364736177629039217756273497.4.1"
STATUSES = ACCOUNT_STATUSES
DEACTIVATION = ("rollcallDeactivationReason", "rollcallDeactivationReference",
                "rollcallDeactivatedBy", "rollcallDeactivatedAt")
STATUS_FIELDS = DEACTIVATION + ("rollcallStatusSource",)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_RE = re.compile(r"^[A-Z2-9]{4}-?[A-Z2-9]{4}$")
ACTIVATION_FAILED = ("activation failed: wrong username or activation code, or the code was used, "
                     "revoked or has expired; ask your school for a new code")


def _text(entry_or_attrs, name, default=None):
    attrs = entry_or_attrs.attrs if isinstance(entry_or_attrs, Entry) else entry_or_attrs
    values = attrs.get(name)
    return values[0].decode("utf-8", "replace") if values else default


def _refuse(message, code=ResultCode.UNWILLING_TO_PERFORM):
    raise LDAPError(code, message)


def _scalar(req: dict, key: str) -> str:
    """A string field of the account operation's JSON request ('' when absent). A
    number or boolean is taken as its text, as before; an array or object (which
    str() would render, however deeply nested) or text that is not UTF-8 (a lone
    surrogate escape, "\\ud800") is a protocolError."""
    v = req.get(key, "")
    if isinstance(v, (list, dict)):
        raise LDAPError(ResultCode.PROTOCOL_ERROR, f"account operation: {key!r} must be a string")
    return _utf8_text(str(v), key)


def _utf8_text(v: str, key: str) -> str:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise LDAPError(ResultCode.PROTOCOL_ERROR, f"account operation: {key!r} is not valid UTF-8") from None
    return v


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(code: str) -> str | None:
    c = re.sub(r"\s", "", str(code or "")).upper()
    if not CODE_RE.match(c):
        return None
    return c if "-" in c else f"{c[:4]}-{c[4:]}"


def accounts_of(directory) -> "AccountsOverlay":
    ov = next((o for o in directory.overlays if isinstance(o, AccountsOverlay)), None)
    if ov is None:
        _refuse("account operations are not enabled on this server")
    return ov


class AccountsOverlay(Overlay):
    def __init__(self, directory):
        super().__init__(directory)
        d = directory
        cfg = d.config.section("accounts")  # checked by directory/config.py; the sync's username rules
        suffix = d.suffix                   # (config.yaml sync.username) first, so both make the same names
        self.pattern = cfg["username_pattern"]
        self.max_length = cfg["username_max_length"]
        self.mail_domain = cfg["student_mail_domain"]
        self.usernames_dn = f"ou=usernames,ou=sis,{suffix}"  # the sync's record of issued names
        self.code_days = float(cfg["activation_code_days"])
        self.max_failures = cfg["activation_max_failures"]
        self.source_limit = cfg["activation_source_limit"]
        self.source_window = float(cfg["activation_source_window"])
        self.people_ndn = d.normalize_dn(f"ou=people,{suffix}")
        self.students_dn = f"ou=students,ou=people,{suffix}"
        self.sis_ndn = d.normalize_dn(f"ou=sis,{suffix}")
        self.services_ndn = d.normalize_dn(f"ou=services,{suffix}")

    # ------------------------------------------------------------------ helpers
    def is_account(self, entry) -> bool:
        return "rollcallaccount" in self.d.objectclass_closure(entry) or "rollcallAccountStatus" in entry.attrs

    def is_service(self, ident) -> bool:
        return ident.ndn.endswith("," + self.services_ndn)

    @staticmethod
    def _status(attrs) -> str:
        return (_text(attrs, "rollcallAccountStatus") or "ENABLED").strip().upper()

    def _key(self, attr, value: str) -> str:
        return self.d.index_key(self.d.schema.normalize(attr, value.encode()))

    def _find_in(self, tx, attr, value, under_ndn) -> list:
        if "eq" not in self.d.index_kinds(attr):
            _refuse(f"{attr} is not indexed (config.yaml indexes)", ResultCode.UNWILLING_TO_PERFORM)
        out = []
        for i in sorted(tx.index_eq(attr.lower(), self._key(attr, value))):
            e = tx.get(i)
            if e is not None and e.ndn.endswith("," + under_ndn):
                out.append(e)
        return out

    # ------------------------------------------------------------------ overlay hooks
    def before_add(self, tx, ident, entry):
        if "rollcallAccountStatus" not in entry.attrs:
            return
        status = self._status(entry.attrs)
        if status not in STATUSES:
            _refuse(f"rollcallAccountStatus must be one of {', '.join(STATUSES)}", ResultCode.CONSTRAINT_VIOLATION)
        entry.attrs["rollcallAccountStatus"] = [status.encode()]

    def before_modify(self, tx, ident, old, new):
        if not self.is_account(old) and not self.is_account(new):
            return
        if operation(tx, ident).notes.pop(("activating", old.id), False):
            return  # the activation's own status change (PENDING -> ENABLED)
        attrs = new.attrs
        if "rollcallAccountStatus" in attrs:
            status = self._status(attrs)
            if status not in STATUSES:
                _refuse(f"rollcallAccountStatus must be one of {', '.join(STATUSES)}",
                        ResultCode.CONSTRAINT_VIOLATION)
            attrs["rollcallAccountStatus"] = [status.encode()]
        if ident.is_root:
            return  # the root DN bypasses the rules, as in slapd
        old_status, status = self._status(old.attrs), self._status(attrs)
        if old_status == status:
            changed = [n for n in STATUS_FIELDS if old.attrs.get(n) != attrs.get(n)]
            if changed:
                _refuse(f"{', '.join(changed)}: written by the server together with a change of "
                        "rollcallAccountStatus (deactivate: status DISABLED with a reason and a reference)",
                        ResultCode.CONSTRAINT_VIOLATION)
            return
        service = self.is_service(ident)
        who = ident.dn.encode()
        now = gentime(time.time())
        never_activated = (_text(old.attrs, "rollcallActivationState") or "").upper() == "NOT_ACTIVATED"
        if status == "DISABLED":
            if old_status != "ENABLED" and not (service and old_status == "PENDING"):
                _refuse(f"the account {old.dn} is {old_status}: only an ENABLED account can be deactivated")
            reason = (_text(attrs, "rollcallDeactivationReason") or "").strip()
            reference = (_text(attrs, "rollcallDeactivationReference") or "").strip()
            if not reason:
                _refuse("deactivation needs a reason (rollcallDeactivationReason)", ResultCode.CONSTRAINT_VIOLATION)
            if not reference and not service:
                _refuse("deactivation needs a reference, e.g. the signed form's number "
                        "(rollcallDeactivationReference)", ResultCode.CONSTRAINT_VIOLATION)
            attrs["rollcallStatusSource"] = [b"SYNC" if service else b"ADMIN"]
            attrs["rollcallDeactivatedBy"] = [who]
            attrs["rollcallDeactivatedAt"] = [now]
            tx.log(ident.ndn, ident.peer, "accountDeactivated", old.dn, old.id,
                   {"reason": reason, "reference": reference, "previous": old_status})
        elif status == "ENABLED" or (status == "PENDING" and old_status == "DISABLED" and never_activated):
            if old_status == "PENDING":
                _refuse(f"the account {old.dn} is PENDING: it becomes ENABLED when its holder activates it "
                        "(activation code from the school)")
            if status == "ENABLED" and never_activated:
                # it has no password yet: ENABLED would be an account nobody can use
                _refuse(f"the account {old.dn} was never activated: it is re-activated as PENDING "
                        "(a new activation code from the school), not ENABLED")
            source = (_text(old.attrs, "rollcallStatusSource") or "ADMIN").upper()
            if service and source != "SYNC":
                _refuse(f"the account {old.dn} was disabled by an administrator "
                        f"({_text(old.attrs, 'rollcallDeactivationReason', 'no reason recorded')}, "
                        f"{_text(old.attrs, 'rollcallDeactivationReference', 'no reference')}): "
                        "a sync never re-enables it; its school's administrators re-activate it")
            detail = {n: _text(old.attrs, n) for n in DEACTIVATION if old.attrs.get(n)}
            for n in DEACTIVATION:
                attrs.pop(n, None)
            attrs["rollcallStatusSource"] = [b"SYNC" if service else b"ADMIN"]
            tx.log(ident.ndn, ident.peer, "accountReactivated", old.dn, old.id,
                   {"previous": old_status, "previousSource": source, **detail})
        else:
            _refuse(f"an account cannot go back to PENDING (it is {old_status})")

    def before_rename(self, tx, ident, old, new):
        # a multi-valued RDN can add or drop attribute values: the status and its
        # fields change only by a modify, where the transition rules above apply
        if ident.is_root or not (self.is_account(old) or self.is_account(new)):
            return
        changed = [n for n in ("rollcallAccountStatus",) + STATUS_FIELDS if old.attrs.get(n) != new.attrs.get(n)]
        if changed:
            _refuse(f"{', '.join(changed)}: cannot be changed by a rename (use a modify)",
                    ResultCode.NOT_ALLOWED_ON_RDN)

    # ------------------------------------------------------------------ extended operation
    def extended(self, ident, value: bytes | None) -> bytes:
        try:
            req = json.loads((value or b"").decode("utf-8"))
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except RecursionError:  # deeply nested arrays/objects: json's parser recurses per level
            raise LDAPError(ResultCode.PROTOCOL_ERROR, "account operation: the request value is nested "
                                                       "too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise LDAPError(ResultCode.PROTOCOL_ERROR, f"account operation: the request value must be a "
                                                       f"JSON object ({exc})") from None
        action = _scalar(req, "action")
        if action == "activate":
            out = self.activate(ident, _scalar(req, "uid"), _scalar(req, "code"),
                                _scalar(req, "newPassword").encode())
        else:
            self.d.usable(ident)
            if ident.anonymous:
                _refuse(f"account operation {action!r}: bind first", ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
            if action == "create":
                out = self.create(ident, _scalar(req, "employeeNumber"))
            elif action == "issue-codes":
                targets = req.get("accounts")
                if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                    raise LDAPError(ResultCode.PROTOCOL_ERROR, "issue-codes: 'accounts' is a list of uids or DNs")
                for t in targets:
                    _utf8_text(t, "accounts")
                keep = req.get("keepValid", False)
                if not isinstance(keep, bool):
                    raise LDAPError(ResultCode.PROTOCOL_ERROR, "issue-codes: 'keepValid' is true or false")
                out = self.issue_codes(ident, targets, keep_valid=keep)
            else:
                raise LDAPError(ResultCode.PROTOCOL_ERROR,
                                f"account operation: unknown action {action!r} (create, issue-codes, activate)")
        return json.dumps(out, ensure_ascii=False).encode("utf-8")

    def _hash_codes(self, n: int) -> list:
        """n fresh (code, hash) pairs; hashing runs in parallel (argon2 releases the GIL)."""
        codes = [new_code() for _ in range(n)]
        if n <= 1:
            return [(c, self.d.hasher.hash(c.encode())) for c in codes]
        threads = max(1, min(n, int(getattr(self.d.config, "hash_threads", 4) or 4)))
        with ThreadPoolExecutor(threads) as pool:
            hashes = list(pool.map(lambda c: self.d.hasher.hash(c.encode()), codes))
        return list(zip(codes, hashes))

    def _code_expiry(self) -> bytes:
        return gentime(time.time() + self.code_days * 86400)

    # -- create the account of a new enrollee
    def create(self, ident, district_id: str) -> dict:
        did = district_id.strip()
        if not DISTRICT_ID.match(did):
            _refuse(f"{did!r} is not a district ID (10 characters, e.g. 000123s456)",
                    ResultCode.INVALID_ATTRIBUTE_SYNTAX)
        [(code, code_hash)] = self._hash_codes(1)
        d = self.d
        with d.store.transaction() as tx:
            records = self._find_in(tx, "employeeNumber", did, self.sis_ndn)
            if not records:
                _refuse(f"no SIS record for district ID {did}: the student must be enrolled in the SIS "
                        "first (the next import brings the record)", ResultCode.NO_SUCH_OBJECT)
            rec = records[0]
            codes = [v.decode() for v in rec.attrs.get("departmentNumber", [])]
            given, sn = _text(rec, "givenName", ""), _text(rec, "sn", "")
            # scope: the caller reads the SIS record and may write an account of its schools
            probe_attrs = {"objectClass": [b"top", b"inetOrgPerson", b"rollcallAccount", b"rollcallStudent"],
                           "departmentNumber": rec.attrs.get("departmentNumber", []),
                           "employeeNumber": [did.encode()]}
            probe = Entry(f"uid=new,{self.students_dn}", d.normalize_dn(f"uid=new,{self.students_dn}"),
                          probe_attrs, 0)
            # (issuing the new account's activation code is the right that creating it needs:
            # a school's sub-administrators hold it for their students only)
            if not ident.is_root and (d.acl.level(ident, rec, "entry") < Level.READ
                                      or d.acl.level(ident, probe, "rollcallActivationCodeHash") < Level.WRITE):
                mine = sorted(d.acl.site_roles(ident).get("student-email-admins", ()))
                _refuse(f"district ID {did} is not a student of your cost centers"
                        f" ({', '.join(mine) or 'none'})", ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
            existing = self._find_in(tx, "employeeNumber", did, self.people_ndn)
            linked = _text(rec, "rollcallLinkedAccount")
            if not existing and linked:
                e = tx.get_by_ndn(d.normalize_dn(linked))
                existing = [e] if e is not None else []
            if existing:
                e = existing[0]
                _refuse(f"district ID {did} already has an account: {_text(e, 'uid') or e.dn} "
                        f"({d.account_status(e)})", ResultCode.ENTRY_ALREADY_EXISTS)

            sid = _text(rec, "rollcallSisSourceId", "")
            uid, reserved = self._allocate(tx, given, sn, did, sid)
            dn = f"uid={escape_value(uid)},{self.students_dn}"
            mail = f"{uid}@{self.mail_domain}"
            classes = [b"top", b"person", b"organizationalPerson", b"inetOrgPerson"]
            eduperson = d.schema.objectclass("eduPerson") is not None
            if eduperson:
                classes.append(b"eduPerson")
            classes += [b"rollcallAccount", b"rollcallStudent"]
            expiry = self._code_expiry()
            attrs = {
                "objectClass": classes, "uid": [uid.encode()],
                "cn": rec.attrs.get("cn") or [f"{given} {sn}".strip().encode()],
                "sn": [sn.encode()] if sn else [uid.encode()], "mail": [mail.encode()],
                "employeeNumber": [did.encode()], "departmentNumber": rec.attrs.get("departmentNumber", []),
                "rollcallAccountStatus": [b"PENDING"], "rollcallStatusSource": [b"ADMIN"],
                "rollcallActivationState": [b"NOT_ACTIVATED"], "rollcallMustChangePassword": [b"TRUE"],
                "rollcallActivationCodeHash": [code_hash], "rollcallActivationCodeExpiry": [expiry],
                "rollcallPhotoStatus": [b"NONE"],
            }
            if given:
                attrs["givenName"] = [given.encode()]
            for name in ("rollcallGrade", "rollcallBirthDate", "rollcallSisSourceId", "rollcallEnrollmentStatus",
                         "rollcallEnrollmentDate"):
                if rec.attrs.get(name):
                    attrs[name] = list(rec.attrs[name])
            if eduperson:
                attrs["eduPersonAffiliation"] = [b"student"]  # as the sync writes it
                attrs["eduPersonPrimaryAffiliation"] = [b"student"]
            attrs = {k: v for k, v in attrs.items() if v}
            internal_add(d, tx, ident, dn, attrs, {"action": "createAccount", "sisRecord": rec.dn,
                                                 "employeeNumber": did, "activationCode": "issued"})
            if not reserved:
                self._record_name(tx, ident, uid, sid, dn)
            rec_attrs = rec.copy_attrs()
            rec_attrs["rollcallLinkedAccount"] = [dn.encode()]
            internal_replace(d, tx, ident, rec, rec_attrs, {"changes": ["replace:rollcallLinkedAccount"],
                                                          "action": "createAccount"})
        return {"dn": dn, "uid": uid, "mail": mail, "cn": _text(attrs, "cn"), "status": "PENDING",
                "schools": codes, "activationCode": code, "activationCodeExpiry": expiry.decode()}

    def _allocate(self, tx, given, sn, did, sid):
        """(uid, already reserved for this SIS person) by the sync's rules: the pattern,
        then base2, base3 … within max_length, skipping every uid in use and every name
        the sync has issued (a username is never given to another person)."""
        d = self.d
        base = base_name(self.pattern, given, sn, "", did, self.max_length)
        for cand in username_candidates(base, self.max_length):
            if "eq" in d.index_kinds("uid"):
                in_use = bool(tx.index_eq("uid", self._key("uid", cand)))
            else:
                in_use = tx.get_by_ndn(d.normalize_dn(f"uid={escape_value(cand)},{self.students_dn}")) is not None
            if in_use:
                continue
            issued = tx.get_by_ndn(d.normalize_dn(f"uid={escape_value(cand)},{self.usernames_dn}"))
            if issued is None:
                return cand, False
            if sid and _text(issued, "description", "") == f"sis:{sid}":
                return cand, True  # reserved for this very person by an earlier run
        raise AssertionError("unreachable")

    def _record_name(self, tx, ident, uid, sid, dn):
        """Add the name to the sync's issued-names record (ou=usernames,ou=sis)."""
        d = self.d
        if d.schema.objectclass("account") is None:
            return
        if tx.get_by_ndn(d.normalize_dn(self.usernames_dn)) is None:
            if tx.get_by_ndn(self.sis_ndn) is None:
                return
            internal_add(d, tx, ident, self.usernames_dn,
                       {"objectClass": [b"top", b"organizationalUnit"], "ou": [b"usernames"],
                        "description": [b"SIS sync: issued usernames (never reused)"]}, {"action": "createAccount"})
        attrs = {"objectClass": [b"top", b"account"], "uid": [uid.encode()], "seeAlso": [dn.encode()]}
        if sid:
            attrs["description"] = [f"sis:{sid}".encode()]
        internal_add(d, tx, ident, f"uid={escape_value(uid)},{self.usernames_dn}", attrs, {"action": "createAccount"})

    # -- (re)issue activation codes
    def _resolve_account(self, tx, ident, target: str):
        d = self.d
        if "=" in target:
            try:
                e = tx.get_by_ndn(d.normalize_dn(target))
            except LDAPError:
                e = None
            found = [e] if e is not None and e.ndn.endswith("," + self.people_ndn) else []
        else:
            found = self._find_in(tx, "uid", target, self.people_ndn)
        found = [e for e in found if d.visible(ident, e) or self._approver_of(tx, ident, e)]
        if len(found) != 1:
            raise LDAPError(ResultCode.NO_SUCH_OBJECT, f"no account {target!r} in your scope")
        return found[0]

    def _approver_of(self, reader, ident, e) -> bool:
        """The approver of the access request that created this (non-employee) account
        delivers its activation code (core/requests.py approves_account decides)."""
        ov = next((o for o in self.d.overlays if isinstance(o, RequestsOverlay)), None)
        return ov is not None and ov.approves_account(reader, ident, e)

    def _may_issue(self, reader, ident, target: str):
        e = self._resolve_account(reader, ident, target)
        if not self._approver_of(reader, ident, e):
            self.d.acl.check(ident, e, Level.WRITE, "rollcallActivationCodeHash")
        status = self.d.account_status(e)
        if status != "PENDING":
            _refuse(f"the account is {status}: activation codes are for PENDING accounts")
        return e

    def _valid_code(self, e):
        """(issued, expiry) of the account's code when it has one not yet expired, else
        None. The issue date is the expiry less activation_code_days."""
        if not e.attrs.get("rollcallActivationCodeHash"):
            return None
        expiry = parse_time(e.first("rollcallActivationCodeExpiry"))
        if expiry is None or expiry <= time.time():
            return None
        return gentime(expiry - self.code_days * 86400).decode(), gentime(expiry).decode()

    def issue_codes(self, ident, targets: list, keep_valid: bool = False) -> dict:
        d = self.d
        # the access decision first, on committed data: nothing is hashed for an account
        # the caller may not issue a code for (nor, with keep_valid, for one whose code is
        # still valid); then the hashes, before the write lock; then the transaction
        # decides again
        refused = {}
        kept = set()
        for target in targets:
            try:
                e = self._may_issue(d.store, ident, target)
                if keep_valid and self._valid_code(e):
                    kept.add(target)
            except LDAPError as exc:
                refused[target] = exc
        pairs = iter(self._hash_codes(len([t for t in targets if t not in refused and t not in kept])))
        out = []
        with d.store.transaction() as tx:
            for target in targets:
                try:
                    if target in refused:
                        raise refused[target]
                    e = self._may_issue(tx, ident, target)
                    valid = self._valid_code(e) if keep_valid else None
                    if valid:
                        out.append({"uid": _text(e, "uid"), "dn": e.dn, "valid": True,
                                    "issued": valid[0], "expiry": valid[1]})
                        continue
                    code, code_hash = next(pairs, None) or self._hash_codes(1)[0]
                    expiry = self._code_expiry()
                    attrs = e.copy_attrs()
                    attrs["rollcallActivationCodeHash"] = [code_hash]
                    attrs["rollcallActivationCodeExpiry"] = [expiry]
                    internal_replace(d, tx, ident, e, attrs,
                                   {"changes": ["replace:rollcallActivationCodeHash",
                                                "replace:rollcallActivationCodeExpiry"],
                                    "action": "issueActivationCode"})
                    out.append({"uid": _text(e, "uid"), "dn": e.dn, "code": code, "expiry": expiry.decode()})
                except LDAPError as exc:
                    out.append({"account": target, "error": exc.message or str(exc), "result": exc.code})
        return {"codes": out}

    # -- self-service activation
    def _host(self, ident) -> str:
        peer = ident.peer or "internal"
        return peer.rsplit(":", 1)[0] if ":" in peer else peer

    # Attempts are counted in the store's throttle file (store/throttle.py), shared by
    # every worker and kept across restarts. activate runs in the writer thread: the
    # reactor never waits for these (non-fsync) reads and inserts anyway.
    ACCOUNT_WINDOW = 86400  # wrong codes for one account are counted over a day

    def activate(self, ident, uid: str, code: str, new_password: bytes) -> dict:
        d = self.d
        host = self._host(ident)
        if self.source_limit and d.store.throttle_count("activate-src:" + host, self.source_window) \
                >= self.source_limit:
            _refuse("too many failed activation attempts from this address; try again later", ResultCode.BUSY)
        uid = uid.strip()
        norm = normalize_code(code)
        if not uid or not new_password:
            raise LDAPError(ResultCode.PROTOCOL_ERROR, "activate needs uid, code and newPassword")
        entry = None
        ok = False
        try:
            candidates = [e for e in (d.store.get(i) for i in d.store.index_eq("uid", self._key("uid", uid)))
                          if e is not None and e.ndn.endswith("," + self.people_ndn)] \
                if "eq" in d.index_kinds("uid") else []
            entry = candidates[0] if len(candidates) == 1 else None
            hashes = entry.attrs.get("rollcallActivationCodeHash", []) if entry is not None else []
            # verify even when there is nothing to verify against: no timing hint
            matched = d.verify_any((norm or "-").encode(), hashes or [d._decoy_hash()])
            if entry is None or not hashes or norm is None or matched is None:
                raise LDAPError(ResultCode.INVALID_CREDENTIALS, ACTIVATION_FAILED)
            if d.account_status(entry) != "PENDING":
                raise LDAPError(ResultCode.INVALID_CREDENTIALS, ACTIVATION_FAILED)
            ok = True  # the code was right: what follows is not guessing
            expiry = parse_time(entry.first("rollcallActivationCodeExpiry"))
            if expiry is not None and expiry <= time.time():
                _refuse("this activation code has expired; ask your school for a new one")
            result = self._complete_activation(ident, entry, hashes[0], new_password)
        except LDAPError:
            if not ok:
                self._activation_failed(host, entry, ident)
            raise
        d.store.throttle_clear("activate-acct:" + entry.ndn)
        return result

    def _complete_activation(self, ident, entry, code_hash, new_password: bytes) -> dict:
        d = self.d
        # the policy (history verifications) and the hash before the write lock; the
        # transaction checks the entry is as it was checked
        d.policy.check_quality(entry, new_password)
        new_hash = d.hasher.hash(new_password)
        state = PreparedPasswords.state_of(entry)
        actor = Identity(entry.dn, entry.ndn, False, ident.peer, ident.tls, entry.id)
        with d.store.transaction() as tx:
            e = tx.get(entry.id)
            if e is None or d.account_status(e) != "PENDING" or code_hash not in e.attrs.get(
                    "rollcallActivationCodeHash", []):
                raise LDAPError(ResultCode.INVALID_CREDENTIALS, ACTIVATION_FAILED)  # used meanwhile
            if PreparedPasswords.state_of(e) != state:
                d.policy.check_quality(e, new_password)  # rare: changed since; check the entry as it is
            attrs = e.copy_attrs()
            for name in ("rollcallActivationCodeHash", "rollcallActivationCodeExpiry", "pwdReset",
                         "pwdFailureTime", "pwdAccountLockedTime"):
                attrs.pop(name, None)
            history = d.policy.new_history(e)
            if history:
                attrs["pwdHistory"] = history
            attrs["userPassword"] = [new_hash]
            attrs["pwdChangedTime"] = [now_generalized()]
            attrs["rollcallAccountStatus"] = [b"ENABLED"]
            attrs["rollcallActivationState"] = [b"ACTIVATED"]
            attrs["rollcallMustChangePassword"] = [b"FALSE"]
            operation(tx, actor, "activate").notes[("activating", e.id)] = True
            internal_replace(d, tx, actor, e, attrs, {"changes": ["replace:userPassword",
                                                                "replace:rollcallAccountStatus"],
                                                    "action": "activate"})
            tx.log(actor.ndn, actor.peer, "accountActivated", e.dn, e.id, {"method": "activation code"})
        return {"dn": entry.dn, "uid": _text(entry, "uid"), "status": "ENABLED"}

    def _activation_failed(self, host, entry, ident):
        revoke = False
        store = self.d.store
        store.throttle_hit("activate-src:" + host, self.source_window)
        if entry is not None:
            failures = store.throttle_hit("activate-acct:" + entry.ndn, self.ACCOUNT_WINDOW)
            if self.max_failures and failures >= self.max_failures:
                revoke = True
                store.throttle_clear("activate-acct:" + entry.ndn)
        if revoke and entry.attrs.get("rollcallActivationCodeHash"):
            # too many wrong codes for this account: the code is burnt, the school prints a new one
            with self.d.store.transaction() as tx:
                e = tx.get(entry.id)
                if e is not None and e.attrs.get("rollcallActivationCodeHash"):
                    attrs = e.copy_attrs()
                    attrs.pop("rollcallActivationCodeHash", None)
                    attrs.pop("rollcallActivationCodeExpiry", None)
                    internal_replace(self.d, tx, ident, e, attrs,
                                   {"changes": ["delete:rollcallActivationCodeHash"],
                                    "action": "activationCodeRevoked",
                                    "reason": f"{self.max_failures} wrong activation attempts"})
