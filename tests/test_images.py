"""The image pipeline (images.py) on synthetic pictures, every format, and every limit."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from logreg_mnist import images
from logreg_mnist.errors import DataError
from logreg_mnist.images import MAX_PIXELS, Prepared, open_image, prepare

# Digits as strokes in a unit box (x, y), y downwards; each inner list is one pen stroke.
STROKES = {
    "1": [[(0.5, 0.0), (0.5, 1.0)]],
    "7": [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)]],
    # A 5 whose top bar is not joined to the body: a stroke that must be kept.
    "5": [[(0.3, 0.0), (1.0, 0.0)],
          [(0.22, 0.12), (0.15, 0.45), (0.6, 0.4), (0.9, 0.65), (0.75, 0.95), (0.4, 1.0), (0.05, 0.85)]],
    "0": [[(0.5 + 0.5 * np.cos(t), 0.5 + 0.5 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]],
}


def drawing(digit="7", *, sheet=(480, 400), box=200, at=(0.5, 0.5), width=None, dark=True, paper=220.0,
            ink=40.0, aspect=0.6) -> np.ndarray:
    """A float (h, w) picture of ``digit``'s strokes: box pixels tall, centred at ``at`` (fractions)."""
    w_sheet, h_sheet = sheet
    img = Image.new("L", sheet, 0)
    pen = ImageDraw.Draw(img)
    bw = box * aspect
    x0, y0 = at[0] * w_sheet - bw / 2, at[1] * h_sheet - box / 2
    width = width or max(2, int(box * 0.12))
    for stroke in STROKES[digit]:
        pen.line([(x0 + x * bw, y0 + y * box) for x, y in stroke], fill=255, width=width, joint="curve")
    alpha = np.asarray(img, dtype=np.float64) / 255
    fg, bg = (ink, paper) if dark else (paper, ink)
    return bg * (1 - alpha) + fg * alpha


def as_image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def similarity(a: Prepared, b: Prepared) -> float:
    """Correlation of two prepared digits' pixels."""
    return float(np.corrcoef(a.pixels.ravel().astype(float), b.pixels.ravel().astype(float))[0, 1])


