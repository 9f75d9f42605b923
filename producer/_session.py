"""Starting and joining runs: `start_run` (Azure `Experiment.start_logging`) and `get_run`
(Azure `Run.get_context`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TypeVar

from runstream._config import ProducerConfig
from runstream.producer._async import AsyncRun
from runstream.producer._base import RunBase
from runstream.producer._context import RunContext, launcher_run_id, new_run_id, ranks_from
from runstream.producer._lifecycle import watch_process
from runstream.producer._problems import ErrorCallback
from runstream.producer._run import Run

logger = logging.getLogger("runstream.producer")
_R = TypeVar("_R", bound=RunBase)


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    params: Mapping[str, object] | None = None,
    tags: Mapping[str, object] | None = None,
    run_id: str | None = None,
    *,
    config: ProducerConfig | None = None,
    on_error: ErrorCallback | None = None,
) -> Run:
    """Start (or, in a distributed job, join) a run and return this process's handle on it.

    Without `config`, settings come from `RUNSTREAM_*` variables (defaults: the local stack).
    Only rank 0 announces the run (params, tags); every rank logs, heartbeats and finishes its own.
    """
    return _open(Run, experiment, name, params, tags, run_id, config, on_error)


def start_async_run(
    experiment: str | None = None,
    name: str | None = None,
    params: Mapping[str, object] | None = None,
    tags: Mapping[str, object] | None = None,
    run_id: str | None = None,
    *,
    config: ProducerConfig | None = None,
    on_error: ErrorCallback | None = None,
) -> AsyncRun:
    """`start_run` for asyncio code: the handle's waiting calls are coroutines."""
    return _open(AsyncRun, experiment, name, params, tags, run_id, config, on_error)


def _open(
    kind: type[_R],
    experiment: str | None,
    name: str | None,
    params: Mapping[str, object] | None,
    tags: Mapping[str, object] | None,
    run_id: str | None,
    config: ProducerConfig | None,
    on_error: ErrorCallback | None,
) -> _R:
    from runstream._settings import Settings  # noqa: PLC0415 - entry point reads the environment

    settings = Settings()
    env = os.environ
    rank, world_size, local_rank = ranks_from(env)
    context = RunContext(
        run_id=run_id or settings.run_id or launcher_run_id(env) or new_run_id(),
        experiment=experiment or settings.experiment,
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        name=name or settings.run_name,
    )
    run = kind(context, config or settings.producer(), params=params, tags=tags, on_error=on_error)
    watch_process(run)
    return run


_current: Run | None = None


def get_run() -> Run:
    """This process's run: the one `runstream run` or a distributed launcher set up (Azure
    `Run.get_context()`); one per process, created on first call.

    With no run configured (no `RUNSTREAM_RUN_ID`, no launcher job id) it still returns a working
    run — a new local one, delivered when a broker is reachable — and warns once.
    """
    global _current  # noqa: PLW0603 - one run per process, like Azure's context
    if _current is None or _current.finished is not None:
        if _configured_run_id() is None:
            logger.warning("no run configured (RUNSTREAM_RUN_ID unset): logging to a new local run")
        _current = start_run()
    return _current


def _configured_run_id() -> str | None:
    """The run id `RUNSTREAM_RUN_ID` or a launcher's job id names, if any."""
    from runstream._settings import Settings  # noqa: PLC0415 - entry point reads the environment

    return Settings().run_id or launcher_run_id(os.environ)
