"""The page's real components, shared by its browser tests and benchmarks: headless Chromium
through chromedriver, and ``logreg-mnist serve`` as its own process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def start_chromium(
    chromium: str,
    chromedriver: str,
    profile: str,
    *,
    window: tuple[int, int] = (1200, 1400),
    script_timeout: float = 20.0,
    page_load_timeout: float | None = 30.0,
):
    """Headless Chromium (``chromium``, driven by ``chromedriver``) with its own ``profile``
    directory, no network of its own, a ``window`` (width, height); a Selenium driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    if page_load_timeout is not None:
        driver.set_page_load_timeout(page_load_timeout)
    driver.set_script_timeout(script_timeout)
    return driver


@contextlib.contextmanager
def serving(target: str | Path) -> Iterator[str]:
    """``logreg-mnist serve TARGET --port 0`` as its own process; yields the page's URL, then
    stops it as Ctrl-C does (killed after 20 s). RuntimeError, with its output, when it does not start."""
    proc = subprocess.Popen([sys.executable, "-m", "logreg_mnist", "serve", str(target), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        if " at http://127.0.0.1:" not in line:
            raise RuntimeError("the server did not start: " + line + proc.stderr.read())
        yield line.split(" at ")[1].split()[0]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
