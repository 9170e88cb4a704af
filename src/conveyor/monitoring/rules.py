"""Alert rules and the monitor config file they live in (spec: ALERTS.md).

A rule is one line a person can read aloud: `latency.p99 > 50ms for 2 windows`. Its
grammar is `FIGURE OP VALUE[UNIT] [for N windows] [min_labels N]`, read by a tiny
tokenizer (one regular expression with no nested repetition, so no input makes it
backtrack), then checked against the figures of a window report (REPORT.md): an
unknown figure, a unit that does not fit it or `for 0 windows` is refused when the file
is read, with a message that names the rule and what to write instead.

Thresholds are stored in the figure's own unit: latencies in milliseconds (`2s` is
2000), shares as fractions (`1%` is 0.01).
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conveyor.compute.spec import parse_duration
from conveyor.core.errors import ConveyorError, JobSpecError, MonitorConfigError, yaml_problem
from conveyor.registry.refs import ModelRef, parse_model_ref

MAX_CONFIG_BYTES = 1_000_000  # a monitor config is a page of YAML; refuse more unread
MAX_NAME = 500  # monitor_events.rule

Unit = Literal["ms", "s", "%"]
Kind = Literal["latency", "share", "number"]

_LATENCY = ("latency.p50", "latency.p95", "latency.p99", "latency.max")
_SHARES = ("error_rate", "drift.share", "accuracy", "confidence.mean")
_NUMBERS = (
    "requests",
    "rows",
    "errors",
    "batch_rows.mean",
    "drift.columns",
    "predictions.shift",
    "labelled",
)
FIGURES: dict[str, Kind] = {
    **dict.fromkeys(_LATENCY, "latency"),
    **dict.fromkeys(_SHARES, "share"),
    **dict.fromkeys(_NUMBERS, "number"),
}
"""Every figure a rule can read, by kind; `drift.<column>` (a number) comes on top."""

_UNITS: dict[Kind, tuple[str | None, ...]] = {
    "latency": (None, "ms", "s"),
    "share": (None, "%"),
    "number": (None,),
}
_SCALE = {None: 1.0, "ms": 1.0, "s": 1000.0, "%": 0.01}
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_TOKEN = re.compile(r"\s*(?:(>=|<=|==|!=|>|<)|([^\s<>=!]+)|(\S))")
_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(ms|s|%)?$")
_GRAMMAR = "write FIGURE OP VALUE[UNIT] [for N windows] [min_labels N], e.g. latency.p99 > 50ms"


def figure_kind(figure: str) -> Kind | None:
    """The kind of a figure rules can read, or None for a name that is not one."""
    if figure.startswith("drift.") and figure not in FIGURES:
        return "number" if len(figure) > len("drift.") else None
    return FIGURES.get(figure)


@dataclass(frozen=True)
class Rule:
    """One parsed rule. `threshold` is in the figure's unit (ms, fraction, count)."""

    name: str
    text: str
    figure: str
    op: str
    threshold: float
    unit: str | None = None  # as written, for showing values back the same way
    windows: int = 1
    min_labels: int | None = None

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)

    def show(self, value: float | None) -> str:
        """A figure's value in the unit the rule was written in: 72 ms, 31%, 2.5 s."""
        if value is None:
            return "no data"
        if self.unit == "%":
            return f"{value * 100:.3g}%"
        if self.unit == "s":
            return f"{value / 1000:.4g} s"
        if figure_kind(self.figure) == "latency":
            return f"{value:.4g} ms"
        return f"{value:.4g}"


