"""userPassword storage schemes, compatible with values written by OpenLDAP and 389-DS.

Stored values are ``bytes`` of the form ``{SCHEME}data`` (RFC 3112 style); a value
without a ``{...}`` prefix is a legacy cleartext password.  Scheme names are matched
case-insensitively, as slapd does.

Verification (``verify``):

=====================  ===============================================================
``{ARGON2}``           PHC string ``$argon2id|argon2i|argon2d$v=19$m=..,t=..,p=..$salt$hash``
                       (OpenLDAP slapd-argon2; argon2-cffi writes the same string)
``{SSHA}`` ``{SHA}``   base64(sha1(pw + salt) + salt) / base64(sha1(pw))
``{SSHA256}`` ...      same for SHA-256/384/512 (OpenLDAP pw-sha2, 389-DS)
``{SMD5}`` ``{MD5}``   same for MD5, verify only
``{PBKDF2-SHA512}``    OpenLDAP contrib pw-pbkdf2 / passlib / 389-DS 2.x:
``{PBKDF2-SHA256}``    ``<iterations>$<ab64 salt>$<ab64 dk>``, ab64 = base64 with '.'
``{PBKDF2-SHA1}``      for '+' and no padding; dk is one digest long.
``{PBKDF2}``           (= SHA-1)
``{PBKDF2_SHA256}``    389-DS legacy: base64(4-byte BE iterations + 64-byte salt +
                       256-byte PBKDF2-HMAC-SHA256 output)
``{CRYPT}``            ``$6$``/``$5$`` SHA-crypt and ``$1$`` MD5-crypt in pure Python;
                       ``$2a$``/``$2b$``/``$2y$`` bcrypt only if the optional ``bcrypt``
                       package is importable.  DES crypt, yescrypt (``$y$``) and
                       scrypt (``$7$``) are not supported and never match.
=====================  ===============================================================

Hashing (``Hasher``): ARGON2 (argon2id, the default; its parameters are justified in
Hasher's docstring), PBKDF2-SHA512, PBKDF2-SHA256, SSHA, SSHA256, SSHA384, SSHA512.

``VerifiedCache``: HMAC digests of passwords a slow hash just accepted, so that a
repeated bind costs an HMAC instead of an argon2 run (the server's bind path uses it;
what a memory dump then exposes: README, "Password hashes and the verified-password
cache").  ``benchmark``: `rollcall hash-password --benchmark`.

Nothing here logs a password or a stored value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import statistics
import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable, Iterable

from argon2 import PasswordHasher
from argon2 import Type as Argon2Type
from argon2 import exceptions as argon2_exceptions
from argon2 import low_level as argon2_low_level

try:  # optional: only needed to verify {CRYPT}$2b$ values imported from elsewhere
    import bcrypt as _bcrypt
except ImportError:  # pragma: no cover - depends on the environment
    _bcrypt = None

__all__ = [
    "Hasher",
    "VerifiedCache",
    "benchmark",
    "HASH_SCHEMES",
    "KNOWN_SCHEMES",
    "generate_password",
    "is_hashed",
    "is_slow",
    "scheme_of",
    "verify",
]

log = logging.getLogger(__name__)

# Upper bounds on the work a *stored* value may ask for.  A hostile or mistaken value
# (say from an imported LDIF) must not pin a worker thread for minutes or allocate
# gigabytes; values beyond these never verify.
MAX_ARGON2_MEMORY_KIB = 1024 * 1024  # 1 GiB
MAX_ARGON2_TIME_COST = 64
MAX_ARGON2_PARALLELISM = 64
MAX_PBKDF2_ITERATIONS = 5_000_000
MAX_SHA_CRYPT_ROUNDS = 1_000_000  # pure Python: ~0.5 s; passlib's defaults (535k/656k) fit
MAX_BCRYPT_COST = 16


# ---------------------------------------------------------------------------
# small helpers


def _as_bytes(value: bytes | str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("expected bytes")


def _split_scheme(stored: bytes) -> tuple[str | None, bytes]:
    """('SSHA', data) for b'{ssha}data'; (None, stored) when there is no prefix.

    Like slapd, anything shaped '{x...}' counts as a scheme prefix even when we do not
    know the scheme, so a value such as '{FOO}bar' never falls back to cleartext.
    """
    if stored[:1] == b"{":
        end = stored.find(b"}")
        if end > 1:
            name = stored[1:end].decode("ascii", "replace").upper()
            return name, stored[end + 1 :]
    return None, stored


def _b64decode(data: bytes) -> bytes:
    # validate=True: reject stray characters instead of silently skipping them
    return base64.b64decode(data, validate=True)


def _ab64encode(data: bytes) -> bytes:
    """passlib's "adapted base64": '.' instead of '+', no padding."""
    return base64.b64encode(data).rstrip(b"=").replace(b"+", b".")


