"""directory.server.ber against the real encoders/decoders (ldaptor, ldap3/pyasn1)."""

from __future__ import annotations

import warnings

import pytest
import pyparsing
from ldaptor.protocols import pureber, pureldap
from pyasn1.codec.ber import decoder as asn1_decoder
from pyasn1.codec.ber import encoder as asn1_encoder

with warnings.catch_warnings():  # third-party deprecations (pre-3.0 pyparsing names, old pyasn1 names)
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldap3.operation.bind import bind_operation
    from ldap3.operation.search import search_operation
    from ldap3.protocol import rfc4511
    from ldap3.protocol.convert import build_controls_list
    from ldap3.protocol.rfc2696 import RealSearchControlValue, paged_search_control
    from ldaptor import delta, ldapfilter

from directory.server import ber
from directory.server.ber import (
    BERError,
    BindRequest,
    Control,
    Reader,
    SearchRequest,
    decode_filter,
    decode_message,
    encode_bool,
    encode_controls,
    encode_extended_response,
    encode_filter,
    encode_int,
    encode_intermediate,
    encode_notice_of_disconnection,
    encode_octets,
    encode_result,
    encode_search_entry,
    encode_seq,
    encode_tlv,
    filter_to_string,
    next_pdu_length,
    parse_filter_string,
)

M = pureldap.LDAPMessage

# The decoder context an ldaptor client/server uses for whole LDAPMessages.
LDAPTOR_DECODER = pureldap.LDAPBERDecoderContext_TopLevel(
    inherit=pureldap.LDAPBERDecoderContext_LDAPMessage(
        fallback=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
        inherit=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
    )
)


def parse_ldaptor_filter(text: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pyparsing.PyparsingDeprecationWarning)
        return ldapfilter.parseFilter(text)


def ldaptor_decode(data: bytes):
    msg, used = pureber.berDecodeObject(LDAPTOR_DECODER, data)
    assert used == len(data)
    return msg


def ldap3_wire(msgid: int, kind: str, request, controls=None) -> bytes:
    """Encode a request the way ldap3's BaseStrategy.send() does."""
    m = rfc4511.LDAPMessage()
    m["messageID"] = rfc4511.MessageID(msgid)
    m["protocolOp"] = rfc4511.ProtocolOp().setComponentByName(kind, request)
    built = build_controls_list(controls)
    if built is not None:
        m["controls"] = built
    return asn1_encoder.encode(m)


def asn1_decode(data: bytes):
    """Strict independent decode with pyasn1 and ldap3's RFC 4511 ASN.1 module."""
    msg, rest = asn1_decoder.decode(data, asn1Spec=rfc4511.LDAPMessage())
    assert rest == b""
    return msg


def search_pdu(filter_text="(objectClass=*)", msgid=2, controls=None, **kw):
    kw.setdefault("baseObject", "dc=example,dc=org")
    req = pureldap.LDAPSearchRequest(filter=parse_ldaptor_filter(filter_text), **kw)
    return M(req, id=msgid, controls=controls).toWire()


def message(op_tlv: bytes, msgid: int = 1, *extra: bytes) -> bytes:
    """Hand-built LDAPMessage, for malformed-input tests."""
    return encode_seq(0x30, encode_int(2, msgid), op_tlv, *extra)


def search_op(filter_tlv: bytes, *, types_only=b"\x01\x01\x00", attrs=b"\x30\x00") -> bytes:
    return encode_seq(
        0x63,
        encode_octets(4, "dc=x"),
        encode_int(0x0A, 2),
        encode_int(0x0A, 0),
        encode_int(2, 0),
        encode_int(2, 0),
        types_only,
        filter_tlv,
        attrs,
    )


EQ_UID = encode_seq(0xA3, encode_octets(4, "uid"), encode_octets(4, "x"))


# --------------------------------------------------------------------------
# Bind


