"""Storage. Everything outside this package uses a store through the protocols in
store/base.py, and opens one only here: `open_store(config)` chooses the backend
from `store.backend` in config.yaml.

    base.py      the interface (Store, Tx, index queries) and MemoryThrottles
    sqlite.py    the embedded store (one SQLite file in WAL mode)
    throttle.py  the SQLite store's attempt counters (a non-durable file of their own)
"""

BACKENDS = ("sqlite",)  # "postgresql": the scale-out issue


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
        return SQLiteStore(config.store_path, **kw)
    # config imports the core, which imports store.base: not at the top of the module
    from ..config import ConfigError

    raise ConfigError("store.backend", f"unknown store backend {backend!r} (known: {', '.join(BACKENDS)})")
