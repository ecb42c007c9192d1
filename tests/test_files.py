"""Atomic writes: no temporary file survives an interrupt at any moment, and a full disk changes nothing."""

from __future__ import annotations

import errno
import os

import pytest

from logreg_mnist import _files
from logreg_mnist.persistence import HistoryWriter, read_history


def _interrupt_right_after_creating(monkeypatch, prefix: str):
    """Ctrl-C landing just after the temporary file is created, before anything else runs."""
    real_open = os.open

    def open_then_interrupt(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if os.path.basename(path).startswith(prefix) and flags & os.O_CREAT:
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(_files.os, "open", open_then_interrupt)


def test_an_interrupt_between_creating_a_temporary_file_and_writing_it_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    _interrupt_right_after_creating(monkeypatch, ".model.safetensors.")
    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert target.read_bytes() == b"old"


def test_an_interrupt_inside_the_block_removes_the_temporary_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with _files.temporary_file(tmp_path, ".x.") as (fd, path):
            assert path.exists()
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def _disk_full_after(monkeypatch, n_bytes: int):
    """A disk with room for ``n_bytes`` more: writes a part, then ENOSPC, as a real one does."""
    room = [n_bytes]
    real = os.write

    def write(fd, data):
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data[: room[0]]))
        room[0] -= n
        return n

    monkeypatch.setattr(_files.os, "write", write)


def test_a_full_disk_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.safetensors"
    target.write_bytes(b"old")
    _disk_full_after(monkeypatch, 10)
    with pytest.raises(OSError) as e:
        _files.atomic_write_bytes(target, b"x" * 100)
    assert e.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors"]
    assert target.read_bytes() == b"old"


def test_a_full_disk_never_leaves_half_a_history_line(tmp_path, monkeypatch):
    writer = HistoryWriter(tmp_path / "history.jsonl")
    writer.append({"epoch": 1, "valid_error": 0.5})
    _disk_full_after(monkeypatch, 7)
    with pytest.raises(OSError):
        writer.append({"epoch": 2, "valid_error": 0.25})
    monkeypatch.undo()
    assert read_history(tmp_path) == [{"epoch": 1, "valid_error": 0.5}]


def test_a_last_line_cut_short_by_a_kill_is_ignored_but_a_bad_line_is_not(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2, "val')
    assert read_history(path) == [{"epoch": 1}]
    path.write_text('{"epoch": 1}\n{"epoch": 2, "val\n')
    with pytest.raises(Exception, match=r"history.jsonl:2: not a JSON line"):
        read_history(path)