class TestBind:
    def test_simple_bind_from_ldaptor(self):
        pdu = M(pureldap.LDAPBindRequest(dn="uid=jsmith,ou=people,dc=example,dc=org", auth=b"s3cret"), id=7).toWire()
        msg = decode_message(pdu)
        assert (msg.msgid, msg.op, msg.controls, msg.raw) == (7, 0, [], pdu)
        assert msg.request == BindRequest(3, "uid=jsmith,ou=people,dc=example,dc=org", "simple", b"s3cret", None, None)

    def test_anonymous_bind(self):
        msg = decode_message(M(pureldap.LDAPBindRequest(dn="", auth=""), id=1).toWire())
        assert msg.request == BindRequest(3, "", "simple", b"", None, None)

    def test_version_2_is_reported_not_rejected(self):
        msg = decode_message(M(pureldap.LDAPBindRequest(version=2, dn="", auth=""), id=1).toWire())
        assert msg.request.version == 2

    def test_sasl_bind_with_and_without_credentials(self):
        with_creds = M(pureldap.LDAPBindRequest(dn="", auth=("DIGEST-MD5", b"\x00resp"), sasl=True), id=3).toWire()
        req = decode_message(with_creds).request
        assert req == BindRequest(3, "", "sasl", b"", "DIGEST-MD5", b"\x00resp")
        without = M(pureldap.LDAPBindRequest(dn="", auth=("EXTERNAL", None), sasl=True), id=4).toWire()
        assert decode_message(without).request == BindRequest(3, "", "sasl", b"", "EXTERNAL", None)

    def test_ldap3_binds(self):
        pdu = ldap3_wire(5, "bindRequest", bind_operation(3, "SIMPLE", "cn=Jürgen Müller,dc=x", "pässwörd"))
        req = decode_message(pdu).request
        assert req == BindRequest(3, "cn=Jürgen Müller,dc=x", "simple", "pässwörd".encode(), None, None)
        pdu = ldap3_wire(6, "bindRequest", bind_operation(3, "SASL", "", None, "EXTERNAL", None))
        assert decode_message(pdu).request == BindRequest(3, "", "sasl", b"", "EXTERNAL", None)
        pdu = ldap3_wire(6, "bindRequest", bind_operation(3, "SASL", "", None, "PLAIN", b"\x00u\x00p"))
        assert decode_message(pdu).request.sasl_credentials == b"\x00u\x00p"

    def test_long_password_uses_multibyte_length(self):
        for size in (127, 128, 255, 256, 70000):
            pw = bytes(range(256)) * (size // 256) + bytes(size % 256)
            pdu = M(pureldap.LDAPBindRequest(dn="cn=x", auth=pw), id=1).toWire()
            assert decode_message(pdu).request.password == pw

    def test_password_is_not_in_repr(self):
        msg = decode_message(M(pureldap.LDAPBindRequest(dn="cn=x", auth=b"hunter2"), id=1).toWire())
        assert "hunter2" not in repr(msg)

    def test_unsupported_authentication_choice(self):
        # Microsoft's sicilyPackageDiscovery [9]
        op = encode_seq(0x60, encode_int(2, 3), encode_octets(4, ""), encode_octets(0x89, b""))
        with pytest.raises(BERError, match="authentication choice"):
            decode_message(message(op))

    def test_trailing_garbage_in_bind(self):
        op = encode_seq(0x60, encode_int(2, 3), encode_octets(4, ""), encode_octets(0x80, b"pw"), b"\x04\x00")
        with pytest.raises(BERError, match="trailing"):
            decode_message(message(op))
        sasl = encode_seq(0xA3, encode_octets(4, "PLAIN"), encode_octets(4, b"c"), encode_octets(4, b"d"))
        with pytest.raises(BERError, match="trailing"):
            decode_message(message(encode_seq(0x60, encode_int(2, 3), encode_octets(4, ""), sasl)))


# --------------------------------------------------------------------------
# Search


class TestSearch:
    @pytest.mark.parametrize("scope", [0, 1, 2])
    @pytest.mark.parametrize("deref", [0, 1, 2, 3])
    def test_scope_and_deref(self, scope, deref):
        req = decode_message(search_pdu(scope=scope, derefAliases=deref)).request
        assert (req.scope, req.deref) == (scope, deref)

    def test_all_fields(self):
        pdu = search_pdu(
            "(uid=jsmith)",
            msgid=2**31 - 1,
            baseObject="ou=people,dc=example,dc=org",
            scope=1,
            sizeLimit=500,
            timeLimit=2**31 - 1,
            typesOnly=True,
            attributes=["cn", "mail"],
        )
        msg = decode_message(pdu)
        assert msg.msgid == 2**31 - 1 and msg.op == 3 and msg.controls == []
        assert msg.request == SearchRequest(
            "ou=people,dc=example,dc=org", 1, 0, 500, 2**31 - 1, True, ("eq", "uid", b"jsmith"), ["cn", "mail"]
        )

    @pytest.mark.parametrize(
        "attributes", [[], ["*"], ["+"], ["1.1"], ["*", "+"], ["cn", "mail", "memberOf;range=0-*", "2.5.4.3"]]
    )
    def test_attribute_selections(self, attributes):
        assert decode_message(search_pdu(attributes=attributes)).request.attributes == attributes

    def test_subordinate_scope_is_accepted(self):
        op = search_op(EQ_UID).replace(b"\x0a\x01\x02", b"\x0a\x01\x03", 1)
        assert decode_message(message(op)).request.scope == 3

    def test_ldap3_search_with_controls(self):
        req = search_operation(
            "ou=people,dc=example,dc=org",
            "(&(cn=J*n*)(mail=*@example.org)(!(uid=a))(cn:dn:2.5.13.2:=y)(age>=3))",
            "LEVEL",
            "ALWAYS",
            ["cn", "+"],
            10,
            5,
            True,
            True,
            True,
        )
        paged = paged_search_control(True, 50, b"cookie")  # a pyasn1 Control
        pdu = ldap3_wire(9, "searchRequest", req, [paged, ("1.2.3.4", False, None)])
        msg = decode_message(pdu)
        assert msg.request == SearchRequest(
            "ou=people,dc=example,dc=org",
            1,
            3,
            10,
            5,
            True,
            (
                "and",
                [
                    ("sub", "cn", b"J", [b"n"], None),
                    ("sub", "mail", None, [], b"@example.org"),
                    ("not", ("eq", "uid", b"a")),
                    ("ext", "2.5.13.2", "cn", b"y", True),  # ldap3 encodes TRUE as 0x01: accepted
                    ("ge", "age", b"3"),
                ],
            ),
            ["cn", "+"],
        )
        assert msg.controls == [
            Control("1.2.840.113556.1.4.319", True, paged["controlValue"].asOctets()),
            Control("1.2.3.4", False, None),
        ]

    def test_long_filter_value_and_many_attributes(self):
        big = "x" * 70000
        attrs = [f"attr{i}" for i in range(200)]
        req = decode_message(search_pdu(f"(description={big})", attributes=attrs)).request
        assert req.filter == ("eq", "description", big.encode())
        assert req.attributes == attrs

    @pytest.mark.parametrize("field,value", [("scope", 4), ("scope", -1), ("deref", 4)])
    def test_enumerations_out_of_range(self, field, value):
        scope, deref = (value, 0) if field == "scope" else (2, value)
        op = encode_seq(
            0x63, encode_octets(4, ""), encode_int(0x0A, scope), encode_int(0x0A, deref),
            encode_int(2, 0), encode_int(2, 0), encode_bool(1, False), EQ_UID, b"\x30\x00",
        )
        with pytest.raises(BERError):
            decode_message(message(op))

    @pytest.mark.parametrize("limit", [-1, 2**31])
    def test_limits_out_of_range(self, limit):
        op = encode_seq(
            0x63, encode_octets(4, ""), encode_int(0x0A, 2), encode_int(0x0A, 0),
            encode_int(2, limit), encode_int(2, 0), encode_bool(1, False), EQ_UID, b"\x30\x00",
        )
        with pytest.raises(BERError, match="sizeLimit"):
            decode_message(message(op))

    def test_types_only_boolean_with_wrong_length(self):
        with pytest.raises(BERError, match="BOOLEAN"):
            decode_message(message(search_op(EQ_UID, types_only=b"\x01\x02\x00\x00")))
        with pytest.raises(BERError, match="BOOLEAN"):
            decode_message(message(search_op(EQ_UID, types_only=b"\x01\x00")))

    def test_non_octet_string_attribute_selector(self):
        with pytest.raises(BERError, match="attribute selector"):
            decode_message(message(search_op(EQ_UID, attrs=encode_seq(0x30, encode_int(2, 1)))))

    def test_trailing_element_in_search(self):
        op = search_op(EQ_UID)
        op = encode_seq(0x63, op[2:], b"\x04\x00")  # short-form header: re-wrap with one more element
        with pytest.raises(BERError, match="trailing"):
            decode_message(message(op))

    def test_invalid_utf8_base(self):
        op = search_op(EQ_UID).replace(b"\x04\x04dc=x", b"\x04\x04dc=\xff")
        with pytest.raises(BERError, match="UTF-8"):
            decode_message(message(op))


# --------------------------------------------------------------------------
# Filters


FILTER_CASES = [
    ("(uid=jsmith)", ("eq", "uid", b"jsmith")),
    ("(cn;lang-de=Jürgen)", ("eq", "cn;lang-de", "Jürgen".encode())),
    ("(uidNumber>=1000)", ("ge", "uidNumber", b"1000")),
    ("(uidNumber<=1000)", ("le", "uidNumber", b"1000")),
    ("(sn~=smith)", ("approx", "sn", b"smith")),
    ("(mail=*)", ("present", "mail")),
    ("(cn=a*)", ("sub", "cn", b"a", [], None)),
    ("(cn=*a)", ("sub", "cn", None, [], b"a")),
    ("(cn=*a*)", ("sub", "cn", None, [b"a"], None)),
    ("(cn=a*b*c*d)", ("sub", "cn", b"a", [b"b", b"c"], b"d")),
    ("(cn=*a*b*)", ("sub", "cn", None, [b"a", b"b"], None)),
    ("(cn:=Fred)", ("ext", None, "cn", b"Fred", False)),
    ("(cn:caseExactMatch:=Fred)", ("ext", "caseExactMatch", "cn", b"Fred", False)),
    ("(cn:dn:2.5.13.5:=Fred)", ("ext", "2.5.13.5", "cn", b"Fred", True)),
    ("(cn:dn:=Fred)", ("ext", None, "cn", b"Fred", True)),
    ("(:1.2.3:=x)", ("ext", "1.2.3", None, b"x", False)),
    ("(:dn:2.4.6.8.10:=Dino)", ("ext", "2.4.6.8.10", None, b"Dino", True)),
    ("(!(uid=a))", ("not", ("eq", "uid", b"a"))),
    (
        "(&(objectClass=inetOrgPerson)(uid=jsmith))",
        ("and", [("eq", "objectClass", b"inetOrgPerson"), ("eq", "uid", b"jsmith")]),
    ),
    (
        "(|(uid=a)(!(&(cn=b*)(mail=*)))(sn>=c))",
        (
            "or",
            [
                ("eq", "uid", b"a"),
                ("not", ("and", [("sub", "cn", b"b", [], None), ("present", "mail")])),
                ("ge", "sn", b"c"),
            ],
        ),
    ),
]


class TestFilters:
    @pytest.mark.parametrize("text,ast", FILTER_CASES)
    def test_decode_ldaptor_encoded_filters(self, text, ast):
        assert decode_message(search_pdu(text)).request.filter == ast

    @pytest.mark.parametrize("text,ast", FILTER_CASES)
    def test_decode_ldap3_encoded_filters(self, text, ast):
        req = search_operation("dc=x", text, "SUBTREE", "NEVER", ["1.1"], 0, 0, False, False, False)
        assert decode_message(ldap3_wire(3, "searchRequest", req)).request.filter == ast

    @pytest.mark.parametrize("text,ast", FILTER_CASES)
    def test_parse_filter_string_and_back(self, text, ast):
        assert parse_filter_string(text) == ast
        assert filter_to_string(ast) == text
        assert parse_filter_string(filter_to_string(ast)) == ast

    @pytest.mark.parametrize("text,ast", FILTER_CASES)
    def test_encode_filter(self, text, ast):
        wire = encode_filter(ast)
        assert decode_filter(wire) == ast
        if "'ext'" not in repr(ast):
            # ldaptor always writes dnAttributes, even FALSE; otherwise the encodings agree
            assert wire == parse_ldaptor_filter(text).toWire()

    def test_explicit_false_dn_attributes_is_accepted(self):
        assert parse_ldaptor_filter("(cn:=x)").toWire().endswith(b"\x84\x01\x00")
        assert decode_message(search_pdu("(cn:=x)")).request.filter == ("ext", None, "cn", b"x", False)

    def test_empty_and_or_absolute_true_false(self):  # RFC 4526
        pdu = message(search_op(encode_seq(0xA1, encode_seq(0xA0), encode_seq(0xA1))))
        assert decode_message(pdu).request.filter == ("or", [("and", []), ("or", [])])
        assert parse_filter_string("(|(&)(|))") == ("or", [("and", []), ("or", [])])
        assert filter_to_string(("or", [("and", []), ("or", [])])) == "(|(&)(|))"

    def test_depth_limit(self):
        leaf = EQ_UID
        flt = leaf
        for _ in range(ber.MAX_FILTER_DEPTH - 1):
            flt = encode_seq(0xA2, flt)
        req = decode_message(message(search_op(flt))).request  # 64 levels: fine
        depth, f = 1, req.filter
        while f[0] == "not":
            depth, f = depth + 1, f[1]
        assert depth == ber.MAX_FILTER_DEPTH
        with pytest.raises(BERError, match="nested deeper"):
            decode_message(message(search_op(encode_seq(0xA2, flt))))
        deep_and = leaf
        for _ in range(ber.MAX_FILTER_DEPTH):
            deep_and = encode_seq(0xA0, deep_and)
        with pytest.raises(BERError, match="nested deeper"):
            decode_message(message(search_op(deep_and)))

    def test_parse_filter_string_depth_limit(self):
        text = "(!" * ber.MAX_FILTER_DEPTH + "(a=b)" + ")" * ber.MAX_FILTER_DEPTH
        with pytest.raises(ValueError, match="nested deeper"):
            parse_filter_string(text)
        parse_filter_string(text[2:-1])

    @pytest.mark.parametrize(
        "flt,match",
        [
            (encode_seq(0xAA, encode_octets(4, "a")), "unknown filter tag"),
            (encode_seq(0xA3, encode_octets(4, "a")), "truncated"),  # value missing
            (encode_seq(0xA3, encode_octets(4, "a"), encode_octets(4, "b"), encode_octets(4, "c")), "trailing"),
            (encode_seq(0xA3, encode_octets(0x80, "a"), encode_octets(4, "b")), "filter attribute"),
            (encode_seq(0xA2, EQ_UID, EQ_UID), "trailing"),
            (encode_seq(0xA2), "truncated"),
            (encode_seq(0xA4, encode_octets(4, "cn"), encode_seq(0x30)), "without substrings"),
            (encode_seq(0xA4, encode_octets(4, "cn"), encode_seq(0x30, encode_octets(0x81, "a"), encode_octets(0x80, "b"))), "initial"),
            (encode_seq(0xA4, encode_octets(4, "cn"), encode_seq(0x30, encode_octets(0x82, "a"), encode_octets(0x81, "b"))), "final"),
            (encode_seq(0xA4, encode_octets(4, "cn"), encode_seq(0x30, encode_octets(0x83, "a"))), "unexpected tag"),
            (encode_seq(0xA9, encode_octets(0x82, "cn")), "matchValue"),
            (encode_seq(0xA9, encode_octets(0x83, "v"), encode_octets(0x81, "1.2")), "dnAttributes"),
            (encode_seq(0xA9, encode_octets(0x83, "v"), b"\x84\x02\x00\xff"), "BOOLEAN"),
            (encode_seq(0xA9, encode_octets(0x83, "v"), encode_bool(0x84, True), b"\x04\x00"), "trailing"),
            (encode_octets(0x87, b"\xc3("), "UTF-8"),
        ],
    )
    def test_malformed_filters(self, flt, match):
        with pytest.raises(BERError, match=match):
            decode_message(message(search_op(flt)))


class TestFilterStrings:
    def test_escapes(self):
        assert parse_filter_string(r"(cn=a\2ab)") == ("eq", "cn", b"a*b")
        assert parse_filter_string(r"(cn=a\2Ab)") == ("eq", "cn", b"a*b")
        assert parse_filter_string(r"(cn=*\28x\29*)") == ("sub", "cn", None, [b"(x)"], None)
        assert parse_filter_string(r"(cn=\5c\00)") == ("eq", "cn", b"\\\x00")
        assert parse_filter_string("(cn=Jürgen)") == ("eq", "cn", "Jürgen".encode())
        assert parse_filter_string(r"(cn=J\c3\bcrgen)") == ("eq", "cn", "Jürgen".encode())
        assert parse_filter_string(r"(cn:dn:1.2:=\2a)") == ("ext", "1.2", "cn", b"*", True)

    def test_escaping_on_output(self):
        assert filter_to_string(("eq", "cn", b"a*b")) == r"(cn=a\2ab)"
        assert filter_to_string(("sub", "cn", None, [b"(x)"], None)) == r"(cn=*\28x\29*)"
        assert filter_to_string(("eq", "cn", b"\\\x00\n")) == r"(cn=\5c\00\0a)"
        assert filter_to_string(("eq", "cn", "Jürgen".encode())) == "(cn=Jürgen)"
        assert filter_to_string(("eq", "cn", b"\xffok\xc3")) == r"(cn=\ffok\c3)"  # not UTF-8
        assert filter_to_string(("ext", "1.2", "cn", b"*", True)) == r"(cn:dn:1.2:=\2a)"

    @pytest.mark.parametrize(
        "ast",
        [
            ("eq", "cn", bytes(range(256))),
            ("sub", "cn", b"(", [b")", b"*", b"\\"], b"\x00"),
            ("ext", None, "cn", "é*".encode(), True),
            ("and", [("le", "x", b"\xfe\xff"), ("approx", "y", b"")]),
        ],
    )
    def test_round_trip_arbitrary_bytes(self, ast):
        assert parse_filter_string(filter_to_string(ast)) == ast

    def test_same_ast_as_the_wire_decoder(self):
        for text in [r"(cn=a\2ab)", r"(cn=*\28x\29*)", "(cn=Jürgen)", "(&(a=1)(|(b>=2)(!(c<=3))))"]:
            assert parse_filter_string(text) == decode_message(search_pdu(text)).request.filter

    def test_bare_item_and_whitespace(self):
        assert parse_filter_string("uid=jsmith") == ("eq", "uid", b"jsmith")
        assert parse_filter_string("  (uid=jsmith)\n") == ("eq", "uid", b"jsmith")

    def test_numeric_oid_attribute_and_options(self):
        assert parse_filter_string("(2.5.4.3;lang-en=x)") == ("eq", "2.5.4.3;lang-en", b"x")

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "(",
            "()",
            "(cn=a",
            "cn=a)",
            "(cn=a))",
            "(&(a=b)",
            "(&(a=b)x)",
            "(!)",
            "(!(a=b)(c=d))",
            "(=x)",
            "(cn)",
            "(bad attr=x)",
            "(_x=1)",
            "(cn~=a*)",
            "(cn>=*)",
            "(cn=a\\2)",
            "(cn=a\\zz)",
            "(cn=a\\)",
            "(a=b(c)",
            "(:=x)",
            "(cn:dn:1.2:3:=x)",
            "(cn:=a*b)",
            "(cn:bad rule:=x)",
        ],
    )
    def test_bad_syntax(self, text):
        with pytest.raises(ValueError):
            parse_filter_string(text)

    def test_error_message_is_clear(self):
        with pytest.raises(ValueError, match=r"bad LDAP filter '\(cn=a\\zz\)' at position 5: '\\' must be followed by two hex digits"):
            parse_filter_string("(cn=a\\zz)")


