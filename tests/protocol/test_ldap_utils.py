"""The server as OpenLDAP's command-line clients see it, over real sockets.

One server per module (the `server` fixture). Tests that write create their own
entries under an `ou=t-…` subtree of the suffix, so the demo tree under ou=people
stays as BASE_LDIF made it and searches over it can count exactly.
"""
import itertools
import re

import pytest

from tests.conftest import ROOT_DN, SUFFIX, requires_ldap_utils

from .ldaputil import (
    ADMIN, ANON, AS_JSMITH, JSMITH, MGARCIA, PEOPLE, STAFF, STUDENTS, TEACHER1,
    add, dns, entries, lower_keys, modify, ok, search, tool,
)

pytestmark = requires_ldap_utils

PAGED = "1.2.840.113556.1.4.319"
ASSERTION = "1.3.6.1.1.12"
PRE_READ = "1.3.6.1.1.13.1"
POST_READ = "1.3.6.1.1.13.2"
MANAGE_DSA_IT = "2.16.840.1.113730.3.4.2"
STARTTLS = "1.3.6.1.4.1.1466.20037"
WHOAMI = "1.3.6.1.4.1.4203.1.11.3"
PASSWD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"

ALL_PEOPLE = {PEOPLE, STUDENTS, STAFF, JSMITH, MGARCIA, TEACHER1}
USERS = {JSMITH, MGARCIA, TEACHER1}

_counter = itertools.count(1)


def scratch(srv, name=None):
    """A fresh organizationalUnit under the suffix for a test's writes; returns its DN."""
    ou = f"t-{name or 'x'}-{next(_counter)}"
    dn = f"ou={ou},{SUFFIX}"
    ok(add(srv, f"dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n"))
    return dn


def person(dn, uid, *extra, password=None, posix=False):
    lines = [f"dn: {dn}", "objectClass: inetOrgPerson"]
    if posix:
        lines.append("objectClass: posixAccount")
    lines += [f"uid: {uid}", f"cn: {uid} person", f"sn: {uid}"]
    if posix:
        lines += ["uidNumber: 1000", "gidNumber: 100", f"homeDirectory: /home/{uid}"]
    if password:
        lines.append(f"userPassword: {password}")
    lines += list(extra)
    return "\n".join(lines) + "\n"


def found(srv, base, *args, bind=ADMIN, flt="(objectClass=*)", scope="sub"):
    """The DNs a search returns (asserting success)."""
    return set(dns(ok(search(srv, "-b", base, "-s", scope, flt, "1.1", *args, bind=bind))))


def read(srv, dn, *attrs, bind=ADMIN):
    """One entry's attributes (lower-cased names), or None if it does not exist."""
    r = search(srv, "-b", dn, "-s", "base", "(objectClass=*)", *attrs, bind=bind)
    if r.returncode == 32:
        return None
    got = entries(ok(r))
    assert list(got) == [dn] or [d.lower() for d in got] == [dn.lower()], got
    return lower_keys(next(iter(got.values())))


# =============================================================================
# ldapsearch: scopes


def test_scope_base(server):
    assert found(server, PEOPLE, scope="base") == {PEOPLE}


def test_scope_one(server):
    assert found(server, PEOPLE, scope="one") == {STUDENTS, STAFF}
    assert found(server, STUDENTS, scope="one") == {JSMITH, MGARCIA}


def test_scope_sub(server):
    assert found(server, PEOPLE, scope="sub") == ALL_PEOPLE


def test_scope_children(server):
    # subordinateSubtree: everything below the base, not the base itself
    assert found(server, PEOPLE, scope="children") == ALL_PEOPLE - {PEOPLE}


def test_scope_one_on_leaf_is_empty(server):
    assert found(server, JSMITH, scope="one") == set()


# =============================================================================
# ldapsearch: every filter type


