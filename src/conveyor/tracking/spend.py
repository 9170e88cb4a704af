"""What runs cost, summed per user, experiment, dataset or any set of runs.

A run's usage is the sum of its `run_usage` rows (device-seconds, energy, estimated
cost). Datasets come from the `data` param the trainer and the recipes record (a
resolved ref such as `digits@v3`); a run without one counts under "(none)".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conveyor.tracking.records import RunParamRecord, RunRecord, RunUsageRecord

GroupBy = Literal["user", "experiment", "dataset"]
NONE = "(none)"


@dataclass
class Spend:
    """Compute used by a group of runs."""

    key: str
    runs: int = 0
    device_seconds: dict[str, float] = field(default_factory=dict)
    energy_kwh: float = 0.0
    cost_usd: float = 0.0

    def add(self, device: str, seconds: float, energy_kwh: float, cost_usd: float) -> None:
        self.device_seconds[device] = self.device_seconds.get(device, 0.0) + seconds
        self.energy_kwh += energy_kwh
        self.cost_usd += cost_usd


def spend_by(session: Session, by: GroupBy) -> list[Spend]:
    """Totals per user, experiment or dataset, most expensive first."""
    keys = _run_keys(session, by)
    return group(keys, per_run(session, keys))


def per_run(session: Session, run_ids: Iterable[str]) -> dict[str, Spend]:
    """Each run's own totals (runs that recorded no usage are absent)."""
    out: dict[str, Spend] = {}
    for run_id, device, seconds, energy, cost in usage_rows(session, run_ids):
        out.setdefault(run_id, Spend(run_id, runs=1)).add(device, seconds, energy, cost)
    return out


def usage_rows(
    session: Session, run_ids: Iterable[str]
) -> list[tuple[str, str, float, float, float]]:
    """(run, device, seconds, kWh, USD) summed per run and device type."""
    rows = session.execute(
        select(
            RunUsageRecord.run_id,
            RunUsageRecord.device,
            func.sum(RunUsageRecord.seconds),
            func.sum(RunUsageRecord.energy_kwh),
            func.sum(RunUsageRecord.cost_usd),
        )
        .where(RunUsageRecord.run_id.in_(list(run_ids)))
        .group_by(RunUsageRecord.run_id, RunUsageRecord.device)
    ).all()
    return [(r, d, float(s), float(e), float(c)) for r, d, s, e, c in rows]


def group(keys: Mapping[str, str], runs: Mapping[str, Spend]) -> list[Spend]:
    """Sum per-run totals into groups: `keys` maps a run id to its group."""
    totals: dict[str, Spend] = {}
    for run_id, key in keys.items():
        total = totals.setdefault(key, Spend(key))
        total.runs += 1
        own = runs.get(run_id)
        if own is None:
            continue
        for device, seconds in own.device_seconds.items():
            total.add(device, seconds, 0.0, 0.0)
        total.energy_kwh += own.energy_kwh
        total.cost_usd += own.cost_usd
    return sorted(totals.values(), key=lambda s: (-s.cost_usd, s.key))


def _run_keys(session: Session, by: GroupBy) -> dict[str, str]:
    if by == "dataset":
        ids = session.scalars(select(RunRecord.id)).all()
        data = dict(
            session.execute(
                select(RunParamRecord.run_id, RunParamRecord.value).where(
                    RunParamRecord.key == "data"
                )
            ).all()
        )
        return {run_id: data.get(run_id) or NONE for run_id in ids}
    column = RunRecord.user if by == "user" else RunRecord.experiment
    return {run_id: key for run_id, key in session.execute(select(RunRecord.id, column)).all()}
