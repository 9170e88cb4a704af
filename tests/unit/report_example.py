"""Monitor reports (REPORT.md, `conveyor.monitor-report/1`) to render and check against.

`example_report()` is one day of a served digits classifier: 14 checked columns of which
2 drift (a numeric and a categorical one, plus a column with a long dotted name), an hour
without traffic, labels that arrive late, one firing and one pending alert. Its figures
agree with each other (accuracy and per-class figures come from the confusion matrix,
intervals are Wilson's, the prediction shift is the Jensen-Shannon distance), so a test
may check one against another. `null_report()` is the same window with nothing to show;
`wide_report(n)` has `n` columns. Each call returns a fresh dict a test may change.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

FORMAT = "conveyor.monitor-report/1"
MODEL = "digits-image-classifier"
SINCE = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
HOURS = 24
LONG_COLUMN = "preprocessing.normalisation.per_channel_mean_after_resize_and_center_crop_224px"
DRIFTED = ["brightness", "device"]
CLASSES = [str(d) for d in range(10)]


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """The 95% Wilson score interval of k successes in n trials."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def normal_shares(edges: list[float], mean: float, sd: float) -> list[float]:
    """Shares of a normal(mean, sd) column in each bin between consecutive edges."""
    cdf = [0.5 * (1 + math.erf((e - mean) / (sd * math.sqrt(2)))) for e in edges]
    return [round(b - a, 4) for a, b in itertools.pairwise(cdf)]


def js_distance(p: list[float], q: list[float]) -> float:
    """Jensen-Shannon distance, base 2."""
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(x: list[float]) -> float:
        return sum(a * math.log2(a / b) for a, b in zip(x, m, strict=True) if a > 0)

    return math.sqrt((kl(p) + kl(q)) / 2)


def _at(hour: int) -> str:
    return (SINCE + timedelta(hours=hour)).isoformat()


def _numeric(name: str, mean: float, sd: float, shift: float, spread: float) -> dict[str, Any]:
    lo, hi = mean - 2.326 * sd, mean + 2.326 * sd  # the reference's 1st and 99th percentiles
    edges = [round(lo + (hi - lo) * i / 30, 4) for i in range(31)]
    return {
        "kind": "numeric",
        "edges": edges,
        "reference": normal_shares(edges, mean, sd),
        "current": normal_shares(edges, mean + shift * sd, sd * spread),
    }


def _categorical(categories: list[str], ref: list[float], cur: list[float]) -> dict[str, Any]:
    return {"kind": "categorical", "categories": categories, "reference": ref, "current": cur}


def _column(name: str, kind: str, effect: float, p: float, drift: bool = False) -> dict[str, Any]:
    test, threshold = ("ks", 0.05) if kind == "numeric" else ("chi2", 0.05)
    ci = [round(max(effect - 0.02, 0.0), 4), round(effect + 0.02, 4)]
    finding = {
        "test": test,
        "statistic": round(effect * 0.8, 4),
        "p_value": p,
        "p_adjusted": min(1.0, p * 14),
        "effect": effect,
        "effect_ci": ci,
        "threshold": threshold,
        "drift": drift,
        "n_reference": 5000,
        "n_current": 2715,
    }
    checks = [dict(finding)]
    if kind == "numeric":
        checks.append(
            {**finding, "test": "missing", "effect": 0.0, "effect_ci": [0.0, 0.01],
             "threshold": 0.1, "drift": False, "p_value": 1.0, "p_adjusted": 1.0,
             "reference_share": 0.0, "current_share": 0.0}
        )  # fmt: skip
    return {"name": name, "kind": kind, **finding, "checks": checks}


