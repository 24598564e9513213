"""Prometheus metrics and health checks, on a listener of their own (`metrics.listen`).

GET /metrics  the Prometheus text format (prometheus_client)
GET /healthz  liveness: the process answers (200 "ok")
GET /readyz   readiness: the store takes a write transaction (SQLite: the write lock
              and the file; PostgreSQL: the database answers, on a read-write server)

Counted on the hot path: operations by type and result, their latency. Everything
else (connections, cache, write queue, pools, store size) is read when scraped, so it
costs nothing between scrapes. With server.workers > 1 each worker listens on
port + its slot and reports its own process.
"""
import logging
import os
import time
from urllib.parse import urlparse

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.twisted import MetricsResource
from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThreadPool
from twisted.web import resource, server

from .. import passwords
from ..core.errors import result_name

log = logging.getLogger("rollcall.metrics")

READY_TIMEOUT = 5.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _backlog(pool) -> int:
    """Work waiting in a Twisted ThreadPool (not yet running)."""
    try:
        return pool._team.statistics().backloggedWorkCount
    except AttributeError:  # another pool type: nothing to say
        return 0


class Metrics:
    def __init__(self, factory):
        self.factory = factory
        self.registry = CollectorRegistry()
        self.ops = Counter("rollcall_operations", "LDAP operations answered, by type and result code",
                           ["type", "result"], registry=self.registry)
        self.latency = Histogram("rollcall_operation_seconds", "Time from request to result, by operation type",
                                 ["type"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.binds = Counter("rollcall_binds", "Simple binds by result", ["result"], registry=self.registry)
        self.connections = Counter("rollcall_connections", "Connections accepted", registry=self.registry)
        self.registry.register(_StateCollector(factory))
        # label lookups cached: .labels() takes a lock and builds a key each time
        self._children = {}

    def monitor_entry(self) -> dict:
        """cn=Monitor's attributes: each sample of /metrics as one `description`
        value in the text format (name{labels} value), histogram buckets left out."""
        values = []
        for family in self.registry.collect():
            for s in family.samples:
                if s.name.endswith(("_bucket", "_created")):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                values.append(f"{s.name}{{{labels}}} {s.value:g}".replace("{}", "").encode())
        return {"objectClass": [b"top", b"extensibleObject"], "cn": [b"Monitor"], "description": values}

    def observe(self, op: str, code: int, seconds: float):
        key = (op, code)
        children = self._children.get(key)
        if children is None:
            name = result_name(code)
            children = self._children[key] = (self.ops.labels(op, name), self.latency.labels(op),
                                              self.binds.labels(name) if op == "bind" else None)
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].inc()


class _StateCollector:
    """Figures read at scrape time from the server's state."""

    def __init__(self, factory):
        self.factory = factory

    def describe(self):
        return []

    def collect(self):
        f = self.factory
        yield GaugeMetricFamily("rollcall_connections_open", "Open LDAP connections", value=len(f.connections))
        store = f.directory.store
        hits, misses = getattr(store, "cache_hits", 0), getattr(store, "cache_misses", 0)
        c = CounterMetricFamily("rollcall_entry_cache_lookups", "Entry cache lookups by outcome", labels=["outcome"])
        c.add_metric(["hit"], hits)
        c.add_metric(["miss"], misses)
        yield c
        yield GaugeMetricFamily("rollcall_entry_cache_hit_ratio", "Entry cache hits / lookups since start",
                                value=hits / (hits + misses) if hits + misses else 0.0)
        cache = getattr(f, "bind_cache", None)
        if cache is not None:
            c = CounterMetricFamily("rollcall_bind_cache_lookups", "Verified-password cache lookups by outcome "
                                    "(a hit: a bind checked by HMAC instead of a slow hash)", labels=["outcome"])
            c.add_metric(["hit"], cache.hits)
            c.add_metric(["miss"], cache.misses)
            yield c
            yield GaugeMetricFamily("rollcall_bind_cache_entries", "Accounts in the verified-password cache",
                                    value=len(cache))
        yield CounterMetricFamily("rollcall_password_verifications_slow", "Verifications of a slow hash "
                                  "(argon2, PBKDF2, crypt) by this process: binds, console sign-ins, "
                                  "password history checks", value=passwords.slow_verifications)
        w = f.write_pool
        yield GaugeMetricFamily("rollcall_write_queue_depth", "Writes waiting for the writer thread",
                                value=w.queue_depth())
        yield CounterMetricFamily("rollcall_write_groups", "Group commits (one fsync each)", value=w.groups)
        yield CounterMetricFamily("rollcall_write_group_writes", "Writes committed in groups "
                                  "(divided by rollcall_write_groups: the mean group-commit size)", value=w.writes)
        yield GaugeMetricFamily("rollcall_write_group_size_last", "Writes in the last group commit",
                                value=w.last_group)
        g = GaugeMetricFamily("rollcall_pool_queue", "Work waiting for a thread, by pool", labels=["pool"])
        g.add_metric(["hash"], _backlog(f.hash_pool))
        g.add_metric(["change"], _backlog(f.change_pool))
        if f.read_pool is not None:
            g.add_metric(["read"], _backlog(f.read_pool))
        yield g
        path = getattr(store, "path", None)
        if path and path != ":memory:":
            size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
            yield GaugeMetricFamily("rollcall_store_bytes", "The SQLite store's files (database and WAL)",
                                    value=size)
        yield GaugeMetricFamily("rollcall_up_seconds", "Seconds since this process started",
                                value=time.monotonic() - f.started)


class _Text(resource.Resource):
    isLeaf = True

    def __init__(self, body=b"ok\n"):
        super().__init__()
        self.body = body

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return self.body


class _Ready(resource.Resource):
    """A write transaction in the writer thread (behind the queued writes, as a client's
    write would be): ready when it commits within READY_TIMEOUT."""
    isLeaf = True

    def __init__(self, factory):
        super().__init__()
        self.factory = factory

    def render_GET(self, request):
        store = self.factory.directory.store

        def check():
            with store.transaction() as tx:
                tx.get_meta("schema")

        d = deferToThreadPool(reactor, self.factory.write_pool, check)
        timer = reactor.callLater(READY_TIMEOUT, d.cancel)
        answered = []

        def answer(code, text):
            if timer.active():
                timer.cancel()
            if answered or request._disconnected:
                return
            answered.append(True)
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(text.encode() + b"\n")
            request.finish()

        def failed(f):
            why = f"no answer within {READY_TIMEOUT:g} s" if f.check(defer.CancelledError) else f.getErrorMessage()
            log.warning("readiness check failed: %s", why)
            answer(503, f"not ready: the store cannot take a write ({why})")

        d.addCallbacks(lambda _: answer(200, "ready"), failed)
        return server.NOT_DONE_YET


def listen(factory, url_text: str, slot: int = 0):
    """Open the metrics listener (`metrics.listen`; worker N: port + N)."""
    u = urlparse(url_text)
    root = resource.Resource()
    root.putChild(b"metrics", MetricsResource(registry=factory.metrics.registry))
    root.putChild(b"healthz", _Text())
    root.putChild(b"readyz", _Ready(factory))
    site = server.Site(root)
    site.log = lambda request: None  # scrapes every few seconds: not worth a line each
    port = reactor.listenTCP(u.port + slot, site, interface=u.hostname)
    log.info("metrics and health checks on http://%s:%d/metrics", u.hostname, port.getHost().port)
    return port
