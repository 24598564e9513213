"""memberOf and referential integrity over the wire (ldap3, as the root DN unless
said otherwise): direct and nested membership, removal, delete and rename of
members and of groups, memberOf is the server's alone, memberOf filters, and the
access rights that follow a membership on connections already open."""
import pytest
from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, SUBTREE, Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX
from tests.protocol.district import GROUPS, PEOPLE, STAFF, make_server, password, role_group, staff, student

SUCCESS, CONSTRAINT_VIOLATION = 0, 19
WORK = f"ou=work,{SUFFIX}"  # this module's groups
USERS = f"ou=mousers,{STAFF}"  # this module's users


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("memberof"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def root(srv):
    conn = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
    for dn, ou in ((WORK, "work"), (USERS, "mousers")):
        assert conn.add(dn, ["organizationalUnit"], {"ou": ou}), conn.result
    yield conn
    conn.unbind()


def user(uid):
    return f"uid={uid},{USERS}"


def group(cn, base=WORK):
    return f"cn={cn},{base}"


def add_user(root, uid):
    assert root.add(user(uid), ["inetOrgPerson"], {"uid": uid, "cn": uid, "sn": uid}), root.result
    return user(uid)


def add_group(root, cn, *members, cls="groupOfNames"):
    attr = "uniqueMember" if cls == "groupOfUniqueNames" else "member"
    assert root.add(group(cn), [cls], {"cn": cn, attr: list(members)}), root.result
    return group(cn)


def norm(values):
    return sorted(v.decode().lower() if isinstance(v, bytes) else v.lower() for v in values)


def member_of(root, dn):
    root.search(dn, "(objectClass=*)", BASE, attributes=["memberOf"])
    assert root.result["result"] == SUCCESS, root.result
    return norm(root.response[0]["raw_attributes"].get("memberOf", []))


def members(root, dn, attr="member"):
    root.search(dn, "(objectClass=*)", BASE, attributes=[attr])
    assert root.result["result"] == SUCCESS, root.result
    return norm(root.response[0]["raw_attributes"].get(attr, []))


def found(conn, flt, base=SUFFIX):
    conn.search(base, flt, SUBTREE, attributes=["1.1"])
    assert conn.result["result"] == SUCCESS, conn.result
    return norm(e["dn"] for e in conn.response if e.get("type") == "searchResEntry")


# ----------------------------------------------------------------------------- membership


def test_adding_a_member_sets_memberof(root):
    u1, u2 = add_user(root, "mo-u1"), add_user(root, "mo-u2")
    g = add_group(root, "mo-g1", u2)
    assert member_of(root, u2) == norm([g])  # a group created with members
    assert member_of(root, u1) == []
    assert root.modify(g, {"member": [(MODIFY_ADD, [u1])]}), root.result
    assert member_of(root, u1) == norm([g])
    assert root.modify(g, {"member": [(MODIFY_DELETE, [u1])]}), root.result
    assert member_of(root, u1) == []
    assert member_of(root, u2) == norm([g])
    # replace: the one dropped loses it, the one added gains it
    assert root.modify(g, {"member": [(MODIFY_REPLACE, [u1])]}), root.result
    assert member_of(root, u1) == norm([g])
    assert member_of(root, u2) == []


def test_group_of_unique_names_counts_too(root):
    u = add_user(root, "mo-uniq")
    g = add_group(root, "mo-uniq-g", u, cls="groupOfUniqueNames")
    assert member_of(root, u) == norm([g])


def test_nested_groups(root):
    u = add_user(root, "mo-nested")
    gb = add_group(root, "mo-b", u, add_user(root, "mo-b-other"))
    ga = add_group(root, "mo-a", add_user(root, "mo-a-only"))
    assert member_of(root, u) == norm([gb])
    assert root.modify(ga, {"member": [(MODIFY_ADD, [gb])]}), root.result
    assert member_of(root, u) == norm([ga, gb])  # through B
    assert member_of(root, gb) == norm([ga])  # B itself is a member of A
    # a third level
    gtop = add_group(root, "mo-top", ga)
    assert member_of(root, u) == norm([ga, gb, gtop])
    # removing the user from B removes every group it had through B
    assert root.modify(gb, {"member": [(MODIFY_DELETE, [u])]}), root.result
    assert member_of(root, u) == []
    # put it back, then cut B out of A: only B is left
    assert root.modify(gb, {"member": [(MODIFY_ADD, [u])]}), root.result
    assert member_of(root, u) == norm([ga, gb, gtop])
    assert root.modify(ga, {"member": [(MODIFY_DELETE, [gb])]}), root.result
    assert member_of(root, u) == norm([gb])


def test_membership_cycle_terminates(root):
    u = add_user(root, "mo-cycle")
    gx = add_group(root, "mo-x", u)
    gy = add_group(root, "mo-y", gx)
    assert root.modify(gx, {"member": [(MODIFY_ADD, [gy])]}), root.result
    assert member_of(root, u) == norm([gx, gy])
    assert member_of(root, gx) == norm([gy])
    assert member_of(root, gy) == norm([gx])


# ----------------------------------------------------------------------------- referential integrity


def test_deleting_a_user_removes_it_from_every_group(root):
    u, other = add_user(root, "mo-del"), add_user(root, "mo-del-other")
    g1 = add_group(root, "mo-del-g1", u, other)
    g2 = add_group(root, "mo-del-g2", other, u)
    g3 = add_group(root, "mo-del-g3", u, other, cls="groupOfUniqueNames")
    assert member_of(root, u) == norm([g1, g2, g3])
    assert root.delete(u), root.result
    assert members(root, g1) == norm([other])
    assert members(root, g2) == norm([other])
    assert members(root, g3, "uniqueMember") == norm([other])
    assert found(root, f"(member={u})") == []
    assert member_of(root, other) == norm([g1, g2, g3])


def test_deleting_a_group_updates_memberof_below_it(root):
    u = add_user(root, "mo-delgrp")
    inner = add_group(root, "mo-delgrp-inner", u)
    outer = add_group(root, "mo-delgrp-outer", inner)
    assert member_of(root, u) == norm([inner, outer])
    assert root.delete(outer), root.result
    assert member_of(root, u) == norm([inner])
    assert member_of(root, inner) == []


def test_renaming_a_user_renames_it_in_every_group(root):
    u, other = add_user(root, "mo-ren"), add_user(root, "mo-ren-other")
    g1 = add_group(root, "mo-ren-g1", u, other)
    g2 = add_group(root, "mo-ren-g2", other, u)
    assert root.modify_dn(u, "uid=mo-renamed"), root.result
    renamed = user("mo-renamed")
    assert members(root, g1) == norm([renamed, other])
    assert members(root, g2) == norm([other, renamed])
    assert member_of(root, renamed) == norm([g1, g2])
    # moved to another container (newSuperior) as well
    assert root.modify_dn(renamed, "uid=mo-renamed", new_superior=STAFF), root.result
    moved = staff("mo-renamed")
    assert members(root, g1) == norm([moved, other])
    assert members(root, g2) == norm([other, moved])
    assert member_of(root, moved) == norm([g1, g2])
    assert found(root, f"(member={renamed})") == []


def test_renaming_a_group_updates_memberof_of_its_members(root):
    u = add_user(root, "mo-rg")
    inner = add_group(root, "mo-rg-inner", u)
    outer = add_group(root, "mo-rg-outer", inner)
    assert member_of(root, u) == norm([inner, outer])
    assert root.modify_dn(inner, "cn=mo-rg-inner2"), root.result
    inner2 = group("mo-rg-inner2")
    assert member_of(root, u) == norm([inner2, outer])
    assert members(root, outer) == norm([inner2])  # refint in the enclosing group
    assert root.modify_dn(outer, "cn=mo-rg-outer2"), root.result
    outer2 = group("mo-rg-outer2")
    assert member_of(root, u) == norm([inner2, outer2])
    assert member_of(root, inner2) == norm([outer2])


def test_renaming_a_container_renames_the_members_below_it(root):
    team = f"ou=mo-team,{USERS}"
    assert root.add(team, ["organizationalUnit"], {"ou": "mo-team"}), root.result
    assert root.add(f"uid=mo-t1,{team}", ["inetOrgPerson"], {"uid": "mo-t1", "cn": "t1", "sn": "t1"})
    g = add_group(root, "mo-team-g", f"uid=mo-t1,{team}", add_user(root, "mo-team-other"))
    assert root.modify_dn(team, "ou=mo-team2"), root.result
    moved = f"uid=mo-t1,ou=mo-team2,{USERS}"
    assert members(root, g) == norm([moved, user("mo-team-other")])
    assert member_of(root, moved) == norm([g])


def test_deleting_the_last_member_leaves_a_valid_group(root):
    u = add_user(root, "mo-last")
    g = add_group(root, "mo-last-g", u)
    assert root.delete(u)
    # the root DN stands in for the last member (slapd's olcRefintNothing)
    assert members(root, g) == norm(["cn=admin,dc=district,dc=example"])
    assert root.modify(g, {"description": [(MODIFY_REPLACE, ["still a valid group"])]}), root.result


# ----------------------------------------------------------------------------- memberOf is the server's


def test_clients_cannot_write_memberof(srv, root):
    u = add_user(root, "mo-ro")
    g = add_group(root, "mo-ro-g", u)
    fake = group("mo-ro-fake")
    for change in ({"memberOf": [(MODIFY_ADD, [fake])]}, {"memberOf": [(MODIFY_REPLACE, [fake])]},
                   {"memberOf": [(MODIFY_DELETE, [g])]}, {"memberOf": [(MODIFY_DELETE, [])]}):
        assert root.modify(u, change) is False
        assert root.result["result"] == CONSTRAINT_VIOLATION, (change, root.result)
        assert "memberOf" in root.result["message"]
    assert member_of(root, u) == norm([g])
    assert root.add(user("mo-ro2"), ["inetOrgPerson"], {"uid": "mo-ro2", "cn": "x", "sn": "x",
                                                        "memberOf": [g]}) is False
    assert root.result["result"] == CONSTRAINT_VIOLATION
    # nor can a district administrator (manage) or the user itself
    distadmin = Connection(Server(srv.url), staff("distadmin"), password("distadmin"), auto_bind=True)
    distadmin.modify(staff("distadmin"), {"memberOf": [(MODIFY_ADD, [role_group("principals", "3333")])]})
    assert distadmin.result["result"] == CONSTRAINT_VIOLATION, distadmin.result
    distadmin.unbind()


def test_memberof_filter(srv, root):
    u1, u2, u3 = (add_user(root, f"mo-f{i}") for i in (1, 2, 3))
    gb = add_group(root, "mo-fb", u3)
    ga = add_group(root, "mo-fa", u1, u2, gb)
    assert found(root, f"(memberOf={ga})") == norm([u1, u2, u3, gb])
    assert found(root, f"(memberOf={gb})") == norm([u3])
    # DN matching is by distinguishedNameMatch: case and spacing do not matter
    assert found(root, f"(memberOf={ga.upper().replace(',', ', ')})") == norm([u1, u2, u3, gb])
    assert found(root, f"(&(objectClass=inetOrgPerson)(memberOf={ga}))", PEOPLE) == norm([u1, u2, u3])
    assert found(root, f"(memberOf={group('mo-nonexistent')})") == []
    # an ordinary user finds the district's administrators by memberOf (indexed)
    admin1 = Connection(Server(srv.url), staff("admin1"), password("admin1"), auto_bind=True)
    assert found(admin1, f"(memberOf={role_group('student-email-admins', '1111')})", PEOPLE) == norm(
        [staff("admin1"), staff("admin12"), staff("admindis")])
    assert found(admin1, f"(memberOf=cn=district-admins,{GROUPS})", PEOPLE) == norm([staff("distadmin")])
    admin1.unbind()


# ----------------------------------------------------------------------------- rights follow memberOf


def test_role_rights_follow_membership_on_an_open_connection(srv, root):
    conn = Connection(Server(srv.url), staff("adminnone"), password("adminnone"), auto_bind=True)
    g3333 = role_group("student-email-admins", "3333")
    try:
        assert found(conn, "(uid=s3)", PEOPLE) == []
        assert root.modify(g3333, {"member": [(MODIFY_ADD, [staff("adminnone")])]}), root.result
        assert member_of(root, staff("adminnone")) == norm([g3333])
        # the same connection now administers 3333's students
        assert found(conn, "(uid=s3)", PEOPLE) == norm([student("s3")])
        assert conn.modify(student("s3"), {"description": [(MODIFY_REPLACE, ["by adminnone"])]}), conn.result
        assert found(conn, "(uid=s1)", PEOPLE) == []
        assert root.modify(g3333, {"member": [(MODIFY_DELETE, [staff("adminnone")])]}), root.result
        assert found(conn, "(uid=s3)", PEOPLE) == []
    finally:
        conn.unbind()
