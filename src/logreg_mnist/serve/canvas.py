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

The pixels: Chromium's canvas encoder (the page's ``toDataURL``) filters every row "Up" (each
byte as its difference from the one above) and compresses fast. When such a file holds an
opaque drawing in gray (R = G = B, as the page draws), its gray levels are read straight from
the differences (:func:`_opaque_gray`): inflated by zlib-ng (several times faster on these
long runs than the system's zlib, which Pillow uses) and summed down the columns in one
compiled pass (``_canvas.c``; NumPy where it was not built); a fifth of Pillow's time.
Only a file whose chunks are the header, the image data, the end and at most the simple
ones of :data:`_SIMPLE_CHUNKS` is read this way. Every other file, and any stream that does not inflate to
exactly the picture's bytes, is decoded by Pillow and its levels taken by
:func:`~logreg_mnist.images.drawing.gray_levels`. The levels are the same either way (PNG is
lossless, and Pillow's conversion to gray keeps a gray pixel's level: its weights sum to 1;
``tests/test_serve_canvas.py`` compares the two on drawings made by Chromium and on crafted
files), so the whole analysis of :func:`~logreg_mnist.images.prepare` is the same code as
for any other image and a drawing gives exactly the ``prepared`` input the full pipeline
gives (checked there on many random drawings).
"""

from __future__ import annotations

import io
import struct
import types
import zlib

import numpy as np
from PIL import Image

from ..images.drawing import gray_levels

_inflater: types.ModuleType  # several times faster than the system's zlib on a canvas's long runs
try:
    from zlib_ng import zlib_ng

    _inflater = zlib_ng
except ImportError:  # pragma: no cover - zlib-ng is a dependency; the standard library's does the same
    _inflater = zlib
_compiled: types.ModuleType | None  # the gray levels in one pass (optional: setup.py builds it where it can)
try:
    from . import _canvas

    _compiled = _canvas
except ImportError:  # pragma: no cover - NumPy gives the same levels
    _compiled = None

CANVAS_SIDE = 320  # the longest side taken the short way (the page's pad is 280)
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}  # 8-bit gray, RGB, gray+alpha, RGBA
# Chunks that leave the decoded pixels as they are: no transparency key (tRNS), palette,
# animation or EXIF (eXIf, or in text chunks).
_KEPT_CHUNKS = {b"IHDR", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"cHRM", b"pHYs", b"iCCP", b"bKGD"}
_BYTES_PER_PIXEL = {0: 1, 2: 3, 4: 2, 6: 4}
# The chunks a picture read from its rows (_opaque_gray) may hold besides IHDR, IDAT and IEND
# (an empty IEND): these, of exactly these lengths, whatever their values (which Pillow keeps
# aside, leaving the pixels as they are). Anything else is decoded by Pillow, which checks it.
_SIMPLE_CHUNKS = {b"IHDR": 13, b"IEND": 0, b"sRGB": 1, b"gAMA": 4, b"pHYs": 9, b"cHRM": 32}
_NONE, _UP = 0, 2  # PNG's row filters: none; each byte the difference from the one above


def is_canvas_png(data: bytes) -> bool:
    """Whether ``data`` is a PNG as the page's pad gives it (see the module's docstring): read
    from the signature and chunk list, nothing decoded; any doubt (a bad CRC included) is False."""
    return _chunk_list(data) is not None


def _chunk_list(data: bytes) -> list[tuple[bytes, int, int]] | None:
    """The chunks of a PNG as the page's pad gives it, ``(kind, start, end)`` of each one's
    data; None for any other file: the header first and once (8-bit, a colour type of
    :data:`_COLOUR_TYPES`, PNG's one compression and filter method, no interlacing, at most
    :data:`CANVAS_SIDE` pixels a side), only chunks of :data:`_KEPT_CHUNKS`, every CRC right,
    the image data in consecutive chunks, the end chunk last."""
    if not data.startswith(_SIGNATURE) or len(data) < 8 + 25:
        return None
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if not (0 < width <= CANVAS_SIDE and 0 < height <= CANVAS_SIDE) or depth != 8 or colour not in _COLOUR_TYPES:
        return None
    if compression != 0 or filtering != 0 or interlace != 0:
        return None
    chunks: list[tuple[bytes, int, int]] = []
    at = 8
    while at + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        end = at + 12 + length
        if kind not in _KEPT_CHUNKS or end > len(data) or (kind == b"IHDR" and at != 8):
            return None
        if zlib.crc32(data[at + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
            return None
        if kind == b"IDAT" and chunks and chunks[-1][0] != b"IDAT" and any(k == b"IDAT" for k, _, _ in chunks):
            return None  # image data split by another chunk
        chunks.append((kind, at + 8, end - 4))
        if kind == b"IEND":
            return chunks if end == len(data) and any(k == b"IDAT" for k, _, _ in chunks) else None
        at = end
    return None


def canvas_gray(data: bytes) -> np.ndarray | None:
    """The gray levels (uint8 (h, w), 0-255, those of :func:`~logreg_mnist.images.to_gray`) of a
    drawing from the page's pad; None for any other body, and for a drawing that does not
    decode (the full path then names the fault)."""
    chunks = _chunk_list(data)
    if chunks is None:
        return None
    colour = data[25]
    if colour == 6 and all(kind == b"IDAT" or _SIMPLE_CHUNKS.get(kind) == end - start for kind, start, end in chunks):
        rows = _inflated_rows(data, chunks)
        gray = None if rows is None else _opaque_gray(rows)
        if gray is not None:
            return gray
    try:
        image = Image.open(io.BytesIO(data), formats=("PNG",))
        image.load()
    except Exception:  # noqa: BLE001 - a damaged drawing: open_image says what is wrong
        return None
    if image.mode != _COLOUR_TYPES[colour]:
        return None
    return gray_levels(image)


def _inflated_rows(data: bytes, chunks: list[tuple[bytes, int, int]] | None = None) -> np.ndarray | None:
    """The filtered rows of a PNG that :func:`is_canvas_png` accepted (``chunks``: its
    :func:`_chunk_list`), uint8 (height, 1 + row bytes), each row's filter first, inflated by
    zlib-ng; None when its stream does not inflate to exactly that many bytes (Pillow then
    decodes it, or names the fault)."""
    chunks = _chunk_list(data) if chunks is None else chunks
    if chunks is None:
        return None
    width, height = struct.unpack(">II", data[16:24])
    expected = height * (width * _BYTES_PER_PIXEL[data[25]] + 1)
    stream = b"".join(data[start:end] for kind, start, end in chunks if kind == b"IDAT")
    inflater = _inflater.decompressobj()
    try:
        raw = inflater.decompress(stream, expected + 1)  # at most one byte more than the picture
    except _inflater.error:
        return None
    if len(raw) != expected or not inflater.eof:
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, -1)


def _opaque_gray(rows: np.ndarray) -> np.ndarray | None:
    """The gray levels of an RGBA picture's filtered ``rows`` when they are what Chromium's
    canvas gives for a drawing in gray: every row filtered "Up" (the first one "None" or
    "Up"), every pixel opaque and gray (R = G = B, whose level Pillow's conversion to ``L``
    is: its weights sum to 1); else None. Read from the differences themselves: a pixel's
    difference from the one above is then (d, d, d, 0), and (v, v, v, 255) on the first row,
    so only the red channel is summed; by the compiled ``_canvas`` module where it was built,
    else by NumPy (:func:`_opaque_gray_numpy`), the same levels."""
    height, width = rows.shape[0], (rows.shape[1] - 1) // 4
    if _compiled is None:
        return _opaque_gray_numpy(rows)
    gray = np.empty((height, width), dtype=np.uint8)
    return gray if _compiled.opaque_gray(rows, width, height, gray) else None


def _opaque_gray_numpy(rows: np.ndarray) -> np.ndarray | None:
    """:func:`_opaque_gray` with NumPy: the pixels' differences checked as 32-bit words, the
    red bytes summed down the columns by :func:`_sums_down`."""
    filters = rows[:, 0]
    if int(filters[0]) not in (_NONE, _UP) or bool((filters[1:] != _UP).any()):
        return None
    v = np.ascontiguousarray(rows[:, 1:]).view("<u4")  # a pixel's four bytes, red the lowest
    red = v & 0xFF
    grayish = red * np.uint32(0x010101)
    grayish[0] += np.uint32(0xFF000000)
    if not np.array_equal(v, grayish):
        return None
    gray = np.empty(red.shape, dtype=np.uint8)
    _sums_down(red.astype(np.uint8), gray)
    return gray


def _sums_down(rows: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = rows[0] + ... + rows[i]`` modulo 256 (uint8 (h, n)), as NumPy's ``cumsum``
    down the columns gives it, in ``log2(h)`` whole-array additions (each row plus the one
    ``k`` above it, for k = 1, 2, 4, ...: Hillis and Steele's scan) instead of ``cumsum``'s
    loop over the columns (5x slower here)."""
    h = len(rows)
    sums, spare = np.array(rows, dtype=np.uint8), np.empty(rows.shape, dtype=np.uint8)
    k = 1
    while k < h:
        np.add(sums[k:], sums[:-k], out=spare[k:])
        spare[:k] = sums[:k]
        sums, spare = spare, sums
        k *= 2
    out[...] = sums


def as_image(gray: np.ndarray) -> Image.Image:
    """Gray levels (uint8) as an 8-bit gray image, which :func:`~logreg_mnist.images.to_gray`
    turns back into the same levels."""
    return Image.fromarray(np.asarray(gray, dtype=np.uint8), mode="L")
