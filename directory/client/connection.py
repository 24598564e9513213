"""connect / paged_search / check: how Rollcall's clients talk to the server (ldap3)."""
from __future__ import annotations

import ssl
from urllib.parse import urlparse

from ldap3 import ASYNC, BASE, LEVEL, NONE, SUBTREE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import compile_filter, parse_filter
from pyasn1.codec.ber import encoder

from .errors import NO_SUCH_OBJECT, ClientError, bind_error, describe_exception, from_result

PAGED_OID = "1.2.840.113556.1.4.319"

__all__ = ["ASYNC", "BASE", "LEVEL", "SUBTREE", "SYNC", "check", "connect", "endpoint", "naming_context",
           "paged_search", "ssl_context", "tls_for"]


def endpoint(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an ldap:// or ldaps:// URL; ClientError for anything else."""
    u = urlparse((url or "").strip())
    if u.scheme.lower() not in ("ldap", "ldaps") or not u.hostname:
        raise ClientError(f"{url!r} is not an LDAP URL (ldap://host:port or ldaps://host:port)", kind="input")
    try:
        port = u.port or (636 if u.scheme.lower() == "ldaps" else 389)
    except ValueError:
        raise ClientError(f"{url!r}: not a port number", kind="input") from None
    return u.scheme.lower(), u.hostname, port


def tls_for(url: str, ca_file: str | None = None, start_tls: bool = False):
    """ldap3 Tls for ldaps:// or StartTLS (the certificate is always verified: against
    `ca_file` when given, else the system's CAs); None for plain ldap://."""
    if endpoint(url)[0] != "ldaps" and not start_tls:
        return None
    return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file) if ca_file else None)


def ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The same verification for a client that wraps its own socket (sync's fast reader)."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def connect(url: str, bind_dn: str | None = None, password: str | None = None, *, ca_file: str | None = None,
            start_tls: bool = False, strategy=SYNC, connect_timeout: float = 10,
            receive_timeout: float | None = 60, check_names: bool = True, auto_referrals: bool = False):
    """An ldap3 Connection to `url`, TLS set up (ldaps:// or StartTLS), bound as
    `bind_dn` (anonymous when None). Raises ClientError with a sentence for a person:
    "cannot reach ldap://…: connection refused", "the server refused the password for
    <dn>", "the server requires TLS …", "cannot verify the TLS certificate of …".

    With the ASYNC strategy there is no socket receive timeout: ldap3's receiver thread
    retries a failed recv forever when one is set, spinning on a dead socket after the
    server went away (wait for each response with its own timeout instead)."""
    scheme, _host, _port = endpoint(url)
    if bind_dn and not password:
        # an empty password would be an unauthenticated bind (RFC 4513 5.1.2), i.e. anonymous
        raise ClientError(f"no password for {bind_dn}", kind="input")
    ldaps = scheme == "ldaps"
    server = Server(url.strip(), use_ssl=ldaps, tls=tls_for(url, ca_file, start_tls), get_info=NONE,
                    connect_timeout=connect_timeout)
    conn = Connection(server, user=bind_dn or None, password=password if bind_dn else None,
                      client_strategy=strategy, check_names=check_names, raise_exceptions=False,
                      receive_timeout=None if strategy == ASYNC else receive_timeout, auto_bind=False,
                      auto_referrals=auto_referrals)
    try:
        conn.open()
        if start_tls and not ldaps and not conn.start_tls():
            r = conn.result or {}
            raise ClientError(f"the server at {url} refused StartTLS: {r.get('message') or r.get('description')}",
                              r.get("result"), r.get("description") or "", "tls")
        if bind_dn and not conn.bind():
            raise bind_error(conn.result, url, bind_dn)
    except ClientError:
        _close(conn)
        raise
    except (LDAPException, OSError) as exc:
        _close(conn)
        raise describe_exception(exc, url) from None
    return conn


def _close(conn):
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - closing a connection that never opened
        pass


def check(conn, what: str, ok=(0,)) -> dict:
    """The last operation's result, or ClientError("<what>: <diagnostic>", code)."""
    r = conn.result or {}
    if r.get("result") not in ok:
        raise from_result(r, what)
    return r


def _url(conn) -> str:
    try:
        return conn.server.name
    except AttributeError:
        return "the directory"


def paged_search(conn, base: str, filter: str, attributes, scope=SUBTREE, page: int = 500, *,
                 absent_ok: bool = False, what: str | None = None, controls=None) -> list:
    """Every entry of a search, RFC 2696 pages of `page`: [(dn, {attribute lower-case:
    [raw bytes]})]. A non-success result is a ClientError ("search of <base>: …");
    with `absent_ok` a base that does not exist (or that the caller may not see, 32)
    gives []. Values are raw: ldap3's per-value formatting (check_names) is turned off
    for the search, it would double the time."""
    out, cookie = [], None
    check_names = conn.check_names
    conn.check_names = False
    try:
        while True:
            sent = conn.search(base, filter, scope, attributes=attributes, paged_size=page, paged_cookie=cookie,
                               controls=controls)
            if conn.strategy.sync:
                response, result = conn.response, conn.result
            else:
                response, result = conn.get_response(sent)
            result = result or {}
            code = result.get("result")
            if code not in (0, None):
                if code == NO_SUCH_OBJECT and absent_ok:
                    return out
                raise from_result(result, what or f"search of {base}")
            for e in response or ():
                if e.get("type") == "searchResEntry":
                    out.append((e["dn"], {k.lower(): v for k, v in e["raw_attributes"].items()}))
            ctrl = (result.get("controls") or {}).get(PAGED_OID)
            cookie = ctrl["value"]["cookie"] if ctrl else None
            if not cookie:
                return out
    except LDAPException as exc:
        raise describe_exception(exc, _url(conn)) from None
    finally:
        conn.check_names = check_names


def naming_context(conn) -> str:
    """The naming context (the root DSE's first namingContexts), cached on the connection."""
    got = getattr(conn, "_rollcall_suffix", None)
    if got is None:
        conn.search("", "(objectClass=*)", BASE, attributes=["namingContexts"])
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        vals = entries[0]["attributes"].get("namingContexts", []) if entries else []
        if not vals:
            raise ClientError("cannot read the directory's naming context from the root DSE",
                              (conn.result or {}).get("result") or None)
        got = conn._rollcall_suffix = vals[0]
    return got


def assertion_control(flt: str):
    """RFC 4528's assertion control (OID 1.3.6.1.1.12) for ldap3: the write it goes
    with happens only if the entry matches flt, else assertionFailed (122)."""
    value = encoder.encode(compile_filter(parse_filter(flt, None, True, True, None, False).elements[0]))
    return ("1.3.6.1.1.12", True, value)
