"""SSSD + pam_sss against a real Rollcall server with `posix:` on (issue 20, item 4).
sssd runs in a private mount namespace (unshare --mount) with its own /etc/sssd,
/etc/nsswitch.conf, /etc/pam.d, /var/lib/sss, /run and /var/log/sssd bind-mounted from
a temporary directory, so the machine's own files are untouched; the checks run in
that namespace with nsenter. The configuration is contrib/clients/sssd.conf."""
import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, stop_process
from tests.protocol.district import SCHEMA_FILES, bind, make_server, password, site, staff, student

SSSD = shutil.which("sssd") or "/usr/sbin/sssd"
PAMTESTER = shutil.which("pamtester")
NSS_SSS = any(Path(d, "libnss_sss.so.2").exists() for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                                            "/lib64", "/usr/lib64", "/lib/aarch64-linux-gnu"))
POSIX = {"enabled": True, "uid_min": 20000, "uid_max": 29999, "gid_min": 30000, "gid_max": 30999,
         "default_gid": 100, "home": "/home/{uid}", "shell": "/bin/bash"}
SCHEMA = [str(ROOT / "schema" / ("optional/rfc2307bis.schema" if n == "nis.schema" else n)) for n in SCHEMA_FILES]
LAB = f"cn=lab-users,{site('1111')}"
PAM_SERVICE = "auth required pam_sss.so\naccount required pam_sss.so\npassword required pam_sss.so\n"
# where the namespace gets its own copies (the machine's stay as they are)
MOUNTS = {"etc-sssd": "/etc/sssd", "nsswitch.conf": "/etc/nsswitch.conf", "pam.d": "/etc/pam.d",
          "lib-sss": "/var/lib/sss", "run": "/run", "log-sssd": "/var/log/sssd"}


def sssd_conf(uri: str, cacert: Path, service_password: str, **settings) -> str:
    """contrib/clients/sssd.conf with this server's address, certificate and the service
    account's password (and any other of its settings replaced)."""
    text = (ROOT / "contrib" / "clients" / "sssd.conf").read_text()
    for key, value in (("ldap_uri", uri), ("ldap_tls_cacert", str(cacert)),
                       ("ldap_default_authtok", service_password), *settings.items()):
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    return text


