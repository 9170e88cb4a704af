"""The monitor report as one self-contained HTML page: `monitor report ... --out report.html`.

`render_html(report)` reads the report dict (REPORT.md, `conveyor.monitor-report/1`) and
returns a page that needs nothing else: inline CSS, plots as inline SVG, no script, no
URL, so it opens offline from a file, in a mail attachment or on paper. Top to bottom: a
headline with the drift verdict, open alerts, health, accuracy, predictions, drift. This
module is the page (sections, tables, escaping, how amounts and times read); the plots
are drawn by `conveyor.monitoring.plots`, which also reads numbers and times for both.

Rules it keeps, and why:

- A null figure (no traffic, no labels, too little data) reads "no data" and is never
  plotted as a zero: a zero error rate and an unknown one are different news.
- Every string from the report is HTML-escaped (model, column and class names and rule
  text come from users and the traffic); the page has no script for them to reach.
- An accuracy always carries its label count and interval next to it, so 93% on 40
  labels does not read like 93% on 40,000.
- The drift table lists every column with its name whole; only the drifted columns
  (else the few nearest their threshold) are plotted, at most `MAX_COLUMN_PLOTS`, so a
  report of 1,000 columns costs a table row per column and a dozen plots.
- Importing this module loads no matplotlib: the plots import it only when they draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from conveyor.core.units import human_seconds
from conveyor.monitoring.plots import (
    CURRENT,
    Plots,
    as_float,
    bars,
    is_num,
    steps,
    timeline,
    utc_time,
)

FORMAT = "conveyor.monitor-report/1"
MAX_COLUMN_PLOTS = 12  # distributions plotted when many columns drift
TOP_COLUMN_PLOTS = 3  # plotted when none drifts: the columns nearest their threshold
MAX_NAMED_IN_VERDICT = 5
MAX_HEATMAP_LABELS = 30
MAX_BARS = 20
NO_DATA = '<p class="nodata">no data{}</p>'

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1f2933;max-width:74rem;margin:1.5rem auto;padding:0 1rem}
h1{font-size:1.5rem;margin:0;overflow-wrap:anywhere}h2{font-size:1.15rem;margin:2rem 0 .5rem;
border-bottom:1px solid #d3d8de;padding-bottom:.2rem}h3{font-size:1rem;margin:1rem 0 .3rem}
.sub{color:#52606d;margin:.2rem 0 .8rem}.nodata{color:#7b8794;font-style:italic}
.verdict{font-size:1.15rem;font-weight:600;padding:.5rem .8rem;border-left:5px solid #9aa5b1;
background:#f5f7fa;overflow-wrap:anywhere}.verdict.drift{border-color:#c92a2a;background:#fff5f5}
.verdict.ok{border-color:#2b8a3e;background:#f4fbf5}
table{border-collapse:collapse;margin:.4rem 0}th,td{padding:.2rem .6rem;text-align:left;
vertical-align:top;border-bottom:1px solid #e4e7eb}th{font-weight:600;background:#f5f7fa}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.name{overflow-wrap:anywhere;min-width:8rem;max-width:32rem}tr.drift td{background:#fff5f5}
.bad{color:#c92a2a;font-weight:600}.warn{color:#b35c00;font-weight:600}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1.2rem;margin:.4rem 0}
dt{color:#52606d}dd{margin:0;font-variant-numeric:tabular-nums}.big{font-size:1.2rem}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(24rem,1fr));gap:1rem}
figure{margin:.4rem 0;break-inside:avoid}figure svg{width:100%;height:auto;max-width:46rem}
figcaption{font-size:.9rem;color:#3e4c59;overflow-wrap:anywhere}
table.heat td{text-align:center;min-width:1.8rem;border:1px solid #fff}
footer{margin-top:2rem;color:#7b8794;font-size:.85rem}
@media print{body{max-width:none;margin:0;font-size:10pt}h2{break-after:avoid}
tr,figure,dl{break-inside:avoid}*{print-color-adjust:exact;-webkit-print-color-adjust:exact}}
"""