class _Problem(ValueError):
    """A mistake in one spot of a config; becomes a MonitorConfigError with its hint."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_rule(text: str, name: str | None = None) -> Rule:
    """Parse one rule; its name is its text unless given. Raises MonitorConfigError."""
    try:
        return _parse(text, name)
    except _Problem as e:
        raise MonitorConfigError(e.message, e.hint) from None


def _parse(text: str, name: str | None) -> Rule:
    if not isinstance(text, str) or not text.strip():
        raise _Problem("a rule is empty", _GRAMMAR)
    text = " ".join(text.split())
    name = text if name is None else " ".join(str(name).split())
    if not name:
        raise _Problem(f"rule '{text}' has an empty name", "give it a name or leave `name` out")
    if len(name) > MAX_NAME or len(text) > MAX_NAME:
        raise _Problem(f"rule '{text[:40]}...' is too long", f"keep rules under {MAX_NAME} chars")
    tokens = _tokens(text)
    if len(tokens) < 3:
        raise _Problem(f"rule '{text}' is incomplete", _GRAMMAR)
    figure, op, value = tokens[0], tokens[1], tokens[2]
    kind = _check_figure(figure, text)
    if op not in OPS:
        raise _Problem(f"rule '{text}': '{op}' is not a comparison", "use one of > >= < <= == !=")
    rest = tokens[3:]
    if rest and rest[0] in ("ms", "s", "%") and _NUMBER.match(value):
        value, rest = value + rest[0], rest[1:]  # `50 ms` reads as `50ms`
    threshold, unit = _threshold(value, figure, kind, text)
    windows, min_labels = _clauses(rest, text)
    return Rule(name, text, figure, op, threshold, unit, windows, min_labels)


def _tokens(text: str) -> list[str]:
    out = []
    for match in _TOKEN.finditer(text):
        op, word, stray = match.groups()
        if stray is not None:
            hint = "use == for equality" if stray == "=" else "use one of > >= < <= == !="
            raise _Problem(f"rule '{text}': unexpected '{stray}'", hint)
        out.append(op or word)
    return out


def _check_figure(figure: str, text: str) -> Kind:
    kind = figure_kind(figure)
    if kind is None:
        close = difflib.get_close_matches(figure, list(FIGURES), n=1)
        hint = f"did you mean {close[0]}?" if close else "see the figures in REPORT.md"
        raise _Problem(f"rule '{text}': unknown figure '{figure}'", hint)
    return kind


def _threshold(value: str, figure: str, kind: Kind, text: str) -> tuple[float, str | None]:
    match = _NUMBER.match(value)
    if not match:
        raise _Problem(
            f"rule '{text}': '{value}' is not a number with a unit",
            "write a number, optionally with ms, s or %: 50ms, 2s, 1%, 0.9",
        )
    number, unit = float(match.group(1)), match.group(2)
    if unit not in _UNITS[kind]:
        fits = {"latency": "ms or s (or a bare number of ms)", "share": "% or a fraction"}
        hint = f"{figure} takes {fits[kind]}" if kind in fits else f"{figure} takes no unit"
        raise _Problem(f"rule '{text}': {figure} cannot be compared with {unit}", hint)
    threshold = number * _SCALE[unit]
    if kind == "share" and not 0 <= threshold <= 1:
        raise _Problem(
            f"rule '{text}': {figure} is a share, between 0 and 1 (0% and 100%)",
            f"write it like 0.05 or 5%, not {value}",
        )
    return threshold, unit


def _clauses(rest: list[str], text: str) -> tuple[int, int | None]:
    windows: int | None = None
    min_labels: int | None = None
    while rest:
        word = rest[0].lower()
        if word == "for" and windows is None:
            if len(rest) < 3 or rest[2].lower() not in ("window", "windows"):
                raise _Problem(f"rule '{text}': 'for' needs N windows", "write `for 2 windows`")
            windows = _count(rest[1], "for N windows", text, least=1)
            rest = rest[3:]
        elif word == "min_labels" and min_labels is None:
            if len(rest) < 2:
                raise _Problem(f"rule '{text}': min_labels needs a number", "write min_labels 200")
            min_labels = _count(rest[1], "min_labels N", text, least=0)
            rest = rest[2:]
        else:
            raise _Problem(
                f"rule '{text}': unexpected '{rest[0]}'",
                "after the value only `for N windows` and `min_labels N` may follow, once each",
            )
    return windows or 1, min_labels


def _count(token: str, clause: str, text: str, least: int) -> int:
    if not token.isdigit() or int(token) < least:
        raise _Problem(
            f"rule '{text}': {clause} needs a whole number of at least {least}, got '{token}'",
            "write `for 2 windows`" if least else "write min_labels 200",
        )
    return int(token)


# -- the config file ---------------------------------------------------------------------


def _seconds(value: Any, what: str) -> float:
    try:
        seconds = parse_duration(value)
    except JobSpecError:
        seconds = None
    if seconds is None or seconds <= 0:
        raise _Problem(f"{what} {value!r} is not a duration", "write it like 30s, 5m, 1h or 1d")
    return seconds


class WebhookConfig(BaseModel):
    """Where events are POSTed. `name` is what logs and the delivery record call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str
    name: str = ""
    timeout: float = 5.0  # seconds per attempt
    retries: int = Field(default=3, ge=0, le=10)  # attempts after the first, per check
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Problem(
                f"webhook url {value!r} is not an http(s) URL", "write https://host/path"
            )
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return _seconds(value, "webhook timeout")

    @property
    def label(self) -> str:
        """The name, else the URL without credentials or query (which may hold secrets)."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


class MonitorConfig(BaseModel):
    """One deployment's monitor: which model, how it is windowed, its rules and webhooks."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    window: float = 300.0  # seconds each check looks back
    every: float = 60.0  # seconds between checks of `monitor run`
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    rules: list[Rule] = Field(min_length=1)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        try:
            parse_model_ref(value)
        except ConveyorError as e:
            raise _Problem(f"model: {e.message}", e.hint or "write NAME:ALIAS or NAME@v3") from e
        return value

    @field_validator("window", "every", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: Any) -> float:
        return _seconds(value, info.field_name)

    @field_validator("webhooks")
    @classmethod
    def _unique_hooks(cls, hooks: list[WebhookConfig]) -> list[WebhookConfig]:
        labels = [h.label for h in hooks]
        for label in labels:
            if labels.count(label) > 1:
                raise _Problem(f"two webhooks are both called '{label}'", "give each a `name`")
        return hooks

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # pydantic says "should be a valid list"
        rules = [_rule_entry(i, entry) for i, entry in enumerate(value)]
        names = [r.name for r in rules]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _Problem(
                    f"rules[{i}]: a second rule called '{name}'",
                    "rule names must differ: give one a `name`",
                )
        return rules

    @property
    def ref(self) -> ModelRef:
        return parse_model_ref(self.model)

    @property
    def window_span(self) -> timedelta:
        return timedelta(seconds=self.window)

    @property
    def history(self) -> int:
        """How many windows (the latest first) a check needs: the longest `for N windows`."""
        return max(r.windows for r in self.rules)


