"""The one LDAP client helper of Rollcall's own clients (command-line tools, web
console, SIS sync): they reach the server only through this package.

    connect(url, bind_dn=None, password=None, *, ca_file=None, start_tls=False,
            strategy=SYNC, ...) -> a bound (or anonymous) ldap3 Connection
    paged_search(conn, base, filter, attributes, scope=SUBTREE, page=500) -> [(dn, attrs)]
    check(conn, what)           the last result, or ClientError
    assertion_control(filter)   RFC 4528: a write that happens only if the entry matches
    job_lease(conn, job)        one run of a nightly job at a time, on any host (lease.py)
    ClientError(message, code)  every failure, as a sentence fit to show a person
    add_connection_options(parser) / connect_from_args(args, config)
                                the command-line tools' one set of connection options
"""
from .connection import (ASYNC, BASE, LEVEL, SUBTREE, SYNC, assertion_control, check, connect, endpoint,
                         naming_context, paged_search, ssl_context, tls_for)
from .errors import ClientError, bind_error, describe_exception, from_result
from .lease import JobBusy, job_lease
from .options import add_connection_options, config_defaults, find_config, connect_from_args, password_from_args, resolve

__all__ = ["ASYNC", "BASE", "LEVEL", "SUBTREE", "SYNC", "ClientError", "JobBusy", "assertion_control", "job_lease", "bind_error", "add_connection_options", "check",
           "connect", "connect_from_args", "describe_exception", "endpoint", "from_result", "naming_context",
           "paged_search", "password_from_args", "resolve", "config_defaults", "find_config", "ssl_context", "tls_for"]
