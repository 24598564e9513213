"""`rollcall` command line: serve, load, export, backup, restore, hash-password, tls-selfsigned."""
import argparse
import csv
import getpass
import json
import logging
import os
import resource
import select
import sys
import time

from sync.cli import register as register_sync  # `rollcall sync sis|oneroster …`

from . import passwords
from .admin_cli import register as register_admin  # roster, account … (LDAP clients)
from .app import open_directory
from .client import find_config
from .config import ConfigError, load_config
from .core.bulk import BulkLoader, LoadError
from .core.directory import Directory
from .core.errors import LDAPError
from .core.schema import Schema
from .ldif import LDIFError, format_entry
from .photos_cli import register as register_photos  # photos upload | publish | roster | setup
from .requests_cli import add_request_parser
from .server.reactor import install as install_reactor
from .server.sdnotify import notify
from .server.workers import serve_workers
from .store import backup_store, open_store, restore_store
from .store.base import StoreError
from .tls import make_self_signed


def config_or_exit(args, prog="rollcall"):
    """args.config as find_config resolved it (in main), or exit 2 with the one line
    naming the places looked at."""
    if getattr(args, "config", None) is None:
        print(f"{prog}: configuration error: {find_config(None)[1]}", file=sys.stderr)
        sys.exit(2)
    return args.config


def _config(args):
    path = config_or_exit(args)
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"rollcall: configuration error: {exc}{_from(args)}", file=sys.stderr)
        sys.exit(2)


def _from(args) -> str:
    source = getattr(args, "config_source", "")
    return f" (the configuration named by {source})" if source.startswith(("--", "$")) else ""


