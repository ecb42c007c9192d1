"""The page's drawings, recognised from their bytes and opened the short way.

The page sends its drawing pad as a PNG (at most :data:`CANVAS_SIDE` pixels a side, 8-bit
gray or RGB, with or without alpha, no interlacing). :func:`canvas_gray` recognises such a
file from its chunk list alone, before anything is decoded, and returns the drawing's gray
levels; every other body goes through :func:`~logreg_mnist.images.open_image` as before.
What the short way leaves out is what cannot change such a file's pixels:

- the checks of size and decoded bytes: at most 320 x 320 x 4 bytes, far below the limits;
- the format sniffing (the signature and header are read here) and the first-frame seek
  (no ``acTL`` chunk: not an animation);
- the EXIF orientation: only the chunks in :data:`_KEPT_CHUNKS` are accepted, none of
  which holds EXIF data (``eXIf`` and the text chunks that may carry it are not);
- a second conversion to gray levels: the gray levels are taken once, as the pipeline's
  own :func:`~logreg_mnist.images.to_gray` gives them (whole numbers 0-255 for these
  modes, kept as 8-bit levels), and handed to :func:`~logreg_mnist.images.prepare` as an
  8-bit gray image.

The decoding itself (Pillow's PNG decoder) and the whole analysis of
:func:`~logreg_mnist.images.prepare` are the same code as for any other image, so a
drawing gives exactly the ``prepared`` input the full pipeline gives
(``tests/test_serve_canvas.py`` checks it on many random drawings).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from ..images.drawing import gray_levels

CANVAS_SIDE = 320  # the longest side taken the short way (the page's pad is 280)
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}  # 8-bit gray, RGB, gray+alpha, RGBA
# Chunks that leave the decoded pixels as they are: no transparency key (tRNS), palette,
# animation or EXIF (eXIf, or in text chunks).
_KEPT_CHUNKS = {b"IHDR", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"cHRM", b"pHYs", b"iCCP", b"bKGD"}


def is_canvas_png(data: bytes) -> bool:
    """Whether ``data`` is a PNG as the page's pad gives it (see the module's docstring): read
    from the signature and chunk list, nothing decoded; any doubt (a bad CRC included) is False."""
    if not data.startswith(_SIGNATURE) or len(data) < 8 + 25:
        return False
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        return False
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if not (0 < width <= CANVAS_SIDE and 0 < height <= CANVAS_SIDE) or depth != 8 or interlace != 0:
        return False
    if colour not in _COLOUR_TYPES:
        return False
    at, seen_data = 8, False
    while at + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        end = at + 12 + length
        if kind not in _KEPT_CHUNKS or end > len(data):
            return False
        if zlib.crc32(data[at + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
            return False
        seen_data = seen_data or kind == b"IDAT"
        if kind == b"IEND":
            return seen_data and end == len(data)
        at = end
    return False


def canvas_gray(data: bytes) -> np.ndarray | None:
    """The gray levels (uint8 (h, w), 0-255, those of :func:`~logreg_mnist.images.to_gray`) of a
    drawing from the page's pad; None for any other body, and for a drawing that does not
    decode (the full path then names the fault)."""
    if not is_canvas_png(data):
        return None
    try:
        image = Image.open(io.BytesIO(data), formats=("PNG",))
        image.load()
    except Exception:  # noqa: BLE001 - a damaged drawing: open_image says what is wrong
        return None
    if image.mode != _COLOUR_TYPES[data[25]]:
        return None
    return gray_levels(image)


def as_image(gray: np.ndarray) -> Image.Image:
    """Gray levels (uint8) as an 8-bit gray image, which :func:`~logreg_mnist.images.to_gray`
    turns back into the same levels."""
    return Image.fromarray(np.asarray(gray, dtype=np.uint8), mode="L")
