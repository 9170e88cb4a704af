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
    settings: dict[str, Any] = {
        "name": APP_NAME,
        # room for whole batches: Ray's default of 5 in flight would cap every batch at 5
        "max_ongoing_requests": max(2 * options.max_batch_size, options.target_queue * 2, 64),
        "ray_actor_options": {"num_cpus": float(os.environ.get("CONVEYOR_RAY_CPUS", "0.5"))},
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
    builder = _Builder(options.model_dump_json())
    deployment = serve.deployment(**settings)(serve.ingress(builder)())
    return serve.run(deployment.bind(), name=APP_NAME, route_prefix="/")


class _Builder:
    """A picklable builder (Ray ships it to the replicas)."""

    def __init__(self, options_json: str) -> None:
        self.options_json = options_json

    def __call__(self) -> Any:
        return build_replica_app(self.options_json)


def serve_ray(options: ServeOptions, address: str | None = None) -> None:
    """Connect (RAY_ADDRESS, or start a local cluster on 127.0.0.1), deploy, block."""
    try:
        import ray
        from ray import serve
    except ImportError as e:
        raise MissingExtraError("the Ray backend needs Ray", "pip install 'conveyor[ray]'") from e
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
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
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
