"""Small models for the serving tests: torch MLPs and a CNN exported to ONNX, and a
folder-backed `ModelSource` the server's worker processes can open by import path.

Folder layout (made by `write_model`): ROOT/NAME/vN/{model.onnx,meta.json} and
ROOT/aliases.json ({"NAME": {"production": N}}), so a test moves an alias by rewriting
one file, as `models promote` moves a registry alias.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.core.errors import ServingError
from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.signature import Signature, TensorSpec
from conveyor.serving.source import ModelRef, ServedModel

ROOT_ENV = "CONVEYOR_TEST_MODELS"


def mlp_onnx(
    inputs: int = 4, classes: int = 3, seed: int = 0, fail_on_negative: bool = False
) -> bytes:
    """A tiny torch MLP exported to ONNX (legacy exporter: no onnxscript needed)."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(inputs, 16), torch.nn.ReLU(), torch.nn.Linear(16, classes)
    ).eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (torch.zeros(1, inputs),),
        buffer,
        input_names=["features"],
        output_names=["logits"],
        dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    return buffer.getvalue()


def tabular_model(
    name: str, version: int, seed: int = 0, columns: list[str] | None = None
) -> ServedModel:
    cols = columns or ["a", "b", "c", "d"]
    data = mlp_onnx(len(cols), 3, seed)
    return ServedModel(
        name=name,
        version=version,
        signature=Signature(
            [TensorSpec("features", "float32", [None, len(cols)])],
            [TensorSpec("logits", "float32", [None, 3])],
            ["setosa", "versicolor", "virginica"],
        ),
        preprocessing=Preprocessing.tabular(cols, [0.0] * len(cols), [1.0] * len(cols)),
        onnx=lambda: data,
    )


def write_model(root: Path, model: ServedModel, alias: str | None = "production") -> None:
    folder = root / model.name / f"v{model.version}"
    folder.mkdir(parents=True, exist_ok=True)
    assert model.onnx is not None
    (folder / "model.onnx").write_bytes(model.onnx())
    meta = {"signature": model.signature.to_dict(), "preprocessing": model.preprocessing.to_dict()}
    (folder / "meta.json").write_text(json.dumps(meta))
    if alias:
        move_alias(root, model.name, alias, model.version)


def move_alias(root: Path, name: str, alias: str, version: int) -> None:
    path = root / "aliases.json"
    aliases: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    aliases.setdefault(name, {})[alias] = version
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(aliases))
    tmp.replace(path)


class FolderSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def load(self, name: str, version: int) -> ServedModel:
        folder = self.root / name / f"v{version}"
        if not folder.is_dir():
            raise ServingError(f"no model {name}@v{version}", "write it first")
        meta = json.loads((folder / "meta.json").read_text())
        data = (folder / "model.onnx").read_bytes()
        return ServedModel(
            name,
            version,
            Signature.from_dict(meta["signature"]),
            Preprocessing.from_dict(meta["preprocessing"]),
            onnx=lambda: data,
        )

    def resolve(self, name: str, selector: str) -> int:
        pinned = ModelRef(name, selector).pinned
        if pinned is not None:
            return pinned
        aliases = json.loads((self.root / "aliases.json").read_text())
        try:
            return int(aliases[name][selector])
        except KeyError:
            raise ServingError(f"{name} has no alias {selector}", "promote one") from None


def folder_source() -> FolderSource:
    """The import-path factory worker processes call (`--source ...:folder_source`)."""
    return FolderSource(Path(os.environ[ROOT_ENV]))


def random_rows(n: int, width: int = 4, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(n, width)).round(4).tolist()  # type: ignore[no-any-return]


# -- a real server in a subprocess ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
SOURCE = "tests.integration.serving_models:folder_source"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`conveyor serve ...` in its own process group on a free loopback port."""

    def __init__(
        self,
        args: list[str],
        *,
        workspace: Path | None = None,
        models_root: Path | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 90.0,
    ) -> None:
        import subprocess
        import sys
        import tempfile

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "conveyor"]
        if workspace is not None:
            command += ["--workspace", str(workspace)]
        command += ["serve", *args, "--port", str(self.port), "--poll", "0.2"]
        full_env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            **(env or {}),
        }
        if models_root is not None:
            full_env[ROOT_ENV] = str(models_root)
        self.log = Path(tempfile.mkstemp(prefix="conveyor-serve-", suffix=".log")[1])
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            command,
            env=full_env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text()[-5000:]

    def stop(self) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._out.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)
