"""Student ID photos, the client side: LDAP clients with ldap3, bound as the caller.
The rules are the server's (directory/core/photos.py, over directory/district/photos.py),
so a refusal comes back as the server's diagnostic.

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
import zipfile
from dataclasses import dataclass, field

from ldap3 import BASE, LEVEL, MODIFY_REPLACE, SUBTREE
from ldap3.utils.conv import escape_filter_chars

from . import client
from .district import display
from .district.gentime import from_date, gentime_text
from .district.photos import (CONTAINER, MAX_MEMBER_BYTES, PHOTO_ROLES, STUDENTS, ZIP_MAX_FILES, ZIP_MAX_MB,
                              PhotoError, check_photo, district_id_of, kb, normalise)


class PhotosError(client.ClientError, RuntimeError):
    """A failure of the photo commands (a directory.client ClientError; a RuntimeError as
    this module's callers have always caught)."""

    @classmethod
    def of(cls, exc: client.ClientError) -> "PhotosError":
        return exc if isinstance(exc, cls) else cls(exc.message, exc.code, exc.description, exc.kind)


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


def connect(url: str, bind_dn: str, password: str, ca_file: str | None = None, start_tls: bool = False):
    """A bound ldap3 connection (directory.client.connect), or PhotosError."""
    try:
        return client.connect(url, bind_dn, password, ca_file=ca_file, start_tls=start_tls)
    except client.ClientError as exc:
        raise PhotosError.of(exc) from None


def naming_context(conn) -> str:
    try:
        return client.naming_context(conn)
    except client.ClientError as exc:
        raise PhotosError.of(exc) from None


def photo_sites(conn, dn: str, suffix: str) -> list:
    """School codes where `dn` holds a photo role (from its own memberOf)."""
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


def _items(path: str, max_files: int = ZIP_MAX_FILES, max_mb: int = ZIP_MAX_MB):
    """(display name, bytes or PhotoError) for a JPEG file or every member of a zip."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_MEMBER_BYTES * 100 + 1)
    except OSError as exc:
        yield name, PhotoError(f"cannot read: {exc.strerror}")
        return
    yield from expand(name, data, max_files, max_mb)


def expand(name: str, data: bytes, max_files: int = ZIP_MAX_FILES, max_mb: int = ZIP_MAX_MB):
    """(display name, bytes or PhotoError) for one uploaded file: itself when it is not
    a zip, else every member ("batch.zip:000001s001.jpg"). Shared by the command line
    and the web console.

    A zip bomb is refused: more than `max_files` members or more than `max_mb` MB
    uncompressed, as its central directory declares, refuses the whole zip before any
    member is read; members are then decompressed in bounded reads, and one that
    inflates past its declared size (a lying header) or past what is left of the
    budget stops the zip there."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        yield name, data
        return
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OverflowError) as exc:
        yield name, PhotoError(f"damaged zip: {exc}")
        return
    if not members:
        yield name, PhotoError("empty zip")
        return
    budget = max_mb * 1024 * 1024
    files = [info for info in members if not info.is_dir()]
    if len(members) > max_files:
        yield name, PhotoError(f"too many files in the zip: {len(members)} (at most {max_files}); "
                               "split it into smaller zips")
        return
    declared = sum(info.file_size for info in files)
    if declared > budget:
        yield name, PhotoError(f"the zip expands to {declared // (1024 * 1024)} MB (at most {max_mb} MB); "
                               "split it into smaller zips")
        return
    for info in files:
        shown = f"{name}:{info.filename}"
        if info.file_size > MAX_MEMBER_BYTES:
            yield shown, PhotoError(f"wrong size: {kb(info.file_size)} (must be 15–30 KB)")
            continue
        try:
            content = _read_member(zf, info, min(MAX_MEMBER_BYTES, budget))
        except _LyingZip as exc:
            yield shown, PhotoError(str(exc))
            yield name, PhotoError("the zip stopped being read: its sizes are not what it declares")
            return
        except Exception as exc:  # damaged member, unsupported compression, bad CRC …
            yield shown, PhotoError(f"cannot extract from the zip: {exc}")
            continue
        budget -= len(content)
        yield shown, content


class _LyingZip(Exception):
    pass


def _read_member(zf, info, most: int) -> bytes:
    """A member's bytes, read in bounded pieces: never more than its declared size
    (nor than `most`), whatever its compressed stream holds."""
    limit = min(info.file_size, most)
    out = bytearray()
    with zf.open(info) as fh:
        while True:
            piece = fh.read(64 * 1024)
            if not piece:
                break
            out += piece
            if len(out) > limit:
                raise _LyingZip(f"expands past its declared {kb(info.file_size)}: refused")
    return bytes(out)


def _result_reason(result) -> str:
    msg = (result.get("message") or "").strip()
    return msg or result.get("description") or "refused"


