"""config.yaml: read, check every key, report errors by key before anything listens.

Every section is declared once, in SECTIONS below: its keys, their types, limits and
defaults. `load_config` checks the whole document against it (an unknown key, at the
top level or in any section, or a value of the wrong type is a ConfigError naming the
dotted key) and keeps the checked values, defaults filled in, in `Config.sections`;
the modules that use a section (accounts, requests, the password policy, the web
console) read them from there. `sync/config.py` checks the same `sync:` declaration.
The `access:` rules are a list here; their clauses are checked by core/acl.py when
the directory opens (they need the schema), still before anything listens.
"""
import copy
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import yaml

from . import passwords
from .core.dn import DN
from .core.filterparse import MAX_FILTER_DEPTH
from .core.ppolicy import PolicyConfig, parse_sources  # its dataclass declares password_policy's keys and defaults
from .district import ids
from .district.grades import DEFAULT_GRADES, GRADES
from .district.usernames import check_pattern


class ConfigError(Exception):
    def __init__(self, key: str, reason: str, path=None):
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {reason}")
        self.key = key
        self.reason = reason


class Invalid(ValueError):
    """Raised by a key's `check`: the reason, and optionally a sub-key (`[0].grades`)."""

    def __init__(self, reason, subkey=""):
        super().__init__(reason)
        self.reason = reason
        self.subkey = subkey


# ---------------------------------------------------------------- the declaration

REQUIRED = object()


@dataclass(frozen=True)
class Key:
    kind: str                     # int | number | str | bool | strlist | list | mapping | section | forbidden
    default: object = None        # REQUIRED: must be given; None: optional (may be null)
    minimum: float | None = None  # int, number
    choices: tuple | None = None  # str (compared case-insensitively when fold)
    fold: bool = False            # str: upper-case the value before `choices`
    keys: dict | None = None      # section: its own keys
    check: Callable | None = None  # value -> value, raises Invalid(reason[, subkey])
    reason: str = ""              # forbidden: why


def Int(default, minimum=0, **kw):
    return Key("int", default, minimum, **kw)


def Num(default, minimum=0, **kw):
    return Key("number", default, minimum, **kw)


def Str(default=None, **kw):
    return Key("str", default, **kw)


def Bool(default):
    return Key("bool", default)


def Section(keys, default=..., check=None):
    """A nested mapping. default=None: an absent section stays None (e.g. `web:` off);
    otherwise an absent (or empty) section is its keys' defaults."""
    return Key("section", {} if default is ... else default, keys=keys, check=check)


def _kind_text(key: Key) -> str:
    if key.kind == "int":
        return "an integer" + (f" >= {key.minimum:g}" if key.minimum is not None else "")
    if key.kind == "number":
        return "a number" + (f" >= {key.minimum:g}" if key.minimum is not None else "")
    if key.kind == "str":
        return f"one of {', '.join(key.choices)}" if key.choices else "a string"
    return {"bool": "true or false", "boolstr": "true, false or a file path", "strlist": "a list of strings", "list": "a list",
            "mapping": "a mapping", "section": "a mapping"}.get(key.kind, key.kind)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def check_section(value, keys: dict, prefix: str, path=None) -> dict:
    """Check a mapping against its declared keys; the checked values, defaults filled in."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(prefix or "(file)", f"expected a mapping, got {type(value).__name__} {_show(value)}", path)
    for name in value:
        if name not in keys:
            known = ", ".join(sorted(k for k, v in keys.items() if v.kind != "forbidden"))
            raise ConfigError(_join(prefix, str(name)), f"unknown key (known: {known})", path)
    out = {}
    for name, key in keys.items():
        checked = check_value(value.get(name, ...), key, _join(prefix, name), path)
        if key.kind != "forbidden":
            out[name] = checked
    return out


def check_value(value, key: Key, dotted: str, path=None):
    """One key's value (... when absent) checked against its declaration."""
    if key.kind == "forbidden":
        if value is not ...:
            raise ConfigError(dotted, key.reason, path)
        return None
    if value is ... or (value is None and key.kind in ("section", "list", "strlist")):
        if key.default is REQUIRED:
            raise ConfigError(dotted, f"required key is missing ({_kind_text(key)})", path)
        if key.kind == "section" and key.default is not None:
            value = key.default
        elif value is None and key.kind in ("list", "strlist") and key.default is not None:
            value = []
        else:
            return copy.deepcopy(key.default)
    elif value is None:
        if key.default is None:
            return None  # an optional key left empty
        raise ConfigError(dotted, f"expected {_kind_text(key)}, got null", path)

    def bad():
        return ConfigError(dotted, f"expected {_kind_text(key)}, got {type(value).__name__} {_show(value)}", path)

    if key.kind in ("int", "number"):
        types = int if key.kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            raise bad()
        if key.minimum is not None and value < key.minimum:
            raise bad()
    elif key.kind == "str":
        if not isinstance(value, str):
            raise bad()
        if key.fold:
            value = value.upper()
        if key.choices and value not in key.choices:
            raise bad()
    elif key.kind == "bool":
        if not isinstance(value, bool):
            raise bad()
    elif key.kind == "boolstr":
        if not isinstance(value, (bool, str)) or value == "":
            raise bad()
    elif key.kind == "strlist":
        if not isinstance(value, list):
            raise bad()
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{dotted}[{i}]", f"expected a string, got {type(item).__name__} {_show(item)}",
                                  path)
    elif key.kind == "list":
        if not isinstance(value, list):
            raise bad()
    elif key.kind == "mapping":
        if not isinstance(value, dict):
            raise bad()
    elif key.kind == "section":
        value = check_section(value, key.keys, dotted, path)
    if key.check is not None:
        try:
            value = key.check(value)
        except Invalid as exc:
            raise ConfigError(dotted + exc.subkey, exc.reason, path) from None
        except ValueError as exc:
            raise ConfigError(dotted, str(exc), path) from None
    return value


