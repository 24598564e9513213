"""Microbenchmark: directory.server.ber vs ldaptor's pure-Python BER codec.

    .venv/bin/python scripts/bench_ber.py [--number N]

Prints µs/op for ours and ldaptor's, and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import time
import timeit

from ldaptor import ldapfilter
from ldaptor.protocols import pureber, pureldap
from ldaptor.protocols.ldap.ldapserver import BaseLDAPServer

from directory.server import ber


def _pdus() -> dict[str, bytes]:
    M = pureldap.LDAPMessage
    return {
        "bind (simple)": M(
            pureldap.LDAPBindRequest(dn="uid=jsmith,ou=people,dc=example,dc=org", auth=b"s3cret-Pass"), id=1
        ).toWire(),
        "search (uid=jsmith)": M(
            pureldap.LDAPSearchRequest(
                baseObject="ou=people,dc=example,dc=org",
                scope=2,
                filter=ldapfilter.parseFilter("(uid=jsmith)"),
                attributes=["cn", "mail"],
            ),
            id=2,
        ).toWire(),
        "search (&(objectClass=..)(uid=..))": M(
            pureldap.LDAPSearchRequest(
                baseObject="ou=people,dc=example,dc=org",
                scope=2,
                filter=ldapfilter.parseFilter("(&(objectClass=inetOrgPerson)(uid=jsmith))"),
                attributes=["cn", "mail"],
            ),
            id=3,
        ).toWire(),
        "search + paged control": M(
            pureldap.LDAPSearchRequest(
                baseObject="dc=example,dc=org",
                filter=ldapfilter.parseFilter("(&(objectClass=inetOrgPerson)(|(uid=js*)(mail=*@example.org)))"),
                attributes=["uid", "cn", "mail", "memberOf"],
            ),
            id=4,
            controls=[("1.2.840.113556.1.4.319", False, ber.encode_seq(0x30, ber.encode_int(2, 500), ber.encode_octets(4, b"")))],
        ).toWire(),
    }


ENTRY_DN = "uid=jsmith,ou=people,dc=example,dc=org"
ENTRY_ATTRS = [
    ("objectClass", [b"top", b"person", b"organizationalPerson", b"inetOrgPerson"]),
    ("uid", [b"jsmith"]),
    ("cn", [b"John Smith"]),
    ("sn", [b"Smith"]),
    ("givenName", [b"John"]),
    ("mail", [b"jsmith@example.org"]),
    ("employeeNumber", [b"104223"]),
    ("telephoneNumber", [b"+1 555 0100"]),
    ("title", [b"Teacher"]),
    ("memberOf", [b"cn=staff,ou=groups,dc=example,dc=org", b"cn=teachers,ou=groups,dc=example,dc=org"]),
]


def _time(fn, number: int) -> float:
    """Best of 7 runs, CPU time (robust against a busy machine), in µs per call."""
    return min(timeit.repeat(fn, number=number, repeat=7, timer=time.process_time)) / number * 1e6


def _row(label: str, ours: float, theirs: float) -> None:
    print(f"{label:<44} {ours:8.2f} µs {theirs:10.2f} µs {theirs / ours:9.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=20000)
    args = ap.parse_args()
    n = args.number
    decoder = BaseLDAPServer.berdecoder

    print(f"{'operation':<44} {'ours':>11} {'ldaptor':>13} {'ratio':>10}")
    for label, pdu in _pdus().items():
        ldaptor_msg, used = pureber.berDecodeObject(decoder, pdu)
        assert used == len(pdu) and ldaptor_msg is not None
        ber.decode_message(pdu)
        _row("decode " + label, _time(lambda: ber.decode_message(pdu), n), _time(lambda: pureber.berDecodeObject(decoder, pdu), n // 10))

    ours = _time(lambda: ber.encode_search_entry(7, ENTRY_DN, ENTRY_ATTRS), n)
    theirs = _time(
        lambda: pureldap.LDAPMessage(pureldap.LDAPSearchResultEntry(ENTRY_DN, ENTRY_ATTRS), id=7).toWire(), n // 10
    )
    assert ber.encode_search_entry(7, ENTRY_DN, ENTRY_ATTRS) == pureldap.LDAPMessage(
        pureldap.LDAPSearchResultEntry(ENTRY_DN, ENTRY_ATTRS), id=7
    ).toWire()
    _row("encode entry (10 attributes)", ours, theirs)

    ours = _time(lambda: ber.encode_result(7, 5, 0), n)
    theirs = _time(lambda: pureldap.LDAPMessage(pureldap.LDAPSearchResultDone(resultCode=0), id=7).toWire(), n // 10)
    _row("encode searchResultDone", ours, theirs)

    ours = _time(lambda: ber.encode_result(1, 1, 49, "", "invalid credentials"), n)
    theirs = _time(
        lambda: pureldap.LDAPMessage(
            pureldap.LDAPBindResponse(resultCode=49, errorMessage="invalid credentials"), id=1
        ).toWire(),
        n // 10,
    )
    _row("encode bindResponse", ours, theirs)


if __name__ == "__main__":
    main()
