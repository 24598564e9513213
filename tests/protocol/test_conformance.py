"""LDAP conformance cases of issue 17, each where slapd (or the RFC named) is right,
with python-ldap and OpenLDAP's command-line tools against a real `rollcall serve`.
The cases where Rollcall deliberately differs from slapd are at the end, and in the
README's "Conformance notes"."""
import pytest

ldap = pytest.importorskip("ldap")

from directory.core.schema import Schema  # noqa: E402
from tests.conftest import ROOT, ROOT_DN, ROOT_PW, SUFFIX, requires_ldap_utils  # noqa: E402
from tests.protocol.district import (GROUPS, PEOPLE, SCHEMA_FILES, STUDENTS, dn_of, make_server,  # noqa: E402
                                     password)
from tests.protocol.ldaputil import dns, search, tool  # noqa: E402

PDOE = f"uid=pdoe,{PEOPLE}"
TEAM = f"cn=team,{GROUPS}"
MULTI = f"cn=Multi+sn=Valued,{PEOPLE}"

EXTRA = f"""dn: {PDOE}
objectClass: inetOrgPerson
objectClass: posixAccount
uid: pdoe
cn: Pat Doe
sn: Doe
uidNumber: 1234
gidNumber: 100
homeDirectory: /home/pdoe
mail: pdoe@example.org
telephoneNumber: +1 555 0100

dn: {TEAM}
objectClass: groupOfNames
cn: team
member: {PDOE}

dn: {MULTI}
objectClass: person
cn: Multi
sn: Valued
"""

# result codes (RFC 4511)
PROTOCOL_ERROR, NO_SUCH_ATTRIBUTE, UNDEFINED_TYPE, INVALID_SYNTAX = 2, 16, 17, 21
COMPARE_FALSE, COMPARE_TRUE, NO_SUCH_OBJECT, INVALID_DN = 5, 6, 32, 34
UNWILLING, NOT_ALLOWED_ON_RDN, ALREADY_EXISTS, AFFECTS_MULTIPLE_DSAS, OTHER = 53, 67, 68, 71, 80


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("conformance"), extra_ldif=EXTRA)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def conn(srv):
    c = ldap.initialize(srv.url)
    c.protocol_version = 3
    c.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    c.simple_bind_s(ROOT_DN, ROOT_PW)
    yield c
    c.unbind_s()


def code(fn, *args):
    """The LDAP result code of a python-ldap call (0 on success)."""
    try:
        fn(*args)
    except ldap.LDAPError as exc:
        return exc.args[0]["result"]
    return 0


def compare(conn, dn, attr, value):
    """compareTrue/compareFalse or the error's code."""
    try:
        return COMPARE_TRUE if conn.compare_s(dn, attr, value) else COMPARE_FALSE
    except ldap.LDAPError as exc:
        return exc.args[0]["result"]


def found(conn, flt, base=SUFFIX, scope=ldap.SCOPE_SUBTREE):
    return sorted(dn.lower() for dn, _ in conn.search_s(base, scope, flt, ["1.1"]))


def undefined(conn, flt):
    """An item Undefined for every entry matches nothing, and neither does its NOT."""
    return found(conn, flt) == [] and found(conn, f"(!{flt})") == []


def uid_number(conn):
    return conn.search_s(PDOE, ldap.SCOPE_BASE, "(objectClass=*)", ["uidNumber"])[0][1]["uidNumber"]


# ---------------------------------------------------------------- the result-80 bug


@pytest.mark.parametrize("value", [b"abc", b"1.5", b"", b"-0", b"+1", b" 1", b"1" * 5000])
def test_increment_by_a_non_integer_is_invalid_syntax(conn, value):
    # RFC 4525: the increment must be an INTEGER; never 80 from an unhandled ValueError
    assert code(conn.modify_s, PDOE, [(ldap.MOD_INCREMENT, "uidNumber", [value])]) == INVALID_SYNTAX
    assert uid_number(conn) == [b"1234"]


