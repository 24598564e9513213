"""Access requests and role grants over the wire (ldap3, the OpenLDAP tools and the
`rollcall request` command line) against a real server loaded with the demo district:
every kind through approve and deny, the wrong approver, self-approval, withdrawal,
a revoked principal, two approvers at once, anonymous submission and its rate limit,
the expiry job, and the audit entries of it all."""
import json
import re
import statistics
import threading
import time

import pytest
import yaml
from ldap3 import BASE, LEVEL, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, NONE, SUBTREE, Connection, Server

from directory.config import load_config
from directory.demo import PASSWORDS, demo_ldif
from directory.store import open_store
from tests.conftest import ROOT, ROOT_DN, ROOT_PW, SUFFIX, ServerProcess, requires_ldap_utils
from tests.protocol import ldaputil

SCHEMA = [str(ROOT / "schema" / f"{n}.schema")
          for n in ("core", "cosine", "inetorgperson", "nis", "eduperson", "rollcall", "rollcall-photos")]
REQUESTS = f"ou=requests,{SUFFIX}"
NEW = f"rollcallRequestNumber=0,{REQUESTS}"
SITES = f"ou=sites,{SUFFIX}"
WELLIGENT = f"ou=welligent,ou=groups,{SUFFIX}"
DISTRICT_ADMINS = f"cn=district-admins,ou=groups,{SUFFIX}"

SUCCESS, INSUFFICIENT, UNWILLING, BUSY = 0, 50, 53, 51
CONSTRAINT, SYNTAX, EXISTS = 19, 21, 20

# who is who in the demo district (directory/demo.py)
ROLE_OF = {"pwong": "principal", "dokafor": "principal", "lmartinez": "principal",
           "tnguyen": "sub-administrator", "rjohnson": "sub-administrator", "kpatel": "photo designee",
           "gsantos": "photo designee",
           "ewilson": "teacher", "sjones": "therapist", "hkim": "case manager",
           "aroberts": "district administrator", "jreyes": "contractor", "mdubois": "photo vendor",
           "jsmith": "student", "sso-portal": "SSO service"}


def dn_of(uid):
    if uid in ("jreyes", "mdubois"):
        return f"uid={uid},ou=nonemployees,ou=people,{SUFFIX}"
    if uid == "jsmith":
        return f"uid={uid},ou=students,ou=people,{SUFFIX}"
    if uid == "sso-portal":
        return f"cn={uid},ou=services,{SUFFIX}"
    return f"uid={uid},ou=staff,ou=people,{SUFFIX}"


def site(code):
    return f"ou={code},{SITES}"


def role_group(role, code):
    return f"cn={role},{site(code)}"


def config_for(**requests):
    with open(ROOT / "config.yaml") as fh:
        real = yaml.safe_load(fh)
    return {"schema": SCHEMA, "access": real["access"], "indexes": real["indexes"],
            "requests": {"anonymous_limit": 1000, **requests}}


def start(workdir, **requests):
    return ServerProcess(workdir, extra_config=config_for(**requests), ldif=demo_ldif(SUFFIX)).start()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start(tmp_path_factory.mktemp("requests"))
    yield s
    s.stop()


@pytest.fixture
def fresh(tmp_path):
    servers = []

    def make(**requests):
        workdir = tmp_path / f"s{len(servers)}"
        workdir.mkdir()
        servers.append(start(workdir, **requests))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


def connect(server, who=None):
    """A bound ldap3 connection: who = a demo uid, 'root', or None (anonymous)."""
    server = Server(server.url, get_info=NONE)  # no schema: every value a list of strings
    if who is None:
        c = Connection(server, raise_exceptions=False, receive_timeout=60)
    elif who == "root":
        c = Connection(server, ROOT_DN, ROOT_PW, raise_exceptions=False, receive_timeout=60)
    else:
        c = Connection(server, dn_of(who), PASSWORDS[ROLE_OF[who]], raise_exceptions=False, receive_timeout=60)
    assert c.bind(), c.result
    return c


def submit(c, kind, **attrs):
    """Add a request as rollcallRequestNumber=0; returns (result code, DN, message)."""
    base = {"objectClass": ["top", "rollcallRequest"], "rollcallRequestNumber": "0",
            "rollcallRequestKind": kind, "rollcallRequestStatus": "PENDING"}
    base.update({k: v for k, v in attrs.items() if v is not None})
    c.add(NEW, attributes=base)
    message = c.result.get("message") or ""
    dn = message[len("added as "):] if message.startswith("added as ") else None
    return c.result["result"], dn, message


def nonemployee(c, code="1234", mail="ana.lopez@acme.example", **extra):
    attrs = {"givenName": "Ana", "sn": "López", "mail": mail, "rollcallOrganization": "Acme Therapy",
             "rollcallNonEmployeeKind": "CONTRACTOR", "rollcallRequestTarget": site(code),
             "rollcallJustification": "Occupational therapy for two students"}
    attrs.update(extra)
    return submit(c, "NON_EMPLOYEE_ACCOUNT", **attrs)


def decide(c, dn, status, reason=None, expiry=None):
    changes = {"rollcallRequestStatus": [(MODIFY_REPLACE, [status])]}
    if reason:
        changes["rollcallDecisionReason"] = [(MODIFY_REPLACE, [reason])]
    if expiry:
        changes["rollcallExpiry"] = [(MODIFY_REPLACE, [expiry])]
    c.modify(dn, changes)
    return c.result["result"]


def read(server, dn, attrs=("*", "+"), who="root"):
    c = connect(server, who)
    ok = c.search(dn, "(objectClass=*)", BASE, attributes=list(attrs))
    out = {k: [str(x) for x in (v if isinstance(v, list) else [v])]
           for k, v in c.response[0]["attributes"].items() if v not in ([], None)} \
        if ok and c.response and c.response[0].get("type") == "searchResEntry" else None
    c.unbind()
    return out


def status_of(server, dn):
    return read(server, dn)["rollcallRequestStatus"][0]


def members(server, group):
    return {m.lower() for m in read(server, group, ["member"])["member"]}


def gentime(offset_days):
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + offset_days * 86400))


def audit(server, dn=None):
    args = ["audit", "--format", "json"] + (["--dn", dn] if dn else [])
    return [json.loads(line) for line in server.rollcall(*args).stdout.splitlines()]


def app_role(role):
    return f"cn=welligent-{role},{WELLIGENT}"


# ----------------------------------------------------------------------------
# 1. non-employee accounts


