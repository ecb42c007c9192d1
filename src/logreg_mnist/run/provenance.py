"""Where a run's data came from: what a run directory and its model files remember about their data.

A run remembers its data: ``config.json`` and every model file record the
dataset's identity, its location, the validation size, the class names and how
many examples the errors are over (:func:`data_record`, made once when a run
starts), so that commands given a run (or a model file) load the data the run was
trained on (:func:`load_run_data`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..data import Dataset
from ..errors import ConfigError, DataError
from ..persistence import CONFIG, load_model


def scored(n: int, config: TrainConfig) -> int:
    """How many of ``n`` examples an error is measured over: whole minibatches only with ``drop_last``."""
    return (n // config.batch_size) * config.batch_size if config.drop_last else n


def scored_counts(data: Dataset, config: TrainConfig) -> tuple[int | None, int | None]:
    """(validation, test) examples the errors of a run on ``data`` are over (None: unknown)."""
    if not (hasattr(data, "valid") and hasattr(data, "test")):
        return None, None
    return scored(len(data.valid), config), scored(len(data.test), config)


def data_record(config: TrainConfig, data: Dataset) -> dict[str, Any]:
    """What a run and its model files remember about their data (see :func:`load_run_data`)."""
    record: dict[str, Any] = {"dataset": data.identity}
    if getattr(data, "source", None) is not None:
        record["data_source"] = str(Path(data.source).resolve())
    if hasattr(data, "valid"):
        record["valid_size"] = len(data.valid)
    if getattr(data, "class_names", None) is not None:
        record["class_names"] = list(data.class_names or ())
    n_valid, n_test = scored_counts(data, config)
    if n_valid is not None:
        record.update(n_valid=n_valid, n_test=n_test)
    return record


def model_meta(config: TrainConfig, data: Dataset, **figures: Any) -> dict[str, Any]:
    """A model file's metadata: the config, :func:`data_record` and ``figures`` (epoch, errors...)."""
    return {"config": config.to_dict(), **data_record(config, data), **figures}


def recorded_data(target: str | os.PathLike) -> dict[str, Any]:
    """What a run directory (its ``config.json``) or a model file (its metadata) says about its data.

    Returns:
        A dict with any of ``dataset``, ``data_source``, ``valid_size``,
        ``class_names``, ``n_valid``, ``n_test`` (older files record fewer).
    """
    target = Path(target)
    keys = ("dataset", "data_source", "valid_size", "class_names", "n_valid", "n_test")
    if target.is_dir() and (target / CONFIG).is_file():
        try:
            meta = json.loads((target / CONFIG).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{target / CONFIG}: cannot read the run's configuration: {e}") from None
    else:
        _, meta = load_model(target)
    return {k: meta[k] for k in keys if isinstance(meta, dict) and meta.get(k) is not None}


def class_names_for(meta: dict[str, Any], n_classes: int) -> list[str]:
    """The class names recorded in ``meta`` (a model's or run's), numeric ones for the rest."""
    names = [str(n) for n in (meta.get("class_names") or [])][:n_classes]
    return names + [str(i) for i in range(len(names), n_classes)]


def _stderr_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def load_run_data(
    target: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool | None = None,
    progress: bool = True,
    warn: Callable[[str], None] = _stderr_warning,
    max_resident: int | None = None,
) -> Dataset:
    """The dataset a run directory (or a model file) was trained on, as recorded.

    With ``data_dir``, that data is used instead; ``warn`` is told when its identity
    differs from the recorded one. Without it, the recorded location is loaded and
    must hold the recorded dataset; MNIST, being fetchable and verifiable anywhere,
    falls back to the usual place (``$LOGREG_MNIST_DATA_DIR``, the user cache)
    when its recorded location is gone. Files that record nothing use the usual place.
    ``max_resident`` is the memory budget :func:`~logreg_mnist.data.load_mnist` reads the
    files under (gzip images larger than it are decompressed once, not into memory).

    Raises:
        DataError: the recorded data is not there, or is not the recorded dataset.
    """
    from ..data import load_mnist
    from ..data.known import by_identity

    rec = recorded_data(target)
    identity = rec.get("dataset")
    valid_size = rec.get("valid_size", 10_000)
    known = by_identity(identity)
    title = known.title if known else identity
    if data_dir is not None:
        data = load_mnist(
            data_dir, download=download, valid_size=valid_size, progress=progress, max_resident=max_resident
        )
        if identity is not None and data.identity != identity:
            warn(f"{target} was trained on {title}, using {data.title} from {data_dir} as asked")
        return data
    source = rec.get("data_source")
    if source is not None and (identity != "mnist" or Path(source).exists()):
        if not Path(source).exists():
            raise DataError(
                f"{target} was trained on {title} from {source}, which is not there now; "
                "pass --data-dir DIR (data_dir=) with that dataset"
            )
        try:
            data = load_mnist(
                source, download=False, valid_size=valid_size, progress=progress, max_resident=max_resident
            )
        except DataError as e:
            raise DataError(
                f"{target} was trained on {title} from {source}, which cannot be loaded now "
                f"({e}); pass --data-dir DIR (data_dir=) with that dataset"
            ) from None
    else:
        data = load_mnist(None, download=download, valid_size=valid_size, progress=progress, max_resident=max_resident)
    if identity is not None and data.identity != identity:
        raise DataError(
            f"{target} was trained on {title}, but {data.source} now holds {data.title}; "
            "pass --data-dir DIR (data_dir=) to use other data anyway"
        )
    return data
