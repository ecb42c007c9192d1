"""Training: the chapter's minibatch SGD with early stopping, a run directory, resume.

``train(data, config, out_dir)`` is the whole algorithm of ``logistic_sgd.py``:
minibatches in order, validation every ``min(n_train_batches, patience // 2)``
minibatches, the test error measured and the model saved at each new best,
geometric patience. The arithmetic is delegated to an engine
(:mod:`logreg_mnist.engine`); the full-batch optimisers live in
:mod:`logreg_mnist.optimizers`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import persistence as io
from .config import TrainConfig, validation_frequency
from .data import Dataset
from .early_stopping import EarlyStopping
from .engine import Engine, NumpyEngine
from .errors import ConfigError, ModelFileError, TrainingDivergedError
from .model import LogisticRegression
from .optimizers import train_full_batch
from .reporting import Reporter, percent
from .run import History, RunDir, check_run_target, clear_run, model_meta, scored_counts


@dataclass
class _State:
    """The driver's resumable state (saved in the checkpoint's metadata)."""

    epoch: int = 0
    iteration: int = -1  # last finished minibatch, counted from 0
    stopper: EarlyStopping | None = None
    test_error: float = math.nan
    best_epoch: int = 0
    elapsed: float = 0.0
    done: bool = False  # early stopping has ended the run

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "iteration": self.iteration, "stopper": self.stopper.state(),
                "test_error": self.test_error, "best_epoch": self.best_epoch, "elapsed": self.elapsed,
                "done": self.done}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _State:
        return cls(epoch=d["epoch"], iteration=d["iteration"], stopper=EarlyStopping(**d["stopper"]),
                   test_error=d["test_error"], best_epoch=d["best_epoch"], elapsed=d["elapsed"],
                   done=d.get("done", False))


def make_engine(data: Dataset, config: TrainConfig) -> Engine:
    """The engine for ``config``: the NumPy reference engine."""
    return NumpyEngine(
        data, batch_size=config.batch_size, learning_rate=config.learning_rate, l1=config.l1,
        l2=config.l2, drop_last=config.drop_last, dtype=config.dtype,
    )


def initial_params(data: Dataset, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    model = LogisticRegression(data.n_features, data.n_classes, init=config.init, seed=config.seed,
                               dtype=config.dtype)
    return model.W, model.b


def train(
    data: Dataset,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    reporter: Reporter | None = None,
    resume: bool = False,
    overwrite: bool = False,
    engine: Engine | None = None,
) -> tuple[LogisticRegression, History]:
    """Train a :class:`LogisticRegression` on ``data`` as ``config`` says.

    Args:
        data: the train / valid / test splits.
        config: hyperparameters (default: ``TrainConfig()``, the chapter's);
            ``config.optimizer`` picks sgd, cg or lbfgs.
        out_dir: run directory for the best model, history, checkpoint and
            snapshots; None keeps everything in memory.
        reporter: receives the chapter's printed lines and progress; None is silent.
        resume: continue the run in ``out_dir`` from its checkpoint.
        overwrite: clear a run already in ``out_dir`` (its files, snapshots and
            plots) and start afresh. Without ``resume`` or ``overwrite``, a directory
            that holds a run is refused: a run is never replaced by accident.
        engine: the SGD engine; by default :func:`make_engine`.

    Returns:
        (best model, history).

    Raises:
        ConfigError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite``
            is given, or it cannot be a directory.
        TrainingDivergedError: the loss or the parameters became non-finite; the
            best model saved so far is left in place.
        KeyboardInterrupt: after the run directory is left consistent (the best
            model saved, a checkpoint at the last finished epoch).
    """
    reporter = reporter or Reporter()
    config = config or TrainConfig()
    if config.optimizer != "sgd" and resume:
        raise ConfigError(f"resume: a {config.optimizer} run cannot be continued (SciPy's optimiser state "
                          "is not saved); its best model is kept, or start a new run")
    if out_dir is not None:
        check_run_target(out_dir, resume=resume, overwrite=overwrite)
        if overwrite:
            clear_run(Path(out_dir))
    if config.optimizer != "sgd":
        return train_full_batch(data, config, out_dir, reporter=reporter)
    run = RunDir(out_dir)
    engine = engine or make_engine(data, config)
    n_batches = engine.n_train_batches
    frequency = validation_frequency(n_batches, config.patience)
    n_valid, n_test = scored_counts(data, config)
    history = History(n_valid=n_valid, n_test=n_test)

    if resume:
        state, rows, best = _load_checkpoint(run, data, config)
        engine.set_params(*best.pop("current"))
        history.rows = rows
    else:
        state = _State(stopper=EarlyStopping(config.patience, config.patience_increase,
                                             config.improvement_threshold))
        engine.set_params(*initial_params(data, config))
        best = {}
    run.create(config, data, history.rows)
    best_params = best.get("params") or engine.get_params()
    stopper = state.stopper
    started = time.perf_counter() - state.elapsed
    reporter.begin(config, data, n_valid, n_test, n_batches)
    reporter.start(stopper.stop_iteration(0) + 1, "training")
    try:
        while state.epoch < config.n_epochs and not state.done:
            # train: one epoch, in chunks that end where a validation or the stop falls
            state.epoch += 1
            epoch = state.epoch
            nll_sum, count = 0.0, 0
            valid_error = test_error = None
            minibatch = 0
            while minibatch < n_batches:
                first = (epoch - 1) * n_batches + minibatch
                next_validation = (first // frequency + 1) * frequency - 1
                last = min(next_validation, stopper.stop_iteration(first), epoch * n_batches - 1)
                if config.dry_run:
                    last = first
                s, c = engine.train(range(minibatch, minibatch + last - first + 1))
                nll_sum, count = nll_sum + s, count + c
                minibatch += last - first + 1
                state.iteration = last
                _check_finite(engine, s, epoch, minibatch, run, state, n_valid)

                # evaluate: the chapter validates when (iter + 1) % validation_frequency == 0
                if (last + 1) % frequency == 0 or config.dry_run:
                    wrong, n = engine.count_errors("valid")
                    valid_error = wrong / n
                    reporter.validation(epoch, minibatch, n_batches, valid_error)
                    if stopper.update(last, valid_error):
                        wrong, n = engine.count_errors("test")
                        state.test_error = test_error = wrong / n
                        state.best_epoch = epoch
                        reporter.test(epoch, minibatch, n_batches, test_error)
                        # checkpoint the best model
                        best_params = engine.get_params()
                        run.save(io.BEST, *best_params, model_meta(
                            config, data, epoch=epoch, iteration=last, valid_error=valid_error,
                            test_error=test_error))

                # termination
                reporter.progress(last + 1, stopper.stop_iteration(last) + 1)
                if stopper.should_stop(last) or config.dry_run:
                    state.done = True
                    break

            state.elapsed = time.perf_counter() - started
            row = {"epoch": epoch, "iteration": state.iteration + 1, "train_nll": nll_sum / max(count, 1),
                   "valid_error": valid_error, "test_error": test_error,
                   "best_valid_error": stopper.best_loss, "elapsed": round(state.elapsed, 4)}
            history.rows.append(row)
            run.append_history(row)
            reporter.epoch_end(row)
            W, b = engine.get_params()
            if config.snapshot_every and epoch % config.snapshot_every == 0:
                run.save(f"{io.SNAPSHOTS}/epoch-{epoch:04d}.safetensors", W, b,
                         model_meta(config, data, epoch=epoch, iteration=state.iteration,
                                     valid_error=valid_error))
            run.save(io.CHECKPOINT, W, b, {"state": state.to_dict(), "dataset": data.identity,
                                           "config": config.to_dict()})
    except KeyboardInterrupt:
        reporter.close()
        if run.path is not None:
            reporter.message(f"Interrupted in epoch {state.epoch}. The best model is in {run.path / io.BEST}; "
                             f"continue with: logreg-mnist train --resume {run.path}")
        raise
    finally:
        reporter.close()

    history.best_valid_error = stopper.best_loss
    history.test_error = state.test_error
    history.best_epoch = state.best_epoch
    history.best_iteration = stopper.best_iteration
    history.epochs = state.epoch
    history.seconds = time.perf_counter() - started
    history.stopped_by = "dry_run" if config.dry_run else ("patience" if state.done else "n_epochs")
    reporter.message(
        f"Optimization complete with best validation score of {percent(history.best_valid_error, n_valid)}, "
        f"with test performance {percent(history.test_error, n_test)}"
    )
    reporter.message(f"The code run for {history.epochs} epochs, with "
                     f"{history.epochs / max(history.seconds, 1e-9):f} epochs/sec")
    return LogisticRegression.from_params(*best_params), history


def _check_finite(engine: Engine, nll_sum: float, epoch: int, minibatch: int, run: RunDir, state: _State,
                  n_valid: int | None = None) -> None:
    W, b = engine.get_params()
    if math.isfinite(nll_sum) and np.isfinite(W).all() and np.isfinite(b).all():
        return
    kept = (f"the best model so far (epoch {state.best_epoch}, validation error "
            f"{percent(state.stopper.best_loss, n_valid, 4)}) is kept in {run.path / io.BEST}"
            if run.path is not None and state.best_epoch else "no model was saved")
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch} by minibatch {minibatch}: the loss or the parameters "
        f"became non-finite (training NLL sum {nll_sum}); {kept}. Try a smaller learning rate."
    )


def _load_checkpoint(run: RunDir, data: Dataset, config: TrainConfig):
    if run.path is None:
        raise ConfigError("resume needs the run directory to continue")
    ckpt = run.path / io.CHECKPOINT
    if not ckpt.is_file():
        raise ModelFileError(f"{run.path}: no {io.CHECKPOINT} to resume from (did the run finish an epoch?)")
    current, meta = io.load_model(ckpt)
    if meta.get("dataset") != data.identity:
        raise ConfigError(f"{run.path}: the run was trained on dataset {meta.get('dataset')}, "
                          f"but the data given is {data.identity}")
    if meta.get("config") != config.to_dict():
        raise ConfigError(f"{run.path}: the configuration differs from the checkpoint's; resume with the run's "
                          "own configuration (logreg-mnist train --resume DIR takes it from config.json)")
    state = _State.from_dict(meta["state"])
    rows = [r for r in io.read_history(run.path) if r["epoch"] <= state.epoch]
    best: dict[str, Any] = {"current": (current.W, current.b)}
    if (run.path / io.BEST).is_file():
        model, _ = io.load_model(run.path / io.BEST)
        best["params"] = (model.W, model.b)
    return state, rows, best


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The configuration recorded in a run directory's ``config.json``."""
    path = Path(run_dir) / io.CONFIG
    try:
        return TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: cannot read the run's configuration: {e}") from None
