"""Fast BER codec for LDAP requests and the hot responses (RFC 4511).

ldaptor's pure-Python BER codec builds an object per element and slices the
buffer at every level (its cost grows faster than linearly with a PDU's element
count: a 4 MB modify took it seconds, on the reactor); this module decodes every
request the server accepts (bind, search, unbind, abandon, add, modify, modDN,
compare, delete, extended) straight from one ``bytes`` object with integer
offsets, in one linear pass, and encodes the responses it sends all day (search
entries, LDAPResult-shaped responses, extended responses) with precomputed
lengths and a single join.

Add and modify requests are also bounded by :class:`RequestLimits` (attributes,
values per attribute, values in all, changes): decoding stops at the first element
over a cap and raises :class:`RequestLimitExceeded` (the server answers
adminLimitExceeded and keeps the connection), so the work spent on an oversized
request is bounded by the caps, not by the PDU.

Decoding rules (what counts as malformed, raising :class:`BERError`):

* only single-octet tags; definite lengths with at most 4 length octets
  (the indefinite form is forbidden by RFC 4511 section 5.1);
* every constructed element must be consumed exactly - trailing bytes inside a
  SEQUENCE, or after the LDAPMessage, are errors;
* BOOLEANs have exactly one content octet (any non-zero octet is TRUE);
* INTEGERs have 1..8 content octets; messageID, sizeLimit, timeLimit and the
  abandoned ID must be in 0..2^31-1;
* strings (DNs, attribute descriptions, OIDs, SASL mechanism) must be UTF-8;
  assertion values, passwords and control values stay ``bytes``;
* add/modify/modDN/compare/delete/extended follow RFC 4511 4.6-4.12 element by
  element: an AttributeList/PartialAttribute needs its ``vals`` SET, a change its
  ENUMERATED operation, a modDN its BOOLEAN deleteoldrdn and an optional
  newSuperior [0], an extended request its requestName [0] and an optional
  requestValue [1]; nothing else may appear (the operation's value, e.g. an
  unknown modify operation, is the core's to judge);
* the protocolOp must be a request (responses and unknown tags are errors);
  a bind's authentication must be simple [0] or sasl [3];
* filters may nest at most :data:`MAX_FILTER_DEPTH` levels (the outermost
  filter is level 1), substrings must have initial first / final last.
  Empty and/or sets are accepted (RFC 4526 absolute true/false).

Filter AST (tuples, the core's: directory/core/filterparse.py, which also holds the
RFC 4515 string form; ``filter_to_string`` and ``parse_filter_string`` are re-exported
here)::

    ('and', [f, ...])  ('or', [f, ...])  ('not', f)
    ('eq', attr, value) ('ge', attr, value) ('le', attr, value) ('approx', attr, value)
    ('present', attr)
    ('sub', attr, initial_or_None, [any, ...], final_or_None)
    ('ext', matching_rule_or_None, attr_or_None, value, dn_attributes_bool)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.filterparse import MAX_FILTER_DEPTH, filter_to_string, parse_filter_string

__all__ = [
    "FilterLimitExceeded",
    "FilterLimits",
    "BERError",
    "MAX_FILTER_DEPTH",
    "MAX_INT",
    "NOTICE_OF_DISCONNECTION_OID",
    "Control",
    "BindRequest",
    "SearchRequest",
    "Message",
    "RequestLimits",
    "RequestLimitExceeded",
    "next_pdu_length",
    "decode_message",
    "decode_filter",
    "encode_filter",
    "filter_to_string",
    "parse_filter_string",
    "encode_result",
    "encode_extended_response",
    "encode_search_entry",
    "encode_intermediate",
    "encode_notice_of_disconnection",
    "encode_controls",
    "encode_tlv",
    "encode_int",
    "encode_octets",
    "encode_bool",
    "encode_seq",
    "Reader",
]

MAX_INT = 2**31 - 1  # RFC 4511 maxInt
NOTICE_OF_DISCONNECTION_OID = "1.3.6.1.4.1.1466.20036"

# Universal tags.
T_BOOLEAN = 0x01
T_INTEGER = 0x02
T_OCTET_STRING = 0x04
T_ENUMERATED = 0x0A
T_SEQUENCE = 0x30
T_SET = 0x31

# protocolOp tag octets the server accepts -> APPLICATION tag number.
_REQUEST_OPS = {
    0x60: 0,  # bindRequest          [APPLICATION 0]  SEQUENCE
    0x42: 2,  # unbindRequest        [APPLICATION 2]  NULL
    0x63: 3,  # searchRequest        [APPLICATION 3]  SEQUENCE
    0x66: 6,  # modifyRequest        [APPLICATION 6]  SEQUENCE
    0x68: 8,  # addRequest           [APPLICATION 8]  SEQUENCE
    0x4A: 10,  # delRequest          [APPLICATION 10] LDAPDN (primitive)
    0x6C: 12,  # modDNRequest        [APPLICATION 12] SEQUENCE
    0x6E: 14,  # compareRequest      [APPLICATION 14] SEQUENCE
    0x50: 16,  # abandonRequest      [APPLICATION 16] MessageID (primitive)
    0x77: 23,  # extendedReq         [APPLICATION 23] SEQUENCE
}

# LDAPResult-shaped responses: APPLICATION tag numbers.
_RESULT_OPS = frozenset((1, 5, 7, 9, 11, 13, 15, 24))
_BARE_RESULT: dict = {}  # (op, code) -> the encoded protocolOp of a result with no text

_AVA_FILTERS = {0xA3: "eq", 0xA5: "ge", 0xA6: "le", 0xA8: "approx"}
_AVA_TAGS = {v: k for k, v in _AVA_FILTERS.items()}


class BERError(Exception):
    """Malformed BER/LDAP input; the server answers protocolError and closes."""


class FilterLimitExceeded(Exception):
    """A well-formed filter larger than the caller may send (limits.filter_max_terms /
    filter_max_depth): the request is refused (adminLimitExceeded), the connection stays.
    Raised while decoding, as soon as the limit is passed; ``msgid`` is set by
    :func:`decode_message`."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.msgid = None


