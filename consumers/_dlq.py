"""The consumers' own writes to Kafka: `ServiceProducer` (one producer builder for dead letters
and the watchdog's verdicts) and `DeadLetterQueue`.

`ServiceProducer` starts an idempotent, acks=all aiokafka producer on first use (public API only),
sends a list of messages and waits for every acknowledgement under one timeout. Kafka trouble is a
retriable `TransportError`, so the caller's batch or tick is retried; a refused login is a
`ServiceMisconfigured` (retrying cannot help).

A dead letter keeps the original key and value and carries headers with the reason, a detail and
the source topic, partition and offset. One the dead-letter topic cannot take (larger than
`max_bytes`, or refused by the broker as too large: lz4 batches let such records onto the events
topic) goes by reference instead: its first `REFERENCE_BYTES` bytes, the same headers, and
`by_reference: true` with `source_size`; the source record stays where the headers say. So no
partition ever stalls on one record. Delivery to the dead-letter topic is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)

from runstream._config import KafkaConfig
from runstream._errors import TransportError
from runstream.consumers._decode import DeadLetter
from runstream.consumers._failfast import explain_bootstrap_failure
from runstream.consumers._topics import start_producer

REFERENCE_BYTES = 1024
"""How much of a record a by-reference dead letter keeps."""
DLQ_MAX_BYTES = 900_000
"""What a dead letter may weigh before it goes by reference (Kafka's default limit is 1 MiB)."""
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)

Message = tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]
"""(topic, value, key, headers)."""


class ServiceProducer:
    """A lazily started producer for a service's own messages, with one timeout per send."""

    def __init__(self, kafka: KafkaConfig, *, timeout: float = 30.0) -> None:
        self.kafka = kafka
        self.timeout = timeout
        self._producer: Any = None

    async def _started(self) -> Any:
        if self._producer is None:
            try:
                self._producer = await start_producer(self.kafka)
            except KafkaConnectionError as exc:
                fatal = await explain_bootstrap_failure(self.kafka)
                if fatal is not None:
                    raise fatal from exc
                raise
        return self._producer

    async def send_all(self, messages: Sequence[Message], what: str) -> list[BaseException | None]:
        """Send `messages` and wait for each; return each one's error (None when acknowledged).

        Raises a retriable `TransportError` naming `what` when Kafka cannot be reached in time.
        """
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._started()
                futures = [await _send_one(producer, message) for message in messages]
                results = await asyncio.gather(*futures, return_exceptions=True)
        except (KafkaError, TimeoutError) as exc:
            raise TransportError(f"cannot send {what}: {exc!r}", retriable=True) from exc
        return [r if isinstance(r, BaseException) else None for r in results]

    async def stop(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(producer.stop(), self.timeout)


async def _send_one(producer: Any, message: Message) -> asyncio.Future[Any]:
    """The delivery future of one message; one the producer refuses as too large, failed."""
    topic, value, key, headers = message
    try:
        future: asyncio.Future[Any] = await producer.send(topic, value, key=key, headers=headers)
    except _TOO_LARGE as exc:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
    return future


def by_reference(letter: DeadLetter) -> DeadLetter:
    """`letter` with only the first `REFERENCE_BYTES` of its key and value, its size remembered."""
    key = letter.key[:REFERENCE_BYTES] if letter.key else letter.key
    value = letter.value[:REFERENCE_BYTES]
    return replace(letter, key=key, value=value, source_size=len(letter.value))


class DeadLetterQueue:
    """Dead letters onto `kafka.dlq_topic`, by value, or by reference when too large."""

    def __init__(
        self, kafka: KafkaConfig, *, timeout: float = 30.0, max_bytes: int = DLQ_MAX_BYTES
    ) -> None:
        self.kafka = kafka
        self.max_bytes = max_bytes
        self._producer = ServiceProducer(kafka, timeout=timeout)

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Produce `letters` and wait until the broker has them all."""
        if not letters:
            return
        fitting = [self._fitting(letter) for letter in letters]
        errors = await self._send(fitting)
        refused = [letter for letter, error in zip(fitting, errors, strict=True) if error]
        if any(not isinstance(error, _TOO_LARGE) for error in errors if error):
            raise TransportError(f"dead-letter topic refused: {errors!r}", retriable=True)
        if refused:  # the broker's limit is lower than ours: send those by reference
            errors = await self._send([by_reference(letter) for letter in refused])
            if any(errors):
                raise TransportError(f"dead-letter topic refused: {errors!r}", retriable=True)

    def _fitting(self, letter: DeadLetter) -> DeadLetter:
        size = len(letter.value) + len(letter.key or b"")
        return by_reference(letter) if size > self.max_bytes else letter

    async def _send(self, letters: Sequence[DeadLetter]) -> list[BaseException | None]:
        topic = self.kafka.dlq_topic
        messages = [(topic, d.value, d.key, d.headers()) for d in letters]
        return await self._producer.send_all(messages, "dead letters")

    async def stop(self) -> None:
        """Flush and close the producer."""
        await self._producer.stop()
