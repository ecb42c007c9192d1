"""The page in a real browser: Debian's chromium, driven through chromedriver by Selenium,
against `logreg-mnist serve` running as its own process on 127.0.0.1.

One browser and one server serve every test of the module. Skipped when chromium,
chromedriver, Selenium or axe-core (``axe.min.js``: $LOGREG_MNIST_AXE_JS, else
``node_modules/axe-core`` of the repository, from
``npm install --no-save --no-package-lock axe-core@4.14.1``) is
missing, unless LOGREG_MNIST_REQUIRE_BROWSER is set (as CI does): then it fails.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from logreg_mnist.images.drawing import gray_levels
from logreg_mnist.serve import canvas

from .page_harness import serving, start_chromium
from .serve_run import drawing, make_run, png_bytes

CHROMIUM = os.environ.get("LOGREG_MNIST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LOGREG_MNIST_CHROMEDRIVER", "/usr/bin/chromedriver")
AXE_JS = Path(os.environ.get("LOGREG_MNIST_AXE_JS") or Path(__file__).parents[1] / "node_modules/axe-core/axe.min.js")
BAR = [(0.5, 0.15 + 0.07 * i) for i in range(11)]
RING = [(0.5 + 0.25 * math.sin(t / 16 * 2 * math.pi), 0.5 - 0.36 * math.cos(t / 16 * 2 * math.pi)) for t in range(17)]


def _need(what: str) -> None:
    message = f"the browser test needs {what}"
    if os.environ.get("LOGREG_MNIST_REQUIRE_BROWSER"):
        pytest.fail(message + "; LOGREG_MNIST_REQUIRE_BROWSER is set")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        _need(f"{', '.join(missing)} (Debian: apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="logreg-mnist-chromium-")
    driver = start_chromium(CHROMIUM, CHROMEDRIVER, profile, window=(1200, 1400), script_timeout=20, page_load_timeout=30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`logreg-mnist serve` on a hand-made run; yields (URL, run directory)."""
    run = make_run(tmp_path_factory.mktemp("browser") / "run")
    with serving(run) as url:
        yield url, run


@pytest.fixture
def page(browser, served):
    """The page, loaded afresh, on a desktop-sized window."""
    browser.get(served[0])
    _wait(browser, "return document.body.dataset.ready === '1'")
    return browser


def _wait(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(condition))