# ---------------------------------------------------------------- custom checks

_INDEX_KINDS = {"eq", "pres", "sub"}
_SCHEMES = ("ARGON2", "SSHA", "PBKDF2-SHA512")
_LEVELS = ("debug", "info", "warning", "error")


def _indexes(value: dict) -> dict:
    out = {}
    for attr, kinds in value.items():
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds) or not set(kinds) <= _INDEX_KINDS:
            raise Invalid(f"expected a list of {sorted(_INDEX_KINDS)}", f".{attr}")
        out[attr] = set(kinds)
    return out


def _pattern(value):
    if value is not None:
        check_pattern(value)  # a PatternError (ValueError) names the problem
    return value


def _id_pattern(value):
    ids.compile_pattern(value)   # ValueError names the problem
    return value


CSV_COLUMNS = ("district_id", "first_name", "last_name", "middle_name", "birth_date", "grade", "school_code",
               "school_name", "enrollment_status", "entry_date", "leave_date", "email")


def _csv_columns(value):
    for k, v in value.items():
        if not isinstance(k, (str, int)) or v not in CSV_COLUMNS:
            raise Invalid(f"expected a Rollcall column ({', '.join(CSV_COLUMNS)}), got {_show(v)}", f".{k}")
    return {str(k).strip().lower(): v for k, v in value.items()}


def _csv_values(value):
    out = {}
    for col, m in value.items():
        if col not in CSV_COLUMNS:
            raise Invalid(f"unknown column (known: {', '.join(CSV_COLUMNS)})", f".{col}")
        if not isinstance(m, dict) or not all(isinstance(v, (str, int)) for v in m.values()):
            raise Invalid("expected a mapping of file value -> Rollcall value", f".{col}")
        out[col] = {str(k).strip(): str(v) for k, v in m.items()}
    return out


def _id_field(value):
    if value not in ("identifier", "username", "sourcedId") and not (value.startswith("userIds:") and value[8:]):
        raise Invalid("identifier, username, sourcedId or userIds:TYPE")
    return value


def _auto_provision(value: list) -> list:
    for i, rule in enumerate(value):
        if not isinstance(rule, dict):
            raise Invalid("expected a mapping {sites: …, grades: …}", f"[{i}]")
        for k in rule:
            if k not in ("sites", "grades"):
                raise Invalid("unknown key (known: grades, sites)", f"[{i}].{k}")
        for k in ("sites", "grades"):
            v = rule.get(k, "*")
            if v in (None, "*", ["*"]):
                continue
            items = v if isinstance(v, list) else [v]
            if not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in items):
                raise Invalid("expected '*', a code or a list of codes", f"[{i}].{k}")
            if k == "grades":
                unknown = {str(x).upper() for x in items} - GRADES
                if unknown:
                    raise Invalid(f"unknown grade(s) {sorted(unknown)}", f"[{i}].grades")
    return value


