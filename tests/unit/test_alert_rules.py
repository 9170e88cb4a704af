"""Alert rules: the grammar, the config file and its errors, and how rules decide and
write events (SQLite; the PostgreSQL run and webhooks are in tests/integration)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.core.errors import MonitorConfigError
from conveyor.monitoring.alerts import Alerts, evaluate, events, open_alerts
from conveyor.monitoring.records import MonitorEventRecord
from conveyor.monitoring.rules import (
    FIGURES,
    MonitorConfig,
    Rule,
    load_config,
    parse_config,
    parse_rule,
)
from conveyor.monitoring.webhooks import payload
from conveyor.storage.metadata import MetadataStore

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


# -- the grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "figure", "op", "threshold", "windows", "min_labels"),
    [
        ("drift.share > 0.3 for 2 windows", "drift.share", ">", 0.3, 2, None),
        ("latency.p99 > 50ms", "latency.p99", ">", 50.0, 1, None),
        ("latency.p99 > 50", "latency.p99", ">", 50.0, 1, None),  # a bare latency is ms
        ("latency.p99 > 2s", "latency.p99", ">", 2000.0, 1, None),
        ("latency.max > 1.5 s", "latency.max", ">", 1500.0, 1, None),  # unit after a space
        ("accuracy < 0.9 min_labels 200", "accuracy", "<", 0.9, 1, 200),
        ("accuracy < 90% for 3 windows min_labels 50", "accuracy", "<", 0.9, 3, 50),
        ("accuracy < 0.9 min_labels 50 for 3 windows", "accuracy", "<", 0.9, 3, 50),
        ("error_rate > 1%", "error_rate", ">", 0.01, 1, None),
        ("error_rate >= 0.05 for 1 window", "error_rate", ">=", 0.05, 1, None),
        ("latency.p95>=20ms", "latency.p95", ">=", 20.0, 1, None),  # no spaces at all
        ("requests <= 10", "requests", "<=", 10.0, 1, None),
        ("drift.columns != 0", "drift.columns", "!=", 0.0, 1, None),
        ("labelled == 0", "labelled", "==", 0.0, 1, None),
        ("drift.brightness > 0.2", "drift.brightness", ">", 0.2, 1, None),
        ("drift.pixel_mean-2 > 1e-1", "drift.pixel_mean-2", ">", 0.1, 1, None),
        ("predictions.shift > .05", "predictions.shift", ">", 0.05, 1, None),
        ("  confidence.mean   <   0.8  ", "confidence.mean", "<", 0.8, 1, None),
    ],
)
def test_every_grammar_form(
    text: str, figure: str, op: str, threshold: float, windows: int, min_labels: int | None
) -> None:
    rule = parse_rule(text)
    assert (rule.figure, rule.op, rule.windows, rule.min_labels) == (
        figure,
        op,
        windows,
        min_labels,
    )
    assert rule.threshold == pytest.approx(threshold)
    assert rule.name == rule.text == " ".join(text.split())  # the default name is its text


def test_every_figure_of_the_report_can_be_read() -> None:
    for figure in FIGURES:
        assert parse_rule(f"{figure} >= 0").figure == figure


@pytest.mark.parametrize(
    ("text", "says", "hint"),
    [
        ("latency.p90 > 3", "unknown figure 'latency.p90'", "did you mean latency.p9"),
        ("throughput > 3", "unknown figure 'throughput'", "REPORT.md"),
        ("drift. > 3", "unknown figure 'drift.'", ""),
        ("error_rate > 5ms", "error_rate cannot be compared with ms", "% or a fraction"),
        ("latency.p99 > 5%", "latency.p99 cannot be compared with %", "ms or s"),
        ("requests > 2s", "requests cannot be compared with s", "no unit"),
        ("drift.share > 0.3 for 0 windows", "for N windows needs a whole number", ""),
        ("drift.share > 0.3 for -1 windows", "got '-1'", ""),
        ("drift.share > 0.3 for 2", "'for' needs N windows", "for 2 windows"),
        ("drift.share > 0.3 for two windows", "got 'two'", ""),
        ("accuracy < 0.9 min_labels", "min_labels needs a number", "min_labels 200"),
        ("accuracy < 0.9 min_labels x", "got 'x'", ""),
        ("accuracy < 0.9 min_labels 5 min_labels 6", "unexpected 'min_labels'", "once each"),
        ("latency.p99 > 50 kg", "unexpected 'kg'", ""),
        ("latency.p99 > fifty", "'fifty' is not a number", "50ms"),
        ("latency.p99 = 50", "unexpected '='", "use =="),
        ("latency.p99 => 50", "unexpected '='", "use =="),
        ("latency.p99 50", "is incomplete", "FIGURE OP VALUE"),
        ("latency.p99 ! 50", "unexpected '!'", ""),
        ("error_rate > 150%", "is a share, between 0 and 1", "5%"),
        ("accuracy < 2", "is a share", ""),
        ("", "a rule is empty", "FIGURE OP VALUE"),
    ],
)
def test_every_rule_mistake_is_named(text: str, says: str, hint: str) -> None:
    with pytest.raises(MonitorConfigError) as caught:
        parse_rule(text)
    assert says in caught.value.message
    assert hint in (caught.value.hint or "")
    assert "\n" not in str(caught.value)


def test_a_very_long_rule_is_refused_quickly_not_tokenized() -> None:
    with pytest.raises(MonitorConfigError, match="too long"):
        parse_rule("latency.p99 " + "> " * 200_000 + "1")


# -- the config file -------------------------------------------------------------------------

EXAMPLE = """
model: digits-image-classifier:production
window: 5m
every: 1m
webhooks:
  - url: http://127.0.0.1:9000/hook
    timeout: 5s
    retries: 3
    headers: {Authorization: "Bearer token"}
  - url: https://hooks.example.com/services/T0/B0/secret?x=1
