"""The data a command's flags name: ``--data-dir`` and ``--download``, or a run's own data."""

from __future__ import annotations

import argparse
import os


def load_data(args: argparse.Namespace, *, max_resident: int | None = None):
    """The dataset at ``--data-dir`` (default: ``$LOGREG_MNIST_DATA_DIR``, else the user cache)."""
    from ..data import load_mnist

    return load_mnist(args.data_dir, download=args.download, progress=True, max_resident=max_resident)


def load_run_data(args: argparse.Namespace, target: str | os.PathLike, *, max_resident: int | None = None):
    """The data of the run or model ``target`` (see :func:`logreg_mnist.run.load_run_data`)."""
    from ..run import load_run_data as load

    return load(target, args.data_dir, download=args.download, max_resident=max_resident)


def model_target(path: str, command: str) -> str:
    """What a command's MODEL argument stands for: a sweep directory stands for its chosen trial
    (``DIR/best``, said on stderr); an image given first is answered with the order of the arguments.

    Raises:
        ConfigError: a sweep with no chosen trial yet, or an image where the model belongs.
    """
    import sys
    from pathlib import Path

    from ..errors import ConfigError, show_path
    from ..persistence import image_kind
    from ..sweep import BEST, is_sweep_dir

    target = Path(path)
    if is_sweep_dir(target):
        best = target / BEST
        if not best.exists():
            raise ConfigError(
                f"{show_path(target)}: a sweep with no finished trial yet (no {show_path(best)}); run its trials "
                f"with: logreg-mnist sweep --resume {show_path(target)}"
            )
        print(f"{show_path(target)}: a sweep; using its chosen trial {show_path(best)}", file=sys.stderr)
        return str(best)
    try:
        with open(target, "rb") as f:
            kind = image_kind(f.read(16))
    except OSError:  # a directory, or missing: the model loader says what is wrong
        kind = None
    if kind:
        raise ConfigError(
            f"{show_path(target)}: expected a run directory or a .safetensors model file, found {kind}; the model "
            f"comes first: logreg-mnist {command} MODEL" + (" [INPUT ...]" if command == "predict" else "")
        )
    return path
