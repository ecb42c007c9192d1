"""Model selection as the chapter describes it, on a Dask cluster.

Each candidate (a learning rate, a penalty, a batch size, an initialisation, an
optimiser...) is trained on the same split with early stopping; candidates are
compared by their best validation error; only the chosen one's test error is
reported as the result.

The pieces:

* a :class:`SweepPlan` (fixed settings, the trials, where the data are), made by
  :func:`grid_plan` or :func:`random_plan` and validated before anything starts;
* :func:`run_trial`, a pure function of (configuration, data location, train
  options) run on a Dask worker: it trains into a scratch directory there and returns
  a small record holding the figures and the run directory's files;
* :func:`run_sweep`, the driver: submits the trials with ``Client.submit``, takes
  them in the order they finish (``as_completed``), and alone writes the sweep
  directory. The same code serves a local cluster and a remote scheduler, and no
  shared file system is assumed.

A sweep directory holds::

    sweep.json          the plan (for --resume and for plots)
    trials.csv          one row per finished trial, rewritten atomically after each
    trials/NNN-.../     each trial's run directory, a normal run (plot, evaluate, predict)
    best                a link (or, without symlinks, a copy) to the chosen trial's run

Dask and distributed are imported inside the functions that need them, so reading a
sweep (plots, tables) does not import them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np

from .config import TrainConfig
from .data.mnist import VALID_SIZE
from .errors import ClusterError, ConfigError, DataError, LogregMnistError, TrainingDivergedError
from .persistence import atomic_write_text

PLAN = "sweep.json"
TRIALS_CSV = "trials.csv"
TRIALS = "trials"
BEST = "best"
FORMAT = "logreg-mnist-sweep/1"
CONNECT_TIMEOUT_S = 5  # an unreachable scheduler is reported after this many seconds
KEY_PREFIX = "logreg-mnist-trial"

# The settings a sweep can vary: every TrainConfig field but dry_run.
FIELD_TYPES: dict[str, type] = {name: typ for name, typ in get_type_hints(TrainConfig).items() if name != "dry_run"}
RESULT_COLUMNS = ("epochs", "valid_error", "test_error", "seconds", "worker", "status")


# --------------------------------------------------------------------------- the plan


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
            "format": FORMAT, "base": self.base.to_dict(), "swept": list(self.swept),
            "trials": [{"index": t.index, "name": t.name, "settings": dict(t.settings)} for t in self.trials],
            "data": {"data_dir": self.data.data_dir, "identity": self.data.identity,
                     "valid_size": self.data.valid_size},
            "train_options": self.train_options, "search": self.search,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepPlan:
        base = TrainConfig.from_dict(d["base"])
        swept = tuple(d["swept"])
        trials = tuple(
            Trial(t["index"], tuple((k, t["settings"][k]) for k in swept), base.replace(**t["settings"]))
            for t in d["trials"])
        return cls(base, swept, trials, DataSource(**d["data"]), dict(d.get("train_options") or {}),
                   dict(d.get("search") or {}))


def format_value(value: Any) -> str:
    """A setting as shown in names and tables: floats in ``%g`` form (0.13, 1e-05)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _field_name(text: str, where: str) -> str:
    name = text.strip().replace("-", "_")
    if name not in FIELD_TYPES:
        raise ConfigError(f"{where}: expected a TrainConfig field ({', '.join(FIELD_TYPES)}), found {text!r}")
    return name


def parse_value(name: str, text: str, where: str) -> Any:
    """``text`` as a value of the TrainConfig field ``name`` (float, int, bool or str)."""
    typ = FIELD_TYPES[name]
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
        texts = [v for v in raw_values.split(",")]
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
        if FIELD_TYPES[self.name] is int:
            if self.log:
                return int(min(max(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))),
                                   self.low), self.high))
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
        if FIELD_TYPES[name] not in (int, float):
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


def _plan(base: TrainConfig, swept: Sequence[str], settings: Sequence[Sequence[tuple[str, Any]]],
          data: DataSource, train_options: dict[str, Any], search: dict[str, Any]) -> SweepPlan:
    trials = []
    for i, s in enumerate(settings, 1):
        try:
            config = base.replace(**dict(s))
        except ConfigError as e:
            raise ConfigError(f"trial {i} ({' '.join(f'{k}={v}' for k, v in s)}): {e}") from None
        trials.append(Trial(i, tuple(s), config))
    return SweepPlan(base, tuple(swept), tuple(trials), data, dict(train_options), search)


