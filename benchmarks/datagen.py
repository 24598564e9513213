"""Deterministic synthetic directory data for the benchmarks.

Writes an LDIF with the suffix ``dc=district,dc=example``, ``ou=people``,
``ou=students,ou=people`` and N inetOrgPerson users::

    dn: uid=u000123,ou=students,ou=people,dc=district,dc=example
    cn: Given Surname            (from small name lists, Zipf-weighted)
    userPassword: {SSHA}...      (password "pw-u000123", as migrated from OpenLDAP)

The same N (and seed) always gives the same file, so results are comparable
between runs and servers.  With argon2_users=K the first K users (u000000 …) have an
{ARGON2} hash at the production parameters instead (ARGON2 below, config.yaml's
passwords.argon2), computed once and cached in the output directory: the bind
capacity case binds as them.

    python -m benchmarks.datagen --users 100000 -o users.ldif
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import sys
import time

SUFFIX = "dc=district,dc=example"
PEOPLE = "ou=people," + SUFFIX
STUDENTS = "ou=students," + PEOPLE
ROOT_DN = "cn=admin," + SUFFIX
ROOT_PASSWORD = "bench-admin-password"
# An ordinary (non-root) identity the eq search case binds as, so access rules apply: a
# service account, like an SSO server looking users up (Rollcall's rules let services
# read students; slapd's bench rules let any bound user read).
READER_DN = "cn=bench-reader,ou=services," + SUFFIX
READER_PASSWORD = "bench-reader-password"
SEED = 20240611
# The searching identity of the substring cases: an SSO service's bind account
# (config.yaml's access rules let ou=services read students; slapd's "users read").
SERVICES = "ou=services," + SUFFIX
SEARCH_DN = "cn=bench-sso," + SERVICES
SEARCH_PASSWORD = "bench-sso-password"
BASE_ENTRIES = 6  # entries besides the users: base_entries()
# Bump when the generated content changes (cache key for bench-out/).
VERSION = 3
# config.yaml's passwords.argon2 (m=64 MiB, t=2, p=1): the {ARGON2} users' hashes
ARGON2 = {"time_cost": 2, "memory_cost": 65536, "parallelism": 1}

GIVEN_NAMES = """
James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William
Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa
Daniel Nancy Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven
Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian
Dorothy George Melissa Timothy Deborah Ronald Stephanie Edward Rebecca Jason
Sharon Jeffrey Laura Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric
Shirley Jonathan Anna Stephen Brenda Larry Pamela Justin Emma Scott Nicole
Brandon Helen Benjamin Samantha Samuel Katherine Gregory Christine Alexander Debra
Frank Rachel Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria Jerry
Heather Tyler Diane Aaron Ruth Jose Julie Adam Olivia Nathan Joyce Henry Virginia
Noah Sophia Liam Mia Lucas Chloe Ethan Zoe Mason Ava Logan Grace Elijah Lily
""".split()

SURNAMES = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez
Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee
Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young
Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall
Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker
Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez
Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward
Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price
Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins
Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher
Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds
Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina
Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald
Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman
Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason
Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone
Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols
Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold
""".split()

SCHOOLS = ["S%04d" % (100 + 37 * k) for k in range(60)]

# Substring pieces for `(cn=*piece*)`: 4 letters out of the 20 most common
# surnames.  4 letters because slapd's substring index (index_substr_any_len
# defaults to 4) can only answer "any" components of at least 4 characters; a
# shorter piece would make slapd scan the whole database.
SUB_PIECE_LEN = 4


def _weights(n: int, s: float = 0.9) -> list[float]:
    """Zipf-like weights so that a few names are common, as in real rosters."""
    return [1.0 / (k + 1) ** s for k in range(n)]


def uid_of(i: int) -> str:
    return "u%06d" % i


def dn_of(i: int) -> str:
    return "uid=%s,%s" % (uid_of(i), STUDENTS)


def password_of(i: int) -> str:
    return "pw-" + uid_of(i)


