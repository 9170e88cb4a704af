"""`conveyor serve`, `conveyor keys ...` and `conveyor predict`: the serving faces.

The serving modules (FastAPI, uvicorn, onnxruntime) are imported inside the commands,
so `conveyor --help` stays light.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli import output
from conveyor.cli.state import state

keys_app = typer.Typer(
    help="API keys for the serving API: create, ls, revoke.", no_args_is_help=True
)


def serve(
    models: Annotated[
        list[str], typer.Argument(help="Models to serve: NAME:ALIAS (followed) or NAME@vN.")
    ],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes behind the port.")] = 1,
    backend: Annotated[str, typer.Option(help="local (uvicorn workers) or ray.")] = "local",
    replicas: Annotated[int, typer.Option(help="Ray: replicas (the minimum).")] = 1,
    max_replicas: Annotated[
        int | None, typer.Option(help="Ray: autoscale up to this many on queue depth.")
    ] = None,
    target_queue: Annotated[
        int, typer.Option(help="Ray: requests in flight per replica the autoscaler aims at.")
    ] = 32,
    canary: Annotated[
        list[str] | None, typer.Option(help="NAME@vN:10% takes that share of traffic.")
    ] = None,
    shadow: Annotated[
        list[str] | None, typer.Option(help="NAME@vN sees a copy of traffic; logged only.")
    ] = None,
    sticky_header: Annotated[
        str | None, typer.Option(help="Route by this header's value, not at random.")
    ] = None,
    runtime: Annotated[
        list[str] | None, typer.Option(help="NAME=onnx|torch (default onnx on the CPU).")
    ] = None,
    max_batch_size: Annotated[int, typer.Option(help="Rows per batch at most.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for a batch to fill.")] = 2.0,
    latency_target_ms: Annotated[
        float | None, typer.Option(help="Shorten the batch wait to meet this latency.")
    ] = None,
    max_queue: Annotated[int, typer.Option(help="Queued rows before 503s.")] = 65_536,
    max_queue_ms: Annotated[
        float, typer.Option(help="503 when the queue would take longer to drain (0: off).")
    ] = 1000.0,
    timeout: Annotated[float, typer.Option(help="Seconds a request may wait.")] = 30.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 16 << 20,
    auth: Annotated[str, typer.Option(help="auto (on when keys exist), on or off.")] = "auto",
    log_sample: Annotated[
        float, typer.Option(help="Share of predictions logged (0 turns the log off).")
    ] = 1.0,
    log_flush: Annotated[float, typer.Option(help="Seconds between prediction-log files.")] = 5.0,
    poll: Annotated[float, typer.Option(help="Seconds between checks of followed aliases.")] = 2.0,
    threads: Annotated[int, typer.Option(help="Intra-op threads per model.")] = 1,
    source: Annotated[
        str | None, typer.Option(help="module:function returning a ModelSource.")
    ] = None,
) -> None:
    """Serve models over HTTP (Open Inference Protocol v2 and /predict) until Ctrl-C."""
    from pydantic import ValidationError

    from conveyor.core.errors import ServingError
    from conveyor.serving.options import ServeOptions
    from conveyor.serving.server import serve as run

    runtimes: dict[str, str] = {}
    for item in runtime or []:
        name, _, kind = item.partition("=")
        runtimes[name] = kind
    workspace = None
    if source is None or state.workspace is not None:
        from conveyor.workspace import find_root

        workspace = str(find_root(state.workspace))
    settings = {
        "models": models,
        "workspace": workspace,
        "source": source,
        "canary": canary or [],
        "shadow": shadow or [],
        "sticky_header": sticky_header,
        "runtime": runtimes,
        "host": host,
        "port": port,
        "workers": workers,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "max_queue": max_queue,
        "max_queue_ms": max_queue_ms or None,
        "latency_target_ms": latency_target_ms,
        "timeout_s": timeout,
        "max_body_bytes": max_body_bytes,
        "auth": auth,
        "log_sample": log_sample,
        "log_flush_s": log_flush,
        "poll_s": poll,
        "threads": threads,
        "backend": backend,
        "replicas": replicas,
        "max_replicas": max_replicas,
        "target_queue": target_queue,
    }
    try:
        options = ServeOptions.model_validate(settings)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ServingError(
            f"bad option {where}: {first['msg']}", "see conveyor serve --help"
        ) from e
    options.batch_policy()  # checks the batch limits before anything starts
    run(options)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "default",
    scope: Annotated[str, typer.Option(help="predict, feedback or admin.")] = "predict",
    rate_limit: Annotated[
        float | None, typer.Option(help="Requests per second, for all workers together.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Create an API key; its secret is printed once and stored only as a hash."""
    from conveyor.serving.keys import Keys

    with state.open_workspace() as ws:
        new = Keys(ws.meta).create(name, scope, rate_limit)
    if as_json:
        output.print_json({"id": new.key.id, "name": name, "scope": scope, "key": new.secret})
        return
    sys.stdout.write(new.secret + "\n")
    sys.stderr.write(f"key {new.key.id} ({scope}) created; keep it: it is not shown again\n")


