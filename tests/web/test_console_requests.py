"""The request pages in a real browser against the demo district: an anonymous
non-employee account request tracked by number, approved (and another denied) by the
site's principal; a teacher's application role approved by the application approver
(the grant shows in memberOf); a sub-administrator request the wrong principal cannot
decide; withdrawal; students kept out; forms labelled and usable on a phone."""
import itertools

from ldap3 import BASE, SUBTREE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX
from tests.web.conftest import PHONE, no_horizontal_scroll, shot, sign_in, unlabelled_controls

PRINCIPAL_1234 = ("pwong", "demo-principal-pw")
PRINCIPAL_5678 = ("dokafor", "demo-principal-pw")
TEACHER = ("ewilson", "demo-teacher-pw")
WELLIGENT_APPROVER = ("hkim", "demo-case-manager-pw")
STUDENT = ("jsmith", "demo-student-pw")
THERAPIST_ROLE = f"cn=welligent-therapist,ou=welligent,ou=groups,{SUFFIX}"
_seq = itertools.count(1)


def root_read(console, base, flt="(objectClass=*)", scope=BASE, attrs=("*",)):
    c = Connection(Server(console.server.url), ROOT_DN, ROOT_PW, auto_bind=True)
    try:
        c.search(base, flt, scope, attributes=list(attrs))
        return [(e.entry_dn, e.entry_attributes_as_dict) for e in c.entries]
    finally:
        c.unbind()


def status_of(console, number) -> str:
    (_, attrs), = root_read(console, f"rollcallRequestNumber={number},ou=requests,{SUFFIX}")
    return attrs["rollcallRequestStatus"][0]


def fill_account_request(page, console, given="Ana", sn="Lopez", mail=None, site="1234"):
    mail = mail or f"ana.lopez{next(_seq)}@acme.example"
    page.goto(console.base + "/request-account")
    page.get_by_label("Given name").fill(given)
    page.get_by_label("Family name").fill(sn)
    page.get_by_label("E-mail").fill(mail)
    page.get_by_label("Phone (optional)").fill("+1 555 0199")
    page.get_by_label("Organization", exact=True).fill("Acme Therapy")
    page.get_by_label("Kind of organization").select_option("CONTRACTOR")
    page.get_by_label("Code of the sponsoring school or office").fill(site)
    page.get_by_label("Why you need an account").fill("Occupational therapy for two students")
    return mail


def request_account(page, console, with_token=False, **kw):
    fill_account_request(page, console, **kw)
    page.get_by_role("button", name="Send the request").click()
    number = int(page.locator(".request-number").inner_text())
    token = page.locator(".tracking-code").inner_text().strip()
    assert len(token) >= 20
    return (number, token) if with_token else number


def tracked(page, console, number, token):
    page.goto(console.base + "/track")
    page.get_by_label("Request number").fill(str(number))
    page.get_by_label("Tracking code").fill(token)
    page.get_by_role("button", name="Show").click()
    return page.locator(".request-status .status").inner_text()


def open_request(page, console, number):
    page.goto(f"{console.base}/requests/{number}")
    return page


def test_anonymous_request_tracked_and_approved_by_the_principal(console, new_page):
    anon = new_page()
    anon.goto(console.base + "/request-account")
    assert unlabelled_controls(anon) == []
    shot(anon, "requests-account")
    number, token = request_account(anon, console, with_token=True, given="Ana", sn="Lopez")
    shot(anon, "requests-account-submitted")
    anon.get_by_role("link", name="follow its status").click()
    assert anon.locator(".request-status .status").inner_text() == "PENDING"
    assert unlabelled_controls(anon) == []
    shot(anon, "requests-track-pending")

    principal = sign_in(new_page(), console, *PRINCIPAL_1234)
    principal.get_by_role("navigation", name="Main").get_by_role("link", name="Requests").click()
    row = principal.locator(f"#queue tr[data-number='{number}']")
    assert "Ana Lopez" in row.inner_text() and "PENDING" in row.inner_text()
    shot(principal, "requests-queue")
    row.get_by_role("link", name=str(number)).click()
    assert unlabelled_controls(principal) == []
    shot(principal, "requests-detail")
    principal.get_by_role("button", name="Approve").click()
    assert principal.get_by_role("status").first.inner_text() == f"Request {number} approved."
    assert principal.locator("#request-status").inner_text() == "APPROVED"
    principal.goto(console.base + "/requests")
    assert principal.locator(f"#queue tr[data-number='{number}']").count() == 0

    assert tracked(anon, console, number, token) == "APPROVED"
    # the number alone, or with another request's code, shows nothing
    other, other_token = request_account(new_page(), console, with_token=True, given="Eve", sn="Prying")
    for query in (f"number={number}", f"number={number}&token={other_token}", f"number={number}&token=x",
                  f"number={other}&token={token}"):
        anon.goto(f"{console.base}/track?{query}")
        assert anon.locator(".request-status").count() == 0
        assert "APPROVED" not in anon.content() and "Lopez" not in anon.content()
    shot(anon, "requests-track-approved")
    made = root_read(console, f"ou=nonemployees,ou=people,{SUFFIX}", "(sn=Lopez)", SUBTREE,
                     ["rollcallAccountStatus", "departmentNumber"])
    assert made and made[0][1]["departmentNumber"] == ["1234"]


