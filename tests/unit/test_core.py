"""The Directory core used directly (no network): every operation, what the store
holds afterwards, the changelog rows each write leaves, and password handling."""
import io
import json
import re
import uuid

import pytest
import yaml

from directory import passwords
from directory.app import open_directory
from directory.config import load_config
from directory.core.directory import (
    MOD_ADD, MOD_DELETE, MOD_INCREMENT, MOD_REPLACE, SCOPE_BASE, SCOPE_ONE, SCOPE_SUB, Identity, PartialResult,
    WriteOptions,
)
from directory.core.errors import LDAPError, ResultCode
from directory.ldif import records

try:
    from directory.core.bulk import LoadError
except ImportError:  # older layout
    from directory.core.directory import LoadError
from directory.core.filterparse import parse_filter_string
from tests.conftest import BASE_LDIF, ROOT_DN, ROOT_HASH, ROOT_PW, ROOT, SUFFIX

PEOPLE = f"ou=people,{SUFFIX}"
STUDENTS = f"ou=students,{PEOPLE}"
STAFF = f"ou=staff,{PEOPLE}"
JSMITH = f"uid=jsmith,{STUDENTS}"
MGARCIA = f"uid=mgarcia,{STUDENTS}"
TEACHER1 = f"uid=teacher1,{STAFF}"

CLEAR = "Clear-Text-Secret-4711"  # must never be stored or logged in clear
CLEAR2 = "Second-Clear-Secret-0815"
CLEAR3 = "Third-Clear-Secret-2342"


