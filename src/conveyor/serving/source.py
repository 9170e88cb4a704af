"""Where served models come from: a small `ModelSource` protocol and the model it hands out.

The server needs little from a model store: a version's signature, its preprocessing,
its ONNX bytes (or a torch module), and which version an alias points at now (polled
to follow promotions). The registry is one source (`registry_source.py`); tests and
embedders can write their own in a few lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from conveyor.core.errors import ServingError
from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.signature import Signature


@dataclass
class ServedModel:
    """One loadable model version, as the server sees it.

    `preprocessing` is the registry's, stored with the model: the server runs it on
    every /predict payload, so a request is transformed exactly as training data was.
    `onnx` and `torch_module` load the weights lazily (only the runtime chosen is built).
    """

    name: str
    version: int
    signature: Signature
    preprocessing: Preprocessing
    onnx: Callable[[], bytes] | None = None
    torch_module: Callable[[], Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def outputs_probabilities(self) -> bool:
        """A first output named like "probabilities" is used as is; else it is logits."""
        return "prob" in self.signature.outputs[0].name.lower()


class ModelSource(Protocol):
    """What the server loads models from."""

    def load(self, name: str, version: int) -> ServedModel:
        """The version, verified (hash-checked bytes); raises ServingError if unknown."""
        ...

    def resolve(self, name: str, selector: str) -> int:
        """The version number `selector` ("production", "latest", "v3") points at now."""
        ...


@dataclass(frozen=True)
class ModelRef:
    """What the user asked to serve: a name and a version or an alias to follow."""

    name: str
    selector: str  # "v3", or an alias such as "production" or "latest"

    @property
    def pinned(self) -> int | None:
        """The version number when pinned ("v3"), None when following an alias."""
        match = re.fullmatch(r"v?(\d+)", self.selector)
        return int(match.group(1)) if match else None

    def __str__(self) -> str:
        return f"{self.name}@{self.selector}"


_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:[@:](?P<sel>[A-Za-z0-9_.-]+))?$")


def parse_ref(text: str, default: str = "production") -> ModelRef:
    """`digits:production`, `digits@production`, `digits@v3`, `digits` (its production)."""
    match = _REF.match(text.strip())
    if not match:
        raise ServingError(
            f"'{text}' is not a model reference",
            "write NAME, NAME@vN or NAME:ALIAS, e.g. digits:production or digits@v3",
        )
    selector = match.group("sel") or default
    if re.fullmatch(r"\d+", selector):
        selector = f"v{selector}"
    return ModelRef(match.group("name"), selector)


@dataclass(frozen=True)
class VersionWeight:
    """`--canary digits@4:10%` or `--shadow digits@4`: a version and a traffic share."""

    name: str
    version: int
    weight: float  # 0..1


def parse_weighted(text: str, default_weight: float = 1.0) -> VersionWeight:
    """`digits@v4:10%`, `digits@4:0.1`, `digits@v4` (weight = default)."""
    match = re.fullmatch(
        r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)@v?(?P<v>\d+)(?::(?P<w>[0-9.]+)(?P<pct>%?))?",
        text.strip(),
    )
    if not match:
        raise ServingError(
            f"'{text}' is not a version with a weight", "write NAME@vN:10% (or NAME@vN)"
        )
    weight = default_weight
    if match.group("w"):
        weight = float(match.group("w")) / (100.0 if match.group("pct") else 1.0)
    if not 0.0 <= weight <= 1.0:
        raise ServingError(f"weight in '{text}' must be between 0% and 100%", "e.g. :10%")
    return VersionWeight(match.group("name"), int(match.group("v")), weight)


class StaticSource:
    """An in-memory source: fixed versions and aliases that can be moved (tests, embedding)."""

    def __init__(self, models: Sequence[ServedModel] = ()) -> None:
        self._models: dict[tuple[str, int], ServedModel] = {}
        self.aliases: dict[tuple[str, str], int] = {}
        for model in models:
            self.add(model)

    def add(self, model: ServedModel, alias: str | None = None) -> None:
        self._models[(model.name, model.version)] = model
        self.aliases[(model.name, "latest")] = max(
            self.aliases.get((model.name, "latest"), 0), model.version
        )
        if alias:
            self.aliases[(model.name, alias)] = model.version

    def load(self, name: str, version: int) -> ServedModel:
        try:
            return self._models[(name, version)]
        except KeyError:
            raise ServingError(f"no model {name}@v{version}", "register it first") from None

    def resolve(self, name: str, selector: str) -> int:
        pinned = ModelRef(name, selector).pinned
        if pinned is not None:
            return pinned
        try:
            return self.aliases[(name, selector)]
        except KeyError:
            raise ServingError(
                f"model {name} has no version called '{selector}'",
                f"promote one (conveyor models promote {name}@vN --to {selector})",
            ) from None
