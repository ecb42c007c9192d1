"""A sweep's plan: the fixed settings, the trials, where the data are; parsed from ``--grid`` and ``--range``.

:func:`grid_plan` and :func:`random_plan` make a :class:`SweepPlan`, every trial's
configuration checked before anything starts. The names a sweep may vary, their types
and the values they accept are :data:`logreg_mnist.config.HYPERPARAMETERS`, the
declarations of :class:`~logreg_mnist.config.TrainConfig`'s fields.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np

from ..config import HYPERPARAMETERS, TrainConfig, preset
from ..data.mnist import VALID_SIZE
from ..errors import ConfigError

FORMAT = "logreg-mnist-sweep/1"  # of sweep.json, the plan as a dict


@dataclass(frozen=True)
class DataSource:
    """Where a worker finds the data, and which data they must be.

    Attributes:
        data_dir: an absolute directory (or ``mnist.pkl.gz``) every worker can read,
            or None: each worker uses its own ``$LOGREG_MNIST_DATA_DIR`` or user cache,
            downloading MNIST there if needed.
        identity: the dataset's identity (``"mnist"`` or a fingerprint); a worker whose
            data differ refuses to train.
        valid_size: the last training images held out for validation.
    """

    data_dir: str | None
    identity: str
    valid_size: int = VALID_SIZE


@dataclass(frozen=True)
class Trial:
    """One candidate: its number (from 1), the swept settings and the whole configuration."""

    index: int
    settings: tuple[tuple[str, Any], ...]
    config: TrainConfig

    @property
    def name(self) -> str:
        """The run directory's name under ``trials/``, e.g. ``003-learning_rate=0.13-l2=0.0001``."""
        parts = [f"{self.index:03d}"] + [f"{k}={format_value(v)}" for k, v in self.settings]
        return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts))[:150]

    def describe(self) -> str:
        return " ".join(f"{k}={format_value(v)}" for k, v in self.settings) or "(fixed settings)"


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep runs: the fixed settings, the swept names and every trial.

    Attributes:
        base: the fixed settings (the preset with the fixed flags applied).
        swept: the TrainConfig fields that vary, in column order.
        trials: every trial, numbered from 1.
        data: where the workers find the data.
        train_options: extra keyword arguments of :func:`logreg_mnist.train.train`
            (an engine name, threads), the same for every trial.
        search: how the trials were made (kind, values, ranges, seed), for the record.
    """

    base: TrainConfig
    swept: tuple[str, ...]
    trials: tuple[Trial, ...]
    data: DataSource
    train_options: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "base": self.base.to_dict(),
            "swept": list(self.swept),
            "trials": [{"index": t.index, "name": t.name, "settings": dict(t.settings)} for t in self.trials],
            "data": {
                "data_dir": self.data.data_dir,
                "identity": self.data.identity,
                "valid_size": self.data.valid_size,
            },
            "train_options": self.train_options,
            "search": self.search,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepPlan:
        base = TrainConfig.from_dict(d["base"])
        swept = tuple(d["swept"])
        trials = tuple(
            Trial(t["index"], tuple((k, t["settings"][k]) for k in swept), base.replace(**t["settings"]))
            for t in d["trials"]
        )
        return cls(
            base,
            swept,
            trials,
            DataSource(**d["data"]),
            dict(d.get("train_options") or {}),
            dict(d.get("search") or {}),
        )


def format_value(value: Any) -> str:
    """A setting as shown in names and tables: floats in ``%g`` form (0.13, 1e-05)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


_ALIASES = {s.alias: name for name, s in HYPERPARAMETERS.items() if s.alias}  # lr -> learning_rate