def test_increment_by_an_integer(conn):
    assert code(conn.modify_s, PDOE, [(ldap.MOD_INCREMENT, "uidNumber", [b"-4"])]) == 0
    assert uid_number(conn) == [b"1230"]
    assert code(conn.modify_s, PDOE, [(ldap.MOD_INCREMENT, "uidNumber", [b"4"])]) == 0
    assert uid_number(conn) == [b"1234"]


BAD = b"\xff\xfe"  # not UTF-8


@pytest.mark.parametrize("call", [
    lambda c: c.compare_s(PDOE, "objectClass", BAD),
    lambda c: c.compare_s(PDOE, "uidNumber", BAD),
    lambda c: c.compare_s(PDOE, "cn", BAD),
    lambda c: c.compare_s(TEAM, "member", BAD),
    lambda c: c.compare_s("", "objectClass", BAD),
    lambda c: c.modify_s(PDOE, [(ldap.MOD_DELETE, "cn", [BAD])]),
    lambda c: c.modify_s(PDOE, [(ldap.MOD_ADD, "member", [BAD])]),
    lambda c: c.modify_s(PDOE, [(ldap.MOD_INCREMENT, "uidNumber", [BAD])]),
    lambda c: c.modify_s(PDOE, [(ldap.MOD_DELETE, "uidNumber", [b"1" * 5000])]),
    lambda c: c.add_s(f"cn=x,{PEOPLE}", [("objectClass", [BAD]), ("sn", [b"x"])]),
    lambda c: c.add_s(f"cn=x,{PEOPLE}", [("objectClass", [b"person"]), ("sn", [BAD])]),
    lambda c: c.rename_s(PDOE, "uid=\\ff", None, True),
])
def test_malformed_values_in_requests_never_yield_80(conn, call):
    assert code(call, conn) not in (0, OTHER)


@pytest.mark.parametrize("flt", [
    "(objectClass=\\ff)", "(uidNumber=\\ff)", "(uidNumber>=\\ff)", "(member=\\ff)", "(cn=\\ff\\fe)",
    "(cn:caseExactMatch:=\\ff)", "(:dn:caseIgnoreMatch:=\\ff)", "(member:distinguishedNameMatch:=\\ff)",
    "(uidNumber:integerOrderingMatch:=\\ff)", "(uidNumber:1.2.840.113556.1.4.803:=\\ff)",
    "(cn:caseIgnoreSubstringsMatch:=\\ff\\2a)", "(createTimestamp>=\\ff)", "(entryUUID=\\ff)",
    "(uidNumber=" + "9" * 5000 + ")", "(uidNumber:integerMatch:=" + "9" * 5000 + ")",
])
def test_malformed_assertions_are_undefined_not_80(conn, flt):
    assert undefined(conn, flt)


# ---------------------------------------------------------------- searches (RFC 4511 4.5.1.7, RFC 4517)


@pytest.mark.parametrize("flt", [
    "(uid:caseExactIA5Match:=pdoe)",        # uid is a Directory String, not IA5
    "(gidNumber:caseExactMatch:=100)",      # INTEGER
    "(objectClass:caseIgnoreMatch:=person)",  # OID
    "(ou:dn:caseIgnoreIA5Match:=people)",   # the RDN's type does not fit the rule
    "(cn:integerMatch:=1)",
    "(cn:noSuchRule:=x)",
])
def test_1_extensible_match_with_an_inapplicable_rule_is_undefined(conn, flt):
    assert undefined(conn, flt)