def write_config(tmp_path, **overrides):
    schema = [str(ROOT / "schema" / f"{n}.schema") for n in ("core", "cosine", "inetorgperson", "nis", "eduperson")]
    cfg = {
        "suffix": SUFFIX,
        "listeners": ["ldap://127.0.0.1:3389"],
        "root": {"dn": ROOT_DN, "password": ROOT_HASH},
        "store": {"backend": "sqlite", "path": "var/rollcall.db"},
        "schema": schema,
        "limits": {"size": 500, "time": 60, "unindexed": 50},
        "indexes": {"objectClass": ["eq"], "uid": ["eq", "sub"], "cn": ["eq", "sub"], "sn": ["eq", "sub"],
                    "mail": ["eq", "sub"], "employeeNumber": ["eq"], "departmentNumber": ["eq"],
                    "member": ["eq"], "entryUUID": ["eq"]},
        "passwords": {"scheme": "ARGON2", "argon2": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}},
        "log": {"level": "info"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def load(d, text, name="base.ldif"):
    """Bulk load LDIF text in this process (no worker processes: forking a test process is fragile)."""
    recs = records(io.BytesIO(text.encode()), name)
    try:
        return d.load_entries(recs, workers=1)
    except TypeError:  # a load_entries without the workers parameter
        return d.load_entries(recs)


def open_dir(tmp_path, ldif=BASE_LDIF, **overrides):
    config = load_config(write_config(tmp_path, **overrides))
    d = open_directory(config)
    if ldif:
        load(d, ldif)
    return d


@pytest.fixture
def d(tmp_path):
    directory = open_dir(tmp_path)
    yield directory
    directory.store.close()


@pytest.fixture
def root(d):
    return d.bind(ROOT_DN, ROOT_PW.encode(), peer="test-root")


@pytest.fixture
def student(d):
    return d.bind(JSMITH, b"student-pw-1", peer="test-student")


def flt(text):
    return parse_filter_string(text)


def search(d, ident, base, text="(objectClass=*)", scope=SCOPE_SUB, attrs=(), **kw):
    """Drain a search: {dn: {attr: [values]}}."""
    cursor = d.search(ident, base, scope, flt(text), list(attrs), **kw)
    out = {}
    while not cursor.done:
        for dn, attributes in cursor.next_batch(50):
            out[dn] = dict(attributes)
    return out


def get(d, dn, *attrs):
    """An entry's attributes as root sees them, or None if there is no such entry."""
    if d.lookup(d.normalize_dn(dn)) is None:
        return None
    got = search(d, Identity(ROOT_DN, d.root_ndn, True), dn, scope=SCOPE_BASE, attrs=attrs or ("*", "+"))
    return next(iter(got.values()))


def refused(code, fn, *args, **kw):
    with pytest.raises(LDAPError) as info:
        fn(*args, **kw)
    assert info.value.code == code, (info.value.code, info.value.message)
    return info.value


def changes_since(d, seq):
    return [c for c in d.store.changes(since=seq)]


def last_seq(d):
    rows = d.store.changes(limit=100000)
    return rows[-1]["seq"] if rows else 0


def person(uid, **extra):
    attrs = {"objectClass": [b"inetOrgPerson"], "uid": [uid.encode()], "cn": [f"Core {uid}".encode()],
             "sn": [uid.encode()]}
    for k, v in extra.items():
        attrs[k] = [x.encode() if isinstance(x, str) else x for x in (v if isinstance(v, list) else [v])]
    return attrs


# ----------------------------------------------------------------------------- bind


def test_bind(d):
    root = d.bind(ROOT_DN, ROOT_PW.encode())
    assert root.is_root and root.dn == ROOT_DN
    # the {SSHA} from slapd and the clear value hashed at load both verify
    s = d.bind(JSMITH, b"student-pw-1")
    assert not s.is_root and s.ndn == d.normalize_dn(JSMITH) and s.entry_id is not None
    assert d.bind(MGARCIA, b"student-pw-2").dn == MGARCIA
    assert d.bind("UID=JSmith, OU=Students,OU=People, DC=District,DC=Example", b"student-pw-1").ndn == s.ndn
    wrong = refused(ResultCode.INVALID_CREDENTIALS, d.bind, JSMITH, b"nope")
    unknown = refused(ResultCode.INVALID_CREDENTIALS, d.bind, f"uid=ghost,{STUDENTS}", b"nope")
    root_wrong = refused(ResultCode.INVALID_CREDENTIALS, d.bind, ROOT_DN, b"nope")
    assert wrong.message == unknown.message == root_wrong.message
    assert wrong.matched_dn == unknown.matched_dn == ""
    refused(ResultCode.UNWILLING_TO_PERFORM, d.bind, JSMITH, b"")
    refused(ResultCode.INVALID_DN_SYNTAX, d.bind, "not a dn", b"x")
    anon = d.bind("", b"")
    assert anon.anonymous and not anon.is_root
    assert d.whoami(anon) == "" and d.whoami(s) == f"dn:{JSMITH}"


def test_bind_unknown_dn_still_verifies_a_hash(d, monkeypatch):
    """An unknown DN, or an entry without userPassword, costs a hash verification like a
    wrong password does (no timing hint), and is refused the same way."""
    calls = []
    real = passwords.verify
    monkeypatch.setattr(passwords, "verify", lambda pw, stored: calls.append(stored) or real(pw, stored))
    for dn in (JSMITH, f"uid=ghost,{STUDENTS}", STUDENTS):
        calls.clear()
        e = refused(ResultCode.INVALID_CREDENTIALS, d.bind, dn, b"wrong-password")
        assert e.message == "" and e.matched_dn == ""
        assert len(calls) == 1, dn
    calls.clear()
    refused(ResultCode.INVALID_CREDENTIALS, d.bind, f"uid=ghost,{STUDENTS}", b"another-password")
    assert calls and calls[0].startswith(b"{ARGON2}")  # the configured scheme's cost


def test_passwords_given_in_clear_are_stored_as_argon2(d, root):
    dn = f"uid=hashed,{PEOPLE}"
    d.add(root, dn, person("hashed", userPassword=CLEAR))
    stored = d.lookup(d.normalize_dn(dn)).attrs["userPassword"]
    assert len(stored) == 1 and stored[0].startswith(b"{ARGON2}$argon2id$")
    assert CLEAR.encode() not in stored[0]
    assert passwords.verify(CLEAR.encode(), stored[0])
    assert d.bind(dn, CLEAR.encode()).dn == dn
    refused(ResultCode.INVALID_CREDENTIALS, d.bind, dn, CLEAR2.encode())
    # an already hashed value is kept as given (migration from slapd)
    ssha = b"{SSHA}wHKTKchq694536SWFeMW+HFvQa6TnWtV"
    d.add(root, f"uid=migrated,{PEOPLE}", person("migrated", userPassword=ssha))
    assert d.lookup(d.normalize_dn(f"uid=migrated,{PEOPLE}")).attrs["userPassword"] == [ssha]
    assert d.bind(f"uid=migrated,{PEOPLE}", b"student-pw-1")
    # modify/replace and modify/add in clear are hashed too
    d.modify(root, dn, [(MOD_REPLACE, "userPassword", [CLEAR2.encode()])])
    stored = d.lookup(d.normalize_dn(dn)).attrs["userPassword"]
    assert stored[0].startswith(b"{ARGON2}") and CLEAR2.encode() not in stored[0]
    assert d.bind(dn, CLEAR2.encode())
    refused(ResultCode.INVALID_CREDENTIALS, d.bind, dn, CLEAR.encode())
    d.modify(root, dn, [(MOD_ADD, "userPassword", [CLEAR3.encode()])])
    assert len(d.lookup(d.normalize_dn(dn)).attrs["userPassword"]) == 2
    assert d.bind(dn, CLEAR3.encode()) and d.bind(dn, CLEAR2.encode())
    # delete by the clear value removes the matching hash
    d.modify(root, dn, [(MOD_DELETE, "userPassword", [CLEAR2.encode()])])
    refused(ResultCode.INVALID_CREDENTIALS, d.bind, dn, CLEAR2.encode())
    assert d.bind(dn, CLEAR3.encode())


def test_no_clear_password_in_changelog_or_database_file(tmp_path):
    d = open_dir(tmp_path)
    root = d.bind(ROOT_DN, ROOT_PW.encode())
    dn = f"uid=secretive,{PEOPLE}"
    d.add(root, dn, person("secretive", userPassword=CLEAR))
    d.modify(root, dn, [(MOD_REPLACE, "userPassword", [CLEAR2.encode()])])
    me = d.bind(dn, CLEAR2.encode())
    d.password_modify(me, None, CLEAR2.encode(), CLEAR3.encode())
    me = d.bind(dn, CLEAR3.encode())
    generated = d.password_modify(me, None, CLEAR3.encode(), None).generated_password
    assert generated and d.bind(dn, generated.encode())
    reset = d.password_modify(root, dn, None, None).generated_password
    assert reset and reset != generated
    d.bind(dn, reset.encode())
    clears = [CLEAR, CLEAR2, CLEAR3, generated, reset, "student-pw-2", "staff-pw-1"]
    # the changelog: every row, every field
    rows = d.store.changes(limit=100000)
    assert {r["op"] for r in rows} >= {"load", "add", "modify", "passwordModify"}
    dumped = json.dumps(rows, ensure_ascii=False)
    for c in clears:
        assert c not in dumped, c
    # the database file (and its WAL) on disk
    d.store.close()
    db = tmp_path / "var" / "rollcall.db"
    blobs = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith("rollcall.db"))
    assert len(blobs) > 4096
    for c in clears:
        assert c.encode() not in blobs, c
        assert c.encode("utf-16-le") not in blobs, c


