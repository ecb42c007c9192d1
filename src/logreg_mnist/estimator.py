"""A scikit-learn estimator: the chapter's model inside Pipeline, GridSearchCV, cross_val_score."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .model import cost_and_grad, errors, log_softmax, logits, softmax
from .optimizers.full_batch import minimize, pack, unpack


class SoftmaxRegressionClassifier(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression, ``P(y=k | x) = softmax(x W + b)_k``, fitted by
    minibatch SGD (the chapter's ``logistic_sgd``), conjugate gradient (``logistic_cg``)
    or L-BFGS.

    Parameters
    ----------
    solver : {"lbfgs", "cg", "sgd"}, default="lbfgs"
        "sgd": minibatch SGD, ``max_iter`` epochs at most. "cg", "lbfgs": SciPy's
        full-batch optimisers, ``max_iter`` iterations at most.
    learning_rate : float, default=0.13
        SGD step size (the chapter's).
    batch_size : int, default=600
        SGD minibatch size (the last minibatch of an epoch may be shorter).
    l1, l2 : float, default=0.0
        Coefficients of ``sum|W|`` and ``sum W**2``; ``b`` is not penalised.
    max_iter : int, default=100
        Most SGD epochs, or most cg / lbfgs iterations. A cg or lbfgs fit that SciPy
        does not report converged (this limit reached, or stopped early) warns with
        ``sklearn.exceptions.ConvergenceWarning``, saying SciPy's reason.
    early_stopping : bool, default=False
        scikit-learn's convention: hold out ``validation_fraction`` of the training
        data (stratified), score it after every epoch (or iteration), keep the
        parameters with the best validation accuracy and, for sgd, stop after
        ``n_iter_no_change`` epochs without an improvement of at least ``tol``.
        When False, sgd stops after ``n_iter_no_change`` epochs in which the training
        loss does not fall by ``tol``, and cg / lbfgs run to their own convergence.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    n_iter_no_change : int, default=5
        Epochs without improvement before SGD stops.
    tol : float, default=1e-4
        The improvement that counts.
    shuffle : bool, default=True
        Shuffle the training data every SGD epoch (the chapter does not).
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling and the validation split.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``fit`` (any type scikit-learn accepts, strings too).
    coef_ : ndarray of shape (n_classes, n_features)
        ``W.T``, one row per class (also for two classes).
    intercept_ : ndarray of shape (n_classes,)
        ``b``.
    n_iter_ : int
        Epochs (sgd) or iterations (cg, lbfgs) run.
    n_features_in_ : int
        Features seen in ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = SoftmaxRegressionClassifier().fit(X / 16, y)
    >>> clf.score(X / 16, y) > 0.95
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "solver": [StrOptions({"sgd", "cg", "lbfgs"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "l1": [Interval(numbers.Real, 0, None, closed="left")],
        "l2": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        solver="lbfgs",
        *,
        learning_rate=0.13,
        batch_size=600,
        l1=0.0,
        l2=0.0,
        max_iter=100,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        tol=1e-4,
        shuffle=True,
        random_state=None,
    ):
        # scikit-learn's convention: the arguments stored as given, under their own names
        self.solver, self.max_iter, self.tol = solver, max_iter, tol  # the optimiser and when it stops
        self.learning_rate, self.batch_size, self.shuffle = learning_rate, batch_size, shuffle  # SGD's steps
        self.l1, self.l2 = l1, l2  # the penalties
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.n_iter_no_change, self.random_state = n_iter_no_change, random_state

    def fit(self, X, y):
        """Fit on X (n_samples, n_features) and labels y (n_samples,). Returns self."""
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got 1 class: {self.classes_[0]!r}"
            )
        rng = check_random_state(self.random_state)
        X_val = y_val = None
        if self.early_stopping:
            # Stratify when every class can appear on both sides; tiny data falls back to a plain split.
            n_classes, n_val = len(self.classes_), math.ceil(self.validation_fraction * len(y_enc))
            possible = np.bincount(y_enc).min() >= 2 and n_classes <= n_val <= len(y_enc) - n_classes
            stratify = y_enc if possible else None
            X, X_val, y_enc, y_val = train_test_split(
                X, y_enc, test_size=self.validation_fraction, stratify=stratify, random_state=rng
            )
        fit = self._fit_sgd if self.solver == "sgd" else self._fit_full_batch
        W, b, self.n_iter_ = fit(X, y_enc, X_val, y_val, len(self.classes_), rng)
        self.coef_, self.intercept_ = W.T.copy(), b.copy()
        return self

    def _fit_sgd(self, X, y, X_val, y_val, n_classes, rng):
        W = np.zeros((X.shape[1], n_classes))
        b = np.zeros(n_classes)
        best = (-math.inf, W.copy(), b.copy())  # validation accuracy, W, b
        best_loss, stall, epoch = math.inf, 0, 0
        for epoch in range(1, self.max_iter + 1):
            order = rng.permutation(len(y)) if self.shuffle else np.arange(len(y))
            loss_sum = 0.0
            for start in range(0, len(y), self.batch_size):
                idx = order[start : start + self.batch_size]
                _, nll_sum, gW, gb = cost_and_grad(W, b, X[idx], y[idx], self.l1, self.l2)
                W -= self.learning_rate * gW
                b -= self.learning_rate * gb
                loss_sum += nll_sum
            if not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise ValueError(
                    f"SGD diverged in epoch {epoch}; try a smaller learning_rate "
                    f"(now {self.learning_rate}) or scale the features"
                )
            # convergence: sklearn's n_iter_no_change on the validation score or the training loss
            if self.early_stopping:
                score = 1.0 - errors(W, b, X_val, y_val)  # validation accuracy
                if score > best[0]:
                    improved = score > best[0] + self.tol
                    best = (score, W.copy(), b.copy())
                else:
                    improved = False
            else:
                loss = loss_sum / len(y)
                improved = loss < best_loss - self.tol
                best_loss = min(best_loss, loss)
            stall = 0 if improved else stall + 1
            if stall >= self.n_iter_no_change:
                break
        if self.early_stopping:
            return best[1], best[2], epoch
        return W, b, epoch

    def _fit_full_batch(self, X, y, X_val, y_val, n_classes, rng):
        n_in = X.shape[1]
        best = {"score": -math.inf, "theta": None}

        def keep_best(theta, cost):
            W, b = unpack(theta, n_in, n_classes)
            score = 1.0 - errors(W, b, X_val, y_val)  # validation accuracy
            if score > best["score"]:
                best["score"], best["theta"] = score, theta.copy()

        result = minimize(
            X,
            y,
            n_classes,
            method=self.solver,
            max_iter=self.max_iter,
            l1=self.l1,
            l2=self.l2,
            theta0=pack(np.zeros((n_in, n_classes)), np.zeros(n_classes)),
            callback=keep_best if self.early_stopping else None,
        )
        if not result.success:
            warnings.warn(
                f"{self.solver} failed to converge after {result.nit} iteration(s): {result.message} "
                "Increase max_iter or scale the features.",
                ConvergenceWarning,
                stacklevel=3,
            )
        theta = best["theta"] if best["theta"] is not None else result.x
        W, b = unpack(theta, n_in, n_classes)
        return W.copy(), b.copy(), int(result.nit)

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return logits(self.coef_.T, self.intercept_, X)  # (n_samples, n_classes)

    def decision_function(self, X):
        """Logits ``x W + b``, shape (n_samples, n_classes); for two classes scikit-learn's
        convention, shape (n_samples,): the logit of ``classes_[1]`` minus that of ``classes_[0]``."""
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        return softmax(self._logits(X))

    def predict_log_proba(self, X):
        """Log class probabilities, computed stably, shape (n_samples, n_classes)."""
        return log_softmax(self._logits(X))

    def predict(self, X):
        """The most probable class per sample, shape (n_samples,), from ``classes_``."""
        best = np.argmax(self._logits(X), axis=1)
        return self.classes_[best]