def grid_plan(base: TrainConfig, grid: Sequence[str], data: DataSource,
              train_options: dict[str, Any] | None = None) -> SweepPlan:
    """Every combination of the ``--grid`` lists (the first list varies slowest)."""
    axes = parse_grid(grid, base)
    if not axes:
        raise ConfigError("--grid: expected at least one NAME=V1,V2,... (or --random N with --range)")
    names = [n for n, _ in axes]
    combos = [tuple(zip(names, values)) for values in product(*(v for _, v in axes))]
    return _plan(base, names, combos, data, train_options or {},
                 {"kind": "grid", "grid": {n: v for n, v in axes}})


def random_plan(base: TrainConfig, n: int, seed: int, ranges: Sequence[str], data: DataSource,
                choices: Sequence[str] = (), train_options: dict[str, Any] | None = None) -> SweepPlan:
    """``n`` trials sampled with ``numpy.random.default_rng(seed)``: each ``--range``
    uniformly (log-uniformly with ``:log``), each ``--grid`` list as equally likely choices."""
    if n < 1:
        raise ConfigError(f"--random: expected a number of trials >= 1, found {n}")
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
    return _plan(base, names, settings, data, train_options or {},
                 {"kind": "random", "n": n, "seed": seed,
                  "ranges": {r.name: [r.low, r.high, "log" if r.log else "uniform"] for r in parsed},
                  "choices": {name: v for name, v in axes}})


def make_plan(preset_name: str, fixed: dict[str, Any], *, grid: Sequence[str] = (), ranges: Sequence[str] = (),
              random: int | None = None, train_options: dict[str, Any] | None = None,
              data: DataSource | None = None) -> SweepPlan:
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
    from .config import preset

    swept = [spec.split("=", 1)[0].strip().replace("-", "_") for spec in [*grid, *ranges]]
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

    from .train import train

    accepted = set(inspect.signature(train).parameters) - {"data", "config", "out_dir", "reporter", "resume"}
    unknown = sorted(k for k, v in given.items() if v is not None and k not in accepted)
    if unknown:
        raise ConfigError(f"sweep cannot pass {', '.join('--' + k.replace('_', '-') for k in unknown)} "
                          "to its trials: train() takes no such setting")
    return {k: v for k, v in given.items() if v is not None}


# --------------------------------------------------------------------------- one trial (on a worker)


_DATA_LOCK = threading.Lock()  # a worker with several threads loads the data once, not once per thread


@lru_cache(maxsize=2)
def _worker_dataset(data_dir: str | None, valid_size: int, max_resident: int | None = None):
    """The dataset, loaded once per worker process (later trials reuse it)."""
    from .data import load_mnist

    return load_mnist(data_dir, valid_size=valid_size, progress=False, max_resident=max_resident)


def data_loads() -> dict[str, int]:
    """How often this process loaded the data (``misses``) and reused it (``hits``)."""
    info = _worker_dataset.cache_info()
    return {"loads": info.misses, "reuses": info.hits}


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def run_trial(config: dict[str, Any], data: DataSource, train_options: dict[str, Any] | None = None) -> dict:
    """Train one candidate in a scratch directory; return its figures and its run's files.

    A pure function of its arguments: the same configuration and data give the same
    figures on any worker (the training itself is deterministic).

    Args:
        config: a :class:`TrainConfig` as a dict.
        data: where to find the data, and their identity.
        train_options: extra keyword arguments of :func:`logreg_mnist.train.train`.

    Returns:
        ``epochs``, ``valid_error`` and ``test_error`` (fractions; NaN when the run
        diverged), ``seconds`` (training wall time), ``worker``, ``status`` ("ok" or
        "diverged") and ``files``: {path relative to the run directory: bytes}.

    Raises:
        DataError: the worker's data are not the dataset the plan names.
    """
    from .persistence import HISTORY, read_history
    from .train import train

    try:
        with _DATA_LOCK:
            dataset = _worker_dataset(data.data_dir, data.valid_size, (train_options or {}).get("max_resident"))
    except DataError as e:
        raise DataError(f"worker {_worker_name()}: {e}") from None
    if dataset.identity != data.identity:
        raise DataError(f"worker {_worker_name()}: the data at {dataset.source} are {dataset.identity}, "
                        f"expected {data.identity}; give every worker the same files (--data-dir)")
    cfg = TrainConfig.from_dict(config)
    with tempfile.TemporaryDirectory(prefix="logreg-mnist-trial-") as tmp:
        start = time.perf_counter()
        try:
            # one compute thread per trial unless asked: the workers are processes, one per core
            options = {"threads": 1, **(train_options or {})}
            _, history = train(dataset, cfg, tmp, **options)
            status, epochs = "ok", history.epochs
            valid_error, test_error = history.best_valid_error, history.test_error
        except TrainingDivergedError:
            rows = read_history(tmp) if (Path(tmp) / HISTORY).is_file() else []
            status, epochs, valid_error, test_error = "diverged", (rows[-1]["epoch"] if rows else 0), math.nan, math.nan
        seconds = time.perf_counter() - start
        files = {p.relative_to(tmp).as_posix(): p.read_bytes()  # hidden names: scratch and lock files
                 for p in sorted(Path(tmp).rglob("*")) if p.is_file() and not p.name.startswith(".")}
    return {"epochs": epochs, "valid_error": valid_error, "test_error": test_error, "seconds": seconds,
            "worker": _worker_name(), "status": status, "files": files}


