"""The real MNIST files: hashes, shapes, first labels, the tutorial's split and scaling."""

from __future__ import annotations

import numpy as np
import pytest

from logreg_mnist.data import MNIST_SHA256, content_sha256, read_idx
from logreg_mnist.data.fetch import existing_file

pytestmark = pytest.mark.realdata


def test_hashes_of_the_decompressed_files(real_mnist_dir):
    for name, sha in MNIST_SHA256.items():
        assert content_sha256(existing_file(real_mnist_dir, name)) == sha


def test_shapes_and_first_labels(real_mnist_dir):
    train_y = read_idx(existing_file(real_mnist_dir, "train-labels-idx1-ubyte"), kind="labels")
    test_y = read_idx(existing_file(real_mnist_dir, "t10k-labels-idx1-ubyte"), kind="labels")
    train_x = read_idx(existing_file(real_mnist_dir, "train-images-idx3-ubyte"), kind="images")
    assert train_x.shape == (60_000, 28, 28) and train_y.shape == (60_000,) and test_y.shape == (10_000,)
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_the_tutorial_split(real_mnist, real_mnist_dir):
    d = real_mnist
    assert d.verified and d.identity == "mnist"
    assert (len(d.train), len(d.valid), len(d.test)) == (50_000, 10_000, 10_000)
    assert d.train.images.shape == (50_000, 784) and d.train.images.dtype == np.float32
    raw_x = read_idx(existing_file(real_mnist_dir, "train-images-idx3-ubyte"), kind="images").reshape(60_000, 784)
    raw_y = read_idx(existing_file(real_mnist_dir, "train-labels-idx1-ubyte"), kind="labels")
    # Boundaries: train ends at image 49,999, valid starts at 50,000.
    np.testing.assert_array_equal(d.train.pixels[-1], raw_x[49_999])
    np.testing.assert_array_equal(d.valid.pixels[0], raw_x[50_000])
    np.testing.assert_array_equal(d.valid.labels, raw_y[50_000:])
    # Scaling: uint8 / 256 exactly, so the largest pixel is 255/256, not 1.
    assert d.train.images.max() == np.float32(255 / 256)
    np.testing.assert_array_equal(d.test.images, d.test.pixels.astype(np.float32) / 256)