@pytest.mark.parametrize("flt, expected", [
    # equality (indexed and not, case-insensitive matching, non-ASCII value)
    ("(uid=jsmith)", {JSMITH}),
    ("(uid=JSMITH)", {JSMITH}),
    ("(cn=maría garcía)", {MGARCIA}),
    ("(departmentNumber=5678)", {MGARCIA}),
    ("(departmentNumber=1234)", {JSMITH, MGARCIA}),
    ("(objectClass=organizationalUnit)", {PEOPLE, STUDENTS, STAFF}),
    ("(objectClass=person)", USERS),  # superclass of inetOrgPerson
    ("(uid=nobody)", set()),
    # substrings: initial / any / final / all of them
    ("(uid=js*)", {JSMITH}),
    ("(uid=*smi*)", {JSMITH}),
    ("(uid=*th)", {JSMITH}),
    ("(cn=J*n*S*h)", {JSMITH}),
    ("(uid=*a*)", {MGARCIA, TEACHER1}),  # short piece: no trigram, scanned
    ("(mail=*@district.example)", USERS),
    ("(sn=t*r)", {TEACHER1}),
    # presence
    ("(uid=*)", USERS),
    ("(givenName=*)", {JSMITH, MGARCIA}),
    ("(ou=*)", {PEOPLE, STUDENTS, STAFF}),
    # approximate
    ("(sn~=smith)", {JSMITH}),
    ("(sn~=smyth)", {JSMITH}),
    ("(sn~=teecher)", {TEACHER1}),
    # extensible: matching rule by name and by OID, dnAttributes
    ("(cn:caseExactMatch:=John Smith)", {JSMITH}),
    ("(cn:caseExactMatch:=john smith)", set()),
    ("(cn:2.5.13.5:=Terry Teacher)", {TEACHER1}),
    ("(cn:caseIgnoreMatch:=terry teacher)", {TEACHER1}),
    ("(cn:dn:=John Smith)", {JSMITH}),
    ("(uid:dn:=jsmith)", {JSMITH}),
    ("(ou:dn:=students)", {STUDENTS, JSMITH, MGARCIA}),
    ("(:dn:2.5.13.2:=staff)", {STAFF, TEACHER1}),
    ("(ou=students)", {STUDENTS}),  # without :dn: only the ou entry itself
    # and / or / not
    ("(&(objectClass=inetOrgPerson)(departmentNumber=1234))", {JSMITH, MGARCIA}),
    ("(|(uid=jsmith)(uid=teacher1))", {JSMITH, TEACHER1}),
    ("(!(uid=jsmith))", ALL_PEOPLE - {JSMITH}),
    ("(&(objectClass=inetOrgPerson)(!(departmentNumber=5678)))", {JSMITH, TEACHER1}),
    ("(|(&(uid=j*)(sn=smith))(!(objectClass=inetOrgPerson)))", {JSMITH, PEOPLE, STUDENTS, STAFF}),
    ("(!(cn=*))", {PEOPLE, STUDENTS, STAFF}),
    ("(&)", ALL_PEOPLE),  # absolute true (RFC 4526)
    ("(|)", set()),  # absolute false
    # an undefined attribute type never matches
    ("(noSuchAttribute=x)", set()),
    ("(!(noSuchAttribute=x))", set()),  # NOT Undefined is Undefined
])
def test_filter(server, flt, expected):
    assert found(server, PEOPLE, flt=flt) == expected


def test_filter_ordering(server):
    """>= and <= on a GeneralizedTime attribute with an ORDERING rule."""
    stamps = {dn: a["createtimestamp"][0] for dn, a in
              ((dn, lower_keys(a)) for dn, a in entries(ok(search(
                  server, "-b", PEOPLE, "(uid=*)", "createTimestamp"))).items())}
    assert set(stamps) == USERS
    assert found(server, PEOPLE, flt="(createTimestamp>=20000101000000Z)") == ALL_PEOPLE
    assert found(server, PEOPLE, flt="(createTimestamp<=20000101000000Z)") == set()
    assert found(server, PEOPLE, flt="(createTimestamp<=29991231235959Z)") == ALL_PEOPLE
    assert found(server, PEOPLE, flt="(createTimestamp>=29991231235959Z)") == set()
    stamp = stamps[JSMITH]
    assert JSMITH in found(server, PEOPLE, flt=f"(&(uid=*)(createTimestamp>={stamp})(createTimestamp<={stamp}))")


def test_filter_ordering_integer(server):
    """>= / <= on an INTEGER attribute (uidNumber, integerOrderingMatch)."""
    base = scratch(server, "ord")
    for n in (5, 40, 300):
        ok(add(server, person(f"uid=n{n},{base}", f"n{n}", posix=True).replace("uidNumber: 1000", f"uidNumber: {n}")))
    assert found(server, base, flt="(uidNumber>=40)") == {f"uid=n40,{base}", f"uid=n300,{base}"}
    assert found(server, base, flt="(uidNumber<=40)") == {f"uid=n5,{base}", f"uid=n40,{base}"}
    # numeric, not string, order: 300 > 40 even though "300" < "40"
    assert found(server, base, flt="(uidNumber>=100)") == {f"uid=n300,{base}"}


# =============================================================================
# ldapsearch: attribute selection, attrsOnly, limits


def test_attrs_only(server):
    out = ok(search(server, "-A", "-b", JSMITH, "-s", "base", "(objectClass=*)", "uid", "cn"))
    lines = [l for l in out.splitlines() if l and not l.startswith("dn:")]
    assert sorted(lines) == ["cn:", "uid:"]


def test_selector_star_plus_and_1_1(server):
    user = read(server, JSMITH)  # no list: all user attributes
    assert user["uid"] == ["jsmith"] and user["sn"] == ["Smith"]
    assert "entryuuid" not in user and "createtimestamp" not in user

    oper = read(server, JSMITH, "+")
    assert "uid" not in oper and "cn" not in oper
    for name in ("entryuuid", "createtimestamp", "modifytimestamp", "creatorsname", "structuralobjectclass",
                 "entrydn", "hassubordinates", "subschemasubentry"):
        assert name in oper, name
    assert oper["entrydn"] == [JSMITH]
    assert oper["hassubordinates"] == ["FALSE"]
    assert oper["structuralobjectclass"] == ["inetOrgPerson"]
    assert oper["creatorsname"] == [ROOT_DN]

    both = read(server, JSMITH, "*", "+")
    assert "uid" in both and "entryuuid" in both

    none = read(server, JSMITH, "1.1")
    assert none == {}

    named = read(server, JSMITH, "mail", "entryUUID")
    assert set(named) == {"mail", "entryuuid"}

    # an OU has subordinates
    assert read(server, STUDENTS, "hasSubordinates")["hassubordinates"] == ["TRUE"]


