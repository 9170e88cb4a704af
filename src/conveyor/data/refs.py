"""Dataset names and version specs: `digits`, `digits@v3`, `digits@latest`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.core.errors import ConveyorError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
_VERSION = re.compile(r"^v([1-9][0-9]*)$")


class InvalidNameError(ConveyorError):
    """A dataset name or version spec that cannot be used."""


@dataclass(frozen=True)
class VersionRef:
    """A dataset name and a version number (None means the latest)."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.name}@{'latest' if self.version is None else f'v{self.version}'}"


def check_name(name: str) -> str:
    """Names are lowercase words with `-`, `_` or `.`: safe as folder names and in URLs."""
    if not _NAME.match(name) or ".." in name:
        raise InvalidNameError(
            f"'{name}' is not a valid dataset name",
            "use lowercase letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return name


def parse_ref(spec: str) -> VersionRef:
    """Parse `NAME`, `NAME@latest` or `NAME@vN`."""
    name, _, version = spec.partition("@")
    check_name(name)
    if not version or version == "latest":
        return VersionRef(name)
    match = _VERSION.match(version)
    if not match:
        raise InvalidNameError(
            f"'{spec}' has a bad version '{version}'", f"use {name}@v3 or {name}@latest"
        )
    return VersionRef(name, int(match.group(1)))
