"""The `sync:` section of config.yaml (see README "SIS sync")."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from directory.config import ConfigError, check_sync_document
from directory.district.ids import DISTRICT_ID, compile_pattern
from directory.district.grades import DEFAULT_GRADES
from directory.district.usernames import DEFAULT_PATTERN, MAX_LENGTH


class SyncConfigError(Exception):
    def __init__(self, key, message, dotted=None):
        super().__init__(f"{dotted or 'sync.' + key}: {message}")




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
    max_changes: int = 100             # people whose birth date/name changes, or a value is cleared, per run
    max_change_percent: float = 5.0    # (applies from CHANGE_FLOOR people on)
    date_order: str = "AUTO"           # slash dates: MDY, DMY, or AUTO (only unambiguous ones)
    district_id_re: object = DISTRICT_ID    # .match(text): sync.district_id.pattern
    oneroster_id_field: str = "identifier"
    oneroster_site_code_field: str = "identifier"
    csv_columns: dict = field(default_factory=dict)   # district CSV: file column (lower) -> Rollcall column
    csv_values: dict = field(default_factory=dict)    # Rollcall column -> {file value: Rollcall value}
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


def from_raw(raw: dict, base_dir: Path, env=None, password: str | None = None) -> SyncConfig:
    """The `sync:` section, checked against its declaration in directory/config.py
    (unknown keys and wrong types are errors naming the key), then resolved. `password`
    (from the command line's -w/-y/-W) takes the place of the configured one."""
    env = os.environ if env is None else env
    try:
        v = check_sync_document(raw)
    except ConfigError as exc:
        raise SyncConfigError(None, exc.reason, dotted=exc.key) from None
    suffix = v["suffix"]
    if not suffix:
        raise SyncConfigError(None, "the configuration has no suffix", dotted="suffix")
    s = v["sync"]
    fmt = lambda v: str(v).replace("{suffix}", suffix)  # noqa: E731
    server = s["server"] or next((u for u in v["listeners"] or [] if str(u).startswith("ldap")), None)
    if not server:
        raise SyncConfigError("server", "no server URL (and no listener to default to)")
    if password is None and s["password_env"]:
        password = env.get(s["password_env"])
    if not password and s["password_file"]:
        p = Path(s["password_file"])
        p = p if p.is_absolute() else base_dir / p
        try:
            password = p.read_text().strip()
        except OSError as exc:
            raise SyncConfigError("password_file", f"{p}: {exc.strerror}") from None
    if not password:
        password = env.get("ROLLCALL_SYNC_PASSWORD")
    if not password:  # an empty password would be an unauthenticated bind (RFC 4513 5.1.2)
        raise SyncConfigError("password_env", "no password: set password_env (an environment variable) or "
                              "password_file, or export ROLLCALL_SYNC_PASSWORD")
    rules = [(_any(r.get("sites", "*")), _any(r.get("grades", "*"))) for r in s["auto_provision"]]
    th = s["thresholds"]
    ca = s["ca_file"]
    if ca and not Path(ca).is_absolute():
        ca = str(base_dir / ca)
    report_dir = Path(s["report_dir"])
    if not report_dir.is_absolute():
        report_dir = base_dir / report_dir
    return SyncConfig(
        suffix=suffix, server=fmt(server), bind_dn=fmt(s["bind_dn"]),
        password=password, ca_file=ca, start_tls=s["start_tls"],
        source=s["source"], hr_source=s["hr_source"],
        username_pattern=s["username"]["pattern"],
        username_max_length=s["username"]["max_length"],
        student_mail_domain=s["student_mail_domain"], staff_mail_domain=s["staff_mail_domain"],
        auto_provision=rules,
        grace_days=s["grace_days"], retention_days=s["retention_days"],
        max_deactivations=th["max_deactivations"],
        max_deactivation_percent=float(th["max_deactivation_percent"]),
        max_changes=th["max_changes"], max_change_percent=float(th["max_change_percent"]),
        date_order=s["date_order"],
        district_id_re=compile_pattern(s["district_id"]["pattern"]),
        oneroster_id_field=s["oneroster"]["district_id_field"],
        oneroster_site_code_field=s["oneroster"]["site_code_field"],
        csv_columns=s["district_csv"]["columns"], csv_values=s["district_csv"]["values"],
        report_dir=report_dir, page_size=s["page_size"], window=s["window"],
    )


def load(path, env=None, password: str | None = None) -> SyncConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SyncConfigError("", f"{path}: {exc}") from None
    return from_raw(raw, path.resolve().parent, env, password)
