"""`ws.runs`: start, resume, find and read experiment runs.

Starting a run writes its row (with the params and tags given) at once, so the run is
visible and searchable immediately; everything logged after that goes through the
run's background writer. Opening `ws.runs` first delivers spool files left behind by
processes that ended before the metadata store took their last events.
"""

from __future__ import annotations

import builtins
import getpass
import hashlib
import os
import platform
import re
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from conveyor.compute.entry import JOB_ID_ENV, RUN_ID_ENV
from conveyor.core.config import STATE_DIR
from conveyor.core.errors import InvalidRunInputError, RunNotFoundError
from conveyor.core.logs import get_logger
from conveyor.tracking.filters import parse_filter, parse_order
from conveyor.tracking.persist import write_events
from conveyor.tracking.queries import MetricHistory, RunInfo, load_runs, read_history, search_ids
from conveyor.tracking.records import RunMetricRecord, RunParamRecord, RunRecord, RunTagRecord
from conveyor.tracking.run import Run, param_value
from conveyor.tracking.spend import GroupBy, Spend, group, per_run, spend_by
from conveyor.tracking.spool import claim_leftovers
from conveyor.tracking.writer import RunWriter

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from conveyor.storage.metadata import MetadataStore
    from conveyor.storage.objects import ObjectStore

