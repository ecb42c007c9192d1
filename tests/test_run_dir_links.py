"""A run directory that holds links and other tools' files: nothing outside the run is ever written or deleted."""

from __future__ import annotations

import json
import os

import pytest

from logreg_mnist.cli import main
from logreg_mnist.run import RunDir

TRAIN = ["train", "--batch-size", "100", "--n-epochs", "2", "--no-progress"]


def _one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_lock_that_links_elsewhere_is_never_written_through(cli_data_dir, tmp_path, capsys, how):
    precious = tmp_path / "bashrc"
    precious.write_text("export PATH=keep-me\n")
    out = tmp_path / "shared" / "run"
    out.mkdir(parents=True)
    (os.symlink if how == "symlink" else os.link)(precious, out / ".lock")
    for argv in ([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)],
                 ["sweep", "--grid", "learning_rate=0.1", "--batch-size", "100", "--n-epochs", "1",
                  "--data-dir", str(cli_data_dir), "--out", str(out), "--workers", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        _one_line(err)
        assert ".lock" in err and "expected" in err
        assert precious.read_text() == "export PATH=keep-me\n", "the link's target is untouched"
    with pytest.raises(Exception, match="expected"), RunDir(out).owned():
        pass
    assert precious.read_text() == "export PATH=keep-me\n"


def test_a_lock_holding_another_files_content_is_not_truncated(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("not a pid: someone's notes\n" * 10)
    with pytest.raises(Exception, match=r"\.lock.*expected"), RunDir(out).owned():
        pass
    assert (out / ".lock").read_text() == "not a pid: someone's notes\n" * 10


@pytest.mark.parametrize("name,content", [
    ("config.json", '{"settings": "another tool"}\n'),
    ("config.json", "\xff\xfe not even text"),
    ("history.jsonl", '{"step": 1, "loss": 0.5}\n'),
    ("history.jsonl", "plain notes\n"),
])
def test_another_tools_files_are_kept_unless_overwrite(cli_data_dir, tmp_path, capsys, name, content):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(content.encode("utf-8", "surrogateescape") if "\xff" not in content
                             else b"\xff\xfe not even text")
    before = (out / name).read_bytes()
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert name in err and "--overwrite" in err
    assert (out / name).read_bytes() == before
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["batch_size"] == 100


def test_a_run_killed_before_its_first_checkpoint_is_still_used_again(cli_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)]) == 0
    (out / "checkpoint.safetensors").unlink()
    (out / "best.safetensors").unlink()
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("sub", ["snapshots", "plots"])
def test_overwrite_removes_a_linked_subdirectory_not_what_it_points_to(cli_data_dir, tmp_path, capsys, sub):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    out = tmp_path / "run"
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out), "--snapshot-every", "1"]) == 0
    import shutil

    if (out / sub).exists():
        shutil.rmtree(out / sub)
    os.symlink(elsewhere, out / sub)
    capsys.readouterr()
    for _ in range(2):  # and again: no dead end
        assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out), "--overwrite",
                     "--snapshot-every", "1"]) == 0, capsys.readouterr().err
        assert "Traceback" not in capsys.readouterr().err
        os.symlink(elsewhere, out / sub) if not (out / sub).exists() else None
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert (elsewhere / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("sub", ["snapshots", "plots"])
def test_a_linked_subdirectory_is_refused_without_overwrite(cli_data_dir, tmp_path, capsys, sub):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "run"
    out.mkdir()
    os.symlink(elsewhere, out / sub)
    assert main([*TRAIN, "--data-dir", str(cli_data_dir), "--out", str(out), "--snapshot-every", "1"]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert sub in err and "link" in err
    assert list(elsewhere.iterdir()) == []
