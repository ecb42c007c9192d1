"""Model files and run directories.

A model file is safetensors: two arrays, ``W`` (n_in, n_out) and ``b`` (n_out,),
and text metadata (each value JSON-encoded). Loading parses a JSON header and
copies bytes; nothing in the file is ever executed. Every file is written to a
temporary name in the same directory and renamed, so a reader (or a crash) never
sees half a file.

A run directory holds:
    config.json             the training configuration
    best.safetensors        the best model so far (by validation error)
    checkpoint.safetensors  the current parameters and driver state, for --resume
    history.jsonl           one JSON object per epoch (or full-batch iteration)
    snapshots/epoch-NNNN.safetensors   optional intermediate models
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save

from ._files import append_bytes, atomic_write_bytes
from ._version import __version__
from .errors import ModelFileError
from .model import LogisticRegression

FORMAT = "logreg-mnist/1"
BEST = "best.safetensors"
CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.jsonl"
CONFIG = "config.json"
SNAPSHOTS = "snapshots"

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_model(
    path: str | os.PathLike, W: np.ndarray, b: np.ndarray, metadata: Mapping[str, Any] | None = None
) -> None:
    """Save ``W`` and ``b`` with ``metadata`` (JSON-encodable values) as safetensors, atomically."""
    meta = {"format": FORMAT, "version": __version__}
    meta.update(metadata or {})
    text_meta = {k: json.dumps(v) for k, v in meta.items()}
    tensors = {"W": np.ascontiguousarray(W), "b": np.ascontiguousarray(b)}
    atomic_write_bytes(path, save(tensors, metadata=text_meta))


_IMAGE_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\0", "a TIFF image"),
    (b"MM\0*", "a TIFF image"),
    (b"\0\0\x08\x03", "an IDX images file"),
)


def image_kind(head: bytes) -> str | None:
    """``"a PNG image"``... when the first 16 bytes of a file are those of an input image, else None."""
    for signature, kind in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if len(head) > 2 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "a PNM image"
    return None


def _sniff(head: bytes) -> str | None:
    """Name what a non-safetensors file looks like. Safetensors: u64 header length, then '{'."""
    if head[8:9] == b"{":
        return None
    image = image_kind(head)
    if image:
        return image
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return f"a Python pickle (protocol {head[1]}), which is never loaded as a model"
    if head[:2] == b"PK":
        return "a zip archive (a PyTorch .pt file?)"
    if head[:2] == b"\x1f\x8b":
        return "a gzip file"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    return None


def load_model(path: str | os.PathLike) -> tuple[LogisticRegression, dict[str, Any]]:
    """Load a model file written by :func:`save_model`.

    Returns:
        (model, metadata): metadata values JSON-decoded.

    Raises:
        ModelFileError: the file is missing, not safetensors (a pickle is named as
            such and never loaded), truncated, or holds anything but a finite float
            ``W`` (n_in, n_out) and ``b`` (n_out,).
    """
    path = Path(path)
    if path.is_dir():
        if (path / BEST).is_file():
            path = path / BEST
        else:
            raise ModelFileError(f"{path}: a directory without {BEST}: expected a model file or a run directory")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read model file: {e.strerror or e}") from None
    what = _sniff(head)
    if what:
        expected = "a run directory or a .safetensors model file" if image_kind(head) else "a safetensors model file"
        raise ModelFileError(f"{path}: expected {expected}, found {what}")
    try:
        tensors = load_file(path)
        with safe_open(path, framework="np") as f:
            raw_meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a valid safetensors file (truncated or corrupt?): {e}") from None
    if set(tensors) != {"W", "b"}:
        raise ModelFileError(f"{path}: expected tensors named W and b, found {sorted(tensors) or 'none'}")
    W, b = tensors["W"], tensors["b"]
    if W.ndim != 2 or b.ndim != 1 or b.shape[0] != W.shape[1] or W.shape[1] < 2:
        raise ModelFileError(
            f"{path}: expected W of shape (n_in, n_out) and b of shape (n_out,) with n_out >= 2, "
            f"found W {W.shape} and b {b.shape}"
        )
    for name, arr in (("W", W), ("b", b)):
        if arr.dtype not in _FLOAT_DTYPES:
            raise ModelFileError(f"{path}: expected {name} as float32 or float64, found {arr.dtype}")
        if not np.isfinite(arr).all():
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ModelFileError(f"{path}: {name} holds {bad} non-finite value(s) (NaN or inf)")
    meta: dict[str, Any] = {}
    for k, v in raw_meta.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    return LogisticRegression.from_params(W, b), meta


def is_history_row(row: Any) -> bool:
    """Whether ``row`` (a parsed ``history.jsonl`` line) is a run's row: an object with an integer ``epoch``."""
    return isinstance(row, dict) and isinstance(row.get("epoch"), int)


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``history.jsonl`` file (a run directory works too)."""
    path = Path(path)
    if path.is_dir():
        path = path / HISTORY
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        if not line.endswith("\n"):  # a last line cut short by a kill: never finished
                            break
                        raise ModelFileError(f"{path}:{n}: not a JSON line: {e}") from None
                    if not is_history_row(row):
                        found = "an object without an integer 'epoch'" if isinstance(row, dict) else type(row).__name__
                        raise ModelFileError(
                            f"{path}:{n}: expected a JSON object with an integer 'epoch', found {found}"
                        )
                    rows.append(row)
    except UnicodeDecodeError as e:
        raise ModelFileError(
            f"{path}: expected UTF-8 text, found a byte that is not UTF-8 at offset {e.start}"
        ) from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read history: {e.strerror or e}") from None
    return rows


class HistoryWriter:
    """Appends one JSON line per row to ``history.jsonl``, flushed at once."""

    def __init__(self, path: str | os.PathLike, keep: list[dict[str, Any]] | None = None):
        self.path = Path(path)
        # Start from exactly the rows given (a resumed run drops rows past its checkpoint).
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in (keep or [])))

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one line, whole or not at all (a full disk leaves the file as it was)."""
        append_bytes(self.path, (json.dumps(dict(row)) + "\n").encode("utf-8"))
