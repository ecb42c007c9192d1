"""What every picture shares: class labels, the diverging colour map, tiles of images, atomic PNG writes."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .._files import atomic_write_bytes
from .._paths import writing


def class_label(name: str) -> str:
    """How a class is titled in a picture: ``"digit 7"`` for a numeric name, else the name."""
    return f"digit {name}" if name.isdigit() else name


def padded_names(class_names: Sequence[str] | None, n: int) -> list[str]:
    """The first ``n`` class names, numbers (``"7"``) for those missing."""
    names = [str(c) for c in (class_names or [])][:n]
    return names + [str(i) for i in range(len(names), n)]


def of_total(n: int | None) -> str:
    """`` of 10,000`` for a count, nothing for None or 0."""
    return f" of {n:,}" if n else ""


DIVERGING_CMAP = "RdBu_r"  # weights and evidence: red for a class, blue against, white at zero


def tile_raster_images(
    X: np.ndarray,
    img_shape: tuple[int, int],
    tile_shape: tuple[int, int],
    tile_spacing: tuple[int, int] = (1, 1),
    scale_rows_to_unit_interval: bool = True,
) -> np.ndarray:
    """Lay the rows of ``X`` out as images in a grid, in row-major order.

    Args:
        X: (n, h * w) array, one flattened image per row; rows beyond the grid are
            ignored, missing ones leave black tiles.
        img_shape: (h, w) of each image.
        tile_shape: (rows, cols) of the grid.
        tile_spacing: (vertical, horizontal) black pixels between tiles.
        scale_rows_to_unit_interval: scale each image to [0, 1] on its own (its
            minimum to 0, its maximum to 1) before conversion; otherwise values are
            taken to lie in [0, 1] already and are clipped.

    Returns:
        uint8 array of shape (rows * h + (rows - 1) * sv, cols * w + (cols - 1) * sh).

    Example:
        >>> tile_raster_images(np.array([[0.0, 1.0], [2.0, 4.0]]), (1, 2), (1, 2), (0, 1)).tolist()
        [[0, 255, 0, 0, 255]]
    """
    X = np.asarray(X, dtype=np.float64)
    (h, w), (rows, cols), (sv, sh) = img_shape, tile_shape, tile_spacing
    if X.ndim != 2 or X.shape[1] != h * w:
        raise ValueError(f"expected X of shape (n, {h * w}) for images of shape {img_shape}, found {X.shape}")
    out = np.zeros((rows * h + (rows - 1) * sv, cols * w + (cols - 1) * sh), dtype=np.uint8)
    for i in range(min(len(X), rows * cols)):
        tile = X[i].reshape(h, w)
        if scale_rows_to_unit_interval:
            low, span = tile.min(), tile.max() - tile.min()
            tile = (tile - low) / span if span > 0 else np.zeros_like(tile)
        r, c = divmod(i, cols)
        top, left = r * (h + sv), c * (w + sh)
        out[top : top + h, left : left + w] = np.round(np.clip(tile, 0, 1) * 255).astype(np.uint8)
    return out


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100, *, what: str = "figure") -> Path:
    """Write ``fig`` as PNG under a temporary name, then rename it to ``path``.

    A path that cannot be written (permissions, a missing or read-only place) is a
    :class:`~logreg_mnist.errors.ConfigError` naming ``what`` (the flag it came from).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    with writing(path, what):
        atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def image_side(n_in: int) -> int:
    side = int(round(np.sqrt(n_in)))
    if side * side != n_in:
        raise ValueError(f"cannot draw {n_in} features as a square image")
    return side