def _columns() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    numeric = [  # name, mean, sd, shift (sd), spread, effect, p
        ("brightness", 128.0, 32.0, 0.45, 1.1, 0.41, 1.2e-30),
        ("contrast", 0.52, 0.11, 0.02, 1.0, 0.018, 0.41),
        ("sharpness", 3.1, 0.9, 0.0, 1.02, 0.011, 0.77),
        ("width", 28.0, 2.0, 0.01, 1.0, 0.009, 0.93),
        ("height", 28.0, 2.0, 0.0, 1.0, 0.007, 0.98),
        ("ink_share", 0.19, 0.05, -0.03, 1.0, 0.024, 0.22),
        ("stroke_width", 2.4, 0.6, 0.02, 1.0, 0.015, 0.58),
        ("hour_of_day", 13.0, 4.0, 0.03, 1.0, 0.031, 0.07),
        (LONG_COLUMN, 0.449, 0.226, 0.01, 1.0, 0.012, 0.66),
    ]
    columns, distributions = [], {}
    for name, mean, sd, shift, spread, effect, p in numeric:
        columns.append(_column(name, "numeric", effect, p, drift=name in DRIFTED))
        distributions[name] = _numeric(name, mean, sd, shift, spread)
    categorical = [  # name, categories, reference, current, effect, p
        ("device", ["phone", "scanner", "tablet", "webcam", "(missing)"],
         [0.55, 0.25, 0.12, 0.06, 0.02], [0.38, 0.22, 0.11, 0.27, 0.02], 0.19, 3.0e-41),
        ("source", ["app", "web", "batch-upload"], [0.6, 0.3, 0.1], [0.59, 0.31, 0.1], 0.008, 0.8),
        ("locale", ["en-GB", "de-DE", "fr-FR", "es-ES"], [0.4, 0.3, 0.2, 0.1],
         [0.41, 0.29, 0.2, 0.1], 0.01, 0.7),
        ("capture_app", ["camera", "gallery"], [0.7, 0.3], [0.69, 0.31], 0.009, 0.6),
        ("paper", ["white", "lined", "grid"], [0.8, 0.15, 0.05], [0.79, 0.16, 0.05], 0.011, 0.5),
    ]  # fmt: skip
    for name, cats, ref, cur, effect, p in categorical:
        columns.append(_column(name, "categorical", effect, p, drift=name in DRIFTED))
        distributions[name] = _categorical(cats, ref, cur)
    distributions["predicted"] = _categorical(CLASSES, [0.1] * 10, _CURRENT_CLASSES)
    return columns, distributions


_CONFUSION = [  # rows: true class, columns: predicted class (414 labelled rows)
    [40, 0, 0, 0, 0, 0, 1, 0, 0, 0],
    [0, 45, 1, 0, 0, 0, 0, 1, 0, 0],
    [0, 1, 38, 1, 0, 0, 0, 1, 1, 0],
    [0, 0, 1, 37, 0, 2, 0, 0, 1, 0],
    [0, 0, 0, 0, 39, 0, 1, 0, 0, 2],
    [0, 0, 0, 2, 0, 34, 1, 0, 1, 0],
    [1, 0, 0, 0, 0, 1, 40, 0, 0, 0],
    [0, 1, 1, 0, 1, 0, 0, 38, 0, 1],
    [0, 0, 1, 1, 0, 1, 0, 0, 35, 1],
    [0, 0, 0, 0, 2, 0, 0, 2, 1, 35],
]
_CURRENT_CLASSES = [0.098, 0.117, 0.101, 0.097, 0.102, 0.089, 0.103, 0.104, 0.092, 0.097]


def _accuracy() -> dict[str, Any]:
    labelled = sum(map(sum, _CONFUSION))
    correct = sum(_CONFUSION[i][i] for i in range(10))
    per_class = {}
    for i, label in enumerate(CLASSES):
        predicted = sum(row[i] for row in _CONFUSION)
        support = sum(_CONFUSION[i])
        per_class[label] = {
            "precision": round(_CONFUSION[i][i] / predicted, 4),
            "recall": round(_CONFUSION[i][i] / support, 4),
            "support": support,
        }
    timeline: list[dict[str, Any]] = []
    for hour in range(HOURS):  # labels come back a few hours late: the last hours have none
        n = 0 if hour >= 20 else 15 + (hour * 7) % 9
        timeline.append({"at": _at(hour), "labelled": n, "accuracy": None})
    rest = labelled - sum(p["labelled"] for p in timeline)
    timeline[19]["labelled"] += rest
    for hour, point in enumerate(timeline):
        if point["labelled"]:
            point["accuracy"] = round(0.925 + 0.03 * math.sin(hour), 3)
    return {
        "labelled": labelled,
        "correct": correct,
        "accuracy": round(correct / labelled, 4),
        "ci": wilson(correct, labelled),
        "confidence": 0.95,
        "per_class": per_class,
        "confusion": {"labels": CLASSES, "matrix": [list(row) for row in _CONFUSION]},
        "timeline": timeline,
    }