def bbox(pixels: np.ndarray, level: int = 1) -> tuple[int, int]:
    rows, cols = np.nonzero(pixels.max(axis=1) >= level)[0], np.nonzero(pixels.max(axis=0) >= level)[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


# --- the pipeline -------------------------------------------------------------------------


def test_a_drawing_is_laid_out_as_mnist():
    p = prepare(as_image(drawing("7")))
    assert p.pixels.dtype == np.uint8 and p.pixels.shape == (28, 28)
    assert not p.blank and p.inverted
    assert max(bbox(p.pixels)) == 20  # longer side 20 pixels, as MNIST's digits
    cy, cx = ndimage.center_of_mass(p.pixels.astype(float))
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5  # centred by mass, whole-pixel shift
    assert p.pixels.max() == 255 and np.median(p.pixels) == 0  # stretched; clean background
    # The model's input is pixels / 256, float32, as MNIST's.
    np.testing.assert_array_equal(p.features(), p.pixels.reshape(1, 784).astype(np.float32) / 256)


def test_polarity_is_read_from_paper_and_ink():
    dark = prepare(as_image(drawing("7", dark=True)))
    light = prepare(as_image(drawing("7", dark=False)))
    assert dark.inverted and not light.inverted
    assert similarity(dark, light) > 0.97


def test_uneven_light_and_a_shadow_are_removed():
    clean = prepare(as_image(drawing("5")))
    a = drawing("5")
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    light = 1.1 - 0.6 * xx - 0.2 * yy  # a strong gradient: the far corner gets 40 % of the light
    light = light * np.where(xx + 0.3 * yy > 0.7, 0.7, 1.0)  # and a hard shadow's edge across the sheet
    p = prepare(as_image(a * light))
    assert similarity(p, clean) > 0.93
    # Nothing of the gradient or the shadow's edge is left around the digit.
    assert max(bbox(p.pixels, 64)) == 20 and (p.pixels[:, :3] < 32).all() and (p.pixels[:, -3:] < 32).all()


def test_noise_and_jpeg_are_ignored():
    clean = prepare(as_image(drawing("7")))
    rng = np.random.default_rng(0)
    noisy = drawing("7") + rng.normal(0, 20, size=(400, 480))
    buf = io.BytesIO()
    as_image(noisy).save(buf, "JPEG", quality=40)
    p = prepare(open_image(buf.getvalue()))
    assert similarity(p, clean) > 0.95


def test_position_on_the_sheet_does_not_matter():
    centred = prepare(as_image(drawing("7", sheet=(900, 700), at=(0.5, 0.5))))
    corner = prepare(as_image(drawing("7", sheet=(900, 700), at=(0.15, 0.8))))
    assert similarity(centred, corner) > 0.98


def test_specks_far_from_the_digit_are_dropped_and_a_detached_stroke_kept():
    a = drawing("5", sheet=(600, 500), at=(0.4, 0.5))
    a[40:52, 540:552] = 40  # a speck of dirt in a corner
    p = prepare(as_image(a))
    clean = prepare(as_image(drawing("5", sheet=(600, 500), at=(0.4, 0.5))))
    assert similarity(p, clean) > 0.99
    # The 5's top bar (its own connected region) is still there: ink in the top rows.
    top_row = np.nonzero(p.pixels.max(axis=1) > 128)[0][0]
    assert p.pixels[top_row : top_row + 3, 14:].max() > 200


@pytest.mark.parametrize("width", [2, 8, 60])
def test_thin_and_thick_strokes_come_out_mnist_like(width):
    p = prepare(as_image(drawing("0", box=300, width=width)))
    mask = p.pixels > 127
    stroke = 2 * ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][mask].mean()
    assert 1.4 <= stroke <= 4.5  # MNIST's strokes: 2.0-2.7 pixels (10th-90th percentile)
    assert max(bbox(p.pixels)) == 20


def test_aspect_ratio_is_kept_for_a_1_and_a_7():
    one = prepare(as_image(drawing("1", box=300, aspect=0.0, width=30)))
    h, w = bbox(one.pixels, 64)
    assert h >= 19 and w <= 5  # a 1 stays a thin vertical stroke, never stretched to a blob
    seven = prepare(as_image(drawing("7", box=300, aspect=0.6)))
    h, w = bbox(seven.pixels, 64)
    assert h >= 19 and 10 <= w <= 16


@pytest.mark.parametrize("kind", ["white", "noise", "gradient", "black"])
def test_an_empty_picture_is_blank(kind):
    rng = np.random.default_rng(1)
    a = np.full((300, 400), 230.0 if kind != "black" else 0.0)
    if kind == "noise":
        a += rng.normal(0, 6, size=a.shape)
    if kind == "gradient":
        a *= np.linspace(0.5, 1.0, 400)[None, :]
    p = prepare(as_image(a))
    assert p.blank and not p.pixels.any()


def test_a_speck_on_a_sheet_is_blank_not_a_digit():
    a = np.full((600, 800), 220.0)
    a[300:306, 400:405] = 40
    p = prepare(as_image(a))
    assert p.blank and p.inverted and not p.pixels.any()


def test_mnist_like_28x28_passes_through_and_a_bold_one_is_laid_out():
    mnist_like = np.zeros((28, 28), np.uint8)
    mnist_like[5:23, 12:16] = 255  # a 1 within the 20x20 box, on black
    p = prepare(Image.fromarray(mnist_like))
    np.testing.assert_array_equal(p.pixels, mnist_like)
    # A bold 28x28 digit that fills its frame, dark on light: cropped, scaled to 20, centred.
    bold = as_image(drawing("7", sheet=(28, 28), box=27, width=5))
    p = prepare(bold)
    assert p.inverted and max(bbox(p.pixels, 64)) in (19, 20)
    assert p.pixels[:2].max() == 0 and p.pixels[-2:].max() == 0


