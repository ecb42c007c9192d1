"""What a training run prints: the hyperparameters once, the chapter's lines, and a progress bar.

Every error printed says over how many examples it was measured ("7.489583 % of
9,600"): the tutorial preset scores 9,600 of the 10,000 validation and test
images, the default all 10,000.

The progress bar never moves backwards. For SGD the end of the run is not known
(each significant improvement extends the patience), so the bar counts minibatches
without a total, and shows the epoch, the current and best validation error and
the patience left; for CG and L-BFGS it counts iterations against ``max_iter``.
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from tqdm.auto import tqdm

QUIET, NORMAL, VERBOSE = 0, 1, 2


def percent(error: float | None, n: int | None = None, digits: int = 6) -> str:
    """``"7.489583 % of 9,600"``: an error fraction as a percentage with its denominator."""
    if error is None or (isinstance(error, float) and math.isnan(error)):
        return "-"
    return f"{error * 100.0:.{digits}f} %" + (f" of {n:,}" if n else "")


def completion(history: Any) -> str:
    """The chapter's closing line for a run's :class:`~logreg_mnist.run.History`: its best
    validation error and the test error there, each with its denominator."""
    best = percent(history.best_valid_error, history.n_valid)
    return (
        f"Optimization complete with best validation score of {best}, with test performance "
        f"{percent(history.test_error, history.n_test)}"
    )


_Count = int | None  # how many examples or minibatches; None: not known


class Reporter:
    """Silent base: the training driver calls these hooks; subclasses print.

    Hooks, in the order a run calls them: ``begin`` (once, with the configuration
    and the data), ``start`` (the bar), then ``progress``, ``validation``, ``test``,
    ``epoch_end`` as training goes, ``message`` for the closing lines, ``close``.
    ``begin`` says how many examples the validation and test errors are over and, for
    SGD, how many minibatches make an epoch; in ``validation``, ``n_batches`` 0 marks a
    full-batch iteration (``epoch`` is then the iteration).
    """

    def begin(
        self, config: Any, data: Any, n_valid: _Count = None, n_test: _Count = None, n_batches: _Count = None
    ) -> None: ...
    def start(self, total_iterations: int, description: str) -> None: ...
    def progress(self, iteration: int, planned: int) -> None: ...
    def validation(self, epoch: int, minibatch: int, n_batches: int, error: float) -> None: ...
    def test(self, epoch: int, minibatch: int, n_batches: int, error: float) -> None: ...
    def epoch_end(self, row: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class ConsoleReporter(Reporter):
    """Prints to ``stream``; with ``progress``, also a tqdm bar on stderr.

    Args:
        stream: where the lines go (default: stdout).
        progress: draw the bar (on stderr).
        verbosity: QUIET (0): only the closing lines (``message``); NORMAL (1): also
            the hyperparameters and the chapter's validation / test lines; VERBOSE (2):
            also one line per epoch (training NLL, errors, patience left, time).
    """

    def __init__(
        self, stream: TextIO | None = None, progress: bool = False, verbosity: int = NORMAL, heading: str = ""
    ):
        self.stream = stream or sys.stdout
        self.heading = heading  # a first line (the run directory), printed once the run starts
        self.verbosity = verbosity
        self.show_progress = progress and verbosity > QUIET
        self._bar: tqdm | None = None
        self._n_batches: int | None = None
        self._n_valid: int | None = None
        self._n_test: int | None = None
        self._epoch = 1
        self._valid: float | None = None
        self._best = math.inf
        self._left: int | None = None

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.clear()
        print(text, file=self.stream, flush=True)
        if self._bar is not None:
            self._bar.refresh()

    def begin(
        self, config: Any, data: Any, n_valid: _Count = None, n_test: _Count = None, n_batches: _Count = None
    ) -> None:
        self._n_valid, self._n_test, self._n_batches = n_valid, n_test, n_batches
        if self.verbosity < NORMAL:
            return
        if self.heading:
            self._print(self.heading)
        values = config.in_use() if hasattr(config, "in_use") else dict(config)
        precision = "" if "dtype" in values else "; computes in float64"  # cg and lbfgs (SciPy)
        self._print("hyperparameters: " + ", ".join(f"{k} {v}" for k, v in values.items()) + precision)
        scored = f"; errors over {n_valid:,} validation and {n_test:,} test examples" if n_valid and n_test else ""
        self._print(
            f"data: {data.title} from {data.source}: {len(data.train):,} training, "
            f"{len(data.valid):,} validation, {len(data.test):,} test examples{scored}"
        )

    def start(self, total_iterations: int, description: str) -> None:
        n_batches = self._n_batches
        if self.show_progress:
            # SGD (n_batches given): the end moves whenever patience grows, so no total.
            total = None if n_batches else total_iterations
            self._bar = tqdm(
                total=total,
                desc=description,
                unit="batch" if n_batches else "it",
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )

    def _postfix(self) -> None:
        if self._bar is None:
            return
        parts = [f"epoch {self._epoch}"] if self._n_batches else []
        if self._valid is not None:
            parts.append(
                f"validation {self._valid * 100:.2f} %, best {self._best * 100:.2f} %"
                + (f" of {self._n_valid:,}" if self._n_valid else "")
            )
        if self._left is not None and self._n_batches:
            parts.append(f"patience left {self._left:,} batches")
        self._bar.set_postfix_str(", ".join(parts), refresh=False)

    def progress(self, iteration: int, planned: int) -> None:
        if self._n_batches:  # the epoch the last finished minibatch belongs to
            self._epoch = max(1, -(-iteration // self._n_batches))
        self._left = max(planned - iteration, 0)
        if self._bar is not None:  # called once per validation or so: draw every call
            self._postfix()
            self._bar.update(iteration - self._bar.n)
            self._bar.refresh()

    def validation(self, epoch: int, minibatch: int, n_batches: int, error: float) -> None:
        self._valid, self._best = error, min(self._best, error)
        n = self._n_valid
        if self.verbosity < NORMAL:
            return
        if n_batches == 0:  # a full-batch iteration: logistic_cg.py's line
            self._print(f"validation error {percent(error, n)}")
        else:
            self._print(f"epoch {epoch}, minibatch {minibatch}/{n_batches}, validation error {percent(error, n)}")

    def test(self, epoch: int, minibatch: int, n_batches: int, error: float) -> None:
        if self.verbosity >= NORMAL:
            self._print(
                f"     epoch {epoch}, minibatch {minibatch}/{n_batches}, test error of best model "
                f"{percent(error, self._n_test)}"
            )

    def epoch_end(self, row: dict[str, Any]) -> None:
        if self.verbosity < VERBOSE:
            return
        left = f", patience left {self._left:,} minibatches" if self._left is not None and self._n_batches else ""
        self._print(
            f"  {'epoch' if self._n_batches else 'iteration'} {row['epoch']}: training NLL "
            f"{row['train_nll']:.6f}, validation error {percent(row.get('valid_error'), self._n_valid, 4)}, "
            f"best {percent(row.get('best_valid_error'), self._n_valid, 4)}{left}, "
            f"{row.get('elapsed', 0.0):.1f} s"
        )

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
