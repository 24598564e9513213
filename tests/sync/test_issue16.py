"""Issue 16: real exports must never cost anyone an account. One scenario per point,
over a real server; the packages are written by the tests (OneRoster 1.1 and 1.2,
bulk and delta)."""
import zipfile

from tests.conftest import SUFFIX

STAFF = f"ou=staff,ou=people,{SUFFIX}"
U11 = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
U12 = "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,preferredGivenName"
ROLES = "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId"
ORGS = ("sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
        "org-d,,,Test District,district,0001,\norg-1111,,,School 1111,school,1111,org-d\n"
        "org-2222,,,Lakeside Middle,school,2222,org-d\n")
DEMO = "sourcedId,status,dateLastModified,birthDate"


def package(tmp, name, version="1.1", **files):
    """files: users=…, orgs=…, roles=…, demographics=… as text; a mode suffix
    ('users_mode') picks bulk/delta; a file not given is `absent` in the manifest."""
    modes = {k[:-5]: v for k, v in files.items() if k.endswith("_mode")}
    files = {k: v for k, v in files.items() if not k.endswith("_mode")}
    man = ["propertyName,value", "manifest.version,1.0", f"oneroster.version,{version}"]
    for f in ("academicSessions", "classes", "courses", "demographics", "enrollments", "orgs", "users", "roles"):
        man.append(f"file.{f},{modes.get(f, 'bulk') if f in files else 'absent'}")
    z = tmp / f"{name}.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("manifest.csv", "\n".join(man) + "\n")
        for f, text in files.items():
            zf.writestr(f"{f}.csv", text if text.endswith("\n") or not text else text + "\n")
    return z


def u11(*rows):
    return "\n".join((U11,) + rows) + "\n"


def stu11(n, org="org-1111", enabled="true", status="", modified="", given=None, family="Pupil", grade="05"):
    return (f"stu-{n},{status},{modified},{enabled},\"{org}\",student,,,{given or 'Kid' + str(n)},{family},,"
            f"50000{n}s00{n},,,,,{grade},")


def day(values):
    v = values[0]
    return v if isinstance(v, str) else v.strftime("%Y%m%d")


def staff(sync):
    c = sync.admin()
    c.search(STAFF, "(employeeNumber=*)", attributes=["*"])
    return {e.employeeNumber.value: e for e in c.entries}


# ---------------------------------------------------------------- 1. purge on first sight
def test_1_disabled_user_with_old_date_is_not_purged_at_once(sync, tmp_path):
    orgs = ORGS
    z = package(tmp_path, "a", users=u11(stu11(1), stu11(2)), orgs=orgs)
    assert sync("oneroster", z) == 0, sync.last_output
    assert "500001s001" in sync.accounts()
    # enabledUser=false, last modified two years ago: departure = the day first seen
    z = package(tmp_path, "b", users=u11(stu11(1, enabled="false", modified="2023-01-01T00:00:00Z"), stu11(2)),
                orgs=orgs)
    assert sync("oneroster", z, today="2025-09-02") == 0, sync.last_output
    acc = sync.accounts()["500001s001"]
    assert acc.rollcallAccountStatus.value == "PENDING"             # grace, not purged
    assert day(sync.records()["stu-1"]["rollcallWithdrawalDate"]) == "20250902"
    assert "purge" not in sync.report()["counts"]
    # the same file on later nights: the first-seen date holds; grace -> DISABLED -> purge
    assert sync("oneroster", z, today="2025-09-10") == 0
    assert sync.accounts()["500001s001"].rollcallAccountStatus.value == "PENDING"
    assert sync("oneroster", z, today="2025-09-20") == 0
    assert sync.accounts()["500001s001"].rollcallAccountStatus.value == "DISABLED"
    assert sync("oneroster", z, today="2025-12-20") == 0
    assert "500001s001" not in sync.accounts()


