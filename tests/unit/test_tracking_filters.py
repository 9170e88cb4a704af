"""The run search language: what parses, what it means, and errors that name the token."""

from __future__ import annotations

import pytest

from conveyor.core.errors import InvalidFilterError
from conveyor.tracking.filters import Clause, Field, Order, parse_filter, parse_order


def test_the_documented_example() -> None:
    clauses = parse_filter("params.lr > 0.01 and metrics.acc >= 0.9 and tags.team = 'vision'")
    assert clauses == [
        Clause(Field("param", "lr"), ">", 0.01),
        Clause(Field("metric", "acc"), ">=", 0.9),
        Clause(Field("tag", "team"), "=", "vision"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status = 'finished'", Clause(Field("attribute", "status"), "=", "finished")),
        ('attributes.name != "cnn"', Clause(Field("attribute", "name"), "!=", "cnn")),
        ("metrics.val/loss < -1e-3", Clause(Field("metric", "val/loss"), "<", -0.001)),
        ("tags.`my key` == 'a b'", Clause(Field("tag", "my key"), "=", "a b")),
        ("params.opt LIKE 'ad%'", Clause(Field("param", "opt"), "like", "ad%")),
        ("params.note = 'it\\'s'", Clause(Field("param", "note"), "=", "it's")),
        ("metrics.acc <> 1", Clause(Field("metric", "acc"), "!=", 1.0)),
    ],
)
def test_clauses(text: str, expected: Clause) -> None:
    assert parse_filter(text) == [expected]


def test_empty_filter_matches_everything() -> None:
    assert parse_filter(None) == [] and parse_filter("  ") == []


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("params.lr > 0.01 or metrics.acc > 1", "'or' at position 17"),
        ("params.lr >> 1", "'>' at position 11"),
        ("lr > 1", "'lr' at position 0"),
        ("params.lr >", "the end"),
        ("metrics.acc = 'high'", "'='"),
        ("foo.bar = 1", "'foo.bar'"),
        ("attributes.colour = 'red'", "'attributes.colour'"),
        ("params.lr = 1; drop table runs", "';'"),
    ],
)
def test_errors_name_the_bad_token(text: str, token: str) -> None:
    with pytest.raises(InvalidFilterError) as e:
        parse_filter(text)
    assert token in str(e.value) and "params.lr > 0.01" in str(e.value)


def test_order_by() -> None:
    assert parse_order(["metrics.acc desc", "started_at", "params.lr ASC"]) == [
        Order(Field("metric", "acc"), True),
        Order(Field("attribute", "started_at"), False),
        Order(Field("param", "lr"), False),
    ]
    with pytest.raises(InvalidFilterError, match="'sideways'"):
        parse_order(["metrics.acc sideways"])
