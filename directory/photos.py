"""Student ID photos: validation, staging (server rules), upload, publish and roster.

The rules live in the directory, so ldapmodify, the command line and any other
client obey the same ones:

  * A staged photo is the entry `employeeNumber=<district ID>,ou=staged-photos,<suffix>`
    (objectClass rollcallStagedPhoto, schema/rollcall-photos.schema) holding the JPEG
    in jpegPhoto. config.yaml's access rules let a site's principals, photo designees
    and photo vendors write the staged photos whose departmentNumber is their site's.
  * `PhotoOverlay` (inside the write's transaction) decodes the JPEG with Pillow and
    refuses it unless it is a JPEG of 15-30 KB, 175x233 or larger with the same 3:4
    aspect; finds the student by district ID (refusing an unknown one); sets
    departmentNumber to the student's schools and checks the uploader's access
    again with them (so claiming another site does not help); refuses a vendor whose
    grant (rollcallGrant beneath cn=photo-vendors) has expired even before the
    expiry job removed them from the group; records uploader, time, student and a
    SHA-256 digest (the client cannot set those); marks the student STAGED when it
    has no published photo; refuses renames (which would move a photo to another
    student without those checks).
  * jpegPhoto/rollcallPhotoStatus/rollcallPhotoDate on the students are written by
    the publish job's identity only (cn=photo-publisher,ou=services or the root DN).

The client side (LDAP clients with ldap3, bound as the caller):

  upload(conn, paths, normalise)  every file of single JPEGs and zip batches gets a
                                  verdict: accepted / replaced / rejected (reason)
  publish(conn)                   staged -> the student's jpegPhoto, status PUBLISHED and
                                  the photo's day, then the staged entry is deleted with
                                  an assertion on its digest (a newer upload survives).
                                  One modify + one delete per student: re-running after
                                  a crash converges; a second run finds nothing to do.
  roster(conn, code)              every student of a site: NONE / STAGED / PUBLISHED, dates
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import time
import zipfile
from dataclasses import dataclass, field

from .core.overlay import Overlay

WIDTH, HEIGHT = 175, 233            # the ID-card photo
ASPECT = 0.75                       # width / height (175/233 = 0.751)
ASPECT_TOLERANCE = 0.01             # 1%: 240x320, 300x400, 176x234 … pass
MIN_BYTES, MAX_BYTES = 15 * 1024, 30 * 1024
MAX_MEMBER_BYTES = 5 * 1024 * 1024  # a zip member larger than this is not read at all
MAX_PIXELS = 4000 * 4000            # larger images are refused before decoding (memory)
ID_RE = re.compile(r"^[0-9]{6}[0-9A-Za-z][0-9]{3}$")
FILE_RE = re.compile(r"^([0-9]{6}[0-9A-Za-z][0-9]{3})\.jpe?g$", re.IGNORECASE)
CONTAINER = "ou=staged-photos"
STUDENTS = "ou=students,ou=people"
PUBLISHER = "cn=photo-publisher,ou=services"
PHOTO_ROLES = ("principals", "photo-designees", "photo-vendors")


# ----------------------------------------------------------------------------
# validation (used by the client and by the server's overlay)


class PhotoError(ValueError):
    """Why a photo is refused (one line, for the report and the LDAP diagnostic)."""


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB ({n} bytes)"


def decode_jpeg(data: bytes):
    """The decoded image, or PhotoError. Decodes every pixel: a file that only starts
    like a JPEG (magic bytes, extension) or is truncated or corrupt is refused."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_MEMBER_BYTES:
        raise PhotoError(size_problem(len(data)))
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        if fmt != "JPEG":
            raise PhotoError(f"not a JPEG (the data is {fmt or 'not an image'})")
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise PhotoError(dimension_problem(w, h))
        img.load()  # every pixel: truncated or corrupt data fails here
    except PhotoError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PhotoError(f"not a JPEG (cannot decode: {exc})") from None
    return img


