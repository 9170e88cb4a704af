"""The scheduler: one loop that takes queued jobs, places them on an executor, watches
them, and writes every change of state to the metadata store.

Its state is the database, so a worker killed at any moment loses nothing: the next
worker (or another one already running) sees the dead worker's heartbeat stop (or,
on the same host, its process gone), marks its running jobs lost, makes sure their
processes are dead, and requeues them by their retry policy. A job is taken only by
`UPDATE jobs SET state='running' ... WHERE id=? AND state='queued'`; the one worker
whose UPDATE changed the row runs it, on SQLite and PostgreSQL alike.

Order: highest priority first, then first submitted. When the first job in that order
does not fit, lower-priority running jobs are preempted to make room (SIGTERM; the
trainer checkpoints and exits EXIT_PREEMPTED; they are requeued and resume), and no
job behind it starts meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psutil  # type: ignore[import-untyped]
from sqlalchemy import select, update

from conveyor.compute.entry import Launch, job_environment
from conveyor.compute.executor import Attempt, Executor
from conveyor.compute.job import aware
from conveyor.compute.joblogs import LogWriter
from conveyor.compute.lifecycle import STOP_REASONS, StopWhy, settlement
from conveyor.compute.placement import Ledger, Need
from conveyor.compute.process import Outcome, process_alive
from conveyor.compute.records import JobAttemptRecord, JobRecord, JobWorkerRecord
from conveyor.compute.spec import JobSpec
from conveyor.core.errors import ExecutorError
from conveyor.core.logs import get_logger
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore

log = get_logger(__name__)


@dataclass
class _Running:
    job_id: str
    attempt_no: int
    spec: JobSpec
    attempt: Attempt
    stopping: StopWhy | None = None
    recorded: tuple[str, int | None] = ("", None)  # (host, pid) as written to its row


class Scheduler:
    """Runs jobs from the metadata store on one executor until told to stop."""

    def __init__(
        self,
        meta: MetadataStore,
        objects: ObjectStore,
        executor: Executor,
        home: str | None,
        *,
        poll_s: float = 0.2,
        lease_s: float = 30.0,
        grace_s: float = 10.0,
        close_executor: bool = True,
    ) -> None:
        self.meta, self.executor, self.home = meta, executor, home
        self.close_executor = close_executor
        self.poll_s, self.lease_s, self.grace_s = poll_s, lease_s, grace_s
        self.heartbeat_s = min(2.0, lease_s / 5)
        self.host = platform.node()[:255]
        self.id = f"{self.host[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.logs = LogWriter(meta, objects)
        self.ledger = Ledger(executor.capacity())
        self.running: dict[str, _Running] = {}
        self._last_beat = 0.0
        self._registered = False

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, until_idle: bool = False) -> None:
        """Loop until `stop` is set (then stop jobs and requeue them) or, with
        `until_idle`, until no job is queued or running."""
        stop = stop or threading.Event()
        self.register()
        try:
            while not stop.is_set():
                busy = self.tick()
                if until_idle and not busy:
                    break
                stop.wait(self.poll_s)
        finally:
            self.shutdown()

    def register(self) -> None:
        if self._registered:
            return
        me = psutil.Process()
        with self.meta.write() as s:
            s.add(
                JobWorkerRecord(
                    id=self.id,
                    host=self.host,
                    pid=me.pid,
                    pid_started=me.create_time(),
                    executor=self.executor.name,
                    state="alive",
                )
            )
        self._registered = True
        log.info("jobs.worker_started", worker=self.id, capacity=self.ledger.capacity.describe())
        self.recover()

    def tick(self) -> bool:
        """One round: heartbeat and recovery when due, watch, place. True if busy."""
        now = time.monotonic()
        if now - self._last_beat >= self.heartbeat_s:
            self._last_beat = now
            self.heartbeat()
            self.recover()
        self.watch()
        self.logs.flush_due()
        waiting = self.place()
        return bool(self.running) or waiting

    # -- liveness ----------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Renew this worker's lease; stop the jobs users asked to cancel."""
        with self.meta.write() as s:
            s.execute(
                update(JobWorkerRecord)
                .where(JobWorkerRecord.id == self.id)
                .values(heartbeat_at=datetime.now(UTC))
            )
            mine = s.get(JobWorkerRecord, self.id)
            cancelled = s.scalars(
                select(JobRecord.id).where(
                    JobRecord.worker_id == self.id,
                    JobRecord.state == "running",
                    JobRecord.cancel_requested.is_(True),
                )
            ).all()
        if mine is None or mine.state != "alive":
            for job in self.running.values():
                job.attempt.kill()
            self.running.clear()
            raise ExecutorError(
                f"worker {self.id} was declared gone by another worker (no heartbeat for "
                f"{self.lease_s:g} s); its jobs were requeued",
                "restart the worker; give it a longer --lease if the machine is very busy",
            )
        for job_id in cancelled:
            self.stop_job(job_id, "cancel")

    def recover(self) -> None:
        """Find workers that died (lease expired, or process gone on this host) and
        requeue their running jobs after making sure those are not running any more."""
        now = datetime.now(UTC)
        with self.meta.read() as s:
            workers = s.scalars(select(JobWorkerRecord).where(JobWorkerRecord.state == "alive"))
            dead = [w for w in workers if w.id != self.id and self._is_dead(w, now)]
            known = set(s.scalars(select(JobWorkerRecord.id)))
            orphans = s.execute(
                select(JobRecord.id, JobRecord.worker_id).where(JobRecord.state == "running")
            ).all()
        for worker in dead:
            with self.meta.write() as s:
                s.execute(
                    update(JobWorkerRecord)
                    .where(JobWorkerRecord.id == worker.id, JobWorkerRecord.state == "alive")
                    .values(state="gone")
                )
            log.warning("jobs.worker_lost", worker=worker.id, host=worker.host)
        gone = {w.id for w in dead}
        for job_id, worker_id in orphans:
            if worker_id in gone or worker_id not in known or worker_id is None:
                self._requeue_lost(job_id, worker_id)

    def _is_dead(self, worker: JobWorkerRecord, now: datetime) -> bool:
        beat = aware(worker.heartbeat_at) or now
        if now - beat > timedelta(seconds=self.lease_s):
            return True
        return worker.host == self.host and not process_alive(worker.pid, worker.pid_started)

    def _requeue_lost(self, job_id: str, worker_id: str | None) -> None:
        with self.meta.read() as s:
            job = s.get(JobRecord, job_id)
            attempt = s.get(JobAttemptRecord, (job_id, job.attempts)) if job else None
        if job is None or job.state != "running" or job.worker_id != worker_id:
            return
        if attempt is not None:
            with contextlib.suppress(Exception):  # best effort: the attempt may be long gone
                self.executor.reap(
                    job_id, attempt.number, attempt.host, attempt.pid, attempt.pid_started
                )
        reason = f"lost: its worker {worker_id} stopped answering"
        outcome = Outcome("lost", None, reason)
        self._settle(job_id, job.attempts, JobSpec.from_json(job.spec), outcome, None, worker_id)

    # -- placing -----------------------------------------------------------------------------

    def place(self) -> bool:
        """Start what fits, in priority order; preempt for the first that does not.
        Returns True if jobs are waiting (queued now or after a backoff)."""
        now = datetime.now(UTC)
        with self.meta.read() as s:
            queued = s.scalars(
                select(JobRecord)
                .where(JobRecord.state == "queued")
                .order_by(JobRecord.priority.desc(), JobRecord.submitted_at, JobRecord.id)
                .limit(200)
            ).all()
        for job in queued:
            ready_at = aware(job.not_before)
            if ready_at is not None and ready_at > now:
                continue
            spec = JobSpec.from_json(job.spec)
            need = Need.of(spec)
            if why := self.ledger.never_fits(need):
                self._refuse(job.id, f"cannot run on the {self.executor.name} executor: {why}")
                continue
            if self.ledger.fits(need):
                self._start(job.id, spec, need)
                continue
            stopping = {j for j, r in self.running.items() if r.stopping}
            for victim in self.ledger.victims(need, job.priority, stopping) or []:
                self.stop_job(victim, "preempt")
            break  # nothing behind it starts in the room it is waiting for
        return bool(queued)

    def _refuse(self, job_id: str, reason: str) -> None:
        with self.meta.write() as s:
            s.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.state == "queued")
                .values(state="failed", reason=reason, ended_at=datetime.now(UTC))
            )

    def _start(self, job_id: str, spec: JobSpec, need: Need) -> None:
        with self.meta.write() as s:
            claimed = s.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.state == "queued")
                .values(
                    state="running",
                    worker_id=self.id,
                    attempts=JobRecord.attempts + 1,
                    reason=None,
                    cancel_requested=False,
                )
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return  # another worker took it first
            job = s.get_one(JobRecord, job_id, populate_existing=True)
            number, run_id = job.attempts, job.run_id
            if job.started_at is None:
                job.started_at = datetime.now(UTC)
            gpus = self.ledger.take(job_id, job.priority, need, time.monotonic())
            device, count = spec.devices
            s.add(
                JobAttemptRecord(
                    job_id=job_id,
                    number=number,
                    worker_id=self.id,
                    executor=self.executor.name,
                    host=self.host,
                    gpu_indices=",".join(map(str, gpus)),
                    device=self.executor.device_name(gpus) if device == "gpu" else "cpu",
                    devices=count,
                    state="running",
                )
            )
        env = job_environment(job_id, run_id, number, self.home, spec)
        self.logs.note(
            job_id,
            number,
            f"attempt {number} started on the {self.executor.name} executor ({self.host})",
        )
        try:
            attempt = self.executor.launch(Launch(job_id, number, spec, env, gpus))
        except Exception as e:  # noqa: BLE001 - a job that cannot start fails, the worker goes on
            reason = str(e) if isinstance(e, ExecutorError) else f"could not start: {e}"
            self._settle(job_id, number, spec, Outcome("failed", None, reason), None, self.id)
            return
        self.running[job_id] = running = _Running(job_id, number, spec, attempt)
        self._record_place(running)

    def _record_place(self, job: _Running) -> None:
        """Write where the attempt runs (a Ray actor knows it only once placed)."""
        attempt = job.attempt
        if job.recorded == (attempt.host, attempt.pid):
            return
        job.recorded = (attempt.host, attempt.pid)
        with self.meta.write() as s:
            s.execute(
                update(JobAttemptRecord)
                .where(
                    JobAttemptRecord.job_id == job.job_id,
                    JobAttemptRecord.number == job.attempt_no,
                )
                .values(host=attempt.host[:255], pid=attempt.pid, pid_started=attempt.pid_started)
            )

    # -- watching and stopping ----------------------------------------------------------------

    def watch(self) -> None:
        for job in list(self.running.values()):
            try:
                output, outcome = job.attempt.step()
            except Exception as e:  # noqa: BLE001 - an executor that lost the attempt
                output, outcome = b"", Outcome("lost", None, f"lost: {e}")
            self.logs.append(job.job_id, job.attempt_no, output)
            self._record_place(job)
            if outcome is not None:
                del self.running[job.job_id]
                self._settle(job.job_id, job.attempt_no, job.spec, outcome, job.stopping, self.id)

    def stop_job(self, job_id: str, why: StopWhy) -> None:
        job = self.running.get(job_id)
        if job is None or job.stopping is not None:
            return
        job.stopping = why
        self.logs.note(job_id, job.attempt_no, f"stopping: {STOP_REASONS[why]} (SIGTERM)")
        job.attempt.stop(STOP_REASONS[why], self.grace_s)

    def shutdown(self) -> None:
        """Stop every running job (SIGTERM, grace, SIGKILL) and requeue them."""
        for job_id in list(self.running):
            self.stop_job(job_id, "shutdown")
        deadline = time.monotonic() + self.grace_s + 5
        while self.running and time.monotonic() < deadline:
            self.watch()
            time.sleep(0.05)
        for job in list(self.running.values()):  # did not even die of SIGKILL: give up on it
            self._settle(
                job.job_id, job.attempt_no, job.spec, Outcome("lost", None, "lost"), None, self.id
            )
        self.running.clear()
        self.logs.flush_all()
        if self._registered:
            with self.meta.write() as s:
                s.execute(
                    update(JobWorkerRecord)
                    .where(JobWorkerRecord.id == self.id, JobWorkerRecord.state == "alive")
                    .values(state="stopped", heartbeat_at=datetime.now(UTC))
                )
            self._registered = False
        if self.close_executor:
            self.executor.close()

    # -- recording how an attempt ended ------------------------------------------------------

    def _settle(
        self,
        job_id: str,
        number: int,
        spec: JobSpec,
        outcome: Outcome,
        stopping: StopWhy | None,
        owner: str | None,
    ) -> None:
        """Write the attempt's end and the job's next state; free its resources at once.

        The log is complete before the state changes, so whoever follows the log and
        sees the job end has already been able to read all of its output.
        """
        self.ledger.release(job_id)
        with self.meta.read() as s:
            job = s.get(JobRecord, job_id)
        if job is None or job.state != "running" or job.worker_id != owner:
            self.logs.forget(job_id)
            return  # someone else already settled it
        attempt_state, values, note = settlement(job, spec, number, outcome, stopping)
        self.logs.note(job_id, number, note)
        self.logs.forget(job_id)
        with self.meta.write() as s:
            settled = s.execute(
                update(JobRecord)
                .where(
                    JobRecord.id == job_id,
                    JobRecord.state == "running",
                    JobRecord.worker_id == owner,
                    JobRecord.attempts == number,
                )
                .values(**values)
            )
            if settled.rowcount != 1:  # type: ignore[attr-defined]
                return
            s.execute(
                update(JobAttemptRecord)
                .where(JobAttemptRecord.job_id == job_id, JobAttemptRecord.number == number)
                .values(
                    state=attempt_state,
                    reason=outcome.reason,
                    exit_code=outcome.exit_code,
                    ended_at=datetime.now(UTC),
                )
            )
        log.info("jobs.attempt_ended", job=job_id, attempt=number, state=attempt_state)
