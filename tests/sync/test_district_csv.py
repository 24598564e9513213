"""District CSV sync, end to end over a real server."""
from tests.conftest import SUFFIX

from .conftest import STUDENTS

ROWS = [
    "100001s001,John,Smith,,2015-03-04,04,1111,ENROLLED,2025-08-18,,",
    "100002s002,Jane,Smith,Q,2014-05-06,05,1111,ENROLLED,2025-08-18,,",
    "100003s003,Liam,O'Brien,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
    "100004s004,Thảo,Nguyễn,,2016-07-08,03,2222,ENROLLED,2025-08-18,,",
    "100005s005,Jörg,Smith,,2013-02-03,06,3333,ENROLLED,2025-08-18,,jorg@example.org",
]


def test_first_load_then_identical_rerun(sync):
    f = sync.csv("d1.csv", ROWS)
    assert sync("sis", f) == 0, sync.last_output
    accs = sync.accounts()
    uids = {did: a.uid.value for did, a in accs.items() if did.startswith("1000")}
    assert uids == {"100001s001": "jsmith", "100002s002": "jsmith2", "100003s003": "lobrien",
                    "100004s004": "tnguyen", "100005s005": "jsmith3"}
    a = accs["100001s001"]
    assert a.rollcallAccountStatus.value == "PENDING"
    assert a.departmentNumber.values == ["1111"]
    recs = sync.records()
    assert set(recs) == {r[:10] for r in ROWS}
    assert recs["100001s001"]["rollcallLinkedAccount"][0].lower() == f"uid=jsmith,{STUDENTS}".lower()
    assert f"uid=jsmith,{STUDENTS}".lower() in sync.members("1111")
    assert sync.report()["counts"]["add-account"] == 5
    # the same file again: nothing to do
    assert sync("sis", f) == 0
    assert sync.report()["counts"] == {}, sync.report()["counts"]
    assert "no changes" in sync.last_output


def test_dry_run_changes_nothing(sync):
    f = sync.csv("d1.csv", ROWS)
    assert sync("sis", f, "--dry-run") == 0
    assert "add-account" in sync.last_output
    assert not any(d.startswith("1000") for d in sync.accounts())
    assert sync.records() == {}


def test_transfer_keeps_account_and_moves_groups(sync):
    f = sync.csv("d1.csv", ROWS)
    assert sync("sis", f) == 0
    before = sync.accounts()["100001s001"]
    rows = [ROWS[0].replace(",1111,", ",2222,")] + ROWS[1:]
    assert sync("sis", sync.csv("d2.csv", rows)) == 0
    after = sync.accounts()["100001s001"]
    assert after.entry_dn == before.entry_dn
    assert after.departmentNumber.values == ["2222"]
    assert sync.report()["counts"].get("move") == 1
    dn = after.entry_dn.lower()
    assert dn in sync.members("2222") and dn not in sync.members("1111")
    assert sync.records()["100001s001"]["departmentNumber"] == ["2222"]
    assert sync("sis", sync.csv("d2.csv", rows)) == 0 and sync.report()["counts"] == {}


def test_withdrawal_grace_disabled_purged_and_name_not_reused(sync):
    assert sync("sis", sync.csv("d1.csv", ROWS), today="2025-09-01") == 0
    rest = sync.csv("d2.csv", ROWS[1:])
    assert sync("sis", rest, today="2025-09-02") == 0           # absent: withdrawn, grace
    a = sync.accounts()["100001s001"]
    assert a.rollcallAccountStatus.value == "PENDING"
    assert a.rollcallEnrollmentStatus.value == "WITHDRAWN"
    rec = sync.records()["100001s001"]
    assert rec["rollcallEnrollmentStatus"] == ["WITHDRAWN"]
    assert sync.report()["counts"].get("withdraw") == 1
    assert sync("sis", rest, today="2025-09-10") == 0           # still in grace: nothing
    assert sync.report()["counts"] == {}
    assert sync("sis", rest, today="2025-09-20") == 0           # grace over: DISABLED
    a = sync.accounts()["100001s001"]
    assert a.rollcallAccountStatus.value == "DISABLED"
    assert a.rollcallStatusSource.value == "SYNC"
    assert sync("sis", rest, today="2025-09-21") == 0 and sync.report()["counts"] == {}
    assert sync("sis", rest, today="2025-12-20") == 0           # retention (100 days) over: purged
    assert "100001s001" not in sync.accounts()
    assert "100001s001" not in sync.records()
    assert f"uid=jsmith,{STUDENTS}".lower() not in sync.members("1111")
    # another John Smith after the purge: jsmith is never issued to anyone else
    other = "100099s099,John,Smith,,2015-03-04,04,1111,ENROLLED,2025-12-01,,"
    assert sync("sis", sync.csv("d3.csv", ROWS[1:] + [other]), today="2025-12-21") == 0
    assert sync.accounts()["100099s099"].uid.value == "jsmith4"
    # the same person coming back gets their own name again (a new account)
    assert sync("sis", sync.csv("d4.csv", ROWS + [other]), today="2025-12-22") == 0
    assert sync.accounts()["100001s001"].uid.value == "jsmith"
    assert sync.accounts()["100001s001"].rollcallAccountStatus.value == "PENDING"


