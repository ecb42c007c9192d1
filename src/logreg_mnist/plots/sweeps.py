"""Pictures of a sweep: validation error per setting, and the best trials' learning curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def sweep_figure(
    settings: dict[str, Sequence],
    valid_errors: Sequence[float],
    *,
    categorical: Sequence[str] = (),
    log_axes: Sequence[str] = (),
    chosen: int | None = None,
    title: str | None = None,
    n_valid: int | str | None = None,
) -> Figure:
    """Validation error against each swept setting, one panel per setting.

    Args:
        settings: setting name -> its value in each trial (all lists of one length).
        valid_errors: each trial's best validation error, as a fraction (NaN: diverged).
        categorical: settings drawn as evenly spaced categories (a grid's values); the
            line joins the best trial of each value (the best over the other settings).
        log_axes: numeric settings drawn on a log axis (log-uniform ranges).
        chosen: the position of the chosen trial, marked with a star.
        n_valid: what the errors are over: a number of validation examples, or words
            (trials scored over different numbers); None: not said.
    """
    names = list(settings)
    of = _of(n_valid)
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
            best = [
                np.nanmin(errors[x == i]) if np.isfinite(errors[x == i]).any() else np.nan for i in range(len(levels))
            ]
            ax.plot(range(len(levels)), best, color="tab:blue", alpha=0.6, label="best of each value")
            ax.set_xticks(range(len(levels)), [f"{v:g}" if isinstance(v, float) else str(v) for v in levels])
        else:
            x = np.array(values, dtype=float)
            if name in log_axes:
                ax.set_xscale("log")
        ax.scatter(x, errors, color="tab:blue", s=24, zorder=3, label="trial")
        if chosen is not None and np.isfinite(errors[chosen]):
            ax.scatter(
                [x[chosen]],
                [errors[chosen]],
                marker="*",
                s=220,
                color="tab:red",
                zorder=4,
                label=f"chosen: {errors[chosen]:.3f} %{of if isinstance(n_valid, int) else ''}",
            )
        ax.set_xlabel(name)
        ax.set_ylabel(f"best validation error (%{of})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    diverged = int(np.count_nonzero(~np.isfinite(errors)))
    fig.suptitle(
        title
        or (f"Validation error of {len(errors)} trials" + (f" ({diverged} diverged, not shown)" if diverged else ""))
    )
    return fig


def _of(n: int | str | None) -> str:
    """`` of 10,000`` (a count), `` of <words>`` (several counts), or nothing."""
    if n is None:
        return ""
    return f" of {n:,}" if isinstance(n, int) else f" of {n}"


def sweep_curves_figure(
    curves: Sequence[tuple[str, Sequence[dict]]],
    *,
    unit: str = "epoch",
    title: str | None = None,
    n_valid: int | str | None = None,
) -> Figure:
    """The validation error per epoch of a few trials, overlaid.

    Args:
        curves: (label, history rows) per trial, best first; rows as in ``history.jsonl``.
        unit: the x-axis label.
        n_valid: what the errors are over (see :func:`sweep_figure`).
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
    ax.set_ylabel(f"validation error (%{_of(n_valid)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title or f"Validation error of the best {len(curves)} trials")
    return fig
