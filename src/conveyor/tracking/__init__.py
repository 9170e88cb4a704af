"""Experiment tracking: runs with params, metrics, tags, notes, usage and artifacts.

Reached through `ws.runs` (runs.py). Logging never blocks: a background writer
(writer.py) stores events in batches and spools them to a local file (SPOOL.md) while
the metadata store is unreachable.
"""

from conveyor.tracking.queries import Artifact, MetricHistory, MetricSummary, RunInfo, Usage
from conveyor.tracking.run import STATUSES, Run
from conveyor.tracking.runs import Runs

__all__ = [
    "STATUSES",
    "Artifact",
    "MetricHistory",
    "MetricSummary",
    "Run",
    "RunInfo",
    "Runs",
    "Usage",
]
