"""The report's page as a planner opens it: a four-week region's report, from a file, in a
real headless Chromium (the duty desk's browser fixture) with no network. The charts
render, the totals are on the page; the page's screenshot goes to
``test-artifacts/report.png`` and its per-day chart to ``docs/report-chart.png`` (the
README shows it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.cli import main
from tests.integration.test_desk_browser import browser  # noqa: F401 (the fixture)
from tests.report_records import month, write_lines

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ("per_day", "per_week", "recovery_bins", "safeguarding_per_day")


def test_the_page_renders_offline(browser, tmp_path, capsys):  # noqa: F811 (the fixture)
    from selenium.webdriver.common.by import By

    visits, reviews = month()
    out = tmp_path / "report"
    assert main(["report", "--from", "2026-11-23", "--to", "2026-12-20",
                 "--input", str(write_lines(tmp_path / "v.jsonl", visits)),
                 "--escalations", str(write_lines(tmp_path / "e.jsonl", reviews)),
                 "--out", str(out), "--json"]) == 0
    totals = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert totals["missed"] > 0 and totals["safeguarding_reviews"] > 0

    browser.get((out / "report.html").as_uri())
    assert browser.title.startswith("Late and missed visits")
    for key in ("planned", "attended", "late", "missed", "cancelled"):
        card = browser.find_element(By.ID, f"total-{key}")
        assert card.is_displayed()
        assert card.find_element(By.TAG_NAME, "b").text == str(totals[key])
    assert browser.find_element(By.ID, "total-missed-proportion").text.startswith(
        f"{100 * totals['missed_proportion']:.1f}%")
    assert browser.find_element(By.ID, "suggestions").is_displayed()
    for name in CHARTS:
        svg = browser.find_element(By.CSS_SELECTOR, f"#chart-{name} svg")
        assert svg.size["width"] > 300 and svg.size["height"] > 80, name
        # Drawn, not just placed: the bars are paths with a laid-out box.
        drawn = browser.execute_script(
            "return Array.from(arguments[0].querySelectorAll('path'))"
            ".filter(p => p.getBBox().width > 0 && p.getBBox().height > 0).length", svg)
        assert drawn > 4, name
    rows = browser.find_elements(By.CSS_SELECTOR, "#table-safeguarding tr")
    assert len(rows) == 1 + totals["safeguarding_reviews"]

    # The whole page in one screenshot: the window as tall as the page.
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, height + 300)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ROOT / "test-artifacts" / "report.png"))
    chart = browser.find_element(By.ID, "chart-per_day")
    assert chart.screenshot(str(ROOT / "docs" / "report-chart.png"))
