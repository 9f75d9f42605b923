"""The secure stack's Kafka ACLs: who may write and read which topic."""

from __future__ import annotations

from runstream._config import KafkaConfig
from runstream.deploy.local._acls import grants

_TOPIC, _READ, _WRITE = 2, 3, 4
KAFKA = KafkaConfig(topic="events", dlq_topic="dead", verdict_topic="verdicts")


def roles_that(operation: int, topic: str) -> set[str]:
    return {
        role
        for role, kind, name, done in grants(KAFKA)
        if (kind, name, done) == (_TOPIC, topic, operation)
    }


def test_only_the_watchdog_writes_verdicts_and_only_trainers_write_events() -> None:
    assert roles_that(_WRITE, "verdicts") == {"watchdog"}
    assert roles_that(_WRITE, "events") == {"trainer"}
    assert roles_that(_WRITE, "dead") == {"persist", "export", "watchdog"}


def test_persist_and_export_read_both_topics_and_the_watchdog_only_the_events() -> None:
    assert roles_that(_READ, "events") == {"persist", "export", "watchdog"}
    assert roles_that(_READ, "verdicts") == {"persist", "export"}
