"""System metrics of the training process: CPU, memory and, where NVIDIA's library answers, GPUs.

Off by default (`system_metrics_interval=0`): sampling costs the host a little CPU and most users
already run node exporters. When on, samples are logged as ordinary metrics named `system/...`
at the heartbeat tick, with the step counting samples.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psutil


class SystemSampler:
    """Reads this process's and the machine's resource use."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only primes the counter
        self._nvml: Any = _load_nvml()

    def sample(self) -> dict[str, float]:
        """One reading: names under `system/` mapped to values."""
        memory = self._process.memory_info()
        values = {
            "system/process_cpu_percent": self._process.cpu_percent(None),
            "system/process_rss_bytes": float(memory.rss),
            "system/machine_memory_percent": psutil.virtual_memory().percent,
            "system/machine_cpu_percent": psutil.cpu_percent(None),
        }
        values.update(self._gpus())
        return values

    def _gpus(self) -> dict[str, float]:
        if self._nvml is None:
            return {}
        values: dict[str, float] = {}
        with contextlib.suppress(Exception):  # a GPU that stops answering must not stop training
            for index in range(self._nvml.nvmlDeviceGetCount()):
                handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                values[f"system/gpu{index}_utilization_percent"] = float(rates.gpu)
                values[f"system/gpu{index}_memory_used_bytes"] = float(memory.used)
        return values


def _load_nvml() -> Any:
    """NVIDIA's management library when installed (nvidia-ml-py) and a driver answers."""
    try:
        import pynvml  # noqa: PLC0415 - optional dependency (extra `gpu`)

        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml
