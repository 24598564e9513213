"""contrib/: the systemd unit, the logrotate snippet and the HAProxy sample, each
checked by its own tool where the tool is installed (skipped otherwise)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")


def test_systemd_unit_verifies(tmp_path):
    need("systemd-analyze")
    rollcall = Path(sys.executable).parent / "rollcall"
    if not rollcall.exists():
        pytest.skip("the rollcall command is not installed in this venv")
    # the unit as installed: pointing at this checkout's rollcall command
    text = (CONTRIB / "rollcall.service").read_text().replace("/opt/rollcall/.venv/bin/rollcall", str(rollcall))
    unit = tmp_path / "rollcall.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # complaints about this unit only (the host's own units may have theirs)
    mine = [line for line in (r.stdout + r.stderr).splitlines() if "rollcall.service" in line]
    assert not mine, "\n".join(mine)
    assert "Type=notify" in text and "ExecReload=/bin/kill -HUP $MAINPID" in text


def test_haproxy_sample_is_valid():
    need("haproxy")
    r = subprocess.run(["haproxy", "-c", "-f", str(CONTRIB / "haproxy.cfg")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_logrotate_snippet_is_valid(tmp_path):
    need("logrotate")
    log = tmp_path / "access.log"
    log.write_text("a line\n")
    # the snippet for a log in tmp_path, owned by whoever runs the test
    text = (CONTRIB / "logrotate.d/rollcall").read_text().replace("/var/log/rollcall/access.log", str(log))
    text = text.replace("create 0640 rollcall rollcall", "create 0640")
    conf = tmp_path / "rollcall.conf"
    conf.write_text(text)
    r = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)], capture_output=True, text=True)
    assert r.returncode == 0 and "error" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
