"""What training used and what it cost: device-seconds, energy (kWh) and USD.

The price table holds on-demand and spot prices per device-hour. The defaults are
*estimates*: rounded public list prices of the big clouds (AWS us-east-1 for CPU, T4
(g4dn), L4 (g6), A10G (g5), A100 (p4d/p4de, per GPU) and H100 (p5, per GPU), checked in
2025, spot as a typical observed discount). Real bills differ by region, commitment
and month: set your own in the workspace's conveyor.toml,

    [prices]
    market = "spot"        # the column runs and jobs are charged at; default on_demand
    [prices.on_demand]
    cpu = 0.05             # USD per core-hour
    a100-80gb = 3.90       # USD per GPU-hour
    [prices.spot]
    h100 = 2.10
    [prices.watts]
    t4 = 70                # watts per device (CPU: per busy core) when NVML has none

or per variable (`CONVEYOR_PRICES__ON_DEMAND__CPU=0.05`). Named devices replace the
defaults, a new name adds a device, the rest keep the defaults. `ws.prices`
(`PriceTable.from_settings(ws.settings)`) is the table the trainer (given
`workspace=ws`; without one, the defaults), the recipes and `ws.jobs` cost with. A run's
cost is stored when it is logged, so a price change applies to runs logged after it; a
job's is worked out when it is read. Outside a workspace,
`PriceTable.from_toml(path)` and `.with_overrides({...})` make a table to pass as
`TrainConfig(prices=...)` or `UsageMeter(prices=...)`.

`UsageMeter` measures while training runs:

- CPU: process CPU time (user + system, this process and its finished children such as
  DataLoader workers) in core-seconds; energy estimated as watts-per-core x core-seconds.
- GPU: wall time x number of devices; energy from NVML power samples (pynvml, imported
  only when a GPU is used); without NVML, estimated as the device's TDP x wall time.
"""

from __future__ import annotations

import math
import resource
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conveyor.compute.power import PowerSampler
from conveyor.core.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.core.config import Settings

Market = Literal["on_demand", "spot"]

# USD per device-hour (CPU: per core-hour). Estimates, see the module docstring.
ON_DEMAND: dict[str, float] = {
    "cpu": 0.048,  # c7i: $0.1785/h for 4 vCPU, ~ per core (vCPU)
    "t4": 0.53,  # g4dn.xlarge
    "l4": 0.80,  # g6.xlarge
    "a10g": 1.01,  # g5.xlarge
    "a100-40gb": 4.10,  # p4d.24xlarge / 8
    "a100-80gb": 5.12,  # p4de.24xlarge / 8
    "h100": 6.88,  # p5.48xlarge / 8 (after the 2025 price cut)
}
SPOT: dict[str, float] = {
    "cpu": 0.018,
    "t4": 0.20,
    "l4": 0.32,
    "a10g": 0.42,
    "a100-40gb": 1.65,
    "a100-80gb": 2.05,
    "h100": 2.75,
}
# Watts per device when no power meter answers (CPU: per busy core). Vendor TDPs.
WATTS: dict[str, float] = {
    "cpu": 10.0,  # e.g. a 280 W, 32-core server CPU is ~9 W per busy core
    "t4": 70.0,
    "l4": 72.0,
    "a10g": 150.0,
    "a100-40gb": 400.0,
    "a100-80gb": 400.0,
    "h100": 700.0,
}


def device_kind(name: str) -> str:
    """A price-table key from a device name ("NVIDIA A100-SXM4-80GB" -> "a100-80gb")."""
    low = name.lower()
    if low in ("cpu", "mps"):
        return low
    for key in ("h100", "a10g", "l4", "t4"):
        if key in low:
            return key
    if "a100" in low:
        return "a100-80gb" if "80g" in low else "a100-40gb"
    return low