def test_1_role_end_date_is_the_departure_but_never_purged_in_the_first_run(sync, tmp_path):
    users = "\n".join([U12, "u-1,,,true,,,Amy,Lee,,600001s001,,,,,05,,", "u-2,,,true,,,Ben,Ng,,600002s002,,,,,05,,"])
    roles = lambda end: "\n".join([ROLES, f"r-1,,,u-1,primary,student,2024-08-01,{end},org-1111,",  # noqa: E731
                                   "r-2,,,u-2,primary,student,2024-08-01,,org-1111,"])
    assert sync("oneroster", package(tmp_path, "a", "1.2", users=users, roles=roles(""), orgs=ORGS)) == 0, \
        sync.last_output
    # the role ended long ago (more than the retention period): disabled now, purged later
    z = package(tmp_path, "b", "1.2", users=users, roles=roles("2025-01-15"), orgs=ORGS)
    assert sync("oneroster", z, today="2025-09-01") == 0, sync.last_output
    assert sync.accounts()["600001s001"].rollcallAccountStatus.value == "DISABLED"
    assert day(sync.records()["u-1"]["rollcallWithdrawalDate"]) == "20250115"
    assert sync("oneroster", z, today="2025-09-02") == 0
    assert "600001s001" not in sync.accounts()


# ---------------------------------------------------------------- 2. 1.2 deltas
def test_2_roles_delta_removes_one_membership_only(sync, tmp_path):
    users = "\n".join([U12, "u-1,,,true,,,Amy,Lee,,600001s001,,,,,05,,", "u-2,,,true,,,Ben,Ng,,600002s002,,,,,07,,"])
    roles = "\n".join([ROLES, "r-1,,,u-1,primary,student,,,org-1111,", "r-2,,,u-2,primary,student,,,org-2222,",
                       "r-2b,,,u-2,secondary,student,,,org-1111,"])
    assert sync("oneroster", package(tmp_path, "a", "1.2", users=users, roles=roles, orgs=ORGS)) == 0, \
        sync.last_output
    acc = sync.accounts()["600002s002"]
    assert sorted(acc.departmentNumber.values) == ["1111", "2222"]
    # a delta that only deletes u-2's role at 2222: users.csv delta has no rows
    delta = package(tmp_path, "d", "1.2", users=U12 + "\n", users_mode="delta",
                    roles=ROLES + "\nr-2,tobedeleted,2025-09-02T00:00:00Z,u-2,primary,student,,,org-2222,\n"
                    "r-g,active,,g-1,primary,Guardian,,,org-1111,\n",
                    roles_mode="delta")
    assert sync("oneroster", delta, today="2025-09-02") == 0, sync.last_output
    acc = sync.accounts()["600002s002"]
    assert acc.departmentNumber.values == ["1111"]
    assert acc.rollcallEnrollmentStatus.value == "ENROLLED"
    assert acc.entry_dn.lower() in sync.members("1111")
    assert acc.entry_dn.lower() not in (sync.members("2222") or set())
    assert "600001s001" in sync.accounts() and sync.accounts()["600001s001"].departmentNumber.values == ["1111"]
    assert sync.report()["skipped"] == 1 and sync.report()["rejected"] == []
    # a delta of a user row and a new role at 2222: the 1111 membership stays
    delta2 = package(tmp_path, "d2", "1.2", users=U12 + "\nu-2,active,,true,,,Benjamin,Ng,,600002s002,,,,,07,,\n",
                     users_mode="delta", roles=ROLES + "\nr-3,active,,u-2,primary,student,,,org-2222,\n",
                     roles_mode="delta")
    assert sync("oneroster", delta2, today="2025-09-03") == 0, sync.last_output
    acc = sync.accounts()["600002s002"]
    assert sorted(acc.departmentNumber.values) == ["1111", "2222"] and acc.givenName.value == "Benjamin"


