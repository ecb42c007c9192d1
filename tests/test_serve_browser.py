"""The page in a real browser: Debian's chromium, driven through chromedriver by Selenium,
against `logreg-mnist serve` running as its own process on 127.0.0.1.

Skipped when chromium, chromedriver or Selenium is missing, unless
LOGREG_MNIST_REQUIRE_BROWSER is set (as CI does): then it fails.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import httpx
import pytest

from .serve_run import make_run

CHROMIUM = os.environ.get("LOGREG_MNIST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LOGREG_MNIST_CHROMEDRIVER", "/usr/bin/chromedriver")


def _missing() -> list[str]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return missing


@pytest.fixture(scope="module")
def browser():
    missing = _missing()
    if missing:
        message = f"the browser test needs {', '.join(missing)} (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("LOGREG_MNIST_REQUIRE_BROWSER"):
            pytest.fail(message + "; LOGREG_MNIST_REQUIRE_BROWSER is set")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="logreg-mnist-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1200,1400", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`logreg-mnist serve` on a hand-made run, as a separate process; yields its URL."""
    run = make_run(tmp_path_factory.mktemp("browser") / "run")
    proc = subprocess.Popen([sys.executable, "-m", "logreg_mnist", "serve", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert " at http://127.0.0.1:" in line, line + proc.stderr.read()
        yield line.split(" at ")[1].split()[0]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(condition))


def _draw(driver, points, kind: str) -> None:
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


def _pixels(driver, canvas_id: str) -> list[int]:
    return driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);", canvas_id)


def _settled(driver) -> None:
    """Wait until the page shows the answer for the drawing as it is now."""
    _wait(driver, "return document.body.dataset.drawn && document.body.dataset.shown === document.body.dataset.drawn"
                  " && document.getElementById('label') !== null")


def test_drawing_shows_the_prediction_and_its_evidence(browser, server):
    import math

    browser.get(server)
    _wait(browser, "return document.body.dataset.ready === '1'")
    assert "trained on hand-made" in browser.find_element("id", "about").text

    # A vertical bar with the mouse: the hand-made model says 1.
    _draw(browser, [(0.5, 0.15 + 0.07 * i) for i in range(11)], "mouse")
    _settled(browser)
    assert browser.find_element("id", "label").text == "1"
    # The page shows what the API answers for the canvas's own picture.
    data_url = browser.execute_script("return document.getElementById('pad').toDataURL('image/png')")
    answer = httpx.post(server + "api/predict", content=base64.b64decode(data_url.split(",")[1])).json()
    assert answer["label"] == 1
    assert f"{100 * answer['probabilities'][1]:.1f} %" in browser.find_element("id", "answer").text
    top_bar = browser.find_elements("css selector", "#bars .top")
    assert [e.text for e in top_bar if e.get_attribute("class") == "name top"] == ["1"]

    # The prepared input is a light digit on black, and the evidence map is drawn in the
    # diverging colours: red where the ink meets class 1's bar, blue where it meets what 1 is against.
    prepared = _pixels(browser, "prepared")
    assert max(prepared[0::4]) > 200 and prepared[0] == 0
    ev = _pixels(browser, "ev0")
    rgb = list(zip(ev[0::4], ev[1::4], ev[2::4]))
    assert sum(r > b + 60 for r, g, b in rgb) >= 10  # red: evidence for
    assert sum(r > 240 and g > 240 and b > 240 for r, g, b in rgb) >= 400  # white: no ink, no evidence
    assert browser.find_element("id", "ev0-cap").text.startswith("predicted 1: sum ")
    assert browser.find_element("id", "ev1-cap").text.startswith("runner-up 0: sum ")

    # Clear, then a ring with a finger: the model says 0.
    browser.find_element("id", "clear").click()
    assert browser.find_element("id", "answer").text == ""
    ring = [(0.5 + 0.25 * math.sin(t / 16 * 2 * math.pi), 0.5 - 0.36 * math.cos(t / 16 * 2 * math.pi))
            for t in range(17)]
    _draw(browser, ring, "touch")
    _settled(browser)
    assert browser.find_element("id", "label").text == "0"

    # And a bar with a pen.
    browser.find_element("id", "clear").click()
    _draw(browser, [(0.45, 0.2 + 0.06 * i) for i in range(11)], "pen")
    _settled(browser)
    assert browser.find_element("id", "label").text == "1"


def test_choosing_an_image_file_predicts_it_and_a_bad_file_is_named(browser, server, tmp_path):
    from .serve_run import drawing

    browser.get(server)
    _wait(browser, "return document.body.dataset.ready === '1'")
    good, bad = tmp_path / "ring.png", tmp_path / "notes.png"
    drawing("0", size=400).save(good)
    bad.write_text("not an image at all")
    chooser = browser.find_element("id", "file")
    chooser.send_keys(str(good))
    _settled(browser)
    assert browser.find_element("id", "label").text == "0"
    chooser.send_keys(str(bad))
    _wait(browser, "return document.getElementById('status').textContent !== ''")
    assert browser.find_element("id", "status").text.startswith("the request body: expected an image")


def test_the_run_is_shown_weights_slider_and_curves(browser, server):
    browser.get(server)
    _wait(browser, "return document.body.dataset.ready === '1'")
    # Class 1's weights: a red bar on the shared diverging scale.
    w1 = _pixels(browser, "w1")
    assert sum(r > b + 60 for r, b in zip(w1[0::4], w1[2::4])) >= 10
    assert browser.find_element("id", "slider-label").text == "the best model (epoch 3)"
    from selenium.webdriver.common.keys import Keys

    slider = browser.find_element("id", "slider")
    slider.send_keys(Keys.HOME)
    _wait(browser, "return document.getElementById('slider-label').textContent === 'epoch 1'")
    # epoch 1's weights are a third of the best's: paler on the same scale.
    def strongest_red(px):  # the darkest red pixel: the colour map darkens away from zero
        return min(r + g + b for r, g, b in zip(px[0::4], px[1::4], px[2::4]) if r > b)

    assert strongest_red(_pixels(browser, "w1")) > strongest_red(w1) + 60
    _wait(browser, "const i = document.getElementById('curves-img'); return i.complete && i.naturalWidth > 300")


def test_the_page_fits_a_phone(browser, server):
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    try:
        browser.get(server)
        _wait(browser, "return document.body.dataset.ready === '1'")
        width = browser.execute_script("return document.documentElement.clientWidth")
        assert width == 390
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scroll
        pad = browser.find_element("id", "pad").rect
        assert pad["x"] >= 0 and pad["x"] + pad["width"] <= width and pad["width"] >= 200
        # A finger can draw: the pad does not scroll the page instead.
        assert browser.execute_script("return getComputedStyle(document.getElementById('pad')).touchAction") == "none"
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
