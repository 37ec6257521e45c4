"""The page at `/`, driven in headless Chromium against a `jilo-server` on the simulators.

Signs up, searches trends, writes a prompt from the top video, generates it with the progress
bar reaching 100%, plays the stored video in the page's <video>, connects YouTube through the
consent redirect, suggests metadata, publishes with the upload bar reaching 100%, buys a plan on
the simulated checkout, and shows the maintenance banner when every provider is out of funds.
Screenshots go to target/page/ (finished.png, maintenance.png).

Run by .ci/page.sh after `cargo build -p jilo-server`; needs Debian's chromium and
chromium-driver, and the selenium package (no browser download).
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parents[3]
OUT = ROOT / "target" / "page"
TIMEOUT = 120  # generous: a busy CI machine, a debug build


def start_server(data_dir):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FAL_", "SUCHUANG_", "APIFY_", "GEMINI_", "YOUTUBE_", "GOOGLE_",
                                "STRIPE_", "JILO_", "DATABASE_URL"))}
    env["RUST_LOG"] = "info"
    proc = subprocess.Popen(
        [str(ROOT / "target" / "debug" / "jilo-server"), "--port", "0", "--data-dir", data_dir,
         "--sim-speed", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = admin = None
    log = []
    for line in proc.stdout:
        log.append(line)
        if "admin=" in line and admin is None:
            admin = line.split("admin=")[1].split()[0]
        if "listening on http://" in line:
            url = "http://" + line.split("listening on http://")[1].split()[0]
            break
    if url is None:
        sys.exit("jilo-server stopped before listening:\n" + "".join(log))

    def drain():
        for line in proc.stdout:
            log.append(line)
    threading.Thread(target=drain, daemon=True).start()
    return proc, url, admin, log


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2400",
                "--lang=zh-CN", "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix="jilo-page-")
    proc, url, admin, log = start_server(data_dir)
    driver = browser()
    # A page that navigates (the consent and checkout redirects) replaces its elements.
    wait = WebDriverWait(driver, TIMEOUT, ignored_exceptions=[StaleElementReferenceException])
    by_id = lambda i: driver.find_element(By.ID, i)
    text_is = lambda i, t: lambda d: by_id(i).text.strip() == t
    try:
        driver.get(url + "/")
        wait.until(lambda d: by_id("auth").is_displayed())
        by_id("email").send_keys("page@example.com")
        by_id("password").send_keys("secret123")
        by_id("confirm").send_keys("secret123")
        by_id("signup").click()
        wait.until(text_is("credits", "100"))
        print("signed up: 100 credits")

        by_id("search").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results tbody tr")) >= 5)
        rows = driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")
        print(f"trends: {len(rows)} rows, top score {rows[0].find_element(By.TAG_NAME, 'b').text}")
        Select(by_id("model")).select_by_value("kling-t2v")
        Select(by_id("duration")).select_by_value("5")
        driver.find_element(By.CSS_SELECTOR, "#results .use").click()
        wait.until(lambda d: len(by_id("prompt").get_attribute("value")) >= 10)
        print("prompt:", by_id("prompt").get_attribute("value")[:80])

        by_id("generate").click()
        wait.until(text_is("gen-percent", "100%"))
        wait.until(lambda d: d.execute_script("return document.getElementById('player').src") != "")
        wait.until(text_is("credits", "85"))
        # The stored file plays: the element decodes it and its clock moves.
        driver.execute_script("document.getElementById('player').play()")
        wait.until(lambda d: d.execute_script(
            "const v = document.getElementById('player'); return v.readyState >= 2 && v.currentTime > 0"))
        duration = driver.execute_script("return document.getElementById('player').duration")
        print(f"generated: progress 100%, the video plays ({duration:.1f} s), 85 credits left")

        by_id("connect").click()
        wait.until(lambda d: "已绑定" in by_id("channel").text)
        wait.until(lambda d: not by_id("suggest").get_attribute("disabled"))
        print("connected:", by_id("channel").text)
        by_id("suggest").click()
        wait.until(lambda d: by_id("title").get_attribute("value") != "")
        by_id("publish").click()
        wait.until(text_is("pub-percent", "100%"))
        wait.until(lambda d: d.find_elements(By.ID, "pub-link"))
        print("published:", by_id("pub-link").text)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(OUT / "finished.png"))

        driver.find_element(By.CSS_SELECTOR, ".buy[data-plan=basic]").click()
        wait.until(lambda d: d.find_elements(By.ID, "pay"))
        by_id("pay").click()
        wait.until(text_is("credits", "135"))
        print("paid for Basic: 135 credits")

        # Every provider out of funds: the generation is refused with the seed's message and
        # the maintenance banner shows.
        for service in ("suchuang", "fal"):
            req = urllib.request.Request(f"{admin}/faults/{service}", method="POST",
                                         data=json.dumps({"out_of_funds": True}).encode(),
                                         headers={"content-type": "application/json"})
            urllib.request.urlopen(req).read()
        Select(by_id("model")).select_by_value("veo3")
        by_id("prompt").clear()
        by_id("prompt").send_keys("A red kite over green hills at noon")
        by_id("generate").click()
        wait.until(lambda d: "服务暂时不可用" in by_id("gen-error").text)
        driver.refresh()
        wait.until(lambda d: by_id("banner").is_displayed() and "服务暂时不可用" in by_id("banner").text)
        wait.until(text_is("credits", "135"))
        print("maintenance banner shown; credits back at 135")
        driver.save_screenshot(str(OUT / "maintenance.png"))

        # Refused requests the flow expects (401 before signing up, the 503) are logged as
        # network errors; a script error is not expected.
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"
                  and e.get("source") != "network"]
        if severe:
            sys.exit(f"the page logged errors: {severe}")
        print(f"screenshots in {OUT}")
    except Exception:
        driver.save_screenshot(str(OUT / "failed.png"))
        print("".join(log[-60:]), file=sys.stderr)
        raise
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
