"""The generated service configs say what the local stack promises."""

from __future__ import annotations

from pathlib import Path

import yaml

from runstream.deploy.local import StackConfig
from runstream.deploy.local._alertmanager import AlertmanagerServer
from runstream.deploy.local._service import deploy_file, render


def properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_kafka_is_one_kraft_node_on_the_given_ports(tmp_path: Path) -> None:
    target = render(
        "kafka-server.properties",
        tmp_path / "server.properties",
        port=29192,
        controller_port=29193,
        data_dir=tmp_path / "data",
        node_id=1,
        nodes=1,
        voters="1@127.0.0.1:29193",
        replication=1,
        min_isr=1,
    )
    config = properties(target)
    assert config["process.roles"] == "broker,controller"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:29193"
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29192"
    assert config["log.dirs"] == str(tmp_path / "data")
    assert config["offsets.topic.replication.factor"] == "1"
    assert config["transaction.state.log.replication.factor"] == "1"
    assert config["num.partitions"] == "4"
    assert config["group.initial.rebalance.delay.ms"] == "0"
    assert config["auto.create.topics.enable"] == "false"


def test_prometheus_scrapes_every_service_every_two_seconds(tmp_path: Path) -> None:
    text = render(
        "prometheus.yml",
        tmp_path / "prometheus.yml",
        rules_glob="/rules/*.rules.yml",
        alertmanager_address="127.0.0.1:29195",
        exporter_address="127.0.0.1:29200",
        persist_address="127.0.0.1:29201",
        watchdog_address="127.0.0.1:29202",
        prometheus_address="127.0.0.1:29190",
    ).read_text()
    assert "scrape_interval: 2s" in text
    assert "evaluation_interval: 2s" in text
    for target in ("29195", "29200", "29201", "29202", "/rules/*.rules.yml"):
        assert target in text


def test_the_stack_finds_the_shipped_rules_and_alertmanager_config() -> None:
    assert list(deploy_file("prometheus").glob("*.rules.yml"))
    alertmanager = deploy_file("alertmanager", "alertmanager.yml").read_text()
    assert "http://127.0.0.1:19180/alerts" in alertmanager


def test_the_stack_posts_alerts_to_its_own_webhook_port(tmp_path: Path) -> None:
    config = StackConfig(state_dir=tmp_path, alertmanager_port=29195)
    assert config.webhook_port == 29195 + 85
    written = AlertmanagerServer(config).write_config()
    receivers = yaml.safe_load(written.read_text())["receivers"]
    urls = [hook["url"] for r in receivers for hook in r.get("webhook_configs", [])]
    assert urls == ["http://127.0.0.1:29280/alerts"]
    chosen = StackConfig(state_dir=tmp_path, alertmanager_webhook_port=29281)
    assert chosen.env()["RUNSTREAM_STACK_ALERTMANAGER_WEBHOOK_PORT"] == "29281"
