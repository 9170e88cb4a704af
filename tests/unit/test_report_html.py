"""The HTML monitor report: one self-contained page a person can read, whatever the report holds."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest

from conveyor.monitoring.html import MAX_COLUMN_PLOTS, TOP_COLUMN_PLOTS, render_html
from tests.unit.report_example import (
    DRIFTED,
    LONG_COLUMN,
    example_report,
    null_report,
    wide_report,
    wilson,
)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
VOID = {"meta", "br", "img", "link", "input", "hr", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    content: list[Node | str] = field(default_factory=list)  # in document order

    @property
    def children(self) -> list[Node]:
        return [c for c in self.content if isinstance(c, Node)]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.content)

    def walk(self) -> list[Node]:
        return [self, *(n for c in self.children for n in c.walk())]

    def find(self, tag: str, **attrs: str) -> list[Node]:
        return [
            n for n in self.walk()
            if n.tag == tag and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]  # fmt: skip


class Tree(HTMLParser):
    """A small DOM from html.parser: enough to find elements and their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].content.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].content.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert tag == self.stack[-1].tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].content.append(data)


def parse(page: str) -> Node:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [tree.root], "unclosed elements"
    return tree.root


def section(root: Node, name: str) -> Node:
    (found,) = root.find("section", id=name)
    return found


def plots(root: Node) -> list[Node]:
    return [f for f in root.find("figure") if "data-plot" in f.attrs]


@pytest.fixture(scope="module")
def example_page() -> str:
    return render_html(example_report())


def test_the_page_is_self_contained(example_page: str) -> None:
    root = parse(example_page)
    assert "http://" not in example_page and "https://" not in example_page
    assert not root.find("script") and not root.find("link") and not root.find("iframe")
    for node in root.walk():
        for name, value in node.attrs.items():
            if name in {"src", "href", "xlink:href", "data", "action"}:
                assert value.startswith("#"), (node.tag, name, value)
            assert "url(" not in value or "url(#" in value, (node.tag, value)
    for style in root.find("style"):
        assert "url(" not in style.text() and "@import" not in style.text()


def test_headline_then_sections_in_reading_order(example_page: str) -> None:
    root = parse(example_page)
    (header,) = root.find("header")
    assert header.find("h1")[0].text() == "digits-image-classifier:production"
    sub = header.find("p", **{"class": "sub"})[0].text()
    assert "version 3" in sub and "2026-12-03 11:00 to 2026-12-04 11:00 UTC (24 h)" in sub
    verdict = header.find("p", **{"class": "verdict drift"})[0].text()
    assert verdict == "Drift in 2 of 14 columns: brightness, device"
    order = [s.attrs["id"] for s in root.find("section")]
    assert order == ["open-alerts", "health", "accuracy", "predictions", "drift"]
    alerts = section(root, "open-alerts").text()
    assert "drift.share > 0.1 for 2 windows" in alerts and "firing" in alerts


def test_one_svg_per_expected_plot(example_page: str) -> None:
    root = parse(example_page)
    figures = plots(root)
    assert Counter(f.attrs["data-plot"] for f in figures) == {
        "latency": 1, "accuracy": 1, "predictions": 1, "distribution": len(DRIFTED),
    }  # fmt: skip
    assert [f.attrs["data-column"] for f in figures if "data-column" in f.attrs] == DRIFTED
    assert all(len(f.find("svg")) == 1 for f in figures)
    assert len(root.find("svg")) == len(figures)


def test_plots_have_unique_ids_and_the_page_is_deterministic(example_page: str) -> None:
    ids = [n.attrs["id"] for n in parse(example_page).walk() if "id" in n.attrs]
    assert len(ids) > 100 and len(ids) == len(set(ids))
    assert render_html(example_report()) == example_page


def test_without_drift_the_columns_nearest_their_threshold_are_plotted() -> None:
    report = example_report()
    for column in report["drift"]["columns"]:
        column["drift"] = False
    report["drift"]["drift"] = False
    root = parse(render_html(report))
    assert root.find("p", **{"class": "verdict ok"})[0].text() == "No drift in 14 columns"
    shown = [f.attrs["data-column"] for f in plots(root) if f.attrs["data-plot"] == "distribution"]
    assert shown == ["brightness", "device", "hour_of_day"][:TOP_COLUMN_PLOTS]


def test_every_column_is_in_the_table_with_its_name_whole() -> None:
    report = example_report()
    longer = "embedding." + "very_long_segment_" * 15 + "norm"
    report["drift"]["columns"][3]["name"] = longer
    root = parse(render_html(report))
    names = [td.text() for td in section(root, "drift").find("td", **{"class": "name"})]
    assert len(names) == 14 and LONG_COLUMN in names and longer in names
    (row,) = [tr for tr in root.find("tr") if tr.children and tr.children[0].text() == "brightness"]
    cells = [td.text() for td in row.children]
    assert cells[1:4] == ["numeric", "ks (+ missing)", "0.41 [0.39, 0.43]"]
    assert cells[-2:] == ["5,000 / 2,715", "drift"]


