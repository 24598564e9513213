"""Re-running a protocol suite against the PostgreSQL store: a module does

    from tests.protocol.test_unique import *  # noqa: F401,F403 - the same tests
    from tests.protocol.pgrun import on_postgresql  # noqa: F401 - autouse: servers on PostgreSQL

and its servers (tests/conftest.py ServerProcess) get a fresh database of the run's
cluster instead of a SQLite file. The whole of any suite can be run so as well:
ROLLCALL_TEST_STORE=postgresql pytest tests/protocol/…"""
import os

import pytest


@pytest.fixture(scope="module", autouse=True)
def on_postgresql(pg_cluster):
    before = os.environ.get("ROLLCALL_TEST_STORE")
    os.environ["ROLLCALL_TEST_STORE"] = "postgresql"
    yield pg_cluster
    if before is None:
        os.environ.pop("ROLLCALL_TEST_STORE", None)
    else:
        os.environ["ROLLCALL_TEST_STORE"] = before
