"""ClientError: every way an LDAP client of Rollcall can fail, as one sentence for a
person (never a traceback), with the LDAP result code when the server answered."""
from __future__ import annotations

import errno
import socket
import ssl

from ldap3.core.exceptions import LDAPException, LDAPStartTLSError

# result codes worth their own sentence
INVALID_CREDENTIALS = 49
CONFIDENTIALITY_REQUIRED = 13
STRONGER_AUTH_REQUIRED = 8
NO_SUCH_OBJECT = 32
INSUFFICIENT_ACCESS = 50
UNWILLING = 53


class ClientError(Exception):
    """`message` is fit to show; `code` the LDAP result code (None when the server never
    answered: unreachable, TLS, local input); `description` the result's name
    ("invalidCredentials" …) when there is one; `kind` one of "connect", "tls", "bind",
    "result", "input"."""

    def __init__(self, message: str, code: int | None = None, description: str = "", kind: str = "result"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.description = description
        self.kind = kind

    def __str__(self):
        return self.message


def _diagnostic(result: dict) -> str:
    msg = (result.get("message") or "").strip()
    return msg or result.get("description") or "refused"


def from_result(result: dict | None, what: str) -> ClientError:
    """`what: <diagnostic>` for a non-success result (what: "search of ou=sis,…")."""
    r = result or {}
    return ClientError(f"{what}: {_diagnostic(r)}" if what else _diagnostic(r), r.get("result"),
                       r.get("description") or "")


def bind_error(result: dict | None, url: str, bind_dn: str | None) -> ClientError:
    r = result or {}
    code = r.get("result")
    desc = r.get("description") or ""
    if code == INVALID_CREDENTIALS:
        return ClientError(f"the server refused the password for {bind_dn}", code, desc, "bind")
    if code in (CONFIDENTIALITY_REQUIRED, STRONGER_AUTH_REQUIRED):
        return ClientError(f"the server requires TLS to bind as {bind_dn}: use ldaps:// or StartTLS (-Z)",
                           code, desc, "bind")
    who = bind_dn or "anonymous"
    return ClientError(f"cannot bind as {who}: {desc} ({code}): {_diagnostic(r)}".rstrip(), code, desc, "bind")


def _root_cause(exc: BaseException):
    """The innermost OSError/SSLError behind ldap3's wrapping (it keeps them in args)."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLError):
            return e
        if isinstance(e, OSError) and not isinstance(e, LDAPException):
            return e
        for nxt in (e.__cause__, e.__context__, *[a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]):
            if nxt is not None:
                todo.append(nxt)
        for a in getattr(e, "args", ()):
            if isinstance(a, (list, tuple)):
                todo.extend(x for x in _flatten(a) if isinstance(x, BaseException))
    return None


def _flatten(items):
    for x in items:
        if isinstance(x, (list, tuple)):
            yield from _flatten(x)
        else:
            yield x


def _text(exc: BaseException) -> str:
    return " ".join(str(a) for a in _flatten(getattr(exc, "args", ())) if not isinstance(a, type)) or str(exc)


def describe_exception(exc: BaseException, url: str) -> ClientError:
    """A socket, TLS or ldap3 exception met while talking to `url`, as a ClientError."""
    if isinstance(exc, ClientError):
        return exc
    cause = _root_cause(exc) or exc
    text = _text(exc).lower()
    if isinstance(cause, ssl.SSLCertVerificationError) or "certificate verify failed" in text:
        reason = getattr(cause, "verify_message", "") or "certificate verify failed"
        return ClientError(f"cannot verify the TLS certificate of {url} ({reason}): give the CA that signed it "
                           "(--ca-file, or ca_file in the configuration)", None, "", "tls")
    if isinstance(cause, ssl.SSLError) or isinstance(exc, LDAPStartTLSError):
        return ClientError(f"TLS with {url} failed: {getattr(cause, 'reason', None) or _text(exc)}", None, "",
                           "tls")
    if isinstance(cause, ConnectionRefusedError) or "refused" in text:
        return ClientError(f"cannot reach {url}: connection refused", None, "", "connect")
    if isinstance(cause, socket.gaierror) or "name or service not known" in text \
            or "temporary failure in name resolution" in text:
        return ClientError(f"cannot reach {url}: unknown host", None, "", "connect")
    if isinstance(cause, (TimeoutError, socket.timeout)) or "timed out" in text:
        return ClientError(f"cannot reach {url}: timed out", None, "", "connect")
    if isinstance(cause, OSError) and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return ClientError(f"cannot reach {url}: {cause.strerror.lower()}", None, "", "connect")
    if isinstance(cause, (ConnectionResetError, BrokenPipeError)) or "closed" in text or "reset" in text:
        return ClientError(f"the connection to {url} was closed", None, "", "connect")
    if isinstance(cause, OSError) and cause.strerror:
        return ClientError(f"cannot reach {url}: {cause.strerror.lower()}", None, "", "connect")
    return ClientError(f"LDAP error with {url}: {_text(exc)}", None, "", "connect")
