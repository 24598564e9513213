"""SSSD against the demo district served with the shipped config.yaml (POSIX on, the
rfc2307bis schema, the demo numbered as scripts/serve numbers it): what a school's Linux
lab sees. The lab's sssd.conf searches only its own site's groups (ou=1234,ou=sites):
every site has groups called `students` and `staff`, and Linux group names must be unique."""
import pytest
import yaml
from ldap3 import MODIFY_REPLACE, Connection, Server

from directory.demo import PASSWORDS, demo_ldif
from tests.clients.test_sssd import PAMTESTER, inside, running_sssd, sssd_conf, why_not
from tests.conftest import ROOT, ROOT_DN, ROOT_PW, SUFFIX, ServerProcess

SHIPPED = yaml.safe_load((ROOT / "config.yaml").read_text())
SITE = "1234"  # jsmith's school
STUDENT, TEACHER, PENDING = "jsmith", "ewilson", "mtorres"


@pytest.fixture(scope="module")
def demo_lab(tmp_path_factory):
    reason = why_not()
    if reason:
        pytest.skip(reason)
    srv = ServerProcess(tmp_path_factory.mktemp("sssd-demo"), ldif=demo_ldif(SUFFIX),
                        extra_config={"schema": [str(ROOT / p) for p in SHIPPED["schema"]],
                                      "posix": SHIPPED["posix"], "access": SHIPPED["access"],
                                      "indexes": SHIPPED["indexes"]})
    srv.start()
    try:
        srv.rollcall("posix-assign")
        conf = sssd_conf(srv.ldaps_url, srv.ca_file, PASSWORDS["SSO service"],
                         ldap_group_search_base=f"ou={SITE},ou=sites,{SUFFIX}")
        with running_sssd(tmp_path_factory.mktemp("sssd-demo-ns"), conf) as pid:
            yield srv, pid
    finally:
        srv.stop()


def looked_up(srv, base, flt, attr):
    c = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
    c.search(base, flt, attributes=[attr])
    values = [e.entry_attributes_as_dict[attr][0] for e in c.entries]
    c.unbind()
    return values


def test_a_demo_student_and_teacher_are_linux_users(demo_lab):
    srv, pid = demo_lab
    for uid in (STUDENT, TEACHER):
        [number] = looked_up(srv, f"ou=people,{SUFFIX}", f"(uid={uid})", "uidNumber")
        out = inside(pid, "getent", "passwd", uid)
        assert out.returncode == 0, out.stderr
        fields = out.stdout.strip().split(":")
        assert fields[0] == uid and fields[2] == str(number) and fields[5] == f"/home/{uid}", out.stdout


def test_id_shows_the_students_site_group(demo_lab):
    srv, pid = demo_lab
    [gid] = looked_up(srv, f"cn=students,ou={SITE},ou=sites,{SUFFIX}", "(objectClass=posixGroup)", "gidNumber")
    out = inside(pid, "getent", "group", "students")
    assert out.returncode == 0 and out.stdout.split(":")[2] == str(gid), out.stdout
    assert STUDENT in out.stdout.strip().split(":")[3].split(","), out.stdout
    out = inside(pid, "id", STUDENT)
    assert out.returncode == 0 and f"{gid}(students)" in out.stdout, out.stdout


@pytest.mark.parametrize("uid, pw", [(STUDENT, PASSWORDS["student"]), (TEACHER, PASSWORDS["teacher"])])
def test_pam_signs_in_a_demo_student_and_teacher(demo_lab, uid, pw):
    _, pid = demo_lab
    out = inside(pid, PAMTESTER, "rollcall-test", uid, "authenticate", "acct_mgmt", input=pw + "\n")
    assert out.returncode == 0, (out.stdout, out.stderr)


def test_pam_refuses_a_pending_student_even_with_a_password(demo_lab):
    """A PENDING demo student exists for Linux (getent) but cannot sign in before its
    holder activates it, even with a password on the entry (set here by the root DN)."""
    srv, pid = demo_lab
    c = Connection(Server(srv.url), ROOT_DN, ROOT_PW, auto_bind=True)
    assert c.modify(f"uid={PENDING},ou=students,ou=people,{SUFFIX}",
                    {"userPassword": [(MODIFY_REPLACE, [PASSWORDS["student"]])]}), c.result
    c.unbind()
    assert inside(pid, "getent", "passwd", PENDING).returncode == 0
    out = inside(pid, PAMTESTER, "rollcall-test", PENDING, "authenticate", input=PASSWORDS["student"] + "\n")
    assert out.returncode != 0, (out.stdout, out.stderr)
