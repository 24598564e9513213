"""tests/protocol/test_substring_search.py against the PostgreSQL store (see pgrun.py)."""
from tests.protocol.pgrun import on_postgresql  # noqa: F401 - autouse: this module's servers on PostgreSQL
from tests.protocol.test_substring_search import *  # noqa: F401,F403 - the same tests
