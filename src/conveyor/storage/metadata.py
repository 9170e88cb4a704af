"""The metadata store: SQLAlchemy over SQLite (embedded, WAL) or PostgreSQL (team).

Writers on SQLite take the database lock up front (`BEGIN IMMEDIATE`) and wait for it
(busy timeout) instead of failing half-way, so several processes can write at once.
The schema is owned by Alembic migrations; `upgrade()` is safe to call from many
processes at the same moment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from conveyor.core.errors import InvalidURLError, MetadataUnreachableError, MissingExtraError

_BUSY_TIMEOUT_S = 60
_PG_MIGRATION_LOCK = 0x636F6E76  # "conv": serialises concurrent upgrades on PostgreSQL


def normalize_url(url: str, base: Path | None = None) -> URL:
    """Parse a metadata URL, pick our drivers and anchor relative SQLite paths at `base`."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise InvalidURLError(
            f"'{url}' is not a database URL",
            "use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname",
        ) from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":
            raise InvalidURLError(f"'{url}' has no database file", "use sqlite:///path/to/file.db")
        path = Path(db).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return parsed.set(drivername="sqlite+pysqlite", database=str(path))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise InvalidURLError(
        f"unsupported metadata database '{backend}' in '{url}'",
        "use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname",
    )


class MetadataStore:
    """Opens the metadata database and hands out read and write sessions."""

    def __init__(self, url: str | URL, base: Path | None = None) -> None:
        self.url = url if isinstance(url, URL) else normalize_url(url, base)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._create_engine()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(conveyor_write=True), expire_on_commit=False
        )

    @property
    def display_url(self) -> str:
        """The URL without its password, safe to print."""
        plain = self.url.set(drivername=self.url.get_backend_name())
        return plain.render_as_string(hide_password=True)

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            try:
                return create_engine(
                    self.url,
                    pool_pre_ping=True,
                    connect_args={"connect_timeout": 10, "application_name": "conveyor"},
                )
            except (NoSuchModuleError, ModuleNotFoundError) as e:
                raise MissingExtraError(
                    "PostgreSQL support is not installed", "pip install 'conveyor[postgres]'"
                ) from e
        engine = create_engine(self.url, connect_args={"timeout": _BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            writing = conn.get_execution_options().get("conveyor_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

        return engine

    # -- sessions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; it never takes the write lock."""
        with self._translate(), self._sessions() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._translate(), self._write_sessions() as session, session.begin():
            yield session

    # -- schema ----------------------------------------------------------------------------

    def create(self) -> None:
        """Make the SQLite file's folder if needed, then bring the schema to the newest."""
        if self.is_sqlite and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.upgrade()

    def upgrade(self) -> None:
        """Run pending migrations, safely even when several processes start together."""
        from alembic import command

        config = _alembic_config()
        with self._translate(), self.engine.execution_options(conveyor_write=True).begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        """The schema revision the database is at (None if never migrated)."""
        from alembic.runtime.migration import MigrationContext

        with self._translate(), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head() -> str:
        """The newest schema revision this version of Conveyor knows."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        if head is None:
            raise RuntimeError("the migrations folder is missing from this installation")
        return head

    def ensure_current(self) -> None:
        """Upgrade an older schema; refuse a newer one written by a newer Conveyor."""
        current, head = self.revision(), self.head()
        if current == head:
            return
        from alembic.script import ScriptDirectory

        known = {
            r.revision for r in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
        }
        if current is not None and current not in known:
            raise MetadataUnreachableError(
                f"the metadata database {self.display_url} was written by a newer Conveyor "
                f"(schema {current})",
                "upgrade Conveyor: pip install -U conveyor",
            )
        self.upgrade()

    def check(self) -> None:
        """Raise MetadataUnreachableError unless the database answers a query."""
        with self._translate(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as e:
            raise MetadataUnreachableError(
                f"cannot use the metadata database {self.display_url}: {_reason(e)}",
                "check that the server is running and the URL, user and password are right",
            ) from e
        except SQLAlchemyError as e:
            if "no such table" in str(e) or "does not exist" in str(e):
                raise MetadataUnreachableError(
                    f"the metadata database {self.display_url} has no Conveyor schema",
                    "run `conveyor init` for this workspace",
                ) from e
            raise


def _alembic_config() -> Any:
    """Migrations live in `conveyor/migrations`: they span every layer's tables, so they
    sit at the top of the package; storage only needs their location, not their code."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("conveyor") / "migrations"))
    return config


def _reason(e: OperationalError) -> str:
    lines = str(e.orig).strip().splitlines() if e.orig else [str(e)]
    return lines[0][:200] if lines else type(e).__name__
