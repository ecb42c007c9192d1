"""The same 12-trial grid on MNIST three ways, in one run: wall time and the chosen setting of each.

1. sequential: ``train()`` for each setting, one after another, in this process (the baseline),
   then again with NumPy's BLAS limited to one thread, as each Dask worker runs;
2. scikit-learn's ``GridSearchCV`` over ``SoftmaxRegressionClassifier(solver="sgd")``, with the
   tutorial's fixed validation split given as ``PredefinedSplit`` (``n_jobs`` = the workers);
3. ``logreg-mnist sweep`` (:func:`logreg_mnist.sweep.run_sweep`) on a local Dask cluster of
   ``--workers`` processes, cluster start-up and the workers' data loading included.

The grid: learning_rate 0.05, 0.13, 0.3, 0.6 x batch_size 300, 600, 1200, otherwise the chapter's
settings. Sequential and sweep run the chapter's early stopping (and must agree exactly);
GridSearchCV runs scikit-learn's own stopping rule (the training loss stalling for 5 epochs,
``max_iter`` epochs at most), so its choice may differ. The test error of GridSearchCV's choice is
measured afterwards by fitting it on the 50,000 training images (not timed).

    python benchmarks/bench_sweep.py [--data-dir DIR] [--workers N] [--quick]

``--quick`` caps every trial at 3 epochs (GridSearchCV: max_iter 3) to check the script end to end.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from itertools import product

import numpy as np
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from threadpoolctl import threadpool_limits

from logreg_mnist import SoftmaxRegressionClassifier, load_mnist, preset, train
from logreg_mnist.sweep import DataSource, grid_plan, local_worker_count, run_sweep

LEARNING_RATES = [0.05, 0.13, 0.3, 0.6]
BATCH_SIZES = [300, 600, 1200]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: as load_mnist finds it)")
    parser.add_argument("--workers", type=int, default=None,
                        help="Dask worker processes and GridSearchCV jobs (default: one per CPU)")
    parser.add_argument("--quick", action="store_true", help="3 epochs per trial: a check, not a measurement")
    args = parser.parse_args()
    workers = args.workers or local_worker_count()
    cap = {"n_epochs": 3} if args.quick else {}
    max_iter = 3 if args.quick else 100

    data = load_mnist(args.data_dir, download=False, progress=False)
    for split in (data.train, data.valid, data.test):
        split.images  # noqa: B018 -- converts to float32 once, outside the timings
    settings = list(product(LEARNING_RATES, BATCH_SIZES))
    rows = []

    # 1. sequential, in this process: with NumPy's BLAS threads as they come, and with one
    #    (as each Dask worker has), since BLAS threads fighting over busy cores can be slower
    for name, blas_threads in (("sequential train()", None), ("sequential train(), 1 BLAS thread", 1)):
        start = time.perf_counter()
        results = {}
        with threadpool_limits(blas_threads):
            for lr, bs in settings:
                _, history = train(data, preset("default", learning_rate=lr, batch_size=bs, **cap))
                results[(lr, bs)] = (history.best_valid_error, history.test_error)
        seconds = time.perf_counter() - start
        best = min(settings, key=lambda s: results[s][0])
        rows.append((name, seconds, best, *results[best]))

    # 2. scikit-learn GridSearchCV with the fixed validation split
    X = np.concatenate([data.train.images, data.valid.images]).astype(np.float64)
    y = np.concatenate([data.train.labels, data.valid.labels])
    fold = np.r_[np.full(len(data.train), -1), np.zeros(len(data.valid), dtype=int)]
    start = time.perf_counter()
    search = GridSearchCV(
        SoftmaxRegressionClassifier(solver="sgd", max_iter=max_iter, shuffle=False),
        {"learning_rate": LEARNING_RATES, "batch_size": BATCH_SIZES},
        cv=PredefinedSplit(fold), refit=False, n_jobs=workers)
    search.fit(X, y)
    seconds = time.perf_counter() - start
    chosen = (search.best_params_["learning_rate"], search.best_params_["batch_size"])
    refit = SoftmaxRegressionClassifier(solver="sgd", max_iter=max_iter, shuffle=False,
                                        learning_rate=chosen[0], batch_size=chosen[1])
    refit.fit(X[: len(data.train)], y[: len(data.train)])
    sk_test = float(np.mean(refit.predict(data.test.images.astype(np.float64)) != data.test.labels))
    rows.append((f"GridSearchCV, n_jobs={workers}", seconds, chosen, 1 - search.best_score_, sk_test))

    # 3. logreg-mnist sweep on a local Dask cluster
    source = DataSource(None if args.data_dir is None else str(data.source), data.identity)
    grid = [f"learning_rate={','.join(map(str, LEARNING_RATES))}", f"batch_size={','.join(map(str, BATCH_SIZES))}"]
    plan = grid_plan(preset("default", **cap), grid, source)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        start = time.perf_counter()
        result = run_sweep(plan, tmp, n_workers=workers, echo=lambda line: None)
        seconds = time.perf_counter() - start
    trial = result.best
    r = result.results[trial.name]
    chosen = (trial.config.learning_rate, trial.config.batch_size)
    rows.append((f"sweep, local cluster of {workers}", seconds, chosen, r["valid_error"], r["test_error"]))
    for t in plan.trials:  # the sweep's trials are the sequential runs, exactly
        lr_bs = (t.config.learning_rate, t.config.batch_size)
        got = (result.results[t.name]["valid_error"], result.results[t.name]["test_error"])
        assert got == results[lr_bs], (t.name, got, results[lr_bs])

    base = rows[0][1]
    print(f"MNIST ({data.identity}), {len(settings)} trials: learning_rate {LEARNING_RATES} x batch_size "
          f"{BATCH_SIZES}{' (--quick: 3 epochs per trial)' if args.quick else ''}; {cpu_model()}, "
          f"{local_worker_count()} CPUs usable")
    print("| method | seconds | time vs sequential | chosen learning_rate, batch_size | its validation error "
          "| its test error |")
    print("|---|---|---|---|---|---|")
    for name, seconds, (lr, bs), valid, test in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / base:.2f}x | {lr}, {bs} | {valid * 100:.4f} % | "
              f"{test * 100:.4f} % |")


if __name__ == "__main__":
    main()
