"""Settings precedence and the errors a user sees for a bad conveyor.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.core.config import load_settings
from conveyor.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conveyor.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    settings = load_settings()
    assert settings.metadata.url == "sqlite:///.conveyor/metadata.db"
    assert settings.objects.url == ".conveyor/objects"


def test_file_beats_defaults_env_beats_file_arguments_beat_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[metadata]\nurl = "sqlite:///file.db"\n[log]\nlevel = "debug"\n')
    assert load_settings(path).metadata.url == "sqlite:///file.db"

    monkeypatch.setenv("CONVEYOR_METADATA__URL", "sqlite:///env.db")
    settings = load_settings(path)
    assert settings.metadata.url == "sqlite:///env.db"
    assert settings.log.level == "debug"  # untouched keys still come from the file

    assert load_settings(path, metadata={"url": "sqlite:///arg.db"}).metadata.url == (
        "sqlite:///arg.db"
    )


def test_a_typo_names_the_key_and_suggests_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, '[metdata]\nurl = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'metdata'.*did you mean 'metadata'"):
        load_settings(path)


def test_a_typo_inside_a_table_is_caught(tmp_path: Path) -> None:
    path = write(tmp_path, '[objects]\nurll = "x"\n')
    with pytest.raises(ConfigError, match=r"'objects.urll'.*did you mean 'url'"):
        load_settings(path)


def test_broken_toml_points_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[metadata\nurl = "x"\n')
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 1"):
        load_settings(path)


def test_a_bad_value_names_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "loud"\n')
    with pytest.raises(ConfigError, match=r"'log.level'"):
        load_settings(path)


def test_a_bad_environment_value_is_reported_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOG__FORMAT", "xml")
    with pytest.raises(ConfigError, match=r"'log.format'.*CONVEYOR_"):
        load_settings()
