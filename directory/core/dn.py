"""Distinguished names: RFC 4514 string form, parsed into RDNs of (type, value) pairs.

A DN keeps what the client wrote (for display) and has a normalised form (for
lookups): attribute types mapped to their canonical lowercase name, values
normalised with the attribute's equality rule, AVAs of a multi-valued RDN sorted.
"""
import re
from functools import lru_cache

from .errors import LDAPError, ResultCode

_SPECIAL = set(',+"\\<>;=')
_HEX = "0123456789abcdefABCDEF"


class DN:
    """An immutable parsed DN: ``rdns`` is a tuple (leaf first) of tuples of (type, value)."""

    __slots__ = ("rdns",)

    def __init__(self, rdns=()):
        self.rdns = tuple(tuple(r) for r in rdns)

    @classmethod
    def parse(cls, text: str) -> "DN":
        return _parse(text)

    def __str__(self):
        return ",".join("+".join(f"{t}={escape_value(v)}" for t, v in rdn) for rdn in self.rdns)

    def __repr__(self):
        return f"DN({str(self)!r})"

    def __bool__(self):
        return bool(self.rdns)

    def __len__(self):
        return len(self.rdns)

    def __eq__(self, other):
        return isinstance(other, DN) and self.rdns == other.rdns

    def __hash__(self):
        return hash(self.rdns)

    @property
    def rdn(self):
        return self.rdns[0] if self.rdns else ()

    def parent(self) -> "DN":
        return DN(self.rdns[1:])

    def child(self, rdn) -> "DN":
        return DN((tuple(rdn),) + self.rdns)

    def rdn_str(self) -> str:
        return "+".join(f"{t}={escape_value(v)}" for t, v in self.rdn)


_NEEDS_ESCAPE = re.compile(r'[,+"\\<>;=\x00-\x1f\x7f]|^[ #]| $')


