"""``logreg-mnist sweep`` on a real Dask cluster: a scheduler and two workers started here as
separate processes on 127.0.0.1 (``dask scheduler``, ``dask worker``), plus a local cluster."""

from __future__ import annotations

import csv
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from logreg_mnist import load_mnist, load_model, preset, train
from logreg_mnist.cli import main
from logreg_mnist.data import write_idx
from logreg_mnist.sweep import DataSource, data_loads, grid_plan, random_plan

from .conftest import NAMES

START_TIMEOUT_S = 90  # a scheduler and its workers start in seconds; a loaded CI machine gets room
FIXED = ["--batch-size", "100", "--patience", "100000"]


@pytest.fixture(scope="module")
def noisy_dir(tmp_path_factory) -> Path:
    """10,300 training images (the last 10,000 validate), 200 test images: each class brightens its
    own band of rows a little over strong noise, so that the settings change the validation error."""
    directory = tmp_path_factory.mktemp("noisy-data")
    rng = np.random.default_rng(5)
    for n, stem in ((10_300, "train"), (200, "t10k")):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 4, :] += 30
        write_idx(directory / f"{stem}-images-idx3-ubyte", images, compress=False)
        write_idx(directory / f"{stem}-labels-idx1-ubyte", labels, compress=False)
    assert sorted(p.name for p in directory.iterdir()) == sorted(NAMES)
    return directory


