"""What `ws.jobs` hands back: a job with its attempts, device-seconds and estimated cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.compute.cost import PriceTable
from conveyor.compute.records import JobAttemptRecord, JobRecord
from conveyor.compute.spec import JobSpec

STATES = ("queued", "running", "succeeded", "failed", "timed_out", "killed", "cancelled")
FINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "killed", "cancelled"})


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; all of ours are UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class JobAttempt:
    """One try at a job. `device_seconds` counts what was reserved (cores or GPUs x wall)."""

    number: int
    state: str  # running, succeeded, failed, timed_out, killed, cancelled, preempted, lost
    reason: str | None
    exit_code: int | None
    executor: str
    host: str
    pid: int | None
    gpu_indices: tuple[int, ...]
    device: str
    devices: float
    started_at: datetime
    ended_at: datetime | None

    @property
    def seconds(self) -> float:
        end = self.ended_at or datetime.now(UTC)
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def device_seconds(self) -> float:
        return self.seconds * self.devices

    @classmethod
    def of(cls, r: JobAttemptRecord) -> JobAttempt:
        return cls(
            number=r.number,
            state=r.state,
            reason=r.reason,
            exit_code=r.exit_code,
            executor=r.executor,
            host=r.host,
            pid=r.pid,
            gpu_indices=tuple(int(i) for i in r.gpu_indices.split(",") if i),
            device=r.device,
            devices=r.devices,
            started_at=aware(r.started_at) or r.started_at,
            ended_at=aware(r.ended_at),
        )


@dataclass(frozen=True)
class Job:
    """A job as stored: its spec, state and reason, and every attempt so far."""

    id: str
    name: str
    spec: JobSpec
    state: str
    reason: str | None
    exit_code: int | None
    priority: int
    attempts: int
    failures: int
    run_id: str
    cancel_requested: bool
    worker_id: str | None
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    history: tuple[JobAttempt, ...] = ()
    # what cost_usd() prices with: the workspace's table (ws.prices) for jobs from ws.jobs
    prices: PriceTable = field(default_factory=PriceTable, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def device_seconds(self) -> float:
        return sum(a.device_seconds for a in self.history)

    def cost_usd(self, prices: PriceTable | None = None) -> float | None:
        """Estimated cost of what the attempts reserved, at the price table's market
        (on-demand unless [prices] market says otherwise); None if a device is unpriced."""
        prices = prices or self.prices
        total = 0.0
        for attempt in self.history:
            price = prices.price(attempt.device)
            if price is None:
                return None
            total += price * attempt.device_seconds / 3600
        return total

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (what `conveyor jobs show --json` prints)."""
        data = asdict(self)
        del data["prices"]
        data["kind"] = self.kind
        data["device_seconds"] = self.device_seconds
        data["cost_usd"] = self.cost_usd()
        for moment in ("submitted_at", "started_at", "ended_at"):
            data[moment] = _iso(getattr(self, moment))
        data["history"] = [
            {
                **asdict(a),
                "started_at": _iso(a.started_at),
                "ended_at": _iso(a.ended_at),
                "seconds": a.seconds,
                "device_seconds": a.device_seconds,
            }
            for a in self.history
        ]
        return data

    @classmethod
    def of(
        cls, r: JobRecord, attempts: list[JobAttemptRecord], prices: PriceTable | None = None
    ) -> Job:
        return cls(
            id=r.id,
            name=r.name,
            spec=JobSpec.from_json(r.spec),
            state=r.state,
            reason=r.reason,
            exit_code=r.exit_code,
            priority=r.priority,
            attempts=r.attempts,
            failures=r.failures,
            run_id=r.run_id,
            cancel_requested=r.cancel_requested,
            worker_id=r.worker_id,
            submitted_at=aware(r.submitted_at) or r.submitted_at,
            started_at=aware(r.started_at),
            ended_at=aware(r.ended_at),
            history=tuple(JobAttempt.of(a) for a in sorted(attempts, key=lambda a: a.number)),
            prices=prices or PriceTable(),
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
