"""Alerts: rules checked against window figures, written as events (spec: ALERTS.md).

`Alerts.check` takes the figures of the latest window and of the windows before it
(the caller builds them from the window report, REPORT.md), decides each rule, and
writes one `firing` event when a rule becomes true and one `resolved` event when it
clears. It keeps no state of its own: the open alerts are the firing events with no
later resolved event for the same model and rule, read in the same transaction that
writes, so a restarted monitor neither repeats nor loses an alert, and two monitors
checking at once write one event between them (SQLite: the write lock is taken up
front; PostgreSQL: a transaction-scoped advisory lock per model).

A rule whose figure is missing (no traffic, no labels, fewer than `min_labels`) has
"no data": it neither fires nor resolves, and the verdict says why.

After writing, `check` hands every event still owed to a webhook (this check's, and
those a down webhook or a killed monitor left behind) to `webhooks.Deliveries`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from conveyor.core.logs import get_logger
from conveyor.monitoring.records import MonitorEventRecord
from conveyor.monitoring.rules import MonitorConfig, Rule
from conveyor.monitoring.webhooks import Deliveries, as_utc
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.tables import utcnow

log = get_logger("conveyor.monitoring.alerts")

Figures = Mapping[str, float | None]  # one window's figures (report.figures)
State = Literal["true", "false", "pending", "no data"]


@dataclass(frozen=True)
class Verdict:
    """One rule over the windows given.

    `state`: "true" (the latest N windows all hold: fire), "false" (the latest window
    does not hold: resolve), "pending" (the latest holds, an earlier one does not or has
    no data yet), "no data" (the latest window cannot say). `value` is the latest's.
    """

    rule: Rule
    state: State
    value: float | None
    note: str = ""


@dataclass(frozen=True)
class AlertEvent:
    """One row of `monitor_events`, read back: `detail` and `delivery` are parsed JSON."""

    id: int
    model: str
    version: int | None
    rule: str
    kind: Literal["firing", "resolved"]
    value: float | None
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    delivery: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float | None:
        return self.detail.get("threshold")

    @classmethod
    def from_record(cls, r: MonitorEventRecord) -> AlertEvent:
        kind: Literal["firing", "resolved"] = "firing" if r.kind == "firing" else "resolved"
        return cls(
            r.id,
            r.model,
            r.version,
            r.rule,
            kind,
            r.value,
            as_utc(r.at),
            json.loads(r.detail or "{}"),
            json.loads(r.delivery or "{}"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "rule": self.rule,
            "kind": self.kind,
            "value": self.value,
            "threshold": self.threshold,
            "at": self.at.isoformat(),
            "detail": self.detail,
            "delivery": self.delivery,
        }


def evaluate(rules: Sequence[Rule], windows: Sequence[Figures]) -> list[Verdict]:
    """Decide each rule over `windows` (the latest first); pure, writes nothing."""
    if not windows:
        raise ValueError("evaluate needs at least the latest window's figures")
    return [_verdict(rule, windows) for rule in rules]


def _verdict(rule: Rule, windows: Sequence[Figures]) -> Verdict:
    value = windows[0].get(rule.figure)
    missing = _missing(rule, windows[0])
    if missing or value is None:
        return Verdict(rule, "no data", value, missing)
    if not rule.holds(value):
        return Verdict(rule, "false", value)
    for i in range(1, rule.windows):
        if i >= len(windows):
            return Verdict(rule, "pending", value, f"only {len(windows)} of {rule.windows} windows")
        earlier, before = _missing(rule, windows[i]), windows[i].get(rule.figure)
        if earlier or before is None:
            return Verdict(rule, "pending", value, f"window {i + 1}: {earlier}")
        if not rule.holds(before):
            return Verdict(rule, "pending", value, f"holds for {i} of {rule.windows} windows")
    return Verdict(rule, "true", value)


def _missing(rule: Rule, figures: Figures) -> str:
    """Why this window cannot decide the rule, or "" when it can."""
    if figures.get(rule.figure) is None:
        why = "not in the report" if rule.figure not in figures else "no traffic or labels"
        return f"no data: {rule.figure} is null ({why})"
    if rule.min_labels is not None:
        labelled = figures.get("labelled")
        if labelled is None or labelled < rule.min_labels:
            got = "none" if labelled is None else f"{labelled:g}"
            return f"no data: {got} labelled rows, fewer than min_labels {rule.min_labels}"
    return ""


class Alerts:
    """Checks one config's rules and keeps its events (see the module docstring).

    `clock` tells delivery time (leases, the give-up horizon); `sleep` is what retry
    waits call, so tests pass a no-op.
    """

    def __init__(
        self,
        meta: MetadataStore,
        config: MonitorConfig,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] | None = None,
        give_up_after: timedelta = timedelta(hours=24),
    ) -> None:
        self.meta = meta
        self.config = config
        self.clock = clock
        self.deliveries = Deliveries(meta, config.webhooks, clock, sleep, give_up_after)

    def evaluate(self, windows: Sequence[Figures]) -> list[Verdict]:
        return evaluate(self.config.rules, windows)

    def check(
        self, model: str, version: int | None, windows: Sequence[Figures], at: datetime
    ) -> list[AlertEvent]:
        """Write the events `windows` call for (windows[0] ends at `at`), deliver every
        event still owed to a webhook, and return this check's events as they stand."""
        verdicts = self.evaluate(windows)
        at = as_utc(at)
        with self.meta.write() as s:
            _lock_model(s, model)
            opened = _open_records(s, model)
            written = []
            for v in verdicts:
                fired = opened.get(v.rule.name)
                if fired is None and v.state == "true":
                    written.append(self._record(model, version, v, windows, at, "firing", None))
                elif fired is not None and v.state == "false":
                    written.append(self._record(model, version, v, windows, at, "resolved", fired))
                elif v.state == "no data":
                    log.debug("no data", model=model, rule=v.rule.name, note=v.note)
            s.add_all(written)
            s.flush()
            ids = [r.id for r in written]
        for r in written:
            say = log.warning if r.kind == "firing" else log.info
            say(f"alert {r.kind}", model=model, version=version, rule=r.rule, value=r.value)
        self.deliveries.deliver(model)
        return self._read(ids)

    def deliver(self, model: str | None = None) -> None:
        """Deliver what is owed without checking; `check` already does this after writing."""
        self.deliveries.deliver(model)

    def _record(
        self,
        model: str,
        version: int | None,
        v: Verdict,
        windows: Sequence[Figures],
        at: datetime,
        kind: str,
        fired: MonitorEventRecord | None,
    ) -> MonitorEventRecord:
        rule = v.rule
        used = [rule.figure] + (["labelled"] if rule.min_labels is not None else [])
        detail: dict[str, Any] = {
            "text": rule.text,
            "figure": rule.figure,
            "op": rule.op,
            "threshold": rule.threshold,
            "unit": rule.unit,
            "windows": rule.windows,
            "min_labels": rule.min_labels,
            "window": {
                "since": (at - timedelta(seconds=self.config.window)).isoformat(),
                "until": at.isoformat(),
                "seconds": self.config.window,
            },
            "figures": [{k: w.get(k) for k in used} for w in windows[: rule.windows]],
        }
        if fired is not None:
            detail["fired"] = {"id": fired.id, "at": as_utc(fired.at).isoformat()}
        return MonitorEventRecord(
            model=model,
            version=version,
            rule=rule.name,
            kind=kind,
            value=v.value,
            detail=json.dumps(detail, sort_keys=True),
            delivery=self.deliveries.owed(),
            at=at,
        )

    def _read(self, ids: list[int]) -> list[AlertEvent]:
        if not ids:
            return []
        with self.meta.read() as s:
            rows = s.scalars(
                select(MonitorEventRecord)
                .where(MonitorEventRecord.id.in_(ids))
                .order_by(MonitorEventRecord.id)
            )
            return [AlertEvent.from_record(r) for r in rows]


