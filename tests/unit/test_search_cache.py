"""Large-search paths: a tiny entry cache (FIFO eviction), the one-level scope test
without a DN parse, stored-entry decoding, and the access check shared by entries of
one shape."""
import yaml

from directory.core.directory import SCOPE_ONE, SCOPE_SUB
from directory.core.entry import decode_attrs, encode_attrs
from tests.conftest import ROOT, ROOT_DN, ROOT_PW, SUFFIX
from tests.unit.test_core import (
    JSMITH,
    PEOPLE,
    STAFF,
    STUDENTS,
    TEACHER1,
    open_dir,
    search,
)


def test_tiny_cache_evicts_and_searches_stay_complete(tmp_path):
    d = open_dir(tmp_path)
    try:
        root = d.bind(ROOT_DN, ROOT_PW.encode(), peer="t")
        want = search(d, root, SUFFIX, attrs=["*"])
        d.store._cache.clear()
        d.store.cache_limit = 3
        for _ in range(2):
            assert search(d, root, SUFFIX, attrs=["*"]) == want
            assert len(d.store._cache) <= 3
    finally:
        d.store.close()


def test_one_level_scope(tmp_path):
    d = open_dir(tmp_path)
    try:
        root = d.bind(ROOT_DN, ROOT_PW.encode(), peer="t")
        assert set(search(d, root, PEOPLE, scope=SCOPE_ONE, attrs=["1.1"])) == {STUDENTS, STAFF}
        assert JSMITH in search(d, root, STUDENTS, scope=SCOPE_ONE, attrs=["1.1"])
        assert TEACHER1 not in search(d, root, PEOPLE, "(uid=*)", scope=SCOPE_ONE, attrs=["1.1"])
    finally:
        d.store.close()


def test_decode_attrs_round_trip():
    attrs = {"cn": [b"J\xc3\xb6rg"], "member": [b"a", b"b"], "jpegPhoto": [b"\xff\xd8\x00"], "x": []}
    assert decode_attrs(encode_attrs(attrs)) == attrs


def test_access_by_entry_shape_matches_the_per_entry_answer(tmp_path):
    d = open_dir(tmp_path)
    try:
        student = d.bind(JSMITH, b"student-pw-1", peer="t")
        seen = search(d, student, SUFFIX, scope=SCOPE_SUB, attrs=["*"])
        d.acl._shapes.clear()
        for dn in seen:
            entry = d.lookup(d.normalize_dn(dn))
            assert d.acl._hidden_attrs_of(student, entry, d.acl._applicable(student, entry)) == \
                d.acl.hidden_attrs(student, entry)
    finally:
        d.store.close()


def test_a_read_that_began_before_a_commit_does_not_cache_the_old_row(tmp_path, monkeypatch):
    """The reader fetched the row, then (before it could cache it) the writer committed a
    change and evicted the entry: the old row must not go into the cache after that
    eviction, or every later read would see it. The reader is held between its SELECT
    and its caching step while another thread commits."""
    import threading

    from directory.store import sqlite as sqlite_store

    d = open_dir(tmp_path)
    try:
        root = d.bind(ROOT_DN, ROOT_PW.encode(), peer="t")
        entry_id = d.lookup(d.normalize_dn(JSMITH)).id
        d.store._cache.clear()
        d.store._ndn_ids.clear()
        real_decode = sqlite_store.decode_attrs
        held = threading.Event()

        def decode_then_let_the_writer_commit(data):
            attrs = real_decode(data)
            if threading.current_thread().name == "reader" and not held.is_set():
                held.set()
                writer = threading.Thread(target=lambda: d.modify(root, JSMITH, [(2, "description", [b"new"])]))
                writer.start()
                writer.join()
            return attrs

        monkeypatch.setattr(sqlite_store, "decode_attrs", decode_then_let_the_writer_commit)
        seen = {}
        reader = threading.Thread(target=lambda: seen.update(old=d.store.get(entry_id)), name="reader")
        reader.start()
        reader.join()
        assert held.is_set()
        assert seen["old"].attrs.get("description") != [b"new"]   # the reader's own answer predates the commit
        assert d.store.get(entry_id).attrs.get("description") == [b"new"]
        assert d.lookup(d.normalize_dn(JSMITH)).attrs.get("description") == [b"new"]
    finally:
        d.store.close()


def test_rules_applying_by_parent_are_the_rules_whose_target_matches(tmp_path):
    """_applicable remembers per parent DN which rules' DN part matches; with rules of
    every scope (with and without a filter) before the district's, for every entry of the
    test directory, the rules' own bases, entries whose RDN hides an escaped comma, and
    entries at the top, it answers as every rule's own target test."""
    from directory.core.entry import Entry

    with open(ROOT / "config.yaml") as fh:
        district = yaml.safe_load(fh)
    schema = [str(ROOT / p) for p in district["schema"]]
    every_scope = [{"to": {"dn": dn, "scope": scope, **({"filter": "(cn=*)"} if f else {})}, "by": ["* read"]}
                   for dn in (PEOPLE, STUDENTS) for scope in ("base", "one", "subtree", "children")
                   for f in (False, True)]
    d = open_dir(tmp_path, schema=schema, access=every_scope + district["access"])
    try:
        root = d.bind(ROOT_DN, ROOT_PW.encode(), peer="t")
        acl = d.acl
        entries = [d.lookup(d.normalize_dn(dn)) for dn in search(d, root, SUFFIX, attrs=["*"])]
        made = [f"cn=a\\,b,{STUDENTS}", f"cn=x,{STUDENTS}", "o=elsewhere", f"uid=q,ou=x,{STUDENTS}",
                f"cn=a\\,b,cn=c,{STUDENTS}"]
        made += [r.base for r in acl.rules if r.base is not None]
        made += [f"cn=s,{r.base}" for r in acl.rules if r.base is not None]
        attrs = entries[-1].attrs
        entries += [Entry(dn, d.normalize_dn(dn), attrs, 10_000 + i) for i, dn in enumerate(made)]
        assert len({r.scope for r in acl.rules}) >= 3  # the district's rules use several scopes
        answers = set()
        for _ in range(2):  # the second time from the memo
            for entry in entries:
                want = [r for r in acl.rules if acl._target_matches(r, entry)]
                assert acl._applicable(None, entry) == want, entry.dn
                answers.add(tuple(r.index for r in want))
        assert len(answers) >= 5  # entries where different rules apply
    finally:
        d.store.close()


def test_attribute_names_by_entry_shape_are_each_entrys_own(tmp_path):
    """With '*' or '+' a selection's names come from a memo per entry shape: for every
    entry of the test directory, twice, the answer is the one worked out for the entry."""
    d = open_dir(tmp_path)
    try:
        root = d.bind(ROOT_DN, ROOT_PW.encode(), peer="t")
        entries = [d.lookup(d.normalize_dn(dn)) for dn in search(d, root, SUFFIX, attrs=["1.1"])]
        for requested in (["*"], ["+"], ["*", "+"], ["*", "memberOf"], ["cn", "mail"]):
            selector = d.selector(requested)
            shapes = set()
            for _ in range(2):
                for entry in entries:
                    assert selector.names(entry) == selector._names(entry), (requested, entry.dn)
                    shapes.add(tuple(entry.attrs))
            assert len(shapes) < len(entries)  # entries share shapes: the memo is used
    finally:
        d.store.close()
