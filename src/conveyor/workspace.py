"""The Workspace: the one entry point that binds settings, metadata and objects.

Open one from a folder holding `conveyor.toml` (found from an explicit path, from
`CONVEYOR_HOME`, or by walking up from the current directory), or create one with
`Workspace.init`. Later layers hang their services off it (`ws.datasets`, `ws.runs`...).
"""

from __future__ import annotations

import functools
import getpass
import os
import platform
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w
from sqlalchemy import func, select

from conveyor import __version__
from conveyor.core.config import CONFIG_FILE, STATE_DIR, Settings, load_settings
from conveyor.core.errors import ConveyorError, WorkspaceExistsError, WorkspaceNotFoundError
from conveyor.core.units import human_bytes
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore, StoredObject
from conveyor.storage.tables import ObjectRecord, WorkspaceInfo, index_objects

if TYPE_CHECKING:
    from conveyor.compute.cost import PriceTable
    from conveyor.compute.jobs import Jobs
    from conveyor.data.catalog import Datasets
    from conveyor.registry.models import Models
    from conveyor.tracking.runs import Runs

HOME_ENV = "CONVEYOR_HOME"


@dataclass(frozen=True)
class PartStatus:
    """Whether one part of the workspace (config, metadata, objects) is usable."""

    part: str
    location: str
    ok: bool
    detail: str


