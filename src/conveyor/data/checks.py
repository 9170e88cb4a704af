"""Data-quality checks: rules from a YAML file, decided from a version's manifest statistics.

No data is read, so checks take the same instant on any size of dataset. The rules file is
specified in RULES.md beside this file. A rule the statistics cannot decide (value counts
incomplete, no min/max for the column's type) is a failure that says so, never a silent pass.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from conveyor.core.errors import ConveyorError, yaml_problem

SHOWN = 5  # offending values named in one message


def _value_names(value: Any) -> Any:
    """YAML `1` or `true` name the values that statistics key as "1" or "True"."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) else v for v in value]  # bool is an int too
    return value


def _ordered(low: float | None, high: float | None, low_key: str, high_key: str) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError(f"{low_key} {_num(low)} is greater than {high_key} {_num(high)}")


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RowsRule(_Rule):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> RowsRule:
        _ordered(self.min, self.max, "min", "max")
        return self


class ColumnRule(_Rule):
    """Rules on one column; the column is required as soon as it is named."""

    type: str | None = None
    max_null_fraction: float | None = Field(default=None, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None

    _names = field_validator("allowed", mode="before")(_value_names)

    @model_validator(mode="after")
    def _check(self) -> ColumnRule:
        _ordered(self.min, self.max, "min", "max")
        return self


class ClassBalanceRule(_Rule):
    column: str
    min_ratio: float | None = Field(default=None, ge=0, le=1)
    min_fraction: float | None = Field(default=None, ge=0, le=1)
    max_fraction: float | None = Field(default=None, ge=0, le=1)
    classes: list[str] | None = None

    _names = field_validator("classes", mode="before")(_value_names)

    @model_validator(mode="after")
    def _check(self) -> ClassBalanceRule:
        if self.min_ratio is None and self.min_fraction is None and self.max_fraction is None:
            raise ValueError("give at least one of min_ratio, min_fraction, max_fraction")
        _ordered(self.min_fraction, self.max_fraction, "min_fraction", "max_fraction")
        return self


class Rules(_Rule):
    """A whole rules file."""

    rows: RowsRule | None = None
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    class_balance: ClassBalanceRule | None = None

    @field_validator("columns", mode="before")
    @classmethod
    def _bare_columns(cls, value: Any) -> Any:
        """`label:` with nothing after it only requires the column."""
        if isinstance(value, dict):
            return {str(k): {} if v is None else v for k, v in value.items()}
        return value


_SECTIONS: dict[str, type[BaseModel]] = {
    "rows": RowsRule,
    "columns": ColumnRule,
    "class_balance": ClassBalanceRule,
}


def load_rules(path: Path) -> Rules:
    """Read and validate a rules file; every mistake is a ConveyorError naming what to fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConveyorError(f"rules file {path} does not exist", "check the --rules path") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConveyorError(f"cannot read rules file {path} ({e})", "check the file") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConveyorError(f"{path} is not valid YAML ({yaml_problem(e)})", "fix that line") from e
    if not isinstance(data, dict) or not data:
        what = "is empty" if not data else f"is a {type(data).__name__}, not a mapping of rules"
        raise ConveyorError(f"rules file {path} {what}", "write rows, columns or class_balance")
    try:
        return Rules.model_validate(data)
    except ValidationError as e:
        raise _rules_error(e, path) from e


def _rules_error(e: ValidationError, path: Path) -> ConveyorError:
    first = e.errors()[0]
    loc = first["loc"]
    where = ".".join(str(p) for p in loc)
    if first["type"] == "extra_forbidden":
        known = list((Rules if len(loc) == 1 else _SECTIONS[str(loc[0])]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys here: {', '.join(known)}"
        return ConveyorError(f"{path}: unknown rule key '{where}'", hint)
    if first["type"] == "missing":
        return ConveyorError(f"{path}: rule '{where}' is missing", "add it (see RULES.md)")
    msg = first["msg"].removeprefix("Value error, ")
    got = "" if first["type"] == "value_error" else f", got {first['input']!r}"
    return ConveyorError(f"{path}: invalid rule '{where}': {msg}{got}", "fix the value")


@dataclass(frozen=True)
class CheckResult:
    """One rule on one subject: `check` is the rule key, `subject` a column or "rows"."""

    check: str
    subject: str
    passed: bool
    expected: str
    actual: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    dataset: str
    version: int
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "passed": self.passed,
            "checks": len(self.results),
            "failed": len(self.failures),
            "results": [asdict(r) for r in self.results],
        }


def run_checks(manifest: dict[str, Any], rules: Rules) -> CheckReport:
    """Evaluate `rules` on a manifest (a dict parsed from its JSON): rows, columns, balance."""
    stats: dict[str, dict[str, Any]] = manifest.get("columns") or {}
    declared = {f["name"]: f["type"] for f in manifest.get("schema") or []}
    results: list[CheckResult] = []
    if rules.rows is not None:
        results.append(_rows(int(manifest["rows"]), rules.rows))
    for name, rule in rules.columns.items():
        if name not in declared and name not in stats:
            results.append(_missing("column", name))
            continue
        col = stats.get(name, {})
        results.append(CheckResult("column", name, True, "present", "present", f"'{name}' exists"))
        if rule.type is not None:
            results.append(_type(name, rule.type, declared.get(name) or col.get("type", "?")))
        if rule.max_null_fraction is not None:
            results.append(_nulls(name, rule.max_null_fraction, col))
        if rule.min is not None or rule.max is not None:
            results.append(_range(name, rule.min, rule.max, col))
        if rule.allowed is not None:
            results.append(_allowed(name, rule.allowed, col))
    if rules.class_balance is not None:
        results.extend(_balance(rules.class_balance, declared, stats))
    return CheckReport(str(manifest.get("name", "?")), int(manifest.get("version", 0)), results)


def _missing(check: str, name: str) -> CheckResult:
    return CheckResult(check, name, False, "present", "missing", f"column '{name}' is missing")


def _rows(rows: int, rule: RowsRule) -> CheckResult:
    expected = _span(rule.min, rule.max)
    ok = (rule.min is None or rows >= rule.min) and (rule.max is None or rows <= rule.max)
    verdict = "" if ok else f", expected {expected}"
    return CheckResult("rows", "rows", ok, expected, str(rows), f"{rows} rows{verdict}")


def _type(name: str, expected: str, actual: str) -> CheckResult:
    ok = actual == expected
    verdict = "" if ok else f", expected {expected}"
    return CheckResult("type", name, ok, expected, actual, f"'{name}' is {actual}{verdict}")


def _nulls(name: str, limit: float, col: dict[str, Any]) -> CheckResult:
    if "count" not in col:
        return _undecided("max_null_fraction", name, f"<= {_num(limit)}", "no statistics")
    count, nulls = int(col["count"]), int(col.get("nulls", 0))
    fraction = nulls / count if count else 0.0
    ok = fraction <= limit
    actual = f"{_num(fraction)} ({nulls} of {count} rows)"
    verdict = "" if ok else f", above the maximum {_num(limit)}"
    message = f"null fraction of '{name}' is {actual}{verdict}"
    return CheckResult("max_null_fraction", name, ok, f"<= {_num(limit)}", actual, message)


def _range(name: str, low: float | None, high: float | None, col: dict[str, Any]) -> CheckResult:
    expected = _span(low, high)
    lo, hi = col.get("min"), col.get("max")
    if "min" not in col or not all(v is None or isinstance(v, int | float) for v in (lo, hi)):
        why = f"type {col.get('type', '?')} has no numeric min/max"
        return _undecided("range", name, expected, why)
    if lo is None or hi is None:
        message = f"'{name}' has no non-null values, so none is out of range"
        return CheckResult("range", name, True, expected, "no values", message)
    problems = []
    if low is not None and not lo >= low:  # `not >=` so that a NaN fails
        problems.append(f"minimum {_num(lo)} is below {_num(low)}")
    if high is not None and not hi <= high:
        problems.append(f"maximum {_num(hi)} is above {_num(high)}")
    actual = f"[{_num(lo)}, {_num(hi)}]"
    verdict = f": {'; '.join(problems)}" if problems else f", {expected}"
    message = f"values of '{name}' span {actual}{verdict}"
    return CheckResult("range", name, not problems, expected, actual, message)


def _allowed(name: str, allowed: list[str], col: dict[str, Any]) -> CheckResult:
    expected = f"one of {', '.join(repr(a) for a in allowed)}"
    why = _uncounted(col)
    if why:
        return _undecided("allowed", name, expected, why)
    ok_values = set(allowed)
    bad = {v: c for v, c in col["values"].items() if v not in ok_values and c > 0}
    if not bad:
        actual = "only allowed values"
        return CheckResult("allowed", name, True, expected, actual, f"'{name}' has {actual}")
    actual = f"{len(bad)} value(s) not allowed: {_counts(bad)}"
    return CheckResult("allowed", name, False, expected, actual, f"'{name}' has {actual}")


def _balance(
    rule: ClassBalanceRule, declared: dict[str, str], stats: dict[str, dict[str, Any]]
) -> list[CheckResult]:
    name, check = rule.column, "class_balance"
    if name not in declared and name not in stats:
        return [_missing(check, name)]
    col = stats.get(name, {})
    why = _uncounted(col)
    if why:
        return [_undecided(check, name, "balanced classes", why)]
    counts: dict[str, int] = {str(v): int(c) for v, c in col["values"].items()}
    for cls in rule.classes or []:
        counts.setdefault(cls, 0)  # an expected class that never occurs counts as 0 rows
    total = sum(counts.values())
    if not total:
        message = f"'{name}' has no non-null values to balance"
        return [CheckResult(check, name, False, "balanced classes", "no values", message)]
    out: list[CheckResult] = []
    if rule.min_ratio is not None:
        small = min(counts.items(), key=lambda vc: (vc[1], vc[0]))
        large = max(counts.items(), key=lambda vc: (vc[1], vc[0]))
        ratio = small[1] / large[1]
        ok = ratio >= rule.min_ratio
        expected = f"smallest class >= {_num(rule.min_ratio)} x largest"
        actual = f"{_num(ratio)} ('{small[0]}' {small[1]} rows, '{large[0]}' {large[1]} rows)"
        verdict = "" if ok else f", expected {expected}"
        message = f"class ratio of '{name}' is {actual}{verdict}"
        out.append(CheckResult(f"{check}.min_ratio", name, ok, expected, actual, message))
    if rule.min_fraction is not None:
        low = rule.min_fraction
        bad = {v: c for v, c in counts.items() if c / total < low}
        out.append(_fractions(f"{check}.min_fraction", name, f">= {low:.2%}", bad, total))
    if rule.max_fraction is not None:
        high = rule.max_fraction
        bad = {v: c for v, c in counts.items() if c / total > high}
        out.append(_fractions(f"{check}.max_fraction", name, f"<= {high:.2%}", bad, total))
    return out


def _fractions(check: str, name: str, bound: str, bad: dict[str, int], total: int) -> CheckResult:
    expected = f"each class {bound} of the {total} non-null values"
    actual = f"{len(bad)} class(es) outside: {_counts(bad, total)}" if bad else "all within"
    message = f"classes of '{name}': {actual}, expected {expected}"
    return CheckResult(check, name, not bad, expected, actual, message)


def _uncounted(col: dict[str, Any]) -> str | None:
    """Why value counts cannot decide a rule on this column, or None if they can."""
    if "values" not in col:
        return f"type {col.get('type', '?')} has no value counts"
    if col.get("values_complete") is not True:
        return (
            f"too many distinct values: only the top {len(col['values'])} counts are kept, "
            "so values outside them are unknown"
        )
    return None


def _undecided(check: str, name: str, expected: str, why: str) -> CheckResult:
    message = f"'{name}' cannot be checked from statistics: {why}"
    return CheckResult(check, name, False, expected, "cannot be checked from statistics", message)


def _counts(counts: dict[str, int], total: int | None = None) -> str:
    ordered = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))
    shown = [
        f"'{v}' {c} rows" + (f" ({c / total:.2%})" if total else "") for v, c in ordered[:SHOWN]
    ]
    more = f" and {len(ordered) - SHOWN} more" if len(ordered) > SHOWN else ""
    return ", ".join(shown) + more


def _span(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {_num(low)} and {_num(high)}"
    return f">= {_num(low)}" if low is not None else f"<= {_num(high)}"


def _num(x: float | None) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}" if isinstance(x, float) else str(x)
