"""Full-batch optimisers: the chapter's ``logistic_cg.py`` (SciPy conjugate gradient) and L-BFGS.

The parameters travel as one flat vector ``theta = [W.ravel(), b]`` (W first, C
order), as in ``logistic_cg.py``. SciPy minimises the mean NLL of the whole
training set (plus any L1/L2 terms; L1 uses its subgradient ``sign(W)``) with the
gradient supplied. After every iteration a callback measures the validation
error, keeps the best parameters and the test error at that point, and prints
``validation error ... %`` as the original does. Runs write the same run
directory as SGD, through the same recorder; the history has one row per iteration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.optimize

from ..config import TrainConfig
from ..data import Dataset
from ..errors import ConfigError, TrainingDivergedError
from ..model import LogisticRegression, cost_and_grad, errors
from ..persistence import BEST
from ..reporting import Reporter, completion
from ..run import History, RunDir, RunRecorder, scored

METHODS = {"cg": "CG", "lbfgs": "L-BFGS-B"}


def pack(W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[W.ravel(), b]`` as one float64 vector of length n_in * n_out + n_out."""
    return np.concatenate([np.asarray(W, np.float64).ravel(), np.asarray(b, np.float64)])


def unpack(theta: np.ndarray, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Views ``W`` (n_in, n_out) and ``b`` (n_out,) into ``theta``; the inverse of :func:`pack`."""
    if theta.shape != (n_in * n_out + n_out,):
        raise ValueError(f"expected theta of length {n_in * n_out + n_out}, found shape {theta.shape}")
    return theta[: n_in * n_out].reshape(n_in, n_out), theta[n_in * n_out :]


def minimize(
    x: np.ndarray,
    y: np.ndarray,
    n_out: int,
    *,
    method: str,
    max_iter: int,
    l1: float = 0.0,
    l2: float = 0.0,
    theta0: np.ndarray | None = None,
    callback: Callable[[np.ndarray, float], None] | None = None,
) -> scipy.optimize.OptimizeResult:
    """Minimise ``mean NLL + l1 sum|W| + l2 sum W**2`` over ``(x, y)`` with SciPy.

    Args:
        x: float64 inputs (n, n_in). y: int labels (n,) in [0, n_out).
        method: "cg" or "lbfgs".
        max_iter: most iterations.
        theta0: start (zeros by default, as in the chapter).
        callback: called after each iteration with (theta, cost at theta).

    Returns:
        SciPy's OptimizeResult (``x`` the final theta, ``nit`` the iterations).
    """
    n_in = x.shape[1]
    theta0 = np.zeros(n_in * n_out + n_out) if theta0 is None else theta0

    def fun(theta):
        W, b = unpack(theta, n_in, n_out)
        cost, _, gW, gb = cost_and_grad(W, b, x, y, l1, l2)
        return cost, pack(gW, gb)

    def on_iteration(intermediate_result):  # SciPy >= 1.11 passes x and fun
        callback(intermediate_result.x, intermediate_result.fun)

    return scipy.optimize.minimize(
        fun,
        theta0,
        jac=True,
        method=METHODS[method],
        options={"maxiter": max_iter},
        callback=on_iteration if callback is not None else None,
    )


def run_full_batch(
    data: Dataset, config: TrainConfig, run: RunDir, reporter: Reporter
) -> tuple[LogisticRegression, History]:
    """The chapter's ``logistic_cg.py`` (or L-BFGS), recorded in ``run``: see the module docstring.

    :func:`logreg_mnist.train.train` calls it with ``config.optimizer`` cg or lbfgs, the run
    directory owned (locked) and checked.

    With ``config.drop_last`` (the tutorial preset) the training set is cut to whole
    minibatches of ``config.batch_size`` and the errors are over whole minibatches
    only, as in the original; otherwise every example counts.

    ``history.stopped_by`` is "max_iter" when the iterations ran out, "converged" when
    SciPy reports success, else "stopped", and SciPy's reason is printed.

    Raises:
        TrainingDivergedError: the cost or the parameters became non-finite.
        StorageError: a file could not be written (a full disk).
    """
    recorder = RunRecorder(run, config, data, coalesce=False)
    history = recorder.history

    splits = {}  # name -> (float64 inputs (n, n_in), labels (n,)), cut as the mode says
    for name in ("train", "valid", "test"):
        split = data.split(name)
        n = scored(len(split), config)
        splits[name] = split.images[:n].astype(np.float64), split.labels[:n]
    x, y = splits["train"]
    n_in, n_out = data.n_features, data.n_classes

    def error(theta: np.ndarray, split: str) -> float:
        return errors(*unpack(theta, n_in, n_out), *splits[split])

    best: dict[str, np.ndarray | None] = {"theta": None}
    started = time.perf_counter()
    max_iter = 1 if config.dry_run else config.max_iter
    init = LogisticRegression(n_in, n_out, init=config.init, seed=config.seed, dtype=np.float64)
    reporter.begin(config, data, history.n_valid, history.n_test)
    reporter.start(max_iter, config.optimizer)

    def callback(theta: np.ndarray, cost: float) -> None:
        iteration = len(history.rows) + 1
        if not (math.isfinite(cost) and np.isfinite(theta).all()):
            raise TrainingDivergedError(
                f"{config.optimizer} diverged at iteration {iteration}: the cost or the parameters became "
                f"non-finite (cost {cost}); the best model so far is kept"
                + (f" in {run.path / BEST}" if run.path is not None else "")
            )
        valid_error = error(theta, "valid")
        reporter.validation(iteration, 0, 0, valid_error)
        test_error = None
        if valid_error < history.best_valid_error:
            history.best_valid_error = valid_error
            history.test_error = test_error = error(theta, "test")
            history.best_epoch = history.best_iteration = iteration
            best["theta"] = kept = theta.copy()
            recorder.best(
                *unpack(kept, n_in, n_out),
                epoch=iteration,
                iteration=iteration,
                valid_error=valid_error,
                test_error=test_error,
            )
        row = {
            "epoch": iteration,
            "iteration": iteration,
            "train_nll": cost,
            "valid_error": valid_error,
            "test_error": test_error,
            "best_valid_error": history.best_valid_error,
            "elapsed": round(time.perf_counter() - started, 4),
        }
        recorder.row(row)
        reporter.epoch_end(row)
        recorder.snapshot(*unpack(theta, n_in, n_out), epoch=iteration, iteration=iteration, valid_error=valid_error)
        reporter.progress(iteration, max_iter)

    try:
        result = minimize(
            x,
            y,
            n_out,
            method=config.optimizer,
            max_iter=max_iter,
            l1=config.l1,
            l2=config.l2,
            theta0=pack(init.W, init.b),
            callback=callback,
        )
    finally:
        reporter.close()
    theta = best["theta"]
    if theta is None:
        raise ConfigError(f"{config.optimizer} stopped before its first iteration: {result.message}")
    stopped_by = (
        "dry_run"
        if config.dry_run
        else "max_iter"
        if result.nit >= max_iter
        else "converged"
        if result.success
        else "stopped"
    )
    history = recorder.finish(epochs=len(history.rows), seconds=time.perf_counter() - started, stopped_by=stopped_by)
    if stopped_by == "stopped":
        reporter.message(
            f"{config.optimizer} stopped after {result.nit} of at most {max_iter} iterations "
            f"without converging: {result.message}"
        )
    reporter.message(completion(history))
    reporter.message(f"The code ran for {history.epochs} iterations in {history.seconds:.1f}s")
    return LogisticRegression.from_params(*unpack(theta, n_in, n_out)), history
