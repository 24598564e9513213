"""One run at a time of a nightly job, whichever host it starts on: a lease held as
an entry of the directory itself, so every client of any host sees the same one.

    with job_lease(connection_of_its_own, "photos-publish"):   # JobBusy if held
        ...

The lease is `cn=<job>,ou=jobs,<suffix>` (an applicationProcess) whose description
names its holder and when it runs out: "holder=<host>:<pid> expires=<unix time>".
Taking it is an add (entryAlreadyExists: held). While the job runs, a thread renews
it every third of its time to live, so a run of any length keeps it and a crashed
run's lease runs out within `ttl` seconds; a holder on this same host whose process
is gone is taken over at once (a rerun right after a crash need not wait). Taking
over is a modify asserting the old value (RFC 4528): of two runs taking over at once
exactly one wins. It is given back by a delete asserting our own value, so a run
never removes a lease another run took over. LDAPv3 and the assertion control only:
no store access, any host. The connection is the lease's alone (the renewal thread
uses it).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from ldap3 import BASE, MODIFY_REPLACE
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from .connection import assertion_control, naming_context
from .errors import ClientError

log = logging.getLogger("rollcall.client")

JOBS_OU = "ou=jobs"
ALREADY_EXISTS, NO_SUCH_OBJECT, ASSERTION_FAILED = 68, 32, 122
DEFAULT_TTL = 120  # seconds a crashed run on another host holds the job (renewed while it runs)


class JobBusy(ClientError):
    """Another run holds the job's lease."""


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _parse(description: str) -> tuple[str, float]:
    fields = dict(part.split("=", 1) for part in description.split() if "=" in part)
    try:
        expires = float(fields.get("expires", "0"))
    except ValueError:
        expires = 0.0
    return fields.get("holder", "unknown"), expires


def _gone(holder: str) -> bool:
    """A holder on this host whose process no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, another user's
    return False


class job_lease:
    def __init__(self, conn, job: str, ttl: float = DEFAULT_TTL, clock=time.time, renew: bool = True):
        self.conn, self.job, self.ttl, self.clock, self.renew = conn, job, ttl, clock, renew
        self.dn = f"cn={escape_rdn(job)},{JOBS_OU},{naming_context(conn)}"
        self.value = ""
        self.lost = False  # renewal found the lease taken over (this run stalled past its ttl)
        self._stop = threading.Event()
        self._renewer = None
        self._lock = threading.Lock()  # the connection: renewal and release never at once

    def _value(self) -> str:
        return f"holder={_holder()} expires={int(self.clock() + self.ttl)}"

    def _result(self) -> int:
        return self.conn.result.get("result")

    def _why(self) -> str:
        return self.conn.result.get("message") or self.conn.result.get("description") or "refused"

    def acquire(self):
        self.value = self._value()
        conn = self.conn
        conn.add(self.dn, ["applicationProcess"], {"cn": self.job, "description": self.value})
        code = self._result()
        if code == NO_SUCH_OBJECT:
            raise ClientError(f"{self.dn.split(',', 1)[1]} is missing: a district administrator creates it once "
                              "(see the README, 'Nightly jobs'); it holds the jobs' locks", code)
        if code not in (0, ALREADY_EXISTS):
            raise ClientError(f"cannot take the lock of job {self.job}: {self._why()}", code)
        if code == ALREADY_EXISTS:
            self._take_over()
        if self.renew:
            self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.job}", daemon=True)
            self._renewer.start()
        return self

    def _take_over(self):
        conn = self.conn
        conn.search(self.dn, "(objectClass=*)", BASE, attributes=["description"])
        current = ""
        if self._result() == 0 and conn.response:
            values = conn.response[0].get("raw_attributes", {}).get("description") or [b""]
            current = values[0].decode("utf-8", "replace")
        holder, expires = _parse(current)
        if expires > self.clock() and not _gone(holder):
            raise JobBusy(f"job {self.job} is already running ({holder}, lock held until "
                          f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(expires))} unless renewed)",
                          ALREADY_EXISTS)
        # its holder ran out of time or died: take it, if nobody else did meanwhile
        conn.modify(self.dn, {"description": [(MODIFY_REPLACE, [self.value])]},
                    controls=[assertion_control(f"(description={escape_filter_chars(current)})")])
        code = self._result()
        if code in (ASSERTION_FAILED, NO_SUCH_OBJECT):
            raise JobBusy(f"job {self.job} was just started by another run", code)
        if code != 0:
            raise ClientError(f"cannot take over the lock of job {self.job}: {self._why()}", code)

    def _renew(self):
        while not self._stop.wait(self.ttl / 3):
            with self._lock:
                if not self.value:
                    return
                new = self._value()
                try:
                    self.conn.modify(self.dn, {"description": [(MODIFY_REPLACE, [new])]},
                                     controls=[assertion_control(f"(description={escape_filter_chars(self.value)})")])
                    code = self._result()
                except Exception as exc:  # noqa: BLE001 - the server away: try again at the next turn
                    log.warning("renewing the lock of job %s failed: %s", self.job, exc)
                    continue
                if code == 0:
                    self.value = new
                elif code in (ASSERTION_FAILED, NO_SUCH_OBJECT):
                    log.error("the lock of job %s was taken over by another run", self.job)
                    self.lost, self.value = True, ""
                    return

    def release(self):
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(10)
        with self._lock:
            if self.value:
                # only our own lease: one taken over after ours ran out stays
                self.conn.delete(self.dn, controls=[
                    assertion_control(f"(description={escape_filter_chars(self.value)})")])
                self.value = ""

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - the lease runs out by itself; the job's own error matters more
            pass
        return False
