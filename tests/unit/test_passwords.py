"""directory.passwords: userPassword schemes, checked against fixed published vectors
and against values made at test time by openssl and slappasswd (skipped when absent)."""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import re
import shutil
import subprocess

import pytest

from directory import passwords
from directory.passwords import (
    HASH_SCHEMES,
    KNOWN_SCHEMES,
    Hasher,
    generate_password,
    is_hashed,
    is_slow,
    scheme_of,
    verify,
)

# Cheap Argon2 parameters: tests check formats and logic, not cost.
FAST = dict(time_cost=1, memory_cost=64, parallelism=1, pbkdf2_iterations=1000)


def fast_hasher(scheme: str = "ARGON2", **overrides) -> Hasher:
    return Hasher(scheme, **{**FAST, **overrides})


def ab64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=").replace(b"+", b".")


# ---------------------------------------------------------------------------
# round trips through Hasher


@pytest.mark.parametrize("scheme", sorted(HASH_SCHEMES))
def test_round_trip_every_hash_scheme(scheme):
    hasher = fast_hasher(scheme)
    stored = hasher.hash(b"correct horse")
    assert stored.startswith(b"{" + scheme.encode() + b"}")
    assert verify(b"correct horse", stored)
    assert not verify(b"correct horsf", stored)
    assert not verify(b"correct hors", stored)
    assert is_hashed(stored)
    assert not hasher.needs_rehash(stored)
    # a fresh salt every time
    assert hasher.hash(b"correct horse") != stored


@pytest.mark.parametrize("scheme", sorted(HASH_SCHEMES))
def test_round_trip_non_ascii_and_str_input(scheme):
    stored = fast_hasher(scheme).hash("Grüße, 日本")
    assert verify("Grüße, 日本".encode(), stored)
    assert verify("Grüße, 日本", stored)
    assert not verify("Grüsse, 日本".encode(), stored)


def test_argon2_default_encoding_is_slapd_argon2_format():
    stored = Hasher().hash(b"secret")
    m = re.fullmatch(
        rb"\{ARGON2\}\$argon2id\$v=19\$m=65536,t=2,p=1\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})",
        stored,
    )
    assert m, stored  # (verification is covered by the round trips, at cheaper settings)


def test_argon2_encoding_follows_parameters():
    stored = Hasher(time_cost=1, memory_cost=256, parallelism=2).hash(b"secret")
    assert stored.startswith(b"{ARGON2}$argon2id$v=19$m=256,t=1,p=2$")
    salt, tag = stored.split(b"$")[-2:]
    assert b"=" not in salt + tag  # PHC base64 has no padding


def test_ssha_layout_is_sha1_then_8_byte_salt():
    stored = fast_hasher("SSHA").hash(b"secret")
    raw = base64.b64decode(stored[len(b"{SSHA}") :])
    assert len(raw) == 20 + 8
    assert hashlib.sha1(b"secret" + raw[20:]).digest() == raw[:20]


def test_pbkdf2_sha512_layout_matches_openldap_pw_pbkdf2():
    stored = fast_hasher("PBKDF2-SHA512", pbkdf2_iterations=1234).hash(b"secret")
    m = re.fullmatch(rb"\{PBKDF2-SHA512\}1234\$([A-Za-z0-9./]{22})\$([A-Za-z0-9./]{86})", stored)
    assert m, stored
    salt = base64.b64decode(m.group(1).replace(b".", b"+") + b"==")
    dk = base64.b64decode(m.group(2).replace(b".", b"+") + b"==")
    assert len(salt) == 16
    assert dk == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 1234)


def test_hash_refuses_empty_password():
    with pytest.raises(ValueError):
        fast_hasher().hash(b"")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scheme="MD5"),
        dict(scheme="CRYPT"),
        dict(scheme="nonsense"),
        dict(memory_cost=4),  # below 8 * parallelism
        dict(time_cost=0),
        dict(parallelism=0),
        dict(memory_cost=passwords.MAX_ARGON2_MEMORY_KIB + 1),
        dict(pbkdf2_iterations=0),
    ],
)
def test_hasher_rejects_bad_configuration(kwargs):
    with pytest.raises(ValueError):
        Hasher(**kwargs)


