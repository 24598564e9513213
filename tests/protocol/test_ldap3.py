"""ldap3 against a real `rollcall serve` over real sockets: root DSE and schema, binds,
every filter type, attribute selection, paging, limits, writes, extended operations,
StartTLS/LDAPS, controls, abandon and pipelined asynchronous requests."""
import ssl
import time

import pytest
from ldap3 import (
    ALL, ASYNC, BASE, LEVEL, MODIFY_ADD, MODIFY_DELETE, MODIFY_INCREMENT, MODIFY_REPLACE, NONE, SUBTREE,
    Connection, Server, Tls,
)
from ldap3.core.exceptions import LDAPResponseTimeoutError
from ldap3.operation.search import compile_filter, parse_filter
from ldap3.protocol.rfc4511 import BindRequest, AuthenticationChoice, Simple, Version, LDAPDN
from ldap3.protocol.rfc4527 import post_read_control, pre_read_control
from pyasn1.codec.ber import encoder as ber_encoder

from tests.conftest import BASE_LDIF, ROOT_DN, ROOT_PW, SUFFIX, ServerProcess

PEOPLE = f"ou=people,{SUFFIX}"
STUDENTS = f"ou=students,{PEOPLE}"
STAFF = f"ou=staff,{PEOPLE}"
JSMITH = f"uid=jsmith,{STUDENTS}"
MGARCIA = f"uid=mgarcia,{STUDENTS}"
TEACHER1 = f"uid=teacher1,{STAFF}"
USERS = {JSMITH: "student-pw-1", MGARCIA: "student-pw-2", TEACHER1: "staff-pw-1"}
WORK = f"ou=work,{SUFFIX}"  # where the write tests of this module create their entries
SEARCHOU = f"ou=search,{SUFFIX}"  # posix entries for ordering / extensible filters
UNINDEXED = f"ou=unindexed,{SUFFIX}"

PAGED = "1.2.840.113556.1.4.319"
ASSERTION = "1.3.6.1.1.12"
PRE_READ = "1.3.6.1.1.13.1"
POST_READ = "1.3.6.1.1.13.2"
WHOAMI = "1.3.6.1.4.1.4203.1.11.3"
PASSWD = "1.3.6.1.4.1.4203.1.11.1"
STARTTLS = "1.3.6.1.4.1.1466.20037"

OPERATIONAL = {"entryUUID", "createTimestamp", "modifyTimestamp", "creatorsName", "modifiersName",
               "entryDN", "hasSubordinates", "structuralObjectClass", "subschemaSubentry"}


# ----------------------------------------------------------------------------- helpers


def connect(srv, user=ROOT_DN, password=ROOT_PW, get_info=NONE, **kw):
    server = Server(srv.url, get_info=get_info)
    if user is None:
        return Connection(server, auto_bind=True, **kw)
    return Connection(server, user, password, auto_bind=True, **kw)


def uids(conn):
    return sorted(str(e["attributes"]["uid"][0]) if isinstance(e["attributes"]["uid"], list)
                  else str(e["attributes"]["uid"]) for e in conn.response
                  if e.get("type") == "searchResEntry" and e["attributes"].get("uid"))


def dns(conn):
    return sorted(e["dn"].lower() for e in conn.response if e.get("type") == "searchResEntry")


def ber_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, content):
    return bytes([tag]) + ber_len(len(content)) + content


def attribute_selection(*names):
    """RFC 4527 AttributeSelection ::= SEQUENCE OF LDAPString, encoded by hand."""
    return tlv(0x30, b"".join(tlv(0x04, n.encode()) for n in names))


def encode_filter(text):
    """An LDAP filter as BER (the RFC 4528 assertion control value)."""
    return ber_encoder.encode(compile_filter(parse_filter(text, None, True, True, None, False).elements[0]))


def add_ou(conn, dn):
    ou = dn.split(",")[0].split("=")[1]
    assert conn.add(dn, ["organizationalUnit"], {"ou": ou}), conn.result


def raw_simple_bind(conn, name, password):
    """A BindRequest with exactly these name/password (ldap3 refuses to send an empty password)."""
    req = BindRequest()
    req["version"] = Version(3)
    req["name"] = LDAPDN(name)
    req["authentication"] = AuthenticationChoice().setComponentByName("simple", Simple(password))
    conn.open()
    msgid = conn.send("bindRequest", req, None)
    conn.post_send_single_response(msgid)
    return conn.result


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def admin(server):
    conn = connect(server)
    for ou in (WORK, SEARCHOU, UNINDEXED):
        add_ou(conn, ou)
    posix = [("alice", 999, "Alice Anders", 5), ("bob", 1000, "Bob Brown", 6), ("carol", 1001, "Carol Clark", 7),
             ("dave", 1002, "Dave Davis", 3)]
    for uid, number, cn, flags in posix:
        assert conn.add(f"uid={uid},{SEARCHOU}", ["inetOrgPerson", "posixAccount"], {
            "uid": uid, "cn": cn, "sn": cn.split()[1], "uidNumber": str(number), "gidNumber": str(flags),
            "homeDirectory": f"/home/{uid}", "description": f"posix person {uid}"}), conn.result
    for i in range(60):
        assert conn.add(f"uid=u{i:03d},{UNINDEXED}", ["inetOrgPerson"], {
            "uid": f"u{i:03d}", "cn": f"Unindexed {i}", "sn": "Unindexed", "description": f"row {i}"}), conn.result
    yield conn
    conn.unbind()


@pytest.fixture(scope="module")
def student(server, admin):
    conn = connect(server, JSMITH, USERS[JSMITH])
    yield conn
    conn.unbind()


BULK = f"ou=bulk,{PEOPLE}"
BULK_COUNT = 2000


