"""The short way for the page's drawings (serve/canvas.py): recognised from the bytes alone, and
exactly the ``prepared`` input of the full pipeline on many random drawings."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin

from logreg_mnist.images import open_image, prepare, to_gray
from logreg_mnist.images.drawing import gray_levels
from logreg_mnist.serve import RunView
from logreg_mnist.serve import canvas as canvas_module
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
            d.line(
                [tuple(p) for p in rng.integers(0, side, size=(int(rng.integers(2, 7)), 2)).tolist()],
                fill=fill,
                width=width,
                joint="curve",
            )
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


# ---- Chromium's PNGs: read straight from the rows' differences ---------------------------------


def up_filtered_png(image: Image.Image, filters: list[int] | None = None, level: int = 1) -> bytes:
    """``image`` (RGBA) as Chromium's canvas encodes it: every row filtered "Up" (or as ``filters``
    says: 0 None, 1 Sub, 2 Up), compressed fast."""
    pixels = np.asarray(image.convert("RGBA"), dtype=np.uint8).reshape(image.height, -1)
    filters = filters or [2] * image.height
    rows = []
    for y, kind in enumerate(filters):
        row = pixels[y].astype(np.int16)
        if kind == 1:
            row = row - np.concatenate([np.zeros(4, np.int16), row[:-4]])
        elif kind == 2:
            row = row - (pixels[y - 1].astype(np.int16) if y else 0)
        rows.append(bytes([kind]) + (row % 256).astype(np.uint8).tobytes())
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, 6, 0, 0, 0)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    stream = zlib.compress(b"".join(rows), level)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", stream[:4096])
        + (chunk(b"IDAT", stream[4096:]) if len(stream) > 4096 else b"")
        + chunk(b"IEND", b"")
    )


def pillow_levels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data), formats=("PNG",))
    image.load()
    levels = gray_levels(image)
    assert levels is not None
    return levels


def pad_drawing(rng: np.random.Generator, side: int = 280) -> Image.Image:
    """A drawing as the page's pad holds it: opaque white, black anti-aliased strokes."""
    im = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 4))):
        margin = side // 10
        points = [tuple(p) for p in rng.integers(margin, side - margin, size=(int(rng.integers(2, 7)), 2)).tolist()]
        d.line(points, fill=(0, 0, 0, 255), width=int(rng.integers(2, max(3, side // 9))), joint="curve")
    # anti-aliased edges: gray levels, still R = G = B
    return Image.fromarray(np.asarray(im.convert("L").resize((side // 2, side // 2)).resize((side, side)))).convert(
        "RGBA"
    )


def compiled_reader():
    """The compiled reader (``_canvas.c``): CI builds it (LOGREG_MNIST_REQUIRE_FUSED=1, the compiled
    parts are required, makes its absence a failure)."""
    if canvas_module._compiled is None:
        if os.environ.get("LOGREG_MNIST_REQUIRE_FUSED"):
            pytest.fail("the compiled drawing reader (serve/_canvas.c) is required but not built (pip install -e .)")
        pytest.skip("the compiled drawing reader is not built")
    return canvas_module._compiled


@pytest.fixture(params=["compiled", "numpy"])
def reader(request, monkeypatch):
    """The fast reader, compiled (``_canvas.c``) or with NumPy: both must give Pillow's levels."""
    if request.param == "compiled":
        compiled_reader()
    else:
        monkeypatch.setattr(canvas_module, "_compiled", None)
    return request.param


def test_chromium_s_pngs_are_read_from_their_rows_with_pillow_s_levels(reader):
    rng = np.random.default_rng(21)
    for k in range(25):
        side = int(rng.choice([280, 280, 200, 320, 31]))
        data = up_filtered_png(pad_drawing(rng, side), level=int(rng.choice([1, 3, 6])))
        if k == 0:
            first_none = [0] + [2] * (side - 1)  # the first row "None": the same, from zeros
            data = up_filtered_png(pad_drawing(rng, side), first_none)
        rows = canvas_module._inflated_rows(data)
        assert rows is not None
        fast = canvas_module._opaque_gray(rows)
        assert fast is not None, "the fast way was not taken"
        assert fast.dtype == np.uint8 and np.array_equal(fast, pillow_levels(data))
        assert len(np.unique(fast)) > 2  # anti-aliased: gray levels between ink and paper
        assert np.array_equal(canvas_gray(data), fast)


def test_anything_but_an_opaque_gray_up_filtered_picture_is_left_to_pillow(reader):
    rng = np.random.default_rng(22)
    base = pad_drawing(rng)
    coloured = base.copy()
    coloured.putpixel((140, 140), (200, 10, 10, 255))
    see_through = base.copy()
    see_through.putpixel((3, 277), (255, 255, 255, 254))
    last_sub = [2] * 279 + [1]
    cases = {
        "a coloured pixel": up_filtered_png(coloured),
        "a pixel not opaque": up_filtered_png(see_through),
        "a row filtered Sub": up_filtered_png(base, last_sub),
        "the first row Sub": up_filtered_png(base, [1] + [2] * 279),
    }
    for what, data in cases.items():
        rows = canvas_module._inflated_rows(data)
        assert rows is not None and canvas_module._opaque_gray(rows) is None, what
        assert np.array_equal(canvas_gray(data), pillow_levels(data)), what  # Pillow's way, the same levels
    rows = canvas_module._inflated_rows(up_filtered_png(base))
    assert rows is not None
    paeth_rows = rows.copy()
    paeth_rows[140, 0] = 4
    assert canvas_module._opaque_gray(paeth_rows) is None


def test_a_stream_that_does_not_inflate_to_the_picture_is_left_to_pillow():
    rng = np.random.default_rng(23)
    image = pad_drawing(rng, 64)
    good = up_filtered_png(image)
    pixels = np.asarray(image, dtype=np.uint8).reshape(64, -1)
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(64))
    header = good[8:33]

    def png(stream: bytes) -> bytes:
        body = b"IDAT" + stream
        return (
            b"\x89PNG\r\n\x1a\n"
            + header
            + struct.pack(">I", len(stream))
            + body
            + struct.pack(">I", zlib.crc32(body))
            + b"\0\0\0\0IEND\xaeB`\x82"
        )

    short, long = png(zlib.compress(rows[:-1])), png(zlib.compress(rows + b"\0"))
    unfinished = png(zlib.compress(rows)[:-4])  # no checksum: the stream does not end
    for what, data in {"short": short, "long": long, "unfinished": unfinished}.items():
        assert is_canvas_png(data), what
        assert canvas_module._inflated_rows(data) is None, what
    assert np.array_equal(canvas_gray(png(zlib.compress(rows))), pillow_levels(png(zlib.compress(rows))))


def test_the_compiled_reader_and_numpy_agree_on_any_rows():
    compiled = compiled_reader()
    rng = np.random.default_rng(24)
    outcomes = set()
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 12, size=2))
        d = rng.integers(0, 256, size=(h, w), dtype=np.uint8) * (rng.random((h, w)) < 0.5)
        pixel = np.stack([d, d, d, np.full_like(d, 0)], axis=-1)
        pixel[0, :, 3] = 255
        if rng.random() < 0.5:  # break it somewhere
            y, x, c = int(rng.integers(h)), int(rng.integers(w)), int(rng.integers(4))
            pixel[y, x, c] ^= np.uint8(1 + rng.integers(255))
        filters = np.full((h, 1), 2, np.uint8)
        if rng.random() < 0.2:
            filters[int(rng.integers(h)), 0] = int(rng.integers(0, 5))
        rows = np.concatenate([filters, pixel.reshape(h, -1)], axis=1)
        expected = canvas_module._opaque_gray_numpy(rows)
        got = np.empty((h, w), np.uint8)
        assert compiled.opaque_gray(rows, w, h, got) == (expected is not None)
        if expected is not None:
            assert np.array_equal(got, expected)
        outcomes.add(expected is not None)
    assert outcomes == {True, False}
    with pytest.raises(ValueError, match="expected"):
        compiled.opaque_gray(np.zeros((2, 9), np.uint8), 2, 2, np.empty((3, 2), np.uint8))
    with pytest.raises(ValueError, match="expected"):
        compiled.opaque_gray(np.zeros((2, 9), np.uint8), 0, 2, np.empty((0,), np.uint8))


def test_the_column_sums_are_numpy_s_cumsum():
    rng = np.random.default_rng(25)
    for h in (1, 2, 3, 7, 28, 97, 280, 281, 320):
        rows = rng.integers(0, 256, size=(h, 13), dtype=np.uint8)
        out = np.empty_like(rows)
        canvas_module._sums_down(rows, out)
        assert np.array_equal(out, np.cumsum(rows, axis=0, dtype=np.uint8)), h
        out2 = np.empty((h, 7), np.uint8)
        canvas_module._sums_down(rows[:, ::2], out2)  # a strided view
        assert np.array_equal(out2, np.cumsum(rows[:, ::2], axis=0, dtype=np.uint8)), h


def test_a_malformed_or_unusual_chunk_list_is_never_read_the_short_way(monkeypatch):
    rng = np.random.default_rng(26)
    image = pad_drawing(rng, 48)
    good = up_filtered_png(image)
    assert canvas_module._opaque_gray(canvas_module._inflated_rows(good)) is not None

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    def with_header(byte: int, value: int) -> bytes:
        header = bytearray(good[16:29])
        header[byte - 16] = value
        return good[:8] + chunk(b"IHDR", bytes(header)) + good[33:]

    idat_at = 33
    idat_len = struct.unpack(">I", good[idat_at : idat_at + 4])[0]
    idat = good[idat_at : idat_at + 12 + idat_len]
    stream = idat[8:-4]
    split = chunk(b"IDAT", stream[:10]) + chunk(b"pHYs", bytes(9)) + chunk(b"IDAT", stream[10:])
    smaller = bytearray(good[16:29])
    smaller[7] = 24  # height 48 -> 24
    refused = {
        "a second header": good[:33] + chunk(b"IHDR", bytes(smaller)) + good[33:],
        "compression method 1": with_header(26, 1),
        "filter method 1": with_header(27, 1),
        "image data split by another chunk": good[:33] + split + good[idat_at + 12 + idat_len :],
    }
    for what, data in refused.items():
        assert not is_canvas_png(data), what
        assert canvas_gray(data) is None, what
    # Chunks Pillow reads (a colour profile, a background colour, a truncated pHYs): decoded by
    # Pillow, which names a damaged one; never read from the rows.
    profile = chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(b"not really a profile"))
    unusual = {
        "an empty pHYs": good[:33] + chunk(b"pHYs", b"") + good[33:],
        "a colour profile": good[:33] + profile + good[33:],
        "a background colour": good[:33] + chunk(b"bKGD", bytes(6)) + good[33:],
    }
    taken = []
    read = canvas_module._opaque_gray
    monkeypatch.setattr(canvas_module, "_opaque_gray", lambda rows: taken.append(1) or read(rows))
    for what, data in unusual.items():
        assert is_canvas_png(data), what
        try:
            expected = pillow_levels(data)
        except Exception:  # noqa: BLE001 - Pillow refuses it: so must the short way
            expected = None
        got = canvas_gray(data)
        assert (got is None) == (expected is None) and (got is None or np.array_equal(got, expected)), what
    simple = good[:33] + chunk(b"pHYs", bytes(9)) + chunk(b"sRGB", b"\0") + good[33:]
    assert np.array_equal(canvas_gray(simple), pillow_levels(simple))
    assert len(taken) == 1  # only the file with simple chunks of their exact lengths
