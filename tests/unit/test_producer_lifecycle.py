"""The process around a run: exit, uncaught exceptions, SIGTERM, fork, system metrics.

Each case runs a real child process whose broker address is a closed port, so every event it
sends stays in its spool; the test then reads the spool back and checks what the child said.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from runstream.schemas import EventRecord, Metrics, RankFinished
from tests.ports import REFUSED
from tests.spooled import bodies, spooled_events


def run_child(
    tmp_path: Path, body: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = "from runstream.producer import start_run\n" + textwrap.dedent(body)
    child_env = {
        **os.environ,
        "RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool"),
        "RUNSTREAM_BOOTSTRAP_SERVERS": REFUSED,
        "RUNSTREAM_CLOSE_TIMEOUT": "0.5",
        **(env or {}),
    }
    child_env.pop("RUNSTREAM_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-c", script],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def finished_states(events: list[EventRecord]) -> list[tuple[str, str | None]]:
    return [(body.state, body.reason) for body in bodies(events, RankFinished)]


def test_normal_exit_without_complete_marks_completed(tmp_path: Path) -> None:
    result = run_child(
        tmp_path, "run = start_run('lifecycle', run_id='exit-ok')\nrun.log('x', 1.0)\n"
    )
    assert result.returncode == 0, result.stderr
    assert finished_states(spooled_events(tmp_path / "spool")) == [("completed", None)]
    assert "shipper_crashed" not in result.stderr, "closing at exit stops the courier cleanly"


def test_a_run_closed_without_an_end_leaves_the_process_quietly(tmp_path: Path) -> None:
    result = run_child(
        tmp_path, "run = start_run('lifecycle', run_id='closed')\nrun.log('x', 1.0)\nrun.close()\n"
    )
    assert result.returncode == 0, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    assert finished_states(spooled_events(tmp_path / "spool")) == []


def test_uncaught_exception_marks_failed_with_traceback(tmp_path: Path) -> None:
    result = run_child(tmp_path, "run = start_run('lifecycle')\nraise RuntimeError('diverged')\n")
    assert result.returncode == 1
    [(state, reason)] = finished_states(spooled_events(tmp_path / "spool"))
    assert state == "failed"
    assert reason is not None
    assert "RuntimeError: diverged" in reason
    assert "Traceback" in reason


def test_sigterm_marks_canceled_and_still_terminates(tmp_path: Path) -> None:
    body = """
        import os, signal
        run = start_run('lifecycle')
        run.log('loss', 0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        import time; time.sleep(30)
    """
    result = run_child(tmp_path, body)
    assert result.returncode == -signal.SIGTERM
    events = spooled_events(tmp_path / "spool")
    assert finished_states(events) == [("canceled", "terminated (SIGTERM)")]
    assert bodies(events, Metrics), "what was logged before is kept"


def test_sigterm_during_close_still_ends_the_run_canceled(tmp_path: Path) -> None:
    body = """
        import os, signal, threading
        run = start_run('lifecycle')
        run.log('loss', 0.5)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        run.close(timeout=2.0)  # the broker is away: it waits, and SIGTERM comes meanwhile
        print('close returned')
    """
    result = run_child(tmp_path, body)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "close returned" not in result.stdout
    events = spooled_events(tmp_path / "spool")
    assert finished_states(events) == [("canceled", "terminated (SIGTERM)")]


def test_with_block_marks_failed_on_exception(tmp_path: Path) -> None:
    body = """
        try:
            with start_run('lifecycle') as run:
                run.log('loss', 1.0)
                raise ValueError('bad batch')
        except ValueError:
            pass
    """
    result = run_child(tmp_path, body)
    assert result.returncode == 0, result.stderr
    [(state, reason)] = finished_states(spooled_events(tmp_path / "spool"))
    assert state == "failed"
    assert reason is not None
    assert "bad batch" in reason


def test_forked_child_gets_its_own_identity_and_never_ends_the_run(tmp_path: Path) -> None:
    body = """
        import os
        run = start_run('lifecycle', run_id='forking')
        run.log('parent', 1.0)
        pid = os.fork()
        if pid == 0:
            run.log('child', 2.0)
            run.close(timeout=1)
            os._exit(0)
        os.waitpid(pid, 0)
        run.complete(timeout=1)
    """
    result = run_child(tmp_path, body)
    assert result.returncode == 0, result.stderr
    events = spooled_events(tmp_path / "spool")
    by_name: dict[str, object] = {}
    for event in events:
        if isinstance(event.body, Metrics):
            by_name[event.body.values[0][0]] = event.producer_id
    assert by_name["parent"] != by_name["child"]
    identities = [(e.producer_id, e.seq) for e in events]
    assert len(identities) == len(set(identities))
    assert finished_states(events) == [("completed", None)]


def test_a_multiprocessing_worker_leaving_through_os_exit_closes_its_session(
    tmp_path: Path,
) -> None:
    """A DataLoader worker is forked by multiprocessing and ends in `os._exit` (no atexit): what
    it logged just before still reaches its spool (and Kafka, when it answers).
    """
    body = """
        import multiprocessing
        run = start_run('lifecycle', run_id='worker')

        def work():
            run.log('worker', 3.0)  # then straight out: the next round is a flush interval away

        worker = multiprocessing.get_context('fork').Process(target=work)
        worker.start()
        worker.join()
        assert worker.exitcode == 0
        run.complete(timeout=0.5)
    """
    result = run_child(tmp_path, body)
    assert result.returncode == 0, result.stderr
    names = [
        name
        for body_ in bodies(spooled_events(tmp_path / "spool"), Metrics)
        for name, _ in body_.values
    ]
    assert names == ["worker"]


def test_system_metrics_when_enabled(tmp_path: Path) -> None:
    body = """
        import time
        run = start_run('lifecycle')
        run.log('loss', 1.0, step=5)
        time.sleep(1.0)
        run.complete(timeout=1)
    """
    result = run_child(tmp_path, body, {"RUNSTREAM_SYSTEM_METRICS_INTERVAL": "0.2"})
    assert result.returncode == 0, result.stderr
    samples = [
        body_
        for body_ in bodies(spooled_events(tmp_path / "spool"), Metrics)
        if body_.values[0][0].startswith("system/")
    ]
    assert len(samples) >= 2
    names = {name for name, _ in samples[0].values}
    assert {"system/process_cpu_percent", "system/process_rss_bytes"} <= names
    assert all(s.step == 5 for s in samples), "samples sit at the current step: no fake progress"
