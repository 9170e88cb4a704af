"""Monitoring: is the world still the one the model learned from, and is the model right?

    from conveyor.monitoring import Window, build_report, figures
    report = build_report(ws, "digits:production", Window.last("1h"))   # REPORT.md

`drift.py` compares a reference (a dataset version, or the one stored with a model
version) with current data, column by column, with the detectors registered in
`detector.py` (rules: DRIFT.md); `report.py` gives one served version's window: health,
drift, accuracy from labels sent back, alerts; `alerts.py` and `webhooks.py` fire and
deliver the rules of `rules.py` (ALERTS.md); `monitor.py` checks them on a schedule.
Names load on first use: `conveyor.monitoring.records` (read by the migrations) must not
pull in scipy or the registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.data.reference import Reference
    from conveyor.monitoring.compare import compare_datasets
    from conveyor.monitoring.drift import DriftReport, check
    from conveyor.monitoring.monitor import Monitor
    from conveyor.monitoring.report import build_report, figures
    from conveyor.monitoring.rules import MonitorConfig, load_config
    from conveyor.monitoring.window import Window

_NAMES = {
    "Reference": "conveyor.data.reference",
    "DriftReport": "conveyor.monitoring.drift",
    "check": "conveyor.monitoring.drift",
    "compare_datasets": "conveyor.monitoring.compare",
    "Monitor": "conveyor.monitoring.monitor",
    "build_report": "conveyor.monitoring.report",
    "figures": "conveyor.monitoring.report",
    "MonitorConfig": "conveyor.monitoring.rules",
    "load_config": "conveyor.monitoring.rules",
    "Window": "conveyor.monitoring.window",
}
__all__ = [
    "DriftReport",
    "Monitor",
    "MonitorConfig",
    "Reference",
    "Window",
    "build_report",
    "check",
    "compare_datasets",
    "figures",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'conveyor.monitoring' has no attribute {name!r}")