def test_reenrollment_within_retention_reenables_same_account(sync):
    assert sync("sis", sync.csv("d1.csv", ROWS), today="2025-09-01") == 0
    dn = sync.accounts()["100002s002"].entry_dn
    rest = [r for r in ROWS if not r.startswith("100002")]
    assert sync("sis", sync.csv("d2.csv", rest), today="2025-09-02") == 0
    assert sync("sis", sync.csv("d2.csv", rest), today="2025-10-01") == 0
    assert sync.accounts()["100002s002"].rollcallAccountStatus.value == "DISABLED"
    assert sync("sis", sync.csv("d1.csv", ROWS), today="2025-10-05") == 0
    a = sync.accounts()["100002s002"]
    assert a.entry_dn == dn
    # never activated (no password): back to PENDING, not ENABLED
    assert a.rollcallAccountStatus.value == "PENDING"
    assert a.rollcallActivationState.value == "NOT_ACTIVATED"
    assert "rollcallDeactivationReason" not in a.entry_attributes_as_dict
    assert a.rollcallEnrollmentStatus.value == "ENROLLED"
    assert sync.report()["counts"].get("enable") == 1
    assert sync("sis", sync.csv("d1.csv", ROWS), today="2025-10-06") == 0 and sync.report()["counts"] == {}


def test_reenrollment_of_an_activated_account_reenables_it(sync):
    assert sync("sis", sync.csv("d1.csv", ROWS), today="2025-09-01") == 0
    dn = sync.accounts()["100002s002"].entry_dn
    c = sync.admin()   # as if the student had activated it (root DN: no account rules)
    assert c.modify(dn, {"rollcallAccountStatus": [("MODIFY_REPLACE", ["ENABLED"])],
                         "rollcallActivationState": [("MODIFY_REPLACE", ["ACTIVATED"])]}), c.result
    rest = [r for r in ROWS if not r.startswith("100002")]
    assert sync("sis", sync.csv("d2.csv", rest), today="2025-09-02") == 0
    assert sync("sis", sync.csv("d2.csv", rest), today="2025-10-01") == 0
    assert sync.accounts()["100002s002"].rollcallAccountStatus.value == "DISABLED"
    assert sync("sis", sync.csv("d1.csv", ROWS), today="2025-10-05") == 0
    assert sync.accounts()["100002s002"].rollcallAccountStatus.value == "ENABLED"


def test_server_refuses_enabling_a_never_activated_account(sync):
    from ldap3 import Connection, Server

    from .conftest import SYNC_PW
    assert sync("sis", sync.csv("d1.csv", ROWS), today="2025-09-01") == 0
    dn = sync.accounts()["100002s002"].entry_dn
    c = Connection(Server(sync.srv.url), f"cn=sis-sync,ou=services,{SUFFIX}", SYNC_PW, auto_bind=True)
    assert c.modify(dn, {"rollcallAccountStatus": [("MODIFY_REPLACE", ["DISABLED"])],
                         "rollcallDeactivationReason": [("MODIFY_REPLACE", ["left"])]}), c.result
    assert not c.modify(dn, {"rollcallAccountStatus": [("MODIFY_REPLACE", ["ENABLED"])]})
    assert c.result["result"] == 53 and "never activated" in c.result["message"]
    assert c.modify(dn, {"rollcallAccountStatus": [("MODIFY_REPLACE", ["PENDING"])]}), c.result
    # PENDING again: only its holder's activation enables it; it cannot be forced back to PENDING later
    assert not c.modify(dn, {"rollcallAccountStatus": [("MODIFY_REPLACE", ["ENABLED"])]})
    c.unbind()