# ---------------------------------------------------------------- 3. absent file or column
def test_3_absent_demographics_keeps_birth_dates_and_mass_erasure_is_refused(sync, tmp_path):
    users = u11(stu11(1), stu11(2), stu11(3), stu11(4))
    demo = "\n".join([DEMO] + [f"stu-{n},,,2014-02-0{n}" for n in range(1, 5)])
    assert sync("oneroster", package(tmp_path, "a", users=users, orgs=ORGS, demographics=demo)) == 0
    assert sync.accounts()["500001s001"].rollcallBirthDate.value == "20140201"
    # demographics absent from the manifest: nothing changes
    assert sync("oneroster", package(tmp_path, "b", users=users, orgs=ORGS)) == 0, sync.last_output
    assert sync.report()["counts"] == {}, sync.report()["counts"]
    assert sync.records()["stu-1"]["rollcallBirthDate"] == ["20140201"]
    # a 1.1 delta that renames a student keeps the birth date
    d = package(tmp_path, "d", users=u11(stu11(1, status="active", given="Amelia")), users_mode="delta")
    assert sync("oneroster", d) == 0, sync.last_output
    acc = sync.accounts()["500001s001"]
    assert acc.givenName.value == "Amelia" and acc.rollcallBirthDate.value == "20140201"
    # an explicit empty value clears it — one person is fine, everyone is refused (exit 3)
    demo1 = "\n".join([DEMO, "stu-1,,,"] + [f"stu-{n},,,2014-02-0{n}" for n in range(2, 5)])
    users = u11(stu11(1, given="Amelia"), stu11(2), stu11(3), stu11(4))
    assert sync("oneroster", package(tmp_path, "c", users=users, orgs=ORGS, demographics=demo1)) == 0
    assert "rollcallBirthDate" not in sync.records()["stu-1"]
    demo0 = "\n".join([DEMO] + [f"stu-{n},,," for n in range(2, 5)])
    sync.sync_cfg["thresholds"]["max_changes"] = 2
    sync.write_config()
    assert sync("oneroster", package(tmp_path, "e", users=users, orgs=ORGS, demographics=demo0)) == 3
    assert "rollcallBirthDate" in sync.report()["refused"]
    assert day(sync.records()["stu-2"]["rollcallBirthDate"]) == "20140202"
    # so is a mass change of birth dates (day and month swapped by a wrong date order)
    demo_swapped = "\n".join([DEMO, "stu-1,,,"] + [f"stu-{n},,,2014-0{n}-1{n}" for n in range(2, 5)])
    assert sync("oneroster", package(tmp_path, "f", users=users, orgs=ORGS, demographics=demo_swapped)) == 3
    assert "changed" in sync.report()["refused"]


# ---------------------------------------------------------------- 4. damaged rows and files
def test_4_short_row_protects_its_person(sync, tmp_path):
    assert sync("oneroster", package(tmp_path, "a", users=u11(stu11(1), stu11(2), stu11(3)), orgs=ORGS)) == 0
    short = "stu-2,,,true,org-1111,student,,,Kid2"
    assert sync("oneroster", package(tmp_path, "b", users=u11(stu11(1), short, stu11(3)), orgs=ORGS)) == 1
    rej = sync.report()["rejected"]
    assert [(r["file"], r["line"], r["key"]) for r in rej] == [("users.csv", 3, "stu-2")]
    assert sync.accounts()["500002s002"].rollcallEnrollmentStatus.value == "ENROLLED"
    assert "withdraw" not in sync.report()["counts"]


def test_4_cut_off_file_and_unclosed_quote_are_refused(sync, tmp_path, capsys):
    rows = [stu11(n) for n in range(1, 8)]
    assert sync("oneroster", package(tmp_path, "a", users=u11(*rows), orgs=ORGS)) == 0
    text = u11(*rows[:5])
    cut = text + rows[5][:25]                     # the upload stopped in the middle of row 7
    assert sync("oneroster", package(tmp_path, "b", users=cut, orgs=ORGS)) == 2
    err = capsys.readouterr().err
    assert "users.csv: line 7" in err and "cut off" in err, err
    stray = u11(*rows[:2], rows[2].replace("Kid3", '"Kid3'), *rows[3:])
    assert sync("oneroster", package(tmp_path, "c", users=stray, orgs=ORGS)) == 2
    err = capsys.readouterr().err
    assert "users.csv: line 4" in err and "quote" in err, err
    # a quote closed further down, swallowing rows in between
    swallow = u11(*rows[:2], rows[2].replace("Kid3", '"Kid3'), rows[3], rows[4].replace("Kid5", 'Kid5"'), *rows[5:])
    assert sync("oneroster", package(tmp_path, "d", users=swallow, orgs=ORGS)) == 2
    assert "users.csv: line 4" in capsys.readouterr().err
    assert all(a.rollcallEnrollmentStatus.value == "ENROLLED" for k, a in sync.accounts().items()
               if k.startswith("50000"))


def test_4_district_csv_cut_off(sync):
    rows = [f"10000{n}s00{n},A{n},B,,2014-01-01,05,1111,ENROLLED,2025-08-20,," for n in range(1, 6)]
    assert sync("sis", sync.csv("a.csv", rows)) == 0
    assert sync("sis", sync.csv("b.csv", rows[:4] + [rows[4][:20]])) == 2
    mine = [a for k, a in sync.accounts().items() if k.startswith("10000")]
    assert len(mine) == 5 and all(a.rollcallEnrollmentStatus.value == "ENROLLED" for a in mine)


