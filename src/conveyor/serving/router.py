"""Which version answers a request: followed aliases, swaps, canaries, shadows, stickiness.

Each served model name has a `ModelRoute`: a primary version, optionally a canary that
takes a share of the traffic and a shadow that sees a copy of it (answers logged, not
returned). A route that follows an alias (`digits:production`) polls the source; when
the alias moves, the new version is loaded and warmed up beside the old one, then the
route points at it, and the old version answers everything it already queued before it
stops. A request that raced the swap (`Retired`) is sent again to the new version with
that version's preprocessing, so no request is dropped or answered half-and-half.
"""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from dataclasses import dataclass, field

import numpy as np

from conveyor.core.errors import ModelNotServedError, ServingError
from conveyor.serving.answers import Answerer
from conveyor.serving.batching import Batcher, BatchPolicy
from conveyor.serving.metrics import ServerMetrics, VersionMetrics
from conveyor.serving.runtime import RuntimeName, load_runtime
from conveyor.serving.source import ModelRef, ModelSource, ServedModel

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Deployment:
    """One model version loaded and running: its runtime behind a batcher."""

    model: ServedModel
    batcher: Batcher
    answerer: Answerer
    metrics: VersionMetrics
    runtime: str

    @property
    def version(self) -> int:
        return self.model.version


@dataclass
class ModelRoute:
    """The versions requests for one model name go to."""

    ref: ModelRef
    primary: Deployment
    canary: Deployment | None = None
    canary_weight: float = 0.0
    shadow: Deployment | None = None
    sticky_header: str | None = None
    retired: list[Deployment] = field(default_factory=list)

    def pick(self, sticky: str | None = None) -> tuple[Deployment, str]:
        """The deployment for one request and its role ("primary" or "canary").

        With a sticky value (the header named by `sticky_header`), the same value always
        lands on the same side of the split: a stable hash, not a random draw.
        """
        canary = self.canary
        if canary is None or self.canary_weight <= 0.0:
            return self.primary, "primary"
        if sticky is not None:
            draw = (zlib.crc32(sticky.encode()) % 10_000) / 10_000
        else:
            draw = random.random()
        return (canary, "canary") if draw < self.canary_weight else (self.primary, "primary")

    def version(self, number: int) -> Deployment:
        for dep in (self.primary, self.canary, self.shadow):
            if dep is not None and dep.version == number:
                return dep
        raise ModelNotServedError(
            f"{self.ref.name}@v{number} is not served here",
            f"served versions: {', '.join(str(v) for v in self.versions())}",
        )

    def versions(self) -> list[int]:
        return sorted({d.version for d in (self.primary, self.canary, self.shadow) if d})


class Router:
    """Loads versions from the source, keeps the routes, follows aliases."""

    def __init__(
        self,
        source: ModelSource,
        metrics: ServerMetrics,
        policy: BatchPolicy,
        runtimes: dict[str, RuntimeName] | None = None,
        threads: int = 1,
        poll_s: float = 2.0,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.policy = policy
        self.runtimes = runtimes or {}
        self.threads = threads
        self.poll_s = poll_s
        self.routes: dict[str, ModelRoute] = {}
        self._follower: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.swaps = 0

    def route(self, name: str) -> ModelRoute:
        route = self.routes.get(name)
        if route is None:
            raise ModelNotServedError(
                f"model '{name}' is not served here",
                f"served models: {', '.join(sorted(self.routes)) or 'none'}",
            )
        return route

    # -- loading ----------------------------------------------------------------------------

    def build(self, name: str, version: int) -> Deployment:
        """Load, verify and warm up one version (blocking: call it in a thread)."""
        model = self.source.load(name, version)
        runtime_name = self.runtimes.get(name, "onnx")
        runtime = load_runtime(model, runtime_name, threads=self.threads)
        _warm_up(model, runtime.run)
        metrics = self.metrics.for_version(name, version)
        answerer = Answerer(model)
        batcher = Batcher(runtime, self.policy, metrics.batch, answerer.predictions)
        return Deployment(model, batcher, answerer, metrics, runtime_name)

    async def start(self, refs: list[ModelRef]) -> None:
        for ref in refs:
            if ref.name in self.routes:
                raise ServingError(f"model '{ref.name}' is listed twice", "serve each name once")
            version = await asyncio.to_thread(self.source.resolve, ref.name, ref.selector)
            dep = await asyncio.to_thread(self.build, ref.name, version)
            dep.batcher.start()
            self.routes[ref.name] = ModelRoute(ref, dep)
            log.info("serving %s (%s) with %s", dep.model.ref, ref, dep.runtime)
        if any(route.ref.pinned is None for route in self.routes.values()):
            self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
        for route in self.routes.values():
            for dep in {
                id(d): d for d in (route.primary, route.canary, route.shadow) if d
            }.values():
                await dep.batcher.stop()

    # -- rollouts ---------------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            for route in list(self.routes.values()):
                if route.ref.pinned is not None:
                    continue
                try:
                    now = await asyncio.to_thread(
                        self.source.resolve, route.ref.name, route.ref.selector
                    )
                    if now != route.primary.version:
                        await self.swap(route.ref.name, now)
                except Exception:
                    log.exception(
                        "following %s failed; still serving v%s", route.ref, route.primary.version
                    )

    async def swap(self, name: str, version: int) -> Deployment:
        """Point `name` at `version`: load it beside the old one, switch, drain the old."""
        async with self._lock:
            route = self.route(name)
            old = route.primary
            if old.version == version:
                return old
            new = await self._obtain(route, version)
            route.primary = new
            self.swaps += 1
            log.info("%s now serves v%s (was v%s)", name, version, old.version)
            if old is not route.canary and old is not route.shadow:
                await old.batcher.stop()
            return new

    async def set_canary(self, name: str, version: int | None, weight: float = 0.0) -> None:
        async with self._lock:
            route = self.route(name)
            old = route.canary
            route.canary = None if version is None else await self._obtain(route, version)
            route.canary_weight = weight if version is not None else 0.0
            await self._retire(route, old)

    async def set_shadow(self, name: str, version: int | None) -> None:
        async with self._lock:
            route = self.route(name)
            old = route.shadow
            route.shadow = None if version is None else await self._obtain(route, version)
            await self._retire(route, old)

    async def _obtain(self, route: ModelRoute, version: int) -> Deployment:
        for dep in (route.primary, route.canary, route.shadow):
            if dep is not None and dep.version == version:
                return dep
        dep = await asyncio.to_thread(self.build, route.ref.name, version)
        dep.batcher.start()
        return dep

    async def _retire(self, route: ModelRoute, dep: Deployment | None) -> None:
        if dep is None or dep in (route.primary, route.canary, route.shadow):
            return
        await dep.batcher.stop()


def _warm_up(model: ServedModel, run: object) -> None:
    """One row through the model, so the first request does not pay for lazy set-up."""
    spec = model.signature.input
    if any(size is None for size in spec.shape[1:]) or spec.dtype == "string":
        return
    from conveyor.serving.payloads import NUMPY_DTYPES

    shape = [1, *[int(s) for s in spec.shape[1:] if s is not None]]
    x: np.ndarray = np.zeros(shape, dtype=NUMPY_DTYPES.get(spec.dtype, np.float32))
    try:
        run(x)  # type: ignore[operator]
    except Exception as e:
        raise ServingError(
            f"{model.ref} fails on a row of zeros shaped like its signature ({e})",
            "check that the signature matches the exported model",
        ) from e