def test_nonemployee_anonymous_submit_track_and_approve(srv):
    anon = connect(srv)
    code, dn, message = nonemployee(anon, mail="ana.lopez@acme.example", telephoneNumber="+1 555 0199 0001")
    assert code == SUCCESS, anon.result
    assert dn and dn.startswith("rollcallRequestNumber=") and dn.endswith(REQUESTS) and "=0," not in dn
    number = dn.split(",")[0].split("=")[1]
    assert int(number) >= 1

    # anonymous sees the number and kind, nothing personal and not the status or decision
    # (the requester follows it on the console's track page with the request's secret)
    seen = read(srv, dn, ["*"], who=None)
    assert seen["rollcallRequestNumber"] == [number] and seen["rollcallRequestKind"] == ["NON_EMPLOYEE_ACCOUNT"]
    assert "rollcallRequestStatus" not in seen
    assert "mail" not in seen and "givenName" not in seen
    # students do not read requests; staff do
    assert not (read(srv, dn, ["mail", "givenName"], who="jsmith") or {})
    assert read(srv, dn, ["mail"], who="ewilson")["mail"] == ["ana.lopez@acme.example"]

    entry = read(srv, dn)
    assert "rollcallRequester" not in entry and entry["rollcallRequestKind"] == ["NON_EMPLOYEE_ACCOUNT"]
    assert entry["cn"] == ["Ana López"]

    principal = connect(srv, "pwong")
    assert decide(principal, dn, "APPROVED", reason="Contract C-2025-77 on file") == SUCCESS, principal.result
    entry = read(srv, dn)
    assert entry["rollcallRequestStatus"] == ["APPROVED"]
    assert entry["rollcallDecidedBy"] == [dn_of("pwong")] and entry["rollcallDecidedAt"]
    account_dn = entry["rollcallLinkedAccount"][0]
    assert account_dn.endswith(f"ou=nonemployees,ou=people,{SUFFIX}")
    account = read(srv, account_dn)
    assert account["rollcallAccountStatus"] == ["PENDING"]
    assert account["rollcallNonEmployeeKind"] == ["CONTRACTOR"]
    assert account["rollcallOrganization"] == ["Acme Therapy"]
    assert account["rollcallSponsor"] == [dn_of("pwong")]
    assert account["departmentNumber"] == ["1234"] and account["mail"] == ["ana.lopez@acme.example"]
    assert account["eduPersonAffiliation"] == ["affiliate"]
    assert "userPassword" not in account
    # default expiry: one school year (365 days) from the approval
    expiry = account["rollcallExpiry"][0]
    assert gentime(364) < expiry < gentime(366)
    assert entry["rollcallExpiry"] == [expiry]

    # anonymous does not see the outcome (nor the reason) by number
    assert not read(srv, dn, ["rollcallRequestStatus", "rollcallDecisionReason", "rollcallDecidedAt"], who=None)

    # audit: the submission (anonymous, with its address), the decision, the account
    log = audit(srv)
    sub = [r for r in log if r["op"] == "add" and r["dn"] == dn]
    assert sub and sub[0]["who"] == "" and sub[0]["peer"].startswith("127.0.0.1")
    decision = [r for r in log if r["op"] == "requestApproved" and r["dn"] == dn]
    assert decision and decision[0]["who"] == dn_of("pwong").lower() and decision[0]["detail"]["account"] == account_dn
    created = [r for r in log if r["op"] == "add" and r["dn"] == account_dn]
    assert created and created[0]["detail"]["request"] == dn


def test_nonemployee_deny_needs_a_reason_the_requester_sees(srv):
    anon = connect(srv)
    code, dn, _ = nonemployee(anon, code="9012", mail="pat.doe@charter.example",
                              rollcallNonEmployeeKind="CHARTER", rollcallOrganization="Bayside Charter")
    assert code == SUCCESS
    principal = connect(srv, "lmartinez")
    assert decide(principal, dn, "DENIED") == CONSTRAINT          # no reason
    assert status_of(srv, dn) == "PENDING"
    assert decide(principal, dn, "DENIED", reason="No contract with Bayside Charter") == SUCCESS
    # staff read the reason; anonymous does not, by number alone
    seen = read(srv, dn, ["rollcallRequestStatus", "rollcallDecisionReason"], who="ewilson")
    assert seen == {"rollcallRequestStatus": ["DENIED"],
                    "rollcallDecisionReason": ["No contract with Bayside Charter"]}
    assert not read(srv, dn, ["rollcallRequestStatus", "rollcallDecisionReason"], who=None)
    entry = read(srv, dn)
    assert "rollcallLinkedAccount" not in entry
    assert any(r["op"] == "requestDenied" and r["dn"] == dn for r in audit(srv))
    # decided is final
    assert decide(principal, dn, "APPROVED") == UNWILLING
    assert decide(connect(srv, "aroberts"), dn, "APPROVED") == UNWILLING


@pytest.mark.parametrize("change, code", [
    ({"mail": "not-an-address"}, SYNTAX),
    ({"mail": "a..b@x.example"}, SYNTAX),
    ({"mail": "ana@nodot"}, SYNTAX),
    ({"givenName": None}, 65),                                    # required field missing
    ({"rollcallNonEmployeeKind": "FRIEND"}, CONSTRAINT),
    ({"rollcallRequestTarget": f"cn=principals,{site('1234')}"}, CONSTRAINT),   # not a site
    # no such site: accepted alike (test_anonymous_request_answers_alike_for_a_known_and_an_unknown_site)
    ({"rollcallRequestStatus": "APPROVED"}, CONSTRAINT),           # must start PENDING
    ({"rollcallDecidedBy": dn_of("pwong")}, CONSTRAINT),           # server-set
    ({"rollcallRequester": dn_of("ewilson")}, INSUFFICIENT),       # anonymous has no requester
])
def test_nonemployee_request_is_validated(srv, change, code):
    anon = connect(srv)
    attrs = {"givenName": "Val", "sn": "Idation", "mail": "val@acme.example", "rollcallOrganization": "Acme",
             "rollcallNonEmployeeKind": "AGENCY", "rollcallRequestTarget": site("1234")}
    attrs.update(change)
    status = attrs.pop("rollcallRequestStatus", "PENDING")
    base = {"objectClass": ["top", "rollcallRequest"], "rollcallRequestNumber": "0",
            "rollcallRequestKind": "NON_EMPLOYEE_ACCOUNT", "rollcallRequestStatus": status}
    base.update({k: v for k, v in attrs.items() if v is not None})
    anon.add(NEW, attributes=base)
    assert anon.result["result"] == code, anon.result


