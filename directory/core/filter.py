"""Search filters: evaluation against entries (three-valued, RFC 4511 4.5.1.7) and
candidate selection from the indexes.

A filter arrives as the AST of directory.server.ber:
  ('and', [f…]) ('or', [f…]) ('not', f) ('eq'|'ge'|'le'|'approx', attr, value)
  ('present', attr) ('sub', attr, initial, [any…], final) ('ext', rule, attr, value, dnattrs)
`compile_filter` turns it into a closure over pre-normalised assertion values, so a
search normalises its assertion once, not once per candidate.
"""
from ..store.base import Eq, Present, Substring
from .errors import LDAPError, ResultCode

TRUE, FALSE, UNDEFINED = True, False, None


def _and(results):
    seen_undef = False
    for r in results:
        if r is FALSE:
            return FALSE
        if r is UNDEFINED:
            seen_undef = True
    return UNDEFINED if seen_undef else TRUE


class FilterCompiler:
    """Builds evaluators. `values(entry, attr)` yields the entry's values for a
    canonical attribute name, including virtual ones (entryDN, hasSubordinates)."""

    def __init__(self, directory):
        self.d = directory
        self.schema = directory.schema

    def compile(self, ast):
        kind = ast[0]
        if kind in ("and", "or"):
            parts = [self.compile(f) for f in ast[1]]
            if kind == "and":
                return lambda e, hidden: _and(p(e, hidden) for p in parts)

            def _or(e, hidden):
                undef = False
                for p in parts:
                    r = p(e, hidden)
                    if r is TRUE:
                        return TRUE
                    if r is UNDEFINED:
                        undef = True
                return UNDEFINED if undef else FALSE

            return _or
        if kind == "not":
            inner = self.compile(ast[1])

            def _not(e, hidden):
                r = inner(e, hidden)
                return UNDEFINED if r is UNDEFINED else not r

            return _not
        if kind == "ext":
            return self._extensible(*ast[1:])
        at = self.schema.attribute(ast[1])
        if at is None:
            return lambda e, hidden: UNDEFINED  # RFC 4511: unrecognised type is Undefined
        names = self.d.subtypes(at.name)
        values = self.d.values_for_filter
        if kind == "present":
            return lambda e, hidden: any(values(e, n) for n in names if n not in hidden)
        if kind == "eq":
            return self._equality(at, names, ast[2])
        if kind in ("ge", "le"):
            return self._ordering(at, names, kind, ast[2])
        if kind == "sub":
            return self._substrings(at, names, ast[2], ast[3], ast[4])
        if kind == "approx":
            return self._approx(at, names, ast[2])
        raise LDAPError(ResultCode.PROTOCOL_ERROR, f"unknown filter type {kind!r}")

    def _equality(self, at, names, value):
        if at.name == "objectClass":
            # (objectClass=person) also matches entries of its subclasses
            oc = self.schema.objectclass(value.decode("utf-8", "replace"))
            if oc is None:
                return lambda e, hidden: FALSE
            target = oc.name.lower()
            closure = self.d.objectclass_closure
            return lambda e, hidden: target in closure(e)
        key = self.schema.normalize_or_none(at.name, value)
        if key is None:
            return lambda e, hidden: UNDEFINED
        keys_of = self.d.keys_of

        def _eq(e, hidden):
            for n in names:
                if n not in hidden:
                    ks = keys_of(e, n)
                    if ks and key in ks:
                        return TRUE
            return FALSE

        return _eq

    def _ordering(self, at, names, kind, value):
        if self.schema.attribute(at.name).ordering is None and at.equality is None:
            return lambda e, hidden: UNDEFINED
        try:
            bound = self.schema.order_key(at.name, value)
        except LDAPError:
            bound = None
        if bound is None:
            return lambda e, hidden: UNDEFINED
        values = self.d.values_for_filter
        order_key = self.schema.order_key
        ge = kind == "ge"

        def _ord(e, hidden):
            for n in names:
                if n in hidden:
                    continue
                for v in values(e, n):
                    try:
                        k = order_key(n, v)
                    except LDAPError:
                        continue
                    if k is None:
                        continue
                    try:
                        if (k >= bound) if ge else (k <= bound):
                            return TRUE
                    except TypeError:
                        continue
            return FALSE

        return _ord

    def _substrings(self, at, names, initial, anys, final):
        sk = self.schema.substr_key

        def norm(piece, where):
            if piece is None:
                return None
            k = sk(at.name, piece, where)
            if k is None:
                raise LDAPError(ResultCode.INAPPROPRIATE_MATCHING, f"{at.name}: no substring matching rule")
            return k if isinstance(k, str) else k.decode("utf-8", "replace")

        try:
            ini, fin = norm(initial, "initial"), norm(final, "final")
            mids = [norm(a, "any") for a in anys]
        except LDAPError:
            return lambda e, hidden: UNDEFINED
        values = self.d.values_for_filter

        def match(s):
            pos = 0
            if ini is not None:
                if not s.startswith(ini):
                    return False
                pos = len(ini)
            end = len(s)
            if fin is not None:
                if len(s) - len(fin) < pos or not s.endswith(fin):
                    return False
                end = len(s) - len(fin)
            for m in mids:
                i = s.find(m, pos, end)
                if i < 0:
                    return False
                pos = i + len(m)
            return True

        def _sub(e, hidden):
            for n in names:
                if n in hidden:
                    continue
                for v in values(e, n):
                    k = sk(n, v)
                    if k is None:
                        continue
                    if isinstance(k, bytes):
                        k = k.decode("utf-8", "replace")
                    if match(k):
                        return TRUE
            return FALSE

        return _sub

    def _approx(self, at, names, value):
        key = self.schema.approx_key(at.name, value)
        if key is None:
            return lambda e, hidden: UNDEFINED
        values = self.d.values_for_filter
        ak = self.schema.approx_key
        return lambda e, hidden: any(
            ak(n, v) == key for n in names if n not in hidden for v in values(e, n)
        )

    def _extensible(self, rule, attr, value, dnattrs):
        rule_fn = _RULES.get((rule or "").lower()) if rule else None
        if rule and rule_fn is None:
            return lambda e, hidden: UNDEFINED  # unknown matching rule: Undefined
        schema = self.schema
        names = None
        if attr:
            at = schema.attribute(attr)
            if at is None:
                return lambda e, hidden: UNDEFINED
            names = self.d.subtypes(at.name)
        values = self.d.values_for_filter

        def test(n, v):
            if rule_fn is not None:
                return rule_fn(v, value)
            a = schema.normalize_or_none(n, value)
            return a is not None and schema.normalize_or_none(n, v) == a

        def _ext(e, hidden):
            candidates = names if names is not None else [n for n in e.attrs]
            for n in candidates:
                if n in hidden:
                    continue
                for v in values(e, n):
                    try:
                        if test(n, v):
                            return TRUE
                    except (ValueError, LDAPError):
                        continue
            if dnattrs:
                for rdn in self.d.parse_dn(e.dn).rdns:
                    for t, v in rdn:
                        if names is not None and schema.attribute(t) is not None and schema.attribute(t).name not in names:
                            continue
                        try:
                            if test(schema.canonical(t), v.encode()):
                                return TRUE
                        except (ValueError, LDAPError):
                            continue
            return FALSE

        return _ext


