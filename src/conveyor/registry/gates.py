"""Gates: named sets of checks a version must pass before an alias moves to it.

A gate is YAML (or the same as a dict) validated here:

    data: digits@v3          # where metric checks evaluate (default: the model's data)
    split: test              # default: test, val or validation if the data has one
    checks:
      - {kind: metric, metric: accuracy, min: 0.9}
      - {kind: no_regression, metric: accuracy, margin: 0.01}   # vs the alias's holder
      - {kind: per_class, metric: accuracy, min: 0.8}
      - {kind: per_slice, column: source, metric: accuracy, min: 0.8}
      - {kind: latency, p99_ms: 20}        # measured here with ONNX Runtime, batch of 1
      - {kind: size, max_mb: 5}
      - {kind: approval, min_approvals: 1}  # `conveyor models approve`

Metric checks run the version's ONNX model with ONNX Runtime on this machine, so the
figures are what serving will see. Each check's result says what was measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conveyor.core.errors import ConveyorError
from conveyor.registry import bench
from conveyor.registry.evaluate import Evaluation, batches, evaluate
from conveyor.registry.version import ModelVersion

Metric = Literal["accuracy", "f1_macro", "loss"]
_LOWER_IS_BETTER = {"loss"}


class GateSpecError(ConveyorError):
    """A gate file or dict that does not describe a gate; the text names the field."""


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: str | None = None
    split: str | None = None


class MetricCheck(_Check):
    kind: Literal["metric"]
    metric: Metric = "accuracy"
    min: float | None = None
    max: float | None = None


class RegressionCheck(_Check):
    kind: Literal["no_regression"]
    metric: Metric = "accuracy"
    margin: float = 0.0


class PerClassCheck(_Check):
    kind: Literal["per_class"]
    metric: Literal["accuracy", "f1"] = "accuracy"
    min: float


class PerSliceCheck(_Check):
    kind: Literal["per_slice"]
    column: str
    metric: Literal["accuracy"] = "accuracy"
    min: float


class LatencyCheck(_Check):
    kind: Literal["latency"]
    p50_ms: float | None = None
    p99_ms: float | None = None
    runs: int = Field(300, ge=10, le=100_000)


class SizeCheck(_Check):
    kind: Literal["size"]
    max_mb: float


class ApprovalCheck(_Check):
    kind: Literal["approval"]
    min_approvals: int = Field(1, ge=1)


Check = Annotated[
    MetricCheck | RegressionCheck | PerClassCheck | PerSliceCheck | LatencyCheck | SizeCheck
    | ApprovalCheck,
    Field(discriminator="kind"),
]  # fmt: skip


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: str | None = None
    split: str | None = None
    checks: list[Check] = Field(min_length=1)


def parse_gate(source: str | Path | dict[str, Any] | Gate) -> Gate:
    """A gate from a YAML file path, a dict or a Gate; errors name the bad field."""
    if isinstance(source, Gate):
        return source
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise GateSpecError(f"no gate file {path}", "write the checks in a YAML file first")
        try:
            source = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise GateSpecError(f"{path} is not valid YAML ({e})", "fix the file") from e
    if not isinstance(source, dict):
        raise GateSpecError(
            "a gate is a mapping with a `checks:` list", "see `conveyor models gate --help`"
        )
    try:
        return Gate.model_validate(source)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GateSpecError(
            f"gate field {where}: {first['msg']}",
            "see the gate format in `conveyor models gate set --help`",
        ) from None


class GateContext(Protocol):
    """What checks need from the registry."""

    def dataset(self, spec: str) -> Any: ...

    def holder(self, alias: str) -> ModelVersion | None: ...

    def approvals(self, mv: ModelVersion) -> int: ...


@dataclass
class _Run:
    """One gate evaluation: caches evaluations so checks on the same data share them."""

    mv: ModelVersion
    gate: Gate
    context: GateContext
    alias: str | None
    cache: dict[tuple[str, str, str | None, str | None], Evaluation] = field(default_factory=dict)

    def data(self, check: _Check, mv: ModelVersion) -> tuple[Any, str | None]:
        spec = check.data or self.gate.data or (mv.datasets[0] if mv.datasets else None)
        if spec is None:
            raise GateSpecError(
                f"{mv.ref} records no dataset to evaluate on", "give the gate `data: NAME@vN`"
            )
        version = self.context.dataset(spec)
        split = check.split or self.gate.split
        if split is None:
            found = version.manifest.splits()
            split = next((s for s in ("test", "val", "validation") if s in found), None)
        return version, split

    def evaluation(
        self, check: _Check, mv: ModelVersion, slice_column: str | None = None
    ) -> Evaluation:
        version, split = self.data(check, mv)
        key = (mv.ref, version.ref, split, slice_column)
        if key not in self.cache:
            self.cache[key] = evaluate(mv, version, split, slice_column=slice_column)
        return self.cache[key]


def run_gate(
    name: str, gate: Gate, mv: ModelVersion, context: GateContext, alias: str | None
) -> list[dict[str, Any]]:
    """Every check's result: {"check", "kind", "passed", "measured", "message"}."""
    state = _Run(mv, gate, context, alias)
    results = []
    for check in gate.checks:
        handler = _HANDLERS[check.kind]
        passed, measured, message = handler(state, check)
        results.append(
            {
                "check": describe(check),
                "kind": check.kind,
                "passed": passed,
                "measured": measured,
                "message": message,
            }
        )
    return results


