"""The photo pages in a real browser: uploads by a principal (single JPEGs, a bad one, a
zip mixing both) with the per-file verdict table, the roster's status column and its
CSV, a designee's cross-school attempt, a vendor's upload, the principal granting and
revoking designees and vendors (memberOf checked as root), and refusals for people
with no photo role."""
import csv
import io
import re
import zipfile

from ldap3 import BASE, SUBTREE, Connection, Server
from PIL import Image

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX
from tests.jpegs import jpeg as _jpeg
from tests.web.conftest import (
    PHONE,
    no_horizontal_scroll,
    shot,
    sign_in,
    unlabelled_controls,
)

PRINCIPAL = ("pwong", "demo-principal-pw")       # principal of 1234
DESIGNEE = ("kpatel", "demo-designee-pw")        # photo designee of 1234
LINCOLN = "Lincoln Elementary (1234)"
VENDOR = ("mdubois", "demo-vendor-pw")           # photo vendor of 1234, 5678 and 9012 (no grant record)
TEACHER = ("ewilson", "demo-teacher-pw")         # no photo role
THERAPIST = ("sjones", "demo-therapist-pw")      # staff, no photo role until granted
UPLOAD_LABEL = "Photos (JPEG) or zip files"


def jpeg(w=175, h=233, seed=1) -> bytes:
    """A valid-size photo, well inside the 15-30 KB window."""
    return _jpeg(w, h, 18000, 28000, seed)


