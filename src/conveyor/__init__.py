"""Conveyor: AI infrastructure in one package.

Kept light on purpose: `import conveyor` must not pull in SQLAlchemy, torch or ray,
so the public names below are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Client", "ConveyorError", "Workspace", "__version__"]

if TYPE_CHECKING:
    from conveyor.core.errors import ConveyorError
    from conveyor.serving.client import Client
    from conveyor.workspace import Workspace


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from conveyor.workspace import Workspace

        return Workspace
    if name == "Client":
        from conveyor.serving.client import Client

        return Client
    if name == "ConveyorError":
        from conveyor.core.errors import ConveyorError

        return ConveyorError
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
