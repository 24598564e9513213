"""Search filters: evaluation against entries (three-valued, RFC 4511 4.5.1.7) and
candidate selection from the indexes.

A filter arrives as the AST of directory.server.ber:
  ('and', [f…]) ('or', [f…]) ('not', f) ('eq'|'ge'|'le'|'approx', attr, value)
  ('present', attr) ('sub', attr, initial, [any…], final) ('ext', rule, attr, value, dnattrs)
`compile_filter` turns it into a closure over pre-normalised assertion values, so a
search normalises its assertion once, not once per candidate.
"""
from ..store.base import Eq, Prefix, Present, Substring
from .errors import LDAPError, ResultCode
from .schema import MatchingRule

TRUE, FALSE, UNDEFINED = True, False, None
_OID_SYNTAX = "1.3.6.1.4.1.1466.115.121.1.38"
_INTEGER_SYNTAX = "1.3.6.1.4.1.1466.115.121.1.27"


def undefined(e, hidden):
    """The evaluator of an item that is Undefined for every entry (unknown type,
    inapplicable rule, assertion invalid in its syntax): the planner answers it
    from no candidates instead of scanning."""
    return UNDEFINED


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
        self._applies_cache = {}
        self._leaves = {}  # item (not and/or/not) -> its evaluator: a pure function of the item

    def compile(self, ast):
        """The evaluator of a filter. An item's is kept (bounded) for the planner's
        look at the same item and for the next request with it."""
        kind = ast[0]
        if kind in ("and", "or", "not"):
            return self._compile(ast)
        key = ast
        if kind == "sub" and ast[3].__class__ is list:
            # the decoder's list of `any` pieces: keyed as a tuple, so a substring
            # item is compiled once, not once per request and again by the planner
            key = (kind, ast[1], ast[2], tuple(ast[3]), ast[4])
        try:
            got = self._leaves.get(key)
        except TypeError:  # an unhashable AST
            return self._compile(ast)
        if got is None:
            if len(self._leaves) >= 4096:
                self._leaves.clear()
            got = self._leaves[key] = self._compile(ast)
        return got

    def _compile(self, ast):
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
            return undefined  # RFC 4511: unrecognised type is Undefined
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
            oc = self.objectclass_assertion(value)
            if oc is None:
                return undefined
            if oc is False:
                return lambda e, hidden: FALSE
            target = oc.name.lower()
            closure = self.d.objectclass_closure
            return lambda e, hidden: target in closure(e)
        rule = self.schema.matching_rule(at.equality) if at.equality else None
        if rule is None or not self.schema.assertion_ok(rule, value):
            return undefined  # no equality rule, or e.g. (uidNumber=01234): RFC 4511 4.5.1.7
        key = self.schema.normalize_or_none(at.name, value)
        if key is None:
            return undefined
        keys_of = self.d.keys_of

        def _eq(e, hidden):
            for n in names:
                if n not in hidden:
                    ks = keys_of(e, n)
                    if ks and key in ks:
                        return TRUE
            return FALSE

        _eq.key = key  # the planner's index key: the assertion is normalized once
        return _eq

    def objectclass_assertion(self, value):
        """The class an objectClass assertion names; None when the assertion is
        Undefined (not an OID, or an unknown name), False for an unknown numeric
        OID (valid, it just names no class here: it matches nothing)."""
        if not self.schema.syntaxes[_OID_SYNTAX].validate(value):
            return None
        oc = self.schema.objectclass(value.decode("ascii"))
        if oc is not None:
            return oc
        return False if value[:1].isdigit() else None

    def _ordering(self, at, names, kind, value):
        if self.schema.attribute(at.name).ordering is None and at.equality is None:
            return undefined
        rule = self.schema.matching_rule(at.ordering or at.equality)
        if not self.schema.assertion_ok(rule, value):
            return undefined  # (uidNumber>=01000) is not an INTEGER assertion
        try:
            bound = self.schema.order_key(at.name, value)
        except LDAPError:
            bound = None
        if bound is None:
            return undefined
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
            return undefined
        values = self.d.values_for_filter

        match = _matcher(ini, mids, fin)
        # types whose equality keys are their substring keys: the entry's cached
        # equality keys are matched, nothing is prepared again per search
        by_keys = frozenset(n for n in names if _same_keys(self.schema.attribute(n)))
        keys_of = self.d.keys_of

        def _sub(e, hidden):
            for n in names:
                if n in hidden:
                    continue
                if n in by_keys:
                    for k in keys_of(e, n):
                        if match(k):
                            return TRUE
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
        rule = self.schema.matching_rule(at.equality) if at.equality else None
        if rule is None or not self.schema.assertion_ok(rule, value):
            return undefined  # approximate matching uses the equality rule's assertion syntax
        key = self.schema.approx_key(at.name, value)
        if key is None:
            return undefined
        values = self.d.values_for_filter
        ak = self.schema.approx_key
        return lambda e, hidden: any(
            ak(n, v) == key for n in names if n not in hidden for v in values(e, n)
        )

    def _extensible(self, rule_name, attr, value, dnattrs):
        """RFC 4511 4.5.1.7.7. The rule applies to the types matchingRuleUse lists
        (a type of the rule's syntax, or whose own rule it is); elsewhere, and for an
        assertion invalid in the rule's syntax, the item is Undefined."""
        schema = self.schema
        at = schema.attribute(attr) if attr else None
        if attr and at is None:
            return undefined
        names = self.d.subtypes(at.name) if at is not None else None
        if rule_name is None:
            # no rule: the attribute's equality, as (attr=value) (superclasses included
            # for objectClass); with :dn: the RDN values of that type count too
            plain = self._equality(at, names, value)
            if not dnattrs or plain is undefined:
                return plain
            eq = schema.matching_rule(at.equality)
            rule_test = self._rule_test(eq, value)
            types = set(names)

            def _ext_dn(e, hidden):
                r = plain(e, hidden)
                return TRUE if r is TRUE or self._dn_match(e, types, None, rule_test) else r

            return _ext_dn
        rule = schema.matching_rule(rule_name) or _BIT_RULES.get(rule_name.lower())
        if rule is None:
            return undefined  # unknown matching rule: Undefined
        test = self._rule_test(rule, value)
        if test is None:
            return undefined
        applies = self._applies
        if names is not None:
            names = tuple(n for n in names if applies(rule, n))
            if not names:
                return undefined  # e.g. (gidNumber:caseExactMatch:=100); :dn: has the same types
        values = self.d.values_for_filter
        types = set(names) if names is not None else None

        def _ext(e, hidden):
            candidates = names if names is not None else [n for n in e.attrs if applies(rule, n)]
            for n in candidates:
                if n in hidden:
                    continue
                for v in values(e, n):
                    try:
                        if test(v):
                            return TRUE
                    except (ValueError, LDAPError):
                        continue
            if dnattrs and self._dn_match(e, types, rule, test):
                return TRUE
            return FALSE

        return _ext

    def _known_name(self, value: bytes) -> bool:
        name = value.decode("ascii").strip()
        s = self.schema
        return bool(s.objectclass(name) or s.attribute(name) or s.matching_rule(name))

    def _applies(self, rule, name):
        got = self._applies_cache.get((rule.oid, name))
        if got is None:  # asked per attribute of every candidate of (:rule:=x): remembered
            at = self.schema.attribute(name)
            if at is None:
                got = False
            elif rule.kind in ("bitand", "bitor"):
                got = at.syntax == _INTEGER_SYNTAX
            else:
                got = self.schema.rule_applies(rule, at)
            self._applies_cache[(rule.oid, name)] = got
        return got

    def _dn_match(self, e, types, rule, test):
        """:dn: — the entry's DN's attribute values (of `types`, if given) to which the rule applies."""
        schema = self.schema
        for rdn in self.d.parse_dn(e.dn).rdns:
            for t, v in rdn:
                at = schema.attribute(t)
                if at is None or (types is not None and at.name not in types):
                    continue
                if rule is not None and not self._applies(rule, at.name):
                    continue
                try:
                    if test(v.encode()):
                        return True
                except (ValueError, LDAPError):
                    continue
        return False

    def _rule_test(self, rule, value):
        """value -> bool for an extensible assertion under `rule`, or None when the
        assertion is not valid in the rule's assertion syntax."""
        key = rule.key
        if rule.kind == "substr":
            # RFC 4517 3.3.30: a Substring Assertion ('Pat*', '*at*'), not "contains"
            pieces = _substring_assertion(value)
            if pieces is None:
                return None
            ini, anys, fin = pieces
            try:
                ini = None if ini is None else _str(key(ini, "initial"))
                fin = None if fin is None else _str(key(fin, "final"))
                mids = [_str(key(a, "any")) for a in anys]
            except ValueError:
                return None
            match = _matcher(ini, mids, fin)
            return lambda v: match(_str(key(v)))
        if not self.schema.assertion_ok(rule, value):
            return None
        if rule.syntax == _OID_SYNTAX and not value[:1].isdigit() and not self._known_name(value):
            return None  # a name the schema does not know: Undefined, as for objectClass (item 5)
        try:
            akey = int(value) if rule.kind in ("bitand", "bitor") else key(value)
        except ValueError:
            return None
        if rule.kind == "ordering":
            return lambda v: key(v) < akey  # RFC 4517: TRUE when the value is less
        if rule.kind == "bitand":
            return lambda v: int(v) & akey == akey
        if rule.kind == "bitor":
            return lambda v: int(v) & akey != 0
        return lambda v: key(v) == akey


