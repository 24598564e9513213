"""The metrics listener against a real server: scraped before and after a known load
(run while it is scraped), the counters moved by exactly that load; the health checks
answer; with several workers each answers on its own port."""
import subprocess
import threading
import urllib.request

import pytest
import yaml
from ldap3 import NONE, SUBTREE, Connection, Server
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX, ServerProcess, free_port, free_ports, requires_ldap_utils, wait_port

JSMITH = f"uid=jsmith,ou=students,ou=people,{SUFFIX}"


def plain(srv):
    """No root DSE and schema read at bind: the test counts every search it makes."""
    return Server(srv.url, get_info=NONE)


def scrape(url) -> dict:
    """{(sample name, sorted labels): value}"""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(url, path):
    try:
        with urllib.request.urlopen(url + path, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def delta(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    port = free_port()
    s = ServerProcess(tmp_path_factory.mktemp("metrics"),
                      extra_config={"metrics": {"listen": f"http://127.0.0.1:{port}"}})
    s.metrics_url = f"http://127.0.0.1:{port}"
    s.start()
    yield s
    s.stop()


def test_counters_move_by_the_load(srv):
    url = srv.metrics_url
    before = scrape(url)
    searches, good_binds, bad_binds, adds = 200, 5, 3, 20
    scrapes = []
    held = [Connection(plain(srv), auto_bind=True) for _ in range(4)]

    def searcher(k):
        conn = Connection(plain(srv), ROOT_DN, ROOT_PW, auto_bind=True)
        for _ in range(searches // 4):
            conn.search(SUFFIX, "(uid=jsmith)", SUBTREE, attributes=["cn"])
            assert len(conn.entries) == 1
        conn.unbind()

    threads = [threading.Thread(target=searcher, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    # scraped during the load
    while any(t.is_alive() for t in threads):
        scrapes.append(scrape(url))
    for t in threads:
        t.join()
    root = Connection(plain(srv), ROOT_DN, ROOT_PW, auto_bind=True)
    for i in range(adds):
        assert root.add(f"uid=m{i},ou=people,{SUFFIX}", ["inetOrgPerson"], {"uid": f"m{i}", "cn": "M", "sn": "M"})
    assert not root.add(f"uid=m0,ou=people,{SUFFIX}", ["inetOrgPerson"], {"uid": "m0", "cn": "M", "sn": "M"})
    root.unbind()
    for _ in range(good_binds - 1):  # the root bind above is one
        c = Connection(plain(srv), JSMITH, "student-pw-1")
        assert c.bind()
        c.unbind()
    for _ in range(bad_binds):
        c = Connection(plain(srv), JSMITH, "wrong-password")
        assert not c.bind()
        c.unbind()
    during = scrapes[len(scrapes) // 2] if scrapes else before
    assert during[("rollcall_connections_open", ())] >= 4  # the held ones at least
    after = scrape(url)

    assert delta(before, after, "rollcall_operations_total", type="search", result="success") == searches
    assert delta(before, after, "rollcall_operation_seconds_count", type="search") == searches
    assert delta(before, after, "rollcall_operations_total", type="add", result="success") == adds
    assert delta(before, after, "rollcall_operations_total", type="add", result="entry_already_exists") == 1
    # anonymous binds (4 held), the searchers' and the others
    assert delta(before, after, "rollcall_binds_total", result="success") == 4 + 4 + good_binds
    assert delta(before, after, "rollcall_binds_total", result="invalid_credentials") == bad_binds
    assert delta(before, after, "rollcall_connections_total") == 4 + 4 + 1 + good_binds - 1 + bad_binds
    # every write went through the writer: at least one group commit each group
    assert delta(before, after, "rollcall_write_group_writes_total") >= adds + 1
    assert 1 <= delta(before, after, "rollcall_write_groups_total") <= delta(
        before, after, "rollcall_write_group_writes_total")
    assert after[("rollcall_write_queue_depth", ())] == 0
    assert 0 < after[("rollcall_entry_cache_hit_ratio", ())] <= 1
    if yaml.safe_load(srv.config_path.read_text())["store"]["backend"] == "sqlite":
        assert after[("rollcall_store_bytes", ())] > 10000  # the SQLite files (PostgreSQL: its own exporter)
    assert ("rollcall_pool_queue", (("pool", "hash"),)) in after
    for c in held:
        c.unbind()


def test_health_checks(srv):
    assert get(srv.metrics_url, "/healthz") == (200, "ok\n")
    assert get(srv.metrics_url, "/readyz") == (200, "ready\n")
    assert get(srv.metrics_url, "/nothing")[0] == 404


def test_each_worker_reports_on_its_own_port(tmp_path):
    port = free_ports(2)
    s = ServerProcess(tmp_path, extra_config={"metrics": {"listen": f"http://127.0.0.1:{port}"},
                                              "server": {"workers": 2}})
    s.start()
    try:
        for p in (port, port + 1):
            wait_port(p)
            m = scrape(f"http://127.0.0.1:{p}")
            assert ("rollcall_up_seconds", ()) in m
            assert get(f"http://127.0.0.1:{p}", "/readyz")[0] == 200
    finally:
        s.stop()


@requires_ldap_utils
def test_cn_monitor_over_ldap(tmp_path):
    """metrics.monitor: the same figures as /metrics in cn=Monitor, for the root DN only."""
    s = ServerProcess(tmp_path, extra_config={"metrics": {"monitor": True}})
    s.start()
    try:
        for _ in range(3):
            c = Connection(plain(s), ROOT_DN, ROOT_PW, auto_bind=True)
            c.search(SUFFIX, "(uid=jsmith)", SUBTREE)
            c.unbind()
        out = subprocess.run(["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", s.url, "-D", ROOT_DN,
                              "-w", ROOT_PW, "-b", "cn=Monitor", "-s", "base", "(objectClass=*)", "description"],
                             capture_output=True, text=True, check=True).stdout
        values = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("description: ")]
        assert 'rollcall_operations_total{result="success",type="search"} 3' in values
        assert any(v.startswith("rollcall_connections_open ") for v in values)
        # anyone else: no such entry
        anon = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", s.url, "-b", "cn=Monitor", "-s", "base"],
                              capture_output=True, text=True)
        assert anon.returncode == 32
    finally:
        s.stop()
