"""`conveyor jobs ...`: submit, list, show, follow and cancel jobs; run a worker."""

from __future__ import annotations

import json
import shlex
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli import output
from conveyor.cli.state import state

if TYPE_CHECKING:
    from conveyor.compute.job import Job
    from conveyor.workspace import Workspace

app = typer.Typer(
    help="Jobs: queue work, run it on this machine or a Ray cluster, follow it.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JobId = Annotated[
    str, typer.Argument(help="A job id, or a unique prefix of at least 4 characters.")
]


@app.command()
def submit(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="The command to run, after --: `-- python train.py --lr 0.1`. "
            "With --recipe, the recipe's arguments."
        ),
    ] = None,
    cmd: Annotated[str | None, typer.Option("--cmd", help="A shell command to run.")] = None,
    fn: Annotated[
        str | None, typer.Option("--fn", help="A function to call: package.module:function.")
    ] = None,
    kwargs: Annotated[
        str | None, typer.Option("--kwargs", help="JSON keyword arguments for --fn: '{\"x\": 1}'.")
    ] = None,
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="A training recipe (`conveyor train`).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="A name to list it by.")] = None,
    cpus: Annotated[float, typer.Option(help="CPU cores per worker.")] = 1.0,
    gpus: Annotated[int, typer.Option(help="GPUs per worker.")] = 0,
    memory: Annotated[
        str | None, typer.Option(help="Memory per worker, reserved and enforced: 512MB, 2GB.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes (DDP ranks); >1 needs Ray.")] = 1,
    priority: Annotated[int, typer.Option(help="Higher runs first and may preempt lower.")] = 0,
    retries: Annotated[int, typer.Option(help="Retries after a failure or a lost worker.")] = 0,
    backoff: Annotated[str, typer.Option(help="Wait before the first retry (doubles).")] = "5s",
    time_limit: Annotated[
        str | None, typer.Option("--time-limit", help="Stop it after this long: 30s, 10m, 2h.")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the job (repeatable).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a job: a command after -- (or --cmd "..."), a --fn or a --recipe."""
    from conveyor.compute.spec import JobSpec, parse_duration, parse_memory_mb
    from conveyor.core.errors import JobSpecError

    if args and recipe is None:
        if cmd is not None or fn is not None:
            raise JobSpecError(
                f"give the job one command: --{'cmd' if cmd is not None else 'fn'} "
                f"or the words after -- ({shlex.join(args)!r}), not both",
                "drop one of them",
            )
        cmd, args = shlex.join(args), []  # run as typed: each word stays one argument
    try:
        parsed_kwargs = json.loads(kwargs) if kwargs else {}
    except json.JSONDecodeError as e:
        raise JobSpecError(f"--kwargs is not JSON ({e.msg})", "write it like '{\"x\": 1}'") from e
    if not isinstance(parsed_kwargs, dict):
        raise JobSpecError("--kwargs must be a JSON object", "write it like '{\"x\": 1}'")
    spec = JobSpec(
        command=cmd,
        function=fn,
        kwargs=parsed_kwargs,
        recipe=recipe,
        args=list(args or []),
        name=name,
        cpus=cpus,
        gpus=gpus,
        memory_mb=parse_memory_mb(memory),
        workers=workers,
        priority=priority,
        retries=retries,
        backoff_s=parse_duration(backoff) or 0.0,
        time_limit_s=parse_duration(time_limit),
        env=_env(env or []),
    )
    with state.open_workspace() as ws:
        job = ws.jobs.submit(spec)
    if as_json:
        output.print_json(job.as_dict())
        return
    output.print_line(f"Submitted job [bold]{job.id[:8]}[/bold] ({job.name}): queued")
    output.print_line(f"  follow it: conveyor jobs logs -f {job.id[:8]}")


def _env(pairs: list[str]) -> dict[str, str]:
    from conveyor.core.errors import JobSpecError

    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise JobSpecError(f"--env {pair!r} is not KEY=VALUE", "write it like --env LR=0.1")
        env[key] = value
    return env


@app.command("ls")
def list_jobs(
    state_: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help="Only jobs in this state (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs.")] = 50,
    wide: output.WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    with state.open_workspace() as ws:
        jobs = ws.jobs.list(state=state_, limit=limit)
    if as_json:
        output.print_json([j.as_dict() for j in jobs])
        return
    output.print_table(
        "Jobs",
        [
            output.Column("id", key=True),
            "name",
            "state",
            output.Column("priority", optional=True),
            output.Column("attempts", optional=True),
            "reason",
        ],
        [(j.id[:8], j.name, j.state, j.priority, j.attempts, j.reason or "") for j in jobs],
        wide=wide,
    )


@app.command()
def show(job_id: JobId, as_json: JsonOption = False) -> None:
    """A job's state and reason, attempts, resources, run, device-seconds and cost."""
    with state.open_workspace() as ws:
        job = ws.jobs.get(job_id)
        run_id = _run_of(ws, job)
    cost = job.cost_usd()
    if as_json:
        output.print_json({**job.as_dict(), "tracked_run": run_id})
        return
    output.print_line(f"[bold]{job.name}[/bold] ({job.id}), a {job.kind} job")
    output.print_line(f"  state {job.state}" + (f": {job.reason}" if job.reason else ""))
    output.print_line(
        f"  priority {job.priority}, attempts {job.attempts} (retries {job.spec.retries}), "
        f"resources {_resources(job)}"
    )
    output.print_line(f"  run {run_id or '- (the job has not opened one)'}")
    output.print_line(
        f"  usage {output.human_seconds(job.device_seconds)} of device time, "
        f"estimated cost {output.human_cost(cost)}"
    )
    if job.history:
        output.print_table(
            "Attempts",
            ["#", "state", "reason", "executor", "host", "devices", "seconds"],
            [
                (
                    a.number,
                    a.state,
                    a.reason or "",
                    a.executor,
                    a.host,
                    f"{a.devices:g} {a.device}"
                    + (f" ({','.join(map(str, a.gpu_indices))})" if a.gpu_indices else ""),
                    f"{a.seconds:.1f}",
                )
                for a in job.history
            ],
        )


def _run_of(ws: Workspace, job: Job) -> str | None:
    """The tracked run of a job: one with the job's run id, or one tagged with the job."""
    from conveyor.compute.entry import RUN_TAG
    from conveyor.core.errors import RunNotFoundError

    try:
        return ws.runs.get(job.run_id).id
    except RunNotFoundError:
        pass
    found = ws.runs.search(f"tags.{RUN_TAG} = '{job.id}'", limit=1)
    return found[0].id if found else None


def _resources(job: Job) -> str:
    spec = job.spec
    parts = [f"{spec.cpus:g} cpu"]
    if spec.gpus:
        parts.append(f"{spec.gpus} gpu")
    if spec.memory_mb:
        parts.append(f"{spec.memory_mb} MB")
    text = ", ".join(parts)
    return f"{spec.workers} x ({text})" if spec.workers > 1 else text


@app.command()
def logs(
    job_id: JobId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until it ends.")
    ] = False,
) -> None:
    """Print a job's output (stdout and stderr, every attempt)."""
    import sys

    with state.open_workspace() as ws:
        for text in ws.jobs.logs(job_id, follow=follow):
            sys.stdout.write(text)
            sys.stdout.flush()


