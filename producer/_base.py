"""The part of a run handle that `Run` and `AsyncRun` share: identity, logging calls, liveness.

Every logging call validates and encodes in the caller's thread, hands the bytes to the shipper and
returns; nothing here waits on the network. Only `flush`, `close` and the lifecycle calls that end
the run (`complete`, `fail`, `cancel`) block, each bounded by its timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from runstream._config import ProducerConfig
from runstream._errors import ClosedError, ValidationError
from runstream.producer._context import RunContext
from runstream.producer._hotstate import fast_log, new_log_state
from runstream.producer._problems import ErrorCallback, ProblemReporter
from runstream.producer._shipper import CloseReport, Shipper
from runstream.producer._values import Cell, run_started_body, string_map, table_row
from runstream.schemas import (
    check_name,
    check_seconds,
    check_size,
    check_step,
    check_text,
    check_value,
    default_codec,
    event_record,
    kinds,
)
from runstream.schemas._fast import MetricsWriter
from runstream.schemas._rules import MESSAGE_MAX, STEP_MAX

if TYPE_CHECKING:
    from runstream.producer._system import SystemSampler


class RunBase:
    """What `Run` and `AsyncRun` share: identity, every logging call, liveness, ending the run."""

    def __init__(
        self,
        context: RunContext,
        config: ProducerConfig,
        *,
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, object] | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self.context = context
        self.config = config
        self.problems = ProblemReporter(on_error)
        self._codec = default_codec()
        self._key = context.run_id.encode()
        self._state = new_log_state()  # what every `log()` reads and changes, C's and Python's
        self.expect_next_in: float | None = None
        self.finished: str | None = None
        self.forked_child = False
        self._last_heartbeat = self._last_sample = time.monotonic()
        self._sampler: SystemSampler | None = None
        run_params, run_tags = string_map("params", params), string_map("tags", tags)
        self._start_session()
        if context.rank == 0:
            try:
                self._emit(kinds.RUN_STARTED, run_started_body(context, run_params, run_tags))
            except ValidationError:  # nothing was logged: leave no thread and no folder behind
                self._shipper.close(0.0)
                raise

    def _start_session(self) -> None:
        """A producer session: identity (producer_id, seq) and the shipper that owns the spool."""
        self._shipper = Shipper(self.config, self.problems, self._key, on_tick=self._tick)
        self.producer_id = self._shipper.producer_id
        self._state.new_session()
        c = self.context
        self._metrics = MetricsWriter(
            self._codec, c.run_id, c.experiment, c.rank, c.world_size, self.producer_id
        )
        self._fast_log = fast_log(self._state, self._metrics, self._shipper.intake)

    def restart_after_fork(self) -> None:
        """In a forked child: a new producer session, so identities never meet the parent's."""
        self.forked_child = True
        self._shipper.forget_after_fork()
        self._parent_shipper = self._shipper  # the parent's: never collected, never closed here
        self._start_session()

    # -- identity ------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id (the Kafka key of its events)."""
        return self.context.run_id

    @property
    def id(self) -> str:
        """Azure's name for `run_id`."""
        return self.context.run_id

    @property
    def experiment(self) -> str:
        """The run's experiment."""
        return self.context.experiment

    @property
    def events_logged(self) -> int:
        """Events this process handed to the shipper so far (heartbeats included)."""
        return self._shipper.submitted

    @property
    def rank(self) -> int:
        """This process's rank (0 when not distributed)."""
        return self.context.rank

    # -- scalars ---------------------------------------------------------------------------------

    def log(self, name: str, value: object, step: int | None = None) -> None:
        """Log one value. Numbers are metrics; strings are text metrics (Azure `run.log`).

        An omitted step continues this name's own count (0, 1, 2…), as repeated Azure logs do.
        The common case (a known name, a float, a plain step) is done in C when it was built
        (`producer/_hotpath.c`), with the same effects as the lines below.
        """
        fast = self._fast_log
        if fast is not None and fast(name, value, step):
            return
        if isinstance(value, str):
            self.log_text(name, value, step)
            return
        state = self._state
        if name not in state.names:
            self._new_name(name)
        number = value if value.__class__ is float else check_value(name, value)
        step = self._step_for(name, step)
        payload = self._metrics.encode_one(
            state.next_seq(), time.time_ns() // 1000, step, name, number
        )
        self._shipper.submit(payload)

    def log_metrics(self, metrics: Mapping[str, object], step: int | None = None) -> None:
        """Log several values at one step (MLflow `log_metrics`, W&B `log`); all or nothing."""
        state = self._state
        pairs = []
        for name, value in metrics.items():
            if name not in state.names:
                self._new_name(name)
            pairs.append((name, check_value(name, value)))
        if step is None:
            step = max((state.steps.get(name, 0) for name, _ in pairs), default=0)
        check_step(step)
        for name, _ in pairs:
            state.steps[name] = step + 1
        state.max_step = max(state.max_step, step)
        payload = self._metrics.encode(state.next_seq(), time.time_ns() // 1000, step, pairs)
        self._shipper.submit(check_size(kinds.METRICS, payload))

    def log_list(self, name: str, values: Iterable[object]) -> None:
        """Log a list of values under one name, at consecutive steps (Azure `log_list`)."""
        if name not in self._state.names:
            self._new_name(name)
        numbers = [check_value(name, v) for v in values]
        for number in numbers:
            self.log(name, number)

    def log_text(self, name: str, value: str, step: int | None = None) -> None:
        """Log a string metric."""
        check_name("name", name)
        check_text(name, value)
        step = self._step_for(name, step)
        self._emit(kinds.TEXT, {"step": step, "name": name, "value": value})

    def _new_name(self, name: str) -> None:
        check_name("name", name)
        names = self._state.names
        if len(names) < 100_000:
            names.add(name)

    def _step_for(self, name: str, step: int | None) -> int:
        """The step to log `name` at (its own count when None); every call counts it.

        A plain int in range is taken without calling `check_step`: this runs on every `log()`.
        """
        state = self._state
        if step is None:  # a name's own count may pass the last step there is
            step = state.steps.get(name, 0)
        if step.__class__ is not int or step < 0 or step > STEP_MAX:
            check_step(step)
        state.steps[name] = step + 1
        state.max_step = max(state.max_step, step)
        return step

    # -- tables, files, params, tags ---------------------------------------------------------

    def log_row(self, table: str, **columns: Cell) -> None:
        """Append one row to a table (Azure `log_row`)."""
        self._emit(
            kinds.TABLE_ROW, {"table": check_name("table", table), "columns": table_row(columns)}
        )

    def log_table(self, table: str, columns: Mapping[str, list[Cell]]) -> None:
        """Log a whole table given as column name -> list of values (Azure `log_table`)."""
        check_name("table", table)
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise ValidationError(
                table, sorted(lengths), "columns of equal length", rule="bad_value"
            )
        rows = [
            table_row(dict(zip(columns, cells, strict=True)))
            for cells in zip(*columns.values(), strict=True)
        ]
        for row in rows:
            self._emit(kinds.TABLE_ROW, {"table": table, "columns": row})

    def log_image(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        plot: Any = None,
        step: int | None = None,
    ) -> None:
        """Log a PNG image from a file or a matplotlib figure (or `pyplot` itself)."""
        from runstream.producer._files import image_bytes  # noqa: PLC0415 - matplotlib is optional

        data = image_bytes(name, path, plot)
        self._log_file(name, "image/png", data, step)

    def upload_file(self, name: str, path: str | os.PathLike[str]) -> None:
        """Attach a small file to the run (size-limited; a clear error above the limit)."""
        from runstream.producer._files import file_bytes  # noqa: PLC0415

        media_type, data = file_bytes(name, path)
        self._log_file(name, media_type, data, None)

    def _log_file(self, name: str, media_type: str, data: bytes, step: int | None) -> None:
        check_name("name", name)
        if step is not None:
            check_step(step)
        body = {"name": name, "media_type": media_type, "step": step, "data": data}
        self._emit(kinds.FILE, body)

    def log_params(self, params: Mapping[str, object]) -> None:
        """Record hyperparameters (values kept as strings, as MLflow does)."""
        self._emit(kinds.PARAMS, {"params": string_map("params", params)})

    def log_param(self, key: str, value: object) -> None:
        """Record one hyperparameter."""
        self.log_params({key: value})

    def set_tags(self, tags: Mapping[str, object]) -> None:
        """Set tags on the run."""
        self._emit(kinds.TAGS, {"tags": string_map("tags", tags)})

    def tag(self, key: str, value: object = "") -> None:
        """Set one tag (Azure `run.tag(key, value=None)`)."""
        self.set_tags({key: "" if value is None else value})

    def log_record(self, level: str, logger: str, message: str) -> None:
        """Ship one log line (used by `RunLogHandler` and `runstream run`'s output capture)."""
        body = {"level": level, "logger": logger, "message": message[:MESSAGE_MAX]}
        self._emit(kinds.LOG_RECORD, body)

    # -- liveness ----------------------------------------------------------------------------

    def report_progress(self, expect_next_in: float | None = None) -> None:
        """Say training progresses, and how many seconds may pass until it next does."""
        if expect_next_in is not None:
            self.expect_next_in = check_seconds("expect_next_in", expect_next_in)
        self._emit(kinds.HEARTBEAT, self._heartbeat_body(progress=True))

    def _tick(self) -> None:
        """Called by the shipper's loop every flush interval: send what is due."""
        now = time.monotonic()
        if self.finished is not None or self.forked_child:
            return  # a forked child (a data loader worker) ships what it logs; the parent beats
        if now - self._last_heartbeat >= self.config.heartbeat_interval:
            self._last_heartbeat = now
            self._emit(kinds.HEARTBEAT, self._heartbeat_body(progress=False))
        interval = self.config.system_metrics_interval
        if interval and now - self._last_sample >= interval:
            self._last_sample = now
            self._log_system_metrics()

    def _log_system_metrics(self) -> None:
        if self._sampler is None:
            from runstream.producer._system import SystemSampler  # noqa: PLC0415 - only when on

            self._sampler = SystemSampler()
        values = self._sampler.sample().items()
        # At the current step, so that a sample never looks like training progress.
        step = max(self._state.max_step, 0)
        payload = self._metrics.encode(self._state.next_seq(), time.time_ns() // 1000, step, values)
        self._shipper.submit(payload)

    def _heartbeat_body(self, *, progress: bool) -> dict[str, Any]:
        max_step = self._state.max_step
        step = max_step if max_step >= 0 else None
        return {"step": step, "progress": progress, "expect_next_in": self.expect_next_in}

    # -- lifecycle -----------------------------------------------------------------------------
    def end(
        self, state: str, reason: str | None, exit_code: int | None, timeout: float | None
    ) -> CloseReport:
        """Mark this rank's end (`completed`, `failed` or `canceled`) once, then flush and close."""
        if self.finished is None:
            self.finished = state
            body = {"state": state, "reason": reason, "exit_code": exit_code}
            self._emit(kinds.RANK_FINISHED, body, final=True)
        return self.close_blocking(timeout)

    def set_status(
        self,
        state: str,
        reason: str | None = None,
        exit_code: int | None = None,
        *,
        source: str = "run",
    ) -> None:
        """Set the whole run's status, over what its ranks said: `runstream run` sends its
        command's outcome with `source="launcher"`. A final state also ends this handle's
        heartbeats and its own `RankFinished`; `close` still delivers what is pending.
        """
        if state not in kinds.RUN_STATES:
            raise ValidationError("state", state, f"one of {', '.join(kinds.RUN_STATES)}")
        check_name("source", source)
        if state in kinds.TERMINAL_STATES and self.finished is None:
            self.finished = state
        body = {"state": state, "reason": reason, "exit_code": exit_code, "source": source}
        self._emit(kinds.STATUS, body)

    def flush_blocking(self, timeout: float | None) -> bool:
        """Block until everything logged so far is acknowledged by Kafka; False on timeout."""
        return self._shipper.flush(self.config.close_timeout if timeout is None else timeout)

    def close_blocking(self, timeout: float | None) -> CloseReport:
        """Deliver what can be delivered within `timeout`, then stop. What is left stays in the
        spool on disk and is delivered by the next process using that spool or `runstream sync`.
        """
        report = self._shipper.close(self.config.close_timeout if timeout is None else timeout)
        if report.remaining:
            self.problems.report(
                "close_incomplete",
                ClosedError(f"{report.remaining} events remain in {report.spool_path}"),
                "run closed before Kafka acknowledged everything; `runstream sync` sends the rest",
            )
        if report.dropped:
            self.problems.report(
                "close_dropped",
                ClosedError(f"{report.dropped} events were dropped: the spool could not take them"),
                "run closed having lost events (see the spool_full / spool_write warnings)",
            )
        return report

    def _emit(self, kind: str, body: Mapping[str, Any], *, final: bool = False) -> None:
        """Build the event around `body` (the envelope is made here only), check and submit it."""
        c = self.context
        record = event_record(
            run_id=c.run_id,
            experiment=c.experiment,
            rank=c.rank,
            world_size=c.world_size,
            producer_id=self.producer_id,
            seq=self._state.next_seq(),
            kind=kind,
            body=body,
        )
        try:
            encoded = self._codec.encode_record(record)
        except UnicodeEncodeError as exc:  # a lone surrogate (an undecodable file name, say)
            bad = exc.object[max(exc.start - 20, 0) : exc.end + 20]
            raise ValidationError(
                kind.rpartition(".")[2], bad, "text without lone surrogates", rule="bad_value"
            ) from exc
        self._shipper.submit(check_size(kind, encoded), final=final)
