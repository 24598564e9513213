"""Storage. Everything outside this package uses a store through the protocols in
store/base.py, and opens one only here: `open_store(config)` chooses the backend
from `store.backend` in config.yaml.

    base.py      the interface (Store, Tx, index queries) and MemoryThrottles
    sqlite.py    the embedded store (one SQLite file in WAL mode)
    throttle.py  the SQLite store's attempt counters (a non-durable file of their own)
    postgres.py  the scale-out store (PostgreSQL: several frontends on several hosts)
"""

BACKENDS = ("sqlite", "postgresql")


def open_store(config, **kw):
    """The store config.yaml's `store:` section names. kw overrides its settings
    (e.g. cache_entries=0 for a one-shot reader such as `rollcall audit`)."""
    backend = getattr(config, "store_backend", "sqlite") or "sqlite"
    if backend == "sqlite":
        # the backend chosen, imported only when chosen: a PostgreSQL deployment
        # must not need SQLite's modules, nor a SQLite one psycopg
        from .sqlite import SQLiteStore

        kw.setdefault("cache_entries", config.cache_entries)
        config.store_path.parent.mkdir(parents=True, exist_ok=True)
        kw.pop("schema", None)  # its tables are made as it opens: always current
        return SQLiteStore(config.store_path, **kw)
    if backend == "postgresql":
        # imported only when chosen (see above): psycopg is this backend's alone
        from .postgres import PostgresStore

        kw.setdefault("cache_entries", config.cache_entries)
        kw.setdefault("pool_size", getattr(config, "store_pool_size", 10))
        kw.setdefault("cache_ttl", getattr(config, "store_cache_ttl", 300.0))
        return PostgresStore(config.store_conninfo, password=store_password(config), **kw)
    # config imports the core, which imports store.base: not at the top of the module
    from ..config import ConfigError

    raise ConfigError("store.backend", f"unknown store backend {backend!r} (known: {', '.join(BACKENDS)})")


def store_password(config):
    """The database password from `store.password_file` (first line), or None: then
    libpq's own sources (PGPASSWORD, ~/.pgpass, PGPASSFILE). Never from config.yaml."""
    path = getattr(config, "store_password_file", None)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    except OSError as exc:
        # config imports the core, which imports store.base: not at the top of the module
        from ..config import ConfigError

        raise ConfigError("store.password_file", f"cannot read it: {exc.strerror}") from None


def backup_store(config, out) -> dict:
    """`rollcall backup`: an online, consistent copy of the store (see store/backup.py)."""
    # imported when used: it is the SQLite store's (a PostgreSQL deployment needs none of it)
    from .backup import backup

    return backup(config, out)


def restore_store(config, path) -> dict:
    """`rollcall restore`: a backup put into an empty store path (see store/backup.py)."""
    # imported when used: see backup_store
    from .backup import restore

    return restore(config, path)
