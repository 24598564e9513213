"""The sub-administrator's pages in a real browser against a real server (demo district):
search, detail, reset (password shown once; the student must change it), deactivate
with reason, reference and confirmation, a new enrollee's account and its activation,
the roster zip; cross-school attempts and a POST without CSRF token are refused."""
import csv
import io
import re
import zipfile

from ldap3 import Connection, Server

from directory import admin
from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX
from tests.web.conftest import PHONE, no_horizontal_scroll, shot, sign_in, unlabelled_controls

SUBADMIN = ("tnguyen", "demo-subadmin-pw")      # student-email-admins of 1234
STUDENT_PW = "demo-student-pw"


def student_dn(uid):
    return f"uid={uid},ou=students,ou=people,{SUFFIX}"


def bind_ok(console, uid, password) -> bool:
    c = Connection(Server(console.server.url), student_dn(uid), password)
    try:
        return c.bind()
    finally:
        c.unbind()


def subadmin_page(console, new_page, viewport=None):
    page = new_page(viewport) if viewport else new_page()
    return sign_in(page, console, *SUBADMIN)


def test_sign_in_and_search(console, new_page):
    page = new_page()
    page.goto(console.base + "/")
    shot(page, "welcome")
    assert unlabelled_controls(page) == []
    sign_in(page, console, *SUBADMIN)
    shot(page, "home-subadmin")
    page.get_by_role("link", name="Students", exact=True).click()
    page.get_by_label("District ID, e-mail, username, first or last name").fill("smith")
    page.get_by_role("button", name="Search").click()
    table = page.locator("table.list").inner_text()
    assert "jsmith" in table and "osmith" in table
    # lsmithjones is a student of 9012: not in this sub-administrator's results
    assert "lsmithjones" not in table
    shot(page, "students-search")
    assert unlabelled_controls(page) == []
    page.get_by_label("District ID, e-mail, username, first or last name").fill("000001s001")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Smith, John").click()
    assert page.locator("dl.facts").inner_text().count("000001s001") == 1
    shot(page, "student-detail")


def test_pages_fit_a_phone(console, new_page):
    page = subadmin_page(console, new_page, PHONE)
    for path in ("/", "/students?q=smith", "/students/jsmith", "/accounts/new", "/roster"):
        page.goto(console.base + path)
        assert no_horizontal_scroll(page), path
        assert unlabelled_controls(page) == [], path
    shot(page, "students-phone")


def test_wrong_password_is_a_plain_sentence(console, new_page):
    page = new_page()
    sign_in(page, console, "tnguyen", "not-the-password", expect_ok=False)
    assert page.get_by_role("alert").inner_text() == "The username or password is not correct."
    assert page.locator("form.signout").count() == 0


def test_reset_shows_the_password_once_and_the_student_must_change_it(console, new_page):
    page = subadmin_page(console, new_page)
    page.goto(console.base + "/students/osmith")
    page.get_by_role("link", name="Reset password…").click()
    # the confirmation page: nothing changed yet
    assert "Yes, reset the password" in page.content()
    shot(page, "reset-confirm")
    assert bind_ok(console, "osmith", STUDENT_PW)
    with page.expect_response(lambda r: "/reset/" in r.url) as got:
        page.get_by_role("button", name="Yes, reset the password").click()
    assert got.value.headers.get("cache-control") == "no-store"
    result_url = page.url
    assert "/students/osmith/reset/" in result_url
    password = page.locator("#new-password").inner_text().strip()
    assert len(password) >= 12
    shot(page, "reset-done")
    assert bind_ok(console, "osmith", password)
    assert not bind_ok(console, "osmith", STUDENT_PW)
    # POST-redirect-GET, one-time result: a reload neither resets again nor shows it again
    page.reload()
    assert "This result was shown already" in page.locator("main").inner_text()
    assert password not in page.content()
    page.goto(result_url)
    assert "This result was shown already" in page.locator("main").inner_text()
    assert bind_ok(console, "osmith", password)
    # shown once: the student's page does not show it again
    page.goto(console.base + "/students/osmith")
    assert password not in page.content()

    student = new_page()
    sign_in(student, console, "osmith", password, expect_ok=False)
    student.wait_for_url(re.compile(r"/password$"))
    assert "Choose a new one" in student.locator("main").inner_text()
    # nothing else until the password is changed
    student.goto(console.base + "/students")
    assert student.url.endswith("/password")
    student.get_by_label("Current password").fill(password)
    student.get_by_label("New password", exact=True).fill("Lantern-new-pw-2026")
    student.get_by_label("New password again").fill("Lantern-new-pw-2026")
    student.get_by_role("button", name="Change password").click()
    assert "Your password has been changed." in student.get_by_role("status").inner_text()
    assert bind_ok(console, "osmith", "Lantern-new-pw-2026")
    student.goto(console.base + "/")
    assert student.url.rstrip("/") == console.base
    # the name the restricted sign-in could not read is there once the password is changed
    assert student.get_by_role("heading", level=1).inner_text() == "Hello, Omar Smith"


