"""The test digits a run's best model gets wrong, for ``GET /api/mistakes``.

The run's test split is loaded as the run recorded it (:func:`~logreg_mnist.run.load_run_data`,
never downloaded), once, on the first request; the mistakes are found once and kept.
When the data cannot be loaded (a lone model file that records none, data moved or
changed), the reason is kept and given to every request.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from ..data.pixels import PIXEL_SCALE, SIDE
from ..errors import LogregMnistError
from ..model import LogisticRegression

MAX_LIMIT = 100  # items in one answer
BATCH = 2000  # test images scored at once


class Mistakes:
    """The misclassified test digits of ``model``, trained on the data ``target`` records."""

    def __init__(self, target: str | os.PathLike, model: LogisticRegression):
        self._target = target
        self._model = model
        self._lock = threading.Lock()
        self._found: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pixels = np.zeros((0, SIDE * SIDE), np.uint8)  # the test split's, once loaded
        self._reason: str | None = None

    def _load(self) -> None:
        from ..run import load_run_data

        try:
            data = load_run_data(self._target, download=False, progress=False, warn=lambda text: None)
        except LogregMnistError as e:
            self._reason = f"the run's test digits cannot be loaded: {e}"
            return
        split = data.test
        if split.pixels is None or split.pixels.shape[1] != SIDE * SIDE:
            self._reason = "the run's test digits are not 28x28 images of whole gray levels"
            return
        pixels = split.pixels
        probs = (
            np.concatenate(
                [
                    self._model.p_y_given_x(pixels[i : i + BATCH].astype(np.float32) * PIXEL_SCALE)
                    for i in range(0, len(split), BATCH)
                ]
            )
            if len(split)
            else np.zeros((0, self._model.n_out), np.float32)
        )
        predicted = np.argmax(probs, axis=1)
        wrong = np.nonzero(predicted != split.labels)[0]
        self._found = (wrong, split.labels[wrong], predicted[wrong], probs[wrong])
        self._pixels = pixels

    def page(self, offset: int, limit: int) -> dict[str, Any] | str:
        """``{total, offset, items}`` from the ``offset``-th mistake, at most ``limit`` of them
        (each ``{index, label, predicted, probabilities, pixels}``, ``index`` in the test split);
        or the reason, as a sentence, why there are none to show."""
        with self._lock:
            if self._found is None and self._reason is None:
                self._load()
        if self._found is None:
            return self._reason or "the run's test digits cannot be loaded"
        wrong, labels, predicted, probs = self._found
        items = [
            {
                "index": int(wrong[k]),
                "label": int(labels[k]),
                "predicted": int(predicted[k]),
                "probabilities": probs[k].astype(np.float64).tolist(),
                "pixels": self._pixels[wrong[k]].reshape(SIDE, SIDE).tolist(),
            }
            for k in range(offset, min(offset + limit, len(wrong)))
        ]
        return {"total": len(wrong), "offset": offset, "items": items}
