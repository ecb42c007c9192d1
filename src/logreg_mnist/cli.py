"""The ``logreg-mnist`` command: parse, build a config, call the library, return an exit code.

Exit codes: 0 success, 1 the run failed (diverged), 2 user error (bad flag, bad
file, no data), 130 interrupted (Ctrl-C), 141 output closed early (``| head``),
as a shell reports SIGPIPE. A user error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

from ._argparse import OneLineParser
from .config import PRESETS, TrainConfig, preset
from .errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, ConfigError, LogregMnistError, show_path

_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cmd | head` when cmd is cut off

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
_FLAGS = {name: flag for flag, name, _, _ in _HYPERPARAMETERS}

# (flag, train() argument, type, help, default shown): run-time choices that do not change the result,
# so they are not part of the config (a resumed run may change them).
_RUNTIME_OPTIONS = [
    ("--engine", "engine", str, "SGD engine: auto (gpu if present, else fused if built, else numpy), numpy "
     "(the reference), fused (compiled CPU kernel), gpu (JAX with the data on the device; "
     "pip install 'logreg-mnist[gpu]')", "auto"),
    ("--threads", "threads", int, "threads the engine and BLAS use", "the engine's choice: fused uses up to "
     "the cores this process may run on, or one when that is measured to be faster; numpy uses one"),
]
_RUNTIME_CHOICES = {"engine": ["auto", "numpy", "fused", "gpu"]}


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    for flag, name, typ, text, shown in _RUNTIME_OPTIONS:
        p.add_argument(flag, dest=name, type=typ, default="auto" if name == "engine" else None,
                       choices=_RUNTIME_CHOICES.get(name), help=f"{text} (default: {shown})")
    p.add_argument("--max-resident", metavar="SIZE", default=None,
                   help="memory budget for the data an engine holds, e.g. 512M or 2G; larger data are read "
                        "from the uncompressed IDX files in chunks (default: a quarter of the available memory, "
                        "at most 2 GiB)")


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for (importlib.metadata is slow)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from ._version import __version__

        parser.exit(message=f"{parser.prog} {__version__}\n")


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="directory with the four MNIST-style IDX files, or a mnist.pkl.gz file "
                        "(default: the run's own data for a run or model; else $LOGREG_MNIST_DATA_DIR, "
                        "else the user cache, downloading MNIST into it if needed)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="fetch missing MNIST files into --data-dir too (default: only into the user cache); "
                        "--no-download: never fetch")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="logreg-mnist",
        description="Multinomial logistic regression on MNIST, after the Deep Learning Tutorials.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("data", help="fetch and verify MNIST, print where it is and a summary",
                       description="Find MNIST (downloading and verifying it if needed), print where the "
                                   "files are and a summary per split.")
    _add_data_dir(p)
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
    _add_runtime_options(p)
    p.add_argument("--drop-last", dest="drop_last", action=argparse.BooleanOptionalAction, default=None,
                   help="drop the examples that do not fill a whole minibatch (default: off; on with "
                        "--preset tutorial)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="run directory for the best model, history and checkpoints "
                        "(default: a new runs/YYYYmmdd-HHMMSS)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run in DIR with its own configuration and data")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its files, snapshots and plots are deleted first)")
    p.add_argument("--dry-run", action="store_true",
                   help="run one minibatch end to end (into a temporary directory unless --out is given)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true",
                      help="print only the result: no hyperparameters, per-validation lines or progress bar")
    loud.add_argument("-v", "--verbose", action="store_true",
                      help="also print a line per epoch (training NLL, errors, patience left, time)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict digits with a saved model",
                       description="Without inputs: the predicted labels of the first 10 test digits, as the "
                                   "chapter's predict(). With inputs: a label and its probability per image.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file or a run directory")
    p.add_argument("inputs", metavar="INPUT", nargs="*",
                   help="images (PNG, JPEG, GIF, BMP, TIFF, WebP), IDX image files, .npy arrays, directories "
                        "of them, or - for one image on standard input (see the README for the rules)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument("--raw", action="store_true",
                   help="take 28x28 images as they are: no inversion, cropping or centring (default: off)")
    p.add_argument("--show", metavar="OUT.png", default=None,
                   help="write a picture of each input beside what the model sees and its top 3 classes")
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
    _add_serve_parser(sub)

    _add_sweep_parser(sub)
    return parser


def _add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="a local web page: draw a digit and watch the model decide",
                       description="Serve a page where you draw a digit and see the class probabilities, the "
                                   "28x28 input the model sees and the evidence for its answer, with the run's "
                                   "weights and learning curves. Ctrl-C stops it.")
    p.add_argument("target", metavar="RUN_OR_MODEL", help="a run directory or a .safetensors model file")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback exposes a page without authentication "
                        "(default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    p.set_defaults(func=cmd_serve)


def main(argv: list[str] | None = None) -> int:
    # Everything runs inside the handlers, imports included (the commands import NumPy,
    # SciPy, ... when they start), so a Ctrl-C at any moment is exit 130 without a traceback.
    command = ""
    try:
        args = build_parser().parse_args(argv)
        command = f" {args.command}"
        code = args.func(args)
        sys.stdout.flush()
        return code
    except LogregMnistError as e:
        print(f"logreg-mnist{command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"logreg-mnist{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # before OSError: a reader that went away is not an error
        return _broken_pipe()
    except OSError as e:
        if e.errno not in _DISK_FULL:
            raise
        where = f" {show_path(e.filename)}" if e.filename else ""
        print(f"logreg-mnist{command}: error: cannot write{where}: no space left on the device", file=sys.stderr)
        return EXIT_FAILURE


def _broken_pipe() -> int:
    """The reader of our output went away (``| head``): stop quietly, as Unix tools do.

    Further writes to stdout (Python's own flush at exit included) go to /dev/null.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests)
        pass
    return EXIT_BROKEN_PIPE


def _load_data(args, *, max_resident: int | None = None):
    from .data import load_mnist

    return load_mnist(args.data_dir, download=args.download, progress=True, max_resident=max_resident)


def _load_run_data(args, target, *, max_resident: int | None = None):
    """The data of the run or model ``target`` (see :func:`logreg_mnist.run.load_run_data`)."""
    from .run import load_run_data

    return load_run_data(target, args.data_dir, download=args.download, max_resident=max_resident)


def cmd_data(args) -> int:
    from .data import resolve_data_dir

    directory, _ = resolve_data_dir(args.data_dir)
    print(f"data directory: {directory}")
    start = time.perf_counter()
    data = _load_data(args)
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


def _by_flag(e: ConfigError) -> ConfigError:
    """The same error with the configuration field it starts with (``learning_rate:``) named by
    its flag (``--learning-rate:``), as the user typed it."""
    text = str(e)
    field = e.field or re.match(r"[a-z_]*", text).group()
    flag = {**_FLAGS, "drop_last": "--drop-last", "out_dir": "--out", "threads": "--threads",
            "engine": "--engine", "max_resident": "--max-resident"}.get(field)
    if flag and text.startswith(field) and text[len(field):len(field) + 1] in (":", " "):
        return ConfigError(flag + text[len(field):], field=field)
    return e


def _train_config(args) -> TrainConfig:
    """The configuration the flags ask for; a bad value is reported by its flag."""
    overrides = {name: getattr(args, name) for _, name, _, _ in _HYPERPARAMETERS}
    overrides["drop_last"] = args.drop_last
    try:
        return preset(args.preset, dry_run=args.dry_run or None, **overrides)
    except ConfigError as e:
        raise _by_flag(e) from None


def cmd_train(args) -> int:
    from . import persistence as io
    from .reporting import NORMAL, QUIET, VERBOSE, ConsoleReporter, percent
    from .run import check_run_target
    from .train import load_run_config, train

    # Every flag is checked before anything is read, created or computed.
    if args.resume:
        given = sorted(name for _, name, _, _ in _HYPERPARAMETERS if getattr(args, name) is not None)
        given += ["drop_last"] if args.drop_last is not None else []
        if given or args.preset != "default" or args.out or args.dry_run or args.overwrite:
            raise ConfigError("--resume continues a run with its own configuration; drop "
                              + ", ".join(["--" + k.replace("_", "-") for k in given]
                                          + (["--preset"] if args.preset != "default" else [])
                                          + (["--out"] if args.out else [])
                                          + (["--dry-run"] if args.dry_run else [])
                                          + (["--overwrite"] if args.overwrite else [])))
        out = check_run_target(args.resume, resume=True, what="--resume")
        config = load_run_config(out)
    else:
        config = _train_config(args)
        out = Path(args.out) if args.out else None
        if out is not None:
            check_run_target(out, overwrite=args.overwrite, what="--out")
        elif args.overwrite:
            raise ConfigError("--overwrite replaces the run in --out; give --out DIR")
    from .data.stream import default_max_resident, parse_size

    max_resident = parse_size(args.max_resident) if args.max_resident is not None else default_max_resident()
    data = (_load_run_data(args, out, max_resident=max_resident) if args.resume
            else _load_data(args, max_resident=max_resident))
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    verbosity = QUIET if args.quiet else VERBOSE if args.verbose else NORMAL
    reporter = ConsoleReporter(sys.stdout, progress=progress, verbosity=verbosity)
    dry_scratch = config.dry_run and out is None
    scratch = tempfile.TemporaryDirectory(prefix="logreg-mnist-dry-run-") if dry_scratch else nullcontext()
    with scratch as tmp:
        out = Path(tmp) if dry_scratch else (out or _new_run_dir())
        if verbosity > QUIET:
            print(f"run directory: {out}")
        try:
            _, history = train(data, config, out, reporter=reporter, resume=bool(args.resume),
                               overwrite=args.overwrite, engine=args.engine, threads=args.threads,
                               max_resident=max_resident)
        except ConfigError as e:
            raise _by_flag(e) from None
        if not dry_scratch:
            unit = "epoch" if config.optimizer == "sgd" else "iteration"
            print(f"best model: {out / io.BEST} ({unit} {history.best_epoch}, validation error "
                  f"{percent(history.best_valid_error, history.n_valid, 4)}, test error "
                  f"{percent(history.test_error, history.n_test, 4)})")
            print(f"history: {out / io.HISTORY}")
    return EXIT_OK


def _load_model(path):
    from .persistence import load_model

    return load_model(path)


def cmd_predict(args) -> int:
    import numpy as np

    from .predict import check_picture_path, load_inputs, predictions
    from .run import class_names_for

    if args.show:
        check_picture_path(args.show)
    model, meta = _load_model(args.model)
    if not args.inputs:
        data = _load_run_data(args, args.model)
        names = data.class_names
        predicted = model.predict(data.test.images[:10])
        if args.json:
            print(json.dumps({"predicted": predicted.tolist(), "true": data.test.labels[:10].tolist(),
                              "predicted_names": [names[i] for i in predicted]}))
        else:
            print("Predicted values for the first 10 examples in test set:")
            print(np.array2string(predicted))
            if names != [str(i) for i in range(len(names))]:
                print(", ".join(names[i] for i in predicted))
        return EXIT_OK
    names = class_names_for(meta, model.n_out)
    inputs = load_inputs(args.inputs, model.n_in, raw=args.raw)
    results = predictions(model, inputs)
    if args.show:
        from .plots import predictions_figure, save_figure

        save_figure(predictions_figure(inputs, results), args.show)
    if args.json:
        print(json.dumps([{**r.to_dict(), "class_name": names[r.label]} for r in results], indent=2))
    else:
        width = max(len(r.input) for r in results)
        numeric = names == [str(i) for i in range(len(names))]
        for r in results:
            name, runner_up = ("", "") if numeric else (f" {names[r.label]}", f" {names[r.runner_up]}")
            flags = "".join(["  blank: no digit found" if r.blank else "",
                             "  low confidence" if r.low_confidence and not r.blank else ""])
            print(f"{r.input:<{width}}  {r.label}{name}  (probability {r.probability:.4f}; runner-up "
                  f"{r.runner_up}{runner_up}, {r.runner_up_probability:.4f}){flags}")
    if args.show:
        print(f"picture: {args.show}", file=sys.stderr)
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from .predict import evaluate

    model, meta = _load_model(args.model)
    data = _load_run_data(args, args.model)
    report = evaluate(model, data)
    names = data.class_names + [str(i) for i in range(len(data.class_names), model.n_out)]
    for c in report["test"]["per_class"]:
        c["name"] = names[c["label"]]
    report["dataset"] = data.identity
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"{data.title} from {data.source}, every example counted:")
    for name in ("valid", "test"):
        r = report[name]
        print(f"{name:<5} error {r['error'] * 100:8.4f} % of {r['n']:,}  ({r['wrong']:,} wrong)")
    if meta.get("n_test") and meta["n_test"] != report["test"]["n"] and meta.get("test_error") is not None:
        print(f"(training measured this model on {meta['n_test']:,} test examples: "
              f"{meta['test_error'] * 100:.4f} % of {meta['n_test']:,})")
    print("\ntest error per class:")
    width = max(9, *(len(n) for n in names))
    print(f"  {'class':<{width}}       n   wrong    error")
    for c in report["test"]["per_class"]:
        err = "-" if c["error"] is None else f"{c['error'] * 100:7.3f} %"
        print(f"  {c['name']:<{width}}  {c['n']:>6,}  {c['wrong']:>6,}  {err:>9}")
    return EXIT_OK