def too_small() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (175, 233), (200, 180, 160)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def zip_of(**members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def root(console):
    c = Connection(Server(console.server.url), ROOT_DN, ROOT_PW)
    assert c.bind()
    return c


def _demo_staged() -> set:
    """District IDs whose photo the demo district has staged already (picture day)."""
    from directory.demo import demo_ldif  # the console's district: the demo

    return set(re.findall(r"(?m)^dn: employeeNumber=(\w+),ou=staged-photos,", demo_ldif(SUFFIX)))


def students(console, code, only=True) -> list:
    """(district ID, uid) of the students of a school (only there, when `only`), but not
    those the demo has a staged photo of already (an upload would replace it)."""
    staged = _demo_staged()
    c = root(console)
    flt = f"(&(objectClass=rollcallStudent)(departmentNumber={code}))"
    c.search(f"ou=students,ou=people,{SUFFIX}", flt, SUBTREE, attributes=["employeeNumber", "uid", "departmentNumber"])
    out = []
    for e in c.response:
        a = {k.lower(): [v.decode() for v in vs] for k, vs in e.get("raw_attributes", {}).items()}
        if e.get("type") == "searchResEntry" and (not only or a["departmentnumber"] == [code]) \
                and a["employeenumber"][0] not in staged:
            out.append((a["employeenumber"][0], a["uid"][0]))
    out.sort()
    c.unbind()
    return out


def member_of(console, uid, ou) -> list:
    c = root(console)
    c.search(f"uid={uid},ou={ou},ou=people,{SUFFIX}", "(objectClass=*)", BASE, attributes=["memberOf"])
    groups = [g.lower() for g in c.response[0]["attributes"].get("memberOf", [])]
    c.unbind()
    return groups


def group_members(console, dn) -> list:
    c = root(console)
    c.search(dn, "(objectClass=*)", BASE, attributes=["member"])
    members = [m.lower() for m in c.response[0]["attributes"].get("member", [])]
    c.unbind()
    return members


def group(cn, code):
    return f"cn={cn},ou={code},ou=sites,{SUFFIX}".lower()


def upload(page, console, *files):
    """files: (name, bytes); returns {file: (district ID, verdict, reason)} from the table."""
    page.goto(console.base + "/photos")
    page.get_by_label(UPLOAD_LABEL).set_input_files(
        [{"name": n, "mimeType": "application/zip" if n.endswith(".zip") else "image/jpeg", "buffer": d}
         for n, d in files])
    page.get_by_role("button", name="Upload").click()
    page.wait_for_selector("table.verdicts")
    out = {}
    for row in page.locator("table.verdicts tbody tr").all():
        cells = [c.inner_text().strip() for c in row.locator("td").all()]
        out[cells[0]] = tuple(cells[1:])
    return out


def test_principal_uploads_single_bad_and_zip(console, new_page):
    ids = [d for d, _ in students(console, "1234")]
    a, b, c, d = ids[:4]
    page = new_page()
    sign_in(page, console, *PRINCIPAL)
    page.get_by_role("link", name="Photos", exact=True).click()
    assert page.get_by_role("heading", name="Student photos").is_visible()
    assert unlabelled_controls(page) == []
    got = upload(page, console,
                 (f"{a}.jpg", jpeg(seed=1)),
                 (f"{b}.jpg", too_small()),
                 ("batch.zip", zip_of(**{f"{c}.jpg": jpeg(seed=2), f"{d}.jpeg": jpeg(200, 200, seed=3)})))
    assert got[f"{a}.jpg"][:2] == (a, "accepted")
    assert got[f"{b}.jpg"][:2] == (b, "rejected") and "wrong size" in got[f"{b}.jpg"][2]
    assert got[f"batch.zip:{c}.jpg"][:2] == (c, "accepted")
    assert got[f"batch.zip:{d}.jpeg"][:2] == (d, "rejected") and "wrong dimensions" in got[f"batch.zip:{d}.jpeg"][2]
    assert page.get_by_role("status").filter(has_text="4 files").inner_text().startswith(
        "4 files: 2 accepted, 2 rejected")
    shot(page, "photos-upload")
    assert unlabelled_controls(page) == []
    # a file not named by a district ID, and a photo sent again (a correction replaces it)
    got = upload(page, console, ("IMG_0001.jpg", jpeg(seed=4)), (f"{a}.jpg", jpeg(seed=5)))
    assert got["IMG_0001.jpg"][1] == "rejected" and "bad file name" in got["IMG_0001.jpg"][2]
    assert got[f"{a}.jpg"][:2] == (a, "replaced")


def test_upload_page_on_a_phone(console, new_page):
    ids = [d for d, _ in students(console, "1234")]
    page = new_page(viewport=PHONE)
    sign_in(page, console, *PRINCIPAL)
    page.goto(console.base + "/photos")
    assert no_horizontal_scroll(page)
    got = upload(page, console, ("a-rather-long-batch-name-from-the-photographer.zip",
                                 zip_of(**{f"{ids[4]}.jpg": too_small()})))
    assert next(iter(got.values()))[1] == "rejected"
    assert no_horizontal_scroll(page)
    shot(page, "photos-upload-phone")


def test_roster_status_and_csv(console, new_page):
    staged_id = students(console, "1234")[0][0]          # staged by the first test
    page = new_page()
    sign_in(page, console, *PRINCIPAL)
    upload(page, console, ("000001s001.jpg", jpeg(seed=6)))   # jsmith: PUBLISHED, a new photo waits
    page.goto(console.base + "/photos")
    page.get_by_role("link", name=f"Photo roster of {LINCOLN}").click()
    assert page.get_by_role("heading", name=f"Photo roster of {LINCOLN}").is_visible()
    rows = {r.locator("td").nth(2).inner_text(): r.locator("td").nth(4).inner_text()
            for r in page.locator("table.photo-roster tbody tr").all()}
    assert rows["000001s001"] == "STAGED" and rows[staged_id] == "STAGED"
    assert set(rows.values()) <= {"NONE", "STAGED", "PUBLISHED"} and "PUBLISHED" in rows.values()
    summary = page.get_by_role("status").filter(has_text="students:").inner_text()
    assert summary.startswith(f"{len(rows)} students: ")
    shot(page, "photos-roster")
    with page.expect_download() as dl:
        page.get_by_role("link", name="Download CSV").click()
    d = dl.value
    assert d.suggested_filename.startswith("photo-roster-1234-") and d.suggested_filename.endswith(".csv")
    with open(d.path(), "rb") as fh:
        text = fh.read().decode("utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == len(rows)
    by_id = {r["district_id"]: r for r in table}
    assert by_id["000001s001"]["photo_status"] == "STAGED" and by_id["000001s001"]["username"] == "jsmith"
    assert by_id["000001s001"]["staged_by"].startswith("uid=pwong,")
    # another school's roster is not offered to this principal
    assert page.goto(console.base + "/photos/roster?site=5678").status == 403
    assert page.goto(console.base + "/photos/roster.csv?site=5678").status == 403

    phone = new_page(viewport=PHONE)
    sign_in(phone, console, *PRINCIPAL)
    phone.goto(console.base + "/photos/roster?site=1234")
    assert no_horizontal_scroll(phone)
    shot(phone, "photos-roster-phone")


def test_designee_cross_school_is_rejected(console, new_page):
    other = students(console, "5678")[0][0]
    mine = students(console, "1234")[5][0]
    page = new_page()
    sign_in(page, console, *DESIGNEE)
    got = upload(page, console, (f"{other}.jpg", jpeg(seed=7)), (f"{mine}.jpg", jpeg(seed=8)))
    assert got[f"{other}.jpg"][1] == "rejected"
    assert "not at a site you may upload photos for" in got[f"{other}.jpg"][2]
    assert got[f"{mine}.jpg"][:2] == (mine, "accepted")
    assert "5678" not in page.locator("p.actions").inner_text()   # the designee's roster links: 1234 only
    assert page.goto(console.base + "/photos/access").status == 403
    shot(page, "photos-upload-designee")


def test_vendor_uploads_but_sees_no_student_list(console, new_page):
    target = students(console, "9012")[0][0]
    page = new_page()
    sign_in(page, console, *VENDOR)
    got = upload(page, console, (f"{target}.jpg", jpeg(seed=9)))
    assert got[f"{target}.jpg"][:2] == (target, "accepted")
    page.goto(console.base + "/photos/roster?site=9012")
    assert "does not show you its students" in page.locator("p.note").inner_text()
    # and so no download is offered, nor given
    assert page.get_by_role("link", name="Download CSV").count() == 0
    assert page.goto(console.base + "/photos/roster.csv?site=9012").status == 403
    assert "does not show you its students" in page.get_by_role("alert").inner_text()


def test_no_photo_role_is_refused(console, new_page):
    page = new_page()
    sign_in(page, console, *TEACHER)
    assert page.get_by_role("link", name="Photos", exact=True).count() == 0
    for path in ("/photos", "/photos/roster?site=5678", "/photos/access"):
        resp = page.goto(console.base + path)
        assert resp.status == 403, path
        assert page.get_by_role("alert").count() == 1
    shot(page, "photos-refused")


def test_principal_grants_and_revokes(console, new_page):
    designees, vendors = group("photo-designees", "1234"), group("photo-vendors", "1234")
    page = new_page()
    sign_in(page, console, *PRINCIPAL)
    page.goto(console.base + "/photos")
    page.get_by_role("link", name="Photo access").click()
    assert page.get_by_role("heading", name=LINCOLN).is_visible()
    assert "kpatel" in page.locator("#site-1234").inner_text()
    assert unlabelled_controls(page) == []
    shot(page, "photos-access")

    def revoke(uid, label):
        page.get_by_role("button", name=f"Revoke {uid} as {label} of {LINCOLN}").click()
        page.get_by_role("button", name="Yes, revoke").click()

    def grant(label, username):
        page.get_by_label(label).fill(username)
        page.get_by_label(label).locator("xpath=..").get_by_role("button", name="Grant").click()

    designee_label = f"Add a photo designee of {LINCOLN}: username of the staff member"
    vendor_label = f"Add a photo vendor of {LINCOLN}: username of the non-employee (contractor)"
    # the wrong kind of person, and nobody
    grant(designee_label, "jreyes")
    assert "must be a staff member" in page.get_by_role("alert").inner_text()
    grant(vendor_label, "nobody-here")
    assert page.get_by_role("alert").inner_text() == "There is no one with the username nobody-here."

    # designee: granted, can then use the photo pages, revoked
    assert designees not in member_of(console, "sjones", "staff")
    grant(designee_label, "sjones")
    assert page.get_by_role("status").inner_text() == f"Samuel Jones (sjones) is now a photo designee of {LINCOLN}."
    assert designees in member_of(console, "sjones", "staff")
    other = new_page()
    sign_in(other, console, *THERAPIST)
    assert other.goto(console.base + "/photos").status == 200
    page.get_by_role("button", name=f"Revoke sjones as photo designee of {LINCOLN}").click()
    # a confirmation first, as for a deactivation: nothing changed yet
    assert "Remove Samuel Jones as photo designee of Lincoln Elementary (1234)?" in page.locator("main").inner_text()
    shot(page, "photos-revoke-confirm")
    assert designees in member_of(console, "sjones", "staff")
    page.get_by_role("link", name="Cancel").click()
    assert designees in member_of(console, "sjones", "staff")
    revoke("sjones", "photo designee")
    assert page.get_by_role("status").inner_text() == f"Samuel Jones (sjones) is no longer a photo designee of {LINCOLN}."
    assert designees not in member_of(console, "sjones", "staff")
    again = new_page()
    sign_in(again, console, *THERAPIST)
    assert again.goto(console.base + "/photos").status == 403

    # vendor: granted and revoked
    grant(vendor_label, "jreyes")
    assert page.get_by_role("status").inner_text() == f"Jordan Reyes (jreyes) is now a photo vendor of {LINCOLN}."
    assert vendors in member_of(console, "jreyes", "nonemployees")
    shot(page, "photos-access-granted")
    page.get_by_role("button", name=f"Revoke jreyes as photo vendor of {LINCOLN}").click()
    assert "Remove Jordan Reyes as photo vendor of Lincoln Elementary (1234)?" in page.locator("main").inner_text()
    assert vendors in member_of(console, "jreyes", "nonemployees")
    page.get_by_role("button", name="Yes, revoke").click()
    assert page.get_by_role("status").inner_text() == f"Jordan Reyes (jreyes) is no longer a photo vendor of {LINCOLN}."
    assert vendors not in member_of(console, "jreyes", "nonemployees")

    # the last vendor: the site stands in as the group's member, and goes when one is granted
    revoke("mdubois", "photo vendor")
    assert f"no longer a photo vendor of {LINCOLN}" in page.get_by_role("status").inner_text()
    assert f"No photo vendor at {LINCOLN}." in page.locator("#site-1234").inner_text()
    assert group_members(console, vendors) == [f"ou=1234,ou=sites,{SUFFIX}".lower()]
    assert vendors not in member_of(console, "mdubois", "nonemployees")
    grant(vendor_label, "mdubois")
    assert group_members(console, vendors) == [f"uid=mdubois,ou=nonemployees,ou=people,{SUFFIX}".lower()]
    assert vendors in member_of(console, "mdubois", "nonemployees")
    # already granted
    grant(vendor_label, "mdubois")
    assert f"already a photo vendor of {LINCOLN}" in page.get_by_role("alert").inner_text()


def test_a_zip_bomb_is_refused_whole(console, new_page):
    page = new_page()
    sign_in(page, console, *PRINCIPAL)
    # 210 members of 1 MB of zeros: ~200 KB uploaded, 210 MB once expanded (web.photo_zip_max_mb: 200)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(210):
            zf.writestr(f"{i:06d}s001.jpg", bytes(1024 * 1024))
    got = upload(page, console, ("bomb.zip", buf.getvalue()))
    assert list(got) == ["bomb.zip"]
    assert got["bomb.zip"][-2] == "rejected" and "expands to 210 MB" in got["bomb.zip"][-1]