def test_hasher_scheme_name_is_normalised():
    assert Hasher("{ssha512}").scheme == "SSHA512"
    assert Hasher("pbkdf2-sha512").scheme == "PBKDF2-SHA512"
    assert "ARGON2" in repr(Hasher())


# ---------------------------------------------------------------------------
# needs_rehash


def test_needs_rehash_argon2_parameters():
    current = fast_hasher()
    stored = current.hash(b"pw")
    assert not current.needs_rehash(stored)
    assert not current.needs_rehash(stored.replace(b"{ARGON2}", b"{argon2}"))
    assert fast_hasher(time_cost=2).needs_rehash(stored)
    assert fast_hasher(memory_cost=128).needs_rehash(stored)
    assert fast_hasher(parallelism=2, memory_cost=64).needs_rehash(stored)
    # argon2i written by Debian's slapd-argon2 is upgraded to argon2id
    argon2i = stored.replace(b"$argon2id$", b"$argon2i$")
    assert current.needs_rehash(argon2i)


def test_needs_rehash_other_schemes():
    argon2 = fast_hasher()
    ssha = fast_hasher("SSHA").hash(b"pw")
    assert argon2.needs_rehash(ssha)
    assert not fast_hasher("SSHA").needs_rehash(ssha)
    assert fast_hasher("SSHA512").needs_rehash(ssha)
    assert argon2.needs_rehash(b"cleartext")
    assert argon2.needs_rehash(b"")
    assert argon2.needs_rehash(b"{ARGON2}garbage")
    assert argon2.needs_rehash(b"{UNKNOWN}x")
    assert argon2.needs_rehash(None)  # type: ignore[arg-type]

    pbkdf2 = fast_hasher("PBKDF2-SHA512", pbkdf2_iterations=1000)
    stored = pbkdf2.hash(b"pw")
    assert not pbkdf2.needs_rehash(stored)
    assert fast_hasher("PBKDF2-SHA512", pbkdf2_iterations=2000).needs_rehash(stored)
    assert fast_hasher("PBKDF2-SHA256", pbkdf2_iterations=1000).needs_rehash(stored)
    assert pbkdf2.needs_rehash(b"{PBKDF2-SHA512}garbage")


# ---------------------------------------------------------------------------
# fixed vectors

# Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512", test vectors.
SHA_CRYPT_VECTORS = [
    (b"Hello world!", b"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"),
    (
        b"Hello world!",
        b"$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
    ),
    (
        b"This is just a test",
        b"$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5",
    ),
    (
        b"a very much longer text to encrypt.  This one even stretches over morethan one line.",
        b"$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1",
    ),
    (
        b"we have a short salt string but not a short password",
        b"$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/",
    ),
    (
        b"a short string",
        b"$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD",
    ),
    (
        b"the minimum number is still observed",
        b"$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
    ),
    (
        b"Hello world!",
        b"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        b"Hello world!",
        b"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        b"This is just a test",
        b"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        b"a very much longer text to encrypt.  This one even stretches over morethan one line.",
        b"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        b"we have a short salt string but not a short password",
        b"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
    ),
    (
        b"a short string",
        b"$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
    ),
    (
        b"the minimum number is still observed",
        b"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
    ),
]


@pytest.mark.parametrize("plain,crypted", SHA_CRYPT_VECTORS, ids=lambda v: v[:24].decode())
def test_sha_crypt_spec_vectors(plain, crypted):
    assert verify(plain, b"{CRYPT}" + crypted)
    assert not verify(plain + b"x", b"{CRYPT}" + crypted)


@pytest.mark.parametrize(
    "plain,setting,expected",
    [
        # the spec's inputs: over-long salts are cut to 16, too few rounds raised to 1000
        (b"Hello world!", b"$5$rounds=10000$saltstringsaltstring", SHA_CRYPT_VECTORS[1][1]),
        (b"This is just a test", b"$6$rounds=5000$toolongsaltstring", SHA_CRYPT_VECTORS[9][1]),
        (
            b"the minimum number is still observed",
            b"$5$rounds=10$roundstoolow",
            SHA_CRYPT_VECTORS[6][1],
        ),
        (
            b"the minimum number is still observed",
            b"$6$rounds=10$roundstoolow",
            SHA_CRYPT_VECTORS[13][1],
        ),
    ],
)
def test_sha_crypt_setting_normalisation(plain, setting, expected):
    assert passwords._sha_crypt(plain, setting) == expected


