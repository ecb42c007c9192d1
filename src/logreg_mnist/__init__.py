"""logreg-mnist: multinomial logistic regression on MNIST, after the Deep Learning Tutorials.

    >>> from logreg_mnist import load_mnist, LogisticRegression, train
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("logreg-mnist")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .config import TrainConfig, preset  # noqa: E402
from .data import Dataset, Split, load_mnist  # noqa: E402
from .errors import LogregMnistError  # noqa: E402
from .estimator import SoftmaxRegressionClassifier  # noqa: E402
from .model import LogisticRegression  # noqa: E402
from .persistence import load_model, save_model  # noqa: E402
from .run import load_history, load_run_data  # noqa: E402
from .train import History, train  # noqa: E402

__all__ = [
    "Dataset", "History", "LogisticRegression", "LogregMnistError", "SoftmaxRegressionClassifier", "Split",
    "TrainConfig",
    "__version__", "load_history", "load_mnist", "load_model", "load_run_data", "preset", "save_model", "train",
]
