"""Student ID photos, the server's rules: an overlay on ou=staged-photos.

The rules live in the directory, so ldapmodify, the command line, the web console
and any other client obey the same ones:

  * A staged photo is the entry `employeeNumber=<district ID>,ou=staged-photos,<suffix>`
    (objectClass rollcallStagedPhoto, schema/rollcall-photos.schema) holding the JPEG
    in jpegPhoto. config.yaml's access rules let a site's principals, photo designees
    and photo vendors write the staged photos whose departmentNumber is their site's.
  * `PhotoOverlay` (inside the write's transaction) decodes the JPEG with Pillow and
    refuses it unless it is a JPEG of 15-30 KB, 175x233 or larger with the same 3:4
    aspect (directory/district/photos.py); finds the student by district ID (refusing
    an unknown one); sets departmentNumber to the student's schools and checks the
    uploader's access again with them (so claiming another site does not help);
    refuses a vendor whose grant (rollcallGrant beneath cn=photo-vendors) has expired
    even before the expiry job removed them from the group; records uploader, time,
    student and a SHA-256 digest (the client cannot set those); marks the student
    STAGED when it has no published photo; refuses renames (which would move a photo
    to another student without those checks).
  * jpegPhoto/rollcallPhotoStatus/rollcallPhotoDate on the students are written by
    the publish job's identity only (cn=photo-publisher,ou=services or the root DN).

The clients (upload, publish, roster over ldap3) are directory/photos_client.py.
"""
from __future__ import annotations

import hashlib
import time

from ..district.gentime import now_generalized, parse_gentime
from ..district.ids import DISTRICT_ID
from ..district.photos import CONTAINER, STUDENTS, PhotoError, check_photo
from .acl import Level
from .entry import Entry
from .errors import LDAPError, ResultCode
from .operation import internal_replace
from .overlay import Overlay