def escape_value(value: str) -> str:
    """RFC 4514 section 2.4 escaping of an attribute value."""
    if not _NEEDS_ESCAPE.search(value):
        return value
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in _SPECIAL or (i == 0 and ch in " #") or (i == last and ch == " "):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append("\\%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def _invalid(text, why):
    return LDAPError(ResultCode.INVALID_DN_SYNTAX, f"invalid DN {text!r}: {why}")


_PLAIN_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


@lru_cache(maxsize=65536)
def _parse(text: str) -> DN:
    # Fast path for the common DN with no escapes, quotes, '#' values, multi-valued
    # RDNs or odd spacing: plain splitting gives the same result as the full parser.
    if not any(c in text for c in '\\"+#;<> '):
        rdns = []
        for part in text.split(","):
            attr, eq, value = part.partition("=")
            if not eq or not value or not _PLAIN_TYPE.match(attr):
                break
            rdns.append(((attr, value),))
        else:
            return DN(rdns)
    return _parse_full(text)


def _parse_full(text: str) -> DN:
    rdns, rdn = [], []
    i, n = 0, len(text)
    if not text.strip():
        return DN()
    while True:
        # attribute type
        while i < n and text[i] == " ":
            i += 1
        start = i
        while i < n and text[i] not in "= ":
            i += 1
        attr = text[start:i]
        while i < n and text[i] == " ":
            i += 1
        if not attr or i >= n or text[i] != "=":
            raise _invalid(text, "expected attributeType=value")
        if not (attr[0].isalpha() and all(c.isalnum() or c == "-" for c in attr)) and not (
            attr[0].isdigit() and all(c.isdigit() or c == "." for c in attr)
        ):
            raise _invalid(text, f"bad attribute type {attr!r}")
        i += 1
        while i < n and text[i] == " ":
            i += 1
        # attribute value
        if i < n and text[i] == "#":
            start = i + 1
            i = start
            while i < n and text[i] in _HEX:
                i += 1
            hexstr = text[start:i]
            if not hexstr or len(hexstr) % 2:
                raise _invalid(text, "bad hex value")
            value = _ber_string(bytes.fromhex(hexstr), text)
        else:
            buf = bytearray()
            trailing_spaces = 0
            while i < n and text[i] not in ",+;":
                ch = text[i]
                if ch == "\\":
                    if i + 1 >= n:
                        raise _invalid(text, "dangling escape")
                    nxt = text[i + 1]
                    if nxt in _HEX and i + 2 < n and text[i + 2] in _HEX:
                        buf.append(int(text[i + 1 : i + 3], 16))
                        i += 3
                    elif nxt in _SPECIAL or nxt in " #=":
                        buf.extend(nxt.encode())
                        i += 2
                    else:
                        raise _invalid(text, f"bad escape \\{nxt}")
                    trailing_spaces = 0
                    continue
                if ch in '"<>':
                    raise _invalid(text, f"unescaped {ch!r}")
                buf.extend(ch.encode())
                trailing_spaces = trailing_spaces + 1 if ch == " " else 0
                i += 1
            if trailing_spaces:
                del buf[-trailing_spaces:]
            try:
                value = buf.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(text, "value is not UTF-8") from None
        rdn.append((attr, value))
        if i >= n:
            rdns.append(tuple(rdn))
            break
        sep = text[i]
        i += 1
        if sep in ",;":
            rdns.append(tuple(rdn))
            rdn = []
        if i >= n:
            raise _invalid(text, "empty RDN")
    return DN(rdns)


def _ber_string(data: bytes, text: str) -> str:
    # '#' form: a BER-encoded value; we accept primitive string types only.
    if len(data) < 2 or data[1] & 0x80 or data[1] != len(data) - 2:
        raise _invalid(text, "unsupported #BER value")
    try:
        return data[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(text, "#BER value is not UTF-8") from None


def parent_ndn(ndn: str) -> str:
    """The parent of a normalised DN (its first unescaped comma ends the RDN)."""
    i = ndn.find(",")
    while i > 0 and ndn[i - 1] == "\\":
        i = ndn.find(",", i + 1)
    return ndn[i + 1 :] if i >= 0 else ""


class DNNormalizer:
    """Normalises DNs with the schema: canonical lowercase attribute names and
    equality-normalised values; results are cached since the same DNs recur."""

    def __init__(self, schema):
        self.schema = schema
        self.normalize = lru_cache(maxsize=262144)(self._normalize)
        # RDNs recur (every entry below ou=people repeats it): cache them by value
        self._normalize_rdn = lru_cache(maxsize=262144)(self._normalize_rdn_uncached)

    def _normalize_rdn_uncached(self, rdn) -> str:
        parts, types = [], set()
        for attr, value in rdn:
            at = self.schema.attribute(attr)
            if at is None:
                raise LDAPError(ResultCode.INVALID_DN_SYNTAX, f"invalid DN: attribute type {attr!r} undefined")
            # as slapd: an RDN names each type once (cn=a+cn=b) and every value is non-empty
            if at.name in types:
                raise LDAPError(ResultCode.INVALID_DN_SYNTAX, f"invalid DN: {at.name} twice in one RDN")
            if not value:
                raise LDAPError(ResultCode.INVALID_DN_SYNTAX, f"invalid DN: empty value of {at.name}")
            types.add(at.name)
            key = self.schema.normalize_or_none(at.name, value.encode("utf-8"))
            if key is None:
                key = value.lower()
            elif isinstance(key, bytes):
                key = key.decode("utf-8", "replace")
            parts.append(f"{at.name.lower()}={escape_value(key)}")
        return "+".join(sorted(parts))

    def _normalize(self, text: str) -> str:
        return ",".join(self._normalize_rdn(r) for r in DN.parse(text).rdns)

    def rdn_keys(self, dn: DN) -> list[str]:
        """Normalised RDN strings, leaf first."""
        return [self._normalize_rdn(r) for r in dn.rdns]

    def rdn_of(self, rdn) -> str:
        return self._normalize_rdn(rdn)
