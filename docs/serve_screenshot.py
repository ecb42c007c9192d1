"""Redraw docs/images/serve.png: `logreg-mnist serve RUN`, a digit drawn with the mouse, a screenshot.

    python docs/serve_screenshot.py runs/tutorial docs/images/serve.png [--width 1280 --height 1000]

Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver) and Selenium.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile

# A "3" in two bowls, as fractions of the drawing pad.
THREE = [(0.3, 0.22), (0.4, 0.15), (0.55, 0.13), (0.67, 0.2), (0.68, 0.32), (0.6, 0.42), (0.48, 0.47),
         (0.6, 0.5), (0.7, 0.6), (0.7, 0.72), (0.6, 0.83), (0.45, 0.86), (0.3, 0.8)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory or a model file")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--phone", action="store_true", help="emulate a phone's screen of --width x --height")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    server = subprocess.Popen([sys.executable, "-m", "logreg_mnist", "serve", args.run, "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    profile = tempfile.mkdtemp(prefix="logreg-mnist-chromium-")
    driver = None
    try:
        url = server.stdout.readline().split(" at ")[1].split()[0]
        options = webdriver.ChromeOptions()
        options.binary_location = args.chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    f"--window-size={args.width},{args.height}", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=args.chromedriver))
        if args.phone:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": args.width, "height": args.height, "deviceScaleFactor": 1, "mobile": True})
        driver.get(url)
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        pad = driver.find_element("id", "pad")
        w, h = pad.size["width"], pad.size["height"]
        from selenium.webdriver.common.action_chains import ActionChains

        chain = ActionChains(driver, duration=30)
        x0, y0 = THREE[0]
        chain.move_to_element_with_offset(pad, round((x0 - 0.5) * w), round((y0 - 0.5) * h)).click_and_hold()
        for x, y in THREE[1:]:
            chain.move_to_element_with_offset(pad, round((x - 0.5) * w), round((y - 0.5) * h))
        chain.release().perform()
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.body.dataset.shown === document.body.dataset.drawn && document.getElementById('label')"))
        driver.save_screenshot(args.out)
        print(f"{args.out}: the page says {driver.find_element('id', 'answer').text}")
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(signal.SIGINT)
        server.wait(20)
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
