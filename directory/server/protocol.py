"""The LDAP protocol front end: PDUs in, Directory calls, PDUs out.

Every request is decoded by our fast codec (directory.server.ber: one linear pass, add
and modify requests bounded by the limits.request_* caps, the root DN exempt). Reads
run on the reactor thread (they are index-driven and stream in batches); password
checks run in the hashing pool and writes in the single writer thread, so the reactor
never waits on a hash or an fsync.
"""
import functools
import ipaddress
import logging
import time

from twisted.internet import defer, protocol, reactor, tcp
from twisted.internet.threads import deferToThreadPool
from twisted.protocols.policies import TimeoutMixin

from ..core.accounts import accounts_of
from ..core.directory import ANONYMOUS, Identity, PartialResult, WriteOptions
from ..core import sorting
from ..core.errors import LDAPError, ResultCode
from ..passwords import is_hashed
from ..store.base import StoreUnavailable
from ..core.sorting import SortedCursor
from . import ber
from .controls import (
    ASSERTION, MANAGE_DSA_IT, PAGED_RESULTS, POST_READ, PPOLICY, PRE_READ, SORT_REQUEST, decode_paged, decode_read_attrs,
    decode_sort, encode_paged, encode_read_entry, encode_sort_result, ppolicy_response,
)

log = logging.getLogger("rollcall.ldap")

OP_BIND, OP_UNBIND, OP_SEARCH, OP_MODIFY, OP_ADD, OP_DELETE, OP_MODDN, OP_COMPARE, OP_ABANDON, OP_EXTENDED = (
    0, 2, 3, 6, 8, 10, 12, 14, 16, 23)
RESPONSE_OP = {OP_BIND: 1, OP_SEARCH: 5, OP_MODIFY: 7, OP_ADD: 9, OP_DELETE: 11, OP_MODDN: 13,
               OP_COMPARE: 15, OP_EXTENDED: 24}
OP_NAMES = {OP_BIND: "bind", OP_SEARCH: "search", OP_MODIFY: "modify", OP_ADD: "add", OP_DELETE: "delete",
            OP_MODDN: "modrdn", OP_COMPARE: "compare", OP_EXTENDED: "extended"}

STARTTLS = "1.3.6.1.4.1.1466.20037"
WHOAMI = "1.3.6.1.4.1.4203.1.11.3"
PASSWD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"
ACCOUNT_OP = "2.25.69814933526364736177629039217756273497.4.1"  # RollcallExop.1, directory/core/accounts.py
SUPPORTED_EXTENSIONS = [STARTTLS, WHOAMI, PASSWD_MODIFY, ACCOUNT_OP]

# Which controls make sense on which operation.
_CONTROL_OPS = {
    PAGED_RESULTS: {OP_SEARCH},
    SORT_REQUEST: {OP_SEARCH},
    ASSERTION: {OP_SEARCH, OP_COMPARE, OP_MODIFY, OP_DELETE, OP_MODDN},
    PRE_READ: {OP_MODIFY, OP_DELETE, OP_MODDN},
    POST_READ: {OP_ADD, OP_MODIFY, OP_MODDN},
    MANAGE_DSA_IT: {OP_SEARCH, OP_COMPARE, OP_MODIFY, OP_ADD, OP_DELETE, OP_MODDN},
    PPOLICY: {OP_BIND, OP_SEARCH, OP_COMPARE, OP_MODIFY, OP_ADD, OP_DELETE, OP_MODDN, OP_EXTENDED},
}

SEARCH_BATCH = 256  # candidates examined per reactor turn
MAX_READS_IN_FLIGHT = 4  # per connection, with a store across the network (read pool)
MAX_PAGED_SEARCHES = 16
PENDING_MAX = 16384  # octets of responses held for one send at the end of a read  # paged searches a connection may leave open


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_NO_CONTROLS: dict = {}  # a request's controls by OID, when it has none (never written to)


class _Search:
    """A running search on this connection (so abandon can stop it)."""

    __slots__ = ("msgid", "cursor", "abandoned", "paged", "page_size", "sort_keys", "collected", "sort_result")

    def __init__(self, msgid, cursor, paged=False, page_size=0):
        self.msgid = msgid
        self.cursor = cursor
        self.abandoned = False
        self.paged = paged
        self.page_size = page_size
        self.sort_keys = None     # server-side sorting: collecting the whole result first
        self.collected = None
        self.sort_result = None   # the sort response control for the searchResultDone