def test_size_limit(server):
    r = search(server, "-z", "1", "-b", PEOPLE, "(objectClass=inetOrgPerson)", "1.1")
    assert r.returncode == 4, r
    assert len(dns(r.stdout)) == 1
    assert "Size limit exceeded" in r.stderr or "Size limit exceeded" in r.stdout
    # a limit the result fits in is no error
    r = search(server, "-z", "3", "-b", PEOPLE, "(objectClass=inetOrgPerson)", "1.1")
    assert r.returncode == 0 and set(dns(r.stdout)) == USERS


def test_time_limit_accepted(server):
    r = search(server, "-l", "5", "-b", PEOPLE, "(uid=jsmith)", "uid", bind=AS_JSMITH)
    assert set(dns(ok(r))) == {JSMITH}


def _paged_cookies(out):
    return re.findall(r"^# pagedresults: cookie=(.*)$", out, re.M)


def test_paged_results(server):
    r = search(server, "-E", "pr=2/noprompt", "-b", PEOPLE, "(objectClass=*)", "1.1")
    out = ok(r)
    got = dns(out)
    assert sorted(got) == sorted(ALL_PEOPLE)  # every entry, each exactly once
    cookies = _paged_cookies(out)
    # 6 entries in pages of 2 (a server may end with an empty page when it cannot tell
    # that a full page was the last one)
    assert len(cookies) in (3, 4)
    assert cookies[-1] == ""  # the last page ends with an empty cookie
    assert all(cookies[:-1])


def test_paged_results_critical(server):
    out = ok(search(server, "-E", "!pr=2/noprompt", "-b", PEOPLE, "(objectClass=*)", "1.1"))
    assert sorted(dns(out)) == sorted(ALL_PEOPLE)
    assert len(_paged_cookies(out)) in (3, 4)


def test_paged_results_as_user(server):
    out = ok(search(server, "-E", "pr=1/noprompt", "-b", PEOPLE, "(uid=*)", "uid", bind=AS_JSMITH))
    assert sorted(dns(out)) == sorted(USERS)
    cookies = _paged_cookies(out)
    assert len(cookies) in (3, 4) and cookies[-1] == ""


# =============================================================================
# ldapsearch: root DSE, subschema, noSuchObject


def test_root_dse(server):
    got = entries(ok(search(server, "-b", "", "-s", "base", "+", bind=ANON)))
    assert list(got) == [""] or "" in got
    dse = lower_keys(got[""])
    assert dse["namingcontexts"] == [SUFFIX]
    assert dse["supportedldapversion"] == ["3"]
    assert {PAGED, ASSERTION, PRE_READ, POST_READ, MANAGE_DSA_IT} <= set(dse["supportedcontrol"])
    assert {STARTTLS, WHOAMI, PASSWD_MODIFY} <= set(dse["supportedextension"])
    assert dse["subschemasubentry"] == ["cn=Subschema"]


def test_subschema(server):
    r = search(server, "-b", "cn=Subschema", "-s", "base", "(objectClass=*)", "attributeTypes", "objectClasses",
               bind=ANON)
    sub = lower_keys(next(iter(entries(ok(r)).values())))
    ats, ocs = sub["attributetypes"], sub["objectclasses"]
    assert any("NAME ( 'uid' 'userid' )" in a or "NAME 'uid'" in a for a in ats)
    assert any(a.startswith("( 0.9.2342.19200300.100.1.1 ") for a in ats)  # uid's OID
    assert any("NAME 'inetOrgPerson'" in o and "2.16.840.1.113730.3.2.2" in o for o in ocs)
    assert any("NAME 'eduPerson'" in o for o in ocs)  # eduperson.schema is loaded
    assert "matchingrules" not in sub  # only what was asked for

    plus = lower_keys(next(iter(entries(ok(search(server, "-b", "cn=Subschema", "-s", "base", "+",
                                                    bind=ANON))).values())))
    assert len(plus["attributetypes"]) == len(ats) and len(plus["objectclasses"]) == len(ocs)
    assert plus.get("ldapsyntaxes") and plus.get("matchingrules")


def test_no_such_object_matched_dn(server):
    r = search(server, "-b", f"ou=nothere,{PEOPLE}", "(objectClass=*)")
    assert r.returncode == 32
    assert f"Matched DN: {PEOPLE}" in r.stderr + r.stdout
    r = search(server, "-b", f"uid=x,ou=nothere,{STUDENTS}", "-s", "base", "(objectClass=*)")
    assert r.returncode == 32
    assert f"Matched DN: {STUDENTS}" in r.stderr + r.stdout


# =============================================================================
# ldapadd / ldapmodify


def test_add_and_read_back(server):
    base = scratch(server, "add")
    dn = f"uid=a1,{base}"
    ok(add(server, person(dn, "a1", "mail: a1@district.example", "givenName: Ann")))
    got = read(server, dn, "*", "+")
    assert got["uid"] == ["a1"] and got["mail"] == ["a1@district.example"]
    assert got["creatorsname"] == [ROOT_DN]
    assert got["structuralobjectclass"] == ["inetOrgPerson"]
    assert len(got["entryuuid"]) == 1
    # and it is found through the indexes
    assert found(server, SUFFIX, flt="(uid=a1)") == {dn}
    assert found(server, SUFFIX, flt="(mail=a1@dis*)") == {dn}


