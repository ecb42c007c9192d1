"""Make the sample inputs under examples/: photos of a few MNIST test digits, and a small array.

    python examples/make_samples.py [--data-dir DIR]

Writes (reproducibly, from MNIST's test split):
    examples/my_digits/photo_D.jpg|png   a test digit D written in ink on a sheet of paper, photographed
                                         (uneven light, a slight rotation, blur, noise; JPEG or PNG)
    examples/my_digits/empty_sheet.png   the same kind of sheet with nothing written on it
    examples/my_digit.png                one such photo of a 3
    examples/digits.npy                  the first five test digits, uint8 (5, 28, 28)

The photos are drawn by ``tests/photos.py``, the generator the test suite and
``benchmarks/bench_photos.py`` measure the image pipeline with.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests/photos.py

from logreg_mnist import load_mnist  # noqa: E402
from tests.photos import photo_of_digit  # noqa: E402

EXAMPLES = ROOT / "examples"
DIGITS = (0, 1, 2, 4, 5, 7)  # one photo of the first test image of each of these classes
BOX = (110, 150)  # the digit's 20-pixel box in photo pixels: small files, still a photo


def _extension(data: bytes) -> str:
    return ".jpg" if data[:3] == b"\xff\xd8\xff" else ".png"


def _write(path_without_suffix: Path, data: bytes) -> Path:
    for old in path_without_suffix.parent.glob(path_without_suffix.name + ".*"):
        old.unlink()
    path = path_without_suffix.with_suffix(_extension(data))
    path.write_bytes(data)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST's directory (default: as load_mnist finds it)")
    args = parser.parse_args()

    test = load_mnist(args.data_dir).test
    images, labels = test.pixels.reshape(-1, 28, 28), test.labels  # uint8 (10000, 28, 28), int64 (10000,)
    folder = EXAMPLES / "my_digits"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for digit in DIGITS:
        index = int(np.flatnonzero(labels == digit)[0])
        rng = np.random.default_rng(1000 + digit)
        written.append(_write(folder / f"photo_{digit}", photo_of_digit(images[index], rng, box_range=BOX)))
    blank = photo_of_digit(np.zeros((28, 28), np.uint8), np.random.default_rng(7), box_range=BOX)
    written.append(_write(folder / "empty_sheet", blank))
    three = int(np.flatnonzero(labels == 3)[0])
    photo = photo_of_digit(images[three], np.random.default_rng(3), box_range=BOX)
    (EXAMPLES / "my_digit.png").unlink(missing_ok=True)
    Image.open(io.BytesIO(photo)).save(  # as PNG, whatever photo_of_digit chose
        EXAMPLES / "my_digit.png", optimize=True)
    written.append(EXAMPLES / "my_digit.png")
    np.save(EXAMPLES / "digits.npy", np.ascontiguousarray(images[:5]))
    written.append(EXAMPLES / "digits.npy")
    for path in written:
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
