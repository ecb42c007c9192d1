"""A dataset as the package holds it: three splits of uint8 pixels and int64 labels, with their origin.

``Split.images`` is what the model sees, float32 ``pixels / 256``
(:data:`~logreg_mnist.data.pixels.PIXEL_SCALE`); ``Split.pixels`` keeps the uint8
values for the engines that hold four times less data resident. ``Dataset`` knows
where the splits came from, whether they are a known dataset's
(:mod:`logreg_mnist.data.known`) and the names of their classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import DataError
from .known import by_identity, numeric_names
from .pixels import PIXEL_SCALE


@dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes:
        labels: int64 array of shape (n,).
        pixels: uint8 array of shape (n, n_features), or None when the source had
            float pixels that are not multiples of 1/256.
    """

    labels: np.ndarray
    pixels: np.ndarray | None = None
    _images: np.ndarray | None = field(default=None, repr=False)

    @cached_property
    def images(self) -> np.ndarray:
        """float32 array of shape (n, n_features): ``pixels / 256``."""
        if self._images is not None:
            return self._images
        assert self.pixels is not None  # a split holds pixels or float images (see __init__)
        return self.pixels.astype(np.float32) * PIXEL_SCALE

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_features(self) -> int:
        return (self.pixels if self.pixels is not None else self.images).shape[1]


@dataclass(frozen=True)
class Dataset:
    """The three splits, where they came from, and whether they are verified MNIST.

    Attributes:
        identity: ``"mnist"`` or ``"fashion-mnist"`` when all four files match that
            dataset's SHA-256 (see :mod:`logreg_mnist.data.known`), else
            ``"idx-<16 hex digits>"`` (a fingerprint of the four files) or
            ``"pickle-<16 hex digits>"`` for a legacy pickle.
        class_names: one name per label (list of str): the known dataset's names,
            those of a ``classes.txt`` beside the files, else ``"0"``, ``"1"``, ...
    """

    train: Split
    valid: Split
    test: Split
    source: Path
    identity: str
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        for name in ("train", "valid", "test"):
            if len(self.split(name)) == 0:
                raise DataError(f"{self.source}: expected at least 1 image in the {name} split, found 0")
        labels = {int(v) for s in (self.train, self.valid, self.test) for v in np.unique(s.labels)}
        if len(labels) < 2:
            raise DataError(
                f"{self.source}: expected labels of at least 2 classes, found only class {labels.pop()} "
                "(a classifier needs two classes to tell apart)"
            )
        names = self.class_names
        if names is None:
            known = by_identity(self.identity)
            names = list(known.class_names) if known else numeric_names(self.n_classes)
        names = [str(n) for n in names]
        if len(names) < self.n_classes:
            raise DataError(
                f"{self.source}: expected a name for each of the {self.n_classes} classes, found {len(names)}"
            )
        object.__setattr__(self, "class_names", names)

    @property
    def verified(self) -> bool:
        """Whether the files are a known dataset's, by SHA-256 (MNIST, Fashion-MNIST)."""
        return by_identity(self.identity) is not None

    @property
    def title(self) -> str:
        """The dataset's name for people: ``"MNIST"``, ``"Fashion-MNIST"``, else its identity."""
        known = by_identity(self.identity)
        return known.title if known else self.identity

    @property
    def n_features(self) -> int:
        return self.train.n_features

    @property
    def n_classes(self) -> int:
        return int(max(int(s.labels.max()) for s in (self.train, self.valid, self.test) if len(s)) + 1)

    def split(self, name: str) -> Split:
        if name not in ("train", "valid", "test"):
            raise DataError(f"expected a split name in (train, valid, test), found {name!r}")
        return getattr(self, name)

    def summary(self) -> str:
        status = f"{self.title}, SHA-256 verified" if self.verified else f"unverified dataset {self.identity}"
        lines = [f"{status}, from {self.source}"]
        names = self.class_names or []  # always a list after __post_init__
        if names != numeric_names(len(names)):
            lines.append("  classes: " + ", ".join(f"{i} {n}" for i, n in enumerate(names)))
        side = int(round(np.sqrt(self.n_features)))
        shape = f"{side}x{side}" if side * side == self.n_features else f"{self.n_features} features"
        for name in ("train", "valid", "test"):
            s = self.split(name)
            first = " ".join(str(int(v)) for v in s.labels[:10])
            counts = np.bincount(s.labels, minlength=self.n_classes)
            lines.append(
                f"  {name:<5} {len(s):>6,} images {shape}, labels {s.labels.min()}-{s.labels.max()}, "
                f"per class {counts.min():,}-{counts.max():,}, first labels: {first}"
            )
        return "\n".join(lines)
