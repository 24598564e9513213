"""Substring searches through a real client (ldap3) against `rollcall serve`: initial
pieces answered from the sorted equality index, other pieces read from the trigram
index as the search goes (stopped by a size limit or a page), both matching exactly
what RFC 4518 preparation says (case, insignificant spaces, Unicode compatibility
forms), seen at once after a write, counted as indexed by the unindexed limit.
tests/protocol/test_pg_substring_search.py runs the same on the PostgreSQL store."""
import pytest
from ldap3 import MODIFY_REPLACE, SUBTREE, Connection, Server

from tests.conftest import BASE_LDIF, SUFFIX, ServerProcess

PEOPLE = f"ou=people,{SUFFIX}"
STUDENTS = f"ou=students,{PEOPLE}"
JSMITH = f"uid=jsmith,{STUDENTS}"
CROWD = 70  # more than the unindexed limit (50) and several pages

NAMES = {  # uid -> cn
    "annlee": "Ann  Lee-Smith",           # two spaces: one, after preparation
    "johnny": "Johnny Appleseed",
    "fiona": "\uff26\uff49\uff4f\uff4e\uff41 Wide",  # fullwidth letters: NFKC "Fiona Wide"
    "liga": "\ufb01nn Ligature",          # the "fi" ligature: NFKC "finn ligature"
    "pct": "50% Off",
    "pct2": "5000 Off",
    "under": "a_b Under",
    "under2": "axb Under",
    "slash": "c:\\temp Dir",
    "upper": "GRACE HOPPER",
}


def _ldif():
    out = [BASE_LDIF]
    people = [(uid, cn) for uid, cn in NAMES.items()] + [(f"crowd{n:03d}", f"Crowd Smith{n:03d}") for n in range(CROWD)]
    for uid, cn in people:
        sn = cn.split()[-1]
        out.append(f"\ndn: uid={uid},{STUDENTS}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {sn}\n"
                   f"givenName: {cn.split()[0]}\nuserPassword: pw-{uid}-123\n")
    return "".join(out)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("substr"), ldif=_ldif()).start()
    yield srv
    srv.stop()


@pytest.fixture
def conn(srv):
    # an ordinary user: the default access rules apply (users read)
    c = Connection(Server(srv.url), JSMITH, "student-pw-1", auto_bind=True, receive_timeout=30)
    yield c
    c.unbind()


def uids(conn, flt, size_limit=0):
    conn.search(PEOPLE, flt, SUBTREE, attributes=["uid"], size_limit=size_limit)
    return sorted(e["attributes"]["uid"][0] for e in conn.response if e["type"] == "searchResEntry")


CROWD_UIDS = [f"crowd{n:03d}" for n in range(CROWD)]


@pytest.mark.parametrize("flt, want", [
    ("(cn=John Sm*)", ["jsmith"]),
    ("(cn=john*)", ["johnny", "jsmith"]),
    ("(cn=John *)", ["jsmith"]),                  # a space at the end of the piece: a word boundary
    ("(cn=ann lee*)", ["annlee"]),                # the value's two spaces are one
    ("(cn=ANN    LEE-*)", ["annlee"]),            # the assertion's too, and case is ignored
    ("(cn=  ann*)", ["annlee"]),                  # leading spaces of an initial piece are insignificant
    ("(cn=mar\\c3\\ada g*)", ["mgarcia"]),        # María García, by its UTF-8 escapes
    ("(cn=MAR\\c3\\8dA*)", ["mgarcia"]),          # MARÍA: case folding beyond ASCII
    ("(cn=maria*)", []),                          # no accent folding in RFC 4518
    ("(cn=fiona w*)", ["fiona"]),                 # fullwidth value, NFKC
    ("(cn=\\ef\\bc\\a6iona*)", ["fiona"]),        # a fullwidth assertion
    ("(cn=finn l*)", ["liga"]),                   # the ligature, decomposed
    ("(cn=50%*)", ["pct"]),                       # % is literal
    ("(cn=a_b*)", ["under"]),                     # _ is literal
    ("(cn=c:\\5ctemp*)", ["slash"]),              # so is \
    ("(cn=grace h*)", ["upper"]),
    ("(cn=g*)", ["upper"]),                       # a one-letter type-ahead is indexed too
    ("(cn=Crowd Smith00*)", CROWD_UIDS[:10]),
])
def test_initial(conn, flt, want):
    assert uids(conn, flt) == want, conn.result
    assert conn.result["result"] == 0


@pytest.mark.parametrize("flt, want", [
    ("(cn=jo*smith)", ["jsmith"]),
    ("(cn=jo*seed)", ["johnny"]),
    ("(cn=j*n*h)", ["jsmith"]),
    ("(cn=john*apple)", []),
    ("(cn=crowd*9)", [u for u in CROWD_UIDS if u.endswith("9")]),
])
def test_initial_and_final(conn, flt, want):
    assert uids(conn, flt) == want, conn.result