def test_numbers_are_assigned_by_the_server(srv):
    user = connect(srv, "ewilson")
    user.add(f"rollcallRequestNumber=4242,{REQUESTS}", attributes={
        "objectClass": "rollcallRequest", "rollcallRequestNumber": "4242", "rollcallRequestStatus": "PENDING",
        "rollcallRequestKind": "APPLICATION_ROLE", "rollcallRequestTarget": app_role("therapist")})
    assert user.result["result"] == UNWILLING and "rollcallRequestNumber=0" in user.result["message"]
    anon = connect(srv)
    numbers = []
    for i in range(3):
        code, dn, _ = nonemployee(anon, mail=f"seq{i}@acme.example")
        assert code == SUCCESS
        numbers.append(int(dn.split(",")[0].split("=")[1]))
    assert numbers == sorted(numbers) and len(set(numbers)) == 3 and numbers[2] - numbers[0] == 2


def test_anonymous_may_only_request_accounts(srv):
    anon = connect(srv)
    code, _, _ = submit(anon, "APPLICATION_ROLE", rollcallRequestTarget=app_role("therapist"),
                        rollcallGrantee=dn_of("ewilson"))
    assert code == INSUFFICIENT
    code, _, _ = submit(anon, "SUBADMIN", rollcallRequestTarget=role_group("photo-designees", "1234"),
                        rollcallGrantee=dn_of("ewilson"))
    assert code == INSUFFICIENT


def test_anonymous_request_answers_alike_for_a_known_and_an_unknown_site(srv):
    """Anonymous users cannot read ou=sites, and the request must not tell them which
    school codes exist: the same result, the same message and about the same time for
    1234 (Lincoln Elementary) and 4321 (no such site). The request for 4321 then reaches
    nobody: no principal decides it, approval is refused, a district administrator
    may deny it."""
    anon = connect(srv)
    answers, times = {"1234": [], "4321": []}, {"1234": [], "4321": []}
    for i in range(12):
        for code in ("1234", "4321"):
            started = time.perf_counter()
            answers[code].append(nonemployee(anon, code=code, mail=f"alike{i}.{code}@acme.example"))
            times[code].append(time.perf_counter() - started)
    for code in answers:
        assert {a[0] for a in answers[code]} == {SUCCESS}, answers[code]
    assert {re.sub(r"[0-9]+", "N", a[2]) for a in answers["1234"] + answers["4321"]} == \
        {f"added as rollcallRequestNumber=N,ou=requests,{SUFFIX}"}
    # what anonymous users read back of either: the number and the kind, nothing else
    seen = [read(srv, answers[code][0][1], who=None) for code in ("1234", "4321")]
    assert [sorted(k for k in e if k != "rollcallRequestNumber") for e in seen] == [["objectClass",
                                                                                     "rollcallRequestKind"]] * 2
    # timing: the medians differ by less than the noise of one durable write
    known, unknown = statistics.median(times["1234"]), statistics.median(times["4321"])
    assert abs(known - unknown) < max(0.015, 0.5 * min(known, unknown)), (known, unknown)

    dn = answers["4321"][0][1]
    entry = read(srv, dn)
    assert entry["rollcallRequestStatus"] == ["PENDING"]
    assert any(d.startswith("flag: no school or office has this code") for d in entry["description"])
    # no principal of any site decides it; approval is refused, denial by a district administrator works
    assert decide(connect(srv, "pwong"), dn, "DENIED", "not mine") == INSUFFICIENT
    for who in ("pwong", "aroberts"):
        assert decide(connect(srv, who), dn, "APPROVED") == CONSTRAINT  # its site does not exist
    assert decide(connect(srv, "aroberts"), dn, "DENIED", "No school or office has the code 4321.") == SUCCESS
    # signed-in users read the sites anyway: for them the refusal names the problem
    code, _, message = nonemployee(connect(srv, "ewilson"), code="4321", mail="signed.in@acme.example")
    assert code == CONSTRAINT and "does not exist" in message


def test_duplicate_mail_is_flagged_and_dual_capacity_is_a_second_identity(srv):
    """hkim (an employee) also works evenings for a contractor: the request with her mail
    is flagged; approved, it makes a separate non-employee identity linked by seeAlso,
    and her employee account is untouched."""
    before = read(srv, dn_of("hkim"))
    code, dn, _ = nonemployee(connect(srv), code="5678", mail="hkim@district.example", givenName="Helen",
                              sn="Kim", rollcallOrganization="Evening Tutors LLC")
    assert code == SUCCESS
    entry = read(srv, dn)
    assert any(d.startswith("flag: duplicate mail") and dn_of("hkim") in d for d in entry["description"])
    assert decide(connect(srv, "aroberts"), dn, "APPROVED") == SUCCESS
    account_dn = read(srv, dn)["rollcallLinkedAccount"][0]
    assert account_dn != dn_of("hkim") and "ou=nonemployees" in account_dn
    account = read(srv, account_dn)
    assert account["seeAlso"] == [dn_of("hkim")]
    assert account["rollcallSponsor"] == [dn_of("aroberts")]
    after = read(srv, dn_of("hkim"))
    for name in ("rollcallAccountStatus", "eduPersonAffiliation", "memberOf", "modifyTimestamp"):
        assert after.get(name) == before.get(name)


def test_nobody_approves_an_account_request_with_their_own_mail(srv):
    code, dn, _ = nonemployee(connect(srv), code="1234", mail="pwong@district.example", givenName="Patricia",
                              sn="Wong")
    assert code == SUCCESS
    assert decide(connect(srv, "pwong"), dn, "APPROVED") == INSUFFICIENT
    assert status_of(srv, dn) == "PENDING"


# ----------------------------------------------------------------------------
# 2. application roles


