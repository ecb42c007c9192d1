"""Pictures of a run: its weights, learning curves, confusion matrix, confident mistakes, snapshots."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from ..model import LogisticRegression
from .base import DIVERGING_CMAP, class_label, image_side, of_total, padded_names, tile_raster_images


def weights_figure(
    model: LogisticRegression,
    *,
    diverging: bool = False,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """The columns of ``W`` as images, one per class, labelled by ``class_names`` (default: digits).

    ``diverging=False``: each image scaled to its own [min, max] (as
    ``tile_raster_images`` does), light = large weight. ``diverging=True``: one shared
    colour scale centred on zero, red = evidence for the class, blue = against.
    """
    side = image_side(model.n_in)
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
            ax.imshow(tile_raster_images(w.reshape(1, -1), (side, side), (1, 1), (0, 0)), cmap="gray", vmin=0, vmax=255)
        ax.set_title(class_label(names[k]), fontsize=11)
    if diverging and image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.8)
        bar.set_label("weight  (red: evidence for the class, blue: against)")
    fig.suptitle(
        title
        or (
            "Weights W[:, k] on a shared scale centred on zero"
            if diverging
            else "Weights W[:, k], each image scaled to its own range (light = large)"
        )
    )
    return fig


def learning_curves_figure(
    rows: Sequence[dict],
    *,
    unit: str = "epoch",
    title: str | None = None,
    n_valid: int | None = None,
    n_test: int | None = None,
) -> Figure:
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
    ax_err.plot(
        x,
        test,
        "o",
        color="tab:green",
        markersize=4,
        label="test error" + (f", % of {n_test:,}" if n_test else "") + " (measured at each new best)",
    )
    ax_err.set_xlabel(unit)
    ax_err.set_ylabel("error (%)")
    ax_err.set_title("Validation and test error")
    best_text = f"best {unit} {x[best]}: validation {valid[best]:.2f} %{of_total(n_valid)}" + (
        f", test {test[best]:.2f} %{of_total(n_test)}" if np.isfinite(test[best]) else ""
    )
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


def confusion_matrix_figure(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    *,
    normalize: bool = False,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
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
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if strong else ("black" if i != j else "tab:blue"),
                fontweight="bold" if i == j else "normal",
            )
    ax.set_xticks(range(n_classes), names, rotation=0 if numeric else 45, ha="center" if numeric else "right")
    ax.set_yticks(range(n_classes), names)
    ax.set_xlabel("predicted digit" if numeric else "predicted class")
    ax.set_ylabel("true digit" if numeric else "true class")
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("% of the true class (off-diagonal)" if normalize else "count (off-diagonal)")
    total_error = 100 * (1 - np.trace(counts) / max(counts.sum(), 1))
    noun = "digit" if numeric else "class"
    fig.suptitle(
        title
        or (
            f"Confusion matrix on {counts.sum():,} test examples, "
            f"{f'% of each true {noun}' if normalize else 'counts'}\n"
            f"diagonal in blue: correct; error {total_error:.2f} % of {counts.sum():,}"
        )
    )
    return fig


def confident_mistakes_figure(
    model: LogisticRegression,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n: int = 24,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """The ``n`` wrong predictions the model was most sure of, with true and predicted label."""
    side = image_side(model.n_in)
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
        ax.set_title(f"#{i}: true {names[labels[i]]}\npred {names[pred[i]]} (p={probs[i, pred[i]]:.2f})", fontsize=8)
    if not len(order):
        fig.text(0.5, 0.5, "no wrong predictions", ha="center", va="center", fontsize=14)
    fig.suptitle(
        title or f"The {len(order)} most confidently wrong test examples (of {len(wrong):,} errors in {len(labels):,})"
    )
    return fig


def snapshots_figure(
    snapshots: Sequence[tuple[int, LogisticRegression]],
    *,
    unit: str = "epoch",
    max_rows: int = 10,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Weight images across training: one row per snapshot, one column per class, shared scale."""
    if not snapshots:
        raise ValueError("no snapshots to draw")
    if len(snapshots) > max_rows:  # evenly spaced, first and last kept
        keep = np.unique(np.linspace(0, len(snapshots) - 1, max_rows).round().astype(int))
        snapshots = [snapshots[i] for i in keep]
    side = image_side(snapshots[0][1].n_in)
    n_out = snapshots[0][1].n_out
    names = padded_names(class_names, n_out)
    limit = max(float(np.abs(m.W).max()) for _, m in snapshots) or 1.0
    fig = Figure(figsize=(1.3 * n_out + 1.6, 1.35 * len(snapshots) + 0.8), layout="constrained")
    axes = fig.subplots(len(snapshots), n_out, squeeze=False)
    image = None
    for r, (step, model) in enumerate(snapshots):
        for k in range(n_out):
            ax = axes[r, k]
            image = ax.imshow(
                model.W[:, k].reshape(side, side), cmap=DIVERGING_CMAP, norm=TwoSlopeNorm(0.0, -limit, limit)
            )
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
