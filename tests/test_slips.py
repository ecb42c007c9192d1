"""The slips a new user makes most, each answered with what leads to the fix.

Each table row is a command a newcomer types and what must come back: the exit code,
fragments of stdout and of stderr. ``{run}`` is a trained run, ``{image}`` a PNG of a
digit, ``{sweep}`` a sweep directory whose chosen trial is ``{run}``'s copy, ``{data}``
the synthetic dataset, ``{tmp}`` a scratch directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from logreg_mnist.cli import main
from logreg_mnist.cli.parser import build_parser

from .conftest import one_epoch_run

REPO = Path(__file__).resolve().parents[1]


def _digit_png(path: Path) -> Path:
    pixels = np.full((28, 28), 255, np.uint8)
    pixels[5:22, 12:16] = 0
    Image.fromarray(pixels).save(path)
    return path


def _sweep_dir(path: Path, run: Path, data: Path, *, finished: bool) -> Path:
    """A sweep directory as `sweep` leaves it: its plan, and (when finished) one trial, its row and best."""
    from logreg_mnist import sweep
    from logreg_mnist.data import load_mnist
    from logreg_mnist.sweep.directory import trials_csv

    identity = load_mnist(data, progress=False).identity
    plan = sweep.make_plan("default", {"batch_size": 100, "n_epochs": 1}, grid=["learning_rate=0.13"],
                           data=sweep.DataSource(str(data), identity))
    path.mkdir()
    (path / "sweep.json").write_text(json.dumps(plan.to_dict()))
    if finished:
        trial = plan.trials[0]
        shutil.copytree(run, path / "trials" / trial.name)
        record = {"epochs": 1, "valid_error": 0.0, "test_error": 0.0, "seconds": 0.1, "worker": "here",
                  "status": "ok", "n_valid": 10_000, "n_test": 200}
        (path / "trials.csv").write_text(trials_csv(plan, {trial.name: record}))
        (path / "best").symlink_to(Path("trials") / trial.name)
    return path


@pytest.fixture(scope="module")
def places(cli_data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slips")
    run = tmp / "run"
    one_epoch_run(cli_data_dir, run)
    return {"data": str(cli_data_dir), "run": str(run), "image": str(_digit_png(tmp / "seven.png")),
            "sweep": str(_sweep_dir(tmp / "sweep", run, cli_data_dir, finished=True)),
            "unfinished": str(_sweep_dir(tmp / "unfinished", run, cli_data_dir, finished=False))}


# (arguments, exit code, fragments of stdout, fragments of stderr)
SLIPS = [
    # --version is output, as every tool's is (`--version | cat`)
    (["--version"], 0, ["logreg-mnist "], []),
    # the learning rate's short name is taken, by train and sweep alike
    (["train", "--lr", "0.2", "--dry-run", "--data-dir", "{data}", "--batch-size", "100"], 0, ["learning_rate 0.2"], []),
    # a sweep directory stands for its chosen trial
    (["evaluate", "{sweep}"], 0, ["valid error", "of 10,000"], ["{sweep}: a sweep; using its chosen trial {sweep}/best"]),
    (["predict", "{sweep}", "{image}"], 0, ["{image}  "], ["using its chosen trial {sweep}/best"]),
    # the model comes first
    (["predict", "{image}", "{run}"], 2, [], ["{image}: expected a run directory or a .safetensors model file, "
                                              "found a PNG image; the model comes first"]),
    (["evaluate", "{image}"], 2, [], ["{image}: expected a run directory or a .safetensors model file, found a PNG"]),
    # INPUT is optional: without it, the first test digits are predicted
    (["predict"], 2, [], ["the following arguments are required: MODEL (see logreg-mnist predict --help)"]),
    (["evaluate", "{unfinished}"], 2, [], ["{unfinished}: a sweep with no finished trial yet (no {unfinished}/best); "
                                           "run its trials with: logreg-mnist sweep --resume {unfinished}"]),
    # --grid names a field as train's flags do, with the same help for a typo
    (["sweep", "--grid", "learnig_rate=0.1,0.2"], 2, [], ["found 'learnig_rate' (did you mean learning_rate?)"]),
    (["sweep", "--range", "learning-rat=0.1:0.2", "--random", "2"], 2, [], ["(did you mean learning_rate?)"]),
]


def _run(argv, capsys):
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exit (--version, --help)
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, code, out_fragments, err_fragments", SLIPS, ids=[" ".join(s[0]) for s in SLIPS])
def test_a_slip_gets_the_answer_that_leads_to_the_fix(argv, code, out_fragments, err_fragments, places, capsys,
                                                      monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    places = {**places, "tmp": str(tmp_path)}
    got, out, err = _run([a.format(**places) for a in argv], capsys)
    assert got == code, err
    assert "Traceback" not in err
    for fragment in out_fragments:
        assert fragment.format(**places) in out, out
    for fragment in err_fragments:
        assert fragment.format(**places) in err, err
    if code == 2:
        assert len(err.splitlines()) == 1 and out == "", err


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_lr_is_the_learning_rate(command):
    assert build_parser().parse_args([command, "--lr", "0.3"]).learning_rate == 0.3


def test_data_help_speaks_of_the_run_only_where_there_is_one(capsys):
    def data_dir_help(command: str) -> str:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        return text[text.index("--data-dir DIR"):].split(" --download")[0]

    for command in ("data", "digits", "sweep"):
        assert "run's own data" not in data_dir_help(command), command
    for command in ("predict", "evaluate", "plot"):
        assert "the run's own data" in data_dir_help(command), command
    assert "the run's own data with --resume" in data_dir_help("train")


def test_cg_header_lists_only_what_cg_uses(places, tmp_path, capsys):
    assert main(["train", "--optimizer", "cg", "--max-iter", "2", "--data-dir", places["data"],
                 "--out", str(tmp_path / "cg")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hyperparameters:"))
    assert "max_iter 2" in header and "l2 0.0" in header
    for sgd_only in ("learning_rate", "patience", "n_epochs", "improvement_threshold", "float32"):
        assert sgd_only not in header, header
    assert "float64" in header


def test_sgd_header_leaves_out_max_iter(places, tmp_path, capsys):
    assert main(["train", "--dry-run", "--data-dir", places["data"], "--batch-size", "100"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hyperparameters:"))
    assert "learning_rate 0.13" in header and "dtype float32" in header and "max_iter" not in header


def test_overwrite_says_which_settings_of_the_replaced_run_are_dropped(places, tmp_path, capsys):
    out = str(tmp_path / "l2")
    common = ["--data-dir", places["data"], "--out", out, "--batch-size", "100", "--n-epochs", "1", "-q"]
    assert main(["train", "--l2", "1e-4", *common]) == 0
    capsys.readouterr()
    assert main(["train", *common, "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: --overwrite: ") and len(err.splitlines()) == 1, err
    assert "--l2 0.0001" in err and "now --l2 0.0" in err
    # the same settings given again: nothing to say
    assert main(["train", "--l2", "1e-4", *common, "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["train", "--l2", "1e-4", *common, "--overwrite"]) == 0
    assert capsys.readouterr().err == ""


def test_out_with_missing_parents_creates_them(places, tmp_path):
    # `train --out runs/l2` on a fresh clone has no runs/ yet: the parents are made, as for the default runs/DATE
    out = tmp_path / "runs" / "new" / "l2"
    assert main(["train", "--data-dir", places["data"], "--out", str(out), "--batch-size", "100",
                 "--n-epochs", "1", "-q"]) == 0
    assert (out / "best.safetensors").is_file()


# --- inputs that are not plain files: pipes given as paths ---------------------------------------------


def _predict_from_pipe(run: str, payload: bytes) -> subprocess.CompletedProcess:
    """`logreg-mnist predict RUN <(...)`: the input is /dev/fd/N, the read end of a pipe."""
    read, write = os.pipe()

    def feed():
        with open(write, "wb") as f:
            try:
                f.write(payload)
            except BrokenPipeError:
                pass

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        return subprocess.run([sys.executable, "-m", "logreg_mnist", "predict", run, f"/dev/fd/{read}"],
                              pass_fds=(read,), capture_output=True, text=True, timeout=20)
    finally:
        os.close(read)
        feeder.join(timeout=5)


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
@pytest.mark.parametrize("payload, code, fragment", [
    ("image", 0, "(probability"),
    (b"hello, not an image\n" * 1000, 2, "expected an image (PNG, JPEG, GIF, BMP, TIFF, WebP) or a .npy array"),
    (b"", 2, "found nothing"),
])
def test_a_pipe_given_as_a_path_is_read_as_a_stream(places, payload, code, fragment):
    if payload == "image":
        payload = Path(places["image"]).read_bytes()
    done = _predict_from_pipe(places["run"], payload)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert fragment in (done.stdout if code == 0 else done.stderr)
    if code:
        assert len(done.stderr.splitlines()) == 1, done.stderr


# --- a directory batch: one bad file does not stop the rest ---------------------------------------------


def test_a_directory_batch_reports_each_bad_file_and_predicts_the_rest(places, tmp_path, capsys):
    d = tmp_path / "digits"
    d.mkdir()
    _digit_png(d / "a.png")
    (d / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    np.save(d / "c.npy", np.zeros((3, 3), np.uint8))
    _digit_png(d / "d.png")
    (d / "notes.txt").write_text("not an image")
    (d / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    code = main(["predict", places["run"], str(d)])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert [line.split()[0] for line in captured.out.splitlines()] == [str(d / "a.png"), str(d / "d.png")]
    err = captured.err.splitlines()
    assert "Traceback" not in captured.err
    assert err[0] == f"logreg-mnist predict: {d}: skipped 2 files that are not images, .npy or IDX files " \
                     "(.DS_Store, notes.txt)"
    assert err[1].startswith(f"logreg-mnist predict: error: {d / 'b.png'}: ")
    assert err[2].startswith(f"logreg-mnist predict: error: {d / 'c.npy'}: expected an array of shape")
    assert err[3] == "logreg-mnist predict: error: 2 of 4 inputs could not be read (above); the other 2 were predicted"
    assert len(err) == 4


def test_a_directory_with_only_skipped_files_says_so(places, tmp_path, capsys):
    d = tmp_path / "notes"
    d.mkdir()
    (d / "readme.txt").write_text("hi")
    assert main(["predict", places["run"], str(d)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "found none (skipped 1 other file: readme.txt)" in err, err


# --- Ctrl-C from the first line of the project's code --------------------------------------------------

_INTERRUPT_AT = textwrap.dedent("""
    import importlib.abc, os, signal, sys

    module = sys.argv.pop(1)
    sys.argv[0] = "logreg-mnist"

    class Interrupt(importlib.abc.MetaPathFinder):
        # Ctrl-C, as a terminal sends it, the moment MODULE starts to be imported
        def find_spec(self, name, path=None, target=None):
            if name == module:
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
            return None

    sys.meta_path.insert(0, Interrupt())
    from logreg_mnist.cli import command  # as the installed `logreg-mnist` script does
    command()