# ---------------------------------------------------------------- 5. duplicate keys
def test_5_duplicate_keys_reject_both_rows_and_protect_both_people(sync, tmp_path):
    assert sync("oneroster", package(tmp_path, "a", users=u11(stu11(1), stu11(2), stu11(3)), orgs=ORGS)) == 0
    dup_sid = stu11(2).replace("Kid2", "Other")
    assert sync("oneroster", package(tmp_path, "b", users=u11(stu11(1), stu11(2), stu11(3), dup_sid), orgs=ORGS),
                "--dry-run") == 1
    rej = sync.report()["rejected"]
    assert sorted((r["line"], r["column"]) for r in rej) == [(3, "sourcedId"), (5, "sourcedId")]
    assert "line(s) 5" in rej[0]["reason"]
    assert sync("oneroster", package(tmp_path, "b", users=u11(stu11(1), stu11(2), stu11(3), dup_sid),
                                     orgs=ORGS)) == 1
    assert sync.accounts()["500002s002"].givenName.value == "Kid2"
    # one district ID on two sourcedIds: both rejected, neither person withdrawn
    dup_id = stu11(3).replace("stu-3", "stu-9")
    assert sync("oneroster", package(tmp_path, "c", users=u11(stu11(1), stu11(2), stu11(3), dup_id),
                                     orgs=ORGS)) == 1
    assert sorted(r["line"] for r in sync.report()["rejected"]) == [4, 5]
    assert all(a.rollcallEnrollmentStatus.value == "ENROLLED" for k, a in sync.accounts().items()
               if k.startswith("50000"))
    assert "stu-9" not in sync.records()


# ---------------------------------------------------------------- 6. slash dates
def test_6_slash_dates_follow_the_configured_order(sync):
    row = "100001s001,Ann,Lee,,{b},05,1111,ENROLLED,2025-08-20,,"
    assert sync("sis", sync.csv("a.csv", [row.format(b="03/05/2014"), row.format(b="2014-01-01")
                                          .replace("100001s001", "100002s002")])) == 1
    rej = sync.report()["rejected"]
    assert [(r["line"], r["column"]) for r in rej] == [(2, "birth_date")] and "date_order" in rej[0]["reason"]
    assert "100001s001" not in sync.accounts()
    sync.sync_cfg["date_order"] = "DMY"
    sync.write_config()
    other = row.format(b="2014-01-01").replace("100001s001", "100002s002")
    assert sync("sis", sync.csv("b.csv", [row.format(b="03/05/2014"), other])) == 0, sync.last_output
    assert sync.accounts()["100001s001"].rollcallBirthDate.value == "20140503"
    sync.sync_cfg["date_order"] = "MDY"
    sync.write_config()
    # the order of one source's file on the command line, over the configuration
    from sync.cli import run
    import argparse
    import io
    args = argparse.Namespace(sync_kind="sis", input=str(sync.csv("d.csv", [row.format(b="13/05/2014"), other])),
                              config=str(sync.config), dry_run=True, force=False, source=None, full=False,
                              today="2025-09-01", every=None, progress=False, quiet=False, date_order="DMY")
    assert run(args, out=io.StringIO()) == 0          # MDY (the configuration) would reject 13/05
    assert any(a["op"] == "update" and "rollcallBirthDate" in a["detail"] for a in sync.report()["actions"])
    assert sync("sis", sync.csv("c.csv", [row.format(b="13/05/2014"), other])) == 1
    assert "MDY" in sync.report()["rejected"][0]["reason"]
    assert sync.accounts()["100001s001"].rollcallBirthDate.value == "20140503"   # the bad row changed nothing


# ---------------------------------------------------------------- 7. threshold counts people
def test_7_threshold_counts_each_person_once(sync):
    rows = [f"10000{n}s00{n},A{n},B,,2014-01-01,05,1111,ENROLLED,2025-08-20,," for n in range(1, 7)]
    assert sync("sis", sync.csv("a.csv", rows)) == 0
    sync.sync_cfg["thresholds"]["max_deactivations"] = 2
    sync.write_config()
    # three left a month ago: each withdrawn and disabled in this run — three people, not six
    left = [r.replace("ENROLLED,2025-08-20,,", "WITHDRAWN,2025-08-20,2025-08-25,") for r in rows[:3]]
    b = sync.csv("b.csv", left + rows[3:])
    assert sync("sis", b, "--dry-run", today="2025-09-30") == 3
    assert sync.report()["refused"].startswith("3 withdrawals/disables/purges"), sync.report()["refused"]
    sync.sync_cfg["thresholds"]["max_deactivations"] = 3
    sync.write_config()
    assert sync("sis", b, today="2025-09-30") == 0, sync.last_output
    assert sum(1 for k, a in sync.accounts().items()
               if k.startswith("10000") and a.rollcallAccountStatus.value == "DISABLED") == 3