@keys_app.command("ls")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List keys (never their secrets)."""
    from conveyor.serving.keys import Keys

    with state.open_workspace() as ws:
        keys = Keys(ws.meta).list()
    rows = [
        [
            k.id,
            k.name,
            k.scope,
            "-" if k.rate_limit is None else f"{k.rate_limit:g}/s",
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            "revoked" if k.revoked_at else "active",
        ]
        for k in keys
    ]
    if as_json:
        columns = ["id", "name", "scope", "rate_limit", "created", "state"]
        output.print_json([dict(zip(columns, row, strict=True)) for row in rows])
        return
    output.print_table("API keys", ["id", "name", "scope", "rate", "created", "state"], rows)


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key; servers refuse it within a few seconds."""
    from conveyor.serving.keys import Keys

    with state.open_workspace() as ws:
        key = Keys(ws.meta).revoke(key_id)
    output.print_line(f"revoked {key.id} ({key.name})")


def predict(
    model: Annotated[str, typer.Argument(help="The served model's name.")],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Image files, or a JSON file of rows ('-' reads stdin)."),
    ] = None,
    row: Annotated[
        list[str] | None, typer.Option("--row", "-r", help="One row as JSON (repeatable).")
    ] = None,
    url: Annotated[str, typer.Option(envvar="CONVEYOR_URL", help="The server.")] = (
        "http://127.0.0.1:8000"
    ),
    api_key: Annotated[
        str | None, typer.Option(envvar="CONVEYOR_API_KEY", help="An API key.")
    ] = None,
    all_scores: Annotated[bool, typer.Option("--scores", help="Every class's score.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Ask a running server for predictions and print them."""
    from conveyor.core.errors import ServingError
    from conveyor.serving.client import Client

    rows, images = _inputs(inputs or [], row or [])
    if not rows and not images:
        raise ServingError("nothing to predict", "pass image files, a JSON file or --row '[...]'")
    try:
        with Client(url, api_key=api_key) as client:
            if images:
                result = client.predict(model, images=images, all_scores=all_scores)
            else:
                result = client.predict(model, rows=rows, all_scores=all_scores)
    except Exception as e:
        import httpx

        if isinstance(e, httpx.TransportError):
            raise ServingError(f"cannot reach {url} ({e})", "start it with `conveyor serve`") from e
        raise
    if as_json:
        output.print_json(
            {
                "model": result.model,
                "version": result.version,
                "request_id": result.request_id,
                "predictions": list(result),
            }
        )
        return
    names = [p.name for p in images] if images else [str(i) for i in range(len(result))]
    table = [
        [n, p.get("label", p.get("value")), _score(p)] for n, p in zip(names, result, strict=False)
    ]
    output.print_table(f"{result.model}@v{result.version}", ["input", "prediction", "score"], table)


def _score(prediction: dict[str, Any]) -> str:
    score = prediction.get("score")
    return "-" if score is None else f"{score:.4f}"


def _inputs(inputs: list[str], rows: list[str]) -> tuple[list[Any], list[Path]]:
    from conveyor.core.errors import ServingError

    parsed: list[Any] = []
    for text in rows:
        try:
            parsed.append(json.loads(text))
        except json.JSONDecodeError as e:
            raise ServingError(f"--row {text!r} is not JSON ({e})", "e.g. --row '[1, 2, 3]'") from e
    images: list[Path] = []
    for item in inputs:
        if item == "-" or item.endswith((".json", ".jsonl")):
            text = sys.stdin.read() if item == "-" else Path(item).read_text()
            parsed.extend(_rows_of(text, item))
            continue
        path = Path(item)
        if not path.is_file():
            raise ServingError(f"no file {item}", "pass image files or a JSON file of rows")
        images.append(path)
    if parsed and images:
        raise ServingError("both rows and images given", "send one kind per call")
    return parsed, images


def _rows_of(text: str, origin: str) -> list[Any]:
    from conveyor.core.errors import ServingError

    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ServingError(
                f"{origin} is neither JSON nor JSON lines ({e})",
                "give a list of rows or one row per line",
            ) from e
    if isinstance(doc, dict) and "rows" in doc:
        doc = doc["rows"]
    return doc if isinstance(doc, list) else [doc]