def _field_name(text: str, where: str) -> str:
    """The TrainConfig field ``text`` names (``learning-rate``, ``lr``: ``learning_rate``), with a
    "did you mean" for a close misspelling, as train's flags have."""
    name = text.strip().replace("-", "_")
    name = _ALIASES.get(name, name)
    if name not in HYPERPARAMETERS:
        import difflib

        close = difflib.get_close_matches(name, list(HYPERPARAMETERS), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{where}: expected a TrainConfig field ({', '.join(HYPERPARAMETERS)}), found {text!r}{hint}")
    return name


def parse_value(name: str, text: str, where: str) -> Any:
    """``text`` as a value of the TrainConfig field ``name``, of its declared type (float, int, bool or str)."""
    typ = HYPERPARAMETERS[name].kind
    text = text.strip()
    try:
        if typ is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return lowered in ("true", "1", "yes", "on")
        if typ is int:
            return int(text)
        if typ is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if not text:
            raise ValueError
        return text
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a finite number"}.get(typ, "a non-empty word")
        raise ConfigError(f"{where}: {name} expects {kind}, found {text!r}") from None


def _check_value(base: TrainConfig, name: str, value: Any, where: str) -> None:
    try:
        base.replace(**{name: value})
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _name_and_body(spec: str, where: str, form: str) -> tuple[str, str]:
    """``NAME=BODY`` as (a TrainConfig field, BODY); ``form`` is what the flag expects."""
    if "=" not in spec:
        raise ConfigError(f"{where}: expected {form}, found no '='")
    raw_name, body = spec.split("=", 1)
    return _field_name(raw_name, where), body


def parse_grid(specs: Sequence[str], base: TrainConfig) -> list[tuple[str, list[Any]]]:
    """``NAME=V1,V2,...`` strings as (field, values), each value checked against ``base``.

    Raises:
        ConfigError: an unknown field, an empty list, a value out of range, a value or
            a field given twice.
    """
    axes: list[tuple[str, list[Any]]] = []
    for spec in specs:
        where = f"--grid {spec}"
        name, raw_values = _name_and_body(spec, where, "NAME=V1,V2,...")
        if any(name == n for n, _ in axes):
            raise ConfigError(f"{where}: {name} is already swept by another --grid")
        if raw_values.count(",") >= MAX_TRIALS:
            _check_size(raw_values.count(",") + 1, where[:60])
        texts = list(raw_values.split(","))
        if not raw_values.strip() or any(not v.strip() for v in texts):
            raise ConfigError(f"{where}: expected a comma-separated list of values, found an empty value")
        values = [parse_value(name, v, where) for v in texts]
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: expected distinct values, found one listed twice")
        for value in values:
            _check_value(base, name, value, where)
        axes.append((name, values))
    return axes


@dataclass(frozen=True)
class Range:
    """A numeric interval to sample: ``NAME=LOW:HIGH[:log]`` (integers for int fields)."""

    name: str
    low: float
    high: float
    log: bool = False

    def sample(self, rng: np.random.Generator) -> Any:
        if HYPERPARAMETERS[self.name].kind is int:
            if self.log:
                return int(
                    min(max(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))), self.low), self.high)
                )
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


def parse_ranges(specs: Sequence[str], base: TrainConfig) -> list[Range]:
    """``NAME=LOW:HIGH[:log]`` strings as :class:`Range` records, both ends checked."""
    ranges: list[Range] = []
    for spec in specs:
        where = f"--range {spec}"
        name, body = _name_and_body(spec, where, "NAME=LOW:HIGH[:log]")
        if HYPERPARAMETERS[name].kind not in (int, float):
            raise ConfigError(f"{where}: {name} is not numeric; list its values with --grid instead")
        parts = body.split(":")
        log = len(parts) == 3 and parts[2].strip() == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise ConfigError(f"{where}: expected NAME=LOW:HIGH or NAME=LOW:HIGH:log, found {body!r}")
        low, high = parse_value(name, parts[0], where), parse_value(name, parts[1], where)
        if not low < high:
            raise ConfigError(f"{where}: expected LOW < HIGH, found {low} and {high}")
        if log and low <= 0:
            raise ConfigError(f"{where}: a log range needs LOW > 0, found {low}")
        if any(r.name == name for r in ranges):
            raise ConfigError(f"{where}: {name} already has a --range")
        for value in (low, high):
            _check_value(base, name, value, where)
        ranges.append(Range(name, low, high, log))
    return ranges


MAX_TRIALS = 10_000  # trials in one sweep: days of work for a cluster, a plan of a few MB


def _check_size(n: int, flag: str) -> None:
    """Refuse a plan of ``n`` trials over :data:`MAX_TRIALS`, before it is built."""
    if n > MAX_TRIALS:
        raise ConfigError(
            f"{flag}: expected at most {MAX_TRIALS:,} trials in one sweep, found {n:,} trials; "
            "sweep fewer values, or split the search into several sweeps"
        )


def _plan(
    base: TrainConfig,
    swept: Sequence[str],
    settings: Sequence[Sequence[tuple[str, Any]]],
    data: DataSource,
    train_options: dict[str, Any],
    search: dict[str, Any],
) -> SweepPlan:
    trials = []
    for i, s in enumerate(settings, 1):
        try:
            config = base.replace(**dict(s))
        except ConfigError as e:
            raise ConfigError(f"trial {i} ({' '.join(f'{k}={v}' for k, v in s)}): {e}") from None
        trials.append(Trial(i, tuple(s), config))
    return SweepPlan(base, tuple(swept), tuple(trials), data, dict(train_options), search)


