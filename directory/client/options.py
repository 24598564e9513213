"""The command-line tools' one set of connection options, ldap-utils style:

    -H URL            ldap:// or ldaps:// (also --url; env ROLLCALL_URL; default: the first
                      ldap:// listener of --config, else ldap://127.0.0.1:3389)
    -D DN             bind DN (also --bind-dn, --as; env ROLLCALL_BIND_DN); none: anonymous
    -w PASSWORD       the password on the command line (also --password; prefer -y or -W)
    -W                prompt for the password
    -y FILE           the password from the first line of FILE (also --password-file;
                      env ROLLCALL_PASSWORD_FILE)
                      env ROLLCALL_BIND_PASSWORD or ROLLCALL_PASSWORD: the password (scripts)
    -Z                StartTLS (also --starttls)
    --ca-file FILE    CA certificate(s) to trust (also --cacert; default: tls.cert of
                      --config when it exists)
    --config FILE     where the defaults above come from (default: config.yaml)
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

from .connection import SYNC, connect
from .errors import ClientError

DEFAULT_URL = "ldap://127.0.0.1:3389"


CONFIG_ENV = "ROLLCALL_CONFIG"
SYSTEM_CONFIG = "/etc/rollcall/config.yaml"


def find_config(explicit=None, env=None) -> tuple[Path | None, str]:
    """Which configuration file a command uses: --config (`explicit`), else
    $ROLLCALL_CONFIG, else ./config.yaml, else /etc/rollcall/config.yaml. Returns (path,
    where it came from) — an explicit --config or $ROLLCALL_CONFIG is returned whether it
    exists or not (a typo must not fall back to another file) — or (None, one line naming
    every place looked at) when there is none."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit), "--config"
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), f"${CONFIG_ENV}"
    for candidate in (Path("config.yaml"), Path(SYSTEM_CONFIG)):
        if candidate.is_file():
            return candidate, str(candidate)
    return None, (f"no configuration file: looked at --config (not given), ${CONFIG_ENV} (not set), "
                  f"{Path('config.yaml').resolve()} and {SYSTEM_CONFIG}")


def add_connection_options(p, *, config_default=None, require_bind=False, env_defaults=True):
    """Add the connection options to an argparse parser. `config_default`: the --config
    default (argparse.SUPPRESS when a parent parser declares --config too; False: the
    caller adds --config itself; None: find_config (above) looks for one,
    which `rollcall`'s main does for every command). `env_defaults`: -D defaults to $ROLLCALL_BIND_DN (not
    for a service such as the sync, whose identity is its configuration's)."""
    g = p.add_argument_group("connection")
    g.add_argument("-H", "--url", dest="url", metavar="URL", help="LDAP server: ldap://host:port or ldaps://host:port")
    g.add_argument("-D", "--bind-dn", "--as", dest="bind_dn", metavar="DN", required=require_bind,
                   default=os.environ.get("ROLLCALL_BIND_DN") if env_defaults and not require_bind else None,
                   help="bind as this DN" + (" (default: $ROLLCALL_BIND_DN, else anonymous)"
                                             if env_defaults and not require_bind else ""))
    g.add_argument("-w", "--password", dest="password", metavar="PASSWORD",
                   help="bind password (visible to other users of this machine: prefer -y or -W)")
    g.add_argument("-W", "--prompt", dest="prompt", action="store_true", help="prompt for the bind password")
    g.add_argument("-y", "--password-file", dest="password_file", metavar="FILE",
                   help="read the bind password from the first line of FILE")
    g.add_argument("-Z", "--starttls", "--start-tls", dest="starttls", action="store_true", help="use StartTLS")
    g.add_argument("--ca-file", "--cacert", dest="ca_file", metavar="FILE",
                   help="CA certificate(s) to trust for TLS (default: tls.cert of the configuration)")
    if config_default is not False:
        g.add_argument("--config", default=config_default,
                       help="configuration file for the defaults (default: $ROLLCALL_CONFIG, else "
                            "./config.yaml, else /etc/rollcall/config.yaml, when one exists)")
    return g


def _read_first_line(path) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    except OSError as exc:
        raise ClientError(f"cannot read the password file {path}: {exc.strerror}", kind="input") from None


