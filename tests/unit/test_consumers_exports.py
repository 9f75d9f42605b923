"""The public names of `runstream.consumers`: changing them is an API change."""

from __future__ import annotations

import runstream.consumers


def test_exported_names() -> None:
    assert runstream.consumers.__all__ == [
        "EXIT_CONFIG",
        "EXPORT_GROUP",
        "PERSIST_GROUP",
        "WATCHDOG_GROUP",
        "Address",
        "BatchSink",
        "ConsumeLoop",
        "ConsumerHealth",
        "Database",
        "DatabaseUnavailable",
        "DeadLetter",
        "DecodedBatch",
        "ExportService",
        "ExportSink",
        "LiveRun",
        "LiveRuns",
        "LoopOptions",
        "MetricsEndpoint",
        "Migration",
        "MigrationError",
        "PersistService",
        "PersistSink",
        "RankState",
        "RejectedByDatabase",
        "RunCollector",
        "RunState",
        "RunWatchdog",
        "Service",
        "ServiceMisconfigured",
        "Verdict",
        "WatchPolicy",
        "WatchdogHealth",
        "applied_versions",
        "decode_batch",
        "decode_record",
        "ensure_topics",
        "judge",
        "run_until_signalled",
        "run_until_stopped",
        "safe_label",
        "shipped_migrations",
        "upgrade",
    ]
    assert all(hasattr(runstream.consumers, name) for name in runstream.consumers.__all__)
