"""The district's username policy, shared by the SIS sync and by the server when a
sub-administrator creates the account of a new enrollee (so both make the same names).

A pattern is a str.format-like template over the person's names, folded to ASCII
letters and lower-cased:

    {first}      the given name, e.g. "josemaria" for "José María"
    {first:1}    its first N letters
    {last}       the surname ("obrien" for "O'Brien", "garcialopez" for "García-López")
    {last:5}     its first N letters
    {id}         the district ID (employeeNumber)
    {id:-3}      its last N characters

The default pattern "{first:1}{last}" gives jsmith. A collision appends 2, 3, …
(jsmith2), as the demo district and the non-employee accounts do. The result is cut
to `max_length` before the number is added, and is never empty ("user" is the
fallback stem).

    generate(given, sn, taken, pattern=DEFAULT_PATTERN, district_id="") -> str

`taken(uid) -> bool` decides whether a name is in use: the caller checks the uid
index and whatever record of issued names it keeps (a username once issued is
never given to another person).

`base_name` and `candidates` are what the sync and the server's account-create use:
collision counters that keep the whole name within max_length (jsmith, jsmith2, … ;
a long stem is cut to make room for the digits).
"""
import re
import unicodedata

from anyascii import anyascii

DEFAULT_PATTERN = "{first:1}{last}"
MAX_LENGTH = 20
_FOLD = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "đ": "d", "Đ": "D",
                       "ł": "l", "Ł": "L", "ı": "i", "œ": "oe", "Œ": "OE", "þ": "th"})
_FIELD = re.compile(r"\{(first|last|id)(?::(-?\d+))?\}")


class PatternError(ValueError):
    pass


def ascii_letters(s: str) -> str:
    """'Nguyễn' -> 'nguyen', "O'Brien" -> 'obrien', 'Østergaard' -> 'ostergaard',
    'Петров' -> 'petrov', '王' -> 'wang': Latin letters lose their marks; other
    scripts are transliterated (anyascii)."""
    s = unicodedata.normalize("NFKD", (s or "").translate(_FOLD))
    s = "".join(c if c.isascii() or _latin(c) else anyascii(c) for c in s if not unicodedata.combining(c))
    return "".join(c for c in s if c.isascii() and c.isalnum()).lower()


def _latin(c: str) -> bool:
    return "LATIN" in unicodedata.name(c, "")


def check_pattern(pattern: str):
    rest = _FIELD.sub("", pattern)
    if "{" in rest or "}" in rest:
        raise PatternError(f"username pattern {pattern!r}: unknown field (use {{first}}, {{last}}, {{id}})")
    if not _FIELD.search(pattern):
        raise PatternError(f"username pattern {pattern!r} uses no field")
    if re.search(r"[^A-Za-z0-9._-]", rest):
        raise PatternError(f"username pattern {pattern!r}: literal text may be letters, digits, '.', '_', '-'")


def stem(given: str, sn: str, pattern: str = DEFAULT_PATTERN, district_id: str = "",
         max_length: int = MAX_LENGTH) -> str:
    check_pattern(pattern)
    values = {"first": ascii_letters(given), "last": ascii_letters(sn), "id": ascii_letters(district_id)}

    def field(m):
        v = values[m.group(1)]
        if m.group(2) is not None:
            n = int(m.group(2))
            v = v[n:] if n < 0 else v[:n]
        return v

    out = _FIELD.sub(field, pattern).lower().strip("._-")
    return out[:max_length] or "user"


def generate(given: str, sn: str, taken, pattern: str = DEFAULT_PATTERN, district_id: str = "",
             max_length: int = MAX_LENGTH) -> str:
    base = stem(given, sn, pattern, district_id, max_length)
    uid, n = base, 1
    while taken(uid):
        n += 1
        uid = f"{base}{n}"
    return uid


def base_name(pattern: str, first: str, last: str, middle: str = "", district_id: str = "",
              max_length: int = MAX_LENGTH) -> str:
    name = stem(first, last, pattern, district_id, max_length)
    if name == "user" and district_id:
        name = ("user" + ascii_letters(district_id))[:max_length]  # nothing usable in the name
    return name


def candidates(base: str, max_length: int):
    """base, base2, base3, … each within max_length."""
    yield base
    n = 2
    while True:
        suffix = str(n)
        yield base[:max_length - len(suffix)] + suffix
        n += 1
