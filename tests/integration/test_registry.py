"""The registry on real stores: register, find, promote through gates, export, lineage.

One tiny CNN is trained per module (in memory, a second or two) and registered into
each test's workspace; the data are the trainer tests' band images.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conveyor import Workspace
from conveyor.core.errors import ConveyorError, ObjectCorruptedError
from conveyor.registry import Preprocessing, Signature, TensorSpec
from conveyor.registry.aliases import AliasMovedError, move
from conveyor.registry.models import GateFailedError
from conveyor.registry.onnx_export import ExportError
from conveyor.training.recipes.image import SmallCNN
from tests.conftest import Backends
from tests.trainingdata import band_images

PRE = Preprocessing.image("L", [8, 8])
SIGNATURE = Signature(
    inputs=[TensorSpec("image", "float32", [None, 1, 8, 8])],
    outputs=[TensorSpec("logits", "float32", [None, 4])],
    labels=["c0", "c1", "c2", "c3"],
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return band_images(tmp_path_factory.mktemp("bands") / "imgs", 120)


@pytest.fixture(scope="module")
def trained(images: Path) -> tuple[torch.nn.Module, np.ndarray]:
    """A SmallCNN that has learnt the bands, and 32 preprocessed held-out inputs."""
    torch.manual_seed(0)
    files = sorted(images.glob("c*/*.png"))
    x = torch.from_numpy(PRE.apply([f.read_bytes() for f in files]))
    y = torch.tensor([int(f.parent.name[1]) for f in files])
    model = SmallCNN(1, 4, width=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval(), x[:32].numpy()


def _data(ws: Workspace, images: Path) -> str:
    ws.datasets.ingest(images, "bands", workers=1)
    ws.datasets.split("bands@v1", {"train": 0.7, "test": 0.3}, seed=0, stratify="label")
    return "bands@v2"


def _register(ws: Workspace, trained: Any, data: str, **kwargs: Any) -> Any:
    model, example = trained
    args: dict[str, Any] = {
        "model": model, "signature": SIGNATURE, "preprocessing": PRE,
        "metrics": {"accuracy": 0.97}, "datasets": [data], "example_inputs": example,
    }  # fmt: skip
    args.update(kwargs)
    return ws.models.register("bands", **args)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.init(tmp_path / "ws")
    yield workspace
    workspace.close()


def test_register_find_promote_and_trace_on_each_backend(
    workspace: Workspace, backends: Backends, images: Path, trained: Any
) -> None:
    data = _data(workspace, images)
    with workspace.runs.start(name="cnn") as run:
        run_id = run.id
    first = _register(workspace, trained, data, run_id=run_id)
    second = _register(workspace, trained, data, metrics={"accuracy": 0.99})
    assert (first.ref, second.ref) == ("bands@v1", "bands@v2")
    models = workspace.models
    assert models.get("bands@latest").number == 2 and models.get("bands").number == 2
    assert models.get("bands@v1").run_id == run_id
    models.promote("bands@v1", to="production", reason="first release")
    models.promote("bands@v2", to="production", reason="better")
    assert models.resolve("bands", "production") == 2
    assert models.get("bands:production").ref == "bands@v2"
    history = models.alias_history("bands")
    assert [(m.from_number, m.to_number, m.reason) for m in history] == [
        (None, 1, "first release"),
        (1, 2, "better"),
    ]
    mv = models.get("bands@production")
    assert mv.signature == SIGNATURE and mv.preprocessing == PRE
    assert mv.reference_profile == {} and mv.metrics == {"accuracy": 0.99}
    assert mv.manifest.export_check is not None and mv.manifest.export_check.max_abs_diff < 1e-4
    lineage = models.lineage("bands@v1")
    assert lineage["run"]["id"] == run_id and lineage["datasets"][0]["ref"] == data
    assert lineage["datasets"][0]["shards"] == [
        s.digest for s in workspace.datasets.get(data).shards()
    ]
    assert [u.model for u in models.used_by(data)] == ["bands@v1", "bands@v2"]
    assert models.used_by("bands@v1") == []


def test_the_registered_onnx_model_predicts_what_pytorch_does(
    ws: Workspace, images: Path, trained: Any
) -> None:
    import onnxruntime as ort

    model, example = trained
    mv = _register(ws, trained, _data(ws, images))
    sess = ort.InferenceSession(mv.onnx_bytes(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": example})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(example)).numpy()
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_artifacts_are_verified_by_hash_on_load(ws: Workspace, trained: Any, images: Path) -> None:
    mv = _register(ws, trained, _data(ws, images))
    digest = mv.manifest.artifacts["model.onnx"].digest
    path = Path(ws.objects.path_of(digest))
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ObjectCorruptedError, match="corrupt"):
        ws.models.get("bands@v1").onnx_bytes()
    assert len(ws.models.get("bands@v1").artifact("weights.safetensors")) > 0


def test_an_export_that_does_not_match_pytorch_is_refused(ws: Workspace, trained: Any) -> None:
    with pytest.raises(ExportError, match="differ from PyTorch"):
        _register(ws, trained, data=None, datasets=[], tolerance=0.0)
    assert ws.models.list() == []


def test_register_from_an_onnx_file_checks_the_signature(
    ws: Workspace, trained: Any, images: Path, tmp_path: Path
) -> None:
    data = _data(ws, images)
    onnx = _register(ws, trained, data).onnx_bytes()
    (tmp_path / "m.onnx").write_bytes(onnx)
    mv = ws.models.register(
        "bands", onnx=tmp_path / "m.onnx", signature=SIGNATURE, preprocessing=PRE.to_dict()
    )
    assert mv.onnx_bytes() == onnx and "weights.safetensors" not in mv.artifacts
    wrong = Signature([TensorSpec("pixels", "float32", [None, 1, 8, 8])], SIGNATURE.outputs)
    with pytest.raises(ConveyorError, match="signature says"):
        ws.models.register("bands", onnx=onnx, signature=wrong, preprocessing=PRE)


def test_gates_guard_promotion_and_say_which_check_failed(
    ws: Workspace, trained: Any, images: Path
) -> None:
    data = _data(ws, images)
    mv = _register(ws, trained, data)
    ws.models.set_gate("edge", {"checks": [{"kind": "latency", "p99_ms": 0.000001}]})
    with pytest.raises(GateFailedError, match=r"failed gate 'edge': latency p99 <= 1e-06 ms"):
        ws.models.promote(mv.ref, to="edge")
    assert ws.models.aliases("bands") == {}
    ws.models.set_gate(
        "production",
        {
            "data": data,
            "checks": [
                {"kind": "metric", "metric": "accuracy", "min": 0.9},
                {"kind": "per_class", "min": 0.5},
                {"kind": "per_slice", "column": "label", "min": 0.5},
                {"kind": "no_regression", "metric": "accuracy", "margin": 0.0},
                {"kind": "latency", "p99_ms": 10_000},
                {"kind": "size", "max_mb": 5},
                {"kind": "approval"},
            ],
        },
    )
    with pytest.raises(GateFailedError, match=r"1 approval\(s\)"):
        ws.models.promote(mv.ref, to="production")
    ws.models.approve(mv.ref, note="looked at the confusion matrix")
    moved = ws.models.promote(mv.ref, to="production", reason="approved")
    assert moved.gate == "production" and ws.models.resolve("bands", "production") == 1
    results = ws.models.gate_results(mv.ref)
    assert [(r.gate, r.passed) for r in results] == [
        ("edge", False), ("production", False), ("production", True),
    ]  # fmt: skip
    latency = next(c for c in results[-1].checks if c["kind"] == "latency")
    assert latency["passed"]  # the measured p50/p99 are figures for benchmarks, not tests
    accuracy = next(c for c in results[-1].checks if c["kind"] == "metric")
    assert (
        accuracy["measured"]["accuracy"] >= 0.9 and accuracy["measured"]["data"] == f"{data} (test)"
    )
    # a worse challenger regresses against the holder
    worse = SmallCNN(1, 4, width=8).eval()
    challenger = _register(ws, (worse, trained[1]), data)
    ws.models.approve(challenger.ref)
    with pytest.raises(GateFailedError, match="no accuracy regression"):
        ws.models.promote(challenger.ref, to="production")
    assert ws.models.resolve("bands", "production") == 1


def test_concurrent_promotes_never_corrupt_the_alias(
    ws: Workspace, trained: Any, images: Path
) -> None:
    data = _data(ws, images)
    numbers = [_register(ws, trained, data).number for _ in range(4)]
    ws.models.promote("bands@v1", to="production")
    with pytest.raises(AliasMovedError, match="moved by someone else"):
        move(ws.meta, "bands", "production", 2, expected=(0, 0), reason="stale", gate=None)
    errors: list[Exception] = []

    def promote(number: int) -> None:
        other = Workspace.open(ws.root)
        try:
            for _ in range(3):
                try:
                    other.models.promote(f"bands@v{number}", to="production", reason=str(number))
                except AliasMovedError as e:
                    errors.append(e)
        finally:
            other.close()

    threads = [threading.Thread(target=promote, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = ws.models.alias_history("bands", "production")
    assert len(history) + len(errors) == 1 + 3 * len(numbers)
    for before, after in itertools.pairwise(history):
        assert after.from_number == before.to_number  # an unbroken chain of moves
    assert ws.models.resolve("bands", "production") == history[-1].to_number


def test_archive_keeps_a_version_out_of_latest_and_promotion(
    ws: Workspace, trained: Any, images: Path
) -> None:
    data = _data(ws, images)
    _register(ws, trained, data)
    _register(ws, trained, data)
    ws.models.promote("bands@v1", to="production")
    with pytest.raises(ConveyorError, match="held by alias production"):
        ws.models.archive("bands@v1")
    ws.models.archive("bands@v2")
    assert ws.models.get("bands").number == 1
    with pytest.raises(ConveyorError, match="archived"):
        ws.models.promote("bands@v2", to="staging")


def test_export_runs_with_the_same_preprocessing_and_int8_reports_its_cost(
    ws: Workspace, trained: Any, images: Path, tmp_path: Path
) -> None:
    mv = _register(ws, trained, _data(ws, images))
    report = ws.models.export(mv.ref, "onnx", tmp_path / "fp32")
    assert {"model.onnx", "run.py", "preprocessing.py", "signature.json"} <= set(report.files)
    image = sorted(images.glob("c2/*.png"))[0]
    out = subprocess.run(
        [sys.executable, str(tmp_path / "fp32" / "run.py"), str(image)],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert '"label": "c2"' in out.stdout
    int8 = ws.models.export(mv.ref, "onnx-int8", tmp_path / "int8")
    assert int8.quantization == "static" and int8.size_ratio is not None
    assert int8.size_ratio < 0.5
    assert int8.accuracy_change is not None and abs(int8.accuracy_change) <= 0.1
    assert int8.speedup is not None and int8.speedup > 0
    dynamic = ws.models.export(mv.ref, "onnx-int8", tmp_path / "dyn", mode="dynamic")
    assert (
        dynamic.quantization == "dynamic"
        and dynamic.int8["size_bytes"] < dynamic.fp32["size_bytes"]
    )
    with pytest.raises(ConveyorError, match="not empty"):
        ws.models.export(mv.ref, "onnx", tmp_path / "fp32")


def test_unknown_refs_name_what_exists(ws: Workspace, trained: Any, images: Path) -> None:
    _register(ws, trained, _data(ws, images))
    with pytest.raises(ConveyorError, match="has no alias 'production'"):
        ws.models.get("bands@production")
    with pytest.raises(ConveyorError, match="models: bands"):
        ws.models.get("digits@v1")


def test_a_version_registered_without_a_drift_reference_gets_one_from_its_training_data(
    ws: Workspace, trained: Any, images: Path
) -> None:
    from conveyor.registry.records import DriftReferenceRecord
    from conveyor.registry.watched import embedder

    mv = _register(ws, trained, _data(ws, images))
    reference, why = ws.models.drift_reference(mv)
    assert reference is not None, why
    assert reference.rows == ws.datasets.get("bands@v2").manifest.splits()["train"]
    assert reference.source == "bands@v2 (train)"
    assert {"pixel_mean", "pixel_std", "predicted", "confidence"} <= set(reference.columns)
    assert set(reference.columns["predicted"].counts) <= set(SIGNATURE.labels)
    # stored: asked again, it is read back, not rebuilt
    again, _ = ws.models.drift_reference(mv.ref)
    assert again is not None and again.to_dict() == reference.to_dict()
    with ws.meta.read() as s:
        assert s.query(DriftReferenceRecord).count() == 1
    # the embedding is the model's own: the input of its last Linear layer, as PyTorch has it
    model, example = trained
    seen: list[torch.Tensor] = []
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    hook = last.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    with torch.no_grad():
        model(torch.from_numpy(example))
    hook.remove()
    _, onnx_embedding = embedder(mv.onnx_bytes()).run(example)
    assert onnx_embedding is not None
    np.testing.assert_allclose(onnx_embedding, seen[0].flatten(1).numpy(), atol=1e-4)