""")


@pytest.mark.parametrize("module", [
    "logreg_mnist.cli.parser",  # the parser, imported when the command starts
    "logreg_mnist.config",  # the declarations the flags come from
    "numpy",  # the libraries a command loads
    "logreg_mnist.data",
])
def test_ctrl_c_while_loading_is_exit_130_in_one_line(module, places):
    done = subprocess.run([sys.executable, "-c", _INTERRUPT_AT, module, "data", "--data-dir", places["data"]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["logreg-mnist data: interrupted"] or \
        done.stderr.splitlines() == ["logreg-mnist: interrupted"], done.stderr
    assert done.stdout == ""


def test_the_entry_points_are_the_interrupt_safe_one():
    text = (REPO / "pyproject.toml").read_text()
    assert 'logreg-mnist = "logreg_mnist.cli:command"' in text
    for main_module in ("src/logreg_mnist/__main__.py", "src/logreg_mnist/cli/__main__.py"):
        assert "command()" in (REPO / main_module).read_text()


# --- sweeps: Ctrl-C before any trial, plots of an unfinished sweep, denominators -----------------------


class _Future:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)

    def release(self):
        pass


class _Client:
    """Dask's Client as the driver uses it, running each trial here when its result is asked for."""

    loop = None

    def submit(self, fn, *args, key=None):
        return _Future(fn, args)

    def cancel(self, futures):
        pass