def stage_one(up: Uploader, name: str, data) -> Verdict:

    if isinstance(data, PhotoError):
        return Verdict(name, "rejected", reason=display.plain_reason(str(data)))
    try:
        district_id = district_id_of(name)
    except PhotoError as exc:
        return Verdict(name, "rejected", reason=display.plain_reason(str(exc)))
    v = Verdict(name, "rejected", district_id)
    try:
        check_photo(data)
        if up.normalise:
            data, note = normalise(data)
            v.note = note or ""
    except PhotoError as exc:
        v.reason = display.plain_reason(str(exc))
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


def upload(up: Uploader, paths, max_files: int = ZIP_MAX_FILES, max_mb: int = ZIP_MAX_MB) -> list:
    """A verdict for every file (and every zip member); never stops at a bad one."""
    out = []
    for path in paths:
        for name, data in _items(path, max_files, max_mb):
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
        raise PhotosError(f"cannot create {CONTAINER},{suffix}: {_result_reason(conn.result)}",
                          conn.result.get("result"), conn.result.get("description") or "")
    return True


def _paged(conn, base, flt, scope, attributes) -> list:
    """[(dn, {attribute lower-case: [bytes]})]; a base the caller cannot see gives []."""
    try:
        return client.paged_search(conn, base, flt, attributes, scope, 200, absent_ok=True)
    except client.ClientError as exc:
        raise PhotosError.of(exc) from None


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
    staged = _paged(conn, base, "(objectClass=rollcallStagedPhoto)", LEVEL, attrs)
    for staged_dn, a in staged:
        first = (lambda n: a[n.lower()][0] if a.get(n.lower()) else b"")
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
        day = from_date(uploaded[:8] or gentime_text()[:8])
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
        conn.delete(staged_dn, controls=[client.assertion_control(f"(rollcallPhotoDigest={digest})")])
        code = conn.result.get("result")
        if code == 122:  # assertionFailed: replaced since we read it; the next run publishes that one
            report.published.append((district_id, student))
            log(f"published {district_id}; a newer upload arrived meanwhile and stays staged")
            continue
        if code not in (0, 32):
            report.failed.append((district_id, f"delete {staged_dn}: {_result_reason(conn.result)}"))
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
    staged_at: str        # when the staged photo was uploaded (UTC, for the CSV)
    staged_by: str
    source: str
    uploaded_at: str = "" # the same as generalized time (pages show it in local time)


def _date(gt: str, with_time=False) -> str:
    if len(gt) < 8:
        return ""
    out = f"{gt[0:4]}-{gt[4:6]}-{gt[6:8]}"
    if with_time and len(gt) >= 14:
        out += f" {gt[8:10]}:{gt[10:12]}:{gt[12:14]}Z"
    return out


def _raw(attrs, name) -> str:
    values = attrs.get(name.lower()) or []
    return values[0].decode("utf-8", "replace") if values else ""


def roster(conn, code: str) -> list:
    """Every student of the site (as the caller may see them), with photo status: STAGED
    when a photo waits for the nightly publish, else PUBLISHED or NONE."""
    suffix = naming_context(conn)
    code_f = escape_filter_chars(code)
    staged = {}
    for _dn, r in _paged(conn, f"{CONTAINER},{suffix}", f"(&(objectClass=rollcallStagedPhoto)(departmentNumber={code_f}))",
                    LEVEL, ["employeeNumber", "rollcallPhotoUploadedAt", "rollcallPhotoUploadedBy",
                            "rollcallPhotoSource"]):
        staged[_raw(r, "employeeNumber").lower()] = r
    rows = []
    for _dn, r in _paged(conn, f"{STUDENTS},{suffix}", f"(departmentNumber={code_f})", SUBTREE,
                    ["employeeNumber", "uid", "cn", "rollcallGrade", "rollcallPhotoStatus", "rollcallPhotoDate",
                     "jpegPhoto"]):
        district_id = _raw(r, "employeeNumber")
        published = bool(r.get("jpegphoto")) or _raw(r, "rollcallPhotoStatus").upper() == "PUBLISHED"
        s = staged.get(district_id.lower())
        row = RosterRow(district_id, _raw(r, "uid"), _raw(r, "cn"), _raw(r, "rollcallGrade"),
                        "STAGED" if s else ("PUBLISHED" if published else "NONE"),
                        _date(_raw(r, "rollcallPhotoDate")) if published else "", "", "", "")
        if s:
            row.staged_at = _date(_raw(s, "rollcallPhotoUploadedAt"), True)
            row.uploaded_at = _raw(s, "rollcallPhotoUploadedAt")
            row.staged_by = _raw(s, "rollcallPhotoUploadedBy")
            row.source = _raw(s, "rollcallPhotoSource")
        rows.append(row)
    order = {"NONE": 0, "STAGED": 1, "PUBLISHED": 2}
    rows.sort(key=lambda x: (order[x.status], x.name.lower(), x.district_id))
    return rows