def test_1_matching_rule_use_says_where_a_rule_applies(conn):
    uses = conn.search_s("cn=Subschema", ldap.SCOPE_BASE, "(objectClass=*)", ["matchingRuleUse"])[0][1]
    applies = {}
    for d in uses["matchingRuleUse"]:
        text = d.decode()
        name = text.split("NAME '")[1].split("'")[0]
        names = text.split("APPLIES")[1].strip(" ()").replace("$", " ").split()
        applies[name] = {n.lower() for n in names}
    assert "mail" in applies["caseExactIA5Match"] and "uid" not in applies["caseExactIA5Match"]
    assert "gidnumber" not in applies["caseExactMatch"] and "cn" in applies["caseExactMatch"]
    assert "member" in applies["distinguishedNameMatch"]


def test_1_applicable_extensible_rules_match(conn):
    assert found(conn, "(uid:caseIgnoreMatch:=PDOE)") == [PDOE.lower()]
    assert found(conn, "(uid:caseExactMatch:=pdoe)") == [PDOE.lower()]
    assert found(conn, "(uid:caseExactMatch:=PDOE)") == []
    assert found(conn, "(mail:caseExactIA5Match:=pdoe@example.org)") == [PDOE.lower()]
    assert found(conn, "(uidNumber:integerMatch:=1234)") == [PDOE.lower()]
    assert found(conn, "(uidNumber:1.2.840.113556.1.4.803:=2)") == [PDOE.lower()]  # 1234 & 2


def test_1_substrings_rule_takes_a_substring_assertion(conn):
    # RFC 4517 3.3.30: 'Pat*' / '*at*' / '*Doe'; a value without '*' is no assertion at all
    assert found(conn, "(cn:caseIgnoreSubstringsMatch:=pat\\2a)") == [PDOE.lower()]
    assert found(conn, "(cn:caseIgnoreSubstringsMatch:=\\2aAT\\2a)") == [PDOE.lower()]
    assert found(conn, "(cn:2.5.13.4:=\\2adoe)") == [PDOE.lower()]
    assert found(conn, "(cn:caseIgnoreSubstringsMatch:=\\2aoe\\2apat)") == []  # order counts
    assert undefined(conn, "(cn:caseIgnoreSubstringsMatch:=at)")  # not "contains"


def test_2_distinguished_name_and_ordering_rules(conn):
    assert found(conn, f"(member:distinguishedNameMatch:=UID=PDoe, ou=People,{SUFFIX})") == [TEAM.lower()]
    assert found(conn, f"(member:2.5.13.1:=uid=nobody,{PEOPLE})") == []
    # ordering rules: TRUE when the stored value is less than the assertion
    assert PDOE.lower() in found(conn, "(cn:caseIgnoreOrderingMatch:=Q)")
    assert PDOE.lower() not in found(conn, "(cn:caseIgnoreOrderingMatch:=P)")
    assert PDOE.lower() in found(conn, "(cn:caseExactOrderingMatch:=Q)")
    assert PDOE.lower() in found(conn, "(cn:caseExactOrderingMatch:=a)")  # 'P' < 'a'
    assert PDOE.lower() not in found(conn, "(cn:caseIgnoreOrderingMatch:=a)")  # 'p' > 'a'
    assert found(conn, "(uidNumber:integerOrderingMatch:=1235)") == [PDOE.lower()]
    assert found(conn, "(uidNumber:integerOrderingMatch:=1234)") == []


def test_2_the_rules_are_published(conn):
    rules = conn.search_s("cn=Subschema", ldap.SCOPE_BASE, "(objectClass=*)", ["matchingRules"])[0][1]
    text = b" ".join(rules["matchingRules"])
    for name in (b"distinguishedNameMatch", b"caseIgnoreOrderingMatch", b"integerOrderingMatch"):
        assert name in text


@pytest.mark.parametrize("assertion", ["Pat Doe", "  Pat   Doe ", "\uff30\uff41\uff54 Doe"])
def test_3_extensible_case_exact_prepares_like_equality(conn, assertion):
    # RFC 4518: NFKC (full-width letters) and insignificant space, as plain equality does
    value = assertion.encode()
    esc = "".join(f"\\{b:02x}" for b in value)
    assert found(conn, f"(cn:caseExactMatch:={esc})") == found(conn, f"(cn={esc})") == [PDOE.lower()]
    assert found(conn, f"(cn:caseIgnoreMatch:={esc.lower()})") == [PDOE.lower()]


