"""The in-memory entry: a DN and attributes keyed by canonical attribute name.

Values are ``bytes`` as on the wire. Entries handed out by the store are shared by
the cache, so they are never mutated: writers build a new attribute dict.
"""
import base64
import json


class Entry:
    __slots__ = ("id", "dn", "ndn", "attrs", "keys")

    def __init__(self, dn: str, ndn: str, attrs: dict, id: int | None = None):
        self.id = id
        self.dn = dn
        self.ndn = ndn
        self.attrs = attrs  # canonical name -> list[bytes]
        self.keys = {}  # canonical name -> frozenset of equality keys, filled lazily by the core

    def get(self, name: str) -> list:
        return self.attrs.get(name, [])

    def first(self, name: str, default=None):
        values = self.attrs.get(name)
        return values[0] if values else default

    def text(self, name: str, default=None):
        v = self.first(name)
        return v.decode("utf-8", "replace") if v is not None else default

    def copy_attrs(self) -> dict:
        return {k: list(v) for k, v in self.attrs.items()}

    def __repr__(self):
        return f"Entry({self.dn!r})"


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps would make one per call


def _values(values) -> list:
    vals = []
    for v in values:
        try:
            vals.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            vals.append({"b64": base64.b64encode(v).decode("ascii")})
    return vals


def encode_attrs(attrs: dict) -> str:
    """JSON with text values as strings and binary values as {"b64": …}."""
    out = {}
    for name, values in attrs.items():
        try:
            out[name] = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            out[name] = _values(values)
    return _ENCODER.encode(out)


_DECODER = json.JSONDecoder()


def decode_attrs(data: str) -> dict:
    # hot in large searches of uncached entries: reuse the dict, special-case one value
    out = _DECODER.decode(data)
    for name, values in out.items():
        if len(values) == 1:
            v = values[0]
            out[name] = [v.encode() if type(v) is str else base64.b64decode(v["b64"])]
        else:
            out[name] = [v.encode() if type(v) is str else base64.b64decode(v["b64"]) for v in values]
    return out
