"""LDIF (RFC 2849) content records: a streaming reader that keeps line numbers for
error reports, and a writer. Only content records (no changetype) — what slapadd
and slapcat exchange."""
import base64
import io
import re

_SAFE_INIT = re.compile(rb"^[\x01-\x09\x0b-\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b-\x0c\x0e-\x7f]*$")


class LDIFError(Exception):
    def __init__(self, source, line, reason):
        super().__init__(f"{source}:{line}: {reason}")
        self.source, self.line, self.reason = source, line, reason


def read_ldif(stream, source="<ldif>", first_line=1):
    """Yield (line_number, dn, [(attr, [values])]) per record; stream yields bytes lines."""
    record, lineno = [], first_line - 1
    logical, logical_line = None, 0

    def flush_logical():
        if logical is not None:
            record.append((logical_line, logical))

    for raw in stream:
        lineno += 1
        line = raw.rstrip(b"\r\n")
        if line.startswith(b" "):
            if logical is None:
                raise LDIFError(source, lineno, "continuation line without a preceding line")
            logical += line[1:]
            continue
        flush_logical()
        logical = None
        if not line:
            if record:
                yield _record(record, source)
                record = []
            continue
        if line.startswith(b"#"):
            continue
        logical, logical_line = line, lineno
    flush_logical()
    if record:
        yield _record(record, source)


def _record(lines, source):
    first_line = lines[0][0]
    items = []
    for lineno, line in lines:
        colon = line.find(b":")
        if colon <= 0:
            raise LDIFError(source, lineno, "expected 'attribute: value'")
        name = line[:colon].decode("ascii", "replace").strip()
        rest = line[colon + 1 :]
        if rest.startswith(b":"):
            try:
                value = base64.b64decode(rest[1:].strip(), validate=True)
            except Exception:
                raise LDIFError(source, lineno, f"{name}: invalid base64 value") from None
        elif rest.startswith(b"<"):
            raise LDIFError(source, lineno, f"{name}: URL values are not supported")
        else:
            value = rest.lstrip(b" ")
        items.append((lineno, name, value))
    if items and items[0][1].lower() == "version":
        items = items[1:]
        if not items:
            return None
    if not items or items[0][1].lower() != "dn":
        raise LDIFError(source, first_line, "record does not start with dn:")
    dn_line, _, dn_value = items[0]
    try:
        dn = dn_value.decode("utf-8")
    except UnicodeDecodeError:
        raise LDIFError(source, dn_line, "dn is not UTF-8") from None
    attrs: dict[str, list] = {}
    order = []
    for lineno, name, value in items[1:]:
        if name.lower() in ("changetype", "control"):
            raise LDIFError(source, lineno, "change records are not accepted here (content records only)")
        key = name.lower()
        if key not in attrs:
            attrs[key] = (name, [])
            order.append(key)
        attrs[key][1].append(value)
    return dn_line, dn, [attrs[k] for k in order]


def records(stream, source="<ldif>", first_line=1):
    for rec in read_ldif(stream, source, first_line):
        if rec is not None:
            yield rec


_NAMES: dict[bytes, tuple] = {}  # attribute name as written -> (name, lowercase name)


def _plain_record(rec, line):
    """A record with no folding, comments, base64, URLs or CRs (the caller checked):
    (line, dn, [(attr, [values])]) as _record gives, or None to leave it to _record."""
    attrs = {}
    dn = None
    names_get = _NAMES.get
    for text in rec.split(b"\n"):
        raw, colon, value = text.partition(b":")
        if not colon or not raw:
            return None
        names = names_get(raw)
        if names is None:
            name = raw.decode("ascii", "replace").strip()
            names = (name, name.lower())
            if len(_NAMES) < 4096:
                _NAMES[raw] = names
        if value[:1] == b" ":
            value = value.lstrip(b" ")
        if dn is None:
            if names[1] != "dn":
                return None
            try:
                dn = value.decode("utf-8")
            except UnicodeDecodeError:
                return None
            continue
        got = attrs.get(names[1])
        if got is None:
            if names[1] in ("changetype", "control"):
                return None
            attrs[names[1]] = (names[0], [value])
        else:
            got[1].append(value)
    return line, dn, list(attrs.values())


def records_in(data: bytes, source="<ldif>", first_line=1):
    """records() of an in-memory piece. Plain records (the bulk of a slapcat file)
    take a quick path; anything else goes through the general reader."""
    n = len(data)
    pos, line = 0, first_line
    while True:
        while pos < n and data[pos] == 0x0A:  # blank lines
            pos += 1
            line += 1
        if pos >= n:
            return
        end = data.find(b"\n\n", pos)
        if end < 0:
            end = n
        rec = data[pos:end]
        if rec.endswith(b"\n"):
            rec = rec[:-1]
        got = None
        if not (b"\r" in rec or b"\n " in rec or b"\n#" in rec or b"::" in rec or b":<" in rec
                or rec[0] in b" #"):
            got = _plain_record(rec, line)
        if got is not None:
            yield got
        else:
            # a blank line ends a record, so the general reader starts fresh here
            yield from records(io.BytesIO(rec + b"\n"), source, line)
        line += rec.count(b"\n") + 1
        pos = end + 1


_BLOCK = 1 << 22


def raw_chunks(fh, min_bytes=256 * 1024):
    """Split an LDIF file into (first line number, bytes) pieces at record
    boundaries (a blank line), so records can be parsed in parallel."""
    line, pending = 1, b""
    while True:
        block = fh.read(_BLOCK)
        data = pending + block
        if not block:
            if data.strip():
                yield line, data
            return
        cut = max(data.rfind(b"\n\n"), data.rfind(b"\n\r\n"))
        if cut < 0 or cut < min_bytes and len(block) == _BLOCK:
            pending = data
            continue
        piece, pending = data[: cut + 1], data[cut + 1 :]
        # hand out pieces of about min_bytes so every worker gets work early
        start = 0
        while start < len(piece):
            end = piece.find(b"\n\n", start + min_bytes)
            end = len(piece) if end < 0 else end + 1
            yield line, piece[start:end]
            line += piece.count(b"\n", start, end)
            start = end


def _line(name: str, value: bytes) -> str:
    if value and _SAFE_INIT.match(value) and not value.endswith(b" "):
        text = f"{name}: {value.decode('ascii')}"
    else:
        text = f"{name}:: {base64.b64encode(value).decode('ascii')}"
    # fold at 76 columns as slapcat does
    if len(text) <= 76:
        return text + "\n"
    out = [text[:76]]
    for i in range(76, len(text), 75):
        out.append(" " + text[i : i + 75])
    return "\n".join(out) + "\n"


def format_entry(dn: str, attrs) -> str:
    parts = [_line("dn", dn.encode("utf-8"))]
    for name, values in attrs:
        for v in values:
            parts.append(_line(name, v))
    return "".join(parts) + "\n"
