"""What a page handler sees (Ctx) and returns (Response); form and upload parsing."""
from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote

from ..district.display import site_label


class PageError(Exception):
    """A plain sentence for the person, shown on an error page (or above a form)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def sentence(text: str) -> str:
    """A refusal's message as a sentence for the person (capital, final stop)."""
    text = (text or "").strip()
    if not text:
        return "The directory refused."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ")")) else text + "."


@dataclass
class Upload:
    field: str
    filename: str
    data: bytes
    content_type: str = ""


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict = field(default_factory=dict)


def redirect(url: str, status: int = 303) -> Response:
    return Response(status=status, headers={"Location": url})


def download(filename: str, content_type: str, data: bytes) -> Response:
    safe = "".join(c for c in filename if c.isalnum() or c in "._-") or "download"
    return Response(body=data, content_type=content_type,
                    headers={"Content-Disposition": f"attachment; filename=\"{safe}\""})


def url(path: str, **query) -> str:
    q = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items() if v not in (None, ""))
    return f"{path}?{q}" if q else path


class SessionEnded(Exception):
    """The directory refused a session's ticket: it ended meanwhile (on any host)."""


@dataclass
class Ctx:
    """One HTTP request, as the page handlers see it."""

    method: str
    path: str
    params: dict            # path parameters from the route
    query: dict             # name -> [str]
    form: dict              # name -> [str] (POST)
    files: list             # [Upload]
    session: object         # web.session.Session (None on public GETs without one)
    client: str             # the browser's address
    console: object         # web.server.Console
    set_session: object = None    # a new session to hand the browser (after sign-in)
    clear_session: bool = False   # forget the browser's session cookie (sign-out)

    def arg(self, name: str, default: str = "") -> str:
        v = self.form.get(name) or self.query.get(name)
        return v[0] if v else default

    def args(self, name: str) -> list:
        return list(self.form.get(name) or self.query.get(name) or [])

    def site(self, code: str) -> str:
        """A school as pages name it (display.site_label), from the names read at sign-in."""
        names = getattr(self.session, "site_names", None) or {}
        return site_label(code, names.get(code))

    @property
    def conn(self):
        s = self.session
        if s.conn is None and s.signed_in:
            # signed in on another host (or the connection was lost): Console._run holds s.lock
            s.conn = self.console.ticket_connect(s)
        return s.conn


def parse_body(content_type: str, body: bytes) -> tuple[dict, list]:
    """(form fields, uploads) of a POST body: url-encoded or multipart/form-data."""
    ctype = (content_type or "").lower()
    if ctype.startswith("application/x-www-form-urlencoded"):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise PageError("the form was not sent as UTF-8") from None
        return parse_qs(text, keep_blank_values=True), []
    if ctype.startswith("multipart/form-data"):
        return _multipart(content_type, body)
    if not body:
        return {}, []
    raise PageError("unsupported form encoding", 415)


def _multipart(content_type: str, body: bytes) -> tuple[dict, list]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise PageError("malformed multipart form")
    form, files = {}, []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        filename = part.get_filename()
        data = part.get_payload(decode=True) or b""
        if filename is not None:
            if filename or data:
                files.append(Upload(name, filename.replace("\\", "/").rsplit("/", 1)[-1], data,
                                    part.get_content_type()))
        else:
            charset = part.get_content_charset() or "utf-8"
            try:
                form.setdefault(name, []).append(data.decode(charset))
            except (UnicodeDecodeError, LookupError):
                raise PageError(f"field {name!r} is not valid text") from None
    return form, files
