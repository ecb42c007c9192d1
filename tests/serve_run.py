"""A hand-made run directory for the serve tests: a model that tells a drawn 0 from a drawn 1.

Class 0's weights are a ring and class 1's a vertical bar (each minus its mean), both as
the image pipeline prepares them; the other classes have small random weights. So a
drawn ring is predicted 0 and a drawn bar 1, with no training and no data.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from logreg_mnist.images import open_image, prepare
from logreg_mnist.persistence import save_model


def drawing(kind: str, size: int = 280, mode: str = "L") -> Image.Image:
    """A black-on-white drawing of a ring ("0") or a vertical bar ("1"), like the page's pad."""
    im = Image.new(mode, (size, size), "white")
    d = ImageDraw.Draw(im)
    width = size // 14
    if kind == "0":
        d.ellipse([size * 0.25, size * 0.12, size * 0.75, size * 0.88], outline="black", width=width)
    elif kind == "1":
        d.line([(size * 0.5, size * 0.12), (size * 0.5, size * 0.88)], fill="black", width=width)
    else:
        raise ValueError(kind)
    return im


def png_bytes(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def template_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """W (784, 10) float32 and b (10,): class 0 a ring, class 1 a bar, the others small noise."""
    rng = np.random.default_rng(seed)
    W = (0.01 * rng.standard_normal((784, 10))).astype(np.float32)
    for k in ("0", "1"):
        x = prepare(open_image(png_bytes(drawing(k)))).pixels.reshape(-1) / 256
        W[:, int(k)] = (x - x.mean()) * 4
    return W, np.zeros(10, np.float32)


def make_run(directory: Path, n_epochs: int = 3) -> Path:
    """A run directory as ``train`` leaves it: best model, history, config, snapshots per epoch."""
    (directory / "snapshots").mkdir(parents=True, exist_ok=True)
    W, b = template_weights()
    config = {"optimizer": "sgd", "learning_rate": 0.13, "batch_size": 600}
    history = []
    for epoch in range(1, n_epochs + 1):
        scale = epoch / n_epochs
        save_model(directory / "snapshots" / f"epoch-{epoch:04d}.safetensors", W * scale, b,
                   {"config": config, "dataset": "hand-made", "epoch": epoch})
        history.append({"epoch": epoch, "iteration": 10 * epoch, "train_nll": 1.0 / epoch,
                        "valid_error": 0.3 / epoch, "test_error": 0.31 / epoch if epoch > 1 else None,
                        "best_valid_error": 0.3 / epoch, "elapsed": 0.1 * epoch})
    save_model(directory / "best.safetensors", W, b, {"config": config, "dataset": "hand-made", "epoch": n_epochs,
                                                      "iteration": 10 * n_epochs, "valid_error": 0.1,
                                                      "test_error": 0.11})
    (directory / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (directory / "config.json").write_text(json.dumps({"config": config, "dataset": "hand-made"}))
    return directory
