"""The filter AST and its RFC 4515 string form, shared by the core (access rules,
assertions, the command line's filters) and the server's BER codec
(directory/server/ber.py decodes BER filters into these same tuples).

Filter AST (tuples; attribute descriptions ``str`` as received, values ``bytes``)::

    ('and', [f, ...])  ('or', [f, ...])  ('not', f)
    ('eq', attr, value) ('ge', attr, value) ('le', attr, value) ('approx', attr, value)
    ('present', attr)
    ('sub', attr, initial_or_None, [any, ...], final_or_None)
    ('ext', matching_rule_or_None, attr_or_None, value, dn_attributes_bool)

Filters may nest at most :data:`MAX_FILTER_DEPTH` levels (the outermost filter is
level 1), in either form.
"""

from __future__ import annotations

import re

__all__ = ["MAX_FILTER_DEPTH", "filter_to_string", "parse_filter_string"]

MAX_FILTER_DEPTH = 64


def _escape_bytes_table() -> dict[int, str]:
    table = {c: f"\\{c:02x}" for c in range(0x20)}
    for c in b"*()\\\x7f":
        table[c] = f"\\{c:02x}"
    return table


_ESCAPES = _escape_bytes_table()


def _escape_value(v: bytes) -> str:
    """RFC 4515 assertion value: UTF-8 text kept, specials/control chars and
    bytes that are not valid UTF-8 escaped as \\xx."""
    try:
        return v.decode().translate(_ESCAPES)
    except UnicodeDecodeError:
        return "".join(chr(c) if 0x20 <= c < 0x7F and c not in _ESCAPES else f"\\{c:02x}" for c in v)


def filter_to_string(f: tuple) -> str:
    """RFC 4515 string for a filter AST (for logs, ACL configs and tests)."""
    kind = f[0]
    if kind == "eq":
        return f"({f[1]}={_escape_value(f[2])})"
    if kind == "and":
        return "(&" + "".join(filter_to_string(x) for x in f[1]) + ")"
    if kind == "or":
        return "(|" + "".join(filter_to_string(x) for x in f[1]) + ")"
    if kind == "not":
        return f"(!{filter_to_string(f[1])})"
    if kind == "present":
        return f"({f[1]}=*)"
    if kind == "ge":
        return f"({f[1]}>={_escape_value(f[2])})"
    if kind == "le":
        return f"({f[1]}<={_escape_value(f[2])})"
    if kind == "approx":
        return f"({f[1]}~={_escape_value(f[2])})"
    if kind == "sub":
        _, attr, initial, anys, final = f
        pieces = [_escape_value(initial) if initial is not None else ""]
        pieces.extend(_escape_value(x) for x in anys)
        pieces.append(_escape_value(final) if final is not None else "")
        return f"({attr}={'*'.join(pieces)})"
    if kind == "ext":
        _, rule, attr, value, dn_attrs = f
        return "({}{}{}:={})".format(
            attr or "", ":dn" if dn_attrs else "", f":{rule}" if rule else "", _escape_value(value)
        )
    raise ValueError(f"unknown filter kind {kind!r}")


_ATTR_RE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*\Z")
_OID_RE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)\Z")
_HEX2_RE = re.compile(r"[0-9A-Fa-f]{2}")


