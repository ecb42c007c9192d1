"""The data caches are anchored to the IDX files: a forged cache is never believed, a damaged one is
rebuilt, and a cache truncated under a run does not crash it."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from logreg_mnist.data import load_mnist
from logreg_mnist.data.cache import CACHE_DIR_NAME, MANIFEST, content_digest

from .conftest import write_dataset

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("LOGREG_MNIST_NO_CACHE", raising=False)


def _load(directory, **kw):
    return load_mnist(directory, download=False, valid_size=20, progress=False, **kw)


def _poison(cache, name, change, mnist_claim=None):
    """Change a cached array and recompute its digest in the manifest, as a forger would."""
    array = np.load(cache / f"{name}.npy")
    array = change(array.copy())
    np.save(cache / f"{name}.npy", array)
    manifest = json.loads((cache / MANIFEST).read_text())
    manifest["arrays"][name]["sha256"] = content_digest(array)
    if mnist_claim is not None:
        manifest["mnist"] = mnist_claim
    (cache / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("name,change", [
    (IMAGES, lambda a: 255 - a),
    (LABELS, lambda a: (a + 1) % 10),
])
def test_a_forged_cache_with_recomputed_digests_is_not_believed(tmp_path, compress, name, change):
    write_dataset(tmp_path / "d", compress=compress)
    reference = _load(tmp_path / "d")
    cache = tmp_path / "d" / CACHE_DIR_NAME
    _poison(cache, name, change, mnist_claim=False)
    again = _load(tmp_path / "d")
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(again.split(s).pixels, reference.split(s).pixels)
        np.testing.assert_array_equal(again.split(s).labels, reference.split(s).labels)
    assert again.identity == reference.identity
    # and the cache is rebuilt from the IDX files
    kind = np.load(cache / f"{name}.npy")
    expected = reference.train.pixels if name == IMAGES else reference.train.labels
    np.testing.assert_array_equal(kind[: len(expected)].reshape(expected.shape), expected)


def test_a_damaged_decompressed_copy_is_rebuilt(tmp_path):
    write_dataset(tmp_path / "gz", n_train=300, n_test=40, compress=True, seed=4)
    first = _load(tmp_path / "gz", max_resident=10_000)
    copies = tmp_path / "xdg" / "logreg-mnist" / "decompressed"
    copy = next(p for p in copies.iterdir() if p.name.endswith(IMAGES))
    data = bytearray(copy.read_bytes())
    data[-5:] = b"\xff" * 5
    copy.write_bytes(bytes(data))
    again = _load(tmp_path / "gz", max_resident=10_000)
    np.testing.assert_array_equal(np.asarray(again.train.pixels), np.asarray(first.train.pixels))
    assert copy.read_bytes() == gzip.decompress((tmp_path / "gz" / f"{IMAGES}.gz").read_bytes())
    copy.write_bytes(copy.read_bytes()[:100])  # truncated
    again = _load(tmp_path / "gz", max_resident=10_000)
    np.testing.assert_array_equal(np.asarray(again.train.pixels), np.asarray(first.train.pixels))


def test_a_cache_truncated_under_a_numpy_run_does_not_kill_it(tmp_path):
    write_dataset(tmp_path / "d", n_train=2000, n_test=100, compress=False)
    _load(tmp_path / "d")  # the cache is written
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from logreg_mnist import TrainConfig, load_mnist
        from logreg_mnist.engines import make_engine
        d = Path({str(tmp_path / "d")!r})
        data = load_mnist(d, download=False, valid_size=20, progress=False)
        engine = make_engine("numpy", data, TrainConfig(batch_size=20))
        npy = d / {CACHE_DIR_NAME!r} / "{IMAGES}.npy"
        os.truncate(npy, 200)
        engine.train(range(engine.n_train_batches))
        print(engine.count_errors("valid"))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