def bulk_ldif(n=BULK_COUNT):
    parts = [BASE_LDIF, f"\ndn: {BULK}\nobjectClass: organizationalUnit\nou: bulk\n"]
    for i in range(n):
        parts.append(f"\ndn: uid=bulk{i:05d},{BULK}\nobjectClass: inetOrgPerson\nuid: bulk{i:05d}\n"
                     f"cn: Bulk Person {i}\nsn: Person\ndescription: bulk entry number {i}\n"
                     f"title: {'x' * 200}\n")
    return "".join(parts)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A server with 2000 entries loaded offline and a server size limit of 3."""
    srv = ServerProcess(tmp_path_factory.mktemp("big"), extra_config={"limits": {"size": 3}}, ldif=bulk_ldif())
    srv.start()
    yield srv
    srv.stop()


# ----------------------------------------------------------------------------- root DSE, schema


def test_root_dse_and_schema(server):
    s = Server(server.url, get_info=ALL)
    conn = Connection(s, auto_bind=True)  # anonymous may read both
    info = s.info
    assert info.naming_contexts == [SUFFIX]
    assert "3" in [str(v) for v in info.supported_ldap_versions]
    controls = {c[0] for c in info.supported_controls}
    assert {PAGED, ASSERTION, PRE_READ, POST_READ} <= controls
    assert {WHOAMI, PASSWD, STARTTLS} <= {e[0] for e in info.supported_extensions}
    assert info.vendor_name == ["Rollcall"]
    assert info.schema_entry in ("cn=Subschema", ["cn=Subschema"])
    schema = s.schema
    uid = schema.attribute_types["uid"]
    assert uid.oid == "0.9.2342.19200300.100.1.1"
    assert uid.equality == ["caseIgnoreMatch"] or uid.equality == "caseIgnoreMatch"
    oc = schema.object_classes["inetOrgPerson"]
    assert oc.oid == "2.16.840.1.113730.3.2.2"
    assert "organizationalPerson" in oc.superior
    assert "uidNumber" in schema.attribute_types
    assert schema.attribute_types["displayName"].single_value
    assert "posixAccount" in schema.object_classes
    # the operational attributes the server maintains are published, NO-USER-MODIFICATION
    for name in ("entryUUID", "createTimestamp", "modifyTimestamp", "creatorsName", "modifiersName",
                 "entryDN", "hasSubordinates", "structuralObjectClass", "subschemaSubentry"):
        assert schema.attribute_types[name].no_user_modification, name
    conn.unbind()


def test_subschema_read_as_plain_search(server):
    conn = connect(server, None)
    assert conn.search("cn=Subschema", "(objectClass=subschema)", BASE,
                       attributes=["attributeTypes", "objectClasses", "ldapSyntaxes", "matchingRules"])
    attrs = conn.response[0]["attributes"]
    assert any("'inetOrgPerson'" in v for v in attrs["objectClasses"])
    assert any("NAME ( 'uid' 'userid' )" in v or "NAME 'uid'" in v for v in attrs["attributeTypes"])
    assert attrs["ldapSyntaxes"] and attrs["matchingRules"]


# ----------------------------------------------------------------------------- bind


@pytest.mark.parametrize("dn", [JSMITH, MGARCIA, TEACHER1])
def test_simple_bind_ok(server, dn):
    conn = Connection(Server(server.url), dn, USERS[dn])
    assert conn.bind(), conn.result
    assert conn.extend.standard.who_am_i() == f"dn:{dn}"
    conn.unbind()


def test_bind_wrong_password_and_unknown_user_look_the_same(server):
    wrong = Connection(Server(server.url), JSMITH, "not-the-password")
    assert not wrong.bind()
    unknown = Connection(Server(server.url), f"uid=nobody,{STUDENTS}", "not-the-password")
    assert not unknown.bind()
    unknown_parent = Connection(Server(server.url), f"uid=nobody,ou=nowhere,{SUFFIX}", "student-pw-1")
    assert not unknown_parent.bind()
    results = [c.result for c in (wrong, unknown, unknown_parent)]
    assert {r["result"] for r in results} == {49}
    # no hint which part was wrong: same diagnostic, no matchedDN
    assert len({r["message"] for r in results}) == 1
    assert {r["dn"] for r in results} == {""}


def test_unknown_user_bind_takes_as_long_as_a_wrong_password(tmp_path):
    """No timing hint either: with production-strength argon2 a wrong password costs a
    hash verification, so an unknown DN (or one without a password) must cost one too."""
    srv = ServerProcess(tmp_path, extra_config={
        "passwords": {"argon2": {"time_cost": 2, "memory_cost": 65536, "parallelism": 1}}}).start()

    def timed(dn):
        conn = Connection(Server(srv.url), dn, "wrong-password")
        conn.open()
        started = time.perf_counter()
        assert not conn.bind()
        elapsed = time.perf_counter() - started
        assert conn.result["result"] == 49
        conn.unbind()
        return elapsed

    try:
        timed(f"uid=warmup,{STUDENTS}")
        known = sorted(timed(dn) for dn in (MGARCIA, TEACHER1, MGARCIA, TEACHER1))  # argon2 hashes
        unknown = sorted(timed(f"uid=nobody{i},{STUDENTS}") for i in range(4))
        no_password = sorted(timed(STUDENTS) for _ in range(2))
    finally:
        srv.stop()
    typical = known[len(known) // 2]
    assert typical > 0.02  # the hash really is expensive here
    assert unknown[0] > 0.3 * typical, (known, unknown)
    assert no_password[0] > 0.3 * typical, (known, no_password)


def test_root_bind_wrong_password(server):
    conn = Connection(Server(server.url), ROOT_DN, "wrong")
    assert not conn.bind()
    assert conn.result["result"] == 49


def test_anonymous_bind(server, admin):
    conn = Connection(Server(server.url))
    assert conn.bind()
    assert conn.extend.standard.who_am_i() in (None, "")
    # anonymous reads the root DSE but no entries
    assert conn.search("", "(objectClass=*)", BASE, attributes=["namingContexts"])
    assert conn.response[0]["attributes"]["namingContexts"] == [SUFFIX]
    conn.search(PEOPLE, "(uid=jsmith)", SUBTREE)
    assert dns(conn) == []


def test_bind_dn_with_empty_password_is_refused(server):
    conn = Connection(Server(server.url))
    result = raw_simple_bind(conn, JSMITH, b"")
    assert result["result"] == 53
    # the connection stays anonymous and usable
    assert conn.extend.standard.who_am_i() in (None, "")
    assert conn.bind() is True
    conn.unbind()


def test_rebind_changes_identity(server):
    conn = Connection(Server(server.url), JSMITH, USERS[JSMITH], auto_bind=True)
    assert conn.rebind(TEACHER1, USERS[TEACHER1])
    assert conn.extend.standard.who_am_i() == f"dn:{TEACHER1}"
    assert not conn.rebind(TEACHER1, "wrong")
    assert conn.result["result"] == 49
    conn.unbind()


# ----------------------------------------------------------------------------- search filters

FILTERS = [
    ("(uid=jsmith)", ["jsmith"]),
    ("(UID=JSMITH)", ["jsmith"]),
    ("(cn=john smith)", ["jsmith"]),
    ("(cn=  John    Smith )", ["jsmith"]),
    ("(uid=nobody)", []),
    ("(sn=Sm*)", ["jsmith"]),
    ("(cn=*Smith)", ["jsmith"]),
    ("(cn=J*n*S*h)", ["jsmith"]),
    ("(mail=*@district.example)", ["jsmith", "mgarcia", "teacher1"]),
    ("(cn=*er*)", ["teacher1"]),  # two characters: no trigram, answered by the scan
    ("(mail=*)", ["jsmith", "mgarcia", "teacher1"]),
    ("(givenName=*)", ["jsmith", "mgarcia"]),
    ("(objectClass=person)", ["jsmith", "mgarcia", "teacher1"]),  # superclass of inetOrgPerson
    ("(departmentNumber=5678)", ["mgarcia"]),
    ("(departmentNumber=1234)", ["jsmith", "mgarcia"]),
    ("(sn~=Smyth)", ["jsmith"]),
    ("(cn~=Jon Smith)", ["jsmith"]),
    ("(cn:caseExactMatch:=John Smith)", ["jsmith"]),
    ("(cn:caseExactMatch:=john smith)", []),
    ("(cn:2.5.13.2:=JOHN SMITH)", ["jsmith"]),
    ("(ou:dn:=students)", ["jsmith", "mgarcia"]),
    ("(:dn:2.5.13.2:=STAFF)", ["teacher1"]),
    ("(&(objectClass=inetOrgPerson)(|(uid=jsmith)(uid=teacher1))(!(sn=Teacher)))", ["jsmith"]),
    ("(|(&(sn=Smith)(givenName=John))(&(sn=Teacher)(!(givenName=*))))", ["jsmith", "teacher1"]),
    ("(!(|(uid=jsmith)(uid=mgarcia)))", ["teacher1"]),
    ("(&(uid=*)(!(departmentNumber=1234)))", ["teacher1"]),
    ("(cn=María García)", ["mgarcia"]),
    ("(cn=maría garcía)", ["mgarcia"]),  # caseIgnoreMatch folds non-ASCII too
    ("(sn=GARCÍA)", ["mgarcia"]),
    ("(cn=*ía*)", ["mgarcia"]),
    ("(givenName=Mar*)", ["mgarcia"]),
    ("(cn=Mar\\c3\\ada*)", ["mgarcia"]),  # RFC 4515 escaped UTF-8
    ("(undefinedAttr=x)", []),
    ("(|(undefinedAttr=x)(uid=jsmith))", ["jsmith"]),
    ("(!(undefinedAttr=x))", []),  # NOT Undefined is Undefined
]


@pytest.mark.parametrize("flt,expected", FILTERS, ids=[f for f, _ in FILTERS])
def test_search_filters(server, student, flt, expected):
    conn = connect(server, JSMITH, USERS[JSMITH], check_names=False)
    assert conn.search(PEOPLE, flt, SUBTREE, attributes=["uid"]) or conn.result["result"] == 0, conn.result
    assert conn.result["result"] == 0
    assert uids(conn) == expected


ORDERING = [
    ("(uidNumber>=1000)", ["bob", "carol", "dave"]),  # integer ordering, not string ordering
    ("(uidNumber<=1000)", ["alice", "bob"]),
    ("(&(uidNumber>=1000)(uidNumber<=1001))", ["bob", "carol"]),
    ("(uidNumber=999)", ["alice"]),  # integerMatch
    ("(uidNumber=0999)", []),  # not an INTEGER (RFC 4517 3.3.16): Undefined
    ("(uidNumber:integerMatch:=1002)", ["dave"]),
    ("(gidNumber:1.2.840.113556.1.4.803:=5)", ["alice", "carol"]),  # bitwise AND: 5 and 7
    ("(gidNumber:1.2.840.113556.1.4.804:=2)", ["bob", "carol", "dave"]),  # bitwise OR: 6, 7, 3
    ("(createTimestamp>=20000101000000Z)", ["alice", "bob", "carol", "dave"]),
    ("(createTimestamp<=20000101000000Z)", []),
    ("(employeeNumber>=0)", []),  # no ORDERING rule: Undefined
    ("(description=posix*)", ["alice", "bob", "carol", "dave"]),
]


@pytest.mark.parametrize("flt,expected", ORDERING, ids=[f for f, _ in ORDERING])
def test_search_ordering_and_extensible(server, admin, flt, expected):
    admin.search(SEARCHOU, flt, SUBTREE, attributes=["uid"])
    assert admin.result["result"] == 0, admin.result
    assert uids(admin) == expected


def test_search_non_ascii_values_come_back_intact(server, student):
    student.search(STUDENTS, "(uid=mgarcia)", attributes=["cn", "sn", "givenName", "departmentNumber"])
    attrs = student.response[0]["attributes"]
    assert attrs["cn"] == ["María García"]
    assert attrs["sn"] == ["García"]
    assert attrs["givenName"] == ["María"]
    assert sorted(attrs["departmentNumber"]) == ["1234", "5678"]
    raw = student.response[0]["raw_attributes"]["cn"]
    assert raw == ["María García".encode("utf-8")]


def test_search_scopes(server, student):
    student.search(PEOPLE, "(objectClass=*)", BASE, attributes=["1.1"])
    assert dns(student) == [PEOPLE]
    student.search(PEOPLE, "(objectClass=*)", LEVEL, attributes=["1.1"])
    assert dns(student) == sorted([f"ou=students,{PEOPLE}", f"ou=staff,{PEOPLE}"])
    student.search(STUDENTS, "(objectClass=*)", SUBTREE, attributes=["1.1"])
    assert dns(student) == sorted([STUDENTS, JSMITH, MGARCIA])


def test_search_missing_base_gives_no_such_object_with_matched_dn(server, student):
    student.search(f"uid=x,ou=nowhere,{PEOPLE}", "(objectClass=*)")
    assert student.result["result"] == 32
    assert student.result["dn"].lower() == PEOPLE


# ----------------------------------------------------------------------------- attribute selection


def test_attribute_selection(server, admin):
    admin.search(JSMITH, "(objectClass=*)", BASE, attributes=["cn", "mail"])
    assert set(admin.response[0]["attributes"]) == {"cn", "mail"}
    admin.search(JSMITH, "(objectClass=*)", BASE, attributes=["CN", "commonName", "name"])
    # 'name' selects its subtypes (cn, sn, givenName …)
    assert {"cn", "sn", "givenName"} <= set(admin.response[0]["attributes"])
    admin.search(JSMITH, "(objectClass=*)", BASE, attributes=["1.1"])
    assert admin.response[0]["attributes"] == {}
    admin.search(JSMITH, "(objectClass=*)", BASE, attributes=["*"])
    got = set(admin.response[0]["attributes"])
    assert {"uid", "cn", "sn", "mail", "objectClass"} <= got
    assert not got & OPERATIONAL


def test_operational_attributes_with_plus(server, admin):
    admin.search(JSMITH, "(objectClass=*)", BASE, attributes=["+"])
    attrs = admin.response[0]["attributes"]
    assert OPERATIONAL <= set(attrs), set(attrs)
    assert "uid" not in attrs
    assert admin.response[0]["raw_attributes"]["entryDN"] == [JSMITH.encode()]
    assert attrs["hasSubordinates"] in (False, "FALSE", ["FALSE"])
    assert attrs["structuralObjectClass"] in ("inetOrgPerson", ["inetOrgPerson"])
    assert attrs["subschemaSubentry"] in ("cn=Subschema", ["cn=Subschema"])
    assert str(attrs["creatorsName"]).lower() in (ROOT_DN, f"['{ROOT_DN}']")
    # '*' and '+' together: everything
    admin.search(STUDENTS, "(objectClass=*)", BASE, attributes=["*", "+"])
    attrs = admin.response[0]["attributes"]
    assert OPERATIONAL <= set(attrs) and "ou" in attrs
    assert attrs["hasSubordinates"] in (True, "TRUE", ["TRUE"])
    # named operational attributes without '+'
    admin.search(JSMITH, "(objectClass=*)", BASE, attributes=["entryUUID", "hasSubordinates", "uid"])
    assert set(admin.response[0]["attributes"]) == {"entryUUID", "hasSubordinates", "uid"}


def test_types_only(server, admin):
    admin.search(MGARCIA, "(objectClass=*)", BASE, attributes=["cn", "departmentNumber"], types_only=True)
    entry = admin.response[0]
    assert set(entry["attributes"]) == {"cn", "departmentNumber"}
    assert all(not v for v in entry["attributes"].values())


def test_user_password_hidden_from_non_root(server, student, admin):
    student.search(JSMITH, "(objectClass=*)", BASE, attributes=["*", "userPassword"])
    assert not student.response[0]["raw_attributes"].get("userPassword")  # ldap3 fills in [] for requested
    assert "uid" in student.response[0]["raw_attributes"]
    student.search(PEOPLE, "(userPassword=*)", SUBTREE, attributes=["1.1"])
    assert dns(student) == []
    admin.search(TEACHER1, "(objectClass=*)", BASE, attributes=["userPassword"])
    assert admin.response[0]["raw_attributes"]["userPassword"][0].startswith(b"{ARGON2}")


# ----------------------------------------------------------------------------- paging


def test_paged_search_returns_everything(server, admin):
    admin.search(SUFFIX, "(objectClass=*)", SUBTREE, attributes=["1.1"])
    everything = dns(admin)
    assert len(everything) > 60
    entries = admin.extend.standard.paged_search(SUFFIX, "(objectClass=*)", SUBTREE, attributes=["1.1"],
                                                 paged_size=2, generator=False)
    got = sorted(e["dn"].lower() for e in entries if e["type"] == "searchResEntry")
    assert got == everything


def test_paged_search_cookie_by_hand(server, student):
    seen = []
    assert student.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=2)
    seen += dns(student)
    assert len(dns(student)) == 2
    cookie = student.result["controls"][PAGED]["value"]["cookie"]
    assert cookie
    student.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=2, paged_cookie=cookie)
    assert student.result["result"] == 0
    assert len(dns(student)) == 2
    seen += dns(student)
    cookie = student.result["controls"][PAGED]["value"]["cookie"]
    assert cookie
    # abandon the rest: page size 0 with the cookie
    student.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=0, paged_cookie=cookie)
    assert student.result["result"] == 0
    assert dns(student) == []
    assert not student.result["controls"][PAGED]["value"]["cookie"]
    # that cookie is gone now
    student.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=2, paged_cookie=cookie)
    assert student.result["result"] != 0
    assert len(set(seen)) == 4
    # and a new paged search runs to the end with an empty final cookie
    total, cookie = [], None
    while True:
        student.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=3, paged_cookie=cookie)
        assert student.result["result"] == 0
        total += dns(student)
        cookie = student.result["controls"][PAGED]["value"]["cookie"]
        if not cookie:
            break
    student.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"])
    assert sorted(total) == dns(student)


def test_paged_searches_interleaved_on_one_connection(server, admin):
    """Two paged searches on one connection keep separate cookies."""
    admin.search(STUDENTS, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=1)
    c1 = admin.result["controls"][PAGED]["value"]["cookie"]
    first1 = dns(admin)
    admin.search(UNINDEXED, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=1)
    c2 = admin.result["controls"][PAGED]["value"]["cookie"]
    first2 = dns(admin)
    rest1, rest2 = [], []
    while c1:
        admin.search(STUDENTS, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=1, paged_cookie=c1)
        rest1 += dns(admin)
        c1 = admin.result["controls"][PAGED]["value"]["cookie"]
    while c2:
        admin.search(UNINDEXED, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=25, paged_cookie=c2)
        rest2 += dns(admin)
        c2 = admin.result["controls"][PAGED]["value"]["cookie"]
    assert sorted(first1 + rest1) == sorted([STUDENTS, JSMITH, MGARCIA])
    assert len(set(first2 + rest2)) == 61


def test_size_limit_and_paging_past_it(big):
    conn = connect(big, JSMITH, USERS[JSMITH])
    conn.search(BULK, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["uid"])
    assert conn.result["result"] == 4  # sizeLimitExceeded
    assert len(dns(conn)) == 3
    # a client size limit below the server's wins
    conn.search(BULK, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["uid"], size_limit=2)
    assert conn.result["result"] == 4 and len(dns(conn)) == 2
    entries = conn.extend.standard.paged_search(BULK, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["uid"],
                                                paged_size=500, generator=False)
    assert len([e for e in entries if e["type"] == "searchResEntry"]) == BULK_COUNT
    # root is not held to the server size limit
    root = connect(big)
    root.search(BULK, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["1.1"])
    assert root.result["result"] == 0 and len(root.response) == BULK_COUNT


def test_paged_search_time_limit_is_per_page(tmp_path):
    """limits.time bounds each search request; a paged search whose client takes longer
    than that between pages (a sync job working through a large directory) goes on."""
    srv = ServerProcess(tmp_path, extra_config={"limits": {"time": 1}}).start()
    try:
        conn = connect(srv, JSMITH, USERS[JSMITH])
        conn.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=2)
        assert conn.result["result"] == 0
        seen = dns(conn)
        cookie = conn.result["controls"][PAGED]["value"]["cookie"]
        time.sleep(1.3)
        while cookie:
            conn.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"], paged_size=2, paged_cookie=cookie)
            assert conn.result["result"] == 0, conn.result
            seen += dns(conn)
            cookie = conn.result["controls"][PAGED]["value"]["cookie"]
        assert len(set(seen)) == 6
    finally:
        srv.stop()


def test_unindexed_search_limit(server, admin, student):
    # description is not indexed; ou=unindexed holds 61 entries > limits.unindexed (50)
    student.search(UNINDEXED, "(description=row 1*)", SUBTREE, attributes=["uid"])
    assert student.result["result"] == 11  # adminLimitExceeded
    assert dns(student) == []
    # root is exempt
    admin.search(UNINDEXED, "(description=row 1*)", SUBTREE, attributes=["uid"])
    assert admin.result["result"] == 0
    assert len(dns(admin)) == 11  # row 1, row 10..19
    admin.search(UNINDEXED, "(description=*)", SUBTREE, attributes=["1.1"])
    assert len(dns(admin)) == 60
    # an indexed term makes it fine for the user too
    student.search(UNINDEXED, "(&(sn=Unindexed)(description=row 1*))", SUBTREE, attributes=["uid"])
    assert student.result["result"] == 0 and len(dns(student)) == 11
    # a small scope is fine unindexed
    student.search(STUDENTS, "(description=*)", SUBTREE, attributes=["uid"])
    assert student.result["result"] == 0


# ----------------------------------------------------------------------------- writes


def test_add_search_delete(server, admin, student):
    dn = f"uid=newkid,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "newkid", "cn": "New Kid", "sn": "Kid",
                                              "mail": "newkid@district.example"}), admin.result
    student.search(SUFFIX, "(uid=newkid)", SUBTREE, attributes=["cn", "mail", "creatorsName"])
    assert dns(student) == [dn]
    assert student.response[0]["attributes"]["cn"] == ["New Kid"]
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "newkid", "cn": "x", "sn": "y"}) is False
    assert admin.result["result"] == 68
    assert admin.delete(dn), admin.result
    student.search(SUFFIX, "(uid=newkid)", SUBTREE)
    assert dns(student) == []
    assert not admin.delete(dn)
    assert admin.result["result"] == 32


def test_add_errors(server, admin, student):
    assert not admin.add(f"uid=orphan,ou=nowhere,{WORK}", ["inetOrgPerson"], {"uid": "orphan", "cn": "o", "sn": "o"})
    assert admin.result["result"] == 32
    assert admin.result["dn"].lower() == WORK
    # an RDN value the entry omits is added (RFC 4511 4.7), then checked: dc is not allowed
    assert not admin.add(f"dc=rdnmissing,{WORK}", ["inetOrgPerson"], {"uid": "other", "cn": "o", "sn": "o"})
    assert admin.result["result"] == 65
    # MUST attribute missing (sn)
    assert not admin.add(f"uid=nosn,{WORK}", ["inetOrgPerson"], {"uid": "nosn", "cn": "o"})
    assert admin.result["result"] == 65
    # outside the naming context
    assert not admin.add("uid=x,dc=elsewhere", ["inetOrgPerson"], {"uid": "x", "cn": "x", "sn": "x"})
    assert admin.result["result"] == 53  # no global superior knowledge (as slapd)
    # ordinary users cannot write
    assert not student.add(f"uid=bystudent,{WORK}", ["inetOrgPerson"], {"uid": "bystudent", "cn": "o", "sn": "o"})
    assert student.result["result"] == 50
    # delete of a non-leaf
    assert not admin.delete(STUDENTS)
    assert admin.result["result"] == 66


def test_modify_operations(server, admin, student):
    dn = f"uid=modme,{WORK}"
    assert admin.add(dn, ["inetOrgPerson", "posixAccount"], {
        "uid": "modme", "cn": "Mod Me", "sn": "Me", "uidNumber": "5000", "gidNumber": "100",
        "homeDirectory": "/home/modme", "mail": ["a@district.example", "b@district.example"]}), admin.result
    assert admin.modify(dn, {"mail": [(MODIFY_ADD, ["c@district.example"])],
                             "telephoneNumber": [(MODIFY_ADD, ["+1 555 0100"])]}), admin.result
    assert admin.modify(dn, {"mail": [(MODIFY_DELETE, ["A@District.Example"])]}), admin.result  # by equality rule
    assert admin.modify(dn, {"cn": [(MODIFY_REPLACE, ["Mod Me", "Modified Me"])]}), admin.result
    assert admin.modify(dn, {"uidNumber": [(MODIFY_INCREMENT, [5])]}), admin.result
    assert admin.modify(dn, {"uidNumber": [(MODIFY_INCREMENT, [-2])]}), admin.result
    assert admin.modify(dn, {"telephoneNumber": [(MODIFY_DELETE, [])]}), admin.result
    admin.search(dn, "(objectClass=*)", BASE, attributes=["mail", "cn", "uidNumber", "telephoneNumber"])
    attrs = admin.response[0]["attributes"]
    assert sorted(attrs["mail"]) == ["b@district.example", "c@district.example"]
    assert sorted(attrs["cn"]) == ["Mod Me", "Modified Me"]
    assert attrs["uidNumber"] in (5003, [5003], "5003", ["5003"])
    assert not admin.response[0]["raw_attributes"].get("telephoneNumber")
    # several changes in one request are atomic: the failing one undoes the others
    assert not admin.modify(dn, {"mail": [(MODIFY_ADD, ["d@district.example"])],
                                 "description": [(MODIFY_DELETE, ["not there"])]})
    assert admin.result["result"] == 16
    admin.search(dn, "(objectClass=*)", BASE, attributes=["mail"])
    assert "d@district.example" not in admin.response[0]["attributes"]["mail"]
    # add an existing value
    assert not admin.modify(dn, {"mail": [(MODIFY_ADD, ["B@DISTRICT.EXAMPLE"])]})
    assert admin.result["result"] == 20
    # increment of a non-integer attribute
    assert not admin.modify(dn, {"cn": [(MODIFY_INCREMENT, [1])]})
    assert admin.result["result"] in (19, 18)
    # the naming value cannot go
    assert not admin.modify(dn, {"uid": [(MODIFY_DELETE, ["modme"])]})
    assert admin.result["result"] == 67
    # modify of a missing entry
    assert not admin.modify(f"uid=ghost,{WORK}", {"cn": [(MODIFY_REPLACE, ["x"])]})
    assert admin.result["result"] == 32 and admin.result["dn"].lower() == WORK
    # ordinary users cannot modify others (nor themselves outside password modify)
    assert not student.modify(dn, {"cn": [(MODIFY_REPLACE, ["hacked"])]})
    assert student.result["result"] == 50


def test_modify_dn(server, admin, student):
    dn = f"uid=mover,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "mover", "cn": "Mover", "sn": "Mover"}), admin.result
    # plain rename, old RDN value dropped
    assert admin.modify_dn(dn, "uid=moved"), admin.result
    admin.search(WORK, "(|(uid=mover)(uid=moved))", SUBTREE, attributes=["uid", "entryDN"])
    assert dns(admin) == [f"uid=moved,{WORK}"]
    assert admin.response[0]["attributes"]["uid"] == ["moved"]
    # keep the old RDN value (delete_old_dn=False) and move under a new superior
    newparent = f"ou=moved-here,{WORK}"
    add_ou(admin, newparent)
    assert admin.modify_dn(f"uid=moved,{WORK}", "uid=moved2", delete_old_dn=False, new_superior=newparent), admin.result
    admin.search(newparent, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["uid"])
    assert dns(admin) == [f"uid=moved2,{newparent}"]
    assert sorted(admin.response[0]["attributes"]["uid"]) == ["moved", "moved2"]
    student.search(SUFFIX, "(uid=moved)", SUBTREE, attributes=["1.1"])
    assert dns(student) == [f"uid=moved2,{newparent}"]
    # move a subtree: children follow
    assert admin.modify_dn(newparent, "ou=moved-there", new_superior=SUFFIX), admin.result
    admin.search(f"ou=moved-there,{SUFFIX}", "(uid=moved2)", SUBTREE, attributes=["entryDN"])
    assert dns(admin) == [f"uid=moved2,ou=moved-there,{SUFFIX}"]
    assert admin.response[0]["raw_attributes"]["entryDN"] == [f"uid=moved2,ou=moved-there,{SUFFIX}".encode()]
    # target exists
    assert admin.add(f"uid=other,{WORK}", ["inetOrgPerson"], {"uid": "other", "cn": "o", "sn": "o"})
    assert not admin.modify_dn(f"uid=other,{WORK}", "uid=moved2", new_superior=f"ou=moved-there,{SUFFIX}")
    assert admin.result["result"] == 68
    # below itself
    assert not admin.modify_dn(f"ou=moved-there,{SUFFIX}", "ou=x", new_superior=f"uid=moved2,ou=moved-there,{SUFFIX}")
    assert admin.result["result"] == 53
    # new superior missing
    assert not admin.modify_dn(f"uid=other,{WORK}", "uid=other", new_superior=f"ou=missing,{SUFFIX}")
    assert admin.result["result"] == 32
    assert not student.modify_dn(f"uid=other,{WORK}", "uid=renamed")
    assert student.result["result"] == 50


def test_compare(server, admin, student):
    assert student.compare(JSMITH, "uid", "jsmith") is True
    assert student.result["result"] == 6
    assert student.compare(JSMITH, "cn", "JOHN SMITH") is True
    assert student.compare(JSMITH, "cn", "Jane Smith") is False
    assert student.result["result"] == 5
    assert student.compare(MGARCIA, "departmentNumber", "5678") is True
    assert student.compare(MGARCIA, "cn", "maría garcía") is True
    assert student.compare(JSMITH, "objectClass", "person") is True  # superclass
    assert student.compare(JSMITH, "name", "Smith") is True  # supertype: matches sn
    student.compare(JSMITH, "telephoneNumber", "1")
    assert student.result["result"] == 16
    student.compare(f"uid=nobody,{STUDENTS}", "uid", "nobody")
    assert student.result["result"] == 32
    # passwords are not for comparing by ordinary users
    student.compare(TEACHER1, "userPassword", "staff-pw-1")
    assert student.result["result"] == 50


# ----------------------------------------------------------------------------- operational attributes


def test_operational_attributes_are_maintained(server, admin):
    dn = f"uid=stamps,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "stamps", "cn": "Stamps", "sn": "Stamps",
                                              "userPassword": "stamps-pw-1"}), admin.result
    admin.search(dn, "(objectClass=*)", BASE, attributes=["+"])
    before = admin.response[0]["raw_attributes"]
    assert before["creatorsName"] == [ROOT_DN.encode()]
    assert before["modifiersName"] == [ROOT_DN.encode()]
    assert before["createTimestamp"] == before["modifyTimestamp"]
    time.sleep(1.1)  # timestamps have a one second resolution
    # the user changes their own password: modifiersName becomes the user
    user = connect(server, dn, "stamps-pw-1")
    assert user.extend.standard.modify_password(dn, "stamps-pw-1", "Fresh-lamp-pw-2") is True
    admin.search(dn, "(objectClass=*)", BASE, attributes=["+"])
    after = admin.response[0]["raw_attributes"]
    assert after["modifiersName"] == [dn.encode()]
    assert after["modifyTimestamp"][0] > before["modifyTimestamp"][0]
    assert after["createTimestamp"] == before["createTimestamp"]
    assert after["creatorsName"] == before["creatorsName"]
    assert after["entryUUID"] == before["entryUUID"]
    # an ordinary modify by root
    time.sleep(1.1)
    assert admin.modify(dn, {"description": [(MODIFY_REPLACE, ["changed"])]})
    admin.search(dn, "(objectClass=*)", BASE, attributes=["+"])
    again = admin.response[0]["raw_attributes"]
    assert again["modifiersName"] == [ROOT_DN.encode()]
    assert again["modifyTimestamp"][0] > after["modifyTimestamp"][0]
    # entryUUID is immutable; createTimestamp and friends are not user-settable
    assert not admin.modify(dn, {"entryUUID": [(MODIFY_REPLACE, ["00000000-0000-0000-0000-000000000000"])]})
    assert admin.result["result"] == 19
    for attr, value in [("createTimestamp", "20000101000000Z"), ("modifiersName", "cn=someone"),
                        ("creatorsName", "cn=someone"), ("structuralObjectClass", "person")]:
        assert not admin.modify(dn, {attr: [(MODIFY_REPLACE, [value])]}), attr
        assert admin.result["result"] == 19, (attr, admin.result)
    assert not admin.add(f"uid=stamped,{WORK}", ["inetOrgPerson"], {
        "uid": "stamped", "cn": "s", "sn": "s", "createTimestamp": "20000101000000Z"})
    assert admin.result["result"] == 19
    assert not admin.add(f"uid=stamped,{WORK}", ["inetOrgPerson"], {
        "uid": "stamped", "cn": "s", "sn": "s", "entryUUID": "00000000-0000-0000-0000-000000000000"})
    assert admin.result["result"] == 19
    admin.search(dn, "(objectClass=*)", BASE, attributes=["entryUUID"])
    assert admin.response[0]["raw_attributes"]["entryUUID"] == before["entryUUID"]


def test_entry_uuid_is_indexed_and_searchable(server, admin):
    admin.search(MGARCIA, "(objectClass=*)", BASE, attributes=["entryUUID"])
    uuid = admin.response[0]["raw_attributes"]["entryUUID"][0].decode()
    admin.search(SUFFIX, f"(entryUUID={uuid.upper()})", SUBTREE, attributes=["1.1"])
    assert dns(admin) == [MGARCIA]


# ----------------------------------------------------------------------------- schema checks


def test_schema_single_value(server, admin):
    dn = f"uid=single,{WORK}"
    assert not admin.add(dn, ["inetOrgPerson"], {"uid": "single", "cn": "s", "sn": "s",
                                                 "displayName": ["One", "Two"]})
    assert admin.result["result"] == 19
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "single", "cn": "s", "sn": "s", "displayName": "One",
                                              "preferredLanguage": "en"}), admin.result
    assert not admin.modify(dn, {"displayName": [(MODIFY_ADD, ["Two"])]})
    assert admin.result["result"] == 19
    assert not admin.modify(dn, {"preferredLanguage": [(MODIFY_REPLACE, ["en", "fr"])]})
    assert admin.result["result"] == 19
    assert admin.modify(dn, {"displayName": [(MODIFY_REPLACE, ["Two"])]}), admin.result


def test_schema_unknown_attribute(server, admin):
    conn = connect(server, check_names=False)
    assert not conn.add(f"uid=unknownattr,{WORK}", ["inetOrgPerson"], {
        "uid": "unknownattr", "cn": "s", "sn": "s", "fooBarBaz": "x"})
    assert conn.result["result"] == 17
    assert not conn.modify(JSMITH, {"fooBarBaz": [(MODIFY_ADD, ["x"])]})
    assert conn.result["result"] == 17
    # known attribute the object classes do not allow
    assert not conn.add(f"uid=notallowed,{WORK}", ["inetOrgPerson"], {
        "uid": "notallowed", "cn": "s", "sn": "s", "uidNumber": "1"})
    assert conn.result["result"] == 65
    # unknown object class
    assert not conn.add(f"uid=unknownoc,{WORK}", ["inetOrgPerson", "fooClass"], {
        "uid": "unknownoc", "cn": "s", "sn": "s"})
    assert conn.result["result"] == 65
    conn.unbind()


def test_schema_structural_class_change(server, admin):
    dn = f"uid=structural,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "structural", "cn": "s", "sn": "s"}), admin.result
    assert not admin.modify(dn, {"objectClass": [(MODIFY_REPLACE, ["account"])]})
    assert admin.result["result"] == 69
    # adding an auxiliary class is fine
    assert admin.modify(dn, {"objectClass": [(MODIFY_ADD, ["posixAccount"])],
                             "uidNumber": [(MODIFY_ADD, ["42"])], "gidNumber": [(MODIFY_ADD, ["42"])],
                             "homeDirectory": [(MODIFY_ADD, ["/home/s"])]}), admin.result
    admin.search(dn, "(objectClass=*)", BASE, attributes=["structuralObjectClass"])
    assert admin.response[0]["raw_attributes"]["structuralObjectClass"] == [b"inetOrgPerson"]


def test_schema_object_class_chains(server, admin):
    dn = f"uid=chain,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "chain", "cn": "c", "sn": "c"}), admin.result
    # a second, unrelated structural class
    assert not admin.modify(dn, {"objectClass": [(MODIFY_ADD, ["account"])]})
    assert admin.result["result"] == 65
    assert not admin.add(f"uid=chain2,{WORK}", ["inetOrgPerson", "account"], {"uid": "chain2", "cn": "c", "sn": "c"})
    assert admin.result["result"] == 65
    # no structural class at all
    assert not admin.add(f"uid=chain3,{WORK}", ["posixAccount"], {
        "uid": "chain3", "cn": "c", "uidNumber": "1", "gidNumber": "1", "homeDirectory": "/h"})
    assert admin.result["result"] == 65
    # the superclass chain spelled out is the same structural class
    assert admin.modify(dn, {"objectClass": [(MODIFY_REPLACE, ["top", "person", "organizationalPerson",
                                                               "inetOrgPerson"])]}), admin.result
    # a superclass as the only class is a structural class change
    assert not admin.modify(dn, {"objectClass": [(MODIFY_REPLACE, ["person"])]})
    assert admin.result["result"] == 69


def test_schema_syntax_errors(server, admin):
    conn = connect(server, check_names=False)
    base = {"uid": "syntax", "cn": "s", "sn": "s", "gidNumber": "1", "homeDirectory": "/h"}
    assert not conn.add(f"uid=syntax,{WORK}", ["inetOrgPerson", "posixAccount"], dict(base, uidNumber="abc"))
    assert conn.result["result"] == 21
    assert conn.add(f"uid=syntax,{WORK}", ["inetOrgPerson", "posixAccount"], dict(base, uidNumber="7")), conn.result
    assert not conn.modify(f"uid=syntax,{WORK}", {"uidNumber": [(MODIFY_REPLACE, ["7.5"])]})
    assert conn.result["result"] == 21
    assert not conn.modify(f"uid=syntax,{WORK}", {"mail": [(MODIFY_ADD, ["mäil@district.example"])]})  # IA5
    assert conn.result["result"] == 21
    assert not conn.modify(f"uid=syntax,{WORK}", {"manager": [(MODIFY_ADD, ["not a dn"])]})
    assert conn.result["result"] == 21
    conn.unbind()


def test_dn_normalisation_in_search_and_compare(server, student):
    variants = ["UID=JSmith, OU=Students,OU=People, DC=District,DC=Example",
                "uid=jsmith,ou=students,ou=people,dc=district,dc=example",
                "  uid = jsmith ,ou=students , ou=people,dc=district,dc=example",
                "userid=JSMITH,ou=STUDENTS,ou=people,dc=DISTRICT,dc=example",
                "0.9.2342.19200300.100.1.1=jsmith,ou=students,ou=people,dc=district,dc=example"]
    for base in variants:
        conn = connect(server, JSMITH, USERS[JSMITH], check_names=False)
        conn.search(base, "(objectClass=*)", BASE, attributes=["uid"])
        assert conn.result["result"] == 0, (base, conn.result)
        assert uids(conn) == ["jsmith"], base
        assert conn.compare(base, "uid", "jsmith") is True
        conn.unbind()
    # binding with a differently written DN works too, and whoami reports the stored DN
    conn = connect(server, "UID=JSmith, OU=Students,OU=People, DC=District,DC=Example", USERS[JSMITH])
    assert conn.extend.standard.who_am_i().lower() == f"dn:{JSMITH}"


@pytest.mark.parametrize("rdn,attrs,flt", [
    ("cn=Smith\\, John", {"cn": "Smith, John", "sn": "Smith"}, "(cn=Smith, John)"),
    ("cn=a\\+b", {"cn": "a+b", "sn": "plus"}, "(cn=a+b)"),
    ("cn=\\#hash\\=equals\\;semi", {"cn": "#hash=equals;semi", "sn": "chars"}, "(cn=#hash=equals;semi)"),
    ("cn=\\ padded \\ ", {"cn": " padded  ", "sn": "spaces"}, None),
    ("cn=quote\\\"d\\<\\>", {"cn": 'quote"d<>', "sn": "quoted"}, None),
    ("cn=Zoë Ångström", {"cn": "Zoë Ångström", "sn": "Ångström"}, "(cn=zoë ångström)"),
])
def test_escaped_dns(server, admin, rdn, attrs, flt):
    dn = f"{rdn},{WORK}"
    conn = connect(server, check_names=False)
    assert conn.add(dn, ["person"], attrs), conn.result
    conn.search(dn, "(objectClass=*)", BASE, attributes=["cn"])
    assert conn.result["result"] == 0, conn.result
    assert len(conn.response) == 1
    assert conn.response[0]["raw_attributes"]["cn"] == [attrs["cn"].encode()]
    if flt:
        conn.search(WORK, flt, LEVEL, attributes=["cn"])
        assert [e["raw_attributes"]["cn"] for e in conn.response] == [[attrs["cn"].encode()]]
        # the DN the server returns parses back to the same entry
        returned = conn.response[0]["dn"]
        conn.search(returned, "(objectClass=*)", BASE, attributes=["1.1"])
        assert conn.result["result"] == 0 and len(conn.response) == 1
    assert conn.add(dn, ["person"], attrs) is False and conn.result["result"] == 68
    assert conn.delete(dn), conn.result
    conn.search(dn, "(objectClass=*)", BASE)
    assert conn.result["result"] == 32
    conn.unbind()


def test_unicode_normalisation(server, admin):
    import unicodedata

    nfc = "Zoë Ångström-Çelik"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    conn = connect(server, check_names=False)
    dn = f"cn={nfc},{WORK}"
    assert conn.add(dn, ["person"], {"cn": nfc, "sn": "Ångström"}), conn.result
    for base in (f"cn={nfd},{WORK}", f"CN={nfc.upper()},{WORK}"):
        conn.search(base, "(objectClass=*)", BASE, attributes=["1.1"])
        assert conn.result["result"] == 0 and len(conn.response) == 1, base
    for flt in (f"(cn={nfd})", f"(cn={nfc.lower()})", f"(cn={nfd[:4]}*)", f"(sn={unicodedata.normalize('NFD', 'ÅNGSTRÖM')})"):
        conn.search(WORK, flt, LEVEL, attributes=["cn"])
        assert [e["raw_attributes"]["cn"] for e in conn.response] == [[nfc.encode()]], flt
    assert conn.compare(dn, "cn", nfd) is True
    # the same name in the other normal form is the same DN
    assert not conn.add(f"cn={nfd},{WORK}", ["person"], {"cn": nfd, "sn": "x"})
    assert conn.result["result"] == 68
    assert conn.delete(f"cn={nfd},{WORK}"), conn.result
    conn.unbind()


def test_attribute_options_are_not_silently_dropped(server, admin):
    """Tagging options (RFC 4512 2.5, ';lang-en') are not supported: such a description is
    unrecognised (add refused with undefinedAttributeType, filter Undefined), never read
    as the untagged attribute; ';binary' still names the attribute itself."""
    conn = connect(server, check_names=False)
    dn = f"uid=tagged,{WORK}"
    ok = conn.add(dn, ["inetOrgPerson"], {"uid": "tagged", "cn": "Base", "sn": "T", "description;lang-en": "English"})
    if ok:
        # stored: it must come back tagged, and an untagged filter must not see it as plain description
        conn.search(dn, "(objectClass=*)", BASE, attributes=["description"])
        assert "description;lang-en" in conn.response[0]["raw_attributes"], conn.response[0]["raw_attributes"]
    else:
        assert conn.result["result"] == 17
    # a filter on a tagged description must not match untagged values (jsmith's cn has no tag)
    conn.search(PEOPLE, "(cn;lang-en=John Smith)", SUBTREE, attributes=["1.1"])
    assert dns(conn) == []


def test_multi_valued_rdn(server, admin):
    dn = f"cn=A+uid=b,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"cn": "A", "uid": "b", "sn": "multi"}), admin.result
    # the AVAs in either order, any case, name the same entry
    loose = connect(server, check_names=False)
    for variant in (dn, f"uid=B+cn=a,{WORK}", f"UID=b + CN=A,{WORK}"):
        loose.search(variant, "(objectClass=*)", BASE, attributes=["cn", "uid"])
        assert loose.result["result"] == 0, (variant, loose.result)
        assert loose.response[0]["raw_attributes"]["uid"] == [b"b"]
    loose.unbind()
    assert admin.add(f"uid=b+cn=A,{WORK}", ["inetOrgPerson"], {"cn": "A", "uid": "b", "sn": "multi"}) is False
    assert admin.result["result"] == 68
    # both naming values are protected
    assert not admin.modify(dn, {"uid": [(MODIFY_DELETE, ["b"])]})
    assert admin.result["result"] == 67
    admin.search(WORK, "(&(cn=A)(uid=b))", LEVEL, attributes=["1.1"])
    assert len(admin.response) == 1
    assert admin.delete(f"uid=b+cn=a,{WORK}"), admin.result


# ----------------------------------------------------------------------------- extended operations


def test_who_am_i(server):
    for dn, pw in [(JSMITH, USERS[JSMITH]), (ROOT_DN, ROOT_PW)]:
        conn = connect(server, dn, pw)
        assert conn.extend.standard.who_am_i() == f"dn:{dn}"
        conn.unbind()


def test_modify_password(server, admin):
    dn = f"uid=pwuser,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "pwuser", "cn": "P", "sn": "P",
                                              "userPassword": "first-password"}), admin.result
    user = connect(server, dn, "first-password")
    # own password, with the old one
    assert user.extend.standard.modify_password(dn, "first-password", "second-password") is True
    assert Connection(Server(server.url), dn, "second-password").bind()
    assert not Connection(Server(server.url), dn, "first-password").bind()
    # wrong old password
    assert user.extend.standard.modify_password(dn, "wrong-old", "third-password") is False
    assert user.result["result"] == 49
    # too short
    assert user.extend.standard.modify_password(dn, "second-password", "short") is False
    assert user.result["result"] == 19
    # no new password: the server generates one and returns it
    generated = user.extend.standard.modify_password(dn, "second-password", None)
    assert isinstance(generated, str) and len(generated) >= 8
    assert Connection(Server(server.url), dn, generated).bind()
    assert not Connection(Server(server.url), dn, "second-password").bind()
    # own identity implied (no user given)
    assert user.extend.standard.modify_password(None, generated, "fourth-password") is True
    assert Connection(Server(server.url), dn, "fourth-password").bind()
    # another user's password: only root
    student = connect(server, MGARCIA, USERS[MGARCIA])
    assert student.extend.standard.modify_password(dn, None, "hijacked-password") is False
    assert student.result["result"] == 50
    gen2 = admin.extend.standard.modify_password(dn, None, None)
    assert isinstance(gen2, str) and Connection(Server(server.url), dn, gen2).bind()
    # the stored value is a hash
    admin.search(dn, "(objectClass=*)", BASE, attributes=["userPassword"])
    stored = admin.response[0]["raw_attributes"]["userPassword"]
    assert len(stored) == 1 and stored[0].startswith(b"{ARGON2}") and gen2.encode() not in stored[0]
    # anonymous may not
    anon = connect(server, None)
    assert anon.extend.standard.modify_password(dn, None, "anon-password") is False
    assert anon.result["result"] == 53


def test_unknown_extended_operation(server, student):
    student.extended("1.2.3.4.5.6.7")
    assert student.result["result"] == 2
    assert student.extend.standard.who_am_i() == f"dn:{JSMITH}"  # connection still fine


# ----------------------------------------------------------------------------- TLS


def tls_config(srv):
    return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(srv.ca_file))


def test_start_tls(server):
    conn = Connection(Server(server.url, tls=tls_config(server)), JSMITH, USERS[JSMITH])
    conn.open()
    assert conn.start_tls(), conn.result
    assert conn.tls_started
    assert conn.bind(), conn.result
    assert conn.extend.standard.who_am_i() == f"dn:{JSMITH}"
    conn.search(STUDENTS, "(uid=mgarcia)", attributes=["cn"])
    assert conn.response[0]["attributes"]["cn"] == ["María García"]
    # a second StartTLS on the same connection is refused
    conn.extended(STARTTLS)
    assert conn.result["result"] != 0
    conn.unbind()


def test_start_tls_rejects_an_untrusted_server_cert(server, tmp_path):
    from directory.tls import make_self_signed

    make_self_signed(tmp_path / "other.crt", tmp_path / "other.key")
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(tmp_path / "other.crt"))
    conn = Connection(Server(server.url, tls=tls))
    conn.open()
    with pytest.raises(Exception):
        conn.start_tls()


def test_ldaps(server):
    s = Server(server.ldaps_url, use_ssl=True, tls=tls_config(server), get_info=ALL)
    conn = Connection(s, JSMITH, USERS[JSMITH], auto_bind=True)
    assert conn.extend.standard.who_am_i() == f"dn:{JSMITH}"
    assert s.info.naming_contexts == [SUFFIX]
    conn.search(STUDENTS, "(uid=jsmith)", attributes=["uid"])
    assert uids(conn) == ["jsmith"]
    # StartTLS on an ldaps connection makes no sense
    conn.extended(STARTTLS)
    assert conn.result["result"] != 0
    conn.unbind()


# ----------------------------------------------------------------------------- controls


def test_assertion_control(server, admin):
    dn = f"uid=asserted,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "asserted", "cn": "A", "sn": "A", "description": "v1"})
    ok = [(ASSERTION, True, encode_filter("(description=v1)"))]
    bad = [(ASSERTION, True, encode_filter("(description=v0)"))]
    assert not admin.modify(dn, {"description": [(MODIFY_REPLACE, ["v2"])]}, controls=bad)
    assert admin.result["result"] == 122
    assert admin.modify(dn, {"description": [(MODIFY_REPLACE, ["v2"])]}, controls=ok), admin.result
    # now v1 no longer holds
    assert not admin.modify(dn, {"description": [(MODIFY_REPLACE, ["v3"])]}, controls=ok)
    assert admin.result["result"] == 122
    # search: applies to the base object
    admin.search(dn, "(objectClass=*)", BASE, controls=[(ASSERTION, True, encode_filter("(description=v2)"))])
    assert admin.result["result"] == 0 and len(admin.response) == 1
    admin.search(dn, "(objectClass=*)", BASE, controls=[(ASSERTION, True, encode_filter("(description=v9)"))])
    assert admin.result["result"] == 122 and admin.response == []
    # compare, modrdn, delete
    admin.compare(dn, "cn", "A", controls=[(ASSERTION, True, encode_filter("(sn=B)"))])
    assert admin.result["result"] == 122
    assert not admin.modify_dn(dn, "uid=asserted2", controls=[(ASSERTION, True, encode_filter("(sn=B)"))])
    assert admin.result["result"] == 122
    assert not admin.delete(dn, controls=[(ASSERTION, True, encode_filter("(sn=B)"))])
    assert admin.result["result"] == 122
    assert admin.delete(dn, controls=[(ASSERTION, True, encode_filter("(&(sn=A)(description=v2))"))]), admin.result


def test_pre_and_post_read_controls(server, admin):
    dn = f"uid=readback,{WORK}"
    # post-read on add, value encoded by hand
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "readback", "cn": "Before", "sn": "R"},
                     controls=[(POST_READ, True, attribute_selection("cn", "entryUUID"))]), admin.result
    post = admin.result["controls"][POST_READ]["value"]["result"]
    assert post["cn"] == ["Before"] and post["entryUUID"]
    uuid = post["entryUUID"]
    # pre- and post-read on modify (ldap3's helpers)
    assert admin.modify(dn, {"cn": [(MODIFY_REPLACE, ["After"])]},
                        controls=[pre_read_control(["cn", "modifyTimestamp"]), post_read_control(["cn"])]), admin.result
    assert admin.result["controls"][PRE_READ]["value"]["result"]["cn"] == ["Before"]
    assert admin.result["controls"][POST_READ]["value"]["result"]["cn"] == ["After"]
    # modrdn: pre has the old RDN value, post the new
    assert admin.modify_dn(dn, "uid=readback2", controls=[(PRE_READ, False, attribute_selection("uid")),
                                                          (POST_READ, False, attribute_selection("uid", "entryUUID"))])
    assert admin.result["controls"][PRE_READ]["value"]["result"]["uid"] == ["readback"]
    assert admin.result["controls"][POST_READ]["value"]["result"]["uid"] == ["readback2"]
    assert admin.result["controls"][POST_READ]["value"]["result"]["entryUUID"] == uuid
    # delete: pre-read gives what was deleted
    assert admin.delete(f"uid=readback2,{WORK}", controls=[(PRE_READ, True, attribute_selection("*"))]), admin.result
    pre = admin.result["controls"][PRE_READ]["value"]["result"]
    assert pre["cn"] == ["After"] and pre["uid"] == ["readback2"]


def test_pre_read_does_not_leak_passwords(server, admin, student):
    # only root can write, so check the read-back respects access control by reading userPassword
    dn = f"uid=readpw,{WORK}"
    assert admin.add(dn, ["inetOrgPerson"], {"uid": "readpw", "cn": "R", "sn": "R", "userPassword": "readpw-secret"},
                     controls=[(POST_READ, True, attribute_selection("userPassword"))])
    value = admin.result["controls"][POST_READ]["value"]["result"]["userPassword"][0]
    assert (value if isinstance(value, bytes) else value.encode()).startswith(b"{ARGON2}")


def test_unknown_critical_control(server, student):
    student.search(JSMITH, "(objectClass=*)", BASE, controls=[("1.2.3.4.5.99", True, None)])
    assert student.result["result"] == 12
    assert student.response == []
    # not critical: ignored
    student.search(JSMITH, "(objectClass=*)", BASE, controls=[("1.2.3.4.5.99", False, b"junk")])
    assert student.result["result"] == 0 and len(student.response) == 1
    # a known control on an operation it does not apply to, critical
    student.compare(JSMITH, "uid", "jsmith", controls=[(PAGED, True, tlv(0x30, b"\x02\x01\x01\x04\x00"))])
    assert student.result["result"] == 12
    student.extended(WHOAMI, controls=[("1.2.3.4.5.99", True, None)])
    assert student.result["result"] == 12


# ----------------------------------------------------------------------------- abandon, pipelining


def test_abandon_large_search(big):
    conn = Connection(Server(big.url), ROOT_DN, ROOT_PW, client_strategy=ASYNC, auto_bind=True)
    msgid = conn.search(BULK, "(objectClass=*)", SUBTREE, attributes=["*"])
    assert conn.abandon(msgid)
    # the connection keeps working: a later operation on it succeeds
    later = conn.search(BULK, "(uid=bulk00042)", SUBTREE, attributes=["uid"])
    response, result = conn.get_response(later, timeout=10)
    assert result["result"] == 0
    assert [e["attributes"]["uid"] for e in response] == [["bulk00042"]]
    # the abandoned search never completes
    with pytest.raises(LDAPResponseTimeoutError):
        conn.get_response(msgid, timeout=1)
    w = conn.extended(WHOAMI)
    _, result = conn.get_response(w, timeout=10)
    assert result["result"] == 0
    conn.unbind()


def test_abandoned_search_does_not_block_others(big):
    """While one connection's huge search runs, another client is answered."""
    slow = Connection(Server(big.url), ROOT_DN, ROOT_PW, client_strategy=ASYNC, auto_bind=True)
    msgids = [slow.search(BULK, "(objectClass=*)", SUBTREE, attributes=["*", "+"]) for _ in range(3)]
    quick = connect(big, JSMITH, USERS[JSMITH])
    started = time.monotonic()
    quick.search(BULK, "(uid=bulk01999)", SUBTREE, attributes=["uid"])
    assert quick.result["result"] == 0 and len(quick.response) == 1
    assert time.monotonic() - started < 5
    for m in msgids:
        slow.abandon(m)
    slow.unbind()


