"""The inference server as a client sees it: real `conveyor serve` processes on loopback.

Models come from a folder source (tests/integration/serving_models.py) so these tests
exercise the server alone; test_serving_registry.py serves from the registry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pytest

from conveyor import Workspace
from conveyor.serving.predictions import read_predictions
from tests.integration.serving_models import (
    SOURCE,
    ServerProcess,
    move_alias,
    random_rows,
    tabular_model,
    write_model,
)

LABELS = {"setosa", "versicolor", "virginica"}


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_model(root, tabular_model("iris", 1, seed=0))
    write_model(root, tabular_model("iris", 2, seed=1), alias=None)
    return root


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    workspace = Workspace.init(tmp_path_factory.mktemp("ws") / "ws")
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def server(models_root: Path, ws: Workspace) -> Iterator[ServerProcess]:
    """One shared server for the read-only checks (no keys yet: auth stays off)."""
    args = [
        "iris:production",
        "--source",
        SOURCE,
        "--max-body-bytes",
        "4000",
        "--max-queue",
        "128",
        "--max-batch-size",
        "64",
    ]
    with ServerProcess(args, workspace=ws.root, models_root=models_root) as proc:
        yield proc


def _post(url: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_predict_answers_labels_and_scores_for_lists_and_named_columns(
    server: ServerProcess,
) -> None:
    lists = _post(server.url, "/predict/iris", json={"rows": random_rows(3)})
    named = _post(server.url, "/predict/iris", json=[{"a": 1, "b": 2, "c": 3, "d": 4}])
    assert lists.status_code == named.status_code == 200
    body = lists.json()
    assert body["model"] == "iris" and body["version"] == 1
    assert len(body["predictions"]) == 3
    assert {p["label"] for p in body["predictions"]} <= LABELS
    assert all(0.0 < p["score"] <= 1.0 for p in body["predictions"])
    assert lists.headers["x-request-id"] == body["request_id"]
    every = _post(server.url, "/predict/iris?scores=all", json={"rows": random_rows(1)}).json()
    assert set(every["predictions"][0]["scores"]) == LABELS


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"rows": [{"a": 1, "b": 2, "c": "x", "d": 4}]}, "rows[0].c", "expected a number"),
        ({"rows": [{"a": 1, "b": 2, "d": 4}]}, "rows[0].c", "missing field 'c'"),
        ({"rows": [[1, 2, 3, 4], [1, 2, 3]]}, "rows[1]", "3 values"),
        ({"rows": []}, "rows", "empty"),
        ({"data": [[1, 2, 3, 4]]}, "rows", "no 'rows'"),
        ({"rows": [[1, 2, True, 4]]}, "rows[0][2]", "boolean"),
    ],
)
def test_bad_payloads_get_a_4xx_naming_the_field(
    server: ServerProcess, payload: object, field: str, words: str
) -> None:
    response = _post(server.url, "/predict/iris", json=payload)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert words in response.json()["error"]


def test_unparseable_unknown_and_oversized_requests_are_4xx(server: ServerProcess) -> None:
    broken = _post(
        server.url, "/predict/iris", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["field"] == "body"
    unknown = _post(server.url, "/predict/roses", json={"rows": random_rows(1)})
    assert unknown.status_code == 404 and "iris" in unknown.json()["error"]
    huge = _post(server.url, "/predict/iris", json={"rows": random_rows(400)})
    assert huge.status_code == 413 and "limit" in huge.json()["error"]


def test_a_request_deeper_than_the_queue_is_shed_with_retry_after(server: ServerProcess) -> None:
    rows = [[0, 0, 0, 0]] * 129  # over --max-queue 128, under the body limit
    response = _post(server.url, "/predict/iris", json={"rows": rows})
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1


def test_open_inference_protocol_v2(server: ServerProcess) -> None:
    url = server.url
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{url}/v2/models/iris/ready").status_code == 200
    meta = httpx.get(f"{url}/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    request = {
        "id": "r-1",
        "inputs": [
            {
                "name": "features",
                "shape": [2, 4],
                "datatype": "FP32",
                "data": [1, 2, 3, 4, 5, 6, 7, 8],
            }
        ],
    }
    answer = _post(url, "/v2/models/iris/infer", json=request).json()
    assert answer["id"] == "r-1" and answer["model_name"] == "iris"
    assert answer["model_version"] == "1"
    assert answer["outputs"][0]["shape"] == [2, 3] and len(answer["outputs"][0]["data"]) == 6
    pinned = _post(url, "/v2/models/iris/versions/1/infer", json=request)
    assert pinned.status_code == 200
    assert httpx.get(f"{url}/v2/models/iris/versions/7").status_code == 404
    bad = dict(request, inputs=[dict(request["inputs"][0], datatype="FP64")])  # type: ignore[call-overload]
    wrong = _post(url, "/v2/models/iris/infer", json=bad)
    assert wrong.status_code == 400 and "FP32" in wrong.json()["error"]
    short = dict(request, inputs=[dict(request["inputs"][0], data=[1, 2, 3])])  # type: ignore[call-overload]
    assert "8" in _post(url, "/v2/models/iris/infer", json=short).json()["error"]


def test_docs_and_metrics(server: ServerProcess) -> None:
    for _ in range(3):
        _post(server.url, "/predict/iris", json={"rows": random_rows(2)})
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/predict/{name}", "/v2/models/{name}/infer", "/v2/health/ready"} <= set(
        schema["paths"]
    )
    assert httpx.get(f"{server.url}/docs").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'conveyor_requests_total{code="200",model="iris",version="1"}' in metrics
    assert 'conveyor_request_seconds_bucket{le="0.01",model="iris",version="1"}' in metrics
    assert 'conveyor_batch_rows_count{model="iris",version="1"}' in metrics
    assert 'conveyor_queue_rows{model="iris",version="1"}' in metrics
    assert 'conveyor_errors_total{kind="InvalidInputError",model="iris",version="1"}' in metrics


def test_concurrent_clients_all_get_their_own_answers(server: ServerProcess) -> None:
    """Requests batched together still get their own rows back (a row's answer is its own)."""
    single = {}
    for i in range(4):
        row = random_rows(1, seed=i)
        single[i] = _post(server.url, "/predict/iris", json={"rows": row}).json()["predictions"]
    failures: list[str] = []

    def client(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for _ in range(25):
                r = c.post("/predict/iris", json={"rows": random_rows(1, seed=i)})
                if r.status_code != 200 or r.json()["predictions"] != single[i]:
                    failures.append(f"{i}: {r.status_code} {r.text[:100]}")

    threads = [threading.Thread(target=client, args=(i % 4,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_the_prediction_log_holds_every_request_after_shutdown(
    models_root: Path, tmp_path: Path
) -> None:
    ws = Workspace.init(tmp_path / "logged")
    args = ["iris@v1", "--source", SOURCE, "--log-flush", "0.5"]
    with ServerProcess(args, workspace=ws.root, models_root=models_root) as proc:
        ids = []
        for i in range(5):
            r = _post(
                proc.url,
                "/predict/iris",
                json={"rows": random_rows(2, seed=i)},
                headers={"x-request-id": f"req-{i}"},
            )
            ids.append(r.json()["request_id"])
        bad = _post(
            proc.url, "/predict/iris", json={"rows": [[1, 2]]}, headers={"x-request-id": "bad"}
        )
        assert bad.status_code == 422
    table = read_predictions(ws.meta, ws.objects, "iris")
    answered = table.filter(pc.equal(table["status"], 200))
    assert answered.num_rows == 10
    assert sorted(set(answered.column("request_id").to_pylist())) == sorted(ids)
    first = answered.to_pylist()[0]
    assert first["version"] == 1 and first["role"] == "primary"
    assert first["label"] in LABELS and len(first["features"]) == 4
    assert "latency_ms" in first and first["error"] is None
    assert 2 <= first["batch_rows"] <= 10  # the batch its two rows ran in
    # the failed request is one row: its status and error kind, for the error rate
    (failed,) = table.filter(pc.not_equal(table["status"], 200)).to_pylist()
    assert failed["request_id"] == "bad" and failed["status"] == 422
    assert failed["error"] == "InvalidInputError" and failed["features"] is None
    assert failed["batch_rows"] == 0 and failed["label"] is None
    ws.close()


def test_an_alias_move_swaps_versions_without_a_failed_request(
    models_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    write_model(root, tabular_model("iris", 1, seed=0))
    write_model(root, tabular_model("iris", 2, seed=1), alias=None)
    args = ["iris:production", "--source", SOURCE, "--log-sample", "0"]
    with ServerProcess(args, models_root=root) as proc:
        seen: list[int] = []
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=proc.url, timeout=30) as c:
                while not stop.is_set() and len(seen) < 20_000:
                    r = c.post("/predict/iris", json={"rows": random_rows(1)})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code}: {r.text[:200]}")
                    else:
                        seen.append(r.json()["version"])

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            _wait_for(lambda: len(seen) > 50)
            move_alias(root, "iris", "production", 2)  # what `models promote` does
            _wait_for(lambda: seen[-20:] == [2] * 20)
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert failures == []
    assert seen[0] == 1 and seen[-1] == 2
    switch = seen.index(2)
    assert all(v == 2 for v in seen[switch + 50 :])  # no flapping back


def test_canary_split_and_sticky_routing(models_root: Path) -> None:
    args = [
        "iris:production",
        "--source",
        SOURCE,
        "--canary",
        "iris@v2:50%",
        "--sticky-header",
        "x-user",
    ]
    with ServerProcess(args, models_root=models_root) as proc, httpx.Client(base_url=proc.url) as c:
        anonymous = {
            c.post("/predict/iris", json={"rows": random_rows(1)}).json()["version"]
            for _ in range(60)
        }
        assert anonymous == {1, 2}
        per_user = {}
        for user in [f"user-{i}" for i in range(12)]:
            versions = {
                c.post(
                    "/predict/iris", json={"rows": random_rows(1)}, headers={"x-user": user}
                ).json()["version"]
                for _ in range(5)
            }
            assert len(versions) == 1, f"{user} moved between versions"
            per_user[user] = versions.pop()
        assert set(per_user.values()) == {1, 2}


def test_shadow_answers_are_logged_not_returned(models_root: Path, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "shadowed")
    args = ["iris:production", "--source", SOURCE, "--shadow", "iris@v2", "--log-flush", "0.5"]
    with ServerProcess(args, workspace=ws.root, models_root=models_root) as proc:
        versions = {
            _post(proc.url, "/predict/iris", json={"rows": random_rows(1, seed=i)}).json()[
                "version"
            ]
            for i in range(10)
        }
    assert versions == {1}
    table = read_predictions(ws.meta, ws.objects, "iris").to_pylist()
    roles = {(row["role"], row["version"]) for row in table}
    assert roles == {("primary", 1), ("shadow", 2)}
    by_role: dict[str, set[str]] = {}
    for row in table:
        by_role.setdefault(row["role"], set()).add(row["request_id"])
    assert by_role["primary"] == by_role["shadow"]
    ws.close()


def _wait_for(condition: object, rounds: int = 600) -> None:
    import time

    for _ in range(rounds):
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_two_workers_share_one_port_and_one_metrics_view(models_root: Path) -> None:
    args = ["iris:production", "--source", SOURCE, "--workers", "2"]
    with ServerProcess(args, models_root=models_root) as proc:
        workers: set[str] = set()
        sent = 0
        # fresh connections until both processes have answered: which one accepts a
        # connection is the kernel's and the scheduler's choice, so keep asking
        deadline = time.monotonic() + 120
        while len(workers) < 2 or sent < 10:
            assert time.monotonic() < deadline, f"only {workers} answered {sent} requests"
            r = httpx.post(f"{proc.url}/predict/iris", json={"rows": random_rows(1)})
            assert r.status_code == 200
            sent += 1
            workers.add(r.headers["x-served-by"])
        counted = []
        deadline = time.monotonic() + 60
        while True:  # each worker publishes its totals once a second
            metrics = httpx.get(f"{proc.url}/metrics").text
            line = next(
                m
                for m in metrics.splitlines()
                if m.startswith('conveyor_requests_total{code="200",model="iris",version="1"}')
            )
            counted.append(float(line.split()[-1]))
            if counted[-1] == sent or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert counted[-1] == sent  # summed over both workers
