"""Request/response controls we implement: value codecs for paged results (RFC 2696),
server-side sorting (RFC 2891), assertion (RFC 4528), pre-/post-read (RFC 4527) and
ManageDsaIT (RFC 3296, accepted: we hold no referrals, so it changes nothing)."""
from ..core.errors import LDAPError, ResultCode
from . import ber

PAGED_RESULTS = "1.2.840.113556.1.4.319"
ASSERTION = "1.3.6.1.1.12"
PRE_READ = "1.3.6.1.1.13.1"
POST_READ = "1.3.6.1.1.13.2"
MANAGE_DSA_IT = "2.16.840.1.113730.3.4.2"
PPOLICY = "1.3.6.1.4.1.42.2.27.8.5.1"  # draft-behera password policy
SORT_REQUEST = "1.2.840.113556.1.4.473"
SORT_RESPONSE = "1.2.840.113556.1.4.474"

SUPPORTED_CONTROLS = [PAGED_RESULTS, SORT_REQUEST, ASSERTION, PRE_READ, POST_READ, MANAGE_DSA_IT, PPOLICY]


def decode_sort(value: bytes | None) -> list:
    """SortKeyList ::= SEQUENCE OF SEQUENCE { attributeType AttributeDescription,
    orderingRule [0] MatchingRuleId OPTIONAL, reverseOrder [1] BOOLEAN DEFAULT FALSE }
    -> [(attribute, rule or None, reverse)]"""
    try:
        r = ber.Reader(value or b"")
        tag, content = r.read_tlv()
        if tag != 0x30 or not r.at_end():
            raise ber.BERError("expected one SEQUENCE")
        keys, outer = [], ber.Reader(content)
        while not outer.at_end():
            tag, item = outer.read_tlv()
            if tag != 0x30:
                raise ber.BERError("expected a SEQUENCE per sort key")
            k = ber.Reader(item)
            attr = k.read_octets(0x04).decode("utf-8")
            rule, reverse = None, False
            while not k.at_end():
                tag, v = k.read_tlv()
                if tag == 0x80:
                    rule = bytes(v).decode("utf-8")
                elif tag == 0x81:
                    reverse = any(bytes(v))
                else:
                    raise ber.BERError(f"unexpected tag 0x{tag:02x} in a sort key")
            keys.append((attr, rule, reverse))
        return keys
    except (ber.BERError, UnicodeDecodeError) as exc:
        raise LDAPError(ResultCode.PROTOCOL_ERROR, f"sort control: {exc}") from None


def encode_sort_result(code: int, attr: str | None = None) -> ber.Control:
    """SortResult ::= SEQUENCE { sortResult ENUMERATED, attributeType [0] OPTIONAL }"""
    parts = [ber.encode_int(0x0A, code)]
    if attr:
        parts.append(ber.encode_octets(0x80, attr.encode("utf-8")))
    return ber.Control(SORT_RESPONSE, False, ber.encode_seq(0x30, *parts))


def decode_paged(value: bytes | None) -> tuple[int, bytes]:
    """realSearchControlValue ::= SEQUENCE { size INTEGER, cookie OCTET STRING }"""
    try:
        r = ber.Reader(value or b"")
        tag, content = r.read_tlv()
        if tag != 0x30 or not r.at_end():
            raise ber.BERError("expected one SEQUENCE")
        inner = ber.Reader(content)
        size = inner.read_int(0x02)
        cookie = inner.read_octets(0x04)
        if not inner.at_end():
            raise ber.BERError("trailing data")
        return size, cookie
    except ber.BERError as exc:
        raise LDAPError(ResultCode.PROTOCOL_ERROR, f"paged results control: {exc}") from None


def encode_paged(size_estimate: int, cookie: bytes) -> ber.Control:
    value = ber.encode_seq(0x30, ber.encode_int(0x02, size_estimate), ber.encode_octets(0x04, cookie))
    return ber.Control(PAGED_RESULTS, False, value)


def decode_read_attrs(value: bytes | None) -> list:
    """AttributeSelection ::= SEQUENCE OF selector LDAPString"""
    try:
        r = ber.Reader(value or b"")
        tag, content = r.read_tlv()
        if tag != 0x30:
            raise ber.BERError("expected SEQUENCE")
        inner, out = ber.Reader(content), []
        while not inner.at_end():
            out.append(inner.read_octets(0x04).decode("utf-8"))
        return out
    except (ber.BERError, UnicodeDecodeError) as exc:
        raise LDAPError(ResultCode.PROTOCOL_ERROR, f"read entry control: {exc}") from None


def encode_read_entry(oid: str, dn: str, attrs) -> ber.Control:
    """The response value is a SearchResultEntry (the [APPLICATION 4] element only)."""
    full = ber.encode_search_entry(0, dn, attrs)
    # strip the LDAPMessage envelope: SEQUENCE { messageID 0, SearchResultEntry }
    r = ber.Reader(full)
    _, content = r.read_tlv()
    inner = ber.Reader(content)
    inner.read_int(0x02)
    start = inner.pos
    inner.read_tlv()
    return ber.Control(oid, False, bytes(content[start : inner.pos]))


def ppolicy_response(error: int | None = None) -> ber.Control:
    """PasswordPolicyResponseValue ::= SEQUENCE { warning [0] … OPTIONAL, error [1] ENUMERATED OPTIONAL };
    error 2 is changeAfterReset."""
    parts = [ber.encode_int(0x81, error)] if error is not None else []
    return ber.Control(PPOLICY, False, ber.encode_seq(0x30, *parts))