# ----------------------------------------------------------------------------- add


def test_add_then_search_back(d, root, student):
    seq = last_seq(d)
    dn = f"uid=newbie,{STUDENTS}"
    res = d.add(root, dn, person("newbie", mail="newbie@district.example", departmentNumber=["1234", "9999"],
                                 givenName="Zoë"))
    assert res.dn == dn
    entry = get(d, dn)
    assert entry["uid"] == [b"newbie"]
    assert sorted(entry["departmentNumber"]) == [b"1234", b"9999"]
    assert entry["givenName"] == ["Zoë".encode()]
    assert uuid.UUID(entry["entryUUID"][0].decode())
    assert re.fullmatch(rb"\d{14}Z", entry["createTimestamp"][0])
    assert entry["createTimestamp"] == entry["modifyTimestamp"]
    assert entry["creatorsName"] == entry["modifiersName"] == [ROOT_DN.encode()]
    assert entry["structuralObjectClass"] == [b"inetOrgPerson"]
    assert entry["entryDN"] == [dn.encode()] and entry["hasSubordinates"] == [b"FALSE"]
    # found through every index it should be in
    for text in ["(uid=newbie)", "(uid=NEW*)", "(mail=newbie@district.example)", "(departmentNumber=9999)",
                 "(cn=core newbie)", "(&(objectClass=person)(givenName=zoë))",
                 f"(entryUUID={entry['entryUUID'][0].decode()})"]:
        assert list(search(d, student, PEOPLE, text, attrs=["1.1"])) == [dn], text
    # the changelog row
    rows = changes_since(d, seq)
    assert len(rows) == 1
    row = rows[0]
    assert (row["op"], row["dn"], row["who"], row["peer"]) == ("add", dn, d.root_ndn, "test-root")
    assert "uid" in row["detail"]["attributes"]
    assert "newbie" not in json.dumps(row["detail"])  # names only, no values


