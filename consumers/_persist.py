"""`runstream consume persist`: every event into PostgreSQL, exactly once; bad input to the DLQ.

`PersistSink` writes a partition's batch in one transaction (`EventStore`), then produces its dead
letters; only then does the loop commit the batch's offsets. When PostgreSQL refuses the data of a
batch (not the database being away, which pauses and retries), the batch is written again one event
per transaction and the events PostgreSQL refuses become dead letters with reason `db_rejected`, so
no partition can stall on one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from runstream._config import DatabaseConfig, KafkaConfig, StorageConfig
from runstream.consumers._database import Database, RejectedByDatabase
from runstream.consumers._decode import DeadLetter, DecodedBatch, dead_letter
from runstream.consumers._dlq import DeadLetterQueue
from runstream.consumers._health import ConsumerHealth
from runstream.consumers._loop import ConsumeLoop, LoopOptions
from runstream.consumers._maintenance import Maintenance
from runstream.consumers._store import EventStore, create_staging_tables
from runstream.schemas import EventRecord, Metrics, default_codec

log = logging.getLogger("runstream.consumers")


class PersistSink:
    """Writes batches to PostgreSQL, then their dead letters to the dead-letter topic."""

    def __init__(
        self, database: Database, dlq: DeadLetterQueue, maintenance: Maintenance | None = None
    ) -> None:
        self._database = database
        self._dlq = dlq
        self._store = EventStore()
        self._maintenance = maintenance

    async def write(self, batch: DecodedBatch) -> None:
        """One transaction for the batch's events, then its dead letters (may raise retriable)."""
        rejected: list[DeadLetter] = []
        if batch.events:
            try:
                async with self._database.connection() as conn:
                    await self._store.write(conn, batch.events, batch.offsets)
                self._note_written(batch.events)
            except RejectedByDatabase as exc:
                log.warning("PostgreSQL refused a batch (%s); writing it event by event", exc)
                rejected = await self._write_each(batch)
        await self._dlq.send(batch.dead + rejected)
        batch.dead.extend(rejected)

    def _note_written(self, events: Sequence[EventRecord]) -> None:
        if self._maintenance is not None:
            self._maintenance.written({e.run_id for e in events if type(e.body) is Metrics})

    async def _write_each(self, batch: DecodedBatch) -> list[DeadLetter]:
        rejected = []
        for event, record in zip(batch.events, batch.sources, strict=True):
            try:
                async with self._database.connection() as conn:
                    await self._store.write(conn, [event], [record.offset])
                self._note_written([event])
            except RejectedByDatabase as exc:
                rejected.append(dead_letter(record, "db_rejected", str(exc)))
        return rejected


class PersistService:
    """The persist consumer: Kafka → PostgreSQL, offsets after commit, health on `registry`."""

    def __init__(
        self,
        kafka: KafkaConfig,
        database: DatabaseConfig,
        *,
        registry: CollectorRegistry,
        options: LoopOptions | None = None,
        storage: StorageConfig | None = None,
    ) -> None:
        self.options = options or LoopOptions.persist()
        self.health = ConsumerHealth(registry)
        self._database = Database(database, init=create_staging_tables)
        self._dlq = DeadLetterQueue(kafka, timeout=self.options.kafka_timeout)
        self.maintenance = Maintenance(self._database, storage or StorageConfig(), registry)
        sink = PersistSink(self._database, self._dlq, self.maintenance)
        self._loop = ConsumeLoop(kafka, self.options, sink, self.health, default_codec())

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then commit, leave the group and close connections.

        Storage upkeep (compaction, retention) runs beside the loop and stops with it.
        """
        upkeep = asyncio.create_task(self.maintenance.run(stop))
        try:
            await self._loop.run(stop)
        finally:
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep
            await self._dlq.stop()
            await self._database.close()
