"""`conveyor init` and `conveyor status` as a user drives them, and the errors they see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli


def assert_one_line_error(result: object, *needles: str) -> None:
    """Exit code 2, one `error:` line naming the problem, and no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    err = result.stderr.strip()  # type: ignore[attr-defined]
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_init_then_status_in_the_workspace(cli: Cli, tmp_path: Path) -> None:
    made = cli("init", "proj")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "proj" / "conveyor.toml").is_file()

    status = cli("status", "--json", cwd=tmp_path / "proj")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["ok"] is True
    assert [p["part"] for p in report["parts"]] == ["workspace", "metadata", "objects"]

    table = cli("status", cwd=tmp_path / "proj", env={"COLUMNS": "80"})
    assert "metadata" in table.stdout and "ok" in table.stdout
    for part in report["parts"]:  # every location whole on one line, however long
        assert any(part["location"] in line for line in table.stdout.splitlines()), part
    assert "1 more column with --wide" in table.stdout
    wide = cli("status", "--wide", cwd=tmp_path / "proj", env={"COLUMNS": "80"})
    assert "objects indexed" in wide.stdout and "--wide" not in wide.stdout


def test_the_nearest_workspace_up_the_tree_is_found(cli: Cli, tmp_path: Path) -> None:
    cli("init", "proj")
    deep = tmp_path / "proj" / "src" / "models"
    deep.mkdir(parents=True)
    status = cli("status", "--json", cwd=deep)
    assert json.loads(status.stdout)["parts"][0]["location"] == str(
        tmp_path / "proj" / "conveyor.toml"
    )


def test_conveyor_home_points_at_the_workspace(cli: Cli, tmp_path: Path) -> None:
    cli("init", "proj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = cli("status", cwd=elsewhere, env={"CONVEYOR_HOME": str(tmp_path / "proj")})
    assert status.returncode == 0, status.stderr


def test_team_workspace_on_postgres_and_s3(
    cli: Cli, pg_url: str, s3_bucket: str, s3_endpoint: str
) -> None:
    made = cli(
        "init",
        "team",
        "--meta",
        pg_url,
        "--objects",
        f"s3://{s3_bucket}/conveyor",
        "--endpoint-url",
        s3_endpoint,
        "--json",
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["objects"] == f"s3://{s3_bucket}/conveyor"
    status = cli("-w", "team", "status", "--json")
    assert json.loads(status.stdout)["ok"] is True


def test_no_workspace(cli: Cli) -> None:
    assert_one_line_error(cli("status"), "no Conveyor workspace", "conveyor init")


def test_workspace_path_that_does_not_exist(cli: Cli) -> None:
    assert_one_line_error(cli("-w", "/does/not/exist", "status"), "/does/not/exist")


def test_wrong_metadata_url(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("init", "p", "--meta", "mysql://x/y"), "mysql", "postgresql://")
    assert not (tmp_path / "p").exists()  # a failed init leaves nothing behind


def test_unreachable_database(cli: Cli, tmp_path: Path) -> None:
    result = cli("init", "p", "--meta", "postgresql://u:secret@127.0.0.1:1/db")
    assert_one_line_error(result, "127.0.0.1", "server is running")
    assert "secret" not in result.stderr
    assert not (tmp_path / "p").exists()


def test_unreachable_bucket(cli: Cli, s3_endpoint: str) -> None:
    result = cli("init", "p", "--objects", "s3://no-such-bucket/x", "--endpoint-url", s3_endpoint)
    assert_one_line_error(result, "s3://no-such-bucket/x", "does not exist")


def test_status_reports_a_store_that_went_away(cli: Cli, tmp_path: Path) -> None:
    cli("init", "proj")
    (tmp_path / "proj" / "conveyor.toml").write_text(
        '[metadata]\nurl = "postgresql://u@127.0.0.1:1/db"\n'
    )
    result = cli("status", "--json", cwd=tmp_path / "proj")
    assert result.returncode == 2
    parts = {p["part"]: p for p in json.loads(result.stdout)["parts"]}
    assert parts["metadata"]["ok"] is False
    assert parts["objects"]["ok"] is True


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('[metdata]\nurl = "x"\n', "did you mean 'metadata'"),
        ("[metadata\n", "not valid TOML"),
        ('[log]\nlevel = "loud"\n', "log.level"),
    ],
)
def test_broken_config_file(cli: Cli, tmp_path: Path, config: str, needle: str) -> None:
    cli("init", "proj")
    (tmp_path / "proj" / "conveyor.toml").write_text(config)
    assert_one_line_error(cli("status", cwd=tmp_path / "proj"), needle)


def test_debug_shows_the_traceback(cli: Cli) -> None:
    result = cli("--debug", "status")
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("no-such-command").returncode == 2
    assert cli("status", "--no-such-flag").returncode == 2


def test_every_command_has_help(cli: Cli) -> None:
    for command in ([], ["init"], ["status"]):
        result = cli(*command, "--help")
        assert result.returncode == 0
        assert "Usage" in result.stdout
