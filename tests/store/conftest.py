"""The store contract suite runs once per backend in STORES. A backend is added by
naming it here and teaching `store_config` how to point a config at a fresh,
empty database of it (PostgreSQL: a scratch database per test on the run's cluster,
tests/pgcluster.py; its tests are skipped only where PostgreSQL is not installed)."""
from types import SimpleNamespace

import pytest

from directory.store import open_store

STORES = ["sqlite", "postgresql"]


def store_config(backend: str, tmp_path, pg_cluster=None):
    """A config (the attributes open_store reads) for an empty database of `backend`."""
    if backend == "sqlite":
        return SimpleNamespace(store_backend="sqlite", store_path=tmp_path / "db" / "rollcall.db",
                               cache_entries=1000)
    if backend == "postgresql":
        return SimpleNamespace(store_backend="postgresql", store_conninfo=pg_cluster.create_database(),
                               store_password_file=None, store_pool_size=4, store_cache_ttl=300.0,
                               cache_entries=1000)
    raise AssertionError(f"no test database for store backend {backend!r}")


@pytest.fixture(params=STORES)
def backend(request):
    return request.param


@pytest.fixture
def store_cfg(backend, tmp_path, request):
    """The config of a fresh database of the backend (PostgreSQL: the session's cluster)."""
    cluster = request.getfixturevalue("pg_cluster") if backend == "postgresql" else None
    return store_config(backend, tmp_path, cluster)


@pytest.fixture
def open_one(store_cfg):
    """open_one() -> another store object on the same database (another worker
    process would hold one): closed at the end of the test."""
    config = store_cfg
    opened = []

    def open_one(**kw):
        store = open_store(config, **kw)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_one):
    return open_one()
