"""config.yaml: read, check every key, report errors by key before anything listens."""
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml

from . import passwords
from .core.dn import DN


class ConfigError(Exception):
    def __init__(self, key: str, reason: str, path=None):
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {reason}")
        self.key = key
        self.reason = reason


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


@dataclass
class Config:
    path: Path
    base_dir: Path
    suffix: str
    listeners: list
    root_dn: str
    root_password: bytes
    store_backend: str
    store_path: Path
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
    workers: int
    log_level: str
    web: "WebConfig | None" = None  # the `web:` section (web console), None when absent
    raw: dict = field(default_factory=dict)  # the whole document, for later sections (acl, sync)


_INDEX_KINDS = {"eq", "pres", "sub"}
_SCHEMES = {"ARGON2", "SSHA", "PBKDF2-SHA512"}
_LEVELS = {"debug", "info", "warning", "error"}


def _get(doc, dotted, default=..., kind=None, path=None):
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is ...:
                raise ConfigError(dotted, "required key is missing", path)
            return default
        node = node[part]
    if kind is not None and not isinstance(node, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(dotted, f"expected {names}, got {type(node).__name__} {node!r}", path)
    return node


def _int(doc, dotted, default, path, minimum=0):
    value = _get(doc, dotted, default, int, path)
    if isinstance(value, bool) or value < minimum:
        raise ConfigError(dotted, f"must be an integer >= {minimum}", path)
    return value


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

    def rel(p):
        p = Path(p)
        return p if p.is_absolute() else base / p

    suffix = _get(doc, "suffix", kind=str, path=path)
    try:
        if not DN.parse(suffix):
            raise ValueError("empty")
    except Exception as exc:
        raise ConfigError("suffix", f"not a valid DN ({exc})", path) from None

    listeners = []
    for i, url in enumerate(_get(doc, "listeners", kind=list, path=path)):
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

    root_dn = _get(doc, "root.dn", kind=str, path=path)
    try:
        DN.parse(root_dn)
    except Exception as exc:
        raise ConfigError("root.dn", f"not a valid DN ({exc})", path) from None
    root_pw = _get(doc, "root.password", kind=str, path=path)
    if not passwords.is_hashed(root_pw.encode()):
        raise ConfigError("root.password", "must be a password hash ({ARGON2}…); run `rollcall hash-password`", path)

    backend = _get(doc, "store.backend", "sqlite", str, path)
    if backend != "sqlite":
        raise ConfigError("store.backend", f"unknown backend {backend!r} (available: sqlite)", path)

    schema_files = [rel(p) for p in _get(doc, "schema", kind=list, path=path)]
    for i, p in enumerate(schema_files):
        if not p.is_file():
            raise ConfigError(f"schema[{i}]", f"no such file {p.name}", path)

    tls_cert = _get(doc, "tls.cert", None, str, path)
    tls_key = _get(doc, "tls.key", None, str, path)
    if any(lst.scheme == "ldaps" for lst in listeners) and not (tls_cert and tls_key):
        raise ConfigError("tls", "an ldaps:// listener needs tls.cert and tls.key", path)

    indexes = {}
    for attr, kinds in (_get(doc, "indexes", {}, dict, path) or {}).items():
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or not set(kinds) <= _INDEX_KINDS:
            raise ConfigError(f"indexes.{attr}", f"expected a list of {sorted(_INDEX_KINDS)}", path)
        indexes[attr] = set(kinds)

    scheme = _get(doc, "passwords.scheme", "ARGON2", str, path).upper()
    if scheme not in _SCHEMES:
        raise ConfigError("passwords.scheme", f"must be one of {sorted(_SCHEMES)}", path)
    argon2 = dict(_get(doc, "passwords.argon2", {}, dict, path) or {})
    for k in argon2:
        if k not in ("time_cost", "memory_cost", "parallelism"):
            raise ConfigError(f"passwords.argon2.{k}", "unknown key (time_cost, memory_cost, parallelism)", path)
        _int(doc, f"passwords.argon2.{k}", 1, path, minimum=1)

    level = _get(doc, "log.level", "info", str, path)
    if level not in _LEVELS:
        raise ConfigError("log.level", f"must be one of {sorted(_LEVELS)}", path)

    web = _web_config(doc, path, tls_cert and tls_key)

    return Config(
        path=path,
        base_dir=base,
        suffix=suffix,
        listeners=listeners,
        root_dn=root_dn,
        root_password=root_pw.encode(),
        store_backend=backend,
        store_path=rel(_get(doc, "store.path", kind=str, path=path)),
        cache_entries=_int(doc, "store.cache_entries", 200000, path),
        schema_files=schema_files,
        tls_cert=rel(tls_cert) if tls_cert else None,
        tls_key=rel(tls_key) if tls_key else None,
        require_tls_for_bind=bool(_get(doc, "tls.require_tls_for_bind", False, bool, path)),
        size_limit=_int(doc, "limits.size", 500, path),
        time_limit=_int(doc, "limits.time", 60, path),
        unindexed_limit=_int(doc, "limits.unindexed", 5000, path),
        sort_limit=_int(doc, "limits.sort", 100000, path),
        max_pdu=_int(doc, "limits.max_pdu", 10 * 1024 * 1024, path, minimum=1024),
        idle_timeout=_int(doc, "limits.idle_timeout", 0, path),
        indexes=indexes,
        password_scheme=scheme,
        argon2=argon2,
        rehash_on_bind=bool(_get(doc, "passwords.rehash_on_bind", True, bool, path)),
        hash_threads=_int(doc, "passwords.hash_threads", 4, path, minimum=1),
        workers=_int(doc, "server.workers", 1, path, minimum=1),
        log_level=level,
        web=web,
        raw=doc,
    )


def _web_config(doc, path, have_tls):
    """The web console (`web:`): HTTPS only (its session cookie is Secure)."""
    raw = _get(doc, "web", None, dict, path)
    if raw is None:
        return None
    known = {"listen", "session_idle_minutes", "signin_max_failures", "signin_window", "max_upload_mb",
             "threads", "ldap_url"}
    for k in raw:
        if k not in known:
            raise ConfigError(f"web.{k}", f"unknown key (known: {', '.join(sorted(known))})", path)
    listen = _get(doc, "web.listen", kind=str, path=path)
    u = urlparse(listen)
    if u.scheme != "https":
        raise ConfigError("web.listen", "must be an https:// URL (the session cookie is Secure)", path)
    try:
        u.port
    except ValueError:
        raise ConfigError("web.listen", "bad port", path) from None
    if not have_tls:
        raise ConfigError("web.listen", "https needs tls.cert and tls.key", path)
    idle = _get(doc, "web.session_idle_minutes", 15, (int, float), path)
    if isinstance(idle, bool) or idle <= 0:
        raise ConfigError("web.session_idle_minutes", "must be a number of minutes > 0", path)
    _int(doc, "web.signin_max_failures", 5, path)
    _int(doc, "web.signin_window", 300, path, minimum=1)
    _int(doc, "web.max_upload_mb", 50, path, minimum=1)
    _int(doc, "web.threads", 8, path, minimum=1)
    ldap_url = _get(doc, "web.ldap_url", None, str, path)
    if ldap_url is not None and urlparse(ldap_url).scheme not in ("ldap", "ldaps"):
        raise ConfigError("web.ldap_url", "must be an ldap:// or ldaps:// URL", path)
    return WebConfig(listen, raw.get("session_idle_minutes", 15), raw.get("signin_max_failures", 5),
                     raw.get("signin_window", 300), raw.get("max_upload_mb", 50), raw.get("threads", 8), ldap_url)
