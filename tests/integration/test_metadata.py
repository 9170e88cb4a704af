"""The metadata store against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from conveyor import Workspace
from conveyor.core.errors import MetadataUnreachableError
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.tables import Base, ObjectRecord

WRITER = Path(__file__).with_name("writer.py")


def test_migrations_build_exactly_the_tables_the_code_uses(workspace: Workspace) -> None:
    with workspace.meta.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert workspace.meta.revision() == MetadataStore.head()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    with ws.meta.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_several_processes_write_at_once(workspace: Workspace, backends: object) -> None:
    assert workspace.root is not None
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(workspace.root), "25", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    written: set[str] = set()
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        written |= set(out.split())
    with workspace.meta.read() as s:
        indexed = set(s.scalars(select(ObjectRecord.digest)))
    assert indexed == written
    assert len(written) >= 90  # 100 random writes; identical small payloads are shared
    for digest in list(written)[:10]:
        assert len(workspace.get_object(digest)) > 0


def test_many_processes_opening_a_fresh_database_migrate_it_once(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    code = (
        "import sys; from conveyor.storage.metadata import MetadataStore\n"
        "MetadataStore(sys.argv[1]).create()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, f"sqlite:///{db}"], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert MetadataStore(f"sqlite:///{db}").revision() == MetadataStore.head()


def test_concurrent_upgrades_on_postgres_are_serialised(pg_url: str) -> None:
    code = "import sys; from conveyor.storage.metadata import MetadataStore\n" + (
        "MetadataStore(sys.argv[1]).upgrade()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert MetadataStore(pg_url).revision() == MetadataStore.head()


def test_a_failed_write_leaves_nothing_behind(workspace: Workspace) -> None:
    with pytest.raises(RuntimeError), workspace.meta.write() as s:
        s.add(ObjectRecord(digest="a" * 64, size=1, media_type="x"))
        s.flush()
        raise RuntimeError("boom")
    with workspace.meta.read() as s:
        assert s.scalar(select(func.count()).select_from(ObjectRecord)) == 0


def test_an_unreachable_server_is_a_clear_error() -> None:
    store = MetadataStore("postgresql://nobody@127.0.0.1:1/nothing")
    with pytest.raises(MetadataUnreachableError, match=r"127\.0\.0\.1.*server is running"):
        store.check()


def test_a_wrong_password_is_never_printed(pg_url: str) -> None:
    bad = pg_url.replace("postgres@", "postgres:hunter2@").rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(MetadataUnreachableError) as info:
        MetadataStore(bad).check()
    assert "hunter2" not in str(info.value)
    assert "no_such_db" in str(info.value)


def test_a_schema_from_a_newer_conveyor_is_refused(workspace: Workspace) -> None:
    with workspace.meta.write() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(MetadataUnreachableError, match=r"newer Conveyor"):
        workspace.meta.ensure_current()
