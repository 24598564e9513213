"""The directory schema: RFC 4512 attribute types and object classes.

Definitions are read from OpenLDAP-style ``.schema`` files (schema/*.schema);
syntaxes and matching rules are built in, because their behaviour is code.
Besides lookups, the schema gives every attribute type precomputed callables
used on the hot path of searches and updates:

    at = schema.attribute("uid")
    at.normalize(b"JSmith")        # equality key ("jsmith"), LDAPError 21 if invalid
    at.normalize_or_none(value)    # same, None instead of raising (filters)
    at.substr_key(value, piece)    # SUBSTR key, piece: None | "initial" | "any" | "final"
    at.order_key(value)            # ORDERING key usable with < and >=
    at.approx_key(value)           # ~= key
    at.is_valid(value)             # syntax check -> bool

Keys compare with ==; equal keys mean the values match under the rule.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from datetime import datetime, timedelta

from .errors import LDAPError, ResultCode

__all__ = [
    "SchemaError", "Syntax", "MatchingRule", "AttributeType", "ObjectClass", "Schema",
    "USER_APPLICATIONS", "USAGES",
]


class SchemaError(Exception):
    """A schema file that cannot be loaded; the message starts with "path:line: "."""


USER_APPLICATIONS = "userApplications"
USAGES = (USER_APPLICATIONS, "directoryOperation", "distributedOperation", "dSAOperation")
_KINDS = ("STRUCTURAL", "AUXILIARY", "ABSTRACT")
_SYNTAX_PREFIX = "1.3.6.1.4.1.1466.115.121.1."

_INVALID = ResultCode.INVALID_ATTRIBUTE_SYNTAX
_OCV = ResultCode.OBJECT_CLASS_VIOLATION


# --------------------------------------------------------------------------
# Value preparation (RFC 4518, simplified)


def _text(value) -> str:
    """A value as str; bytes must be UTF-8 (UnicodeDecodeError is a ValueError)."""
    if type(value) is bytes:  # a value as read: the common case first
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8")


def _bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _fold(s: str) -> str:
    # Case fold, then NFKC; ASCII (the common case) needs neither table.
    if s.isascii():
        return s.lower()
    return unicodedata.normalize("NFKC", s.casefold())


def _exact(s: str) -> str:
    return s if s.isascii() else unicodedata.normalize("NFKC", s)


def _ascii(s: str) -> str:
    if not s.isascii():
        raise ValueError("not IA5")
    return s


def _spaces(s: str, piece=None) -> str:
    """Insignificant space handling: runs of white space count as one space.

    A whole value (piece None) is also trimmed. Substring pieces keep one space
    where they touch a word boundary inside the value: the end of an initial
    piece, the start of a final piece, either end of an any piece (so that
    "cn=John *" does not match "Johnny").
    """
    core = " ".join(s.split())
    if piece is None or not s:
        return core
    lead = s[0].isspace() and piece != "initial"
    trail = s[-1].isspace() and piece != "final"
    if not core:
        return " " if (lead or trail) else ""
    return (" " if lead else "") + core + (" " if trail else "")


def _is_numericoid(s: str) -> bool:
    if not s or not s.isascii():
        return False
    for part in s.split("."):
        if not part.isdigit() or (len(part) > 1 and part[0] == "0"):
            return False
    return True


def _is_descr(s: str) -> bool:
    return bool(s) and s.isascii() and s[0].isalpha() and all(c.isalnum() or c == "-" for c in s)


_GENTIME = re.compile(
    r"(\d{4})(\d\d)(\d\d)(\d\d)(?:(\d\d)(\d\d)?)?(?:[.,](\d+))?(Z|[+-]\d\d(?:\d\d)?)\Z", re.ASCII)
_UTCTIME = re.compile(r"(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?(Z|[+-]\d{4})\Z", re.ASCII)


def _gentime(s: str) -> str:
    """Generalized Time (RFC 4517 3.3.13) as a fixed-width UTC string.

    'YYYYMMDDHHMMSS.ffffffZ': equal instants give equal keys and the keys sort
    by time. A fraction applies to the last unit given (hour, minute, second).
    """
    m = _GENTIME.match(s)
    if m is None:
        raise ValueError("not a generalized time")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    # year 0000 is valid (RFC 4517; ppolicy's "000001010000Z" locks an account for good)
    # but not a datetime: computed 400 years on, where the calendar repeats
    shift = 400 if int(year) == 0 else 0
    try:
        t = datetime(int(year) + shift, int(month), int(day), int(hour))
        mi, sec, micro = int(minute or 0), int(second or 0), 0
        if mi > 59 or sec > 60:
            raise ValueError("bad time")
        if sec == 60:  # leap second: the last representable instant of the minute
            sec, micro = 59, 999999
        if frac:
            unit = 3600 if minute is None else 60 if second is None else 1
            micro += int(frac) * unit * 1_000_000 // 10 ** len(frac)
        t += timedelta(minutes=mi, seconds=sec, microseconds=micro)
        if zone != "Z":
            hh, mm = int(zone[1:3]), int(zone[3:5] or 0)
            if hh > 23 or mm > 59:
                raise ValueError("bad time zone")
            offset = timedelta(hours=hh, minutes=mm)
            t = t - offset if zone[0] == "+" else t + offset
    except OverflowError:
        raise ValueError("time out of range") from None
    return (f"{max(t.year - shift, 0):04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}"
            f"{t.second:02d}.{t.microsecond:06d}Z")


def _utctime_ok(s: str) -> bool:
    m = _UTCTIME.match(s)
    if m is None:
        return False
    yy, mo, dd, hh, mi, ss, zone = m.groups()
    try:
        datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss or 0))
    except ValueError:
        return False
    return zone == "Z" or (int(zone[1:3]) <= 23 and int(zone[3:5]) <= 59)


_HEX = frozenset("0123456789abcdefABCDEF")


def _uuid(s: str) -> str:
    s = s.strip()
    if len(s) != 36 or any(s[i] != "-" for i in (8, 13, 18, 23)) \
            or not _HEX.issuperset(s.replace("-", "")):
        raise ValueError("not a UUID")
    return s.lower()


def _is_bitstring(s: str) -> bool:
    return len(s) >= 3 and s[0] == "'" and s.endswith("'B") and set(s[1:-2]) <= {"0", "1"}


def _integer(s: str) -> str:
    s = s.strip()
    digits = s[1:] if s[:1] in ("-", "+") else s
    if not digits.isdigit() or not digits.isascii():
        raise ValueError("not an integer")
    return str(int(s))


def _postal_lines(s: str) -> list[str]:
    # Postal Address: lines separated by '$'; '\24' and '\5C' escape '$' and '\'.
    return [line.replace("\\24", "$").replace("\\5C", "\\").replace("\\5c", "\\")
            for line in s.split("$")]


def _first_component(s: str) -> str:
    # "( 2.5.4.3 NAME 'cn' ... )" -> "2.5.4.3"; a bare OID/integer is itself.
    s = s.strip()
    if s.startswith("("):
        s = s[1:].split(None, 1)[0] if s[1:].strip() else ""
    if not s:
        raise ValueError("empty first component")
    return s.lower()


def _phonetic(s: str) -> str:
    """A soundex-like key per word: first letter, then consonants without repeats."""
    words = []
    for word in s.split():
        w = "".join(c for c in unicodedata.normalize("NFKD", word) if c.isalnum())
        if not w:
            continue
        code = [w[0]]
        for c in w[1:]:
            if c not in "aeiouyhw" and c != code[-1]:
                code.append(c)
        words.append("".join(code))
    return " ".join(words)


# --------------------------------------------------------------------------
# Syntaxes


_PRINTABLE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'()+,-./:=? ")
_DELIVERY = frozenset(("any", "mhs", "physical", "telex", "teletex", "g3fax", "g4fax",
                       "ia5", "videotex", "telephone"))


def _ok_any(v) -> bool:
    return True


def _ok_nonempty(v) -> bool:
    return len(v) > 0


def _ok_utf8(v) -> bool:
    if type(v) is bytes and v.isascii():  # ASCII is UTF-8: no decoding
        return len(v) > 0
    try:
        return len(_text(v)) > 0
    except ValueError:
        return False


def _ok_ia5(v) -> bool:
    return _bytes(v).isascii()


def _ok_printable(v) -> bool:
    v = _bytes(v)
    return len(v) > 0 and _PRINTABLE.issuperset(v)


def _ok_numeric(v) -> bool:
    v = _bytes(v)
    return len(v) > 0 and not v.translate(None, b"0123456789 ")


def _ok_integer(v) -> bool:
    # RFC 4517 3.3.16 is strict (no '+', no leading zeros, no "-0"), like slapd.
    # At most 4000 digits: Python's int() refuses more than 4300, so a longer value
    # could be neither compared nor incremented (21, not an error later).
    v = _bytes(v)
    digits = v[1:] if v[:1] == b"-" else v
    return digits.isdigit() and (digits[:1] != b"0" or v == b"0") and len(v) <= 4000


def _ok_boolean(v) -> bool:
    return _bytes(v) in (b"TRUE", b"FALSE")


def _ok_gentime(v) -> bool:
    try:
        _gentime(_text(v))
        return True
    except ValueError:
        return False


def _ok_utctime(v) -> bool:
    try:
        return _utctime_ok(_text(v))
    except ValueError:
        return False


def _ok_oid(v) -> bool:
    try:
        s = _text(v)
    except ValueError:
        return False
    return _is_numericoid(s) or _is_descr(s)


def _ok_country(v) -> bool:
    return len(_bytes(v)) == 2 and _ok_printable(v)


def _ok_uuid(v) -> bool:
    try:
        _uuid(_text(v))
        return True
    except ValueError:
        return False


def _ok_jpeg(v) -> bool:
    return _bytes(v)[:3] == b"\xff\xd8\xff"


def _ok_bitstring(v) -> bool:
    try:
        return _is_bitstring(_text(v))
    except ValueError:
        return False


def _ok_delivery(v) -> bool:
    try:
        parts = [p.strip() for p in _text(v).split("$")]
    except ValueError:
        return False
    return all(p in _DELIVERY for p in parts)


def _ok_facsimile(v) -> bool:
    # telephone-number *( '$' fax-parameter ); parameters are not checked.
    return _ok_printable(_bytes(v).split(b"$", 1)[0])


def _ok_description(v) -> bool:
    # RFC 4512 descriptions (attributeTypes values and the like): "( ... )".
    v = _bytes(v).strip()
    return v[:1] == b"(" and v[-1:] == b")"


def _ok_netgroup(v) -> bool:
    v = _bytes(v).strip()
    return v[:1] == b"(" and v[-1:] == b")" and v.count(b",") == 2


class Syntax:
    """An LDAP syntax (RFC 4517); validate() says whether a value conforms."""

    __slots__ = ("oid", "desc", "binary", "_check")

    def __init__(self, oid, desc, check=_ok_nonempty, binary=False):
        self.oid = oid
        self.desc = desc
        self.binary = binary  # X-NOT-HUMAN-READABLE
        self._check = check

    def validate(self, value: bytes) -> bool:
        return bool(self._check(value))

    def definition(self) -> str:
        x = " X-NOT-HUMAN-READABLE 'TRUE'" if self.binary else ""
        return f"( {self.oid} DESC {_qd(self.desc)}{x} )"

    def __repr__(self):
        return f"Syntax({self.oid!r}, {self.desc!r})"


# DN-based syntaxes need the schema's DN normalizer; their checks are bound per schema.
_DN_SYNTAX = _SYNTAX_PREFIX + "12"
# Syntaxes whose values travel BER-encoded, the only ones ';binary' applies to (RFC 4522 2).
_BINARY_TRANSFER = frozenset(_SYNTAX_PREFIX + n for n in ("8", "9", "10", "49"))
_NAME_UID_SYNTAX = _SYNTAX_PREFIX + "34"

# syntax checks that return a bool (Syntax.validate's bool() is then redundant)
_BOOL_CHECKS = frozenset((_ok_any, _ok_nonempty, _ok_utf8, _ok_ia5, _ok_printable, _ok_numeric))

_SYNTAXES = [
    # (oid suffix or full oid, description, check, binary)
    ("3", "Attribute Type Description", _ok_description, False),
    ("4", "Audio", _ok_any, True),
    ("5", "Binary", _ok_any, True),
    ("6", "Bit String", _ok_bitstring, False),
    ("7", "Boolean", _ok_boolean, False),
    ("8", "Certificate", _ok_nonempty, True),
    ("9", "Certificate List", _ok_nonempty, True),
    ("10", "Certificate Pair", _ok_nonempty, True),
    ("11", "Country String", _ok_country, False),
    ("12", "Distinguished Name", None, False),
    ("13", "Data Quality", _ok_printable, False),
    ("14", "Delivery Method", _ok_delivery, False),
    ("15", "Directory String", _ok_utf8, False),
    ("16", "DIT Content Rule Description", _ok_description, False),
    ("17", "DIT Structure Rule Description", _ok_description, False),
    ("19", "DSA Quality", _ok_printable, False),
    ("21", "Enhanced Guide", _ok_utf8, False),
    ("22", "Facsimile Telephone Number", _ok_facsimile, False),
    ("23", "Fax", _ok_nonempty, True),
    ("24", "Generalized Time", _ok_gentime, False),
    ("25", "Guide", _ok_utf8, False),
    ("26", "IA5 String", _ok_ia5, False),
    ("27", "INTEGER", _ok_integer, False),
    ("28", "JPEG", _ok_jpeg, True),
    ("30", "Matching Rule Description", _ok_description, False),
    ("31", "Matching Rule Use Description", _ok_description, False),
    ("34", "Name And Optional UID", None, False),
    ("35", "Name Form Description", _ok_description, False),
    ("36", "Numeric String", _ok_numeric, False),
    ("37", "Object Class Description", _ok_description, False),
    ("38", "OID", _ok_oid, False),
    ("39", "Other Mailbox", _ok_utf8, False),
    ("40", "Octet String", _ok_any, False),
    ("41", "Postal Address", _ok_utf8, False),
    ("42", "Protocol Information", _ok_utf8, False),
    ("43", "Presentation Address", _ok_utf8, False),
    ("44", "Printable String", _ok_printable, False),
    ("45", "Subtree Specification", _ok_utf8, False),
    ("49", "Supported Algorithm", _ok_nonempty, True),
    ("50", "Telephone Number", _ok_printable, False),
    ("51", "Teletex Terminal Identifier", _ok_printable, False),
    ("52", "Telex Number", _ok_printable, False),
    ("53", "UTC Time", _ok_utctime, False),
    ("54", "LDAP Syntax Description", _ok_description, False),
    ("58", "Substring Assertion", _ok_utf8, False),
    ("1.3.6.1.1.1.0.0", "RFC2307 NIS Netgroup Triple", _ok_netgroup, False),
    ("1.3.6.1.1.1.0.1", "RFC2307 Boot Parameter", _ok_ia5, False),
    ("1.3.6.1.1.15.1", "X.509 Certificate Exact Assertion", _ok_nonempty, True),
    ("1.3.6.1.1.15.5", "X.509 Certificate List Exact Assertion", _ok_nonempty, True),
    ("1.3.6.1.1.16.1", "UUID", _ok_uuid, False),
]


# --------------------------------------------------------------------------
# Matching rules


class MatchingRule:
    """A matching rule; `key` maps a value to its comparison key (ValueError if it cannot)."""

    __slots__ = ("oid", "name", "syntax", "kind", "key")

    def __init__(self, oid, name, syntax, kind, key):
        self.oid = oid
        self.name = name
        self.syntax = syntax
        self.kind = kind  # 'equality' | 'ordering' | 'substr'
        self.key = key

    def definition(self) -> str:
        return f"( {self.oid} NAME '{self.name}' SYNTAX {self.syntax} )"

    def __repr__(self):
        return f"MatchingRule({self.name!r}, {self.kind!r})"


def _s(suffix):
    return _SYNTAX_PREFIX + suffix


# (oid, name, syntax, kind, key function name in Schema._rule_keys())
_RULES = [
    ("2.5.13.0", "objectIdentifierMatch", _s("38"), "equality", "oid"),
    ("2.5.13.1", "distinguishedNameMatch", _s("12"), "equality", "dn"),
    ("2.5.13.2", "caseIgnoreMatch", _s("15"), "equality", "ignore"),
    ("2.5.13.3", "caseIgnoreOrderingMatch", _s("15"), "ordering", "ignore"),
    ("2.5.13.4", "caseIgnoreSubstringsMatch", _s("58"), "substr", "ignore_sub"),
    ("2.5.13.5", "caseExactMatch", _s("15"), "equality", "exact"),
    ("2.5.13.6", "caseExactOrderingMatch", _s("15"), "ordering", "exact"),
    ("2.5.13.7", "caseExactSubstringsMatch", _s("58"), "substr", "exact_sub"),
    ("2.5.13.8", "numericStringMatch", _s("36"), "equality", "numeric"),
    ("2.5.13.9", "numericStringOrderingMatch", _s("36"), "ordering", "numeric"),
    ("2.5.13.10", "numericStringSubstringsMatch", _s("58"), "substr", "numeric_sub"),
    ("2.5.13.11", "caseIgnoreListMatch", _s("41"), "equality", "list"),
    ("2.5.13.12", "caseIgnoreListSubstringsMatch", _s("58"), "substr", "list_sub"),
    ("2.5.13.13", "booleanMatch", _s("7"), "equality", "boolean"),
    ("2.5.13.14", "integerMatch", _s("27"), "equality", "integer"),
    ("2.5.13.15", "integerOrderingMatch", _s("27"), "ordering", "integer_order"),
    ("2.5.13.16", "bitStringMatch", _s("6"), "equality", "bitstring"),
    ("2.5.13.17", "octetStringMatch", _s("40"), "equality", "octets"),
    ("2.5.13.18", "octetStringOrderingMatch", _s("40"), "ordering", "octets"),
    ("2.5.13.19", "octetStringSubstringsMatch", _s("40"), "substr", "octets_sub"),
    ("2.5.13.20", "telephoneNumberMatch", _s("50"), "equality", "telephone"),
    ("2.5.13.21", "telephoneNumberSubstringsMatch", _s("58"), "substr", "telephone_sub"),
    ("2.5.13.22", "presentationAddressMatch", _s("43"), "equality", "ignore"),
    ("2.5.13.23", "uniqueMemberMatch", _s("34"), "equality", "unique_member"),
    ("2.5.13.24", "protocolInformationMatch", _s("42"), "equality", "ignore"),
    ("2.5.13.27", "generalizedTimeMatch", _s("24"), "equality", "time"),
    ("2.5.13.28", "generalizedTimeOrderingMatch", _s("24"), "ordering", "time"),
    ("2.5.13.29", "integerFirstComponentMatch", _s("27"), "equality", "first_component"),
    ("2.5.13.30", "objectIdentifierFirstComponentMatch", _s("38"), "equality", "first_component"),
    ("2.5.13.31", "directoryStringFirstComponentMatch", _s("15"), "equality", "first_component"),
    ("2.5.13.34", "certificateExactMatch", "1.3.6.1.1.15.1", "equality", "octets"),
    ("2.5.13.38", "certificateListExactMatch", "1.3.6.1.1.15.5", "equality", "octets"),
    ("1.3.6.1.4.1.1466.109.114.1", "caseExactIA5Match", _s("26"), "equality", "ia5_exact"),
    ("1.3.6.1.4.1.1466.109.114.2", "caseIgnoreIA5Match", _s("26"), "equality", "ia5_ignore"),
    ("1.3.6.1.4.1.1466.109.114.3", "caseIgnoreIA5SubstringsMatch", _s("26"), "substr", "ia5_ignore_sub"),
    ("1.3.6.1.4.1.4203.1.2.1", "caseExactIA5SubstringsMatch", _s("26"), "substr", "ia5_exact_sub"),
    ("1.3.6.1.1.16.2", "uuidMatch", "1.3.6.1.1.16.1", "equality", "uuid"),
    ("1.3.6.1.1.16.3", "uuidOrderingMatch", "1.3.6.1.1.16.1", "ordering", "uuid"),
]

# Equality rules whose values are text, where ~= uses a phonetic key.
_TEXT_RULES = frozenset(("caseIgnoreMatch", "caseExactMatch", "caseIgnoreIA5Match",
                         "caseExactIA5Match", "caseIgnoreListMatch"))


def _fallback_dn_normalizer(s: str) -> str:
    """Until the Directory sets its DNNormalizer (schema.dn_normalizer): rejects what is
    plainly not a DN, lowercases."""
    s = s.strip()
    if s:
        component, escaped = [], False
        for c in s + ",":
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c in ",+":
                attr, eq, _ = "".join(component).partition("=")
                attr = attr.strip()
                if not eq or not (_is_descr(attr) or _is_numericoid(attr)):
                    raise ValueError(f"invalid DN: {s!r}")
                component = []
                continue
            component.append(c)
    return s.lower()


# --------------------------------------------------------------------------
# Attribute types and object classes


def _qd(s: str) -> str:
    # RFC 4512 qdstring: escape backslash and quote as \5C and \27.
    return "'" + s.replace("\\", "\\5C").replace("'", "\\27") + "'"


def _qdescrs(names) -> str:
    if len(names) == 1:
        return f"'{names[0]}'"
    return "( " + " ".join(f"'{n}'" for n in names) + " )"


def _oids(names) -> str:
    if len(names) == 1:
        return names[0]
    return "( " + " $ ".join(names) + " )"


def _extensions(exts) -> str:
    out = ""
    for name, values in exts:
        out += f" {name} " + (_qd(values[0]) if len(values) == 1
                              else "( " + " ".join(_qd(v) for v in values) + " )")
    return out


def _none(value):
    return None


class AttributeType:
    """An attribute type. equality/ordering/substr/syntax are effective values
    (inherited from `sup` when not declared); definition() shows the declared ones."""

    def __init__(self, oid, names=(), desc=None, sup=None, equality=None, ordering=None,
                 substr=None, syntax=None, syntax_len=None, single_value=False,
                 collective=False, no_user_modification=False, usage=USER_APPLICATIONS,
                 obsolete=False, extensions=(), source=("<string>", 0)):
        self.oid = oid
        self.names = tuple(names)
        self.name = self.names[0] if self.names else oid
        self.desc = desc
        self.sup = sup
        self.equality, self.ordering, self.substr = equality, ordering, substr
        self.syntax = syntax
        self.syntax_len = syntax_len
        self.single_value = single_value
        self.collective = collective
        self.no_user_modification = no_user_modification
        self.usage = usage
        self.obsolete = obsolete
        self.extensions = tuple(extensions)
        self.source = source
        # what the definition declares, before inheritance
        self._declared = (equality, ordering, substr, syntax, syntax_len)
        self._resolved = False
        # set by Schema._link
        self.normalize = self.normalize_or_none = self.order_key = self.approx_key = _none
        self.substr_key = lambda value, piece=None: None
        self.is_valid = _ok_any

    @property
    def is_operational(self) -> bool:
        return self.usage != USER_APPLICATIONS

    def definition(self) -> str:
        equality, ordering, substr, syntax, syntax_len = self._declared
        d = f"( {self.oid}"
        if self.names:
            d += " NAME " + _qdescrs(self.names)
        if self.desc is not None:
            d += " DESC " + _qd(self.desc)
        if self.obsolete:
            d += " OBSOLETE"
        if self.sup:
            d += " SUP " + self.sup
        if equality:
            d += " EQUALITY " + equality
        if ordering:
            d += " ORDERING " + ordering
        if substr:
            d += " SUBSTR " + substr
        if syntax:
            d += " SYNTAX " + syntax + (f"{{{syntax_len}}}" if syntax_len else "")
        if self.single_value:
            d += " SINGLE-VALUE"
        if self.collective:
            d += " COLLECTIVE"
        if self.no_user_modification:
            d += " NO-USER-MODIFICATION"
        if self.usage != USER_APPLICATIONS:
            d += " USAGE " + self.usage
        return d + _extensions(self.extensions) + " )"

    def __repr__(self):
        return f"<AttributeType {self.name} {self.oid}>"


class ObjectClass:
    """An object class. must/may are the declared lists (canonical attribute names);
    all_must/all_may/allowed include everything inherited from superclasses."""

    def __init__(self, oid, names=(), desc=None, sup=(), kind="STRUCTURAL", must=(), may=(),
                 obsolete=False, extensions=(), source=("<string>", 0)):
        self.oid = oid
        self.names = tuple(names)
        self.name = self.names[0] if self.names else oid
        self.desc = desc
        self.sup = tuple(sup)
        self.kind = kind
        self.must = tuple(must)
        self.may = tuple(may)
        self.obsolete = obsolete
        self.extensions = tuple(extensions)
        self.source = source
        # set by Schema._link
        self.superclasses: tuple = ()
        self.all_must: tuple = ()
        self.all_may: tuple = ()
        self.allowed: frozenset = frozenset()

    def definition(self) -> str:
        d = f"( {self.oid}"
        if self.names:
            d += " NAME " + _qdescrs(self.names)
        if self.desc is not None:
            d += " DESC " + _qd(self.desc)
        if self.obsolete:
            d += " OBSOLETE"
        if self.sup:
            d += " SUP " + _oids(self.sup)
        d += " " + self.kind
        if self.must:
            d += " MUST " + _oids(self.must)
        if self.may:
            d += " MAY " + _oids(self.may)
        return d + _extensions(self.extensions) + " )"

    def __repr__(self):
        return f"<ObjectClass {self.name} {self.oid}>"


# --------------------------------------------------------------------------
# Parser for OpenLDAP .schema files


class _Quoted(str):
    """A token that was a quoted string."""


def _unescape(s: str) -> str:
    # RFC 4512 qdstring escapes: \27 is a quote, \5C a backslash
    if "\\" not in s:
        return s
    return re.sub(r"\\(27|5[cC])", lambda m: "'" if m.group(1) == "27" else "\\", s)


def _tokenize(text: str) -> list:
    tokens, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()$":
            tokens.append(c)
            i += 1
        elif c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise ValueError("unterminated quoted string")
            tokens.append(_Quoted(_unescape(text[i + 1:j])))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "()$'":
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


class _Tokens:
    def __init__(self, tokens):
        self.tokens, self.pos = tokens, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self, what="token"):
        tok = self.peek()
        if tok is None:
            raise ValueError(f"unexpected end of definition, expected {what}")
        self.pos += 1
        return tok

    def word(self, what):
        tok = self.next(what)
        if tok in ("(", ")", "$"):
            raise ValueError(f"expected {what}, got {tok!r}")
        return str(tok)

    def qdstrings(self, what):
        tok = self.next(what)
        if isinstance(tok, _Quoted):
            return (str(tok),)
        if tok != "(":
            raise ValueError(f"expected quoted {what}, got {tok!r}")
        out = []
        while (tok := self.next(what)) != ")":
            if not isinstance(tok, _Quoted):
                raise ValueError(f"expected quoted {what}, got {tok!r}")
            out.append(str(tok))
        return tuple(out)

    def oids(self, what):
        tok = self.next(what)
        if tok != "(":
            if tok in (")", "$"):
                raise ValueError(f"expected {what}, got {tok!r}")
            return (str(tok),)
        out = []
        while (tok := self.next(what)) != ")":
            if tok != "$":
                if tok == "(":
                    raise ValueError(f"unexpected '(' in {what} list")
                out.append(str(tok))
        if not out:
            raise ValueError(f"empty {what} list")
        return tuple(out)


def _statements(text: str, path: str):
    """(line number, text) of each statement; lines starting with white space continue one."""
    parts, start = None, 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace():
            if parts is None:
                raise SchemaError(f"{path}:{lineno}: continuation line without a statement")
            parts.append(line)
            continue
        if parts:
            yield start, " ".join(parts)
        parts, start = [line], lineno
    if parts:
        yield start, " ".join(parts)


_AT_FLAGS = {"SINGLE-VALUE": "single_value", "COLLECTIVE": "collective",
             "NO-USER-MODIFICATION": "no_user_modification", "OBSOLETE": "obsolete"}


# --------------------------------------------------------------------------
# The schema


class Schema:
    """Attribute types and object classes, with matching and checking helpers."""

    def __init__(self):
        self._at: dict[str, AttributeType] = {}
        self._oc: dict[str, ObjectClass] = {}
        self._macros: dict[str, str] = {}
        self._pending_at: list[AttributeType] = []
        self._pending_oc: list[ObjectClass] = []
        self.attribute_types: list[AttributeType] = []
        self.object_classes: list[ObjectClass] = []
        self._dn_normalizer = _fallback_dn_normalizer
        self.syntaxes: dict[str, Syntax] = {}
        for oid, desc, check, binary in _SYNTAXES:
            oid = oid if "." in oid else _SYNTAX_PREFIX + oid
            self.syntaxes[oid] = Syntax(oid, desc, check or _ok_any, binary)
        self.syntaxes[_DN_SYNTAX]._check = self._ok_dn
        self.syntaxes[_NAME_UID_SYNTAX]._check = self._ok_name_uid
        keys = self._rule_keys()
        self.matching_rules: dict[str, MatchingRule] = {}
        for oid, name, syntax, kind, key in _RULES:
            rule = MatchingRule(oid, name, syntax, kind, keys[key])
            self.matching_rules[name.lower()] = self.matching_rules[oid] = rule
        self._subschema = None
        self._extensible = None
        self._objectclass_at = None
        # what was loaded, for cn=Subschema's modifyTimestamp: a digest of the files'
        # names and text (changes with the schema, not with a checkout's mtimes)
        self.digest = ""
        self.stamps: dict[str, bytes] = {}  # createTimestamp/modifyTimestamp, set by the directory

    # -- loading ---------------------------------------------------------

    @classmethod
    def load(cls, paths) -> "Schema":
        """Load .schema files and/or directories (their *.schema files, sorted by name)."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        schema = cls()
        digest = hashlib.sha256()
        for path in paths:
            path = os.fspath(path)
            if os.path.isdir(path):
                files = sorted(os.path.join(path, f) for f in os.listdir(path)
                               if f.endswith(".schema"))
            else:
                files = [path]
            for file in files:
                try:
                    with open(file, encoding="utf-8") as fh:
                        text = fh.read()
                except (OSError, UnicodeDecodeError) as exc:
                    raise SchemaError(f"{file}:0: cannot read: {exc}") from None
                schema._parse(text, file)
                digest.update(os.path.basename(file).encode() + b"\0" + text.encode() + b"\0")
        schema._link()
        schema.digest = digest.hexdigest()
        return schema

    @classmethod
    def from_string(cls, text: str, source: str = "<string>") -> "Schema":
        """A schema from .schema text (tests, embedded definitions)."""
        schema = cls()
        schema._parse(text, source)
        schema._link()
        schema.digest = hashlib.sha256(text.encode()).hexdigest()
        return schema

    def _parse(self, text: str, path: str):
        for lineno, stmt in _statements(text, path):
            try:
                self._statement(stmt, (path, lineno))
            except ValueError as exc:
                raise SchemaError(f"{path}:{lineno}: {exc}") from None

    def _statement(self, stmt: str, source):
        keyword, rest = (stmt.split(None, 1) + [""])[:2]
        keyword = keyword.lower()
        if keyword == "objectidentifier":
            args = rest.split()
            if len(args) != 2 or not _is_descr(args[0]):
                raise ValueError("objectidentifier needs a name and an OID")
            if args[0].lower() in self._macros:
                raise ValueError(f"objectidentifier {args[0]!r} already defined")
            self._macros[args[0].lower()] = self._expand_oid(args[1])
        elif keyword == "attributetype":
            self._pending_at.append(self._parse_attributetype(rest, source))
        elif keyword == "objectclass":
            self._pending_oc.append(self._parse_objectclass(rest, source))
        else:
            raise ValueError(f"unknown directive {keyword!r}")

    def _expand_oid(self, tok: str) -> str:
        """A numeric OID from 'n.n.n', 'Macro' or 'Macro:n.n' (OpenLDAP objectidentifier)."""
        if _is_numericoid(tok):
            return tok
        name, colon, suffix = tok.partition(":")
        base = self._macros.get(name.lower())
        if base is None:
            raise ValueError(f"OID {tok!r} is neither numeric nor a defined objectidentifier")
        if colon:
            if not _is_numericoid(suffix):
                raise ValueError(f"bad OID suffix in {tok!r}")
            return f"{base}.{suffix}"
        return base

    def _start(self, text):
        toks = _Tokens(_tokenize(text))
        if toks.next("'('") != "(":
            raise ValueError("definition must start with '('")
        return toks, self._expand_oid(toks.word("OID"))

    @staticmethod
    def _names(toks):
        names = toks.qdstrings("NAME")
        for n in names:
            if not _is_descr(n):
                raise ValueError(f"bad name {n!r}")
        return names

    def _parse_attributetype(self, text, source) -> AttributeType:
        toks, oid = self._start(text)
        f = {"oid": oid, "source": source}
        exts, seen = [], set()
        while (tok := toks.next("')'")) != ")":
            key = str(tok).upper()
            if key in seen:
                raise ValueError(f"{key} given twice")
            seen.add(key)
            if key == "NAME":
                f["names"] = self._names(toks)
            elif key == "DESC":
                f["desc"] = toks.qdstrings("DESC")[0]
            elif key == "SUP":
                f["sup"] = toks.word("SUP")
            elif key in ("EQUALITY", "ORDERING", "SUBSTR"):
                f[key.lower()] = toks.word(key)
            elif key == "SYNTAX":
                oid_len = toks.word("SYNTAX")
                if isinstance(toks.tokens[toks.pos - 1], _Quoted) and str(toks.peek()).startswith("{"):
                    oid_len += toks.next()  # SYNTAX '1.2.3'{64}, as some published LDIF has it
                syntax, brace, length = oid_len.partition("{")
                if brace:
                    if not length.endswith("}") or not length[:-1].isdigit():
                        raise ValueError(f"bad SYNTAX {oid_len!r}")
                    f["syntax_len"] = int(length[:-1])
                f["syntax"] = self._expand_oid(syntax)
            elif key in _AT_FLAGS:
                f[_AT_FLAGS[key]] = True
            elif key == "USAGE":
                usage = toks.word("USAGE")
                match = [u for u in USAGES if u.lower() == usage.lower()]
                if not match:
                    raise ValueError(f"unknown USAGE {usage!r}")
                f["usage"] = match[0]
            elif key.startswith("X-"):
                exts.append((str(tok), toks.qdstrings(key)))
            else:
                raise ValueError(f"unexpected {str(tok)!r} in attributetype")
        if toks.peek() is not None:
            raise ValueError("text after the closing ')'")
        return AttributeType(extensions=exts, **f)

    def _parse_objectclass(self, text, source) -> ObjectClass:
        toks, oid = self._start(text)
        f = {"oid": oid, "source": source}
        exts, seen = [], set()
        while (tok := toks.next("')'")) != ")":
            key = str(tok).upper()
            if key in seen or (key in _KINDS and "kind" in f):
                raise ValueError(f"{key} given twice")
            seen.add(key)
            if key == "NAME":
                f["names"] = self._names(toks)
            elif key == "DESC":
                f["desc"] = toks.qdstrings("DESC")[0]
            elif key == "OBSOLETE":
                f["obsolete"] = True
            elif key == "SUP":
                f["sup"] = toks.oids("SUP")
            elif key in _KINDS:
                f["kind"] = key
            elif key in ("MUST", "MAY"):
                f[key.lower()] = toks.oids(key)
            elif key.startswith("X-"):
                exts.append((str(tok), toks.qdstrings(key)))
            else:
                raise ValueError(f"unexpected {str(tok)!r} in objectclass")
        if toks.peek() is not None:
            raise ValueError("text after the closing ')'")
        return ObjectClass(extensions=exts, **f)

    # -- linking ---------------------------------------------------------

    def _link(self):
        """Register parsed definitions, resolve references and inheritance."""
        for at in self._pending_at:
            self._register(self._at, at, "attribute type")
        for oc in self._pending_oc:
            self._register(self._oc, oc, "object class")
        ats, ocs = self._pending_at, self._pending_oc
        self._pending_at, self._pending_oc = [], []
        for at in ats:
            self._resolve_at(at, ())
        for at in ats:
            self._bind(at)
        for oc in ocs:
            self._resolve_oc(oc, ())
        self.attribute_types.extend(ats)
        self.object_classes.extend(ocs)
        self._subschema = None
        self._extensible = self._oc.get("extensibleobject")
        self._objectclass_at = self._at.get("objectclass")

    @staticmethod
    def _register(table, item, what):
        keys = [item.oid] + [n.lower() for n in item.names]
        for key in keys:
            other = table.get(key)
            if other is not None and other is not item:
                raise SchemaError(f"{item.source[0]}:{item.source[1]}: {what} {key!r} already "
                                  f"defined at {other.source[0]}:{other.source[1]}")
        for key in keys:
            table[key] = item
        for n in item.names:  # exact-case hit first on the hot path
            table.setdefault(n, item)

    def _fail(self, item, reason):
        return SchemaError(f"{item.source[0]}:{item.source[1]}: {item.name}: {reason}")

    def _rule(self, at, name, kind):
        if name is None:
            return None
        rule = self.matching_rules.get(name.lower())
        if rule is None:
            raise self._fail(at, f"unknown matching rule {name!r}")
        if rule.kind != kind:
            raise self._fail(at, f"{rule.name} is not an {kind} rule")
        return rule.name

    def _resolve_at(self, at, seen):
        if at._resolved:
            return
        if at in seen:
            raise self._fail(at, "SUP cycle")
        eq, ordering, substr, syntax, syntax_len = at._declared
        eq, ordering = self._rule(at, eq, "equality"), self._rule(at, ordering, "ordering")
        substr = self._rule(at, substr, "substr")
        at._declared = (eq, ordering, substr, syntax, syntax_len)
        if syntax is not None and syntax not in self.syntaxes:
            raise self._fail(at, f"unknown syntax {syntax}")
        if at.sup is not None:
            sup = self._at.get(at.sup.lower())
            if sup is None:
                raise self._fail(at, f"SUP {at.sup!r} undefined")
            self._resolve_at(sup, seen + (at,))
            if sup.usage != at.usage:
                raise self._fail(at, "USAGE differs from its SUP")
            at.sup = sup.name
            eq, ordering = eq or sup.equality, ordering or sup.ordering
            substr, syntax = substr or sup.substr, syntax or sup.syntax
        if syntax is None:
            raise self._fail(at, "no SYNTAX and no SUP")
        if at.no_user_modification and at.usage == USER_APPLICATIONS:
            raise self._fail(at, "NO-USER-MODIFICATION requires an operational USAGE")
        at.equality, at.ordering, at.substr, at.syntax = eq, ordering, substr, syntax
        at._resolved = True

    def _resolve_oc(self, oc, seen):
        if oc.superclasses:
            return
        if oc in seen:
            raise self._fail(oc, "SUP cycle")
        sups = []
        for name in oc.sup:
            sup = self._oc.get(name.lower())
            if sup is None:
                raise self._fail(oc, f"SUP {name!r} undefined")
            if sup.kind != "ABSTRACT" and sup.kind != oc.kind:
                raise self._fail(oc, f"{oc.kind} class cannot inherit from {sup.kind} {sup.name}")
            self._resolve_oc(sup, seen + (oc,))
            sups.append(sup)
        oc.sup = tuple(sup.name for sup in sups)
        if not sups and oc.name.lower() != "top" and "top" in self._oc:
            sups.append(self._oc["top"])  # RFC 4512: top is the implied superclass

        def attrs(names, what):
            out = []
            for n in names:
                at = self._at.get(n.lower())
                if at is None:
                    raise self._fail(oc, f"{what} attribute type {n!r} undefined")
                if at.name not in out:
                    out.append(at.name)
            return tuple(out)

        oc.must, oc.may = attrs(oc.must, "MUST"), attrs(oc.may, "MAY")
        chain, must, may = [oc.name], list(oc.must), list(oc.may)
        for sup in sups:
            chain += [c for c in sup.superclasses if c not in chain]
            must += [a for a in sup.all_must if a not in must]
            may += [a for a in sup.all_may if a not in may]
        oc.superclasses, oc.all_must = tuple(chain), tuple(must)
        oc.all_may = tuple(a for a in may if a not in must)
        oc.allowed = frozenset(must) | frozenset(may)

    def _bind(self, at):
        """Give the attribute type its precomputed matching callables."""
        name = at.name
        eq = self.matching_rules[at.equality.lower()].key if at.equality else None
        order = self.matching_rules[at.ordering.lower()].key if at.ordering else None
        sub = self.matching_rules[at.substr.lower()].key if at.substr else None

        def normalize(value):
            try:
                return eq(value)
            except ValueError:
                raise LDAPError(_INVALID, f"{name}: value invalid per syntax") from None

        def normalize_or_none(value):
            try:
                return eq(value)
            except ValueError:
                return None

        def substr_key(value, piece=None):
            try:
                return sub(value, piece)
            except ValueError:
                return None

        def order_key(value):
            try:
                return order(value)
            except ValueError:
                return None

        if eq is not None and at.equality in _TEXT_RULES:
            prep = self.matching_rules[at.equality.lower()].key

            def approx_key(value):
                try:
                    return _phonetic(prep(value).lower())
                except ValueError:
                    return None
        else:
            approx_key = normalize_or_none

        at.normalize = normalize if eq else _none
        at.normalize_or_none = normalize_or_none if eq else _none
        at.approx_key = approx_key if eq else _none
        at.order_key = order_key if order else _none
        if sub:
            at.substr_key = substr_key
        syntax = self.syntaxes[at.syntax]
        # a check that returns a bool itself needs no validate() around it
        at.is_valid = syntax._check if syntax._check in _BOOL_CHECKS else syntax.validate

    # -- matching rule keys ---------------------------------------------

    def _rule_keys(self):
        def ignore(v):
            s = _text(v)
            if s.isascii():  # _spaces(_fold(s)) without the calls (every value of a load)
                return " ".join(s.lower().split())
            return _spaces(_fold(s))

        def exact(v):
            return _spaces(_exact(_text(v)))

        def ia5_ignore(v):
            s = _text(v)
            if not s.isascii():
                raise ValueError("not IA5")
            return " ".join(s.lower().split())  # _spaces(s.lower())

        def ia5_exact(v):
            return _spaces(_ascii(_text(v)))

        def numeric(v):
            s = _text(v).replace(" ", "")
            if not s.isdigit() or not s.isascii():
                raise ValueError("not a numeric string")
            return s

        def telephone(v):
            return _fold(_text(v)).replace(" ", "").replace("-", "")

        def postal(v):
            return "$".join(_spaces(_fold(line)) for line in _postal_lines(_text(v)))

        def postal_sub(v, piece=None):
            # RFC 4517: substrings match the concatenation of the lines
            return _spaces(_fold("".join(_postal_lines(_text(v)))), piece)

        def boolean(v):
            s = _text(v).strip().upper()
            if s not in ("TRUE", "FALSE"):
                raise ValueError("not a boolean")
            return s

        def bitstring(v):
            s = _text(v).strip()
            if not _is_bitstring(s):
                raise ValueError("not a bit string")
            return s

        def dn(v):
            try:
                return self._dn_normalizer(_text(v))
            except ValueError:
                raise
            except Exception as exc:  # LDAPError from the lead's DN parser
                raise ValueError(str(exc)) from None

        def unique_member(v):
            s = _text(v)
            base, sharp, uid = s.rpartition("#")
            if sharp and _is_bitstring(uid.strip()):
                return dn(base) + "#" + uid.strip()
            return dn(s)

        def oid(v):
            s = _text(v).strip()
            if _is_numericoid(s):
                return s
            key = s.lower()
            item = self._oc.get(key) or self._at.get(key) or self.matching_rules.get(key)
            if item is not None:
                return item.oid
            if not _is_descr(s):
                raise ValueError("not an OID")
            return key

        def octets(v):
            return _bytes(v)

        def octets_sub(v, piece=None):
            return _bytes(v)

        def uuid(v):
            return _uuid(_text(v))

        def time(v):
            return _gentime(_text(v).strip())

        return {
            "ignore": ignore, "exact": exact, "ia5_ignore": ia5_ignore, "ia5_exact": ia5_exact,
            "ignore_sub": lambda v, piece=None: _spaces(_fold(_text(v)), piece),
            "exact_sub": lambda v, piece=None: _spaces(_exact(_text(v)), piece),
            "ia5_ignore_sub": lambda v, piece=None: _spaces(_ascii(_text(v)).lower(), piece),
            "ia5_exact_sub": lambda v, piece=None: _spaces(_ascii(_text(v)), piece),
            "numeric": numeric, "numeric_sub": lambda v, piece=None: _text(v).replace(" ", ""),
            "telephone": telephone, "telephone_sub": lambda v, piece=None: telephone(v),
            "list": postal, "list_sub": postal_sub,
            "boolean": boolean, "integer": lambda v: _integer(_text(v)),
            "integer_order": lambda v: int(_integer(_text(v))),
            "bitstring": bitstring, "octets": octets, "octets_sub": octets_sub,
            "dn": dn, "unique_member": unique_member, "oid": oid,
            "first_component": lambda v: _first_component(_text(v)),
            "uuid": uuid, "time": time,
        }

    def _ok_dn(self, value) -> bool:
        try:
            self._dn_normalizer(_text(value))
            return True
        except Exception:  # whatever the DN parser raises means "not a DN"
            return False

    def _ok_name_uid(self, value) -> bool:
        try:
            s = _text(value)
        except ValueError:
            return False
        base, sharp, uid = s.rpartition("#")
        if sharp and _is_bitstring(uid):
            s = base
        return self._ok_dn(s)

    @property
    def dn_normalizer(self):
        """callable(str) -> str for distinguishedNameMatch; raises on an invalid DN."""
        return self._dn_normalizer

    @dn_normalizer.setter
    def dn_normalizer(self, fn):
        self._dn_normalizer = fn

    # -- lookups -----------------------------------------------------------

    def attribute(self, name_or_oid: str) -> AttributeType | None:
        """Case-insensitive. The transfer option ';binary' is ignored; a description with
        any other option (';lang-en', tagging, RFC 4512 2.5) is not recognised: tagged
        values are not supported, and treating 'description;lang-en' as 'description'
        would store or match a tagged value as an untagged one."""
        at = self._at.get(name_or_oid)
        if at is None:
            key = name_or_oid.lower()
            if ";" in key:
                key, *options = key.split(";")
                if any(o != "binary" for o in options):
                    return None
                at = self._at.get(key)
                # RFC 4522: ';binary' only for the syntaxes that are transferred in BER
                # (certificates …); 'mail;binary' is not mail (slapd: undefined type)
                return at if at is not None and at.syntax in _BINARY_TRANSFER else None
            at = self._at.get(key)
        return at

    def matching_rule(self, name_or_oid: str) -> MatchingRule | None:
        return self.matching_rules.get(name_or_oid.lower())

    def rule_applies(self, rule: MatchingRule, at: AttributeType) -> bool:
        """Does the rule apply to the type? As published in matchingRuleUse: the
        type's syntax is the rule's, or the rule is one of the type's own."""
        return at.syntax == rule.syntax or rule.name in (at.equality, at.ordering, at.substr)

    def assertion_ok(self, rule: MatchingRule, value) -> bool:
        """Is the value valid in the rule's assertion syntax? (RFC 4511 4.5.1.7:
        an invalid assertion makes the filter item Undefined, a compare fail.)"""
        syntax = self.syntaxes.get(rule.syntax)
        try:
            return syntax is None or syntax.validate(value)
        except ValueError:
            return False

    def objectclass(self, name_or_oid: str) -> ObjectClass | None:
        oc = self._oc.get(name_or_oid)
        if oc is None:
            oc = self._oc.get(name_or_oid.strip().lower())
        return oc

    def _require(self, name: str) -> AttributeType:
        at = self.attribute(name)
        if at is None:
            raise LDAPError(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, f"{name}: attribute type undefined")
        return at

    def canonical(self, name: str) -> str:
        """The first NAME of the attribute type (';binary' dropped)."""
        return self._require(name).name

    def superclasses(self, oc_name) -> list[str]:
        """The class and all its superclasses (canonical names); [] if unknown."""
        oc = self.objectclass(_text(oc_name))
        return list(oc.superclasses) if oc else []

    # -- matching ----------------------------------------------------------

    def normalize(self, attr: str, value):
        """Equality key; None if the type has no EQUALITY rule; LDAPError 21 if invalid."""
        return self._require(attr).normalize(value)

    def normalize_or_none(self, attr: str, value):
        """Equality key, or None (unknown type, no rule, or a value that cannot match)."""
        at = self.attribute(attr)
        return at.normalize_or_none(value) if at else None

    def substr_key(self, attr: str, value, piece=None):
        """SUBSTR key of a value, or of a filter piece ('initial' | 'any' | 'final')."""
        at = self.attribute(attr)
        return at.substr_key(value, piece) if at else None

    def order_key(self, attr: str, value):
        at = self.attribute(attr)
        return at.order_key(value) if at else None

    def approx_key(self, attr: str, value):
        at = self.attribute(attr)
        return at.approx_key(value) if at else None

    # -- checking ------------------------------------------------------------

    def validate(self, attr: str, value, index: int = 0) -> None:
        at = self._require(attr)
        if not at.is_valid(value):
            raise LDAPError(_INVALID, f"{at.name}: value #{index} invalid per syntax")

    def _classes(self, values) -> list[ObjectClass]:
        classes = []
        for v in values:
            try:
                s = _text(v).strip()
            except ValueError:
                raise LDAPError(_INVALID, "objectClass: value invalid per syntax") from None
            oc = self.objectclass(s)
            if oc is None:
                raise LDAPError(_OCV, f"unrecognized objectClass '{s}'")
            if oc not in classes:
                classes.append(oc)
        return classes

    @staticmethod
    def _has_value(at, values, value) -> bool:
        key = at.normalize_or_none(value) if at.equality else None
        if key is None:
            value = _bytes(value)
            return any(_bytes(v) == value for v in values)
        return any(at.normalize_or_none(v) == key for v in values)

    @staticmethod
    def _most_specific(classes) -> ObjectClass:
        best = None
        for oc in classes:
            if oc.kind != "STRUCTURAL":
                continue
            if best is None or best.name in oc.superclasses:
                best = oc
            elif oc.name not in best.superclasses:
                raise LDAPError(_OCV, f"invalid structural object class chain ({best.name}/{oc.name})")
        if best is None:
            raise LDAPError(_OCV, "no structural object class provided")
        return best

    def structural_class(self, objectclasses) -> str:
        """The most specific structural class among objectClass values (for structuralObjectClass)."""
        return self._most_specific(self._classes(objectclasses)).name

    def check_entry(self, attrs: dict, rdn_attrs=(), keys=None, memo=None):
        """Check a complete entry against the schema, raising LDAPError like slapd.

        attrs maps attribute names (canonical or not) to lists of values.
        rdn_attrs are the entry's RDN (name, value) pairs, or bare names: like
        slapd, an RDN value missing from attrs counts as present.
        For a bulk load: `keys` (a dict) receives each attribute's equality keys
        (canonical name -> list), so indexing need not normalise again; `memo` (a
        dict kept across entries) remembers what each objectClass set implies.
        Returns the most specific structural class.
        """
        entry: dict[AttributeType, list] = {}
        shape = None  # bulk load: the attribute names, whose types and checks recur
        if memo is not None and not rdn_attrs:
            shape = (None, tuple(attrs))  # None: never an objectClass values key
            plan = memo.get(shape)
            if plan is None:
                plan = memo[shape] = tuple(self._require(name) for name in shape[1])
            for at, values in zip(plan, attrs.values()):
                if values:
                    got = entry.get(at)
                    # the caller's lists are only read (an RDN value would be added to a copy)
                    entry[at] = values if got is None else got + list(values)
                else:
                    shape = None  # an empty attribute: the set-level checks below run
        else:
            for name, values in attrs.items():
                if values:
                    entry.setdefault(self._require(name), []).extend(values)
        for rdn in rdn_attrs:
            name, value = rdn if isinstance(rdn, tuple) else (rdn, None)
            at = self._require(name)
            values = entry.setdefault(at, [])
            if value is None:
                if not values:
                    raise LDAPError(ResultCode.NAMING_VIOLATION,
                                    f"naming attribute '{at.name}' is not present in entry")
            elif not self._has_value(at, values, value):
                values.append(value)

        oc_at = self._objectclass_at
        # Values: syntax, then duplicates by the equality rule (slapd reports the first of a pair).
        for at, values in entry.items():
            if at is oc_at and memo is not None:
                try:
                    known = memo.get(tuple(values))
                except TypeError:
                    known = None
                if known is not None:  # these very values passed before
                    if keys is not None:
                        keys[at.name] = known[3]
                    continue
            if len(values) == 1:  # the common case: no duplicates to look for
                v = values[0]
                if not at.is_valid(v):
                    raise LDAPError(_INVALID, f"{at.name}: value #0 invalid per syntax")
                key = at.normalize_or_none(v) if at.equality else _bytes(v)
                if key is None:
                    raise LDAPError(_INVALID, f"{at.name}: value #0 invalid per syntax")
                if keys is not None and at.equality:
                    keys[at.name] = [key]
                continue
            seen = {}
            for i, v in enumerate(values):
                if not at.is_valid(v):
                    raise LDAPError(_INVALID, f"{at.name}: value #{i} invalid per syntax")
                key = at.normalize_or_none(v) if at.equality else _bytes(v)
                if key is None:
                    raise LDAPError(_INVALID, f"{at.name}: value #{i} invalid per syntax")
                if key in seen:
                    raise LDAPError(ResultCode.ATTRIBUTE_OR_VALUE_EXISTS,
                                    f"{at.name}: value #{seen[key]} provided more than once")
                seen[key] = i
            if at.single_value and len(values) > 1:
                raise LDAPError(ResultCode.CONSTRAINT_VIOLATION,
                                f"attribute '{at.name}' cannot have multiple values")
            if keys is not None and at.equality:
                keys[at.name] = list(seen)

        oc_values = entry.get(oc_at) if oc_at else None
        if not oc_values:
            raise LDAPError(_OCV, "no objectClass attribute")
        info = None
        if memo is not None:
            try:
                memo_key = tuple(oc_values)
                info = memo.get(memo_key)
            except TypeError:  # unhashable values: no memo
                memo = None
        if info is None:
            classes = self._classes(oc_values)
            best = self._most_specific(classes)
            if self._extensible is not None and self._extensible in classes:
                allowed = None
            else:
                allowed = frozenset().union(*(oc.allowed for oc in classes))
            info = (classes, best, allowed, [oc_at.normalize_or_none(v) for v in oc_values])
            if memo is not None:
                memo[memo_key] = info
        classes, best, allowed = info[:3]
        if shape is not None and memo is not None:
            # the same attribute types under the same classes passed before
            checked = (shape, memo_key)
            if checked in memo:
                return best

        present = {at.name for at in entry}
        for oc in classes:
            for name in oc.all_must:
                if name not in present:
                    raise LDAPError(_OCV, f"object class '{oc.name}' requires attribute '{name}'")

        if allowed is not None:
            for at in entry:
                if at.name not in allowed and not at.is_operational:
                    raise LDAPError(_OCV, f"attribute '{at.name}' not allowed")
        if shape is not None and memo is not None:
            memo[checked] = True
        return best

    # -- publication ---------------------------------------------------------

    def _matching_rule_uses(self):
        # rule_applies decides both what is published here and what an extensible
        # filter may use the rule on
        rules = {r.oid: r for r in self.matching_rules.values()}.values()
        out = []
        for rule in rules:
            applies = [at for at in self.attribute_types if self.rule_applies(rule, at)]
            if applies:
                names = tuple(at.name for at in applies)
                out.append(f"( {rule.oid} NAME '{rule.name}' APPLIES {_oids(names)} )")
        return out

    def subschema_entry(self) -> dict[str, list[bytes]]:
        """Attributes of cn=Subschema (RFC 4512 4.2), definitions as UTF-8 bytes."""
        if self._subschema is None:
            rules = {r.oid: r for r in self.matching_rules.values()}.values()
            enc = lambda defs: [d.encode("utf-8") for d in defs]  # noqa: E731
            self._subschema = {
                "objectClass": [b"top", b"subentry", b"subschema"],
                "cn": [b"Subschema"],
                "ldapSyntaxes": enc(s.definition() for s in self.syntaxes.values()),
                "matchingRules": enc(r.definition() for r in rules),
                "matchingRuleUse": enc(self._matching_rule_uses()),
                "attributeTypes": enc(at.definition() for at in self.attribute_types),
                "objectClasses": enc(oc.definition() for oc in self.object_classes),
            }
        out = {k: list(v) for k, v in self._subschema.items()}
        out.update((k, [v]) for k, v in self.stamps.items())
        return out
