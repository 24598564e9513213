"""The command line outside the repository: the configuration is found by --config,
$ROLLCALL_CONFIG, ./config.yaml, /etc/rollcall/config.yaml (one lookup for every
command, one line naming the places looked at when there is none); and a reader that
goes away (`rollcall export | head -1`) ends the command quietly, without a
BrokenPipeError traceback."""
import os
import subprocess
import sys

import pytest

from directory.client import find_config
from directory.demo import demo_ldif
from tests.conftest import ROOT, SUFFIX, ServerProcess

SCHEMA = [str(ROOT / "schema" / n) for n in
          ("core.schema", "cosine.schema", "inetorgperson.schema", "nis.schema", "eduperson.schema",
           "rollcall.schema", "rollcall-photos.schema")]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    return ServerProcess(tmp_path_factory.mktemp("cli-env"), extra_config={"schema": SCHEMA},
                         ldif=demo_ldif(SUFFIX))


def rollcall(args, cwd, env_extra=None, **kw):
    env = {k: v for k, v in os.environ.items() if k != "ROLLCALL_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "directory.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, **kw)


def test_rollcall_config_from_another_directory(srv, tmp_path):
    r = rollcall(["export"], tmp_path, {"ROLLCALL_CONFIG": str(srv.config_path)})
    assert r.returncode == 0, r.stderr
    assert f"dn: {SUFFIX}" in r.stdout


def test_config_option_before_the_environment(srv, tmp_path):
    r = rollcall(["export", "--config", str(srv.config_path)], tmp_path,
                 {"ROLLCALL_CONFIG": str(tmp_path / "missing.yaml")})
    assert r.returncode == 0, r.stderr
    r = rollcall(["export"], tmp_path, {"ROLLCALL_CONFIG": str(tmp_path / "missing.yaml")})
    assert r.returncode == 2 and "missing.yaml" in r.stderr and "$ROLLCALL_CONFIG" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["export"], ["audit"], ["request", "expire"], ["sync", "sis", "x.csv"]])
def test_no_configuration_anywhere_one_line(tmp_path, args):
    if os.path.exists("/etc/rollcall/config.yaml"):
        pytest.skip("this machine has /etc/rollcall/config.yaml")
    r = rollcall(args, tmp_path)
    assert r.returncode in (1, 2)  # `request`'s errors are 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for place in ("--config", "$ROLLCALL_CONFIG", str(tmp_path / "config.yaml"), "/etc/rollcall/config.yaml"):
        assert place in lines[0]


def test_find_config_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config("a.yaml", env={"ROLLCALL_CONFIG": "b.yaml"})[0].name == "a.yaml"
    assert find_config(None, env={"ROLLCALL_CONFIG": "b.yaml"}) == (find_config("b.yaml")[0], "$ROLLCALL_CONFIG")
    (tmp_path / "config.yaml").write_text("suffix: x\n")
    path, source = find_config(None, env={})
    assert path.name == "config.yaml" and path.is_file()


@pytest.mark.parametrize("args", [["export"], ["audit", "--format", "json"]])
def test_output_into_head_no_traceback(srv, tmp_path, args):
    env = {k: v for k, v in os.environ.items() if k != "ROLLCALL_CONFIG"}
    env.update(PYTHONPATH=str(ROOT), ROLLCALL_CONFIG=str(srv.config_path))
    cmd = " ".join([sys.executable, "-m", "directory.cli", *args]) + " | head -1"
    r = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert r.stdout.count("\n") == 1
    assert r.returncode in (0, 141)
