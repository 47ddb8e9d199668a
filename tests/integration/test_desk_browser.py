"""The duty desk's board as a person uses it: the embedded broker, a worker and `ecm desk`,
driven in a real headless Chromium (Debian's chromium and chromium-driver, with selenium).

A missed P1 visit appears on the page within 2 s of reaching the escalation topic, with its
countdown; a signed-in user acknowledges it, `ecm.actions` carries the action with their
id, and the row moves on; the pathway deadline passes and the page shows the breach and the
raised level; nobody signed in may read or act. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from stream.broker import free_port
from tests.cluster import Reader, produce
from tests.factories import visit

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CASES = {"case_owner_sla_p1_s": 20.0, "case_pathway_sla_p1_s": 30.0}


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "chromium, chromedriver: `make test` installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def desk(settings, tmp_path):
    port = free_port()
    env = {**os.environ, **settings.with_(**CASES).as_env(), "ECM_DESK_PORT": str(port),
           "ECM_DESK_TOKENS": "ann:ann-secret-token"}
    log = (tmp_path / "desk.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "desk"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (
                (tmp_path / "desk.log").read_text()[-2000:])
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def _shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"desk-{name}.png"))


def _until(check, timeout_s: float, what: str, driver=None):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = check()
        except Exception:  # the row is being swapped: look again
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            if driver is not None:
                _shot(driver, "failed")
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.05)


def test_the_board_as_a_person_uses_it(settings, spawn_worker, desk, browser):
    from selenium.webdriver.common.by import By

    # Nobody signed in: no page, no live feed, no action.
    browser.get(desk + "/")
    assert browser.current_url.endswith("/login")
    for path, data in (("/events", None), ("/actions", b"escalation_id=x&type=acknowledge")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(desk + path, data=data), timeout=5)
        assert refused.value.code == 401
    browser.find_element(By.ID, "user").send_keys("ann")
    browser.find_element(By.ID, "token").send_keys("wrong-token-x")
    browser.find_element(By.ID, "sign-in").click()
    _until(lambda: browser.find_elements(By.ID, "failed"), 10, "the refusal to sign in",
           browser)
    browser.find_element(By.ID, "user").send_keys("ann")
    browser.find_element(By.ID, "token").send_keys("ann-secret-token")
    browser.find_element(By.ID, "sign-in").click()
    _until(lambda: browser.find_elements(By.ID, "rows"), 10, "the board", browser)
    assert "P1 0" in browser.find_element(By.ID, "counts").text

    worker = spawn_worker("w", **CASES)
    worker.wait_ready()
    reader = Reader(settings, settings.topic_escalations, settings.topic_actions)
    esc = reader.records[settings.topic_escalations]
    produce(settings, settings.topic_roster, [[visit(
        "v1", client_id="c1", start=time.time() - 1, late_after_s=1, missed_after_s=2,
        risk_level="critical", time_critical=True, lives_alone=True)]])
    reader.until(lambda r: any(e["escalation_id"] == "v1:missed" for e in esc), timeout_s=30)
    seen = time.monotonic()
    row = _until(lambda: browser.find_elements(By.ID, "case-v1_missed"), 5,
                 "the missed visit's row", browser)[0]
    assert time.monotonic() - seen <= 2.0
    assert "P1" in row.find_element(By.CSS_SELECTOR, "td b").text
    assert "lives alone" in row.text and "time critical" in row.text
    # The header's counts follow the board live.
    _until(lambda: f"P1 {len(browser.find_elements(By.CSS_SELECTOR, 'tr.P1'))}"
           in browser.find_element(By.ID, "counts").text, 3, "the live P1 count", browser)
    countdown = row.find_element(By.CSS_SELECTOR, "td.countdown")
    assert countdown.get_attribute("data-due")
    _until(lambda: ":" in browser.find_element(By.CSS_SELECTOR,
                                               "#case-v1_missed td.countdown .left").text,
           3, "the countdown ticking", browser)
    _shot(browser, "raised")

    # Acknowledge it from the row (its action forms are kept across the live updates).
    act = "#act-case-v1_missed "
    browser.find_element(By.CSS_SELECTOR, act + "summary").click()
    _until(lambda: browser.find_elements(By.CSS_SELECTOR, act + "input[name=owner_id]"), 5,
           "the row's action forms", browser)[0].send_keys("duty-manager-1")
    browser.find_element(By.CSS_SELECTOR, act + "button.ack").click()
    reader.until(lambda r: any(a.get("type") == "acknowledge"
                               for a in r.records[settings.topic_actions]), timeout_s=10)
    (action,) = reader.records[settings.topic_actions]
    assert (action["escalation_id"], action["by"], action["owner_id"]) == (
        "v1:missed", "ann", "duty-manager-1")
    _until(lambda: browser.find_element(By.ID, "case-v1_missed").get_attribute("data-stage")
           == "acknowledged", 5, "the row's new stage", browser)
    _shot(browser, "acknowledged")

    # Nobody assigns a pathway: its deadline passes, and the page shows the breach.
    _until(lambda: "pathway" in browser.find_element(
        By.CSS_SELECTOR, "#case-v1_missed .breach").text, 60, "the pathway breach", browser)
    assert "L2" in browser.find_element(By.ID, "case-v1_missed").text
    _shot(browser, "breached")

    # On a tablet held upright: nothing wider than the screen, and the row's actions in reach.
    browser.set_window_size(768, 1024)
    _until(lambda: browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"), 5,
        "the page within a tablet's width", browser)
    ack = browser.find_element(By.CSS_SELECTOR, act + "button.ack")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", ack)
    assert ack.is_displayed() and ack.size["height"] >= 36
    _shot(browser, "tablet")
    reader.close()
    assert orjson.loads(orjson.dumps(action))  # the action as the topic carries it
