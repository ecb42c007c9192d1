"""Opening a user's image: hostile files refused before decoding, one frame, EXIF orientation, gray levels.

Limits, checked before any decoding: at most :data:`MAX_PIXELS` pixels (read from the
image header) and at most ``max_decoded`` bytes once decoded (pixels x bands x bytes per
band, ``decoded_bytes``; ``MAX_DECODED_BYTES`` by default), :data:`MAX_BYTES` bytes for raw image data handed over in memory, PNG text
and ICC chunks up to Pillow's own caps. Every refusal is a one-line
:class:`~logreg_mnist.errors.DataError`; no Pillow exception escapes.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, ImageOps

from ..errors import DataError, NotAnImageError, show_path

MAX_PIXELS = 50_000_000  # 50 megapixels: above any phone camera's photo, far below a decompression bomb
MAX_DECODED_BYTES = 400 * 2**20  # 50 megapixels of RGB or gray float: a big photo decodes, a bomb of deep pixels not
MAX_BYTES = 256 * 2**20  # raw image data handed over in memory (standard input, an upload)
WORK_SIDE = 640  # larger images are reduced to this longer side before the analysis
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # PPM: also PGM and PBM


def _describe(error: BaseException) -> str:
    """Pillow's message for ``error``, on one line, printable and bounded in length."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 200 else text[:200] + "..."


def decoded_bytes(image: Image.Image) -> int:
    """The memory the decoded ``image`` takes: width x height x bands x bytes per band (header only)."""
    width, height = image.size
    try:
        mode = ImageMode.getmode(image.mode)
        per_band = max(1, int(mode.typestr[-1]))
        bands = len(mode.bands)
    except (KeyError, ValueError, IndexError):  # a mode Pillow cannot name: count it as the deepest
        per_band, bands = 4, 4
    return width * height * bands * per_band


