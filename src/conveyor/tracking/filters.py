"""The run search language: a small grammar parsed by hand, never eval'd.

    filter  := clause ("and" clause)*
    clause  := field op literal
    field   := ("params" | "metrics" | "tags" | "attributes") "." name  |  attribute
    op      := "=" | "!=" | "<" | "<=" | ">" | ">=" | "like"
    literal := number | 'single' or "double" quoted string
    order   := field ["asc" | "desc"]

A name is letters, digits and `_ - / . :`, or anything in backticks (tags.`my key`).
`metrics.acc` compares a run's latest value of `acc`. Errors name the offending token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from conveyor.core.errors import InvalidFilterError

Kind = Literal["param", "metric", "tag", "attribute"]
ATTRIBUTES = (
    "id",
    "name",
    "experiment",
    "status",
    "user",
    "host",
    "git_commit",
    "started_at",
    "ended_at",
)
_PREFIXES: dict[str, Kind] = {
    "params": "param",
    "param": "param",
    "metrics": "metric",
    "metric": "metric",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_OPS = ("=", "!=", "<", "<=", ">", ">=", "like")
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op><=|>=|!=|==|<>|=|<|>)
    | (?P<field>[A-Za-z_][\w]*\.(?:`[^`]+`|[\w\-/.:]+))
    | (?P<word>[A-Za-z_]\w*)
    | (?P<other>\S+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Field:
    kind: Kind
    key: str

    def __str__(self) -> str:
        return self.key if self.kind == "attribute" else f"{self.kind}s.{self.key}"


@dataclass(frozen=True)
class Clause:
    field: Field
    op: str
    value: float | str


@dataclass(frozen=True)
class Order:
    field: Field
    descending: bool


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[_Token]:
    found = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind is None:
            continue
        found.append(_Token(kind, m.group(kind), m.start(kind)))
    return found


def _fail(source: str, token: _Token | None, expected: str) -> InvalidFilterError:
    where = f"'{token.text}' at position {token.at}" if token else "the end"
    return InvalidFilterError(
        f"cannot parse {source!r}: expected {expected}, found {where}",
        "write clauses like \"params.lr > 0.01 and metrics.acc >= 0.9 and tags.team = 'vision'\"",
    )


def _field(source: str, token: _Token) -> Field:
    if token.kind == "field":
        prefix, _, name = token.text.partition(".")
        kind = _PREFIXES.get(prefix.lower())
        if kind is None:
            raise _fail(source, token, "params.NAME, metrics.NAME, tags.NAME or an attribute")
        name = name[1:-1] if name.startswith("`") else name
        if kind == "attribute" and name not in ATTRIBUTES:
            raise _fail(source, token, f"an attribute ({', '.join(ATTRIBUTES)})")
        return Field(kind, name)
    if token.kind == "word" and token.text in ATTRIBUTES:
        return Field("attribute", token.text)
    raise _fail(
        source, token, f"params.NAME, metrics.NAME, tags.NAME or one of {', '.join(ATTRIBUTES)}"
    )


def _literal(source: str, token: _Token | None) -> float | str:
    if token is not None and token.kind == "number":
        return float(token.text)
    if token is not None and token.kind == "string":
        body = token.text[1:-1]
        return re.sub(r"\\(.)", r"\1", body)
    raise _fail(source, token, "a number or a quoted string")


def parse_filter(text: str | None) -> list[Clause]:
    """Parse a filter into clauses that must all hold; empty or None means every run."""
    if text is None or not text.strip():
        return []
    tokens = _tokens(text)
    clauses: list[Clause] = []
    i = 0
    while True:
        if i >= len(tokens):
            raise _fail(text, None, "a field such as params.lr")
        field = _field(text, tokens[i])
        op_token = tokens[i + 1] if i + 1 < len(tokens) else None
        if op_token is None or op_token.text.lower() not in (*_OPS, "==", "<>"):
            raise _fail(text, op_token, "a comparison (=, !=, <, <=, >, >=, like)")
        op = {"==": "=", "<>": "!="}.get(op_token.text, op_token.text.lower())
        value = _literal(text, tokens[i + 2] if i + 2 < len(tokens) else None)
        _check(text, field, op, value, op_token)
        clauses.append(Clause(field, op, value))
        i += 3
        if i == len(tokens):
            return clauses
        if tokens[i].text.lower() != "and":
            raise _fail(text, tokens[i], "'and' (only 'and' joins clauses)")
        i += 1


def _check(text: str, field: Field, op: str, value: float | str, token: _Token) -> None:
    if field.kind == "metric" and not isinstance(value, float):
        raise _fail(text, token, f"a numeric comparison for {field} (metrics are numbers)")
    if op == "like" and not isinstance(value, str):
        raise _fail(text, token, "a quoted pattern after 'like'")


def parse_order(items: list[str] | tuple[str, ...] | None) -> list[Order]:
    """Parse order-by items such as "metrics.acc desc" or "started_at"."""
    orders = []
    for item in items or []:
        tokens = _tokens(item)
        if not tokens or len(tokens) > 2:
            raise _fail(item, tokens[2] if len(tokens) > 2 else None, "FIELD [asc|desc]")
        field = _field(item, tokens[0])
        direction = tokens[1].text.lower() if len(tokens) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise _fail(item, tokens[1], "'asc' or 'desc'")
        orders.append(Order(field, direction == "desc"))
    return orders
