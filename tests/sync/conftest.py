"""A real server with the test district (tests/protocol/district.py) plus ou=sis, and a
helper that runs `rollcall sync …` in-process against it."""
import argparse
import io

import pytest
import yaml
from ldap3 import Connection, Server

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, ServerProcess
from tests.protocol.district import DEFAULT_POLICY, ROOT, SCHEMA_FILES, access_rules, district_ldif, password

SIS = f"ou=sis,{SUFFIX}"
STUDENTS = f"ou=students,ou=people,{SUFFIX}"
SYNC_PW = password("sis-sync")

HEADER = "district_id,first_name,last_name,middle_name,birth_date,grade,school_code,enrollment_status,entry_date,leave_date,email\n"


def make_sync_server(workdir):
    extra = {
        "schema": [str(ROOT / "schema" / n) for n in SCHEMA_FILES],
        "access": access_rules(),
        "password_policy": DEFAULT_POLICY,
        "indexes": {"memberOf": ["eq"], "rollcallSisSourceId": ["eq"], "rollcallAccountStatus": ["eq"],
                    "rollcallCostCenter": ["eq"]},
    }
    ldif = district_ldif() + f"\ndn: {SIS}\nobjectClass: organizationalUnit\nou: sis\n"
    return ServerProcess(workdir, extra_config=extra, ldif=ldif).start()


class SyncRunner:
    def __init__(self, srv, workdir, **sync_overrides):
        self.srv = srv
        self.workdir = workdir
        self.sync_cfg = {
            "server": srv.url, "bind_dn": "cn=sis-sync,ou=services,{suffix}",
            "password_file": str(workdir / "sync.secret"),
            "source": "district-sis",
            "auto_provision": [{"sites": "*", "grades": "*"}],
            "grace_days": 14, "retention_days": 100,
            "thresholds": {"max_deactivations": 1000, "max_deactivation_percent": 50, "max_change_percent": 50},
            "report_dir": str(workdir / "reports"),
            "student_mail_domain": "students.district.example",
        }
        self.sync_cfg.update(sync_overrides)
        (workdir / "sync.secret").write_text(SYNC_PW + "\n")
        self.write_config()

    def write_config(self):
        self.config = self.workdir / "sync-config.yaml"
        self.config.write_text(yaml.safe_dump({"suffix": SUFFIX, "sync": self.sync_cfg}))

    def __call__(self, kind, path, *flags, today="2025-09-01"):
        from sync.cli import run

        args = argparse.Namespace(sync_kind=kind, input=str(path), config=str(self.config),
                                  dry_run="--dry-run" in flags, force="--force" in flags, source=None,
                                  full="--full" in flags, today=today, every=None, progress=False, quiet=False)
        out = io.StringIO()
        code = run(args, out=out)
        self.last_output = out.getvalue()
        return code

    def csv(self, name, rows, header=HEADER):
        p = self.workdir / name
        p.write_text(header + "".join(r if r.endswith("\n") else r + "\n" for r in rows), encoding="utf-8")
        return p

    def admin(self):
        return Connection(Server(self.srv.url), ROOT_DN, ROOT_PW, auto_bind=True)

    def accounts(self):
        c = self.admin()
        c.search(STUDENTS, "(employeeNumber=*)", attributes=["*"])
        out = {e.entry_attributes_as_dict["employeeNumber"][0]: e for e in c.entries}
        c.unbind()
        return out

    def records(self):
        c = self.admin()
        c.search(SIS, "(objectClass=rollcallSisRecord)", attributes=["*"])
        out = {e.entry_attributes_as_dict["rollcallSisSourceId"][0]: e.entry_attributes_as_dict for e in c.entries}
        c.unbind()
        return out

    def members(self, code, cn="students"):
        c = self.admin()
        c.search(f"cn={cn},ou={code},ou=sites,{SUFFIX}", "(objectClass=*)", search_scope="BASE",
                 attributes=["member"])
        out = {m.lower() for m in c.entries[0].entry_attributes_as_dict.get("member", [])} if c.entries else None
        c.unbind()
        return out

    def report(self):
        import json

        files = sorted((self.workdir / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
        return json.loads(files[-1].read_text())


@pytest.fixture
def srv(tmp_path):
    s = make_sync_server(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def sync(srv, tmp_path):
    return SyncRunner(srv, tmp_path)