def test_add_refusals_leave_nothing_behind(d, root, student):
    seq = last_seq(d)
    count = d.store.count()
    refused(ResultCode.ENTRY_ALREADY_EXISTS, d.add, root, JSMITH, person("jsmith"))
    e = refused(ResultCode.NO_SUCH_OBJECT, d.add, root, f"uid=x,ou=nowhere,{PEOPLE}", person("x"))
    assert e.matched_dn == PEOPLE
    refused(ResultCode.INSUFFICIENT_ACCESS_RIGHTS, d.add, student, f"uid=x,{STUDENTS}", person("x"))
    # the RDN's value is added when the attributes omit it (RFC 4511 4.7), then checked
    refused(ResultCode.OBJECT_CLASS_VIOLATION, d.add, root, f"dc=x,{STUDENTS}", person("y"))
    refused(ResultCode.OBJECT_CLASS_VIOLATION, d.add, root, f"uid=x,{STUDENTS}",
            {"objectClass": [b"inetOrgPerson"], "uid": [b"x"], "cn": [b"x"]})
    refused(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, d.add, root, f"uid=x,{STUDENTS}", person("x", fooBar="1"))
    refused(ResultCode.CONSTRAINT_VIOLATION, d.add, root, f"uid=x,{STUDENTS}", person("x", displayName=["a", "b"]))
    refused(ResultCode.CONSTRAINT_VIOLATION, d.add, root, f"uid=x,{STUDENTS}",
            person("x", createTimestamp="20000101000000Z"))
    refused(ResultCode.INVALID_ATTRIBUTE_SYNTAX, d.add, root, f"uid=x,{STUDENTS}",
            dict(person("x", uidNumber="abc", gidNumber="1", homeDirectory="/h"),
                 objectClass=[b"inetOrgPerson", b"posixAccount"]))
    refused(ResultCode.UNWILLING_TO_PERFORM, d.add, root, "uid=x,dc=elsewhere", person("x"))
    refused(ResultCode.INVALID_DN_SYNTAX, d.add, root, "uid=x,,dc=district", person("x"))
    assert changes_since(d, seq) == []
    assert d.store.count() == count
    assert search(d, root, SUFFIX, "(uid=x)") == {}


def test_add_with_post_read(d, root):
    res = d.add(root, f"uid=pr,{PEOPLE}", person("pr"), WriteOptions(post_read=["uid", "entryUUID"]))
    dn, attrs = res.post_read
    attrs = dict(attrs)
    assert dn == f"uid=pr,{PEOPLE}" and attrs["uid"] == [b"pr"] and attrs["entryUUID"]


# ----------------------------------------------------------------------------- modify


def test_modify_each_operation(d, root):
    dn = f"uid=mod,{PEOPLE}"
    d.add(root, dn, dict(person("mod", mail=["a@x.example", "b@x.example"], uidNumber="10", gidNumber="1",
                                homeDirectory="/h"), objectClass=[b"inetOrgPerson", b"posixAccount"]))
    before = d.lookup(d.normalize_dn(dn))
    before_attrs = before.copy_attrs()
    seq = last_seq(d)
    d.modify(root, dn, [(MOD_ADD, "mail", [b"c@x.example"]),
                        (MOD_DELETE, "mail", [b"A@X.EXAMPLE"]),
                        (MOD_REPLACE, "cn", [b"Mod One", b"Mod Two"]),
                        (MOD_INCREMENT, "uidNumber", [b"5"]),
                        (MOD_ADD, "description", [b"d1", b"d2"])])
    after = get(d, dn)
    assert sorted(after["mail"]) == [b"b@x.example", b"c@x.example"]
    assert sorted(after["cn"]) == [b"Mod One", b"Mod Two"]
    assert after["uidNumber"] == [b"15"]
    assert sorted(after["description"]) == [b"d1", b"d2"]
    # the entry object handed out before the change was not mutated (shared cache)
    assert before.attrs == before_attrs
    rows = changes_since(d, seq)
    assert [(r["op"], r["dn"], r["who"]) for r in rows] == [("modify", dn, d.root_ndn)]
    assert rows[0]["detail"]["changes"] == ["add:mail", "delete:mail", "replace:cn", "increment:uidNumber",
                                            "add:description"]
    d.modify(root, dn, [(MOD_DELETE, "description", [])])
    assert "description" not in get(d, dn)
    d.modify(root, dn, [(MOD_REPLACE, "mail", [])])
    assert "mail" not in get(d, dn)
    # indexes follow: old values no longer found, new ones are
    assert search(d, root, PEOPLE, "(mail=a@x.example)") == {}
    assert list(search(d, root, PEOPLE, "(cn=mod two)")) == [dn]
    assert search(d, root, PEOPLE, "(cn=core mod)") == {}