def _str(k):
    return k if isinstance(k, str) else k.decode("utf-8", "replace")


def _substring_assertion(value: bytes):
    """RFC 4517 3.3.30 Substring Assertion -> (initial, [any…], final), or None."""
    if b"*" not in value:
        return None
    parts = [p.replace(b"\\2A", b"*").replace(b"\\2a", b"*").replace(b"\\5C", b"\\").replace(b"\\5c", b"\\")
             for p in value.split(b"*")]
    initial = parts[0] or None
    final = parts[-1] or None
    return initial, [p for p in parts[1:-1] if p], final


def _matcher(ini, mids, fin):
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

    return match


# Active Directory's bit rules (not in cn=Subschema, as in slapd's published list),
# usable by OID or name on INTEGER attributes: (userAccountControl:1.2.840.113556.1.4.803:=2)
_BIT_AND = MatchingRule("1.2.840.113556.1.4.803", "integerBitAndMatch", _INTEGER_SYNTAX, "bitand", int)
_BIT_OR = MatchingRule("1.2.840.113556.1.4.804", "integerBitOrMatch", _INTEGER_SYNTAX, "bitor", int)
_BIT_RULES = {"1.2.840.113556.1.4.803": _BIT_AND, "integerbitandmatch": _BIT_AND, "bitandmatch": _BIT_AND,
              "1.2.840.113556.1.4.804": _BIT_OR, "integerbitormatch": _BIT_OR, "bitormatch": _BIT_OR}