def test_add_errors(server):
    base = scratch(server, "adderr")
    dn = f"uid=e1,{base}"
    ok(add(server, person(dn, "e1")))

    r = add(server, person(dn, "e1"))
    assert r.returncode == 68, r  # entryAlreadyExists

    r = add(server, f"dn: uid=e2,{base}\nobjectClass: inetOrgPerson\nuid: e2\ncn: e2\n")
    assert r.returncode == 65, r  # objectClassViolation: inetOrgPerson requires sn
    assert "sn" in r.stderr

    r = add(server, person(f"uid=e3,{base}", "e3", "fooBarBaz: 1"))
    assert r.returncode == 17, r  # undefinedAttributeType

    r = add(server, person(f"uid=e4,ou=nothere,{base}", "e4"))
    assert r.returncode == 32, r  # no such parent
    assert f"matched DN: {base}".lower() in r.stderr.lower()

    r = add(server, person(f"uid=e5,,{base}", "e5"))
    assert r.returncode == 34, r  # invalidDNSyntax
    r = add(server, person("e6", "e6"))
    assert r.returncode == 34, r

    # an RDN value missing from the entry is added (RFC 4511 4.7), then the schema decides
    r = add(server, person(f"dc=e7,{base}", "someoneelse"))
    assert r.returncode == 65, r  # objectClassViolation: dc is not an inetOrgPerson attribute

    r = add(server, f"dn: uid=e8,{base}\nobjectClass: inetOrgPerson\nuid: e8\ncn: e8\nsn: e8\nentryUUID: x\n")
    assert r.returncode == 19, r  # constraintViolation: no user modification

    for uid in ("e2", "e3", "e5", "e7", "e8"):
        assert read(server, f"uid={uid},{base}") is None


def test_add_outside_naming_context(server):
    r = add(server, "dn: ou=x,dc=elsewhere,dc=example\nobjectClass: organizationalUnit\nou: x\n")
    assert r.returncode == 53, r  # unwillingToPerform: no global superior knowledge (as slapd)


def test_modify_add_delete_replace_increment(server):
    base = scratch(server, "mod")
    dn = f"uid=m1,{base}"
    ok(add(server, person(dn, "m1", "mail: old@district.example", "description: keep", posix=True)))
    ldif = f"""dn: {dn}
changetype: modify
add: mail
mail: new1@district.example
mail: new2@district.example
-
delete: mail
mail: old@district.example
-
replace: sn
sn: Replaced
-
increment: uidNumber
uidNumber: 5
-
delete: description
-
"""
    ok(modify(server, ldif))
    got = read(server, dn, "*", "modifyTimestamp")
    assert sorted(got["mail"]) == ["new1@district.example", "new2@district.example"]
    assert got["sn"] == ["Replaced"]
    assert got["uidnumber"] == ["1005"]
    assert "description" not in got
    # increment by a negative amount
    ok(modify(server, f"dn: {dn}\nchangetype: modify\nincrement: uidNumber\nuidNumber: -10\n-\n"))
    assert read(server, dn, "uidNumber")["uidnumber"] == ["995"]
    # the indexes follow the change
    assert found(server, base, flt="(sn=replaced)") == {dn}
    assert found(server, base, flt="(sn=m1)") == set()
    assert found(server, base, flt="(mail=new2*)") == {dn}
    assert found(server, base, flt="(mail=old@district.example)") == set()


def test_modify_errors(server):
    base = scratch(server, "moderr")
    dn = f"uid=m2,{base}"
    ok(add(server, person(dn, "m2", posix=True)))

    def mod(body):
        return modify(server, f"dn: {dn}\nchangetype: modify\n{body}")

    assert mod("delete: sn\n-\n").returncode == 65  # sn is required
    assert mod("add: fooBarBaz\nfooBarBaz: 1\n-\n").returncode == 17
    assert mod("delete: mail\nmail: nope@x\n-\n").returncode == 16  # noSuchAttribute
    assert mod("add: sn\nsn: m2\n-\n").returncode == 20  # attributeOrValueExists
    assert mod("replace: uid\nuid: other\n-\n").returncode == 67  # notAllowedOnRDN
    assert mod("increment: sn\nsn: 1\n-\n").returncode in (18, 19, 21)  # not an INTEGER attribute
    assert mod("replace: entryUUID\nentryUUID: x\n-\n").returncode == 19
    r = modify(server, f"dn: uid=none,{base}\nchangetype: modify\nreplace: sn\nsn: x\n-\n")
    assert r.returncode == 32
    # nothing above changed the entry
    got = read(server, dn)
    assert got["sn"] == ["m2"] and got["uid"] == ["m2"]


# =============================================================================
# ldapdelete / ldapmodrdn


def test_delete(server):
    base = scratch(server, "del")
    dn = f"uid=d1,{base}"
    ok(add(server, person(dn, "d1")))
    r = tool(server, "ldapdelete", *ADMIN, base)
    assert r.returncode == 66, r  # notAllowedOnNonLeaf
    assert read(server, base) is not None
    ok(tool(server, "ldapdelete", *ADMIN, dn))
    assert read(server, dn) is None
    assert found(server, SUFFIX, flt="(uid=d1)") == set()
    ok(tool(server, "ldapdelete", *ADMIN, base))  # a leaf now
    assert read(server, base) is None
    r = tool(server, "ldapdelete", *ADMIN, dn)
    assert r.returncode == 32


