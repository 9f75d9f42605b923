"""A broker that freezes and thaws under a `runstream run`: no copy of an event the courier
handed to Kafka may reach the topic after its resend. What is asserted: the run ends `completed`,
PostgreSQL holds each logged step once, and, reading the topic back in offset order, each
producer session's `seq` rises strictly (no duplicate, nothing older after something newer).

The test's own broker (tests/integration/private.py) is paused with SIGSTOP and resumed with
SIGCONT by its pid, over and over, while a real child process logs steadily. Paused, the broker's
kernel still accepts connections and buffers requests; resumed, it answers all of them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from runstream.deploy.local import StackEndpoints
from runstream.deploy.local import _process as process
from runstream.deploy.local._kafka import KafkaBroker
from runstream.schemas import EventRecord, default_codec
from tests.harness import Harness, end_offsets, read_topic

# Each pause outlasts the courier's send timeout (RUNSTREAM_SEND_TIMEOUT below), so that sends
# time out and are retried while the broker holds the first copies; each resume lets the
# broker answer what it buffered.
_SEND_TIMEOUT = 2.0
_PAUSED = 4.0
_RESUMED = 2.0
_CYCLES = 4
_TRAINING = (_PAUSED + _RESUMED) * _CYCLES + 5.0  # the pauses fit while it logs

_STEADY_TRAINER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from runstream.producer import get_run
    run = get_run()
    step, end = 0, time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        run.log("loss", float(step), step=step)
        step += 1
        time.sleep(0.005)
    Path(sys.argv[2]).write_text(str(step))
""")


def pause_cycles(pid: int, cycles: int, paused: float, resumed: float) -> None:
    """SIGSTOP the process, wait `paused`, SIGCONT it, wait `resumed`; `cycles` times."""
    for _ in range(cycles):
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(paused)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(resumed)


def out_of_order(events: list[EventRecord]) -> list[str]:
    """Where, in topic order, a producer session's `seq` does not rise strictly: the session,
    the seq before and the seq found."""
    last: dict[str, int] = {}
    found = []
    for event in events:
        session, seq = event.producer_id, event.seq
        if session in last and seq <= last[session]:
            found.append(f"{session}: {last[session]} then {seq}")
        last[session] = seq
    return found


async def topic_in_order(harness: Harness) -> dict[int, list[EventRecord]]:
    """Every event of the harness's topic, decoded, per partition in offset order."""
    total = sum((await end_offsets(harness.kafka, harness.kafka.topic)).values())
    records = await read_topic(harness.kafka, harness.kafka.topic, count=total, within=60)
    assert len(records) == total, "the whole topic was read"
    codec = default_codec()
    by_partition: dict[int, list[EventRecord]] = defaultdict(list)
    for record in records:  # read_topic sorts by (partition, offset)
        by_partition[record.partition].append(codec.decode(record.value))
    return by_partition


@pytest.mark.slow
async def test_a_broker_paused_and_resumed_under_a_run_stores_each_event_once_and_in_order(
    stack: StackEndpoints, private_kafka: KafkaBroker, tmp_path: Path
) -> None:
    async with Harness.create(
        private_kafka.address, stack.admin_url, tmp_path, writer_url=stack.writer_url
    ) as harness:
        harness.service("persist").start()
        env = {
            **os.environ,
            **harness.env(RUNSTREAM_SEND_TIMEOUT=str(_SEND_TIMEOUT)),
        }
        run_id = f"fence-{uuid.uuid4().hex[:12]}"
        steps_file = tmp_path / "steps"
        command = [sys.executable, "-m", "runstream.cli", "run", "--run-id", run_id, "--"]
        command += [sys.executable, "-c", _STEADY_TRAINER, str(_TRAINING), str(steps_file)]
        launcher = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.DEVNULL
        )
        try:
            logging = f"SELECT count(*) > 0 FROM metrics WHERE run_id = '{run_id}'"
            assert await harness.wait_for_rows(logging, True, within=60), "the child logs"
            broker = process.recorded_pid(private_kafka.pid_file)
            assert broker is not None
            await asyncio.to_thread(pause_cycles, broker, _CYCLES, _PAUSED, _RESUMED)
            assert await asyncio.wait_for(launcher.wait(), 120) == 0
        finally:
            if launcher.returncode is None:
                launcher.kill()
                await launcher.wait()
        steps = int(steps_file.read_text())
        final = (
            "SELECT count(*) FROM status_events WHERE run_id = $1 AND source = 'launcher' "
            "AND state <> 'running'"
        )
        assert await harness.wait_for_rows(final.replace("$1", f"'{run_id}'"), 1, within=60)
        query = f"SELECT count(*) FROM metrics WHERE run_id = '{run_id}'"
        assert await harness.wait_for_rows(query, steps, within=60) == steps
        await asyncio.sleep(2.0)  # a late duplicate would show now
        assert await harness.fetchval(query) == steps, "no duplicate rows"
        distinct = f"SELECT count(DISTINCT step) FROM metrics WHERE run_id = '{run_id}'"
        assert await harness.fetchval(distinct) == steps
        status = "SELECT status FROM runs WHERE run_id = $1"
        assert await harness.fetchval(status, run_id) == "completed"
        partitions = await topic_in_order(harness)
        assert [out_of_order(events) for events in partitions.values()] == [
            [] for _ in partitions
        ], "each producer session's seq rises strictly in offset order"