# --------------------------------------------------------------------------
# Controls and the other operations


class TestControls:
    @pytest.mark.parametrize(
        "controls,expected",
        [
            ([("1.2.3", None, None)], [Control("1.2.3", False, None)]),
            ([("1.2.3", True, None)], [Control("1.2.3", True, None)]),
            ([("1.2.3", False, b"v")], [Control("1.2.3", False, b"v")]),  # explicit FALSE accepted
            ([("1.2.3", None, b"")], [Control("1.2.3", False, b"")]),
            (
                [("1.2.840.113556.1.4.319", True, b"0\x05\x02\x01\x05\x04\x00"), ("2.16.840.1.113730.3.4.2", None, None)],
                [Control("1.2.840.113556.1.4.319", True, b"0\x05\x02\x01\x05\x04\x00"), Control("2.16.840.1.113730.3.4.2", False, None)],
            ),
            ([("1.2.3", True, b"x" * 300)], [Control("1.2.3", True, b"x" * 300)]),
        ],
    )
    def test_controls_from_ldaptor(self, controls, expected):
        assert decode_message(search_pdu(controls=controls)).controls == expected

    def test_encode_controls_round_trip(self):
        controls = [Control("1.2.3", True, b"abc"), Control("1.2.4", False, None), Control("1.2.5", False, b"")]
        pdu = message(search_op(EQ_UID), 1, encode_controls(controls))
        assert decode_message(pdu).controls == controls
        # criticality FALSE (the DEFAULT) is omitted
        assert encode_controls([Control("1.2.4")]) == b"\xa0\x09\x30\x07\x04\x051.2.4"
        assert encode_controls([Control("1.2.3", True, b"abc")]) == pureldap.LDAPControls(
            [pureldap.LDAPControl("1.2.3", True, b"abc")]
        ).toWire()

    @pytest.mark.parametrize(
        "control,match",
        [
            (encode_seq(0x30, encode_octets(4, "1.2"), b"\x01\x02\x00\xff"), "BOOLEAN"),
            (encode_seq(0x30, encode_octets(4, "1.2"), encode_int(2, 1)), "controlValue"),
            (encode_seq(0x30, encode_octets(4, "1.2"), encode_octets(4, b""), encode_octets(4, b"")), "trailing"),
            (encode_seq(0x30, encode_bool(1, True)), "controlType"),
            (encode_octets(4, "1.2"), "Control"),
        ],
    )
    def test_malformed_controls(self, control, match):
        with pytest.raises(BERError, match=match):
            decode_message(message(search_op(EQ_UID), 1, encode_seq(0xA0, control)))

    def test_element_after_protocol_op_must_be_controls(self):
        with pytest.raises(BERError, match="controls"):
            decode_message(message(search_op(EQ_UID), 1, encode_seq(0xA1)))
        with pytest.raises(BERError, match="trailing"):
            decode_message(message(search_op(EQ_UID), 1, encode_seq(0xA0), b"\x04\x00"))