log = get_logger(__name__)
_HEX_PREFIX = re.compile(r"^[0-9a-f]{4,32}$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class Runs:
    """The runs of one workspace."""

    def __init__(self, meta: MetadataStore, objects: ObjectStore, root: Path | None) -> None:
        self.meta = meta
        self.objects = objects
        self.spool_dir = spool_folder(root, meta.display_url)
        try:
            self.deliver_spools()
        except Exception as e:  # noqa: BLE001 - store down: the spool waits for a later open
            log.warning("spool_delivery_deferred", folder=str(self.spool_dir), error=str(e)[:300])

    # -- writing -----------------------------------------------------------------------------

    def start(
        self,
        name: str | None = None,
        experiment: str = "default",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        git_commit: str | None = None,
        system_metrics: bool = True,
        system_every_s: float = 10.0,
        flush_every_s: float = 1.0,
    ) -> Run:
        """Start a run; use it as a context manager or call `run.end()`.

        Inside a job (`conveyor jobs`), the job's CONVEYOR_RUN_ID is the run's id and
        the run is tagged with the job: a requeued attempt carries on the same run, and
        the trainer finds that run's latest checkpoint.
        """
        tags = dict(tags or {})
        if run_id is None and os.environ.get(RUN_ID_ENV):
            run_id = os.environ[RUN_ID_ENV]
            if os.environ.get(JOB_ID_ENV):
                tags.setdefault("conveyor.job_id", os.environ[JOB_ID_ENV])
        if run_id is not None:
            if not _RUN_ID.match(run_id):
                raise InvalidRunInputError(
                    f"invalid run id {run_id!r}", "use 32 lowercase hex characters (a uuid4 hex)"
                )
            if self._exists(run_id):
                run = self.resume(
                    run_id,
                    system_metrics=system_metrics,
                    system_every_s=system_every_s,
                    flush_every_s=flush_every_s,
                )
                return run
        run_id = run_id or uuid.uuid4().hex
        record = RunRecord(
            id=run_id,
            name=name or f"run-{run_id[:8]}",
            experiment=experiment,
            status="running",
            user=_user(),
            host=platform.node()[:255],
            git_commit=git_commit or _git_commit(),
            sessions=1,
        )
        param_rows = [
            RunParamRecord(run_id=run_id, key=k, value=v[0], number=v[1])
            for k, v in ((str(k), param_value(v)) for k, v in (params or {}).items())
        ]
        tag_rows = [RunTagRecord(run_id=run_id, key=str(k), value=str(v)) for k, v in tags.items()]
        for key in [r.key for r in param_rows] + [r.key for r in tag_rows]:
            _check_name(key)
        with self.meta.write() as s:
            s.add(record)
            s.flush()
            s.add_all([*param_rows, *tag_rows])
        return self._open(
            run_id, record.name, experiment, 1, {}, system_metrics, system_every_s, flush_every_s
        )

    def resume(
        self,
        run_id: str,
        *,
        system_metrics: bool = True,
        system_every_s: float = 10.0,
        flush_every_s: float = 1.0,
    ) -> Run:
        """Carry on logging to an existing run (after a restart or preemption).

        Its status goes back to "running"; metrics logged without a step continue
        after the last stored step.
        """
        run_id = self.resolve(run_id)
        self.deliver_spools(run_id)  # the old session's leftovers come before anything new
        with self.meta.write() as s:
            s.execute(
                update(RunRecord)
                .where(RunRecord.id == run_id)
                .values(sessions=RunRecord.sessions + 1, status="running", ended_at=None)
            )
            record = s.get_one(RunRecord, run_id, populate_existing=True)
            steps = {
                key: (step + 1 if step is not None else 0)
                for key, step in s.execute(
                    select(RunMetricRecord.key, RunMetricRecord.last_step).where(
                        RunMetricRecord.run_id == run_id
                    )
                )
            }
            name, experiment, session = record.name, record.experiment, record.sessions
        return self._open(
            run_id, name, experiment, session, steps, system_metrics, system_every_s, flush_every_s
        )

    def _open(
        self,
        run_id: str,
        name: str,
        experiment: str,
        session: int,
        steps: dict[str, int],
        system_metrics: bool,
        system_every_s: float,
        flush_every_s: float,
    ) -> Run:
        sampler = None
        if system_metrics:
            from conveyor.tracking.system import SystemSampler

            sampler = SystemSampler()
        writer = RunWriter(self.meta, run_id, self.spool_dir, flush_every_s=flush_every_s)
        run = Run(run_id, name, experiment, session, writer, self.objects, steps, sampler)
        writer.start(run.sample_system if sampler else None, system_every_s)
        return run

    def deliver_spools(self, run_id: str | None = None) -> int:
        """Deliver spool files whose writers are gone; returns the number of events."""
        delivered = 0
        with claim_leftovers(self.spool_dir, run_id) as leftovers:
            for leftover in leftovers:
                ids: dict[str, int] = {}
                for start in range(0, len(leftover.events), 100_000):
                    chunk = leftover.events[start : start + 100_000]
                    write_events(self.meta, leftover.run_id, chunk, ids)
                leftover.path.unlink(missing_ok=True)
                delivered += len(leftover.events)
                log.info("spool_delivered", run=leftover.run_id, events=len(leftover.events))
        return delivered

    # -- reading -----------------------------------------------------------------------------

    def spend(self, by: GroupBy = "user") -> builtins.list[Spend]:
        """What runs cost, summed per user, experiment or dataset (most expensive first)."""
        if by not in ("user", "experiment", "dataset"):
            raise InvalidRunInputError(
                f"cannot sum spend by {by!r}", "use user, experiment or dataset"
            )
        with self.meta.read() as s:
            return spend_by(s, by)

    def spend_of(self, groups: Mapping[str, builtins.list[str]]) -> builtins.list[Spend]:
        """What named groups of runs cost: {"digits-cnn": [run ids...], ...}."""
        keys = {run_id: key for key, ids in groups.items() for run_id in ids}
        with self.meta.read() as s:
            return group(keys, per_run(s, keys))

    def _exists(self, run_id: str) -> bool:
        with self.meta.read() as s:
            return s.get(RunRecord, run_id) is not None

    def resolve(self, run_id: str) -> str:
        """The full id of a run given its id or a unique prefix of at least 4 characters."""
        with self.meta.read() as s:
            return _resolve(s, run_id)

    def get(self, run_id: str) -> RunInfo:
        """Everything stored about one run (with point counts per metric)."""
        with self.meta.read() as s:
            return load_runs(s, [_resolve(s, run_id)], count_points=True)[0]

    def search(
        self,
        filter: str | None = None,
        order_by: builtins.list[str] | tuple[str, ...] | None = None,
        experiment: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[RunInfo]:
        """Runs matching `filter` (see filters.py), newest first unless `order_by` says."""
        clauses, orders = parse_filter(filter), parse_order(order_by)
        with self.meta.read() as s:
            return load_runs(s, search_ids(s, clauses, orders, experiment, limit))

    def list(self, experiment: str | None = None) -> builtins.list[RunInfo]:
        return self.search(experiment=experiment)

    def metric_history(self, run_id: str, key: str, max_points: int | None = 1000) -> MetricHistory:
        """A metric's points; more than `max_points` are downsampled keeping each
        bucket's min and max. `max_points=None` returns every point."""
        if max_points is not None and max_points < 4:
            raise InvalidRunInputError(
                f"max_points={max_points} is too small", "ask for at least 4 points, or None"
            )
        with self.meta.read() as s:
            run_id = _resolve(s, run_id)
            metric = s.scalar(
                select(RunMetricRecord).where(
                    RunMetricRecord.run_id == run_id, RunMetricRecord.key == key
                )
            )
            if metric is None:
                keys = s.scalars(
                    select(RunMetricRecord.key).where(RunMetricRecord.run_id == run_id)
                ).all()
                raise RunNotFoundError(
                    f"run {run_id} has no metric {key!r}",
                    f"its metrics are: {', '.join(sorted(keys)) or '(none)'}",
                )
            return read_history(s, metric, max_points)

    def artifact(self, run_id: str, name: str) -> bytes:
        """An artifact's bytes, verified against their sha256."""
        info = self.get(run_id)
        for artifact in info.artifacts:
            if artifact.name == name:
                return self.objects.get_bytes(artifact.digest)
        raise RunNotFoundError(
            f"run {info.id} has no artifact {name!r}",
            f"its artifacts are: {', '.join(a.name for a in info.artifacts) or '(none)'}",
        )


def _resolve(session: Session, run_id: str) -> str:
    if session.get(RunRecord, run_id) is not None:
        return run_id
    if _HEX_PREFIX.match(run_id):
        matches = session.scalars(
            select(RunRecord.id).where(RunRecord.id.like(f"{run_id}%")).limit(2)
        ).all()
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise RunNotFoundError(
                f"run id prefix {run_id!r} matches several runs", "give more characters"
            )
    raise RunNotFoundError(
        f"no run {run_id!r} in this workspace", "list runs with `conveyor runs ls`"
    )


def spool_folder(root: Path | None, metadata_url: str) -> Path:
    """Where a workspace's spool files live: in it, or in the user's state folder."""
    if root is not None:
        return root / STATE_DIR / "spool"
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return state / "conveyor" / "spool" / hashlib.sha256(metadata_url.encode()).hexdigest()[:16]


def _check_name(key: str) -> None:
    if not key or len(key) > 250:
        raise InvalidRunInputError(
            f"invalid name {key!r} for a param or tag", "use 1 to 250 characters"
        )


def _user() -> str:
    try:
        return getpass.getuser()[:100]
    except (KeyError, OSError):  # no passwd entry (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def _git_commit() -> str | None:
    """The commit checked out in the current directory, if it is a git repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None
