"""The ASGI app: Open Inference Protocol v2, /predict, /metrics, admin routes, /docs.

`create_app(options, source, meta, objects)` builds it; the lifespan loads and verifies
every model before the server takes a request, and on shutdown drains the queues and
flushes the prediction log. Public without a key: health, server metadata, /metrics and
the docs. `predict` keys: /predict and v2 model routes. `feedback` keys: /feedback (labels
sent back, FEEDBACK.md). `admin` keys: /admin/* and everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from conveyor import __version__
from conveyor.core.errors import ConveyorError, ServerBusyError, ServingError
from conveyor.serving import v2
from conveyor.serving.feedback import (
    MAX_LABELS,
    OPENAPI_BODY,
    Feedback,
    FeedbackAnswer,
    parse_labels,
)
from conveyor.serving.handlers import Handlers
from conveyor.serving.keys import KeyChecker, Keys
from conveyor.serving.metrics import ServerMetrics
from conveyor.serving.openapi import HOT_PATHS
from conveyor.serving.options import ServeOptions
from conveyor.serving.predlog import PredictionLog
from conveyor.serving.router import Router
from conveyor.serving.source import ModelSource, parse_ref, parse_weighted
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore

log = logging.getLogger(__name__)
_KEY_REFRESH_S = 2.0


class CanaryBody(BaseModel):
    version: int = Field(ge=1)
    weight: float = Field(ge=0.0, le=1.0, description="share of traffic, 0..1")


class VersionBody(BaseModel):
    version: int = Field(ge=1)


class ServingApp:
    """The ASGI app: the two hot POST routes go straight to their handlers, the rest
    (health, metadata, admin, /metrics, /docs, the lifespan) to FastAPI."""

    def __init__(self, api: FastAPI, handlers: Handlers) -> None:
        self.api = api
        self.handlers = handlers

    @property
    def state(self) -> Any:
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/predict/"):
                name = path[9:]
                if name and "/" not in name:
                    await self.handlers.predict(scope, receive, send, name)
                    return
            elif path.startswith("/v2/models/") and path.endswith("/infer"):
                parts = path[11:-6].split("/")
                if len(parts) == 1 and parts[0]:
                    await self.handlers.v2_infer(scope, receive, send, parts[0], None)
                    return
                if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
                    await self.handlers.v2_infer(scope, receive, send, parts[0], parts[2])
                    return
        await self.api(scope, receive, send)


def create_app(
    options: ServeOptions,
    source: ModelSource,
    meta: MetadataStore | None = None,
    objects: ObjectStore | None = None,
) -> ServingApp:
    """The app for `options`; keys and the prediction log need the workspace's stores."""
    refs = [parse_ref(text) for text in options.models]
    if not refs:
        raise ServingError("no model to serve", "name one, e.g. conveyor serve digits:production")
    metrics = ServerMetrics()
    router = Router(
        source,
        metrics,
        options.batch_policy(),
        dict(options.runtime),
        options.threads,
        options.poll_s,
    )
    checker = _key_checker(options, meta)
    plog = None
    if meta is not None and objects is not None and options.log_sample > 0:
        plog = PredictionLog(meta, objects, options.log_policy())
    handlers = Handlers(router, options, checker, plog)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await router.start(refs)
        await _apply_rollouts(router, options)
        background = [asyncio.get_running_loop().create_task(_dump_metrics(metrics))]
        if checker is not None:
            background.append(asyncio.get_running_loop().create_task(_refresh_keys(checker)))
        gc.collect()
        gc.freeze()  # what start-up made lives for good: later collections skip it
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            for task in background:
                task.cancel()
            await router.stop()
            if plog is not None:
                await asyncio.to_thread(plog.close)

    app = FastAPI(
        title="Conveyor serving",
        version=__version__,
        description="Open Inference Protocol v2 and /predict for Conveyor models.",
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.handlers = handlers
    app.state.router = router
    app.state.predictions = plog
    feedback = None if meta is None else Feedback(meta, objects, plog)
    _add_public_routes(app, router, metrics)
    _add_model_routes(app, handlers)
    _add_feedback_route(app, handlers, feedback)
    _add_admin_routes(app, handlers)
    _document_hot_paths(app)
    return ServingApp(app, handlers)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def error_response(e: ServingError) -> Response:
    headers = {}
    if isinstance(e, ServerBusyError):
        headers["retry-after"] = str(max(1, round(e.retry_after)))
    body = {"error": str(e)}
    field = getattr(e, "field", None)
    if field:
        body["field"] = field
    return Response(orjson.dumps(body), e.status, headers, "application/json")


def guarded(handler: Any) -> Any:
    """Turn ServingErrors from a small endpoint into their JSON answer."""

    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await handler(request)
        except ServingError as e:
            return error_response(e)
        return response

    return endpoint


def _key_checker(options: ServeOptions, meta: MetadataStore | None) -> KeyChecker | None:
    if options.auth == "off":
        return None
    if meta is None:
        if options.auth == "on":
            raise ServingError("API keys need a workspace", "serve from a workspace, or --auth off")
        return None
    keys = Keys(meta)
    if options.auth == "auto" and not keys.any_active():
        return None
    return KeyChecker(keys)


async def _dump_metrics(metrics: ServerMetrics) -> None:
    if metrics.folder is None:
        return
    while True:
        metrics.dump()
        await asyncio.sleep(1.0)


async def _refresh_keys(checker: KeyChecker) -> None:
    while True:
        await asyncio.sleep(_KEY_REFRESH_S)
        try:
            await asyncio.to_thread(checker.refresh)
        except Exception:  # noqa: BLE001 - keep the last rows; the database may come back
            log.warning("could not reload API keys; using the ones loaded before")


async def _apply_rollouts(router: Router, options: ServeOptions) -> None:
    for text in options.canary:
        canary = parse_weighted(text, default_weight=0.1)
        await router.set_canary(canary.name, canary.version, canary.weight)
    for text in options.shadow:
        shadow = parse_weighted(text)
        await router.set_shadow(shadow.name, shadow.version)
    if options.sticky_header:
        for route in router.routes.values():
            route.sticky_header = options.sticky_header.lower()


def _add_public_routes(app: FastAPI, router: Router, metrics: ServerMetrics) -> None:
    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready", tags=["health"])
    async def ready(request: Request) -> Response:
        ok = bool(request.app.state.ready)
        return json_response({"ready": ok}, 200 if ok else 503)

    @app.get("/v2", tags=["v2"])
    async def server_metadata() -> Response:
        return json_response({"name": "conveyor", "version": __version__, "extensions": []})

    @app.get("/metrics", tags=["metrics"], response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return json_response(
            {"models": sorted(router.routes), "docs": "/docs", "metrics": "/metrics"}
        )


def _add_model_routes(app: FastAPI, handlers: Handlers) -> None:
    router = handlers.router

    async def metadata(request: Request) -> Response:
        await handlers.authorize_request(request, "predict")
        route = router.route(request.path_params["name"])
        version = request.path_params.get("version")
        dep = route.primary if version is None else route.version(int(version.lstrip("v")))
        return json_response(v2.model_metadata(dep.model, route.versions(), dep.runtime))

    async def model_ready(request: Request) -> Response:
        await handlers.authorize_request(request, "predict")
        route = router.route(request.path_params["name"])
        version = request.path_params.get("version")
        if version is not None:
            route.version(int(version.lstrip("v")))
        return json_response({"name": route.ref.name, "ready": True})

    for path, endpoint in [
        ("/v2/models/{name}", metadata),
        ("/v2/models/{name}/versions/{version}", metadata),
        ("/v2/models/{name}/ready", model_ready),
        ("/v2/models/{name}/versions/{version}/ready", model_ready),
    ]:
        app.add_api_route(path, guarded(endpoint), methods=["GET"], tags=["v2"])


def _add_feedback_route(app: FastAPI, handlers: Handlers, feedback: Feedback | None) -> None:
    @app.post(
        "/feedback/{name}",
        tags=["feedback"],
        summary="Send true labels back for predictions already answered",
        response_model=FeedbackAnswer,
        responses={
            404: {"description": "The model is not served here"},
            413: {"description": f"Over --max-body-bytes or over {MAX_LABELS} labels"},
            422: {"description": "A malformed label; `field` names it; nothing is stored"},
        },
        openapi_extra={"requestBody": OPENAPI_BODY},
    )
    async def send_feedback(name: str, request: Request) -> Response:
        """Labels keyed by request id and row (FEEDBACK.md); the latest label of a row wins."""
        try:
            key = await handlers.authorize_request(request, "feedback")
            handlers.router.route(name)
            if feedback is None:
                raise ServingError(
                    "this server keeps no labels: it was started without a workspace",
                    "serve from a workspace (conveyor --workspace PATH serve ...)",
                )
            body = await handlers.body(dict(request.scope["headers"]), request.receive)
            labels = parse_labels(body)
            key_id = None if key is None else key.id
            try:
                answer = await asyncio.to_thread(feedback.accept, name, labels, key_id)
            except ServingError:
                raise
            except ConveyorError as e:  # the metadata store or object store is away
                raise ServerBusyError(
                    f"the labels could not be stored ({e})",
                    "nothing was stored; retry",
                    retry_after=5.0,
                ) from None
        except ServingError as e:
            return error_response(e)
        return json_response(answer)


def _add_admin_routes(app: FastAPI, handlers: Handlers) -> None:
    router = handlers.router

    async def admin(request: Request) -> None:
        await handlers.authorize_request(request, "admin")

    @app.get("/admin/models", tags=["admin"])
    async def rollouts(request: Request) -> Response:
        try:
            await admin(request)
        except ServingError as e:
            return error_response(e)
        return json_response({name: _describe(route) for name, route in router.routes.items()})

    @app.put("/admin/models/{name}/canary", tags=["admin"])
    async def set_canary(name: str, body: CanaryBody, request: Request) -> Response:
        return await _admin_call(admin, request, router.set_canary(name, body.version, body.weight))

    @app.delete("/admin/models/{name}/canary", tags=["admin"])
    async def end_canary(name: str, request: Request) -> Response:
        return await _admin_call(admin, request, router.set_canary(name, None))

    @app.put("/admin/models/{name}/shadow", tags=["admin"])
    async def set_shadow(name: str, body: VersionBody, request: Request) -> Response:
        return await _admin_call(admin, request, router.set_shadow(name, body.version))

    @app.delete("/admin/models/{name}/shadow", tags=["admin"])
    async def end_shadow(name: str, request: Request) -> Response:
        return await _admin_call(admin, request, router.set_shadow(name, None))

    @app.put("/admin/models/{name}/version", tags=["admin"])
    async def swap(name: str, body: VersionBody, request: Request) -> Response:
        """Serve another version now (until the followed alias moves again)."""
        return await _admin_call(admin, request, router.swap(name, body.version))

    async def _admin_call(check: Any, request: Request, action: Any) -> Response:
        try:
            await check(request)
            await action
        except ServingError as e:
            action.close()
            return error_response(e)
        name = request.path_params["name"]
        return json_response(_describe(router.route(name)))


def _describe(route: Any) -> dict[str, Any]:
    return {
        "follows": str(route.ref),
        "version": route.primary.version,
        "runtime": route.primary.runtime,
        "canary": None
        if route.canary is None
        else {"version": route.canary.version, "weight": route.canary_weight},
        "shadow": None if route.shadow is None else {"version": route.shadow.version},
        "sticky_header": route.sticky_header,
    }


def _document_hot_paths(app: FastAPI) -> None:
    """Add the plain Starlette routes to the OpenAPI schema FastAPI serves at /docs."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema["paths"].update(HOT_PATHS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
