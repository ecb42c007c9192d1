"""Every command end to end on a synthetic dataset, and the user-error paths."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from logreg_mnist.cli import main
from logreg_mnist.data import write_idx

from .conftest import make_digits

TRAIN = ["train", "--batch-size", "100", "--n-epochs", "3", "--no-progress"]


@pytest.fixture
def run_dir(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out), "--snapshot-every", "1"]) == 0
    capsys.readouterr()
    return out


def test_data_prints_a_summary(cli_data_dir, capsys):
    assert main(["data", "--data-dir", str(cli_data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"data directory: {cli_data_dir}" in out
    assert "unverified dataset idx-" in out
    assert "train    300 images 28x28" in out and "valid 10,000 images" in out and "test     200" in out


def test_train_prints_the_chapter_lines_and_leaves_a_run(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run directory: {out}"
    assert lines[1].startswith("hyperparameters: optimizer sgd, learning_rate 0.13, batch_size 100, n_epochs 3,")
    assert lines[2].startswith("data: idx-") and "errors over 10,000 validation and 200 test examples" in lines[2]
    assert lines[3].startswith("epoch 1, minibatch 3/3, validation error ") and lines[3].endswith(" % of 10,000")
    assert any(line.startswith("Optimization complete with best validation score of ") for line in lines)
    assert (out / "best.safetensors").is_file() and (out / "history.jsonl").is_file()
    # The same --out again is refused: a run is never overwritten by accident.
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)]) == 2
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
    # ... unless asked to replace it.
    (out / "plots").mkdir()
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out), "--overwrite", "-q"]) == 0
    assert not (out / "plots").exists() and (out / "best.safetensors").is_file()


def test_dry_run_trains_one_minibatch_and_leaves_nothing(cli_data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dry-run", "--data-dir", str(cli_data_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1, minibatch 1/" in out and "The code run for 1 epochs" in out
    assert not (tmp_path / "runs").exists()


def test_resume_with_other_flags_is_a_user_error(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--learning-rate", "0.1"]) == 2
    assert "--resume continues a run with its own configuration; drop --learning-rate" in capsys.readouterr().err


def test_resume_a_finished_run(run_dir, cli_data_dir, capsys):
    assert main(["train", "--resume", str(run_dir), "--data-dir", str(cli_data_dir), "--no-progress"]) == 0
    assert "The code run for 3 epochs" in capsys.readouterr().out


def test_predict_first_ten_test_digits(run_dir, cli_data_dir, capsys):
    assert main(["predict", str(run_dir), "--data-dir", str(cli_data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Predicted values for the first 10 examples in test set:"
    assert out[1].startswith("[") and len(out[1].strip("[]").split()) == 10
    assert main(["predict", str(run_dir / "best.safetensors"), "--json", "--data-dir", str(cli_data_dir)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got["predicted"]) == 10 and len(got["true"]) == 10


def test_predict_files_of_every_kind(run_dir, tmp_path, capsys):
    images, labels = make_digits(3, seed=3)
    Image.fromarray(images[0]).save(tmp_path / "light_on_dark.png")
    Image.fromarray(255 - images[1]).resize((140, 140)).save(tmp_path / "dark_on_light.jpg", quality=95)
    np.save(tmp_path / "one.npy", images[2])
    np.save(tmp_path / "many.npy", images.reshape(3, 784).astype(np.float32) / 255)
    write_idx(tmp_path / "imgs-idx3-ubyte.gz", images, compress=True)
    inputs = ["light_on_dark.png", "dark_on_light.jpg", "one.npy", "many.npy", "imgs-idx3-ubyte.gz"]
    assert main(["predict", str(run_dir), *[str(tmp_path / f) for f in inputs], "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [g["input"].rsplit("/", 1)[-1] for g in got] == [
        "light_on_dark.png", "dark_on_light.jpg", "one.npy", "many.npy[0]", "many.npy[1]", "many.npy[2]",
        "imgs-idx3-ubyte.gz[0]", "imgs-idx3-ubyte.gz[1]", "imgs-idx3-ubyte.gz[2]"]
    assert all(0 <= g["label"] <= 9 and 0 < g["probability"] <= 1 for g in got)
    # The synthetic classes are easy: the trained model gets the exact images right.
    assert [g["label"] for g in got[-3:]] == labels.tolist()
    assert got[2]["label"] == labels[2]
    # These synthetic 28x28 pictures are not laid out like MNIST's digits: --raw takes them as they are.
    assert main(["predict", str(run_dir), str(tmp_path / "light_on_dark.png"), "--raw", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == labels[0]
    assert main(["predict", str(run_dir), str(tmp_path / "one.npy")]) == 0
    assert f"one.npy  {labels[2]}  (probability " in capsys.readouterr().out


def test_evaluate_prints_errors_per_class(run_dir, cli_data_dir, capsys):
    assert main(["evaluate", str(run_dir), "--data-dir", str(cli_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "valid error" in out and " % of 10,000  (" in out and "test error per class:" in out
    assert "test  error " in out and " % of 200  (" in out
    assert main(["evaluate", str(run_dir), "--json", "--data-dir", str(cli_data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test"]["n"] == 200 and len(report["test"]["per_class"]) == 10
    assert sum(c["wrong"] for c in report["test"]["per_class"]) == report["test"]["wrong"]


@pytest.mark.parametrize("argv, message", [
    (["predict", "nope.safetensors"], "cannot read model file"),
    (["evaluate", "nope.safetensors"], "cannot read model file"),
    (["train", "--batch-size", "0", "--data-dir", "x"], "--batch-size: expected an integer >= 1, found 0"),
    (["data", "--data-dir", "/nonexistent-dir", "--no-download"], "/nonexistent-dir: no such data directory"),
])
def test_user_errors_exit_2_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_input_file_for_predict(run_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5)))
    assert main(["predict", str(run_dir), str(tmp_path / "notes.txt")]) == 2
    assert "expected an image (PNG, JPEG, GIF, BMP, TIFF, WebP), an IDX images file or a .npy array, found .txt" \
        in capsys.readouterr().err
    assert main(["predict", str(run_dir), str(tmp_path / "wrong.npy")]) == 2
    assert "expected an array of shape (n, 784) or (n, 28, 28)" in capsys.readouterr().err


def test_module_entry_point_and_help_shows_defaults():
    done = subprocess.run([sys.executable, "-m", "logreg_mnist", "train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    help_text = " ".join(done.stdout.split())
    for expected in ("--learning-rate LEARNING_RATE, --lr LEARNING_RATE SGD step size (default: 0.13)", "(default: 600)",
                     "(default: 5000)", "(default: 0.995)", "--dry-run", "--resume DIR"):
        assert expected in help_text, expected
    assert "(default: None)" not in help_text


def test_train_and_sweep_take_the_same_flags_generated_from_the_config(capsys, monkeypatch):
    from logreg_mnist.cli import build_parser
    from logreg_mnist.config import HYPERPARAMETERS, SETTINGS

    fixed = ["--preset", "tutorial", "--optimizer", "lbfgs", "--learning-rate", "0.5", "--batch-size", "20",
             "--n-epochs", "3", "--patience", "7", "--patience-increase", "1.5", "--improvement-threshold", "0.9",
             "--l1", "0.001", "--l2", "0.002", "--no-drop-last", "--init", "random", "--seed", "9", "--max-iter", "4",
             "--snapshot-every", "2", "--dtype", "float64", "--engine", "numpy", "--threads", "2",
             "--max-resident", "64M", "--data-dir", "somewhere", "--no-download"]
    parser = build_parser()
    train, sweep = vars(parser.parse_args(["train", *fixed])), vars(parser.parse_args(["sweep", *fixed]))
    shared = {"preset", *HYPERPARAMETERS, "engine", "threads", "max_resident", "data_dir", "download"}
    assert {k: train[k] for k in shared} == {k: sweep[k] for k in shared}
    assert train["learning_rate"] == 0.5 and train["batch_size"] == 20 and train["drop_last"] is False
    assert train["max_resident"] == "64M" and train["download"] is False
    assert "dry_run" in train and "dry_run" not in sweep  # a mode of one run, not a setting to sweep
    # the same help, with the declared default, on both commands (on lines wide enough not to break words)
    monkeypatch.setenv("COLUMNS", "1000")
    helps = []
    for command in ("train", "sweep"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        helps.append(" ".join(capsys.readouterr().out.split()))
    for s in HYPERPARAMETERS.values():
        shown = s.shown if s.shown is not None else s.default
        assert all(f"{s.help} (default: {shown})" in h for h in helps), s.name
    assert SETTINGS["dry_run"].help in helps[0] and "--dry-run" not in helps[1]