SMALL_ENOUGH = 64  # candidates below which further AND terms are not worth an index read

# Equality rules whose keys are exactly their substring rule's keys of a whole value
# (RFC 4518 preparation: the same case folding and insignificant space handling), so
# an initial substring is a prefix of the equality key: a range of the sorted index.
_PREFIX_RULES = {
    "caseIgnoreMatch": "caseIgnoreSubstringsMatch",
    "caseExactMatch": "caseExactSubstringsMatch",
    "caseIgnoreIA5Match": "caseIgnoreIA5SubstringsMatch",
    "caseExactIA5Match": "caseExactIA5SubstringsMatch",
    "telephoneNumberMatch": "telephoneNumberSubstringsMatch",
}


def _same_keys(at) -> bool:
    return at is not None and at.substr is not None and _PREFIX_RULES.get(at.equality) == at.substr


class CandidateStream:
    """Candidate ids of a substring query read from the store in batches as the
    search examines them, so a search that stops early (size limit, a page, an
    abandon) never reads every match. `ids` grows (each id once); `exhausted` once
    all are read. A Substring's come in id order, a Prefix's in key order (a
    type-ahead's matches alphabetically); a search needs no order."""

    FIRST, MOST = 16, 1024  # rows of the first read (a size limit of 10 is common), and the cap

    def __init__(self, store, query):
        self.store = store
        self.query = query
        self.ids = []
        self.exhausted = False
        self._seen = set()
        self._after = None
        self._size = self.FIRST

    @classmethod
    def open(cls, store, query):
        """A stream; a set when the first batch was all; None when the store cannot
        answer the query from an index."""
        stream = cls(store, query)
        if stream.more() is None:
            return None
        return set(stream.ids) if stream.exhausted else stream

    def more(self):
        """Read the next batch into `ids`; None: the store cannot answer the query."""
        got = self.store.candidates_after(self.query, self._after, self._size)
        if got is None:
            return None
        ids, self._after = got
        seen = self._seen
        new = [i for i in ids if i not in seen]
        seen.update(new)
        self.ids.extend(new)
        self.exhausted = self._after is None
        self._size = min(self._size * 4, self.MOST)
        return new

    def all(self) -> list:
        if not self.exhausted:
            self._size = 1 << 30  # everything wanted: the rest in one read
            self.more()
        return self.ids


