"""``logreg-mnist sweep``: check the plan, the data and the run-time options, then run the trials on Dask."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import EXIT_FAILURE, EXIT_OK, ConfigError, show_path
from .loading import load_data
from .options import by_flag, fixed_flags_given, hyperparameters_given, train_keywords


def _new_plan(args: argparse.Namespace, out: Path):
    """The plan the flags ask for, its data and run-time options checked, before any cluster starts."""
    from .. import sweep
    from .._paths import check_output_dir
    from ..data import resolve_data_dir
    from ..engines import make_engine
    from ..run import RunDir

    options = train_keywords(args)  # an engine, threads... go to train() when given
    if options.get("max_resident") is not None:
        from ..data.stream import parse_size

        options["max_resident"] = parse_size(options["max_resident"])
    plan = sweep.make_plan(
        args.preset,
        hyperparameters_given(args),
        grid=args.grid,
        ranges=args.ranges,
        random=args.random,
        train_options=options,
    )
    check_output_dir(out, "--out")
    if RunDir(out).holds_run():
        raise ConfigError(f"--out {show_path(out)}: expected a new or sweep directory, found a training run")
    # the plan is valid: the driver checks the data (downloading them if needed) before any worker starts
    data = load_data(args, max_resident=options.get("max_resident"))
    directory, _ = resolve_data_dir(args.data_dir)
    plan = replace(plan, data=sweep.DataSource(str(directory.resolve()) if args.data_dir else None, data.identity))
    # and the trials' run-time options (engine, threads, memory budget) before the cluster starts
    try:
        make_engine(
            options.get("engine", "auto"),
            data,
            plan.trials[0].config,
            threads=options.get("threads"),
            max_resident=options.get("max_resident"),
        )
    except ConfigError as e:
        raise by_flag(e) from None
    return plan


def cmd_sweep(args: argparse.Namespace) -> int:
    """train many candidates on a Dask cluster and choose by validation error

    Model selection as the chapter describes it: train every candidate on the same split with early
    stopping, compare them by their best validation error, report the test error of the chosen one.
    Trials run on a Dask cluster: a local one, or --scheduler ADDRESS. The fixed settings take
    train's flags.
    """
    from .. import sweep
    from ..run import RunDir

    if args.workers is not None and (args.workers < 1 or args.scheduler):
        raise ConfigError(
            "--workers: expected a number >= 1, for the local cluster only (with --scheduler, "
            f"start workers with `dask worker ADDRESS`), found {args.workers}"
        )
    if args.resume:
        given = fixed_flags_given(args)
        given += [
            flag
            for flag, v in (
                ("--grid", args.grid),
                ("--range", args.ranges),
                ("--random", args.random),
                ("--out", args.out),
            )
            if v
        ]
        if given:
            raise ConfigError(f"--resume continues a sweep with its own plan; drop {', '.join(given)}")
        out, plan, resume = Path(args.resume), sweep.load_plan(args.resume), True
    else:
        out, resume = (Path(args.out) if args.out else sweep.new_sweep_dir()), False
        plan = _new_plan(args, out)
    with RunDir(out).owned():  # one sweep per directory at a time, as one run per run directory
        result = sweep.run_sweep(plan, out, scheduler=args.scheduler, n_workers=args.workers, resume=resume)
    print()
    print(sweep.summary_table(result))
    print(sweep.chosen_line(result))
    if result.failed:
        print(
            f"{len(result.failed)} trial(s) failed and have no row; run them with: logreg-mnist sweep --resume {out}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK
