"""The demo district (directory.demo): it loads through the real loader (`rollcall load`)
into a fresh store with schema/rollcall.schema, and the directory it makes is coherent."""
import hashlib
import io
import re
import subprocess

import pytest

from directory import passwords
from directory.app import open_directory
from directory.config import load_config
from directory.core.directory import SCOPE_BASE, SCOPE_ONE, SCOPE_SUB, Identity
from directory.demo import PASSWORDS, credential_table, credentials, demo_accounts, demo_ldif
from directory.district.ids import DISTRICT_ID_PATTERN
from directory.ldif import records
from directory.district.photos import check_photo
from tests.conftest import ROOT, ROOT_DN, SUFFIX, ServerProcess

SCHEMA = [str(ROOT / "schema" / f"{name}.schema")
          for name in ("core", "cosine", "inetorgperson", "nis", "eduperson", "rollcall", "rollcall-photos")]
DISTRICT_ID = re.compile(DISTRICT_ID_PATTERN + r"\Z")

# entries strictly beneath each branch
EXPECTED = {
    "ou=students,ou=people": 60,
    "ou=staff,ou=people": 13,
    "ou=nonemployees,ou=people": 2,
    "ou=sites": 3 + 3 * 6,          # 3 sites, 4 role groups and the sync's students and staff each
    "ou=groups": 5,                 # district-admins, ou=welligent and its 3 role groups
    "ou=services": 3,               # SSO portal, SIS sync, photo publisher
    "ou=sis": 60 + 3,               # every student, and 3 enrollees without an account
    "ou=requests": 0,
    "ou=staged-photos": None,       # one per STAGED student (checked in test_photos)
    "ou=jobs": 0,                   # the nightly jobs' locks, while one runs
}
TOTAL = 1 + 8 + 3 + sum(n for n in EXPECTED.values() if n)  # suffix, its 8 branches, the 3 people branches


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A fresh store loaded with the demo LDIF by `rollcall load`, opened as a Directory."""
    try:
        srv = ServerProcess(tmp_path_factory.mktemp("demo"), extra_config={"schema": SCHEMA},
                            ldif=demo_ldif(SUFFIX))
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"rollcall load refused the demo LDIF:\n{exc.stderr}")
    d = open_directory(load_config(srv.config_path))
    yield d
    close = getattr(d.store, "close", None)
    if close:
        close()


def root(d):
    return Identity(ROOT_DN, d.normalize_dn(ROOT_DN), is_root=True)


def search(d, base, flt=("present", "objectClass"), scope=SCOPE_SUB, attrs=()):
    """[(dn, {attr: [bytes]})] as the root DN sees them."""
    cursor = d.search(root(d), f"{base},{SUFFIX}" if base else SUFFIX, scope, flt, list(attrs))
    out = []
    while not cursor.done:
        out.extend(cursor.next_batch())
    return [(dn, dict(attrs)) for dn, attrs in out]


def eq(attr, value):
    return ("eq", attr, value.encode())


def text(values):
    return [v.decode("utf-8") for v in values]


# -- loading and shape -----------------------------------------------------------


def test_counts_per_branch(loaded):
    staged = len(search(loaded, "ou=staged-photos", scope=SCOPE_ONE))
    assert len(search(loaded, "")) == TOTAL + staged
    for branch, n in EXPECTED.items():
        below = [dn for dn, _ in search(loaded, branch) if loaded.normalize_dn(dn) != loaded.normalize_dn(f"{branch},{SUFFIX}")]
        assert n is None or len(below) == n, branch
    assert len(search(loaded, "", eq("objectClass", "rollcallStudent"))) == 60
    assert len(search(loaded, "", eq("objectClass", "rollcallNonEmployee"))) == 2
    assert len(search(loaded, "", eq("objectClass", "rollcallSisRecord"))) == 63
    assert len(search(loaded, "ou=sites", eq("objectClass", "rollcallSite"), SCOPE_ONE)) == 3
    assert len(search(loaded, "ou=groups", eq("objectClass", "rollcallApplication"))) == 1


def test_sites_and_their_role_groups(loaded):
    sites = {text(a["rollcallCostCenter"])[0]: a for _, a in
             search(loaded, "ou=sites", eq("objectClass", "rollcallSite"), SCOPE_ONE)}
    assert {code: text(a["rollcallSiteName"])[0] for code, a in sites.items()} == {
        "1234": "Lincoln Elementary", "5678": "Roosevelt Middle", "9012": "Washington High"}
    for code in sites:
        groups = search(loaded, f"ou={code},ou=sites", eq("objectClass", "groupOfNames"), SCOPE_ONE)
        assert sorted(text(a["cn"])[0] for _, a in groups) == [
            "photo-designees", "photo-vendors", "principals", "staff", "student-email-admins", "students"]


def test_students_are_members_of_their_schools_students_group(loaded):
    """What the SIS sync leaves behind (sync/engine.py site groups): every student is a
    member of cn=students of each school it is enrolled at, and memberOf says so — what
    an SSO that authorises by group checks."""
    jsmith = search(loaded, "ou=students,ou=people", eq("uid", "jsmith"), attrs=["memberOf", "departmentNumber"])
    (_, a), = jsmith
    want = {loaded.normalize_dn(f"cn=students,ou={code},ou=sites,{SUFFIX}") for code in text(a["departmentNumber"])}
    assert want and want <= {loaded.normalize_dn(v.decode()) for v in a["memberOf"]}
    for _, a in search(loaded, "ou=students,ou=people", eq("objectClass", "rollcallStudent"),
                       attrs=["memberOf", "departmentNumber"]):
        groups = {loaded.normalize_dn(v.decode()) for v in a.get("memberOf", [])}
        for code in text(a["departmentNumber"]):
            assert loaded.normalize_dn(f"cn=students,ou={code},ou=sites,{SUFFIX}") in groups
    # staff: the HR sync's cn=staff of their sites (not the one who left the district)
    (_, a), = search(loaded, "ou=staff,ou=people", eq("uid", "kpatel"), attrs=["memberOf"])
    assert loaded.normalize_dn(f"cn=staff,ou=1234,ou=sites,{SUFFIX}") in {
        loaded.normalize_dn(v.decode()) for v in a["memberOf"]}


def test_district_ids_valid_and_unique(loaded):
    people = search(loaded, "ou=people", ("present", "uid"))
    assert len(people) == 75
    ids = [text(a["employeeNumber"]) for _, a in people]
    assert all(len(v) == 1 and DISTRICT_ID.match(v[0]) for v in ids)
    assert len({v[0] for v in ids}) == len(ids)

    sis = search(loaded, "ou=sis", eq("objectClass", "rollcallSisRecord"))
    sis_ids = [text(a["employeeNumber"])[0] for _, a in sis]
    assert all(DISTRICT_ID.match(v) for v in sis_ids) and len(set(sis_ids)) == len(sis_ids)
    assert len({text(a["rollcallSisSourceId"])[0] for _, a in sis}) == 63


def test_uids_unique(loaded):
    uids = [text(a["uid"]) for _, a in search(loaded, "", ("present", "uid"))]
    assert all(len(u) == 1 for u in uids)
    folded = [u[0].lower() for u in uids]
    assert len(set(folded)) == len(folded) == 75


def test_every_group_member_exists(loaded):
    groups = search(loaded, "", eq("objectClass", "groupOfNames"))
    assert len(groups) == 12 + 6 + 4  # role groups, the sync's students and staff, ou=groups
    for dn, attrs in groups:
        assert attrs.get("member"), dn
        for member in text(attrs["member"]):
            assert loaded.lookup(loaded.normalize_dn(member)) is not None, (dn, member)


def test_every_dn_valued_reference_exists(loaded):
    refs = ("rollcallSponsor", "rollcallDeactivatedBy", "rollcallLinkedAccount", "rollcallApprovers", "owner")
    seen = 0
    for dn, attrs in search(loaded, ""):
        for name in refs:
            for value in text(attrs.get(name, [])):
                seen += 1
                assert loaded.lookup(loaded.normalize_dn(value)) is not None, (dn, name, value)
    assert seen >= 60


def test_school_codes_are_sites(loaded):
    codes = {text(a["rollcallCostCenter"])[0]
             for _, a in search(loaded, "ou=sites", eq("objectClass", "rollcallSite"))}
    people = search(loaded, "ou=people", ("present", "uid"))
    multi = [dn for dn, a in people if len(a.get("departmentNumber", [])) == 2 and "ou=students" in dn]
    assert 2 <= len(multi) <= 3
    for dn, attrs in people + search(loaded, "ou=sis", eq("objectClass", "rollcallSisRecord")):
        assert set(text(attrs.get("departmentNumber", []))) <= codes, dn
    students = search(loaded, "ou=students,ou=people", eq("objectClass", "rollcallStudent"))
    assert all(a.get("departmentNumber") for _, a in students)


def test_names_with_apostrophes_hyphens_and_non_ascii(loaded):
    cns = {text(a["cn"])[0] for _, a in search(loaded, "ou=students,ou=people", ("present", "uid"))}
    assert any("'" in cn for cn in cns)
    assert any("-" in cn for cn in cns)
    assert any(not cn.isascii() for cn in cns)
    assert {"Liam O'Brien", "Thảo Nguyễn", "Sofía García-López", "John Smith"} <= cns
    # the equality index folds case and Unicode the same way for lookups
    found = search(loaded, "ou=people", eq("sn", "NGUYỄN"))
    assert "Thảo Nguyễn" in {text(a["cn"])[0] for _, a in found}
    assert all(text(a["sn"]) == ["Nguyễn"] for _, a in found)


def test_statuses(loaded):
    students = search(loaded, "ou=students,ou=people", eq("objectClass", "rollcallStudent"))
    by_status = {}
    for dn, a in students:
        by_status.setdefault(text(a["rollcallAccountStatus"])[0], []).append((dn, a))
    assert {k: len(v) for k, v in by_status.items()} == {"ENABLED": 56, "PENDING": 3, "DISABLED": 1}
    (dn, disabled), = by_status["DISABLED"]
    assert disabled["rollcallDeactivationReason"] and disabled["rollcallDeactivationReference"]
    assert text(disabled["rollcallStatusSource"]) == ["ADMIN"]
    for dn, a in by_status["PENDING"]:
        assert "userPassword" not in a and a["rollcallActivationCodeHash"]
        assert text(a["rollcallActivationState"]) == ["NOT_ACTIVATED"]

    staff = search(loaded, "ou=staff,ou=people", ("present", "uid"))
    assert [text(a["uid"])[0] for _, a in staff if text(a["rollcallAccountStatus"]) == ["DISABLED"]] == ["bcarter"]
    for _, a in search(loaded, "ou=nonemployees,ou=people", ("present", "uid")):
        assert a["rollcallSponsor"] and a["rollcallExpiry"] and a["rollcallNonEmployeeKind"]


def test_sub_administrators(loaded):
    def groups_of(uid):
        dn = loaded.normalize_dn(f"uid={uid},ou=staff,ou=people,{SUFFIX}")
        return sorted(loaded.normalize_dn(g) for g, a in search(loaded, "ou=sites", eq("objectClass", "groupOfNames"))
                      if dn in {loaded.normalize_dn(m) for m in text(a["member"])}
                      and g.startswith("cn=student-email-admins"))

    assert [g.split(",")[1] for g in groups_of("rjohnson")] == ["ou=5678", "ou=9012"]
    assert [g.split(",")[1] for g in groups_of("tnguyen")] == ["ou=1234"]
    assert groups_of("bcarter") and groups_of("ewilson") == []


def test_sis_records(loaded):
    sis = search(loaded, "ou=sis", eq("objectClass", "rollcallSisRecord"))
    linked = [a for _, a in sis if "rollcallLinkedAccount" in a]
    assert len(linked) == 60
    for a in linked:
        account = loaded.lookup(loaded.normalize_dn(text(a["rollcallLinkedAccount"])[0]))
        assert account.attrs["employeeNumber"] == a["employeeNumber"]
        assert account.attrs["rollcallSisSourceId"] == a["rollcallSisSourceId"]
    orphans = [a for _, a in sis if "rollcallLinkedAccount" not in a]
    assert len(orphans) == 3
    ids = {text(a["employeeNumber"])[0] for a in orphans}
    assert not any(search(loaded, "ou=people", eq("employeeNumber", i)) for i in ids)


def test_passwords_hashed_and_credentials_verify(loaded):
    for dn, attrs in search(loaded, "", ("present", "userPassword")):
        assert all(v.startswith(b"{ARGON2}") for v in attrs["userPassword"]), dn
    creds = credentials(SUFFIX)
    assert {pw for _, pw in creds} == set(PASSWORDS.values())
    for dn, pw in creds:
        entry = loaded.lookup(loaded.normalize_dn(dn))
        assert entry is not None, dn
        assert text(entry.attrs["rollcallAccountStatus"]) == ["ENABLED"], dn
        assert any(passwords.verify(pw.encode(), h) for h in entry.attrs["userPassword"]), dn


def test_demo_accounts_and_activation_codes(loaded):
    accounts = demo_accounts(SUFFIX)
    assert {a.role for a in accounts} == set(PASSWORDS)
    for a in accounts:
        entry = loaded.lookup(loaded.normalize_dn(a.dn))
        assert text(entry.attrs["rollcallAccountStatus"]) == [a.status]
        if a.status == "PENDING":
            code = a.note.rsplit(" ", 1)[1]
            assert passwords.verify(code.encode(), entry.attrs["rollcallActivationCodeHash"][0])
    table = credential_table(SUFFIX)
    for a in accounts:
        assert a.dn in table


def test_photos(loaded):
    students = search(loaded, "ou=students,ou=people", eq("objectClass", "rollcallStudent"))
    published = [a for _, a in students if text(a["rollcallPhotoStatus"]) == ["PUBLISHED"]]
    assert published and all(a["jpegPhoto"][0][:3] == b"\xff\xd8\xff" for a in published)
    assert all("jpegPhoto" not in a for _, a in students if text(a["rollcallPhotoStatus"]) != ["PUBLISHED"])
    # every STAGED student has its photo waiting under ou=staged-photos (what the photo
    # roster reads), valid by the photo rules, and no other student has one
    staged_ids = {text(a["employeeNumber"])[0] for _, a in students if text(a["rollcallPhotoStatus"]) == ["STAGED"]}
    staged = search(loaded, "ou=staged-photos", eq("objectClass", "rollcallStagedPhoto"), SCOPE_ONE)
    assert staged_ids and {text(a["employeeNumber"])[0] for _, a in staged} == staged_ids
    by_id = {text(a["employeeNumber"])[0]: (dn, a) for dn, a in students}
    for _, a in staged:
        check_photo(a["jpegPhoto"][0])
        student_dn, student = by_id[text(a["employeeNumber"])[0]]
        assert text(a["departmentNumber"]) == text(student["departmentNumber"])
        assert text(a["rollcallPhotoStudent"]) == [student_dn]
        assert text(a["rollcallPhotoDigest"]) == [hashlib.sha256(a["jpegPhoto"][0]).hexdigest()]


def test_ldif_is_deterministic_and_has_no_memberof():
    a, b = demo_ldif(SUFFIX), demo_ldif(SUFFIX)
    assert a == b
    assert not re.search(r"(?im)^memberOf:", a)
    parsed = list(records(io.BytesIO(a.encode()), "demo"))
    assert len(parsed) == TOTAL + sum(1 for r in parsed if ",ou=staged-photos," in r[1])  # + the staged photos
    other = demo_ldif("dc=other,dc=example")
    assert "dc=district" not in other and other.count("\ndn: ") == a.count("\ndn: ")


def test_scope_base_on_a_site(loaded):
    (dn, attrs), = search(loaded, "ou=1234,ou=sites", scope=SCOPE_BASE)
    assert text(attrs["objectClass"]) == ["top", "rollcallSite"]


# -- the shipped configuration: POSIX on, the demo numbered ---------------------------


def test_shipped_config_numbers_the_demo_for_linux_labs(tmp_path):
    """scripts/serve's first start (config.yaml as shipped, demo.load_demo): every person
    has a unique uidNumber with a home and shell, every site group a unique gidNumber,
    and a student's site group is a posixGroup naming the student — what SSSD's `id` shows."""
    import yaml
    from directory.demo import load_demo
    doc = yaml.safe_load((ROOT / "config.yaml").read_text())
    doc["schema"] = [str(ROOT / p) for p in doc["schema"]]
    doc["store"] = {"backend": "sqlite", "path": str(tmp_path / "rollcall.db")}
    doc["tls"] = {"cert": str(tmp_path / "server.crt"), "key": str(tmp_path / "server.key")}
    doc.pop("web", None)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc))
    d = open_directory(load_config(tmp_path / "config.yaml"))
    n, counts = load_demo(d, SUFFIX)
    people = search(d, "ou=people", ("eq", "objectClass", b"inetOrgPerson"))
    assert n > 100 and counts["account"] == len(people) > 70
    uid_numbers = [int(a["uidNumber"][0]) for _, a in people]
    assert len(set(uid_numbers)) == len(people) and min(uid_numbers) >= 10000
    assert all(a["homeDirectory"] == [b"/home/" + a["uid"][0]] and a["loginShell"] == [b"/bin/bash"]
               for _, a in people)
    groups = search(d, "ou=sites", ("eq", "objectClass", b"groupOfNames"))
    assert counts["group"] == len(groups) > 0
    assert len({a["gidNumber"][0] for _, a in groups}) == len(groups)
    assert all(b"posixGroup" in a["objectClass"] for _, a in groups)
    jsmith = search(d, "ou=people", eq("uid", "jsmith"))[0][0]
    mine = [a for _, a in groups if jsmith.encode() in a.get("member", [])]
    assert mine, "jsmith is in no site group"
    # posix-assign again: nothing left to number
    assert d.posix.assign_missing() == {"account": 0, "group": 0}
