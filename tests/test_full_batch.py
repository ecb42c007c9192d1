"""The full-batch optimisers: flat packing, CG against an independent solver, best-model bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

from logreg_mnist import TrainConfig, load_model, preset, train
from logreg_mnist.model import cost_and_grad
from logreg_mnist.optimizers import minimize, pack, unpack
from logreg_mnist.persistence import read_history


def test_pack_unpack_round_trip_w_first_then_b():
    W = np.arange(12.0).reshape(4, 3)
    b = np.array([100.0, 101.0, 102.0])
    theta = pack(W, b)
    assert theta.tolist() == list(range(12)) + [100.0, 101.0, 102.0]
    W2, b2 = unpack(theta, 4, 3)
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(b2, b)
    assert np.shares_memory(W2, theta), "unpack gives views, no copies"
    with pytest.raises(ValueError, match=r"expected theta of length 15, found shape \(14,\)"):
        unpack(theta[:-1], 4, 3)


def _problem(seed=0, n=120, d=5, k=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, size=(k, d))
    y = rng.integers(0, k, n)
    x = centers[y] + rng.normal(size=(n, d))
    return x, y


@pytest.mark.parametrize("method", ["cg", "lbfgs"])
def test_full_batch_reaches_the_optimum_of_an_independent_solver(method):
    # With an L2 term the problem is strictly convex: one minimum. scikit-learn's
    # multinomial LogisticRegression minimises C * sum(loss) + 0.5 * |W|^2 (b unpenalised),
    # which is ours (mean loss + l2 |W|^2) times 1 / (2 l2) when C = 1 / (2 l2 n).
    x, y = _problem()
    l2 = 0.01
    result = minimize(x, y, 3, method=method, max_iter=500, l2=l2)
    W, b = unpack(result.x, 5, 3)
    _, _, gW, gb = cost_and_grad(W, b, x, y, l2=l2)
    assert np.abs(pack(gW, gb)).max() < 1e-4, "the gradient vanishes at the solution"
    ref = SkLogisticRegression(C=1 / (2 * l2 * len(y)), tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(W.T, ref.coef_, atol=2e-3)
    # b is determined up to a constant shift (softmax is shift-invariant); compare centred.
    np.testing.assert_allclose(b - b.mean(), ref.intercept_ - ref.intercept_.mean(), atol=2e-3)


def test_two_class_problem_by_hand():
    # One feature, points x=-1 (class 0) and x=+1 (class 1), L2 l2: by symmetry b = 0 and
    # W = [-w, w]; the stationarity condition of mean NLL + l2 (2 w^2) is
    # 2 sigmoid(-2w) = 4 l2 w, i.e. w = sigmoid(-2w) / (2 l2).
    x = np.array([[-1.0], [1.0]])
    y = np.array([0, 1])
    l2 = 0.25
    W, b = unpack(minimize(x, y, 2, method="cg", max_iter=200, l2=l2).x, 1, 2)
    w = W[0, 1]
    assert W[0, 0] == pytest.approx(-w, abs=1e-5) and np.abs(b).max() < 1e-5
    # CG stops at SciPy's gradient tolerance (1e-5), so the root is met to about that.
    assert w == pytest.approx(1 / (1 + np.exp(2 * w)) / (2 * l2), abs=5e-5)


@pytest.mark.parametrize("optimizer", ["cg", "lbfgs"])
def test_validation_best_bookkeeping(tiny_data, tmp_path, optimizer, capsys):
    from logreg_mnist.reporting import ConsoleReporter

    config = TrainConfig(optimizer=optimizer, max_iter=15, snapshot_every=5)
    model, history = train(tiny_data, config, tmp_path / "run", reporter=ConsoleReporter())
    rows = read_history(tmp_path / "run")
    assert rows == history.rows and 1 <= len(rows) <= 15
    errors = [r["valid_error"] for r in rows]
    best_at = int(np.argmin(errors))  # the first minimum: later ties are not improvements
    assert history.best_valid_error == errors[best_at] and history.best_iteration == best_at + 1
    assert history.test_error == rows[best_at]["test_error"]
    assert all(r["test_error"] is None for r in rows if r["valid_error"] >= min(errors[: r["iteration"] - 1] or [2]))
    saved, meta = load_model(tmp_path / "run" / "best.safetensors")
    np.testing.assert_allclose(saved.W, model.W)
    assert meta["iteration"] == best_at + 1 and meta["valid_error"] == errors[best_at]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("hyperparameters: optimizer ")
    assert out[2].startswith("validation error ") and out[2].endswith(" % of 20")
    assert out[-2].startswith("Optimization complete with best validation score of")
    assert model.errors(tiny_data.valid.images, tiny_data.valid.labels) == pytest.approx(errors[best_at])


@pytest.mark.realdata
def test_logistic_cg_on_mnist_matches_the_reference_replication(real_mnist):
    # The chapter's logistic_cg defaults: about 7.31 % validation, 7.42 % test after 50 iterations.
    _, history = train(real_mnist, preset("tutorial", optimizer="cg"))
    assert history.epochs == 50
    assert history.best_valid_error == pytest.approx(0.0731, abs=0.0005)
    assert history.test_error == pytest.approx(0.0742, abs=0.0005)


def test_resuming_a_full_batch_run_is_refused_and_keeps_it(tiny_data, tmp_path):
    from logreg_mnist.errors import ConfigError

    config = TrainConfig(optimizer="cg", max_iter=3)
    train(tiny_data, config, tmp_path / "run")
    before = (tmp_path / "run" / "history.jsonl").read_text()
    with pytest.raises(ConfigError, match=r"a cg run cannot be continued"):
        train(tiny_data, config, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "history.jsonl").read_text() == before


@pytest.mark.parametrize("optimizer", ["cg", "lbfgs"])
def test_an_early_stop_without_success_is_not_called_converged(tiny_data, monkeypatch, optimizer, capsys):
    from logreg_mnist.optimizers import full_batch
    from logreg_mnist.reporting import ConsoleReporter

    config = TrainConfig(optimizer=optimizer, max_iter=15)
    real = full_batch.minimize
    # SciPy stops after 2 of the 15 iterations allowed, without success (as CG does on a loss of precision)
    monkeypatch.setattr(full_batch, "minimize", lambda *a, **k: real(*a, **{**k, "max_iter": 2}))
    _, history = train(tiny_data, config, reporter=ConsoleReporter())
    assert history.stopped_by == "stopped" and history.epochs == 2
    out = capsys.readouterr().out.splitlines()
    prefix = f"{optimizer} stopped after 2 of at most 15 iterations without converging: "
    assert out[-3].startswith(prefix) and len(out[-3]) > len(prefix) + 10  # SciPy's reason
    assert out[-2].startswith("Optimization complete with best validation score of")
    monkeypatch.undo()
    _, history = train(tiny_data, config.replace(max_iter=3), reporter=ConsoleReporter())
    assert history.stopped_by == "max_iter" and "without converging" not in capsys.readouterr().out
    _, history = train(tiny_data, config.replace(max_iter=1000, l2=0.05))
    assert history.stopped_by == "converged" and history.epochs < 1000