def _ab64decode(data: bytes) -> bytes:
    data = data.replace(b".", b"+")
    return _b64decode(data + b"=" * (-len(data) % 4))


# ---------------------------------------------------------------------------
# salted and unsalted digests: {SSHA}, {SHA}, {SSHA256}, ..., {SMD5}, {MD5}

# scheme -> (hashlib name, salted)
_DIGEST_SCHEMES: dict[str, tuple[str, bool]] = {
    "SHA": ("sha1", False),
    "SSHA": ("sha1", True),
    "SHA256": ("sha256", False),
    "SSHA256": ("sha256", True),
    "SHA384": ("sha384", False),
    "SSHA384": ("sha384", True),
    "SHA512": ("sha512", False),
    "SSHA512": ("sha512", True),
    "MD5": ("md5", False),
    "SMD5": ("md5", True),
}


def _digest(name: str, data: bytes) -> bytes:
    # usedforsecurity=False keeps legacy MD5/SHA-1 verification working on FIPS builds
    return hashlib.new(name, data, usedforsecurity=False).digest()


def _verify_digest(scheme: str, plain: bytes, data: bytes) -> bool:
    name, salted = _DIGEST_SCHEMES[scheme]
    raw = _b64decode(data)
    size = hashlib.new(name, usedforsecurity=False).digest_size
    if salted:
        if len(raw) <= size:  # slapd also insists on a non-empty salt
            return False
        digest, salt = raw[:size], raw[size:]
        return hmac.compare_digest(_digest(name, plain + salt), digest)
    if len(raw) != size:
        return False
    return hmac.compare_digest(_digest(name, plain), raw)


def _hash_salted_digest(scheme: str, plain: bytes, salt_len: int = 8) -> bytes:
    name, _ = _DIGEST_SCHEMES[scheme]
    salt = secrets.token_bytes(salt_len)
    return b"{" + scheme.encode() + b"}" + base64.b64encode(_digest(name, plain + salt) + salt)


# ---------------------------------------------------------------------------
# PBKDF2

# scheme -> hashlib name; the derived key is one digest long (pw-pbkdf2.c)
_PBKDF2_SCHEMES: dict[str, str] = {
    "PBKDF2": "sha1",
    "PBKDF2-SHA1": "sha1",
    "PBKDF2-SHA256": "sha256",
    "PBKDF2-SHA512": "sha512",
}
_PBKDF2_RE = re.compile(rb"\A([0-9]{1,10})\$([A-Za-z0-9./+]+)\$([A-Za-z0-9./+]+)\Z")
_PBKDF2_SALT_LEN = 16  # what slapd writes; any non-empty salt is accepted on verify

# 389-DS {PBKDF2_SHA256} (pbkdf2_pwd.c): fixed layout, never changed upstream
_DS389_ITER_LEN, _DS389_SALT_LEN, _DS389_HASH_LEN = 4, 64, 256


def _parse_pbkdf2(data: bytes) -> tuple[int, bytes, bytes] | None:
    m = _PBKDF2_RE.match(data)
    if not m:
        return None
    iterations = int(m.group(1))
    salt, dk = _ab64decode(m.group(2)), _ab64decode(m.group(3))
    if iterations < 1 or not salt:
        return None
    return iterations, salt, dk


def _verify_pbkdf2(scheme: str, plain: bytes, data: bytes) -> bool:
    name = _PBKDF2_SCHEMES[scheme]
    parsed = _parse_pbkdf2(data)
    if parsed is None:
        return False
    iterations, salt, dk = parsed
    if (
        len(dk) != hashlib.new(name, usedforsecurity=False).digest_size
        or iterations > MAX_PBKDF2_ITERATIONS
    ):
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac(name, plain, salt, iterations), dk)


def _hash_pbkdf2(scheme: str, plain: bytes, iterations: int) -> bytes:
    salt = secrets.token_bytes(_PBKDF2_SALT_LEN)
    dk = hashlib.pbkdf2_hmac(_PBKDF2_SCHEMES[scheme], plain, salt, iterations)
    return b"{%s}%d$%s$%s" % (scheme.encode(), iterations, _ab64encode(salt), _ab64encode(dk))


