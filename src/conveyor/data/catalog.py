"""`ws.datasets`: find, list, compare and create dataset versions.

`commit` is the one place a version comes into being: the manifest object is written
first, then a single metadata transaction adds the version row, its lineage edges and
the object index rows. A process killed before that commit leaves no visible version.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from conveyor.core.errors import ConveyorError
from conveyor.data.dataset import DatasetVersion, LineageStep
from conveyor.data.manifest import MEDIA_TYPE, Manifest, Parent
from conveyor.data.records import DatasetParentRecord, DatasetRecord, DatasetVersionRecord
from conveyor.data.refs import VersionRef, check_name, parse_ref
from conveyor.data.shards import SHARD_MEDIA_TYPE
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore
from conveyor.storage.tables import index_objects

if TYPE_CHECKING:
    from conveyor.data.checks import CheckReport
    from conveyor.data.diff import DatasetDiff
    from conveyor.data.ingest import IngestResult
    from conveyor.data.prepare import Preparer

Progress = Callable[[int, int | None], None]


class DatasetNotFoundError(ConveyorError):
    """No dataset or version by that name."""


@dataclass(frozen=True)
class VersionSummary:
    ref: str
    name: str
    version: int
    rows: int
    bytes: int
    operation: str
    created_at: datetime
    manifest: str


class Datasets:
    """The datasets of one workspace."""

    def __init__(self, meta: MetadataStore, objects: ObjectStore) -> None:
        self.meta = meta
        self.objects = objects

    # -- reading ---------------------------------------------------------------------------

    def get(self, spec: str | VersionRef) -> DatasetVersion:
        """`digits`, `digits@latest` or `digits@v3`."""
        ref = parse_ref(spec) if isinstance(spec, str) else spec
        with self.meta.read() as s:
            query = select(DatasetVersionRecord).where(DatasetVersionRecord.dataset == ref.name)
            if ref.version is None:
                query = query.order_by(DatasetVersionRecord.version.desc()).limit(1)
            else:
                query = query.where(DatasetVersionRecord.version == ref.version)
            record = s.scalars(query).first()
        if record is None:
            raise self._not_found(ref)
        return self._load(record.manifest)

    def exists(self, name: str) -> bool:
        with self.meta.read() as s:
            return s.get(DatasetRecord, check_name(name)) is not None

    def list(self) -> builtins.list[VersionSummary]:
        """The latest version of every dataset."""
        with self.meta.read() as s:
            latest = (
                select(DatasetVersionRecord.dataset, func.max(DatasetVersionRecord.version))
                .group_by(DatasetVersionRecord.dataset)
                .subquery()
            )
            records = s.scalars(
                select(DatasetVersionRecord)
                .join(
                    latest,
                    (DatasetVersionRecord.dataset == latest.c[0])
                    & (DatasetVersionRecord.version == latest.c[1]),
                )
                .order_by(DatasetVersionRecord.dataset)
            ).all()
        return [_summary(r) for r in records]

    def log(self, name: str) -> builtins.list[VersionSummary]:
        """Every version of one dataset, newest first."""
        check_name(name)
        with self.meta.read() as s:
            records = s.scalars(
                select(DatasetVersionRecord)
                .where(DatasetVersionRecord.dataset == name)
                .order_by(DatasetVersionRecord.version.desc())
            ).all()
        if not records:
            raise self._not_found(VersionRef(name))
        return [_summary(r) for r in records]

    def lineage(self, version: DatasetVersion) -> builtins.list[LineageStep]:
        steps, seen, todo = [], set(), [version]
        while todo:
            current = todo.pop(0)
            if current.ref in seen:
                continue
            seen.add(current.ref)
            m = current.manifest
            parents = [f"{p.name}@v{p.version}" for p in m.parents]
            steps.append(
                LineageStep(current.ref, m.operation.name, m.operation.params, parents, m.rows)
            )
            todo.extend(self._load(p.manifest) for p in m.parents)
        return steps

    def _load(self, digest: str) -> DatasetVersion:
        return DatasetVersion(self, Manifest.from_json(self.objects.get_bytes(digest)), digest)

    def _not_found(self, ref: VersionRef) -> DatasetNotFoundError:
        names = [v.name for v in self.list()]
        hint = (
            f"datasets: {', '.join(names)}" if names else "ingest one with `conveyor data ingest`"
        )
        if ref.version is not None and ref.name in names:
            hint = f"see `conveyor data log {ref.name}` for its versions"
        return DatasetNotFoundError(f"no dataset version {ref}", hint)

    # -- creating --------------------------------------------------------------------------

    def ingest(
        self,
        source: str | Path,
        name: str,
        *,
        shard_bytes: int | None = None,
        workers: int | None = None,
        storage_options: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> IngestResult:
        """Ingest a folder of files or a CSV/JSONL/Parquet table as a new version."""
        from conveyor.data.ingest import ingest

        if storage_options is None and str(source).startswith(f"{self.objects.protocol}://"):
            storage_options = self.objects.options  # same service: same endpoint and options
        return ingest(
            self,
            str(source),
            name,
            shard_bytes=shard_bytes,
            workers=workers,
            storage_options=storage_options,
            progress=progress,
        )

    def prepare(self, workers: int | None = None) -> Preparer:
        """Prepare operations (dedupe, fill, drop_missing, filter, split, map)."""
        from conveyor.data.prepare import Preparer

        return Preparer(self, workers)

    def dedupe(
        self, spec: str, near: bool = False, max_distance: int = 4, into: str | None = None
    ) -> DatasetVersion:
        return self.prepare().dedupe(self.get(spec), near, max_distance, into)

    def fill(
        self,
        spec: str,
        columns: builtins.list[str],
        strategy: str = "median",
        value: Any = None,
        into: str | None = None,
    ) -> DatasetVersion:
        return self.prepare().fill(self.get(spec), columns, strategy, value, into)

    def drop_missing(
        self, spec: str, columns: builtins.list[str] | None = None, into: str | None = None
    ) -> DatasetVersion:
        return self.prepare().drop_missing(self.get(spec), columns, into)

    def filter(self, spec: str, expression: str, into: str | None = None) -> DatasetVersion:
        return self.prepare().filter(self.get(spec), expression, into)

    def split(
        self,
        spec: str,
        fractions: dict[str, float],
        seed: int = 0,
        stratify: str | None = None,
        into: str | None = None,
    ) -> DatasetVersion:
        return self.prepare().split(self.get(spec), fractions, seed, stratify, into)

    def map(
        self,
        spec: str,
        fn: str | Callable[..., Any],
        batch_size: int = 1024,
        into: str | None = None,
    ) -> DatasetVersion:
        return self.prepare().map(self.get(spec), fn, batch_size, into)

    def check(self, spec: str, rules: str | Path) -> CheckReport:
        """Evaluate quality rules (a YAML file, see RULES.md) on a version's statistics."""
        from conveyor.data.checks import load_rules, run_checks

        manifest = self.get(spec).manifest.model_dump(mode="json", by_alias=True)
        return run_checks(manifest, load_rules(Path(rules)))

    def diff(self, a: str, b: str) -> DatasetDiff:
        from conveyor.data.diff import diff_versions

        return diff_versions(self.get(a), self.get(b))

    def export(
        self, spec: str, out: str | Path, fmt: str = "parquet", split: str | None = None
    ) -> builtins.list[Path]:
        from conveyor.data.export import export_version

        return export_version(self.get(spec), Path(out), fmt, split)  # type: ignore[arg-type]

    def commit(self, draft: Manifest, parents: builtins.list[DatasetVersion]) -> DatasetVersion:
        """Give `draft` the next version number of its dataset and make it visible."""
        check_name(draft.name)
        draft.parents = [Parent(name=p.name, version=p.version, manifest=p.digest) for p in parents]
        if self.exists(draft.name):
            latest = self.get(draft.name)
            if _same_content(latest.manifest, draft):  # the same command run again
                return latest
        for _attempt in range(5):
            try:
                return self._commit_once(draft, parents)
            except IntegrityError:  # another process took that version number first
                continue
        raise ConveyorError(f"could not commit a version of {draft.name}", "try again")

    def _commit_once(
        self, draft: Manifest, parents: builtins.list[DatasetVersion]
    ) -> DatasetVersion:
        with self.meta.read() as s:
            latest = s.scalar(
                select(func.max(DatasetVersionRecord.version)).where(
                    DatasetVersionRecord.dataset == draft.name
                )
            )
        manifest = draft.model_copy(update={"version": (latest or 0) + 1})
        stored = self.objects.put_bytes(manifest.to_json())
        with self.meta.write() as s:
            if s.get(DatasetRecord, draft.name) is None:
                s.add(DatasetRecord(name=draft.name))
                s.flush()
            record = DatasetVersionRecord(
                dataset=manifest.name,
                version=manifest.version,
                manifest=stored.digest,
                rows=manifest.rows,
                bytes=manifest.bytes,
                operation=manifest.operation.name,
            )
            s.add(record)
            s.flush()
            parent_ids = s.scalars(
                select(DatasetVersionRecord.id).where(
                    DatasetVersionRecord.manifest.in_([p.digest for p in parents])
                )
            ).all()
            s.add_all(DatasetParentRecord(child_id=record.id, parent_id=i) for i in parent_ids)
            index_objects(s, [(sh.digest, sh.bytes) for sh in manifest.shards], SHARD_MEDIA_TYPE)
            index_objects(s, [(stored.digest, stored.size)], MEDIA_TYPE)
        return DatasetVersion(self, manifest, stored.digest)


def _same_content(a: Manifest, b: Manifest) -> bool:
    """Same rows, schema, operation and parents: committing again would add nothing."""
    return (
        [s.digest for s in a.shards] == [s.digest for s in b.shards]
        and a.arrow_schema == b.arrow_schema
        and a.operation == b.operation
        and a.parents == b.parents
    )


def _summary(r: DatasetVersionRecord) -> VersionSummary:
    return VersionSummary(
        ref=f"{r.dataset}@v{r.version}",
        name=r.dataset,
        version=r.version,
        rows=r.rows,
        bytes=r.bytes,
        operation=r.operation,
        created_at=r.created_at,
        manifest=r.manifest,
    )
