"""Webhooks: each alert event POSTed as JSON to every configured hook (spec: ALERTS.md).

Delivery is recorded on the event itself (`monitor_events.delivery`, one entry per
hook), so it survives the monitor: an event is written `pending` for every hook in the
same transaction as the event, then posted. A hook that is down is logged ("webhook X
is down: ...; will retry"), marked `failed`, and tried again on each later check until
the event is 24 hours old, when it is marked `gave up` (and logged). Once a hook fails
in a pass, the rest of that pass skips it, so a dead hook costs one try per check, not
one per event owed. A monitor killed between writing and posting leaves `pending`
entries the next one sends.

Each entry moves by compare-and-set on the stored JSON: a monitor first marks the
entries it will send `sending` with a lease, and only a monitor whose swap succeeded
posts. So a delivered event is never posted again and two monitors never post the same
one at once. A monitor killed during the POST itself leaves a `sending` entry that is
sent again once its lease ends: the receiver may then see an event twice, and can tell
by its `id` (also sent as the Idempotency-Key header).

Within one check a hook gets `retries` more attempts after the first on connection
errors, timeouts, 408, 429 and 5xx answers, with exponential backoff (0.5 s, 1 s, 2 s,
... at most 10 s); `sleep` makes those waits injectable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import tenacity
from sqlalchemy import or_, select, update

from conveyor.core.errors import MissingExtraError
from conveyor.core.logs import get_logger
from conveyor.monitoring.records import MonitorEventRecord
from conveyor.monitoring.rules import Rule, WebhookConfig
from conveyor.storage.metadata import MetadataStore

log = get_logger("conveyor.monitoring.webhooks")

FORMAT = "conveyor.alert/1"
_WAIT_MAX_S = 10.0
_RETRYABLE = frozenset({408, 429})
_OPEN = ("pending", "failed", "sending")  # states still owed a delivery


def as_utc(at: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time Conveyor stores is UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _dumps(delivery: dict[str, Any]) -> str:
    """One spelling of the JSON, so `"state":"pending"` can be searched for in SQL."""
    return json.dumps(delivery, sort_keys=True, separators=(",", ":"))


def payload(event: MonitorEventRecord) -> dict[str, Any]:
    """The JSON body one event is POSTed as (ALERTS.md: the webhook payload)."""
    detail = json.loads(event.detail or "{}")
    return {
        "format": FORMAT,
        "id": event.id,
        "event": event.kind,
        "rule": event.rule,
        "when": detail.get("text"),
        "model": event.model,
        "version": event.version,
        "figure": detail.get("figure"),
        "value": event.value,
        "threshold": detail.get("threshold"),
        "window": detail.get("window"),
        "at": as_utc(event.at).isoformat(),
        "summary": summary(event, detail),
    }


def summary(event: MonitorEventRecord, detail: dict[str, Any]) -> str:
    """One line a person reads in a chat channel."""
    rule = Rule(
        event.rule,
        detail.get("text", event.rule),
        detail.get("figure", ""),
        detail.get("op", ">"),
        detail.get("threshold", 0.0),
        detail.get("unit"),
    )
    who = event.model if event.version is None else f"{event.model} v{event.version}"
    what = rule.name if rule.name == rule.text else f"{rule.name} ({rule.text})"
    value = f"{rule.figure} is {rule.show(event.value)}"
    if event.kind == "firing":
        window = detail.get("window") or {}
        if window.get("since") and window.get("until"):
            since = datetime.fromisoformat(window["since"]).astimezone(UTC)
            until = datetime.fromisoformat(window["until"]).astimezone(UTC)
            end = f"{until:%H:%M}" if since.date() == until.date() else f"{until:%Y-%m-%d %H:%M}"
            value += f" over {since:%Y-%m-%d %H:%M} to {end} UTC"
        return f"FIRING {who}: {what}: {value}"
    fired = (detail.get("fired") or {}).get("at")
    since_text = ""
    if fired:
        since_text = (
            f", firing since {datetime.fromisoformat(fired).astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        )
    return f"RESOLVED {who}: {what}: {value}{since_text}"


class _Retryable(Exception):
    """An answer worth another attempt (408, 429, 5xx)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())