# --------------------------------------------------------------------------- the sweep directory


def new_sweep_dir(base: str | os.PathLike = "sweeps") -> Path:
    """A new ``sweeps/YYYYmmdd-HHMMSS`` (with a suffix if taken)."""
    path = Path(base) / datetime.now().strftime("%Y%m%d-%H%M%S")
    stem, n = path, 1
    while path.exists():
        n += 1
        path = stem.with_name(f"{stem.name}-{n}")
    return path


def is_sweep_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / PLAN).is_file()


def load_plan(sweep_dir: str | os.PathLike) -> SweepPlan:
    path = Path(sweep_dir) / PLAN
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("format") != FORMAT:
            raise ValueError(f"expected format {FORMAT}, found {d.get('format')!r}")
        return SweepPlan.from_dict(d)
    except FileNotFoundError:
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no {PLAN})") from None
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the sweep's plan: {e}") from None


def _percent(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x * 100:f}"


def _csv_rows(plan: SweepPlan, results: dict[str, dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", *plan.swept, *RESULT_COLUMNS])
    for trial in plan.trials:
        r = results.get(trial.name)
        if r is None:
            continue
        writer.writerow([trial.name, *(repr(v) if isinstance(v, float) else format_value(v)
                                       for _, v in trial.settings),
                         r["epochs"], _percent(r["valid_error"]), _percent(r["test_error"]),
                         f"{r['seconds']:.3f}", r["worker"], r["status"]])
    return buf.getvalue()


def read_results(sweep_dir: str | os.PathLike, plan: SweepPlan | None = None) -> dict[str, dict]:
    """The finished trials in ``trials.csv``: trial name -> record (errors as fractions)."""
    sweep_dir = Path(sweep_dir)
    plan = plan or load_plan(sweep_dir)
    path = sweep_dir / TRIALS_CSV
    if not path.is_file():
        return {}
    names = {t.name for t in plan.trials}
    results = {}
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            if row.get("trial") not in names:
                raise ConfigError(f"{path}:{n}: trial {row.get('trial')!r} is not in the sweep's plan")
            try:
                results[row["trial"]] = {
                    "epochs": int(row["epochs"]),
                    "valid_error": float(row["valid_error"]) / 100 if row["valid_error"] else math.nan,
                    "test_error": float(row["test_error"]) / 100 if row["test_error"] else math.nan,
                    "seconds": float(row["seconds"]), "worker": row["worker"], "status": row["status"]}
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"{path}:{n}: malformed row: {e}") from None
    return results


def ranking(plan: SweepPlan, results: dict[str, dict]) -> list[Trial]:
    """Finished trials, best validation error first (ties: the earlier trial); diverged last."""
    done = [t for t in plan.trials if t.name in results]

    def key(t: Trial):
        v = results[t.name]["valid_error"]
        return (0, v, t.index) if math.isfinite(v) else (1, 0.0, t.index)

    return sorted(done, key=key)


def _publish_run(trials_dir: Path, name: str, files: dict[str, bytes]) -> Path:
    """Write a trial's files into a scratch directory beside the target, then rename it."""
    trials_dir.mkdir(parents=True, exist_ok=True)
    final = trials_dir / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=trials_dir))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for rel, content in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        if final.exists():  # left by a driver stopped before it wrote the trial's row
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _point_best(sweep_dir: Path, name: str) -> None:
    """Make ``best`` a relative symlink to ``trials/<name>`` (a copy where symlinks fail)."""
    link, tmp = sweep_dir / BEST, sweep_dir / f".{BEST}.tmp"
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.exists():
        shutil.rmtree(tmp)
    try:
        os.symlink(Path(TRIALS) / name, tmp, target_is_directory=True)
    except OSError:
        shutil.copytree(sweep_dir / TRIALS / name, tmp)
    # a link replaces a link atomically; a rename cannot replace a directory, nor put one over a link
    if link.is_symlink() and not tmp.is_symlink():
        link.unlink()
    elif link.exists() and not link.is_symlink():
        shutil.rmtree(link)
    os.replace(tmp, link)


