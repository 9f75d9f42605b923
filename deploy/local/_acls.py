"""What each role may do on the secure stack's Kafka (KRaft's `StandardAuthorizer`).

    trainer   write and describe the events topic (nothing else: no reads, no DLQ, no topics)
    persist   read the events and verdict topics (any consumer group), write the dead-letter topic
    export    read the events and verdict topics (any consumer group), write the dead-letter topic
    watchdog  read the events topic, write the verdict topic (it alone), write the dead-letter topic

So a trainer's credentials cannot forge a watchdog verdict: the consumers trust verdicts only from
the verdict topic (one on the events topic is a dead letter).

Only the stack's admin (a super user, as is the nodes' own certificate on the controller
listener) creates or deletes topics. The ACLs are created by the first node's `configure`, over
the admin's connection, with Kafka's CreateAcls request (aiokafka's admin client has no call for
it); creating one that exists changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest

from runstream._config import KafkaConfig
from runstream.deploy.local._secure import KAFKA_ROLE_USERS

_TOPIC, _GROUP = 2, 3
_LITERAL = 3
_READ, _WRITE, _DESCRIBE = 3, 4, 8
_ALLOW = 3
_ANY_GROUP = "*"

Grant = tuple[str, int, str, int]
"""(role, resource type, resource name, operation)."""


def grants(kafka: KafkaConfig) -> Iterator[Grant]:
    """Every ACL of the secure stack on `kafka`'s topics, as (role, resource type, name,
    operation).
    """
    for role in KAFKA_ROLE_USERS:
        yield role, _TOPIC, kafka.topic, _DESCRIBE
    yield "trainer", _TOPIC, kafka.topic, _WRITE
    yield "watchdog", _TOPIC, kafka.verdict_topic, _WRITE
    for role in ("persist", "export", "watchdog"):
        yield role, _TOPIC, kafka.topic, _READ
        yield role, _TOPIC, kafka.verdict_topic, _DESCRIBE
        yield role, _GROUP, _ANY_GROUP, _READ
        yield role, _GROUP, _ANY_GROUP, _DESCRIBE
        yield role, _TOPIC, kafka.dlq_topic, _WRITE
        yield role, _TOPIC, kafka.dlq_topic, _DESCRIBE
    for role in ("persist", "export"):
        yield role, _TOPIC, kafka.verdict_topic, _READ


async def grant_roles(admin: KafkaConfig) -> None:
    """Create every ACL of `grants` for `admin`'s topics, as the admin."""
    client = AIOKafkaClient(**admin.client_options())
    await client.bootstrap()
    try:
        node = client.get_random_node()
        for role, kind, name, operation in grants(admin):
            principal = f"User:{KAFKA_ROLE_USERS[role]}"
            request = CreateAclsRequest(kind, name, _LITERAL, principal, "*", operation, _ALLOW)
            response = await client.send(node, request)
            for code, message in response.creation_responses:
                if code:
                    raise for_code(code)(f"ACL {principal} {operation} {name}: {message}")
    finally:
        await client.close()
