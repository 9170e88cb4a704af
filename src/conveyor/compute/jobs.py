"""`ws.jobs`: submit, find, cancel and read jobs, and run the scheduler that runs them.

    job = ws.jobs.submit(JobSpec(command="python train.py", cpus=2, retries=2))
    ws.jobs.run_scheduler(executor="local")      # or `conveyor jobs worker`
    ws.jobs.get(job.id).state                    # "succeeded"
    print("".join(ws.jobs.logs(job.id)))

A job started by a pipeline, a recipe or the CLI is the same record. States, the
environment a job gets and its exit-code contract: JOBS.md.
"""

from __future__ import annotations

import builtins
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from conveyor.compute.cost import PriceTable
from conveyor.compute.executor import Executor, open_executor
from conveyor.compute.job import FINAL_STATES, STATES, Job
from conveyor.compute.joblogs import read_chunks
from conveyor.compute.records import JobAttemptRecord, JobRecord
from conveyor.compute.spec import JobSpec
from conveyor.core.errors import JobNotFoundError, JobSpecError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from conveyor.compute.scheduler import Scheduler
    from conveyor.storage.metadata import MetadataStore
    from conveyor.storage.objects import ObjectStore

_HEX_PREFIX = re.compile(r"^[0-9a-f]{4,32}$")


class Jobs:
    """The jobs of one workspace; `prices` is the table their cost is estimated with."""

    def __init__(
        self,
        meta: MetadataStore,
        objects: ObjectStore,
        root: Path | None,
        prices: PriceTable | None = None,
    ) -> None:
        self.meta = meta
        self.objects = objects
        self.root = root
        self.prices = prices or PriceTable()

    # -- writing -----------------------------------------------------------------------------

    def submit(self, spec: JobSpec | None = None, **fields: Any) -> Job:
        """Queue a job: `submit(JobSpec(...))` or `submit(command="...", cpus=2)`."""
        if spec is None:
            spec = JobSpec(**fields)
        elif fields:
            spec = replace(spec, **fields)
        if spec.workdir is None:
            spec = replace(spec, workdir=str(Path.cwd()))
        job_id = uuid.uuid4().hex
        record = JobRecord(
            id=job_id,
            name=spec.display_name[:200],
            kind=spec.kind,
            spec=spec.to_json(),
            state="queued",
            priority=spec.priority,
            attempts=0,
            failures=0,
            run_id=uuid.uuid4().hex,
            cancel_requested=False,
            submitted_at=datetime.now(UTC),
        )
        with self.meta.write() as s:
            s.add(record)
        return self.get(job_id)

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one by its worker (SIGTERM, then
        SIGKILL after the grace period). A finished job is left as it is."""
        with self.meta.write() as s:
            job_id = _resolve(s, job_id)
            s.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.state == "queued")
                .values(
                    state="cancelled",
                    reason="cancelled before it started",
                    ended_at=datetime.now(UTC),
                )
            )
            s.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.state == "running")
                .values(cancel_requested=True)
            )
        return self.get(job_id)

    # -- reading -----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """A job with its attempts, by id or a unique prefix of at least 4 characters."""
        with self.meta.read() as s:
            job_id = _resolve(s, job_id)
            return _load(s, [job_id], self.prices)[0]

    def list(
        self, state: str | Iterable[str] | None = None, limit: int | None = None
    ) -> builtins.list[Job]:
        """Jobs, newest first; `state` is one state or several ("queued", "running"...)."""
        states = [state] if isinstance(state, str) else list(state or [])
        unknown = [s for s in states if s not in STATES]
        if unknown:
            raise JobSpecError(
                f"unknown job state {', '.join(unknown)}", f"use one of: {', '.join(STATES)}"
            )
        query = select(JobRecord.id).order_by(JobRecord.submitted_at.desc(), JobRecord.id)
        if states:
            query = query.where(JobRecord.state.in_(states))
        if limit is not None:
            query = query.limit(limit)
        with self.meta.read() as s:
            return _load(s, builtins.list(s.scalars(query)), self.prices)

    def logs(self, job_id: str, follow: bool = False, poll_s: float = 0.5) -> Iterator[str]:
        """The job's output so far; with `follow`, keep yielding until the job ends."""
        job_id = self.get(job_id).id
        last = -1
        while True:
            final = follow and self.get(job_id).is_final  # read before the chunks: none missed
            for seq, data in read_chunks(self.meta, self.objects, job_id, last):
                last = seq
                yield data.decode(errors="replace")
            if not follow or final:
                return
            time.sleep(poll_s)

    def wait(self, job_id: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> Job:
        """Block until the job is in a final state (or `timeout_s` passes); returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job.is_final or time.monotonic() >= deadline:
                return job
            time.sleep(poll_s)

    # -- running -----------------------------------------------------------------------------

    def scheduler(
        self,
        executor: str | Executor = "local",
        *,
        poll_s: float = 0.2,
        lease_s: float = 30.0,
        grace_s: float = 10.0,
    ) -> Scheduler:
        """A scheduler bound to this workspace and an executor; `.run()` starts it."""
        from conveyor.compute.scheduler import Scheduler

        home = str(self.root) if self.root is not None else None
        return Scheduler(
            self.meta,
            self.objects,
            open_executor(executor),
            home,
            poll_s=poll_s,
            lease_s=lease_s,
            grace_s=grace_s,
            close_executor=isinstance(executor, str),  # one we opened; the caller closes theirs
        )

    def run_scheduler(
        self,
        executor: str | Executor = "local",
        *,
        stop: threading.Event | None = None,
        until_idle: bool = False,
        poll_s: float = 0.2,
        lease_s: float = 30.0,
        grace_s: float = 10.0,
    ) -> None:
        """Run queued jobs until `stop` is set (or, with `until_idle`, none are left)."""
        scheduler = self.scheduler(executor, poll_s=poll_s, lease_s=lease_s, grace_s=grace_s)
        scheduler.run(stop, until_idle=until_idle)


def _load(session: Session, ids: builtins.list[str], prices: PriceTable) -> builtins.list[Job]:
    if not ids:
        return []
    records = {r.id: r for r in session.scalars(select(JobRecord).where(JobRecord.id.in_(ids)))}
    attempts: dict[str, builtins.list[JobAttemptRecord]] = {}
    for a in session.scalars(select(JobAttemptRecord).where(JobAttemptRecord.job_id.in_(ids))):
        attempts.setdefault(a.job_id, []).append(a)
    return [Job.of(records[i], attempts.get(i, []), prices) for i in ids if i in records]


def _resolve(session: Session, job_id: str) -> str:
    if session.get(JobRecord, job_id) is not None:
        return job_id
    if _HEX_PREFIX.match(job_id):
        matches = session.scalars(
            select(JobRecord.id).where(JobRecord.id.like(f"{job_id}%")).limit(2)
        ).all()
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise JobNotFoundError(
                f"job id prefix {job_id!r} matches several jobs", "give more characters"
            )
    raise JobNotFoundError(
        f"no job {job_id!r} in this workspace", "list jobs with `conveyor jobs ls`"
    )


__all__ = ["FINAL_STATES", "Jobs"]
