"""The training-side SDK: start or join a run, log to it, never slow training down.

from runstream.producer import start_run

with start_run(experiment="mnist", params={"lr": 0.01}) as run:
    for step in range(100):
        run.log("loss", 1 / (step + 1), step=step)
"""

from runstream.producer._async import AsyncRun
from runstream.producer._context import RunContext
from runstream.producer._run import Run
from runstream.producer._session import get_run, start_async_run, start_run
from runstream.producer._shipper import CloseReport

__all__ = [
    "AsyncRun",
    "CloseReport",
    "Run",
    "RunContext",
    "get_run",
    "start_async_run",
    "start_run",
]
