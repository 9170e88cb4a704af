"""The no-op ceiling of Conveyor's own HTTP stack: uvicorn (uvloop, httptools) and the
serving app's ASGI front, with an endpoint that reads the body, parses the JSON and
answers a small JSON object, the way /predict does, without any model.

    python conveyor_noop.py MODEL PORT
"""

from __future__ import annotations

import sys

import orjson
import uvicorn

from conveyor.serving.handlers import Handlers, respond
from conveyor.serving.metrics import ServerMetrics
from conveyor.serving.options import ServeOptions
from conveyor.serving.router import Router
from conveyor.serving.source import StaticSource

name, port = sys.argv[1], int(sys.argv[2])
options = ServeOptions(models=[f"{name}@v1"])
handlers = Handlers(
    Router(StaticSource(), ServerMetrics(), options.batch_policy()), options, None, None
)


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    doc = orjson.loads(await handlers.body(headers, receive))
    rows = doc["rows"] if isinstance(doc, dict) else doc.get("inputs", [])
    body = orjson.dumps({"model": name, "predictions": [{"label": "0", "score": 1.0}] * len(rows)})
    await respond(send, 200, body, handlers.request_id(headers))


uvicorn.run(
    app,
    host="127.0.0.1",
    port=port,
    loop="uvloop",
    http="httptools",
    log_level="warning",
    access_log=False,
    proxy_headers=False,
    lifespan="off",
)