def _sync(values: dict) -> dict:
    if not 0 <= values["grace_days"] <= values["retention_days"]:
        raise Invalid("must be >= grace_days >= 0", ".retention_days")
    return values


def _https(value):
    u = urlparse(value)
    if u.scheme != "https":
        raise Invalid("must be an https:// URL (the session cookie is Secure)")
    try:
        u.port
    except ValueError:
        raise Invalid("bad port") from None
    return value


def _ldap_url(value):
    if value is not None and urlparse(value).scheme not in ("ldap", "ldaps"):
        raise Invalid("must be an ldap:// or ldaps:// URL")
    return value


def _metrics_url(value):
    if value is None:
        return value
    u = urlparse(value)
    try:
        port = u.port
    except ValueError:
        raise Invalid("bad port") from None
    if u.scheme != "http" or not u.hostname or port is None:
        raise Invalid("must be an http://host:port URL, e.g. http://127.0.0.1:9389 (scrapers read it in clear: "
                      "keep it on loopback or a management network)")
    return value


def _limits(values: dict) -> dict:
    if values["max_pdu_anonymous"] > values["max_pdu"]:
        raise Invalid(f"must be <= max_pdu ({values['max_pdu']})", ".max_pdu_anonymous")
    if values["max_connections_per_address"] > values["max_connections"]:
        raise Invalid(f"must be <= max_connections ({values['max_connections']})", ".max_connections_per_address")
    if values["filter_max_depth"] > MAX_FILTER_DEPTH:
        raise Invalid(f"must be <= {MAX_FILTER_DEPTH} (the limit for everyone)", ".filter_max_depth")
    return values


def _limit_value(value, subkey):
    if value is None:
        return None  # the default limit
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(f"expected a whole number >= 0 or \"unlimited\", got {_show(value)}", subkey)
    return value


def _limit_rules(value: list) -> list:
    """limits.rules: [{who, size, time, unindexed}] (core/limits.py); who's DN is
    normalised when the directory opens (it needs the schema)."""
    out = []
    for i, rule in enumerate(value):
        if not isinstance(rule, dict):
            raise Invalid(f"expected a mapping with who and size/time/unindexed, got {_show(rule)}", f"[{i}]")
        unknown = set(rule) - {"who", "size", "time", "unindexed"}
        if unknown:
            raise Invalid("unknown key (who, size, time, unindexed)", f"[{i}].{sorted(unknown)[0]}")
        who = rule.get("who")
        if not isinstance(who, str) or not who.strip():
            raise Invalid("required: a DN, dn.subtree=<DN>, group=<DN>, users, anonymous or *", f"[{i}].who")
        if who.strip() not in ("*", "users", "anonymous"):
            kind, sep, dn = who.partition("=")
            if not (sep and kind.strip().lower() in ("dn", "dn.exact", "dn.subtree", "group")):
                dn = who
            try:
                if not DN.parse(dn.replace("{suffix}", "dc=x")):
                    raise ValueError("empty")
            except Exception as exc:
                raise Invalid(f"not a valid DN ({exc})", f"[{i}].who") from None
        out.append({"who": who, **{k: _limit_value(rule.get(k), f"[{i}].{k}") for k in ("size", "time", "unindexed")}})
    return out


def _argon2(values: dict) -> dict:
    """passwords.argon2: what passwords.Hasher accepts (and verify() reads back)."""
    t, m, p = values["time_cost"], values["memory_cost"], values["parallelism"]
    if t is not None and t > passwords.MAX_ARGON2_TIME_COST:
        raise Invalid(f"must be <= {passwords.MAX_ARGON2_TIME_COST}", ".time_cost")
    if p is not None and p > passwords.MAX_ARGON2_PARALLELISM:
        raise Invalid(f"must be <= {passwords.MAX_ARGON2_PARALLELISM}", ".parallelism")
    if m is not None and not 8 * (p or 1) <= m <= passwords.MAX_ARGON2_MEMORY_KIB:
        raise Invalid(f"must be between 8 x parallelism ({8 * (p or 1)}) and {passwords.MAX_ARGON2_MEMORY_KIB} "
                      "(KiB)", ".memory_cost")
    return values


