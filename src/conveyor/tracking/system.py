"""System metrics of the training process: CPU and memory (psutil), GPUs (NVML).

NVML comes from the optional `nvidia-ml-py` package (`pip install 'conveyor[gpu]'`),
imported only when a run samples. No package, no driver or no GPU means no GPU
metrics, never an error: a reading that fails (power on a GPU without power
management, a GPU that fell off the bus) is left out of that sample only.
"""

from __future__ import annotations

import contextlib
from typing import Any

from conveyor.core.logs import get_logger

log = get_logger(__name__)
_MB = 1 << 20


class SystemSampler:
    """Reads `system/...` metrics; `nvml` may be given (tests pass a fake module)."""

    def __init__(self, nvml: Any = None) -> None:
        import psutil  # type: ignore[import-untyped]

        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the clock
        self._nvml = nvml if nvml is not None else _import_nvml()
        self._gpus = _open_gpus(self._nvml)

    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    def sample(self) -> dict[str, float]:
        """One reading of every available metric."""
        values: dict[str, float] = {}
        with contextlib.suppress(Exception):  # the process table can refuse a read
            values["system/cpu_percent"] = float(self._process.cpu_percent(None))
            values["system/memory_rss_mb"] = self._process.memory_info().rss / _MB
        for index, handle in enumerate(self._gpus):
            for name, read in self._gpu_readings().items():
                try:
                    values[f"system/gpu{index}/{name}"] = float(read(handle))
                except Exception:  # noqa: BLE001 - unsupported reading: leave it out
                    continue
        return values

    def _gpu_readings(self) -> dict[str, Any]:
        nvml = self._nvml
        return {
            "utilization_percent": lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu,
            "memory_used_mb": lambda h: nvml.nvmlDeviceGetMemoryInfo(h).used / _MB,
            "power_w": lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,  # NVML: milliwatts
        }

    def close(self) -> None:
        if self._gpus:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._gpus = []


def _import_nvml() -> Any:
    try:
        import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    return pynvml


def _open_gpus(nvml: Any) -> list[Any]:
    """Handles of every GPU NVML sees; an empty list when there is no driver or GPU."""
    if nvml is None:
        return []
    try:
        nvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded...
        return []
    try:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception as e:  # noqa: BLE001
        log.warning("gpu_metrics_unavailable", error=str(e))
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
        return []
