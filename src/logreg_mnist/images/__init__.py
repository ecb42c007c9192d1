"""Making a user's picture look like an MNIST digit: one pipeline for the CLI, the API and the page.

- :mod:`.decode`: :func:`open_image` opens one file (or its bytes), refusing hostile input
  before decoding, and :func:`to_gray` turns any Pillow mode into gray levels;
- :mod:`.pipeline`: :func:`prepare` finds the paper, the ink and the digit and lays it out
  as MNIST does (a 28x28 frame, the digit in a 20x20 box, centred on its mass).
"""

from .decode import (
    FORMATS,
    MAX_BYTES,
    MAX_DECODED_BYTES,
    MAX_PIXELS,
    WORK_SIDE,
    decoded_bytes,
    open_image,
    peek_decoded_bytes,
    to_gray,
)
from .pipeline import BOX, MIN_DIGIT, Prepared, looks_like_mnist, prepare

__all__ = [
    "BOX",
    "FORMATS",
    "MAX_BYTES",
    "MAX_DECODED_BYTES",
    "MAX_PIXELS",
    "MIN_DIGIT",
    "WORK_SIDE",
    "Prepared",
    "decoded_bytes",
    "looks_like_mnist",
    "open_image",
    "peek_decoded_bytes",
    "prepare",
    "to_gray",
]
