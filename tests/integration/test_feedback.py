"""Labels sent back to a real server (`POST /feedback/{name}`), and live accuracy from them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import select

from conveyor import Workspace
from conveyor.monitoring.accuracy import accuracy, read_labels
from conveyor.serving.keys import SCOPES, Keys
from conveyor.serving.predictions import read_predictions
from conveyor.serving.records import FeedbackRecord
from tests.integration.serving_models import (
    SOURCE,
    ServerProcess,
    random_rows,
    tabular_model,
    write_model,
)

LABELS = ["setosa", "versicolor", "virginica"]
GOOD = {"request_id": "good", "label": "setosa"}  # sent before a bad label: not stored either
MAX_BODY = 400_000  # room for 10,001 tiny labels, so the label limit is what refuses them


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_model(root, tabular_model("iris", 1, seed=0))
    return root


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, models_root: Path
) -> Iterator[tuple[ServerProcess, dict[str, str], Workspace]]:
    ws = Workspace.init(tmp_path_factory.mktemp("ws") / "ws")
    keys = Keys(ws.meta)
    secrets = {scope: keys.create(f"{scope}-key", scope).secret for scope in SCOPES}
    args = ["iris:production", "--source", SOURCE, "--max-body-bytes", str(MAX_BODY)]
    with ServerProcess(args, workspace=ws.root, models_root=models_root) as proc:
        yield proc, secrets, ws
    ws.close()


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _predict(url: str, key: str, request_id: str, rows: int, seed: int) -> list[str]:
    response = httpx.post(
        f"{url}/predict/iris",
        json={"rows": random_rows(rows, seed=seed)},
        headers={**_auth(key), "x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [p["label"] for p in response.json()["predictions"]]


def _feedback(url: str, key: str | None, body: Any, name: str = "iris") -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"content-type": "application/json", **(_auth(key) if key else {})}
    return httpx.post(f"{url}/feedback/{name}", content=content, headers=headers, timeout=60)


def _stored(ws: Workspace) -> int:
    return int(read_labels(ws.meta, "iris").num_rows)


def _other(label: str) -> str:
    return next(x for x in LABELS if x != label)


def test_labels_for_served_requests_are_accepted_and_give_the_expected_accuracy(
    keyed: tuple[ServerProcess, dict[str, str], Workspace],
) -> None:
    proc, secrets, ws = keyed
    served = {
        "acc-a": _predict(proc.url, secrets["predict"], "acc-a", 3, seed=1),
        "acc-b": _predict(proc.url, secrets["predict"], "acc-b", 2, seed=2),
        "acc-c": _predict(proc.url, secrets["predict"], "acc-c", 1, seed=3),
    }
    # right for a0, a1, b0, c0; wrong for a2 and b1: 4 of 6
    truths = {
        ("acc-a", 0): served["acc-a"][0],
        ("acc-a", 1): served["acc-a"][1],
        ("acc-a", 2): _other(served["acc-a"][2]),
        ("acc-b", 0): served["acc-b"][0],
        ("acc-b", 1): _other(served["acc-b"][1]),
    }
    body = [{"request_id": r, "row": i, "label": label} for (r, i), label in truths.items()]
    answer = _feedback(proc.url, secrets["feedback"], body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 5, "unmatched": []}
    # one object, row defaulting to 0, with an admin key
    single = {"request_id": "acc-c", "label": served["acc-c"][0]}
    assert _feedback(proc.url, secrets["admin"], single).json() == {"accepted": 1, "unmatched": []}

    ids = list(served)
    predicted = read_predictions(ws.meta, ws.objects, "iris")
    predicted = predicted.filter(pc.is_in(predicted["request_id"], pa.array(ids)))
    labels = read_labels(ws.meta, "iris", ids)
    report = accuracy(predicted, labels, bucket_s=3600)
    assert (report["labelled"], report["correct"]) == (6, 4)
    assert report["accuracy"] == pytest.approx(4 / 6)
    low, high = report["ci"]
    assert low < 4 / 6 < high
    assert sum(sum(row) for row in report["confusion"]["matrix"]) == 6
    assert sum(b["labelled"] for b in report["timeline"]) == 6

    # a correction: the latest label of a row wins
    fix = {"request_id": "acc-b", "row": 1, "label": served["acc-b"][1]}
    assert _feedback(proc.url, secrets["feedback"], [fix]).json()["accepted"] == 1
    again = accuracy(predicted, read_labels(ws.meta, "iris", ids))
    assert (again["labelled"], again["correct"]) == (6, 5)
    with ws.meta.read() as s:
        rows = s.scalars(select(FeedbackRecord).where(FeedbackRecord.request_id == "acc-b"))
        keys = {r.key_id for r in rows}
    assert len(keys) == 1 and None not in keys  # the feedback key's id, not its secret


def test_an_unknown_request_is_stored_but_named_and_a_row_out_of_range_is_refused(
    keyed: tuple[ServerProcess, dict[str, str], Workspace],
) -> None:
    proc, secrets, ws = keyed
    _predict(proc.url, secrets["predict"], "rows-2", 2, seed=4)
    before = _stored(ws)
    body = [
        {"request_id": "rows-2", "row": 1, "label": "setosa"},
        {"request_id": "made-up-id", "row": 0, "label": "setosa"},
        {"request_id": "rows-2", "row": 2, "label": "setosa"},
    ]
    answer = _feedback(proc.url, secrets["feedback"], body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["accepted"] == 2
    made_up, out_of_range = data["unmatched"]
    assert (made_up["request_id"], made_up["row"], made_up["stored"]) == ("made-up-id", 0, True)
    assert "not in this model's prediction log" in made_up["reason"]
    assert (out_of_range["request_id"], out_of_range["row"]) == ("rows-2", 2)
    assert out_of_range["stored"] is False and "2 row(s)" in out_of_range["reason"]
    stored = read_labels(ws.meta, "iris", ["rows-2", "made-up-id"]).to_pylist()
    assert _stored(ws) == before + 2
    assert sorted((r["request_id"], r["row"]) for r in stored) == [("made-up-id", 0), ("rows-2", 1)]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"", "body", "empty"),
        (b"{nope", "body", "not valid JSON"),
        (5, "body", "not a number"),
        ("setosa", "body", "not a string"),
        ([GOOD, 7], "[1]", "must be an object"),
        ([GOOD, {"label": "setosa"}], "[1].request_id", "no 'request_id'"),
        ({"request_id": 12, "label": "setosa"}, "request_id", "non-empty string"),
        ([GOOD, {"request_id": "r"}], "[1].label", "no 'label'"),
        ([GOOD, {"request_id": "r", "label": ""}], "[1].label", "non-empty string"),
        ([GOOD, {"request_id": "r", "label": 3}], "[1].label", "non-empty string"),
        ([GOOD, {"request_id": "r", "row": -1, "label": "a"}], "[1].row", "whole number"),
        ([GOOD, {"request_id": "r", "row": 1.5, "label": "a"}], "[1].row", "whole number"),
        ([GOOD, {"request_id": "r", "row": "1", "label": "a"}], "[1].row", "whole number"),
        ([GOOD, {"request_id": "r", "row": True, "label": "a"}], "[1].row", "whole number"),
        ([GOOD, {"request_id": "r", "rows": 1, "label": "a"}], "[1].rows", "unknown field"),
        ([GOOD, {"request_id": "r" * 129, "label": "a"}], "[1].request_id", "limit of 128"),
    ],
)
def test_malformed_bodies_are_422_naming_the_spot_and_store_nothing(
    keyed: tuple[ServerProcess, dict[str, str], Workspace], body: Any, field: str, words: str
) -> None:
    proc, secrets, ws = keyed
    before = _stored(ws)
    answer = _feedback(proc.url, secrets["feedback"], body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert words in answer.json()["error"]
    assert _stored(ws) == before


def test_too_many_labels_a_too_large_body_and_an_unknown_model_are_refused(
    keyed: tuple[ServerProcess, dict[str, str], Workspace],
) -> None:
    proc, secrets, ws = keyed
    before = _stored(ws)
    many = [{"request_id": "x", "label": "y"} for _ in range(10_001)]
    assert len(orjson.dumps(many)) < MAX_BODY
    too_many = _feedback(proc.url, secrets["feedback"], many)
    assert too_many.status_code == 413 and "10000" in too_many.json()["error"]
    large = _feedback(
        proc.url, secrets["feedback"], [{"request_id": "x" * 100, "label": "y" * 100}] * 2_000
    )
    assert large.status_code == 413 and "--max-body-bytes" in large.json()["error"]
    unknown = _feedback(proc.url, secrets["feedback"], [{"request_id": "x", "label": "y"}], "roses")
    assert unknown.status_code == 404 and "roses" in unknown.json()["error"]
    assert _stored(ws) == before
    # the most a request may hold is fine
    assert _feedback(proc.url, secrets["feedback"], many[:10_000]).json()["accepted"] == 10_000


def test_scopes_a_predict_key_cannot_send_labels_and_a_feedback_key_cannot_predict(
    keyed: tuple[ServerProcess, dict[str, str], Workspace],
) -> None:
    proc, secrets, ws = keyed
    label = [{"request_id": "scoped", "label": "setosa"}]
    before = _stored(ws)
    refused = _feedback(proc.url, secrets["predict"], label)
    assert refused.status_code == 403 and "'feedback' is needed" in refused.json()["error"]
    assert _feedback(proc.url, None, label).status_code == 401
    assert _stored(ws) == before
    assert _feedback(proc.url, secrets["feedback"], label).status_code == 200
    assert _feedback(proc.url, secrets["admin"], label).status_code == 200
    predict = httpx.post(
        f"{proc.url}/predict/iris",
        json={"rows": random_rows(1)},
        headers=_auth(secrets["feedback"]),
    )
    assert predict.status_code == 403
    admin = httpx.get(f"{proc.url}/admin/models", headers=_auth(secrets["feedback"]))
    assert admin.status_code == 403


def test_the_route_is_in_the_openapi_docs(
    keyed: tuple[ServerProcess, dict[str, str], Workspace],
) -> None:
    proc, _, _ = keyed
    schema = httpx.get(f"{proc.url}/openapi.json").json()
    post = schema["paths"]["/feedback/{name}"]["post"]
    assert post["tags"] == ["feedback"]
    assert "requestBody" in post and {"200", "404", "413", "422"} <= set(post["responses"])


def test_with_auth_off_anyone_may_send_labels(models_root: Path, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "open")
    args = ["iris:production", "--source", SOURCE, "--auth", "off"]
    try:
        with ServerProcess(args, workspace=ws.root, models_root=models_root) as proc:
            response = httpx.post(
                f"{proc.url}/predict/iris",
                json={"rows": random_rows(2)},
                headers={"x-request-id": "open-1"},
            )
            label = response.json()["predictions"][1]["label"]
            answer = _feedback(proc.url, None, [{"request_id": "open-1", "row": 1, "label": label}])
            assert answer.status_code == 200 and answer.json() == {"accepted": 1, "unmatched": []}
        (stored,) = read_labels(ws.meta, "iris").to_pylist()
        assert (stored["request_id"], stored["row"], stored["label"]) == ("open-1", 1, label)
    finally:
        ws.close()


def test_read_labels_looks_up_many_ids_in_batches(workspace: Workspace) -> None:
    """More ids than one IN query takes, on SQLite and on PostgreSQL."""
    with workspace.meta.write() as s:
        s.add_all(
            FeedbackRecord(model="iris", request_id=f"req-{i}", row=i % 3, label=LABELS[i % 3])
            for i in range(1_234)
        )
        s.add(FeedbackRecord(model="other", request_id="req-1", row=0, label="setosa"))
    everything = read_labels(workspace.meta, "iris")
    assert everything.num_rows == 1_234
    assert everything["received_at"].type == pa.timestamp("us", tz="UTC")
    wanted = [f"req-{i}" for i in range(0, 1_234, 2)] + ["req-missing"] * 3
    some = read_labels(workspace.meta, "iris", wanted)
    assert some.num_rows == 617
    assert set(some["request_id"].to_pylist()) == {f"req-{i}" for i in range(0, 1_234, 2)}
    assert read_labels(workspace.meta, "iris", []).num_rows == 0
