"""passwords.VerifiedCache (the verified-password cache) and `rollcall hash-password
--benchmark`."""
import re
import subprocess
import sys

import yaml

from directory import passwords
from directory.passwords import Hasher, VerifiedCache
from tests.conftest import ROOT

FAST = Hasher("ARGON2", time_cost=1, memory_cost=1024, parallelism=1)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_hit_only_for_the_same_account_value_and_password():
    stored = FAST.hash(b"right")
    other = FAST.hash(b"right")
    c = VerifiedCache(300, 10)
    since = c.generation()
    assert c.check(7, b"right", [stored]) is None  # nothing yet: a full verification
    assert c.remember(7, stored, b"right", since)
    assert c.check(7, b"right", [stored]) == stored
    assert c.check(7, b"wrong", [stored]) is None
    assert c.check(8, b"right", [stored]) is None  # another account
    assert c.check(7, b"right", [other]) is None  # the password changed: another stored value
    assert c.check(7, b"right", [stored]) is None  # ... which dropped it
    assert (c.hits, len(c)) == (1, 0)


def test_the_password_is_not_kept_and_the_key_not_shown():
    stored = FAST.hash(b"secret-password")
    c = VerifiedCache(300, 10)
    c.remember(1, stored, b"secret-password", c.generation())
    for text in (repr(c), repr(c.__dict__.get("_entries"))):
        assert "secret-password" not in text
    assert c._key.hex() not in repr(c)
    assert len(VerifiedCache()._key) == 32 and VerifiedCache()._key != c._key  # random per cache


def test_lifetime_is_from_the_verification():
    clock = Clock()
    stored = FAST.hash(b"pw")
    c = VerifiedCache(300, 10, clock=clock)
    c.remember(1, stored, b"pw", c.generation())
    clock.now += 299
    assert c.check(1, b"pw", [stored]) == stored  # a hit does not extend it
    clock.now += 2
    assert c.check(1, b"pw", [stored]) is None


def test_drops_and_a_lookup_begun_before_a_drop():
    stored = FAST.hash(b"pw")
    c = VerifiedCache(300, 10)
    c.remember(1, stored, b"pw", c.generation())
    c.remember(2, stored, b"pw", c.generation())
    c.drop([1])
    assert c.check(1, b"pw", [stored]) is None and c.check(2, b"pw", [stored]) == stored
    since = c.generation()  # a bind reads the entry ...
    c.drop([1])  # ... a write touches it while argon2 runs ...
    assert not c.remember(1, stored, b"pw", since)  # ... its result is not kept
    assert c.remember(3, stored, b"pw", since)  # another account's is
    c.drop(None)
    assert len(c) == 0 and not c.remember(3, stored, b"pw", since)


def test_bounded_and_fast_schemes_not_kept():
    stored = FAST.hash(b"pw")
    c = VerifiedCache(300, 3)
    for i in range(10):
        c.remember(i, stored, b"pw", c.generation())
    assert len(c) == 3 and c.check(9, b"pw", [stored]) == stored and c.check(0, b"pw", [stored]) is None
    ssha = Hasher("SSHA").hash(b"pw")
    assert not c.remember(20, ssha, b"pw", c.generation())  # a microsecond to check: nothing to gain
    off = VerifiedCache(0, 10)
    assert not off.enabled and not off.remember(1, stored, b"pw", 0) and off.check(1, b"pw", [stored]) is None


def test_many_drops_stay_bounded_and_exact():
    stored = FAST.hash(b"pw")
    c = VerifiedCache(300, 10)
    since = c.generation()
    c.drop([1])
    c.drop(range(100, 100 + VerifiedCache.DROP_MEMORY + 10))  # account 1's drop is forgotten ...
    assert len(c._dropped) <= VerifiedCache.DROP_MEMORY
    assert not c.remember(1, stored, b"pw", since)  # ... yet a lookup from before it may not store


def test_slow_verifications_are_counted():
    stored = FAST.hash(b"pw")
    before = passwords.slow_verifications
    assert passwords.verify(b"pw", stored)
    assert passwords.verify(b"pw", Hasher("SSHA").hash(b"pw"))
    assert passwords.slow_verifications - before == 1


def test_hash_password_benchmark_prints_ms_and_binds_per_core(tmp_path):
    r = subprocess.run([sys.executable, "-m", "directory.cli", "hash-password", "--benchmark", "--runs", "2",
                        "--alternatives"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    head = re.search(r"argon2id m=65536 KiB \(64 MiB\), t=2, p=1 \[built-in defaults\]: "
                     r"([0-9.]+) ms per verification \(([0-9.]+) CPU ms\), ([0-9.]+) binds/s per core", r.stdout)
    assert head, r.stdout
    assert float(head.group(1)) > 0 and float(head.group(3)) > 0
    rows = [line for line in r.stdout.splitlines() if re.search(r"\s[0-9.]+\s+[0-9.]+\s+[0-9.]+$", line)]
    assert any(row.startswith("OWASP minimum") for row in rows) and len(rows) >= 5, r.stdout


def test_hash_password_uses_the_configured_parameters(tmp_path):
    doc = yaml.safe_load((ROOT / "config.yaml").read_text())
    doc["schema"] = [str(ROOT / name) for name in doc["schema"]]
    doc["passwords"]["argon2"] = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    base = [sys.executable, "-m", "directory.cli", "hash-password", "--config", str(cfg)]
    r = subprocess.run(base + ["--benchmark", "--runs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"m=8192 KiB (8 MiB), t=1, p=1 [configured in {cfg}]" in r.stdout
    r = subprocess.run(base + ["--stdin"], cwd=ROOT, capture_output=True, text=True, input="pw-123\n", timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("{ARGON2}$argon2id$v=19$m=8192,t=1,p=1$"), r.stdout
