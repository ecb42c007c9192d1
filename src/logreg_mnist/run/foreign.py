"""What in a directory is not a run's own: links, other tools' files, odd entries.

A run writes only regular files and directories it made itself; a name of a run's
file that is a symbolic link, a directory, or a file another tool wrote (a
``config.json`` that is not a run's configuration, a ``history.jsonl`` whose lines are
not a run's rows) is foreign. Foreign entries are never written through, replaced or
deleted without ``--overwrite``; with it, a link is removed, never what it points to.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from ..persistence import BEST, CHECKPOINT, CONFIG, HISTORY, SNAPSHOTS, is_history_row

PLOTS = "plots"
_PROBE_BYTES = 1 << 20  # a run's config.json is a few kB; more is read as foreign without parsing it
_SNAPSHOT = re.compile(r"\.?epoch-\d+\.safetensors(\.[0-9a-f]+\.tmp)?")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a file"
    return "a special file (a pipe, socket or device)"


def _read_text(path: Path) -> str | None:
    """The file's text as UTF-8, without following a link; None when it is not UTF-8 or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        data = os.read(fd, _PROBE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > _PROBE_BYTES:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def is_run_config(path: Path) -> bool:
    """Whether ``path`` reads as a run's ``config.json``: a JSON object whose ``config`` names an optimizer."""
    text = _read_text(path)
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        return False
    return isinstance(value, dict) and isinstance(value.get("config"), dict) and "optimizer" in value["config"]


def is_run_history(path: Path) -> bool:
    """Whether every finished line of ``path`` is a run's row (:func:`~logreg_mnist.persistence.is_history_row`)."""
    text = _read_text(path)
    if text is None:
        return False
    lines = text.split("\n")
    for line in lines[:-1]:  # the last piece, unfinished, may be cut short by a kill
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            return False
        if not is_history_row(row):
            return False
    return True


def foreign_entries(path: str | os.PathLike) -> list[str]:
    """Descriptions of the entries of ``path`` under a run's names that the run did not write.

    Each is a phrase such as ``"config.json (a file that is not a run's configuration)"``;
    an empty list when there is nothing foreign (or no directory).
    """
    path = Path(path)
    found = []
    for name in (CONFIG, HISTORY, BEST, CHECKPOINT, SNAPSHOTS, PLOTS):
        try:
            mode = os.lstat(path / name).st_mode
        except OSError:
            continue
        want_dir = name in (SNAPSHOTS, PLOTS)
        if stat.S_ISLNK(mode) or stat.S_ISDIR(mode) != want_dir or not (want_dir or stat.S_ISREG(mode)):
            found.append(f"{name} ({_kind(mode)}, expected {'a directory' if want_dir else 'a file'})")
        elif name == CONFIG and not is_run_config(path / name):
            found.append(f"{name} (a file that is not a run's configuration: not JSON with a 'config' object)")
        elif name == HISTORY and not is_run_history(path / name):
            found.append(f"{name} (a file that is not a run's history: lines not JSON objects with an 'epoch')")
        elif name == SNAPSHOTS:
            try:
                others = [p.name for p in (path / name).iterdir() if not _SNAPSHOT.fullmatch(p.name)]
            except OSError:
                others = ["(unreadable)"]
            if others:
                found.append(f"{name}/ (holds files that are not snapshots, e.g. {others[0]!r})")
    if not found and (path / HISTORY).exists() and not (path / CONFIG).exists():
        found.append(f"{HISTORY} (without a run's {CONFIG})")
    return found


def remove_entry(path: Path) -> None:
    """Remove ``path`` for ``--overwrite``: a link (never its target), a file, or a directory tree.

    The tree is removed by :func:`shutil.rmtree`, which does not follow links inside it.
    """
    import shutil

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