class LDAPServerProtocol(TimeoutMixin, protocol.Protocol):
    def __init__(self, server):
        self.server = server  # the LDAPServerFactory: directory, pools, TLS context, config
        self.directory = server.directory
        self.config = server.config
        self.buffer = bytearray()
        self.ident = ANONYMOUS
        self.peer = "unknown"
        self.tls = False
        self.searches: dict[int, _Search] = {}
        self.pages: dict[bytes, _Search] = {}
        self.page_counter = 0
        self.closed = False
        self.paused_for_tls = False
        self.request_limits = request_limits(self.config)
        # back-pressure (limits.write_timeout): the transport pauses us when more than its
        # buffer (64 KB) of responses waits to be sent; then no request is read or decoded
        # and no search produces entries until it has drained
        self.write_blocked = False
        self.blocked_timer = None
        self.parked: list[_Search] = []  # searches waiting for the client to read
        # a bind being verified: later requests wait (RFC 4511 4.2.1; slapd does the same),
        # so a connection has one bind in flight and what follows runs as the new identity
        self.binding = False
        self.reads_in_flight = 0  # reads waiting in the read pool (a store across the network)
        self.read_tail = defer.succeed(None)  # the last of them: the next starts after it
        self.reading = True       # whether the transport is reading from the socket
        self.admitted = False     # counted in the factory's connection limits
        self.resume_call = None
        self.conn_id = next(server.conn_ids)
        # operations awaiting their result, when observed (access log, metrics, slow
        # searches): msgid -> [message, start, bound DN, entries sent]
        self.ops: dict[int, list] = {}
        self.close_reason = None
        # responses made while the requests of one read are handled: sent together at its end
        self._pending: list | None = None
        self._pending_len = 0
        # answers held for the end of this reactor turn (see _write)
        self._outbox: list | None = None
        self._outbox_len = 0
        self.direct = False  # plain TCP: responses go straight to the socket (see _write)

    # ------------------------------------------------------------------ transport
    def connectionMade(self):
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self.peer_host = getattr(peer, "host", "")
        self.tls = self.server.is_tls_listener(self.transport)
        self.ident = Identity(peer=self.peer, tls=self.tls)
        refusal = self.server.admit(self)
        self.server.connection_event(self, "connect" if refusal is None else "refused", refusal)
        if refusal is not None:
            # limits.max_connections(_per_address): told why, closed; nothing is read
            log.warning("refusing connection from %s: %s", self.peer, refusal)
            self.closed = True
            if self.tls:
                # ldaps: the notice would wait for a TLS handshake the client may never do
                self.transport.abortConnection()
                return
            self.transport.write(ber.encode_notice_of_disconnection(ResultCode.BUSY, refusal))
            self.transport.loseConnection()
            return
        self.admitted = True
        self.direct = isinstance(self.transport, tcp.Connection) and not self.tls
        if isinstance(self.transport, tcp.Connection):
            # answers go out as made (one send per read's worth of them): Nagle would
            # hold a pipelining client's next answer until it acknowledges the last (as slapd)
            self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        if self.config.idle_timeout:
            self.setTimeout(self.config.idle_timeout)

    def timeoutConnection(self):
        """limits.idle_timeout passed with no request (and no search or bind running)."""
        if self.searches or self.binding or self.write_blocked or self.parked or self.reads_in_flight:
            self.resetTimeout()  # busy, or blocked on the client (limits.write_timeout applies)
            return
        log.info("closing idle connection from %s", self.peer)
        self.close_reason = "idle"
        self.send(ber.encode_notice_of_disconnection(ResultCode.UNAVAILABLE, "idle connection closed"))
        self.close()

    def close(self):
        """Close after what is written has been sent (the producer must go first:
        Twisted keeps a connection with a registered producer open)."""
        self._flush()
        self.send_outbox()
        self.closed = True
        if self.admitted:
            self.transport.unregisterProducer()
        if not self.reading:
            # a TLS handshake still to finish (after StartTLS) needs to read
            self.reading = True
            self.transport.resumeProducing()
        self.transport.loseConnection()

    def connectionLost(self, reason=protocol.connectionDone):
        self.setTimeout(None)
        self.closed = True
        for s in self.searches.values():
            s.abandoned = True
        self.searches.clear()
        self.pages.clear()
        self.parked.clear()
        self.buffer.clear()
        self._pending = self._outbox = None
        for call in (self.blocked_timer, self.resume_call):
            if call is not None and call.active():
                call.cancel()
        self.blocked_timer = self.resume_call = None
        if self.admitted:
            self.admitted = False
            self.server.release(self)
            self.server.connection_event(self, "close", self.close_reason)
        self.ops.clear()

    # ------------------------------------------------------------------ back-pressure
    # The transport calls these (we are its streaming producer): pause when its write
    # buffer is over 64 KB, resume once it has drained.
    def pauseProducing(self):
        if self.write_blocked or self.closed:
            return
        self.write_blocked = True
        self._update_reading()
        if self.config.write_timeout and self.blocked_timer is None:
            self.blocked_timer = reactor.callLater(self.config.write_timeout, self._write_timed_out)

    def resumeProducing(self):
        if not self.write_blocked:
            return
        self.write_blocked = False
        if self.blocked_timer is not None:
            if self.blocked_timer.active():
                self.blocked_timer.cancel()
            self.blocked_timer = None
        self._wake()

    def stopProducing(self):
        self.closed = True

    def _write_timed_out(self):
        """limits.write_timeout: the client left its responses unread that long. Its
        unread responses could never be sent: the connection is aborted, not drained."""
        self.blocked_timer = None
        if self.closed or not self.write_blocked:
            return
        log.warning("closing connection from %s: responses unread for %ds", self.peer, self.config.write_timeout)
        self.close_reason = "write timeout"
        self.closed = True
        self.transport.unregisterProducer()
        self.transport.abortConnection()

    def _holding(self) -> bool:
        """Whether requests must wait (not be read, not be decoded) for now."""
        # reads in the read pool: a few per connection, not a queue of every pipelined search
        return self.write_blocked or self.binding or self.reads_in_flight >= MAX_READS_IN_FLIGHT

    def _update_reading(self):
        """Read from the socket only while requests can be handled: a paused
        connection's requests stay in the kernel's buffers, not in our memory."""
        if self.closed:
            return  # close() decides (a TLS handshake may still have to read)
        want = not self._holding()
        if want != self.reading:
            self.reading = want
            if want:
                self.transport.resumeProducing()
            else:
                self.transport.pauseProducing()

    def _wake(self):
        """The reason to hold is gone: on the next reactor turn, continue the parked
        searches and the requests already received, then read again."""
        if self.resume_call is None and not self.closed:
            self.resume_call = reactor.callLater(0, self._resume)

    def _resume(self):
        self.resume_call = None
        if self.closed or self._holding():
            return
        if self.buffer:
            self._process()  # the requests received before the pause
        self._update_reading()
        if self.parked:
            # the parked searches go on at the next reactor turn: after this turn has read
            # what the client sent meanwhile (an abandon, say), which otherwise would wait
            # behind entries that fill the buffer again at once
            reactor.callLater(0, self._continue_parked)

    def _continue_parked(self):
        parked, self.parked = self.parked, []
        # oldest request first (with a read pool, searches park in the order their reads end)
        parked.sort(key=lambda state: state.msgid)
        for state in parked:
            self._continue_search(state)  # parks again if the client is still not reading

    # ------------------------------------------------------------------ framing
    def max_pdu(self) -> int:
        """limits.max_pdu once bound, limits.max_pdu_anonymous before (slapd's
        sockbuf_max_incoming_auth and sockbuf_max_incoming)."""
        return self.config.max_pdu_anonymous if self.ident.anonymous else self.config.max_pdu

    def dataReceived(self, data):
        if self.closed:
            return
        self.resetTimeout()
        self.buffer += data
        if self._holding():
            # the transport was paused, but a TLS layer may still hand over what it had
            # decrypted: keep it, within the size one request may have
            if len(self.buffer) > self.max_pdu() + 65536:
                self.protocol_error(f"{len(self.buffer)} octets sent while a request is in progress")
            else:
                self._update_reading()
            return
        self._process()

    def _process(self):
        """Handle the complete requests in the buffer, until one makes us hold; their
        responses go out together when they are done (one send for the lot)."""
        if self._pending is not None:
            self._process_requests()
            return
        self._pending, self._pending_len = [], 0
        try:
            self._process_requests()
        finally:
            self._flush()

    def _process_requests(self):
        buf, off = self.buffer, 0
        # other worker processes may have written: drop what they changed from our cache,
        # once for the requests at hand (all sent before this look; a store across the
        # network is refreshed in the read pool, by read())
        if self.server.read_pool is None and not self._holding():
            self.directory.store.refresh()
        try:
            while not self.closed and not self._holding():
                n = ber.next_pdu_length(buf, off, self.max_pdu())
                if n is None:
                    break
                pdu = bytes(buf[off : off + n])
                off += n
                self.handle_pdu(pdu)
        except ber.BERError as exc:
            self.protocol_error(str(exc))
            return
        if self.paused_for_tls:
            # StartTLS was answered in this read: whatever followed it in the same read
            # was sent in clear before the handshake (command injection, RFC 4511 4.14.1)
            if off < len(buf) and not self.closed:
                self.protocol_error("data received after StartTLS before TLS negotiation")
                return
            self.paused_for_tls = False  # from now on data arrives through TLS
        del buf[:off]
        self._update_reading()

    def protocol_error(self, why: str):
        """Malformed input: tell the client (Notice of Disconnection) and close this
        connection only; everyone else keeps being served."""
        log.warning("protocol error from %s: %s", self.peer, why)
        self.close_reason = "protocol error"
        if not self.closed:
            self.send(ber.encode_notice_of_disconnection(ResultCode.PROTOCOL_ERROR, why))
            self.close()
        self.buffer.clear()

    def send(self, data: bytes):
        if self.closed:
            return
        pending = self._pending
        if pending is None:
            self._write(data)
            return
        pending.append(data)
        self._pending_len += len(data)
        if self._pending_len >= PENDING_MAX:
            # large answers go at once: the transport's back-pressure (pauseProducing)
            # must see them before the next request is handled
            self._flush(keep=True)

    def _flush(self, keep=False):
        pending, self._pending, self._pending_len = self._pending, ([] if keep else None), 0
        if pending:
            self._write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _write(self, data: bytes):
        """Small answers on plain TCP wait for the end of this reactor turn
        (LDAPServerFactory.send_later), to go out with the answers to the other requests
        handled in the same turn: a client that keeps several connections busy (an SSO
        pool, a load balancer, a sync job) is then woken once for all of them, not once
        per answer, which cost its server a quarter of a simple bind's CPU. Anything
        larger, and everything while the client is not reading, goes at once, after
        what waits: answers keep their order."""
        if self.direct and not self.write_blocked:
            waiting = self._outbox
            if waiting is None:
                if len(data) < PENDING_MAX:
                    self._outbox, self._outbox_len = [data], len(data)
                    self.server.send_later(self)
                    return
            elif self._outbox_len + len(data) < PENDING_MAX:
                waiting.append(data)
                self._outbox_len += len(data)
                return
        self.send_outbox()
        self._send_now(data)

    def send_outbox(self):
        """What _write left for the end of the reactor turn, now."""
        waiting, self._outbox = self._outbox, None
        if waiting:
            self._send_now(waiting[0] if len(waiting) == 1 else b"".join(waiting))

    def _send_now(self, data: bytes):
        """To the transport; on plain TCP with nothing queued before it, straight to the
        socket first: what the kernel takes at once needs no write event (two epoll
        changes and a reactor turn per response); the rest is queued by Twisted as usual
        (back-pressure and limits.write_timeout unchanged)."""
        t = self.transport
        if self.direct and t.connected and not t.disconnecting and not t._tempDataLen \
                and t.offset == len(t.dataBuffer):
            try:
                n = t.socket.send(data)
            except OSError:  # would block, or the connection is failing: Twisted's write finds out
                n = 0
            if n >= len(data):
                return
            if n:
                data = data[n:]
        t.write(data)

    def result(self, msgid, op, code, message="", matched="", controls=None, extra=b"", before=b""):
        """before: responses (a search's last entries) sent in the same write."""
        self.send(before + ber.encode_result(msgid, RESPONSE_OP[op], code, matched, message, controls, extra))
        if self.server.observing:
            self.server.op_done(self, self.ops.pop(msgid, None), OP_NAMES.get(op, str(op)), code)

    def extended_result(self, msgid, code, message="", matched="", name=None, value=None):
        self.send(ber.encode_extended_response(msgid, code, matched, message, name=name, value=value))
        if self.server.observing:
            self.server.op_done(self, self.ops.pop(msgid, None), "extended", code)

    def error(self, msgid, op, exc):
        if isinstance(exc, StoreUnavailable):
            # the database away (restart, failover): the client may retry; we reconnect by ourselves
            log.warning("%s from %s: %s", OP_NAMES.get(op, op), self.peer, exc)
            exc = LDAPError(ResultCode.UNAVAILABLE, "the directory's database is unavailable; try again shortly")
        if isinstance(exc, LDAPError):
            if op == OP_EXTENDED:
                self.extended_result(msgid, exc.code, exc.message, exc.matched_dn)
            else:
                self.result(msgid, op, exc.code, exc.message, exc.matched_dn)
        else:
            log.error("internal error in %s from %s: %r", OP_NAMES.get(op, op), self.peer, exc, exc_info=exc)
            self.result(msgid, op, ResultCode.OTHER, "internal server error")

    # ------------------------------------------------------------------ dispatch
    def filter_limits(self):
        """limits.filter_max_terms / filter_max_depth for this connection's identity
        (None for the root DN): a fresh count for one filter."""
        if self.ident.is_root:
            return None
        return ber.FilterLimits(self.config.filter_max_terms, self.config.filter_max_depth)

    def decode_control_filter(self, value: bytes | None, what: str) -> tuple:
        """The filter a control carries (RFC 4528's assertion): malformed is
        protocolError, too large adminLimitExceeded, never an unhandled error."""
        try:
            return ber.decode_filter(value or b"", self.filter_limits())
        except ber.FilterLimitExceeded as exc:
            raise LDAPError(ResultCode.ADMIN_LIMIT_EXCEEDED, f"{what}: {exc.message}") from None
        except ber.BERError as exc:
            raise LDAPError(ResultCode.PROTOCOL_ERROR, f"{what}: {exc}") from None

    def handle_pdu(self, pdu: bytes):
        try:
            msg = ber.decode_message(pdu, None if self.ident.is_root else self.request_limits,
                                     self.filter_limits())
        except ber.RequestLimitExceeded as exc:
            self.over_limits(exc)
            return
        except ber.FilterLimitExceeded as exc:
            # refused before anything is evaluated; the connection goes on
            log.info("search filter refused from %s: %s", self.peer, exc.message)
            self.result(exc.msgid, OP_SEARCH, ResultCode.ADMIN_LIMIT_EXCEEDED, exc.message)
            return
        op = msg.op
        if self.paused_for_tls:
            # RFC 4511 4.14.1: nothing may follow StartTLS until TLS is up
            self.protocol_error("request received during TLS negotiation")
            return
        if op == OP_UNBIND:
            self.close_reason = "unbind"
            self.close()
            return
        if op == OP_ABANDON:
            running = self.searches.get(msg.request)
            if running is not None:
                running.abandoned = True
                self.ops.pop(msg.request, None)  # it gets no result
            if self.server.access_log is not None:
                self.server.access_log.write({"conn": self.conn_id, "op": msg.msgid, "from": self.peer,
                                              "type": "abandon", "target": msg.request})
            return  # abandon has no response
        if self.server.observing:
            self.ops[msg.msgid] = [msg, time.perf_counter(), self.ident.dn, 0]
        try:
            self.check_controls(op, msg.controls)
            if op == OP_BIND:
                self.do_bind(msg)
            elif op == OP_SEARCH:
                self.do_search(msg)
            else:
                self.do_other(msg)
        except Exception as exc:  # LDAPError, or a bug: answer this request, keep the connection
            self.error(msg.msgid, op, exc)

    def over_limits(self, exc: ber.RequestLimitExceeded):
        """A well-formed add/modify over a limits.request_* cap: answered, not decoded further."""
        if self.paused_for_tls:
            self.protocol_error("request received during TLS negotiation")
            return
        log.info("%s from %s refused: %s", OP_NAMES.get(exc.op, exc.op), self.peer, exc)
        self.result(exc.msgid, exc.op, ResultCode.ADMIN_LIMIT_EXCEEDED, str(exc))

    def check_controls(self, op, controls):
        for c in controls:
            allowed = _CONTROL_OPS.get(c.oid)
            if c.critical and (allowed is None or op not in allowed):
                raise LDAPError(ResultCode.UNAVAILABLE_CRITICAL_EXTENSION, f"critical control {c.oid} not supported")

    # ------------------------------------------------------------------ bind
    def do_bind(self, msg):
        req = msg.request
        msgid = msg.msgid
        # a bind abandons whatever the connection had running (RFC 4511 4.2.1)
        for s in self.searches.values():
            s.abandoned = True
            self.ops.pop(s.msgid, None)  # it gets no result
        self.pages.clear()
        if req.version != 3:
            raise LDAPError(ResultCode.PROTOCOL_ERROR, "requested protocol version not allowed")
        if req.method != "simple":
            self.ident = Identity(peer=self.peer, tls=self.tls)
            raise LDAPError(ResultCode.AUTH_METHOD_NOT_SUPPORTED, "SASL bind is not supported; use a simple bind over TLS")
        self.ident = Identity(peer=self.peer, tls=self.tls)
        if not req.name:
            if req.password:
                raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, "unauthenticated bind (password with no DN) disallowed")
            self.result(msgid, OP_BIND, ResultCode.SUCCESS)
            return
        if not req.password:
            raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, "unauthenticated bind (DN with no password) disallowed")
        if self.config.require_tls_for_bind and not self.tls and not _is_loopback(self.peer_host):
            raise LDAPError(ResultCode.CONFIDENTIALITY_REQUIRED, "TLS confidentiality required for simple binds")
        wants_ppolicy = bool(msg.controls) and any(c.oid == PPOLICY for c in msg.controls)

        def done(ident):
            self.ident = ident
            self.server.audit_bind(self, ident, True)
            ctrls = [ppolicy_response(error=2)] if wants_ppolicy and ident.restricted else None
            self.result(msgid, OP_BIND, ResultCode.SUCCESS, controls=ctrls)

        def failed(exc):
            self.server.audit_bind(self, req.name, False)
            self.error(msgid, OP_BIND, exc)

        def finished(_):
            # the requests that arrived meanwhile are read now, as the new identity
            self.binding = False
            self._wake()

        # nothing more is read from this connection until the password is checked: one
        # bind in flight per connection, never a queue of them (limits.max_binds_per_address
        # bounds them per client address)
        self.binding = True
        try:
            # this request's _process refreshed the store (other workers' writes) already
            got = self.server.authenticate_now(req.name, req.password, self.peer_host, self.peer, self.tls,
                                               refreshed=True)
        except Exception as exc:
            self.binding = False
            failed(exc)
            return
        if not isinstance(got, Identity):  # a Deferred: a slow hash, a store across the network
            got.addCallback(done)
            got.addErrback(lambda f: failed(f.value))
            got.addBoth(finished)
            return
        # answered at once (a fast hash on a local store): _process goes on by itself
        self.binding = False
        try:
            done(got)
        except Exception as exc:
            failed(exc)

    # ------------------------------------------------------------------ search
    def read(self, fn, then, msgid, op):
        """fn() reads the store, then(its result) answers. A store across the network
        is read in the read pool (refreshed first), so the reactor never waits on the
        database; a store on local disk is read inline, as fast as it gets."""
        pool = self.server.read_pool
        if pool is None:
            then(fn())  # an error goes to handle_pdu's handler: answered, connection kept
            return

        def in_pool():
            self.directory.store.refresh()
            return fn()

        def finished(result):
            self._read_done()
            return result

        self.reads_in_flight += 1
        d = self._in_read_pool(in_pool).addBoth(finished)
        d.addCallback(then).addErrback(lambda f: self.error(msgid, op, f.value))

    def _read_done(self):
        self.reads_in_flight -= 1
        if self.reads_in_flight == MAX_READS_IN_FLIGHT - 1:
            self._wake()  # reading and decoding the next requests may go on

    def _in_read_pool(self, fn, *args):
        """A Deferred of fn(*args) run in the read pool after this connection's earlier
        reads: one connection's answers keep the order of its requests, as with a
        local store, while other connections' reads run beside them."""
        result = defer.Deferred()

        def run(_):
            d = deferToThreadPool(reactor, self.server.read_pool, fn, *args)
            d.chainDeferred(result)
            return d  # the next read waits for this one

        self.read_tail.addCallback(run)
        return result

    def do_search(self, msg):
        req, msgid = msg.request, msg.msgid
        if not msg.controls and self.server.read_pool is None:
            # the common search (no controls, a store on local disk): opened and started
            # here, without the closures a read in the pool needs
            self._start_search(msg, _NO_CONTROLS, None, 0, b"", self._open_cursor(req))
            return
        controls = {c.oid: c for c in msg.controls}
        paged = controls.get(PAGED_RESULTS)
        size, cookie = decode_paged(paged.value) if paged is not None else (0, b"")
        assertion = (self.decode_control_filter(controls[ASSERTION].value, "assertion control")
                     if ASSERTION in controls else None)

        def open_cursor():
            if assertion is not None and not self.directory.assert_entry(self.ident, req.base, assertion):
                # RFC 4528 on search: the assertion applies to the base object
                raise LDAPError(ResultCode.ASSERTION_FAILED, "assertion control: filter did not match")
            if cookie:
                return None  # a later page: the cursor is the connection's
            return self._open_cursor(req, paged is not None)

        self.read(open_cursor, lambda cursor: self._start_search(msg, controls, paged, size, cookie, cursor),
                  msgid, OP_SEARCH)

    def _open_cursor(self, req, paged=False):
        return self.directory.search(self.ident, req.base, req.scope, req.filter, req.attributes,
                                     req.types_only, req.size_limit, req.time_limit, paged=paged)

    def _start_search(self, msg, controls, paged, size, cookie, cursor):
        req, msgid = msg.request, msg.msgid
        if cookie:
            state = self.pages.pop(cookie, None)
            if state is None:
                raise LDAPError(ResultCode.UNWILLING_TO_PERFORM, "paged results: unknown or expired cookie")
            if size == 0:  # RFC 2696: size 0 abandons the paged search
                self.result(msgid, OP_SEARCH, ResultCode.SUCCESS, controls=[encode_paged(0, b"")])
                return
            state.msgid, state.page_size, state.abandoned = msgid, size, False
            # the time limit bounds this page's request, not the whole paged search
            state.cursor.deadline = self.directory.search_deadline(self.ident, req.time_limit)
        else:
            state = (_Search(msgid, cursor, paged=True, page_size=size or 1 << 31) if paged is not None
                     else _Search(msgid, cursor))
            # entries come encoded (and are kept so on the cached entry, see SearchCursor)
            cursor.encode = ber.encode_entry_op
        sort = controls.get(SORT_REQUEST)
        # a later page of a sorted paged search was sorted (or refused) on its first page
        if sort is not None and state.sort_result is None and not isinstance(state.cursor, SortedCursor):
            if not self._start_sort(state, sort):
                return
        self.searches[msgid] = state
        self._continue_search(state)

    def _start_sort(self, state, control) -> bool:
        """RFC 2891: collect, then sort. A sort that cannot be done ends a search whose
        control is critical (unavailableCriticalExtension); otherwise the entries come
        unsorted. Either way the sort response control says why. False: search ended."""
        keys = decode_sort(control.value)  # malformed: protocolError, like any bad control
        try:
            state.sort_keys = sorting.sort_keys(self.directory, keys)
        except LDAPError as exc:
            state.sort_result = encode_sort_result(exc.code, keys[0][0] if keys else None)
            if control.critical:
                self.result(state.msgid, OP_SEARCH, ResultCode.UNAVAILABLE_CRITICAL_EXTENSION, exc.message,
                            controls=[state.sort_result])
                return False
            return True
        state.collected = []
        state.cursor.key_of = functools.partial(sorting.entry_key, self.directory, state.sort_keys)
        return True

    def _sorted(self, state, entries, error=None):
        """Entries collected so far (with their keys); at the end, sort and serve them."""
        state.collected.extend(entries)
        if len(state.collected) > self.config.sort_limit:
            self.searches.pop(state.msgid, None)
            self.result(state.msgid, OP_SEARCH, ResultCode.ADMIN_LIMIT_EXCEEDED,
                        f"server-side sort: more than {self.config.sort_limit} entries; narrow the search",
                        controls=[encode_sort_result(ResultCode.ADMIN_LIMIT_EXCEEDED)])
            return False
        if error is None and not state.cursor.done:
            return False
        sorted_cursor = SortedCursor(sorting.sort_entries(state.collected, state.sort_keys))
        sorted_cursor.deadline = state.cursor.deadline
        state.cursor, state.sort_keys, state.collected = sorted_cursor, None, None
        state.sort_result = encode_sort_result(ResultCode.SUCCESS)
        return True

    def _continue_search(self, state: _Search):
        if state.abandoned or self.closed:
            self.searches.pop(state.msgid, None)
            return
        if self.write_blocked or self.parked:
            # the client is not reading: produce nothing more until it does (resumeProducing);
            # behind searches parked before, so answers keep the order of the requests
            self.parked.append(state)
            return
        pool = self.server.read_pool
        if pool is None:
            self._search_step(state, *self._fetch(state))
            return
        # one batch of a search in the read pool at a time; abandon is seen when it returns
        self.reads_in_flight += 1

        def step(fetched):
            self._read_done()
            self._search_step(state, *fetched)

        self._in_read_pool(self._fetch, state).addCallback(step).addErrback(
            lambda f: log.error("search step from %s failed: %s", self.peer, f.getTraceback()))

    @staticmethod
    def _fetch(state: _Search):
        """The search's next batch: (entries, None), or (entries so far, what ended it):
        a PartialResult or another exception. Reads the store; never raises."""
        try:
            if state.sort_keys is not None:  # collecting a result to sort: everything first
                return state.cursor.next_batch(SEARCH_BATCH), None
            return state.cursor.next_batch(SEARCH_BATCH, state.page_size if state.paged else None), None
        except PartialResult as partial:
            return partial.entries, partial
        except Exception as exc:
            return [], exc

    def _search_step(self, state: _Search, entries, ended):
        msgid = state.msgid
        if state.abandoned or self.closed:
            self.searches.pop(msgid, None)
            return
        if ended is not None and not isinstance(ended, PartialResult):
            self.searches.pop(msgid, None)
            self.error(msgid, OP_SEARCH, ended)
            return
        if state.sort_keys is not None:
            if ended is not None:
                if self._sorted(state, entries, ended.error):
                    self._send_entries(msgid, state.cursor.entries)
                    self.searches.pop(msgid, None)
                    self.result(msgid, OP_SEARCH, ended.error.code, ended.error.message,
                                controls=[state.sort_result])
                return
            if not self._sorted(state, entries):
                if state.sort_keys is not None:  # more to collect (not refused)
                    reactor.callLater(0, self._continue_search, state)
                return
            # sorted: served from memory (SortedCursor reads no store)
            entries, ended = self._fetch(state)
            if ended is not None and not isinstance(ended, PartialResult):
                self.searches.pop(msgid, None)
                self.error(msgid, OP_SEARCH, ended)
                return
        cursor = state.cursor
        if ended is not None:
            data = self._encode_entries(msgid, entries)
            self.searches.pop(msgid, None)
            self.result(msgid, OP_SEARCH, ended.error.code, ended.error.message, before=data)
            return
        if cursor.done:  # the last entries and the result in one write
            data = self._encode_entries(msgid, entries)
            self.searches.pop(msgid, None)
            ctrls = [encode_paged(0, b"")] if state.paged else []
            if state.sort_result is not None:
                ctrls.append(state.sort_result)
            self.result(msgid, OP_SEARCH, ResultCode.SUCCESS, controls=ctrls or None, before=data)
            return
        self._send_entries(msgid, entries)
        if state.paged:
            state.page_size -= len(entries)
            if state.page_size <= 0:
                self._end_page(state)
                return
        # more candidates: yield to the reactor so other clients are served meanwhile
        reactor.callLater(0, self._continue_search, state)

    def _end_page(self, state):
        self.searches.pop(state.msgid, None)
        self.page_counter += 1
        cookie = b"%d" % self.page_counter
        self.pages[cookie] = state
        if len(self.pages) > MAX_PAGED_SEARCHES:
            # a client that never finishes its paged searches must not hold memory forever
            self.pages.pop(next(iter(self.pages)))
        ctrls = [encode_paged(0, cookie)] + ([state.sort_result] if state.sort_result is not None else [])
        self.result(state.msgid, OP_SEARCH, ResultCode.SUCCESS, controls=ctrls)

    def _send_entries(self, msgid, entries):
        if entries and not self.closed:
            self.send(self._encode_entries(msgid, entries))

    def _encode_entries(self, msgid, entries) -> bytes:
        """SearchResultEntry PDUs; an entry whose protocolOp the cursor encoded (bytes,
        see SearchCursor.encode) only gets its envelope."""
        if not entries:
            return b""
        record = self.ops.get(msgid)
        if record is not None:
            record[3] += len(entries)
        return b"".join(ber.encode_entry_message(msgid, attrs) if attrs.__class__ is bytes
                        else ber.encode_search_entry(msgid, dn, attrs) for dn, attrs in entries)

    # ------------------------------------------------------------------ the rest
    def do_other(self, msg):
        # the codec gave the fields, checked for shape (see ber.Message.request)
        op, msgid, fields = msg.op, msg.msgid, msg.request
        controls = {c.oid: c for c in msg.controls}
        if op == OP_EXTENDED:
            self.do_extended(msgid, fields, controls)
            return
        opts = self._write_options(controls)
        d = self.directory
        if op == OP_COMPARE:
            # a compare is a read, like a search
            dn, attr, value = fields

            def compare():
                if opts.assertion is not None and not d.assert_entry(self.ident, dn, opts.assertion):
                    raise LDAPError(ResultCode.ASSERTION_FAILED, "assertion control: filter did not match")
                return d.compare(self.ident, dn, attr, value)

            self.read(compare, lambda ok: self.result(
                msgid, op, ResultCode.COMPARE_TRUE if ok else ResultCode.COMPARE_FALSE), msgid, op)
            return
        write = {OP_ADD: d.add, OP_MODIFY: d.modify, OP_DELETE: d.delete, OP_MODDN: d.modify_dn}.get(op)
        if write is None:
            raise LDAPError(ResultCode.PROTOCOL_ERROR, f"unsupported operation {op}")
        pool = self.server.write_pool
        if op in (OP_ADD, OP_MODIFY) and _sets_clear_password(op, fields):
            # checking and hashing a clear password is slow: the whole write runs in
            # the password-change pool, which holds the write lock only for its short transaction
            pool = self.server.change_pool
        self.run_write(msgid, op, (write, self.ident, *fields, opts), pool)

    def _write_options(self, controls) -> WriteOptions:
        opts = WriteOptions()
        if ASSERTION in controls:
            opts.assertion = self.decode_control_filter(controls[ASSERTION].value, "assertion control")
        if PRE_READ in controls:
            opts.pre_read = decode_read_attrs(controls[PRE_READ].value)
        if POST_READ in controls:
            opts.post_read = decode_read_attrs(controls[POST_READ].value)
        return opts

    def run_write(self, msgid, op, call, pool):
        fn, *args = call
        d = deferToThreadPool(reactor, pool, fn, *args)

        def ok(result):
            ctrls = []
            if result.pre_read is not None:
                ctrls.append(encode_read_entry(PRE_READ, *result.pre_read))
            if result.post_read is not None:
                ctrls.append(encode_read_entry(POST_READ, *result.post_read))
            message = ""
            if op == OP_ADD and result.dn != args[1] and self._renamed(args[1], result.dn):
                # the server named the entry (an access request gets its number): say where
                message = f"added as {result.dn}"
            self.result(msgid, op, ResultCode.SUCCESS, message, controls=ctrls or None)

        d.addCallbacks(ok, lambda f: self.error(msgid, op, f.value))
        return d

    def _renamed(self, asked: str, got: str) -> bool:
        try:
            return self.directory.normalize_dn(asked) != self.directory.normalize_dn(got)
        except Exception:  # never fail the (already committed) write's response
            return True

    # ------------------------------------------------------------------ extended
    def do_extended(self, msgid, fields, controls):
        name, value = fields
        if name == STARTTLS:
            self.start_tls(msgid)
        elif name == WHOAMI:
            authz = self.directory.whoami(self.ident).encode()
            self.extended_result(msgid, ResultCode.SUCCESS, value=authz)
        elif name == PASSWD_MODIFY:
            self.password_modify(msgid, value)
        elif name == ACCOUNT_OP:
            # create for a new enrollee, issue activation codes, activate: JSON in, JSON out
            # activation verifies a code and hashes a password, issuing codes hashes them:
            # the password-change pool, whose short transactions take the write lock themselves
            d = deferToThreadPool(reactor, self.server.change_pool, accounts_of(self.directory).extended,
                                  self.ident, value)
            d.addCallbacks(lambda out: self.extended_result(msgid, ResultCode.SUCCESS, name=ACCOUNT_OP, value=out),
                lambda f: self.error(msgid, OP_EXTENDED, f.value))
        else:
            raise LDAPError(ResultCode.PROTOCOL_ERROR, f"{name}: extended operation not supported")

    def start_tls(self, msgid):
        if self.tls:
            raise LDAPError(ResultCode.OPERATIONS_ERROR, "TLS already started")
        ctx = self.server.tls_context
        if ctx is None:
            raise LDAPError(ResultCode.UNAVAILABLE, "TLS is not configured")
        if self.searches:
            raise LDAPError(ResultCode.OPERATIONS_ERROR, "operations are outstanding")
        self.extended_result(msgid, ResultCode.SUCCESS, name=STARTTLS)
        self._flush()  # the answer in clear, before the handshake
        self.send_outbox()
        self.direct = False
        self.transport.startTLS(ctx)
        self.tls = True
        self.ident.tls = True
        self.paused_for_tls = True  # until the end of this read (see dataReceived)

    def password_modify(self, msgid, value):
        user = old = new = None
        if value:
            try:
                r = ber.Reader(value)
                tag, content = r.read_tlv()
                if tag != 0x30:
                    raise ber.BERError("expected SEQUENCE")
                inner = ber.Reader(content)
                while not inner.at_end():
                    t, v = inner.read_tlv()
                    if t == 0x80:
                        user = v.decode("utf-8")
                    elif t == 0x81:
                        old = v
                    elif t == 0x82:
                        new = v
                    else:
                        raise ber.BERError(f"unexpected tag 0x{t:02x}")
            except (ber.BERError, UnicodeDecodeError) as exc:
                raise LDAPError(ResultCode.PROTOCOL_ERROR, f"password modify: malformed request ({exc})") from None
        # verification, policy and hashing before the write lock (see Directory.password_modify)
        d = deferToThreadPool(reactor, self.server.change_pool, self.directory.password_modify,
                              self.ident, user, old, new)

        def ok(result):
            val = None
            if result.generated_password is not None:
                val = ber.encode_seq(0x30, ber.encode_octets(0x80, result.generated_password.encode()))
            self.extended_result(msgid, ResultCode.SUCCESS, value=val)

        d.addCallbacks(ok, lambda f: self.error(msgid, OP_EXTENDED, f.value))


def _sets_clear_password(op, fields) -> bool:
    """Whether an add or modify carries a userPassword value in clear (to be hashed)."""
    if op == OP_ADD:
        pairs = fields[1].items() if isinstance(fields[1], dict) else fields[1]
    else:
        pairs = ((name, values) for _op, name, values in fields[1])
    return any(name.lower() in ("userpassword", "2.5.4.35") and any(not is_hashed(v) for v in values)
               for name, values in pairs)


def request_limits(config) -> ber.RequestLimits:
    """The limits.request_* caps of config.yaml."""
    limits = config.section("limits")
    return ber.RequestLimits(attributes=limits["request_attributes"],
                             values_per_attribute=limits["request_values_per_attribute"],
                             values=limits["request_values"], changes=limits["request_changes"])
