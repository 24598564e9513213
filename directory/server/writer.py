"""The writer thread with group commit.

Writes queue up behind one fsync each (synchronous=FULL); with many clients, or one
pipelining client such as the SIS sync, most of a write's time was that fsync. The
writer takes every write already queued (up to MAX_GROUP), runs each in its own
savepoint of one transaction, commits once, and only then reports each result: an
acknowledged write is as durable as before, a failed one leaves nothing behind, and
an idle server commits each write at once as before.
"""
import queue
import threading

from twisted.python.failure import Failure

MAX_GROUP = 64


class GroupCommitWriter:
    """A one-thread pool for deferToThreadPool (callInThreadWithCallback/start/stop)."""

    def __init__(self, store, name="rollcall-write"):
        self.store = store
        self.name = name
        self._queue = queue.SimpleQueue()
        self._thread = None
        # for the metrics (read when scraped): group commits, writes in them, the last one's size
        self.groups = self.writes = self.last_group = 0

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self):
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def callInThreadWithCallback(self, onResult, func, *args, **kw):
        self._queue.put((onResult, func, args, kw))

    def _run(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._run_group(group)
            if stop:
                return

    def _run_group(self, group):
        self.groups += 1
        self.writes += len(group)
        self.last_group = len(group)
        results = []
        try:
            with self.store.group_commit():
                for _on_result, func, args, kw in group:
                    try:
                        results.append((True, func(*args, **kw)))
                    except BaseException:
                        results.append((False, Failure()))
        except BaseException:
            # the commit failed: nothing of the group is stored
            failure = Failure()
            results = [(False, failure if ok else result) for ok, result in results]
            results += [(False, failure)] * (len(group) - len(results))
        for (on_result, *_), (ok, result) in zip(group, results):
            try:
                on_result(ok, result)
            except Exception:
                pass