rules:
  - drift.share > 0.3 for 2 windows
  - latency.p99 > 50ms
  - accuracy < 0.9 min_labels 200
  - error_rate > 1%
  - name: slow canary
    when: latency.p95 >= 20ms
"""


def test_the_config_reads_as_written() -> None:
    config = parse_config(EXAMPLE)
    assert config.model == "digits-image-classifier:production"
    assert (config.ref.name, config.ref.alias) == ("digits-image-classifier", "production")
    assert (config.window, config.every, config.history) == (300.0, 60.0, 2)
    hook, chat = config.webhooks
    assert (hook.timeout, hook.retries, hook.headers) == (5.0, 3, {"Authorization": "Bearer token"})
    assert (chat.timeout, chat.retries) == (5.0, 3)  # defaults
    assert chat.label == "https://hooks.example.com/services/T0/B0/secret"  # no query
    names = [r.name for r in config.rules]
    assert names[-1] == "slow canary" and config.rules[-1].text == "latency.p95 >= 20ms"
    assert names[1] == "latency.p99 > 50ms"


def test_the_example_in_examples_parses() -> None:
    config = load_config(REPO / "examples" / "monitor.yaml")
    assert config.rules and config.webhooks


def test_defaults_and_version_refs() -> None:
    config = parse_config({"model": "digits@v3", "rules": ["requests > 0"]})
    assert (config.window, config.every, config.webhooks) == (300.0, 60.0, [])
    assert config.ref.number == 3


@pytest.mark.parametrize(
    ("text", "says", "hint"),
    [
        ("model: m\nrules: [requests > 1", "is not valid YAML (line 2", "fix that line"),
        ("", "is empty", "model:"),
        ("- requests > 1", "is a list, not a mapping", "model:"),
        ("rules: [requests > 1]", "'model' is missing", "ALERTS.md"),
        ("model: m\nrulez: [requests > 1]", "unknown key 'rulez'", "did you mean 'rules'"),
        ("model: m\nrules: []", "no rules", "latency.p99 > 50ms"),
        ("model: m\nrules: requests > 1", "rules: Input should be a valid list", ""),
        ("model: Bad Name\nrules: [requests > 1]", "model: 'Bad Name' is not a valid", "lower"),
        ("model: m@3\nrules: [requests > 1]", "bad version or alias", "m@v3"),
        ("model: m\nwindow: 0s\nrules: [requests > 1]", "window '0s' is not a duration", "5m"),
        ("model: m\nevery: soon\nrules: [requests > 1]", "every 'soon' is not a duration", ""),
        ("model: m\nrules: [requests > 1, error_rate > 5ms]", "rules[1]: rule 'error_rate", ""),
        ("model: m\nrules: [requests > 1, requests > 1]", "a second rule called", "`name`"),
        ("model: m\nrules: [{name: x}]", "rules[0]: `when` is missing", "when:"),
        ("model: m\nrules: [{when: requests > 1, if: 2}]", "unknown key 'if'", "name and when"),
        ("model: m\nrules: [[requests, 1]]", "rules[0] is a list, not a rule", "as text"),
        ("model: m\nrules: [r > 1]\n", "unknown figure 'r'", ""),
        ("model: m\nrules: [requests > 1]\nwebhooks: [{url: ftp://h/x}]", "not an http(s) URL", ""),
        (
            "model: m\nrules: [requests > 1]\nwebhooks: [{url: 'http://h', tiemout: 3}]",
            "unknown key 'webhooks[0].tiemout'",
            "did you mean 'timeout'",
        ),
        (
            "model: m\nrules: [requests > 1]\nwebhooks: [{url: 'http://h', timeout: -1}]",
            "webhook timeout -1 is not a duration",
            "",
        ),
        (
            "model: m\nrules: [requests > 1]\nwebhooks: [{url: 'http://h', retries: 99}]",
            "webhooks[0].retries",
            "",
        ),
        (
            "model: m\nrules: [requests > 1]\nwebhooks: [{url: 'http://h', headers: {A: 5}}]",
            "webhooks[0].headers.A",
            "",
        ),
        (
            "model: m\nrules: [requests > 1]\nwebhooks: [{url: 'http://h/a'}, {url: 'http://h/a'}]",
            "two webhooks are both called 'http://h/a'",
            "`name`",
        ),
    ],
)
def test_every_config_mistake_is_one_line_that_says_what_to_fix(
    text: str, says: str, hint: str
) -> None:
    with pytest.raises(MonitorConfigError) as caught:
        parse_config(text, source="monitor.yaml")
    assert says in str(caught.value)
    assert hint in (caught.value.hint or "")
    assert "\n" not in str(caught.value)


def test_files_that_are_missing_huge_or_not_text(tmp_path: Path) -> None:
    with pytest.raises(MonitorConfigError, match="no monitor config"):
        load_config(tmp_path / "absent.yaml")
    huge = tmp_path / "huge.yaml"
    huge.write_text("model: m\nrules: [requests > 1]\n" + "#" * 1_100_000)
    with pytest.raises(MonitorConfigError, match="over 1 MB"):
        load_config(huge)
    binary = tmp_path / "model.onnx"
    binary.write_bytes(b"\x80\x81\xfe\xff" * 10)
    with pytest.raises(MonitorConfigError, match="not a text file"):
        load_config(binary)
    not_yaml = tmp_path / "notes.yaml"
    not_yaml.write_text("model: [unclosed\n")
    with pytest.raises(MonitorConfigError, match=r"notes.yaml is not valid YAML"):
        load_config(not_yaml)


# -- deciding a rule (pure) --------------------------------------------------------------------


def _rule(text: str) -> Rule:
    return parse_rule(text)


def test_verdicts_over_windows() -> None:
    p99 = _rule("latency.p99 > 50ms")
    twice = _rule("drift.share > 0.3 for 2 windows")
    acc = _rule("accuracy < 0.9 min_labels 200")
    latest = {"latency.p99": 70.0, "drift.share": 0.4, "accuracy": 0.8, "labelled": 199.0}
    before = {"latency.p99": 10.0, "drift.share": 0.1, "accuracy": 0.95, "labelled": 500.0}
    v = {x.rule.name: x for x in evaluate([p99, twice, acc], [latest, before])}
    assert v[p99.name].state == "true" and v[p99.name].value == 70.0
    assert v[twice.name].state == "pending" and "1 of 2" in v[twice.name].note
    assert v[acc.name].state == "no data" and "min_labels 200" in v[acc.name].note

    v = {x.rule.name: x for x in evaluate([twice, acc], [{**latest, "labelled": 200.0}, latest])}
    assert v[twice.name].state == "true"
    assert v[acc.name].state == "true"  # 200 labels is enough

    v = {x.rule.name: x for x in evaluate([twice], [latest])}
    assert v[twice.name].state == "pending" and "only 1 of 2" in v[twice.name].note
    v = {x.rule.name: x for x in evaluate([twice], [latest, {"drift.share": None}])}
    assert v[twice.name].state == "pending" and "window 2: no data" in v[twice.name].note

    quiet = {"latency.p99": None, "drift.share": None, "accuracy": None, "labelled": 0.0}
    for x in evaluate([p99, twice, acc], [quiet]):
        assert x.state == "no data" and x.note.startswith("no data")
    assert evaluate([p99], [{}])[0].note == "no data: latency.p99 is null (not in the report)"
    assert evaluate([p99], [before])[0].state == "false"
    with pytest.raises(ValueError, match="latest window"):
        evaluate([p99], [])


# -- writing events (SQLite) -------------------------------------------------------------------

_names = (f"model-{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def meta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetadataStore]:
    """One SQLite store for the module; each test uses its own model name."""
    store = MetadataStore(f"sqlite:///{tmp_path_factory.mktemp('alerts')}/meta.db")
    store.create()
    yield store
    store.dispose()


def _alerts(meta: MetadataStore, *rules: str) -> Alerts:
    config = MonitorConfig.model_validate({"model": "m:production", "rules": list(rules)})
    return Alerts(meta, config, clock=lambda: T0)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_fires_once_does_not_repeat_then_resolves(meta: MetadataStore) -> None:
    model, alerts = next(_names), _alerts(meta, "latency.p99 > 50ms")
    slow, fast = {"latency.p99": 70.0}, {"latency.p99": 12.0}
    fired = alerts.check(model, 3, [slow], _at(0))
    assert [(e.kind, e.value, e.threshold, e.version) for e in fired] == [("firing", 70.0, 50.0, 3)]
    assert fired[0].detail["window"] == {
        "since": _at(-5).isoformat(),
        "until": _at(0).isoformat(),
        "seconds": 300.0,
    }
    assert fired[0].detail["figures"] == [{"latency.p99": 70.0}]
    assert alerts.check(model, 3, [slow], _at(1)) == []  # still true: said already
    assert [a["rule"] for a in open_alerts(meta, model)] == ["latency.p99 > 50ms"]
    resolved = alerts.check(model, 3, [fast], _at(2))
    assert [(e.kind, e.value) for e in resolved] == [("resolved", 12.0)]
    assert resolved[0].detail["fired"]["id"] == fired[0].id
    assert alerts.check(model, 3, [fast], _at(3)) == []
    assert open_alerts(meta, model) == []
    assert [e.kind for e in alerts.check(model, 4, [slow], _at(4))] == ["firing"]  # again
    assert [e["kind"] for e in events(meta, model)] == ["firing", "resolved", "firing"]
    assert [e["kind"] for e in events(meta, model, since=_at(2))] == ["resolved", "firing"]


def test_no_data_neither_fires_nor_resolves(meta: MetadataStore) -> None:
    model, alerts = next(_names), _alerts(meta, "accuracy < 0.9 min_labels 100")
    assert alerts.check(model, 1, [{"accuracy": 0.5, "labelled": 20.0}], _at(0)) == []
    assert alerts.check(model, 1, [{"accuracy": 0.5, "labelled": 100.0}], _at(1))[0].kind == (
        "firing"
    )
    assert alerts.check(model, 1, [{"accuracy": None, "labelled": 0.0}], _at(2)) == []
    assert alerts.check(model, 1, [{"accuracy": 0.99, "labelled": 3.0}], _at(3)) == []
    assert len(open_alerts(meta, model)) == 1  # too few labels to say it cleared
    assert alerts.check(model, 1, [{"accuracy": 0.99, "labelled": 300.0}], _at(4))[0].kind == (
        "resolved"
    )


def test_for_two_windows_needs_both(meta: MetadataStore) -> None:
    model, alerts = next(_names), _alerts(meta, "drift.share > 0.3 for 2 windows")
    hi, lo = {"drift.share": 0.5}, {"drift.share": 0.1}
    assert alerts.check(model, 1, [hi, lo], _at(0)) == []
    assert alerts.check(model, 1, [hi], _at(1)) == []  # no earlier window given: pending
    fired = alerts.check(model, 1, [hi, hi], _at(2))
    assert [e.kind for e in fired] == ["firing"]
    assert fired[0].detail["figures"] == [{"drift.share": 0.5}, {"drift.share": 0.5}]
    assert alerts.check(model, 1, [hi, lo], _at(3)) == []  # still true now: stays open
    assert [e.kind for e in alerts.check(model, 1, [lo, hi], _at(4))] == ["resolved"]


def test_a_new_instance_after_a_restart_neither_repeats_nor_loses(meta: MetadataStore) -> None:
    model = next(_names)
    slow, fast = {"latency.p99": 70.0}, {"latency.p99": 12.0}
    assert len(_alerts(meta, "latency.p99 > 50ms").check(model, 1, [slow], _at(0))) == 1
    again = _alerts(meta, "latency.p99 > 50ms")  # the monitor restarted
    assert again.check(model, 1, [slow], _at(1)) == []
    assert [e.kind for e in again.check(model, 1, [fast], _at(2))] == ["resolved"]


def test_rules_are_kept_per_model(meta: MetadataStore) -> None:
    a, b = next(_names), next(_names)
    alerts = _alerts(meta, "errors > 0", "requests < 1")
    assert len(alerts.check(a, 1, [{"errors": 2.0, "requests": 0.0}], _at(0))) == 2
    assert len(alerts.check(b, 1, [{"errors": 2.0, "requests": 5.0}], _at(0))) == 1
    assert {x["rule"] for x in open_alerts(meta, a)} == {"errors > 0", "requests < 1"}
    assert [x["rule"] for x in open_alerts(meta, b)] == ["errors > 0"]
    assert {(x["model"], x["rule"]) for x in open_alerts(meta)} >= {
        (a, "errors > 0"),
        (b, "errors > 0"),
    }


# -- ALERTS.md is a spec: its examples run -----------------------------------------------------

ALERTS_MD = (REPO / "src" / "conveyor" / "monitoring" / "ALERTS.md").read_text()


def _block_after(heading: str) -> str:
    rest = ALERTS_MD[ALERTS_MD.index(heading) :]
    start = rest.index("```") + rest[rest.index("```") :].index("\n") + 1
    return rest[start : rest.index("```", start)]


def test_the_spec_s_config_and_rule_examples_parse() -> None:
    assert len(parse_config(_block_after("## The config file")).rules) == 5
    examples = [r for line in _block_after("Examples:").splitlines() for r in line.split("  ")]
    rules = [parse_rule(r) for r in examples if r.strip()]
    assert len(rules) == 8


def test_the_spec_s_payload_is_what_is_posted() -> None:
    doc = json.loads(_block_after("### Payload"))
    rule = parse_rule(doc["when"], name=doc["rule"])
    detail = {
        "text": rule.text,
        "figure": rule.figure,
        "op": rule.op,
        "threshold": rule.threshold,
        "unit": rule.unit,
        "window": doc["window"],
    }
    record = MonitorEventRecord(
        id=doc["id"],
        model=doc["model"],
        version=doc["version"],
        rule=rule.name,
        kind=doc["event"],
        value=doc["value"],
        detail=json.dumps(detail),
        delivery="{}",
        at=datetime.fromisoformat(doc["at"]),
    )
    assert payload(record) == doc
