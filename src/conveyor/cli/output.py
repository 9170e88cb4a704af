"""Everything the CLI prints goes through here: rich on a terminal, JSON for scripts.

rich is imported only when something is printed, to keep `conveyor --help` fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console().print(table)


def print_line(text: str) -> None:
    from rich.console import Console

    Console().print(text, highlight=False)


def print_error(message: str) -> None:
    """One line on stderr, plain text so it survives pipes and logs."""
    sys.stderr.write(f"error: {message}\n")
