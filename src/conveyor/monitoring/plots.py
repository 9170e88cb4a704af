"""The monitor report's plots: matplotlib figures as SVG elements inlined in the page.

`Plots.figure` draws one figure and returns it as a `<figure>` element; `steps`, `bars`
and `timeline` are what it draws: a numeric column's binned shares, class or category
shares, and a figure over time with counts under it. `conveyor.monitoring.html` lays
them out in the page.

Rules it keeps, and why:

- Figures are drawn on a bare `Figure` (no pyplot, no GUI, no global backend), and
  matplotlib is imported inside the call, so importing this module (or the page that
  imports it) stays cheap and loads no matplotlib.
- Each SVG is salted and its ids prefixed, so the page is deterministic and no two plots
  on it share an id; the SVG keeps no prolog, metadata or namespaces, only an element.
- A null figure is NaN to matplotlib, which leaves a gap: a missing point never plots as
  a zero.

The report-value readers here (`is_num`, `as_float`, `utc_time`) are shared with the
page, which imports them: the page depends on the plots, never the other way round.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REFERENCE, CURRENT, ERROR = "#9aa5b1", "#d9480f", "#c92a2a"


class Plots:
    """Draws a page's figures as inline SVG, each with its own salt and id prefix.

    One per page: the count numbers the figures, so ids stay unique across the page.
    """

    def __init__(self) -> None:
        self.count = 0

    def figure(
        self, kind: str, caption: str, draw: Callable[[Figure], Any], column: str = ""
    ) -> str:
        """`draw` on a fresh figure, as a `<figure>` with its caption; `kind` and `column`
        are data attributes, so a reader (or a test) can tell the plots apart."""
        import matplotlib
        from matplotlib.figure import Figure

        self.count += 1
        prefix = f"plot{self.count}-"
        with matplotlib.rc_context({
            "svg.hashsalt": prefix, "svg.fonttype": "none", "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans"], "font.size": 9, "text.parse_math": False,
            "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
            "grid.color": "#e4e7eb", "axes.axisbelow": True, "legend.frameon": False,
            "date.converter": "concise",
        }):  # fmt: skip
            fig = Figure(figsize=(6.4, 2.8), layout="constrained")
            draw(fig)
            out = io.StringIO()
            fig.savefig(out, format="svg", metadata={"Date": None})
        svg = _inline_svg(out.getvalue(), prefix, caption)
        attrs = f' data-plot="{escape(kind)}"' + (
            f' data-column="{escape(column)}"' if column else ""
        )
        return f"<figure{attrs}>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _inline_svg(svg: str, prefix: str, label: str) -> str:
    """An SVG file as an element of the page: no prolog or metadata, ids made unique."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    svg = re.sub(r'\s+xmlns(?::xlink)?="[^"]*"', "", svg)
    ids = set(re.findall(r'\bid="([^"]+)"', svg))

    def unique(m: re.Match[str]) -> str:
        start, name, end = m.groups()
        return f"{start}{prefix}{name}{end}" if name in ids else m.group(0)

    svg = re.sub(r'(\bid="|href="#|url\(#)([^")]+)([")])', unique, svg)
    return svg.replace("<svg", f'<svg role="img" aria-label="{escape(label)}"', 1)


def steps(fig: Figure, edges: Sequence[Any], ref: Sequence[Any], cur: Sequence[Any]) -> None:
    """A numeric column's shares per bin, reference filled under the window's outline, so
    the two stay readable where they overlap."""
    ax = fig.add_subplot()
    x = [as_float(e) for e in edges]
    ax.stairs(
        [as_float(v) for v in ref], x, fill=True, color=REFERENCE, alpha=0.45, label="reference"
    )
    ax.stairs([as_float(v) for v in cur], x, color=CURRENT, linewidth=1.8, label="window")
    _percent_axis(ax, "y")
    ax.legend(loc="upper right")


def bars(ax: Axes, labels: Sequence[Any], ref: Sequence[Any] | None, cur: Sequence[Any]) -> None:
    """Shares per label, reference and window side by side (the window alone without a
    reference); long labels are shortened and tilted so they never overlap."""
    x = list(range(len(labels)))
    width = 0.4 if ref is not None else 0.7
    if ref is not None:
        ax.bar(
            [i - 0.2 for i in x], [as_float(v) for v in ref], width, color=REFERENCE,
            label="reference",
        )  # fmt: skip
    shift = 0.2 if ref is not None else 0.0
    ax.bar([i + shift for i in x], [as_float(v) for v in cur], width, color=CURRENT, label="window")
    names = [_short(str(k)) for k in labels]
    tilt = sum(len(k) + 2 for k in names) > 48
    ax.set_xticks(x, names, rotation=35 if tilt else 0, ha="right" if tilt else "center")
    ax.grid(axis="x", visible=False)
    _percent_axis(ax, "y")
    ax.legend(loc="upper right")


def timeline(
    fig: Figure,
    points: list[Mapping[str, Any]],
    lines: list[tuple[str, str, str]],
    line_label: str,
    bar_key: str,
    red_key: str | None,
    band: tuple[Any, Any] | None = None,
) -> None:
    """`lines` (key, label, colour) over time above the counts under `bar_key` (and
    `red_key` in red), so a figure's moves read against how much traffic it rests on;
    `band` (value, interval) shades the window's own figure behind the line."""
    fig.set_size_inches(7.2, 3.6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    x = [utc_time(p.get("at")) for p in points]
    for key, label, colour in lines:  # NaN leaves a gap where a figure is null
        top.plot(x, [as_float(p.get(key)) for p in points], marker=".", color=colour, label=label)
    if band is not None:
        value, ci = band
        if is_num(value):
            top.axhline(float(value), color="#52606d", linewidth=0.8, linestyle="--")
        if isinstance(ci, list | tuple) and len(ci) == 2 and all(map(is_num, ci)):
            top.axhspan(float(ci[0]), float(ci[1]), color="#1c7ed6", alpha=0.12, linewidth=0)
        _percent_axis(top, "y")
    top.set_ylabel(line_label)
    top.legend(loc="upper left", ncols=len(lines))
    step = min((b - a for a, b in itertools.pairwise(x) if b > a), default=timedelta(hours=1))
    shown_bars = [(bar_key, "#748ffc")] + ([(red_key, ERROR)] if red_key else [])
    for name, colour in shown_bars:
        shown = [(at, p[name]) for at, p in zip(x, points, strict=True) if is_num(p.get(name))]
        if shown:
            bottom.bar([a for a, _ in shown], [v for _, v in shown], step * 0.8, color=colour)
    bottom.set_ylabel(bar_key)


def _percent_axis(ax: Axes, which: str) -> None:
    from matplotlib.ticker import PercentFormatter

    getattr(ax, f"{which}axis").set_major_formatter(PercentFormatter(1.0, decimals=None))


def _short(label: str, width: int = 18) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


# reading report values (shared with the page) ------------------------------------------


def is_num(value: Any) -> bool:
    """A finite number, not a bool: anything else in a report is "no data", never a zero."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def as_float(value: Any) -> float:
    """The number, or NaN for no data: NaN leaves a gap in a plot and sorts as unknown."""
    return float(value) if is_num(value) else math.nan


def utc_time(value: Any) -> datetime:
    """A report's ISO 8601 time in UTC (a time without a zone is UTC); raises ValueError."""
    when = datetime.fromisoformat(str(value))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