class UnionStream:
    """An OR of terms: their candidates (streams or sets) read one part after the
    other, each id once, as lazily as the parts (a type-ahead's (|(cn=jo*)(mail=jo*))
    with a size limit reads the first part's first batch)."""

    def __init__(self, parts):
        self.parts = [p if isinstance(p, STREAMS) else _Listed(p) for p in parts]
        self._part = 0  # the part being read, and how many of its ids are taken
        self._taken = 0
        self._seen = set()
        self.ids = []
        self.exhausted = False
        self.more()

    def more(self):
        parts, seen = self.parts, self._seen
        while self._part < len(parts):
            p = parts[self._part]
            if self._taken < len(p.ids):
                new = [i for i in p.ids[self._taken:] if i not in seen]
                self._taken = len(p.ids)
                if new:
                    seen.update(new)
                    self.ids.extend(new)
                    return new
            elif p.exhausted:
                self._part, self._taken = self._part + 1, 0
            else:
                p.more()
        self.exhausted = True
        return []

    def all(self) -> list:
        for p in self.parts:
            p.all()
        while not self.exhausted:
            self.more()
        return self.ids


class _Listed:
    """A materialised candidate set as a finished stream."""

    def __init__(self, ids):
        self.ids = list(ids)
        self.exhausted = True

    def more(self):
        return []

    def all(self):
        return self.ids


STREAMS = (CandidateStream, UnionStream)  # what IndexPlanner.candidates returns besides a set


def _as_set(ids):
    return set(ids.all()) if isinstance(ids, STREAMS) else ids


def _selectivity(ast) -> float:
    """Rough order in which AND terms narrow the candidates best."""
    kind = ast[0]
    if kind == "eq":
        return 3 if ast[1].lower() in ("objectclass", "2.5.4.0") else 0
    if kind == "sub" and not ast[2]:
        return 1.5  # what a person typed from the start narrows better than a piece of a name
    return {"sub": 1, "and": 1, "or": 2, "present": 4}.get(kind, 5)


