"""The Prometheus side as an operator meets it: rules, dashboard and scrapes, by promtool.

The Grafana dashboard's queries are the recording rules' expressions (its `$model`
read as `.+`), so `promtool check rules` checks every panel; every metric a query names
must be in a real scrape (a `conveyor serve` process and a `MonitorMetrics.serve()`
endpoint), and both scrapes must pass `promtool check metrics`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conveyor.core.errors import ConveyorError
from conveyor.monitoring.exporter import MonitorMetrics
from tests.integration.serving_models import (
    REPO,
    SOURCE,
    ServerProcess,
    random_rows,
    tabular_model,
    write_model,
)

DASHBOARD = REPO / "deploy" / "grafana" / "conveyor.json"
RULES = REPO / "deploy" / "prometheus" / "conveyor-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "tests.yml"


def report(model: str = "iris", version: int = 1) -> dict[str, Any]:
    """A window report as monitoring/report.py builds it (REPORT.md, DRIFT.md)."""
    return {
        "format": "conveyor.monitor-report/1",
        "model": model,
        "version": version,
        "ref": f"{model}:production",
        "window": {"since": "2026-12-04T10:00:00+00:00", "until": "2026-12-04T11:00:00+00:00"},
        "health": {
            "requests": 120,
            "rows": 3840,
            "errors": 2,
            "error_rate": 0.0164,
            "error_rate_ci": [0.004, 0.05],
            "errors_by_status": {"422": 2},
            "latency_ms": {"p50": 3.1, "p95": 8.0, "p99": 12.0, "max": 20.0},
            "batch_rows": {"mean": 24.0, "p50": 32.0, "p95": 64.0, "max": 64.0},
            "roles": {"primary": 3800, "canary": 40},
            "timeline": [],
        },
        "predictions": {
            "classes": {"setosa": 0.5, "versicolor": 0.3, "virginica": 0.2},
            "reference_classes": {"setosa": 0.34, "versicolor": 0.33, "virginica": 0.33},
            "shift": 0.142,
            "confidence": {"mean": 0.91, "p50": 0.95, "reference_mean": 0.93},
        },
        "drift": {
            "drift": True,
            "share": 0.5,
            "n_reference": 150,
            "n_current": 3840,
            "alpha": 0.05,
            "correction": "holm",
            "columns": [
                _column("a", True, [("ks", 0.62), ("missing", 0.21)]),
                _column("b", False, [("ks", 0.01)]),
                {
                    "name": "c",
                    "kind": "numeric",
                    "test": "ks",
                    "statistic": None,
                    "p_value": None,
                    "effect": None,
                    "drift": False,
                    "note": "not enough data: 12 current values (20 needed)",
                    "checks": [{"test": "ks", "effect": None, "note": "not enough data"}],
                },
            ],
            "schema": {"only_reference": [], "only_current": []},
            "skipped": {},
        },
        "distributions": {},
        "accuracy": {
            "labelled": 40,
            "correct": 37,
            "accuracy": 0.925,
            "ci": [0.80, 0.97],
            "confidence": 0.95,
            "per_class": {},
            "confusion": {"labels": [], "matrix": []},
            "timeline": [],
        },
        "alerts": [],
    }


def _column(name: str, drift: bool, checks: list[tuple[str, float]]) -> dict[str, Any]:
    entries = [
        {"test": test, "statistic": 0.3, "p_value": 1e-6, "p_adjusted": 2e-6, "effect": effect}
        for test, effect in checks
    ]
    return {
        "name": name,
        "kind": "numeric",
        **entries[0],
        "effect_ci": [0.0, 1.0],
        "threshold": 0.05,
        "drift": drift,
        "n_reference": 150,
        "n_current": 3840,
        "checks": entries,
    }


def quiet_report() -> dict[str, Any]:
    """No traffic and no labels: every figure REPORT.md allows to be null is null."""
    out = report("quiet", 7)
    out["health"].update(requests=0, rows=0, errors=0, error_rate=None, error_rate_ci=None)
    out["health"]["latency_ms"] = {"p50": None, "p95": None, "p99": None, "max": None}
    out["predictions"] = {"classes": {}, "reference_classes": {}, "shift": None}
    out["drift"] = {"drift": False, "note": "not enough data: 0 current rows"}
    out["accuracy"] = {"labelled": 0, "correct": 0, "accuracy": None, "ci": None}
    return out


# -- promtool and the two files ------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: run `scripts/services.sh install` (make test does; "
            "it installs Debian's prometheus package)"
        )
    return path


def run_promtool(promtool: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [promtool, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def recording_rules() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    (group,) = [g for g in groups if g["name"] == "conveyor"]
    return {rule["record"]: rule["expr"] for rule in group["rules"]}


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target, template variables read as `.+`."""
    board = dashboard()
    names = [v["name"] for v in board["templating"]["list"]]

    def substitute(expr: str) -> str:
        for name in names:
            expr = re.sub(rf"\$\{{{name}(:\w+)?\}}|\$\b{name}\b|\[\[{name}\]\]", ".+", expr)
        return expr

    out = []
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            out.append((panel["title"], substitute(target["expr"])))
    return out


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (not functions, labels or strings)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)  # matchers, ranges
    tokens = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)(?!\w|\s*\()", bare)
    return {t for t in tokens if t.lower() not in KEYWORDS}


def test_rules_pass_promtool_check(promtool: str) -> None:
    rc, out = run_promtool(promtool, "check", "rules", str(RULES))
    assert rc == 0, out
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_every_panel_query_is_a_recording_rule_and_every_rule_a_panel() -> None:
    records = recording_rules()
    queries = panel_queries()
    assert queries, "the dashboard has no queries"
    exprs = {expr for _title, expr in queries}
    unrecorded = [(title, expr) for title, expr in queries if expr not in records.values()]
    assert unrecorded == [], "panel queries with no recording rule of the same expr"
    unused = [name for name, expr in records.items() if expr not in exprs]
    assert unused == [], "recording rules no panel shows"
    for name in records:
        level, metric, operations = name.split(":")
        assert level and metric.startswith("conveyor_") and operations, name


def test_dashboard_reads_a_prometheus_datasource_variable_and_a_model_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["definition"].startswith("label_values(")
    assert variables["model"]["allValue"] == ".+"
    for panel in _panels(board["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all("$model" in t["expr"] or "job" in t["expr"] for t in panel["targets"])


def test_alerts_read_recorded_series_and_known_metrics() -> None:
    records = recording_rules()
    alerts = [rule for rule in rules() if "alert" in rule]
    assert 3 <= len(alerts) <= 4
    for rule in alerts:
        names = metric_names(rule["expr"])
        assert names, rule["expr"]
        recorded = {n for n in names if ":" in n}
        assert recorded <= set(records), (
            f"{rule['alert']} reads unrecorded {recorded - set(records)}"
        )
        assert rule["labels"]["severity"] and rule["annotations"]["summary"]


def test_promtool_unit_tests_fire_the_alerts_on_synthetic_series(promtool: str) -> None:
    rc, out = run_promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert rc == 0, out
    assert "SUCCESS" in out


# -- real scrapes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("models")
    write_model(root, tabular_model("iris", 1, seed=0))
    with ServerProcess(["iris:production", "--source", SOURCE], models_root=root) as server:
        for n in (1, 3, 5):
            ok = httpx.post(f"{server.url}/predict/iris", json={"rows": random_rows(n)}, timeout=30)
            assert ok.status_code == 200, ok.text
        bad = httpx.post(f"{server.url}/predict/iris", json={"rows": [[1.0, 2.0]]}, timeout=30)
        assert bad.status_code == 422, bad.text
        return httpx.get(f"{server.url}/metrics", timeout=30).text


@pytest.fixture(scope="module")
def monitor_scrape() -> str:
    metrics = MonitorMetrics()
    metrics.update(report())
    metrics.set_alerts([{"model": "iris", "version": 1, "rule": "drift.share > 0.3 for 2 windows"}])
    metrics.checked(True)
    metrics.checked(False)
    server, port = metrics.serve()
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def sample_names(scrape: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(scrape) for s in family.samples}


def test_every_metric_a_query_names_is_in_a_real_scrape(
    server_scrape: str, monitor_scrape: str
) -> None:
    scraped = sample_names(server_scrape) | sample_names(monitor_scrape)
    records = set(recording_rules())
    queries = [expr for _title, expr in panel_queries()]
    queries += [rule["expr"] for rule in rules()]
    named: set[str] = set()
    for expr in queries:
        named |= metric_names(expr)
    for variable in dashboard()["templating"]["list"]:
        named |= set(re.findall(r"label_values\((\w+)", variable.get("definition", "")))
    assert {n for n in named if n.startswith("conveyor_")}, "no metric names found"
    missing = sorted(n for n in named if n not in scraped and n not in records)
    assert missing == [], f"queried but not in any scrape: {missing}"


@pytest.mark.parametrize("which", ["server", "monitor"])
def test_scrapes_pass_promtool_check_metrics(
    promtool: str, server_scrape: str, monitor_scrape: str, which: str
) -> None:
    scrape = server_scrape if which == "server" else monitor_scrape
    rc, out = run_promtool(promtool, "check", "metrics", stdin=scrape)
    assert (rc, out) == (0, ""), f"promtool check metrics on the {which} scrape:\n{out}"


# -- what the exporter exports -------------------------------------------------------------


def samples(metrics: MonitorMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def test_a_report_becomes_gauges_in_base_units() -> None:
    metrics = MonitorMetrics()
    metrics.update(report(), checked_at=1_800_000_000.0)
    got = samples(metrics)
    v1 = labels(model="iris", version="1")
    assert got[("conveyor_monitor_drift_share", v1)] == 0.5
    assert got[("conveyor_monitor_accuracy_ratio", v1)] == 0.925
    assert got[("conveyor_monitor_labelled_rows", v1)] == 40
    assert got[("conveyor_monitor_error_ratio", v1)] == 0.0164
    assert got[("conveyor_monitor_window_requests", v1)] == 120
    assert got[("conveyor_monitor_prediction_shift", v1)] == 0.142
    assert got[("conveyor_monitor_last_check_timestamp_seconds", v1)] == 1_800_000_000.0
    p99 = labels(model="iris", version="1", quantile="0.99")
    assert got[("conveyor_monitor_latency_seconds", p99)] == pytest.approx(0.012)
    top = labels(model="iris", version="1", quantile="1")
    assert got[("conveyor_monitor_latency_seconds", top)] == pytest.approx(0.020)
    a_ks = labels(model="iris", version="1", column="a", test="ks")
    a_missing = labels(model="iris", version="1", column="a", test="missing")
    assert got[("conveyor_monitor_drift_effect", a_ks)] == 0.62
    assert got[("conveyor_monitor_drift_effect", a_missing)] == 0.21
    detected = {
        dict(key)["column"]: value
        for (name, key), value in got.items()
        if name == "conveyor_monitor_drift_detected"
    }
    assert detected == {"a": 1.0, "b": 0.0}  # c lacked data: not counted, not 0
    assert got[("conveyor_monitor_checks_total", frozenset())] == 0


def test_null_figures_are_absent_not_zero() -> None:
    metrics = MonitorMetrics()
    metrics.update(quiet_report())
    got = samples(metrics)
    series = {name for name, key in got if ("model", "quiet") in key}
    assert series == {
        "conveyor_monitor_window_requests",
        "conveyor_monitor_labelled_rows",
        "conveyor_monitor_last_check_timestamp_seconds",
    }
    assert got[("conveyor_monitor_window_requests", labels(model="quiet", version="7"))] == 0


def test_a_scrape_reads_the_latest_report_alerts_and_checks() -> None:
    metrics = MonitorMetrics()
    metrics.update(report("iris", 1))
    metrics.update(report("iris", 2))
    newer = report("iris", 1)
    newer["drift"]["share"] = 0.25
    metrics.update(newer)
    metrics.set_alerts(
        [
            {"model": "iris", "version": 1, "rule": "drift.share > 0.3 for 2 windows"},
            {"model": "iris", "version": 2, "rule": "accuracy < 0.9"},
        ]
    )
    metrics.set_alerts([{"model": "iris", "version": 2, "rule": "accuracy < 0.9"}])
    for ok in (True, True, False):
        metrics.checked(ok)
    got = samples(metrics)
    assert got[("conveyor_monitor_drift_share", labels(model="iris", version="1"))] == 0.25
    assert got[("conveyor_monitor_drift_share", labels(model="iris", version="2"))] == 0.5
    open_alerts = {key for name, key in got if name == "conveyor_monitor_alerts_open"}
    assert open_alerts == {labels(model="iris", version="2", rule="accuracy < 0.9")}
    assert got[("conveyor_monitor_checks_total", frozenset())] == 3
    assert got[("conveyor_monitor_check_errors_total", frozenset())] == 1
    metrics.forget("iris", 2)
    got = samples(metrics)
    assert ("conveyor_monitor_drift_share", labels(model="iris", version="2")) not in got
    assert ("conveyor_monitor_drift_share", labels(model="iris", version="1")) in got


def test_what_is_not_a_report_is_refused_with_a_hint() -> None:
    metrics = MonitorMetrics()
    with pytest.raises(ConveyorError, match="not a monitor report") as caught:
        metrics.update({"drift": True, "share": 0.5})  # a `monitor drift --json` object
    assert caught.value.hint
    with pytest.raises(ConveyorError, match="lacks rule"):
        metrics.set_alerts([{"model": "iris", "version": 1}])
