"""The district's ID-card photo rules, used by the server's photo overlay
(directory/core/photos.py) and by the photo clients (directory/photos_client.py, the
web console): a JPEG of 15-30 KB, 175x233 pixels or larger with the same 3:4 aspect,
named by the student's district ID (000123s045.jpg).

Pillow is imported when a photo is decoded, not when this module is: every server
process loads this module, few of them ever see a photo.
"""
from __future__ import annotations

import io
import re

from .ids import DISTRICT_ID

WIDTH, HEIGHT = 175, 233            # the ID-card photo
ASPECT = 0.75                       # width / height (175/233 = 0.751)
ASPECT_TOLERANCE = 0.01             # 1%: 240x320, 300x400, 176x234 … pass
MIN_BYTES, MAX_BYTES = 15 * 1024, 30 * 1024
MAX_MEMBER_BYTES = 5 * 1024 * 1024  # a zip member larger than this is not read at all
# a zip of photos (web.photo_zip_max_files / photo_zip_max_mb): a school's batch is
# ~2,000 JPEGs of at most 30 KB (60 MB); more members or more bytes is not a batch
ZIP_MAX_FILES = 5000
ZIP_MAX_MB = 200
MAX_PIXELS = 4000 * 4000            # larger images are refused before decoding (memory)
CONTAINER = "ou=staged-photos"      # staged photos: employeeNumber=<district ID>,ou=staged-photos,<suffix>
STUDENTS = "ou=students,ou=people"
PUBLISHER = "cn=photo-publisher,ou=services"
PHOTO_ROLES = ("principals", "photo-designees", "photo-vendors")
FILE_RE = re.compile(r"^(.+)\.jpe?g$", re.IGNORECASE)   # the stem: a district ID (ids.DISTRICT_ID)


class PhotoError(ValueError):
    """Why a photo is refused (one line, for the report and the LDAP diagnostic)."""


def kb(n: int) -> str:
    return f"{n / 1024:.1f} KB ({n} bytes)"


def decode_jpeg(data: bytes):
    """The decoded image, or PhotoError. Decodes every pixel: a file that only starts
    like a JPEG (magic bytes, extension) or is truncated or corrupt is refused."""
    from PIL import Image, UnidentifiedImageError  # lazy: Pillow only when a photo is checked

    if len(data) > MAX_MEMBER_BYTES:
        raise PhotoError(size_problem(len(data)))
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        if fmt != "JPEG":
            raise PhotoError(f"not a JPEG (the data is {fmt or 'not an image'})")
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise PhotoError(dimension_problem(w, h))
        img.load()  # every pixel: truncated or corrupt data fails here
    except PhotoError:
        raise
    except UnidentifiedImageError:
        # Pillow's message names its buffer object (<_io.BytesIO object at 0x…>): say it plainly
        raise PhotoError("not a JPEG (the file is not an image, or is damaged)") from None
    except Image.DecompressionBombError:
        raise PhotoError(f"too many pixels (more than {MAX_PIXELS // 1_000_000} million)") from None
    except (OSError, SyntaxError, ValueError):
        raise PhotoError("not a JPEG that can be read (the file is damaged or cut short)") from None
    return img


def dimension_problem(w: int, h: int) -> str | None:
    if (w, h) == (WIDTH, HEIGHT):
        return None
    if h and abs(w / h - ASPECT) <= ASPECT * ASPECT_TOLERANCE and w >= WIDTH and h >= HEIGHT:
        return None
    return (f"wrong dimensions: {w}×{h} pixels (must be {WIDTH}×{HEIGHT}, or larger with "
            f"the same 3:4 aspect ratio, e.g. 240×320)")


def size_problem(n: int) -> str | None:
    if MIN_BYTES <= n <= MAX_BYTES:
        return None
    return f"wrong size: {kb(n)} (must be 15–30 KB)"


def check_photo(data: bytes):
    """(width, height) of a valid photo, or PhotoError with every problem found."""
    img = decode_jpeg(data)
    problems = [p for p in (size_problem(len(data)), dimension_problem(*img.size)) if p]
    if problems:
        raise PhotoError("; ".join(problems))
    return img.size


def _encode(img, quality: int, subsampling: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=True, subsampling=subsampling)
    return buf.getvalue()


def _fit(img) -> bytes | None:
    """`img` encoded at the highest JPEG quality whose file is at most 30 KB, if that
    file is at least 15 KB; else None. 4:2:0 chroma (as cameras write) first, then
    4:4:4, which a smooth image needs to reach 15 KB at all. The size grows with the
    quality, so a binary search finds it in a few encodings."""
    for subsampling in (2, 0):
        lo, hi, best = 1, 100, None
        while lo <= hi:
            q = (lo + hi) // 2
            out = _encode(img, q, subsampling)
            if len(out) <= MAX_BYTES:
                best, lo = out, q + 1
            else:
                hi = q - 1
        if best is not None and not size_problem(len(best)):
            return best
    return None


def normalise(data: bytes) -> tuple[bytes, str | None]:
    """A photo that passes check_photo: resized to 175x233 when it is not that size
    already, re-encoded at the highest JPEG quality that keeps it within 15-30 KB. When
    no quality does (a very smooth image stays under 15 KB even at 175x233 and quality
    100), a valid original is kept as it is, else the smallest larger 3:4 size that
    fits is used. Returns (bytes, note); PhotoError when nothing fits."""
    from PIL import Image  # lazy: Pillow only when a photo is normalised

    img = decode_jpeg(data)
    if img.size == (WIDTH, HEIGHT) and not size_problem(len(data)):
        return data, None
    w, h = img.size
    rgb = img.convert("RGB")
    out = _fit(rgb.resize((WIDTH, HEIGHT), Image.LANCZOS) if img.size != (WIDTH, HEIGHT) else rgb)
    if out is not None:
        return out, (f"normalised from {w}×{h} to {WIDTH}×{HEIGHT}" if (w, h) != (WIDTH, HEIGHT)
                     else f"re-encoded to {kb(len(out))}")
    if not size_problem(len(data)) and not dimension_problem(w, h):
        return data, f"kept at {w}×{h}: at {WIDTH}×{HEIGHT} it would be under 15 KB"
    if not dimension_problem(w, h):  # a 3:4 photo of the wrong size: a larger 3:4 size may fit
        for width in (240, 300, 360, 480, 600, 720, 900, 1200, 1500, 1800):
            height = round(width * 4 / 3)
            if width >= w or dimension_problem(width, height):
                break
            out = _fit(rgb.resize((width, height), Image.LANCZOS))
            if out is not None:
                return out, f"normalised from {w}×{h} to {width}×{height}"
    raise PhotoError(f"cannot normalise {w}×{h} ({kb(len(data))}) to a JPEG of 15–30 KB at "
                     f"{WIDTH}×{HEIGHT} or a larger 3:4 size: send a {WIDTH}×{HEIGHT} photo")


def district_id_of(filename: str) -> str:
    """The district ID a file is named by (letter lower-cased), or PhotoError."""
    base = re.split(r"[/\\:]", filename)[-1]  # "batch.zip:folder/000001s001.jpg" -> the file
    m = FILE_RE.match(base)
    stem = m.group(1) if m else ""
    if not m or not (DISTRICT_ID.match(stem) or DISTRICT_ID.match(stem.lower())):
        raise PhotoError(f"bad file name {base!r}: must be the district ID, e.g. 000123s045.jpg")
    return stem.lower() if DISTRICT_ID.match(stem.lower()) else stem