def _cache_seconds(value):
    if value > 86400:
        raise Invalid("must be <= 86400 (a day; the cache is meant for minutes)")
    return value


def _posix(values: dict) -> dict:
    for low, high in (("uid_min", "uid_max"), ("gid_min", "gid_max")):
        if values[low] > values[high]:
            raise Invalid(f"must be <= {high} ({values[high]})", f".{low}")
    if "{uid}" not in values["home"]:
        raise Invalid("must contain {uid} (each account its own home)", ".home")
    return values


def _sources(value: list) -> list:
    for i, item in enumerate(value):
        try:
            parse_sources([item])
        except ValueError as exc:
            raise Invalid(str(exc), f"[{i}]") from None
    return value


def _conninfo(value):
    """A libpq connection string (key=value pairs or a postgresql:// URI) without a
    password: config.yaml is read by many and often kept in version control."""
    text = str(value)
    if re.search(r"(^|\s)password\s*=", text) or re.search(r"[?&]password=", text) \
            or re.match(r"postgres(ql)?://[^/@]*:[^/@]*@", text):
        raise Invalid("holds a password; config.yaml must not: set PGPASSWORD, use ~/.pgpass, "
                      "or name a file in store.password_file")
    return value


def _positive(value):
    if value <= 0:
        raise Invalid("must be a number of minutes > 0")
    return value