def cmd_plot(args) -> int:
    from ._paths import check_output_dir, make_dir
    from .plots import plot_run
    from .sweep import is_sweep_dir

    if args.out is not None:
        check_output_dir(args.out, "--out")
    # a sweep's pictures come from its trials' records; a run's test-set pictures need its data
    data = None if is_sweep_dir(args.target) else _load_run_data(args, args.target)
    if args.out is not None:
        make_dir(args.out, "--out")
    for path in plot_run(args.target, data, args.out):
        print(path)
    return EXIT_OK


def cmd_digits(args) -> int:
    import numpy as np

    from ._paths import check_output_file
    from .plots import class_label, digits_figure, save_figure

    if args.n < 1:
        raise ConfigError(f"-n: expected a number of images >= 1, found {args.n}")
    check_output_file(args.out, "--out", suffix=".png")
    data = _load_data(args)
    split = data.split(args.split)
    if args.digit is None:
        indices = np.arange(min(args.n, len(split)))
        title = f"The first {len(indices)} {args.split} images"
    else:
        if not 0 <= args.digit < data.n_classes:
            raise ConfigError(f"--digit: expected a class in 0-{data.n_classes - 1}, found {args.digit}")
        indices = np.flatnonzero(split.labels == args.digit)[: args.n]
        title = f"The first {len(indices)} {args.split} images labelled {class_label(data.class_names[args.digit])}"
    fig = digits_figure(split.images[indices], split.labels[indices], indices=indices, title=title,
                        class_names=data.class_names)
    print(save_figure(fig, args.out, what="--out"))
    return EXIT_OK


