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


def _budget(data, settings, rows):
    """A budget whose chunks are ``rows`` rows (before rounding to whole minibatches): what the chunked
    engine holds per byte of a chunk's pixels (its layouts, sized from the data's density)."""
    from logreg_mnist.engines.fused_chunked import chunk_cost

    return int((rows + 0.5) * data.n_features * chunk_cost(data, settings))


def _assert_same(resident, chunked, batches_list):
    for batches in batches_list:
        assert chunked.train(batches) == resident.train(batches)  # the NLL sum and the count, exactly
        for mine, theirs in zip(chunked.get_params(), resident.get_params()):
            np.testing.assert_array_equal(mine, theirs)
        for split in ("valid", "test"):
            assert chunked.count_errors(split) == resident.count_errors(split)


# Chunks of rows: training chunks of 7 minibatches of 600 (83 or 84 per epoch: not a whole
# number of chunks; evaluation chunks of 4,200 rows, the last one short), of 1 minibatch,
# and of 8 (evaluation chunks of 5,000 rows: two).
CHUNKS = {"7-minibatches": 7 * 600, "1-minibatch": 600, "8-minibatches": 5_000}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk", list(CHUNKS))
def test_chunks_of_real_mnist_give_the_in_memory_engine_s_results_bit_for_bit(real_mnist, chunk, threads):
    drop_last = chunk != "7-minibatches"  # the short last minibatch of 200 rows, and without it
    settings = SGDSettings(batch_size=600, learning_rate=0.13, l1=1e-4, l2=1e-4, drop_last=drop_last)
    resident, chunked = _engines(real_mnist, settings, _budget(real_mnist, settings, CHUNKS[chunk]), threads)
    assert chunked._rows["train"].streamed and chunked._rows["train"].chunk_rows == CHUNKS[chunk] // 600 * 600
    assert chunked._span["valid"] == CHUNKS[chunk]
    n = resident.n_train_batches
    _assert_same(resident, chunked, (range(0, 10), range(10, 45), range(45, n), range(0, 3)))
    assert chunked.layout["train"].startswith("sparse") and resident.layout["train"].startswith("sparse")


