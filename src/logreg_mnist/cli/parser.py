"""The command line's argument parser: one subcommand each, train's and sweep's shared flags generated.

Every flag has help text with its default. The hyperparameters' flags come from the
declarations of :class:`~logreg_mnist.config.TrainConfig`'s fields and the run-time
options from :data:`.options.RUN_OPTIONS`, so train and sweep take the same ones.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable

from ..config import PRESETS, SETTINGS
from .model_commands import cmd_evaluate, cmd_predict
from .oneline import OneLineParser
from .options import (
    DATA_OPTIONS,
    ENGINE_OPTIONS,
    RESUME_DATA_OPTIONS,
    RUN_DATA_OPTIONS,
    RUN_OPTIONS,
    RunOption,
    add_hyperparameters,
    add_options,
    add_setting,
)
from .picture_commands import cmd_digits, cmd_plot, cmd_serve
from .sweep_commands import cmd_sweep
from .train_commands import cmd_data, cmd_train

_RUN_OR_MODEL = "a run directory or a .safetensors model file"
_JSON = "print JSON for scripts"


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for (importlib.metadata is slow)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help or "show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from .._version import __version__

        print(f"{parser.prog} {__version__}")  # on stdout, as every tool's version: `--version | cat`
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="logreg-mnist",
        description="Multinomial logistic regression on MNIST, after the Deep Learning Tutorials.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _command(sub, cmd_data)
    add_options(p, DATA_OPTIONS)

    _add_train_parser(sub)
    _add_model_parsers(sub)
    _add_picture_parsers(sub)
    _add_sweep_parser(sub)
    return parser


def _command(sub, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """The subcommand that runs ``func`` (``cmd_NAME``): its help is the first line of the
    function's docstring, its description the paragraph after it."""
    summary, _, body = inspect.cleandoc(func.__doc__ or "").partition("\n\n")
    p = sub.add_parser(func.__name__.removeprefix("cmd_"), help=summary, description=" ".join(body.split()))
    p.set_defaults(func=func)
    return p


def _add_shared(p: argparse.ArgumentParser, options: tuple[RunOption, ...] = RUN_OPTIONS) -> None:
    """train's and sweep's common flags: the preset, every hyperparameter, the run-time options."""
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="default",
        help="default: every example is used; tutorial: the chapter exactly (partial minibatches "
        "dropped, its printed lines and its published result) (default: default)",
    )
    add_hyperparameters(p)
    add_options(p, options)


_RUN_OUT = "run directory for the best model, history and checkpoints (default: a new runs/YYYYmmdd-HHMMSS)"


def _add_train_parser(sub) -> None:
    p = _command(sub, cmd_train)
    _add_shared(p, ENGINE_OPTIONS + RESUME_DATA_OPTIONS)
    p.add_argument("--out", metavar="DIR", default=None, help=_RUN_OUT)
    p.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="continue the interrupted run in DIR with its own configuration and data",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (its files, snapshots and plots are deleted first)",
    )
    add_setting(p, SETTINGS["dry_run"])
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    loud = p.add_mutually_exclusive_group()
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the result: no hyperparameters, per-validation lines or progress bar",
    )
    loud.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print a line per epoch (training NLL, errors, patience left, time)",
    )


def _add_model_parsers(sub) -> None:
    p = _command(sub, cmd_predict)
    _add_model_argument(p)
    p.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="*",
        default=[],  # optional: without inputs, the first test digits
        help="images (PNG, JPEG, GIF, BMP, TIFF, WebP), IDX image files, .npy arrays, directories "
        "of them, or - for one image on standard input (the rules: docs/howto/your-photos.md)",
    )
    p.add_argument("--json", action="store_true", help=_JSON)
    p.add_argument(
        "--raw",
        action="store_true",
        help="take 28x28 images as they are: no inversion, cropping or centring (default: off)",
    )
    p.add_argument(
        "--show",
        metavar="OUT.png",
        default=None,
        help="write a picture of each input beside what the model sees and its top 3 classes",
    )
    add_options(p, RUN_DATA_OPTIONS)

    p = _command(sub, cmd_evaluate)
    _add_model_argument(p)
    p.add_argument("--json", action="store_true", help=_JSON)
    add_options(p, RUN_DATA_OPTIONS)


def _add_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a run directory, a .safetensors model file, or a sweep directory (its best trial)",
    )


def _add_picture_parsers(sub) -> None:
    p = _command(sub, cmd_plot)
    p.add_argument("target", metavar="RUN_OR_MODEL", help=_RUN_OR_MODEL)
    p.add_argument("--out", metavar="DIR", default=None, help="where to write (default: plots/ beside the model)")
    add_options(p, RUN_DATA_OPTIONS)

    p = _command(sub, cmd_digits)
    p.add_argument("--split", choices=["train", "valid", "test"], default="test", help="split (default: test)")
    p.add_argument("-n", type=int, default=50, help="how many digits (default: 50)")
    p.add_argument("--digit", type=int, default=None, help="only digits of this class (default: all classes)")
    p.add_argument("--out", metavar="FILE", default="digits.png", help="PNG file to write (default: digits.png)")
    add_options(p, DATA_OPTIONS)

    p = _command(sub, cmd_serve)
    p.add_argument("target", metavar="RUN_OR_MODEL", help=_RUN_OR_MODEL)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this computer only); 0.0.0.0 serves a classroom "
        "on every network of this computer: anyone who can reach it can use the page, which has no "
        "authentication, so use it only on a network you trust",
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="server processes answering on the port (default: 1 on a loopback address such as 127.0.0.1; "
        "else one per core, at most 8, for a classroom; always 1 on Windows)",
    )


def _add_sweep_parser(sub) -> None:
    p = _command(sub, cmd_sweep)
    _add_shared(p)  # every hyperparameter and run-time option of train is a fixed setting here
    p.add_argument(
        "--grid",
        metavar="NAME=V1,V2,...",
        action="append",
        default=[],
        help="values of a TrainConfig field (learning_rate, l2, batch_size, optimizer, ...); repeat "
        "for a grid of their product; with --random, choices drawn uniformly",
    )
    p.add_argument(
        "--random",
        metavar="N",
        type=int,
        default=None,
        help="random search: N trials drawn from the --range intervals (and --grid choices), "
        "seeded by --seed, which also seeds every trial's random init as in train",
    )
    p.add_argument(
        "--range",
        metavar="NAME=LOW:HIGH[:log]",
        dest="ranges",
        action="append",
        default=[],
        help="interval of a numeric field for --random, uniform or log-uniform",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="a running Dask scheduler (tcp://host:8786) whose workers run the trials (default: a local cluster)",
    )
    p.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=None,
        help="worker processes of the local cluster (default: one per CPU, at most one per trial)",
    )
    p.add_argument("--out", metavar="DIR", default=None, help="sweep directory (default: a new sweeps/YYYYmmdd-HHMMSS)")
    p.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="run the trials of the sweep in DIR that have not finished, with its own plan",
    )
