"""The Ray Serve backend (`conveyor serve --backend ray`): the same app in Ray replicas.

Each replica builds the same ASGI app from the options (its lifespan loads and verifies
the models; its batcher batches what Ray routes to it), and Ray's proxy spreads requests
over the replicas. With `max_replicas`, Ray Serve autoscales between `replicas` and
`max_replicas` on queue depth: the ongoing requests per replica, aimed at
`target_queue`. Each replica's /metrics reports that replica alone.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from conveyor.core.errors import MissingExtraError, ServingError
from conveyor.serving.options import ServeOptions

log = logging.getLogger(__name__)
APP_NAME = "conveyor"


def build_replica_app(options_json: str) -> Any:
    """Called by Ray on each replica: the app, with the models loaded by its lifespan."""
    from conveyor.serving.server import build_app

    return build_app(ServeOptions.model_validate_json(options_json))


def deploy(options: ServeOptions) -> Any:
    """Deploy the app on the connected Ray cluster; returns once replicas are up."""
    try:
        from ray import serve
    except ImportError as e:
        raise MissingExtraError(
            "the Ray backend needs Ray Serve", "pip install 'conveyor[ray]'"
        ) from e
    serve.start(http_options={"host": options.host, "port": options.port})
    _check_listening_where_asked(options)
    settings: dict[str, Any] = {
        "name": APP_NAME,
        # room for whole batches: Ray's default of 5 in flight would cap every batch at 5
        "max_ongoing_requests": max(2 * options.max_batch_size, options.target_queue * 2, 64),
        "ray_actor_options": {
            "num_cpus": float(os.environ.get("CONVEYOR_RAY_CPUS", "0.5")),
            "runtime_env": {"env_vars": _passed_env()},
        },
        "graceful_shutdown_timeout_s": 30,
    }
    if options.max_replicas is not None and options.max_replicas > options.replicas:
        settings["autoscaling_config"] = {
            "min_replicas": options.replicas,
            "initial_replicas": options.replicas,
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.target_queue,
            "upscale_delay_s": 2,
            "downscale_delay_s": 30,
            "metrics_interval_s": 1,
            "look_back_period_s": 5,
        }
    else:
        settings["num_replicas"] = options.replicas
    options_json = options.model_dump_json()

    def builder() -> Any:  # a plain function: Ray calls it on each replica (cloudpickled)
        return build_replica_app(options_json)

    deployment = serve.deployment(**settings)(serve.ingress(builder)())
    return serve.run(deployment.bind(), name=APP_NAME, route_prefix="/")


def _check_listening_where_asked(options: ServeOptions) -> None:
    """Ray Serve keeps the HTTP address of the first `serve.start` on a cluster and only
    logs a warning for a different one: say so, rather than serve on the old port."""
    from ray.serve import context

    try:  # a private API: skip the check if a Ray release moves it
        client = context._get_global_client()
        host, port = client.http_config.host, int(client.http_config.port)  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        return
    if port != options.port or host != options.host:
        raise ServingError(
            f"Ray Serve on this cluster already listens on {host}:{port}, not "
            f"{options.host}:{options.port} (Ray keeps the address of the first app started)",
            f"use --host {host} --port {port}, or run `serve shutdown` on the cluster first",
        )


def _passed_env() -> dict[str, str]:
    """CONVEYOR_* settings and PYTHONPATH reach the replicas, so they open the same
    workspace and can import the same `--source` module as this process."""
    names = [n for n in os.environ if n.startswith("CONVEYOR_")] + ["PYTHONPATH"]
    return {n: os.environ[n] for n in names if n in os.environ}


def serve_ray(options: ServeOptions, address: str | None = None) -> None:
    """Connect (RAY_ADDRESS, or start a local cluster on 127.0.0.1), deploy, block."""
    if options.host in ("127.0.0.1", "localhost"):  # keep Ray itself on loopback too;
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read at import
    try:
        import ray
        from ray import serve
    except ImportError as e:
        raise MissingExtraError("the Ray backend needs Ray", "pip install 'conveyor[ray]'") from e
    address = address or os.environ.get("RAY_ADDRESS")
    settings: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if options.host in ("127.0.0.1", "localhost"):
        settings["_node_ip_address"] = "127.0.0.1"
    if address:
        ray.init(address=address, **settings)
    else:
        ray.init(include_dashboard=False, **settings)
    try:
        deploy(options)
    except Exception as e:
        serve.shutdown()  # type: ignore[no-untyped-call]
        if isinstance(e, ServingError):
            raise
        raise ServingError(f"Ray Serve could not start the app ({e})", "see the Ray logs") from e
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM also tears the app down
    try:
        while True:
            time.sleep(1.0)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM (ours or Ray's handler)
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this
        serve.delete(APP_NAME)
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
