"""The schema layer: loading schema/*.schema, matching keys, checks, publication."""

import re
from pathlib import Path

import pytest
from ldap3.protocol.rfc4512 import AttributeTypeInfo, ObjectClassInfo, SchemaInfo

from directory.core.errors import LDAPError, ResultCode
from directory.core.filter import _PREFIX_RULES
from directory.core.schema import Schema, SchemaError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"
FILES = ["core", "cosine", "inetorgperson", "nis", "eduperson"]
DIRECTORY_STRING = "1.3.6.1.4.1.1466.115.121.1.15"


@pytest.fixture(scope="module")
def schema():
    return Schema.load([SCHEMA_DIR / f"{name}.schema" for name in FILES])


def refused(code, message, fn, *args, **kw):
    with pytest.raises(LDAPError) as info:
        fn(*args, **kw)
    assert (info.value.code, info.value.message) == (code, message)


# -- loading -------------------------------------------------------------------


def test_every_definition_in_the_files_is_loaded(schema):
    text = "".join((SCHEMA_DIR / f"{name}.schema").read_text() for name in FILES)
    assert len(schema.attribute_types) == len(re.findall(r"(?mi)^attributetype\b", text))
    assert len(schema.object_classes) == len(re.findall(r"(?mi)^objectclass\b", text))
    assert (len(schema.attribute_types), len(schema.object_classes)) == (193, 61)


def test_load_a_directory(schema):
    # rollcall.schema may also live there; it only adds definitions
    whole = Schema.load([SCHEMA_DIR])
    assert len(whole.attribute_types) >= len(schema.attribute_types)
    assert whole.attribute("eduPersonAffiliation") is not None


def test_inetorgperson(schema):
    oc = schema.objectclass("inetorgperson")
    assert (oc.oid, oc.kind, oc.sup) == ("2.16.840.1.113730.3.2.2", "STRUCTURAL", ("organizationalPerson",))
    assert oc.must == ()
    assert set(oc.all_must) == {"objectClass", "sn", "cn"}
    for name in ("uid", "mail", "displayName", "givenName", "employeeNumber", "jpegPhoto",
                 "telephoneNumber", "userPassword", "ou", "title"):
        assert name in oc.allowed
    assert schema.superclasses("inetOrgPerson") == ["inetOrgPerson", "organizationalPerson", "person", "top"]
    assert schema.superclasses("nope") == []


def test_sample_attribute_types(schema):
    uid = schema.attribute("uid")
    assert (uid.oid, uid.names, uid.equality, uid.substr, uid.syntax, uid.syntax_len) == (
        "0.9.2342.19200300.100.1.1", ("uid", "userid"), "caseIgnoreMatch",
        "caseIgnoreSubstringsMatch", DIRECTORY_STRING, 256)
    # cn declares only SUP name and inherits the rest
    cn = schema.attribute("commonName")
    assert (cn.name, cn.sup, cn.equality, cn.substr, cn.syntax) == (
        "cn", "name", "caseIgnoreMatch", "caseIgnoreSubstringsMatch", DIRECTORY_STRING)
    assert "EQUALITY" not in cn.definition()

    aff = schema.attribute("eduPersonAffiliation")
    assert (aff.oid, aff.equality, aff.syntax, aff.single_value) == (
        "1.3.6.1.4.1.5923.1.1.1.1", "caseIgnoreMatch", DIRECTORY_STRING, False)
    assert schema.attribute("eduPersonPrincipalName").single_value
    assert schema.attribute("eduPersonDisplayPronouns").oid == "1.3.6.1.4.1.5923.1.1.1.18"
    edu = schema.objectclass("eduPerson")
    assert (edu.oid, edu.kind) == ("1.3.6.1.4.1.5923.1.1.2", "AUXILIARY")
    assert "eduPersonOrcid" in edu.may and "eduPersonAnalyticsTag" in edu.may
    assert schema.objectclass("eduOrg").oid == "1.3.6.1.4.1.5923.1.2.2"

    posix = schema.objectclass("posixAccount")
    assert set(posix.must) == {"cn", "uid", "uidNumber", "gidNumber", "homeDirectory"}
    assert posix.kind == "AUXILIARY"
    assert schema.attribute("uidNumber").ordering == "integerOrderingMatch"
    assert schema.objectclass("groupOfNames").must == ("member", "cn")