# --------------------------------------------------------------------------- the driver


@dataclass
class SweepResult:
    """What a sweep finished: per trial name its record, the ranking, and the failures."""

    plan: SweepPlan
    directory: Path
    results: dict[str, dict]
    failed: dict[str, str]

    @property
    def ranked(self) -> list[Trial]:
        return ranking(self.plan, self.results)

    @property
    def best(self) -> Trial | None:
        ranked = [t for t in self.ranked if self.results[t.name]["status"] == "ok"]
        return ranked[0] if ranked else None


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT meanwhile (in the main thread only; elsewhere nothing changes)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_address(address: str) -> None:
    """Refuse an address Dask cannot parse before a client is made for it."""
    from distributed.comm import parse_address
    from distributed.comm.registry import backends

    try:
        scheme, location = parse_address(address)
    except (ValueError, TypeError) as e:
        raise ClusterError(f"--scheduler {address}: expected an address like tcp://host:8786, found {e}") from None
    if scheme not in backends or not location:
        raise ClusterError(f"--scheduler {address}: expected an address like tcp://host:8786 (schemes: "
                           f"{', '.join(sorted(backends))}), found {address!r}")
    if scheme in ("tcp", "tls"):
        from distributed.comm.addressing import parse_host_port

        try:
            parse_host_port(location)
        except ValueError:
            raise ClusterError(f"--scheduler {address}: expected an address like tcp://host:8786, found no "
                               "port") from None


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to the scheduler at ``scheduler``, or to a new local cluster
    of ``n_workers`` single-threaded worker processes on 127.0.0.1, closed on exit.

    Raises:
        ClusterError: the scheduler cannot be reached within ``CONNECT_TIMEOUT_S`` seconds.
    """
    import logging

    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        _check_address(scheduler)
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            raise ClusterError(
                f"--scheduler {scheduler}: cannot reach a Dask scheduler there within {CONNECT_TIMEOUT_S} s "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no answer'}); start one with "
                "`dask scheduler` and workers with `dask worker ADDRESS`") from None
    else:
        # Worker processes inherit an ignored SIGINT: a terminal's Ctrl-C reaches the driver alone, which
        # then stops them. No dashboard; the scheduler's small HTTP server on a free port, not on 8787.
        with _sigint_ignored():
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   silence_logs=logging.ERROR)
        client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def local_worker_count() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _trial_line(plan: SweepPlan, trial: Trial, r: dict) -> str:
    unit = "epochs" if trial.config.optimizer == "sgd" else "iterations"
    if r["status"] != "ok":
        return (f"trial {trial.index}/{len(plan.trials)} {trial.describe()}: {r['status']} after {r['epochs']} "
                f"{unit}, {r['seconds']:.1f} s, on {r['worker']}")
    # the chapter's protocol: trials are compared by validation error; only the chosen one's test error is shown
    return (f"trial {trial.index}/{len(plan.trials)} {trial.describe()}: {r['epochs']} {unit}, best validation "
            f"error {r['valid_error'] * 100:f} %, {r['seconds']:.1f} s, on {r['worker']}")


def summary_table(result: SweepResult) -> str:
    """The finished trials sorted by validation error, as aligned text (test errors, which must not
    guide the choice, are left to ``trials.csv``)."""
    plan = result.plan
    header = ["trial", *plan.swept, "epochs", "valid %", "seconds", "worker"]
    rows = []
    for t in result.ranked:
        r = result.results[t.name]
        settings = dict(t.settings)
        rows.append([f"{t.index:03d}", *(format_value(settings[k]) for k in plan.swept), str(r["epochs"]),
                     f"{r['valid_error'] * 100:.6f}" if r["status"] == "ok" else r["status"],
                     f"{r['seconds']:.1f}", r["worker"]])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *rows])


def run_sweep(
    plan: SweepPlan,
    out_dir: str | os.PathLike,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    resume: bool = False,
    echo: Callable[[str], None] = print,
) -> SweepResult:
    """Run the plan's missing trials on Dask and record each as it finishes.

    Args:
        plan: the trials (``sweep.json`` of ``out_dir`` when resuming).
        out_dir: the sweep directory (see the module's docstring).
        scheduler: a Dask scheduler address (``tcp://host:8786``); None starts a local
            cluster of ``n_workers`` processes (default: one per CPU, at most one per trial).
        resume: ``out_dir`` holds this plan already; only trials without a row run.
        echo: receives one line per finished trial and the progress messages.

    Returns:
        A :class:`SweepResult`; trials that failed (not diverged: their worker was
        lost too often, or a bug) have no row and are listed in ``failed``.

    Raises:
        ClusterError: the scheduler cannot be reached.
        LogregMnistError: a worker's data are not the plan's (the sweep stops).
        KeyboardInterrupt: after the finished trials are recorded and the cluster closed.
    """
    out = Path(out_dir)
    if resume:
        results = read_results(out, plan)
    elif (out / PLAN).exists():
        raise ConfigError(f"{out} already holds a sweep; continue it with --resume {out} or choose another --out")
    else:
        results = {}
    result = SweepResult(plan, out, results, {})
    todo = [t for t in plan.trials if t.name not in results]
    if resume:
        echo(f"{len(results)} of {len(plan.trials)} trials already finished; running {len(todo)}")
    if not todo:
        return result

    from distributed import as_completed

    n_workers = None if scheduler else min(n_workers or local_worker_count(), len(todo))
    with dask_client(scheduler, n_workers) as client:
        if not resume:  # the directory is made once the cluster is there
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / PLAN, json.dumps(plan.to_dict(), indent=2) + "\n")
        where = scheduler or f"a local cluster of {n_workers} worker process{'es' if n_workers > 1 else ''}"
        echo(f"sweep directory: {out}; {len(todo)} trial{'s' if len(todo) > 1 else ''} on {where}")
        if scheduler and not client.scheduler_info().get("workers"):
            echo(f"waiting for a worker to join {scheduler} (start one with: dask worker {scheduler})")
        token = os.urandom(4).hex()
        futures = {client.submit(run_trial, t.config.to_dict(), plan.data, plan.train_options,
                                 key=f"{KEY_PREFIX}-{t.name}-{token}"): t for t in todo}
        try:
            for future in as_completed(list(futures), loop=client.loop):
                trial = futures.pop(future)
                try:
                    record = future.result()
                except LogregMnistError:
                    client.cancel(list(futures))
                    raise
                except Exception as e:  # noqa: BLE001 -- a lost worker too often (KilledWorker), or a bug
                    result.failed[trial.name] = f"{type(e).__name__}: {e}"
                    echo(f"trial {trial.index}/{len(plan.trials)} {trial.describe()}: failed ({type(e).__name__}: {e})")
                    continue
                finally:
                    future.release()
                _publish_run(out / TRIALS, trial.name, record.pop("files"))
                results[trial.name] = record
                atomic_write_text(out / TRIALS_CSV, _csv_rows(plan, results))
                if result.best is not None:
                    _point_best(out, result.best.name)
                echo(_trial_line(plan, trial, record))
        except KeyboardInterrupt:
            client.cancel(list(futures))
            echo(f"interrupted: {len(results)} of {len(plan.trials)} trials finished and kept in "
                 f"{out / TRIALS_CSV}; continue with: logreg-mnist sweep --resume {out}")
            raise
    return result


def chosen_line(result: SweepResult) -> str:
    best = result.best
    if best is None:
        return "no trial finished without diverging: nothing chosen"
    r = result.results[best.name]
    return (f"chosen: trial {best.index} ({best.describe()}): validation error {r['valid_error'] * 100:f} %, "
            f"test error of its best model {r['test_error'] * 100:f} % ({result.directory / BEST})")


__all__ = [
    "DataSource", "Range", "SweepPlan", "SweepResult", "Trial", "chosen_line", "dask_client", "data_loads",
    "format_value", "grid_plan", "is_sweep_dir", "load_plan", "make_plan", "new_sweep_dir", "parse_grid", "parse_ranges",
    "random_plan", "ranking", "read_results", "run_sweep", "run_trial", "summary_table", "train_options_for",
]
