"""config.yaml is checked key by key when it is loaded: an unknown key or a wrong type,
in any section, is a ConfigError naming the dotted key; `rollcall serve` refuses such a
file with one line on stderr before it listens."""
import copy
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from directory.config import ConfigError, load_config
from sync.config import SyncConfigError
from sync.config import load as load_sync
from tests.conftest import ROOT, free_port

REAL = yaml.safe_load((ROOT / "config.yaml").read_text())


def document(**sections):
    """The repository's config.yaml (paths made absolute), with sections replaced."""
    doc = copy.deepcopy(REAL)
    doc["schema"] = [str(ROOT / p) for p in doc["schema"]]
    for name, value in sections.items():
        doc[name] = value
    return doc


def write(tmp_path, doc, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def merged(section, **keys):
    """config.yaml's section (or an empty one) with these keys added or replaced."""
    value = copy.deepcopy(REAL.get(section) or {})
    value.update(keys)
    return value


def error_of(tmp_path, doc) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, doc))
    return exc.value


def test_the_repository_config_and_its_defaults(tmp_path):
    cfg = load_config(write(tmp_path, document()))
    assert cfg.sections["accounts"]["activation_code_days"] == 30
    assert cfg.sections["accounts"]["username_pattern"] == "{first:1}{last}"
    assert cfg.sections["accounts"]["student_mail_domain"] == "students.district.example"
    assert cfg.sections["requests"]["pending_days"] == 90
    assert cfg.sections["password_policy"]["history"] == 5
    assert cfg.sections["sync"]["thresholds"]["max_deactivations"] == 500
    assert cfg.web.idle_minutes == 15 and cfg.web.threads == 8
    # the caps on one add/modify request, as config.yaml writes them and as the defaults
    from directory.server.protocol import request_limits

    caps = request_limits(cfg)
    assert (caps.attributes, caps.values_per_attribute, caps.values, caps.changes) == (1000, 10000, 20000, 1000)
    bare = load_config(write(tmp_path, document(limits=None)))
    assert request_limits(bare) == caps


def test_values_given_are_the_values_used(tmp_path):
    cfg = load_config(write(tmp_path, document(
        accounts={"activation_code_days": 7.5, "activation_max_failures": 3, "username_pattern": "{last}{first:1}"},
        requests={"pending_days": 10, "subadmin_roles": ["Photo-Designees"]},
        sync=merged("sync", username={"max_length": 12}, student_mail_domain=None))))
    acc = cfg.section("accounts")
    assert acc["activation_code_days"] == 7.5 and acc["activation_max_failures"] == 3
    # sync.username.pattern not written: accounts.username_pattern; sync.username.max_length written: it wins
    assert acc["username_pattern"] == "{last}{first:1}" and acc["username_max_length"] == 12
    assert acc["student_mail_domain"] == "students.district.example"  # from the suffix
    assert cfg.section("requests")["pending_days"] == 10
    assert cfg.section("requests")["account_expiry_days"] == 365