def test_4_extensible_without_rule_is_equality(conn):
    assert found(conn, "(objectClass:=top)") == found(conn, "(objectClass=top)") == found(conn, "(objectClass=*)")
    assert found(conn, "(objectClass:=person)") == found(conn, "(objectClass=person)")
    assert PDOE.lower() in found(conn, "(objectClass:=person)")  # inetOrgPerson's superclass
    assert found(conn, "(cn:=pat doe)") == [PDOE.lower()]
    assert found(conn, "(cn:dn:=team)") == [TEAM.lower()]


def test_5_unknown_objectclass_name_is_undefined_numeric_oid_comparable(conn):
    assert undefined(conn, "(objectClass=noSuchClass)")
    assert compare(conn, PDOE, "objectClass", b"noSuchClass") == INVALID_SYNTAX
    # a numeric OID is a valid assertion naming no class here: FALSE, not Undefined
    assert found(conn, "(objectClass=1.2.3.4)") == []
    assert found(conn, "(!(objectClass=1.2.3.4))") == found(conn, "(objectClass=*)")
    assert compare(conn, PDOE, "objectClass", b"1.2.3.4") == COMPARE_FALSE
    assert compare(conn, PDOE, "objectClass", b"person") == COMPARE_TRUE
    assert compare(conn, PDOE, "objectClass", b"2.5.6.6") == COMPARE_TRUE  # person's OID


@pytest.mark.parametrize("attr, value", [
    ("uidNumber", "01234"), ("uidNumber", "+1234"), ("uidNumber", " 1234 "), ("uidNumber", "-0"),
    ("objectClass", " person "), ("objectClass", "per son"),
    ("hasSubordinates", "true"), ("hasSubordinates", "yes"),
    ("telephoneNumber", "\uff0b1 555 0100"),  # full width: not a PrintableString
])
def test_6_assertions_invalid_in_the_syntax(conn, attr, value):
    esc = "".join(f"\\{b:02x}" for b in value.encode())
    assert undefined(conn, f"({attr}={esc})")
    target = PDOE if attr != "hasSubordinates" else SUFFIX
    assert compare(conn, target, attr, value.encode()) == INVALID_SYNTAX
    if attr == "uidNumber":
        assert undefined(conn, f"(uidNumber>={esc})")
        assert undefined(conn, f"(uidNumber~={esc})")
        assert undefined(conn, f"(uidNumber:integerMatch:={esc})")


def test_6_valid_assertions_still_match(conn):
    assert found(conn, "(uidNumber=1234)") == [PDOE.lower()]
    assert found(conn, "(hasSubordinates=TRUE)") != []
    assert found(conn, "(telephoneNumber=+15550100)") == [PDOE.lower()]
    assert compare(conn, PDOE, "uidNumber", b"1234") == COMPARE_TRUE
    # what a filter refuses, a write refuses too
    assert code(conn.modify_s, PDOE, [(ldap.MOD_REPLACE, "gidNumber", [b"0042"])]) == INVALID_SYNTAX


def test_7_binary_option_only_where_the_syntax_needs_it(conn):
    # RFC 4522: mail;binary is not mail (slapd: an undefined attribute type)
    assert undefined(conn, "(mail;binary=pdoe@example.org)")
    assert compare(conn, PDOE, "mail;binary", b"pdoe@example.org") == UNDEFINED_TYPE
    assert code(conn.modify_s, PDOE, [(ldap.MOD_ADD, "mail;binary", [b"x@example.org"])]) == UNDEFINED_TYPE
    assert found(conn, "(mail=pdoe@example.org)") == [PDOE.lower()]