def _dense(n: int, seed: int, n_in: int = N_IN, zero: slice = slice(100, 200)) -> Split:
    """Dense uint8 rows (about 70 % non-zero), the rows ``zero`` all zero."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n, n_in)) < 0.7, rng.integers(1, 256, (n, n_in)), 0).astype(np.uint8)
    x[zero] = 0
    return Split(labels=rng.integers(0, 10, n).astype(np.int64), pixels=x)


# What is still read dense: rows too wide for the sparse form's uint16 column indices, and
# (set by hand) a split denser than DENSE_ABOVE, its form chosen on its first chunk.
DENSE = {
    "too-wide": dict(sizes=(250, 60, 50), n_in=70_000, batch_size=10, rows=20, zero=slice(40, 60), above=1.0),
    "denser-than-DENSE_ABOVE": dict(sizes=(1250, 230, 210), n_in=N_IN, batch_size=50, rows=100,
                                    zero=slice(100, 200), above=0.5),
}


@pytest.mark.parametrize("kind", list(DENSE))
def test_a_dense_split_stays_dense_in_every_chunk_and_an_empty_chunk_changes_nothing(kind, monkeypatch):
    from logreg_mnist.engines import fused

    case = DENSE[kind]
    monkeypatch.setattr(fused, "DENSE_ABOVE", case["above"])
    splits = [_dense(n, seed, case["n_in"], case["zero"]) for seed, n in enumerate(case["sizes"], 1)]
    data = Dataset(*splits, source=Path("dense"), identity="dense")
    settings = SGDSettings(batch_size=case["batch_size"], learning_rate=0.13, l1=1e-4, l2=1e-3)
    resident, chunked = _engines(data, settings, _budget(data, settings, case["rows"]), 2)
    n = resident.n_train_batches  # one chunk is all zero
    _assert_same(resident, chunked, (range(0, 3), range(3, n - 5), range(0, n)))
    assert chunked.layout["train"] == f"dense, in chunks of {case['rows']} rows"
    assert resident.layout["train"].startswith("dense")


def _changed(real_mnist, n: int, noise: int) -> Dataset:
    """The first ``n`` images of each split of MNIST plus noise in [-noise, noise] (12: 58 % non-zero, as
    the out-of-core benchmark's images; 0: MNIST's 19 %)."""
    rng = np.random.default_rng(0)
    splits = []
    for split in (real_mnist.train, real_mnist.valid, real_mnist.test):
        x = split.pixels[:n].astype(np.int16) + rng.integers(-noise, noise + 1, (n, N_IN), dtype=np.int16)
        splits.append(Split(labels=split.labels[:n], pixels=np.clip(x, 0, 255).astype(np.uint8)))
    return Dataset(*splits, source=Path("changed"), identity="changed")


def test_a_58_percent_dense_split_is_read_in_the_faster_sparse_form(real_mnist):
    # the sparse form trains several times faster than the dense one there (fused.py's docstring)
    data = _changed(real_mnist, 3000, 12)
    settings = SGDSettings(batch_size=600, learning_rate=0.13)
    resident, chunked = _engines(data, settings, _budget(data, settings, 1200), 1)
    assert resident.layout["train"] == "sparse (density 0.58)"
    _assert_same(resident, chunked, (range(0, 5),))
    assert chunked.layout["train"] == "sparse, in chunks of 1,200 rows"


def test_the_budget_counts_the_layouts_bytes_not_the_pixels(real_mnist):
    from logreg_mnist.data.stream import resident_bytes
    from logreg_mnist.engines.fused import FusedEngine, _fused, layout_bytes
    from logreg_mnist.engines.fused_chunked import ChunkedFusedEngine, chunk_cost

    config = TrainConfig(batch_size=100)
    settings = SGDSettings.from_config(config)
    data = _changed(real_mnist, 3000, 12)
    held = FusedEngine.held_bytes(data, settings)
    layouts = {s: _fused.Layout(data.split(s).pixels, dense_above=1.0) for s in ("train", "valid", "test")}
    exact = sum(layout_bytes(lay.n, N_IN, lay.density, 100 if s == "train" else None) for s, lay in layouts.items())
    assert abs(held - exact) < 0.02 * exact  # the density sampled from 10,000 rows of each split
    pixels = resident_bytes(data, 1)
    assert held > 2.2 * pixels  # 58 % non-zero: 3.5 bytes of layout per pixel for training, 1.7 for evaluation
    budget = 2 * pixels  # the pixels fit, twice; the layouts do not
    engine = make_engine("fused", data, config, max_resident=budget)
    assert type(engine) is ChunkedFusedEngine and engine._rows["train"].chunked
    if "gpu" not in available_engines():  # auto: this dense, NumPy's engine, and its pixels fit
        assert type(make_engine("auto", data, config, max_resident=budget)).__name__ == "NumpyEngine"
    assert type(make_engine("fused", data, config, max_resident=held)).__name__ == "FusedEngine"
    assert type(make_engine("numpy", data, config, max_resident=budget)).__name__ == "NumpyEngine"
    # chunks sized from the layouts' bytes: denser data, smaller chunks, all within the budget
    rows = {}
    for noise in (0, 12):
        data = _changed(real_mnist, 2000, noise)
        engine = ChunkedFusedEngine(data, settings, max_resident=1 << 20)
        rows[noise] = engine._span["valid"]
        assert rows[noise] * N_IN * chunk_cost(data, settings) <= 1 << 20
    assert rows[12] < rows[0] // 2


def _tiny_budget(tiny_data):
    """tiny_data: 160 images (125 KiB), over this budget: chunks of 10 rows."""
    return _budget(tiny_data, SGDSettings(batch_size=10, learning_rate=0.1), 10)


def test_the_fused_engine_takes_its_chunked_form_for_data_over_the_budget(tiny_data):
    from logreg_mnist.engines.fused_chunked import ChunkedFusedEngine

    config = TrainConfig(batch_size=10)
    budget = _tiny_budget(tiny_data)
    engine = make_engine("fused", tiny_data, config, max_resident=budget)
    assert type(engine) is ChunkedFusedEngine and engine.name == "fused"
    assert engine._span == {"train": 10, "valid": 10, "test": 10}
    cores = engine.threads
    assert engine._chooser.options == tuple(dict.fromkeys((cores, cores - 1, 1)))  # and one fewer, for the reader
    assert make_engine("fused", tiny_data, config, threads=1, max_resident=budget)._chooser.options == (1,)


def test_the_next_chunk_is_made_by_the_reader_thread_ahead_of_its_use(tiny_data, monkeypatch):
    from logreg_mnist.engines.fused_chunked import ChunkedFusedEngine

    budget = _tiny_budget(tiny_data)
    engine = ChunkedFusedEngine(tiny_data, SGDSettings(batch_size=10, learning_rate=0.1), max_resident=budget)
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
    budget = _budget(data, SGDSettings.from_config(config), 20)
    engines = {"chunked": make_engine("fused", data, config, max_resident=budget),
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
    settings = SGDSettings(batch_size=50, learning_rate=0.13)
    engine = ChunkedFusedEngine(data, settings, max_resident=_budget(data, settings, 50))
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

    budget = _tiny_budget(tiny_data)
    engine = ChunkedFusedEngine(tiny_data, SGDSettings(batch_size=10, learning_rate=0.1), max_resident=budget)
    engine.train(range(0, 10))  # every choice measured (a few minibatches each)
    picks = []
    pick = engine._chooser.pick
    monkeypatch.setattr(engine._chooser, "pick", lambda: picks.append(pick()) or picks[-1])
    engine.train(range(0, 10))  # ten chunks of one minibatch
    assert len(picks) in (1, 2)  # the choice, and at most one trial of another count (8 minibatches)


def test_auto_over_the_budget_takes_the_chunked_fused_engine_for_sparse_pixels_only(real_mnist):
    from logreg_mnist.engines import CHUNKED_FUSED_DENSITY
    from logreg_mnist.engines.fused import sampled_density

    if "gpu" in available_engines():
        pytest.skip("auto takes the GPU engine here")
    config = TrainConfig(batch_size=100)
    for noise, expected in ((0, "ChunkedFusedEngine"), (12, "ChunkedNumpyEngine")):
        data = _changed(real_mnist, 2000, noise)
        assert (sampled_density(data.train.pixels) > CHUNKED_FUSED_DENSITY) == (noise == 12)
        engine = make_engine("auto", data, config, max_resident=200_000)  # neither the layouts nor the pixels fit
        assert type(engine).__name__ == expected
        assert type(make_engine("auto", data, config)).__name__ == "FusedEngine"  # in memory: always fused