def test_operational_attributes(schema):
    expect = {
        "createTimestamp": "directoryOperation", "modifiersName": "directoryOperation",
        "entryDN": "directoryOperation", "entryUUID": "directoryOperation",
        "hasSubordinates": "directoryOperation", "pwdChangedTime": "directoryOperation",
        "pwdReset": "directoryOperation", "memberOf": "dSAOperation",
        "namingContexts": "dSAOperation", "vendorName": "dSAOperation",
        "attributeTypes": "directoryOperation",
    }
    for name, usage in expect.items():
        at = schema.attribute(name)
        assert at.usage == usage and at.is_operational, name
    uuid = schema.attribute("entryUUID")
    assert (uuid.oid, uuid.equality, uuid.syntax, uuid.no_user_modification) == (
        "1.3.6.1.1.16.4", "uuidMatch", "1.3.6.1.1.16.1", True)
    assert schema.attribute("memberOf").oid == "1.2.840.113556.1.2.102"
    assert schema.attribute("hasSubordinates").oid == "2.5.18.9"
    assert schema.attribute("pwdAccountLockedTime").oid == "1.3.6.1.4.1.42.2.27.8.1.17"
    assert not schema.attribute("cn").is_operational


def test_lookups(schema):
    assert schema.attribute("GIVENNAME") is schema.attribute("gn") is schema.attribute("2.5.4.42")
    assert schema.attribute("userCertificate;binary").name == "userCertificate"
    # tagging options are not supported: the tagged description is not the attribute itself
    # RFC 4522: ';binary' only where the syntax needs it (certificates), not on cn
    assert schema.attribute("cn;lang-en") is None and schema.attribute("CN;Binary") is None
    assert schema.attribute("userCertificate;binary") is schema.attribute("userCertificate")
    assert schema.attribute("nope") is None and schema.objectclass("nope") is None
    assert schema.objectclass("2.5.6.6").name == "person"
    assert schema.canonical("rfc822Mailbox") == "mail"
    assert schema.canonical("CommonName") == "cn"
    refused(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, "foo: attribute type undefined", schema.canonical, "foo")


# -- matching keys -----------------------------------------------------------------


def test_case_ignore(schema):
    assert schema.normalize("cn", b"  John   SMITH ") == schema.normalize("cn", b"john smith") == "john smith"
    assert schema.normalize("cn", "ÉMILE\u00a0Zola") == schema.normalize("cn", b"\xc3\xa9mile zola")
    assert schema.normalize("cn", "ﬁle") == "file"  # NFKC
    assert schema.attribute("uid").normalize(b"JSmith") == "jsmith"
    assert schema.normalize("mail", b"John@Example.ORG") == "john@example.org"


def test_case_exact(schema):
    assert schema.normalize("eduPersonEntitlement", b" urn:X  Y ") == "urn:X Y"
    assert schema.normalize("homeDirectory", b"/home/Ann") == "/home/Ann"
    refused(ResultCode.INVALID_ATTRIBUTE_SYNTAX, "homeDirectory: value invalid per syntax",
            schema.normalize, "homeDirectory", "/home/ännA".encode())


def test_integer(schema):
    assert schema.normalize("uidNumber", b"007") == "7"
    assert schema.normalize("uidNumber", b"-0") == "0"
    assert schema.order_key("uidNumber", b"10") > schema.order_key("uidNumber", b"9")
    assert schema.normalize_or_none("uidNumber", b"seven") is None
    refused(ResultCode.INVALID_ATTRIBUTE_SYNTAX, "uidNumber: value invalid per syntax",
            schema.normalize, "uidNumber", b"seven")


