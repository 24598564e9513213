"""Import directions between Rollcall's layers, checked over the source (an AST walk
of every module of `directory` and `sync`: top-level imports AND imports inside
functions, classes or try blocks).

    directory.district   the district's rules, written once: imports only itself
    directory.core       the server's rules: never the LDAP server, the web console,
                         the sync jobs or the command line
    directory.store      storage: only the core's Entry/errors (and the district's rules);
                         used through its interface (store.base) and opened by its
                         factory (directory.store.open_store): no module outside the
                         package names a backend (store.sqlite …), and the core
                         imports store.base only
    sync                 an LDAP client: of ours only directory.client, directory.district and
                         directory.config (sync/config.py checks its `sync:` section against the
                         one declaration of config.yaml's keys)
    directory.client     the one LDAP client helper: imports nothing of ours but itself
    LDAP clients         reach the server only through directory.client: no module outside it
                         (and the tests) calls ldap3's Connection(...) or Server(...)
    *_cli, cli           command-line modules: imported only by other command-line modules
    directory.testing    helpers of the tests and the benchmarks (a private PostgreSQL
                         cluster): no module of the server imports them

An import inside a function must say why on its line or just above it (e.g. "the
reactor must not exist before the fork", "Pillow only when a photo is checked").
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("directory", "sync")
CLI_MODULES = ("directory.cli", "sync.cli")  # and every directory.*_cli


def is_cli(module: str) -> bool:
    return module in CLI_MODULES or (module.startswith("directory.") and module.count(".") == 1
                                     and module.endswith("_cli"))


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# (rule, importer predicate, imported predicate): an import matching both is forbidden
RULES = [
    ("district imports only itself (and the standard library, Pillow)",
     lambda m: under(m, "directory.district"),
     lambda t: under(t, "directory", "sync") and not under(t, "directory.district")),
    ("core imports nothing from the server, the web console, sync or the command line",
     lambda m: under(m, "directory.core"),
     lambda t: under(t, "directory.server", "directory.web", "sync", "directory.app") or is_cli(t)),
    ("store imports only core.entry/core.errors of the core, nothing of server, web or sync",
     lambda m: under(m, "directory.store"),
     lambda t: (under(t, "directory.core") and not under(t, "directory.core.entry", "directory.core.errors"))
     or under(t, "directory.server", "directory.web", "sync", "directory.app") or is_cli(t)),
    ("core uses the store through its interface only: directory.store.base",
     lambda m: under(m, "directory.core"),
     lambda t: under(t, "directory.store") and not under(t, "directory.store.base")),
    ("outside the store only the factory (directory.store) and the interface (store.base): "
     "no backend module (store.sqlite, store.throttle …)",
     lambda m: not under(m, "directory.store"),
     lambda t: under(t, "directory.store") and t != "directory.store" and not under(t, "directory.store.base")),
    ("sync is an LDAP client: of ours only directory.client, directory.district (and directory.config)",
     lambda m: under(m, "sync"),
     lambda t: under(t, "directory") and not under(t, "directory.client", "directory.district", "directory.config")),
    ("directory.client imports nothing of ours but itself",
     lambda m: under(m, "directory.client"),
     lambda t: under(t, "directory", "sync") and not under(t, "directory.client")),
    ("only command-line modules import command-line modules",
     lambda m: not is_cli(m),
     is_cli),
    ("directory.testing is for the tests and the benchmarks: the server never imports it",
     lambda m: not under(m, "directory.testing"),
     lambda t: under(t, "directory.testing")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield module_name(path), path


KNOWN = {name for name, _ in modules()}


def imports_of(name: str, source: str):
    """(line, imported module, in a function?) for every import of a directory/sync module.
    `from pkg import x` names pkg.x when that is a module, else pkg."""
    tree = ast.parse(source)
    is_pkg = name in PACKAGES or any(k.startswith(name + ".") for k in KNOWN)
    package = name if is_pkg else name.rpartition(".")[0]
    inner = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in KNOWN else mod for a in node.names]
        for t in dict.fromkeys(targets):
            if t.split(".")[0] in PACKAGES:
                yield node.lineno, t, id(node) in inner


def violations(name: str, source: str):
    out = []
    for line, target, _inner in imports_of(name, source):
        for rule, importer, imported in RULES:
            if importer(name) and imported(target):
                out.append(f"{name}:{line} imports {target}: {rule}")
    return out


def test_import_directions():
    found = []
    for name, path in modules():
        found += violations(name, path.read_text(encoding="utf-8"))
    assert not found, "forbidden imports:\n" + "\n".join(found)


@pytest.mark.parametrize("name, line", [
    ("directory.core.acl", "from ..server import ber"),
    ("directory.core.acl", "from ..server.ber import parse_filter_string"),
    ("directory.core.accounts", "def f():\n    from sync.names import base_name"),
    ("directory.core.directory", "from ..web import server"),
    ("directory.core.directory", "from .. import photos_cli"),
    ("directory.store.sqlite", "from ..core.directory import Identity"),
    ("directory.store.sqlite", "import directory.server.ber"),
    ("sync.engine", "from directory.core import requests"),
    ("sync.engine", "from directory.store.sqlite import SQLiteStore"),
    ("directory.district.usernames", "from sync import model"),
    ("directory.admin", "from .admin_cli import register"),
    ("directory.web.pages.photos", "from ... import photos_cli"),
    ("directory.app", "from .store.sqlite import SQLiteStore"),
    ("directory.cli", "from .store import sqlite"),
    ("directory.server.listener", "import directory.store.sqlite"),
    ("directory.web.session", "from ..store.throttle import Throttle"),
    ("directory.core.ppolicy", "from ..store.throttle import Throttle"),
    ("directory.core.bulk", "from ..store import open_store"),
    ("directory.core.filter", "def f():\n    from ..store.sqlite import SEP"),
    ("directory.store.postgres", "from ..testing.pgcluster import PGCluster"),
    ("directory.cli", "from directory.testing import pgcluster"),
])
def test_rules_catch_a_forbidden_import(name, line):
    assert violations(name, line + "\n")


def test_allowed_imports_pass():
    assert not violations("directory.core.acl", "from .filterparse import parse_filter_string\n")
    assert not violations("directory.server.ber", "from ..core.filterparse import parse_filter_string\n")
    assert not violations("sync.engine", "from directory.district.usernames import candidates\n")
    assert not violations("directory.store.sqlite", "from ..core.entry import Entry\n")
    assert not violations("directory.cli", "from .photos_cli import register\nfrom sync.cli import register\n")
    assert not violations("directory.app", "from .store import open_store\n")
    assert not violations("directory.core.filter", "from ..store.base import Eq, Substring\n")
    assert not violations("directory.web.session", "from ..store.base import MemoryThrottles\n")
    assert not violations("directory.store", "def f():\n    from .sqlite import SQLiteStore\n")


LDAP_CLASSES = ("Connection", "Server")


def ldap_constructions(name: str, source: str):
    """(line, what) for every call of ldap3's Connection/Server (by name, as an attribute
    such as ldap3.Connection, or imported from ldap3 under another name) in a module
    outside directory.client."""
    if under(name, "directory.client"):
        return []
    tree = ast.parse(source)
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ldap3":
            for a in node.names:
                if a.name in LDAP_CLASSES:
                    aliases[a.asname or a.name] = a.name
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if called in LDAP_CLASSES or called in aliases:
            out.append((node.lineno, aliases.get(called, called)))
    return out


def test_ldap_clients_connect_only_through_directory_client():
    found = []
    for name, path in modules():
        for line, what in ldap_constructions(name, path.read_text(encoding="utf-8")):
            found.append(f"{name}:{line} calls {what}(...): use directory.client.connect")
    assert not found, "LDAP connections made outside directory.client:\n" + "\n".join(found)


@pytest.mark.parametrize("name, source", [
    ("directory.admin_cli", "from ldap3 import Connection, Server\nc = Connection(Server('ldap://x'))\n"),
    ("sync.ldapwrite", "import ldap3\nc = ldap3.Connection(ldap3.Server('ldap://x'))\n"),
    ("directory.web.server", "from ldap3 import Server as S\ns = S('ldap://x')\n"),
    ("directory.photos_client", "def f():\n    return Connection(None)\n"),
])
def test_the_ldap_construction_check_catches(name, source):
    assert ldap_constructions(name, source)


def test_the_ldap_construction_check_allows():
    assert not ldap_constructions("directory.client.connection", "from ldap3 import Connection\nConnection(1)\n")
    assert not ldap_constructions("directory.web.server", "self.channel.loseConnection()\n")
    assert not ldap_constructions("directory.admin_cli", "from directory import client\nclient.connect('u')\n")


@pytest.mark.parametrize("name, line", [
    ("sync.engine", "from directory import admin"),
    ("sync.ldapwrite", "from directory.requests_client import RequestError"),
    ("directory.client.connection", "from ..config import load_config"),
    ("directory.client.options", "from directory.core.dn import DN"),
])
def test_client_rules_catch(name, line):
    assert violations(name, line + "\n")


def test_client_rules_allow():
    assert not violations("sync.ldapwrite", "from directory import client\n")
    assert not violations("sync.ldapread", "from directory.client import bind_error\n")
    assert not violations("sync.engine", "from directory.district.gentime import gentime_text\n")
    assert not violations("directory.client", "from .connection import connect\n")


def test_every_import_inside_a_function_says_why():
    unexplained = []
    for name, path in modules():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                i = node.lineno - 1
                ok = "#" in lines[i]
                j = i - 1
                while not ok and j >= 0:  # a comment above this group of imports
                    text = lines[j].strip()
                    if text.startswith("#"):
                        ok = True
                    elif not text or text.startswith(("from ", "import ")):
                        j -= 1
                        continue
                    break
                if not ok:
                    unexplained.append(f"{name}:{node.lineno}: {lines[i].strip()}")
    assert not unexplained, ("imports inside functions without a reason (move them to the top, or "
                             "break the import cycle):\n" + "\n".join(sorted(set(unexplained))))


DRIVER_ONLY_IN = {"psycopg": "directory.store.postgres", "psycopg_pool": "directory.store.postgres"}


def test_the_postgresql_driver_is_the_postgresql_store_s_alone():
    """A SQLite deployment never needs psycopg: only store/postgres.py imports it (and
    open_store imports that module only when store.backend is postgresql). The test and
    benchmark helpers of directory/testing/ (a private cluster) are no server code."""
    found = []
    for name, path in modules():
        if name.startswith("directory.testing"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            else:
                continue
            for t in targets:
                owner = DRIVER_ONLY_IN.get(t.split(".")[0])
                if owner and name != owner:
                    found.append(f"{name}:{node.lineno} imports {t}")
    assert not found
