"""Shared by every drift contender: the synthetic tables, their planted shifts, the task loop.

Standard library + numpy only, and written for numpy 1.26 (alibi-detect's env) as well as
numpy 2.x (Conveyor's and Evidently's), so that each contender builds the same tables from
the same seeds in its own process. Only exact operations are applied to the random draws
(no exp or log, whose last bit may differ between numpy builds), and every task reports a
fingerprint of its first run's tables, which run.py compares across contenders.

A table with `k` columns has `max(2, k // 5)` categorical columns c0, c1, ... (strings to
the tools; integer codes here) and numeric columns x0, x1, ... (float64, NaN = missing):
x0 ~ N(0, 1); x1 ~ N(0, 1) with corr(x0, x1) = 0.7; x2 ~ N(2, 0.5^2); then, in turn,
normal (own location and scale), chi-square(1) (skewed), uniform(0, 10) and
floor(3 * chi-square(1)) (integer-valued, many ties). c0 has 5 categories
(40/25/15/12/8 %), the others 3 to 20 with Zipf-like frequencies.

The shifts are planted in the current window only:

  none       nothing changed (false alarms)
  mean       x0 + size (x0 is N(0, 1): size is in reference SDs)
  variance   x0 * size (the SD ratio)
  tail       a share `size` of x0 replaced by N(0, 5^2) draws
  catfreq    a share `size` of c0 moved from its commonest category to its rarest
  newcat     a share `size` of c0 becomes a category the reference never had
  missing    a share `size` of x2 set to NaN (the reference has none missing)
  corr       corr(x0, x1) from 0.7 to `size`, both marginals unchanged (N(0, 1))

Vector columns (one column "emb" of float32 vectors, `make_vectors`):

  emb-none    384-d sentence-embedding-like vectors, unchanged: 16 latent axes of sds
              1, 1/sqrt(2), ..., 1/4 along nearly orthogonal random +-1/sqrt(384)
              directions, plus N(0, 0.1^2) noise in every dimension
  emb-mean    the mean moved by `size` sds along the first (largest) latent axis
  img-none    16 x 16 grey images (256-d): a horizontal bar at a random height and a
              round blob near the top right, random brightness, N(0, 0.05^2) pixel noise
  img-rotate  every current image turned by `size` degrees (nearest pixel)
  img-noise   N(0, `size`^2) more pixel noise in every current image
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import statistics
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SEED = 20261204
RHO = 0.7  # corr(x0, x1) in the reference
SCENARIOS = ("none", "mean", "variance", "tail", "catfreq", "newcat", "missing", "corr")
VECTOR_SCENARIOS = ("emb-none", "emb-mean", "img-none", "img-rotate", "img-noise")
# The columns each scenario changes: the ones a tool should flag.
PLANTED = {
    "none": [],
    "mean": ["x0"],
    "variance": ["x0"],
    "tail": ["x0"],
    "catfreq": ["c0"],
    "newcat": ["c0"],
    "missing": ["x2"],
    "corr": ["x0", "x1"],
    **{name: ["emb"] if not name.endswith("none") else [] for name in VECTOR_SCENARIOS},
}
C0_PROBS = (0.40, 0.25, 0.15, 0.12, 0.08)


@dataclass
class Table:
    """One window: numeric columns as float64 arrays, categorical ones as int32 codes into
    `vocab[name]`, whose last entry is the category the reference never has."""

    n: int
    numeric: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    vocab: dict[str, list[str]]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def fingerprint(self) -> str:
        """A digest of 64 evenly spaced values of every column: any difference between
        two contenders' random streams changes it."""
        h = hashlib.blake2b(digest_size=8)
        at = np.linspace(0, self.n - 1, 64).astype(np.int64)
        for name, values in self.numeric.items():
            h.update(name.encode())
            h.update(np.ascontiguousarray(values[at], dtype="<f8").tobytes())
        for name, codes in self.categorical.items():
            h.update(name.encode())
            h.update(np.ascontiguousarray(codes[at], dtype="<i4").tobytes())
        return h.hexdigest()

    def strings(self, name: str) -> np.ndarray:
        """Categorical column `name` as a numpy object array of str."""
        return np.asarray(self.vocab[name], dtype=object)[self.categorical[name]]


