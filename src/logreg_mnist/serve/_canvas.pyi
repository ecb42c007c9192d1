"""The Python face of the compiled drawing reader (``_canvas.c``)."""

import numpy as np

def opaque_gray(rows: np.ndarray | bytes, width: int, height: int, out: np.ndarray, /) -> bool:
    """The gray levels of an 8-bit RGBA PNG's inflated ``rows`` (``height * (1 + 4 * width)``
    bytes, each row's filter byte first, C-contiguous) written into ``out`` (``width * height``
    bytes, writable), when every row is filtered "Up" (the first "None" or "Up") and every
    pixel is opaque and gray (R = G = B); else False (``out`` then holds nothing meaningful).
    ValueError for sizes that do not match."""
