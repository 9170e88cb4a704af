"""What the CLI prints for people: amounts at a glance, tables that never cut a key."""

from __future__ import annotations

import pytest

from conveyor.cli import output
from conveyor.cli.output import Column


@pytest.mark.parametrize(
    ("kwh", "shown"),
    [
        (5.26224e-06, "5.26 mWh"),  # the demo's training run
        (0.0124, "12.4 Wh"),
        (3.1, "3.1 kWh"),
        (12345.0, "12,345 kWh"),
        (0.0, "0 Wh"),
        (1e-12, "< 0.01 mWh"),
        (None, "-"),
    ],
)
def test_energy_reads_at_a_glance(kwh: float | None, shown: str) -> None:
    assert output.human_energy(kwh) == shown


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        (3e-5, "< $0.0001"),
        (0.0037, "$0.0037"),
        (0.42, "$0.42"),
        (12.4, "$12.40"),
        (1234.4, "$1,234"),
        (0.0, "$0"),
        (None, "unpriced"),
    ],
)
def test_cost_keeps_the_digits_that_matter(usd: float | None, shown: str) -> None:
    assert output.human_cost(usd) == shown


def test_device_time_in_seconds_minutes_or_hours() -> None:
    assert [output.human_seconds(s) for s in (1.44, 252, 11160)] == ["1.4 s", "4.2 min", "3.1 h"]


def _table(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    columns: list[str | Column],
    rows: list[list[object]],
    width: int = 80,
    wide: bool = False,
) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    output.print_table("T", columns, rows, wide=wide)
    return capsys.readouterr().out.splitlines()


NAME = "digits-image-classifier@v12"
METRICS = ["accuracy 0.9722", "f1_macro 0.9721", "loss 0.09123", "precision 0.9733"]
ROW: list[object] = [
    NAME,
    "ready",
    "production, staging",
    METRICS,
    "ae8a3fd9dc57",
    "2026-12-04 18:32",
]
COLUMNS: list[str | Column] = [
    Column("version", key=True),
    "status",
    "aliases",
    "metrics",
    Column("run", optional=True),
    Column("created", optional=True),
]


def test_a_narrow_terminal_drops_optional_columns_and_never_cuts_the_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _table(capsys, monkeypatch, COLUMNS, [ROW])
    assert all(len(line.rstrip()) <= 80 for line in lines), lines
    assert any(NAME in line for line in lines)  # whole, on one line
    assert not any("created" in line or "ae8a3fd9dc57" in line for line in lines)
    assert "2 more columns with --wide" in lines[-1]
    for metric in METRICS:  # one whole item a line, never broken inside
        assert any(metric in line for line in lines), metric


def test_wide_shows_every_column_whole_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _table(capsys, monkeypatch, COLUMNS, [ROW], wide=True)
    row = next(line for line in lines if NAME in line)
    assert "ae8a3fd9dc57" in row and "2026-12-04 18:32" in row and ", ".join(METRICS) in row
    assert not any("--wide" in line for line in lines)


def test_a_key_wider_than_the_terminal_is_still_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = "s3://a-bucket-with-a-long-name/" + "/".join(["folder"] * 12) + "/objects"
    lines = _table(capsys, monkeypatch, ["part", Column("location", key=True)], [["objects", path]])
    assert any(path in line for line in lines)


def test_the_first_column_is_the_key_and_a_table_that_fits_is_left_alone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _table(capsys, monkeypatch, ["id", "name"], [["0123abcd", "train"]], width=40)
    assert any("0123abcd" in line and "train" in line for line in lines)
    narrow = _table(capsys, monkeypatch, ["id", "note"], [["0123abcd-ef", "a b " * 30]], width=30)
    assert any("0123abcd-ef" in line for line in narrow)
    assert all(len(line.rstrip()) <= 30 for line in narrow), narrow
