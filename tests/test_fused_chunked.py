"""The fused engine out of core (ChunkedFusedEngine): bit-identical to the fused engine in memory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from logreg_mnist import TrainConfig, load_mnist, preset, train
from logreg_mnist.data import Dataset, Split
from logreg_mnist.engines import available_engines, make_engine
from logreg_mnist.engines.base import SGDSettings
from logreg_mnist.errors import DataError

from .conftest import write_dataset

pytestmark = pytest.mark.usefixtures("need_fused")

N_IN = 784


def _engines(data, settings, budget, threads):
    from logreg_mnist.engines.fused import FusedEngine
    from logreg_mnist.engines.fused_chunked import ChunkedFusedEngine

    chunked = ChunkedFusedEngine(data, settings, threads=threads, max_resident=budget)
    return FusedEngine(data, settings, threads=threads), chunked


def _assert_same(resident, chunked, batches_list):
    for batches in batches_list:
        assert chunked.train(batches) == resident.train(batches)  # the NLL sum and the count, exactly
        for mine, theirs in zip(chunked.get_params(), resident.get_params()):
            np.testing.assert_array_equal(mine, theirs)
        for split in ("valid", "test"):
            assert chunked.count_errors(split) == resident.count_errors(split)


# Budgets as chunk sizes (a twelfth of the budget): training chunks of 7 minibatches of 600
# (83 or 84 per epoch: not a whole number of chunks; evaluation chunks of 4,200 rows, the
# last one short), of 1 minibatch, and of 8 (evaluation chunks of 5,000 rows: two).
CHUNKS = {"7-minibatches": 12 * 7 * 600 * N_IN, "1-minibatch": 12 * 600 * N_IN, "8-minibatches": 12 * 5_000 * N_IN}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk", list(CHUNKS))
def test_chunks_of_real_mnist_give_the_in_memory_engine_s_results_bit_for_bit(real_mnist, chunk, threads):
    drop_last = chunk != "7-minibatches"  # the short last minibatch of 200 rows, and without it
    settings = SGDSettings(batch_size=600, learning_rate=0.13, l1=1e-4, l2=1e-4, drop_last=drop_last)
    resident, chunked = _engines(real_mnist, settings, CHUNKS[chunk], threads)
    assert chunked._rows["train"].streamed and chunked._rows["train"].chunk_rows < len(real_mnist.train)
    n = resident.n_train_batches
    _assert_same(resident, chunked, (range(0, 10), range(10, 45), range(45, n), range(0, 3)))
    assert chunked.layout["train"].startswith("sparse") and resident.layout["train"].startswith("sparse")


def _dense(n: int, seed: int) -> Split:
    """Dense uint8 rows (about 70 % non-zero), rows 100-199 all zero."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n, N_IN)) < 0.7, rng.integers(1, 256, (n, N_IN)), 0).astype(np.uint8)
    x[100:200] = 0
    return Split(labels=rng.integers(0, 10, n).astype(np.int64), pixels=x)


def test_a_dense_split_stays_dense_in_every_chunk_and_an_empty_chunk_changes_nothing():
    data = Dataset(_dense(1250, 1), _dense(230, 2), _dense(210, 3), source=Path("dense"), identity="dense")
    settings = SGDSettings(batch_size=50, learning_rate=0.13, l1=1e-4, l2=1e-3)
    resident, chunked = _engines(data, settings, 12 * 100 * N_IN, 2)  # chunks of 100 rows: one is all zero
    _assert_same(resident, chunked, (range(0, 3), range(3, 20), range(0, 25)))
    assert chunked.layout["train"] == "dense, in chunks of 100 rows"
    assert resident.layout["train"].startswith("dense")


# tiny_data: 160 images (125 KiB), over this budget: chunks of 10 rows
TINY_BUDGET = 6 * 20 * N_IN


def test_auto_takes_the_chunked_fused_engine_for_data_over_the_budget(tiny_data):
    from logreg_mnist.engines.fused_chunked import ChunkedFusedEngine

    config = TrainConfig(batch_size=10)
    engine = make_engine("fused", tiny_data, config, max_resident=TINY_BUDGET)
    assert type(engine) is ChunkedFusedEngine and engine.name == "fused"
    assert engine._span == {"train": 10, "valid": 10, "test": 10}
    cores = engine.threads
    assert engine._chooser.options == tuple(dict.fromkeys((cores, cores - 1, 1)))  # and one fewer, for the reader
    assert make_engine("fused", tiny_data, config, threads=1, max_resident=TINY_BUDGET)._chooser.options == (1,)
    if "gpu" not in available_engines():
        assert type(make_engine("auto", tiny_data, config, max_resident=TINY_BUDGET)) is ChunkedFusedEngine
        assert type(make_engine("auto", tiny_data, config)).__name__ == "FusedEngine"


