"""Listeners, TLS and the shared state of all connections of one server process."""
import collections
import gc
import itertools
import logging
import resource
import signal
import time

from twisted.internet import defer, protocol, reactor, ssl
from twisted.internet.threads import deferToThreadPool
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from .. import passwords
from ..core.errors import LDAPError, ResultCode, result_name
from ..core.filterparse import filter_to_string
from ..core.identity import SESSION_TICKET, Identity, is_loopback, session_key
from .accesslog import format_kv, open_access_log
from .controls import SUPPORTED_CONTROLS
from .metrics import Metrics, listen as listen_metrics
from .protocol import SUPPORTED_EXTENSIONS, LDAPServerProtocol
from .writer import GroupCommitWriter

log = logging.getLogger("rollcall.server")


def tune_gc():
    """The entry cache is millions of lists and dicts: with the default thresholds the
    cyclic GC rescans them so often that it took ~45% of a large paged search. Objects
    made at start-up are frozen (never rescanned); young collections run less often."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _certificate_options(config):
    """Server-side TLS from the configured PEM certificate and key (TLS 1.2+). Raises
    if they cannot be read or the certificate does not match the key."""
    cert_pem = config.tls_cert.read_bytes()
    key_pem = config.tls_key.read_bytes()
    cert = ssl.PrivateCertificate.loadPEM(key_pem + b"\n" + cert_pem)
    options = ssl.CertificateOptions(
        privateKey=cert.privateKey.original,
        certificate=cert.original,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
    options.getContext()  # builds the context now: OpenSSL checks the key against the certificate
    return options


@implementer(IOpenSSLContextFactory)
class ReloadableTLS:
    """The TLS context of the ldaps:// listeners, StartTLS and the console: each new
    connection asks for the current one (getContext), so a reload (SIGHUP) serves the
    new certificate to new connections while open ones keep theirs."""

    def __init__(self, config):
        self.config = config
        self.current = _certificate_options(config)

    def getContext(self):
        return self.current.getContext()

    def reload(self) -> bool:
        try:
            new = _certificate_options(self.config)
        except Exception as exc:  # noqa: BLE001 - any unreadable or mismatched pair: keep the old one
            log.error("TLS certificate NOT reloaded (still serving the previous one): %s or %s: %s",
                      self.config.tls_cert, self.config.tls_key, exc)
            return False
        self.current = new
        log.info("TLS certificate reloaded from %s", self.config.tls_cert)
        return True


def tls_context(config):
    if not (config.tls_cert and config.tls_key):
        return None
    return ReloadableTLS(config)


def raise_fd_limit(max_connections: int):
    """limits.max_connections needs as many descriptors, and some for the store and
    the listeners: raise the soft limit towards the hard one if it is lower (as slapd
    sizes its descriptor table), or say that the limit will be hit first."""
    want = max_connections + 64
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            if new < want:
                log.warning("open files limit %d is below limits.max_connections (%d) + 64: "
                            "raise `ulimit -n`", new, max_connections)
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open files limit: %s", exc)


_SCOPES = ("base", "one", "sub", "children")
_SECRET_ATTRS = {"userpassword", "2.5.4.35"}
_HIDDEN = b"REDACTED"


def _redact(f: tuple) -> tuple:
    """The filter with every assertion value on userPassword replaced: a client that
    checks a password with a search filter must not leave it in the access log."""
    kind = f[0]
    if kind in ("and", "or"):
        return (kind, [_redact(x) for x in f[1]])
    if kind == "not":
        return (kind, _redact(f[1]))
    if kind == "present":
        return f
    attr = f[2] if kind == "ext" else f[1]
    if (attr or "").split(";")[0].lower() not in _SECRET_ATTRS:
        return f
    if kind == "sub":
        return (kind, f[1], _HIDDEN, [], None)
    if kind == "ext":
        return (kind, f[1], f[2], _HIDDEN, f[4])
    return (kind, f[1], _HIDDEN)


def describe(msg, fields: dict):
    """An operation's request in access-log fields: names, DNs and filters only. Never a
    value of an add, modify or compare, a bind password or an extended operation's
    payload (Password Modify's passwords, an activation code)."""
    op, req = msg.op, msg.request
    if op == 0:  # bind
        fields["dn"] = req.name
        fields["method"] = req.method if req.method == "simple" else f"sasl/{req.sasl_mechanism}"
    elif op == 3:  # search
        fields["base"] = req.base
        fields["scope"] = _SCOPES[req.scope] if 0 <= req.scope < 4 else req.scope
        text = filter_to_string(req.filter)
        if "assword" in text or "2.5.4.35" in text:  # rare: only then walk the filter again
            text = filter_to_string(_redact(req.filter))
        fields["filter"] = text
        fields["attrs"] = req.attributes or None
    elif op == 23:  # extended: the OID only
        fields["oid"] = req[0]
    elif isinstance(req, tuple) and req:
        fields["dn"] = req[0]
        if op == 6:  # modify: which attributes, not their values
            fields["attrs"] = sorted({name for _op, name, _values in req[1]})
        elif op == 8:  # add
            pairs = req[1].items() if isinstance(req[1], dict) else req[1]
            fields["attrs"] = sorted({name for name, _values in pairs})
        elif op == 12:  # modrdn
            fields["newrdn"] = req[1]
            fields["deleteoldrdn"] = bool(req[2])
            fields["newsuperior"] = req[3]
        elif op == 14:  # compare: the attribute, not the value
            fields["attr"] = req[1]


def bind_cache_key(directory, ndn: str, entry):
    """The account a verified password is cached under: the entry's id (what the store's
    invalidation names), the root DN by its DN; None for a DN with no entry."""
    if entry is not None:
        return entry.id
    if ndn == directory.root_ndn:
        return ("root", ndn)
    return None


class LDAPServerFactory(protocol.ServerFactory):
    def __init__(self, directory, config):
        self.directory = directory
        self.config = config
        self.connections = set()
        self.per_address = collections.Counter()   # open connections by client address
        self.binds_in_flight = collections.Counter()  # binds being verified by client address
        self._outboxes: list = []  # connections with answers for the end of this reactor turn
        self._outbox_call = None
        raise_fd_limit(config.max_connections)
        self.started = time.monotonic()
        self.conn_ids = itertools.count(1)
        # the access log, the metrics and the slow-search warning: with all three off an
        # operation costs one attribute test more (see LDAPServerProtocol.handle_pdu)
        self.access_log = open_access_log(config, reactor.callLater)
        self.slow_seconds = config.section("log")["slow_ms"] / 1000.0
        metrics = config.section("metrics")
        self.metrics = Metrics(self) if metrics["listen"] or metrics["monitor"] else None
        if self.metrics is not None and metrics["monitor"]:
            directory.monitor = self.metrics.monitor_entry
        self.observing = bool(self.access_log or self.metrics or self.slow_seconds)
        if self.access_log is not None:
            reactor.addSystemEventTrigger("after", "shutdown", self.access_log.close)
        self.tls_context = tls_context(config)
        self.tls_ports = set()
        directory.supported_controls = list(SUPPORTED_CONTROLS)
        directory.supported_extensions = [e for e in SUPPORTED_EXTENSIONS
                                          if self.tls_context is not None or e != "1.3.6.1.4.1.1466.20037"]
        # Hashing pool: argon2 and friends never run on the reactor thread.
        self.hash_pool = ThreadPool(1, config.hash_threads, name="rollcall-hash")
        # Password changes (policy checks with their history verifications, new hashes,
        # activation) in a pool of their own: a morning of resets at a large school
        # queues behind itself, never in front of the district's sign-ins.
        self.change_pool = ThreadPool(1, config.change_threads, name="rollcall-change")
        # One writer thread: SQLite takes one writer at a time anyway, and the
        # reactor never waits for an fsync; queued writes share one (group commit).
        self.write_pool = GroupCommitWriter(directory.store)
        # A store across the network (PostgreSQL) may make a read wait: reads then run in
        # a pool of their own, so a slow or unreachable database never stops the reactor
        # (a store on local disk answers from its cache and is read inline: faster).
        self.read_pool = (ThreadPool(1, config.read_threads, name="rollcall-read")
                          if getattr(directory.store, "remote", False) else None)
        # Passwords a slow hash (argon2, …) just accepted, as keyed digests: a repeated bind
        # of the account costs an HMAC (passwords.VerifiedCache). Every write that touches
        # an entry drops it, whichever worker or host made the write: the store's own
        # invalidation calls drop() with the ids its entry cache drops.
        pw = config.section("passwords")
        self.bind_cache = passwords.VerifiedCache(pw["verified_cache_seconds"], pw["verified_cache_entries"])
        if self.bind_cache.enabled and hasattr(directory.store, "invalidation_hooks"):
            directory.store.invalidation_hooks.append(self.bind_cache.drop)
        for pool in (self.hash_pool, self.change_pool, self.write_pool, self.read_pool):
            if pool is None:
                continue
            pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", pool.stop)

    def reload(self):
        """SIGHUP: reopen the access log (logrotate), reload the TLS certificate and key."""
        log.info("SIGHUP: reopening the access log, reloading the TLS certificate")
        if self.access_log is not None:
            self.access_log.reopen()
        if self.tls_context is not None:
            self.tls_context.reload()

    def connection_event(self, conn, event: str, reason: str | None = None):
        if self.access_log is not None:
            self.access_log.write({"conn": conn.conn_id, "event": event, "from": conn.peer, "tls": conn.tls,
                                   "reason": reason})
        if self.metrics is not None and event != "close":
            self.metrics.connections.inc()

    def op_done(self, conn, record, op_name: str, code: int):
        """An operation's result was sent: metrics, the access line, a slow search's warning."""
        elapsed = time.perf_counter() - record[1] if record is not None else 0.0
        if self.metrics is not None:
            self.metrics.observe(op_name, code, elapsed)
        slow = op_name == "search" and self.slow_seconds and elapsed >= self.slow_seconds
        if self.access_log is None and not slow:
            return
        fields = {"conn": conn.conn_id, "op": record[0].msgid if record is not None else None,
                  "from": conn.peer, "tls": conn.tls,
                  "who": (record[2] if record is not None else conn.ident.dn) or "anonymous",
                  "type": op_name}
        if record is not None:
            try:
                describe(record[0], fields)
            except Exception as exc:  # noqa: BLE001 - the line must never fail the answer already sent
                log.error("access log: cannot describe a %s request: %r", op_name, exc)
        fields["result"] = code
        fields["error"] = result_name(code) if code not in (0, 5, 6) else None
        if op_name == "search" and record is not None:
            fields["entries"] = record[3]
        fields["ms"] = round(elapsed * 1000, 3)
        if self.access_log is not None:
            self.access_log.write(fields)
        if slow:
            log.warning("slow search (%.0f ms >= log.slow_ms %g): %s", elapsed * 1000, self.slow_seconds * 1000,
                        format_kv(fields))

    def admit(self, conn) -> str | None:
        """Count a new connection in limits.max_connections(_per_address); or why not."""
        if len(self.connections) >= self.config.max_connections:
            return f"too many connections (limit {self.config.max_connections}); try again later"
        if self.per_address[conn.peer_host] >= self.config.max_connections_per_address:
            return (f"too many connections from {conn.peer_host} "
                    f"(limit {self.config.max_connections_per_address}); close some and try again")
        self.connections.add(conn)
        self.per_address[conn.peer_host] += 1
        return None

    def release(self, conn):
        self.connections.discard(conn)
        self.per_address[conn.peer_host] -= 1
        if self.per_address[conn.peer_host] <= 0:
            del self.per_address[conn.peer_host]

    def buildProtocol(self, addr):
        p = LDAPServerProtocol(self)
        p.factory = self
        return p

    def is_tls_listener(self, transport) -> bool:
        host = transport.getHost()
        return getattr(host, "port", None) in self.tls_ports

    def send_later(self, conn):
        """conn has answers for the end of this reactor turn (LDAPServerProtocol._write):
        they go out together, after every connection that was ready has been served."""
        self._outboxes.append(conn)
        if self._outbox_call is None:
            self._outbox_call = reactor.callLater(0, self._send_outboxes)

    def _send_outboxes(self):
        self._outbox_call = None
        conns, self._outboxes = self._outboxes, []
        for conn in conns:
            try:
                conn.send_outbox()
            except Exception:  # one failing connection must not hold the others' answers
                log.exception("sending answers to %s failed", conn.peer)

    def authenticate(self, name: str, password: bytes, peer_host: str, peer: str, tls: bool,
                     refreshed: bool = False):
        """A simple bind with a DN and a password, for LDAP connections and the web
        console alike: throttling of failed binds per (address, account) and per
        unknown address, lockout bookkeeping, rehash on success.
        Returns a Deferred firing the Identity, or failing with LDAPError."""
        try:
            got = self.authenticate_now(name, password, peer_host, peer, tls, refreshed)
        except Exception:
            return defer.fail()
        return defer.succeed(got) if isinstance(got, Identity) else got

    def authenticate_now(self, name: str, password: bytes, peer_host: str, peer: str, tls: bool,
                         refreshed: bool = False):
        """authenticate() without a Deferred where none is needed: the Identity at once
        (a fast hash on a local store), or a Deferred of it; raises LDAPError."""
        # binds being verified from one address: a client (or many connections of one)
        # may not queue hundreds of password hashes ahead of everyone else's
        in_flight = self.binds_in_flight.get(peer_host, 0)
        if in_flight >= self.config.max_binds_per_address:
            log.info("bind of %r from %s refused: %d binds from this address in progress", name, peer, in_flight)
            raise LDAPError(ResultCode.BUSY, "too many binds in progress from this address; "
                                             "wait for their results")
        d = self._authenticate(name, password, peer_host, peer, tls, refreshed)
        if isinstance(d, Identity):  # answered at once (a plain class: a cheap test)
            return d
        # in flight from now until it is answered (nothing else ran since the check above)
        self.binds_in_flight[peer_host] += 1

        def finished(result):
            self.binds_in_flight[peer_host] -= 1
            if self.binds_in_flight[peer_host] <= 0:
                del self.binds_in_flight[peer_host]
            return result

        return d.addBoth(finished)

    def read(self, fn, *args):
        """A Deferred of fn(*args), which reads the store: in the read pool when the
        store is across the network (refreshed first), else at once on this thread."""
        if self.read_pool is None:
            return defer.maybeDeferred(fn, *args)

        def in_pool():
            self.directory.store.refresh()
            return fn(*args)

        return deferToThreadPool(reactor, self.read_pool, in_pool)

    def _authenticate(self, name: str, password: bytes, peer_host: str, peer: str, tls: bool,
                      refreshed: bool = False):
        if password.startswith(SESSION_TICKET) and is_loopback(peer_host):
            return self._ticket(name, password[len(SESSION_TICKET):], peer, tls)
        # (from anywhere else a ticket is only a wrong password, counted as one)
        directory = self.directory
        policy = directory.policy
        cache = self.bind_cache

        def look_up():
            if self.read_pool is None and not refreshed:
                directory.store.refresh()  # the console signs in here without an LDAP PDU
            since = cache.generation()  # before the entry is read (VerifiedCache.remember)
            ndn, entry, hashes = directory.bind_lookup(name)
            # failed binds per (address, account), per unknown address: counted in the
            # store's throttles, shared by all workers and hosts (see PasswordPolicy)
            attempt = policy.bind_attempt(peer_host, ndn, policy.is_service(ndn))
            return ndn, entry, hashes, attempt, since

        def refused(f):
            f.trap(LDAPError)
            if f.value.code == ResultCode.UNWILLING_TO_PERFORM:
                log.info("bind refused dn=%r from %s: %s", name, peer, f.value.message)
            return f

        def verify(found):
            ndn, entry, hashes, attempt, _since = found
            slow = not hashes or any(passwords.is_slow(h) for h in hashes)
            key = bind_cache_key(directory, ndn, entry) if slow and cache.enabled else None
            # a password a slow hash accepted for this account minutes ago: one HMAC. Only
            # the hash is skipped: outcome() decides the bind exactly as for a full check
            cached = cache.check(key, password, hashes) if key is not None else None
            if cached is not None:
                d = defer.succeed(cached)
            elif not slow:
                # salted SHA (as migrated from OpenLDAP) costs about a microsecond: less than
                # the hand-off to a thread; only slow schemes (argon2, PBKDF2, crypt) go to the pool
                d = defer.succeed(directory.verify_any(password, hashes))
            else:
                d = deferToThreadPool(reactor, self.hash_pool, directory.verify_any, password, hashes)
            return d.addCallback(lambda matched: self.read(outcome, found, matched, key, cached is None)
                                 ).addCallback(done, found)

        def outcome(found, matched, key=None, verified=False):
            """The bind's result and the throttle bookkeeping (reads and counts in the store)."""
            ndn, entry, hashes, attempt, since = found
            try:
                ident = directory.bind_complete(ndn, entry, matched, peer, tls)
            except LDAPError as exc:
                if key is not None:
                    cache.drop((key,))  # a failed bind (any reason) forgets the account's password
                policy.bind_failed(attempt)
                log.info("bind refused dn=%r from %s: %s", name, peer,
                         "wrong password" if matched is None else directory.bind_refusal(entry))
                # a service account is never locked by failures (PasswordPolicy)
                record = entry is not None and matched is None and policy.records_failures(attempt)
                return None, exc, record, matched
            if verified and key is not None:
                cache.remember(key, matched, password, since)  # only slow schemes are kept
            policy.bind_succeeded(attempt)
            return ident, None, False, matched

        def in_writer(fn, *args):
            deferToThreadPool(reactor, self.write_pool, fn, *args).addErrback(
                lambda f: log.warning("%s after bind of %s failed: %s", fn.__name__, name, f.getErrorMessage()))

        def done(result, found):
            ident, exc, record, matched = result
            entry = found[1]
            if exc is not None:
                if record:
                    # answer only once the failure is recorded: the bind after the
                    # max_failures-th wrong one must find the account locked
                    recorded = deferToThreadPool(reactor, self.write_pool, directory.record_bind,
                                                 entry.id, False, peer)
                    recorded.addErrback(lambda f: log.warning("record_bind after bind of %s failed: %s",
                                                              name, f.getErrorMessage()))

                    def refuse(_, error=exc):
                        raise error

                    return recorded.addCallback(refuse)
                raise exc
            if entry is not None and "pwdFailureTime" in entry.attrs:
                in_writer(directory.record_bind, entry.id, True, peer)
            if entry is not None and directory.needs_rehash(matched):
                # the new hash is slow: the hash pool, whose short transaction takes the write lock
                deferToThreadPool(reactor, self.change_pool, directory.rehash_password, entry.id, matched,
                                  password).addErrback(lambda f: log.warning(
                                      "rehash after bind of %s failed: %s", name, f.getErrorMessage()))
            return ident

        if self.read_pool is None:
            # a store on local disk: look up and count on this thread; a fast hash (salted
            # SHA, about a microsecond) is verified here too, in one go with no Deferred
            # per step (the slow ones go to the hash pool, below)
            try:
                found = look_up()
            except LDAPError as exc:
                if exc.code == ResultCode.UNWILLING_TO_PERFORM:
                    log.info("bind refused dn=%r from %s: %s", name, peer, exc.message)
                raise
            entry, hashes = found[1], found[2]
            if entry is not None:
                card = directory.bind_card(entry)  # its hashes parsed once, kept with the entry
                if card.checks and not card.slow:
                    # the Identity, or a Deferred when a failure is being recorded first; raises
                    return done(outcome(found, card.match(password)), found)
            elif not any(passwords.is_slow(h) for h in hashes):  # the root DN's own hash
                return done(outcome(found, directory.verify_any(password, hashes)), found)
            return verify(found)
        return self.read(look_up).addErrback(refused).addCallback(verify)

    def _ticket(self, name: str, sid: bytes, peer: str, tls: bool):
        """The web console's bind for a session another host (or an earlier connection)
        signed in: live in the store, for this DN. The same Identity a password bind
        gives (restricted, locked accounts refused); no lockout bookkeeping: no password
        was tried. Anything else is invalidCredentials, like a wrong password."""
        directory = self.directory

        def look_up():
            if self.read_pool is None:
                directory.store.refresh()
            ndn, entry, _hashes = directory.bind_lookup(name)
            try:
                key = session_key(sid.decode("ascii"))
            except UnicodeDecodeError:
                return ndn, entry, None
            return ndn, entry, directory.store.session_load(key)

        def decide(found):
            ndn, entry, record = found
            try:
                same = record is not None and directory.normalize_dn(record["dn"]) == ndn
            except LDAPError:
                same = False
            if not same:
                log.info("bind refused dn=%r from %s: no live console session for it", name, peer)
                raise LDAPError(ResultCode.INVALID_CREDENTIALS, "")
            return directory.bind_complete(ndn, entry, b"session ticket", peer, tls)

        return self.read(look_up).addCallback(decide)

    def audit_bind(self, conn, who, ok: bool):
        name = who.dn if hasattr(who, "dn") else who
        log.info("bind %s dn=%r from %s", "ok" if ok else "failed", name, conn.peer)

    def install_sighup(self):
        """SIGHUP (logrotate's postrotate, a renewed certificate): reload() on the reactor."""
        signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload))

    def listen_metrics(self, slot: int = 0):
        url = self.config.section("metrics")["listen"]
        if url:
            listen_metrics(self, url, slot)

    def listen(self):
        """Open every configured listener; returns the listening ports."""
        ports = []
        for lst in self.config.listeners:
            if lst.scheme == "ldaps":
                port = reactor.listenSSL(lst.port, self, self.tls_context, interface=lst.host)
                self.tls_ports.add(port.getHost().port)
            else:
                port = reactor.listenTCP(lst.port, self, interface=lst.host)
            log.info("listening on %s://%s:%d", lst.scheme, lst.host, port.getHost().port)
            ports.append(port)
        return ports