def ldaptor_fields(op, request) -> tuple:
    """What the server took from an ldaptor-decoded request before this codec decoded
    every operation (protocol.py's former _request_fields): the reference."""
    def text(v):
        return v.decode("utf-8") if isinstance(v, bytes) else text(v.value) if hasattr(v, "value") else str(v)

    def raw(v):
        return v if isinstance(v, bytes) else raw(v.value) if hasattr(v, "value") else str(v).encode("utf-8")

    if op == 23:
        return text(request.requestName), (raw(request.requestValue) if request.requestValue is not None else None)
    if op == 14:
        return text(request.entry), text(request.ava.attributeDesc.value), raw(request.ava.assertionValue.value)
    if op == 8:
        attrs = []
        for item in request.attributes:
            parts = item.data if hasattr(item, "data") else item
            vals = parts[1].data if hasattr(parts[1], "data") else parts[1]
            attrs.append((text(parts[0].value), [raw(v.value) for v in vals]))
        return text(request.entry), attrs
    if op == 6:
        changes = []
        for item in request.modification:
            mod_op, (desc, *rest) = item.data[0].value, item.data[1].data
            changes.append((mod_op, text(desc.value), [raw(v.value) for v in rest[0].data] if rest else []))
        return text(request.object), changes
    if op == 10:
        return (text(request.value),)
    if op == 12:
        sup = text(request.newSuperior) if request.newSuperior is not None else None
        return text(request.entry), text(request.newrdn), bool(request.deleteoldrdn), sup
    raise AssertionError(op)


def _add_attr(name, *values):
    return (pureldap.LDAPAttributeDescription(name), pureber.BERSet([pureldap.LDAPAttributeValue(v) for v in values]))


OTHER_REQUESTS = [
    (6, pureldap.LDAPModifyRequest(object="cn=x,dc=y", modification=[delta.Replace("mail", [b"a@b"]).asLDAP()])),
    (6, pureldap.LDAPModifyRequest(object="uid=m\xe9lanie,dc=y", modification=[
        delta.Add("member", [b"cn=a", b"cn=b"]).asLDAP(), delta.Delete("description", []).asLDAP(),
        delta.Replace("jpegPhoto", [bytes(range(256)) * 40]).asLDAP(), delta.Replace("seeAlso", []).asLDAP()])),
    (8, pureldap.LDAPAddRequest(entry="cn=x,dc=y", attributes=[_add_attr("cn", b"x")])),
    (8, pureldap.LDAPAddRequest(entry="cn=J\xfcrgen,dc=y", attributes=[
        _add_attr("objectClass", b"top", b"person"), _add_attr("cn", "J\xfcrgen".encode()), _add_attr("sn", b"M"),
        _add_attr("description;lang-de", b"x" * 300), _add_attr("seeAlso")])),
    (8, pureldap.LDAPAddRequest(entry="cn=x,dc=y", attributes=[])),
    (10, pureldap.LDAPDelRequest(entry="cn=x,dc=y")),
    (10, pureldap.LDAPDelRequest(entry="")),
    (12, pureldap.LDAPModifyDNRequest(entry="cn=x,dc=y", newrdn="cn=z", deleteoldrdn=True)),
    (12, pureldap.LDAPModifyDNRequest(entry="cn=x,dc=y", newrdn="cn=z", deleteoldrdn=False,
                                      newSuperior="ou=\xe9l\xe8ves,dc=y")),
    (14, pureldap.LDAPCompareRequest(entry="cn=x,dc=y", ava=pureldap.LDAPAttributeValueAssertion(
        pureber.BEROctetString("cn"), pureber.BEROctetString("x")))),
    (14, pureldap.LDAPCompareRequest(entry="cn=x,dc=y", ava=pureldap.LDAPAttributeValueAssertion(
        pureber.BEROctetString("userPassword"), pureber.BEROctetString(b"\xff\x00bin")))),
    (23, pureldap.LDAPPasswordModifyRequest(userIdentity="uid=a,dc=y", newPasswd="secret")),
    (23, pureldap.LDAPStartTLSRequest()),
    (23, pureldap.LDAPExtendedRequest(requestName="1.3.6.1.4.1.4203.1.11.3")),
    (23, pureldap.LDAPExtendedRequest(requestName="1.2.3", requestValue=b"")),
]

# caps for the tests: small, so that "at the cap" and "one over" are cheap to build
CAPS = ber.RequestLimits(attributes=3, values_per_attribute=4, values=6, changes=3)


def add_pdu(attrs, dn="cn=x,dc=y", msgid=9):
    body = b"".join(encode_seq(0x30, encode_octets(4, a), encode_seq(0x31, *[encode_octets(4, v) for v in vs]))
                    for a, vs in attrs)
    return message(encode_seq(0x68, encode_octets(4, dn), encode_seq(0x30, body)), msgid)


def modify_pdu(changes, dn="cn=x,dc=y", msgid=9):
    body = b"".join(encode_seq(0x30, encode_int(0x0A, op), encode_seq(
        0x30, encode_octets(4, a), encode_seq(0x31, *[encode_octets(4, v) for v in vs]))) for op, a, vs in changes)
    return message(encode_seq(0x66, encode_octets(4, dn), encode_seq(0x30, body)), msgid)


def _change(op=2, attr=b"cn", vals=(b"v",)):
    return encode_seq(0x30, encode_int(0x0A, op), encode_seq(0x30, encode_octets(4, attr),
                                                             encode_seq(0x31, *[encode_octets(4, v) for v in vals])))


def _attr(attr=b"cn", vals=(b"v",)):
    return encode_seq(0x30, encode_octets(4, attr), encode_seq(0x31, *[encode_octets(4, v) for v in vals]))