def test_denied_with_a_reason_the_tracking_page_shows(console, new_page):
    anon = new_page()
    number, token = request_account(anon, console, with_token=True, given="Ben", sn="Okoro")
    principal = sign_in(new_page(), console, *PRINCIPAL_1234)
    open_request(principal, console, number)
    principal.get_by_role("button", name="Deny").click()  # no reason
    assert principal.get_by_role("alert").inner_text() == "A denial needs a reason: the requester sees it."
    shot(principal, "requests-deny-without-reason")
    assert status_of(console, number) == "PENDING"
    principal.get_by_label("Reason (required to deny: the requester sees it)").fill(
        "Acme Therapy has no contract with Lincoln Elementary this year.")
    principal.get_by_role("button", name="Deny").click()
    assert principal.locator("#request-status").inner_text() == "DENIED"

    assert tracked(anon, console, number, token) == "DENIED"
    assert anon.locator(".request-status .reason").inner_text() == \
        "Acme Therapy has no contract with Lincoln Elementary this year."
    shot(anon, "requests-track-denied")


def test_account_request_is_checked(console, new_page):
    page = new_page()
    # the browser checks type=email; the console checks again
    fill_account_request(page, console)
    page.locator("#mail").evaluate("el => { el.type = 'text'; el.value = 'not an address'; }")
    page.get_by_role("button", name="Send the request").click()
    assert page.get_by_role("alert").inner_text() == "Enter a valid e-mail address, e.g. ana.lopez@example.org."
    assert page.get_by_label("Given name").input_value() == "Ana"  # the form keeps what was typed
    page.goto(console.base + "/track?number=999999&token=abcdefabcdefabcdefabcd")
    assert page.get_by_role("alert").inner_text().startswith("There is no account request with that number")
    page.goto(console.base + "/track?number=12")
    assert page.get_by_role("alert").inner_text().startswith("Enter the tracking code")


def test_the_form_answers_alike_for_a_known_and_an_unknown_school_code(console, new_page):
    """Whether a school code exists is not the visitor's to learn: the same page (but
    the number and the code), the same tracking status; the request for 4321 reaches
    no principal and a district administrator refuses it."""
    pages = {}
    for code in ("1234", "4321"):
        page = new_page()
        number, token = request_account(page, console, with_token=True, site=code)
        text = page.locator("main").inner_text()
        pages[code] = (number, token, text.replace(token, "T").replace(str(number), "N"))
        assert tracked(page, console, number, token) == "PENDING"
    assert pages["1234"][2] == pages["4321"][2]
    number = pages["4321"][0]
    admin = sign_in(new_page(), console, "aroberts", "demo-district-admin-pw")
    open_request(admin, console, number)
    assert "no school or office has this code" in admin.locator("main").inner_text().lower()
    admin.get_by_label("Reason (required to deny: the requester sees it)").fill("No school has the code 4321.")
    admin.get_by_role("button", name="Deny").click()
    assert admin.locator("#request-status").inner_text() == "DENIED"


