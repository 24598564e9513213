"""One sync of a source at a time, whichever host cron starts it on: the run takes the
source's lease in the directory (directory/client/lease.py); a second run changes
nothing and says who holds it; a dry run takes no lease."""
from ldap3 import Connection, Server

from directory import client
from tests.protocol.district import password, service

ROWS = ["300001s001,Ada,Lovelace,,2014-02-03,05,1111,ENROLLED,2025-08-18,,"]


def test_a_second_sync_of_a_source_waits_for_the_first(sync, srv, capsys):
    f = sync.csv("one.csv", ROWS)
    other = Connection(Server(srv.url), service("sis-sync"), password("sis-sync"), auto_bind=True)
    with client.job_lease(other, "sync-district-sis"):
        assert sync("sis", f) == 2
        assert "sync-district-sis is already running" in capsys.readouterr().err
        assert "300001s001" not in sync.accounts()
        assert sync("sis", f, "--dry-run") == 0  # a dry run writes nothing: no lease needed
    assert sync("sis", f) == 0, sync.last_output
    assert "300001s001" in sync.accounts()