def grid_plan(
    base: TrainConfig, grid: Sequence[str], data: DataSource, train_options: dict[str, Any] | None = None
) -> SweepPlan:
    """Every combination of the ``--grid`` lists (the first list varies slowest)."""
    axes = parse_grid(grid, base)
    if not axes:
        raise ConfigError("--grid: expected at least one NAME=V1,V2,... (or --random N with --range)")
    names = [n for n, _ in axes]
    _check_size(math.prod(len(v) for _, v in axes), "--grid")
    combos = [tuple(zip(names, values)) for values in product(*(v for _, v in axes))]
    return _plan(base, names, combos, data, train_options or {}, {"kind": "grid", "grid": dict(axes)})


def random_plan(
    base: TrainConfig,
    n: int,
    seed: int,
    ranges: Sequence[str],
    data: DataSource,
    choices: Sequence[str] = (),
    train_options: dict[str, Any] | None = None,
) -> SweepPlan:
    """``n`` trials sampled with ``numpy.random.default_rng(seed)``: each ``--range``
    uniformly (log-uniformly with ``:log``), each ``--grid`` list as equally likely choices."""
    if n < 1:
        raise ConfigError(f"--random: expected a number of trials >= 1, found {n}")
    _check_size(n, "--random")
    parsed = parse_ranges(ranges, base)
    axes = parse_grid(choices, base)
    clash = {r.name for r in parsed} & {name for name, _ in axes}
    if clash:
        raise ConfigError(f"--range and --grid both give {', '.join(sorted(clash))}")
    if not parsed and not axes:
        raise ConfigError("--random: expected at least one --range NAME=LOW:HIGH[:log] or --grid NAME=V1,V2")
    rng = np.random.default_rng(seed)
    names = [r.name for r in parsed] + [name for name, _ in axes]
    settings = []
    for _ in range(n):
        s = [(r.name, r.sample(rng)) for r in parsed]
        s += [(name, values[int(rng.integers(len(values)))]) for name, values in axes]
        settings.append(tuple(s))
    return _plan(
        base,
        names,
        settings,
        data,
        train_options or {},
        {
            "kind": "random",
            "n": n,
            "seed": seed,
            "ranges": {r.name: [r.low, r.high, "log" if r.log else "uniform"] for r in parsed},
            "choices": dict(axes),
        },
    )


def make_plan(
    preset_name: str,
    fixed: dict[str, Any],
    *,
    grid: Sequence[str] = (),
    ranges: Sequence[str] = (),
    random: int | None = None,
    train_options: dict[str, Any] | None = None,
    data: DataSource | None = None,
) -> SweepPlan:
    """The plan the command line asks for: a grid, or ``random`` trials when given.

    Args:
        preset_name: the preset the fixed settings start from.
        fixed: TrainConfig fields given as fixed flags (None: not given). With
            ``random``, ``fixed["seed"]`` also seeds the draw (default 0).
        grid, ranges: ``NAME=V1,V2,...`` and ``NAME=LOW:HIGH[:log]`` strings.
        train_options: other ``train()`` keywords given (checked by :func:`train_options_for`).
        data: where the workers find the data (default: to be filled in once checked).

    Raises:
        ConfigError: anything wrong with the plan, before anything starts.
    """
    swept = [spec.split("=", 1)[0].strip().replace("-", "_") for spec in [*grid, *ranges]]
    swept = [_ALIASES.get(name, name) for name in swept]
    both = sorted({n for n in swept if fixed.get(n) is not None} - ({"seed"} if random is not None else set()))
    if both:
        raise ConfigError(f"{', '.join(both)}: given both as a fixed flag and as --grid/--range; keep one")
    if ranges and random is None:
        raise ConfigError("--range is for random search: add --random N")
    base = preset(preset_name, **fixed)
    options = train_options_for(train_options or {})
    data = data or DataSource(None, "")
    if random is not None:
        seed = 0 if fixed.get("seed") is None else fixed["seed"]
        return random_plan(base, random, seed, ranges, data, grid, options)
    return grid_plan(base, grid, data, options)


def train_options_for(given: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``given`` that :func:`logreg_mnist.train.train` accepts as keywords.

    Raises:
        ConfigError: a setting (not None) that ``train`` does not take.
    """
    import inspect

    from ..train import train

    accepted = set(inspect.signature(train).parameters) - {"data", "config", "out_dir", "reporter", "resume"}
    unknown = sorted(k for k, v in given.items() if v is not None and k not in accepted)
    if unknown:
        raise ConfigError(
            f"sweep cannot pass {', '.join('--' + k.replace('_', '-') for k in unknown)} "
            "to its trials: train() takes no such setting"
        )
    return {k: v for k, v in given.items() if v is not None}
