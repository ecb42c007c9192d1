"""Every subcommand with bad arguments: exit 2, one line on stderr, no traceback, nothing created.

Each row is (arguments, a fragment the one-line message must hold). ``{data}`` is a
usable synthetic dataset, ``{run}`` a trained run, ``{file}`` an existing ordinary
file, ``{tmp}`` a scratch directory.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from logreg_mnist.cli import main

from .conftest import one_epoch_run

BAD = [
    # the command itself
    ([], "the following arguments are required: COMMAND"),
    (["trian"], "invalid choice: 'trian'"),
    (["trian"], "(did you mean train?)"),
    (["--verison", "data"], "unrecognized arguments: --verison (did you mean --version?)"),
    # data
    (["data", "--data-dir"], "argument --data-dir: expected one argument"),
    (["data", "--data-dir", "{tmp}/nowhere"], "{tmp}/nowhere: no such data directory"),
    (["data", "--data-dir", "{tmp}"], "missing train-images-idx3-ubyte[.gz]"),
    (["data", "--data", "{data}"], "unrecognized arguments: --data"),
    (["data", "--no-dowload"], "(did you mean --no-download?)"),
    # train: misspelt and abbreviated flags
    (["train", "--learning-rat", "0.1"], "unrecognized arguments: --learning-rat 0.1 (did you mean --learning-rate?)"),
    (["train", "--learn", "0.1"], "unrecognized arguments: --learn"),
    (["train", "--optimizer", "sdg"], "invalid choice: 'sdg'"),
    (["train", "--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    (["train", "--learning-rate", "abc"], "argument --learning-rate/--lr: invalid float value: 'abc'"),
    (["train", "--batch-size", "1.5"], "argument --batch-size: invalid int value: '1.5'"),
    # train: values out of range, reported by their flag
    (["train", "--learning-rate", "0"], "--learning-rate: expected a finite number > 0, found 0.0"),
    (["train", "--learning-rate", "nan"], "--learning-rate: expected a finite number > 0, found nan"),
    (["train", "--learning-rate", "inf"], "--learning-rate: expected a finite number > 0, found inf"),
    (["train", "--patience-increase", "inf", "--out", "{tmp}/pi"], "--patience-increase: expected a finite number >= 1"),
    (["train", "--patience-increase", "nan", "--out", "{tmp}/pi"], "--patience-increase: expected a finite number >= 1"),
    (["train", "--improvement-threshold", "nan"], "--improvement-threshold: expected a number in (0, 1]"),
    (["train", "--improvement-threshold", "1.5"], "--improvement-threshold: expected a number in (0, 1]"),
    (["train", "--init", "random", "--seed", "-1", "--out", "{tmp}/seed"], "--seed: expected an integer in [0, 4294967295]"),
    (["train", "--seed", str(2**64)], "--seed: expected an integer in [0, 4294967295]"),
    (["train", "--batch-size", "0"], "--batch-size: expected an integer >= 1, found 0"),
    (["train", "--n-epochs", "-1"], "--n-epochs: expected an integer >= 1, found -1"),
    (["train", "--patience", "0"], "--patience: expected an integer >= 1, found 0"),
    (["train", "--l1", "-1"], "--l1: expected a finite number >= 0, found -1.0"),
    (["train", "--l2", "inf"], "--l2: expected a finite number >= 0, found inf"),
    (["train", "--max-iter", "0"], "--max-iter: expected an integer >= 1, found 0"),
    (["train", "--snapshot-every", "-2"], "--snapshot-every: expected an integer >= 0, found -2"),
    (["train", "--preset", "tutorial", "--batch-size", "1000", "--data-dir", "{data}", "--out", "{tmp}/bs"],
     "--batch-size: expected at most the 300 training examples"),
    (["train", "--quiet", "--verbose"], "argument -v/--verbose: not allowed with argument -q/--quiet"),
    # train: where the run goes
    (["train", "--out", "{file}"], "--out {file}: expected a directory, found an existing file"),
    (["train", "--out", "{file}/sub"], "is a file, not a directory"),
    (["train", "--out", "{run}", "--data-dir", "{data}"], "already holds a run; continue it with --resume"),
    (["train", "--out", "/proc/logreg-mnist-run", "--data-dir", "{data}", "--n-epochs", "1"], "cannot create"),
    (["train", "--overwrite"], "--overwrite replaces the run in --out; give --out DIR"),
    (["train", "--resume", "{tmp}/nowhere"], "no run to resume here"),
    (["train", "--resume", "{run}", "--learning-rate", "0.1"], "drop --learning-rate"),
    (["train", "--resume", "{run}", "--overwrite"], "drop --overwrite"),
    (["train", "--resume", "{cg}"], "kept: the best model in {cg}/best.safetensors (iteration 1, validation error 0.0000 % of 10,000)"),
    (["train", "--data-dir", "{tmp}/fashion-mnst"], "{tmp}/fashion-mnst: no such data directory"),
    # predict
    (["predict"], "the following arguments are required: MODEL (see"),
    (["predict", "{tmp}/nope.safetensors"], "cannot read model file"),
    (["predict", "{file}"], "not a valid safetensors file"),
    (["predict", "{run}", "--jsn"], "(did you mean --json?)"),
    (["predict", "{run}", "{tmp}/missing.png"], "no such file"),
    # evaluate
    (["evaluate"], "the following arguments are required: MODEL"),
    (["evaluate", "{tmp}"], "a directory without best.safetensors"),
    (["evaluate", "{run}", "--data-dir", "{tmp}/nowhere"], "no such data directory"),
    (["evaluate", "{run}", "--jsno"], "(did you mean --json?)"),
    # plot
    (["plot", "{tmp}/nope"], "cannot read model file"),
    (["plot", "{run}", "--out", "{file}"], "--out {file}: expected a directory, found an existing file"),
    (["plot", "{run}", "--out", "/proc/logreg-mnist-plots"], "--out /proc/logreg-mnist-plots: cannot create"),
    # digits
    (["digits", "-n", "0"], "-n: expected a number of images >= 1, found 0"),
    (["digits", "-n", "x"], "argument -n: invalid int value: 'x'"),
    (["digits", "--split", "tst"], "(did you mean test?)"),
    (["digits", "--out", "{tmp}/missing/dir/x.png"], "the directory {tmp}/missing/dir does not exist"),
    (["digits", "--out", "{file}"], "expected a file name ending in .png"),
    (["digits", "--out", "{tmp}"], "expected a file name ending in .png"),
    (["digits", "--out", "/proc/logreg-mnist.png", "--data-dir", "{data}"], "--out /proc/logreg-mnist.png: cannot write"),
    (["digits", "--digit", "10", "--data-dir", "{data}", "--out", "{tmp}/d.png"], "--digit: expected a class in 0-9"),
]


@pytest.fixture(scope="module")
def places(cli_data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-arguments")
    run = tmp / "run"
    one_epoch_run(cli_data_dir, run)
    assert main(["train", "--data-dir", str(cli_data_dir), "--out", str(tmp / "cg"), "--optimizer", "cg",
                 "--max-iter", "2", "-q"]) == 0
    (tmp / "notes.txt").write_text("not a model, not a directory\n")
    return {"data": str(cli_data_dir), "run": str(run), "cg": str(tmp / "cg"), "file": str(tmp / "notes.txt"),
            "tmp": str(tmp / "scratch")}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exit
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, fragment", BAD, ids=[" ".join(a) or "(none)" for a, _ in BAD])
def test_bad_arguments_exit_2_with_one_line(argv, fragment, places, capsys, monkeypatch, tmp_path):
    places = {**places, "tmp": str(tmp_path)}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOGREG_MNIST_DATA_DIR", str(tmp_path / "no-data-here"))  # never the network
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(**places) for a in argv]
    code, out, err = _run(argv, capsys)
    assert code == 2, err
    assert out == "", out  # nothing printed before the error (a run directory that is never made)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("logreg-mnist"), err
    assert "Traceback" not in err
    assert fragment.format(**places) in lines[0]
    # Nothing is created by a refused command.
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_closed_pipe_ends_quietly(places, tmp_path):
    np.save(tmp_path / "many.npy", np.zeros((5000, 784), dtype=np.uint8))
    proc = subprocess.Popen([sys.executable, "-m", "logreg_mnist", "predict", places["run"], str(tmp_path / "many.npy")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert first.startswith(str(tmp_path / "many.npy").encode()) and err == ""


def test_a_huge_finite_patience_increase_trains(places, tmp_path):
    # 1e308 * iteration overflows to inf: patience is then simply never reached.
    out = tmp_path / "run"
    assert main(["train", "--data-dir", places["data"], "--out", str(out), "--batch-size", "100",
                 "--n-epochs", "2", "--patience-increase", "1e308", "-q"]) == 0
    assert len((out / "history.jsonl").read_text().splitlines()) == 2


def test_help_is_not_an_error(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0 and "--overwrite" in capsys.readouterr().out
