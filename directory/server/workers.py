"""Several worker processes sharing the listening sockets (`server.workers` > 1).

The parent binds every listener, forks the workers and supervises them; each worker
opens its own store connections (after the fork) and runs its own reactor. The
kernel spreads new connections over the workers. The web console, whose sessions are
in memory, runs in the first worker. Caches stay exact: every transaction records
the ids it touched, and each worker drops those before its next operation (see
SQLiteStore.refresh).
"""
import logging
import os
import signal
import socket
import sys
import time

from ..app import open_directory
from .reactor import install as install_reactor

log = logging.getLogger("rollcall.workers")


def _bind(listener):
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((listener.host, listener.port))
    s.listen(1024)
    s.setblocking(False)
    return s


def _run_worker(cfg, sockets, slot=0):
    install_reactor()  # before anything imports twisted.internet.reactor (the default one)
    # in the forked child only: the reactor (which these create) must not exist before the fork
    from twisted.internet import reactor
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from .listener import LDAPServerFactory, tune_gc

    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    factory = LDAPServerFactory(open_directory(cfg), cfg)
    for listener, sock in sockets:
        f = factory
        if listener.scheme == "ldaps":
            f = TLSMemoryBIOFactory(factory.tls_context, False, factory)
            factory.tls_ports.add(sock.getsockname()[1])
        reactor.adoptStreamPort(sock.fileno(), sock.family, f)
        sock.close()  # the reactor holds its own duplicate
    factory.listen_metrics(slot)  # each worker its own figures, on port + slot
    factory.install_sighup()
    if slot == 0 and cfg.web is not None:
        # the web console keeps its sessions in memory: it lives in the first worker only
        from ..web.server import listen as listen_web  # after the fork: it imports the reactor

        listen_web(factory, cfg)
    tune_gc()
    reactor.run(installSignalHandlers=False)


def serve_workers(cfg, on_ready=None):
    sockets = [(lst, _bind(lst)) for lst in cfg.listeners]
    children = {}

    def spawn(slot):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run_worker(cfg, sockets, slot)
            except Exception:
                log.exception("worker %d failed", slot)
                code = 1
            finally:
                os._exit(code)
        children[pid] = slot

    for slot in range(cfg.workers):
        spawn(slot)
    if on_ready:
        on_ready()
    stopping = False

    def tell_workers(sig):
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        tell_workers(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def hangup(signum, _frame):
        # logrotate and certificate renewal signal the parent: every worker reloads
        tell_workers(signal.SIGHUP)

    signal.signal(signal.SIGHUP, hangup)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        if slot is not None and not stopping:
            log.error("worker %d (pid %d) exited with status %d; restarting", slot, pid, status)
            time.sleep(0.5)
            spawn(slot)
    sys.exit(0)