def prepare(tmp: Path, conf: str):
    (tmp / "etc-sssd").mkdir(mode=0o700)
    (tmp / "etc-sssd" / "sssd.conf").write_text(conf)
    os.chmod(tmp / "etc-sssd" / "sssd.conf", 0o600)
    (tmp / "nsswitch.conf").write_text("passwd: files sss\ngroup: files sss\nshadow: files\n")
    shutil.copytree("/etc/pam.d", tmp / "pam.d", symlinks=True)
    (tmp / "pam.d" / "rollcall-test").write_text(PAM_SERVICE)
    for d in ("lib-sss/db", "lib-sss/pipes/private", "lib-sss/mc", "lib-sss/pubconf", "lib-sss/gpo_cache",
              "lib-sss/deskprofile", "lib-sss/keytabs", "run", "log-sssd"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    os.chmod(tmp / "lib-sss/pipes/private", 0o700)


def why_not():
    if os.geteuid() != 0:
        return "SSSD test needs root (mount namespaces, sssd); run scripts/test as root"
    if not Path(SSSD).exists() or not NSS_SSS or not PAMTESTER:
        return "sssd, libnss-sss or pamtester missing (scripts/test installs sssd-ldap, libpam-sss, pamtester)"
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        return "cannot create a mount namespace here (unshare --mount failed)"
    return None


@contextlib.contextmanager
def running_sssd(tmp: Path, conf: str):
    """sssd in a private mount namespace with this sssd.conf: yields its pid (for nsenter)."""
    prepare(tmp, conf)
    binds = " && ".join(f"mount --bind {tmp / src} {dst}" for src, dst in MOUNTS.items())
    script = f"mount --make-rprivate / && {binds} && exec {SSSD} -i --logger=stderr -d 2"
    proc = None
    try:
        with open(tmp / "sssd.log", "wb") as log:
            proc = subprocess.Popen(["unshare", "--mount", "sh", "-c", script], stdout=log,
                                    stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not (tmp / "lib-sss/pipes/nss").exists() or not (tmp / "lib-sss/pipes/pam").exists():
            if proc.poll() is not None or time.time() > deadline:
                pytest.skip(f"sssd did not start here: {(tmp / 'sssd.log').read_text()[-1500:]}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        if proc is not None:
            stop_process(proc)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = why_not()
    if reason:
        pytest.skip(reason)
    srv = make_server(tmp_path_factory.mktemp("sssd-srv"), extra={"schema": SCHEMA, "posix": POSIX})
    tmp = tmp_path_factory.mktemp("sssd-ns")
    try:
        srv.rollcall("posix-assign")
        # a Linux-lab site group with a student and a teacher (the server gives it a gidNumber)
        admin = bind(srv, "distadmin")
        admin.add(LAB, attributes={"objectClass": ["groupOfNames"], "cn": "lab-users",
                                   "member": [student("s1"), staff("teach1")]})
        assert admin.result["result"] == 0, admin.result
        with running_sssd(tmp, sssd_conf(srv.ldaps_url, srv.ca_file, password("sso-portal"))) as pid:
            yield srv, pid, tmp
    finally:
        srv.stop()


def inside(pid, *cmd, input=None):
    """Run cmd in sssd's mount namespace (its nsswitch.conf, pam.d and sockets)."""
    return subprocess.run(["nsenter", "-t", str(pid), "-m", *cmd], capture_output=True, text=True,
                          input=input, timeout=60)


def numbers(srv, dn):
    root = bind(srv, "root")
    assert root.search(dn, "(objectClass=*)", "BASE", attributes=["uidNumber", "gidNumber"])
    return {k: v[0] for k, v in root.entries[0].entry_attributes_as_dict.items() if v}


def test_getent_passwd_shows_a_student_with_the_servers_numbers(lab):
    srv, pid, tmp = lab
    nums = numbers(srv, student("s1"))
    out = inside(pid, "getent", "passwd", "s1")
    assert out.returncode == 0, (out.stderr, (tmp / "sssd.log").read_text()[-3000:])
    fields = out.stdout.strip().split(":")
    assert fields[0] == "s1" and fields[2] == str(nums["uidNumber"]) and fields[3] == "100", out.stdout
    assert fields[5] == "/home/s1" and fields[6] == "/bin/bash", out.stdout
    assert inside(pid, "getent", "passwd", "teach1").returncode == 0


def test_getent_group_shows_the_site_group_and_its_members(lab):
    srv, pid, tmp = lab
    gid = numbers(srv, LAB)["gidNumber"]
    out = inside(pid, "getent", "group", "lab-users")
    assert out.returncode == 0, (out.stderr, (tmp / "sssd.log").read_text()[-3000:])
    name, _, number, members = out.stdout.strip().split(":")
    assert name == "lab-users" and number == str(gid), out.stdout
    assert set(members.split(",")) == {"s1", "teach1"}, out.stdout


def test_id_shows_the_students_site_group(lab):
    srv, pid, _ = lab
    gid = numbers(srv, LAB)["gidNumber"]
    out = inside(pid, "id", "s1")
    assert out.returncode == 0, out.stderr
    assert f"{gid}(lab-users)" in out.stdout, out.stdout


@pytest.mark.parametrize("uid", ["s1", "teach1"])
def test_pam_authenticates_a_student_and_a_teacher(lab, uid):
    _, pid, tmp = lab
    out = inside(pid, PAMTESTER, "-v", "rollcall-test", uid, "authenticate", "acct_mgmt", input=password(uid) + "\n")
    assert out.returncode == 0, (out.stdout, out.stderr, (tmp / "sssd.log").read_text()[-3000:])
    assert "successfully authenticated" in out.stderr + out.stdout


@pytest.mark.parametrize("uid, pw", [("s2", "Wrong-pw-2025!"), ("sD", password("sD"))])
def test_pam_refuses_a_wrong_password_and_a_disabled_account(lab, uid, pw):
    _, pid, _ = lab
    out = inside(pid, PAMTESTER, "rollcall-test", uid, "authenticate", input=pw + "\n")
    assert out.returncode != 0, (out.stdout, out.stderr)


def test_pam_changes_a_students_password(lab):
    """passwd through pam_sss: an LDAP password modify as the student; then the new one signs in."""
    srv, pid, tmp = lab
    old, new = password("quality1"), "Lab-Chang3d-Pw-2025!"
    # as the student, like passwd (pam_sss refuses a reset by root)
    as_student = ["setpriv", f"--reuid={numbers(srv, student('quality1'))['uidNumber']}", "--regid=100",
                  "--clear-groups"]
    out = inside(pid, *as_student, PAMTESTER, "-v", "rollcall-test", "quality1", "chauthtok",
                 input=f"{old}\n{new}\n{new}\n")
    assert out.returncode == 0, (out.stdout, out.stderr, (tmp / "sssd.log").read_text()[-3000:])
    out = inside(pid, PAMTESTER, "rollcall-test", "quality1", "authenticate", input=new + "\n")
    assert out.returncode == 0, (out.stdout, out.stderr)
    out = inside(pid, PAMTESTER, "rollcall-test", "quality1", "authenticate", input=old + "\n")
    assert out.returncode != 0, (out.stdout, out.stderr)