# ---------------------------------------------------------------- 8. district ID: pattern and field
def test_8_district_id_pattern_and_field_are_configuration(tmp_path):
    from tests.sync.conftest import ROOT, SCHEMA_FILES, DEFAULT_POLICY, SIS, SyncRunner, access_rules, district_ldif
    from tests.conftest import ServerProcess

    pattern = "S[0-9]{5}"
    extra = {"schema": [str(ROOT / "schema" / n) for n in SCHEMA_FILES], "access": access_rules(),
             "password_policy": DEFAULT_POLICY,
             "indexes": {"rollcallSisSourceId": ["eq"], "rollcallAccountStatus": ["eq"], "employeeNumber": ["eq"],
                         "uid": ["eq"]},
             "sync": {"district_id": {"pattern": pattern}}}
    srv = ServerProcess(tmp_path, extra_config=extra,
                        ldif=district_ldif() + f"\ndn: {SIS}\nobjectClass: organizationalUnit\nou: sis\n").start()
    try:
        sync = SyncRunner(srv, tmp_path, district_id={"pattern": pattern},
                          oneroster={"district_id_field": "userIds:District"})
        users = u11("stu-1,,,true,org-1111,Student,,{District:S00001},Ann,Lee,,,,,,,05,",
                    "stu-2,,,true,org-1111,student,,\"{LDAP:alee},{District:S00002}\",Bo,Lee,,,,,,,05,",
                    "stu-3,,,true,org-1111,student,,{District:123456x789},Cy,Lee,,,,,,,05,")
        assert sync("oneroster", package(tmp_path, "a", users=users, orgs=ORGS)) == 1, sync.last_output
        accs = sync.accounts()
        assert {"S00001", "S00002"} <= set(accs) and "123456x789" not in accs
        assert [(r["line"], r["column"]) for r in sync.report()["rejected"]] == [(4, "userIds")]
        # with the default field (identifier, empty here) nothing can be synced: exit 2, saying why
        sync.sync_cfg["oneroster"] = {"district_id_field": "identifier"}
        sync.write_config()
        assert sync("oneroster", package(tmp_path, "b", users=users, orgs=ORGS)) == 2
        assert "nothing could be synced" in sync.last_output and "district ID" in sync.last_output
        assert all(sync.accounts()[k].rollcallEnrollmentStatus.value == "ENROLLED" for k in ("S00001", "S00002"))
    finally:
        srv.stop()


# ---------------------------------------------------------------- 9. orgs without identifier
def test_9_orgs_without_identifier_and_guid_sourced_ids(sync, tmp_path):
    guid = "7c9e6679-7425-40de-944b-e07fc1f90ae7-0f8fad5b-d9cb-469f-a165-70867728950e"
    orgs = ("sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
            f"{guid},,,Hill School,school,,\nschool-b,,,Bay School,school,,\n")
    users = u11(stu11(1, org=guid), stu11(2, org="school-b"))
    assert sync("oneroster", package(tmp_path, "a", users=users, orgs=orgs)) == 0, sync.last_output
    accs = sync.accounts()
    from sync.sources.oneroster import short_code
    assert accs["500001s001"].departmentNumber.values == [short_code(guid)]
    assert accs["500002s002"].departmentNumber.values == ["school-b"]
    # stable: the same package again changes nothing; a later delta finds the org by its sourcedId
    assert sync("oneroster", package(tmp_path, "a", users=users, orgs=orgs)) == 0
    assert sync.report()["counts"] == {}
    d = package(tmp_path, "d", users=u11(stu11(3, org=guid, status="active")), users_mode="delta")
    assert sync("oneroster", d) == 0, sync.last_output
    assert sync.accounts()["500003s003"].departmentNumber.values == [short_code(guid)]


