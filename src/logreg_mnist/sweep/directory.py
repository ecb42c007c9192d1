"""The sweep directory: its plan, its results table, the trials' run directories and ``best``.

A sweep directory holds::

    sweep.json          the plan (for --resume and for plots)
    trials.csv          one row per finished trial, rewritten atomically after each
    trials/NNN-.../     each trial's run directory, a normal run (plot, evaluate, predict)
    best                a link (or, without symlinks, a copy) to the chosen trial's run

Only the driver writes here; everything that reads a sweep (plots, tables) goes
through :func:`load_plan` and :func:`read_results`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from ..errors import ConfigError, safe_text
from .plan import FORMAT, SweepPlan, Trial, format_value

PLAN = "sweep.json"
TRIALS_CSV = "trials.csv"
TRIALS = "trials"
BEST = "best"
RESULT_COLUMNS = ("epochs", "valid_error", "test_error", "seconds", "worker", "status", "n_valid", "n_test")


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


def trials_csv(plan: SweepPlan, results: dict[str, dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", *plan.swept, *RESULT_COLUMNS])
    for trial in plan.trials:
        r = results.get(trial.name)
        if r is None:
            continue
        writer.writerow(
            [
                trial.name,
                *(repr(v) if isinstance(v, float) else format_value(v) for _, v in trial.settings),
                r["epochs"],
                _percent(r["valid_error"]),
                _percent(r["test_error"]),
                f"{r['seconds']:.3f}",
                r["worker"],
                r["status"],
                r.get("n_valid") or "",
                r.get("n_test") or "",
            ]
        )
    return buf.getvalue()


def _from_run(run_dir: Path) -> dict | None:
    """A finished trial's figures, read from its own run directory (None when it has none)."""
    from ..errors import LogregMnistError
    from ..run import load_history

    if not run_dir.is_dir() or run_dir.is_symlink():
        return None
    try:
        history = load_history(run_dir)
    except LogregMnistError:
        return None
    nll = [r.get("train_nll") for r in history.rows]
    diverged = not math.isfinite(history.best_valid_error) or any(
        not isinstance(x, (int, float)) or not math.isfinite(x) for x in nll
    )
    return {
        "epochs": history.epochs,
        "valid_error": math.nan if diverged else history.best_valid_error,
        "test_error": math.nan if diverged else history.test_error,
        "status": "diverged" if diverged else "ok",
        "n_valid": history.n_valid,  # the examples the errors are over
        "n_test": history.n_test,
    }


def read_results(sweep_dir: str | os.PathLike, plan: SweepPlan | None = None) -> dict[str, dict]:
    """The finished trials: trial name -> record (errors as fractions).

    ``trials.csv`` says which trials finished, when and where; their figures (epochs,
    errors, status) are read from each trial's own run directory, the record: an edited
    CSV changes no choice. A row whose trial has no readable run directory is not
    finished (``--resume`` runs it again).
    """
    sweep_dir = Path(sweep_dir)
    plan = plan or load_plan(sweep_dir)
    path = sweep_dir / TRIALS_CSV
    if not path.is_file():
        return {}
    names = {t.name for t in plan.trials}
    results = {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(enumerate(csv.DictReader(f), 2))
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: expected a UTF-8 CSV file, found a byte that is not UTF-8 at offset {e.start}"
        ) from None
    except (OSError, csv.Error) as e:
        raise ConfigError(f"{path}: cannot read the sweep's table: {e}") from None
    for n, row in rows:
        if row.get("trial") not in names:
            raise ConfigError(f"{path}:{n}: trial {safe_text(row.get('trial'))} is not in the sweep's plan")
        record = _from_run(sweep_dir / TRIALS / str(row["trial"]))
        if record is None:
            continue
        try:
            seconds = float(row.get("seconds") or "nan")
        except ValueError:
            seconds = math.nan
        results[row["trial"]] = {**record, "seconds": seconds, "worker": str(row.get("worker") or "")}
    return results


def ranking(plan: SweepPlan, results: dict[str, dict]) -> list[Trial]:
    """Finished trials, best validation error first (ties: the earlier trial); diverged last."""
    done = [t for t in plan.trials if t.name in results]

    def key(t: Trial):
        v = results[t.name]["valid_error"]
        return (0, v, t.index) if math.isfinite(v) else (1, 0.0, t.index)

    return sorted(done, key=key)


def publish_run(trials_dir: Path, name: str, files: dict[str, bytes]) -> Path:
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


def point_best(sweep_dir: Path, name: str) -> None:
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