def test_raw_takes_the_pixels_as_they_are():
    a = np.arange(784, dtype=np.uint16).reshape(28, 28) % 256
    p = prepare(Image.fromarray(a.astype(np.uint8)), raw=True)
    np.testing.assert_array_equal(p.pixels, a)
    assert not p.inverted
    with pytest.raises(DataError, match="expected a 28x28 image with raw=True .*found 100x50"):
        prepare(Image.new("L", (100, 50)), raw=True)


def test_the_image_modules_import_scipy_and_matplotlib_only_inside_functions():
    import ast

    from pathlib import Path

    modules = sorted(Path(images.__file__).parent.glob("*.py"))
    assert len(modules) >= 3
    tree = ast.Module(body=[n for m in modules for n in ast.parse(m.read_text()).body], type_ignores=[])
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.split(".")[0] in ("scipy", "matplotlib")]


# --- formats ------------------------------------------------------------------------------


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


REFERENCE = drawing("7", sheet=(240, 200), box=120)


@pytest.mark.parametrize("fmt, mode, kw", [
    ("PNG", "L", {}), ("PNG", "RGB", {}), ("PNG", "P", {}), ("JPEG", "L", {"quality": 90}),
    ("JPEG", "RGB", {"quality": 90}), ("JPEG", "CMYK", {"quality": 90}), ("GIF", "P", {}), ("BMP", "RGB", {}),
    ("TIFF", "L", {}), ("TIFF", "RGB", {"compression": "tiff_lzw"}), ("WEBP", "RGB", {"quality": 90}),
    ("PPM", "L", {}),
])
def test_every_common_format(fmt, mode, kw):
    reference = prepare(as_image(REFERENCE))
    img = as_image(REFERENCE).convert(mode)
    p = prepare(open_image(encoded(img, fmt, **kw), name=f"digit.{fmt.lower()}"))
    assert similarity(p, reference) > 0.97, (fmt, mode)


def test_gif_first_frame_and_transparent_png():
    reference = prepare(as_image(REFERENCE))
    first = as_image(REFERENCE).convert("P")
    second = Image.new("P", first.size, 0)
    gif = encoded(first, "GIF", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(gif)).n_frames == 2
    assert similarity(prepare(open_image(gif)), reference) > 0.97
    # Ink on a transparent sheet: the transparent part is white paper.
    alpha = np.clip((220 - REFERENCE) / 180 * 255, 0, 255).astype(np.uint8)
    rgba = np.zeros(REFERENCE.shape + (4,), np.uint8)
    rgba[..., 3] = alpha
    p = prepare(open_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert p.inverted and similarity(p, reference) > 0.97


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_images_are_scaled_by_their_depth_not_clipped(fmt):
    eight = REFERENCE.astype(np.uint8)
    sixteen = eight.astype(np.uint16) * 257  # the same picture at 16 bits
    img = open_image(encoded(Image.fromarray(sixteen), fmt))
    assert img.mode.startswith("I;16")
    np.testing.assert_allclose(images.to_gray(img), eight, atol=1e-3)
    np.testing.assert_array_equal(prepare(img).pixels, prepare(Image.fromarray(eight)).pixels)
    # A 28x28 MNIST-like digit at 16 bits keeps its gray levels (not clipped to 0 / 255).
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 10:18] = np.arange(8, dtype=np.uint8) * 30 + 30
    p = prepare(open_image(encoded(Image.fromarray(digit.astype(np.uint16) * 257), fmt)))
    np.testing.assert_array_equal(p.pixels, digit)