# ---------------------------------------------------------------- special entries (RFC 4512 5.1, 4.2)


@requires_ldap_utils
def test_8_compare_on_the_root_dse_and_subschema(srv):
    def ldapcompare(dn, ava):
        return tool(srv, "ldapcompare", "-D", ROOT_DN, "-w", ROOT_PW, dn, ava).returncode

    assert ldapcompare("", "objectClass:top") == COMPARE_TRUE
    assert ldapcompare("", f"namingContexts:{SUFFIX}") == COMPARE_TRUE
    assert ldapcompare("", "namingContexts:dc=other") == COMPARE_FALSE
    assert ldapcompare("cn=Subschema", "objectClass:subschema") == COMPARE_TRUE
    assert ldapcompare("cn=subschema", "cn:Subschema") == COMPARE_TRUE
    # anyone may read the root DSE, so anyone may compare it
    assert tool(srv, "ldapcompare", "", "objectClass:top").returncode == COMPARE_TRUE
    assert tool(srv, "ldapcompare", "", "supportedLDAPVersion:3").returncode == 18  # no EQUALITY, as slapd


@pytest.mark.parametrize("dn", ["", "cn=Subschema"])
def test_8_writes_to_the_root_dse_and_subschema(conn, dn):
    assert code(conn.modify_s, dn, [(ldap.MOD_REPLACE, "description", [b"x"])]) == UNWILLING
    assert code(conn.delete_s, dn) == UNWILLING
    assert code(conn.rename_s, dn, "cn=x", None, True) == UNWILLING
    # they exist: an add of either is entryAlreadyExists, as from slapd
    assert code(conn.add_s, dn, [("objectClass", [b"top"]), ("cn", [b"Subschema"])]) == ALREADY_EXISTS


# ---------------------------------------------------------------- out of the naming context (RFC 4511 4.9)


@pytest.mark.parametrize("dn", ["ou=x,dc=other", "dc=example", f"ou=x,{SUFFIX},dc=more"])
def test_9_writes_outside_the_naming_context(conn, dn):
    # no referral to give: unwillingToPerform ("no global superior knowledge"), as slapd
    assert code(conn.add_s, dn, [("objectClass", [b"organizationalUnit"]), ("ou", [b"x"])]) == UNWILLING
    assert code(conn.modify_s, dn, [(ldap.MOD_REPLACE, "description", [b"x"])]) == UNWILLING
    assert code(conn.delete_s, dn) == UNWILLING
    assert code(conn.rename_s, dn, "ou=y", None, True) == UNWILLING


def test_9_renames_across_the_context_affect_multiple_dsas(conn):
    assert code(conn.rename_s, SUFFIX, "dc=elsewhere", None, True) == AFFECTS_MULTIPLE_DSAS
    assert code(conn.rename_s, TEAM, "cn=team", "dc=other", True) == AFFECTS_MULTIPLE_DSAS
    assert code(conn.rename_s, TEAM, "cn=team", "", True) == AFFECTS_MULTIPLE_DSAS
    assert found(conn, "(cn=team)") == [TEAM.lower()]


def test_9_empty_base_with_scope_one_and_sub(conn):
    # README "Conformance notes": the root DSE's children are the naming contexts
    assert found(conn, "(objectClass=*)", "", ldap.SCOPE_ONELEVEL) == [SUFFIX]
    assert found(conn, "(uid=pdoe)", "", ldap.SCOPE_SUBTREE) == [PDOE.lower()]
    assert found(conn, "(objectClass=*)", "", ldap.SCOPE_BASE) == [""]


# ---------------------------------------------------------------- writes (RFC 4511 4.6, 4.7)