# Every key config.yaml may hold. (sync: is read by `rollcall sync`, a client of the
# server, and by the accounts overlay for the username rules and the mail domain.)
SECTIONS = {
    "suffix": Str(REQUIRED),
    "listeners": Key("list", REQUIRED),            # URLs: checked in parse_config
    "root": Section({"dn": Str(REQUIRED), "password": Str(REQUIRED)}),
    "store": Section({
        "backend": Str("sqlite", choices=("sqlite", "postgresql")),
        "path": Str(),                    # sqlite: the database file (required there)
        "cache_entries": Int(200000),
        # postgresql: a libpq connection string, e.g. "host=db1,db2 dbname=rollcall user=rollcall
        # target_session_attrs=read-write"; the password never here (PGPASSWORD, ~/.pgpass or password_file)
        "conninfo": Str(check=_conninfo),
        "password_file": Str(),
        "pool_size": Int(10, minimum=2),  # connections per process (one writer, the rest readers)
        "cache_ttl": Num(300, minimum=1),  # seconds a cached entry may live (invalidation is exact; a safety net)
    }),
    "schema": Key("strlist", REQUIRED),            # files: checked in parse_config
    "tls": Section({"cert": Str(), "key": Str(), "require_tls_for_bind": Bool(False)}),
    "limits": Section({
        # one add/modify request (the root DN is exempt): over a cap -> adminLimitExceeded
        "request_attributes": Int(1000, minimum=1), "request_values_per_attribute": Int(10000, minimum=1),
        "request_values": Int(20000, minimum=1), "request_changes": Int(1000, minimum=1),
        "size": Int(500), "time": Int(60), "unindexed": Int(5000), "sort": Int(100000),
        # largest request once bound / before (slapd's sockbuf_max_incoming_auth / _incoming)
        "max_pdu": Int(10 * 1024 * 1024, minimum=1024), "max_pdu_anonymous": Int(262143, minimum=1024),
        "idle_timeout": Int(900),          # seconds without a request (0: never closed)
        "write_timeout": Int(60),          # seconds a client may leave responses unread (0: never closed)
        "max_connections": Int(1024, minimum=1),
        "max_connections_per_address": Int(256, minimum=1),
        "max_binds_per_address": Int(16, minimum=1),   # binds being verified at once per client address
        "filter_max_terms": Int(1000, minimum=1),      # filter elements in a search (root DN exempt)
        "filter_max_depth": Int(32, minimum=1),        # filter nesting (root DN exempt; all: 64)
        # size/time/unindexed per identity, first match wins (slapd's `limits`; core/limits.py)
        "rules": Key("list", [], check=_limit_rules),
    }, check=_limits),
    "indexes": Key("mapping", {}, check=_indexes),
    # POSIX accounts and site groups for Linux labs (core/posix.py; needs schema/optional/rfc2307bis.schema)
    "posix": Section({
        "enabled": Bool(False),
        "uid_min": Int(10000, minimum=1), "uid_max": Int(1999999, minimum=1),  # accounts' uidNumber
        "gid_min": Int(10000, minimum=1), "gid_max": Int(1999999, minimum=1),  # site groups' gidNumber
        "default_gid": Int(100),          # accounts' primary group (Debian's `users`)
        "home": Str("/home/{uid}"),
        "shell": Str("/bin/bash"),
    }, check=_posix),
    "passwords": Section({
        "scheme": Str("ARGON2", choices=_SCHEMES, fold=True),
        # absent: passwords.Hasher's own defaults (t=2, m=65536, p=1; why: its docstring)
        "argon2": Section({"time_cost": Int(None, 1), "memory_cost": Int(None, 1), "parallelism": Int(None, 1)},
                          check=_argon2),
        "rehash_on_bind": Bool(True),
        # the verified-password cache (passwords.VerifiedCache): seconds a password a slow
        # hash accepted is checked by HMAC instead (0: off), and accounts kept at most
        "verified_cache_seconds": Num(300, check=_cache_seconds),
        "verified_cache_entries": Int(100000, minimum=0),
        "hash_threads": Int(4, minimum=1),
        "change_threads": Int(2, minimum=1),
    }),
    "server": Section({
        "workers": Int(1, minimum=1),
        # threads answering reads when the store is across the network (PostgreSQL):
        # a query never waits on the reactor thread; an embedded store reads inline
        "read_threads": Int(8, minimum=1),
    }),
    "log": Section({
        "level": Str("info", choices=_LEVELS),
        # one line per operation result: false, true / "stdout", or a file (reopened on SIGHUP)
        "access": Key("boolstr", False),
        "access_format": Str("kv", choices=("kv", "json")),
        # a search slower than this (ms) is logged at warning, access log on or off; 0: never
        "slow_ms": Num(1000),
    }),
    # Prometheus text and /healthz, /readyz for load balancers: an http:// address on loopback
    # (with server.workers > 1, worker N listens on port + N)
    "metrics": Section({"listen": Str(None, check=lambda v: _metrics_url(v)),
                        # the same figures as cn=Monitor over LDAP (a base search, root DN only)
                        "monitor": Bool(False)}),
    "password_policy": Section({
        **{f.name: Int(f.default) for f in fields(PolicyConfig)
           if isinstance(f.default, int) and not isinstance(f.default, bool)},
        # refuse common passwords, repeats, runs and the account's own names (core/ppolicy.py)
        "check_common": Bool(PolicyConfig.check_common),
        "trusted_sources": Key("strlist", [], check=_sources),  # SSO servers, front ends: addresses, CIDRs
    }),
    "access": Key("list", None),                    # rules: core/acl.py parse_rules, when the directory opens
    "accounts": Section({
        # None: the sync's (sync.username, sync.student_mail_domain), else the built-in default
        "username_pattern": Str(None, check=_pattern),
        "username_max_length": Int(None, minimum=1),
        "student_mail_domain": Str(),
        "activation_code_days": Num(30),
        "activation_max_failures": Int(5),
        "activation_source_limit": Int(20),
        "activation_source_window": Num(3600),
    }),
    "requests": Section({
        "account_expiry_days": Int(365),
        "anonymous_limit": Int(5),
        "anonymous_window": Num(3600),
        "pending_days": Int(90),
        "subadmin_roles": Key("strlist", ["student-email-admins", "photo-designees"]),
        "district_admins": Str("cn=district-admins,ou=groups,{suffix}"),
    }),
    "sync": Section({
        "server": Str(),                            # default: the first ldap:// listener
        "bind_dn": Str("cn=sis-sync,ou=services,{suffix}"),
        "password_env": Str(),
        "password_file": Str(),
        "password": Key("forbidden", reason="never put the password in the configuration: "
                        "use password_env or password_file"),
        "ca_file": Str(),
        "start_tls": Bool(False),
        "source": Str("district-sis"),
        "hr_source": Str("district-hr"),
        "username": Section({"pattern": Str("{first:1}{last}", check=_pattern),
                             "max_length": Int(20, minimum=1)}),
        "student_mail_domain": Str(),
        "staff_mail_domain": Str(),
        "auto_provision": Key("list", [{"sites": "*", "grades": DEFAULT_GRADES}], check=_auto_provision),
        "grace_days": Int(14),
        "retention_days": Int(365),
        # per run: people withdrawn/disabled/purged; people whose birth date or name would
        # change, or whose value of any one attribute (grade, mail …) would be cleared
        # (the percentage from 10 people on). Above either: exit 3, nothing applied
        "thresholds": Section({"max_deactivations": Int(500), "max_deactivation_percent": Num(5.0),
                               "max_changes": Int(100), "max_change_percent": Num(5.0)}),
        # slash dates in the SIS files: MDY (03/05/2012 = March 5), DMY (= 3 May), or AUTO:
        # only dates that read one way (13/05/2012) — an ambiguous one rejects its row
        "date_order": Str("AUTO", choices=("AUTO", "MDY", "DMY"), fold=True),
        # the district ID (employeeNumber): the regular expression a whole ID matches
        # (default: 000123s045); the server checks employeeNumber with it too
        "district_id": Section({"pattern": Str(ids.DEFAULT_PATTERN, check=_id_pattern)}),
        # OneRoster: which users.csv field carries the district ID (identifier, username,
        # sourcedId, or userIds:TYPE for the {TYPE:value} entry of userIds), and which
        # orgs.csv field the site code (an org without it: its sourcedId, or a short form)
        # the district CSV as the SIS exports it: its column names -> Rollcall's (district_id,
        # first_name, …) and, per Rollcall column, value maps ("0" -> KG); see README
        "district_csv": Section({"columns": Key("mapping", {}, check=_csv_columns),
                                 "values": Key("mapping", {}, check=_csv_values)}),
        "oneroster": Section({"district_id_field": Str("identifier", check=_id_field),
                              "site_code_field": Str("identifier")}),
        "report_dir": Str("var/sync-reports"),
        "page_size": Int(1000, minimum=1),
        "window": Int(64, minimum=1),
    }, check=_sync),
    "web": Section({
        "listen": Str(REQUIRED, check=_https),
        "session_idle_minutes": Num(15, check=_positive),
        "signin_max_failures": Int(5),
        "signin_window": Int(300, minimum=1),
        "max_upload_mb": Int(50, minimum=1),
        # a zip of photos (console and `rollcall photos upload`): a school's batch is ~2,000
        # JPEGs of at most 30 KB; more members, or more bytes once expanded, is refused
        "photo_zip_max_files": Int(5000, minimum=1),
        "photo_zip_max_mb": Int(200, minimum=1),
        "threads": Int(8, minimum=1),
        "ldap_url": Str(check=_ldap_url),
    }, default=None),
}