def _draw(driver, points, kind: str = "mouse") -> None:
    """Press, move through ``points`` (fractions of the pad's size) and release: a mouse, pen or finger."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    pad = driver.find_element("id", "pad")
    w, h = pad.size["width"], pad.size["height"]
    at = [(round((x - 0.5) * w), round((y - 0.5) * h)) for x, y in points]  # offsets from the centre
    kinds = {"mouse": interaction.POINTER_MOUSE, "pen": interaction.POINTER_PEN, "touch": interaction.POINTER_TOUCH}
    pointer = PointerInput(kinds[kind], kind)
    actions = ActionBuilder(driver, mouse=pointer, duration=20)
    actions.pointer_action.move_to(pad, *at[0]).pointer_down()
    for x, y in at[1:]:
        actions.pointer_action.move_to(pad, x, y)
    actions.pointer_action.pointer_up()
    actions.perform()


def _settled(driver) -> None:
    """Wait until the page shows the answer for the drawing as it is now (the final one)."""
    _wait(driver, "const d = document.body.dataset; return d.drawn && d.shown === d.drawn"
                  " && window.logregPage.release === null")


def _canvas_png(driver) -> bytes:
    url = driver.execute_script("return document.getElementById('pad').toDataURL('image/png')")
    return base64.b64decode(url.split(",")[1])


def _shown(driver) -> dict:
    """What the page computed for what it shows: the prepared input, probabilities, scores."""
    return driver.execute_script(
        "const S = window.logregPage; return {pixels: Array.from(S.input.pixels), p: S.shownProbabilities,"
        " scores: Array.from(document.querySelectorAll('#scores .s')).map((e) => Number(e.dataset.s)),"
        " model: document.getElementById('answer-model').textContent};")


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def test_the_answer_shown_is_the_servers_for_the_final_drawing(page, served):
    url, _ = served
    _draw(page, BAR, "mouse")
    _settled(page)
    assert _text(page, "label") == "1"
    # The page shows what the API answers for the canvas as it is after the release: the same
    # prepared input, and probabilities computed by the page from the weights equal the server's.
    png = _canvas_png(page)
    answer = httpx.post(url + "api/predict?explain=0", content=png).json()
    shown = _shown(page)
    # The pad's PNG, as this Chromium encodes it, takes the server's short way (rows filtered "Up",
    # opaque gray pixels), and that reads Pillow's levels.
    rows = canvas._inflated_rows(png)
    assert rows is not None and set(rows[:, 0].tolist()) <= {0, 2}
    fast = canvas._opaque_gray(rows)
    assert fast is not None and np.array_equal(fast, gray_levels(Image.open(io.BytesIO(png))))
    assert shown["pixels"] == [v for row in answer["prepared"] for v in row]
    assert np.abs(np.array(shown["p"]) - answer["probabilities"]).max() < 1e-4
    assert f"{100 * answer['probabilities'][1]:.1f}" in _text(page, "answer")
    assert shown["model"] == "best model"
    # All ten probabilities and scores are shown; the top one is marked.
    assert len(page.find_elements("css selector", "#scores .p")) == 10
    assert page.find_element("css selector", "#scores button.top").text == "1"
    # The answer is announced through a polite live region.
    live = page.find_element("id", "announce")
    assert live.get_attribute("aria-live") == "polite"
    assert page.execute_script("return document.getElementById('announce').textContent").startswith(
        "The best model says 1")
    # From the release to the answer shown: no wait for an idle-time encoding (toBlob took ~1 s); the
    # page's figure, generous here, is measured for real by benchmarks/bench_page.py.
    latencies = page.execute_script("return window.logregPage.perf.latencies")
    assert len(latencies) == 1 and latencies[0] < 750

    # A second stroke (a ring over the bar), then Undo: back to the bar alone, answered again.
    before = _canvas_png(page)
    _draw(page, RING, "touch")
    _settled(page)
    assert _shown(page)["pixels"] != shown["pixels"]
    page.find_element("id", "undo").click()
    _settled(page)
    assert _canvas_png(page) == before
    assert _shown(page)["pixels"] == shown["pixels"] and _text(page, "label") == "1"


def test_a_stale_answer_is_dropped_and_the_latest_drawing_wins(page):
    # The ring file's answer is held back until after the bar is drawn and answered: it must not show.
    ring = base64.b64encode(png_bytes(drawing("0"))).decode()
    page.execute_script("""
        const real = window.fetch; window.heldBack = 'no';
        window.fetch = async (url, init) => {
            const r = await real(url, init);
            if (init && init.body instanceof File) {
                window.fetch = real; window.heldBack = 'waiting';
                await new Promise((ok) => { window.release = ok; });
                window.heldBack = 'released';
            }
            return r;
        };
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const dt = new DataTransfer(); dt.items.add(new File([bytes], 'ring.png', {type: 'image/png'}));
        document.getElementById('curves').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    """, ring)
    _wait(page, "return window.heldBack === 'waiting'")
    page.find_element("id", "clear").click()
    _draw(page, BAR, "pen")
    _settled(page)
    assert _text(page, "label") == "1"
    page.execute_script("window.release()")
    _wait(page, "return window.heldBack === 'released'")
    page.execute_script("return new Promise((ok) => setTimeout(ok, 0))")
    assert _text(page, "label") == "1"
    assert page.execute_script("return window.logregPage.input.source") == "Your drawing"


def test_a_file_dropped_anywhere_or_chosen_is_answered_and_a_bad_file_is_named_plainly(page, tmp_path):
    ring = base64.b64encode(png_bytes(drawing("0", size=400))).decode()
    page.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const dt = new DataTransfer(); dt.items.add(new File([bytes], 'ring.png', {type: 'image/png'}));
        document.getElementById('settings-card').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    """, ring)
    _settled(page)
    assert _text(page, "label") == "0"
    assert "inverted" in _text(page, "seen-note")  # black on white, as drawn
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    page.find_element("id", "file").send_keys(str(bad))
    _wait(page, "return document.getElementById('status').textContent !== ''")
    status = _text(page, "status")
    assert "image" in status and "0x" not in status, status
    # Clear leaves nothing stale: no note about inversion, no error, no answer, the hint back.
    page.find_element("id", "clear").click()
    assert _text(page, "status") == "" and _text(page, "answer") == ""
    assert "inverted" not in _text(page, "seen-note")
    assert page.find_element("id", "hint").is_displayed()
    assert not page.find_element("id", "doubt").is_displayed()


