"""POST /predict: the inline path for `Content-Type: application/json` (exactly) answers
every body, good or bad, as the general path does (any other JSON content type, e.g.
with a charset), driven in process through the ASGI app."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pytest

from conveyor.serving.app import create_app
from conveyor.serving.options import ServeOptions
from conveyor.serving.source import StaticSource, parse_ref

from .test_serving_runtime import served

FAST = b"application/json"
GENERAL = b"application/json; charset=utf-8"

BODIES: list[Any] = [
    {"rows": [[0.5, 1.0, -2.0, 3.0]]},  # one row
    {"rows": [[0.5, 1.0, -2.0, 3.0], [1, 2, 3, 4], [0, 0, 0, 0]]},  # ints too
    [[0.1, 0.2, 0.3, 0.4]],  # a bare list
    {"instances": [[0.1, 0.2, 0.3, 0.4]]},
    {"rows": [[1e30, -1e30, 0.0, 1.0]]},
    {"rows": [[1.0, 2.0, 3.0]]},  # wrong row length
    {"rows": [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]},  # ragged
    {"rows": [[1.0, "two", 3.0, 4.0]]},  # a string
    {"rows": [[1.0, "2.0", 3.0, 4.0]]},  # a numeric string is still a string
    {"rows": [[1.0, None, 3.0, 4.0]]},  # null
    {"rows": [[1.0, True, 3.0, 4.0]]},  # a boolean
    {"rows": [[True, False, True, False]]},
    {"rows": [[[1.0, 2.0], [3.0, 4.0]]]},  # nested lists
    {"rows": [1.0, 2.0, 3.0, 4.0]},  # numbers, not rows
    {"rows": [[]]},  # an empty row
    {"rows": []},  # no rows
    {"rows": [{"a": 1}]},  # an object
    {"rows": "nope"},
    {"data": [[1.0, 2.0, 3.0, 4.0]]},  # no "rows"
]
RAW = [b"", b"{not json", b"NaN", b'{"rows": [[NaN, 1, 2, 3]]}', b'{"rows": [[1e999, 1, 2, 3]]}']


async def _post(app: Any, body: bytes, ctype: bytes) -> tuple[int, dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict/m",
        "query_string": b"",
        "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    answer = orjson.loads(sent[1]["body"])
    answer.pop("request_id", None)
    return status, answer


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def test_the_inline_json_path_answers_as_the_general_path() -> None:
    async def main() -> list[tuple[bytes, tuple[int, Any], tuple[int, Any]]]:
        app = create_app(ServeOptions(models=["m@v1"], auth="off"), StaticSource([served()]))
        await app.handlers.router.start([parse_ref("m@v1")])
        try:
            out = []
            for body in [orjson.dumps(b) for b in BODIES] + RAW:
                out.append((body, await _post(app, body, FAST), await _post(app, body, GENERAL)))
            return out
        finally:
            await app.handlers.router.stop()

    results = asyncio.run(main())
    statuses = set()
    for body, fast, general in results:
        assert fast[0] == general[0], body
        assert fast[1].keys() == general[1].keys(), body
        assert fast[0] < 500, (body, fast)
        if fast[0] == 200:
            for p, q in zip(fast[1]["predictions"], general[1]["predictions"], strict=True):
                assert p["label"] == q["label"] and _same(p["score"], q["score"]), body
        else:
            assert fast[1] == general[1], body
            assert fast[1]["field"], body  # every 4xx names what to fix
        statuses.add(fast[0])
    assert 200 in statuses and (422 in statuses or 400 in statuses)


@pytest.mark.parametrize("body", [orjson.dumps(b) for b in BODIES[5:]])
def test_bad_rows_are_refused_on_the_inline_path(body: bytes) -> None:
    async def main() -> tuple[int, dict[str, Any]]:
        app = create_app(ServeOptions(models=["m@v1"], auth="off"), StaticSource([served()]))
        await app.handlers.router.start([parse_ref("m@v1")])
        try:
            return await _post(app, body, FAST)
        finally:
            await app.handlers.router.stop()

    status, answer = asyncio.run(main())
    assert 400 <= status < 500, answer
    assert answer["error"] and answer["field"]
