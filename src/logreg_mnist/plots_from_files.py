"""Pictures of what is on disk: a run directory, a model file, a sweep directory, as PNG files.

:func:`plot_run` and :func:`plot_sweep` read the files (models, histories, snapshots,
a sweep's plan and results) and draw them with the pure figure builders of
:mod:`logreg_mnist.plots`.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import persistence
from ._paths import check_output_dir, make_dir
from .errors import ConfigError, show_path
from .plots import (
    confident_mistakes_figure,
    confusion_matrix_figure,
    learning_curves_figure,
    of_total,
    padded_names,
    save_figure,
    snapshots_figure,
    sweep_curves_figure,
    sweep_figure,
    weights_figure,
)
from .sweep import TRIALS, format_value, is_sweep_dir, load_plan, ranking, read_results


def plot_run(target: str | os.PathLike, data, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Draw every picture for a run directory (or a single model file) as PNG files.

    Args:
        target: a run directory (its ``best.safetensors``, ``history.jsonl`` and
            ``snapshots/`` are used), a model file (weights and test-set pictures), or a
            sweep directory (:func:`plot_sweep`; ``data`` is not needed).
        data: the :class:`~logreg_mnist.data.Dataset` for the test-set pictures (its
            class names label every picture).
        out_dir: where to write (default: ``plots/`` beside the model).

    Returns:
        The paths written.
    """
    target = Path(target)
    if is_sweep_dir(target):
        return plot_sweep(target, out_dir)
    run_dir = target if target.is_dir() else None
    model, meta = persistence.load_model(target)
    optimizer = (meta.get("config") or {}).get("optimizer", "sgd")
    unit = "epoch" if optimizer == "sgd" else "iteration"
    out = Path(out_dir) if out_dir is not None else (run_dir or target.parent) / "plots"
    make_dir(check_output_dir(out, "out_dir"), "out_dir")
    names = padded_names(data.class_names, max(model.n_out, data.n_classes))
    n_valid, n_test = meta.get("n_valid"), meta.get("n_test")
    about = ""
    if "epoch" in meta and meta.get("test_error") is not None:
        about = (
            f" ({optimizer}, best at {unit} {meta['epoch']}: validation {meta['valid_error'] * 100:.2f} %"
            f"{of_total(n_valid)}, test {meta['test_error'] * 100:.2f} %{of_total(n_test)})"
        )
    written = [
        save_figure(
            weights_figure(model, title=f"Weights W[:, k], each scaled to its own range{about}", class_names=names),
            out / "weights.png",
        ),
        save_figure(
            weights_figure(
                model, diverging=True, class_names=names, title=f"Weights W[:, k] on one scale centred on zero{about}"
            ),
            out / "weights_diverging.png",
        ),
    ]
    if run_dir is not None and (run_dir / persistence.HISTORY).is_file():
        rows = persistence.read_history(run_dir)
        if rows:
            written.append(
                save_figure(
                    learning_curves_figure(
                        rows, unit=unit, title=f"Learning curves{about}", n_valid=n_valid, n_test=n_test
                    ),
                    out / "learning_curves.png",
                )
            )
    test = data.test
    pred = model.predict(test.images)
    n_classes = max(model.n_out, data.n_classes)
    written.append(
        save_figure(confusion_matrix_figure(test.labels, pred, n_classes, class_names=names), out / "confusion.png")
    )
    written.append(
        save_figure(
            confusion_matrix_figure(test.labels, pred, n_classes, normalize=True, class_names=names),
            out / "confusion_normalized.png",
        )
    )
    written.append(
        save_figure(confident_mistakes_figure(model, test.images, test.labels, class_names=names), out / "mistakes.png")
    )
    snapshot_files = sorted((run_dir / persistence.SNAPSHOTS).glob("epoch-*.safetensors")) if run_dir else []
    if snapshot_files:
        snaps = []
        for path in snapshot_files:
            snap, snap_meta = persistence.load_model(path)
            snaps.append((snap_meta.get("epoch", path.stem), snap))
        written.append(save_figure(snapshots_figure(snaps, unit=unit, class_names=names), out / "snapshots.png"))
    return written


def plot_sweep(
    sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, n_best: int = 5
) -> list[Path]:
    """Draw a sweep: validation error against each swept setting, and the learning
    curves of the best ``n_best`` trials overlaid.

    Returns:
        The paths written (under ``plots/`` in the sweep directory by default).
    """
    sweep_dir = Path(sweep_dir)
    plan = load_plan(sweep_dir)
    results = read_results(sweep_dir, plan)
    if not results:
        raise ConfigError(
            f"{show_path(sweep_dir)}: no trial of the sweep has finished yet, so there is nothing to draw; "
            f"run them with: logreg-mnist sweep --resume {show_path(sweep_dir)}"
        )
    out = Path(out_dir) if out_dir is not None else sweep_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    ranked = ranking(plan, results)
    done = [t for t in plan.trials if t.name in results]
    ok = [t for t in ranked if results[t.name]["status"] == "ok"]
    search = plan.search
    categorical = list(plan.swept) if search.get("kind") == "grid" else list(search.get("choices") or {})
    log_axes = [n for n, r in (search.get("ranges") or {}).items() if r[2] == "log"]
    chosen = done.index(ok[0]) if ok else None
    written = [
        save_figure(
            sweep_figure(
                {n: [dict(t.settings)[n] for t in done] for n in plan.swept},
                [results[t.name]["valid_error"] for t in done],
                categorical=categorical,
                log_axes=log_axes,
                chosen=chosen,
                n_valid=_common_count([results[t.name].get("n_valid") for t in done]),
            ),
            out / "sweep_validation_error.png",
        )
    ]
    curves = []
    for t in ok[:n_best]:
        rows = persistence.read_history(sweep_dir / TRIALS / t.name)
        label = " ".join(f"{k}={format_value(v)}" for k, v in t.settings)
        error = f"{results[t.name]['valid_error'] * 100:.3f} %{of_total(results[t.name].get('n_valid'))}"
        curves.append((f"{t.index:03d} {label} ({error})", rows))
    if curves:
        unit = "epoch" if plan.base.optimizer == "sgd" and "optimizer" not in plan.swept else "epoch / iteration"
        n_valid = _common_count([results[t.name].get("n_valid") for t in ok[:n_best]])
        written.append(
            save_figure(sweep_curves_figure(curves, unit=unit, n_valid=n_valid), out / "sweep_learning_curves.png")
        )
    return written


def _common_count(counts: list[int | None]) -> int | str | None:
    """The number of validation examples the trials' errors are over: one count, words when the
    trials differ (the tutorial preset scores whole minibatches only), None when not recorded."""
    known = {n for n in counts if n}
    if not known:
        return None
    return known.pop() if len(known) == 1 else "each trial's scored examples"