def test_any_class_can_be_explained_with_its_arithmetic(page):
    _draw(page, BAR)
    _settled(page)
    assert page.find_element("id", "ev0-h").text == "Predicted: 1"
    assert page.find_element("id", "ev1-h").text == "Runner-up: 0"
    runner_up = page.execute_script("return document.getElementById('ev1').toDataURL()")
    page.find_element("css selector", "#scores button[data-k='7']").click()
    assert page.find_element("id", "ev1-h").text == "Your pick: 7"
    assert page.find_element("css selector", "#scores button[data-k='7']").get_attribute("aria-pressed") == "true"
    assert page.execute_script("return document.getElementById('ev1').toDataURL()") != runner_up
    # "sum S + bias b = score s": the score is class 7's score in the table, and S + b = s.
    cap = _text(page, "ev1-cap")
    total, bias, score = (float(cap.split(key)[1].split()[0]) for key in ("sum ", "bias ", "score "))
    assert abs(total + bias - score) < 0.011
    assert abs(score - _shown(page)["scores"][7]) < 0.006
    # A click on a weight map picks its class too.
    page.find_element("css selector", "#wgrid button[data-k='4']").click()
    assert page.find_element("id", "ev1-h").text == "Your pick: 4"


def test_the_slider_rescores_the_drawing_with_a_snapshot_and_marks_it_on_the_curves(page, served):
    from selenium.webdriver.common.keys import Keys

    from logreg_mnist.data.pixels import PIXEL_SCALE
    from logreg_mnist.persistence import load_model

    _, run = served
    assert page.find_element("id", "slider-label").text == "best model (epoch 3)"
    _draw(page, RING)
    _settled(page)
    best = _shown(page)
    page.find_element("id", "slider").send_keys(Keys.HOME)
    _wait(page, "return document.getElementById('answer-model').textContent === 'epoch 1'")
    shown = _shown(page)
    assert shown["pixels"] == best["pixels"]  # the same drawing, re-scored
    snapshot, _ = load_model(run / "snapshots" / "epoch-0001.safetensors")
    x = np.array(shown["pixels"], np.float32).reshape(1, -1) * PIXEL_SCALE
    expected = snapshot.p_y_given_x(x)[0]
    assert np.abs(np.array(shown["p"]) - expected).max() < 1e-4
    # and not the best model's: epoch 1's weights are a third of the best's (biases zero), so are its scores
    assert np.allclose(shown["scores"], np.array(best["scores"]) / 3, atol=1e-4)
    assert np.abs(np.array(shown["scores"]) - best["scores"]).max() > 1
    assert "The model at epoch 1 says" in _text(page, "answer")
    assert page.find_element("id", "ev-model").text == "epoch 1"
    # The learning curves are the page's own SVG, with epoch 1 and its validation error marked.
    marks = page.find_elements("css selector", "#charts svg g text")
    assert "epoch 1: 30.0 %" in [m.text for m in marks]
    assert "validation error 30.0 %" in _text(page, "readout")
    page.find_element("id", "slider").send_keys(Keys.END)
    _wait(page, "return document.getElementById('answer-model').textContent === 'best model'")
    # Hovering a curve reads its values out.
    from selenium.webdriver.common.action_chains import ActionChains

    svg = page.find_element("css selector", "#charts svg")
    ActionChains(page).move_to_element_with_offset(svg, -svg.size["width"] // 2 + 60, 0).perform()
    _wait(page, "return document.getElementById('readout').textContent.startsWith('epoch 1 ')")


def test_every_control_is_reachable_and_usable_by_keyboard(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    describe = ("const e = document.activeElement, box = e.id === 'file' ? e.parentElement : e,"
                " s = getComputedStyle(box);"
                " return [e.id || e.getAttribute('aria-label') || e.textContent.trim(),"
                " s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2];")
    reached = {}
    for _ in range(40):
        ActionChains(page).send_keys(Keys.TAB).perform()
        name, outlined = page.execute_script(describe)
        reached[name] = outlined
        if name == "slider":
            break
    wanted = ["pad", "clear", "file", "brush", *(f"class {k}: show its evidence" for k in range(10)),
              *(f"weights of class {k}: show its evidence" for k in range(10)), "slider"]
    assert [w for w in wanted if w not in reached] == []
    assert [name for name, outlined in reached.items() if not outlined] == []  # a visible focus on each
    # Keyboard drawing on the pad: Space puts the pen down, arrows draw, Space lifts it.
    page.find_element("id", "clear").click()
    pad = page.find_element("id", "pad")
    pad.send_keys(Keys.SPACE, *[Keys.ARROW_DOWN] * 6, Keys.SPACE)
    _settled(page)
    assert _text(page, "label") == "1"
    assert "says 1" in page.execute_script("return document.getElementById('announce').textContent")
    # A class button by Enter, the slider by arrow keys.
    page.find_element("css selector", "#scores button[data-k='3']").send_keys(Keys.ENTER)
    assert page.find_element("id", "ev1-h").text == "Your pick: 3"
    page.find_element("id", "slider").send_keys(Keys.ARROW_LEFT)
    _wait(page, "return document.getElementById('answer-model').textContent === 'epoch 2'")
    page.execute_script("document.getElementById('pad').focus()")
    ActionChains(page).send_keys(Keys.TAB).perform()  # Undo, enabled now, comes next
    assert page.execute_script("return document.activeElement.id") == "undo"
    ActionChains(page).send_keys(Keys.ENTER).perform()
    _wait(page, "return document.getElementById('answer').textContent === ''")


def test_a_dot_is_not_taken_for_a_digit(page, served):
    url, _ = served
    _draw(page, [(0.5, 0.5)])
    _settled(page)
    answer = httpx.post(url + "api/predict?explain=0", content=_canvas_png(page)).json()
    assert answer["doubt"] is not None and answer["doubt"]["kind"] == "small"
    doubt = page.find_element("id", "doubt")
    assert doubt.is_displayed() and doubt.text == answer["doubt"]["message"]
    assert answer["doubt"]["message"] in page.execute_script("return document.getElementById('announce').textContent")


def test_the_brush_size_sets_the_stroke_width(page):
    from selenium.webdriver.common.keys import Keys

    def ink() -> int:
        return page.execute_script("const c = document.getElementById('pad');"
                                   "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
                                   ".filter((v, i) => i % 4 === 0 && v < 128).length")

    brush = page.find_element("id", "brush")
    brush.send_keys(Keys.HOME)
    assert _text(page, "brush-size") == "4 px"
    _draw(page, BAR)
    _settled(page)
    thin = ink()
    page.find_element("id", "clear").click()
    brush.send_keys(Keys.END)
    assert _text(page, "brush-size") == "40 px"
    _draw(page, BAR)
    _settled(page)
    assert ink() > 5 * thin


def test_the_run_is_described_by_its_title_and_its_own_settings(page, served):
    url, _ = served
    run = httpx.get(url + "api/run").json()
    assert _text(page, "title") == run["title"] and "run run" not in page.title
    names = [e.text for e in page.find_elements("css selector", "#settings dt")]
    assert names == [s["name"] for s in run["settings"]] and names
    assert page.find_element("id", "hint").is_displayed()  # nothing drawn yet: the hint says what to do
    # The weight maps' colour scale is the 99th percentile of |w|, given in the legend.
    limit = float(page.execute_script("return window.logregPage.model.limit"))
    from logreg_mnist.persistence import load_model

    model, _ = load_model(served[1] / "best.safetensors")
    magnitudes = np.sort(np.abs(model.W[model.W != 0]))
    assert limit == pytest.approx(magnitudes[int(0.99 * len(magnitudes))], rel=1e-5)
    assert f"{limit:.2f}" in _text(page, "whigh")


def test_without_test_digits_the_page_says_why(page, served):
    r = httpx.get(served[0] + "api/mistakes?offset=0&limit=24")
    assert r.status_code == 404  # the hand-made run has no test split
    _wait(page, "return document.getElementById('m-note').textContent !== 'Loading…'")
    assert _text(page, "m-note") == r.json()["error"]
    assert page.find_elements("css selector", "#mgrid button") == []


def test_the_test_digits_the_model_gets_wrong_can_be_browsed_with_their_evidence(browser, real_mnist_dir, tmp_path):
    # The hand-made model, recorded as trained on the real MNIST: it gets most test digits wrong.
    run = make_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "dataset": "mnist", "data_source": str(real_mnist_dir)}))
    with serving(run) as url:
        browser.get(url)
        _wait(browser, "return document.body.dataset.ready === '1' && document.querySelectorAll('#mgrid button').length")
        page = httpx.get(url + "api/mistakes?offset=0&limit=24").json()
        buttons = browser.find_elements("css selector", "#mgrid button")
        assert len(buttons) == len(page["items"]) == 24 and page["total"] > 24
        assert f"{page['total']:,} test digits" in _text(browser, "m-note")
        item = page["items"][3]
        buttons[3].click()
        assert _shown(browser)["pixels"] == [v for row in item["pixels"] for v in row]
        assert _text(browser, "label") == str(item["predicted"])
        assert np.abs(np.array(_shown(browser)["p"]) - item["probabilities"]).max() < 1e-4
        # Its evidence: for the predicted class, and for the class it truly is.
        assert browser.find_element("id", "ev1-h").text == f"Your pick: {item['label']}"
        assert f"labelled {item['label']}" in _text(browser, "seen-note")
        browser.find_element("id", "more").click()
        _wait(browser, "return document.querySelectorAll('#mgrid button').length === 48")