def test_application_role_approved_by_the_application_approvers(srv):
    teacher = connect(srv, "ewilson")
    code, dn, _ = submit(teacher, "APPLICATION_ROLE", rollcallRequestTarget=app_role("case-manager"),
                         rollcallJustification="Case manager for the 5678 resource room",
                         rollcallExpiry=gentime(200))
    assert code == SUCCESS, teacher.result
    entry = read(srv, dn)
    assert entry["rollcallRequester"] == [dn_of("ewilson")] and entry["rollcallGrantee"] == [dn_of("ewilson")]
    # a teacher, a principal and a district administrator are not Welligent's approvers
    for who in ("sjones", "pwong", "aroberts"):
        assert decide(connect(srv, who), dn, "APPROVED") == INSUFFICIENT, who
    assert status_of(srv, dn) == "PENDING"
    approver = connect(srv, "hkim")
    assert decide(approver, dn, "APPROVED") == SUCCESS, approver.result
    assert dn_of("ewilson").lower() in members(srv, app_role("case-manager"))
    # the SSO service sees the role as memberOf
    sso = read(srv, dn_of("ewilson"), ["memberOf"], who="sso-portal")
    assert app_role("case-manager") in sso["memberOf"]
    grant = read(srv, f"cn=ewilson,{app_role('case-manager')}")
    assert grant["rollcallGrantee"] == [dn_of("ewilson")]
    assert grant["rollcallGrantedBy"] == [dn_of("hkim")]
    assert grant["rollcallGrantRequest"] == [dn]
    assert grant["rollcallGrantExpiry"] == entry["rollcallExpiry"]
    assert grant["rollcallGrantedAt"]
    log = audit(srv)
    assert any(r["op"] == "modify" and r["dn"].lower() == app_role("case-manager").lower()
               and r["detail"].get("request") == dn and r["who"] == dn_of("hkim").lower() for r in log)


def test_application_role_wrong_role_denied_with_reason(srv):
    designee = connect(srv, "kpatel")
    code, dn, _ = submit(designee, "APPLICATION_ROLE", rollcallRequestTarget=app_role("therapist"))
    assert code == SUCCESS
    reason = "Wrong role: office staff need read-only access, ask for case-manager via your coordinator"
    assert decide(connect(srv, "hkim"), dn, "DENIED", reason=reason) == SUCCESS
    # the requester reads the reason
    mine = read(srv, dn, ["rollcallRequestStatus", "rollcallDecisionReason"], who="kpatel")
    assert mine == {"rollcallRequestStatus": ["DENIED"], "rollcallDecisionReason": [reason]}
    assert dn_of("kpatel").lower() not in members(srv, app_role("therapist"))


def test_application_role_targets_are_checked(srv):
    teacher = connect(srv, "ewilson")
    # the approvers group is not a role
    assert submit(teacher, "APPLICATION_ROLE", rollcallRequestTarget=app_role("approvers"))[0] == CONSTRAINT
    # a site's group is not an application role
    assert submit(teacher, "APPLICATION_ROLE",
                  rollcallRequestTarget=role_group("principals", "5678"))[0] == CONSTRAINT
    # no such role
    assert submit(teacher, "APPLICATION_ROLE", rollcallRequestTarget=app_role("wizard"))[0] == CONSTRAINT
    # a role already held
    assert submit(connect(srv, "sjones"), "APPLICATION_ROLE",
                  rollcallRequestTarget=app_role("therapist"))[0] == EXISTS
    # one cannot file for someone else as requester
    assert submit(teacher, "APPLICATION_ROLE", rollcallRequestTarget=app_role("therapist"),
                  rollcallRequester=dn_of("pwong"))[0] == INSUFFICIENT


# ----------------------------------------------------------------------------
# 3. sub-administrator privileges


def test_subadmin_approved_by_the_site_principal(srv):
    designee = connect(srv, "kpatel")
    code, dn, _ = submit(designee, "SUBADMIN", rollcallRequestTarget=role_group("student-email-admins", "1234"))
    assert code == SUCCESS
    # principals of other sites, the site's sub-administrator, an application approver: no
    for who in ("dokafor", "tnguyen", "hkim"):
        assert decide(connect(srv, who), dn, "APPROVED") == INSUFFICIENT, who
    assert decide(connect(srv, "pwong"), dn, "APPROVED") == SUCCESS
    assert dn_of("kpatel").lower() in members(srv, role_group("student-email-admins", "1234"))
    # the new sub-administrator now administers 1234's students (the site-group rule)
    c = connect(srv, "kpatel")
    c.search(f"ou=students,ou=people,{SUFFIX}", "(uid=jsmith)", SUBTREE, attributes=["mail"])
    assert [e["attributes"].get("mail") for e in c.response if e["type"] == "searchResEntry"] == \
        [["jsmith@students.district.example"]]


def test_subadmin_approved_by_a_district_administrator_and_denied(srv):
    teacher = connect(srv, "ewilson")
    code, dn, _ = submit(teacher, "SUBADMIN", rollcallRequestTarget=role_group("photo-designees", "5678"))
    assert code == SUCCESS
    assert decide(connect(srv, "aroberts"), dn, "APPROVED") == SUCCESS
    assert dn_of("ewilson").lower() in members(srv, role_group("photo-designees", "5678"))
    grant = read(srv, f"cn=ewilson,{role_group('photo-designees', '5678')}")
    assert grant["rollcallGrantedBy"] == [dn_of("aroberts")] and "rollcallGrantExpiry" not in grant

    code, dn, _ = submit(connect(srv, "tnguyen"), "SUBADMIN",
                         rollcallRequestTarget=role_group("photo-designees", "1234"))
    assert code == SUCCESS
    assert decide(connect(srv, "pwong"), dn, "DENIED", reason="Kavya Patel is our designee") == SUCCESS
    assert dn_of("tnguyen").lower() not in members(srv, role_group("photo-designees", "1234"))


def test_subadmin_targets_are_checked(srv):
    teacher = connect(srv, "ewilson")
    # principals is not a sub-administrator role
    assert submit(teacher, "SUBADMIN", rollcallRequestTarget=role_group("principals", "5678"))[0] == CONSTRAINT
    assert submit(teacher, "SUBADMIN", rollcallRequestTarget=app_role("therapist"))[0] == CONSTRAINT
    assert submit(teacher, "SUBADMIN", rollcallRequestTarget=role_group("photo-designees", "4444"))[0] == CONSTRAINT
    assert submit(teacher, "TIME_MACHINE", rollcallRequestTarget=site("5678"))[0] == CONSTRAINT


# ----------------------------------------------------------------------------
# 4. photo vendors


