"""District HR CSV (`rollcall sync hr`): employees -> ou=staff and their sites' staff
groups, end to end over a real server."""
from tests.conftest import SUFFIX

from .test_district_csv import ROWS as STUDENT_ROWS

STAFF = f"ou=staff,ou=people,{SUFFIX}"
HR_HEADER = "employee_id,first_name,middle_name,last_name,email,site_code,job_title,status,hire_date,leave_date\n"
HR = [
    "700001e001,Carla,María,Díaz,,1111,Teacher,Active,2020-08-01,",
    "700002e002,Dan,,Okafor,dan@example.org,1111;2222,Principal,ACTIVE,2019-07-01,",
    "700003e003,Eve,,Lee,,2222,aide,Active,2024-01-10,",
    "700004e004,Frank,,Moss,,3333,Counselor,On Leave,2018-08-01,",
    "700005e005,Gina,,Park,,3333,Custodian,Active,2021-03-01,",
    "700006e006,Hal,,Ito,,1111,teacher,Active,2015-08-01,",
]


def staff(sync):
    c = sync.admin()
    c.search(STAFF, "(employeeNumber=7*)", attributes=["*"])
    out = {e.employeeNumber.value: e for e in c.entries}
    c.unbind()
    return out


def test_hr_first_load_rerun_transfer_leavers(sync):
    f = sync.csv("hr1.csv", HR, header=HR_HEADER)
    assert sync("hr", f, "--dry-run") == 0
    assert "add-account" in sync.last_output and staff(sync) == {}
    assert sync("hr", f) == 0, sync.last_output
    st = staff(sync)
    assert set(st) == {r[:10] for r in HR}
    carla = st["700001e001"]
    assert carla.uid.value == "cdiaz" and carla.entry_dn.lower() == f"uid=cdiaz,{STAFF}".lower()
    assert carla.title.value == "teacher" and carla.rollcallMiddleName.value == "María"
    assert sorted(carla.eduPersonAffiliation.values) == ["faculty", "staff"]
    assert carla.rollcallAccountStatus.value == "PENDING"
    assert sorted(st["700002e002"].departmentNumber.values) == ["1111", "2222"]
    assert st["700002e002"].title.value == "principal" and st["700002e002"].mail.value == "dan@example.org"
    assert st["700005e005"].title.value == "Custodian" and st["700005e005"].eduPersonAffiliation.values == ["staff"]
    assert carla.entry_dn.lower() in sync.members("1111", "staff")
    assert st["700002e002"].entry_dn.lower() in sync.members("2222", "staff")
    rec = sync.records()["700001e001"]
    assert rec["rollcallSisSource"] == ["district-hr/staff"] and rec["title"] == ["teacher"]
    assert sync.report()["counts"]["add-account"] == 6
    # the same file again: nothing
    assert sync("hr", f) == 0 and sync.report()["counts"] == {}, sync.report()["counts"]
    # students and staff are separate bulk sources: neither file withdraws the other's people
    assert sync("sis", sync.csv("d1.csv", STUDENT_ROWS)) == 0
    assert sync("hr", f) == 0 and sync.report()["counts"] == {}, sync.report()["counts"]
    assert all(a.rollcallAccountStatus.value == "PENDING" for a in staff(sync).values())

    # transfer (Carla 1111 -> 3333), a new title, a leaver with a date, one absent
    rows = [HR[0].replace(",1111,Teacher,", ",3333,Principal,"), HR[1],
            HR[2].replace("Active,2024-01-10,", "Terminated,2024-01-10,2025-09-05"), HR[3], HR[4]]
    f2 = sync.csv("hr2.csv", rows, header=HR_HEADER)
    assert sync("hr", f2, today="2025-09-06") == 0, sync.last_output
    counts = sync.report()["counts"]
    assert counts.get("move") == 1 and counts.get("withdraw") == 2, counts
    st = staff(sync)
    carla = st["700001e001"]
    assert carla.departmentNumber.values == ["3333"] and carla.title.value == "principal"
    assert sorted(carla.eduPersonAffiliation.values) == ["staff"]
    dn = carla.entry_dn.lower()
    assert dn in sync.members("3333", "staff") and dn not in sync.members("1111", "staff")
    assert st["700003e003"].rollcallAccountStatus.value == "PENDING"       # grace period
    assert sync.records()["700003e003"]["rollcallEnrollmentStatus"] == ["WITHDRAWN"]
    assert sync.records()["700006e006"]["rollcallEnrollmentStatus"] == ["WITHDRAWN"]
    assert sync("hr", f2, today="2025-09-07") == 0 and sync.report()["counts"] == {}
    # grace (14 days) over: both leavers DISABLED by the sync; the others untouched
    assert sync("hr", f2, today="2025-09-25") == 0, sync.last_output
    assert sync.report()["counts"].get("disable") == 2
    st = staff(sync)
    for eid in ("700003e003", "700006e006"):
        assert st[eid].rollcallAccountStatus.value == "DISABLED"
        assert st[eid].rollcallStatusSource.value == "SYNC"
    assert st["700001e001"].rollcallAccountStatus.value == "PENDING"
    assert sync("hr", f2, today="2025-09-26") == 0 and sync.report()["counts"] == {}
    # rehired: back to PENDING (never activated), same account
    assert sync("hr", sync.csv("hr3.csv", rows[:2] + [HR[2]] + rows[3:], header=HR_HEADER),
                today="2025-09-27") == 0
    assert staff(sync)["700003e003"].rollcallAccountStatus.value == "PENDING"
    assert staff(sync)["700003e003"].entry_dn == st["700003e003"].entry_dn


def test_hr_rejected_rows_and_missing_column(sync, capsys):
    f = sync.csv("hr1.csv", HR, header=HR_HEADER)
    assert sync("hr", f) == 0
    bad = [HR[0].replace("2020-08-01", "someday"), "12345,No,,Body,,1111,teacher,Active,,",
           HR[1].replace("ACTIVE", "SABBATICAL-ISH"), HR[2].replace(",2222,", ",bad code,")] + HR[3:]
    assert sync("hr", sync.csv("bad.csv", bad, header=HR_HEADER)) == 1
    rep = sync.report()
    assert sorted((r["line"], r["column"]) for r in rep["rejected"]) == [
        (2, "hire_date"), (3, "employee_id"), (4, "status"), (5, "site_code")]
    assert rep["counts"] == {}      # rejected rows never count as leavers
    f = sync.csv("x.csv", ["700001e001,Carla"], header="employee_id,first_name\n")
    assert sync("hr", f) == 2
    assert "missing required column" in capsys.readouterr().err
