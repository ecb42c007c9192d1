"""`predict` on a user's files: directories, standard input, .npy edge cases, flags, --show."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from logreg_mnist import save_model
from logreg_mnist.cli import main
from logreg_mnist.errors import DataError
from logreg_mnist.predict import load_inputs, load_npy, predict_files

from .test_images import REFERENCE, as_image, drawing, png_claiming


@pytest.fixture
def model_file(tmp_path):
    """A model that likes bright pixels in the top half for class 3, else is unsure."""
    W = np.zeros((784, 10), np.float32)
    W[: 14 * 28, 3] = 0.05
    path = tmp_path / "model.safetensors"
    save_model(path, W, np.zeros(10, np.float32))
    return path


def test_a_directory_predicts_every_image_in_it_sorted(model_file, tmp_path, capsys):
    d = tmp_path / "digits"
    d.mkdir()
    as_image(REFERENCE).save(d / "b.png")
    as_image(REFERENCE).convert("RGB").save(d / "a.jpg", quality=90)
    np.save(d / "c.npy", np.zeros((2, 28, 28), np.uint8))
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"")
    assert main(["predict", str(model_file), str(d)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [str(d / "a.jpg"), str(d / "b.png"), f"{d / 'c.npy'}[0]",
                                                  f"{d / 'c.npy'}[1]"]
    assert "runner-up" in lines[0]
    assert lines[2].endswith("blank: no digit found")  # an all-black array


def test_empty_directory_is_refused(model_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(model_file), str(tmp_path / "empty")]) == 2
    assert "expected a directory holding images, .npy or IDX files, found none" in capsys.readouterr().err


def test_runner_up_and_flags_in_json(model_file, tmp_path, capsys):
    as_image(drawing("7", dark=True)).save(tmp_path / "seven.png")
    Image.new("L", (200, 100), 230).save(tmp_path / "blank.png")
    assert main(["predict", str(model_file), str(tmp_path / "seven.png"), str(tmp_path / "blank.png"), "--json"]) == 0
    import json

    seven, blank = json.loads(capsys.readouterr().out)
    assert seven["inverted"] and not seven["blank"]
    assert seven["label"] == 3 and seven["top"][0] == {"label": 3, "probability": seven["probability"]}
    assert seven["runner_up"] == seven["top"][1]["label"] and len(seven["top"]) == 3
    assert seven["low_confidence"] == (seven["probability"] < 0.5)
    assert blank["blank"] and blank["low_confidence"]  # all-zero input: every class 0.1
    assert blank["probability"] == pytest.approx(0.1)


def test_standard_input_is_read_as_one_image(model_file):
    png = io.BytesIO()
    as_image(REFERENCE).save(png, "PNG")
    run = subprocess.run([sys.executable, "-m", "logreg_mnist", "predict", str(model_file), "-"],
                         input=png.getvalue(), capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.decode().startswith("<stdin>  3  (probability ")
    bomb = subprocess.run([sys.executable, "-m", "logreg_mnist", "predict", str(model_file), "-"],
                          input=png_claiming(30_000, 30_000), capture_output=True, timeout=60)
    err = bomb.stderr.decode()
    assert bomb.returncode == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "<stdin>: expected an image of at most 50,000,000 pixels, found 900,000,000 pixels" in err


def test_stdin_only_once_and_not_empty():
    with pytest.raises(DataError, match="standard input can be read once"):
        load_inputs(["-", "-"], stdin=io.BytesIO(b""))
    with pytest.raises(DataError, match="<stdin>: expected an image on standard input, found nothing"):
        load_inputs(["-"], stdin=io.BytesIO(b""))


def test_hostile_image_on_the_command_line_is_one_line_exit_2(model_file, tmp_path, capsys):
    (tmp_path / "bomb.png").write_bytes(png_claiming(12_000, 12_000))
    assert main(["predict", str(model_file), str(tmp_path / "bomb.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bomb.png: expected an image of at most 50,000,000 pixels, found 12,000 x 12,000" in err


def test_raw_flag_skips_the_pipeline(model_file, tmp_path, capsys):
    a = np.zeros((28, 28), np.uint8)
    a[20:, :] = 255  # bright bottom rows: laid out, this would be moved; raw, it is not
    Image.fromarray(a).save(tmp_path / "raw.png")
    (seen,) = load_inputs([tmp_path / "raw.png"], raw=True)
    np.testing.assert_array_equal(seen.features.reshape(28, 28), a.astype(np.float32) / 256)
    (laid_out,) = load_inputs([tmp_path / "raw.png"])
    assert not np.array_equal(laid_out.features, seen.features)
    Image.new("L", (30, 30)).save(tmp_path / "big.png")
    assert main(["predict", str(model_file), str(tmp_path / "big.png"), "--raw"]) == 2
    assert "big.png: expected a 28x28 image with raw=True (--raw), found 30x30" in capsys.readouterr().err


# --- .npy edge cases (each a one-line error, nothing allocated from a lying header) ------------


def npy_header(shape, descr="|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_npy_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_header((10**9, 784)) + b"\0" * 784)
    with pytest.raises(DataError, match=r"huge.npy: header promises shape \(1000000000, 784\) of uint8 = "
                                        r"784,000,000,000 bytes of data, found 784"):
        load_npy(path)


def test_npz_renamed_npy_is_named(tmp_path):
    np.savez(tmp_path / "arrays.npz", x=np.zeros((2, 784), np.uint8))
    (tmp_path / "arrays.npz").rename(tmp_path / "arrays.npy")
    assert zipfile.is_zipfile(tmp_path / "arrays.npy")
    with pytest.raises(DataError, match=r"arrays.npy: expected a .npy array, found a zip archive \(an .npz file\?"):
        load_inputs([tmp_path / "arrays.npy"])


@pytest.mark.parametrize("shape", [(0, 784), (0, 28, 28)])
def test_npy_with_zero_rows_is_refused(tmp_path, shape):
    np.save(tmp_path / "none.npy", np.zeros(shape, np.uint8))
    with pytest.raises(DataError, match=r"none.npy: expected at least one image, found an array of shape .* \(no rows\)"):
        load_inputs([tmp_path / "none.npy"])


def test_unreadable_npy_is_a_one_line_error(tmp_path, monkeypatch, model_file, capsys):
    np.save(tmp_path / "locked.npy", np.zeros((1, 784), np.uint8))
    real_open = open

    def deny(file, *args, **kwargs):  # what a file without read permission gives (root ignores chmod)
        if str(file).endswith("locked.npy"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    assert main(["predict", str(model_file), str(tmp_path / "locked.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "locked.npy: cannot read the file: Permission denied" in err


def test_npy_truncated_empty_and_object_arrays(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(DataError, match="empty.npy: expected a .npy array .*found an empty file"):
        load_npy(tmp_path / "empty.npy")
    (tmp_path / "cut.npy").write_bytes(npy_header((2, 784))[:20])
    with pytest.raises(DataError, match="cut.npy: expected a .npy array, found a damaged header"):
        load_npy(tmp_path / "cut.npy")
    np.save(tmp_path / "objects.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="objects.npy: expected an array of numbers, found dtype object"):
        load_npy(tmp_path / "objects.npy")


def test_npy_is_memory_mapped_and_predicted(model_file, tmp_path):
    x = np.zeros((3, 784), np.uint8)
    x[1, :300] = 255
    np.save(tmp_path / "three.npy", x)
    assert isinstance(load_npy(tmp_path / "three.npy"), np.memmap)
    from logreg_mnist import load_model

    model, _ = load_model(model_file)
    results = predict_files(model, [tmp_path / "three.npy"])
    assert [r.blank for r in results] == [True, False, True] and results[1].label == 3


# --- --show ---------------------------------------------------------------------------------


def test_show_writes_each_input_beside_what_the_model_sees(model_file, tmp_path, capsys):
    as_image(drawing("7", sheet=(300, 200))).save(tmp_path / "seven.png")
    np.save(tmp_path / "two.npy", np.zeros((2, 784), np.uint8))
    out = tmp_path / "seen.png"
    assert main(["predict", str(model_file), str(tmp_path / "seven.png"), str(tmp_path / "two.npy"),
                 "--show", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.height > 2.5 * im.width / 7.2 * 2  # three rows of pictures
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 20  # a picture, not a blank page
    from logreg_mnist.plots import predictions_figure
    from logreg_mnist import load_model

    model, _ = load_model(model_file)
    inputs = load_inputs([tmp_path / "seven.png", tmp_path / "two.npy"])
    from logreg_mnist.predict import predictions

    fig = predictions_figure(inputs, predictions(model, inputs))
    axes = fig.axes
    assert len(axes) == 9
    assert axes[0].get_title() == "seven.png" and axes[1].get_title() == "what the model sees (inverted)"
    assert axes[2].get_title().startswith("predicted 3") or "low confidence" in axes[2].get_title()
    assert axes[5].get_title() == "blank: no digit found"
    # The middle picture is exactly the model's input.
    np.testing.assert_allclose(axes[1].get_images()[0].get_array(), inputs[0].features.reshape(28, 28) * 256 / 255)


@pytest.mark.parametrize("target, message", [
    ("missing-dir/seen.png", "expected an existing directory to write the picture in"),
    ("seen.jpg", "expected a .png file name for the picture, found .jpg"),
])
def test_show_target_is_checked_before_any_work(model_file, tmp_path, capsys, target, message):
    as_image(REFERENCE).save(tmp_path / "digit.png")
    assert main(["predict", str(model_file), str(tmp_path / "digit.png"), "--show", str(tmp_path / target)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
