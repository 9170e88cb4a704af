"""Data-quality checks on hand-made manifests, and the errors a user sees for a bad rules file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conveyor.core.errors import ConveyorError
from conveyor.data.checks import CheckReport, CheckResult, Rules, load_rules, run_checks


def manifest(**columns: dict[str, Any]) -> dict[str, Any]:
    """A digits-like manifest; keyword arguments replace or add column statistics."""
    stats: dict[str, dict[str, Any]] = {
        "label": {
            "type": "string",
            "count": 1000,
            "nulls": 0,
            "distinct": 3,
            "values": {"0": 400, "1": 350, "2": 250},
            "values_complete": True,
        },
        "width": {
            "type": "int32",
            "count": 1000,
            "nulls": 0,
            "min": 8,
            "max": 32,
            "mean": 12.0,
            "std": 3.0,
            "distinct": 2,
            "values": {"8": 900, "32": 100},
            "values_complete": True,
        },
        "image": {
            "type": "binary",
            "count": 1000,
            "nulls": 0,
            "bytes_min": 90,
            "bytes_max": 300,
            "bytes_mean": 150.2,
        },
    }
    stats.update(columns)
    schema = [{"name": n, "type": s["type"], "nullable": True} for n, s in stats.items()]
    return {"name": "digits", "version": 3, "rows": 1000, "schema": schema, "columns": stats}


def check(rules: dict[str, Any], m: dict[str, Any] | None = None) -> CheckReport:
    return run_checks(m or manifest(), Rules.model_validate(rules))


def only(report: CheckReport, name: str) -> CheckResult:
    found = [r for r in report.results if r.check == name]
    assert len(found) == 1, report.results
    return found[0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


# --- each check, passing and failing -------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "passed"),
    [({"min": 1000}, True), ({"max": 1000}, True), ({"min": 1001}, False), ({"max": 999}, False)],
)
def test_row_count(rows: dict[str, int], passed: bool) -> None:
    result = only(check({"rows": rows}), "rows")
    assert result.passed is passed
    assert result.actual == "1000"


def test_row_count_failure_says_expected_and_actual() -> None:
    result = only(check({"rows": {"min": 2000, "max": 5000}}), "rows")
    assert not result.passed
    assert result.expected == "between 2000 and 5000"
    assert "1000 rows" in result.message and "between 2000 and 5000" in result.message


def test_named_columns_are_required() -> None:
    report = check({"columns": {"label": None, "ghost": {"type": "string"}}})
    assert [(r.check, r.subject, r.passed) for r in report.results] == [
        ("column", "label", True),
        ("column", "ghost", False),
    ]
    assert report.failures[0].message == "column 'ghost' is missing"
    assert not report.passed


def test_type() -> None:
    assert only(check({"columns": {"width": {"type": "int32"}}}), "type").passed
    result = only(check({"columns": {"width": {"type": "int64"}}}), "type")
    assert not result.passed
    assert (result.expected, result.actual) == ("int64", "int32")


def test_null_fraction() -> None:
    m = manifest(label={**manifest()["columns"]["label"], "nulls": 50})
    rules = {"columns": {"label": {"max_null_fraction": 0.05}}}
    assert only(check(rules, m), "max_null_fraction").passed  # the limit itself passes
    result = only(
        check({"columns": {"label": {"max_null_fraction": 0.01}}}, m), "max_null_fraction"
    )
    assert not result.passed
    assert result.expected == "<= 0.01"
    assert result.actual == "0.05 (50 of 1000 rows)"


def test_range() -> None:
    assert only(check({"columns": {"width": {"min": 8, "max": 64}}}), "range").passed
    assert only(check({"columns": {"width": {"max": 32}}}), "range").passed
    result = only(check({"columns": {"width": {"min": 10, "max": 16}}}), "range")
    assert not result.passed
    assert (result.expected, result.actual) == ("between 10 and 16", "[8, 32]")
    assert "minimum 8 is below 10" in result.message
    assert "maximum 32 is above 16" in result.message


def test_range_on_a_column_without_min_max_fails_clearly() -> None:
    result = only(check({"columns": {"image": {"min": 0}}}), "range")
    assert not result.passed
    assert "cannot be checked from statistics" in result.message
    assert "binary" in result.message


def test_range_on_an_all_null_column_has_nothing_out_of_range() -> None:
    col = {"type": "double", "count": 10, "nulls": 10, "min": None, "max": None}
    result = only(check({"columns": {"score": {"min": 0}}}, manifest(score=col)), "range")
    assert result.passed
    assert result.actual == "no values"


def test_allowed_values() -> None:
    assert only(check({"columns": {"label": {"allowed": ["0", "1", "2", "3"]}}}), "allowed").passed
    result = only(check({"columns": {"label": {"allowed": ["0", "1"]}}}), "allowed")
    assert not result.passed
    assert result.expected == "one of '0', '1'"
    assert "'2' 250 rows" in result.actual


def test_yaml_numbers_and_booleans_name_values_as_statistics_key_them(tmp_path: Path) -> None:
    flags = {"type": "bool", "count": 3, "nulls": 0, "values": {"True": 3}, "values_complete": True}
    rules = load_rules(
        write(tmp_path, "columns:\n  width: {allowed: [8, 32]}\n  flag: {allowed: [true]}\n")
    )
    report = run_checks(manifest(flag=flags), rules)
    assert [r.passed for r in report.results if r.check == "allowed"] == [True, True]


def test_class_balance_min_ratio() -> None:
    passing = check({"class_balance": {"column": "label", "min_ratio": 0.6}})
    assert only(passing, "class_balance.min_ratio").passed
    result = only(
        check({"class_balance": {"column": "label", "min_ratio": 0.7}}), "class_balance.min_ratio"
    )
    assert not result.passed
    assert result.expected == "smallest class >= 0.7 x largest"
    assert result.actual == "0.625 ('2' 250 rows, '0' 400 rows)"


def test_class_balance_fractions() -> None:
    rules = {"class_balance": {"column": "label", "min_fraction": 0.2, "max_fraction": 0.45}}
    report = check(rules)
    assert [r.check for r in report.results] == [
        "class_balance.min_fraction",
        "class_balance.max_fraction",
    ]
    assert report.passed
    report = check(
        {"class_balance": {"column": "label", "min_fraction": 0.3, "max_fraction": 0.35}}
    )
    low, high = report.results
    assert not low.passed and "'2' 250 rows (25.00%)" in low.actual
    assert not high.passed and "'0' 400 rows (40.00%)" in high.actual
    assert "'1'" not in low.actual + high.actual


def test_an_expected_class_that_never_occurs_unbalances() -> None:
    rules = {"class_balance": {"column": "label", "min_ratio": 0.1, "classes": [0, 1, 2, 3]}}
    result = only(check(rules), "class_balance.min_ratio")
    assert not result.passed
    assert "'3' 0 rows" in result.actual


def test_class_balance_on_a_missing_column() -> None:
    result = only(check({"class_balance": {"column": "ghost", "min_ratio": 0.5}}), "class_balance")
    assert not result.passed
    assert result.message == "column 'ghost' is missing"


# --- what statistics cannot decide fails, and says why --------------------------------


def incomplete() -> dict[str, Any]:
    return {
        "type": "string",
        "count": 5000,
        "nulls": 0,
        "distinct": None,
        "values": {"a": 10, "b": 9},
        "values_complete": False,
    }


def test_incomplete_value_counts_fail_allowed_values_clearly() -> None:
    m = manifest(tag=incomplete())
    result = only(check({"columns": {"tag": {"allowed": ["a", "b"]}}}, m), "allowed")
    assert not result.passed
    assert result.actual == "cannot be checked from statistics"
    assert "'tag' cannot be checked from statistics: too many distinct values" in result.message


def test_incomplete_value_counts_fail_class_balance_clearly() -> None:
    m = manifest(tag=incomplete())
    report = check({"class_balance": {"column": "tag", "min_ratio": 0.5}}, m)
    assert not report.passed
    assert "cannot be checked from statistics" in report.results[0].message


def test_a_column_without_value_counts_fails_allowed_values() -> None:
    result = only(check({"columns": {"image": {"allowed": ["x"]}}}), "allowed")
    assert not result.passed
    assert "type binary has no value counts" in result.message


# --- the report ------------------------------------------------------------------------


def test_report_to_dict_is_json_and_names_what_failed() -> None:
    report = check({"rows": {"min": 1}, "columns": {"width": {"max": 16}}})
    data = json.loads(json.dumps(report.to_dict()))
    assert data["dataset"] == "digits" and data["version"] == 3
    assert data["passed"] is False
    assert (data["checks"], data["failed"]) == (3, 1)
    failed = [r for r in data["results"] if not r["passed"]]
    assert failed == [
        {
            "check": "range",
            "subject": "width",
            "passed": False,
            "expected": "<= 16",
            "actual": "[8, 32]",
            "message": "values of 'width' span [8, 32]: maximum 32 is above 16",
        }
    ]


def test_all_passing_report_passes() -> None:
    rules = {
        "rows": {"min": 1000, "max": 100000},
        "columns": {
            "label": {"type": "string", "max_null_fraction": 0, "allowed": ["0", "1", "2"]},
            "width": {"type": "int32", "min": 8, "max": 64},
        },
        "class_balance": {"column": "label", "min_ratio": 0.5},
    }
    report = check(rules)
    assert report.passed, report.failures
    assert report.failures == []


# --- the rules file --------------------------------------------------------------------


def test_load_rules_reads_the_documented_example(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "src/conveyor/data/RULES.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    rules = load_rules(write(tmp_path, example))
    assert rules.rows is not None and rules.rows.min == 1000
    assert rules.columns["label"].allowed == [str(n) for n in range(10)]
    assert rules.class_balance is not None and rules.class_balance.column == "label"


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ConveyorError, match=r"rules file .*nope.yaml does not exist") as info:
        load_rules(tmp_path / "nope.yaml")
    assert info.value.hint


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("colums: {}\n", "unknown rule key 'colums'", "did you mean 'columns'?"),
        ("rows: {mn: 3}\n", "unknown rule key 'rows.mn'", "did you mean 'min'?"),
        (
            "columns:\n  label: {max_nul_fraction: 0}\n",
            "unknown rule key 'columns.label.max_nul_fraction'",
            "did you mean 'max_null_fraction'?",
        ),
        (
            "class_balance: {column: label, min_ration: 0.5}\n",
            "unknown rule key 'class_balance.min_ration'",
            "did you mean 'min_ratio'?",
        ),
    ],
)
def test_a_typo_names_the_key_and_suggests_the_fix(
    tmp_path: Path, text: str, message: str, hint: str
) -> None:
    with pytest.raises(ConveyorError) as info:
        load_rules(write(tmp_path, text))
    assert message in info.value.message
    assert info.value.hint == hint


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "rows: {min: 10}\ncolumns:\n  label: {type: [string}\n")
    with pytest.raises(ConveyorError, match=r"not valid YAML \(line 3, column \d+"):
        load_rules(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rows: {min: '5'}\n", "invalid rule 'rows.min': Input should be a valid integer"),
        ("rows: {min: 9, max: 3}\n", "invalid rule 'rows': min 9 is greater than max 3"),
        ("columns: {a: {max_null_fraction: 2}}\n", "'columns.a.max_null_fraction'"),
        ("columns: {a: {type: 8}}\n", "'columns.a.type': Input should be a valid string"),
        ("class_balance: {min_ratio: 0.5}\n", "rule 'class_balance.column' is missing"),
        ("class_balance: {column: a}\n", "give at least one of min_ratio"),
        ("columns: [a, b]\n", "invalid rule 'columns'"),
        ("", "is empty"),
        ("- rows\n", "is a list, not a mapping of rules"),
    ],
)
def test_a_bad_value_names_the_rule(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConveyorError) as info:
        load_rules(write(tmp_path, text))
    assert message in info.value.message
    assert info.value.hint