def test_photo_vendor_granted_by_the_principal_only(srv):
    designee = connect(srv, "kpatel")
    # filed by the site's photo designee for the vendor's (active) account; the site's DN will do
    code, dn, _ = submit(designee, "PHOTO_VENDOR", rollcallRequestTarget=site("1234"),
                         rollcallGrantee=dn_of("jreyes"))
    assert code == SUCCESS, designee.result
    assert read(srv, dn)["rollcallRequestTarget"] == [role_group("photo-vendors", "1234")]
    # a district administrator is not the principal; neither is another site's
    assert decide(connect(srv, "aroberts"), dn, "APPROVED") == INSUFFICIENT
    assert decide(connect(srv, "lmartinez"), dn, "APPROVED") == INSUFFICIENT
    assert decide(connect(srv, "pwong"), dn, "APPROVED", expiry=gentime(30)) == SUCCESS
    assert dn_of("jreyes").lower() in members(srv, role_group("photo-vendors", "1234"))
    grant = read(srv, f"cn=jreyes,{role_group('photo-vendors', '1234')}")
    assert grant["rollcallGrantExpiry"][0][:8] == gentime(30)[:8]

    code, dn, _ = submit(connect(srv, "jreyes"), "PHOTO_VENDOR",
                         rollcallRequestTarget=role_group("photo-vendors", "9012"))
    assert code == SUCCESS
    assert decide(connect(srv, "lmartinez"), dn, "DENIED", reason="Picture day is booked") == SUCCESS
    assert dn_of("jreyes").lower() not in members(srv, role_group("photo-vendors", "9012"))


def test_removing_a_member_by_hand_removes_the_grant_record(srv):
    """A principal revokes a vendor by editing the group (as the web console does): the
    grant record beneath the group goes in the same transaction, with its audit entry,
    so a later re-admission is not refused by an old, expired record."""
    group = role_group("photo-vendors", "5678")
    code, dn, _ = submit(connect(srv, "gsantos"), "PHOTO_VENDOR", rollcallRequestTarget=group,
                         rollcallGrantee=dn_of("jreyes"))
    assert code == SUCCESS
    assert decide(connect(srv, "dokafor"), dn, "APPROVED", expiry=gentime(30)) == SUCCESS
    grant_dn = f"cn=jreyes,{group}"
    assert read(srv, grant_dn) is not None
    principal = connect(srv, "dokafor")
    assert principal.modify(group, {"member": [(MODIFY_DELETE, [dn_of("jreyes")])]}), principal.result
    assert dn_of("jreyes").lower() not in members(srv, group)
    assert read(srv, grant_dn) is None
    revoked = [a for a in audit(srv, grant_dn) if a.get("op") == "grantRevoked"]
    assert revoked and revoked[-1]["who"].lower() == dn_of("dokafor").lower()
    # another member's removal leaves other grants alone; a group without grants is untouched
    assert principal.modify(group, {"member": [(MODIFY_ADD, [dn_of("jreyes")])]}), principal.result
    assert read(srv, grant_dn) is None


def test_photo_vendor_needs_an_active_account(srv):
    # a freshly approved non-employee account is PENDING: not yet a vendor
    code, dn, _ = nonemployee(connect(srv), code="5678", mail="lens@snap.example", givenName="Lena",
                              sn="Snap", rollcallOrganization="Snap Photos")
    assert decide(connect(srv, "dokafor"), dn, "APPROVED") == SUCCESS
    pending = read(srv, dn)["rollcallLinkedAccount"][0]
    code, _, _ = submit(connect(srv, "kpatel"), "PHOTO_VENDOR",
                        rollcallRequestTarget=site("5678"), rollcallGrantee=pending)
    assert code == CONSTRAINT
    # and a DISABLED one never
    code, _, _ = submit(connect(srv, "kpatel"), "PHOTO_VENDOR", rollcallRequestTarget=site("5678"),
                        rollcallGrantee=f"uid=bcarter,ou=staff,ou=people,{SUFFIX}")
    assert code == CONSTRAINT


# ----------------------------------------------------------------------------
# approver rules, withdrawal, immutability


def test_nobody_approves_their_own_request(srv):
    principal = connect(srv, "pwong")
    code, dn, _ = submit(principal, "SUBADMIN", rollcallRequestTarget=role_group("photo-designees", "1234"))
    assert code == SUCCESS
    assert decide(principal, dn, "APPROVED") == INSUFFICIENT
    assert decide(principal, dn, "DENIED", reason="changed my mind") == INSUFFICIENT
    assert status_of(srv, dn) == "PENDING"
    # ... nor one that names them as grantee, filed by someone else
    code, dn2, _ = submit(connect(srv, "kpatel"), "SUBADMIN",
                          rollcallRequestTarget=role_group("student-email-admins", "1234"),
                          rollcallGrantee=dn_of("pwong"))
    assert code == SUCCESS
    assert decide(principal, dn2, "APPROVED") == INSUFFICIENT
    # a district administrator approving for themselves: no
    admin = connect(srv, "aroberts")
    code, dn3, _ = submit(admin, "SUBADMIN", rollcallRequestTarget=role_group("student-email-admins", "9012"))
    assert code == SUCCESS
    assert decide(admin, dn3, "APPROVED") == INSUFFICIENT
    # someone else may
    assert decide(admin, dn, "APPROVED") == SUCCESS
    assert decide(connect(srv, "lmartinez"), dn3, "APPROVED") == SUCCESS


def test_withdraw_only_by_the_requester_and_only_while_pending(srv):
    teacher = connect(srv, "ewilson")
    code, dn, _ = submit(teacher, "APPLICATION_ROLE", rollcallRequestTarget=app_role("therapist"))
    assert code == SUCCESS
    assert decide(connect(srv, "hkim"), dn, "WITHDRAWN") == INSUFFICIENT
    assert decide(connect(srv, "aroberts"), dn, "WITHDRAWN") == INSUFFICIENT
    assert decide(teacher, dn, "WITHDRAWN", reason="filed twice") == SUCCESS
    assert status_of(srv, dn) == "WITHDRAWN"
    assert decide(connect(srv, "hkim"), dn, "APPROVED") == UNWILLING
    assert dn_of("ewilson").lower() not in members(srv, app_role("therapist"))
    # an approved request cannot be withdrawn (revoking a grant is a group change)
    code, dn, _ = submit(teacher, "SUBADMIN", rollcallRequestTarget=role_group("student-email-admins", "5678"))
    assert decide(connect(srv, "dokafor"), dn, "APPROVED") == SUCCESS
    assert decide(teacher, dn, "WITHDRAWN") == UNWILLING
    # the expiry job's status is the job's
    code, dn, _ = submit(connect(srv, "kpatel"), "APPLICATION_ROLE", rollcallRequestTarget=app_role("therapist"))
    assert decide(connect(srv, "hkim"), dn, "EXPIRED") == INSUFFICIENT
    # anonymous users decide nothing
    code, dn, _ = nonemployee(connect(srv), mail="anon.decides@acme.example")
    assert decide(connect(srv), dn, "WITHDRAWN") == INSUFFICIENT
    assert decide(connect(srv), dn, "APPROVED") == INSUFFICIENT


