"""The engine conformance suite: the contract every engine keeps, run against each of them.

An engine is one module and one entry of :data:`logreg_mnist.engines.REGISTRY`; it
conforms when these tests pass for it: it is made by name as every engine is, agrees
with the NumPy reference within the tolerance it states (error counts exactly),
counts minibatches and scored examples as the shared helpers do, round-trips its
parameters, resumes an interrupted run to the uninterrupted result, and reads data
over the memory budget in chunks (or is refused for them with a clear error).

The cases: the reference (``numpy``) and ``fused``, each resident and in its chunked form, ``gpu`` (on JAX's
CPU backend, or on the device under ``LOGREG_MNIST_TEST_JAX_PLATFORM=gpu``; resident and chunked) and ``tiny``, an engine written in this file and
registered for the test, as a new engine would be. The fused and gpu cases fail
rather than skip when ``LOGREG_MNIST_REQUIRE_FUSED`` / ``LOGREG_MNIST_REQUIRE_JAX`` are set.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import pytest

from logreg_mnist import TrainConfig, load_mnist, train
from logreg_mnist.engines import REGISTRY, Entry, make_engine, resolve
from logreg_mnist.engines.base import SGDSettings, Tolerance, counted, n_batches
from logreg_mnist.engines.fused import available as fused_built
from logreg_mnist.engines.numpy import NumpyEngine
from logreg_mnist.errors import ConfigError
from logreg_mnist.persistence import read_history

from .conftest import InterruptAt, use_jax_test_platform, write_dataset

B = 50
# 337 training rows (437 - 100 validation): 6 whole minibatches and a short one of 37.
N_TRAIN, N_VALID, N_TEST = 437, 100, 60
# A budget the data exceed: each split is read in chunks of 60 rows (one minibatch for training).
SMALL = 6 * 60 * 784
SPLITS = ("train", "valid", "test")
# The float rounding of a summed training NLL, where an engine's sums are taken in another order.
NLL_RTOL = {"float32": 1e-5, "float64": 1e-12}


class TinyEngine:
    """An engine written for this suite, as a new engine would be: float64 arithmetic on the
    float images, with its own softmax and gradient; parameters kept in the settings' dtype.

    Layout: float64 copies of the images (n, n_in), resident (no chunked form). Threading:
    NumPy's BLAS. Agreement: float32 rounds the float64 step, so rtol 1e-5, atol 1e-6;
    float64 sums in another order, 1e-12 and 1e-13.
    """

    name = "tiny"
    threads = 1
    tolerance = Tolerance(float32=(1e-5, 1e-6), float64=(1e-12, 1e-13))

    def __init__(self, data, settings: SGDSettings, *, threads: int | None = None, max_resident: int | None = None):
        self.settings = settings
        self._x = {s: data.split(s).images.astype(np.float64) for s in SPLITS}
        self._y = {s: data.split(s).labels for s in SPLITS}
        self.n_train_batches = settings.n_batches(len(self._y["train"]))
        self.W = np.zeros((data.n_features, data.n_classes), settings.dtype)
        self.b = np.zeros(data.n_classes, settings.dtype)

    def set_params(self, W, b):
        self.W, self.b = np.array(W, self.settings.dtype), np.array(b, self.settings.dtype)

    def get_params(self):
        return self.W.copy(), self.b.copy()

    def train(self, batches: range) -> tuple[float, int]:
        s, total, count = self.settings, 0.0, 0
        for i in batches:
            x = self._x["train"][i * s.batch_size : (i + 1) * s.batch_size]  # (k, n_in)
            y = self._y["train"][i * s.batch_size : (i + 1) * s.batch_size]
            W, b = self.W.astype(np.float64), self.b.astype(np.float64)
            z = x @ W + b
            z -= z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (k, n_out)
            rows = np.arange(len(y))
            total += -logp[rows, y].sum()
            d = np.exp(logp)
            d[rows, y] -= 1
            d /= len(y)
            gW = x.T @ d + s.l1 * np.sign(W) + 2 * s.l2 * W
            self.W = (W - np.float64(s.dtype.type(s.learning_rate)) * gW).astype(s.dtype)
            self.b = (b - np.float64(s.dtype.type(s.learning_rate)) * d.sum(axis=0)).astype(s.dtype)
            count += len(y)
        return total, count

    def count_errors(self, split: str) -> tuple[int, int]:
        n = self.settings.counted(len(self._y[split]))
        predicted = np.argmax(self._x[split][:n] @ self.W + self.b, axis=1)
        return int(np.count_nonzero(predicted != self._y[split][:n])), n


class Case(NamedTuple):
    name: str  # the registry name
    budget: int | None  # max_resident (None: the default, which these data fit in)


# Every registered engine, resident and (where it has one) in its chunked form, and the test's own.
NAMES = [*REGISTRY, "tiny"]
CASES = {
    **{name: Case(name, None) for name in REGISTRY},
    **{f"{name}-chunked": Case(name, SMALL) for name, entry in REGISTRY.items() if entry.chunked is not None},
    "tiny": Case("tiny", None),
}


def _prepare(name: str, monkeypatch) -> None:
    """Make the engine ``name`` available, or skip (fail where CI requires it)."""
    if name == "fused" and not fused_built():
        if os.environ.get("LOGREG_MNIST_REQUIRE_FUSED"):
            pytest.fail("the fused engine's compiled kernel is required but not built (pip install -e .)")
        pytest.skip("the fused engine's compiled kernel is not built")
    if name == "gpu":
        if os.environ.get("LOGREG_MNIST_REQUIRE_JAX"):
            import jax  # noqa: F401  (fails the test when JAX is required but missing)
        else:
            pytest.importorskip("jax")
        use_jax_test_platform(monkeypatch)
    if name == "tiny":  # registered as a new engine is: one entry
        monkeypatch.setitem(REGISTRY, "tiny", Entry(f"{__name__}:TinyEngine"))


@pytest.fixture(params=list(CASES))
def case(request, monkeypatch) -> Case:
    case = CASES[request.param]
    _prepare(case.name, monkeypatch)
    return case


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("conformance-data")
    write_dataset(directory, n_train=N_TRAIN, n_test=N_TEST, compress=False, seed=7)
    return load_mnist(directory, download=False, valid_size=N_VALID, progress=False)  # memory-mapped files


def _config(**changes) -> TrainConfig:
    return TrainConfig(**{"batch_size": B, "learning_rate": 0.13, "l1": 1e-4, "l2": 1e-3, **changes})


def _make(case: Case, data, config: TrainConfig):
    return make_engine(case.name, data, config, max_resident=case.budget)


def _start(engines, data, dtype) -> None:
    """The same small random parameters in every engine."""
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.01, (data.n_features, data.n_classes)).astype(dtype)
    b = rng.normal(0, 0.01, data.n_classes).astype(dtype)
    for engine in engines:
        engine.set_params(W, b)


def test_made_by_name_as_every_engine_is(case, data):
    engine = _make(case, data, _config())
    entry = REGISTRY[case.name]
    assert resolve(case.name) == case.name and engine.name == case.name
    expected = entry.chunked if case.budget is not None else entry.resident
    assert type(engine).__name__ == expected.rpartition(":")[2]
    assert isinstance(type(engine).tolerance, Tolerance)
    assert isinstance(engine.threads, int) and engine.threads >= 1


@pytest.mark.parametrize("drop_last", [True, False], ids=["drop_last", "short_last_batch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_agrees_with_the_reference_within_its_stated_tolerance(case, data, dtype, drop_last):
    config = _config(dtype=dtype, drop_last=drop_last)
    ref, engine = NumpyEngine(data, SGDSettings.from_config(config)), _make(case, data, config)
    _start((ref, engine), data, dtype)
    rtol, atol = type(engine).tolerance.of(dtype)
    nll_rtol = 0.0 if (rtol, atol) == (0.0, 0.0) else NLL_RTOL[dtype]
    n = ref.n_train_batches
    for batches in (range(0, 1), range(1, 4), range(4, n), range(0, n)):  # range(4, 7) ends with 37 rows
        (s_ref, c_ref), (s, c) = ref.train(batches), engine.train(batches)
        assert c == c_ref
        assert s == pytest.approx(s_ref, rel=nll_rtol, abs=0)
        for mine, theirs in zip(engine.get_params(), ref.get_params()):
            assert mine.dtype == np.dtype(dtype) and mine.shape == theirs.shape
            np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=atol)
        for split in ("valid", "test"):
            assert engine.count_errors(split) == ref.count_errors(split)


@pytest.mark.parametrize("drop_last", [True, False], ids=["drop_last", "short_last_batch"])
def test_counts_minibatches_and_scored_examples_as_the_shared_helpers_do(case, data, drop_last):
    engine = _make(case, data, _config(drop_last=drop_last))
    n_train = len(data.train)
    assert engine.n_train_batches == n_batches(n_train, B, drop_last) == (6 if drop_last else 7)
    for split in ("valid", "test"):
        assert engine.count_errors(split)[1] == counted(len(data.split(split)), B, drop_last)
    assert engine.count_errors("test")[1] == (50 if drop_last else 60)
    last = range(engine.n_train_batches - 1, engine.n_train_batches)
    assert engine.train(last)[1] == (B if drop_last else 37)
    assert engine.train(range(engine.n_train_batches))[1] == counted(n_train, B, drop_last)
    with pytest.raises(ConfigError, match=r"batch_size: expected at most the 337 training examples when partial "
                                          r"minibatches are dropped, found 400"):
        _make(case, data, _config(batch_size=400, drop_last=True))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameters_round_trip(case, data, dtype):
    engine = _make(case, data, _config(dtype=dtype))
    rng = np.random.default_rng(1)
    W, b = rng.normal(0, 0.1, (data.n_features, data.n_classes)), rng.normal(0, 0.1, data.n_classes)
    engine.set_params(W, b)
    got_W, got_b = engine.get_params()
    assert got_W.dtype == got_b.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got_W, W.astype(dtype))
    np.testing.assert_array_equal(got_b, b.astype(dtype))
    got_W[:] = 0  # a copy: the engine's parameters are its own
    np.testing.assert_array_equal(engine.get_params()[0], W.astype(dtype))
    ref = NumpyEngine(data, SGDSettings.from_config(_config(dtype=dtype)))
    ref.set_params(W, b)
    assert engine.count_errors("valid") == ref.count_errors("valid")




def test_an_interrupted_run_resumes_to_the_uninterrupted_result(case, data, tmp_path):
    config = _config(learning_rate=0.05, patience=40, n_epochs=9)
    options = {"engine": case.name, "max_resident": case.budget}
    ref_model, ref = train(data, config, tmp_path / "ref", **options)
    with pytest.raises(KeyboardInterrupt):
        train(data, config, tmp_path / "run", reporter=InterruptAt(epoch=4), **options)
    assert len(read_history(tmp_path / "run")) == 3
    model, history = train(data, config, tmp_path / "run", resume=True, **options)
    np.testing.assert_array_equal(model.W, ref_model.W)
    np.testing.assert_array_equal(model.b, ref_model.b)
    assert (history.epochs, history.best_epoch, history.test_error) == (ref.epochs, ref.best_epoch, ref.test_error)
    assert [r | {"elapsed": 0} for r in history.rows] == [r | {"elapsed": 0} for r in ref.rows]


@pytest.mark.parametrize("name", NAMES)
def test_data_over_the_memory_budget_are_read_in_chunks_or_refused(name, data, monkeypatch):
    _prepare(name, monkeypatch)
    config = _config(drop_last=False)
    if REGISTRY[name].chunked is None:
        with pytest.raises(ConfigError, match=rf"engine '{name}': expected data that fit in the memory budget "
                                              r"\(275\.6 KiB\), found 380\.5 KiB; use --engine numpy"):
            make_engine(name, data, config, max_resident=SMALL)
        return
    chunked, resident = make_engine(name, data, config, max_resident=SMALL), make_engine(name, data, config)
    _start((chunked, resident), data, "float32")
    rtol, atol = type(chunked).tolerance.of("float32")
    for batches in (range(0, 3), range(3, chunked.n_train_batches)):
        assert chunked.train(batches)[1] == resident.train(batches)[1]
        for mine, theirs in zip(chunked.get_params(), resident.get_params()):
            np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=atol)
        for split in ("valid", "test"):
            assert chunked.count_errors(split) == resident.count_errors(split)
