"""The district's rules, written once (directory/district/): the forms they produce are
the ones the server, the sync and the command line wrote before they shared them."""
import calendar
import time

import pytest

from directory.district import display, gentime, ids, statuses, usernames

T = calendar.timegm((2026, 6, 30, 23, 59, 58, 0, 0, 0)) + 0.123456


def test_generalized_time_forms():
    assert gentime.gentime(T) == b"20260630235958Z"
    assert gentime.gentime_text(T) == "20260630235958Z"
    assert gentime.gentime_micro(T) == b"20260630235958.123456Z"  # pwdFailureTime keeps microseconds
    assert gentime.gentime_micro(T)[:-1] != gentime.gentime_micro(T + 0.000002)[:-1]
    assert len(gentime.now_generalized()) == 15 and gentime.now_generalized().endswith(b"Z")
    assert abs(gentime.parse_gentime(gentime.gentime()) - time.time()) < 2
    assert gentime.parse_gentime(b"20260630235958.123456Z") == int(T)
    assert gentime.parse_gentime(b"20260630235958Z") == int(T)
    assert gentime.parse_gentime(b"not a time") is None
    assert gentime.parse_gentime(b"\xff") is None
    assert gentime.parse_time(None) is None
    assert gentime.parse_time(b"20260630235958Z") == int(T)
    assert gentime.from_date("20260630") == "20260630000000Z"
    assert gentime.from_date("") == ""


def test_generalized_time_from_a_person():
    assert gentime.from_user_input("2026-06-30") == "20260630235959Z"
    assert gentime.from_user_input(" 20260630120000Z ") == "20260630120000Z"
    assert gentime.from_user_input("") is None and gentime.from_user_input(None) is None
    with pytest.raises(ValueError, match="is not a date"):
        gentime.from_user_input("2026-02-30")
    with pytest.raises(ValueError, match="expected YYYY-MM-DD or YYYYMMDDHHMMSSZ"):
        gentime.from_user_input("30/06/2026")


def test_district_id_syntax():
    for good in ("000123s045", "1234567890", "999999Z999"):
        assert ids.is_district_id(good) and ids.DISTRICT_ID.match(good)
    for bad in ("", "00123s045", "000123-045", "000123s04x", "000123s0456", "ab0123s045"):
        assert not ids.is_district_id(bad)


def test_username_policy():
    assert usernames.stem("José María", "García-López") == "jgarcialopez"
    assert usernames.base_name("{first:1}{last}", "", "", district_id="000123s045") == "user000123s045"
    assert usernames.generate("John", "Smith", {"jsmith", "jsmith2"}.__contains__) == "jsmith3"
    cands = usernames.candidates("abcdefghij", 10)
    assert [next(cands) for _ in range(3)] == ["abcdefghij", "abcdefghi2", "abcdefghi3"]
    usernames.check_pattern("{first}.{last:5}")
    for bad in ("{nick}", "plain", "{first} {last}"):
        with pytest.raises(usernames.PatternError):
            usernames.check_pattern(bad)


def test_statuses():
    assert statuses.ACCOUNT_STATUSES == ("ENABLED", "DISABLED", "PENDING")
    assert set(statuses.ENROLLMENT_ACTIVE) | set(statuses.ENROLLMENT_ENDED) == set(statuses.ENROLLMENT_STATUSES)


# --------------------------------------------------------------------------- display


def test_display_names_schools_people_reasons_and_roles():
    assert display.site_label("1234", "Lincoln Elementary") == "Lincoln Elementary (1234)"
    assert display.site_label("1234", None) == "1234" and display.site_label("1234", "1234") == "1234"
    assert display.person_label("uid=tnguyen,ou=staff,ou=people,dc=x", "Thanh Nguyen") == "Thanh Nguyen"
    assert display.person_label("uid=tnguyen,ou=staff,ou=people,dc=x") == "tnguyen"
    assert display.reason_label("parent-refusal") == "Parent or guardian refused (signed form)"
    assert display.reason_label("typed by hand") == "typed by hand"
    assert display.role_label("student-email-admins") == "Student e-mail administrator"


def test_display_dates_are_local(monkeypatch):
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        # 13:17 UTC on New Year's Day is 05:17 in Los Angeles; 03:00 UTC is the evening before
        assert display.local_datetime("20270101131717Z") == "2027-01-01 05:17"
        assert display.local_date(b"20270101030000Z") == "2026-12-31"
        assert display.local_date("") == "" and display.local_date("not a time") == "not a time"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_plain_reason_drops_python_object_reprs():
    text = "cannot identify image file <_io.BytesIO object at 0x7f3a2c1d5e40>"
    assert display.plain_reason(text) == "cannot identify image file"
    assert display.plain_reason("wrong size: 14.9 KB") == "wrong size: 14.9 KB"