def test_modrdn_deleteoldrdn(server):
    base = scratch(server, "rdn")
    ok(add(server, person(f"uid=r1,{base}", "r1")))
    ok(tool(server, "ldapmodrdn", *ADMIN, "-r", f"uid=r1,{base}", "uid=r1new"))
    assert read(server, f"uid=r1,{base}") is None
    got = read(server, f"uid=r1new,{base}")
    assert got["uid"] == ["r1new"]  # old RDN value removed
    assert found(server, SUFFIX, flt="(uid=r1new)") == {f"uid=r1new,{base}"}
    assert found(server, SUFFIX, flt="(uid=r1)") == set()


def test_modrdn_keep_old_rdn(server):
    base = scratch(server, "rdnkeep")
    ok(add(server, person(f"uid=k1,{base}", "k1")))
    ok(tool(server, "ldapmodrdn", *ADMIN, f"uid=k1,{base}", "uid=k2"))
    got = read(server, f"uid=k2,{base}")
    assert sorted(got["uid"]) == ["k1", "k2"]  # old value kept
    assert found(server, SUFFIX, flt="(uid=k1)") == {f"uid=k2,{base}"}
    assert read(server, f"uid=k2,{base}", "entryDN")["entrydn"] == [f"uid=k2,{base}"]


def test_modrdn_new_superior(server):
    base = scratch(server, "sup")
    a, b = f"ou=a,{base}", f"ou=b,{base}"
    for ou in (a, b):
        ok(add(server, f"dn: {ou}\nobjectClass: organizationalUnit\nou: {ou[3]}\n"))
    ok(add(server, person(f"uid=mv,{a}", "mv")))
    ok(tool(server, "ldapmodrdn", *ADMIN, "-r", "-s", b, f"uid=mv,{a}", "uid=mv"))
    assert read(server, f"uid=mv,{a}") is None
    assert read(server, f"uid=mv,{b}")["uid"] == ["mv"]
    assert found(server, a, scope="one") == set()
    assert found(server, b, scope="one") == {f"uid=mv,{b}"}
    # newSuperior that does not exist: noSuchObject, nothing moved
    r = tool(server, "ldapmodrdn", *ADMIN, "-s", f"ou=none,{base}", f"uid=mv,{b}", "uid=mv")
    assert r.returncode == 32, r
    assert read(server, f"uid=mv,{b}") is not None
    # onto an existing DN: entryAlreadyExists
    ok(add(server, person(f"uid=mv,{a}", "mv")))
    r = tool(server, "ldapmodrdn", *ADMIN, "-s", a, f"uid=mv,{b}", "uid=mv")
    assert r.returncode == 68, r


def test_modrdn_subtree_move(server):
    base = scratch(server, "tree")
    src, dst = f"ou=src,{base}", f"ou=dst,{base}"
    for ou in (src, dst):
        ok(add(server, f"dn: {ou}\nobjectClass: organizationalUnit\nou: {ou[3:6]}\n"))
    grp = f"ou=grp,{src}"
    ok(add(server, f"dn: {grp}\nobjectClass: organizationalUnit\nou: grp\n"))
    inner = f"ou=inner,{grp}"
    ok(add(server, f"dn: {inner}\nobjectClass: organizationalUnit\nou: inner\n"))
    ok(add(server, person(f"uid=c1,{grp}", "c1")))
    ok(add(server, person(f"uid=c2,{inner}", "c2")))
    # warm the server's caches with the old DNs
    assert found(server, src) == {src, grp, inner, f"uid=c1,{grp}", f"uid=c2,{inner}"}

    # move the subtree under ou=dst and rename it at the same time
    ok(tool(server, "ldapmodrdn", *ADMIN, "-r", "-s", dst, grp, "ou=moved"))
    moved = f"ou=moved,{dst}"
    assert found(server, src) == {src}
    assert found(server, dst) == {dst, moved, f"ou=inner,{moved}", f"uid=c1,{moved}", f"uid=c2,ou=inner,{moved}"}
    assert found(server, SUFFIX, flt="(uid=c2)") == {f"uid=c2,ou=inner,{moved}"}
    assert read(server, f"uid=c2,ou=inner,{moved}", "entryDN")["entrydn"] == [f"uid=c2,ou=inner,{moved}"]
    assert read(server, f"uid=c1,{grp}") is None
    assert read(server, moved)["ou"] == ["moved"]
    assert found(server, moved, scope="one") == {f"ou=inner,{moved}", f"uid=c1,{moved}"}
    # the moved children can be changed and deleted under their new names
    ok(modify(server, f"dn: uid=c2,ou=inner,{moved}\nchangetype: modify\nreplace: sn\nsn: Moved\n-\n"))
    assert read(server, f"uid=c2,ou=inner,{moved}")["sn"] == ["Moved"]
    ok(tool(server, "ldapdelete", *ADMIN, f"uid=c2,ou=inner,{moved}"))
    # a subtree cannot move below itself
    r = tool(server, "ldapmodrdn", *ADMIN, "-s", f"ou=inner,{moved}", moved, "ou=moved")
    assert r.returncode == 53, r


def test_rename_non_leaf_in_place(server):
    base = scratch(server, "ren")
    ok(add(server, f"dn: ou=old,{base}\nobjectClass: organizationalUnit\nou: old\n"))
    ok(add(server, person(f"uid=z1,ou=old,{base}", "z1")))
    ok(tool(server, "ldapmodrdn", *ADMIN, "-r", f"ou=old,{base}", "ou=new"))
    assert found(server, base, scope="children") == {f"ou=new,{base}", f"uid=z1,ou=new,{base}"}
    assert read(server, f"uid=z1,ou=old,{base}") is None