def describe(check: _Check) -> str:
    """A short human name for a check, used in results and errors."""
    match check:
        case MetricCheck():
            bounds = [
                f">= {check.min:g}" if check.min is not None else "",
                f"<= {check.max:g}" if check.max is not None else "",
            ]
            return f"{check.metric} {' and '.join(b for b in bounds if b)}".strip()
        case RegressionCheck():
            return f"no {check.metric} regression beyond {check.margin:g}"
        case PerClassCheck():
            return f"per-class {check.metric} >= {check.min:g}"
        case PerSliceCheck():
            return f"{check.metric} >= {check.min:g} on every {check.column} slice"
        case LatencyCheck():
            parts = [
                f"p50 <= {check.p50_ms:g} ms" if check.p50_ms is not None else "",
                f"p99 <= {check.p99_ms:g} ms" if check.p99_ms is not None else "",
            ]
            return "latency " + " and ".join(p for p in parts if p)
        case SizeCheck():
            return f"size <= {check.max_mb:g} MB"
        case ApprovalCheck():
            return f"{check.min_approvals} approval(s)"
    return check.__class__.__name__


Outcome = tuple[bool, dict[str, Any], str]


def _metric(state: _Run, check: Any) -> Outcome:
    result = state.evaluation(check, state.mv)
    value = result.metrics[check.metric]
    ok = (check.min is None or value >= check.min) and (check.max is None or value <= check.max)
    return (
        ok,
        {check.metric: value, "data": result.data, "rows": result.rows},
        f"{check.metric} {value:.4f} on {result.data}",
    )


def _regression(state: _Run, check: Any) -> Outcome:
    holder = state.context.holder(state.alias) if state.alias else None
    if holder is None or holder.ref == state.mv.ref:
        return (
            True,
            {},
            f"no other version holds {state.alias or 'the alias'}: nothing to regress from",
        )
    mine = state.evaluation(check, state.mv).metrics[check.metric]
    theirs = state.evaluation(check, holder).metrics[check.metric]
    lower = check.metric in _LOWER_IS_BETTER
    ok = mine <= theirs + check.margin if lower else mine >= theirs - check.margin
    measured = {check.metric: mine, "holder": holder.ref, f"holder_{check.metric}": theirs}
    return ok, measured, f"{check.metric} {mine:.4f} vs {theirs:.4f} of {holder.ref}"


def _per_class(state: _Run, check: Any) -> Outcome:
    result = state.evaluation(check, state.mv)
    values = {label: c[check.metric] for label, c in result.per_class.items()}
    worst = min(values, key=lambda k: values[k])
    ok = values[worst] >= check.min
    return ok, {"per_class": values}, f"lowest: class {worst} at {values[worst]:.4f}"


def _per_slice(state: _Run, check: Any) -> Outcome:
    version, _ = state.data(check, state.mv)
    if check.column not in version.schema.names:
        return False, {}, f"{version.ref} has no column {check.column!r} to slice by"
    result = state.evaluation(check, state.mv, slice_column=check.column)
    values = {k: v["accuracy"] for k, v in result.per_slice.items()}
    worst = min(values, key=lambda k: values[k])
    return (
        values[worst] >= check.min,
        {"per_slice": values},
        f"lowest: {check.column}={worst} at {values[worst]:.4f}",
    )


def _latency(state: _Run, check: Any) -> Outcome:
    onnx = state.mv.onnx_bytes()
    example = _example(state, check)
    latency = bench.measure(onnx, example, runs=check.runs)
    ok = (check.p50_ms is None or latency.p50_ms <= check.p50_ms) and (
        check.p99_ms is None or latency.p99_ms <= check.p99_ms
    )
    measured = {
        "p50_ms": latency.p50_ms,
        "p99_ms": latency.p99_ms,
        "runs": latency.runs,
        "threads": latency.threads,
    }
    return (
        ok,
        measured,
        f"p50 {latency.p50_ms:.3f} ms, p99 {latency.p99_ms:.3f} ms "
        f"(batch of 1, {latency.runs} runs)",
    )


def _size(state: _Run, check: Any) -> Outcome:
    size_mb = len(state.mv.onnx_bytes()) / 1e6
    return size_mb <= check.max_mb, {"size_mb": size_mb}, f"ONNX model {size_mb:.3f} MB"


def _approval(state: _Run, check: Any) -> Outcome:
    count = state.context.approvals(state.mv)
    hint = "" if count >= check.min_approvals else f"; run `conveyor models approve {state.mv.ref}`"
    return count >= check.min_approvals, {"approvals": count}, f"{count} approval(s){hint}"


def _example(state: _Run, check: Any) -> Any:
    """One real input row when the model's data is at hand, else zeros of its shape."""
    try:
        version, split = state.data(check, state.mv)
        for inputs, _ in batches(version, state.mv.preprocessing, split, []):
            return inputs[:1]
    except ConveyorError:
        pass
    return bench.example_input(state.mv.signature.input.shape)


_HANDLERS: dict[str, Callable[[_Run, Any], Outcome]] = {
    "metric": _metric,
    "no_regression": _regression,
    "per_class": _per_class,
    "per_slice": _per_slice,
    "latency": _latency,
    "size": _size,
    "approval": _approval,
}