class Workspace:
    """A workspace: configuration plus a metadata store and an object store."""

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.root = root
        self.settings = settings
        base = root or Path.cwd()
        self.meta = MetadataStore(settings.metadata.url, base=base)
        self.objects = ObjectStore(
            _resolve_objects_url(settings.objects.url, base), settings.objects.options
        )

    # -- finding and making workspaces -----------------------------------------------------

    @classmethod
    def open(
        cls, path: str | Path | None = None, *, upgrade: bool = True, **overrides: Any
    ) -> Workspace:
        """Open the workspace at `path`, in CONVEYOR_HOME, or the nearest one up the tree.

        `upgrade=False` skips touching the database (for `status`, which must work
        even when the database is down).
        """
        root = find_root(path)
        ws = cls(load_settings(root / CONFIG_FILE, **overrides), root)
        if upgrade:
            ws.meta.ensure_current()
        return ws

    @classmethod
    def init(
        cls,
        path: str | Path = ".",
        meta: str | None = None,
        objects: str | None = None,
        objects_options: dict[str, Any] | None = None,
    ) -> Workspace:
        """Create a workspace in `path`; conveyor.toml is written last, once both stores work."""
        root = Path(path).expanduser().resolve()
        if (root / CONFIG_FILE).exists():
            raise WorkspaceExistsError(
                f"{root} already holds a Conveyor workspace",
                "open it (cd there, or set CONVEYOR_HOME) or choose another folder",
            )
        if root.exists() and not root.is_dir():
            raise WorkspaceNotFoundError(f"{root} is a file, not a folder", "choose a folder")
        config: dict[str, Any] = {}
        if meta:
            config["metadata"] = {"url": meta}
        if objects or objects_options:
            config["objects"] = {"url": objects or Settings().objects.url}
            if objects_options:
                config["objects"]["options"] = objects_options
        settings = load_settings(None, **config)
        config = settings.model_dump(include={"metadata", "objects"}, exclude_defaults=False)
        if not config["objects"]["options"]:
            del config["objects"]["options"]
        made = root if not root.exists() else root / STATE_DIR
        made_here = not made.exists()
        try:
            (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
            ws = cls(settings, root)
            ws.objects.create()
            ws.meta.create()
            ws._record_birth()
            _write_config(root / CONFIG_FILE, config)
        except BaseException:
            if made_here:  # a failed init leaves the folder as it found it
                shutil.rmtree(made, ignore_errors=True)
            raise
        return ws

    def _record_birth(self) -> None:
        facts = {
            "workspace_id": uuid.uuid4().hex,
            "created_by": f"conveyor {__version__}",
            "created_on": platform.node(),
            "created_user": getpass.getuser(),
        }
        with self.meta.write() as s:
            if s.get(WorkspaceInfo, "workspace_id") is None:
                s.add_all(WorkspaceInfo(key=k, value=v) for k, v in facts.items())

    @functools.cached_property
    def datasets(self) -> Datasets:
        """Versioned datasets: `ws.datasets.ingest(...)`, `ws.datasets.get("digits@v2")`."""
        from conveyor.data.catalog import Datasets

        return Datasets(self.meta, self.objects)

    @functools.cached_property
    def runs(self) -> Runs:
        """Experiment runs: `with ws.runs.start(name="cnn") as run: run.log_metric(...)`."""
        from conveyor.tracking.runs import Runs

        return Runs(self.meta, self.objects, self.root)

    @functools.cached_property
    def models(self) -> Models:
        """The model registry: `ws.models.register(...)`, `ws.models.get("digits@production")`."""
        from conveyor.registry.models import Models

        return Models(self.meta, self.objects, self.datasets, lambda: self.runs)

    @functools.cached_property
    def jobs(self) -> Jobs:
        """Jobs and their scheduler: `ws.jobs.submit(JobSpec(command="python train.py"))`."""
        from conveyor.compute.jobs import Jobs

        return Jobs(self.meta, self.objects, self.root, prices=self.prices)

    @functools.cached_property
    def prices(self) -> PriceTable:
        """The price table runs and jobs are costed with: the built-in estimates overridden
        by `[prices]` in conveyor.toml (and CONVEYOR_PRICES__* variables)."""
        from conveyor.compute.cost import PriceTable

        return PriceTable.from_settings(self.settings)

    # -- objects with their index rows ------------------------------------------------------

    def put_object(
        self, data: bytes | Path, media_type: str = "application/octet-stream"
    ) -> StoredObject:
        """Store bytes or a file and index them; the row is written only after the bytes."""
        stored = (
            self.objects.put_file(data) if isinstance(data, Path) else self.objects.put_bytes(data)
        )
        with self.meta.write() as s:
            index_objects(s, [(stored.digest, stored.size)], media_type)
        return stored

    def get_object(self, digest: str) -> bytes:
        """Read an object's bytes, verified against its address."""
        return self.objects.get_bytes(digest)

    # -- health ----------------------------------------------------------------------------

    def status(self) -> list[PartStatus]:
        """Check each part; never raises for an unreachable part, reports it instead."""
        config = str(self.root / CONFIG_FILE) if self.root else "(explicit settings)"
        parts = [PartStatus("workspace", config, True, f"conveyor {__version__}")]
        try:
            self.meta.check()
            revision = self.meta.revision()
            with self.meta.read() as s:
                count, size = s.execute(
                    select(func.count(), func.coalesce(func.sum(ObjectRecord.size), 0))
                ).one()
            pending = "" if revision == self.meta.head() else " (upgraded on next use)"
            detail = f"schema {revision}{pending}, {count} objects indexed ({human_bytes(size)})"
            parts.append(PartStatus("metadata", self.meta.display_url, True, detail))
        except ConveyorError as e:
            parts.append(PartStatus("metadata", self.meta.display_url, False, str(e)))
        try:
            self.objects.check()
            parts.append(PartStatus("objects", self.objects.url, True, "reachable"))
        except ConveyorError as e:
            parts.append(PartStatus("objects", self.objects.url, False, str(e)))
        return parts

    def close(self) -> None:
        self.meta.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_root(path: str | Path | None = None) -> Path:
    """Where the workspace is: explicit path, then CONVEYOR_HOME, then up from the cwd."""
    if path is None and os.environ.get(HOME_ENV):
        path = os.environ[HOME_ENV]
        origin = f"{HOME_ENV}={path}"
    else:
        origin = str(path)
    if path is not None:
        root = Path(path).expanduser().resolve()
        if not (root / CONFIG_FILE).is_file():
            raise WorkspaceNotFoundError(
                f"no Conveyor workspace at {root} (from {origin})",
                f"create one with `conveyor init {path}` or fix the path",
            )
        return root
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise WorkspaceNotFoundError(
        f"no Conveyor workspace in {here} or any folder above it",
        f"run `conveyor init`, cd into a workspace, or set {HOME_ENV}",
    )


def _resolve_objects_url(url: str, base: Path) -> str:
    """Relative folder paths are relative to the workspace root."""
    if "://" in url:
        return url
    path = Path(url).expanduser()
    return str(path if path.is_absolute() else base / path)


def _write_config(path: Path, config: dict[str, Any]) -> None:
    """Write conveyor.toml atomically so a killed init never leaves half a file."""
    header = (
        "# Conveyor workspace. Settings: defaults < this file < CONVEYOR_* env < arguments.\n"
        "# See docs/architecture.md for every key.\n"
    )
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(header + tomli_w.dumps(config))
    tmp.replace(path)
