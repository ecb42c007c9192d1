"""Odd but well-formed datasets: one line that says what was expected and what was found, never a traceback,
and a way on where there is one."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from logreg_mnist.cli import main
from logreg_mnist.data import write_idx

from .conftest import NAMES, make_digits, write_dataset

N = 10_100  # training images: the last 10,000 are the validation split
TRAIN = ["train", "--batch-size", "20", "--n-epochs", "1", "--no-progress"]


def _write(directory, train_x, train_y, test_x, test_y):
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in zip(NAMES, (train_x, train_y, test_x, test_y)):
        write_idx(directory / name, array)
    return directory


def _one_line(capsys, argv) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_an_empty_test_split_is_one_line(tmp_path, capsys):
    x, y = make_digits(N)
    d = _write(tmp_path / "d", x, y, np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.uint8))
    for argv in (["data", "--data-dir", str(d)], [*TRAIN, "--data-dir", str(d), "--out", str(tmp_path / "r")]):
        err = _one_line(capsys, argv)
        assert "test" in err and "expected at least 1" in err and "found 0" in err, err
    assert not (tmp_path / "r").exists()


def test_labels_of_one_class_are_one_line(tmp_path, capsys):
    x, _ = make_digits(N)
    tx, _ = make_digits(40, seed=1)
    d = _write(tmp_path / "d", x, np.zeros(N, np.uint8), tx, np.zeros(40, np.uint8))
    err = _one_line(capsys, [*TRAIN, "--data-dir", str(d), "--out", str(tmp_path / "r")])
    assert "expected labels of at least 2 classes" in err and "found only class 0" in err, err


def test_images_of_no_pixels_are_one_line(tmp_path, capsys):
    _, y = make_digits(N)
    _, ty = make_digits(40, seed=1)
    d = _write(tmp_path / "d", np.zeros((N, 0, 0), np.uint8), y, np.zeros((40, 0, 0), np.uint8), ty)
    err = _one_line(capsys, ["data", "--data-dir", str(d)])
    assert "expected images of at least 1x1 pixels, found 0x0" in err, err


def test_a_dataset_derived_from_mnist_has_a_way_on(real_mnist_dir, tmp_path, capsys):
    """MNIST's images with other labels: refused as a damaged copy until it says it is a dataset of its own."""
    d = tmp_path / "relabelled"
    d.mkdir()
    for name in NAMES:
        source = real_mnist_dir / f"{name}.gz"
        if "labels" in name:
            continue
        shutil.copy(source if source.exists() else real_mnist_dir / name, d / source.name)
    rng = np.random.default_rng(0)
    write_idx(d / "train-labels-idx1-ubyte", rng.integers(0, 2, 60_000).astype(np.uint8))
    write_idx(d / "t10k-labels-idx1-ubyte", rng.integers(0, 2, 10_000).astype(np.uint8))
    err = _one_line(capsys, ["data", "--data-dir", str(d)])
    assert "a damaged copy?" in err and "classes.txt" in err, err
    (d / "classes.txt").write_text("even\nodd\n")
    assert main(["data", "--data-dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert "unverified dataset" in out and "even" in out and "odd" in out, out


def test_a_synthetic_dataset_still_loads(tmp_path, capsys):
    write_dataset(tmp_path / "ok", n_train=N)
    assert main(["data", "--data-dir", str(tmp_path / "ok")]) == 0
