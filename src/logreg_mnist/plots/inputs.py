"""Pictures of inputs: a grid of digits, and predictions beside what the model sees."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..data.pixels import PIXEL_SCALE, SIDE
from .base import image_side, padded_names


def digits_figure(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    indices: np.ndarray | None = None,
    title: str = "Sample digits",
    class_names: Sequence[str] | None = None,
) -> Figure:
    """A grid of images with their labels, named by ``class_names`` (and their index in the split)."""
    indices = np.arange(len(images)) if indices is None else indices
    if len(images) == 0:
        raise ValueError("no digits to draw")
    side = image_side(images.shape[1])
    names = padded_names(class_names, int(np.max(labels)) + 1)
    cols = min(10, len(images))
    rows = -(-len(images) // cols)
    fig = Figure(figsize=(1.2 * cols, 1.35 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, image, label, idx in zip(axes.flat, images, labels, indices):
        ax.set_visible(True)
        ax.imshow(image.reshape(side, side), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{idx}: {names[label]}", fontsize=8)
    fig.suptitle(title)
    return fig


MAX_SHOWN = 40  # rows in a predictions picture; later inputs are left out (the picture says so)


def predictions_figure(inputs: Sequence, results: Sequence, *, max_rows: int = MAX_SHOWN) -> Figure:
    """Each input beside what the model sees, with its three most probable classes.

    Args:
        inputs: :class:`logreg_mnist.predict.Input` items (a picture keeps a copy of the
            original; arrays show their 28x28 pixels in both places).
        results: the matching :class:`logreg_mnist.predict.Prediction` list, one per image.
        max_rows: at most this many images are drawn.
    """
    rows = []
    k = 0
    for item in inputs:
        for i in range(len(item.features)):
            seen = item.features[i].reshape(SIDE, SIDE) / PIXEL_SCALE / 255
            original = item.original if item.original is not None else seen
            rows.append((original, seen, results[k]))
            k += 1
    total = len(rows)
    rows = rows[:max_rows]
    fig = Figure(figsize=(7.2, 2.0 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False, width_ratios=[1, 1, 1.4])
    for (original, seen, r), (ax_in, ax_seen, ax_bar) in zip(rows, axes):
        gray = original.ndim == 2
        ax_in.imshow(original, cmap="gray" if gray else None, vmin=0, vmax=255 if original.dtype == np.uint8 else 1)
        name = Path(r.input).name if r.input != "<stdin>" else r.input
        name = name if len(name) <= 28 else "..." + name[-25:]
        ax_in.set_title(name, fontsize=9)
        ax_seen.imshow(seen, cmap="gray", vmin=0, vmax=1)
        flags = " (inverted)" if r.inverted else ""
        ax_seen.set_title(f"what the model sees{flags}", fontsize=9)
        for ax in (ax_in, ax_seen):
            ax.set_xticks([])
            ax.set_yticks([])
        labels = [str(label) for label, _ in r.top][::-1]
        probs = [p for _, p in r.top][::-1]
        colours = ["#bbbbbb"] * (len(probs) - 1) + ["#bbbbbb" if r.blank else "#1f77b4"]
        ax_bar.barh(labels, probs, color=colours)
        ax_bar.set_xlim(0, 1.2)
        ax_bar.set_xticks([0, 0.5, 1])
        for y, p in enumerate(probs):
            ax_bar.text(p + 0.02, y, f"{p:.2f}", va="center", fontsize=9)
        verdict = (
            "blank: no digit found"
            if r.blank
            else (f"{r.label}, low confidence" if r.low_confidence else f"predicted {r.label}")
        )
        ax_bar.set_title(verdict, fontsize=9, color="#b00000" if r.blank or r.low_confidence else "black")
        ax_bar.set_xlabel("probability", fontsize=8)
        ax_bar.tick_params(labelsize=8)
    more = f" (first {len(rows)} of {total})" if total > len(rows) else ""
    fig.suptitle(f"Inputs, what the model sees, top 3 classes{more}", fontsize=10)
    return fig