class IndexPlanner:
    """Candidate entry ids for a filter from the configured indexes; None means
    the filter (or this part of it) cannot be answered from an index."""

    def __init__(self, directory):
        self.d = directory
        self.schema = directory.schema
        self.store = directory.store

    def candidates(self, ast):
        """A set of ids, a stream (CandidateStream/UnionStream: substring matches read
        as the search goes), or None."""
        kind = ast[0]
        if kind == "and":
            # Most selective terms first; once the candidates are few, stop: every
            # candidate is checked against the whole filter anyway, and a term like
            # (objectClass=inetOrgPerson) would read an index row per person.
            best = None
            for f in sorted(ast[1], key=_selectivity):
                streaming = isinstance(best, STREAMS)
                if streaming and _selectivity(f) > 2:
                    # a stream drives the search as it is: classes and presence would
                    # read an index row per entry to save little
                    break
                if best is not None and not streaming and len(best) <= SMALL_ENOUGH:
                    break
                ids = self.candidates(f)
                if ids is None:
                    continue
                if streaming:
                    if not isinstance(ids, STREAMS) and len(ids) <= CandidateStream.MOST:
                        best = ids  # a small known set beats reading the stream
                elif best is None:
                    best = ids
                else:
                    best = best & _as_set(ids)
                if not isinstance(best, STREAMS) and not best:
                    return best
            return best
        if kind == "or":
            parts, streamed = [], False
            for f in ast[1]:
                ids = self.candidates(f)
                if ids is None:
                    return None
                parts.append(ids)
                streamed = streamed or isinstance(ids, STREAMS)
            if streamed:
                return UnionStream(parts)
            out = set()
            for ids in parts:
                out |= ids
            return out
        if kind == "not":
            # NOT of an item Undefined everywhere is Undefined everywhere too
            return set() if self._never(ast[1]) else None
        evaluator = self.d.filters.compile(ast)  # kept by the compiler: a look-up
        if evaluator is undefined:
            return set()  # an item Undefined for every entry: nothing to read
        if kind in ("ext", "approx", "ge", "le"):
            return None
        at = self.schema.attribute(ast[1])
        kinds = self.d.index_kinds(at.name)
        subtypes = self.d.subtypes(at.name)
        if not kinds and len(subtypes) > 1:
            return self._through_subtypes(ast, at, subtypes)
        if not kinds:
            return None
        if kind == "eq" and "eq" in kinds:
            if at.name == "objectClass":
                oc = self.schema.objectclass(ast[2].decode("utf-8", "replace"))
                return set(self.store.candidates(Eq("objectclass", oc.name.lower()))) if oc else set()
            key = evaluator.key  # normalized when the item was compiled (never None there)
            return set(self.store.candidates(Eq(at.name.lower(), self.d.index_key(key))))
        if kind == "present" and ("pres" in kinds or "eq" in kinds):
            if at.name == "objectClass":
                return None  # every entry: the scope decides
            return set(self.store.candidates(Present(at.name.lower())))
        if kind == "sub" and "sub" in kinds:
            return self._substring(at, kinds, ast[2], ast[3], ast[4])
        return None

    def _through_subtypes(self, ast, at, subtypes):
        """An unindexed supertype ((name=x)) answered from its subtypes' indexes: the
        union of each subtype's candidates, when every subtype has the index kind and
        compares as the supertype does, and no class but extensibleObject allows the
        supertype itself (its entries are added from the objectClass index)."""
        schema = self.schema
        if any(at.name in oc.allowed for oc in schema.object_classes):
            return None  # an entry may hold the supertype itself, which has no index
        out = set()
        if schema.objectclass("extensibleObject") is not None:
            ids = self.candidates(("eq", "objectClass", b"extensibleObject"))
            if ids is None:
                return None
            out |= ids
        for n in subtypes[1:]:
            sub_at = schema.attribute(n)
            if sub_at.equality != at.equality or sub_at.substr != at.substr:
                return None
            ids = self.candidates((ast[0], n, *ast[2:]))
            if ids is None:
                return None
            out |= _as_set(ids)
        return out

    def _never(self, ast) -> bool:
        """Is this filter item Undefined for every entry? (unknown type or rule, a rule
        that applies to none of the types, an assertion invalid in its syntax)"""
        if ast[0] in ("and", "or", "not"):
            return False
        return self.d.filters.compile(ast) is undefined

    def _substring(self, at, kinds, initial, anys, final):
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
        lname = at.name.lower()
        if ini and "eq" in kinds and _same_keys(at) and (
                len(ini) >= 3 or not any(p is not None and len(p) >= 3 for p in pieces)):
            # the sorted equality index answers the initial piece exactly (a trigram
            # look-up would read every row sharing a trigram); the rest is re-checked
            return CandidateStream.open(self.store, Prefix(lname, ini))
        return CandidateStream.open(self.store, Substring(lname, ini, tuple(mids), fin))
