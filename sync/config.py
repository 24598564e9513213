"""The `sync:` section of config.yaml (see README "SIS sync")."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from directory.district.usernames import DEFAULT_PATTERN, MAX_LENGTH, check_pattern


class SyncConfigError(Exception):
    def __init__(self, key, message):
        super().__init__(f"sync.{key}: {message}")


DEFAULT_GRADES = ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]
GRADES = {"IT", "PR", "PK", "TK", "KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10",
          "11", "12", "13", "PS", "UG", "OTHER"}


@dataclass
class SyncConfig:
    suffix: str
    server: str
    bind_dn: str
    password: str = field(repr=False)
    ca_file: str | None = None
    start_tls: bool = False
    source: str = "district-sis"
    hr_source: str = "district-hr"     # `sync hr`: its employees' records say "<hr_source>/staff"
    username_pattern: str = DEFAULT_PATTERN
    username_max_length: int = MAX_LENGTH
    student_mail_domain: str | None = None
    staff_mail_domain: str | None = None
    # [(sites set or None for all, grades set or None for all)]
    auto_provision: list = field(default_factory=lambda: [(None, set(DEFAULT_GRADES))])
    grace_days: int = 14
    retention_days: int = 365
    max_deactivations: int = 500       # disables + purges per run
    max_deactivation_percent: float = 5.0
    report_dir: Path = Path("var/sync-reports")
    page_size: int = 1000
    window: int = 64                   # outstanding writes on the wire
    site_groups: dict = field(default_factory=lambda: {"student": "students", "staff": "staff"})
    staff_roles: tuple = ("teacher", "principal", "administrator", "aide", "counselor", "proctor",
                          "districtAdministrator", "siteAdministrator", "systemAdministrator")

    # DNs
    @property
    def students_dn(self):
        return f"ou=students,ou=people,{self.suffix}"

    @property
    def staff_dn(self):
        return f"ou=staff,ou=people,{self.suffix}"

    @property
    def people_dn(self):
        return f"ou=people,{self.suffix}"

    @property
    def sis_dn(self):
        return f"ou=sis,{self.suffix}"

    @property
    def usernames_dn(self):
        return f"ou=usernames,ou=sis,{self.suffix}"

    @property
    def runs_dn(self):
        return f"ou=runs,ou=sis,{self.suffix}"

    @property
    def sites_dn(self):
        return f"ou=sites,{self.suffix}"

    def provisioned(self, sites, grade) -> bool:
        for rule_sites, rule_grades in self.auto_provision:
            if rule_grades is not None and (grade or "").upper() not in rule_grades:
                continue
            if rule_sites is not None and not (set(sites) & rule_sites):
                continue
            return True
        return False


def _any(v):
    if v in (None, "*", ["*"]):
        return None
    if isinstance(v, (str, int)):
        v = [v]
    return {str(x).upper() for x in v}


def from_raw(raw: dict, base_dir: Path, env=None) -> SyncConfig:
    env = os.environ if env is None else env
    suffix = raw.get("suffix")
    if not suffix:
        raise SyncConfigError("suffix", "the configuration has no suffix")
    s = raw.get("sync") or {}
    if not isinstance(s, dict):
        raise SyncConfigError("", "must be a mapping")
    fmt = lambda v: str(v).replace("{suffix}", suffix)  # noqa: E731
    server = s.get("server") or next((u for u in raw.get("listeners", []) if str(u).startswith("ldap")), None)
    if not server:
        raise SyncConfigError("server", "no server URL (and no listener to default to)")
    password = None
    if s.get("password_env"):
        password = env.get(s["password_env"])
    if not password and s.get("password_file"):
        p = Path(s["password_file"])
        p = p if p.is_absolute() else base_dir / p
        try:
            password = p.read_text().strip()
        except OSError as exc:
            raise SyncConfigError("password_file", f"{p}: {exc.strerror}") from None
    if not password:
        password = env.get("ROLLCALL_SYNC_PASSWORD")
    if "password" in s:
        raise SyncConfigError("password", "never put the password in the configuration: use password_env "
                              "or password_file")
    if not password:  # an empty password would be an unauthenticated bind (RFC 4513 5.1.2)
        raise SyncConfigError("password_env", "no password: set password_env (an environment variable) or "
                              "password_file, or export ROLLCALL_SYNC_PASSWORD")
    uname = s.get("username") or {}
    rules = []
    for i, r in enumerate(s.get("auto_provision", [{"sites": "*", "grades": DEFAULT_GRADES}]) or []):
        if not isinstance(r, dict):
            raise SyncConfigError(f"auto_provision[{i}]", "must be {sites: …, grades: …}")
        grades = _any(r.get("grades", "*"))
        if grades and grades - GRADES:
            raise SyncConfigError(f"auto_provision[{i}].grades", f"unknown grade(s) {sorted(grades - GRADES)}")
        rules.append((_any(r.get("sites", "*")), grades))
    th = s.get("thresholds") or {}
    ca = s.get("ca_file")
    if ca and not Path(ca).is_absolute():
        ca = str(base_dir / ca)
    report_dir = Path(s.get("report_dir", "var/sync-reports"))
    if not report_dir.is_absolute():
        report_dir = base_dir / report_dir
    cfg = SyncConfig(
        suffix=suffix, server=fmt(server), bind_dn=fmt(s.get("bind_dn", "cn=sis-sync,ou=services,{suffix}")),
        password=password, ca_file=ca, start_tls=bool(s.get("start_tls", False)),
        source=str(s.get("source", "district-sis")), hr_source=str(s.get("hr_source", "district-hr")),
        username_pattern=str(uname.get("pattern", DEFAULT_PATTERN)),
        username_max_length=int(uname.get("max_length", MAX_LENGTH)),
        student_mail_domain=s.get("student_mail_domain"), staff_mail_domain=s.get("staff_mail_domain"),
        auto_provision=rules,
        grace_days=int(s.get("grace_days", 14)), retention_days=int(s.get("retention_days", 365)),
        max_deactivations=int(th.get("max_deactivations", 500)),
        max_deactivation_percent=float(th.get("max_deactivation_percent", 5.0)),
        report_dir=report_dir, page_size=int(s.get("page_size", 1000)), window=int(s.get("window", 64)),
    )
    if cfg.grace_days < 0 or cfg.retention_days < cfg.grace_days:
        raise SyncConfigError("retention_days", "must be >= grace_days >= 0")
    try:
        check_pattern(cfg.username_pattern)
    except ValueError as exc:
        raise SyncConfigError("username.pattern", str(exc)) from None
    return cfg


def load(path, env=None) -> SyncConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SyncConfigError("", f"{path}: {exc}") from None
    return from_raw(raw, path.resolve().parent, env)
