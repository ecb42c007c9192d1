"""Pictures as pure functions: from arrays, models and history rows to matplotlib figures.

Nothing here reads a run, a model file or a sweep: :mod:`logreg_mnist.plots_from_files`
loads those and calls these builders. Every ``*_figure`` function returns a
:class:`matplotlib.figure.Figure` built without pyplot, so it renders with no display
and leaves a notebook's backend alone (a notebook shows the returned figure as it
is). :func:`save_figure` writes PNG atomically. :func:`tile_raster_images` returns a
uint8 array, like the tutorials' ``utils.tile_raster_images``.

Classes are labelled by their names (``Dataset.class_names``, recorded in runs and
model files): "digit 7" for MNIST, "Sneaker" for Fashion-MNIST. Every error shown
says over how many examples it was measured.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from ._files import atomic_write_bytes
from ._paths import writing
from .data.pixels import PIXEL_SCALE, SIDE
from .model import LogisticRegression


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
    X: np.ndarray, img_shape: tuple[int, int], tile_shape: tuple[int, int],
    tile_spacing: tuple[int, int] = (1, 1), scale_rows_to_unit_interval: bool = True,
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


def _image_side(n_in: int) -> int:
    side = int(round(np.sqrt(n_in)))
    if side * side != n_in:
        raise ValueError(f"cannot draw {n_in} features as a square image")
    return side


def weights_figure(model: LogisticRegression, *, diverging: bool = False, title: str | None = None,
                   class_names: Sequence[str] | None = None) -> Figure:
    """The columns of ``W`` as images, one per class, labelled by ``class_names`` (default: digits).

    ``diverging=False``: each image scaled to its own [min, max] (as
    ``tile_raster_images`` does), light = large weight. ``diverging=True``: one shared
    colour scale centred on zero, red = evidence for the class, blue = against.
    """
    side = _image_side(model.n_in)
    n = model.n_out
    names = padded_names(class_names, n)
    cols = min(5, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(2.0 * cols + (1.0 if diverging else 0.2), 2.2 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = float(np.abs(model.W).max()) or 1.0
    image = None
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.set_visible(False)
            continue
        w = model.W[:, k].reshape(side, side)
        if diverging:
            image = ax.imshow(w, cmap=DIVERGING_CMAP, norm=TwoSlopeNorm(0.0, -limit, limit))
        else:
            ax.imshow(tile_raster_images(w.reshape(1, -1), (side, side), (1, 1), (0, 0)), cmap="gray",
                      vmin=0, vmax=255)
        ax.set_title(class_label(names[k]), fontsize=11)
    if diverging and image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.8)
        bar.set_label("weight  (red: evidence for the class, blue: against)")
    fig.suptitle(title or ("Weights W[:, k] on a shared scale centred on zero" if diverging
                           else "Weights W[:, k], each image scaled to its own range (light = large)"))
    return fig


def learning_curves_figure(rows: Sequence[dict], *, unit: str = "epoch", title: str | None = None,
                           n_valid: int | None = None, n_test: int | None = None) -> Figure:
    """Mean training NLL, validation and test error per epoch (or iteration), best marked.

    Args:
        rows: history rows (``history.jsonl``, or ``load_history(run).rows``): epoch,
            train_nll, valid_error, test_error (None where not measured), best_valid_error.
        unit: the x-axis label: "epoch" for SGD, "iteration" for cg / lbfgs.
        n_valid, n_test: how many examples the errors are over (``History.n_valid``),
            shown in the legend.
    """
    if not rows:
        raise ValueError("the history is empty: nothing to draw")
    x = np.array([r["epoch"] for r in rows])
    nll = np.array([r["train_nll"] for r in rows], dtype=float)
    valid = np.array([np.nan if r["valid_error"] is None else r["valid_error"] * 100 for r in rows])
    test = np.array([np.nan if r["test_error"] is None else r["test_error"] * 100 for r in rows])
    best = int(np.nanargmin(valid)) if np.isfinite(valid).any() else len(rows) - 1

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_nll, ax_err = fig.subplots(1, 2)
    ax_nll.plot(x, nll, color="tab:blue")
    ax_nll.set_xlabel(unit)
    ax_nll.set_ylabel("mean training NLL")
    ax_nll.set_title("Training loss")
    ax_err.plot(x, valid, color="tab:orange", label="validation error" + (f", % of {n_valid:,}" if n_valid else ""))
    ax_err.plot(x, test, "o", color="tab:green", markersize=4,
                label="test error" + (f", % of {n_test:,}" if n_test else "") + " (measured at each new best)")
    ax_err.set_xlabel(unit)
    ax_err.set_ylabel("error (%)")
    ax_err.set_title("Validation and test error")
    best_text = f"best {unit} {x[best]}: validation {valid[best]:.2f} %{of_total(n_valid)}" + (
        f", test {test[best]:.2f} %{of_total(n_test)}" if np.isfinite(test[best]) else "")
    for ax in (ax_nll, ax_err):
        ax.axvline(x[best], color="gray", linestyle="--", linewidth=1, label=best_text)
        ax.grid(alpha=0.3)
    ax_nll.legend(loc="upper right", fontsize=9)
    finite = valid[np.isfinite(valid)]
    if finite.size:  # the first epochs' errors would flatten the interesting part: clip the top
        low = min(finite.min(), np.nanmin(test) if np.isfinite(test).any() else finite.min())
        high = np.percentile(finite, 95) if finite.size > 3 else finite.max()
        pad = max(0.05 * (high - low), 0.25)
        ax_err.set_ylim(max(low - pad, 0.0), high + pad)
    ax_err.legend(loc="upper right", fontsize=9)
    fig.suptitle(title or "Learning curves")
    return fig


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int array: row = true class, column = predicted class."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def confusion_matrix_figure(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, *,
                            normalize: bool = False, title: str | None = None,
                            class_names: Sequence[str] | None = None) -> Figure:
    """The confusion matrix, rows true, columns predicted; counts, or each row as % of its class."""
    counts = confusion_counts(y_true, y_pred, n_classes)
    names = padded_names(class_names, n_classes)
    numeric = all(n.isdigit() for n in names)
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) * 100 if normalize else counts
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    # A log-like view would hide the diagonal; instead the diagonal is drawn apart from the errors.
    off = np.where(np.eye(n_classes, dtype=bool), np.nan, values)
    image = ax.imshow(off, cmap="Reds")
    for i in range(n_classes):
        for j in range(n_classes):
            v = values[i, j]
            text = f"{v:.1f}" if normalize else f"{int(v)}"
            strong = i != j and np.nanmax(off) and v > 0.6 * np.nanmax(off)
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if strong else ("black" if i != j else "tab:blue"),
                    fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(n_classes), names, rotation=0 if numeric else 45,
                  ha="center" if numeric else "right")
    ax.set_yticks(range(n_classes), names)
    ax.set_xlabel("predicted digit" if numeric else "predicted class")
    ax.set_ylabel("true digit" if numeric else "true class")
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("% of the true class (off-diagonal)" if normalize else "count (off-diagonal)")
    total_error = 100 * (1 - np.trace(counts) / max(counts.sum(), 1))
    noun = "digit" if numeric else "class"
    fig.suptitle(title or (f"Confusion matrix on {counts.sum():,} test examples, "
                           f"{f'% of each true {noun}' if normalize else 'counts'}\n"
                           f"diagonal in blue: correct; error {total_error:.2f} % of {counts.sum():,}"))
    return fig


def confident_mistakes_figure(model: LogisticRegression, images: np.ndarray, labels: np.ndarray, *,
                              n: int = 24, title: str | None = None,
                              class_names: Sequence[str] | None = None) -> Figure:
    """The ``n`` wrong predictions the model was most sure of, with true and predicted label."""
    side = _image_side(model.n_in)
    names = padded_names(class_names, max(model.n_out, int(labels.max(initial=0)) + 1))
    probs = model.p_y_given_x(images)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]
    cols = min(8, max(len(order), 1))
    rows = max(-(-len(order) // cols), 1)
    fig = Figure(figsize=(max(1.6 * cols, 6.0), 1.9 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_visible(False)
    for ax, i in zip(axes.flat, order):
        ax.set_visible(True)
        ax.imshow(images[i].reshape(side, side), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"#{i}: true {names[labels[i]]}\npred {names[pred[i]]} (p={probs[i, pred[i]]:.2f})",
                     fontsize=8)
    if not len(order):
        fig.text(0.5, 0.5, "no wrong predictions", ha="center", va="center", fontsize=14)
    fig.suptitle(title or f"The {len(order)} most confidently wrong test examples "
                          f"(of {len(wrong):,} errors in {len(labels):,})")
    return fig


def snapshots_figure(snapshots: Sequence[tuple[int, LogisticRegression]], *, unit: str = "epoch",
                     max_rows: int = 10, class_names: Sequence[str] | None = None) -> Figure:
    """Weight images across training: one row per snapshot, one column per class, shared scale."""
    if not snapshots:
        raise ValueError("no snapshots to draw")
    if len(snapshots) > max_rows:  # evenly spaced, first and last kept
        keep = np.unique(np.linspace(0, len(snapshots) - 1, max_rows).round().astype(int))
        snapshots = [snapshots[i] for i in keep]
    side = _image_side(snapshots[0][1].n_in)
    n_out = snapshots[0][1].n_out
    names = padded_names(class_names, n_out)
    limit = max(float(np.abs(m.W).max()) for _, m in snapshots) or 1.0
    fig = Figure(figsize=(1.3 * n_out + 1.6, 1.35 * len(snapshots) + 0.8), layout="constrained")
    axes = fig.subplots(len(snapshots), n_out, squeeze=False)
    image = None
    for r, (step, model) in enumerate(snapshots):
        for k in range(n_out):
            ax = axes[r, k]
            image = ax.imshow(model.W[:, k].reshape(side, side), cmap=DIVERGING_CMAP,
                              norm=TwoSlopeNorm(0.0, -limit, limit))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(class_label(names[k]), fontsize=10)
            if k == 0:
                ax.set_ylabel(f"{unit} {step}", fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6).set_label("weight (shared scale)")
    fig.suptitle("Weights across training (red: evidence for the class, blue: against)")
    return fig


def digits_figure(images: np.ndarray, labels: np.ndarray, *, indices: np.ndarray | None = None,
                  title: str = "Sample digits", class_names: Sequence[str] | None = None) -> Figure:
    """A grid of images with their labels, named by ``class_names`` (and their index in the split)."""
    indices = np.arange(len(images)) if indices is None else indices
    if len(images) == 0:
        raise ValueError("no digits to draw")
    side = _image_side(images.shape[1])
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
        verdict = "blank: no digit found" if r.blank else (
            f"{r.label}, low confidence" if r.low_confidence else f"predicted {r.label}")
        ax_bar.set_title(verdict, fontsize=9, color="#b00000" if r.blank or r.low_confidence else "black")
        ax_bar.set_xlabel("probability", fontsize=8)
        ax_bar.tick_params(labelsize=8)
    more = f" (first {len(rows)} of {total})" if total > len(rows) else ""
    fig.suptitle(f"Inputs, what the model sees, top 3 classes{more}", fontsize=10)
    return fig


def sweep_figure(settings: dict[str, Sequence], valid_errors: Sequence[float], *, categorical: Sequence[str] = (),
                 log_axes: Sequence[str] = (), chosen: int | None = None, title: str | None = None) -> Figure:
    """Validation error against each swept setting, one panel per setting.

    Args:
        settings: setting name -> its value in each trial (all lists of one length).
        valid_errors: each trial's best validation error, as a fraction (NaN: diverged).
        categorical: settings drawn as evenly spaced categories (a grid's values); the
            line joins the best trial of each value (the best over the other settings).
        log_axes: numeric settings drawn on a log axis (log-uniform ranges).
        chosen: the position of the chosen trial, marked with a star.
    """
    names = list(settings)
    if not names:
        raise ValueError("no swept settings to draw")
    errors = np.array(valid_errors, dtype=float) * 100
    fig = Figure(figsize=(4.6 * len(names) + 0.6, 4.2), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        values = list(settings[name])
        if name in categorical:
            levels = sorted(set(values), key=lambda v: (isinstance(v, str), v))
            x = np.array([levels.index(v) for v in values], dtype=float)
            best = [np.nanmin(errors[x == i]) if np.isfinite(errors[x == i]).any() else np.nan
                    for i in range(len(levels))]
            ax.plot(range(len(levels)), best, color="tab:blue", alpha=0.6, label="best of each value")
            ax.set_xticks(range(len(levels)), [f"{v:g}" if isinstance(v, float) else str(v) for v in levels])
        else:
            x = np.array(values, dtype=float)
            if name in log_axes:
                ax.set_xscale("log")
        ax.scatter(x, errors, color="tab:blue", s=24, zorder=3, label="trial")
        if chosen is not None and np.isfinite(errors[chosen]):
            ax.scatter([x[chosen]], [errors[chosen]], marker="*", s=220, color="tab:red", zorder=4,
                       label=f"chosen: {errors[chosen]:.3f} %")
        ax.set_xlabel(name)
        ax.set_ylabel("best validation error (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    diverged = int(np.count_nonzero(~np.isfinite(errors)))
    fig.suptitle(title or (f"Validation error of {len(errors)} trials" + (f" ({diverged} diverged, not shown)"
                                                                         if diverged else "")))
    return fig


def sweep_curves_figure(curves: Sequence[tuple[str, Sequence[dict]]], *, unit: str = "epoch",
                        title: str | None = None) -> Figure:
    """The validation error per epoch of a few trials, overlaid.

    Args:
        curves: (label, history rows) per trial, best first; rows as in ``history.jsonl``.
        unit: the x-axis label.
    """
    if not curves:
        raise ValueError("no learning curves to draw")
    fig = Figure(figsize=(8.5, 4.8), layout="constrained")
    ax = fig.subplots()
    finite_all = []
    for label, rows in curves:
        x = np.array([r["epoch"] for r in rows])
        valid = np.array([np.nan if r["valid_error"] is None else r["valid_error"] * 100 for r in rows])
        ax.plot(x, valid, linewidth=1.4, label=label)
        finite_all.extend(valid[np.isfinite(valid)])
    if finite_all:  # the first epochs' errors would flatten the interesting part: clip the top
        finite = np.array(finite_all)
        low, high = finite.min(), np.percentile(finite, 90)
        pad = max(0.05 * (high - low), 0.25)
        ax.set_ylim(max(low - pad, 0.0), high + pad)
    ax.set_xlabel(unit)
    ax.set_ylabel("validation error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title or f"Validation error of the best {len(curves)} trials")
    return fig