def _verify_pbkdf2_389(scheme: str, plain: bytes, data: bytes) -> bool:
    raw = _b64decode(data)
    if len(raw) != _DS389_ITER_LEN + _DS389_SALT_LEN + _DS389_HASH_LEN:
        return False
    iterations = int.from_bytes(raw[:_DS389_ITER_LEN], "big")
    salt = raw[_DS389_ITER_LEN : _DS389_ITER_LEN + _DS389_SALT_LEN]
    stored_dk = raw[_DS389_ITER_LEN + _DS389_SALT_LEN :]
    if not 1 <= iterations <= MAX_PBKDF2_ITERATIONS:
        return False
    dk = hashlib.pbkdf2_hmac("sha256", plain, salt, iterations, dklen=_DS389_HASH_LEN)
    return hmac.compare_digest(dk, stored_dk)


# ---------------------------------------------------------------------------
# Argon2

_ARGON2_RE = re.compile(
    rb"\A\$(argon2id|argon2i|argon2d)\$(?:v=([0-9]+)\$)?"
    rb"m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)\Z"
)
_ARGON2_TYPES = {b"argon2id": Argon2Type.ID, b"argon2i": Argon2Type.I, b"argon2d": Argon2Type.D}


def _parse_argon2(data: bytes) -> tuple[bytes, int, int, int, int, int] | None:
    """(type, version, m, t, p, hash_len) of a PHC string, or None when malformed."""
    m = _ARGON2_RE.match(data)
    if not m:
        return None
    version = int(m.group(2)) if m.group(2) else 0x10  # no v= means the 1.0 format
    hash_len = len(base64.b64decode(m.group(7) + b"=" * (-len(m.group(7)) % 4)))
    return m.group(1), version, int(m.group(3)), int(m.group(4)), int(m.group(5)), hash_len


def _verify_argon2(scheme: str, plain: bytes, data: bytes) -> bool:
    parsed = _parse_argon2(data)
    if parsed is None:
        return False
    kind, _version, memory, time_cost, parallelism, _ = parsed
    if (
        memory > MAX_ARGON2_MEMORY_KIB
        or time_cost > MAX_ARGON2_TIME_COST
        or parallelism > MAX_ARGON2_PARALLELISM
    ):
        return False
    try:
        # libargon2 compares the tags in constant time itself
        return argon2_low_level.verify_secret(data, plain, _ARGON2_TYPES[kind])
    except (argon2_exceptions.VerificationError, argon2_exceptions.InvalidHashError):
        return False


# ---------------------------------------------------------------------------
# {CRYPT}: SHA-crypt ($5$, $6$) and MD5-crypt ($1$) per their published specs,
# since the stdlib crypt module is deprecated (gone in 3.13); bcrypt via the package.

_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _b64_from_24bit(b2: int, b1: int, b0: int, n: int) -> bytes:
    w = (b2 << 16) | (b1 << 8) | b0
    out = bytearray()
    for _ in range(n):
        out.append(_ITOA64[w & 0x3F])
        w >>= 6
    return bytes(out)


