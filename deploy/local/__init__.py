"""The local stack: real Kafka (KRaft), PostgreSQL, Prometheus and Alertmanager as local processes.

    config = StackConfig.from_settings(Settings())
    await up(config)          # idempotent; waits until every service answers
    config.endpoints()        # where they answer; config.env() as RUNSTREAM_* variables
    await down(config)        # stops, by pid, exactly what `up` started

The API is async; `runstream stack …` drives it from the command line.
"""

from runstream.deploy.local._config import StackConfig, StackEndpoints
from runstream.deploy.local._service import Progress, ServiceStatus, StackError, Step
from runstream.deploy.local._stack import (
    down,
    install,
    log_tails,
    purge,
    restart,
    start,
    status,
    stop,
    up,
)

__all__ = [
    "Progress",
    "ServiceStatus",
    "StackConfig",
    "StackEndpoints",
    "StackError",
    "Step",
    "down",
    "install",
    "log_tails",
    "purge",
    "restart",
    "start",
    "status",
    "stop",
    "up",
]
