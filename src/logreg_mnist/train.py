"""Training: the chapter's minibatch SGD with early stopping, a run directory, resume.

``train(data, config, out_dir)`` is the whole algorithm of ``logistic_sgd.py``:
minibatches in order, validation every ``min(n_train_batches, patience // 2)``
minibatches, the test error measured and the model saved at each new best,
geometric patience. The arithmetic is delegated to an engine
(:mod:`logreg_mnist.engines`); the full-batch optimisers live in
:mod:`logreg_mnist.optimizers`.

:func:`train` owns the run directory: it takes its lock once, checks it, makes the
engine, and runs SGD (here) or a full-batch optimiser inside the lock; either
writes the run through one :class:`~logreg_mnist.run.RunRecorder`.
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

from ._paths import check_output_dir
from .config import TrainConfig, validation_frequency
from .data import Dataset
from .early_stopping import EarlyStopping
from .engines import Engine, make_engine
from .errors import ConfigError, ModelFileError, TrainingDivergedError
from .model import LogisticRegression
from .persistence import BEST, CHECKPOINT, CONFIG, load_model, read_history
from .reporting import Reporter, completion, percent
from .run import History, RunDir, RunRecorder, check_run_target, clear_run

__all__ = ["History", "initial_params", "load_run_config", "train"]


@dataclass
class _State:
    """The driver's resumable state (saved in the checkpoint's metadata)."""

    stopper: EarlyStopping
    epoch: int = 0
    iteration: int = -1  # last finished minibatch, counted from 0
    test_error: float = math.nan
    best_epoch: int = 0
    elapsed: float = 0.0
    done: bool = False  # early stopping has ended the run

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "stopper": self.stopper.state(),
            "test_error": self.test_error,
            "best_epoch": self.best_epoch,
            "elapsed": self.elapsed,
            "done": self.done,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _State:
        return cls(
            epoch=d["epoch"],
            iteration=d["iteration"],
            stopper=EarlyStopping(**d["stopper"]),
            test_error=d["test_error"],
            best_epoch=d["best_epoch"],
            elapsed=d["elapsed"],
            done=d.get("done", False),
        )


def _limit_blas(threads: int | None):
    """Limit BLAS (and OpenMP) thread pools to ``threads`` until ``restore_original_limits()``.

    A BLAS that starts one thread per core on a machine already busy slows a run
    several times; the engine's thread count is the most it may use.
    """
    from threadpoolctl import threadpool_limits

    from .engines import default_threads

    return threadpool_limits(limits=threads or default_threads())


def initial_params(data: Dataset, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Where a new SGD run starts: ``W`` (n_features, n_classes) and ``b`` (n_classes,) in
    ``config.dtype``, zeros or small random values as ``config.init`` says."""
    model = LogisticRegression(data.n_features, data.n_classes, init=config.init, seed=config.seed, dtype=config.dtype)
    return model.W, model.b


