"""Shared fixtures: tiny synthetic MNIST-like datasets, the real MNIST files, and the serve tests' hand-made run and test client."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from logreg_mnist.data import write_idx
from logreg_mnist.reporting import Reporter

REPO = Path(__file__).resolve().parents[1]
# The JAX platform the GPU engine's tests run on: JAX's CPU backend, unless the GPU check
# (benchmarks/gpu_check.sh) sets "gpu" to run the same tests on the device.
JAX_TEST_PLATFORM = os.environ.get("LOGREG_MNIST_TEST_JAX_PLATFORM", "cpu")
NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def real_data_dir() -> Path | None:
    """The real MNIST files: $LOGREG_MNIST_DATA_DIR, else ../shared/data/mnist beside the repo, else
    the user cache, where ``logreg-mnist train`` (the README's first command) puts them."""
    from logreg_mnist.data import default_cache_dir

    candidates = (os.environ.get("LOGREG_MNIST_DATA_DIR"), REPO.parent / "shared" / "data" / "mnist",
                  default_cache_dir())
    for candidate in candidates:
        if candidate and all((Path(candidate) / f"{n}.gz").is_file() or (Path(candidate) / n).is_file()
                             for n in NAMES):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    path = real_data_dir()
    if path is None:
        if os.environ.get("LOGREG_MNIST_REQUIRE_REAL_DATA"):
            pytest.fail("the real MNIST files are required (LOGREG_MNIST_REQUIRE_REAL_DATA) but not found")
        pytest.skip("real MNIST files not found (set LOGREG_MNIST_DATA_DIR, or run logreg-mnist data)")
    return path


@pytest.fixture(scope="session")
def real_mnist(real_mnist_dir):
    from logreg_mnist import load_mnist

    return load_mnist(real_mnist_dir, download=False, progress=False)


def use_jax_test_platform(monkeypatch) -> str | None:
    """Points the GPU engine at :data:`JAX_TEST_PLATFORM`; returns its ``platform`` argument
    (None: a GPU, which the engine then insists on)."""
    if JAX_TEST_PLATFORM == "gpu":
        monkeypatch.delenv("LOGREG_MNIST_JAX_PLATFORM", raising=False)
        return None
    monkeypatch.setenv("LOGREG_MNIST_JAX_PLATFORM", JAX_TEST_PLATFORM)
    return JAX_TEST_PLATFORM


def make_digits(n: int, seed: int = 0, side: int = 28, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Learnable synthetic 'digits': each class lights up its own block of pixels, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, side, side)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = (label * side) // n_classes
        images[i, row : row + max(1, side // n_classes), :] = 200 + rng.integers(0, 55)
    return images, labels


def write_dataset(directory: Path, n_train: int = 120, n_test: int = 40, compress: bool = True,
                  side: int = 28, seed: int = 0) -> dict[str, str]:
    """Write the four IDX files; returns name -> SHA-256 of the raw content."""
    directory.mkdir(parents=True, exist_ok=True)
    tr_x, tr_y = make_digits(n_train, seed, side)
    te_x, te_y = make_digits(n_test, seed + 1, side)
    hashes = {}
    for name, arr in zip(NAMES, (tr_x, tr_y, te_x, te_y)):
        path = directory / (name + (".gz" if compress else ""))
        write_idx(path, arr, compress=compress)
        raw = path.read_bytes()
        if compress:
            import gzip

            raw = gzip.decompress(raw)
        hashes[name] = hashlib.sha256(raw).hexdigest()
    return hashes


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    """A tiny MNIST-like IDX directory: 120 training (20 valid), 40 test images."""
    write_dataset(tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.fixture
def tiny_data(tiny_dir):
    from logreg_mnist import load_mnist

    return load_mnist(tiny_dir, download=False, valid_size=20, progress=False)


@pytest.fixture(scope="session")
def cli_data_dir(tmp_path_factory) -> Path:
    """A synthetic dataset the CLI can use as it is: 10,300 training images (the last 10,000
    are the validation split), 200 test images, raw IDX files."""
    directory = tmp_path_factory.mktemp("cli-data")
    write_dataset(directory, n_train=10_300, n_test=200, compress=False, seed=3)
    return directory


@pytest.fixture(scope="session")
def need_fused():
    """The fused engine's kernel: CI builds it (LOGREG_MNIST_REQUIRE_FUSED=1 makes its absence a failure)."""
    from logreg_mnist.engines.fused import available

    if not available():
        if os.environ.get("LOGREG_MNIST_REQUIRE_FUSED"):
            pytest.fail("the fused engine's compiled kernel is required but not built (pip install -e .)")
        pytest.skip("the fused engine's compiled kernel is not built")


class InterruptAt(Reporter):
    """A silent reporter that raises KeyboardInterrupt (as Ctrl-C does) at the first validation of ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def validation(self, epoch, minibatch, n_batches, error):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def one_epoch_run(data_dir: Path, out: Path) -> Path:
    """A run directory trained for one epoch on ``data_dir`` through the command line."""
    from logreg_mnist.cli import main

    assert main(["train", "--data-dir", str(data_dir), "--out", str(out), "--batch-size", "100", "--n-epochs", "1",
                 "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, request) -> Path:
    """The serve tests' hand-made run (:func:`~.serve_run.make_run`), one per test module (test_cli.py has its own)."""
    from .serve_run import make_run

    return make_run(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "run")


@pytest.fixture(scope="module")
def client(run_dir):
    """Starlette's test client on the app serving ``run_dir``."""
    with warnings.catch_warnings():  # Starlette prefers the httpx2 fork; httpx works the same here
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from logreg_mnist.serve import RunView, create_app

    return TestClient(create_app(RunView(run_dir)))