def _repeat(block: bytes, length: int) -> bytes:
    """`block` repeated and cut to `length` bytes (the spec's P' and S' sequences)."""
    return (block * (length // len(block) + 1))[:length]


# Byte order of the final encoding, straight from Drepper's spec: triples of digest
# indexes, each emitted as 4 characters, then the leftover bytes.
_SHA512_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
    (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
    (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38),
    (18, 39, 60), (40, 61, 19), (62, 20, 41),
)  # fmt: skip
_SHA256_ORDER = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
)  # fmt: skip

_SHA_CRYPT_ROUNDS_DEFAULT = 5000
_SHA_CRYPT_ROUNDS_MIN = 1000
_SHA_CRYPT_ROUNDS_MAX = 999_999_999
_SHA_CRYPT_SALT_MAX = 16


def _sha_crypt_raw(variant: bytes, plain: bytes, salt: bytes, rounds: int) -> bytes:
    """The encoded 43/86-character checksum of SHA-256/512-crypt."""
    h = hashlib.sha512 if variant == b"6" else hashlib.sha256
    p, s = plain, salt

    b = h(p + s + p).digest()
    a = h(p + s + _repeat(b, len(p)))
    n = len(p)
    while n:  # each bit of len(p), lowest first: 1 -> B, 0 -> the password
        a.update(b if n & 1 else p)
        n >>= 1
    c = a.digest()

    dp = _repeat(h(p * len(p)).digest(), len(p))
    ds = _repeat(h(s * (16 + c[0])).digest(), len(s))

    # Round i hashes C+X (even i) or X+C (odd i) where X depends only on i mod 42,
    # so precompute the 42 X's: one hashlib call per round instead of four updates.
    schedule = []
    for i in range(42):
        mid = (ds if i % 3 else b"") + (dp if i % 7 else b"")
        schedule.append((dp + mid, True) if i & 1 else (mid + dp, False))
    for i in range(rounds):
        x, odd = schedule[i % 42]
        c = h(x + c).digest() if odd else h(c + x).digest()

    if variant == b"6":
        out = b"".join(_b64_from_24bit(c[i], c[j], c[k], 4) for i, j, k in _SHA512_ORDER)
        return out + _b64_from_24bit(0, 0, c[63], 2)
    out = b"".join(_b64_from_24bit(c[i], c[j], c[k], 4) for i, j, k in _SHA256_ORDER)
    return out + _b64_from_24bit(0, c[31], c[30], 3)


def _sha_crypt(plain: bytes, setting: bytes) -> bytes | None:
    """crypt(3) for a '$5$...' or '$6$...' setting; None when the setting is unusable.

    Mirrors glibc: 'rounds=N$' is optional (default 5000, clamped to
    1000..999999999 and then written back); the salt is at most 16 characters and
    stops at the first '$'.
    """
    if setting[:1] != b"$" or setting[1:2] not in (b"5", b"6") or setting[2:3] != b"$":
        return None
    variant, rest = setting[1:2], setting[3:]
    rounds, custom = _SHA_CRYPT_ROUNDS_DEFAULT, False
    if rest.startswith(b"rounds="):
        num, sep, tail = rest[7:].partition(b"$")
        if not sep or not num.isdigit():
            return None
        rounds = min(max(int(num), _SHA_CRYPT_ROUNDS_MIN), _SHA_CRYPT_ROUNDS_MAX)
        custom, rest = True, tail
    salt = rest.split(b"$", 1)[0][:_SHA_CRYPT_SALT_MAX]
    if rounds > MAX_SHA_CRYPT_ROUNDS:
        return None
    prefix = b"$" + variant + b"$" + (b"rounds=%d$" % rounds if custom else b"")
    return prefix + salt + b"$" + _sha_crypt_raw(variant, plain, salt, rounds)


def _md5_crypt(plain: bytes, setting: bytes) -> bytes | None:
    """FreeBSD/glibc MD5-crypt ('$1$'), the classic Poul-Henning Kamp algorithm."""
    if not setting.startswith(b"$1$"):
        return None
    salt = setting[3:].split(b"$", 1)[0][:8]
    p = plain
    final = hashlib.md5(p + salt + p, usedforsecurity=False).digest()
    ctx = hashlib.md5(p + b"$1$" + salt + _repeat(final, len(p)), usedforsecurity=False)
    n = len(p)
    while n:  # note: a NUL byte, not final[0], for set bits (a quirk of the original)
        ctx.update(b"\0" if n & 1 else p[:1])
        n >>= 1
    final = ctx.digest()
    for i in range(1000):
        data = (p if i & 1 else final) + (salt if i % 3 else b"") + (p if i % 7 else b"")
        data += final if i & 1 else p
        final = hashlib.md5(data, usedforsecurity=False).digest()
    f = final
    out = b"".join(
        _b64_from_24bit(f[i], f[j], f[k], 4)
        for i, j, k in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    )
    return b"$1$" + salt + b"$" + out + _b64_from_24bit(0, 0, f[11], 2)


_BCRYPT_RE = re.compile(rb"\A\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}\Z")
_bcrypt_missing_logged = False


def _verify_bcrypt(plain: bytes, data: bytes) -> bool:
    global _bcrypt_missing_logged
    m = _BCRYPT_RE.match(data)
    if not m or int(m.group(1)) > MAX_BCRYPT_COST:
        return False
    if _bcrypt is None:
        if not _bcrypt_missing_logged:  # once: an operator hint, not per bind
            _bcrypt_missing_logged = True
            log.warning(
                "a {CRYPT} bcrypt value cannot be verified: the bcrypt package is not installed"
            )
        return False
    # crypt(3) bcrypt only ever reads 72 bytes; bcrypt>=5 refuses longer input instead
    return bool(_bcrypt.checkpw(plain[:72], data))


def _verify_crypt(scheme: str, plain: bytes, data: bytes) -> bool:
    if data.startswith((b"$5$", b"$6$")):
        computed = _sha_crypt(plain, data)
    elif data.startswith(b"$1$"):
        computed = _md5_crypt(plain, data)
    elif data.startswith((b"$2a$", b"$2b$", b"$2y$")):
        return _verify_bcrypt(plain, data)
    else:  # DES, yescrypt, scrypt, ...: unsupported, so never a match
        return False
    # slapd compares crypt(cred, stored) with the whole stored string; so do we
    return computed is not None and hmac.compare_digest(computed, data)


# ---------------------------------------------------------------------------
# scheme registry

_Verifier = Callable[[str, bytes, bytes], bool]

_VERIFIERS: dict[str, _Verifier] = {
    "ARGON2": _verify_argon2,
    "CRYPT": _verify_crypt,
    "PBKDF2_SHA256": _verify_pbkdf2_389,
    **{name: _verify_digest for name in _DIGEST_SCHEMES},
    **{name: _verify_pbkdf2 for name in _PBKDF2_SCHEMES},
}

#: Every scheme name `verify` understands (upper case, without braces).
KNOWN_SCHEMES: frozenset[str] = frozenset(_VERIFIERS)

# These cost milliseconds to seconds; the salted digests cost microseconds.
_SLOW_SCHEMES = frozenset({"ARGON2", "CRYPT", "PBKDF2_SHA256", *_PBKDF2_SCHEMES})

#: Schemes `Hasher` can write.
HASH_SCHEMES: frozenset[str] = frozenset(
    {"ARGON2", "PBKDF2-SHA512", "PBKDF2-SHA256", "SSHA", "SSHA256", "SSHA384", "SSHA512"}
)


def scheme_of(value: bytes) -> str | None:
    """Canonical (upper-case) name of the known scheme `value` is stored in, else None."""
    try:
        scheme, _ = _split_scheme(_as_bytes(value))
    except Exception:
        return None
    return scheme if scheme in KNOWN_SCHEMES else None


def is_hashed(value: bytes) -> bool:
    """True when `value` starts with a known ``{SCHEME}`` prefix (case-insensitive).

    Cleartext values and unknown ``{...}`` prefixes are not "hashed".
    """
    return scheme_of(value) is not None


def is_slow(stored: bytes) -> bool:
    """True for schemes that cost real CPU (Argon2, PBKDF2, {CRYPT}, bcrypt).

    The server verifies those in a thread pool; salted SHA and cleartext are cheap
    enough to check inline.
    """
    return scheme_of(stored) in _SLOW_SCHEMES


#: Verifications of a slow scheme made by this process (`verify` calls on ARGON2,
#: PBKDF2, CRYPT values), for the metrics and for tests; a plain int (a lost increment
#: between threads only blurs a figure).
slow_verifications = 0


def verify(plain: bytes, stored: bytes) -> bool:
    """Does the password `plain` match the userPassword value `stored`?

    Never raises: unknown schemes, malformed values and wrong types give False.
    Digests are compared with hmac.compare_digest.  A value with no ``{SCHEME}``
    prefix is legacy cleartext and is compared (in constant time) as is, as slapd
    does.  An empty password or an empty stored value never matches: an empty
    simple-bind password is an unauthenticated bind (RFC 4513 5.1.2), not a check.
    """
    try:
        plain, stored = _as_bytes(plain), _as_bytes(stored)
        if not plain or not stored:
            return False
        scheme, data = _split_scheme(stored)
        if scheme is None:
            return hmac.compare_digest(plain, stored)
        verifier = _VERIFIERS.get(scheme)
        if verifier is None:
            return False
        if scheme in _SLOW_SCHEMES:
            global slow_verifications
            slow_verifications += 1
        return bool(verifier(scheme, plain, data))
    except Exception:  # garbage in a stored value must read as "no match", never a crash
        return False


def _never(plain: bytes) -> bool:
    return False


def prepare(stored: bytes) -> Callable[[bytes], bool]:
    """verify(·, stored) with the stored value parsed once: the server keeps it with the
    cached entry, so a bind of a salted-SHA account costs one digest and one compare
    (the scheme, base64 and salt split are not redone per bind). Same answers as verify."""
    try:
        stored = _as_bytes(stored)
        scheme, data = _split_scheme(stored)
        spec = _DIGEST_SCHEMES.get(scheme) if scheme is not None else None
        if spec is None:
            return lambda plain: verify(plain, stored)
        name, salted = spec
        raw = _b64decode(data)
    except Exception:  # as verify: garbage is "no match"
        return _never
    new = getattr(hashlib, name)  # hashlib.sha1 & co.: cheaper than hashlib.new(name)
    size = new(usedforsecurity=False).digest_size
    if salted:
        if len(raw) <= size:  # slapd also insists on a non-empty salt
            return _never
        digest, salt = raw[:size], raw[size:]
    elif len(raw) != size:
        return _never
    else:
        digest, salt = raw, b""

    def check(plain: bytes) -> bool:
        return bool(plain) and hmac.compare_digest(new(plain + salt, usedforsecurity=False).digest(), digest)

    return check


# ---------------------------------------------------------------------------
# hashing


class Hasher:
    """Writes new userPassword values in one configured scheme.

    ``Hasher()`` gives OpenLDAP-compatible ``{ARGON2}$argon2id$v=19$m=65536,t=2,p=1$...``
    values (16-byte salt, 32-byte tag, as slapd-argon2 writes).  ``time_cost``,
    ``memory_cost`` (KiB) and ``parallelism`` apply to ARGON2 (config.yaml
    ``passwords.argon2``); ``pbkdf2_iterations`` to the PBKDF2 schemes (default
    210,000, OWASP's figure for PBKDF2-HMAC-SHA512, about as slow here as the default
    Argon2).  Instances are immutable and thread-safe.

    Why argon2id m=64 MiB, t=2, p=1 by default:

    * OWASP's Password Storage Cheat Sheet asks for argon2id with at least m=19 MiB,
      t=2, p=1 (or an equivalent memory x passes: m=47104 t=1, m=19456 t=2, m=12288
      t=3, m=9216 t=4, m=7168 t=5, all KiB).  64 MiB x 2 passes is about 3.4 times
      that minimum, in the memory an attacker must provide per guess too.
    * RFC 9106 section 4: the first recommended option (t=1, m=2 GiB, p=4) would need
      gigabytes per concurrent bind (hash_threads of them at once): not for a
      directory server.  The second (t=3, m=64 MiB, p=4) has our memory; we run 2
      passes instead of 3 (a third more binds per core) and one lane, because a
      server verifies many binds at once: each bind on one core is the most binds
      per second, and extra lanes only shorten a single bind's latency when cores
      are idle.  ``time_cost: 3`` gives the RFC's figure for whoever prefers it
      (rehash_on_bind moves existing hashes over as people sign in).
    * Cost: about 100-180 ms per verification on one core of the 2-core test machine
      (5-10 uncached binds/s per core); ``rollcall hash-password --benchmark``
      measures it on yours.  The verified-password cache (`VerifiedCache`) makes
      repeated binds cheap without weakening what is stored.
    """

    def __init__(
        self,
        scheme: str = "ARGON2",
        time_cost: int = 2,
        memory_cost: int = 65536,
        parallelism: int = 1,
        *,
        pbkdf2_iterations: int = 210_000,
    ) -> None:
        name = scheme.strip().strip("{}").upper()
        if name not in HASH_SCHEMES:
            raise ValueError(
                f"cannot hash with scheme {scheme!r}; choose one of {sorted(HASH_SCHEMES)}"
            )
        # Refuse parameters our own verify() would reject: we must be able to read back
        # what we write.
        if not 1 <= time_cost <= MAX_ARGON2_TIME_COST:
            raise ValueError(f"argon2 time_cost must be 1..{MAX_ARGON2_TIME_COST}")
        if not 1 <= parallelism <= MAX_ARGON2_PARALLELISM:
            raise ValueError(f"argon2 parallelism must be 1..{MAX_ARGON2_PARALLELISM}")
        if not 8 * parallelism <= memory_cost <= MAX_ARGON2_MEMORY_KIB:
            raise ValueError(
                f"argon2 memory_cost must be 8*parallelism..{MAX_ARGON2_MEMORY_KIB} KiB"
            )
        if not 1 <= pbkdf2_iterations <= MAX_PBKDF2_ITERATIONS:
            raise ValueError(f"pbkdf2_iterations must be 1..{MAX_PBKDF2_ITERATIONS}")
        self.scheme = name
        self.time_cost = time_cost
        self.memory_cost = memory_cost
        self.parallelism = parallelism
        self.pbkdf2_iterations = pbkdf2_iterations
        self._argon2 = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Argon2Type.ID,
        )

    def __repr__(self) -> str:
        if self.scheme == "ARGON2":
            params = f"t={self.time_cost}, m={self.memory_cost}, p={self.parallelism}"
        elif self.scheme in _PBKDF2_SCHEMES:
            params = f"iterations={self.pbkdf2_iterations}"
        else:
            params = ""
        return f"Hasher({self.scheme}{', ' + params if params else ''})"

    def hash(self, plain: bytes) -> bytes:
        """A new ``{SCHEME}...`` value for `plain`, with a fresh random salt.

        Raises ValueError for an empty password (verify() would never accept it).
        """
        plain = _as_bytes(plain)
        if not plain:
            raise ValueError("refusing to hash an empty password")
        if self.scheme == "ARGON2":
            # argon2-cffi's encoded string is exactly the PHC form slapd-argon2 stores
            return b"{ARGON2}" + self._argon2.hash(plain).encode("ascii")
        if self.scheme in _PBKDF2_SCHEMES:
            return _hash_pbkdf2(self.scheme, plain, self.pbkdf2_iterations)
        return _hash_salted_digest(self.scheme, plain)

    def needs_rehash(self, stored: bytes) -> bool:
        """True when `stored` is not what hash() would write now.

        That is: another scheme (or cleartext, or garbage), or for ARGON2 another
        variant/version/m/t/p/tag length, or for PBKDF2 another iteration count.  The
        bind path can then re-hash the password it just verified.
        """
        try:
            scheme, data = _split_scheme(_as_bytes(stored))
            if scheme != self.scheme:
                return True
            if scheme == "ARGON2":
                parsed = _parse_argon2(data)
                want = (b"argon2id", 0x13, self.memory_cost, self.time_cost, self.parallelism, 32)
                return parsed != want
            if scheme in _PBKDF2_SCHEMES:
                parsed_pbkdf2 = _parse_pbkdf2(data)
                return parsed_pbkdf2 is None or parsed_pbkdf2[0] != self.pbkdf2_iterations
            return False
        except Exception:
            return True


