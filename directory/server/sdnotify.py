"""systemd's readiness protocol (Type=notify), without a library: one datagram to
$NOTIFY_SOCKET. Nothing happens when systemd did not start us."""
import logging
import os
import socket

log = logging.getLogger("rollcall.server")


def notify(state: str):
    """e.g. "READY=1" once every listener is open, "STOPPING=1", "RELOADING=1"."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(state.encode())
    except OSError as exc:
        log.warning("could not tell systemd %s: %s", state, exc)