def test_middle_names_stored_and_a_change_is_an_update(sync):
    f = sync.csv("d1.csv", ROWS)
    assert sync("sis", f) == 0, sync.last_output
    accs, recs = sync.accounts(), sync.records()
    assert accs["100002s002"].rollcallMiddleName.value == "Q"
    assert recs["100002s002"]["rollcallMiddleName"] == ["Q"]
    assert "rollcallMiddleName" not in accs["100001s001"].entry_attributes_as_dict
    assert "rollcallMiddleName" not in recs["100001s001"]
    rows = [ROWS[0].replace("John,Smith,,", "John,Smith,Paul Émile,"), ROWS[1].replace(",Q,", ",Quinn,")] + ROWS[2:]
    f2 = sync.csv("d2.csv", rows)
    assert sync("sis", f2) == 0, sync.last_output
    counts = sync.report()["counts"]
    assert counts.get("update") == 2 and counts.get("update-record") == 2, counts
    accs, recs = sync.accounts(), sync.records()
    assert accs["100001s001"].rollcallMiddleName.value == "Paul Émile"
    assert accs["100002s002"].rollcallMiddleName.value == "Quinn"
    assert recs["100001s001"]["rollcallMiddleName"] == ["Paul Émile"]
    assert accs["100001s001"].uid.value == "jsmith"        # the username does not change
    assert sync("sis", f2) == 0 and sync.report()["counts"] == {}
    # dropped from the SIS: removed
    assert sync("sis", f) == 0
    accs, recs = sync.accounts(), sync.records()
    assert "rollcallMiddleName" not in accs["100001s001"].entry_attributes_as_dict
    assert "rollcallMiddleName" not in recs["100001s001"]
    assert accs["100002s002"].rollcallMiddleName.value == "Q"
    assert sync("sis", f) == 0 and sync.report()["counts"] == {}


def test_admin_disabled_student_stays_disabled(sync):
    assert sync("sis", sync.csv("d1.csv", ROWS)) == 0
    a = sync.accounts()["100003s003"]
    c = sync.admin()
    # an administrator (here the root DN, acting as one) disables with reason and reference
    assert c.modify(a.entry_dn, {"rollcallAccountStatus": [("MODIFY_REPLACE", ["DISABLED"])],
                                 "rollcallStatusSource": [("MODIFY_REPLACE", ["ADMIN"])],
                                 "rollcallDeactivationReason": [("MODIFY_REPLACE", ["parental refusal"])],
                                 "rollcallDeactivationReference": [("MODIFY_REPLACE", ["FORM-7"])]}), c.result
    # a new file with a change for that student (grade), identical otherwise
    rows = [r.replace(",07,2222,", ",08,2222,") if r.startswith("100003") else r for r in ROWS]
    assert sync("sis", sync.csv("d2.csv", rows)) == 0, sync.last_output
    a = sync.accounts()["100003s003"]
    assert a.rollcallAccountStatus.value == "DISABLED"
    assert a.rollcallGrade.value == "08"
    assert sync.report()["counts"].get("keep-disabled") == 1
    assert sync("sis", sync.csv("d2.csv", rows), "--full") == 0
    assert sync.accounts()["100003s003"].rollcallAccountStatus.value == "DISABLED"


def test_collisions_apostrophes_non_ascii(sync):
    rows = [
        "200001s001,Liam,O'Brien,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200002s002,Lena,Obrien,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200003s003,Søren,Østergaard-Müller,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200004s004,Ana-María,García López,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200005s005,Zoë,D'Angelo,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200006s006,Zack,Dangelo,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200007s007,Ab,Abcdefghijklmnopqrstuvwxyz,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200008s008,Ax,Abcdefghijklmnopqrstuvwxyz,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200009s009,明,王,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
        "200010s010,Иван,Петров,,2012-01-02,07,2222,ENROLLED,2025-08-18,,",
    ]
    assert sync("sis", sync.csv("n.csv", rows)) == 0, sync.last_output
    uids = {d: a.uid.value for d, a in sync.accounts().items() if d.startswith("2000")}
    assert uids["200001s001"] == "lobrien" and uids["200002s002"] == "lobrien2"
    assert uids["200003s003"] == "sostergaardmuller"
    assert uids["200004s004"] == "agarcialopez"
    assert uids["200005s005"] == "zdangelo" and uids["200006s006"] == "zdangelo2"
    assert uids["200007s007"] == "aabcdefghijklmnopqrs" and len(uids["200008s008"]) == 20
    assert uids["200008s008"] == "aabcdefghijklmnopqr2"
    # other scripts are transliterated (issue 16): not user<district ID>
    assert uids["200009s009"] == "mwang" and uids["200010s010"] == "ipetrov"


def test_malformed_rows_are_reported_and_do_not_withdraw(sync):
    assert sync("sis", sync.csv("d1.csv", ROWS)) == 0
    bad = [
        "100001s001,John,Smith,,not-a-date,04,1111,ENROLLED,2025-08-18,,",   # bad birth date
        ",Nobody,Here,,2015-03-04,04,1111,ENROLLED,2025-08-18,,",          # no district ID
        "12345,Short,Id,,2015-03-04,04,1111,ENROLLED,2025-08-18,,",        # bad district ID
        "100009s009,Gr,Ade,,2015-03-04,99,1111,ENROLLED,2025-08-18,,",     # bad grade
        "100010s010,Too,Few",                                               # short row
    ] + ROWS[1:]
    assert sync("sis", sync.csv("bad.csv", bad)) == 1
    rep = sync.report()
    cols = sorted((r["line"], r["column"]) for r in rep["rejected"])
    assert cols == [(2, "birth_date"), (3, "district_id"), (4, "district_id"), (5, "grade"), (6, "")]
    assert "bad.csv:2: birth_date" in sync.last_output
    # 100001s001's only row was rejected: it is NOT treated as having left
    assert sync.accounts()["100001s001"].rollcallEnrollmentStatus.value == "ENROLLED"
    assert rep["counts"] == {}


