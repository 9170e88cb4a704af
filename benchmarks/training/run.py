"""Trainer overhead: the same model and data through a bare PyTorch loop and through
Conveyor's `fit` with tracking (ws.runs) and asynchronous checkpoints on.

    .venv/bin/python benchmarks/training/run.py [--quick]

Data: CIFAR-like synthetic images (32x32 RGB, 10 classes, class-tinted noise), ingested
once into a workspace under benchmarks/.data/training/. Both contenders read it with the
same Conveyor loader (batch 64, shuffled, 0 workers) and train the image recipe's
SmallCNN with AdamW from the same seed for the same number of steps; rounds alternate
bare / Conveyor so machine noise hits both. Writes benchmarks/training/results.md
(results-quick.md with --quick). Full: 3 rounds of ~30 s each per contender.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".data" / "training"
sys.path.insert(0, str(HERE.parents[1] / "src"))

from conveyor import Workspace  # noqa: E402
from conveyor.core.logs import configure_logging  # noqa: E402
from conveyor.training import CheckpointStore, fit, seed_everything  # noqa: E402
from conveyor.training.recipes.image import SmallCNN  # noqa: E402

BATCH = 64
CLASSES = 10


def make_images(root: Path, count: int) -> None:
    """Class k: noise tinted with the k-th hue, so a small CNN learns something real."""
    rng = random.Random(0)
    for i in range(count):
        label = i % CLASSES
        tint = ((label * 37) % 256, (label * 91) % 256, (label * 53) % 256)
        pixels = bytes(
            min(255, (rng.randrange(0, 160) + tint[c]) // 2 + 40)
            for _ in range(32 * 32)
            for c in range(3)
        )
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.frombytes("RGB", (32, 32), pixels).save(folder / f"{i:06d}.png")


def workspace(count: int) -> Workspace:
    root = DATA / f"ws-{count}"
    if (root / "conveyor.toml").exists():
        return Workspace.open(root)
    images = DATA / f"images-{count}"
    if not images.exists():
        print(f"generating {count} images in {images}", flush=True)
        make_images(images, count)
    ws = Workspace.init(root)
    ws.datasets.ingest(images, "synthetic")
    return ws


def loader(ws: Workspace) -> Any:
    version = ws.datasets.get("synthetic")
    return version.loader(
        BATCH, seed=0, columns=["image", "label"], image_layout="CHW", image_mode="RGB"
    )


def model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    seed_everything(0)
    model = SmallCNN(3, CLASSES)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def bare(ws: Workspace, steps: int) -> float:
    """The loop a user writes by hand; returns steps/s."""
    model, optimizer = model_and_optimizer()
    batches = loader(ws)
    model.train()
    done = 0
    started = time.perf_counter()
    while done < steps:
        for batch in batches:
            images = batch["image"].float() / 255
            loss = torch.nn.functional.cross_entropy(model(images), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return steps / (time.perf_counter() - started)


def conveyor(ws: Workspace, steps: int, every: int, round_: int) -> tuple[float, list[float]]:
    """fit() with ws.runs tracking and checkpoints every `every` steps; steps/s and waits."""
    model, optimizer = model_and_optimizer()
    run = ws.runs.start(name=f"bench-{round_}", experiment="benchmark-training")
    started = time.perf_counter()
    result = fit(
        model,
        loader(ws),
        optimizer=optimizer,
        run=run,
        workspace=ws,
        epochs=None,
        max_steps=steps,
        checkpoint_every=every,
        log_every=10,
        device="cpu",
    )
    elapsed = time.perf_counter() - started  # includes start-up, the last checkpoint, run.end
    return steps / elapsed, result.checkpoint_waits


def blocking_checkpoint(ws: Workspace) -> float:
    """What one checkpoint would cost a step if it were written synchronously (seconds)."""
    model, optimizer = model_and_optimizer()
    images = torch.rand(8, 3, 32, 32)
    torch.nn.functional.cross_entropy(model(images), torch.zeros(8, dtype=torch.int64)).backward()
    optimizer.step()
    from conveyor.training.snapshot import Snapshot, capture_model, capture_optimizer, capture_rng

    store = CheckpointStore.of(ws)
    times = []
    for i in range(5):
        started = time.perf_counter()
        plain, tensors = capture_optimizer(optimizer)
        rng, rng_tensors = capture_rng()
        state = {"step": i, "optimizer": plain, "rng": rng, "nonce": time.time()}
        snap = Snapshot(capture_model(model), {**tensors, **rng_tensors}, state)
        store.save(f"blocking-{os.getpid()}", snap)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def calibrate(ws: Workspace, seconds: float) -> int:
    rate = bare(ws, 30)
    return max(50, int(rate * seconds) // 10 * 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, ~6 s per contender")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    # one thread by default: on a shared 2-core machine, spinning OpenMP threads make
    # step times swing by 10x with whatever else runs, which would drown a 3% difference
    torch.set_num_threads(args.threads)
    configure_logging("warning")  # the trainer's info lines would interleave with the table
    count, seconds, rounds = (2_000, 3.0, 3) if args.quick else (10_000, 30.0, 3)
    DATA.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with workspace(count) as ws:
        for _ in loader(ws):  # warm up: shards verified, decoder loaded, caches filled
            pass
        steps = calibrate(ws, seconds)
        every = max(10, steps // 8)
        print(f"{steps} steps per contender, checkpoint every {every}", flush=True)
        rates: dict[str, list[float]] = {"bare": [], "conveyor": []}
        waits: list[float] = []
        for r in range(rounds):
            rates["bare"].append(bare(ws, steps))
            rate, w = conveyor(ws, steps, every, r)
            rates["conveyor"].append(rate)
            waits += w
            print(f"round {r + 1}: bare {rates['bare'][-1]:.1f} steps/s, "
                  f"conveyor {rate:.1f} steps/s", flush=True)  # fmt: skip
        sync = blocking_checkpoint(ws)
        params = sum(p.numel() for p in SmallCNN(3, CLASSES).parameters())
    load_after = os.getloadavg()
    ratios = [c / b for b, c in zip(rates["bare"], rates["conveyor"], strict=True)]
    ratio = statistics.median(ratios)
    lines = [
        f"# Training benchmark ({'quick' if args.quick else 'full'})",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        "",
        f"SmallCNN ({params:,} parameters) on {count:,} synthetic 32x32 RGB images, batch "
        f"{BATCH}, AdamW, {steps} steps per contender and round, {rounds} alternating rounds "
        f"(~{seconds * rounds:.0f} s per contender). Conveyor: "
        f"`fit` with `ws.runs` tracking (metrics every 10 steps) and a checkpoint every "
        f"{every} steps plus one at the end (model + AdamW state, safetensors).",
        "",
        "| contender | steps/s per round | mean |",
        "|---|---|--:|",
        f"| bare PyTorch loop | {', '.join(f'{x:.1f}' for x in rates['bare'])} | "
        f"{statistics.mean(rates['bare']):.1f} |",
        f"| Conveyor fit + tracking + checkpoints | "
        f"{', '.join(f'{x:.1f}' for x in rates['conveyor'])} | "
        f"{statistics.mean(rates['conveyor']):.1f} |",
        "",
        f"**Ratio Conveyor / bare (median of rounds): {ratio:.3f}** (per round: "
        f"{', '.join(f'{x:.3f}' for x in ratios)}; goal 0.97 or better).",
        "",
        f"Time a step waited for a checkpoint ({len(waits)} checkpoints): mean "
        f"{statistics.mean(waits) * 1000:.2f} ms, max {max(waits) * 1000:.2f} ms. "
        f"The same checkpoint written synchronously (copy, serialise, upload, ref): "
        f"{sync * 1000:.1f} ms.",
        "",
        "Command: `.venv/bin/python benchmarks/training/run.py"
        + (" --quick`" if args.quick else "`"),
        "",
    ]
    out = HERE / ("results-quick.md" if args.quick else "results.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