def test_modify_is_atomic(d, root):
    dn = f"uid=atomic,{PEOPLE}"
    d.add(root, dn, person("atomic", description="keep"))
    seq = last_seq(d)
    before = get(d, dn)
    refused(ResultCode.NO_SUCH_ATTRIBUTE, d.modify, root, dn,
            [(MOD_REPLACE, "cn", [b"changed"]), (MOD_DELETE, "description", [b"missing"])])
    refused(ResultCode.CONSTRAINT_VIOLATION, d.modify, root, dn,
            [(MOD_ADD, "displayName", [b"x"]), (MOD_ADD, "displayName", [b"y"])])
    refused(ResultCode.OBJECT_CLASS_VIOLATION, d.modify, root, dn, [(MOD_DELETE, "sn", [])])
    refused(ResultCode.OBJECT_CLASS_MODS_PROHIBITED, d.modify, root, dn, [(MOD_REPLACE, "objectClass", [b"account"])])
    refused(ResultCode.NOT_ALLOWED_ON_RDN, d.modify, root, dn, [(MOD_REPLACE, "uid", [b"other"])])
    refused(ResultCode.ATTRIBUTE_OR_VALUE_EXISTS, d.modify, root, dn, [(MOD_ADD, "description", [b"KEEP"])])
    refused(ResultCode.CONSTRAINT_VIOLATION, d.modify, root, dn, [(MOD_REPLACE, "entryUUID", [b"x"])])
    refused(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, d.modify, root, dn, [(MOD_ADD, "fooBar", [b"x"])])
    refused(ResultCode.INSUFFICIENT_ACCESS_RIGHTS, d.modify, d.bind(JSMITH, b"student-pw-1"), dn,
            [(MOD_REPLACE, "cn", [b"x"])])
    e = refused(ResultCode.NO_SUCH_OBJECT, d.modify, root, f"uid=ghost,{PEOPLE}", [(MOD_REPLACE, "cn", [b"x"])])
    assert e.matched_dn == PEOPLE
    assert get(d, dn) == before
    assert changes_since(d, seq) == []


def test_modify_pre_and_post_read_and_assertion(d, root):
    dn = f"uid=prepost,{PEOPLE}"
    d.add(root, dn, person("prepost", description="v1"))
    res = d.modify(root, dn, [(MOD_REPLACE, "description", [b"v2"])],
                   WriteOptions(assertion=flt("(description=v1)"), pre_read=["description"],
                                post_read=["description"]))
    assert dict(res.pre_read[1]) == {"description": [b"v1"]}
    assert dict(res.post_read[1]) == {"description": [b"v2"]}
    refused(ResultCode.ASSERTION_FAILED, d.modify, root, dn, [(MOD_REPLACE, "description", [b"v3"])],
            WriteOptions(assertion=flt("(description=v1)")))
    assert get(d, dn, "description")["description"] == [b"v2"]


def test_modify_timestamps_and_modifiers_name(d, root, monkeypatch):
    import directory.core.directory as core

    dn = f"uid=stamp,{PEOPLE}"
    d.add(root, dn, person("stamp", userPassword=CLEAR))
    created = get(d, dn)
    monkeypatch.setattr(core, "now_generalized", lambda: b"20991231235959Z")
    me = d.bind(dn, CLEAR.encode())
    d.password_modify(me, None, CLEAR.encode(), CLEAR2.encode())
    after = get(d, dn)
    assert after["modifyTimestamp"] == [b"20991231235959Z"]
    assert after["modifiersName"] == [dn.encode()]
    assert after["createTimestamp"] == created["createTimestamp"]
    assert after["creatorsName"] == [ROOT_DN.encode()]
    assert after["entryUUID"] == created["entryUUID"]


# ----------------------------------------------------------------------------- delete


def test_delete(d, root, student):
    dn = f"uid=gone,{PEOPLE}"
    d.add(root, dn, person("gone"))
    uuid_value = get(d, dn)["entryUUID"][0].decode()
    seq = last_seq(d)
    refused(ResultCode.INSUFFICIENT_ACCESS_RIGHTS, d.delete, student, dn)
    refused(ResultCode.NOT_ALLOWED_ON_NON_LEAF, d.delete, root, STUDENTS)
    refused(ResultCode.ASSERTION_FAILED, d.delete, root, dn, WriteOptions(assertion=flt("(uid=other)")))
    assert changes_since(d, seq) == []
    res = d.delete(root, dn, WriteOptions(pre_read=["uid"]))
    assert dict(res.pre_read[1]) == {"uid": [b"gone"]}
    assert d.lookup(d.normalize_dn(dn)) is None
    assert search(d, root, SUFFIX, "(uid=gone)") == {}
    assert search(d, root, SUFFIX, f"(entryUUID={uuid_value})") == {}
    assert search(d, root, SUFFIX, "(cn=*gone*)") == {}
    rows = changes_since(d, seq)
    assert [(r["op"], r["dn"], r["who"]) for r in rows] == [("delete", dn, d.root_ndn)]
    e = refused(ResultCode.NO_SUCH_OBJECT, d.delete, root, dn)
    assert e.matched_dn == PEOPLE
    # and the DN can be reused
    d.add(root, dn, person("gone"))
    assert get(d, dn)["entryUUID"][0].decode() != uuid_value


