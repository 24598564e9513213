"""Server-side sorting of search results (RFC 2891), as slapd's sssvlv overlay does it.

The whole result is collected (in batches, off nobody's turn: the protocol drives the
cursor like any search), sorted, then sent — or paged through, when the paged results
control comes with it. Collecting is bounded by `limits.sort` entries (adminLimitExceeded
beyond), since sorting needs them all in memory.

Keys compare with the attribute's ORDERING rule; an attribute with only a text EQUALITY
rule (cn, sn, mail …, which have no ORDERING rule in RFC 4519) sorts by its normalised
equality value, which orders the way people expect. For a multi-valued attribute the
smallest value counts (the largest when reversed); an entry without the attribute sorts
as if its value were larger than any (RFC 2891): last, or first when reversed.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from .errors import LDAPError, ResultCode

_TEXT_EQUALITY = {"caseignorematch", "caseexactmatch", "caseignoreia5match", "caseexactia5match",
                  "numericstringmatch", "telephonenumbermatch", "distinguishednamematch", "uniquemembermatch",
                  "octetstringmatch", "integermatch", "generalizedtimematch", "uuidmatch"}


@dataclass
class SortKey:
    attr: str
    names: tuple           # the attribute and its subtypes
    reverse: bool
    key: Callable          # bytes -> comparable, or None when the value has no key


def sort_keys(directory, requested) -> list:
    """[(attribute, ordering rule or None, reverse)] from the control -> [SortKey].
    LDAPError noSuchAttribute (16) or inappropriateMatching (18) when a key cannot be used."""
    schema = directory.schema
    keys = []
    for attr, rule, reverse in requested:
        at = schema.attribute(attr)
        if at is None:
            raise LDAPError(ResultCode.NO_SUCH_ATTRIBUTE, f"sort key {attr}: attribute type undefined")
        if rule:
            mr = schema.matching_rules.get(rule.lower())
            if mr is None or getattr(mr, "kind", "ordering") != "ordering" or \
                    (at.ordering and schema.matching_rules.get(at.ordering.lower()) is not mr):
                raise LDAPError(ResultCode.INAPPROPRIATE_MATCHING,
                                f"sort key {attr}: ordering rule {rule} cannot be used with it")
        if at.ordering:
            fn = at.order_key
        elif at.equality and at.equality.lower() in _TEXT_EQUALITY:
            fn = at.normalize_or_none
        else:
            raise LDAPError(ResultCode.INAPPROPRIATE_MATCHING, f"sort key {attr}: no ordering for this attribute")
        keys.append(SortKey(at.name, tuple(directory.subtypes(at.name)), bool(reverse), fn))
    if not keys:
        raise LDAPError(ResultCode.PROTOCOL_ERROR, "sort control: no sort keys")
    return keys


def entry_key(directory, keys, entry, hidden) -> tuple:
    """The entry's values for each key (only values the caller may see)."""
    out = []
    for k in keys:
        best = None
        for name in k.names:
            if name in hidden:
                continue
            for v in directory.values_for_filter(entry, name):
                kv = k.key(v)
                if kv is None:
                    continue
                if best is None or ((kv > best) if k.reverse else (kv < best)):
                    best = kv
        out.append(best)
    return tuple(out)


def sort_entries(items, keys) -> list:
    """items: [(dn, attrs, key tuple)] -> [(dn, attrs)] in the requested order."""
    def cmp(a, b):
        for k, x, y in zip(keys, a[2], b[2]):
            if x == y:
                continue
            if x is None or y is None:     # no value: larger than any value
                r = 1 if x is None else -1
            else:
                try:
                    lt = x < y
                except TypeError:          # values of mixed kinds: compare as text, deterministically
                    lt = str(x) < str(y)
                r = -1 if lt else 1
            return -r if k.reverse else r
        return 0

    return [(dn, attrs) for dn, attrs, _ in sorted(items, key=functools.cmp_to_key(cmp))]


class SortedCursor:
    """The sorted result, handed out like a SearchCursor (pages included)."""

    def __init__(self, entries):
        self.entries = entries
        self.pos = 0
        self.deadline = None
        self.done = not entries

    def next_batch(self, max_candidates=256, max_results=None):
        n = max_candidates if max_results is None else min(max_candidates, max_results)
        out = self.entries[self.pos:self.pos + n]
        self.pos += len(out)
        self.done = self.pos >= len(self.entries)
        return out
