"""`ws.models`: register versions, find them by number or alias, promote through gates.

`register` is the one place a version comes into being: its artifacts and manifest are
written to the object store first, then one metadata transaction adds the version row
and its lineage edges. Alias moves are in aliases.py, gate checks in gates.py.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from conveyor.core.errors import ConveyorError
from conveyor.registry import aliases as alias_ops
from conveyor.registry.gates import Gate, parse_gate, run_gate
from conveyor.registry.lineage import ModelUse, alias_map, lineage, used_by
from conveyor.registry.manifest import MEDIA_TYPE, DatasetLink, ModelManifest, RunLink
from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.records import (
    ApprovalRecord,
    GateRecord,
    GateResultRecord,
    ModelAliasRecord,
    ModelDatasetRecord,
    ModelRecord,
    ModelVersionRecord,
)
from conveyor.registry.references import backfill_reference, load_reference
from conveyor.registry.refs import ModelRef, check_alias, check_model_name, parse_model_ref
from conveyor.registry.register import build_artifacts, environment
from conveyor.registry.signature import Signature
from conveyor.registry.version import GateResult, ModelVersion
from conveyor.storage.tables import index_objects

if TYPE_CHECKING:
    import torch

    from conveyor.data.catalog import Datasets
    from conveyor.data.dataset import DatasetVersion
    from conveyor.data.reference import Reference
    from conveyor.registry.package import ExportReport
    from conveyor.registry.quantize import Mode
    from conveyor.storage.metadata import MetadataStore
    from conveyor.storage.objects import ObjectStore
    from conveyor.tracking.runs import Runs


class ModelNotFoundError(ConveyorError):
    """No model, version or alias by that name."""


class GateFailedError(ConveyorError):
    """A version failed a gate, so the alias did not move; the text names the check."""


@dataclass(frozen=True)
class VersionSummary:
    ref: str
    name: str
    number: int
    status: str
    metrics: dict[str, float]
    run_id: str | None
    aliases: list[str]
    created_by: str
    created_at: datetime


class Models:
    """The registered models of one workspace."""

    def __init__(
        self,
        meta: MetadataStore,
        objects: ObjectStore,
        datasets: Datasets,
        runs: Callable[[], Runs | None],
    ) -> None:
        self.meta, self.objects, self.datasets = meta, objects, datasets
        self._runs = runs

    # -- registering -----------------------------------------------------------------------

    def register(
        self,
        name: str,
        *,
        signature: Signature | dict[str, Any],
        preprocessing: Preprocessing | dict[str, Any],
        metrics: dict[str, float] | None = None,
        run_id: str | None = None,
        model: torch.nn.Module | None = None,
        onnx: bytes | str | Path | None = None,
        datasets: Sequence[str | DatasetVersion] = (),
        reference_profile: dict[str, Any] | None = None,
        example_inputs: Any = None,
        per_class: builtins.list[dict[str, Any]] | None = None,
        target: str | None = "label",
        description: str = "",
        tolerance: float = 1e-4,
    ) -> ModelVersion:
        """Register a new version of `name` from a torch module (exported to ONNX and
        checked against PyTorch on `example_inputs`) or from an ONNX file."""
        check_model_name(name)
        sig = signature if isinstance(signature, Signature) else Signature.from_dict(signature)
        pre = (
            preprocessing
            if isinstance(preprocessing, Preprocessing)
            else Preprocessing.from_dict(preprocessing)
        )
        figures = _metrics(metrics or {})
        links = [self._dataset_link(d) for d in datasets]
        run = self._run_link(run_id) if run_id else None
        artifacts, check = build_artifacts(
            self.objects, sig, model=model, onnx=onnx, example_inputs=example_inputs,
            reference_profile=reference_profile, tolerance=tolerance,
        )  # fmt: skip
        draft = ModelManifest(
            name=name, number=0, created_by=alias_ops.who(), artifacts=artifacts,
            signature=sig.to_dict(), preprocessing=pre.to_dict(), metrics=figures,
            per_class=per_class or [], target=target, datasets=links, run=run,
            environment=environment(), export_check=check, description=description,
        )  # fmt: skip
        for _attempt in range(5):
            try:
                return self._commit(draft)
            except IntegrityError:  # another process took that number first
                continue
        raise ConveyorError(f"could not register a version of {name}", "try again")

    def _commit(self, draft: ModelManifest) -> ModelVersion:
        with self.meta.read() as s:
            latest = s.scalar(
                select(func.max(ModelVersionRecord.number)).where(
                    ModelVersionRecord.model == draft.name
                )
            )
        manifest = draft.model_copy(update={"number": (latest or 0) + 1})
        stored = self.objects.put_bytes(manifest.to_json())
        with self.meta.write() as s:
            if s.get(ModelRecord, manifest.name) is None:
                s.add(ModelRecord(name=manifest.name))
                s.flush()
            record = ModelVersionRecord(
                model=manifest.name, number=manifest.number, manifest=stored.digest,
                run_id=manifest.run.id if manifest.run else None, status="ready",
                metrics=json.dumps(manifest.metrics), created_by=manifest.created_by,
            )  # fmt: skip
            s.add(record)
            s.flush()
            seen = set()
            for link in manifest.datasets:
                dataset, _, number = link.ref.partition("@v")
                if (dataset, number) not in seen:
                    seen.add((dataset, number))
                    s.add(ModelDatasetRecord(
                        version_id=record.id, dataset=dataset, dataset_version=int(number),
                        role=link.role,
                    ))  # fmt: skip
            index_objects(
                s,
                [(a.digest, a.size) for a in manifest.artifacts.values()],
                "application/octet-stream",
            )
            index_objects(s, [(stored.digest, stored.size)], MEDIA_TYPE)
        return ModelVersion(self.objects, manifest, stored.digest)

    def _dataset_link(self, spec: str | DatasetVersion) -> DatasetLink:
        version = self.datasets.get(spec) if isinstance(spec, str) else spec
        return DatasetLink(
            ref=version.ref, manifest=version.digest, shards=[s.digest for s in version.shards()]
        )

    def _run_link(self, run_id: str) -> RunLink:
        runs = self._runs()
        if runs is None:
            return RunLink(id=run_id)
        info = runs.get(run_id)
        return RunLink(
            id=info.id, name=info.name, experiment=info.experiment, git_commit=info.git_commit,
            user=info.user, host=info.host, params=dict(info.params),
        )  # fmt: skip

    # -- reading ---------------------------------------------------------------------------

    def get(self, spec: str | ModelRef) -> ModelVersion:
        """`digits@v3`, `digits@production`, `digits:production`, `digits@latest`, `digits`."""
        ref = parse_model_ref(spec) if isinstance(spec, str) else spec
        with self.meta.read() as s:
            record = self._record(s, ref)
        return self._load(record)

    def resolve(self, name: str, alias: str = "latest") -> int:
        """The version number an alias (or `latest`, or `vN`) points at now; cheap."""
        with self.meta.read() as s:
            return self._record(s, parse_model_ref(f"{name}@{alias}")).number

    def _record(self, s: Any, ref: ModelRef) -> ModelVersionRecord:
        query = select(ModelVersionRecord).where(ModelVersionRecord.model == ref.name)
        if ref.alias is not None:
            alias = alias_ops.current(s, ref.name, ref.alias)
            if alias is None:
                raise self._not_found(s, ref, f"{ref.name} has no alias {ref.alias!r}")
            query = query.where(ModelVersionRecord.number == alias.number)
        elif ref.number is not None:
            query = query.where(ModelVersionRecord.number == ref.number)
        else:
            query = query.order_by(
                (ModelVersionRecord.status == "ready").desc(), ModelVersionRecord.number.desc()
            ).limit(1)
        record = s.scalars(query).first()
        if record is None:
            raise self._not_found(s, ref, f"no model version {ref}")
        return record  # type: ignore[no-any-return]

    def _load(self, record: ModelVersionRecord) -> ModelVersion:
        manifest = ModelManifest.from_json(self.objects.get_bytes(record.manifest))
        return ModelVersion(self.objects, manifest, record.manifest, record.status)

    def _not_found(self, s: Any, ref: ModelRef, message: str) -> ModelNotFoundError:
        names = s.scalars(select(ModelRecord.name).order_by(ModelRecord.name)).all()
        if ref.name in names:
            hint = f"see `conveyor models show {ref.name}` for its versions and aliases"
        elif names:
            hint = f"models: {', '.join(names)}"
        else:
            hint = "register one with `conveyor train ...` or ws.models.register(...)"
        return ModelNotFoundError(message, hint)

    def drift_reference(self, spec: str | ModelVersion) -> tuple[Reference | None, str]:
        """The version's drift reference, and why there is none. A version registered
        before references existed gets one now, from its lineage's training data."""
        mv = self.get(spec) if isinstance(spec, str) else spec
        found = load_reference(self.meta, self.objects, mv)
        if found is not None:
            return found, ""
        return backfill_reference(self.meta, self.objects, self.datasets, mv)

    def list(self, name: str | None = None) -> builtins.list[VersionSummary]:
        """Every version (of one model, or of all), newest first within each model."""
        with self.meta.read() as s:
            query = select(ModelVersionRecord)
            if name is not None:
                check_model_name(name)
                query = query.where(ModelVersionRecord.model == name)
            records = s.scalars(
                query.order_by(ModelVersionRecord.model, ModelVersionRecord.number.desc())
            ).all()
            if name is not None and not records:
                raise self._not_found(s, ModelRef(name), f"no model {name!r}")
            pointers = alias_map(s)
        return [_summary(r, pointers.get((r.model, r.number), [])) for r in records]

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version number, for one model."""
        with self.meta.read() as s:
            rows = s.scalars(select(ModelAliasRecord).where(ModelAliasRecord.model == name))
            return {r.alias: r.number for r in rows}

    def alias_history(
        self, name: str, alias: str | None = None
    ) -> builtins.list[alias_ops.AliasMove]:
        """Every move of the model's aliases (or of one), oldest first."""
        with self.meta.read() as s:
            return alias_ops.history(s, check_model_name(name), alias)

    def used_by(self, dataset: str) -> builtins.list[ModelUse]:
        """Model versions built on a dataset version (`NAME@vN`; `NAME` for any version)."""
        with self.meta.read() as s:
            return used_by(s, dataset)

    def lineage(self, spec: str) -> dict[str, Any]:
        """Run, dataset versions (with their history and shards), code commit, environment."""
        return lineage(self.get(spec), self.datasets)

    def export(
        self,
        spec: str,
        fmt: str,
        out: str | Path,
        data: str | None = None,
        split: str | None = None,
        mode: Mode | None = None,
    ) -> ExportReport:
        """A folder that runs with only onnxruntime (see package.py); int8 is evaluated
        and calibrated on `data` (default: the model's dataset, its test or val split)."""
        from conveyor.registry.package import export_folder

        mv = self.get(spec)
        version = self.datasets.get(data or mv.datasets[0]) if (data or mv.datasets) else None
        if version is not None and split is None:
            found = version.manifest.splits()
            split = next((x for x in ("test", "val", "validation") if x in found), None)
        return export_folder(mv, fmt, Path(out), version, split, mode)

    # -- gates and approvals ---------------------------------------------------------------

    def set_gate(self, name: str, spec: str | Path | dict[str, Any] | Gate) -> Gate:
        """Define (or replace) the gate `name`; a gate named like an alias guards it."""
        gate = parse_gate(spec)
        check_alias(name)
        with self.meta.write() as s:
            record = s.get(GateRecord, name)
            if record is None:
                s.add(
                    GateRecord(name=name, spec=gate.model_dump_json(), updated_by=alias_ops.who())
                )
            else:
                record.spec, record.updated_by = gate.model_dump_json(), alias_ops.who()
        return gate

    def gate(self, name: str) -> Gate | None:
        with self.meta.read() as s:
            record = s.get(GateRecord, name)
        return Gate.model_validate_json(record.spec) if record else None

    def gates(self) -> dict[str, Gate]:
        with self.meta.read() as s:
            return {r.name: Gate.model_validate_json(r.spec) for r in s.scalars(select(GateRecord))}

    def check_gate(self, spec: str, gate: str, alias: str | None = None) -> GateResult:
        """Evaluate gate `gate` on a version (against `alias`'s holder), store the result."""
        mv = self.get(spec)
        definition = self.gate(gate)
        if definition is None:
            raise ModelNotFoundError(
                f"no gate {gate!r}", "define it with `conveyor models gate set`"
            )
        checks = run_gate(gate, definition, mv, _Context(self, mv.name), alias or gate)
        passed = all(c["passed"] for c in checks)
        with self.meta.write() as s:
            row = GateResultRecord(
                version_id=self._version_id(s, mv), gate=gate, passed=passed,
                checks=json.dumps(checks), evaluated_by=alias_ops.who(),
            )  # fmt: skip
            s.add(row)
            s.flush()
            return _gate_result(row)

    def gate_results(self, spec: str) -> builtins.list[GateResult]:
        mv = self.get(spec)
        with self.meta.read() as s:
            rows = s.scalars(
                select(GateResultRecord)
                .where(GateResultRecord.version_id == self._version_id(s, mv))
                .order_by(GateResultRecord.id)
            ).all()
        return [_gate_result(r) for r in rows]

    def approve(self, spec: str, note: str = "") -> int:
        """Record the current user's approval of a version; returns its approval count."""
        mv = self.get(spec)
        user = alias_ops.who()
        with self.meta.write() as s:
            version_id = self._version_id(s, mv)
            existing = s.scalar(
                select(ApprovalRecord).where(
                    ApprovalRecord.version_id == version_id, ApprovalRecord.approved_by == user
                )
            )
            if existing is None:
                s.add(ApprovalRecord(version_id=version_id, approved_by=user, note=note))
            else:
                existing.note = note
        return self.approvals(mv)

    def approvals(self, mv: ModelVersion) -> int:
        with self.meta.read() as s:
            return int(
                s.scalar(
                    select(func.count()).where(ApprovalRecord.version_id == self._version_id(s, mv))
                )
                or 0
            )

    def _version_id(self, s: Any, mv: ModelVersion) -> int:
        return int(
            s.scalar(
                select(ModelVersionRecord.id).where(
                    ModelVersionRecord.model == mv.name, ModelVersionRecord.number == mv.number
                )
            )
        )

    # -- moving aliases --------------------------------------------------------------------

    def promote(
        self, spec: str, to: str, reason: str = "", gate: str | None = None
    ) -> alias_ops.AliasMove:
        """Point alias `to` at a version, after it passes `gate` (default: the gate named
        like the alias, if one is defined). Refuses, naming the check, when it fails."""
        check_alias(to)
        mv = self.get(spec)
        if mv.status == "archived":
            raise ConveyorError(f"{mv.ref} is archived", "promote a version that is not archived")
        with self.meta.read() as s:
            now = alias_ops.current(s, mv.name, to)
            expected = (now.number, now.revision) if now else None
            gate_name = gate or (to if s.get(GateRecord, to) is not None else None)
        if gate is not None and self.gate(gate) is None:
            raise ModelNotFoundError(
                f"no gate {gate!r}", "define it with `conveyor models gate set`"
            )
        if gate_name is not None:
            result = self.check_gate(mv.ref, gate_name, alias=to)
            if not result.passed:
                failed = "; ".join(f"{c['check']} ({c['message']})" for c in result.failed)
                raise GateFailedError(
                    f"{mv.ref} failed gate {gate_name!r}: {failed}",
                    f"see `conveyor models show {mv.ref}`; fix the model or the gate",
                )
        return alias_ops.move(
            self.meta, mv.name, to, mv.number, expected=expected, reason=reason, gate=gate_name
        )

    def archive(self, spec: str) -> ModelVersion:
        """Mark a version archived: kept, but no longer `latest` or promotable."""
        mv = self.get(spec)
        with self.meta.write() as s:
            pointing = [
                r.alias
                for r in s.scalars(
                    select(ModelAliasRecord).where(ModelAliasRecord.model == mv.name)
                )
                if r.number == mv.number
            ]
            if pointing:
                raise ConveyorError(
                    f"{mv.ref} is held by alias {', '.join(pointing)}",
                    "promote another version to it first",
                )
            record = s.scalars(
                select(ModelVersionRecord).where(
                    ModelVersionRecord.model == mv.name, ModelVersionRecord.number == mv.number
                )
            ).one()
            record.status = "archived"
        mv.status = "archived"
        return mv


class _Context:
    """What gate checks ask the registry for."""

    def __init__(self, models: Models, name: str) -> None:
        self.models, self.name = models, name

    def dataset(self, spec: str) -> Any:
        return self.models.datasets.get(spec)

    def holder(self, alias: str) -> ModelVersion | None:
        try:
            return self.models.get(ModelRef(self.name, alias=alias))
        except ModelNotFoundError:
            return None

    def approvals(self, mv: ModelVersion) -> int:
        return self.models.approvals(mv)


def _metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise ConveyorError(
                f"metric {key!r} is {value!r}, not a number", "pass numbers"
            ) from None
    return out


def _summary(r: ModelVersionRecord, pointers: builtins.list[str]) -> VersionSummary:
    return VersionSummary(
        ref=f"{r.model}@v{r.number}", name=r.model, number=r.number, status=r.status,
        metrics=json.loads(r.metrics), run_id=r.run_id, aliases=pointers,
        created_by=r.created_by, created_at=r.created_at,
    )  # fmt: skip


def _gate_result(r: GateResultRecord) -> GateResult:
    return GateResult(r.gate, r.passed, json.loads(r.checks), r.evaluated_by, r.evaluated_at)
