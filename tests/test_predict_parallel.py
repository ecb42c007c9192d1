"""Photos at decode speed: the analysis of a photo on a reduced copy, image files prepared on all cores in order."""

from __future__ import annotations

import concurrent.futures
import io
import os
import sys

import numpy as np
import pytest
from scipy import ndimage

from logreg_mnist import _parallel, inputs
from logreg_mnist._parallel import ordered_map
from logreg_mnist.cli import main
from logreg_mnist.images import analysis, pipeline, prepare
from logreg_mnist.predict import load_inputs

from .test_images import as_image, drawing, similarity
from .test_predict_inputs import model_file  # noqa: F401  (a fixture)


def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def test_ordered_map_runs_in_other_processes_and_keeps_the_order():
    results = ordered_map(_pid_and_square, list(range(40)), workers=2, progress=False)
    assert [r[1] for r in results] == [x * x for x in range(40)]
    assert os.getpid() not in {r[0] for r in results}
    assert ordered_map(_pid_and_square, [3], workers=4, progress=False) == [(os.getpid(), 9)]  # one item: here
    assert ordered_map(_pid_and_square, [], progress=False) == []


def test_no_fork_where_jax_is_loaded_or_threads_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", object())  # its threads do not survive a fork
    assert _parallel.start_method() in ("forkserver", None)
    results = ordered_map(_pid_and_square, list(range(6)), workers=2, progress=False)
    assert [r[1] for r in results] == [x * x for x in range(6)] and os.getpid() not in {r[0] for r in results}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_a_progress_bar_only_on_a_terminal(monkeypatch, terminal):
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    ordered_map(_pid_and_square, [1, 2, 3], workers=1, desc="preparing", unit="image")
    assert ("preparing" in err.getvalue() and "image" in err.getvalue()) is terminal
    assert err.getvalue() == "" or terminal


def test_no_bar_is_made_off_a_terminal(monkeypatch):
    # even a disabled tqdm bar starts a monitor thread, and a thread rules out forking the next pool
    import tqdm.auto

    def no_bar(*args, **kwargs):
        raise AssertionError("a progress bar")

    monkeypatch.setattr(tqdm.auto, "tqdm", no_bar)
    assert ordered_map(_pid_and_square, [1, 2, 3], workers=1, progress=False)[2][1] == 9
    assert ordered_map(_pid_and_square, [1, 2, 3], workers=2, progress=False)[2][1] == 9


def _write_digits(directory, digits="71507"):
    directory.mkdir()
    for i, d in enumerate(digits):
        as_image(drawing(d, sheet=(340 + 40 * i, 300), box=160)).save(directory / f"{i:02d}-{d}.png")


@pytest.fixture
def pool_spy(monkeypatch):
    """Counts the pools made; the machine is taken to have two cores (CI may give one)."""
    made = []

    class Spy(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            made.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Spy)
    monkeypatch.setattr(_parallel, "usable_cores", lambda: 2)
    return made


def test_a_directory_is_prepared_by_a_pool_as_one_at_a_time(tmp_path, pool_spy):
    _write_digits(tmp_path / "photos")
    serial = load_inputs([tmp_path / "photos"], workers=1, thumbnails=False)
    assert pool_spy == []
    parallel = load_inputs([tmp_path / "photos"], thumbnails=False)
    assert len(pool_spy) == 1
    assert [i.name for i in parallel] == [i.name for i in serial] == sorted(i.name for i in serial)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.features, b.features)
        assert a.prepared[0].inverted and b.original is None
    assert load_inputs([tmp_path / "photos"])[0].original is not None  # thumbnails (for --show) by default


def test_a_few_images_are_prepared_in_this_process(tmp_path, pool_spy):
    _write_digits(tmp_path / "photos", "7" * (inputs.POOL_FROM - 1))
    assert len(load_inputs([tmp_path / "photos"])) == inputs.POOL_FROM - 1
    assert pool_spy == []