def test_teacher_gets_an_application_role_from_its_approver(console, new_page):
    teacher = sign_in(new_page(), console, *TEACHER)
    teacher.get_by_role("navigation", name="Main").get_by_role("link", name="Requests").click()
    teacher.get_by_role("link", name="Request an application role").click()
    assert unlabelled_controls(teacher) == []
    teacher.get_by_label("Role").select_option(THERAPIST_ROLE)
    teacher.get_by_label("Why you need it").fill("I run the speech therapy sessions at Roosevelt now.")
    shot(teacher, "requests-new-role")
    teacher.get_by_role("button", name="Send the request").click()
    number = int(teacher.url.rsplit("/", 1)[1])
    assert teacher.locator("#request-status").inner_text() == "PENDING"
    assert teacher.get_by_role("button", name="Approve").count() == 0  # nobody decides their own
    teacher.goto(console.base + "/requests")
    assert teacher.locator(f"#mine tr[data-number='{number}']").count() == 1
    # not an account request: not trackable anonymously
    anon = new_page()
    anon.goto(f"{console.base}/track?number={number}&token=abcdefabcdefabcdefabcd")
    assert anon.get_by_role("alert").inner_text().startswith("There is no account request with that number")

    approver = sign_in(new_page(), console, *WELLIGENT_APPROVER)
    approver.goto(console.base + "/requests")
    approver.locator(f"#queue tr[data-number='{number}']").get_by_role("link", name=str(number)).click()
    approver.get_by_role("button", name="Approve").click()
    assert approver.locator("#request-status").inner_text() == "APPROVED"

    (_, attrs), = root_read(console, f"uid=ewilson,ou=staff,ou=people,{SUFFIX}", attrs=["memberOf"])
    assert THERAPIST_ROLE.lower() in {g.lower() for g in attrs["memberOf"]}


def test_subadmin_request_is_not_for_another_sites_principal(console, new_page):
    teacher = sign_in(new_page(), console, *TEACHER)
    teacher.goto(console.base + "/requests/new?what=subadmin")
    assert unlabelled_controls(teacher) == []
    teacher.get_by_label("School or office").select_option("1234")
    teacher.get_by_label("Role", exact=True).select_option("student-email-admins")
    teacher.get_by_label("Why you need it").fill("I cover the office of Lincoln Elementary on Fridays.")
    shot(teacher, "requests-new-subadmin")
    teacher.get_by_role("button", name="Send the request").click()
    number = int(teacher.url.rsplit("/", 1)[1])

    other = sign_in(new_page(), console, *PRINCIPAL_5678)
    other.goto(console.base + "/requests")
    assert other.locator(f"#queue tr[data-number='{number}']").count() == 0
    open_request(other, console, number)
    assert other.get_by_role("button", name="Approve").count() == 0
    main = other.locator("main").inner_text()
    assert "The principals of Lincoln Elementary (1234) or a district administrator decide this request." in main
    # the role and the school by name, not their codes
    assert "Student e-mail administrator of Lincoln Elementary (1234)" in main and "student-email-admins" not in main
    # a hand-made form: the directory refuses, the console says so in a sentence
    csrf = other.locator("form.signout input[name=csrf]").input_value()
    with other.expect_navigation() as nav:
        other.evaluate("""([action, csrf]) => {
            const f = document.createElement('form');
            f.method = 'post'; f.action = action;
            for (const [k, v] of [['csrf', csrf], ['decision', 'approve'], ['reason', 'ok']]) {
                const i = document.createElement('input');
                i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
            }
            document.body.appendChild(f); f.submit();
        }""", [f"/requests/{number}/decide", csrf])
    assert nav.value.status == 403
    assert other.get_by_role("alert").inner_text() == (
        f"You may not decide request {number}. "
        "The principals of Lincoln Elementary (1234) or a district administrator decide this request.")
    shot(other, "requests-wrong-principal")
    assert status_of(console, number) == "PENDING"

    open_request(teacher, console, number)
    teacher.get_by_role("button", name="Withdraw this request").click()
    assert teacher.locator("#request-status").inner_text() == "WITHDRAWN"
    assert status_of(console, number) == "WITHDRAWN"


def test_signed_in_account_request_is_filed_by_that_person(console, new_page):
    teacher = sign_in(new_page(), console, *TEACHER)
    number = request_account(teacher, console, given="Dana", sn="Reyes", site="5678")
    (_, attrs), = root_read(console, f"rollcallRequestNumber={number},ou=requests,{SUFFIX}")
    assert attrs["rollcallRequester"] == [f"uid=ewilson,ou=staff,ou=people,{SUFFIX}"]
    teacher.goto(console.base + "/requests")
    assert teacher.locator(f"#mine tr[data-number='{number}']").count() == 1


