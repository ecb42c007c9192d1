"""The training driver: early stopping, persistence, faults, resume, the published result."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from logreg_mnist import TrainConfig, load_model, preset, save_model, train
from logreg_mnist.early_stopping import EarlyStopping
from logreg_mnist.engines.base import SGDSettings
from logreg_mnist.engines.numpy import NumpyEngine
from logreg_mnist.errors import ConfigError, ModelFileError, TrainingDivergedError
from logreg_mnist.persistence import read_history
from logreg_mnist.reporting import ConsoleReporter

from .conftest import InterruptAt


class ScriptedEngine:
    """An engine whose validation errors follow a script; it records the minibatches it trains."""

    name, threads = "scripted", 1

    def __init__(self, n_train_batches, valid_errors, test_error=0.25):
        self.n_train_batches = n_train_batches
        self.script = list(valid_errors)
        self.test_error = test_error
        self.trained: list[int] = []
        self.W, self.b = np.zeros((4, 2), np.float32), np.zeros(2, np.float32)

    def set_params(self, W, b):
        self.W, self.b = np.array(W), np.array(b)

    def get_params(self):
        return self.W.copy(), self.b.copy()

    def train(self, batches):
        self.trained.extend(batches)
        return 0.5 * len(batches), len(batches)

    def count_errors(self, split):
        if split == "valid":
            return round(self.script.pop(0) * 10_000), 10_000
        return round(self.test_error * 1000), 1000


def reference_loop(n_batches, errors, patience, increase, threshold, n_epochs):
    """The chapter's loop, written out plainly: returns (epochs, iterations trained, best iteration)."""
    errors = list(errors)
    best, best_iter, trained = math.inf, -1, 0
    frequency = min(n_batches, patience // 2)
    epoch, done = 0, False
    while epoch < n_epochs and not done:
        epoch += 1
        for mb in range(n_batches):
            it = (epoch - 1) * n_batches + mb
            trained += 1
            if (it + 1) % frequency == 0:
                loss = errors.pop(0)
                if loss < best:
                    if loss < best * threshold:
                        patience = max(patience, it * increase)
                    best, best_iter = loss, it
            if patience <= it:
                done = True
                break
    return epoch, trained, best_iter


class _Data:
    identity, n_features, n_classes = "scripted", 4, 2


@pytest.mark.parametrize("n_batches, patience", [(5, 10), (7, 10), (83, 5000), (3, 4)])
def test_driver_matches_the_chapter_loop_on_scripted_errors(n_batches, patience):
    errors = [0.5, 0.4, 0.399, 0.399, 0.3, 0.2999, 0.31] + [0.35] * 500
    config = TrainConfig(patience=patience, n_epochs=300)
    engine = ScriptedEngine(n_batches, errors)
    _, history = train(_Data(), config, engine=engine)
    epochs, trained, best_iter = reference_loop(n_batches, errors, patience, 2.0, 0.995, 300)
    assert history.epochs == epochs
    assert len(engine.trained) == trained
    assert history.best_iteration == best_iter
    assert history.stopped_by == "patience"


def test_patience_extension_and_stop_iteration_by_hand():
    # 5 minibatches an epoch, patience 10: validations after iterations 4, 9, 14, ...
    engine = ScriptedEngine(5, [0.5, 0.4, 0.399, 0.2] + [0.3] * 20)
    _, history = train(_Data(), TrainConfig(patience=10, n_epochs=100), engine=engine)
    # it 4: 0.5, best (patience max(10, 8) = 10); it 9: 0.4, significant -> patience 18;
    # it 14: 0.399, a best but not significant (>= 0.4 * 0.995) -> patience stays 18; stop after it 18.
    assert engine.trained[-1] == 3 and len(engine.trained) == 19
    assert history.epochs == 4 and history.best_iteration == 14
    assert history.best_valid_error == pytest.approx(0.399)
    assert [r["valid_error"] for r in history.rows] == [0.5, 0.4, 0.399, None]


def test_early_stopping_object():
    s = EarlyStopping(patience=10, patience_increase=2, improvement_threshold=0.995)
    assert s.update(7, 0.5) and s.patience == 14
    assert not s.update(8, 0.5)
    assert s.update(20, 0.4999) and s.patience == 14  # a best, not significant
    assert not s.should_stop(13) and s.should_stop(14)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((784, 10)).astype(np.float32), rng.standard_normal(10).astype(np.float32)
    save_model(tmp_path / "m.safetensors", W, b, {"epoch": 3, "config": {"lr": 0.1}})
    model, meta = load_model(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(model.W, W)
    np.testing.assert_array_equal(model.b, b)
    assert meta["epoch"] == 3 and meta["config"] == {"lr": 0.1} and meta["format"] == "logreg-mnist/1"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"], "no temporary file is left"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask, "an ordinary file, not 0600"


def _bad_files(tmp_path):
    import pickle

    from safetensors.numpy import save_file

    good = tmp_path / "good.safetensors"
    save_model(good, np.zeros((784, 10), np.float32), np.zeros(10, np.float32))
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"W": np.zeros(3)}))
    save_file({"W": np.zeros((784, 10), np.float32), "b": np.zeros(9, np.float32)}, tmp_path / "shapes.safetensors")
    save_file({"W": np.zeros((784, 10), np.float32)}, tmp_path / "names.safetensors")
    save_file({"W": np.zeros((784, 10), np.int32), "b": np.zeros(10, np.int32)}, tmp_path / "dtype.safetensors")
    nan = np.zeros((784, 10), np.float32)
    nan[3, 4] = np.nan
    save_file({"W": nan, "b": np.zeros(10, np.float32)}, tmp_path / "nan.safetensors")


