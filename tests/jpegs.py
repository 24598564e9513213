"""Real JPEG files for the photo tests (command line, LDAP and web console)."""
import functools
import io
import random

from PIL import Image

from directory.district import photos


@functools.lru_cache(maxsize=None)
def jpeg(w=175, h=233, lo=photos.MIN_BYTES, hi=photos.MAX_BYTES, seed=1) -> bytes:
    """A real JPEG (a noisy gradient) whose size falls in [lo, hi] bytes."""
    rng = random.Random(seed)
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 255 // w + rng.randint(0, 40)) % 256, (y * 255 // h + rng.randint(0, 40)) % 256,
                        (128 + rng.randint(0, 40)) % 256)
    for q in range(100, 4, -1):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        if lo <= len(buf.getvalue()) <= hi:
            return buf.getvalue()
    raise AssertionError(f"no quality gives {w}x{h} within {lo}..{hi} bytes")
