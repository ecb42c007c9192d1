"""logreg-mnist: multinomial logistic regression on MNIST, after the Deep Learning Tutorials.

    >>> from logreg_mnist import load_mnist, LogisticRegression, train

Names are imported on first use (PEP 562), so ``import logreg_mnist`` is quick and
scikit-learn, SciPy and matplotlib are loaded only by what needs them.
"""

from __future__ import annotations

import sys

# Only sys here: this module runs first whenever the command starts, before the command can
# install its Ctrl-C handling, so it must be instant (typing alone would take 20 ms).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any
else:
    ModuleType = type(sys)

# public name -> module that defines it
_LAZY = {
    "TrainConfig": ".config",
    "preset": ".config",
    "Dataset": ".data",
    "Split": ".data",
    "load_mnist": ".data",
    "LogregMnistError": ".errors",
    "SoftmaxRegressionClassifier": ".estimator",
    "LogisticRegression": ".model",
    "load_model": ".persistence",
    "save_model": ".persistence",
    "load_history": ".run",
    "load_run_data": ".run",
    "History": ".train",
    "train": ".train",
    "__version__": "._version",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(ModuleType):
    """``logreg_mnist.train`` is the function, as with an eager ``from .train import train``.

    Importing the submodule ``logreg_mnist.train`` makes the import system bind the
    module to the package's attribute ``train``; this property keeps the public name
    the function all the same.
    """

    @property
    def train(self):
        from .train import train

        return train

    @train.setter
    def train(self, value) -> None:  # the import system binding the submodule: the function stays
        pass


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs
    from ._version import __version__ as __version__
    from .config import TrainConfig as TrainConfig
    from .config import preset as preset
    from .data import Dataset as Dataset
    from .data import Split as Split
    from .data import load_mnist as load_mnist
    from .errors import LogregMnistError as LogregMnistError
    from .estimator import SoftmaxRegressionClassifier as SoftmaxRegressionClassifier
    from .model import LogisticRegression as LogisticRegression
    from .persistence import load_model as load_model
    from .persistence import save_model as save_model
    from .run import load_history as load_history
    from .run import load_run_data as load_run_data
    from .train import History as History
    from .train import train as train
