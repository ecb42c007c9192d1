"""The model's maths against hand computation and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from logreg_mnist import LogisticRegression
from logreg_mnist.model import cost_and_grad, errors, l1_penalty, l2_sqr_penalty, log_softmax, nll


def _toy():
    # Three points, two features, three classes.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    W = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    b = np.array([0.0, 0.0, 1.0])
    y = np.array([0, 1, 2])
    return W, b, x, y


def test_nll_and_zero_one_loss_by_hand():
    W, b, x, y = _toy()
    # logits: [1, 0, 0], [0, 2, 1], [1, 2, 0]
    p0 = np.e / (np.e + 2)
    p1 = np.e**2 / (1 + np.e**2 + np.e)
    p2 = 1 / (np.e + np.e**2 + 1)
    assert nll(W, b, x, y) == pytest.approx(-(np.log(p0) + np.log(p1) + np.log(p2)) / 3)
    # predictions 0, 1, 1: the third point is wrong.
    assert errors(W, b, x, y) == pytest.approx(1 / 3)
    model = LogisticRegression.from_params(W, b)
    assert model.predict(x).tolist() == [0, 1, 1]
    assert model.errors(x, y) == pytest.approx(1 / 3)
    np.testing.assert_allclose(model.p_y_given_x(x).sum(axis=1), 1.0)


def test_penalties_exclude_b():
    W, b, _, _ = _toy()
    assert l1_penalty(W) == 4.0 and l2_sqr_penalty(W) == 6.0
    model = LogisticRegression.from_params(W, b + 100)
    assert model.l1() == 4.0 and model.l2_sqr() == 6.0


def test_log_softmax_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0]])
    out = log_softmax(z)
    assert np.isfinite(out).all() and out[0, 0] == 0.0
    W = np.array([[1e4, -1e4]])
    assert np.isfinite(nll(W, np.zeros(2), np.array([[1.0]]), np.array([1])))


@pytest.mark.parametrize("l1, l2", [(0.0, 0.0), (0.01, 0.0), (0.0, 0.1), (0.003, 0.02)])
def test_gradient_matches_finite_differences(l1, l2):
    rng = np.random.default_rng(1)
    x = rng.random((7, 5))
    y = rng.integers(0, 4, 7)
    W = rng.standard_normal((5, 4))
    b = rng.standard_normal(4)
    cost, _, gW, gb = cost_and_grad(W, b, x, y, l1, l2)

    def f(W_, b_):
        return nll(W_, b_, x, y) + l1 * np.abs(W_).sum() + l2 * (W_**2).sum()

    assert cost == pytest.approx(f(W, b))
    eps = 1e-6
    for idx in np.ndindex(W.shape):
        d = np.zeros_like(W)
        d[idx] = eps
        assert gW[idx] == pytest.approx((f(W + d, b) - f(W - d, b)) / (2 * eps), abs=1e-6)
    for i in range(4):
        d = np.zeros_like(b)
        d[i] = eps
        assert gb[i] == pytest.approx((f(W, b + d) - f(W, b - d)) / (2 * eps), abs=1e-6)


def test_init_zeros_and_seeded_random():
    assert not LogisticRegression(784, 10).W.any()
    a = LogisticRegression(784, 10, init="random", seed=3)
    c = LogisticRegression(784, 10, init="random", seed=3)
    np.testing.assert_array_equal(a.W, c.W)
    assert 0 < np.abs(a.W).max() < 0.1


def test_wrong_input_shape_is_explained():
    with pytest.raises(ValueError, match=r"expected inputs of shape \(n, 784\), found \(2, 10\)"):
        LogisticRegression().predict(np.zeros((2, 10)))
