"""A run directory under stress: two processes racing into it, a full disk, interrupted starts."""

from __future__ import annotations

import errno
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from logreg_mnist import TrainConfig, _files, load_model, preset, train
from logreg_mnist.cli import main
from logreg_mnist.errors import RunBusyError
from logreg_mnist.persistence import read_history
from logreg_mnist.reporting import Reporter
from logreg_mnist.run import RunDir

TRAIN = ["train", "--batch-size", "100", "--n-epochs", "6", "--no-progress"]
HOLD = textwrap.dedent("""
    import sys
    from logreg_mnist.run import RunDir
    with RunDir(sys.argv[1]).owned():
        print("locked", flush=True)
        sys.stdin.read()  # until the test closes our stdin
""")


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in rows]


class _Holder:
    """Another process holding a run directory's lock until closed."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "locked\n"

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def test_a_second_process_is_refused_at_once_naming_the_holder(cli_data_dir, tmp_path, capsys, tiny_data):
    out = tmp_path / "run"
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out / "a")]) == 0
    capsys.readouterr()
    for argv in ([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out / "b")],
                 ["train", "--resume", str(out / "a"), "--data-dir", str(cli_data_dir), "--no-progress"]):
        target = Path(argv[argv.index("--out") + 1] if "--out" in argv else argv[argv.index("--resume") + 1])
        holder = _Holder(target)
        try:
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"{target} is in use by another process (pid {holder.proc.pid})" in err
            assert err.count("\n") == 1 and "Traceback" not in err
            with pytest.raises(RunBusyError, match=rf"pid {holder.proc.pid}"):
                train(tiny_data, TrainConfig(batch_size=20, n_epochs=1), target, resume="resume" in argv)
        finally:
            holder.close()
        assert main(argv) == 0, "the lock goes with its holder"
        capsys.readouterr()


def test_two_runs_racing_into_one_directory_one_is_refused(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "race"
    a = subprocess.Popen(
        [sys.executable, "-m", "logreg_mnist", "train", "--batch-size", "100", "--n-epochs", "100000",
         "--patience", "1000000", "--no-progress", "--data-dir", str(cli_data_dir), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in a.stdout:
            if line.startswith("epoch 3,"):
                break  # A is training (two epochs checkpointed): it holds the directory
        assert main(["train", "--batch-size", "50", "--no-progress", "--data-dir", str(cli_data_dir),
                     "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"in use by another process (pid {a.pid})" in err
        a.send_signal(signal.SIGINT)
        stdout, stderr = a.communicate(timeout=60)
    finally:
        a.kill()
    assert a.returncode == 130 and "Traceback" not in stderr
    # A's run is A's alone: one configuration, one unbroken history, and it resumes.
    assert json.loads((out / "config.json").read_text())["config"]["batch_size"] == 100
    epochs = [r["epoch"] for r in read_history(out)]
    assert epochs == list(range(1, len(epochs) + 1))
    assert "Kept: the best model in " in stdout and f"continue with: logreg-mnist train --resume {out}" in stdout


class _StopAt(Reporter):
    """Ctrl-C at the first validation of ``epoch`` (before that epoch's checkpoint)."""

    def __init__(self, epoch):
        self.epoch, self.lines = epoch, []

    def validation(self, epoch, minibatch, n_batches, error):
        if epoch == self.epoch:
            raise KeyboardInterrupt

    def message(self, text):
        self.lines.append(text)


def test_an_interrupt_in_epoch_1_is_no_dead_end(cli_data_dir, tmp_path, capsys):
    from logreg_mnist import load_mnist

    data = load_mnist(cli_data_dir, download=False, progress=False)
    out = tmp_path / "run"
    reporter = _StopAt(epoch=1)
    with pytest.raises(KeyboardInterrupt):
        train(data, TrainConfig(batch_size=100, n_epochs=3), out, reporter=reporter)
    (line,) = reporter.lines
    assert not (out / "best.safetensors").exists() and not (out / "checkpoint.safetensors").exists()
    assert "best.safetensors" not in line and "checkpoint.safetensors" not in line
    assert line.startswith("Interrupted in epoch 1. Kept: no model was saved yet; start it again with: "
                           f"logreg-mnist train --resume {out}")
    # Both ways out work: --resume starts the run from the beginning, and so does train --out.
    assert main(["train", "--resume", str(out), "--data-dir", str(cli_data_dir), "--no-progress"]) == 0
    assert "no epoch had finished (no checkpoint.safetensors); starting the run from the beginning" in \
        capsys.readouterr().out
    reference = tmp_path / "reference"
    train(data, TrainConfig(batch_size=100, n_epochs=3), reference)
    assert _strip(read_history(out)) == _strip(read_history(reference))
    with pytest.raises(KeyboardInterrupt):
        train(data, TrainConfig(batch_size=100, n_epochs=3), tmp_path / "again", reporter=_StopAt(epoch=1))
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(tmp_path / "again")]) == 0