def _fold(b: bytes) -> str:
    return " ".join(b.decode("utf-8", "replace").split()).casefold()


def _int(b: bytes) -> int:
    return int(b.decode("ascii").strip())


# Matching rules usable by name or OID in extensible filters, e.g. (cn:caseExactMatch:=Smith),
# (userAccountControl:1.2.840.113556.1.4.803:=2).
_RULE_TABLE = {
    ("caseignorematch", "2.5.13.2"): lambda v, a: _fold(v) == _fold(a),
    ("caseexactmatch", "2.5.13.5"): lambda v, a: " ".join(v.decode().split()) == " ".join(a.decode().split()),
    ("caseignoreia5match", "1.3.6.1.4.1.1466.109.114.2"): lambda v, a: _fold(v) == _fold(a),
    ("caseexactia5match", "1.3.6.1.4.1.1466.109.114.1"): lambda v, a: v.strip() == a.strip(),
    ("octetstringmatch", "2.5.13.17"): lambda v, a: v == a,
    ("integermatch", "2.5.13.14"): lambda v, a: _int(v) == _int(a),
    ("integerorderingmatch", "2.5.13.15"): lambda v, a: _int(v) < _int(a),
    ("numericstringmatch", "2.5.13.8"): lambda v, a: v.replace(b" ", b"") == a.replace(b" ", b""),
    ("caseignoresubstringsmatch", "2.5.13.4"): lambda v, a: _fold(a) in _fold(v),
    ("bitandmatch", "1.2.840.113556.1.4.803"): lambda v, a: _int(v) & _int(a) == _int(a),
    ("bitormatch", "1.2.840.113556.1.4.804"): lambda v, a: _int(v) & _int(a) != 0,
}
_RULES = {k: fn for keys, fn in _RULE_TABLE.items() for k in keys}
SUPPORTED_RULES = sorted({keys[0] for keys in _RULE_TABLE})


