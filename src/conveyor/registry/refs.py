"""Model references: `digits`, `digits@v3`, `digits@latest`, `digits@production`.

`digits:production` means the same as `digits@production` (the form serving configs
often use). Alias names are lowercase words; `latest` and `vN` are not aliases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.core.errors import ConveyorError
from conveyor.data.refs import InvalidNameError, check_name

_VERSION = re.compile(r"^v([1-9][0-9]*)$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")


class InvalidModelRefError(ConveyorError):
    """A model name, version or alias that cannot be used."""


@dataclass(frozen=True)
class ModelRef:
    """A model name and either a version number, an alias, or neither (the latest)."""

    name: str
    number: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.number is not None:
            return f"{self.name}@v{self.number}"
        return f"{self.name}@{self.alias or 'latest'}"


def check_model_name(name: str) -> str:
    try:
        return check_name(name)
    except InvalidNameError:
        raise InvalidModelRefError(
            f"'{name}' is not a valid model name",
            "use lowercase letters, digits, '-', '_' or '.', starting with a letter or digit",
        ) from None


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias) or alias == "latest" or _VERSION.match(alias):
        raise InvalidModelRefError(
            f"'{alias}' cannot be an alias",
            "use a lowercase word such as production or staging (not 'latest' or 'v3')",
        )
    return alias


def parse_model_ref(spec: str) -> ModelRef:
    """Parse `NAME`, `NAME@latest`, `NAME@vN`, `NAME@ALIAS` or `NAME:ALIAS`."""
    sep = "@" if "@" in spec else ":"
    name, _, rest = spec.partition(sep)
    check_model_name(name)
    if not rest or rest == "latest":
        return ModelRef(name)
    match = _VERSION.match(rest)
    if match:
        return ModelRef(name, number=int(match.group(1)))
    if not _ALIAS.match(rest):
        raise InvalidModelRefError(
            f"'{spec}' has a bad version or alias '{rest}'",
            f"use {name}@v3, {name}@latest or {name}@production",
        )
    return ModelRef(name, alias=rest)