def render_html(report: dict[str, Any]) -> str:
    """The whole page for one report dict (REPORT.md); never raises on null figures."""
    plots = Plots()
    drift = report.get("drift")
    ref = _text(report.get("ref") or report.get("model"), "model")
    body = [
        _headline(report, drift),
        _section("Open alerts", _alerts(report.get("alerts"))),
        _section("Health", _health(_map(report.get("health")), plots)),
        _section("Accuracy", _accuracy(_map(report.get("accuracy")), plots)),
        _section("Predictions", _predictions(_map(report.get("predictions")), plots)),
        _section("Drift", _drift(drift, _map(report.get("distributions")), plots)),
        f"<footer>{_e(_text(report.get('format'), 'no format'))}; all times UTC.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(ref)}: monitor report</title><style>{_CSS}</style></head>\n"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# sections ------------------------------------------------------------------------------


def _headline(report: Mapping[str, Any], drift: Any) -> str:
    ref = _text(report.get("ref") or report.get("model"), "unknown model")
    window = _map(report.get("window"))
    facts = [f"model {_e(_text(report.get('model'), 'unknown'))}"]
    facts.append(f"version {_e(_text(report.get('version'), 'unknown'))}")
    facts.append(_e(_window(window.get("since"), window.get("until"))))
    verdict, kind = _verdict(drift)
    warn = ""
    if report.get("format") != FORMAT:
        said = _e(report.get("format"))
        warn = f'<p class="warn">This page reads {FORMAT}; the report says {said}.</p>'
    return (
        f'<header><h1>{_e(ref)}</h1><p class="sub">{" · ".join(facts)}</p>{warn}'
        f'<p class="verdict {kind}">{_e(verdict)}</p></header>'
    )


def _verdict(drift: Any) -> tuple[str, str]:
    if not isinstance(drift, Mapping):
        return "Drift: no data", "unknown"
    if drift.get("note"):
        note = str(drift["note"])
        return note[:1].upper() + note[1:], "unknown"
    columns = _columns(drift)
    checked = [c for c in columns if _was_checked(c)]
    drifted = [str(c.get("name")) for c in _by_severity(c for c in columns if c.get("drift"))]
    if drifted:
        named = ", ".join(drifted[:MAX_NAMED_IN_VERDICT])
        more = len(drifted) - MAX_NAMED_IN_VERDICT
        tail = f" and {more:,} more" if more > 0 else ""
        return f"Drift in {len(drifted):,} of {len(checked):,} columns: {named}{tail}", "drift"
    if not checked:
        return "Not enough data: no column had enough rows to test", "unknown"
    return f"No drift in {len(checked):,} columns", "ok"


def _alerts(alerts: Any) -> str:
    if alerts is None:
        return NO_DATA.format("")
    rows = [a for a in _seq(alerts) or [] if isinstance(a, Mapping)]
    if not rows:
        return "<p>No open alerts.</p>"
    head = ["rule", "state", "since", ("value", "n")]
    body = []
    for a in rows:
        state = _text(a.get("state"), "-")
        mark = "bad" if state == "firing" else "warn" if state == "pending" else ""
        body.append(
            [(a.get("rule"), "name"), (state, mark), (_when(a.get("since")), ""),
             (_num(a.get("value")), "n")]
        )  # fmt: skip
    return _table(head, body)


def _health(health: Mapping[str, Any], plots: Plots) -> str:
    if not health:
        return NO_DATA.format("")
    lat, batch = _map(health.get("latency_ms")), _map(health.get("batch_rows"))
    rate = _pct(health.get("error_rate"))
    if health.get("error_rate") is not None:
        rate += " " + _ci(health.get("error_rate_ci"), _pct)
    statuses = _map(health.get("errors_by_status"))
    roles = _map(health.get("roles"))
    facts = [
        ("requests", _count(health.get("requests"))),
        ("rows predicted", _count(health.get("rows"))),
        ("errors", _count(health.get("errors"))),
        ("error rate", rate),
        ("errors by status", ", ".join(f"{k}: {_count(v)}" for k, v in statuses.items()) or "-"),
        ("latency", _quantiles(lat, ("p50", "p95", "p99", "max"), _ms)),
        ("rows per batch", _quantiles(batch, ("mean", "p50", "p95", "max"), _num)),
        ("rows by role", ", ".join(f"{k}: {_count(v)}" for k, v in roles.items()) or "-"),
    ]
    points = _points(health.get("timeline"))
    lines = [("p50_ms", "p50", "#1c7ed6"), ("p99_ms", "p99", CURRENT)]
    latency = any(is_num(p.get(k)) for p in points for k in ("p50_ms", "p99_ms"))
    if not latency and not any(_f0(p.get("requests")) > 0 for p in points):
        plot = NO_DATA.format(" over time: no requests in this window")
    else:
        plot = plots.figure(
            "latency",
            "Latency per request (p50, p99) and requests over time; errors in red",
            lambda fig: timeline(fig, points, lines, "latency (ms)", "requests", "errors"),
        )
    return _facts(facts) + plot


def _accuracy(acc: Mapping[str, Any], plots: Plots) -> str:
    if not acc or acc.get("accuracy") is None:
        labelled = acc.get("labelled") if acc else None
        why = f": {_count(labelled)} labelled rows in this window" if labelled is not None else ""
        return NO_DATA.format(_e(why))
    confidence = as_float(acc.get("confidence"))  # NaN when missing: then 95%
    level = round(100 * confidence) if 0 < confidence < 1 else 95
    line = (
        f'<p class="big" id="accuracy-figure"><strong>{_e(_pct(acc["accuracy"]))}</strong> on '
        f"{_e(_count(acc.get('labelled')))} labels "
        f"{_e(_ci(acc.get('ci'), _pct, level))}; {_e(_count(acc.get('correct')))} correct</p>"
    )
    per_class = _map(acc.get("per_class"))
    rows = [
        [(label, "name"), (_pct(_map(m).get("precision")), "n"),
         (_pct(_map(m).get("recall")), "n"), (_count(_map(m).get("support")), "n")]
        for label, m in sorted(per_class.items(), key=lambda kv: _natural(kv[0]))
    ]  # fmt: skip
    head = ["class", ("precision", "n"), ("recall", "n"), ("labels", "n")]
    table = _table(head, rows) if rows else NO_DATA.format(" per class")
    points = _points(acc.get("timeline"))
    if any(is_num(p.get("accuracy")) for p in points):
        band = (acc.get("accuracy"), acc.get("ci"))
        plot = plots.figure(
            "accuracy",
            "Accuracy over time (line; the window's figure and interval shaded) and labels",
            lambda fig: timeline(fig, points, [("accuracy", "accuracy", "#1c7ed6")],
                                  "accuracy", "labelled", None, band),
        )  # fmt: skip
    else:
        plot = NO_DATA.format(" over time")
    return (
        line + plot + "<h3>Per class</h3>" + table + "<h3>Confusion (rows: true class)</h3>"
        + _heatmap(_map(acc.get("confusion")))
    )  # fmt: skip


def _predictions(pred: Mapping[str, Any], plots: Plots) -> str:
    if not pred:
        return NO_DATA.format("")
    conf = _map(pred.get("confidence"))
    facts = [
        ("shift from reference (Jensen-Shannon)", _num(pred.get("shift"))),
        ("confidence mean", _pct(conf.get("mean"))),
        ("confidence mean in reference", _pct(conf.get("reference_mean"))),
        ("confidence p50", _pct(conf.get("p50"))),
    ]  # fmt: skip
    current, reference = _map(pred.get("classes")), _map(pred.get("reference_classes"))
    if not any(is_num(v) for v in current.values()):
        return _facts(facts) + NO_DATA.format(" on predicted classes")
    labels = sorted(set(current) | set(reference), key=_natural)
    if len(labels) > MAX_BARS:
        top = sorted(
            labels, key=lambda k: -max(as_float(current.get(k)), as_float(reference.get(k)), 0)
        )
        labels = sorted(top[:MAX_BARS], key=_natural)
    ref = [reference.get(k) for k in labels] if reference else None
    plot = plots.figure(
        "predictions",
        f"Predicted class shares, current vs reference ({len(labels)} classes)",
        lambda fig: bars(fig.add_subplot(), labels, ref, [current.get(k) for k in labels]),
    )
    return _facts(facts) + plot


def _drift(drift: Any, distributions: Mapping[str, Any], plots: Plots) -> str:
    if not isinstance(drift, Mapping):
        return NO_DATA.format("")
    if drift.get("note"):
        return f'<p class="nodata">{_e(_verdict(drift)[0])}</p>'
    columns = _columns(drift)
    facts = [
        ("rows in reference", _count(drift.get("n_reference"))),
        ("rows in window", _count(drift.get("n_current"))),
        ("drifted share", _pct(drift.get("share"))),
        ("alpha", f"{_num(drift.get('alpha'))} ({_text(drift.get('correction'), '-')} correction)"),
    ]  # fmt: skip
    schema = _map(drift.get("schema"))
    for key, what in (("only_reference", "only in reference"), ("only_current", "only in window")):
        if names := _seq(schema.get(key)):
            facts.append((what, ", ".join(map(str, names))))
    for name, why in _map(drift.get("skipped")).items():
        facts.append((f"skipped {name}", str(why)))
    drifted = _by_severity(c for c in columns if c.get("drift"))
    shown = drifted[:MAX_COLUMN_PLOTS] or _by_severity(columns)[:TOP_COLUMN_PLOTS]
    which = "drifted" if drifted else "closest to their threshold (none drifted)"
    note = f" (the {len(shown)} largest of {len(drifted):,})" if len(drifted) > len(shown) else ""
    figures = [_distribution(c, distributions.get(str(c.get("name"))), plots) for c in shown]
    head = ["column", "kind", "test", ("effect [90% CI]", "n"), ("threshold", "n"),
            ("p adjusted", "n"), ("n ref / window", "n"), "verdict"]  # fmt: skip
    rows = [_drift_row(c) for c in drifted + [c for c in columns if not c.get("drift")]]
    return (
        _facts(facts) + f"<h3>Columns {which}{note}</h3>"
        + (f'<div class="plots">{"".join(figures)}</div>' if figures else NO_DATA.format(""))
        + f"<h3>All {len(columns):,} columns</h3>" + _table(head, rows, drifted=len(drifted))
    )  # fmt: skip


def _drift_row(c: Mapping[str, Any]) -> list[tuple[Any, str]]:
    tests = [str(k.get("test")) for k in _seq(c.get("checks")) or [] if isinstance(k, Mapping)]
    test = _text(c.get("test"), "-")
    others = [t for t in tests if t != test]
    test += f" (+ {', '.join(others)})" if others else ""
    effect = _num(c.get("effect"))
    if c.get("effect") is not None and c.get("effect_ci"):
        effect += " " + _ci(c.get("effect_ci"), _num, label="")
    verdict = ("drift", "bad") if c.get("drift") else ("no drift", "")
    if c.get("note") or (c.get("p_value") is None and not c.get("drift")):
        verdict = (_text(c.get("note"), "not enough data"), "")
    return [
        (c.get("name"), "name"), (c.get("kind"), ""), (test, ""), (effect, "n"),
        (_num(c.get("threshold")), "n"), (_p(c.get("p_adjusted")), "n"),
        (f"{_count(c.get('n_reference'))} / {_count(c.get('n_current'))}", "n"), verdict,
    ]  # fmt: skip


def _distribution(column: Mapping[str, Any], dist: Any, plots: Plots) -> str:
    name = str(column.get("name"))
    caption = f"{name}: reference (grey) vs window (orange), share of rows"
    d = _map(dist)
    ref, cur = _seq(d.get("reference")), _seq(d.get("current"))
    edges, cats = _seq(d.get("edges")), _seq(d.get("categories"))
    if ref is None or cur is None or not any(map(is_num, cur)):
        pass
    elif (
        d.get("kind") == "numeric"
        and edges
        and all(map(is_num, edges))
        and len(edges) == len(ref) + 1 == len(cur) + 1
    ):
        return plots.figure("distribution", caption, lambda f: steps(f, edges, ref, cur), name)
    elif d.get("kind") == "categorical" and cats and len(cats) == len(ref) == len(cur):
        return plots.figure(
            "distribution", caption, lambda f: bars(f.add_subplot(), cats, ref, cur), name
        )
    return f"<figure><figcaption>{_e(name)}</figcaption>{NO_DATA.format('')}</figure>"


# html pieces ---------------------------------------------------------------------------


def _section(title: str, body: str) -> str:
    slug = title.lower().replace(" ", "-")
    return f'<section id="{slug}"><h2>{_e(title)}</h2>{body}</section>'


def _facts(pairs: list[tuple[str, str]]) -> str:
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs)
        + "</dl>"
    )


