"""Fixtures for the real services `make test` starts (see scripts/services.sh).

A test that needs PostgreSQL or S3 fails, never skips, when the service is missing:
a suite that silently skips its backends proves nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor import Workspace

# Ray 2.60 turns on token auth for a new local cluster once any Ray process has written
# ~/.ray/auth_token, and its client (ray://) then fails to connect. The test clusters live
# on 127.0.0.1 only: keep auth off for them and for the clients, whatever ran before.
os.environ["RAY_AUTH_MODE"] = "disabled"


def _service(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set: run the tests with `make test` (it starts the services)")
    return value


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's workspace or AWS profile."""
    for var in list(os.environ):
        if var.startswith("CONVEYOR_") and not var.startswith("CONVEYOR_TEST_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the test server; dropped afterwards."""
    import psycopg

    admin = _service("CONVEYOR_TEST_PG_URL")
    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def s3_endpoint() -> str:
    return _service("CONVEYOR_TEST_S3_ENDPOINT")


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the S3-compatible test server."""
    import boto3

    name = f"conveyor-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@dataclass(frozen=True)
class Backends:
    """Which metadata and object store a workspace under test uses."""

    name: str
    meta: str | None
    objects: str | None
    options: dict[str, str] | None


@pytest.fixture(params=["sqlite+local", "postgres+s3"])
def backends(request: pytest.FixtureRequest) -> Backends:
    """Run a test once embedded (SQLite, folder) and once team-style (PostgreSQL, S3)."""
    if request.param == "sqlite+local":
        return Backends(request.param, None, None, None)
    pg = request.getfixturevalue("pg_url")
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    return Backends(request.param, pg, f"s3://{bucket}/ws", {"endpoint_url": endpoint})


@pytest.fixture
def workspace(tmp_path: Path, backends: Backends) -> Iterator[Workspace]:
    ws = Workspace.init(
        tmp_path / "ws",
        meta=backends.meta,
        objects=backends.objects,
        objects_options=backends.options,
    )
    yield ws
    ws.close()
