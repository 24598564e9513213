"""Offline bulk load (`rollcall load`, like `slapadd -q`).

Checking an entry (DN normalisation, schema, index keys, JSON) is pure CPU, so it
runs in worker processes; the parent assigns ids and paths and inserts in large
batches inside one transaction, so a bad record anywhere loads nothing.
"""
import gc
import marshal
import multiprocessing
import os
import re
import signal
import stat
import threading
import time

from ..district.gentime import now_generalized
from ..ldif import LDIFError, raw_chunks, records_in
from .dn import DN, escape_value
from .errors import LDAPError, ResultCode
from .entry import encode_attrs
from .memberof import MEMBER_ATTRS

CHUNK = 500
# a DN that str(DN.parse(dn)) gives back unchanged: nothing to escape or unfold
_PLAIN_DN = re.compile(r'[A-Za-z][A-Za-z0-9-]*=[^\s,=+"\\<>;#\x00-\x1f\x7f]+'
                       r'(?:,[A-Za-z][A-Za-z0-9-]*=[^\s,=+"\\<>;#\x00-\x1f\x7f]+)*\Z')
_loader = None  # the BulkLoader, inherited by forked workers
# bytes a JSON string must escape; values without them go into the JSON as they are
_JSON_UNSAFE = re.compile(rb'[\x00-\x1f"\\]')


class LoadError(Exception):
    def __init__(self, line, dn, reason):
        super().__init__(f"line {line}: {dn}: {reason}")
        self.line, self.dn, self.reason = line, dn, reason


def _worker_init():
    # a parent that runs a Twisted reactor has its own SIGTERM/SIGINT handlers;
    # a worker must simply die when the pool ends it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _in_worker(result):
    """A piece's (rows, error) for the pool: the prepared rows travel as one marshal
    string (plain tuples of str and int: marshal reads them back in well under the
    time pickle takes, and the reading is the writer's, the process every row passes
    through)."""
    out, error = result
    return marshal.dumps(out), error


def _prepare_chunk_marshalled(chunk):
    return _in_worker(_prepare_chunk(chunk))


def _prepare_raw_marshalled(job):
    return _in_worker(_prepare_raw(job))


def _prepare_chunk(chunk):
    out = []
    for lineno, dn_text, raw_attrs in chunk:
        try:
            out.append(_loader.prepare(lineno, dn_text, raw_attrs))
        except LDAPError as exc:
            return out, (lineno, dn_text, exc.message or str(exc))
    return out, None


def _prepare_raw(job):
    """A piece of LDIF text, or where it is in the file (fd, offset, length): parse
    and prepare its records (in a worker)."""
    first_line, data, source = job
    if type(data) is tuple:
        fd, offset, length = data
        data = os.pread(fd, length, offset)
    out = []
    try:
        for lineno, dn_text, raw_attrs in records_in(data, source, first_line):
            try:
                out.append(_loader.prepare(lineno, dn_text, raw_attrs))
            except LDAPError as exc:
                return out, (lineno, dn_text, exc.message or str(exc))
    except LDIFError as exc:
        return out, (exc.line, "", exc.reason)
    return out, None