def sections() -> dict:
    return SECTIONS


def check_document(doc, path=None) -> dict:
    """The whole document checked against SECTIONS: {section: checked value}."""
    return check_section(doc, sections(), "", path)


def check_sync_document(doc, path=None) -> dict:
    """The sync client's view of config.yaml (or of a file with only `suffix:` and
    `sync:`): no unknown top-level key, and the keys it reads checked."""
    spec = sections()
    if not isinstance(doc, dict):
        raise ConfigError("(file)", "top level must be a mapping", path)
    for name in doc:
        if name not in spec:
            raise ConfigError(str(name), f"unknown key (known: {', '.join(sorted(spec))})", path)
    return {"suffix": check_value(doc.get("suffix", ...), spec["suffix"], "suffix", path),
            "listeners": check_value(doc.get("listeners", ...), Key("list", None), "listeners", path),
            "sync": check_value(doc.get("sync", ...), spec["sync"], "sync", path)}


# ---------------------------------------------------------------- the result


@dataclass
class Listener:
    url: str
    scheme: str  # 'ldap' | 'ldaps'
    host: str
    port: int


@dataclass
class WebConfig:
    listen: str                 # https://host:port
    idle_minutes: float
    signin_max_failures: int    # per browser address / account name within signin_window
    signin_window: int
    max_upload_mb: int
    threads: int                # page handlers' thread pool (their LDAP calls block)
    ldap_url: str | None        # how the console reaches this server (default: its first listener)
    photo_zip_max_files: int = 5000   # members of an uploaded zip of photos
    photo_zip_max_mb: int = 200       # its size once expanded