# (section, its value, the dotted key the error names, a word of the reason)
BAD = [
    # top level
    ("photos", {"max_mb": 5}, "photos", "unknown key"),
    ("suffix", ["dc=x"], "suffix", "expected a string"),
    ("listeners", "ldap://127.0.0.1:3389", "listeners", "expected a list"),
    ("schema", "schema/core.schema", "schema", "expected a list of strings"),
    # root
    ("root", merged("root", pasword="x"), "root.pasword", "unknown key"),
    ("root", merged("root", dn=5), "root.dn", "expected a string"),
    # store
    ("store", merged("store", cache_entires=5), "store.cache_entires", "unknown key"),
    ("store", merged("store", cache_entries="lots"), "store.cache_entries", "expected an integer >= 0"),
    # tls
    ("tls", merged("tls", require_tls=True), "tls.require_tls", "unknown key"),
    ("tls", merged("tls", require_tls_for_bind="yes"), "tls.require_tls_for_bind", "true or false"),
    # limits
    ("limits", merged("limits", sizelimit=5), "limits.sizelimit", "unknown key"),
    ("limits", merged("limits", rules=[{"who": "users", "size": "lots"}]), "limits.rules[0].size",
     "expected a whole number"),
    ("posix", {"uid_min": 5000, "uid_max": 100}, "posix.uid_min", "must be <= uid_max"),
    ("posix", {"home": "/home/students"}, "posix.home", "must contain {uid}"),
    ("posix", {"enabled": "yes"}, "posix.enabled", "expected true or false"),
    ("limits", merged("limits", time=-1), "limits.time", "expected an integer >= 0"),
    ("limits", merged("limits", request_changes=0), "limits.request_changes", "expected an integer >= 1"),
    # indexes
    ("indexes", ["uid"], "indexes", "expected a mapping"),
    ("indexes", {"uid": ["equality"]}, "indexes.uid", "expected a list of"),
    # passwords
    ("passwords", merged("passwords", hash_thread=2), "passwords.hash_thread", "unknown key"),
    ("passwords", merged("passwords", argon2={"time_cost": 2, "memory": 1}), "passwords.argon2.memory", "unknown key"),
    ("passwords", merged("passwords", argon2={"time_cost": "2"}), "passwords.argon2.time_cost", "integer >= 1"),
    ("passwords", merged("passwords", rehash_on_bind="no"), "passwords.rehash_on_bind", "true or false"),
    # server
    ("server", {"worker": 2}, "server.worker", "unknown key"),
    ("server", {"workers": 0}, "server.workers", "expected an integer >= 1"),
    # log
    ("log", {"level": "info", "file": "x.log"}, "log.file", "unknown key"),
    ("log", {"level": "verbose"}, "log.level", "expected one of"),
    ("log", {"access": 5}, "log.access", "expected true, false or a file path"),
    ("log", {"access_format": "xml"}, "log.access_format", "expected one of kv, json"),
    ("log", {"slow_ms": -1}, "log.slow_ms", "expected a number >= 0"),
    ("metrics", {"listen": "https://127.0.0.1:9389"}, "metrics.listen", "must be an http://host:port URL"),
    ("metrics", {"listen": "http://127.0.0.1"}, "metrics.listen", "must be an http://host:port URL"),
    ("metrics", {"monitor": "yes"}, "metrics.monitor", "expected true or false"),
    # password_policy
    ("password_policy", merged("password_policy", min_lenght=10), "password_policy.min_lenght", "unknown key"),
    ("password_policy", merged("password_policy", history="5"), "password_policy.history", "integer >= 0"),
    # access (its clauses: core/acl.py when the directory opens)
    ("access", {"to": "*", "by": ["users read"]}, "access", "expected a list"),
    # accounts
    ("accounts", {"activation_code_dayz": 30}, "accounts.activation_code_dayz", "unknown key"),
    ("accounts", {"activation_code_days": -1}, "accounts.activation_code_days", "expected a number >= 0"),
    ("accounts", {"activation_code_days": "30"}, "accounts.activation_code_days", "expected a number >= 0"),
    ("accounts", {"activation_max_failures": 2.5}, "accounts.activation_max_failures", "expected an integer"),
    ("accounts", {"username_pattern": "{nickname}"}, "accounts.username_pattern", "unknown field"),
    ("accounts", ["activation_code_days"], "accounts", "expected a mapping"),
    # requests
    ("requests", {"pending_dayz": 5}, "requests.pending_dayz", "unknown key"),
    ("requests", {"anonymous_limit": "5"}, "requests.anonymous_limit", "expected an integer >= 0"),
    ("requests", {"subadmin_roles": "photo-designees"}, "requests.subadmin_roles", "a list of strings"),
    ("requests", {"district_admins": "district admins"}, "requests.district_admins", "not a valid DN"),
    # sync
    ("sync", merged("sync", grace_dayz=5), "sync.grace_dayz", "unknown key"),
    ("sync", merged("sync", grace_days="two weeks"), "sync.grace_days", "expected an integer >= 0"),
    ("sync", merged("sync", password="secret"), "sync.password", "never put the password"),
    ("sync", merged("sync", username={"pattern": "{first}{last}", "maxlength": 8}), "sync.username.maxlength",
     "unknown key"),
    ("sync", merged("sync", thresholds={"max_deactivation_percent": "5%"}),
     "sync.thresholds.max_deactivation_percent", "expected a number >= 0"),
    ("sync", merged("sync", auto_provision=[{"sites": "*", "grade": ["09"]}]), "sync.auto_provision[0].grade",
     "unknown key"),
    ("sync", merged("sync", auto_provision=[{"grades": ["14"]}]), "sync.auto_provision[0].grades", "unknown grade"),
    ("sync", merged("sync", start_tls="true"), "sync.start_tls", "true or false"),
    ("sync", merged("sync", retention_days=7), "sync.retention_days", "grace_days"),
    ("sync", "ldap://127.0.0.1:3389", "sync", "expected a mapping"),
    # web
    ("web", merged("web", sesion_idle_minutes=15), "web.sesion_idle_minutes", "unknown key"),
    ("web", merged("web", max_upload_mb="50MB"), "web.max_upload_mb", "expected an integer >= 1"),
    ("web", merged("web", session_idle_minutes=0), "web.session_idle_minutes", "> 0"),
    ("web", merged("web", photo_zip_max_files=0), "web.photo_zip_max_files", "expected an integer >= 1"),
    ("web", merged("web", photo_zip_max_mb="200MB"), "web.photo_zip_max_mb", "expected an integer >= 1"),
    ("web", merged("web", listen="http://127.0.0.1:8443"), "web.listen", "https"),
]