def test_the_next_chunk_is_made_by_the_reader_thread_ahead_of_its_use(tiny_data, monkeypatch):
    from logreg_mnist.engines.fused_chunked import ChunkedFusedEngine

    engine = ChunkedFusedEngine(tiny_data, SGDSettings(batch_size=10, learning_rate=0.1), max_resident=TINY_BUDGET)
    made = []
    build = engine._build

    def spy(split, start):
        made.append((split, start, threading.current_thread().name))
        return build(split, start)

    monkeypatch.setattr(engine, "_build", spy)
    engine.train(range(0, 1))  # rows 0-9: rows 10-19 are made next, while these train
    engine._ahead["train"][1].result()
    assert [m[:2] for m in made] == [("train", 0), ("train", 10)]
    engine.train(range(1, 10))  # the one made ahead, then each next one
    engine._ahead["train"][1].result()
    assert [m[:2] for m in made[2:]] == [("train", r) for r in range(20, 100, 10)] + [("train", 0)]
    assert all(name.startswith("logreg-mnist-layout") for *_, name in made)
    engine.train(range(0, 1))  # the next epoch starts on the chunk made ahead
    engine._ahead["train"][1].result()
    assert [m[:2] for m in made[11:]] == [("train", 10)]


def test_training_runs_record_what_the_in_memory_engine_records(tmp_path):
    write_dataset(tmp_path / "data", n_train=700, n_test=150, compress=False, seed=9)
    data = load_mnist(tmp_path / "data", download=False, valid_size=180, progress=False)
    config = preset("tutorial", batch_size=50, n_epochs=4, patience=40)  # 520 rows: 10 minibatches, 20 dropped
    engines = {"chunked": make_engine("fused", data, config, max_resident=6 * 40 * N_IN),
               "resident": make_engine("fused", data, config)}
    assert type(engines["chunked"]).__name__ == "ChunkedFusedEngine"
    assert engines["chunked"]._span == {"train": 50, "valid": 20, "test": 20}
    runs = {name: train(data, config, tmp_path / name, engine=engine) for name, engine in engines.items()}
    (model, history), (ref_model, ref) = runs["chunked"], runs["resident"]
    assert history.rows and [r | {"elapsed": 0} for r in history.rows] == [r | {"elapsed": 0} for r in ref.rows]
    np.testing.assert_array_equal(model.W, ref_model.W)
    np.testing.assert_array_equal(model.b, ref_model.b)


def test_a_file_truncated_while_training_is_a_clear_error(tmp_path):
    from logreg_mnist.engines.fused_chunked import ChunkedFusedEngine

    write_dataset(tmp_path, n_train=400, n_test=60, compress=False, seed=2)
    data = load_mnist(tmp_path, download=False, valid_size=100, progress=False)
    engine = ChunkedFusedEngine(data, SGDSettings(batch_size=50, learning_rate=0.13), max_resident=6 * 50 * N_IN)
    assert engine._rows["train"].streamed
    engine.train(range(0, 2))
    path = tmp_path / "train-images-idx3-ubyte"
    size = path.stat().st_size
    os.truncate(path, size - 5 * N_IN)
    with pytest.raises(DataError, match=rf"train-images-idx3-ubyte: the file changed size while it was in use: "
                                        rf"expected {size:,} bytes, found {size - 5 * N_IN:,} \(truncated"):
        engine.train(range(2, 6))
    with pytest.raises(DataError, match="changed size"):
        engine.count_errors("valid")


def test_a_layout_asked_to_be_dense_counts_its_pixels_only_when_asked():
    from logreg_mnist.engines.fused import _fused

    pixels = _dense(300, 4).pixels
    layout = _fused.Layout(pixels, dense_above=0.0)  # dense for any non-zero pixel: no count needed
    assert not layout.sparse and layout.minibatch_size is None
    assert layout.nnz == np.count_nonzero(pixels)
    assert layout.density == np.count_nonzero(pixels) / pixels.size
    empty = _fused.Layout(np.zeros((20, N_IN), np.uint8), dense_above=0.0)  # nothing non-zero: sparse
    assert empty.sparse and empty.nnz == 0 and empty.density == 0.0
    wide = np.zeros((3, 70_000), np.uint8)
    wide[1, 5] = 7
    layout = _fused.Layout(wide, dense_above=1.0)  # too wide for uint16 column indices: dense
    assert not layout.sparse and layout.nnz == 1


def test_the_thread_count_is_chosen_once_per_call_not_once_per_chunk(tiny_data, monkeypatch):
    from logreg_mnist.engines.fused_chunked import ChunkedFusedEngine

    engine = ChunkedFusedEngine(tiny_data, SGDSettings(batch_size=10, learning_rate=0.1), max_resident=TINY_BUDGET)
    engine.train(range(0, 10))  # every choice measured (a few minibatches each)
    picks = []
    pick = engine._chooser.pick
    monkeypatch.setattr(engine._chooser, "pick", lambda: picks.append(pick()) or picks[-1])
    engine.train(range(0, 10))  # ten chunks of one minibatch
    assert len(picks) in (1, 2)  # the choice, and at most one trial of another count (8 minibatches)
