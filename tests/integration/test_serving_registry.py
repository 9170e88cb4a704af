"""Serving from the registry: register a tiny model, serve NAME:production, promote v2.

Runs on both backends (SQLite + folder, PostgreSQL + S3): the server reads versions,
aliases and keys from the metadata store and the ONNX bytes from the object store.
"""

from __future__ import annotations

import threading
import time

import httpx
import torch

from conveyor import Client, Workspace
from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.signature import Signature, TensorSpec
from conveyor.serving.predictions import read_predictions
from tests.integration.serving_models import ServerProcess, random_rows

SIGNATURE = Signature(
    [TensorSpec("features", "float32", [None, 4])],
    [TensorSpec("logits", "float32", [None, 3])],
    ["setosa", "versicolor", "virginica"],
)
PREP = Preprocessing.tabular(["a", "b", "c", "d"], [0.0] * 4, [1.0] * 4)


def register(ws: Workspace, seed: int) -> int:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    mv = ws.models.register(
        "iris",
        signature=SIGNATURE,
        preprocessing=PREP,
        model=net.eval(),
        example_inputs=torch.randn(8, 4),
        metrics={"accuracy": 0.9},
    )
    return mv.number


def test_promoting_a_version_swaps_the_server_without_a_failed_request(
    workspace: Workspace,
) -> None:
    assert register(workspace, seed=0) == 1
    workspace.models.promote("iris@v1", to="production", reason="first")
    assert register(workspace, seed=1) == 2
    key = None
    from conveyor.serving.keys import Keys

    key = Keys(workspace.meta).create("tests", "predict").secret
    args = ["iris:production", "--log-flush", "0.5"]
    seen: list[int] = []
    failures: list[str] = []
    with ServerProcess(args, workspace=workspace.root) as proc:
        assert (
            httpx.post(f"{proc.url}/predict/iris", json={"rows": random_rows(1)}).status_code == 401
        )
        stop = threading.Event()

        def load() -> None:
            with Client(proc.url, api_key=key, retries=0) as client:
                while not stop.is_set() and len(seen) < 20_000:
                    try:
                        seen.append(client.predict("iris", rows=random_rows(2)).version)
                    except Exception as e:  # noqa: BLE001 - every failure is reported
                        failures.append(repr(e))

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            _wait_for(lambda: len(seen) > 30)
            workspace.models.promote("iris@v2", to="production", reason="better")
            _wait_for(lambda: seen[-10:] == [2] * 10)
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert failures == []
    assert seen[0] == 1 and seen[-1] == 2
    logged = read_predictions(workspace.meta, workspace.objects, "iris")
    assert set(logged.column("version").to_pylist()) == {1, 2}
    assert logged.num_rows == 2 * len(seen)


def _wait_for(condition: object, rounds: int = 600) -> None:
    for _ in range(rounds):
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def build_iris_net() -> torch.nn.Module:
    """The architecture `register` saved weights for (the module factory for PyTorch)."""
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def test_registry_versions_run_on_both_runtimes_with_verified_weights(
    workspace: Workspace,
) -> None:
    import numpy as np

    from conveyor.serving.registry_source import RegistrySource
    from conveyor.serving.runtime import load_runtime

    register(workspace, seed=0)
    source = RegistrySource(workspace, modules={"iris": build_iris_net})
    model = source.load("iris", source.resolve("iris", "latest"))
    assert model.ref == "iris@v1" and model.signature.labels[0] == "setosa"
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    onnx_out = load_runtime(model, "onnx").run(x)
    torch_out = load_runtime(model, "torch", device="cpu").run(x)
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=1e-5)
    without = RegistrySource(workspace).load("iris", 1)
    assert without.torch_module is None  # no factory, no TorchScript: ONNX only
