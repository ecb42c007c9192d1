"""Datasets recognised by the SHA-256 of their decompressed IDX files, with their class names.

This module is the one place where the known datasets' digests (and MNIST's file
sizes) are declared: the downloader (:mod:`.fetch`), the decoded cache
(:mod:`.cache`) and the recognition below all read them from here.

A directory whose four files all match one entry here gets that entry's identity
(``"mnist"``, ``"fashion-mnist"``) and class names. Any other IDX directory keeps a
fingerprint identity (``"idx-<16 hex digits>"``) and numeric class names, unless a
``classes.txt`` beside the files names the classes, one per line.

KMNIST is not listed: its publishers give hashes of the ``.gz`` files only, not of
their decompressed content, and a recompressed copy would not match them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

# SHA-256 of the decompressed (raw IDX) content of each of MNIST's files.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Bytes of the raw (decompressed) content of each of MNIST's files.
MNIST_SIZES: dict[str, int] = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
# The four IDX files of an MNIST-style directory (any dataset laid out as MNIST is).
FILE_NAMES = tuple(MNIST_SHA256)

CLASSES_FILE = "classes.txt"
_MAX_NAME = 64  # characters per class name in classes.txt


@dataclass(frozen=True)
class KnownDataset:
    """One dataset recognised by content.

    Attributes:
        identity: the short name recorded in runs and model files.
        title: the name shown to people.
        sha256: raw IDX file name -> SHA-256 of its decompressed content.
        class_names: one name per label, in label order.
    """

    identity: str
    title: str
    sha256: dict[str, str]
    class_names: tuple[str, ...]


MNIST = KnownDataset("mnist", "MNIST", MNIST_SHA256, tuple(str(d) for d in range(10)))

# Fashion-MNIST (Zalando Research): the digests of the files Debian's dataset-fashion-mnist ships.
FASHION_MNIST = KnownDataset(
    "fashion-mnist",
    "Fashion-MNIST",
    {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)

KNOWN_DATASETS: tuple[KnownDataset, ...] = (MNIST, FASHION_MNIST)


def recognise(digests: dict[str, str]) -> KnownDataset | None:
    """The known dataset whose four files all have these decompressed SHA-256 digests, if any."""
    for known in KNOWN_DATASETS:
        if all(digests.get(name) == sha for name, sha in known.sha256.items()):
            return known
    return None


def by_identity(identity: str | None) -> KnownDataset | None:
    """The known dataset recorded as ``identity`` (as in a run's ``config.json``), if any."""
    return next((k for k in KNOWN_DATASETS if k.identity == identity), None)


def numeric_names(n_classes: int) -> list[str]:
    """``["0", "1", ...]``: the names of classes nobody has named."""
    return [str(i) for i in range(n_classes)]


def read_class_names(directory: Path, n_classes: int) -> list[str] | None:
    """The names in ``directory/classes.txt`` (one per line, blank lines ignored), if the file is there.

    Raises:
        DataError: the file does not hold exactly one name per class, or a name is
            too long.
    """
    path = directory / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class names: {e}") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != n_classes:
        raise DataError(f"{path}: expected {n_classes} class names (one per line, one per label), found {len(names)}")
    long = [n for n in names if len(n) > _MAX_NAME]
    if long:
        raise DataError(f"{path}: expected class names of at most {_MAX_NAME} characters, found one of {len(long[0])}")
    return names
