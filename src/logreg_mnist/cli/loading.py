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