def test_requests_are_kept_and_only_decided(srv):
    teacher = connect(srv, "ewilson")
    code, dn, _ = submit(teacher, "APPLICATION_ROLE", rollcallRequestTarget=app_role("therapist"),
                         rollcallJustification="first version")
    teacher.modify(dn, {"rollcallJustification": [(MODIFY_REPLACE, ["edited"])]})
    assert teacher.result["result"] == INSUFFICIENT
    admin = connect(srv, "aroberts")
    admin.modify(dn, {"rollcallRequestTarget": [(MODIFY_REPLACE, [app_role("case-manager")])]})
    assert admin.result["result"] == UNWILLING
    admin.modify(dn, {"rollcallDecisionReason": [(MODIFY_REPLACE, ["just a note"])]})
    assert admin.result["result"] == UNWILLING  # a change is a decision
    for c in (teacher, admin):
        c.delete(dn)
        assert c.result["result"] in (UNWILLING, INSUFFICIENT)
        c.modify_dn(dn, "rollcallRequestNumber=99999")
        assert c.result["result"] in (UNWILLING, INSUFFICIENT)
    assert status_of(srv, dn) == "PENDING"


def test_a_revoked_principal_decides_nothing_and_the_request_waits(srv):
    principal = connect(srv, "dokafor")  # bound before the revocation: rights are read per decision
    code, dn, _ = nonemployee(connect(srv), code="5678", mail="sam.r@agency.example", givenName="Sam",
                              sn="Rivera", rollcallNonEmployeeKind="AGENCY", rollcallOrganization="County Agency")
    assert code == SUCCESS
    admin = connect(srv, "aroberts")
    group = role_group("principals", "5678")
    # dokafor is the only principal of 5678: the group names its site meanwhile
    admin.modify(group, {"member": [(MODIFY_REPLACE, [site("5678")])]})
    assert admin.result["result"] == SUCCESS, admin.result
    try:
        assert decide(principal, dn, "APPROVED") == INSUFFICIENT
        assert decide(principal, dn, "DENIED", reason="revoked") == INSUFFICIENT
        assert status_of(srv, dn) == "PENDING"
        # the next approver (here a district administrator) decides it
        assert decide(admin, dn, "APPROVED") == SUCCESS
        assert read(srv, dn)["rollcallDecidedBy"] == [dn_of("aroberts")]
    finally:
        admin.modify(group, {"member": [(MODIFY_REPLACE, [dn_of("dokafor")])]})


# ----------------------------------------------------------------------------
# concurrency