def _open_directory(cfg):
    """The directory; its own checks (access rules, indexes against the schema) are
    configuration errors too."""
    try:
        return open_directory(cfg)
    except ConfigError as exc:
        print(f"rollcall: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except StoreError as exc:  # the database unreachable, or its schema at another version
        print(f"rollcall: store: {exc}", file=sys.stderr)
        sys.exit(1)


def _check_directory(cfg):
    """What only the opened directory checks (access rules and indexes against the
    schema), without opening the store."""
    try:
        Directory(cfg, Schema.load(cfg.schema_files), None)
    except ConfigError as exc:
        print(f"rollcall: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


def cmd_serve(args):
    cfg = _config(args)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    for p in (cfg.tls_cert, cfg.tls_key):
        if p is not None and any(lst.scheme == "ldaps" for lst in cfg.listeners) and not p.exists():
            print(f"rollcall: configuration error: tls: {p} does not exist "
                  "(`rollcall tls-selfsigned --config …` makes a demo pair)", file=sys.stderr)
            sys.exit(2)
    if cfg.workers > 1:
        _check_directory(cfg)  # the workers open it after the sockets are bound: its checks first
        if cfg.store_backend == "postgresql":
            # reachable, and its schema at this release's version: one message here, rather
            # than every worker failing after the fork (closed again: no threads cross the fork)
            _open_store(cfg, "rollcall serve", cache_entries=0, listen=False).close()
        try:
            serve_workers(cfg, on_ready=lambda: (print(
                f"rollcall: serving {cfg.suffix} with {cfg.workers} workers on "
                + ", ".join(lst.url for lst in cfg.listeners), flush=True), notify("READY=1")))
        except OSError as exc:
            print(f"rollcall: cannot listen: {exc}", file=sys.stderr)
            sys.exit(1)
        return
    install_reactor()  # before anything imports twisted.internet.reactor (the default one)
    # imported only now: the reactor (which these create) must not exist before worker processes fork
    from twisted.internet import reactor

    from .server.listener import LDAPServerFactory, tune_gc

    directory = _open_directory(cfg)
    factory = LDAPServerFactory(directory, cfg)
    try:
        factory.listen()
        factory.listen_metrics()
        factory.install_sighup()
        if cfg.web is not None:
            from .web.server import listen as listen_web  # imports the reactor: see above

            listen_web(factory, cfg)
    except Exception as exc:
        print(f"rollcall: cannot listen: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"rollcall: serving {cfg.suffix} ({directory.store.count()} entries) on "
          + ", ".join([lst.url for lst in cfg.listeners] + ([cfg.web.listen] if cfg.web else [])), flush=True)
    notify("READY=1")  # systemd's Type=notify: every listener is open
    reactor.addSystemEventTrigger("before", "shutdown", notify, "STOPPING=1")
    tune_gc()
    reactor.run()


def cmd_load(args):
    cfg = _config(args)
    directory = _open_directory(cfg)
    started = time.perf_counter()

    def progress(n):
        print(f"\r{n} entries…", end="", file=sys.stderr, flush=True)

    try:
        loader = BulkLoader(directory)
        with open(args.ldif, "rb") as fh:
            count = loader.load_ldif(fh, args.ldif, progress=progress)
    except (LDIFError, LoadError) as exc:
        print(f"\nrollcall load: {args.ldif}: {exc} — nothing was loaded", file=sys.stderr)
        sys.exit(1)
    elapsed = time.perf_counter() - started
    rate = count / elapsed if elapsed else 0
    print(f"\rloaded {count} entries in {elapsed:.1f} s ({rate:,.0f} entries/s)", file=sys.stderr)
    # CPU seconds besides wall time: on a busy machine the steadier number
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"CPU: {me.ru_utime + me.ru_stime:.1f} s writer, {kids.ru_utime + kids.ru_stime:.1f} s workers; "
          f"peak RSS {me.ru_maxrss / 1024:,.0f} MiB writer, {kids.ru_maxrss / 1024:,.0f} MiB largest worker",
          file=sys.stderr)
    if loader.phase_stats:
        print("of which " + ", ".join(f"{name} {secs:.1f} s" for name, secs in loader.phase_stats.items()),
              file=sys.stderr)
    if loader.memberof_stats and loader.memberof_stats[0]:
        members, secs = loader.memberof_stats
        print(f"memberOf: {members} members in {secs:.2f} s", file=sys.stderr)


def cmd_posix_assign(args):
    """uidNumber/gidNumber for people and site groups without them (after `rollcall
    load`, or when posix is first enabled); safe beside a running server."""
    cfg = _config(args)
    directory = _open_directory(cfg)
    posix = directory.posix
    if not posix.enabled:
        print("rollcall posix-assign: posix.enabled is false in the configuration", file=sys.stderr)
        sys.exit(2)
    try:
        counts = posix.assign_missing()
    except LDAPError as exc:  # a range used up: what was assigned before it stays
        print(f"rollcall posix-assign: {exc.message}", file=sys.stderr)
        sys.exit(1)
    print(f"posix: {counts['account']} accounts and {counts['group']} site groups numbered", file=sys.stderr)


def cmd_export(args):
    cfg = _config(args)
    directory = _open_directory(cfg)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    n = 0
    for entry in directory.export_entries():
        out.write(format_entry(entry.dn, entry.attrs.items()))
        n += 1
    if args.output:
        out.close()
        print(f"exported {n} entries to {args.output}", file=sys.stderr)


def cmd_audit(args):
    """The audit log (every write: who, from where, when, what; never a password)."""
    cfg = _config(args)
    if cfg.store_backend == "sqlite" and not cfg.store_path.exists():
        print(f"rollcall audit: no store at {cfg.store_path}", file=sys.stderr)
        sys.exit(1)
    store = _open_store(cfg, "rollcall audit", cache_entries=0)
    rows = store.changes(since=args.since, dn_suffix=args.dn, who=args.who, limit=args.limit)
    if args.format == "json":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        w = csv.writer(sys.stdout)
        w.writerow(["seq", "time", "who", "peer", "op", "dn", "detail"])
        for r in rows:
            w.writerow([r["seq"], r["time"], r["who"], r["peer"], r["op"], r["dn"],
                        json.dumps(r["detail"], ensure_ascii=False)])


def _open_store(cfg, prog, **kw):
    """The store alone (no schema, no directory), its errors one line each."""
    try:
        return open_store(cfg, **kw)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except StoreError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(1)


def cmd_db_version(args):
    """The database's schema version and the one this Rollcall needs."""
    cfg = _config(args)
    store = _open_store(cfg, "rollcall db version", cache_entries=0, schema="any")
    try:
        have, need = store.schema_version()
    finally:
        store.close()
    state = ("current" if have == need else "empty: initialised on first open" if have is None
             else "older: run `rollcall db upgrade`" if have < need else "newer than this Rollcall")
    print(f"{cfg.store_backend} schema version {have if have is not None else '-'} "
          f"(this Rollcall: {need}; {state})")
    if have is not None and have > need:
        sys.exit(1)


def cmd_db_upgrade(args):
    """Apply the pending schema migrations (one transaction; safe to run twice)."""
    cfg = _config(args)
    store = _open_store(cfg, "rollcall db upgrade", cache_entries=0, schema="upgrade")
    try:
        before, after = store.schema_version()
    finally:
        store.close()
    if before == after:
        print(f"{cfg.store_backend} schema version {after}: already current")
    else:
        print(f"{cfg.store_backend} schema upgraded from version {before or 0} to {after}")


def cmd_backup(args):
    """An online backup of the store, taken while the server serves reads and writes."""
    cfg = _config(args)
    started = time.perf_counter()
    try:
        m = backup_store(cfg, args.output)
    except StoreError as exc:
        print(f"rollcall backup: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"backed up {m['entries']} entries ({m['size'] / 1e6:.1f} MB, schema version {m['schema_version']}, "
          f"sha256 {m['sha256'][:16]}…) to {args.output} in {time.perf_counter() - started:.1f} s")


def cmd_restore(args):
    """A backup into an empty store path (never over a live store)."""
    cfg = _config(args)
    try:
        m = restore_store(cfg, args.backup)
    except StoreError as exc:
        print(f"rollcall restore: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"restored {m['entries']} entries, backed up {m['created']} from {m['host']}, into {cfg.store_path}; "
          "checksum and integrity checked. Start the server on it.")


# --benchmark's table of alternatives: (label, time_cost, memory_cost KiB, parallelism)
ARGON2_ALTERNATIVES = (
    ("OWASP minimum", 2, 19456, 1),
    ("OWASP, 46 MiB", 1, 47104, 1),
    ("Rollcall default", 2, 65536, 1),
    ("RFC 9106 second (t=3, 64 MiB, p=4)", 3, 65536, 4),
    ("64 MiB, t=3, p=1", 3, 65536, 1),
    ("128 MiB, t=2, p=1", 2, 131072, 1),
)


def _hasher_for(args) -> passwords.Hasher:
    """The scheme asked for, with the configuration's argon2 parameters when a
    configuration is given or found (else passwords.Hasher's defaults)."""
    argon2 = {}
    path = args.config
    if path is not None:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            print(f"rollcall: configuration error: {exc}{_from(args)}", file=sys.stderr)
            sys.exit(2)
        argon2 = cfg.argon2
        scheme = args.scheme or cfg.password_scheme
    else:
        scheme = args.scheme or "ARGON2"
    try:
        return passwords.Hasher(scheme, **argon2)
    except ValueError as exc:
        print(f"rollcall: {exc}", file=sys.stderr)
        sys.exit(2)


def _describe(h: passwords.Hasher) -> str:
    if h.scheme == "ARGON2":
        return f"argon2id m={h.memory_cost} KiB ({h.memory_cost / 1024:g} MiB), t={h.time_cost}, p={h.parallelism}"
    return repr(h)


def cmd_hash_password_benchmark(args, hasher):
    runs = max(1, args.runs)
    print(f"# median of {runs} verifications on this machine ({os.cpu_count()} CPUs); ms: what a bind waits,")
    print("# CPU ms: what it costs (argon2 with p > 1 uses p threads); binds/s per core: uncached")
    print("# binds (one verification each); a repeated bind of the same account and password is")
    print("# checked by HMAC instead while passwords.verified_cache_seconds allows.")
    r = passwords.benchmark(hasher, runs)
    source = f"configured in {args.config}" if args.config is not None else "built-in defaults"
    print(f"{_describe(hasher)} [{source}]: {r['ms']:.1f} ms per verification ({r['cpu_ms']:.1f} CPU ms), "
          f"{r['per_core_per_s']:.1f} binds/s per core")
    if args.alternatives and hasher.scheme == "ARGON2":
        print()
        print(f"{'alternative (argon2id)':<36} {'ms/verify':>10} {'CPU ms':>8} {'binds/s/core':>13}")
        for label, t, m, p in ARGON2_ALTERNATIVES:
            alt = passwords.benchmark(passwords.Hasher("ARGON2", t, m, p), runs)
            print(f"{label:<36} {alt['ms']:>10.1f} {alt['cpu_ms']:>8.1f} {alt['per_core_per_s']:>13.1f}")
        print("# OWASP (Password Storage Cheat Sheet): argon2id m=19 MiB t=2 p=1 at least; "
              "RFC 9106 §4: t=3, 64 MiB, p=4 (second recommended option)")


def cmd_hash_password(args):
    hasher = _hasher_for(args)
    if args.benchmark:
        cmd_hash_password_benchmark(args, hasher)
        return
    plain = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("New password: ")
    if not plain:
        print("rollcall: empty password", file=sys.stderr)
        sys.exit(2)
    print(hasher.hash(plain.encode()).decode())


def cmd_tls_selfsigned(args):
    cfg = _config(args)
    if cfg.tls_cert.exists() and cfg.tls_key.exists() and not args.force:
        print(f"{cfg.tls_cert} exists (use --force to replace)")
        return
    make_self_signed(cfg.tls_cert, cfg.tls_key, hosts=args.host or ["localhost", "127.0.0.1"])
    print(f"wrote {cfg.tls_cert} and {cfg.tls_key}")


CONFIG_HELP = ("configuration file (default: $ROLLCALL_CONFIG, else ./config.yaml, "
               "else /etc/rollcall/config.yaml)")


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (`| head`), rather than
    some other broken pipe (a socket to the server)."""
    try:
        fd = sys.stdout.fileno()
        p = select.poll()
        p.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in p.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def run_command(fn, args):
    """Run a command; when the reader of its output goes away (`rollcall audit | head`),
    stop quietly with status 141 (128 + SIGPIPE, as a shell reports `yes | head`)
    instead of a BrokenPipeError traceback."""
    try:
        try:
            fn(args)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        # Python flushes stdout again at exit: point it at /dev/null first
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="rollcall", description="Rollcall identity directory")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, fn, help):
        p = sub.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        if name != "hash-password":
            p.add_argument("--config", default=None, help=CONFIG_HELP)
        return p

    command("serve", cmd_serve, "run the LDAP server")
    p = command("load", cmd_load, "bulk-load an LDIF file into the store (offline, all or nothing)")
    p.description = (
        "Bulk-load an LDIF file, like slapadd -q: offline (stop the servers first), one transaction, every "
        "entry checked against the schema. A bad or duplicate entry stops it with its line number and "
        "nothing is loaded. A load that fails, or is killed (kill -9, out of memory), leaves the store "
        "as it was before it: run it again. SQLite skips fsync until the end, so only a power loss or OS "
        "crash during a load into an empty store can leave a damaged file: delete it and load again.")
    p.add_argument("ldif")
    command("posix-assign", cmd_posix_assign, "give uidNumber/gidNumber to people and site groups without them")
    p = command("export", cmd_export, "write the whole directory as LDIF")
    p.add_argument("-o", "--output")
    p = command("audit", cmd_audit, "print the audit log (filters: --since, --dn, --who)")
    p.add_argument("--since", type=int, default=0, help="only entries after this sequence number")
    p.add_argument("--dn", help="only changes at or below this DN")
    p.add_argument("--who", help="only changes made by this (normalised) DN")
    p.add_argument("--limit", type=int, default=100000)
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p = command("backup", cmd_backup, "online backup of the SQLite store (consistent; the server keeps serving)")
    p.add_argument("output", help="the backup file to write (a tar with a manifest and a checksum)")
    p = command("restore", cmd_restore, "restore a backup into the empty store path of the configuration")
    p.add_argument("backup", help="a file written by `rollcall backup`")
    p = command("hash-password", cmd_hash_password, "print a password hash for config.yaml; "
                "--benchmark: time the configured parameters")
    p.add_argument("--scheme", default=None, help="ARGON2 (default), SSHA, PBKDF2-SHA512, …")
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--config", default=None, help="the configuration whose passwords.argon2 parameters to use "
                   "(default: $ROLLCALL_CONFIG, ./config.yaml, /etc/rollcall/config.yaml if any, else the "
                   "built-in defaults)")
    p.add_argument("--benchmark", action="store_true",
                   help="print milliseconds per verification and binds/s per core for the parameters")
    p.add_argument("--runs", type=int, default=5, help="verifications timed per setting (--benchmark; 5)")
    p.add_argument("--alternatives", action="store_true",
                   help="--benchmark: also time a few other argon2 settings (OWASP, RFC 9106)")
    p = command("tls-selfsigned", cmd_tls_selfsigned, "generate a self-signed certificate for tls.cert/tls.key")
    p.add_argument("--host", action="append")
    p.add_argument("--force", action="store_true")
    db = command("db", None, "the store's schema: version, upgrade")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, fn, text in (("version", cmd_db_version, "print the database's schema version"),
                           ("upgrade", cmd_db_upgrade, "apply pending schema migrations (before starting "
                                                       "a new release)")):
        p = db_sub.add_parser(name, help=text)
        p.set_defaults(fn=fn)
        p.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)  # SUPPRESS: keeps `db --config`
    add_request_parser(command("request", None, "access requests: submit, list, show, approve, deny, "
                                                "withdraw; expire (the nightly job)"))

    register_admin(sub)
    register_photos(sub)
    register_sync(sub)

    args = parser.parse_args(argv)
    if "config" in vars(args):  # every command that reads a configuration: one lookup
        args.config, args.config_source = find_config(args.config)
        if args.command == "hash-password" and args.config is not None and args.config_source not in (
                "--config",) and not args.config.is_file():
            args.config = None  # optional here: a hash needs no configuration
    run_command(args.fn, args)


if __name__ == "__main__":
    main()