@contextmanager
def _in_process_cluster(scheduler=None, n_workers=None):
    yield _Client()


@pytest.fixture
def in_process_dask(monkeypatch):
    import distributed

    from logreg_mnist.sweep import driver

    monkeypatch.setattr(driver, "dask_client", _in_process_cluster)
    monkeypatch.setattr(distributed, "as_completed", lambda futures, loop=None: iter(futures))
    return monkeypatch


def test_ctrl_c_before_any_trial_names_no_missing_file_and_plot_says_why(places, in_process_dask, tmp_path, capsys):
    import distributed

    def interrupted(futures, loop=None):
        raise KeyboardInterrupt
        yield

    in_process_dask.setattr(distributed, "as_completed", interrupted)
    out = tmp_path / "sweep"
    assert main(["sweep", "--data-dir", places["data"], "--batch-size", "100", "--n-epochs", "1",
                 "--grid", "learning_rate=0.1,0.2", "--out", str(out)]) == 130
    printed = capsys.readouterr()
    assert "interrupted: 0 of 2 trials finished, none kept yet; " \
           f"continue with: logreg-mnist sweep --resume {out}" in printed.out
    assert "trials.csv" not in printed.out and not (out / "trials.csv").exists()
    assert printed.err.splitlines() == ["logreg-mnist sweep: interrupted"]
    assert main(["plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"logreg-mnist plot: error: {out}: no trial of the sweep has finished yet, so there "
                                f"is nothing to draw; run them with: logreg-mnist sweep --resume {out}"]


def test_sweep_lines_and_plots_give_their_denominators(places, in_process_dask, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--data-dir", places["data"], "--batch-size", "100", "--n-epochs", "1",
                 "--grid", "learning_rate=0.1,0.2", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    trial_lines = [line for line in lines if line.startswith("trial ") and "best validation error" in line]
    assert len(trial_lines) == 2 and all("% of 10,000," in line for line in trial_lines), lines
    table = lines[lines.index("") + 1:]
    assert table[0].split()[:3] == ["trial", "learning_rate", "epochs"] and "% of 10,000" in table[1], table
    chosen = next(line for line in lines if line.startswith("chosen:"))
    assert "validation error 0.000000 % of 10,000, test error of its best model 0.000000 % of 200" in chosen
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].endswith(",n_valid,n_test") and rows[1].endswith(",10000,200")

    from logreg_mnist import plots_from_files

    labels = []
    for name in ("sweep_figure", "sweep_curves_figure"):
        in_process_dask.setattr(plots_from_files, name, _recording(getattr(plots_from_files, name), labels))
    assert main(["plot", str(out)]) == 0
    assert len(labels) == 2 and all("of 10,000" in label for label in labels), labels


def _recording(build, texts):
    def wrapped(*args, **kwargs):
        fig = build(*args, **kwargs)
        for ax in fig.axes:
            texts.append(ax.get_ylabel())
        return fig
    return wrapped


# --- nothing printed before a failure ------------------------------------------------------------------


def test_data_prints_nothing_before_it_fails(tmp_path, capsys):
    assert main(["data", "--data-dir", str(tmp_path / "nonexistent")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no such data directory" in captured.err


def test_train_names_its_run_directory_only_once_training_starts(places, tmp_path, capsys):
    cg = tmp_path / "cg"
    assert main(["train", "--optimizer", "cg", "--max-iter", "2", "--data-dir", places["data"], "--out", str(cg),
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(cg)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "(iteration 1, validation error 0.0000 % of 10,000)" in captured.err, captured.err


def test_a_gpu_asked_for_where_there_is_none_prints_no_run_directory(places, tmp_path, capsys):
    from logreg_mnist.engines import available_engines

    if "gpu" in available_engines():
        pytest.skip("a GPU is present here")
    assert main(["train", "--engine", "gpu", "--data-dir", places["data"], "--out", str(tmp_path / "gpu")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--engine gpu" in captured.err
    assert not (tmp_path / "gpu").exists()
