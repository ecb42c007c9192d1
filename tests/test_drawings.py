"""Clean drawings take the short way of images/drawing.py: recognised exactly, and prepared as
well as by the full analysis (MNIST's test digits drawn as a page's pad would give them)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from logreg_mnist import TrainConfig, train
from logreg_mnist.images import open_image, pipeline, prepare, to_gray
from logreg_mnist.images.drawing import find_drawn_digit, gray_levels


def full_analysis(monkeypatch, image: Image.Image):
    """``prepare`` as without the short way (the analysis of images/analysis.py)."""
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_prepare_drawing", lambda image: None)
        return prepare(image)


def pads(pixels: np.ndarray, seed: int) -> list[Image.Image]:
    """MNIST digits drawn on 280x280 pads: crisp anti-aliased strokes, dark on light or light on
    dark, thinner and bolder, of many sizes and anywhere (every fifth one small)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, digit in enumerate(pixels):
        box = int(rng.choice([60, 120, 180, 220, 250])) if i % 5 else int(rng.integers(40, 80))
        up = Image.fromarray(digit).resize((box, box), Image.Resampling.BILINEAR)
        k = int(rng.choice([0, 0, 1, 2, 3]))
        if k:
            up = up.filter(ImageFilter.MaxFilter(2 * k + 1) if rng.random() < 0.6 else ImageFilter.MinFilter(2 * k + 1))
        ink = np.clip((np.asarray(up, np.float32) - 96) / 64, 0, 1)
        pad = np.zeros((280, 280), np.float32)
        x, y = rng.integers(0, 280 - box + 1, size=2)
        pad[y : y + box, x : x + box] = ink
        gray = pad * 255 if rng.random() < 0.3 else 255 * (1 - pad)
        out.append(Image.fromarray(np.round(gray).astype(np.uint8)).convert("RGBA"))
    return out


@pytest.mark.realdata
def test_mnist_digits_drawn_on_a_pad_are_recognised_as_well_as_by_the_full_analysis(real_mnist, monkeypatch):
    model, _ = train(real_mnist, TrainConfig(n_epochs=5))
    n = 200
    labels = real_mnist.test.labels[:n]
    drawn = pads(real_mnist.test.pixels[:n].reshape(n, 28, 28), seed=5)
    assert all(find_drawn_digit(gray_levels(im)) is not None for im in drawn)  # the short way is taken
    short = np.concatenate([prepare(im).features() for im in drawn])
    full = np.concatenate([full_analysis(monkeypatch, im).features() for im in drawn])
    on_short = float((model.predict(short) == labels).mean())
    on_full = float((model.predict(full) == labels).mean())
    assert on_full > 0.75
    assert on_short >= on_full - 0.01, f"full analysis {on_full:.3f}, short way {on_short:.3f}"


def pad_with(draw, *, mode="RGBA", paper=255, ink=0, side=280) -> Image.Image:
    im = Image.new("L", (side, side), paper)
    draw(ImageDraw.Draw(im), ink)
    return im.convert(mode)


def seven(d: ImageDraw.ImageDraw, ink: int, width: int = 18) -> None:
    d.line([(80, 60), (200, 60), (120, 230)], fill=ink, width=width, joint="curve")


def test_only_a_background_of_one_exact_level_with_ink_on_one_side_takes_the_short_way():
    clean = gray_levels(pad_with(seven))
    assert clean is not None and find_drawn_digit(clean) is not None
    gray_pad = gray_levels(pad_with(seven, paper=128, ink=0))
    assert gray_pad is not None and find_drawn_digit(gray_pad) is not None
    gray_pad = gray_pad.copy()
    gray_pad[3, 3] = 129  # one pixel lighter than the paper, the ink darker: not a clean drawing
    assert find_drawn_digit(gray_pad) is None
    framed = np.zeros((100, 100), np.uint8)
    framed[40:60, 40:60] = 255
    assert find_drawn_digit(framed) is not None
    framed[5:95, 5:95] = 255  # the border's level is a minority: a frame, not the paper
    assert find_drawn_digit(framed) is None
    paper = gray_levels(pad_with(seven, paper=220, ink=40))
    noisy = paper.astype(int) + np.random.default_rng(0).integers(-2, 3, paper.shape)
    assert find_drawn_digit(noisy.astype(np.uint8)) is None  # paper texture: the full analysis
    jpeg = io.BytesIO()
    pad_with(seven, mode="L", paper=220, ink=40).save(jpeg, format="JPEG", quality=90)
    assert find_drawn_digit(gray_levels(open_image(jpeg.getvalue()))) is None  # ringing on both sides


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "1", "I;16"])
def test_the_short_way_sees_the_gray_levels_of_to_gray(mode):
    im = pad_with(seven, mode="L")
    if mode == "I;16":
        im = Image.fromarray(np.asarray(im).astype(np.uint16) * 257)
    else:
        im = im.convert(mode)
    levels = gray_levels(im)
    assert levels is not None and levels.dtype == np.uint8
    np.testing.assert_allclose(levels, to_gray(im), atol=1e-3)
    see_through = np.zeros((50, 50, 4), np.uint8)
    see_through[10:40, 20:30] = (0, 0, 0, 200)  # ink on a transparent sheet: composited on white
    rgba = Image.fromarray(see_through, "RGBA")
    np.testing.assert_array_equal(gray_levels(rgba), to_gray(rgba))
    assert gray_levels(Image.fromarray(np.full((9, 9), 0.5, np.float32), mode="F")) is None  # not whole levels