def _table(head: list[Any], rows: list[list[tuple[Any, str]]], drifted: int = 0) -> str:
    def cell(tag: str, text: Any, cls: str) -> str:
        return f'<{tag} class="{cls}">{_e(text)}</{tag}>' if cls else f"<{tag}>{_e(text)}</{tag}>"

    th = "".join(cell("th", *(h if isinstance(h, tuple) else (h, ""))) for h in head)
    body = "".join(
        ('<tr class="drift">' if i < drifted else "<tr>")
        + "".join(cell("td", *c) for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _heatmap(confusion: Mapping[str, Any]) -> str:
    labels, matrix = confusion.get("labels"), confusion.get("matrix")
    labels, matrix = _seq(labels), _seq(matrix)
    if not labels or matrix is None or len(labels) != len(matrix):
        return NO_DATA.format("")
    rows_of = [_seq(r) or [] for r in matrix]
    keep = sorted(range(len(labels)), key=lambda i: -sum(map(_f0, rows_of[i])))
    keep = sorted(keep[:MAX_HEATMAP_LABELS])
    note = (
        "" if len(keep) == len(labels) else f"<p>The {len(keep)} classes with the most labels.</p>"
    )
    head = "".join(f"<th>{_e(labels[j])}</th>" for j in keep)
    rows = []
    for i in keep:
        row = rows_of[i]
        total = sum(map(_f0, row)) or 1.0
        cells = []
        for j in keep:
            n = row[j] if j < len(row) else None
            share = _f0(n) / total
            ink = "#fff" if share > 0.55 else "#1f2933"
            rgb = ",".join(str(round(255 - share * (255 - c))) for c in (28, 126, 214))
            title = f"true {labels[i]}, predicted {labels[j]}: {_count(n)} ({_pct(share)} of row)"
            style = f"background:rgb({rgb});color:{ink}"
            cells.append(f'<td style="{style}" title="{_e(title)}">{_e(_count(n))}</td>')
        rows.append(f"<tr><th>{_e(labels[i])}</th>{''.join(cells)}</tr>")
    head = f"<tr><th>true \\ predicted</th>{head}</tr>"
    return f'{note}<table class="heat">{head}{"".join(rows)}</table>'


# amounts -------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any, missing: str) -> str:
    return missing if value is None else str(value)


def _f0(value: Any) -> float:
    return float(value) if is_num(value) else 0.0


def _seq(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, list | tuple) else None


def _count(value: Any) -> str:
    return f"{round(value):,}" if is_num(value) else _text(value, "no data")


def _num(value: Any) -> str:
    if not is_num(value):
        return _text(value, "no data")
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _pct(value: Any) -> str:
    if not is_num(value):
        return _text(value, "no data")
    v = 100 * value
    text = f"{v:.2g}%" if 0 < abs(v) < 1 else f"{v:.1f}%"
    return f"{v:.2f}%" if text == "100.0%" and v < 100 else text


def _ms(value: Any) -> str:
    if not is_num(value):
        return _text(value, "no data")
    if value < 1:
        return f"{value * 1000:.0f} µs"
    return f"{value:.3g} ms" if value < 1000 else human_seconds(value / 1000)


def _p(value: Any) -> str:
    if not is_num(value):
        return _text(value, "-")
    return f"{value:.2g}" if value < 0.001 else f"{value:.3g}"


def _quantiles(m: Mapping[str, Any], keys: Sequence[str], fmt: Callable[[Any], str]) -> str:
    if not any(is_num(m.get(k)) for k in keys):
        return "no data"
    return ", ".join(f"{k} {fmt(m.get(k))}" for k in keys)


def _ci(ci: Any, fmt: Callable[[Any], str], level: int = 95, label: str = "CI ") -> str:
    ci = _seq(ci)
    if ci is None or len(ci) != 2:
        return f"({level}% CI: no data)" if label else "[no interval]"
    if not label:
        return f"[{fmt(ci[0])}, {fmt(ci[1])}]"
    return f"({level}% {label}{fmt(ci[0])} to {fmt(ci[1])})"


def _when(value: Any) -> str:
    try:
        return utc_time(value).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return _text(value, "unknown")


def _window(since: Any, until: Any) -> str:
    try:
        a, b = utc_time(since), utc_time(until)
    except ValueError:
        return f"{_text(since, '?')} to {_text(until, '?')}"
    seconds = (b - a).total_seconds()
    span = next(
        (f"{seconds / s:.0f} {unit}" for s, unit in ((86400, "days"), (3600, "h"), (60, "min"))
         if seconds >= s and seconds % s == 0 and not (unit == "days" and seconds < 2 * 86400)),
        human_seconds(seconds),
    )  # fmt: skip
    end = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a.strftime('%Y-%m-%d %H:%M')} to {end} UTC ({span})"


def _points(timeline: Any) -> list[Mapping[str, Any]]:
    """The timeline's points with a readable time, in time order."""
    points = []
    for p in _seq(timeline) or []:
        if isinstance(p, Mapping):
            try:
                points.append((utc_time(p.get("at")), p))
            except ValueError:
                continue
    return [p for _, p in sorted(points, key=lambda tp: tp[0])]


def _columns(drift: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in _seq(drift.get("columns")) or [] if isinstance(c, Mapping)]


def _was_checked(c: Mapping[str, Any]) -> bool:
    checks = [k for k in _seq(c.get("checks")) or [c] if isinstance(k, Mapping)]
    return bool(c.get("drift")) or any(k.get("p_value") is not None for k in checks)


def _by_severity(columns: Any) -> list[Mapping[str, Any]]:
    """Furthest past (or nearest to) its threshold first: effect / threshold."""

    def key(c: Mapping[str, Any]) -> float:
        effect, threshold = as_float(c.get("effect")), as_float(c.get("threshold"))
        ratio = effect / threshold if threshold > 0 else effect
        return -ratio if math.isfinite(ratio) else math.inf

    return sorted(columns, key=key)


def _natural(label: Any) -> tuple[int, float, str]:
    text = str(label)
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)