# ----------------------------------------------------------------------------- modify DN


def test_modify_dn_rename_and_move_subtree(d, root, student):
    seq = last_seq(d)
    d.modify_dn(root, JSMITH, "uid=john", delete_old=False)
    new = f"uid=john,{STUDENTS}"
    assert d.lookup(d.normalize_dn(JSMITH)) is None
    assert sorted(get(d, new)["uid"]) == [b"john", b"jsmith"]
    assert list(search(d, student, PEOPLE, "(uid=jsmith)")) == [new]
    assert list(search(d, student, PEOPLE, "(uid=john)")) == [new]
    # the user can still bind under the new DN (and not the old one)
    assert d.bind(new, b"student-pw-1").dn == new
    refused(ResultCode.INVALID_CREDENTIALS, d.bind, JSMITH, b"student-pw-1")
    # delete_old drops the old value
    d.modify_dn(root, new, "uid=jsmith", delete_old=True)
    assert get(d, JSMITH)["uid"] == [b"jsmith"]
    d.modify_dn(root, JSMITH, "uid=js2", delete_old=True)
    js2 = f"uid=js2,{STUDENTS}"
    assert get(d, js2)["uid"] == [b"js2"]
    # move a subtree: ou=students goes under ou=staff
    d.modify_dn(root, STUDENTS, "ou=pupils", delete_old=True, new_superior=STAFF)
    pupils = f"ou=pupils,{STAFF}"
    assert d.lookup(d.normalize_dn(STUDENTS)) is None
    got = search(d, root, pupils, attrs=["entryDN", "ou"])
    assert sorted(got) == sorted([pupils, f"uid=js2,{pupils}", f"uid=mgarcia,{pupils}"])
    assert got[f"uid=mgarcia,{pupils}"]["entryDN"] == [f"uid=mgarcia,{pupils}".encode()]
    assert got[pupils]["ou"] == [b"pupils"]
    assert search(d, root, SUFFIX, "(uid=mgarcia)", attrs=["1.1"]) == {f"uid=mgarcia,{pupils}": {}}
    e = refused(ResultCode.NO_SUCH_OBJECT, search, d, root, MGARCIA)
    assert e.matched_dn == PEOPLE
    assert d.bind(f"uid=mgarcia,{pupils}", b"student-pw-2")
    assert search(d, root, STAFF, "(objectClass=*)", scope=SCOPE_ONE, attrs=["1.1"]).keys() == {TEACHER1, pupils}
    rows = changes_since(d, seq)
    assert [r["op"] for r in rows if r["op"] == "modrdn"] == ["modrdn"] * 4
    last = [r for r in rows if r["op"] == "modrdn"][-1]
    assert last["dn"] == STUDENTS and last["detail"]["newDN"] == pupils and last["who"] == d.root_ndn
    # refusals
    refused(ResultCode.ENTRY_ALREADY_EXISTS, d.modify_dn, root, f"uid=js2,{pupils}", "uid=mgarcia", True)
    refused(ResultCode.UNWILLING_TO_PERFORM, d.modify_dn, root, pupils, "ou=x", True, f"uid=js2,{pupils}")
    refused(ResultCode.AFFECTS_MULTIPLE_DSAS, d.modify_dn, root, SUFFIX, "dc=other", True)  # RFC 4511 4.9
    refused(ResultCode.NO_SUCH_OBJECT, d.modify_dn, root, f"uid=js2,{pupils}", "uid=x", True, f"ou=no,{SUFFIX}")
    refused(ResultCode.INSUFFICIENT_ACCESS_RIGHTS, d.modify_dn, student, TEACHER1, "uid=t", True)


def test_modify_dn_multi_valued_and_escaped_rdn(d, root):
    d.add(root, f"cn=Smith\\, John,{PEOPLE}", {"objectClass": [b"person"], "cn": [b"Smith, John"], "sn": [b"Smith"]})
    assert get(d, f"CN=smith\\2c john,{PEOPLE}")["cn"] == [b"Smith, John"]
    d.modify_dn(root, f"cn=Smith\\, John,{PEOPLE}", "cn=a\\+b+sn=Smith", delete_old=True)
    entry = get(d, f"sn=smith+cn=A\\+B,{PEOPLE}")
    assert entry is not None and entry["cn"] == [b"a+b"]
    d.delete(root, f"cn=a\\+b+sn=Smith,{PEOPLE}")
    assert search(d, root, PEOPLE, "(sn=Smith)", attrs=["1.1"]) == {JSMITH: {}}