def test_a_run_killed_before_its_first_checkpoint_is_used_again(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "killed"
    run = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; from logreg_mnist.cli import main; "
         "from logreg_mnist import run; "
         "run.RunDir.append_history = lambda self, row: os.kill(os.getpid(), 9); "
         "sys.exit(main(sys.argv[1:]))",
         *TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)], stdout=subprocess.PIPE, text=True)
    run.communicate(timeout=120)
    assert run.returncode == -signal.SIGKILL
    assert not (out / "checkpoint.safetensors").exists() and (out / "config.json").exists()
    (out / ".checkpoint.safetensors.0123456789abcdef.tmp").write_bytes(b"half a file")  # as a kill mid-write leaves
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)]) == 0
    assert load_model(out)[1]["epoch"] >= 1
    assert not list(out.glob(".*.tmp")), "the next run removes what the killed one left"


def test_import_of_the_command_line_loads_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", "import sys, logreg_mnist.cli; "
                           "print(sorted({'numpy', 'scipy', 'sklearn', 'matplotlib'} & set(sys.modules)))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_ctrl_c_while_importing_exits_130_quietly(cli_data_dir):
    # A real SIGINT delivered while NumPy is being imported, in the first moments of a command.
    code = textwrap.dedent("""
        import importlib.abc, os, signal, sys

        class Interrupt(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "numpy":
                    os.kill(os.getpid(), signal.SIGINT)
                return None

        sys.meta_path.insert(0, Interrupt())
        from logreg_mnist.cli import main
        sys.exit(main())
    """)
    done = subprocess.run([sys.executable, "-c", code, "data", "--data-dir", str(cli_data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 130
    assert "Traceback" not in done.stderr and done.stderr == "logreg-mnist data: interrupted\n"


def _disk_fills_after(monkeypatch, n_writes: int):
    """Every write after the first ``n_writes`` files or lines fails with ENOSPC (models are
    written at every epoch, not coalesced, so that the count is the same on any machine)."""
    monkeypatch.setattr(importlib.import_module("logreg_mnist.run.recorder"), "SAVE_INTERVAL", 0.0)
    count = [0]
    real = _files.write_all

    def write_all(fd, data):
        count[0] += 1
        if count[0] > n_writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(_files, "write_all", write_all)


def test_a_full_disk_is_one_line_saying_what_is_kept_and_resume_ends_where_a_full_run_ends(
        cli_data_dir, tmp_path, capsys, monkeypatch):
    out, reference = tmp_path / "run", tmp_path / "reference"
    argv = [*TRAIN, "--data-dir", str(cli_data_dir)]
    assert main([*argv, "--out", str(reference)]) == 0
    capsys.readouterr()
    _disk_fills_after(monkeypatch, 9)
    assert main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "Errno" not in err
    assert f"logreg-mnist train: error: {out}: cannot write " in err
    assert ": no space left on the device. Kept: the best model in " in err
    assert re.search(r"a checkpoint in .*checkpoint\.safetensors \(end of epoch \d\)\. Free some space, then "
                     rf"continue with: logreg-mnist train --resume {re.escape(str(out))}$", err)
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock", "best.safetensors", "checkpoint.safetensors", "config.json", "history.jsonl"], "no temporary file"
    monkeypatch.undo()  # space freed
    assert main(["train", "--resume", str(out), "--data-dir", str(cli_data_dir), "--no-progress"]) == 0
    assert _strip(read_history(out)) == _strip(read_history(reference))
    np.testing.assert_array_equal(load_model(out)[0].W, load_model(reference)[0].W)


@pytest.mark.realdata
def test_a_full_disk_in_the_tutorial_run_then_resume_reaches_the_published_result(
        real_mnist, tmp_path, monkeypatch):
    from logreg_mnist.errors import StorageError

    out = tmp_path / "tutorial"
    _disk_fills_after(monkeypatch, 70)  # some 30 epochs in
    with pytest.raises(StorageError, match=r"no space left on the device\. Kept: the best model in .* and a "
                                           r"checkpoint in .*\(end of epoch \d+\)\. Free some space, then continue"):
        train(real_mnist, preset("tutorial"), out)
    stopped = RunDir(out).kept()
    monkeypatch.undo()
    _, history = train(real_mnist, preset("tutorial"), out, resume=True)
    assert "end of epoch" in stopped and history.epochs == 74
    assert f"{history.test_error * 100:f}" == "7.489583"


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB filesystem (tmpfs), where the system lets this process mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the simulated full disk above still runs)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_real_full_disk_then_more_space_then_resume(cli_data_dir, tmp_path, small_tmpfs, capsys):
    argv = ["train", "--batch-size", "100", "--n-epochs", "12", "--snapshot-every", "1", "--no-progress",
            "--data-dir", str(cli_data_dir)]
    out = small_tmpfs / "run"
    assert main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no space left on the device. Kept: the best model in " in err and err.count("\n") == 1
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "no temporary file is left"
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)
    assert main(["train", "--resume", str(out), "--data-dir", str(cli_data_dir), "--no-progress"]) == 0
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    assert _strip(read_history(out)) == _strip(read_history(tmp_path / "reference"))


def test_overwrite_keeps_the_old_run_when_a_flag_is_refused(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    for flags in (["--threads", "0"], ["--batch-size", "400", "--drop-last"]):  # refused as the engine is made
        assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out), "--overwrite", *flags]) == 2
        assert "Traceback" not in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == before, "the run is kept"


