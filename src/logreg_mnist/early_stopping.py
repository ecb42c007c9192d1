"""The chapter's early stopping with geometric patience, as one small state object.

Patience is counted in minibatches (iterations). Whenever the validation error
improves on the best so far, the model is a new best; when it improves by more
than the relative ``improvement_threshold``, patience grows to
``iteration * patience_increase``. Training stops after the first iteration at
which ``patience <= iteration``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    """Bookkeeping of the best validation error and of the patience.

    Example:
        >>> stop = EarlyStopping(patience=10, patience_increase=2, improvement_threshold=0.995)
        >>> stop.update(iteration=7, loss=0.5)   # a new, significant best
        True
        >>> stop.patience, stop.should_stop(13), stop.should_stop(14)
        (14, False, True)
    """

    patience: float
    patience_increase: float
    improvement_threshold: float
    best_loss: float = math.inf
    best_iteration: int = -1

    def update(self, iteration: int, loss: float) -> bool:
        """Record the validation ``loss`` measured after ``iteration``; True on a new best."""
        if loss >= self.best_loss:
            return False
        if loss < self.best_loss * self.improvement_threshold:
            self.patience = max(self.patience, iteration * self.patience_increase)
        self.best_loss = loss
        self.best_iteration = iteration
        return True

    def should_stop(self, iteration: int) -> bool:
        """Whether training ends after ``iteration`` (the chapter's ``patience <= iter``)."""
        return self.patience <= iteration

    def stop_iteration(self, start: int) -> int:
        """The first iteration >= ``start`` after which training would stop, patience unchanged."""
        # A huge patience_increase can make patience overflow to inf: then never, in practice.
        patience = math.ceil(self.patience) if math.isfinite(self.patience) else sys.maxsize
        return max(start, patience)

    def state(self) -> dict:
        return asdict(self)