def test_two_approvers_at_once_make_one_decision(srv):
    principal, admin = connect(srv, "pwong"), connect(srv, "aroberts")
    anon = connect(srv)
    for round_ in range(6):
        code, dn, _ = nonemployee(anon, mail=f"race{round_}@acme.example", givenName="Race", sn=f"Condition{round_}")
        assert code == SUCCESS
        # half the rounds: both approve; the other half: one approves, one denies
        plans = [(principal, "APPROVED", None),
                 (admin, "APPROVED" if round_ % 2 == 0 else "DENIED", "no" if round_ % 2 else None)]
        barrier = threading.Barrier(2)
        results = [None, None]

        def go(i, conn, status, reason):
            barrier.wait()
            results[i] = decide(conn, dn, status, reason)

        threads = [threading.Thread(target=go, args=(i, *p)) for i, p in enumerate(plans)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == [SUCCESS, UNWILLING], results
        winner = plans[results.index(SUCCESS)]
        entry = read(srv, dn)
        assert entry["rollcallRequestStatus"] == [winner[1]]
        assert entry["rollcallDecidedBy"] == [dn_of("pwong") if winner[0] is principal else dn_of("aroberts")]
        # exactly one account when approved, none when denied
        c = connect(srv, "root")
        c.search(f"ou=nonemployees,ou=people,{SUFFIX}", f"(mail=race{round_}@acme.example)", LEVEL,
                 attributes=["uid"])
        accounts = [e for e in c.response if e["type"] == "searchResEntry"]
        assert len(accounts) == (1 if winner[1] == "APPROVED" else 0)
        decisions = [r for r in audit(srv, dn) if r["op"].startswith("request") and r["dn"] == dn]
        assert len(decisions) == 1


# ----------------------------------------------------------------------------
# the command line and the OpenLDAP tools


def test_command_line_submit_show_list_approve(srv):
    code = srv.rollcall("request", "submit", "--url", srv.url, "--kind", "nonemployee", "--given", "Cli",
                        "--sn", "User", "--mail", "cli.user@acme.example", "--organization", "Acme",
                        "--ne-kind", "contractor", "--site", "9012", "--justification", "CLI test")
    assert "submitted" in code.stdout, code
    number = code.stdout.split()[1]
    shown = srv.rollcall("request", "show", number, "--url", srv.url, "--format", "ldif").stdout
    # anonymous view: the number and kind only
    assert "rollcallRequestKind: NON_EMPLOYEE_ACCOUNT" in shown and "mail" not in shown
    assert "rollcallRequestStatus" not in shown
    principal = ["-D", dn_of("lmartinez"), "-w", PASSWORDS["principal"], "--url", srv.url]
    listed = srv.rollcall("request", "list", *principal).stdout
    assert any(line.split()[:1] == [number] for line in listed.splitlines())
    bad = srv.rollcall("request", "approve", number, "-D", dn_of("pwong"), "-w", PASSWORDS["principal"],
                       "--url", srv.url, check=False)
    assert bad.returncode == 1 and "insufficient" in bad.stderr.lower() and "9012" in bad.stderr
    assert "ou=requests" not in code.stdout  # a number for people, not the request's DN
    # the list reads as the console does: the school's name, the filing date
    row = next(line for line in listed.splitlines() if line.split()[:1] == [number])
    assert "Washington High (9012)" in row and "ou=sites" not in row
    assert re.search(r"\d{4}-\d{2}-\d{2}$", row) and not re.search(r"\d{14}Z", row)
    ok = srv.rollcall("request", "approve", number, *principal, "--expiry", "2099-06-30")
    # people output: the account's username and the end date, no DN and no generalized time
    assert "APPROVED" in ok.stdout and re.search(r"account: +[a-z0-9]+ \(PENDING", ok.stdout), ok.stdout
    assert "ends:      2099-06-30" in ok.stdout and "20990630235959Z" not in ok.stdout
    assert "ou=nonemployees" not in ok.stdout
    shown = srv.rollcall("request", "show", number, *principal, "--format", "ldif").stdout
    assert "rollcallRequestStatus: APPROVED" in shown and "rollcallExpiry: 20990630235959Z" in shown
    # for people: the school by name, who decided by name, the end as a date
    shown = srv.rollcall("request", "show", number, *principal).stdout
    assert "APPROVED" in shown and "Washington High (9012)" in shown and "by Lucía Martínez" in shown
    assert "ends:         2099-06-30" in shown and "20990630235959Z" not in shown and "ou=" not in shown

    teacher = ["-D", dn_of("ewilson"), "-w", PASSWORDS["teacher"], "--url", srv.url]
    sub = srv.rollcall("request", "submit", *teacher, "--kind", "role", "--application", "welligent",
                       "--role", "therapist")
    number = sub.stdout.split()[1]
    mine = srv.rollcall("request", "list", *teacher, "--mine").stdout
    assert any(line.split()[:1] == [number] for line in mine.splitlines())
    denied = srv.rollcall("request", "deny", number, "-D", dn_of("hkim"), "-w", PASSWORDS["case manager"],
                          "--url", srv.url, "--reason", "wrong role")
    assert "DENIED" in denied.stdout
    assert "reason:       wrong role" in srv.rollcall("request", "show", number, *teacher).stdout
    nothing = srv.rollcall("request", "deny", number, *teacher, check=False)
    assert nothing.returncode == 2  # --reason is required


@requires_ldap_utils
def test_openldap_tools_submit_and_approve(srv):
    ldif = f"""dn: {NEW}
objectClass: rollcallRequest
rollcallRequestNumber: 0
rollcallRequestKind: NON_EMPLOYEE_ACCOUNT
rollcallRequestStatus: PENDING
givenName: Tool
sn: User
mail: tool.user@acme.example
rollcallOrganization: Acme
rollcallNonEmployeeKind: NON_PUBLIC_SCHOOL
rollcallRequestTarget: {site('1234')}
"""
    ldaputil.ok(ldaputil.add(srv, ldif, bind=()))
    c = connect(srv, "root")
    c.search(REQUESTS, "(mail=tool.user@acme.example)", LEVEL, attributes=["rollcallRequestNumber"])
    dn = c.response[0]["dn"]
    change = f"dn: {dn}\nchangetype: modify\nreplace: rollcallRequestStatus\nrollcallRequestStatus: APPROVED\n"
    refused = ldaputil.modify(srv, change, bind=("-D", dn_of("tnguyen"), "-w", PASSWORDS["sub-administrator"]))
    assert refused.returncode == INSUFFICIENT
    ldaputil.ok(ldaputil.modify(srv, change, bind=("-D", dn_of("pwong"), "-w", PASSWORDS["principal"])))
    assert read(srv, dn)["rollcallLinkedAccount"]


# ----------------------------------------------------------------------------
# rate limit and expiry (their own servers)


def test_anonymous_submissions_are_rate_limited(fresh):
    s = fresh(anonymous_limit=2, anonymous_window=3600)
    anon = connect(s)
    assert nonemployee(anon, mail="one@acme.example")[0] == SUCCESS
    assert nonemployee(anon, mail="two@acme.example")[0] == SUCCESS
    code, _, _ = nonemployee(anon, mail="three@acme.example")
    assert code == BUSY and "too many" in anon.result["message"]
    # a new connection from the same address is no way round it
    assert nonemployee(connect(s), mail="four@acme.example")[0] == BUSY
    # signed-in users are not limited by it; and nothing but the requests was created
    assert nonemployee(connect(s, "ewilson"), mail="five@acme.example")[0] == SUCCESS
    c = connect(s, "root")
    c.search(REQUESTS, "(objectClass=rollcallRequest)", LEVEL, attributes=["mail"])
    assert sorted(e["attributes"]["mail"][0] for e in c.response if e["type"] == "searchResEntry") == \
        ["five@acme.example", "one@acme.example", "two@acme.example"]
    c.search(f"ou=nonemployees,ou=people,{SUFFIX}", "(objectClass=*)", LEVEL, attributes=["uid"])
    assert len([e for e in c.response if e["type"] == "searchResEntry"]) == 2  # the demo's two


def test_expiry_job_runs_once_at_a_time(fresh):
    """cron may start it on every host: while one holds the job lock another stops, saying so."""
    s = fresh()
    store = open_store(load_config(s.config_path), cache_entries=0)
    try:
        with store.job_lock("request-expire"):
            got = s.rollcall("request", "expire", check=False)
            assert got.returncode == 1 and "another process holds the job lock 'request-expire'" in got.stderr, got
            assert "Traceback" not in got.stderr
        assert s.rollcall("request", "expire").stdout.strip().endswith("0 grants, 0 accounts, 0 requests")
    finally:
        store.close()


def test_expiry_job_removes_grants_disables_accounts_and_audits(fresh):
    s = fresh(pending_days=90)
    # a sub-administrator grant until in 2 days, a vendor grant without end,
    # a non-employee account until in 1 day, and a request nobody decides
    code, grant_req, _ = submit(connect(s, "ewilson"), "SUBADMIN",
                                rollcallRequestTarget=role_group("student-email-admins", "5678"))
    assert decide(connect(s, "dokafor"), grant_req, "APPROVED", expiry=gentime(2)) == SUCCESS
    code, keep_req, _ = submit(connect(s, "kpatel"), "PHOTO_VENDOR", rollcallRequestTarget=site("1234"),
                               rollcallGrantee=dn_of("jreyes"))
    assert decide(connect(s, "pwong"), keep_req, "APPROVED") == SUCCESS
    code, acct_req, _ = nonemployee(connect(s), mail="short@acme.example", rollcallExpiry=gentime(1))
    assert decide(connect(s, "pwong"), acct_req, "APPROVED") == SUCCESS
    account = read(s, acct_req)["rollcallLinkedAccount"][0]
    code, stale, _ = submit(connect(s, "sjones"), "APPLICATION_ROLE", rollcallRequestTarget=app_role("case-manager"))
    assert code == SUCCESS
    group = role_group("student-email-admins", "5678")
    assert dn_of("ewilson").lower() in members(s, group)

    # nothing is due today
    out = s.rollcall("request", "expire").stdout
    assert out.strip().endswith("0 grants, 0 accounts, 0 requests")
    # a dry run three days on reports and changes nothing
    later = gentime(3)
    out = s.rollcall("request", "expire", "--now", later, "--dry-run").stdout
    assert "would remove expired grant" in out and "would disable expired account" in out
    assert dn_of("ewilson").lower() in members(s, group)
    # for real
    out = s.rollcall("request", "expire", "--now", later).stdout
    # for people: names and the school, no DNs
    assert "remove expired grant: " in out and "(ewilson) from Student e-mail administrator of " in out
    assert "(5678)" in out and dn_of("ewilson") not in out
    assert dn_of("ewilson").lower() not in members(s, group)
    assert group not in (read(s, dn_of("ewilson"), ["memberOf"]).get("memberOf") or [])
    assert read(s, f"cn=ewilson,{group}") is None
    assert dn_of("jreyes").lower() in members(s, role_group("photo-vendors", "1234"))  # no end: kept
    acct = read(s, account)
    assert acct["rollcallAccountStatus"] == ["DISABLED"] and acct["rollcallDeactivationReason"][0].startswith("Expired")
    assert acct["rollcallDeactivatedBy"] == ["cn=rollcall-expire"]
    assert status_of(s, stale) == "PENDING"  # 3 days old is not stale
    # a hundred days on, the undecided request expires
    out = s.rollcall("request", "expire", "--now", gentime(100)).stdout
    number = stale.split(",")[0].split("=")[1]
    assert f"expire undecided request: {number}\n" in out
    entry = read(s, stale)
    assert entry["rollcallRequestStatus"] == ["EXPIRED"] and entry["rollcallDecisionReason"]
    assert decide(connect(s, "hkim"), stale, "APPROVED") == UNWILLING
    # the audit log has each change, by the job
    log = audit(s)
    ops = {(r["op"], r["dn"].lower()) for r in log if r["who"] == "cn=rollcall-expire"}
    assert ("grantExpired", f"cn=ewilson,{group}".lower()) in ops
    assert ("modify", group.lower()) in ops
    assert ("accountExpired", account.lower()) in ops
    assert ("modify", stale.lower()) in ops
    assert ("requestExpired", stale.lower()) in ops
    # the server sees the job's changes at once (its cache follows the changelog)
    c = connect(s, "ewilson")
    c.search(group, "(objectClass=*)", BASE, attributes=["member"])
    assert dn_of("ewilson") not in c.response[0]["attributes"].get("member", [])


def test_tracking_digest_is_kept_secret_and_checked(srv):
    import hashlib

    digest = hashlib.sha256(b"a-secret").hexdigest()
    anon = connect(srv)
    code, dn, _ = nonemployee(anon, mail="tracked.one@acme.example", rollcallTrackingDigest=digest.upper())
    assert code == SUCCESS, anon.result
    assert read(srv, dn, ["rollcallTrackingDigest"])["rollcallTrackingDigest"] == [digest]  # stored lower-case
    # nobody but the district administrators reads it, nor searches by it
    for who in (None, "ewilson", "pwong", "jsmith"):
        assert "rollcallTrackingDigest" not in (read(srv, dn, ["rollcallTrackingDigest"], who=who) or {})
    staff = connect(srv, "ewilson")
    staff.search(f"ou=requests,{SUFFIX}", f"(rollcallTrackingDigest={digest})", attributes=["1.1"])
    assert not [e for e in staff.response or [] if e.get("type") == "searchResEntry"]
    # not a digest; a digest on another kind of request
    code, _, _ = nonemployee(connect(srv), mail="tracked.two@acme.example", rollcallTrackingDigest="1234")
    assert code == CONSTRAINT
    teacher = connect(srv, "ewilson")
    assert submit(teacher, "APPLICATION_ROLE", rollcallRequestTarget=app_role("therapist"),
                  rollcallTrackingDigest=digest)[0] == CONSTRAINT
    # not changed after the fact, even by the approver
    principal = connect(srv, "pwong")
    principal.modify(dn, {"rollcallTrackingDigest": [(MODIFY_REPLACE, [hashlib.sha256(b"x").hexdigest()])]})
    assert principal.result["result"] != SUCCESS


def test_approver_issues_the_contractors_activation_code_on_the_command_line(srv):
    """Anonymous request -> the principal approves -> `rollcall request issue-code`
    gives the username and a one-time code -> the contractor activates (account
    operation) -> their first bind with the chosen password works. Only the people who
    may decide the request may issue it (not the site's student sub-administrator, not
    another site's principal): staff accounts' codes stay out of their reach."""
    import json

    from directory.core.accounts import ACCOUNT_EXOP

    anon = connect(srv)
    result, dn, _ = nonemployee(anon, code="1234", mail="carl.cli@acme.example", givenName="Carl", sn="Cli")
    assert result == SUCCESS, dn
    number = dn.split(",")[0].split("=")[1]
    principal = ["-D", dn_of("pwong"), "-w", PASSWORDS["principal"], "--url", srv.url]
    # before the approval: no account to hand out
    early = srv.rollcall("request", "issue-code", number, *principal, check=False)
    assert early.returncode == 1 and "PENDING" in early.stderr
    assert decide(connect(srv, "pwong"), dn, "APPROVED") == SUCCESS
    account = read(srv, dn)["rollcallLinkedAccount"][0]
    for who, role in (("tnguyen", "sub-administrator"), ("dokafor", "principal"), ("ewilson", "teacher")):
        bad = srv.rollcall("request", "issue-code", number, "-D", dn_of(who), "-w", PASSWORDS[role],
                           "--url", srv.url, check=False)
        assert bad.returncode == 1, (who, bad.stdout)
    # nor through the account operation directly (a staff account's code, say)
    sub = connect(srv, "tnguyen")
    sub.extended(ACCOUNT_EXOP, json.dumps({"action": "issue-codes", "accounts": [account]}).encode())
    assert "error" in json.loads(sub.result["responseValue"] or b"{}")["codes"][0]
    assert "rollcallActivationCodeHash" not in read(srv, account)

    out = srv.rollcall("request", "issue-code", number, *principal).stdout
    username = out.split("username:")[1].split()[0]
    code = out.split("activation code:")[1].split()[0]
    assert account.startswith(f"uid={username},")
    anon = connect(srv)
    anon.extended(ACCOUNT_EXOP, json.dumps({"action": "activate", "uid": username, "code": code,
                                            "newPassword": "Maple-quartz-582!"}).encode())
    assert anon.result["result"] == SUCCESS, anon.result
    c = Connection(Server(srv.url, get_info=NONE), account, "Maple-quartz-582!", raise_exceptions=False)
    assert c.bind(), c.result
    c.unbind()
    assert any(a["op"] == "accountActivated" for a in audit(srv, account))