@dataclass
class Config:
    path: Path
    base_dir: Path
    suffix: str
    listeners: list
    root_dn: str
    root_password: bytes
    store_backend: str
    store_path: Path | None
    cache_entries: int
    schema_files: list
    tls_cert: Path | None
    tls_key: Path | None
    require_tls_for_bind: bool
    size_limit: int
    time_limit: int
    unindexed_limit: int
    sort_limit: int  # entries a server-side sorted search may collect (RFC 2891)
    max_pdu: int
    idle_timeout: int
    indexes: dict  # canonical-ish attribute name -> set of kinds
    password_scheme: str
    argon2: dict
    rehash_on_bind: bool
    hash_threads: int
    change_threads: int  # password changes' checks and hashes, apart from bind verification
    workers: int
    log_level: str
    read_threads: int = 8  # server.read_threads: reads of a store across the network
    # limits.* that bound what one client may hold (see config.yaml's comments)
    max_pdu_anonymous: int = 262143
    write_timeout: int = 60
    max_connections: int = 1024
    max_connections_per_address: int = 256
    max_binds_per_address: int = 16
    filter_max_terms: int = 1000
    filter_max_depth: int = 32
    limit_rules: list = field(default_factory=list)  # limits.rules, checked
    store_conninfo: str | None = None   # store.backend postgresql: libpq connection string
    store_password_file: Path | None = None
    store_pool_size: int = 10
    store_cache_ttl: float = 300.0
    web: "WebConfig | None" = None  # the `web:` section (web console), None when absent
    raw: dict = field(default_factory=dict)  # the whole document as written
    # every section checked against SECTIONS, defaults filled in (accounts, requests, sync, …)
    sections: dict = field(default_factory=dict)

    def section(self, name: str) -> dict:
        """A checked section (`accounts`, `requests`, `password_policy`, `sync`, …)."""
        if name not in self.sections:  # a Config built by hand: check its raw section now
            value = check_value(self.raw.get(name, ...), sections()[name], name, self.path)
            self.sections[name] = _accounts(value, self.raw, self.suffix) if name == "accounts" else value
        return self.sections[name]


def _accounts(accounts: dict, doc: dict, suffix: str) -> dict:
    """The accounts overlay makes the same usernames and addresses as the sync: the
    sync's settings first (as written), then accounts:, then the defaults."""
    sync = doc.get("sync") or {}
    written = sync.get("username") or {}
    accounts["username_pattern"] = written.get("pattern") or accounts["username_pattern"] or "{first:1}{last}"
    accounts["username_max_length"] = written.get("max_length") or accounts["username_max_length"] or 20
    dcs = [val for t, val in (p.split("=", 1) for p in suffix.split(",")) if t.strip().lower() == "dc"]
    accounts["student_mail_domain"] = (sync.get("student_mail_domain") or accounts["student_mail_domain"]
                                       or "students." + ".".join(dcs))
    return accounts


def load_config(path) -> Config:
    path = Path(path).resolve()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("(file)", "no such file", path) from None
    except yaml.YAMLError as exc:
        raise ConfigError("(file)", f"not valid YAML: {exc}", path) from None
    if not isinstance(doc, dict):
        raise ConfigError("(file)", "top level must be a mapping", path)
    return parse_config(doc, path)


