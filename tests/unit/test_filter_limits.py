"""limits.filter_max_terms / filter_max_depth: counted by the BER filter decoder as it
goes, so an oversized filter is refused after at most max_terms elements were decoded
(linear, nothing evaluated), and a filter within the limits decodes as before."""
import time

import pytest

from directory.server import ber
from directory.server.ber import FilterLimitExceeded, FilterLimits


def eq(i):
    return ("eq", "uid", b"u%d" % i)


def test_within_the_limits_decodes_as_before():
    flt = ("and", [("or", [eq(i) for i in range(5)]), ("not", ("present", "cn")),
                   ("sub", "cn", b"a", [b"b"], b"c")])
    data = ber.encode_filter(flt)
    # and, or, 5 eq, not, present, sub + its 3 pieces = 13 elements, 3 levels
    assert ber.decode_filter(data, FilterLimits(13, 3)) == flt
    with pytest.raises(FilterLimitExceeded, match="more than 12 elements"):
        ber.decode_filter(data, FilterLimits(12, 3))
    with pytest.raises(FilterLimitExceeded, match="nested deeper than 2 levels"):
        ber.decode_filter(data, FilterLimits(13, 2))
    assert ber.decode_filter(data) == flt  # no limits: the root DN


def test_a_huge_filter_is_refused_early():
    data = ber.encode_filter(("or", [eq(i) for i in range(300_000)]))
    t0 = time.perf_counter()
    with pytest.raises(FilterLimitExceeded):
        ber.decode_filter(data, FilterLimits(1000, 32))
    limited = time.perf_counter() - t0
    t0 = time.perf_counter()
    ber.decode_filter(data)
    full = time.perf_counter() - t0
    assert limited < full / 20, (limited, full)


def test_substring_pieces_count():
    data = ber.encode_filter(("sub", "cn", None, [b"x"] * 2000, None))
    with pytest.raises(FilterLimitExceeded):
        ber.decode_filter(data, FilterLimits(1000, 32))


def test_a_search_message_carries_its_message_id():
    body = (ber.encode_octets(0x04, "dc=x") + ber.encode_int(0x0A, 2) + ber.encode_int(0x0A, 0)
            + ber.encode_int(0x02, 0) + ber.encode_int(0x02, 0) + ber.encode_bool(0x01, False)
            + ber.encode_filter(("or", [eq(i) for i in range(50)])) + ber.encode_seq(0x30))
    pdu = ber.encode_seq(0x30, ber.encode_int(0x02, 7), ber.encode_seq(0x63, body))
    with pytest.raises(FilterLimitExceeded) as exc:
        ber.decode_message(pdu, filter_limits=FilterLimits(10, 32))
    assert exc.value.msgid == 7
    assert len(ber.decode_message(pdu, filter_limits=FilterLimits(51, 32)).request.filter[1]) == 50