def test_students_have_no_request_pages(console, new_page):
    page = sign_in(new_page(), console, *STUDENT)
    assert page.get_by_role("link", name="Requests", exact=True).count() == 0
    resp = page.goto(console.base + "/requests")
    assert resp.status == 403
    assert page.get_by_role("alert").inner_text() == "Students cannot file or decide access requests."
    assert page.goto(console.base + "/requests/new").status == 403


def test_request_pages_fit_a_phone(console, new_page):
    anon = new_page(PHONE)
    anon.goto(console.base + "/request-account")
    assert no_horizontal_scroll(anon)
    shot(anon, "requests-account-phone")
    number, token = request_account(anon, console, with_token=True, given="Chidi",
                                    sn="Anagonye-Featherstonehaugh")
    anon.goto(f"{console.base}/track?number={number}&token={token}")
    assert anon.locator(".request-status .status").inner_text() == "PENDING"
    assert no_horizontal_scroll(anon)
    principal = sign_in(new_page(PHONE), console, *PRINCIPAL_1234)
    principal.goto(console.base + "/requests")
    assert principal.locator(f"#queue tr[data-number='{number}']").count() == 1
    assert no_horizontal_scroll(principal)
    shot(principal, "requests-queue-phone")
    open_request(principal, console, number)
    assert no_horizontal_scroll(principal)


def test_approved_contractor_gets_username_and_code_from_the_principal_and_activates(console, new_page):
    import re

    anon = new_page()
    number = request_account(anon, console, given="Carla", sn="Contractor")
    principal = sign_in(new_page(), console, *PRINCIPAL_1234)
    open_request(principal, console, number)
    # nothing to hand out before the approval
    assert principal.get_by_role("button", name="Issue activation code").count() == 0
    principal.get_by_role("button", name="Approve").click()
    assert principal.locator("#request-status").inner_text() == "APPROVED"
    (_, req), = root_read(console, f"rollcallRequestNumber={number},ou=requests,{SUFFIX}")
    account_dn = req["rollcallLinkedAccount"][0]

    # people who may not decide the request may not hand out its account either (the
    # server decides: a forged POST by the site's student email sub-administrator)
    subadmin = sign_in(new_page(), console, "tnguyen", "demo-subadmin-pw")
    csrf = subadmin.locator("form.signout input[name=csrf]").get_attribute("value")
    r = subadmin.request.post(f"{console.base}/requests/{number}/issue-code", form={"csrf": csrf})
    assert r.status == 403 and "You may not hand out the account" in r.text()
    other = sign_in(new_page(), console, *PRINCIPAL_5678)
    csrf = other.locator("form.signout input[name=csrf]").get_attribute("value")
    r = other.request.post(f"{console.base}/requests/{number}/issue-code", form={"csrf": csrf})
    assert r.status == 403
    (_, acc), = root_read(console, account_dn)
    assert "rollcallActivationCodeHash" not in acc

    open_request(principal, console, number)
    principal.get_by_role("button", name="Issue activation code").click()
    assert "/code/" in principal.url
    result_url = principal.url
    username = principal.locator("#issued-username").inner_text().strip()
    code = principal.locator("#activation-code").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", code) and account_dn.startswith(f"uid={username},")
    assert unlabelled_controls(principal) == []
    shot(principal, "requests-issued-code")
    # shown once: a reload does not issue another code
    principal.reload()
    assert "This result was shown already" in principal.locator("main").inner_text()
    assert code not in principal.content()
    principal.goto(result_url)
    assert code not in principal.content()

    contractor = new_page()
    contractor.goto(console.base + "/activate")
    contractor.get_by_label("Username").fill(username)
    contractor.get_by_label("Activation code").fill(code)
    contractor.get_by_label("New password", exact=True).fill("Harbor-violet-639!")
    contractor.get_by_label("New password again").fill("Harbor-violet-639!")
    contractor.get_by_role("button", name="Activate").click()
    assert "is active" in contractor.get_by_role("status").inner_text()
    # the contractor's first LDAP bind with the chosen password
    c = Connection(Server(console.server.url), account_dn, "Harbor-violet-639!")
    assert c.bind(), c.result
    c.unbind()
    # an active account gets no new code
    open_request(principal, console, number)
    principal.get_by_role("button", name="Issue activation code").click()
    assert "activation codes are for PENDING accounts" in principal.get_by_role("alert").inner_text()