def test_deactivate_with_reason_reference_and_confirmation(console, new_page):
    page = subadmin_page(console, new_page)
    page.goto(console.base + "/students/moconnor")
    page.get_by_role("link", name="Deactivate…").click()
    assert unlabelled_controls(page) == []
    # the browser insists on a reason (required); so does the server
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    r = page.request.post(console.base + "/students/moconnor/deactivate",
                          form={"csrf": csrf, "reference": "PR-2026-114", "confirmed": "yes"})
    assert r.status == 400 and "Choose the reason" in r.text()
    assert bind_ok(console, "moconnor", STUDENT_PW)
    page.get_by_label("Reason").select_option("parent-refusal")
    page.get_by_label("Form reference").fill("PR-2026-114")
    page.get_by_role("button", name="Continue").click()
    # the confirmation page: nothing changed yet
    assert "Yes, deactivate" in page.content()
    shot(page, "deactivate-confirm")
    assert bind_ok(console, "moconnor", STUDENT_PW)
    page.get_by_role("button", name="Yes, deactivate").click()
    facts = page.locator("dl.facts").inner_text()
    assert "DISABLED" in facts and "PR-2026-114" in facts
    # for people: the reason's label, who by name, the local date, the school by name
    assert "Parent or guardian refused (signed form)" in facts and "parent-refusal" not in facts
    assert "by Thanh Nguyen" in facts and "uid=" not in facts
    assert re.search(r" on \d{4}-\d{2}-\d{2}", facts) and not re.search(r"\d{14}Z", facts)
    assert "Lincoln Elementary (1234)" in facts
    assert not bind_ok(console, "moconnor", STUDENT_PW)
    # no reset for a deactivated account: no button, and a forged POST is refused by the directory
    assert page.get_by_role("link", name="Reset password…").count() == 0
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    r = page.request.post(console.base + "/students/moconnor/reset", form={"csrf": csrf})
    assert r.status == 400 and "only an ENABLED account" in r.text()


def test_new_enrollee_account_then_self_service_activation(console, new_page):
    page = subadmin_page(console, new_page)
    page.goto(console.base + "/accounts/new")
    page.get_by_label("District ID").fill("000061s061")
    page.get_by_role("button", name="Create account").click()
    slip = page.locator("section.slip").inner_text()
    username = re.search(r"Username\s+(\S+)", slip).group(1)
    code = page.locator("code.secret").inner_text().strip()
    assert username.startswith("mtorres") and code
    shot(page, "create-account")
    # again: the account exists now
    page.get_by_label("District ID").fill("000061s061")
    page.get_by_role("button", name="Create account").click()
    assert page.get_by_role("alert").count() == 1

    student = new_page()
    student.goto(console.base + "/activate")
    assert unlabelled_controls(student) == []
    student.get_by_label("Username").fill(username)
    student.get_by_label("Activation code").fill("WRONG-CODE")
    student.get_by_label("New password", exact=True).fill("Maple-river-pw-1")
    student.get_by_label("New password again").fill("Maple-river-pw-1")
    student.get_by_role("button", name="Activate").click()
    assert "activation failed" in student.get_by_role("alert").inner_text().lower()
    student.get_by_label("Activation code").fill(code)
    student.get_by_label("New password", exact=True).fill("Maple-river-pw-1")
    student.get_by_label("New password again").fill("Maple-river-pw-1")
    student.get_by_role("button", name="Activate").click()
    assert "is active" in student.get_by_role("status").inner_text()
    shot(student, "activate-done")
    assert bind_ok(console, username, "Maple-river-pw-1")
    sign_in(student, console, username, "Maple-river-pw-1")


