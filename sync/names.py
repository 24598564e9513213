"""Usernames for the sync: the shared rules of sync/usernames.py (also used by the
server's account-create operation), plus collision counters that keep the whole name
within max_length (jsmith, jsmith2, … ; a long stem is cut to make room for the digits).
"""
from __future__ import annotations

from .usernames import PatternError, ascii_letters, check_pattern, stem

__all__ = ["PatternError", "ascii_letters", "check_pattern", "base_name", "candidates"]


def base_name(pattern: str, first: str, last: str, middle: str = "", district_id: str = "",
              max_length: int = 20) -> str:
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
