"""What a training run prints: the chapter's lines, and a progress bar on a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm.auto import tqdm


class Reporter:
    """Silent base: the training driver calls these hooks; subclasses print."""

    def start(self, total_iterations: int, description: str) -> None: ...
    def progress(self, iteration: int, planned: int) -> None: ...
    def validation(self, epoch: int, minibatch: int, n_batches: int, error: float) -> None: ...
    def test(self, epoch: int, minibatch: int, n_batches: int, error: float) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class ConsoleReporter(Reporter):
    """Prints the chapter's lines to ``stream``; with ``progress``, also a tqdm bar on stderr.

    The bar counts minibatches against the iteration at which patience would run
    out now; it grows whenever patience is extended.
    """

    def __init__(self, stream: TextIO | None = None, progress: bool = False):
        self.stream = stream or sys.stdout
        self.show_progress = progress
        self._bar: tqdm | None = None

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.clear()
        print(text, file=self.stream, flush=True)
        if self._bar is not None:
            self._bar.refresh()

    def start(self, total_iterations: int, description: str) -> None:
        if self.show_progress:
            self._bar = tqdm(total=total_iterations, desc=description, unit="batch", file=sys.stderr, leave=False)

    def progress(self, iteration: int, planned: int) -> None:
        if self._bar is not None:
            if planned != self._bar.total:
                self._bar.total = planned
            self._bar.update(iteration - self._bar.n)

    def validation(self, epoch: int, minibatch: int, n_batches: int, error: float) -> None:
        self._print(f"epoch {epoch}, minibatch {minibatch}/{n_batches}, validation error {error * 100.0:f} %")

    def test(self, epoch: int, minibatch: int, n_batches: int, error: float) -> None:
        self._print(
            f"     epoch {epoch}, minibatch {minibatch}/{n_batches}, test error of best model {error * 100.0:f} %"
        )

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
