"""Offline bulk load (`rollcall load`, like `slapadd -q`).

Checking an entry (DN normalisation, schema, index keys, JSON) is pure CPU, so it
runs in worker processes; the parent assigns ids and paths and inserts in large
batches inside one transaction, so a bad record anywhere loads nothing.
"""
import multiprocessing
import os
import signal
import uuid

from .dn import DN, parent_ndn
from .errors import LDAPError, ResultCode
from .entry import encode_attrs

CHUNK = 500
_loader = None  # the BulkLoader, inherited by forked workers


class LoadError(Exception):
    def __init__(self, line, dn, reason):
        super().__init__(f"line {line}: {dn}: {reason}")
        self.line, self.dn, self.reason = line, dn, reason


def _worker_init():
    # a parent that runs a Twisted reactor has its own SIGTERM/SIGINT handlers;
    # a worker must simply die when the pool ends it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prepare_chunk(chunk):
    out = []
    for lineno, dn_text, raw_attrs in chunk:
        try:
            out.append(_loader.prepare(lineno, dn_text, raw_attrs))
        except LDAPError as exc:
            return out, (lineno, dn_text, exc.message or str(exc))
    return out, None


def _prepare_raw(job):
    """A piece of LDIF text: parse and prepare its records (in a worker)."""
    import io

    from ..ldif import LDIFError, records

    first_line, data, source = job
    out = []
    try:
        for lineno, dn_text, raw_attrs in records(io.BytesIO(data), source, first_line):
            try:
                out.append(_loader.prepare(lineno, dn_text, raw_attrs))
            except LDAPError as exc:
                return out, (lineno, dn_text, exc.message or str(exc))
    except LDIFError as exc:
        return out, (exc.line, "", exc.reason)
    return out, None


def _chunks(records):
    chunk = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class BulkLoader:
    def __init__(self, directory, workers=None):
        self.d = directory
        self.workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
        from .directory import now_generalized

        self.stamp = now_generalized()
        self.actor = directory.root_dn.encode()

    def prepare(self, lineno, dn_text, raw_attrs):
        """One record to (line, dn, ndn, parent ndn, rdn key, JSON, index rows)."""
        d = self.d
        dn = DN.parse(dn_text)
        ndn = d.dn.normalize(dn_text)
        if not d.in_naming_context(ndn):
            raise LDAPError(ResultCode.NO_SUCH_OBJECT, f"outside the naming context {d.suffix}")
        attrs = d.canonical_attrs(raw_attrs)
        if "userPassword" in attrs:
            attrs["userPassword"] = d._hash_passwords(attrs["userPassword"])
        d.check_naming(dn, attrs)
        d.schema.check_entry(attrs)
        stamp, actor = self.stamp, self.actor
        attrs.setdefault("entryUUID", [str(uuid.uuid4()).encode()])
        attrs.setdefault("creatorsName", [actor])
        attrs.setdefault("createTimestamp", [stamp])
        attrs.setdefault("modifiersName", [actor])
        attrs.setdefault("modifyTimestamp", [stamp])
        attrs.setdefault("structuralObjectClass", [d.schema.structural_class(attrs["objectClass"]).encode()])
        parent = parent_ndn(ndn) if ndn != d.suffix_ndn else None
        return (lineno, str(dn), ndn, parent, d.dn.rdn_of(dn.rdn), encode_attrs(attrs), d.index_rows(attrs))

    def _prepared(self, fn, jobs):
        global _loader
        _loader = self
        if self.workers <= 1:
            for job in jobs:
                yield fn(job)
            return
        ctx = multiprocessing.get_context("fork")
        pool = ctx.Pool(self.workers, initializer=_worker_init)
        try:
            yield from pool.imap(fn, jobs, chunksize=1)
            pool.close()
        finally:
            pool.terminate()
            pool.join()

    def load(self, records, progress=None) -> int:
        """Load (line, dn, attrs) records."""
        return self._load(self._prepared(_prepare_chunk, _chunks(records)), progress)

    def load_ldif(self, fh, source="<ldif>", progress=None) -> int:
        """Load an LDIF file: parsing happens in the workers too."""
        from ..ldif import raw_chunks

        jobs = ((line, data, source) for line, data in raw_chunks(fh))
        return self._load(self._prepared(_prepare_raw, jobs), progress)

    def _compute_memberof(self, tx):
        """memberOf is the server's to keep: compute it for every member of every group."""
        memberof = self.d.memberof
        members = set()
        for cls in ("groupofnames", "groupofuniquenames"):
            for gid in tx.index_eq("objectclass", cls):
                group = tx.get(gid)
                if group is not None:
                    members |= memberof.member_ndns(group.attrs)
        if members:
            memberof.refresh(tx, members)

    def _load(self, prepared_chunks, progress=None) -> int:
        store = self.d.store
        count = 0
        with store.bulk() as tx:
            was_empty = tx.conn.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is None
            next_id = (tx.conn.execute("SELECT max(id) FROM entries").fetchone()[0] or 0) + 1
            known = {}  # ndn -> (id, path) of entries loaded in this run
            for prepared, error in prepared_chunks:
                rows = []
                for lineno, dn, ndn, pndn, rdn_key, data, index_rows in prepared:
                    if ndn in known or (not was_empty and tx.get_by_ndn(ndn) is not None):
                        raise LoadError(lineno, dn, "entry already exists")
                    if pndn is None:
                        parent_id, path = None, rdn_key + "\x01"
                    else:
                        parent = known.get(pndn) or (None if was_empty else tx.id_path(pndn))
                        if parent is None:
                            raise LoadError(lineno, dn, f"parent {str(DN.parse(dn).parent())!r} does not exist "
                                            "(parents must come before their children)")
                        parent_id, path = parent[0], parent[1] + rdn_key + "\x01"
                    known[ndn] = (next_id, path)
                    rows.append((next_id, ndn, dn, parent_id, path, data, index_rows))
                    next_id += 1
                tx.insert_prepared(rows)
                count += len(rows)
                if error is not None:
                    raise LoadError(*error)
                if progress and count // 10000 != (count - len(rows)) // 10000:
                    progress(count)
            self._compute_memberof(tx)
            tx.log(self.d.root_ndn, "load", "load", self.d.suffix, None, {"entries": count})
        return count