def test_10_rdn_checked_after_the_whole_modify(conn):
    ok = [(ldap.MOD_DELETE, "uid", [b"pdoe"]), (ldap.MOD_ADD, "uid", [b"PDOE"])]
    assert code(conn.modify_s, PDOE, ok) == 0
    ok = [(ldap.MOD_DELETE, "uid", None), (ldap.MOD_ADD, "uid", [b"pdoe"])]
    assert code(conn.modify_s, PDOE, ok) == 0
    assert conn.search_s(PDOE, ldap.SCOPE_BASE, "(objectClass=*)", ["uid"])[0][1]["uid"] == [b"pdoe"]
    # the RDN's value gone at the end is still refused (Rollcall's code: notAllowedOnRDN)
    gone = [(ldap.MOD_DELETE, "uid", [b"pdoe"]), (ldap.MOD_ADD, "uid", [b"other"])]
    assert code(conn.modify_s, PDOE, gone) == NOT_ALLOWED_ON_RDN
    assert code(conn.modify_s, PDOE, [(ldap.MOD_REPLACE, "uid", [b"other"])]) == NOT_ALLOWED_ON_RDN
    assert code(conn.modify_s, MULTI, [(ldap.MOD_DELETE, "sn", None)]) == NOT_ALLOWED_ON_RDN


def test_11_invalid_values_are_21_before_other_checks(conn):
    assert code(conn.modify_s, PDOE, [(ldap.MOD_DELETE, "uidNumber", [b"abc"])]) == INVALID_SYNTAX
    assert code(conn.modify_s, PDOE, [(ldap.MOD_ADD, "uidNumber", [b"01234"])]) == INVALID_SYNTAX
    assert code(conn.modify_s, PDOE, [(ldap.MOD_DELETE, "uidNumber", [b"5"])]) == NO_SUCH_ATTRIBUTE
    assert code(conn.modify_s, f"uid=nobody,{PEOPLE}", [(ldap.MOD_ADD, "uidNumber", [b"abc"])]) == INVALID_SYNTAX
    assert uid_number(conn) == [b"1234"]
    # longer than an int() can be: invalid here (21), never an error later
    assert code(conn.modify_s, PDOE, [(ldap.MOD_DELETE, "uidNumber", [b"1" * 5000])]) == INVALID_SYNTAX
    assert compare(conn, PDOE, "uidNumber", b"1" * 5000) == INVALID_SYNTAX


def test_12_add_without_the_rdn_value_adds_it(conn):
    dn = f"cn=norole,{PEOPLE}"
    assert code(conn.add_s, dn, [("objectClass", [b"organizationalRole"]), ("description", [b"x"])]) == 0
    assert conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["cn"])[0][1]["cn"] == [b"norole"]
    dn2 = f"cn=second,{PEOPLE}"
    assert code(conn.add_s, dn2, [("objectClass", [b"organizationalRole"]), ("cn", [b"other"])]) == 0
    assert sorted(conn.search_s(dn2, ldap.SCOPE_BASE, "(objectClass=*)", ["cn"])[0][1]["cn"]) == [b"other", b"second"]


def test_13_add_with_an_attribute_without_values_is_a_protocol_error(conn):
    dn = f"cn=novalues,{PEOPLE}"
    got = code(conn.add_s, dn, [("objectClass", [b"organizationalRole"]), ("cn", [b"novalues"]),
                                ("description", [])])
    assert got == PROTOCOL_ERROR
    assert code(conn.search_s, dn, ldap.SCOPE_BASE) == NO_SUCH_OBJECT


@pytest.mark.parametrize("dn", [f"cn=a+cn=b,{PEOPLE}", f"cn=,{PEOPLE}", f"cn=a+CN=b,{PEOPLE}",
                                f"cn=a+2.5.4.3=b,{PEOPLE}"])
def test_13_rdn_repeating_a_type_or_empty_is_invalid_dn(conn, dn):
    assert code(conn.add_s, dn, [("objectClass", [b"organizationalRole"]), ("cn", [b"a", b"b"])]) == INVALID_DN
    assert code(conn.search_s, dn, ldap.SCOPE_BASE) == INVALID_DN
    assert code(conn.rename_s, TEAM, dn.split(",")[0], None, False) == INVALID_DN


