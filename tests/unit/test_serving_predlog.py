"""The prediction log, as monitoring reads it back: one row per predicted row, with the
columns PREDICTIONS.md lists, for tensor rows, table rows, v2 requests and failures."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.signature import Signature, TensorSpec
from conveyor.serving.app import create_app
from conveyor.serving.options import ServeOptions
from conveyor.serving.predictions import read_predictions
from conveyor.serving.source import StaticSource, parse_ref
from conveyor.workspace import Workspace

from .test_serving_runtime import served

COLUMNS = ["a", "b", "c", "d"]


async def _post(
    app: Any, path: str, doc: Any, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[int, dict[str, Any]]:
    body = orjson.dumps(doc)
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_the_log_holds_each_answered_row_as_answered(tmp_path: Path) -> None:
    tensor = served()
    table_model = dataclasses.replace(
        tensor, name="t", preprocessing=Preprocessing.tabular(COLUMNS, [0.0] * 4, [1.0] * 4)
    )
    regression = dataclasses.replace(  # the same net, read as three values a row
        tensor,
        name="r",
        signature=Signature(
            [TensorSpec("x", "float32", [None, 4])], [TensorSpec("y", "float32", [None])]
        ),
    )
    ws = Workspace.init(tmp_path / "ws")
    options = ServeOptions(models=["m@v1", "t@v1", "r@v1"], auth="off")
    source = StaticSource([tensor, table_model, regression])
    app = create_app(options, source, ws.meta, ws.objects)
    rows = np.random.default_rng(0).normal(size=(4, 4)).round(3).tolist()
    sent: list[tuple[str, list[Any], list[Any]]] = []  # request id, inputs, answers
    refused: list[str] = []

    async def main() -> None:
        await app.handlers.router.start([parse_ref(m) for m in options.models])
        try:
            status, one = await _post(
                app, "/predict/m", {"rows": rows[:1]}, ((b"x-request-id", b"r-1"),)
            )
            assert status == 200
            sent.append(("r-1", rows[:1], one["predictions"]))
            status, three = await _post(app, "/predict/m", rows[1:])
            sent.append((three["request_id"], rows[1:], three["predictions"]))
            named = [dict(zip(COLUMNS, r, strict=True)) for r in rows[:2]]
            status, table = await _post(app, "/predict/t", {"rows": named})
            assert status == 200
            sent.append((table["request_id"], named, table["predictions"]))
            status, values = await _post(app, "/predict/r", {"rows": rows[2:]})
            assert status == 200
            sent.append((values["request_id"], rows[2:], values["predictions"]))
            status, bad = await _post(app, "/predict/m", {"rows": [[1.0, "x", 2.0, 3.0]]})
            assert status == 422  # refused: logged as one row with its status, no features
            refused.append(bad["request_id"])
            v2 = {
                "id": "v2-1",
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": rows[0]}],
            }
            status, _ = await _post(app, "/v2/models/m/versions/1/infer", v2)
            assert status == 200
        finally:
            await app.handlers.router.stop()

    start = time.time()
    asyncio.run(main())
    end = time.time()
    assert app.state.predictions is not None
    app.state.predictions.close()

    logged = {m: read_predictions(ws.meta, ws.objects, m).to_pylist() for m in ("m", "t", "r")}
    assert [len(logged[m]) for m in ("m", "t", "r")] == [6, 2, 2]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in logged["m"] + logged["t"] + logged["r"]:
        by_id.setdefault(row["request_id"], []).append(row)
    [failed] = by_id.pop(refused[0])
    assert (failed["status"], failed["error"], failed["row"]) == (422, "InvalidInputError", 0)
    assert failed["features"] is None and failed["label"] is None and failed["batch_rows"] == 0
    for rid, inputs, answers in sent:
        got = sorted(by_id.pop(rid), key=lambda r: r["row"])
        assert [r["row"] for r in got] == list(range(len(inputs)))
        for row, given, answer in zip(got, inputs, answers, strict=True):
            assert row["version"] == 1 and row["role"] == "primary" and row["status"] == 200
            assert row["error"] is None and row["batch_rows"] >= len(inputs)
            assert start <= row["at"].timestamp() <= end and row["latency_ms"] > 0
            values = list(given.values()) if isinstance(given, dict) else given
            np.testing.assert_allclose(row["features"], values, rtol=1e-6)
            if isinstance(given, dict):
                assert row["model"] == "t" and orjson.loads(row["input"]) == given
            else:
                assert row["input"] is None  # `features` already holds the row
            if row["model"] == "r":
                assert row["label"] is None and row["score"] is None
                np.testing.assert_allclose(row["value"], answer["value"], rtol=1e-6)
            else:
                assert row["label"] == answer["label"] and row["value"] is None
                assert row["score"] == np.float32(answer["score"])
    [pinned] = by_id.pop("v2-1")
    assert pinned["role"] == "pinned" and pinned["row"] == 0
    np.testing.assert_allclose(pinned["features"], rows[0], rtol=1e-6)
    assert by_id == {}
    ws.close()