def dimension_problem(w: int, h: int) -> str | None:
    if (w, h) == (WIDTH, HEIGHT):
        return None
    if h and abs(w / h - ASPECT) <= ASPECT * ASPECT_TOLERANCE and w >= WIDTH and h >= HEIGHT:
        return None
    return (f"wrong dimensions: {w}×{h} pixels (must be {WIDTH}×{HEIGHT}, or larger with "
            f"the same 3:4 aspect ratio, e.g. 240×320)")


def size_problem(n: int) -> str | None:
    if MIN_BYTES <= n <= MAX_BYTES:
        return None
    return f"wrong size: {_kb(n)} (must be 15–30 KB)"


def check_photo(data: bytes):
    """(width, height) of a valid photo, or PhotoError with every problem found."""
    img = decode_jpeg(data)
    problems = [p for p in (size_problem(len(data)), dimension_problem(*img.size)) if p]
    if problems:
        raise PhotoError("; ".join(problems))
    return img.size


def normalise(data: bytes) -> tuple[bytes, str | None]:
    """A valid photo resized to 175x233 when it is not that size already, re-encoded at
    the best JPEG quality that keeps it within 15-30 KB. Returns (bytes, note)."""
    from PIL import Image

    img = decode_jpeg(data)
    if img.size == (WIDTH, HEIGHT):
        return data, None
    w, h = img.size
    small = img.convert("RGB").resize((WIDTH, HEIGHT), Image.LANCZOS)
    best = None
    for quality in range(95, 49, -5):
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=quality, optimize=True)
        out = buf.getvalue()
        best = out
        if len(out) <= MAX_BYTES:
            break
    if size_problem(len(best)):
        raise PhotoError(f"normalised from {w}×{h} to {WIDTH}×{HEIGHT}, but the result is "
                         f"{_kb(len(best))}, outside 15–30 KB: send a {WIDTH}×{HEIGHT} photo")
    return best, f"normalised from {w}×{h} to {WIDTH}×{HEIGHT}"


def district_id_of(filename: str) -> str:
    """The district ID a file is named by (letter lower-cased), or PhotoError."""
    base = re.split(r"[/\\:]", filename)[-1]  # "batch.zip:folder/000001s001.jpg" -> the file
    m = FILE_RE.match(base)
    if not m:
        raise PhotoError(f"bad file name {base!r}: must be the 10-character district ID, "
                         "e.g. 000123s045.jpg")
    return m.group(1).lower()


