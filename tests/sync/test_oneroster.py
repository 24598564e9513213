"""OneRoster 1.1 and 1.2 CSV packages (fixtures written from the specification)."""
import shutil
import zipfile
from pathlib import Path

from tests.conftest import SUFFIX

FIX = Path(__file__).parent / "fixtures"
STAFF = f"ou=staff,ou=people,{SUFFIX}"


def zipped(tmp, name, edit=None):
    src = FIX / name
    work = tmp / name
    shutil.copytree(src, work, dirs_exist_ok=True)
    if edit:
        edit(work)
    z = tmp / f"{name}.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(work.iterdir()):
            zf.write(f, f.name)
    return z


def staff(sync):
    c = sync.admin()
    c.search(STAFF, "(employeeNumber=5*)", attributes=["*"])
    c2 = sync.admin()
    c2.search(STAFF, "(employeeNumber=6*)", attributes=["*"])
    return {e.employeeNumber.value: e for e in c.entries + c2.entries}


def test_oneroster_11_bulk_then_delta(sync, tmp_path):
    z = zipped(tmp_path, "oneroster-1.1-bulk")
    assert sync("oneroster", z) == 0, sync.last_output
    accs = sync.accounts()
    assert accs["500001s001"].uid.value == "alee"
    assert accs["500001s001"].rollcallBirthDate.value == "20140203"
    assert sorted(accs["500002s002"].departmentNumber.values) == ["1111", "2222"]
    assert accs["500002s002"].uid.value == "boneil"
    # enabledUser=false: recorded as INACTIVE, no account provisioned
    assert "500005s005" not in accs
    assert sync.records()["stu-5"]["rollcallEnrollmentStatus"] == ["INACTIVE"]
    st = staff(sync)
    assert st["500003e003"].uid.value == "cdiaz" and st["500003e003"].title.value == "teacher"
    assert st["500003e003"].mail.value == "cdiaz@district.example"
    assert sorted(st["500006e006"].departmentNumber.values) == ["1111", "2222"]
    assert st["500003e003"].entry_dn.lower() in sync.members("1111", "staff")
    assert accs["500002s002"].entry_dn.lower() in sync.members("2222")
    # guardians are not directory accounts here; sites: names from orgs.csv
    c = sync.admin()
    c.search(f"ou=2222,ou=sites,{SUFFIX}", "(objectClass=*)", search_scope="BASE", attributes=["rollcallSiteName"])
    assert c.entries[0].rollcallSiteName.value == "Lakeside Middle"
    # identical package: nothing
    assert sync("oneroster", z) == 0 and sync.report()["counts"] == {}, sync.report()["counts"]
    # delta: stu-2 tobedeleted (withdrawn, grace), stu-3 new; others untouched
    d = zipped(tmp_path, "oneroster-1.1-delta")
    assert sync("oneroster", d, today="2025-09-03") == 0, sync.last_output
    accs = sync.accounts()
    assert accs["500002s002"].rollcallEnrollmentStatus.value == "WITHDRAWN"
    assert accs["500002s002"].rollcallAccountStatus.value == "PENDING"        # grace period
    assert accs["500004s004"].departmentNumber.values == ["2222"]
    assert accs["500001s001"].rollcallEnrollmentStatus.value == "ENROLLED"
    counts = sync.report()["counts"]
    assert counts.get("add-account") == 1 and counts.get("withdraw") == 1
    # after the grace period the delta's withdrawal disables the account
    assert sync("oneroster", d, today="2025-09-20") == 0
    assert sync.accounts()["500002s002"].rollcallAccountStatus.value == "DISABLED"


def test_oneroster_12_bulk_with_roles(sync, tmp_path):
    z = zipped(tmp_path, "oneroster-1.2-bulk")
    assert sync("oneroster", z, today="2025-09-01") == 0, sync.last_output
    accs = sync.accounts()
    assert accs["600001s001"].departmentNumber.values == ["1111"]
    assert sorted(accs["600002s002"].departmentNumber.values) == ["1111", "2222"]
    assert "600004s004" not in accs                                # role ended 2025-06-01
    assert sync.records()["u-4"]["rollcallEnrollmentStatus"] == ["INACTIVE"]
    st = staff(sync)
    assert st["600003e003"].title.value == "principal"
    assert sync("oneroster", z, today="2025-09-01") == 0 and sync.report()["counts"] == {}
    # dropped from the next bulk file: withdrawn (same as the district CSV)
    def drop_u1(work):
        lines = (work / "users.csv").read_text().splitlines(True)
        (work / "users.csv").write_text("".join(l for l in lines if not l.startswith("u-1,")))
    z2 = zipped(tmp_path, "oneroster-1.2-bulk", drop_u1)
    assert sync("oneroster", z2, today="2025-09-02") == 0, sync.last_output
    assert sync.accounts()["600001s001"].rollcallEnrollmentStatus.value == "WITHDRAWN"


def test_oneroster_missing_column_and_value(sync, tmp_path, capsys):
    def no_identifier(work):
        text = (work / "users.csv").read_text().replace(",identifier,", ",districtId,", 1)
        (work / "users.csv").write_text(text)
    z = zipped(tmp_path, "oneroster-1.1-bulk", no_identifier)
    assert sync("oneroster", z) == 2
    err = capsys.readouterr().err
    assert "users.csv" in err and "identifier" in err

    def empty_given(work):
        text = (work / "users.csv").read_text().replace(",Amy,Lee,", ",,Lee,")
        (work / "users.csv").write_text(text)
    z = zipped(tmp_path, "oneroster-1.1-bulk", empty_given)
    assert sync("oneroster", z) == 1
    rej = sync.report()["rejected"]
    assert [(r["file"], r["line"], r["column"]) for r in rej] == [("users.csv", 2, "givenName")]


def test_oneroster_bad_manifest(sync, tmp_path, capsys):
    def v2(work):
        text = (work / "manifest.csv").read_text().replace("oneroster.version,1.1", "oneroster.version,2.0")
        (work / "manifest.csv").write_text(text)
    assert sync("oneroster", zipped(tmp_path, "oneroster-1.1-bulk", v2)) == 2
    assert "oneroster.version" in capsys.readouterr().err
