"""The command line's argument parser: one subcommand each, train's and sweep's shared flags generated.

Every flag has help text with its default. The hyperparameters' flags come from the
declarations of :class:`~logreg_mnist.config.TrainConfig`'s fields and the run-time
options from :data:`.options.RUN_OPTIONS`, so train and sweep take the same ones.
"""

from __future__ import annotations

import argparse

from ..config import PRESETS, SETTINGS
from .model_commands import cmd_evaluate, cmd_predict
from .oneline import OneLineParser
from .options import DATA_OPTIONS, add_hyperparameters, add_options, add_setting
from .picture_commands import cmd_digits, cmd_plot, cmd_serve
from .sweep_commands import cmd_sweep
from .train_commands import cmd_data, cmd_train

_RUN_OR_MODEL = "a run directory or a .safetensors model file"
_JSON = "print JSON for scripts"


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for (importlib.metadata is slow)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from .._version import __version__

        parser.exit(message=f"{parser.prog} {__version__}\n")


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
    add_options(p, DATA_OPTIONS)
    p.set_defaults(func=cmd_data)

    _add_train_parser(sub)
    _add_model_parsers(sub)
    _add_picture_parsers(sub)
    _add_sweep_parser(sub)
    return parser


def _add_shared(p: argparse.ArgumentParser) -> None:
    """train's and sweep's common flags: the preset, every hyperparameter, the run-time options."""
    p.add_argument("--preset", choices=list(PRESETS), default="default",
                   help="default: every example is used; tutorial: the chapter exactly (partial minibatches "
                        "dropped, its printed lines and its published result) (default: default)")
    add_hyperparameters(p)
    add_options(p)


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (the chapter's logistic_sgd by default)",
                       description="Train multinomial logistic regression with the chapter's early stopping. "
                                   "Flags left out take the preset's value.")
    _add_shared(p)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="run directory for the best model, history and checkpoints "
                        "(default: a new runs/YYYYmmdd-HHMMSS)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run in DIR with its own configuration and data")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its files, snapshots and plots are deleted first)")
    add_setting(p, SETTINGS["dry_run"])
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true",
                      help="print only the result: no hyperparameters, per-validation lines or progress bar")
    loud.add_argument("-v", "--verbose", action="store_true",
                      help="also print a line per epoch (training NLL, errors, patience left, time)")
    p.set_defaults(func=cmd_train)


def _add_model_parsers(sub) -> None:
    p = sub.add_parser("predict", help="predict digits with a saved model",
                       description="Without inputs: the predicted labels of the first 10 test digits, as the "
                                   "chapter's predict(). With inputs: a label and its probability per image.")
    _add_model_argument(p)
    p.add_argument("inputs", metavar="INPUT", nargs="*",
                   help="images (PNG, JPEG, GIF, BMP, TIFF, WebP), IDX image files, .npy arrays, directories "
                        "of them, or - for one image on standard input (see the README for the rules)")
    p.add_argument("--json", action="store_true", help=_JSON)
    p.add_argument("--raw", action="store_true",
                   help="take 28x28 images as they are: no inversion, cropping or centring (default: off)")
    p.add_argument("--show", metavar="OUT.png", default=None,
                   help="write a picture of each input beside what the model sees and its top 3 classes")
    add_options(p, DATA_OPTIONS)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="validation and test error of a saved model, per class too",
                       description="Print the validation and test error over every example and the test "
                                   "error per class.")
    _add_model_argument(p)
    p.add_argument("--json", action="store_true", help=_JSON)
    add_options(p, DATA_OPTIONS)
    p.set_defaults(func=cmd_evaluate)


def _add_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file or a run directory")


def _add_picture_parsers(sub) -> None:
    p = sub.add_parser("plot", help="draw weights, learning curves, confusion matrix and mistakes as PNG files",
                       description="Draw the pictures of a run directory (or of one model file) as PNG files "
                                   "and print their paths.")
    p.add_argument("target", metavar="RUN_OR_MODEL", help=_RUN_OR_MODEL)
    p.add_argument("--out", metavar="DIR", default=None, help="where to write (default: plots/ beside the model)")
    add_options(p, DATA_OPTIONS)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("digits", help="draw a grid of sample digits from a split",
                       description="Write a PNG grid of digits: the first N of a split, or N of one class.")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test", help="split (default: test)")
    p.add_argument("-n", type=int, default=50, help="how many digits (default: 50)")
    p.add_argument("--digit", type=int, default=None, help="only digits of this class (default: all classes)")
    p.add_argument("--out", metavar="FILE", default="digits.png", help="PNG file to write (default: digits.png)")
    add_options(p, DATA_OPTIONS)
    p.set_defaults(func=cmd_digits)

    p = sub.add_parser("serve", help="a local web page: draw a digit and watch the model decide",
                       description="Serve a page where you draw a digit and see the class probabilities, the "
                                   "28x28 input the model sees and the evidence for its answer, with the run's "
                                   "weights and learning curves. Ctrl-C stops it.")
    p.add_argument("target", metavar="RUN_OR_MODEL", help=_RUN_OR_MODEL)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback exposes a page without authentication "
                        "(default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    p.set_defaults(func=cmd_serve)


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="train many candidates on a Dask cluster and choose by validation error",
        description="Model selection as the chapter describes it: train every candidate on the same split with "
                    "early stopping, compare them by their best validation error, report the test error of the "
                    "chosen one. Trials run on a Dask cluster: a local one, or --scheduler ADDRESS. The fixed "
                    "settings take train's flags.")
    _add_shared(p)  # every hyperparameter and run-time option of train is a fixed setting here
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
    p.set_defaults(func=cmd_sweep)