# ---------------------------------------------------------------- 10. headers, roles, skipped
def test_10_every_header_problem_in_one_run_roles_any_case_skipped_counted(sync, tmp_path, capsys):
    bad_users = u11().replace(",givenName,", ",firstName,")
    bad_orgs = ORGS.replace(",name,", ",title,")
    assert sync("oneroster", package(tmp_path, "a", users=bad_users, orgs=bad_orgs)) == 2
    err = capsys.readouterr().err
    assert "orgs.csv: line 1: missing column(s) name" in err and "users.csv: line 1: missing column(s) givenName" \
        in err, err
    # only the columns Rollcall reads are required: a minimal users.csv is enough
    minimal = ("sourcedId,enabledUser,orgSourcedIds,role,givenName,familyName,identifier\n"
               "stu-1,true,org-1111,Student,Ann,Lee,500001s001\nt-1,true,org-1111,TEACHER,Tom,Ray,500009e009\n"
               "g-1,true,org-1111,Guardian,Gus,Lee,\np-1,true,org-1111,parent,Pam,Lee,\n")
    assert sync("oneroster", package(tmp_path, "b", users=minimal, orgs=ORGS)) == 0, sync.last_output
    assert "500001s001" in sync.accounts() and "500009e009" in staff(sync)
    assert sync.report()["skipped"] == 2 and "2 skipped" in sync.last_output


# ---------------------------------------------------------------- 11. quiet nights
def test_11_quiet_delta_is_a_normal_run(sync, tmp_path):
    assert sync("oneroster", package(tmp_path, "a", users=u11(stu11(1)), orgs=ORGS)) == 0
    empty = package(tmp_path, "e", users=U11 + "\n", users_mode="delta")
    assert sync("oneroster", empty) == 0, sync.last_output
    renamed = ORGS.replace("Lakeside Middle", "Lakeside Middle School")
    only_orgs = package(tmp_path, "o", orgs=renamed, orgs_mode="delta")
    assert sync("oneroster", only_orgs) == 0, sync.last_output
    c = sync.admin()
    c.search(f"ou=2222,ou=sites,{SUFFIX}", "(objectClass=*)", search_scope="BASE", attributes=["rollcallSiteName"])
    assert c.entries[0].rollcallSiteName.value == "Lakeside Middle School"
    assert sync.accounts()["500001s001"].rollcallEnrollmentStatus.value == "ENROLLED"
    # an empty bulk file is still refused
    assert sync("oneroster", package(tmp_path, "b", users=U11 + "\n", orgs=ORGS)) == 3


# ---------------------------------------------------------------- 13. names, display name, groups
def test_13_names_preferred_name_and_disabled_leave_groups(sync, tmp_path):
    users = "\n".join([U12, "u-1,,,true,,,Иван,Петров,,600001s001,,,,,05,,", 
                       'u-2,,,true,,,"Mary\nAnn",Lee,,600002s002,,,,,05,,Molly'])
    roles = "\n".join([ROLES, "r-1,,,u-1,primary,student,,,org-1111,", "r-2,,,u-2,primary,student,,,org-1111,"])
    assert sync("oneroster", package(tmp_path, "a", "1.2", users=users, roles=roles, orgs=ORGS)) == 0, \
        sync.last_output
    accs = sync.accounts()
    assert accs["600001s001"].uid.value == "ipetrov"
    assert accs["600002s002"].givenName.value == "Mary Ann" and accs["600002s002"].cn.value == "Molly Lee"
    dn = accs["600001s001"].entry_dn.lower()
    assert dn in sync.members("1111")
    # Иван leaves: in grace he stays in the group; DISABLED, he leaves it (not at purge)
    roles2 = "\n".join([ROLES, "r-2,,,u-2,primary,student,,,org-1111,"])
    users2 = "\n".join([U12, 'u-2,,,true,,,"Mary\nAnn",Lee,,600002s002,,,,,05,,Molly'])
    z = package(tmp_path, "b", "1.2", users=users2, roles=roles2, orgs=ORGS)
    assert sync("oneroster", z, today="2025-09-02") == 0, sync.last_output
    assert dn in sync.members("1111")
    assert sync("oneroster", z, today="2025-09-30") == 0, sync.last_output
    assert sync.accounts()["600001s001"].rollcallAccountStatus.value == "DISABLED"
    assert dn not in sync.members("1111")


# ---------------------------------------------------------------- 12. district CSV mappings
EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "sync"


def _with_example(sync, name):
    import yaml
    ex = yaml.safe_load((EXAMPLES / name).read_text())["sync"]
    sync.sync_cfg.update(ex)
    sync.write_config()