def test_a_cg_run_is_not_offered_a_resume(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "cg"
    argv = ["train", "--optimizer", "cg", "--max-iter", "2", "--data-dir", str(cli_data_dir), "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a run that cannot be continued" in err and "--resume" not in err


def test_a_directory_is_locked_once_a_run_not_again_by_its_own_thread(tmp_path):
    out = tmp_path / "run"
    with RunDir(out).owned():
        with pytest.raises(RunBusyError, match=rf"{re.escape(str(out))} is in use by a run of this thread, which "
                                               rf"owns it already \(pid {os.getpid()}\)"), RunDir(out).owned():
            pass
        assert (out / ".lock").is_file(), "the refused second hold leaves the first one as it was"
        holder = subprocess.run([sys.executable, "-c", HOLD, str(out)], capture_output=True, text=True, input="",
                                check=False)
        assert holder.returncode != 0 and f"pid {os.getpid()}" in holder.stderr
    with RunDir(out).owned():  # released: the next run takes it
        pass


@pytest.mark.parametrize("optimizer", ["sgd", "cg"])
def test_train_owns_and_checks_the_directory_once_and_records_the_data_once(tiny_data, tmp_path, monkeypatch,
                                                                            optimizer):
    recorder = importlib.import_module("logreg_mnist.run.recorder")
    calls = {"owned": 0, "data_record": 0}
    owned, data_record = RunDir.owned, recorder.data_record

    def counting_owned(self):
        calls["owned"] += 1
        return owned(self)

    def counting_data_record(*args):
        calls["data_record"] += 1
        return data_record(*args)

    monkeypatch.setattr(RunDir, "owned", counting_owned)
    monkeypatch.setattr(recorder, "data_record", counting_data_record)
    monkeypatch.setattr(recorder, "SAVE_INTERVAL", 0.0)  # every best model written
    out = tmp_path / "run"
    config = TrainConfig(optimizer=optimizer, batch_size=20, n_epochs=6, max_iter=6, snapshot_every=1)
    train(tiny_data, config, out)
    assert calls == {"owned": 1, "data_record": 1}
    record = {k: v for k, v in json.loads((out / "config.json").read_text()).items() if k not in ("config", "engine")}
    assert record["dataset"] == tiny_data.identity and record["n_valid"] == 20
    files = [out / "best.safetensors", *sorted((out / "snapshots").iterdir())]
    assert len(files) == 7
    for path in files:
        meta = load_model(path)[1]
        assert {k: meta[k] for k in record} == record, path