def test_generalized_time(schema):
    key = schema.normalize("createTimestamp", b"20230101103000Z")
    assert key == "20230101103000.000000Z"
    assert schema.normalize("createTimestamp", b"20230101120000+0130") == key
    assert schema.normalize("createTimestamp", b"20230101053000-05") == key
    assert schema.normalize("createTimestamp", b"2023010110.5Z") == key  # fraction of the hour
    assert schema.normalize("createTimestamp", b"202301011030Z") == key
    # keys sort by instant, whatever the zone
    early = schema.order_key("modifyTimestamp", b"20231231235959+0100")
    late = schema.order_key("modifyTimestamp", b"20231231230000Z")
    assert early < late
    for bad in (b"20230101120000", b"20231301120000Z", b"2023-01-01", b"20230101120000+2400"):
        assert schema.normalize_or_none("createTimestamp", bad) is None, bad


def test_other_rules(schema):
    assert schema.normalize("objectClass", b"InetOrgPerson") == "2.16.840.1.113730.3.2.2"
    assert schema.normalize("objectClass", b"2.16.840.1.113730.3.2.2") == "2.16.840.1.113730.3.2.2"
    assert schema.normalize("objectClass", b"notAClass") == "notaclass"
    assert schema.normalize("telephoneNumber", b"+1 555-0100") == schema.normalize("telephoneNumber", b"+15550100")
    assert schema.normalize("x121Address", b"12 34") == "1234"
    assert schema.normalize("pwdReset", b"TRUE") == "TRUE"
    assert schema.normalize("entryUUID", b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11") == \
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert schema.normalize("userPassword", b"Secret") == b"Secret"
    assert schema.normalize("postalAddress", b"1 Main  St$Town") == schema.normalize("postalAddress", b"1 main st$ TOWN")
    member = schema.attribute("uniqueMember")
    assert member.normalize(b"CN=A,dc=x#'0101'B") == member.normalize(b"cn=a,DC=X#'0101'B")
    assert member.normalize(b"cn=a,dc=x#'0101'B") != member.normalize(b"cn=a,dc=x#'0111'B")
    assert member.normalize(b"cn=a,dc=x#'0101'B").endswith("#'0101'B")
    assert schema.normalize("attributeTypes", b"( 2.5.4.3 NAME 'cn' )") == "2.5.4.3"
    # no EQUALITY rule: equality filters on these are Undefined
    assert schema.normalize("photo", b"\x00") is None
    assert schema.normalize("eduPersonDisplayPronouns", b"they/them") is None


def test_dn_normalizer_hook():
    schema = Schema.load([SCHEMA_DIR / "core.schema"])
    assert schema.normalize("member", b"CN=Ann,DC=Example") == schema.normalize("member", b"cn=ann,dc=example")
    assert not schema.attribute("member").is_valid(b"not a dn")
    schema.dn_normalizer = lambda s: "<" + s.replace(" ", "").lower() + ">"
    assert schema.normalize("member", b"cn=A, dc=B") == "<cn=a,dc=b>"

    def strict(s):
        raise LDAPError(ResultCode.INVALID_DN_SYNTAX, "invalid DN")
    schema.dn_normalizer = strict
    assert schema.normalize_or_none("member", b"cn=a") is None
    assert not schema.attribute("seeAlso").is_valid(b"cn=a")


def test_substrings(schema):
    value = schema.substr_key("cn", b"  John   SMITH ")
    assert value == "john smith"
    assert value.startswith(schema.substr_key("cn", b"JOHN ", "initial"))
    assert not "johnny smith".startswith(schema.substr_key("cn", b"JOHN ", "initial"))
    assert value.endswith(schema.substr_key("cn", b" Smith", "final"))
    assert schema.substr_key("cn", b"n  s", "any") in value
    assert schema.substr_key("cn", b" oh", "any") == " oh"
    assert schema.substr_key("telephoneNumber", b"555-01", "any") == "55501"
    assert schema.substr_key("uidNumber", b"1") is None  # no SUBSTR rule


def test_ordering_and_approx(schema):
    assert schema.order_key("cn", b"a") is None  # cn has no ORDERING rule
    assert schema.order_key("dnQualifier", b"B") == "b"
    assert schema.approx_key("cn", b"Jon Smyth") == schema.approx_key("cn", b"John  Smith")
    assert schema.approx_key("cn", b"Jon") != schema.approx_key("cn", b"Mark")
    assert schema.approx_key("uidNumber", b"007") == "7"  # falls back to equality


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize("attr,good,bad", [
    ("cn", [b"x", b" ", "Zoë".encode()], [b"", b"\xff"]),
    ("mail", [b"a@b.org", b""], ["jö@x".encode()]),
    ("uidNumber", [b"0", b"-12", b"1000"], [b"007", b"-0", b"+5", b"1x", b""]),
    ("pwdReset", [b"TRUE", b"FALSE"], [b"true", b"yes"]),
    ("createTimestamp", [b"20230101120000Z", b"202301011200Z", b"20230101120000.5+0130"],
     [b"20230101120000", b"20230230120000Z"]),
    ("c", [b"US", b"u1"], [b"usa", b"u@"]),
    ("telephoneNumber", [b"+1 555-1234"], [b"abc@", b""]),
    ("x121Address", [b"12 34"], [b"12a"]),
    ("destinationIndicator", [b"ABC"], [b"a@b"]),
    ("seeAlso", [b"cn=a,dc=x", b""], [b"foo", b"cn=a,,dc=x"]),
    ("supportedApplicationContext", [b"1.2.3", b"cn"], [b"1..2", b"foo bar", b"01.2"]),
    ("entryUUID", [b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"], [b"1", b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1z"]),
    ("jpegPhoto", [b"\xff\xd8\xff\xe0rest"], [b"GIF89a"]),
    ("userPassword", [b"", b"\x00\xff"], []),
    ("x500UniqueIdentifier", [b"'0101'B"], [b"0101", b"'012'B"]),
    ("uniqueMember", [b"cn=a,dc=x#'0101'B", b"cn=a,dc=x"], [b"nodn#'01'B"]),
    ("preferredDeliveryMethod", [b"telephone $ any"], [b"foo"]),
    ("postalAddress", [b"1 Main St$Town"], [b""]),
    ("ipHostNumber", [b"10.0.0.1"], ["é".encode()]),
])
def test_syntax(schema, attr, good, bad):
    at = schema.attribute(attr)
    for value in good:
        assert at.is_valid(value), value
        schema.validate(attr, value)
    for i, value in enumerate(bad):
        assert not at.is_valid(value), value
        refused(ResultCode.INVALID_ATTRIBUTE_SYNTAX, f"{at.name}: value #{i} invalid per syntax",
                schema.validate, attr, value, index=i)


# -- entries -------------------------------------------------------------------------------


def person(**extra):
    entry = {"objectClass": [b"top", b"person", b"organizationalPerson", b"inetOrgPerson"],
             "cn": [b"Ann Smith"], "sn": [b"Smith"], "uid": [b"asmith"]}
    entry.update(extra)
    return entry


def test_valid_entries(schema):
    schema.check_entry(person())
    schema.check_entry(person(objectClass=[b"inetOrgPerson", b"posixAccount", b"eduPerson"],
                              uidNumber=[b"1000"], gidNumber=[b"100"], homeDirectory=[b"/home/a"],
                              eduPersonAffiliation=[b"student", b"member"]))
    # operational attributes are always allowed; names need not be canonical
    schema.check_entry(person(entryUUID=[b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
                              createTimestamp=[b"20230101120000Z"], memberOf=[b"cn=g,dc=x"],
                              surname=[b"Smith2"]))
    schema.check_entry({"objectClass": [b"organizationalUnit"], "ou": [b"people"]})
    schema.check_entry({"objectClass": [b"dcObject", b"organization"], "dc": [b"example"], "o": [b"Example"]})
    schema.check_entry({"objectClass": [b"device", b"extensibleObject"], "cn": [b"d"], "uidNumber": [b"5"]})


def test_entry_errors(schema):
    ocv, cv = ResultCode.OBJECT_CLASS_VIOLATION, ResultCode.CONSTRAINT_VIOLATION
    refused(ocv, "no objectClass attribute", schema.check_entry, {"cn": [b"a"]})
    refused(ocv, "no objectClass attribute", schema.check_entry, {"objectClass": [], "cn": [b"a"]})
    refused(ocv, "unrecognized objectClass 'x'", schema.check_entry, {"objectClass": [b"person", b"x"]})
    refused(ocv, "no structural object class provided",
            schema.check_entry, {"objectClass": [b"top", b"dcObject"], "dc": [b"x"]})
    refused(ocv, "invalid structural object class chain (person/device)",
            schema.check_entry, {"objectClass": [b"person", b"device"], "cn": [b"a"], "sn": [b"b"]})
    refused(ocv, "object class 'person' requires attribute 'sn'",
            schema.check_entry, {"objectClass": [b"person"], "cn": [b"a"]})
    refused(ocv, "object class 'inetOrgPerson' requires attribute 'sn'",
            schema.check_entry, {"objectClass": [b"inetOrgPerson"], "cn": [b"a"]})
    refused(ocv, "attribute 'mail' not allowed",
            schema.check_entry, {"objectClass": [b"person"], "cn": [b"a"], "sn": [b"b"], "mail": [b"a@b"]})
    refused(cv, "attribute 'displayName' cannot have multiple values",
            schema.check_entry, person(displayName=[b"a", b"b"]))
    refused(ResultCode.ATTRIBUTE_OR_VALUE_EXISTS, "description: value #1 provided more than once",
            schema.check_entry, person(description=[b"a", b"b", b"  B"]))
    refused(ResultCode.ATTRIBUTE_OR_VALUE_EXISTS, "objectClass: value #1 provided more than once",
            schema.check_entry, person(objectClass=[b"top", b"person", b"2.5.6.6"]))
    refused(ResultCode.INVALID_ATTRIBUTE_SYNTAX, "cn: value #1 invalid per syntax",
            schema.check_entry, person(cn=[b"a", b""]))
    refused(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, "foo: attribute type undefined",
            schema.check_entry, person(foo=[b"x"]))


def test_rdn_values_count_as_present(schema):
    entry = {"objectClass": [b"person"], "sn": [b"b"]}
    schema.check_entry(entry, rdn_attrs=[("cn", b"Ann")])
    schema.check_entry(person(), rdn_attrs=[("uid", b"ASMITH")])  # already there, by equality
    refused(ResultCode.OBJECT_CLASS_VIOLATION, "attribute 'mail' not allowed",
            schema.check_entry, {"objectClass": [b"person"], "cn": [b"a"], "sn": [b"b"]},
            rdn_attrs=[("mail", b"a@b")])
    refused(ResultCode.NAMING_VIOLATION, "naming attribute 'uid' is not present in entry",
            schema.check_entry, {"objectClass": [b"person"], "cn": [b"a"], "sn": [b"b"]}, rdn_attrs=["uid"])


def test_structural_class(schema):
    assert schema.structural_class([b"top", b"person", b"inetOrgPerson", b"organizationalPerson"]) == "inetOrgPerson"
    assert schema.structural_class(["inetOrgPerson", "posixAccount", "eduPerson"]) == "inetOrgPerson"
    refused(ResultCode.OBJECT_CLASS_VIOLATION, "no structural object class provided",
            schema.structural_class, [b"top", b"posixAccount"])


# -- publication -----------------------------------------------------------------------------


def test_definitions_round_trip(schema):
    text = "\n".join(["attributetype " + at.definition() for at in schema.attribute_types] +
                     ["objectclass " + oc.definition() for oc in schema.object_classes])
    again = Schema.from_string(text)
    fields = ("oid", "names", "desc", "sup", "equality", "ordering", "substr", "syntax", "syntax_len",
              "single_value", "collective", "no_user_modification", "usage", "obsolete", "extensions")
    for at in schema.attribute_types:
        other = again.attribute(at.oid)
        assert [getattr(other, f) for f in fields] == [getattr(at, f) for f in fields], at.name
        assert other.definition() == at.definition()
    for oc in schema.object_classes:
        other = again.objectclass(oc.oid)
        for f in ("oid", "names", "desc", "sup", "kind", "must", "may", "obsolete", "all_must", "superclasses"):
            assert getattr(other, f) == getattr(oc, f), (oc.name, f)
        assert other.definition() == oc.definition()


def test_subschema_entry_parses_with_ldap3(schema):
    entry = schema.subschema_entry()
    assert entry["objectClass"] == [b"top", b"subentry", b"subschema"]
    assert entry["cn"] == [b"Subschema"]
    assert all(isinstance(v, bytes) for values in entry.values() for v in values)
    attrs = {k: [v.decode() for v in values] for k, values in entry.items()}
    info = SchemaInfo("cn=Subschema", dict(attrs), entry)
    assert len(info.attribute_types) == len(schema.attribute_types)
    assert len(info.object_classes) == len(schema.object_classes)
    assert info.matching_rules and info.ldap_syntaxes and info.matching_rule_uses
    uid = info.attribute_types["userid"]
    assert (uid.oid, uid.syntax, uid.min_length, uid.equality) == (
        "0.9.2342.19200300.100.1.1", DIRECTORY_STRING, 256, ["caseIgnoreMatch"])
    inet = info.object_classes["inetOrgPerson"]
    assert inet.superior == ["organizationalPerson"] and "uid" in inet.may_contain
    assert info.attribute_types["memberOf"].no_user_modification
    for d in attrs["attributeTypes"]:
        assert AttributeTypeInfo.from_definition([d])
    for d in attrs["objectClasses"]:
        assert ObjectClassInfo.from_definition([d])


# -- the parser ----------------------------------------------------------------------------------


def test_parser_grammar():
    text = r"""
# comment
objectidentifier Root 1.3.6.1.4.1.99999
objectidentifier RAttr Root:1

attributetype ( RAttr:1 NAME ( 'fooBar' 'fb' )
	DESC 'it\27s \27quoted\27'
# a comment inside a definition
	EQUALITY caseIgnoreMatch
	SYNTAX '1.3.6.1.4.1.1466.115.121.1.15'{64}
	SINGLE-VALUE X-ORIGIN 'test' X-MORE ( 'a' 'b' ) )
attributeType ( RAttr:2 NAME 'fooSub' SUP fooBar OBSOLETE )
objectClass ( Root:2.1 NAME 'fooThing' SUP ( top ) AUXILIARY
	MUST fb MAY ( fooSub $ cn ) )
attributetype ( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 2.5.4.3 NAME 'cn' SUP name )
attributetype ( 2.5.4.0 NAME 'objectClass' EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )
objectclass ( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )
"""
    schema = Schema.from_string(text)
    at = schema.attribute("fb")
    assert (at.oid, at.names, at.desc, at.syntax_len, at.single_value) == (
        "1.3.6.1.4.1.99999.1.1", ("fooBar", "fb"), "it's 'quoted'", 64, True)
    assert at.extensions == (("X-ORIGIN", ("test",)), ("X-MORE", ("a", "b")))
    assert "X-ORIGIN 'test' X-MORE ( 'a' 'b' )" in at.definition()
    assert "DESC 'it\\27s \\27quoted\\27'" in at.definition()
    sub = schema.attribute("fooSub")
    assert (sub.oid, sub.sup, sub.equality, sub.obsolete) == ("1.3.6.1.4.1.99999.1.2", "fooBar", "caseIgnoreMatch", True)
    oc = schema.objectclass("fooThing")
    assert (oc.oid, oc.sup, oc.kind, oc.must, oc.may) == (
        "1.3.6.1.4.1.99999.2.1", ("top",), "AUXILIARY", ("fooBar",), ("fooSub", "cn"))


@pytest.mark.parametrize("text,reason", [
    ("bogus ( 1.2.3 )", "unknown directive 'bogus'"),
    ("attributetype ( 1.2.3 NAME 'a' DESC 'x )", "unterminated quoted string"),
    ("attributetype ( 1.2.3 NAME 'a' SUP nope )", "a: SUP 'nope' undefined"),
    ("attributetype ( 1.2.3 NAME 'a' EQUALITY fooMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
     "a: unknown matching rule 'fooMatch'"),
    ("attributetype ( 1.2.3 NAME 'a' SYNTAX 1.2.3.4 )", "a: unknown syntax 1.2.3.4"),
    ("attributetype ( 1.2.3 NAME 'a' )", "a: no SYNTAX and no SUP"),
    ("attributetype ( Nope:1 NAME 'a' )", "OID 'Nope:1' is neither numeric nor a defined objectidentifier"),
    ("attributetype ( 1.2.3 NAME 'a' BOGUS )", "unexpected 'BOGUS' in attributetype"),
    ("attributetype ( 1.2.3 NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 NAME 'b' )", "NAME given twice"),
    ("objectclass ( 1.2.4 NAME 'c' MUST nope )", "c: MUST attribute type 'nope' undefined"),
    ("  attributetype ( 1.2.3 )", "continuation line without a statement"),
])
def test_parser_errors(tmp_path, text, reason):
    path = tmp_path / "bad.schema"
    path.write_text("# leading comment\n\n" + text + "\n")
    with pytest.raises(SchemaError) as info:
        Schema.load([path])
    assert str(info.value) == f"{path}:3: {reason}"


def test_duplicate_definitions(tmp_path):
    path = tmp_path / "dup.schema"
    path.write_text("attributetype ( 1.2.3 NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n"
                    "attributetype ( 1.2.4 NAME 'A' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n")
    with pytest.raises(SchemaError, match=r"dup.schema:2: attribute type 'a' already defined at .*dup.schema:1"):
        Schema.load([path])


# values whose preparation differs from their text: runs of spaces, case beyond ASCII,
# compatibility forms (fullwidth, ligatures), combining accents, a telephone number
TRICKY = ["  John   Smith ", "MARÍA GARCÍA", "Ｆｉｏｎａ", "ﬁnn", "Cafe\u0301", "STRASSE", "ǅemal",
          "+1 555-0100", "tab\there", "x"]


def test_equality_keys_are_substring_keys_where_the_planner_uses_the_equality_index(schema):
    """An initial substring is answered from the sorted equality index only for the
    rule pairs in core/filter.py's _PREFIX_RULES: there the equality key of a value
    must be its substring key, or a prefix range would miss or add entries."""
    checked = 0
    for at in schema.attribute_types:
        if at.substr is None or _PREFIX_RULES.get(at.equality) != at.substr:
            continue
        for value in TRICKY:
            raw = value.encode()
            eq = schema.normalize_or_none(at.name, raw)
            if eq is None:
                assert schema.substr_key(at.name, raw) is None
                continue
            assert eq == schema.substr_key(at.name, raw), (at.name, value)
            # and an initial piece of the value is a prefix of that key
            piece = schema.substr_key(at.name, value[: len(value) // 2 + 1].encode(), "initial")
            if piece is not None:
                assert eq.startswith(piece.rstrip(" ")), (at.name, value)
            checked += 1
    assert checked > 50  # cn, sn, mail, telephoneNumber …
