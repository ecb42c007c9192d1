"""Multinomial logistic regression: ``P(Y=i | x) = softmax(x W + b)_i``.

The maths lives in pure functions of ``(W, b, x, y)``; :class:`LogisticRegression`
holds the parameters and offers the chapter's names (``p_y_given_x``, ``y_pred``
as :meth:`~LogisticRegression.predict`, ``negative_log_likelihood``, ``errors``).

Shapes: ``x`` (n, n_in) float, ``y`` (n,) int, ``W`` (n_in, n_out), ``b`` (n_out,).

The penalties regularise ``W`` only, never ``b`` (as in the tutorials' ``mlp.py``):
``L1 = sum |W|`` and ``L2_sqr = sum W**2``; the training cost is
``mean NLL + l1 * L1 + l2 * L2_sqr``.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax(z)``, stable for any finite ``z`` of shape (n, k)."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``z`` (n, k); rows sum to 1."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def logits(W: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x W + b``: (n, n_out)."""
    return x @ W + b


def nll(W: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood ``-mean_i log P(Y=y_i | x_i)`` over the n rows."""
    logp = log_softmax(logits(W, b, x))
    return float(-logp[np.arange(len(y)), y].mean())


def errors(W: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean zero-one loss: the fraction of rows whose arg-max class is not ``y``."""
    return float(np.mean(np.argmax(logits(W, b, x), axis=1) != y))


def l1_penalty(W: np.ndarray) -> float:
    """``sum |W|`` (b is not penalised)."""
    return float(np.abs(W).sum())


def l2_sqr_penalty(W: np.ndarray) -> float:
    """``sum W**2`` (b is not penalised)."""
    return float(np.square(W).sum())


def cost_and_grad(
    W: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, l1: float = 0.0, l2: float = 0.0
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """The training cost and its closed-form gradient.

    ``cost = mean NLL + l1 * sum|W| + l2 * sum W**2``, and with ``P = softmax(xW + b)``
    and ``Y`` the one-hot labels: ``dcost/dW = x^T (P - Y) / n + l1 sign(W) + 2 l2 W``,
    ``dcost/db = sum_rows (P - Y) / n``.

    Returns:
        (cost, summed per-example NLL, gW of W's shape, gb of b's shape), the
        gradients in the dtype of ``x``.
    """
    n = len(y)
    rows = np.arange(n)
    logp = log_softmax(logits(W, b, x))  # (n, n_out)
    nll_sum = float(-logp[rows, y].sum(dtype=np.float64))
    z = np.exp(logp, out=logp)  # P, (n, n_out)
    z[rows, y] -= 1
    z /= n  # dcost/dlogits, (n, n_out)
    gW = x.T @ z
    gb = z.sum(axis=0)
    cost = nll_sum / n
    if l1:
        gW += l1 * np.sign(W)
        cost += l1 * l1_penalty(W)
    if l2:
        gW += (2 * l2) * W
        cost += l2 * l2_sqr_penalty(W)
    return cost, nll_sum, gW, gb


class LogisticRegression:
    """Multinomial logistic regression, as in the chapter's ``LogisticRegression`` class.

    Args:
        n_in: number of input features (784 for 28x28 images).
        n_out: number of classes.
        init: ``"zeros"`` (the chapter's choice; the cost is convex, so symmetry is
            no problem) or ``"random"``: small normal values, ``scale`` * N(0, 1).
        seed: seed of the random init.
        scale: standard deviation of the random init.
        dtype: float32 (the chapter's floatX on a GPU) or float64.

    Attributes:
        W: array of shape (n_in, n_out).
        b: array of shape (n_out,).

    Example:
        >>> model = LogisticRegression(784, 10)
        >>> model.predict(np.zeros((2, 784), np.float32))
        array([0, 0])
    """

    def __init__(
        self,
        n_in: int = 784,
        n_out: int = 10,
        *,
        init: str = "zeros",
        seed: int = 0,
        scale: float = 0.01,
        dtype=np.float32,
    ):
        if init not in ("zeros", "random"):
            raise ConfigError(f"init: expected 'zeros' or 'random', found {init!r}")
        if n_in < 1 or n_out < 2:
            raise ConfigError(f"expected n_in >= 1 and n_out >= 2, found n_in={n_in}, n_out={n_out}")
        dtype = np.dtype(dtype)
        if init == "zeros":
            self.W = np.zeros((n_in, n_out), dtype=dtype)
        else:
            self.W = (scale * np.random.default_rng(seed).standard_normal((n_in, n_out))).astype(dtype)
        self.b = np.zeros(n_out, dtype=dtype)

    @classmethod
    def from_params(cls, W: np.ndarray, b: np.ndarray) -> LogisticRegression:
        """A model holding (copies of) ``W`` (n_in, n_out) and ``b`` (n_out,)."""
        W, b = np.asarray(W), np.asarray(b)
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ConfigError(f"expected W (n_in, n_out) and b (n_out,), found {W.shape} and {b.shape}")
        model = cls.__new__(cls)
        model.W, model.b = W.copy(), b.astype(W.dtype, copy=True)
        return model

    @property
    def n_in(self) -> int:
        return self.W.shape[0]

    @property
    def n_out(self) -> int:
        return self.W.shape[1]

    def _x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=self.W.dtype)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ConfigError(f"expected inputs of shape (n, {self.n_in}), found {x.shape}")
        return x

    def p_y_given_x(self, x) -> np.ndarray:
        """Class probabilities, (n, n_out); rows sum to 1."""
        return softmax(logits(self.W, self.b, self._x(x)))

    def log_p_y_given_x(self, x) -> np.ndarray:
        """Log class probabilities, (n, n_out), computed stably."""
        return log_softmax(logits(self.W, self.b, self._x(x)))

    def predict(self, x) -> np.ndarray:
        """The chapter's ``y_pred``: the most probable class per row, (n,) int."""
        return np.argmax(logits(self.W, self.b, self._x(x)), axis=1)

    def negative_log_likelihood(self, x, y) -> float:
        """Mean NLL over the minibatch (see :func:`nll`)."""
        return nll(self.W, self.b, self._x(x), np.asarray(y))

    def errors(self, x, y) -> float:
        """Mean zero-one loss over the minibatch (see :func:`errors`)."""
        return errors(self.W, self.b, self._x(x), np.asarray(y))

    def l1(self) -> float:
        """``sum |W|``; ``b`` is not included."""
        return l1_penalty(self.W)

    def l2_sqr(self) -> float:
        """``sum W**2``; ``b`` is not included."""
        return l2_sqr_penalty(self.W)

    def __repr__(self) -> str:
        return f"LogisticRegression(n_in={self.n_in}, n_out={self.n_out}, dtype={self.W.dtype})"