def peek_decoded_bytes(data: bytes) -> int:
    """``decoded_bytes`` of the image in ``data``, from its header alone; 0 when it is no image
    (:func:`open_image` then says what is wrong)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
            if im.format == "JPEG" and max(im.size) > 2 * WORK_SIDE:
                im.draft(im.mode, (WORK_SIDE, WORK_SIDE))
            return decoded_bytes(im)
    except Exception:  # noqa: BLE001 - a hostile header: open_image names the fault
        return 0


def open_image(
    source: str | os.PathLike | bytes, *, name: str | None = None, max_decoded: int = MAX_DECODED_BYTES
) -> Image.Image:
    """Open and decode one image file (or its bytes), refusing anything hostile before decoding.

    Args:
        source: a path, or the file's content as bytes.
        name: how to call the input in messages (default: the path, or ``<bytes>``).
        max_decoded: the most bytes the decoded image may take (``decoded_bytes``).

    Returns:
        The first frame, decoded, with its EXIF orientation applied; any mode Pillow
        reads (L, RGB, RGBA, P, I;16, CMYK, ...). Use :func:`prepare` next.

    Raises:
        DataError: one line naming the input, what was expected and what was found: not
            an image in one of :data:`FORMATS`, more than :data:`MAX_PIXELS` pixels or
            ``max_decoded`` bytes once decoded, a decompression bomb, oversized PNG chunks, a truncated or corrupt file, an
            unreadable path.
    """
    if name is not None:
        name = show_path(name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "<bytes>"
        if len(source) > MAX_BYTES:
            raise DataError(f"{name}: expected an image file of at most {MAX_BYTES:,} bytes, found {len(source):,}")
        fp: BinaryIO = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        name = name or show_path(path)
        try:
            fp = open(path, "rb")  # noqa: SIM115 -- closed by the `with fp` below
        except IsADirectoryError:
            raise DataError(f"{name}: expected an image file, found a directory") from None
        except FileNotFoundError:
            raise DataError(f"{name}: no such file") from None
        except OSError as e:
            raise DataError(f"{name}: cannot read the file: {e.strerror or e}") from None
    with fp:
        try:
            with warnings.catch_warnings():
                # Our own limit is lower than Pillow's warning level; the bomb error is caught below.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(fp, formats=FORMATS)
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise DataError(
                    f"{name}: expected an image of at most {MAX_PIXELS:,} pixels, found "
                    f"{width:,} x {height:,} = {width * height:,} pixels ({im.format} header)"
                )
            if im.format == "JPEG" and max(width, height) > 2 * WORK_SIDE:
                im.draft(im.mode, (WORK_SIDE, WORK_SIDE))  # decode at a reduced scale: faster, less memory
            cost = decoded_bytes(im)
            if cost > max_decoded:
                raise DataError(
                    f"{name}: expected an image of at most {max_decoded:,} bytes once decoded, found "
                    f"{im.size[0]:,} x {im.size[1]:,} pixels of mode {im.mode} = {cost:,} bytes ({im.format} header)"
                )
            im.seek(0)  # GIF, TIFF, WebP: the first frame
            im.load()
            out = ImageOps.exif_transpose(im)
            if out is im:
                out = im.copy()  # detached from the file, which is closed below
            out.info.setdefault("format", im.format)
            return out
        except DataError:
            raise
        except Image.DecompressionBombError as e:
            found = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{int(found.group(1)):,} pixels" if found else "more"
            raise DataError(
                f"{name}: expected an image of at most {MAX_PIXELS:,} pixels, found {size} (a decompression bomb)"
            ) from None
        except Image.UnidentifiedImageError:
            fp.seek(0)
            head = fp.read(8)
            raise NotAnImageError(
                f"{name}: expected an image ({', '.join(FORMATS)}), found data starting with 0x{head.hex()}"
            ) from None
        except ValueError as e:  # Pillow's caps on PNG text / ICC chunks, bad header fields
            if "text chunk" in str(e).lower() or "MAX_TEXT" in str(e):
                from PIL import PngImagePlugin

                raise DataError(
                    f"{name}: expected PNG text and ICC profile chunks of at most "
                    f"{PngImagePlugin.MAX_TEXT_CHUNK:,} bytes each once decompressed, found a larger "
                    f"one ({_describe(e)})"
                ) from None
            raise DataError(f"{name}: expected an image within Pillow's safety limits, found {_describe(e)}") from None
        except MemoryError:
            raise DataError(f"{name}: the image does not fit in memory") from None
        except Exception as e:  # noqa: BLE001 - any decoder failure on a hostile file is the input's fault
            raise DataError(
                f"{name}: expected a readable image, found a damaged file ({type(e).__name__}: {_describe(e)})"
            ) from None


def to_gray(image: Image.Image) -> np.ndarray:
    """The image as float32 (h, w) in [0, 255]: alpha on white, deep images scaled by their depth.

    16-bit modes (``I;16*``) are divided by 257; 32-bit integer images (``I``) are taken as
    16-bit when their values fit (PNG, PGM, TIFF store 16-bit data this way), else scaled by
    their range; float images (``F``) are taken as [0, 1] when they fit, else as [0, 255].
    """
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) * np.float32(255 / 65535)
    if mode in ("I", "F"):
        a = np.asarray(image, dtype=np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        if mode == "F":
            top = 1.0 if a.size == 0 or (a.min() >= 0 and a.max() <= 1) else 255.0
            return np.clip(a * (255 / top), 0, 255).astype(np.float32)
        if a.size and a.min() >= 0 and a.max() <= 65535:
            return (a * (255 / 65535)).astype(np.float32)
        low, high = (a.min(), a.max()) if a.size else (0.0, 1.0)
        return ((a - low) * (255 / (high - low or 1))).astype(np.float32)
    if (
        "A" in mode
        or "a" in mode
        or (mode == "P" and "transparency" in image.info)
        or (mode in ("L", "RGB") and "transparency" in image.info)
    ):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    if mode not in ("L", "RGB", "RGBA", "1", "P", "LA", "PA", "La", "RGBa", "RGBX"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV: through RGB
    return np.asarray(image.convert("L"), dtype=np.float32)
