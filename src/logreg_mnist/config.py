"""Training configuration: one frozen record whose fields declare themselves, validated once, and its presets.

Every field of :class:`TrainConfig` is declared with :func:`setting`: its default, its
help text, the values it accepts (an :class:`Interval` or :class:`OneOf`) and whether
a sweep may vary it. From that one declaration come the validation in
``TrainConfig.__post_init__``, the command line's flags (``--learning-rate``...) and
the sweep's parsing of ``--grid NAME=V1,V2`` and ``--range``; :data:`SETTINGS` lists
the declarations, field by field.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from .errors import ConfigError

OPTIMIZERS = ("sgd", "cg", "lbfgs")
MAX_SEED = 2**32 - 1  # seeds as scikit-learn and NumPy's legacy RandomState take them
_KEY = "logreg_mnist.setting"  # where a field's Setting lies in its metadata


@dataclass(frozen=True)
class Interval:
    """The finite numbers (integers, for an int field) from ``low`` to ``high``; None: no bound.

    Each end is closed unless ``low_open`` / ``high_open``. Described as a check
    message reads: ``an integer >= 1``, ``a finite number > 0``, ``a number in (0, 1]``.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def above(cls, low: float) -> Interval:
        return cls(low=low, low_open=True)

    @classmethod
    def at_least(cls, low: float) -> Interval:
        return cls(low=low)

    def accepts(self, value: Any, kind: type) -> bool:
        """Whether ``value`` is a number of ``kind`` (int: integral; float: real and finite), bool
        excluded, inside the interval."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if kind is int else numbers.Real):
            return False
        if kind is not int and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, kind: type) -> str:
        if self.low is not None and self.high is not None:
            return (
                f"{'an integer' if kind is int else 'a number'} in {'(' if self.low_open else '['}{self.low}, "
                f"{self.high}{')' if self.high_open else ']'}"
            )
        noun = "an integer" if kind is int else "a finite number"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high}"
        return noun


@dataclass(frozen=True)
class OneOf:
    """One of a few words; described as ``'zeros' or 'random'``, or ``one of sgd, cg, lbfgs``."""

    choices: tuple[str, ...]

    def accepts(self, value: Any, kind: type) -> bool:
        return value in self.choices

    def describe(self, kind: type) -> str:
        if len(self.choices) == 2:
            return " or ".join(repr(c) for c in self.choices)
        return f"one of {', '.join(self.choices)}"


@dataclass(frozen=True)
class Setting:
    """A :class:`TrainConfig` field as declared.

    Attributes:
        help: what it means, as the command line's ``--help`` says it.
        values: the values it accepts (None: any value of its type).
        shown: the default as ``--help`` words it, where the value alone would mislead.
        tunable: a hyperparameter, which a sweep may fix or vary (an on/off one is a
            ``--x / --no-x`` flag pair, since a preset may turn it on); False: a mode of
            one run (a plain ``--x`` switch, never swept).
        alias: a short name taken as well (``lr``: ``--lr``, ``--grid lr=...``).
        optimizers: the optimizers that use it (a run's header lists only those).
        shapes_model: it changes the model an optimizer learns; False for the settings of
            how a run is carried out or recorded (snapshots, a dry run), which
            :func:`settings_in_use` leaves out with ``shaping_only``.
        name, kind, default: the field's name, type (int, float, str or bool) and default,
            filled in from the field itself.
    """

    help: str
    values: Interval | OneOf | None = None
    shown: str | None = None
    tunable: bool = True
    alias: str | None = None
    optimizers: tuple[str, ...] = OPTIMIZERS
    shapes_model: bool = True
    name: str = ""
    kind: type = object
    default: Any = None

    @property
    def flag(self) -> str:
        """The command line's flag: ``learning_rate`` -> ``--learning-rate``."""
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> list[str]:
        """Every flag that sets it: ``--learning-rate``, ``--lr``."""
        return [self.flag] + ([f"--{self.alias}"] if self.alias else [])

    def check(self, value: Any) -> None:
        """Raise :class:`ConfigError` (naming the field, the values expected and ``value``) unless accepted."""
        if self.values is not None and not self.values.accepts(value, self.kind):
            raise ConfigError(
                f"{self.name}: expected {self.values.describe(self.kind)}, found {value!r}", field=self.name
            )


def setting(
    default: Any,
    help: str,
    values: Interval | OneOf | None = None,
    *,
    shown: str | None = None,
    tunable: bool = True,
    alias: str | None = None,
    optimizers: tuple[str, ...] = OPTIMIZERS,
    shapes_model: bool = True,
) -> Any:
    """A :class:`TrainConfig` field: ``default`` with its :class:`Setting` in the field's metadata."""
    return field(
        default=default, metadata={_KEY: Setting(help, values, shown, tunable, alias, optimizers, shapes_model)}
    )


_SGD = ("sgd",)
_FULL_BATCH = ("cg", "lbfgs")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Defaults are the chapter's ``sgd_optimization_mnist``."""

    optimizer: str = setting(
        "sgd", "sgd: the chapter's minibatch SGD; cg or lbfgs: full-batch SciPy (logistic_cg.py)", OneOf(OPTIMIZERS)
    )
    # the chapter's step size; stable for zero-init on [0, 1) pixels
    learning_rate: float = setting(0.13, "SGD step size", Interval.above(0), alias="lr", optimizers=_SGD)
    # the chapter's minibatch; also the unit of evaluation with drop_last
    batch_size: int = setting(600, "examples per minibatch", Interval.at_least(1))
    # a cap on epochs; early stopping ends the chapter's run at 74
    n_epochs: int = setting(
        1000, "most epochs to run; early stopping usually ends sooner", Interval.at_least(1), optimizers=_SGD
    )
    # look at this many minibatches regardless
    patience: int = setting(
        5000, "minibatches to look at regardless of progress", Interval.at_least(1), optimizers=_SGD
    )
    patience_increase: float = setting(
        2.0, "on a significant new best, wait until iteration * this", Interval.at_least(1), optimizers=_SGD
    )
    improvement_threshold: float = setting(  # a relative improvement this large is significant
        0.995, "a new best below best * this counts as significant", Interval(0, 1, low_open=True), optimizers=_SGD
    )
    # the chapter's logistic_sgd uses no penalty
    l1: float = setting(0.0, "coefficient of the L1 penalty sum|W|", Interval.at_least(0))
    l2: float = setting(0.0, "coefficient of the squared L2 penalty sum W^2", Interval.at_least(0))
    # every example is used; the chapter drops partial minibatches (49,800 trained, 9,600 scored)
    drop_last: bool = setting(
        False, "drop the examples that do not fill a whole minibatch", shown="off; on with --preset tutorial"
    )
    # zeros as in the chapter (the cost is convex), or small random values
    init: str = setting(
        "zeros", "initial W: zeros (the chapter) or random (small normal values)", OneOf(("zeros", "random"))
    )
    seed: int = setting(0, "seed of the random init", Interval(0, MAX_SEED))
    max_iter: int = setting(
        50, "iterations of cg / lbfgs", Interval.at_least(1), optimizers=_FULL_BATCH
    )  # logistic_cg.py's n_epochs
    snapshot_every: int = setting(
        0, "save an intermediate model every N epochs (0: never)", Interval.at_least(0), shapes_model=False
    )
    # arithmetic precision of sgd (cg and lbfgs work in float64)
    dtype: str = setting(
        "float32", "SGD arithmetic precision: float32 or float64", OneOf(("float32", "float64")), optimizers=_SGD
    )
    dry_run: bool = setting(
        False,
        "run one minibatch end to end (into a temporary directory unless --out is given)",
        tunable=False,
        shapes_model=False,
    )

    def __post_init__(self) -> None:
        for s in SETTINGS.values():
            s.check(getattr(self, s.name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def in_use(self) -> dict[str, Any]:
        """The settings this configuration's optimizer uses, by name (a run's header): cg and
        lbfgs leave out SGD's step size, stopping rule and precision (they compute in float64),
        SGD leaves out ``max_iter``, and ``batch_size`` counts for them only with ``drop_last``."""
        return {s.name: getattr(self, s.name) for s in settings_in_use(self.optimizer, drop_last=self.drop_last)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _settings() -> dict[str, Setting]:
    kinds = get_type_hints(TrainConfig)
    return {
        f.name: dataclasses.replace(f.metadata[_KEY], name=f.name, kind=kinds[f.name], default=f.default)
        for f in fields(TrainConfig)
    }


# Every field's declaration, in field order; the hyperparameters are those a sweep may vary.
SETTINGS: dict[str, Setting] = _settings()
HYPERPARAMETERS: dict[str, Setting] = {name: s for name, s in SETTINGS.items() if s.tunable}


def settings_in_use(optimizer: str, *, drop_last: bool = False, shaping_only: bool = False) -> list[Setting]:
    """The declared settings ``optimizer`` uses, in field order (see :meth:`TrainConfig.in_use`);
    with ``shaping_only``, only those that change the model it learns (no snapshots, no dry run)."""
    return [
        s
        for s in SETTINGS.values()
        if optimizer in s.optimizers
        and (s.shapes_model or not shaping_only)
        and not (s.name == "batch_size" and optimizer in _FULL_BATCH and not drop_last)
    ]


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
