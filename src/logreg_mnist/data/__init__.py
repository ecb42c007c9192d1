"""Data: verified MNIST acquisition, IDX and legacy-pickle readers, the tutorial's split.

The modules, lowest first (each imports only those before it):

- :mod:`.pixels`: the frame's side, the pixel scale 1/256, the blank level;
- :mod:`.known`: the known datasets' digests and class names;
- :mod:`.idx`: the IDX reader and writer, and file digests;
- :mod:`.stream`: memory budgets, splits read from their files in chunks;
- :mod:`.dataset`: ``Split`` and ``Dataset``;
- :mod:`.cache`: decoded arrays kept as ``.npy`` files;
- :mod:`.fetch`: verified downloads;
- :mod:`.legacy`: the tutorial's ``mnist.pkl.gz``, read safely;
- :mod:`.mnist`: ``load_mnist``, the steps from a directory to the tutorial's split.
"""

from .dataset import Dataset, Split
from .fetch import DEFAULT_SOURCES, HttpSource, NpmSource, fetch_files
from .idx import content_sha256, read_idx, write_idx
from .known import MNIST_SHA256
from .legacy import load_legacy_pickle, read_legacy_pickle, safe_unpickle
from .mnist import ENV_DATA_DIR, default_cache_dir, load_mnist, resolve_data_dir

__all__ = [
    "DEFAULT_SOURCES",
    "ENV_DATA_DIR",
    "MNIST_SHA256",
    "Dataset",
    "HttpSource",
    "NpmSource",
    "Split",
    "content_sha256",
    "default_cache_dir",
    "fetch_files",
    "load_legacy_pickle",
    "load_mnist",
    "read_idx",
    "read_legacy_pickle",
    "resolve_data_dir",
    "safe_unpickle",
    "write_idx",
]
