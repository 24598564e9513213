"""The test run's PostgreSQL: the PGCluster helper lives in directory/testing/pgcluster.py
(the benchmarks use it too); this module re-exports it and holds the run's one cluster."""
import atexit

from directory.testing.pgcluster import PGCluster, find_binaries, free_port  # noqa: F401  (re-exported)

_shared = None


def shared() -> PGCluster:
    """The test process's one cluster (ROLLCALL_TEST_PG_DSN's server, or a private one
    started on first use and torn down at exit): the pg_cluster fixture and the
    server processes of ROLLCALL_TEST_STORE=postgresql runs share it."""
    global _shared
    if _shared is None:
        _shared = PGCluster.from_env() or PGCluster.start()
        atexit.register(_shared.teardown)
    return _shared