# ---------------------------------------------------------------------------
# the verified-password cache ("strong hashes without slow logins")


class VerifiedCache:
    """Keyed digests of passwords that a slow verification (Argon2, PBKDF2, crypt) has
    just accepted, so that the same account binding again with the same password is
    checked with one HMAC-SHA256 instead of another Argon2 run.

    What is kept, per account: (the stored value that matched, HMAC-SHA256(key, account
    || stored value || password), expiry). `key` is 32 random bytes made when the cache
    is made (in each server process, after the fork): never stored, never logged, gone
    with the process. The password itself is never kept. An entry:

    * answers only for the same account key (the entry id; the root DN: its DN) and
      the same stored value, so a password change alone already makes it miss;
    * lives `seconds` from the full verification that made it (a hit does not extend
      it);
    * is dropped by `drop(keys)`, which the server hooks to the store's cache
      invalidation: every committed write that touches the entry, in this process,
      another worker process or (PostgreSQL) another host, drops it (`drop(None)`:
      everything, when a store starts its cache afresh);
    * is dropped when a bind of the account fails, whatever the reason.

    A lookup that began before a drop of its account may not store its result (see
    `generation`): a verification that read the entry just before a write cannot bring
    back what the write dropped. At most `max_entries` are kept (the oldest go first).
    Only the hash verification is skipped: every other check of a bind (lockout,
    expiry, status, pwdReset, throttles) runs as before. Thread-safe.
    """

    # drops remembered per account, for the check above; beyond it a lookup that began
    # before the oldest forgotten drop may not store (exact, and bounded memory)
    DROP_MEMORY = 4096

    def __init__(self, seconds: float = 300.0, max_entries: int = 100_000, clock=time.monotonic):
        self.seconds = float(seconds)
        self.max_entries = int(max_entries)
        self.enabled = self.seconds > 0 and self.max_entries > 0
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[bytes, bytes, float]] = OrderedDict()
        self._generation = 0
        self._floor = 0  # lookups that began before this generation may not store
        self._dropped: OrderedDict[Hashable, int] = OrderedDict()  # key -> generation of its last drop
        # for the metrics (plain ints: a lost increment between threads only blurs a figure)
        self.hits = self.misses = self.stored = 0

    def __repr__(self) -> str:  # never the key
        return f"VerifiedCache(seconds={self.seconds:g}, max_entries={self.max_entries}, entries={len(self)})"

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, key: Hashable, stored: bytes, plain: bytes) -> bytes:
        h = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (repr(key).encode(), stored, plain):  # length-prefixed: no ambiguity
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
        return h.digest()

    def generation(self) -> int:
        """Take this before reading the account's entry; pass it to `remember`."""
        return self._generation

    def check(self, key: Hashable, plain: bytes, hashes: Iterable[bytes]) -> bytes | None:
        """The stored value `plain` was verified against for this account, if that value
        is still among the account's `hashes` and the entry is live; else None."""
        if not self.enabled:
            return None
        item = self._entries.get(key)
        if item is not None:
            stored, digest, expires = item
            if expires > self._clock() and stored in hashes:
                try:
                    plain = _as_bytes(plain)
                except TypeError:
                    return None
                if hmac.compare_digest(self._digest(key, stored, plain), digest):
                    self.hits += 1
                    return stored
            else:
                with self._lock:  # expired, or the password changed: gone now
                    if self._entries.get(key) is item:
                        del self._entries[key]
        self.misses += 1
        return None

    def remember(self, key: Hashable, stored: bytes, plain: bytes, since: int) -> bool:
        """After a successful slow verification of `plain` against `stored`, begun (the
        entry read) at generation `since`. False when not kept."""
        if not self.enabled or not is_slow(stored):
            return False
        digest = self._digest(key, _as_bytes(stored), _as_bytes(plain))
        with self._lock:
            if since < self._floor or self._dropped.get(key, -1) > since:
                return False  # the account was changed (or everything dropped) meanwhile
            self._entries.pop(key, None)
            while len(self._entries) >= self.max_entries:
                self._entries.popitem(last=False)
            self._entries[key] = (bytes(stored), digest, self._clock() + self.seconds)
            self.stored += 1
            return True

    def drop(self, keys: Iterable[Hashable] | None) -> None:
        """Forget these accounts (None: every account)."""
        if not self.enabled:
            return
        with self._lock:
            self._generation += 1
            gen = self._generation
            if keys is None:
                self._entries.clear()
                self._dropped.clear()
                self._floor = gen
                return
            entries, dropped = self._entries, self._dropped
            for key in keys:
                entries.pop(key, None)
                dropped[key] = gen
                dropped.move_to_end(key)
            while len(dropped) > self.DROP_MEMORY:
                _, old = dropped.popitem(last=False)
                self._floor = max(self._floor, old)

    def clear(self) -> None:
        self.drop(None)