def _spans(pieces, fd, offset, source):
    """raw_chunks' pieces as (first line, (fd, offset, length), source): they are
    consecutive, so each starts where the one before ended."""
    for line, data in pieces:
        yield line, (fd, offset, len(data)), source
        offset += len(data)


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
        self.stamp = now_generalized()
        self.actor = directory.root_dn.encode()
        self._class_memo, self._index_memo = {}, {}  # objectClass sets recur: work them out once
        self._names = {}
        self._parents = {}  # parent DN as written -> its ndn
        self._uuids = []
        self._rdn_types = {}  # RDN attribute type as written -> AttributeType
        self._templates = {}  # attribute layout -> JSON template (_json)
        self.memberof_stats = None  # (member entries, seconds) of the last load
        self.phase_stats = {}  # the last load's closing steps: name -> wall seconds

    def _canonical_attrs(self, raw_attrs):
        """Directory.canonical_attrs, remembering each name as written."""
        names, schema = self._names, self.d.schema
        out = {}
        for name, values in raw_attrs.items() if isinstance(raw_attrs, dict) else raw_attrs:
            canon = names.get(name)
            if canon is None:
                canon = schema.canonical(name)
                if len(names) < 4096:
                    names[name] = canon
            got = out.get(canon)
            if got is None:
                out[canon] = list(values)
            else:
                got.extend(values)
        return out

    def _names_of(self, dn_text):
        """(DN to check the RDN's values with, user DN, ndn, its parent's ndn, leaf RDN
        key, (attribute, equality key, RDN key) of a one-value RDN or None). A plain DN
        (the bulk of a file) is normalised leaf only: siblings share their parent, whose
        ndn is worked out once; the leaf is new every time, so it bypasses the
        normaliser's caches (it would only evict what recurs)."""
        d = self.d
        if _PLAIN_DN.match(dn_text):
            leaf, _, parent_text = dn_text.partition(",")
            attr, _, value = leaf.partition("=")
            rdn = ((attr, value),)
            naming = self._leaf_key(attr, value)
            rdn_key = naming[2] if naming else d.dn._normalize_rdn_uncached(rdn)
            if parent_text:
                pndn = self._parents.get(parent_text)
                if pndn is None:
                    if len(self._parents) > 4096:
                        self._parents.clear()
                    pndn = self._parents[parent_text] = d.dn.normalize(parent_text)
                ndn = rdn_key + "," + pndn
            else:
                pndn, ndn = None, rdn_key
            if ndn == dn_text:
                ndn = dn_text  # one object: marshalled once on its way to the writer
            return DN((rdn,)), dn_text, ndn, pndn, rdn_key, naming
        dn = DN.parse(dn_text)
        # d.dn.normalize(), without its cache (every DN is new) and sharing the RDN keys
        rdn_keys = [d.dn.rdn_of(r) for r in dn.rdns]
        return dn, str(dn), ",".join(rdn_keys), ",".join(rdn_keys[1:]) or None, rdn_keys[0], None

    def _leaf_key(self, attr, value):
        """(canonical name, equality key, DNNormalizer's RDN key) of a one-value RDN
        with a text key, or None to ask the normaliser."""
        at = self._rdn_types.get(attr)
        if at is None:
            at = self.d.schema.attribute(attr)
            if at is None or len(self._rdn_types) > 256:
                return None
            self._rdn_types[attr] = at
        key = at.normalize_or_none(value.encode("utf-8")) if value else None
        if type(key) is not str:
            return None
        return at.name, key, f"{at.name.lower()}={escape_value(key)}"

    def _json(self, attrs) -> str:
        """encode_attrs(attrs), through a template per attribute layout when no value
        needs escaping (the same text: ensure_ascii off, so UTF-8 goes in as it is)."""
        values = [v for vs in attrs.values() for v in vs]
        if _JSON_UNSAFE.search(b" ".join(values)) is None:
            layout = tuple([(name, len(vs)) for name, vs in attrs.items()])
            template = self._templates.get(layout)
            if template is None:
                if len(self._templates) > 4096:
                    self._templates.clear()
                template = self._templates[layout] = ("{" + ",".join(
                    encode_attrs({name: [b""]})[1:-5].replace("%", "%%") + "[" + ",".join(['"%s"'] * n) + "]"
                    for name, n in layout) + "}").encode()
            try:
                return (template % tuple(values)).decode("utf-8")
            except (UnicodeDecodeError, TypeError, ValueError):  # not UTF-8: base64 the long way
                pass
        return encode_attrs(attrs)

    def _uuid(self) -> bytes:
        """A random (version 4) UUID like str(uuid.uuid4()); the randomness drawn a
        thousand at a time (one system call each for uuid4 was a tenth of the load)."""
        pool = self._uuids
        if not pool:
            h = os.urandom(16 * 1024).hex()
            pool.extend(f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-"
                        f"{'89ab'[int(h[i + 16], 16) & 3]}{h[i + 17:i + 20]}-{h[i + 20:i + 32]}".encode()
                        for i in range(0, len(h), 32))
        return pool.pop()

    def prepare(self, lineno, dn_text, raw_attrs):
        """One record to (line, dn, ndn, parent ndn, rdn key, JSON, index rows)."""
        d = self.d
        dn, dn_str, ndn, parent, rdn_key, naming = self._names_of(dn_text)
        if not d.in_naming_context(ndn):
            raise LDAPError(ResultCode.NO_SUCH_OBJECT, f"outside the naming context {d.suffix}")
        attrs = self._canonical_attrs(raw_attrs)
        if "userPassword" in attrs:
            attrs["userPassword"] = d._hash_passwords(attrs["userPassword"])
        if len(self._class_memo) > 4096:
            self._class_memo.clear()
            self._index_memo.clear()
        eq_keys = {}
        try:
            structural = d.schema.check_entry(attrs, keys=eq_keys, memo=self._class_memo)
        except LDAPError:
            d.check_naming(dn, attrs)  # a missing RDN value is the error to report first
            raise
        # the RDN's value among the entry's: check_entry has the keys at hand
        if naming is None or naming[1] not in eq_keys.get(naming[0], ()):
            d.check_naming(dn, attrs)
        stamp, actor = self.stamp, self.actor
        if "entryUUID" not in attrs:
            attrs["entryUUID"] = [self._uuid()]
        attrs.setdefault("creatorsName", [actor])
        attrs.setdefault("createTimestamp", [stamp])
        attrs.setdefault("modifiersName", [actor])
        attrs.setdefault("modifyTimestamp", [stamp])
        attrs.setdefault("structuralObjectClass", [structural.name.encode()])
        if ndn == d.suffix_ndn:
            parent = None
        return (lineno, dn_str, ndn, parent, rdn_key, self._json(attrs),
                d.index_rows(attrs, eq_keys, self._index_memo))

    def _prepared(self, fn, jobs):
        global _loader
        _loader = self
        if self.workers <= 1:
            for job in jobs:
                yield fn(job)
            return
        # a few pieces in flight per worker (eight: one descheduled worker must not
        # idle the other at once): when the writer is the slower side,
        # finished pieces would otherwise pile up in its memory (imap takes them all)
        slots, stop = threading.Semaphore(8 * self.workers), threading.Event()

        def bounded(jobs):
            for job in jobs:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():  # the pool is ending: its task thread must not wait here
                        return
                yield job

        ctx = multiprocessing.get_context("fork")
        pool = ctx.Pool(self.workers, initializer=_worker_init)
        try:
            in_worker = {_prepare_chunk: _prepare_chunk_marshalled, _prepare_raw: _prepare_raw_marshalled}[fn]
            for out, error in pool.imap(in_worker, bounded(jobs), chunksize=1):
                slots.release()
                yield marshal.loads(out), error
            pool.close()
        finally:
            stop.set()
            pool.terminate()
            pool.join()

    def load(self, records, progress=None) -> int:
        """Load (line, dn, attrs) records."""
        return self._load(self._prepared(_prepare_chunk, _chunks(records)), progress)

    def load_ldif(self, fh, source="<ldif>", progress=None) -> int:
        """Load an LDIF file: parsing happens in the workers too. From a regular file
        the workers (forked: they share its descriptor) read their pieces themselves,
        so the text is not copied through the pool's pipes."""
        fd = None
        if self.workers > 1:
            try:
                if stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    fd, start = fh.fileno(), fh.tell()
            except (AttributeError, OSError, ValueError):
                fd = None
        if fd is None:
            jobs = ((line, data, source) for line, data in raw_chunks(fh))
        else:
            jobs = _spans(raw_chunks(fh), fd, start, source)
        return self._load(self._prepared(_prepare_raw, jobs), progress)

    def _compute_memberof(self, tx, known=None, has_memberof=()):
        """memberOf is the server's to keep: compute it for every member of every group.
        known: {ndn: (id, path)} of the entries this load added; has_memberof: the ids
        among them that came with memberOf values (the others need no look-up)."""
        d, memberof = self.d, self.d.memberof
        # who names whom, read once: refresh() would otherwise decode every group
        # again for each of its members (groups of thousands of students)
        holders, members, unindexed = {}, set(), []
        for name in MEMBER_ATTRS:
            if "eq" not in d.index_kinds(name):
                unindexed.append(name)
                continue
            at = d.schema.attribute(name)
            # a DN-syntax key is the member's ndn: no need to normalise every value again
            as_ndn = at is not None and (at.equality or "").lower() == "distinguishednamematch"
            if not as_ndn:
                unindexed.append(name)
            for key, holder_id in tx.index_pairs(name.lower()):
                got = holders.get(key)
                if got is None:
                    holders[key] = got = set()
                    if as_ndn:
                        members.add(key)
                got.add(holder_id)
        if unindexed:
            for cls in ("groupofnames", "groupofuniquenames"):
                for gid in tx.index_eq("objectclass", cls):
                    group = tx.get(gid)
                    if group is not None:
                        members |= memberof.member_ndns(group.attrs, unindexed)
        if not members:
            return 0
        held_by = {}

        def holding(tx, ndn):
            out = []
            for holder_id in sorted(holders.get(ndn, ())):
                if holder_id not in held_by:
                    held_by[holder_id] = tx.get(holder_id)  # only its ndn and dn are used
                if held_by[holder_id] is not None:
                    out.append(held_by[holder_id])
            return out

        known = known or {}

        def locate(ndn):
            got = known.get(ndn)
            if got is not None and got[0] not in has_memberof:
                return got[0], None
            return tx.attr_json(ndn, "memberOf")

        # members holds every member of every group, so nothing below them to walk
        memberof.refresh_bulk(tx, members, holding, locate)
        return len(members)

    def _load(self, prepared_chunks, progress=None) -> int:
        # millions of long-lived objects and no cycles: collections would only rescan them
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._load_all(prepared_chunks, progress)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _load_all(self, prepared_chunks, progress=None) -> int:
        store = self.d.store
        count = 0
        with store.bulk() as tx:
            was_empty = tx.is_empty()
            next_id = tx.next_id()
            child_path = tx.child_path
            known = {}  # ndn -> (id, path) of entries loaded in this run
            has_memberof = set()
            if was_empty:
                tx.defer_id_index()
            for prepared, error in prepared_chunks:
                rows = []
                for lineno, dn, ndn, pndn, rdn_key, data, index_rows in prepared:
                    if ndn in known or (not was_empty and tx.get_by_ndn(ndn) is not None):
                        raise LoadError(lineno, dn, "entry already exists")
                    if pndn is None:
                        parent_id, path = None, child_path(None, rdn_key)
                    else:
                        parent = known.get(pndn) or (None if was_empty else tx.id_path(pndn))
                        if parent is None:
                            raise LoadError(lineno, dn, f"parent {str(DN.parse(dn).parent())!r} does not exist "
                                            "(parents must come before their children)")
                        parent_id, path = parent[0], child_path(parent[1], rdn_key)
                    known[ndn] = (next_id, path)
                    if '"memberOf":' in data:  # the key itself: inside a JSON string '"' is escaped
                        has_memberof.add(next_id)
                    rows.append((next_id, ndn, dn, parent_id, path, data, index_rows))
                    next_id += 1
                tx.insert_prepared(rows)
                count += len(rows)
                if error is not None:
                    raise LoadError(*error)
                if progress and count // 10000 != (count - len(rows)) // 10000:
                    progress(count)
            started = time.perf_counter()
            members = self._compute_memberof(tx, known, has_memberof)
            self.memberof_stats = (members, time.perf_counter() - started)
            started = time.perf_counter()
            if was_empty:
                tx.build_id_index()  # after memberOf: its rows go in without maintaining it
            tx.log(self.d.root_ndn, "load", "load", self.d.suffix, None, {"entries": count})
            self.phase_stats["indexes built at the end"] = time.perf_counter() - started
            started = time.perf_counter()
        self.phase_stats["commit and fsync"] = time.perf_counter() - started
        return count
