"""Zip bombs in photo uploads (photos_client.expand, used by the console and by
`rollcall photos upload`): member count and expanded size are capped from the central
directory, and decompression never goes past what a member declares."""
import io
import struct
import zipfile

from directory.photos_client import expand
from directory.district.photos import PhotoError


def zip_of(members: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def errors(items) -> list:
    return [(n, str(d)) for n, d in items if isinstance(d, PhotoError)]


def test_a_normal_batch_expands():
    data = zip_of({f"{i:06d}s001.jpg": b"\xff\xd8" + bytes(20000) for i in range(50)})
    got = list(expand("batch.zip", data))
    assert len(got) == 50 and not errors(got)
    assert all(len(d) == 20002 for _, d in got)


def test_too_many_members_refuses_the_whole_zip():
    data = zip_of({f"{i}.jpg": b"x" for i in range(30)}, zipfile.ZIP_STORED)
    got = list(expand("many.zip", data, max_files=20))
    assert len(got) == 1 and got[0][0] == "many.zip"
    assert "too many files" in str(got[0][1]) and "30" in str(got[0][1])
    assert len(list(expand("many.zip", data, max_files=30))) == 30


def test_declared_size_over_the_budget_refuses_the_whole_zip():
    # 60 members of 1 MB of zeros: a few KB compressed, 60 MB expanded
    data = zip_of({f"{i}.jpg": bytes(1024 * 1024) for i in range(60)})
    assert len(data) < 200 * 1024
    got = list(expand("bomb.zip", data, max_mb=50))
    assert len(got) == 1 and "expands to 60 MB" in str(got[0][1])


def test_a_huge_member_is_never_decompressed():
    data = zip_of({"000001s001.jpg": bytes(100 * 1024 * 1024)})  # ~100 KB compressed
    got = list(expand("one.zip", data, max_mb=1000))
    assert len(got) == 1 and "wrong size" in str(got[0][1])


def _lie_about_sizes(data: bytes, size: int) -> bytes:
    """Rewrite every member's uncompressed size, in the central directory and the local
    headers, to `size`."""
    b = bytearray(data)
    i = 0
    while (i := b.find(b"PK\x01\x02", i)) >= 0:          # central directory entries
        struct.pack_into("<I", b, i + 24, size)
        i += 4
    i = 0
    while (i := b.find(b"PK\x03\x04", i)) >= 0:          # local file headers
        struct.pack_into("<I", b, i + 22, size)
        i += 4
    return bytes(b)


def test_a_lying_header_does_not_inflate_past_what_it_declares():
    real = zip_of({"000001s001.jpg": bytes(4 * 1024 * 1024), "000002s001.jpg": b"\xff\xd8" + bytes(20000)})
    data = _lie_about_sizes(real, 20 * 1024)   # both members claim 20 KB
    got = list(expand("liar.zip", data))
    assert got, got
    for name, d in got:
        if isinstance(d, PhotoError):
            continue
        assert len(d) <= 20 * 1024, (name, len(d))
    assert errors(got), "the 4 MB member claiming 20 KB must be refused"


def test_the_budget_is_for_the_whole_zip():
    data = zip_of({f"{i:06d}s001.jpg": bytes(300 * 1024) for i in range(10)})
    got = list(expand("b.zip", data, max_mb=2))
    assert len(got) == 1 and "expands to 2 MB" in str(got[0][1])


def test_damaged_and_empty_zips():
    assert "empty zip" in str(list(expand("e.zip", zip_of({})))[0][1])
    broken = zip_of({"a.jpg": b"x" * 1000})
    broken = broken[:-30] + b"\x00" * 30
    got = list(expand("b.zip", broken))
    assert got and all(isinstance(d, (bytes, PhotoError)) for _, d in got)