def test_each_bad_file_is_one_line_in_order_and_the_rest_is_predicted(model_file, tmp_path, capsys, pool_spy):  # noqa: F811
    d = tmp_path / "photos"
    _write_digits(d)
    (d / "01-garbage.png").write_bytes(b"not an image at all")
    good = (d / "00-7.png").read_bytes()
    (d / "03-cut.png").write_bytes(good[: len(good) // 2])
    assert main(["predict", str(model_file), str(d)]) == 2
    out, err = capsys.readouterr()
    assert len(pool_spy) == 1 and "Traceback" not in err
    names = sorted(p.name for p in d.iterdir())
    bad = {"01-garbage.png", "03-cut.png"}
    assert [line.split()[0] for line in out.splitlines()] == [str(d / n) for n in names if n not in bad]
    lines = err.splitlines()
    assert lines[0].startswith(f"logreg-mnist predict: error: {d / '01-garbage.png'}: expected an image")
    assert lines[1].startswith(f"logreg-mnist predict: error: {d / '03-cut.png'}: ")
    assert lines[2] == "logreg-mnist predict: error: 2 of 7 inputs could not be read (above); the other 5 were predicted"
    assert len(lines) == 3


def test_thumbnails_only_for_show(model_file, tmp_path, monkeypatch, capsys):  # noqa: F811
    as_image(drawing("7")).save(tmp_path / "seven.png")
    made = []
    thumbnail = inputs._thumbnail
    monkeypatch.setattr(inputs, "_thumbnail", lambda image: made.append(image.size) or thumbnail(image))
    assert main(["predict", str(model_file), str(tmp_path / "seven.png")]) == 0
    assert made == []
    assert main(["predict", str(model_file), str(tmp_path / "seven.png"), "--show", str(tmp_path / "p.png")]) == 0
    assert made == [(480, 400)]


# --- the pipeline at the resolution it needs ------------------------------------------------------------


def _analysed_shapes(monkeypatch) -> list[tuple[int, int]]:
    seen = []
    find = analysis.find_digit
    monkeypatch.setattr(pipeline, "find_digit", lambda gray, **kw: seen.append(gray.shape) or find(gray, **kw))
    return seen


@pytest.mark.parametrize("sheet", [(280, 280), (320, 200), (28, 28)])
def test_small_pictures_are_analysed_whole(monkeypatch, sheet):
    # a page's canvas, a crop: their result stays what it was (a canvas fast path must give the same);
    # on paper of more than one level (a clean drawing takes the short way of images/drawing.py)
    seen = _analysed_shapes(monkeypatch)
    picture = drawing("5", sheet=sheet, box=int(min(sheet) * 0.7), dark=False, paper=0, ink=255)
    prepare(as_image(picture - np.linspace(0, 8, sheet[0])))
    assert seen == [sheet[::-1]]


def test_a_photo_is_analysed_on_a_reduced_copy_and_the_digit_cut_at_the_resolution_it_needs(monkeypatch):
    seen = _analysed_shapes(monkeypatch)
    # a small digit on a large sheet: 14 pixels tall in the reduced copy
    image = as_image(drawing("7", sheet=(1400, 1100), box=150, at=(0.3, 0.6)))
    cut = prepare(image)
    assert max(seen[0]) == pipeline.ANALYSIS_SIDE == 128
    with monkeypatch.context() as m:
        m.setattr(pipeline, "ANALYSIS_SIDE", 1400)  # the whole analysis at full resolution
        whole = prepare(image)
    monkeypatch.setattr(pipeline, "DIGIT_SIDE", 0)  # no cut: the digit as the reduced copy holds it
    coarse = prepare(image)
    assert max(seen[1]) == 1400
    assert similarity(cut, whole) > 0.97 > similarity(coarse, whole)


@pytest.mark.parametrize("shape, size", [((48, 48), 16), ((31, 47), 15), ((20, 13), 7), ((48, 2), 16), ((5, 48), 4)])
def test_the_papers_median_is_scipys(shape, size):
    a = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    expected = ndimage.median_filter(a, size=(size, size), mode="reflect")
    np.testing.assert_array_equal(analysis._median_filter(a, size), expected)


def _sleepy_disposition(seconds: float) -> bool:
    import signal
    import time

    time.sleep(seconds)
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_ctrl_c_stops_the_pool_at_once_and_is_the_parents_alone():
    import signal
    import threading
    import time

    assert ordered_map(_sleepy_disposition, [0.0, 0.0], workers=2, progress=False) == [True, True]  # workers ignore it
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        ordered_map(_sleepy_disposition, [0.05] * 200, workers=2, progress=False)  # 5 s of work
    assert time.perf_counter() - start < 3  # what was not started is dropped, not waited for
    timer.join()
