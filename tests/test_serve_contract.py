"""The serve API as the page uses it: the run's title, scale, settings and doubt thresholds; exact
weights (b, base64 W); predict's explain flag and doubt cue; plain errors; the test mistakes."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from logreg_mnist import load_mnist
from logreg_mnist.config import SETTINGS, TrainConfig, settings_in_use
from logreg_mnist.persistence import load_model, save_model
from logreg_mnist.serve import RunView, create_app
from logreg_mnist.serve.doubt import MIN_CONFIDENCE, MIN_INK_BOX

from .conftest import write_dataset
from .serve_run import drawing, make_run, png_bytes


def recorded_as(run: Path, **config) -> Path:
    """``run`` with its recorded configuration replaced by ``config`` (in config.json and best.safetensors)."""
    model, meta = load_model(run / "best.safetensors")
    meta["config"] = config
    save_model(run / "best.safetensors", model.W, model.b, meta)
    return run


# ---- GET /api/run ----------------------------------------------------------------------------------

def test_run_has_a_title_the_pixel_scale_and_the_doubt_thresholds(client):
    run = client.get("/api/run").json()
    assert run["title"] == "hand-made - SGD, best at epoch 3"
    assert run["scale"] == 1 / 256
    assert run["doubt"] == {"min_confidence": MIN_CONFIDENCE, "min_ink_box": MIN_INK_BOX}


def test_sgd_settings_are_those_of_sgd_with_the_epochs_actually_run(tmp_path):
    full = TrainConfig(snapshot_every=1).to_dict()
    run = recorded_as(make_run(tmp_path / "run"), **full)
    settings = TestClient(create_app(RunView(run))).get("/api/run").json()["settings"]
    names = [s["name"] for s in settings]
    assert {"learning_rate", "batch_size", "l1", "l2", "patience", "improvement_threshold"} <= set(names)
    assert not {"max_iter", "dry_run", "snapshot_every", "n_epochs", "optimizer"} & set(names)
    run_for = next(s for s in settings if s["name"] == "epochs run")
    assert run_for["value"] == 3 and "at most 1000" in run_for["help"]
    lr = next(s for s in settings if s["name"] == "learning_rate")
    assert lr == {"name": "learning_rate", "value": 0.13, "help": SETTINGS["learning_rate"].help}


def test_full_batch_settings_leave_out_sgds_and_show_the_iterations_run(tmp_path):
    run = recorded_as(make_run(tmp_path / "run"), **TrainConfig(optimizer="lbfgs").to_dict())
    answer = TestClient(create_app(RunView(run))).get("/api/run").json()
    names = [s["name"] for s in answer["settings"]]
    assert "iterations run" in names and "l2" in names
    assert not {"learning_rate", "patience", "batch_size", "max_iter", "dtype", "n_epochs"} & set(names)
    assert answer["title"] == "hand-made - L-BFGS, best at iteration 3"


def test_settings_in_use_can_leave_out_what_does_not_shape_the_model():
    every = [s.name for s in settings_in_use("sgd")]
    shaping = [s.name for s in settings_in_use("sgd", shaping_only=True)]
    assert "snapshot_every" in every and "dry_run" in every
    assert set(every) - set(shaping) == {"snapshot_every", "dry_run"}
    assert list(TrainConfig().in_use()) == every  # a run's header is unchanged
    assert "batch_size" not in [s.name for s in settings_in_use("cg")]
    assert "batch_size" in [s.name for s in settings_in_use("cg", drop_last=True)]


# ---- exact weights ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path, name", [("/api/weights", "best.safetensors"),
                                        ("/api/snapshots/2", "snapshots/epoch-0002.safetensors")])
def test_weights_carry_b_and_the_exact_float32_W(client, run_dir, path, name):
    answer = client.get(path).json()
    model, _ = load_model(run_dir / name)
    W = np.frombuffer(base64.b64decode(answer["W"]), dtype="<f4").reshape(model.n_in, model.n_out)
    assert np.array_equal(W, model.W.astype(np.float32))
    assert np.array_equal(np.asarray(answer["b"], np.float32), model.b) and len(answer["b"]) == model.n_out
    assert len(answer["maps"]) == model.n_out  # the rounded maps stay, for drawing


# ---- predict: explain, doubt -----------------------------------------------------------------------

def test_explain_0_leaves_the_evidence_out_and_changes_nothing_else(client):
    body = png_bytes(drawing("0"))
    full = client.post("/api/predict", content=body).json()
    small = client.post("/api/predict?explain=0", content=body).json()
    assert "evidence" in full and "evidence" not in small
    assert small == {k: v for k, v in full.items() if k != "evidence"}
    assert set(small) == {"label", "name", "probabilities", "prepared", "blank", "inverted", "doubt"}
    r = client.post("/api/predict?explain=yes", content=body)
    assert r.status_code == 400 and r.json() == {"error": "explain: expected 0 or 1, found 'yes'"}


def test_a_clear_drawing_has_no_doubt(client):
    answer = client.post("/api/predict?explain=0", content=png_bytes(drawing("1"))).json()
    assert answer["label"] == 1 and max(answer["probabilities"]) >= MIN_CONFIDENCE
    assert answer["doubt"] is None


def test_a_blank_drawing_is_doubted_as_blank(client):
    answer = client.post("/api/predict", content=png_bytes(Image.new("L", (280, 280), "white"))).json()
    assert answer["blank"] and answer["doubt"]["kind"] == "blank" and "No digit" in answer["doubt"]["message"]


def test_a_tiny_drawing_is_doubted_as_small(client):
    im = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(140, 120), (140, 160)], fill=(0, 0, 0, 255), width=6)  # 40 of 280: 4 of 28
    answer = client.post("/api/predict?explain=0", content=png_bytes(im)).json()
    assert not answer["blank"]
    assert answer["doubt"] == {
        "kind": "small",
        "message": "Draw larger: the digit is only 4 pixels tall out of 28 (MNIST's digits are about 20).",
    }


def test_a_tiny_digit_in_a_large_photo_is_doubted_as_small(client):
    im = Image.new("RGB", (1400, 1000), "white")
    ImageDraw.Draw(im).line([(700, 450), (700, 550)], fill="black", width=12)  # 100 of 1400: 2 of 28
    answer = client.post("/api/predict?explain=0", content=png_bytes(im, "JPEG")).json()
    assert answer["doubt"]["kind"] == "small" and "only 2 pixels tall" in answer["doubt"]["message"]


def test_a_low_confidence_is_doubted_as_unsure(tmp_path):
    run = make_run(tmp_path / "run")
    model, meta = load_model(run / "best.safetensors")
    save_model(run / "best.safetensors", np.zeros_like(model.W), model.b, meta)  # every class 10 %
    answer = TestClient(create_app(RunView(run))).post("/api/predict", content=png_bytes(drawing("0"))).json()
    assert answer["doubt"]["kind"] == "unsure" and "10%" in answer["doubt"]["message"]


def test_a_body_that_is_not_an_image_is_told_so_plainly(client):
    r = client.post("/api/predict", content=b"hello, this is text")
    assert r.status_code == 422
    assert r.json() == {"error": "That file is not an image: expected PNG, JPEG, GIF, BMP, TIFF, WEBP or PPM."}


# ---- GET /api/mistakes -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_run(tmp_path_factory) -> Path:
    """A run recorded as trained on a tiny IDX dataset (40 test images, class c a bright band of rows),
    whose model knows the bands of classes 0-4 only: right on those, wrong on the others."""
    base = tmp_path_factory.mktemp("mistakes")
    write_dataset(base / "tiny")
    data = load_mnist(base / "tiny", download=False, valid_size=20, progress=False)
    run = make_run(base / "run")
    W = np.zeros((784, 10), np.float32)
    for c in range(5):
        W[(c * 28 // 10) * 28 : (c * 28 // 10 + 2) * 28, c] = 1.0
    _, meta = load_model(run / "best.safetensors")
    save_model(run / "best.safetensors", W, np.zeros(10, np.float32), meta)
    record = {"config": {"optimizer": "sgd"}, "dataset": data.identity, "data_source": str(base / "tiny"),
              "valid_size": 20}
    (run / "config.json").write_text(json.dumps(record))
    return run


def test_mistakes_are_the_test_digits_the_model_gets_wrong(data_run):
    view = RunView(data_run)
    test = load_mnist(data_run.parent / "tiny", download=False, valid_size=20, progress=False).test
    predicted = np.argmax(view.model.p_y_given_x(test.images), axis=1)
    wrong = np.nonzero(predicted != test.labels)[0]
    assert 0 < len(wrong) < len(test)
    client = TestClient(create_app(view))
    answer = client.get("/api/mistakes?offset=1&limit=3").json()
    assert answer["total"] == len(wrong) and answer["offset"] == 1
    assert [item["index"] for item in answer["items"]] == wrong[1:4].tolist()
    item = answer["items"][0]
    assert item["label"] == test.labels[wrong[1]] and item["predicted"] == predicted[wrong[1]]
    assert np.array_equal(np.asarray(item["pixels"]), test.pixels[wrong[1]].reshape(28, 28))
    assert np.allclose(item["probabilities"], view.model.p_y_given_x(test.images[wrong[1]][None])[0], atol=1e-6)
    assert len(client.get("/api/mistakes").json()["items"]) == min(24, len(wrong))
    assert client.get(f"/api/mistakes?offset={len(wrong)}").json()["items"] == []


@pytest.mark.parametrize("query", ["limit=101", "offset=-1", "limit=x"])
def test_mistakes_refuse_a_bad_page(data_run, query):
    r = TestClient(create_app(RunView(data_run))).get(f"/api/mistakes?{query}")
    assert r.status_code == 400 and "expected a whole number" in r.json()["error"]


def test_mistakes_without_test_data_are_404_with_the_reason(client):
    r = client.get("/api/mistakes")
    assert r.status_code == 404 and "the run's test digits cannot be loaded" in r.json()["error"]
    assert "hand-made" in r.json()["error"]
