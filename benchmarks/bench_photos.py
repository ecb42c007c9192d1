"""Accuracy on photos of handwritten digits against accuracy on the same digits as MNIST images.

MNIST test digits are drawn as dark ink on paper (``tests/photos.py``: the digit's 20-pixel
box becomes 150-500 photo pixels, off-centre on a larger sheet, uneven light and shadows,
a slight rotation, blur, noise, JPEG at qualities 30-95 or PNG, colour or gray), then
read back through ``open_image`` and ``prepare``, the pipeline ``predict`` uses. The model is
trained here with the tutorial preset (or loaded with ``--model``). Prints both accuracies,
the gap in points, and the time to prepare a photo against the time to decode it.

    python benchmarks/bench_photos.py [--n 1000] [--seed 0] [--model RUN_OR_FILE] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/photos.py

from logreg_mnist import load_mnist, load_model, preset, train  # noqa: E402
from logreg_mnist.images import open_image, prepare  # noqa: E402
from tests.photos import photo_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="test digits to photograph (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the photo generator (default: 0)")
    parser.add_argument("--model", default=None, help="a trained model (default: train the tutorial preset)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    data = load_mnist(args.data_dir, progress=False)
    if args.model:
        model, _ = load_model(args.model)
    else:
        start = time.perf_counter()
        model, _ = train(data, preset("tutorial"))
        print(f"trained the tutorial preset in {time.perf_counter() - start:.1f} s")
    n = min(args.n, len(data.test))
    pixels, labels = data.test.pixels[:n].reshape(n, 28, 28), data.test.labels[:n]

    on_mnist = float((model.predict(data.test.images[:n]) == labels).mean())

    photos = photo_set(pixels, seed=args.seed)
    sizes = [len(p) for p in photos]
    start = time.perf_counter()
    decoded = [open_image(p, name=f"photo {i}") for i, p in enumerate(photos)]
    decode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    prepared = [prepare(image) for image in decoded]
    prepare_seconds = time.perf_counter() - start
    seen = np.concatenate([p.features() for p in prepared])
    predicted = model.predict(seen)
    on_photos = float((predicted == labels).mean())

    print(f"{n} MNIST test digits; photos of them: {np.mean(sizes) / 1e3:.0f} KB on average (seed {args.seed})")
    print(f"accuracy on the MNIST images : {on_mnist * 100:6.2f} %")
    print(f"accuracy on the photos       : {on_photos * 100:6.2f} %")
    print(f"gap                          : {(on_mnist - on_photos) * 100:6.2f} points (goal: within 3)")
    print(f"photos found blank           : {sum(p.blank for p in prepared)}; "
          f"read as dark on light: {sum(p.inverted for p in prepared)}")
    print(f"time per photo: decoding {decode_seconds / n * 1e3:.1f} ms, preparing {prepare_seconds / n * 1e3:.1f} ms "
          f"({prepare_seconds / decode_seconds:.2f}x the decoding)")

if __name__ == "__main__":
    main()