def test_the_page_fits_a_phone_with_the_answer_in_view(browser, served):
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    try:
        browser.get(served[0])
        _wait(browser, "return document.body.dataset.ready === '1'")
        width = browser.execute_script("return document.documentElement.clientWidth")
        assert width == 390
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scroll
        pad = browser.find_element("id", "pad").rect
        assert pad["x"] >= 0 and pad["x"] + pad["width"] <= width and pad["width"] >= 200
        assert browser.execute_script("return getComputedStyle(document.getElementById('pad')).touchAction") == "none"
        _draw(browser, BAR, "touch")
        _settled(browser)
        # The drawing and its answer are both in view at once, without scrolling.
        answer = browser.find_element("id", "answer").rect
        assert answer["y"] >= 0 and answer["y"] + answer["height"] <= 844 and pad["y"] >= 0
        # The learning curves are drawn at a readable size (their text not shrunk below ~0.9 x 12 px).
        svg = browser.find_element("css selector", "#charts svg").rect
        assert svg["width"] >= 0.9 * 340
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_no_serious_accessibility_violation(page):
    if not AXE_JS.is_file():
        _need(f"axe-core's axe.min.js at {AXE_JS} (npm install --no-save --no-package-lock axe-core@4.14.1, or set LOGREG_MNIST_AXE_JS)")
    _draw(page, BAR)
    _settled(page)
    page.find_element("css selector", "#scores button[data-k='7']").click()
    page.execute_script(AXE_JS.read_text(encoding="utf-8"))
    result = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa',"
        " 'best-practice']}}).then((r) => done(r.violations.map((v) =>"
        " ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))), (e) => done(String(e)));")
    assert isinstance(result, list), result
    print("axe-core:", result or "no violation")
    assert [v for v in result if v["impact"] in ("serious", "critical")] == []
