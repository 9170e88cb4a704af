"""Running the app: uvicorn with one process, N worker processes on one port, or Ray Serve.

With `workers > 1`, uvicorn's supervisor binds the port once and starts N processes that
accept on the shared socket; each builds the same app from the options, passed as JSON
in `CONVEYOR_SERVE_OPTIONS`. Each worker writes its metric totals to one fresh folder
(see metrics.py), so /metrics on any worker reports all of them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import MissingExtraError, ServingError
from conveyor.serving.metrics import MULTIPROC_ENV
from conveyor.serving.options import ServeOptions
from conveyor.serving.source import ModelSource

if TYPE_CHECKING:
    from conveyor.serving.app import ServingApp
    from conveyor.storage.metadata import MetadataStore
    from conveyor.storage.objects import ObjectStore

OPTIONS_ENV = "CONVEYOR_SERVE_OPTIONS"


@dataclass
class Stores:
    """What an app is built over: the model source and, from a workspace, its stores."""

    source: ModelSource
    meta: MetadataStore | None
    objects: ObjectStore | None


def open_stores(options: ServeOptions) -> Stores:
    """The workspace (if any) and the source: `options.source` or the registry."""
    meta = objects = None
    workspace: Any = None
    if options.workspace is not None or options.source is None:
        from conveyor.workspace import Workspace

        workspace = Workspace.open(options.workspace)
        meta, objects = workspace.meta, workspace.objects
    if options.source is not None:
        source = load_source(options.source)
    else:
        from conveyor.serving.registry_source import RegistrySource

        source = RegistrySource(workspace)
    return Stores(source, meta, objects)


def load_source(spec: str) -> ModelSource:
    """`package.module:function` -> the ModelSource the function returns."""
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ServingError(
            f"cannot import the model source '{spec}' ({e})",
            "give module:function, importable here",
        ) from e
    source: ModelSource = factory()
    return source


def build_app(options: ServeOptions) -> ServingApp:
    from conveyor.serving.app import create_app

    stores = open_stores(options)
    return create_app(options, stores.source, stores.meta, stores.objects)


def app_from_env() -> ServingApp:
    """The uvicorn factory each worker process calls."""
    return build_app(ServeOptions.model_validate_json(os.environ[OPTIONS_ENV]))


def check(options: ServeOptions) -> None:
    """Fail fast, with the user's error, on what the workers would only fail on later:
    an unknown model, alias or version, a canary or shadow that does not parse."""
    from conveyor.serving.source import parse_ref, parse_weighted

    options.batch_policy()
    stores = open_stores(options)
    for text in options.models:
        ref = parse_ref(text)
        stores.source.resolve(ref.name, ref.selector)
    served = {parse_ref(text).name for text in options.models}
    for text in [*options.canary, *options.shadow]:
        extra = parse_weighted(text)
        if extra.name not in served:
            raise ServingError(
                f"'{text}' names a model that is not served",
                f"serve {extra.name} too, or fix the name",
            )
        stores.source.resolve(extra.name, f"v{extra.version}")
    if stores.meta is not None:
        stores.meta.dispose()


def serve(options: ServeOptions) -> None:
    """Run until interrupted (Ctrl-C or SIGTERM drain the queues first)."""
    check(options)
    where = f"http://{options.host}:{options.port}"
    sys.stderr.write(f"serving {', '.join(options.models)} on {where} (docs: {where}/docs)\n")
    if options.backend == "ray":
        from conveyor.serving.ray_backend import serve_ray

        serve_ray(options)
        return
    try:
        import uvicorn
    except ImportError as e:
        raise MissingExtraError("serving needs uvicorn", "pip install 'conveyor[serve]'") from e
    settings: dict[str, Any] = {
        "host": options.host,
        "port": options.port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_level": "warning",
        "timeout_graceful_shutdown": 30,
        "lifespan": "on",
        "proxy_headers": False,
    }
    if options.workers <= 1:
        uvicorn.run(build_app(options), **settings)
        return
    with _multiprocess_metrics():
        os.environ[OPTIONS_ENV] = options.model_dump_json()
        uvicorn.run(
            "conveyor.serving.server:app_from_env",
            factory=True,
            workers=options.workers,
            **settings,
        )


@contextmanager
def _multiprocess_metrics() -> Iterator[None]:
    folder = tempfile.mkdtemp(prefix="conveyor-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)
