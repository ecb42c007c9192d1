"""Accuracy on photos of handwritten digits against accuracy on the same digits as MNIST images,
and the time ``logreg-mnist predict RUN DIR`` takes per photo against a bare decode.

MNIST test digits are drawn as dark ink on paper (``tests/photos.py``: the digit's 20-pixel
box becomes 150-500 photo pixels, off-centre on a larger sheet, uneven light and shadows,
a slight rotation, blur, noise, JPEG at qualities 30-95 or PNG, colour or gray), then
read back through ``open_image`` and ``prepare``, the pipeline ``predict`` uses. The model is
trained here with the tutorial preset (or loaded with ``--model``). Prints both accuracies,
the gap in points, and the time to prepare a photo against the time to decode it, in this
process.

Then, measured in the same run, the command as a user runs it: the photos written to a
directory, ``logreg-mnist predict RUN DIR --json`` (all cores) against a bare Pillow decode
of the same files in one process (``Image.open(path).load()``). The wall time per photo
after start-up is ``(t(DIR) - t(one photo)) / (n - 1)``; the target is at most 3x the decode.
The accuracy of the command's own answers is printed too. The machine should be quiet.

    python benchmarks/bench_photos.py [--n 1000] [--seed 0] [--model RUN_OR_FILE] [--epochs E]
                                      [--repeat 3] [--data-dir DIR]

A quick check: ``--n 100 --epochs 1 --repeat 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/photos.py

from PIL import Image

from logreg_mnist import load_mnist, load_model, preset, train
from logreg_mnist._parallel import usable_cores
from logreg_mnist.images import open_image, prepare
from tests.photos import photo_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="test digits to photograph (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the photo generator (default: 0)")
    parser.add_argument(
        "--model", default=None, help="a run directory or model file (default: train the tutorial preset)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs when training here (default: the preset's)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the command line timing; medians (default: 3)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    data = load_mnist(args.data_dir, progress=False)
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        run = args.model
        if not run:
            config = preset("tutorial")
            if args.epochs:
                config = dataclasses.replace(config, n_epochs=args.epochs)
            start = time.perf_counter()
            run = str(Path(tmp) / "run")
            train(data, config, run)
            print(
                f"trained the tutorial preset ({config.n_epochs} epochs at most) in {time.perf_counter() - start:.1f} s"
            )
        model, _ = load_model(run)
        n = min(args.n, len(data.test))
        pixels, labels = data.test.pixels[:n].reshape(n, 28, 28), data.test.labels[:n]
        on_mnist = float((model.predict(data.test.images[:n]) == labels).mean())
        photos = photo_set(pixels, seed=args.seed)
        in_process(model, photos, labels, on_mnist, args.seed)
        command_line(run, photos, labels, on_mnist, args.repeat, Path(tmp))


def in_process(model, photos: list[bytes], labels: np.ndarray, on_mnist: float, seed: int) -> None:
    """``open_image`` and ``prepare`` one photo after another in this process."""
    n = len(photos)
    start = time.perf_counter()
    decoded = [open_image(p, name=f"photo {i}") for i, p in enumerate(photos)]
    decode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    prepared = [prepare(image) for image in decoded]
    prepare_seconds = time.perf_counter() - start
    on_photos = float((model.predict(np.concatenate([p.features() for p in prepared])) == labels).mean())
    sides = [max(image.size) for image in decoded]
    print(
        f"{n} MNIST test digits; photos of them: {np.mean([len(p) for p in photos]) / 1e3:.0f} KB on average, "
        f"{min(sides)}-{max(sides)} pixels on the longer side as decoded (seed {seed})"
    )
    print(f"accuracy on the MNIST images : {on_mnist * 100:6.2f} %")
    print(f"accuracy on the photos       : {on_photos * 100:6.2f} %")
    print(f"gap                          : {(on_mnist - on_photos) * 100:6.2f} points (goal: within 3)")
    print(
        f"photos found blank           : {sum(p.blank for p in prepared)}; "
        f"read as dark on light: {sum(p.inverted for p in prepared)}"
    )
    print(
        f"in this process, per photo: open_image {decode_seconds / n * 1e3:.1f} ms, prepare "
        f"{prepare_seconds / n * 1e3:.1f} ms"
    )


def _wall(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def command_line(run: str, photos: list[bytes], labels: np.ndarray, on_mnist: float, repeat: int, root: Path) -> None:
    """``logreg-mnist predict RUN DIR`` against a bare Pillow decode of the same files."""
    cli = shutil.which("logreg-mnist", path=str(Path(sys.executable).parent)) or "logreg-mnist"
    n = len(photos)
    (root / "photos").mkdir()
    paths = []
    for i, data in enumerate(photos):
        path = root / "photos" / f"photo-{i:05d}.{'jpg' if data[:2] == bytes([0xFF, 0xD8]) else 'png'}"
        path.write_bytes(data)
        paths.append(path)
    decode, whole, single, answers = [], [], [], ""
    for _ in range(repeat):  # alternated, so that a change in the machine's load touches all three
        start = time.perf_counter()
        for path in paths:
            with Image.open(path) as im:
                im.load()
        decode.append((time.perf_counter() - start) / n)
        seconds, _ = _wall([cli, "predict", run, str(paths[0])])
        single.append(seconds)
        seconds, answers = _wall([cli, "predict", run, str(root / "photos"), "--json"])
        whole.append(seconds)
    per_photo = (statistics.median(whole) - statistics.median(single)) / max(1, n - 1)
    bare = statistics.median(decode)
    on_photos = float((np.array([r["label"] for r in json.loads(answers)]) == labels).mean())
    print(
        f"\n`logreg-mnist predict RUN DIR` on the {n} photo files, {usable_cores()} cores "
        f"(median of {repeat}, alternated): {statistics.median(whole):.2f} s; "
        f"start-up (one photo) {statistics.median(single):.2f} s"
    )
    print(
        f"wall time per photo after start-up: {per_photo * 1e3:.2f} ms; bare Pillow decode in one process: "
        f"{bare * 1e3:.2f} ms; ratio {per_photo / bare:.2f}x (target: at most 3x)"
    )
    print(
        f"accuracy of the command's answers: {on_photos * 100:.2f} %, "
        f"{(on_mnist - on_photos) * 100:.2f} points below the MNIST images (goal: within 3)"
    )


if __name__ == "__main__":
    main()