def n_categorical(k: int) -> int:
    return max(2, k // 5)


def _cat_probs(j: int) -> np.ndarray:
    if j == 0:
        return np.asarray(C0_PROBS)
    size = 3 + (j * 7) % 18  # 3 to 20 categories, Zipf-like frequencies
    weights = 1.0 / (np.arange(size) + 1.0)
    return weights / weights.sum()


def vocabulary(k: int) -> dict[str, list[str]]:
    """Category names per categorical column, the unseen "new" one last."""
    out = {}
    for j in range(n_categorical(k)):
        size = len(_cat_probs(j))
        out[f"c{j}"] = [f"c{j}_v{r:02d}" for r in range(size)] + [f"c{j}_new"]
    return out


def _code(text: str) -> int:
    return zlib.crc32(text.encode())


def make_table(
    k: int, n: int, run: int, side: str, scenario: str = "none", size: float = 0.0, seed: int = 0
) -> Table:
    """The reference (`side="ref"`) or current (`side="cur"`) window of run `run`.

    The same arguments give the same table in every process and numpy version."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    rng = np.random.default_rng(
        [SEED, seed, k, n, run, _code(side), _code(scenario), _code(repr(float(size)))]
    )
    shift = scenario if side == "cur" else "none"
    numeric: dict[str, np.ndarray] = {}
    for i in range(k - n_categorical(k)):
        z = rng.standard_normal(n)
        if i == 0:
            values = z
        elif i == 1:
            rho = size if shift == "corr" else RHO
            values = rho * numeric["x0"] + np.sqrt(1.0 - rho * rho) * z
        elif i == 2:
            values = 2.0 + 0.5 * z
        elif i % 4 == 0:
            values = (0.5 + 0.1 * i) * z + i
        elif i % 4 == 1:
            values = z * z
        elif i % 4 == 2:
            values = 10.0 * rng.random(n)
        else:
            values = np.floor(3.0 * z * z)
        numeric[f"x{i}"] = values
    # x1 was built from the unshifted x0: a mean or scale change of x0 keeps corr(x0, x1).
    if shift == "mean":
        numeric["x0"] = numeric["x0"] + size
    elif shift == "variance":
        numeric["x0"] = numeric["x0"] * size
    elif shift == "tail":
        hit = rng.random(n) < size
        numeric["x0"] = numeric["x0"].copy()
        numeric["x0"][hit] = 5.0 * rng.standard_normal(int(hit.sum()))
    elif shift == "missing":
        hit = rng.random(n) < size
        numeric["x2"] = numeric["x2"].copy()
        numeric["x2"][hit] = np.nan
    categorical: dict[str, np.ndarray] = {}
    for j in range(n_categorical(k)):
        probs = _cat_probs(j).copy()
        if j == 0 and shift == "catfreq":
            probs[0] -= size
            probs[-1] += size
        if j == 0 and shift == "newcat":
            probs = np.append(probs * (1.0 - size), size)
        edges = np.cumsum(probs)
        edges[-1] = 1.0
        codes = np.searchsorted(edges, rng.random(n), side="right")
        categorical[f"c{j}"] = np.minimum(codes, len(probs) - 1).astype(np.int32)
    return Table(n=n, numeric=numeric, categorical=categorical, vocab=vocabulary(k))


@dataclass
class Vectors:
    """One window of one vector column, "emb": float32, rows x dims."""

    n: int
    values: np.ndarray

    columns = ("emb",)

    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=8)
        at = np.linspace(0, self.n - 1, 64).astype(np.int64)
        h.update(np.ascontiguousarray(self.values[at], dtype="<f4").tobytes())
        return h.hexdigest()


EMB_DIMS, EMB_RANK, EMB_NOISE = 384, 16, 0.1
IMG_SIDE, IMG_NOISE = 16, 0.05


def _emb_axes() -> tuple[np.ndarray, np.ndarray]:
    """The latent axes (+-1/sqrt(384) entries: unit length, nearly orthogonal) and sds."""
    rng = np.random.default_rng([SEED, EMB_DIMS, EMB_RANK])
    axes = (rng.integers(0, 2, size=(EMB_RANK, EMB_DIMS)) * 2 - 1) / np.sqrt(float(EMB_DIMS))
    sds = 1.0 / np.sqrt(np.arange(1, EMB_RANK + 1, dtype=np.float64))
    return axes, sds


def main_axis_sd() -> float:
    """The sd of the embeddings along their first latent axis (a shift of 1 moves this)."""
    return float(np.sqrt(1.0 + EMB_NOISE * EMB_NOISE))


def make_vectors(
    n: int, run: int, side: str, scenario: str, size: float = 0.0, seed: int = 0
) -> Vectors:
    """The reference or current window of a vector scenario; the same in every process
    and numpy version (elementwise operations only: no matrix product, exp or cos)."""
    if scenario not in VECTOR_SCENARIOS:
        raise ValueError(f"unknown vector scenario {scenario!r}")
    rng = np.random.default_rng(
        [SEED, seed, 1, n, run, _code(side), _code(scenario), _code(repr(float(size)))]
    )
    shift = scenario if side == "cur" else scenario.split("-")[0] + "-none"
    if scenario.startswith("emb"):
        axes, sds = _emb_axes()
        x = EMB_NOISE * rng.standard_normal((n, EMB_DIMS))
        latent = rng.standard_normal((n, EMB_RANK))
        for k in range(EMB_RANK):  # one axis at a time, in order: the same sums everywhere
            x += (latent[:, k] * sds[k])[:, None] * axes[k][None, :]
        if shift == "emb-mean":
            x += (size * main_axis_sd()) * axes[0]
        return Vectors(n, x.astype(np.float32))
    return Vectors(n, _images(rng, n, shift, size))


def _images(rng: np.random.Generator, n: int, shift: str, size: float) -> np.ndarray:
    side = IMG_SIDE
    y, x = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64))
    y, x = y.T.ravel(), x.T.ravel()  # pixel i is row y[i], column x[i]
    height = 8.0 + 1.5 * rng.standard_normal((n, 1))
    bar = np.maximum(0.0, 1.0 - ((y[None, :] - height) / 1.5) ** 2)
    bar *= ((x >= 3.0) & (x <= 12.0))[None, :]
    by = 4.0 + rng.standard_normal((n, 1))
    bx = 11.0 + rng.standard_normal((n, 1))
    r2 = ((y[None, :] - by) ** 2 + (x[None, :] - bx) ** 2) / 6.25
    blob = np.maximum(0.0, 1.0 - r2) ** 2
    brightness = 1.0 + 0.2 * rng.standard_normal((n, 1))
    images = brightness * (bar + blob) + IMG_NOISE * rng.standard_normal((n, side * side))
    if shift == "img-rotate":
        source = _rotation(size)
        images = np.where(source >= 0, images[:, np.maximum(source, 0)], 0.0)
    elif shift == "img-noise":
        images = images + size * rng.standard_normal((n, side * side))
    return images.astype(np.float32)


def _rotation(degrees: float) -> np.ndarray:
    """For each pixel of the turned image, the pixel it comes from (-1: outside)."""
    import math

    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    centre = (IMG_SIDE - 1) / 2
    out = np.full(IMG_SIDE * IMG_SIDE, -1, dtype=np.int64)
    for i in range(IMG_SIDE):
        for j in range(IMG_SIDE):
            dy, dx = i - centre, j - centre
            si, sj = round(centre + c * dy + s * dx), round(centre - s * dy + c * dx)
            if 0 <= si < IMG_SIDE and 0 <= sj < IMG_SIDE:
                out[i * IMG_SIDE + j] = si * IMG_SIDE + sj
    return out


# --- the contender side -----------------------------------------------------------------


Flag = tuple[bool, set[str]]  # (raised, the columns flagged)


class Contender(Protocol):
    """What a contender script gives run_tasks."""

    engine: str  # what ran: module or package and version
    variants: list[str]  # detectors run side by side on each pair ("" = the one)
    # and on vector columns (the embedding and image cases); a contender without it runs
    # one, "" (getattr in variants_of)

    def load(self, t: Table | Vectors, variants: list[str]) -> Any:
        """The table in the form the tool's users hold it (arrow, pandas, numpy), as
        much of it as `variants` need."""
        ...

    def build(self, ref: Any, variant: str) -> Any:
        """The precomputed reference side (the detector); untimed for rows/s."""
        ...

    def check(self, detector: Any, cur: Any, variant: str) -> dict[str, Flag]:
        """Check one window: every dataset-level flag the tool gives, whether it was
        raised, and the columns flagged."""
        ...

    def nbytes(self, data: Any) -> int:
        """The bytes a loaded table takes in the tool's form."""
        ...


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--plan", type=Path, required=True, help="JSON list of tasks")
    p.add_argument("--out", type=Path, required=True, help="JSON lines, one per task")
    return p.parse_args()


def rss_mb() -> float:
    """This process's resident set size now, MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


_EARLIER_PEAK = [0.0]


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5)."""
    _EARLIER_PEAK[0] = max(_EARLIER_PEAK[0], peak_mb())
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """Peak RSS since the process started or since the last reset_peak(), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_peak_mb() -> float:
    """Peak RSS over the whole life of this process so far, resets included, MB."""
    return max(_EARLIER_PEAK[0], peak_mb())


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_tasks(contender: Contender) -> None:
    """The contender's main loop: every task of --plan, one JSON line each into --out."""
    a = args()
    for task in json.loads(a.plan.read_text()):
        started = time.perf_counter()
        try:
            if task["kind"] == "stat":
                record = stat_task(task, contender)
            else:
                record = speed_task(task, contender)
        except Exception as exc:  # noqa: BLE001 (a failed task is a failed row, not a failed run)
            record = {**task, "error": f"{type(exc).__name__}: {exc}"[:500]}
        record["engine"] = contender.engine
        record["wall_s"] = time.perf_counter() - started
        with a.out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        brief = {k: v for k, v in record.items() if k not in ("results",)}
        print(json.dumps(brief)[:400], flush=True)


def stat_task(task: dict[str, Any], contender: Contender) -> dict[str, Any]:
    """`task["runs"]` runs of one configuration.

    Run i's tables depend only on i and the task, so the contenders' first r runs are
    the same tables whatever r each does. Each run records, per flag, whether it was
    raised and whether a changed column was among those flagged."""
    results: list[dict[str, Any]] = []
    fingerprint = ""
    tool_s = 0.0
    for run in range(int(task["runs"])):
        ref, cur = window(task, run, "ref"), window(task, run, "cur")
        if run == 0:
            fingerprint = ref.fingerprint() + cur.fingerprint()
        t0 = time.perf_counter()
        variants = variants_of(contender, task)
        ref_data, cur_data = contender.load(ref, variants), contender.load(cur, variants)
        flags: dict[str, bool] = {}
        planted: dict[str, bool] = {}
        for variant in variants:
            result = contender.check(contender.build(ref_data, variant), cur_data, variant)
            for name, (raised, columns) in result.items():
                flags[name] = raised
                planted[name] = planted_flagged(task, columns)
        tool_s += time.perf_counter() - t0
        results.append({"flags": flags, "planted": planted})
    return {**task, "fingerprint": fingerprint, "tool_s": tool_s, "results": results}


def speed_task(task: dict[str, Any], contender: Contender) -> dict[str, Any]:
    """Build the reference side once (build_s), then time `repeat` checks of one window.

    The tool's own reference input is dropped after the build (what a precomputed
    reference allows; a tool whose detector keeps it keeps it). Memory: RSS when the
    task starts (in a fresh process: the interpreter and the libraries), the current
    window's own size, RSS before the first check (the window and the detector held)
    and the peak during it."""
    n, variant = task["n"], task.get("variant", "")
    start = rss_mb()
    ref = contender.load(window(task, 0, "ref"), [variant])
    gc.collect()
    reset_peak()
    rss0 = rss_mb()
    detector, build_s = timed(contender.build, ref, variant)
    build_extra = peak_mb() - rss0
    del ref
    gc.collect()
    cur = contender.load(window(task, 0, "cur"), [variant])
    gc.collect()
    out: dict[str, Any] = {
        **task,
        "build_s": build_s,
        "build_extra_mb": build_extra,
        "start_mb": start,
        "window_mb": contender.nbytes(cur) / 2**20,
    }
    times, cpus = [], []
    for i in range(int(task.get("repeat", 1))):
        gc.collect()
        reset_peak()
        rss_before = rss_mb()
        cpu0 = cpu_s()
        result, seconds = timed(contender.check, detector, cur, variant)
        cpus.append(cpu_s() - cpu0)
        times.append(seconds)
        if i == 0:
            peak = peak_mb()
            out.update(
                rss_before_mb=rss_before,
                peak_check_mb=peak,
                check_extra_mb=peak - rss_before,
                flags={name: raised for name, (raised, _) in result.items()},
            )
        del result
    check_s = statistics.median(times)
    out.update(
        check_s=check_s,
        times=times,
        cpu_s=statistics.median(cpus),
        rows_per_s=n / check_s,
        process_peak_mb=process_peak_mb(),
    )
    return out


def window(task: dict[str, Any], run: int, side: str) -> Table | Vectors:
    """Run `run`'s reference or current window of a task: a table, or a vector column."""
    shift = (task["scenario"], task["size"], task.get("seed", 0))
    if task["scenario"] in VECTOR_SCENARIOS:
        return make_vectors(task["n"], run, side, *shift)
    return make_table(task["k"], task["n"], run, side, *shift)


def variants_of(contender: Contender, task: dict[str, Any]) -> list[str]:
    """The detectors a contender runs side by side on a task's pairs."""
    if task["scenario"] in VECTOR_SCENARIOS:
        return list(getattr(contender, "vector_variants", [""]))
    return contender.variants


def timed(fn: Any, *a: Any, **kw: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn(*a, **kw)
    return result, time.perf_counter() - t0


def planted_flagged(task: dict[str, Any], flagged: set[str]) -> bool:
    """Whether any column the task's scenario changed is among the flagged ones."""
    return any(name in flagged for name in PLANTED[task["scenario"]])