@pytest.mark.parametrize("section,value,key,reason", BAD, ids=[b[2] + ":" + b[3] for b in BAD])
def test_an_unknown_key_or_a_wrong_type_names_the_key(tmp_path, section, value, key, reason):
    exc = error_of(tmp_path, document(**{section: value}))
    assert exc.key == key
    assert reason in exc.reason
    assert f"{key}: " in str(exc) and str(tmp_path / "config.yaml") in str(exc)


def test_every_section_is_covered_by_a_bad_case():
    from directory.config import sections

    assert set(sections()) <= {b[0] for b in BAD}


def test_the_sync_client_refuses_them_too(tmp_path):
    doc = {"suffix": "dc=district,dc=example", "sync": merged("sync", grace_dayz=5)}
    with pytest.raises(SyncConfigError, match=r"^sync\.grace_dayz: unknown key"):
        load_sync(write(tmp_path, doc), env={"ROLLCALL_SYNC_PASSWORD": "x"})
    doc["sync"] = merged("sync", thresholds={"max_deactivations": "many"})
    with pytest.raises(SyncConfigError, match=r"^sync\.thresholds\.max_deactivations: expected an integer"):
        load_sync(write(tmp_path, doc), env={"ROLLCALL_SYNC_PASSWORD": "x"})
    doc = {"suffix": "dc=district,dc=example", "sink": {}, "sync": merged("sync")}
    with pytest.raises(SyncConfigError, match=r"^sink: unknown key"):
        load_sync(write(tmp_path, doc), env={"ROLLCALL_SYNC_PASSWORD": "x"})
    doc = {"suffix": "dc=district,dc=example", "sync": merged("sync", page_size=50)}
    cfg = load_sync(write(tmp_path, doc), env={"ROLLCALL_SYNC_PASSWORD": "x"})
    assert cfg.page_size == 50 and cfg.max_deactivations == 500 and cfg.username_pattern == "{first:1}{last}"


