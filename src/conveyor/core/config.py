"""One settings object: defaults < conveyor.toml < CONVEYOR_* environment < explicit arguments.

Environment names follow the TOML tables with `__` between levels, e.g.
`CONVEYOR_METADATA__URL` overrides `[metadata] url` and `CONVEYOR_PRICES__ON_DEMAND__CPU`
overrides `[prices.on_demand] cpu`.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from conveyor.core.errors import ConfigError

CONFIG_FILE = "conveyor.toml"
STATE_DIR = ".conveyor"


class MetadataSettings(BaseModel):
    """Where the metadata index lives: a SQLAlchemy URL (SQLite or PostgreSQL)."""

    model_config = ConfigDict(extra="forbid")
    url: str = f"sqlite:///{STATE_DIR}/metadata.db"


class ObjectsSettings(BaseModel):
    """Where object bytes live: a folder or any fsspec URL, plus fsspec storage options."""

    model_config = ConfigDict(extra="forbid")
    url: str = f"{STATE_DIR}/objects"
    options: dict[str, Any] = Field(default_factory=dict)


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read true as 1.0
        raise PydanticCustomError("bool_type", "Input should be a number, not true or false")
    return value


# USD per device-hour, or watts: a finite number >= 0 (a string such as "0.5" from the
# environment is read as a number)
Rate = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, allow_inf_nan=False)]


class PriceSettings(BaseModel):
    """Prices that override the built-in table of conveyor.compute.cost, by device kind.

    Each table maps a device kind (cpu, t4, l4, a10g, a100-40gb, a100-80gb, h100, or a
    new name) to USD per device-hour (CPU: per core-hour) or, for `watts`, watts per device
    (CPU: per busy core). A device not named keeps its built-in value. `market` is the
    column a training run and a job's estimate are charged at unless the code asks for
    another (TrainConfig(market=...)).
    """

    model_config = ConfigDict(extra="forbid")
    market: Literal["on_demand", "spot"] = "on_demand"
    on_demand: dict[str, Rate] = Field(default_factory=dict)
    spot: dict[str, Rate] = Field(default_factory=dict)
    watts: dict[str, Rate] = Field(default_factory=dict)


class Settings(BaseSettings):
    """Everything a workspace is configured with."""

    model_config = SettingsConfigDict(
        env_prefix="CONVEYOR_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    metadata: MetadataSettings = Field(default_factory=MetadataSettings)
    objects: ObjectsSettings = Field(default_factory=ObjectsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    prices: PriceSettings = Field(default_factory=PriceSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse conveyor.toml, turning syntax errors into a message with the line to fix."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML ({e})", "fix the line it names") from e
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror})", "check the file") from e


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a config file (if any), the environment and explicit overrides."""
    if config_file is not None:
        _check_known_keys(read_config_file(config_file), config_file)
    cls: type[Settings] = Settings
    if config_file is not None:
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})
        cls = type("FileSettings", (Settings,), {"model_config": config})
    try:
        return cls(**overrides)
    except ValidationError as e:
        raise _config_error(e, config_file) from e


def _check_known_keys(data: dict[str, Any], path: Path) -> None:
    """Name an unknown key (usually a typo) and suggest the closest real one."""
    for key, value in data.items():
        field = Settings.model_fields.get(key)
        if field is None:
            raise _unknown_key(key, list(Settings.model_fields), path)
        section = field.annotation
        if isinstance(value, dict) and isinstance(section, type) and issubclass(section, BaseModel):
            for sub in value:
                if sub not in section.model_fields:
                    raise _unknown_key(f"{key}.{sub}", list(section.model_fields), path, sub)


def _unknown_key(key: str, known: list[str], path: Path, leaf: str | None = None) -> ConfigError:
    close = difflib.get_close_matches(leaf or key, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys here: {', '.join(known)}"
    return ConfigError(f"{path}: unknown setting '{key}'", hint)


_EXAMPLE = {"on_demand": "0.5", "spot": "0.2", "watts": "70"}  # for the hint of a bad price


def _config_error(e: ValidationError, path: Path | None) -> ConfigError:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    origin = f"{path} or CONVEYOR_* environment" if path else "CONVEYOR_* environment"
    if first["type"] == "extra_forbidden":
        return ConfigError(f"unknown setting '{where}' in {origin}", "remove it or fix its name")
    loc = first["loc"]
    if loc[:1] == ("prices",) and len(loc) >= 3:  # [prices.on_demand] t4 = -1
        unit = "watts" if loc[1] == "watts" else "USD per device-hour (CPU: per core-hour)"
        example = f"{loc[-1]} = {_EXAMPLE.get(str(loc[1]), '0.5')}"
        return ConfigError(
            f"invalid setting '{where}' = {first['input']!r} in {origin}: {first['msg']}",
            f"write a finite number >= 0, in {unit}, e.g. {example}",
        )
    return ConfigError(f"invalid setting '{where}' in {origin}: {first['msg']}", "fix the value")
