"""The stack keeps its runstream services alive: SIGKILL one and it serves again by itself,
with the restart counted by `runstream stack status`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from runstream.deploy import local

pytestmark = pytest.mark.serial  # kills the shared stack's services

_BACK_WITHIN = 15.0


def status_json(env: dict[str, str]) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "runstream.cli", "stack", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return {entry["name"]: entry for entry in json.loads(done.stdout)}


async def serving(config: local.StackConfig, name: str) -> local.ServiceStatus:
    statuses = {s.name: s for s in await local.status(config)}
    return statuses[name]


@pytest.mark.parametrize("name", ["persist", "export", "watchdog"])
async def test_a_sigkilled_service_is_back_and_serving_within_15_seconds(
    stack_config: local.StackConfig,
    stack: local.StackEndpoints,
    run_env: dict[str, str],
    name: str,
) -> None:
    before = await serving(stack_config, name)
    assert before.health == "healthy", before
    assert before.pid is not None

    os.kill(before.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    after = before
    while time.monotonic() - killed_at < _BACK_WITHIN:
        after = await serving(stack_config, name)
        if after.health == "healthy" and after.pid not in (None, before.pid):
            break
        await asyncio.sleep(0.25)
    took = time.monotonic() - killed_at

    assert after.health == "healthy", f"{name} not back after {took:.1f}s: {after}"
    assert after.pid != before.pid
    assert after.restarts == before.restarts + 1
    shown = status_json(run_env)[name]
    assert shown["restarts"] == before.restarts + 1
    assert "killed by SIGKILL" in str(shown["detail"])
