"""The page `deepfit serve` shows at GET /, in a real browser: Debian's headless Chromium driven by
selenium through /usr/bin/chromedriver (never selenium-manager: these machines are offline).
It loads the page, gives the token, fills and submits a row, uploads an image (with its
preview), and finds the predicted class in the DOM. Without chromium this FAILS: .ci/run
installs it (apt-get install chromium chromium-driver)."""

import re
import shutil

import httpx
import pytest
from serve_support import TOKEN

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which("chromium") or shutil.which(CHROMIUM)) or not shutil.which(CHROMEDRIVER):
        pytest.fail("the browser test needs Debian's chromium and chromedriver: "
                    "apt-get install -y chromium chromium-driver (.ci/run does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, css, timeout=20, text=True):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed() and (e.text or not text)),
                       False))


def test_the_page_is_self_contained(table_server):
    page = httpx.get(table_server.url + "/").text
    assert "<script>" in page and "<style>" in page
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)  # no CDN, no fonts, nothing external
    assert "@import" not in page and "url(" not in page


def test_a_row_in_the_form_gets_its_prediction(browser, table_server, auth):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    row = {"x": 1.2, "amount": 800.0, "color": "green"}
    want = httpx.post(table_server.url + "/v1/predict", json={"rows": [row]}, headers=auth).json()["predictions"][0]
    browser.get(table_server.url + "/")
    wait_for(browser, "#auth", text=False)  # 401: the page asks for the token
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    wait_for(browser, "#col-x", text=False)
    browser.find_element(By.ID, "col-x").send_keys(str(row["x"]))
    browser.find_element(By.ID, "col-amount").send_keys(str(row["amount"]))
    Select(browser.find_element(By.ID, "col-color")).select_by_visible_text("green")
    browser.find_element(By.ID, "predict-row").click()
    shown = wait_for(browser, "#prediction-0")
    assert shown.text == want["prediction"]
    probs = browser.find_elements(By.CSS_SELECTOR, ".proba")
    assert {p.get_attribute("data-class") for p in probs} == {"no", "yes"}
    top = max(want["probabilities"], key=want["probabilities"].get)
    assert f"{want['probabilities'][top]:.4f}" in probs[0].text


def test_an_uploaded_image_is_previewed_and_classified(browser, image_server, serve_runs):
    from selenium.webdriver.common.by import By

    path = sorted(serve_runs["image_paths"])[-1]  # a 'dark' one
    want = httpx.post(image_server.url + "/v1/predict",
                      files=[("image", (path.name, path.read_bytes(), "image/png"))]).json()["predictions"][0]
    browser.get(image_server.url + "/")
    wait_for(browser, "#image-file", text=False)
    browser.find_element(By.ID, "image-file").send_keys(str(path))
    preview = wait_for(browser, "#previews img", text=False)
    assert preview.get_attribute("src").startswith("blob:")
    browser.find_element(By.ID, "predict-image").click()
    assert wait_for(browser, "#prediction-0").text == want["prediction"]
