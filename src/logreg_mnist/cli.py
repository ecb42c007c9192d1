"""The ``logreg-mnist`` command: parse, build a config, call the library, return an exit code.

Exit codes: 0 success, 1 the run failed (diverged), 2 user error (bad flag, bad
file, no data), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

from . import __version__
from .config import PRESETS, TrainConfig, preset
from .errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, ConfigError, LogregMnistError

_DEFAULTS = TrainConfig()

# (flag, config field, type, help): every hyperparameter, help showing its default.
_HYPERPARAMETERS = [
    ("--optimizer", "optimizer", str, "sgd: the chapter's minibatch SGD; cg or lbfgs: full-batch SciPy "
     "(logistic_cg.py)"),
    ("--learning-rate", "learning_rate", float, "SGD step size"),
    ("--batch-size", "batch_size", int, "examples per minibatch"),
    ("--n-epochs", "n_epochs", int, "most epochs to run; early stopping usually ends sooner"),
    ("--patience", "patience", int, "minibatches to look at regardless of progress"),
    ("--patience-increase", "patience_increase", float, "on a significant new best, wait until iteration * this"),
    ("--improvement-threshold", "improvement_threshold", float,
     "a new best below best * this counts as significant"),
    ("--l1", "l1", float, "coefficient of the L1 penalty sum|W|"),
    ("--l2", "l2", float, "coefficient of the squared L2 penalty sum W^2"),
    ("--init", "init", str, "initial W: zeros (the chapter) or random (small normal values)"),
    ("--seed", "seed", int, "seed of the random init"),
    ("--max-iter", "max_iter", int, "iterations of cg / lbfgs"),
    ("--snapshot-every", "snapshot_every", int, "save an intermediate model every N epochs (0: never)"),
    ("--dtype", "dtype", str, "SGD arithmetic precision: float32 or float64"),
]
_CHOICES = {"optimizer": ["sgd", "cg", "lbfgs"], "init": ["zeros", "random"], "dtype": ["float32", "float64"]}


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="directory with the four MNIST-style IDX files, or a mnist.pkl.gz file "
                        "(default: $LOGREG_MNIST_DATA_DIR, else the user cache, downloading if needed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logreg-mnist",
        description="Multinomial logistic regression on MNIST, after the Deep Learning Tutorials.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("data", help="fetch and verify MNIST, print where it is and a summary",
                       description="Find MNIST (downloading and verifying it if needed), print where the "
                                   "files are and a summary per split.")
    _add_data_dir(p)
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a model (the chapter's logistic_sgd by default)",
                       description="Train multinomial logistic regression with the chapter's early stopping. "
                                   "Flags left out take the preset's value.")
    p.add_argument("--preset", choices=list(PRESETS), default="default",
                   help="default: every example is used; tutorial: the chapter exactly (partial minibatches "
                        "dropped, its printed lines and its published result) (default: default)")
    for flag, name, typ, text in _HYPERPARAMETERS:
        p.add_argument(flag, dest=name, type=typ, default=None, choices=_CHOICES.get(name),
                       help=f"{text} (default: {getattr(_DEFAULTS, name)})")
    p.add_argument("--drop-last", dest="drop_last", action=argparse.BooleanOptionalAction, default=None,
                   help="drop the examples that do not fill a whole minibatch (default: off; on with "
                        "--preset tutorial)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="run directory for the best model, history and checkpoints "
                        "(default: a new runs/YYYYmmdd-HHMMSS)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run in DIR with its own configuration")
    p.add_argument("--dry-run", action="store_true",
                   help="run one minibatch end to end (into a temporary directory unless --out is given)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict digits with a saved model",
                       description="Without inputs: the predicted labels of the first 10 test digits, as the "
                                   "chapter's predict(). With inputs: a label and its probability per image.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file or a run directory")
    p.add_argument("inputs", metavar="INPUT", nargs="*",
                   help="PNG/JPEG images, IDX image files or .npy arrays (see the README for the rules)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    _add_data_dir(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="validation and test error of a saved model, per class too",
                       description="Print the validation and test error over every example and the test "
                                   "error per class.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file or a run directory")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    _add_data_dir(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plot", help="draw weights, learning curves, confusion matrix and mistakes as PNG files",
                       description="Draw the pictures of a run directory (or of one model file) as PNG files "
                                   "and print their paths.")
    p.add_argument("target", metavar="RUN_OR_MODEL", help="a run directory or a .safetensors model file")
    p.add_argument("--out", metavar="DIR", default=None, help="where to write (default: plots/ beside the model)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("digits", help="draw a grid of sample digits from a split",
                       description="Write a PNG grid of digits: the first N of a split, or N of one class.")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test", help="split (default: test)")
    p.add_argument("-n", type=int, default=50, help="how many digits (default: 50)")
    p.add_argument("--digit", type=int, default=None, help="only digits of this class (default: all classes)")
    p.add_argument("--out", metavar="FILE", default="digits.png", help="PNG file to write (default: digits.png)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_digits)

    _add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LogregMnistError as e:
        print(f"logreg-mnist {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"logreg-mnist {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _load_data(args, *, download: bool = True):
    from .data import load_mnist

    return load_mnist(args.data_dir, download=download, progress=True)


def cmd_data(args) -> int:
    from .data import resolve_data_dir

    directory, _ = resolve_data_dir(args.data_dir)
    print(f"data directory: {directory}")
    start = time.perf_counter()
    data = _load_data(args, download=not args.no_download)
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


def cmd_train(args) -> int:
    from . import persistence as io
    from .reporting import ConsoleReporter
    from .train import load_run_config, train

    overrides = {name: getattr(args, name) for _, name, _, _ in _HYPERPARAMETERS}
    overrides["drop_last"] = args.drop_last
    if args.resume:
        given = sorted(k for k, v in overrides.items() if v is not None)
        if given or args.preset != "default" or args.out or args.dry_run:
            raise ConfigError("--resume continues a run with its own configuration; drop "
                              + ", ".join(["--" + k.replace("_", "-") for k in given]
                                          + (["--preset"] if args.preset != "default" else [])
                                          + (["--out"] if args.out else [])
                                          + (["--dry-run"] if args.dry_run else [])))
        out = Path(args.resume)
        config = load_run_config(out)
    else:
        config = preset(args.preset, dry_run=args.dry_run or None, **overrides)
        out = Path(args.out) if args.out else None
        if out is not None and (out / io.CONFIG).exists():
            raise ConfigError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    data = _load_data(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    reporter = ConsoleReporter(sys.stdout, progress=progress)
    dry_scratch = config.dry_run and out is None
    scratch = tempfile.TemporaryDirectory(prefix="logreg-mnist-dry-run-") if dry_scratch else nullcontext()
    with scratch as tmp:
        out = Path(tmp) if dry_scratch else (out or _new_run_dir())
        print(f"run directory: {out}")
        _, history = train(data, config, out, reporter=reporter, resume=bool(args.resume))
        if not dry_scratch:
            unit = "epoch" if config.optimizer == "sgd" else "iteration"
            print(f"best model: {out / io.BEST} ({unit} {history.best_epoch}, validation error "
                  f"{history.best_valid_error * 100:.4f} %, test error {history.test_error * 100:.4f} %)")
            print(f"history: {out / io.HISTORY}")
    return EXIT_OK


def _load_model(path):
    from .persistence import load_model

    return load_model(path)


def cmd_predict(args) -> int:
    import numpy as np

    from .predict import predict_files

    model, _ = _load_model(args.model)
    if not args.inputs:
        data = _load_data(args)
        predicted = model.predict(data.test.images[:10])
        if args.json:
            print(json.dumps({"predicted": predicted.tolist(), "true": data.test.labels[:10].tolist()}))
        else:
            print("Predicted values for the first 10 examples in test set:")
            print(np.array2string(predicted))
        return EXIT_OK
    results = predict_files(model, args.inputs)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        width = max(len(r.input) for r in results)
        for r in results:
            print(f"{r.input:<{width}}  {r.label}  (probability {r.probability:.4f})")
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from .predict import evaluate

    model, meta = _load_model(args.model)
    data = _load_data(args)
    if meta.get("dataset") not in (None, data.identity):
        print(f"note: the model was trained on {meta['dataset']}, evaluating on {data.identity}", file=sys.stderr)
    report = evaluate(model, data)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    for name in ("valid", "test"):
        r = report[name]
        print(f"{name:<5} error {r['error'] * 100:8.4f} %  ({r['wrong']:,} of {r['n']:,})")
    print("\ntest error per class:")
    print("  class       n   wrong    error")
    for c in report["test"]["per_class"]:
        err = "-" if c["error"] is None else f"{c['error'] * 100:7.3f} %"
        print(f"  {c['label']:>5}  {c['n']:>6,}  {c['wrong']:>6,}  {err:>9}")
    return EXIT_OK


def cmd_plot(args) -> int:
    from .plots import plot_run

    data = _load_data(args)
    for path in plot_run(args.target, data, args.out):
        print(path)
    return EXIT_OK


def cmd_digits(args) -> int:
    import numpy as np

    from .plots import digits_figure, save_figure

    if args.n < 1:
        raise ConfigError(f"-n: expected a number of digits >= 1, found {args.n}")
    data = _load_data(args)
    split = data.split(args.split)
    if args.digit is None:
        indices = np.arange(min(args.n, len(split)))
        title = f"The first {len(indices)} {args.split} digits"
    else:
        if not 0 <= args.digit < data.n_classes:
            raise ConfigError(f"--digit: expected a class in 0-{data.n_classes - 1}, found {args.digit}")
        indices = np.flatnonzero(split.labels == args.digit)[: args.n]
        title = f"The first {len(indices)} {args.split} digits labelled {args.digit}"
    fig = digits_figure(split.images[indices], split.labels[indices], indices=indices, title=title)
    print(save_figure(fig, args.out))
    return EXIT_OK


# train's flags that make no sense for a sweep; every other train flag is a fixed setting of the sweep
_TRAIN_ONLY = {"help", "out", "resume", "dry_run", "progress"}


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="train many candidates on a Dask cluster and choose by validation error",
        description="Model selection as the chapter describes it: train every candidate on the same split with "
                    "early stopping, compare them by their best validation error, report the test error of the "
                    "chosen one. Trials run on a Dask cluster: a local one, or --scheduler ADDRESS. The fixed "
                    "settings take train's flags.")
    # train's own flags, shared (argparse's `parents` mechanism, minus train-only flags), so every flag
    # train has is a fixed setting here
    shared = [a for a in sub.choices["train"]._actions if a.dest not in _TRAIN_ONLY]
    for action in shared:
        p._add_action(action)
    p.add_argument("--grid", metavar="NAME=V1,V2,...", action="append", default=[],
                   help="values of a TrainConfig field (learning_rate, l2, batch_size, optimizer, ...); repeat "
                        "for a grid of their product; with --random, choices drawn uniformly")
    p.add_argument("--random", metavar="N", type=int, default=None,
                   help="random search: N trials drawn from the --range intervals (and --grid choices), "
                        "seeded by --seed, which also seeds every trial's random init as in train")
    p.add_argument("--range", metavar="NAME=LOW:HIGH[:log]", dest="ranges", action="append", default=[],
                   help="interval of a numeric field for --random, uniform or log-uniform")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="a running Dask scheduler (tcp://host:8786) whose workers run the trials "
                        "(default: a local cluster)")
    p.add_argument("--workers", metavar="N", type=int, default=None,
                   help="worker processes of the local cluster (default: one per CPU, at most one per trial)")
    p.add_argument("--out", metavar="DIR", default=None, help="sweep directory (default: a new sweeps/YYYYmmdd-HHMMSS)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="run the trials of the sweep in DIR that have not finished, with its own plan")
    p.set_defaults(func=cmd_sweep, shared_flags=tuple((a.dest, a.default, a.option_strings[0]) for a in shared))


def cmd_sweep(args) -> int:
    from dataclasses import fields, replace

    from . import sweep
    from .data import resolve_data_dir

    fields_ = {f.name for f in fields(TrainConfig)}
    shared = {dest: getattr(args, dest) for dest, _, _ in args.shared_flags}
    if args.workers is not None and (args.workers < 1 or args.scheduler):
        raise ConfigError("--workers: expected a number >= 1, for the local cluster only (with --scheduler, "
                          f"start workers with `dask worker ADDRESS`), found {args.workers}")
    if args.resume:
        given = [flag for dest, default, flag in args.shared_flags if shared[dest] != default]
        given += [flag for flag, v in (("--grid", args.grid), ("--range", args.ranges), ("--random", args.random),
                                       ("--out", args.out)) if v]
        if given:
            raise ConfigError(f"--resume continues a sweep with its own plan; drop {', '.join(given)}")
        out, plan, resume = Path(args.resume), sweep.load_plan(args.resume), True
    else:
        # other train flags (an engine, threads...) go to train() when given
        options = {dest: shared[dest] for dest, default, _ in args.shared_flags
                   if dest not in fields_ and dest not in ("preset", "data_dir") and shared[dest] != default}
        plan = sweep.make_plan(shared["preset"], {k: v for k, v in shared.items() if k in fields_},
                               grid=args.grid, ranges=args.ranges, random=args.random, train_options=options)
        # the plan is valid: the driver checks the data (downloading them if needed) before any worker starts
        data = _load_data(args)
        directory, _ = resolve_data_dir(args.data_dir)
        plan = replace(plan, data=sweep.DataSource(str(directory.resolve()) if args.data_dir else None,
                                                   data.identity))
        out, resume = (Path(args.out) if args.out else sweep.new_sweep_dir()), False
    result = sweep.run_sweep(plan, out, scheduler=args.scheduler, n_workers=args.workers, resume=resume)
    print()
    print(sweep.summary_table(result))
    print(sweep.chosen_line(result))
    if result.failed:
        print(f"{len(result.failed)} trial(s) failed and have no row; run them with: logreg-mnist sweep --resume "
              f"{out}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
