"""Decode time of one huge ModifyRequest: ldaptor's codec vs directory.server.ber.

    .venv/bin/python scripts/bench_big_modify.py [--changes 160000] [--skip-ldaptor]

The PDU is the one of the security report: ~4 MB, 160,000 changes (replace cn: a
10-octet value each).  Ours is timed without caps (the whole PDU decoded, as for the
root DN) and with the default `limits:` caps (what everyone else gets: decoding stops
at the first change over the cap).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `directory`, not an installed one

from directory.config import SECTIONS
from directory.server import ber
from directory.server.protocol import request_limits


class DEFAULTS:
    """A config with the default `limits:` section."""

    @staticmethod
    def section(name):
        return {k: v.default for k, v in SECTIONS[name].keys.items()}


def big_modify(changes: int, msgid: int = 7, dn: str = "uid=jsmith,ou=students,ou=people,dc=district,dc=example"):
    one = ber.encode_seq(0x30, ber.encode_int(0x0A, 2),
                         ber.encode_seq(0x30, ber.encode_octets(4, "cn"),
                                        ber.encode_seq(0x31, ber.encode_octets(4, b"0123456789"))))
    body = ber.encode_octets(4, dn) + ber.encode_seq(0x30, one * changes)
    return ber.encode_seq(0x30, ber.encode_int(2, msgid), ber.encode_tlv(0x66, body))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=160_000)
    ap.add_argument("--skip-ldaptor", action="store_true")
    args = ap.parse_args()
    pdu = big_modify(args.changes)
    print(f"PDU: {len(pdu):,} octets, {args.changes:,} changes")

    t = time.perf_counter()
    msg = ber.decode_message(pdu)
    print(f"ours, no caps (root DN):   {time.perf_counter() - t:8.3f} s  ({len(msg.request[1]):,} changes decoded)")
    t = time.perf_counter()
    try:
        ber.decode_message(pdu, request_limits(DEFAULTS))
    except ber.RequestLimitExceeded as exc:
        print(f"ours, default caps:        {time.perf_counter() - t:8.3f} s  ({exc})")

    if not args.skip_ldaptor:
        from ldaptor.protocols import pureber
        from ldaptor.protocols.ldap.ldapserver import BaseLDAPServer

        t = time.perf_counter()
        pureber.berDecodeObject(BaseLDAPServer.berdecoder, pdu)
        print(f"ldaptor (before):          {time.perf_counter() - t:8.3f} s")


if __name__ == "__main__":
    main()