def test_sha_crypt_value_with_unnormalised_rounds_does_not_verify():
    # glibc writes rounds=1000 for rounds=10, and slapd compares whole strings
    plain, crypted = SHA_CRYPT_VECTORS[6]
    assert not verify(plain, b"{CRYPT}" + crypted.replace(b"rounds=1000", b"rounds=10"))


def test_md5_crypt_fixed_vector():
    # from glibc/libxcrypt crypt("secret", "$1$saltsalt")
    assert verify(b"secret", b"{CRYPT}$1$saltsalt$9xy1btjgzLYfb7hivXtC//")
    assert not verify(b"Secret", b"{CRYPT}$1$saltsalt$9xy1btjgzLYfb7hivXtC//")


def test_pbkdf2_rfc6070_vectors():
    # RFC 6070: P="password", S="salt", c=1 and c=4096, dkLen=20 (PBKDF2-HMAC-SHA1)
    salt = ab64(b"salt")
    for rounds, dk_hex in [
        (1, "0c60c80f961f0e71f3a9b524af6012062fe037a6"),
        (4096, "4b007901b765489abead49d926f721d065a429c1"),
    ]:
        dk = ab64(bytes.fromhex(dk_hex))
        for scheme in (b"{PBKDF2}", b"{PBKDF2-SHA1}", b"{pbkdf2-sha1}"):
            stored = scheme + b"%d$%s$%s" % (rounds, salt, dk)
            assert verify(b"password", stored)
            assert not verify(b"passwore", stored)


def test_pbkdf2_sha512_and_sha256_independent_vectors():
    salt = bytes(range(16))  # ab64 of these contains '.', so the '+' mapping is exercised
    for name, scheme in [("sha512", b"{PBKDF2-SHA512}"), ("sha256", b"{PBKDF2-SHA256}")]:
        dk = hashlib.pbkdf2_hmac(name, b"s3cr3t", salt, 2000)
        stored = scheme + b"2000$" + ab64(salt) + b"$" + ab64(dk)
        assert verify(b"s3cr3t", stored)
        assert not verify(b"s3cr3T", stored)
        # a dk of the wrong size for the digest is malformed (pw-pbkdf2.c checks it)
        assert not verify(b"s3cr3t", scheme + b"2000$" + ab64(salt) + b"$" + ab64(dk[:20]))
    # A fixed value, computed once with hashlib.pbkdf2_hmac("sha512", b"secret",
    # b"0123456789abcdef", 10000): guards against encoder and decoder drifting together.
    fixed = (
        b"{PBKDF2-SHA512}10000$MDEyMzQ1Njc4OWFiY2RlZg$vmRQw0BpocKqrhRKR3m3G/IeOsJdowFFKr1BqQJRowa7rT"
        b"6Pmm2h2hOQOkeCI6snZ9iO2b2vBKBYyAogx9T2vA"
    )
    assert verify(b"secret", fixed)
    assert not verify(b"secreT", fixed)


# A {PBKDF2_SHA256} value written by 389-DS (legacy pbkdf2_pwd.c layout), as published
# in the README of thesubtlety/389-ds-password-check; the password is "Password123".
DS389_PBKDF2_SHA256 = (
    b"{PBKDF2_SHA256}AAAnEGTxXtnR/oox922/jZyjH6fmiIdW4AwIYZE2LfCVL/SUz5GbAHfjRj4NbN2u8ul0/j/dUzJ4gQSawGALGHZV"
    b"74nOAtPttoZDTsh7BeGCLD/Ps7vRugwDdz9uPARXzF3bD/8qCpumvRGb4pehzfQsk+FnGgTwi0rUeVaN8a7Kbv8ZpRfU2sd+208F/YL"
    b"42BWAh/2tv0I4vY7ZsrCZcrUJtgKWy5Nr+t78zmPkrZsX/kgfnGdXhr50kN10cmkLQ0/cZOXo9CAkpeZyFu+wQ5vQdUaES2Vd5kBjJYP"
    b"Ckr4b2ocr4ETQi3IGO2GGCoCetmMIETsudRVSxUNBbva+Vgxin5Apu4wIP/0ZyuGK6TuWLqLnNpmK3RkRx0xjqJ4nN2Ok0ul0XYBJcYI"
    b"Bt4UoaVM2uSa/Etw28Uy+zAsUv2AOiRo5"
)