# ---------------------------------------------------------------------------
# choosing parameters: `rollcall hash-password --benchmark`


def benchmark(hasher: "Hasher", runs: int = 5, password: bytes = b"correct horse battery staple") -> dict:
    """Time `runs` verifications of a value `hasher` writes (one thread, this machine).

    Returns the median wall-clock milliseconds of one verification (`ms`, what a bind
    waits), the median CPU milliseconds of this process's threads (`cpu_ms`: with
    parallelism > 1 argon2 runs lanes on several threads) and the verifications one
    core makes per second at that CPU cost (`per_core_per_s`: an uncached bind costs
    one verification).
    """
    stored = hasher.hash(password)
    walls, cpus = [], []
    for _ in range(max(1, runs)):
        c0, t0 = time.process_time(), time.perf_counter()
        ok = verify(password, stored)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if not ok:  # pragma: no cover - would be a bug in verify or hash
            raise RuntimeError("a freshly written hash did not verify")
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    cpu = cpu or wall  # a clock too coarse to see it: the wall time is the bound
    return {"ms": wall * 1000.0, "cpu_ms": cpu * 1000.0, "per_core_per_s": 1.0 / cpu if cpu else 0.0}


# ---------------------------------------------------------------------------
# generated passwords

# Unambiguous characters only: no 0/O/o, no 1/l/I.
_LOWER = "abcdefghijkmnpqrstuvwxyz"  # 24
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # 24
_DIGITS = "23456789"  # 8
_ALPHABET = _LOWER + _UPPER + _DIGITS  # 56 symbols: log2(56) = 5.81 bits each
MIN_GENERATED_LENGTH = 12  # 12 * 5.81 = 69.7 bits


def generate_password(length: int = 16) -> str:
    """A random password that is easy to read out, e.g. ``'Kx7m-Pq3r-Tz9w-Hb4n'``.

    `length` random characters (default 16, at least 12) drawn with `secrets` from
    56 unambiguous symbols (a-z A-Z 2-9 without 0/O/o, 1/l/I), shown in groups of
    four joined by '-'.  The hyphens are part of the password; they carry no
    entropy but help reading aloud and satisfy "needs a symbol" rules.  Every
    result has at least one lower-case letter, one capital and one digit (drawn
    again otherwise, which costs under 0.2 bits).  Entropy: ~5.81 bits per
    character, ~92.7 bits at the default length, ~69.6 at the minimum.
    """
    if length < MIN_GENERATED_LENGTH:
        raise ValueError(f"generated passwords need at least {MIN_GENERATED_LENGTH} characters")
    while True:
        chars = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if (
            any(c in _LOWER for c in chars)
            and any(c in _UPPER for c in chars)
            and any(c in _DIGITS for c in chars)
        ):
            break
    return "-".join(chars[i : i + 4] for i in range(0, length, 4))