def test_a_one_pixel_line_is_found_and_a_far_speck_is_dropped(monkeypatch):
    thin = pad_with(lambda d, ink: d.line([(140, 40), (160, 240)], fill=ink, width=1))
    p, full = prepare(thin), full_analysis(monkeypatch, thin)
    assert not p.blank and p.inverted and (p.pixels > 128).sum() >= 19  # the whole stroke, 20 pixels tall
    assert abs(int(p.pixels.sum()) - int(full.pixels.sum())) < full.pixels.sum() / 3  # about as much ink
    speck = pad_with(lambda d, ink: (seven(d, ink), d.ellipse([260, 260, 263, 263], fill=ink)))
    without = pad_with(seven)
    np.testing.assert_array_equal(prepare(speck).pixels, prepare(without).pixels)
    tiny = pad_with(lambda d, ink: d.line([(100, 100), (102, 102)], fill=ink, width=1))
    assert prepare(tiny).blank


def test_bench_like_drawings_agree_with_the_full_analysis(monkeypatch):
    """Pen strokes of many widths on the page's pad: the short way's input correlates with the
    full analysis's (the same digit, the same layout)."""
    rng = np.random.default_rng(3)
    agree = []
    for _ in range(12):
        im = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
        points = [tuple(p) for p in rng.integers(40, 240, size=(int(rng.integers(3, 7)), 2)).tolist()]
        ImageDraw.Draw(im).line(points, fill=(0, 0, 0, 255), width=int(rng.integers(6, 28)), joint="curve")
        short, full = prepare(im), full_analysis(monkeypatch, im)
        assert (short.blank, short.inverted) == (full.blank, full.inverted) == (False, True)
        agree.append(np.corrcoef(short.pixels.ravel().astype(float), full.pixels.ravel().astype(float))[0, 1])
    assert np.median(agree) > 0.95 and min(agree) > 0.7, np.round(agree, 3)


def test_thin_strokes_grow_exactly_as_by_scipy_s_dilation():
    from scipy import ndimage

    rng = np.random.default_rng(31)
    for k in range(400):
        h, w = (int(v) for v in rng.integers(1, 50, size=2))
        radius = int(rng.integers(1, 5))
        digit = (rng.random((h, w)) * 255).astype(np.float32 if k % 4 else np.float64)
        digit[rng.random((h, w)) < 0.6] = 0
        disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
        expected = ndimage.grey_dilation(np.pad(digit, radius), footprint=disk)
        grown = pipeline._grown(digit, radius)
        assert grown.dtype == expected.dtype and np.array_equal(grown, expected), (h, w, radius)


def test_levels_are_prepared_as_their_gray_image_is():
    rng = np.random.default_rng(32)
    kinds = set()
    for k in range(40):
        side = int(rng.choice([28, 100, 280, 320, 400]))
        im = Image.new("L", (side, side), int(rng.choice([0, 255, 200])))
        d = ImageDraw.Draw(im)
        d.line(
            [tuple(p) for p in rng.integers(0, side, size=(4, 2)).tolist()],
            fill=int(rng.integers(0, 256)),
            width=int(rng.integers(1, max(2, side // 8))),
        )
        if k % 5 == 0:
            im = im.filter(ImageFilter.GaussianBlur(2))  # not a clean drawing: the full analysis
        levels = np.asarray(im)
        for raw in (False, True) if side == 28 else (False,):
            a, b = pipeline.prepare_levels(levels, raw=raw), prepare(im, raw=raw)
            assert np.array_equal(a.pixels, b.pixels) and (a.blank, a.inverted) == (b.blank, b.inverted)
            kinds.add((side, a.blank))
    assert {s for s, _ in kinds} == {28, 100, 280, 320, 400}