# ----------------------------------------------------------------------------- compare, search


def test_substring_item_compiled_once(d, root):
    """A substring item (its `any` pieces a list, as decoded) is compiled once and
    reused by the planner and the next request with the same item."""
    ast = ("sub", "cn", None, [b"smit"], None)
    first = d.filters.compile(ast)
    assert d.filters.compile(("sub", "cn", None, [b"smit"], None)) is first
    assert d.filters.compile(("sub", "cn", None, [b"smi", b"t"], None)) is not first
    assert list(search(d, root, SUFFIX, "(cn=*smit*)")) == [JSMITH]
    assert list(search(d, root, SUFFIX, "(cn=*smit*)")) == [JSMITH]


def test_compare(d, student):
    assert d.compare(student, JSMITH, "uid", b"JSMITH") is True
    assert d.compare(student, MGARCIA, "cn", "maría garcía".encode()) is True
    assert d.compare(student, MGARCIA, "departmentNumber", b"1111") is False
    assert d.compare(student, JSMITH, "objectClass", b"top") is True
    refused(ResultCode.NO_SUCH_ATTRIBUTE, d.compare, student, JSMITH, "telephoneNumber", b"1")
    refused(ResultCode.UNDEFINED_ATTRIBUTE_TYPE, d.compare, student, JSMITH, "fooBar", b"1")
    refused(ResultCode.INSUFFICIENT_ACCESS_RIGHTS, d.compare, student, TEACHER1, "userPassword", b"staff-pw-1")


def test_search_as_user_root_and_anonymous(d, root, student):
    anon = d.bind("", b"")
    # like slapd without 'disclose': a base the caller may not see does not exist for them
    with pytest.raises(LDAPError) as info:
        search(d, anon, PEOPLE, "(uid=jsmith)")
    assert info.value.code == ResultCode.NO_SUCH_OBJECT and info.value.matched_dn == ""
    got = search(d, student, PEOPLE, "(uid=mgarcia)", attrs=["*", "userPassword"])
    assert "userPassword" not in got[MGARCIA] and got[MGARCIA]["cn"] == ["María García".encode()]
    assert search(d, student, PEOPLE, "(userPassword=*)") == {}
    got = search(d, root, PEOPLE, "(uid=mgarcia)", attrs=["userPassword"])
    assert got[MGARCIA]["userPassword"][0].startswith(b"{ARGON2}")
    got = search(d, student, MGARCIA, scope=SCOPE_BASE, attrs=["cn"], types_only=True)
    assert got == {MGARCIA: {"cn": []}}
    root_dse = search(d, anon, "", scope=SCOPE_BASE, attrs=["+", "*"])[""]
    assert root_dse["namingContexts"] == [SUFFIX.encode()]


def test_search_limits(tmp_path):
    extra = "".join(f"\ndn: uid=n{i},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: n{i}\ncn: N {i}\nsn: N\n"
                    f"description: number {i}\n" for i in range(60))
    d = open_dir(tmp_path, BASE_LDIF + extra, limits={"size": 5, "unindexed": 50})
    root = d.bind(ROOT_DN, ROOT_PW.encode())
    user = d.bind(JSMITH, b"student-pw-1")
    # size limit for users, not for root nor for paged searches
    cursor = d.search(user, PEOPLE, SCOPE_SUB, flt("(sn=N)"), ["1.1"])
    with pytest.raises(PartialResult) as info:
        while not cursor.done:
            cursor.next_batch(100)
    assert info.value.error.code == ResultCode.SIZE_LIMIT_EXCEEDED and len(info.value.entries) == 5
    assert len(search(d, user, PEOPLE, "(sn=N)", paged=True)) == 60
    assert len(search(d, root, PEOPLE, "(sn=N)")) == 60
    cursor = d.search(user, PEOPLE, SCOPE_SUB, flt("(sn=N)"), ["1.1"], size_limit=2)
    with pytest.raises(PartialResult) as info:
        cursor.next_batch(100)
    assert len(info.value.entries) == 2
    # unindexed: refused for users over limits.unindexed, fine for root
    refused(ResultCode.ADMIN_LIMIT_EXCEEDED, d.search, user, PEOPLE, SCOPE_SUB, flt("(description=number 1*)"), [])
    assert len(search(d, root, PEOPLE, "(description=number 1*)")) == 11
    assert len(search(d, user, PEOPLE, "(&(sn=N)(description=number 1*))", paged=True)) == 11