def test_389ds_legacy_pbkdf2_sha256():
    assert verify(b"Password123", DS389_PBKDF2_SHA256)
    assert not verify(b"Password124", DS389_PBKDF2_SHA256)
    assert is_slow(DS389_PBKDF2_SHA256)


def test_389ds_legacy_pbkdf2_sha256_built_independently():
    salt = os.urandom(64)
    dk = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 2048, dklen=256)
    stored = b"{PBKDF2_SHA256}" + base64.b64encode((2048).to_bytes(4, "big") + salt + dk)
    assert verify(b"pw", stored)
    assert not verify(b"pW", stored)


# Values printed by slappasswd 2.5 (Debian) for the password "secret".
SLAPPASSWD_SECRET = [
    b"{SSHA}NXRHWWvQqNalbIM8wpQwjOSDBvZuh684",
    b"{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    b"{SMD5}S8++utA39HZYWCp4C5pr1oG/tPg=",
    b"{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
    b"{SSHA256}1bgFQkOZH906jCQmwcXKVWbWRPCa15YSutMEuD4LTkOGCKF6uw/6qw==",
    b"{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=",
    b"{SSHA384}7Umpa16v+zM+uGim60FQp19BeY8PxuQrJzCBUOCAfyCnNjWylAf5nPgCxEVTwqoYAZK+3NwW2lY=",
    b"{SSHA512}mmbc/2hmceisqoCiqtLbWIoKtCiG86kLUjrRkLQQazKx3WSkgz3YNuoqOXlY7UhpuflN/MFkH95eEXn6rt8++qWGoxcwjJYt",
    b"{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg==",
    b"{ARGON2}$argon2i$v=19$m=4096,t=3,p=1$inS+6Q2pD6YeRcv7u/pxnw$zlCgZ+t1haB6PeVpcSfthlagoPW4GuOa++PJlMD9q1A",
    b"{CRYPT}$6$rdTAFj8psHKe8meo$.c0HljRGLCcPle51YddXS5v4tQm.lCgwz4AGrNg0xCRPBOXID8v63VSgc27Ga4tRmJ/VT8qV.ZR9c1Hhh5tec/",
    b"{CRYPT}$5$rounds=7000$hM1CqCEGUV9siKg2$LHzWoLA9pminDMvIDvqZF9k64cWF.HkEePXs9ru7Sc1",
]


@pytest.mark.parametrize("stored", SLAPPASSWD_SECRET, ids=lambda v: v.split(b"}")[0][1:].decode())
def test_recorded_slappasswd_values(stored):
    assert verify(b"secret", stored)
    assert not verify(b"Secret", stored)
    assert not verify(b"secret ", stored)
    # slapd matches the scheme name case-insensitively
    name, rest = stored.split(b"}", 1)
    assert verify(b"secret", name.lower() + b"}" + rest)


# ---------------------------------------------------------------------------
# values made at test time by other tools

OPENSSL = shutil.which("openssl")
SLAPPASSWD = (
    "/usr/sbin/slappasswd"
    if os.access("/usr/sbin/slappasswd", os.X_OK)
    else shutil.which("slappasswd")
)


