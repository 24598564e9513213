"""Server-side sorting (RFC 2891) with OpenLDAP's ldapsearch (-E sss=…) and python-ldap:
keys, reverse order, several keys, integer ordering, entries without the key, paged and
sorted together, unusable keys (critical or not), the collection limit, and keys the
caller may not read."""
import random

import pytest

from tests.conftest import BASE_LDIF, SUFFIX, ServerProcess, requires_ldap_utils
from tests.protocol.ldaputil import ADMIN, dns, ok, search, tool

WORK = f"ou=sortwork,{SUFFIX}"
# (uid, sn, givenName, uidNumber, titles)
PEOPLE = [
    ("p01", "Zhang", "Ana", 100, ["Teacher"]),
    ("p02", "adams", "Ben", 2, []),
    ("p03", "Brown", "Cy", 10, ["Aide", "Coach"]),
    ("p04", "Adams", "Al", 33, ["Principal"]),
    ("p05", "Émile", "Dee", 7, []),
    ("p06", "brown", "Bo", 1000, ["Clerk"]),
    ("p07", "Chen", "Eve", 5, ["Teacher"]),
    ("p08", "Young", "Fay", 21, []),
]


def sort_ldif():
    out = [f"dn: {WORK}\nobjectClass: organizationalUnit\nou: sortwork\n"]
    order = list(PEOPLE)
    random.Random(7).shuffle(order)  # stored order is not the sorted order
    for uid, sn, given, number, titles in order:
        lines = [f"dn: uid={uid},{WORK}", "objectClass: inetOrgPerson", "objectClass: posixAccount",
                 f"uid: {uid}", f"cn: {given} {sn}", f"sn: {sn}", f"givenName: {given}",
                 f"uidNumber: {number}", "gidNumber: 100", f"homeDirectory: /home/{uid}",
                 f"userPassword: pw-{uid}"]
        lines += [f"title: {t}" for t in titles]
        out.append("\n".join(lines) + "\n")
    return BASE_LDIF + "\n" + "\n".join(out)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("sort"), ldif=sort_ldif(),
                      extra_config={"limits": {"sort": 10, "unindexed": 5000}}).start()
    yield s
    s.stop()


def uids(out):
    return [d.split(",")[0].split("=")[1] for d in dns(out) if d.lower() != WORK.lower()]


def sorted_search(srv, spec, *extra, bind=ADMIN):
    return search(srv, "-b", WORK, "-s", "one", "-E", spec, *extra, "(objectClass=person)", "1.1", bind=bind)


pytestmark = requires_ldap_utils


def test_one_key_case_insensitive_then_reverse(srv):
    got = uids(ok(sorted_search(srv, "sss=sn")))
    names = [next(p[1] for p in PEOPLE if p[0] == u).casefold() for u in got]
    assert names == sorted(names), got
    back = uids(ok(sorted_search(srv, "sss=-sn")))
    assert [u for u in back] != got
    names = [next(p[1] for p in PEOPLE if p[0] == u).casefold() for u in back]
    assert names == sorted(names, reverse=True)


def test_several_keys(srv):
    got = uids(ok(sorted_search(srv, "sss=sn/givenName")))
    key = {p[0]: (p[1].casefold(), p[2].casefold()) for p in PEOPLE}
    assert [key[u] for u in got] == sorted(key[u] for u in got)
    assert got.index("p04") < got.index("p02")  # Adams, Al before adams, Ben
    got = uids(ok(sorted_search(srv, "sss=sn/-givenName")))
    assert got.index("p02") < got.index("p04")


def test_integer_ordering_is_numeric(srv):
    got = uids(ok(sorted_search(srv, "sss=uidNumber")))
    numbers = [next(p[3] for p in PEOPLE if p[0] == u) for u in got]
    assert numbers == [2, 5, 7, 10, 21, 33, 100, 1000]