def _dask(args: list[str], log: Path) -> subprocess.Popen:
    """``dask ARGS`` (the command the package's install brings) in its own process group."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, a Client of the test's own) for a scheduler and two single-threaded
    workers, each a separate process (a nanny and its worker) on 127.0.0.1."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask")
    scheduler_file = tmp / "scheduler.json"
    procs = [_dask(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(scheduler_file), "--idle-timeout", "600"], tmp / "scheduler.log")]
    client = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            assert procs[0].poll() is None, (tmp / "scheduler.log").read_text()
            time.sleep(0.1)
        for i in range(2):
            procs.append(_dask(["worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--host",
                                "127.0.0.1", "--no-dashboard", "--name", f"w{i}", "--local-directory",
                                str(tmp / f"w{i}"), "--death-timeout", "60"], tmp / f"worker{i}.log"))
        client = Client(scheduler_file=str(scheduler_file), timeout=START_TIMEOUT_S, set_as_default=False)
        client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield client.scheduler.address, client
    finally:
        if client is not None:
            client.close()
        for proc in reversed(procs):
            _stop(proc)


def _two_workers(client) -> list[str]:
    client.wait_for_workers(2, timeout=START_TIMEOUT_S)
    return sorted(client.scheduler_info()["workers"])


def _rows(out: Path) -> list[dict]:
    with open(out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _sweep_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "logreg_mnist", "sweep", *args]


def test_grid_on_the_cluster_gives_exactly_the_sequential_results(cluster, noisy_dir, tmp_path, capsys):
    address, client = cluster
    _two_workers(client)
    before = client.run(data_loads)
    out = tmp_path / "sweep"
    grid = ["--grid", "learning_rate=0.02,0.5", "--grid", "l2=0,0.01"]
    assert main(["sweep", "--scheduler", address, "--data-dir", str(noisy_dir), *FIXED, "--n-epochs", "3",
                 *grid, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()

    # the same four trials, one at a time in this process
    data = load_mnist(noisy_dir, download=False, progress=False)
    expected = {}
    for lr, l2 in ((0.02, 0.0), (0.02, 0.01), (0.5, 0.0), (0.5, 0.01)):
        config = preset("default", batch_size=100, patience=100000, n_epochs=3, learning_rate=lr, l2=l2)
        model, history = train(data, config)
        expected[(lr, l2)] = (model, history)

    rows = _rows(out)
    assert [r["trial"] for r in rows] == ["001-learning_rate=0.02-l2=0", "002-learning_rate=0.02-l2=0.01",
                                          "003-learning_rate=0.5-l2=0", "004-learning_rate=0.5-l2=0.01"]
    assert list(rows[0]) == ["trial", "learning_rate", "l2", "epochs", "valid_error", "test_error", "seconds",
                             "worker", "status", "n_valid", "n_test"]
    for row in rows:
        model, history = expected[(float(row["learning_rate"]), float(row["l2"]))]
        assert row["epochs"] == str(history.epochs) == "3"
        assert row["valid_error"] == f"{history.best_valid_error * 100:f}"  # as train prints it
        assert row["test_error"] == f"{history.test_error * 100:f}"
        assert row["worker"] in _two_workers(client) and row["status"] == "ok"
        saved, meta = load_model(out / "trials" / row["trial"])  # a normal run directory
        assert np.array_equal(saved.W, model.W) and np.array_equal(saved.b, model.b)
        assert meta["config"]["learning_rate"] == float(row["learning_rate"])
    assert len({float(r["valid_error"]) for r in rows}) > 1  # the settings matter on these data

    # the chosen trial: the lowest validation error (the earliest on a tie); best points at it
    chosen = min(rows, key=lambda r: (float(r["valid_error"]), r["trial"]))
    assert os.readlink(out / "best") == f"trials/{chosen['trial']}"
    assert printed[-1].startswith(f"chosen: trial {int(chosen['trial'][:3])} (")
    assert (f"validation error {chosen['valid_error']} % of {int(chosen['n_valid']):,}, test error of its best "
            f"model {chosen['test_error']} % of {int(chosen['n_test']):,}") in printed[-1]
    assert sum(line.startswith("trial ") and " on tcp://127.0.0.1:" in line for line in printed) == 4
    assert not any("test error" in line for line in printed[:-1])  # only the chosen trial's is shown
    table = printed[printed.index("") + 1 : -1]
    assert table[0].split()[:3] == ["trial", "learning_rate", "l2"] and len(table) == 5
    assert [float(line.split()[4]) for line in table[1:]] == sorted(float(line.split()[4]) for line in table[1:])

    # the data reached each worker once: four trials, at most one load per worker process
    after = client.run(data_loads)
    assert all(after[w]["loads"] <= 1 for w in after)
    trials_run = sum(after[w]["loads"] + after[w]["reuses"] for w in after) - sum(
        before.get(w, {"loads": 0, "reuses": 0})["loads"] + before.get(w, {"loads": 0, "reuses": 0})["reuses"]
        for w in after)
    assert trials_run == 4

    # evaluate, predict and plot work on DIR/best; plot DIR draws the sweep
    assert main(["evaluate", str(out / "best"), "--data-dir", str(noisy_dir), "--json"]) == 0
    assert main(["plot", str(out), "--data-dir", str(noisy_dir)]) == 0
    assert capsys.readouterr().out.split()[-2:] == [str(out / "plots" / "sweep_validation_error.png"),
                                                    str(out / "plots" / "sweep_learning_curves.png")]


@pytest.mark.realdata
def test_the_tutorial_trial_is_the_chapters_result(cluster, real_mnist_dir, tmp_path, capsys):
    address, client = cluster
    _two_workers(client)
    out = tmp_path / "sweep"
    assert main(["sweep", "--scheduler", address, "--data-dir", str(real_mnist_dir), "--preset", "tutorial",
                 "--grid", "learning_rate=0.13", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        "chosen: trial 1 (learning_rate=0.13): validation error 7.500000 % of 9,600, test error of its best model "
        "7.489583 % of 9,600 (")
    [row] = _rows(out)
    assert (row["epochs"], row["valid_error"], row["test_error"]) == ("74", "7.500000", "7.489583")
    assert (row["n_valid"], row["n_test"]) == ("9600", "9600")


def test_a_diverged_trial_is_recorded_and_never_chosen(cluster, noisy_dir, tmp_path, capsys):
    address, client = cluster
    _two_workers(client)
    out = tmp_path / "sweep"
    assert main(["sweep", "--scheduler", address, "--data-dir", str(noisy_dir), *FIXED, "--n-epochs", "2",
                 "--grid", "learning_rate=1e38,0.1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trial 1/2 learning_rate=1e+38: diverged after " in printed
    rows = _rows(out)
    assert [(r["status"], r["valid_error"] == "") for r in rows] == [("diverged", True), ("ok", False)]
    assert os.readlink(out / "best") == "trials/002-learning_rate=0.1"
    assert main(["plot", str(out)]) == 0


def test_workers_refuse_data_other_than_the_plans(cluster, noisy_dir, tmp_path):
    from logreg_mnist.errors import DataError
    from logreg_mnist.sweep import run_sweep

    address, client = cluster
    _two_workers(client)
    plan = grid_plan(preset("default", n_epochs=1), ["l2=0,0.1"], DataSource(str(noisy_dir), "mnist"))
    with pytest.raises(DataError, match=r"the data at .* are idx-[0-9a-f]{16}, expected mnist"):
        run_sweep(plan, tmp_path / "sweep", scheduler=address, echo=lambda line: None)
    assert not (tmp_path / "sweep" / "trials.csv").exists()


def test_a_worker_killed_mid_sweep_loses_no_trial(cluster, noisy_dir, tmp_path):
    from distributed import Client

    address, client = cluster
    _two_workers(client)
    out = tmp_path / "sweep"
    driver = subprocess.Popen(_sweep_cli("--scheduler", address, "--data-dir", str(noisy_dir), *FIXED,
                                         "--n-epochs", "25", "--grid", "learning_rate=0.05,0.1,0.2,0.4",
                                         "--out", str(out)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        busy = running = None
        while busy is None and time.monotonic() < deadline:
            assert driver.poll() is None, driver.communicate()
            for worker, keys in client.processing().items():
                for key in map(str, keys):
                    if key.startswith("logreg-mnist-trial-"):
                        busy, running = worker, key[len("logreg-mnist-trial-"):].rsplit("-", 1)[0]
            time.sleep(0.05)
        assert busy is not None, "no trial started"
        pid = client.run(os.getpid, workers=[busy])[busy]
        os.kill(pid, signal.SIGKILL)  # the worker process itself; its nanny starts a new one
        done_at_kill = {r["trial"] for r in _rows(out)} if (out / "trials.csv").exists() else set()
        stdout, stderr = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr
    rows = _rows(out)
    assert sorted(r["trial"] for r in rows) == ["001-learning_rate=0.05", "002-learning_rate=0.1",
                                                "003-learning_rate=0.2", "004-learning_rate=0.4"]
    assert running not in done_at_kill and len(done_at_kill) < 4
    assert all(r["status"] == "ok" and r["epochs"] == "25" for r in rows)
    assert sum(line.startswith("trial ") and " on tcp://" in line for line in stdout.splitlines()) == 4  # once each
    # the trial that was running on the killed worker was run again elsewhere; nothing half-written stayed
    assert {r["trial"]: r["worker"] for r in rows}[running] != busy
    assert sorted(p.name for p in (out / "trials").iterdir()) == [r["trial"] for r in rows]
    data = load_mnist(noisy_dir, download=False, progress=False)
    _, history = train(data, preset("default", batch_size=100, patience=100000, n_epochs=25, learning_rate=0.2))
    assert rows[2]["valid_error"] == f"{history.best_valid_error * 100:f}"
    with Client(address, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=START_TIMEOUT_S)  # the nanny replaced the killed worker


def test_ctrl_c_keeps_finished_trials_and_resume_runs_the_rest(cluster, noisy_dir, tmp_path, capsys):
    address, client = cluster
    _two_workers(client)
    out = tmp_path / "sweep"
    # two quick trials, then two long ones: Ctrl-C lands while the long ones run
    driver = subprocess.Popen(_sweep_cli("--scheduler", address, "--data-dir", str(noisy_dir), *FIXED,
                                         "--grid", "n_epochs=1,2,40,41", "--out", str(out)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and not (
                (out / "trials.csv").exists() and len(_rows(out)) >= 2):
            assert driver.poll() is None, driver.communicate()
            time.sleep(0.01)
        driver.send_signal(signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, stderr
    assert f"continue with: logreg-mnist sweep --resume {out}" in stdout
    assert stderr.strip().splitlines()[-1] == "logreg-mnist sweep: interrupted"
    kept = _rows(out)
    assert [r["trial"] for r in kept] == ["001-n_epochs=1", "002-n_epochs=2"]
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["001-n_epochs=1", "002-n_epochs=2"]

    # resume refuses new settings, then runs only the missing trials
    assert main(["sweep", "--resume", str(out), "--learning-rate", "0.1"]) == 2
    assert "--resume continues a sweep with its own plan; drop --learning-rate" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(out), "--scheduler", address]) == 0
    printed = capsys.readouterr().out
    assert "2 of 4 trials already finished; running 2" in printed
    assert sum(line.startswith("trial ") and " on tcp://" in line for line in printed.splitlines()) == 2
    rows = _rows(out)
    assert [r["trial"] for r in rows] == ["001-n_epochs=1", "002-n_epochs=2", "003-n_epochs=40", "004-n_epochs=41"]
    assert rows[:2] == kept and [r["epochs"] for r in rows] == ["1", "2", "40", "41"]


@pytest.mark.parametrize("flags, message", [
    (["--grid", "learning_rate=-1"], "--grid learning_rate=-1: learning_rate: expected a finite number > 0, found -1.0"),
    (["--grid", "nonsense=1,2"], "--grid nonsense=1,2: expected a TrainConfig field (optimizer, learning_rate, "),
    (["--grid", "l2="], "--grid l2=: expected a comma-separated list of values, found an empty value"),
    (["--grid", "batch_size=100,"], "--grid batch_size=100,: expected a comma-separated list of values"),
    (["--grid", "batch_size=1.5"], "--grid batch_size=1.5: batch_size expects an integer, found '1.5'"),
    (["--grid", "optimizer=sgd,adam"], "--grid optimizer=sgd,adam: optimizer: expected one of sgd, cg, lbfgs"),
    (["--grid", "l2=0.1,0.1"], "expected distinct values, found one listed twice"),
    (["--grid", "l2=0,1", "--l2", "0.5"], "l2: given both as a fixed flag and as --grid/--range"),
    ([], "--grid: expected at least one NAME=V1,V2,..."),
    (["--random", "3"], "--random: expected at least one --range"),
    (["--range", "l2=0:1"], "--range is for random search: add --random N"),
    (["--random", "3", "--range", "learning_rate=0:1"], "learning_rate: expected a finite number > 0, found 0.0"),
    (["--random", "3", "--range", "l2=0:1:log"], "a log range needs LOW > 0"),
    (["--random", "3", "--range", "init=0:1"], "init is not numeric; list its values with --grid instead"),
])
def test_bad_plans_are_refused_before_anything_starts(tmp_path, capsys, flags, message):
    out = tmp_path / "sweep"
    # neither the (absent) data nor the (unreachable) scheduler is looked at
    assert main(["sweep", "--scheduler", "tcp://127.0.0.1:1", "--data-dir", str(tmp_path / "missing"), *flags,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("logreg-mnist sweep: error: ") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_a_clear_user_error(noisy_dir, tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    assert main(["sweep", "--scheduler", address, "--data-dir", str(noisy_dir), "--grid", "learning_rate=0.1,0.2",
                 "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"logreg-mnist sweep: error: --scheduler {address}: cannot reach a Dask scheduler "
                          "there within 5 s")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()  # nothing is written before the cluster is there
    assert main(["sweep", "--scheduler", "nonsense://x", "--data-dir", str(noisy_dir), "--grid", "l2=0,1"]) == 2
    assert "--scheduler nonsense://x: expected an address like tcp://host:8786" in capsys.readouterr().err
    assert main(["sweep", "--scheduler", "foo", "--data-dir", str(noisy_dir), "--grid", "l2=0,1"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler foo: expected an address like tcp://host:8786, found no port" in err
    assert len(err.strip().splitlines()) == 1


def test_a_local_cluster_runs_the_same_code_path(noisy_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--workers", "1", "--data-dir", str(noisy_dir), *FIXED, "--n-epochs", "2",
                 "--grid", "optimizer=sgd,lbfgs", "--max-iter", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 trials on a local cluster of 1 worker process" in printed
    rows = _rows(out)
    assert [(r["trial"], r["epochs"]) for r in rows] == [("001-optimizer=sgd", "2"), ("002-optimizer=lbfgs", "3")]
    assert {r["worker"] for r in rows} == {rows[0]["worker"]} and rows[0]["worker"].startswith("tcp://127.0.0.1:")
    # a second sweep into the same directory is refused
    assert main(["sweep", "--workers", "1", "--data-dir", str(noisy_dir), "--grid", "l2=0,1", "--out",
                 str(out)]) == 2
    assert "already holds a sweep; continue it with --resume" in capsys.readouterr().err


def test_random_search_is_reproducible_and_stays_in_its_ranges():
    source = DataSource(None, "mnist")
    base = preset("default")
    a = random_plan(base, 20, 7, ["learning_rate=0.01:1:log", "batch_size=10:1000"], source, ["init=zeros,random"])
    b = random_plan(base, 20, 7, ["learning_rate=0.01:1:log", "batch_size=10:1000"], source, ["init=zeros,random"])
    assert a.trials == b.trials and a.swept == ("learning_rate", "batch_size", "init")
    lrs = [t.config.learning_rate for t in a.trials]
    assert all(0.01 <= v <= 1 for v in lrs) and min(lrs) < 0.1 < max(lrs)
    assert all(isinstance(t.config.batch_size, int) and 10 <= t.config.batch_size <= 1000 for t in a.trials)
    assert {t.config.init for t in a.trials} == {"zeros", "random"}
    other = random_plan(base, 20, 8, ["learning_rate=0.01:1:log"], source)
    assert [t.config.learning_rate for t in other.trials] != lrs[:20]


def test_a_grid_is_the_product_with_the_first_list_slowest_and_survives_a_round_trip():
    from logreg_mnist.sweep import SweepPlan

    plan = grid_plan(preset("tutorial"), ["batch-size=300,600", "l2=0,1e-4,1e-3"], DataSource("/data", "mnist"))
    assert [dict(t.settings) for t in plan.trials][:4] == [
        {"batch_size": 300, "l2": 0.0}, {"batch_size": 300, "l2": 1e-4}, {"batch_size": 300, "l2": 1e-3},
        {"batch_size": 600, "l2": 0.0}]
    assert all(t.config.drop_last for t in plan.trials)  # the preset is the base of every trial
    assert plan.trials[1].name == "002-batch_size=300-l2=0.0001"
    assert SweepPlan.from_dict(plan.to_dict()) == plan
    assert math.isclose(plan.trials[5].config.l2, 1e-3)


def test_dask_is_imported_only_by_the_sweep_code():
    code = ("import sys, logreg_mnist, logreg_mnist.cli, logreg_mnist.plots, logreg_mnist.sweep\n"
            "logreg_mnist.cli.build_parser()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_seed_seeds_the_draw_and_each_trials_random_init():
    from logreg_mnist.sweep import make_plan

    a = make_plan("default", {"seed": 3, "init": "random"}, ranges=["l2=1e-6:1e-2:log"], random=4)
    b = make_plan("default", {"seed": 3, "init": "random"}, ranges=["l2=1e-6:1e-2:log"], random=4)
    c = make_plan("default", {"seed": 4, "init": "random"}, ranges=["l2=1e-6:1e-2:log"], random=4)
    assert a == b and [t.config.l2 for t in a.trials] != [t.config.l2 for t in c.trials]
    assert {t.config.seed for t in a.trials} == {3} and a.search["seed"] == 3
    assert {t.config.seed for t in make_plan("default", {}, ranges=["l2=0:1"], random=2).trials} == {0}


def test_best_is_a_copy_where_symlinks_fail(tmp_path, monkeypatch):
    from logreg_mnist.sweep.directory import point_best

    for name in ("001-a", "002-b"):
        (tmp_path / "trials" / name).mkdir(parents=True)
        (tmp_path / "trials" / name / "config.json").write_text(name)
    point_best(tmp_path, "001-a")
    assert os.readlink(tmp_path / "best") == "trials/001-a"

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks are not supported here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    for name in ("002-b", "001-a"):  # over a link, then over a copy
        point_best(tmp_path, name)
        assert not (tmp_path / "best").is_symlink() and (tmp_path / "best" / "config.json").read_text() == name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "trials"]
    monkeypatch.undo()
    point_best(tmp_path, "002-b")  # and back to a link over the copy
    assert os.readlink(tmp_path / "best") == "trials/002-b"


@pytest.mark.parametrize("flags, message", [
    (["--threads", "0"], "--threads: expected an integer >= 1, found 0"),
    (["--engine", "fused", "--max-resident", "lots"], "--max-resident: expected a size such as 512M or 2G, found 'lots'"),
])
def test_run_time_options_are_checked_on_the_driver_before_the_cluster(noisy_dir, tmp_path, capsys, flags,
                                                                      message):
    out = tmp_path / "sweep"
    # an unreachable scheduler: the options must be refused before it is ever contacted
    assert main(["sweep", "--scheduler", "tcp://127.0.0.1:1", "--data-dir", str(noisy_dir), *flags,
                 "--grid", "l2=0,1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("logreg-mnist sweep: error: ") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_out_must_be_a_directory_that_holds_no_training_run(noisy_dir, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["sweep", "--data-dir", str(noisy_dir), "--grid", "l2=0,1", "--out", str(a_file)]) == 2
    assert "--out " + str(a_file) + ": expected a directory, found an existing file" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(noisy_dir), *FIXED, "--n-epochs", "1", "--no-progress",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["sweep", "--data-dir", str(noisy_dir), "--grid", "l2=0,1", "--out", str(run)]) == 2
    assert "expected a new or sweep directory, found a training run" in capsys.readouterr().err
    assert not (run / "sweep.json").exists()


def test_a_scheduler_that_dies_mid_sweep_is_one_message_without_dask_tracebacks(noisy_dir, tmp_path):
    from distributed import Client

    scheduler_file = tmp_path / "scheduler.json"
    procs = [_dask(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(scheduler_file)], tmp_path / "scheduler.log")]
    driver = client = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        procs.append(_dask(["worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--host",
                            "127.0.0.1", "--no-dashboard", "--local-directory", str(tmp_path / "w")],
                           tmp_path / "worker.log"))
        client = Client(scheduler_file=str(scheduler_file), timeout=START_TIMEOUT_S, set_as_default=False)
        client.wait_for_workers(1, timeout=START_TIMEOUT_S)
        driver = subprocess.Popen(_sweep_cli("--scheduler", client.scheduler.address, "--data-dir", str(noisy_dir),
                                             *FIXED, "--n-epochs", "200", "--grid", "learning_rate=0.05,0.1",
                                             "--out", str(tmp_path / "sweep")),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not any(str(k).startswith("logreg-mnist-trial-") for keys in client.processing().values()
                      for k in keys):
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
            time.sleep(0.05)
        client.close()
        client = None
        _stop(procs[0])  # the scheduler dies while a trial runs
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        if client is not None:
            client.close()
        for proc in reversed(procs):
            _stop(proc)
    assert driver.returncode not in (0, None), stdout
    assert "Traceback" not in stderr and "distributed." not in stderr, stderr
    assert 1 <= len(stderr.strip().splitlines()) <= 2, stderr
