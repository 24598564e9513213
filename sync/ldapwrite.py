"""Writes through ldap3 (ASYNC strategy): many operations on the wire at once, over a
connection from directory.client."""
from __future__ import annotations

from collections import deque

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE

from directory import client

ALREADY_EXISTS, NO_SUCH_OBJECT, NO_SUCH_ATTRIBUTE, VALUE_EXISTS = 68, 32, 16, 20


def connect(cfg, strategy=client.ASYNC):
    """The sync's bound connection (ClientError when it cannot be had). With ASYNC there
    is no socket receive timeout (see directory.client.connect): each response is
    awaited with its own timeout in Pipeline._collect."""
    return client.connect(cfg.server, cfg.bind_dn, cfg.password, ca_file=cfg.ca_file, start_tls=cfg.start_tls,
                          strategy=strategy, check_names=False, receive_timeout=600)


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

    def __init__(self, conn, window: int, done):
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