def test_load_is_all_or_nothing(tmp_path):
    d = open_dir(tmp_path, ldif=None)
    bad = BASE_LDIF + f"\ndn: uid=broken,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: broken\ncn: b\n"  # no sn
    with pytest.raises(LoadError) as info:
        load(d, bad, "bad.ldif")
    assert "broken" in str(info.value)
    assert d.store.count() == 0
    assert load(d, BASE_LDIF) == 7
    assert d.store.count() == 7


def test_store_survives_reopen(tmp_path):
    d = open_dir(tmp_path)
    root = d.bind(ROOT_DN, ROOT_PW.encode())
    d.add(root, f"uid=persist,{PEOPLE}", person("persist", userPassword=CLEAR))
    d.modify(root, f"uid=persist,{PEOPLE}", [(MOD_ADD, "description", [b"kept"])])
    d.delete(root, TEACHER1)
    d.store.close()
    again = open_directory(load_config(tmp_path / "config.yaml"))
    root2 = again.bind(ROOT_DN, ROOT_PW.encode())
    assert get(again, f"uid=persist,{PEOPLE}")["description"] == [b"kept"]
    assert again.lookup(again.normalize_dn(TEACHER1)) is None
    assert again.bind(f"uid=persist,{PEOPLE}", CLEAR.encode())
    assert [r["op"] for r in again.store.changes()][-3:] == ["add", "modify", "delete"]
    assert list(search(again, root2, PEOPLE, "(uid=pers*)")) == [f"uid=persist,{PEOPLE}"]


def test_export_round_trips(tmp_path, d, root):
    d.add(root, f"uid=exp,{PEOPLE}", person("exp", cn=["Zoë Export"], userPassword=CLEAR))
    from directory.ldif import format_entry

    text = "".join(format_entry(e.dn, e.attrs.items()) for e in d.export_entries())
    assert CLEAR not in text
    (tmp_path / "other").mkdir()
    other = open_dir(tmp_path / "other", ldif=None)
    assert load(other, text, "export.ldif") == d.store.count()
    assert get(other, f"uid=exp,{PEOPLE}")["entryUUID"] == get(d, f"uid=exp,{PEOPLE}")["entryUUID"]
    assert other.bind(f"uid=exp,{PEOPLE}", CLEAR.encode())


# ----------------------------------------------------------------------------- password modify


def test_password_modify(d, root):
    dn = f"uid=pm,{PEOPLE}"
    d.add(root, dn, person("pm", userPassword=CLEAR))
    me = d.bind(dn, CLEAR.encode())
    seq = last_seq(d)
    res = d.password_modify(me, None, CLEAR.encode(), CLEAR2.encode())
    assert res.generated_password is None
    assert d.bind(dn, CLEAR2.encode())
    refused(ResultCode.INVALID_CREDENTIALS, d.bind, dn, CLEAR.encode())
    refused(ResultCode.INVALID_CREDENTIALS, d.password_modify, me, None, b"wrong-old-password", CLEAR3.encode())
    refused(ResultCode.CONSTRAINT_VIOLATION, d.password_modify, me, None, CLEAR2.encode(), b"short")
    res = d.password_modify(me, dn, CLEAR2.encode(), None)
    assert res.generated_password and len(res.generated_password) >= 8
    assert d.bind(dn, res.generated_password.encode())
    stored = d.lookup(d.normalize_dn(dn)).attrs["userPassword"]
    assert len(stored) == 1 and stored[0].startswith(b"{ARGON2}")
    refused(ResultCode.INSUFFICIENT_ACCESS_RIGHTS, d.password_modify, d.bind(JSMITH, b"student-pw-1"), dn, None,
            CLEAR3.encode())
    refused(ResultCode.UNWILLING_TO_PERFORM, d.password_modify, d.bind("", b""), dn, None, CLEAR3.encode())
    refused(ResultCode.UNWILLING_TO_PERFORM, d.password_modify, root, None, None, CLEAR3.encode())
    rows = changes_since(d, seq)
    pm = [r for r in rows if r["op"] == "passwordModify"]
    assert [(r["dn"], r["who"]) for r in pm] == [(dn, d.normalize_dn(dn))] * 2
    assert [r["detail"]["generated"] for r in pm] == [False, True]
    assert not any(c in json.dumps(rows) for c in (CLEAR, CLEAR2, res.generated_password))
