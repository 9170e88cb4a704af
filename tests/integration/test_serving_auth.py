"""API keys on a real server: hashed in the workspace, scopes, revocation, rate limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from conveyor import Client, Workspace
from conveyor.core.errors import AuthError
from conveyor.serving.keys import Keys
from conveyor.serving.records import ApiKeyRecord
from tests.integration.serving_models import (
    SOURCE,
    ServerProcess,
    random_rows,
    tabular_model,
    write_model,
)

ROWS = {"rows": [[0.1, 0.2, 0.3, 0.4]]}


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str], Workspace]]:
    root = tmp_path_factory.mktemp("models")
    write_model(root, tabular_model("iris", 1, seed=0))
    write_model(root, tabular_model("iris", 2, seed=1), alias=None)
    ws = Workspace.init(tmp_path_factory.mktemp("ws") / "ws")
    keys = Keys(ws.meta)
    secrets = {
        "predict": keys.create("app", "predict").secret,
        "admin": keys.create("ops", "admin").secret,
        "slow": keys.create("batch-job", "predict", rate_limit=1).secret,
        "doomed": keys.create("intern", "predict").secret,
    }
    with ServerProcess(
        ["iris:production", "--source", SOURCE], workspace=ws.root, models_root=root
    ) as proc:
        yield proc, secrets, ws
    ws.close()


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_keys_are_stored_hashed(keyed: tuple[ServerProcess, dict[str, str], Workspace]) -> None:
    _, secrets, ws = keyed
    with ws.meta.read() as s:
        stored = [(r.hash, r.salt) for r in s.scalars(select(ApiKeyRecord))]
    assert len(stored) == 4
    for secret in secrets.values():
        assert all(secret.split("_")[-1] not in h and secret not in h for h, _ in stored)
    assert len({salt for _, salt in stored}) == 4  # one salt per key


def test_predict_needs_a_valid_key(keyed: tuple[ServerProcess, dict[str, str], Workspace]) -> None:
    proc, secrets, _ = keyed
    missing = httpx.post(f"{proc.url}/predict/iris", json=ROWS)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]
    wrong = httpx.post(
        f"{proc.url}/predict/iris", json=ROWS, headers=_auth(secrets["predict"] + "x")
    )
    assert wrong.status_code == 401
    forged = "_".join(secrets["predict"].split("_")[:2]) + "_" + "A" * 43
    assert (
        httpx.post(f"{proc.url}/predict/iris", json=ROWS, headers=_auth(forged)).status_code == 401
    )
    ok = httpx.post(f"{proc.url}/predict/iris", json=ROWS, headers=_auth(secrets["predict"]))
    assert ok.status_code == 200
    header = httpx.post(
        f"{proc.url}/predict/iris", json=ROWS, headers={"x-api-key": secrets["predict"]}
    )
    assert header.status_code == 200
    assert httpx.get(f"{proc.url}/v2/models/iris").status_code == 401
    assert httpx.get(f"{proc.url}/v2/health/ready").status_code == 200  # health stays open


def test_admin_routes_need_an_admin_key(
    keyed: tuple[ServerProcess, dict[str, str], Workspace],
) -> None:
    proc, secrets, _ = keyed
    url = f"{proc.url}/admin/models/iris/canary"
    body = {"version": 2, "weight": 1.0}
    assert httpx.put(url, json=body).status_code == 401
    refused = httpx.put(url, json=body, headers=_auth(secrets["predict"]))
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    done = httpx.put(url, json=body, headers=_auth(secrets["admin"]))
    assert done.status_code == 200 and done.json()["canary"] == {"version": 2, "weight": 1.0}
    answer = httpx.post(f"{proc.url}/predict/iris", json=ROWS, headers=_auth(secrets["admin"]))
    assert answer.json()["version"] == 2  # an admin key may predict too
    assert httpx.delete(url, headers=_auth(secrets["admin"])).status_code == 200
    state = httpx.get(f"{proc.url}/admin/models", headers=_auth(secrets["admin"])).json()
    assert state["iris"]["canary"] is None and state["iris"]["version"] == 1


def test_a_key_over_its_rate_gets_429_with_retry_after(
    keyed: tuple[ServerProcess, dict[str, str], Workspace],
) -> None:
    proc, secrets, _ = keyed
    codes = []
    with httpx.Client(base_url=proc.url, headers=_auth(secrets["slow"])) as c:
        for _ in range(5):
            response = c.post("/predict/iris", json=ROWS)
            codes.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
    assert 429 in codes and codes[0] == 200
    fast = httpx.post(f"{proc.url}/predict/iris", json=ROWS, headers=_auth(secrets["predict"]))
    assert fast.status_code == 200  # limits are per key


def test_a_revoked_key_stops_working(
    keyed: tuple[ServerProcess, dict[str, str], Workspace],
) -> None:
    proc, secrets, ws = keyed
    key_id = secrets["doomed"].split("_")[1]
    client = Client(proc.url, api_key=secrets["doomed"], retries=0)
    assert client.predict("iris", rows=random_rows(1)).version == 1
    Keys(ws.meta).revoke(key_id)
    for _ in range(100):  # the server reloads keys every couple of seconds
        try:
            client.predict("iris", rows=random_rows(1))
        except AuthError as e:
            assert "revoked" in str(e)
            break
        time.sleep(0.1)
    else:
        pytest.fail("the revoked key still works")
    client.close()


def test_workers_of_one_server_share_a_keys_rate_limit(tmp_path: Path) -> None:
    """With --workers 2 a key still gets its limit, not twice it: the buckets are shared."""
    root = tmp_path / "models"
    write_model(root, tabular_model("iris", 1))
    ws = Workspace.init(tmp_path / "ws")
    secret = Keys(ws.meta).create("nightly", "predict", rate_limit=0.01).secret  # burst: 1
    args = ["iris:production", "--source", SOURCE, "--workers", "2"]
    with ServerProcess(args, workspace=ws.root, models_root=root) as proc:
        answers: dict[str, list[int]] = {}
        # fresh connections until both workers have answered: which one accepts a
        # connection is the kernel's and the scheduler's choice, so keep asking
        deadline = time.monotonic() + 60  # well inside the 100 s one token takes to refill
        while len(answers) < 2 or sum(map(len, answers.values())) < 6:
            assert time.monotonic() < deadline, f"only {list(answers)} answered"
            r = httpx.post(f"{proc.url}/predict/iris", json=ROWS, headers=_auth(secret))
            answers.setdefault(r.headers["x-served-by"], []).append(r.status_code)
    ws.close()
    assert len(answers) == 2
    codes = [code for worker in answers.values() for code in worker]
    assert codes.count(200) == 1 and set(codes) == {200, 429}