def run_tool(*args: str, stdin: bytes | None = None) -> bytes | None:
    """stdout of the tool, or None when it fails (e.g. a slapd module is missing)."""
    proc = subprocess.run(args, input=stdin, capture_output=True, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
needs_slappasswd = pytest.mark.skipif(SLAPPASSWD is None, reason="slappasswd not installed")

PASSWORDS = [b"secret", b"pass with spaces", "Grüße-Ünïcødé".encode(), b"x" * 80]


@needs_openssl
@pytest.mark.parametrize(
    "variant,salt",
    [
        ("-6", None),
        ("-6", "saltsalt"),
        ("-6", "rounds=7000$abcdefgh"),
        ("-5", None),
        ("-5", "saltsalt"),
        ("-5", "rounds=1000$x"),
        ("-1", None),
        ("-1", "saltsalt"),
    ],
)
@pytest.mark.parametrize("plain", PASSWORDS, ids=range(len(PASSWORDS)))
def test_openssl_passwd_values(variant, salt, plain):
    args = [OPENSSL, "passwd", variant, "-stdin"] + (["-salt", salt] if salt else [])
    crypted = run_tool(*args, stdin=plain)
    assert crypted is not None
    assert verify(plain, b"{CRYPT}" + crypted)
    assert not verify(plain + b"!", b"{CRYPT}" + crypted)


@needs_slappasswd
@pytest.mark.parametrize(
    "scheme,extra",
    [
        ("{SSHA}", []),
        ("{SHA}", []),
        ("{SMD5}", []),
        ("{MD5}", []),
        ("{CRYPT}", ["-c", "$6$%.16s"]),
        ("{CRYPT}", ["-c", "$5$rounds=6000$%.16s"]),
        ("{CRYPT}", ["-c", "$1$%.8s"]),
        ("{SSHA256}", ["-o", "module-load=pw-sha2"]),
        ("{SSHA384}", ["-o", "module-load=pw-sha2"]),
        ("{SSHA512}", ["-o", "module-load=pw-sha2"]),
        ("{SHA512}", ["-o", "module-load=pw-sha2"]),
        ("{ARGON2}", ["-o", "module-load=argon2"]),
        ("{PBKDF2-SHA512}", ["-o", "module-load=pw-pbkdf2"]),
    ],
)
def test_slappasswd_values(scheme, extra):
    plain = "Grüße 42".encode()
    # -h must come before -c (slappasswd: "Scheme already provided")
    stored = run_tool(SLAPPASSWD, "-h", scheme, *extra, "-s", plain.decode())
    if stored is None:
        pytest.skip(f"slappasswd cannot write {scheme} here (module missing?)")
    assert stored.upper().startswith(scheme.encode())
    assert verify(plain, stored)
    assert not verify(b"Grusse 42", stored)
    assert is_hashed(stored)


# ---------------------------------------------------------------------------
# bcrypt (optional package)

# OpenBSD/Openwall bcrypt test vector: "U*U" at cost 5.
BCRYPT_VECTOR = b"{CRYPT}$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"


@pytest.mark.skipif(passwords._bcrypt is None, reason="bcrypt package not installed")
def test_bcrypt_when_available():
    assert verify(b"U*U", BCRYPT_VECTOR)
    assert not verify(b"U*V", BCRYPT_VECTOR)
    for prefix in (b"$2b$", b"$2y$"):
        assert verify(b"U*U", BCRYPT_VECTOR.replace(b"$2a$", prefix))


@pytest.mark.skipif(passwords._bcrypt is not None, reason="bcrypt package installed")
def test_bcrypt_without_package_never_matches():
    assert not verify(b"U*U", BCRYPT_VECTOR)
    assert is_hashed(BCRYPT_VECTOR) and is_slow(BCRYPT_VECTOR)


# ---------------------------------------------------------------------------
# cleartext, garbage, classification


def test_cleartext_legacy_values():
    assert verify(b"secret", b"secret")
    assert not verify(b"secret", b"secreT")
    assert not verify(b"secret", b"secret2")
    assert not is_hashed(b"secret")
    assert not is_slow(b"secret")
    assert scheme_of(b"secret") is None
    # '{}' is no scheme to slapd either, so this is cleartext
    assert verify(b"{}x", b"{}x")


def test_empty_inputs_never_match():
    assert not verify(b"", b"")
    assert not verify(b"", b"{SSHA}NXRHWWvQqNalbIM8wpQwjOSDBvZuh684")
    assert not verify(b"secret", b"")


MALFORMED = [
    b"{UNKNOWN}secret",
    b"{SSHA}",
    b"{SSHA}!!!!",
    b"{SSHA}" + base64.b64encode(hashlib.sha1(b"secret").digest()),  # no salt
    b"{SHA}" + base64.b64encode(hashlib.sha1(b"secret").digest() + b"x"),  # wrong length
    b"{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ",  # bad padding
    b"{SSHA}NXRHWWvQqNalbIM8wpQwjOSDBvZuh684\n",
    b"{SSHA}\xff\xfe\x00",
    b"{\xff\xfe}abc",
    b"{ARGON2}",
    b"{ARGON2}garbage",
    b"{ARGON2}$argon2id$v=19$m=65536,t=2,p=1$abc",
    b"{ARGON2}$argon2id$v=19$m=65536,t=2,p=1$!!!$!!!",
    b"{ARGON2}$argon2x$v=19$m=4096,t=3,p=1$inS+6Q2pD6YeRcv7u/pxnw$zlCgZ+t1haB6PeVpcSfthlagoPW4GuOa++PJlMD9q1A",
    # absurd cost in a stored value: refused rather than attempted
    b"{ARGON2}$argon2id$v=19$m=99999999,t=3,p=1$inS+6Q2pD6YeRcv7u/pxnw$zlCgZ+t1haB6PeVpcSfthlagoPW4GuOa++PJlMD9q1A",
    b"{ARGON2}$argon2id$v=19$m=4096,t=999,p=1$inS+6Q2pD6YeRcv7u/pxnw$zlCgZ+t1haB6PeVpcSfthlagoPW4GuOa++PJlMD9q1A",
    b"{PBKDF2-SHA512}",
    b"{PBKDF2-SHA512}abc$def$ghi",
    b"{PBKDF2-SHA512}0$c2FsdA$" + b"A" * 86,
    b"{PBKDF2-SHA512}1000$$" + b"A" * 86,
    b"{PBKDF2-SHA512}1000$c2FsdA$A",
    b"{PBKDF2-SHA512}999999999$c2FsdA$" + b"A" * 86,
    b"{PBKDF2_SHA256}short",
    b"{PBKDF2_SHA256}" + base64.b64encode(b"\xff\xff\xff\xff" + bytes(320)),  # 4e9 iterations
    b"{CRYPT}",
    b"{CRYPT}$6$",
    b"{CRYPT}$6$salt",
    b"{CRYPT}$6$rounds=abc$salt$hash",
    b"{CRYPT}$6$rounds=99999999$saltstring$xyz",
    b"{CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl",  # truncated
    b"{CRYPT}$1$",
    b"{CRYPT}abJnggxhB/yWI",  # traditional DES crypt: not supported
    b"{CRYPT}$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
    b"{CRYPT}$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",  # cost too high
    b"{CRYPT}$2b$05$short",
]


@pytest.mark.parametrize("stored", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_values_return_false(stored):
    assert verify(b"secret", stored) is False


@pytest.mark.parametrize(
    "plain,stored", [(None, b"x"), (b"x", None), (123, b"123"), (b"x", 1.5), ([], [])]
)
def test_wrong_types_return_false(plain, stored):
    assert verify(plain, stored) is False  # type: ignore[arg-type]
    assert is_hashed(stored) is False  # type: ignore[arg-type]
    assert is_slow(stored) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value,scheme,slow",
    [
        (b"{SSHA}abc", "SSHA", False),
        (b"{ssha}abc", "SSHA", False),
        (b"{SHA}abc", "SHA", False),
        (b"{SSHA512}abc", "SSHA512", False),
        (b"{SMD5}abc", "SMD5", False),
        (b"{MD5}abc", "MD5", False),
        (b"{ARGON2}$argon2id$...", "ARGON2", True),
        (b"{Argon2}x", "ARGON2", True),
        (b"{PBKDF2}1$a$b", "PBKDF2", True),
        (b"{PBKDF2-SHA1}1$a$b", "PBKDF2-SHA1", True),
        (b"{PBKDF2-SHA256}1$a$b", "PBKDF2-SHA256", True),
        (b"{pbkdf2-sha512}1$a$b", "PBKDF2-SHA512", True),
        (b"{PBKDF2_SHA256}AAAA", "PBKDF2_SHA256", True),
        (b"{CRYPT}$6$x$y", "CRYPT", True),
        (b"{crypt}$2b$10$x", "CRYPT", True),
        (b"{UNKNOWN}x", None, False),
        (b"{CLEARTEXT}x", None, False),
        (b"plain", None, False),
        (b"", None, False),
    ],
)
def test_classification(value, scheme, slow):
    assert scheme_of(value) == scheme
    assert is_hashed(value) is (scheme is not None)
    assert is_slow(value) is slow


def test_every_hash_scheme_is_verifiable_and_fast_ones_are_fast():
    assert HASH_SCHEMES <= KNOWN_SCHEMES
    for scheme in HASH_SCHEMES:
        stored = fast_hasher(scheme).hash(b"pw")
        assert is_slow(stored) is (scheme == "ARGON2" or scheme.startswith("PBKDF2"))


def test_nothing_is_logged_with_the_password(caplog):
    secret = "Zq7-unique-canary-Zq7"
    with caplog.at_level(logging.DEBUG):
        for scheme in HASH_SCHEMES:
            stored = fast_hasher(scheme).hash(secret)
            verify(secret, stored)
            verify(secret + "x", stored)
        verify(secret, BCRYPT_VECTOR)
        verify(secret, b"{ARGON2}garbage")
    assert secret not in caplog.text


# ---------------------------------------------------------------------------
# generate_password

UNAMBIGUOUS = set("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")


def test_generate_password_shape():
    for _ in range(200):
        pw = generate_password()
        assert re.fullmatch(r"[A-Za-z2-9]{4}(-[A-Za-z2-9]{4}){3}", pw), pw
        body = pw.replace("-", "")
        assert len(body) == 16
        assert set(body) <= UNAMBIGUOUS
        assert not set(body) & set("0Oo1lI")
        assert any(c.islower() for c in body)
        assert any(c.isupper() for c in body)
        assert any(c.isdigit() for c in body)


@pytest.mark.parametrize("length", [12, 13, 15, 20, 32])
def test_generate_password_lengths(length):
    pw = generate_password(length)
    groups = pw.split("-")
    assert len(pw.replace("-", "")) == length
    assert all(len(g) == 4 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 4


def test_generate_password_too_short_is_refused():
    with pytest.raises(ValueError):
        generate_password(11)


def test_generate_password_entropy_and_uniqueness():
    samples = [generate_password() for _ in range(3000)]
    assert len(set(samples)) == len(samples)
    # every one of the 56 symbols turns up (missing one by chance: p < 1e-100)
    seen = set("".join(samples).replace("-", ""))
    assert seen == UNAMBIGUOUS
    assert 12 * math.log2(len(UNAMBIGUOUS)) > 69.5  # the minimum length
    assert 16 * math.log2(len(UNAMBIGUOUS)) > 90  # the default


def test_generated_password_hashes_and_verifies():
    pw = generate_password()
    stored = fast_hasher().hash(pw.encode())
    assert verify(pw.encode(), stored)


# ---------------------------------------------------------------------------
# prepare: a stored value parsed once (the server keeps it with the cached entry)


def _prepared_cases():
    fast = [Hasher(scheme).hash(b"secret") for scheme in sorted(HASH_SCHEMES) if not scheme.startswith(("ARGON", "PBKDF"))]
    md5 = [b"{MD5}" + base64.b64encode(hashlib.md5(b"secret").digest()),
           b"{SMD5}" + base64.b64encode(hashlib.md5(b"secretNaCl").digest() + b"NaCl"),
           b"{SHA}" + base64.b64encode(hashlib.sha1(b"secret").digest()),
           b"{sha512}" + base64.b64encode(hashlib.sha512(b"secret").digest())]
    return fast + md5 + list(SLAPPASSWD_SECRET) + MALFORMED + [b"secret", b"{}x", b""]


@pytest.mark.parametrize("stored", _prepared_cases(), ids=range(len(_prepared_cases())))
def test_prepare_answers_as_verify(stored):
    check = passwords.prepare(stored)
    for plain in (b"secret", b"Secret", b"secret\x00", b"", b"x" * 200, "secret".encode()):
        assert check(plain) is verify(plain, stored), (plain, stored)
