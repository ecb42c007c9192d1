"""Every picture rendered from a tiny run made here; the tile function by hand."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from logreg_mnist import TrainConfig, train
from logreg_mnist.cli import main
from logreg_mnist.persistence import load_model
from logreg_mnist.plots import (
    confusion_counts,
    digits_figure,
    learning_curves_figure,
    save_figure,
    tile_raster_images,
    weights_figure,
)
from logreg_mnist.plots_from_files import plot_run


def test_tile_raster_images_by_hand():
    X = np.array([
        [0.0, 2.0, 4.0, 6.0],  # scaled to 0, 1/3, 2/3, 1
        [5.0, 5.0, 5.0, 5.0],  # constant: all zero
        [1.0, 0.0, 0.0, 0.0],
    ])
    out = tile_raster_images(X, img_shape=(2, 2), tile_shape=(2, 2), tile_spacing=(1, 2))
    assert out.dtype == np.uint8 and out.shape == (2 * 2 + 1, 2 * 2 + 2)
    expected = np.array([
        [0, 85, 0, 0, 0, 0],
        [170, 255, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],  # the spacing row
        [255, 0, 0, 0, 0, 0],  # tile 2 starts the second row (row-major order)
        [0, 0, 0, 0, 0, 0],
    ])
    np.testing.assert_array_equal(out, expected)
    unscaled = tile_raster_images(np.array([[0.5, 2.0]]), (1, 2), (1, 1), (0, 0), scale_rows_to_unit_interval=False)
    assert unscaled.tolist() == [[128, 255]]
    with pytest.raises(ValueError, match=r"expected X of shape \(n, 4\)"):
        tile_raster_images(np.zeros((2, 5)), (2, 2), (1, 2))


def test_confusion_counts():
    counts = confusion_counts(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def _check_png(path, min_size=(300, 200)):
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_size[0] and im.height >= min_size[1]
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 5, f"{path.name} looks blank"
    return im.size


@pytest.fixture
def tiny_run(tiny_data, tmp_path):
    train(tiny_data, TrainConfig(batch_size=20, n_epochs=6, snapshot_every=2), tmp_path / "run")
    return tmp_path / "run"


def test_plot_run_writes_every_picture(tiny_run, tiny_data):
    written = plot_run(tiny_run, tiny_data)
    names = sorted(p.name for p in written)
    assert names == ["confusion.png", "confusion_normalized.png", "learning_curves.png", "mistakes.png",
                     "snapshots.png", "weights.png", "weights_diverging.png"]
    sizes = {p.name: _check_png(p) for p in written}
    assert sizes["weights.png"] == (1020, 500)
    assert sizes["learning_curves.png"] == (1100, 420)
    assert sizes["confusion.png"] == (750, 650)
    assert all(p.parent == tiny_run / "plots" for p in written)
    assert not [p for p in (tiny_run / "plots").iterdir() if p.suffix != ".png"], "no temporary files left"


def test_plot_a_model_file_and_the_cli(tiny_run, tiny_dir, tmp_path, capsys, monkeypatch):
    # A model file alone: weights and test-set pictures, no history.
    monkeypatch.setenv("LOGREG_MNIST_DATA_DIR", str(tiny_dir))
    from logreg_mnist import load_mnist

    data = load_mnist(tiny_dir, valid_size=20, progress=False)
    written = plot_run(tiny_run / "best.safetensors", data, tmp_path / "pics")
    assert sorted(p.name for p in written) == ["confusion.png", "confusion_normalized.png", "mistakes.png",
                                               "weights.png", "weights_diverging.png"]
    # The command on the same model file: the data the model records, the same pictures, their paths printed.
    capsys.readouterr()
    assert main(["plot", str(tiny_run / "best.safetensors"), "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "cli" / p.name) for p in written]
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in written)
    for p in written:
        assert _check_png(tmp_path / "cli" / p.name) == _check_png(p)


def test_cli_plot_and_digits(cli_data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--batch-size", "100", "--n-epochs", "2", "--no-progress", "--data-dir",
                 str(cli_data_dir), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["plot", str(run), "--data-dir", str(cli_data_dir), "--out", str(tmp_path / "p")]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 6 and all(p.endswith(".png") for p in printed)
    for p in printed:
        _check_png(tmp_path / "p" / p.rsplit("/", 1)[-1])
    assert main(["digits", "--data-dir", str(cli_data_dir), "-n", "12", "--digit", "3",
                 "--out", str(tmp_path / "threes.png")]) == 0
    _check_png(tmp_path / "threes.png", min_size=(300, 100))
    assert main(["digits", "--data-dir", str(cli_data_dir), "--digit", "12", "--out", str(tmp_path / "x.png")]) == 2
    assert "--digit: expected a class in 0-9, found 12" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "nowhere"), "--data-dir", str(cli_data_dir)]) == 2


def test_library_functions_return_figures(tiny_run, tiny_data):
    model, _ = load_model(tiny_run)
    fig = weights_figure(model, diverging=True)
    assert len(fig.axes) == 11  # ten digits and the colour bar
    assert [ax.get_title() for ax in fig.axes[:10]] == [f"digit {k}" for k in range(10)]
    with pytest.raises(ValueError, match="history is empty"):
        learning_curves_figure([])
    fig = digits_figure(tiny_data.test.images[:7], tiny_data.test.labels[:7])
    assert sum(ax.get_visible() for ax in fig.axes) == 7
    assert save_figure(fig, tiny_run / "d.png").is_file()
