"""MLflow's fluent tracking API on runstream, switched to with one import line.

Change `import mlflow` to

    import runstream.compat.mlflow as mlflow

and the script logs to runstream with MLflow's meaning of each call:

- `start_run(run_name=, tags=, run_id=, nested=)` starts (or, with `run_id`, joins) a run and
  returns an `ActiveRun` (a context manager: leaving it ends the run `FINISHED`, or `FAILED` with
  the traceback when an exception escapes); `end_run(status)`: FINISHED → completed, FAILED →
  failed, KILLED → canceled. A nested run is a run of its own tagged `mlflow.parentRunId`.
- `set_experiment(name)` names the experiment of the runs started after it (else
  `MLFLOW_EXPERIMENT_NAME`, else runstream's default).
- `log_metric(key, value, step=None)`: MLflow's step defaults to 0, and so it does here;
  `log_metrics`. `log_param(s)` (strings, as MLflow stores them), `set_tag(s)`.
- `log_artifact(path, artifact_path=None)` attaches the file as `artifact_path/name`;
  `log_artifacts(dir)` each file in it; `log_image(image, artifact_file=None, key=None,
  step=None)` a PNG (arrays, PIL images, figures); `log_figure`, `log_text`, `log_dict`.
- A call with no runstream meaning (`set_tracking_uri`, `autolog`, `log_input`) does nothing
  and says so once at WARNING (logger `runstream.compat`); so do keyword arguments runstream
  has no use for (`log_system_metrics=`, `synchronous=`, `timestamp=`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from runstream._errors import RunstreamError
from runstream.compat._media import log_png, png_bytes, say_once
from runstream.producer import Run
from runstream.producer import start_run as _start_run

_ENDINGS = {"FINISHED": "completed", "FAILED": "failed", "KILLED": "canceled"}


class MlflowException(RunstreamError):
    """A call MLflow refuses too (a second active run, an unknown status)."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The part of MLflow's `RunInfo` a script reads."""

    run_id: str
    run_name: str | None
    experiment_id: str

    @property
    def run_uuid(self) -> str:
        """MLflow's older name of `run_id`."""
        return self.run_id


class ActiveRun:
    """What `start_run` returns: `.info.run_id`, and a context manager that ends the run."""

    def __init__(self, run: Run, name: str | None) -> None:
        self.run = run
        self.info = RunInfo(run.run_id, name, run.experiment)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if error is None:
            _end(self, "FINISHED", None)
        else:
            _end(self, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED", error)


_stack: list[ActiveRun] = []
_experiment: list[str] = []


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> str:
    """Name the experiment of the runs started from now on (runstream's ids are its names)."""
    name = experiment_name or experiment_id
    if not name:
        raise MlflowException("set_experiment needs experiment_name or experiment_id")
    _experiment[:] = [name]
    return name


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    tags: Mapping[str, object] | None = None,
    description: str | None = None,
    **ignored: Any,
) -> ActiveRun:
    """Start a run (or join `run_id`); it becomes the active run."""
    if _stack and not nested:
        raise MlflowException(
            f"Run with UUID {_stack[-1].info.run_id} is already active. To start a nested run, "
            "call start_run with nested=True"
        )
    _unused("start_run", ignored)
    run_tags = dict(tags or {})
    if description:
        run_tags["mlflow.note.content"] = description
    if _stack:
        run_tags["mlflow.parentRunId"] = _stack[-1].info.run_id
    experiment = experiment_id or (_experiment[0] if _experiment else None)
    experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or None
    run = _start_run(experiment, run_name, tags=run_tags, run_id=run_id)
    active = ActiveRun(run, run_name)
    _stack.append(active)
    return active


def active_run() -> ActiveRun | None:
    """The innermost active run, or None."""
    return _stack[-1] if _stack else None


def last_active_run() -> ActiveRun | None:
    """The active run, as MLflow's `last_active_run` gives it while one is active."""
    return active_run()


def end_run(status: str = "FINISHED") -> None:
    """End the active run: FINISHED (completed), FAILED or KILLED (canceled)."""
    if _stack:
        _end(_stack[-1], status, None)