def ssha(password: str | bytes, salt: bytes) -> str:
    if isinstance(password, str):
        password = password.encode("utf-8")
    digest = hashlib.sha1(password + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def sub_pieces(n: int = 20) -> list[str]:
    """Lower-case 4-letter pieces of the n most common surnames (deterministic)."""
    pieces = []
    for name in SURNAMES[:n]:
        low = name.lower()
        if len(low) < SUB_PIECE_LEN:
            continue
        off = 1 if len(low) > SUB_PIECE_LEN else 0  # skip the initial: a real "any" match
        piece = low[off:off + SUB_PIECE_LEN]
        if piece not in pieces:
            pieces.append(piece)
    return pieces


def base_entries() -> str:
    return (
        "dn: %s\n"
        "objectClass: top\nobjectClass: dcObject\nobjectClass: organization\n"
        "dc: district\no: Example School District\n\n"
        "dn: %s\n"
        "objectClass: top\nobjectClass: organizationalUnit\nou: people\n\n"
        "dn: %s\n"
        "objectClass: top\nobjectClass: organizationalUnit\nou: students\n\n"
        "dn: %s\n"
        "objectClass: top\nobjectClass: organizationalUnit\nou: services\n\n"
        "dn: %s\n"
        "objectClass: top\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
        "cn: bench-sso\nuserPassword: %s\n\n"
        "dn: %s\n"
        "objectClass: top\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
        "cn: bench-reader\nuserPassword: %s\n\n"
    ) % (SUFFIX, PEOPLE, STUDENTS, SERVICES, SEARCH_DN, ssha(SEARCH_PASSWORD, b"bnch"),
       READER_DN, ssha(READER_PASSWORD, b"rdr1"))


def _argon2_one(i: int) -> str:
    from argon2 import PasswordHasher  # only when {ARGON2} users are asked for (cffi import)

    return "{ARGON2}" + PasswordHasher(**ARGON2).hash(password_of(i))


def argon2_hashes(out_dir: str, k: int) -> list[str]:
    """{ARGON2} hashes of the first k users' passwords (random salts, so computed once
    and kept in out_dir/argon2-<k>.txt; two processes: about 0.1-0.2 s each)."""
    path = os.path.join(out_dir, "argon2-m%d-t%d-%d.txt" % (ARGON2["memory_cost"], ARGON2["time_cost"], k))
    if os.path.exists(path):
        with open(path, encoding="ascii") as f:
            hashes = f.read().split()
        if len(hashes) == k:
            return hashes
    from multiprocessing import Pool  # only here: a pool for the one-off hashing

    with Pool(min(k, os.cpu_count() or 1)) as pool:
        hashes = pool.map(_argon2_one, range(k))
    with open(path + ".tmp", "w", encoding="ascii") as f:
        f.write("\n".join(hashes) + "\n")
    os.replace(path + ".tmp", path)
    return hashes


def _draw_names(rng, n):
    """(given names, surnames) of users 0..n-1; draws everything in bulk (much faster
    than per-entry choices())."""
    givens = rng.choices(GIVEN_NAMES, weights=_weights(len(GIVEN_NAMES), 0.6), k=n)
    return givens, rng.choices(SURNAMES, weights=_weights(len(SURNAMES), 0.5), k=n)


def user_names(n: int, seed: int = SEED) -> list[tuple[str, str]]:
    """(given name, surname) of each user, as iter_users writes them."""
    return list(zip(*_draw_names(random.Random(seed), n)))


def iter_users(n: int, seed: int = SEED, argon2: list[str] | None = None):
    """Yield (i, ldif_text) for each user; deterministic for a given seed. argon2: the
    userPassword values of the first len(argon2) users (see argon2_hashes)."""
    argon2 = argon2 or []
    rng = random.Random(seed)
    givens, surnames = _draw_names(rng, n)
    schools = rng.choices(SCHOOLS, k=n)
    suffixes = [rng.randrange(1000) for _ in range(n)]
    salts = rng.randbytes(4 * n)
    sha1 = hashlib.sha1
    b64 = base64.b64encode
    for i in range(n):
        uid = "u%06d" % i
        g = givens[i]
        s = surnames[i]
        salt = salts[4 * i:4 * i + 4]
        pw = ("pw-" + uid).encode("ascii")
        hashed = (argon2[i] if i < len(argon2)
                  else "{SSHA}" + b64(sha1(pw + salt).digest() + salt).decode("ascii"))
        yield i, (
            "dn: uid=%s,%s\n"
            "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n"
            "objectClass: inetOrgPerson\n"
            "uid: %s\ncn: %s %s\nsn: %s\ngivenName: %s\n"
            "mail: %s.%s.%d@district.example\n"
            "employeeNumber: %06dx%03d\n"
            "departmentNumber: %s\n"
            "userPassword: %s\n\n"
        ) % (uid, STUDENTS, uid, g, s, s, g, g.lower(), s.lower(), i,
             i, suffixes[i], schools[i], hashed)


def write_ldif(path: str, n: int, seed: int = SEED, argon2: list[str] | None = None) -> float:
    """Write the LDIF atomically; return the seconds it took."""
    t0 = time.perf_counter()
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii", buffering=1 << 20) as f:
        f.write(base_entries())
        f.writelines(text for _, text in iter_users(n, seed, argon2))
    os.replace(tmp, path)
    return time.perf_counter() - t0


def cached_ldif(out_dir: str, n: int, seed: int = SEED, argon2_users: int = 0) -> tuple[str, bool]:
    """Path of the LDIF for n users in out_dir (the first argon2_users of them with
    {ARGON2} hashes), generating it when missing.

    Returns (path, generated_now)."""
    os.makedirs(out_dir, exist_ok=True)
    k = min(argon2_users, n)
    path = os.path.join(out_dir, "users-%d-s%d-v%d%s.ldif" % (n, seed, VERSION, "-a%d" % k if k else ""))
    if os.path.exists(path):
        return path, False
    write_ldif(path, n, seed, argon2_hashes(out_dir, k) if k else None)
    return path, True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.datagen",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", "-n", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("-o", "--output", required=True, help="LDIF file to write ('-' = stdout)")
    args = ap.parse_args(argv)
    if args.users < 1 or args.users > 999999:
        ap.error("--users must be between 1 and 999999")
    if args.output == "-":
        sys.stdout.write(base_entries())
        for _, text in iter_users(args.users, args.seed):
            sys.stdout.write(text)
        return 0
    secs = write_ldif(args.output, args.users, args.seed)
    print("wrote %d users (+%d base entries) to %s in %.2f s"
          % (args.users, BASE_ENTRIES, args.output, secs), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