def _listening(port) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _serve(path, timeout=60):
    return subprocess.run([sys.executable, "-m", "directory.cli", "serve", "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("section,value,message", [
    ("accounts", {"activation_code_days": "thirty"},
     "accounts.activation_code_days: expected a number >= 0, got str 'thirty'"),
    ("web", merged("web", sesion_idle_minutes=15), "web.sesion_idle_minutes: unknown key"),
    # checked when the directory opens (needs the schema), still before anything listens
    ("access", [{"to": {"dn": "ou=people,{suffix}", "scope": "children"}, "by": ["users reed"]}],
     "access[0].by[0]: unknown level 'reed'"),
    ("limits", merged("limits", rules=[{"who": "users", "size": -1}]),
     "limits.rules[0].size: expected a whole number >= 0 or \"unlimited\", got -1"),
    # the who's DN is normalised against the schema when the directory opens
    ("limits", merged("limits", rules=[{"who": "group=nosuch=x,{suffix}"}]),
     "limits.rules[0].who: invalid DN: attribute type 'nosuch' undefined"),
    # posix on (as shipped) with nis.schema, whose posixGroup is structural
    ("schema", [str(ROOT / "schema" / n) for n in ("core.schema", "cosine.schema", "inetorgperson.schema",
                                                   "nis.schema", "eduperson.schema", "rollcall.schema",
                                                   "rollcall-photos.schema")],
     "posix.enabled: needs schema/optional/rfc2307bis.schema"),
])
def test_serve_refuses_a_bad_config_before_it_listens(tmp_path, section, value, message):
    port, web_port = free_port(), free_port()
    doc = document(**{section: value})
    doc["listeners"] = [f"ldap://127.0.0.1:{port}"]
    doc["store"]["path"] = str(tmp_path / "rollcall.db")
    doc["tls"] = {"cert": str(tmp_path / "server.crt"), "key": str(tmp_path / "server.key")}
    if isinstance(doc.get("web"), dict):
        doc["web"]["listen"] = f"https://127.0.0.1:{web_port}"
    from directory.tls import make_self_signed

    make_self_signed(tmp_path / "server.crt", tmp_path / "server.key")
    path = write(tmp_path, doc)
    started = time.monotonic()
    r = _serve(path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert time.monotonic() - started < 30
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rollcall: configuration error: {path}: {message}"), r.stderr
    assert "Traceback" not in r.stderr and "serving" not in r.stdout
    assert not _listening(port) and not _listening(web_port)
    assert not Path(doc["store"]["path"]).exists() or section in ("access", "limits", "posix", "schema")


def test_serve_with_workers_checks_the_access_rules_before_binding(tmp_path):
    port = free_port()
    doc = document(access=[{"to": {"scope": "everything"}, "by": ["users read"]}], server={"workers": 2})
    doc["listeners"] = [f"ldap://127.0.0.1:{port}"]
    doc["store"]["path"] = str(tmp_path / "rollcall.db")
    doc["tls"] = {"cert": str(tmp_path / "server.crt"), "key": str(tmp_path / "server.key")}
    doc.pop("web")
    path = write(tmp_path, doc)
    r = _serve(path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip() == (f"rollcall: configuration error: {path}: access[0].to.scope: "
                                "must be one of base, one, subtree, children"), r.stderr
    assert not _listening(port)


def test_limits_defaults_and_their_checks(tmp_path):
    doc = document(limits={})
    cfg = load_config(write(tmp_path, doc))
    assert (cfg.idle_timeout, cfg.write_timeout, cfg.max_pdu, cfg.max_pdu_anonymous) == (900, 60, 10485760, 262143)
    assert (cfg.max_connections, cfg.max_connections_per_address, cfg.max_binds_per_address) == (1024, 256, 16)
    assert (cfg.filter_max_terms, cfg.filter_max_depth) == (1000, 32)
    for limits, key, reason in (
        ({"max_pdu": 100000, "max_pdu_anonymous": 200000}, "limits.max_pdu_anonymous", "must be <= max_pdu"),
        ({"max_connections": 10, "max_connections_per_address": 20}, "limits.max_connections_per_address",
         "must be <= max_connections"),
        ({"filter_max_depth": 65}, "limits.filter_max_depth", "must be <= 64"),
        ({"max_binds_per_address": 0}, "limits.max_binds_per_address", "expected an integer >= 1"),
        ({"write_timeout": "1m"}, "limits.write_timeout", "expected an integer >= 0"),
    ):
        err = error_of(tmp_path, document(limits=limits))
        assert err.key == key and reason in err.reason, (limits, err)


def test_limit_rules_and_their_checks(tmp_path):
    cfg = load_config(write(tmp_path, document()))  # config.yaml: district admins and the sync unlimited
    assert {"who": "group=cn=district-admins,ou=groups,{suffix}", "size": 0, "time": 0, "unindexed": 0} \
        in cfg.limit_rules
    rules = [{"who": "dn.subtree=ou=staff,ou=people,{suffix}", "size": 2000}, {"who": "anonymous", "time": 5}]
    cfg = load_config(write(tmp_path, document(limits=merged("limits", rules=rules))))
    assert cfg.limit_rules == [{"who": rules[0]["who"], "size": 2000, "time": None, "unindexed": None},
                               {"who": "anonymous", "size": None, "time": 5, "unindexed": None}]
    for rule, key, reason in (
        ({"size": 5}, "limits.rules[0].who", "required"),
        ({"who": "group=not a dn"}, "limits.rules[0].who", "not a valid DN"),
        ({"who": "users", "sise": 5}, "limits.rules[0].sise", "unknown key"),
        ({"who": "users", "time": "forever"}, "limits.rules[0].time", "expected a whole number"),
        ("users unlimited", "limits.rules[0]", "expected a mapping"),
    ):
        err = error_of(tmp_path, document(limits=merged("limits", rules=[rule])))
        assert err.key == key and reason in err.reason, (rule, err)