def password_from_args(args, prompt: str | None = None) -> str:
    """-w, else -y, else $ROLLCALL_PASSWORD_FILE, else $ROLLCALL_BIND_PASSWORD /
    $ROLLCALL_PASSWORD (unless -W), else a prompt on a terminal; ClientError when none."""
    cached = getattr(args, "_rollcall_password", None)
    if cached is not None and prompt is None:
        return cached
    got = getattr(args, "password", None)
    if got is None and getattr(args, "password_file", None):
        got = _read_first_line(args.password_file)
    if got is None and os.environ.get("ROLLCALL_PASSWORD_FILE"):
        got = _read_first_line(os.environ["ROLLCALL_PASSWORD_FILE"])
    if got is None and not getattr(args, "prompt", False):
        got = os.environ.get("ROLLCALL_BIND_PASSWORD") or os.environ.get("ROLLCALL_PASSWORD")
    if got is None:
        if getattr(args, "prompt", False) or sys.stdin.isatty():
            got = getpass.getpass(prompt or f"Password for {getattr(args, 'bind_dn', None) or 'you'}: ")
        else:
            raise ClientError("no password (use -y FILE, -W, or $ROLLCALL_BIND_PASSWORD)", kind="input")
    args._rollcall_password = got
    return got


def _loopback(url: str) -> str:
    u = urlparse(url)
    host = u.hostname or ""
    if host in ("0.0.0.0", "", "localhost"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"{u.scheme}://{host}" + (f":{u.port}" if u.port else "")


def config_defaults(config) -> tuple[str | None, str | None]:
    """(server URL, CA file) a configuration offers: its first ldap:// listener (else
    its first listener) on loopback, and its tls.cert when that file exists. `config`:
    a path to config.yaml, its parsed dict, or a loaded directory.config.Config."""
    if config is None:
        return None, None
    listeners, cert, base = [], None, Path(".")
    if isinstance(config, (str, Path)):
        path = Path(config)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError):
            return None, None
        config, base = raw, path.resolve().parent
    if isinstance(config, dict):
        listeners = [str(x) for x in config.get("listeners") or [] if isinstance(x, str)]
        c = (config.get("tls") or {}).get("cert") if isinstance(config.get("tls"), dict) else None
        cert = (base / c) if c else None
    else:
        listeners = [getattr(x, "url", str(x)) for x in getattr(config, "listeners", [])]
        cert = getattr(config, "tls_cert", None)
    plain = [u for u in listeners if u.lower().startswith("ldap://")]
    chosen = (plain or [u for u in listeners if u.lower().startswith("ldaps://")] or [None])[0]
    cert = str(cert) if cert and Path(cert).is_file() else None
    return (_loopback(chosen) if chosen else None), cert


def resolve(args, config=None) -> dict:
    """url, bind_dn, ca_file, start_tls from the options, the environment and the config."""
    if config is None:
        config = getattr(args, "config", None) or find_config(None)[0]
    cfg_url, cfg_ca = config_defaults(config)
    url = getattr(args, "url", None) or os.environ.get("ROLLCALL_URL") or cfg_url or DEFAULT_URL
    start_tls = bool(getattr(args, "starttls", False))
    ca = getattr(args, "ca_file", None)
    if not ca and (url.lower().startswith("ldaps://") or start_tls):
        ca = cfg_ca
    return {"url": url, "bind_dn": getattr(args, "bind_dn", None) or None, "ca_file": ca, "start_tls": start_tls}


def connect_from_args(args, config=None, *, anonymous: bool = False, strategy=SYNC, **kwargs):
    """connect() with the command line's connection options (and the config's defaults).
    Anonymous when there is no -D (or `anonymous`). ClientError on any failure."""
    r = resolve(args, config)
    bind_dn = None if anonymous else r["bind_dn"]
    password = password_from_args(args) if bind_dn else None
    args.url = r["url"]
    return connect(r["url"], bind_dn, password, ca_file=r["ca_file"], start_tls=r["start_tls"], strategy=strategy,
                   **kwargs)


SUPPRESS = argparse.SUPPRESS
