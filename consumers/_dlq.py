"""`DeadLetterQueue`: produces dead letters to the dead-letter topic, bytes unchanged.

Each message keeps the original key and value and carries headers with the reason, a detail and
the source topic, partition and offset. Sending waits for the broker's acknowledgement (acks=all)
under a timeout; a failure is a retriable `TransportError`, so the batch is retried and its
offsets are not committed. Delivery to the dead-letter topic is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from runstream._config import KafkaConfig
from runstream._errors import TransportError
from runstream.consumers._decode import DeadLetter
from runstream.consumers._topics import start_producer


class DeadLetterQueue:
    """A producer for `kafka.dlq_topic`."""

    def __init__(self, kafka: KafkaConfig, *, timeout: float = 30.0) -> None:
        self.kafka = kafka
        self.timeout = timeout
        self._producer: Any = None

    async def _ensure_started(self) -> Any:
        if self._producer is None:
            self._producer = await start_producer(self.kafka)
        return self._producer

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Produce `letters` and wait until the broker has them all."""
        if not letters:
            return
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._ensure_started()
                sent = [
                    await producer.send(
                        self.kafka.dlq_topic, letter.value, key=letter.key, headers=letter.headers()
                    )
                    for letter in letters
                ]
                await asyncio.gather(*sent)
        except (KafkaError, TimeoutError) as exc:
            raise TransportError(f"dead-letter topic unavailable: {exc!r}", retriable=True) from exc

    async def stop(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(producer.stop(), self.timeout)
