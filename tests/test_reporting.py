"""What training prints: hyperparameters once, denominators, a bar that never goes back, quiet and verbose."""

from __future__ import annotations

import io
import re

import pytest

from logreg_mnist import TrainConfig, train
from logreg_mnist.cli import main
from logreg_mnist.reporting import NORMAL, QUIET, VERBOSE, ConsoleReporter, percent

# Patience 40 minibatches of 20 (5 a epoch): several significant improvements extend it.
CONFIG = TrainConfig(batch_size=20, learning_rate=0.05, patience=10, n_epochs=30)


def test_percent_names_its_denominator():
    assert percent(0.07489583333, 9600) == "7.489583 % of 9,600"
    assert percent(0.0775, 10_000, 2) == "7.75 % of 10,000"
    assert percent(None) == "-" and percent(float("nan"), 5) == "-"


def test_the_bar_counts_up_and_shows_epoch_errors_and_patience(tiny_data, capsys):
    stream = io.StringIO()
    _, history = train(tiny_data, CONFIG, reporter=ConsoleReporter(stream, progress=True))
    assert history.epochs > 2  # patience was extended at least once
    bar = capsys.readouterr().err.replace("\r", "\n")
    counts = [int(n) for n in re.findall(r"training: (\d+)batch", bar)]
    assert counts and counts == sorted(counts), "the bar never moves backwards"
    assert counts[-1] == history.rows[-1]["iteration"]
    assert "%|" not in bar, "no percentage of an end that is not known"
    last = [line for line in bar.splitlines() if f"{counts[-1]}batch" in line][-1]
    assert f"epoch {history.epochs}, validation " in last and " of 20, patience left " in last
    assert f"best {history.best_valid_error * 100:.2f} % of 20" in last


def test_normal_quiet_and_verbose(tiny_data):
    outputs = {}
    for level in (QUIET, NORMAL, VERBOSE):
        stream = io.StringIO()
        _, history = train(tiny_data, CONFIG, reporter=ConsoleReporter(stream, verbosity=level))
        outputs[level] = stream.getvalue().splitlines()
    quiet, normal, verbose = outputs[QUIET], outputs[NORMAL], outputs[VERBOSE]
    assert [line.split(" with")[0] for line in quiet] == ["Optimization complete", "The code run for "
                                                          f"{history.epochs} epochs,"]
    assert normal[0].startswith("hyperparameters: optimizer sgd, learning_rate 0.05, batch_size 20,")
    assert sum(line.startswith("hyperparameters:") for line in normal) == 1
    assert normal[1].startswith("data: idx-") and "errors over 20 validation and 40 test examples" in normal[1]
    assert all(line.endswith(" % of 20") for line in normal if "validation error" in line)
    assert all(line.endswith(" % of 40") for line in normal if "test error of best model" in line)
    per_epoch = [line for line in verbose if line.startswith("  epoch ")]
    assert len(per_epoch) == history.epochs and len(verbose) == len(normal) + history.epochs
    assert re.fullmatch(r"  epoch 1: training NLL \d\.\d{6}, validation error \d+\.\d{4} % of 20, best "
                        r"\d+\.\d{4} % of 20, patience left \d+ minibatches, \d+\.\d s", per_epoch[0])


def test_cli_quiet_prints_only_the_result(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data-dir", str(cli_data_dir), "--out", str(out), "--batch-size", "100",
                 "--n-epochs", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and printed[2].startswith(f"best model: {out / 'best.safetensors'} (epoch ")
    assert re.search(r"validation error \d+\.\d{4} % of 10,000, test error \d+\.\d{4} % of 200\)$", printed[2])


@pytest.mark.parametrize("optimizer", ["cg"])
def test_full_batch_lines_have_denominators(tiny_data, optimizer):
    stream = io.StringIO()
    train(tiny_data, TrainConfig(optimizer=optimizer, max_iter=3), reporter=ConsoleReporter(stream))
    lines = stream.getvalue().splitlines()
    assert [line for line in lines if line.startswith("validation error ")]
    assert all(line.endswith(" % of 20") for line in lines if line.startswith("validation error "))
    assert lines[-2].endswith(" % of 40")
