"""What every framework integration shares: joining one run from every rank, flat params, numbers.

The run id every rank joins, first found wins: the `run_id` given; `RUNSTREAM_RUN_ID` (read with
the settings) or a launcher's job id (`torchrun`, SLURM, Open MPI: as `get_run()` does); else a
new id, which is put in this process's `RUNSTREAM_RUN_ID` so that the rank processes a framework
launches from it (Lightning's DDP re-runs the script, Transformers and Accelerate use `torchrun`)
join the same run. Rank and world size come from `torch.distributed` once it is initialised (the
framework has set it up by the time its first log arrives), else from the launcher's variables.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runstream._config import ProducerConfig
from runstream.producer._context import RunContext, launcher_run_id, new_run_id, ranks_from
from runstream.producer._lifecycle import watch_process
from runstream.producer._run import Run
from runstream.schemas._rules import VALUE_TEXT_MAX

logger = logging.getLogger("runstream.producer.integrations")
_RUN_ID = "RUNSTREAM_RUN_ID"


def shared_run_id(run_id: str | None) -> str:
    """The run id every rank of this job joins (see the module's docstring)."""
    from runstream._settings import Settings  # noqa: PLC0415 - entry point reads the env

    found = run_id or Settings().run_id or launcher_run_id(os.environ)
    if found is None:
        found = new_run_id()
        os.environ[_RUN_ID] = found
    return found


def _distributed_rank() -> tuple[int, int] | None:
    """(rank, world size) from an initialised `torch.distributed`, or None."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return None
    return int(distributed.get_rank()), int(distributed.get_world_size())


@dataclass(slots=True)
class RunOpener:
    """Opens this process's handle on the run lazily, at the framework's first log.

    After the run ended (`end`), the next log opens it again: a later `trainer.test()` resumes
    the same run (rank 0 announces it again; the run is running until that ends too). A run
    handed in (`given`) is the caller's: it is used as it is and never ended here.
    """

    experiment: str | None
    name: str | None
    run_id: str
    params: Mapping[str, object] | None = None
    tags: Mapping[str, object] | None = None
    config: ProducerConfig | None = None
    run: Run | None = field(default=None, repr=False)
    given: Run | None = field(default=None, repr=False)

    def get(self) -> Run:
        """This process's run, opened on first use."""
        if self.given is not None:
            return self.given
        if self.run is None or self.run.finished is not None:
            self.run = self._open()
        return self.run

    def _open(self) -> Run:
        from runstream._settings import Settings  # noqa: PLC0415 - entry point reads the env

        settings = Settings()
        rank, world_size, local_rank = ranks_from(os.environ)
        rank, world_size = _distributed_rank() or (rank, world_size)
        context = RunContext(
            run_id=self.run_id,
            experiment=self.experiment or settings.experiment,
            rank=rank,
            world_size=world_size,
            local_rank=local_rank,
            name=self.name or settings.run_name,
        )
        first = self.run is None
        run = Run(
            context,
            self.config or settings.producer(),
            params=self.params if first else None,
            tags=self.tags if first else None,
        )
        watch_process(run)
        return run

    def end(self, state: str, error: BaseException | None = None) -> None:
        """End this rank's part of the run (completed, failed with `error`, canceled)."""
        run = self.run
        if self.given is not None or run is None or run.finished is not None:
            return
        if state == "completed":
            run.complete()
        elif state == "failed":
            run.fail(error)
        else:
            run.cancel(str(error) if error else None)


def opener(
    experiment: str | None,
    name: str | None,
    run_id: str | None,
    run: Run | None,
    **options: Any,
) -> RunOpener:
    """The opener of an integration: of `run` when given (its id wins), else of a run of its own."""
    if run is not None:
        return RunOpener(run.experiment, name, run.run_id, given=run)
    return RunOpener(experiment, name, shared_run_id(run_id), **options)


def flat_params(
    params: Mapping[str, Any], prefix: str = "", separator: str = "/"
) -> dict[str, str]:
    """Nested mappings flattened to `a/b` keys; values as strings, cut to the text limit."""
    return dict(_flatten(params, prefix, separator))


def _flatten(params: Mapping[str, Any], prefix: str, separator: str) -> Iterator[tuple[str, str]]:
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}{separator}", separator)
        else:
            yield name, _as_text(name, value)


def _as_text(name: str, value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > VALUE_TEXT_MAX:
        logger.warning("param %s is %d characters long: cut to %d", name, len(text), VALUE_TEXT_MAX)
        text = text[: VALUE_TEXT_MAX - 3] + "..."
    return text


def numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The values that are numbers (Python, NumPy or 0-d tensors) as floats; others left out.

    A value left out is said once per name at WARNING: frameworks put strings in their logs now
    and then, and a metric is a number.
    """
    result: dict[str, float] = {}
    for name, value in metrics.items():
        number = _number(value)
        if number is None:
            _skipped(name, value)
        else:
            result[name] = number
    return result


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    item = getattr(value, "item", None)
    if getattr(value, "ndim", None) != 0 or not callable(item):
        return None
    converted = item()
    return float(converted) if isinstance(converted, int | float) else None


_said: set[str] = set()


def _skipped(name: str, value: object) -> None:
    if name not in _said:
        _said.add(name)
        logger.warning("%s=%r is not a number: not logged as a metric", name, value)