DN = encode_octets(4, "cn=x,dc=y")
# well-framed LDAPMessages whose add/modify/modDN/compare/delete/extended is malformed
MALFORMED_OTHER = {
    # add
    "add: dn not an OCTET STRING": encode_seq(0x68, encode_int(2, 1), encode_seq(0x30, _attr())),
    "add: attribute list not a SEQUENCE": encode_seq(0x68, DN, encode_seq(0x31, _attr())),
    "add: attribute list missing": encode_seq(0x68, DN),
    "add: attribute not a SEQUENCE": encode_seq(0x68, DN, encode_seq(0x30, encode_octets(4, "cn"))),
    "add: values missing": encode_seq(0x68, DN, encode_seq(0x30, encode_seq(0x30, encode_octets(4, "cn")))),
    "add: values a SEQUENCE, not a SET": encode_seq(0x68, DN, encode_seq(0x30, encode_seq(
        0x30, encode_octets(4, "cn"), encode_seq(0x30, encode_octets(4, "v"))))),
    "add: value not an OCTET STRING": encode_seq(0x68, DN, encode_seq(0x30, encode_seq(
        0x30, encode_octets(4, "cn"), encode_seq(0x31, encode_int(2, 5))))),
    "add: value with long length, wrong tag": encode_seq(0x68, DN, encode_seq(0x30, encode_seq(
        0x30, encode_octets(4, "cn"), encode_seq(0x31, encode_octets(0x80, b"v" * 200))))),
    "add: trailing in attribute": encode_seq(0x68, DN, encode_seq(0x30, encode_seq(
        0x30, encode_octets(4, "cn"), encode_seq(0x31, encode_octets(4, "v")), encode_octets(4, "x")))),
    "add: trailing after list": encode_seq(0x68, DN, encode_seq(0x30, _attr()), encode_octets(4, "x")),
    "add: dn invalid UTF-8": encode_seq(0x68, encode_octets(4, b"cn=\xff"), encode_seq(0x30, _attr())),
    "add: type invalid UTF-8": encode_seq(0x68, DN, encode_seq(0x30, _attr(b"c\xc3"))),
    "add: value overruns its SET": encode_seq(0x68, DN, encode_seq(0x30, encode_seq(
        0x30, encode_octets(4, "cn"), b"\x31\x03\x04\x05abc"))),
    # modify
    "modify: changes not a SEQUENCE": encode_seq(0x66, DN, encode_int(2, 5)),
    "modify: changes missing": encode_seq(0x66, DN),
    "modify: change not a SEQUENCE": encode_seq(0x66, DN, encode_seq(0x30, encode_octets(4, "x"))),
    "modify: operation an INTEGER": encode_seq(0x66, DN, encode_seq(0x30, encode_seq(
        0x30, encode_int(2, 0), encode_seq(0x30, encode_octets(4, "cn"), encode_seq(0x31))))),
    "modify: operation missing": encode_seq(0x66, DN, encode_seq(0x30, encode_seq(
        0x30, encode_seq(0x30, encode_octets(4, "cn"), encode_seq(0x31))))),
    "modify: modification missing": encode_seq(0x66, DN, encode_seq(0x30, encode_seq(0x30, encode_int(0x0A, 0)))),
    "modify: modification a SET": encode_seq(0x66, DN, encode_seq(0x30, encode_seq(
        0x30, encode_int(0x0A, 0), encode_seq(0x31, encode_octets(4, "cn"), encode_seq(0x31))))),
    "modify: values missing": encode_seq(0x66, DN, encode_seq(0x30, encode_seq(
        0x30, encode_int(0x0A, 0), encode_seq(0x30, encode_octets(4, "cn"))))),
    "modify: trailing in change": encode_seq(0x66, DN, encode_seq(0x30, encode_seq(
        0x30, encode_int(0x0A, 0), encode_seq(0x30, encode_octets(4, "cn"), encode_seq(0x31)), encode_int(2, 1)))),
    "modify: trailing in modification": encode_seq(0x66, DN, encode_seq(0x30, encode_seq(
        0x30, encode_int(0x0A, 0), encode_seq(0x30, encode_octets(4, "cn"), encode_seq(0x31), encode_seq(0x31))))),
    "modify: trailing after changes": encode_seq(0x66, DN, encode_seq(0x30, _change()), b"\x04\x00"),
    "modify: empty ENUMERATED": encode_seq(0x66, DN, encode_seq(0x30, encode_seq(
        0x30, b"\x0a\x00", encode_seq(0x30, encode_octets(4, "cn"), encode_seq(0x31))))),
    "modify: object invalid UTF-8": encode_seq(0x66, encode_octets(4, b"\xe2\x82"), encode_seq(0x30, _change())),
    "modify: type invalid UTF-8": encode_seq(0x66, DN, encode_seq(0x30, _change(attr=b"\xff"))),
    # modDN
    "modDN: newrdn missing": encode_seq(0x6C, DN),
    "modDN: deleteoldrdn missing": encode_seq(0x6C, DN, encode_octets(4, "cn=z")),
    "modDN: deleteoldrdn an INTEGER": encode_seq(0x6C, DN, encode_octets(4, "cn=z"), encode_int(2, 1)),
    "modDN: deleteoldrdn of two octets": encode_seq(0x6C, DN, encode_octets(4, "cn=z"), b"\x01\x02\xff\xff"),
    "modDN: newSuperior as OCTET STRING": encode_seq(0x6C, DN, encode_octets(4, "cn=z"), encode_bool(1, True),
                                                     encode_octets(4, "dc=y")),
    "modDN: trailing after newSuperior": encode_seq(0x6C, DN, encode_octets(4, "cn=z"), encode_bool(1, True),
                                                    encode_octets(0x80, "dc=y"), encode_octets(0x80, "dc=z")),
    "modDN: newrdn invalid UTF-8": encode_seq(0x6C, DN, encode_octets(4, b"cn=\xc0\xaf"), encode_bool(1, True)),
    "modDN: newSuperior invalid UTF-8": encode_seq(0x6C, DN, encode_octets(4, "cn=z"), encode_bool(1, True),
                                                   encode_octets(0x80, b"dc=\xff")),
    # compare
    "compare: ava missing": encode_seq(0x6E, DN),
    "compare: ava a SET": encode_seq(0x6E, DN, encode_seq(0x31, encode_octets(4, "cn"), encode_octets(4, "x"))),
    "compare: value missing": encode_seq(0x6E, DN, encode_seq(0x30, encode_octets(4, "cn"))),
    "compare: value wrong tag": encode_seq(0x6E, DN, encode_seq(0x30, encode_octets(4, "cn"), encode_octets(0x80, "x"))),
    "compare: trailing in ava": encode_seq(0x6E, DN, encode_seq(0x30, encode_octets(4, "cn"), encode_octets(4, "x"),
                                                                encode_octets(4, "y"))),
    "compare: trailing after ava": encode_seq(0x6E, DN, encode_seq(0x30, encode_octets(4, "cn"), encode_octets(4, "x")),
                                              b"\x04\x00"),
    "compare: attribute invalid UTF-8": encode_seq(0x6E, DN, encode_seq(0x30, encode_octets(4, b"c\xffn"),
                                                                        encode_octets(4, "x"))),
    # delete
    "delete: dn invalid UTF-8": encode_octets(0x4A, b"cn=\xff,dc=y"),
    "delete: constructed": encode_seq(0x6A, DN),
    # extended
    "extended: name missing": encode_seq(0x77),
    "extended: name an OCTET STRING": encode_seq(0x77, encode_octets(4, "1.2.3")),
    "extended: value first": encode_seq(0x77, encode_octets(0x81, b"v"), encode_octets(0x80, "1.2.3")),
    "extended: value wrong tag": encode_seq(0x77, encode_octets(0x80, "1.2.3"), encode_octets(4, b"v")),
    "extended: trailing after value": encode_seq(0x77, encode_octets(0x80, "1.2.3"), encode_octets(0x81, b"v"),
                                                 encode_octets(0x81, b"w")),
    "extended: name invalid UTF-8": encode_seq(0x77, encode_octets(0x80, b"\xff\xfe")),
}