def test_roster_zip_for_a_list_of_district_ids(console, new_page):
    page = subadmin_page(console, new_page)
    page.goto(console.base + "/roster")
    assert unlabelled_controls(page) == []
    assert page.locator("#site option").all_inner_texts() == ["Lincoln Elementary (1234)"]
    page.get_by_label("Cost center").select_option("1234")
    page.get_by_label(re.compile("Only these district IDs")).fill("000001s001\n000024s024, bogus")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download roster").click()
    data = open(dl.value.path(), "rb").read()
    z = zipfile.ZipFile(io.BytesIO(data))
    names = sorted(z.namelist())
    roster = next(n for n in names if n.startswith("roster-1234-"))
    text = z.read(roster).decode("utf-8-sig")
    assert "000001s001" in text and "jsmith" in text and "000024s024" not in text
    missing = z.read(next(n for n in names if n.startswith("not-found-1234-"))).decode("utf-8-sig")
    assert "000024s024" in missing and "bogus" in missing


def test_another_schools_student_is_out_of_reach(console, new_page):
    page = subadmin_page(console, new_page)
    # jobrien is a student of 5678 only
    r = page.goto(console.base + "/students/jobrien")
    assert r.status == 404
    assert "not" in page.get_by_role("alert").inner_text() and "Traceback" not in page.content()
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    r = page.request.post(console.base + "/students/jobrien/reset", form={"csrf": csrf})
    assert r.status == 404
    assert bind_ok(console, "jobrien", STUDENT_PW)
    r = page.request.post(console.base + "/roster", form={"csrf": csrf, "site": "5678", "ids": ""})
    assert r.status == 403 and "not a student email administrator of cost center 5678" in r.text()
    page.goto(console.base + "/students?q=jobrien")
    assert "No student of your schools matches" in page.locator("main").inner_text()


def test_post_without_csrf_token_is_refused(console, new_page):
    page = subadmin_page(console, new_page)
    r = page.request.post(console.base + "/students/stanaka/reset", form={})
    assert r.status == 403 and "did not come from this site" in r.text()
    r = page.request.post(console.base + "/students/stanaka/reset", form={"csrf": "forged"})
    assert r.status == 403
    # a right token from another site's page (Origin) is refused too
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    r = page.request.post(console.base + "/students/stanaka/reset", form={"csrf": csrf},
                          headers={"Origin": "https://evil.example"})
    assert r.status == 403
    assert bind_ok(console, "stanaka", STUDENT_PW)


def test_a_teacher_has_no_student_pages(console, new_page):
    page = new_page()
    sign_in(page, console, "ewilson", "demo-teacher-pw")
    assert page.get_by_role("link", name="Students", exact=True).count() == 0
    r = page.goto(console.base + "/students?q=smith")
    assert r.status == 403
    assert "student email administrators" in page.get_by_role("alert").inner_text()


def _bound(dn, password, console):
    c = Connection(Server(console.server.url), dn, password)
    assert c.bind()
    return c


def test_reactivate_a_mistaken_deactivation_with_confirmation(console, new_page):
    tn = _bound(f"uid=tnguyen,ou=staff,ou=people,{SUFFIX}", SUBADMIN[1], console)
    admin.deactivate(tn, "stanaka", "student-request", "SR-2026-7")
    tn.unbind()
    assert not bind_ok(console, "stanaka", STUDENT_PW)
    page = subadmin_page(console, new_page)
    page.goto(console.base + "/students/stanaka")
    page.get_by_role("link", name="Re-activate…").click()
    # the confirmation page: what happens, and nothing changed yet
    main = page.locator("main").inner_text()
    assert "becomes ENABLED" in main and "SR-2026-7" in main and "Yes, re-activate" in page.content()
    assert unlabelled_controls(page) == []
    shot(page, "reactivate-confirm")
    assert not bind_ok(console, "stanaka", STUDENT_PW)
    page.get_by_role("button", name="Yes, re-activate").click()
    assert "is ENABLED again" in page.get_by_role("status").inner_text()
    assert "ENABLED" in page.locator("dl.facts").inner_text()
    assert bind_ok(console, "stanaka", STUDENT_PW)
    # the server's rules decide: an ENABLED account is not re-activated (a forged POST)
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    r = page.request.post(console.base + "/students/stanaka/reactivate", form={"csrf": csrf, "confirmed": "yes"})
    assert r.status == 400 and "only a DISABLED account" in r.text()
    # and another school's student is out of reach
    r = page.request.post(console.base + "/students/jobrien/reactivate", form={"csrf": csrf, "confirmed": "yes"})
    assert r.status == 404


