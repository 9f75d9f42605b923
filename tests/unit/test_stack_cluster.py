"""A three-node Kafka cluster in the local stack, as configured (no process started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream._errors import ConfigError
from runstream.deploy import local
from runstream.deploy.local._kafka import KafkaBroker, partition_roles
from runstream.deploy.local._stack import core_services


def properties(text: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    return {key: value for key, _, value in pairs if not key.startswith("#")}


def test_one_node_stays_the_default(tmp_path: Path) -> None:
    config = local.StackConfig(state_dir=tmp_path, kafka_port=29092, kafka_controller_port=29093)
    assert [node.name for node in config.kafka_nodes()] == ["kafka"]
    assert config.bootstrap_servers == "127.0.0.1:29092"
    assert (config.replication, config.min_insync_replicas) == (1, 1)


def test_three_nodes_listen_on_the_first_nodes_ports_plus_a_hundred_each(tmp_path: Path) -> None:
    config = local.StackConfig(
        state_dir=tmp_path, kafka_port=29092, kafka_controller_port=29093, brokers=3
    )
    nodes = config.kafka_nodes()
    assert [(n.name, n.node_id, n.port, n.controller_port) for n in nodes] == [
        ("kafka", 1, 29092, 29093),
        ("kafka-2", 2, 29192, 29193),
        ("kafka-3", 3, 29292, 29293),
    ]
    assert config.bootstrap_servers == "127.0.0.1:29092,127.0.0.1:29192,127.0.0.1:29292"
    assert config.env()["RUNSTREAM_BOOTSTRAP_SERVERS"] == config.bootstrap_servers
    names = [service.name for service in core_services(config)]
    assert names[:3] == ["kafka", "kafka-2", "kafka-3"]


def test_each_node_names_every_voter_and_three_replicas(tmp_path: Path) -> None:
    ports = ((31001, 31002), (31003, 31004))
    config = local.StackConfig(state_dir=tmp_path, brokers=3, broker_ports=ports)
    second = KafkaBroker(config, config.kafka_nodes()[1])
    settings = properties(second.server_properties())
    assert settings["node.id"] == "2"
    assert settings["controller.quorum.voters"] == (
        f"1@127.0.0.1:{config.kafka_controller_port},2@127.0.0.1:31002,3@127.0.0.1:31004"
    )
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:31001,CONTROLLER://127.0.0.1:31002"
    assert settings["log.dirs"] == str(tmp_path / "kafka-2" / "data")
    assert settings["default.replication.factor"] == "3"
    assert settings["min.insync.replicas"] == "2"
    assert settings["offsets.topic.replication.factor"] == "3"
    assert settings["transaction.state.log.min.isr"] == "2"


def test_the_recorded_size_is_what_a_later_command_sees(tmp_path: Path) -> None:
    made = local.StackConfig(state_dir=tmp_path, brokers=3)
    made.cluster_size_file.parent.mkdir(parents=True)
    made.cluster_size_file.write_text("3\n")
    later = local.StackConfig(state_dir=tmp_path)  # `status`, `down`, `env` without --brokers
    assert later.broker_count() == 3
    assert len(later.kafka_nodes()) == 3


def test_two_brokers_and_colliding_ports_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="brokers=2"):
        local.StackConfig(state_dir=tmp_path, brokers=2)
    with pytest.raises(ConfigError, match="distinct ports"):
        local.StackConfig(state_dir=tmp_path, kafka_port=29092, prometheus_port=29192, brokers=3)


def test_status_says_which_partitions_a_node_leads_and_which_lack_replicas() -> None:
    described = [
        {
            "topic": "runstream.events",
            "partitions": [
                {"partition": 1, "leader": 2, "replicas": [2, 3, 1], "isr": [2, 3]},
                {"partition": 0, "leader": 1, "replicas": [1, 2, 3], "isr": [1, 2, 3]},
            ],
        }
    ]
    assert partition_roles(described, 2) == (
        "node 2 · leads p1 · in the ISR of 2/2 · under-replicated: p1 isr=[2, 3]"
    )
    assert partition_roles(described, 1).startswith("node 1 · leads p0 · in the ISR of 1/2")