@pytest.mark.parametrize("flt, want", [
    ("(cn=*mith*)", sorted(["jsmith", "annlee"] + CROWD_UIDS)),
    ("(cn=*ee-sm*)", ["annlee"]),
    ("(cn=*% o*)", ["pct"]),
    ("(cn=*\\5ctemp*)", ["slash"]),
    ("(cn=*ona wid*)", ["fiona"]),
    ("(cn=*arc\\c3\\ada*)", ["mgarcia"]),
    ("(cn=*mith01*)", CROWD_UIDS[10:20]),
    ("(cn=*ohn*mit*)", ["jsmith"]),
    ("(cn=*garcia)", []),                          # García: the accent stays
    ("(&(objectClass=person)(cn=*mith00*))", CROWD_UIDS[:10]),
    ("(|(cn=*ppleseed*)(cn=*ace hop*))", ["johnny", "upper"]),
    ("(|(cn=*mith06*)(uid=crowd00*)(cn=*ppleseed*))", sorted(CROWD_UIDS[:10] + CROWD_UIDS[60:70] + ["johnny"])),
    ("(&(cn=*mith*)(cn=Ann*))", ["annlee"]),
    ("(&(cn=*rowd*)(cn=Crowd Smith00*))", CROWD_UIDS[:10]),
    ("(&(cn=*mith00*)(|(objectClass=person)(objectClass=groupOfNames)))", CROWD_UIDS[:10]),
    ("(&(cn=*mith*)(|(uid=crowd001)(uid=jsmith)(uid=johnny)))", ["crowd001", "jsmith"]),
])
def test_any(conn, flt, want):
    assert uids(conn, flt) == want, conn.result
    assert conn.result["result"] == 0


@pytest.mark.parametrize("flt", ["(cn=*mith*)", "(cn=Crowd S*)", "(|(cn=*mith0*)(cn=*mith1*))"])
def test_size_limit_stops_with_the_first_matches(conn, flt):
    got = uids(conn, flt, size_limit=5)
    assert conn.result["result"] == 4, conn.result  # sizeLimitExceeded
    assert len(got) == 5 and len(set(got)) == 5


@pytest.mark.parametrize("flt", ["(cn=*mith*)", "(cn=Crowd*)", "(|(cn=*mith*)(uid=*owd0*))"])
def test_paged_results_across_pages(conn, flt):
    seen = []
    cookie = None
    pages = 0
    while True:
        conn.search(PEOPLE, flt, SUBTREE, attributes=["uid"], paged_size=7, paged_cookie=cookie)
        assert conn.result["result"] == 0, conn.result
        seen += [e["attributes"]["uid"][0] for e in conn.response if e["type"] == "searchResEntry"]
        pages += 1
        cookie = conn.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
        if not cookie:
            break
    assert len(seen) == len(set(seen))
    want = set(CROWD_UIDS) | ({"jsmith", "annlee"} if "mith*)" in flt else set())
    assert set(seen) == want and pages >= CROWD // 7


def test_substring_is_indexed_for_the_unindexed_limit(conn):
    # 70+ candidates, an unindexed limit of 50: answered from the indexes, not refused
    assert len(uids(conn, "(cn=*rowd*)")) == CROWD and conn.result["result"] == 0
    assert len(uids(conn, "(cn=c*)")) == CROWD + 1 and conn.result["result"] == 0
    # givenName has no index: the same search is unindexed and refused
    conn.search(PEOPLE, "(givenName=*rowd*)", SUBTREE, attributes=["uid"])
    assert conn.result["result"] == 11, conn.result  # adminLimitExceeded


def test_a_write_is_seen_by_the_next_search(srv):
    admin = Connection(Server(srv.url), "cn=admin," + SUFFIX, "demo-admin-password", auto_bind=True)
    dn = f"uid=newbie,{STUDENTS}"
    assert admin.add(dn, ["inetOrgPerson"], {"cn": "Zebedee Newperson", "sn": "Newperson", "uid": "newbie"})
    try:
        assert uids(admin, "(cn=Zebedee N*)") == ["newbie"]
        assert uids(admin, "(cn=*ewperso*)") == ["newbie"]
        assert uids(admin, "(cn=zeb*son)") == ["newbie"]
        assert admin.modify(dn, {"cn": [(MODIFY_REPLACE, ["Quentin Oldperson"])]})
        assert uids(admin, "(cn=Zebedee N*)") == [] and uids(admin, "(cn=*ewperso*)") == []
        assert uids(admin, "(cn=Quentin O*)") == ["newbie"] and uids(admin, "(cn=*ldperso*)") == ["newbie"]
    finally:
        admin.delete(dn)
    assert uids(admin, "(cn=Quentin O*)") == [] and uids(admin, "(cn=*ldperso*)") == []
    admin.unbind()
