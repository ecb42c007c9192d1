"""The flags train and sweep share, generated from their declarations, and errors named by flag.

A :class:`~logreg_mnist.config.TrainConfig` field's flag (name, type, choices, help,
default shown) comes from its :class:`~logreg_mnist.config.Setting`; the run-time
options, which change how a run is computed or where its data are but never its
result, are declared once in :data:`RUN_OPTIONS`. Both parsers add them with the same
functions.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..config import HYPERPARAMETERS, SETTINGS, OneOf, Setting
from ..errors import ConfigError


def add_setting(parser: argparse.ArgumentParser, s: Setting) -> None:
    """``s.flag`` on ``parser``: a value of the field's type (default None: the preset's), a
    ``--x / --no-x`` pair for an on/off hyperparameter, a plain switch for a run's mode."""
    shown = s.default if s.shown is None else s.shown
    if s.kind is bool and not s.tunable:
        parser.add_argument(*s.flags, dest=s.name, action="store_true", help=s.help)
    elif s.kind is bool:
        parser.add_argument(
            *s.flags,
            dest=s.name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{s.help} (default: {shown})",
        )
    else:
        choices = list(s.values.choices) if isinstance(s.values, OneOf) else None
        parser.add_argument(
            *s.flags, dest=s.name, type=s.kind, default=None, choices=choices, help=f"{s.help} (default: {shown})"
        )


def add_hyperparameters(parser: argparse.ArgumentParser) -> None:
    """A flag per hyperparameter (every TrainConfig field a sweep may vary), in field order."""
    for s in HYPERPARAMETERS.values():
        add_setting(parser, s)


@dataclass(frozen=True)
class RunOption:
    """A flag that changes how a run is computed or where its data are, never its result.

    Attributes:
        flag: ``--engine``; its ``dest`` is ``engine``.
        help: the help text, saying the default.
        default: the value when the flag is not given.
        type, choices, metavar: as ``add_argument`` takes them; ``switch``: a ``--x / --no-x`` pair.
        train_keyword: passed to :func:`logreg_mnist.train.train` under its ``dest`` (a
            sweep passes it on to every trial); False: where the data are, read by the
            command itself.
    """

    flag: str
    help: str
    default: Any = None
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    switch: bool = False
    train_keyword: bool = True

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.switch:
            parser.add_argument(self.flag, action=argparse.BooleanOptionalAction, default=self.default, help=self.help)
            return
        parser.add_argument(
            self.flag,
            dest=self.dest,
            type=self.type,
            default=self.default,
            metavar=self.metavar,
            choices=list(self.choices) if self.choices else None,
            help=self.help,
        )


ENGINE_OPTIONS = (
    RunOption(
        "--engine",
        "SGD engine: auto (gpu if present, else fused if built, else numpy), numpy (the reference), "
        "fused (compiled CPU kernel), gpu (JAX with the data on the device; pip install 'logreg-mnist[gpu]') "
        "(default: auto)",
        default="auto",
        choices=("auto", "numpy", "fused", "gpu"),
    ),
    RunOption(
        "--threads",
        "threads the engine and BLAS use (default: the engine's choice: fused uses up to the cores "
        "this process may run on, or one (reading data in chunks: also one fewer) when that is measured "
        "to be faster; numpy uses one)",
        type=int,
    ),
    RunOption(
        "--max-resident",
        "memory budget for the data an engine holds, e.g. 512M or 2G; larger data are read "
        "from the uncompressed IDX files in chunks (default: a quarter of the available memory, at most 2 GiB)",
        metavar="SIZE",
    ),
)
_DATA_DIR_HELP = (
    "directory with the four MNIST-style IDX files, or a mnist.pkl.gz file (default: {run}"
    "$LOGREG_MNIST_DATA_DIR, else the user cache, downloading MNIST into it if needed)"
)


def _data_options(run: str) -> tuple[RunOption, ...]:
    """--data-dir and --download; ``run``: where the default is a run's own data, said first."""
    return (
        RunOption("--data-dir", _DATA_DIR_HELP.format(run=run), metavar="DIR", train_keyword=False),
        RunOption(
            "--download",
            "fetch missing MNIST files into --data-dir too (default: only into the user cache); --no-download: "
            "never fetch",
            switch=True,
            train_keyword=False,
        ),
    )


DATA_OPTIONS = _data_options("")  # data, digits, sweep: no run to take the data from
RUN_DATA_OPTIONS = _data_options("the run's own data for a run or model; else ")  # predict, evaluate, plot
RESUME_DATA_OPTIONS = _data_options("the run's own data with --resume; else ")  # train
RUN_OPTIONS = ENGINE_OPTIONS + DATA_OPTIONS


def add_options(parser: argparse.ArgumentParser, options: Iterable[RunOption] = RUN_OPTIONS) -> None:
    """The run-time options (sweep; train's with :data:`RESUME_DATA_OPTIONS`), or only the data's."""
    for option in options:
        option.add_to(parser)


def train_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The run-time options given (other than their default) that :func:`~logreg_mnist.train.train` takes."""
    return {
        o.dest: getattr(args, o.dest) for o in RUN_OPTIONS if o.train_keyword and getattr(args, o.dest) != o.default
    }


def hyperparameters_given(args: argparse.Namespace) -> dict[str, Any]:
    """Every hyperparameter's flag value (None: not given, the preset's value)."""
    return {name: getattr(args, name) for name in HYPERPARAMETERS}


def fixed_flags_given(args: argparse.Namespace) -> list[str]:
    """The shared flags (--preset, the hyperparameters, the run-time options) given a value other
    than their default, in the order ``--help`` lists them."""
    given = ["--preset"] if args.preset != "default" else []
    given += [s.flag for s in HYPERPARAMETERS.values() if getattr(args, s.name) is not None]
    return given + [o.flag for o in RUN_OPTIONS if getattr(args, o.dest) != o.default]


_FLAGS = {
    **{name: s.flag for name, s in SETTINGS.items()},
    **{o.dest: o.flag for o in ENGINE_OPTIONS},
    "out_dir": "--out",
}


def by_flag(e: ConfigError) -> ConfigError:
    """The same error with the configuration field it starts with (``learning_rate:``) named by
    its flag (``--learning-rate:``), as the user typed it."""
    text = str(e)
    match = re.match(r"[a-z_]*", text)
    field = e.field or (match.group() if match else "")
    flag = _FLAGS.get(field)
    if flag and text.startswith(field) and text[len(field) : len(field) + 1] in (":", " "):
        return ConfigError(flag + text[len(field) :], field=field)
    return e