def test_12_powerschool_mapping(tmp_path):
    from tests.sync.conftest import ROOT, SCHEMA_FILES, DEFAULT_POLICY, SIS, SyncRunner, access_rules, district_ldif
    from tests.conftest import ServerProcess
    import yaml

    pattern = yaml.safe_load((EXAMPLES / "powerschool.yaml").read_text())["sync"]["district_id"]["pattern"]
    extra = {"schema": [str(ROOT / "schema" / n) for n in SCHEMA_FILES], "access": access_rules(),
             "password_policy": DEFAULT_POLICY, "indexes": {"rollcallSisSourceId": ["eq"], "employeeNumber": ["eq"],
                                                             "rollcallAccountStatus": ["eq"], "uid": ["eq"]},
             "sync": {"district_id": {"pattern": pattern}}}
    srv = ServerProcess(tmp_path, extra_config=extra,
                        ldif=district_ldif() + f"\ndn: {SIS}\nobjectClass: organizationalUnit\nou: sis\n").start()
    try:
        sync = SyncRunner(srv, tmp_path)
        _with_example(sync, "powerschool.yaml")
        header = "Student_Number,First_Name,Last_Name,Middle_Name,DOB,Grade_Level,SchoolID,Enroll_Status,EntryDate,ExitDate\n"
        rows = ["100001,Ann,Lee,,03/25/2014,0,1111,0,08/20/2025,", "100002,Bo,Ng,,12/01/2012,3,2222,0,08/20/2025,",
                "100003,Cy,Oz,,01/02/2011,4,2222,2,08/20/2024,06/01/2025"]
        assert sync("sis", sync.csv("ps.csv", rows, header=header)) == 0, sync.last_output
        accs = sync.accounts()
        assert accs["100001"].rollcallGrade.value == "KG" and accs["100001"].rollcallBirthDate.value == "20140325"
        assert accs["100002"].rollcallGrade.value == "03"
        assert sync.records()["100003"]["rollcallEnrollmentStatus"] == ["TRANSFERRED"]
    finally:
        srv.stop()


def test_12_school_data_sync_mapping_without_entry_date(sync):
    _with_example(sync, "school-data-sync.yaml")
    header = "SIS ID,School SIS ID,First Name,Last Name,Middle Name,Grade,Birthdate,Status,Secondary Email\n"
    rows = ["100001s001,1111,Ann,Lee,,K,2014-03-25,Active,", "100002s002,2222,Bo,Ng,,9,2010-04-02,Active,"]
    assert sync("sis", sync.csv("sds.csv", rows, header=header)) == 0, sync.last_output
    accs = sync.accounts()
    assert accs["100001s001"].rollcallGrade.value == "KG" and accs["100002s002"].rollcallGrade.value == "09"
    assert sync("sis", sync.csv("sds.csv", rows, header=header)) == 0 and sync.report()["counts"] == {}


def test_9_nothing_synced_is_exit_2_naming_the_problem(sync, tmp_path):
    users = u11(stu11(1, org="org-x"), stu11(2, org="org-x"))
    assert sync("oneroster", package(tmp_path, "a", users=users, orgs=ORGS)) == 2
    assert "nothing could be synced" in sync.last_output and "'org-x'" in sync.last_output, sync.last_output
    assert not [k for k in sync.records() if k.startswith("stu-")]


def test_5_district_csv_one_id_for_two_people(sync):
    rows = [f"10000{n}s00{n},A{n},B,,2014-01-01,05,1111,ENROLLED,2025-08-20,," for n in range(1, 4)]
    assert sync("sis", sync.csv("a.csv", rows)) == 0
    # two enrollments of one student (two schools) are fine; another person under ID 2 is not
    rows2 = rows + ["100001s001,A1,B,,2014-01-01,05,2222,ENROLLED,2025-08-20,,",
                    "100002s002,Zed,Other,,2013-05-05,06,2222,ENROLLED,2025-08-20,,"]
    assert sync("sis", sync.csv("b.csv", rows2)) == 1
    assert sorted(r["line"] for r in sync.report()["rejected"]) == [3, 6]
    accs = sync.accounts()
    assert sorted(accs["100001s001"].departmentNumber.values) == ["1111", "2222"]
    assert accs["100002s002"].givenName.value == "A2" and accs["100002s002"].rollcallEnrollmentStatus.value == "ENROLLED"