class FilterLimits:
    """What a filter may hold: ``max_terms`` elements (every and/or/not, every
    term, every substring piece) nested at most ``max_depth`` levels. One instance
    per decoded filter (it counts down)."""

    __slots__ = ("terms_left", "max_terms", "max_depth")

    def __init__(self, max_terms: int, max_depth: int):
        self.terms_left = self.max_terms = max_terms
        self.max_depth = max_depth

    def spend(self, n: int, depth: int):
        self.terms_left -= n
        if self.terms_left < 0:
            raise FilterLimitExceeded(f"filter has more than {self.max_terms} elements; "
                                      "split the search or narrow the filter")
        if depth > self.max_depth:
            raise FilterLimitExceeded(f"filter nested deeper than {self.max_depth} levels")


class RequestLimitExceeded(Exception):
    """A well-framed request over one of the :class:`RequestLimits` caps.

    Not a protocol error: the server answers this request (``msgid``, ``op``) with
    adminLimitExceeded and keeps the connection."""

    def __init__(self, message: str, msgid: int = 0, op: int = 0):
        super().__init__(message)
        self.msgid = msgid
        self.op = op


@dataclass(slots=True, frozen=True)
class RequestLimits:
    """Caps on one add/modify request (config.yaml ``limits.request_*``)."""

    attributes: int            # attributes in an add
    values_per_attribute: int  # values of one attribute (add) or one change (modify)
    values: int                # values in the whole request
    changes: int               # changes in a modify


# --------------------------------------------------------------------------
# Data classes


@dataclass(slots=True)
class Control:
    oid: str
    critical: bool = False
    value: bytes | None = None


@dataclass(slots=True)
class BindRequest:
    version: int
    name: str
    method: str  # 'simple' | 'sasl'
    password: bytes = field(repr=False)  # b'' for SASL binds; kept out of repr/logs
    sasl_mechanism: str | None
    sasl_credentials: bytes | None = field(repr=False)


@dataclass(slots=True)
class SearchRequest:
    base: str
    scope: int
    deref: int
    size_limit: int
    time_limit: int
    types_only: bool
    filter: tuple
    attributes: list[str]


@dataclass(slots=True)
class Message:
    msgid: int
    op: int  # APPLICATION tag number of the protocolOp
    # BindRequest | SearchRequest | int (abandon) | None (unbind) | a tuple of fields:
    #   add (dn, [(attr, [value, ...]), ...])   modify (dn, [(mod_op, attr, [value, ...]), ...])
    #   modDN (dn, newrdn, deleteoldrdn, newSuperior or None)   compare (dn, attr, value)
    #   delete (dn,)   extended (requestName, requestValue or None)
    # (str for DNs, attribute descriptions and OIDs; bytes for values)
    request: object
    controls: list[Control]
    raw: bytes = field(repr=False)  # the whole PDU (may hold a bind password)


# --------------------------------------------------------------------------
# Framing


def next_pdu_length(buf: bytes | bytearray, offset: int, max_pdu: int) -> int | None:
    """Total length of the LDAPMessage starting at ``buf[offset]``.

    Returns ``None`` until the *whole* PDU is in ``buf`` (so a returned length
    can be sliced right away).  The tag, length form and ``max_pdu`` are checked
    as soon as the octets that carry them have arrived.
    """
    avail = len(buf) - offset
    if avail < 1:
        return None
    if buf[offset] != T_SEQUENCE:
        raise BERError(f"LDAPMessage must start with a SEQUENCE tag, got 0x{buf[offset]:02x}")
    if avail < 2:
        return None
    n = buf[offset + 1]
    if n < 0x80:
        total = 2 + n
    else:
        k = n & 0x7F
        if k == 0:
            raise BERError("indefinite length form is not allowed")
        if k > 4:
            raise BERError(f"length field of {k} octets is too long")
        if avail < 2 + k:
            return None
        total = 2 + k + int.from_bytes(buf[offset + 2 : offset + 2 + k], "big")
    if total > max_pdu:
        raise BERError(f"PDU too large ({total} octets, limit {max_pdu})")
    return total if total <= avail else None


# --------------------------------------------------------------------------
# Decoding primitives.  ``buf`` is always ``bytes``, ``i`` an offset and
# ``end`` the end of the enclosing element, which nothing may cross.
#
# The helpers have an inline fast path for the short (one-octet) length form,
# which covers nearly every element of a request; the slow path handles long
# lengths and produces the error messages.  Every read is bounds-checked against
# ``end``; the public entry points still map a stray IndexError to BERError.


def _tlv(buf: bytes, i: int, end: int) -> tuple[int, int, int]:
    """(tag, content_start, content_end) of the element at buf[i]."""
    if i + 2 > end:
        raise BERError("truncated element")
    tag = buf[i]
    if tag & 0x1F == 0x1F:
        raise BERError("multi-octet tags are not used by LDAP")
    n = buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise BERError("indefinite length form is not allowed")
        if k > 4:
            raise BERError(f"length field of {k} octets is too long")
        if i + k > end:
            raise BERError("truncated length")
        n = int.from_bytes(buf[i : i + k], "big")
        i += k
    e = i + n
    if e > end:
        raise BERError("truncated element")
    return tag, i, e


