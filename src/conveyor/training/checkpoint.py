"""Checkpoints in the workspace object store (spec: CHECKPOINT.md beside this file).

A checkpoint is three content-addressed objects (model.safetensors, state.safetensors,
trainer JSON) and a manifest object naming them, then a small ref file per step under
`checkpoints/<run id>/` that points at the manifest. The ref is written last and
atomically, so a process killed at any moment leaves either the previous latest
checkpoint or the new one, never half of one. Nothing read back is unpickled.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from conveyor.core.errors import CheckpointError, CheckpointNotFoundError
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore
from conveyor.storage.tables import index_objects
from conveyor.training.snapshot import Snapshot

FORMAT = "conveyor-checkpoint/1"
MANIFEST_MEDIA_TYPE = "application/vnd.conveyor.checkpoint+json"
SAFETENSORS = "application/vnd.safetensors"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class HasStores(Protocol):
    """What the trainer needs from a Workspace: its object store and metadata index."""

    @property
    def objects(self) -> ObjectStore: ...

    @property
    def meta(self) -> MetadataStore: ...


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint of a run: where its manifest is and what it holds."""

    run_id: str
    step: int
    epoch: int
    manifest: str  # sha256 of the manifest object
    created_at: str
    metadata: dict[str, Any]
    objects: dict[str, dict[str, Any]]


class CheckpointStore:
    """Writes, lists and reads the checkpoints of runs."""

    def __init__(self, objects: ObjectStore, meta: MetadataStore | None = None) -> None:
        self.objects = objects
        self.meta = meta

    @classmethod
    def of(cls, workspace: HasStores) -> CheckpointStore:
        return cls(workspace.objects, workspace.meta)

    # -- writing ---------------------------------------------------------------------------

    def save(
        self, run_id: str, snapshot: Snapshot, metadata: dict[str, Any] | None = None
    ) -> CheckpointInfo:
        """Write a snapshot as the checkpoint of `run_id` at its step (once per step)."""
        check_run_id(run_id)
        text = {"conveyor": "checkpoint", "run_id": run_id, "step": str(snapshot.step)}
        parts = {
            "model": (save_safetensors(snapshot.model, metadata=text), SAFETENSORS),
            "state": (save_safetensors(snapshot.tensors, metadata=text), SAFETENSORS),
            "trainer": (_json(snapshot.state), "application/json"),
        }
        stored: dict[str, dict[str, Any]] = {}
        for name, (data, media_type) in parts.items():
            obj = self.objects.put_bytes(data)
            stored[name] = {"digest": obj.digest, "size": obj.size, "media_type": media_type}
        manifest = {
            "format": FORMAT,
            "run_id": run_id,
            "step": snapshot.step,
            "epoch": int(snapshot.state.get("epoch", 0)),
            "created_at": datetime.now(UTC).isoformat(),
            "objects": stored,
            "metadata": metadata or {},
        }
        head = self.objects.put_bytes(_json(manifest))
        self._index([*((o["digest"], o["size"], o["media_type"]) for o in stored.values())])
        self._index([(head.digest, head.size, MANIFEST_MEDIA_TYPE)])
        self._write_ref(run_id, snapshot.step, head.digest)
        return _info(manifest, head.digest)

    def _index(self, rows: list[tuple[str, int, str]]) -> None:
        if self.meta is None:
            return
        with self.meta.write() as s:
            for digest, size, media_type in rows:
                index_objects(s, [(digest, size)], media_type)

    def _write_ref(self, run_id: str, step: int, manifest: str) -> None:
        """Refs are write-once: a step checkpointed twice (resume, then preempt) keeps the first."""
        data = _json({"manifest": manifest, "step": step})
        target = f"{self._ref_dir(run_id)}/{step:012d}.json"
        with self.objects._translate("write to"):
            if self.objects.is_local:
                final = Path(target)
                if final.exists():
                    return
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(self.objects.root) / "tmp" / f"{uuid.uuid4().hex}.part"
                tmp.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with tmp.open("wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    tmp.replace(final)
                finally:
                    tmp.unlink(missing_ok=True)
            elif not self.objects.fs.exists(target):
                self.objects.fs.pipe_file(target, data)  # one PUT: whole or absent

    # -- reading ---------------------------------------------------------------------------

    def steps(self, run_id: str) -> list[int]:
        """The steps of `run_id` that have a checkpoint, in order."""
        check_run_id(run_id)
        folder = self._ref_dir(run_id)
        with self.objects._translate("list"):
            try:
                names = (
                    [p.name for p in Path(folder).glob("*.json")]
                    if self.objects.is_local
                    else [n.rsplit("/", 1)[-1] for n in self.objects.fs.ls(folder, detail=False)]
                )
            except FileNotFoundError:
                return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def latest(self, run_id: str) -> CheckpointInfo | None:
        """The newest checkpoint of a run, or None when it has none."""
        steps = self.steps(run_id)
        return self.at(run_id, steps[-1]) if steps else None

    def at(self, run_id: str, step: int) -> CheckpointInfo:
        target = f"{self._ref_dir(run_id)}/{step:012d}.json"
        try:
            with self.objects._translate("read from"):
                ref = json.loads(self.objects.fs.cat_file(target))
        except FileNotFoundError as e:
            raise CheckpointNotFoundError(
                f"run {run_id} has no checkpoint at step {step}",
                f"steps with one: {self.steps(run_id) or 'none'}",
            ) from e
        return self.info(ref["manifest"])

    def info(self, manifest: str) -> CheckpointInfo:
        """A checkpoint by its manifest address."""
        data = json.loads(self.objects.get_bytes(manifest))
        if data.get("format") != FORMAT:
            raise CheckpointError(
                f"object {manifest[:12]}… is not a Conveyor checkpoint manifest",
                f"expected format {FORMAT}",
            )
        return _info(data, manifest)

    def load(self, info: CheckpointInfo) -> Snapshot:
        """The snapshot a checkpoint holds; tensors via safetensors, the rest JSON."""
        return Snapshot(
            model=self.load_weights(info),
            tensors=load_safetensors(self.objects.get_bytes(info.objects["state"]["digest"])),
            state=json.loads(self.objects.get_bytes(info.objects["trainer"]["digest"])),
        )

    def load_weights(self, info: CheckpointInfo) -> dict[str, torch.Tensor]:
        """Only the model's tensors (for evaluation, export or the registry)."""
        return load_safetensors(self.objects.get_bytes(info.objects["model"]["digest"]))

    def _ref_dir(self, run_id: str) -> str:
        return f"{self.objects.root}/checkpoints/{run_id}"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise CheckpointError(
            f"run id {run_id!r} cannot name a checkpoint folder",
            "use letters, digits, '.', '_' and '-' (at most 128, not starting with '.')",
        )
    return run_id


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _info(manifest: dict[str, Any], digest: str) -> CheckpointInfo:
    try:
        return CheckpointInfo(
            run_id=manifest["run_id"],
            step=int(manifest["step"]),
            epoch=int(manifest["epoch"]),
            manifest=digest,
            created_at=manifest["created_at"],
            metadata=dict(manifest.get("metadata") or {}),
            objects=dict(manifest["objects"]),
        )
    except KeyError as e:
        raise CheckpointError(
            f"checkpoint manifest {digest[:12]}… lacks the field {e}",
            "it was not written by Conveyor",
        ) from e
