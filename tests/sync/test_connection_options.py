"""`rollcall sync` takes its connection from the `sync:` section, and the command-line
tools' shared connection options (-H, -D, -w/-y, -Z, --ca-file) override it; failures
are sentences, and nothing is applied."""
import argparse
import io

from sync.cli import run
from tests.conftest import ROOT_DN, ROOT_PW, free_port

ROW = "100001s001,John,Smith,,2015-03-04,04,1111,ENROLLED,2025-08-18,,"


def go(sync, path, capsys, **conn):
    args = argparse.Namespace(sync_kind="sis", input=str(path), config=str(sync.config), dry_run=True, force=False,
                              source=None, full=False, today="2025-09-01", every=None, progress=False, quiet=True,
                              url=None, bind_dn=None, password=None, password_file=None, prompt=False,
                              starttls=False, ca_file=None)
    for k, v in conn.items():
        setattr(args, k, v)
    code = run(args, out=io.StringIO())
    return code, capsys.readouterr().err


def test_configured_connection(sync, capsys):
    f = sync.csv("one.csv", [ROW])
    code, err = go(sync, f, capsys)
    assert code == 0, err


def test_options_override_the_configuration(sync, capsys, tmp_path):
    f = sync.csv("one.csv", [ROW])
    pw = tmp_path / "root.pw"
    pw.write_text(ROOT_PW + "\n")
    code, err = go(sync, f, capsys, url=sync.srv.url, bind_dn=ROOT_DN, password_file=str(pw), starttls=True,
                   ca_file=str(sync.srv.ca_file))
    assert code == 0, err


def test_a_closed_port_is_a_sentence(sync, capsys):
    f = sync.csv("one.csv", [ROW])
    url = f"ldap://127.0.0.1:{free_port()}"
    code, err = go(sync, f, capsys, url=url)
    assert code == 2
    assert f"cannot reach {url}: connection refused" in err and "Traceback" not in err


def test_a_wrong_password_is_a_sentence(sync, capsys):
    f = sync.csv("one.csv", [ROW])
    code, err = go(sync, f, capsys, bind_dn=ROOT_DN, password="wrong")
    assert code == 2 and f"the server refused the password for {ROOT_DN}" in err, err


def test_starttls_without_the_ca(sync, capsys):
    f = sync.csv("one.csv", [ROW])
    code, err = go(sync, f, capsys, starttls=True)
    assert code == 2 and "cannot verify the TLS certificate" in err, err
