"""GPU energy from NVML (the NVIDIA management library), read on a background thread.

pynvml (PyPI `nvidia-ml-py`) is imported only when a GPU is metered; without it, or
without a driver, `PowerSampler.for_gpus` returns None and the meter falls back to an
estimate. Per device, the total-energy counter (Volta and newer, millijoules) is used
when the driver has it; otherwise power (milliwatts) is sampled and integrated.
"""

from __future__ import annotations

import contextlib
import threading
import time
from types import ModuleType
from typing import Any

from conveyor.core.logs import get_logger

log = get_logger(__name__)
INTERVAL_S = 0.5


class PowerSampler:
    """Adds up the joules the given GPUs draw while it runs."""

    def __init__(self, nvml: ModuleType, handles: list[Any], interval_s: float | None = None):
        self.nvml = nvml
        self.handles = handles
        self.interval_s = interval_s or INTERVAL_S
        self._last = time.monotonic()
        self.joules = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counters: list[float | None] = [self._energy_mj(h) for h in handles]

    @classmethod
    def for_gpus(cls, indices: list[int]) -> PowerSampler | None:
        """A sampler for these GPU indices, or None when NVML is not usable here."""
        try:
            import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError:
            log.info("nvml.unavailable", reason="pynvml not installed; energy is estimated")
            return None
        try:
            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except Exception as e:  # noqa: BLE001 - any NVML failure means "no meter", not a crash
            log.info("nvml.unavailable", reason=str(e))
            return None
        return cls(pynvml, handles)

    def start(self) -> None:
        self._stop.clear()
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="conveyor-power", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._tick()  # the part of the last interval before stop
        self._read_counters()
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        self._sample(now - self._last)
        self._last = now

    def _sample(self, elapsed_s: float) -> None:
        """Power x elapsed for devices without an energy counter; counters are read at stop."""
        for handle, counter in zip(self.handles, self._counters, strict=True):
            if counter is None:
                try:
                    milliwatts = self.nvml.nvmlDeviceGetPowerUsage(handle)
                except Exception:  # noqa: BLE001 - a missed sample is not worth a crash
                    continue
                self.joules += milliwatts / 1000 * elapsed_s

    def _read_counters(self) -> None:
        for i, (handle, start) in enumerate(zip(self.handles, self._counters, strict=True)):
            if start is not None:
                now = self._energy_mj(handle)
                if now is not None:
                    self.joules += (now - start) / 1000
                    self._counters[i] = now

    def _energy_mj(self, handle: Any) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # noqa: BLE001 - older GPUs have no counter: sample power instead
            return None
