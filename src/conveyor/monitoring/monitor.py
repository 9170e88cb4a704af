"""The monitor: check one deployment's rules on its latest windows, once or on a schedule.

A check builds the window report of the version the config names (report.py), and
of as many earlier windows as its longest `for N windows` rule needs, hands their
figures to the alert rules (alerts.py: events, webhooks), and updates /metrics
(exporter.py). A check that fails (the store is down, a model was deleted) is logged and
counted; `run` goes on to the next one. Every fact lives in the metadata store, so a
monitor killed at any moment and started again picks up where it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.core.errors import ConveyorError
from conveyor.monitoring.alerts import AlertEvent, Alerts, open_alerts
from conveyor.monitoring.exporter import MonitorMetrics
from conveyor.monitoring.report import build_report, figures
from conveyor.monitoring.rules import MonitorConfig
from conveyor.monitoring.window import Window

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    report: dict[str, Any]
    events: list[AlertEvent] = field(default_factory=list)
    open: list[dict[str, Any]] = field(default_factory=list)


class Monitor:
    """One config's checks against one workspace."""

    def __init__(
        self,
        ws: Any,
        config: MonitorConfig,
        metrics: MonitorMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.ws = ws
        self.config = config
        self.metrics = metrics or MonitorMetrics()
        self.clock = clock
        self.alerts = Alerts(ws.meta, config, clock=clock, sleep=sleep)
        self._stop = threading.Event()

    def check(self) -> CheckResult:
        """One check now: reports, rules, events, webhooks, /metrics."""
        now = self.clock()
        mv = self.ws.models.get(self.config.model)
        window = Window.last(self.config.window_span, now)
        reports = [
            build_report(self.ws, self.config.model, window.before(i), drift=True)
            for i in range(self.config.history)
        ]
        events = self.alerts.check(mv.name, mv.number, [figures(r) for r in reports], now)
        opened = open_alerts(self.ws.meta, mv.name)
        latest = reports[0]
        latest["alerts"] = [a for a in opened if a.get("version") in (None, mv.number)]
        self.metrics.update(latest, checked_at=now.timestamp())
        self.metrics.set_alerts(opened)
        self.metrics.checked(True)
        return CheckResult(latest, events, opened)

    def run(
        self, checks: int | None = None, on_check: Callable[[CheckResult], None] | None = None
    ) -> None:
        """Check every `config.every` seconds until `stop()` (or `checks` checks)."""
        done = 0
        while not self._stop.is_set() and (checks is None or done < checks):
            try:
                result = self.check()
                if on_check is not None:
                    on_check(result)
            except ConveyorError as e:
                self.metrics.checked(False)
                log.warning("monitor check failed: %s", e)
            except Exception:
                self.metrics.checked(False)
                log.exception("monitor check failed")
            done += 1
            if checks is None or done < checks:
                self._stop.wait(self.config.every)

    def stop(self) -> None:
        self._stop.set()
