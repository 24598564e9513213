"""The reactor `rollcall serve` installs (directory/server/reactor.py): it serves
connections, and a handler that raises is logged while everyone else is still served.
In a fresh interpreter: pytest runs under a reactor of its own."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import socket, sys
    from directory.server.reactor import Reactor, install
    install()
    from twisted.internet import protocol, reactor
    from twisted.python import log
    assert type(reactor) is Reactor, type(reactor)
    errors = []
    log.addObserver(lambda ev: ev.get("isError") and errors.append(ev))

    class Echo(protocol.Protocol):
        def dataReceived(self, data):
            if data == b"boom":
                raise RuntimeError("handler bug")
            self.transport.write(data.upper())

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    addr = ("127.0.0.1", port.getHost().port)

    def client():
        bad = socket.create_connection(addr)
        good = socket.create_connection(addr)
        bad.sendall(b"boom")
        good.sendall(b"hello")
        good.settimeout(5)
        got = good.recv(16)
        bad.settimeout(5)
        closed = bad.recv(16)  # the failing connection is dropped (connectionLost)
        reactor.stop()
        print(got.decode(), repr(closed), flush=True)

    reactor.callInThread(client)
    reactor.run()
""")


def test_serve_reactor_dispatches_and_survives_a_failing_handler():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["HELLO", "b''"]
