"""Options given before the command (`conveyor --workspace W --debug status`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.workspace import Workspace


@dataclass
class CliState:
    workspace: Path | None = None
    debug: bool = False

    def open_workspace(self, upgrade: bool = True) -> Workspace:
        from conveyor.workspace import Workspace

        return Workspace.open(self.workspace, upgrade=upgrade)


state = CliState()