# =============================================================================
# ldapcompare


def test_compare(server):
    r = tool(server, "ldapcompare", *ADMIN, JSMITH, "uid:jsmith")
    assert r.returncode == 6 and "TRUE" in r.stdout, r
    r = tool(server, "ldapcompare", *ADMIN, JSMITH, "uid:nobody")
    assert r.returncode == 5 and "FALSE" in r.stdout, r
    r = tool(server, "ldapcompare", *AS_JSMITH, MGARCIA, "departmentNumber:5678")
    assert r.returncode == 6, r
    r = tool(server, "ldapcompare", *ADMIN, JSMITH, "objectClass:person")  # superclass
    assert r.returncode == 6, r
    r = tool(server, "ldapcompare", *ADMIN, f"uid=nobody,{STUDENTS}", "uid:nobody")
    assert r.returncode == 32, r
    r = tool(server, "ldapcompare", *ADMIN, JSMITH, "fooBarBaz:1")
    assert r.returncode == 17, r


# =============================================================================
# ldapwhoami / ldapexop


def test_whoami_anonymous(server):
    r = tool(server, "ldapwhoami")
    assert ok(r).strip() == "anonymous"


def test_whoami_bound(server):
    assert ok(tool(server, "ldapwhoami", *AS_JSMITH)).strip() == f"dn:{JSMITH}"
    assert ok(tool(server, "ldapwhoami", *ADMIN)).strip() == f"dn:{ROOT_DN}"


def test_whoami_ldaps(server):
    assert ok(tool(server, "ldapwhoami", *AS_JSMITH, url=server.ldaps_url)).strip() == f"dn:{JSMITH}"


def test_whoami_starttls(server):
    assert ok(tool(server, "ldapwhoami", "-ZZ", *AS_JSMITH)).strip() == f"dn:{JSMITH}"
    # and a search over the upgraded connection
    r = tool(server, "ldapsearch", "-ZZ", "-LLL", *AS_JSMITH, "-b", STUDENTS, "(uid=mgarcia)", "1.1")
    assert dns(ok(r)) == [MGARCIA]


def test_wrong_password(server):
    r = tool(server, "ldapwhoami", "-D", JSMITH, "-w", "wrong-password")
    assert r.returncode == 49, r
    r = tool(server, "ldapwhoami", "-D", f"uid=ghost,{STUDENTS}", "-w", "whatever")
    assert r.returncode == 49, r  # same answer for an unknown DN


def test_ldapexop_whoami(server):
    r = tool(server, "ldapexop", *AS_JSMITH, "whoami")
    assert f"dn:{JSMITH}" in ok(r)
    r = tool(server, "ldapexop", "whoami")
    assert "dn:" not in ok(r)


# =============================================================================
# ldappasswd


def test_passwd_self_change(server):
    base = scratch(server, "pw")
    dn = f"uid=p1,{base}"
    ok(add(server, person(dn, "p1", password="first-pass-1")))
    ok(tool(server, "ldappasswd", "-D", dn, "-w", "first-pass-1", "-a", "first-pass-1", "-s", "second-pass-2"))
    assert ok(tool(server, "ldapwhoami", "-D", dn, "-w", "second-pass-2")).strip() == f"dn:{dn}"
    assert tool(server, "ldapwhoami", "-D", dn, "-w", "first-pass-1").returncode == 49
    # the stored value is a hash, not the clear text
    stored = read(server, dn, "userPassword")["userpassword"][0]
    assert stored.startswith("{") and "second-pass-2" not in stored


def test_passwd_wrong_old(server):
    base = scratch(server, "pwold")
    dn = f"uid=p2,{base}"
    ok(add(server, person(dn, "p2", password="first-pass-1")))
    r = tool(server, "ldappasswd", "-D", dn, "-w", "first-pass-1", "-a", "not-the-password", "-s", "other-pass-3")
    assert r.returncode != 0
    assert "(49)" in r.stdout + r.stderr
    assert tool(server, "ldapwhoami", "-D", dn, "-w", "first-pass-1").returncode == 0
    assert tool(server, "ldapwhoami", "-D", dn, "-w", "other-pass-3").returncode == 49


def test_passwd_root_sets_other(server):
    base = scratch(server, "pwroot")
    dn = f"uid=p3,{base}"
    ok(add(server, person(dn, "p3", password="first-pass-1")))
    ok(tool(server, "ldappasswd", *ADMIN, "-s", "admin-set-pw-9", dn))
    assert ok(tool(server, "ldapwhoami", "-D", dn, "-w", "admin-set-pw-9")).strip() == f"dn:{dn}"
    assert tool(server, "ldapwhoami", "-D", dn, "-w", "first-pass-1").returncode == 49


def test_passwd_generated(server):
    base = scratch(server, "pwgen")
    dn = f"uid=p4,{base}"
    ok(add(server, person(dn, "p4", password="first-pass-1")))
    out = ok(tool(server, "ldappasswd", *ADMIN, dn))
    m = re.search(r"^New password: (\S+)$", out, re.M)
    assert m, out
    generated = m.group(1)
    assert len(generated) >= 8
    assert ok(tool(server, "ldapwhoami", "-D", dn, "-w", generated)).strip() == f"dn:{dn}"
    # and self-service generation too
    out = ok(tool(server, "ldappasswd", "-D", dn, "-w", generated))
    m2 = re.search(r"^New password: (\S+)$", out, re.M)
    assert m2 and m2.group(1) != generated
    assert ok(tool(server, "ldapwhoami", "-D", dn, "-w", m2.group(1))).strip() == f"dn:{dn}"


