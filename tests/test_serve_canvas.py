"""The short way for the page's drawings (serve/canvas.py): recognised from the bytes alone, and
exactly the ``prepared`` input of the full pipeline on many random drawings."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin

from logreg_mnist.images import open_image, prepare, to_gray
from logreg_mnist.serve import RunView
from logreg_mnist.serve import run_view as run_view_module
from logreg_mnist.serve.canvas import as_image, canvas_gray, is_canvas_png

from .serve_run import drawing, make_run, png_bytes


def random_drawing(rng: np.random.Generator) -> Image.Image:
    """A drawing as a pad could give it: a random side, mode and polarity; strokes, a dot, a tiny
    digit or nothing, anywhere, of any width; RGBA ones on a transparent background."""
    side = int(rng.choice([28, 64, 140, 200, 280, 280, 280, 320]))
    mode = str(rng.choice(["L", "RGB", "RGBA", "RGBA", "LA"]))
    light_on_dark = mode != "RGBA" and rng.random() < 0.3
    paper, ink = (0, 255) if light_on_dark else (255, 0)
    if mode in ("RGBA", "LA"):
        im = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        fill: tuple[int, ...] = (ink, ink, ink, 255)
    else:
        im = Image.new("RGB", (side, side), (paper,) * 3)
        fill = (ink,) * 3
    d = ImageDraw.Draw(im)
    kind = rng.choice(["strokes", "strokes", "strokes", "dot", "tiny", "blank"])
    width = int(rng.integers(1, max(2, side // 6)))
    if kind == "strokes":
        for _ in range(int(rng.integers(1, 4))):
            d.line([tuple(p) for p in rng.integers(0, side, size=(int(rng.integers(2, 7)), 2)).tolist()],
                   fill=fill, width=width, joint="curve")
    elif kind == "dot":
        x, y = rng.integers(0, side, size=2).tolist()
        r = int(rng.integers(1, max(2, side // 8)))
        d.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    elif kind == "tiny":
        x, y = rng.integers(0, side - 8, size=2).tolist()
        d.line([(x, y), (x + 3, y), (x + 3, y + 6)], fill=fill, width=1)
    return im.convert("LA") if mode == "LA" else im if mode != "L" else im.convert("L")


def test_drawings_are_recognised_and_prepared_exactly_as_by_the_pipeline():
    rng = np.random.default_rng(20)
    kinds = set()
    for _ in range(60):
        im = random_drawing(rng)
        data = png_bytes(im)
        assert is_canvas_png(data), im.mode
        gray = canvas_gray(data)
        full_image = open_image(data)
        assert gray is not None and np.array_equal(gray, to_gray(full_image))
        fast, full = prepare(as_image(gray)), prepare(full_image)
        assert np.array_equal(fast.pixels, full.pixels), (im.mode, im.size)
        assert (fast.blank, fast.inverted) == (full.blank, full.inverted)
        kinds.add((im.mode, full.blank, full.inverted))
    assert {m for m, _, _ in kinds} == {"L", "RGB", "RGBA", "LA"}
    assert {(b, i) for _, b, i in kinds} >= {(True, False), (False, True), (False, False)}


def with_chunk(data: bytes, kind: bytes, payload: bytes) -> bytes:
    """``data`` (a PNG) with a chunk inserted after IHDR."""
    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return data[:33] + chunk + data[33:]


def test_anything_else_takes_the_full_way():
    page = png_bytes(drawing("0", mode="RGBA"))
    assert is_canvas_png(page)
    interlaced = bytearray(page)
    interlaced[28] = 1  # IHDR's interlace method: Adam7 (Pillow does not write it), with its CRC
    interlaced[29:33] = struct.pack(">I", zlib.crc32(bytes(interlaced[12:29])))
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", "orientation")
    text = io.BytesIO()
    drawing("0").save(text, format="PNG", pnginfo=info)
    refused = {
        "larger than the pad": png_bytes(drawing("0", size=400)),
        "JPEG": png_bytes(drawing("0"), "JPEG"),
        "palette": png_bytes(drawing("0", mode="P")),
        "16-bit": png_bytes(Image.new("I;16", (280, 280))),
        "interlaced": bytes(interlaced),
        "text (may hold EXIF)": text.getvalue(),
        "EXIF": with_chunk(page, b"eXIf", b"MM\0*\0\0\0\x08\0\0"),
        "transparency key": with_chunk(png_bytes(drawing("0")), b"tRNS", b"\0\xff"),
        "bad CRC": page[:-5] + bytes([page[-5] ^ 1]) + page[-4:],
        "truncated": page[:-20],
        "trailing bytes": page + b"more",
        "not an image": b"hello",
    }
    for what, data in refused.items():
        assert not is_canvas_png(data), what
        assert canvas_gray(data) is None, what


def test_the_page_s_drawings_are_not_opened_by_the_full_way(tmp_path, monkeypatch):
    view = RunView(make_run(tmp_path / "run"))
    expected = view.predict(png_bytes(drawing("1", mode="RGBA")), explain=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the full way was taken")

    monkeypatch.setattr(run_view_module, "open_image", refuse)
    assert view.predict(png_bytes(drawing("1", mode="RGBA")), explain=False) == expected
    with pytest.raises(AssertionError, match="full way"):
        view.predict(png_bytes(drawing("1"), "JPEG"))