def cmd_serve(args) -> int:
    from .serve import serve

    serve(args.target, args.host, args.port)
    return EXIT_OK


# train's flags that make no sense for a sweep; every other train flag is a fixed setting of the sweep
_TRAIN_ONLY = {"help", "out", "resume", "dry_run", "progress", "overwrite", "quiet", "verbose"}


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
    from ._paths import check_output_dir
    from .data import resolve_data_dir
    from .run import RunDir

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
                   if dest not in fields_ and dest not in ("preset", "data_dir", "download")
                   and shared[dest] != default}
        if options.get("max_resident") is not None:
            from .data.stream import parse_size

            options["max_resident"] = parse_size(options["max_resident"])
        plan = sweep.make_plan(shared["preset"], {k: v for k, v in shared.items() if k in fields_},
                               grid=args.grid, ranges=args.ranges, random=args.random, train_options=options)
        out, resume = (Path(args.out) if args.out else sweep.new_sweep_dir()), False
        check_output_dir(out, "--out")
        if RunDir(out).holds_run():
            raise ConfigError(f"--out {show_path(out)}: expected a new or sweep directory, found a training run")
        # the plan is valid: the driver checks the data (downloading them if needed) before any worker starts
        data = _load_data(args, max_resident=options.get("max_resident"))
        directory, _ = resolve_data_dir(args.data_dir)
        plan = replace(plan, data=sweep.DataSource(str(directory.resolve()) if args.data_dir else None,
                                                   data.identity))
        # and the trials' run-time options (engine, threads, memory budget) before the cluster starts
        from .engines import make_engine

        try:
            make_engine(options.get("engine", "auto"), data, plan.trials[0].config, threads=options.get("threads"),
                        max_resident=options.get("max_resident"))
        except ConfigError as e:
            raise _by_flag(e) from None
    with RunDir(out).owned():  # one sweep per directory at a time, as one run per run directory
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
