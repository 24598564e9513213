"""Benchmark harness for Rollcall (run it with ``scripts/bench``).

Modules:
  datagen  -- deterministic synthetic LDIF (users with {SSHA} passwords)
  loadgen  -- pipelined raw-socket LDAP load generator
  slapd    -- a private Debian slapd (back-mdb) for comparison
  bench    -- the CLI that ties them together
"""
