"""Which partition of the events topic a run's events are on, and who is told when that changes.

Every event is keyed by its run id and partitioned by Kafka's default partitioner (murmur2 of the
key, as the courier, the watchdog and every Kafka client do), so a consumer that knows its
partitions knows which runs are its own.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol

from aiokafka.partitioner import murmur2

_POSITIVE = 0x7FFFFFFF


def partition_of(run_id: str, partition_count: int) -> int:
    """The partition of a topic with `partition_count` partitions that `run_id`'s events go to."""
    hashed: int = murmur2(run_id.encode())
    return (hashed & _POSITIVE) % partition_count


class PartitionOwner(Protocol):
    """Told by the consume loop which partitions it owns after each rebalance."""

    async def partitions_changed(self, owned: Set[int], partition_count: int) -> None:
        """`owned`: the partition numbers this consumer has now, of `partition_count`."""