# ----------------------------------------------------------------------------
# the server side: an overlay on ou=staged-photos


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
        from .core.errors import LDAPError

        raise LDAPError(code, message)

    def find_student(self, tx, district_id: str):
        from .core.errors import ResultCode

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
        from .core.acl import Level
        from .core.errors import ResultCode

        from .core.entry import Entry

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
            from .core.ppolicy import parse_gentime

            t = parse_gentime(grant.first("rollcallGrantExpiry")) if grant.first("rollcallGrantExpiry") else None
            if t is None or t > time.time():
                return
            expired.append(f"{code} (expired {grant.text('rollcallGrantExpiry')})")
        self._refuse(ResultCode.INSUFFICIENT_ACCESS_RIGHTS,
                     "your photo vendor grant has ended for " + ", ".join(expired))

    def _stage(self, tx, ident, entry, old=None):
        from .core.errors import ResultCode

        attrs = entry.attrs
        ids = attrs.get("employeeNumber", [])
        district_id = ids[0].decode("utf-8", "replace") if len(ids) == 1 else ""
        if len(ids) != 1 or not ID_RE.match(district_id):
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
            attrs["rollcallPhotoUploadedAt"] = [time.strftime("%Y%m%d%H%M%SZ", time.gmtime()).encode()]
            attrs["rollcallPhotoDigest"] = [hashlib.sha256(photos[0]).hexdigest().encode()]
        else:  # server-set values stay as they were
            for name in ("rollcallPhotoUploadedBy", "rollcallPhotoUploadedAt", "rollcallPhotoDigest"):
                if name in old.attrs:
                    attrs[name] = list(old.attrs[name])
        attrs["rollcallPhotoStudent"] = [student.dn.encode()]
        return student

    def _set_student_status(self, tx, ident, student, status: bytes, reason: str):
        """STAGED/NONE on the student (rollcallStudent only), inside the transaction."""
        from .core.entry import Entry

        classes = {v.lower() for v in student.attrs.get("objectClass", [])}
        if b"rollcallstudent" not in classes:
            return
        if student.first("rollcallPhotoStatus", b"").upper() == status:
            return
        attrs = student.copy_attrs()
        attrs["rollcallPhotoStatus"] = [status]
        attrs["modifiersName"] = [(ident.dn or "").encode()]
        attrs["modifyTimestamp"] = [time.strftime("%Y%m%d%H%M%SZ", time.gmtime()).encode()]
        self.d.schema.check_entry(attrs)
        new = Entry(student.dn, student.ndn, attrs, student.id)
        tx.replace(new, self.d.index_rows(attrs))
        tx.log(ident.ndn, ident.peer, "modify", student.dn, student.id,
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
        from .core.errors import ResultCode

        for old_ndn, new_ndn, _dn in moved:
            if any(n == self.container_ndn or n.endswith("," + self.container_ndn) for n in (old_ndn, new_ndn)):
                self._refuse(ResultCode.UNWILLING_TO_PERFORM,
                             "staged photos cannot be renamed or moved: upload the photo again")


# ----------------------------------------------------------------------------
# the client side (ldap3)


@dataclass
class Verdict:
    file: str                      # "photo.jpg" or "batch.zip:000001s001.jpg"
    verdict: str                   # accepted | replaced | rejected
    district_id: str = ""
    reason: str = ""               # why rejected
    note: str = ""                 # e.g. "normalised from 240×320 to 175×233"

    def line(self) -> str:
        text = f"{self.verdict.upper():8}  {self.file}"
        if self.reason:
            text += f": {self.reason}"
        if self.note:
            text += f" ({self.note})"
        return text


@dataclass
class Uploader:
    conn: object
    suffix: str
    normalise: bool = False
    sites: list = field(default_factory=list)  # departmentNumber to claim (see module doc)
    dn: str = ""


def connect(url: str, bind_dn: str, password: str, ca_file: str | None = None):
    """A bound ldap3 connection, or RuntimeError with the server's answer."""
    import ssl

    from ldap3 import Connection, Server, Tls

    tls = Tls(ca_certs_file=ca_file, validate=ssl.CERT_REQUIRED) if ca_file else None
    conn = Connection(Server(url, tls=tls, connect_timeout=10), bind_dn, password, receive_timeout=60,
                      raise_exceptions=False)
    if not conn.bind():
        raise RuntimeError(f"cannot bind as {bind_dn}: {conn.result.get('description')} "
                           f"{conn.result.get('message') or ''}".strip())
    return conn


def naming_context(conn) -> str:
    from ldap3 import BASE

    conn.search("", "(objectClass=*)", BASE, attributes=["namingContexts"])
    values = conn.response[0]["attributes"].get("namingContexts", []) if conn.response else []
    if not values:
        raise RuntimeError("the server publishes no naming context")
    return values[0]


def photo_sites(conn, dn: str, suffix: str) -> list:
    """School codes where `dn` holds a photo role (from its own memberOf)."""
    from ldap3 import BASE

    conn.search(dn, "(objectClass=*)", BASE, attributes=["memberOf"])
    groups = conn.response[0]["attributes"].get("memberOf", []) if conn.response else []
    tail = f",ou=sites,{suffix}".lower()
    codes = set()
    for g in groups:
        g = g.replace(" ", "").lower()
        if g.endswith(tail):
            parts = g[: -len(tail)].split(",")
            if len(parts) == 2 and parts[0][3:] in PHOTO_ROLES and parts[1].startswith("ou="):
                codes.add(parts[1][3:])
    return sorted(codes)


def make_uploader(conn, bind_dn: str, normalise=False, sites=None) -> Uploader:
    suffix = naming_context(conn)
    sites = list(sites or []) or photo_sites(conn, bind_dn, suffix)
    return Uploader(conn, suffix, normalise, sites, bind_dn)


def _items(path: str):
    """(display name, bytes or PhotoError) for a JPEG file or every member of a zip."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_MEMBER_BYTES * 100 + 1)
    except OSError as exc:
        yield name, PhotoError(f"cannot read: {exc.strerror}")
        return
    yield from expand(name, data)


def expand(name: str, data: bytes):
    """(display name, bytes or PhotoError) for one uploaded file: itself when it is not
    a zip, else every member ("batch.zip:000001s001.jpg"). Shared by the command line
    and the web console."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        yield name, data
        return
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = zf.infolist()
    except zipfile.BadZipFile as exc:
        yield name, PhotoError(f"damaged zip: {exc}")
        return
    if not members:
        yield name, PhotoError("empty zip")
    for info in members:
        if info.is_dir():
            continue
        shown = f"{name}:{info.filename}"
        if info.file_size > MAX_MEMBER_BYTES:
            yield shown, PhotoError(f"wrong size: {_kb(info.file_size)} (must be 15–30 KB)")
            continue
        try:
            yield shown, zf.read(info)
        except Exception as exc:  # damaged member, unsupported compression, bad CRC …
            yield shown, PhotoError(f"cannot extract from the zip: {exc}")


def _result_reason(result) -> str:
    msg = (result.get("message") or "").strip()
    return msg or result.get("description") or "refused"


def stage_one(up: Uploader, name: str, data) -> Verdict:
    from ldap3 import MODIFY_REPLACE

    if isinstance(data, PhotoError):
        return Verdict(name, "rejected", reason=str(data))
    try:
        district_id = district_id_of(name)
    except PhotoError as exc:
        return Verdict(name, "rejected", reason=str(exc))
    v = Verdict(name, "rejected", district_id)
    try:
        check_photo(data)
        if up.normalise:
            data, note = normalise(data)
            v.note = note or ""
    except PhotoError as exc:
        v.reason = str(exc)
        return v
    if not up.sites:
        v.reason = ("you hold no photo role at any site (principal, photo designee or a granted "
                    "photo vendor): not at a site you may upload for")
        return v
    dn = f"employeeNumber={district_id},{CONTAINER},{up.suffix}"
    source = name[:250]
    attrs = {"employeeNumber": district_id, "jpegPhoto": data, "departmentNumber": up.sites,
             "rollcallPhotoSource": source}
    if v.note:
        attrs["description"] = v.note
    conn = up.conn
    conn.add(dn, ["top", "rollcallStagedPhoto"], attrs)
    code = conn.result.get("result")
    if code == 0:
        v.verdict = "accepted"
        return v
    if code == 68:  # entryAlreadyExists: a correction replaces the staged photo
        changes = {"jpegPhoto": [(MODIFY_REPLACE, [data])], "rollcallPhotoSource": [(MODIFY_REPLACE, [source])],
                   "description": [(MODIFY_REPLACE, [v.note] if v.note else [])]}
        conn.modify(dn, changes)
        code = conn.result.get("result")
        if code == 0:
            v.verdict = "replaced"
            return v
        if code == 32:  # staged by another site's staff, invisible to this uploader
            v.reason = f"student {district_id} is not at a site you may upload photos for"
            return v
    if code == 32:
        v.reason = f"the directory has no {CONTAINER},{up.suffix} (run `rollcall photos setup`)"
        return v
    v.reason = _result_reason(conn.result)
    if conn.result.get("result") == 50 and "no write access" in v.reason:
        v.reason = f"not allowed to upload photos for {district_id} ({v.reason})"
    return v


def upload(up: Uploader, paths) -> list:
    """A verdict for every file (and every zip member); never stops at a bad one."""
    out = []
    for path in paths:
        for name, data in _items(path):
            out.append(stage_one(up, name, data))
    return out


def setup(conn, suffix: str | None = None) -> bool:
    """Create ou=staged-photos (an administrator or the root DN). True when created."""
    suffix = suffix or naming_context(conn)
    conn.add(f"{CONTAINER},{suffix}", ["top", "organizationalUnit"],
             {"ou": "staged-photos", "description": "Student photos uploaded, not yet published (rollcall photos)"})
    if conn.result.get("result") == 68:
        return False
    if conn.result.get("result") != 0:
        raise RuntimeError(f"cannot create {CONTAINER},{suffix}: {_result_reason(conn.result)}")
    return True


def _paged(conn, base, flt, scope, attributes):
    from ldap3.core.exceptions import LDAPException

    try:
        yield from conn.extend.standard.paged_search(base, flt, scope, attributes=attributes, paged_size=200,
                                                     generator=True)
    except LDAPException as exc:
        raise RuntimeError(f"search of {base} failed: {exc}") from None


def _assertion(flt: str):
    """RFC 4528 assertion control (OID 1.3.6.1.1.12) for ldap3."""
    from ldap3.operation.search import compile_filter, parse_filter
    from pyasn1.codec.ber import encoder

    value = encoder.encode(compile_filter(parse_filter(flt, None, True, True, None, False).elements[0]))
    return ("1.3.6.1.1.12", True, value)


@dataclass
class PublishReport:
    published: list = field(default_factory=list)    # (district ID, student DN)
    skipped: list = field(default_factory=list)      # (district ID, reason)
    failed: list = field(default_factory=list)       # (district ID, reason)

    def summary(self) -> str:
        return (f"published {len(self.published)}, skipped {len(self.skipped)}, "
                f"failed {len(self.failed)}")


def publish(conn, dry_run=False, log=None) -> PublishReport:
    """Staged photos -> the students (see module doc). Each student: one modify (jpegPhoto,
    rollcallPhotoStatus PUBLISHED, rollcallPhotoDate = the upload's day) and one delete
    of the staged entry asserting its digest. Idempotent and resumable."""
    from ldap3 import BASE, LEVEL, MODIFY_REPLACE

    log = log or (lambda _msg: None)
    suffix = naming_context(conn)
    report = PublishReport()
    base = f"{CONTAINER},{suffix}"
    conn.search(base, "(objectClass=*)", BASE, attributes=["1.1"])
    if conn.result.get("result") == 32:
        log(f"no {base}: nothing staged")
        return report
    attrs = ["employeeNumber", "jpegPhoto", "rollcallPhotoStudent", "rollcallPhotoDigest",
             "rollcallPhotoUploadedAt", "rollcallPhotoUploadedBy"]
    staged = [r for r in _paged(conn, base, "(objectClass=rollcallStagedPhoto)", LEVEL, attrs)
              if r.get("type") == "searchResEntry"]
    for r in staged:
        a = r["raw_attributes"]
        first = (lambda n: a[n][0] if a.get(n) else b"")
        district_id = first("employeeNumber").decode()
        student = first("rollcallPhotoStudent").decode()
        photo, digest = first("jpegPhoto"), first("rollcallPhotoDigest").decode()
        uploaded = first("rollcallPhotoUploadedAt").decode()
        if not student or not photo or not digest:
            report.failed.append((district_id, "staged entry lacks its student, photo or digest"))
            continue
        if hashlib.sha256(photo).hexdigest() != digest.lower():
            report.failed.append((district_id, "staged photo does not match its digest"))
            continue
        conn.search(student, "(objectClass=*)", BASE, attributes=["jpegPhoto", "objectClass"])
        if conn.result.get("result") != 0 or not conn.response:
            report.skipped.append((district_id, f"student {student} no longer exists; staged photo kept"))
            continue
        day = (uploaded[:8] or time.strftime("%Y%m%d", time.gmtime())) + "000000Z"
        classes = {c.lower() for c in conn.response[0]["attributes"].get("objectClass", [])}
        if dry_run:
            report.published.append((district_id, student))
            log(f"would publish {district_id} -> {student}")
            continue
        changes = {"jpegPhoto": [(MODIFY_REPLACE, [photo])]}
        if "rollcallstudent" in classes:
            changes["rollcallPhotoStatus"] = [(MODIFY_REPLACE, ["PUBLISHED"])]
            changes["rollcallPhotoDate"] = [(MODIFY_REPLACE, [day])]
        conn.modify(student, changes)
        if conn.result.get("result") != 0:
            report.failed.append((district_id, f"modify {student}: {_result_reason(conn.result)}"))
            continue
        conn.delete(r["dn"], controls=[_assertion(f"(rollcallPhotoDigest={digest})")])
        code = conn.result.get("result")
        if code == 122:  # assertionFailed: replaced since we read it; the next run publishes that one
            report.published.append((district_id, student))
            log(f"published {district_id}; a newer upload arrived meanwhile and stays staged")
            continue
        if code not in (0, 32):
            report.failed.append((district_id, f"delete {r['dn']}: {_result_reason(conn.result)}"))
            continue
        report.published.append((district_id, student))
        log(f"published {district_id} -> {student}")
    return report


@dataclass
class RosterRow:
    district_id: str
    uid: str
    name: str
    grade: str
    status: str           # NONE | STAGED | PUBLISHED
    photo_date: str       # YYYY-MM-DD of the published photo
    staged_at: str        # when the staged photo was uploaded
    staged_by: str
    source: str


def _date(gt: str, with_time=False) -> str:
    if len(gt) < 8:
        return ""
    out = f"{gt[0:4]}-{gt[4:6]}-{gt[6:8]}"
    if with_time and len(gt) >= 14:
        out += f" {gt[8:10]}:{gt[10:12]}:{gt[12:14]}Z"
    return out


def _raw(r, name) -> str:
    values = r["raw_attributes"].get(name) or []
    return values[0].decode("utf-8", "replace") if values else ""


def roster(conn, code: str) -> list:
    """Every student of the site (as the caller may see them), with photo status: STAGED
    when a photo waits for the nightly publish, else PUBLISHED or NONE."""
    from ldap3 import LEVEL, SUBTREE
    from ldap3.utils.conv import escape_filter_chars

    suffix = naming_context(conn)
    code_f = escape_filter_chars(code)
    staged = {}
    for r in _paged(conn, f"{CONTAINER},{suffix}", f"(&(objectClass=rollcallStagedPhoto)(departmentNumber={code_f}))",
                    LEVEL, ["employeeNumber", "rollcallPhotoUploadedAt", "rollcallPhotoUploadedBy",
                            "rollcallPhotoSource"]):
        if r.get("type") == "searchResEntry":
            staged[_raw(r, "employeeNumber").lower()] = r
    rows = []
    for r in _paged(conn, f"{STUDENTS},{suffix}", f"(departmentNumber={code_f})", SUBTREE,
                    ["employeeNumber", "uid", "cn", "rollcallGrade", "rollcallPhotoStatus", "rollcallPhotoDate",
                     "jpegPhoto"]):
        if r.get("type") != "searchResEntry":
            continue
        district_id = _raw(r, "employeeNumber")
        published = bool(r["raw_attributes"].get("jpegPhoto")) or _raw(r, "rollcallPhotoStatus").upper() == "PUBLISHED"
        s = staged.get(district_id.lower())
        row = RosterRow(district_id, _raw(r, "uid"), _raw(r, "cn"), _raw(r, "rollcallGrade"),
                        "STAGED" if s else ("PUBLISHED" if published else "NONE"),
                        _date(_raw(r, "rollcallPhotoDate")) if published else "", "", "", "")
        if s:
            row.staged_at = _date(_raw(s, "rollcallPhotoUploadedAt"), True)
            row.staged_by = _raw(s, "rollcallPhotoUploadedBy")
            row.source = _raw(s, "rollcallPhotoSource")
        rows.append(row)
    order = {"NONE": 0, "STAGED": 1, "PUBLISHED": 2}
    rows.sort(key=lambda x: (order[x.status], x.name.lower(), x.district_id))
    return rows
