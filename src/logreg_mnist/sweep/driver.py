"""The sweep's driver: submits the trials, records each as it finishes, and its printed lines.

:func:`run_sweep` submits the trials with ``Client.submit``, takes them in the order
they finish (``as_completed``), and alone writes the sweep directory. The same code
serves a local cluster and a remote scheduler, and no shared file system is assumed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, LogregMnistError
from ..persistence import atomic_write_text
from ..reporting import percent
from .cluster import dask_client, local_worker_count
from .directory import BEST, PLAN, TRIALS, TRIALS_CSV, point_best, publish_run, ranking, read_results, trials_csv
from .plan import SweepPlan, Trial, format_value
from .trial import run_trial

KEY_PREFIX = "logreg-mnist-trial"


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


def _trial_line(plan: SweepPlan, trial: Trial, r: dict) -> str:
    unit = "epochs" if trial.config.optimizer == "sgd" else "iterations"
    if r["status"] != "ok":
        return (
            f"trial {trial.index}/{len(plan.trials)} {trial.describe()}: {r['status']} after {r['epochs']} "
            f"{unit}, {r['seconds']:.1f} s, on {r['worker']}"
        )
    # the chapter's protocol: trials are compared by validation error; only the chosen one's test error is shown
    return (
        f"trial {trial.index}/{len(plan.trials)} {trial.describe()}: {r['epochs']} {unit}, best validation "
        f"error {percent(r['valid_error'], r.get('n_valid'))}, {r['seconds']:.1f} s, on {r['worker']}"
    )


def summary_table(result: SweepResult) -> str:
    """The finished trials sorted by validation error, as aligned text (test errors, which must not
    guide the choice, are left to ``trials.csv``)."""
    plan = result.plan
    header = ["trial", *plan.swept, "epochs", "validation error", "seconds", "worker"]
    rows = []
    for t in result.ranked:
        r = result.results[t.name]
        settings = dict(t.settings)
        rows.append(
            [
                f"{t.index:03d}",
                *(format_value(settings[k]) for k in plan.swept),
                str(r["epochs"]),
                percent(r["valid_error"], r.get("n_valid")) if r["status"] == "ok" else r["status"],
                f"{r['seconds']:.1f}",
                r["worker"],
            ]
        )
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
        where = scheduler or f"a local cluster of {n_workers} worker process{'es' if (n_workers or 0) > 1 else ''}"
        echo(f"sweep directory: {out}; {len(todo)} trial{'s' if len(todo) > 1 else ''} on {where}")
        if scheduler and not client.scheduler_info().get("workers"):
            echo(f"waiting for a worker to join {scheduler} (start one with: dask worker {scheduler})")
        token = os.urandom(4).hex()
        futures = {
            client.submit(
                run_trial, t.config.to_dict(), plan.data, plan.train_options, key=f"{KEY_PREFIX}-{t.name}-{token}"
            ): t
            for t in todo
        }
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
                publish_run(out / TRIALS, trial.name, record.pop("files"))
                results[trial.name] = record
                atomic_write_text(out / TRIALS_CSV, trials_csv(plan, results))
                if result.best is not None:
                    point_best(out, result.best.name)
                echo(_trial_line(plan, trial, record))
        except KeyboardInterrupt:
            client.cancel(list(futures))
            # trials.csv exists once a trial has finished: the line names only what is there
            kept = f"kept in {out / TRIALS_CSV}" if results else "none kept yet"
            echo(
                f"interrupted: {len(results)} of {len(plan.trials)} trials finished, {kept}; "
                f"continue with: logreg-mnist sweep --resume {out}"
            )
            raise
    return result


def chosen_line(result: SweepResult) -> str:
    best = result.best
    if best is None:
        return "no trial finished without diverging: nothing chosen"
    r = result.results[best.name]
    return (
        f"chosen: trial {best.index} ({best.describe()}): validation error {percent(r['valid_error'], r.get('n_valid'))}, "
        f"test error of its best model {percent(r['test_error'], r.get('n_test'))} ({result.directory / BEST})"
    )
