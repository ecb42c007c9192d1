"""Runs remember their data; datasets known by hash, with class names; one safety rule for runs."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from logreg_mnist import (
    History, TrainConfig, load_history, load_mnist, load_model, load_run_data, train,
)
from logreg_mnist.cli import main
from logreg_mnist.data import known
from logreg_mnist.errors import ConfigError, DataError
from logreg_mnist.plots import confusion_matrix_figure, weights_figure

from .conftest import write_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
CONFIG = TrainConfig(batch_size=20, n_epochs=3)


@pytest.fixture
def two_datasets(tmp_path):
    """Two different tiny IDX datasets, A and B."""
    write_dataset(tmp_path / "A", seed=0)
    write_dataset(tmp_path / "B", seed=5)
    return tmp_path / "A", tmp_path / "B"


@pytest.fixture
def run_on_a(two_datasets, tmp_path):
    a, _ = two_datasets
    train(load_mnist(a, valid_size=20, progress=False), CONFIG, tmp_path / "run")
    return tmp_path / "run"


# -- known datasets, by hash ------------------------------------------------------------------------

def test_a_dataset_is_recognised_by_the_hashes_of_its_content(tmp_path, monkeypatch):
    hashes = write_dataset(tmp_path / "d", compress=True)
    entry = known.KnownDataset("shapes", "Shapes", hashes, tuple(f"shape {i}" for i in range(10)))
    monkeypatch.setattr(known, "KNOWN_DATASETS", (known.MNIST, entry))
    data = load_mnist(tmp_path / "d", valid_size=20, progress=False)
    assert data.identity == "shapes" and data.verified and data.title == "Shapes"
    assert data.class_names == [f"shape {i}" for i in range(10)]
    assert data.summary().splitlines()[0] == f"Shapes, SHA-256 verified, from {tmp_path / 'd'}"
    # The same content uncompressed is the same dataset; one changed file is not.
    write_dataset(tmp_path / "raw", compress=False)
    assert load_mnist(tmp_path / "raw", valid_size=20, progress=False).identity == "shapes"
    write_dataset(tmp_path / "other", seed=9)
    assert load_mnist(tmp_path / "other", valid_size=20, progress=False).identity.startswith("idx-")


def test_known_digests_are_those_of_the_published_files():
    assert known.recognise(known.MNIST.sha256) is known.MNIST
    assert known.recognise(known.FASHION_MNIST.sha256) is known.FASHION_MNIST
    assert known.recognise({**known.MNIST.sha256, "t10k-labels-idx1-ubyte": "0" * 64}) is None
    assert list(known.FASHION_MNIST.class_names) == FASHION_NAMES


@pytest.mark.realdata
def test_fashion_mnist_from_debian_is_recognised_with_its_class_names():
    if not FASHION.is_dir():
        if os.environ.get("LOGREG_MNIST_REQUIRE_REAL_DATA"):
            pytest.fail(f"{FASHION} is required (Debian's dataset-fashion-mnist) but missing")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data = load_mnist(FASHION, progress=False)
    assert data.identity == "fashion-mnist" and data.verified and data.class_names == FASHION_NAMES
    assert "Fashion-MNIST, SHA-256 verified" in data.summary() and "9 Ankle boot" in data.summary()


def test_classes_txt_names_the_classes_of_other_datasets(tiny_dir):
    names = [f"glyph {chr(65 + i)}" for i in range(10)]
    (tiny_dir / "classes.txt").write_text("\n".join(names) + "\n\n")
    data = load_mnist(tiny_dir, valid_size=20, progress=False)
    assert not data.verified and data.class_names == names
    (tiny_dir / "classes.txt").write_text("one\ntwo\n")
    with pytest.raises(DataError, match=r"classes.txt: expected 10 class names .* found 2"):
        load_mnist(tiny_dir, valid_size=20, progress=False)


def test_unnamed_classes_are_numeric(tiny_data):
    assert tiny_data.class_names == [str(i) for i in range(10)]


# -- downloads only where meant ---------------------------------------------------------------------

def test_a_named_directory_is_never_created_or_filled_unasked(tmp_path):
    typo = tmp_path / "fashion-mnst"
    with pytest.raises(DataError, match=r"fashion-mnst: no such data directory .* pass --download"):
        load_mnist(typo)
    assert not typo.exists()
    (tmp_path / "half").mkdir()
    write_dataset(tmp_path / "half")
    (tmp_path / "half" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"half: missing t10k-labels-idx1-ubyte\[.gz\] "):
        load_mnist(tmp_path / "half")


def test_download_true_fetches_into_a_named_directory(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(dest, files, sources, progress):
        calls.append(Path(dest))
        raise DataError("no network in this test")

    monkeypatch.setattr("logreg_mnist.data.mnist.fetch_files", fake_fetch)
    with pytest.raises(DataError, match="no network in this test"):
        load_mnist(tmp_path / "new", download=True)
    assert calls == [tmp_path / "new"]


# -- a run is self-describing -----------------------------------------------------------------------

def test_runs_and_models_record_their_data(run_on_a, two_datasets):
    a, _ = two_datasets
    config = json.loads((run_on_a / "config.json").read_text())
    _, meta = load_model(run_on_a)
    for record in (config, meta):
        assert record["dataset"].startswith("idx-") and record["data_source"] == str(a.resolve())
        assert record["valid_size"] == 20 and record["class_names"] == [str(i) for i in range(10)]
        assert (record["n_valid"], record["n_test"]) == (20, 40)


def test_commands_given_a_run_use_its_data(run_on_a, two_datasets, capsys, monkeypatch):
    a, b = two_datasets
    monkeypatch.setenv("LOGREG_MNIST_DATA_DIR", str(b))  # the default today is another dataset
    assert load_run_data(run_on_a).source == a
    assert load_run_data(run_on_a / "best.safetensors").source == a
    assert main(["evaluate", str(run_on_a), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["dataset"] == load_mnist(a, valid_size=20).identity and captured.err == ""
    assert report["valid"]["n"] == 20 and report["test"]["n"] == 40
    # --data-dir overrides, with a warning naming both.
    assert main(["evaluate", str(run_on_a), "--data-dir", str(b)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {run_on_a} was trained on idx-")
    assert err[0].endswith(f"from {b} as asked")


def test_missing_or_changed_data_is_refused(run_on_a, two_datasets, capsys, tmp_path):
    a, b = two_datasets
    shutil.move(a, tmp_path / "moved")
    for command in (["evaluate", str(run_on_a)], ["predict", str(run_on_a)], ["plot", str(run_on_a)],
                    ["train", "--resume", str(run_on_a)]):
        assert main(command) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "which is not there now; pass --data-dir DIR" in err[0], command
    shutil.copytree(b, a)  # other data where the run's was
    assert main(["evaluate", str(run_on_a)]) == 2
    assert f"but {a} now holds idx-" in capsys.readouterr().err
    assert not (run_on_a / "plots").exists()


# -- class names everywhere ---------------------------------------------------------------------------

def test_class_names_in_evaluate_predict_and_plots(tiny_dir, tmp_path, capsys):
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"]
    (tiny_dir / "classes.txt").write_text("\n".join(names))
    data = load_mnist(tiny_dir, valid_size=20, progress=False)
    model, _ = train(data, CONFIG, tmp_path / "run")
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "  Ankle boot  " in out and "  T-shirt/top  " in out
    np.save(tmp_path / "x.npy", data.test.pixels[:3])
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "x.npy"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [g["class_name"] for g in got] == [names[g["label"]] for g in got]
    assert main(["predict", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == ", ".join(names[int(i)] for i in lines[1].strip("[]").split())
    fig = weights_figure(model, class_names=names)
    assert [ax.get_title() for ax in fig.axes[:10]] == names
    pred = model.predict(data.test.images)
    fig = confusion_matrix_figure(data.test.labels, pred, 10, class_names=names)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names and ax.get_xlabel() == "predicted class"
    assert f"of {len(pred):,}" in fig._suptitle.get_text()


# -- one safety rule for runs, in the library ----------------------------------------------------------

def test_train_refuses_an_existing_run_unless_asked(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_data, CONFIG.replace(snapshot_every=1), run)
    (run / "plots").mkdir()
    (run / "notes.md").write_text("mine")
    before = (run / "best.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run; .*\(overwrite=True\)"):
        train(tiny_data, CONFIG, run)
    assert (run / "best.safetensors").read_bytes() == before
    with pytest.raises(ConfigError, match="resume and overwrite exclude each other"):
        train(tiny_data, CONFIG, run, resume=True, overwrite=True)
    train(tiny_data, CONFIG.replace(n_epochs=2), run, overwrite=True)
    assert not (run / "snapshots").exists() and not (run / "plots").exists()
    assert (run / "notes.md").read_text() == "mine"  # not the run's: left alone
    assert len(load_history(run).rows) == 2
    with pytest.raises(ConfigError, match="expected a directory, found an existing file"):
        train(tiny_data, CONFIG, run / "notes.md")


# -- history ------------------------------------------------------------------------------------------

def test_load_history_and_its_short_repr(tiny_data, tmp_path):
    _, history = train(tiny_data, CONFIG, tmp_path / "run")
    loaded = load_history(tmp_path / "run")
    assert loaded.rows == history.rows
    assert (loaded.best_epoch, loaded.best_valid_error, loaded.test_error, loaded.epochs) == (
        history.best_epoch, history.best_valid_error, history.test_error, history.epochs)
    assert (loaded.n_valid, loaded.n_test) == (history.n_valid, history.n_test) == (20, 40)
    text = repr(history)
    assert text.startswith("History(3 rows, epochs=3, best_epoch=") and "% of 20" in text and "% of 40" in text
    assert len(text) < 200 and "train_nll" not in text
    assert "inf %" in repr(History()) and math.isinf(History().best_valid_error)
    with pytest.raises(ConfigError, match="expected a run directory"):
        load_history(tmp_path / "nowhere")
