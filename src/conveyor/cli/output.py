"""Everything the CLI prints goes through here: rich on a terminal, JSON for scripts.

rich is imported only when something is printed, to keep `conveyor --help` fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from conveyor.cli.tables import Column as Column  # tables are printed through here too
from conveyor.cli.tables import print_table as print_table
from conveyor.core.units import human_bytes as human_bytes  # and amounts, in their units
from conveyor.core.units import human_cost as human_cost
from conveyor.core.units import human_energy as human_energy
from conveyor.core.units import human_seconds as human_seconds

WideOption = Annotated[
    bool, typer.Option("--wide", help="Show every column, whatever the terminal's width.")
]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_line(text: str) -> None:
    from rich.console import Console

    Console().print(text, highlight=False)


def print_error(message: str) -> None:
    """One line on stderr, plain text so it survives pipes and logs."""
    sys.stderr.write(f"error: {message}\n")


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on a terminal; silent otherwise. Yields `update(done, total)`."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)