def parse_config(doc: dict, path: Path) -> Config:
    base = path.parent
    v = check_document(doc, path)  # every key and type; the checks below need more than one key

    def rel(p):
        p = Path(p)
        return p if p.is_absolute() else base / p

    suffix = v["suffix"]
    try:
        if not DN.parse(suffix):
            raise ValueError("empty")
    except Exception as exc:
        raise ConfigError("suffix", f"not a valid DN ({exc})", path) from None

    listeners = []
    for i, url in enumerate(v["listeners"]):
        key = f"listeners[{i}]"
        if not isinstance(url, str):
            raise ConfigError(key, "expected a URL string like ldap://127.0.0.1:3389", path)
        u = urlparse(url)
        if u.scheme not in ("ldap", "ldaps"):
            raise ConfigError(key, f"scheme must be ldap or ldaps, not {u.scheme!r}", path)
        try:
            port = u.port or (389 if u.scheme == "ldap" else 636)
        except ValueError:
            raise ConfigError(key, "bad port", path) from None
        listeners.append(Listener(url, u.scheme, u.hostname or "0.0.0.0", port))
    if not listeners:
        raise ConfigError("listeners", "at least one listener is required", path)

    root_dn = v["root"]["dn"]
    try:
        DN.parse(root_dn)
    except Exception as exc:
        raise ConfigError("root.dn", f"not a valid DN ({exc})", path) from None
    root_pw = v["root"]["password"]
    if not passwords.is_hashed(root_pw.encode()):
        raise ConfigError("root.password", "must be a password hash ({ARGON2}…); run `rollcall hash-password`", path)

    schema_files = [rel(p) for p in v["schema"]]
    for i, p in enumerate(schema_files):
        if not p.is_file():
            raise ConfigError(f"schema[{i}]", f"no such file {p.name}", path)

    tls = v["tls"]
    if any(lst.scheme == "ldaps" for lst in listeners) and not (tls["cert"] and tls["key"]):
        raise ConfigError("tls", "an ldaps:// listener needs tls.cert and tls.key", path)

    for name, dn in (("requests.district_admins", v["requests"]["district_admins"]),
                     ("sync.bind_dn", v["sync"]["bind_dn"])):
        try:
            DN.parse(dn.replace("{suffix}", suffix))
        except Exception as exc:
            raise ConfigError(name, f"not a valid DN ({exc})", path) from None

    _accounts(v["accounts"], doc, suffix)
    ids.configure(v["sync"]["district_id"]["pattern"])   # the server checks employeeNumber with it

    web = None
    if v["web"] is not None:
        w = v["web"]
        if not (tls["cert"] and tls["key"]):
            raise ConfigError("web.listen", "https needs tls.cert and tls.key", path)
        web = WebConfig(w["listen"], w["session_idle_minutes"], w["signin_max_failures"], w["signin_window"],
                        w["max_upload_mb"], w["threads"], w["ldap_url"], w["photo_zip_max_files"],
                        w["photo_zip_max_mb"])

    store = v["store"]
    if store["backend"] == "sqlite" and not store["path"]:
        raise ConfigError("store.path", "required key is missing (a string): the SQLite database file", path)
    if store["backend"] == "postgresql" and not store["conninfo"]:
        raise ConfigError("store.conninfo", "store.backend postgresql needs a libpq connection string "
                          "(e.g. \"host=db1,db2 dbname=rollcall user=rollcall target_session_attrs=read-write\")", path)

    limits, pw = v["limits"], v["passwords"]
    return Config(
        path=path,
        base_dir=base,
        suffix=suffix,
        listeners=listeners,
        root_dn=root_dn,
        root_password=root_pw.encode(),
        store_backend=store["backend"],
        store_path=rel(store["path"]) if store["path"] else None,
        cache_entries=store["cache_entries"],
        store_conninfo=store["conninfo"],
        store_password_file=rel(store["password_file"]) if store["password_file"] else None,
        store_pool_size=store["pool_size"],
        store_cache_ttl=store["cache_ttl"],
        schema_files=schema_files,
        tls_cert=rel(tls["cert"]) if tls["cert"] else None,
        tls_key=rel(tls["key"]) if tls["key"] else None,
        require_tls_for_bind=tls["require_tls_for_bind"],
        size_limit=limits["size"],
        time_limit=limits["time"],
        unindexed_limit=limits["unindexed"],
        sort_limit=limits["sort"],
        max_pdu=limits["max_pdu"],
        idle_timeout=limits["idle_timeout"],
        max_pdu_anonymous=limits["max_pdu_anonymous"],
        write_timeout=limits["write_timeout"],
        max_connections=limits["max_connections"],
        max_connections_per_address=limits["max_connections_per_address"],
        max_binds_per_address=limits["max_binds_per_address"],
        filter_max_terms=limits["filter_max_terms"],
        filter_max_depth=limits["filter_max_depth"],
        limit_rules=limits["rules"],
        indexes=v["indexes"],
        password_scheme=pw["scheme"],
        argon2={k: n for k, n in pw["argon2"].items() if n is not None},
        rehash_on_bind=pw["rehash_on_bind"],
        hash_threads=pw["hash_threads"],
        change_threads=pw["change_threads"],
        workers=v["server"]["workers"],
        read_threads=v["server"]["read_threads"],
        log_level=v["log"]["level"],
        web=web,
        raw=doc,
        sections=v,
    )