@pytest.mark.parametrize("name, message", [
    ("truncated", r"not a valid safetensors file \(truncated or corrupt\?\)"),
    ("pickle", r"expected a safetensors model file, found a Python pickle \(protocol \d\), which is never loaded"),
    ("shapes", r"expected W of shape \(n_in, n_out\) and b of shape \(n_out,\).*found W \(784, 10\) and b \(9,\)"),
    ("names", r"expected tensors named W and b, found \['W'\]"),
    ("dtype", r"expected W as float32 or float64, found int32"),
    ("nan", r"W holds 1 non-finite value"),
    ("missing", r"cannot read model file"),
])
def test_bad_model_files_are_refused_clearly(tmp_path, name, message):
    _bad_files(tmp_path)
    with pytest.raises(ModelFileError, match=message) as e:
        load_model(tmp_path / f"{name}.safetensors")
    assert f"{name}.safetensors" in str(e.value)


def test_run_directory_contents(tiny_data, tmp_path):
    config = TrainConfig(batch_size=20, patience=30, n_epochs=12, snapshot_every=4)
    model, history = train(tiny_data, config, tmp_path / "run")
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == [".lock", "best.safetensors", "checkpoint.safetensors", "config.json", "history.jsonl", "snapshots"]
    assert sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir()) == [
        f"epoch-{e:04d}.safetensors" for e in (4, 8, 12)][: history.epochs // 4]
    rows = read_history(tmp_path / "run")
    assert rows == history.rows and len(rows) == history.epochs
    assert set(rows[0]) == {"epoch", "iteration", "train_nll", "valid_error", "test_error", "best_valid_error",
                            "elapsed"}
    saved, meta = load_model(tmp_path / "run" / "best.safetensors")
    np.testing.assert_array_equal(saved.W, model.W)
    assert meta["epoch"] == history.best_epoch and meta["test_error"] == history.test_error
    assert meta["dataset"] == tiny_data.identity and meta["config"] == config.to_dict()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["batch_size"] == 20
    # Default mode: the short last minibatch is trained, every example is scored.
    assert rows[0]["iteration"] == 5  # 100 examples / 20 per batch
    assert history.rows[-1]["train_nll"] < history.rows[0]["train_nll"]


def test_drop_last_counts_whole_batches_only(tiny_data):
    engine = NumpyEngine(tiny_data, SGDSettings(batch_size=30, learning_rate=0.1, drop_last=True))
    assert engine.n_train_batches == 3 and engine.count_errors("test")[1] == 30
    engine = NumpyEngine(tiny_data, SGDSettings(batch_size=30, learning_rate=0.1, drop_last=False))
    assert engine.n_train_batches == 4 and engine.count_errors("test")[1] == 40




def test_interrupt_then_resume_ends_where_an_uninterrupted_run_ends(tiny_data, tmp_path):
    config = TrainConfig(batch_size=20, learning_rate=0.05, patience=40, n_epochs=40)
    ref_model, ref = train(tiny_data, config, tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, config, tmp_path / "run", reporter=InterruptAt(epoch=4))
    assert load_model(tmp_path / "run" / "best.safetensors")  # the best so far is on disk
    assert len(read_history(tmp_path / "run")) == 3
    model, history = train(tiny_data, config, tmp_path / "run", resume=True)
    np.testing.assert_array_equal(model.W, ref_model.W)
    assert (history.epochs, history.best_epoch, history.test_error) == (ref.epochs, ref.best_epoch, ref.test_error)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed"} for r in rows]  # noqa: E731
    assert strip(read_history(tmp_path / "run")) == strip(read_history(tmp_path / "ref"))
    # A finished run resumed again does no more work.
    _, again = train(tiny_data, config, tmp_path / "run", resume=True)
    assert again.epochs == ref.epochs


def test_resume_refuses_another_configuration(tiny_data, tmp_path):
    train(tiny_data, TrainConfig(batch_size=20, n_epochs=2), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"configuration differs"):
        train(tiny_data, TrainConfig(batch_size=10, n_epochs=2), tmp_path / "run", resume=True)


class _PoisonedEngine(NumpyEngine):
    """Puts a NaN into W on its n-th call of train (one call per epoch here)."""

    poison_call = 4
    calls = 0

    def train(self, batches):
        out = super().train(batches)
        self.calls += 1
        if self.calls == self.poison_call:
            self.W[0, 0] = np.nan
        return out


def test_non_finite_parameters_stop_training_and_keep_the_best_model(tiny_data, tmp_path):
    config = TrainConfig(batch_size=20, n_epochs=30)
    engine = _PoisonedEngine(tiny_data, SGDSettings(batch_size=20, learning_rate=0.13))
    with pytest.raises(TrainingDivergedError, match=r"diverged in epoch 4 .* is kept in .*best\.safetensors"):
        train(tiny_data, config, tmp_path / "run", engine=engine)
    model, meta = load_model(tmp_path / "run" / "best.safetensors")
    assert np.isfinite(model.W).all() and meta["epoch"] <= 3


def test_config_is_validated_once_with_clear_messages():
    with pytest.raises(ConfigError, match=r"batch_size: expected an integer >= 1, found 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"optimizer: expected one of sgd, cg, lbfgs, found 'adam'"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ConfigError, match=r"preset: expected one of default, tutorial, found 'fast'"):
        preset("fast")
    assert preset("tutorial", learning_rate=0.1).drop_last and preset("tutorial").learning_rate == 0.13


@pytest.mark.realdata
def test_tutorial_reproduction_on_real_mnist(real_mnist, capsys):
    model, history = train(real_mnist, preset("tutorial"), reporter=ConsoleReporter())
    out = capsys.readouterr().out.splitlines()
    assert history.epochs == 74
    assert round(history.test_error * 9600) == 719 and f"{history.test_error * 100:f}" == "7.489583"
    assert out[-4].startswith("epoch 73, minibatch 83/83, validation error 7.5")
    assert out[-4].endswith(" % of 9,600")
    assert out[-3] == "     epoch 73, minibatch 83/83, test error of best model 7.489583 % of 9,600"
    assert out[-2].startswith("Optimization complete with best validation score of 7.5")
    assert out[-2].endswith("with test performance 7.489583 % of 9,600")
    assert repr(history) == ("History(74 rows, epochs=74, best_epoch=73, best_valid_error=7.5000 % of 9,600, "
                             "test_error=7.4896 % of 9,600, stopped_by='patience')")
    assert out[-1].startswith("The code run for 74 epochs, with ")
    assert model.predict(real_mnist.test.images[:10]).tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 6, 9]

