"""Price table, usage meter and the NVML energy path (with a stand-in NVML module)."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from conveyor.compute.cost import PriceTable, UsageMeter, _cpu_seconds, device_kind
from conveyor.core.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Tesla T4", "t4"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA A10G", "a10g"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("cpu", "cpu"),
    ],
)
def test_device_names_map_to_price_keys(name: str, kind: str) -> None:
    assert device_kind(name) == kind
    assert PriceTable().price(kind) is not None


def test_spot_is_cheaper_and_unknown_devices_are_unpriced() -> None:
    prices = PriceTable()
    for kind in ("cpu", "t4", "l4", "a10g", "a100-40gb", "a100-80gb", "h100"):
        assert 0 < prices.price(kind, "spot") < prices.price(kind, "on_demand")  # type: ignore[operator]
    assert prices.price("tpu-v5") is None


def test_overrides_from_a_dict_and_a_toml_file(tmp_path: Path) -> None:
    prices = PriceTable().with_overrides({"on_demand": {"T4": 0.35}, "watts": {"cpu": 5}})
    assert prices.price("t4") == 0.35 and prices.watts["cpu"] == 5.0
    assert prices.price("h100") == PriceTable().price("h100")  # the rest keeps the defaults
    path = tmp_path / "prices.toml"
    path.write_text("[prices.spot]\nh100 = 2.0\n")
    assert PriceTable.from_toml(path).price("h100", "spot") == 2.0
    with pytest.raises(ConfigError, match="not a number"):
        PriceTable().with_overrides({"spot": {"t4": "cheap"}})
    with pytest.raises(ConfigError, match="unknown price table section"):
        PriceTable().with_overrides({"reserved": {}})


def test_cpu_usage_counts_cpu_time_energy_and_cost() -> None:
    prices = PriceTable().with_overrides({"on_demand": {"cpu": 3.6}, "watts": {"cpu": 36}})
    with UsageMeter("cpu", prices=prices) as meter:
        end = time.process_time() + 0.3
        while time.process_time() < end:  # busy: CPU time, not sleeping
            pass
        time.sleep(0.2)  # idle: wall time that costs no CPU seconds
    usage = meter.usage()
    assert 0.25 <= usage.device_seconds < usage.wall_seconds
    assert usage.cost_usd == pytest.approx(usage.device_seconds * 3.6 / 3600)
    assert usage.energy_kwh == pytest.approx(36 * usage.device_seconds / 3.6e6)
    assert not usage.energy_measured


def test_a_run_shorter_than_a_clock_tick_still_costs_something() -> None:
    # os.times counts 10 ms ticks: a few milliseconds of work used to read as free
    for _ in range(5):
        before = _cpu_seconds()
        with UsageMeter("cpu") as meter:
            end = time.process_time() + 0.002
            while time.process_time() < end:
                pass
        after = _cpu_seconds()
        usage = meter.usage()
        # the 2 ms the loop surely used, and no more than this process used around it
        assert 0.0019 <= usage.device_seconds <= after - before
        assert usage.cost_usd is not None and usage.cost_usd > 0


class FakeNvml(types.ModuleType):
    """The few pynvml calls the sampler makes: one GPU drawing 100 W, no energy counter."""

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.shutdown = False

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdown = True

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return 100_000  # milliwatts

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        raise RuntimeError("not supported on this GPU")


def test_gpu_energy_comes_from_nvml_power_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr("conveyor.compute.power.INTERVAL_S", 0.05)
    before = time.monotonic()
    meter = UsageMeter("NVIDIA A10G", devices=1).start()
    started = time.monotonic()
    time.sleep(0.5)
    stopping = time.monotonic()
    usage = meter.stop()
    after = time.monotonic()
    assert usage.device == "a10g" and usage.energy_measured and nvml.shutdown
    assert usage.device_seconds == pytest.approx(usage.wall_seconds)
    # 100 W for as long as the meter ran: at least while it certainly ran, at most from
    # before start() to after stop() (how late the sampler thread wakes is the machine's)
    joules = usage.energy_kwh * 3.6e6
    assert 100 * (stopping - started) <= joules <= 100 * (after - before)
    # one clock (monotonic) read around start() and stop(): an ordering, not a speed
    assert stopping - started <= usage.wall_seconds <= after - before
    assert usage.cost_usd == pytest.approx(1.01 * usage.wall_seconds / 3600)


def test_without_nvml_gpu_energy_is_estimated_from_tdp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails, as with no driver
    with UsageMeter("Tesla T4", devices=2) as meter:
        time.sleep(0.05)
    usage = meter.usage()
    assert not usage.energy_measured
    assert usage.device_seconds == pytest.approx(2 * usage.wall_seconds)
    assert usage.energy_kwh == pytest.approx(70 * usage.device_seconds / 3.6e6)
