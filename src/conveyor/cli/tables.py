"""Tables that fit the terminal without cutting what a user copies.

The rule, in order: a `key` column (a name, a version, an id, a path) is always whole and
on one line. Other columns wrap between words; an `optional` column is shown whole or not
at all, and optional columns are left out, rightmost first, before any word is broken.
Only when that is not enough do wrapping columns break inside words, down to ten
characters a line. `--wide` shows every column whole, however wide the table gets.
A cell may be a list of short items (metrics): one line per item when the table has to
wrap, comma-separated when it fits.

rich is imported only here, when a table is printed, to keep `conveyor --help` fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_BREAK_MIN = 10  # a column broken inside words keeps this many characters a line
_WORD_MAX = 24  # a longer word may be broken before an optional column is dropped for it


@dataclass(frozen=True)
class Column:
    """A table column, and what gives way when the terminal is narrow (module docstring).

    A plain string is a column too; the first column is the key unless another says it is.
    """

    header: str
    key: bool = False
    optional: bool = False


def print_table(
    title: str,
    columns: Sequence[str | Column],
    rows: Sequence[Sequence[Any]],
    wide: bool = False,
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    specs = [c if isinstance(c, Column) else Column(c) for c in columns]
    if not any(c.key for c in specs):
        specs[0] = Column(specs[0].header, key=True, optional=specs[0].optional)
    one_line = [[_text(cell, ", ") for cell in row] for row in rows]
    headers = [c.header for c in specs]
    natural = _widths(console, [[[t] for t in row] for row in [headers, *one_line]])
    words = [[_words(cell) for cell in row] for row in [headers, *rows]]
    shown, minimum = _fit(specs, natural, _widths(console, words), console.width, wide)
    fits = wide or _needed(natural, shown) <= console.width
    if _needed(minimum, shown) > console.width:  # wider than the terminal: cut nothing
        console = Console(width=_needed(minimum, shown))
    dropped = len(specs) - len(shown)
    table = Table(
        title=title,
        title_justify="left",
        caption=f"{dropped} more column{'s' * (dropped > 1)} with --wide" if dropped else None,
        caption_justify="left",
    )
    for i in shown:
        whole = specs[i].key or specs[i].optional or wide
        table.add_column(
            specs[i].header,
            no_wrap=whole,
            overflow="fold",
            min_width=natural[i] if whole else minimum[i],
        )
    for row in rows:
        table.add_row(*(console.render_str(_text(row[i], ", " if fits else "\n")) for i in shown))
    console.print(table)


def _text(cell: Any, joiner: str) -> str:
    if isinstance(cell, list | tuple):
        return joiner.join(str(item) for item in cell) or "-"
    return str(cell)


def _words(cell: Any) -> list[str]:
    """What a wrapping cell should not break: a list's items, or a text's words."""
    if isinstance(cell, list | tuple):
        return [str(item) for item in cell]
    return str(cell).split() or [""]


def _widths(console: Any, rows: list[list[list[str]]]) -> list[int]:
    """Per column, the widest part of any cell (the header is the first row)."""
    return [
        max(console.render_str(part).cell_len for row in rows for part in row[i])
        for i in range(len(rows[0]))
    ]


def _fit(
    specs: list[Column], natural: list[int], words: list[int], width: int, wide: bool
) -> tuple[list[int], list[int]]:
    """Which columns to show, and each one's narrowest width (module docstring's rule)."""
    shown = list(range(len(specs)))
    if wide:
        return shown, natural
    whole = [s.key or s.optional for s in specs]
    unbroken = [
        n if w else min(n, wd, _WORD_MAX) for n, w, wd in zip(natural, whole, words, strict=True)
    ]
    broken = [n if w else min(n, _BREAK_MIN) for n, w in zip(natural, whole, strict=True)]
    for minimum in (unbroken, broken):
        while _needed(minimum, shown) > width and any(specs[i].optional for i in shown):
            shown.remove(max(i for i in shown if specs[i].optional))
        if _needed(minimum, shown) <= width:
            return shown, minimum
    return shown, broken


def _needed(minimum: list[int], shown: list[int]) -> int:
    return sum(minimum[i] for i in shown) + 3 * len(shown) + 1  # borders, padding: 3 a column