def _end(active: ActiveRun, status: str, error: BaseException | None) -> None:
    if status not in _ENDINGS:
        raise MlflowException(f"status={status!r}: expected one of {', '.join(_ENDINGS)}")
    if active in _stack:
        _stack.remove(active)
    state = _ENDINGS[status]
    if state == "completed":
        active.run.complete()
    elif state == "failed":
        active.run.fail(error)
    else:
        active.run.cancel("KILLED" if error is None else str(error))


def _run() -> Run:
    """The active run, started as MLflow does when a logging call comes first."""
    return (active_run() or start_run()).run


def _unused(call: str, ignored: Mapping[str, Any]) -> None:
    for key in ignored:
        say_once("mlflow", f"{call}({key}=...)", "has no runstream meaning: ignored")


def log_metric(key: str, value: float, step: int | None = None, **ignored: Any) -> None:
    """Log a metric at `step` (0 when omitted, as in MLflow)."""
    _unused("log_metric", ignored)
    _run().log(key, float(value), step=step or 0)


def log_metrics(metrics: Mapping[str, float], step: int | None = None, **ignored: Any) -> None:
    """Log several metrics at `step` (0 when omitted)."""
    _unused("log_metrics", ignored)
    _run().log_metrics({k: float(v) for k, v in metrics.items()}, step=step or 0)


def log_param(key: str, value: object, **ignored: Any) -> object:
    """Record a parameter (stored as a string); returns the value, as MLflow does."""
    _run().log_param(key, value)
    return value


def log_params(params: Mapping[str, object], **ignored: Any) -> None:
    """Record parameters."""
    _run().log_params(params)


def set_tag(key: str, value: object, **ignored: Any) -> None:
    """Set a tag."""
    _run().set_tags({key: value})


def set_tags(tags: Mapping[str, object], **ignored: Any) -> None:
    """Set tags."""
    _run().set_tags(tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Attach a file (at most runstream's file size limit) as `artifact_path/name`."""
    name = Path(local_path).name
    _run().upload_file(f"{artifact_path}/{name}" if artifact_path else name, local_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Attach every file under `local_dir`, named by its path below it."""
    root = Path(local_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        _run().upload_file(f"{artifact_path}/{name}" if artifact_path else name, path)


def log_image(
    image: Any, artifact_file: str | None = None, *, key: str | None = None, step: int | None = None
) -> None:
    """Log an image (array, PIL image or figure) as `artifact_file` or under `key` at `step`."""
    name = artifact_file or key
    if not name:
        raise MlflowException("log_image needs artifact_file or key")
    log_png(_run(), name, png_bytes(name, image), step if key else None)


def log_figure(figure: Any, artifact_file: str, **ignored: Any) -> None:
    """Log a matplotlib figure as a PNG named `artifact_file`."""
    _run().log_image(artifact_file, plot=figure)


def log_text(text: str, artifact_file: str) -> None:
    """Attach `text` as the file `artifact_file`."""
    _attach(artifact_file, text.encode())


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    """Attach `dictionary` as JSON in the file `artifact_file`."""
    _attach(artifact_file, json.dumps(dictionary, indent=2).encode())


def _attach(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="runstream-") as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        _run().upload_file(name, path)


def _no_meaning(call: str) -> Any:
    def ignored(*args: Any, **kwargs: Any) -> None:
        say_once("mlflow", f"{call}()", "has no runstream meaning: it did nothing")

    ignored.__name__ = call
    ignored.__doc__ = f"MLflow's `{call}`: nothing to do in runstream (said once)."
    return ignored


set_tracking_uri = _no_meaning("set_tracking_uri")
autolog = _no_meaning("autolog")
log_input = _no_meaning("log_input")
set_registry_uri = _no_meaning("set_registry_uri")


def get_tracking_uri() -> str:
    """Where runstream sends events (its Kafka bootstrap servers)."""
    from runstream._settings import Settings  # noqa: PLC0415 - the environment is the truth

    return f"kafka://{Settings().bootstrap_servers}"
