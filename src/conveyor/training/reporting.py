"""What the trainer needs from a tracked run, and the one place it talks to it.

`RunLike` is the part of `ws.runs` runs the trainer uses; any object with these methods
works (tests use a small recorder). Only rank 0 of a DDP job reports; a run of None
means no tracking, with the same structured log lines either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from conveyor.compute.cost import Usage
from conveyor.core.logs import get_logger

log = get_logger("conveyor.training")


@runtime_checkable
class RunLike(Protocol):
    """A tracked run, as the trainer uses it."""

    @property
    def id(self) -> str: ...

    def log_params(self, params: Mapping[str, Any]) -> Any: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> Any: ...

    def log_artifact(self, data: str | Path | bytes, name: str | None = None) -> Any: ...

    def record_usage(
        self, device: str, seconds: float, energy_kwh: float, cost_usd: float
    ) -> Any: ...

    def set_status(self, status: str) -> Any: ...

    def end(self, status: str = "finished") -> Any: ...


class Reporter:
    """Sends params, metrics, usage and status to the run (rank 0 only) and to the log."""

    def __init__(self, run: RunLike | None, is_main: bool) -> None:
        self.run = run if is_main else None
        self.is_main = is_main

    def params(self, params: Mapping[str, Any]) -> None:
        if self.run is not None:
            self.run.log_params(dict(params))

    def metrics(self, metrics: Mapping[str, float], step: int, event: str) -> None:
        if not self.is_main:
            return
        log.info(event, step=step, **{k: round(v, 6) for k, v in metrics.items()})
        if self.run is not None:
            self.run.log_metrics(dict(metrics), step=step)

    def usage(self, usage: Usage) -> None:
        if not self.is_main:
            return
        log.info("train.usage", **usage.as_dict())
        if self.run is not None:
            self.run.record_usage(
                device=usage.device,
                seconds=usage.device_seconds,
                energy_kwh=usage.energy_kwh,
                cost_usd=usage.cost_usd or 0.0,  # a device the price table lacks: not priced
            )

    def status(self, status: str, end: bool) -> None:
        """End the run with this status, or (`end=False`) only record it."""
        if self.run is None:
            return
        if end:
            self.run.end(status=status)
        else:
            self.run.set_status(status)