@app.command()
def cancel(job_id: JobId) -> None:
    """Cancel a job: a queued one now, a running one by SIGTERM (SIGKILL after a grace)."""
    with state.open_workspace() as ws:
        job = ws.jobs.cancel(job_id)
    if job.state == "cancelled":
        output.print_line(f"Cancelled job {job.id[:8]}")
    elif job.is_final:
        output.print_line(f"Job {job.id[:8]} had already ended: {job.state}")
    else:
        output.print_line(f"Cancelling job {job.id[:8]}: its worker stops it within seconds")


@app.command()
def worker(
    executor: Annotated[
        str, typer.Option("--executor", "-x", help="local, ray://HOST:PORT or auto.")
    ] = "local",
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit once no job is queued or running.")
    ] = False,
    lease: Annotated[
        str, typer.Option(help="Other workers take over this one's jobs after this silence.")
    ] = "30s",
    grace: Annotated[str, typer.Option(help="SIGTERM to SIGKILL when stopping a job.")] = "10s",
    poll: Annotated[float, typer.Option(help="Seconds between scheduling rounds.")] = 0.2,
) -> None:
    """Run queued jobs until stopped (Ctrl-C or SIGTERM stops jobs and requeues them)."""
    from conveyor.compute.spec import parse_duration

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    with state.open_workspace() as ws:
        scheduler = ws.jobs.scheduler(
            executor,
            poll_s=poll,
            lease_s=parse_duration(lease) or 30.0,
            grace_s=parse_duration(grace) or 0.0,
        )
        output.print_line(
            f"Worker {scheduler.id} on {executor}: {scheduler.ledger.capacity.describe()}"
        )
        scheduler.run(stop, until_idle=until_idle)
