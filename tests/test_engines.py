"""Engines against the NumPy reference: parameters, error counts, layouts, threads, the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from logreg_mnist.config import TrainConfig, preset
from logreg_mnist.data import Dataset, Split
from logreg_mnist.engines import available_engines, default_threads, make_engine, resolve
from logreg_mnist.engines.base import SGDSettings, ThreadChooser
from logreg_mnist.engines.numpy import NumpyEngine
from logreg_mnist.errors import ConfigError
from logreg_mnist.train import train

# float32: the same formulas summed in another order; float64: to 1e-12.
TOLERANCE = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}




def _dataset(n_train=230, n_valid=70, n_test=90, density=0.2, n_in=64, n_classes=10, seed=0) -> Dataset:
    """Synthetic uint8 digits: ``density`` of the pixels non-zero, a class-dependent pattern."""
    rng = np.random.default_rng(seed)
    centres = rng.random((n_classes, n_in)) < density * 1.5

    def split(n):
        y = rng.integers(0, n_classes, n)
        mask = (rng.random((n, n_in)) < density) | (centres[y] & (rng.random((n, n_in)) < 0.5))
        x = np.where(mask, rng.integers(1, 256, (n, n_in)), 0).astype(np.uint8)
        return Split(labels=y.astype(np.int64), pixels=x)

    return Dataset(split(n_train), split(n_valid), split(n_test), source=Path("synthetic"), identity="synthetic")


def _pair(data, config, threads=None):
    ref = make_engine("numpy", data, config)
    fused = make_engine("fused", data, config, threads=threads)
    rng = np.random.default_rng(1)
    W = (0.01 * rng.standard_normal((data.n_features, data.n_classes))).astype(config.dtype)
    b = (0.01 * rng.standard_normal(data.n_classes)).astype(config.dtype)
    for e in (ref, fused):
        e.set_params(W, b)
    return ref, fused


# (density, fused.DENSE_ABOVE, the form): dense data are read sparse too (faster), unless DENSE_ABOVE says
# otherwise (the dense form, also that of rows wider than 65,536 pixels)
FORMS = {"sparse": (0.2, None, "sparse"), "dense-data": (0.9, None, "sparse"), "dense-form": (0.9, 0.5, "dense")}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("drop_last", [True, False], ids=["drop_last", "short_last_batch"])
@pytest.mark.parametrize("penalty", [{}, {"l1": 1e-3}, {"l2": 1e-2}, {"l1": 1e-4, "l2": 1e-3}],
                         ids=["plain", "l1", "l2", "l1+l2"])
def test_fused_matches_the_numpy_reference(need_fused, form, dtype, drop_last, penalty, monkeypatch):
    from logreg_mnist.engines import fused as fused_module

    density, dense_above, expected = FORMS[form]
    if dense_above is not None:
        monkeypatch.setattr(fused_module, "DENSE_ABOVE", dense_above)
    data = _dataset(density=density)
    config = TrainConfig(batch_size=50, learning_rate=0.1, drop_last=drop_last, dtype=dtype, **penalty)
    ref, fused = _pair(data, config)
    assert fused.layout["train"].startswith(expected)
    assert ref.n_train_batches == fused.n_train_batches == (4 if drop_last else 5)
    for chunk in (range(0, 2), range(2, fused.n_train_batches), range(0, fused.n_train_batches)):
        s_ref, c_ref = ref.train(chunk)
        s_fused, c_fused = fused.train(chunk)
        assert c_ref == c_fused  # the short last minibatch counts its 30 examples
        assert s_fused == pytest.approx(s_ref, rel=1e-5 if dtype == "float32" else 1e-12)
        for a, b in zip(ref.get_params(), fused.get_params()):
            assert a.dtype == b.dtype == np.dtype(dtype)
            np.testing.assert_allclose(b, a, **TOLERANCE[dtype])
    for split in ("valid", "test"):
        assert fused.count_errors(split) == ref.count_errors(split)
    assert fused.count_errors("test")[1] == (50 if drop_last else 90)


@pytest.mark.parametrize("n_classes", [2, 3, 19])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_matches_the_reference_for_other_class_counts(need_fused, n_classes, dtype):
    data = _dataset(n_classes=n_classes)
    assert data.n_classes == n_classes
    config = TrainConfig(batch_size=40, learning_rate=0.1, dtype=dtype, l2=1e-3)
    ref, fused = _pair(data, config)
    ref.train(range(ref.n_train_batches))
    fused.train(range(fused.n_train_batches))
    for a, b in zip(ref.get_params(), fused.get_params()):
        assert b.shape == a.shape
        np.testing.assert_allclose(b, a, **TOLERANCE[dtype])
    assert fused.count_errors("test") == ref.count_errors("test")


def test_fused_results_do_not_depend_on_the_thread_count(need_fused):
    data = _dataset(n_train=500, n_in=300, density=0.15)
    config = TrainConfig(batch_size=64)
    results = []
    for threads in (1, 2, 3, None):  # None: adaptive, trying thread counts on a few minibatches at a time
        _, fused = _pair(data, config, threads=threads)
        assert fused.threads == min(threads or default_threads(), default_threads())  # capped at the cores
        nll, _ = fused.train(range(fused.n_train_batches))
        results.append((nll, *fused.get_params()))
    for other in results[1:]:
        assert other[0] == results[0][0]
        np.testing.assert_array_equal(other[1], results[0][1])
        np.testing.assert_array_equal(other[2], results[0][2])


def test_the_baseline_kernel_agrees_as_well(need_fused):
    """The kernel built for CPUs without AVX2 (chosen here by LOGREG_MNIST_FUSED_SIMD) passes the same tests."""
    env = dict(os.environ, LOGREG_MNIST_FUSED_SIMD="baseline")
    probe = "from logreg_mnist.engines.fused import kernel_info; print(kernel_info()['simd'])"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "baseline"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           "-k", "matches_the or thread_count"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_train_never_makes_the_float_copy_of_the_splits(need_fused):
    data = _dataset()
    for engine in ("numpy", "fused"):
        train(data, TrainConfig(batch_size=50, n_epochs=2), engine=engine)
    assert all("images" not in data.split(s).__dict__ for s in ("train", "valid", "test"))


def test_registry_names_and_errors(need_fused):
    data = _dataset()
    config = TrainConfig(batch_size=50)
    assert "numpy" in available_engines() and "fused" in available_engines()
    expected = "gpu" if "gpu" in available_engines() else "fused"
    assert resolve("auto") == expected and make_engine("auto", data, config).name == expected
    assert make_engine("numpy", data, config).threads == 1
    assert make_engine("fused", data, config).threads == default_threads() == len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match=r"engine: expected one of auto, numpy, fused, gpu, found 'cuda'"):
        make_engine("cuda", data, config)
    with pytest.raises(ConfigError, match=r"threads: expected an integer >= 1, found 0"):
        make_engine("fused", data, config, threads=0)
    if "gpu" not in available_engines():
        with pytest.raises(ConfigError):
            make_engine("gpu", data, config)


def test_float_images_fall_back_to_the_numpy_engine(need_fused):
    data = _dataset()
    floats = Dataset(*(Split(labels=s.labels, _images=s.pixels / np.float32(255)) for s in
                       (data.train, data.valid, data.test)), source=Path("f"), identity="floats")
    with pytest.raises(ConfigError, match=r"engine 'fused': expected uint8 pixels"):
        make_engine("fused", floats, TrainConfig())
    if "gpu" not in available_engines():
        assert make_engine("auto", floats, TrainConfig()).name == "numpy"


def test_thread_chooser_prefers_the_faster_and_probes_the_other():
    chooser = ThreadChooser(4)
    assert chooser.pick() == 4
    chooser.record(4, 1.0, 10)  # 0.1 s per unit
    assert chooser.pick() == 1
    chooser.record(1, 0.3, 10)  # 0.03 s per unit: one thread is faster (a busy machine)
    picks = []
    for _ in range(8 + 16 + 32):
        picks.append(chooser.pick())
        chooser.record(picks[-1], 0.3 if picks[-1] == 1 else 1.0, 10)
    # 4 threads measured again after 8 calls, then 16, then 32: the probes back off
    assert [i for i, t in enumerate(picks) if t == 4] == [7, 23, 55]
    assert chooser.current == 1
    for _ in range(3):  # the machine becomes idle: 4 threads win the next probe and are kept
        chooser.record(4, 0.05, 10)
    assert chooser.current == 4 and chooser.pick() == 4
    assert ThreadChooser(4, fixed=True).options == (4,) and ThreadChooser(1).options == (1,)


def test_thread_chooser_probes_each_other_choice_in_turn():
    chooser = ThreadChooser(8, also=(7,))
    assert chooser.options == (8, 7, 1) and ThreadChooser(2, also=(1,)).options == (2, 1)
    seconds = {8: 0.5, 7: 0.4, 1: 2.0}  # one thread fewer is fastest (a busy reader thread)
    picks = []
    for _ in range(3 + 8 + 16):
        picks.append(chooser.pick())
        chooser.record(picks[-1], seconds[picks[-1]], 1)
    assert picks[:3] == [8, 7, 1] and chooser.current == 7
    probes = [(i, t) for i, t in enumerate(picks) if i >= 3 and t != 7]
    assert [t for _, t in probes] == [1, 8]  # after 8 calls, then after 16 more: each other choice in turn


@pytest.mark.realdata
def test_fused_agrees_with_numpy_after_one_epoch_of_mnist(need_fused, real_mnist):
    config = preset("tutorial")
    ref, fused = make_engine("numpy", real_mnist, config), make_engine("fused", real_mnist, config)
    assert fused.layout["train"].startswith("sparse")
    nll_ref, _ = ref.train(range(ref.n_train_batches))
    nll_fused, _ = fused.train(range(fused.n_train_batches))
    assert nll_fused == pytest.approx(nll_ref, rel=1e-6)
    for a, b in zip(ref.get_params(), fused.get_params()):
        np.testing.assert_allclose(b, a, **TOLERANCE["float32"])
    assert fused.count_errors("valid") == ref.count_errors("valid")


@pytest.mark.parametrize("layout", ["uint8_pixels", "float_images"])
def test_numpy_engine_steps_exactly_as_the_reference_on_uint8_pixels_and_on_float_images(layout):
    """The engine's first step is the reference's (cost_and_grad on the float images ``pixels / 256``),
    to the bit: from uint8 pixels scaled as each minibatch is used, and from a dataset of float images."""
    from logreg_mnist.model import cost_and_grad

    data = _dataset()
    x = data.train.pixels[:50].astype(np.float32) / 256
    if layout == "float_images":
        data = Dataset(*(Split(labels=s.labels, _images=s.pixels.astype(np.float32) / 256) for s in
                         (data.train, data.valid, data.test)), source=Path("f"), identity="floats")
        assert data.train.pixels is None
    engine = NumpyEngine(data, SGDSettings(batch_size=50, learning_rate=0.1))
    _, _, gW, gb = cost_and_grad(engine.W, engine.b, x, data.train.labels[:50])
    engine.train(range(1))
    np.testing.assert_array_equal(engine.W, -np.float32(0.1) * gW)
    np.testing.assert_array_equal(engine.b, -np.float32(0.1) * gb)


def test_cli_engine_and_threads_are_run_time_choices(need_fused, cli_data_dir, tmp_path, capsys):
    from logreg_mnist.cli import main

    out = tmp_path / "run"
    args = ["train", "--batch-size", "500", "--n-epochs", "2", "--no-progress", "--data-dir", str(cli_data_dir)]
    assert main([*args, "--out", str(out), "--engine", "fused", "--threads", "1"]) == 0
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["engine"] == "fused" and "engine" not in recorded["config"] and "threads" not in recorded["config"]
    # a resumed run may use another engine: the configuration is the same
    assert main(["train", "--resume", str(out), "--engine", "numpy", "--no-progress",
                 "--data-dir", str(cli_data_dir)]) == 0
    capsys.readouterr()
    assert main([*args, "--threads", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "threads: expected an integer >= 1, found 0" in capsys.readouterr().err


def test_checkpoints_are_coalesced_and_resume_still_ends_where_a_run_ends(tmp_path, monkeypatch):
    """With writes coalesced (here: never before the end), an interrupted run still leaves its
    last finished epoch to resume from, and the resumed run ends as the uninterrupted one."""
    import importlib

    recorder_module = importlib.import_module("logreg_mnist.run.recorder")
    from logreg_mnist.persistence import read_history
    from logreg_mnist.reporting import Reporter
    from logreg_mnist.run import RunDir

    class InterruptAt(Reporter):
        def validation(self, epoch, minibatch, n_batches, error):
            if epoch == 5:
                raise KeyboardInterrupt

    saves = []
    original = RunDir.save
    monkeypatch.setattr(RunDir, "save", lambda self, name, *a: (saves.append(name), original(self, name, *a)))
    monkeypatch.setattr(recorder_module, "SAVE_INTERVAL", float("inf"))
    data = _dataset(n_train=300)
    config = TrainConfig(batch_size=50, learning_rate=0.05, patience=60, n_epochs=30)
    ref_model, ref = train(data, config, tmp_path / "ref", engine="numpy")
    assert saves.count("checkpoint.safetensors") == 1 and saves.count("best.safetensors") <= 2
    with pytest.raises(KeyboardInterrupt):
        train(data, config, tmp_path / "run", reporter=InterruptAt(), engine="numpy")
    assert len(read_history(tmp_path / "run")) == 4
    model, history = train(data, config, tmp_path / "run", resume=True, engine="numpy")
    np.testing.assert_array_equal(model.W, ref_model.W)
    assert (history.epochs, history.best_epoch, history.test_error) == (ref.epochs, ref.best_epoch, ref.test_error)
