"""What the page shows, computed from a run directory or a model file, with no web code.

:class:`RunView` loads everything once (the best model, its metadata, the history,
the snapshots) and is read-only afterwards, so its methods can be called from many
threads at once. Every picture the page draws is sent as numbers; the page colours
them with :func:`diverging_palette`, the colour map of the weights plot.

The evidence for class ``c`` of an input ``x`` (784 pixels / 256, float32) is the
element-wise product ``x * W[:, c]`` as a 28x28 map: its sum plus ``b[c]`` is the
class's score (logit), and ``softmax`` of the ten scores gives the probabilities.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import persistence
from ..config import SETTINGS, settings_in_use
from ..data.pixels import PIXEL_SCALE, SIDE
from ..errors import ModelFileError
from ..images import WORK_SIDE, Prepared, open_image, prepare, prepare_levels, to_gray
from ..model import LogisticRegression
from ..run import class_names_for
from .canvas import canvas_gray
from .doubt import doubt, ink_box, thresholds

_SNAPSHOT_NAME = re.compile(r"epoch-(\d+)\.safetensors")
_HISTORY_KEYS = ("epoch", "iteration", "train_nll", "valid_error", "test_error", "best_valid_error", "elapsed")
_OPTIMIZER_NAMES = {"sgd": "SGD", "cg": "CG", "lbfgs": "L-BFGS"}
_CAPS = {"n_epochs": "epochs run", "max_iter": "iterations run"}  # a cap, shown as what was run


def class_names(metadata: dict[str, Any], n_out: int) -> list[str]:
    """The names of the model's classes: its metadata's ``class_names``, else "0", "1", ..."""
    return class_names_for(metadata, n_out)


def features(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (28, 28) as the model's input: float32 of shape (1, 784), ``pixels / 256``."""
    return pixels.reshape(1, -1).astype(np.float32) * PIXEL_SCALE


def evidence_maps(pixels: np.ndarray, W: np.ndarray, classes: list[int]) -> np.ndarray:
    """``(pixels / 256) * W[:, c]`` for each class ``c``.

    Args:
        pixels: uint8 array of shape (28, 28).
        W: weights of shape (784, n_out).
        classes: the classes to explain.

    Returns:
        Array of shape (len(classes), 28, 28) in W's dtype; ``maps[i].sum() + b[c]``
        is class ``classes[i]``'s logit.
    """
    x = features(pixels)[0].astype(W.dtype)  # (784,)
    return (x[:, None] * W[:, classes]).T.reshape(len(classes), SIDE, SIDE)


@functools.lru_cache(maxsize=4)
def diverging_palette(n: int = 256) -> list[list[int]]:
    """The weights plot's colour map as ``n`` RGB triples (0-255), from most negative to most positive."""
    import matplotlib

    from ..plots import DIVERGING_CMAP

    rgba = matplotlib.colormaps[DIVERGING_CMAP](np.linspace(0.0, 1.0, n))
    return np.round(rgba[:, :3] * 255).astype(int).tolist()


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf: not JSON) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _rounded(a: np.ndarray, digits: int = 6) -> list:
    return np.round(a.astype(np.float64), digits).tolist()


