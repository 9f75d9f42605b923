"""The public API of the local stack, locked."""

from __future__ import annotations

from runstream.deploy import local


def test_exported_names() -> None:
    assert local.__all__ == [
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
    assert all(hasattr(local, name) for name in local.__all__)