@dataclass(frozen=True)
class PriceTable:
    """Prices (USD per device-hour) and watts per device, by device kind, and the market
    (price column) a cost is counted in when the caller does not name one."""

    on_demand: Mapping[str, float] = field(default_factory=lambda: dict(ON_DEMAND))
    spot: Mapping[str, float] = field(default_factory=lambda: dict(SPOT))
    watts: Mapping[str, float] = field(default_factory=lambda: dict(WATTS))
    market: Market = "on_demand"

    def price(self, kind: str, market: Market | None = None) -> float | None:
        """USD per device-hour, or None when the table does not know the device."""
        table = self.spot if (market or self.market) == "spot" else self.on_demand
        return table.get(kind)

    def with_overrides(self, overrides: Mapping[str, Any]) -> PriceTable:
        """A copy with some entries replaced: {"on_demand": {"t4": 0.35}, "watts": {...}},
        and optionally "market": "spot"."""
        unknown = set(overrides) - {"market", "on_demand", "spot", "watts"}
        if unknown:
            raise ConfigError(
                f"unknown price table section {', '.join(sorted(unknown))}",
                "use the sections on_demand, spot and watts (and the key market)",
            )
        market = overrides.get("market", self.market)
        if market not in ("on_demand", "spot"):
            raise ConfigError(f"unknown price market {market!r}", "use on_demand or spot")
        merged: dict[str, dict[str, float]] = {}
        for section in ("on_demand", "spot", "watts"):
            values = dict(getattr(self, section))
            for kind, value in (overrides.get(section) or {}).items():
                if (
                    not isinstance(value, int | float)
                    or isinstance(value, bool)
                    or not math.isfinite(value)
                    or value < 0
                ):
                    raise ConfigError(
                        f"price table {section}.{kind} = {value!r} is not a number >= 0",
                        "give USD per device-hour (watts for the watts section)",
                    )
                values[str(kind).lower()] = float(value)
            merged[section] = values
        return replace(self, **merged, market=market)

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        """The defaults overridden by the settings' [prices] section (conveyor.toml and
        CONVEYOR_PRICES__* variables): what a workspace's runs and jobs are costed with."""
        return cls().with_overrides(settings.prices.model_dump())

    @classmethod
    def from_toml(cls, path: str | Path) -> PriceTable:
        """Defaults overridden by a TOML file with [on_demand], [spot] and [watts] tables
        (or the same under [prices], as in conveyor.toml)."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read the price table {path} ({e})", "fix the file") from e
        return cls().with_overrides(data.get("prices", data))


@dataclass(frozen=True)
class Usage:
    """What one meter measured: device-seconds, energy and estimated cost."""

    device: str  # price-table kind: cpu, t4, a100-80gb...
    devices: int
    wall_seconds: float
    device_seconds: float  # GPU: wall x devices; CPU: core-seconds of CPU time
    energy_kwh: float
    energy_measured: bool  # True when NVML reported power; False for an estimate
    cost_usd: float | None  # None when the price table does not know the device
    market: Market

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class UsageMeter:
    """Measures device-seconds, energy and cost between `start()` and `stop()`.

    `devices` is how many identical devices (GPUs) or processes (CPU) the meter stands
    for: rank 0 of a DDP job meters itself and counts every rank the same. `market`
    defaults to the price table's. Use as a context manager or call start/stop; `usage()`
    may be read at any time.
    """

    def __init__(
        self,
        device: str = "cpu",
        devices: int = 1,
        prices: PriceTable | None = None,
        market: Market | None = None,
        gpu_indices: list[int] | None = None,
    ) -> None:
        self.kind = device_kind(device)
        self.devices = devices
        self.prices = prices or PriceTable()
        self.market: Market = market or self.prices.market
        self.gpu_indices = gpu_indices if gpu_indices is not None else list(range(devices))
        self._wall0 = self._cpu0 = 0.0
        self._wall = self._cpu = 0.0
        self._running = False
        self._power: PowerSampler | None = None

    @property
    def is_gpu(self) -> bool:
        return self.kind not in ("cpu", "mps")

    def start(self) -> UsageMeter:
        self._wall0, self._cpu0 = time.monotonic(), _cpu_seconds()
        self._running = True
        if self.is_gpu:
            self._power = PowerSampler.for_gpus(self.gpu_indices)
            if self._power is not None:
                self._power.start()
        return self

    def stop(self) -> Usage:
        if self._running:
            self._wall += time.monotonic() - self._wall0
            self._cpu += _cpu_seconds() - self._cpu0
            self._running = False
            if self._power is not None:
                self._power.stop()
        return self.usage()

    def __enter__(self) -> UsageMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def usage(self) -> Usage:
        """The usage so far (includes the running interval)."""
        wall, cpu = self._wall, self._cpu
        if self._running:
            wall += time.monotonic() - self._wall0
            cpu += _cpu_seconds() - self._cpu0
        # GPU: every device is busy the whole time; CPU: cores actually used, per process
        device_seconds = (wall if self.is_gpu else cpu) * self.devices
        watts = self.prices.watts.get(self.kind, 0.0)
        measured = self._power is not None and self._power.joules > 0
        if measured and self._power is not None:
            energy = self._power.joules / 3.6e6
        else:
            energy = watts * device_seconds / 3.6e6
        price = self.prices.price(self.kind, self.market)
        cost = None if price is None else price * device_seconds / 3600
        return Usage(
            device=self.kind,
            devices=self.devices,
            wall_seconds=wall,
            device_seconds=device_seconds,
            energy_kwh=energy,
            energy_measured=measured,
            cost_usd=cost,
            market=self.market,
        )


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers), in seconds.

    `process_time` and `getrusage` count in nanoseconds and microseconds; `os.times` counts
    clock ticks (10 ms), which prices a short run at nothing.
    """
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime
