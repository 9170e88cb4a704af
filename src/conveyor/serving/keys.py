"""API keys: created once (the secret is shown once), stored as a salted scrypt hash.

A key reads `cvk_<id>_<secret>`: the id finds the row, the secret is checked against its
hash with a constant-time compare. scrypt is slow on purpose (a stolen table is hard to
brute-force), so the server verifies a key once and keeps the verdict in memory under
the key's sha256; it reloads the rows every few seconds, so a revoked key stops working
within that time. Scopes: `predict` (prediction routes), `feedback` (sending labels back,
`POST /feedback/{name}`) and `admin` (everything).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from conveyor.core.errors import AuthError, ServerBusyError, ServingError
from conveyor.serving.metrics import MULTIPROC_ENV
from conveyor.serving.ratelimit import TokenBuckets
from conveyor.serving.records import ApiKeyRecord
from conveyor.storage.metadata import MetadataStore

SCOPES = ("predict", "feedback", "admin")
_PREFIX = "cvk"
_KEY = re.compile(rf"^{_PREFIX}_([a-z0-9]{{12}})_([A-Za-z0-9_-]{{20,100}})$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never its secret."""

    id: str
    name: str
    scope: str
    rate_limit: float | None
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        return self.scope == "admin" or self.scope == scope


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # the whole token to give the client; not stored anywhere


def hash_secret(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()


class Keys:
    """Create, list and revoke keys in the workspace's metadata store."""

    def __init__(self, meta: MetadataStore) -> None:
        self._meta = meta

    def create(self, name: str, scope: str = "predict", rate_limit: float | None = None) -> NewKey:
        if scope not in SCOPES:
            raise ServingError(f"unknown scope '{scope}'", f"use one of {', '.join(SCOPES)}")
        if rate_limit is not None and rate_limit <= 0:
            raise ServingError("a rate limit must be positive", "e.g. --rate-limit 100")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        record = ApiKeyRecord(
            id=key_id,
            name=name,
            scope=scope,
            salt=salt.hex(),
            hash=hash_secret(secret, salt),
            rate_limit=rate_limit,
            created_at=datetime.now(UTC),
        )
        with self._meta.write() as s:
            s.add(record)
        return NewKey(_key(record), f"{_PREFIX}_{key_id}_{secret}")

    def list(self) -> list[ApiKey]:
        with self._meta.read() as s:
            return [
                _key(r) for r in s.scalars(select(ApiKeyRecord).order_by(ApiKeyRecord.created_at))
            ]

    def revoke(self, key_id: str) -> ApiKey:
        with self._meta.write() as s:
            record = s.get(ApiKeyRecord, key_id)
            if record is None:
                raise ServingError(f"no API key '{key_id}'", "see `conveyor keys ls`")
            if record.revoked_at is None:
                record.revoked_at = datetime.now(UTC)
            return _key(record)

    def any_active(self) -> bool:
        return any(k.revoked_at is None for k in self.list())

    def records(self) -> dict[str, ApiKeyRecord]:
        with self._meta.read() as s:
            return {r.id: r for r in s.scalars(select(ApiKeyRecord))}


def _key(r: ApiKeyRecord) -> ApiKey:
    return ApiKey(r.id, r.name, r.scope, r.rate_limit, r.created_at, r.revoked_at)


class KeyChecker:
    """The server's view of the keys: cached verdicts, reloaded rows, per-key rate limits."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._rows = keys.records()
        self._verified: dict[bytes, str] = {}  # sha256(token) -> key id
        # the workers of one server share a folder (and so the buckets); alone: in memory
        self._buckets = TokenBuckets(os.environ.get(MULTIPROC_ENV))

    def refresh(self) -> None:
        """Reload the rows (revocations, new keys); called every few seconds off the loop."""
        self._rows = self._keys.records()

    def cached(self, token: str) -> ApiKey | None:
        """The key for a token verified before, if it is still valid; None if unknown."""
        key_id = self._verified.get(hashlib.sha256(token.encode()).digest())
        if key_id is None:
            return None
        return self._valid(key_id)

    def verify(self, token: str) -> ApiKey:
        """The slow path (scrypt): run it in a thread, never on the event loop."""
        match = _KEY.match(token)
        record = self._rows.get(match.group(1)) if match else None
        if match is None or record is None:
            raise AuthError("unknown API key", "create one with `conveyor keys create`")
        expected = bytes.fromhex(record.hash)
        actual = bytes.fromhex(hash_secret(match.group(2), bytes.fromhex(record.salt)))
        if not hmac.compare_digest(expected, actual):
            raise AuthError("unknown API key", "create one with `conveyor keys create`")
        key = self._valid(record.id)
        self._verified[hashlib.sha256(token.encode()).digest()] = record.id
        return key

    def _valid(self, key_id: str) -> ApiKey:
        record = self._rows.get(key_id)
        if record is None or record.revoked_at is not None:
            raise AuthError("this API key was revoked", "ask an admin for a new one")
        return _key(record)

    def spend(self, key: ApiKey) -> None:
        """Take one request from the key's token bucket (burst = one second's worth),
        shared by all the server's worker processes."""
        rate = key.rate_limit
        if rate is None:
            return
        wait = self._buckets.take(key.id, rate)
        if wait is not None:
            raise ServerBusyError(
                f"API key {key.id} is over its rate limit of {rate:g} requests/s",
                "slow down or ask for a higher limit",
                retry_after=wait,
                status=429,
            )


def token_of(authorization: str | None, api_key: str | None) -> str | None:
    """The token from `Authorization: Bearer ...` or `X-API-Key: ...`."""
    if api_key:
        return api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
