"""Persist, export and watchdog services; database migrations; the shared consume loop."""

from runstream._config import EXPORT_GROUP, PERSIST_GROUP, WATCHDOG_GROUP, Address
from runstream._errors import EXIT_CONFIG
from runstream.consumers._collector import RunCollector
from runstream.consumers._database import Database, DatabaseUnavailable, RejectedByDatabase
from runstream.consumers._decode import DeadLetter, DecodedBatch, decode_batch, decode_record
from runstream.consumers._export import ExportService, ExportSink
from runstream.consumers._failfast import ServiceMisconfigured
from runstream.consumers._health import ConsumerHealth, MetricsEndpoint
from runstream.consumers._labels import safe_label
from runstream.consumers._livestate import LiveRun, LiveRuns
from runstream.consumers._loop import BatchSink, ConsumeLoop, LoopOptions
from runstream.consumers._migrate import (
    Migration,
    MigrationError,
    applied_versions,
    shipped_migrations,
    upgrade,
)
from runstream.consumers._persist import PersistService, PersistSink
from runstream.consumers._runstate import RankState, RunState
from runstream.consumers._service import Service, run_until_signalled, run_until_stopped
from runstream.consumers._topics import ensure_topics
from runstream.consumers._verdicts import Verdict, WatchPolicy, judge
from runstream.consumers._watchdog import RunWatchdog
from runstream.consumers._watchhealth import WatchdogHealth

__all__ = [
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