class TestOtherOperations:
    @pytest.mark.parametrize("op,request_", OTHER_REQUESTS)
    def test_fields_as_ldaptor_gave_them(self, op, request_):
        pdu = M(request_, id=11, controls=[("1.2.3", True, None)]).toWire()
        msg = decode_message(pdu)
        assert (msg.msgid, msg.op) == (11, op)
        assert msg.request == ldaptor_fields(op, ldaptor_decode(pdu).value)
        assert msg.controls == [Control("1.2.3", True, None)]
        assert msg.raw == pdu
        # the caps change nothing for a request under them
        assert decode_message(pdu, ber.RequestLimits(1000, 10000, 20000, 1000)) == msg

    def test_ldap3_encoded_requests(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_INCREMENT, MODIFY_REPLACE
            from ldap3.operation.add import add_operation
            from ldap3.operation.compare import compare_operation
            from ldap3.operation.delete import delete_operation
            from ldap3.operation.extended import extended_operation
            from ldap3.operation.modify import modify_operation
            from ldap3.operation.modifyDn import modify_dn_operation

        dn = "uid=\xe9l\xe8ve,ou=people,dc=y"
        cases = [
            ("addRequest", add_operation(dn, {"objectClass": ["top", "person"], "sn": "S", "cn": ["a", "b"]}, True),
             8, lambda r: r[0] == dn and sorted(r[1]) == [("cn", [b"a", b"b"]), ("objectClass", [b"top", b"person"]),
                                                        ("sn", [b"S"])]),
            ("modifyRequest", modify_operation(dn, {"mail": [(MODIFY_REPLACE, ["a@b"])],
                                                    "member": [(MODIFY_ADD, ["cn=a", "cn=b"])],
                                                    "description": [(MODIFY_DELETE, [])],
                                                    "uidNumber": [(MODIFY_INCREMENT, ["1"])]}, True),
             6, lambda r: r[0] == dn and sorted(r[1]) == [(0, "member", [b"cn=a", b"cn=b"]), (1, "description", []),
                                                        (2, "mail", [b"a@b"]), (3, "uidNumber", [b"1"])]),
            ("modDNRequest", modify_dn_operation(dn, "uid=x", True, "ou=old,dc=y"), 12,
             lambda r: r == (dn, "uid=x", True, "ou=old,dc=y")),
            ("modDNRequest", modify_dn_operation(dn, "uid=x", False), 12, lambda r: r == (dn, "uid=x", False, None)),
            ("compareRequest", compare_operation(dn, "cn", "a", True), 14, lambda r: r == (dn, "cn", b"a")),
            ("delRequest", delete_operation(dn), 10, lambda r: r == (dn,)),
            ("extendedReq", extended_operation("1.3.6.1.4.1.4203.1.11.3"), 23,
             lambda r: r == ("1.3.6.1.4.1.4203.1.11.3", None)),
            ("extendedReq", extended_operation("1.2.3", b"\x30\x00", no_encode=True), 23,
             lambda r: r == ("1.2.3", b"\x30\x00")),
        ]
        for kind, request_, op, check in cases:
            msg = decode_message(ldap3_wire(7, kind, request_))
            assert (msg.msgid, msg.op) == (7, op)
            assert check(msg.request), (kind, msg.request)

    @pytest.mark.parametrize("name", sorted(MALFORMED_OTHER))
    def test_malformed(self, name):
        with pytest.raises(BERError):
            decode_message(message(MALFORMED_OTHER[name]))
        with pytest.raises(BERError):  # the caps do not hide a malformed request
            decode_message(message(MALFORMED_OTHER[name]), CAPS)

    @pytest.mark.parametrize("op,request_", OTHER_REQUESTS)
    def test_every_truncation_of_the_operation_raises(self, op, request_):
        pdu = M(request_, id=3).toWire()
        msg_tag, s, e = ber._tlv(pdu, 0, len(pdu))
        _, op_s, _ = ber._tlv(pdu, s, e)  # the messageID
        op_start = op_s + 1
        tag, c_s, c_e = ber._tlv(pdu, op_start, e)
        content = pdu[c_s:c_e]
        optional_from = set()  # where an optional last element (newSuperior, requestValue) starts
        if op in (12, 23):
            i = 0
            while i < len(content):
                optional_from.add(i)
                i = ber._tlv(content, i, len(content))[2]
            optional_from = {max(optional_from)} if op == 12 and len(optional_from) == 4 or op == 23 else set()
        for k in range(len(content)):  # the op re-framed around a cut content: inner elements overrun or go missing
            cut = encode_tlv(tag, content[:k])
            if op == 10 or k in optional_from:
                continue  # a shorter DN is still a DN; the whole PDU cut is checked below
            with pytest.raises(BERError):
                decode_message(message(cut, 3))
        for k in range(len(pdu)):
            with pytest.raises(BERError):
                decode_message(pdu[:k])

    def test_add_caps(self):
        at_caps = [("a", [b"1", b"2", b"3", b"4"]), ("b", [b"5"]), ("c", [b"6"])]
        assert decode_message(add_pdu(at_caps), CAPS).request[1] == at_caps
        cases = [
            ([("a", [b"1"]), ("b", [b"2"]), ("c", [b"3"]), ("d", [])], "more than 3 attributes.*request_attributes"),
            ([("a", [b"1", b"2", b"3", b"4", b"5"])], "a: more than 4 values.*request_values_per_attribute"),
            ([("a", [b"1", b"2", b"3", b"4"]), ("b", [b"5", b"6", b"7"])], "more than 6 attribute values.*request_values\\)"),
        ]
        for attrs, match in cases:
            with pytest.raises(ber.RequestLimitExceeded, match="^add: " + match) as info:
                decode_message(add_pdu(attrs, msgid=41), CAPS)
            assert (info.value.msgid, info.value.op) == (41, 8)
            assert decode_message(add_pdu(attrs)).request[1] == attrs  # no caps (the root DN)

    def test_modify_caps(self):
        at_caps = [(0, "a", [b"1", b"2", b"3", b"4"]), (1, "b", []), (2, "c", [b"5", b"6"])]
        assert decode_message(modify_pdu(at_caps), CAPS).request[1] == at_caps
        cases = [
            ([(2, "a", [])] * 4, "more than 3 changes.*request_changes"),
            ([(0, "member", [b"1", b"2", b"3", b"4", b"5"])], "member: more than 4 values.*request_values_per_attribute"),
            ([(0, "a", [b"1", b"2", b"3"]), (0, "a", [b"4", b"5", b"6", b"7"])], "more than 6 attribute values"),
        ]
        for changes, match in cases:
            with pytest.raises(ber.RequestLimitExceeded, match="^modify: " + match) as info:
                decode_message(modify_pdu(changes, msgid=42), CAPS)
            assert (info.value.msgid, info.value.op) == (42, 6)
            assert decode_message(modify_pdu(changes)).request[1] == changes

    def test_cap_stops_decoding_early(self):
        # a malformed element after the cap is not reached: the request is refused for its size
        pdu = message(encode_seq(0x66, DN, encode_seq(0x30, _change(), _change(), _change(), _change(), b"\x05\x00")))
        with pytest.raises(ber.RequestLimitExceeded):
            decode_message(pdu, CAPS)
        with pytest.raises(BERError):
            decode_message(pdu)

    def test_huge_modify_is_linear_and_capped(self):
        import time

        def big(n):
            return modify_pdu([(2, "cn", [b"0123456789"])] * n)

        caps = ber.RequestLimits(1000, 10000, 20000, 1000)
        huge = big(160_000)
        assert len(huge) > 4_000_000
        t = time.perf_counter()
        with pytest.raises(ber.RequestLimitExceeded, match="1000 changes"):
            decode_message(huge, caps)
        assert time.perf_counter() - t < 0.5  # the cap, not the 4 MB, bounds the work
        small, large = big(10_000), big(80_000)

        def best_of_3(pdu):
            times = []
            for _ in range(3):
                t = time.perf_counter()
                decode_message(pdu)
                times.append(time.perf_counter() - t)
            return min(times)

        # 8x the changes: about 8x the time (ldaptor: ~40x for 4x, 0.19 s -> 1.2 s -> 26 s)
        assert best_of_3(large) < 8 * 3 * best_of_3(small) + 0.1

class TestUnbindAbandonUnknown:
    def test_unbind(self):
        msg = decode_message(M(pureldap.LDAPUnbindRequest(), id=4).toWire())
        assert (msg.op, msg.request) == (2, None)
        with pytest.raises(BERError, match="unbind"):
            decode_message(message(encode_octets(0x42, b"x")))

    def test_abandon(self):
        msg = decode_message(M(pureldap.LDAPAbandonRequest(id=99), id=5).toWire())
        assert (msg.msgid, msg.op, msg.request) == (5, 16, 99)
        with pytest.raises(BERError, match="abandoned"):
            decode_message(message(encode_int(0x50, -1)))

    @pytest.mark.parametrize("tag", [0x61, 0x64, 0x65, 0x73, 0x78, 0x79, 0x62, 0x43, 0x7F, 0x04])
    def test_unknown_or_response_protocol_op(self, tag):
        with pytest.raises(BERError, match="protocolOp|multi-octet tag"):
            decode_message(message(encode_tlv(tag, b"")))


# --------------------------------------------------------------------------
# Malformed messages in general


class TestMalformed:
    PDUS = [
        M(pureldap.LDAPBindRequest(dn="uid=jsmith,dc=example,dc=org", auth=b"secret"), id=1).toWire(),
        search_pdu(
            "(&(objectClass=inetOrgPerson)(|(cn=a*b*c)(x:dn:1.2:=y)(!(sn~=q))))",
            controls=[("1.2.3", True, b"v")],
            attributes=["cn", "+"],
        ),
        search_pdu("(cn=" + "y" * 300 + ")", msgid=300),
        *(M(r, id=20 + i, controls=[("1.2.3", False, b"v")]).toWire() for i, (_, r) in enumerate(OTHER_REQUESTS)),
    ]

    @pytest.mark.parametrize("pdu", PDUS)
    def test_every_truncation_raises(self, pdu):
        for k in range(len(pdu)):
            with pytest.raises(BERError):
                decode_message(pdu[:k])

    @pytest.mark.parametrize("pdu", PDUS)
    def test_inner_length_overrunning_its_parent(self, pdu):
        # re-wrap the content with one octet missing: inner elements now overrun
        tag, s, e = ber._tlv(pdu, 0, len(pdu))
        with pytest.raises(BERError):
            decode_message(encode_tlv(0x30, pdu[s : e - 1]))

    def test_garbage_after_message(self):
        pdu = self.PDUS[0]
        with pytest.raises(BERError, match="trailing"):
            decode_message(pdu + b"\x00")

    def test_wrong_outer_tag(self):
        pdu = self.PDUS[0]
        with pytest.raises(BERError, match="SEQUENCE|expected tag 0x30"):
            decode_message(b"\x31" + pdu[1:])

    def test_indefinite_length(self):
        content = ber._tlv(self.PDUS[0], 0, len(self.PDUS[0]))
        body = self.PDUS[0][content[1] : content[2]]
        with pytest.raises(BERError, match="indefinite"):
            decode_message(b"\x30\x80" + body + b"\x00\x00")
        # inside: the bindRequest in indefinite form
        op = encode_seq(0x60, encode_int(2, 3), encode_octets(4, ""), encode_octets(0x80, b""))
        inner = encode_int(2, 1) + b"\x60\x80" + op[2:] + b"\x00\x00"
        with pytest.raises(BERError, match="indefinite"):
            decode_message(encode_tlv(0x30, inner))

    def test_too_many_length_octets(self):
        body = encode_int(2, 1) + encode_tlv(0x42, b"")
        with pytest.raises(BERError, match="too long"):
            decode_message(b"\x30\x85\x00\x00\x00\x00" + bytes((len(body),)) + body)

    def test_non_minimal_lengths_are_accepted(self):  # BER, not DER
        body = encode_int(2, 1) + encode_tlv(0x42, b"")
        assert decode_message(b"\x30\x84\x00\x00\x00" + bytes((len(body),)) + body).op == 2

    @pytest.mark.parametrize("msgid", [-1, 2**31, 2**40])
    def test_msgid_out_of_range(self, msgid):
        with pytest.raises(BERError, match="messageID"):
            decode_message(message(encode_tlv(0x42, b""), msgid))

    def test_msgid_wrong_tag_and_sizes(self):
        with pytest.raises(BERError, match="messageID"):
            decode_message(encode_seq(0x30, encode_octets(4, b"\x01"), encode_tlv(0x42, b"")))
        with pytest.raises(BERError, match="empty INTEGER"):
            decode_message(encode_seq(0x30, b"\x02\x00", encode_tlv(0x42, b"")))
        with pytest.raises(BERError, match="too large"):
            decode_message(encode_seq(0x30, encode_tlv(2, b"\x00" * 9 + b"\x01"), encode_tlv(0x42, b"")))
        # a padded but in-range msgid is fine
        assert decode_message(encode_seq(0x30, encode_tlv(2, b"\x00\x00\x01"), encode_tlv(0x42, b""))).msgid == 1

    @pytest.mark.parametrize("pdu", PDUS)
    def test_random_corruption_only_raises_ber_error(self, pdu):
        import random

        rng = random.Random(4511)
        for _ in range(3000):
            data = bytearray(pdu)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                msg = decode_message(bytes(data))
            except BERError:
                continue
            assert msg.raw == bytes(data)

    def test_accepts_bytearray_and_memoryview(self):
        pdu = self.PDUS[1]
        assert decode_message(bytearray(pdu)) == decode_message(pdu)
        assert decode_message(memoryview(pdu)).raw == pdu


# --------------------------------------------------------------------------
# Framing


class TestNextPduLength:
    @pytest.mark.parametrize("size", [0, 100, 200, 1000, 70000])
    def test_partial_buffers_byte_by_byte(self, size):
        pdu = M(pureldap.LDAPBindRequest(dn="cn=x", auth=b"p" * size), id=1).toWire()
        prefix = b"\x30\x03\x02\x01\x01"  # unrelated previous data, skipped through offset
        step = 1 if len(pdu) < 5000 else 997
        for k in list(range(0, len(pdu), step)) + [len(pdu) - 1]:
            assert next_pdu_length(prefix + pdu[:k], len(prefix), 1 << 20) is None
        assert next_pdu_length(prefix + pdu, len(prefix), 1 << 20) == len(pdu)
        buf = bytearray(pdu + pdu[:3])
        assert next_pdu_length(buf, 0, 1 << 20) == len(pdu)
        assert next_pdu_length(buf, len(pdu), 1 << 20) is None

    def test_wrong_tag_detected_on_first_octet(self):
        with pytest.raises(BERError, match="SEQUENCE"):
            next_pdu_length(b"\x31", 0, 100)

    def test_indefinite_length(self):
        with pytest.raises(BERError, match="indefinite"):
            next_pdu_length(b"\x30\x80", 0, 100)

    def test_too_many_length_octets(self):
        with pytest.raises(BERError, match="too long"):
            next_pdu_length(b"\x30\x85", 0, 100)

    def test_too_large_reported_before_the_content_arrives(self):
        with pytest.raises(BERError, match="PDU too large"):
            next_pdu_length(b"\x30\x84\x7f\xff\xff\xff", 0, 1 << 20)
        with pytest.raises(BERError, match="PDU too large"):
            next_pdu_length(b"\x30\x7f", 0, 100)  # 129 > 100
        assert next_pdu_length(b"\x30\x62", 0, 100) is None  # exactly 100: allowed, incomplete
        assert next_pdu_length(b"\x30\x62" + bytes(98), 0, 100) == 100

    def test_long_form_waits_for_length_octets(self):
        assert next_pdu_length(b"\x30\x82\x01", 0, 1000) is None
        assert next_pdu_length(b"\x30\x82\x01\x00" + bytes(256), 0, 1000) == 260


# --------------------------------------------------------------------------
# Encoders


class TestEncoders:
    RESULT_CLASSES = {
        1: pureldap.LDAPBindResponse,
        5: pureldap.LDAPSearchResultDone,
        7: pureldap.LDAPModifyResponse,
        9: pureldap.LDAPAddResponse,
        11: pureldap.LDAPDelResponse,
        13: pureldap.LDAPModifyDNResponse,
        15: pureldap.LDAPCompareResponse,
        24: pureldap.LDAPExtendedResponse,
    }

    @pytest.mark.parametrize("op", sorted(RESULT_CLASSES))
    @pytest.mark.parametrize(
        "code,matched,text",
        [(0, "", ""), (32, "dc=example,dc=org", "no such object: ou=Ünits,dc=example,dc=org"), (80, "", "x" * 300)],
    )
    def test_results_decode_with_ldaptor(self, op, code, matched, text):
        wire = encode_result(42, op, code, matched, text)
        msg = ldaptor_decode(wire)
        assert msg.id == 42 and msg.controls is None
        assert type(msg.value) is self.RESULT_CLASSES[op]
        assert msg.value.resultCode == code
        assert msg.value.matchedDN == matched.encode()
        assert msg.value.errorMessage == text.encode()
        cls = self.RESULT_CLASSES[op]
        assert wire == M(cls(resultCode=code, matchedDN=matched, errorMessage=text), id=42).toWire()

    def test_result_with_controls(self):
        wire = encode_result(3, 5, 0, controls=[Control("1.2.840.113556.1.4.319", False, b"0\x05\x02\x01\x00\x04\x00")])
        msg = ldaptor_decode(wire)
        assert msg.controls == [(b"1.2.840.113556.1.4.319", None, b"0\x05\x02\x01\x00\x04\x00")]
        decoded = asn1_decode(wire)
        assert str(decoded["controls"][0]["controlType"]) == "1.2.840.113556.1.4.319"

    def test_bind_response_with_server_sasl_creds(self):
        wire = encode_result(1, 1, 14, extra=encode_octets(0x87, b"challenge"))
        msg = ldaptor_decode(wire)
        assert isinstance(msg.value, pureldap.LDAPBindResponse)
        assert (msg.value.resultCode, msg.value.serverSaslCreds) == (14, b"challenge")

    def test_result_rejects_non_result_ops(self):
        with pytest.raises(ValueError):
            encode_result(1, 4, 0)
        with pytest.raises(ValueError):
            encode_result(-1, 5, 0)

    def test_extended_response(self):
        wire = encode_extended_response(9, 0, name="1.3.6.1.4.1.4203.1.11.1", value=b"0\x04\x80\x02pw")
        msg = ldaptor_decode(wire)
        assert isinstance(msg.value, pureldap.LDAPExtendedResponse)
        assert msg.value.responseName == b"1.3.6.1.4.1.4203.1.11.1"
        assert msg.value.response == b"0\x04\x80\x02pw"
        assert wire == M(
            pureldap.LDAPExtendedResponse(resultCode=0, responseName="1.3.6.1.4.1.4203.1.11.1", response=b"0\x04\x80\x02pw"),
            id=9,
        ).toWire()
        only_value = ldaptor_decode(encode_extended_response(9, 2, message="bad", value=b"v"))
        assert (only_value.value.responseName, only_value.value.response) == (None, b"v")
        plain = ldaptor_decode(encode_extended_response(9, 53))
        assert (plain.value.resultCode, plain.value.responseName, plain.value.response) == (53, None, None)

    def test_notice_of_disconnection(self):
        wire = encode_notice_of_disconnection(2, "protocol error")
        msg = ldaptor_decode(wire)
        assert msg.id == 0
        assert msg.value.resultCode == 2 and msg.value.errorMessage == b"protocol error"
        assert msg.value.responseName == b"1.3.6.1.4.1.1466.20036"

    def test_intermediate_response(self):
        decoded = asn1_decode(encode_intermediate(5, "1.3.6.1.4.1.4203.1.9.1.4", b"\x01"))
        assert int(decoded["messageID"]) == 5
        ir = decoded["protocolOp"]["intermediateResponse"]
        assert str(ir["responseName"]) == "1.3.6.1.4.1.4203.1.9.1.4"
        assert bytes(ir["responseValue"]) == b"\x01"
        empty = asn1_decode(encode_intermediate(6))["protocolOp"]["intermediateResponse"]
        assert not empty["responseName"].hasValue() and not empty["responseValue"].hasValue()

    ENTRY = [
        ("objectClass", [b"top", b"person", b"organizationalPerson", b"inetOrgPerson"]),
        ("uid", [b"jsmith"]),
        ("cn", [b"John Smith", "Jöhn Smith".encode()]),
        ("jpegPhoto", [bytes(range(256)) * 300]),  # > 65535 octets
        ("description", [b"d" * 130, b"e" * 300]),  # > 127 and > 255 octets
        ("member", [f"uid=u{i},dc=x".encode() for i in range(50)]),  # SET > 127 octets
        ("x-" + "a" * 140, [b"v"]),  # long attribute name
        ("memberOf", []),
    ]

    def test_search_entry_matches_ldaptor(self):
        dn = "uid=jsmith,ou=Größe,dc=example,dc=org"
        wire = encode_search_entry(12, dn, self.ENTRY)
        assert wire == M(pureldap.LDAPSearchResultEntry(dn, self.ENTRY), id=12).toWire()
        msg = ldaptor_decode(wire)
        assert isinstance(msg.value, pureldap.LDAPSearchResultEntry)
        assert msg.value.objectName == dn.encode()
        assert [(a.decode(), vs) for a, vs in msg.value.attributes] == self.ENTRY

    def test_search_entry_with_pyasn1(self):
        wire = encode_search_entry(2**31 - 1, "cn=x", self.ENTRY, controls=[Control("1.2.3", True, None)])
        decoded = asn1_decode(wire)
        assert int(decoded["messageID"]) == 2**31 - 1
        entry = decoded["protocolOp"]["searchResEntry"]
        assert str(entry["object"]) == "cn=x"
        got = [(str(a["type"]), [bytes(v) for v in a["vals"]]) for a in entry["attributes"]]
        assert got == self.ENTRY
        assert bool(decoded["controls"][0]["criticality"]) is True

    def test_search_entry_types_only_and_empty(self):
        wire = encode_search_entry(3, "", [("cn", []), ("mail", [])])
        assert ldaptor_decode(wire).value.attributes == [(b"cn", []), (b"mail", [])]
        assert ldaptor_decode(encode_search_entry(3, "", [])).value.attributes == []

    def test_search_entry_str_values_are_utf8_encoded(self):
        wire = encode_search_entry(3, "cn=x", [("cn", ["Jürgen", b"raw"]), ("sn", ("Müller",))])
        assert wire == encode_search_entry(3, "cn=x", [("cn", ["Jürgen".encode(), b"raw"]), ("sn", ["Müller".encode()])])

    def test_search_entry_with_controls_matches_ldaptor(self):
        wire = encode_search_entry(4, "cn=x", [("cn", [b"x"])], controls=[Control("1.2.3", True, b"v")])
        assert wire == M(pureldap.LDAPSearchResultEntry("cn=x", [("cn", [b"x"])]), id=4, controls=[("1.2.3", True, b"v")]).toWire()

    @pytest.mark.parametrize("n", [0, 1, 127, 128, 255, 256, 32767, 32768, 65535, 65536, 2**31 - 1, -1, -128, -129, -32768])
    def test_encode_int_matches_ldaptor(self, n):
        assert encode_int(2, n) == pureber.BERInteger(n).toWire()
        assert encode_int(0x0A, n) == pureber.BEREnumerated(n).toWire()
        assert Reader(encode_int(2, n)).read_int() == n

    @pytest.mark.parametrize("size", [0, 1, 127, 128, 255, 256, 65535, 65536, 70000])
    def test_encode_octets_and_tlv_lengths(self, size):
        data = b"z" * size
        assert encode_octets(4, data) == pureber.BEROctetString(data).toWire()
        assert encode_tlv(0x80, data) == pureber.BEROctetString(data, tag=0x80).toWire()
        assert Reader(encode_octets(4, data)).read_octets() == data

    def test_encode_bool_and_seq(self):
        assert encode_bool(1, True) == pureber.BERBoolean(True).toWire() == b"\x01\x01\xff"
        assert encode_bool(1, False) == pureber.BERBoolean(False).toWire()
        assert encode_seq(0x30, encode_int(2, 5), encode_octets(4, "c")) == pureber.BERSequence(
            [pureber.BERInteger(5), pureber.BEROctetString("c")]
        ).toWire()
        assert encode_octets(4, "é") == b"\x04\x02\xc3\xa9"


# --------------------------------------------------------------------------
# Reader


class TestReader:
    def test_paged_results_value_from_ldap3(self):
        value = paged_search_control(True, 500, b"\x00cookie")["controlValue"].asOctets()
        r = Reader(value).enter()
        assert (r.read_int(), r.read_octets()) == (500, b"\x00cookie")
        assert r.at_end()
        r.expect_end()

    def test_paged_results_value_we_encode(self):
        value = encode_seq(0x30, encode_int(2, 0), encode_octets(4, b""))
        decoded = asn1_decoder.decode(value, asn1Spec=RealSearchControlValue())[0]
        assert int(decoded["size"]) == 0 and bytes(decoded["cookie"]) == b""

    def test_password_modify_request_value(self):
        req = pureldap.LDAPPasswordModifyRequest(userIdentity="uid=a,dc=x", newPasswd="n3w")
        msg = decode_message(M(req, id=3).toWire())
        assert msg.op == 23
        r = Reader(msg.raw)
        r = r.enter()  # LDAPMessage
        assert r.read_int() == 3
        ext = r.enter(0x77)
        assert ext.read_str(0x80) == "1.3.6.1.4.1.4203.1.11.1"
        body = Reader(ext.read_octets(0x81)).enter()
        fields = {}
        while not body.at_end():
            tag = body.peek_tag()
            fields[tag] = body.read_octets(tag)
        assert fields == {0x80: b"uid=a,dc=x", 0x82: b"n3w"}
        assert body.peek_tag() is None

    def test_sort_control_value(self):
        # SortKeyList ::= SEQUENCE OF SEQUENCE { attributeType, orderingRule [0] OPTIONAL, reverseOrder [1] BOOLEAN DEFAULT FALSE }
        value = encode_seq(
            0x30,
            encode_seq(0x30, encode_octets(4, "sn")),
            encode_seq(0x30, encode_octets(4, "cn"), encode_octets(0x80, "caseExactOrderingMatch"), encode_bool(0x81, True)),
        )
        keys = []
        outer = Reader(value).enter()
        while not outer.at_end():
            k = outer.enter()
            attr = k.read_str()
            rule = k.read_str(0x80) if k.peek_tag() == 0x80 else None
            reverse = k.read_bool(0x81) if k.peek_tag() == 0x81 else False
            k.expect_end()
            keys.append((attr, rule, reverse))
        assert keys == [("sn", None, False), ("cn", "caseExactOrderingMatch", True)]

    def test_assertion_control_value_and_read_tlv(self):
        r = Reader(encode_filter(("and", [("eq", "cn", b"x"), ("present", "mail")])) + encode_bool(1, True))
        assert r.read_filter() == ("and", [("eq", "cn", b"x"), ("present", "mail")])
        assert r.read_tlv() == (1, b"\xff")
        assert decode_filter(encode_filter(("present", "mail"))) == ("present", "mail")

    def test_errors(self):
        with pytest.raises(BERError, match="expected"):
            Reader(encode_octets(4, b"x")).read_int()
        with pytest.raises(BERError, match="truncated"):
            Reader(b"\x02\x02\x01").read_int()
        with pytest.raises(BERError, match="truncated"):
            Reader(b"").read_octets()
        with pytest.raises(BERError, match="BOOLEAN"):
            Reader(b"\x01\x02\x00\x00").read_bool()
        with pytest.raises(BERError, match="trailing"):
            r = Reader(encode_int(2, 1) + b"\x05\x00")
            r.read_int()
            r.expect_end()
        with pytest.raises(BERError, match="UTF-8"):
            Reader(b"\x04\x01\xff").read_str()
        with pytest.raises(BERError, match="truncated"):
            Reader(b"\xa3\x03\x04\x01a").read_filter()
        with pytest.raises(BERError, match="trailing"):
            decode_filter(encode_filter(("present", "a")) + b"\x00")
        with pytest.raises(BERError):
            decode_filter(b"\x87")


if __name__ == "__main__":  # the microbenchmark lives in scripts/bench_ber.py
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "bench_ber.py"), run_name="__main__")