class PhotoOverlay(Overlay):
    def __init__(self, directory):
        super().__init__(directory)
        d = directory
        self.container_ndn = d.normalize_dn(f"{CONTAINER},{d.suffix}")
        self.students_ndn = d.normalize_dn(f"{STUDENTS},{d.suffix}")
        self.sites_ndn = d.normalize_dn(f"ou=sites,{d.suffix}")

    # -- helpers
    def is_staged(self, ndn: str) -> bool:
        return ndn.endswith("," + self.container_ndn) and ndn.count(",") == self.container_ndn.count(",") + 1

    def _refuse(self, code, message):
        raise LDAPError(code, message)

    def find_student(self, tx, district_id: str):
        d = self.d
        if "eq" not in d.index_kinds("employeeNumber"):
            self._refuse(ResultCode.UNWILLING_TO_PERFORM, "photos need an equality index on employeeNumber")
        key = d.index_key(d.schema.normalize("employeeNumber", district_id.encode()))
        found = []
        for i in tx.index_eq("employeenumber", key):
            e = tx.get(i)
            if e is not None and e.ndn.endswith("," + self.students_ndn):
                found.append(e)
        if not found:
            self._refuse(ResultCode.UNWILLING_TO_PERFORM, f"unknown district ID {district_id}")
        if len(found) > 1:
            self._refuse(ResultCode.UNWILLING_TO_PERFORM,
                         f"district ID {district_id} names {len(found)} students: ask the district to fix it")
        return found[0]

    def _check_uploader(self, tx, ident, entry, student):
        """Judge the staged entry as belonging to the student's schools: the access
        rules (site-group=…) decide, then a vendor's grant must not have expired."""
        d = self.d
        entry.attrs["departmentNumber"] = list(student.attrs.get("departmentNumber", []))
        entry.keys.clear()  # cached site codes of the client's departmentNumber
        district_id = student.text("employeeNumber")
        if not entry.attrs["departmentNumber"]:
            self._refuse(ResultCode.UNWILLING_TO_PERFORM, f"student {district_id} has no school")
        # a new entry has no id yet, and the rules read an id-less entry as the root DSE
        probe = Entry(entry.dn, entry.ndn, entry.attrs, entry.id if entry.id is not None else 0)
        if d.acl.level(ident, probe, "entry") < Level.WRITE:
            self._refuse(ResultCode.INSUFFICIENT_ACCESS_RIGHTS,
                         f"student {district_id} is not at a site you may upload photos for")
        if ident.is_root:
            return
        codes = d.acl.site_codes(probe)
        roles = d.acl.site_roles(ident)
        if codes & (roles.get("principals", set()) | roles.get("photo-designees", set())):
            return
        vendor_codes = sorted(codes & roles.get("photo-vendors", set()))
        if not vendor_codes:
            return  # admitted by another rule (publisher, district administrators)
        expired = []
        me = tx.get(ident.entry_id) if ident.entry_id is not None else None
        uid = me.text("uid") if me is not None else None
        for code in vendor_codes:
            grant = tx.get_by_ndn(d.normalize_dn(
                f"cn={uid},cn=photo-vendors,ou={code},{self.sites_ndn}")) if uid else None
            if grant is None or d.normalize_dn(grant.text("rollcallGrantee", "")) != ident.ndn:
                return  # a member without a grant record (granted by hand): membership decides
            t = parse_gentime(grant.first("rollcallGrantExpiry")) if grant.first("rollcallGrantExpiry") else None
            if t is None or t > time.time():
                return
            expired.append(f"{code} (expired {grant.text('rollcallGrantExpiry')})")
        self._refuse(ResultCode.INSUFFICIENT_ACCESS_RIGHTS,
                     "your photo vendor grant has ended for " + ", ".join(expired))

    def _stage(self, tx, ident, entry, old=None):
        attrs = entry.attrs
        ids = attrs.get("employeeNumber", [])
        district_id = ids[0].decode("utf-8", "replace") if len(ids) == 1 else ""
        if len(ids) != 1 or not DISTRICT_ID.match(district_id):
            self._refuse(ResultCode.CONSTRAINT_VIOLATION,
                         "a staged photo has one employeeNumber: the 10-character district ID")
        photos = attrs.get("jpegPhoto", [])
        if len(photos) != 1:
            self._refuse(ResultCode.CONSTRAINT_VIOLATION, "a staged photo has exactly one jpegPhoto value")
        student = self.find_student(tx, district_id)
        self._check_uploader(tx, ident, entry, student)
        changed = old is None or old.attrs.get("jpegPhoto") != photos
        if changed:
            try:
                check_photo(photos[0])
            except PhotoError as exc:
                self._refuse(ResultCode.CONSTRAINT_VIOLATION, f"{district_id}: {exc}")
            attrs["rollcallPhotoUploadedBy"] = [(ident.dn or "").encode()]
            attrs["rollcallPhotoUploadedAt"] = [now_generalized()]
            attrs["rollcallPhotoDigest"] = [hashlib.sha256(photos[0]).hexdigest().encode()]
        else:  # server-set values stay as they were
            for name in ("rollcallPhotoUploadedBy", "rollcallPhotoUploadedAt", "rollcallPhotoDigest"):
                if name in old.attrs:
                    attrs[name] = list(old.attrs[name])
        attrs["rollcallPhotoStudent"] = [student.dn.encode()]
        return student

    def _set_student_status(self, tx, ident, student, status: bytes, reason: str):
        """STAGED/NONE on the student (rollcallStudent only), inside the transaction."""
        classes = {v.lower() for v in student.attrs.get("objectClass", [])}
        if b"rollcallstudent" not in classes:
            return
        if student.first("rollcallPhotoStatus", b"").upper() == status:
            return
        attrs = student.copy_attrs()
        attrs["rollcallPhotoStatus"] = [status]
        internal_replace(self.d, tx, ident, student, attrs,
                         {"changes": ["replace:rollcallPhotoStatus"], "value": status.decode(), "reason": reason})

    # -- hooks
    def before_add(self, tx, ident, entry):
        if self.is_staged(entry.ndn):
            self._stage(tx, ident, entry)

    def after_add(self, tx, ident, entry):
        if self.is_staged(entry.ndn):
            student = tx.get_by_ndn(self.d.normalize_dn(entry.text("rollcallPhotoStudent")))
            if student is not None and student.first("rollcallPhotoStatus", b"NONE").upper() != b"PUBLISHED":
                self._set_student_status(tx, ident, student, b"STAGED", f"photo staged: {entry.dn}")

    def before_modify(self, tx, ident, old, new):
        if self.is_staged(new.ndn):
            self._stage(tx, ident, new, old)

    def after_delete(self, tx, ident, entry):
        if not self.is_staged(entry.ndn):
            return
        dn = entry.text("rollcallPhotoStudent")
        student = tx.get_by_ndn(self.d.normalize_dn(dn)) if dn else None
        if student is not None and student.first("rollcallPhotoStatus", b"").upper() == b"STAGED":
            self._set_student_status(tx, ident, student, b"PUBLISHED" if student.first("jpegPhoto") else b"NONE",
                                     f"staged photo withdrawn: {entry.dn}")

    def after_rename(self, tx, ident, old, new, moved):
        for old_ndn, new_ndn, _dn in moved:
            if any(n == self.container_ndn or n.endswith("," + self.container_ndn) for n in (old_ndn, new_ndn)):
                self._refuse(ResultCode.UNWILLING_TO_PERFORM,
                             "staged photos cannot be renamed or moved: upload the photo again")