def _expect(buf: bytes, i: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """(content_start, content_end) of the element at buf[i], which must carry ``tag``."""
    if i + 2 <= end and buf[i] == tag:
        n = buf[i + 1]
        if n < 0x80:
            e = i + 2 + n
            if e <= end:
                return i + 2, e
    if i >= end:
        raise BERError(f"truncated: {what} missing")
    t, s, e = _tlv(buf, i, end)
    if t != tag:
        raise BERError(f"{what}: expected tag 0x{tag:02x}, got 0x{t:02x}")
    return s, e


def _int(buf: bytes, s: int, e: int) -> int:
    n = e - s
    if n == 1:
        v = buf[s]
        return v - 256 if v & 0x80 else v
    if n == 0:
        raise BERError("empty INTEGER")
    if n > 8:
        raise BERError("INTEGER too large")
    return int.from_bytes(buf[s:e], "big", signed=True)


def _read_int(buf: bytes, i: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """(value, offset after) of the INTEGER/ENUMERATED at buf[i]."""
    if i + 3 <= end and buf[i] == tag and buf[i + 1] == 1:  # one content octet
        v = buf[i + 2]
        return (v - 256 if v & 0x80 else v), i + 3
    s, e = _expect(buf, i, end, tag, what)
    return _int(buf, s, e), e


def _read_uint(buf: bytes, i: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """Like _read_int, for values constrained to 0..maxInt."""
    if i + 3 <= end and buf[i] == tag and buf[i + 1] == 1 and buf[i + 2] < 0x80:
        return buf[i + 2], i + 3
    s, e = _expect(buf, i, end, tag, what)
    v = _int(buf, s, e)
    if v < 0 or v > MAX_INT:
        raise BERError(f"{what} {v} out of range 0..{MAX_INT}")
    return v, e


def _read_bool(buf: bytes, i: int, end: int, tag: int, what: str) -> tuple[bool, int]:
    """(value, offset after) of the BOOLEAN at buf[i]."""
    if i + 3 <= end and buf[i] == tag and buf[i + 1] == 1:
        return buf[i + 2] != 0, i + 3
    s, e = _expect(buf, i, end, tag, what)
    return _bool(buf, s, e), e


def _bool(buf: bytes, s: int, e: int) -> bool:
    if e - s != 1:
        raise BERError(f"BOOLEAN must have exactly one content octet, got {e - s}")
    return buf[s] != 0


def _trailing(i: int, end: int, what: str):
    raise BERError(f"{end - i} unexpected trailing octet(s) in {what}")


# --------------------------------------------------------------------------
# Message decoding


def decode_message(pdu: bytes, limits: RequestLimits | None = None,
                   filter_limits: FilterLimits | None = None) -> Message:
    """Decode one complete LDAPMessage (as delimited by :func:`next_pdu_length`).

    ``limits`` caps add and modify requests (None: no caps, e.g. for the root DN);
    a request over a cap raises :class:`RequestLimitExceeded` carrying its
    messageID and operation. With ``filter_limits``, a search filter beyond them
    raises FilterLimitExceeded."""
    if type(pdu) is not bytes:
        pdu = bytes(pdu)
    try:
        return _decode_message(pdu, limits, filter_limits)
    except UnicodeDecodeError as exc:
        raise BERError(f"invalid UTF-8 in a string field: {exc.reason}") from None
    except IndexError:
        raise BERError("truncated element") from None


def _decode_message(pdu: bytes, limits: RequestLimits | None, filter_limits: FilterLimits | None = None) -> Message:
    end = len(pdu)
    s, e = _expect(pdu, 0, end, T_SEQUENCE, "LDAPMessage")
    if e != end:
        _trailing(e, end, "the PDU, after the LDAPMessage")
    msgid, i = _read_uint(pdu, s, end, T_INTEGER, "messageID")

    tag, s, i = _tlv(pdu, i, end)
    op = _REQUEST_OPS.get(tag)
    if op is None:
        raise BERError(f"unknown protocolOp tag 0x{tag:02x}")
    if op == 3:
        try:
            request = _decode_search(pdu, s, i, filter_limits)
        except FilterLimitExceeded as exc:
            exc.msgid = msgid
            raise
    elif op == 0:
        request = _decode_bind(pdu, s, i)
    elif op == 16:
        request = _int(pdu, s, i)
        if request < 0 or request > MAX_INT:
            raise BERError(f"abandoned messageID {request} out of range")
    elif op == 2:
        if s != i:
            raise BERError("unbindRequest must be empty")
        request = None
    else:
        try:
            request = _OTHER_DECODERS[op](pdu, s, i, limits)
        except RequestLimitExceeded as exc:
            exc.msgid, exc.op = msgid, op
            raise

    if i == end:
        return Message(msgid, op, request, [], pdu)
    s, e = _expect(pdu, i, end, 0xA0, "controls")
    if e != end:
        _trailing(e, end, "LDAPMessage")
    return Message(msgid, op, request, _decode_controls(pdu, s, e), pdu)


def _decode_bind(buf: bytes, i: int, end: int) -> BindRequest:
    version, i = _read_int(buf, i, end, T_INTEGER, "bind version")
    s, i = _expect(buf, i, end, T_OCTET_STRING, "bind name")
    name = buf[s:i].decode()
    tag, s, e = _tlv(buf, i, end)
    if e != end:
        _trailing(e, end, "bindRequest")
    if tag == 0x80:  # simple [0] OCTET STRING
        return BindRequest(version, name, "simple", buf[s:e], None, None)
    if tag == 0xA3:  # sasl [3] SaslCredentials
        ms, me = _expect(buf, s, e, T_OCTET_STRING, "SASL mechanism")
        creds = None
        if me < e:
            cs, ce = _expect(buf, me, e, T_OCTET_STRING, "SASL credentials")
            if ce != e:
                _trailing(ce, e, "SaslCredentials")
            creds = buf[cs:ce]
        return BindRequest(version, name, "sasl", b"", buf[ms:me].decode(), creds)
    raise BERError(f"unsupported bind authentication choice tag 0x{tag:02x}")


# Add, modify, modDN, compare, delete, extended (RFC 4511 4.6-4.12).  Each returns
# the tuple of fields the server hands to the core (see Message.request).

_NO_CAP = 1 << 62


def _dn(buf: bytes, i: int, end: int, what: str) -> tuple[str, int]:
    s, e = _expect(buf, i, end, T_OCTET_STRING, what)
    return buf[s:e].decode(), e


def _value_set(buf: bytes, i: int, end: int, cap: int) -> tuple[list[bytes] | None, int]:
    """The ``vals`` SET OF AttributeValue at buf[i]; at most ``cap`` values (more: None
    is returned in place of the list, and the caller says which cap it was)."""
    s, e = _expect(buf, i, end, T_SET, "attribute values")
    values = []
    append = values.append
    while s < e:
        if len(values) >= cap:
            return None, e
        if buf[s] == T_OCTET_STRING and s + 2 <= e and buf[s + 1] < 0x80:  # short form, inlined
            v = s + 2 + buf[s + 1]
            if v > e:
                raise BERError("truncated attribute value")
            append(buf[s + 2 : v])
            s = v
        else:
            v_s, s = _expect(buf, s, e, T_OCTET_STRING, "attribute value")
            append(buf[v_s:s])
    return values, e


class _Budget:
    """Counts the values of one request against its caps."""

    __slots__ = ("per_attribute", "left", "total", "what")

    def __init__(self, limits: RequestLimits | None, what: str):
        self.per_attribute = limits.values_per_attribute if limits is not None else _NO_CAP
        self.total = limits.values if limits is not None else _NO_CAP
        self.left = self.total
        self.what = what

    def values(self, buf: bytes, i: int, end: int, attr: str) -> tuple[list[bytes], int]:
        values, e = _value_set(buf, i, end, min(self.per_attribute, self.left))
        if values is None:
            if self.left < self.per_attribute:
                raise RequestLimitExceeded(f"{self.what}: more than {self.total} attribute values in one request "
                                           "(limits.request_values)")
            attr = attr if len(attr) <= 64 else attr[:61] + "..."  # echoed in the answer and the log
            raise RequestLimitExceeded(f"{self.what}: {attr}: more than {self.per_attribute} values in one "
                                       "request (limits.request_values_per_attribute)")
        self.left -= len(values)
        return values, e


def _decode_add(buf: bytes, i: int, end: int, limits: RequestLimits | None) -> tuple:
    """AddRequest ::= [APPLICATION 8] SEQUENCE { entry LDAPDN, attributes AttributeList }"""
    dn, i = _dn(buf, i, end, "add entry")
    s, e = _expect(buf, i, end, T_SEQUENCE, "add attribute list")
    if e != end:
        _trailing(e, end, "addRequest")
    max_attrs = limits.attributes if limits is not None else _NO_CAP
    budget = _Budget(limits, "add")
    attrs = []
    while s < e:
        if len(attrs) >= max_attrs:
            raise RequestLimitExceeded(f"add: more than {max_attrs} attributes in one request "
                                       "(limits.request_attributes)")
        a_s, a_e = _expect(buf, s, e, T_SEQUENCE, "add attribute")
        name, p = _dn(buf, a_s, a_e, "attribute description")
        values, p = budget.values(buf, p, a_e, name)
        if p != a_e:
            _trailing(p, a_e, "Attribute")
        attrs.append((name, values))
        s = a_e
    return dn, attrs


def _decode_modify(buf: bytes, i: int, end: int, limits: RequestLimits | None) -> tuple:
    """ModifyRequest ::= [APPLICATION 6] SEQUENCE { object LDAPDN, changes SEQUENCE OF
    change SEQUENCE { operation ENUMERATED, modification PartialAttribute } }"""
    dn, i = _dn(buf, i, end, "modify object")
    s, e = _expect(buf, i, end, T_SEQUENCE, "modify changes")
    if e != end:
        _trailing(e, end, "modifyRequest")
    max_changes = limits.changes if limits is not None else _NO_CAP
    budget = _Budget(limits, "modify")
    changes = []
    while s < e:
        if len(changes) >= max_changes:
            raise RequestLimitExceeded(f"modify: more than {max_changes} changes in one request "
                                       "(limits.request_changes)")
        c_s, c_e = _expect(buf, s, e, T_SEQUENCE, "modify change")
        mod_op, p = _read_int(buf, c_s, c_e, T_ENUMERATED, "modify operation")
        m_s, m_e = _expect(buf, p, c_e, T_SEQUENCE, "modification")
        if m_e != c_e:
            _trailing(m_e, c_e, "change")
        name, p = _dn(buf, m_s, m_e, "attribute description")
        values, p = budget.values(buf, p, m_e, name)
        if p != m_e:
            _trailing(p, m_e, "PartialAttribute")
        changes.append((mod_op, name, values))
        s = c_e
    return dn, changes


def _decode_moddn(buf: bytes, i: int, end: int, limits: RequestLimits | None) -> tuple:
    """ModifyDNRequest ::= [APPLICATION 12] SEQUENCE { entry LDAPDN, newrdn RelativeLDAPDN,
    deleteoldrdn BOOLEAN, newSuperior [0] LDAPDN OPTIONAL }"""
    dn, i = _dn(buf, i, end, "modDN entry")
    newrdn, i = _dn(buf, i, end, "newrdn")
    delete_old, i = _read_bool(buf, i, end, T_BOOLEAN, "deleteoldrdn")
    sup = None
    if i < end:
        s, i = _expect(buf, i, end, 0x80, "newSuperior")
        sup = buf[s:i].decode()
    if i != end:
        _trailing(i, end, "modDNRequest")
    return dn, newrdn, delete_old, sup


def _decode_compare(buf: bytes, i: int, end: int, limits: RequestLimits | None) -> tuple:
    """CompareRequest ::= [APPLICATION 14] SEQUENCE { entry LDAPDN, ava AttributeValueAssertion }"""
    dn, i = _dn(buf, i, end, "compare entry")
    s, e = _expect(buf, i, end, T_SEQUENCE, "compare assertion")
    if e != end:
        _trailing(e, end, "compareRequest")
    attr, p = _dn(buf, s, e, "compare attribute description")
    v_s, p = _expect(buf, p, e, T_OCTET_STRING, "compare assertion value")
    if p != e:
        _trailing(p, e, "AttributeValueAssertion")
    return dn, attr, buf[v_s:p]


def _decode_delete(buf: bytes, i: int, end: int, limits: RequestLimits | None) -> tuple:
    """DelRequest ::= [APPLICATION 10] LDAPDN"""
    return (buf[i:end].decode(),)


def _decode_extended(buf: bytes, i: int, end: int, limits: RequestLimits | None) -> tuple:
    """ExtendedRequest ::= [APPLICATION 23] SEQUENCE { requestName [0] LDAPOID,
    requestValue [1] OCTET STRING OPTIONAL }"""
    s, i = _expect(buf, i, end, 0x80, "extended requestName")
    name = buf[s:i].decode()
    value = None
    if i < end:
        s, i = _expect(buf, i, end, 0x81, "extended requestValue")
        value = buf[s:i]
    if i != end:
        _trailing(i, end, "extendedRequest")
    return name, value


_OTHER_DECODERS = {
    6: _decode_modify,
    8: _decode_add,
    10: _decode_delete,
    12: _decode_moddn,
    14: _decode_compare,
    23: _decode_extended,
}


def _decode_search(buf: bytes, i: int, end: int, limits: FilterLimits | None = None) -> SearchRequest:
    s, i = _expect(buf, i, end, T_OCTET_STRING, "search base")
    base = buf[s:i].decode()
    scope, i = _read_int(buf, i, end, T_ENUMERATED, "search scope")
    if scope < 0 or scope > 3:  # 3 = subordinateSubtree (draft-sermersheim-ldap-subordinate-scope)
        raise BERError(f"invalid search scope {scope}")
    deref, i = _read_int(buf, i, end, T_ENUMERATED, "derefAliases")
    if deref < 0 or deref > 3:
        raise BERError(f"invalid derefAliases {deref}")
    size_limit, i = _read_uint(buf, i, end, T_INTEGER, "sizeLimit")
    time_limit, i = _read_uint(buf, i, end, T_INTEGER, "timeLimit")
    types_only, i = _read_bool(buf, i, end, T_BOOLEAN, "typesOnly")
    flt, i = _decode_filter(buf, i, end, 1, limits)
    s, e = _expect(buf, i, end, T_SEQUENCE, "attribute selection")
    if e != end:
        _trailing(e, end, "searchRequest")
    attributes = []
    while s < e:
        a, s = _expect(buf, s, e, T_OCTET_STRING, "attribute selector")
        attributes.append(buf[a:s].decode())
    return SearchRequest(base, scope, deref, size_limit, time_limit, types_only, flt, attributes)


def _decode_filter(buf: bytes, i: int, end: int, depth: int,
                   limits: FilterLimits | None = None) -> tuple[tuple, int]:
    """Decode the Filter at buf[i]; return (ast, offset just after it). ``limits`` is
    charged one element per filter (and per substring piece) as it is met, so an
    oversized filter is refused after at most max_terms elements were decoded."""
    if depth > MAX_FILTER_DEPTH:
        raise BERError(f"filter nested deeper than {MAX_FILTER_DEPTH} levels")
    if limits is not None:
        limits.spend(1, depth)
    if i + 2 <= end and buf[i + 1] < 0x80:  # short length form, inlined
        tag = buf[i]
        s = i + 2
        e = s + buf[i + 1]
        if e > end:
            raise BERError("truncated filter")
    else:
        tag, s, e = _tlv(buf, i, end)

    kind = _AVA_FILTERS.get(tag)
    if kind is not None:  # eq / ge / le / approx: AttributeValueAssertion
        a_s, a_e = _expect(buf, s, e, T_OCTET_STRING, "filter attribute")
        v_s, v_e = _expect(buf, a_e, e, T_OCTET_STRING, "filter assertion value")
        if v_e != e:
            _trailing(v_e, e, "AttributeValueAssertion")
        return (kind, buf[a_s:a_e].decode(), buf[v_s:v_e]), e

    if tag == 0xA0 or tag == 0xA1:  # and / or: SET OF Filter (empty allowed, RFC 4526)
        subs = []
        while s < e:
            sub, s = _decode_filter(buf, s, e, depth + 1, limits)
            subs.append(sub)
        return ("and" if tag == 0xA0 else "or", subs), e

    if tag == 0x87:  # present [7] AttributeDescription
        return ("present", buf[s:e].decode()), e

    if tag == 0xA2:  # not [2] Filter
        sub, s = _decode_filter(buf, s, e, depth + 1, limits)
        if s != e:
            _trailing(s, e, "not filter")
        return ("not", sub), e

    if tag == 0xA4:  # substrings
        a_s, a_e = _expect(buf, s, e, T_OCTET_STRING, "substrings attribute")
        q, q_end = _expect(buf, a_e, e, T_SEQUENCE, "substrings")
        if q_end != e:
            _trailing(q_end, e, "SubstringFilter")
        if q == q_end:
            raise BERError("substrings filter without substrings")
        first = q
        initial = final = None
        anys = []
        while q < q_end:
            t, v_s, v_e = _tlv(buf, q, q_end)
            if final is not None:
                raise BERError("substrings: 'final' must be the last element")
            if limits is not None:
                limits.spend(1, depth)
            if t == 0x81:
                anys.append(buf[v_s:v_e])
            elif t == 0x80:
                if q != first:
                    raise BERError("substrings: 'initial' must be the first element")
                initial = buf[v_s:v_e]
            elif t == 0x82:
                final = buf[v_s:v_e]
            else:
                raise BERError(f"substrings: unexpected tag 0x{t:02x}")
            q = v_e
        return ("sub", buf[a_s:a_e].decode(), initial, anys, final), e

    if tag == 0xA9:  # extensibleMatch: MatchingRuleAssertion
        rule = attr = None
        dn_attrs = False
        p = s
        if p < e and buf[p] == 0x81:
            r_s, p = _expect(buf, p, e, 0x81, "matchingRule")
            rule = buf[r_s:p].decode()
        if p < e and buf[p] == 0x82:
            t_s, p = _expect(buf, p, e, 0x82, "extensible match type")
            attr = buf[t_s:p].decode()
        v_s, p = _expect(buf, p, e, 0x83, "matchValue")
        value = buf[v_s:p]
        if p < e:
            b_s, p = _expect(buf, p, e, 0x84, "dnAttributes")
            dn_attrs = _bool(buf, b_s, p)
        if p != e:
            _trailing(p, e, "MatchingRuleAssertion")
        return ("ext", rule, attr, value, dn_attrs), e

    raise BERError(f"unknown filter tag 0x{tag:02x}")


def _decode_controls(buf: bytes, i: int, end: int) -> list[Control]:
    controls = []
    while i < end:
        s, e = _expect(buf, i, end, T_SEQUENCE, "Control")
        o_s, p = _expect(buf, s, e, T_OCTET_STRING, "controlType")
        oid = buf[o_s:p].decode()
        critical = False
        value = None
        if p < e and buf[p] == T_BOOLEAN:
            b_s, p = _expect(buf, p, e, T_BOOLEAN, "criticality")
            critical = _bool(buf, b_s, p)
        if p < e:
            v_s, p = _expect(buf, p, e, T_OCTET_STRING, "controlValue")
            value = buf[v_s:p]
        if p != e:
            _trailing(p, e, "Control")
        controls.append(Control(oid, critical, value))
        i = e
    return controls


def decode_filter(data: bytes, limits: FilterLimits | None = None) -> tuple:
    """Decode a complete BER Filter (e.g. an assertion control value, RFC 4528)."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        flt, i = _decode_filter(data, 0, len(data), 1, limits)
    except UnicodeDecodeError as exc:
        raise BERError(f"invalid UTF-8 in a filter: {exc.reason}") from None
    except IndexError:
        raise BERError("truncated element") from None
    if i != len(data):
        _trailing(i, len(data), "filter")
    return flt


# --------------------------------------------------------------------------
# Encoding primitives


def _hdr(tag: int, n: int) -> bytes:
    """Tag octet + definite length octets for ``n`` content octets."""
    if n < 0x80:
        return bytes((tag, n))
    if n < 0x100:
        return bytes((tag, 0x81, n))
    if n < 0x10000:
        return bytes((tag, 0x82, n >> 8, n & 0xFF))
    if n < 0x1000000:
        return bytes((tag, 0x83, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    if n < 0x100000000:
        return bytes((tag, 0x84)) + n.to_bytes(4, "big")
    raise ValueError(f"element of {n} octets is too long for BER framing")


def _int_content(n: int) -> bytes:
    """Minimal two's-complement content octets of an INTEGER/ENUMERATED."""
    if 0 <= n < 0x80:
        return bytes((n,))
    return n.to_bytes(((n + (n < 0)).bit_length() + 8) // 8, "big", signed=True)


def _utf8(s: str | bytes) -> bytes:
    return s.encode() if s.__class__ is str else bytes(s)


def encode_tlv(tag: int, content: bytes) -> bytes:
    """One element: tag octet, definite length, content."""
    return _hdr(tag, len(content)) + content


def encode_int(tag: int, n: int) -> bytes:
    """INTEGER (tag 0x02) / ENUMERATED (0x0A) / any implicitly tagged integer."""
    if 0 <= n < 0x80:
        return bytes((tag, 1, n))
    c = _int_content(n)
    return bytes((tag, len(c))) + c


def encode_octets(tag: int, b: bytes | str) -> bytes:
    """OCTET STRING (tag 0x04) or an implicitly tagged one; ``str`` is UTF-8 encoded."""
    b = _utf8(b)
    return _hdr(tag, len(b)) + b


def encode_bool(tag: int, v: bool) -> bytes:
    return bytes((tag, 1, 0xFF if v else 0x00))


def encode_seq(tag: int, *parts: bytes) -> bytes:
    """Constructed element (SEQUENCE 0x30, SET 0x31, [n] 0xA0|n) around encoded parts."""
    content = b"".join(parts)
    return _hdr(tag, len(content)) + content


def encode_controls(controls: list[Control]) -> bytes:
    """The ``[0] Controls`` element of an LDAPMessage (criticality FALSE is omitted)."""
    parts = []
    for c in controls:
        body = encode_octets(T_OCTET_STRING, c.oid)
        if c.critical:
            body += b"\x01\x01\xff"
        if c.value is not None:
            body += encode_octets(T_OCTET_STRING, c.value)
        parts.append(_hdr(T_SEQUENCE, len(body)))
        parts.append(body)
    content = b"".join(parts)
    return _hdr(0xA0, len(content)) + content


def _message(msgid: int, op_tag: int, op_content: bytes, controls) -> bytes:
    """Wrap an encoded protocolOp body into an LDAPMessage."""
    if not 0 <= msgid <= MAX_INT:
        raise ValueError(f"messageID {msgid} out of range")
    mid = encode_int(T_INTEGER, msgid)
    oph = _hdr(op_tag, len(op_content))
    ctl = encode_controls(controls) if controls else b""
    n = len(mid) + len(oph) + len(op_content) + len(ctl)
    return b"".join((_hdr(T_SEQUENCE, n), mid, oph, op_content, ctl))


# --------------------------------------------------------------------------
# Response encoders


def encode_result(
    msgid: int,
    op: int,
    code: int,
    matched_dn: str = "",
    message: str = "",
    controls=None,
    extra: bytes = b"",
) -> bytes:
    """An LDAPResult-shaped response (bind 1, searchDone 5, modify 7, add 9, del 11,
    modDN 13, compare 15, extended 24); ``extra`` is appended inside the op
    (already-encoded serverSaslCreds [7], responseName [10], responseValue [11])."""
    if op not in _RESULT_OPS:
        raise ValueError(f"APPLICATION {op} is not an LDAPResult-shaped response")
    if not (matched_dn or message or controls or extra) and 0 <= msgid <= MAX_INT:
        # the common answer (a bare result code): the op is 7 octets
        op_bytes = _BARE_RESULT.get((op, code))
        if op_bytes is None:
            op_bytes = encode_int(T_ENUMERATED, code) + b"\x04\x00\x04\x00"
            op_bytes = _BARE_RESULT[(op, code)] = _hdr(0x60 | op, len(op_bytes)) + op_bytes
        mid = _message_id(msgid)
        return _hdr(T_SEQUENCE, len(mid) + len(op_bytes)) + mid + op_bytes
    m = _utf8(matched_dn)
    t = _utf8(message)
    body = b"".join((encode_int(T_ENUMERATED, code), _hdr(T_OCTET_STRING, len(m)), m,
                     _hdr(T_OCTET_STRING, len(t)), t, extra))
    return _message(msgid, 0x60 | op, body, controls)


def encode_extended_response(
    msgid: int,
    code: int,
    matched_dn: str = "",
    message: str = "",
    name: str | None = None,
    value: bytes | None = None,
    controls=None,
) -> bytes:
    """ExtendedResponse (APPLICATION 24) with optional responseName [10] / responseValue [11]."""
    extra = b""
    if name is not None:
        extra += encode_octets(0x8A, name)
    if value is not None:
        extra += encode_octets(0x8B, value)
    return encode_result(msgid, 24, code, matched_dn, message, controls, extra)


def encode_notice_of_disconnection(code: int, message: str) -> bytes:
    """Unsolicited Notice of Disconnection (RFC 4511 section 4.4.1)."""
    return encode_extended_response(0, code, "", message, name=NOTICE_OF_DISCONNECTION_OID)


def encode_intermediate(msgid: int, name: str | None = None, value: bytes | None = None,
                        controls=None) -> bytes:
    """IntermediateResponse (APPLICATION 25): responseName [0], responseValue [1]."""
    body = b""
    if name is not None:
        body += encode_octets(0x80, name)
    if value is not None:
        body += encode_octets(0x81, value)
    return _message(msgid, 0x79, body, controls)


_OCT_HDR = tuple(bytes((T_OCTET_STRING, n)) for n in range(0x80))
_SET_HDR = tuple(bytes((T_SET, n)) for n in range(0x80))
_SEQ_HDR = tuple(bytes((T_SEQUENCE, n)) for n in range(0x80))


def encode_search_entry(msgid: int, dn: str, attributes: list[tuple[str, list[bytes]]],
                        controls=None) -> bytes:
    """SearchResultEntry (APPLICATION 4).

    ``attributes`` is a list of (description, values); values are ``bytes``
    (``str`` is accepted and UTF-8 encoded, on a slower path).  A types-only
    entry is attributes with empty value lists.
    """
    if not 0 <= msgid <= MAX_INT:
        raise ValueError(f"messageID {msgid} out of range")
    op = encode_entry_op(dn, attributes)
    mid = encode_int(T_INTEGER, msgid)
    ctl = encode_controls(controls) if controls else b""
    return b"".join((_hdr(T_SEQUENCE, len(mid) + len(op) + len(ctl)), mid, op, ctl))


def encode_entry_op(dn: str, attributes: list[tuple[str, list[bytes]]]) -> bytes:
    """The protocolOp of a SearchResultEntry (APPLICATION 4, its header included) without
    the message envelope: what a cache keeps, sent with encode_entry_message."""
    try:
        body = _entry_attributes(attributes)
    except TypeError:  # str (or otherwise non-bytes) values: normalise and retry
        body = _entry_attributes([(n, [_utf8(v) for v in vs]) for n, vs in attributes])
    d = _utf8(dn)
    dn_hdr = _hdr(T_OCTET_STRING, len(d))
    list_hdr = _hdr(T_SEQUENCE, len(body))
    return b"".join((_hdr(0x64, len(dn_hdr) + len(d) + len(list_hdr) + len(body)), dn_hdr, d, list_hdr, body))


def _message_id(msgid: int) -> bytes:
    """The messageID INTEGER element (0 .. MAX_INT)."""
    if 0 <= msgid < 0x80:
        return bytes((T_INTEGER, 1, msgid))
    if 0x80 <= msgid < 0x8000:
        return bytes((T_INTEGER, 2, msgid >> 8, msgid & 0xFF))
    if 0x8000 <= msgid < 0x800000:
        return bytes((T_INTEGER, 3, msgid >> 16, (msgid >> 8) & 0xFF, msgid & 0xFF))
    if not 0 <= msgid <= MAX_INT:
        raise ValueError(f"messageID {msgid} out of range")
    return encode_int(T_INTEGER, msgid)


def encode_entry_message(msgid: int, op: bytes) -> bytes:
    """An LDAPMessage around an encoded protocolOp (encode_entry_op), no controls."""
    mid = _message_id(msgid)
    return _hdr(T_SEQUENCE, len(mid) + len(op)) + mid + op


def _entry_attributes(attributes) -> bytearray:
    """Content of a PartialAttributeList: SEQUENCE { type, SET OF value } per attribute.

    Lengths are computed up front so each element is written once; when the
    whole attribute element is shorter than 128 octets every header is two
    octets and comes from a table.
    """
    out = bytearray()
    for name, values in attributes:
        a = name.encode()
        if len(values) == 1:
            v = values[0]
            n = len(v)
            seq_len = len(a) + n + 6
            if seq_len < 0x80:
                out += _SEQ_HDR[seq_len]
                out += _OCT_HDR[len(a)]
                out += a
                out += _SET_HDR[n + 2]
                out += _OCT_HDR[n]
                out += v
                continue
        elif values:
            set_len = sum(map(len, values)) + 2 * len(values)
            seq_len = len(a) + set_len + 4
            if seq_len < 0x80:
                out += _SEQ_HDR[seq_len]
                out += _OCT_HDR[len(a)]
                out += a
                out += _SET_HDR[set_len]
                for v in values:
                    out += _OCT_HDR[len(v)]
                    out += v
                continue
        # general path: long values/names, or no values (types only)
        parts = []
        for v in values:
            parts.append(_hdr(T_OCTET_STRING, len(v)))
            parts.append(v)
        set_content = b"".join(parts)
        seq_content = b"".join((_hdr(T_OCTET_STRING, len(a)), a, _hdr(T_SET, len(set_content)), set_content))
        out += _hdr(T_SEQUENCE, len(seq_content))
        out += seq_content
    return out


# --------------------------------------------------------------------------
# Filter encoding (tests, assertion control values, client code)


def encode_filter(f: tuple) -> bytes:
    """Encode a filter AST as a BER Filter element."""
    kind = f[0]
    tag = _AVA_TAGS.get(kind)
    if tag is not None:
        return encode_seq(tag, encode_octets(T_OCTET_STRING, f[1]), encode_octets(T_OCTET_STRING, f[2]))
    if kind == "and" or kind == "or":
        return encode_seq(0xA0 if kind == "and" else 0xA1, *[encode_filter(x) for x in f[1]])
    if kind == "not":
        return encode_seq(0xA2, encode_filter(f[1]))
    if kind == "present":
        return encode_octets(0x87, f[1])
    if kind == "sub":
        _, attr, initial, anys, final = f
        subs = []
        if initial is not None:
            subs.append(encode_octets(0x80, initial))
        subs.extend(encode_octets(0x81, x) for x in anys)
        if final is not None:
            subs.append(encode_octets(0x82, final))
        return encode_seq(0xA4, encode_octets(T_OCTET_STRING, attr), encode_seq(T_SEQUENCE, *subs))
    if kind == "ext":
        _, rule, attr, value, dn_attrs = f
        parts = []
        if rule is not None:
            parts.append(encode_octets(0x81, rule))
        if attr is not None:
            parts.append(encode_octets(0x82, attr))
        parts.append(encode_octets(0x83, value))
        if dn_attrs:
            parts.append(encode_bool(0x84, True))
        return encode_seq(0xA9, *parts)
    raise ValueError(f"unknown filter kind {kind!r}")


# --------------------------------------------------------------------------
# A small reader for control values and extended operation payloads


class Reader:
    """Sequential reader over BER elements in ``data``.

    Typical use for a paged-results control value::

        r = Reader(Reader(value).read_seq())   # or: r = Reader(value).enter()
        size = r.read_int(); cookie = r.read_octets(); r.expect_end()

    All methods raise :class:`BERError` on malformed or unexpected input.
    """

    __slots__ = ("buf", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview):
        self.buf = data if type(data) is bytes else bytes(data)
        self.pos = 0
        self.end = len(self.buf)

    def at_end(self) -> bool:
        return self.pos >= self.end

    def expect_end(self) -> None:
        if self.pos != self.end:
            _trailing(self.pos, self.end, "element")

    def peek_tag(self) -> int | None:
        """Tag of the next element, or None at the end."""
        return self.buf[self.pos] if self.pos < self.end else None

    def read_tlv(self, tag: int | None = None) -> tuple[int, bytes]:
        """(tag, content) of the next element; with ``tag``, it must match."""
        t, s, e = _tlv(self.buf, self.pos, self.end)
        if tag is not None and t != tag:
            raise BERError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
        self.pos = e
        return t, self.buf[s:e]

    def read_int(self, tag: int = T_INTEGER) -> int:
        t, s, e = _tlv(self.buf, self.pos, self.end)
        if t != tag:
            raise BERError(f"expected INTEGER tag 0x{tag:02x}, got 0x{t:02x}")
        v = _int(self.buf, s, e)
        self.pos = e
        return v

    def read_enum(self, tag: int = T_ENUMERATED) -> int:
        return self.read_int(tag)

    def read_octets(self, tag: int = T_OCTET_STRING) -> bytes:
        return self.read_tlv(tag)[1]

    def read_str(self, tag: int = T_OCTET_STRING) -> str:
        """An OCTET STRING decoded as UTF-8 (LDAPString, LDAPOID, AttributeDescription)."""
        try:
            return self.read_tlv(tag)[1].decode()
        except UnicodeDecodeError as exc:
            raise BERError(f"invalid UTF-8: {exc.reason}") from None

    def read_bool(self, tag: int = T_BOOLEAN) -> bool:
        t, s, e = _tlv(self.buf, self.pos, self.end)
        if t != tag:
            raise BERError(f"expected BOOLEAN tag 0x{tag:02x}, got 0x{t:02x}")
        v = _bool(self.buf, s, e)
        self.pos = e
        return v

    def read_seq(self, tag: int = T_SEQUENCE) -> bytes:
        """Content of the next constructed element (feed it to another Reader)."""
        return self.read_tlv(tag)[1]

    def enter(self, tag: int = T_SEQUENCE) -> "Reader":
        """A Reader over the content of the next constructed element."""
        return Reader(self.read_tlv(tag)[1])

    def read_filter(self) -> tuple:
        """The next element, decoded as a Filter."""
        try:
            flt, e = _decode_filter(self.buf, self.pos, self.end, 1)
        except UnicodeDecodeError as exc:
            raise BERError(f"invalid UTF-8 in a filter: {exc.reason}") from None
        self.pos = e
        return flt