def _health() -> dict[str, Any]:
    timeline: list[dict[str, Any]] = []
    for hour in range(HOURS):
        requests = 0 if hour == 5 else 80 + int(60 * (1 + math.sin((hour - 3) / 24 * 2 * math.pi)))
        timeline.append(
            {
                "at": _at(hour),
                "requests": requests,
                "rows": requests * 32,
                "errors": 3 if hour == 14 else (1 if hour % 7 == 1 else 0),
                "p50_ms": None if requests == 0 else round(3.0 + 0.4 * math.sin(hour), 2),
                "p99_ms": None if requests == 0 else round(11.0 + 6 * (hour == 14), 2),
            }
        )
    requests = sum(p["requests"] for p in timeline)
    errors = sum(p["errors"] for p in timeline)
    return {
        "requests": requests,
        "rows": requests * 32 - errors * 32,
        "errors": errors,
        "error_rate": round(errors / requests, 5),
        "error_rate_ci": wilson(errors, requests),
        "errors_by_status": {"422": errors - 1, "503": 1},
        "latency_ms": {"p50": 3.1, "p95": 8.0, "p99": 12.4, "max": 48.2},
        "batch_rows": {"mean": 24.3, "p50": 32.0, "p95": 64.0, "max": 64.0},
        "roles": {"primary": (requests - 60) * 32, "canary": 60 * 32},
        "timeline": timeline,
    }


def example_report() -> dict[str, Any]:
    """One day of `digits-image-classifier:production` (version 3): 2 of 14 columns drift."""
    columns, distributions = _columns()
    drifted = sum(c["drift"] for c in columns)
    columns.sort(key=lambda c: (not c["drift"], -c["effect"]))
    return {
        "format": FORMAT,
        "model": MODEL,
        "version": 3,
        "ref": f"{MODEL}:production",
        "window": {"since": SINCE.isoformat(), "until": _at(HOURS)},
        "health": _health(),
        "predictions": {
            "classes": dict(zip(CLASSES, _CURRENT_CLASSES, strict=True)),
            "reference_classes": dict.fromkeys(CLASSES, 0.1),
            "shift": round(js_distance(_CURRENT_CLASSES, [0.1] * 10), 4),
            "confidence": {"mean": 0.93, "p50": 0.97, "reference_mean": 0.95},
        },
        "drift": {
            "drift": drifted > 0,
            "share": round(drifted / len(columns), 4),
            "n_reference": 5000,
            "n_current": 2715,
            "alpha": 0.05,
            "correction": "holm",
            "columns": columns,
            "schema": {"only_reference": [], "only_current": ["session_id"]},
            "skipped": {"image": "binary values are not checked"},
        },
        "distributions": distributions,
        "accuracy": _accuracy(),
        "alerts": [
            {"rule": "drift.share > 0.1 for 2 windows", "state": "firing",
             "since": _at(22), "value": round(drifted / len(columns), 4)},
            {"rule": "latency.p99 > 15 for 3 windows", "state": "pending",
             "since": _at(23), "value": 17.0},
        ],
    }  # fmt: skip


def null_report() -> dict[str, Any]:
    """The same window with no traffic, no labels and too little data: every figure null."""
    return {
        "format": FORMAT,
        "model": MODEL,
        "version": 3,
        "ref": f"{MODEL}:production",
        "window": {"since": SINCE.isoformat(), "until": _at(HOURS)},
        "health": {
            "requests": 0, "rows": 0, "errors": 0, "error_rate": None, "error_rate_ci": None,
            "errors_by_status": {},
            "latency_ms": {"p50": None, "p95": None, "p99": None, "max": None},
            "batch_rows": {"mean": None, "p50": None, "p95": None, "max": None},
            "roles": {},
            "timeline": [
                {"at": _at(h), "requests": 0, "rows": 0, "errors": 0, "p50_ms": None,
                 "p99_ms": None} for h in range(HOURS)
            ],
        },
        "predictions": {"classes": None, "reference_classes": None, "shift": None,
                        "confidence": None},
        "drift": {"drift": False, "note": "not enough data: 0 rows in the window, 20 needed"},
        "distributions": None,
        "accuracy": {"labelled": 0, "correct": 0, "accuracy": None, "ci": None,
                     "confidence": 0.95, "per_class": None, "confusion": None,
                     "timeline": [{"at": _at(h), "labelled": 0, "accuracy": None}
                                  for h in range(HOURS)]},
        "alerts": [],
    }  # fmt: skip


def wide_report(n_columns: int, drifted: int = 0) -> dict[str, Any]:
    """The example with `n_columns` numeric columns, the first `drifted` of them drifting."""
    report = example_report()
    columns, distributions = [], {}
    template = _numeric("x", 0.0, 1.0, 0.0, 1.0)
    for i in range(n_columns):
        name = f"feature_{i:04d}"
        drift = i < drifted
        columns.append(_column(name, "numeric", 0.3 if drift else 0.01 + i % 7 / 1000, 0.5, drift))
        distributions[name] = dict(template)
    report["drift"].update(
        columns=columns, drift=drifted > 0, share=drifted / n_columns if n_columns else 0.0
    )
    report["distributions"] = distributions
    return report
