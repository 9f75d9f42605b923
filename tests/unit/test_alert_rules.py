"""The Prometheus rules and the Alertmanager config, checked and unit-tested by their own tools.

`promtool test rules` runs every case in deploy/prometheus/tests/*.test.yml; the checks below
make sure each alert has a firing and a not-firing case and the annotations on-call needs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = sorted((DEPLOY / "prometheus").glob("*.rules.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.test.yml"))
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"

EXPECTED_ALERTS = {
    "RunStalled",
    "RunLost",
    "RankStraggling",
    "RunFailed",
    "RunProgressRateCollapsed",
    "ExporterDown",
    "ConsumerLagGrowing",
    "DeadLettersArriving",
    "NoEventsWhileRunsLive",
    "WatchdogBlind",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian: prometheus / prometheus-alertmanager)")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def rule_cases() -> list[dict[str, Any]]:
    return [
        case
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_promtool_accepts_the_rules() -> None:
    done = run(tool("promtool"), "check", "rules", *map(str, RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no rule tests found"
    done = run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_compose_prometheus_config() -> None:
    done = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_amtool_accepts_the_alertmanager_config() -> None:
    done = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_there_with_runbook_and_severity() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    for rule in rules:
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert len(annotations.get(key, "")) > 20, (rule["alert"], key)
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]


def test_every_alert_has_firing_and_quiet_cases() -> None:
    cases = rule_cases()
    for alert in EXPECTED_ALERTS:
        mine = [case for case in cases if case["alertname"] == alert]
        assert any(case["exp_alerts"] for case in mine), f"{alert}: no firing case"
        assert any(not case["exp_alerts"] for case in mine), f"{alert}: no not-firing case"


def test_alertmanager_keeps_the_test_webhook() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    webhook = receivers[config["route"]["receiver"]]["webhook_configs"][0]
    assert webhook["url"] == "http://127.0.0.1:19180/alerts"