class Deliveries:
    """Sends what is owed to the configured hooks; see the module docstring."""

    def __init__(
        self,
        meta: MetadataStore,
        hooks: Sequence[WebhookConfig],
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] | None = None,
        give_up_after: timedelta = timedelta(hours=24),
    ) -> None:
        self.meta = meta
        self.hooks = {h.label: h for h in hooks}
        self.clock = clock
        self.sleep = sleep or time.sleep
        self.give_up_after = give_up_after

    def owed(self) -> str:
        """The delivery record of a new event: pending for every configured hook."""
        return _dumps({label: {"state": "pending", "attempts": 0} for label in self.hooks})

    def deliver(self, model: str | None = None) -> int:
        """Post every event (of `model`) still owed to a hook, oldest first; how many
        deliveries succeeded. A hook that fails is recorded, never raised."""
        query = (
            select(MonitorEventRecord)
            .where(or_(*(MonitorEventRecord.delivery.like(f'%"state":"{s}"%') for s in _OPEN)))
            .order_by(MonitorEventRecord.id)
        )
        if model is not None:
            query = query.where(MonitorEventRecord.model == model)
        with self.meta.read() as s:
            owed = list(s.scalars(query))
        down: set[str] = set()  # hooks that failed in this pass wait for the next one
        return sum(self._deliver(event, down) for event in owed)

    def _deliver(self, event: MonitorEventRecord, down: set[str]) -> int:
        now = self.clock()
        stored = event.delivery
        delivery: dict[str, Any] = json.loads(stored)
        due = [label for label, entry in delivery.items() if _due(entry, now)]
        if not due:
            return 0
        if now - as_utc(event.at) > self.give_up_after:
            self._give_up(event, delivery, due)
            return 0
        # a hook no longer configured waits to expire; one that just failed, for the next pass
        due = [label for label in due if label in self.hooks and label not in down]
        lease = now + timedelta(seconds=sum(self._longest(self.hooks[label]) for label in due))
        claimed = {
            **delivery,
            **{
                h: {**delivery[h], "state": "sending", "lease_until": lease.isoformat()}
                for h in due
            },
        }
        if not due or not self._swap(event.id, stored, claimed):
            return 0  # nothing configured is owed, or another monitor took it
        body = payload(event)
        sent = 0
        for label in due:
            outcome = self._send(self.hooks[label], body, delivery[label].get("attempts", 0))
            new = {**claimed, label: outcome}
            self._swap(event.id, _dumps(claimed), new)  # ours while the lease lasts
            claimed = new
            if outcome["state"] == "delivered":
                sent += 1
            else:
                down.add(label)
        return sent

    def _give_up(self, event: MonitorEventRecord, delivery: dict[str, Any], due: list[str]) -> None:
        hours = self.give_up_after.total_seconds() / 3600
        new = dict(delivery)
        for label in due:
            entry = delivery[label]
            last = entry.get("error", "never sent")
            log.warning(
                f"giving up on webhook {label} for event {event.id} after {hours:g} h: {last}",
                model=event.model,
                rule=event.rule,
            )
            new[label] = {**entry, "state": "gave up", "at": self.clock().isoformat()}
            new[label].pop("lease_until", None)
        self._swap(event.id, event.delivery, new)

    def _longest(self, hook: WebhookConfig) -> float:
        """How long one delivery to `hook` can take, with a margin: the lease it gets."""
        return (hook.retries + 1) * hook.timeout + hook.retries * _WAIT_MAX_S + 60.0

    def _swap(self, event_id: int, old: str, new: dict[str, Any]) -> bool:
        with self.meta.write() as s:
            result = s.execute(
                update(MonitorEventRecord)
                .where(MonitorEventRecord.id == event_id, MonitorEventRecord.delivery == old)
                .values(delivery=_dumps(new))
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _send(self, hook: WebhookConfig, body: dict[str, Any], before: int) -> dict[str, Any]:
        """POST once with retries; the hook's new delivery entry, whatever happened."""
        try:
            import httpx
        except ImportError as e:  # pragma: no cover - httpx comes with the monitor extra
            raise MissingExtraError("webhooks need httpx", "pip install 'conveyor[monitor]'") from e
        attempts = 0
        headers = {
            "User-Agent": "conveyor-monitor",
            "Idempotency-Key": f"conveyor-event-{body['id']}",
            **hook.headers,
        }

        def post() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            response = httpx.post(hook.url, json=body, headers=headers, timeout=hook.timeout)
            if response.status_code >= 500 or response.status_code in _RETRYABLE:
                raise _Retryable(response.status_code, response.reason_phrase)
            return response

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(hook.retries + 1),
            wait=tenacity.wait_exponential(multiplier=0.5, max=_WAIT_MAX_S),
            retry=tenacity.retry_if_exception_type((httpx.TransportError, _Retryable)),
            sleep=self.sleep,
            reraise=True,
        )
        at = self.clock().isoformat()
        try:
            response = retrying(post)
        except Exception as e:  # noqa: BLE001 - a failing hook is recorded, never stops the monitor
            error = _describe(e)
            log.warning(
                f"webhook {hook.label} is down: {error}; will retry",
                event_id=body["id"],
                attempts=attempts,
            )
            return {"state": "failed", "attempts": before + attempts, "error": error, "at": at}
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            log.warning(f"webhook {hook.label} refused event {body['id']}: {error}; will retry")
            return {"state": "failed", "attempts": before + attempts, "error": error, "at": at}
        return {
            "state": "delivered",
            "attempts": before + attempts,
            "status": response.status_code,
            "at": at,
        }


def _due(entry: dict[str, Any], now: datetime) -> bool:
    state = entry.get("state")
    if state == "sending":
        lease = entry.get("lease_until")
        return lease is None or datetime.fromisoformat(lease) <= now
    return state in ("pending", "failed")


def _describe(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
