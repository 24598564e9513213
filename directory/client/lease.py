"""One run at a time of a nightly job, whichever host it starts on: a lease held as
an entry of the directory itself, so every client of any host sees the same one.

    with job_lease(conn, "photos-publish"):    # JobBusy if another run holds it
        ...

The lease is `cn=<job>,ou=jobs,<suffix>` (an applicationProcess) whose description
names its holder and when it runs out: "holder=<host>:<pid> expires=<unix time>".
Taking it is an add (entryAlreadyExists: held); a lease that ran out (its holder
crashed) is taken over by a modify asserting the old value (RFC 4528), so of two
runs taking it over at once exactly one wins; it is given back by a delete asserting
our own value. Only LDAPv3 and the assertion control: no store access, any host.
"""
from __future__ import annotations

import os
import socket
import time

from ldap3 import BASE, MODIFY_REPLACE
from ldap3.utils.conv import escape_filter_chars

from .connection import assertion_control, naming_context
from .errors import ClientError

JOBS_OU = "ou=jobs"
ALREADY_EXISTS, NO_SUCH_OBJECT, ASSERTION_FAILED = 68, 32, 122
DEFAULT_TTL = 6 * 3600  # a crashed run blocks the job at most this long (nightly jobs: under a day)


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


class job_lease:
    def __init__(self, conn, job: str, ttl: float = DEFAULT_TTL, clock=time.time):
        self.conn, self.job, self.ttl, self.clock = conn, job, ttl, clock
        self.dn = f"cn={job},{JOBS_OU},{naming_context(conn)}"
        self.value = ""

    def _value(self) -> str:
        return f"holder={_holder()} expires={int(self.clock() + self.ttl)}"

    def acquire(self):
        self.value = self._value()
        conn = self.conn
        conn.add(self.dn, ["applicationProcess"], {"cn": self.job, "description": self.value})
        code = conn.result.get("result")
        if code == 0:
            return self
        if code == NO_SUCH_OBJECT:
            raise ClientError(f"{self.dn.split(',', 1)[1]} is missing: a district administrator creates it once "
                              "(see the README, 'Nightly jobs'); it holds the jobs' locks", code)
        if code != ALREADY_EXISTS:
            raise ClientError(f"cannot take the lock of job {self.job}: "
                              f"{conn.result.get('message') or conn.result.get('description')}", code)
        conn.search(self.dn, "(objectClass=*)", BASE, attributes=["description"])
        current = ""
        if conn.result.get("result") == 0 and conn.response:
            values = conn.response[0].get("raw_attributes", {}).get("description") or [b""]
            current = values[0].decode("utf-8", "replace")
        holder, expires = _parse(current)
        if expires > self.clock():
            raise JobBusy(f"job {self.job} is already running ({holder}, lock held until "
                          f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(expires))})", ALREADY_EXISTS)
        # its holder ran out of time (crashed): take it over, if nobody else did meanwhile
        conn.modify(self.dn, {"description": [(MODIFY_REPLACE, [self.value])]},
                    controls=[assertion_control(f"(description={escape_filter_chars(current)})")])
        code = conn.result.get("result")
        if code == 0:
            return self
        if code in (ASSERTION_FAILED, NO_SUCH_OBJECT):
            raise JobBusy(f"job {self.job} was just started by another run", code)
        raise ClientError(f"cannot take over the lock of job {self.job}: "
                          f"{conn.result.get('message') or conn.result.get('description')}", code)

    def release(self):
        if self.value:
            # only our own lease: one taken over after ours ran out stays
            self.conn.delete(self.dn, controls=[assertion_control(f"(description={escape_filter_chars(self.value)})")])
            self.value = ""

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - the lease runs out by itself; the job's own error matters more
            pass
        return False
