"""Reading runs back: runs, curves (per rank or across ranks), tables, files, Azure's metrics.

from runstream.consumers.read import Client

with Client() as client:
    frame = client.metrics(run_id, ["loss", "acc"])          # pandas; frame="polars" / "arrow"

The one place that knows the tables on the read side: the CLI's `runs`, `show`, `metrics`,
`plot` and `watch` read through the same functions (`runstream.consumers.read.queries`).
"""

from runstream._errors import AmbiguousRunError, NotFoundError
from runstream.consumers.read._client import AsyncClient, Client
from runstream.consumers.read._frames import FRAME_KINDS, FrameKind
from runstream.consumers.read._runs import LIVE_STATES, RunFilter

__all__ = [
    "FRAME_KINDS",
    "LIVE_STATES",
    "AmbiguousRunError",
    "AsyncClient",
    "Client",
    "FrameKind",
    "NotFoundError",
    "RunFilter",
]