def _lock_model(s: Session, model: str) -> None:
    """Serialise checks of one model. SQLite writers already hold the database lock."""
    if s.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"conveyor.monitor_events:{model}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _open_records(s: Session, model: str | None) -> dict[str, MonitorEventRecord]:
    """Open alerts by rule name (model given) or by (model, rule) joined as 'model\\0rule'."""
    latest = select(func.max(MonitorEventRecord.id)).group_by(
        MonitorEventRecord.model, MonitorEventRecord.rule
    )
    if model is not None:
        latest = latest.where(MonitorEventRecord.model == model)
    rows = s.scalars(
        select(MonitorEventRecord)
        .where(MonitorEventRecord.id.in_(latest.scalar_subquery()))
        .where(MonitorEventRecord.kind == "firing")
        .order_by(MonitorEventRecord.id)
    )
    return {(r.rule if model is not None else f"{r.model}\0{r.rule}"): r for r in rows}


def open_alerts(meta: MetadataStore, model: str | None = None) -> list[dict[str, Any]]:
    """The alerts firing now (one per model and rule), oldest first, as REPORT.md's
    `alerts` entries: rule, state, since, value, plus model, version, threshold, id."""
    with meta.read() as s:
        records = list(_open_records(s, model).values())
    out = []
    for r in records:
        e = AlertEvent.from_record(r)
        out.append(
            {
                "rule": e.rule,
                "state": "firing",
                "since": e.at.isoformat(),
                "value": e.value,
                "model": e.model,
                "version": e.version,
                "threshold": e.threshold,
                "id": e.id,
            }
        )
    return out


def events(
    meta: MetadataStore, model: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Every event (of one model, at or after `since`), in the order written."""
    query = select(MonitorEventRecord).order_by(MonitorEventRecord.id)
    if model is not None:
        query = query.where(MonitorEventRecord.model == model)
    if since is not None:
        query = query.where(MonitorEventRecord.at >= as_utc(since))
    with meta.read() as s:
        return [AlertEvent.from_record(r).to_dict() for r in s.scalars(query)]