def test_pipelined_async_searches(server, admin):
    conn = Connection(Server(server.url), ROOT_DN, ROOT_PW, client_strategy=ASYNC, auto_bind=True)
    wanted = [f"u{i:03d}" for i in range(60)] * 2
    msgids = [conn.search(UNINDEXED, f"(uid={u})", SUBTREE, attributes=["uid", "description"]) for u in wanted]
    # some writes and a compare pipelined in between
    extra = [conn.compare(JSMITH, "uid", "jsmith"), conn.extended(WHOAMI)]
    for u, m in reversed(list(zip(wanted, msgids))):  # collect out of order
        response, result = conn.get_response(m, timeout=10)
        assert result["result"] == 0
        assert [e["attributes"]["uid"] for e in response] == [[u]]
        assert response[0]["attributes"]["description"] == [f"row {int(u[1:])}"]
    _, result = conn.get_response(extra[0], timeout=10)
    assert result["result"] == 6
    _, result = conn.get_response(extra[1], timeout=10)
    assert result["result"] == 0
    conn.unbind()


def test_pipelined_async_paged_and_plain(server, admin):
    conn = Connection(Server(server.url), ROOT_DN, ROOT_PW, client_strategy=ASYNC, auto_bind=True)
    m1 = conn.search(UNINDEXED, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["uid"])
    m2 = conn.search(STUDENTS, "(objectClass=inetOrgPerson)", SUBTREE, attributes=["uid"])
    m3 = conn.search(SEARCHOU, "(uidNumber>=1000)", SUBTREE, attributes=["uid"])
    r1, _ = conn.get_response(m1, timeout=10)
    r3, _ = conn.get_response(m3, timeout=10)
    r2, _ = conn.get_response(m2, timeout=10)
    assert len(r1) == 60
    assert sorted(e["attributes"]["uid"][0] for e in r2) == ["jsmith", "mgarcia"]
    assert sorted(e["attributes"]["uid"][0] for e in r3) == ["bob", "carol", "dave"]
    conn.unbind()


def test_server_log_never_holds_a_password(server):
    """Runs last in this module: nothing above left a clear password in the server's log."""
    used = [ROOT_PW, *USERS.values(), "not-the-password", "stamps-pw-1", "Fresh-lamp-pw-2", "first-password",
            "second-password", "third-password", "fourth-password", "hijacked-password", "anon-password",
            "wrong-old", "readpw-secret"]
    text = server.log_path.read_text(errors="replace")
    assert "bind ok" in text  # the log is there and in use
    for pw in used:
        assert pw not in text, pw