def test_hostile_strings_are_escaped_everywhere() -> None:
    report = example_report()
    report["model"] = report["ref"] = HOSTILE
    report["version"] = HOSTILE
    column = report["drift"]["columns"][1]  # device, drifted, categorical
    report["distributions"][HOSTILE] = report["distributions"].pop(column["name"])
    report["distributions"][HOSTILE]["categories"][0] = HOSTILE
    column["name"] = HOSTILE
    report["drift"]["skipped"] = {HOSTILE: HOSTILE}
    report["alerts"][0]["rule"] = report["alerts"][0]["state"] = HOSTILE
    report["health"]["errors_by_status"] = {HOSTILE: 1}
    report["accuracy"]["per_class"][HOSTILE] = report["accuracy"]["per_class"].pop("3")
    report["accuracy"]["confusion"]["labels"][3] = HOSTILE
    report["predictions"]["classes"][HOSTILE] = report["predictions"]["classes"].pop("3")
    page = render_html(report)
    root = parse(page)
    assert not root.find("script") and not root.find("img")
    assert all(not a.startswith("on") for n in root.walk() for a in n.attrs)
    assert "&lt;script&gt;" in page and "<script" not in page
    assert HOSTILE in root.find("h1")[0].text()  # shown as text, not run
    assert HOSTILE in section(root, "drift").text() and HOSTILE in section(root, "accuracy").text()
    assert sum(f.attrs.get("data-column") == HOSTILE for f in plots(root)) == 1


def test_a_report_of_nulls_says_no_data_and_plots_nothing() -> None:
    root = parse(render_html(null_report()))
    assert not root.find("svg")
    verdict = root.find("p", **{"class": "verdict unknown"})[0].text()
    assert verdict.startswith("Not enough data: 0 rows")
    for name in ("health", "accuracy", "predictions"):
        assert "no data" in section(root, name).text(), name
    health = section(root, "health").text()
    assert "ms" not in health and "%" not in health  # unknown latency and rate are not zeros


@pytest.mark.parametrize(
    "change",
    [
        {"health": None, "accuracy": None, "predictions": None, "drift": None},
        {"distributions": None, "alerts": None, "window": None, "version": None},
        {"health": {"requests": 5, "timeline": [{"at": "not a time"}, None, {"at": None}]}},
        {"accuracy": {"labelled": 3, "accuracy": 1.0, "ci": None, "confusion": {"labels": ["a"]}}},
        {"predictions": {"classes": {"a": None}, "reference_classes": None}},
        {"drift": {"drift": True, "columns": 5, "schema": {"only_current": 7}, "skipped": [1]}},
    ],
)
def test_missing_or_broken_parts_render_as_no_data(change: dict[str, Any]) -> None:
    report = {**example_report(), **change}
    root = parse(render_html(report))
    assert "no data" in root.text()
    assert parse(render_html({})).find("h1")


def test_a_column_without_usable_bins_is_listed_but_not_plotted() -> None:
    report = example_report()
    report["distributions"]["brightness"]["edges"] = [0.0, 1.0]  # does not match the shares
    report["distributions"]["device"] = None
    root = parse(render_html(report))
    assert not [f for f in plots(root) if f.attrs["data-plot"] == "distribution"]
    assert section(root, "drift").text().count("no data") == 2


def test_null_accuracy_points_are_not_plotted_as_zeros() -> None:
    report = example_report()
    for point in report["accuracy"]["timeline"]:
        point["accuracy"] = None
    root = parse(render_html(report))
    assert [f.attrs["data-plot"] for f in plots(root)].count("accuracy") == 0
    assert "no data over time" in section(root, "accuracy").text()


def test_accuracy_carries_its_label_count_and_interval(example_page: str) -> None:
    (line,) = parse(example_page).find("p", id="accuracy-figure")
    assert line.text() == "92.0% on 414 labels (95% CI 89.0% to 94.3%); 381 correct"
    report = example_report()
    report["accuracy"].update(labelled=40, correct=37, accuracy=0.925, ci=wilson(37, 40))
    (line,) = parse(render_html(report)).find("p", id="accuracy-figure")
    assert line.text().startswith("92.5% on 40 labels (95% CI 80.1% to 97.4%)")


def test_amounts_read_at_a_glance(example_page: str) -> None:
    health = section(parse(example_page), "health").text()
    assert "3,181" in health and "101,568" in health
    assert "0.22% (95% CI 0.11% to 0.45%)" in health
    assert "p50 3.1 ms, p95 8 ms, p99 12.4 ms, max 48.2 ms" in health
    report = example_report()
    report["health"]["latency_ms"] = {"p50": 0.42, "p95": 12.34, "p99": 250.0, "max": 1234.0}
    health = section(parse(render_html(report)), "health").text()
    assert "p50 420 µs, p95 12.3 ms, p99 250 ms, max 1.2 s" in health


def test_a_thousand_columns_are_all_tabled_but_few_plotted() -> None:
    root = parse(render_html(wide_report(1000, drifted=400)))
    drift = section(root, "drift")
    assert len(drift.find("tr", **{"class": "drift"})) == 400
    assert len(drift.find("td", **{"class": "name"})) == 1000
    assert len([f for f in plots(root) if f.attrs["data-plot"] == "distribution"]) == (
        MAX_COLUMN_PLOTS
    )
    verdict = root.find("p", **{"class": "verdict drift"})[0].text()
    assert verdict.startswith("Drift in 400 of 1,000 columns: feature_0000, ")
    assert verdict.endswith(" and 395 more")


def test_importing_the_renderer_does_not_import_matplotlib() -> None:
    code = "import sys, conveyor.monitoring.html; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
