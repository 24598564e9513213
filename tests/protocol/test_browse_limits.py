"""Browsing a big OU and per-identity search limits (issue 20, item 2), against a
server process with 6,000 more students, through real clients (ldap3, ldapsearch):

* a one-level or subtree (objectClass=*) search of a parent is answered from the
  tree, never refused as unindexed; paged, it streams page by page;
* limits.rules (slapd's `limits`): the district administrators' group and the sync
  service are unlimited, everyone else (the SSO service here) keeps the defaults.
"""
import re
import subprocess

import pytest
from ldap3 import LEVEL, SUBTREE

from tests.conftest import requires_ldap_utils
from tests.protocol.district import (
    PEOPLE, STUDENT_DATA, STUDENTS, bind, crowd_ldif, dn_of, make_server, password,
)

CROWD = 6000
N_STUDENTS = CROWD + len(STUDENT_DATA)
UNLIMITED = {"size": "unlimited", "time": "unlimited", "unindexed": "unlimited"}
LIMITS = {"size": 500, "time": 60, "unindexed": 5000, "rules": [
    {"who": "group=cn=district-admins,ou=groups,{suffix}", **UNLIMITED},
    {"who": "cn=sis-sync,ou=services,{suffix}", **UNLIMITED},
    # staff: a larger size limit, the other limits the defaults (distadmin matched the group first)
    {"who": "dn.subtree=ou=staff,ou=people,{suffix}", "size": 3},
]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("browse"), extra={"limits": LIMITS},
                      extra_ldif=crowd_ldif("cr", CROWD))
    yield srv
    srv.stop()


def ldapsearch(srv, who, *args):
    cmd = ["ldapsearch", "-x", "-LLL", "-H", srv.url, "-D", dn_of(who), "-w", password(who), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def result_code(conn):
    return conn.result["result"]


def test_admin_paged_one_level_listing_ldap3(srv):
    conn = bind(srv, "distadmin")
    uids = [e["attributes"]["uid"][0] for e in conn.extend.standard.paged_search(
        STUDENTS, "(objectClass=*)", LEVEL, attributes=["uid"], paged_size=500, generator=True)]
    assert result_code(conn) == 0, conn.result
    assert len(uids) == len(set(uids)) == N_STUDENTS


@requires_ldap_utils
def test_admin_paged_one_level_listing_ldapsearch(srv):
    out = ldapsearch(srv, "distadmin", "-b", STUDENTS, "-s", "one", "-E", "pr=500/noprompt", "(objectClass=*)", "1.1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\ndn: ") + out.stdout.startswith("dn: ") == N_STUDENTS


@requires_ldap_utils
def test_sso_service_paged_subtree_listing(srv):
    # the SSO service has the default limits; a paged (objectClass=*) needs no more
    out = ldapsearch(srv, "sso-portal", "-b", PEOPLE, "-s", "sub", "-E", "pr=1000/noprompt", "(objectClass=*)", "uid")
    assert out.returncode == 0, out.stderr
    uids = re.findall(r"^uid: (\S+)$", out.stdout, re.M)
    assert len([u for u in uids if u.startswith("cr")]) == CROWD


def test_sso_service_subtree_not_unindexed(srv):
    conn = bind(srv, "sso-portal")
    # unpaged: answered from the tree (not adminLimitExceeded), held to the default size limit
    conn.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["1.1"])
    assert result_code(conn) == 4, conn.result  # sizeLimitExceeded
    assert len(conn.response) == 500


@requires_ldap_utils
def test_absolute_true_filter_answered_from_the_tree(srv):
    # (&) (RFC 4526) matches every entry, like (objectClass=*); ldap3 cannot send it
    out = ldapsearch(srv, "sso-portal", "-b", STUDENTS, "-s", "one", "(&)", "1.1")
    assert out.returncode == 4, out.stderr  # sizeLimitExceeded, not adminLimitExceeded
    assert out.stdout.count("dn: ") == 500
    out = ldapsearch(srv, "sso-portal", "-b", STUDENTS, "-s", "one", "-E", "pr=2000/noprompt", "(&)", "1.1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("dn: ") == N_STUDENTS


def test_ordinary_identity_keeps_unindexed_limit(srv):
    conn = bind(srv, "sso-portal")
    conn.search(PEOPLE, "(rollcallGrade=05)", SUBTREE, attributes=["1.1"], paged_size=500)
    assert result_code(conn) == 11, conn.result  # adminLimitExceeded: rollcallGrade has no index
    assert "more than 5000" in conn.result["message"]
    conn.search(STUDENTS, "(rollcallGrade=05)", LEVEL, attributes=["1.1"], paged_size=500)
    assert result_code(conn) == 11, conn.result


@pytest.mark.parametrize("who", ["distadmin", "sis-sync"])
def test_unlimited_identities(srv, who):
    conn = bind(srv, who)
    conn.search(STUDENTS, "(objectClass=*)", LEVEL, attributes=["1.1"])  # unpaged, no size limit
    assert result_code(conn) == 0, conn.result
    assert len(conn.response) == N_STUDENTS
    entries = list(conn.extend.standard.paged_search(PEOPLE, "(rollcallGrade=05)", SUBTREE, attributes=["1.1"],
                                                     paged_size=1000, generator=True))
    assert result_code(conn) == 0, conn.result  # unindexed, but not limited for them
    assert len(entries) >= CROWD


def test_first_matching_rule_wins(srv):
    conn = bind(srv, "teach1")  # a staff member: size 3 from the dn.subtree rule
    conn.search("dc=district,dc=example", "(objectClass=*)", SUBTREE, attributes=["1.1"])
    assert result_code(conn) == 4 and len(conn.response) == 3, (conn.result, len(conn.response))
    conn = bind(srv, "distadmin")  # staff too, but the group rule comes first
    conn.search(STUDENTS, "(objectClass=*)", LEVEL, attributes=["1.1"])
    assert result_code(conn) == 0 and len(conn.response) == N_STUDENTS


def test_teacher_gets_defaults(srv):
    conn = bind(srv, "teach1")
    conn.search(PEOPLE, "(rollcallGrade=05)", SUBTREE, attributes=["1.1"])
    assert result_code(conn) == 11, conn.result  # the staff rule leaves unindexed at the default
    conn.search(STUDENTS, "(objectClass=*)", LEVEL, attributes=["1.1"], paged_size=100)
    assert result_code(conn) == 0, conn.result  # browsing is not an unindexed scan