def test_passwd_user_cannot_set_others(server):
    base = scratch(server, "pwother")
    dn = f"uid=p5,{base}"
    ok(add(server, person(dn, "p5", password="first-pass-1")))
    r = tool(server, "ldappasswd", *AS_JSMITH, "-s", "hijacked-pw-1", dn)
    assert r.returncode != 0 and "(50)" in r.stdout + r.stderr
    assert tool(server, "ldapwhoami", "-D", dn, "-w", "first-pass-1").returncode == 0


def test_passwd_anonymous_refused(server):
    r = tool(server, "ldappasswd", "-s", "whatever-pw-1", JSMITH)
    assert r.returncode != 0 and "(53)" in r.stdout + r.stderr


# =============================================================================
# controls


def test_assertion_control_modify(server):
    base = scratch(server, "assert")
    dn = f"uid=as1,{base}"
    ok(add(server, person(dn, "as1")))
    change = f"dn: {dn}\nchangetype: modify\nreplace: sn\nsn: %s\n-\n"
    r = modify(server, change % "Refused", "-e", "!assert=(uid=nobody)")
    assert r.returncode == 122, r
    assert read(server, dn)["sn"] == ["as1"]
    ok(modify(server, change % "Accepted", "-e", "!assert=(uid=as1)"))
    assert read(server, dn)["sn"] == ["Accepted"]
    ok(modify(server, change % "Again", "-e", "!assert=(&(sn=accepted)(objectClass=person))"))
    assert read(server, dn)["sn"] == ["Again"]


def test_assertion_control_search_and_delete(server):
    r = search(server, "-e", "!assert=(uid=jsmith)", "-b", JSMITH, "-s", "base", "(objectClass=*)", "1.1")
    assert dns(ok(r)) == [JSMITH]
    r = search(server, "-e", "!assert=(uid=nobody)", "-b", JSMITH, "-s", "base", "(objectClass=*)", "1.1")
    assert r.returncode == 122, r
    base = scratch(server, "assertdel")
    dn = f"uid=ad1,{base}"
    ok(add(server, person(dn, "ad1")))
    r = tool(server, "ldapdelete", *ADMIN, "-e", "!assert=(uid=nobody)", dn)
    assert r.returncode == 122, r
    assert read(server, dn) is not None
    ok(tool(server, "ldapdelete", *ADMIN, "-e", "!assert=(uid=ad1)", dn))
    assert read(server, dn) is None


def test_pre_and_post_read(server):
    base = scratch(server, "read")
    dn = f"uid=pr1,{base}"
    ok(add(server, person(dn, "pr1")))
    out = ok(modify(server, f"dn: {dn}\nchangetype: modify\nreplace: cn\ncn: After Name\n-\n",
                    "-e", "preread=cn", "-e", "postread=cn"))
    pre = out.split("# ==> preread", 1)[1].split("# <== preread", 1)[0]
    post = out.split("# ==> postread", 1)[1].split("# <== postread", 1)[0]
    assert f"dn: {dn}" in pre and "cn: pr1 person" in pre and "After Name" not in pre
    assert f"dn: {dn}" in post and "cn: After Name" in post and "pr1 person" not in post
    assert PRE_READ in out and POST_READ in out


def test_post_read_on_add(server):
    base = scratch(server, "postadd")
    dn = f"uid=pa1,{base}"
    out = ok(add(server, person(dn, "pa1"), "-e", "postread=uid,entryUUID"))
    post = out.split("# ==> postread", 1)[1].split("# <== postread", 1)[0]
    assert "uid: pa1" in post and "entryUUID:" in post


def test_unknown_critical_control(server):
    base = scratch(server, "crit")
    dn = f"uid=cc1,{base}"
    ok(add(server, person(dn, "cc1")))
    r = modify(server, f"dn: {dn}\nchangetype: modify\nreplace: sn\nsn: Critical\n-\n", "-e", "!1.2.3.4")
    assert r.returncode == 12, r
    assert read(server, dn)["sn"] == ["cc1"]
    r = search(server, "-e", "!1.2.3.4", "-b", PEOPLE, "(uid=jsmith)", "1.1")
    assert r.returncode == 12, r
    assert dns(r.stdout) == []


def test_unknown_noncritical_control_ignored(server):
    base = scratch(server, "noncrit")
    dn = f"uid=nc1,{base}"
    ok(add(server, person(dn, "nc1")))
    ok(modify(server, f"dn: {dn}\nchangetype: modify\nreplace: sn\nsn: Fine\n-\n", "-e", "1.2.3.4"))
    assert read(server, dn)["sn"] == ["Fine"]
    assert dns(ok(search(server, "-e", "1.2.3.4", "-b", PEOPLE, "(uid=jsmith)", "1.1"))) == [JSMITH]