def test_entries_without_the_key_sort_as_largest(srv):
    got = uids(ok(sorted_search(srv, "sss=title")))
    without = {p[0] for p in PEOPLE if not p[4]}
    assert set(got[-len(without):]) == without
    # a multi-valued key uses the smallest value: p03 (Aide, Coach) comes first
    assert got[0] == "p03"
    back = uids(ok(sorted_search(srv, "sss=-title")))
    assert set(back[:len(without)]) == without


def test_sorted_and_paged(srv):
    out = ok(search(srv, "-b", WORK, "-s", "one", "-E", "pr=3/noprompt", "-E", "sss=uidNumber",
                    "(objectClass=person)", "1.1"))
    got = uids(out)
    numbers = [next(p[3] for p in PEOPLE if p[0] == u) for u in got]
    assert numbers == [2, 5, 7, 10, 21, 33, 100, 1000]


def test_unusable_key_critical_or_not(srv):
    r = sorted_search(srv, "!sss=nosuchattr")
    assert r.returncode == 12, (r.returncode, r.stderr)
    # not critical: the entries come unsorted, all of them
    assert len(uids(ok(sorted_search(srv, "sss=nosuchattr")))) == len(PEOPLE)
    # an attribute with no ordering (userPassword: octet string, no EQUALITY text rule)
    r = sorted_search(srv, "!sss=jpegPhoto")
    assert r.returncode == 12


def test_collection_is_limited(srv):
    # limits.sort is 10: a subtree sort over more entries is refused, not held in memory
    r = search(srv, "-b", SUFFIX, "-E", "!sss=cn", "(objectClass=*)", "1.1")
    assert r.returncode == 11, (r.returncode, r.stdout, r.stderr)
    assert "more than 10 entries" in r.stderr + r.stdout


def test_the_root_dse_lists_the_control(srv):
    out = ok(search(srv, "-b", "", "-s", "base", "(objectClass=*)", "supportedControl"))
    assert "supportedControl: 1.2.840.113556.1.4.473" in out


def test_a_key_the_caller_may_not_read_does_not_order(srv):
    # userPassword is not readable by a user: sorting by it must not reveal its order
    bind = ("-D", f"uid=p01,{WORK}", "-w", "pw-p01")
    plain = uids(ok(search(srv, "-b", WORK, "-s", "one", "(objectClass=person)", "1.1", bind=bind)))
    by_secret = uids(ok(sorted_search(srv, "sss=userPassword", bind=bind)))
    assert sorted(plain) == sorted(by_secret)


def test_python_ldap_sort_control(srv):
    ldap = pytest.importorskip("ldap")
    from ldap.controls.sss import SSSRequestControl, SSSResponseControl

    conn = ldap.initialize(srv.url)
    conn.simple_bind_s(*ADMIN[1::2])
    msgid = conn.search_ext(WORK, ldap.SCOPE_ONELEVEL, "(objectClass=person)", ["uid"],
                            serverctrls=[SSSRequestControl(ordering_rules=["-uidNumber"])])
    _, data, _, ctrls = conn.result3(msgid, resp_ctrl_classes={SSSResponseControl.controlType: SSSResponseControl})
    got = [attrs["uid"][0].decode() for _, attrs in data]
    numbers = [next(p[3] for p in PEOPLE if p[0] == u) for u in got]
    assert numbers == sorted(numbers, reverse=True)
    assert any(c.controlType == "1.2.840.113556.1.4.474" and c.result == 0 for c in ctrls)
    conn.unbind_s()


def test_tool_output_is_stable(srv):
    a = tool(srv, "ldapsearch", "-LLL", *ADMIN, "-b", WORK, "-s", "one", "-E", "sss=cn", "(uid=*)", "cn")
    b = tool(srv, "ldapsearch", "-LLL", *ADMIN, "-b", WORK, "-s", "one", "-E", "sss=cn", "(uid=*)", "cn")
    assert ok(a) == ok(b)
