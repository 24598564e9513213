"""Type=notify: the server tells systemd READY=1 once it listens, STOPPING=1 on SIGTERM."""
import socket

from tests.conftest import ServerProcess


def test_ready_and_stopping_are_notified(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(20)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        srv = ServerProcess(tmp_path).start()
        try:
            assert sock.recv(256) == b"READY=1"
        finally:
            srv.stop()
        assert sock.recv(256) == b"STOPPING=1"
