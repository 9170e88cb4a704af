"""What this machine can run: CPU cores, GPUs (by index and model) and memory.

GPUs are found without importing torch (seconds, and a CUDA context): through NVML
when `nvidia-ml-py` is installed, else `nvidia-smi`, else torch only if some other
code already imported it. `CUDA_VISIBLE_DEVICES` narrows what the worker may hand out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]


@dataclass(frozen=True)
class Capacity:
    """Resources an executor offers: cores, GPUs (model names by index), megabytes."""

    cpus: float
    gpus: dict[int, str] = field(default_factory=dict)
    memory_mb: int = 0

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    def describe(self) -> str:
        gpus = f"{self.gpu_count} GPU" + ("" if self.gpu_count == 1 else "s")
        return f"{self.cpus:g} cpus, {gpus}, {self.memory_mb:,} MB"


def local_capacity() -> Capacity:
    """This machine's cores (the ones this process may use), GPUs and memory."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    memory_mb = psutil.virtual_memory().total // 2**20
    return Capacity(float(cpus), _visible(local_gpus()), int(memory_mb))


def local_gpus() -> dict[int, str]:
    """GPU index -> model name, from NVML, nvidia-smi or an already-imported torch."""
    for probe in (_nvml_gpus, _smi_gpus, _torch_gpus):
        found = probe()
        if found is not None:
            return found
    return {}


def _nvml_gpus() -> dict[int, str] | None:
    try:
        import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            return {
                i: str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                for i in range(count)
            }
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver: fall through to the next probe
        return None


def _smi_gpus() -> dict[int, str] | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus: dict[int, str] = {}
    for line in out.splitlines():
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            gpus[int(index)] = name.strip()
    return gpus


def _torch_gpus() -> dict[int, str] | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    count = int(torch.cuda.device_count())
    return {i: str(torch.cuda.get_device_name(i)) for i in range(count)}


def _visible(gpus: dict[int, str]) -> dict[int, str]:
    """Only the GPUs CUDA_VISIBLE_DEVICES lets this worker use (numeric lists)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    wanted = [int(v) for v in visible.split(",") if v.strip().isdigit()]
    return {i: gpus[i] for i in wanted if i in gpus}
