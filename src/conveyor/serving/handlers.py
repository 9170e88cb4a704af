"""The request handlers on the hot path: /predict/{name} and /v2/.../infer.

Raw ASGI endpoints, dispatched before FastAPI (see app.py): FastAPI's middleware stack
and per-route dependency solving cost about half a no-op's throughput here. They still
validate every field, and every `ServingError` becomes a JSON 4xx/5xx that names what
to fix. Each request: auth (a dict lookup once a key was verified), read the body under
the size limit, pick the version (canary, stickiness), preprocess, queue, await the
batch under the request timeout, answer, then hand the prediction to the log and the
shadow.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from conveyor.core.errors import (
    AuthError,
    InvalidInputError,
    PayloadTooLargeError,
    ServerBusyError,
    ServingError,
)
from conveyor.serving import payloads, v2
from conveyor.serving.batching import Result, Retired
from conveyor.serving.keys import ApiKey, KeyChecker, token_of
from conveyor.serving.options import ServeOptions
from conveyor.serving.predlog import PredictionLog
from conveyor.serving.router import Deployment, ModelRoute, Router

log = logging.getLogger(__name__)
_JSON = b"application/json"
_SWAP_RETRIES = 3
Headers = dict[bytes, bytes]


class Handlers:
    """The server's shared state and its hot endpoints."""

    def __init__(
        self,
        router: Router,
        options: ServeOptions,
        keys: KeyChecker | None,
        predictions: PredictionLog | None,
    ) -> None:
        self.router = router
        self.options = options
        self.keys = keys
        self.predictions = predictions
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{int(time.time()) & 0xFFFFFF:x}"
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    # -- shared steps -----------------------------------------------------------------------

    async def authorize(self, headers: Headers, scope: str) -> ApiKey | None:
        """The caller's key, checked for `scope` and its rate; None when auth is off."""
        if self.keys is None:
            return None
        token = token_of(_text(headers.get(b"authorization")), _text(headers.get(b"x-api-key")))
        if token is None:
            raise AuthError(
                "this server needs an API key",
                "send it as `Authorization: Bearer <key>` (conveyor keys create)",
            )
        key = self.keys.cached(token)
        if key is None:
            key = await asyncio.to_thread(self.keys.verify, token)
        if not key.allows(scope):
            raise AuthError(
                f"this key has scope '{key.scope}'; '{scope}' is needed",
                "use a key with that scope",
                status=403,
            )
        self.keys.spend(key)
        return key

    async def authorize_request(self, request: Request, scope: str) -> ApiKey | None:
        return await self.authorize(dict(request.scope["headers"]), scope)

    async def body(self, headers: Headers, receive: Receive) -> bytes:
        limit = self.options.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _too_large(int(length), limit)
        message = await receive()
        data: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return data
        chunks = [data]
        size = len(data)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidInputError("the client went away", None, "body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def infer(self, dep: Deployment, x: np.ndarray) -> Result:
        """Queue rows on a version and await them (the batcher enforces the timeout)."""
        return await dep.batcher.submit(x)

    def request_id(self, headers: Headers) -> str:
        given = headers.get(b"x-request-id")
        return given[:128].decode("latin-1") if given else f"{self._id_prefix}-{next(self._ids)}"

    # -- POST /predict/{name} ---------------------------------------------------------------

    async def predict(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        start = time.perf_counter()
        at = time.time()
        headers: Headers = dict(scope["headers"])
        rid = self.request_id(headers)
        dep: Deployment | None = None
        role = "primary"
        try:
            if self.keys is not None:
                await self.authorize(headers, "predict")
            route = self.router.route(name)
            images: list[bytes] | None = None
            if headers.get(b"content-type", _JSON) == _JSON:  # the common case, inline
                rows: list[Any] | None = _json_rows(await self.body(headers, receive))
            else:
                rows, images = await self._predict_payload(scope, receive, headers)
            sticky = _sticky(headers, route) if route.sticky_header else None
            for _ in range(_SWAP_RETRIES):
                dep, role = route.pick(sticky)
                x = self._predict_input(dep, rows, images)
                try:
                    pending = dep.batcher.submit(x)  # a swap raises Retired here, not later
                    break
                except Retired:
                    continue
            else:
                raise ServerBusyError("the model is being swapped", "retry", retry_after=1.0)
            tensors = images is None and dep.model.preprocessing.kind == "none"
            raw = None if tensors else (rows if rows is not None else images)
            shadow = route.shadow
            if shadow is None and raw is None:
                # parsed JSON left alive while the request waits is traversed by every
                # garbage collection meanwhile (a 32-row request: 33 lists); x holds it now
                rows = None
            out, preds, batch_rows = await pending
            if b"scores=all" in scope.get("query_string", b""):
                preds = dep.answerer.predictions(out, all_scores=True)
            body = orjson.dumps(
                {
                    "model": dep.model.name,
                    "version": dep.model.version,
                    "request_id": rid,
                    "predictions": preds,
                }
            )
            seconds = time.perf_counter() - start
            dep.metrics.answered(200, len(out), seconds)
            await respond(send, 200, body, rid)
            plog = self.predictions
            if plog is not None and plog.wants():
                model = dep.model
                plog.record(
                    at, rid, model.name, model.version, role, seconds, raw, x, preds, batch_rows
                )
            if shadow is not None and shadow is not dep:
                self._start_shadow(shadow, dep, rid, at, raw, x, rows, images)
        except ServingError as e:
            await self._error(send, e, dep, rid, start, at=at, role=role)

    async def _predict_payload(
        self, scope: Scope, receive: Receive, headers: Headers
    ) -> tuple[list[Any] | None, list[bytes] | None]:
        ctype = headers.get(b"content-type", _JSON).split(b";")[0].strip().lower()
        if ctype == b"multipart/form-data":
            return None, await self._uploads(scope, receive, headers)
        data = await self.body(headers, receive)
        if ctype.startswith(b"image/") or ctype == b"application/octet-stream":
            if not data:
                raise InvalidInputError("the image body is empty", "send the file", "body")
            return None, [data]
        return _json_rows(data), None

    async def _uploads(self, scope: Scope, receive: Receive, headers: Headers) -> list[bytes]:
        length = headers.get(b"content-length")
        limit = self.options.max_body_bytes
        if length is None or not length.isdigit():
            raise PayloadTooLargeError("an upload needs a Content-Length", "send one")
        if int(length) > limit:
            raise _too_large(int(length), limit)
        try:
            form = await Request(scope, receive).form(max_part_size=limit)
        except Exception as e:  # noqa: BLE001 - python-multipart's errors are untyped
            raise InvalidInputError(
                f"the multipart body does not parse ({e})", None, "body"
            ) from None
        images = []
        for _, value in form.multi_items():
            if not isinstance(value, str):
                images.append(await value.read())
        await form.close()
        if not images:
            raise InvalidInputError(
                "the upload holds no file", "attach the image as a file", "image"
            )
        return images

    @staticmethod
    def _predict_input(
        dep: Deployment, rows: list[Any] | None, images: list[bytes] | None
    ) -> np.ndarray:
        if images is not None:
            where = ["image"] if len(images) == 1 else [f"image[{i}]" for i in range(len(images))]
            return payloads.images_input(dep.model, images, where)
        assert rows is not None
        return payloads.model_input(dep.model, rows, booleans=isinstance(rows, _Flagged))

    # -- POST /v2/models/{name}[/versions/{v}]/infer ----------------------------------------

    async def v2_infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        start = time.perf_counter()
        at = time.time()
        headers: Headers = dict(scope["headers"])
        rid = self.request_id(headers)
        dep: Deployment | None = None
        role = "primary"
        try:
            await self.authorize(headers, "predict")
            route = self.router.route(name)
            doc = payloads.parse_json(await self.body(headers, receive))
            for _ in range(_SWAP_RETRIES):
                if version is not None:
                    dep, role = route.version(_version(version)), "pinned"
                else:
                    dep, role = route.pick(_sticky(headers, route))
                x, given_id, raw = v2.infer_input(dep.model, doc)
                try:
                    out, preds, batch_rows = await self.infer(dep, x)
                    break
                except Retired:
                    continue
            else:
                raise ServerBusyError("the model is being swapped", "retry", retry_after=1.0)
            rid = given_id or rid
            body = orjson.dumps(v2.infer_response(dep.model, out, given_id))
            seconds = time.perf_counter() - start
            dep.metrics.answered(200, len(out), seconds)
            await respond(send, 200, body, rid)
            plog = self.predictions
            if plog is not None and plog.wants():
                model = dep.model
                plog.record(
                    at, rid, model.name, model.version, role, seconds, raw or None, x, preds,
                    batch_rows,
                )  # fmt: skip
        except ServingError as e:
            await self._error(send, e, dep, rid, start, v2_style=True, at=at, role=role)

    # -- after the answer -------------------------------------------------------------------

    def _start_shadow(
        self,
        shadow: Deployment,
        dep: Deployment,
        rid: str,
        at: float,
        raw: list[Any] | None,
        x: np.ndarray,
        rows: list[Any] | None,
        images: list[bytes] | None,
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._shadow(shadow, rid, at, raw, x, dep, rows, images)
        )
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self,
        shadow: Deployment,
        rid: str,
        at: float,
        raw: list[Any] | None,
        x: np.ndarray,
        primary: Deployment,
        rows: list[Any] | None,
        images: list[bytes] | None,
    ) -> None:
        """Run the same request on the shadow version; log its answer, return nothing."""
        start = time.perf_counter()
        try:
            same_prep = shadow.model.preprocessing == primary.model.preprocessing
            sx = x if same_prep else self._predict_input(shadow, rows, images)
            out, preds, batch_rows = await self.infer(shadow, sx)
            seconds = time.perf_counter() - start
            shadow.metrics.answered(200, len(out), seconds)
            if self.predictions is not None:
                model = shadow.model
                self.predictions.record(
                    at, rid, model.name, model.version, "shadow", seconds, raw, sx, preds,
                    batch_rows,
                )  # fmt: skip
        except (ServingError, Retired) as e:
            shadow.metrics.failed(type(e).__name__)
        except Exception:
            log.exception("shadow %s failed on request %s", shadow.model.ref, rid)

    async def _error(
        self,
        send: Send,
        e: ServingError,
        dep: Deployment | None,
        rid: str,
        start: float,
        v2_style: bool = False,
        at: float = 0.0,
        role: str = "primary",
    ) -> None:
        status = 400 if v2_style and e.status == 422 else e.status  # v2 says 400
        body: dict[str, Any] = {"error": str(e)}
        if not v2_style:
            body["request_id"] = rid
            field = getattr(e, "field", None)
            if field:
                body["field"] = field
        if dep is not None:
            seconds = time.perf_counter() - start
            dep.metrics.answered(status, 0, seconds)
            dep.metrics.failed(type(e).__name__)
            plog = self.predictions
            if plog is not None and plog.wants():  # a version's error rate, per window
                model = dep.model
                plog.failed(
                    at, rid, model.name, model.version, role, seconds, status, type(e).__name__
                )
        retry = e.retry_after if isinstance(e, ServerBusyError) else None
        await respond(send, status, orjson.dumps(body), rid, retry)


WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process answered (x-served-by)
_SERVED_BY = (b"x-served-by", WORKER.encode())
_CONTENT_TYPE = (b"content-type", _JSON)


async def respond(
    send: Send, status: int, body: bytes, rid: str, retry_after: float | None = None
) -> None:
    headers = [
        _CONTENT_TYPE,
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", rid.encode("latin-1", "replace")),
        _SERVED_BY,
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_rows(data: bytes) -> list[Any]:
    """The rows of a JSON body, flagged to be checked value by value when it holds true
    or false (numbers only are the common case)."""
    rows = payloads.rows_of(payloads.parse_json(data))
    # one byte search first: both words hold an "e", rows of plain decimals none
    if b"e" in data and (b"true" in data or b"false" in data):
        return _Flagged(rows)
    return rows


class _Flagged(list[Any]):
    """Rows whose JSON holds `true` or `false`: checked value by value."""


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _sticky(headers: Headers, route: ModelRoute) -> str | None:
    header = route.sticky_header
    if not header:
        return None
    value = headers.get(header.encode())
    return None if value is None else value.decode("latin-1")


def _version(text: str) -> int:
    try:
        return int(text.lstrip("v"))
    except ValueError:
        raise InvalidInputError(f"'{text}' is not a version number", "e.g. 3", "version") from None


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the body is {size} bytes, over this server's limit of {limit}",
        "send fewer rows per request (or raise --max-body-bytes)",
    )
