"""Photos of real MNIST test digits, written on paper, are predicted about as well as the digits themselves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from logreg_mnist import TrainConfig, train
from logreg_mnist.images import open_image, prepare
from logreg_mnist.predict import predict_files

from .photos import photo_set

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def mnist_model(real_mnist):
    model, _ = train(real_mnist, TrainConfig(n_epochs=5))  # a few seconds; about 92 % right
    return model


def test_photos_are_predicted_within_3_points_of_the_digits_themselves(real_mnist, mnist_model):
    n = 150
    pixels, labels = real_mnist.test.pixels[:n].reshape(n, 28, 28), real_mnist.test.labels[:n]
    on_mnist = float((mnist_model.predict(real_mnist.test.images[:n]) == labels).mean())
    # Smaller sheets than the benchmark's (benchmarks/bench_photos.py), to keep the suite fast.
    photos = photo_set(pixels, seed=11, box_range=(150, 260), margin_range=(0.05, 0.6))
    seen = np.concatenate([prepare(open_image(p, name=f"photo {i}")).features() for i, p in enumerate(photos)])
    on_photos = float((mnist_model.predict(seen) == labels).mean())
    assert on_mnist > 0.88
    assert on_photos >= on_mnist - 0.03, f"MNIST {on_mnist:.3f}, photos {on_photos:.3f}"


def test_16_bit_pngs_of_test_digits_keep_their_labels(real_mnist, mnist_model, tmp_path):
    n = 100
    pixels = real_mnist.test.pixels[:n].reshape(n, 28, 28)
    for i, digit in enumerate(pixels):
        Image.fromarray(digit.astype(np.uint16) * 257).save(tmp_path / f"digit{i:03d}.png")
    results = predict_files(mnist_model, [tmp_path])
    assert [r.input for r in results] == [str(tmp_path / f"digit{i:03d}.png") for i in range(n)]
    np.testing.assert_array_equal([r.label for r in results], mnist_model.predict(real_mnist.test.images[:n]))
