"""Large-search paths: a tiny entry cache (FIFO eviction), the one-level scope test
without a DN parse, stored-entry decoding, and the access check shared by entries of
one shape."""
from directory.core.directory import SCOPE_ONE, SCOPE_SUB
from directory.core.entry import decode_attrs, encode_attrs
from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX
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
