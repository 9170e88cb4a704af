"""`conveyor monitor drift` between dataset versions, as a script or a person reads it."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.e2e.conftest import Cli
from tests.e2e.test_workspace_cli import assert_one_line_error

COLUMN_KEYS = {"name", "kind", "test", "statistic", "p_value", "effect", "threshold", "drift"}


def _csv(path: Path, rows: int, seed: int, shift: float = 0.0, cities: int = 4) -> Path:
    rng = random.Random(seed)
    names = ["paris", "lyon", "nice", "lille", "brest"][:cities]
    lines = ["age,income,city"]
    for _ in range(rows):
        lines.append(
            f"{rng.gauss(40 + shift * 10, 10):.3f},{rng.gauss(3, 1):.4f},{rng.choice(names)}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_drift_between_two_versions_keeps_its_json_contract(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    for name, shift, cities in (("jan", 0.0, 4), ("feb", 0.0, 4), ("mar", 0.5, 5)):
        _csv(
            tmp_path / f"{name}.csv",
            3000,
            seed=len(name) + int(shift * 10) + cities,
            shift=shift,
            cities=cities,
        )
        done = cli("data", "ingest", str(tmp_path / f"{name}.csv"), "--name", name, cwd=ws)
        assert done.returncode == 0, done.stderr

    same = cli("monitor", "drift", "--reference", "jan@v1", "--current", "feb@v1", "--json", cwd=ws)
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["drift"] is False and report["share"] == 0.0
    assert report["n_reference"] == report["n_current"] == 3000
    assert [c["name"] for c in report["columns"]] == ["age", "income", "city"]
    for column in report["columns"]:
        assert column.keys() >= COLUMN_KEYS
        assert isinstance(column["p_value"], float) and isinstance(column["effect"], float)
    assert {c["kind"] for c in report["columns"]} == {"numeric", "categorical"}

    moved = cli("monitor", "drift", "-r", "jan@v1", "-c", "mar@v1", "--json", cwd=ws)
    assert moved.returncode == 0, moved.stderr  # drift found is not an error
    report = json.loads(moved.stdout)
    verdicts = {c["name"]: c for c in report["columns"]}
    assert report["drift"] and report["share"] == 2 / 3
    assert verdicts["age"]["drift"] and verdicts["age"]["effect"] > 0.4  # half an sd
    assert not verdicts["income"]["drift"]
    new = next(c for c in verdicts["city"]["checks"] if c["test"] == "new")
    assert verdicts["city"]["drift"] and list(new["new_categories"]) == ["brest"]

    only = cli(
        "monitor",
        "drift",
        "-r",
        "jan@v1",
        "-c",
        "mar@v1",
        "--columns",
        "income,city",
        "--json",
        cwd=ws,
    )
    assert [c["name"] for c in json.loads(only.stdout)["columns"]] == ["income", "city"]

    table = cli("monitor", "drift", "-r", "jan@v1", "-c", "mar@v1", cwd=ws, env={"COLUMNS": "80"})
    assert table.returncode == 0 and "drift: 2 of 3 columns moved (67%)" in table.stdout
    assert all(len(line.rstrip()) <= 80 for line in table.stdout.splitlines()), table.stdout


def test_bad_input_is_one_line_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    _csv(tmp_path / "a.csv", 100, seed=1)
    assert cli("data", "ingest", str(tmp_path / "a.csv"), "--name", "a", cwd=ws).returncode == 0
    assert_one_line_error(cli("monitor", "drift", "-r", "a@v1", "-c", "b@v1", cwd=ws), "b")
    assert_one_line_error(
        cli("monitor", "drift", "-r", "a@v1", "-c", "a@v1", "--columns", "height", cwd=ws),
        "neither a@v1 nor a@v1 has column 'height'",
    )
    assert_one_line_error(
        cli("monitor", "drift", "-r", "a@v1", "-c", "a@v1", "--threshold", "age", cwd=ws),
        "COLUMN=NUMBER",
    )
    assert_one_line_error(
        cli("monitor", "drift", "-r", "a@v1", "-c", "a@v1", "--correction", "x", cwd=ws),
        "unknown correction",
    )
    assert_one_line_error(
        cli("monitor", "drift", "-r", "a@v1", "-c", "nope:production", cwd=ws),
        "no dataset or model named 'nope'",
    )


def test_watching_served_versions_says_what_is_wrong_in_one_line(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    quiet = cli("monitor", "status", cwd=ws)
    assert quiet.returncode == 0 and "no served traffic in the last 1h" in quiet.stdout
    assert json.loads(cli("monitor", "status", "--json", cwd=ws).stdout)["versions"] == []
    report = ["monitor", "report"]
    assert_one_line_error(cli(*report, "nope:production", cwd=ws), "nope")
    assert_one_line_error(cli(*report, "x@v1", "--window", "soon", cwd=ws), "not a duration")
    assert_one_line_error(
        cli(*report, "x@v1", "--window", "1h", "--since", "2026-12-01", cwd=ws), "not both"
    )
    assert_one_line_error(
        cli(*report, "x@v1", "--since", "yesterday", cwd=ws), "not an ISO 8601 time"
    )
    assert_one_line_error(
        cli(*report, "x@v1", "--since", "2026-12-02", "--until", "2026-12-01", cwd=ws),
        "before it starts",
    )
    assert_one_line_error(cli("monitor", "check", "missing.yaml", cwd=ws), "no monitor config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x:production\nrules:\n  - latency.p99 > 50 parsecs\n")
    assert_one_line_error(cli("monitor", "check", str(bad), cwd=ws), "latency.p99")
