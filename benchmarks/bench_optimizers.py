"""Every optimiser on the MNIST split, beside scikit-learn's LogisticRegression, in one run.

Prints, per row: epochs or iterations, validation and test error, seconds, and the
time relative to scikit-learn's LogisticRegression (lbfgs, its defaults, fitted on
the same 50,000 training images and scored on all 10,000 validation and test images).

    python benchmarks/bench_optimizers.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

from logreg_mnist import load_mnist, preset, train

RUNS = [
    ("sgd, --preset tutorial", "logreg-mnist train --preset tutorial", preset("tutorial")),
    ("sgd, default", "logreg-mnist train", preset("default")),
    ("cg, --preset tutorial", "logreg-mnist train --optimizer cg --preset tutorial",
     preset("tutorial", optimizer="cg")),
    ("cg, default", "logreg-mnist train --optimizer cg", preset("default", optimizer="cg")),
    ("lbfgs, default", "logreg-mnist train --optimizer lbfgs", preset("default", optimizer="lbfgs")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: as load_mnist finds it)")
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    for split in (data.train, data.valid, data.test):
        split.images  # noqa: B018 -- converts to float32 once, outside the timings

    rows = []
    for name, command, config in RUNS:
        start = time.perf_counter()
        _, history = train(data, config)
        seconds = time.perf_counter() - start
        unit = "epochs" if config.optimizer == "sgd" else "iterations"
        rows.append((name, f"{history.epochs} {unit}", history.best_valid_error, history.test_error, seconds,
                     command))

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        sk = SkLogisticRegression().fit(data.train.images, data.train.labels)
    seconds = time.perf_counter() - start
    note = " (not converged)" if any(issubclass(w.category, ConvergenceWarning) for w in caught) else ""
    sk_valid = float(np.mean(sk.predict(data.valid.images) != data.valid.labels))
    sk_test = float(np.mean(sk.predict(data.test.images) != data.test.labels))
    rows.append(("scikit-learn LogisticRegression", f"{int(sk.n_iter_[0])} iterations{note}", sk_valid, sk_test,
                 seconds, "LogisticRegression().fit(train)"))

    base = rows[-1][4]
    print(f"MNIST ({data.identity}); errors over the scored examples (9,600 with the tutorial preset, else 10,000)")
    print("| run | epochs / iterations | validation error | test error | seconds | time vs scikit-learn | command |")
    print("|---|---|---|---|---|---|---|")
    for name, steps, valid, test, seconds, command in rows:
        print(f"| {name} | {steps} | {valid * 100:.4f} % | {test * 100:.4f} % | {seconds:.1f} | "
              f"{seconds / base:.2f}x | `{command}` |")


if __name__ == "__main__":
    main()
