"""Alert events and webhooks against a real HTTP listener on 127.0.0.1, on SQLite and on
PostgreSQL: delivered once, retried when the hook is down, never repeated or lost across
a restart, and one event between two monitors checking at the same moment."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from conveyor.monitoring.alerts import Alerts, events, open_alerts
from conveyor.monitoring.rules import MonitorConfig
from conveyor.storage.metadata import MetadataStore

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
SLOW, FAST = {"latency.p99": 70.0}, {"latency.p99": 12.0}


class Listener:
    """A webhook receiver: records every POST; answers `answers` first, then 200."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = listener.answers.pop(0) if listener.answers else 200
                listener.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body),
                     "status": status}
                )  # fmt: skip
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.received if r["status"] == 200]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def listener() -> Iterator[Listener]:
    hook = Listener()
    yield hook
    hook.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def meta(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[MetadataStore]:
    url = (
        f"sqlite:///{tmp_path}/meta.db"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")  # tests/conftest.py: a fresh database
    )
    store = MetadataStore(url)
    store.create()
    yield store
    store.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _config(port: int, **hook: Any) -> MonitorConfig:
    return MonitorConfig.model_validate(
        {
            "model": "digits:production",
            "window": "5m",
            "webhooks": [
                {"name": "ops", "url": f"http://127.0.0.1:{port}/hook", "timeout": "5s", **hook}
            ],
            "rules": ["latency.p99 > 50ms"],
        }
    )


def _alerts(
    meta: MetadataStore, port: int, clock: Callable[[], datetime] | None = None, **hook: Any
) -> Alerts:
    return Alerts(meta, _config(port, **hook), clock=clock or Clock(), sleep=lambda s: None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fired_once_delivered_once_then_resolved(meta: MetadataStore, listener: Listener) -> None:
    alerts = _alerts(meta, listener.port, headers={"Authorization": "Bearer t"})
    fired = alerts.check("digits", 3, [SLOW], T0)
    assert fired[0].delivery["ops"]["state"] == "delivered"
    assert alerts.check("digits", 3, [SLOW], T0 + timedelta(minutes=1)) == []
    assert len(listener.delivered) == 1
    body = listener.delivered[0]
    assert {k: body[k] for k in ("format", "event", "rule", "model", "version", "value")} == {
        "format": "conveyor.alert/1",
        "event": "firing",
        "rule": "latency.p99 > 50ms",
        "model": "digits",
        "version": 3,
        "value": 70.0,
    }
    assert body["threshold"] == 50.0 and body["id"] == fired[0].id
    assert body["window"]["until"] == T0.isoformat() and body["at"] == T0.isoformat()
    assert body["summary"] == (
        "FIRING digits v3: latency.p99 > 50ms: latency.p99 is 70 ms over 2026-12-04 09:55 to "
        "10:00 UTC"
    )
    headers = listener.received[0]["headers"]
    assert headers["Authorization"] == "Bearer t"
    assert headers["Idempotency-Key"] == f"conveyor-event-{fired[0].id}"

    alerts.check("digits", 3, [FAST], T0 + timedelta(minutes=2))
    assert [b["event"] for b in listener.delivered] == ["firing", "resolved"]
    assert listener.delivered[1]["summary"].startswith("RESOLVED digits v3: latency.p99 > 50ms")


def test_a_down_webhook_is_retried_on_a_later_check_and_delivered_once(
    meta: MetadataStore,
) -> None:
    port = _free_port()  # nothing listens here yet
    clock = Clock()
    alerts = _alerts(meta, port, clock, retries=2)
    with capture_logs() as logs:
        fired = alerts.check("digits", 1, [SLOW], T0)
    entry = fired[0].delivery["ops"]
    assert entry["state"] == "failed" and entry["attempts"] == 3
    assert "refused" in entry["error"].lower()
    down = [x["event"] for x in logs if "is down" in x["event"]]
    assert down and down[0].startswith("webhook ops is down: ") and down[0].endswith("will retry")

    hook = Listener(port)  # the receiver comes up
    try:
        clock.now = T0 + timedelta(minutes=1)
        assert alerts.check("digits", 1, [SLOW], clock.now) == []  # no new event...
        assert [b["id"] for b in hook.delivered] == [fired[0].id]  # ...the old one delivered
        clock.now = T0 + timedelta(minutes=2)
        alerts.check("digits", 1, [SLOW], clock.now)
        assert len(hook.received) == 1
        (event,) = events(meta, "digits")
        assert event["delivery"]["ops"]["state"] == "delivered"
        assert event["delivery"]["ops"]["attempts"] == 4
    finally:
        hook.stop()


def test_server_errors_are_retried_with_backoff_within_a_check(
    meta: MetadataStore, listener: Listener
) -> None:
    waits: list[float] = []
    config = _config(listener.port, retries=3)
    alerts = Alerts(meta, config, clock=Clock(), sleep=waits.append)
    listener.answers = [503, 500]
    fired = alerts.check("digits", 1, [SLOW], T0)
    assert fired[0].delivery["ops"] == {
        "state": "delivered",
        "attempts": 3,
        "status": 200,
        "at": T0.isoformat(),
    }
    assert len(waits) == 2 and 0 < waits[0] < waits[1]  # backed off, more each time
    assert len(listener.delivered) == 1


def test_a_refusing_webhook_is_recorded_and_the_monitor_goes_on(
    meta: MetadataStore, listener: Listener
) -> None:
    listener.answers = [400]
    fired = _alerts(meta, listener.port).check("digits", 1, [SLOW], T0)
    assert fired[0].delivery["ops"]["state"] == "failed"
    assert fired[0].delivery["ops"]["error"] == "HTTP 400 Bad Request"
    assert len(listener.received) == 1  # a 400 is not retried within the check


def test_a_restarted_monitor_does_not_repeat(meta: MetadataStore, listener: Listener) -> None:
    assert len(_alerts(meta, listener.port).check("digits", 1, [SLOW], T0)) == 1
    restarted = _alerts(meta, listener.port)
    assert restarted.check("digits", 1, [SLOW], T0 + timedelta(minutes=1)) == []
    assert len(listener.received) == 1
    assert [a["rule"] for a in open_alerts(meta, "digits")] == ["latency.p99 > 50ms"]
    restarted.check("digits", 1, [FAST], T0 + timedelta(minutes=2))
    assert [b["event"] for b in listener.delivered] == ["firing", "resolved"]


def test_killed_between_writing_and_posting_is_delivered_once(
    meta: MetadataStore, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _alerts(meta, listener.port)
    monkeypatch.setattr(first.deliveries, "deliver", lambda model=None: 0)  # dies here
    (written,) = first.check("digits", 1, [SLOW], T0)
    assert written.delivery == {"ops": {"state": "pending", "attempts": 0}}
    assert listener.received == []

    restarted = _alerts(meta, listener.port)
    assert restarted.check("digits", 1, [SLOW], T0 + timedelta(minutes=1)) == []
    assert [b["id"] for b in listener.delivered] == [written.id]
    _alerts(meta, listener.port).check("digits", 1, [SLOW], T0 + timedelta(minutes=2))
    assert len(listener.received) == 1


def test_killed_while_posting_is_sent_again_only_after_its_lease(
    meta: MetadataStore, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    first = _alerts(meta, listener.port, clock)

    def dies_posting(*args: Any) -> dict[str, Any]:
        raise KeyboardInterrupt  # the process is gone after claiming, before the outcome

    monkeypatch.setattr(first.deliveries, "_send", dies_posting)
    with pytest.raises(KeyboardInterrupt):
        first.check("digits", 1, [SLOW], T0)
    (event,) = events(meta, "digits")
    assert event["delivery"]["ops"]["state"] == "sending"

    other = _alerts(meta, listener.port, clock)
    other.deliver("digits")
    assert listener.received == []  # the lease still holds: it may be mid-POST
    clock.now = T0 + timedelta(minutes=10)
    other.deliver("digits")
    other.deliver("digits")
    assert len(listener.delivered) == 1


def test_delivery_gives_up_after_a_day_and_says_so(meta: MetadataStore) -> None:
    port, clock = _free_port(), Clock()
    alerts = _alerts(meta, port, clock, retries=0)
    alerts.check("digits", 1, [SLOW], T0)
    clock.now = T0 + timedelta(hours=25)
    with capture_logs() as logs:
        alerts.deliver("digits")
    (event,) = events(meta, "digits")
    assert event["delivery"]["ops"]["state"] == "gave up"
    assert event["delivery"]["ops"]["attempts"] == 1
    assert any("giving up on webhook ops" in x["event"] and "24 h" in x["event"] for x in logs)
    hook = Listener(port)
    try:
        alerts.deliver("digits")
        assert hook.received == []
    finally:
        hook.stop()


def _at_once(monitors: list[Alerts], windows: list[dict[str, float]], at: datetime) -> list[int]:
    """Both monitors check the same windows at the same moment; how many events each wrote."""
    start = threading.Barrier(len(monitors))
    written: list[int] = []

    def run(m: Alerts) -> None:
        start.wait()
        written.append(len(m.check("digits", 1, windows, at)))

    threads = [threading.Thread(target=run, args=(m,)) for m in monitors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(written)


def test_two_monitors_at_the_same_moment_write_one_event(
    meta: MetadataStore, listener: Listener
) -> None:
    stores = [MetadataStore(meta.url) for _ in range(2)]  # two processes' own connections
    monitors = [_alerts(store, listener.port) for store in stores]
    try:
        for minute, windows in enumerate([[SLOW], [FAST], [SLOW]]):
            assert _at_once(monitors, windows, T0 + timedelta(minutes=minute)) == [0, 1]
        assert [e["kind"] for e in events(meta, "digits")] == ["firing", "resolved", "firing"]
        assert [b["event"] for b in listener.delivered] == ["firing", "resolved", "firing"]
        assert len(listener.received) == 3
    finally:
        for store in stores:
            store.dispose()
