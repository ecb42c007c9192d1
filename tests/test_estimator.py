"""The scikit-learn estimator: scikit-learn's own checks, and its tools."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from logreg_mnist import SoftmaxRegressionClassifier


@parametrize_with_checks([
    SoftmaxRegressionClassifier(),
    SoftmaxRegressionClassifier(solver="cg"),
    SoftmaxRegressionClassifier(solver="sgd"),
    SoftmaxRegressionClassifier(solver="sgd", early_stopping=True, batch_size=16, random_state=0),
])
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def test_grid_search_over_two_learning_rates(digits):
    X, y = digits
    search = GridSearchCV(
        make_pipeline(MinMaxScaler(), SoftmaxRegressionClassifier(solver="sgd", batch_size=50, random_state=0)),
        {"softmaxregressionclassifier__learning_rate": [0.001, 0.5]}, cv=3,
    )
    search.fit(X, y)
    assert search.best_params_ == {"softmaxregressionclassifier__learning_rate": 0.5}
    assert search.best_score_ > 0.85
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0]


@pytest.mark.parametrize("solver", ["sgd", "cg", "lbfgs"])
def test_cross_val_score_in_a_pipeline(digits, solver):
    X, y = digits
    pipe = make_pipeline(MinMaxScaler(), SoftmaxRegressionClassifier(solver=solver, max_iter=50, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    # scikit-learn's own LogisticRegression on the same folds is the yardstick.
    reference = cross_val_score(make_pipeline(MinMaxScaler(), LogisticRegression()), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > reference.mean() - 0.05


def test_string_labels_attributes_and_probabilities(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = SoftmaxRegressionClassifier(max_iter=50).fit(X / 16, names[y])
    assert sorted(clf.classes_) == sorted(names) and clf.coef_.shape == (10, 64) and clf.intercept_.shape == (10,)
    assert 1 <= clf.n_iter_ <= 50 and clf.n_features_in_ == 64
    proba = clf.predict_proba(X[:5] / 16)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X[:5] / 16)), proba)
    assert (clf.predict(X[:5] / 16) == clf.classes_[proba.argmax(axis=1)]).all()
    assert clf.score(X / 16, names[y]) > 0.95


def test_sgd_early_stopping_keeps_the_best_epoch(digits):
    X, y = digits
    clf = SoftmaxRegressionClassifier(solver="sgd", early_stopping=True, n_iter_no_change=3, max_iter=200,
                                      batch_size=32, random_state=0).fit(X / 16, y)
    assert clf.n_iter_ < 200 and clf.score(X / 16, y) > 0.9


def test_bad_parameters_are_named():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"'solver' parameter of SoftmaxRegressionClassifier must be"):
        SoftmaxRegressionClassifier(solver="adam").fit(X, y)
    with pytest.raises(ValueError, match=r"needs samples of at least 2 classes; got 1 class"):
        SoftmaxRegressionClassifier().fit(X, np.zeros(4))


@pytest.mark.parametrize("solver", ["cg", "lbfgs"])
def test_a_full_batch_fit_scipy_does_not_call_converged_warns(digits, solver):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X, y = digits
    with pytest.warns(ConvergenceWarning, match=rf"{solver} failed to converge after 3 iteration\(s\): .+ "
                                                r"Increase max_iter or scale the features\."):
        clf = SoftmaxRegressionClassifier(solver=solver, max_iter=3).fit(X / 16, y)
    assert clf.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # converged: no warning
        clf = SoftmaxRegressionClassifier(solver=solver, l2=0.01, max_iter=1000).fit(X / 16, y)
    assert clf.n_iter_ < 1000
