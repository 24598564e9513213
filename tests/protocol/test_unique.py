"""District IDs and usernames below ou=people: the district's syntax, one person each
(the server refuses duplicates for every client, like slapd's unique/constraint overlays)."""
import pytest
from ldap3 import MODIFY_REPLACE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX

STUDENTS = f"ou=students,ou=people,{SUFFIX}"
CONSTRAINT_VIOLATION = 19


@pytest.fixture(scope="module")
def root(server):
    conn = Connection(Server(server.url), ROOT_DN, ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


def add_person(conn, uid, district_id=None, base=STUDENTS):
    attrs = {"uid": uid, "cn": f"Test {uid}", "sn": "Test"}
    if district_id:
        attrs["employeeNumber"] = district_id
    return conn.add(f"uid={uid},{base}", ["inetOrgPerson"], attrs)


def test_district_id_syntax(root):
    assert add_person(root, "u-ok", "123456x789"), root.result
    for bad in ("12345x789", "123456xx89", "abcdefghij", "1234567890a"):
        assert not add_person(root, f"u-bad-{bad}", bad)
        assert root.result["result"] == CONSTRAINT_VIOLATION and "not a district ID" in root.result["message"]


def test_district_id_belongs_to_one_person(root):
    assert add_person(root, "u-first", "222222a222"), root.result
    assert not add_person(root, "u-second", "222222A222")  # the letter's case is ignored
    assert root.result["result"] == CONSTRAINT_VIOLATION and "u-first" in root.result["message"]
    assert add_person(root, "u-third", "333333a333")
    assert not root.modify(f"uid=u-third,{STUDENTS}", {"employeeNumber": [(MODIFY_REPLACE, ["222222a222"])]})
    assert root.result["result"] == CONSTRAINT_VIOLATION
    # an unrelated change to a person keeps working
    assert root.modify(f"uid=u-third,{STUDENTS}", {"description": [(MODIFY_REPLACE, ["still fine"])]}), root.result


def test_username_belongs_to_one_account(root):
    assert add_person(root, "samename", "444444a444"), root.result
    staff = f"ou=staff,ou=people,{SUFFIX}"
    assert not add_person(root, "SameName", "555555a555", base=staff)
    assert root.result["result"] == CONSTRAINT_VIOLATION and "username" in root.result["message"]
