"""Out-of-core training: splits read from their IDX files in chunks, identical to training in memory."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from logreg_mnist import load_mnist, preset, train
from logreg_mnist.cli import main
from logreg_mnist.data.stream import Rows, chunk_bytes_for, file_rows, parse_size
from logreg_mnist.engines.base import SGDSettings
from logreg_mnist.engines.numpy import NumpyEngine
from logreg_mnist.engines.chunked import ChunkedNumpyEngine
from logreg_mnist.errors import ConfigError, DataError
from logreg_mnist.engines import make_engine

from .conftest import write_dataset

N_FEATURES = 784
B = 50  # minibatch size of these tests
# 907 training rows (1,137 - 230 validation): 18 whole minibatches and a short one of 7.
N_TRAIN, N_VALID, N_TEST = 1137, 230, 230
# Each of the six buffers (two per split) gets a sixth of the budget: 125 rows, which is 2.5
# minibatches: the budget's edge falls inside a minibatch, so training chunks are rounded
# down to 2 whole minibatches (100 rows), while evaluation chunks of 125 rows end inside a
# minibatch.
BUDGET = 6 * 125 * N_FEATURES


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("raw")
    write_dataset(directory, n_train=N_TRAIN, n_test=N_TEST, compress=False, seed=5)
    return directory


@pytest.fixture(scope="module")
def raw_data(raw_dir):
    return load_mnist(raw_dir, download=False, valid_size=N_VALID, progress=False)


@pytest.mark.parametrize("text, expected", [
    ("512M", 512 << 20), ("2G", 2 << 30), ("1.5G", 3 << 29), ("800k", 800 << 10), ("2GiB", 2 << 30),
    ("4096", 4096), ("64MB", 64 << 20),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1G", "lots", "2X"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(ConfigError, match=r"--max-resident: expected a size such as 512M or 2G, found"):
        parse_size(text)


def test_file_rows_locate_views_of_the_memory_map(raw_data, raw_dir):
    # the validation split starts 907 rows into the training images file
    rows = file_rows(raw_data.valid.pixels)
    assert rows is not None
    assert rows.offset == 16 + (N_TRAIN - N_VALID) * N_FEATURES and rows.n_rows == N_VALID
    assert file_rows(np.array(raw_data.valid.pixels)) is None  # an in-memory copy has no file


@pytest.mark.parametrize("split", ["train", "valid", "test"])
@pytest.mark.parametrize("chunk", [1, 37, 125, 10_000])
def test_streamed_chunks_are_the_rows_in_order(raw_data, split, chunk):
    pixels = raw_data.split(split).pixels
    rows = Rows(pixels, chunk)
    assert rows.streamed == (chunk < len(pixels))
    got = [(start, p.copy()) for start, p in rows.chunks(3, len(pixels))]
    assert [s for s, _ in got] == list(range(3, len(pixels), min(chunk, len(pixels))))
    assert all(len(p) <= chunk for _, p in got)
    np.testing.assert_array_equal(np.concatenate([p for _, p in got]), pixels[3:])


def test_chunk_bytes_only_when_the_data_do_not_fit(raw_data):
    uint8_size = (N_TRAIN + N_TEST) * N_FEATURES
    assert chunk_bytes_for(raw_data, uint8_size, 1) is None
    assert chunk_bytes_for(raw_data, uint8_size, 4) == uint8_size // 6
    assert chunk_bytes_for(raw_data, BUDGET, 1) == 125 * N_FEATURES


@pytest.mark.parametrize("tutorial", [False, True], ids=["default-short-last-minibatch", "tutorial-drop-last"])
def test_chunked_training_is_identical_to_training_in_memory(raw_data, tutorial):
    config = preset("tutorial" if tutorial else "default", batch_size=B, n_epochs=3, patience=30)
    engine = make_engine("numpy", raw_data, config, max_resident=BUDGET)
    assert isinstance(engine, ChunkedNumpyEngine)
    assert engine._rows["train"].streamed and engine._rows["train"].chunk_rows == 2 * B
    assert engine._rows["valid"].streamed and engine._rows["valid"].chunk_rows == 125
    model, history = train(raw_data, config, engine=engine)
    ref_model, ref_history = train(raw_data, config, engine=make_engine("numpy", raw_data, config, max_resident=1 << 40))
    assert history.rows and [r | {"elapsed": 0} for r in history.rows] == \
        [r | {"elapsed": 0} for r in ref_history.rows]
    np.testing.assert_array_equal(model.W, ref_model.W)
    np.testing.assert_array_equal(model.b, ref_model.b)


def test_chunked_engine_counts_like_the_reference_after_each_minibatch(raw_data):
    settings = SGDSettings(batch_size=B, learning_rate=0.13)
    ref, chunked = NumpyEngine(raw_data, settings), ChunkedNumpyEngine(raw_data, settings, max_resident=BUDGET)
    assert chunked._rows["valid"].chunk_rows == 125  # chunks of 125 * 784 bytes
    for batches in (range(0, 1), range(1, 5), range(5, 19)):  # ends with the short minibatch of 7
        assert chunked.train(batches) == ref.train(batches)
        for split in ("valid", "test"):
            assert chunked.count_errors(split) == ref.count_errors(split)
    assert ref.train(range(18, 19))[1] == 7


def test_a_file_truncated_while_training_is_a_clear_error(tmp_path):
    write_dataset(tmp_path, n_train=400, n_test=60, compress=False, seed=2)
    data = load_mnist(tmp_path, download=False, valid_size=100, progress=False)
    engine = ChunkedNumpyEngine(data, SGDSettings(batch_size=B, learning_rate=0.13), max_resident=6 * 60 * 784)
    engine.train(range(0, 2))
    path = tmp_path / "train-images-idx3-ubyte"
    size = path.stat().st_size
    os.truncate(path, size - 5 * 784)
    with pytest.raises(DataError, match=rf"train-images-idx3-ubyte: the file changed size while it was in use: "
                                        rf"expected {size:,} bytes, found {size - 5 * 784:,} \(truncated"):
        engine.train(range(2, 4))
    with pytest.raises(DataError, match="changed size"):
        engine.count_errors("valid")


def test_a_file_shorter_than_its_rows_is_refused_when_opened(tmp_path):
    from logreg_mnist.data.stream import RowFile

    path = tmp_path / "rows"
    path.write_bytes(bytes(1000))
    with pytest.raises(DataError, match=r"rows: expected at least 1,016 bytes \(10 rows of 100 bytes from "
                                        r"byte 16\), found 1,000"):
        RowFile(path, 16, 10, 100)


def test_a_read_that_ends_early_is_a_clear_error(tmp_path, monkeypatch):
    from logreg_mnist.data import stream

    path = tmp_path / "rows"
    path.write_bytes(bytes(1016))
    rows = stream.RowFile(path, 16, 10, 100)
    monkeypatch.setattr(stream.os, "preadv", lambda fd, bufs, pos: 0 if pos >= 516 else 100)
    with pytest.raises(DataError, match=r"rows: the file ends at byte 516, inside row 5: expected 10 rows "
                                        r"\(1,016 bytes\); truncated\?"):
        rows.read(0, 10, np.empty((10, 100), np.uint8))


def test_gzip_too_large_is_decompressed_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_dataset(tmp_path / "gz", n_train=300, n_test=40, compress=True, seed=4)
    write_dataset(tmp_path / "raw", n_train=300, n_test=40, compress=False, seed=4)
    data = load_mnist(tmp_path / "gz", download=False, valid_size=100, progress=False, max_resident=10_000)
    copies = sorted((tmp_path / "cache" / "logreg-mnist" / "decompressed").iterdir(),
                    key=lambda p: p.name.split("-", 1)[1])  # <16 hex digits>-<file name>
    assert [p.name.split("-", 1)[1] for p in copies] == ["t10k-images-idx3-ubyte", "train-images-idx3-ubyte"]
    assert file_rows(data.train.pixels).path in copies  # memory-mapped from the copy
    raw = load_mnist(tmp_path / "raw", download=False, valid_size=100, progress=False)
    assert data.identity == raw.identity  # the identity is the decompressed content's
    np.testing.assert_array_equal(data.train.pixels, raw.train.pixels)
    before = [p.stat().st_mtime_ns for p in copies]
    load_mnist(tmp_path / "gz", download=False, valid_size=100, progress=False, max_resident=10_000)
    assert [p.stat().st_mtime_ns for p in copies] == before  # made once
    assert gzip.decompress((tmp_path / "gz" / "train-images-idx3-ubyte.gz").read_bytes()) == copies[1].read_bytes()


def test_a_corrupt_gzip_is_refused_and_leaves_no_partial_copy(tmp_path, monkeypatch):
    from logreg_mnist.errors import IDXFormatError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_dataset(tmp_path / "gz", n_train=300, n_test=40, compress=True, seed=4)
    path = tmp_path / "gz" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IDXFormatError, match=r"train-images-idx3-ubyte.gz: corrupt gzip stream"):
        load_mnist(tmp_path / "gz", download=False, valid_size=100, progress=False, max_resident=10_000)
    left = [p.name for p in (tmp_path / "cache" / "logreg-mnist" / "decompressed").iterdir()]
    assert not [n for n in left if "train" in n]


def test_train_max_resident_on_the_command_line(cli_data_dir, tmp_path, capsys):
    from logreg_mnist import load_model
    from logreg_mnist.persistence import read_history

    for name, budget in (("chunked", "3M"), ("resident", "1G")):
        argv = ["train", "--data-dir", str(cli_data_dir), "--engine", "numpy", "--n-epochs", "2",
                "--out", str(tmp_path / name), "--no-progress", "--max-resident", budget]
        assert main(argv) == 0
        assert "validation error" in capsys.readouterr().out
    rows = [[r | {"elapsed": 0} for r in read_history(tmp_path / name)] for name in ("chunked", "resident")]
    assert len(rows[0]) == 2 and rows[0] == rows[1]
    (chunked, _), (resident, _) = (load_model(tmp_path / name / "best.safetensors") for name in ("chunked", "resident"))
    np.testing.assert_array_equal(chunked.W, resident.W)
    assert main(["train", "--data-dir", str(cli_data_dir), "--max-resident", "lots"]) == 2
    assert "--max-resident: expected a size such as 512M or 2G, found 'lots'" in capsys.readouterr().err


def test_the_default_budget_is_a_quarter_of_the_available_memory_at_most_2_gib(monkeypatch):
    from logreg_mnist.data import stream

    monkeypatch.setattr(stream, "available_memory", lambda: 4 << 30)
    assert stream.default_max_resident() == 1 << 30
    monkeypatch.setattr(stream, "available_memory", lambda: 64 << 30)
    assert stream.default_max_resident() == 2 << 30  # a 5,000,000-image set (3.7 GiB) is read in chunks