def _rule_entry(index: int, entry: Any) -> Rule:
    where = f"rules[{index}]"
    if isinstance(entry, dict):
        unknown = sorted(set(map(str, entry)) - {"name", "when"})
        if unknown:
            raise _Problem(f"{where}: unknown key '{unknown[0]}'", "a long rule has name and when")
        if not isinstance(entry.get("when"), str):
            raise _Problem(f"{where}: `when` is missing", "write when: latency.p95 >= 20ms")
        name = entry.get("name")
        if name is not None and not isinstance(name, str | int | float):
            raise _Problem(f"{where}: `name` is not text", "write name: slow canary")
        entry, name = entry["when"], None if name is None else str(name)
    elif isinstance(entry, str):
        name = None
    else:
        raise _Problem(
            f"{where} is a {type(entry).__name__}, not a rule",
            "write a rule as text (latency.p99 > 50ms) or as {name: ..., when: ...}",
        )
    try:
        return _parse(entry, name)
    except _Problem as e:
        raise _Problem(f"{where}: {e.message}", e.hint) from None


def load_config(path: str | Path) -> MonitorConfig:
    """Read and validate a monitor config file; every mistake is a MonitorConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise MonitorConfigError(f"no monitor config {path}", "check the path") from None
    except OSError as e:
        raise MonitorConfigError(f"cannot read {path} ({e.strerror})", "check the file") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise MonitorConfigError(
            f"{path} is over {MAX_CONFIG_BYTES // 1_000_000} MB, too big for a monitor config",
            "a monitor config is a short YAML file: check that this is the right file",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MonitorConfigError(f"{path} is not a text file", "write the config as YAML") from None
    return parse_config(text, source=str(path))


def parse_config(content: str | dict[str, Any], source: str = "monitor config") -> MonitorConfig:
    """A config from YAML text or a dict already loaded; `source` names it in errors."""
    where = source
    if isinstance(content, str):
        if len(content.encode("utf-8")) > MAX_CONFIG_BYTES:
            raise MonitorConfigError(f"{where} is over 1 MB", "a monitor config is a short file")
        try:
            data = yaml.safe_load(content)
        except yaml.YAMLError as e:
            raise MonitorConfigError(
                f"{where} is not valid YAML ({yaml_problem(e)})", "fix that line"
            ) from None
    else:
        data = content
    if not isinstance(data, dict):
        what = "is empty" if data is None else f"is a {type(data).__name__}, not a mapping"
        raise MonitorConfigError(
            f"{where} {what}", "write model:, window: and rules: (see ALERTS.md)"
        )
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as e:
        raise _config_error(e, where) from None


def _config_error(e: ValidationError, where: str) -> MonitorConfigError:
    errors = e.errors()
    first = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])  # typos first
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
    problem = first.get("ctx", {}).get("error")
    if isinstance(problem, _Problem):
        return MonitorConfigError(f"{where}: {problem.message}", problem.hint)
    if first["type"] == "extra_forbidden":
        model = WebhookConfig if first["loc"][0] == "webhooks" else MonitorConfig
        close = difflib.get_close_matches(str(first["loc"][-1]), list(model.model_fields), n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else f"known keys: {', '.join(model.model_fields)}"
        )
        return MonitorConfigError(f"{where}: unknown key '{loc}'", hint)
    if first["type"] == "missing":
        return MonitorConfigError(f"{where}: '{loc}' is missing", "add it (see ALERTS.md)")
    if first["type"] == "too_short" and loc == "rules":
        return MonitorConfigError(f"{where}: no rules", "add at least one, e.g. latency.p99 > 50ms")
    return MonitorConfigError(f"{where}: {loc}: {first['msg']}", "fix the value (see ALERTS.md)")
