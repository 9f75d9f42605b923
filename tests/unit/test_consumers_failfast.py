"""A refused Kafka right names the topic and the setting to check."""

from __future__ import annotations

from aiokafka.errors import TopicAuthorizationFailedError

from runstream._config import KafkaConfig
from runstream.consumers._failfast import refused_right

KAFKA = KafkaConfig(topic="events", verdict_topic="verdicts")


def test_a_refused_topic_names_which_topic_and_its_setting() -> None:
    events = refused_right(KAFKA, TopicAuthorizationFailedError({"events"}), "g")
    verdicts = refused_right(KAFKA, TopicAuthorizationFailedError({"verdicts"}), "g")
    assert "topic 'events' (RUNSTREAM_TOPIC)" in str(events)
    assert "topic 'verdicts' (RUNSTREAM_VERDICT_TOPIC)" in str(verdicts)
