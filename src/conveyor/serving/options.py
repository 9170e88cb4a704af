"""Everything a server is started with, in one JSON-able object.

The CLI builds it from flags; N worker processes (and Ray replicas) each receive it as
JSON and build the same app from it, so every worker serves the same thing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from conveyor.serving.batching import BatchPolicy
from conveyor.serving.predlog import LogPolicy

AuthMode = Literal["auto", "on", "off"]


class ServeOptions(BaseModel):
    """What to serve and how. `source` ("module:function") replaces the registry with
    any `ModelSource` the function returns; `workspace` is where keys, the registry and
    the prediction log live."""

    model_config = ConfigDict(extra="forbid")

    models: list[str]
    workspace: str | None = None
    source: str | None = None
    canary: list[str] = Field(default_factory=list)  # "digits@v4:10%"
    shadow: list[str] = Field(default_factory=list)  # "digits@v4"
    sticky_header: str | None = None
    runtime: dict[str, Literal["onnx", "torch"]] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 65_536
    max_queue_ms: float | None = 1000.0
    latency_target_ms: float | None = None
    inline_below_ms: float = 1.0
    timeout_s: float = 30.0
    max_body_bytes: int = 16 * 1024 * 1024
    auth: AuthMode = "auto"
    log_sample: float = 1.0
    log_flush_s: float = 5.0
    poll_s: float = 2.0
    threads: int = 1  # intra-op threads per model version
    backend: Literal["local", "ray"] = "local"
    replicas: int = 1
    max_replicas: int | None = None  # Ray: autoscale between replicas and this
    target_queue: int = Field(32, ge=1)  # Ray: requests in flight per replica to aim at

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            max_queue=self.max_queue,
            max_queue_ms=self.max_queue_ms,
            latency_target_ms=self.latency_target_ms,
            inline_below_ms=self.inline_below_ms,
            timeout_s=self.timeout_s,
        )

    def log_policy(self) -> LogPolicy:
        return LogPolicy(sample=self.log_sample, flush_s=self.log_flush_s)
