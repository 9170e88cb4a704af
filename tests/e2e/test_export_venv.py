"""An exported folder runs on a machine with only onnxruntime, numpy and Pillow: a clean
venv (made once per test session) with those three from PyPI, and no Conveyor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conveyor import Workspace
from conveyor.registry import Preprocessing, Signature, TensorSpec
from conveyor.training.recipes.image import SmallCNN
from tests.trainingdata import band_images


@pytest.fixture(scope="session")
def clean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.getbasetemp() / "export-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "onnxruntime", "numpy", "pillow"],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    return python


def test_exported_folders_run_in_a_venv_with_only_onnxruntime(
    tmp_path: Path, clean_python: Path
) -> None:
    images = band_images(tmp_path / "bands", 80)
    pre = Preprocessing.image("L", [8, 8])
    files = sorted(images.glob("c*/*.png"))
    x = torch.from_numpy(pre.apply([f.read_bytes() for f in files]))
    y = torch.tensor([int(f.parent.name[1]) for f in files])
    torch.manual_seed(0)
    model = SmallCNN(1, 4, width=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    ws = Workspace.init(tmp_path / "ws")
    ws.datasets.ingest(images, "bands", workers=1)
    signature = Signature(
        [TensorSpec("image", "float32", [None, 1, 8, 8])],
        [TensorSpec("logits", "float32", [None, 4])],
        ["c0", "c1", "c2", "c3"],
    )
    mv = ws.models.register(
        "bands", model=model.eval(), signature=signature, preprocessing=pre,
        datasets=["bands@v1"], example_inputs=x[:16],
    )  # fmt: skip
    picked = [sorted(images.glob(f"c{k}/*.png"))[0] for k in range(4)]
    for fmt in ("onnx", "onnx-int8"):
        out = tmp_path / fmt
        ws.models.export(mv.ref, fmt, out)
        result = subprocess.run(
            [str(clean_python), "-I", "run.py", *map(str, picked)],
            cwd=out, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        predictions = [json.loads(line) for line in result.stdout.splitlines()]
        assert [p["label"] for p in predictions] == ["c0", "c1", "c2", "c3"]
        assert abs(sum(predictions[0]["probabilities"].values()) - 1) < 1e-6
    ws.close()
    check = subprocess.run(
        [str(clean_python), "-c", "import conveyor"], capture_output=True, text=True
    )
    assert check.returncode != 0  # the venv really has no Conveyor