def test_missing_column_is_an_input_error(sync, capsys):
    f = sync.csv("x.csv", ["100001s001,John"], header="district_id,first_name\n")
    assert sync("sis", f) == 2
    assert "missing required column" in capsys.readouterr().err


def test_empty_and_header_only_files_are_refused(sync):
    assert sync("sis", sync.csv("d1.csv", ROWS)) == 0
    for f in (sync.csv("h.csv", []), sync.csv("e.csv", [], header="")):
        assert sync("sis", f) == 3
        assert sync("sis", f, "--force") == 3
        assert "never means that everyone left" in sync.last_output
    assert all(a.rollcallEnrollmentStatus.value == "ENROLLED" for d, a in sync.accounts().items()
               if d.startswith("1000"))


def test_threshold_refusal_and_force(sync):
    sync.sync_cfg["thresholds"] = {"max_deactivations": 2, "max_deactivation_percent": 100}
    sync.write_config()
    assert sync("sis", sync.csv("d1.csv", ROWS)) == 0
    few = sync.csv("few.csv", ROWS[:1])
    assert sync("sis", few) == 3
    assert "max_deactivations" in sync.last_output
    assert all(a.rollcallEnrollmentStatus.value == "ENROLLED" for d, a in sync.accounts().items()
               if d.startswith("1000"))
    assert sync("sis", few, "--dry-run") == 3
    sync.sync_cfg["thresholds"] = {"max_deactivations": 100, "max_deactivation_percent": 20}
    sync.write_config()
    assert sync("sis", few) == 3 and "max_deactivation_percent" in sync.last_output
    assert sync("sis", few, "--force") == 0
    assert sync.report()["forced"]
    assert sum(a.rollcallEnrollmentStatus.value == "WITHDRAWN" for d, a in sync.accounts().items()
               if d.startswith("1000")) == 4
    c = sync.admin()
    c.search(f"ou=runs,ou=sis,{SUFFIX}", "(objectClass=applicationProcess)", attributes=["description"])
    assert len(c.entries) == 1 and "--force" in c.entries[0].description.value


def test_bom_quotes_and_multiple_enrollments(sync):
    text = ("\ufeffDistrict_ID,First_Name,Last_Name,Birth_Date,Grade,School_Code,Enrollment_Status,Entry_Date,Leave_Date,Extra\n"
            '300001s001,"Mary, Ann","Smith ""Jr""",2014-01-01,5,1111,Enrolled,2025-08-18,,x\n'
            "300001s001,\"Mary, Ann\",\"Smith \"\"Jr\"\"\",2014-01-01,5,2222,ENROLLED,2025-08-18,,y\n"
            "300002s002,Old,School,2014-01-01,5,1111,ENROLLED,2024-08-18,2025-06-01,\n"
            "300002s002,Old,School,2014-01-01,6,3333,ENROLLED,2025-08-18,,\n")
    f = sync.workdir / "bom.csv"
    f.write_bytes(text.encode("utf-8"))
    assert sync("sis", f) == 0, sync.last_output
    accs = sync.accounts()
    a = accs["300001s001"]
    assert a.givenName.value == "Mary, Ann" and a.sn.value == 'Smith "Jr"'
    assert sorted(a.departmentNumber.values) == ["1111", "2222"]
    assert accs["300002s002"].departmentNumber.values == ["3333"]
    assert accs["300002s002"].rollcallGrade.value == "06"


def test_withdrawn_without_leave_date_keeps_the_first_day_seen(sync):
    assert sync("sis", sync.csv("d1.csv", ROWS), today="2025-09-01") == 0
    rows = [ROWS[0].replace(",ENROLLED,", ",WITHDRAWN,")] + ROWS[1:]
    f = sync.csv("d2.csv", rows)
    assert sync("sis", f, today="2025-09-02") == 0
    v = sync.records()["100001s001"]["rollcallWithdrawalDate"][0]
    assert (v.strftime("%Y%m%d") if hasattr(v, "strftime") else v[:8]) == "20250902"
    assert sync("sis", f, today="2025-09-05") == 0 and sync.report()["counts"] == {}, sync.report()["counts"]
    assert sync("sis", f, today="2025-09-20") == 0
    assert sync.accounts()["100001s001"].rollcallAccountStatus.value == "DISABLED"