def test_manage_dsa_it_accepted(server):
    assert dns(ok(search(server, "-M", "-b", PEOPLE, "(uid=jsmith)", "1.1"))) == [JSMITH]
    assert dns(ok(search(server, "-MM", "-b", PEOPLE, "(uid=jsmith)", "1.1"))) == [JSMITH]  # critical
    base = scratch(server, "manage")
    dn = f"uid=md1,{base}"
    ok(add(server, person(dn, "md1"), "-MM"))
    ok(modify(server, f"dn: {dn}\nchangetype: modify\nreplace: sn\nsn: Managed\n-\n", "-MM"))
    assert read(server, dn)["sn"] == ["Managed"]


# =============================================================================
# access control


def test_anonymous_sees_no_entries(server):
    # a base anonymous may not see does not exist for them (32, no matched DN), as in slapd
    for base, flt in ((PEOPLE, "(objectClass=*)"), (SUFFIX, "(objectClass=inetOrgPerson)"),
                      (PEOPLE, "(uid=jsmith)"), (SUFFIX, "(objectClass=*)")):
        r = search(server, "-b", base, flt, bind=ANON)
        assert r.returncode == 32, r
        assert dns(r.stdout) == [] and "Matched DN" not in r.stdout
    # while the root DN sees the tree
    assert found(server, PEOPLE) == ALL_PEOPLE


def test_anonymous_cannot_probe_existence_by_search(server):
    exists = search(server, "-b", JSMITH, "-s", "base", "(objectClass=*)", "1.1", bind=ANON)
    missing = search(server, "-b", f"uid=nobody,{STUDENTS}", "-s", "base", "(objectClass=*)", "1.1", bind=ANON)
    assert exists.stdout.strip() == "" and missing.stdout.strip() == ""
    assert exists.returncode == missing.returncode == 32
    below = search(server, "-b", f"uid=x,{JSMITH}", "-s", "base", "(objectClass=*)", "1.1", bind=ANON)
    assert below.returncode == 32
    assert "jsmith" not in (below.stdout + below.stderr).lower()  # matchedDN must not name it


def test_anonymous_cannot_probe_existence_by_compare_or_write(server):
    exists = tool(server, "ldapcompare", JSMITH, "uid:jsmith")
    missing = tool(server, "ldapcompare", f"uid=nobody,{STUDENTS}", "uid:jsmith")
    assert exists.returncode == missing.returncode
    exists = tool(server, "ldapdelete", JSMITH)
    missing = tool(server, "ldapdelete", f"uid=nobody,{STUDENTS}")
    assert exists.returncode == missing.returncode
    assert read(server, JSMITH) is not None


def test_user_cannot_read_passwords(server):
    out = ok(search(server, "-b", PEOPLE, "(uid=*)", "*", "userPassword", bind=AS_JSMITH))
    got = entries(out)
    assert set(got) == USERS
    for attrs in got.values():
        assert "userpassword" not in lower_keys(attrs)
        assert "uid" in attrs
    # the root DN does see them (so the check above means something)
    admin = entries(ok(search(server, "-b", PEOPLE, "(uid=*)", "userPassword")))
    assert all("userPassword" in a for a in admin.values())


def test_user_cannot_match_on_passwords(server):
    # a filter on a hidden attribute must not reveal its value
    assert found(server, PEOPLE, flt="(userPassword=*)", bind=AS_JSMITH) == set()
    r = tool(server, "ldapcompare", *AS_JSMITH, MGARCIA, "userPassword:student-pw-2")
    assert r.returncode not in (5, 6), r


def test_user_cannot_modify_others(server):
    r = modify(server, f"dn: {MGARCIA}\nchangetype: modify\nreplace: sn\nsn: Hacked\n-\n", bind=AS_JSMITH)
    assert r.returncode == 50, r
    assert read(server, MGARCIA)["sn"] == ["García"]
    r = tool(server, "ldapdelete", *AS_JSMITH, TEACHER1)
    assert r.returncode == 50, r
    assert read(server, TEACHER1) is not None
    r = add(server, person(f"uid=evil,{STUDENTS}", "evil"), bind=AS_JSMITH)
    assert r.returncode == 50, r
    assert read(server, f"uid=evil,{STUDENTS}") is None
    r = tool(server, "ldapmodrdn", *AS_JSMITH, MGARCIA, "uid=renamed")
    assert r.returncode == 50, r
    assert read(server, MGARCIA) is not None


# =============================================================================
# SASL


def test_sasl_bind_not_supported(server):
    r = tool(server, "ldapwhoami", "-Y", "DIGEST-MD5", "-U", "jsmith", "-w", "student-pw-1", simple=False)
    assert r.returncode != 0
    assert "dn:" not in r.stdout
    if r.returncode != 7:  # the client may lack the mechanism and refuse before asking
        assert "mechanism" in r.stderr.lower(), r
    r = tool(server, "ldapwhoami", "-Y", "EXTERNAL", simple=False)
    assert r.returncode != 0 and "dn:" not in r.stdout


def test_sasl_bind_result_code(server):
    """What the server itself answers to a SASL bind (no client-side mechanism check)."""
    ldap3 = pytest.importorskip("ldap3")
    host, port = server.url.rsplit(":", 1)
    srv = ldap3.Server("127.0.0.1", port=int(port))
    conn = ldap3.Connection(srv, authentication=ldap3.SASL, sasl_mechanism=ldap3.EXTERNAL)
    conn.open()
    assert not conn.bind()
    assert conn.result["result"] == 7  # authMethodNotSupported
    # the connection is still usable, as anonymous
    assert conn.extend.standard.who_am_i() in (None, "")
    conn.unbind()
