"""Alert rules and scrape configuration, checked and unit-tested by the real promtool."""

import shutil
import subprocess
from pathlib import Path

import pytest

PROM = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    # `make test` installs Debian's prometheus package when promtool is missing; a run
    # without it is a failure, not a skip.
    assert path, "promtool not found: run `make test`, or apt-get install prometheus"
    return path


def _run(promtool: str, *args: str) -> str:
    out = subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_rules_are_valid(promtool):
    assert "SUCCESS: 12 rules found" in _run(promtool, "check", "rules", "alerts.yml")


def test_alert_rule_unit_tests_pass(promtool):
    assert "SUCCESS" in _run(promtool, "test", "rules", "alerts_test.yml")


def test_scrape_config_is_valid(promtool):
    assert "is valid prometheus config file syntax" in _run(promtool, "check", "config",
                                                             "prometheus.yml")


def test_every_alert_has_a_unit_test():
    rules = (PROM / "alerts.yml").read_text()
    tests = (PROM / "alerts_test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines()
             if line.strip().startswith("- alert:")]
    assert len(names) == 12
    for name in names:
        assert f"alertname: {name}" in tests, name