def train(
    data: Dataset,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    reporter: Reporter | None = None,
    resume: bool = False,
    overwrite: bool = False,
    engine: str | Engine = "auto",
    threads: int | None = None,
    max_resident: int | None = None,
) -> tuple[LogisticRegression, History]:
    """Train a :class:`LogisticRegression` on ``data`` as ``config`` says.

    Args:
        data: the train / valid / test splits.
        config: hyperparameters (default: ``TrainConfig()``, the chapter's);
            ``config.optimizer`` picks sgd, cg or lbfgs.
        out_dir: run directory for the best model, history, checkpoint and
            snapshots; None keeps everything in memory.
        reporter: receives the chapter's printed lines and progress; None is silent.
        resume: continue the run in ``out_dir`` from its checkpoint (from the beginning
            when it stopped before its first checkpoint).
        engine: the SGD engine, by name (``auto``, ``numpy``, ``fused``, ``gpu``; see
            :mod:`logreg_mnist.engines`) or an engine object. A run-time choice: every
            engine computes the same algorithm (within its stated float tolerance).
        threads: threads the engine (and BLAS) use; None: the engine's choice (the
            fused engine: up to the cores this process may run on, adapting; numpy: one).
        max_resident: memory budget in bytes for the data the engine holds; beyond it
            the splits are read from their files in chunks (default: a quarter of the
            available memory, at most 2 GiB).
        overwrite: clear a run already in ``out_dir`` (its files, snapshots and
            plots) and start afresh. Without ``resume`` or ``overwrite``, a directory
            that holds a run is refused: a run is never replaced by accident.

    Returns:
        (best model, history).

    Raises:
        ConfigError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite``
            is given, or it cannot be a directory.
        TrainingDivergedError: the loss or the parameters became non-finite; the
            best model saved so far is left in place.
        ConfigError: without ``resume``, ``out_dir`` holds a run (a checkpoint, or a
            cg / lbfgs best model); a directory whose run stopped before its first
            checkpoint is used again.
        RunBusyError: another process holds ``out_dir`` (a run or a resume there).
        StorageError: a file could not be written (a full disk); the message says
            what is kept and how to go on.
        KeyboardInterrupt: after the run directory is left consistent (the best
            model saved, a checkpoint at the last finished epoch).
    """
    reporter = reporter or Reporter()
    config = config or TrainConfig()
    if out_dir is not None:
        if resume and overwrite:
            raise ConfigError("out_dir: resume and overwrite exclude each other")
        check_output_dir(out_dir, "out_dir")  # before the directory is created
    run = RunDir(out_dir)
    with run.owned():  # one process per run directory, from the first read to the end
        if out_dir is not None:
            check_run_target(out_dir, resume=resume, overwrite=overwrite)  # again, under the lock
        if config.optimizer != "sgd" and resume:
            kept = run.kept() if out_dir is not None else "nothing"
            raise ConfigError(
                f"resume: a {config.optimizer} run cannot be continued (SciPy's optimiser state "
                f"is not saved); kept: {kept}; start a new run"
            )
        sgd_engine = None
        if config.optimizer == "sgd":
            # before a run is cleared: an engine that cannot run here leaves the old run as it was
            sgd_engine = (
                make_engine(engine, data, config, threads=threads, max_resident=max_resident)
                if isinstance(engine, str)
                else engine
            )
        if out_dir is not None and overwrite:
            clear_run(Path(out_dir))
        if sgd_engine is None:
            from .optimizers.full_batch import run_full_batch  # SciPy, loaded only for cg and lbfgs

            return run_full_batch(data, config, run, reporter)
        return _run_sgd(data, config, run, reporter, resume, sgd_engine)


def _run_sgd(
    data: Dataset, config: TrainConfig, run: RunDir, reporter: Reporter, resume: bool, engine: Engine
) -> tuple[LogisticRegression, History]:
    """The chapter's SGD with early stopping, recorded in ``run`` (owned by the caller)."""
    n_batches = engine.n_train_batches
    frequency = validation_frequency(n_batches, config.patience)
    resumed = _load_checkpoint(run, data, config, reporter) if resume else None
    if resumed is not None:
        state, rows, best = resumed
        engine.set_params(*best.pop("current"))
    else:
        state = _State(stopper=EarlyStopping(config.patience, config.patience_increase, config.improvement_threshold))
        engine.set_params(*initial_params(data, config))
        rows, best = None, {}
    recorder = RunRecorder(run, config, data, rows=rows, engine=engine.name)
    n_valid, n_test = recorder.history.n_valid, recorder.history.n_test
    best_params = best.get("params") or engine.get_params()
    stopper = state.stopper
    started = time.perf_counter() - state.elapsed
    reporter.begin(config, data, n_valid, n_test, n_batches)
    reporter.start(stopper.stop_iteration(0) + 1, "training")
    blas = _limit_blas(engine.threads)
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
                        recorder.best(
                            *best_params, epoch=epoch, iteration=last, valid_error=valid_error, test_error=test_error
                        )

                # termination
                reporter.progress(last + 1, stopper.stop_iteration(last) + 1)
                if stopper.should_stop(last) or config.dry_run:
                    state.done = True
                    break

            # record: the epoch's row, a snapshot when asked for, the checkpoint
            state.elapsed = time.perf_counter() - started
            row = {
                "epoch": epoch,
                "iteration": state.iteration + 1,
                "train_nll": nll_sum / max(count, 1),
                "valid_error": valid_error,
                "test_error": test_error,
                "best_valid_error": stopper.best_loss,
                "elapsed": round(state.elapsed, 4),
            }
            recorder.row(row)
            reporter.epoch_end(row)
            W, b = engine.get_params()
            recorder.snapshot(W, b, epoch=epoch, iteration=state.iteration, valid_error=valid_error)
            recorder.checkpoint(W, b, state.to_dict(), final=state.done or state.epoch >= config.n_epochs)
    except Exception:
        # A divergence, a data file that changed, a full disk: keep the last good best model
        # and the last finished epoch's checkpoint where they can still be written.
        recorder.failed()
        raise
    except KeyboardInterrupt:
        line = recorder.interrupted(state.epoch)
        reporter.close()
        if line is not None:
            reporter.message(line)
        raise
    finally:
        blas.restore_original_limits()
        reporter.close()

    history = recorder.finish(
        best_valid_error=stopper.best_loss,
        test_error=state.test_error,
        best_epoch=state.best_epoch,
        best_iteration=stopper.best_iteration,
        epochs=state.epoch,
        seconds=time.perf_counter() - started,
        stopped_by="dry_run" if config.dry_run else ("patience" if state.done else "n_epochs"),
    )
    reporter.message(completion(history))
    reporter.message(
        f"The code run for {history.epochs} epochs, with {history.epochs / max(history.seconds, 1e-9):f} epochs/sec"
    )
    return LogisticRegression.from_params(*best_params), history


