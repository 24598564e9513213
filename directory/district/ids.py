"""The district ID (employeeNumber). The one definition of its syntax: by default six
digits, a letter or digit, three digits (e.g. 000123s045); a district whose SIS numbers
differently sets `sync.district_id.pattern` in config.yaml (a regular expression the
whole ID must match), which the server applies at start (configure) and the SIS sync
reads from the same key."""
import re

DEFAULT_PATTERN = r"[0-9]{6}[0-9A-Za-z][0-9]{3}"
DISTRICT_ID_PATTERN = DEFAULT_PATTERN   # the default (photo file names, the demo district)


def compile_pattern(pattern: str) -> re.Pattern:
    """The whole-ID regular expression of a pattern; ValueError names what is wrong."""
    try:
        rx = re.compile(rf"^(?:{pattern})$")
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None
    if rx.match(""):
        raise ValueError("matches an empty district ID")
    return rx


class _DistrictId:
    """DISTRICT_ID.match(text): the configured pattern (module-level, set once at start)."""

    def __init__(self, pattern):
        self.configure(pattern)

    def configure(self, pattern):
        self.pattern = pattern or DEFAULT_PATTERN
        self._rx = compile_pattern(self.pattern)

    def match(self, text):
        return self._rx.match(text)


DISTRICT_ID = _DistrictId(DEFAULT_PATTERN)


def configure(pattern: str | None):
    DISTRICT_ID.configure(pattern or DEFAULT_PATTERN)


def is_district_id(text: str) -> bool:
    return DISTRICT_ID.match(text) is not None