# ---------------------------------------------------------------- kept: where Rollcall follows the RFC


def test_kept_compare_entry_dn(conn):
    # slapd refuses (53); entryDN has distinguishedNameMatch (RFC 5020)
    assert compare(conn, PDOE, "entryDN", PDOE.upper().encode()) == COMPARE_TRUE


def test_kept_rename_to_a_missing_superior_names_the_matched_dn(conn):
    try:
        conn.rename_s(TEAM, "cn=team", f"ou=nowhere,{PEOPLE}", True)
    except ldap.NO_SUCH_OBJECT as exc:
        assert exc.args[0]["matched"].lower() == PEOPLE.lower()
    else:
        raise AssertionError("rename to a missing superior succeeded")


def test_kept_structural_object_class_and_subschema_subentry_filterable(conn):
    assert PDOE.lower() in found(conn, "(structuralObjectClass=inetOrgPerson)")
    assert found(conn, "(subschemaSubentry=cn=Subschema)", PDOE, ldap.SCOPE_BASE) == [PDOE.lower()]


@requires_ldap_utils
def test_ldapsearch_sees_the_same(srv):
    out = search(srv, "-b", SUFFIX, "(cn:caseIgnoreSubstringsMatch:=\\2aat\\2a)", "1.1")
    assert [d.lower() for d in dns(out.stdout)] == [PDOE.lower()]
    assert dns(search(srv, "-b", STUDENTS, "(uidNumber=01234)", "1.1").stdout) == []


# ---------------------------------------------------------------- speed: no scan where none is needed


def _name_subtypes():
    """Every attribute type derived from `name` in the district's schema."""
    schema = Schema.load([str(ROOT / "schema" / n) for n in SCHEMA_FILES])
    out = []
    for at in schema.attribute_types:
        sup = at.sup
        while sup:
            if sup == "name":
                out.append(at.name)
                break
            sup = schema.attribute(sup).sup
    return out


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    # a low limits.unindexed: a search that scans is refused (adminLimitExceeded) for
    # anyone but the root DN, so a search that succeeds was answered from indexes
    indexes = {n: ["eq"] for n in _name_subtypes()}
    indexes["distinguishedName"] = ["eq"]  # an indexed supertype covers member, owner, …
    s = make_server(tmp_path_factory.mktemp("limited"), indexes=indexes, extra={"limits": {"unindexed": 5}},
                    extra_ldif=EXTRA)
    c = ldap.initialize(s.url)
    c.simple_bind_s(dn_of("distadmin"), password("distadmin"))
    yield c
    c.unbind_s()
    s.stop()


def test_speed_a_scan_is_refused_here(limited):
    assert code(limited.search_s, SUFFIX, ldap.SCOPE_SUBTREE, "(description=x)") == 11


def test_speed_supertype_through_the_subtypes_indexes(limited):
    assert found(limited, "(name=team)") == [TEAM.lower()]
    assert found(limited, "(name=Pat Doe)") == [PDOE.lower()]
    assert PDOE.lower() in found(limited, "(|(name=doe)(uid=nobody))")


def test_speed_indexed_supertype_covers_its_subtypes(limited):
    assert found(limited, f"(distinguishedName={PDOE})") == [TEAM.lower()]


@pytest.mark.parametrize("flt", [
    "(uidNumber=01234)", "(gidNumber:caseExactMatch:=100)", "(objectClass=noSuchClass)", "(noSuchAttr=1)",
    "(&(description=x)(uid:caseExactIA5Match:=pdoe))", "(!(cn:integerMatch:=1))",
    "(|(uidNumber=+1)(mail;binary=x))",
])
def test_speed_undefined_everywhere_reads_nothing(limited, flt):
    assert found(limited, flt) == []
