"""logreg-mnist: multinomial logistic regression on MNIST, after the Deep Learning Tutorials.

    >>> from logreg_mnist import load_mnist, LogisticRegression, train

Names are imported on first use (PEP 562), so ``import logreg_mnist`` is quick and
scikit-learn, SciPy and matplotlib are loaded only by what needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY = {
    "TrainConfig": ".config", "preset": ".config",
    "Dataset": ".data", "Split": ".data", "load_mnist": ".data",
    "LogregMnistError": ".errors",
    "SoftmaxRegressionClassifier": ".estimator",
    "LogisticRegression": ".model",
    "load_model": ".persistence", "save_model": ".persistence",
    "History": ".train", "train": ".train",
    "__version__": "._version",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and IDEs
    from ._version import __version__
    from .config import TrainConfig, preset
    from .data import Dataset, Split, load_mnist
    from .errors import LogregMnistError
    from .estimator import SoftmaxRegressionClassifier
    from .model import LogisticRegression
    from .persistence import load_model, save_model
    from .train import History, train
