"""tests/protocol/test_ldap3.py against the PostgreSQL store (see pgrun.py)."""
from tests.protocol.pgrun import on_postgresql  # noqa: F401 - autouse: this module's servers on PostgreSQL
from tests.protocol.test_ldap3 import *  # noqa: F401,F403 - the same tests
