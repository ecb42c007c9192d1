"""Making a user's picture look like an MNIST digit: one pipeline for the CLI, the API and the page.

- :mod:`.decode`: :func:`open_image` opens one file (or its bytes), refusing hostile input
  before decoding, and :func:`to_gray` turns any Pillow mode into gray levels;
- :mod:`.pipeline`: :func:`prepare` finds the paper, the ink and the digit and lays it out
  as MNIST does (a 28x28 frame, the digit in a 20x20 box, centred on its mass); a picture
  of at most :data:`SMALL_SIDE` pixels is analysed as it is, a larger one on a reduced copy,
  its digit then cut from the full picture;
- :mod:`.analysis`: the paper, the ink and the digit found on gray levels (used by
  :mod:`.pipeline`);
- :mod:`.drawing`: the short way for clean drawings (a background of one exact level).
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
from .pipeline import (
    ANALYSIS_SIDE,
    BOX,
    DIGIT_SIDE,
    MIN_DIGIT,
    SMALL_SIDE,
    Prepared,
    looks_like_mnist,
    prepare,
    prepare_levels,
)

__all__ = [
    "ANALYSIS_SIDE",
    "BOX",
    "DIGIT_SIDE",
    "FORMATS",
    "MAX_BYTES",
    "MAX_DECODED_BYTES",
    "MAX_PIXELS",
    "MIN_DIGIT",
    "SMALL_SIDE",
    "WORK_SIDE",
    "Prepared",
    "decoded_bytes",
    "looks_like_mnist",
    "open_image",
    "peek_decoded_bytes",
    "prepare",
    "prepare_levels",
    "to_gray",
]
