"""The benchmark harness still runs: `scripts/bench --store postgresql` on a tiny
district for a second per case prints its table. Not a timed test (the figures are
not checked, only that every case answered without errors); the benchmarks themselves
stay out of the test suite (scripts/bench, README "Benchmarks")."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from directory.testing import pgcluster

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(pgcluster.find_binaries() is None and not os.environ.get("ROLLCALL_TEST_PG_DSN"),
                                reason="PostgreSQL is not installed")


def test_bench_postgresql_prints_its_table(tmp_path):
    args = [sys.executable, "-m", "benchmarks.bench", "--store", "postgresql", "--users", "200",
            "--duration", "1", "--warmup", "0.3", "--quiet-wait", "0", "--out", str(tmp_path)]
    if os.environ.get("ROLLCALL_TEST_PG_DSN"):
        args += ["--pg-dsn", os.environ["ROLLCALL_TEST_PG_DSN"]]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for case in ("eq", "bind", "sub"):
        assert any(line.split()[:2] == [case, "rc-pg"] for line in r.stdout.splitlines()), r.stdout
    assert "ops/dbCs" in r.stdout and "CPU per operation" in r.stdout
    (result,) = tmp_path.glob("results-*.json")
    doc = json.loads(result.read_text())
    assert doc["postgresql"]["fsync"] == "on" and doc["postgresql"]["synchronous_commit"] == "on"
    assert {r["name"] for r in doc["results"] if r["errors"] == 0} == {"eq", "bind", "sub"}
    if not os.environ.get("ROLLCALL_TEST_PG_DSN"):  # a private cluster: its CPU is measured
        assert all(r.get("db_cpu_pct") is not None for r in doc["results"])


def test_bench_substring_cases_search_as_a_service_account(tmp_path):
    args = [sys.executable, "-m", "benchmarks.bench", "--store", "sqlite", "--users", "300", "--cases", "sub,typeahead",
            "--duration", "1", "--warmup", "0.3", "--quiet-wait", "0", "--depth", "4", "--out", str(tmp_path)]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (result,) = tmp_path.glob("results-*.json")
    doc = json.loads(result.read_text())
    got = {r["name"]: r for r in doc["results"]}
    assert set(got) == {"sub", "typeahead"} and all(r["errors"] == 0 and r["ops"] > 0 for r in got.values())
    # entries came back (the service account may read students), some searches hit the size limit
    assert all(r["entries"] > 0 for r in got.values())
    assert "cn=bench-sso,ou=services" in got["typeahead"]["describe"]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_load_bench_prints_its_rows(tmp_path, store):
    """scripts/bench-load on 300 users: a row per run with entries/s, wall and CPU
    seconds and peak memory; slapadd -q beside it when slapd is installed."""
    if store == "postgresql" and os.environ.get("ROLLCALL_TEST_PG_DSN"):
        pytest.skip("the load bench starts its own cluster")
    args = [sys.executable, "-m", "benchmarks.load_bench", "--users", "300", "--runs", "1",
            "--out", str(tmp_path), "--store", store] + (["--no-slapadd"] if store == "postgresql" else [])
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {line.split()[0] + (" " + line.split()[1] if line.startswith("rollcall ") else ""): line
            for line in r.stdout.splitlines() if "entries/s" in line and "wall" in line}
    assert "s CPU" in rows["rollcall 1"] and "peak RSS" in rows["rollcall 1"], r.stdout
    assert "CPU:" in r.stdout and "writer" in r.stdout  # rollcall load's own account
    if store == "sqlite" and Path("/usr/sbin/slapadd").exists():
        assert "slapadd" in rows, r.stdout
