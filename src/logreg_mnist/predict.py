"""Using a trained model: predictions on a user's inputs, and evaluation on the splits.

The inputs themselves (files, directories, pipes, standard input) are read by
:mod:`logreg_mnist.inputs`; its names are kept importable from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .data import Dataset
from .data.pixels import BLANK_LEVEL, PIXEL_SCALE
from .errors import DataError
from .inputs import IMAGE_SUFFIXES, Input, check_picture_path, load_inputs, load_npy, read_inputs
from .model import LogisticRegression

__all__ = [
    "IMAGE_SUFFIXES",
    "LOW_CONFIDENCE",
    "Input",
    "Prediction",
    "check_picture_path",
    "evaluate",
    "load_inputs",
    "load_npy",
    "predict_files",
    "predictions",
    "read_inputs",
]

LOW_CONFIDENCE = 0.5  # a top probability below this is flagged as a guess


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image.

    ``top`` holds the three most probable classes as (label, probability), best first;
    ``blank`` says no ink was found (the prediction means nothing); ``low_confidence``
    that the top probability is below :data:`LOW_CONFIDENCE`; ``inverted`` that a dark-on-
    light picture was flipped to MNIST's polarity.
    """

    input: str  # file name, with [index] for files holding several images
    label: int
    probability: float
    runner_up: int = -1
    runner_up_probability: float = 0.0
    top: tuple[tuple[int, float], ...] = ()
    blank: bool = False
    low_confidence: bool = False
    inverted: bool = False

    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "label": self.label,
            "probability": self.probability,
            "runner_up": self.runner_up,
            "runner_up_probability": self.runner_up_probability,
            "top": [{"label": k, "probability": p} for k, p in self.top],
            "blank": self.blank,
            "low_confidence": self.low_confidence,
            "inverted": self.inverted,
        }


def predictions(model: LogisticRegression, inputs: list[Input]) -> list[Prediction]:
    """One :class:`Prediction` per image in ``inputs``, with the runner-up and the flags."""
    results = []
    for item in inputs:
        probs = model.p_y_given_x(item.features)
        order = np.argsort(-probs, axis=1, kind="stable")
        for i in range(len(item.features)):
            top = tuple((int(k), float(probs[i, k])) for k in order[i, :3])
            if item.prepared:
                blank, inverted = item.prepared[i].blank, item.prepared[i].inverted
            else:
                blank, inverted = bool(item.features[i].max() < BLANK_LEVEL * PIXEL_SCALE), False
            runner_up = top[1] if len(top) > 1 else (-1, 0.0)
            results.append(
                Prediction(
                    item.name if len(item.features) == 1 else f"{item.name}[{i}]",
                    top[0][0],
                    top[0][1],
                    runner_up[0],
                    runner_up[1],
                    top,
                    blank,
                    top[0][1] < LOW_CONFIDENCE,
                    inverted,
                )
            )
    return results


def predict_files(model: LogisticRegression, paths: list[str | os.PathLike], *, raw: bool = False) -> list[Prediction]:
    """One :class:`Prediction` per image in the given files (see :func:`load_inputs`)."""
    return predictions(model, load_inputs(paths, model.n_in, raw=raw, thumbnails=False))


def evaluate(model: LogisticRegression, data: Dataset) -> dict:
    """Validation and test error over every example, and the test error per class.

    Returns:
        ``{"valid": {...}, "test": {...}}``, each with ``error``, ``wrong``, ``n`` and
        ``per_class``: a list of ``{"label", "n", "wrong", "error"}``.
    """
    if model.n_in != data.n_features:
        raise DataError(f"the model takes {model.n_in} features, the data has {data.n_features}")
    report = {}
    for name in ("valid", "test"):
        split = data.split(name)
        pred = model.predict(split.images)
        wrong_mask = pred != split.labels
        per_class = []
        for label in range(max(model.n_out, data.n_classes)):
            mask = split.labels == label
            n, wrong = int(mask.sum()), int(wrong_mask[mask].sum())
            per_class.append({"label": label, "n": n, "wrong": wrong, "error": wrong / n if n else None})
        report[name] = {
            "error": float(wrong_mask.mean()),
            "wrong": int(wrong_mask.sum()),
            "n": len(split),
            "per_class": per_class,
        }
    return report
