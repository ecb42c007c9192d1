"""``logreg-mnist data`` and ``logreg-mnist train``: find the data; train a run (or resume one)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

from ..config import HYPERPARAMETERS, TrainConfig, preset
from ..errors import EXIT_OK, ConfigError
from .loading import load_data, load_run_data
from .options import by_flag, hyperparameters_given


def cmd_data(args: argparse.Namespace) -> int:
    """fetch and verify MNIST, print where it is and a summary

    Find MNIST (downloading and verifying it if needed), print where the files are and a summary per
    split.
    """
    from ..data import resolve_data_dir

    directory, _ = resolve_data_dir(args.data_dir)
    start = time.perf_counter()
    data = load_data(args)  # first: a directory that cannot be used is an error, with nothing printed before it
    print(f"data directory: {directory}")
    print(data.summary())
    print(f"loaded in {time.perf_counter() - start:.2f} s")
    return EXIT_OK


def _new_run_dir() -> Path:
    base = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The configuration the flags ask for; a bad value is reported by its flag."""
    try:
        return preset(args.preset, dry_run=args.dry_run or None, **hyperparameters_given(args))
    except ConfigError as e:
        raise by_flag(e) from None


def _refuse_new_settings_on_resume(args: argparse.Namespace) -> None:
    """A resumed run keeps its own configuration: any setting given is refused, by its flag (valued
    flags alphabetically, then the on/off ones, then the run's own)."""
    given = [
        s.flag
        for s in sorted(HYPERPARAMETERS.values(), key=lambda s: (s.kind is bool, s.name))
        if getattr(args, s.name) is not None
    ]
    given += [
        flag
        for flag, on in (
            ("--preset", args.preset != "default"),
            ("--out", args.out),
            ("--dry-run", args.dry_run),
            ("--overwrite", args.overwrite),
        )
        if on
    ]
    if given:
        raise ConfigError("--resume continues a run with its own configuration; drop " + ", ".join(given))


def _warn_of_dropped_settings(out: Path, config: TrainConfig) -> None:
    """``--overwrite`` starts from the flags given, not from the run it replaces: say which of that
    run's settings change, so that a penalty left off the command line is not lost unawares."""
    from ..errors import LogregMnistError
    from ..train import load_run_config

    if not (out / "config.json").is_file():
        return
    try:
        old = load_run_config(out)
    except (LogregMnistError, ValueError):
        return  # a configuration that cannot be read: nothing to compare
    changed = [s for s in HYPERPARAMETERS.values() if getattr(old, s.name) != getattr(config, s.name)]
    if changed:
        was = ", ".join(f"{s.flag} {getattr(old, s.name)}" for s in changed)
        now = ", ".join(f"{s.flag} {getattr(config, s.name)}" for s in changed)
        print(
            f"warning: --overwrite: the run replaced in {out} had {was}; now {now} (give a flag again to keep its value)",
            file=sys.stderr,
        )


def cmd_train(args: argparse.Namespace) -> int:
    """train a model (the chapter's logistic_sgd by default)

    Train multinomial logistic regression with the chapter's early stopping. Flags left out take the
    preset's value.
    """
    from .. import persistence
    from ..data.stream import default_max_resident, parse_size
    from ..reporting import NORMAL, QUIET, VERBOSE, ConsoleReporter, percent
    from ..run import check_run_target
    from ..train import load_run_config, train

    # Every flag is checked before anything is read, created or computed.
    resumed: Path | None = None
    out: Path | None
    if args.resume:
        _refuse_new_settings_on_resume(args)
        resumed = check_run_target(args.resume, resume=True, what="--resume")
        config, out = load_run_config(resumed), resumed
    else:
        config = _train_config(args)
        out = Path(args.out) if args.out else None
        if out is not None:
            check_run_target(out, overwrite=args.overwrite, what="--out")
            if args.overwrite:
                _warn_of_dropped_settings(out, config)
        elif args.overwrite:
            raise ConfigError("--overwrite replaces the run in --out; give --out DIR")
    max_resident = parse_size(args.max_resident) if args.max_resident is not None else default_max_resident()
    data = (
        load_run_data(args, resumed, max_resident=max_resident)
        if resumed is not None
        else load_data(args, max_resident=max_resident)
    )
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    verbosity = QUIET if args.quiet else VERBOSE if args.verbose else NORMAL
    dry_scratch = config.dry_run and out is None
    scratch = tempfile.TemporaryDirectory(prefix="logreg-mnist-dry-run-") if dry_scratch else nullcontext()
    with scratch as tmp:
        run_dir = Path(tmp) if tmp is not None else (out or _new_run_dir())
        # the run directory is named once every check has passed and training starts
        reporter = ConsoleReporter(
            sys.stdout, progress=progress, verbosity=verbosity, heading=f"run directory: {run_dir}"
        )
        try:
            _, history = train(
                data,
                config,
                run_dir,
                reporter=reporter,
                resume=bool(args.resume),
                overwrite=args.overwrite,
                engine=args.engine,
                threads=args.threads,
                max_resident=max_resident,
            )
        except ConfigError as e:
            raise by_flag(e) from None
        if not dry_scratch:
            unit = "epoch" if config.optimizer == "sgd" else "iteration"
            print(
                f"best model: {run_dir / persistence.BEST} ({unit} {history.best_epoch}, validation error "
                f"{percent(history.best_valid_error, history.n_valid, 4)}, test error "
                f"{percent(history.test_error, history.n_test, 4)})"
            )
            print(f"history: {run_dir / persistence.HISTORY}")
    return EXIT_OK
