"""Downsampling for charts keeps every region's extremes; system metrics sample safely."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from conveyor.tracking.downsample import minmax_indices
from conveyor.tracking.system import SystemSampler


def test_short_series_come_back_whole() -> None:
    assert minmax_indices(np.arange(10.0), 1000).tolist() == list(range(10))


def test_spikes_and_end_points_survive() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=1_000_000)
    values[123_457] = 50.0  # a loss spike
    values[876_543] = -50.0
    keep = minmax_indices(values, 1000)
    assert len(keep) <= 1000
    assert list(keep) == sorted(set(keep))  # in step order, no repeats
    kept = values[keep]
    assert kept.max() == 50.0 and kept.min() == -50.0
    assert keep[0] == 0 and keep[-1] == len(values) - 1


def test_every_bucket_keeps_its_own_extremes() -> None:
    values = np.sin(np.arange(100_000) / 500.0)
    keep = minmax_indices(values, 202)  # 100 buckets of 1,000 points
    for bucket in range(100):
        part = values[bucket * 1000 : (bucket + 1) * 1000]
        inside = keep[(keep >= bucket * 1000) & (keep < (bucket + 1) * 1000)]
        assert values[inside].min() == part.min() and values[inside].max() == part.max()


def test_nan_is_never_chosen_over_a_number() -> None:
    values = np.full(10_000, np.nan)
    values[::7] = np.arange(len(values[::7]), dtype=float)
    kept = values[minmax_indices(values, 100)]
    assert np.nanmax(kept) == np.nanmax(values) and np.nanmin(kept) == 0.0


class _FakeNvml:
    """Two GPUs; the second cannot report power (as on GPUs without power management)."""

    def __init__(self) -> None:
        self.shut = False

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=40 + handle, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=(handle + 1) << 30, total=16 << 30)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return 250_000  # milliwatts


def test_gpu_metrics_through_nvml() -> None:
    nvml = _FakeNvml()
    sampler = SystemSampler(nvml=nvml)
    sample = sampler.sample()
    assert sample["system/gpu0/utilization_percent"] == 40.0
    assert sample["system/gpu1/memory_used_mb"] == 2048.0
    assert sample["system/gpu0/power_w"] == 250.0
    assert "system/gpu1/power_w" not in sample  # unsupported reading left out, no error
    assert sample["system/memory_rss_mb"] > 0 and "system/cpu_percent" in sample
    sampler.close()
    assert nvml.shut


def test_no_gpu_means_no_gpu_metrics() -> None:
    """Here: nvidia-ml-py may be installed but there is no driver; sampling still works."""
    sampler = SystemSampler()
    assert sampler.gpu_count == 0
    assert not [k for k in sampler.sample() if k.startswith("system/gpu")]
    sampler.close()


def test_a_broken_nvml_is_skipped() -> None:
    class Broken(_FakeNvml):
        def nvmlInit(self) -> None:
            raise OSError("NVML Shared Library Not Found")

    assert SystemSampler(nvml=Broken()).gpu_count == 0


@pytest.mark.parametrize("max_points", [1, 3])
def test_too_few_points_is_refused(max_points: int) -> None:
    with pytest.raises(ValueError, match="at least 4"):
        minmax_indices(np.arange(100.0), max_points)