SMALL_ENOUGH = 64  # candidates below which further AND terms are not worth an index read


def _selectivity(ast) -> int:
    """Rough order in which AND terms narrow the candidates best."""
    kind = ast[0]
    if kind == "eq":
        return 3 if ast[1].lower() in ("objectclass", "2.5.4.0") else 0
    return {"sub": 1, "and": 1, "or": 2, "present": 4}.get(kind, 5)


class IndexPlanner:
    """Candidate entry ids for a filter from the configured indexes; None means
    the filter (or this part of it) cannot be answered from an index."""

    def __init__(self, directory):
        self.d = directory
        self.schema = directory.schema
        self.store = directory.store

    def candidates(self, ast):
        kind = ast[0]
        if kind == "and":
            # Most selective terms first; once the candidates are few, stop: every
            # candidate is checked against the whole filter anyway, and a term like
            # (objectClass=inetOrgPerson) would read an index row per person.
            best = None
            for f in sorted(ast[1], key=_selectivity):
                if best is not None and len(best) <= SMALL_ENOUGH:
                    break
                ids = self.candidates(f)
                if ids is None:
                    continue
                best = ids if best is None else best & ids
                if not best:
                    return best
            return best
        if kind == "or":
            out = set()
            for f in ast[1]:
                ids = self.candidates(f)
                if ids is None:
                    return None
                out |= ids
            return out
        if kind in ("not", "ext", "approx", "ge", "le"):
            return None
        at = self.schema.attribute(ast[1])
        if at is None:
            return set()  # an undefined attribute never matches
        kinds = self.d.index_kinds(at.name)
        if not kinds or len(self.d.subtypes(at.name)) > 1:
            return None
        if kind == "eq" and "eq" in kinds:
            if at.name == "objectClass":
                oc = self.schema.objectclass(ast[2].decode("utf-8", "replace"))
                return set(self.store.candidates(Eq("objectclass", oc.name.lower()))) if oc else set()
            key = self.schema.normalize_or_none(at.name, ast[2])
            if key is None:
                return None
            return set(self.store.candidates(Eq(at.name.lower(), self.d.index_key(key))))
        if kind == "present" and ("pres" in kinds or "eq" in kinds):
            if at.name == "objectClass":
                return None  # every entry: the scope decides
            return set(self.store.candidates(Present(at.name.lower())))
        if kind == "sub" and "sub" in kinds:
            return self._substring(at, ast[2], ast[3], ast[4])
        return None

    def _substring(self, at, initial, anys, final):
        pieces = []
        wheres = ["initial"] + ["any"] * len(anys) + ["final"]
        for p, where in zip([initial, *anys, final], wheres):
            if p is None:
                pieces.append(None)
                continue
            k = self.schema.substr_key(at.name, p, where)
            if k is None:
                return None
            pieces.append(k if isinstance(k, str) else k.decode("utf-8", "replace"))
        ini, *mids, fin = pieces
        ids = self.store.candidates(Substring(at.name.lower(), ini, tuple(mids), fin))
        return None if ids is None else set(ids)  # None: the store's index cannot answer it