def _check_finite(
    engine: Engine, nll_sum: float, epoch: int, minibatch: int, run: RunDir, state: _State, n_valid: int | None = None
) -> None:
    W, b = engine.get_params()
    if math.isfinite(nll_sum) and np.isfinite(W).all() and np.isfinite(b).all():
        return
    kept = (
        f"the best model so far (epoch {state.best_epoch}, validation error "
        f"{percent(state.stopper.best_loss, n_valid, 4)}) is kept in {run.path / BEST}"
        if run.path is not None and state.best_epoch
        else "no model was saved"
    )
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch} by minibatch {minibatch}: the loss or the parameters "
        f"became non-finite (training NLL sum {nll_sum}); {kept}. Try a smaller learning rate."
    )


def _load_checkpoint(run: RunDir, data: Dataset, config: TrainConfig, reporter: Reporter):
    """The saved state, rows and parameters; None for a run stopped before its first checkpoint."""
    if run.path is None:
        raise ConfigError("resume needs the run directory to continue")
    ckpt = run.path / CHECKPOINT
    if not ckpt.is_file():
        if not (run.path / CONFIG).is_file():
            raise ModelFileError(f"{run.path}: no run to resume here (expected {CONFIG} and {CHECKPOINT})")
        reporter.message(f"{run.path}: no epoch had finished (no {CHECKPOINT}); starting the run from the beginning")
        return None
    current, meta = load_model(ckpt)
    if meta.get("dataset") != data.identity:
        raise ConfigError(
            f"{run.path}: the run was trained on dataset {meta.get('dataset')}, but the data given is {data.identity}"
        )
    if meta.get("config") != config.to_dict():
        raise ConfigError(
            f"{run.path}: the configuration differs from the checkpoint's; resume with the run's "
            "own configuration (logreg-mnist train --resume DIR takes it from config.json)"
        )
    state = _State.from_dict(meta["state"])
    rows = [r for r in read_history(run.path) if r["epoch"] <= state.epoch]
    best: dict[str, Any] = {"current": (current.W, current.b)}
    if (run.path / BEST).is_file():
        model, _ = load_model(run.path / BEST)
        best["params"] = (model.W, model.b)
    return state, rows, best


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The configuration recorded in a run directory's ``config.json``."""
    path = Path(run_dir) / CONFIG
    try:
        return TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: expected UTF-8 JSON, found a byte that is not UTF-8 at offset {e.start}") from None
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: cannot read the run's configuration: {e}") from None