def float32_base64(a: np.ndarray) -> str:
    """``a`` as base64 of its float32 little-endian values, in row-major order."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


class RunView:
    """A run directory (``best.safetensors``, ``history.jsonl``, ``config.json``,
    ``snapshots/``) or a single model file, loaded for the page.

    Raises:
        ModelFileError: the model is missing or malformed, or does not take 28x28 images.
    """

    def __init__(self, target: str | os.PathLike):
        path = Path(target)
        self.model, self.metadata = persistence.load_model(path)
        if self.model.n_in != SIDE * SIDE:
            raise ModelFileError(
                f"{path}: expected a model of 28x28 = 784 inputs to draw digits for, found {self.model.n_in} inputs"
            )
        self.name = path.resolve().name
        self.path = path
        self.run_dir = path if path.is_dir() else None
        self.class_names = class_names(self.metadata, self.model.n_out)
        self.history = self._read_history()
        self.snapshots = self._read_snapshots()
        models = [self.model, *list(self.snapshots.values())]
        self.weight_limit = max(float(np.abs(m.W).max()) for m in models) or 1.0
        self._curves_png: bytes | None = None
        self._curves_lock = threading.Lock()

    def _read_history(self) -> list[dict[str, Any]]:
        if self.run_dir is None or not (self.run_dir / persistence.HISTORY).is_file():
            return []
        return [
            {k: row.get(k) for k in _HISTORY_KEYS}
            for row in persistence.read_history(self.run_dir)
            if isinstance(row, dict)
        ]

    def _read_snapshots(self) -> dict[int, LogisticRegression]:
        if self.run_dir is None:
            return {}
        found = {}
        for path in sorted((self.run_dir / persistence.SNAPSHOTS).glob("epoch-*.safetensors")):
            match = _SNAPSHOT_NAME.fullmatch(path.name)
            if match is None:
                continue
            model, meta = persistence.load_model(path)
            epoch = meta.get("epoch")
            if model.W.shape == self.model.W.shape:
                found[epoch if isinstance(epoch, int) else int(match.group(1))] = model
        return dict(sorted(found.items()))

    @property
    def unit(self) -> str:
        return "epoch" if self.optimizer == "sgd" else "iteration"

    def describe(self) -> dict[str, Any]:
        """The run as ``GET /api/run`` answers it."""
        meta = self.metadata
        return json_safe(
            {
                "name": self.name,
                "title": self.title,
                "kind": "run" if self.run_dir is not None else "model",
                "dataset": meta.get("dataset"),
                "class_names": self.class_names,
                "n_in": self.model.n_in,
                "n_out": self.model.n_out,
                "config": meta.get("config"),
                "unit": self.unit,
                "best": {
                    k: meta.get(k) for k in ("epoch", "iteration", "valid_error", "test_error", "n_valid", "n_test")
                },
                "history": self.history,
                "snapshots": list(self.snapshots),
                "weight_limit": self.weight_limit,
                "palette": diverging_palette(),
                "scale": float(PIXEL_SCALE),
                "settings": self.settings(),
                "doubt": thresholds(),
            }
        )

    @property
    def optimizer(self) -> str:
        """The run's optimizer (``sgd``, ``cg``, ``lbfgs``), from its recorded configuration."""
        optimizer = (self.metadata.get("config") or {}).get("optimizer", "sgd")
        return optimizer if isinstance(optimizer, str) else "sgd"

    @property
    def runs_for(self) -> int | None:
        """How many epochs (iterations) the run went through: its history's last, else the best model's."""
        done = [row["epoch"] for row in self.history if isinstance(row.get("epoch"), int)]
        epoch = self.metadata.get("epoch")
        return max(done) if done else epoch if isinstance(epoch, int) else None

    @property
    def title(self) -> str:
        """E.g. ``MNIST - SGD, best at epoch 74``, or ``model.safetensors - L-BFGS`` when unknown."""
        from ..data.known import by_identity

        dataset = self.metadata.get("dataset")
        known = by_identity(dataset) if isinstance(dataset, str) else None
        shown = known.title if known else dataset if isinstance(dataset, str) else self.name
        title = f"{shown} - {_OPTIMIZER_NAMES.get(self.optimizer, self.optimizer)}"
        epoch = self.metadata.get("epoch")
        return f"{title}, best at {self.unit} {epoch}" if isinstance(epoch, int) else title

    def settings(self) -> list[dict[str, Any]]:
        """The recorded settings that shape what the run's optimizer learns, as ``{name, value, help}``;
        a cap on epochs (iterations) is shown as the number actually run."""
        config = self.metadata.get("config")
        if not isinstance(config, dict):
            return []
        shown = []
        drop_last = config.get("drop_last", SETTINGS["drop_last"].default) is True
        for s in settings_in_use(self.optimizer, drop_last=drop_last, shaping_only=True):
            if s.name == "optimizer" or s.name not in config:
                continue
            if s.name in _CAPS:
                if self.runs_for is not None:
                    shown.append(
                        {"name": _CAPS[s.name], "value": self.runs_for, "help": f"{s.help} (at most {config[s.name]})"}
                    )
                continue
            shown.append({"name": s.name, "value": config[s.name], "help": s.help})
        return shown

    def weights(self, epoch: int | None = None) -> dict[str, Any] | None:
        """The columns of ``W`` as 28x28 maps on the shared scale ``limit`` (best model, or a snapshot),
        with the exact weights for the page's arithmetic: ``b`` (n_out floats) and ``W``
        (:func:`float32_base64` of the (n_in, n_out) weights).

        Returns None when the run has no snapshot of that epoch.
        """
        model = self.model if epoch is None else self.snapshots.get(epoch)
        if model is None:
            return None
        maps = model.W.T.reshape(model.n_out, SIDE, SIDE)
        return {
            "epoch": self.metadata.get("epoch") if epoch is None else epoch,
            "best": epoch is None,
            "limit": self.weight_limit,
            "maps": _rounded(maps, 5),
            "b": model.b.astype(np.float64).tolist(),
            "W": float32_base64(model.W),
        }

    def prepare(
        self, data: bytes, *, raw: bool = False, max_decoded: int | None = None, gray: np.ndarray | None = None
    ) -> tuple[Prepared, np.ndarray]:
        """The image in ``data`` (file bytes) as the model's input, and its gray levels (for
        :func:`.doubt.ink_box`; those of a copy at most ``WORK_SIDE`` pixels across for a larger image).

        A drawing from the page's pad takes the short way of :mod:`.canvas` (the same ``prepared``);
        ``gray``: its gray levels when :func:`.canvas.canvas_gray` has already decoded them.

        Raises:
            DataError: the bytes are not an image the pipeline accepts, or it would take more
                than ``max_decoded`` bytes once decoded (default: the CLI's limit).
        """
        gray = canvas_gray(data) if gray is None else gray
        if gray is not None:
            return prepare_levels(gray, raw=raw), gray
        limits = {} if max_decoded is None else {"max_decoded": max_decoded}
        image = open_image(data, name="the request body", **limits)
        prepared = prepare(image, raw=raw)
        factor = -(-max(image.size) // WORK_SIDE)
        if factor > 1:  # any mode resizes by nearest neighbours; enough for the ink's extent
            image = image.resize(
                (max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.NEAREST
            )
        return prepared, to_gray(image)

    def predict(
        self,
        data: bytes,
        *,
        raw: bool = False,
        explain: bool = True,
        max_decoded: int | None = None,
        gray: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Prepare an image (file bytes) as MNIST and give the model's answer.

        Returns:
            label (int), name, probabilities (n_out floats), prepared (28x28 uint8 values),
            blank, inverted, doubt (None or ``{kind, message}``, :func:`.doubt.doubt`), and with
            ``explain`` evidence: {classes, names, maps (28x28 floats each), totals (map sums),
            biases, limit (their shared colour scale)}.

        Raises:
            DataError: as :meth:`prepare` (``gray`` as there).
        """
        prepared, gray = self.prepare(data, raw=raw, max_decoded=max_decoded, gray=gray)
        probs = self.model.p_y_given_x(features(prepared.pixels))[0]
        order = np.argsort(-probs, kind="stable")  # order[0] is argmax: the first of equals
        label = int(order[0])
        answer: dict[str, Any] = {
            "label": label,
            "name": self.class_names[label],
            "probabilities": probs.astype(np.float64).tolist(),
            "prepared": prepared.pixels.tolist(),
            "blank": prepared.blank,
            "inverted": prepared.inverted,
            "doubt": doubt(
                blank=prepared.blank,
                box=None if raw else ink_box(gray),
                probabilities=probs,
                names=self.class_names,
            ),
        }
        if explain:
            classes = [int(c) for c in order[:2]]  # the prediction and the runner-up
            maps = evidence_maps(prepared.pixels, self.model.W, classes)
            answer["evidence"] = {
                "classes": classes,
                "names": [self.class_names[c] for c in classes],
                "maps": _rounded(maps),
                "totals": [float(m.sum(dtype=np.float64)) for m in maps],
                "biases": [float(self.model.b[c]) for c in classes],
                "limit": float(np.abs(maps).max()) or 1.0,
            }
        return answer

    def warm_up(self) -> None:
        """Load now what the first requests would load (the colour map, the pipeline's SciPy
        modules), so that forked workers share it and no first answer waits for it."""
        self.describe()
        pad = Image.new("L", (280, 280), 255)
        pad.paste(0, (130, 60, 150, 220))  # a bar: a "1"
        buffer = io.BytesIO()
        pad.save(buffer, format="PNG")
        self.predict(buffer.getvalue(), explain=False)

    def learning_curves_png(self) -> bytes | None:
        """The run's learning curves as PNG (drawn once, by :mod:`logreg_mnist.plots`), or None."""
        if not self.history:
            return None
        with self._curves_lock:
            if self._curves_png is None:
                from ..plots import learning_curves_figure

                buf = io.BytesIO()
                learning_curves_figure(
                    self.history,
                    unit=self.unit,
                    title=f"Learning curves of {self.name}",
                    n_valid=self.metadata.get("n_valid"),
                    n_test=self.metadata.get("n_test"),
                ).savefig(buf, format="png", dpi=80)
                self._curves_png = buf.getvalue()
            return self._curves_png
