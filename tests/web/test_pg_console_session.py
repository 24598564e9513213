"""tests/web/test_console_session.py against the PostgreSQL store (see tests/protocol/pgrun.py)."""
from tests.protocol.pgrun import on_postgresql  # noqa: F401 - autouse: this module's servers on PostgreSQL
from tests.web.test_console_session import *  # noqa: F401,F403 - the same pages