class _FilterParser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def fail(self, msg: str, at: int | None = None):
        at = self.i if at is None else at
        raise ValueError(f"bad LDAP filter '{self.s}' at position {at}: {msg}")

    def filter(self, depth: int) -> tuple:
        s = self.s
        if depth > MAX_FILTER_DEPTH:
            self.fail(f"filter nested deeper than {MAX_FILTER_DEPTH} levels")
        if self.i >= len(s) or s[self.i] != "(":
            self.fail("expected '('")
        self.i += 1
        c = s[self.i : self.i + 1]
        if c == "&" or c == "|":
            self.i += 1
            subs = []
            while self.i < len(s) and s[self.i] == "(":
                subs.append(self.filter(depth + 1))
            result = ("and" if c == "&" else "or", subs)
        elif c == "!":
            self.i += 1
            result = ("not", self.filter(depth + 1))
        else:
            result = self.item()
        if self.i >= len(s) or s[self.i] != ")":
            self.fail("expected ')'")
        self.i += 1
        return result

    def item(self) -> tuple:
        s = self.s
        start = self.i
        stop = s.find(")", start)
        if stop < 0:
            self.fail("missing ')'")
        text = s[start:stop]
        bad = text.find("(")
        if bad >= 0:
            self.fail("unescaped '(' in filter item (write it as \\28)", start + bad)
        eq = text.find("=")
        if eq < 0:
            self.fail("missing '=' in filter item", start)
        lhs, rhs = text[:eq], text[eq + 1 :]
        self.i = stop
        op = lhs[-1:]
        if op == ":":
            return self.extensible(lhs[:-1], rhs, start)
        if op in ("~", ">", "<"):
            attr = self.attr(lhs[:-1], start)
            if "*" in rhs:
                self.fail("unescaped '*' in assertion value (write it as \\2a)", start + eq + 1 + rhs.index("*"))
            kind = {"~": "approx", ">": "ge", "<": "le"}[op]
            return (kind, attr, self.value(rhs, start + eq + 1))
        attr = self.attr(lhs, start)
        if "*" not in rhs:
            return ("eq", attr, self.value(rhs, start + eq + 1))
        if rhs == "*":
            return ("present", attr)
        pieces = rhs.split("*")
        pos = start + eq + 1
        values = []
        for p in pieces:
            values.append(self.value(p, pos))
            pos += len(p) + 1
        initial = values[0] if pieces[0] else None
        final = values[-1] if pieces[-1] else None
        anys = [v for p, v in zip(pieces[1:-1], values[1:-1]) if p]
        return ("sub", attr, initial, anys, final)

    def extensible(self, lhs: str, rhs: str, start: int) -> tuple:
        parts = lhs.split(":")
        attr = parts[0] or None
        rest = parts[1:]
        dn_attrs = False
        if rest and rest[0].lower() == "dn":
            dn_attrs = True
            rest = rest[1:]
        if len(rest) > 1:
            self.fail("too many ':' in extensible match", start)
        rule = rest[0] if rest else None
        if attr is not None:
            self.attr(attr, start)
        if rule is not None and not _OID_RE.match(rule):
            self.fail(f"bad matching rule {rule!r}", start)
        if attr is None and rule is None:
            self.fail("extensible match needs an attribute or a matching rule", start)
        if "*" in rhs:
            self.fail("unescaped '*' in assertion value (write it as \\2a)", start)
        return ("ext", rule, attr, self.value(rhs, start + len(lhs) + 2), dn_attrs)

    def attr(self, text: str, at: int) -> str:
        if not _ATTR_RE.match(text):
            self.fail(f"bad attribute description {text!r}", at)
        return text

    def value(self, text: str, at: int) -> bytes:
        if "\\" not in text:
            return text.encode()
        chunks = text.split("\\")
        out = [chunks[0].encode()]
        pos = at + len(chunks[0])
        for chunk in chunks[1:]:
            if not _HEX2_RE.match(chunk):
                self.fail("'\\' must be followed by two hex digits", pos)
            out.append(bytes.fromhex(chunk[:2]))
            out.append(chunk[2:].encode())
            pos += len(chunk) + 1
        return b"".join(out)


def parse_filter_string(s: str) -> tuple:
    """Parse an RFC 4515 filter string into the filter AST.

    ``\\XX`` escapes become raw octets, other characters are UTF-8 encoded; a
    bare item without the outer parentheses (``uid=jsmith``) is accepted.
    Raises ValueError with the position of the problem on bad syntax.
    """
    if not isinstance(s, str):
        raise ValueError(f"filter must be a string, not {type(s).__name__}")
    text = s.strip()
    if not text:
        raise ValueError("empty LDAP filter")
    if text[0] != "(":
        text = f"({text})"
    p = _FilterParser(text)
    result = p.filter(1)
    if p.i != len(text):
        p.fail("unexpected text after the filter")
    return result