# --- limits and hostile files ---------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, extra: bytes = b"") -> bytes:
    """A few hundred bytes of PNG whose header claims width x height 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(12_000, 12_000), (30_000, 30_000), (7_072, 7_072)])
def test_too_many_pixels_are_refused_from_the_header(width, height):
    data = png_claiming(width, height)
    assert len(data) < 1000 and width * height > MAX_PIXELS
    with pytest.raises(DataError) as e:
        open_image(data, name="bomb.png")
    message = str(e.value)
    assert message.startswith("bomb.png: expected an image of at most 50,000,000 pixels, found ")
    assert f"{width * height:,} pixels" in message and "\n" not in message


def test_a_large_jpeg_header_is_refused_too(tmp_path):
    # JPEG: width and height in the SOF0 segment; nothing after it needs to be valid.
    sof = struct.pack(">BHHB", 8, 10_000, 10_000, 1) + b"\x01\x11\x00"
    data = b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"
    path = tmp_path / "huge.jpg"
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"huge.jpg: expected an image of at most 50,000,000 pixels, found 10,000 x "):
        open_image(path)


def test_pillow_bomb_error_becomes_a_one_line_error(monkeypatch):
    # Pillow refuses twice its MAX_IMAGE_PIXELS inside Image.open; that must never escape.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match=r"x.png: expected an image of at most .* found 10,000 pixels \(a decompression bomb\)"):
        open_image(png_claiming(100, 100), name="x.png")


@pytest.mark.parametrize("chunk", [b"zTXt", b"iCCP"])
def test_oversized_png_text_and_icc_chunks_are_refused(chunk):
    payload = zlib.compress(b"\0" * (8 * 2**20))  # 8 MiB once decompressed, 8 KB in the file
    data = png_claiming(4, 4, png_chunk(chunk, b"name\0\0" + payload))
    with pytest.raises(DataError) as e:
        open_image(data, name="chunky.png")
    assert str(e.value).startswith("chunky.png: expected PNG text and ICC profile chunks of at most 1,048,576 "
                                   "bytes each once decompressed, found a larger one")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("data, found", [
    (b"hello, this is text", "found data starting with 0x68656c6c6f2c2074"),
    (b"", "found data starting with 0x"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "expected"),  # a truncated PNG
])
def test_not_an_image_is_refused(data, found):
    with pytest.raises(DataError, match=f"in.bin: .*{found}"):
        open_image(data, name="in.bin")


def test_truncated_image_data_is_refused():
    data = encoded(as_image(REFERENCE), "PNG")
    with pytest.raises(DataError, match=r"^cut.png: expected a readable image, found a damaged file"):
        open_image(data[: len(data) // 2], name="cut.png")


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(DataError, match="nope.png: no such file"):
        open_image(tmp_path / "nope.png")
    with pytest.raises(DataError, match="expected an image file, found a directory"):
        open_image(tmp_path)


def test_in_memory_data_is_bounded(monkeypatch):
    monkeypatch.setattr(images.decode, "MAX_BYTES", 100)
    with pytest.raises(DataError, match=r"upload: expected an image file of at most 100 bytes, found 1,000"):
        open_image(b"\0" * 1000, name="upload")


def test_untrusted_names_are_quoted_and_cut():
    with pytest.raises(DataError) as e:
        open_image(b"not an image", name="\x1b[31mred\x1b[0m" + "x" * 10_000)
    message = str(e.value)
    assert "\x1b" not in message and message.startswith("'\\x1b[31mred") and len(message) < 400


def test_exif_orientation_is_applied():
    # A phone stores a "1" photographed sideways as a horizontal stroke plus an EXIF tag saying "rotate".
    lying = as_image(drawing("1", sheet=(400, 480), box=300, aspect=0.0, width=30)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    data = encoded(lying, "JPEG", quality=90, exif=exif.tobytes())
    p = prepare(open_image(data))
    h, w = bbox(p.pixels, 64)
    assert h >= 19 and w <= 6


def test_the_table_around_the_sheet_is_not_the_digit():
    clean = prepare(as_image(drawing("7")))
    sheet = drawing("7")  # 400 x 480
    photo = np.full((460, 540), 50.0)  # a dark table along two edges, a fifth of the picture
    photo[60:, 60:] = sheet
    p = prepare(as_image(photo))
    assert p.inverted and similarity(p, clean) > 0.95
