"""The GPU engine (JAX), run on JAX's CPU backend: against the NumPy reference, chunked, selection, errors.

JAX is in the ``test`` extra; where it is missing these tests skip, except under
``LOGREG_MNIST_REQUIRE_JAX`` (set by CI), where they fail. With
``LOGREG_MNIST_TEST_JAX_PLATFORM=gpu`` (``benchmarks/gpu_check.sh``) the same tests run on
a GPU, less the one that fakes a machine without one.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from logreg_mnist import load_mnist, preset, train
from logreg_mnist.cli import main
from logreg_mnist.engines import make_engine
from logreg_mnist.engines.base import SGDSettings
from logreg_mnist.engines.numpy import NumpyEngine
from logreg_mnist.errors import ConfigError

from .conftest import JAX_TEST_PLATFORM, use_jax_test_platform, write_dataset

B = 50
# 337 training rows (437 - 100 validation): 6 whole minibatches and a short one of 37.
N_TRAIN, N_VALID, N_TEST = 437, 100, 60
TOL_W = 1e-6  # float32: XLA orders the matrix products' sums differently from NumPy's BLAS
PLATFORM = None if JAX_TEST_PLATFORM == "gpu" else JAX_TEST_PLATFORM  # GpuEngine's platform argument
cpu_backend_only = pytest.mark.skipif(JAX_TEST_PLATFORM == "gpu", reason="fakes a machine without a GPU")


@pytest.fixture(scope="module", autouse=True)
def jax_platform():
    if os.environ.get("LOGREG_MNIST_REQUIRE_JAX"):
        import jax  # noqa: F401  (fails the tests when JAX is required but missing)
    else:
        pytest.importorskip("jax")
    mp = pytest.MonkeyPatch()
    use_jax_test_platform(mp)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpu-data")
    write_dataset(directory, n_train=N_TRAIN, n_test=N_TEST, compress=False, seed=7)
    return load_mnist(directory, download=False, valid_size=N_VALID, progress=False)


def _engines(data, dtype=np.float32, **gpu_kwargs):
    from logreg_mnist.engines.gpu import GpuEngine

    settings = SGDSettings(batch_size=B, learning_rate=0.13, l1=1e-4, l2=1e-3, dtype=dtype)
    return NumpyEngine(data, settings), GpuEngine(data, settings, platform=PLATFORM, **gpu_kwargs)


def test_the_engine_runs_on_the_platform_the_tests_ask_for(data):
    _, gpu = _engines(data)
    assert gpu.device.platform == ("gpu" if JAX_TEST_PLATFORM == "gpu" else JAX_TEST_PLATFORM)
    assert make_engine("gpu", data, preset("default", batch_size=B)).device == gpu.device


def test_gpu_engine_agrees_with_the_reference_after_each_chunk(data):
    ref, gpu = _engines(data)
    W0 = np.random.default_rng(0).normal(0, 0.01, (784, 10)).astype(np.float32)
    for engine in (ref, gpu):
        engine.set_params(W0, np.zeros(10, np.float32))
    assert gpu.n_train_batches == ref.n_train_batches == 7
    for batches in (range(0, 1), range(1, 4), range(4, 7), range(0, 7)):  # range(4, 7) ends with 37 rows
        (s_ref, n_ref), (s, n) = ref.train(batches), gpu.train(batches)
        assert n == n_ref and s == pytest.approx(s_ref, rel=1e-5)
        (W_ref, b_ref), (W, b) = ref.get_params(), gpu.get_params()
        assert W.dtype == np.float32 and W.shape == (784, 10) and b.shape == (10,)
        np.testing.assert_allclose(W, W_ref, rtol=0, atol=TOL_W)
        np.testing.assert_allclose(b, b_ref, rtol=0, atol=TOL_W)
        for split in ("valid", "test"):
            assert gpu.count_errors(split) == ref.count_errors(split)
    assert not np.array_equal(W, W0)


def test_float64_mode_agrees_to_rounding(data):
    ref, gpu = _engines(data, dtype=np.float64)
    for batches in (range(0, 7), range(0, 7)):
        assert gpu.train(batches)[0] == pytest.approx(ref.train(batches)[0], rel=1e-12)
    (W_ref, b_ref), (W, b) = ref.get_params(), gpu.get_params()
    assert W.dtype == np.float64
    np.testing.assert_allclose(W, W_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b, b_ref, rtol=0, atol=1e-12)


def test_chunks_copied_to_the_device_give_the_resident_result(data):
    from logreg_mnist.engines.gpu import GpuEngine

    config = preset("default", batch_size=B, n_epochs=3, patience=10)
    # each buffer: 60 rows, rounded down to 1 minibatch for training; the evaluation chunks
    # of 60 rows end inside a minibatch
    chunked = GpuEngine(data, SGDSettings(batch_size=B, learning_rate=0.13), platform=PLATFORM, max_resident=6 * 60 * 784)
    assert chunked.chunked and chunked._rows["train"].streamed and chunked._rows["train"].chunk_rows == B
    assert chunked._rows["valid"].streamed and chunked._rows["valid"].chunk_rows == 60
    resident = make_engine("gpu", data, config)
    assert not resident.chunked
    (model, history), (ref_model, ref_history) = (train(data, config, engine=e) for e in (chunked, resident))
    assert [r | {"elapsed": 0} for r in history.rows] == [r | {"elapsed": 0} for r in ref_history.rows]
    np.testing.assert_array_equal(model.W, ref_model.W)  # the same compiled steps on the same values


def test_auto_picks_the_gpu_engine_only_when_a_gpu_is_present(data, monkeypatch):
    from logreg_mnist.engines import gpu

    config = preset("default", batch_size=B)
    monkeypatch.setattr(gpu, "gpu_available", lambda: False)
    assert make_engine("auto", data, config).name in ("fused", "numpy")
    monkeypatch.setattr(gpu, "gpu_available", lambda: True)
    assert isinstance(make_engine("auto", data, config), gpu.GpuEngine)


def test_gpu_available_is_false_without_a_gpu_plugin(monkeypatch):
    import importlib.util

    from logreg_mnist.engines import gpu

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax_plugins" else real(name, *a))
    assert gpu.gpu_available() is False


@cpu_backend_only
def test_engine_gpu_without_a_gpu_is_a_clear_user_error(data, monkeypatch, tmp_path, capsys, cli_data_dir):
    import jax

    from logreg_mnist.engines.gpu import GpuEngine

    monkeypatch.delenv("LOGREG_MNIST_JAX_PLATFORM")
    real = jax.devices

    def devices(backend=None):
        if backend in ("cuda", "rocm", "gpu"):
            raise RuntimeError(f"Unknown backend {backend}")
        return real(backend)

    monkeypatch.setattr(jax, "devices", devices)
    with pytest.raises(ConfigError, match=r"--engine gpu: expected a GPU, found JAX devices: cpu; install the CUDA "
                                          r"build with pip install 'logreg-mnist\[gpu\]' \(and an NVIDIA driver\), "
                                          r"or use --engine auto"):
        GpuEngine(data, SGDSettings(batch_size=B, learning_rate=0.13))
    argv = ["train", "--data-dir", str(cli_data_dir), "--engine", "gpu", "--dry-run", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("logreg-mnist train: error: --engine gpu: expected a GPU") and "Traceback" not in err
    # the documented way to run it on the CPU backend
    monkeypatch.setenv("LOGREG_MNIST_JAX_PLATFORM", "cpu")
    assert main(argv + ["--out", str(tmp_path / "run")]) == 0
    assert "validation error" in capsys.readouterr().out


def test_engine_gpu_without_jax_is_a_clear_user_error(data, monkeypatch):
    from logreg_mnist.engines import gpu

    monkeypatch.setattr(gpu, "jax_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"--engine gpu: expected JAX, found it is not installed; "
                                          r"pip install 'logreg-mnist\[gpu\]'"):
        gpu.GpuEngine(data, SGDSettings(batch_size=B, learning_rate=0.13))
    assert gpu.gpu_available() is False


@pytest.mark.realdata
def test_tutorial_reproduction(real_mnist):
    config = preset("tutorial")
    _, history = train(real_mnist, config, engine=make_engine("gpu", real_mnist, config))
    assert history.epochs == 74
    assert history.test_error * 100 == pytest.approx(7.489583, abs=5e-7)
    assert round(history.test_error * 9600) == 719
    assert history.best_valid_error * 100 == pytest.approx(7.5, abs=5e-7)