def test_console_roster_keeps_the_code_printed_at_creation(console, new_page):
    root = _bound(ROOT_DN, ROOT_PW, console)
    did = "000097s097"
    assert root.add(f"rollcallSisSourceId=stu-000097,ou=sis,{SUFFIX}", ["top", "rollcallSisRecord"],
                    {"rollcallSisSourceId": "stu-000097", "employeeNumber": did, "givenName": "Kira",
                     "sn": "Keeper", "cn": "Kira Keeper", "rollcallGrade": "02", "departmentNumber": "1234",
                     "rollcallEnrollmentStatus": "ENROLLED"}), root.result
    root.unbind()
    page = subadmin_page(console, new_page)
    page.goto(console.base + "/accounts/new")
    page.get_by_label("District ID").fill(did)
    page.get_by_role("button", name="Create account").click()
    slip = page.locator("section.slip").inner_text()
    username = re.search(r"Username\s+(\S+)", slip).group(1)
    code = page.locator("code.secret").inner_text().strip()

    def download(reissue=False):
        page.goto(console.base + "/roster")
        page.get_by_label("Cost center").select_option("1234")
        page.get_by_label(re.compile("Only these district IDs")).fill(did)
        box = page.get_by_label(re.compile("Replace the activation codes"))
        assert not box.is_checked()  # off by default
        if reissue:
            box.check()
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download roster").click()
        z = zipfile.ZipFile(io.BytesIO(open(dl.value.path(), "rb").read()))
        text = z.read(next(n for n in z.namelist() if n.startswith("roster-1234-"))).decode("utf-8-sig")
        return next(csv.DictReader(io.StringIO(text)))

    row = download()
    assert row["username"] == username and row["activation_code"] == ""
    assert "is still valid (ask the person who created the account, or reissue)" in row["activation_code_note"]
    # the code printed at creation still activates
    anon = Connection(Server(console.server.url))
    anon.open()
    assert admin.activate(anon, username, code, "Comet-saffron-274!")["status"] == "ENABLED"
    anon.unbind()
    assert bind_ok(console, username, "Comet-saffron-274!")


def search(page, console, text):
    page.goto(console.base + "/students")
    page.get_by_label("District ID, e-mail, username, first or last name").fill(text)
    page.get_by_role("button", name="Search").click()
    return page.locator("main").inner_text()


def test_search_names_in_either_order_short_queries_and_partial_ids(console, new_page):
    page = subadmin_page(console, new_page)
    for q in ("Mia Jones", "Jones, Mia", "jones mia"):
        search(page, console, q)
        rows = page.locator("table.list tbody tr").all_inner_texts()
        assert len(rows) == 1 and "mjones" in rows[0] and "Lincoln Elementary (1234)" in rows[0], (q, rows)
    # too short: the page says why instead of a bare "no match"
    main = search(page, console, "Mi")
    assert "at least 3 characters" in main and "No student of your schools matches" not in main
    shot(page, "students-search-short")
    # part of a district ID: within the sub-administrator's schools
    main = search(page, console, "000013")
    assert "mjones" in page.locator("table.list").inner_text() and "District IDs containing" in main
    main = search(page, console, "0000")
    assert "jobrien" not in main  # a student of 5678 only


def test_search_finds_an_enrollee_without_account_and_offers_to_create_it(console, new_page):
    root = _bound(ROOT_DN, ROOT_PW, console)
    did = "000098s098"
    assert root.add(f"rollcallSisSourceId=stu-000098,ou=sis,{SUFFIX}", ["top", "rollcallSisRecord"],
                    {"rollcallSisSourceId": "stu-000098", "employeeNumber": did, "givenName": "Nia",
                     "sn": "Newcombe", "cn": "Nia Newcombe", "rollcallGrade": "01", "departmentNumber": "1234",
                     "rollcallEnrollmentStatus": "ENROLLED"}), root.result
    root.unbind()
    page = subadmin_page(console, new_page)
    search(page, console, "Newcombe, Nia")
    table = page.locator("table.enrollees").inner_text()
    assert did in table and "No account" in table and "Lincoln Elementary (1234)" in table
    assert page.locator("main").inner_text().count("No student of your schools matches") == 0
    shot(page, "students-search-enrollee")
    page.get_by_role("link", name="Create the account…").click()
    assert page.get_by_label("District ID").input_value() == did
    page.get_by_role("button", name="Create account").click()
    slip = page.locator("section.slip").inner_text()
    assert "Nia Newcombe" in slip and re.search(r"Username\s+nnewcombe", slip)
    # now an account, no longer an enrollee
    search(page, console, "Nia Newcombe")
    assert "nnewcombe" in page.locator("table.list").first.inner_text()
    assert page.locator("table.enrollees").count() == 0
