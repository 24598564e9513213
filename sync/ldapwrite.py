"""Writes through ldap3 (ASYNC strategy): many operations on the wire at once."""
from __future__ import annotations

import ssl
from collections import deque

from ldap3 import ASYNC, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, NONE, Connection, Server, Tls

ALREADY_EXISTS, NO_SUCH_OBJECT, NO_SUCH_ATTRIBUTE, VALUE_EXISTS = 68, 32, 16, 20


def connect(cfg, strategy=ASYNC) -> Connection:
    tls = None
    if cfg.server.startswith("ldaps://") or cfg.start_tls:
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=cfg.ca_file)
    server = Server(cfg.server, use_ssl=cfg.server.startswith("ldaps://"), tls=tls, get_info=NONE,
                    connect_timeout=10)
    # No socket receive timeout with ASYNC: ldap3's receiver thread retries a failed recv
    # forever when one is set, spinning on a dead socket after the server went away
    # (each response is awaited with its own timeout in Pipeline._collect instead).
    conn = Connection(server, cfg.bind_dn, cfg.password, client_strategy=strategy, check_names=False,
                      raise_exceptions=False, receive_timeout=None if strategy == ASYNC else 600,
                      auto_bind=False)
    conn.open()
    if cfg.start_tls and not cfg.server.startswith("ldaps://"):
        conn.start_tls()
    if not conn.bind():
        raise ConnectionError(f"bind as {cfg.bind_dn} failed: {conn.result}")
    return conn


def mods(changes: dict) -> dict:
    """{attr: [values] (replace; [] deletes)} or {attr: ("add"|"delete", [values])} -> ldap3 changes."""
    out = {}
    for attr, v in changes.items():
        if isinstance(v, tuple):
            op, vals = v
            out[attr] = [(MODIFY_ADD if op == "add" else MODIFY_DELETE, list(vals))]
        else:
            out[attr] = [(MODIFY_REPLACE, list(v))]
    return out


class Pipeline:
    """Send operations with up to `window` outstanding; `done(tag, result_dict)` is called for each."""

    def __init__(self, conn: Connection, window: int, done):
        self.conn = conn
        self.window = max(1, window)
        self.done = done
        self.pending = deque()

    def _collect(self):
        msgid, tag = self.pending.popleft()
        if msgid is None:          # ldap3 refused before sending (e.g. encoding error)
            self.done(tag, {"result": 80, "description": "other", "message": str(self.conn.last_error)})
            return
        try:
            _resp, result = self.conn.get_response(msgid, timeout=600)
        except Exception as exc:  # noqa: BLE001 - a failed operation is reported, not fatal
            result = {"result": 80, "description": "other", "message": str(exc)}
        self.done(tag, result)

    def _push(self, msgid, tag):
        self.pending.append((msgid, tag))
        while len(self.pending) >= self.window:
            self._collect()

    def add(self, tag, dn, attrs):
        self._push(self.conn.add(dn, attributes=attrs), tag)

    def modify(self, tag, dn, changes):
        self._push(self.conn.modify(dn, mods(changes)), tag)

    def delete(self, tag, dn):
        self._push(self.conn.delete(dn), tag)

    def flush(self):
        while self.pending:
            self._collect()
