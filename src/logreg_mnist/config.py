"""Training configuration: one frozen record, validated once, and its presets."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError

OPTIMIZERS = ("sgd", "cg", "lbfgs")
MAX_SEED = 2**32 - 1  # seeds as scikit-learn and NumPy's legacy RandomState take them


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Defaults are the chapter's ``sgd_optimization_mnist``."""

    optimizer: str = "sgd"  # sgd: the chapter's minibatch SGD; cg, lbfgs: full-batch SciPy optimisers
    learning_rate: float = 0.13  # the chapter's step size; stable for zero-init on [0, 1) pixels
    batch_size: int = 600  # the chapter's minibatch; also the unit of evaluation with drop_last
    n_epochs: int = 1000  # cap on epochs; early stopping ends the chapter's run at 74
    patience: int = 5000  # look at this many minibatches regardless
    patience_increase: float = 2.0  # on a significant new best, wait until iteration * this
    improvement_threshold: float = 0.995  # a relative improvement this large is significant
    l1: float = 0.0  # coefficient of sum|W|; the chapter's logistic_sgd uses none
    l2: float = 0.0  # coefficient of sum W**2; the chapter's logistic_sgd uses none
    drop_last: bool = False  # the chapter drops partial minibatches (49,800 trained, 9,600 scored)
    init: str = "zeros"  # zeros as in the chapter (the cost is convex), or small random values
    seed: int = 0  # seed of the random init
    max_iter: int = 50  # iterations of cg / lbfgs, logistic_cg.py's n_epochs
    snapshot_every: int = 0  # save an intermediate model every N epochs (0: never)
    dtype: str = "float32"  # arithmetic precision of sgd (cg and lbfgs work in float64)
    dry_run: bool = False  # one minibatch (or one iteration) end to end, then stop

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ConfigError(f"{name}: expected {expected}, found {getattr(self, name)!r}", field=name)

        def number(name: str) -> bool:  # a real, finite number (bool excluded)
            v = getattr(self, name)
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        def integer(name: str) -> bool:
            v = getattr(self, name)
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        need(self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}")
        need(number("learning_rate") and self.learning_rate > 0, "learning_rate", "a finite number > 0")
        need(integer("batch_size") and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(integer("n_epochs") and self.n_epochs >= 1, "n_epochs", "an integer >= 1")
        need(integer("patience") and self.patience >= 1, "patience", "an integer >= 1")
        need(number("patience_increase") and self.patience_increase >= 1, "patience_increase",
             "a finite number >= 1")
        need(number("improvement_threshold") and 0 < self.improvement_threshold <= 1, "improvement_threshold",
             "a number in (0, 1]")
        need(number("l1") and self.l1 >= 0, "l1", "a finite number >= 0")
        need(number("l2") and self.l2 >= 0, "l2", "a finite number >= 0")
        need(self.init in ("zeros", "random"), "init", "'zeros' or 'random'")
        need(integer("seed") and 0 <= self.seed <= MAX_SEED, "seed", f"an integer in [0, {MAX_SEED}]")
        need(integer("max_iter") and self.max_iter >= 1, "max_iter", "an integer >= 1")
        need(integer("snapshot_every") and self.snapshot_every >= 0, "snapshot_every", "an integer >= 0")
        need(self.dtype in ("float32", "float64"), "dtype", "'float32' or 'float64'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# Presets: changes from the defaults. "tutorial" is the chapter exactly.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tutorial": {"drop_last": True},
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with ``overrides`` applied (None values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"preset: expected one of {', '.join(PRESETS)}, found {name!r}")
    values = dict(PRESETS[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


def validation_frequency(n_train_batches: int, patience: int) -> int:
    """The chapter's ``min(n_train_batches, patience // 2)``: validate at least twice per patience."""
    return max(1, min(n_train_batches, patience // 2))
