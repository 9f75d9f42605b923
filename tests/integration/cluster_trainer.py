"""A trainer for the cluster tests: `python cluster_trainer.py RUN_ID VALUES CHUNK PAUSE REPORT`.

Logs VALUES values of metric `v` (step = index) through the real SDK, CHUNK at a time with PAUSE
seconds between chunks, and calls `flush()` after each chunk. After each chunk it appends one JSON
line to REPORT: the time, how many values were logged, whether that flush returned True, and the
p99 of this chunk's `log()` calls in microseconds. It ends with `close()`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from runstream.producer import start_run


def main(run_id: str, values: int, chunk: int, pause: float, report: Path) -> None:
    """Log, flush and report as the module docstring says."""
    run = start_run(experiment="cluster-tests", run_id=run_id)
    with report.open("a") as out:
        for start in range(0, values, chunk):
            took = []
            for step in range(start, min(start + chunk, values)):
                began = time.perf_counter_ns()
                run.log("v", float(step), step=step)
                took.append(time.perf_counter_ns() - began)
            flushed = run.flush(timeout=30.0)
            took.sort()
            p99 = took[int(len(took) * 0.99)] / 1000
            line = {"t": time.time(), "logged": start + len(took), "flushed": flushed, "p99": p99}
            out.write(json.dumps(line) + "\n")
            out.flush()
            time.sleep(pause)
    report_close = run.close(timeout=60.0)
    print(f"closed: {report_close}", flush=True)


if __name__ == "__main__":
    run_id, values, chunk, pause, report = sys.argv[1:6]
    main(run_id, int(values), int(chunk), float(pause), Path(report))
